"""The shared evidence viewer (``evidence-viewer.js``) in real Chromium, fed with what the real
server sends on the wire. The viewer's markup comes from the real hearing-room pages; a small
stand-in socket hands it the ``presentation`` states a python-socketio client received (the room
page itself would start WebRTC, which the tests run only in a private network namespace). Checked:
a PDF page drawn by pdf.js and turned for the follower, an image, a video that plays and pauses
on command, and the presenter's buttons and player sending the right controls."""

from __future__ import annotations

import asyncio
import re
import subprocess
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.browser import CHROMIUM, FLAGS
from tests.helpers import api_headers
from tests.test_evidence_pages import png_bytes
from tests.test_evidence_presentation import NAMES
from tests.test_evidence_support import upload
from tests.test_signaling import _connected, _disconnect, hearing_links  # noqa: F401

FAKE_SOCKET = """
async (markup) => {
  document.body.innerHTML = markup;
  const { attachEvidenceViewer } = await import("/static/js/evidence-viewer.js");
  window.fake = {
    handlers: {}, sent: [],
    on(event, fn) { (this.handlers[event] ||= []).push(fn); },
    emit(event, data) { this.sent.push([event, data]); },
    fire(event, data) { for (const fn of this.handlers[event] || []) fn(data); },
  };
  attachEvidenceViewer(window.fake);
}
"""


def three_page_pdf() -> bytes:
    import io

    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    c = canvas.Canvas(out, invariant=1)
    for n in range(3):
        c.setFont("Helvetica", 48)
        c.drawString(100, 600, f"Page {n + 1}")
        c.showPage()
    c.save()
    return out.getvalue()


def webm() -> bytes:
    return subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=4:size=160x120:rate=10",
         "-c:v", "libvpx", "-b:v", "200k", "-f", "webm", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


