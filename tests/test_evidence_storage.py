"""Evidence at rest: chunked AES-256-GCM round trips, tamper detection (changed byte, truncation,
reordered chunks), resumable writers (checkpoint, crash, flock), ids as paths; the Merkle
ledger's proofs against an independent verifier; and file types decided by content."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from evidence import filetypes, ledger
from evidence.errors import UnsupportedType
from evidence.storage import (
    HEADER_SIZE,
    TAG_SIZE,
    LocalEvidenceStore,
    StoredFileError,
    decode_master_key,
    open_sealed,
    seal_file,
)
from tests.test_evidence_support import (
    consistency_roots,
    docx_bytes,
    leaf,
    mth,
    ole_bytes,
    root_from_path,
    zip_of,
)

KEY = base64.b64encode(b"e" * 32).decode()
CHUNK = 4096


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_seal_file_round_trip_and_tamper(tmp_path: Path, size: int) -> None:
    """``seal_file`` (used for recordings) writes the store's format: ranges across chunk
    boundaries read back the original bytes; a changed byte or a cut-off end fails."""
    data = os.urandom(size)
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(data)
    seen = hashlib.sha256()
    master = decode_master_key(KEY)
    assert seal_file(src, dst, master, chunk_size=CHUNK, observer=seen.update) == size
    assert seen.hexdigest() == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "sealed.part").exists()
    with open_sealed(dst, master) as reader:
        assert reader.size == size and reader.read() == data
        start = max(0, CHUNK - 10)
        piece = b""
        while len(piece) < 20 and (more := reader.pread(start + len(piece), 20 - len(piece))):
            piece += more  # a raw reader stops at a chunk boundary; the range goes on
        assert piece == data[start : CHUNK + 10]
    sealed = dst.read_bytes()
    for broken in (sealed[:-1], sealed[: HEADER_SIZE + CHUNK + TAG_SIZE] if size > CHUNK else b""):
        if not broken:
            continue
        dst.write_bytes(broken)
        with pytest.raises(StoredFileError), open_sealed(dst, master) as reader:
            [reader.chunk(i) for i in range(reader.chunks())]
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    dst.write_bytes(bytes(flipped))
    with pytest.raises(StoredFileError), open_sealed(dst, master) as reader:
        [reader.chunk(i) for i in range(reader.chunks())]  # what verify does
    with pytest.raises(ValueError):
        decode_master_key("not base64!")


@pytest.fixture
def store(tmp_path: Path) -> LocalEvidenceStore:
    return LocalEvidenceStore(tmp_path / "evidence", KEY, chunk_size=CHUNK)


async def write(store: LocalEvidenceStore, blob_id: str, data: bytes, piece: int = 1000) -> int:
    writer = await store.open_writer(blob_id)
    seen = hashlib.sha256()
    writer.set_observer(seen.update)
    for i in range(0, len(data), piece):
        await writer.write(data[i : i + piece])
    size = await writer.commit()
    assert seen.hexdigest() == hashlib.sha256(data).hexdigest()  # one pass, every byte once
    return size


async def read_all(
    store: LocalEvidenceStore, blob_id: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([piece async for piece in store.read(blob_id, start, end)])


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
async def test_round_trip_and_ranges(store: LocalEvidenceStore, size: int) -> None:
    data = os.urandom(size)
    blob = "ab" * 16
    assert await write(store, blob, data) == size
    assert await read_all(store, blob) == data
    assert await store.size(blob) == size
    if size > 10:
        assert await read_all(store, blob, 3, size - 2) == data[3 : size - 2]
    path = store.blob_path(blob)
    assert path.parent.name == "ab" and path.name == blob
    chunks = max(1, -(-size // CHUNK))  # the last chunk is the final one (empty for no bytes)
    assert path.stat().st_size == HEADER_SIZE + size + chunks * TAG_SIZE
    if size >= 64:
        assert data[:64] not in path.read_bytes()


async def _stored(store: LocalEvidenceStore) -> tuple[str, Path, bytes]:
    blob = "cd" * 16
    data = os.urandom(3 * CHUNK + 100)
    await write(store, blob, data)
    return blob, store.blob_path(blob), data


async def test_a_changed_byte_is_detected(store: LocalEvidenceStore) -> None:
    blob, path, _ = await _stored(store)
    raw = bytearray(path.read_bytes())
    raw[HEADER_SIZE + CHUNK + 5] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(StoredFileError, match="chunk 0"):
        await read_all(store, blob)
    with pytest.raises(StoredFileError):  # byte in the header changes the key and every tag
        raw[20] ^= 1
        path.write_bytes(bytes(raw))
        await read_all(store, blob)


async def test_truncation_at_a_chunk_boundary_is_detected(store: LocalEvidenceStore) -> None:
    blob, path, _ = await _stored(store)
    raw = path.read_bytes()
    path.write_bytes(raw[: HEADER_SIZE + 2 * (CHUNK + TAG_SIZE)])  # drop the last chunks
    with pytest.raises(StoredFileError, match="chunk 1"):
        await read_all(store, blob)


async def test_reordered_chunks_are_detected(store: LocalEvidenceStore) -> None:
    blob, path, _ = await _stored(store)
    raw = path.read_bytes()
    size = CHUNK + TAG_SIZE
    a = raw[HEADER_SIZE : HEADER_SIZE + size]
    b = raw[HEADER_SIZE + size : HEADER_SIZE + 2 * size]
    path.write_bytes(raw[:HEADER_SIZE] + b + a + raw[HEADER_SIZE + 2 * size :])
    with pytest.raises(StoredFileError):
        await read_all(store, blob)


async def test_a_chunk_from_another_file_is_detected(store: LocalEvidenceStore) -> None:
    blob, path, _ = await _stored(store)
    other = "ef" * 16
    await write(store, other, os.urandom(3 * CHUNK + 100))
    raw, foreign = path.read_bytes(), store.blob_path(other).read_bytes()
    path.write_bytes(
        raw[:HEADER_SIZE]
        + foreign[HEADER_SIZE : HEADER_SIZE + CHUNK + TAG_SIZE]
        + raw[HEADER_SIZE + CHUNK + TAG_SIZE :]
    )
    with pytest.raises(StoredFileError):
        await read_all(store, blob)


async def test_resume_after_checkpoint_and_after_a_crash(store: LocalEvidenceStore) -> None:
    blob = "12" * 16
    data = os.urandom(5 * CHUNK + 333)
    writer = await store.open_writer(blob)
    await writer.write(data[: 2 * CHUNK + 10])
    await writer.checkpoint()
    assert writer.durable_offset == 2 * CHUNK + 10
    await writer.write(data[2 * CHUNK + 10 : 4 * CHUNK + 50])  # not checkpointed: a crash loses it
    await writer.close()
    assert await store.pending_offset(blob) == 2 * CHUNK + 10
    # The unfinished file holds ciphertext only; the tail is encrypted too.
    for path in store.pending.iterdir():
        assert (
            data[:32] not in path.read_bytes()
            and data[2 * CHUNK : 2 * CHUNK + 10] not in path.read_bytes()
        )
    resumed = await store.open_writer(blob)
    assert resumed.offset == 2 * CHUNK + 10 and resumed.chunks_observed == 2
    replayed = b"".join([c async for c in resumed.replay()])
    assert replayed == data[: 2 * CHUNK] and resumed.buffered == data[2 * CHUNK : 2 * CHUNK + 10]
    await resumed.write(data[2 * CHUNK + 10 :])
    assert await resumed.commit() == len(data)
    assert await read_all(store, blob) == data
    assert not list(store.pending.iterdir())


async def test_one_writer_at_a_time(store: LocalEvidenceStore) -> None:
    blob = "34" * 16
    first = await store.open_writer(blob)
    with pytest.raises(BlockingIOError):
        await store.open_writer(blob)
    await first.close()
    second = await store.open_writer(blob)
    await second.close()


@pytest.mark.parametrize("bad", ["../../etc/passwd", "合同.pdf", "AB" * 16, "ab" * 15, ""])
def test_paths_are_ids_only(store: LocalEvidenceStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.blob_path(bad)


async def test_delete(store: LocalEvidenceStore) -> None:
    blob, path, _ = await _stored(store)
    await store.delete(blob)
    assert not path.exists()
    await store.delete(blob)  # twice is fine


def test_wrong_key_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalEvidenceStore(tmp_path, base64.b64encode(b"short").decode())


# ---- the Merkle ledger ----------------------------------------------------------------------------


def leaves(n: int) -> list[bytes]:
    return [leaf(f"entry {i}".encode()) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_roots_and_inclusion_proofs_against_an_independent_verifier(n: int) -> None:
    hashes = leaves(n)
    root = ledger.tree_root(hashes)
    assert root == mth(hashes)
    for m in range(n):
        path = ledger.inclusion_proof(m, hashes)
        assert root_from_path(m, n, hashes[m], path) == root
        assert ledger.verify_inclusion(hashes[m], m, n, path, root)
        if path:
            forged = [bytes(32)] + path[1:]
            assert not ledger.verify_inclusion(hashes[m], m, n, forged, root)
        assert not ledger.verify_inclusion(leaf(b"other"), m, n, path, root)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 13, 32])
def test_consistency_proofs_against_an_independent_verifier(n: int) -> None:
    hashes = leaves(n)
    second = mth(hashes)
    for m in range(1, n + 1):
        first = mth(hashes[:m])
        proof = ledger.consistency_proof(m, hashes)
        assert consistency_roots(m, n, proof, first) == (first, second)
        assert ledger.verify_consistency(m, n, proof, first, second)
        if m < n:
            changed = leaves(n)
            changed[m - 1] = leaf(b"rewritten history")
            assert not ledger.verify_consistency(m, n, proof, mth(changed[:m]), second)


def test_empty_tree_root() -> None:
    assert ledger.tree_root([]) == hashlib.sha256(b"").digest()


def test_platform_key_is_created_once(tmp_path: Path) -> None:
    key = ledger.PlatformKey.load_or_create(tmp_path / "k.pem")
    again = ledger.PlatformKey.load_or_create(tmp_path / "k.pem")
    assert key.key_id == again.key_id
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"


# ---- file types -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"%PDF-1.4", "pdf"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"GIF89a", "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"OggS\x00\x02", "ogg"),
        (b"\xff\xfb\x90\x64", "mp3"),
        (b"\xff\xf1\x50\x80", None),  # AAC/ADTS, not MP3
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "m4a"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heic"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "heic"),  # older iPhones
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1", None),  # AVIF: not listed
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "mov"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska", None),
        ("纯文本，带换行\n\t".encode(), "text"),
        ("截断的汉".encode()[:-1], "text"),
        (b"\xef\xbb\xbfBOM text", "text"),
        (b"\xc3\x28 invalid utf-8", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert filetypes.sniff(head) == kind


def test_containers() -> None:
    import io

    assert filetypes.inspect_container("zip", io.BytesIO(docx_bytes())) == "docx"
    assert filetypes.inspect_container("ole", io.BytesIO(ole_bytes("Book"))) == "xls"
    with pytest.raises(UnsupportedType) as err:
        filetypes.inspect_container("zip", io.BytesIO(zip_of({})))
    assert err.value.code == "evidence_zip_empty"
