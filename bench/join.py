"""Join benchmark: time from opening an invitation link to the first decoded remote video frame,
with two headless Chromium pages (fake camera and microphone) on loopback, median of 10.

Runs itself inside a private network namespace that has only ``lo`` (``unshare -n``, then
``ip link set lo up``; needs root), so WebRTC never leaves the machine (FIELD-NOTES). The server
under test is ``python -m server.cli serve`` in that namespace; every iteration uses a fresh
hearing and fresh browser contexts (one browser, one context per person).

Two scenarios, 10 runs each:

- ``mediator``: the party is already admitted (from an earlier admission) and in the room with
  their camera on; the mediator opens their link. Clock: from the navigation start of the
  mediator's pre-join page (``performance.timeOrigin``) to the first ``getStats`` of the
  mediator's room page that shows an inbound video stream with ``framesDecoded > 0``.
- ``party``: the mediator is already in the room and admits at once (a script in the mediator's
  page clicks "Admit" as soon as the lobby lists someone); the party opens their link, ticks the
  notice of rights and enters. Clock: from the party's pre-join navigation start to the party's
  first decoded frame from the mediator.

The benchmark clicks as soon as each page has loaded: no human reading or thinking time is in
the figures (a real party spends seconds on the notice). The room page is polled every 10 ms,
which is the resolution of the figures. Target (issue 3): median ≤ 1.0 s.

Usage: ``python -m bench.join [--runs 10]``; progress lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ServerEnv,
    boost_priority,
    code_version,
    cpu_reference_ms,
    free_port,
    keep_logs,
    percentile,
    prepare,
    result,
    rounded,
    say,
    start_server,
    stop,
    wait_quiet,
)

TARGET_MS = 1000.0
TIMEOUT_S = 30.0

# In every page: record the wall-clock time of the first decoded remote video frame.
PROBE = """
(() => {
  const bench = { firstFrameAt: null };
  window.__bench = bench;
  const poll = async () => {
    const peers = window.yuntiao && window.yuntiao.peers;
    if (peers) {
      for (const pc of peers.values()) {
        let stats;
        try { stats = await pc.getStats(); } catch (e) { continue; }
        for (const r of stats.values()) {
          if (r.type === "inbound-rtp" && r.kind === "video" && r.framesDecoded > 0) {
            bench.firstFrameAt = performance.timeOrigin + performance.now();
            return;
          }
        }
      }
    }
    setTimeout(poll, 10);
  };
  setTimeout(poll, 10);
})();
"""

# In the mediator's room page: admit whoever appears in the lobby, at once.
AUTO_ADMIT = """
(() => {
  const admit = () => {
    for (const b of document.querySelectorAll('#lobby-list button[data-action="admit"]')) {
      if (!b.dataset.benchClicked) { b.dataset.benchClicked = "1"; b.click(); }
    }
  };
  new MutationObserver(admit).observe(document.body, { childList: true, subtree: true });
  admit();
})();
"""


def only_loopback() -> bool:
    try:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    names = [
        line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if ":" in line
    ]
    return names == ["lo"]


def reexec_in_namespace(argv: list[str]) -> int:
    """Run this module again inside ``unshare -n`` with ``lo`` up; return its exit code."""
    if os.geteuid() != 0:
        say("bench.join needs root (unshare -n) to keep WebRTC on loopback")
        return 2
    command = [
        "unshare",
        "-n",
        "--",
        "sh",
        "-c",
        'ip link set lo up && exec "$0" "$@"',
        sys.executable,
        "-m",
        "bench.join",
        *argv,
    ]
    return subprocess.run(command, check=False).returncode


async def _room_ready(page: Any, what: str) -> None:
    """Wait until the room page's script reports our participant admitted."""
    await page.wait_for_function(
        "() => window.yuntiao && window.yuntiao.state && "
        "window.yuntiao.state.you && window.yuntiao.state.you.state === 'admitted'",
        timeout=TIMEOUT_S * 1000,
    )


# Tick the notice (when asked to) and submit the pre-join form, as a person clicking at once.
ENTER = """
(acknowledge) => {
  const box = document.getElementById("acknowledge");
  if (acknowledge && box) box.checked = true;
  const nav = performance.getEntriesByType("navigation")[0];
  const at = [performance.timeOrigin, nav.domContentLoadedEventEnd, performance.now()];
  document.getElementById("ready-form").requestSubmit();
  return at;
}
"""


async def _open_and_enter(
    page: Any, base: str, token: str, acknowledge: bool
) -> tuple[float, dict[str, float]]:
    """Open the link, confirm the notice, enter. Returns the pre-join page's navigation start
    (ms since the epoch), and when it had loaded and when the form was sent (ms after that)."""
    await page.goto(f"{base}/h/{token}", wait_until="domcontentloaded")
    origin, loaded, clicked = await page.evaluate(ENTER, acknowledge)
    return float(origin), {"prejoin_loaded": round(loaded), "clicked": round(clicked)}


async def _first_frame(page: Any) -> float:
    handle = await page.wait_for_function(
        "() => window.__bench && window.__bench.firstFrameAt",
        timeout=TIMEOUT_S * 1000,
        polling=10,
    )
    return float(await handle.json_value())


async def _marks(page: Any) -> dict[str, Any]:
    return dict(
        await page.evaluate(
            "() => ({origin: performance.timeOrigin, marks: (window.yuntiao || {}).marks || {}})"
        )
    )


