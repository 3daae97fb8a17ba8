"""Who may do what with a case's evidence — one place, tested like the security decision it is.

Two kinds of people act on evidence:

- *staff* (signed in, session or bearer token): read per ``cases.access.can_view_case``; submit
  and withdraw per ``can_progress_case`` (the case's mediator and the office);
- *parties and agents*, through their hearing link (``rooms.invitations.read_invitation``): only
  the case of that hearing, never another (403 on every evidence route); a party withdraws only
  what they submitted themselves. Observers and people removed from the hearing have no access.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from cases import access as case_access
from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import Forbidden
from cases.models import Case, User
from evidence.models import EvidenceItem, EvidenceUpload
from rooms.access import participant_actor
from rooms.catalogue import AGENT, DENIED, PARTY, REMOVED
from rooms.invitations import read_invitation
from rooms.models import Hearing

_NO_ACCESS = N_("You do not have access to the evidence of this case.")


@dataclass(frozen=True)
class Principal:
    """The person acting: ``user`` for staff, ``party_id`` (and the only ``case_id`` they may
    touch) for a party. ``actor`` goes into the ledger."""

    actor: Actor
    user: User | None = None
    party_id: int | None = None
    participant_id: int | None = None
    case_id: int | None = None

    @property
    def is_staff(self) -> bool:
        return self.user is not None


def staff_principal(actor: Actor) -> Principal:
    if actor.user is None:
        raise ValueError("a staff principal needs a signed-in user")
    return Principal(actor=actor, user=actor.user)


async def party_principal(
    session: AsyncSession,
    secret: str | bytes,
    token: str,
    now: dt.datetime,
    ip: str = "",
    user_agent: str = "",
) -> Principal:
    """The party behind a hearing link token (``invitation_*`` errors are 403s)."""
    participant = await read_invitation(session, secret, token, now)
    if participant.kind not in (PARTY, AGENT) or participant.party_id is None:
        raise Forbidden(_NO_ACCESS, code="evidence_forbidden")
    if participant.state in (DENIED, REMOVED):
        raise Forbidden(_NO_ACCESS, code="evidence_forbidden")
    hearing = await session.get(Hearing, participant.hearing_id)
    if hearing is None:  # pragma: no cover - FK guarantees it
        raise Forbidden(_NO_ACCESS, code="evidence_forbidden")
    return Principal(
        actor=participant_actor(participant, ip, user_agent),
        party_id=participant.party_id,
        participant_id=participant.id,
        case_id=hearing.case_id,
    )


def can_view(principal: Principal, case: Case) -> bool:
    if principal.user is not None:
        return case_access.can_view_case(principal.user, case)
    return principal.case_id == case.id


def can_submit(principal: Principal, case: Case) -> bool:
    if principal.user is not None:
        return case_access.can_progress_case(principal.user, case)
    return principal.case_id == case.id


def check_view(principal: Principal, case: Case) -> None:
    if not can_view(principal, case):
        raise Forbidden(_NO_ACCESS, code="evidence_forbidden")


def check_submit(principal: Principal, case: Case) -> None:
    check_view(principal, case)
    if not can_submit(principal, case):
        raise Forbidden(
            N_("Only the case's mediator, the mediation office or a party can submit evidence."),
            code="evidence_forbidden",
        )


def check_withdraw(principal: Principal, case: Case, item: EvidenceItem) -> None:
    """Staff who run the case, or the party who submitted the item."""
    check_view(principal, case)
    if principal.user is not None:
        allowed = case_access.can_progress_case(principal.user, case)
    else:
        allowed = (
            principal.party_id is not None and item.submitted_by_party_id == principal.party_id
        )
    if not allowed:
        raise Forbidden(
            N_("Only whoever submitted this evidence, or the mediator, can withdraw it."),
            code="evidence_withdraw_forbidden",
        )


def check_upload_owner(principal: Principal, upload: EvidenceUpload) -> None:
    """An unfinished upload is continued (or cancelled) only by whoever started it."""
    if principal.user is not None:
        mine = upload.user_id == principal.user.id
    else:
        mine = upload.party_id is not None and upload.party_id == principal.party_id
    if not mine:
        raise Forbidden(
            N_("This upload was started by someone else. Start your own upload."),
            code="evidence_upload_not_yours",
        )
