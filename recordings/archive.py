"""Archiving recorded files: check, hash, register, compose, verify, expire.

Files live under ``Settings.recordings_dir`` in one directory per hearing (``h<id>/``) and, in
it, one directory per recorder run (``run-<n>/``: from the start of a recording to its stop, or
to the recorder's end when a crash interrupted it), all named by us. A run holds the
participants' files, its timeline and its composite, so recording again in the same hearing
never overwrites what an earlier run archived.

Two advisory locks (``flock``) in the hearing's directory keep processes apart: the recorder
holds ``recording.lock`` while it records (one recorder per hearing, whichever server process
started it), and whoever archives holds ``archive.lock``. A run is being recorded when it is the
newest run and ``recording.lock`` is held; every other run is finished and may be archived.

A file is *archived* once its row exists: the row holds the SHA-256 and size taken at that
moment, and every later check compares against them. ``archive_hearing`` is idempotent: it
registers whatever in the finished runs is not registered yet and makes a run's composite if
it is missing, so the same call finishes a job a crash interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.models import utcnow
from recordings.models import COMPOSITE_FILE, PARTICIPANT_FILE, TIMELINE_FILE, RecordingFile
from rooms.models import Hearing, HearingParticipant

log = logging.getLogger("yuntiao.recordings")

COMPOSITE_NAME = "hearing.mp4"
TIMELINE_NAME = "timeline.json"
COMPOSITE_FPS = 15  # an archive to watch, not to broadcast: half the camera's rate is enough
TILE = (320, 240)


@dataclasses.dataclass(frozen=True)
class Probe:
    duration_s: float | None
    kinds: tuple[str, ...]  # stream kinds in the file, e.g. ("video", "audio")


RECORDING_LOCK = "recording.lock"
ARCHIVE_LOCK = "archive.lock"
_RUN_RE = re.compile(r"^run-(\d+)$")


def hearing_dir(root: Path, hearing_id: int) -> Path:
    return root / f"h{hearing_id}"


def runs(root: Path, hearing_id: int) -> list[Path]:
    """The hearing's run directories, oldest first."""
    folder = hearing_dir(root, hearing_id)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _RUN_RE.match(p.name))]
    return [p for _n, p in sorted(found)]


def new_run(root: Path, hearing_id: int) -> Path:
    """Create the next run directory (call with ``recording.lock`` held)."""
    existing = runs(root, hearing_id)
    number = int(existing[-1].name.split("-")[1]) + 1 if existing else 1
    path = hearing_dir(root, hearing_id) / f"run-{number}"
    path.mkdir(parents=True)
    return path


def _try_lock(path: Path) -> int | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def is_locked(root: Path, hearing_id: int, name: str = RECORDING_LOCK) -> bool:
    """Whether another process holds that lock of the hearing right now."""
    fd = _try_lock(hearing_dir(root, hearing_id) / name)
    if fd is None:
        return True
    _unlock(fd)
    return False


class LockBusy(Exception):
    """The lock stayed held by another process for the whole wait."""


@contextlib.asynccontextmanager
async def hold(root: Path, hearing_id: int, name: str, wait_s: float = 0.0) -> AsyncIterator[None]:
    """Hold one of the hearing's locks, trying every 0.2 s for up to ``wait_s``."""
    path = hearing_dir(root, hearing_id) / name
    deadline = asyncio.get_running_loop().time() + wait_s
    while (fd := await asyncio.to_thread(_try_lock, path)) is None:
        if asyncio.get_running_loop().time() >= deadline:
            raise LockBusy(str(path))
        await asyncio.sleep(0.2)
    try:
        yield
    finally:
        _unlock(fd)


async def probe(path: Path) -> Probe | None:
    """What ffprobe reads in the file; None when it cannot read it at all."""
    proc = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,duration",
        "-of",
        "json",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _err = await proc.communicate()
    if proc.returncode != 0:
        return None
    data = json.loads(out or b"{}")
    kinds = tuple(s.get("codec_type", "") for s in data.get("streams", []))
    duration = data.get("format", {}).get("duration")
    if duration in (None, "N/A") and kinds:
        # A file cut off by a crash has no duration in its header: the last packet says it.
        return Probe(await _last_packet_time(path), kinds)
    return Probe(float(duration) if duration not in (None, "N/A") else None, kinds)


async def _last_packet_time(path: Path) -> float | None:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "packet=pts_time",
        "-of",
        "csv=p=0",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _err = await proc.communicate()
    times = [float(t) for t in out.decode().split() if t.replace(".", "", 1).isdigit()]
    return max(times) if times else None


def sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def register(
    session: AsyncSession,
    root: Path,
    hearing: Hearing,
    path: Path,
    kind: str,
    *,
    participant: HearingParticipant | None = None,
    subroom: str = "",
    started_at: dt.datetime | None = None,
    duration_s: float | None = None,
    media_type: str = "video/x-matroska",
) -> RecordingFile:
    """Archive one file: fsync, hash, row, audit (``recording.archived``)."""
    await asyncio.to_thread(_fsync, path)
    sha256, size = await asyncio.to_thread(sha256_of, path)
    row = RecordingFile(
        hearing_id=hearing.id,
        case_id=hearing.case_id,
        kind=kind,
        participant_id=participant.id if participant else None,
        participant_name=participant.display_name if participant else "",
        subroom=subroom,
        path=str(path.relative_to(root)),
        media_type=media_type,
        size=size,
        sha256=sha256,
        duration_s=duration_s,
        started_at=started_at,
    )
    session.add(row)
    await session.flush()
    await record(
        session,
        Actor.system("recorder"),
        AuditAction.RECORDING_ARCHIVED,
        object_type="recording_file",
        object_id=row.id,
        case_id=hearing.case_id,
        details={
            "hearing_id": hearing.id,
            "kind": kind,
            "file": row.path,
            "sha256": sha256,
            "size": size,
            "participant_id": row.participant_id,
            "duration_s": duration_s,
        },
    )
    return row


def _grid(count: int) -> tuple[int, int]:
    columns = 1 if count == 1 else 2 if count <= 4 else 3
    return columns, math.ceil(count / columns)


async def compose(out: Path, inputs: list[tuple[Path, float, Probe]]) -> bool:
    """One playable file of the hearing: the participants' videos in a grid (each placed at
    its own start time), their audio mixed. Inputs: (file, seconds after the first file
    started, probe). H.264/AAC in MP4 so every browser plays it; False when ffmpeg failed."""
    videos = [(i, item) for i, item in enumerate(inputs) if "video" in item[2].kinds]
    audios = [(i, item) for i, item in enumerate(inputs) if "audio" in item[2].kinds]
    if not videos and not audios:
        return False
    args = ["ffmpeg", "-v", "error", "-y"]
    for path, offset, _probe in inputs:
        args += ["-itsoffset", f"{offset:.3f}", "-i", str(path)]
    filters = []
    maps: list[str] = []
    width, height = TILE
    if videos:
        for n, (i, _item) in enumerate(videos):
            filters.append(
                f"[{i}:v]fps={COMPOSITE_FPS},scale={width}:{height}:force_original_aspect_ratio="
                f"decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1[v{n}]"
            )
        if len(videos) == 1:
            filters.append("[v0]null[vout]")
        else:
            columns, _rows = _grid(len(videos))
            layout = "|".join(
                f"{(n % columns) * width}_{(n // columns) * height}" for n in range(len(videos))
            )
            labels = "".join(f"[v{n}]" for n in range(len(videos)))
            filters.append(f"{labels}xstack=inputs={len(videos)}:layout={layout}:fill=black[vout]")
        maps += ["-map", "[vout]"]
    if audios:
        labels = "".join(f"[{i}:a]" for i, _item in audios)
        filters.append(
            f"{labels}amix=inputs={len(audios)}:duration=longest:normalize=0[aout]"
            if len(audios) > 1
            else f"{labels}anull[aout]"
        )
        maps += ["-map", "[aout]"]
    args += ["-filter_complex", ";".join(filters), *maps]
    if videos:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p"]
    if audios:
        args += ["-c:a", "aac", "-b:a", "64k"]
    # Made under another name and renamed when complete: a crash mid-way never leaves a
    # truncated file under the composite's name (which the next archive run would trust).
    part = out.with_name(f"{out.stem}.part{out.suffix}")
    args += ["-movflags", "+faststart", str(part)]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        log.error("composite of %s failed: %s", out.parent, err.decode(errors="replace")[-800:])
        await asyncio.to_thread(part.unlink, missing_ok=True)
        return False
    await asyncio.to_thread(os.replace, part, out)
    return True


async def archive_hearing(
    session: AsyncSession, root: Path, hearing_id: int, wait_s: float = 3600.0
) -> list[RecordingFile]:
    """Register every unregistered file of the hearing's finished runs, and each run's
    composite (made now when missing). Returns the rows it added. Files ffprobe cannot read
    are left in place and logged (never registered as evidence-grade). Waits up to ``wait_s``
    for another archiver of the hearing to finish (``LockBusy`` after that)."""
    hearing = await session.get(Hearing, hearing_id)
    if hearing is None or not hearing_dir(root, hearing_id).is_dir():
        return []
    async with hold(root, hearing_id, ARCHIVE_LOCK, wait_s):
        finished = await asyncio.to_thread(runs, root, hearing_id)
        recording: bool = await asyncio.to_thread(is_locked, root, hearing_id)
        if recording:
            finished = finished[:-1]  # the newest run is being recorded
        known = set(
            (
                await session.scalars(
                    select(RecordingFile.path).where(RecordingFile.hearing_id == hearing_id)
                )
            ).all()
        )
        added: list[RecordingFile] = []
        for folder in finished:
            added += await _archive_run(session, root, hearing, folder, known)
        return added


