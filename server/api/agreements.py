"""API: mediation agreements — drafting, issue, signing, postal route, verification, judicial
confirmation.

Who: staff by session or bearer token (``cases.access``: the case's mediator and office draft
and issue; the mediator signs as mediator; an organisation administrator applies the seal);
each party by their personal signing link token in the ``X-Signing-Token`` header, for their own
agreement only (403 for any other). ``POST /agreements/verification`` is public.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import AuthenticationFailed, Forbidden, Invalid, NotFound
from cases.intake import get_case
from cases.models import Case, User
from cases.notifications import OutboxSender
from esign import agreements as actions
from esign import judicial, postal
from esign.catalogue import (
    ORDERS,
    ROUTES,
    SHIPMENT_STATUSES,
    SIGNER_KINDS,
    SIGNER_STATUSES,
    STATUSES,
    VERSION_STATUSES,
)
from esign.links import issue_link_token, read_link_token
from esign.models import Agreement, AgreementComment, AgreementSigner, AgreementVersion
from esign.render import agreement_text
from esign.verify import DocumentReport, verify_pdf
from server.api.registry import ApiRegistry, json_response
from server.api.schemas import Strict
from web.agreements import ESIGN, review_link_for, sign_url, timestamp
from web.context import actor, client_ip, current_user, settings, transaction
from web.i18n import gettext

SIGNING_TOKEN_HEADER = "X-Signing-Token"  # noqa: S105 (a header name, not a secret)
MAX_DRAWING_BYTES = 700 * 1024  # base64 of a 512 KiB PNG
MAX_SCAN_BYTES = 50 * 1024 * 1024


class Terms(Strict):
    facts: str = Field(max_length=4000, description="主要事实")
    dispute: str = Field(default="", max_length=4000, description="争议事项")
    responsibilities: str = Field(default="", max_length=4000, description="各方责任")
    items: list[str] = Field(max_length=30, description="The agreed terms, one per clause")
    performance_manner: str = Field(max_length=4000)
    performance_place: str = Field(max_length=4000)
    performance_deadline: str = Field(max_length=4000)
    copies: int = Field(default=0, ge=0, le=20, description="0: one per party plus one")
    extra: str = Field(default="", max_length=4000)


class AgreementCreate(Strict):
    terms: Terms
    signing_order: Literal["parallel", "sequential"] = "parallel"
    allow_typed_name: bool = Field(
        default=False, description="Parties may type their name instead of drawing"
    )


class AgreementUpdate(Strict):
    terms: Terms
    signing_order: Literal["parallel", "sequential"] | None = None
    allow_typed_name: bool | None = None


class IssueRequest(Strict):
    agent_party_ids: list[int] = Field(
        default_factory=list, description="Parties whose agent (委托代理人) signs for them"
    )
    postal_party_ids: list[int] = Field(
        default_factory=list, description="Parties who sign a paper copy by post"
    )


class DrawingBody(Strict):
    drawing: str = Field(default="", description="The drawn signature: a PNG, base64 or data: URL")
    typed_name: str = Field(
        default="",
        max_length=200,
        description="Instead of a drawing, where the agreement allows it",
    )


class CodeBody(Strict):
    code: str = Field(max_length=12)


class CommentBody(Strict):
    text: str = Field(max_length=4000)


class DispatchBody(Strict):
    carrier: str = Field(max_length=60)
    tracking_number: str = Field(max_length=60)
    sent_on: dt.date


class ReturnQuery(Strict):
    carrier: str = Field(max_length=60)
    tracking_number: str = Field(max_length=60)
    returned_on: dt.date
    filename: str = Field(default="", max_length=200)


@dataclass(frozen=True)
class Who:
    actor: Actor
    user: User | None = None
    signer: AgreementSigner | None = None


def register(api: ApiRegistry) -> None:
    r = api.route
    tag = "agreements"
    r("GET", "/cases/{case_id}/agreements", summary="The case's agreements", tag=tag)(
        list_agreements
    )
    r(
        "POST",
        "/cases/{case_id}/agreements",
        summary="Draft an agreement (version 1)",
        tag=tag,
        body=AgreementCreate,
        status=201,
    )(create_agreement)
    r(
        "POST",
        "/cases/{case_id}/agreements/preview",
        summary="Live preview: the agreement text these terms produce",
        tag=tag,
        body=Terms,
    )(preview_agreement)
    r(
        "GET",
        "/agreements/{agreement_id}",
        summary="An agreement: versions, signers, comments, postal shipments (staff, or the signer's link)",
        tag=tag,
    )(get_agreement)
    r(
        "POST",
        "/agreements/{agreement_id}/versions",
        summary="Change the draft: a new version (voids pending signatures)",
        tag=tag,
        body=AgreementUpdate,
        status=201,
    )(update_agreement)
    r("POST", "/agreements/{agreement_id}/share", summary="Send the current draft to the parties for review (each gets a link to read and comment)", tag=tag)(share_draft)  # fmt: skip
    r(
        "POST",
        "/agreements/{agreement_id}/issue",
        summary="Render, lock (DocMDP certification) and send for signature",
        tag=tag,
        body=IssueRequest,
    )(issue_agreement)
    r(
        "GET",
        "/agreements/{agreement_id}/document",
        summary="The current PDF (draft preview, or the issued and signed document)",
        tag=tag,
    )(document_pdf)
    r(
        "GET",
        "/agreements/{agreement_id}/completion",
        summary="The certificate of completion (PDF)",
        tag=tag,
    )(completion_pdf)
    r(
        "GET",
        "/agreements/{agreement_id}/links",
        summary="Each party's personal signing link (staff)",
        tag=tag,
    )(signer_links)
    r(
        "POST",
        "/agreements/{agreement_id}/signers/{signer_id}/signature",
        summary="Sign as mediator (drawing) or apply the seal (staff)",
        tag=tag,
        body=DrawingBody,
    )(staff_sign)
    r(
        "POST",
        "/agreements/{agreement_id}/signers/{signer_id}/dispatch",
        summary="Postal route: the paper copy was sent",
        tag=tag,
        body=DispatchBody,
        status=201,
    )(dispatch)
    r(
        "POST",
        "/agreements/{agreement_id}/signers/{signer_id}/return",
        summary="Postal route: the signed copy came back (scan as raw body: PDF, JPEG or PNG)",
        tag=tag,
        query=ReturnQuery,
        status=201,
    )(record_return)
    r(
        "GET",
        "/agreements/{agreement_id}/judicial-package",
        summary="Judicial confirmation package (zip)",
        tag=tag,
    )(judicial_package)
    r(
        "POST",
        "/agreements/{agreement_id}/signing/view",
        summary="Signer: I opened the document",
        tag=tag,
    )(signer_view)
    r(
        "POST",
        "/agreements/{agreement_id}/signing/code",
        summary="Signer: send me a one-time code",
        tag=tag,
    )(signer_code)
    r(
        "POST",
        "/agreements/{agreement_id}/signing/code/verify",
        summary="Signer: confirm the one-time code",
        tag=tag,
        body=CodeBody,
    )(signer_verify)
    r(
        "POST",
        "/agreements/{agreement_id}/signing/signature",
        summary="Signer: sign with my drawn signature",
        tag=tag,
        body=DrawingBody,
    )(signer_sign)
    r(
        "POST",
        "/agreements/{agreement_id}/comments",
        summary="Signer: comment on the draft",
        tag=tag,
        body=CommentBody,
        status=201,
    )(comment)
    r("POST", "/agreements/verification", summary="Is this PDF (raw body) a genuine, unmodified agreement of this platform?", tag=tag, auth=False)(verification)  # fmt: skip
    # A machine endpoint under /api/ (RFC 3161 clients send no CSRF token, nor need one).
    r("POST", "/tsa", summary="RFC 3161 timestamp authority (application/timestamp-query in, timestamp-reply out)", tag=tag, auth=False)(timestamp)  # fmt: skip


# ---- who ------------------------------------------------------------------------------------


async def _who(
    request: web.Request, session: AsyncSession, agreement: Agreement, case: Case
) -> Who:
    # An explicit signing token wins over a staff session of the same browser.
    token = request.headers.get(SIGNING_TOKEN_HEADER, "")
    user = current_user(request)
    if not token and user is not None:
        actions.check_staff_view(user, case)
        return Who(actor(request), user=user)
    if not token:
        raise AuthenticationFailed(N_("Please sign in first."), code="not_authenticated")
    signer = await read_link_token(
        session, settings(request).secret_key, token, settings(request).esign_link_max_age_s
    )
    actions.check_signer_case(signer, agreement)
    who = Actor(
        "party",
        signer.agent_id or signer.party_id,
        signer.name,
        client_ip(request),
        request.headers.get("User-Agent", "")[:300],
    )
    return Who(who, signer=signer)


async def _load(
    request: web.Request, session: AsyncSession, agreement_id: int
) -> tuple[Agreement, Case, Who]:
    agreement = await actions.get_agreement(session, agreement_id)
    case = await get_case(session, agreement.case_id)
    return agreement, case, await _who(request, session, agreement, case)


def _staff(who: Who) -> User:
    if who.user is None:
        raise Forbidden(N_("You do not have access to this."), code="forbidden")
    return who.user


def _signer(who: Who) -> AgreementSigner:
    if who.signer is None:
        raise Forbidden(
            N_("Open your personal signing link to do this."), code="signing_link_required"
        )
    return who.signer


async def _staff_case(
    request: web.Request, session: AsyncSession, case_id: int
) -> tuple[Case, User]:
    user = current_user(request)
    if user is None:
        raise AuthenticationFailed(N_("Please sign in first."), code="not_authenticated")
    case = await get_case(session, case_id)
    actions.check_staff_view(user, case)
    return case, user


# ---- JSON -----------------------------------------------------------------------------------


def _label(vocabulary: dict[str, str], code: str) -> str:
    return gettext(vocabulary[code]) if code in vocabulary else code


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def signer_json(s: AgreementSigner, full: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": s.id,
        "kind": s.kind,
        "kind_label": _label(SIGNER_KINDS, s.kind),
        "position": s.position,
        "name": s.name,
        "label": s.role_label,
        "route": s.route,
        "route_label": _label(ROUTES, s.route),
        "status": s.status,
        "status_label": _label(SIGNER_STATUSES, s.status),
        "signed_at": _time(s.signed_at),
    }
    if full:
        data.update(
            party_id=s.party_id,
            agent_id=s.agent_id,
            user_id=s.user_id,
            viewed_at=_time(s.viewed_at),
            code_verified_at=_time(s.code_verified_at),
            verified_recipient=s.verified_recipient,
            signed_ip=s.signed_ip,
        )
    return data


def version_json(v: AgreementVersion) -> dict[str, Any]:
    return {
        "number": v.number,
        "status": v.status,
        "status_label": _label(VERSION_STATUSES, v.status),
        "document_id": v.document_id,
        "author": v.author_label,
        "created_at": _time(v.created_at),
        "issued_at": _time(v.issued_at),
        "issued_sha256": v.issued_sha256 or None,
        "sha256": v.pdf_sha256 or None,
        "terms": v.terms,
    }


async def agreement_json(
    session: AsyncSession, agreement: Agreement, case: Case, who: Who
) -> dict[str, Any]:
    staff = who.user is not None
    version = await actions.current_version(session, agreement)
    signer_version = version
    if who.signer is not None and who.signer.version_id != version.id:
        found = await session.get(AgreementVersion, who.signer.version_id)
        signer_version = found or version
    signers = await actions.signers_of(session, signer_version)
    data: dict[str, Any] = {
        "id": agreement.id,
        "case_id": case.id,
        "case_number": case.number,
        "status": agreement.status,
        "status_label": _label(STATUSES, agreement.status),
        "route": agreement.route,
        "route_label": _label(ROUTES, agreement.route),
        "signing_order": agreement.signing_order,
        "signing_order_label": _label(ORDERS, agreement.signing_order),
        "allow_typed_name": agreement.allow_typed_name,
        "effective_at": _time(agreement.effective_at),
        "judicial_deadline": _time(judicial.deadline(agreement)),
        "version": version_json(signer_version),
        "signers": [signer_json(s, staff) for s in signers],
        "document_url": f"/api/v1/agreements/{agreement.id}/document",
        "completion_url": (
            f"/api/v1/agreements/{agreement.id}/completion" if version.completion_pdf else None
        ),
    }
    if who.signer is not None:
        data["me"] = signer_json(who.signer, True)
    if staff:
        data["versions"] = [version_json(v) for v in await actions.versions(session, agreement)]
        comments = await session.scalars(
            select(AgreementComment)
            .where(AgreementComment.agreement_id == agreement.id)
            .order_by(AgreementComment.id)
        )
        data["comments"] = [
            {
                "version": c.version_id,
                "author": c.author_label,
                "text": c.text,
                "at": _time(c.created_at),
            }
            for c in comments
        ]
        data["shipments"] = [
            {
                "signer_id": s.signer_id,
                "status": s.status,
                "status_label": _label(SHIPMENT_STATUSES, s.status),
                "carrier": s.carrier,
                "tracking_number": s.tracking_number,
                "sent_on": s.sent_on.isoformat(),
                "return_carrier": s.return_carrier,
                "return_tracking_number": s.return_tracking_number,
                "returned_on": s.returned_on.isoformat() if s.returned_on else None,
                "evidence_item_id": s.evidence_item_id,
                "scan_sha256": s.scan_sha256 or None,
                "document_sha256": s.document_sha256,
            }
            for s in await postal.shipments_of(session, agreement.id)
        ]
    return data


def report_json(report: DocumentReport) -> dict[str, Any]:
    return {
        "genuine": report.ok,
        "problem": gettext(report.problem) if report.problem else None,
        "sha256": report.sha256,
        "size": report.size,
        "document_id": report.document_id or None,
        "signatures": [
            {
                "field": s.field,
                "signer": s.signer,
                "unit": s.unit,
                "signed_at": _time(s.signed_at),
                "timestamped": s.timestamped,
                "valid": s.bottom_line,
                "intact": s.intact,
                "trusted": s.trusted,
                "certification": s.certification,
                "covers_whole_file": s.covers_whole_file,
            }
            for s in report.signatures
        ],
    }


# ---- staff: drafting and issue ----------------------------------------------------------------


async def list_agreements(request: web.Request, case_id: int) -> web.Response:
    async with transaction(request) as session:
        case, user = await _staff_case(request, session, case_id)
        who = Who(actor(request), user=user)
        rows = [
            await agreement_json(session, a, case, who)
            for a in await actions.case_agreements(session, case)
        ]
    return json_response({"case_id": case_id, "agreements": rows})


async def create_agreement(
    request: web.Request, case_id: int, body: AgreementCreate
) -> web.Response:
    async with transaction(request) as session:
        case, user = await _staff_case(request, session, case_id)
        agreement = await actions.do_create(
            session,
            actor(request),
            case,
            body.terms.model_dump(),
            signing_order=body.signing_order,
            allow_typed_name=body.allow_typed_name,
        )
        data = await agreement_json(session, agreement, case, Who(actor(request), user=user))
    return json_response(data, status=201)


async def preview_agreement(request: web.Request, case_id: int, body: Terms) -> web.Response:
    async with transaction(request) as session:
        case, _user = await _staff_case(request, session, case_id)
        terms = body.model_dump()
        mediator = case.mediator.display_name if case.mediator else ""
        text = agreement_text(case, terms, mediator, case.organisation.name)
    return json_response({"text": text})


async def get_agreement(request: web.Request, agreement_id: int) -> web.Response:
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        data = await agreement_json(session, agreement, case, who)
    return json_response(data)


async def update_agreement(
    request: web.Request, agreement_id: int, body: AgreementUpdate
) -> web.Response:
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        _staff(who)
        await actions.do_update_terms(
            session,
            who.actor,
            case,
            agreement,
            body.terms.model_dump(),
            signing_order=body.signing_order,
            allow_typed_name=body.allow_typed_name,
        )
        data = await agreement_json(session, agreement, case, who)
    return json_response(data, status=201)


async def issue_agreement(
    request: web.Request, agreement_id: int, body: IssueRequest
) -> web.Response:
    runtime = request.app[ESIGN]
    secret = settings(request).secret_key
    base = settings(request).base_url
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        _staff(who)
        await actions.do_issue(
            session,
            who.actor,
            case,
            agreement,
            runtime.authority,
            runtime.docs,
            OutboxSender(session),
            postal_party_ids=frozenset(body.postal_party_ids),
            agent_party_ids=frozenset(body.agent_party_ids),
            link_for=lambda s: sign_url(base, issue_link_token(secret, s)),
        )
        data = await agreement_json(session, agreement, case, who)
    return json_response(data)


async def share_draft(request: web.Request, agreement_id: int) -> web.Response:
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        _staff(who)
        shared = await actions.do_share_draft(
            session,
            who.actor,
            case,
            agreement,
            OutboxSender(session),
            review_link_for(request),
            request.app[ESIGN].docs.texts,
        )
    return json_response(
        {"links": [{"party_id": p.id, "name": p.name, "url": url} for p, url in shared]}
    )


async def signer_links(request: web.Request, agreement_id: int) -> web.Response:
    secret = settings(request).secret_key
    base = settings(request).base_url
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        user = _staff(who)
        actions.check_draft(user, case)
        version = await actions.current_version(session, agreement)
        links = [
            {"signer_id": s.id, "name": s.name, "url": sign_url(base, issue_link_token(secret, s))}
            for s in await actions.signers_of(session, version)
            if s.kind == "party" and s.status != "void"
        ]
    return json_response({"links": links})


def _pdf(data: bytes, name: str) -> web.Response:
    return web.Response(
        body=data,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f"inline; filename={name}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def document_pdf(request: web.Request, agreement_id: int) -> web.Response:
    runtime = request.app[ESIGN]
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        version = await actions.current_version(session, agreement)
        if who.signer is not None:
            version = await session.get(AgreementVersion, who.signer.version_id) or version
        if version.pdf is not None:
            return _pdf(version.pdf, f"{version.document_id}.pdf")
        if who.user is None:
            raise NotFound(
                N_("This agreement has not been issued yet."), code="agreement_not_issued"
            )
        # A draft: rendered on the fly, unsigned, for the editor's preview.
        from esign.render import SignerSlot, render_agreement

        slots = [
            SignerSlot(f"party-{p.id}", "party", p.name) for p in case.parties if p.role != "agent"
        ]
        rendered = render_agreement(
            case,
            version.terms,
            slots,
            document_id=version.document_id + "（草稿）",
            verify_url=runtime.docs.verify_url(version.document_id),
            mediator=case.mediator.display_name if case.mediator else "",
            organisation=case.organisation.name,
            font_path=runtime.docs.font_path,
            route=agreement.route,
        )
        return _pdf(rendered.pdf, f"{version.document_id}-draft.pdf")


async def completion_pdf(request: web.Request, agreement_id: int) -> web.Response:
    async with transaction(request) as session:
        agreement, _case, _who = await _load(request, session, agreement_id)
        version = await actions.current_version(session, agreement)
        if version.completion_pdf is None:
            raise NotFound(
                N_("The agreement is not fully signed yet."), code="agreement_not_effective"
            )
        return _pdf(version.completion_pdf, f"{version.document_id}-completion.pdf")


def _drawing(body: DrawingBody) -> bytes | None:
    raw = body.drawing
    if not raw:
        return None
    if raw.startswith("data:"):
        raw = raw.partition(",")[2]
    if len(raw) > MAX_DRAWING_BYTES:
        raise Invalid(
            N_("The drawn signature could not be read. Draw it again."), code="signature_invalid"
        )
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            N_("The drawn signature could not be read. Draw it again."), code="signature_invalid"
        ) from None


async def _signer_of(
    session: AsyncSession, agreement: Agreement, signer_id: int
) -> AgreementSigner:
    signer = await session.get(AgreementSigner, signer_id, populate_existing=True)
    if signer is None or signer.agreement_id != agreement.id:
        raise NotFound(N_("There is no such signer."), code="signer_not_found")
    return signer


async def staff_sign(
    request: web.Request, agreement_id: int, signer_id: int, body: DrawingBody
) -> web.Response:
    runtime = request.app[ESIGN]
    drawing = _drawing(body)
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        _staff(who)
        signer = await _signer_of(session, agreement, signer_id)
        await actions.do_sign(
            session, who.actor, signer, runtime.authority, runtime.docs, drawing_png=drawing
        )
        data = await agreement_json(session, agreement, case, who)
    return json_response(data)


# ---- postal -----------------------------------------------------------------------------------


async def dispatch(
    request: web.Request, agreement_id: int, signer_id: int, body: DispatchBody
) -> web.Response:
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        _staff(who)
        signer = await _signer_of(session, agreement, signer_id)
        await postal.do_dispatch(
            session,
            who.actor,
            signer,
            carrier=body.carrier,
            tracking_number=body.tracking_number,
            sent_on=body.sent_on,
        )
        data = await agreement_json(session, agreement, case, who)
    return json_response(data, status=201)


async def record_return(
    request: web.Request, agreement_id: int, signer_id: int, query: ReturnQuery
) -> web.Response:
    runtime = request.app[ESIGN]
    # Streamed with our own limit: a phone's photo of a page is larger than the app's
    # ordinary request limit (client_max_size applies to request.read(), not to the stream).
    scan = bytearray()
    async for piece in request.content.iter_chunked(256 * 1024):
        scan += piece
        if len(scan) > MAX_SCAN_BYTES:
            raise Invalid(
                N_("The scan is larger than 50 MB. Scan at a lower resolution."),
                code="postal_scan_too_large",
            )
    if not scan:
        raise Invalid(N_("Upload the scan as a PDF, JPEG or PNG file."), code="postal_scan_type")
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        _staff(who)
        signer = await _signer_of(session, agreement, signer_id)
        _shipment, item = await postal.do_record_return(
            session,
            who.actor,
            signer,
            runtime.evidence,
            scan=bytes(scan),
            filename=query.filename,
            carrier=query.carrier,
            tracking_number=query.tracking_number,
            returned_on=query.returned_on,
        )
        data = await agreement_json(session, agreement, case, who)
        data["evidence_item_number"] = item.number
    return json_response(data, status=201)


async def judicial_package(request: web.Request, agreement_id: int) -> web.Response:
    runtime = request.app[ESIGN]
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        actions.check_draft(_staff(who), case)
        data = await judicial.do_export_package(
            session, who.actor, case, agreement, runtime.docs.font_path, runtime.authority
        )
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={
            "Content-Disposition": f"attachment; filename=judicial-confirmation-{agreement_id}.zip",
            "Cache-Control": "no-store",
        },
    )


# ---- signer ---------------------------------------------------------------------------------


async def signer_view(request: web.Request, agreement_id: int) -> web.Response:
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        await actions.do_view(session, who.actor, _signer(who))
        data = await agreement_json(session, agreement, case, who)
    return json_response(data)


async def signer_code(request: web.Request, agreement_id: int) -> web.Response:
    runtime = request.app[ESIGN]
    async with transaction(request) as session:
        _agreement, _case, who = await _load(request, session, agreement_id)
        masked = await actions.do_send_code(
            session, who.actor, _signer(who), OutboxSender(session), runtime.docs
        )
    return json_response(
        {
            "sent_to": masked,
            "message": gettext("A code was sent to %(to)s.", to=masked),
            "expires_in_s": int(runtime.docs.code_ttl.total_seconds()),
        }
    )


async def signer_verify(request: web.Request, agreement_id: int, body: CodeBody) -> web.Response:
    runtime = request.app[ESIGN]
    async with transaction(request) as session:
        _agreement, _case, who = await _load(request, session, agreement_id)
        await actions.do_verify_code(session, who.actor, _signer(who), body.code, runtime.docs)
    return json_response({"verified": True})


async def signer_sign(request: web.Request, agreement_id: int, body: DrawingBody) -> web.Response:
    runtime = request.app[ESIGN]
    drawing = _drawing(body)
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        await actions.do_sign(
            session,
            who.actor,
            _signer(who),
            runtime.authority,
            runtime.docs,
            drawing_png=drawing,
            typed_name=body.typed_name,
        )
        data = await agreement_json(session, agreement, case, who)
    return json_response(data)


async def comment(request: web.Request, agreement_id: int, body: CommentBody) -> web.Response:
    async with transaction(request) as session:
        agreement, case, who = await _load(request, session, agreement_id)
        await actions.do_comment(session, who.actor, case, agreement, _signer(who), body.text)
    return json_response({"ok": True}, status=201)


# ---- public -----------------------------------------------------------------------------------


async def verification(request: web.Request) -> web.Response:
    runtime = request.app[ESIGN]
    data = await request.read()
    report = await verify_pdf(data, runtime.authority.ca_cert_asn1)
    result = report_json(report)
    if report.document_id:
        async with transaction(request) as session:
            version = await actions.find_version_by_document(session, report.document_id)
            result["registered"] = version is not None
            result["matches_platform_copy"] = (
                version is not None and version.pdf_sha256 == report.sha256
            )
    return json_response(result)
