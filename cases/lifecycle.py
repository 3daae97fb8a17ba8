"""The legal lifecycle of a case as a state machine (People's Mediation Law procedure).

受理 accepted → 告知 rights notified → 调解中 in mediation → 达成协议 agreement reached | 调解不成 failed
| 撤回 withdrawn → (司法确认 judicial confirmation) → 回访 follow-up → 结案 closed.

A party may refuse mediation before it starts (Art. 17): accepted/notified → failed. Withdrawal is
possible until an outcome is reached. Every transition is a conditional UPDATE on the expected
current status, so two concurrent requests cannot both move the same case.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_, Msg
from cases.errors import Conflict, Invalid
from cases.models import Case, utcnow

ACCEPTED = "accepted"
NOTIFIED = "notified"
IN_MEDIATION = "in_mediation"
AGREEMENT_REACHED = "agreement_reached"
FAILED = "failed"
WITHDRAWN = "withdrawn"
JUDICIAL_CONFIRMATION = "judicial_confirmation"
FOLLOW_UP = "follow_up"
CLOSED = "closed"

STATUS_LABELS: dict[str, str] = {
    ACCEPTED: N_("Accepted"),
    NOTIFIED: N_("Rights notified"),
    IN_MEDIATION: N_("In mediation"),
    AGREEMENT_REACHED: N_("Agreement reached"),
    FAILED: N_("Mediation failed"),
    WITHDRAWN: N_("Withdrawn"),
    JUDICIAL_CONFIRMATION: N_("Judicial confirmation"),
    FOLLOW_UP: N_("Follow-up visit"),
    CLOSED: N_("Closed"),
}

TRANSITIONS: dict[str, frozenset[str]] = {
    ACCEPTED: frozenset({NOTIFIED, FAILED, WITHDRAWN}),
    NOTIFIED: frozenset({IN_MEDIATION, FAILED, WITHDRAWN}),
    IN_MEDIATION: frozenset({AGREEMENT_REACHED, FAILED, WITHDRAWN}),
    AGREEMENT_REACHED: frozenset({JUDICIAL_CONFIRMATION, FOLLOW_UP}),
    JUDICIAL_CONFIRMATION: frozenset({FOLLOW_UP}),
    FAILED: frozenset({CLOSED}),
    WITHDRAWN: frozenset({CLOSED}),
    FOLLOW_UP: frozenset({CLOSED}),
    CLOSED: frozenset(),
}

# States in which a case counts towards a mediator's current load.
ACTIVE_STATES = frozenset({ACCEPTED, NOTIFIED, IN_MEDIATION})

# Transitions that need a written reason (kept in the audit trail).
REASON_REQUIRED = frozenset({FAILED, WITHDRAWN})


def allowed_targets(status: str) -> frozenset[str]:
    return TRANSITIONS.get(status, frozenset())


def check_transition(case: Case, target: str, reason: str) -> None:
    """Raise ``Invalid`` for an unknown state or missing reason, ``Conflict`` for an illegal move."""
    if target not in TRANSITIONS:
        raise Invalid(N_("Unknown case status: %(status)s"), code="unknown_status", status=target)
    if target not in allowed_targets(case.status):
        raise Conflict(
            N_("A case that is “%(current)s” cannot move to “%(target)s”."),
            code="illegal_transition",
            current=Msg(STATUS_LABELS.get(case.status, case.status)),
            target=Msg(STATUS_LABELS[target]),
        )
    if target in REASON_REQUIRED and not reason.strip():
        raise Invalid(N_("Please give a reason for this step."), code="reason_required")


async def do_transition(
    session: AsyncSession, actor: Actor, case: Case, target: str, reason: str = ""
) -> Case:
    """Move ``case`` to ``target``; audited in the same transaction. Fires ``case.transitioned``."""
    check_transition(case, target, reason)
    source = case.status
    now = utcnow()
    result = await session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status == source)
        .values(status=target, status_changed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            N_("This case was changed by someone else just now; reload and try again."),
            code="concurrent_change",
        )
    await record(
        session,
        actor,
        AuditAction.CASE_TRANSITIONED,
        object_type="case",
        object_id=case.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={"from": source, "to": target, "reason": reason.strip()},
    )
    await session.refresh(case)
    return case
