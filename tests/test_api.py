"""The JSON API as a client sees it: bearer tokens, intake, parties, dispatch, errors, OpenAPI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cases.models import AuditEntry
from tests.helpers import api_headers

COURT_CASE: dict[str, Any] = {
    "channel": "court_referral",
    "referred_by": "宜昌市伍家岗区人民法院",
    "category": "contract",
    "title": "货款纠纷",
    "summary": "买卖合同货款 12 万元未付。",
    "claim_amount": "120000.50",
    "parties": [
        {
            "role": "applicant",
            "kind": "organisation",
            "name": "宜昌某电池材料有限公司",
            "phone": "13900000001",
        },
        {
            "role": "respondent",
            "name": "孙某",
            "phone": "13900000002",
            "id_number": "330102198503151232",
        },
        {"role": "agent", "name": "钱律师", "represents": 0},
    ],
}


async def test_token_login_and_me(client: Any, demo_logins: dict[str, str]) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    resp = await client.get("/api/v1/me", headers=headers)
    assert resp.status == 200
    assert (await resp.json())["username"] == "mediator"


async def test_wrong_password_and_bad_token_are_401_with_error_shape(
    client: Any, demo_logins: dict[str, str]
) -> None:
    resp = await client.post("/api/v1/auth/token", json={"username": "admin", "password": "x"})
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "authentication_failed"
    assert "密码" in body["error"]["message"]  # Chinese by default
    resp = await client.get("/api/v1/cases", headers={"Authorization": "Bearer yt_forged"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_token"
    resp = await client.get("/api/v1/cases")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "not_authenticated"


async def test_intake_creates_readable_numbered_case_with_masked_ids(
    client: Any, demo_logins: dict[str, str]
) -> None:
    headers = await api_headers(client, "clerk", demo_logins["clerk"])
    first = await client.post("/api/v1/cases", json=COURT_CASE, headers=headers)
    assert first.status == 201, await first.text()
    second = await client.post("/api/v1/cases", json=COURT_CASE, headers=headers)
    a, b = await first.json(), await second.json()
    # The demo case is number 1 of the year in this organisation.
    assert a["number"].endswith("伍联调字第2号") and b["number"].endswith("伍联调字第3号")
    assert a["status"] == "accepted" and a["status_label"] == "受理"
    assert a["claim_amount"] == "120000.50"
    respondent = next(p for p in a["parties"] if p["role"] == "respondent")
    assert respondent["id_number_masked"] == "3301**********1232"
    agent = next(p for p in a["parties"] if p["role"] == "agent")
    applicant = next(p for p in a["parties"] if p["role"] == "applicant")
    assert agent["represents_id"] == applicant["id"]
    assert "330102198503151232" not in await first.text()


async def test_intake_routed_to_another_organisation(
    client: Any, demo_logins: dict[str, str]
) -> None:
    """Categories the dispatch rules give to another organisation than the clerk's: the case is
    created and the answer is whole (inheritance used to be a 500: a lazy load in async)."""
    headers = await api_headers(client, "clerk", demo_logins["clerk"])
    for category in ("inheritance", "small_finance", "family"):
        resp = await client.post(
            "/api/v1/cases", json={**COURT_CASE, "category": category}, headers=headers
        )
        assert resp.status == 201, (category, await resp.text())
        assert (await resp.json())["category"] == category


async def test_intake_validation_errors_are_clear(client: Any, demo_logins: dict[str, str]) -> None:
    headers = await api_headers(client, "clerk", demo_logins["clerk"])
    no_referrer = {**COURT_CASE, "referred_by": ""}
    resp = await client.post("/api/v1/cases", json=no_referrer, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "referrer_required"
    bad_id = {
        **COURT_CASE,
        "parties": [
            COURT_CASE["parties"][0],
            {"role": "respondent", "name": "孙某", "id_number": "330102198503151233"},
        ],
    }
    resp = await client.post("/api/v1/cases", json=bad_id, headers=headers)
    assert (await resp.json())["error"]["code"] == "invalid_id_number"
    one_side = {**COURT_CASE, "parties": [COURT_CASE["parties"][0], COURT_CASE["parties"][0]]}
    resp = await client.post("/api/v1/cases", json=one_side, headers=headers)
    assert (await resp.json())["error"]["code"] == "parties_required"
    resp = await client.post(
        "/api/v1/cases", data="{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_json"
    resp = await client.post("/api/v1/cases", json={**COURT_CASE, "surprise": 1}, headers=headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid"


async def test_reveal_id_number_is_authorised_and_audited(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    case = await (await client.get("/api/v1/cases/1", headers=admin)).json()
    person = next(p for p in case["parties"] if p["kind"] == "person" and p["id_number_masked"])
    clerk = await api_headers(client, "clerk", demo_logins["clerk"])
    denied = await client.post(f"/api/v1/cases/1/parties/{person['id']}/reveal-id", headers=clerk)
    assert denied.status == 403
    resp = await client.post(f"/api/v1/cases/1/parties/{person['id']}/reveal-id", headers=admin)
    assert resp.status == 200
    assert (await resp.json())["id_number"] == "440106199001011235"
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "party.id_number_revealed")
            )
        ).all()
    assert [(r.actor_label, r.object_id) for r in rows] == [("admin", str(person["id"]))]


async def test_case_opened_is_audited(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    assert (await client.get("/api/v1/cases/1", headers=headers)).status == 200
    history = await (await client.get("/api/v1/cases/1/history", headers=headers)).json()
    actions = [e["action"] for e in history["entries"]]
    assert actions[0] == "case.created" and "case.assigned" in actions
    assert actions[-1] == "case.opened"
    assert history["entries"][-1]["actor_label"] == "mediator"


async def test_authorisation_per_role(client: Any, demo_logins: dict[str, str]) -> None:
    other = await api_headers(client, "mediator2", demo_logins["mediator2"])
    assert (await client.get("/api/v1/cases/1", headers=other)).status == 403
    listing = await (await client.get("/api/v1/cases", headers=other)).json()
    assert listing["total"] == 0
    mine = await api_headers(client, "mediator", demo_logins["mediator"])
    listing = await (await client.get("/api/v1/cases", headers=mine)).json()
    assert [c["id"] for c in listing["cases"]] == [1]
    # A mediator cannot register cases, create accounts or change rules.
    assert (await client.post("/api/v1/cases", json=COURT_CASE, headers=mine)).status == 403
    assert (await client.get("/api/v1/users", headers=mine)).status == 403
    rule = {"category": "labour", "organisation_id": 1}
    assert (await client.post("/api/v1/dispatch-rules", json=rule, headers=mine)).status == 403
    assert (await client.get("/api/v1/cases/999", headers=mine)).status == 404


async def test_other_organisation_cannot_see_case(client: Any, demo_logins: dict[str, str]) -> None:
    sysadmin = await api_headers(client, "sysadmin", demo_logins["sysadmin"])
    orgs = await (await client.get("/api/v1/organisations", headers=sysadmin)).json()
    yingkou = next(o for o in orgs["organisations"] if o["short_name"] == "营自贸")
    resp = await client.post(
        "/api/v1/users",
        headers=sysadmin,
        json={
            "username": "yk_admin",
            "password": "a-long-password",
            "display_name": "营口管理员",
            "role": "org_admin",
            "organisation_id": yingkou["id"],
        },
    )
    assert resp.status == 201
    yk = await api_headers(client, "yk_admin", "a-long-password")
    assert (await client.get("/api/v1/cases/1", headers=yk)).status == 403
    assert (await (await client.get("/api/v1/cases", headers=yk)).json())["total"] == 0


async def test_org_admin_cannot_create_accounts_elsewhere(
    client: Any, demo_logins: dict[str, str]
) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    resp = await client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "root2",
            "password": "a-long-password",
            "display_name": "x",
            "role": "system_admin",
        },
    )
    assert resp.status == 403
    resp = await client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "newclerk", "password": "short", "display_name": "x", "role": "clerk"},
    )
    assert resp.status == 422
    resp = await client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "newclerk",
            "password": "a-long-password",
            "display_name": "新书记员",
            "role": "clerk",
        },
    )
    assert resp.status == 201
    assert (await resp.json())["organisation_id"] == 1
    again = await client.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "newclerk",
            "password": "a-long-password",
            "display_name": "x",
            "role": "clerk",
        },
    )
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "username_taken"


async def test_dispatch_by_category_rules(client: Any, demo_logins: dict[str, str]) -> None:
    sysadmin = await api_headers(client, "sysadmin", demo_logins["sysadmin"])
    finance = {**COURT_CASE, "category": "small_finance"}
    resp = await client.post("/api/v1/cases", json=finance, headers=sysadmin)
    assert resp.status == 201
    case = await resp.json()
    assert case["organisation_name"] == "营口片区人民调解委员会"
    assert "营自贸调字第1号" in case["number"]
    # An edited rule sends the next case elsewhere.
    rules = await (await client.get("/api/v1/dispatch-rules", headers=sysadmin)).json()
    finance_rule = next(r for r in rules["rules"] if r["category"] == "small_finance")
    resp = await client.delete(f"/api/v1/dispatch-rules/{finance_rule['id']}", headers=sysadmin)
    assert resp.status == 200
    resp = await client.post(
        "/api/v1/dispatch-rules",
        headers=sysadmin,
        json={"category": "small_finance", "organisation_id": 1},
    )
    assert resp.status == 201
    case = await (await client.post("/api/v1/cases", json=finance, headers=sysadmin)).json()
    assert case["organisation_id"] == 1


async def test_route_case_to_other_organisation(client: Any, demo_logins: dict[str, str]) -> None:
    admin = await api_headers(client, "admin", demo_logins["admin"])
    resp = await client.post("/api/v1/cases/1/route", json={"organisation_id": 2}, headers=admin)
    assert resp.status == 200
    body = await resp.json()
    assert body["organisation_id"] == 2 and body["mediator_id"] is None
    # The case has left the organisation: its former admin no longer sees it.
    assert (await client.get("/api/v1/cases/1", headers=admin)).status == 403


async def test_openapi_documents_every_route(client: Any) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/cases", "post"),
        ("/api/v1/cases/{case_id}/transitions", "post"),
        ("/api/v1/auth/token", "post"),
        ("/api/v1/audit/verify", "get"),
        ("/api/v1/cases/{case_id}/recusals", "post"),
    ]:
        assert method in paths[path], (path, method)
    schema = doc["components"]["schemas"]["CaseCreate"]
    assert "parties" in schema["required"]
    # Every API route the app serves is in the document.
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/v1/")
        and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in paths.items() for m in ops}
    assert served - {("get", "/api/v1/openapi.json")} <= documented


async def test_unknown_api_route_and_method_give_json_errors(client: Any) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.put("/api/v1/catalogue")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_english_error_messages(client: Any) -> None:
    client.session.cookie_jar.update_cookies({"yuntiao_lang": "en"})
    resp = await client.post("/api/v1/auth/token", json={"username": "admin", "password": "x"})
    assert (await resp.json())["error"]["message"] == "Wrong username or password."
    catalogue = await (await client.get("/api/v1/catalogue")).json()
    assert {"code": "court_referral", "label": "Court referral"} in catalogue["channels"]


async def test_session_cookie_api_calls_need_csrf_header(
    client: Any, demo_logins: dict[str, str]
) -> None:
    from tests.helpers import login

    csrf = await login(client, "clerk", demo_logins["clerk"])
    resp = await client.post("/api/v1/cases", json=COURT_CASE)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf_failed"
    resp = await client.post("/api/v1/cases", json=COURT_CASE, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201
