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

With a recording key configured, each archived file is then sealed (encrypted at rest, see
"encryption at rest" below); the row keeps the media's own name, hash and size.
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
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.errors import Conflict, NotFound
from cases.models import utcnow
from cases.uow import transaction
from evidence.storage import (
    DecryptingReader,
    StoredFileError,
    decode_master_key,
    fsync_dir,
    open_sealed,
    seal_file,
)
from recordings.models import (
    COMPOSITE_FILE,
    HEARING_FILE,
    PARTICIPANT_FILE,
    TIMELINE_FILE,
    RecordingFile,
)
from rooms.models import Hearing

log = logging.getLogger("yuntiao.recordings")

COMPOSITE_NAME = "hearing.mp4"
TIMELINE_NAME = "timeline.json"
SEALED_SUFFIX = ".enc"  # an archived file encrypted at rest: <name>.enc
UNSEALED_DIR = ".unsealed"  # sealed inputs decrypted for a late composite, removed after
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


# ---- encryption at rest ---------------------------------------------------------------------------
#
# With a key configured, every archived file is sealed once its row is committed: ``<name>.enc``
# in the evidence store's chunked AES-GCM format (``evidence.storage.seal_file``), and the
# plaintext is deleted. Rows keep the media's own name, SHA-256 and size, so a sealed file is
# checked by decrypting it in a stream. Recording and composing work on plaintext (ffmpeg needs
# files): the run being recorded and a run not archived yet are plaintext until archived.


class KeyMissing(Conflict):
    """A sealed file was asked for while no recording key is configured."""

    code = "recording_key_missing"

    def __init__(self) -> None:
        super().__init__(
            N_(
                "This recording is stored encrypted, but no recording key is configured "
                "(YUNTIAO_RECORDING_ENCRYPTION_KEY): key missing. Tell the system administrator."
            )
        )


class Unreadable(Conflict):
    """A sealed file does not decrypt: changed, truncated, or sealed under another key."""

    code = "recording_damaged"

    def __init__(self) -> None:
        super().__init__(
            N_(
                "The stored copy of this recording does not decrypt: it was changed or is "
                "encrypted under another key. Tell the administrator to run "
                "`yuntiao recordings verify`."
            )
        )


def check_not_deleted(row: RecordingFile) -> None:
    """A file the retention job deleted is gone for everyone: a readable 404."""
    if row.deleted_at is not None:
        raise NotFound(
            N_("This recording was deleted at the end of its retention period."),
            code="recording_deleted",
        )


def master_key(value: str) -> bytes | None:
    """The recording key from its setting (base64, 32 bytes); None when empty (no encryption)."""
    return decode_master_key(value) if value else None


def sealed_path(path: Path) -> Path:
    return path.with_name(path.name + SEALED_SUFFIX)


def stored_file(root: Path, relative: str) -> tuple[Path, bool] | None:
    """Where the archived file ``relative`` is on disk and whether it is sealed (a sealed copy
    wins: the plaintext beside it is only a crash's leftover); None when neither exists."""
    plain = root / relative
    sealed = sealed_path(plain)
    if sealed.is_file():
        return sealed, True
    if plain.is_file():
        return plain, False
    return None


