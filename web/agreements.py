"""Agreement pages.

- ``GET /cases/{id}/agreements`` — staff: the structured editor with live preview, every
  version, the signers and their states, personal links, the postal route, the mediator's
  signature, the seal, the certificate of completion and the judicial confirmation package.
  Its forms post back here (CSRF); the API does the same things for programs.
- ``GET /sign/{token}`` — a signer's own page (no account): review the PDF (pdf.js), comment,
  get a one-time code, confirm it, draw the signature with a finger or mouse, sign
  (``agreement-sign.js`` calls the API with the token in ``X-Signing-Token``).
- ``GET|POST /agreements/verify`` — public: upload a PDF and learn whether it is a genuine,
  unmodified agreement of this platform, signature by signature.
- ``GET /agreements/ca.pem`` — the platform CA certificate; ``POST /api/v1/tsa`` (registered with
  the API, ``server.api.agreements``) — RFC 3161 timestamps.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDictProxy
from sqlalchemy import select

from cases import access as case_access
from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import DomainError, Forbidden, Invalid, NotFound
from cases.intake import get_case
from cases.models import Case, User
from cases.notifications import OutboxSender
from esign import agreements as actions
from esign import judicial, postal
from esign.catalogue import (
    ORDERS,
    PARTY,
    POSTAL,
    ROUTES,
    SHIPMENT_STATUSES,
    SIGNER_KINDS,
    SIGNER_STATUSES,
    STATUSES,
    VERSION_STATUSES,
    Texts,
)
from esign.links import issue_link_token, issue_review_token, read_link_token, read_review_token
from esign.models import AgreementComment, AgreementSigner
from esign.render import agreement_text
from esign.runtime import EsignRuntime
from esign.verify import verify_pdf
from web import i18n
from web.context import (
    SETTINGS,
    actor,
    client_ip,
    require_user,
    settings,
    template_context,
    transaction,
)
from web.i18n import gettext as _

ESIGN = web.AppKey("esign", EsignRuntime)
MAX_VERIFY_BYTES = 20 * 1024 * 1024

SIGN_TEXTS: dict[str, str] = {
    "loading": N_("Loading the agreement…"),
    "page_of": N_("Page %(page)s of %(pages)s"),
    "code_sent": N_("A code was sent to %(to)s."),
    "verified": N_("Identity confirmed. Now sign in the box below."),
    "empty": N_("Draw your signature first."),
    "signing": N_("Signing…"),
    "signed": N_("Thank you. You have signed the agreement."),
    "comment_sent": N_("Your comment was sent to the mediator."),
    "error": N_("Something went wrong. Please try again."),
}


def sign_url(base_url: str, token: str) -> str:
    return f"{base_url}/sign/{token}"


def review_url(base_url: str, token: str) -> str:
    return f"{base_url}/review/{token}"


def review_link_for(request: web.Request) -> Any:
    base = settings(request).base_url
    secret = settings(request).secret_key

    def link(party: Any, version: Any) -> str:
        return review_url(
            base, issue_review_token(secret, version.agreement_id, party.id, version.number)
        )

    return link


def preview_lines(text: str) -> list[tuple[str, Markup]]:
    """The template's line markup as (kind, already-escaped text) for an HTML page."""
    out: list[tuple[str, Markup]] = []
    clause = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        # The template autoescaped every value: the text is safe HTML as it stands.
        if line.startswith("## "):
            out.append(("h3", Markup(line[3:])))  # noqa: S704
        elif line.startswith("# "):
            out.append(("h2", Markup(line[2:])))  # noqa: S704
        elif line.startswith("= "):
            out.append(("centred", Markup(line[2:])))  # noqa: S704
        elif line.startswith("- "):
            clause += 1
            out.append(("p", Markup(f"{clause}. {line[2:]}")))  # noqa: S704
        else:
            out.append(("p", Markup(line)))  # noqa: S704
    return out


def sms_texts(locale: str) -> Texts:
    """Translate text messages into ``locale`` (the platform's default language), whatever the
    language of the request that sends them."""

    def texts(message: str, params: dict[str, Any]) -> str:
        previous = i18n.current_locale()
        i18n.activate(locale)
        try:
            return _(message, **params)
        finally:
            i18n.activate(previous)

    return texts


