"""The /notes namespace on the wire: real python-socketio clients with pycrdt documents against
the real server. Who receives what is checked on what actually reached each socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from pycrdt import Text
from sqlalchemy import func, select

from cases.models import utcnow
from notes import access
from notes.catalogue import TEXT_NAME
from notes.models import NoteUpdate
from notes.store import doc_from, get_document
from signaling.notes import NAMESPACE, read_sync_message
from tests.notes_client import NotesClient
from tests.notes_fixtures import APPLICANT, CLERK, MEDIATOR, RESPONDENT, WAITING, make_hearing
from web.context import SETTINGS
from web.notes import NOTES_HUB


@pytest.fixture
async def links(client: Any, sessionmaker: Any) -> dict[str, Any]:
    return await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)


@pytest.fixture
async def clients(client: Any) -> Any:
    made: list[NotesClient] = []

    async def connect(
        name: str, token: str | None = None, cookie: str | None = None
    ) -> NotesClient:
        c = NotesClient(name)
        await c.connect(str(client.make_url("/")), token=token, cookie=cookie)
        made.append(c)
        return c

    yield connect
    for c in made:
        await c.sio.disconnect()
    await asyncio.sleep(0.1)


async def test_two_editors_converge_with_chinese_emoji_and_deletions(
    client: Any, links: dict[str, Any], clients: Any, sessionmaker: Any
) -> None:
    key = f"record:{links['hearing']}"
    mediator = await clients("mediator", links[MEDIATOR][1])
    clerk = await clients("clerk", links[CLERK][1])
    party = await clients("party", links[APPLICANT][1])
    for c in (mediator, clerk, party):
        ack = await c.open(key)
        assert ack["ok"], ack
    assert (await mediator.open(key))["writable"] and not (await party.open(key))["writable"]

    first = await mediator.edit(key, lambda t: t.insert(0, "调解员：双方确认😀基本事实。"))
    assert first["ok"] and first["seq"] == 1
    await clerk.until(lambda: str(clerk.text(key)) == "调解员：双方确认😀基本事实。")

    # Both delete at the same spot and type there before seeing each other's change.
    def mediator_change(t: Any) -> None:
        s = str(t)
        start = len(s[:4].encode())  # after "调解员：" (pycrdt counts UTF-8 bytes)
        end = len(s[:9].encode())  # "双方确认😀" gone
        del t[start:end]
        t.insert(start, "申请人称👍")

    def clerk_change(t: Any) -> None:
        s = str(t)
        start = len(s[:6].encode())
        end = len(s[:9].encode())  # "确认😀" gone
        del t[start:end]
        t.insert(start, "🎉被申请人同意")

    await asyncio.gather(mediator.edit(key, mediator_change), clerk.edit(key, clerk_change))
    await mediator.until(lambda: str(mediator.text(key)) == str(clerk.text(key)))
    await party.until(lambda: str(party.text(key)) == str(mediator.text(key)))
    final = str(mediator.text(key))
    assert "申请人称👍" in final and "🎉被申请人同意" in final and "😀" not in final
    assert final.startswith("调解员：") and final.endswith("基本事实。")

    # The server's own document agrees, and every acknowledged edit is in the database.
    hub = client.app[NOTES_HUB]
    async with sessionmaker() as session:
        document = await get_document(session, key)
        assert document is not None
        count = await session.scalar(select(func.count()).select_from(NoteUpdate))
    assert (await hub.current_text(document))[0] == final
    assert count == 3


async def test_edits_stored_in_one_commit_reach_each_socket_as_one_message(
    client: Any, links: dict[str, Any], clients: Any
) -> None:
    """Under load several edits share a commit; each reader then gets one message holding them
    all, and each sender the others' edits without its own."""
    key = f"record:{links['hearing']}"
    mediator = await clients("mediator", links[MEDIATOR][1])
    clerk = await clients("clerk", links[CLERK][1])
    party = await clients("party", links[APPLICANT][1])
    for c in (mediator, clerk, party):
        assert (await c.open(key))["ok"]
    await mediator.edit(key, lambda t: t.insert(0, "笔录："))
    for c in (clerk, party):
        await c.until(lambda c=c: str(c.text(key)) == "笔录：")
    base = mediator.docs[key].get_update()
    seen = {c.name: len(c.events("y")) for c in (mediator, clerk, party)}

    def typed(c: NotesClient, change: Any) -> bytes:
        before = c.docs[key].get_state()
        change(c.text(key))
        return c.docs[key].get_update(before)

    mediator_first = typed(mediator, lambda t: t.insert(len(str(t).encode()), "甲方😀"))
    clerk_edit = typed(clerk, lambda t: t.insert(0, "乙方"))
    mediator_second = typed(mediator, lambda t: t.insert(len(str(t).encode()), "丙方"))
    secret = client.app[SETTINGS].secret_key

    def by(token: str) -> Any:
        return lambda session: access.by_link(session, secret, token, utcnow())

    hub = client.app[NOTES_HUB]
    # Queued together before the first commit starts, so one commit stores all three.
    accepted = await asyncio.gather(
        hub.accept(key, mediator_first, by(links[MEDIATOR][1]), mediator.sio.get_sid(NAMESPACE)),
        hub.accept(key, clerk_edit, by(links[CLERK][1]), clerk.sio.get_sid(NAMESPACE)),
        hub.accept(key, mediator_second, by(links[MEDIATOR][1]), mediator.sio.get_sid(NAMESPACE)),
    )
    assert [a.seq for a in accepted] == [2, 3, 4]
    expected = "乙方笔录：甲方😀丙方"
    for c in (mediator, clerk, party):
        await c.until(lambda c=c: str(c.text(key)) == expected)
    await asyncio.sleep(0.2)

    def only_update(c: NotesClient) -> tuple[dict[str, Any], str]:
        new = c.events("y")[seen[c.name] :]
        assert len(new) == 1, (c.name, new)
        doc = doc_from(base)
        doc.apply_update(read_sync_message(new[0]["m"])[1])
        return new[0], str(doc.get(TEXT_NAME, type=Text))

    message, text = only_update(party)
    assert (message["first"], message["seq"]) == (2, 4) and text == expected
    message, text = only_update(clerk)  # the mediator's two edits, not its own
    assert text == "笔录：甲方😀丙方"
    message, text = only_update(mediator)  # the clerk's edit only
    assert text == "乙方笔录："


