"""Persistence of documents: append an update (in the caller's transaction, before anyone is told
it was accepted), load the current state, compact into a snapshot, and read the history.

Nothing here keeps state between calls; ``notes.live`` holds the in-memory documents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pycrdt import Doc, merge_updates
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from cases.actor import Actor
from cases.models import Case, utcnow
from notes import errors
from notes.catalogue import KINDS, RECORD, doc_key, parse_key
from notes.models import NoteDocument, NoteSnapshot, NoteUpdate
from rooms.models import Hearing

Check = Callable[[NoteDocument, Case], object]


async def get_document(session: AsyncSession, key: str) -> NoteDocument | None:
    return (
        await session.scalars(select(NoteDocument).where(NoteDocument.key == key))
    ).one_or_none()


async def open_document(
    session: AsyncSession, key: str, check: Check | None = None
) -> tuple[NoteDocument, Case]:
    """The document named ``key`` with its case, created on first use (a record needs its
    hearing to exist). ``notes_not_found`` for a key that names nothing. ``check`` (an access
    check that raises) runs before anything is created, so nobody creates rows they may not
    read."""
    parsed = parse_key(key)
    if parsed is None:
        raise errors.not_found()
    kind, number = parsed
    found = (
        await session.execute(
            select(NoteDocument, Case)
            .join(Case, Case.id == NoteDocument.case_id)
            .where(NoteDocument.key == key)
            # Access checks need the case's own columns, not its parties (a query less per edit).
            .options(raiseload(Case.parties))
        )
    ).first()
    if found is None:
        if kind == RECORD:
            hearing = await session.get(Hearing, number)
            if hearing is None:
                raise errors.not_found()
            case_id, hearing_id = hearing.case_id, hearing.id
        else:
            case_id, hearing_id = number, None
        case = await session.get(Case, case_id)
        if case is None:
            raise errors.not_found()
        if check is not None:
            check(NoteDocument(key=key, kind=kind, case_id=case_id, hearing_id=hearing_id), case)
        return await _create(session, key, kind, case_id, hearing_id), case
    document, case = found
    if check is not None:
        check(document, case)
    return document, case


async def _create(
    session: AsyncSession, key: str, kind: str, case_id: int, hearing_id: int | None
) -> NoteDocument:
    assert kind in KINDS and key == doc_key(kind, case_id=case_id, hearing_id=hearing_id)
    try:
        # A savepoint: two first visitors at once must not fail the surrounding transaction.
        async with session.begin_nested():
            document = NoteDocument(
                key=key, kind=kind, case_id=case_id, hearing_id=hearing_id, created_at=utcnow()
            )
            session.add(document)
            await session.flush()
        return document
    except IntegrityError:
        found = await get_document(session, key)
        if found is None:  # pragma: no cover - the conflict was this key
            raise
        return found


async def append_update(session: AsyncSession, document_id: int, data: bytes, actor: Actor) -> int:
    """Store ``data`` as the document's next update; returns its number. Commit before telling
    anyone it was accepted."""
    return (await append_updates(session, document_id, [(data, actor)]))[0]


async def append_updates(
    session: AsyncSession, document_id: int, updates: list[tuple[bytes, Actor]]
) -> list[int]:
    """Store several updates in this order; returns their numbers (two statements in all)."""
    if not updates:
        return []
    last = (
        await session.execute(
            update(NoteDocument)
            .where(NoteDocument.id == document_id)
            .values(head_seq=NoteDocument.head_seq + len(updates))
            .returning(NoteDocument.head_seq)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    first = int(last) - len(updates) + 1
    now = utcnow()
    session.add_all(
        NoteUpdate(
            document_id=document_id,
            seq=first + i,
            data=data,
            actor_type=actor.kind,
            actor_id=actor.id,
            actor_label=actor.label[:200],
            at=now,
        )
        for i, (data, actor) in enumerate(updates)
    )
    await session.flush()
    return list(range(first, first + len(updates)))


async def updates_between(
    session: AsyncSession, document_id: int, after: int, upto: int | None = None
) -> list[tuple[int, bytes]]:
    query = select(NoteUpdate.seq, NoteUpdate.data).where(
        NoteUpdate.document_id == document_id, NoteUpdate.seq > after
    )
    if upto is not None:
        query = query.where(NoteUpdate.seq <= upto)
    rows = (await session.execute(query.order_by(NoteUpdate.seq))).all()
    return [(int(seq), bytes(data)) for seq, data in rows]


async def load_state(session: AsyncSession, document_id: int) -> tuple[bytes, int]:
    """The document's merged update and the number of its last update: the newest snapshot plus
    whatever came after it."""
    snapshot = (
        await session.scalars(
            select(NoteSnapshot)
            .where(NoteSnapshot.document_id == document_id)
            .order_by(NoteSnapshot.upto_seq.desc())
            .limit(1)
        )
    ).first()
    parts: list[bytes] = [bytes(snapshot.state)] if snapshot is not None else []
    after = snapshot.upto_seq if snapshot is not None else 0
    rows = await updates_between(session, document_id, after)
    parts.extend(data for _, data in rows)
    head = rows[-1][0] if rows else after
    return (merge_updates(*parts) if parts else b""), head


async def state_at(session: AsyncSession, document_id: int, seq: int) -> bytes:
    """The document as it was after update ``seq`` (replayed from the updates, which are kept)."""
    rows = await updates_between(session, document_id, 0, seq)
    return merge_updates(*(data for _, data in rows)) if rows else b""


async def write_snapshot(session: AsyncSession, document_id: int, state: bytes, upto: int) -> None:
    """Keep ``state`` (updates 1…``upto`` merged) as the document's only snapshot."""
    current = await session.get(NoteDocument, document_id, with_for_update=True)
    if current is None or current.snapshot_seq >= upto:
        return  # another process compacted further already
    session.add(NoteSnapshot(document_id=document_id, upto_seq=upto, state=state, at=utcnow()))
    current.snapshot_seq = upto
    await session.execute(
        delete(NoteSnapshot).where(
            NoteSnapshot.document_id == document_id, NoteSnapshot.upto_seq < upto
        )
    )
    await session.flush()


