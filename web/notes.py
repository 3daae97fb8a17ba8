"""Pages of hearing records and case notes (filled in below)."""

from __future__ import annotations

from aiohttp import web

from notes.live import NoteHub

NOTES_HUB = web.AppKey("notes_hub", NoteHub)


def setup(app: web.Application) -> None:
    """Add the notes pages."""
