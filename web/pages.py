"""Server-rendered pages for staff: sign-in, the case register, intake, the case file (parties,
lifecycle, dispatch, hearings and their links, history) and the administration pages (accounts,
dispatch rules, organisations, the notification outbox).

Handlers stay thin: read the form, call the ``cases`` functions inside one unit of work, then
redirect (303) or re-render. A form the domain rejects as ``Invalid`` is shown again with the
translated message and the user's values kept; other domain errors go to the error middleware,
which renders ``error.html``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from cases import access, accounts, dispatch, intake, lifecycle, organisations
from cases.audit import AuditAction, record
from cases.catalogue import (
    DISPUTE_CATEGORIES,
    INTAKE_CHANNELS,
    N_,
    ORGANISATION_KINDS,
    PARTY_KINDS,
    PARTY_ROLES,
    STAFF_ROLES,
)
from cases.errors import AuthenticationFailed, Conflict, DomainError, Forbidden, Invalid
from cases.models import (
    AuditEntry,
    Case,
    DeclaredRelationship,
    DispatchRule,
    Organisation,
    Party,
    User,
)
from cases.notifications import (
    CHANNELS,
    SMS,
    Notification,
    OutboxMessage,
    OutboxSender,
    Sender,
    do_notify,
)
from config import Settings
from esign.catalogue import ESIGN_AUDIT_LABELS
from evidence.catalogue import EVIDENCE_AUDIT_LABELS
from notes.catalogue import NOTES_AUDIT_LABELS
from recordings.catalogue import RECORDING_AUDIT_LABELS
from rooms import hearings as hearing_actions
from rooms.catalogue import (
    AGENT,
    ENDED,
    HEARING_AUDIT_LABELS,
    HEARING_STATUSES,
    NEUTRAL,
    OBSERVER_ROLES,
    PARTICIPANT_KINDS,
    PARTICIPANT_STATES,
    PARTY,
    SIDES,
)
from rooms.invitations import do_revoke_invitation, issue_invitation
from rooms.models import Hearing, HearingParticipant
from web import agreements as agreement_pages
from web import i18n
from web.context import (
    LOCALE_COOKIE,
    SESSION_COOKIE,
    SETTINGS,
    actor,
    cipher,
    client_ip,
    cookie_secure,
    current_user,
    require_user,
    settings,
    template_context,
    transaction,
)
from web.i18n import format_local
from web.i18n import gettext as _

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

PAGE_SIZE = 50
MAX_PARTY_ROWS = 50
SHOWN_PARTY_ROWS = 4
LOCALE_COOKIE_MAX_AGE = 365 * 24 * 3600


@dataclass(frozen=True)
class Paging:
    """Where a list of ``PAGE_SIZE`` rows a page stands, and the links either side (None at
    the ends). ``values()`` are the names the templates' ``pager`` macro is given."""

    total: int
    page: int
    pages: int
    prev_link: str | None
    next_link: str | None

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def values(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def paginate(
    session: AsyncSession, query: Any, request: web.Request, base: str, filters: Mapping[str, str]
) -> Paging:
    """Count ``query``'s rows and place the page asked for (``?page=``, clamped to the last);
    the links keep the non-empty ``filters``."""
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    page = min(as_id(request.query.get("page", "1")) or 1, pages)
    kept = {k: v for k, v in filters.items() if v}

    def link(number: int) -> str:
        return f"{base}?{urlencode({**kept, 'page': number})}"

    return Paging(
        total,
        page,
        pages,
        link(page - 1) if page > 1 else None,
        link(page + 1) if page < pages else None,
    )


# Every action of the audit trail, as people read it in a case's history.
AUDIT_LABELS: dict[str, str] = {
    AuditAction.LOGIN_SUCCEEDED: N_("Signed in"),
    AuditAction.LOGIN_FAILED: N_("Sign-in failed"),
    AuditAction.LOGIN_LOCKED: N_("Account locked"),
    AuditAction.LOGOUT: N_("Signed out"),
    AuditAction.API_TOKEN_ISSUED: N_("API token issued"),
    AuditAction.USER_CREATED: N_("Account created"),
    AuditAction.ORGANISATION_CREATED: N_("Organisation created"),
    AuditAction.ORGANISATION_UPDATED: N_("Organisation updated"),
    AuditAction.CASE_CREATED: N_("Case registered"),
    AuditAction.CASE_OPENED: N_("Case file opened"),
    AuditAction.CASE_TRANSITIONED: N_("Status changed"),
    AuditAction.CASE_ROUTED: N_("Sent to another organisation"),
    AuditAction.CASE_ASSIGNED: N_("Mediator assigned"),
    AuditAction.ASSIGNMENT_REFUSED: N_("Assignment refused"),
    AuditAction.RECUSAL_RECORDED: N_("Recusal recorded"),
    AuditAction.PARTY_ADDED: N_("Party added"),
    AuditAction.ID_NUMBER_REVEALED: N_("ID number viewed"),
    AuditAction.DISPATCH_RULE_ADDED: N_("Dispatch rule added"),
    AuditAction.DISPATCH_RULE_REMOVED: N_("Dispatch rule removed"),
    AuditAction.RELATIONSHIP_DECLARED: N_("Relationship declared"),
    AuditAction.DEMO_SEEDED: N_("Demo data created"),
    AuditAction.NOTIFICATION_QUEUED: N_("Notification put in the outbox"),
    **HEARING_AUDIT_LABELS,
    **EVIDENCE_AUDIT_LABELS,
    **RECORDING_AUDIT_LABELS,
    **ESIGN_AUDIT_LABELS,
    **NOTES_AUDIT_LABELS,
}

# The closed vocabularies a template may label with ``code|label('…')``.
VOCABULARIES: dict[str, Mapping[str, str]] = {
    "status": lifecycle.STATUS_LABELS,
    "category": DISPUTE_CATEGORIES,
    "channel": INTAKE_CHANNELS,
    "party_role": PARTY_ROLES,
    "party_kind": PARTY_KINDS,
    "role": STAFF_ROLES,
    "org_kind": ORGANISATION_KINDS,
    "action": AUDIT_LABELS,
    "hearing_status": HEARING_STATUSES,
    "participant_kind": PARTICIPANT_KINDS,
    "participant_state": PARTICIPANT_STATES,
    "observer_role": OBSERVER_ROLES,
    "side": SIDES,
    "notification_channel": CHANNELS,
}

# Notices shown after a successful POST (``?done=key``); fixed texts, never user input.
DONE_MESSAGES: dict[str, str] = {
    "transitioned": N_("The case status has been updated."),
    "assigned": N_("The mediator has been assigned."),
    "recusal": N_("The recusal has been recorded and another mediator assigned."),
    "recusal_unassigned": N_(
        "The recusal has been recorded. No other mediator is free at the "
        "moment: please assign one by hand."
    ),
    "party": N_("The party has been added."),
    "routed": N_("The case has been sent to the chosen organisation."),
    "rule_added": N_("The dispatch rule has been added."),
    "rule_removed": N_("The dispatch rule has been removed."),
    "user_created": N_("The account has been created."),
    "relationship": N_(
        "The relationship has been recorded; it will be checked at every assignment."
    ),
    "organisation_created": N_("The organisation has been created."),
    "categories": N_("The organisation's categories have been saved."),
    "hearing_scheduled": N_(
        "The hearing has been scheduled. Parties and agents with a phone number are sent their "
        "own link by text message; give the others their link yourself."
    ),
    "link_renewed": N_(
        "A new link has been made and the old one no longer works. If the participant has a "
        "phone number, the new link is sent to them by text message."
    ),
}

# Roles an organisation administrator may give to the accounts they create.
ORG_ADMIN_CREATABLE_ROLES = ("mediator", "clerk", "org_admin")
REFERRAL_CHANNELS = frozenset({"court_referral", "department_assignment"})

Form = MultiDictProxy[Any]


# ---- set-up --------------------------------------------------------------------------------


def setup(app: web.Application) -> jinja2.Environment:
    """Templates (autoescaped, gettext-enabled), filters, the ``/static`` route and all pages."""
    zone = ZoneInfo(app[SETTINGS].timezone)

    def localtime(value: dt.datetime | None) -> str:
        return format_local(value, zone)

    filters: dict[str, Callable[..., str]] = {
        "localtime": localtime,
        "label": label,
        "yuan": format_yuan,
    }
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        # A misspelt variable fails loudly in the tests instead of rendering as nothing.
        undefined=jinja2.StrictUndefined,
        filters=filters,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    env.globals.update(
        choices=choices,
        locales=i18n.LOCALES,
        ADMIN_ROLES=access.ADMIN_ROLES,
        INTAKE_ROLES=access.INTAKE_ROLES,
    )
    app.router.add_static("/static", STATIC_DIR)
    add_routes(app.router)
    return env


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index)
    router.add_get("/login", login_form)
    router.add_post("/login", login_submit)
    router.add_post("/logout", logout)
    router.add_get("/lang/{locale}", set_language)
    router.add_get("/cases", case_list)
    router.add_get("/cases/new", case_new_form)
    router.add_post("/cases/new", case_new_submit)
    router.add_get(r"/cases/{case_id:\d+}", case_detail)
    router.add_post(r"/cases/{case_id:\d+}/parties", party_add)
    router.add_post(r"/cases/{case_id:\d+}/parties/{party_id:\d+}/reveal", party_reveal)
    router.add_post(r"/cases/{case_id:\d+}/transition", case_transition)
    router.add_post(r"/cases/{case_id:\d+}/assign", case_assign)
    router.add_post(r"/cases/{case_id:\d+}/recusal", case_recusal)
    router.add_post(r"/cases/{case_id:\d+}/route", case_route)
    router.add_post(r"/cases/{case_id:\d+}/hearings", hearing_schedule)
    router.add_post(
        r"/cases/{case_id:\d+}/hearings/{hearing_id:\d+}/participants/{participant_id:\d+}/link",
        hearing_new_link,
    )
    router.add_get("/admin/dispatch", dispatch_page)
    router.add_post("/admin/dispatch", dispatch_add)
    router.add_post(r"/admin/dispatch/{rule_id:\d+}/delete", dispatch_delete)
    router.add_get("/admin/users", users_page)
    router.add_post("/admin/users", users_create)
    router.add_post(r"/admin/users/{user_id:\d+}/relationships", users_declare_relationship)
    router.add_get("/admin/organisations", organisations_page)
    router.add_post("/admin/organisations", organisations_create)
    router.add_post(r"/admin/organisations/{org_id:\d+}/categories", organisations_categories)
    router.add_get("/admin/outbox", outbox_page)


