"""Judicial-confirmation reminders sent by the server itself, so that no committee has to set
up cron for ``yuntiao esign remind``.

Each server process runs ``esign.judicial.send_due_reminders`` once at start (a process that
restarts more often than the interval still reminds) and then every
YUNTIAO_JUDICIAL_REMINDER_INTERVAL_S seconds; 0 turns it off. Several processes on one database
remind each agreement once: the agreement is claimed by a conditional UPDATE before anyone is
texted. A failed round is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from esign.judicial import send_due_reminders
from web.agreements import sms_texts
from web.context import SESSIONMAKER, SETTINGS

log = logging.getLogger("yuntiao.reminders")


async def judicial_reminders(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the reminder loop, from start-up (after the database) to shutdown."""
    settings = app[SETTINGS]
    task: asyncio.Task[None] | None = None
    if settings.judicial_reminder_interval_s > 0:
        task = asyncio.create_task(remind_periodically(app[SESSIONMAKER], settings))
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def remind_periodically(maker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Send the reminders that are due, now and then every interval, until cancelled."""
    every = settings.judicial_reminder_interval_s
    texts = sms_texts(settings.default_locale)
    while True:
        try:
            reminded = await send_due_reminders(maker, settings.judicial_reminder_days, texts)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("judicial confirmation reminders failed; trying again in %s s", every)
        else:
            if reminded:
                log.info("judicial confirmation reminders sent for agreements %s", reminded)
        await asyncio.sleep(every)
