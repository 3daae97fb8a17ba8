"""The ``/notes`` socket.io namespace: the Yjs sync protocol (y-protocols' binary messages, as
pycrdt writes them) between browsers and ``notes.live``.

Connect with ``auth: {token}`` (a hearing link) or with the staff session cookie. Then, per
document (``record:<hearing>``, ``shared:<case>``, ``private:<case>``):

- ``open`` ``{doc}`` → ack ``{ok, writable, frozen}``; the socket joins the document's room only
  if it may read it (private notes: staff only, so a party's socket is never in that room);
- ``y`` ``{doc, m}``, ``m`` one y-protocols message (bytes): sync step 1 is answered with step 2
  and the server's own step 1; step 2 and updates from a writer are stored (``NoteHub.accept``)
  and acknowledged ``{ok: true, seq}`` only after the commit, then relayed to the room. From a
  reader, updates are refused (ack ``{ok: false, error}`` and an ``error`` event) and a step 2 is
  ignored;
- ``close`` ``{doc}`` leaves the room;
- ``aw`` ``{doc, m}``: a y-protocols awareness update (who is writing), from writers only,
  relayed to the room and never stored.

Server → client: ``y`` ``{doc, m}`` (step 1, step 2, updates; an update also carries ``seq``, the
number of the last stored update it holds, and ``first`` when it holds several: the edits stored
in one commit reach each socket merged into one message, without the socket's own),
``aw`` ``{doc, m}``, ``frozen``
``{doc}`` (the record takes no more edits; open it again) and ``error`` ``{code, message, event,
doc}``. Access is checked again on every message: a revoked link or ended session stops at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

import socketio
from pycrdt import Decoder, merge_updates, write_var_uint
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases import accounts
from cases.catalogue import N_
from cases.errors import AuthenticationFailed, DomainError, Invalid
from cases.models import utcnow
from cases.uow import transaction
from notes import access, store
from notes.access import Principal
from notes.live import Authorise, NoteHub, Stored

log = logging.getLogger("yuntiao.notes")

NAMESPACE = "/notes"
SESSION_COOKIE = "yuntiao_session"
MESSAGE_SYNC = 0
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2
MAX_AWARENESS_BYTES = 2048
Translate = Callable[[str, str, dict[str, Any]], str]


def sync_message(kind: int, payload: bytes) -> bytes:
    return bytes([MESSAGE_SYNC, kind]) + write_var_uint(len(payload)) + payload


def read_sync_message(message: bytes) -> tuple[int, bytes]:
    """(sync type, payload) of a y-protocols sync message, or ``notes_bad_update``."""
    try:
        decoder = Decoder(message)
        if decoder.read_var_uint() != MESSAGE_SYNC:
            raise ValueError("not a sync message")
        kind = decoder.read_var_uint()
        payload = decoder.read_message()
    except (ValueError, IndexError, RuntimeError):
        payload, kind = None, -1
    if payload is None or kind not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
        raise Invalid(N_("This edit could not be read. Reload the page."), code="notes_bad_update")
    return kind, bytes(payload)


def _cookie(environ: dict[str, Any], name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(str(environ.get("HTTP_COOKIE", "")))
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _room(key: str) -> str:
    return f"n:{key}"


class NotesSignaling:
    """Binds ``notes.live.NoteHub`` to socket.io. One per app (``server.app``)."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        maker: async_sessionmaker[AsyncSession],
        hub: NoteHub,
        secret: str,
        translate: Translate,
    ) -> None:
        self.sio = sio
        self.maker = maker
        self.hub = hub
        self.secret = secret
        self.translate = translate
        hub.listeners.append(self._relay)
        hub.freeze_listeners.append(self._frozen)
        sio.on("connect", namespace=NAMESPACE)(self.on_connect)
        sio.on("open", namespace=NAMESPACE)(self.on_open)
        sio.on("y", namespace=NAMESPACE)(self.on_y)
        sio.on("close", namespace=NAMESPACE)(self.on_close)
        sio.on("aw", namespace=NAMESPACE)(self.on_awareness)

    def _authorise(self, state: dict[str, Any]) -> Authorise:
        ip, ua = state.get("ip", ""), state.get("ua", "")

        async def load(session: AsyncSession) -> Principal:
            if state.get("token"):
                return await access.by_link(session, self.secret, state["token"], utcnow(), ip, ua)
            found = await accounts.resolve_session(session, state.get("cookie") or "")
            if found is None:
                raise AuthenticationFailed(N_("Please sign in first."), code="not_authenticated")
            return access.staff(found[0], ip, ua)

        return load

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        state: dict[str, Any] = {
            "token": str(token) if token else "",
            "cookie": _cookie(environ, SESSION_COOKIE) or "",
            "locale": _cookie(environ, "yuntiao_lang") or "zh_CN",
            "ip": str(environ.get("REMOTE_ADDR", ""))[:64],
            "ua": str(environ.get("HTTP_USER_AGENT", ""))[:300],
            "docs": [],
            "writes": [],  # documents this socket opened as a writer (presence is theirs only)
        }
        try:
            async with transaction(self.maker) as session:
                await self._authorise(state)(session)
        except DomainError as exc:
            message = self.translate(state["locale"], exc.message, exc.params)
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": exc.code, "message": message}
            ) from None
        await self.sio.save_session(sid, state, namespace=NAMESPACE)
        return True

    async def _refuse(
        self, sid: str, state: dict[str, Any], event: str, key: Any, exc: DomainError
    ) -> dict[str, Any]:
        message = self.translate(state.get("locale", "zh_CN"), exc.message, exc.params)
        error = {"code": exc.code, "message": message}
        await self.sio.emit(
            "error",
            {**error, "event": event, "doc": key if isinstance(key, str) else None},
            to=sid,
            namespace=NAMESPACE,
        )
        return {"ok": False, "error": error}

    async def on_open(self, sid: str, data: Any = None) -> dict[str, Any]:
        state = await self.sio.get_session(sid, namespace=NAMESPACE)
        key = data.get("doc") if isinstance(data, dict) else None
        try:
            async with transaction(self.maker) as session:
                principal = await self._authorise(state)(session)
                document, case = await store.open_document(
                    session, str(key or ""), lambda d, c: access.check_read(principal, d, c)
                )
                grant = access.grant(principal, document, case)
                frozen = document.frozen_at is not None
        except DomainError as exc:
            return await self._refuse(sid, state, "open", key, exc)
        await self.sio.enter_room(sid, _room(document.key), namespace=NAMESPACE)
        if document.key not in state["docs"]:
            state["docs"].append(document.key)
        if grant.write and not frozen and document.key not in state["writes"]:
            state["writes"].append(document.key)
        elif not (grant.write and not frozen) and document.key in state["writes"]:
            state["writes"].remove(document.key)
        return {
            "ok": True,
            "doc": document.key,
            "writable": grant.write and not frozen,
            "frozen": frozen,
        }

    async def on_close(self, sid: str, data: Any = None) -> dict[str, Any]:
        state = await self.sio.get_session(sid, namespace=NAMESPACE)
        key = data.get("doc") if isinstance(data, dict) else None
        if isinstance(key, str) and key in state["docs"]:
            state["docs"].remove(key)
            if key in state["writes"]:
                state["writes"].remove(key)
            await self.sio.leave_room(sid, _room(key), namespace=NAMESPACE)
        return {"ok": True}

    async def on_y(self, sid: str, data: Any = None) -> dict[str, Any]:
        state = await self.sio.get_session(sid, namespace=NAMESPACE)
        key = data.get("doc") if isinstance(data, dict) else None
        message = data.get("m") if isinstance(data, dict) else None
        try:
            if not isinstance(key, str) or key not in state["docs"]:
                raise Invalid(N_("Open these notes first."), code="notes_not_open")
            if not isinstance(message, bytes | bytearray):
                raise Invalid(
                    N_("This edit could not be read. Reload the page."), code="notes_bad_update"
                )
            kind, payload = read_sync_message(bytes(message))
            if kind == SYNC_STEP1:
                await self._answer_step1(sid, state, key, payload)
                return {"ok": True}
            if kind == SYNC_STEP2:
                return await self._step2(sid, state, key, payload)
            accepted = await self.hub.accept(key, payload, self._authorise(state), origin=sid)
            return {"ok": True, "seq": accepted.seq}
        except DomainError as exc:
            return await self._refuse(sid, state, "y", key, exc)

    async def _answer_step1(
        self, sid: str, state: dict[str, Any], key: str, state_vector: bytes
    ) -> None:
        async with transaction(self.maker) as session:
            principal = await self._authorise(state)(session)
            document, case = await store.open_document(
                session, key, lambda d, c: access.check_read(principal, d, c)
            )
        reply = await self.hub.sync_step2(document, state_vector)
        await self.sio.emit(
            "y", {"doc": key, "m": sync_message(SYNC_STEP2, reply)}, to=sid, namespace=NAMESPACE
        )
        # Our own step 1: the client answers with whatever it has that we lack (offline edits).
        ours = await self.hub.state_vector(document)
        await self.sio.emit(
            "y", {"doc": key, "m": sync_message(SYNC_STEP1, ours)}, to=sid, namespace=NAMESPACE
        )

    async def _step2(
        self, sid: str, state: dict[str, Any], key: str, update: bytes
    ) -> dict[str, Any]:
        async with transaction(self.maker) as session:
            principal = await self._authorise(state)(session)
            document, case = await store.open_document(
                session, key, lambda d, c: access.check_read(principal, d, c)
            )
            grant = access.grant(principal, document, case)
        # A reader's step 2 only repeats what it got from us: never applied, never an error.
        if not grant.write or document.frozen_at is not None:
            return {"ok": True}
        if not await self.hub.adds_anything(document, update):
            return {"ok": True}
        accepted = await self.hub.accept(key, update, self._authorise(state), origin=sid)
        return {"ok": True, "seq": accepted.seq}

    async def on_awareness(self, sid: str, data: Any = None) -> None:
        """Presence (who is writing): a y-protocols awareness update, relayed as is to the
        document's other sockets, never stored. Only writers announce themselves."""
        state = await self.sio.get_session(sid, namespace=NAMESPACE)
        key = data.get("doc") if isinstance(data, dict) else None
        message = data.get("m") if isinstance(data, dict) else None
        if (
            isinstance(key, str)
            and key in state["writes"]
            and isinstance(message, bytes | bytearray)
            and len(message) <= MAX_AWARENESS_BYTES
        ):
            await self.sio.emit(
                "aw",
                {"doc": key, "m": bytes(message)},
                room=_room(key),
                skip_sid=sid,
                namespace=NAMESPACE,
            )

    async def _frozen(self, key: str) -> None:
        await self.sio.emit("frozen", {"doc": key}, room=_room(key), namespace=NAMESPACE)

    async def _relay(self, key: str, stored: list[Stored]) -> None:
        """Pass the updates of one commit to the document's sockets, one message to each: the
        room gets them all merged (a Yjs update is a set of changes; merging keeps every one),
        except the senders, who each get the others' updates."""
        first, last = stored[0][0], stored[-1][0]
        origins = list(dict.fromkeys(origin for _, _, origin in stored if origin))
        everything = [update for _, update, _ in stored]
        await self._send_update(key, everything, first, last, room=_room(key), skip_sid=origins)
        for origin in origins:
            others = [update for _, update, sender in stored if sender != origin]
            if others:
                await self._send_update(key, others, first, last, to=origin)

    async def _send_update(
        self, key: str, updates: list[bytes], first: int, last: int, **where: Any
    ) -> None:
        update = updates[0] if len(updates) == 1 else merge_updates(*updates)
        payload: dict[str, Any] = {"doc": key, "m": sync_message(SYNC_UPDATE, update), "seq": last}
        if first != last:
            payload["first"] = first
        await self.sio.emit("y", payload, namespace=NAMESPACE, **where)