async def test_party_edit_is_rejected_on_the_wire(links: dict[str, Any], clients: Any) -> None:
    key = f"record:{links['hearing']}"
    mediator = await clients("mediator", links[MEDIATOR][1])
    party = await clients("party", links[APPLICANT][1])
    await mediator.open(key)
    await party.open(key)
    await mediator.edit(key, lambda t: t.insert(0, "笔录开始。"))
    await party.until(lambda: str(party.text(key)) == "笔录开始。")

    ack = await party.edit(key, lambda t: t.insert(0, "我改的"))
    assert ack == {"ok": False, "error": ack["error"]} and ack["error"]["code"] == "notes_read_only"
    errors = party.events("error")
    assert errors and errors[-1]["code"] == "notes_read_only" and errors[-1]["doc"] == key
    await asyncio.sleep(0.2)
    assert str(mediator.text(key)) == "笔录开始。"
    # A fresh reader gets the server's text, without the refused edit.
    other = await clients("respondent", links[RESPONDENT][1])
    await other.open(key)
    await other.until(lambda: str(other.text(key)) == "笔录开始。")


async def test_private_notes_never_reach_a_party_socket(
    links: dict[str, Any], clients: Any
) -> None:
    case_id = links["case"]
    private, shared, record = (
        f"private:{case_id}",
        f"shared:{case_id}",
        f"record:{links['hearing']}",
    )
    mediator = await clients("mediator", links[MEDIATOR][1])
    party = await clients("party", links[APPLICANT][1])
    waiting = await clients("waiting", links[WAITING][1])
    for key in (private, shared, record):
        assert (await mediator.open(key))["ok"]
    refused = await party.open(private)
    assert refused["ok"] is False and refused["error"]["code"] == "notes_forbidden"
    assert (await party.open(shared))["ok"] and (await party.open(record))["ok"]
    # Someone still in the lobby does not read the record yet; shared notes they may.
    assert (await waiting.open(record))["ok"] is False
    # Even asking the server for the private document's content fails.
    ack = await party.sio.call(
        "y", {"doc": private, "m": b"\x00\x00\x01\x00"}, namespace="/notes", timeout=5
    )
    assert ack["error"]["code"] == "notes_not_open"

    secret = "秘密：申请人底线为二十万元🔒"
    await mediator.edit(private, lambda t: t.insert(0, secret))
    await mediator.edit(shared, lambda t: t.insert(0, "下次调解：周五"))
    await mediator.edit(record, lambda t: t.insert(0, "笔录"))
    await party.until(lambda: str(party.text(record)) == "笔录")
    await party.until(lambda: str(party.text(shared)) == "下次调解：周五")
    await asyncio.sleep(0.3)
    seen = party.received + waiting.received
    assert seen, "the party's socket did receive the record and shared notes"
    for event, data in seen:
        assert isinstance(data, dict)
        if event == "y":
            assert data["doc"] != private
            assert secret.encode() not in data["m"]
        else:
            assert event == "error" and "底线" not in repr(data)


