"""The evidence pages, for staff (signed in) and for parties (through their hearing link):

- ``/cases/{id}/evidence`` and ``/h/{token}/evidence`` — the case's evidence with thumbnails,
  the upload form (tus from the browser, ``evidence-upload.js``) and, for a party, the
  examination (质证) forms for the other side's items;
- ``…/evidence/{n}/preview`` — the item's thumbnail or first page (made once, stored encrypted);
- ``…/evidence/{n}/receipt`` — the receipt: hash, time, submitter, inclusion proof, signed tree
  head and how to verify them (opening it is a "viewed" ledger event);
- ``/h/{token}/evidence/{n}/content`` — the file for a party (staff use the API route);
- ``/cases/{id}/evidence/examination`` — the mediator's matrix: items × parties × properties.

Also the evidence runtime of the app (store, key, limits), shared with ``server.api.evidence``,
the streaming of an item's bytes, and the periodic housekeeping (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access as case_access
from cases.catalogue import N_
from cases.errors import Conflict, DomainError, Forbidden, Invalid
from cases.models import Case, Party, utcnow
from config import Settings
from evidence import (
    examination,
    filetypes,
    housekeeping,
    items,
    ledger,
    presenting,
    previews,
    receipts,
)
from evidence.access import Principal, party_principal, staff_principal
from evidence.catalogue import (
    CATEGORIES,
    MAX_PURPOSE_CHARS,
    MAX_TITLE_CHARS,
    PROPERTIES,
    STANCES,
    STATUSES,
    SUBMITTED,
)
from evidence.models import EvidenceItem, EvidenceOpinion
from evidence.runtime import EvidenceRuntime
from evidence.storage import StoredFileError
from web import i18n
from web.context import (
    SESSIONMAKER,
    SETTINGS,
    actor,
    byte_range,
    client_ip,
    require_user,
    settings,
    template_context,
    transaction,
)
from web.i18n import gettext as _

log = logging.getLogger("yuntiao")

API = "/api/v1"

# Texts of ``evidence-upload.js`` (translated here; the script has no gettext).
UPLOAD_TEXTS: dict[str, str] = {
    "choose_file": N_("Choose the file first."),
    "title_required": N_("Give the evidence a title."),
    "category_required": N_("Choose the kind of evidence."),
    "purpose_required": N_("Say what the evidence is meant to prove."),
    "starting": N_("Starting the upload…"),
    "progress": N_("Sent %(done)s of %(total)s (%(percent)s%%)"),
    "retrying": N_(
        "The connection dropped. Trying again in a moment; the upload continues where it stopped."
    ),
    "resuming": N_("Continuing the earlier upload of this file from %(done)s."),
    "done": N_("Received and registered as evidence item %(number)s."),
    "failed": N_("The upload did not finish: %(message)s"),
    "gave_up": N_(
        "The connection keeps failing. Check your network and press “Upload” again: the upload "
        "continues where it stopped."
    ),
    "cancelled": N_("The upload was cancelled."),
}

# Texts of ``evidence-viewer.js`` in the hearing room (``evidence_stage.html``).
VIEWER_TEXTS: dict[str, str] = {
    "presented": N_("Evidence %(number)s, presented by %(name)s: %(title)s"),
    "page": N_("Page %(page)s of %(pages)s"),
    "tap_to_play": N_("Tap to play"),
    "cannot_show": N_("This file cannot be shown here."),
    "open_file": N_("Open the file"),
    "item": N_("No. %(number)s %(title)s"),
    "none": N_("No evidence to present yet."),
}

# What a page shows for a file that has no picture preview.
NO_PREVIEW: dict[str, str] = {
    "audio": N_("Audio recording: no picture preview. Open the file to listen."),
    "video": N_("Video: no preview could be made. Open the file to watch."),
    "heic": N_(
        "Apple HEIC photo: kept as sent, but no preview can be shown here. Open the file to see it."
    ),
    "document": N_("No preview for this kind of file. Open the file to read it."),
}
ICON_GROUPS = {
    "mp3": "audio",
    "m4a": "audio",
    "wav": "audio",
    "ogg": "audio",
    "mp4": "video",
    "webm": "video",
    "mov": "video",
    "heic": "heic",
}

DONE_MESSAGES: dict[str, str] = {
    "recorded": N_("The opinion has been recorded. It can no longer be changed, only corrected."),
    "uploaded": N_("The evidence has been received and registered."),
    "examined": N_("Your opinion has been recorded. It can no longer be changed, only corrected."),
}


# ---- the runtime ---------------------------------------------------------------------------------


class RuntimeHolder:
    """The app's ``EvidenceRuntime``, built on first use (it creates key files in the data dir)."""

    def __init__(self, config: Settings) -> None:
        self._settings = config
        self._runtime: EvidenceRuntime | None = None

    def get(self) -> EvidenceRuntime:
        if self._runtime is None:
            self._runtime = EvidenceRuntime.from_settings(self._settings)
        return self._runtime


