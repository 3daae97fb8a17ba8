"""Evidence files at rest, behind a small interface (``EvidenceStore``): open a writer, read a
range, delete. The local-directory implementation encrypts every file with AES-256-GCM
(``cryptography``'s ``AESGCM``) in fixed-size chunks.

Format of a stored file (version 1)::

    header  = b"YTEVID\\x00\\x01" | chunk size (u32, big-endian) | file nonce (16 random bytes)
    chunk i = AESGCM(file key).encrypt(nonce_i, plaintext[i*size:(i+1)*size], aad_i)  (+16-byte tag)

- The *file key* is HKDF-SHA256(master key, salt = file nonce, info = "yuntiao/evidence/chunk/v1"):
  every file has its own key, derived from the random file nonce, so the per-chunk nonce can simply
  be the chunk index (``nonce_i`` = 4 zero bytes | i as u64) and never repeats under one key.
- ``aad_i`` = header | i (u64) | final flag (1 byte). Chunks therefore cannot be reordered, moved
  to another file, or dropped from the end: the last chunk must carry the final flag, and one
  that does not (a file truncated at a chunk boundary) fails to decrypt. Every file has exactly one
  final chunk, possibly empty.

An unfinished upload lives in ``pending/<id>.part`` (header + full, non-final chunks) and
``pending/<id>.tail``: the plaintext received after the last full chunk, encrypted under a second
derived key with a random nonce, together with the number of chunks it follows. A checkpoint
fsyncs ``.part`` and then replaces ``.tail`` atomically, so after a crash the pair always
describes a prefix of the upload that is on disk (``.part`` is cut back to what ``.tail`` says).
``commit`` writes the final chunk, fsyncs, and renames the file to ``blobs/<ab>/<id>``, fsyncing
both directories. Paths are made only of ids (hex), never of a file name a person chose.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import io
import os
import re
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"YTEVID\x00\x01"
TAIL_MAGIC = b"YTEVTL\x00\x01"
CHUNK_SIZE = 1 << 20
TAG_SIZE = 16
NONCE_SIZE = 16
HEADER_SIZE = len(MAGIC) + 4 + NONCE_SIZE
_BLOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")

# Receives each plaintext chunk once, in order, in a worker thread (hashing, sniffing).
Observer = Callable[[bytes | memoryview], None]


class StoredFileError(Exception):
    """A stored file does not decrypt or is shaped wrongly: changed, truncated or swapped."""


class BlobWriter(Protocol):
    """Appends plaintext to one unfinished file. ``offset`` counts the bytes accepted so far;
    ``durable_offset`` those a crash would keep (up to the last ``checkpoint``)."""

    @property
    def offset(self) -> int: ...

    @property
    def durable_offset(self) -> int: ...

    @property
    def chunks_observed(self) -> int:
        """Full chunks handed to the observer so far (the tail has not been)."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def checkpoint(self) -> None:
        """Make everything accepted so far durable: a resumed writer starts at this offset."""
        ...

    async def commit(self) -> int:
        """Write the final chunk, fsync file and directory, make the file readable; its size."""
        ...

    async def close(self) -> None:
        """Release the file handle; what was not checkpointed is lost."""
        ...

    def replay(self) -> AsyncIterator[bytes]:
        """The plaintext of the full chunks already written (to rebuild a hash after a restart)."""
        ...

    def set_observer(self, observer: Observer) -> None: ...

    @property
    def buffered(self) -> bytes:
        """Accepted plaintext after the last full chunk (not yet observed)."""
        ...


