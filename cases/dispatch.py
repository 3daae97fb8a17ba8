"""Dispatch: to an organisation by dispute category (rules editable by an administrator), and to a
mediator (chosen by hand, or suggested by category and current load), with a conflict-of-interest
check at every assignment and the party's right to ask for a different mediator (回避)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import DISPUTE_CATEGORIES, N_, Phrase
from cases.errors import Conflict, Invalid, NotFound
from cases.lifecycle import ACTIVE_STATES
from cases.models import (
    Case,
    DeclaredRelationship,
    DispatchRule,
    Organisation,
    Party,
    Recusal,
    User,
)
from cases.protect import FieldCipher, normalise_id_number


class AssignmentRefused(Conflict):
    """The mediator is linked to a party. The refusal itself is audited, so it is kept."""

    code = "conflict_of_interest"
    keep_changes = True


# ---- organisations -------------------------------------------------------------------------


async def organisation_for_category(session: AsyncSession, category: str) -> Organisation | None:
    """The organisation the rules send ``category`` to: lowest priority value wins, then the
    organisation that lists the category itself."""
    rule = await session.scalar(
        select(DispatchRule)
        .join(Organisation, Organisation.id == DispatchRule.organisation_id)
        .where(DispatchRule.category == category, Organisation.active.is_(True))
        .order_by(DispatchRule.priority, DispatchRule.id)
        .limit(1)
    )
    if rule is not None:
        return rule.organisation
    for organisation in (
        await session.scalars(
            select(Organisation).where(Organisation.active.is_(True)).order_by(Organisation.id)
        )
    ).all():
        if category in (organisation.categories or []):
            return organisation
    return None


async def do_add_rule(
    session: AsyncSession, actor: Actor, category: str, organisation_id: int, priority: int = 100
) -> DispatchRule:
    if category not in DISPUTE_CATEGORIES:
        raise Invalid(
            N_("Unknown dispute category: %(category)s"), code="invalid_category", category=category
        )
    if await session.get(Organisation, organisation_id) is None:
        raise NotFound(N_("No such organisation."))
    existing = await session.scalar(
        select(DispatchRule).where(
            DispatchRule.category == category, DispatchRule.organisation_id == organisation_id
        )
    )
    if existing is not None:
        raise Conflict(N_("This rule exists already."), code="rule_exists")
    rule = DispatchRule(category=category, organisation_id=organisation_id, priority=priority)
    session.add(rule)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.DISPATCH_RULE_ADDED,
        object_type="dispatch_rule",
        object_id=rule.id,
        organisation_id=organisation_id,
        details={"category": category, "priority": priority},
    )
    return rule


async def do_remove_rule(session: AsyncSession, actor: Actor, rule_id: int) -> None:
    rule = await session.get(DispatchRule, rule_id)
    if rule is None:
        raise NotFound(N_("No such dispatch rule."))
    await session.delete(rule)
    await record(
        session,
        actor,
        AuditAction.DISPATCH_RULE_REMOVED,
        object_type="dispatch_rule",
        object_id=rule_id,
        organisation_id=rule.organisation_id,
        details={"category": rule.category},
    )


async def do_route_case(
    session: AsyncSession, actor: Actor, case: Case, organisation_id: int
) -> Case:
    """Hand a not-yet-mediated case to another organisation; its mediator assignment is cleared."""
    if case.status not in ("accepted", "notified"):
        raise Conflict(
            N_("Only a case that is not yet in mediation can go to another organisation."),
            code="too_late_to_route",
        )
    target = await session.get(Organisation, organisation_id)
    if target is None or not target.active:
        raise NotFound(N_("No such organisation."))
    source = case.organisation_id
    case.organisation_id = target.id
    case.mediator_id = None
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.CASE_ROUTED,
        object_type="case",
        object_id=case.id,
        case_id=case.id,
        organisation_id=target.id,
        details={"from_organisation": source, "to_organisation": target.id},
    )
    await session.refresh(case)
    return case


# ---- mediators -----------------------------------------------------------------------------


# Why a mediator is barred (translated where it is shown).
Reason = Phrase


@dataclass(frozen=True)
class MediatorOption:
    """A mediator as a candidate for a case, with why they fit or cannot take it."""

    user: User
    active_cases: int
    takes_category: bool
    conflict: Reason | None  # why the mediator is barred, or None


async def conflict_reason(
    session: AsyncSession, cipher: FieldCipher, mediator: User, parties: list[Party]
) -> Reason | None:
    """Why ``mediator`` may not mediate between ``parties`` (same name/phone/ID number, or a
    declared relationship), or None."""
    declared = (
        await session.scalars(
            select(DeclaredRelationship).where(DeclaredRelationship.mediator_id == mediator.id)
        )
    ).all()
    for party in parties:
        if party.name.strip() == mediator.display_name.strip():
            return Reason(
                N_("%(mediator)s has the same name as the party %(party)s."),
                {"mediator": mediator.display_name, "party": party.name},
            )
        if mediator.phone and party.phone and party.phone == mediator.phone:
            return Reason(
                N_("%(mediator)s has the same phone number as the party %(party)s."),
                {"mediator": mediator.display_name, "party": party.name},
            )
        if mediator.id_number_index and party.id_number_index == mediator.id_number_index:
            return Reason(
                N_("%(mediator)s has the same ID card number as the party %(party)s."),
                {"mediator": mediator.display_name, "party": party.name},
            )
        for rel in declared:
            if (
                rel.person_name.strip() == party.name.strip()
                or (rel.phone and rel.phone == party.phone)
                or (rel.id_number_index and rel.id_number_index == party.id_number_index)
            ):
                return Reason(
                    N_(
                        "%(mediator)s declared a relationship with the party %(party)s: "
                        "%(relationship)s."
                    ),
                    {
                        "mediator": mediator.display_name,
                        "party": party.name,
                        "relationship": rel.relationship_text,
                    },
                )
    return None


async def mediator_loads(session: AsyncSession, organisation_id: int) -> dict[int, int]:
    rows = await session.execute(
        select(Case.mediator_id, func.count(Case.id))
        .where(
            Case.organisation_id == organisation_id,
            Case.status.in_(ACTIVE_STATES),
            Case.mediator_id.is_not(None),
        )
        .group_by(Case.mediator_id)
    )
    return {int(mid): int(n) for mid, n in rows.all() if mid is not None}


async def recused_mediators(session: AsyncSession, case_id: int) -> set[int]:
    return set(
        (await session.scalars(select(Recusal.mediator_id).where(Recusal.case_id == case_id))).all()
    )


async def suggest_mediators(
    session: AsyncSession, cipher: FieldCipher, case: Case
) -> list[MediatorOption]:
    """The organisation's active mediators, best first: no conflict, takes the category, least
    active cases. Mediators the parties asked to withdraw (回避) are left out."""
    mediators = (
        await session.scalars(
            select(User)
            .where(
                User.organisation_id == case.organisation_id,
                User.role == "mediator",
                User.active.is_(True),
            )
            .order_by(User.id)
        )
    ).all()
    loads = await mediator_loads(session, case.organisation_id)
    recused = await recused_mediators(session, case.id)
    options = [
        MediatorOption(
            user=m,
            active_cases=loads.get(m.id, 0),
            takes_category=case.category in (m.categories or []),
            conflict=await conflict_reason(session, cipher, m, list(case.parties)),
        )
        for m in mediators
        if m.id not in recused
    ]
    options.sort(
        key=lambda o: (o.conflict is not None, not o.takes_category, o.active_cases, o.user.id)
    )
    return options


async def check_assignable(
    session: AsyncSession,
    actor: Actor,
    cipher: FieldCipher,
    case: Case,
    mediator_id: int,
    *,
    also_recused: int | None = None,
) -> User:
    """The mediator, if they may take ``case``; otherwise the refusal is audited and raised as
    ``AssignmentRefused`` with the reason. ``also_recused``: a mediator about to be recused."""
    if case.status not in ACTIVE_STATES:
        raise Conflict(
            N_("A mediator can only be assigned while the case is open for mediation."),
            code="case_not_active",
        )
    mediator = await session.get(User, mediator_id)
    if (
        mediator is None
        or mediator.role != "mediator"
        or not mediator.active
        or mediator.organisation_id != case.organisation_id
    ):
        raise Invalid(
            N_("Choose an active mediator of the case's organisation."), code="invalid_mediator"
        )
    recused = await recused_mediators(session, case.id)
    if also_recused is not None:
        recused.add(also_recused)
    reason: Reason | None
    if mediator.id in recused:
        reason = Reason(
            N_("A party asked %(mediator)s to withdraw from this case (回避)."),
            {"mediator": mediator.display_name},
        )
    else:
        reason = await conflict_reason(session, cipher, mediator, list(case.parties))
    if reason is not None:
        await record(
            session,
            actor,
            AuditAction.ASSIGNMENT_REFUSED,
            object_type="case",
            object_id=case.id,
            case_id=case.id,
            organisation_id=case.organisation_id,
            details={"mediator_id": mediator.id, "reason": str(reason)},
        )
        raise AssignmentRefused(
            N_("%(mediator)s cannot mediate this case: %(reason)s"),
            mediator=mediator.display_name,
            reason=reason,
        )
    return mediator


async def do_assign_mediator(
    session: AsyncSession,
    actor: Actor,
    cipher: FieldCipher,
    case: Case,
    mediator_id: int,
    *,
    note: str = "",
) -> Case:
    """Assign ``mediator_id`` to ``case`` after the conflict-of-interest check (a refusal is
    audited and raised as ``AssignmentRefused``)."""
    mediator = await check_assignable(session, actor, cipher, case, mediator_id)
    previous = case.mediator_id
    case.mediator_id = mediator.id
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.CASE_ASSIGNED,
        object_type="case",
        object_id=case.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={"mediator_id": mediator.id, "previous_mediator_id": previous, "note": note},
    )
    await session.refresh(case)
    return case


async def do_recusal(
    session: AsyncSession,
    actor: Actor,
    cipher: FieldCipher,
    case: Case,
    *,
    party_id: int | None,
    reason: str,
    replacement_id: int | None = None,
) -> tuple[Case, Recusal]:
    """Record a party's recusal request against the current mediator and re-assign the case:
    to ``replacement_id`` or to the best suggestion. If nobody is free the case is left
    unassigned (the page says so) rather than kept with the recused mediator."""
    if case.mediator_id is None:
        raise Conflict(N_("This case has no mediator to withdraw."), code="no_mediator")
    if not reason.strip():
        raise Invalid(N_("Please give the reason for the recusal request."), code="reason_required")
    if party_id is not None:
        party = await session.get(Party, party_id)
        if party is None or party.case_id != case.id:
            raise NotFound(N_("No such party in this case."))
    if replacement_id is not None:
        if replacement_id == case.mediator_id:
            raise Invalid(
                N_("Choose a different mediator as the replacement."), code="same_mediator"
            )
        # Checked before anything is written: a refused replacement leaves the case as it was.
        await check_assignable(
            session, actor, cipher, case, replacement_id, also_recused=case.mediator_id
        )
    recusal = Recusal(
        case_id=case.id, party_id=party_id, mediator_id=case.mediator_id, reason=reason.strip()
    )
    session.add(recusal)
    case.mediator_id = None
    await session.flush()
    if replacement_id is None:
        options = [o for o in await suggest_mediators(session, cipher, case) if o.conflict is None]
        replacement_id = options[0].user.id if options else None
    if replacement_id is not None:
        case = await do_assign_mediator(
            session, actor, cipher, case, replacement_id, note="recusal"
        )
    recusal.replacement_id = replacement_id
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.RECUSAL_RECORDED,
        object_type="case",
        object_id=case.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={
            "recused_mediator_id": recusal.mediator_id,
            "party_id": party_id,
            "reason": recusal.reason,
            "replacement_id": replacement_id,
        },
    )
    return case, recusal


async def do_declare_relationship(
    session: AsyncSession,
    actor: Actor,
    cipher: FieldCipher,
    mediator: User,
    *,
    person_name: str,
    relationship_text: str,
    phone: str = "",
    id_number: str = "",
) -> DeclaredRelationship:
    if not person_name.strip() or not relationship_text.strip():
        raise Invalid(N_("Name the person and the relationship."), code="relationship_required")
    rel = DeclaredRelationship(
        mediator_id=mediator.id,
        person_name=person_name.strip(),
        phone=phone.strip(),
        relationship_text=relationship_text.strip(),
        id_number_index=cipher.index(normalise_id_number(id_number)) if id_number.strip() else None,
    )
    session.add(rel)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.RELATIONSHIP_DECLARED,
        object_type="user",
        object_id=mediator.id,
        organisation_id=mediator.organisation_id,
        details={"person_name": rel.person_name, "relationship": rel.relationship_text},
    )
    return rel
