"""The evidence ledger: an append-only Merkle log of evidence events (RFC 6962 §2.1).

- leaf hash = SHA-256(0x00 ‖ entry), interior node = SHA-256(0x01 ‖ left ‖ right), and the tree
  head of ``n`` leaves is MTH(D[0:n]) as the RFC defines it (the left subtree holds the largest
  power of two below ``n``);
- ``inclusion_proof(m, n)`` is PATH(m, D[0:n]) (§2.1.1) and ``consistency_proof(m, n)`` is
  PROOF(m, D[0:n]) (§2.1.2); ``verify_inclusion`` / ``verify_consistency`` check them
  (the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2);
- a *signed tree head* (``TreeHead``) signs the RFC 6962 ``TreeHeadSignature`` bytes
  (version 0, signature type 1, timestamp, tree size, root) with the platform's Ed25519 key
  (``PlatformKey``, a file in the data dir). Whoever keeps a tree head can later ask for a
  consistency proof and detect any removed or altered entry before it.

Entries are appended in the transaction of the change they record. Appends are serialised (an
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so leaf indexes have no gaps.

Proofs are computed from the stored leaf hashes (32 bytes per event; a million events is 32 MB
read per proof). Caching subtree hashes would make that logarithmic once the log is that large.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import canonical_json, record
from cases.models import Case, dialect_name, utcnow
from evidence.catalogue import EVENT_AUDIT_ACTIONS
from evidence.models import LedgerEntry, TreeHead

LEDGER_LOCK = 72430002
EMPTY_ROOT = hashlib.sha256(b"").digest()


# ---- Merkle tree (pure functions over leaf hashes) --------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class RootAccumulator:
    """MTH of a growing list of leaves in O(log n) memory: a stack of perfect subtrees."""

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def add(self, leaf: bytes) -> None:
        node = leaf
        self.size += 1
        count = self.size
        while count & 1 == 0:
            node = node_hash(self._stack.pop(), node)
            count >>= 1
        self._stack.append(node)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[0:n]) for leaf hashes ``leaves``."""
    acc = RootAccumulator()
    for leaf in leaves:
        acc.add(leaf)
    return acc.root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[0:n]) (RFC 6962 §2.1.1), bottom-up."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index outside the tree")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [tree_root(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [tree_root(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[0:n]) (RFC 6962 §2.1.2)."""
    if not 0 < first <= len(leaves):
        raise ValueError("first tree size must be between 1 and the second size")
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [tree_root(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [tree_root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [tree_root(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


# ---- entries -----------------------------------------------------------------------------------


def _format_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_text(row: LedgerEntry) -> str:
    """The canonical JSON of a row's fields: what its leaf hash covers."""
    return canonical_json(
        {
            "v": 1,
            "seq": row.seq,
            "at": _format_time(row.at),
            "case_id": row.case_id,
            "item_id": row.item_id,
            "event": row.event,
            "actor": {"type": row.actor_type, "id": row.actor_id, "label": row.actor_label},
            "ip": row.ip,
            "user_agent": row.user_agent,
            "details": row.details,
        }
    )


async def _lock(session: AsyncSession) -> None:
    if dialect_name(session) == "postgresql":
        await session.execute(text(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK})"))


async def lock_ledger(session: AsyncSession) -> None:
    """Serialise evidence registrations with ledger appends (item numbers use it too)."""
    await _lock(session)


async def append(
    session: AsyncSession,
    actor: Actor,
    event: str,
    *,
    case_id: int,
    item_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Append one event in the caller's transaction; returns the row (``seq`` = leaf index)."""
    await _lock(session)
    last = await session.scalar(select(LedgerEntry.seq).order_by(LedgerEntry.seq.desc()).limit(1))
    row = LedgerEntry(
        seq=0 if last is None else last + 1,
        at=utcnow(),
        case_id=case_id,
        item_id=item_id,
        event=event,
        actor_type=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label[:200],
        ip=actor.ip[:64],
        user_agent=actor.user_agent[:300],
        details=canonical_json(details or {}),
    )
    row.entry = entry_text(row)
    row.leaf_hash = leaf_hash(row.entry.encode()).hex()
    session.add(row)
    await session.flush()
    case = await session.get(Case, case_id)
    await record(
        session,
        actor,
        EVENT_AUDIT_ACTIONS[event],
        object_type="evidence",
        object_id=item_id if item_id is not None else "",
        case_id=case_id,
        organisation_id=case.organisation_id if case is not None else None,
        details={**(details or {}), "ledger_seq": row.seq},
    )
    return row


async def tree_size(session: AsyncSession) -> int:
    last = await session.scalar(select(LedgerEntry.seq).order_by(LedgerEntry.seq.desc()).limit(1))
    return 0 if last is None else last + 1


async def leaf_hashes(session: AsyncSession, size: int) -> list[bytes]:
    """The stored leaf hashes 0 … size-1, in order (what proofs and roots are built from)."""
    rows = await session.execute(
        select(LedgerEntry.seq, LedgerEntry.leaf_hash)
        .where(LedgerEntry.seq < size)
        .order_by(LedgerEntry.seq)
    )
    leaves = []
    for expected, (seq, value) in enumerate(rows):
        if seq != expected:
            raise LedgerBroken(f"ledger entry {expected} is missing")
        leaves.append(bytes.fromhex(value))
    if len(leaves) != size:
        raise LedgerBroken(f"the ledger has {len(leaves)} entries, not {size}")
    return leaves


class LedgerBroken(Exception):
    """The stored log no longer matches what was signed or appended (see ``evidence verify``)."""


# ---- signed tree heads -------------------------------------------------------------------------


class PlatformKey:
    """The platform's Ed25519 signing key: a PKCS#8 PEM file (mode 0600) in the data dir,
    created on first use. Signing sits behind this small class so an HSM can replace it."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_raw = raw
        self.key_id = hashlib.sha256(raw).hexdigest()

    @classmethod
    def load_or_create(cls, path: Path) -> PlatformKey:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 key") from None
            return cls(private)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)


def tree_head_bytes(timestamp_ms: int, size: int, root: bytes) -> bytes:
    """RFC 6962 §3.5 ``TreeHeadSignature``: version v1 (0), tree_hash (1), timestamp, size, root."""
    return struct.pack(">BBQQ", 0, 1, timestamp_ms, size) + root


def verify_tree_head(head: TreeHead, public_raw: bytes) -> bool:
    public = Ed25519PublicKey.from_public_bytes(public_raw)
    data = tree_head_bytes(head.timestamp_ms, head.tree_size, bytes.fromhex(head.root_hash))
    try:
        public.verify(base64.b64decode(head.signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


async def sign_tree_head(session: AsyncSession, key: PlatformKey) -> TreeHead:
    """Sign and store the head of the whole log as it is in this transaction."""
    await _lock(session)
    size = await tree_size(session)
    root = tree_root(await leaf_hashes(session, size))
    timestamp_ms = int(utcnow().timestamp() * 1000)
    head = TreeHead(
        tree_size=size,
        root_hash=root.hex(),
        timestamp_ms=timestamp_ms,
        key_id=key.key_id,
        signature=base64.b64encode(key.sign(tree_head_bytes(timestamp_ms, size, root))).decode(),
    )
    session.add(head)
    await session.flush()
    return head


async def latest_tree_head(
    session: AsyncSession, key: PlatformKey, *, covering: int = 0, max_age: dt.timedelta
) -> TreeHead:
    """The newest stored tree head if it covers leaf ``covering`` and is younger than
    ``max_age``; otherwise a fresh one, signed now and stored ("on demand")."""
    head = await session.scalar(select(TreeHead).order_by(TreeHead.id.desc()).limit(1))
    if (
        head is not None
        and head.tree_size > covering
        and head.key_id == key.key_id
        and utcnow() - head.created_at < max_age
    ):
        return head
    return await sign_tree_head(session, key)


@dataclass(frozen=True)
class Proof:
    leaf_index: int
    tree_size: int
    path: list[bytes]


async def prove_inclusion(session: AsyncSession, index: int, size: int) -> Proof:
    return Proof(index, size, inclusion_proof(index, await leaf_hashes(session, size)))


async def prove_consistency(session: AsyncSession, first: int, second: int) -> list[bytes]:
    return consistency_proof(first, await leaf_hashes(session, second))


def tree_head_json(head: TreeHead, key: PlatformKey | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "timestamp_ms": head.timestamp_ms,
        "key_id": head.key_id,
        "signature": head.signature,
        "signature_algorithm": "Ed25519",
        "signed_data": "RFC 6962 TreeHeadSignature: u8 version=0, u8 signature_type=1, "
        "u64 timestamp_ms, u64 tree_size, 32-byte root (big-endian)",
    }
    if key is not None and key.key_id == head.key_id:
        data["public_key"] = base64.b64encode(key.public_raw).decode()
    return data