class EvidenceStore(Protocol):
    """Where evidence files live. Ids are opaque hex strings chosen by the caller."""

    async def open_writer(self, blob_id: str) -> BlobWriter:
        """Create the unfinished file ``blob_id``, or resume it at its durable offset."""
        ...

    async def pending_offset(self, blob_id: str) -> int:
        """Durable offset of an unfinished file (0 when nothing was checkpointed)."""
        ...

    def read(self, blob_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Plaintext bytes ``start`` ≤ i < ``end`` of a committed file, streamed."""
        ...

    def open_reader(self, blob_id: str) -> io.RawIOBase:
        """A blocking, seekable plaintext reader (for container inspection in a thread)."""
        ...

    async def size(self, blob_id: str) -> int: ...

    async def exists(self, blob_id: str) -> bool: ...

    async def delete(self, blob_id: str) -> None:
        """Remove the committed or unfinished file ``blob_id`` (no error if absent)."""
        ...


def new_blob_id() -> str:
    return os.urandom(16).hex()


def check_blob_id(blob_id: str) -> str:
    if not _BLOB_ID_RE.match(blob_id):
        raise ValueError("blob ids are 32 lowercase hex characters")
    return blob_id


def _derive(master: bytes, salt: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=label).derive(master)


def _chunk_nonce(index: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", index)


def _chunk_aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (fsync of the directory itself)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int) -> None:
    """One writer per unfinished file, across processes: ``BlockingIOError`` if it is taken."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Keys:
    def __init__(self, master: bytes, header: bytes) -> None:
        if header[: len(MAGIC)] != MAGIC or len(header) != HEADER_SIZE:
            raise StoredFileError("not an evidence file (bad header)")
        (self.chunk_size,) = struct.unpack(">I", header[len(MAGIC) : len(MAGIC) + 4])
        if not 4096 <= self.chunk_size <= 64 << 20:
            raise StoredFileError("bad chunk size in header")
        nonce = header[len(MAGIC) + 4 :]
        self.header = header
        self.chunks = AESGCM(_derive(master, nonce, b"yuntiao/evidence/chunk/v1"))
        self.tail = AESGCM(_derive(master, nonce, b"yuntiao/evidence/tail/v1"))

    @property
    def stored_chunk(self) -> int:
        return self.chunk_size + TAG_SIZE

    def seal_chunk(self, index: int, plain: bytes | memoryview, final: bool) -> bytes:
        """Chunk ``index`` encrypted, bound to the header, its position and whether it is last."""
        return self.chunks.encrypt(
            _chunk_nonce(index), plain, _chunk_aad(self.header, index, final)
        )


def decode_master_key(master_key_b64: str) -> bytes:
    """The 32-byte master key from its base64 form (the settings' format); ``ValueError`` else."""
    try:
        key = base64.b64decode(master_key_b64, validate=True)
    except (ValueError, TypeError):
        raise ValueError("encryption key must be 32 bytes, base64-encoded") from None
    if len(key) != 32:
        raise ValueError("encryption key must be 32 bytes, base64-encoded")
    return key


def seal_file(
    src: Path,
    dst: Path,
    master: bytes,
    *,
    chunk_size: int = CHUNK_SIZE,
    observer: Observer | None = None,
) -> int:
    """Encrypt the plaintext file ``src`` into ``dst`` in the stored-file format above (blocking;
    run it in a thread). Written to ``dst.part``, fsynced and renamed, then the directory is
    fsynced: ``dst`` is either absent or complete. ``observer`` sees each plaintext chunk (to hash
    what was sealed). ``src`` is left alone. Returns the plaintext size."""
    header = MAGIC + struct.pack(">I", chunk_size) + os.urandom(NONCE_SIZE)
    keys = _Keys(master, header)
    part = dst.with_name(dst.name + ".part")
    size = 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, header)
        with src.open("rb") as fh:
            current = fh.read(chunk_size)
            index = 0
            while True:
                # Read one chunk ahead: only then is it known whether this one is the final one.
                following = fh.read(chunk_size) if len(current) == chunk_size else b""
                final = not following
                if observer is not None:
                    observer(current)
                size += len(current)
                _write_all(fd, keys.seal_chunk(index, current, final))
                if final:
                    break
                current, index = following, index + 1
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        part.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(part, dst)
    fsync_dir(dst.parent)
    return size


def open_sealed(path: Path, master: bytes) -> DecryptingReader:
    """A blocking, seekable plaintext reader of a file ``seal_file`` (or the store) wrote;
    ``StoredFileError`` when it does not decrypt under ``master``."""
    return DecryptingReader(path, master)