EVIDENCE = web.AppKey("evidence_runtime", RuntimeHolder)


def runtime(request: web.Request) -> EvidenceRuntime:
    return request.app[EVIDENCE].get()


def setup(app: web.Application) -> None:
    app[EVIDENCE] = RuntimeHolder(app[SETTINGS])
    # The hearing room includes the viewer (its handler lives in ``web.hearing``).
    aiohttp_jinja2.get_env(app).globals["evidence_viewer_texts"] = lambda: {
        key: _(text) for key, text in VIEWER_TEXTS.items()
    }
    app.cleanup_ctx.append(_housekeeping)
    r = app.router
    r.add_get(r"/cases/{case_id:\d+}/evidence", staff_page)
    r.add_get(r"/cases/{case_id:\d+}/evidence/examination", matrix_page)
    r.add_post(r"/cases/{case_id:\d+}/evidence/examination", matrix_record)
    r.add_get(r"/cases/{case_id:\d+}/evidence/{number:\d+}/preview", staff_preview)
    r.add_get(r"/cases/{case_id:\d+}/evidence/{number:\d+}/receipt", staff_receipt)
    r.add_get(r"/cases/{case_id:\d+}/evidence/{number:\d+}/receipt.pdf", staff_receipt_pdf)
    r.add_get("/h/{token}/evidence", party_page)
    r.add_get(r"/h/{token}/evidence/{number:\d+}/preview", party_preview)
    r.add_get(r"/h/{token}/evidence/{number:\d+}/receipt", party_receipt)
    r.add_get(r"/h/{token}/evidence/{number:\d+}/receipt.pdf", party_receipt_pdf)
    r.add_get(r"/h/{token}/evidence/{number:\d+}/content", party_content)
    r.add_post(r"/h/{token}/evidence/{number:\d+}/opinions", party_opinions)
    r.add_get("/evidence/presented/{ticket}", presented_content)


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Expire abandoned uploads and sign tree heads on the settings' intervals."""
    config = app[SETTINGS]
    task: asyncio.Task[None] | None = None
    if config.evidence_housekeeping_interval_s > 0:
        task = asyncio.create_task(
            housekeeping.run_periodically(
                app[SESSIONMAKER],
                app[EVIDENCE].get,
                config.evidence_housekeeping_interval_s,
                dt.timedelta(seconds=config.evidence_upload_expiry_s),
                config.evidence_tree_head_interval_s,
            )
        )
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---- serving bytes -------------------------------------------------------------------------------


