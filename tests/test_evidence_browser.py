"""The party's evidence page on a phone (375 px) in real Chromium: the tus upload from the browser
shows its progress, survives a dropped connection (the next chunk is resent after asking the
server where the upload stands) and registers a byte-identical file; nothing overflows sideways."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.browser import ARTIFACTS, chromium
from tests.test_evidence_support import party_token, pdf_bytes
from tests.test_phone_layout import PHONE, _overflow


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_phone_upload_with_progress_and_a_dropped_connection(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    token = await party_token(client, sessionmaker, 1, "respondent")
    base = str(client.make_url("/")).rstrip("/")
    data = pdf_bytes(20 * 1024 * 1024 + 4321, seed=7)  # three PATCHes of 8 MiB at most
    ARTIFACTS.mkdir(exist_ok=True)
    seen: list[str] = []
    dropped = False

    async def flaky(route: Any) -> None:
        nonlocal dropped
        request = route.request
        seen.append(f"{request.method} {request.headers.get('upload-offset', '')}")
        if (
            request.method == "PATCH"
            and not dropped
            and request.headers.get("upload-offset") != "0"
        ):
            dropped = True
            await route.abort("connectionreset")
            return
        await route.continue_()

    async with chromium() as browser:
        context = await browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.route("**/evidence/uploads**", flaky)
        await page.goto(f"{base}/h/{token}/evidence")
        assert await _overflow(page) <= 0
        await page.set_input_files(
            "#ev-file", {"name": "转账记录.pdf", "mimeType": "application/pdf", "buffer": data}
        )
        await page.fill("#ev-title", "转账记录")
        await page.select_option("#ev-category", "documentary")
        await page.fill("#ev-purpose", "证明已经还款五万元")
        await page.click("#upload-start")
        await page.wait_for_selector("#upload-status.upload-warn", timeout=20000)  # the drop
        await page.wait_for_url("**/evidence?done=uploaded#item-1", timeout=60000)
        body = await page.inner_text("body")
        assert "转账记录" in body and "证据已收到并登记" in body
        assert hashlib.sha256(data).hexdigest() in body
        assert await _overflow(page) <= 0
        await page.screenshot(path=str(ARTIFACTS / "phone-evidence.png"), full_page=True)
        assert not errors, errors
        await context.close()
    assert dropped
    # Created, one PATCH, a dropped one, a HEAD to ask where it stands, then the rest.
    assert seen[0].startswith("POST") and "HEAD " in seen
    assert seen.count(f"PATCH {8 * 1024 * 1024}") == 2, seen


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_staff_evidence_pages_fit_a_phone(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    from tests.helpers import api_headers
    from tests.test_evidence_pages import png_bytes, real_pdf
    from tests.test_evidence_support import upload

    staff = await api_headers(client, "mediator", demo_logins["mediator"])
    respondent = {"X-Hearing-Token": await party_token(client, sessionmaker, 1, "respondent")}
    assert (
        await upload(client, staff, real_pdf(), title="借款合同（2025年3月3日签订）")
    ).status == 204
    assert (
        await upload(client, staff, png_bytes(), filename="现场.png", title="现场照片")
    ).status == 204
    resp = await client.post(
        "/api/v1/cases/1/evidence/1/opinions",
        json={
            "opinions": [{"property": "legality", "stance": "disputed", "reason": "签名非本人所写"}]
        },
        headers=respondent,
    )
    assert resp.status == 201
    base = str(client.make_url("/")).rstrip("/")
    async with chromium() as browser:
        context = await browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
        )
        page = await context.new_page()
        await page.goto(base + "/login")
        await page.fill("input[name=username]", "mediator")
        await page.fill("input[name=password]", demo_logins["mediator"])
        await page.click("button[type=submit]")
        await page.wait_for_url("**/cases*")
        for path, shot in [
            ("/cases/1/evidence", "phone-evidence-staff.png"),
            ("/cases/1/evidence/examination", "phone-evidence-matrix.png"),
            ("/cases/1/evidence/1/receipt", "phone-evidence-receipt.png"),
        ]:
            await page.goto(base + path)
            await page.wait_for_load_state("networkidle")
            assert await _overflow(page) <= 0, path
            await page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        # The matrix: tap a cell for its history.
        await page.goto(base + "/cases/1/evidence/examination")
        await page.click("td.opinion-disputed summary")
        assert "签名非本人所写" in await page.inner_text("td.opinion-disputed")
        # Thumbnails arrived (an image preview and a PDF first page).
        await page.goto(base + "/cases/1/evidence")
        await page.wait_for_load_state("networkidle")
        widths = await page.evaluate(
            "[...document.querySelectorAll('img[data-preview]')].map((i) => i.naturalWidth)"
        )
        assert len(widths) == 2 and all(w > 100 for w in widths), widths
        await context.close()


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_upload_continues_after_the_page_is_reloaded(
    client: Any, sessionmaker: Any, tmp_path: Any
) -> None:
    """The connection keeps failing, the person reloads the page and presses "Upload" again with
    the same file: the upload continues where the server stands (no second upload, no resend)."""
    token = await party_token(client, sessionmaker, 1, "applicant")
    base = str(client.make_url("/")).rstrip("/")
    data = pdf_bytes(12 * 1024 * 1024, seed=11)
    path = tmp_path / "银行流水.pdf"
    path.write_bytes(data)
    seen: list[str] = []

    async def broken_after_first_chunk(route: Any) -> None:
        request = route.request
        seen.append(f"{request.method} {request.headers.get('upload-offset', '')}")
        if request.method == "PATCH" and request.headers.get("upload-offset") != "0":
            await route.abort("connectionreset")
            return
        await route.continue_()

    async def log_only(route: Any) -> None:
        seen.append(f"{route.request.method} {route.request.headers.get('upload-offset', '')}")
        await route.continue_()

    async def fill(page: Any) -> None:
        await page.set_input_files("#ev-file", str(path))
        await page.fill("#ev-title", "银行流水")
        await page.select_option("#ev-category", "documentary")
        await page.fill("#ev-purpose", "证明转账时间")
        await page.click("#upload-start")

    async with chromium() as browser:
        context = await browser.new_context(viewport=PHONE, locale="zh-CN")
        page = await context.new_page()
        await page.route("**/evidence/uploads**", broken_after_first_chunk)
        await page.goto(f"{base}/h/{token}/evidence")
        await fill(page)
        await page.wait_for_selector("#upload-status.upload-warn", timeout=20000)
        await page.unroute("**/evidence/uploads**")
        await page.route("**/evidence/uploads**", log_only)
        await page.goto(f"{base}/h/{token}/evidence")  # the reload
        await fill(page)
        await page.wait_for_url("**/evidence?done=uploaded#item-1", timeout=60000)
        assert hashlib.sha256(data).hexdigest() in await page.inner_text("body")
        await context.close()
    assert seen.count("POST ") == 1, seen  # one upload, continued
    assert f"PATCH {8 * 1024 * 1024}" in seen and seen.count("PATCH 0") == 1, seen
