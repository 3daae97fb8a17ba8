"""The pages a participant opens from their hearing link, over real HTTP on SQLite and
PostgreSQL: the pre-join page (hearing, name, rights notice, recording consent), the "ready" form
(acknowledgement and consent written and audited, then the room), the room shell, and bad links
(expired, forged, withdrawn) answered with a readable page that says what to do."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from html import unescape
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cases.actor import Actor
from cases.audit import AuditAction
from cases.models import AuditEntry, Case, User, utcnow
from cases.uow import transaction
from rooms import hearings as H
from rooms.access import participant_actor
from rooms.invitations import do_revoke_invitation, issue_invitation
from rooms.models import Hearing, HearingParticipant
from web.context import SETTINGS

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
APPLICANT_CO = "宜昌某家居用品有限公司"
MEDIATOR = "李静"
NOTICE_ZH = "权利义务告知书"
NEW_LINK_ZH = "向调解组织索取新链接"


async def schedule(sessionmaker: Any, **changes: Any) -> int:
    """Schedule a hearing of demo case 1 (as its mediator) starting in 10 minutes."""
    data = H.HearingInput(scheduled_at=utcnow() + dt.timedelta(minutes=10), duration_minutes=60)
    data = dataclasses.replace(data, **changes)
    async with transaction(sessionmaker) as session:
        user = await session.scalar(select(User).where(User.username == "mediator"))
        case = await session.get(Case, 1)
        hearing = await H.do_schedule_hearing(
            session, Actor.for_user(user, "127.0.0.1", "pytest"), case, data
        )
        return hearing.id


async def links(
    client: TestClient,  # type: ignore[type-arg]
    sessionmaker: Any,
    hearing_id: int,
    **issue: Any,
) -> dict[str, str]:
    """Display name → the path of that participant's link."""
    secret = client.app[SETTINGS].secret_key
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        return {
            p.display_name: "/h/" + issue_invitation(secret, hearing, p, **issue)
            for p in hearing.participants
        }


async def participant(sessionmaker: Any, hearing_id: int, name: str) -> HearingParticipant:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(HearingParticipant).where(
                HearingParticipant.hearing_id == hearing_id,
                HearingParticipant.display_name == name,
            )
        )
        assert found is not None
        return found


async def audit_actions(sessionmaker: Any, object_id: int) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.object_type == "hearing_participant",
                AuditEntry.object_id == str(object_id),
            )
        )
        return list(rows)


async def page(client: TestClient, path: str) -> tuple[int, str, Any]:  # type: ignore[type-arg]
    resp = await client.get(path, allow_redirects=False)
    return resp.status, await resp.text(), resp.headers


def csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


# ---- the pre-join page --------------------------------------------------------------------------


async def test_prejoin_shows_hearing_name_and_rights_notice(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker, title="第一次调解")
    path = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    status, html, headers = await page(client, path)
    assert status == 200
    assert APPLICANT_CO in html and "当事人 · 申请人一方" in html
    assert "第一次调解" in html and "外观设计专利侵权纠纷" in html and "（2026）" in html
    assert "北京时间" in html
    # The notice of rights and obligations, in Chinese (人民调解法 Art. 23–24).
    assert NOTICE_ZH in html and "《中华人民共和国人民调解法》第二十三条、第二十四条" in html
    for right in (
        "选择或者接受人民调解员",
        "拒绝调解或者要求终止调解",
        "公开进行或者不公开进行",
        "自愿达成调解协议",
    ):
        assert right in html
    for duty in ("如实陈述纠纷事实", "遵守调解现场秩序，尊重人民调解员", "尊重对方当事人行使权利"):
        assert duty in html
    assert 'name="acknowledge"' in html
    # Device check with the phone fallback naming the organisation's number.
    assert 'id="preview"' in html and 'id="camera-select"' in html
    assert "0717-6000000" in html
    # Not recorded: no consent question.
    assert 'name="recording_consent"' not in html
    # The link is a credential in the path: never sent on as a referrer, never cached.
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    # Scripts only from our origin with the nonce: no inline code, no inline handlers.
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="/static/' in tag and "nonce=" in tag
    assert not re.search(r"\son[a-z]+=", html)


