"""Case intake from the three channels (court referral, department assignment, party application),
parties and representatives, and readable case numbers unique per organisation and year."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import DISPUTE_CATEGORIES, INTAKE_CHANNELS, N_, PARTY_KINDS, PARTY_ROLES
from cases.errors import Invalid, NotFound
from cases.lifecycle import ACCEPTED
from cases.models import Case, CaseCounter, Organisation, Party, dialect_name
from cases.protect import FieldCipher, mask_id_number, normalise_id_number

# Case numbers follow the year in the committee's own time zone, not UTC.
CHINA = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class PartyInput:
    role: str
    name: str
    kind: str = "person"
    phone: str = ""
    id_number: str = ""
    address: str = ""
    represents_index: int | None = None  # for agents: index of the represented party in the list


@dataclass(frozen=True)
class CaseInput:
    channel: str
    category: str
    title: str
    summary: str = ""
    claim_amount: Decimal | None = None
    referred_by: str = ""
    referral_reference: str = ""
    parties: list[PartyInput] = field(default_factory=list)


def check_case_input(data: CaseInput) -> None:
    if data.channel not in INTAKE_CHANNELS:
        raise Invalid(
            N_("Unknown intake channel: %(channel)s"), code="invalid_channel", channel=data.channel
        )
    if data.category not in DISPUTE_CATEGORIES:
        raise Invalid(
            N_("Unknown dispute category: %(category)s"),
            code="invalid_category",
            category=data.category,
        )
    if not data.title.strip():
        raise Invalid(N_("Please give the case a short title."), code="title_required")
    if data.channel in ("court_referral", "department_assignment") and not data.referred_by.strip():
        raise Invalid(
            N_("Name the court or department that referred this case."), code="referrer_required"
        )
    if data.claim_amount is not None and data.claim_amount < 0:
        raise Invalid(N_("The claim amount cannot be negative."), code="invalid_amount")
    roles = [p.role for p in data.parties]
    if "applicant" not in roles or "respondent" not in roles:
        raise Invalid(
            N_("A case needs at least one applicant and one respondent."), code="parties_required"
        )
    for index, party in enumerate(data.parties):
        check_party_input(party)
        if party.role == "agent":
            target = party.represents_index
            if (
                target is None
                or not (0 <= target < len(data.parties))
                or target == index
                or data.parties[target].role == "agent"
            ):
                raise Invalid(
                    N_("Say which party the agent %(name)s represents."),
                    code="agent_without_principal",
                    name=party.name,
                )


def check_party_input(party: PartyInput) -> None:
    if party.role not in PARTY_ROLES:
        raise Invalid(
            N_("Unknown party role: %(role)s"), code="invalid_party_role", role=party.role
        )
    if party.kind not in PARTY_KINDS:
        raise Invalid(
            N_("Unknown party kind: %(kind)s"), code="invalid_party_kind", kind=party.kind
        )
    if not party.name.strip():
        raise Invalid(N_("Every party needs a name."), code="party_name_required")
    if party.id_number and party.kind == "person":
        normalise_id_number(party.id_number)


async def next_case_number(session: AsyncSession, organisation: Organisation, year: int) -> int:
    """Atomically take the next sequence number (INSERT … ON CONFLICT DO UPDATE … RETURNING)."""
    dialect = dialect_name(session)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(CaseCounter)
        .values(organisation_id=organisation.id, year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=[CaseCounter.organisation_id, CaseCounter.year],
            set_={"last_seq": CaseCounter.last_seq + 1},
        )
        .returning(CaseCounter.last_seq)
    )
    return int((await session.execute(stmt)).scalar_one())


def format_case_number(organisation: Organisation, year: int, seq: int) -> str:
    return f"（{year}）{organisation.short_name}调字第{seq}号"


def build_party(cipher: FieldCipher, data: PartyInput, case_id: int | None = None) -> Party:
    party = Party(
        role=data.role,
        kind=data.kind,
        name=data.name.strip(),
        phone=data.phone.strip(),
        address=data.address.strip(),
    )
    if case_id is not None:
        party.case_id = case_id
    if data.id_number.strip():
        number = (
            normalise_id_number(data.id_number) if data.kind == "person" else data.id_number.strip()
        )
        party.id_number_enc = cipher.encrypt(number)
        party.id_number_index = cipher.index(number)
        party.id_number_masked = mask_id_number(number)
    return party


async def do_create_case(
    session: AsyncSession,
    actor: Actor,
    cipher: FieldCipher,
    organisation_id: int,
    data: CaseInput,
    now: dt.datetime | None = None,
) -> Case:
    """Register a case in status ``accepted`` (受理) with its parties. Audited."""
    check_case_input(data)
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None or not organisation.active:
        raise NotFound(N_("No such organisation."))
    year = (now or dt.datetime.now(dt.UTC)).astimezone(CHINA).year
    seq = await next_case_number(session, organisation, year)
    case = Case(
        organisation_id=organisation.id,
        year=year,
        seq=seq,
        number=format_case_number(organisation, year, seq),
        channel=data.channel,
        referred_by=data.referred_by.strip(),
        referral_reference=data.referral_reference.strip(),
        category=data.category,
        title=data.title.strip(),
        summary=data.summary.strip(),
        claim_amount=data.claim_amount,
        status=ACCEPTED,
        created_by_id=actor.id if actor.kind == "user" else None,
    )
    session.add(case)
    await session.flush()
    parties = [build_party(cipher, p, case.id) for p in data.parties]
    session.add_all(parties)
    await session.flush()
    for party, spec in zip(parties, data.parties, strict=True):
        if spec.represents_index is not None and spec.role == "agent":
            party.represents_id = parties[spec.represents_index].id
    await record(
        session,
        actor,
        AuditAction.CASE_CREATED,
        object_type="case",
        object_id=case.id,
        case_id=case.id,
        organisation_id=organisation.id,
        details={
            "number": case.number,
            "channel": data.channel,
            "category": data.category,
            "parties": len(parties),
        },
    )
    await session.refresh(case, ["parties"])
    return case


async def do_add_party(
    session: AsyncSession,
    actor: Actor,
    cipher: FieldCipher,
    case: Case,
    data: PartyInput,
    represents_id: int | None = None,
) -> Party:
    check_party_input(data)
    if data.role == "agent":
        principal = await session.get(Party, represents_id) if represents_id else None
        if principal is None or principal.case_id != case.id or principal.role == "agent":
            raise Invalid(
                N_("Say which party the agent %(name)s represents."),
                code="agent_without_principal",
                name=data.name,
            )
    party = build_party(cipher, data, case.id)
    party.represents_id = represents_id if data.role == "agent" else None
    session.add(party)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.PARTY_ADDED,
        object_type="party",
        object_id=party.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={"role": party.role, "name": party.name},
    )
    await session.refresh(case, ["parties"])
    return party


async def do_reveal_id_number(
    session: AsyncSession, actor: Actor, cipher: FieldCipher, party: Party, case: Case
) -> str:
    """Decrypt a party's ID number for an authorised viewer; the reading is audited."""
    if not party.id_number_enc:
        raise NotFound(N_("No ID number is on file for this party."))
    await record(
        session,
        actor,
        AuditAction.ID_NUMBER_REVEALED,
        object_type="party",
        object_id=party.id,
        case_id=case.id,
        organisation_id=case.organisation_id,
    )
    return cipher.decrypt(party.id_number_enc)


async def get_case(session: AsyncSession, case_id: int) -> Case:
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound(N_("No such case."), code="case_not_found")
    return case


async def get_party(session: AsyncSession, case: Case, party_id: int) -> Party:
    party = await session.scalar(
        select(Party).where(Party.id == party_id, Party.case_id == case.id)
    )
    if party is None:
        raise NotFound(N_("No such party in this case."))
    return party
