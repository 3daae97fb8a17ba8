"""Middlewares, outermost first: security headers → errors → locale → authentication → CSRF.

Errors: the API always answers ``{"error": {"code", "message"}}``; people get a readable page.
Nothing ever shows a stack trace; unexpected exceptions are logged with a reference number.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from cases import accounts
from cases.errors import AuthenticationFailed, Conflict, DomainError, Forbidden, Invalid, NotFound
from web import i18n
from web.context import (
    AUTH_KIND,
    CSP_NONCE,
    LOCALE,
    LOCALE_COOKIE,
    PRE_CSRF,
    PRE_CSRF_COOKIE,
    SESSION_COOKIE,
    USER,
    WEB_SESSION,
    cookie_secure,
    settings,
    template_context,
    transaction,
)

log = logging.getLogger("yuntiao")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

STATUS_FOR: list[tuple[type[DomainError], int]] = [
    (NotFound, 404),
    (Forbidden, 403),
    (AuthenticationFailed, 401),
    (Conflict, 409),
    (Invalid, 422),
]

HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def domain_status(exc: DomainError) -> int:
    for cls, status in STATUS_FOR:
        if isinstance(exc, cls):
            return status
    return 400


def translate(request: web.Request, exc: DomainError) -> str:
    return i18n.translate(exc.message, exc.params, settings(request).timezone)


def error_response(
    request: web.Request, status: int, code: str, message: str
) -> web.StreamResponse:
    if is_api(request):
        return web.json_response(
            {"error": {"code": code, "message": message}}, status=status, dumps=_dumps
        )
    if status == 401 and request.method == "GET":
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")
    return aiohttp_jinja2.render_template(
        "error.html",
        request,
        template_context(request, status=status, code=code, message=message),
        status=status,
    )


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or i18n.gettext("request")
        parts.append(f"{where}: {err.get('msg', '')}")
    return i18n.gettext("Some fields are not valid: %(details)s", details="; ".join(parts))


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(request, domain_status(exc), exc.code, translate(request, exc))
    except ValidationError as exc:
        return error_response(request, 422, "invalid", validation_message(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "error")
        message = {
            404: i18n.gettext(
                "This page does not exist. Check the address, or go back to the start page."
            ),
            405: i18n.gettext("This action is not available here."),
            413: i18n.gettext("What you sent is too large."),
        }.get(
            exc.status,
            exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason,
        )
        return error_response(request, exc.status, code, message)
    except Exception:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", ref, request.method, request.path)
        return error_response(
            request,
            500,
            "internal_error",
            i18n.gettext(
                "Something went wrong on our side (reference %(ref)s). Please try again; "
                "if it keeps happening, tell the mediation office this reference.",
                ref=ref,
            ),
        )


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    nonce = secrets.token_urlsafe(16)
    request[CSP_NONCE] = nonce
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy",
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    )
    response.headers.setdefault(
        "Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)"
    )
    return response


@web.middleware
async def locale_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    locale = i18n.normalise_locale(
        request.cookies.get(LOCALE_COOKIE), settings(request).default_locale
    )
    request[LOCALE] = locale
    i18n.activate(locale)
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve a bearer token (API clients) or the session cookie (browsers) to a staff user."""
    request[USER] = None
    request[WEB_SESSION] = None
    request[AUTH_KIND] = None
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        async with transaction(request) as session:
            user = await accounts.resolve_api_token(session, authorization[7:].strip())
        if user is None:
            return error_response(
                request,
                401,
                "invalid_token",
                i18n.gettext("The API token is not valid or has expired."),
            )
        request[USER] = user
        request[AUTH_KIND] = "bearer"
    elif token := request.cookies.get(SESSION_COOKIE):
        async with transaction(request) as session:
            found = await accounts.resolve_session(session, token)
        if found is not None:
            request[USER], request[WEB_SESSION] = found
            request[AUTH_KIND] = "session"
    return await handler(request)


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Synchroniser token for signed-in browsers (form field or ``X-CSRF-Token`` header);
    double-submit cookie for the forms shown before login. Bearer-token API calls need none."""
    if request.method in UNSAFE_METHODS and request[AUTH_KIND] != "bearer":
        web_session = request[WEB_SESSION]
        expected = web_session.csrf_token if web_session else request.cookies.get(PRE_CSRF_COOKIE)
        if is_api(request) and web_session is None and request[AUTH_KIND] is None:
            expected = None  # anonymous JSON API calls carry no ambient credential to abuse
        if expected is not None:
            sent = request.headers.get("X-CSRF-Token", "")
            if not sent and request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                value = form.get("csrf_token", "")
                sent = value if isinstance(value, str) else ""
            if not secrets.compare_digest(sent.encode(), expected.encode()):
                return error_response(
                    request,
                    403,
                    "csrf_failed",
                    i18n.gettext("This form has expired. Go back, reload the page and try again."),
                )
        elif not is_api(request):
            return error_response(
                request,
                403,
                "csrf_failed",
                i18n.gettext("This form has expired. Go back, reload the page and try again."),
            )
    response = await handler(request)
    if (
        request[WEB_SESSION] is None
        and PRE_CSRF_COOKIE not in request.cookies
        and request.method == "GET"
        and not is_api(request)
    ):
        response.set_cookie(
            PRE_CSRF_COOKIE,
            request.get(PRE_CSRF) or secrets.token_urlsafe(32),
            httponly=True,
            samesite="Strict",
            secure=cookie_secure(request),
            path="/",
        )
    return response


@web.middleware
async def pre_csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Make the pre-login CSRF value available to the first page render (before the cookie
    round-trips), so the login form rendered on the very first visit already carries it."""
    if PRE_CSRF_COOKIE not in request.cookies:
        request[PRE_CSRF] = secrets.token_urlsafe(32)
    return await handler(request)


MIDDLEWARES = [
    # Outermost, so error pages carry the same headers as every other page.
    security_headers_middleware,
    error_middleware,
    locale_middleware,
    auth_middleware,
    pre_csrf_middleware,
    csrf_middleware,
]