async def stream_item(
    request: web.Request, rt: EvidenceRuntime, item: EvidenceItem, *, inline: bool = False
) -> web.StreamResponse:
    """The item's decrypted bytes (Range supported), or an error page/JSON when the stored copy
    is damaged. Authorisation and the ledger event are the caller's."""
    wanted = byte_range(request, item.size)
    if wanted is None:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{item.size}"})
    start, end, asked = wanted
    status = 206 if asked else 200
    kind = filetypes.FILE_TYPES.get(item.file_type)
    fallback = f"evidence-{item.number}.{item.file_type if kind else 'bin'}"
    disposition = "inline" if inline else "attachment"
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Type": item.media_type,
            "Content-Disposition": f'{disposition}; filename="{fallback}"; '
            f"filename*=UTF-8''{quote(item.original_filename, safe='')}",
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, no-store",
            "Repr-Digest": f"sha-256=:{_b64(item.sha256)}:",
            # Served from our origin: never let a browser run what a party uploaded.
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{item.size}"
    response.content_length = end - start
    pieces = rt.store.read(item.blob_id, start, end).__aiter__()
    first_piece = b""
    try:
        # The first piece before the headers: a damaged file is then an error, not a download.
        first_piece = await pieces.__anext__()
    except StopAsyncIteration:
        pass
    except StoredFileError:
        log.error(
            "evidence file %s of case %s item %s is damaged",
            item.blob_id,
            item.case_id,
            item.number,
        )
        raise Damaged() from None
    await response.prepare(request)
    try:
        await response.write(first_piece)
        async for piece in pieces:
            await response.write(piece)
    except StoredFileError:
        log.error(
            "evidence file %s of case %s item %s is damaged",
            item.blob_id,
            item.case_id,
            item.number,
        )
        # Headers are gone: cut the connection so the client sees an incomplete download.
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


class Damaged(DomainError):
    """The stored copy does not decrypt (HTTP 500 at the edge)."""

    code = "evidence_damaged"

    def __init__(self) -> None:
        super().__init__(
            N_(
                "The stored copy of this evidence is damaged. Tell the mediation office; the "
                "administrator can run `yuntiao evidence verify`."
            )
        )


def _b64(hex_digest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


async def preview_response(request: web.Request, item: EvidenceItem) -> web.StreamResponse:
    rt = runtime(request)
    async with rt.preview_slots:
        preview = await previews.ensure(request.app[SESSIONMAKER], rt.store, rt.preview_locks, item)
    if preview.status != previews.READY:
        group = ICON_GROUPS.get(item.file_type, "document")
        raise web.HTTPSeeOther(f"/static/img/evidence-{group}.svg")
    try:
        data = await previews.read(rt.store, preview)
    except StoredFileError:
        log.error("preview of evidence item %s is damaged", item.id)
        raise web.HTTPSeeOther("/static/img/evidence-document.svg") from None
    return web.Response(
        body=data,
        content_type=preview.media_type,
        headers={"Cache-Control": "private, max-age=3600"},
    )


# ---- who is looking --------------------------------------------------------------------------------


@dataclass
class Viewer:
    """Who opened the page and where their links point."""

    principal: Principal
    case: Case
    base: str  # /cases/{id}/evidence or /h/{token}/evidence
    token: str = ""
    party: Party | None = None  # for a party: whose opinions they state (agents: the principal)
    parties: dict[int, Party] = field(default_factory=dict)

    @property
    def is_staff(self) -> bool:
        return self.principal.is_staff

    def content_url(self, item: EvidenceItem) -> str:
        if self.is_staff:
            return f"{API}/cases/{self.case.id}/evidence/{item.number}/content"
        return f"{self.base}/{item.number}/content"


async def _staff_viewer(session: AsyncSession, request: web.Request) -> Viewer:
    require_user(request)
    who = staff_principal(actor(request))
    case = await items.load_case(session, who, int(request.match_info["case_id"]))
    return Viewer(who, case, f"/cases/{case.id}/evidence", parties={p.id: p for p in case.parties})


async def _party_viewer(session: AsyncSession, request: web.Request) -> Viewer:
    token = request.match_info["token"]
    who = await party_principal(
        session,
        settings(request).secret_key,
        token,
        utcnow(),
        client_ip(request),
        request.headers.get("User-Agent", ""),
    )
    assert who.case_id is not None
    case = await items.load_case(session, who, who.case_id)
    parties = {p.id: p for p in case.parties}
    me = parties.get(who.party_id) if who.party_id is not None else None
    party = me
    if (
        me is not None and me.role == examination.AGENT_ROLE
    ):  # states opinions for whom they represent
        party = parties.get(me.represents_id) if me.represents_id is not None else None
    return Viewer(who, case, f"/h/{token}/evidence", token=token, party=party, parties=parties)


def _render(
    request: web.Request, template: str, values: dict[str, Any], status: int = 200
) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, template_context(request, **values), status=status
    )
    # Party pages carry their link in the path: never leak it in a Referer, never cache.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- the list -------------------------------------------------------------------------------------


