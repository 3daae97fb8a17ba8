"""API: evidence. Resumable uploads speak tus 1.0 (core, creation, termination) under
``/cases/{case_id}/evidence/uploads``; the rest is JSON like the other routes.

Who: staff by session or bearer token; a party by their hearing link token in the
``X-Hearing-Token`` header (only for that hearing's case). Upload bodies are streamed from the
socket (``request.content``), so the app's ``client_max_size`` does not apply to them; the
evidence limits of the settings do.

Errors have the usual ``{"error": {"code", "message"}}`` shape; a file too large is 413, a type
not allowed 415, an upload busy in another connection 423, and tus responses always carry
``Tus-Resumable``.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.catalogue import N_
from cases.errors import AuthenticationFailed, DomainError, Invalid
from cases.models import utcnow
from evidence import examination, filetypes, items, ledger, uploads
from evidence.access import Principal, party_principal, staff_principal
from evidence.catalogue import CATEGORIES, PROPERTIES, STANCES, STATUSES
from evidence.errors import OpinionFinal, TooLarge, UnsupportedType
from evidence.models import EvidenceItem, EvidenceOpinion, TreeHead
from evidence.runtime import EvidenceRuntime
from evidence.storage import CHUNK_SIZE
from server.api.registry import PREFIX, ApiRegistry, json_response
from server.api.schemas import Strict
from server.middlewares import domain_status, error_response, translate
from web.context import SESSIONMAKER, actor, client_ip, current_user, settings, transaction
from web.evidence import Damaged, runtime, stream_item
from web.i18n import gettext

TUS_VERSION = "1.0.0"
TUS_CONTENT_TYPE = "application/offset+octet-stream"
HEARING_TOKEN_HEADER = "X-Hearing-Token"  # noqa: S105 (a header name, not a secret)

Handler = Callable[..., Awaitable[web.StreamResponse]]


class WithdrawRequest(Strict):
    reason: str = Field(default="", max_length=2000)


class OpinionBody(Strict):
    property: str = Field(max_length=20, description="authenticity | legality | relevance")
    stance: str = Field(max_length=20, description="acknowledged | disputed")
    reason: str = Field(default="", max_length=2000, description="Required when disputed")
    corrects: int | None = Field(
        default=None, description="Id of the current opinion this one corrects (a new entry)"
    )


class OpinionsRequest(Strict):
    party_id: int | None = Field(
        default=None, description="Whose opinion (staff recording it); parties may omit it"
    )
    opinions: list[OpinionBody] = Field(min_length=1, max_length=3)


class TreeHeadsQuery(Strict):
    limit: int = Field(default=100, ge=1, le=1000)
    before: int | None = Field(default=None, ge=1, description="Only heads with a smaller id")


class ConsistencyQuery(Strict):
    first: int = Field(ge=1)
    second: int = Field(ge=1)


def register(api: ApiRegistry) -> None:
    routes: list[tuple[str, str, str, Handler, dict[str, Any]]] = [
        ("OPTIONS", "/uploads", "tus discovery: version, extensions, largest file", tus_options, {"status": 204}),
        ("POST", "/uploads", "Start a resumable upload (tus creation: Upload-Length, Upload-Metadata with filename, title, category, purpose)", tus_create, {"status": 201}),
        ("HEAD", "/uploads/{upload_id}", "Where a resumable upload stands (tus Upload-Offset)", tus_head, {}),
        ("PATCH", "/uploads/{upload_id}", "Append bytes at Upload-Offset (application/offset+octet-stream); the last byte registers the item", tus_patch, {"status": 204}),
        ("DELETE", "/uploads/{upload_id}", "Cancel an unfinished upload (tus termination)", tus_delete, {"status": 204}),
        ("GET", "", "The case's evidence items", list_evidence, {}),
        ("POST", "/match", "Does this file (raw request body) match a registered item of the case?", match_file, {}),
        ("GET", "/examination", "Examination (质证) matrix: items × parties × authenticity/legality/relevance, current opinion and history per cell", examination_matrix, {}),  # before "/{number}"
        ("GET", "/{number}", "An item with the inclusion proof of its registration and a signed tree head (the view is a ledger event)", get_evidence, {}),
        ("GET", "/{number}/content", "The item's file, decrypted (the download is a ledger event; Range supported)", download_evidence, {}),
        ("POST", "/{number}/withdrawal", "Withdraw an item (submitter or the case's staff)", withdraw_evidence, {"body": WithdrawRequest}),
        ("POST", "/{number}/opinions", "State opinions on an item (the other side's party, their agent, or staff recording them); a correction names the opinion it corrects", state_opinions, {"body": OpinionsRequest, "status": 201}),
        ("PATCH", "/{number}/opinions/{opinion_id}", "Always refused (409 evidence_opinion_final): opinions are never edited; state a correction", edit_opinion, {}),
        ("DELETE", "/{number}/opinions/{opinion_id}", "Always refused (409 evidence_opinion_final): opinions are never removed", edit_opinion, {}),
    ]  # fmt: skip
    for method, path, summary, handler, options in routes:
        tus = "/uploads" in path
        api.route(
            method, "/cases/{case_id}/evidence" + path, summary=summary, tag="evidence", **options
        )(_guard(handler, tus=tus))
    api.route(
        "GET",
        "/evidence/ledger/tree-head",
        summary="The latest signed tree head of the evidence ledger (signed on demand) and the platform public key",
        tag="evidence",
    )(_guard(tree_head))
    api.route(
        "GET",
        "/evidence/ledger/tree-heads",
        summary="The signed tree heads made so far, newest first (public: keep one, and later ask for a consistency proof), and the platform public key",
        tag="evidence",
        auth=False,
        query=TreeHeadsQuery,
    )(_guard(tree_heads))
    api.route("GET", "/evidence/ledger/consistency", summary="RFC 6962 consistency proof between two tree sizes", tag="evidence", query=ConsistencyQuery)(
        _guard(consistency)
    )  # fmt: skip


def _guard(handler: Handler, *, tus: bool = False) -> Handler:
    """Give the handler its runtime; answer evidence errors with their own status (413, 415,
    423) and every tus response with ``Tus-Resumable``."""

    @functools.wraps(handler)
    async def guarded(request: web.Request, **kwargs: Any) -> web.StreamResponse:
        try:
            response = await handler(request, runtime(request), **kwargs)
        except DomainError as exc:
            status = domain_status(exc)
            if isinstance(exc, TooLarge):
                status = 413
            elif isinstance(exc, UnsupportedType):
                status = 415
            elif isinstance(exc, uploads.UploadBusy):
                status = 423
            elif isinstance(exc, Damaged):
                status = 500
            response = error_response(request, status, exc.code, translate(request, exc))
        if tus:
            response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return guarded


async def _principal(request: web.Request, session: AsyncSession) -> Principal:
    if current_user(request) is not None:
        return staff_principal(actor(request))
    token = request.headers.get(HEARING_TOKEN_HEADER, "")
    if not token:
        raise AuthenticationFailed(N_("Please sign in first."), code="not_authenticated")
    return await party_principal(
        session,
        settings(request).secret_key,
        token,
        utcnow(),
        client_ip(request),
        request.headers.get("User-Agent", ""),
    )


async def principal(request: web.Request) -> Principal:
    async with transaction(request) as session:
        return await _principal(request, session)


def _label(vocabulary: dict[str, str], code: str) -> str:
    return gettext(vocabulary[code]) if code in vocabulary else code


def item_json(case_id: int, item: EvidenceItem) -> dict[str, Any]:
    kind = filetypes.FILE_TYPES.get(item.file_type)
    return {
        "id": item.id,
        "case_id": item.case_id,
        "number": item.number,
        "title": item.title,
        "category": item.category,
        "category_label": _label(CATEGORIES, item.category),
        "purpose": item.purpose,
        "submitter": {
            "type": item.submitter_type,
            "user_id": item.submitted_by_user_id,
            "party_id": item.submitted_by_party_id,
            "label": item.submitter_label,
        },
        "sha256": item.sha256,
        "size": item.size,
        "file_type": item.file_type,
        "file_type_label": gettext(kind.label) if kind else item.file_type,
        "media_type": item.media_type,
        "original_filename": item.original_filename,
        "submitted_at": item.submitted_at.isoformat(),
        "status": item.status,
        "status_label": _label(STATUSES, item.status),
        "withdrawn_at": item.withdrawn_at.isoformat() if item.withdrawn_at else None,
        "withdrawal_reason": item.withdrawal_reason,
        "ledger_index": item.ledger_seq,
        "content_url": f"{PREFIX}/cases/{case_id}/evidence/{item.number}/content",
    }


# ---- tus -----------------------------------------------------------------------------------------


def _tus_headers(rt: EvidenceRuntime) -> dict[str, str]:
    return {
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": "creation,termination",
        "Tus-Max-Size": str(rt.limits.max_file_bytes),
    }


def _check_tus(request: web.Request, rt: EvidenceRuntime) -> web.StreamResponse | None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        response = error_response(
            request,
            412,
            "tus_version_unsupported",
            gettext("This server speaks tus version 1.0.0 (send Tus-Resumable: 1.0.0)."),
        )
        response.headers.update(_tus_headers(rt))
        return response
    return None


def _int_header(request: web.Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        raise Invalid(
            N_("The %(header)s header must be a whole number of bytes."),
            code="evidence_header_invalid",
            header=name,
        )
    return int(raw)


def _upload_url(case_id: int, upload_id: int) -> str:
    return f"{PREFIX}/cases/{case_id}/evidence/uploads/{upload_id}"


async def tus_options(request: web.Request, rt: EvidenceRuntime, case_id: int) -> web.Response:
    # Authorised like every evidence route (no CORS preflight to serve: same origin only).
    async with transaction(request) as session:
        who = await _principal(request, session)
        await items.load_case(session, who, case_id)
    return web.Response(status=204, headers=_tus_headers(rt))


async def tus_create(request: web.Request, rt: EvidenceRuntime, case_id: int) -> web.StreamResponse:
    if (refused := _check_tus(request, rt)) is not None:
        return refused
    length = _int_header(request, "Upload-Length")
    metadata = uploads.check_metadata(
        uploads.parse_tus_metadata(request.headers.get("Upload-Metadata", ""))
    )
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        upload = await uploads.do_create_upload(session, who, case, length, metadata, rt.limits)
    return web.Response(
        status=201,
        headers={"Location": _upload_url(case_id, upload.id), "Upload-Offset": "0"},
    )


async def tus_head(
    request: web.Request, rt: EvidenceRuntime, case_id: int, upload_id: int
) -> web.StreamResponse:
    if (refused := _check_tus(request, rt)) is not None:
        return refused
    async with transaction(request) as session:
        who = await _principal(request, session)
        _case, upload = await uploads.load_upload(session, who, case_id, upload_id)
    offset = await uploads.upload_offset(rt.store, upload)
    headers = {
        "Upload-Offset": str(offset),
        "Upload-Length": str(upload.length),
        "Cache-Control": "no-store",
    }
    if upload.item_id is not None:
        headers["Evidence-Item-Id"] = str(upload.item_id)
    return web.Response(status=200, headers=headers)


async def tus_patch(
    request: web.Request, rt: EvidenceRuntime, case_id: int, upload_id: int
) -> web.StreamResponse:
    if (refused := _check_tus(request, rt)) is not None:
        return refused
    if request.content_type != TUS_CONTENT_TYPE:
        return error_response(
            request,
            415,
            "evidence_content_type",
            gettext("Send upload bytes as application/offset+octet-stream."),
        )
    offset = _int_header(request, "Upload-Offset")
    if offset is None:
        raise Invalid(
            N_("Say where these bytes go (Upload-Offset)."), code="evidence_offset_required"
        )
    who = await principal(request)
    received = await uploads.do_receive(
        request.app[SESSIONMAKER],
        rt.store,
        rt.states,
        who,
        case_id,
        upload_id,
        offset,
        request.content_length,
        # Each piece as the socket delivered it (no re-joining into fixed sizes here).
        request.content.iter_any(),
    )
    headers = {"Upload-Offset": str(received.offset)}
    if received.item is not None:
        headers["Evidence-Item-Id"] = str(received.item.id)
        headers["Evidence-Item-Number"] = str(received.item.number)
        headers["Evidence-Item-Url"] = f"{PREFIX}/cases/{case_id}/evidence/{received.item.number}"
    return web.Response(status=204, headers=headers)


async def tus_delete(
    request: web.Request, rt: EvidenceRuntime, case_id: int, upload_id: int
) -> web.StreamResponse:
    if (refused := _check_tus(request, rt)) is not None:
        return refused
    who = await principal(request)
    await uploads.do_terminate(
        request.app[SESSIONMAKER], rt.store, rt.states, who, case_id, upload_id
    )
    return web.Response(status=204)


# ---- items ---------------------------------------------------------------------------------------


async def list_evidence(request: web.Request, rt: EvidenceRuntime, case_id: int) -> web.Response:
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        rows = await items.list_items(session, case)
        return json_response({"case_id": case.id, "items": [item_json(case.id, i) for i in rows]})


async def get_evidence(
    request: web.Request, rt: EvidenceRuntime, case_id: int, number: int
) -> web.Response:
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        item = await items.get_item(session, case, number)
        proof = await items.do_view_item(session, who, case, item, rt.key)
        data = item_json(case.id, item)
        data["ledger"] = {
            "leaf_index": proof.proof.leaf_index,
            "entry": proof.entry,
            "leaf_hash": proof.leaf_hash,
            "tree_size": proof.proof.tree_size,
            "inclusion_proof": [p.hex() for p in proof.proof.path],
            "tree_head": ledger.tree_head_json(proof.head, rt.key),
        }
        return json_response(data)


async def download_evidence(
    request: web.Request, rt: EvidenceRuntime, case_id: int, number: int
) -> web.StreamResponse:
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        item = await items.get_item(session, case, number)
        await items.do_record_download(session, who, case, item)
    return await stream_item(request, rt, item)


async def withdraw_evidence(
    request: web.Request, rt: EvidenceRuntime, case_id: int, number: int, body: WithdrawRequest
) -> web.Response:
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        item = await items.get_item(session, case, number)
        item = await items.do_withdraw(session, who, case, item, body.reason)
        return json_response(item_json(case.id, item))


async def match_file(request: web.Request, rt: EvidenceRuntime, case_id: int) -> web.Response:
    async with transaction(request) as session:
        who = await _principal(request, session)
        await items.load_case(session, who, case_id)
    sha256, size = await items.hash_stream(
        request.content.iter_chunked(CHUNK_SIZE), rt.limits.max_file_bytes
    )
    async with transaction(request) as session:
        case = await items.load_case(session, who, case_id)
        found = await items.do_match(session, who, case, sha256, size)
        return json_response(
            {
                "sha256": sha256,
                "size": size,
                "matched": bool(found),
                "items": [
                    {
                        "number": i.number,
                        "title": i.title,
                        "submitted_at": i.submitted_at.isoformat(),
                        "submitter": i.submitter_label,
                        "status": i.status,
                        "url": f"{PREFIX}/cases/{case.id}/evidence/{i.number}",
                    }
                    for i in found
                ],
            }
        )


# ---- examination (质证) ------------------------------------------------------------------------------


def opinion_json(opinion: EvidenceOpinion) -> dict[str, Any]:
    return {
        "id": opinion.id,
        "item_id": opinion.item_id,
        "party_id": opinion.party_id,
        "property": opinion.property,
        "property_label": _label(PROPERTIES, opinion.property),
        "stance": opinion.stance,
        "stance_label": _label(STANCES, opinion.stance),
        "reason": opinion.reason,
        "corrects": opinion.corrects_id,
        "recorded_by": {
            "type": opinion.recorded_by_type,
            "id": opinion.recorded_by_id,
            "label": opinion.recorder_label,
        },
        "at": opinion.created_at.isoformat(),
        "ledger_index": opinion.ledger_seq,
    }


async def examination_matrix(
    request: web.Request, rt: EvidenceRuntime, case_id: int
) -> web.Response:
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        rows = await items.list_items(session, case)
        grid = await examination.matrix(session, case, rows)
        return json_response(
            {
                "case_id": case.id,
                "properties": [{"code": c, "label": _label(PROPERTIES, c)} for c in PROPERTIES],
                "parties": [{"id": p.id, "name": p.name, "role": p.role} for p in grid.parties],
                "items": [
                    {
                        "number": item.number,
                        "title": item.title,
                        "status": item.status,
                        "cells": [
                            {
                                "party_id": party.id,
                                "property": prop,
                                "applies": cell.applies,
                                "current": opinion_json(cell.current) if cell.current else None,
                                "history": [opinion_json(o) for o in cell.history],
                            }
                            for party in grid.parties
                            for prop in PROPERTIES
                            for cell in [grid.cell(item, party, prop)]
                        ],
                    }
                    for item in grid.items
                ],
            }
        )


async def state_opinions(
    request: web.Request, rt: EvidenceRuntime, case_id: int, number: int, body: OpinionsRequest
) -> web.Response:
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        item = await items.get_item(session, case, number)
        created = await examination.do_state_opinions(
            session,
            who,
            case,
            item,
            body.party_id,
            [
                examination.OpinionInput(o.property, o.stance, o.reason, o.corrects)
                for o in body.opinions
            ],
        )
        return json_response({"opinions": [opinion_json(o) for o in created]}, status=201)


async def edit_opinion(
    request: web.Request, rt: EvidenceRuntime, case_id: int, number: int, opinion_id: int
) -> web.Response:
    """There is no edit: authorised like the rest, then always refused with the reason."""
    async with transaction(request) as session:
        who = await _principal(request, session)
        case = await items.load_case(session, who, case_id)
        await items.get_item(session, case, number)
    raise OpinionFinal()


# ---- ledger --------------------------------------------------------------------------------------


async def tree_head(request: web.Request, rt: EvidenceRuntime) -> web.Response:
    async with transaction(request) as session:
        await _principal(request, session)
        head = await ledger.latest_tree_head(session, rt.key, max_age=items.TREE_HEAD_MAX_AGE)
        if head.tree_size < await ledger.tree_size(session):
            head = await ledger.sign_tree_head(session, rt.key)
        return json_response(ledger.tree_head_json(head, rt.key))


async def tree_heads(
    request: web.Request, rt: EvidenceRuntime, query: TreeHeadsQuery
) -> web.Response:
    """Public on purpose: tree heads name no case and no person, and whoever keeps one can
    later hold the platform to it."""
    async with transaction(request) as session:
        statement = select(TreeHead).order_by(TreeHead.id.desc()).limit(query.limit)
        if query.before is not None:
            statement = statement.where(TreeHead.id < query.before)
        heads = list(await session.scalars(statement))
        return json_response(
            {
                "public_key": base64.b64encode(rt.key.public_raw).decode(),
                "key_id": rt.key.key_id,
                "tree_heads": [{"id": h.id, **ledger.tree_head_json(h)} for h in heads],
            }
        )


async def consistency(
    request: web.Request, rt: EvidenceRuntime, query: ConsistencyQuery
) -> web.Response:
    async with transaction(request) as session:
        await _principal(request, session)
        size = await ledger.tree_size(session)
        if not query.first <= query.second <= size:
            raise Invalid(
                N_("Ask for sizes with first ≤ second ≤ the ledger's size (%(size)d)."),
                code="evidence_proof_range",
                size=size,
            )
        proof = await ledger.prove_consistency(session, query.first, query.second)
        return json_response(
            {"first": query.first, "second": query.second, "proof": [p.hex() for p in proof]}
        )
