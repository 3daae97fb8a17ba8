"""Evidence through the API, on both engines: tus uploads (whole, interrupted and resumed, after
a "restart"), every rejection, authorisation (a party of another case gets 403 everywhere),
items with inclusion proofs and signed tree heads, download, withdrawal, match, verification."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete, select

from cases.models import Case
from config import Settings
from evidence.models import EvidenceItem, EvidenceUpload, LedgerEntry
from evidence.storage import CHUNK_SIZE
from tests.helpers import api_headers
from tests.test_evidence_support import (
    PATCH_TYPE,
    TUS,
    consistency_roots,
    create_upload,
    docx_bytes,
    leaf,
    ole_bytes,
    party_token,
    pdf_bytes,
    root_from_path,
    upload,
    zip_of,
)
from web.context import SETTINGS

MAX_FILE = 6 * CHUNK_SIZE
MAX_CASE = 10 * CHUNK_SIZE


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits, so the size rejections are quick to reach."""
    return dataclasses.replace(
        settings, evidence_max_file_bytes=MAX_FILE, evidence_max_case_bytes=MAX_CASE
    )


@pytest.fixture
async def staff(client: Any, demo_logins: dict[str, str]) -> dict[str, str]:
    return await api_headers(client, "mediator", demo_logins["mediator"])


async def other_case(client: Any, demo_logins: dict[str, str]) -> int:
    from tests.test_api import COURT_CASE

    clerk = await api_headers(client, "clerk", demo_logins["clerk"])
    resp = await client.post("/api/v1/cases", json=COURT_CASE, headers=clerk)
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["id"])


async def error_code(resp: Any) -> str:
    return str((await resp.json())["error"]["code"])


# ---- the happy path ---------------------------------------------------------------------------------


async def test_upload_list_detail_download(client: Any, staff: dict[str, str]) -> None:
    data = pdf_bytes(CHUNK_SIZE * 2 + 12345)
    options = await client.options("/api/v1/cases/1/evidence/uploads", headers=staff)
    assert options.status == 204
    assert options.headers["Tus-Version"] == "1.0.0"
    assert "creation" in options.headers["Tus-Extension"]
    assert options.headers["Tus-Max-Size"] == str(MAX_FILE)

    created = await create_upload(client, staff, len(data), filename="../../etc/passwd 合同.pdf")
    assert created.status == 201, await created.text()
    assert created.headers["Tus-Resumable"] == "1.0.0"
    location = created.headers["Location"]
    head = await client.head(location, headers={**staff, **TUS})
    assert head.status == 200 and head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))

    done = await client.patch(
        location,
        data=io.BytesIO(data),
        headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": "0"},
    )
    assert done.status == 204, await done.text()
    assert done.headers["Upload-Offset"] == str(len(data))
    assert done.headers["Evidence-Item-Number"] == "1"

    listing = await (await client.get("/api/v1/cases/1/evidence", headers=staff)).json()
    [item] = listing["items"]
    assert item["number"] == 1 and item["title"] == "买卖合同"
    assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)
    assert item["file_type"] == "pdf" and item["media_type"] == "application/pdf"
    assert item["category_label"] == "书证" and item["status"] == "submitted"
    assert item["original_filename"] == "../../etc/passwd 合同.pdf"  # metadata only
    assert item["submitter"]["type"] == "user"

    got = await client.get(item["content_url"], headers=staff)
    assert got.status == 200
    assert await got.read() == data
    assert got.headers["Content-Type"] == "application/pdf"
    assert "filename*=UTF-8''..%2F..%2Fetc%2Fpasswd" in got.headers["Content-Disposition"]
    part = await client.get(item["content_url"], headers={**staff, "Range": "bytes=100-199"})
    assert part.status == 206 and await part.read() == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"

    # The file on disk is named by an id, encrypted, and holds none of the plaintext.
    settings = client.app[SETTINGS]
    stored = [p for p in (settings.data_dir / "evidence" / "blobs").rglob("*") if p.is_file()]
    assert len(stored) == 1 and "passwd" not in str(stored[0])
    assert data[:4096] not in stored[0].read_bytes()


