"""TURN through a real coturn on loopback: the app hands each participant time-limited TURN
credentials (coturn's ``use-auth-secret`` REST scheme, ``signaling.ice``), and two aiortc
participants restricted to relay candidates (``iceTransportPolicy="relay"``) connect through it and
exchange video. With a secret coturn does not know, nothing connects (and no ICE "failed" event
comes either, so the test keeps its own time)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from tests.rtc import Invite, RtcParticipant, loopback_only, schedule_hearing, wait_server_idle

MEDIATOR = "李静"
APPLICANT = "宜昌某家居用品有限公司"
RELAY_PORTS = 40  # size of coturn's relay port range
NO_CONNECTION_WAIT_S = 4.0  # how long the wrong-secret test watches for a connection


@dataclasses.dataclass
class Coturn:
    port: int
    secret: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listening_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if _udp_free(port):
            return port
    raise RuntimeError("no free port for coturn")


def _relay_range() -> tuple[int, int]:
    """A run of free UDP ports for coturn's relay addresses, away from the ephemeral range."""
    for _ in range(50):
        low = random.randrange(20_000, 32_000 - RELAY_PORTS)
        if all(_udp_free(p) for p in range(low, low + RELAY_PORTS)):
            return low, low + RELAY_PORTS - 1
    raise RuntimeError("no free relay port range for coturn")


def _stun_answers(port: int, timeout: float = 0.3) -> bool:
    """Whether a STUN Binding request to 127.0.0.1:port gets a Binding success response."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(request, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == transaction


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A real coturn on 127.0.0.1 with a random port, relay range and secret."""
    port, (low, high) = _listening_port(), _relay_range()
    secret = secrets.token_urlsafe(24)
    workdir = tmp_path / "coturn"
    workdir.mkdir()
    log = workdir / "turnserver.log"
    command = [
        # coturn buffers its log file; line-buffered stdout lets the test read it as it goes.
        "stdbuf",
        "-oL",
        "turnserver",
        "-n",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={low}",
        f"--max-port={high}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=yuntiao.test",
        "--no-tls",
        "--no-dtls",
        "--allow-loopback-peers",
        "--no-cli",
        "--fingerprint",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--userdb={workdir / 'turndb'}",
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
        )
    server = Coturn(port, secret, log, process)
    try:
        deadline = time.monotonic() + 10
        while not _stun_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coturn did not come up on {port}:\n{server.log_text()}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def app_turn_secret(coturn: Coturn) -> str:
    """The TURN secret the app is configured with (coturn's, unless a test says otherwise)."""
    return coturn.secret


@pytest.fixture
def settings(settings: Settings, coturn: Coturn, app_turn_secret: str) -> Settings:
    return dataclasses.replace(settings, turn_urls=coturn.url, turn_secret=app_turn_secret)


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture
async def links(client: Any, sessionmaker: Any) -> dict[str, Invite]:
    return await schedule_hearing(client, sessionmaker)


@pytest.fixture
async def relay_pair(client: Any, links: dict[str, Invite]) -> AsyncIterator[Callable[[], Any]]:
    """Mediator and applicant, both relay-only; the mediator admits the applicant."""
    made: list[RtcParticipant] = []

    async def start() -> tuple[RtcParticipant, RtcParticipant]:
        url = str(client.make_url("/"))
        mediator = RtcParticipant(MEDIATOR, ice_transport_policy="relay")
        applicant = RtcParticipant(APPLICANT, ice_transport_policy="relay")
        made.extend((mediator, applicant))
        await mediator.connect(url, links[MEDIATOR].token)
        await applicant.connect(url, links[APPLICANT].token)
        await mediator.emit("admit", {"participant_id": links[APPLICANT].id})
        await applicant.until(lambda: applicant.peer_ids == [links[MEDIATOR].id])
        await mediator.until(lambda: mediator.peer_ids == [links[APPLICANT].id])
        return mediator, applicant

    yield start
    for participant in made:
        await participant.close()
    await wait_server_idle(client)


