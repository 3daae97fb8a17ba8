"""Registered evidence: listing, reading (each read is a ledger event), withdrawal, and "does
this file match a registered item". ``check_*`` decide, ``do_*`` change state in the caller's
transaction and append the ledger event of the change."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.catalogue import N_
from cases.errors import Conflict, NotFound
from cases.intake import get_case
from cases.models import Case, utcnow
from evidence import ledger
from evidence.access import Principal, check_view, check_withdraw
from evidence.catalogue import (
    EV_DOWNLOADED,
    EV_MATCH_CHECKED,
    EV_VIEWED,
    EV_WITHDRAWN,
    SUBMITTED,
    WITHDRAWN,
)
from evidence.errors import TooLarge
from evidence.models import EvidenceItem, LedgerEntry, TreeHead

TREE_HEAD_MAX_AGE = dt.timedelta(minutes=10)


async def load_case(session: AsyncSession, principal: Principal, case_id: int) -> Case:
    case = await get_case(session, case_id)
    check_view(principal, case)
    return case


async def list_items(session: AsyncSession, case: Case) -> list[EvidenceItem]:
    rows = await session.scalars(
        select(EvidenceItem).where(EvidenceItem.case_id == case.id).order_by(EvidenceItem.number)
    )
    return list(rows)


async def get_item(session: AsyncSession, case: Case, number: int) -> EvidenceItem:
    item = await session.scalar(
        select(EvidenceItem).where(EvidenceItem.case_id == case.id, EvidenceItem.number == number)
    )
    if item is None:
        raise NotFound(N_("This case has no evidence item with that number."))
    return item


@dataclass(frozen=True)
class ItemProof:
    """The item's "submitted" event is leaf ``proof.leaf_index`` of the tree ``head`` signs."""

    leaf_hash: str
    entry: str
    proof: ledger.Proof
    head: TreeHead


async def do_view_item(
    session: AsyncSession,
    principal: Principal,
    case: Case,
    item: EvidenceItem,
    key: ledger.PlatformKey,
) -> ItemProof:
    """Record the view, and prove the item's registration against a signed tree head."""
    await ledger.append(
        session, principal.actor, EV_VIEWED, case_id=case.id, item_id=item.id, details={}
    )
    head = await ledger.latest_tree_head(
        session, key, covering=item.ledger_seq, max_age=TREE_HEAD_MAX_AGE
    )
    proof = await ledger.prove_inclusion(session, item.ledger_seq, head.tree_size)
    entry = await session.get(LedgerEntry, item.ledger_seq)
    if entry is None:
        raise ledger.LedgerBroken(f"ledger entry {item.ledger_seq} is missing")
    return ItemProof(entry.leaf_hash, entry.entry, proof, head)


def check_download(principal: Principal, item: EvidenceItem) -> None:
    """Withdrawn evidence stays in the file for staff; parties no longer get its content."""
    if item.status == WITHDRAWN and not principal.is_staff:
        raise Conflict(
            N_("This evidence was withdrawn and can no longer be downloaded."),
            code="evidence_withdrawn",
        )


async def do_record_download(
    session: AsyncSession, principal: Principal, case: Case, item: EvidenceItem
) -> None:
    check_download(principal, item)
    await ledger.append(
        session,
        principal.actor,
        EV_DOWNLOADED,
        case_id=case.id,
        item_id=item.id,
        details={"sha256": item.sha256},
    )


async def do_withdraw(
    session: AsyncSession, principal: Principal, case: Case, item: EvidenceItem, reason: str
) -> EvidenceItem:
    """submitted → withdrawn, once (a conditional UPDATE: two clicks cannot both withdraw)."""
    check_withdraw(principal, case, item)
    now = utcnow()
    done = await session.execute(
        update(EvidenceItem)
        .where(EvidenceItem.id == item.id, EvidenceItem.status == SUBMITTED)
        .values(status=WITHDRAWN, withdrawn_at=now, withdrawal_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict(N_("This evidence has already been withdrawn."), code="evidence_withdrawn")
    await ledger.append(
        session,
        principal.actor,
        EV_WITHDRAWN,
        case_id=case.id,
        item_id=item.id,
        details={"reason": reason},
    )
    await session.refresh(item)
    return item


async def hash_stream(body: AsyncIterator[bytes], max_bytes: int) -> tuple[str, int]:
    """SHA-256 and size of a streamed body, refusing more than ``max_bytes``."""
    sha = hashlib.sha256()
    size = 0
    async for data in body:
        size += len(data)
        if size > max_bytes:
            raise TooLarge(
                N_("The file is larger than any evidence file can be, so it cannot match."),
                code="evidence_file_too_large",
            )
        sha.update(data)
    return sha.hexdigest(), size


async def do_match(
    session: AsyncSession, principal: Principal, case: Case, sha256: str, size: int
) -> list[EvidenceItem]:
    """The case's items with this content (usually none or one); the check is a ledger event."""
    items = list(
        await session.scalars(
            select(EvidenceItem)
            .where(
                EvidenceItem.case_id == case.id,
                EvidenceItem.sha256 == sha256,
                EvidenceItem.size == size,
            )
            .order_by(EvidenceItem.number)
        )
    )
    await ledger.append(
        session,
        principal.actor,
        EV_MATCH_CHECKED,
        case_id=case.id,
        item_id=items[0].id if items else None,
        details={"sha256": sha256, "size": size, "matched": [i.number for i in items]},
    )
    return items
