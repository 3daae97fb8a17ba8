"""Recorder processes and the archive's background jobs, composed into the app.

The recorder (``signaling.recorder``) runs as a child process per recorded hearing (``yuntiao
record``), so decoding-free but still busy media work never shares the event loop that relays
the hearing. After it was dismissed it archives its files itself. At start-up the server
finishes any archive a crash interrupted (``recordings.archive.archive_hearing`` is
idempotent) and the retention job runs hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from cases.uow import transaction
from config import ENV_PREFIX, Settings
from recordings import archive
from rooms.models import Hearing
from web.context import SESSIONMAKER, SETTINGS

log = logging.getLogger("yuntiao.recording")

RETENTION_EVERY_S = 3600


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child process needs to build the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        env[ENV_PREFIX + f.name.upper()] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    return env


class RecorderProcesses:
    """Starts one ``yuntiao record`` process per recorded hearing and stops them at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, hearing_id: int, base_url: str) -> None:
        current = self.running.get(hearing_id)
        if current is not None and current.poll() is None:
            return  # still recording (or still archiving the last run); it rejoins by itself
        base_url = base_url or f"http://127.0.0.1:{self.settings.port}"
        log_path = archive.hearing_dir(self.settings.recordings_dir, hearing_id) / "recorder.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            # Our own interpreter and module; the arguments are an int and our own address.
            self.running[hearing_id] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "server.cli", "record", "--hearing", str(hearing_id)]
                + ["--url", base_url],
                env=settings_env(self.settings),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._reap_on_exit(self.running[hearing_id])

    @staticmethod
    def _reap_on_exit(process: subprocess.Popen[bytes]) -> None:
        """Collect the exit status as soon as the recorder ends, so that no finished recorder
        stays a zombie process until the server stops (a pidfd becomes readable on exit)."""
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(process.pid)

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            process.poll()

        loop.add_reader(pidfd, exited)

    async def wait(self, hearing_id: int, timeout_s: float) -> int | None:
        """Wait for that hearing's recorder to finish (tests, shutdown); its exit code."""
        process = self.running.get(hearing_id)
        if process is None:
            return None
        return await asyncio.wait_for(asyncio.to_thread(process.wait), timeout_s)

    async def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()  # the recorder closes its files and archives them
        for process in self.running.values():
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), 60)
            except TimeoutError:
                process.kill()


RECORDERS = web.AppKey("recorders", RecorderProcesses)


async def archive_jobs(app: web.Application) -> AsyncIterator[None]:
    """Finish interrupted archives once, then apply the retention period every hour."""
    app[RECORDERS] = RecorderProcesses(app[SETTINGS])
    task = asyncio.create_task(_jobs(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await app[RECORDERS].stop_all()


async def _jobs(app: web.Application) -> None:
    settings = app[SETTINGS]
    maker = app[SESSIONMAKER]
    root = settings.recordings_dir
    try:
        for folder in sorted(await asyncio.to_thread(_hearing_folders, root)):
            hearing_id = int(folder.name[1:])
            async with maker() as session:
                hearing = await session.get(Hearing, hearing_id)
                busy = hearing is None or hearing.recording_since is not None
            if not busy:
                async with transaction(maker) as session:
                    await archive.archive_hearing(session, root, hearing_id)
        while True:
            async with transaction(maker) as session:
                await archive.purge(session, root, settings.recording_retention_days)
            await asyncio.sleep(RETENTION_EVERY_S)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("recording archive job failed")


def _hearing_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name[1:].isdigit()]