async def test_item_detail_proves_inclusion_under_a_signed_tree_head(
    client: Any, staff: dict[str, str]
) -> None:
    for n in range(5):
        resp = await upload(client, staff, pdf_bytes(1000 + n, seed=n), title=f"证据{n}")
        assert resp.status == 204, await resp.text()
    first_head = await (await client.get("/api/v1/evidence/ledger/tree-head", headers=staff)).json()
    for number in (1, 3, 5):
        detail = await (
            await client.get(f"/api/v1/cases/1/evidence/{number}", headers=staff)
        ).json()
        proof = detail["ledger"]
        head = proof["tree_head"]
        entry = json.loads(proof["entry"])
        assert entry["event"] == "submitted" and entry["item_id"] == detail["id"]
        assert json.loads(entry["details"])["sha256"] == detail["sha256"]
        leaf_hash = leaf(proof["entry"].encode())
        assert leaf_hash.hex() == proof["leaf_hash"]
        root = root_from_path(
            proof["leaf_index"],
            head["tree_size"],
            leaf_hash,
            [bytes.fromhex(p) for p in proof["inclusion_proof"]],
        )
        assert root.hex() == head["root_hash"]
        signed = (
            bytes([0, 1])
            + head["timestamp_ms"].to_bytes(8, "big")
            + head["tree_size"].to_bytes(8, "big")
            + root
        )
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(head["public_key"]))
        key.verify(base64.b64decode(head["signature"]), signed)  # raises if forged
    # Views are events too; a newer head is consistent with the one kept earlier.
    latest = await (await client.get("/api/v1/evidence/ledger/tree-head", headers=staff)).json()
    assert latest["tree_size"] > first_head["tree_size"]
    resp = await client.get(
        "/api/v1/evidence/ledger/consistency",
        params={"first": first_head["tree_size"], "second": latest["tree_size"]},
        headers=staff,
    )
    proof = [bytes.fromhex(p) for p in (await resp.json())["proof"]]
    old, new = consistency_roots(
        first_head["tree_size"], latest["tree_size"], proof, bytes.fromhex(first_head["root_hash"])
    )
    assert old.hex() == first_head["root_hash"] and new.hex() == latest["root_hash"]
    bad = await client.get(
        "/api/v1/evidence/ledger/consistency", params={"first": 3, "second": 99999}, headers=staff
    )
    assert bad.status == 422 and await error_code(bad) == "evidence_proof_range"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("说明.txt", "双方于2026年签订合同。\n".encode() * 50, "text"),
        ("合同.docx", docx_bytes(), "docx"),
        ("旧合同.doc", ole_bytes("WordDocument"), "doc"),
        ("账目.xls", ole_bytes("Workbook"), "xls"),
        (
            "照片.zip",
            zip_of({"a.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "b.txt": b"hello"}),
            "zip",
        ),
        ("合同包.zip", zip_of({"c.docx": docx_bytes()}), "zip"),
        ("图.png", b"\x89PNG\r\n\x1a\n" + bytes(5000), "png"),
        ("录音.mp3", b"ID3\x04\x00" + bytes(300), "mp3"),
        ("视频.mp4", b"\x00\x00\x00\x18ftypisom" + bytes(300), "mp4"),
    ],
)
async def test_allowed_types_by_content(
    client: Any, staff: dict[str, str], name: str, data: bytes, kind: str
) -> None:
    resp = await upload(client, staff, data, filename=name)
    assert resp.status == 204, await resp.text()
    listing = await (await client.get("/api/v1/cases/1/evidence", headers=staff)).json()
    assert listing["items"][-1]["file_type"] == kind


# ---- interrupted and resumed ----------------------------------------------------------------------


