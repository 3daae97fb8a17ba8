"""API: authentication, organisations, staff accounts, dispatch rules, audit trail, catalogue."""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy import select

from cases import access, accounts, dispatch, organisations
from cases.audit import verify_chain
from cases.catalogue import (
    DISPUTE_CATEGORIES,
    INTAKE_CHANNELS,
    ORGANISATION_KINDS,
    PARTY_ROLES,
    STAFF_ROLES,
)
from cases.lifecycle import STATUS_LABELS, TRANSITIONS
from cases.models import AuditEntry, DispatchRule, Organisation, User
from server.api.registry import ApiRegistry, json_response
from server.api.schemas import (
    AuditQuery,
    OrganisationCreate,
    OrganisationUpdate,
    RelationshipCreate,
    RuleCreate,
    TokenRequest,
    UserCreate,
    audit_json,
    label,
    organisation_json,
    rule_json,
    user_json,
)
from web.context import actor, cipher, require_user, settings, transaction


def register(api: ApiRegistry) -> None:
    api.route(
        "POST",
        "/auth/token",
        summary="Exchange a staff username and password for a bearer token",
        tag="auth",
        body=TokenRequest,
        auth=False,
        status=201,
    )(issue_token)
    api.route("GET", "/me", summary="The signed-in account", tag="auth")(me)
    api.route(
        "GET",
        "/catalogue",
        summary="Codes and labels: categories, channels, roles, statuses and allowed transitions",
        tag="catalogue",
        auth=False,
    )(catalogue)
    api.route("GET", "/organisations", summary="Organisations", tag="organisations")(
        list_organisations
    )
    api.route(
        "POST",
        "/organisations",
        summary="Create an organisation (system administrator)",
        tag="organisations",
        body=OrganisationCreate,
        status=201,
    )(create_organisation)
    api.route(
        "PATCH",
        "/organisations/{organisation_id}",
        summary="Change the categories an organisation takes",
        tag="organisations",
        body=OrganisationUpdate,
    )(update_organisation)
    api.route("GET", "/users", summary="Staff accounts you administer", tag="users")(list_users)
    api.route(
        "POST", "/users", summary="Create a staff account", tag="users", body=UserCreate, status=201
    )(create_user)
    api.route(
        "POST",
        "/users/{user_id}/relationships",
        summary="Declare a mediator's relationship that bars them from a party's cases",
        tag="users",
        body=RelationshipCreate,
        status=201,
    )(declare_relationship)
    api.route("GET", "/dispatch-rules", summary="Category → organisation rules", tag="dispatch")(
        list_rules
    )
    api.route(
        "POST",
        "/dispatch-rules",
        summary="Add a rule (system administrator)",
        tag="dispatch",
        body=RuleCreate,
        status=201,
    )(add_rule)
    api.route(
        "DELETE",
        "/dispatch-rules/{rule_id}",
        summary="Remove a rule (system administrator)",
        tag="dispatch",
    )(remove_rule)
    api.route(
        "GET", "/audit", summary="Audit trail rows (administrators)", tag="audit", query=AuditQuery
    )(list_audit)
    api.route(
        "GET",
        "/audit/verify",
        summary="Recompute the audit hash chain (system administrator)",
        tag="audit",
    )(verify_audit)


async def issue_token(request: web.Request, body: TokenRequest) -> web.Response:
    cfg = settings(request)
    async with transaction(request) as session:
        user = await accounts.authenticate(
            session,
            actor(request),
            body.username,
            body.password,
            max_failures=cfg.login_max_failures,
            lockout=dt.timedelta(seconds=cfg.login_lockout_s),
        )
        token, row = await accounts.issue_api_token(
            session,
            actor(request),
            user,
            name=body.name,
            max_age=dt.timedelta(seconds=cfg.api_token_max_age_s),
        )
        return json_response(
            {
                "token": token,
                "token_type": "Bearer",
                "expires_at": row.expires_at.isoformat(),
                "user": user_json(user),
            },
            status=201,
        )


async def me(request: web.Request) -> web.Response:
    return json_response(user_json(require_user(request)))


async def catalogue(request: web.Request) -> web.Response:
    def table(values: dict[str, str]) -> list[dict[str, str]]:
        return [{"code": code, "label": label(values, code)} for code in values]

    return json_response(
        {
            "categories": table(DISPUTE_CATEGORIES),
            "channels": table(INTAKE_CHANNELS),
            "organisation_kinds": table(ORGANISATION_KINDS),
            "staff_roles": table(STAFF_ROLES),
            "party_roles": table(PARTY_ROLES),
            "statuses": table(STATUS_LABELS),
            "transitions": {source: sorted(targets) for source, targets in TRANSITIONS.items()},
        }
    )


async def list_organisations(request: web.Request) -> web.Response:
    require_user(request)
    async with transaction(request) as session:
        rows = (await session.scalars(select(Organisation).order_by(Organisation.id))).all()
        return json_response({"organisations": [organisation_json(o) for o in rows]})


