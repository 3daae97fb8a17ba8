"""The ``/hearing`` socket.io namespace: validates each event at the edge, calls ``rooms``, and
delivers to exactly the recipients ``rooms.routing`` chose. Events and payloads:
``signaling.catalogue``.

Delivery is always to a per-participant room (``p<id>``), never to a hearing-wide room, so a
routing decision cannot be bypassed by a broadcast. After every change each connected participant
receives a fresh ``sync`` with only what they may see (their roster, their media peers, and the
lobby for staff); clients render from it, which also heals any missed message.

Who is connected is this process's knowledge (``Connections``). Relaying ``signal``, presence
and chat uses the hearing's routing snapshot kept in memory: rebuilt by every ``sync`` (which
follows every change), dropped when another process announces a change to the hearing, and at
the latest after ``SNAPSHOT_MAX_AGE_S``; so offer/answer/ICE bursts never wait for the database.
Every other event re-reads the invitation, so a revoked link stops working on an open connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import socketio
import sqlalchemy.exc
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.catalogue import N_
from cases.errors import DomainError
from cases.models import utcnow
from cases.uow import transaction
from rooms import hearings, routing
from rooms.access import participant_actor
from rooms.catalogue import ADMITTED, RECORDER, STAFF_KINDS
from rooms.invitations import read_invitation
from rooms.models import Hearing, HearingParticipant
from signaling import catalogue
from signaling.catalogue import NAMESPACE
from signaling.connections import Connections, LocalConnections

log = logging.getLogger("yuntiao.signaling")

# A safety net only: every change through any process already refreshes or drops the snapshot.
SNAPSHOT_MAX_AGE_S = 60.0
# How often the per-hearing caches are swept of hearings this process no longer serves.
PRUNE_EVERY_S = 300.0
BUSY = N_("The server is busy. Please try again in a moment.")
FAILED = N_(
    "Something went wrong on the server. Please try again; if it happens again, reload the page."
)
Translate = Callable[[str, str, dict[str, Any]], str]
IceServers = Callable[[int], list[dict[str, Any]]]
# (hearing id, base URL of this server process) → the recorder process is started.
StartRecorder = Callable[[int, str], None]
HearingEnded = Callable[[int], None]


@dataclass
class CachedSnapshot:
    snapshot: routing.Snapshot
    at: float


class HearingSignaling:
    """Binds the hearing domain to socket.io. One instance per app (see ``server.app``)."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        maker: async_sessionmaker[AsyncSession],
        secret: str,
        ice_servers: IceServers,
        translate: Translate,
        connections: Connections | None = None,
        start_recorder: StartRecorder | None = None,
        hearing_ended: HearingEnded | None = None,
    ) -> None:
        self.sio = sio
        self.maker = maker
        self.secret = secret
        self.ice_servers = ice_servers
        self.translate = translate
        self.connections: Connections = connections or LocalConnections()
        self.start_recorder = start_recorder
        self.hearing_ended = hearing_ended
        self.snapshots: dict[int, CachedSnapshot] = {}
        self._epochs: dict[int, int] = defaultdict(int)
        self._rebuild_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.connections.listen(self._changed_elsewhere)
        self._signal_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._pruned_at = time.monotonic()
        sio.on("connect", namespace=NAMESPACE)(self.on_connect)
        sio.on("disconnect", namespace=NAMESPACE)(self.on_disconnect)
        for event in catalogue.CLIENT_EVENTS:
            sio.on(event, namespace=NAMESPACE)(self._handler(event))

    # ---- connection lifecycle ----------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        locale = _cookie(environ, "yuntiao_lang") or "zh_CN"
        ip = str(environ.get("REMOTE_ADDR", ""))[:64]
        user_agent = str(environ.get("HTTP_USER_AGENT", ""))[:300]
        try:
            async with transaction(self.maker) as session:
                participant = await read_invitation(
                    session, self.secret, str(token or ""), utcnow()
                )
                participant = await hearings.do_join(
                    session, participant_actor(participant, ip, user_agent), participant
                )
                hearing_id, participant_id = participant.hearing_id, participant.id
        except (sqlalchemy.exc.TimeoutError, sqlalchemy.exc.OperationalError) as exc:
            log.warning("connection not admitted, server overloaded: %s", exc)
            message = self.translate(locale, BUSY, {})
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": "busy", "message": message}
            ) from None
        except DomainError as exc:
            # socket.io delivers this to the client's connect_error handler as ``err.message``
            # (the first argument) and ``err.data`` (the second).
            message = self.translate(locale, exc.message, exc.params)
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": exc.code, "message": message}
            ) from None
        await self.sio.save_session(
            sid,
            {
                "token": token,
                "hearing": hearing_id,
                "participant": participant_id,
                "locale": locale,
                "ip": ip,
                "ua": user_agent,
                "local": _local_url(environ),
            },
            namespace=NAMESPACE,
        )
        # The same link opened again takes over: the older tab (in any process) is told and
        # disconnected.
        for old in await self.connections.add(sid, hearing_id, participant_id):
            await self.sio.emit("replaced", {}, to=old, namespace=NAMESPACE)
            await self.sio.disconnect(old, namespace=NAMESPACE)
        await self.sio.enter_room(sid, _room(participant_id), namespace=NAMESPACE)
        # The first sync and the chat history go out once the connection is confirmed:
        # events emitted inside the connect handler reach the client before its "connected".
        self.sio.start_background_task(
            self._welcome, sid, hearing_id, participant_id, _local_url(environ)
        )
        return True

    async def _welcome(self, sid: str, hearing_id: int, participant_id: int, local: str) -> None:
        await asyncio.sleep(0)
        await self.sync(hearing_id)
        async with self.maker() as session:
            participant_row = await session.get(HearingParticipant, participant_id)
            hearing = await session.get(Hearing, hearing_id)
            if (
                hearing is not None
                and hearing.recording_since is not None
                and participant_row is not None
                and participant_row.kind != RECORDER
                and self.start_recorder is not None
            ):
                # Recording is on: if its recorder is gone (a crash of the recorder or of the
                # server), someone joining starts a new run of it.
                self.start_recorder(hearing_id, local)
            if (
                participant_row is not None
                and hearing is not None
                and participant_row.state == ADMITTED
            ):
                history = await hearings.chat_history(session, participant_row)
                await self.sio.emit(
                    "chat_history",
                    [_chat_json(m, hearing) for m in history],
                    to=sid,
                    namespace=NAMESPACE,
                )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._signal_locks.pop(sid, None)
        found = await self.connections.drop(sid)
        if found is not None:
            # Still admitted: the others see "reconnecting" until they come back or leave.
            await self.sync(found[0])

    # ---- event dispatch ----------------------------------------------------------------------

    def _handler(self, event: str) -> Callable[..., Awaitable[None]]:
        model = catalogue.CLIENT_EVENTS[event]
        method = getattr(self, f"on_{event}")

        async def handle(sid: str, data: Any = None) -> None:
            if event == "signal":
                # python-socketio runs each event in its own task; a description and the
                # candidates that follow it must still leave in the order they came.
                async with self._signal_locks[sid]:
                    await dispatch(sid, data)
            else:
                await dispatch(sid, data)

        async def dispatch(sid: str, data: Any) -> None:
            state = await self.sio.get_session(sid, namespace=NAMESPACE)
            locale = state.get("locale", "zh_CN")
            try:
                payload = model.model_validate(data if data is not None else {})
                await method(sid, state, payload)
            except ValidationError as exc:
                await self._error(sid, event, "invalid", _validation_text(exc))
            except DomainError as exc:
                await self._error(
                    sid, event, exc.code, self.translate(locale, exc.message, exc.params)
                )
            except (sqlalchemy.exc.TimeoutError, sqlalchemy.exc.OperationalError) as exc:
                # Overload (no pooled connection, database locked): nothing was changed; the
                # client is told to retry instead of waiting for an answer that never comes.
                log.warning("%s from %s not handled: %s", event, sid, exc)
                await self._error(sid, event, "busy", self.translate(locale, BUSY, {}))
            except Exception:
                log.exception("%s from %s failed", event, sid)
                await self._error(sid, event, "server_error", self.translate(locale, FAILED, {}))

        return handle

    async def _error(self, sid: str, event: str, code: str, message: str) -> None:
        await self.sio.emit(
            "error", {"code": code, "message": message, "event": event}, to=sid, namespace=NAMESPACE
        )

    async def _me(self, session: AsyncSession, state: dict[str, Any]) -> HearingParticipant:
        """Re-read the invitation (a revoked link stops working on an open socket)."""
        return await read_invitation(session, self.secret, state["token"], utcnow())

    def _actor(self, participant: HearingParticipant, state: dict[str, Any]) -> Any:
        return participant_actor(participant, state.get("ip", ""), state.get("ua", ""))

    # ---- media negotiation -------------------------------------------------------------------

    async def on_signal(self, sid: str, state: dict[str, Any], data: catalogue.Signal) -> None:
        me = int(state["participant"])
        snapshot = await self.snapshot(int(state["hearing"]))
        if not routing.may_signal(snapshot, me, data.to):
            snapshot = await self.snapshot(int(state["hearing"]), fresh=True)
        if not routing.may_signal(snapshot, me, data.to):
            raise _not_allowed()
        message: dict[str, Any] = {"from": me}
        if data.description is not None:
            message["description"] = data.description.model_dump()
        if data.candidate is not None:
            message["candidate"] = data.candidate.model_dump(exclude_none=True)
        await self.sio.emit("signal", message, to=_room(data.to), namespace=NAMESPACE)

    async def on_media_state(
        self, sid: str, state: dict[str, Any], data: catalogue.MediaState
    ) -> None:
        me = int(state["participant"])
        await self.connections.set_media(me, data.model_dump())
        await self._to_presence(state, "media_state", {"id": me, "media": data.model_dump()})

    async def on_speaking(self, sid: str, state: dict[str, Any], data: catalogue.Speaking) -> None:
        await self._to_presence(
            state, "speaking", {"id": int(state["participant"]), "level": data.level}
        )

    async def on_quality(self, sid: str, state: dict[str, Any], data: catalogue.Quality) -> None:
        await self._to_presence(
            state,
            "quality",
            {"id": int(state["participant"]), "rtt_ms": data.rtt_ms, "loss": data.loss},
        )

    async def _to_presence(self, state: dict[str, Any], event: str, message: Any) -> None:
        me = int(state["participant"])
        snapshot = await self.snapshot(int(state["hearing"]))
        occupant = snapshot.get(me)
        if occupant is None or not occupant.admitted:
            raise _not_allowed()
        await self._emit_each(routing.presence_recipients(snapshot, me), event, message)

    # ---- chat and leaving --------------------------------------------------------------------

    async def on_chat(self, sid: str, state: dict[str, Any], data: catalogue.Chat) -> None:
        async with transaction(self.maker) as session:
            me = await self._me(session, state)
            message = await hearings.do_post_message(session, me, data.text)
            hearing = await session.get(Hearing, me.hearing_id)
            assert hearing is not None
            payload = _chat_json(message, hearing)
        # The same snapshot that routes media: rebuilt by every sync in this process, so it
        # already knows every admission and sub-room move made through signaling.
        snapshot = await self.snapshot(int(state["hearing"]))
        await self._emit_each(routing.chat_recipients(snapshot, me.id), "chat", payload)

    async def on_leave(self, sid: str, state: dict[str, Any], data: catalogue.Empty) -> None:
        async with transaction(self.maker) as session:
            me = await self._me(session, state)
            await hearings.do_leave(session, self._actor(me, state), me)
        await self.connections.drop(sid)
        await self.sio.disconnect(sid, namespace=NAMESPACE)
        await self.sync(int(state["hearing"]))

    # ---- staff -------------------------------------------------------------------------------

    async def _staff_action(
        self,
        state: dict[str, Any],
        action: Callable[[AsyncSession, HearingParticipant, Any], Awaitable[Any]],
    ) -> None:
        async with transaction(self.maker) as session:
            me = await self._me(session, state)
            if me.kind not in STAFF_KINDS:
                raise _not_allowed()
            await action(session, me, self._actor(me, state))
        await self.sync(int(state["hearing"]))

    async def _target(
        self, session: AsyncSession, me: HearingParticipant, participant_id: int
    ) -> HearingParticipant:
        target = await session.get(HearingParticipant, participant_id)
        if target is None or target.hearing_id != me.hearing_id:
            raise _not_allowed()
        return target

    async def on_admit(self, sid: str, state: dict[str, Any], data: catalogue.Target) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            await hearings.do_admit(
                session, actor, await self._target(session, me, data.participant_id), by=me
            )

        await self._staff_action(state, act)

    async def on_readmit(self, sid: str, state: dict[str, Any], data: catalogue.Target) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            await hearings.do_readmit(
                session, actor, await self._target(session, me, data.participant_id), by=me
            )

        await self._staff_action(state, act)

    async def on_deny(self, sid: str, state: dict[str, Any], data: catalogue.Target) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            await hearings.do_deny(
                session, actor, await self._target(session, me, data.participant_id), by=me
            )

        await self._staff_action(state, act)
        await self._expel(data.participant_id, "removed")

    async def on_remove(self, sid: str, state: dict[str, Any], data: catalogue.Target) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            await hearings.do_remove(
                session, actor, await self._target(session, me, data.participant_id), by=me
            )

        await self._staff_action(state, act)
        await self._expel(data.participant_id, "removed")

    async def on_caucus_start(
        self, sid: str, state: dict[str, Any], data: catalogue.CaucusStart
    ) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            hearing = await hearings.get_hearing(session, me.hearing_id)
            layout = data.assignments
            if layout is None:
                layout = hearings.propose_caucus(hearing.participants)
            await hearings.do_start_caucus(session, actor, hearing, layout, by=me)

        await self._staff_action(state, act)

    async def on_move(self, sid: str, state: dict[str, Any], data: catalogue.Move) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            await hearings.do_move(
                session,
                actor,
                await self._target(session, me, data.participant_id),
                data.subroom,
                by=me,
            )

        await self._staff_action(state, act)

    async def on_caucus_end(self, sid: str, state: dict[str, Any], data: catalogue.Empty) -> None:
        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            hearing = await hearings.get_hearing(session, me.hearing_id)
            await hearings.do_end_caucus(session, actor, hearing, by=me)

        await self._staff_action(state, act)

    async def on_mute(self, sid: str, state: dict[str, Any], data: catalogue.Target) -> None:
        async with transaction(self.maker) as session:
            me = await self._me(session, state)
            if me.kind not in STAFF_KINDS or me.state != ADMITTED:
                raise _not_allowed()
            await self._target(session, me, data.participant_id)
        await self.sio.emit(
            "mute_request", {"by": me.id}, to=_room(data.participant_id), namespace=NAMESPACE
        )

    async def on_end_hearing(self, sid: str, state: dict[str, Any], data: catalogue.Empty) -> None:
        hearing_id = int(state["hearing"])
        async with self.maker() as session:
            everyone = (
                await session.scalars(
                    select(HearingParticipant.id).where(HearingParticipant.hearing_id == hearing_id)
                )
            ).all()

        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            hearing = await hearings.get_hearing(session, me.hearing_id)
            await hearings.do_end_hearing(session, actor, hearing, by=me)

        await self._staff_action(state, act)
        for participant_id in everyone:
            await self._expel(participant_id, "hearing_ended")
        if self.hearing_ended is not None:
            self.hearing_ended(hearing_id)

    async def on_recording_start(
        self, sid: str, state: dict[str, Any], data: catalogue.Empty
    ) -> None:
        if self.start_recorder is None:
            raise _not_allowed()

        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            hearing = await hearings.get_hearing(session, me.hearing_id)
            await hearings.do_start_recording(session, actor, hearing, by=me)

        await self._staff_action(state, act)
        self.start_recorder(int(state["hearing"]), str(state.get("local") or ""))

    async def on_recording_stop(
        self, sid: str, state: dict[str, Any], data: catalogue.Empty
    ) -> None:
        recorder: list[int] = []

        async def act(session: AsyncSession, me: HearingParticipant, actor: Any) -> None:
            hearing = await hearings.get_hearing(session, me.hearing_id)
            await hearings.do_stop_recording(session, actor, hearing, by=me)
            found = hearings.recorder_of(hearing)
            if found is not None:
                recorder.append(found.id)

        await self._staff_action(state, act)
        for participant_id in recorder:
            await self._expel(participant_id, "removed")

    async def _expel(self, participant_id: int, event: str) -> None:
        await self.sio.emit(event, {}, to=_room(participant_id), namespace=NAMESPACE)
        # The disconnect reaches the socket in whichever process holds it; its own
        # disconnect handler then updates the registry and syncs the others.
        for sid in await self.connections.sids_of(participant_id):
            await self.sio.disconnect(sid, namespace=NAMESPACE)

    # ---- views -------------------------------------------------------------------------------

    def prune(self, force: bool = False) -> int:
        """Forget the hearings whose snapshot has gone stale and that nobody is rebuilding (at
        most every ``PRUNE_EVERY_S``): a long-running process sees thousands of hearings, each
        of which left a lock, an epoch and a snapshot here. Safe at any moment: a rebuild
        holds its hearing's lock, and a forgotten hearing starts again from a fresh read.
        Returns how many hearings were forgotten."""
        now = time.monotonic()
        if not force and now - self._pruned_at < PRUNE_EVERY_S:
            return 0
        self._pruned_at = now
        forgotten = 0
        for hearing_id in set(self._rebuild_locks) | set(self._epochs) | set(self.snapshots):
            lock = self._rebuild_locks.get(hearing_id)
            cached = self.snapshots.get(hearing_id)
            if (lock is not None and lock.locked()) or (cached is not None and _current(cached)):
                continue
            self._rebuild_locks.pop(hearing_id, None)
            self._epochs.pop(hearing_id, None)
            self.snapshots.pop(hearing_id, None)
            forgotten += 1
        return forgotten

    async def snapshot(self, hearing_id: int, fresh: bool = False) -> routing.Snapshot:
        """The hearing's routing snapshot: from memory unless ``fresh`` or stale."""
        self.prune()
        cached = self.snapshots.get(hearing_id)
        if not fresh and cached is not None and _current(cached):
            return cached.snapshot
        async with self._rebuild_locks[hearing_id]:
            cached = self.snapshots.get(hearing_id)
            if not fresh and cached is not None and _current(cached):
                return cached.snapshot  # rebuilt while we waited
            epoch = self._epochs[hearing_id]
            async with self.maker() as session:
                ids = list(
                    (
                        await session.scalars(
                            select(HearingParticipant.id).where(
                                HearingParticipant.hearing_id == hearing_id
                            )
                        )
                    ).all()
                )
                snapshot = await hearings.load_snapshot(
                    session, hearing_id, await self.connections.connected(ids)
                )
            self._keep(hearing_id, snapshot, epoch)
            return snapshot

    def _keep(self, hearing_id: int, snapshot: routing.Snapshot, epoch: int) -> None:
        """Cache a snapshot unless another process announced a change since it was read."""
        if self._epochs[hearing_id] == epoch:
            self.snapshots[hearing_id] = CachedSnapshot(snapshot, time.monotonic())

    def _changed_elsewhere(self, hearing_id: int) -> None:
        self._epochs[hearing_id] += 1
        self.snapshots.pop(hearing_id, None)

    async def sync(self, hearing_id: int) -> None:
        """Send every connected participant of the hearing their own current view.

        One rebuild at a time per hearing: two syncs racing could otherwise leave the older
        reading in the cache and deliver it last."""
        async with self._rebuild_locks[hearing_id]:
            await self._sync(hearing_id)

    async def _sync(self, hearing_id: int) -> None:
        epoch = self._epochs[hearing_id]
        async with self.maker() as session:
            hearing = await session.get(Hearing, hearing_id, populate_existing=True)
            if hearing is None:
                return
            await session.refresh(hearing, ["participants"])
            people = {p.id: p for p in hearing.participants}
            connected = await self.connections.connected(list(people))
            media = await self.connections.media(list(people))
            snapshot = hearings.snapshot_of(people.values(), connected)
            hearing_json = {
                "id": hearing.id,
                "title": hearing.title,
                "status": hearing.status,
                "record": hearing.record,
                "recording": hearing.recording_since is not None,
            }
            not_recorded = [p.display_name for p in hearings.recording_blockers(hearing)]
        self._keep(hearing_id, snapshot, epoch)
        await self.connections.announce(hearing_id)
        for participant_id in sorted(set(people) & connected):
            viewer = people[participant_id]
            is_staff = viewer.kind in STAFF_KINDS and viewer.state == ADMITTED
            visible = routing.roster(snapshot, participant_id)
            view = {
                "you": self._person(viewer, snapshot, media),
                "hearing": hearing_json,
                "participants": [self._person(people[i], snapshot, media) for i in sorted(visible)],
                "peers": sorted(routing.media_peers(snapshot, participant_id)),
                "ice_servers": self.ice_servers(participant_id),
            }
            listed = [p for p in people.values() if p.kind != RECORDER]
            if is_staff:
                view["lobby"] = [
                    self._person(p, snapshot, media) for p in listed if p.state == "waiting"
                ]
                view["subrooms"] = sorted({p.subroom for p in listed})
                view["everyone"] = [self._person(p, snapshot, media) for p in listed]
                view["not_recorded"] = not_recorded
            elif viewer.kind == RECORDER:
                # Our own recorder labels its files and writes the timeline from this.
                view["everyone"] = [self._person(p, snapshot, media) for p in listed]
            await self.sio.emit("sync", view, to=_room(participant_id), namespace=NAMESPACE)

    def _person(
        self, p: HearingParticipant, snapshot: routing.Snapshot, media: dict[int, Any]
    ) -> dict[str, Any]:
        occupant = snapshot.get(p.id)
        return {
            "id": p.id,
            "name": p.display_name,
            "kind": p.kind,
            "side": p.side,
            "state": p.state,
            "subroom": p.subroom,
            "connected": bool(occupant and occupant.connected),
            "media": media.get(p.id),
        }

    async def _emit_each(self, recipients: frozenset[int], event: str, message: Any) -> None:
        for participant_id in sorted(recipients):
            await self.sio.emit(event, message, to=_room(participant_id), namespace=NAMESPACE)


