"""A server restart in the middle of a caucus: the process is killed (``kill -9``) and started
again on the same address; the clients reconnect by themselves and are back in the same hearing
and the same sub-room, admitted, without the mediator doing anything."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from tests.test_scale_out import ServerProcess
from tests.test_signaling import Peer, hearing_links  # noqa: F401  (fixture)


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_clients_come_back_after_kill_9(
    settings: Any,
    hearing_links: dict[str, Any],  # noqa: F811
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")}
    env.update(
        {
            "YUNTIAO_DATABASE_URL": settings.database_url,
            "YUNTIAO_DATA_DIR": str(settings.data_dir),
            "YUNTIAO_SECRET_KEY": settings.secret_key,
            "YUNTIAO_FIELD_ENCRYPTION_KEY": settings.field_encryption_key,
            "YUNTIAO_SEED_DEMO": "false",
        }
    )
    server = ServerProcess(env)
    server.wait_ready()
    mediator_id, mediator_token = hearing_links["李静"]
    party_id, party_token = hearing_links["宜昌某家居用品有限公司"]
    other_id, other_token = hearing_links["刘某"]
    peers = [
        Peer("mediator", reconnect=True),
        Peer("applicant", reconnect=True),
        Peer("respondent", reconnect=True),
    ]
    mediator, party, other = peers
    try:
        await mediator.connect(server.base, mediator_token)
        await party.connect(server.base, party_token)
        await other.connect(server.base, other_token)
        for pid in (party_id, other_id):
            await mediator.emit("admit", {"participant_id": pid})
        await party.until(lambda: len(party.last_sync().get("peers", [])) == 2)
        await mediator.emit("caucus_start")
        await party.until(lambda: party.last_sync().get("you", {}).get("subroom") == "applicant")
        await other.until(lambda: other.last_sync().get("you", {}).get("subroom") == "respondent")

        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        for peer in peers:
            peer.events.clear()
        restarted = ServerProcess(env, port=server.port)
        try:
            restarted.wait_ready()
            # socket.io reconnects on its own with the same link.
            await party.until(
                lambda: party.last_sync().get("you", {}).get("state") == "admitted", seconds=30
            )
            await party.until(lambda: party.last_sync().get("peers") == [mediator_id], seconds=30)
            assert party.last_sync()["you"]["subroom"] == "applicant"
            await other.until(
                lambda: other.last_sync().get("you", {}).get("subroom") == "respondent",
                seconds=30,
            )
            assert other.last_sync().get("peers") == []
            assert not mediator.events["error"] and not party.events["error"]
        finally:
            for peer in peers:
                await peer.sio.disconnect()
            await asyncio.sleep(0.2)
            restarted.stop()
    finally:
        if server.proc.poll() is None:
            server.stop()
