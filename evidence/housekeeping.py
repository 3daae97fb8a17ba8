"""Periodic evidence housekeeping, run by each server process (``web.evidence`` starts it in the
app's ``cleanup_ctx``; ``YUNTIAO_EVIDENCE_HOUSEKEEPING_INTERVAL_S=0`` turns it off):

- uploads left unfinished for longer than the expiry are deleted, row and stored bytes;
- while the ledger grows, a signed tree head is made at least every tree-head interval, so that
  whoever keeps an earlier head (``GET /api/v1/evidence/ledger/tree-heads`` publishes them) can
  later ask for a consistency proof. Views and downloads also sign heads on demand.

Several processes may run it at once: expiring is idempotent (``discard_upload`` re-checks the
row) and an extra tree head is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.models import utcnow
from cases.uow import transaction
from evidence import ledger
from evidence.catalogue import UPLOAD_RECEIVING
from evidence.models import EvidenceUpload, TreeHead
from evidence.runtime import EvidenceRuntime
from evidence.storage import EvidenceStore
from evidence.uploads import discard_upload

log = logging.getLogger("yuntiao")


async def expire_uploads(
    maker: async_sessionmaker[AsyncSession], store: EvidenceStore, older_than: dt.timedelta
) -> int:
    """Delete uploads whose last byte arrived before ``now - older_than``; how many."""
    cutoff = utcnow() - older_than
    async with transaction(maker) as session:
        stale = list(
            await session.scalars(
                select(EvidenceUpload).where(
                    EvidenceUpload.status == UPLOAD_RECEIVING, EvidenceUpload.updated_at < cutoff
                )
            )
        )
    for upload in stale:
        await discard_upload(maker, store, upload)
    return len(stale)


async def sign_if_due(
    maker: async_sessionmaker[AsyncSession], key: ledger.PlatformKey, interval: dt.timedelta
) -> TreeHead | None:
    """A new signed tree head when the ledger grew since the newest one and that one is older
    than ``interval`` (or there is none yet)."""
    async with transaction(maker) as session:
        size = await ledger.tree_size(session)
        newest = await session.scalar(select(TreeHead).order_by(TreeHead.id.desc()).limit(1))
        if size == 0 or (
            newest is not None
            and newest.key_id == key.key_id
            and (newest.tree_size >= size or utcnow() - newest.created_at < interval)
        ):
            return None
        return await ledger.sign_tree_head(session, key)


@dataclass(frozen=True)
class Done:
    expired: int
    signed: TreeHead | None


async def run_once(
    maker: async_sessionmaker[AsyncSession],
    rt: EvidenceRuntime,
    upload_expiry: dt.timedelta,
    tree_head_interval: dt.timedelta,
) -> Done:
    expired = await expire_uploads(maker, rt.store, upload_expiry)
    signed = await sign_if_due(maker, rt.key, tree_head_interval)
    return Done(expired, signed)


async def run_periodically(
    maker: async_sessionmaker[AsyncSession],
    get_runtime: Callable[[], EvidenceRuntime],
    every_s: float,
    upload_expiry: dt.timedelta,
    tree_head_interval_s: float,
) -> None:
    """``run_once`` every ``every_s`` seconds (the first time after one interval, so a process
    that restarts often does no work at start) until cancelled; a failure is logged and the
    next round tries again."""
    while True:
        await asyncio.sleep(every_s)
        try:
            done = await run_once(
                maker,
                get_runtime(),
                upload_expiry,
                dt.timedelta(seconds=tree_head_interval_s),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("evidence housekeeping failed; trying again in %s s", every_s)
            continue
        if done.expired or done.signed is not None:
            log.info(
                "evidence housekeeping: %d abandoned uploads deleted, tree head %s",
                done.expired,
                f"of size {done.signed.tree_size} signed" if done.signed else "not due",
            )