def _label(vocabulary: dict[str, str], code: str) -> str:
    return _(vocabulary[code]) if code in vocabulary else code


def _size(n: int) -> str:
    if n < 1024:
        return _("%(n)s bytes", n=n)
    if n < 1024 * 1024:
        return _("%(n)s KB", n=f"{n / 1024:.1f}")
    if n < 1024**3:
        return _("%(n)s MB", n=f"{n / 1024 / 1024:.1f}")
    return _("%(n)s GB", n=f"{n / 1024**3:.2f}")


async def _list_values(
    session: AsyncSession,
    request: web.Request,
    viewer: Viewer,
    *,
    errors: dict[int, str] | None = None,
) -> dict[str, Any]:
    rows = await items.list_items(session, viewer.case)
    grid = await examination.matrix(session, viewer.case, rows)
    listed = []
    for item in rows:
        kind = filetypes.FILE_TYPES.get(item.file_type)
        group = ICON_GROUPS.get(item.file_type, "document")
        mine: dict[str, EvidenceOpinion | None] | None = None
        if (
            viewer.party is not None
            and item.status == SUBMITTED
            and examination.examines(item, viewer.party, viewer.parties)
        ):
            mine = {
                prop: grid.cell(item, viewer.party, prop).current
                for prop in PROPERTIES
                if (item.id, viewer.party.id, prop) in grid.cells
            }
        listed.append(
            {
                "item": item,
                "category": _label(CATEGORIES, item.category),
                "status": _label(STATUSES, item.status),
                "kind": _(kind.label) if kind else item.file_type,
                "size": _size(item.size),
                "content_url": viewer.content_url(item),
                "preview_url": f"{viewer.base}/{item.number}/preview",
                "receipt_url": f"{viewer.base}/{item.number}/receipt",
                "no_preview": _(NO_PREVIEW[group]),
                "pictured": item.file_type in previews.IMAGE_TYPES | {"pdf"} or group == "video",
                "examine": mine,
                "error": (errors or {}).get(item.number),
            }
        )
    rt = runtime(request)
    done = request.query.get("done", "")
    return {
        "case": viewer.case,
        "viewer": viewer,
        "listed": listed,
        "properties": [(code, _(text)) for code, text in PROPERTIES.items()],
        "stances": [(code, _(text)) for code, text in STANCES.items()],
        "stance_labels": {code: _(text) for code, text in STANCES.items()},
        "categories": [(code, _(text)) for code, text in CATEGORIES.items()],
        "upload": {
            "endpoint": f"{API}/cases/{viewer.case.id}/evidence/uploads",
            "token": viewer.token,
            "max_bytes": rt.limits.max_file_bytes,
            "max_size": _size(rt.limits.max_file_bytes),
            "texts": {key: _(text) for key, text in UPLOAD_TEXTS.items()},
        },
        "max_title": MAX_TITLE_CHARS,
        "max_purpose": MAX_PURPOSE_CHARS,
        "notice": _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None,
    }


