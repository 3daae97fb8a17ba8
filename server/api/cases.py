"""API: cases, parties, lifecycle and dispatch. Handlers are thin: authorise, call the domain's
``do_*`` in one transaction, serialise."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access, dispatch, intake, lifecycle
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.errors import Invalid
from cases.models import AuditEntry, Case, Party
from server.api.registry import ApiRegistry, json_response
from server.api.schemas import (
    AssignmentRequest,
    CaseCreate,
    CaseQuery,
    PartyCreate,
    RecusalRequest,
    RouteRequest,
    TransitionRequest,
    audit_json,
    case_json,
    party_json,
    user_json,
)
from web.context import actor, cipher, require_user, transaction
from web.i18n import translate


def register(api: ApiRegistry) -> None:
    api.route("GET", "/cases", summary="List the cases you may see", tag="cases", query=CaseQuery)(
        list_cases
    )
    api.route(
        "POST",
        "/cases",
        summary="Register a case (intake)",
        tag="cases",
        body=CaseCreate,
        status=201,
    )(create_case)
    api.route(
        "GET",
        "/cases/{case_id}",
        summary="A case with its parties (the read is audited)",
        tag="cases",
    )(get_case)
    api.route("GET", "/cases/{case_id}/history", summary="The case's audit trail", tag="cases")(
        case_history
    )
    api.route(
        "POST",
        "/cases/{case_id}/parties",
        summary="Add a party or agent",
        tag="cases",
        body=PartyCreate,
        status=201,
    )(add_party)
    api.route(
        "POST",
        "/cases/{case_id}/parties/{party_id}/reveal-id",
        summary="Reveal a party's full ID number (audited)",
        tag="cases",
    )(reveal_id)
    api.route(
        "POST",
        "/cases/{case_id}/transitions",
        summary="Move the case to another status (409 if not allowed from the current one)",
        tag="lifecycle",
        body=TransitionRequest,
    )(transition)
    api.route(
        "GET",
        "/cases/{case_id}/mediator-suggestions",
        summary="Mediators of the organisation, best first, with conflicts named",
        tag="dispatch",
    )(mediator_suggestions)
    api.route(
        "POST",
        "/cases/{case_id}/assignment",
        summary="Assign a mediator (conflict-of-interest checked)",
        tag="dispatch",
        body=AssignmentRequest,
    )(assign)
    api.route(
        "POST",
        "/cases/{case_id}/recusals",
        summary="Record a party's recusal request (回避) and re-assign",
        tag="dispatch",
        body=RecusalRequest,
        status=201,
    )(recusal)
    api.route(
        "POST",
        "/cases/{case_id}/route",
        summary="Send the case to another organisation",
        tag="dispatch",
        body=RouteRequest,
    )(route)


async def list_cases(request: web.Request, query: CaseQuery) -> web.Response:
    user = require_user(request)
    stmt = access.visible_cases(select(Case), user)
    if query.status:
        stmt = stmt.where(Case.status == query.status)
    if query.category:
        stmt = stmt.where(Case.category == query.category)
    if query.channel:
        stmt = stmt.where(Case.channel == query.channel)
    if query.mediator_id is not None:
        stmt = stmt.where(Case.mediator_id == query.mediator_id)
    if query.organisation_id is not None:
        stmt = stmt.where(Case.organisation_id == query.organisation_id)
    if query.q:
        pattern = f"%{query.q}%"
        stmt = stmt.where(
            or_(
                Case.number.like(pattern),
                Case.title.like(pattern),
                Case.id.in_(select(Party.case_id).where(Party.name.like(pattern))),
            )
        )
    async with transaction(request) as session:
        total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = (
            (
                await session.scalars(
                    stmt.order_by(Case.created_at.desc(), Case.id.desc())
                    .offset((query.page - 1) * query.per_page)
                    .limit(query.per_page)
                )
            )
            .unique()
            .all()
        )
        return json_response(
            {
                "total": total,
                "page": query.page,
                "per_page": query.per_page,
                "cases": [case_json(c, user) for c in rows],
            }
        )


async def create_case(request: web.Request, body: CaseCreate) -> web.Response:
    user = require_user(request, access.INTAKE_ROLES)
    data = intake.CaseInput(
        channel=body.channel,
        category=body.category,
        title=body.title,
        summary=body.summary,
        claim_amount=body.claim_amount,
        referred_by=body.referred_by,
        referral_reference=body.referral_reference,
        parties=[
            intake.PartyInput(
                role=p.role,
                kind=p.kind,
                name=p.name,
                phone=p.phone,
                id_number=p.id_number,
                address=p.address,
                represents_index=p.represents,
            )
            for p in body.parties
        ],
    )
    async with transaction(request) as session:
        organisation_id = body.organisation_id
        if organisation_id is None:
            routed = await dispatch.organisation_for_category(session, body.category)
            organisation_id = routed.id if routed else user.organisation_id
        if organisation_id is None:
            raise Invalid(
                N_("No organisation takes this category; choose one."), code="no_organisation"
            )
        if not access.is_system_admin(user) and organisation_id != user.organisation_id:
            # Staff may hand a case to the organisation the rules name, never pick another one.
            routed = await dispatch.organisation_for_category(session, body.category)
            access.require(routed is not None and routed.id == organisation_id)
        case = await intake.do_create_case(
            session, actor(request), cipher(request), organisation_id, data
        )
        # Routed to another organisation than the user's: not loaded yet (async: no lazy load).
        await session.refresh(case, ["organisation"])
        return json_response(case_json(case, user, detail=True), status=201)


async def load_case(request: web.Request, session: AsyncSession, case_id: int) -> Case:
    """The case, if the signed-in user may see it (404 if it does not exist, 403 if not theirs)."""
    user = require_user(request)
    case = await intake.get_case(session, case_id)
    access.require(access.can_view_case(user, case))
    return case


async def get_case(request: web.Request, case_id: int) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        await record(
            session,
            actor(request),
            AuditAction.CASE_OPENED,
            object_type="case",
            object_id=case.id,
            case_id=case.id,
            organisation_id=case.organisation_id,
        )
        return json_response(case_json(case, user, detail=True))


async def case_history(request: web.Request, case_id: int) -> web.Response:
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.case_id == case.id).order_by(AuditEntry.seq)
            )
        ).all()
        return json_response({"case_id": case.id, "entries": [audit_json(e) for e in rows]})


async def add_party(request: web.Request, case_id: int, body: PartyCreate) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_manage_case(user, case))
        party = await intake.do_add_party(
            session,
            actor(request),
            cipher(request),
            case,
            intake.PartyInput(
                role=body.role,
                kind=body.kind,
                name=body.name,
                phone=body.phone,
                id_number=body.id_number,
                address=body.address,
            ),
            represents_id=body.represents,
        )
        return json_response(party_json(party), status=201)


async def reveal_id(request: web.Request, case_id: int, party_id: int) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_reveal_id_numbers(user, case))
        party = await intake.get_party(session, case, party_id)
        number = await intake.do_reveal_id_number(
            session, actor(request), cipher(request), party, case
        )
        return json_response({"party_id": party.id, "id_number": number})


async def transition(request: web.Request, case_id: int, body: TransitionRequest) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_progress_case(user, case))
        case = await lifecycle.do_transition(session, actor(request), case, body.to, body.reason)
        return json_response(case_json(case, user, detail=True))


async def mediator_suggestions(request: web.Request, case_id: int) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_manage_case(user, case))
        options = await dispatch.suggest_mediators(session, cipher(request), case)
        return json_response(
            {
                "case_id": case.id,
                "mediators": [
                    {
                        "mediator": user_json(o.user),
                        "active_cases": o.active_cases,
                        "takes_category": o.takes_category,
                        "conflict": translate(o.conflict.message, o.conflict.params)
                        if o.conflict
                        else None,
                    }
                    for o in options
                ],
            }
        )


async def assign(request: web.Request, case_id: int, body: AssignmentRequest) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_manage_case(user, case))
        case = await dispatch.do_assign_mediator(
            session, actor(request), cipher(request), case, body.mediator_id, note=body.note
        )
        return json_response(case_json(case, user, detail=True))


async def recusal(request: web.Request, case_id: int, body: RecusalRequest) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_manage_case(user, case))
        case, row = await dispatch.do_recusal(
            session,
            actor(request),
            cipher(request),
            case,
            party_id=body.party_id,
            reason=body.reason,
            replacement_id=body.replacement_id,
        )
        return json_response(
            {
                "recusal_id": row.id,
                "recused_mediator_id": row.mediator_id,
                "case": case_json(case, user, detail=True),
            },
            status=201,
        )


async def route(request: web.Request, case_id: int, body: RouteRequest) -> web.Response:
    user = require_user(request, access.ADMIN_ROLES)
    async with transaction(request) as session:
        case = await load_case(request, session, case_id)
        access.require(access.can_manage_case(user, case))
        case = await dispatch.do_route_case(session, actor(request), case, body.organisation_id)
        return json_response(case_json(case, user, detail=True))