async def _patch_then_drop(
    client: Any,
    path: str,
    headers: dict[str, str],
    offset: int,
    sent: bytes,
    announced: int,
    *,
    reset: bool,
) -> None:
    """Send a PATCH announcing ``announced`` bytes, send only ``sent``, then drop the connection:
    closed (FIN) or reset (RST, as when a phone loses its network)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    lines = [
        f"PATCH {path} HTTP/1.1",
        f"Host: {client.host}:{client.port}",
        "Tus-Resumable: 1.0.0",
        "Content-Type: application/offset+octet-stream",
        f"Upload-Offset: {offset}",
        f"Content-Length: {announced}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "",
        "",
    ]
    writer.write("\r\n".join(lines).encode("latin-1"))
    writer.write(sent)
    await writer.drain()
    for _ in range(500):  # until the kernel has every byte
        if not writer.transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    if reset:
        writer.transport.abort()
    else:
        writer.close()
    del reader


async def _settled_offset(client: Any, location: str, headers: dict[str, str]) -> int:
    """The upload's offset once the server has handled the dropped connection."""
    seen: list[int] = []
    for _ in range(200):
        head = await client.head(location, headers={**headers, **TUS})
        seen.append(int(head.headers["Upload-Offset"]))
        if seen[-1] > 0 and seen[-3:] == [seen[-1]] * 3:
            return seen[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the offset never settled: {seen[-5:]}")


@pytest.mark.parametrize(
    ("restart", "reset"),
    [(False, False), (True, True)],
    ids=["closed-same-process", "reset-after-restart"],
)
async def test_interrupted_upload_resumes_byte_identical(
    client: Any,
    staff: dict[str, str],
    sessionmaker: Any,
    restart: bool,
    reset: bool,
    aiohttp_client: Any,
) -> None:
    data = pdf_bytes(3 * CHUNK_SIZE + 777, seed=7)
    half = len(data) // 2
    created = await create_upload(client, staff, len(data))
    location = created.headers["Location"]
    await _patch_then_drop(client, location, staff, 0, data[:half], len(data), reset=reset)
    resume = await _settled_offset(client, location, staff)
    # Everything that reached the server is kept: with a clean close, every byte sent.
    assert resume == half if not reset else 0 < resume <= half
    async with sessionmaker() as session:
        row = await session.scalar(select(EvidenceUpload))
        assert row.received == resume and row.item_id is None
        assert (await session.scalar(select(EvidenceItem))) is None  # nothing registered yet
    if restart:
        # A new server (same database and data dir) has no hash state: it re-hashes the prefix.
        from server.app import create_app

        client = await aiohttp_client(create_app(client.app[SETTINGS]))
    wrong = await client.patch(
        location,
        data=io.BytesIO(data[resume + 1 :]),
        headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": str(resume + 1)},
    )
    assert wrong.status == 409 and await error_code(wrong) == "evidence_offset_mismatch"
    rest = await client.patch(
        location,
        data=io.BytesIO(data[resume:]),
        headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": str(resume)},
    )
    assert rest.status == 204, await rest.text()
    item = await (await client.get("/api/v1/cases/1/evidence/1", headers=staff)).json()
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    body = await (await client.get(item["content_url"], headers=staff)).read()
    assert body == data
    again = await client.patch(
        location, data=b"x", headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": str(len(data))}
    )
    assert again.status == 409 and await error_code(again) == "evidence_upload_complete"


async def test_upload_in_several_patches_and_termination(
    client: Any, staff: dict[str, str]
) -> None:
    data = pdf_bytes(CHUNK_SIZE + 5000, seed=3)
    location = (await create_upload(client, staff, len(data))).headers["Location"]
    offset = 0
    for piece in (data[:10], data[10:4096], data[4096 : CHUNK_SIZE + 1], data[CHUNK_SIZE + 1 :]):
        resp = await client.patch(
            location,
            data=io.BytesIO(piece),
            headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": str(offset)},
        )
        assert resp.status == 204, await resp.text()
        offset += len(piece)
        assert resp.headers["Upload-Offset"] == str(offset)
    item = await (await client.get("/api/v1/cases/1/evidence/1", headers=staff)).json()
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    # Termination of another, unfinished upload.
    other = (await create_upload(client, staff, 5000)).headers["Location"]
    await client.patch(
        other,
        data=io.BytesIO(pdf_bytes(100)),
        headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": "0"},
    )
    gone = await client.delete(other, headers={**staff, **TUS})
    assert gone.status == 204
    assert (await client.head(other, headers={**staff, **TUS})).status == 404
    done = await client.delete(location, headers={**staff, **TUS})
    assert done.status == 409 and await error_code(done) == "evidence_upload_complete"


# ---- rejections ---------------------------------------------------------------------------------


async def test_size_limits(client: Any, staff: dict[str, str]) -> None:
    resp = await create_upload(client, staff, MAX_FILE + 1)
    assert resp.status == 413 and await error_code(resp) == "evidence_file_too_large"
    assert "MB" in (await resp.json())["error"]["message"]
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    resp = await create_upload(client, staff, 0)
    assert resp.status == 422 and await error_code(resp) == "evidence_file_empty"
    # Room per case: unfinished uploads reserve their length.
    for _ in range(2):
        assert (await create_upload(client, staff, MAX_FILE // 2 * 3 // 2)).status == 201
    resp = await create_upload(client, staff, MAX_FILE)
    assert resp.status == 413 and await error_code(resp) == "evidence_case_full"
    assert "已" in (await resp.json())["error"]["message"]


async def test_body_longer_than_announced(client: Any, staff: dict[str, str]) -> None:
    location = (await create_upload(client, staff, 100)).headers["Location"]
    resp = await client.patch(
        location,
        data=io.BytesIO(pdf_bytes(101)),
        headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": "0"},
    )
    assert resp.status == 413 and await error_code(resp) == "evidence_upload_too_long"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x7fELF\x02\x01\x01" + bytes(9000), "evidence_type_not_allowed"),
        (b"MZ\x90\x00" + bytes(100), "evidence_type_not_allowed"),
        (b"\x00\x00\x00\x18ftypavif" + bytes(100), "evidence_type_not_allowed"),
        ("正文".encode() + b"\x00\x01binary", "evidence_type_not_allowed"),
        (
            zip_of({"a.txt": b"ok", "run.exe": b"MZ\x90\x00" + bytes(100)}),
            "evidence_zip_member_not_allowed",
        ),
        (zip_of({"inner.zip": zip_of({"a.txt": b"x"})}), "evidence_zip_member_not_allowed"),
        (b"PK\x03\x04" + bytes(200), "evidence_zip_damaged"),
        (ole_bytes("Installer"), "evidence_type_not_allowed"),
    ],
    ids=[
        "elf",
        "exe",
        "avif",
        "binary-text",
        "zip-exe",
        "zip-zip",
        "zip-damaged",
        "ole-other",
    ],
)
async def test_type_rejections(
    client: Any, staff: dict[str, str], sessionmaker: Any, data: bytes, code: str
) -> None:
    resp = await upload(client, staff, data)
    assert resp.status == 415, await resp.text()
    assert await error_code(resp) == code
    assert (await resp.json())["error"]["message"]
    async with sessionmaker() as session:
        assert (await session.scalar(select(EvidenceItem))) is None
        assert (await session.scalar(select(EvidenceUpload))) is None  # discarded


async def test_type_rejected_early_in_a_large_upload(client: Any, staff: dict[str, str]) -> None:
    """A wrong type is refused from its first bytes, not after the whole file."""
    location = (await create_upload(client, staff, 5 * CHUNK_SIZE)).headers["Location"]
    resp = await client.patch(
        location,
        data=io.BytesIO(b"\x7fELF" + bytes(8192)),
        headers={**staff, **TUS, **PATCH_TYPE, "Upload-Offset": "0"},
    )
    assert resp.status == 415


@pytest.mark.parametrize(
    ("meta", "code"),
    [
        ({"filename": "合同\x00.pdf"}, "evidence_filename_invalid"),
        ({"filename": "a\nb.pdf"}, "evidence_filename_invalid"),
        ({"filename": "evil\u202egpj.exe"}, "evidence_filename_invalid"),
        ({"filename": ""}, "evidence_filename_required"),
        ({"title": " "}, "evidence_title_required"),
        ({"category": "hearsay"}, "evidence_category_invalid"),
        ({"purpose": ""}, "evidence_purpose_required"),
    ],
)
async def test_metadata_rejections(
    client: Any, staff: dict[str, str], meta: dict[str, str], code: str
) -> None:
    resp = await create_upload(client, staff, 100, **meta)
    assert resp.status == 422 and await error_code(resp) == code


async def test_protocol_rejections(client: Any, staff: dict[str, str]) -> None:
    base = "/api/v1/cases/1/evidence/uploads"
    resp = await client.post(base, headers={**staff, "Upload-Length": "10"})
    assert resp.status == 412 and resp.headers["Tus-Version"] == "1.0.0"
    resp = await client.post(
        base, headers={**staff, **TUS, "Upload-Length": "10", "Upload-Metadata": "filename !!!"}
    )
    assert resp.status == 422 and await error_code(resp) == "evidence_metadata_invalid"
    resp = await client.post(base, headers={**staff, **TUS, "Upload-Length": "ten"})
    assert resp.status == 422 and await error_code(resp) == "evidence_header_invalid"
    location = (await create_upload(client, staff, 100)).headers["Location"]
    resp = await client.patch(
        location,
        data=b"x",
        headers={**staff, **TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 415 and await error_code(resp) == "evidence_content_type"
    resp = await client.patch(location, data=b"x", headers={**staff, **TUS, **PATCH_TYPE})
    assert resp.status == 422 and await error_code(resp) == "evidence_offset_required"
    resp = await client.head("/api/v1/cases/1/evidence/uploads/999", headers={**staff, **TUS})
    assert resp.status == 404


# ---- authorisation ------------------------------------------------------------------------------


async def test_parties_use_their_hearing_link_and_only_for_their_case(
    client: Any, staff: dict[str, str], sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    mine = {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "applicant")}
    theirs = {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "respondent")}
    resp = await upload(client, mine, pdf_bytes(3000), title="借条")
    assert resp.status == 204, await resp.text()
    assert (await upload(client, staff, pdf_bytes(2000, seed=9))).status == 204
    listing = await (await client.get("/api/v1/cases/1/evidence", headers=theirs)).json()
    assert [i["number"] for i in listing["items"]] == [1, 2]
    assert listing["items"][0]["submitter"]["type"] == "party"
    # The other side may read, not withdraw, the applicant's evidence; the applicant may.
    resp = await client.post(
        "/api/v1/cases/1/evidence/1/withdrawal", json={"reason": "x"}, headers=theirs
    )
    assert resp.status == 403 and await error_code(resp) == "evidence_withdraw_forbidden"
    resp = await client.post("/api/v1/cases/1/evidence/2/withdrawal", json={}, headers=mine)
    assert resp.status == 403
    resp = await client.post(
        "/api/v1/cases/1/evidence/1/withdrawal", json={"reason": "提交错了"}, headers=mine
    )
    assert resp.status == 200 and (await resp.json())["status"] == "withdrawn"
    resp = await client.post("/api/v1/cases/1/evidence/1/withdrawal", json={}, headers=staff)
    assert resp.status == 409 and await error_code(resp) == "evidence_withdrawn"
    resp = await client.get("/api/v1/cases/1/evidence/1/content", headers=theirs)
    assert resp.status == 409 and await error_code(resp) == "evidence_withdrawn"
    assert (await client.get("/api/v1/cases/1/evidence/1/content", headers=staff)).status == 200
    # Someone else's unfinished upload cannot be continued.
    location = (await create_upload(client, mine, 500)).headers["Location"]
    assert (await client.head(location, headers={**theirs, **TUS})).status == 403
    resp = await client.delete(location, headers={**theirs, **TUS})
    assert resp.status == 403 and await error_code(resp) == "evidence_upload_not_yours"

    # A party of another case: 403 on every evidence route of case 1.
    case2 = await other_case(client, demo_logins)
    stranger = {"X-Hearing-Token": await party_token(client, sessionmaker, case2, "applicant")}
    upload_path = location
    attempts = [
        client.options("/api/v1/cases/1/evidence/uploads", headers=stranger),
        create_upload(client, stranger, 100),
        client.head(upload_path, headers={**stranger, **TUS}),
        client.patch(
            upload_path, data=b"x", headers={**stranger, **TUS, **PATCH_TYPE, "Upload-Offset": "0"}
        ),
        client.delete(upload_path, headers={**stranger, **TUS}),
        client.get("/api/v1/cases/1/evidence", headers=stranger),
        client.get("/api/v1/cases/1/evidence/2", headers=stranger),
        client.get("/api/v1/cases/1/evidence/2/content", headers=stranger),
        client.post("/api/v1/cases/1/evidence/2/withdrawal", json={}, headers=stranger),
        client.post("/api/v1/cases/1/evidence/match", data=b"x", headers=stranger),
    ]
    statuses = [(await attempt).status for attempt in attempts]
    assert statuses == [403] * 10
    # Their own case works for them.
    assert (await client.get(f"/api/v1/cases/{case2}/evidence", headers=stranger)).status == 200
    # Staff of no business with the case, a forged link, and nobody.
    other = await api_headers(client, "mediator2", demo_logins["mediator2"])
    assert (await client.get("/api/v1/cases/1/evidence", headers=other)).status == 403
    assert (await create_upload(client, other, 100)).status == 403
    forged = {"X-Hearing-Token": "abc.def.ghi"}
    resp = await client.get("/api/v1/cases/1/evidence", headers=forged)
    assert resp.status == 403 and await error_code(resp) == "invitation_invalid"
    assert (await client.get("/api/v1/cases/1/evidence")).status == 401


async def test_match_a_file(client: Any, staff: dict[str, str], sessionmaker: Any) -> None:
    data = pdf_bytes(4321)
    party = {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "respondent")}
    assert (await upload(client, party, data)).status == 204
    found = await (
        await client.post("/api/v1/cases/1/evidence/match", data=io.BytesIO(data), headers=staff)
    ).json()
    assert found["matched"] is True and found["sha256"] == hashlib.sha256(data).hexdigest()
    [item] = found["items"]
    assert item["number"] == 1 and item["submitter"] and item["submitted_at"]
    miss = await (
        await client.post(
            "/api/v1/cases/1/evidence/match", data=io.BytesIO(data + b"!"), headers=party
        )
    ).json()
    assert miss["matched"] is False and miss["items"] == []
    async with sessionmaker() as session:
        events = [
            e.event for e in (await session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)))
        ]
    assert events == ["submitted", "match_checked", "match_checked"]


