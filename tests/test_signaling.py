"""The hearing namespace on the wire: real python-socketio clients against the real server.

Each participant connects with their own invitation link; the test watches what every socket
actually receives — so caucus isolation, lobby visibility and authorisation are checked where
they matter, on the wire."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from typing import Any

import pytest
import socketio

from cases.actor import Actor
from cases.uow import transaction
from rooms import hearings
from rooms.invitations import issue_invitation
from signaling.catalogue import NAMESPACE
from web.context import SETTINGS


class Peer:
    """A socket.io client that records every event it receives."""

    def __init__(self, name: str, reconnect: bool = False) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(
            reconnection=reconnect, reconnection_delay=0.2, reconnection_delay_max=1
        )
        self.events: dict[str, list[Any]] = defaultdict(list)
        self.arrived = asyncio.Event()

        @self.sio.on("*", namespace=NAMESPACE)
        async def catch_all(event: str, data: Any = None) -> None:
            self.events[event].append(data)
            self.arrived.set()

    async def connect(self, server: Any, token: str) -> None:
        """``server``: the aiohttp test client, or a base URL."""
        base = str(server.make_url("/")) if hasattr(server, "make_url") else str(server)
        await self.sio.connect(
            base,
            namespaces=[NAMESPACE],
            transports=["websocket"],
            auth={"token": token},
            wait_timeout=10,
        )

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data if data is not None else {}, namespace=NAMESPACE)

    def last_sync(self) -> dict[str, Any]:
        return self.events["sync"][-1] if self.events["sync"] else {}

    async def until(self, check: Any, seconds: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not check():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: condition not met; got {dict(self.events)}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass


@pytest.fixture
async def hearing_links(client: Any, sessionmaker: Any) -> dict[str, Any]:
    """A hearing for demo case 1 with links for the mediator, the applicant (company), the two
    respondents and the applicant's agent; parties have acknowledged their rights."""
    secret = client.app[SETTINGS].secret_key
    async with transaction(sessionmaker) as session:
        from cases.intake import get_case

        case = await get_case(session, 1)
        hearing = await hearings.do_schedule_hearing(
            session,
            Actor.for_user(case.mediator),
            case,
            hearings.HearingInput(
                title="第一次调解", scheduled_at=dt.datetime.now(dt.UTC), duration_minutes=60
            ),
        )
        links: dict[str, Any] = {"hearing": hearing.id}
        for p in hearing.participants:
            if not p.is_staff:
                await hearings.do_acknowledge_rights(session, Actor("party", p.party_id), p)
            links[p.display_name] = (p.id, issue_invitation(secret, hearing, p))
    return links


async def _disconnect(client: Any, *peers: Peer) -> None:
    """Disconnect and wait until the server has handled it (its handlers touch the database,
    which the test's teardown then drops)."""
    from server.app import SIGNALING

    for peer in peers:
        await peer.sio.disconnect()
    registry = client.app[SIGNALING].connections
    for _ in range(100):
        if not registry.local_count():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)


