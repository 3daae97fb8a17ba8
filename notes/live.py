"""The documents in this process's memory, and the one path every change takes.

``NoteHub.accept`` is what "an acknowledged edit" means: the update is checked (decodable, the
sender may write, the record is not frozen) and stored in its own committed transaction before
it returns; only then does the caller acknowledge it and pass it on. The in-memory ``Doc`` of a
document is a cache of updates 1…``seq``: it answers a joining client's sync step 1 without a
database read of the whole history. With several processes each one's cache catches up from the
database whenever it sees a number it has not applied (updates are numbered contiguously per
document, see ``notes.models``), and before answering a sync step 1, so no process ever serves a
state older than what it was told exists. Yjs updates are idempotent and commutative, so
applying one twice is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pycrdt import Doc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.audit import AuditAction
from cases.audit import record as audit
from cases.catalogue import N_
from cases.errors import DomainError, Invalid
from cases.models import Case, utcnow
from cases.uow import transaction
from notes import access, errors, record, store
from notes.access import Principal
from notes.catalogue import MAX_UPDATE_BYTES
from notes.models import NoteDocument
from notes.text import text_of_update, transform_to
from rooms.models import Hearing

log = logging.getLogger("yuntiao.notes")

Authorise = Callable[[AsyncSession], Awaitable[Principal]]
# Told of every accepted update (by this process), in order, once per commit: the document's key
# and, for each update stored in that commit, (seq, update, who sent it: a socket id, or None).
# The transport passes them to the other readers of the document.
Stored = tuple[int, bytes, str | None]
Listener = Callable[[str, list[Stored]], Awaitable[None]]
# Told when a document stops taking edits (frozen): key.
FreezeListener = Callable[[str], Awaitable[None]]
# Makes the record's PDF: (text, case, hearing, frozen at, frozen by) → bytes.
RenderRecord = Callable[[str, Case, Hearing, dt.datetime, str], bytes]
# Runs in the freeze's transaction (tell the parties): session, frozen record, case, who froze it.
AfterFreeze = Callable[[AsyncSession, NoteDocument, Case, Principal], Awaitable[None]]


@dataclass
class LiveDoc:
    document_id: int
    key: str
    doc: Doc
    seq: int
    snapshot_seq: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Pending:
    update: bytes
    authorise: Authorise
    origin: str | None
    done: asyncio.Future[Accepted]


@dataclass(frozen=True)
class Accepted:
    key: str
    seq: int
    document: NoteDocument


class NoteHub:
    """One per app (``server.app``). ``snapshot_every``: compact after this many updates."""

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        snapshot_every: int = 200,
        max_docs: int = 256,
    ) -> None:
        self.maker = maker
        self.snapshot_every = max(1, snapshot_every)
        self.max_docs = max_docs
        self._docs: OrderedDict[int, LiveDoc] = OrderedDict()
        self._loading = asyncio.Lock()
        self.listeners: list[Listener] = []
        self.freeze_listeners: list[FreezeListener] = []
        self._queues: dict[str, list[_Pending]] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Let stored edits finish and snapshots being written land (before the engine closes)."""
        pending = [*self._drains.values(), *self._background]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- the in-memory documents ----------------------------------------------------------

    async def live(self, document: NoteDocument) -> LiveDoc:
        found = self._docs.get(document.id)
        if found is None:
            async with self._loading:
                found = self._docs.get(document.id)
                if found is None:
                    async with self.maker() as session:
                        state, head = await store.load_state(session, document.id)
                    found = LiveDoc(
                        document.id,
                        document.key,
                        store.doc_from(state),
                        head,
                        document.snapshot_seq,
                    )
                    self._docs[document.id] = found
                    self._evict()
        self._docs.move_to_end(document.id)
        return found

    def _evict(self) -> None:
        while len(self._docs) > self.max_docs:
            oldest = next(iter(self._docs.values()))
            if oldest.lock.locked():
                return
            del self._docs[oldest.document_id]

    async def _catch_up(self, live: LiveDoc, upto: int | None = None) -> None:
        """Apply what other processes stored since ``live.seq`` (caller holds ``live.lock``)."""
        async with self.maker() as session:
            rows = await store.updates_between(session, live.document_id, live.seq, upto)
        for seq, data in rows:
            if seq == live.seq + 1:
                live.doc.apply_update(data)
                live.seq = seq

    async def _apply(self, live: LiveDoc, seq: int, update: bytes) -> None:
        async with live.lock:
            if seq <= live.seq:
                return  # a catch-up already brought it in
            if seq > live.seq + 1:
                await self._catch_up(live, seq - 1)
            live.doc.apply_update(update)
            live.seq = seq
            if live.seq - live.snapshot_seq >= self.snapshot_every:
                # Written beside the edits, not in their way: a snapshot only speeds up loading.
                live.snapshot_seq = live.seq
                task = asyncio.create_task(
                    self._snapshot(live.document_id, live.doc.get_update(), live.seq)
                )
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _snapshot(self, document_id: int, state: bytes, upto: int) -> None:
        try:
            async with transaction(self.maker) as session:
                await store.write_snapshot(session, document_id, state, upto)
        except Exception:  # noqa: BLE001 - the next one will do; the updates are all stored
            log.warning(
                "snapshot of notes document %s up to %s failed", document_id, upto, exc_info=True
            )

    async def sync_step2(self, document: NoteDocument, state_vector: bytes) -> bytes:
        """The update a client with ``state_vector`` is missing (the reply to its sync step 1)."""
        live = await self.live(document)
        async with live.lock:
            await self._catch_up(live)
            return live.doc.get_update(state_vector) if state_vector else live.doc.get_update()

    async def state_vector(self, document: NoteDocument) -> bytes:
        live = await self.live(document)
        async with live.lock:
            await self._catch_up(live)
            return live.doc.get_state()

    async def adds_anything(self, document: NoteDocument, update: bytes) -> bool:
        """Whether ``update`` holds something this document does not (a client's sync step 2
        usually repeats what the server already has, deletions included)."""
        live = await self.live(document)
        async with live.lock:
            before = live.doc.get_update()
            probe = store.doc_from(before)
            probe.apply_update(update)
            return probe.get_update() != before

    # ---- changes ---------------------------------------------------------------------------

    async def accept(
        self, key: str, update: bytes, authorise: Authorise, origin: str | None = None
    ) -> Accepted:
        """Store ``update`` to document ``key`` as an edit by whoever ``authorise`` finds (in the
        same transaction), then tell the listeners. Raises a ``DomainError`` when refused.

        Edits to one document that arrive while a transaction is running are stored together
        in the next one (group commit): under load each edit does not wait for its own commit
        behind the others', and SQLite's busy-waiting (which sleeps in growing steps) is never
        reached by our own writers."""
        check_update(update)
        pending = _Pending(update, authorise, origin, asyncio.get_running_loop().create_future())
        self._queues.setdefault(key, []).append(pending)
        if key not in self._drains:
            # Its own task: a caller that goes away (a closed socket) must not strand the others.
            self._drains[key] = asyncio.create_task(self._drain(key))
        return await pending.done

    async def _drain(self, key: str) -> None:
        try:
            while self._queues.get(key):
                await self._flush(key, self._queues.pop(key))
        finally:
            self._drains.pop(key, None)

    async def _flush(self, key: str, batch: list[_Pending]) -> None:
        try:
            async with transaction(self.maker) as session:
                document, case = await store.open_document(session, key)
                # Access is checked again for every edit; a socket's edits in one batch share
                # the answer (same link or session, same moment).
                known: dict[str, Principal] = {}
                allowed: list[tuple[_Pending, Principal]] = []
                for pending in batch:
                    try:
                        principal = known.get(pending.origin or "")
                        if principal is None:
                            principal = await pending.authorise(session)
                            access.check_write(principal, document, case)
                            if pending.origin:
                                known[pending.origin] = principal
                    except DomainError as exc:
                        pending.done.set_exception(exc)
                        continue
                    allowed.append((pending, principal))
                seqs = await store.append_updates(
                    session, document.id, [(p.update, who.actor) for p, who in allowed]
                )
            live = await self.live(document)
            stored = [
                (seq, pending.update, pending.origin)
                for (pending, _who), seq in zip(allowed, seqs, strict=True)
            ]
            for seq, update, _origin in stored:
                await self._apply(live, seq, update)
            # One telling per commit: under load the transport sends a group commit's updates
            # to each reader as one message instead of one each.
            if stored:
                await self._tell(key, stored)
            for (pending, _who), seq in zip(allowed, seqs, strict=True):
                pending.done.set_result(Accepted(key, seq, document))
        except BaseException as exc:
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def restore(self, key: str, to_seq: int, authorise: Authorise) -> Accepted:
        """Bring document ``key`` back to how it was after update ``to_seq``: a new edit (by the
        restorer, audited) from the current text to the old one, so nothing is rewritten and
        the restore itself can be undone the same way."""
        async with transaction(self.maker) as session:
            principal = await authorise(session)
            document, case = await store.open_document(
                session, key, lambda d, c: access.check_write(principal, d, c)
            )
            if not 1 <= to_seq <= document.head_seq:
                raise Invalid(N_("There is no such version."), code="notes_no_such_version")
            old_text = text_of_update(await store.state_at(session, document.id, to_seq))
            current, _ = await store.load_state(session, document.id)
            edit = transform_to(store.doc_from(current), old_text)
            seq = await store.append_update(session, document.id, edit, principal.actor)
            await audit(
                session,
                principal.actor,
                AuditAction.NOTES_RESTORED,
                object_type="notes",
                object_id=key,
                case_id=case.id,
                organisation_id=case.organisation_id,
                details={"to_version": to_seq, "new_version": seq, "kind": document.kind},
            )
        await self._apply(await self.live(document), seq, edit)
        await self._tell(key, [(seq, edit, None)])
        return Accepted(key, seq, document)

    async def freeze(
        self,
        key: str,
        authorise: Authorise,
        render: RenderRecord,
        after: AfterFreeze | None = None,
    ) -> str:
        """Freeze record ``key`` as it is now (see ``notes.record``); returns the PDF's SHA-256."""
        async with transaction(self.maker) as session:
            principal = await authorise(session)
            document, case = await store.open_document(
                session, key, lambda d, c: access.check_write(principal, d, c)
            )
        text, seq = await self.current_text(document)
        frozen_at = utcnow()
        async with transaction(self.maker) as session:
            principal = await authorise(session)
            document, case = await store.open_document(session, key)
            access.check_write(principal, document, case)
            hearing = await session.get(Hearing, document.hearing_id or 0)
            if hearing is None:
                raise Invalid(
                    N_("Only a hearing record can be frozen."), code="record_not_freezable"
                )
            by = principal.user.display_name if principal.user else principal.actor.label
            pdf = render(text, case, hearing, frozen_at, by)
            digest = await record.do_freeze(
                session, principal.actor, document, case, seq, text, pdf, frozen_at
            )
            if after is not None:
                await after(session, document, case, principal)
        for listener in self.freeze_listeners:
            await listener(key)
        return digest

    async def current_text(self, document: NoteDocument) -> tuple[str, int]:
        live = await self.live(document)
        async with live.lock:
            await self._catch_up(live)
            return text_of_update(live.doc.get_update()), live.seq

    async def _tell(self, key: str, stored: list[Stored]) -> None:
        for listener in self.listeners:
            await listener(key, stored)


def check_update(update: bytes) -> None:
    """Refuse what is not a Yjs update before it is stored (a bad row would break every load)."""
    if not isinstance(update, bytes | bytearray) or not update or len(update) > MAX_UPDATE_BYTES:
        raise errors.bad_update()
    try:
        Doc().apply_update(bytes(update))
    except ValueError:
        raise errors.bad_update() from None
