"""Presenting evidence in the hearing: who may present (the staff who run the hearing), what
(a submitted item of the hearing's case), the ledger event, and the *ticket* through which each
person in the room fetches the presented file.

A ticket is ``itsdangerous`` output (a salt used for nothing else) over the participant and the
item; it is made per recipient when the item is presented, and the file route re-checks the
participant (still admitted, hearing not ended) and the item (same case, not withdrawn) on every
request. Observers (an interpreter, an expert) see what is presented to their room this way
without any other access to the case's evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import Conflict, Forbidden
from cases.models import Case
from evidence import ledger
from evidence.catalogue import EV_PRESENTED, SUBMITTED
from evidence.items import get_item
from evidence.models import EvidenceItem
from rooms.access import check_control
from rooms.catalogue import ADMITTED, ENDED
from rooms.models import Hearing, HearingParticipant

SALT = "yuntiao.evidence-presentation.v1"
TICKET_MAX_AGE_S = 6 * 3600
MAX_TICKET_CHARS = 400

# How the shared viewer shows a file.
VIEW_KINDS: dict[str, str] = {
    "jpeg": "image",
    "png": "image",
    "gif": "image",
    "webp": "image",
    "pdf": "pdf",
    "mp4": "video",
    "webm": "video",
    "mov": "video",
    "mp3": "audio",
    "m4a": "audio",
    "wav": "audio",
    "ogg": "audio",
}


def view_kind(file_type: str) -> str:
    """image | pdf | video | audio | other (shown as its title with a download link)."""
    return VIEW_KINDS.get(file_type, "other")


def _serializer(secret: str | bytes) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("an empty secret would make presentation tickets forgeable")
    return URLSafeTimedSerializer(secret, salt=SALT)


def issue_ticket(secret: str | bytes, participant_id: int, item_id: int) -> str:
    return str(_serializer(secret).dumps({"p": participant_id, "i": item_id}))


def _invalid() -> Forbidden:
    return Forbidden(
        N_("This presented evidence is no longer available to you."),
        code="evidence_ticket_invalid",
    )


def read_ticket(secret: str | bytes, ticket: str) -> tuple[int, int]:
    if len(ticket) > MAX_TICKET_CHARS:
        raise _invalid()
    try:
        data = _serializer(secret).loads(ticket, max_age=TICKET_MAX_AGE_S)
    except BadData:
        raise _invalid() from None
    if not isinstance(data, dict):
        raise _invalid()
    participant_id, item_id = data.get("p"), data.get("i")
    if not isinstance(participant_id, int) or not isinstance(item_id, int):
        raise _invalid()
    return participant_id, item_id


async def load_ticket(session: AsyncSession, secret: str | bytes, ticket: str) -> EvidenceItem:
    """The item a ticket opens, after re-checking its holder and the item."""
    participant_id, item_id = read_ticket(secret, ticket)
    participant = await session.get(HearingParticipant, participant_id)
    if participant is None or participant.state != ADMITTED:
        raise _invalid()
    hearing = await session.get(Hearing, participant.hearing_id)
    item = await session.get(EvidenceItem, item_id)
    if (
        hearing is None
        or hearing.status == ENDED
        or item is None
        or item.case_id != hearing.case_id
        or item.status != SUBMITTED
    ):
        raise _invalid()
    return item


async def check_present(
    session: AsyncSession, actor: Actor, me: HearingParticipant
) -> tuple[Hearing, Case]:
    """The hearing and case ``me`` may present in: staff who run this hearing, admitted."""
    hearing = await session.get(Hearing, me.hearing_id)
    case = await session.get(Case, hearing.case_id) if hearing is not None else None
    if hearing is None or case is None:  # pragma: no cover - foreign keys guarantee them
        raise _invalid()
    check_control(actor, case, hearing, by=me)
    if me.state != ADMITTED:
        raise Forbidden(
            N_("Only the mediator or the clerk of this hearing can do this."),
            code="not_hearing_staff",
        )
    return hearing, case


async def presentable(session: AsyncSession, case: Case) -> list[EvidenceItem]:
    rows = await session.scalars(
        select(EvidenceItem)
        .where(EvidenceItem.case_id == case.id, EvidenceItem.status == SUBMITTED)
        .order_by(EvidenceItem.number)
    )
    return list(rows)


async def do_present(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    hearing: Hearing,
    number: int,
    subroom: str,
    recipients: Iterable[int],
) -> EvidenceItem:
    """Record that item ``number`` is presented to ``recipients`` in ``subroom``."""
    item = await get_item(session, case, number)
    if item.status != SUBMITTED:
        raise Conflict(
            N_("This evidence was withdrawn; it cannot be presented."), code="evidence_withdrawn"
        )
    await ledger.append(
        session,
        actor,
        EV_PRESENTED,
        case_id=case.id,
        item_id=item.id,
        details={
            "number": item.number,
            "hearing_id": hearing.id,
            "subroom": subroom,
            "recipients": sorted(recipients),
        },
    )
    return item
