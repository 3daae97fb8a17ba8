"""What a request handler may rely on: typed application keys and small request helpers.

``server.app.create_app`` fills these keys; the auth middleware sets ``request[USER]``. Both the
page views (``web.pages``) and the JSON API (``server.api``) read them from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases import uow
from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import AuthenticationFailed, Forbidden
from cases.models import User, WebSession
from cases.protect import FieldCipher
from config import Settings

SETTINGS = web.AppKey("settings", Settings)
SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
CIPHER = web.AppKey("cipher", FieldCipher)

# Per-request values set by the server's middlewares.
USER: web.RequestKey[User | None] = web.RequestKey("user")
WEB_SESSION: web.RequestKey[WebSession | None] = web.RequestKey("web_session")
AUTH_KIND: web.RequestKey[str | None] = web.RequestKey("auth_kind")  # "session" | "bearer" | None
LOCALE = web.RequestKey("locale", str)
CSP_NONCE = web.RequestKey("csp_nonce", str)
PRE_CSRF = web.RequestKey("pre_csrf", str)  # value for the pre-login CSRF cookie

SESSION_COOKIE = "yuntiao_session"
LOCALE_COOKIE = "yuntiao_lang"
PRE_CSRF_COOKIE = "yuntiao_csrf"  # double-submit token for forms shown before login


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def cipher(request: web.Request) -> FieldCipher:
    return request.app[CIPHER]


@asynccontextmanager
async def transaction(request: web.Request) -> AsyncIterator[AsyncSession]:
    """A unit of work for this request (see ``server.db.transaction``)."""
    async with uow.transaction(request.app[SESSIONMAKER]) as session:
        yield session


def client_ip(request: web.Request) -> str:
    if settings(request).trust_proxy_headers:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return (request.remote or "")[:64]


def byte_range(request: web.Request, size: int) -> tuple[int, int, bool] | None:
    """The byte range asked for in ``Range`` as ``(start, end, asked)`` (end exclusive;
    ``asked`` False and the whole ``size`` bytes when there is none or it is malformed; the last
    N for ``bytes=-N``); None when it cannot be served (answer 416)."""
    try:
        wanted = request.http_range
    except ValueError:
        return 0, size, False
    if wanted.start is None and wanted.stop is None:
        return 0, size, False
    first = wanted.start if wanted.start is not None else 0
    if first < 0:  # "bytes=-N": the last N bytes
        first = max(0, size + first)
    last = size if wanted.stop is None else min(wanted.stop, size)
    if first >= last:
        return None
    return first, last, True


def is_secure(request: web.Request) -> bool:
    if (
        settings(request).trust_proxy_headers
        and request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    ):
        return True
    return request.secure


def cookie_secure(request: web.Request) -> bool:
    mode = settings(request).cookie_secure
    return mode == "always" or (mode == "auto" and is_secure(request))


def current_user(request: web.Request) -> User | None:
    return request.get(USER)


def require_user(request: web.Request, roles: frozenset[str] | set[str] | None = None) -> User:
    """The signed-in staff member, or an ``AuthenticationFailed``/``Forbidden`` error."""
    user = current_user(request)
    if user is None:
        raise AuthenticationFailed(N_("Please sign in first."), code="not_authenticated")
    if roles is not None and user.role not in roles:
        raise Forbidden(N_("You do not have access to this."))
    return user


def web_session(request: web.Request) -> WebSession | None:
    return request.get(WEB_SESSION)


def actor(request: web.Request) -> Actor:
    user = current_user(request)
    ua = request.headers.get("User-Agent", "")
    if user is None:
        return Actor("anonymous", None, "", client_ip(request), ua[:300])
    return Actor.for_user(user, client_ip(request), ua)


def template_context(request: web.Request, **values: Any) -> dict[str, Any]:
    session = web_session(request)
    values.setdefault("user", current_user(request))
    values.setdefault(
        "csrf_token",
        session.csrf_token
        if session
        else request.get(PRE_CSRF) or request.cookies.get(PRE_CSRF_COOKIE, ""),
    )
    values.setdefault("locale", request.get(LOCALE, "zh_CN"))
    values.setdefault("csp_nonce", request.get(CSP_NONCE, ""))
    values.setdefault("request_path", request.path_qs)
    return values