def doc_from(update: bytes) -> Doc:
    doc: Doc = Doc()
    if update:
        doc.apply_update(update)
    return doc


@dataclass(frozen=True)
class Version:
    """Consecutive updates by one person with pauses shorter than the gap: one entry of history.
    Restoring it means going back to the document as it was after ``last_seq``."""

    first_seq: int
    last_seq: int
    actor_type: str
    actor_id: int | None
    actor_label: str
    started_at: dt.datetime
    ended_at: dt.datetime
    edits: int


async def history(
    session: AsyncSession, document_id: int, gap: dt.timedelta = dt.timedelta(minutes=2)
) -> list[Version]:
    """Who changed the document and when, newest first."""
    rows = (
        await session.execute(
            select(
                NoteUpdate.seq,
                NoteUpdate.actor_type,
                NoteUpdate.actor_id,
                NoteUpdate.actor_label,
                NoteUpdate.at,
            )
            .where(NoteUpdate.document_id == document_id)
            .order_by(NoteUpdate.seq)
        )
    ).all()
    versions: list[Version] = []
    for seq, actor_type, actor_id, label, at in rows:
        last = versions[-1] if versions else None
        if (
            last is not None
            and (last.actor_type, last.actor_id) == (actor_type, actor_id)
            and at - last.ended_at <= gap
        ):
            versions[-1] = Version(
                last.first_seq,
                seq,
                actor_type,
                actor_id,
                label,
                last.started_at,
                at,
                last.edits + 1,
            )
        else:
            versions.append(Version(seq, seq, actor_type, actor_id, label, at, at, 1))
    return versions[::-1]