async def test_presence_is_relayed_from_writers_only(
    links: dict[str, Any], clients: Any, sessionmaker: Any
) -> None:
    key = f"record:{links['hearing']}"
    mediator = await clients("mediator", links[MEDIATOR][1])
    clerk = await clients("clerk", links[CLERK][1])
    party = await clients("party", links[APPLICANT][1])
    for c in (mediator, clerk, party):
        await c.open(key)
    await party.sio.emit("aw", {"doc": key, "m": b"\x01\x02party"}, namespace="/notes")
    await mediator.sio.emit("aw", {"doc": key, "m": b"\x01\x02mediator"}, namespace="/notes")
    await clerk.until(lambda: bool(clerk.events("aw")))
    await party.until(lambda: bool(party.events("aw")))
    await asyncio.sleep(0.2)
    assert [e["m"] for e in clerk.events("aw")] == [b"\x01\x02mediator"]
    assert not mediator.events("aw")  # not echoed to the sender
    async with sessionmaker() as session:  # presence is never stored
        assert await session.scalar(select(func.count()).select_from(NoteUpdate)) == 0


async def test_a_revoked_link_stops_writing_on_an_open_socket(
    links: dict[str, Any], clients: Any, sessionmaker: Any
) -> None:
    from cases.actor import Actor
    from cases.uow import transaction
    from rooms.invitations import do_revoke_invitation
    from rooms.models import HearingParticipant

    key = f"record:{links['hearing']}"
    clerk = await clients("clerk", links[CLERK][1])
    assert (await clerk.open(key))["writable"]
    assert (await clerk.edit(key, lambda t: t.insert(0, "第一句")))["ok"]
    async with transaction(sessionmaker) as session:
        participant = await session.get(HearingParticipant, links[CLERK][0])
        from cases.intake import get_case

        case = await get_case(session, links["case"])
        await do_revoke_invitation(session, Actor.for_user(case.mediator), participant)
    ack = await clerk.edit(key, lambda t: t.insert(0, "撤销后"))
    assert ack["ok"] is False and ack["error"]["code"] == "invitation_revoked"


async def test_staff_session_cookie_on_the_socket(
    client: Any, links: dict[str, Any], clients: Any, demo_logins: dict[str, str]
) -> None:
    from tests.helpers import login

    case_id = links["case"]
    await login(client, "mediator2", demo_logins["mediator2"])  # not this case's mediator
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["yuntiao_session"]
    other = await clients("mediator2", cookie=cookie.value)
    refused = await other.open(f"private:{case_id}")
    assert refused["ok"] is False and refused["error"]["code"] == "notes_forbidden"
    await login(client, "clerk", demo_logins["clerk"])
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["yuntiao_session"]
    clerk = await clients("clerk", cookie=cookie.value)
    opened = await clerk.open(f"private:{case_id}")
    assert opened["ok"] and opened["writable"]
    assert (await clerk.edit(f"private:{case_id}", lambda t: t.insert(0, "书记员私记")))["ok"]
    # Without a link or a session the socket is refused outright.
    anonymous = NotesClient("anonymous")
    with pytest.raises(socketio.exceptions.ConnectionError, match="/notes"):
        await anonymous.connect(str(client.make_url("/")))
