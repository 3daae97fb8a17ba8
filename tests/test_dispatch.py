"""Mediator suggestions, the conflict-of-interest check and recusal (回避)."""

from __future__ import annotations

from typing import Any

from tests.helpers import api_headers


async def test_suggestions_rank_by_category_and_load(
    client: Any, demo_logins: dict[str, str]
) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    body = await (await client.get("/api/v1/cases/1/mediator-suggestions", headers=admin)).json()
    names = [
        (m["mediator"]["username"], m["takes_category"], m["active_cases"], m["conflict"])
        for m in body["mediators"]
    ]
    # 李静 takes intellectual property but already has this case; 张建国 does not take it.
    assert names == [("mediator", True, 1, None), ("mediator2", False, 0, None)]


async def test_assignment_refused_for_same_phone_and_declared_relationship(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    resp = await client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "mediator3",
            "password": "a-long-password",
            "display_name": "周调解",
            "role": "mediator",
            "phone": "13800000003",
            "categories": ["intellectual_property"],
        },
    )
    m3 = (await resp.json())["id"]
    refused = await client.post(
        "/api/v1/cases/1/assignment", json={"mediator_id": m3}, headers=admin
    )
    assert refused.status == 409
    error = (await refused.json())["error"]
    assert error["code"] == "conflict_of_interest"
    assert "刘某" in error["message"]

    # A declared relationship bars mediator2 too.
    m2 = await api_headers(client, "mediator2", demo_logins["mediator2"])
    me = await (await client.get("/api/v1/me", headers=m2)).json()
    resp = await client.post(
        f"/api/v1/users/{me['id']}/relationships",
        headers=m2,
        json={"person_name": "赵律师", "relationship": "大学同学"},
    )
    assert resp.status == 201, await resp.text()
    refused = await client.post(
        "/api/v1/cases/1/assignment", json={"mediator_id": me["id"]}, headers=admin
    )
    assert refused.status == 409
    assert "大学同学" in (await refused.json())["error"]["message"]
    suggestions = await (
        await client.get("/api/v1/cases/1/mediator-suggestions", headers=admin)
    ).json()
    conflicts = {m["mediator"]["username"]: m["conflict"] for m in suggestions["mediators"]}
    assert conflicts["mediator2"] and conflicts["mediator3"] and conflicts["mediator"] is None
    # The refusals are in the trail even though nothing was assigned.
    history = await (await client.get("/api/v1/cases/1/history", headers=admin)).json()
    refusals = [e for e in history["entries"] if e["action"] == "case.assignment_refused"]
    assert len(refusals) == 2
    case = await (await client.get("/api/v1/cases/1", headers=admin)).json()
    assert case["mediator_name"] == "李静"


async def test_conflict_by_id_number(client: Any, demo_logins: dict[str, str]) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    resp = await client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "mediator4",
            "password": "a-long-password",
            "display_name": "吴某",
            "role": "mediator",
            "id_number": "440106199001011235",
        },
    )
    assert resp.status == 201, await resp.text()
    refused = await client.post(
        "/api/v1/cases/1/assignment", json={"mediator_id": (await resp.json())["id"]}, headers=admin
    )
    assert refused.status == 409
    assert "身份证" in (await refused.json())["error"]["message"]


async def test_recusal_reassigns_and_is_recorded(client: Any, demo_logins: dict[str, str]) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    case = await (await client.get("/api/v1/cases/1", headers=admin)).json()
    respondent = next(p for p in case["parties"] if p["name"] == "刘某")
    resp = await client.post(
        "/api/v1/cases/1/recusals",
        headers=admin,
        json={"party_id": respondent["id"], "reason": "调解员曾为申请人提供过咨询"},
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["case"]["mediator_name"] == "张建国"
    # The recused mediator is never suggested or assignable again for this case.
    suggestions = await (
        await client.get("/api/v1/cases/1/mediator-suggestions", headers=admin)
    ).json()
    assert "mediator" not in [m["mediator"]["username"] for m in suggestions["mediators"]]
    back = await client.post(
        "/api/v1/cases/1/assignment",
        json={"mediator_id": body["recused_mediator_id"]},
        headers=admin,
    )
    assert back.status == 409
    history = await (await client.get("/api/v1/cases/1/history", headers=admin)).json()
    recusal = next(e for e in history["entries"] if e["action"] == "case.recusal")
    assert recusal["details"]["reason"] == "调解员曾为申请人提供过咨询"
    # The recused mediator lost access to the case.
    old = await api_headers(client, "mediator", demo_logins["mediator"])
    assert (await client.get("/api/v1/cases/1", headers=old)).status == 403


async def test_recusal_needs_reason(client: Any, demo_logins: dict[str, str]) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    resp = await client.post("/api/v1/cases/1/recusals", headers=admin, json={"reason": ""})
    assert resp.status == 422
