"""Hearings in real headless Chromium with fake camera and microphone: a mediator and two parties
open their own links in three browser contexts, the mediator admits them from the lobby, and every
page decodes video from every other page (``getStats``: ``framesDecoded`` rising on each peer
connection). Also: private caucus isolation, coming back after a dropped connection and after a
reload without being admitted again, lobby denial, and an expired link. Screenshots for the
README land in tests/artifacts/ (hearing-prejoin.png, hearing-lobby.png, hearing-room-3.png,
hearing-caucus.png), and the join timings in tests/artifacts/hearing-timings.json.

**Media stays on loopback** (FIELD-NOTES): outside a private network namespace Chromium would
offer the machine's real addresses as ICE candidates. So this file runs its browser tests inside
one. When collected in an ordinary namespace, each test is a thin stand-in: the first one runs
this same file once under ``unshare --net`` (a fresh namespace with only ``lo``, brought up
first) and every stand-in asserts that its own inner test passed, showing the inner failure
otherwise. Inside the namespace (detected by ``ip -o link`` listing only ``lo``) the real tests
run. The shared test fixtures reach PostgreSQL at 127.0.0.1:5432 even though they only use
SQLite here, so the inner run forwards that port to PostgreSQL's Unix socket (the file system is
shared between namespaces). Needs root, like the rest of the WebRTC tests (CI runs as root).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cases.actor import Actor
from cases.models import Case, User, utcnow
from cases.uow import transaction
from rooms import hearings as H
from rooms.invitations import issue_invitation
from rooms.models import Hearing
from tests.browser import ARTIFACTS, CHROMIUM, FLAGS
from web.context import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
PG_SOCKET = os.environ.get("YUNTIAO_TEST_PG_SOCKET", "/var/run/postgresql/.s.PGSQL.5432")
BROWSER_FLAGS = [
    *FLAGS,
    "--allow-loopback-in-peer-connection",
    # The room plays remote sound through <audio>; headless pages have had no user gesture.
    "--autoplay-policy=no-user-gesture-required",
]
MEDIATOR = "李静"
APPLICANT = "宜昌某家居用品有限公司"
RESPONDENT = "义乌某电子商务有限公司"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMINGS = ARTIFACTS / "hearing-timings.json"


def only_loopback() -> bool:
    """True inside a private network namespace: the only interface is ``lo``."""
    try:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    names = [
        line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if ":" in line
    ]
    return names == ["lo"]


INSIDE = only_loopback()


# ---- running this file inside a private network namespace ------------------------------------


@pytest.fixture(scope="module")
def loopback_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str]]:
    """Run the selected tests of this file once inside ``unshare --net``; outcome by test name."""
    from tests.conftest import ensure_postgres

    ensure_postgres()  # here, not inside: the namespace cannot start the shared server
    module = request.module
    selected = [item.nodeid for item in request.session.items if item.module is module]
    report = tmp_path_factory.mktemp("netns") / "report.xml"
    command = [
        "unshare",
        "--net",
        "--",
        sys.executable,
        "-m",
        "tests.test_browser_hearing",
        f"--junitxml={report}",
        "-p",
        "no:cacheprovider",
        "-q",
        *selected,
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    output = (proc.stdout[-8000:] + "\n" + proc.stderr[-4000:]).strip()
    results: dict[str, tuple[str, str]] = {}
    if report.exists():
        # noqa below: the XML is the report our own pytest run just wrote.
        for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
            outcome, text = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = child.tag
                    text = (child.get("message", "") + "\n" + (child.text or ""))[-6000:]
            results[case.get("name", "")] = (outcome, text)
    results["__output__"] = ("", output)
    return results


def in_private_network(
    test: Callable[..., Awaitable[None]],
) -> Callable[..., Any]:
    """Inside the namespace: the real test. Outside: a stand-in asserting the inner outcome."""
    if INSIDE:
        # Three browsers encoding and decoding video on a small machine take their time.
        return pytest.mark.timeout(300)(test)

    def stand_in(loopback_run: dict[str, tuple[str, str]], engine_name: str) -> None:
        name = f"{test.__name__}[{engine_name}]"
        outcome, text = loopback_run.get(name, ("missing", ""))
        # The inner failure says what went wrong; without one, the run itself broke.
        detail = text or f"inner run output:\n{loopback_run['__output__'][1]}"
        assert outcome == "passed", f"{name} in the private network namespace: {outcome}\n{detail}"

    stand_in.__name__ = test.__name__
    stand_in.__doc__ = test.__doc__
    return pytest.mark.timeout(1500)(stand_in)


def _forward_postgres() -> socket.socket:
    """Inside the namespace: 127.0.0.1:5432 → PostgreSQL's Unix socket (see the docstring)."""
    server = socket.create_server(("127.0.0.1", 5432))

    def pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def relay(client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(PG_SOCKET)
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()

    def serve() -> None:
        while True:
            client, _ = server.accept()
            threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def _main(args: list[str]) -> int:
    if not INSIDE:
        print("not in a private network namespace (run under `unshare --net`)", file=sys.stderr)
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with _forward_postgres():
        return int(pytest.main(args))


# ---- the hearing and its pages ----------------------------------------------------------------


async def schedule(sessionmaker: Any, **changes: Any) -> int:
    data = H.HearingInput(scheduled_at=utcnow() + dt.timedelta(minutes=5), duration_minutes=60)
    data = dataclasses.replace(data, **changes)
    async with transaction(sessionmaker) as session:
        user = await session.scalar(select(User).where(User.username == "mediator"))
        case = await session.get(Case, 1)
        hearing = await H.do_schedule_hearing(
            session, Actor.for_user(user, "127.0.0.1", "pytest"), case, data
        )
        return hearing.id


async def link_paths(
    client: Any, sessionmaker: Any, hearing_id: int, **issue: Any
) -> dict[str, str]:
    secret = client.app[SETTINGS].secret_key
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        return {
            p.display_name: "/h/" + issue_invitation(secret, hearing, p, **issue)
            for p in hearing.participants
        }


class Room:
    """One participant's browser context and page, with what went wrong in it."""

    def __init__(self, name: str, context: Any, page: Any) -> None:
        self.name = name
        self.context = context
        self.page = page
        self.log: list[str] = []
        self.errors: list[str] = []
        self.watch(page)

    def watch(self, page: Any) -> None:
        page.on("console", lambda m: self.log.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.log.append(f"HTTP {r.status}: {r.url[:80]}"),
        )
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

    async def new_page(self) -> Any:
        self.page = await self.context.new_page()
        self.watch(self.page)
        return self.page

    async def js(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def wait(self, expression: str, arg: Any = None, timeout_s: float = 20) -> None:
        try:
            await self.page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000)
        except Exception as exc:
            raise AssertionError(
                f"{self.name}: waited for {expression!r}\n" + self.report()
            ) from exc

    async def my_id(self) -> int:
        await self.wait("() => window.yuntiao && window.yuntiao.state")
        return int(await self.js("() => window.yuntiao.state.you.id"))

    async def peer_ids(self) -> set[int]:
        return set(await self.js("() => [...window.yuntiao.peers.keys()]"))

    async def frames(self) -> dict[int, int]:
        """framesDecoded of the inbound video on each peer connection."""
        result = await self.js(
            """async () => {
                const out = {};
                for (const [id, pc] of window.yuntiao.peers) {
                    const stats = await pc.getStats();
                    let frames = 0;
                    stats.forEach((s) => {
                        if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
                    });
                    out[id] = frames;
                }
                return out;
            }"""
        )
        return {int(k): int(v) for k, v in result.items()}

    async def chat_texts(self) -> list[str]:
        return list(
            await self.js(
                "() => [...document.querySelectorAll('#chat-log .chat-text')].map((p) => p.textContent)"
            )
        )

    def report(self) -> str:
        return f"[{self.name}] errors: {self.errors}\nconsole:\n" + "\n".join(self.log[-40:])


async def frames_flow(room: Room, expected: set[int], timeout_s: float = 25) -> dict[int, int]:
    """Wait until ``room`` holds connections to exactly ``expected`` and decodes rising video
    frames from each; returns the last counts."""
    deadline = time.monotonic() + timeout_s
    first: dict[int, int] | None = None
    last: dict[int, int] = {}
    while time.monotonic() < deadline:
        last = await room.frames()
        if set(last) == expected and all(last[i] > 0 for i in expected):
            if first is None or set(first) != expected:
                first = last
            elif all(last[i] > first[i] for i in expected):
                return last
        else:
            first = None
        await asyncio.sleep(0.4)
    raise AssertionError(
        f"{room.name}: video frames from {sorted(expected)} did not flow; last {last}\n"
        + room.report()
    )


async def open_link(
    browser: Any,
    base: str,
    name: str,
    path: str,
    *,
    phone: bool = False,
    screenshot: str | None = None,
    consent: bool = True,
) -> Room:
    """Open the link, confirm the notice (parties) and enter: the room page."""
    context = await browser.new_context(
        viewport=PHONE if phone else DESKTOP,
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
        locale="zh-CN",
        permissions=["camera", "microphone"],
    )
    page = await context.new_page()
    room = Room(name, context, page)
    await page.goto(base + path)
    await room.wait(
        "() => document.querySelector('#device-status').textContent.includes('工作正常')"
    )
    await room.wait("() => document.querySelector('#preview').videoWidth > 0")
    if screenshot:
        await page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    if await page.query_selector("#acknowledge"):
        await page.check("#acknowledge")
    if await page.query_selector("#consent-yes"):
        await page.check("#consent-yes" if consent else "#consent-no")
    await page.click("#join-button")
    await page.wait_for_url("**/room")
    # Entered in place: no page load, so the camera and microphone the person just checked
    # keep running (no second permission prompt, no second camera start).
    loaded = await page.evaluate("() => performance.getEntriesByType('navigation')[0].name")
    assert loaded.endswith(path), loaded
    return room


async def staff_panel(mediator: Room) -> None:
    """Open the mediator's panel (the "Manage" button toggles it)."""
    if await mediator.js("() => document.querySelector('#staff-panel').hidden"):
        await mediator.page.click("#btn-staff")


async def admit_from_lobby(mediator: Room, *people: Room, screenshot: str | None = None) -> None:
    ids = [await person.my_id() for person in people]
    await staff_panel(mediator)
    await mediator.wait(
        '(ids) => ids.every((id) => document.querySelector(`#lobby-list button[data-action=admit][data-id="${id}"]`))',
        ids,
    )
    if screenshot:
        await mediator.page.screenshot(path=str(ARTIFACTS / screenshot))
    for person, participant_id in zip(people, ids, strict=True):
        await mediator.page.click(
            f'#lobby-list button[data-action=admit][data-id="{participant_id}"]'
        )
        await person.wait("() => window.yuntiao.state.you.state === 'admitted'")
    await mediator.page.click("#btn-staff")


async def three_way_call(
    client: Any, sessionmaker: Any, browser: Any, screenshots: bool = False
) -> tuple[dict[str, Room], dict[str, int]]:
    base = str(client.make_url("/")).rstrip("/")
    hearing_id = await schedule(sessionmaker, title="第一次在线调解")
    paths = await link_paths(client, sessionmaker, hearing_id)
    applicant = await open_link(
        browser,
        base,
        "applicant",
        paths[APPLICANT],
        phone=True,
        screenshot="hearing-prejoin.png" if screenshots else None,
    )
    respondent = await open_link(browser, base, "respondent", paths[RESPONDENT])
    for party in (applicant, respondent):
        await party.wait("() => !document.querySelector('#waiting-screen').hidden")
    mediator = await open_link(browser, base, "mediator", paths[MEDIATOR])
    await mediator.wait(
        "() => window.yuntiao.state && window.yuntiao.state.you.state === 'admitted'"
    )
    await admit_from_lobby(
        mediator, applicant, respondent, screenshot="hearing-lobby.png" if screenshots else None
    )
    rooms = {"mediator": mediator, "applicant": applicant, "respondent": respondent}
    ids = {name: await room.my_id() for name, room in rooms.items()}
    for name, room in rooms.items():
        await frames_flow(room, {i for other, i in ids.items() if other != name})
    return rooms, ids


def record_timing(key: str, value: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    data[key] = value
    TIMINGS.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


async def no_page_errors(rooms: dict[str, Room]) -> None:
    for room in rooms.values():
        assert not room.errors, room.report()


def launch() -> Any:
    from playwright.async_api import async_playwright

    class Browser:
        async def __aenter__(self) -> Any:
            self.pw = await async_playwright().start()
            self.browser = await self.pw.chromium.launch(
                executable_path=CHROMIUM, args=BROWSER_FLAGS
            )
            return self.browser

        async def __aexit__(self, *exc: object) -> None:
            await self.browser.close()
            await self.pw.stop()

    return Browser()


# ---- the tests ----------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
@in_private_network
async def test_three_participants_see_and_hear_each_other(client: Any, sessionmaker: Any) -> None:
    """Mediator + two parties, admitted from the lobby; video decoded on every connection;
    chat reaches everyone as text; the mediator ends the hearing for all."""
    ARTIFACTS.mkdir(exist_ok=True)
    async with launch() as browser:
        rooms, ids = await three_way_call(client, sessionmaker, browser, screenshots=True)
        mediator, applicant, respondent = rooms["mediator"], rooms["applicant"], rooms["respondent"]
        # Names, roles and the quality indicator are on the tiles.
        await mediator.wait("() => document.querySelectorAll('#tiles .tile').length === 3")
        tiles = await mediator.js("() => document.querySelector('#tiles').textContent")
        assert APPLICANT in tiles and RESPONDENT in tiles and "申请人一方" in tiles
        await mediator.wait(
            "() => [...document.querySelectorAll('.tile-quality')].some((q) => q.dataset.level === 'good')"
        )
        # The active speaker: the level a party's page reports reaches the mediator's page,
        # which lights up that party's tile. (Driving this with the fake microphones' beeps
        # failed now and then on CI: their measured level often stays under the threshold.)
        await applicant.js("() => window.yuntiao.reportLevel(0.9)")
        await mediator.wait(
            '(id) => document.querySelector(`#tiles .tile.speaking[data-id="${id}"]`)',
            ids["applicant"],
            timeout_s=15,
        )
        await mediator.page.screenshot(path=str(ARTIFACTS / "hearing-room-3.png"))
        await applicant.page.screenshot(path=str(ARTIFACTS / "hearing-room-phone.png"))
        marks = await applicant.js("() => window.yuntiao.marks")
        record_timing(
            "party_admitted_to_first_remote_frame_ms", marks["remote_frame"] - marks["admitted"]
        )
        # Chat: delivered to everyone in the room, shown as text (never as markup).
        text = "你好，<b>请看证据</b>"
        await applicant.page.click("#btn-chat")
        await applicant.page.fill("#chat-input", text)
        await applicant.page.click("#chat-form button[type=submit]")
        for room in rooms.values():
            await room.wait(
                "(t) => [...document.querySelectorAll('#chat-log .chat-text')].some((p) => p.textContent === t)",
                text,
            )
            assert await room.js("() => document.querySelectorAll('#chat-log b').length") == 0
        # Mute request and raised hand travel as media state.
        await applicant.page.click("#btn-hand")
        await mediator.wait(
            '(id) => document.querySelector(`.tile[data-id="${id}"] .tile-badge-hand`)',
            ids["applicant"],
        )
        await staff_panel(mediator)
        await mediator.page.click(
            f'#people-list button[data-action=mute][data-id="{ids["respondent"]}"]'
        )
        await respondent.wait(
            "() => document.querySelector('#btn-mic').getAttribute('aria-pressed') === 'true'"
        )
        await applicant.wait(
            '(id) => document.querySelector(`.tile[data-id="${id}"] .tile-badge-muted`)',
            ids["respondent"],
        )
        # Screen sharing replaces the camera on every connection, and the camera comes back.
        await mediator.page.click("#btn-screen")
        await mediator.wait(
            "() => document.querySelector('#btn-screen').getAttribute('aria-pressed') === 'true'"
        )
        await applicant.wait(
            '(id) => document.querySelector(`.tile[data-id="${id}"]`).classList.contains("sharing")',
            ids["mediator"],
        )
        await frames_flow(applicant, {ids["mediator"], ids["respondent"]})
        await mediator.page.click("#btn-screen")
        await applicant.wait(
            '(id) => !document.querySelector(`.tile[data-id="${id}"]`).classList.contains("sharing")',
            ids["mediator"],
        )
        await frames_flow(respondent, {ids["mediator"], ids["applicant"]})
        # The mediator ends the hearing for everyone.
        await mediator.page.click("#end-hearing")
        for room in (applicant, respondent):
            await room.wait(
                "() => document.querySelector('#end-message').textContent.includes('调解已结束')"
            )
            assert await room.js("() => window.yuntiao.peers.size") == 0
        await no_page_errors(rooms)


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
@in_private_network
async def test_caucus_isolates_the_sides(client: Any, sessionmaker: Any) -> None:
    """背对背调解: after "split by side" the applicant side has no connection to the respondent
    side and does not get its chat; the mediator moves between rooms and brings everyone back."""
    async with launch() as browser:
        rooms, ids = await three_way_call(client, sessionmaker, browser)
        mediator, applicant, respondent = rooms["mediator"], rooms["applicant"], rooms["respondent"]
        await staff_panel(mediator)
        await mediator.page.click("#caucus-split")
        # Staff start with the applicant side; the respondent side is alone.
        await frames_flow(applicant, {ids["mediator"]})
        await frames_flow(mediator, {ids["applicant"]})
        await respondent.wait("() => window.yuntiao.peers.size === 0")
        assert ids["respondent"] not in await applicant.peer_ids()
        assert ids["applicant"] not in await respondent.peer_ids()
        await respondent.wait("() => !document.querySelector('#room-banner').hidden")
        tiles = await respondent.js("() => document.querySelector('#tiles').textContent")
        assert APPLICANT not in tiles and MEDIATOR not in tiles
        # Chat stays inside each room.
        for room, text in (
            (applicant, "申请人方：可以接受分期"),
            (respondent, "被申请人方：最多赔十万"),
        ):
            await room.page.click("#btn-chat")
            await room.page.fill("#chat-input", text)
            await room.page.click("#chat-form button[type=submit]")
            await room.wait(
                "(t) => [...document.querySelectorAll('#chat-log .chat-text')].some((p) => p.textContent === t)",
                text,
            )
        await mediator.wait(
            "() => [...document.querySelectorAll('#chat-log .chat-text')].some((p) => p.textContent.startsWith('申请人方'))"
        )
        await asyncio.sleep(1.0)
        assert "被申请人方：最多赔十万" not in await applicant.chat_texts()
        assert "申请人方：可以接受分期" not in await respondent.chat_texts()
        await mediator.page.screenshot(path=str(ARTIFACTS / "hearing-caucus.png"))
        # The mediator goes over to the respondent side.
        await staff_panel(mediator)
        await mediator.page.select_option("#move-room", "respondent")
        await mediator.page.click("#move-go")
        await frames_flow(respondent, {ids["mediator"]})
        await frames_flow(mediator, {ids["respondent"]})
        await applicant.wait("() => window.yuntiao.peers.size === 0")
        # The mediator puts the applicant over to the respondent side too, from the people list.
        await mediator.page.click(
            f'#staff-panel button[data-action="move"][data-id="{ids["applicant"]}"][data-subroom="respondent"]'
        )
        await frames_flow(applicant, {ids["mediator"], ids["respondent"]})
        await frames_flow(respondent, {ids["mediator"], ids["applicant"]})
        # Everyone back together.
        await mediator.page.click("#caucus-end")
        for name, room in rooms.items():
            await frames_flow(room, {i for other, i in ids.items() if other != name})
        await no_page_errors(rooms)


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
@in_private_network
async def test_reconnection_without_readmission(client: Any, sessionmaker: Any) -> None:
    """A party whose network drops or whose page goes away shows as "reconnecting" to the
    others, and comes back in — when the network returns, after opening the room again or after
    a reload — without the mediator acting; media flows
    again. Records the time from page load to the first decoded remote frame."""
    async with launch() as browser:
        rooms, ids = await three_way_call(client, sessionmaker, browser)
        mediator, applicant = rooms["mediator"], rooms["applicant"]
        others = {ids["mediator"], ids["respondent"]}
        room_url = applicant.page.url
        # The network drops for a while (the page stays): "reconnecting" for the others, then
        # back in without the mediator acting, and media flows again.
        await applicant.context.set_offline(True)
        await mediator.wait(
            "(id) => document.querySelector(`.tile[data-id=\"${id}\"] .tile-badge-state`)?.textContent.includes('正在重新连接')",
            ids["applicant"],
        )
        await applicant.context.set_offline(False)
        await mediator.wait(
            "(id) => !document.querySelector(`.tile[data-id=\"${id}\"] .tile-badge-state`)?.textContent.includes('正在重新连接')",
            ids["applicant"],
        )
        await applicant.wait(
            "() => window.yuntiao.state && window.yuntiao.state.you.state === 'admitted'"
        )
        await frames_flow(applicant, others)
        await frames_flow(mediator, {ids["applicant"], ids["respondent"]})
        # The page disappears (a closed tab, a phone that lost its network).
        await applicant.page.close()
        await mediator.wait(
            "(id) => document.querySelector(`.tile[data-id=\"${id}\"] .tile-badge-state`)?.textContent.includes('正在重新连接')",
            ids["applicant"],
        )
        page = await applicant.new_page()
        await page.goto(room_url)
        await applicant.wait(
            "() => window.yuntiao.state && window.yuntiao.state.you.state === 'admitted'"
        )
        await frames_flow(applicant, others)
        # A reload.
        await applicant.page.reload()
        await applicant.wait("() => window.yuntiao.firstRemoteFrameMs !== null", timeout_s=20)
        await frames_flow(applicant, others)
        await frames_flow(mediator, {ids["applicant"], ids["respondent"]})
        timings = await applicant.js("() => window.yuntiao.marks")
        record_timing("reload_to_first_remote_frame_ms", timings)
        navigation = await applicant.js(
            """() => { const n = performance.getEntriesByType("navigation")[0];
                       return {request: n.requestStart, response: n.responseEnd,
                               dom_interactive: n.domInteractive}; }"""
        )
        record_timing("reload_navigation_ms", {k: round(v) for k, v in navigation.items()})
        record_timing(
            "trace",
            {name: await room.js("() => window.yuntiao.trace") for name, room in rooms.items()},
        )
        assert timings["remote_frame"] < 10_000
        # Leaving for good is different: the others see "left", and the connection goes.
        respondent = rooms["respondent"]
        await respondent.page.click("#btn-leave")
        await respondent.wait(
            "() => document.querySelector('#end-message').textContent.includes('您已离开调解')"
        )
        await mediator.wait(
            '(id) => document.querySelector(`.tile[data-id="${id}"] .tile-badge-state`)?.textContent === "已离开"',
            ids["respondent"],
        )
        await applicant.wait("(id) => !window.yuntiao.peers.has(id)", ids["respondent"])
        await no_page_errors(rooms)


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
@in_private_network
async def test_lobby_denial_is_final_for_that_link(client: Any, sessionmaker: Any) -> None:
    """A party the mediator does not admit is told so, and the same link does not get in."""
    base = str(client.make_url("/")).rstrip("/")
    hearing_id = await schedule(sessionmaker)
    paths = await link_paths(client, sessionmaker, hearing_id)
    denied_text = "调解员未准许您进入本场调解"
    async with launch() as browser:
        party = await open_link(browser, base, "applicant", paths[APPLICANT], phone=True)
        await party.wait("() => !document.querySelector('#waiting-screen').hidden")
        await party.page.screenshot(path=str(ARTIFACTS / "hearing-waiting.png"))
        mediator = await open_link(browser, base, "mediator", paths[MEDIATOR])
        party_id = await party.my_id()
        await staff_panel(mediator)
        button = f'#lobby-list button[data-action=deny][data-id="{party_id}"]'
        await mediator.page.wait_for_selector(button)
        await mediator.page.click(button)
        await party.wait(
            "(t) => document.querySelector('#end-message').textContent.includes(t)", denied_text
        )
        assert await party.js("() => document.querySelector('#stage').hidden")
        # The same link again: the room refuses the connection with the same message …
        await party.page.reload()
        await party.wait(
            "(t) => document.querySelector('#end-message').textContent.includes(t)", denied_text
        )
        assert "{'" not in await party.js(
            "() => document.querySelector('#end-message').textContent"
        )
        # … and the pre-join page says so, with no way in.
        await party.page.goto(base + paths[APPLICANT])
        body = await party.page.inner_text("body")
        assert denied_text in body and await party.page.query_selector("#join-button") is None
        # The mediator saw the party leave the lobby, and can take the refusal back: then the
        # same link gets straight in.
        await mediator.wait(
            "() => document.querySelectorAll('#lobby-list button[data-action=admit]').length === 0"
        )
        await mediator.page.click(f'#people-list button[data-action=readmit][data-id="{party_id}"]')
        await mediator.wait(
            "(id) => !window.yuntiao.state.lobby.some((p) => p.id === id) && "
            "window.yuntiao.state.everyone.find((p) => p.id === id).state === 'admitted'",
            party_id,
        )
        await party.page.goto(base + paths[APPLICANT] + "/room")
        await party.wait(
            "() => window.yuntiao.state && window.yuntiao.state.you.state === 'admitted'"
        )
        await frames_flow(party, {await mediator.my_id()})
        await no_page_errors({"party": party, "mediator": mediator})


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
@in_private_network
async def test_expired_link_page(client: Any, sessionmaker: Any) -> None:
    """An expired link gets a readable page that says to ask for a new link."""
    base = str(client.make_url("/")).rstrip("/")
    hearing_id = await schedule(sessionmaker)
    paths = await link_paths(
        client, sessionmaker, hearing_id, expires_at=utcnow() - dt.timedelta(hours=1)
    )
    async with launch() as browser:
        context = await browser.new_context(viewport=PHONE, is_mobile=True, locale="zh-CN")
        page = await context.new_page()
        response = await page.goto(base + paths[APPLICANT])
        assert response is not None and response.status == 403
        body = await page.inner_text("body")
        assert "无法使用此链接" in body and "该调解链接已过期" in body and "索取新" in body
        assert not re.search(r"Traceback|Exception", body)
        await page.screenshot(path=str(ARTIFACTS / "hearing-link-expired.png"))
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """The recorder's media on loopback, like the browsers'."""
    return {"recorder_host_addresses": "127.0.0.1"}


RECORDED_S = 20


@pytest.mark.browser
@pytest.mark.parametrize("engine_name", ["sqlite"])
@in_private_network
async def test_recorded_hearing_in_two_browsers(client: Any, sessionmaker: Any) -> None:
    """The party agrees to the recording on the pre-join page; the mediator starts recording;
    both pages show the red sign; after ~20 s the mediator stops. Each participant's file and
    the composite hold an audio and a video stream of 20 s ± 2 s (ffprobe), and their hashes
    are the archived ones."""
    from recordings import archive
    from recordings.models import COMPOSITE_FILE, PARTICIPANT_FILE, RecordingFile
    from server.recording import RECORDERS

    base = str(client.make_url("/")).rstrip("/")
    hearing_id = await schedule(sessionmaker, title="录像的调解", record=True)
    paths = await link_paths(client, sessionmaker, hearing_id)
    async with launch() as browser:
        applicant = await open_link(browser, base, "applicant", paths[APPLICANT], consent=True)
        await applicant.wait("() => !document.querySelector('#waiting-screen').hidden")
        mediator = await open_link(browser, base, "mediator", paths[MEDIATOR])
        await mediator.wait(
            "() => window.yuntiao.state && window.yuntiao.state.you.state === 'admitted'"
        )
        await admit_from_lobby(mediator, applicant)
        rooms = {"mediator": mediator, "applicant": applicant}
        ids = {name: await room.my_id() for name, room in rooms.items()}
        for name, room in rooms.items():
            await frames_flow(room, {i for other, i in ids.items() if other != name})
        await staff_panel(mediator)
        await mediator.wait("() => !document.querySelector('#recording-start').disabled")
        await mediator.page.click("#recording-start")
        for room in rooms.values():
            await room.wait("() => !document.querySelector('#recording-indicator').hidden")
        # The recorder process starts and joins (a second or two): from then on it receives.
        for room in rooms.values():
            await room.wait(
                """() => {
                  const listed = new Set(window.yuntiao.state.participants.map((p) => p.id));
                  return [...window.yuntiao.peers.entries()].some(
                    ([id, pc]) => !listed.has(id) && pc.connectionState === "connected");
                }""",
                timeout_s=30,
            )
        started = time.monotonic()
        await applicant.page.screenshot(path=str(ARTIFACTS / "hearing-recording.png"))
        await asyncio.sleep(RECORDED_S - (time.monotonic() - started))
        await mediator.page.click("#recording-stop")
        for room in rooms.values():
            await room.wait("() => document.querySelector('#recording-indicator').hidden")
        assert await client.app[RECORDERS].wait(hearing_id, 180) == 0
        await no_page_errors(rooms)

    root = client.app[SETTINGS].recordings_dir
    async with sessionmaker() as session:
        files = (
            await session.scalars(
                select(RecordingFile).where(RecordingFile.hearing_id == hearing_id)
            )
        ).all()
    media = [f for f in files if f.kind in (PARTICIPANT_FILE, COMPOSITE_FILE)]
    assert sorted(f.kind for f in media) == [COMPOSITE_FILE, PARTICIPANT_FILE, PARTICIPANT_FILE]
    durations = {}
    for f in media:
        assert archive.sha256_of(root / f.path) == (f.sha256, f.size)
        proc = await asyncio.create_subprocess_exec(
            *["ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration"],
            *["-of", "json", str(root / f.path)],
            stdout=asyncio.subprocess.PIPE,
        )
        probe = json.loads((await proc.communicate())[0])
        kinds = sorted(stream["codec_type"] for stream in probe["streams"])
        assert kinds == ["audio", "video"], (f.path, kinds)
        durations[f.path] = float(probe["format"]["duration"])
    record_timing("recorded_durations_s", durations)
    for path, seconds in durations.items():
        assert abs(seconds - RECORDED_S) <= 2, (path, durations)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