def _current(cached: CachedSnapshot) -> bool:
    return time.monotonic() - cached.at < SNAPSHOT_MAX_AGE_S


def _room(participant_id: int) -> str:
    return f"p{participant_id}"


def _chat_json(message: Any, hearing: Hearing) -> dict[str, Any]:
    names = {p.id: p.display_name for p in hearing.participants}
    at: dt.datetime = message.at
    return {
        "id": message.id,
        "from": message.participant_id,
        "name": names.get(message.participant_id, ""),
        "text": message.text,
        "at": at.isoformat(),
        "subroom": message.subroom,
    }


def _local_url(environ: dict[str, Any]) -> str:
    """This process's own address as the socket reached it (the recorder connects there)."""
    request = environ.get("aiohttp.request")
    transport = getattr(request, "transport", None)
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        return ""
    host = sockname[0]  # the concrete local address of this connection
    return f"http://[{host}]:{sockname[1]}" if ":" in host else f"http://{host}:{sockname[1]}"


def _cookie(environ: dict[str, Any], name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(str(environ.get("HTTP_COOKIE", "")))
    except Exception:  # noqa: BLE001 - a malformed cookie header just means "no cookie"
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
        for e in exc.errors()[:3]
    )


def _not_allowed() -> DomainError:
    from cases.catalogue import N_
    from cases.errors import Forbidden

    return Forbidden(N_("You are not allowed to do this in this hearing."), code="not_allowed")
