"""Presenting evidence in the hearing, on the wire: real socket.io clients, each with their own
link. The mediator presents to their (sub)room only; a participant in another sub-room receives
nothing; page turns and play/pause reach everyone in the room; each person's ticket opens the
file and stops working once they are removed."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from evidence.models import LedgerEntry
from tests.helpers import api_headers
from tests.test_evidence_support import pdf_bytes, upload
from tests.test_signaling import Peer, _connected, _disconnect, hearing_links  # noqa: F401

NAMES = ["李静", "宜昌某家居用品有限公司", "义乌某电子商务有限公司", "刘某"]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 90, 200)).save(out, "PNG")
    return out.getvalue()


async def quiet(*peers: Peer, event: str = "presentation") -> None:
    await asyncio.sleep(0.3)
    for peer in peers:
        assert not peer.events[event], f"{peer.name} received {peer.events[event]}"


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
async def test_presenting_reaches_exactly_the_presenters_room(
    client: Any,
    sessionmaker: Any,
    demo_logins: dict[str, str],
    hearing_links: dict[str, Any],  # noqa: F811
) -> None:
    staff = await api_headers(client, "mediator", demo_logins["mediator"])
    image, document = png(), pdf_bytes(5000)
    assert (await upload(client, staff, image, filename="现场.png", title="现场照片")).status == 204
    assert (await upload(client, staff, document, title="借条")).status == 204
    mediator, applicant, respondent, respondent2 = await _connected(client, hearing_links, *NAMES)
    everyone = (mediator, applicant, respondent, respondent2)
    ids = {n: hearing_links[n][0] for n in NAMES}
    try:
        for name in NAMES[1:]:
            await mediator.emit("admit", {"participant_id": ids[name]})
        await applicant.until(lambda: len(applicant.last_sync().get("peers", [])) == 3)
        # Only staff may list and present.
        await applicant.emit("present", {"number": 1})
        await applicant.until(lambda: bool(applicant.events["error"]))
        assert applicant.events["error"][0]["code"] == "not_allowed"
        await mediator.emit("present_list")
        await mediator.until(lambda: bool(mediator.events["presentable"]))
        assert mediator.events["presentable"][0]["items"] == [
            {"number": 1, "title": "现场照片", "kind": "image"},
            {"number": 2, "title": "借条", "kind": "pdf"},
        ]
        await mediator.emit("present", {"number": 1})
        for peer in everyone:
            await peer.until(lambda p=peer: bool(p.events["presentation"]))
        views = [peer.events["presentation"][-1] for peer in everyone]
        assert {v["number"] for v in views} == {1} and {v["kind"] for v in views} == {"image"}
        assert len({v["url"] for v in views}) == 4  # a ticket each
        got = await client.get(views[1]["url"])
        assert got.status == 200 and await got.read() == image
        # Page turns and play/pause go to the whole room.
        await mediator.emit("present", {"number": 2})
        await mediator.emit("present_control", {"page": 3})
        await respondent2.until(
            lambda: (respondent2.events["presentation"][-1] or {}).get("page") == 3
        )
        assert respondent2.events["presentation"][-1]["number"] == 2
        await mediator.emit("present_control", {"page": 0})
        await mediator.until(lambda: bool(mediator.events["error"]))
        assert mediator.events["error"][-1]["code"] == "invalid"

        # Caucus: the mediator is with the applicant side; the respondents receive nothing.
        await mediator.emit("caucus_start")
        await respondent.until(lambda: respondent.last_sync()["you"]["subroom"] == "respondent")
        await mediator.until(lambda: mediator.last_sync()["you"]["subroom"] == "applicant")
        for peer in everyone:
            peer.events.clear()
        await mediator.emit("present", {"number": 1})
        await applicant.until(lambda: bool(applicant.events["presentation"]))
        await mediator.emit("present_control", {"playing": True, "position": 1.5})
        await applicant.until(lambda: len(applicant.events["presentation"]) == 2)
        assert applicant.events["presentation"][-1]["playing"] is True
        await quiet(respondent, respondent2)
        # Asking what is shown answers for one's own room only.
        await respondent.emit("present_query")
        await respondent.until(lambda: bool(respondent.events["presentation"]))
        assert respondent.events["presentation"] == [None]
        await mediator.emit("present_stop")
        await applicant.until(lambda: applicant.events["presentation"][-1] is None)
        await quiet(respondent2)

        # A removed participant's ticket stops working.
        ticket_url = views[1]["url"]
        await mediator.emit("caucus_end")
        await mediator.emit("remove", {"participant_id": ids["宜昌某家居用品有限公司"]})
        await mediator.until(
            lambda: any(
                p["id"] == ids["宜昌某家居用品有限公司"] and p["state"] == "removed"
                for p in mediator.last_sync().get("everyone", [])
            )
        )
        assert (await client.get(ticket_url)).status == 403
        assert (await client.get("/evidence/presented/forged.ticket")).status == 403
        assert (await client.get(views[2]["url"])).status == 200
    finally:
        await _disconnect(client, *everyone)
    async with sessionmaker() as session:
        rows = (
            await session.scalars(select(LedgerEntry).where(LedgerEntry.event == "presented"))
        ).all()
    details = [json.loads(r.details) for r in rows]
    assert [d["number"] for d in details] == [1, 2, 1]
    assert details[0]["recipients"] == sorted(ids.values())
    assert details[2]["subroom"] == "applicant"
    assert ids["义乌某电子商务有限公司"] not in details[2]["recipients"]
