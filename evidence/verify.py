"""``yuntiao evidence verify``: re-hash every stored file (decrypting it) and recompute the
ledger, naming every mismatch:

- a stored file that does not decrypt (a changed byte, truncation, a swapped chunk), is missing,
  or whose SHA-256 or size differs from its item;
- a ledger entry that is missing (a gap in the leaf indexes, or fewer entries than a signed tree
  head covers), altered (its columns, canonical text or leaf hash disagree), or an item whose
  "submitted" entry is gone or names another hash, or an examination opinion whose
  "examined" entry is gone or says something else (an opinion edited behind the triggers);
- a signed tree head whose signature fails, or whose root no longer matches the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from evidence import ledger
from evidence.catalogue import EV_EXAMINED, EV_SUBMITTED
from evidence.models import EvidenceItem, EvidenceOpinion, LedgerEntry, TreeHead
from evidence.storage import LocalEvidenceStore, StoredFileError


@dataclass
class VerifyReport:
    files: int = 0
    entries: int = 0
    tree_heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _hash_file(store: LocalEvidenceStore, blob_id: str) -> tuple[str, int]:
    sha = hashlib.sha256()
    with store.open_reader(blob_id) as reader:
        for index in range(reader.chunks()):
            sha.update(reader.chunk(index))
        return sha.hexdigest(), reader.size


async def verify_files(
    session: AsyncSession, store: LocalEvidenceStore, report: VerifyReport
) -> None:
    items = (await session.scalars(select(EvidenceItem).order_by(EvidenceItem.id))).all()
    for item in items:
        name = f"case {item.case_id} item {item.number} (file {item.blob_id})"
        try:
            digest, size = await asyncio.to_thread(_hash_file, store, item.blob_id)
        except FileNotFoundError:
            report.problems.append(f"{name}: the stored file is missing")
            continue
        except StoredFileError as exc:
            report.problems.append(f"{name}: the stored file was altered: {exc}")
            continue
        report.files += 1
        if digest != item.sha256 or size != item.size:
            report.problems.append(
                f"{name}: content hash {digest} / {size} bytes differs from the registered "
                f"{item.sha256} / {item.size} bytes"
            )


async def verify_ledger(
    session: AsyncSession, report: VerifyReport, key: ledger.PlatformKey | None
) -> None:
    heads = (await session.scalars(select(TreeHead).order_by(TreeHead.tree_size))).all()
    pending = list(heads)
    acc = ledger.RootAccumulator()
    expected = 0
    last_seq = -1
    while True:
        rows = (
            await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.seq > last_seq)
                .order_by(LedgerEntry.seq)
                .limit(5000)
            )
        ).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected:
                report.problems.append(
                    f"ledger entry {expected} is missing (the next stored entry is {row.seq})"
                )
                expected = row.seq
            while pending and pending[0].tree_size <= acc.size:
                _check_head(pending.pop(0), acc, report, key)
            text = ledger.entry_text(row)
            leaf = ledger.leaf_hash(row.entry.encode())
            if text != row.entry:
                report.problems.append(f"ledger entry {row.seq} was altered (its fields changed)")
            if leaf.hex() != row.leaf_hash:
                report.problems.append(f"ledger entry {row.seq} was altered (leaf hash differs)")
            acc.add(leaf)
            expected += 1
            last_seq = row.seq
        session.expunge_all()
    report.entries = acc.size
    for head in pending:
        _check_head(head, acc, report, key)
    report.tree_heads = len(heads)


def _check_head(
    head: TreeHead,
    acc: ledger.RootAccumulator,
    report: VerifyReport,
    key: ledger.PlatformKey | None,
) -> None:
    name = f"signed tree head {head.id} (size {head.tree_size})"
    if key is not None:
        if head.key_id != key.key_id:
            report.problems.append(f"{name}: signed with a key that is not the platform key")
        elif not ledger.verify_tree_head(head, key.public_raw):
            report.problems.append(f"{name}: the signature does not verify with the platform key")
    if head.tree_size > acc.size:
        report.problems.append(
            f"{name}: covers {head.tree_size} entries but the ledger has only {acc.size}: "
            "entries were removed"
        )
    elif head.tree_size == acc.size and acc.root().hex() != head.root_hash:
        report.problems.append(f"{name}: the ledger no longer matches its root hash")


async def verify_items_in_ledger(session: AsyncSession, report: VerifyReport) -> None:
    items = (await session.scalars(select(EvidenceItem).order_by(EvidenceItem.id))).all()
    for item in items:
        entry = await session.get(LedgerEntry, item.ledger_seq)
        name = f"case {item.case_id} item {item.number}"
        if entry is None:
            report.problems.append(f"{name}: its ledger entry {item.ledger_seq} is missing")
            continue
        details = json.loads(entry.details) if entry.details else {}
        if (
            entry.event != EV_SUBMITTED
            or entry.item_id != item.id
            or details.get("sha256") != item.sha256
            or details.get("size") != item.size
        ):
            report.problems.append(
                f"{name}: ledger entry {entry.seq} does not record this item's submission "
                "(item or ledger altered)"
            )


async def verify_opinions_in_ledger(session: AsyncSession, report: VerifyReport) -> None:
    opinions = (await session.scalars(select(EvidenceOpinion).order_by(EvidenceOpinion.id))).all()
    for opinion in opinions:
        entry = await session.get(LedgerEntry, opinion.ledger_seq)
        name = f"case {opinion.case_id} opinion {opinion.id}"
        details = json.loads(entry.details) if entry is not None and entry.details else {}
        if (
            entry is None
            or entry.event != EV_EXAMINED
            or entry.item_id != opinion.item_id
            or details.get("party_id") != opinion.party_id
            or details.get("property") != opinion.property
            or details.get("stance") != opinion.stance
            or details.get("reason") != opinion.reason
        ):
            report.problems.append(
                f"{name}: ledger entry {opinion.ledger_seq} does not record this opinion "
                "(opinion or ledger altered)"
            )


async def verify_all(
    session: AsyncSession, store: LocalEvidenceStore, key: ledger.PlatformKey | None
) -> VerifyReport:
    report = VerifyReport()
    await verify_files(session, store, report)
    await verify_ledger(session, report, key)
    await verify_items_in_ledger(session, report)
    await verify_opinions_in_ledger(session, report)
    return report