# ---- template helpers ----------------------------------------------------------------------


def label(code: str | None, vocabulary: str) -> str:
    """The translated label of a catalogue ``code`` (the code itself when it is unknown)."""
    if code is None:
        return ""
    text = VOCABULARIES[vocabulary].get(code)
    return _(text) if text else code


def choices(vocabulary: str) -> list[tuple[str, str]]:
    """``(code, translated label)`` pairs for a select or a list of checkboxes."""
    return [(code, _(text)) for code, text in VOCABULARIES[vocabulary].items()]


def format_yuan(value: Decimal | None) -> str:
    if value is None:
        return ""
    return _("%(amount)s yuan", amount=f"{value:,.2f}")


def render(
    request: web.Request, template: str, values: dict[str, Any], status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, template_context(request, **values), status=status
    )
    # Pages carry personal data (and sometimes a revealed ID number): never cache them.
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def safe_next(value: str | None, default: str = "/cases") -> str:
    """Only a local path: ``/x`` but not ``//host`` (or ``/\\host``, which browsers treat alike)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def translated(exc: DomainError) -> str:
    return i18n.translate(exc.message, exc.params)


# ---- form helpers --------------------------------------------------------------------------


def text_field(form: Form, name: str, max_length: int | None = None, what: str = "") -> str:
    value = form.get(name, "")
    value = value.strip() if isinstance(value, str) else ""
    if max_length is not None and len(value) > max_length:
        raise Invalid(
            N_("“%(field)s” is too long (at most %(n)s characters)."),
            code="too_long",
            field=_(what) if what else name,
            n=max_length,
        )
    return value


MAX_ID = 2**31 - 1  # the database's integer keys; a larger number names nothing


def as_id(value: str) -> int | None:
    """A positive database id from user input, or None (``str.isdigit`` would also accept
    characters such as "²" that ``int`` refuses)."""
    if re.fullmatch(r"[0-9]{1,10}", value) and 0 < int(value) <= MAX_ID:
        return int(value)
    return None


def int_field(form: Form, name: str) -> int | None:
    return as_id(text_field(form, name))


def list_field(form: Form, name: str) -> list[str]:
    return [v for v in form.getall(name, []) if isinstance(v, str)]


def parse_amount(raw: str) -> Decimal | None:
    cleaned = raw.replace(",", "").replace("，", "").replace("元", "").replace("¥", "").strip()
    if not cleaned:
        return None
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise Invalid(
            N_("Write the claim amount in yuan, for example 3000 or 3000.50."),
            code="invalid_amount",
        )
    if abs(amount) >= Decimal(10) ** 12:
        raise Invalid(N_("The claim amount is too large."), code="invalid_amount")
    return amount.quantize(Decimal("0.01"))


def route_int(request: web.Request, name: str) -> int:
    value = as_id(request.match_info[name])
    if value is None:
        raise web.HTTPNotFound()
    return value


# ---- sign-in, sign-out, language -----------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    return redirect("/cases" if current_user(request) else "/login")


async def login_form(request: web.Request) -> web.StreamResponse:
    next_path = safe_next(request.query.get("next"))
    if current_user(request) is not None:
        return redirect(next_path)
    return render(
        request,
        "login.html",
        {
            "next": next_path,
            "username": "",
            "error": None,
            "max_failures": settings(request).login_max_failures,
        },
    )


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = text_field(form, "username")[:80]
    password = form.get("password", "")
    password = password if isinstance(password, str) else ""
    next_path = safe_next(text_field(form, "next"))
    config = settings(request)
    try:
        async with transaction(request) as session:
            user = await accounts.authenticate(
                session,
                actor(request),
                username,
                password,
                max_failures=config.login_max_failures,
                lockout=dt.timedelta(seconds=config.login_lockout_s),
            )
            issued = await accounts.open_session(
                session,
                user,
                max_age=dt.timedelta(seconds=config.session_max_age_s),
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
            )
    except AuthenticationFailed as exc:
        return render(
            request,
            "login.html",
            {
                "next": next_path,
                "username": username,
                "error": i18n.translate(exc.message, exc.params, config.timezone),
                "max_failures": config.login_max_failures,
                "request_path": "/login",
            },
            status=401,
        )
    response = redirect(next_path)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        httponly=True,
        samesite="Lax",
        secure=cookie_secure(request),
        max_age=config.session_max_age_s,
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with transaction(request) as session:
            await accounts.close_session(session, actor(request), token)
    response = redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def set_language(request: web.Request) -> web.StreamResponse:
    locale = i18n.normalise_locale(request.match_info["locale"], settings(request).default_locale)
    response = redirect(safe_next(request.query.get("next"), default="/"))
    response.set_cookie(
        LOCALE_COOKIE,
        locale,
        max_age=LOCALE_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=cookie_secure(request),
        path="/",
    )
    return response


# ---- the case register ---------------------------------------------------------------------


async def case_list(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    filters = {
        key: request.query.get(key, "").strip()
        for key in ("status", "category", "channel", "mediator", "q")
    }
    filters["q"] = filters["q"][:100]
    query = access.visible_cases(select(Case), user)
    if filters["status"] in lifecycle.STATUS_LABELS:
        query = query.where(Case.status == filters["status"])
    if filters["category"] in DISPUTE_CATEGORIES:
        query = query.where(Case.category == filters["category"])
    if filters["channel"] in INTAKE_CHANNELS:
        query = query.where(Case.channel == filters["channel"])
    can_filter_mediator = user.role in access.ADMIN_ROLES
    if can_filter_mediator and filters["mediator"] == "none":
        query = query.where(Case.mediator_id.is_(None))
    elif can_filter_mediator and as_id(filters["mediator"]) is not None:
        query = query.where(Case.mediator_id == as_id(filters["mediator"]))
    if filters["q"]:
        q = filters["q"]
        party_match = (
            select(Party.id)
            .where(Party.case_id == Case.id, Party.name.icontains(q, autoescape=True))
            .exists()
        )
        query = query.where(
            or_(
                Case.number.icontains(q, autoescape=True),
                Case.title.icontains(q, autoescape=True),
                party_match,
            )
        )
    async with transaction(request) as session:
        paging = await paginate(session, query, request, "/cases", filters)
        rows = (
            await session.scalars(
                query.options(raiseload(Case.parties))
                .order_by(Case.created_at.desc(), Case.id.desc())
                .offset(paging.offset)
                .limit(PAGE_SIZE)
            )
        ).all()
        mediators = await visible_mediators(session, user) if can_filter_mediator else []
    return render(
        request,
        "cases_list.html",
        {
            "cases": rows,
            "filters": filters,
            **paging.values(),
            "mediators": mediators,
            "can_filter_mediator": can_filter_mediator,
            "filtered": any(filters.values()),
        },
    )


async def visible_mediators(session: AsyncSession, user: User) -> list[User]:
    query = select(User).where(User.role == "mediator").order_by(User.organisation_id, User.id)
    if not access.is_system_admin(user):
        query = query.where(User.organisation_id == user.organisation_id)
    return list((await session.scalars(query)).all())


# ---- intake --------------------------------------------------------------------------------


def blank_party_rows(count: int = SHOWN_PARTY_ROWS) -> list[dict[str, str]]:
    defaults = ["applicant", "respondent"]
    return [
        {
            "number": str(i + 1),
            "role": defaults[i] if i < len(defaults) else "",
            "kind": "person",
            "name": "",
            "phone": "",
            "id_number": "",
            "address": "",
            "represents": "",
        }
        for i in range(count)
    ]


async def intake_organisations(session: AsyncSession, user: User) -> list[Organisation]:
    if access.is_system_admin(user):
        return list(
            (
                await session.scalars(
                    select(Organisation)
                    .where(Organisation.active.is_(True))
                    .order_by(Organisation.id)
                )
            ).all()
        )
    return [user.organisation] if user.organisation is not None else []


async def render_intake(
    request: web.Request,
    user: User,
    form: dict[str, str],
    rows: list[dict[str, str]],
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    async with transaction(request) as session:
        orgs = await intake_organisations(session, user)
    return render(
        request,
        "case_new.html",
        {
            "form": form,
            "party_rows": rows,
            "organisations": orgs,
            "error": error,
            "request_path": "/cases/new",
        },
        status=status,
    )


async def case_new_form(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.INTAKE_ROLES)
    form = {
        "channel": "party_application",
        "category": "",
        "title": "",
        "summary": "",
        "claim_amount": "",
        "referred_by": "",
        "referral_reference": "",
        "organisation": "auto",
    }
    return await render_intake(request, user, form, blank_party_rows())


def read_party_rows(form: Form) -> list[dict[str, str]]:
    """All party rows the form sent (4 without JavaScript, more when rows were added)."""
    numbers = sorted(
        {int(m.group(1)) for key in form if (m := re.match(r"^party-(\d{1,3})-", key))}
    )[:MAX_PARTY_ROWS]
    rows = []
    for position, n in enumerate(numbers):
        row = {"number": str(position + 1)}
        for name in ("role", "kind", "name", "phone", "id_number", "address", "represents"):
            value = form.get(f"party-{n}-{name}", "")
            row[name] = value.strip() if isinstance(value, str) else ""
        rows.append(row)
    return rows


def party_inputs(rows: list[dict[str, str]]) -> list[intake.PartyInput]:
    """Non-empty rows as ``PartyInput``; an agent's "represents" row number becomes the index of
    that party among the non-empty rows."""
    filled = [r for r in rows if any(r[k] for k in ("name", "phone", "id_number", "address"))]
    position = {r["number"]: i for i, r in enumerate(filled)}
    parties = []
    for row in filled:
        if not row["role"]:
            raise Invalid(
                N_("Choose a role for party %(n)s."), code="party_role_required", n=row["number"]
            )
        check_lengths(row, PARTY_LIMITS)
        parties.append(
            intake.PartyInput(
                role=row["role"],
                kind=row["kind"] or "person",
                name=row["name"],
                phone=row["phone"],
                id_number=row["id_number"],
                address=row["address"],
                represents_index=position.get(row["represents"])
                if row["role"] == "agent"
                else None,
            )
        )
    return parties


PARTY_LIMITS = {
    "name": (200, N_("Name")),
    "phone": (40, N_("Phone")),
    "address": (300, N_("Address")),
    "id_number": (40, N_("ID number")),
}
CASE_LIMITS = {
    "title": (200, N_("Title")),
    "referred_by": (200, N_("Referred by")),
    "referral_reference": (100, N_("Referral reference")),
}


def check_lengths(values: Mapping[str, str], limits: Mapping[str, tuple[int, str]]) -> None:
    for key, (limit, what) in limits.items():
        if len(values.get(key, "")) > limit:
            raise Invalid(
                N_("“%(field)s” is too long (at most %(n)s characters)."),
                code="too_long",
                field=_(what),
                n=limit,
            )


async def case_new_submit(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.INTAKE_ROLES)
    raw = await request.post()
    form = {
        key: text_field(raw, key)
        for key in (
            "channel",
            "category",
            "title",
            "summary",
            "claim_amount",
            "referred_by",
            "referral_reference",
            "organisation",
        )
    }
    rows = read_party_rows(raw) or blank_party_rows()
    shown_rows = rows + blank_party_rows(SHOWN_PARTY_ROWS)[len(rows) :]
    try:
        check_lengths(form, CASE_LIMITS)
        if form["channel"] in REFERRAL_CHANNELS and not form["referral_reference"]:
            raise Invalid(
                N_(
                    "Give the reference number of the referral (the court's or the "
                    "department's file number)."
                ),
                code="referral_reference_required",
            )
        data = intake.CaseInput(
            channel=form["channel"],
            category=form["category"],
            title=form["title"],
            summary=form["summary"],
            claim_amount=parse_amount(form["claim_amount"]),
            referred_by=form["referred_by"] if form["channel"] in REFERRAL_CHANNELS else "",
            referral_reference=form["referral_reference"]
            if form["channel"] in REFERRAL_CHANNELS
            else "",
            parties=party_inputs(rows),
        )
        intake.check_case_input(data)
        async with transaction(request) as session:
            organisation_id = await choose_intake_organisation(session, user, form, data)
            case = await intake.do_create_case(
                session, actor(request), cipher(request), organisation_id, data
            )
            visible = access.can_view_case(user, case)
            number, org_name = case.number, await organisation_name(session, organisation_id)
    except Invalid as exc:
        return await render_intake(request, user, form, shown_rows, translated(exc), status=422)
    if visible:
        return redirect(f"/cases/{case.id}")
    return render(
        request,
        "case_sent.html",
        {
            "message": _(
                "Case %(number)s has been registered and sent to %(organisation)s, which "
                "takes this kind of dispute.",
                number=number,
                organisation=org_name,
            ),
            "request_path": "/cases/new",
        },
        status=201,
    )


async def organisation_name(session: AsyncSession, organisation_id: int) -> str:
    return (await organisations.get_organisation(session, organisation_id)).name


async def choose_intake_organisation(
    session: AsyncSession, user: User, form: Mapping[str, str], data: intake.CaseInput
) -> int:
    choice = form.get("organisation", "auto")
    if choice and choice != "auto":
        chosen = as_id(choice)
        if chosen is None:
            raise Invalid(N_("No such organisation."), code="invalid_organisation")
        if not access.same_organisation(user, chosen):
            raise Forbidden(N_("You can only register cases for your own organisation."))
        return chosen
    org = await dispatch.organisation_for_category(session, data.category)
    if org is not None:
        return org.id
    if user.organisation_id is not None:
        return user.organisation_id
    raise Invalid(
        N_(
            "No organisation takes this category of dispute. Choose an organisation, "
            "or add a dispatch rule first."
        ),
        code="no_organisation_for_category",
    )


# ---- the case file -------------------------------------------------------------------------


async def load_case(session: AsyncSession, request: web.Request, user: User) -> Case:
    case = await intake.get_case(session, route_int(request, "case_id"))
    access.require(access.can_view_case(user, case))
    return case


async def case_detail(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(session, request, user)
        await record(
            session,
            actor(request),
            AuditAction.CASE_OPENED,
            object_type="case",
            object_id=case.id,
            case_id=case.id,
            organisation_id=case.organisation_id,
        )
        values = await case_page_values(session, request, user, case)
    done = request.query.get("done", "")
    values["notice"] = _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None
    return render(request, "case_detail.html", values)


async def case_page_values(
    session: AsyncSession,
    request: web.Request,
    user: User,
    case: Case,
    *,
    revealed: dict[int, str] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    hearing_form: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``case_detail.html`` shows, read inside the caller's transaction."""
    parties = list(case.parties)
    party_names = {p.id: p.name for p in parties}
    can_manage = access.can_manage_case(user, case)
    options = await dispatch.suggest_mediators(session, cipher(request), case) if can_manage else []
    route_targets: list[Organisation] = []
    can_route = (
        can_manage and user.role in access.ADMIN_ROLES and case.status in ("accepted", "notified")
    )
    if can_route:
        route_targets = list(
            (
                await session.scalars(
                    select(Organisation)
                    .where(Organisation.active.is_(True), Organisation.id != case.organisation_id)
                    .order_by(Organisation.id)
                )
            ).all()
        )
    order = list(lifecycle.STATUS_LABELS)
    targets = sorted(lifecycle.allowed_targets(case.status), key=order.index)
    history = await case_history(session, case, party_names)
    can_progress = access.can_progress_case(user, case)
    hearing_values = (
        await hearing_section_values(session, request, user, case, hearing_form)
        if can_progress
        else {"hearings": [], "schedulable": False}
    )
    return {
        **hearing_values,
        "agreements": await agreement_pages.case_summary(session, case),
        "case": case,
        "parties": parties,
        "party_names": party_names,
        "principals": [p for p in parties if p.role != "agent"],
        "revealed": revealed or {},
        "can_reveal": access.can_reveal_id_numbers(user, case),
        "can_manage": can_manage,
        "can_progress": can_progress,
        "can_route": can_route,
        "route_targets": route_targets,
        "targets": targets,
        "reason_required": lifecycle.REASON_REQUIRED,
        "mediator_options": options,
        "assignable": case.status in lifecycle.ACTIVE_STATES,
        "history": history,
        "errors": errors or {},
        "values": values or {},
        "notice": None,
        "request_path": f"/cases/{case.id}",
    }


