"""Wiring of hearing records and case notes: the hub (``notes.live``), its socket.io namespace
(``signaling.notes``) and its pages (``web.notes``). ``server.app`` calls ``setup`` once."""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from notes.live import NoteHub
from signaling.notes import NotesSignaling
from web import i18n
from web import notes as notes_pages
from web.context import SESSIONMAKER, SETTINGS

NOTES_SIGNALING = web.AppKey("notes_signaling", NotesSignaling)


def setup(app: web.Application, sio: socketio.AsyncServer) -> None:
    notes_pages.setup(app)

    async def start(app: web.Application) -> None:
        settings = app[SETTINGS]

        def translate(locale: str, message: str, params: dict[str, Any]) -> str:
            i18n.activate(locale)
            return i18n.translate(message, params, settings.timezone)

        hub = NoteHub(app[SESSIONMAKER], snapshot_every=settings.notes_snapshot_every)
        app[notes_pages.NOTES_HUB] = hub
        app[NOTES_SIGNALING] = NotesSignaling(
            sio, app[SESSIONMAKER], hub, settings.secret_key, translate
        )

    async def stop(app: web.Application) -> None:
        hub = app.get(notes_pages.NOTES_HUB)
        if hub is not None:
            await hub.close()

    app.on_startup.append(start)
    # on_shutdown runs before the database engine is closed (a cleanup_ctx), on_cleanup after.
    app.on_shutdown.append(stop)
