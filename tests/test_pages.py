"""The staff pages as a person sees them: real requests through the middlewares and templates, on
SQLite and on PostgreSQL, asserting on what the page says (Chinese by default)."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cases.audit import AuditAction
from cases.models import AuditEntry, Case, Recusal
from tests.helpers import CSRF_RE, login

DEMO_ID_NUMBER = "440106199001011235"  # 刘某, respondent of the demo case (id 1)
YEAR = dt.datetime.now(ZoneInfo("Asia/Shanghai")).year
NUMBER_RE = re.compile(r"（(\d{4})）伍联调字第(\d+)号")


def id_number(first17: str) -> str:
    """A valid PRC resident ID number (GB 11643 check digit) from its first 17 digits."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


async def text_of(resp: Any) -> str:
    return unescape(await resp.text())


async def anonymous_csrf(client: Any) -> str:
    page = await client.get("/login")
    match = CSRF_RE.search(await page.text())
    assert match
    return match.group(1)


async def post_login(client: Any, username: str, password: str, **extra: str) -> Any:
    token = await anonymous_csrf(client)
    return await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, **extra},
        allow_redirects=False,
    )


def intake_form(csrf: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "channel": "court_referral",
        "referred_by": "宜昌市伍家岗区人民法院",
        "referral_reference": "（2026）鄂0503民初委调88号",
        "category": "contract",
        "title": "货款纠纷",
        "summary": "买卖合同货款 12 万元未付。",
        "claim_amount": "120,000.50",
        "organisation": "auto",
        "party-0-role": "applicant",
        "party-0-kind": "organisation",
        "party-0-name": "宜昌某电池材料有限公司",
        "party-0-phone": "13900000001",
        "party-1-role": "respondent",
        "party-1-kind": "person",
        "party-1-name": "孙某",
        "party-1-phone": "13900000002",
        "party-1-id_number": id_number("33010219850315123"),
        "party-2-role": "",
        "party-2-kind": "person",
        "party-2-name": "",
        "party-3-role": "agent",
        "party-3-kind": "person",
        "party-3-name": "钱律师",
        "party-3-represents": "1",
    }
    form.update(overrides)
    return form


async def audit_count(sessionmaker: Any, action: AuditAction, case_id: int = 1) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == str(action), AuditEntry.case_id == case_id)
            )
            or 0
        )


# ---- sign-in and language -------------------------------------------------------------------


