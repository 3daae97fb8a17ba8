"""Who may run a hearing. Two kinds of authority, kept apart on purpose:

- the *office* (schedule a hearing, revoke a link): the case's mediator or a manager of the case
  (``cases.access.can_progress_case``), signed in as staff;
- *control inside the hearing* (admit, deny, remove, caucus, end): a staff participant (mediator
  or clerk) who is in the hearing, or the case's mediator. A mediator participant loses control
  when the case is re-assigned (回避), even while their old link still works.
"""

from __future__ import annotations

from cases.access import can_progress_case
from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import Forbidden
from cases.models import Case
from rooms.catalogue import ADMITTED, MEDIATOR, STAFF_KINDS
from rooms.models import Hearing, HearingParticipant


def participant_actor(participant: HearingParticipant, ip: str = "", user_agent: str = "") -> Actor:
    """The audit actor for someone acting through their hearing link: staff as their user,
    parties and agents as their party, observers (no account, no party row) as the participant."""
    label = participant.display_name
    if participant.user_id is not None:
        return Actor("user", participant.user_id, label, ip, user_agent[:300])
    if participant.party_id is not None:
        return Actor("party", participant.party_id, label, ip, user_agent[:300])
    return Actor("participant", participant.id, label, ip, user_agent[:300])


def is_case_mediator(actor: Actor, case: Case) -> bool:
    return actor.kind == "user" and actor.id is not None and actor.id == case.mediator_id


def is_controlling_staff(
    participant: HearingParticipant | None, hearing: Hearing, case: Case
) -> bool:
    """A staff participant of *this* hearing who is in it; a mediator only while still assigned."""
    if participant is None or participant.hearing_id != hearing.id:
        return False
    if participant.kind not in STAFF_KINDS or participant.state != ADMITTED:
        return False
    return participant.kind != MEDIATOR or participant.user_id == case.mediator_id


def can_control(
    actor: Actor, case: Case, hearing: Hearing, by: HearingParticipant | None = None
) -> bool:
    return is_case_mediator(actor, case) or is_controlling_staff(by, hearing, case)


def check_control(
    actor: Actor, case: Case, hearing: Hearing, by: HearingParticipant | None = None
) -> None:
    """Raise ``Forbidden`` unless ``actor`` (or the participant ``by`` they act through) runs
    this hearing."""
    if not can_control(actor, case, hearing, by):
        raise Forbidden(
            N_("Only the mediator or the clerk of this hearing can do this."),
            code="not_hearing_staff",
        )


def can_run_office(actor: Actor, case: Case) -> bool:
    if is_case_mediator(actor, case):
        return True
    return actor.user is not None and can_progress_case(actor.user, case)


def check_office(actor: Actor, case: Case) -> None:
    """Raise ``Forbidden`` unless ``actor`` may schedule hearings and manage links of ``case``."""
    if not can_run_office(actor, case):
        raise Forbidden(
            N_("Only the case's mediator or the mediation office can do this."),
            code="not_case_staff",
        )