async def test_staff_skip_the_notice(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker, record=True)
    path = (await links(client, sessionmaker, hearing_id))[MEDIATOR]
    status, html, _ = await page(client, path)
    assert status == 200 and MEDIATOR in html and "调解员" in html
    assert NOTICE_ZH not in html and 'name="recording_consent"' not in html
    resp = await client.post(
        path + "/ready", data={"csrf_token": csrf(html)}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == path + "/room"


async def test_english_notice(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    path = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    client.session.cookie_jar.update_cookies({"yuntiao_lang": "en"})
    status, html, _ = await page(client, path)
    assert status == 200
    assert "Notice of rights and obligations" in html and "People's Mediation Law" in html
    assert "Beijing time" in html


# ---- ready → room -------------------------------------------------------------------------------


async def test_ready_records_the_acknowledgement_and_opens_the_room(
    client: Any, sessionmaker: Any
) -> None:
    hearing_id = await schedule(sessionmaker)
    path = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    # The room is not reachable before the notice was confirmed.
    status, _html, headers = await page(client, path + "/room")
    assert status == 303 and headers["Location"] == path
    _status, html, _ = await page(client, path)
    resp = await client.post(
        path + "/ready",
        data={"csrf_token": csrf(html), "acknowledge": "yes"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == path + "/room"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    me = await participant(sessionmaker, hearing_id, APPLICANT_CO)
    assert me.rights_acknowledged_at is not None
    assert AuditAction.RIGHTS_ACKNOWLEDGED in await audit_actions(sessionmaker, me.id)
    status, html, headers = await page(client, path + "/room")
    assert status == 200 and headers["Referrer-Policy"] == "no-referrer"
    token = path.removeprefix("/h/")
    assert f'data-token="{token}"' in html and f'data-hearing-id="{hearing_id}"' in html
    assert 'src="/static/js/hearing-room.js"' in html
    assert "请稍候，调解员即将请您进入" in html  # the waiting-room text is in the page, translated
    # The room script's texts are JSON in a single-quoted attribute: valid and translated.
    texts = re.search(r"data-texts='([^']*)'", html)
    assert texts and "调解已结束" in json.loads(unescape(texts.group(1)))["ended"]


async def test_ready_needs_the_box_ticked(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    path = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    _status, html, _ = await page(client, path)
    resp = await client.post(
        path + "/ready", data={"csrf_token": csrf(html)}, allow_redirects=False
    )
    assert resp.status == 422
    assert "请阅读权利义务告知书并勾选确认" in await resp.text()
    me = await participant(sessionmaker, hearing_id, APPLICANT_CO)
    assert me.rights_acknowledged_at is None


async def test_ready_refuses_a_missing_csrf_token(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    path = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    await page(client, path)
    resp = await client.post(path + "/ready", data={"acknowledge": "yes"}, allow_redirects=False)
    assert resp.status == 403
    me = await participant(sessionmaker, hearing_id, APPLICANT_CO)
    assert me.rights_acknowledged_at is None


async def test_recording_consent_question_and_refusal(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker, record=True)
    path = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    _status, html, _ = await page(client, path)
    assert 'name="recording_consent"' in html
    assert "录音录像" in html and "仍可正常参加调解" in html  # what refusing means
    token = csrf(html)
    resp = await client.post(
        path + "/ready", data={"csrf_token": token, "acknowledge": "yes"}, allow_redirects=False
    )
    assert resp.status == 422 and "请回答您是否同意录音录像" in await resp.text()
    resp = await client.post(
        path + "/ready",
        data={"csrf_token": token, "acknowledge": "yes", "recording_consent": "no"},
        allow_redirects=False,
    )
    assert resp.status == 303
    me = await participant(sessionmaker, hearing_id, APPLICANT_CO)
    assert me.recording_consent is False and me.rights_acknowledged_at is not None
    actions = await audit_actions(sessionmaker, me.id)
    assert AuditAction.RECORDING_CONSENT in actions and AuditAction.RIGHTS_ACKNOWLEDGED in actions
    status, _html, _ = await page(client, path + "/room")
    assert status == 200


# ---- links that cannot be used ------------------------------------------------------------------


def assert_readable_link_error(status: int, html: str) -> None:
    assert status == 403
    assert "无法使用此链接" in html and NEW_LINK_ZH in html
    assert "Traceback" not in html and "InvitationError" not in html


async def test_expired_forged_and_withdrawn_links(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    valid = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    expired = (
        await links(client, sessionmaker, hearing_id, expires_at=utcnow() - dt.timedelta(minutes=1))
    )[APPLICANT_CO]
    forged = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    cases = {"expired": expired, "forged": forged, "garbage": "/h/not-a-link"}
    for name, path in cases.items():
        for suffix in ("", "/room"):
            status, html, headers = await page(client, path + suffix)
            assert_readable_link_error(status, html)
            assert headers["Referrer-Policy"] == "no-referrer", name
        assert name == "expired" or "该调解链接无效" in (await page(client, path))[1]
    assert "该调解链接已过期" in (await page(client, expired))[1]
    # The form of an expired link cannot write anything either.
    _status, html, _ = await page(client, valid)
    resp = await client.post(
        expired + "/ready", data={"csrf_token": csrf(html), "acknowledge": "yes"}
    )
    assert_readable_link_error(resp.status, await resp.text())
    # Withdrawn: a new link was issued, so the old one stops working.
    me_id = (await participant(sessionmaker, hearing_id, APPLICANT_CO)).id
    async with transaction(sessionmaker) as session:
        user = await session.scalar(select(User).where(User.username == "mediator"))
        me = await session.get(HearingParticipant, me_id)
        await do_revoke_invitation(session, Actor.for_user(user), me)
    status, html, _ = await page(client, valid)
    assert_readable_link_error(status, html)
    assert "该调解链接已被撤回" in html
    fresh = (await links(client, sessionmaker, hearing_id))[APPLICANT_CO]
    assert (await page(client, fresh))[0] == 200
    me = await participant(sessionmaker, hearing_id, APPLICANT_CO)
    assert me.rights_acknowledged_at is None


async def test_denied_and_ended_show_what_to_do(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    paths = await links(client, sessionmaker, hearing_id)
    async with transaction(sessionmaker) as session:
        hearing = await session.get(Hearing, hearing_id)
        people = {p.display_name: p for p in hearing.participants}
        mediator = people[MEDIATOR]
        await H.do_join(session, participant_actor(mediator), mediator)
        applicant = people[APPLICANT_CO]
        await H.do_acknowledge_rights(session, participant_actor(applicant), applicant)
        await H.do_join(session, participant_actor(applicant), applicant)
        await H.do_deny(session, participant_actor(mediator), applicant, by=mediator)
    status, html, _ = await page(client, paths[APPLICANT_CO])
    assert status == 200 and "调解员未准许您进入本场调解" in html
    assert 'id="ready-form"' not in html and "0717-6000000" in html
    async with transaction(sessionmaker) as session:
        hearing = await session.get(Hearing, hearing_id)
        mediator = next(p for p in hearing.participants if p.display_name == MEDIATOR)
        await H.do_end_hearing(session, participant_actor(mediator), hearing, by=mediator)
    status, html, _ = await page(client, paths["刘某"])
    assert status == 200 and "本次调解已结束" in html and 'id="ready-form"' not in html


async def test_user_text_is_escaped(client: Any, sessionmaker: Any) -> None:
    evil = '<script>alert("x")</script>'
    hearing_id = await schedule(
        sessionmaker,
        title=f"标题{evil}",
        observers=(H.ObserverInput(f"<img src=x onerror=alert(1)>王{evil}", "interpreter"),),
    )
    paths = await links(client, sessionmaker, hearing_id)
    observer = next(path for name, path in paths.items() if name.startswith("<img"))
    for path in (observer, paths[APPLICANT_CO]):
        _status, html, _ = await page(client, path)
        assert evil not in html and "<img src=x" not in html
        assert "标题&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    _status, html, _ = await page(client, observer)
    assert "&lt;img src=x onerror=alert(1)&gt;王" in html and "翻译" in html


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_room_page_for_staff_has_the_mediator_panel(client: Any, sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    paths = await links(client, sessionmaker, hearing_id)
    status, html, _ = await page(client, paths[MEDIATOR] + "/room")
    assert status == 200
    for control in ("caucus-split", "caucus-end", "move-room", "end-hearing", "lobby-list"):
        assert f'id="{control}"' in html
    _status, html, _ = await page(client, paths["刘某"])
    await client.post(
        paths["刘某"] + "/ready", data={"csrf_token": csrf(html), "acknowledge": "yes"}
    )
    status, html, _ = await page(client, paths["刘某"] + "/room")
    assert status == 200 and 'id="staff-panel"' not in html and 'data-staff="false"' in html
