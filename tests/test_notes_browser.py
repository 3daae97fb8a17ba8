"""The record in real Chromium: the mediator and the clerk type at the same time in two browser
pages (Chinese, emoji, deletions at the same spot) and both pages, the party's read-only page
and the server end with the same text; the speaker button inserts its label; a party's forged
edit is refused and never reaches anyone. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from notes import store
from tests.browser import ARTIFACTS, chromium
from tests.notes_fixtures import APPLICANT, make_hearing
from web.context import SETTINGS
from web.notes import NOTES_HUB


async def _signed_in(browser: Any, base: str, username: str, password: str) -> Any:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    await page.goto(base + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/cases*")
    return page


async def _text(page: Any, key: str) -> str:
    return str(
        await page.evaluate("(key) => window.yuntiaoNotes.handles.get(key).text.toString()", key)
    )


async def _until_same(pages: list[Any], key: str, seconds: float = 10) -> str:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        texts = [await _text(page, key) for page in pages]
        if len(set(texts)) == 1:
            return texts[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"pages did not converge: {texts}")
        await asyncio.sleep(0.1)


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_two_browsers_type_at_once_and_converge(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    key = f"record:{links['hearing']}"
    base = str(client.make_url("/")).rstrip("/")
    ARTIFACTS.mkdir(exist_ok=True)
    async with chromium() as browser:
        mediator = await _signed_in(browser, base, "mediator", demo_logins["mediator"])
        clerk = await _signed_in(browser, base, "clerk", demo_logins["clerk"])
        party_context = await browser.new_context(locale="zh-CN")
        party = await party_context.new_page()
        url = f"{base}/cases/{links['case']}/notes/{key}"
        editor = f'[data-record-doc="{key}"] textarea'
        for page in (mediator, clerk):
            await page.goto(url)
            await page.wait_for_selector(editor, state="visible")
        # Each editor sees who else is writing (presence, never stored).
        await mediator.wait_for_function(
            "() => document.querySelector('.record-people')?.textContent.includes('陈书记员')"
        )
        await clerk.wait_for_function(
            "() => document.querySelector('.record-people')?.textContent.includes('李静')"
        )
        await party.goto(f"{base}/h/{links[APPLICANT][1]}/notes")
        await party.wait_for_selector(f'[data-record-doc="{key}"][data-state="read_only"]')
        assert not await party.is_visible(f'[data-record-doc="{key}"] textarea')

        # One speaker label with one click, then text after it.
        await mediator.click(f'[data-record-doc="{key}"] button[data-speaker="调解员"]')
        await mediator.keyboard.type("今天调解开始。")
        await _until_same([mediator, clerk, party], key)

        # Both type at the end at the same time: Chinese and emoji.
        async def type_at_end(page: Any, text: str) -> None:
            await page.focus(editor)
            await page.keyboard.press("Control+End")
            for ch in text:
                await page.keyboard.insert_text(ch)

        await asyncio.gather(
            type_at_end(mediator, "申请人称货款未付😀。"),
            type_at_end(clerk, "被申请人表示🙏同意分期。"),
        )
        both = await _until_same([mediator, clerk, party], key)
        assert all(ch in both for ch in "货款未付😀分期🙏")

        # Both delete the same four characters ("今天调解") and type there, neither seeing the
        # other's change first (both offline); the sync handshake on reconnecting merges them.
        for page in (mediator, clerk):
            await page.evaluate("() => window.yuntiaoNotes.socket.disconnect()")

        async def delete_and_type(page: Any, text: str) -> None:
            await page.focus(editor)
            await page.evaluate(
                """(sel) => { const el = document.querySelector(sel);
                   const i = el.value.indexOf("开始"); el.setSelectionRange(i - 4, i); }""",
                editor,
            )
            await page.keyboard.press("Backspace")
            for ch in text:
                await page.keyboard.insert_text(ch)

        await asyncio.gather(delete_and_type(mediator, "上午"), delete_and_type(clerk, "🕘九点"))
        for page in (mediator, clerk):
            await page.evaluate("() => window.yuntiaoNotes.socket.connect()")
        final = await _until_same([mediator, clerk, party], key)
        assert final.startswith("**调解员：** ") and "今天" not in final
        assert final.split("开始")[0] in ("**调解员：** 上午🕘九点", "**调解员：** 🕘九点上午")
        assert "\ufffd" not in final  # no emoji split into halves
        values = [await page.input_value(editor) for page in (mediator, clerk)]
        assert values == [final, final]
        assert final.startswith("**调解员：** ")

        # The server holds exactly that text, and the pages say it is saved.
        async with sessionmaker() as session:
            document = await store.get_document(session, key)
        assert document is not None
        assert (await client.app[NOTES_HUB].current_text(document))[0] == final
        await mediator.wait_for_selector(f'[data-record-doc="{key}"][data-state="saved"]')

        # A party forging an edit in the browser console is refused; nobody sees it.
        await party.evaluate(
            """(key) => {
                window.yuntiaoNotes.addEventListener("rejected", (e) => {
                    window.refusedWith = e.detail.error.code;
                });
                window.yuntiaoNotes.handles.get(key).text.insert(0, "伪造");
            }""",
            key,
        )
        await party.wait_for_function("() => window.refusedWith === 'notes_read_only'")
        await asyncio.sleep(0.3)
        assert await _text(mediator, key) == final
        assert (await client.app[NOTES_HUB].current_text(document))[0] == final
        # …and the party's own page drops it again, back to the server's text.
        await _until_same([mediator, party], key)
        assert "伪造" not in await party.inner_text(f'[data-record-doc="{key}"] .record-view')

        # The editor's preview shows the marks formatted, as the party reads them, and hides
        # again.
        preview = f'[data-record-doc="{key}"] .record-preview-toggle'
        view = f'[data-record-doc="{key}"] .record-view'
        assert not await mediator.is_visible(view)
        await mediator.click(preview)
        assert await mediator.get_attribute(preview, "aria-pressed") == "true"
        assert await mediator.locator(f"{view} strong").inner_text() == "调解员："
        assert await mediator.inner_text(view) == await party.inner_text(view)
        await mediator.screenshot(path=str(ARTIFACTS / "notes-record-preview.png"), full_page=True)
        await mediator.click(preview)
        assert not await mediator.is_visible(view)
        assert await mediator.is_visible(editor)

        await mediator.screenshot(path=str(ARTIFACTS / "notes-record-editor.png"), full_page=True)
        await party.screenshot(path=str(ARTIFACTS / "notes-record-party.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_party_in_the_hearing_room_reads_the_record_live(
    client: Any, sessionmaker: Any
) -> None:
    """Only parties are in the room here (no staff on /hearing), so no media connection is
    ever negotiated: the page stays off the network."""
    from tests.notes_client import NotesClient
    from tests.notes_fixtures import MEDIATOR, WAITING

    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    key = f"record:{links['hearing']}"
    base = str(client.make_url("/")).rstrip("/")
    mediator = NotesClient("mediator")
    await mediator.connect(base + "/", token=links[MEDIATOR][1])
    try:
        await mediator.open(key)
        await mediator.edit(key, lambda t: t.insert(0, "## 调解经过\n**调解员：** 开始😀"))
        async with chromium() as browser:
            context = await browser.new_context(
                locale="zh-CN", viewport={"width": 390, "height": 844}
            )
            party = await context.new_page()
            await party.goto(f"{base}/h/{links[APPLICANT][1]}/room")
            panel = "#record-panel .record-view"
            await party.wait_for_selector("#record-panel:not([hidden])")
            await party.wait_for_function(
                "() => document.querySelector('#record-panel .record-view h3')?.textContent === '调解经过'"
            )
            await mediator.edit(key, lambda t: t.insert(len(str(t).encode()), "，双方到场。"))
            await party.wait_for_function(
                "() => document.querySelector('#record-panel .record-view').textContent.includes('双方到场')"
            )
            assert await party.locator(f"{panel} strong").inner_text() == "调解员："
            assert not await party.is_visible("#record-panel textarea")
            await party.screenshot(path=str(ARTIFACTS / "notes-room-party.png"), full_page=True)

            # Someone still in the lobby gets no record panel.
            waiting = await context.new_page()
            await waiting.goto(f"{base}/h/{links[WAITING][1]}/room")
            await waiting.wait_for_selector("#waiting-screen:not([hidden])")
            await asyncio.sleep(0.5)
            assert await waiting.is_hidden("#record-panel")
            await context.close()
    finally:
        await mediator.sio.disconnect()


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_chinese_input_method_and_undo_while_someone_else_types(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    """The clerk composes with a pinyin input method (Chromium's IME events through CDP) while
    the mediator's edit arrives: the composition is not disturbed, and the committed Chinese
    lands where the clerk was typing."""
    from tests.notes_client import NotesClient
    from tests.notes_fixtures import MEDIATOR

    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    key = f"record:{links['hearing']}"
    base = str(client.make_url("/")).rstrip("/")
    mediator = NotesClient("mediator")
    await mediator.connect(base + "/", token=links[MEDIATOR][1])
    try:
        await mediator.open(key)
        await mediator.edit(key, lambda t: t.insert(0, "甲：\n乙：😀"))
        async with chromium() as browser:
            clerk = await _signed_in(browser, base, "clerk", demo_logins["clerk"])
            editor = f'[data-record-doc="{key}"] textarea'
            await clerk.goto(f"{base}/cases/{links['case']}/notes/{key}")
            await clerk.wait_for_selector(editor, state="visible")
            await clerk.wait_for_function(
                "(sel) => document.querySelector(sel).value.includes('乙')", arg=editor
            )
            await clerk.focus(editor)
            # Caret after "甲：" (end of the first line).
            await clerk.evaluate(
                "(sel) => document.querySelector(sel).setSelectionRange(2, 2)", editor
            )
            cdp = await clerk.context.new_cdp_session(clerk)
            await cdp.send(
                "Input.imeSetComposition",
                {"text": "tiaojie", "selectionStart": 7, "selectionEnd": 7},
            )
            # Meanwhile the mediator types at the very start and at the end.
            await mediator.edit(key, lambda t: t.insert(0, "【开始】"))
            await mediator.edit(key, lambda t: t.insert(len(str(t).encode()), "同意👍"))
            await asyncio.sleep(0.5)
            # While composing, the remote changes are held back (they are in the Y.Doc already).
            assert await clerk.input_value(editor) == "甲：tiaojie\n乙：😀"
            assert "【开始】" in await _text(clerk, key)
            await cdp.send("Input.insertText", {"text": "调解"})
            expected = "【开始】甲：调解\n乙：😀同意👍"
            await mediator.until(lambda: str(mediator.text(key)) == expected, seconds=10)
            assert await clerk.input_value(editor) == expected
            assert await _text(clerk, key) == expected
            # The caret stays right after what the clerk committed.
            caret = await clerk.evaluate(
                "(sel) => document.querySelector(sel).selectionStart", editor
            )
            assert caret == len("【开始】甲：调解")
            # Undo takes back the clerk's own words only, not the mediator's.
            await clerk.keyboard.press("Control+z")
            after_undo = "【开始】甲：\n乙：😀同意👍"
            await mediator.until(lambda: str(mediator.text(key)) == after_undo, seconds=10)
            assert await clerk.input_value(editor) == after_undo
            await clerk.keyboard.press("Control+y")
            await mediator.until(lambda: str(mediator.text(key)) == expected, seconds=10)
    finally:
        await mediator.sio.disconnect()