# ---- verification -------------------------------------------------------------------------------


async def _verify(client: Any, sessionmaker: Any) -> Any:
    from evidence.runtime import EvidenceRuntime
    from evidence.verify import verify_all

    rt = EvidenceRuntime.from_settings(client.app[SETTINGS])
    async with sessionmaker() as session:
        return await verify_all(session, rt.store, rt.key)


async def test_verify_detects_a_changed_stored_byte(
    client: Any,
    staff: dict[str, str],
    sessionmaker: Any,
    capsys: Any,
    monkeypatch: Any,
    caplog: Any,
) -> None:
    for n in range(2):
        assert (await upload(client, staff, pdf_bytes(CHUNK_SIZE + 99, seed=n))).status == 204
    await client.get("/api/v1/cases/1/evidence/1", headers=staff)  # signs a tree head
    report = await _verify(client, sessionmaker)
    assert report.ok, report.problems
    assert report.files == 2 and report.tree_heads == 1
    async with sessionmaker() as session:
        item = await session.scalar(select(EvidenceItem).where(EvidenceItem.number == 2))
    data_dir: Path = client.app[SETTINGS].data_dir
    path = data_dir / "evidence" / "blobs" / item.blob_id[:2] / item.blob_id
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    # A download of the damaged copy is an error, not a silently different file.
    resp = await client.get("/api/v1/cases/1/evidence/2/content", headers=staff)
    assert resp.status == 500 and await error_code(resp) == "evidence_damaged"
    caplog.clear()  # the server rightly logged the damage
    report = await _verify(client, sessionmaker)
    assert not report.ok
    assert any("item 2" in p and "altered" in p for p in report.problems), report.problems
    assert all("item 1 " not in p for p in report.problems)

    # The command line says the same, and exits 1.
    from server import cli

    settings = client.app[SETTINGS]
    monkeypatch.setenv("YUNTIAO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("YUNTIAO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("YUNTIAO_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("YUNTIAO_FIELD_ENCRYPTION_KEY", settings.field_encryption_key)
    code = await asyncio.to_thread(cli.main, ["evidence", "verify"])
    out = capsys.readouterr().out
    assert code == 1 and "BROKEN" in out and "item 2" in out


async def test_verify_detects_deleted_and_altered_ledger_entries(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    for n in range(3):
        assert (await upload(client, staff, pdf_bytes(500, seed=n))).status == 204
    await client.get("/api/v1/cases/1/evidence/3", headers=staff)  # a view, and a signed head
    assert (await _verify(client, sessionmaker)).ok
    async with sessionmaker() as session:
        await session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 1))
        await session.commit()
    report = await _verify(client, sessionmaker)
    assert not report.ok
    assert any("ledger entry 1 is missing" in p for p in report.problems), report.problems
    assert any("item 2" in p for p in report.problems)
    assert any("tree head" in p for p in report.problems)


async def test_verify_detects_removing_the_newest_entry_and_editing_one(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    for n in range(2):
        assert (await upload(client, staff, pdf_bytes(500, seed=n))).status == 204
    await client.get("/api/v1/evidence/ledger/tree-head", headers=staff)
    async with sessionmaker() as session:
        await session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 1))
        first = await session.get(LedgerEntry, 0)
        first.actor_label = "someone else"
        await session.commit()
    report = await _verify(client, sessionmaker)
    assert any("covers 2 entries but the ledger has only 1" in p for p in report.problems), (
        report.problems
    )
    assert any("ledger entry 0 was altered" in p for p in report.problems)


async def test_case_of_another_organisation_is_404_not_leaked(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    async with sessionmaker() as session:
        assert (await session.get(Case, 999)) is None
    assert (await client.get("/api/v1/cases/999/evidence", headers=staff)).status == 404


async def test_evidence_events_are_in_the_case_history(client: Any, staff: dict[str, str]) -> None:
    """Each ledger event is also a row of the case's hash-chained audit trail."""
    await upload(client, staff, pdf_bytes(5000))
    assert (await client.get("/api/v1/cases/1/evidence/1", headers=staff)).status == 200
    history = await (await client.get("/api/v1/cases/1/history", headers=staff)).json()
    evidence_rows = [e for e in history["entries"] if e["action"].startswith("evidence.")]
    assert [e["action"] for e in evidence_rows][:2] == ["evidence.submitted", "evidence.viewed"]
    assert evidence_rows[0]["object_type"] == "evidence"
    assert "ledger_seq" in evidence_rows[0]["details"]
