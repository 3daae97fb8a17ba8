"""Freezing a hearing record and the parties' answers to it.

At the end of a hearing the mediator freezes the record: its text at that moment becomes a PDF
(``documents.pdf``: embedded CJK font), the PDF's SHA-256 is recorded and audited, and no edit is
accepted afterwards (``access.check_write``). Each party of the hearing then confirms it — a
checkbox and a one-time code sent through ``cases.notifications`` — or records an objection.
Every step is audited; each answer is a conditional update, so a double click cannot answer
twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from reportlab.platypus import Flowable, Paragraph, Spacer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.errors import Conflict, Forbidden, Invalid
from cases.models import Case, Party, utcnow
from cases.notifications import SMS, Notification, Sender, do_notify
from documents.pdf import PageMarks, build_pdf, styles
from notes.catalogue import CONFIRMED, MAX_OBJECTION_CHARS, OBJECTED, RECORD
from notes.models import NoteDocument, RecordConfirmation
from rooms.catalogue import ADMITTED, AGENT, CLERK, LEFT, MEDIATOR, OBSERVER, PARTY
from rooms.models import Hearing, HearingParticipant

CODE_TTL = dt.timedelta(minutes=10)
CODE_MAX_ATTEMPTS = 5
_BOLD = re.compile(r"\*\*(.+?)\*\*")


@dataclass(frozen=True)
class RecordTexts:
    """The PDF's fixed wording, translated by the caller (this package has no gettext)."""

    title: str
    case_number: str
    hearing: str
    time: str
    frozen_at: str
    by: str
    present: str = "Present"
    roles: dict[str, str] = field(default_factory=dict)  # participant kind → its label


def _inline(text: str) -> str:
    """Paragraph markup of one line: escaped, ``**speaker：**`` in the accent colour (the
    embedded face has no bold weight)."""
    return _BOLD.sub(r'<font color="#1f4e79">\1</font>', escape(text))


def record_flowables(
    text: str, heading: list[tuple[str, str]], title: str, font: Path
) -> list[Flowable]:
    st = styles(font)
    out: list[Flowable] = [Paragraph(escape(title), st.title)]
    for label, value in heading:
        out.append(Paragraph(f"{escape(label)}：{escape(value)}", st.small))
    out.append(Spacer(1, 12))
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"^#{1,3} ", stripped):
            out.append(Paragraph(_inline(re.sub(r"^#{1,3} ", "", stripped)), st.heading))
        elif stripped.startswith("- "):
            out.append(Paragraph(_inline(stripped[2:]), st.body, bulletText="•"))
        else:
            out.append(Paragraph(_inline(stripped), st.body))
    return out