async def create_organisation(request: web.Request, body: OrganisationCreate) -> web.Response:
    require_user(request, {"system_admin"})
    async with transaction(request) as session:
        org = await organisations.do_create_organisation(
            session,
            actor(request),
            name=body.name,
            short_name=body.short_name,
            kind=body.kind,
            categories=body.categories,
            address=body.address,
            phone=body.phone,
        )
        return json_response(organisation_json(org), status=201)


async def update_organisation(
    request: web.Request, organisation_id: int, body: OrganisationUpdate
) -> web.Response:
    user = require_user(request, access.ADMIN_ROLES)
    access.require(access.same_organisation(user, organisation_id))
    async with transaction(request) as session:
        org = await organisations.get_organisation(session, organisation_id)
        org = await organisations.do_update_categories(
            session, actor(request), org, body.categories
        )
        return json_response(organisation_json(org))


async def list_users(request: web.Request) -> web.Response:
    user = require_user(request, access.ADMIN_ROLES)
    stmt = select(User).order_by(User.id)
    if not access.is_system_admin(user):
        stmt = stmt.where(User.organisation_id == user.organisation_id)
    async with transaction(request) as session:
        return json_response({"users": [user_json(u) for u in (await session.scalars(stmt)).all()]})


async def create_user(request: web.Request, body: UserCreate) -> web.Response:
    user = require_user(request, access.ADMIN_ROLES)
    if not access.is_system_admin(user):
        # An organisation administrator creates accounts in their own organisation only.
        access.require(
            body.role != "system_admin" and body.organisation_id in (None, user.organisation_id)
        )
        organisation_id = user.organisation_id
    else:
        organisation_id = body.organisation_id
    async with transaction(request) as session:
        created = await accounts.create_user(
            session,
            actor(request),
            username=body.username,
            password=body.password,
            display_name=body.display_name,
            role=body.role,
            organisation_id=organisation_id,
            phone=body.phone,
            categories=body.categories,
            cipher=cipher(request),
            id_number=body.id_number,
        )
        return json_response(user_json(created), status=201)


async def declare_relationship(
    request: web.Request, user_id: int, body: RelationshipCreate
) -> web.Response:
    user = require_user(request)
    async with transaction(request) as session:
        mediator = await accounts.get_user(session, user_id)
        # The mediator themself, or an administrator of their organisation.
        access.require(
            user.id == mediator.id
            or (
                user.role in access.ADMIN_ROLES
                and access.same_organisation(user, mediator.organisation_id)
            )
        )
        rel = await dispatch.do_declare_relationship(
            session,
            actor(request),
            cipher(request),
            mediator,
            person_name=body.person_name,
            relationship_text=body.relationship,
            phone=body.phone,
            id_number=body.id_number,
        )
        return json_response(
            {
                "id": rel.id,
                "mediator_id": mediator.id,
                "person_name": rel.person_name,
                "relationship": rel.relationship_text,
            },
            status=201,
        )


async def list_rules(request: web.Request) -> web.Response:
    require_user(request)
    async with transaction(request) as session:
        rows = (
            await session.scalars(
                select(DispatchRule).order_by(DispatchRule.category, DispatchRule.priority)
            )
        ).all()
        return json_response({"rules": [rule_json(r) for r in rows]})


async def add_rule(request: web.Request, body: RuleCreate) -> web.Response:
    require_user(request, {"system_admin"})
    async with transaction(request) as session:
        rule = await dispatch.do_add_rule(
            session, actor(request), body.category, body.organisation_id, body.priority
        )
        await session.refresh(rule, ["organisation"])
        return json_response(rule_json(rule), status=201)


async def remove_rule(request: web.Request, rule_id: int) -> web.Response:
    require_user(request, {"system_admin"})
    async with transaction(request) as session:
        await dispatch.do_remove_rule(session, actor(request), rule_id)
    return json_response({"deleted": rule_id})


async def list_audit(request: web.Request, query: AuditQuery) -> web.Response:
    user = require_user(request, access.ADMIN_ROLES)
    stmt = select(AuditEntry).where(AuditEntry.seq > query.after_seq)
    if not access.is_system_admin(user):
        stmt = stmt.where(AuditEntry.organisation_id == user.organisation_id)
    if query.case_id is not None:
        stmt = stmt.where(AuditEntry.case_id == query.case_id)
    if query.action:
        stmt = stmt.where(AuditEntry.action == query.action)
    async with transaction(request) as session:
        rows = (await session.scalars(stmt.order_by(AuditEntry.seq).limit(query.limit))).all()
        return json_response({"entries": [audit_json(e) for e in rows]})


async def verify_audit(request: web.Request) -> web.Response:
    require_user(request, {"system_admin"})
    async with transaction(request) as session:
        report = await verify_chain(session)
    return json_response(
        {
            "ok": report.ok,
            "rows": report.rows,
            "first_bad_seq": report.first_bad_seq,
            "problem": report.problem,
        }
    )