def _sealed_sha256(path: Path, key: bytes) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open_sealed(path, key) as reader:
        for index in range(reader.chunks()):
            chunk = reader.chunk(index)
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class PlainReader:
    """The reading side ``DecryptingReader`` offers, for a file that is not sealed."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("rb")
        self.size = os.fstat(self._fh.fileno()).st_size

    def pread(self, position: int, limit: int) -> bytes:
        return os.pread(self._fh.fileno(), min(limit, 1 << 20), position)

    def close(self) -> None:
        self._fh.close()


def open_stored(root: Path, relative: str, key: bytes | None) -> PlainReader | DecryptingReader:
    """A blocking reader of the archived file's media bytes (decrypting a sealed one).
    ``FileNotFoundError`` when it is gone, ``KeyMissing``, or ``Unreadable`` when the first chunk
    does not decrypt (later chunks raise ``StoredFileError`` as they are read)."""
    found = stored_file(root, relative)
    if found is None:
        raise FileNotFoundError(relative)
    path, sealed = found
    if not sealed:
        return PlainReader(path)
    if key is None:
        raise KeyMissing()
    try:
        reader = open_sealed(path, key)
    except StoredFileError:
        raise Unreadable() from None
    try:
        reader.chunk(0)
    except StoredFileError:
        reader.close()
        raise Unreadable() from None
    return reader


async def _plaintext(path: Path, scratch: Path, key: bytes | None) -> Path:
    """``path`` while it is stored in plaintext, else a decrypted copy of its sealed file in
    ``scratch`` (ffmpeg reads files). ``KeyMissing`` without a key; ``StoredFileError`` when
    it does not decrypt."""
    if await asyncio.to_thread(path.is_file):
        return path
    if key is None:
        raise KeyMissing()
    copy = scratch / f"{path.parent.name}-{path.name}"
    await asyncio.to_thread(_unseal, sealed_path(path), copy, key)
    return copy


def _unseal(src: Path, dst: Path, key: bytes) -> None:
    dst.parent.mkdir(exist_ok=True)
    with open_sealed(src, key) as reader, dst.open("wb") as out:
        for index in range(reader.chunks()):
            out.write(reader.chunk(index))


def _seal_one(root: Path, relative: str, key: bytes) -> bool:
    """Seal one archived file and delete its plaintext; True when it did something. A crash
    may have come between sealing and deleting: a complete sealed copy (``seal_file`` renames
    it into place) that decrypts to the plaintext's bytes is kept and only the plaintext goes."""
    plain = root / relative
    if not plain.is_file():
        return False
    sealed = sealed_path(plain)
    keep = False
    if sealed.is_file():
        try:
            keep = _sealed_sha256(sealed, key) == sha256_of(plain)
        except StoredFileError:
            keep = False  # a copy under another key, or damaged: seal again
    if not keep:
        seal_file(plain, sealed, key)
    plain.unlink()
    fsync_dir(plain.parent)
    return True


async def seal_archived(root: Path, relatives: list[str], key: bytes) -> int:
    """Seal every listed archived file still stored as plaintext (just archived, left by a
    crash, or archived before a key was configured); how many were sealed."""
    done = 0
    for relative in relatives:
        try:
            done += await asyncio.to_thread(_seal_one, root, relative, key)
        except OSError:
            log.exception("recording %s could not be sealed; it stays as it is", relative)
    return done


# ---- archiving ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Candidate:
    """A file of a finished run, ready to be registered (hashed outside any transaction)."""

    path: Path
    kind: str
    media_type: str
    participant_id: int | None = None
    subroom: str = ""
    started_at: dt.datetime | None = None
    duration_s: float | None = None
    sha256: str = ""
    size: int = 0


