"""Two server processes behind the same database and Redis share a hearing: the mediator is on
one process, the party on the other, and the lobby, admission, negotiation, chat and
reconnection work across them (real Redis on 127.0.0.1:6379, started when down)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import ensure_redis
from tests.test_signaling import Peer, hearing_links  # noqa: F401  (fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            env={**env, "YUNTIAO_PORT": str(self.port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server on {self.port} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def two_servers(settings: Any, client: Any) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    ensure_redis()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")}
    env.update(
        {
            "YUNTIAO_DATABASE_URL": settings.database_url,
            "YUNTIAO_DATA_DIR": str(settings.data_dir),
            "YUNTIAO_SECRET_KEY": settings.secret_key,
            "YUNTIAO_FIELD_ENCRYPTION_KEY": settings.field_encryption_key,
            "YUNTIAO_REDIS_URL": "redis://127.0.0.1:6379/0",
            # A channel of its own, so parallel runs and other tests never cross.
            "YUNTIAO_REDIS_CHANNEL": f"yuntiao-test-{uuid.uuid4().hex[:8]}",
            "YUNTIAO_SEED_DEMO": "false",
        }
    )
    servers = (ServerProcess(env), ServerProcess(env))
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        await peer.sio.disconnect()
    await asyncio.sleep(0.2)


@pytest.mark.parametrize("engine_name", ["postgresql"])
async def test_hearing_across_two_processes(
    two_servers: tuple[ServerProcess, ServerProcess],
    hearing_links: dict[str, Any],  # noqa: F811
    peers: list[Peer],
) -> None:
    a, b = two_servers
    mediator_id, mediator_token = hearing_links["李静"]
    party_id, party_token = hearing_links["宜昌某家居用品有限公司"]
    mediator, party = Peer("mediator@A"), Peer("party@B")
    peers.extend([mediator, party])
    await mediator.connect(a.base, mediator_token)
    await party.connect(b.base, party_token)

    # The mediator (process A) sees the party waiting on process B.
    await mediator.until(
        lambda: [p["id"] for p in mediator.last_sync().get("lobby", [])] == [party_id]
    )
    await mediator.emit("admit", {"participant_id": party_id})
    await party.until(lambda: party.last_sync().get("peers") == [mediator_id])
    await mediator.until(lambda: mediator.last_sync().get("peers") == [party_id])

    # Negotiation and chat cross the processes.
    await mediator.emit("signal", {"to": party_id, "description": {"type": "offer", "sdp": "o"}})
    await party.until(lambda: bool(party.events["signal"]))
    await party.emit("signal", {"to": mediator_id, "description": {"type": "answer", "sdp": "a"}})
    await mediator.until(lambda: bool(mediator.events["signal"]))
    assert mediator.events["signal"][0]["description"]["type"] == "answer"
    await party.emit("chat", {"text": "听得到吗？"})
    await mediator.until(lambda: bool(mediator.events["chat"]))
    assert mediator.events["chat"][0]["text"] == "听得到吗？"

    # The party drops and comes back through the other process, still admitted.
    await party.sio.disconnect()
    await mediator.until(
        lambda: any(
            p["id"] == party_id and not p["connected"]
            for p in mediator.last_sync().get("participants", [])
        )
    )
    again = Peer("party@A")
    peers.append(again)
    await again.connect(a.base, party_token)
    await again.until(lambda: again.last_sync().get("peers") == [mediator_id])
    await mediator.until(lambda: mediator.last_sync().get("peers") == [party_id])

    # The same link opened on process B takes over the tab on process A.
    third = Peer("party@B again")
    peers.append(third)
    await third.connect(b.base, party_token)
    await again.until(lambda: bool(again.events["replaced"]))
    await third.until(lambda: third.last_sync().get("peers") == [mediator_id])


@pytest.mark.parametrize("engine_name", ["postgresql"])
async def test_caucus_made_on_one_process_is_enforced_on_the_other(
    two_servers: tuple[ServerProcess, ServerProcess],
    hearing_links: dict[str, Any],  # noqa: F811
    peers: list[Peer],
) -> None:
    """Each process relays from its in-memory routing snapshot; a sub-room split made through
    process A must reach process B's snapshot before B relays anything across it."""
    a, b = two_servers
    mediator_id, mediator_token = hearing_links["李静"]
    applicant_id, applicant_token = hearing_links["宜昌某家居用品有限公司"]
    respondent_id, respondent_token = hearing_links["义乌某电子商务有限公司"]
    mediator, applicant, respondent = Peer("mediator@A"), Peer("applicant@A"), Peer("resp@B")
    peers.extend([mediator, applicant, respondent])
    await mediator.connect(a.base, mediator_token)
    await applicant.connect(a.base, applicant_token)
    await respondent.connect(b.base, respondent_token)
    await mediator.until(lambda: len(mediator.last_sync().get("lobby", [])) == 2)
    for participant_id in (applicant_id, respondent_id):
        await mediator.emit("admit", {"participant_id": participant_id})
    await respondent.until(lambda: applicant_id in respondent.last_sync().get("peers", []))

    # Before the split B relays the respondent's offer to the applicant (B's snapshot is warm).
    await respondent.emit(
        "signal", {"to": applicant_id, "description": {"type": "offer", "sdp": "1"}}
    )
    await applicant.until(lambda: bool(applicant.events["signal"]))

    await mediator.emit("caucus_start")
    await respondent.until(lambda: respondent.last_sync()["you"]["subroom"] == "respondent")
    await applicant.until(lambda: applicant.last_sync()["you"]["subroom"] == "applicant")
    for peer in (mediator, applicant, respondent):
        peer.events.clear()

    await respondent.emit(
        "signal", {"to": applicant_id, "description": {"type": "offer", "sdp": "2"}}
    )
    await respondent.emit("chat", {"text": "只给我方看"})
    await respondent.until(lambda: bool(respondent.events["error"]))
    assert respondent.events["error"][0]["code"] == "not_allowed"
    await respondent.until(lambda: bool(respondent.events["chat"]))  # their own side got it
    await asyncio.sleep(0.5)
    assert not applicant.events["signal"] and not applicant.events["chat"]
    assert not mediator.events["chat"]  # the mediator is with the applicant side
