"""The notes JSON API: text, history, restore and freeze with a bearer token; the same access
rules as everywhere (no private notes for someone who does not run the case)."""

from __future__ import annotations

from typing import Any

from tests.helpers import api_headers
from tests.notes_client import NotesClient
from tests.notes_fixtures import MEDIATOR, make_hearing
from web.context import SETTINGS


async def test_notes_api(client: Any, sessionmaker: Any, demo_logins: dict[str, str]) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    case_id, hearing_id = links["case"], links["hearing"]
    writer = NotesClient("mediator")
    await writer.connect(str(client.make_url("/")), token=links[MEDIATOR][1])
    try:
        key = f"record:{hearing_id}"
        await writer.open(key)
        await writer.edit(key, lambda t: t.insert(0, "第一稿😀"))
        await writer.edit(key, lambda t: t.insert(len("第一稿😀".encode()), "，第二稿"))
    finally:
        await writer.sio.disconnect()

    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    got = await client.get(f"/api/v1/hearings/{hearing_id}/record", headers=headers)
    body = await got.json()
    assert got.status == 200 and body["text"] == "第一稿😀，第二稿" and body["version"] == 2
    assert body["writable"] is True and body["frozen_at"] is None
    history = await (
        await client.get(f"/api/v1/hearings/{hearing_id}/record/history", headers=headers)
    ).json()
    assert [v["version"] for v in history["versions"]] == [2]
    assert history["versions"][0]["by"]["label"] == MEDIATOR

    restored = await client.post(
        f"/api/v1/hearings/{hearing_id}/record/restore", json={"version": 1}, headers=headers
    )
    assert restored.status == 200 and (await restored.json())["version"] == 3
    body = await (await client.get(f"/api/v1/hearings/{hearing_id}/record", headers=headers)).json()
    assert body["text"] == "第一稿😀"
    bad = await client.post(
        f"/api/v1/hearings/{hearing_id}/record/restore", json={"version": 99}, headers=headers
    )
    assert bad.status == 422 and (await bad.json())["error"]["code"] == "notes_no_such_version"

    frozen = await client.post(f"/api/v1/hearings/{hearing_id}/record/freeze", headers=headers)
    assert frozen.status == 200 and len((await frozen.json())["sha256"]) == 64
    again = await client.post(f"/api/v1/hearings/{hearing_id}/record/freeze", headers=headers)
    assert again.status == 409 and (await again.json())["error"]["code"] == "record_frozen"
    body = await (await client.get(f"/api/v1/hearings/{hearing_id}/record", headers=headers)).json()
    assert body["writable"] is False and body["frozen_sha256"]

    private = await client.get(f"/api/v1/cases/{case_id}/notes/private", headers=headers)
    assert private.status == 200 and (await private.json())["text"] == ""
    other = await api_headers(client, "mediator2", demo_logins["mediator2"])
    refused = await client.get(f"/api/v1/cases/{case_id}/notes/private", headers=other)
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "notes_forbidden"
    missing = await client.get("/api/v1/cases/9999/notes/shared", headers=headers)
    assert missing.status == 404
    spec = await (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/hearings/{hearing_id}/record/freeze" in spec["paths"]