async def case_history(
    session: AsyncSession, case: Case, party_names: Mapping[int, str]
) -> list[dict[str, Any]]:
    entries = list(
        (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.case_id == case.id)
                .order_by(AuditEntry.seq.desc())
            )
        ).all()
    )
    usernames = {e.actor_label for e in entries if e.actor_type == "user"}
    user_ids: set[int] = set()
    org_ids: set[int] = set()
    for entry in entries:
        details = entry.details_dict()
        for key in ("mediator_id", "previous_mediator_id", "recused_mediator_id", "replacement_id"):
            if isinstance(details.get(key), int):
                user_ids.add(details[key])
        for key in ("from_organisation", "to_organisation"):
            if isinstance(details.get(key), int):
                org_ids.add(details[key])
    names_by_username: dict[str, str] = {}
    names_by_id: dict[int, str] = {}
    if usernames or user_ids:
        for uid, username, display in (
            await session.execute(
                select(User.id, User.username, User.display_name).where(
                    or_(User.username.in_(usernames), User.id.in_(user_ids))
                )
            )
        ).all():
            names_by_username[username] = display
            names_by_id[uid] = display
    org_names: dict[int, str] = {}
    if org_ids:
        org_names = {
            oid: name
            for oid, name in (
                await session.execute(
                    select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))
                )
            ).all()
        }
    rows: list[dict[str, Any]] = []
    for entry in entries:
        if entry.actor_type == "user":
            who = names_by_username.get(entry.actor_label, entry.actor_label)
        elif entry.actor_type == "system":
            who = _("System")
        else:
            who = entry.actor_label or _("Party")
        previous = rows[-1] if rows else None
        if (
            entry.action == AuditAction.CASE_OPENED
            and previous is not None
            and previous["action"] == entry.action
            and previous["actor"] == who
        ):
            # Every reading is kept in the trail; on the page, one person's reading after
            # reading is one line, or the history would be nothing else.
            previous["count"] += 1
            previous["summary"] = _("%(n)s times in a row", n=previous["count"])
            continue
        rows.append(
            {
                "at": entry.at,
                "actor": who,
                "action": entry.action,
                "summary": summarise(entry, party_names, names_by_id, org_names),
                "count": 1,
            }
        )
    return rows


