"""Presenting evidence in the hearing, on the ``/hearing`` namespace beside ``signaling.server``
(which it does not change: ``server.app`` attaches it with the namespace's fresh-snapshot
function). The mediator or clerk shows an item to everyone in their current (sub)room: images
and PDFs in a shared viewer on the same page for all, audio and video playing and pausing
together (``web/static/js/evidence-viewer.js``).

Events from clients (payloads validated here, like ``signaling.catalogue`` does for the rest):

- ``present_list`` {} → ``presentable`` {items: [{number, title, kind}]} (staff only);
- ``present`` {number} — show an item to the presenter's (sub)room (a ledger event, ``presented``);
- ``present_control`` {page?, playing?, position?} — turn the page, play, pause, seek;
- ``present_stop`` {} — close the viewer for the room;
- ``present_query`` {} — what is being presented in my room now (after connecting or moving).

Every change goes out as ``presentation`` (the whole state, or null when stopped) to the
recipients ``rooms.routing.chat_recipients`` chooses — the admitted participants of the
presenter's sub-room, presenter included — each with their own ticket URL for the file
(``evidence.presenting``). Nobody in another sub-room receives anything.

The current state per (hearing, sub-room) is kept in this process. With several processes a
participant who connects to another process gets the state with the next change, not at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.catalogue import N_
from cases.errors import Conflict, DomainError, Forbidden
from cases.models import Case, utcnow
from cases.uow import transaction
from evidence import presenting
from rooms import routing
from rooms.access import participant_actor
from rooms.catalogue import ADMITTED, STAFF_KINDS
from rooms.invitations import read_invitation
from rooms.models import HearingParticipant
from signaling.catalogue import NAMESPACE

log = logging.getLogger("yuntiao.signaling")

Snapshotter = Callable[[int], Awaitable[routing.Snapshot]]
Translate = Callable[[str, str, dict[str, Any]], str]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Empty(_Payload):
    pass


class Present(_Payload):
    number: int = Field(ge=1, le=1_000_000)


class Control(_Payload):
    page: int | None = Field(default=None, ge=1, le=100_000)
    playing: bool | None = None
    position: float | None = Field(default=None, ge=0, le=10_000_000)


EVENTS: dict[str, type[_Payload]] = {
    "present_list": Empty,
    "present": Present,
    "present_control": Control,
    "present_stop": Empty,
    "present_query": Empty,
}


@dataclass
class Shown:
    """What one (sub)room sees now."""

    item_id: int
    number: int
    title: str
    kind: str
    media_type: str
    by: str
    page: int = 1
    playing: bool = False
    position: float = 0.0
    seq: int = 1


def participant_room(participant_id: int) -> str:
    """The per-participant socket.io room ``signaling.server`` puts every socket in."""
    return f"p{participant_id}"


class Presentation:
    """The presentation events of the hearing namespace. One per app (``server.app``)."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        maker: async_sessionmaker[AsyncSession],
        secret: str,
        snapshot: Snapshotter,
        translate: Translate,
    ) -> None:
        self.sio = sio
        self.maker = maker
        self.secret = secret
        self.snapshot = snapshot
        self.translate = translate
        self.shown: dict[tuple[int, str], Shown] = {}
        # python-socketio runs each event in its own task: "present 2" then "turn to page 3"
        # from one presenter must still be applied in that order.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        for event in EVENTS:
            sio.on(event, namespace=NAMESPACE)(self._handler(event))

    def _handler(self, event: str) -> Callable[..., Awaitable[None]]:
        model = EVENTS[event]
        method = getattr(self, f"on_{event}")

        async def handle(sid: str, data: Any = None) -> None:
            lock, users = self._locks.get(sid) or (asyncio.Lock(), 0)
            self._locks[sid] = (lock, users + 1)
            try:
                async with lock:
                    await dispatch(sid, data)
            finally:
                lock, users = self._locks[sid]
                if users <= 1:
                    del self._locks[sid]
                else:
                    self._locks[sid] = (lock, users - 1)

        async def dispatch(sid: str, data: Any) -> None:
            state = await self.sio.get_session(sid, namespace=NAMESPACE)
            locale = state.get("locale", "zh_CN") if state else "zh_CN"
            try:
                if not state or "token" not in state:
                    raise _not_allowed()
                payload = model.model_validate(data if data is not None else {})
                await method(sid, state, payload)
            except ValidationError as exc:
                message = "; ".join(str(e.get("msg", "")) for e in exc.errors()[:3])
                await self._error(sid, event, "invalid", message)
            except DomainError as exc:
                message = self.translate(locale, exc.message, exc.params)
                await self._error(sid, event, exc.code, message)

        return handle

    async def _error(self, sid: str, event: str, code: str, message: str) -> None:
        await self.sio.emit(
            "error", {"code": code, "message": message, "event": event}, to=sid, namespace=NAMESPACE
        )

    async def _me(self, session: AsyncSession, state: dict[str, Any]) -> HearingParticipant:
        """Re-read the link: a revoked link or a removed participant stops at once."""
        me = await read_invitation(session, self.secret, str(state["token"]), utcnow())
        if me.state != ADMITTED:
            raise _not_allowed()
        return me

    async def _staff(
        self, session: AsyncSession, state: dict[str, Any]
    ) -> tuple[HearingParticipant, Case, Any]:
        me = await self._me(session, state)
        if me.kind not in STAFF_KINDS:
            raise _not_allowed()
        actor = participant_actor(me, state.get("ip", ""), state.get("ua", ""))
        hearing, case = await presenting.check_present(session, actor, me)
        return me, case, (actor, hearing)

    # ---- events ------------------------------------------------------------------------------

    async def on_present_list(self, sid: str, state: dict[str, Any], data: Empty) -> None:
        async with self.maker() as session:  # reads only
            _me, case, _ = await self._staff(session, state)
            rows = await presenting.presentable(session, case)
            items = [
                {"number": i.number, "title": i.title, "kind": presenting.view_kind(i.file_type)}
                for i in rows
            ]
        await self.sio.emit("presentable", {"items": items}, to=sid, namespace=NAMESPACE)

    async def on_present(self, sid: str, state: dict[str, Any], data: Present) -> None:
        # Recipients first: the snapshot is read outside the writing transaction (SQLite).
        snapshot = await self.snapshot(int(state["hearing"]))
        recipients = routing.chat_recipients(snapshot, int(state["participant"]))
        async with transaction(self.maker) as session:
            me, case, (actor, hearing) = await self._staff(session, state)
            item = await presenting.do_present(
                session, actor, case, hearing, data.number, me.subroom, recipients
            )
            key = (me.hearing_id, me.subroom)
            before = self.shown.get(key)
            shown = Shown(
                item_id=item.id,
                number=item.number,
                title=item.title,
                kind=presenting.view_kind(item.file_type),
                media_type=item.media_type,
                by=me.display_name,
                seq=(before.seq + 1) if before else 1,
            )
        self.shown[key] = shown
        await self._send(recipients, shown)

    async def on_present_control(self, sid: str, state: dict[str, Any], data: Control) -> None:
        async with self.maker() as session:  # reads only
            me, _case, _ = await self._staff(session, state)
        shown = self.shown.get((me.hearing_id, me.subroom))
        if shown is None:
            raise Conflict(N_("Nothing is being presented in this room."), code="nothing_presented")
        if data.page is not None:
            shown.page = data.page
        if data.playing is not None:
            shown.playing = data.playing
        if data.position is not None:
            shown.position = data.position
        shown.seq += 1
        await self._send(await self._recipients(me), shown)

    async def on_present_stop(self, sid: str, state: dict[str, Any], data: Empty) -> None:
        async with self.maker() as session:  # reads only
            me, _case, _ = await self._staff(session, state)
        self.shown.pop((me.hearing_id, me.subroom), None)
        await self._send(await self._recipients(me), None)

    async def on_present_query(self, sid: str, state: dict[str, Any], data: Empty) -> None:
        async with self.maker() as session:  # reads only
            me = await self._me(session, state)
        shown = self.shown.get((me.hearing_id, me.subroom))
        await self.sio.emit("presentation", self._view(me.id, shown), to=sid, namespace=NAMESPACE)

    # ---- delivery ----------------------------------------------------------------------------

    async def _recipients(self, me: HearingParticipant) -> frozenset[int]:
        snapshot = await self.snapshot(me.hearing_id)
        return routing.chat_recipients(snapshot, me.id)

    def _view(self, participant_id: int, shown: Shown | None) -> dict[str, Any] | None:
        if shown is None:
            return None
        ticket = presenting.issue_ticket(self.secret, participant_id, shown.item_id)
        return {
            "number": shown.number,
            "title": shown.title,
            "kind": shown.kind,
            "media_type": shown.media_type,
            "url": f"/evidence/presented/{ticket}",
            "by": shown.by,
            "page": shown.page,
            "playing": shown.playing,
            "position": shown.position,
            "seq": shown.seq,
        }

    async def _send(self, recipients: frozenset[int], shown: Shown | None) -> None:
        for participant_id in sorted(recipients):
            await self.sio.emit(
                "presentation",
                self._view(participant_id, shown),
                to=participant_room(participant_id),
                namespace=NAMESPACE,
            )


def _not_allowed() -> Forbidden:
    return Forbidden(N_("You are not allowed to do this in this hearing."), code="not_allowed")
