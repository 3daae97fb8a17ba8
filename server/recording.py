"""Recorder processes and the archive's background jobs, composed into the app.

The recorder (``signaling.recorder``) runs as a child process per recorded hearing (``yuntiao
record``), so decoding-free but still busy media work never shares the event loop that relays
the hearing. After it was dismissed it archives its files itself. At start-up the server
finishes any archive a crash interrupted (``recordings.archive.archive_hearing`` is
idempotent); every hour it archives what nothing else did and applies the retention period.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.uow import transaction
from config import ENV_PREFIX, Settings
from recordings import archive
from server.background import GRACE_S, Periodic
from web.context import SESSIONMAKER, SETTINGS

log = logging.getLogger("yuntiao.recording")

RETENTION_EVERY_S = 3600
# A recorder just started may need this long to take the hearing's recording lock.
STARTING_S = 30.0


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
    """Starts ``yuntiao record`` processes for recorded hearings and stops them at shutdown.

    ``start`` is called when recording starts and whenever someone joins a hearing that is
    being recorded: after a crash of the recorder or of the whole server the next join starts
    a new run. It starts nothing while a recorder (of any server process) holds the hearing's
    recording lock, or while one of ours was started so recently that it may not hold it yet.
    """

    def __init__(self, settings: Settings, maker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.maker = maker
        self.running: dict[int, subprocess.Popen[bytes]] = {}  # the newest per hearing
        self.started_at: dict[int, float] = {}
        self.children: set[subprocess.Popen[bytes]] = set()
        self.archiving: set[asyncio.Task[None]] = set()

    def hearing_ended(self, hearing_id: int) -> None:
        """Archive what is left of an ended hearing now (a hearing recorded in several runs
        gets its one joined file), rather than at the next hourly sweep. A recorder still
        running archives its own run first: both hold the hearing's archive lock in turn."""
        if not archive.hearing_dir(self.settings.recordings_dir, hearing_id).is_dir():
            return
        task = asyncio.create_task(self._archive(hearing_id))
        self.archiving.add(task)
        task.add_done_callback(self.archiving.discard)

    async def _archive(self, hearing_id: int) -> None:
        key = archive.master_key(self.settings.recording_encryption_key)
        try:
            await archive.archive_hearing(
                self.maker, self.settings.recordings_dir, hearing_id, key=key, wait_s=600
            )
        except archive.LockBusy:
            log.warning("hearing %s: archive busy for 10 min; left to the hourly sweep", hearing_id)
        except Exception:
            log.exception("archiving ended hearing %s failed", hearing_id)

    def start(self, hearing_id: int, base_url: str) -> None:
        root = self.settings.recordings_dir
        current = self.running.get(hearing_id)
        if current is not None and current.poll() is None:
            starting = time.monotonic() - self.started_at[hearing_id] < STARTING_S
            if starting:
                return
        if archive.is_locked(root, hearing_id):
            return  # a recorder is recording this hearing
        base_url = base_url or f"http://127.0.0.1:{self.settings.port}"
        log_path = archive.hearing_dir(root, hearing_id) / "recorder.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            # Our own interpreter and module; the arguments are an int and our own address.
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "server.cli", "record", "--hearing", str(hearing_id)]
                + ["--url", base_url],
                env=settings_env(self.settings),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.running[hearing_id] = process
        self.started_at[hearing_id] = time.monotonic()
        self.children.add(process)
        self._reap_on_exit(process, self.children)

    async def wait(self, hearing_id: int, timeout_s: float) -> int | None:
        """Wait for that hearing's newest recorder to finish (tests, shutdown); its exit code."""
        process = self.running.get(hearing_id)
        if process is None:
            return None
        return await asyncio.wait_for(asyncio.to_thread(process.wait), timeout_s)

    async def stop_all(self) -> None:
        if self.archiving:
            # Let an archive in progress finish its database work; one still composing after
            # the grace period is cancelled and finished by the next start-up.
            _done, busy = await asyncio.wait(set(self.archiving), timeout=GRACE_S)
            for task in busy:
                task.cancel()
            for task in busy:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for process in list(self.children):
            if process.poll() is None:
                process.terminate()  # the recorder closes its files and archives them
        for process in list(self.children):
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), 60)
            except TimeoutError:
                process.kill()

    @staticmethod
    def _reap_on_exit(
        process: subprocess.Popen[bytes], children: set[subprocess.Popen[bytes]]
    ) -> None:
        """Collect the exit status as soon as the recorder ends, so that no finished recorder
        stays a zombie process until the server stops (a pidfd becomes readable on exit)."""
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(process.pid)

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            process.poll()
            children.discard(process)

        loop.add_reader(pidfd, exited)


RECORDERS = web.AppKey("recorders", RecorderProcesses)


async def archive_jobs(app: web.Application) -> AsyncIterator[None]:
    """Finish interrupted archives once (and seal what a crash, or a key configured since, left
    unencrypted), then every hour archive what nothing else did and apply the retention
    period."""
    # A malformed recording key stops the start here, not at the first archive or playback.
    archive.master_key(app[SETTINGS].recording_encryption_key)
    app[RECORDERS] = RecorderProcesses(app[SETTINGS], app[SESSIONMAKER])
    job = Periodic("recordings archive", lambda: _sweep(app), RETENTION_EVERY_S)
    job.start()
    yield
    await job.stop()
    await app[RECORDERS].stop_all()


async def _sweep(app: web.Application) -> None:
    """At start-up: runs a crash interrupted (the recorder's or the server's) are finished runs
    now; a run a live recorder is writing is skipped by ``archive_hearing`` itself. Every hour
    after: what nothing else archived (a hearing ended after its recording had stopped), then
    retention."""
    settings = app[SETTINGS]
    maker = app[SESSIONMAKER]
    root = settings.recordings_dir
    key = archive.master_key(settings.recording_encryption_key)
    for folder in sorted(await asyncio.to_thread(_hearing_folders, root)):
        try:
            await archive.archive_hearing(maker, root, int(folder.name[1:]), key=key, wait_s=0)
        except archive.LockBusy:
            pass  # another process is archiving that hearing
    async with transaction(maker) as session:
        await archive.purge(session, root, settings.recording_retention_days)


def _hearing_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name[1:].isdigit()]