def summarise(
    entry: AuditEntry,
    party_names: Mapping[int, str],
    user_names: Mapping[int, str],
    org_names: Mapping[int, str],
) -> str:
    """One readable line about what an audit row recorded (in the current language)."""
    d = entry.details_dict()

    def user_name(key: str) -> str:
        value = d.get(key)
        return user_names.get(value, str(value)) if isinstance(value, int) else _("nobody")

    action = entry.action
    if action == AuditAction.CASE_CREATED:
        return _(
            "Case number %(number)s, %(parties)s parties",
            number=d.get("number", ""),
            parties=d.get("parties", ""),
        )
    if action == AuditAction.CASE_TRANSITIONED:
        text = _(
            "From “%(source)s” to “%(target)s”.",
            source=label(d.get("from"), "status"),
            target=label(d.get("to"), "status"),
        )
        if d.get("reason"):
            text += " " + _("Reason: %(reason)s", reason=d["reason"])
        return text
    if action == AuditAction.CASE_ASSIGNED:
        return _("Mediator: %(name)s", name=user_name("mediator_id"))
    if action == AuditAction.ASSIGNMENT_REFUSED:
        return _(
            "Mediator: %(name)s. Reason: %(reason)s",
            name=user_name("mediator_id"),
            reason=d.get("reason", ""),
        )
    if action == AuditAction.RECUSAL_RECORDED:
        return _(
            "Withdrawn: %(name)s; replaced by: %(replacement)s. Reason: %(reason)s",
            name=user_name("recused_mediator_id"),
            replacement=user_name("replacement_id"),
            reason=d.get("reason", ""),
        )
    if action == AuditAction.CASE_ROUTED:
        source, target = d.get("from_organisation"), d.get("to_organisation")
        return _(
            "From %(source)s to %(target)s",
            source=org_names.get(source, str(source)) if isinstance(source, int) else "",
            target=org_names.get(target, str(target)) if isinstance(target, int) else "",
        )
    if action == AuditAction.PARTY_ADDED:
        return _(
            "%(role)s: %(name)s", role=label(d.get("role"), "party_role"), name=d.get("name", "")
        )
    if action == AuditAction.ID_NUMBER_REVEALED:
        party_id = as_id(entry.object_id) or -1
        return _("ID number of %(name)s", name=party_names.get(party_id, entry.object_id))
    if action == AuditAction.NOTIFICATION_QUEUED:
        return _(
            "%(channel)s to %(recipient)s",
            channel=label(d.get("channel"), "notification_channel"),
            recipient=d.get("recipient", ""),
        )
    return ""


