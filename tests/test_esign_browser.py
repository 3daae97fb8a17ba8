"""A party signs on a phone (375 px, touch) in real Chromium: the signing link shows the PDF
(pdf.js), a code arrives in the outbox, the signature is drawn with a finger (touch events
through the DevTools protocol, as a touchscreen sends them) and the signature lands in the PDF."""

from __future__ import annotations

from typing import Any

import pytest

from esign.verify import verify_pdf
from tests.browser import ARTIFACTS, chromium
from tests.helpers import api_headers
from tests.test_esign_api import issued_agreement, last_code, party_tokens
from web.agreements import ESIGN

PHONE = {"width": 375, "height": 812}


async def finger_stroke(page: Any, points: list[tuple[float, float]]) -> None:
    cdp = await page.context.new_cdp_session(page)
    x, y = points[0]
    await cdp.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]}
    )
    for x, y in points[1:]:
        await cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_party_signs_with_a_finger_on_a_phone(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    staff = {
        n: await api_headers(client, n, demo_logins[n]) for n in ("clerk", "mediator", "admin")
    }
    agreement = await issued_agreement(client, sessionmaker, staff)
    aid = agreement["id"]
    (_sid, token), _ = await party_tokens(client, aid, staff)
    base = str(client.make_url("/")).rstrip("/")
    ARTIFACTS.mkdir(exist_ok=True)
    async with chromium() as browser:
        context = await browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{base}/sign/{token}")
        await page.wait_for_selector("[data-pages] canvas", timeout=20000)
        await page.locator("[data-pages] canvas").nth(1).wait_for()  # the signature page
        # (page.evaluate runs through the DevTools protocol, not eval: the page's CSP holds.)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await page.click("[data-send-code]")
        await page.wait_for_selector("[data-code-form]:not([hidden])")
        assert "139****0001" in await page.inner_text("[data-code-status]")
        code = await last_code(sessionmaker, "13900000001")
        await page.fill("#code", code)
        await page.click("[data-code-form] button[type=submit]")
        await page.wait_for_selector("[data-draw]:not([hidden])")
        pad = page.locator("[data-draw] canvas")
        await pad.scroll_into_view_if_needed()
        box = await pad.bounding_box()
        assert box is not None and box["width"] <= 375
        left, top = box["x"], box["y"]
        await finger_stroke(
            page,
            [(left + 20 + i * 12, top + 60 + (25 if i % 2 else -25)) for i in range(24)],
        )
        await page.screenshot(path=str(ARTIFACTS / "agreement-sign-phone.png"), full_page=False)
        await page.click("[data-sign-button]")
        await page.locator("[data-sign-status]", has_text="已签署").wait_for(timeout=20000)
        assert not errors, errors
        await context.close()
    pdf = await (
        await client.get(f"/api/v1/agreements/{aid}/document", headers=staff["mediator"])
    ).read()
    report = await verify_pdf(pdf, client.app[ESIGN].authority.ca_cert_asn1)
    assert report.ok and report.signatures[1].signer == "宜昌某电池材料有限公司"


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_mediator_sees_the_live_preview(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    from tests.test_esign_api import new_case

    staff = {n: await api_headers(client, n, demo_logins[n]) for n in ("clerk", "mediator")}
    case_id = await new_case(client, sessionmaker, staff)
    base = str(client.make_url("/")).rstrip("/")
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(base + "/login")
        await page.fill("input[name=username]", "mediator")
        await page.fill("input[name=password]", demo_logins["mediator"])
        await page.click("button[type=submit]")
        await page.wait_for_url("**/cases*")
        await page.goto(f"{base}/cases/{case_id}/agreements")
        preview = page.locator("[data-preview]")
        await preview.locator("h3", has_text="人民调解协议书").wait_for()
        await page.fill("#items", "被申请人于2026年12月31日前支付货款<全部>。")
        await preview.locator("p", has_text="支付货款<全部>").wait_for()
        assert "3301**********1232" in await preview.inner_text()
        await page.screenshot(path=str(ARTIFACTS / "agreement-editor.png"))
        assert not errors, errors
        await context.close()


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_mediator_records_a_postal_return_with_a_large_scan(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str], tmp_path: Any
) -> None:
    import io
    import os

    from PIL import Image

    staff = {
        n: await api_headers(client, n, demo_logins[n]) for n in ("clerk", "mediator", "admin")
    }
    agreement = await issued_agreement(client, sessionmaker, staff, category="family")
    aid = agreement["id"]
    first = next(s for s in agreement["signers"] if s["kind"] == "party")
    resp = await client.post(
        f"/api/v1/agreements/{aid}/signers/{first['id']}/dispatch",
        json={"carrier": "EMS", "tracking_number": "E1CN", "sent_on": "2026-11-23"},
        headers=staff["mediator"],
    )
    assert resp.status == 201
    scan = tmp_path / "scan.png"
    big = io.BytesIO()
    Image.frombytes("RGB", (1100, 1000), os.urandom(1100 * 1000 * 3)).save(big, "PNG")
    scan.write_bytes(big.getvalue())  # > 3 MiB: more than an ordinary form post may carry
    base = str(client.make_url("/")).rstrip("/")
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(base + "/login")
        await page.fill("input[name=username]", "mediator")
        await page.fill("input[name=password]", demo_logins["mediator"])
        await page.click("button[type=submit]")
        await page.wait_for_url("**/cases*")
        await page.goto(f"{base}/cases/{agreement['case_id']}/agreements")
        row = page.locator(f"tr[data-signer='{first['id']}']")
        await row.locator("summary").click()
        await row.locator("input[name=carrier]").fill("EMS")
        await row.locator("input[name=tracking_number]").fill("R1CN")
        await row.locator("input[name=scan]").set_input_files(str(scan))
        await row.locator("button[value=return]").click()
        await page.locator(
            f"tr[data-signer='{first['id']}'][data-signer-status='signed']"
        ).wait_for()
        assert not errors, errors
        await context.close()
    ev = await (
        await client.get(
            f"/api/v1/cases/{agreement['case_id']}/evidence", headers=staff["mediator"]
        )
    ).json()
    assert len(ev["items"]) == 1 and ev["items"][0]["size"] == len(big.getvalue())
