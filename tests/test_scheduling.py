"""Scheduling a hearing from the case page and sending each participant their own link, over
real HTTP on SQLite and PostgreSQL: the form, the text messages in the outbox (one per party or
agent with a phone, each with the time and that person's own link), the links themselves, "new
link", who may do it, bad input, and the administrators' outbox page."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from cases.accounts import create_user
from cases.actor import Actor
from cases.audit import AuditAction
from cases.models import AuditEntry, Case, Organisation, Party, User
from cases.notifications import OutboxMessage
from cases.uow import transaction
from rooms.models import Hearing, HearingParticipant
from tests.browser import ARTIFACTS, chromium
from tests.helpers import login

ZONE = ZoneInfo("Asia/Shanghai")
BASE_URL = "http://127.0.0.1:8080"  # Settings.base_url of the test app (no public_url)
PHONES = {  # demo case 1: every party and the agent have a phone
    "宜昌某家居用品有限公司": "13800000001",
    "义乌某电子商务有限公司": "13800000002",
    "刘某": "13800000003",
    "赵律师": "13800000004",
}
LINK_RE = re.compile(r"https?://\S+/h/[A-Za-z0-9_.\-]+")
PARTICIPANT_NAME_RE = re.compile(r"<strong data-participant-name>([^<]+)</strong>")
OTHER_PASSWORD = "another-password-123"  # noqa: S105 (test account)

Client = TestClient  # type: ignore[type-arg]


def tomorrow_local(hour: int = 10, minute: int = 0) -> dt.datetime:
    day = dt.datetime.now(ZONE).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZONE)


def hearing_form(csrf: str, when: dt.datetime | None = None, **overrides: str) -> dict[str, Any]:
    when = when or tomorrow_local()
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "date": when.date().isoformat(),
        "time": when.strftime("%H:%M"),
        "duration": "90",
        "title": "第一次调解",
        "record": "yes",
        "observer-0-name": "周翻译",
        "observer-0-role": "interpreter",
        "observer-0-side": "respondent",
        "observer-1-name": "",
        "observer-1-role": "observer",
        "observer-1-side": "neutral",
    }
    form.update(overrides)
    return form


async def text_of(resp: Any) -> str:
    return unescape(await resp.text())


async def outbox(sessionmaker: Any) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def count(sessionmaker: Any, model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def audit_rows(sessionmaker: Any, action: AuditAction) -> list[AuditEntry]:
    async with sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.action == str(action))
                    .order_by(AuditEntry.seq)
                )
            ).all()
        )


async def participants(sessionmaker: Any) -> dict[str, HearingParticipant]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(HearingParticipant).order_by(HearingParticipant.id))
        return {p.display_name: p for p in rows}


def link_path(body: str) -> str:
    links = LINK_RE.findall(body)
    assert len(links) == 1, body
    assert links[0].startswith(BASE_URL + "/h/")
    return urlsplit(links[0]).path


async def schedule(client: Client, csrf: str, **overrides: str) -> Any:
    return await client.post(
        "/cases/1/hearings", data=hearing_form(csrf, **overrides), allow_redirects=False
    )


async def add_user(sessionmaker: Any, username: str, role: str, organisation: str) -> None:
    async with transaction(sessionmaker) as session:
        org_id = await session.scalar(
            select(Organisation.id).where(Organisation.short_name == organisation)
        )
        await create_user(
            session,
            Actor.system("pytest"),
            username=username,
            password=OTHER_PASSWORD,
            display_name=username,
            role=role,
            organisation_id=org_id,
        )


# ---- scheduling through the form -------------------------------------------------------------


async def test_mediator_schedules_and_each_party_is_texted_their_own_link(
    client: Client, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "mediator", demo_logins["mediator"])
    page = await text_of(await client.get("/cases/1"))
    assert "线上调解" in page and "本案尚未安排线上调解" in page
    assert 'action="/cases/1/hearings#hearings"' in page and "时间（北京时间）" in page
    assert "陈书记员" in page  # the organisation's clerk can be invited

    async with sessionmaker() as session:
        clerk_id = await session.scalar(select(User.id).where(User.username == "clerk"))
    when = tomorrow_local(14, 30)
    resp = await client.post(
        "/cases/1/hearings",
        data=hearing_form(csrf, when, clerk_ids=str(clerk_id)),
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    async with sessionmaker() as session:
        hearing = await session.scalar(select(Hearing))
        assert hearing is not None
        # Typed in Beijing time, stored as the same instant.
        assert hearing.scheduled_at == when.astimezone(dt.UTC)
        assert hearing.duration_minutes == 90 and hearing.record and hearing.title == "第一次调解"
    assert resp.headers["Location"] == f"/cases/1?done=hearing_scheduled#hearing-{hearing.id}"

    # One text message per party and agent with a phone; none for staff or the interpreter.
    messages = await outbox(sessionmaker)
    assert sorted(m.recipient for m in messages) == sorted(PHONES.values())
    by_id = await participants(sessionmaker)
    assert set(by_id) == {*PHONES, "李静", "陈书记员", "周翻译"}
    async with sessionmaker() as session:
        case_number = (await session.get(Case, 1)).number  # type: ignore[union-attr]
    paths = {}
    for message in messages:
        assert message.channel == "sms" and message.case_id == 1
        assert message.hearing_id == hearing.id and message.sent_at is None
        name = next(n for n, phone in PHONES.items() if phone == message.recipient)
        assert message.participant_id == by_id[name].id
        body = message.body
        assert case_number in body
        assert when.strftime("%Y-%m-%d %H:%M") in body and "北京时间" in body
        assert "仅供您本人使用，请勿转发他人" in body
        assert "0717-6000000" in body  # the office's number for questions
        paths[name] = link_path(body)
    assert len(set(paths.values())) == len(PHONES)

    # Each link opens the pre-join page of exactly that participant.
    for name, path in paths.items():
        resp = await client.get(path)
        assert resp.status == 200, name
        html = await text_of(resp)
        assert PARTICIPANT_NAME_RE.findall(html) == [name]
        assert "第一次调解" in html

    # The case page lists the hearing with every participant, their state and the links.
    page = await text_of(await client.get(f"/cases/1?done=hearing_scheduled#hearing-{hearing.id}"))
    assert "调解已安排" in page
    assert f'id="hearing-{hearing.id}"' in page
    assert when.strftime("%Y-%m-%d %H:%M") + "（北京时间），时长 90 分钟" in page
    assert "已安排" in page and "全程录像" in page
    for name in (*PHONES, "李静", "陈书记员", "周翻译"):
        assert name in page
    assert page.count("已邀请") >= 7 and "翻译人员" in page and "被申请人一方" in page
    for phone in PHONES.values():
        assert f"通过短信发送至 {phone}" in page
    shown = re.findall(r'id="link-(\d+)"[^>]*value="([^"]+)"', page)
    shown_ids = {int(pid) for pid, _link in shown}
    # Parties, agents and the interpreter, and the mediator's own link; not the clerk's.
    assert shown_ids == {by_id[n].id for n in (*PHONES, "周翻译", "李静")}
    assert "此链接仅 陈书记员 本人可在其案件页面查看" in page
    for _pid, link in shown:
        assert link.startswith(BASE_URL + "/h/")
    assert 'data-copy="link-' in page and "生成新链接" in page
    # The copy button is a module from our own origin, like every script (no inline code).
    assert '<script type="module" src="/static/js/case-hearings.js"' in page
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", page))
    assert (await client.get("/static/js/case-hearings.js")).status == 200

    # Audited: the scheduling, and each text message with the number masked.
    assert len(await audit_rows(sessionmaker, AuditAction.HEARING_SCHEDULED)) == 1
    queued = await audit_rows(sessionmaker, AuditAction.NOTIFICATION_QUEUED)
    assert sorted(e.details_dict()["recipient"] for e in queued) == [
        "138****0001",
        "138****0002",
        "138****0003",
        "138****0004",
    ]
    for entry in queued:
        assert entry.case_id == 1 and entry.actor_label == "mediator"
        assert "13800000" not in entry.details
    history = page.split('id="history"')[1]
    assert "通知已存入发件箱" in history and "短信，发送至 138****0003" in history


async def test_new_link_withdraws_the_old_one_and_texts_the_new_one(
    client: Client, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "clerk", demo_logins["clerk"])  # the office may do it too
    assert (await schedule(client, csrf)).status == 303
    before = await outbox(sessionmaker)
    old = next(m for m in before if m.recipient == PHONES["刘某"])
    old_path = link_path(old.body)
    assert (await client.get(old_path)).status == 200
    liu = (await participants(sessionmaker))["刘某"]

    resp = await client.post(
        f"/cases/1/hearings/{liu.hearing_id}/participants/{liu.id}/link",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == f"/cases/1?done=link_renewed#hearing-{liu.hearing_id}"

    resp = await client.get(old_path)
    assert resp.status == 403
    html = await text_of(resp)
    assert 'data-code="invitation_revoked"' in html and "该调解链接已被撤回" in html

    after = await outbox(sessionmaker)
    assert len(after) == len(before) + 1
    new = after[-1]
    assert new.recipient == PHONES["刘某"] and new.participant_id == liu.id
    assert "新的专属链接" in new.body and "此前发送的链接已失效" in new.body
    new_path = link_path(new.body)
    assert new_path != old_path
    resp = await client.get(new_path)
    assert resp.status == 200
    assert PARTICIPANT_NAME_RE.findall(await text_of(resp)) == ["刘某"]
    # The others' links are untouched.
    other = next(m for m in before if m.recipient == PHONES["赵律师"])
    assert (await client.get(link_path(other.body))).status == 200

    assert len(await audit_rows(sessionmaker, AuditAction.INVITATION_REVOKED)) == 1
    assert len(await audit_rows(sessionmaker, AuditAction.NOTIFICATION_QUEUED)) == len(after)
    page = await text_of(await client.get("/cases/1?done=link_renewed"))
    assert "已生成新链接，原链接立即失效" in page


async def test_only_the_case_mediator_and_its_office_may_schedule_or_renew(
    client: Client, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "mediator", demo_logins["mediator"])
    assert (await schedule(client, csrf)).status == 303
    liu = (await participants(sessionmaker))["刘某"]
    renew = f"/cases/1/hearings/{liu.hearing_id}/participants/{liu.id}/link"
    messages, hearings = len(await outbox(sessionmaker)), await count(sessionmaker, Hearing)

    await add_user(sessionmaker, "yk_clerk", "clerk", "营自贸")
    for username, password in (
        ("mediator2", demo_logins["mediator2"]),  # same organisation, not this case's mediator
        ("yk_clerk", OTHER_PASSWORD),  # a clerk of another organisation
    ):
        client.session.cookie_jar.clear()
        csrf = await login(client, username, password)
        resp = await schedule(client, csrf)
        assert resp.status == 403, username
        assert "无权" in await text_of(resp)
        resp = await client.post(renew, data={"csrf_token": csrf}, allow_redirects=False)
        assert resp.status == 403, username
        assert (await client.get("/cases/1")).status == 403

    assert len(await outbox(sessionmaker)) == messages
    assert await count(sessionmaker, Hearing) == hearings
    assert not await audit_rows(sessionmaker, AuditAction.INVITATION_REVOKED)
    # A link of a participant of another case's hearing cannot be renewed through this case.
    client.session.cookie_jar.clear()
    csrf = await login(client, "mediator", demo_logins["mediator"])
    resp = await client.post(
        f"/cases/1/hearings/{liu.hearing_id}/participants/999999/link",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )
    assert resp.status == 404


async def test_bad_input_shows_the_form_again_with_a_clear_message(
    client: Client, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "mediator", demo_logins["mediator"])
    yesterday = dt.datetime.now(ZONE) - dt.timedelta(days=1)
    cases = [
        ({"date": yesterday.date().isoformat(), "time": "09:00"}, "按此时间本场调解已经结束"),
        ({"duration": "0"}, "每场调解时长须在 10 至 480 分钟之间"),
        ({"duration": "abc"}, "请以分钟为单位填写时长"),
        ({"date": "2026-02-30"}, "请填写调解的日期和时间"),
        ({"time": "25:61"}, "请填写调解的日期和时间"),
        ({"date": "0001-01-01", "time": "00:00"}, "请填写调解的日期和时间"),
        ({"date": "9999-12-31", "time": "23:59"}, "最多只能提前一年安排"),
        ({"observer-0-role": "judge"}, "未知的"),
    ]
    for overrides, message in cases:
        resp = await schedule(client, csrf, title="保留的标题", **overrides)
        assert resp.status == 422, overrides
        page = await text_of(resp)
        form = page.split('id="hearings"')[1]
        assert message in form, overrides
        assert 'id="hearing-error"' in form  # shown next to the form, which stays open
        assert 'value="保留的标题"' in form and 'value="周翻译"' in form  # nothing typed is lost
    assert await count(sessionmaker, Hearing) == 0
    assert await outbox(sessionmaker) == []


async def test_a_party_without_a_phone_gets_no_text_and_staff_hand_the_link_over(
    client: Client, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    async with transaction(sessionmaker) as session:
        zhao = await session.scalar(select(Party).where(Party.name == "赵律师"))
        assert zhao is not None
        zhao.phone = ""
    csrf = await login(client, "mediator", demo_logins["mediator"])
    assert (await schedule(client, csrf)).status == 303
    assert PHONES["赵律师"] not in {m.recipient for m in await outbox(sessionmaker)}
    assert len(await outbox(sessionmaker)) == len(PHONES) - 1
    page = await text_of(await client.get("/cases/1"))
    assert "未留手机号码：请将此链接自行转交该参加人" in page


# ---- the administrators' outbox ----------------------------------------------------------------


async def test_outbox_page_for_administrators_newest_first_and_escaped(
    client: Client, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "mediator", demo_logins["mediator"])
    assert (await schedule(client, csrf)).status == 303
    async with transaction(sessionmaker) as session:
        session.add(
            OutboxMessage(
                channel="sms",
                recipient="13900000009",
                body='<script>alert("x")</script> 最新一条',
                case_id=1,
            )
        )
    assert (await client.get("/admin/outbox")).status == 403  # mediators have no outbox page

    client.session.cookie_jar.clear()
    await login(client, "admin", demo_logins["admin"])
    resp = await client.get("/admin/outbox")
    assert resp.status == 200
    raw = await resp.text()
    assert '<script>alert("x")</script>' not in raw and "&lt;script&gt;" in raw
    page = unescape(raw)
    assert "发件箱" in page and "消息：5 条" in page and "未发送（保存在发件箱）" in page
    rows = re.findall(r'data-outbox="(\d+)"', page)
    assert [int(r) for r in rows] == sorted((int(r) for r in rows), reverse=True)
    assert page.index("最新一条") < page.index("13800000001")
    for phone in PHONES.values():
        assert phone in page
    assert '<a href="/cases/1">（' in page  # the case, linked by its number
    assert "北京时间" in page and "/h/" in page

    # Another organisation's administrator sees none of it; the system administrator all of it.
    await add_user(sessionmaker, "yk_admin", "org_admin", "营自贸")
    client.session.cookie_jar.clear()
    await login(client, "yk_admin", OTHER_PASSWORD)
    page = await text_of(await client.get("/admin/outbox"))
    assert "发件箱为空" in page and "13800000001" not in page
    client.session.cookie_jar.clear()
    await login(client, "sysadmin", demo_logins["sysadmin"])
    page = await text_of(await client.get("/admin/outbox"))
    assert "消息：5 条" in page


# ---- in a real browser ------------------------------------------------------------------------


def console_error(message: Any, problems: list[str]) -> None:
    # Chromium asks every site for /favicon.ico, which we do not serve; anything else counts.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        problems.append(f"{message.text} ({message.location.get('url', '')})")


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_schedule_and_copy_a_link_in_chromium(
    client: Client, demo_logins: dict[str, str]
) -> None:
    """The form as a person fills it in, the copy button (an ES module under the page's CSP),
    and the page still fitting a phone screen with a hearing's links on it."""
    base = str(client.make_url("/")).rstrip("/")
    problems: list[str] = []
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 375, "height": 812}, locale="zh-CN")
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = await context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda msg: console_error(msg, problems))
        page.on(
            "response",
            lambda resp: (
                problems.append(f"{resp.status} {resp.url}") if resp.status >= 400 else None
            ),
        )
        await page.goto(base + "/login?next=/cases/1")
        await page.fill("input[name=username]", "mediator")
        await page.fill("input[name=password]", demo_logins["mediator"])
        await page.click("button[type=submit]")
        await page.wait_for_url("**/cases/1")
        when = tomorrow_local(15, 0)
        await page.fill("#hr-date", when.date().isoformat())
        await page.fill("#hr-time", "15:00")
        await page.fill("#hr-duration", "45")
        await page.fill("#hr-ob-0-name", "周翻译")
        await page.select_option("#hr-ob-0-role", "interpreter")
        await page.get_by_role("button", name="安排调解", exact=True).click()
        await page.wait_for_url("**/cases/1?done=hearing_scheduled*")
        section = await page.inner_text("#hearings")
        assert when.strftime("%Y-%m-%d %H:%M") in section and "45 分钟" in section
        assert "周翻译" in section and "已邀请" in section

        row = page.locator("tr[data-participant]", has_text="刘某")
        button = row.locator("button[data-copy]")
        assert await button.is_visible()  # shown by the module; hidden without JavaScript
        link = await row.locator("input[data-link]").input_value()
        assert link.startswith(BASE_URL + "/h/")
        await button.click()
        await page.wait_for_function(
            "b => b.textContent.trim() === '已复制'", arg=await button.element_handle()
        )
        assert await page.evaluate("navigator.clipboard.readText()") == link
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        ARTIFACTS.mkdir(exist_ok=True)
        await page.locator("#hearings").screenshot(path=str(ARTIFACTS / "case-hearings.png"))

        # The copied link, opened like the party would (the server's address, not BASE_URL).
        await page.goto(base + urlsplit(link).path)
        assert await page.inner_text("[data-participant-name]") == "刘某"
        await context.close()
    assert not problems, problems