def render_record(
    text: str,
    case: Case,
    hearing: Hearing,
    frozen_at: dt.datetime,
    by: str,
    texts: RecordTexts,
    font: Path,
    zone: str,
) -> bytes:
    tz = ZoneInfo(zone)
    heading = [
        (texts.case_number, case.number),
        (texts.hearing, hearing.title),
        (texts.time, hearing.scheduled_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")),
        (texts.frozen_at, frozen_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")),
        (texts.by, by),
    ]
    present = present_people(hearing, texts.roles)
    if present:
        heading.insert(3, (texts.present, present))
    marks = PageMarks(
        document_id=f"REC-{hearing.id}", header=case.number, title=texts.title, author=by
    )
    return build_pdf(record_flowables(text, heading, texts.title, font), marks, font)


def present_people(hearing: Hearing, roles: dict[str, str]) -> str:
    """Who took part: everyone admitted at some point (staff, parties, agents, observers), by
    role — ``调解员 李静；书记员 陈书记员；当事人 宜昌某…、刘某``."""
    groups: dict[str, list[str]] = {}
    for p in hearing.participants:
        if p.state in (ADMITTED, LEFT):
            groups.setdefault(p.kind, []).append(p.display_name)
    order = [MEDIATOR, CLERK, PARTY, AGENT, OBSERVER]
    return "；".join(
        f"{roles.get(kind, kind)} {'、'.join(groups[kind])}" for kind in order if kind in groups
    )


async def do_freeze(
    session: AsyncSession,
    actor: Actor,
    document: NoteDocument,
    case: Case,
    seq: int,
    text: str,
    pdf: bytes,
    frozen_at: dt.datetime,
) -> str:
    """Freeze ``document`` (a record) as ``text`` after update ``seq``; returns the PDF's SHA-256.
    Refused if it is frozen already or changed since ``seq`` (the caller reads again)."""
    if document.kind != RECORD or document.hearing_id is None:
        raise Invalid(N_("Only a hearing record can be frozen."), code="record_not_freezable")
    digest = hashlib.sha256(pdf).hexdigest()
    done = await session.execute(
        update(NoteDocument)
        .where(
            NoteDocument.id == document.id,
            NoteDocument.frozen_at.is_(None),
            NoteDocument.head_seq == seq,
        )
        .values(
            frozen_at=frozen_at,
            frozen_by_id=actor.id if actor.kind == "user" else None,
            frozen_seq=seq,
            frozen_text=text,
            frozen_pdf=pdf,
            frozen_sha256=digest,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            N_("The record changed or was frozen a moment ago. Look at it again and retry."),
            code="record_changed",
        )
    parties = (
        await session.scalars(
            select(HearingParticipant.party_id).where(
                HearingParticipant.hearing_id == document.hearing_id,
                HearingParticipant.kind == PARTY,
                HearingParticipant.party_id.is_not(None),
            )
        )
    ).all()
    for party_id in sorted({p for p in parties if p is not None}):
        session.add(RecordConfirmation(document_id=document.id, party_id=party_id))
    await record(
        session,
        actor,
        AuditAction.RECORD_FROZEN,
        object_type="notes",
        object_id=document.key,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={"sha256": digest, "version": seq, "bytes": len(pdf)},
    )
    await session.refresh(document)
    return digest


async def confirmations(
    session: AsyncSession, document_id: int
) -> list[tuple[Party, RecordConfirmation]]:
    rows = (
        await session.execute(
            select(Party, RecordConfirmation)
            .join(RecordConfirmation, RecordConfirmation.party_id == Party.id)
            .where(RecordConfirmation.document_id == document_id)
            .order_by(Party.id)
        )
    ).all()
    return [(party, confirmation) for party, confirmation in rows]


async def _mine(
    session: AsyncSession, document: NoteDocument, party_id: int | None
) -> RecordConfirmation:
    if document.frozen_at is None:
        raise Conflict(N_("The record has not been frozen yet."), code="record_not_frozen")
    found = (
        await session.scalars(
            select(RecordConfirmation).where(
                RecordConfirmation.document_id == document.id,
                RecordConfirmation.party_id == party_id,
            )
        )
    ).one_or_none()
    if party_id is None or found is None:
        raise Forbidden(
            N_("Only the parties of this hearing confirm its record."), code="record_not_a_party"
        )
    if found.decision:
        raise Conflict(N_("You have already answered."), code="record_already_answered")
    return found


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def do_send_code(
    session: AsyncSession,
    actor: Actor,
    sender: Sender,
    document: NoteDocument,
    case: Case,
    party_id: int | None,
    body: Callable[[str], str],
) -> None:
    """Send the party a fresh one-time code (``body(code)`` is the text); the old one is void."""
    mine = await _mine(session, document, party_id)
    party = await session.get(Party, mine.party_id)
    if party is None or not party.phone.strip():
        raise Invalid(
            N_(
                "We have no phone number for you, so no code can be sent. Ask the mediation "
                "office to add one."
            ),
            code="record_no_phone",
        )
    code = f"{secrets.randbelow(10**6):06d}"
    mine.code_hash = _digest(code)
    mine.code_expires_at = utcnow() + CODE_TTL
    mine.code_attempts = 0
    await session.flush()
    await do_notify(
        session,
        actor,
        sender,
        Notification(SMS, party.phone, body(code), case_id=case.id),
        case=case,
    )


async def do_confirm(
    session: AsyncSession,
    actor: Actor,
    document: NoteDocument,
    case: Case,
    party_id: int | None,
    code: str,
    read_it: bool,
) -> None:
    mine = await _mine(session, document, party_id)
    if not read_it:
        raise Invalid(
            N_("Tick the box to confirm that you have read the record."), code="record_not_read"
        )
    if not mine.code_hash or mine.code_expires_at is None:
        raise Invalid(
            N_("Ask for a one-time code first, then enter it here."), code="record_no_code"
        )
    if mine.code_expires_at <= utcnow():
        raise Invalid(
            N_("This one-time code has expired. Ask for a new one."), code="record_code_expired"
        )
    if mine.code_attempts >= CODE_MAX_ATTEMPTS:
        raise Invalid(
            N_("Too many wrong one-time codes. Ask for a new one."), code="record_code_locked"
        )
    if not hmac.compare_digest(_digest(code.strip()), mine.code_hash):
        mine.code_attempts += 1
        await session.flush()
        error = Invalid(
            N_("This one-time code is wrong. %(left)s attempts left."),
            code="record_code_wrong",
            left=CODE_MAX_ATTEMPTS - mine.code_attempts,
        )
        error.keep_changes = True  # the attempt counts
        raise error
    await _decide(session, actor, document, case, mine, CONFIRMED, "")


async def do_object(
    session: AsyncSession,
    actor: Actor,
    document: NoteDocument,
    case: Case,
    party_id: int | None,
    objection: str,
) -> None:
    mine = await _mine(session, document, party_id)
    text = objection.strip()
    if not text or len(text) > MAX_OBJECTION_CHARS:
        raise Invalid(
            N_("Write your objection (at most %(max)s characters)."),
            code="record_objection_invalid",
            max=MAX_OBJECTION_CHARS,
        )
    await _decide(session, actor, document, case, mine, OBJECTED, text)


async def _decide(
    session: AsyncSession,
    actor: Actor,
    document: NoteDocument,
    case: Case,
    mine: RecordConfirmation,
    decision: str,
    objection: str,
) -> None:
    done = await session.execute(
        update(RecordConfirmation)
        .where(RecordConfirmation.id == mine.id, RecordConfirmation.decision == "")
        .values(decision=decision, objection=objection, decided_at=utcnow(), code_hash="")
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(N_("You have already answered."), code="record_already_answered")
    await record(
        session,
        actor,
        AuditAction.RECORD_CONFIRMED if decision == CONFIRMED else AuditAction.RECORD_OBJECTED,
        object_type="notes",
        object_id=document.key,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={
            "party_id": mine.party_id,
            "sha256": document.frozen_sha256,
            **({"objection": objection} if objection else {}),
        },
    )


async def frozen_records(session: AsyncSession, case_id: int) -> list[NoteDocument]:
    """The case's frozen hearing records, oldest first (``frozen_pdf``, ``frozen_sha256``,
    ``frozen_at``): what the case archive and the judicial-confirmation package include."""
    return list(
        (
            await session.scalars(
                select(NoteDocument)
                .where(
                    NoteDocument.case_id == case_id,
                    NoteDocument.kind == RECORD,
                    NoteDocument.frozen_at.is_not(None),
                )
                .order_by(NoteDocument.frozen_at)
            )
        ).all()
    )
