"""Request models of the JSON API (validated at the edge) and the functions that turn domain
objects into JSON. Shapes here are the public contract documented in ``/api/v1/openapi.json``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cases import access
from cases.catalogue import DISPUTE_CATEGORIES, INTAKE_CHANNELS, PARTY_ROLES
from cases.lifecycle import STATUS_LABELS, allowed_targets
from cases.models import AuditEntry, Case, DispatchRule, Organisation, Party, User
from web.i18n import gettext


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TokenRequest(Strict):
    username: str = Field(max_length=80)
    password: str = Field(max_length=200)
    name: str = Field(default="api", max_length=100, description="A label for the token")


class OrganisationCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    short_name: str = Field(
        min_length=1,
        max_length=20,
        description="Used in case numbers, e.g. 伍联 → （2026）伍联调字第1号",
    )
    kind: Literal["peoples_committee", "industry_room", "court_invited", "commercial_centre"]
    categories: list[str] = Field(default_factory=list)
    address: str = Field(default="", max_length=300)
    phone: str = Field(default="", max_length=40)


class OrganisationUpdate(Strict):
    categories: list[str]


class UserCreate(Strict):
    username: str = Field(min_length=3, max_length=80)
    password: str = Field(min_length=10, max_length=200)
    display_name: str = Field(min_length=1, max_length=100)
    role: Literal["system_admin", "org_admin", "mediator", "clerk"]
    organisation_id: int | None = None
    phone: str = Field(default="", max_length=40)
    id_number: str = Field(default="", max_length=18)
    categories: list[str] = Field(default_factory=list)


class RelationshipCreate(Strict):
    person_name: str = Field(min_length=1, max_length=200)
    relationship: str = Field(min_length=1, max_length=200)
    phone: str = Field(default="", max_length=40)
    id_number: str = Field(default="", max_length=18)


class PartyCreate(Strict):
    role: Literal["applicant", "respondent", "third_party", "agent"]
    kind: Literal["person", "organisation"] = "person"
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(default="", max_length=40)
    id_number: str = Field(default="", max_length=30)
    address: str = Field(default="", max_length=300)
    represents: int | None = Field(
        default=None,
        description="Agents only. At intake: the index of the represented party in `parties`; "
        "when adding to a case: the represented party's id.",
    )


class CaseCreate(Strict):
    channel: Literal["court_referral", "department_assignment", "party_application"]
    category: str = Field(description="One of GET /api/v1/catalogue → categories")
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=20000)
    claim_amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)
    referred_by: str = Field(default="", max_length=200)
    referral_reference: str = Field(default="", max_length=100)
    organisation_id: int | None = Field(
        default=None,
        description="Omit to dispatch by the category rules "
        "(falling back to your own organisation)",
    )
    parties: list[PartyCreate] = Field(min_length=2, max_length=50)


class CaseQuery(Strict):
    status: str | None = None
    category: str | None = None
    channel: str | None = None
    mediator_id: int | None = None
    organisation_id: int | None = None
    q: str | None = Field(default=None, max_length=100)
    page: int = Field(default=1, ge=1, le=100000)
    per_page: int = Field(default=50, ge=1, le=200)


class TransitionRequest(Strict):
    to: str = Field(description="Target status; see GET /api/v1/catalogue → transitions")
    reason: str = Field(default="", max_length=2000)


class AssignmentRequest(Strict):
    mediator_id: int
    note: str = Field(default="", max_length=500)


class RecusalRequest(Strict):
    party_id: int | None = None
    reason: str = Field(min_length=1, max_length=2000)
    replacement_id: int | None = None


class RouteRequest(Strict):
    organisation_id: int


class RuleCreate(Strict):
    category: str
    organisation_id: int
    priority: int = Field(default=100, ge=0, le=10000)


class AuditQuery(Strict):
    case_id: int | None = None
    action: str | None = None
    after_seq: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


# ---- output ----------------------------------------------------------------------------------


def label(table: dict[str, str], code: str) -> str:
    return gettext(table[code]) if code in table else code


def organisation_json(org: Organisation) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "short_name": org.short_name,
        "kind": org.kind,
        "categories": list(org.categories or []),
        "address": org.address,
        "phone": org.phone,
        "active": org.active,
    }


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "organisation_id": user.organisation_id,
        "phone": user.phone,
        "categories": list(user.categories or []),
        "active": user.active,
    }


def party_json(party: Party) -> dict[str, Any]:
    return {
        "id": party.id,
        "role": party.role,
        "role_label": label(PARTY_ROLES, party.role),
        "kind": party.kind,
        "name": party.name,
        "phone": party.phone,
        "id_number_masked": party.id_number_masked,
        "address": party.address,
        "represents_id": party.represents_id,
    }


def case_json(case: Case, user: User, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": case.id,
        "number": case.number,
        "title": case.title,
        "status": case.status,
        "status_label": label(STATUS_LABELS, case.status),
        "channel": case.channel,
        "channel_label": label(INTAKE_CHANNELS, case.channel),
        "category": case.category,
        "category_label": label(DISPUTE_CATEGORIES, case.category),
        "organisation_id": case.organisation_id,
        "organisation_name": case.organisation.name,
        "mediator_id": case.mediator_id,
        "mediator_name": case.mediator.display_name if case.mediator else None,
        "claim_amount": str(case.claim_amount) if case.claim_amount is not None else None,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
    }
    if detail:
        data.update(
            {
                "summary": case.summary,
                "referred_by": case.referred_by,
                "referral_reference": case.referral_reference,
                "parties": [party_json(p) for p in case.parties],
                "allowed_transitions": sorted(allowed_targets(case.status))
                if access.can_progress_case(user, case)
                else [],
            }
        )
    return data


def rule_json(rule: DispatchRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "category": rule.category,
        "organisation_id": rule.organisation_id,
        "organisation_name": rule.organisation.name,
        "priority": rule.priority,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "case_id": entry.case_id,
        "organisation_id": entry.organisation_id,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "details": entry.details_dict(),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
