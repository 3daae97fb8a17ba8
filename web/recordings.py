"""The recordings archive for staff: list and filter, play in the browser (HTTP ranges, so
seeking works), download, legal hold, integrity check. Every access is audited; a party (who
has no staff account) never reaches any of it.

- ``GET  /admin/recordings`` — list, 50 a page (``page``); filters ``organisation`` (the system
  administrator's choice), ``case`` (number or id), ``mediator``, ``from``, ``to`` (the day it
  was recorded); administrators see their organisation (the system administrator all), a
  mediator the hearings of their own cases.
- ``GET  /admin/recordings/{id}/play`` — inline, ``Range`` supported; audited once per play.
- ``GET  /admin/recordings/{id}/download`` — as an attachment; audited.
- ``POST /admin/recordings/{id}/hold`` — legal hold on/off (administrators); audited.
- ``POST /admin/recordings/{id}/verify`` — re-hash now; audited, result shown on the list.
- ``POST /admin/recordings/{id}/share`` and ``…/revoke`` — share with one party of the case
  (``party`` = its id) or all (``party=all``), or withdraw that; administrators of the case's
  organisation only (``recordings.sharing``); audited.

A party reaches recordings only through their own hearing link, and only those shared with them:

- ``GET /h/{token}/recordings`` — the recordings of their case shared with them;
- ``GET /h/{token}/recordings/{id}/play`` and ``…/download`` — as above, audited with the party
  as the actor; another case's, the other side's, a revoked share: a readable 403 page.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import func, select

from cases import access
from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.errors import Forbidden, NotFound
from cases.models import Case, Organisation, Party, User, utcnow
from evidence.storage import StoredFileError
from recordings import archive, sharing
from recordings.catalogue import FILE_KINDS
from recordings.models import RecordingFile
from rooms.access import participant_actor
from rooms.catalogue import AGENT, DENIED, PARTY, REMOVED
from rooms.invitations import read_invitation
from rooms.models import Hearing
from web.context import (
    SESSIONMAKER,
    SETTINGS,
    actor,
    byte_range,
    client_ip,
    require_user,
    template_context,
    transaction,
)
from web.pages import PAGE_SIZE, as_id, paginate, redirect, render, visible_mediators

log = logging.getLogger("yuntiao.recordings")

VIEW_ROLES = access.ADMIN_ROLES | {"mediator"}


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/recordings", list_page)
    app.router.add_get("/admin/recordings/{id}/play", play)
    app.router.add_get("/admin/recordings/{id}/download", download)
    app.router.add_post("/admin/recordings/{id}/hold", hold)
    app.router.add_post("/admin/recordings/{id}/verify", verify_one)
    app.router.add_post("/admin/recordings/{id}/share", share)
    app.router.add_post("/admin/recordings/{id}/revoke", revoke)
    app.router.add_get("/h/{token}/recordings", party_list)
    app.router.add_get("/h/{token}/recordings/{id}/play", party_play)
    app.router.add_get("/h/{token}/recordings/{id}/download", party_download)


def _visible(query: Any, user: User) -> Any:
    if access.is_system_admin(user):
        return query
    if user.role in access.ADMIN_ROLES:
        return query.where(Case.organisation_id == user.organisation_id)
    return query.where(Case.mediator_id == user.id)


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def list_page(request: web.Request) -> web.StreamResponse:
    user = require_user(request, VIEW_ROLES)
    query: Any = (
        select(RecordingFile, Case, Hearing)
        .join(Case, Case.id == RecordingFile.case_id)
        .join(Hearing, Hearing.id == RecordingFile.hearing_id)
    )
    query = _visible(query, user)
    filters = {
        k: request.query.get(k, "").strip()[:100]
        for k in ("organisation", "case", "mediator", "from", "to")
    }
    can_filter_organisation = access.is_system_admin(user)
    if can_filter_organisation and (organisation_id := as_id(filters["organisation"])):
        query = query.where(Case.organisation_id == organisation_id)
    if filters["case"]:
        case_id = as_id(filters["case"])
        query = query.where(
            (Case.id == case_id) if case_id else Case.number.contains(filters["case"])
        )
    if filters["mediator"] and (mediator_id := as_id(filters["mediator"])):
        query = query.where(Case.mediator_id == mediator_id)
    # The day it was recorded (a timeline file has no start of its own: the day it was archived).
    recorded = func.coalesce(RecordingFile.started_at, RecordingFile.created_at)
    start, end = _date(filters["from"]), _date(filters["to"])
    if start:
        query = query.where(recorded >= dt.datetime.combine(start, dt.time(), dt.UTC))
    if end:
        query = query.where(
            recorded < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
        )
    async with transaction(request) as session:
        paging = await paginate(session, query, request, "/admin/recordings", filters)
        rows = (
            await session.execute(
                query.order_by(RecordingFile.created_at.desc(), RecordingFile.id)
                .offset(paging.offset)
                .limit(PAGE_SIZE)
            )
        ).all()
        mediators = await visible_mediators(session, user)
        organisations = (
            (await session.scalars(select(Organisation).order_by(Organisation.name))).all()
            if can_filter_organisation
            else []
        )
        shares = await sharing.active_shares(session, [f.id for f, _c, _h in rows])
        case_ids = {c.id for _f, c, _h in rows}
        parties: dict[int, list[Party]] = {}
        for party in (
            await session.scalars(
                select(Party).where(Party.case_id.in_(case_ids)).order_by(Party.id)
            )
        ).all():
            parties.setdefault(party.case_id, []).append(party)
    names = {p.id: p.name for group in parties.values() for p in group}
    return render(
        request,
        "admin_recordings.html",
        {
            "rows": [
                {
                    "file": f,
                    "case": c,
                    "hearing": h,
                    "shared_with": [
                        {"id": sh.party_id, "name": names.get(sh.party_id, "")}
                        for sh in shares.get(f.id, [])
                    ],
                    "parties": parties.get(c.id, []),
                    "can_share": sharing.can_share(user, c),
                }
                for f, c, h in rows
            ],
            "filters": filters,
            "mediators": mediators,
            "organisations": organisations,
            **paging.values(),
            "kinds": FILE_KINDS,
            "can_hold": user.role in access.ADMIN_ROLES,
            "checked": request.query.get("checked", ""),
            "problem": request.query.get("problem", ""),
            "request_path": "/admin/recordings",
        },
    )


async def _load(session: Any, request: web.Request, user: User) -> tuple[RecordingFile, Case]:
    """The recording named in the path, if this user may see its case (404 / 403 otherwise)."""
    file_id = as_id(request.match_info["id"])
    row = await session.get(RecordingFile, file_id) if file_id else None
    case = await session.get(Case, row.case_id) if row else None
    if row is None or case is None:
        raise NotFound(N_("There is no such recording."), code="recording_not_found")
    if not _may_see(user, case):
        raise Forbidden(N_("You do not have access to this recording."), code="forbidden")
    return row, case


def _may_see(user: User, case: Case) -> bool:
    if access.is_system_admin(user):
        return True
    if user.role in access.ADMIN_ROLES:
        return access.same_organisation(user, case.organisation_id)
    return case.mediator_id == user.id


async def stream_recording(
    request: web.Request, row: RecordingFile, *, attachment: bool
) -> web.StreamResponse:
    """The recording's media bytes with HTTP ranges (seeking), decrypted chunk by chunk when it
    is sealed: a range reads only the chunks it covers. Authorisation and the audit row are the
    caller's. ``KeyMissing`` / ``Unreadable`` (readable 409 pages) when it cannot be read."""
    root = request.app[SETTINGS].recordings_dir
    key = archive.master_key(request.app[SETTINGS].recording_encryption_key)
    try:
        reader = await asyncio.to_thread(archive.open_stored, root, row.path, key)
    except FileNotFoundError:
        raise NotFound(
            N_(
                "The recording's file is missing. Tell the administrator to run "
                "`yuntiao recordings verify`."
            ),
            code="recording_missing",
        ) from None
    try:
        wanted = byte_range(request, reader.size)
        if wanted is None:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{reader.size}"})
        start, end, _asked = wanted
        partial = (start, end) != (0, reader.size)
        response = web.StreamResponse(
            status=206 if partial else 200,
            headers={
                "Content-Type": row.media_type,
                "Accept-Ranges": "bytes",
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )
        if partial:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{reader.size}"
        if attachment:
            suffix = Path(row.path).suffix
            response.headers["Content-Disposition"] = (
                f'attachment; filename="recording-{row.hearing_id}-{row.id}{suffix}"'
            )
        response.content_length = end - start
        await response.prepare(request)
        position = start
        try:
            while position < end:
                piece = await asyncio.to_thread(reader.pread, position, end - position)
                if not piece:
                    break
                await response.write(piece)
                position += len(piece)
        except StoredFileError:
            log.error("recording %s (%s) does not decrypt at %s", row.id, row.path, position)
            # Headers are gone: cut the connection so the client sees an incomplete download.
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    finally:
        reader.close()


async def _send(request: web.Request, *, attachment: bool) -> web.StreamResponse:
    user = require_user(request, VIEW_ROLES)
    async with transaction(request) as session:
        row, case = await _load(session, request, user)
        archive.check_not_deleted(row)
        # One audit row per play or download, not per seek (a seek asks for a later range).
        if not request.http_range.start:
            await record(
                session,
                actor(request),
                AuditAction.RECORDING_DOWNLOADED if attachment else AuditAction.RECORDING_VIEWED,
                object_type="recording_file",
                object_id=row.id,
                case_id=case.id,
                details={"file": row.path, "sha256": row.sha256},
            )
    return await stream_recording(request, row, attachment=attachment)


async def play(request: web.Request) -> web.StreamResponse:
    return await _send(request, attachment=False)


async def download(request: web.Request) -> web.StreamResponse:
    return await _send(request, attachment=True)


async def hold(request: web.Request) -> web.StreamResponse:
    user = require_user(request, access.ADMIN_ROLES)
    form = await request.post()
    async with transaction(request) as session:
        row, case = await _load(session, request, user)
        row.legal_hold = form.get("hold") == "on"
        await record(
            session,
            actor(request),
            AuditAction.RECORDING_HOLD_CHANGED,
            object_type="recording_file",
            object_id=row.id,
            case_id=case.id,
            details={"legal_hold": row.legal_hold},
        )
    return redirect(f"/admin/recordings?case={case.id}")


async def verify_one(request: web.Request) -> web.StreamResponse:
    user = require_user(request, VIEW_ROLES)
    settings = request.app[SETTINGS]
    key = archive.master_key(settings.recording_encryption_key)
    async with request.app[SESSIONMAKER]() as session:
        row, case = await _load(session, request, user)
    # Re-hashing (and decrypting) a long recording takes a while: outside the write transaction.
    problem, _text = await asyncio.to_thread(archive.check_file, settings.recordings_dir, row, key)
    async with transaction(request) as session:
        await record(
            session,
            actor(request),
            AuditAction.RECORDING_VERIFIED,
            object_type="recording_file",
            object_id=row.id,
            case_id=case.id,
            details={"ok": not problem, "problem": problem},
        )
    return redirect(f"/admin/recordings?case={case.id}&checked={row.id}&problem={problem}")


# ---- sharing with parties -------------------------------------------------------------------------


async def _change_share(request: web.Request, *, revoke: bool) -> web.StreamResponse:
    user = require_user(request, access.ADMIN_ROLES)
    form = await request.post()
    choice = form.get("party", "")
    async with transaction(request) as session:
        row, case = await _load(session, request, user)
        change = sharing.do_revoke if revoke else sharing.do_share
        await change(
            session, actor(request), user, row, case, choice if isinstance(choice, str) else ""
        )
    return redirect(f"/admin/recordings?case={case.id}")


async def share(request: web.Request) -> web.StreamResponse:
    return await _change_share(request, revoke=False)


async def revoke(request: web.Request) -> web.StreamResponse:
    return await _change_share(request, revoke=True)


_NO_RECORDINGS = N_("Recordings are shared only with the parties of a case and their agents.")


async def _party(session: Any, request: web.Request) -> tuple[set[int], Case, Actor]:
    """The party behind the hearing link: (their party rows, case, audit actor) — an agent
    also sees what is shared with the party they represent. A bad link is an
    ``InvitationError`` (a readable 403 page); observers, staff links and people denied or
    removed from the hearing have no recordings."""
    participant = await read_invitation(
        session, request.app[SETTINGS].secret_key, request.match_info["token"], utcnow()
    )
    if (
        participant.kind not in (PARTY, AGENT)
        or participant.party_id is None
        or participant.state in (DENIED, REMOVED)
    ):
        raise Forbidden(_NO_RECORDINGS, code="recording_not_shared")
    hearing = await session.get(Hearing, participant.hearing_id)
    case = await session.get(Case, hearing.case_id) if hearing else None
    if case is None:  # pragma: no cover - foreign keys guarantee both
        raise NotFound(N_("There is no such recording."), code="recording_not_found")
    who = participant_actor(participant, client_ip(request), request.headers.get("User-Agent", ""))
    return await sharing.viewer_parties(session, participant.party_id), case, who


def _party_render(request: web.Request, values: dict[str, Any]) -> web.StreamResponse:
    response = aiohttp_jinja2.render_template(
        "party_recordings.html", request, template_context(request, **values)
    )
    # The link is the party's credential and sits in the path: no Referer, no cache.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


async def party_list(request: web.Request) -> web.StreamResponse:
    async with request.app[SESSIONMAKER]() as session:
        party_ids, case, _who = await _party(session, request)
        rows = await sharing.shared_with(session, party_ids, case.id)
        hearings = {
            h.id: h
            for h in (
                await session.scalars(
                    select(Hearing).where(Hearing.id.in_({r.hearing_id for r in rows}))
                )
            ).all()
        }
    return _party_render(
        request,
        {
            "case": case,
            "token": request.match_info["token"],
            "rows": [{"file": r, "hearing": hearings.get(r.hearing_id)} for r in rows],
            "kinds": FILE_KINDS,
        },
    )


async def _party_send(request: web.Request, *, attachment: bool) -> web.StreamResponse:
    async with transaction(request) as session:
        party_ids, case, who = await _party(session, request)
        row = await sharing.shared_recording(
            session, party_ids, case.id, as_id(request.match_info["id"])
        )
        # Audited like staff access, with the party as the actor; once per play, not per seek.
        if not request.http_range.start:
            await record(
                session,
                who,
                AuditAction.RECORDING_DOWNLOADED if attachment else AuditAction.RECORDING_VIEWED,
                object_type="recording_file",
                object_id=row.id,
                case_id=case.id,
                details={"file": row.path, "sha256": row.sha256, "via": "hearing_link"},
            )
    return await stream_recording(request, row, attachment=attachment)


async def party_play(request: web.Request) -> web.StreamResponse:
    return await _party_send(request, attachment=False)


async def party_download(request: web.Request) -> web.StreamResponse:
    return await _party_send(request, attachment=True)