async def until(page: Any, expression: str, seconds: float = 10) -> None:
    """Poll ``expression`` with ``evaluate`` (``wait_for_function`` would need eval, which the
    pages' Content-Security-Policy rightly forbids — and the viewer must work under it)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await page.evaluate(expression):
        assert asyncio.get_running_loop().time() < deadline, (
            f"not true in {seconds} s: {expression}"
        )
        await asyncio.sleep(0.1)


def stage_markup(html: str) -> str:
    start = html.index('<section class="evidence-stage"')
    end = html.index("</section>", start) + len("</section>")
    picker = re.search(r'<details class="present-picker".*?</details>', html, re.S)
    return html[start:end] + (picker.group(0) if picker else "")


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_viewer_follows_the_presenter(
    client: Any,
    demo_logins: dict[str, str],
    hearing_links: dict[str, Any],  # noqa: F811
) -> None:
    staff = await api_headers(client, "mediator", demo_logins["mediator"])
    for data, name in (
        (three_page_pdf(), "合同.pdf"),
        (png_bytes(), "照片.png"),
        (webm(), "录像.webm"),
    ):
        assert (await upload(client, staff, data, filename=name, title=name)).status == 204
    base = str(client.make_url("/")).rstrip("/")
    follower_html = await (await client.get(f"/h/{hearing_links[NAMES[1]][1]}/room")).text()
    presenter_html = await (await client.get(f"/h/{hearing_links[NAMES[0]][1]}/room")).text()
    assert 'data-staff="false"' in stage_markup(follower_html)
    assert 'id="present-picker"' in stage_markup(presenter_html)

    mediator, applicant = await _connected(client, hearing_links, NAMES[0], NAMES[1])
    try:
        await mediator.emit("admit", {"participant_id": hearing_links[NAMES[1]][0]})
        await applicant.until(
            lambda: applicant.last_sync().get("you", {}).get("state") == "admitted"
        )

        async def presented(event: str, data: dict[str, Any]) -> tuple[Any, Any]:
            before = len(applicant.events["presentation"])
            await mediator.emit(event, data)
            await applicant.until(lambda: len(applicant.events["presentation"]) > before)
            await mediator.until(lambda: len(mediator.events["presentation"]) > before)
            return applicant.events["presentation"][-1], mediator.events["presentation"][-1]

        pdf_page1 = await presented("present", {"number": 1})
        pdf_page2 = await presented("present_control", {"page": 2})
        image = await presented("present", {"number": 2})
        video_playing = await presented("present", {"number": 3})
        video_playing = await presented("present_control", {"playing": True, "position": 0})
        video_paused = await presented("present_control", {"playing": False, "position": 1.0})
    finally:
        await _disconnect(client, mediator, applicant)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*FLAGS, "--autoplay-policy=no-user-gesture-required"]
        )
        try:
            follower = await (
                await browser.new_context(viewport={"width": 375, "height": 800})
            ).new_page()
            errors: list[str] = []
            follower.on("pageerror", lambda exc: errors.append(str(exc)))
            follower.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await follower.goto(base + "/login")
            await follower.evaluate(FAKE_SOCKET, stage_markup(follower_html))
            stage = "#evidence-stage"
            # A PDF: the same page for all, drawn by pdf.js; the presenter turns it.
            await follower.evaluate("s => fake.fire('presentation', s)", pdf_page1[0])
            await until(
                follower,
                "document.querySelector('#evidence-stage').dataset.pages === '3'",
                seconds=20,
            )
            assert await follower.is_visible(stage)
            assert await follower.get_attribute(stage, "data-page") == "1"
            assert "第 1 / 3 页" in await follower.inner_text(stage)
            inked = """() => { const c = document.querySelector('#evidence-stage canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++;
                return c.width > 100 && dark > 50; }"""
            assert await follower.evaluate(inked)
            await follower.evaluate("s => fake.fire('presentation', s)", pdf_page2[0])
            await until(
                follower,
                "document.querySelector('#evidence-stage').dataset.page === '2'",
                seconds=10,
            )
            # An image.
            await follower.evaluate("s => fake.fire('presentation', s)", image[0])
            await until(
                follower,
                "document.querySelector('#evidence-stage img')?.naturalWidth > 0",
                seconds=10,
            )
            # A video plays and pauses when the presenter does; followers get no controls.
            await follower.evaluate("s => fake.fire('presentation', s)", video_playing[0])
            await until(
                follower,
                "(() => { const v = document.querySelector('#evidence-stage video');"
                " return v && !v.paused && v.currentTime > 0.2 && !v.controls; })()",
                seconds=20,
            )
            await follower.evaluate("s => fake.fire('presentation', s)", video_paused[0])
            await until(
                follower, "document.querySelector('#evidence-stage video').paused", seconds=10
            )
            await follower.evaluate("fake.fire('presentation', null)")
            assert not await follower.is_visible(stage)
            assert not errors, errors

            # The presenter: the buttons and the player send the controls.
            presenter = await (await browser.new_context()).new_page()
            await presenter.goto(base + "/login")
            await presenter.evaluate(FAKE_SOCKET, stage_markup(presenter_html))
            await presenter.evaluate("s => fake.fire('presentation', s)", pdf_page1[1])
            await until(
                presenter,
                "document.querySelector('#evidence-stage').dataset.pages === '3'",
                seconds=20,
            )
            await presenter.click("#evidence-next")
            assert ["present_control", {"page": 2}] in await presenter.evaluate("fake.sent")
            await presenter.evaluate("s => fake.fire('presentation', s)", video_paused[1])
            await presenter.wait_for_selector("#evidence-stage video[controls]")
            await presenter.evaluate("document.querySelector('#evidence-stage video').play()")
            await until(
                presenter,
                "fake.sent.some(([e, d]) => e === 'present_control' && d.playing === true)",
                seconds=10,
            )
            await presenter.click("#evidence-stop")
            assert ["present_stop", {}] in await presenter.evaluate("fake.sent")
            await presenter.evaluate(
                "fake.fire('sync', {you: {state: 'admitted', subroom: 'main'}})"
            )
            assert ["present_query", {}] in await presenter.evaluate("fake.sent")
        finally:
            await browser.close()