async def render_case(
    request: web.Request,
    user: User,
    *,
    status: int,
    revealed: dict[int, str] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    hearing_form: dict[str, Any] | None = None,
) -> web.Response:
    async with transaction(request) as session:
        case = await load_case(session, request, user)
        page = await case_page_values(
            session,
            request,
            user,
            case,
            revealed=revealed,
            errors=errors,
            values=values,
            hearing_form=hearing_form,
        )
    return render(request, "case_detail.html", page, status=status)


def case_done(case_id: int, done: str, anchor: str) -> web.Response:
    return redirect(f"/cases/{case_id}?done={done}#{anchor}")


async def party_reveal(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    async with transaction(request) as session:
        case = await load_case(session, request, user)
        access.require(access.can_reveal_id_numbers(user, case))
        party = await intake.get_party(session, case, route_int(request, "party_id"))
        number = await intake.do_reveal_id_number(
            session, actor(request), cipher(request), party, case
        )
        page = await case_page_values(session, request, user, case, revealed={party.id: number})
    return render(request, "case_detail.html", page)


async def party_add(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    form = await request.post()
    values = {
        key: text_field(form, key)
        for key in ("role", "kind", "name", "phone", "id_number", "address", "represents")
    }
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_manage_case(user, case))
            check_lengths(values, PARTY_LIMITS)
            data = intake.PartyInput(
                role=values["role"],
                kind=values["kind"] or "person",
                name=values["name"],
                phone=values["phone"],
                id_number=values["id_number"],
                address=values["address"],
            )
            represents = as_id(values["represents"])
            await intake.do_add_party(
                session, actor(request), cipher(request), case, data, represents_id=represents
            )
    except Invalid as exc:
        return await render_case(
            request, user, status=422, errors={"party": translated(exc)}, values=values
        )
    return case_done(case.id, "party", "parties")


async def case_transition(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    form = await request.post()
    target = text_field(form, "target")
    reason = text_field(form, "reason", 2000, N_("Reason"))
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_progress_case(user, case))
            await lifecycle.do_transition(session, actor(request), case, target, reason)
    except Invalid as exc:
        return await render_case(
            request,
            user,
            status=422,
            errors={"lifecycle": translated(exc)},
            values={"target": target, "reason": reason},
        )
    return case_done(case.id, "transitioned", "lifecycle")


async def case_assign(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    form = await request.post()
    mediator_id = int_field(form, "mediator_id")
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_manage_case(user, case))
            if mediator_id is None:
                raise Invalid(N_("Choose a mediator."), code="mediator_required")
            await dispatch.do_assign_mediator(
                session, actor(request), cipher(request), case, mediator_id
            )
    except dispatch.AssignmentRefused as exc:
        # The refusal was audited and committed by the unit of work; show why, on the case page.
        return await render_case(request, user, status=409, errors={"assign": translated(exc)})
    except Invalid as exc:
        return await render_case(request, user, status=422, errors={"assign": translated(exc)})
    return case_done(case.id, "assigned", "dispatch")


async def case_recusal(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    form = await request.post()
    party_id = int_field(form, "party_id")
    replacement_id = int_field(form, "replacement_id")
    reason = text_field(form, "reason", 2000, N_("Reason"))
    values = {
        "party_id": str(party_id or ""),
        "replacement_id": str(replacement_id or ""),
        "reason": reason,
    }
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_manage_case(user, case))
            case, _recusal = await dispatch.do_recusal(
                session,
                actor(request),
                cipher(request),
                case,
                party_id=party_id,
                reason=reason,
                replacement_id=replacement_id,
            )
            assigned = case.mediator_id is not None
    except dispatch.AssignmentRefused as exc:
        return await render_case(
            request, user, status=409, errors={"recusal": translated(exc)}, values=values
        )
    except Invalid as exc:
        return await render_case(
            request, user, status=422, errors={"recusal": translated(exc)}, values=values
        )
    return case_done(case.id, "recusal" if assigned else "recusal_unassigned", "dispatch")


async def case_route(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.ADMIN_ROLES)
    form = await request.post()
    organisation_id = int_field(form, "organisation_id")
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_manage_case(user, case))
            if organisation_id is None:
                raise Invalid(
                    N_("Choose the organisation to send the case to."), code="organisation_required"
                )
            case = await dispatch.do_route_case(session, actor(request), case, organisation_id)
            visible = access.can_view_case(user, case)
            number, org_name = case.number, await organisation_name(session, organisation_id)
    except Invalid as exc:
        return await render_case(request, user, status=422, errors={"route": translated(exc)})
    if visible:
        return case_done(case.id, "routed", "dispatch")
    return render(
        request,
        "case_sent.html",
        {
            "message": _(
                "Case %(number)s now belongs to %(organisation)s.",
                number=number,
                organisation=org_name,
            ),
            "request_path": "/cases",
        },
    )