async def staff_page(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _staff_viewer(session, request)
        values = await _list_values(session, request, viewer)
    return _render(request, "evidence_list.html", values)


async def party_page(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _party_viewer(session, request)
        values = await _list_values(session, request, viewer)
    return _render(request, "evidence_list.html", values)


# ---- previews, content ------------------------------------------------------------------------------


async def _item(session: AsyncSession, request: web.Request, viewer: Viewer) -> EvidenceItem:
    return await items.get_item(session, viewer.case, int(request.match_info["number"]))


async def staff_preview(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _staff_viewer(session, request)
        item = await _item(session, request, viewer)
    return await preview_response(request, item)


async def party_preview(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _party_viewer(session, request)
        item = await _item(session, request, viewer)
        items.check_download(viewer.principal, item)
    return await preview_response(request, item)


async def party_content(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _party_viewer(session, request)
        item = await _item(session, request, viewer)
        await items.do_record_download(session, viewer.principal, viewer.case, item)
    return await _page_stream(request, item, inline=request.query.get("inline") == "1")


async def _page_stream(
    request: web.Request, item: EvidenceItem, *, inline: bool
) -> web.StreamResponse:
    """``stream_item`` for the pages: a damaged copy is a readable 500 page."""
    try:
        response = await stream_item(request, runtime(request), item, inline=inline)
    except Damaged as exc:
        message = i18n.translate(exc.message, exc.params, settings(request).timezone)
        raise web.HTTPInternalServerError(text=message) from None
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def presented_content(request: web.Request) -> web.StreamResponse:
    """The file presented in the hearing, for whoever it was presented to (a ticket each)."""
    async with transaction(request) as session:
        item = await presenting.load_ticket(
            session, settings(request).secret_key, request.match_info["ticket"]
        )
    return await _page_stream(request, item, inline=True)


# ---- examination ------------------------------------------------------------------------------------


async def party_opinions(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    opinions = []
    for prop in PROPERTIES:
        stance = form.get(f"stance_{prop}", "")
        if not isinstance(stance, str) or not stance:
            continue
        reason = form.get(f"reason_{prop}", "")
        corrects = form.get(f"corrects_{prop}", "")
        opinions.append(
            examination.OpinionInput(
                prop,
                stance,
                reason if isinstance(reason, str) else "",
                int(corrects) if isinstance(corrects, str) and corrects.isdigit() else None,
            )
        )
    number = int(request.match_info["number"])
    try:
        async with transaction(request) as session:
            viewer = await _party_viewer(session, request)
            item = await _item(session, request, viewer)
            await examination.do_state_opinions(
                session, viewer.principal, viewer.case, item, None, opinions
            )
    except DomainError as exc:
        if exc.code.startswith("invitation_") or exc.code in ("evidence_forbidden", "not_found"):
            raise
        message = i18n.translate(exc.message, exc.params, settings(request).timezone)
        async with transaction(request) as session:
            viewer = await _party_viewer(session, request)
            values = await _list_values(session, request, viewer, errors={number: message})
        status = 409 if exc.code.endswith(("_exists", "_not_current", "withdrawn")) else 422
        if exc.code in ("evidence_own_side", "evidence_examine_forbidden"):
            status = 403
        return _render(request, "evidence_list.html", values, status=status)
    response = web.Response(
        status=303,
        headers={
            "Location": f"/h/{request.match_info['token']}/evidence?done=examined#item-{number}"
        },
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def _matrix_values(
    session: AsyncSession, request: web.Request, viewer: Viewer
) -> dict[str, Any]:
    rows = await items.list_items(session, viewer.case)
    grid = await examination.matrix(session, viewer.case, rows)
    user = require_user(request)
    done = request.query.get("done", "")
    return {
        "case": viewer.case,
        "grid": grid,
        "properties": [(code, _(text)) for code, text in PROPERTIES.items()],
        "stances": [(code, _(text)) for code, text in STANCES.items()],
        "stance_label": lambda code: _label(STANCES, code),
        "status_label": lambda code: _label(STATUSES, code),
        "can_record": case_access.can_progress_case(user, viewer.case),
        "open_items": [i for i in rows if i.status == SUBMITTED],
        "error": None,
        "values": {},
        "notice": _(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None,
    }


async def matrix_page(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _staff_viewer(session, request)
        values = await _matrix_values(session, request, viewer)
    return _render(request, "evidence_matrix.html", values)


def _form_int(form: Any, name: str) -> int | None:
    raw = form.get(name, "")
    return int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 10 else None


async def matrix_record(request: web.Request) -> web.StreamResponse:
    """Staff record an opinion a party stated in the hearing (a correction when ticked)."""
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    number, party_id = _form_int(form, "number"), _form_int(form, "party_id")
    prop = values.get("property", "")
    try:
        async with transaction(request) as session:
            viewer = await _staff_viewer(session, request)
            if number is None:
                raise Invalid(N_("Choose the evidence."), code="evidence_number_required")
            item = await items.get_item(session, viewer.case, number)
            corrects = None
            if values.get("correction") == "yes" and party_id is not None:
                grid = await examination.matrix(session, viewer.case, [item])
                cell = grid.cells.get((item.id, party_id, prop))
                current = cell.current if cell is not None else None
                corrects = current.id if current is not None else None
            await examination.do_state_opinions(
                session,
                viewer.principal,
                viewer.case,
                item,
                party_id,
                [
                    examination.OpinionInput(
                        prop, values.get("stance", ""), values.get("reason", ""), corrects
                    )
                ],
            )
    except DomainError as exc:
        if isinstance(exc, Forbidden) or exc.code in ("not_found", "case_not_found"):
            raise
        async with transaction(request) as session:
            viewer = await _staff_viewer(session, request)
            page = await _matrix_values(session, request, viewer)
        page.update(
            error=i18n.translate(exc.message, exc.params, settings(request).timezone),
            values=values,
        )
        status = 409 if isinstance(exc, Conflict) else 422
        return _render(request, "evidence_matrix.html", page, status=status)
    raise web.HTTPSeeOther(f"/cases/{viewer.case.id}/evidence/examination?done=recorded#record")


# ---- receipts ---------------------------------------------------------------------------------------


async def _receipt(request: web.Request, viewer: Viewer, session: AsyncSession) -> dict[str, Any]:
    rt = runtime(request)
    item = await _item(session, request, viewer)
    proof = await items.do_view_item(session, viewer.principal, viewer.case, item, rt.key)
    head = ledger.tree_head_json(proof.head, rt.key)
    signed_at = dt.datetime.fromtimestamp(proof.head.timestamp_ms / 1000, dt.UTC)
    return {
        "case": viewer.case,
        "viewer": viewer,
        "item": item,
        "category": _label(CATEGORIES, item.category),
        "kind": _label({k: v.label for k, v in filetypes.FILE_TYPES.items()}, item.file_type),
        "size": _size(item.size),
        "proof": proof,
        "path": [p.hex() for p in proof.proof.path],
        "head": head,
        "signed_at": signed_at,
        "entry_pretty": json.dumps(json.loads(proof.entry), ensure_ascii=False, indent=2),
        "list_url": viewer.base,
        "pdf_url": f"{viewer.base}/{item.number}/receipt.pdf",
        "howto": [_(step) for step in RECEIPT_HOWTO],
    }


async def staff_receipt(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _staff_viewer(session, request)
        values = await _receipt(request, viewer, session)
    return _render(request, "evidence_receipt.html", values)


async def party_receipt(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _party_viewer(session, request)
        values = await _receipt(request, viewer, session)
    return _render(request, "evidence_receipt.html", values)


# The verification steps, shown on the receipt page and printed in the PDF.
RECEIPT_HOWTO: list[str] = [
    N_(
        "Compute the SHA-256 of your copy of the file (for example `sha256sum file` or "
        "`certutil -hashfile file SHA256`) and compare it with the hash above. Equal hashes "
        "mean the same bytes."
    ),
    N_(
        "The ledger entry above names this hash. Its leaf hash is SHA-256 of a zero byte "
        "followed by the entry's bytes (UTF-8)."
    ),
    N_(
        "Combine the leaf hash with the audit path as RFC 6962 (Certificate Transparency) "
        "describes: each step is SHA-256 of a one byte, then the left and the right hash. The "
        "result must equal the root hash."
    ),
    N_(
        "Check the Ed25519 signature with the platform public key over the RFC 6962 tree head: "
        "version 0, signature type 1, the timestamp and the tree size as 8-byte big-endian "
        "numbers, then the root hash."
    ),
    N_(
        "Keep this receipt. Anyone holding it can later ask the platform for a consistency "
        "proof (GET /api/v1/evidence/ledger/consistency) to a newer tree head: if any earlier "
        "entry had been removed or changed, no such proof exists."
    ),
]


async def _receipt_pdf(request: web.Request, values: dict[str, Any]) -> web.Response:
    item: EvidenceItem = values["item"]
    case: Case = values["case"]
    head = values["head"]
    proof = values["proof"]
    local = i18n.format_local
    zone = ZoneInfo(settings(request).timezone)
    sections = [
        (
            _("No. %(number)s", number=item.number) + " " + item.title,
            [
                (_("Case"), f"{case.number} {case.title}"),
                (_("Evidence number"), str(item.number)),
                (_("Kind of evidence"), values["category"]),
                (_("Submitted by"), item.submitter_label),
                (_("Registered at"), local(item.submitted_at, zone)),
                (_("File"), f"{values['kind']}, {values['size']} ({item.size} B)"),
                (_("Original file name (information only)"), item.original_filename),
                (_("SHA-256 of the file"), item.sha256),
            ],
        ),
        (
            _("Proof of registration"),
            [
                (_("Ledger entry (leaf index)"), str(proof.proof.leaf_index)),
                (_("Leaf hash"), proof.leaf_hash),
                (_("Ledger entry (the exact bytes hashed)"), proof.entry),
                (
                    _("Inclusion proof (audit path, from the leaf upwards)"),
                    "\n".join(values["path"]) or _("empty: the ledger had only this entry"),
                ),
            ],
        ),
        (
            _("Signed tree head"),
            [
                (_("Tree size"), str(head["tree_size"])),
                (_("Signed at"), f"{local(values['signed_at'], zone)} ({head['timestamp_ms']} ms)"),
                (_("Root hash"), head["root_hash"]),
                (_("Signature (Ed25519, base64)"), head["signature"]),
                (_("Platform public key (base64)"), head.get("public_key", "")),
                (_("Key id (SHA-256 of the public key)"), head["key_id"]),
            ],
        ),
    ]
    title = _("Evidence receipt")
    data = await asyncio.to_thread(
        receipts.render_receipt,
        title=title,
        header=case.number,
        document_id=f"EV-{case.id}-{item.number}-{proof.proof.tree_size}",
        sections=sections,
        howto_heading=_("How to verify this receipt"),
        howto=[_(step) for step in RECEIPT_HOWTO],
        font_path=settings(request).document_font_path,
    )
    return web.Response(
        body=data,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="evidence-receipt-{case.id}-{item.number}.pdf"',
            "Cache-Control": "private, no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


async def staff_receipt_pdf(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _staff_viewer(session, request)
        values = await _receipt(request, viewer, session)
    return await _receipt_pdf(request, values)


async def party_receipt_pdf(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        viewer = await _party_viewer(session, request)
        values = await _receipt(request, viewer, session)
    return await _receipt_pdf(request, values)