async def one_run(browser: Any, base: str, scenario: str, hearing: Any) -> dict[str, Any]:
    mediator, party = hearing.mediator, hearing.parties[0]
    contexts = [await browser.new_context() for _ in range(2)]
    try:
        for ctx in contexts:
            await ctx.add_init_script(PROBE)
        first_page = await contexts[0].new_page()
        joiner = await contexts[1].new_page()
        if scenario == "mediator":
            # The party is admitted already and sits in the room with their camera on.
            await _open_and_enter(first_page, base, party.token, acknowledge=True)
            await first_page.wait_for_url("**/room", timeout=TIMEOUT_S * 1000)
            await _room_ready(first_page, "party")
            token, acknowledge = mediator.token, False
        else:
            await _open_and_enter(first_page, base, mediator.token, acknowledge=False)
            await first_page.wait_for_url("**/room", timeout=TIMEOUT_S * 1000)
            await _room_ready(first_page, "mediator")
            await first_page.evaluate(AUTO_ADMIT)
            token, acknowledge = party.token, True
        await first_page.wait_for_timeout(300)  # the local camera is running
        origin, before = await _open_and_enter(joiner, base, token, acknowledge)
        frame_at = await _first_frame(joiner)
        info = await _marks(joiner)
        steps = {
            **before,
            "room_page": round(info["origin"] - origin),
            **{k: round(info["origin"] + v - origin) for k, v in info["marks"].items()},
        }
        return {"ms": frame_at - origin, "steps": steps}
    finally:
        for ctx in contexts:
            await ctx.close()


async def run_all(base: str, runs: int, hearings: list[Any]) -> dict[str, list[dict[str, Any]]]:
    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM, FLAGS

    flags = [
        *FLAGS,
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]
    found: dict[str, list[dict[str, Any]]] = {"mediator": [], "party": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            # One warm-up of each (first use of the camera, code caches), not counted.
            plan = [("mediator", None), ("party", None)] + [
                (s, i) for i in range(runs) for s in ("mediator", "party")
            ]
            per_scenario = runs + 1
            used = {"mediator": 0, "party": 0}
            for scenario, index in plan:
                offset = 0 if scenario == "mediator" else per_scenario
                hearing = hearings[offset + used[scenario]]
                used[scenario] += 1
                try:
                    one = await one_run(browser, base, scenario, hearing)
                except Exception as exc:  # noqa: BLE001 - reported, the next run goes on
                    say(f"  {scenario} run {index}: failed: {type(exc).__name__}: {exc}")
                    if index is not None:
                        found[scenario].append({"ms": None, "steps": {}})
                    continue
                label = "warm-up" if index is None else f"run {index + 1}"
                say(f"  {scenario} {label}: {one['ms']:.0f} ms  {one['steps']}")
                if index is not None:
                    found[scenario].append(one)
        finally:
            await browser.close()
    return found


def summary(prefix: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    values = [r["ms"] for r in runs if r["ms"] is not None]
    steps: dict[str, list[float]] = {}
    for r in runs:
        for key, value in r["steps"].items():
            steps.setdefault(key, []).append(value)
    out: dict[str, Any] = {
        f"{prefix}_median_ms": rounded(statistics.median(values)) if values else None,
        f"{prefix}_p90_ms": rounded(percentile(values, 90)),
        f"{prefix}_min_ms": rounded(min(values) if values else None),
        f"{prefix}_max_ms": rounded(max(values) if values else None),
        f"{prefix}_runs": len(values),
        f"{prefix}_failed": len(runs) - len(values),
    }
    # Where the time goes (medians, ms after opening the link): the room page's navigation start,
    # then the room script's own marks (hearing-room.js: script, media, sync, admitted,
    # sync_with_peers, offer/answer, pc_connected, remote_frame, …), in order.
    order = sorted(steps, key=lambda k: statistics.median(steps[k]))
    for key in order:
        if len(steps[key]) == len(values):
            out[f"{prefix}_step_{key}_ms"] = rounded(statistics.median(steps[key]), 0)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.join", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="measured runs per scenario")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="run at this niceness (root only; the servers and browsers inherit it)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="first wait up to this many s for the machine to be idle",
    )
    args = parser.parse_args(argv)
    if not only_loopback():
        return reexec_in_namespace(argv)
    nice = boost_priority(args.nice)
    work = Path(tempfile.mkdtemp(prefix="yuntiao-bench-join-"))
    say(f"join benchmark in a private network namespace (only lo); work dir {work}")
    env = ServerEnv(work / "data")
    per_scenario = args.runs + 1
    # The first half: the party was admitted earlier (mediator scenario); the rest are fresh.
    hearings = prepare(env, 2 * per_scenario, parties=2, acknowledge=False, admitted=per_scenario)
    port = free_port()
    busy = wait_quiet(args.quiet_wait)
    reference_before = cpu_reference_ms()
    proc = start_server(env, port, work / "server.log")
    say(f"server pid {proc.pid} on 127.0.0.1:{port}; {args.runs} runs per scenario (+1 warm-up)")
    t = time.monotonic()
    try:
        found = asyncio.run(run_all(f"http://127.0.0.1:{port}", args.runs, hearings))
    finally:
        stop(proc)
    say(f"done in {time.monotonic() - t:.0f} s")
    figures: dict[str, Any] = {
        "benchmark": "join",
        "code": code_version(),
        "runs_per_scenario": args.runs,
        "browser_pages": 2,
        "network": "private namespace, loopback only",
        "machine_busy_before_pct": round(busy, 1),
        "cpu_reference_before_ms": reference_before,
        "niceness": nice,
    }
    figures |= summary("mediator_join_to_first_frame", found["mediator"])
    figures |= summary("party_join_to_first_frame", found["party"])
    for who in ("mediator", "party"):
        median = figures.get(f"{who}_join_to_first_frame_median_ms")
        figures[f"{who}_target_le_1000ms_met"] = median is not None and median <= TARGET_MS
    keep_logs(work, "join")
    result(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
