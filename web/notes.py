"""Pages of hearing records (调解笔录) and case notes.

Staff (signed in):

- ``GET /cases/{case_id}/notes`` — the case's documents: shared notes, the private mediator
  notes (only for those who run the case), and each hearing's record with its frozen state;
- ``GET /cases/{case_id}/notes/{key}`` — one document, edited live (``record-editor.js`` over
  the ``/notes`` namespace), with its history (who, when) and a restore button per version;
- ``POST /cases/{case_id}/notes/{key}/restore`` — restore a version (a new, audited edit).

- ``POST /cases/{case_id}/notes/{key}/freeze`` — freeze a hearing record: PDF, SHA-256, audited;
- ``GET /cases/{case_id}/notes/{key}/record.pdf`` — the frozen record.

Parties (their hearing link): ``GET /h/{token}/notes`` — the shared notes and their hearing's
record, read-only and live; once frozen, the PDF (``GET /h/{token}/record.pdf``) and the answer:
``POST /h/{token}/record/code`` (a one-time code by text message), ``…/record/confirm``
(checkbox + code) or ``…/record/objection``. The hearing room itself includes the record panel
(``notes_panel.html``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cases import access as case_access
from cases.actor import Actor
from cases.catalogue import N_
from cases.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from cases.intake import get_case
from cases.models import Case, User, utcnow
from cases.notifications import SMS, Notification, do_notify
from notes import access, links, record, store
from notes.catalogue import KINDS, PRIVATE, RECORD, SHARED, doc_key
from notes.live import NoteHub
from notes.models import NoteDocument, RecordConfirmation
from rooms import hearings
from rooms.catalogue import PARTICIPANT_KINDS, PARTY
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
from web.pages import notification_sender

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
    "writing": N_("Also writing:"),
    # What one click on a speaker button inserts (markdown bold; Chinese uses a full-width colon).
    "speaker_format": N_("**%(speaker)s:** "),
}
SPEAKERS = (N_("Applicant"), N_("Respondent"), N_("Mediator"))
STAFF_DONE = {
    "restored": N_("Restored. The restore is in the history as a new version."),
    "frozen": N_("The record is frozen. Each party can now confirm it or note an objection."),
}
PARTY_DONE = {
    "code": N_("A one-time code has been sent to your phone by text message."),
    "confirmed": N_("Thank you: you have confirmed the hearing record."),
    "objected": N_("Your objection has been recorded with the hearing record."),
}


def setup(app: web.Application) -> None:
    """Add the notes pages (see the module docstring)."""
    app.router.add_get("/cases/{case_id}/notes", case_notes)
    app.router.add_get("/cases/{case_id}/notes/{key}", document_page)
    app.router.add_post("/cases/{case_id}/notes/{key}/restore", restore)
    app.router.add_post("/cases/{case_id}/notes/{key}/freeze", freeze)
    app.router.add_get("/cases/{case_id}/notes/{key}/record.pdf", staff_pdf)
    app.router.add_get("/h/{token}/notes", party_notes)
    app.router.add_get("/h/{token}/record.pdf", party_pdf)
    app.router.add_post("/h/{token}/record/{answer}", party_answer)
    app.router.add_get("/r/{token}", confirmation_page)
    app.router.add_get("/r/{token}/record.pdf", confirmation_pdf)
    app.router.add_post("/r/{token}/{answer}", confirmation_answer)
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
    principal = _principal(request, user)

    def check(document: NoteDocument, doc_case: Case) -> None:
        if doc_case.id != case.id:
            raise NotFound(N_("These notes do not exist."), code="notes_not_found")
        access.check_read(principal, document, doc_case)

    document, _ = await store.open_document(session, request.match_info["key"], check)
    return document, access.grant(principal, document, case)


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
        {
            "hearing": h,
            "key": doc_key(RECORD, hearing_id=h.id),
            "document": documents.get(doc_key(RECORD, hearing_id=h.id)),
        }
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
        hearing = await session.get(Hearing, document.hearing_id) if document.hearing_id else None
        answers = await record.confirmations(session, document.id)
    done = request.query.get("done", "")
    return _render(
        request,
        "notes_document.html",
        {
            "case": case,
            "document": document,
            "hearing": hearing,
            "grant": grant,
            "versions": versions,
            "answers": answers,
            "notice": _(STAFF_DONE[done]) if done in STAFF_DONE else None,
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
        await _document(session, request, user, case)
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 12:
        raise Invalid(N_("There is no such version."), code="notes_no_such_version")

    await hub(request).restore(key, int(raw), _staff_authorise(request, user))
    raise web.HTTPSeeOther(f"/cases/{case.id}/notes/{key}?done=restored")


def _staff_authorise(request: web.Request, user: User) -> Any:
    async def authorise(session: AsyncSession) -> access.Principal:
        fresh = await session.get(User, user.id)
        if fresh is None:  # pragma: no cover - the session resolved it a moment ago
            raise NotFound(N_("These notes do not exist."), code="notes_not_found")
        return _principal(request, fresh)

    return authorise


def record_renderer(request: web.Request) -> Any:
    """The PDF maker for ``NoteHub.freeze``, with the page's language and the settings' font."""
    config = settings(request)
    texts = record.RecordTexts(
        title=_("Hearing record"),
        case_number=_("Case number"),
        hearing=_("Hearing"),
        time=_("Hearing time"),
        frozen_at=_("Frozen at"),
        by=_("Frozen by"),
        present=_("Present"),
        roles={kind: _(label) for kind, label in PARTICIPANT_KINDS.items()},
    )

    def render(text: str, case: Case, hearing: Hearing, at: Any, by: str) -> bytes:
        return record.render_record(
            text, case, hearing, at, by, texts, config.document_font_path, config.timezone
        )

    return render


async def freeze(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    key = request.match_info["key"]
    async with transaction(request) as session:
        user, case = await _staff_case(session, request)
        await _document(session, request, user, case)
    await hub(request).freeze(
        key, _staff_authorise(request, user), record_renderer(request), tell_parties(request)
    )
    raise web.HTTPSeeOther(f"/cases/{case.id}/notes/{key}?done=frozen")


def _pdf(document: NoteDocument) -> web.Response:
    if document.frozen_pdf is None:
        raise NotFound(N_("The record has not been frozen yet."), code="record_not_frozen")
    return web.Response(
        body=document.frozen_pdf,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="record-{document.hearing_id}.pdf"',
            "Cache-Control": "no-store",
            "X-Content-SHA256": document.frozen_sha256,
        },
    )


async def staff_pdf(request: web.Request) -> web.StreamResponse:
    async with transaction(request) as session:
        user, case = await _staff_case(session, request)
        document, _grant = await _document(session, request, user, case)
    return _pdf(document)


def _link_error(request: web.Request, exc: DomainError) -> web.Response:
    values = {
        "link_error": i18n.translate(exc.message, exc.params, settings(request).timezone),
        "link_error_code": exc.code,
    }
    response = _render(request, "hearing_prejoin.html", values, status=403)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def party_notes(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.StreamResponse:
    token = request.match_info["token"]
    try:
        async with transaction(request) as session:
            principal = await access.by_link(session, settings(request).secret_key, token, utcnow())
            hearing = principal.hearing
            assert hearing is not None
            case = await session.get(Case, hearing.case_id)
            assert case is not None
            record_document = await store.get_document(
                session, doc_key(RECORD, hearing_id=hearing.id)
            )
            mine = await _mine(session, record_document, _party_id(principal))
    except InvitationError as exc:
        return _link_error(request, exc)
    return _party_page(
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
            "mine": mine,
            "pdf_url": f"/h/{token}/record.pdf",
            "answer_url": f"/h/{token}/record",
        },
        error,
        status,
    )


async def confirmation_page(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.StreamResponse:
    """``/r/{token}``: the link sent by text message when the record was frozen."""
    token = request.match_info["token"]
    try:
        async with transaction(request) as session:
            document, case, party = await links.read_confirmation_link(
                session, settings(request).secret_key, token
            )
            hearing = await session.get(Hearing, document.hearing_id or 0)
            mine = await _mine(session, document, party.id)
    except links.ConfirmationLinkError as exc:
        return _link_error(request, exc)
    return _party_page(
        request,
        "notes_confirm.html",
        {
            "case": case,
            "hearing": hearing,
            "party": party,
            "record_document": document,
            "mine": mine,
            "pdf_url": f"/r/{token}/record.pdf",
            "answer_url": f"/r/{token}",
        },
        error,
        status,
    )


def _party_page(
    request: web.Request,
    template: str,
    values: dict[str, Any],
    error: str | None,
    status: int,
) -> web.Response:
    done = request.query.get("done", "")
    values.update(notice=_(PARTY_DONE[done]) if done in PARTY_DONE else None, error=error)
    response = _render(request, template, values, status=status)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def _mine(
    session: AsyncSession, document: NoteDocument | None, party_id: int | None
) -> RecordConfirmation | None:
    if document is None or party_id is None:
        return None
    answers = await record.confirmations(session, document.id)
    return next((a for p, a in answers if p.id == party_id), None)


def _status(exc: DomainError) -> int:
    return 409 if isinstance(exc, Conflict) else 403 if isinstance(exc, Forbidden) else 422


def _party_id(principal: access.Principal) -> int | None:
    participant = principal.participant
    if participant is None or participant.kind != PARTY:
        return None
    return participant.party_id


@dataclass(frozen=True)
class Answerer:
    """Who answers a frozen record, through which link."""

    actor: Actor
    document: NoteDocument
    case: Case
    party_id: int | None


async def _by_hearing_link(session: AsyncSession, request: web.Request) -> Answerer:
    principal = await access.by_link(
        session,
        settings(request).secret_key,
        request.match_info["token"],
        utcnow(),
        client_ip(request),
        request.headers.get("User-Agent", ""),
    )
    assert principal.hearing is not None
    document, case = await store.open_document(
        session,
        doc_key(RECORD, hearing_id=principal.hearing.id),
        lambda d, c: access.check_read(principal, d, c),
    )
    return Answerer(principal.actor, document, case, _party_id(principal))


async def _by_confirmation_link(session: AsyncSession, request: web.Request) -> Answerer:
    document, case, party = await links.read_confirmation_link(
        session, settings(request).secret_key, request.match_info["token"]
    )
    actor = Actor(
        "party",
        party.id,
        party.name,
        client_ip(request),
        request.headers.get("User-Agent", "")[:300],
    )
    return Answerer(actor, document, case, party.id)


async def party_pdf(request: web.Request) -> web.StreamResponse:
    return await _pdf_for(request, _by_hearing_link)


async def confirmation_pdf(request: web.Request) -> web.StreamResponse:
    return await _pdf_for(request, _by_confirmation_link)


async def _pdf_for(
    request: web.Request, resolve: Callable[[AsyncSession, web.Request], Awaitable[Answerer]]
) -> web.StreamResponse:
    try:
        async with transaction(request) as session:
            who = await resolve(session, request)
    except (InvitationError, links.ConfirmationLinkError) as exc:
        return _link_error(request, exc)
    response = _pdf(who.document)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def party_answer(request: web.Request) -> web.StreamResponse:
    return await _answer(request, _by_hearing_link, party_notes, "/h/{token}/notes")


async def confirmation_answer(request: web.Request) -> web.StreamResponse:
    return await _answer(request, _by_confirmation_link, confirmation_page, "/r/{token}")


async def _answer(
    request: web.Request,
    resolve: Callable[[AsyncSession, web.Request], Awaitable[Answerer]],
    page: Callable[..., Awaitable[web.StreamResponse]],
    back: str,
) -> web.StreamResponse:
    """``back``: where to go afterwards (``{token}`` is filled in)."""
    answer = request.match_info["answer"]
    if answer not in ("code", "confirm", "objection"):
        raise web.HTTPNotFound()
    form = await request.post()
    try:
        async with transaction(request) as session:
            who = await resolve(session, request)
            if answer == "code":
                number = who.case.number

                def body(code: str) -> str:
                    return _(
                        "Yuntiao: your code to confirm the hearing record of case %(number)s "
                        "is %(code)s. It is valid for 10 minutes. Do not give it to anyone.",
                        number=number,
                        code=code,
                    )

                await record.do_send_code(
                    session,
                    who.actor,
                    notification_sender(session),
                    who.document,
                    who.case,
                    who.party_id,
                    body,
                )
                done = "code"
            elif answer == "confirm":
                code = form.get("code")
                await record.do_confirm(
                    session,
                    who.actor,
                    who.document,
                    who.case,
                    who.party_id,
                    code if isinstance(code, str) else "",
                    form.get("read") == "yes",
                )
                done = "confirmed"
            else:
                text = form.get("objection")
                await record.do_object(
                    session,
                    who.actor,
                    who.document,
                    who.case,
                    who.party_id,
                    text if isinstance(text, str) else "",
                )
                done = "objected"
    except (InvitationError, links.ConfirmationLinkError) as exc:
        return _link_error(request, exc)
    except DomainError as exc:
        message = i18n.translate(exc.message, exc.params, settings(request).timezone)
        return await page(request, error=message, status=_status(exc))
    target = back.format(token=request.match_info["token"]) + f"?done={done}"
    response = web.Response(status=303, headers={"Location": target})
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def tell_parties(request: web.Request) -> Any:
    """``NoteHub.freeze``'s ``after``: each party of the hearing with a phone number gets a text
    message with their own confirmation link, in the freeze's transaction."""
    config = settings(request)

    async def after(
        session: AsyncSession, document: NoteDocument, case: Case, principal: access.Principal
    ) -> None:
        for party, _answer in await record.confirmations(session, document.id):
            if not party.phone.strip():
                continue
            link = (
                config.base_url
                + "/r/"
                + links.issue_confirmation_link(config.secret_key, document, party)
            )
            text = _(
                "Yuntiao: the record of your hearing in case %(number)s is final. Read it and "
                "confirm it, or note an objection, within %(days)s days: %(link)s",
                number=case.number,
                days=links.CONFIRMATION_LINK_DAYS,
                link=link,
            )
            await do_notify(
                session,
                principal.actor,
                notification_sender(session),
                Notification(
                    SMS, party.phone, text, case_id=case.id, hearing_id=document.hearing_id
                ),
                case=case,
            )

    return after
