"""Judicial-confirmation reminders sent by the server itself, so that no committee has to set
up cron for ``yuntiao esign remind``.

Each server process runs ``esign.judicial.send_due_reminders`` 30 s after start (or after the
interval, when shorter) and then every YUNTIAO_JUDICIAL_REMINDER_INTERVAL_S seconds; 0 turns it
off. Several processes on one database
remind each agreement once: the agreement is claimed by a conditional UPDATE before anyone is
texted. A failed round is logged and the next one tries again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from esign.judicial import send_due_reminders
from server.background import Periodic
from web.agreements import sms_texts
from web.context import SESSIONMAKER, SETTINGS

log = logging.getLogger("yuntiao.reminders")

FIRST_AFTER_S = 30.0


async def judicial_reminders(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the reminder loop, from start-up (after the database) to shutdown."""
    settings = app[SETTINGS]
    every = settings.judicial_reminder_interval_s
    job: Periodic | None = None
    if every > 0:
        maker = app[SESSIONMAKER]
        texts = sms_texts(settings.default_locale)

        async def round() -> None:  # noqa: A001 (what it is)
            reminded = await send_due_reminders(maker, settings.judicial_reminder_days, texts)
            if reminded:
                log.info("judicial confirmation reminders sent for agreements %s", reminded)

        # Soon after start (a process that restarts more often than the interval still
        # reminds), not at the very start: a process that lives a few seconds (a test, a
        # one-off command) does no work.
        job = Periodic("judicial reminders", round, every, first_after_s=min(every, FIRST_AFTER_S))
        job.start()
    yield
    if job is not None:
        await job.stop()
