"""A hearing participant made of a python-socketio client and aiortc peer connections.

``HearingPeer`` speaks the ``/hearing`` wire protocol (``signaling.catalogue``) the way a browser
page does: a socket.io client (websocket, invitation token in ``auth``) plus one aiortc
``RTCPeerConnection`` per id in the latest ``sync.peers``. The participant with the smaller id
sends the offer. aiortc gathers its candidates before ``setLocalDescription`` returns, so each
description goes out complete; candidates trickled by browsers are accepted too.

Subclasses choose what to send (``add_tracks``) and what to do with what arrives
(``consume``): the platform's recorder (``signaling.recorder``) sends nothing and stores what it
receives; the tests' participants (``tests/rtc.py``) send synthetic media and count frames.

ICE servers always come from ``sync.ice_servers`` (aiortc's default configuration would ask a
public STUN server). aioice never offers loopback addresses on its own: ``host_addresses()``
chooses the addresses offered (``loopback_only()`` for tests on a private network namespace).

All negotiation runs in one worker task per participant, in the order the server's events
arrived, so a ``sync`` and the ``signal`` messages that follow it never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import socketio
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from signaling.catalogue import NAMESPACE

log = logging.getLogger("yuntiao.signaling.peer")

LOOPBACK = "127.0.0.1"
UFRAG_RE = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


# ---- which host addresses ICE offers -------------------------------------------------------------


@contextlib.contextmanager
def host_addresses(addresses: list[str]) -> Iterator[None]:
    """Make aioice offer exactly ``addresses`` as host candidates (it skips loopback by
    default, and would offer the machine's real addresses)."""
    original = aioice.ice.get_host_addresses

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = chosen
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def loopback_only() -> contextlib.AbstractContextManager[None]:
    """Media stays on 127.0.0.1 (tests and benchmarks in a private network namespace)."""
    return host_addresses([LOOPBACK])


@dataclasses.dataclass
class PeerLink:
    """One peer connection to one remote participant."""

    remote_id: int
    pc: RTCPeerConnection
    started: float = dataclasses.field(default_factory=time.monotonic)
    connected_s: float | None = None  # from creating the connection to "connected"
    first_frame_s: float | None = None  # from creating the connection to the first video frame
    remote_ufrag: str | None = None
    tracks_added: bool = False
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    def selected_pair(self) -> tuple[str, str] | None:
        """(local, remote) candidate types of the nominated ICE pair, e.g. ("relay", "relay").
        aiortc exposes no selected pair, so this reads aioice's nominated pair of the (bundled)
        transport of the first transceiver."""
        transceivers = self.pc.getTransceivers()
        if not transceivers:
            return None
        connection = transceivers[0].receiver.transport.transport._connection
        pair = connection._nominated.get(1)
        if pair is None:
            return None
        return pair.local_candidate.type, pair.remote_candidate.type

    def local_candidate_types(self) -> set[str]:
        """Types of the candidates this side gathered (public aiortc API)."""
        types = set()
        for transceiver in self.pc.getTransceivers():
            gatherer = transceiver.receiver.transport.transport.iceGatherer
            types |= {c.type for c in gatherer.getLocalCandidates()}
        return types


class HearingPeer:
    """A hearing participant on the wire; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        ice_transport_policy: str = "all",
        trickle: bool = False,
    ) -> None:
        self.name = name
        self.trickle = trickle  # send candidates one by one after the description, as browsers do
        self.policy = RTCIceTransportPolicy(ice_transport_policy)
        self.id: int | None = None
        self.sio: socketio.AsyncClient | None = None
        self.view: dict[str, Any] | None = None  # the latest sync
        self.events: dict[str, list[Any]] = defaultdict(list)  # every event but sync/signal
        self.peers: dict[int, PeerLink] = {}
        self.closed_links: list[PeerLink] = []
        self.frames: dict[int, int] = defaultdict(int)  # remote id → video frames decoded
        self.audio_frames: dict[int, int] = defaultdict(int)
        self.connected_s: list[float] = []  # seconds to "connected", every connection so far
        self.first_frame_s: list[float] = []
        self.failures: list[str] = []
        self.sent: list[dict[str, Any]] = []  # every signal message sent
        self.changed = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        # Candidates that arrived before the description they belong to (the server runs each
        # event in its own task, so a relay that waits on the database or Redis may reorder).
        self._early: dict[int, list[dict[str, Any]]] = defaultdict(list)

    # ---- socket ----------------------------------------------------------------------------

    async def connect(self, url: str, token: str, wait_s: float = 10.0) -> None:
        """Open the link (drops any peer connections left from an earlier session) and wait
        for the first ``sync``."""
        await self.disconnect()
        self.view = None
        sio = socketio.AsyncClient(reconnection=False)

        @sio.on("*", namespace=NAMESPACE)
        async def on_event(event: str, data: Any = None) -> None:
            if event in ("sync", "signal"):
                self._queue.put_nowait((event, data))
            else:
                self.events[event].append(data)
                if event in ("replaced", "removed", "hearing_ended"):
                    self._queue.put_nowait(("drop", None))
            self.changed.set()

        @sio.on("disconnect", namespace=NAMESPACE)
        async def on_disconnect(reason: Any = None) -> None:
            self.events["disconnect"].append(str(reason))
            self.changed.set()

        await sio.connect(
            url,
            namespaces=[NAMESPACE],
            transports=["websocket"],
            auth={"token": token},
            wait_timeout=wait_s,
        )
        self.sio = sio
        # The server sends the first sync from its connect handler, before the namespace's
        # CONNECT packet, and a client cannot emit before that: events wait in the queue until
        # connect() has returned, and only then does the worker start answering them.
        self._worker = asyncio.create_task(self._work(), name=f"rtc-{self.name}")
        await self.until(lambda: self.view is not None, wait_s, "first sync")

    async def disconnect(self) -> None:
        """Drop the socket and every peer connection (like a closed tab or a dropped network)."""
        if self.sio is not None:
            sio, self.sio = self.sio, None
            await sio.disconnect()
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._queue = asyncio.Queue()
        self._early.clear()
        for remote_id in list(self.peers):
            await self._close_peer(remote_id)
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    close = disconnect

    async def emit(self, event: str, data: Any = None) -> None:
        assert self.sio is not None, f"{self.name} is not connected"
        await self.sio.emit(event, data if data is not None else {}, namespace=NAMESPACE)

    # ---- waiting ---------------------------------------------------------------------------

    async def until(
        self, check: Callable[[], bool], seconds: float = 10.0, what: str = "condition"
    ) -> float:
        """Wait until ``check()`` holds; returns the seconds it took."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not check():
            remaining = start + seconds - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: {what} not met in {seconds} s; {self.summary()}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return loop.time() - start

    async def frames_rising(self, remote_id: int, count: int = 5, seconds: float = 10.0) -> None:
        """Wait until ``count`` more video frames from ``remote_id`` have been decoded."""
        target = self.frames[remote_id] + count
        await self.until(
            lambda: self.frames[remote_id] >= target, seconds, f"{count} frames from {remote_id}"
        )

    @property
    def peer_ids(self) -> list[int]:
        return list((self.view or {}).get("peers", []))

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peers": self.peer_ids,
            "links": {
                rid: (link.pc.connectionState, link.connected_s) for rid, link in self.peers.items()
            },
            "frames": dict(self.frames),
            "events": {k: len(v) for k, v in self.events.items()},
            "failures": self.failures,
        }

    # ---- negotiation (worker) --------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            event, data = await self._queue.get()
            try:
                if event == "sync":
                    await self._on_sync(data)
                elif event == "signal":
                    await self._on_signal(data)
                elif event == "drop":
                    for remote_id in list(self.peers):
                        await self._close_peer(remote_id)
            except Exception as exc:  # noqa: BLE001 - recorded; tests assert there are none
                log.exception("%s: handling %s failed", self.name, event)
                self.failures.append(f"{event}: {exc!r}")
            self.changed.set()

    async def _on_sync(self, view: dict[str, Any]) -> None:
        self.view = view
        self.id = int(view["you"]["id"])
        wanted = {int(i) for i in view.get("peers", [])}
        for remote_id in list(self.peers):
            if remote_id not in wanted:
                await self._close_peer(remote_id)
        for remote_id in sorted(wanted):
            link = self.peers.get(remote_id)
            if link is not None and link.pc.connectionState not in ("failed", "closed"):
                continue
            if link is not None:
                await self._close_peer(remote_id)
            if self.id < remote_id:  # the smaller id offers; the other waits for the offer
                await self._offer(remote_id)

    async def _offer(self, remote_id: int) -> None:
        link = self._new_link(remote_id)
        self._add_tracks(link)
        kinds = {t.kind for t in link.pc.getTransceivers()}
        for kind in ("audio", "video"):
            if kind not in kinds:  # nothing of this kind to send: still ask to receive it
                link.pc.addTransceiver(kind, direction="recvonly")
        await link.pc.setLocalDescription(await link.pc.createOffer())
        await self._send_description(link)

    async def _on_signal(self, message: dict[str, Any]) -> None:
        remote_id = int(message["from"])
        description = message.get("description")
        if description is not None:
            if description["type"] == "offer":
                await self._on_offer(remote_id, description["sdp"])
            else:
                link = self.peers.get(remote_id)
                if link is None or link.pc.signalingState != "have-local-offer":
                    return  # an answer to a connection we have since dropped
                await link.pc.setRemoteDescription(
                    RTCSessionDescription(sdp=description["sdp"], type="answer")
                )
                link.remote_ufrag = _ufrag(description["sdp"])
                await self._flush_early(link)
        candidate = message.get("candidate")
        if candidate is not None:
            await self._on_candidate(remote_id, candidate)

    async def _on_offer(self, remote_id: int, sdp: str) -> None:
        ufrag = _ufrag(sdp)
        link = self.peers.get(remote_id)
        # A new ICE session (the remote side made a new connection, e.g. after reconnecting):
        # aiortc cannot restart ICE, so the old connection makes way for a new one.
        if link is not None and (
            link.remote_ufrag != ufrag
            or link.pc.signalingState != "stable"
            or link.pc.connectionState in ("failed", "closed")
        ):
            await self._close_peer(remote_id)
            link = None
        if link is None:
            link = self._new_link(remote_id)
        await link.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        link.remote_ufrag = ufrag
        self._add_tracks(link)
        await link.pc.setLocalDescription(await link.pc.createAnswer())
        await self._send_description(link)
        await self._flush_early(link)

    async def _flush_early(self, link: PeerLink) -> None:
        for data in self._early.pop(link.remote_id, []):
            fragment = data.get("usernameFragment")
            if not fragment or fragment == link.remote_ufrag:  # else: an earlier session's
                await self._add_candidate(link, data)

    async def _on_candidate(self, remote_id: int, data: dict[str, Any]) -> None:
        link = self.peers.get(remote_id)
        fragment = data.get("usernameFragment")
        if (
            link is None
            or link.pc.remoteDescription is None
            or (fragment and link.remote_ufrag and fragment != link.remote_ufrag)
        ):
            # Not for a connection we hold (yet): keep it for the description it belongs to.
            self._early[remote_id].append(data)
            return
        await self._add_candidate(link, data)

    async def _add_candidate(self, link: PeerLink, data: dict[str, Any]) -> None:
        text = str(data.get("candidate", ""))
        if text.startswith("candidate:"):
            text = text[len("candidate:") :]
        if not text:
            await link.pc.addIceCandidate(None)  # end of candidates
            return
        candidate = candidate_from_sdp(text)
        candidate.sdpMid = data.get("sdpMid")
        candidate.sdpMLineIndex = data.get("sdpMLineIndex")
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        await link.pc.addIceCandidate(candidate)

    async def _send_description(self, link: PeerLink) -> None:
        description = link.pc.localDescription
        if not self.trickle:
            await self._signal(
                link.remote_id, description={"type": description.type, "sdp": description.sdp}
            )
            return
        # Browser style: the description without candidates, then each candidate, then the
        # end-of-candidates marker (an empty candidate).
        lines = description.sdp.splitlines()
        bare = [x for x in lines if not x.startswith(("a=candidate:", "a=end-of-candidates"))]
        await self._signal(
            link.remote_id,
            description={"type": description.type, "sdp": "\r\n".join(bare) + "\r\n"},
        )
        ufrag = _ufrag(description.sdp)
        index, mid = -1, None
        first: tuple[int, str | None] | None = None
        for line in lines:
            if line.startswith("m="):
                index, mid = index + 1, None
            elif line.startswith("a=mid:"):
                mid = line[len("a=mid:") :]
                first = first or (index, mid)
            elif line.startswith("a=candidate:"):
                candidate = {"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": index}
                await self._signal(
                    link.remote_id, candidate={**candidate, "usernameFragment": ufrag}
                )
        if first is not None:
            await self._signal(
                link.remote_id,
                candidate={"candidate": "", "sdpMid": first[1], "sdpMLineIndex": first[0]},
            )

    async def _signal(self, to: int, **payload: Any) -> None:
        message = {"to": to, **payload}
        try:
            if self.sio is None:
                raise socketio.exceptions.BadNamespaceError(NAMESPACE)
            await self.sio.emit("signal", message, namespace=NAMESPACE)
            self.sent.append(message)
        except socketio.exceptions.BadNamespaceError:
            # Disconnected meanwhile; the sync after reconnecting sets the media up again.
            self.events["unsent"].append(message)

    # ---- peer connections ------------------------------------------------------------------

    def _configuration(self) -> RTCConfiguration:
        servers = [
            RTCIceServer(
                urls=server["urls"],
                username=server.get("username"),
                credential=server.get("credential"),
            )
            for server in (self.view or {}).get("ice_servers", [])
        ]
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=self.policy)

    def _new_link(self, remote_id: int) -> PeerLink:
        pc = RTCPeerConnection(configuration=self._configuration())
        link = PeerLink(remote_id, pc)
        self.peers[remote_id] = link

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and link.connected_s is None:
                link.connected_s = time.monotonic() - link.started
                self.connected_s.append(link.connected_s)
            self.changed.set()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            link.tasks.append(
                asyncio.create_task(self._consume(link, track), name=f"{self.name}-{track.kind}")
            )

        return link

    def _add_tracks(self, link: PeerLink) -> None:
        if link.tracks_added:
            return
        link.tracks_added = True
        self.add_tracks(link.pc)

    def add_tracks(self, pc: RTCPeerConnection) -> None:
        """Add what this participant sends to a new connection: nothing here (receive only)."""

    def received(self, remote_id: int, kind: str, frame: Any) -> None:
        """Called with every frame (or, with a pass-through decoder, encoded packet) that
        arrives from ``remote_id``; nothing here."""

    def peer_closed(self, remote_id: int) -> None:
        """Called when the connection to ``remote_id`` is gone; nothing here."""

    async def _consume(self, link: PeerLink, track: MediaStreamTrack) -> None:
        counter = self.frames if track.kind == "video" else self.audio_frames
        try:
            while True:
                frame = await track.recv()
                self.received(link.remote_id, track.kind, frame)
                counter[link.remote_id] += 1
                if track.kind == "video" and link.first_frame_s is None:
                    link.first_frame_s = time.monotonic() - link.started
                    self.first_frame_s.append(link.first_frame_s)
                self.changed.set()
        except MediaStreamError:
            pass

    async def _close_peer(self, remote_id: int) -> None:
        link = self.peers.pop(remote_id, None)
        if link is None:
            return
        self.closed_links.append(link)
        # Closing runs in its own task: cancelling the worker must not cancel a close half-way
        # (aiortc's close() then fails when the remote side's close_notify closes it too).
        task = asyncio.create_task(self._shut(link), name=f"{self.name}-close-{remote_id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        await asyncio.shield(task)

    async def _shut(self, link: PeerLink) -> None:
        await link.pc.close()
        for task in link.tasks:
            task.cancel()
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self.peer_closed(link.remote_id)
        self.changed.set()


def _ufrag(sdp: str) -> str | None:
    match = UFRAG_RE.search(sdp)
    return match.group(1) if match else None