async def _register(
    session: AsyncSession,
    root: Path,
    hearing_id: int,
    case_id: int,
    people: dict[int, str],
    found: _Candidate,
) -> RecordingFile:
    """Archive one file: the row with the hash taken before, and ``recording.archived``."""
    participant_id = found.participant_id if found.participant_id in people else None
    row = RecordingFile(
        hearing_id=hearing_id,
        case_id=case_id,
        kind=found.kind,
        participant_id=participant_id,
        participant_name=people[participant_id] if participant_id is not None else "",
        subroom=found.subroom,
        path=str(found.path.relative_to(root)),
        media_type=found.media_type,
        size=found.size,
        sha256=found.sha256,
        duration_s=found.duration_s,
        started_at=found.started_at,
    )
    session.add(row)
    await session.flush()
    await record(
        session,
        Actor.system("recorder"),
        AuditAction.RECORDING_ARCHIVED,
        object_type="recording_file",
        object_id=row.id,
        case_id=case_id,
        details={
            "hearing_id": hearing_id,
            "kind": found.kind,
            "file": row.path,
            "sha256": found.sha256,
            "size": found.size,
            "participant_id": row.participant_id,
            "duration_s": found.duration_s,
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
    return await _encode_mp4(out, args, video=bool(videos), audio=bool(audios))


async def _encode_mp4(out: Path, args: list[str], *, video: bool, audio: bool) -> bool:
    """Run ffmpeg (``args``: inputs, filters and maps) into ``out`` as H.264/AAC MP4, so every
    browser plays it. Made under another name and renamed when complete: a crash mid-way never
    leaves a truncated file under the archive's name (which the next archive run would trust).
    False when ffmpeg failed."""
    if video:
        args = [*args, "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30"]
        args += ["-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    part = out.with_name(f"{out.stem}.part{out.suffix}")
    args += ["-movflags", "+faststart", str(part)]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await proc.communicate()
    if proc.returncode != 0:
        log.error("making %s failed: %s", out, err.decode(errors="replace")[-800:])
        await asyncio.to_thread(part.unlink, missing_ok=True)
        return False
    await asyncio.to_thread(os.replace, part, out)
    return True


async def archive_hearing(
    maker: async_sessionmaker[AsyncSession],
    root: Path,
    hearing_id: int,
    *,
    key: bytes | None = None,
    wait_s: float = 3600.0,
) -> list[RecordingFile]:
    """Register every unregistered file of the hearing's finished runs, and each run's
    composite (made now when missing); with ``key``, then seal every archived file still stored
    as plaintext. Returns the rows it added. Files ffprobe cannot read are left in place and
    logged (never registered as evidence-grade). Waits up to ``wait_s`` for another archiver of
    the hearing to finish (``LockBusy`` after that).

    The slow work (ffprobe, the ffmpeg composite, hashing, sealing) runs outside any database
    transaction: on SQLite a write transaction would block every other writer for the whole
    compose. Each run's rows are then written in one short transaction, and sealing starts only
    after that commit, so what a crash interrupts is finished by the next call."""
    if not await asyncio.to_thread(hearing_dir(root, hearing_id).is_dir):
        return []
    async with maker() as session:
        hearing = await session.get(Hearing, hearing_id)
        if hearing is None:
            return []
        case_id = hearing.case_id
        people = {p.id: p.display_name for p in hearing.participants}
    async with hold(root, hearing_id, ARCHIVE_LOCK, wait_s):
        finished = await asyncio.to_thread(runs, root, hearing_id)
        recording: bool = await asyncio.to_thread(is_locked, root, hearing_id)
        if recording:
            finished = finished[:-1]  # the newest run is being recorded
        async with maker() as session:
            known = {
                row.path: row
                for row in (
                    await session.scalars(
                        select(RecordingFile).where(RecordingFile.hearing_id == hearing_id)
                    )
                ).all()
            }
        added: list[RecordingFile] = []
        for folder in finished:
            found = await _prepare_run(root, folder, known, key)
            if not found:
                continue
            async with transaction(maker) as session:
                rows = [
                    await _register(session, root, hearing_id, case_id, people, item)
                    for item in found
                ]
            added += rows
            known.update((row.path, row) for row in rows)
        if not recording and len(finished) > 1:
            whole = await _prepare_whole(maker, root, hearing_id, finished, known, key)
            if whole is not None:
                async with transaction(maker) as session:
                    row = await _register(session, root, hearing_id, case_id, people, whole)
                added.append(row)
                known[row.path] = row
        if key is not None:
            await seal_archived(
                root, [path for path, row in known.items() if row.deleted_at is None], key
            )
        return added


def _media_files(folder: Path) -> list[Path]:
    """The run's participant files by their media name, whether stored plain or sealed."""
    names = {p.name for p in folder.glob("p*.mkv")}
    names |= {p.name[: -len(SEALED_SUFFIX)] for p in folder.glob(f"p*.mkv{SEALED_SUFFIX}")}
    return [folder / name for name in sorted(names)]


def _read_timeline(folder: Path, key: bytes | None) -> dict[str, Any]:
    plain = folder / TIMELINE_NAME
    try:
        if plain.is_file():
            return dict(json.loads(plain.read_text() or "{}"))
        sealed = sealed_path(plain)
        if sealed.is_file() and key is not None:
            with open_sealed(sealed, key) as reader:
                data = b"".join(reader.chunk(i) for i in range(reader.chunks()))
            return dict(json.loads(data or b"{}"))
    except (ValueError, StoredFileError):
        log.error("timeline of %s is unreadable; start times come from the files", folder)
    return {}


async def _prepare_run(
    root: Path, folder: Path, known: dict[str, RecordingFile], key: bytes | None
) -> list[_Candidate]:
    """The run's files that are not registered yet, probed and hashed, with the composite made
    when it is missing. A composite made after the participants' files were sealed (an earlier
    compose failed) decrypts them into ``.unsealed/`` for ffmpeg and removes that after."""
    unsealed = folder / UNSEALED_DIR
    await asyncio.to_thread(shutil.rmtree, unsealed, True)  # a crash's leftover
    media = await asyncio.to_thread(_media_files, folder)
    composite = folder / COMPOSITE_NAME
    timeline_path = folder / TIMELINE_NAME
    need_composite = str(composite.relative_to(root)) not in known
    fresh = [p for p in media if str(p.relative_to(root)) not in known]
    timeline_fresh = str(timeline_path.relative_to(root)) not in known and await asyncio.to_thread(
        timeline_path.is_file
    )
    if not fresh and not timeline_fresh and not (need_composite and media):
        return []
    timeline = await asyncio.to_thread(_read_timeline, folder, key)
    starts = {f["file"]: (f.get("start"), f.get("subroom", "")) for f in timeline.get("files", [])}
    found: list[_Candidate] = []
    inputs: list[tuple[Path, float, Probe]] = []
    can_compose = need_composite
    try:
        for path in media:
            registered = known.get(str(path.relative_to(root)))
            if registered is not None and not need_composite:
                continue
            # A sealed file is registered already: only the composite needs it.
            try:
                source = await _plaintext(path, unsealed, key)
            except KeyMissing:
                log.error("cannot compose %s: its files are sealed and no key is set", folder)
                can_compose = False
                continue
            except StoredFileError:
                log.error("cannot compose %s: %s does not decrypt", folder, path.name)
                can_compose = False
                continue
            probed = await probe(source)
            if probed is None or not probed.kinds:
                log.error("recording %s is unreadable; not archived", path)
                continue
            if registered is not None and registered.started_at is not None:
                start_at = registered.started_at.timestamp()
            else:
                start, _subroom = starts.get(path.name, (None, ""))
                start_at = (
                    path.stat().st_mtime - (probed.duration_s or 0) if start is None else start
                )
            inputs.append((source, start_at, probed))
            if registered is None:
                subroom = starts.get(path.name, (None, ""))[1]
                found.append(
                    _Candidate(
                        path,
                        PARTICIPANT_FILE,
                        "video/x-matroska",
                        participant_id=int(path.name[1:].split("-", 1)[0]),
                        subroom=subroom or path.name.split("-")[1],
                        started_at=dt.datetime.fromtimestamp(start_at, dt.UTC),
                        duration_s=probed.duration_s,
                    )
                )
        if inputs and can_compose:
            first = min(start for _path, start, _probe in inputs)
            shifted = [(path, start - first, probed) for path, start, probed in inputs]
            if composite.exists() or await compose(composite, shifted):
                made = await probe(composite)
                if made is not None:
                    found.append(
                        _Candidate(
                            composite,
                            COMPOSITE_FILE,
                            "video/mp4",
                            started_at=dt.datetime.fromtimestamp(first, dt.UTC),
                            duration_s=made.duration_s,
                        )
                    )
    finally:
        await asyncio.to_thread(shutil.rmtree, unsealed, True)
    if timeline_fresh:
        found.append(_Candidate(timeline_path, TIMELINE_FILE, "application/json"))
    for item in found:
        await asyncio.to_thread(_fsync, item.path)
        item.sha256, item.size = await asyncio.to_thread(sha256_of, item.path)
    return found


async def _video_size(path: Path) -> tuple[int, int] | None:
    proc = await asyncio.create_subprocess_exec(
        *["ffprobe", "-v", "error", "-select_streams", "v:0"],
        *["-show_entries", "stream=width,height", "-of", "json", str(path)],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _err = await proc.communicate()
    streams = json.loads(out or b"{}").get("streams", []) if proc.returncode == 0 else []
    if not streams or not streams[0].get("width"):
        return None
    return int(streams[0]["width"]), int(streams[0]["height"])


async def join_runs(out: Path, inputs: list[tuple[Path, Probe]]) -> bool:
    """One playable file of a hearing recorded in several runs (recording stopped and started
    again, or a recorder replaced after a crash): the runs' composites one after the other,
    each padded to the largest picture; a run without pictures (or sound) shows black (or is
    silent) for its length. Same codecs as ``compose``; False when ffmpeg failed."""
    sizes = [await _video_size(path) for path, _probe in inputs]
    has_video = any(size is not None for size in sizes)
    has_audio = any("audio" in found.kinds for _path, found in inputs)
    width = max((w for w, _h in filter(None, sizes)), default=TILE[0])
    height = max((h for _w, h in filter(None, sizes)), default=TILE[1])
    width, height = width + width % 2, height + height % 2
    args = ["ffmpeg", "-v", "error", "-y"]
    filters: list[str] = []
    labels = ""
    for i, ((path, found), size) in enumerate(zip(inputs, sizes, strict=True)):
        args += ["-i", str(path)]
        length = f"{found.duration_s or 0:.3f}"
        if has_video:
            filters.append(
                f"[{i}:v]fps={COMPOSITE_FPS},scale={width}:{height}:force_original_aspect_ratio="
                f"decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
                f"tpad=stop=-1:stop_mode=clone,trim=duration={length},setpts=PTS-STARTPTS[v{i}]"
                if size is not None
                else f"color=c=black:s={width}x{height}:r={COMPOSITE_FPS}:d={length},setsar=1[v{i}]"
            )
            labels += f"[v{i}]"
        if has_audio:
            filters.append(
                f"[{i}:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,"
                f"apad,atrim=duration={length},asetpts=PTS-STARTPTS[a{i}]"
                if "audio" in found.kinds
                else f"anullsrc=r=48000:cl=stereo,atrim=duration={length},"
                f"aformat=sample_fmts=fltp[a{i}]"
            )
            labels += f"[a{i}]"
    filters.append(
        f"{labels}concat=n={len(inputs)}:v={int(has_video)}:a={int(has_audio)}"
        + ("[vout]" if has_video else "")
        + ("[aout]" if has_audio else "")
    )
    args += ["-filter_complex", ";".join(filters)]
    args += ["-map", "[vout]"] if has_video else []
    args += ["-map", "[aout]"] if has_audio else []
    return await _encode_mp4(out, args, video=has_video, audio=has_audio)


async def _prepare_whole(
    maker: async_sessionmaker[AsyncSession],
    root: Path,
    hearing_id: int,
    finished: list[Path],
    known: dict[str, RecordingFile],
    key: bytes | None,
) -> _Candidate | None:
    """The hearing's one playable file when it was recorded in several runs: made once the
    hearing has ended (no run can follow) from the runs' archived composites, in order."""
    out = hearing_dir(root, hearing_id) / COMPOSITE_NAME
    if str(out.relative_to(root)) in known:
        return None
    async with maker() as session:
        ended = await session.scalar(select(Hearing.ended_at).where(Hearing.id == hearing_id))
    if ended is None:
        return None
    parts = [
        row
        for folder in finished
        if (row := known.get(str((folder / COMPOSITE_NAME).relative_to(root)))) is not None
        and row.deleted_at is None
    ]
    if len(parts) < 2:
        return None  # one recorded run: its composite is the hearing's file
    unsealed = hearing_dir(root, hearing_id) / UNSEALED_DIR
    await asyncio.to_thread(shutil.rmtree, unsealed, True)
    try:
        inputs: list[tuple[Path, Probe]] = []
        for row in parts:
            try:
                source = await _plaintext(root / row.path, unsealed, key)
            except KeyMissing:
                log.error("cannot join the runs of hearing %s: no key is set", hearing_id)
                return None
            except StoredFileError:
                log.error("cannot join the runs of hearing %s: %s", hearing_id, row.path)
                return None
            found = await probe(source)
            if found is None or not found.kinds:
                log.error("cannot join the runs of hearing %s: %s unreadable", hearing_id, source)
                return None
            inputs.append((source, found))
        if not (out.exists() or await join_runs(out, inputs)):
            return None
    finally:
        await asyncio.to_thread(shutil.rmtree, unsealed, True)
    made = await probe(out)
    if made is None:
        return None
    whole = _Candidate(
        out, HEARING_FILE, "video/mp4", started_at=parts[0].started_at, duration_s=made.duration_s
    )
    await asyncio.to_thread(_fsync, out)
    whole.sha256, whole.size = await asyncio.to_thread(sha256_of, out)
    return whole


# ---- checking and expiring -------------------------------------------------------------------------

MISSING = "missing"
CHANGED = "changed"
KEY_MISSING = "key_missing"


def check_file(root: Path, row: RecordingFile, key: bytes | None) -> tuple[str, str]:
    """Re-hash one archived file (blocking). ``("", "")`` when it matches its row, else a
    problem (``missing``, ``changed`` — which includes a sealed file that does not decrypt —
    or ``key_missing``) and a sentence naming it."""
    found = stored_file(root, row.path)
    if found is None:
        return MISSING, "file missing"
    path, sealed = found
    if sealed and key is None:
        return KEY_MISSING, (
            "stored encrypted, but YUNTIAO_RECORDING_ENCRYPTION_KEY is not set: key missing"
        )
    try:
        sha256, size = _sealed_sha256(path, key) if sealed and key else sha256_of(path)
    except StoredFileError as exc:
        return CHANGED, f"changed since archived (the encrypted file does not decrypt: {exc})"
    if sha256 != row.sha256 or size != row.size:
        return CHANGED, (
            f"changed since archived (sha256 {sha256[:16]}…, {size} bytes; "
            f"archived {row.sha256[:16]}…, {row.size} bytes)"
        )
    return "", ""


@dataclasses.dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(
    session: AsyncSession,
    root: Path,
    hearing_id: int | None = None,
    *,
    key: bytes | None = None,
) -> VerifyReport:
    """Re-hash every archived file that is not deleted (decrypting sealed ones); name each
    missing, changed or undecryptable one."""
    query = select(RecordingFile).where(RecordingFile.deleted_at.is_(None))
    if hearing_id is not None:
        query = query.where(RecordingFile.hearing_id == hearing_id)
    report = VerifyReport()
    for row in (await session.scalars(query.order_by(RecordingFile.id))).all():
        report.checked += 1
        problem, text = await asyncio.to_thread(check_file, root, row, key)
        if problem:
            report.problems.append(f"recording {row.id} ({row.path}): {text}")
    return report


def _delete_stored(root: Path, relative: str) -> None:
    plain = root / relative
    sealed = sealed_path(plain)
    for path in (plain, sealed, sealed.with_name(sealed.name + ".part")):
        path.unlink(missing_ok=True)


async def purge(
    session: AsyncSession, root: Path, retention_days: int, now: dt.datetime | None = None
) -> list[RecordingFile]:
    """Delete the files older than the retention period (sealed copy and any plaintext left
    beside it), except those under legal hold; the rows stay (with ``deleted_at``) so the
    archive still says what existed. Audited."""
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
    by_hearing: dict[int, list[RecordingFile]] = {}
    for row in rows:
        by_hearing.setdefault(row.hearing_id, []).append(row)
    deleted: list[RecordingFile] = []
    for hearing_id, hearing_rows in by_hearing.items():
        # Never delete under an archiver that is sealing the same files (its sealed copy would
        # outlive the purge); the next run of the job takes what is skipped now.
        try:
            async with hold(root, hearing_id, ARCHIVE_LOCK, wait_s=0):
                for row in hearing_rows:
                    await asyncio.to_thread(_delete_stored, root, row.path)
                    row.deleted_at = now
                    await record(
                        session,
                        Actor.system("retention"),
                        AuditAction.RECORDING_DELETED,
                        object_type="recording_file",
                        object_id=row.id,
                        case_id=row.case_id,
                        details={
                            "file": row.path,
                            "sha256": row.sha256,
                            "retention_days": retention_days,
                        },
                    )
                    deleted.append(row)
        except LockBusy:
            log.info("hearing %s is being archived; its expired recordings wait", hearing_id)
    await session.flush()
    return deleted