async def _archive_run(
    session: AsyncSession, root: Path, hearing: Hearing, folder: Path, known: set[str]
) -> list[RecordingFile]:
    timeline: dict[str, Any] = {}
    if (folder / TIMELINE_NAME).exists():
        timeline = json.loads((folder / TIMELINE_NAME).read_text() or "{}")
    starts = {f["file"]: (f.get("start"), f.get("subroom", "")) for f in timeline.get("files", [])}
    people = {p.id: p for p in hearing.participants}
    added: list[RecordingFile] = []
    inputs: list[tuple[Path, float, Probe]] = []
    for path in sorted(await asyncio.to_thread(lambda: list(folder.glob("p*.mkv")))):
        found = await probe(path)
        if found is None or not found.kinds:
            log.error("recording %s is unreadable; not archived", path)
            continue
        start, subroom = starts.get(path.name, (None, ""))
        start_at = path.stat().st_mtime - (found.duration_s or 0) if start is None else start
        inputs.append((path, start_at, found))
        relative = str(path.relative_to(root))
        if relative in known:
            continue
        participant_id = int(path.name[1:].split("-", 1)[0])
        added.append(
            await register(
                session,
                root,
                hearing,
                path,
                PARTICIPANT_FILE,
                participant=people.get(participant_id),
                subroom=subroom or path.name.split("-")[1],
                started_at=dt.datetime.fromtimestamp(start_at, dt.UTC),
                duration_s=found.duration_s,
            )
        )
    composite = folder / COMPOSITE_NAME
    if inputs and str(composite.relative_to(root)) not in known:
        first = min(start for _path, start, _probe in inputs)
        shifted = [(path, start - first, found) for path, start, found in inputs]
        if composite.exists() or await compose(composite, shifted):
            made = await probe(composite)
            if made is not None:
                added.append(
                    await register(
                        session,
                        root,
                        hearing,
                        composite,
                        COMPOSITE_FILE,
                        started_at=dt.datetime.fromtimestamp(first, dt.UTC),
                        duration_s=made.duration_s,
                        media_type="video/mp4",
                    )
                )
    timeline_path = folder / TIMELINE_NAME
    if timeline_path.exists() and str(timeline_path.relative_to(root)) not in known:
        added.append(
            await register(
                session, root, hearing, timeline_path, TIMELINE_FILE, media_type="application/json"
            )
        )
    return added


@dataclasses.dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(session: AsyncSession, root: Path, hearing_id: int | None = None) -> VerifyReport:
    """Re-hash every archived file that is not deleted; name each missing or changed one."""
    query = select(RecordingFile).where(RecordingFile.deleted_at.is_(None))
    if hearing_id is not None:
        query = query.where(RecordingFile.hearing_id == hearing_id)
    report = VerifyReport()
    for row in (await session.scalars(query.order_by(RecordingFile.id))).all():
        report.checked += 1
        path = root / row.path
        if not path.is_file():
            report.problems.append(f"recording {row.id} ({row.path}): file missing")
            continue
        sha256, size = await asyncio.to_thread(sha256_of, path)
        if sha256 != row.sha256 or size != row.size:
            report.problems.append(
                f"recording {row.id} ({row.path}): changed since archived "
                f"(sha256 {sha256[:16]}…, {size} bytes; archived {row.sha256[:16]}…, {row.size} bytes)"
            )
    return report


async def purge(
    session: AsyncSession, root: Path, retention_days: int, now: dt.datetime | None = None
) -> list[RecordingFile]:
    """Delete the files older than the retention period, except those under legal hold; the
    rows stay (with ``deleted_at``) so the archive still says what existed. Audited."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=retention_days)
    rows = (
        await session.scalars(
            select(RecordingFile).where(
                RecordingFile.deleted_at.is_(None),
                RecordingFile.legal_hold.is_(False),
                RecordingFile.created_at < cutoff,
            )
        )
    ).all()
    for row in rows:
        (root / row.path).unlink(missing_ok=True)
        row.deleted_at = now
        await record(
            session,
            Actor.system("retention"),
            AuditAction.RECORDING_DELETED,
            object_type="recording_file",
            object_id=row.id,
            case_id=row.case_id,
            details={"file": row.path, "sha256": row.sha256, "retention_days": retention_days},
        )
    await session.flush()
    return list(rows)
