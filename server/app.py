"""The application factory. No module-level state: everything a running app needs (engine,
session maker, cipher, templates) is created here from ``Settings`` and kept under typed keys."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from cases.protect import FieldCipher
from config import Settings
from server import api, db
from server import notes as notes_wiring
from server.middlewares import MIDDLEWARES
from server.recording import RECORDERS, archive_jobs
from server.reminders import judicial_reminders
from signaling.connections import Connections, LocalConnections, RedisConnections
from signaling.ice import ice_servers
from signaling.presentation import Presentation
from signaling.server import HearingSignaling
from web import agreements as agreement_pages
from web import evidence as evidence_pages
from web import hearing as hearing_pages
from web import i18n, pages
from web import recordings as recording_pages
from web.context import CIPHER, SESSIONMAKER, SETTINGS

ENGINE = web.AppKey("engine", AsyncEngine)
SOCKETIO = web.AppKey("socketio", socketio.AsyncServer)
SIGNALING = web.AppKey("signaling", HearingSignaling)
PING_INTERVAL_S = 5
PING_TIMEOUT_S = 5
PRESENTATION = web.AppKey("presentation", Presentation)

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
    app.cleanup_ctx.append(archive_jobs)
    app.cleanup_ctx.append(judicial_reminders)
    app.on_startup.append(_signaling)
    app.on_cleanup.append(_close_signaling)
    # Several processes share hearings through Redis: emits reach sockets in every process.
    manager = (
        socketio.AsyncRedisManager(settings.redis_url, channel=settings.redis_channel)
        if settings.redis_url
        else None
    )
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        transports=["websocket"],
        client_manager=manager,
        # A phone that lost its network sends nothing more: the others should see
        # "reconnecting" within seconds, not after socket.io's default 25 + 20 s.
        ping_interval=PING_INTERVAL_S,
        ping_timeout=PING_TIMEOUT_S,
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)
    app[SOCKETIO] = sio
    pages.setup(app)
    hearing_pages.setup(app)
    recording_pages.setup(app)
    evidence_pages.setup(app)
    agreement_pages.setup(app)
    notes_wiring.setup(app, sio)  # hearing records and case notes: pages and /notes
    api.setup(app)
    app.router.add_get("/healthz", _healthz)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = db.make_engine(app[SETTINGS].database_url_resolved)
    app[ENGINE] = engine
    app[SESSIONMAKER] = db.make_sessionmaker(engine)
    yield
    await engine.dispose()


async def _signaling(app: web.Application) -> None:
    """Bind the hearing namespace once the database is open (it needs the session maker)."""
    settings = app[SETTINGS]

    def ice(participant_id: int) -> list[dict[str, Any]]:
        return ice_servers(
            _split(settings.stun_urls),
            _split(settings.turn_urls),
            settings.turn_secret,
            f"p{participant_id}",
            settings.turn_credential_ttl_s,
        )

    def translate(locale: str, message: str, params: dict[str, Any]) -> str:
        i18n.activate(locale)
        return i18n.translate(message, params, settings.timezone)

    connections: Connections
    if settings.redis_url:
        connections = RedisConnections(settings.redis_url, settings.redis_channel)
        await connections.start()
    else:
        connections = LocalConnections()
    app[SIGNALING] = HearingSignaling(
        app[SOCKETIO],
        app[SESSIONMAKER],
        settings.secret_key,
        ice,
        translate,
        connections=connections,
        start_recorder=app[RECORDERS].start,
        hearing_ended=app[RECORDERS].hearing_ended,
    )
    signaling = app[SIGNALING]
    app[PRESENTATION] = Presentation(
        app[SOCKETIO],
        app[SESSIONMAKER],
        settings.secret_key,
        lambda hearing_id: signaling.snapshot(hearing_id, fresh=True),
        translate,
    )


async def _close_signaling(app: web.Application) -> None:
    signaling = app.get(SIGNALING)
    if signaling is not None:
        await signaling.connections.close()


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


async def _healthz(request: web.Request) -> web.Response:
    from sqlalchemy import text

    async with request.app[SESSIONMAKER]() as session:
        await session.execute(text("SELECT 1"))
    return web.json_response({"status": "ok"})