async def _connected(client: Any, links: dict[str, Any], *names: str) -> list[Peer]:
    peers = []
    for name in names:
        peer = Peer(name)
        await peer.connect(client, links[name][1])
        peers.append(peer)
    return peers


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_lobby_admission_and_peers(client: Any, hearing_links: dict[str, Any]) -> None:
    mediator, applicant = await _connected(client, hearing_links, "李静", "宜昌某家居用品有限公司")
    try:
        applicant_id = hearing_links["宜昌某家居用品有限公司"][0]
        mediator_id = hearing_links["李静"][0]
        await applicant.until(
            lambda: applicant.last_sync().get("you", {}).get("state") == "waiting"
        )
        # A waiting party sees nobody and has no peers; the mediator sees them in the lobby.
        assert applicant.last_sync()["participants"] == []
        assert applicant.last_sync().get("peers") == []
        assert "lobby" not in applicant.last_sync()
        await mediator.until(
            lambda: [p["id"] for p in mediator.last_sync().get("lobby", [])] == [applicant_id]
        )
        await mediator.emit("admit", {"participant_id": applicant_id})
        await applicant.until(lambda: applicant.last_sync().get("peers") == [mediator_id])
        await mediator.until(lambda: mediator.last_sync().get("peers") == [applicant_id])
        # Offer/answer relay between admitted peers in the same room.
        await mediator.emit(
            "signal", {"to": applicant_id, "description": {"type": "offer", "sdp": "v=0"}}
        )
        await applicant.until(lambda: bool(applicant.events["signal"]))
        assert applicant.events["signal"][0] == {
            "from": mediator_id,
            "description": {"type": "offer", "sdp": "v=0"},
        }
    finally:
        await _disconnect(client, mediator, applicant)


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
async def test_caucus_isolation_on_the_wire(client: Any, hearing_links: dict[str, Any]) -> None:
    names = ["李静", "宜昌某家居用品有限公司", "义乌某电子商务有限公司", "刘某"]
    mediator, applicant, respondent, respondent2 = await _connected(client, hearing_links, *names)
    ids = {n: hearing_links[n][0] for n in names}
    everyone = (mediator, applicant, respondent, respondent2)
    try:
        for name in names[1:]:
            await mediator.emit("admit", {"participant_id": ids[name]})
        await applicant.until(lambda: len(applicant.last_sync().get("peers", [])) == 3)
        await mediator.emit("caucus_start")
        await applicant.until(lambda: applicant.last_sync()["you"]["subroom"] == "applicant")
        await respondent.until(lambda: respondent.last_sync()["you"]["subroom"] == "respondent")
        await respondent2.until(
            lambda: respondent2.last_sync().get("peers") == [ids["义乌某电子商务有限公司"]]
        )
        # The mediator starts with the applicant side; nobody has peers across sub-rooms.
        await applicant.until(lambda: applicant.last_sync().get("peers") == [ids["李静"]])
        assert {p["id"] for p in applicant.last_sync()["participants"]} <= {
            ids["宜昌某家居用品有限公司"],
            ids["李静"],
            hearing_links["赵律师"][0],
        }
        for peer in everyone:
            peer.events.clear()
        # Chat and signaling from the respondent side never reach the applicant side.
        await respondent.emit("chat", {"text": "我方可以接受分期付款"})
        await respondent.emit(
            "signal",
            {"to": ids["宜昌某家居用品有限公司"], "description": {"type": "offer", "sdp": "x"}},
        )
        await respondent.emit("media_state", {"audio": False, "video": True})
        await respondent.until(lambda: bool(respondent.events["error"]))
        assert respondent.events["error"][0]["code"] == "not_allowed"
        await respondent2.until(lambda: bool(respondent2.events["chat"]))
        assert respondent2.events["chat"][0]["text"] == "我方可以接受分期付款"
        await asyncio.sleep(0.3)
        assert not applicant.events["chat"] and not applicant.events["signal"]
        assert not applicant.events["media_state"]
        # The mediator moves to the respondent side, then brings everyone back.
        await mediator.emit("move", {"participant_id": ids["李静"], "subroom": "respondent"})
        await applicant.until(lambda: applicant.last_sync().get("peers") == [])
        await respondent.until(
            lambda: respondent.last_sync().get("peers") == sorted([ids["刘某"], ids["李静"]])
        )
        await mediator.emit("caucus_end")
        await applicant.until(lambda: len(applicant.last_sync().get("peers")) == 3)
    finally:
        await _disconnect(client, *everyone)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_refused_and_invalid_events(client: Any, hearing_links: dict[str, Any]) -> None:
    refused = Peer("forger")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(client, "not-a-token")
    mediator, applicant = await _connected(client, hearing_links, "李静", "宜昌某家居用品有限公司")
    try:
        # A party cannot use staff events; bad payloads get an error event, never a crash.
        await applicant.emit("admit", {"participant_id": hearing_links["刘某"][0]})
        await applicant.until(lambda: bool(applicant.events["error"]))
        assert applicant.events["error"][0]["code"] == "not_allowed"
        await mediator.emit("chat", {"text": ""})
        await mediator.emit("signal", {"to": "everyone"})
        await mediator.emit("move", {"participant_id": 1, "subroom": "x" * 300})
        await mediator.until(lambda: len(mediator.events["error"]) == 3)
        assert {e["code"] for e in mediator.events["error"]} == {"invalid"}
        await mediator.emit("chat", {"text": "<script>alert(1)</script>"})
        await mediator.until(lambda: bool(mediator.events["chat"]))
        assert mediator.events["chat"][0]["text"] == "<script>alert(1)</script>"  # data, not HTML
    finally:
        await _disconnect(client, mediator, applicant)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_reconnect_keeps_admission_and_second_tab_takes_over(
    client: Any, hearing_links: dict[str, Any]
) -> None:
    mediator, applicant = await _connected(client, hearing_links, "李静", "宜昌某家居用品有限公司")
    applicant_id = hearing_links["宜昌某家居用品有限公司"][0]
    again, third = Peer("again"), Peer("third")
    try:
        await mediator.emit("admit", {"participant_id": applicant_id})
        await applicant.until(
            lambda: applicant.last_sync().get("you", {}).get("state") == "admitted"
        )
        await applicant.sio.disconnect()
        # The others see "reconnecting" (admitted, not connected), not "left".
        await mediator.until(
            lambda: any(
                p["id"] == applicant_id and p["state"] == "admitted" and not p["connected"]
                for p in mediator.last_sync()["participants"]
            )
        )
        await again.connect(client, hearing_links["宜昌某家居用品有限公司"][1])
        await again.until(lambda: again.last_sync().get("you", {}).get("state") == "admitted")
        assert again.last_sync().get("peers") == [hearing_links["李静"][0]]
        # The same link opened in another tab takes over; the first tab is told.
        await third.connect(client, hearing_links["宜昌某家居用品有限公司"][1])
        await again.until(lambda: bool(again.events["replaced"]))
        await third.until(lambda: third.last_sync().get("you", {}).get("state") == "admitted")
        await third.emit("leave")
        await mediator.until(
            lambda: any(
                p["id"] == applicant_id and p["state"] == "left"
                for p in mediator.last_sync()["participants"]
            )
        )
    finally:
        await _disconnect(client, mediator, applicant, again, third)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_hearings_no_longer_served_are_forgotten_by_the_signaling_caches(
    client: Any, hearing_links: dict[str, Any]
) -> None:
    """A long-running process keeps a lock, an epoch and a snapshot per hearing it has seen:
    the sweep forgets those whose snapshot went stale, never one being rebuilt."""
    import dataclasses as dc

    from server.app import SIGNALING
    from signaling.server import SNAPSHOT_MAX_AGE_S

    signaling = client.app[SIGNALING]
    hearing_id = hearing_links["hearing"]
    first = await signaling.snapshot(hearing_id)
    signaling._changed_elsewhere(hearing_id + 1000)  # another process's hearing: an epoch only
    assert signaling.prune(force=True) == 1  # the other one; ours is current
    assert hearing_id in signaling.snapshots and hearing_id + 1000 not in signaling._epochs

    def age() -> None:
        cached = signaling.snapshots[hearing_id]
        signaling.snapshots[hearing_id] = dc.replace(cached, at=cached.at - SNAPSHOT_MAX_AGE_S - 1)

    age()
    async with signaling._rebuild_locks[hearing_id]:  # being rebuilt: kept
        assert signaling.prune(force=True) == 0
    assert signaling.prune(force=True) == 1
    assert hearing_id not in signaling.snapshots
    assert hearing_id not in signaling._rebuild_locks and hearing_id not in signaling._epochs
    assert await signaling.snapshot(hearing_id) == first  # read again when needed
    assert signaling.prune() == 0  # not due yet: at most every PRUNE_EVERY_S