# ---- the case file: hearings and their links -----------------------------------------------

OBSERVER_ROWS = 3  # observer rows the form always shows, so it works without JavaScript
DEFAULT_HEARING_TIME = "09:30"
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TIME_RE = re.compile(r"([0-9]{2}):([0-9]{2})(?::[0-9]{2}(?:\.[0-9]+)?)?")
# Text messages are written in the platform's language, not in the language the staff member
# happens to read the page in: the party never chose that one.
SMS_INVITATION = N_(
    "%(organisation)s: the online mediation hearing of your case %(number)s is on %(time)s "
    "(%(zone)s). Shortly before it starts, open your own link in a phone or computer browser: "
    "%(link)s This link is only for you; do not pass it on to anyone."
)
SMS_NEW_LINK = N_(
    "%(organisation)s: your new link for the online mediation hearing of case %(number)s on "
    "%(time)s (%(zone)s): %(link)s Earlier links no longer work. This link is only for you; do "
    "not pass it on to anyone."
)
SMS_QUESTIONS = N_("Questions: %(phone)s")


@contextmanager
def language(locale: str) -> Iterator[None]:
    """Translate in ``locale`` for the duration of the block, then go back to the request's."""
    previous = i18n.current_locale()
    i18n.activate(locale)
    try:
        yield
    finally:
        i18n.activate(previous)


def blank_hearing_form(zone: ZoneInfo) -> dict[str, Any]:
    tomorrow = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    return {
        "date": tomorrow.isoformat(),
        "time": DEFAULT_HEARING_TIME,
        "duration": "60",
        "title": "",
        "record": False,
        "clerk_ids": [],
        "observers": [{"name": "", "role": "", "side": NEUTRAL} for _i in range(OBSERVER_ROWS)],
    }


def read_hearing_form(form: Form) -> dict[str, Any]:
    """The scheduling form as sent, trimmed (kept as typed, to show it again on an error)."""
    observers = []
    for n in range(OBSERVER_ROWS):
        row = {key: text_field(form, f"observer-{n}-{key}") for key in ("name", "role", "side")}
        observers.append(row)
    return {
        "date": text_field(form, "date")[:20],
        "time": text_field(form, "time")[:20],
        "duration": text_field(form, "duration")[:10],
        "title": text_field(form, "title"),
        "record": form.get("record") == "yes",
        "clerk_ids": [v for v in list_field(form, "clerk_ids") if as_id(v) is not None],
        "observers": observers,
    }


def local_to_utc(day: str, time: str, zone: ZoneInfo) -> dt.datetime:
    """The instant a date and wall-clock time typed in ``zone`` name, as an aware UTC datetime.
    A time the clocks skip (daylight saving, in zones that have it) is refused, not guessed."""
    time_match = TIME_RE.fullmatch(time)
    try:
        if not DATE_RE.fullmatch(day) or time_match is None:
            raise ValueError
        local = dt.datetime.combine(
            dt.date.fromisoformat(day),
            dt.time(int(time_match.group(1)), int(time_match.group(2))),
            tzinfo=zone,
        )
        moment = local.astimezone(dt.UTC)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        raise Invalid(
            N_("Give the date and the time of the hearing, for example 2026-12-01 and 09:30."),
            code="invalid_time",
        ) from None
    if moment.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise Invalid(
            N_(
                "This time does not exist in the local time zone (the clocks change); choose another."
            ),
            code="nonexistent_time",
        )
    return moment


def hearing_input(values: Mapping[str, Any], zone: ZoneInfo) -> hearing_actions.HearingInput:
    """``HearingInput`` from the form; the domain checks the rest (``check_hearing_input``)."""
    scheduled_at = local_to_utc(values["date"], values["time"], zone)
    if not re.fullmatch(r"[0-9]{1,4}", values["duration"]):
        raise Invalid(N_("Give the duration in minutes, for example 60."), code="invalid_duration")
    observers = tuple(
        hearing_actions.ObserverInput(
            name=row["name"], role=row["role"] or "observer", side=row["side"] or NEUTRAL
        )
        for row in values["observers"]
        if row["name"]
    )
    return hearing_actions.HearingInput(
        scheduled_at=scheduled_at,
        duration_minutes=int(values["duration"]),
        title=values["title"],
        record=bool(values["record"]),
        observers=observers,
        clerk_ids=tuple(int(v) for v in values["clerk_ids"]),
    )


def invitation_url(config: Settings, hearing: Hearing, participant: HearingParticipant) -> str:
    """A fresh link at the participant's current version. Issuing writes nothing, so every
    link issued since the last "new link" works until the hearing's links expire."""
    return config.base_url + "/h/" + issue_invitation(config.secret_key, hearing, participant)


def notification_sender(session: AsyncSession) -> Sender:
    """Where notifications go: the outbox, in the request's transaction (see ``cases.notifications``
    for why a real gateway delivers from there rather than being called here)."""
    return OutboxSender(session)


def invitation_text(
    config: Settings, case: Case, hearing: Hearing, link: str, *, renewed: bool
) -> str:
    """The text message with a participant's link, in the platform's default language."""
    zone = ZoneInfo(config.timezone)
    with language(config.default_locale):
        text = _(
            SMS_NEW_LINK if renewed else SMS_INVITATION,
            organisation=case.organisation.name,
            number=case.number,
            time=format_local(hearing.scheduled_at, zone),
            zone=i18n.zone_label(config.timezone),
            link=link,
        )
        if case.organisation.phone:
            text += " " + _(SMS_QUESTIONS, phone=case.organisation.phone)
    return text


async def send_invitations(
    session: AsyncSession,
    request: web.Request,
    case: Case,
    hearing: Hearing,
    participants: Iterable[HearingParticipant],
    *,
    renewed: bool = False,
) -> int:
    """Text each party and agent among ``participants`` who has a phone number their own link;
    everyone else gets theirs from the staff (the case page shows it). Returns how many."""
    config = settings(request)
    sender = notification_sender(session)
    phones = {p.id: p.phone.strip() for p in case.parties}
    sent = 0
    for participant in participants:
        phone = phones.get(participant.party_id or 0, "")
        if participant.kind not in (PARTY, AGENT) or not phone:
            continue
        link = invitation_url(config, hearing, participant)
        notification = Notification(
            channel=SMS,
            recipient=phone,
            body=invitation_text(config, case, hearing, link, renewed=renewed),
            case_id=case.id,
            hearing_id=hearing.id,
            participant_id=participant.id,
        )
        await do_notify(session, actor(request), sender, notification, case=case)
        sent += 1
    return sent