def setup(app: web.Application) -> None:
    app[ESIGN] = EsignRuntime(app[SETTINGS], sms_texts(app[SETTINGS].default_locale))
    app.router.add_get(r"/cases/{case_id:\d+}/agreements", case_agreements)
    app.router.add_post(r"/cases/{case_id:\d+}/agreements", case_agreements_post)
    app.router.add_get("/sign/{token}", sign_page)
    app.router.add_get("/review/{token}", review_page)
    app.router.add_post("/review/{token}", review_comment)
    app.router.add_get("/agreements/verify", verify_page)
    app.router.add_post("/agreements/verify", verify_upload)
    app.router.add_get("/agreements/ca.pem", ca_certificate)


def _label(vocabulary: dict[str, str], code: str) -> str:
    return _(vocabulary[code]) if code in vocabulary else code


def _render(
    request: web.Request, template: str, values: dict[str, Any], status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, template_context(request, **values), status=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- staff page ---------------------------------------------------------------------------------


def _terms_from_form(form: MultiDictProxy[Any]) -> dict[str, Any]:
    def text(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    copies_raw = text("copies").strip()
    return {
        "facts": text("facts"),
        "dispute": text("dispute"),
        "responsibilities": text("responsibilities"),
        "items": [line for line in text("items").splitlines() if line.strip()],
        "performance_manner": text("performance_manner"),
        "performance_place": text("performance_place"),
        "performance_deadline": text("performance_deadline"),
        "copies": int(copies_raw) if copies_raw.isdigit() and len(copies_raw) <= 2 else 0,
        "extra": text("extra"),
    }


async def _page_values(request: web.Request, case: Case, user: User) -> dict[str, Any]:
    base = settings(request).base_url
    secret = settings(request).secret_key
    async with transaction(request) as session:
        rows: list[dict[str, Any]] = []
        last_terms: dict[str, Any] | None = None
        for agreement in await actions.case_agreements(session, case):
            version = await actions.current_version(session, agreement)
            last_terms = version.terms
            signers = await actions.signers_of(session, version)
            shipments = {s.signer_id: s for s in await postal.shipments_of(session, agreement.id)}
            comments = list(
                await session.scalars(
                    select(AgreementComment)
                    .where(AgreementComment.agreement_id == agreement.id)
                    .order_by(AgreementComment.id)
                )
            )
            rows.append(
                {
                    "agreement": agreement,
                    "status_label": _label(STATUSES, agreement.status),
                    "route_label": _label(ROUTES, agreement.route),
                    "order_label": _label(ORDERS, agreement.signing_order),
                    "version": version,
                    "version_label": _label(VERSION_STATUSES, version.status),
                    "versions": [
                        (v, _label(VERSION_STATUSES, v.status))
                        for v in await actions.versions(session, agreement)
                    ],
                    "signers": [
                        {
                            "s": s,
                            "kind_label": _label(SIGNER_KINDS, s.kind),
                            "status_label": _label(SIGNER_STATUSES, s.status),
                            "route_label": _label(ROUTES, s.route),
                            "link": (
                                sign_url(base, issue_link_token(secret, s))
                                if s.kind == PARTY and s.route != POSTAL and s.status == "pending"
                                else ""
                            ),
                            "shipment": shipments.get(s.id),
                            "shipment_label": (
                                _label(SHIPMENT_STATUSES, shipments[s.id].status)
                                if s.id in shipments
                                else ""
                            ),
                            "may_sign": _may_sign(user, s, case),
                        }
                        for s in signers
                    ],
                    "comments": comments,
                    "deadline": judicial.deadline(agreement),
                }
            )
    can_edit = case_access.can_progress_case(user, case)
    start: dict[str, Any] = dict(last_terms) if last_terms else actions.starting_terms(case)
    return {
        "case": case,
        "rows": rows,
        "can_edit": can_edit,
        "terms": start,
        "items_text": "\n".join(start.get("items", [])),
        "order_pairs": [(k, _(v)) for k, v in ORDERS.items()],
        "error": None,
        "notice": None,
        "review_links": [],
        "today": dt.date.today().isoformat(),  # noqa: DTZ011 - a default for a date field
    }


async def case_summary(session: Any, case: Case) -> list[dict[str, Any]]:
    """The case page's short view of each agreement: its state, signatures so far, and the
    postal copies' states (for ``case_detail.html``)."""
    out = []
    for agreement in await actions.case_agreements(session, case):
        version = await actions.current_version(session, agreement)
        signers = await actions.signers_of(session, version)
        shipments = await postal.shipments_of(session, agreement.id)
        out.append(
            {
                "id": agreement.id,
                "status_label": _label(STATUSES, agreement.status),
                "route_label": _label(ROUTES, agreement.route),
                "version": version.number,
                "signed": sum(s.status == "signed" for s in signers),
                "signers": len(signers),
                "postal": [
                    (
                        next((s.name for s in signers if s.id == p.signer_id), ""),
                        _label(SHIPMENT_STATUSES, p.status),
                        p.tracking_number,
                    )
                    for p in shipments
                    if p.version_id == version.id
                ],
            }
        )
    return out


def _may_sign(user: User, signer: AgreementSigner, case: Case) -> bool:
    if signer.status != "pending":
        return False
    try:
        actions.check_may_sign_as_staff(user, signer, case)
    except Forbidden:
        return False
    return True


async def case_agreements(request: web.Request) -> web.Response:
    user = require_user(request)
    case_id = int(request.match_info["case_id"])
    async with transaction(request) as session:
        case = await get_case(session, case_id)
        actions.check_staff_view(user, case)
    return _render(request, "agreement_case.html", await _page_values(request, case, user))


async def case_agreements_post(request: web.Request) -> web.Response:
    """One form handler for the page's actions (``action`` field); errors re-render the page."""
    user = require_user(request)
    case_id = int(request.match_info["case_id"])
    runtime = request.app[ESIGN]
    form = await request.post()
    action = form.get("action", "")
    base = settings(request).base_url
    secret = settings(request).secret_key
    who = actor(request)
    notice = None
    review_links: list[tuple[str, str]] = []
    try:
        async with transaction(request) as session:
            case = await get_case(session, case_id)
            actions.check_staff_view(user, case)
            agreement_id = form.get("agreement_id", "")
            agreement = None
            if isinstance(agreement_id, str) and agreement_id.isdigit():
                agreement = await actions.get_agreement(session, int(agreement_id))
                if agreement.case_id != case.id:
                    raise Forbidden(N_("You do not have access to this."))
            order = form.get("signing_order", "parallel")
            order = order if isinstance(order, str) and order in ORDERS else "parallel"
            typed = form.get("allow_typed_name") == "yes"
            if action == "create":
                await actions.do_create(
                    session,
                    who,
                    case,
                    _terms_from_form(form),
                    signing_order=order,
                    allow_typed_name=typed,
                )
                notice = _("The draft was saved.")
            elif action == "update" and agreement is not None:
                await actions.do_update_terms(
                    session,
                    who,
                    case,
                    agreement,
                    _terms_from_form(form),
                    signing_order=order,
                    allow_typed_name=typed,
                )
                notice = _("The draft was saved as a new version.")
            elif action == "share" and agreement is not None:
                shared = await actions.do_share_draft(
                    session,
                    who,
                    case,
                    agreement,
                    OutboxSender(session),
                    review_link_for(request),
                    runtime.docs.texts,
                )
                notice = _("The draft was sent to the parties for review.")
                review_links = [(p.name, url) for p, url in shared]
            elif action == "issue" and agreement is not None:
                postal_ids = frozenset(
                    int(v)
                    for v in form.getall("postal_party", [])
                    if isinstance(v, str) and v.isdigit()
                )
                agent_ids = frozenset(
                    int(v)
                    for v in form.getall("agent_party", [])
                    if isinstance(v, str) and v.isdigit()
                )
                await actions.do_issue(
                    session,
                    who,
                    case,
                    agreement,
                    runtime.authority,
                    runtime.docs,
                    OutboxSender(session),
                    postal_party_ids=postal_ids,
                    agent_party_ids=agent_ids,
                    link_for=lambda s: sign_url(base, issue_link_token(secret, s)),
                )
                notice = _("The agreement was issued. Each party received their signing link.")
            elif action in ("sign", "dispatch", "return") and agreement is not None:
                signer = await _form_signer(session, form, agreement.id)
                if action == "sign":
                    drawing = _data_url(form.get("drawing", ""))
                    await actions.do_sign(
                        session, who, signer, runtime.authority, runtime.docs, drawing_png=drawing
                    )
                    notice = _("Signed.")
                elif action == "dispatch":
                    await postal.do_dispatch(
                        session,
                        who,
                        signer,
                        carrier=str(form.get("carrier", "")),
                        tracking_number=str(form.get("tracking_number", "")),
                        sent_on=_date(form.get("date", "")),
                    )
                    notice = _("The dispatch was recorded.")
                else:
                    scan = form.get("scan")
                    if not isinstance(scan, web.FileField):
                        raise Invalid(
                            N_("Upload the scan as a PDF, JPEG or PNG file."),
                            code="postal_scan_type",
                        )
                    await postal.do_record_return(
                        session,
                        who,
                        signer,
                        runtime.evidence,
                        scan=scan.file.read(),
                        filename=scan.filename or "",
                        carrier=str(form.get("carrier", "")),
                        tracking_number=str(form.get("tracking_number", "")),
                        returned_on=_date(form.get("date", "")),
                    )
                    notice = _("The return was recorded and the scan stored as evidence.")
            else:
                raise Invalid(N_("This action is not available here."), code="unknown_action")
    except DomainError as exc:
        async with transaction(request) as session:
            case = await get_case(session, case_id)
        values = await _page_values(request, case, user)
        values["error"] = i18n.translate(exc.message, exc.params, settings(request).timezone)
        status = (
            403
            if isinstance(exc, Forbidden)
            else 422
            if isinstance(exc, Invalid)
            else 404
            if isinstance(exc, NotFound)
            else 409
        )
        return _render(request, "agreement_case.html", values, status=status)
    async with transaction(request) as session:
        case = await get_case(session, case_id)
    values = await _page_values(request, case, user)
    values["notice"] = notice
    values["review_links"] = review_links
    return _render(request, "agreement_case.html", values)


async def _form_signer(
    session: Any, form: MultiDictProxy[Any], agreement_id: int
) -> AgreementSigner:
    raw = form.get("signer_id", "")
    signer = (
        await session.get(AgreementSigner, int(raw), populate_existing=True)
        if isinstance(raw, str) and raw.isdigit()
        else None
    )
    if signer is None or signer.agreement_id != agreement_id:
        raise Invalid(N_("There is no such signer."), code="signer_not_found")
    return signer


def _data_url(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    raw = value.partition(",")[2] if value.startswith("data:") else value
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            N_("The drawn signature could not be read. Draw it again."), code="signature_invalid"
        ) from None


def _date(value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(value if isinstance(value, str) else "")
    except ValueError:
        raise Invalid(N_("Give the date as YYYY-MM-DD."), code="date_invalid") from None


# ---- signer page --------------------------------------------------------------------------------


async def sign_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        async with transaction(request) as session:
            signer = await read_link_token(
                session, settings(request).secret_key, token, settings(request).esign_link_max_age_s
            )
            agreement, case, version = await actions.signer_context(session, signer)
            values = {
                "link_error": None,
                "case": case,
                "agreement": agreement,
                "version": version,
                "signer": signer,
                "void": signer.status == "void" or version.status == "void",
                "signed": signer.status == "signed",
                "postal": signer.route == POSTAL,
                "status_label": _label(SIGNER_STATUSES, signer.status),
                "token": token,
                "texts": {k: _(v) for k, v in SIGN_TEXTS.items()},
            }
    except DomainError as exc:
        response = _render(
            request,
            "agreement_sign.html",
            {"link_error": i18n.translate(exc.message, exc.params, settings(request).timezone)},
            status=403,
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    response = _render(request, "agreement_sign.html", values)
    # The token is the signer's credential and sits in the path.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---- draft review ---------------------------------------------------------------------------------


async def _review_values(request: web.Request, session: Any) -> dict[str, Any]:
    agreement_id, party_id, number = read_review_token(
        settings(request).secret_key,
        request.match_info["token"],
        settings(request).esign_link_max_age_s,
    )
    agreement, case, version, party = await actions.open_review(
        session, agreement_id, party_id, number
    )
    text = agreement_text(
        case,
        version.terms,
        case.mediator.display_name if case.mediator else "",
        case.organisation.name,
    )
    return {
        "link_error": None,
        "case": case,
        "agreement": agreement,
        "version": version,
        "party": party,
        "lines": preview_lines(text),
        "token": request.match_info["token"],
        "notice": None,
        "error": None,
    }


async def review_page(request: web.Request) -> web.Response:
    try:
        async with transaction(request) as session:
            values = await _review_values(request, session)
    except DomainError as exc:
        return _review_error(request, exc)
    response = _render(request, "agreement_review.html", values)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def review_comment(request: web.Request) -> web.Response:
    form = await request.post()
    text = form.get("text", "")
    try:
        async with transaction(request) as session:
            values = await _review_values(request, session)
            party = values["party"]
            who = Actor(
                "party",
                party.id,
                party.name,
                client_ip(request),
                request.headers.get("User-Agent", "")[:300],
            )
            try:
                await actions.do_review_comment(
                    session,
                    who,
                    values["case"],
                    values["agreement"],
                    values["version"],
                    party,
                    text if isinstance(text, str) else "",
                )
                values["notice"] = _("Your comment was sent to the mediator.")
            except Invalid as exc:
                values["error"] = i18n.translate(
                    exc.message, exc.params, settings(request).timezone
                )
    except DomainError as exc:
        return _review_error(request, exc)
    response = _render(
        request, "agreement_review.html", values, status=422 if values["error"] else 200
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _review_error(request: web.Request, exc: DomainError) -> web.Response:
    response = _render(
        request,
        "agreement_review.html",
        {"link_error": i18n.translate(exc.message, exc.params, settings(request).timezone)},
        status=409 if exc.code == "review_draft_replaced" else 403,
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# ---- verification -------------------------------------------------------------------------------


async def _lookup(request: web.Request, document_id: str) -> dict[str, Any] | None:
    async with transaction(request) as session:
        version = await actions.find_version_by_document(session, document_id)
        if version is None:
            return None
        agreement = await actions.get_agreement(session, version.agreement_id)
        return {
            "document_id": version.document_id,
            "version": version.number,
            "version_label": _label(VERSION_STATUSES, version.status),
            "status_label": _label(STATUSES, agreement.status),
            "issued_at": version.issued_at,
            "issued_sha256": version.issued_sha256,
            "sha256": version.pdf_sha256,
            "signed": await actions.count_signed(session, version),
        }


async def verify_page(request: web.Request) -> web.Response:
    document_id = request.query.get("id", "")[:40]
    found = await _lookup(request, document_id) if document_id else None
    return _render(
        request,
        "agreement_verify.html",
        {
            "document_id": document_id,
            "found": found,
            "report": None,
            "error": None,
            "registered": None,
        },
    )


async def verify_upload(request: web.Request) -> web.Response:
    runtime = request.app[ESIGN]
    form = await request.post()
    upload = form.get("file")
    error = None
    report = None
    registered = None
    if not isinstance(upload, web.FileField):
        error = _("Choose the PDF file to check.")
    else:
        data = upload.file.read(MAX_VERIFY_BYTES + 1)
        if len(data) > MAX_VERIFY_BYTES:
            error = _("What you sent is too large.")
        else:
            report = await verify_pdf(data, runtime.authority.ca_cert_asn1)
            if report.document_id:
                registered = await _lookup(request, report.document_id)
    return _render(
        request,
        "agreement_verify.html",
        {
            "document_id": report.document_id if report else "",
            "found": None,
            "report": report,
            "problem": _(report.problem) if report and report.problem else "",
            "error": error,
            "registered": registered,
        },
    )


async def ca_certificate(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[ESIGN].authority.ca_pem,
        content_type="application/x-pem-file",
        headers={"Content-Disposition": "attachment; filename=yuntiao-ca.pem"},
    )


async def timestamp(request: web.Request) -> web.Response:
    """RFC 3161 over HTTP: ``application/timestamp-query`` in, ``…-reply`` out."""
    if request.content_type != "application/timestamp-query":
        raise Invalid(
            N_("Send an RFC 3161 request as application/timestamp-query."),
            code="tsa_content_type",
        )
    body = await request.read()
    try:
        reply = request.app[ESIGN].authority.timestamper.respond(body)
    except (ValueError, TypeError, KeyError):
        raise Invalid(
            N_("This is not an RFC 3161 timestamp request."), code="tsa_request_invalid"
        ) from None
    return web.Response(body=reply, content_type="application/timestamp-reply")
