"""Helpers of the evidence tests (this module holds no tests itself): sample files of each kind,
a tus client, a hearing link for a party, and an RFC 6962 verifier written independently of ``evidence.ledger`` (structural
recursion over the RFC's definitions, not the bit-twiddling algorithms the app uses)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
import struct
import zipfile
from typing import Any

from sqlalchemy import select

from cases.models import Party, utcnow
from cases.uow import transaction
from rooms.invitations import issue_invitation
from rooms.models import Hearing, HearingParticipant
from web.context import SETTINGS

TUS = {"Tus-Resumable": "1.0.0"}
PATCH_TYPE = {"Content-Type": "application/offset+octet-stream"}


def pdf_bytes(size: int, seed: int = 1) -> bytes:
    """A "PDF" of ``size`` bytes: the signature, then deterministic noise."""
    head = b"%PDF-1.7\n"
    out = bytearray(head)
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def docx_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def ole_bytes(stream_name: str) -> bytes:
    """A minimal OLE2 compound file whose directory names ``stream_name``."""
    header = bytearray(512)
    header[:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<H", header, 0x1E, 9)  # 512-byte sectors
    struct.pack_into("<I", header, 0x30, 1)  # directory in sector 1
    difat = [0] + [0xFFFFFFFF] * 108  # FAT in sector 0
    struct.pack_into("<109I", header, 0x4C, *difat)
    fat = bytearray(struct.pack("<128I", *([0xFFFFFFFD, 0xFFFFFFFE] + [0xFFFFFFFF] * 126)))
    directory = bytearray(512)
    for i, name in enumerate(["Root Entry", stream_name]):
        encoded = (name + "\0").encode("utf-16-le")
        directory[i * 128 : i * 128 + len(encoded)] = encoded
        struct.pack_into("<H", directory, i * 128 + 0x40, len(encoded))
    return bytes(header + fat + directory)


def metadata(**values: str) -> str:
    base = {
        "filename": "合同.pdf",
        "title": "买卖合同",
        "category": "documentary",
        "purpose": "证明双方存在买卖关系",
    }
    base.update(values)
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in base.items())


async def create_upload(
    client: Any, headers: dict[str, str], length: int, case_id: int = 1, **meta: str
) -> Any:
    return await client.post(
        f"/api/v1/cases/{case_id}/evidence/uploads",
        headers={
            **headers,
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(**meta),
        },
    )


async def upload(
    client: Any, headers: dict[str, str], data: bytes, case_id: int = 1, **meta: str
) -> Any:
    """Create and send in one PATCH; returns the PATCH response (or the failed creation)."""
    created = await create_upload(client, headers, len(data), case_id, **meta)
    if created.status != 201:
        return created
    return await client.patch(
        created.headers["Location"],
        data=io.BytesIO(data),
        headers={**headers, **TUS, **PATCH_TYPE, "Upload-Offset": "0"},
    )


async def party_token(client: Any, sessionmaker: Any, case_id: int, role: str = "applicant") -> str:
    """A hearing link token for the first party of ``case_id`` with ``role``."""
    # A unit of work (the writer's turn, BEGIN IMMEDIATE on SQLite): a plain session that reads
    # and then writes can be refused at once while the server writes (WAL snapshot).
    async with transaction(sessionmaker) as session:
        party = await session.scalar(
            select(Party).where(Party.case_id == case_id, Party.role == role).order_by(Party.id)
        )
        hearing = Hearing(
            case_id=case_id,
            title="证据交换",
            scheduled_at=utcnow() + dt.timedelta(hours=1),
            duration_minutes=60,
        )
        session.add(hearing)
        await session.flush()
        participant = HearingParticipant(
            hearing_id=hearing.id,
            kind="party",
            party_id=party.id,
            display_name=party.name,
            side=role,
        )
        session.add(participant)
        await session.flush()
        return issue_invitation(client.app[SETTINGS].secret_key, hearing, participant)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# ---- an independent RFC 6962 verifier ---------------------------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(entry: bytes) -> bytes:
    return _h(b"\x00" + entry)


def node(left: bytes, right: bytes) -> bytes:
    return _h(b"\x01" + left + right)


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1 (leaves are already leaf hashes)."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))


def root_from_path(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """Rebuild the root from PATH(index, D[size]) by following the RFC's recursion."""
    if size == 1:
        assert not path, "proof too long"
        return leaf_hash
    assert path, "proof too short"
    k = split(size)
    if index < k:
        return node(root_from_path(index, k, leaf_hash, path[:-1]), path[-1])
    return node(path[-1], root_from_path(index - k, size - k, leaf_hash, path[:-1]))


def consistency_roots(
    first: int, second: int, proof: list[bytes], first_root: bytes
) -> tuple[bytes, bytes]:
    """(old root, new root) rebuilt from PROOF(first, D[second]) by the RFC's SUBPROOF."""
    rest = list(proof)

    def sub(m: int, n: int, complete: bool) -> tuple[bytes, bytes]:
        if m == n:
            if complete:
                return first_root, first_root
            value = rest.pop()
            return value, value
        k = split(n)
        if m <= k:
            right = rest.pop()
            old, new = sub(m, k, complete)
            return old, node(new, right)
        left = rest.pop()
        old, new = sub(m - k, n - k, False)
        return node(left, old), node(left, new)

    old, new = sub(first, second, True)
    assert not rest, "proof too long"
    return old, new