def may_see_link(user: User, hearing: Hearing, participant: HearingParticipant) -> bool:
    """Who sees a participant's link on the case page. A staff participant's link is theirs
    alone (whoever opens it runs the hearing as them), so only they see it; the links of
    parties, agents and observers are handed out by the office, so the office sees them. Nobody
    needs a link to an ended hearing."""
    if hearing.status == ENDED:
        return False
    if participant.user_id is not None:
        return participant.user_id == user.id
    return True


async def hearing_section_values(
    session: AsyncSession,
    request: web.Request,
    user: User,
    case: Case,
    form: dict[str, Any] | None,
) -> dict[str, Any]:
    """The "Hearings" section of the case page: each hearing with its participants (state,
    link where ``may_see_link``, when their last text message was queued) and the form."""
    config = settings(request)
    found = await hearing_actions.hearings_of_case(session, case.id)
    last_sms: dict[int, dt.datetime] = {}
    if found:
        for participant_id, created_at in (
            await session.execute(
                select(OutboxMessage.participant_id, OutboxMessage.created_at)
                .where(OutboxMessage.hearing_id.in_([h.id for h in found]))
                .order_by(OutboxMessage.created_at)
            )
        ).all():
            if participant_id is not None:
                last_sms[participant_id] = created_at
    phones = {p.id: p.phone for p in case.parties}
    rows = [
        {
            "hearing": hearing,
            "participants": [
                {
                    "participant": p,
                    "phone": phones.get(p.party_id or 0, ""),
                    "link": invitation_url(config, hearing, p)
                    if may_see_link(user, hearing, p)
                    else None,
                    "last_sms": last_sms.get(p.id),
                }
                for p in hearing.participants
            ],
        }
        for hearing in found
    ]
    clerks = list(
        (
            await session.scalars(
                select(User)
                .where(
                    User.role == "clerk",
                    User.active.is_(True),
                    User.organisation_id == case.organisation_id,
                )
                .order_by(User.id)
            )
        ).all()
    )
    return {
        "hearings": rows,
        "schedulable": case.status in hearing_actions.SCHEDULABLE_CASE_STATES
        and case.mediator_id is not None,
        "hearing_form": form or blank_hearing_form(ZoneInfo(config.timezone)),
        "clerk_options": clerks,
        "zone_label": i18n.zone_label(config.timezone),
        "min_duration": hearing_actions.MIN_DURATION_MINUTES,
        "max_duration": hearing_actions.MAX_DURATION_MINUTES,
    }


async def hearing_schedule(request: web.Request) -> web.StreamResponse:
    """Schedule a hearing from the case page, issue every participant's link and text the
    parties and agents theirs — all in one transaction, so a hearing never exists without its
    notifications, nor the other way round."""
    user = require_user(request)
    form = read_hearing_form(await request.post())
    zone = ZoneInfo(settings(request).timezone)
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_progress_case(user, case))
            data = hearing_input(form, zone)
            hearing = await hearing_actions.do_schedule_hearing(session, actor(request), case, data)
            await send_invitations(session, request, case, hearing, hearing.participants)
            case_id, hearing_id = case.id, hearing.id
    except (Invalid, Conflict) as exc:
        return await render_case(
            request,
            user,
            status=409 if isinstance(exc, Conflict) else 422,
            errors={"hearing": translated(exc)},
            hearing_form=form,
        )
    return case_done(case_id, "hearing_scheduled", f"hearing-{hearing_id}")


async def hearing_new_link(request: web.Request) -> web.StreamResponse:
    """ "New link": every earlier link of the participant stops working (``do_revoke_invitation``,
    audited), a new one is issued and, for a party or agent with a phone, sent again."""
    user = require_user(request)
    hearing_id = route_int(request, "hearing_id")
    participant_id = route_int(request, "participant_id")
    try:
        async with transaction(request) as session:
            case = await load_case(session, request, user)
            access.require(access.can_progress_case(user, case))
            hearing = await hearing_actions.get_hearing(session, hearing_id)
            participant = next((p for p in hearing.participants if p.id == participant_id), None)
            if hearing.case_id != case.id or participant is None:
                raise web.HTTPNotFound()
            if hearing.status == ENDED:
                raise Conflict(
                    N_("This hearing has ended; its links cannot be renewed."),
                    code="hearing_ended",
                )
            await do_revoke_invitation(session, actor(request), participant)
            await send_invitations(session, request, case, hearing, [participant], renewed=True)
            case_id = case.id
    except Conflict as exc:
        return await render_case(request, user, status=409, errors={"hearings": translated(exc)})
    return case_done(case_id, "link_renewed", f"hearing-{hearing_id}")


# ---- administration: dispatch rules --------------------------------------------------------


