"""The notes pages: staff see the case's documents and history and restore a version through the
form; a party's link opens the read-only notes page; the hearing room carries the record panel;
no access without the right person."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from cases.models import User
from notes import access, store
from tests.helpers import login
from tests.notes_fixtures import APPLICANT, MEDIATOR, make_hearing
from web.context import SETTINGS
from web.notes import NOTES_HUB


async def _write(client: Any, sessionmaker: Any, key: str, username: str, text: str) -> None:
    """An edit through the hub as ``username`` (what the socket does for a browser)."""
    hub = client.app[NOTES_HUB]
    async with sessionmaker() as session:
        user_id = await session.scalar(select(User.id).where(User.username == username))
        document, _ = await store.open_document(session, key)
        await session.commit()
    current, _seq = await hub.current_text(document)
    async with sessionmaker() as session:
        state, _ = await store.load_state(session, document.id)
    doc = store.doc_from(state)
    before = doc.get_state()
    from pycrdt import Text

    ytext = doc.get("text", type=Text)
    del ytext[0 : len(current.encode())]
    ytext.insert(0, text)

    async def as_user(session: Any) -> access.Principal:
        return access.staff(await session.get(User, user_id))

    await hub.accept(key, doc.get_update(before), as_user)


async def test_staff_pages_history_and_restore(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    case_id = links["case"]
    key = f"shared:{case_id}"
    await _write(client, sessionmaker, key, "mediator", "第一版：双方同意😀")
    await _write(client, sessionmaker, key, "clerk", "第二版")

    csrf = await login(client, "mediator", demo_logins["mediator"])
    page = await client.get(f"/cases/{case_id}")
    assert f'href="/cases/{case_id}/notes"' in await page.text()
    overview = await client.get(f"/cases/{case_id}/notes")
    html = await overview.text()
    assert overview.status == 200
    assert f'data-record-doc="private:{case_id}"' in html
    assert f'data-record-doc="record:{links["hearing"]}"' not in html  # listed, linked
    assert f"/cases/{case_id}/notes/record:{links['hearing']}" in html

    history = await client.get(f"/cases/{case_id}/notes/{key}")
    html = await history.text()
    assert history.status == 200
    versions = re.findall(r'data-version="(\d+)"', html)
    assert versions == ["2", "1"]
    assert "<strong>clerk</strong>" in html and "<strong>mediator</strong>" in html
    missing = await client.get(f"/cases/{case_id}/notes/private:{case_id + 1000}")
    assert missing.status == 404
    resp = await client.post(
        f"/cases/{case_id}/notes/{key}/restore",
        data={"version": "1", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    document = None
    async with sessionmaker() as session:
        document = await store.get_document(session, key)
    assert document is not None
    assert (await client.app[NOTES_HUB].current_text(document))[0] == "第一版：双方同意😀"

    # Without the CSRF token nothing happens.
    refused = await client.post(
        f"/cases/{case_id}/notes/{key}/restore", data={"version": "2"}, allow_redirects=False
    )
    assert refused.status == 403
    bad = await client.post(
        f"/cases/{case_id}/notes/{key}/restore",
        data={"version": "99", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert bad.status == 422 and "没有这个版本" in await bad.text()


async def test_notes_pages_need_the_right_person(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    case_id = links["case"]
    anonymous = await client.get(f"/cases/{case_id}/notes", allow_redirects=False)
    assert anonymous.status in (302, 303)
    await login(client, "mediator2", demo_logins["mediator2"])  # not this case's mediator
    other = await client.get(f"/cases/{case_id}/notes/shared:{case_id}")
    assert other.status == 403


async def test_party_link_pages(client: Any, sessionmaker: Any) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    token = links[APPLICANT][1]
    page = await client.get(f"/h/{token}/notes")
    html = await page.text()
    assert page.status == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert f'data-record-doc="shared:{links["case"]}"' in html
    assert "private:" not in html
    bad = await client.get("/h/not-a-token/notes")
    assert bad.status == 403
    room = await client.get(f"/h/{links[MEDIATOR][1]}/room")
    html = await room.text()
    assert 'id="record-panel"' in html and f'data-record-doc="record:{links["hearing"]}"' in html