async def test_login_page_is_chinese_by_default_and_english_after_the_switch(client: Any) -> None:
    resp = await client.get("/login")
    assert resp.status == 200
    page = await text_of(resp)
    assert '<html lang="zh-CN">' in page
    assert "登录" in page and "用户名" in page and "密码" in page
    assert 'href="/lang/en?next=/login"' in page

    resp = await client.get("/lang/en?next=/login", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login"
    assert "yuntiao_lang=en" in resp.headers["Set-Cookie"]
    page = await text_of(await client.get("/login"))
    assert '<html lang="en">' in page
    assert "Sign in" in page and "Username" in page
    assert "登录" not in page
    assert "简体中文" in page  # the way back

    resp = await client.get("/lang/zh_CN?next=//evil.example/", allow_redirects=False)
    assert resp.headers["Location"] == "/"
    assert "用户名" in await text_of(await client.get("/login"))


async def test_wrong_password_shows_a_message_and_keeps_the_username(
    client: Any, demo_logins: dict[str, str]
) -> None:
    resp = await post_login(client, "admin", "not-the-password")
    assert resp.status == 401
    page = await text_of(resp)
    assert "用户名或密码错误" in page
    assert 'value="admin"' in page
    assert "yuntiao_session" not in resp.headers.get("Set-Cookie", "")


async def test_account_is_locked_after_five_wrong_passwords(
    client: Any, demo_logins: dict[str, str]
) -> None:
    for attempt in range(5):
        page = await text_of(await post_login(client, "mediator2", f"wrong-{attempt}"))
    assert "已锁定至" in page  # the fifth failure locks
    assert re.search(r"锁定至 \d{4}-\d{2}-\d{2} \d{2}:\d{2}", page)  # in local time
    resp = await post_login(client, "mediator2", demo_logins["mediator2"])
    assert resp.status == 401
    assert "已锁定" in await text_of(resp)
    resp = await client.get("/cases", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")


async def test_login_sets_a_safe_cookie_and_follows_only_local_next(
    client: Any, demo_logins: dict[str, str]
) -> None:
    resp = await post_login(client, "admin", demo_logins["admin"], next="//evil.example/x")
    assert resp.status == 303
    assert resp.headers["Location"] == "/cases"
    cookie = resp.headers["Set-Cookie"]
    assert "yuntiao_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    client.session.cookie_jar.clear()
    resp = await post_login(client, "admin", demo_logins["admin"], next="/cases/1")
    assert resp.headers["Location"] == "/cases/1"


async def test_anonymous_visitors_are_sent_to_the_login_page(client: Any) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.headers["Location"] == "/login"
    resp = await client.get("/cases/1", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login?next=/cases/1"


async def test_logout_ends_the_session(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "clerk", demo_logins["clerk"])
    resp = await client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    resp = await client.get("/cases", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")


# ---- the case register ----------------------------------------------------------------------


async def test_case_list_filters(client: Any, demo_logins: dict[str, str]) -> None:
    await login(client, "admin", demo_logins["admin"])
    demo = "外观设计专利侵权纠纷（跨三省）"

    async def listing(query: str) -> str:
        resp = await client.get("/cases" + query)
        assert resp.status == 200
        return await text_of(resp)

    page = await listing("")
    assert demo in page and NUMBER_RE.search(page)
    assert "受理" in page and "知识产权纠纷" in page and "李静" in page
    assert 'name="mediator"' in page  # administrators filter by mediator
    assert demo in await listing("?status=accepted")
    assert demo not in await listing("?status=closed")
    assert "没有符合条件的案件" in await listing("?status=closed")
    assert demo in await listing("?category=intellectual_property")
    assert demo not in await listing("?category=family")
    assert demo in await listing("?channel=court_referral")
    assert demo not in await listing("?channel=party_application")
    assert demo not in await listing("?mediator=none")
    assert demo in await listing("?q=%E5%88%98%E6%9F%90")  # 刘某, a party's name
    assert demo in await listing("?q=%E4%B8%93%E5%88%A9")  # 专利, in the title
    assert demo in await listing("?q=%E4%BC%8D%E8%81%94")  # 伍联, in the case number
    assert demo not in await listing("?q=%25")  # a bare LIKE wildcard matches nothing


async def test_mediators_see_only_their_own_cases(client: Any, demo_logins: dict[str, str]) -> None:
    await login(client, "mediator", demo_logins["mediator"])
    page = await text_of(await client.get("/cases"))
    assert "外观设计专利侵权纠纷" in page
    assert 'name="mediator"' not in page
    client.session.cookie_jar.clear()
    await login(client, "mediator2", demo_logins["mediator2"])
    page = await text_of(await client.get("/cases"))
    assert "外观设计专利侵权纠纷" not in page and "暂无案件" in page


async def test_a_mediator_cannot_open_another_mediators_case(
    client: Any, demo_logins: dict[str, str]
) -> None:
    await login(client, "mediator2", demo_logins["mediator2"])
    resp = await client.get("/cases/1")
    assert resp.status == 403
    page = await text_of(resp)
    assert "您没有访问权限" in page and "您无权访问此内容" in page
    assert "外观设计专利侵权纠纷" not in page


# ---- intake ---------------------------------------------------------------------------------


async def test_intake_form_creates_a_case_with_a_readable_number(
    client: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "clerk", demo_logins["clerk"])
    form_page = await text_of(await client.get("/cases/new"))
    for i in range(4):
        assert f'name="party-{i}-name"' in form_page  # four rows without JavaScript
    assert "法院委派" in form_page and "部门交办" in form_page and "当事人申请" in form_page

    resp = await client.post("/cases/new", data=intake_form(csrf), allow_redirects=False)
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert re.fullmatch(r"/cases/\d+", location)
    page = await text_of(await client.get(location))
    match = NUMBER_RE.search(page)
    assert match and int(match.group(1)) == YEAR and int(match.group(2)) >= 2
    assert "货款纠纷" in page and "受理" in page and "合同纠纷" in page
    assert "120,000.50 元" in page
    assert "宜昌市伍家岗区人民法院" in page
    assert "代理 宜昌某电池材料有限公司" in page  # the agent and whom they represent
    assert "3301**********" in page  # masked
    assert "登记案件" in page  # history


async def test_intake_errors_keep_the_values(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "clerk", demo_logins["clerk"])
    resp = await client.post(
        "/cases/new",
        data=intake_form(
            csrf, **{"party-1-name": "", "party-1-phone": "", "party-1-id_number": ""}
        ),
    )
    assert resp.status == 422
    page = await text_of(resp)
    assert "案件至少需要一名申请人和一名被申请人" in page
    assert 'value="货款纠纷"' in page and "宜昌某电池材料有限公司" in page

    resp = await client.post("/cases/new", data=intake_form(csrf, referral_reference=""))
    assert resp.status == 422
    assert "请填写委派或交办文号" in await text_of(resp)

    resp = await client.post("/cases/new", data=intake_form(csrf, claim_amount="三千"))
    assert resp.status == 422
    assert "请以元为单位填写标的金额" in await text_of(resp)

    resp = await client.post(
        "/cases/new", data=intake_form(csrf, **{"party-1-id_number": "330102198503151230"})
    )
    assert resp.status == 422
    assert "校验位不正确" in await text_of(resp)


async def test_automatic_dispatch_may_send_the_case_elsewhere(
    client: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "clerk", demo_logins["clerk"])
    resp = await client.post("/cases/new", data=intake_form(csrf, category="small_finance"))
    assert resp.status == 201
    page = await text_of(resp)
    assert re.search(
        r"案件 （\d{4}）营自贸调字第1号 已登记，并已分派至受理此类纠纷的营口片区", page
    )

    client.session.cookie_jar.clear()
    csrf = await login(client, "sysadmin", demo_logins["sysadmin"])
    resp = await client.post("/cases/new", data=intake_form(csrf, category="medical"))
    assert resp.status == 422  # no rule, no organisation lists it, and no own organisation
    assert "没有调解组织受理此类纠纷" in await text_of(resp)
    resp = await client.post(
        "/cases/new",
        data=intake_form(csrf, category="medical", organisation="2"),
        allow_redirects=False,
    )
    assert resp.status == 303


async def test_user_text_is_escaped(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "clerk", demo_logins["clerk"])
    resp = await client.post(
        "/cases/new",
        data=intake_form(
            csrf, title="<script>alert(1)</script>", summary='"><img src=x onerror=alert(2)>'
        ),
    )
    assert resp.status == 200
    raw = await resp.text()
    assert "<script>alert(1)</script>" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "<img src=x" not in raw
    listing = await client.get("/cases")
    assert "<script>alert(1)" not in await listing.text()


# ---- the case file --------------------------------------------------------------------------


async def test_case_page_masks_id_numbers_and_reveal_is_audited(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    csrf = await login(client, "mediator", demo_logins["mediator"])
    resp = await client.get("/cases/1")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    page = await text_of(resp)
    for fact in (
        "（2026）鄂05民初委调12号",
        "宜昌市中级人民法院",
        "300,000.00 元",
        "李静",
        "宜昌某家居用品有限公司",
        "被申请人",
        "代理人",
        "代理 宜昌某家居用品有限公司",
    ):
        assert fact in page, fact
    assert "4401**********1235" in page
    assert DEMO_ID_NUMBER not in page
    match = re.search(r'action="(/cases/1/parties/(\d+)/reveal)', page)
    assert match, "the assigned mediator may reveal ID numbers"
    before = await audit_count(sessionmaker, AuditAction.ID_NUMBER_REVEALED)

    resp = await client.post(match.group(1), data={"csrf_token": csrf})
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert DEMO_ID_NUMBER in await text_of(resp)
    assert await audit_count(sessionmaker, AuditAction.ID_NUMBER_REVEALED) == before + 1

    page = await text_of(await client.get("/cases/1"))
    assert DEMO_ID_NUMBER not in page  # shown once only
    assert "查看证件号码" in page and "刘某的证件号码" in page  # in the history

    client.session.cookie_jar.clear()
    csrf = await login(client, "clerk", demo_logins["clerk"])
    page = await text_of(await client.get("/cases/1"))
    assert "/reveal" not in page  # clerks see the masked number only
    resp = await client.post(match.group(1), data={"csrf_token": csrf})
    assert resp.status == 403


async def test_opening_a_case_is_recorded(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    await login(client, "admin", demo_logins["admin"])
    before = await audit_count(sessionmaker, AuditAction.CASE_OPENED)
    await client.get("/cases/1")
    assert await audit_count(sessionmaker, AuditAction.CASE_OPENED) == before + 1


async def test_lifecycle_buttons_move_the_case_and_illegal_moves_are_409(
    client: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "mediator", demo_logins["mediator"])
    page = await text_of(await client.get("/cases/1"))
    assert "转为“告知”" in page and "转为“调解不成”" in page and "转为“撤回”" in page
    assert "转为“结案”" not in page

    resp = await client.post("/cases/1/transition", data={"csrf_token": csrf, "target": "closed"})
    assert resp.status == 409
    page = await text_of(resp)
    assert "当前无法办理" in page
    assert "处于“受理”状态的案件不能转为“结案”" in page

    resp = await client.post(
        "/cases/1/transition", data={"csrf_token": csrf, "target": "failed", "reason": "  "}
    )
    assert resp.status == 422
    assert "请填写办理此步骤的理由" in await text_of(resp)

    resp = await client.post(
        "/cases/1/transition",
        data={"csrf_token": csrf, "target": "notified"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "案件状态已更新" in page
    assert "由“受理”转为“告知”" in page  # the history says it in words
    assert "转为“调解中”" in page


async def test_assignment_refused_for_a_conflict_shows_the_reason(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    # A party with the same name as mediator2 (张建国) makes them unable to take the case.
    resp = await client.post(
        "/cases/1/parties",
        data={"csrf_token": csrf, "role": "third_party", "kind": "person", "name": "张建国"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "当事人已添加" in page
    assert "与当事人张建国同名" in page  # the suggestion list warns already
    match = re.search(r'<option value="(\d+)">张建国 — 存在利益冲突</option>', page)
    assert match
    resp = await client.post(
        "/cases/1/assign", data={"csrf_token": csrf, "mediator_id": match.group(1)}
    )
    assert resp.status == 409
    page = await text_of(resp)
    assert "张建国 不能调解本案" in page and "同名" in page
    assert await audit_count(sessionmaker, AuditAction.ASSIGNMENT_REFUSED) == 1
    async with sessionmaker() as session:
        case = await session.get(Case, 1)
        assert case is not None and case.mediator is not None
        assert case.mediator.username == "mediator"  # unchanged
    page = await text_of(await client.get("/cases/1"))
    assert "拒绝指派" in page  # the refusal is in the history


async def test_recusal_reassigns_the_case(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    page = await text_of(await client.get("/cases/1"))
    party = re.search(r'<option value="(\d+)">申请人：宜昌某家居用品有限公司</option>', page)
    assert party
    resp = await client.post(
        "/cases/1/recusal", data={"csrf_token": csrf, "party_id": party.group(1), "reason": "  "}
    )
    assert resp.status == 422
    assert "请填写申请回避的理由" in await text_of(resp)
    resp = await client.post(
        "/cases/1/recusal",
        data={
            "csrf_token": csrf,
            "party_id": party.group(1),
            "reason": "曾为对方提供咨询",
            "replacement_id": "",
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "回避申请已登记" in page
    assert "回避调解员：李静；接替调解员：张建国。理由：曾为对方提供咨询" in page


async def test_a_refused_replacement_leaves_the_recusal_unrecorded(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    await client.post(
        "/cases/1/parties",
        data={"csrf_token": csrf, "role": "third_party", "kind": "person", "name": "张建国"},
    )
    page = await text_of(await client.get("/cases/1"))
    replacement = re.search(r'<option value="(\d+)">张建国</option>', page)
    assert replacement
    resp = await client.post(
        "/cases/1/recusal",
        data={"csrf_token": csrf, "reason": "申请更换", "replacement_id": replacement.group(1)},
    )
    assert resp.status == 409
    page = await text_of(resp)
    assert "张建国 不能调解本案" in page
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Recusal)) == 0
        case = await session.get(Case, 1)
        assert case is not None and case.mediator is not None
        assert case.mediator.username == "mediator"  # still assigned, not half-recused
    assert await audit_count(sessionmaker, AuditAction.ASSIGNMENT_REFUSED) == 1


async def test_route_to_another_organisation(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    page = await text_of(await client.get("/cases/1"))
    match = re.search(r'<option value="(\d+)">营口片区人民调解委员会</option>', page)
    assert match
    resp = await client.post(
        "/cases/1/route", data={"csrf_token": csrf, "organisation_id": match.group(1)}
    )
    assert resp.status == 200
    page = await text_of(resp)
    assert "已移送至营口片区人民调解委员会" in page
    assert (await client.get("/cases/1")).status == 403  # no longer the admin's case


async def test_csrf_missing_gives_a_readable_403_page(
    client: Any, demo_logins: dict[str, str]
) -> None:
    await login(client, "mediator", demo_logins["mediator"])
    resp = await client.post("/cases/1/transition", data={"target": "notified"})
    assert resp.status == 403
    page = await text_of(resp)
    assert "表单已过期" in page and "请返回并刷新页面后重新提交" in page
    client.session.cookie_jar.clear()
    resp = await client.post("/login", data={"username": "admin", "password": "x"})
    assert resp.status == 403
    assert "表单已过期" in await text_of(resp)


async def test_unknown_page_gives_a_friendly_404(client: Any) -> None:
    resp = await client.get("/no-such-page")
    assert resp.status == 404
    page = await text_of(resp)
    assert "页面不存在" in page and "请检查网址" in page
    assert 'href="/"' in page
    await client.get("/lang/en")
    page = await text_of(await client.get("/no-such-page"))
    assert "Page not found" in page and "Check the address" in page


async def test_odd_ids_are_refused_politely(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    resp = await client.get("/cases/999")
    assert resp.status == 404 and "该案件不存在" in await text_of(resp)
    resp = await client.get("/cases/99999999999999")
    assert resp.status == 404 and "页面不存在" in await text_of(resp)
    resp = await client.post("/cases/1/assign", data={"csrf_token": csrf, "mediator_id": "²"})
    assert resp.status == 422 and "请选择调解员" in await text_of(resp)
    resp = await client.get("/cases?page=%C2%B2&mediator=99999999999")
    assert resp.status == 200


async def test_pages_carry_no_inline_script(client: Any, demo_logins: dict[str, str]) -> None:
    await login(client, "sysadmin", demo_logins["sysadmin"])
    for path in (
        "/login",
        "/cases",
        "/cases/new",
        "/cases/1",
        "/admin/users",
        "/admin/dispatch",
        "/admin/organisations",
        "/nowhere",
    ):
        resp = await client.get(path)
        raw = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce
        for tag in re.findall(r"<script[^>]*>", raw):
            assert "src=" in tag and f'nonce="{nonce.group(1)}"' in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=", raw), path
        assert 'name="viewport"' in raw


async def test_error_pages_carry_the_security_headers(client: Any) -> None:
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert "Content-Security-Policy" in resp.headers
    assert resp.headers.get("X-Frame-Options") == "DENY"


async def test_static_assets_are_served(client: Any) -> None:
    for path in ("/static/css/site.css", "/static/js/common.js", "/static/js/intake.js"):
        resp = await client.get(path)
        assert resp.status == 200, path


# ---- administration -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/users", "/admin/dispatch", "/admin/organisations"])
async def test_admin_pages_are_closed_to_mediators(
    client: Any, demo_logins: dict[str, str], path: str
) -> None:
    await login(client, "mediator", demo_logins["mediator"])
    assert (await client.get(path)).status == 403


async def test_dispatch_rules_page(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    page = await text_of(await client.get("/admin/dispatch"))
    assert "知识产权纠纷" in page and "只有系统管理员可以修改分派规则" in page
    resp = await client.post(
        "/admin/dispatch",
        data={"csrf_token": csrf, "category": "family", "organisation_id": "1", "priority": "5"},
    )
    assert resp.status == 403

    client.session.cookie_jar.clear()
    csrf = await login(client, "sysadmin", demo_logins["sysadmin"])
    resp = await client.post(
        "/admin/dispatch",
        data={"csrf_token": csrf, "category": "family", "organisation_id": "2", "priority": "5"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "分派规则已添加" in page and "婚姻家庭纠纷" in page
    resp = await client.post(
        "/admin/dispatch",
        data={"csrf_token": csrf, "category": "family", "organisation_id": "2", "priority": "5"},
    )
    assert resp.status == 409 and "该规则已存在" in await text_of(resp)
    rule = re.findall(r'action="(/admin/dispatch/\d+/delete)"', page)
    assert len(rule) == 3
    resp = await client.post(rule[-1], data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303


async def test_users_page_creates_accounts_and_declares_relationships(
    client: Any, demo_logins: dict[str, str]
) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    page = await text_of(await client.get("/admin/users"))
    assert "李静" in page and "张建国" in page and "平台管理员" not in page
    assert '<option value="system_admin"' not in page

    form = {
        "csrf_token": csrf,
        "username": "mediator3",
        "display_name": "周调解",
        "password": "long-enough-password",
        "role": "mediator",
        "phone": "13700000000",
        "categories": ["family", "labour"],
    }
    resp = await client.post("/admin/users", data=form, allow_redirects=False)
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "账号已创建" in page and "周调解" in page and "婚姻家庭纠纷、劳动争议" in page

    resp = await client.post("/admin/users", data={**form, "password": "short"})
    assert resp.status == 422
    page = await text_of(resp)
    assert "密码至少需要 10 个字符" in page and 'value="周调解"' in page
    resp = await client.post("/admin/users", data={**form, "role": "system_admin"})
    assert resp.status == 422 and "您不能创建该角色的账号" in await text_of(resp)

    match = re.search(r'action="(/admin/users/\d+/relationships)"', page)
    assert match
    resp = await client.post(
        match.group(1),
        data={"csrf_token": csrf, "person_name": "刘某", "relationship": "表兄弟"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "关联关系已登记" in page and "刘某 — 表兄弟" in page


async def test_organisations_page(client: Any, demo_logins: dict[str, str]) -> None:
    csrf = await login(client, "admin", demo_logins["admin"])
    assert (await client.get("/admin/organisations")).status == 403
    client.session.cookie_jar.clear()
    csrf = await login(client, "sysadmin", demo_logins["sysadmin"])
    page = await text_of(await client.get("/admin/organisations"))
    assert "宜昌市伍家岗区联合人民调解委员会" in page and "人民调解委员会" in page
    resp = await client.post(
        "/admin/organisations",
        data={
            "csrf_token": csrf,
            "name": "西陵区物业纠纷调解室",
            "short_name": "西物",
            "kind": "industry_room",
            "categories": ["property_management"],
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await text_of(await client.get(resp.headers["Location"]))
    assert "调解组织已创建" in page and "西陵区物业纠纷调解室" in page
    resp = await client.post(
        "/admin/organisations",
        data={"csrf_token": csrf, "name": "无简称", "short_name": "", "kind": "industry_room"},
    )
    assert resp.status == 422
    assert "简称（用于案号）须为 1–20 个字符" in await text_of(resp)
    match = re.search(r'action="(/admin/organisations/\d+/categories)"', page)
    assert match
    resp = await client.post(
        match.group(1),
        data={"csrf_token": csrf, "categories": ["medical", "traffic"]},
        allow_redirects=False,
    )
    assert resp.status == 303
