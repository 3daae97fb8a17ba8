"""Periodic background rounds of the server process (reminders, the recordings archive).

Stopping waits for a round in progress to finish (up to ``grace_s``) before cancelling it:
a database call cancelled midway leaves aiosqlite's worker thread to answer an event loop
that the shutdown has closed by then ("Event loop is closed" in that thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("yuntiao.background")

GRACE_S = 10.0


class Periodic:
    """Run ``round()`` ``first_after_s`` after ``start()`` and then every ``every_s`` seconds
    until ``stop()``. A failed round is logged and the next one tries again."""

    def __init__(
        self,
        name: str,
        round: Callable[[], Awaitable[None]],  # noqa: A002 (what it is)
        every_s: float,
        first_after_s: float = 0.0,
    ) -> None:
        self.name = name
        self.round = round
        self.every_s = every_s
        self.first_after_s = first_after_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, grace_s: float = GRACE_S) -> None:
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        except TimeoutError:
            log.warning("%s: still busy after %s s at shutdown; cancelled", self.name, grace_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = self.first_after_s
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await self.round()
            except Exception:
                log.exception("%s failed; trying again in %s s", self.name, self.every_s)
            delay = self.every_s
