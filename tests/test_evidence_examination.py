"""Examination of evidence (质证) through the API, on both engines: who states opinions on what,
reasons for disputes, corrections as new linked entries, the matrix, and opinions that cannot be
edited — not through the API, not through the ORM, not with SQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from cases.models import Party
from evidence.errors import OpinionFinal
from evidence.models import EvidenceOpinion, LedgerEntry
from tests.helpers import api_headers
from tests.test_evidence_api import error_code, other_case
from tests.test_evidence_support import party_token, pdf_bytes, upload

OPINIONS = "/api/v1/cases/1/evidence/{n}/opinions"


@pytest.fixture
async def staff(client: Any, demo_logins: dict[str, str]) -> dict[str, str]:
    return await api_headers(client, "mediator", demo_logins["mediator"])


async def party_ids(sessionmaker: Any) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Party).where(Party.case_id == 1))).all()
    ids: dict[str, int] = {}
    for p in rows:
        ids.setdefault(p.role, p.id)
    return ids


async def setup_items(client: Any, sessionmaker: Any, staff: dict[str, str]) -> dict[str, Any]:
    """Item 1 from the applicant, item 2 from the mediator."""
    who = {
        "applicant": {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "applicant")},
        "respondent": {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "respondent")},
        "agent": {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "agent")},
    }
    assert (await upload(client, who["applicant"], pdf_bytes(2000), title="借条")).status == 204
    assert (await upload(client, staff, pdf_bytes(3000, seed=2), title="调查笔录")).status == 204
    return who


async def state(client: Any, headers: dict[str, str], number: int, **body: Any) -> Any:
    return await client.post(OPINIONS.format(n=number), json=body, headers=headers)


async def test_the_other_side_states_opinions_with_reasons(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    who = await setup_items(client, sessionmaker, staff)
    ids = await party_ids(sessionmaker)
    # A dispute needs a reason.
    resp = await state(
        client, who["respondent"], 1, opinions=[{"property": "legality", "stance": "disputed"}]
    )
    assert resp.status == 422 and await error_code(resp) == "evidence_reason_required"
    resp = await state(
        client,
        who["respondent"],
        1,
        opinions=[
            {"property": "authenticity", "stance": "acknowledged"},
            {"property": "legality", "stance": "disputed", "reason": "借条系事后补写"},
            {"property": "relevance", "stance": "acknowledged"},
        ],
    )
    assert resp.status == 201, await resp.text()
    created = (await resp.json())["opinions"]
    assert [o["property"] for o in created] == ["authenticity", "legality", "relevance"]
    assert all(o["party_id"] == ids["respondent"] for o in created)
    assert created[1]["reason"] == "借条系事后补写" and created[1]["stance_label"] == "不认可"
    # The applicant does not examine their own evidence; their agent examines staff's item for them.
    resp = await state(
        client, who["applicant"], 1, opinions=[{"property": "relevance", "stance": "acknowledged"}]
    )
    assert resp.status == 403 and await error_code(resp) == "evidence_own_side"
    resp = await state(
        client, who["agent"], 2, opinions=[{"property": "relevance", "stance": "acknowledged"}]
    )
    assert resp.status == 201
    assert (await resp.json())["opinions"][0]["party_id"] == ids["applicant"]
    resp = await state(
        client,
        who["agent"],
        2,
        party_id=ids["respondent"],
        opinions=[{"property": "legality", "stance": "acknowledged"}],
    )
    assert resp.status == 403 and await error_code(resp) == "evidence_examine_forbidden"
    # Bad vocabulary and an empty list.
    for body, code in [
        (
            {"opinions": [{"property": "beauty", "stance": "acknowledged"}]},
            "evidence_property_invalid",
        ),
        ({"opinions": [{"property": "legality", "stance": "maybe"}]}, "evidence_stance_invalid"),
        ({"opinions": []}, "validation_failed"),
    ]:
        resp = await state(client, who["respondent"], 2, **body)
        assert resp.status in (400, 422), await resp.text()
        if code != "validation_failed":
            assert await error_code(resp) == code
    # Each opinion is a ledger event.
    async with sessionmaker() as session:
        events = (
            await session.scalars(select(LedgerEntry).where(LedgerEntry.event == "examined"))
        ).all()
    assert len(events) == 4


async def test_corrections_are_new_linked_entries_and_the_matrix_shows_the_current_one(
    client: Any, staff: dict[str, str], sessionmaker: Any
) -> None:
    who = await setup_items(client, sessionmaker, staff)
    ids = await party_ids(sessionmaker)
    first = (
        await (
            await state(
                client,
                who["respondent"],
                1,
                opinions=[{"property": "authenticity", "stance": "disputed", "reason": "不是原件"}],
            )
        ).json()
    )["opinions"][0]
    # Stating it again is not a silent overwrite.
    resp = await state(
        client,
        who["respondent"],
        1,
        opinions=[{"property": "authenticity", "stance": "acknowledged"}],
    )
    assert resp.status == 409 and await error_code(resp) == "evidence_opinion_exists"
    resp = await state(
        client,
        who["respondent"],
        1,
        opinions=[{"property": "authenticity", "stance": "acknowledged", "corrects": first["id"]}],
    )
    assert resp.status == 201
    second = (await resp.json())["opinions"][0]
    assert second["corrects"] == first["id"] and second["id"] != first["id"]
    # Only the current opinion can be corrected.
    resp = await state(
        client,
        who["respondent"],
        1,
        opinions=[
            {
                "property": "authenticity",
                "stance": "disputed",
                "reason": "x",
                "corrects": first["id"],
            }
        ],
    )
    assert resp.status == 409 and await error_code(resp) == "evidence_opinion_not_current"
    # The mediator records an opinion the other respondent stated orally.
    resp = await state(
        client,
        staff,
        1,
        party_id=ids["respondent"] + 1,
        opinions=[{"property": "relevance", "stance": "acknowledged"}],
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["opinions"][0]["recorded_by"]["type"] == "user"
    resp = await state(
        client, staff, 1, opinions=[{"property": "relevance", "stance": "acknowledged"}]
    )
    assert resp.status == 422 and await error_code(resp) == "evidence_party_required"

    grid = await (await client.get("/api/v1/cases/1/evidence/examination", headers=staff)).json()
    assert [p["role"] for p in grid["parties"]] == ["applicant", "respondent", "respondent"]
    item1 = grid["items"][0]
    cells = {(c["party_id"], c["property"]): c for c in item1["cells"]}
    cell = cells[(ids["respondent"], "authenticity")]
    assert cell["current"]["id"] == second["id"] and cell["current"]["stance"] == "acknowledged"
    assert [o["id"] for o in cell["history"]] == [first["id"], second["id"]]
    assert cells[(ids["applicant"], "authenticity")]["applies"] is False  # own side
    assert cells[(ids["respondent"], "legality")]["current"] is None
    # Parties of the case see the matrix too.
    assert (
        await client.get("/api/v1/cases/1/evidence/examination", headers=who["applicant"])
    ).status == 200
    # The corrected opinion's event names the one it corrects, in the ledger itself.
    async with sessionmaker() as session:
        corrected = await session.get(EvidenceOpinion, second["id"])
        entry = await session.get(LedgerEntry, corrected.ledger_seq)
    assert f'"corrects_seq":{first["ledger_index"]}' in entry.details


async def test_opinions_are_immutable(
    client: Any, staff: dict[str, str], sessionmaker: Any, engine_name: str
) -> None:
    who = await setup_items(client, sessionmaker, staff)
    resp = await state(
        client,
        who["respondent"],
        1,
        opinions=[{"property": "legality", "stance": "disputed", "reason": "来源不明"}],
    )
    opinion_id = (await resp.json())["opinions"][0]["id"]
    # Through the API: there is no edit, and saying so is the answer.
    for method in ("PATCH", "DELETE"):
        resp = await client.request(
            method,
            f"{OPINIONS.format(n=1)}/{opinion_id}",
            json={"stance": "acknowledged"},
            headers=who["respondent"],
        )
        assert resp.status == 409 and await error_code(resp) == "evidence_opinion_final"
    # Through the ORM: the flush is refused.
    async with sessionmaker() as session:
        row = await session.get(EvidenceOpinion, opinion_id)
        row.stance = "acknowledged"
        with pytest.raises(OpinionFinal):
            await session.flush()
        await session.rollback()
    async with sessionmaker() as session:
        row = await session.get(EvidenceOpinion, opinion_id)
        with pytest.raises(OpinionFinal):
            await session.delete(row)
            await session.flush()
        await session.rollback()
    # With plain SQL, behind the application's back: the database refuses.
    for sql in (
        "UPDATE evidence_opinions SET stance = 'acknowledged', reason = '' WHERE id = :id",
        "DELETE FROM evidence_opinions WHERE id = :id",
    ):
        async with sessionmaker() as session:
            with pytest.raises(DBAPIError, match="immutable"):
                await session.execute(text(sql), {"id": opinion_id})
            await session.rollback()
    async with sessionmaker() as session:
        row = await session.get(EvidenceOpinion, opinion_id)
        assert (row.stance, row.reason) == ("disputed", "来源不明")
    # Even with the triggers dropped, `evidence verify` names the edited opinion.
    from evidence.runtime import EvidenceRuntime
    from evidence.verify import verify_all
    from web.context import SETTINGS

    rt = EvidenceRuntime.from_settings(client.app[SETTINGS])
    async with sessionmaker() as session:
        assert (await verify_all(session, rt.store, rt.key)).ok
    async with sessionmaker() as session:
        if engine_name == "postgresql":
            await session.execute(
                text("DROP TRIGGER evidence_opinions_immutable ON evidence_opinions")
            )
        else:
            await session.execute(text("DROP TRIGGER evidence_opinions_no_update"))
        await session.execute(
            text("UPDATE evidence_opinions SET stance = 'acknowledged' WHERE id = :id"),
            {"id": opinion_id},
        )
        await session.commit()
    async with sessionmaker() as session:
        report = await verify_all(session, rt.store, rt.key)
    assert any(f"opinion {opinion_id}:" in p for p in report.problems), report.problems


async def test_examination_routes_refuse_outsiders(
    client: Any, staff: dict[str, str], sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    who = await setup_items(client, sessionmaker, staff)
    resp = await state(
        client, who["respondent"], 1, opinions=[{"property": "relevance", "stance": "acknowledged"}]
    )
    opinion_id = (await resp.json())["opinions"][0]["id"]
    case2 = await other_case(client, demo_logins)
    stranger = {"X-Hearing-Token": await party_token(client, sessionmaker, case2, "applicant")}
    other_staff = await api_headers(client, "mediator2", demo_logins["mediator2"])
    for headers in (stranger, other_staff):
        attempts = [
            client.get("/api/v1/cases/1/evidence/examination", headers=headers),
            state(
                client, headers, 1, opinions=[{"property": "legality", "stance": "acknowledged"}]
            ),
            client.patch(f"{OPINIONS.format(n=1)}/{opinion_id}", json={}, headers=headers),
            client.delete(f"{OPINIONS.format(n=1)}/{opinion_id}", headers=headers),
        ]
        assert [(await a).status for a in attempts] == [403] * 4
    # A withdrawn item is no longer examined.
    assert (
        await client.post("/api/v1/cases/1/evidence/2/withdrawal", json={}, headers=staff)
    ).status == 200
    resp = await state(
        client, who["respondent"], 2, opinions=[{"property": "legality", "stance": "acknowledged"}]
    )
    assert resp.status == 409 and await error_code(resp) == "evidence_withdrawn"
