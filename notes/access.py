"""Who may read and who may write which notes — one place, tested like the security decision it is.

A principal is either a signed-in staff member (session cookie) or a hearing participant (their
invitation link). Writers are the people who run the case: its mediator, the office's clerks and
administrators (``cases.access.can_progress_case``), and in a hearing the mediator and clerk
participants (a mediator only while still assigned). Readers:

- the hearing record: the case's staff, and the hearing's own participants once they have been
  admitted (a party in the lobby does not see it yet; one removed or denied does not see it);
- the shared case notes: the case's staff, and parties and agents of any hearing of the case;
- the private mediator notes: writers only. Parties, agents and observers never — not even the
  fact that they changed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from cases import access as case_access
from cases.actor import Actor
from cases.models import Case, User
from notes import errors
from notes.catalogue import PRIVATE, RECORD, SHARED
from notes.models import NoteDocument
from rooms.access import participant_actor
from rooms.catalogue import ADMITTED, AGENT, DENIED, LEFT, MEDIATOR, PARTY, REMOVED, STAFF_KINDS
from rooms.invitations import read_invitation
from rooms.models import Hearing, HearingParticipant


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``user`` (staff) or ``participant`` (a hearing link), never both."""

    actor: Actor
    user: User | None = None
    participant: HearingParticipant | None = None
    hearing: Hearing | None = None

    @property
    def case_id(self) -> int | None:
        return self.hearing.case_id if self.hearing is not None else None


@dataclass(frozen=True)
class Grant:
    read: bool
    write: bool


NONE = Grant(False, False)


def staff(user: User, ip: str = "", user_agent: str = "") -> Principal:
    return Principal(actor=Actor.for_user(user, ip, user_agent), user=user)


async def by_link(
    session: AsyncSession, secret: str, token: str, now: dt.datetime, ip: str = "", ua: str = ""
) -> Principal:
    """The participant behind an invitation link (``invitation_*`` errors otherwise)."""
    participant = await read_invitation(session, secret, token, now)
    # Only its ids and title are needed: not its participants (one query less per edit).
    hearing = await session.get(
        Hearing, participant.hearing_id, options=[raiseload(Hearing.participants)]
    )
    if hearing is None:  # pragma: no cover - FK guarantees it
        raise errors.no_access()
    return Principal(
        actor=participant_actor(participant, ip, ua), participant=participant, hearing=hearing
    )


def _runs_hearing(participant: HearingParticipant, case: Case) -> bool:
    if participant.kind not in STAFF_KINDS or participant.state in (DENIED, REMOVED):
        return False
    return participant.kind != MEDIATOR or participant.user_id == case.mediator_id


def grant(principal: Principal, document: NoteDocument, case: Case) -> Grant:
    if document.case_id != case.id:
        return NONE
    if principal.user is not None:
        user = principal.user
        writes = case_access.can_progress_case(user, case)
        if document.kind == PRIVATE:
            return Grant(writes, writes)
        return Grant(writes or case_access.can_view_case(user, case), writes)
    participant, hearing = principal.participant, principal.hearing
    if participant is None or hearing is None or hearing.case_id != case.id:
        return NONE
    if _runs_hearing(participant, case):
        if document.kind == RECORD and document.hearing_id != hearing.id:
            return Grant(True, False)  # another hearing of the case: read it, write through it
        return Grant(True, True)
    if participant.kind in STAFF_KINDS or document.kind == PRIVATE:
        return NONE
    if document.kind == RECORD:
        seen = participant.state in (ADMITTED, LEFT)
        return Grant(seen and document.hearing_id == hearing.id, False)
    if document.kind == SHARED:
        allowed = participant.kind in (PARTY, AGENT) and participant.state not in (DENIED, REMOVED)
        return Grant(allowed, False)
    return NONE


def check_read(principal: Principal, document: NoteDocument, case: Case) -> Grant:
    found = grant(principal, document, case)
    if not found.read:
        raise errors.no_access()
    return found


def check_write(principal: Principal, document: NoteDocument, case: Case) -> None:
    found = check_read(principal, document, case)
    if not found.write:
        raise errors.read_only()
    if document.frozen_at is not None:
        raise errors.frozen()
