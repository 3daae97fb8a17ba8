"""Pages of hearing records (调解笔录) and case notes.

Staff (signed in):

- ``GET /cases/{case_id}/notes`` — the case's documents: shared notes, the private mediator
  notes (only for those who run the case), and each hearing's record with its frozen state;
- ``GET /cases/{case_id}/notes/{key}`` — one document, edited live (``record-editor.js`` over
  the ``/notes`` namespace), with its history (who, when) and a restore button per version;
- ``POST /cases/{case_id}/notes/{key}/restore`` — restore a version (a new, audited edit).

Parties (their hearing link): ``GET /h/{token}/notes`` — the shared notes and their hearing's
record, read-only and live. The hearing room itself includes the record panel
(``notes_panel.html``).
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access as case_access
from cases.catalogue import N_
from cases.errors import Invalid, NotFound
from cases.intake import get_case
from cases.models import Case, User, utcnow
from notes import access, store
from notes.catalogue import KINDS, PRIVATE, RECORD, SHARED, doc_key
from notes.live import NoteHub
from notes.models import NoteDocument
from rooms import hearings
from rooms.errors import InvitationError
from rooms.models import Hearing
from web import i18n
from web.context import (
    client_ip,
    require_user,
    settings,
    template_context,
    transaction,
)
from web.i18n import gettext as _

NOTES_HUB = web.AppKey("notes_hub", NoteHub)

# Texts of record-editor.js (it has no gettext): translated here, handed over in data-texts.
EDITOR_TEXTS: dict[str, str] = {
    "saved": N_("All changes saved."),
    "saving": N_("Saving…"),
    "offline": N_("Offline: changes are kept here and saved when the connection is back."),
    "read_only": N_("Read only: the mediator and the clerk write this; it updates live."),
    "frozen": N_("Frozen at the end of the hearing: it can no longer be changed."),
    "refused": N_("Not available:"),
    "rejected": N_("Not saved:"),
}
SPEAKERS = (N_("Applicant"), N_("Respondent"), N_("Mediator"))


def setup(app: web.Application) -> None:
    """Add the notes pages (see the module docstring)."""
    app.router.add_get("/cases/{case_id}/notes", case_notes)
    app.router.add_get("/cases/{case_id}/notes/{key}", document_page)
    app.router.add_post("/cases/{case_id}/notes/{key}/restore", restore)
    app.router.add_get("/h/{token}/notes", party_notes)
    # Functions, not values: they translate into the language of the page being rendered. The
    # hearing room (rendered by ``web.hearing``) includes the record panel and needs them too.
    aiohttp_jinja2.get_env(app).globals.update(
        notes_editor_texts=editor_texts, notes_speakers=speakers, notes_kinds=kinds
    )


def hub(request: web.Request) -> NoteHub:
    return request.app[NOTES_HUB]


def editor_texts() -> dict[str, str]:
    return {key: _(text) for key, text in EDITOR_TEXTS.items()}


def speakers() -> list[str]:
    return [_(label) for label in SPEAKERS]


def kinds() -> dict[str, str]:
    return {k: _(v) for k, v in KINDS.items()}


def _render(
    request: web.Request, template: str, values: dict[str, Any], status: int = 200
) -> web.Response:
    values.setdefault("kinds", kinds())
    response = aiohttp_jinja2.render_template(
        template, request, template_context(request, **values), status=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _case_id(request: web.Request) -> int:
    raw = request.match_info["case_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def _staff_case(session: AsyncSession, request: web.Request) -> tuple[User, Case]:
    user = require_user(request)
    case = await get_case(session, _case_id(request))
    case_access.require(case_access.can_view_case(user, case))
    return user, case


def _principal(request: web.Request, user: User) -> access.Principal:
    return access.staff(user, client_ip(request), request.headers.get("User-Agent", ""))


async def _document(
    session: AsyncSession, request: web.Request, user: User, case: Case
) -> tuple[NoteDocument, access.Grant]:
    document, doc_case = await store.open_document(session, request.match_info["key"])
    if doc_case.id != case.id:
        raise NotFound(N_("These notes do not exist."), code="notes_not_found")
    return document, access.check_read(_principal(request, user), document, case)


async def case_notes(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        user, case = await _staff_case(session, request)
        runs = case_access.can_progress_case(user, case)
        case_hearings = await hearings.hearings_of_case(session, case.id)
        documents = {
            d.key: d
            for d in (
                await session.scalars(select(NoteDocument).where(NoteDocument.case_id == case.id))
            ).all()
        }
    rows = [
        {"hearing": h, "key": doc_key(RECORD, hearing_id=h.id), "document": documents.get(
            doc_key(RECORD, hearing_id=h.id)
        )}
        for h in case_hearings
    ]
    return _render(
        request,
        "notes_case.html",
        {
            "case": case,
            "runs": runs,
            "shared_key": doc_key(SHARED, case_id=case.id),
            "private_key": doc_key(PRIVATE, case_id=case.id),
            "records": rows,
        },
    )


async def document_page(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        user, case = await _staff_case(session, request)
        document, grant = await _document(session, request, user, case)
        versions = await store.history(session, document.id)
        hearing = (
            await session.get(Hearing, document.hearing_id) if document.hearing_id else None
        )
    return _render(
        request,
        "notes_document.html",
        {
            "case": case,
            "document": document,
            "hearing": hearing,
            "grant": grant,
            "versions": versions,
            "error": request.query.get("error", "")[:300] or None,
            "notice": _("Restored. The restore is in the history as a new version.")
            if request.query.get("done") == "restored"
            else None,
        },
    )


async def restore(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    form = await request.post()
    raw = form.get("version")
    key = request.match_info["key"]
    case_id = _case_id(request)
    async with transaction(request) as session:
        case = await get_case(session, case_id)
        case_access.require(case_access.can_view_case(user, case))
        document, doc_case = await store.open_document(session, key)
        if doc_case.id != case.id:
            raise NotFound(N_("These notes do not exist."), code="notes_not_found")
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 12:
        raise Invalid(N_("There is no such version."), code="notes_no_such_version")

    async def authorise(session: AsyncSession) -> access.Principal:
        fresh = await session.get(User, user.id)
        if fresh is None:  # pragma: no cover - the session resolved it a moment ago
            raise NotFound(N_("These notes do not exist."), code="notes_not_found")
        return _principal(request, fresh)

    await hub(request).restore(key, int(raw), authorise)
    raise web.HTTPSeeOther(f"/cases/{case.id}/notes/{key}?done=restored")


async def party_notes(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    try:
        async with transaction(request) as session:
            principal = await access.by_link(
                session, settings(request).secret_key, token, utcnow()
            )
            hearing = principal.hearing
            assert hearing is not None
            case = await session.get(Case, hearing.case_id)
            assert case is not None
            record_document = await store.get_document(
                session, doc_key(RECORD, hearing_id=hearing.id)
            )
    except InvitationError as exc:
        values = {
            "link_error": i18n.translate(exc.message, exc.params, settings(request).timezone),
            "link_error_code": exc.code,
        }
        response = _render(request, "hearing_prejoin.html", values, status=403)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    response = _render(
        request,
        "notes_party.html",
        {
            "case": case,
            "hearing": hearing,
            "token": token,
            "participant": principal.participant,
            "record_key": doc_key(RECORD, hearing_id=hearing.id),
            "shared_key": doc_key(SHARED, case_id=case.id),
            "record_document": record_document,
        },
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


