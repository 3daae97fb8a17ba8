"""The application factory. No module-level state: everything a running app needs (engine,
session maker, cipher, templates) is created here from ``Settings`` and kept under typed keys."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from cases.protect import FieldCipher
from config import Settings
from server import api, db
from server.middlewares import MIDDLEWARES
from web import i18n, pages
from web.context import CIPHER, SESSIONMAKER, SETTINGS

ENGINE = web.AppKey("engine", AsyncEngine)

log = logging.getLogger("yuntiao")


def create_app(settings: Settings) -> web.Application:
    """Build the app. ``settings`` must already carry its secrets (``with_generated_secrets``)."""
    if not settings.secret_key or not settings.field_encryption_key:
        raise ValueError("settings need secret_key and field_encryption_key")
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_request_bytes)
    app[SETTINGS] = settings
    app[CIPHER] = FieldCipher(settings.field_encryption_key)
    i18n.load()
    app.cleanup_ctx.append(_database)
    pages.setup(app)
    api.setup(app)
    app.router.add_get("/healthz", _healthz)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = db.make_engine(app[SETTINGS].database_url_resolved)
    app[ENGINE] = engine
    app[SESSIONMAKER] = db.make_sessionmaker(engine)
    yield
    await engine.dispose()


async def _healthz(request: web.Request) -> web.Response:
    from sqlalchemy import text

    async with request.app[SESSIONMAKER]() as session:
        await session.execute(text("SELECT 1"))
    return web.json_response({"status": "ok"})