class LocalEvidenceStore:
    """Files under ``root`` (``blobs/`` and ``pending/``), encrypted under ``master_key_b64``."""

    def __init__(self, root: Path, master_key_b64: str, chunk_size: int = CHUNK_SIZE) -> None:
        self._master = decode_master_key(master_key_b64)
        self.root = root
        self.chunk_size = chunk_size
        self.blobs = root / "blobs"
        self.pending = root / "pending"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.pending.mkdir(parents=True, exist_ok=True)

    # ---- paths -------------------------------------------------------------------------------

    def blob_path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.blobs / blob_id[:2] / blob_id

    def _part(self, blob_id: str) -> Path:
        return self.pending / f"{check_blob_id(blob_id)}.part"

    def _tail(self, blob_id: str) -> Path:
        return self.pending / f"{check_blob_id(blob_id)}.tail"

    def blob_ids(self) -> list[str]:
        """Committed file ids (for verification)."""
        return sorted(p.name for p in self.blobs.glob("??/*") if _BLOB_ID_RE.match(p.name))

    # ---- writing -----------------------------------------------------------------------------

    async def open_writer(self, blob_id: str) -> LocalBlobWriter:
        return await asyncio.to_thread(self._open_writer, blob_id)

    def _open_writer(self, blob_id: str) -> LocalBlobWriter:
        part = self._part(blob_id)
        if self.blob_path(blob_id).exists():
            raise FileExistsError(f"evidence file {blob_id} is already committed")
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = os.open(part, os.O_RDWR)
            try:
                _lock(fd)
                header = os.pread(fd, HEADER_SIZE, 0)
                keys = _Keys(self._master, header)
                chunks, tail = self._read_tail(blob_id, keys)
                end = HEADER_SIZE + chunks * keys.stored_chunk
                if os.fstat(fd).st_size < end:
                    raise StoredFileError(
                        f"unfinished evidence file {blob_id} is shorter than its tail says"
                    )
                # Anything after the checkpoint was never acknowledged: cut it off.
                os.ftruncate(fd, end)
                os.lseek(fd, end, os.SEEK_SET)
            except BaseException:
                os.close(fd)
                raise
            return LocalBlobWriter(self, blob_id, fd, keys, chunks, tail)
        try:
            _lock(fd)
            header = MAGIC + struct.pack(">I", self.chunk_size) + os.urandom(NONCE_SIZE)
            _write_all(fd, header)
            os.fsync(fd)
            fsync_dir(self.pending)
        except BaseException:
            os.close(fd)
            raise
        return LocalBlobWriter(self, blob_id, fd, _Keys(self._master, header), 0, b"")

    def _read_tail(self, blob_id: str, keys: _Keys) -> tuple[int, bytes]:
        try:
            raw = self._tail(blob_id).read_bytes()
        except FileNotFoundError:
            return 0, b""
        if len(raw) < len(TAIL_MAGIC) + 8 + 12 + TAG_SIZE or raw[: len(TAIL_MAGIC)] != TAIL_MAGIC:
            raise StoredFileError(f"damaged tail of unfinished evidence file {blob_id}")
        prefix = raw[: len(TAIL_MAGIC) + 8]
        (chunks,) = struct.unpack(">Q", prefix[len(TAIL_MAGIC) :])
        nonce = raw[len(prefix) : len(prefix) + 12]
        try:
            tail = keys.tail.decrypt(nonce, raw[len(prefix) + 12 :], prefix + keys.header)
        except InvalidTag:
            raise StoredFileError(f"damaged tail of unfinished evidence file {blob_id}") from None
        return chunks, tail

    def _write_tail(self, blob_id: str, keys: _Keys, chunks: int, tail: bytes) -> None:
        prefix = TAIL_MAGIC + struct.pack(">Q", chunks)
        nonce = os.urandom(12)
        data = prefix + nonce + keys.tail.encrypt(nonce, tail, prefix + keys.header)
        path = self._tail(blob_id)
        tmp = path.with_suffix(".tail-new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(self.pending)

    async def pending_offset(self, blob_id: str) -> int:
        def offset() -> int:
            try:
                with self._part(blob_id).open("rb") as fh:
                    keys = _Keys(self._master, fh.read(HEADER_SIZE))
            except FileNotFoundError:
                return 0
            chunks, tail = self._read_tail(blob_id, keys)
            return chunks * keys.chunk_size + len(tail)

        return await asyncio.to_thread(offset)

    # ---- reading -----------------------------------------------------------------------------

    def open_reader(self, blob_id: str) -> DecryptingReader:
        return DecryptingReader(self.blob_path(blob_id), self._master)

    async def size(self, blob_id: str) -> int:
        def size() -> int:
            with self.open_reader(blob_id) as reader:
                return reader.size

        return await asyncio.to_thread(size)

    async def exists(self, blob_id: str) -> bool:
        return await asyncio.to_thread(self.blob_path(blob_id).exists)

    async def read(
        self, blob_id: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        reader = await asyncio.to_thread(self.open_reader, blob_id)
        try:
            stop = reader.size if end is None else min(end, reader.size)
            position = max(0, start)
            while position < stop:
                piece = await asyncio.to_thread(reader.pread, position, stop - position)
                if not piece:
                    break
                position += len(piece)
                yield piece
        finally:
            reader.close()

    async def delete(self, blob_id: str) -> None:
        def delete() -> None:
            for path in (self.blob_path(blob_id), self._part(blob_id), self._tail(blob_id)):
                path.unlink(missing_ok=True)

        await asyncio.to_thread(delete)


class LocalBlobWriter:
    """See ``BlobWriter``. Encryption, the observer and the disk write of each full chunk run in
    a worker thread, one chunk behind the caller, so reading the network overlaps the work."""

    def __init__(
        self,
        store: LocalEvidenceStore,
        blob_id: str,
        fd: int,
        keys: _Keys,
        chunks: int,
        tail: bytes,
    ) -> None:
        self._store = store
        self.blob_id = blob_id
        self._fd: int | None = fd
        self._keys = keys
        self._chunks = chunks  # full chunks accepted (in the file or in flight)
        # Accepted bytes after the last full chunk, as received: joined once per chunk, so each
        # byte is copied once on its way to the cipher (the pieces are the socket's own buffers).
        self._pieces: list[bytes | memoryview] = [tail] if tail else []
        self._pending = len(tail)
        self._durable = chunks * keys.chunk_size + len(tail)
        self._observer: Observer | None = None
        self._observed = chunks  # chunks the current observer has seen
        self._in_flight: asyncio.Future[None] | None = None

    @property
    def offset(self) -> int:
        return self._chunks * self._keys.chunk_size + self._pending

    @property
    def durable_offset(self) -> int:
        return self._durable

    @property
    def chunks_observed(self) -> int:
        return self._observed

    def set_observer(self, observer: Observer) -> None:
        self._observer = observer

    @property
    def buffered(self) -> bytes:
        return b"".join(self._pieces)

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError("writer is closed")
        return self._fd

    def _encrypt_and_write(self, block: memoryview, first: int) -> None:
        size = self._keys.chunk_size
        fd = self._fileno()
        for n in range(len(block) // size):
            plain = block[n * size : (n + 1) * size]
            if self._observer is not None:
                self._observer(plain)
            index = first + n
            _write_all(fd, self._keys.seal_chunk(index, plain, False))
            self._observed = index + 1

    async def _settle(self) -> None:
        if self._in_flight is not None:
            pending, self._in_flight = self._in_flight, None
            await pending

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._pieces.append(data)
        self._pending += len(data)
        size = self._keys.chunk_size
        # Keep at least one byte back: only ``commit`` knows which chunk is the final one.
        if self._pending <= size:
            return
        joined = b"".join(self._pieces)
        count = (len(joined) - 1) // size
        view = memoryview(joined)
        rest = view[count * size :]
        self._pieces = [rest]
        self._pending = len(rest)
        await self._settle()
        first = self._chunks
        self._chunks += count
        loop = asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(
            None, self._encrypt_and_write, view[: count * size], first
        )

    async def checkpoint(self) -> None:
        await self._settle()
        fd, chunks, tail = self._fileno(), self._chunks, self.buffered

        def sync() -> None:
            os.fsync(fd)
            self._store._write_tail(self.blob_id, self._keys, chunks, tail)

        await asyncio.to_thread(sync)
        self._durable = chunks * self._keys.chunk_size + len(tail)

    async def commit(self) -> int:
        await self._settle()
        fd, index, last = self._fileno(), self._chunks, self.buffered
        size = self.offset
        store, blob_id = self._store, self.blob_id

        def finish() -> None:
            if self._observer is not None:
                self._observer(last)
            _write_all(fd, self._keys.seal_chunk(index, last, True))
            os.fsync(fd)
            target = store.blob_path(blob_id)
            target.parent.mkdir(exist_ok=True)
            os.rename(store._part(blob_id), target)
            fsync_dir(target.parent)
            fsync_dir(store.blobs)
            store._tail(blob_id).unlink(missing_ok=True)
            fsync_dir(store.pending)

        await asyncio.to_thread(finish)
        self._chunks += 1
        self._pieces, self._pending = [], 0
        self._durable = size
        await self.close()
        return size

    async def close(self) -> None:
        try:
            await self._settle()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    async def replay(self) -> AsyncIterator[bytes]:
        fd, keys = self._fileno(), self._keys
        for index in range(self._chunks):

            def chunk(i: int = index) -> bytes:
                offset = HEADER_SIZE + i * keys.stored_chunk
                sealed = os.pread(fd, keys.stored_chunk, offset)
                try:
                    return keys.chunks.decrypt(
                        _chunk_nonce(i), sealed, _chunk_aad(keys.header, i, False)
                    )
                except InvalidTag:
                    raise StoredFileError(
                        f"unfinished evidence file {self.blob_id}: chunk {i} does not decrypt"
                    ) from None

            yield await asyncio.to_thread(chunk)


class DecryptingReader(io.RawIOBase):
    """Blocking, seekable plaintext view of a committed file; raises ``StoredFileError`` on any
    chunk that does not authenticate (changed byte, truncation, reordering)."""

    def __init__(self, path: Path, master: bytes) -> None:
        super().__init__()
        self._fh = path.open("rb")
        try:
            self._keys = _Keys(master, self._fh.read(HEADER_SIZE))
            body = os.fstat(self._fh.fileno()).st_size - HEADER_SIZE
            stored = self._keys.stored_chunk
            self._count = -(-body // stored) if body > 0 else 0
            if self._count == 0:
                raise StoredFileError(f"{path.name}: no chunks (truncated)")
            last = body - (self._count - 1) * stored
            if last < TAG_SIZE:
                raise StoredFileError(f"{path.name}: last chunk is truncated")
            self.size = (self._count - 1) * self._keys.chunk_size + last - TAG_SIZE
        except BaseException:
            self._fh.close()
            raise
        self._name = path.name
        self._position = 0
        self._cached: tuple[int, bytes] | None = None

    def chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        stored = self._keys.stored_chunk
        sealed = os.pread(self._fh.fileno(), stored, HEADER_SIZE + index * stored)
        final = index == self._count - 1
        try:
            plain = self._keys.chunks.decrypt(
                _chunk_nonce(index), sealed, _chunk_aad(self._keys.header, index, final)
            )
        except InvalidTag:
            raise StoredFileError(
                f"{self._name}: chunk {index} does not decrypt (changed or truncated)"
            ) from None
        self._cached = (index, plain)
        return plain

    def pread(self, position: int, limit: int) -> bytes:
        """Up to ``limit`` bytes at ``position``, never crossing a chunk boundary."""
        if position >= self.size or limit <= 0:
            return b""
        index, within = divmod(position, self._keys.chunk_size)
        return self.chunk(index)[within : within + limit]

    def chunks(self) -> int:
        return self._count

    # io.RawIOBase
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        piece = self.pread(self._position, len(buffer))
        buffer[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()