def _turn_server(participant: RtcParticipant) -> dict[str, Any]:
    assert participant.view is not None
    turn = [s for s in participant.view["ice_servers"] if "username" in s]
    assert len(turn) == 1, participant.view["ice_servers"]
    return turn[0]


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_relay_only_peers_connect_through_coturn(
    coturn: Coturn,
    links: dict[str, Invite],
    relay_pair: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    mediator, applicant = await relay_pair()
    m, a = links[MEDIATOR].id, links[APPLICANT].id
    # Each participant got their own time-limited credentials for our coturn.
    for participant, pid in ((mediator, m), (applicant, a)):
        turn = _turn_server(participant)
        assert turn["urls"] == [coturn.url]
        expiry, user = turn["username"].split(":")
        assert user == f"p{pid}" and int(expiry) > time.time()
    await mediator.frames_rising(a, seconds=15)
    await applicant.frames_rising(m, seconds=15)
    for participant, other in ((mediator, a), (applicant, m)):
        link = participant.peers[other]
        assert link.pc.connectionState == "connected"
        assert link.local_candidate_types() == {"relay"}
        assert link.selected_pair() == ("relay", "relay")
        assert " typ host" not in link.pc.localDescription.sdp
    # coturn allocated a relay for each participant, with their own credentials, and bound
    # channels between the two relays (the media went through it: there are no host candidates).
    log = coturn.log_text()
    for pid in (m, a):
        assert re.search(rf"user <\d+:p{pid}>: incoming packet ALLOCATE processed, success", log)
    assert "CHANNEL_BIND processed, success" in log
    with capsys.disabled():
        connected = sorted(mediator.connected_s + applicant.connected_s)
        first = sorted(mediator.first_frame_s + applicant.first_frame_s)
        print(
            f"\n[turn] relay-only through coturn: connected {connected[0] * 1000:.0f}–"
            f"{connected[-1] * 1000:.0f} ms, first video frame {first[0] * 1000:.0f}–"
            f"{first[-1] * 1000:.0f} ms (from creating the peer connection)"
        )


@pytest.mark.parametrize("engine_name", ["sqlite"])
@pytest.mark.parametrize("app_turn_secret", ["not-the-coturn-secret"])
async def test_wrong_turn_secret_gives_no_connection(
    coturn: Coturn,
    links: dict[str, Invite],
    relay_pair: Callable[[], Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    mediator, applicant = await relay_pair()
    m, a = links[MEDIATOR].id, links[APPLICANT].id
    await mediator.until(lambda: a in mediator.peers, what="connection to the applicant")
    await applicant.until(
        lambda: m in applicant.peers and applicant.peers[m].pc.signalingState == "stable",
        what="answer to the mediator's offer",
    )
    # ICE reports no failure in this case: watch for a connection for a while ourselves.
    deadline = time.monotonic() + NO_CONNECTION_WAIT_S
    while time.monotonic() < deadline:
        for participant in (mediator, applicant):
            for link in participant.peers.values():
                assert link.pc.connectionState != "connected", participant.summary()
        await asyncio.sleep(0.2)
    assert not mediator.connected_s and not applicant.connected_s
    assert not mediator.frames and not applicant.frames
    # coturn refused the offerer's allocation (the mediator's credentials, checked against the
    # wrong secret), so no relay candidate was offered; the answerer, seeing no remote
    # candidates at all, does not even try (aioice prunes the component).
    for participant, other in ((mediator, a), (applicant, m)):
        assert participant.peers[other].local_candidate_types() == set()
    log = coturn.log_text()
    assert "ALLOCATE processed, success" not in log
    assert re.search(rf"user <\d+:p{m}>: incoming packet message processed, error 401", log), log
    with capsys.disabled():
        states = [
            link.pc.connectionState for p in (mediator, applicant) for link in p.peers.values()
        ]
        print(f"\n[turn] wrong secret: after {NO_CONNECTION_WAIT_S:.0f} s still {states}, no event")
