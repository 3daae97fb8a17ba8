"""Real media between protocol-level participants: aiortc peer connections negotiated through the
real ``/hearing`` namespace (``tests/rtc.py``), on loopback. A mediator and two parties: the lobby
and admission, video from every participant to every other, a private caucus that cuts the media
between the sides, and a participant who drops and comes back without being admitted again."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.rtc import (
    Invite,
    Make,
    RtcParticipant,
    loopback_only,
    schedule_hearing,
)

MEDIATOR = "李静"
APPLICANT = "宜昌某家居用品有限公司"
RESPONDENT = "义乌某电子商务有限公司"
QUIET_S = 0.6  # how long "no more frames" is watched for (the senders run at 30 fps)


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture
async def links(client: Any, sessionmaker: Any) -> dict[str, Invite]:
    return await schedule_hearing(client, sessionmaker)


async def _admitted_mesh(
    client: Any, links: dict[str, Invite], make: Make, trickle: tuple[str, ...] = ()
) -> tuple[RtcParticipant, RtcParticipant, RtcParticipant]:
    """Mediator and two parties connect; the mediator admits the parties from the lobby; every
    participant then decodes video from each other one. Those named in ``trickle`` send their
    candidates one by one after the description, as browsers do."""
    url = str(client.make_url("/"))
    mediator, applicant, respondent = (
        make(name, trickle=name in trickle) for name in (MEDIATOR, APPLICANT, RESPONDENT)
    )
    for participant in (mediator, applicant, respondent):
        await participant.connect(url, links[participant.name].token)
    parties = {links[APPLICANT].id, links[RESPONDENT].id}
    for party in (applicant, respondent):
        assert party.view is not None and party.view["you"]["state"] == "waiting"
        assert party.peer_ids == [] and not party.peers
    await mediator.until(
        lambda: {p["id"] for p in (mediator.view or {}).get("lobby", [])} == parties, what="lobby"
    )
    for party_id in sorted(parties):
        await mediator.emit("admit", {"participant_id": party_id})
    everyone = (mediator, applicant, respondent)
    for participant in everyone:
        for other in everyone:
            if other is not participant:
                await participant.frames_rising(links[other.name].id)
    return mediator, applicant, respondent


def _report(what: str, *participants: RtcParticipant) -> None:
    connected = sorted(s for p in participants for s in p.connected_s)
    first = sorted(s for p in participants for s in p.first_frame_s)
    print(
        f"\n[rtc] {what}: {len(connected)} connections; connected median "
        f"{statistics.median(connected) * 1000:.0f} ms, max {connected[-1] * 1000:.0f} ms; "
        f"first video frame median {statistics.median(first) * 1000:.0f} ms, "
        f"max {first[-1] * 1000:.0f} ms"
    )


def _closed(participant: RtcParticipant, remote_id: int) -> bool:
    """The connection to ``remote_id`` is gone, closed, and nothing reads its tracks."""
    closed = [link for link in participant.closed_links if link.remote_id == remote_id]
    return (
        remote_id not in participant.peers
        and bool(closed)
        and all(
            link.pc.connectionState == "closed" and all(t.done() for t in link.tasks)
            for link in closed
        )
    )


async def _quiet(participant: RtcParticipant, remote_id: int) -> None:
    """No video frame from ``remote_id`` arrives for a while."""
    before = participant.frames[remote_id]
    await asyncio.sleep(QUIET_S)
    assert participant.frames[remote_id] == before, participant.summary()


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_admitted_participants_exchange_video(
    client: Any, links: dict[str, Invite], participants: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    # The applicant trickles (it answers the mediator and offers to the respondent).
    mediator, applicant, respondent = await _admitted_mesh(
        client, links, participants, trickle=(APPLICANT,)
    )
    ids = {p.name: links[p.name].id for p in (mediator, applicant, respondent)}
    # One connection per pair, each end holding exactly the peers the server listed.
    for participant in (mediator, applicant, respondent):
        others = sorted(i for n, i in ids.items() if n != participant.name)
        assert participant.peer_ids == others
        assert sorted(participant.peers) == others
        for link in participant.peers.values():
            assert link.pc.connectionState == "connected"
            assert link.selected_pair() == ("host", "host")
            assert link.local_candidate_types() == {"host"}
    # The applicant's descriptions carried no candidate: those came one by one, browser style.
    for other in (mediator, respondent):
        sent = [m for m in applicant.sent if m["to"] == other.id]
        assert all(
            "a=candidate:" not in m["description"]["sdp"] for m in sent if "description" in m
        )
        assert any(m.get("candidate", {}).get("candidate") for m in sent)
        assert sent[-1]["candidate"]["candidate"] == ""  # end of candidates
    with capsys.disabled():
        _report("mesh of 3 (aiortc<->aiortc)", mediator, applicant, respondent)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_caucus_cuts_media_between_sides(
    client: Any, links: dict[str, Invite], participants: Make
) -> None:
    mediator, applicant, respondent = await _admitted_mesh(client, links, participants)
    m, a, r = links[MEDIATOR].id, links[APPLICANT].id, links[RESPONDENT].id
    await mediator.emit("caucus_start")
    # The mediator starts with the applicant side; the respondent is alone on the other side.
    await applicant.until(lambda: applicant.peer_ids == [m])
    await respondent.until(lambda: respondent.peer_ids == [])
    await mediator.until(lambda: mediator.peer_ids == [a])
    for participant, gone in ((applicant, r), (mediator, r), (respondent, a), (respondent, m)):
        await participant.until(lambda p=participant, g=gone: _closed(p, g), what=f"{gone} closed")
    await asyncio.gather(
        _quiet(applicant, r), _quiet(mediator, r), _quiet(respondent, a), _quiet(respondent, m)
    )
    # Inside the applicant's room media keeps flowing.
    await applicant.frames_rising(m)
    await mediator.frames_rising(a)
    # The mediator visits the respondent side: media follows the mediator there.
    await mediator.emit("move", {"participant_id": m, "subroom": "respondent"})
    await respondent.frames_rising(m)
    await mediator.frames_rising(r)
    await applicant.until(lambda: _closed(applicant, m), what="mediator's connection closed")
    await _quiet(applicant, m)
    # Back together: the full mesh again.
    await mediator.emit("caucus_end")
    await applicant.frames_rising(r)
    await respondent.frames_rising(a)
    await applicant.frames_rising(m)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_reconnecting_participant_needs_no_new_admission(
    client: Any, links: dict[str, Invite], participants: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    mediator, applicant, respondent = await _admitted_mesh(client, links, participants)
    m, a, r = links[MEDIATOR].id, links[APPLICANT].id, links[RESPONDENT].id
    errors_before = len(mediator.events.get("error", []))
    await applicant.disconnect()  # network gone: socket and peer connections
    # The others see "reconnecting" (admitted, not connected), not "left", and drop the media.
    for other in (mediator, respondent):
        await other.until(
            lambda other=other: (
                any(
                    p["id"] == a and p["state"] == "admitted" and not p["connected"]
                    for p in (other.view or {}).get("participants", [])
                )
                and a not in other.peers
            ),
            what="applicant reconnecting",
        )
    seen = dict(applicant.frames)
    started = time.monotonic()
    await applicant.connect(str(client.make_url("/")), links[APPLICANT].token)
    assert applicant.view is not None
    assert applicant.view["you"]["state"] == "admitted"  # nobody admitted them again
    await applicant.until(
        lambda: applicant.frames[m] > seen[m] and applicant.frames[r] > seen[r],
        what="frames after reconnecting",
    )
    took = time.monotonic() - started
    await applicant.frames_rising(m)
    await applicant.frames_rising(r)
    await mediator.frames_rising(a)
    await respondent.frames_rising(a)
    assert len(mediator.events.get("error", [])) == errors_before
    with capsys.disabled():
        print(f"\n[rtc] reconnect: frames from both others {took * 1000:.0f} ms after connecting")
        _report("after reconnect", applicant)
