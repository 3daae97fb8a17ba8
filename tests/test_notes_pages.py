"""The notes pages: staff see the case's documents and history and restore a version through the
form; a party's link opens the read-only notes page; the hearing room carries the record panel;
no access without the right person."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import select

from cases.models import User
from cases.uow import transaction
from notes import access, store
from tests.helpers import login
from tests.notes_fixtures import APPLICANT, MEDIATOR, make_hearing
from web.context import SETTINGS
from web.notes import NOTES_HUB


async def _write(client: Any, sessionmaker: Any, key: str, username: str, text: str) -> None:
    """An edit through the hub as ``username`` (what the socket does for a browser)."""
    hub = client.app[NOTES_HUB]
    # A write (the document is created on first use): in the unit of work, as the server writes,
    # not in a plain session whose read-then-write SQLite refuses while a background job writes.
    async with transaction(sessionmaker) as session:
        user_id = await session.scalar(select(User.id).where(User.username == username))
        document, _ = await store.open_document(session, key)
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
    async with sessionmaker() as session:
        # Refused before anything was created for it.
        assert await store.get_document(session, f"shared:{case_id}") is None


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
    assert f'data-record-doc="private:{links["case"]}"' in html  # the mediator's own notes
    party_room = await client.get(f"/h/{token}/room")
    html = await party_room.text()
    assert 'id="record-panel"' in html and "private:" not in html


async def test_freeze_pdf_and_party_answers(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str], tmp_path: Any
) -> None:
    import hashlib
    import subprocess

    from cases.audit import AuditAction
    from cases.models import AuditEntry
    from cases.notifications import OutboxMessage
    from tests.notes_client import NotesClient
    from tests.notes_fixtures import CLERK, RESPONDENT

    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    case_id, key = links["case"], f"record:{links['hearing']}"
    await _write(
        client,
        sessionmaker,
        key,
        "mediator",
        "## 调解经过\n**申请人：** 要求赔偿三十万元，支付期限为2026年12月31日前。\n- 被申请人同意分期👍",
    )
    clerk = NotesClient("clerk")
    await clerk.connect(str(client.make_url("/")), token=links[CLERK][1])
    try:
        assert (await clerk.open(key))["writable"]
        csrf = await login(client, "mediator", demo_logins["mediator"])
        resp = await client.post(
            f"/cases/{case_id}/notes/{key}/freeze",
            data={"csrf_token": csrf},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()
        # The clerk's socket is told, and an edit now is refused.
        await clerk.until(lambda: bool(clerk.events("frozen")))
        ack = await clerk.edit(key, lambda t: t.insert(0, "晚了"))
        assert ack["ok"] is False and ack["error"]["code"] == "record_frozen"
    finally:
        await clerk.sio.disconnect()

    pdf = await client.get(f"/cases/{case_id}/notes/{key}/record.pdf")
    data = await pdf.read()
    assert pdf.status == 200 and pdf.content_type == "application/pdf"
    digest = hashlib.sha256(data).hexdigest()
    assert pdf.headers["X-Content-SHA256"] == digest
    path = tmp_path / "record.pdf"
    path.write_bytes(data)
    text = (
        await asyncio.to_thread(
            subprocess.run, ["pdftotext", str(path), "-"], capture_output=True, text=True
        )
    ).stdout
    assert "调解经过" in text and "要求赔偿三十万元" in text and "**" not in text
    assert "调解员 李静" in text and "刘某" in text and "义乌" not in text  # 义乌 never got in
    fonts = (
        await asyncio.to_thread(
            subprocess.run, ["pdffonts", str(path)], capture_output=True, text=True
        )
    ).stdout
    assert all(line.split()[-5:-3] == ["yes", "yes"] for line in fonts.splitlines()[2:])
    page = await client.get(f"/cases/{case_id}/notes/{key}")
    assert digest in await page.text()
    async with sessionmaker() as session:
        frozen = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == AuditAction.RECORD_FROZEN)
            )
        ).one()
    assert digest in frozen.details
    async with sessionmaker() as session:
        from notes.record import frozen_records

        archived = await frozen_records(session, case_id)
    assert [d.key for d in archived] == [key] and archived[0].frozen_sha256 == digest

    # The applicant (a fresh browser: no staff session) confirms with a one-time code.
    client.session.cookie_jar.clear()
    token = links[APPLICANT][1]
    party_page = await client.get(f"/h/{token}/notes")
    html = await party_page.text()
    assert "/record.pdf" in html and digest in html
    party_csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert party_csrf
    form = {"csrf_token": party_csrf.group(1)}
    sent = await client.post(f"/h/{token}/record/code", data=form, allow_redirects=False)
    assert sent.status == 303, await sent.text()
    async with sessionmaker() as session:
        message = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.recipient == "13800000001")
            )
        ).all()[-1]
    code = re.search(r"(?<!\d)(\d{6})(?!\d)", message.body)
    assert code
    wrong = "000000" if code.group(1) != "000000" else "111111"
    refused = await client.post(
        f"/h/{token}/record/confirm", data={**form, "code": wrong, "read": "yes"}
    )
    assert refused.status == 422 and "4" in await refused.text()
    unticked = await client.post(f"/h/{token}/record/confirm", data={**form, "code": code.group(1)})
    assert unticked.status == 422
    done = await client.post(
        f"/h/{token}/record/confirm",
        data={**form, "code": code.group(1), "read": "yes"},
        allow_redirects=False,
    )
    assert done.status == 303
    again = await client.post(
        f"/h/{token}/record/confirm", data={**form, "code": code.group(1), "read": "yes"}
    )
    assert again.status == 409
    party_pdf = await client.get(f"/h/{token}/record.pdf")
    assert hashlib.sha256(await party_pdf.read()).hexdigest() == digest

    # The respondent objects instead.
    other = links[RESPONDENT][1]
    objected = await client.post(
        f"/h/{other}/record/objection",
        data={**form, "objection": "第二段的金额记错了，应为二十万元。"},
        allow_redirects=False,
    )
    assert objected.status == 303
    async with sessionmaker() as session:
        actions = [
            row.action
            for row in (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action.like("notes.record_%"))
                )
            ).all()
        ]
    assert actions == [
        AuditAction.RECORD_FROZEN,
        AuditAction.RECORD_CONFIRMED,
        AuditAction.RECORD_OBJECTED,
    ]
    # The freeze sent each party with a phone their own confirmation link, valid for weeks
    # (a hearing link expires a day after the hearing). The agent's party uses theirs.
    async with sessionmaker() as session:
        texts = {
            m.recipient: m.body
            for m in (
                await session.scalars(select(OutboxMessage).where(OutboxMessage.body.like("%/r/%")))
            ).all()
        }
    assert set(texts) == {"13800000001", "13800000002", "13800000003"}
    link = re.search(r"(/r/\S+)$", texts["13800000002"])
    assert link
    confirm_page = await client.get(link.group(1))
    html = await confirm_page.text()
    assert confirm_page.status == 200 and digest in html and "义乌某电子商务有限公司" in html
    link_pdf = await client.get(link.group(1) + "/record.pdf")
    assert hashlib.sha256(await link_pdf.read()).hexdigest() == digest
    csrf_r = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert csrf_r
    objected = await client.post(
        link.group(1) + "/objection",
        data={"csrf_token": csrf_r.group(1), "objection": "我没有参加本次调解。"},
        allow_redirects=False,
    )
    assert objected.status == 303 and objected.headers["Location"].endswith("?done=objected")
    assert (await client.get(link.group(1) + "x")).status == 403

    await login(client, "mediator", demo_logins["mediator"])
    html = await (await client.get(f"/cases/{case_id}/notes/{key}")).text()
    assert 'data-answer="confirmed"' in html and html.count('data-answer="objected"') == 2
    assert "应为二十万元" in html and "我没有参加本次调解" in html
