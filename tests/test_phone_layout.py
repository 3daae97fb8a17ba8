"""The staff pages on a phone-width screen (375 × 812) in real Chromium: nothing overflows
sideways, the login works with a thumb, and the case page is readable. Screenshots land in
tests/artifacts/ (used by the README)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import ARTIFACTS, chromium

PHONE = {"width": 375, "height": 812}


async def _overflow(page: Any) -> int:
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_pages_fit_a_phone(client: Any, demo_logins: dict[str, str]) -> None:
    base = str(client.make_url("/")).rstrip("/")
    ARTIFACTS.mkdir(exist_ok=True)
    async with chromium() as browser:
        context = await browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        page = await context.new_page()
        await page.goto(base + "/login")
        assert await _overflow(page) <= 0
        await page.screenshot(path=str(ARTIFACTS / "phone-login.png"))
        await page.fill("input[name=username]", "mediator")
        await page.fill("input[name=password]", demo_logins["mediator"])
        await page.click("button[type=submit]")
        await page.wait_for_url("**/cases*")
        assert "外观设计专利侵权纠纷" in await page.inner_text("body")
        assert await _overflow(page) <= 0
        await page.screenshot(path=str(ARTIFACTS / "phone-cases.png"))
        await page.click("text=外观设计专利侵权纠纷")
        await page.wait_for_url("**/cases/1")
        body = await page.inner_text("body")
        assert "刘某" in body and "4401**********1235" in body
        assert await _overflow(page) <= 0
        await page.screenshot(path=str(ARTIFACTS / "phone-case.png"), full_page=True)
        await context.close()