async def render_dispatch(
    request: web.Request,
    *,
    error: str | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    async with transaction(request) as session:
        rules = list(
            (
                await session.scalars(
                    select(DispatchRule).order_by(
                        DispatchRule.category, DispatchRule.priority, DispatchRule.id
                    )
                )
            ).all()
        )
        orgs = list(
            (
                await session.scalars(
                    select(Organisation)
                    .where(Organisation.active.is_(True))
                    .order_by(Organisation.id)
                )
            ).all()
        )
    done = request.query.get("done", "")
    return render(
        request,
        "admin_dispatch.html",
        {
            "rules": rules,
            "organisations": orgs,
            "error": error,
            "values": values or {"priority": "100"},
            "notice": _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None,
            "request_path": "/admin/dispatch",
        },
        status=status,
    )


async def dispatch_page(request: web.Request) -> web.StreamResponse:
    require_user(request, access.ADMIN_ROLES)
    return await render_dispatch(request)


async def dispatch_add(request: web.Request) -> web.StreamResponse:
    require_user(request, {"system_admin"})
    form = await request.post()
    values = {key: text_field(form, key) for key in ("category", "organisation_id", "priority")}
    try:
        organisation_id = as_id(values["organisation_id"])
        if organisation_id is None:
            raise Invalid(N_("Choose the organisation."), code="organisation_required")
        priority_raw = values["priority"] or "100"
        if not re.fullmatch(r"[0-9]{1,6}", priority_raw) or int(priority_raw) > 100000:
            raise Invalid(
                N_("The priority is a whole number from 0 to 100000."), code="invalid_priority"
            )
        async with transaction(request) as session:
            await dispatch.do_add_rule(
                session, actor(request), values["category"], organisation_id, int(priority_raw)
            )
    except (Invalid, Conflict) as exc:
        return await render_dispatch(
            request,
            error=translated(exc),
            values=values,
            status=409 if isinstance(exc, Conflict) else 422,
        )
    return redirect("/admin/dispatch?done=rule_added")


async def dispatch_delete(request: web.Request) -> web.StreamResponse:
    require_user(request, {"system_admin"})
    async with transaction(request) as session:
        await dispatch.do_remove_rule(session, actor(request), route_int(request, "rule_id"))
    return redirect("/admin/dispatch?done=rule_removed")


# ---- administration: accounts --------------------------------------------------------------


def creatable_roles(user: User) -> list[str]:
    if access.is_system_admin(user):
        return list(STAFF_ROLES)
    return list(ORG_ADMIN_CREATABLE_ROLES)


async def render_users(
    request: web.Request,
    user: User,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    async with transaction(request) as session:
        query = select(User).order_by(User.organisation_id, User.role, User.id)
        if not access.is_system_admin(user):
            query = query.where(User.organisation_id == user.organisation_id)
        users = list((await session.scalars(query)).all())
        mediator_ids = [u.id for u in users if u.role == "mediator"]
        relationships: dict[int, list[DeclaredRelationship]] = {}
        if mediator_ids:
            for rel in (
                await session.scalars(
                    select(DeclaredRelationship)
                    .where(DeclaredRelationship.mediator_id.in_(mediator_ids))
                    .order_by(DeclaredRelationship.id)
                )
            ).all():
                relationships.setdefault(rel.mediator_id, []).append(rel)
        orgs = (
            list((await session.scalars(select(Organisation).order_by(Organisation.id))).all())
            if access.is_system_admin(user)
            else []
        )
    done = request.query.get("done", "")
    return render(
        request,
        "admin_users.html",
        {
            "users": users,
            "relationships": relationships,
            "organisations": orgs,
            "roles": creatable_roles(user),
            "errors": errors or {},
            "values": values or {"role": "mediator", "categories": []},
            "notice": _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None,
            "request_path": "/admin/users",
        },
        status=status,
    )


async def users_page(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.ADMIN_ROLES)
    return await render_users(request, user)


async def users_create(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.ADMIN_ROLES)
    form = await request.post()
    values: dict[str, Any] = {
        key: text_field(form, key)
        for key in ("username", "display_name", "role", "organisation_id", "phone", "id_number")
    }
    values["categories"] = list_field(form, "categories")
    password = form.get("password", "")
    password = password if isinstance(password, str) else ""
    try:
        check_lengths(values, {"display_name": (100, N_("Full name")), "phone": (40, N_("Phone"))})
        if values["role"] not in creatable_roles(user):
            raise Invalid(
                N_("You cannot create an account with this role."), code="role_not_allowed"
            )
        if access.is_system_admin(user):
            organisation_id = as_id(values["organisation_id"])
        else:
            organisation_id = user.organisation_id
        async with transaction(request) as session:
            await accounts.create_user(
                session,
                actor(request),
                username=values["username"],
                password=password,
                display_name=values["display_name"],
                role=values["role"],
                organisation_id=organisation_id,
                phone=values["phone"],
                categories=values["categories"] if values["role"] == "mediator" else [],
                cipher=cipher(request),
                id_number=values["id_number"],
            )
    except (Invalid, Conflict) as exc:
        return await render_users(
            request,
            user,
            errors={"create": translated(exc)},
            values=values,
            status=409 if isinstance(exc, Conflict) else 422,
        )
    return redirect("/admin/users?done=user_created")


async def users_declare_relationship(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.ADMIN_ROLES)
    form = await request.post()
    mediator_id = route_int(request, "user_id")
    values = {
        key: text_field(form, key) for key in ("person_name", "relationship", "phone", "id_number")
    }
    try:
        check_lengths(
            values,
            {
                "person_name": (200, N_("Person's name")),
                "phone": (40, N_("Phone")),
                "relationship": (200, N_("Relationship")),
            },
        )
        async with transaction(request) as session:
            mediator = await accounts.get_user(session, mediator_id)
            access.require(
                mediator.role == "mediator"
                and access.same_organisation(user, mediator.organisation_id)
            )
            await dispatch.do_declare_relationship(
                session,
                actor(request),
                cipher(request),
                mediator,
                person_name=values["person_name"],
                relationship_text=values["relationship"],
                phone=values["phone"],
                id_number=values["id_number"],
            )
    except Invalid as exc:
        values["mediator_id"] = str(mediator_id)
        return await render_users(
            request,
            user,
            errors={f"rel-{mediator_id}": translated(exc)},
            values={"role": "mediator", "categories": [], "relationship": values},
            status=422,
        )
    return redirect("/admin/users?done=relationship")


# ---- administration: organisations ---------------------------------------------------------


async def render_organisations(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    async with transaction(request) as session:
        orgs = list((await session.scalars(select(Organisation).order_by(Organisation.id))).all())
    done = request.query.get("done", "")
    return render(
        request,
        "admin_organisations.html",
        {
            "organisations": orgs,
            "errors": errors or {},
            "values": values or {"kind": "peoples_committee", "categories": []},
            "notice": _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None,
            "request_path": "/admin/organisations",
        },
        status=status,
    )


async def organisations_page(request: web.Request) -> web.StreamResponse:
    require_user(request, {"system_admin"})
    return await render_organisations(request)


async def organisations_create(request: web.Request) -> web.StreamResponse:
    require_user(request, {"system_admin"})
    form = await request.post()
    values: dict[str, Any] = {
        key: text_field(form, key) for key in ("name", "short_name", "kind", "address", "phone")
    }
    values["categories"] = list_field(form, "categories")
    try:
        check_lengths(
            values,
            {
                "name": (200, N_("Organisation name")),
                "address": (300, N_("Address")),
                "phone": (40, N_("Phone")),
            },
        )
        async with transaction(request) as session:
            await organisations.do_create_organisation(
                session,
                actor(request),
                name=values["name"],
                short_name=values["short_name"],
                kind=values["kind"],
                categories=values["categories"],
                address=values["address"],
                phone=values["phone"],
            )
    except (Invalid, Conflict) as exc:
        return await render_organisations(
            request,
            errors={"create": translated(exc)},
            values=values,
            status=409 if isinstance(exc, Conflict) else 422,
        )
    return redirect("/admin/organisations?done=organisation_created")


async def organisations_categories(request: web.Request) -> web.StreamResponse:
    require_user(request, {"system_admin"})
    form = await request.post()
    org_id = route_int(request, "org_id")
    categories = list_field(form, "categories")
    try:
        async with transaction(request) as session:
            org = await organisations.get_organisation(session, org_id)
            await organisations.do_update_categories(session, actor(request), org, categories)
    except Invalid as exc:
        return await render_organisations(
            request, errors={f"org-{org_id}": translated(exc)}, status=422
        )
    return redirect("/admin/organisations?done=categories")


# ---- administration: the notification outbox -----------------------------------------------


async def outbox_page(request: web.Request) -> web.StreamResponse:
    """Every notification handed to the sender, newest first: all of them for the system
    administrator, those about their organisation's cases for an organisation administrator."""
    user = require_user(request, access.ADMIN_ROLES)
    query = select(OutboxMessage, Case.id, Case.number).outerjoin(
        Case, Case.id == OutboxMessage.case_id
    )
    if not access.is_system_admin(user):
        query = query.where(Case.organisation_id == user.organisation_id)
    async with transaction(request) as session:
        paging = await paginate(session, query, request, "/admin/outbox", {})
        rows = [
            {"message": message, "case_id": case_id, "case_number": number}
            for message, case_id, number in (
                await session.execute(
                    query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
                    .offset(paging.offset)
                    .limit(PAGE_SIZE)
                )
            ).all()
        ]
    return render(
        request,
        "admin_outbox.html",
        {"rows": rows, **paging.values(), "request_path": "/admin/outbox"},
    )
