"""Resumable evidence uploads (the tus 1.0 protocol's core, creation and termination; the HTTP
edge is ``server.api.evidence``) and the registration of a finished file as an evidence item.

How bytes flow: the request body is streamed into the store's encrypting writer
(``evidence.storage``); the writer hands each plaintext chunk once, in order, to an observer that
updates the SHA-256 (and checks UTF-8 for text files) — one pass, no re-reading. Nothing is
registered until the last byte is stored, the file fsynced (file and directory), hashed and its
type confirmed; then ``do_register_item`` writes the item and its ledger event in one transaction.

Hash state across PATCH requests: a ``hashlib`` object cannot be stored, so each upload's hash
state lives in memory (``UploadStates``, bounded; per server process) together with the number of
full chunks it has absorbed. A PATCH reuses it when that number equals the chunks durably stored;
otherwise (server restarted, state evicted, or another process took the previous PATCH) the
stored prefix is decrypted and re-hashed once before appending. Only then is there a second pass
over those bytes, and only over that prefix.

Concurrent PATCHes of one upload: an ``asyncio.Lock`` per upload in this process, and an
exclusive ``flock`` on the unfinished file across processes (``UploadBusy``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import hashlib
import io
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.catalogue import N_
from cases.errors import Conflict, Invalid, NotFound
from cases.intake import get_case
from cases.models import Case
from cases.uow import transaction
from evidence import filetypes, ledger
from evidence.access import Principal, check_submit, check_upload_owner
from evidence.catalogue import (
    CATEGORIES,
    EV_SUBMITTED,
    MAX_FILENAME_CHARS,
    MAX_PURPOSE_CHARS,
    MAX_TITLE_CHARS,
    UPLOAD_COMPLETE,
    UPLOAD_RECEIVING,
)
from evidence.errors import TooLarge, UnsupportedType
from evidence.models import EvidenceItem, EvidenceUpload
from evidence.storage import BlobWriter, EvidenceStore, new_blob_id

# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators and bidi overrides
# that make a name print as something it is not. A "../" in a name is harmless: never a path.
_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_BINARY_CONTROLS = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
BUSY_WAIT_S = 5.0


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_case_bytes: int


@dataclass(frozen=True)
class UploadMetadata:
    filename: str
    title: str
    category: str
    purpose: str


class UploadBusy(Conflict):
    """Another request is writing to this upload right now (HTTP 423 at the edge)."""

    code = "evidence_upload_busy"


# ---- creation ------------------------------------------------------------------------------------


def parse_tus_metadata(header: str) -> dict[str, str]:
    """tus ``Upload-Metadata``: comma-separated ``key base64value`` pairs (value optional)."""
    values: dict[str, str] = {}
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Invalid(
                N_(
                    "The upload's description (Upload-Metadata) is not readable: each value must "
                    "be UTF-8 text in base64."
                ),
                code="evidence_metadata_invalid",
            ) from None
    return values


def check_metadata(values: dict[str, str]) -> UploadMetadata:
    filename = values.get("filename", "")
    if not filename.strip():
        raise Invalid(N_("Give the file's name."), code="evidence_filename_required")
    if len(filename) > MAX_FILENAME_CHARS or _BAD_NAME_CHARS.search(filename):
        raise Invalid(
            N_(
                "The file name contains control characters or is longer than %(max)d "
                "characters. Rename the file and send it again."
            ),
            code="evidence_filename_invalid",
            max=MAX_FILENAME_CHARS,
        )
    title = values.get("title", "").strip()
    if not title:
        raise Invalid(N_("Give the evidence a title."), code="evidence_title_required")
    if len(title) > MAX_TITLE_CHARS or _BAD_NAME_CHARS.search(title):
        raise Invalid(
            N_("The title must be one line of at most %(max)d characters."),
            code="evidence_title_invalid",
            max=MAX_TITLE_CHARS,
        )
    category = values.get("category", "").strip()
    if category not in CATEGORIES:
        raise Invalid(
            N_(
                "Choose the kind of evidence: documentary, physical (photographs), audio-visual, "
                "electronic data, witness statement or expert opinion."
            ),
            code="evidence_category_invalid",
        )
    purpose = values.get("purpose", "").strip()
    if not purpose:
        raise Invalid(
            N_("Say what this evidence is meant to prove (证明目的)."),
            code="evidence_purpose_required",
        )
    if len(purpose) > MAX_PURPOSE_CHARS:
        raise Invalid(
            N_("What the evidence is meant to prove may be at most %(max)d characters."),
            code="evidence_purpose_too_long",
            max=MAX_PURPOSE_CHARS,
        )
    return UploadMetadata(filename, title, category, purpose)


async def case_bytes(session: AsyncSession, case_id: int, *, except_upload: int = 0) -> int:
    """What a case stores or has reserved: every item (withdrawn ones stay stored) plus the
    announced length of every unfinished upload."""
    items = await session.scalar(
        select(func.coalesce(func.sum(EvidenceItem.size), 0)).where(EvidenceItem.case_id == case_id)
    )
    pending = await session.scalar(
        select(func.coalesce(func.sum(EvidenceUpload.length), 0)).where(
            EvidenceUpload.case_id == case_id,
            EvidenceUpload.status == UPLOAD_RECEIVING,
            EvidenceUpload.id != except_upload,
        )
    )
    return int(items or 0) + int(pending or 0)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f}"


async def check_create_upload(
    session: AsyncSession,
    principal: Principal,
    case: Case,
    length: int | None,
    limits: Limits,
) -> int:
    check_submit(principal, case)
    if length is None:
        raise Invalid(
            N_("Say how large the file is (Upload-Length) when starting the upload."),
            code="evidence_length_required",
        )
    if length <= 0:
        raise Invalid(N_("The file is empty. Choose the right file."), code="evidence_file_empty")
    if length > limits.max_file_bytes:
        raise TooLarge(
            N_(
                "The file is larger than %(max_mib)s MB, the most one evidence file may be. "
                "Split it or compress it (for example, a shorter video clip) and send it again."
            ),
            code="evidence_file_too_large",
            max_mib=_mib(limits.max_file_bytes),
        )
    used = await case_bytes(session, case.id)
    if used + length > limits.max_case_bytes:
        raise TooLarge(
            N_(
                "This case has no room for the file: it already stores %(used_mib)s MB of "
                "evidence and may store %(max_mib)s MB. Ask the mediation office for help."
            ),
            code="evidence_case_full",
            used_mib=_mib(used),
            max_mib=_mib(limits.max_case_bytes),
        )
    return length


async def do_create_upload(
    session: AsyncSession,
    principal: Principal,
    case: Case,
    length: int | None,
    metadata: UploadMetadata,
    limits: Limits,
) -> EvidenceUpload:
    """Reserve ``length`` bytes of the case's room and an id for the file; writes nothing to
    the store yet (the first PATCH creates the file)."""
    await ledger.lock_ledger(session)  # creations of one case must not both fit the same room
    size = await check_create_upload(session, principal, case, length, limits)
    upload = EvidenceUpload(
        case_id=case.id,
        blob_id=new_blob_id(),
        length=size,
        filename=metadata.filename,
        title=metadata.title,
        category=metadata.category,
        purpose=metadata.purpose,
        user_id=principal.user.id if principal.user else None,
        party_id=principal.party_id,
        participant_id=principal.participant_id,
        uploader_label=principal.actor.label[:200],
        status=UPLOAD_RECEIVING,
    )
    session.add(upload)
    await session.flush()
    return upload


async def load_upload(
    session: AsyncSession, principal: Principal, case_id: int, upload_id: int
) -> tuple[Case, EvidenceUpload]:
    case = await get_case(session, case_id)
    check_submit(principal, case)
    upload = await session.get(EvidenceUpload, upload_id)
    if upload is None or upload.case_id != case.id:
        raise NotFound(
            N_("No such upload. It may have been cancelled; start the upload again."),
            code="evidence_upload_not_found",
        )
    check_upload_owner(principal, upload)
    return case, upload


async def upload_offset(store: EvidenceStore, upload: EvidenceUpload) -> int:
    if upload.status == UPLOAD_COMPLETE:
        return upload.length
    return await store.pending_offset(upload.blob_id)


# ---- streaming ----------------------------------------------------------------------------------


@dataclass
class UploadState:
    """What one upload's stream has shown so far. ``observe`` runs in the writer's thread."""

    sha: Any = field(default_factory=hashlib.sha256)
    chunks: int = 0  # full chunks hashed
    maybe_text: bool = True
    text_decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    head: bytes = b""
    kind: str | None = None  # sniffed type code once decided

    def observe(self, chunk: bytes | memoryview) -> None:
        self.sha.update(chunk)
        if self.maybe_text:
            try:
                self.text_decoder.decode(chunk)
            except UnicodeDecodeError:
                self.maybe_text = False
            if _BINARY_CONTROLS.search(chunk):
                self.maybe_text = False

    def observe_full(self, chunk: bytes | memoryview) -> None:
        self.observe(chunk)
        self.chunks += 1

    def text_complete(self) -> bool:
        if not self.maybe_text:
            return False
        try:
            self.text_decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
        return True


class UploadStates:
    """Per-process hash states of unfinished uploads (LRU-bounded) and one lock per upload."""

    def __init__(self, capacity: int = 256) -> None:
        self._states: OrderedDict[int, UploadState] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self._capacity = capacity

    def get(self, upload_id: int) -> UploadState | None:
        state = self._states.get(upload_id)
        if state is not None:
            self._states.move_to_end(upload_id)
        return state

    def put(self, upload_id: int, state: UploadState) -> None:
        self._states[upload_id] = state
        self._states.move_to_end(upload_id)
        while len(self._states) > self._capacity:
            self._states.popitem(last=False)

    def drop(self, upload_id: int) -> None:
        self._states.pop(upload_id, None)

    def lock(self, upload_id: int) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    def forget_lock(self, upload_id: int) -> None:
        lock = self._locks.get(upload_id)
        if lock is not None and not lock.locked():
            del self._locks[upload_id]


@dataclass(frozen=True)
class Received:
    offset: int
    item: EvidenceItem | None = None
    interrupted: bool = False


async def _open(store: EvidenceStore, blob_id: str) -> BlobWriter:
    """Open the unfinished file, waiting a little if a previous request still holds it (a client
    that lost its connection often resumes before the server has noticed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_WAIT_S
    while True:
        try:
            return await store.open_writer(blob_id)
        except BlockingIOError:
            if loop.time() >= deadline:
                raise UploadBusy(
                    N_("This upload is being sent by another connection. Wait a moment and retry."),
                ) from None
            await asyncio.sleep(0.1)


async def _rebuild(writer: BlobWriter, head_from_tail: bytes) -> UploadState:
    """Hash state of the durably stored prefix, after a restart (the one second pass)."""
    state = UploadState()
    async for chunk in writer.replay():
        if state.chunks == 0:
            state.head = chunk[: filetypes.SNIFF_BYTES]
        state.observe_full(chunk)
    if state.chunks == 0:
        state.head = head_from_tail[: filetypes.SNIFF_BYTES]
    return state


def _decide(state: UploadState, complete: bool) -> None:
    """Sniff once enough of the head is known; refuse a disallowed type as early as possible."""
    if state.kind is not None or (len(state.head) < filetypes.SNIFF_BYTES and not complete):
        return
    kind = filetypes.sniff(state.head)
    if kind is None:
        raise UnsupportedType()
    if kind != filetypes.TEXT:
        state.maybe_text = False
    state.kind = kind


async def do_receive(
    maker: async_sessionmaker[AsyncSession],
    store: EvidenceStore,
    states: UploadStates,
    principal: Principal,
    case_id: int,
    upload_id: int,
    offset: int,
    content_length: int | None,
    body: AsyncIterator[bytes],
) -> Received:
    """Append ``body`` at ``offset`` (tus PATCH). Raises ``Conflict`` (409) when ``offset`` is
    not where the upload stands, ``TooLarge`` when the body would pass the announced length,
    ``UnsupportedType`` (the upload is then discarded) when the content is not allowed. When the
    connection drops, what arrived is kept and ``interrupted`` is set. On the last byte the file
    is committed and registered (``do_register_item``): ``item`` is set."""
    async with transaction(maker) as session:
        case, upload = await load_upload(session, principal, case_id, upload_id)
    if upload.status == UPLOAD_COMPLETE:
        raise Conflict(
            N_("This upload is already complete and registered as evidence."),
            code="evidence_upload_complete",
        )
    if content_length is not None and offset + content_length > upload.length:
        raise TooLarge(
            N_("More bytes were sent than the upload announced (Upload-Length)."),
            code="evidence_upload_too_long",
        )
    async with states.lock(upload.id):
        writer = await _open(store, upload.blob_id)
        try:
            return await _receive(
                maker, store, states, principal, case, upload, writer, offset, body
            )
        finally:
            await writer.close()
            states.forget_lock(upload.id)


async def _receive(
    maker: async_sessionmaker[AsyncSession],
    store: EvidenceStore,
    states: UploadStates,
    principal: Principal,
    case: Case,
    upload: EvidenceUpload,
    writer: BlobWriter,
    offset: int,
    body: AsyncIterator[bytes],
) -> Received:
    if offset != writer.offset:
        raise Conflict(
            N_(
                "The upload stands at byte %(expected)d, not %(sent)d. Ask where it stands "
                "(HEAD) and continue from there."
            ),
            code="evidence_offset_mismatch",
            expected=writer.offset,
            sent=offset,
        )
    state = states.get(upload.id)
    if state is None or state.chunks != writer.chunks_observed:
        states.drop(upload.id)
        state = await _rebuild(writer, writer.buffered)
    writer.set_observer(state.observe)
    observed = writer.chunks_observed
    remaining = upload.length - offset
    interrupted = False
    try:
        iterator = body.__aiter__()
        while True:
            try:
                data = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # the client went away mid-body: keep what arrived
                interrupted = True
                break
            if len(data) > remaining:
                raise TooLarge(
                    N_("More bytes were sent than the upload announced (Upload-Length)."),
                    code="evidence_upload_too_long",
                )
            if len(state.head) < filetypes.SNIFF_BYTES and writer.offset < filetypes.SNIFF_BYTES:
                state.head += data[: filetypes.SNIFF_BYTES - writer.offset]
            await writer.write(data)
            remaining -= len(data)
            _decide(state, remaining == 0)
    except UnsupportedType:
        states.drop(upload.id)
        await writer.close()
        await discard_upload(maker, store, upload)
        raise
    except asyncio.CancelledError:
        await asyncio.shield(_keep(maker, writer, states, state, upload, observed))
        raise
    except BaseException:
        states.drop(upload.id)
        raise
    if remaining > 0 or interrupted:
        await _keep(maker, writer, states, state, upload, observed)
        return Received(writer.durable_offset, interrupted=interrupted)
    return await _finish(maker, store, states, principal, case, upload, writer, state)


async def _keep(
    maker: async_sessionmaker[AsyncSession],
    writer: BlobWriter,
    states: UploadStates,
    state: UploadState,
    upload: EvidenceUpload,
    observed_before: int,
) -> None:
    """Checkpoint what arrived so that the next PATCH continues from the last received byte."""
    await writer.checkpoint()
    # Every full chunk in the file was observed by ``state`` (the writer settles before a
    # checkpoint), so the state is exactly right for the next PATCH.
    state.chunks += writer.chunks_observed - observed_before
    states.put(upload.id, state)
    async with transaction(maker) as session:
        await session.execute(
            update(EvidenceUpload)
            .where(EvidenceUpload.id == upload.id, EvidenceUpload.status == UPLOAD_RECEIVING)
            .values(received=writer.durable_offset)
        )


async def _finish(
    maker: async_sessionmaker[AsyncSession],
    store: EvidenceStore,
    states: UploadStates,
    principal: Principal,
    case: Case,
    upload: EvidenceUpload,
    writer: BlobWriter,
    state: UploadState,
) -> Received:
    states.drop(upload.id)
    size = await writer.commit()  # final chunk observed, fsync file + directories
    try:
        _decide(state, True)
        kind = state.kind or ""
        if kind == filetypes.TEXT and not state.text_complete():
            raise UnsupportedType()
        if kind in (filetypes.ZIP, filetypes.OLE):

            def inspect() -> str:
                with io.BufferedReader(store.open_reader(upload.blob_id)) as reader:
                    return filetypes.inspect_container(kind, reader)

            kind = await asyncio.to_thread(inspect)
        async with transaction(maker) as session:
            item = await do_register_item(
                session, principal, case, upload, size, state.sha.hexdigest(), kind
            )
    except BaseException:
        await discard_upload(maker, store, upload)
        raise
    return Received(size, item=item)


async def discard_upload(
    maker: async_sessionmaker[AsyncSession], store: EvidenceStore, upload: EvidenceUpload
) -> None:
    """Forget an upload that will never become evidence (refused, or cancelled by tus DELETE).
    A file that was registered meanwhile is never touched."""
    async with transaction(maker) as session:
        row = await session.get(EvidenceUpload, upload.id)
        if row is not None and row.status != UPLOAD_RECEIVING:
            return
        if row is not None:
            await session.delete(row)
    await store.delete(upload.blob_id)


async def do_register_item(
    session: AsyncSession,
    principal: Principal,
    case: Case,
    upload: EvidenceUpload,
    size: int,
    sha256: str,
    file_type: str,
) -> EvidenceItem:
    """Register a stored, hashed file as the case's next item and append its "submitted" event
    to the ledger — in the caller's transaction."""
    await ledger.lock_ledger(session)
    done = await session.execute(
        update(EvidenceUpload)
        .where(EvidenceUpload.id == upload.id, EvidenceUpload.status == UPLOAD_RECEIVING)
        .values(status=UPLOAD_COMPLETE, received=size)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) != 1:
        raise Conflict(
            N_("This upload is already complete and registered as evidence."),
            code="evidence_upload_complete",
        )
    last = await session.scalar(
        select(func.max(EvidenceItem.number)).where(EvidenceItem.case_id == case.id)
    )
    kind = filetypes.FILE_TYPES[file_type]
    item = EvidenceItem(
        case_id=case.id,
        number=(last or 0) + 1,
        title=upload.title,
        category=upload.category,
        purpose=upload.purpose,
        submitter_type="user" if principal.user is not None else "party",
        submitted_by_user_id=principal.user.id if principal.user is not None else None,
        submitted_by_party_id=principal.party_id,
        # People read this on receipts: the staff member's name, not their login.
        submitter_label=(
            principal.user.display_name if principal.user is not None else principal.actor.label
        )[:200],
        blob_id=upload.blob_id,
        sha256=sha256,
        size=size,
        file_type=kind.code,
        media_type=kind.media_type,
        original_filename=upload.filename,
        ledger_seq=-1,
    )
    session.add(item)
    await session.flush()
    entry = await ledger.append(
        session,
        principal.actor,
        EV_SUBMITTED,
        case_id=case.id,
        item_id=item.id,
        details={
            "number": item.number,
            "sha256": sha256,
            "size": size,
            "file_type": kind.code,
            "category": item.category,
        },
    )
    item.ledger_seq = entry.seq
    await session.execute(
        update(EvidenceUpload)
        .where(EvidenceUpload.id == upload.id)
        .values(item_id=item.id)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return item


async def do_terminate(
    maker: async_sessionmaker[AsyncSession],
    store: EvidenceStore,
    states: UploadStates,
    principal: Principal,
    case_id: int,
    upload_id: int,
) -> None:
    """tus DELETE: cancel an unfinished upload and remove what was stored of it."""
    async with transaction(maker) as session:
        _case, upload = await load_upload(session, principal, case_id, upload_id)
    if upload.status == UPLOAD_COMPLETE:
        raise Conflict(
            N_(
                "This upload is already registered as evidence; withdraw the evidence item instead."
            ),
            code="evidence_upload_complete",
        )
    async with states.lock(upload.id):
        states.drop(upload.id)
        await discard_upload(maker, store, upload)
    states.forget_lock(upload.id)
