"""Mediation organisations and the dispute categories they take."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import DISPUTE_CATEGORIES, N_, ORGANISATION_KINDS
from cases.errors import Conflict, Invalid, NotFound
from cases.models import Organisation


def check_organisation_fields(name: str, short_name: str, kind: str, categories: list[str]) -> None:
    if not name.strip():
        raise Invalid(N_("The organisation needs a name."), code="name_required")
    if not short_name.strip() or len(short_name.strip()) > 20:
        raise Invalid(
            N_("The short name (used in case numbers) has 1–20 characters."),
            code="invalid_short_name",
        )
    if kind not in ORGANISATION_KINDS:
        raise Invalid(N_("Unknown organisation kind: %(kind)s"), code="invalid_kind", kind=kind)
    unknown = set(categories) - set(DISPUTE_CATEGORIES)
    if unknown:
        raise Invalid(
            N_("Unknown dispute category: %(category)s"),
            code="invalid_category",
            category=sorted(unknown)[0],
        )


async def do_create_organisation(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    short_name: str,
    kind: str,
    categories: list[str],
    address: str = "",
    phone: str = "",
) -> Organisation:
    check_organisation_fields(name, short_name, kind, categories)
    if await session.scalar(select(Organisation.id).where(Organisation.name == name.strip())):
        raise Conflict(N_("An organisation with this name exists already."), code="name_taken")
    org = Organisation(
        name=name.strip(),
        short_name=short_name.strip(),
        kind=kind,
        categories=sorted(set(categories)),
        address=address.strip(),
        phone=phone.strip(),
    )
    session.add(org)
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.ORGANISATION_CREATED,
        object_type="organisation",
        object_id=org.id,
        organisation_id=org.id,
        details={"name": org.name, "kind": kind, "categories": org.categories},
    )
    return org


async def do_update_categories(
    session: AsyncSession, actor: Actor, org: Organisation, categories: list[str]
) -> Organisation:
    check_organisation_fields(org.name, org.short_name, org.kind, categories)
    before = list(org.categories or [])
    org.categories = sorted(set(categories))
    await session.flush()
    await record(
        session,
        actor,
        AuditAction.ORGANISATION_UPDATED,
        object_type="organisation",
        object_id=org.id,
        organisation_id=org.id,
        details={"categories_before": before, "categories": org.categories},
    )
    return org


async def get_organisation(session: AsyncSession, organisation_id: int) -> Organisation:
    org = await session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound(N_("No such organisation."))
    return org
