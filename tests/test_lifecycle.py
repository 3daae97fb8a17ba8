"""The case state machine over the API: every legal step works, every illegal pair is a 409."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from cases.lifecycle import (
    AGREEMENT_REACHED,
    CLOSED,
    FOLLOW_UP,
    IN_MEDIATION,
    JUDICIAL_CONFIRMATION,
    NOTIFIED,
    TRANSITIONS,
)
from cases.models import Case
from tests.helpers import api_headers


async def _set_status(sessionmaker: Any, status: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Case).where(Case.id == 1).values(status=status))


async def test_full_happy_path_is_recorded(client: Any, demo_logins: dict[str, str]) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    for target in (
        NOTIFIED,
        IN_MEDIATION,
        AGREEMENT_REACHED,
        JUDICIAL_CONFIRMATION,
        FOLLOW_UP,
        CLOSED,
    ):
        resp = await client.post(
            "/api/v1/cases/1/transitions", json={"to": target}, headers=headers
        )
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == target
    history = await (await client.get("/api/v1/cases/1/history", headers=headers)).json()
    steps = [
        (e["details"]["from"], e["details"]["to"])
        for e in history["entries"]
        if e["action"] == "case.transitioned"
    ]
    assert steps == [
        ("accepted", "notified"),
        ("notified", "in_mediation"),
        ("in_mediation", "agreement_reached"),
        ("agreement_reached", "judicial_confirmation"),
        ("judicial_confirmation", "follow_up"),
        ("follow_up", "closed"),
    ]


async def test_every_illegal_pair_is_409(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    headers = await api_headers(client, "admin", demo_logins["admin"])
    wrong: list[tuple[str, str, int]] = []
    checked = 0
    for source, legal in TRANSITIONS.items():
        for target in TRANSITIONS:
            if target in legal:
                continue
            await _set_status(sessionmaker, source)
            resp = await client.post(
                "/api/v1/cases/1/transitions",
                json={"to": target, "reason": "test"},
                headers=headers,
            )
            body = await resp.json()
            if resp.status != 409 or body["error"]["code"] != "illegal_transition":
                wrong.append((source, target, resp.status))
            checked += 1
    assert checked == sum(len(TRANSITIONS) - len(v) for v in TRANSITIONS.values())
    assert not wrong


async def test_legal_pairs_from_every_state(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    headers = await api_headers(client, "admin", demo_logins["admin"])
    for source, legal in TRANSITIONS.items():
        for target in legal:
            await _set_status(sessionmaker, source)
            resp = await client.post(
                "/api/v1/cases/1/transitions",
                json={"to": target, "reason": "当事人撤回申请"},
                headers=headers,
            )
            assert resp.status == 200, (source, target, await resp.text())


async def test_illegal_message_is_readable(client: Any, demo_logins: dict[str, str]) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    resp = await client.post("/api/v1/cases/1/transitions", json={"to": "closed"}, headers=headers)
    assert resp.status == 409
    message = (await resp.json())["error"]["message"]
    # Statuses are named in words (受理 → 结案), not codes.
    assert "受理" in message and "结案" in message and "accepted" not in message


async def test_failure_and_withdrawal_need_a_reason(
    client: Any, demo_logins: dict[str, str]
) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    resp = await client.post(
        "/api/v1/cases/1/transitions", json={"to": "withdrawn"}, headers=headers
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "reason_required"
    resp = await client.post("/api/v1/cases/1/transitions", json={"to": "flying"}, headers=headers)
    assert (await resp.json())["error"]["code"] == "unknown_status"


async def test_only_case_staff_move_a_case(client: Any, demo_logins: dict[str, str]) -> None:
    other = await api_headers(client, "mediator2", demo_logins["mediator2"])
    resp = await client.post("/api/v1/cases/1/transitions", json={"to": "notified"}, headers=other)
    assert resp.status == 403
