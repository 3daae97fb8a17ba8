"""Thumbnails and first-page previews of evidence, made once per item and stored encrypted like
the item itself (a blob of the same store, named in ``EvidencePreview``).

- images: Pillow (it comes with reportlab), turned upright by their EXIF orientation;
- PDF: the first page by ``pdftoppm`` (poppler-utils);
- video: a frame by ``ffmpeg``.

The decrypted bytes go to the tool through a pipe, never to a file on disk. A video whose index
sits at its end (common for phone recordings) cannot be read through a pipe: it then simply has
no preview, like audio, office documents, text, archives and HEIC photos; pages show an icon of
the kind of file instead. Every tool runs with a timeout; a failure is recorded as "unavailable"
(with the reason, for the logs) and never retried, so a hostile file costs at most one timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.uow import transaction
from evidence.models import EvidenceItem, EvidencePreview
from evidence.storage import EvidenceStore, LocalEvidenceStore, new_blob_id

log = logging.getLogger("yuntiao")

READY = "ready"
UNAVAILABLE = "unavailable"
WIDTH = 320
TIMEOUT_S = 20.0
MAX_PREVIEW_BYTES = 4 << 20
MAX_IMAGE_PIXELS = 80_000_000  # ~ a 10 000 × 8 000 photo; larger is refused, not decoded
PREVIEW_MEDIA_TYPE = "image/png"

IMAGE_TYPES = frozenset({"jpeg", "png", "gif", "webp"})
VIDEO_TYPES = frozenset({"mp4", "webm", "mov"})


@dataclass(frozen=True)
class Made:
    png: bytes | None
    detail: str


def _image_thumbnail(store: LocalEvidenceStore, blob_id: str) -> Made:
    from PIL import Image, ImageOps

    with io.BufferedReader(store.open_reader(blob_id)) as fh, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(fh) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    return Made(None, "image too large to preview")
                image.draft("RGB", (WIDTH * 2, WIDTH * 2))
                upright = ImageOps.exif_transpose(image)
                upright.thumbnail((WIDTH, WIDTH))
                out = io.BytesIO()
                upright.convert("RGB").save(out, "PNG", optimize=True)
                return Made(out.getvalue(), "")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
            return Made(None, f"image not decodable: {exc}"[:200])


async def _pipe(cmd: list[str], chunks: AsyncIterator[bytes]) -> Made:
    """Feed ``chunks`` to ``cmd`` and return what it prints (a PNG), within ``TIMEOUT_S``."""
    if shutil.which(cmd[0]) is None:
        return Made(None, f"{cmd[0]} is not installed")
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def feed() -> None:
        try:
            async for chunk in chunks:
                stdin.write(chunk)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the tool has what it needs (ffmpeg stops after one frame)
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.close()
                await stdin.wait_closed()

    feeder = asyncio.create_task(feed())
    try:
        out = await asyncio.wait_for(stdout.read(MAX_PREVIEW_BYTES + 1), TIMEOUT_S)
        code = await asyncio.wait_for(proc.wait(), TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Made(None, f"{cmd[0]} timed out")
    except BaseException:  # cancelled (server shutting down): leave no process behind
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    if code != 0 or not out.startswith(b"\x89PNG") or len(out) > MAX_PREVIEW_BYTES:
        return Made(None, f"{cmd[0]} made no preview (exit {code})")
    return Made(out, "")


async def make(store: LocalEvidenceStore, item: EvidenceItem) -> Made:
    """The preview PNG of ``item`` (or why there is none)."""
    if item.file_type in IMAGE_TYPES:
        return await asyncio.to_thread(_image_thumbnail, store, item.blob_id)
    if item.file_type == "pdf":
        cmd = ["pdftoppm", "-f", "1", "-l", "1", "-scale-to", str(WIDTH), "-png", "-singlefile"]
        return await _pipe([*cmd, "-"], store.read(item.blob_id))
    if item.file_type in VIDEO_TYPES:
        return await _pipe(
            [
                "ffmpeg", "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-frames:v", "1",
                "-vf", f"scale={WIDTH}:-2", "-f", "image2pipe", "-vcodec", "png", "pipe:1",
            ],
            store.read(item.blob_id),
        )  # fmt: skip
    return Made(None, "no preview for this kind of file")


async def ensure(
    maker: async_sessionmaker[AsyncSession],
    store: LocalEvidenceStore,
    locks: dict[int, asyncio.Lock],
    item: EvidenceItem,
) -> EvidencePreview:
    """The item's preview row, making (and storing) the preview the first time it is asked for.
    One maker per item in this process (``locks``, kept by the runtime); across processes the
    primary key decides and the loser drops its copy."""
    lock = locks.setdefault(item.id, asyncio.Lock())
    try:
        async with lock:
            async with transaction(maker) as session:
                found = await session.get(EvidencePreview, item.id)
                if found is not None:
                    return found
            made = await make(store, item)
            blob_id = await _store(store, made.png) if made.png is not None else None
            if made.png is None:
                log.info("no preview for evidence item %s: %s", item.id, made.detail)
            try:
                async with transaction(maker) as session:
                    row = EvidencePreview(
                        item_id=item.id,
                        status=READY if blob_id else UNAVAILABLE,
                        blob_id=blob_id,
                        media_type=PREVIEW_MEDIA_TYPE,
                        detail=made.detail[:200],
                    )
                    session.add(row)
                return row
            except IntegrityError:
                if blob_id is not None:
                    await store.delete(blob_id)
                async with transaction(maker) as session:
                    theirs = await session.get(EvidencePreview, item.id)
                    assert theirs is not None
                    return theirs
    finally:
        if not lock.locked():
            locks.pop(item.id, None)


async def _store(store: EvidenceStore, data: bytes) -> str:
    blob_id = new_blob_id()
    writer = await store.open_writer(blob_id)
    try:
        await writer.write(data)
        await writer.commit()
    finally:
        await writer.close()
    return blob_id


async def read(store: LocalEvidenceStore, preview: EvidencePreview) -> bytes:
    assert preview.blob_id is not None
    return b"".join([piece async for piece in store.read(preview.blob_id)])
