"""API: hearing records and case notes — the current text, the history, restore and freeze
(the live editing itself is the ``/notes`` socket.io namespace, ``signaling.notes``).

Staff only (session or bearer token), with the same rules as the pages (``notes.access``):
the private notes only for those who run the case. Paths: ``/cases/{case_id}/notes/shared``,
``/cases/{case_id}/notes/private`` and ``/hearings/{hearing_id}/record``, each with
``/history`` and ``/restore``; the record also ``/freeze``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from cases.catalogue import N_
from cases.errors import NotFound
from cases.models import User
from notes import access, store
from notes.catalogue import PRIVATE, RECORD, SHARED, doc_key
from notes.models import NoteDocument
from server.api.registry import ApiRegistry, json_response
from server.api.schemas import Strict
from web.context import client_ip, require_user, transaction
from web.notes import NOTES_HUB, record_renderer

Handler = Callable[..., Awaitable[web.StreamResponse]]


class RestoreRequest(Strict):
    version: int = Field(ge=1, description="Bring the text back to how it was after this version")


def register(api: ApiRegistry) -> None:
    for kind, path, param in (
        (SHARED, "/cases/{case_id}/notes/shared", "case_id"),
        (PRIVATE, "/cases/{case_id}/notes/private", "case_id"),
        (RECORD, "/hearings/{hearing_id}/record", "hearing_id"),
    ):
        what = {
            SHARED: "shared case notes",
            PRIVATE: "private mediator notes",
            RECORD: "hearing record",
        }[kind]
        api.route("GET", path, summary=f"The {what}: text, version, frozen state", tag="notes")(
            _named(f"get_{kind}_notes", _get(kind, param))
        )
        api.route("GET", path + "/history", summary=f"Who changed the {what}, when", tag="notes")(
            _named(f"{kind}_notes_history", _history(kind, param))
        )
        api.route(
            "POST",
            path + "/restore",
            summary=f"Restore the {what} to an earlier version (a new, audited edit)",
            tag="notes",
            body=RestoreRequest,
        )(_named(f"restore_{kind}_notes", _restore(kind, param)))
    api.route(
        "POST",
        "/hearings/{hearing_id}/record/freeze",
        summary="Freeze the hearing record: PDF with embedded CJK font, SHA-256, audited",
        tag="notes",
    )(freeze_record)


def _named(name: str, handler: Handler) -> Handler:
    handler.__name__ = name
    return handler


def _key(kind: str, number: int) -> str:
    return doc_key(kind, hearing_id=number) if kind == RECORD else doc_key(kind, case_id=number)


def _principal(request: web.Request, user: User) -> access.Principal:
    return access.staff(user, client_ip(request), request.headers.get("User-Agent", ""))


async def _open(request: web.Request, key: str) -> tuple[User, NoteDocument, access.Grant]:
    user = require_user(request)
    async with transaction(request) as session:
        principal = _principal(request, user)
        document, case = await store.open_document(
            session, key, lambda d, c: access.check_read(principal, d, c)
        )
        grant = access.grant(principal, document, case)
    return user, document, grant


def _authorise(request: web.Request, user: User) -> Any:
    async def load(session: AsyncSession) -> access.Principal:
        fresh = await session.get(User, user.id)
        if fresh is None:  # pragma: no cover - resolved a moment ago
            raise NotFound(N_("These notes do not exist."), code="notes_not_found")
        return _principal(request, fresh)

    return load


def _get(kind: str, param: str) -> Handler:
    async def handler(request: web.Request, **ids: int) -> web.Response:
        key = _key(kind, ids[param])
        _user, document, grant = await _open(request, key)
        text, version = await request.app[NOTES_HUB].current_text(document)
        return json_response(
            {
                "key": key,
                "kind": document.kind,
                "case_id": document.case_id,
                "hearing_id": document.hearing_id,
                "version": version,
                "text": text,
                "writable": grant.write and document.frozen_at is None,
                "frozen_at": document.frozen_at.isoformat() if document.frozen_at else None,
                "frozen_sha256": document.frozen_sha256 or None,
            }
        )

    return handler


def _history(kind: str, param: str) -> Handler:
    async def handler(request: web.Request, **ids: int) -> web.Response:
        _user, document, _grant = await _open(request, _key(kind, ids[param]))
        async with transaction(request) as session:
            versions = await store.history(session, document.id)
        return json_response(
            {
                "versions": [
                    {
                        "first_version": v.first_seq,
                        "version": v.last_seq,
                        "by": {"type": v.actor_type, "id": v.actor_id, "label": v.actor_label},
                        "started_at": v.started_at.isoformat(),
                        "ended_at": v.ended_at.isoformat(),
                        "edits": v.edits,
                    }
                    for v in versions
                ]
            }
        )

    return handler


def _restore(kind: str, param: str) -> Handler:
    async def handler(request: web.Request, body: RestoreRequest, **ids: int) -> web.Response:
        key = _key(kind, ids[param])
        user, _document, _grant = await _open(request, key)
        accepted = await request.app[NOTES_HUB].restore(
            key, body.version, _authorise(request, user)
        )
        return json_response({"key": key, "version": accepted.seq})

    return handler


async def freeze_record(request: web.Request, hearing_id: int) -> web.Response:
    key = _key(RECORD, hearing_id)
    user, _document, _grant = await _open(request, key)
    digest = await request.app[NOTES_HUB].freeze(
        key, _authorise(request, user), record_renderer(request)
    )
    return json_response({"key": key, "sha256": digest})
