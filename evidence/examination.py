"""Examination of evidence (质证): each party of the other side states, for each item, whether
they acknowledge or dispute its authenticity (真实性), legality (合法性) and relevance (关联性),
with a reason when they dispute it.

Sides: a party's side is their role (applicant, respondent, third party); an agent stands on the
side of the party they represent and states opinions *for* that party. An item submitted by a
party is examined by the parties of every other side; an item staff submitted (for example what
the mediator collected) by every party.

Opinions are final (the rules on online examination: a submitted opinion is not editable): a
correction is a new opinion linked to the one it corrects, and only the newest link of each chain
is current. There is no update path here, the ORM refuses one (``evidence.models``) and the
database refuses one (triggers). Each opinion is a ledger event ("examined").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access as case_access
from cases.catalogue import N_, Msg
from cases.errors import Conflict, Forbidden, Invalid
from cases.models import Case, Party
from evidence import ledger
from evidence.access import Principal, check_view
from evidence.catalogue import (
    DISPUTED,
    EV_EXAMINED,
    MAX_REASON_CHARS,
    PROPERTIES,
    STANCES,
    WITHDRAWN,
)
from evidence.models import EvidenceItem, EvidenceOpinion

AGENT_ROLE = "agent"


@dataclass(frozen=True)
class OpinionInput:
    """One property's opinion as stated; ``corrects`` is the id of the current opinion it
    replaces (required when the party already stated one for that property)."""

    property: str
    stance: str
    reason: str = ""
    corrects: int | None = None


def check_opinion(value: OpinionInput) -> OpinionInput:
    if value.property not in PROPERTIES:
        raise Invalid(
            N_("Say which property the opinion is about: authenticity, legality or relevance."),
            code="evidence_property_invalid",
        )
    if value.stance not in STANCES:
        raise Invalid(
            N_("Say whether you acknowledge or dispute it."), code="evidence_stance_invalid"
        )
    reason = value.reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise Invalid(
            N_("The reason is too long (at most %(max)d characters)."),
            code="evidence_reason_too_long",
            max=MAX_REASON_CHARS,
        )
    if value.stance == DISPUTED and not reason:
        raise Invalid(
            N_("Give the reason why you dispute the %(property)s of this evidence."),
            code="evidence_reason_required",
            property=Msg(PROPERTIES[value.property]),
        )
    return OpinionInput(value.property, value.stance, reason, value.corrects)


# ---- sides ---------------------------------------------------------------------------------------


def side_of(party: Party, parties: dict[int, Party]) -> str:
    """The side a party stands on: their role, or for an agent the role of whom they represent."""
    if party.role == AGENT_ROLE and party.represents_id in parties:
        return parties[party.represents_id].role
    return party.role


def principal_parties(case: Case) -> list[Party]:
    """The parties who hold opinions (agents state them for these)."""
    return [p for p in case.parties if p.role != AGENT_ROLE]


def item_side(item: EvidenceItem, parties: dict[int, Party]) -> str | None:
    """The side that submitted ``item``; None when staff did (then every party examines it)."""
    if item.submitted_by_party_id is None:
        return None
    submitter = parties.get(item.submitted_by_party_id)
    return side_of(submitter, parties) if submitter is not None else None


def examines(item: EvidenceItem, party: Party, parties: dict[int, Party]) -> bool:
    """Whether ``party`` (a principal party) is to state opinions on ``item``."""
    side = item_side(item, parties)
    return side is None or side != side_of(party, parties)


# ---- who states for whom -------------------------------------------------------------------------


def check_examine(
    principal: Principal, case: Case, item: EvidenceItem, party_id: int | None
) -> Party:
    """The party whose opinion this is, or ``Forbidden``/``Conflict``. A party states their own
    opinion, an agent that of the party they represent, staff who run the case record one a
    party stated in the hearing (``party_id`` names that party)."""
    check_view(principal, case)
    parties = {p.id: p for p in case.parties}
    if principal.user is not None:
        if not case_access.can_progress_case(principal.user, case):
            raise Forbidden(
                N_("Only the case's mediator or the mediation office can record opinions."),
                code="evidence_examine_forbidden",
            )
        party = parties.get(party_id) if party_id is not None else None
        if party is None or party.role == AGENT_ROLE:
            raise Invalid(
                N_("Choose the party whose opinion you record."),
                code="evidence_party_required",
            )
    else:
        me = parties.get(principal.party_id) if principal.party_id is not None else None
        if me is None:
            raise Forbidden(
                N_("You do not have access to the evidence of this case."),
                code="evidence_forbidden",
            )
        party = me
        if me.role == AGENT_ROLE:
            party = parties.get(me.represents_id) if me.represents_id is not None else None
        # An agent who represents nobody in this case holds no opinion of their own.
        if (
            party is None
            or party.role == AGENT_ROLE
            or (party_id is not None and party_id != party.id)
        ):
            raise Forbidden(
                N_("You can state opinions only for yourself or the party you represent."),
                code="evidence_examine_forbidden",
            )
    if not examines(item, party, parties):
        raise Forbidden(
            N_(
                "This evidence was submitted by your own side. Opinions on it are stated by the "
                "other side."
            ),
            code="evidence_own_side",
        )
    if item.status == WITHDRAWN:
        raise Conflict(
            N_("This evidence was withdrawn; it is no longer examined."),
            code="evidence_withdrawn",
        )
    return party


# ---- stating ---------------------------------------------------------------------------------------


async def _cell(
    session: AsyncSession, item: EvidenceItem, party: Party, prop: str
) -> list[EvidenceOpinion]:
    rows = await session.scalars(
        select(EvidenceOpinion)
        .where(
            EvidenceOpinion.item_id == item.id,
            EvidenceOpinion.party_id == party.id,
            EvidenceOpinion.property == prop,
        )
        .order_by(EvidenceOpinion.id)
    )
    return list(rows)


def current_of(chain: Sequence[EvidenceOpinion]) -> EvidenceOpinion | None:
    """The opinion of a cell that no other corrects (the newest link of its chain)."""
    corrected = {o.corrects_id for o in chain if o.corrects_id is not None}
    current = [o for o in chain if o.id not in corrected]
    return current[-1] if current else None


async def do_state_opinions(
    session: AsyncSession,
    principal: Principal,
    case: Case,
    item: EvidenceItem,
    party_id: int | None,
    opinions: Sequence[OpinionInput],
) -> list[EvidenceOpinion]:
    """Record ``opinions`` (one per property at most) of a party on ``item``, each with its
    ledger event, in the caller's transaction. Stating a property again needs ``corrects`` =
    the current opinion's id (``evidence_opinion_exists`` otherwise); correcting anything but
    the current opinion is ``evidence_opinion_not_current``."""
    party = check_examine(principal, case, item, party_id)
    checked = [check_opinion(o) for o in opinions]
    if not checked:
        raise Invalid(N_("State at least one opinion."), code="evidence_opinion_required")
    if len({o.property for o in checked}) != len(checked):
        raise Invalid(
            N_("State one opinion per property at a time."), code="evidence_property_repeated"
        )
    created = []
    for value in checked:
        current = current_of(await _cell(session, item, party, value.property))
        if current is not None and value.corrects != current.id:
            raise Conflict(
                N_(
                    "An opinion on the %(property)s of this evidence was already stated for "
                    "this party. To change it, state a correction of it."
                ),
                code="evidence_opinion_exists"
                if value.corrects is None
                else "evidence_opinion_not_current",
                property=Msg(PROPERTIES[value.property]),
            )
        if current is None and value.corrects is not None:
            raise Conflict(
                N_("The opinion to correct is not the current opinion of this party."),
                code="evidence_opinion_not_current",
            )
        entry = await ledger.append(
            session,
            principal.actor,
            EV_EXAMINED,
            case_id=case.id,
            item_id=item.id,
            details={
                "number": item.number,
                "party_id": party.id,
                "property": value.property,
                "stance": value.stance,
                "reason": value.reason,
                "corrects_seq": current.ledger_seq if current is not None else None,
            },
        )
        opinion = EvidenceOpinion(
            case_id=case.id,
            item_id=item.id,
            party_id=party.id,
            property=value.property,
            stance=value.stance,
            reason=value.reason,
            corrects_id=current.id if current is not None else None,
            recorded_by_type="user" if principal.user is not None else "party",
            recorded_by_id=principal.user.id if principal.user is not None else principal.party_id,
            recorder_label=principal.actor.label[:200],
            ledger_seq=entry.seq,
        )
        session.add(opinion)
        try:
            await session.flush()
        except IntegrityError as exc:  # two corrections of one opinion at the same instant
            raise Conflict(
                N_("The opinion to correct is not the current opinion of this party."),
                code="evidence_opinion_not_current",
            ) from exc
        created.append(opinion)
    return created


# ---- the matrix ------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One item × party × property: ``applies`` is False for the submitter's own side."""

    applies: bool
    history: list[EvidenceOpinion] = field(default_factory=list)  # oldest first

    @property
    def current(self) -> EvidenceOpinion | None:
        return current_of(self.history)


@dataclass
class Matrix:
    items: list[EvidenceItem]
    parties: list[Party]
    cells: dict[tuple[int, int, str], Cell]  # (item id, party id, property)

    def cell(self, item: EvidenceItem, party: Party, prop: str) -> Cell:
        return self.cells[(item.id, party.id, prop)]


async def matrix(session: AsyncSession, case: Case, items: Sequence[EvidenceItem]) -> Matrix:
    parties = principal_parties(case)
    by_id = {p.id: p for p in case.parties}
    cells = {
        (item.id, party.id, prop): Cell(examines(item, party, by_id))
        for item in items
        for party in parties
        for prop in PROPERTIES
    }
    rows = await session.scalars(
        select(EvidenceOpinion)
        .where(EvidenceOpinion.case_id == case.id)
        .order_by(EvidenceOpinion.id)
    )
    for opinion in rows:
        cell = cells.get((opinion.item_id, opinion.party_id, opinion.property))
        if cell is not None:
            cell.history.append(opinion)
    return Matrix(list(items), parties, cells)
