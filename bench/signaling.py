"""Signaling benchmark: simulated participants in hearings of 4 (the mediator and 3 parties)
against ONE server process, then the same workload against a plain Node.js socket.io relay of
the same wire behaviour (``bench/node_relay/relay.js``), and the ratio of our figures to Node's.

Workload, per hearing (identical for both servers; all in one client process, python-socketio
``AsyncClient`` on the websocket transport, one connection per participant):

1. *Join* — hearings start at ``--ramp`` hearings/s. The mediator connects with their link; then
   the three parties connect and wait in the lobby; the mediator admits each one as soon as its
   ``sync`` shows them waiting.
2. *Negotiation rounds* — as soon as everyone of the hearing is admitted and sees their 3 peers,
   and then every ``--period`` s (random phase per hearing): for each pair the participant with
   the smaller id sends an offer (a ~4 KB SDP); the other answers and trickles ``--candidates``
   ICE candidates; on the answer the offerer trickles as many. One participant (in turn) posts a
   chat line per round. At 1,000 participants and the defaults that is 1,200 ``signal``/s and
   25 chat lines/s (each delivered to the 4 of the hearing) — far more than real hearings, whose
   signaling is a burst at join.
3. *Measured window* — once every participant is admitted: ``--warmup`` s, then ``--window`` s.

Figures (suffix ``_<participants>``; ``node_`` prefix for the Node relay):

- ``join_p50_ms``/``join_p99_ms``: mediators from ``connect()`` to their first ``sync`` saying
  ``admitted``, pooled with parties from the mediator's ``admit`` emit to their first ``sync``
  saying ``admitted`` (also split: ``join_mediator_*``, ``join_party_*``; and ``lobby_*``: a
  party's ``connect()`` to its first ``sync`` saying ``waiting``). Measured during the ramp.
- ``relay_p50_ms``/``relay_p99_ms``: a ``signal`` from the sender's ``emit`` to the peer's handler
  (a CLOCK_MONOTONIC timestamp inside the SDP or candidate string), for messages sent in the
  window; ``chat_*`` the same for chat lines (our server stores each in the database first).
- ``delivered_msgs_per_s``: every event the clients received in the window, per second
  (``signals_per_s``: the ``signal`` events among them).
- ``server_cpu_pct`` (% of one core, /proc/<pid>/stat utime+stime over the window),
  ``server_cpu_pct_join`` (over the ramp), ``server_rss_mb`` (VmRSS at the end of the window),
  ``server_rss_peak_mb`` (VmHWM); ``client_cpu_pct``: the load generator's own process.
- ``relay_p99_ratio_vs_node_1000`` etc.: our figure divided by Node's (>1: we are slower/bigger).

Usage: ``python -m bench.signaling [--scales 200,1000] [--servers yuntiao,node] [--py-spy PATH]``
(``--py-spy``: also record the server with py-spy during the window of the largest run and print
where the time goes; the raw profile goes to bench/out/).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

from bench.common import (
    OUT,
    ROOT,
    CpuWindow,
    HearingLinks,
    MachineWindow,
    ServerEnv,
    boost_priority,
    code_version,
    cpu_seconds,
    free_port,
    keep_logs,
    memory_mb,
    mono_ns,
    percentile,
    pg_admin,
    pg_drop_like,
    pg_url,
    prepare,
    raise_fd_limit,
    ratio,
    result,
    rounded,
    say,
    start_server,
    stop,
    wait_http,
    wait_quiet,
)
from signaling.catalogue import NAMESPACE

NODE_DIR = ROOT / "bench" / "node_relay"
MARK = "x-bench-ts:"
TARGET_PARTICIPANTS = 1000
TARGET_RELAY_P99_MS = 50.0
TAIL_S = 2.0
HEARING_SIZE = 4  # a chat line reaches all 4 of the hearing, the sender included  # after the window, how long messages sent in it may still arrive


@dataclass(frozen=True)
class Config:
    scales: tuple[int, ...]
    servers: tuple[str, ...]
    ramp: float  # hearings per second
    period: float  # seconds between negotiation rounds of one hearing
    candidates: int
    warmup: float
    window: float
    py_spy: str | None


def fake_sdp(kind: str, seq: int, ts: int) -> str:
    """An SDP of the size a browser sends (~4 KB: audio + video, a dozen codecs); the send time
    rides in an attribute line."""
    lines = [
        "v=0",
        f"o=- {4611731400430051336 + seq} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS bench",
        f"a={MARK}{ts}",
    ]
    for mid, media in enumerate(("audio", "video")):
        lines += [
            f"m={media} 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126 96 97 98 99 100 101 35 36",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=ice-ufrag:bnch",
            "a=ice-pwd:benchbenchbenchbenchbench",
            "a=ice-options:trickle",
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
            f"a=setup:{'actpass' if kind == 'offer' else 'active'}",
            f"a=mid:{mid}",
            "a=sendrecv",
            "a=rtcp-mux",
            "a=rtcp-rsize",
        ]
        for pt in range(96, 112):
            lines += [
                f"a=rtpmap:{pt} {'opus/48000/2' if media == 'audio' else 'VP8/90000'}",
                f"a=rtcp-fb:{pt} transport-cc",
                f"a=fmtp:{pt} minptime=10;useinbandfec=1",
            ]
        lines.append("a=ssrc:1001 cname:benchbenchbench")
    return "\r\n".join(lines) + "\r\n"


def fake_candidate(seq: int, ts: int) -> dict[str, Any]:
    return {
        "candidate": f"candidate:{seq} 1 udp 2122260223 127.0.0.1 {50000 + seq % 10000} typ host "
        f"generation 0 ufrag bnch network-id 1 {MARK}{ts}",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }


def stamp_of(text: str) -> int | None:
    i = text.rfind(MARK)
    if i < 0:
        return None
    digits = text[i + len(MARK) :].split(None, 1)[0].split("\r", 1)[0]
    return int(digits) if digits.isdigit() else None


@dataclass
class Stats:
    """What every client of one run records (one event loop: no locks needed)."""

    window: tuple[int, int] = (0, 0)  # [start, end) in mono_ns; (0, 0) until known
    join_mediator: list[float] = field(default_factory=list)
    join_party: list[float] = field(default_factory=list)
    lobby: list[float] = field(default_factory=list)
    relay: list[float] = field(default_factory=list)
    chat: list[float] = field(default_factory=list)
    received: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    first_errors: list[str] = field(default_factory=list)
    connect_failures: int = 0
    signals_sent: int = 0  # in the window
    chats_sent: int = 0  # in the window

    def in_window(self, t: int) -> bool:
        return self.window[0] <= t < self.window[1]

    def error(self, what: str) -> None:
        self.errors[what.split(":", 1)[0]] += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(what)


class Client:
    """One participant: a socket.io connection with their own link."""

    def __init__(self, run: Run, hearing: HearingRun, participant_id: int, token: str, staff: bool):
        self.run, self.hearing = run, hearing
        self.id, self.token, self.staff = participant_id, token, staff
        self.sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        self.connect_started = 0
        self.peers: list[int] = []
        self.admitted = asyncio.Event()
        self.waiting = asyncio.Event()
        self.complete = asyncio.Event()  # admitted and holding all peers of the hearing
        self.seq = 0
        self.sio.on("sync", self.on_sync, namespace=NAMESPACE)
        self.sio.on("signal", self.on_signal, namespace=NAMESPACE)
        self.sio.on("chat", self.on_chat, namespace=NAMESPACE)
        self.sio.on("error", self.on_error, namespace=NAMESPACE)
        self.sio.on("*", self.on_other, namespace=NAMESPACE)

    async def connect(self) -> None:
        self.connect_started = mono_ns()
        await self.sio.connect(
            self.run.url,
            namespaces=[NAMESPACE],
            transports=["websocket"],
            auth={"token": self.token},
            wait_timeout=60,
        )

    async def emit(self, event: str, data: Any) -> None:
        try:
            await self.sio.emit(event, data, namespace=NAMESPACE)
        except socketio.exceptions.SocketIOError as exc:  # dropped by the server: counted
            self.run.stats.error(f"emit {event}: {type(exc).__name__}")

    def _count(self, event: str) -> int:
        now = mono_ns()
        if self.run.stats.in_window(now):
            self.run.stats.received[event] += 1
        return now

    # ---- handlers ------------------------------------------------------------------------------

    async def on_sync(self, data: dict[str, Any]) -> None:
        now = self._count("sync")
        stats = self.run.stats
        state = data.get("you", {}).get("state")
        if state == "waiting" and not self.waiting.is_set():
            stats.lobby.append((now - self.connect_started) / 1e6)
            self.waiting.set()
        if state == "admitted" and not self.admitted.is_set():
            if self.staff:
                stats.join_mediator.append((now - self.connect_started) / 1e6)
            else:
                sent = self.hearing.admit_sent.get(self.id)
                if sent is not None:
                    stats.join_party.append((now - sent) / 1e6)
            self.admitted.set()
        self.peers = list(data.get("peers", []))
        if state == "admitted" and len(self.peers) == len(self.hearing.links.links) - 1:
            self.complete.set()
        if self.staff:
            for person in data.get("lobby", []):
                pid = person.get("id")
                if person.get("state") == "waiting" and pid not in self.hearing.admit_sent:
                    self.hearing.admit_sent[pid] = mono_ns()
                    await self.emit("admit", {"participant_id": pid})

    async def on_signal(self, data: dict[str, Any]) -> None:
        now = self._count("signal")
        description = data.get("description")
        candidate = data.get("candidate")
        text = description["sdp"] if description else (candidate or {}).get("candidate", "")
        ts = stamp_of(text)
        if ts is not None and self.run.stats.in_window(ts):
            self.run.stats.relay.append((now - ts) / 1e6)
        if description and description.get("type") == "offer":
            await self.send_description(data["from"], "answer")
            await self.send_candidates(data["from"])
        elif description and description.get("type") == "answer":
            await self.send_candidates(data["from"])

    async def on_chat(self, data: dict[str, Any]) -> None:
        now = self._count("chat")
        ts = stamp_of(str(data.get("text", "")))
        if ts is not None and self.run.stats.in_window(ts):
            self.run.stats.chat.append((now - ts) / 1e6)

    async def on_error(self, data: Any) -> None:
        self._count("error")
        self.run.stats.error(f"{(data or {}).get('code')}: {(data or {}).get('event')}")

    async def on_other(self, event: str, data: Any = None) -> None:
        self._count(event)

    # ---- sending -------------------------------------------------------------------------------

    def _sent(self, ts: int, chat: bool = False) -> None:
        if self.run.stats.in_window(ts):
            if chat:
                self.run.stats.chats_sent += 1
            else:
                self.run.stats.signals_sent += 1

    async def send_description(self, to: int, kind: str) -> None:
        self.seq += 1
        ts = mono_ns()
        self._sent(ts)
        sdp = fake_sdp(kind, self.seq, ts)
        await self.emit("signal", {"to": to, "description": {"type": kind, "sdp": sdp}})

    async def send_candidates(self, to: int) -> None:
        for _ in range(self.run.config.candidates):
            self.seq += 1
            ts = mono_ns()
            self._sent(ts)
            await self.emit("signal", {"to": to, "candidate": fake_candidate(self.seq, ts)})

    async def send_chat(self) -> None:
        ts = mono_ns()
        self._sent(ts, chat=True)
        await self.emit("chat", {"text": f"压测消息 {self.id} {MARK}{ts}"})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)
        http = getattr(self.sio.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()


class HearingRun:
    def __init__(self, run: Run, links: HearingLinks):
        self.run, self.links = run, links
        self.admit_sent: dict[int, int] = {}
        self.clients = [
            Client(run, self, link.participant_id, link.token, link.kind == "mediator")
            for link in links.links
        ]
        self.ready = False

    async def join(self) -> None:
        mediator, parties = self.clients[0], self.clients[1:]
        await mediator.connect()
        await asyncio.wait_for(mediator.admitted.wait(), 60)
        await asyncio.gather(*(p.connect() for p in parties))
        await asyncio.wait_for(asyncio.gather(*(c.complete.wait() for c in self.clients)), 60)

    async def negotiate(self, turn: int) -> None:
        clients = sorted(self.clients, key=lambda c: c.id)
        for i, a in enumerate(clients):
            for b in clients[i + 1 :]:
                await a.send_description(b.id, "offer")
        await clients[turn % len(clients)].send_chat()

    async def life(self, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        try:
            await self.join()
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            self.run.stats.connect_failures += 1
            self.run.stats.error(f"join: {type(exc).__name__}: {exc}")
            self.run.hearing_done()
            return
        self.ready = True
        self.run.hearing_done()
        turn = 0
        next_round = time.monotonic()
        phase = random.uniform(0, self.run.config.period)
        while True:
            if next_round > self.run.stop_rounds_at:
                return
            await self.negotiate(turn)
            turn += 1
            next_round += self.run.config.period if turn > 1 else phase
            await asyncio.sleep(max(0.0, next_round - time.monotonic()))


async def start_spy(py_spy: str, pid: int, out: Path) -> asyncio.subprocess.Process:
    """py-spy sampling ``pid`` (all threads, 200 Hz, without pausing it) until ``finish_spy``."""
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        "3600",
        "--rate",
        "200",
        "--format",
        "raw",
        "--threads",
        "--nonblocking",
        "--output",
        str(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def finish_spy(spy: asyncio.subprocess.Process) -> None:
    """Stop sampling: py-spy writes its profile on SIGINT."""
    spy.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(spy.wait(), 60)
    except TimeoutError:
        spy.kill()


class Run:
    """One load run: all hearings against one server at ``url``."""

    def __init__(self, config: Config, url: str, hearings: list[HearingLinks]):
        self.config, self.url = config, url
        self.stats = Stats()
        self.hearings = [HearingRun(self, h) for h in hearings]
        self.pending = len(self.hearings)
        self.all_done = asyncio.Event()
        self.stop_rounds_at = float("inf")

    def hearing_done(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.all_done.set()

    async def execute(
        self, server_pid: int, profile: Path | None, trace: Path | None = None
    ) -> dict[str, Any]:
        cfg = self.config
        participants = sum(len(h.clients) for h in self.hearings)
        server_cpu, client_cpu = CpuWindow(server_pid), CpuWindow(os.getpid())
        machine = MachineWindow()
        server_cpu.start()
        ramp_spy = None
        if profile is not None and cfg.py_spy:
            ramp_spy = await start_spy(cfg.py_spy, server_pid, profile.with_suffix(".ramp.txt"))
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(h.life(t0 + i / cfg.ramp)) for i, h in enumerate(self.hearings)
        ]
        ramp_limit = len(self.hearings) / cfg.ramp + 120
        try:
            await asyncio.wait_for(self.all_done.wait(), ramp_limit)
        except TimeoutError:
            say(f"  not every hearing was ready after {ramp_limit:.0f} s; measuring anyway")
        ramp_s = time.monotonic() - t0
        join_cpu = server_cpu.percent()
        if ramp_spy is not None:
            await finish_spy(ramp_spy)
        ready = sum(len(h.clients) for h in self.hearings if h.ready)
        say(
            f"  {ready}/{participants} participants admitted with their peers after {ramp_s:.1f} s "
            f"(server CPU {join_cpu:.0f}% during the ramp)"
        )
        start = mono_ns() + int(cfg.warmup * 1e9)
        end = start + int(cfg.window * 1e9)
        self.stats.window = (start, end)
        self.stop_rounds_at = time.monotonic() + cfg.warmup + cfg.window
        await asyncio.sleep(cfg.warmup)
        server_cpu.start()
        client_cpu.start()
        machine.start()
        spy = None
        if profile is not None and cfg.py_spy:
            spy = await start_spy(cfg.py_spy, server_pid, profile.with_suffix(".window.txt"))
        say(f"  measuring for {cfg.window:.0f} s")
        await asyncio.sleep(cfg.window)
        cpu, ccpu, busy = server_cpu.percent(), client_cpu.percent(), machine.percent()
        rss, hwm = memory_mb(server_pid)
        await asyncio.sleep(TAIL_S)  # let the last messages of the window arrive
        if trace is not None:  # the instrumented server: its figures for the ramp and window
            os.kill(server_pid, signal.SIGUSR1)
            for _ in range(300):
                if os.path.exists(trace):  # noqa: ASYNC240 - one stat() per 100 ms
                    break
                await asyncio.sleep(0.1)
        if spy is not None:
            await finish_spy(spy)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        s = self.stats
        delivered = sum(s.received.values()) / cfg.window
        join_all = s.join_mediator + s.join_party
        return {
            "participants": ready,
            "ramp_s": round(ramp_s, 1),
            "join_p50_ms": rounded(percentile(join_all, 50)),
            "join_p99_ms": rounded(percentile(join_all, 99)),
            "join_mediator_p50_ms": rounded(percentile(s.join_mediator, 50)),
            "join_mediator_p99_ms": rounded(percentile(s.join_mediator, 99)),
            "join_party_p50_ms": rounded(percentile(s.join_party, 50)),
            "join_party_p99_ms": rounded(percentile(s.join_party, 99)),
            "lobby_p50_ms": rounded(percentile(s.lobby, 50)),
            "lobby_p99_ms": rounded(percentile(s.lobby, 99)),
            "relay_p50_ms": rounded(percentile(s.relay, 50)),
            "relay_p99_ms": rounded(percentile(s.relay, 99)),
            "relay_max_ms": rounded(max(s.relay) if s.relay else None),
            "relay_samples": len(s.relay),
            # Sent in the window but not received by TAIL_S after it (lost, or later than that):
            # the percentiles above cannot include them.
            "relay_late_or_lost": max(0, s.signals_sent - len(s.relay)),
            "chat_p50_ms": rounded(percentile(s.chat, 50)),
            "chat_p99_ms": rounded(percentile(s.chat, 99)),
            "chat_late_or_lost": max(0, s.chats_sent * HEARING_SIZE - len(s.chat)),
            "delivered_msgs_per_s": round(delivered, 1),
            "signals_per_s": round(s.received["signal"] / cfg.window, 1),
            "server_cpu_pct": round(cpu, 1),
            "server_cpu_pct_join": round(join_cpu, 1),
            "server_rss_mb": round(rss, 1),
            "server_rss_peak_mb": round(hwm, 1),
            "client_cpu_pct": round(ccpu, 1),
            # Everything else on the machine (2 cores = 200%) during the window: other work
            # competing with the server and the clients for the CPU.
            "other_cpu_pct": round(max(0.0, busy - cpu - ccpu), 1),
            "errors": sum(s.errors.values()) + s.connect_failures,
            "first_errors": s.first_errors,
        }

    async def close(self) -> None:
        clients = [c for h in self.hearings for c in h.clients]
        for i in range(0, len(clients), 200):
            await asyncio.gather(*(c.close() for c in clients[i : i + 200]))


def run_load(
    config: Config,
    url: str,
    hearings: list[HearingLinks],
    server_pid: int,
    profile: Path | None,
    trace: Path | None = None,
) -> dict[str, Any]:
    import logging

    # A refused or dropped connection is counted in the figures; the clients need not log it.
    for name in ("engineio.client", "socketio.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)

    async def main() -> dict[str, Any]:
        run = Run(config, url, hearings)
        try:
            return await run.execute(server_pid, profile, trace)
        finally:
            await run.close()

    return asyncio.run(main())


# ---- the two servers ----------------------------------------------------------------------------


def ensure_node_relay() -> None:
    """``npm ci`` in bench/node_relay (from its committed lockfile), unless already done."""
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".bench-stamp"
    want = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want:
        return
    say("npm ci in bench/node_relay")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True
    )
    stamp.write_text(want + "\n")


def node_spec(hearings: list[HearingLinks], path: Path) -> None:
    spec = {
        "tokens": {link.token: link.participant_id for h in hearings for link in h.links},
        "hearings": [
            {
                "id": h.hearing_id,
                "title": h.title,
                "participants": [
                    {
                        "id": link.participant_id,
                        "name": link.name,
                        "kind": link.kind,
                        "side": link.side,
                    }
                    for link in h.links
                ],
            }
            for h in hearings
        ],
    }
    path.write_text(json.dumps(spec, ensure_ascii=False))


def start_node(spec: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        ["node", "relay.js", "--port", str(port), "--participants", str(spec)],
        cwd=NODE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def summarise_profile(raw: Path, top: int = 20) -> list[str]:
    """Sample shares per ``file:function`` from py-spy's collapsed stacks (``--threads``): the
    event-loop thread (self time, and inclusive time of our own modules), and the rest."""
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    parts_of: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    main_total = total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = parts[0].split(": ", 1)[-1] if parts[0].startswith("thread (") else "?"
        threads[thread if thread == "MainThread" else "other threads"] += count
        total += count
        if thread != "MainThread":
            continue
        main_total += count
        frames = [_frame(f) for f in parts[1:]]
        if frames:
            own[frames[-1]] += count
        parts_of[_component(frames[-1] if frames else "")] += count
        for frame in set(frames):
            if frame.split("/", 1)[0] in ("signaling", "rooms", "cases", "server", "web"):
                ours[frame] += count
    if not main_total:
        return ["(no samples of the event-loop thread)"]
    lines = [
        f"{total} samples: "
        + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in threads.most_common())
        + " (py-spy counts a thread only while it runs or waits for the GIL)",
        f"event-loop thread, self time (top {top}, % of its samples):",
    ]
    lines += [f"  {100 * n / main_total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("event-loop thread, self time by component:")
    lines += [f"  {100 * n / main_total:5.1f}%  {name}" for name, n in parts_of.most_common()]
    lines.append(
        f"event-loop thread, inclusive time in our code (top {top}; SQLAlchemy runs its work in "
        "greenlets whose samples do not show the calling function, so database work is "
        "under-counted here — see the components above):"
    )
    lines += [f"  {100 * n / main_total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    return lines


COMPONENTS = {
    "selectors.py": "idle (waiting in epoll)",
    "asyncio": "asyncio (event loop, tasks, socket writes)",
    "sqlalchemy": "database (SQLAlchemy ORM/Core, aiosqlite hand-off)",
    "aiosqlite": "database (SQLAlchemy ORM/Core, aiosqlite hand-off)",
    "greenlet": "database (SQLAlchemy ORM/Core, aiosqlite hand-off)",
    "socketio": "socket.io / engine.io (packets, rooms, JSON)",
    "engineio": "socket.io / engine.io (packets, rooms, JSON)",
    "json": "socket.io / engine.io (packets, rooms, JSON)",
    "aiohttp": "aiohttp (HTTP, websocket frames)",
    "pydantic": "pydantic (payload validation)",
    "pydantic_core": "pydantic (payload validation)",
}


def _component(frame: str) -> str:
    if frame.startswith("<sqlalchemy"):
        return COMPONENTS["sqlalchemy"]
    head = frame.split("/", 1)[0].split(":", 1)[0]
    if head in ("signaling", "rooms", "cases", "server", "web", "config"):
        return f"our code ({head}/)"
    return COMPONENTS.get(head, "other (stdlib and small libraries)")


def _frame(text: str) -> str:
    """py-spy frame ``func (path/file.py:line)`` → ``path/file.py:func`` with a short path."""
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{name}"


# ---- where the time goes: an instrumented server (diagnosis only) --------------------------------
#
# ``python -m bench.signaling --serve-traced OUT.json`` runs ``server.cli serve`` (same settings,
# same code) with wall-clock timers around the signaling handlers, the domain calls they make, the
# SQLite statements and the connection pool, plus an event-loop lag probe; the figures are written
# to OUT.json when the server stops. The benchmark's own figures never come from this mode.

TRACED: dict[str, list[float]] = collections.defaultdict(list)


def _timed_async(owner: Any, name: str, label: str) -> None:
    import functools

    original = getattr(owner, name, None)
    if original is None:  # the server code changed: time what exists
        return

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            TRACED[label].append(time.perf_counter() - t)

    setattr(owner, name, wrapper)


def _instrument() -> None:
    from sqlalchemy import event
    from sqlalchemy.pool import impl as pool_impl

    import rooms.hearings
    import signaling.server as sig
    from server import db

    cls = sig.HearingSignaling
    for name in (
        "on_connect",
        "on_disconnect",
        "sync",
        "snapshot",
        "on_signal",
        "on_chat",
        "on_admit",
        "_welcome",
        "_emit_each",
    ):
        _timed_async(cls, name, f"signaling/server.py:HearingSignaling.{name}")
    _timed_async(sig, "read_invitation", "rooms/invitations.py:read_invitation")
    for name in ("do_join", "do_admit", "do_post_message", "chat_history", "load_snapshot"):
        _timed_async(rooms.hearings, name, f"rooms/hearings.py:{name}")
    _timed_async(sig.socketio.AsyncServer, "emit", "socketio/async_server.py:AsyncServer.emit")

    original_get = pool_impl.QueuePool._do_get

    def do_get(self: Any) -> Any:
        t = time.perf_counter()
        try:
            return original_get(self)
        finally:
            TRACED["sqlalchemy pool: wait for a connection (QueuePool._do_get)"].append(
                time.perf_counter() - t
            )

    pool_impl.QueuePool._do_get = do_get  # type: ignore[method-assign]
    original_engine = db.make_engine

    def make_engine(url: str) -> Any:
        engine = original_engine(url)

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            conn.info["bench_t"] = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            now = time.perf_counter()
            verb = statement.lstrip().split(None, 1)[0].upper()
            if statement.startswith("BEGIN IMMEDIATE"):
                TRACED["sqlite: BEGIN IMMEDIATE (wait for the write lock)"].append(
                    now - conn.info.pop("bench_t", now)
                )
                conn.info["bench_locked"] = now
            else:
                TRACED[f"sqlite: {verb} statements"].append(now - conn.info.pop("bench_t", now))

        def release(conn: Any) -> None:
            locked = conn.info.pop("bench_locked", None)
            if locked is not None:
                TRACED["sqlite: write lock held (BEGIN IMMEDIATE to COMMIT/ROLLBACK)"].append(
                    time.perf_counter() - locked
                )

        event.listen(engine.sync_engine, "commit", release)
        event.listen(engine.sync_engine, "rollback", release)
        return engine

    db.make_engine = make_engine


async def _loop_lag_probe(app: Any) -> None:
    async def probe() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            TRACED["event loop lag (a 10 ms sleep overran by)"].append(
                time.perf_counter() - t - 0.01
            )

    app["bench_probe"] = asyncio.get_running_loop().create_task(probe())


def _dump_trace(out: Path) -> None:
    summary = {}
    for label, values in list(TRACED.items()):
        values = list(values)
        summary[label] = {
            "count": len(values),
            "total_s": round(sum(values), 3),
            "mean_ms": round(1000 * sum(values) / len(values), 3) if values else None,
            "p50_ms": rounded(1000 * (percentile(values, 50) or 0), 3),
            "p99_ms": rounded(1000 * (percentile(values, 99) or 0), 3),
            "max_ms": round(1000 * max(values), 3) if values else None,
        }
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    partial.replace(out)


def serve_traced(out: Path) -> int:
    """The instrumented server: writes its figures to ``out`` on SIGUSR1 and when it stops."""
    import logging

    import server.app
    from server import cli

    _instrument()
    original_create = server.app.create_app

    async def on_signal(app: Any) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_trace, out)

    def create_app(settings: Any) -> Any:
        app = original_create(settings)
        app.on_startup.append(_loop_lag_probe)
        app.on_startup.append(on_signal)
        return app

    server.app.create_app = create_app
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        return cli.main(["serve"])
    finally:
        if not out.exists():
            _dump_trace(out)


def start_traced(env: ServerEnv, port: int, log_path: Path, out: Path) -> subprocess.Popen[bytes]:
    from bench.common import PYTHON

    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(PYTHON), "-m", "bench.signaling", "--serve-traced", str(out)],
        env=env.environ(port),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def trace_lines(path: Path, window_s: float) -> list[str]:
    data = json.loads(path.read_text())
    rows = sorted(data.items(), key=lambda kv: -kv[1]["total_s"])
    lines = [
        "wall-clock per call (count, total s, mean / p50 / p99 / max ms); totals overlap "
        "(a handler's time includes the calls it makes, and many run concurrently):"
    ]
    for label, f in rows:
        lines.append(
            f"  {label}: n={f['count']} total={f['total_s']}s mean={f['mean_ms']} "
            f"p50={f['p50_ms']} p99={f['p99_ms']} max={f['max_ms']}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signaling", description=__doc__)
    parser.add_argument("--scales", default="200,1000", help="participants per run (comma list)")
    parser.add_argument("--servers", default="yuntiao,node", help="yuntiao, node, or both")
    parser.add_argument("--ramp", type=float, default=10.0, help="hearings started per second")
    parser.add_argument("--period", type=float, default=10.0, help="s between rounds")
    parser.add_argument("--candidates", type=int, default=3, help="ICE candidates per side")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds")
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
        help="before each run wait up to this many s for the machine to be idle",
    )
    parser.add_argument("--py-spy", dest="py_spy", help="py-spy binary: profile the largest run")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="run our server instrumented (wall-clock timers around handlers, domain calls, "
        "SQLite statements, the pool; event-loop lag) and print where the time goes; its "
        "figures get the traced_ prefix and are not the benchmark's",
    )
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="postgresql: diagnosis only, our server on a database at 127.0.0.1:5432 "
        "(YUNTIAO_BENCH_PG_DSN) instead of SQLite; figures get the pg_ prefix",
    )
    parser.add_argument("--serve-traced", dest="serve_traced", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_traced:
        return serve_traced(Path(args.serve_traced))
    if args.diagnose:
        args.servers = "yuntiao"
    config = Config(
        scales=tuple(int(x) for x in args.scales.split(",")),
        servers=tuple(s.strip() for s in args.servers.split(",") if s.strip()),
        ramp=args.ramp,
        period=args.period,
        candidates=args.candidates,
        warmup=args.warmup,
        window=args.window,
        py_spy=args.py_spy,
    )
    fds = raise_fd_limit()
    nice = boost_priority(args.nice)
    size = HEARING_SIZE
    need = max(config.scales) // size
    work = Path(tempfile.mkdtemp(prefix="yuntiao-bench-signaling-"))
    OUT.mkdir(parents=True, exist_ok=True)
    say(
        f"signaling benchmark: scales {config.scales}, servers {config.servers}, hearings of "
        f"{size}, ramp {config.ramp:g} hearings/s, rounds every {config.period:g} s, "
        f"{config.candidates} candidates, window {config.window:g} s; 1 client process "
        f"(open files limit {fds}, niceness {nice}); work dir {work}"
    )
    pg_prefix = f"yuntiao_bench_{os.getpid()}"
    if args.database == "postgresql":
        pg_admin(f'CREATE DATABASE "{pg_prefix}"')
        atexit.register(pg_drop_like, pg_prefix)
        template = ServerEnv(work / "template", url=pg_url(pg_prefix))
    else:
        template = ServerEnv(work / "template")
    t = time.monotonic()
    hearings = prepare(template, need, parties=size - 1, acknowledge=True)
    say(f"prepared {need} hearings ({need * size} links) in {time.monotonic() - t:.1f} s")
    figures: dict[str, Any] = {
        "benchmark": "signaling",
        "code": code_version(),
        "client_procs": 1,
        "niceness": nice,
        "hearing_size": size,
        "ramp_hearings_per_s": config.ramp,
        "round_period_s": config.period,
        "window_s": config.window,
    }
    if "node" in config.servers:
        ensure_node_relay()
    for server in config.servers:
        for scale in config.scales:
            subset = hearings[: scale // size]
            port = free_port()
            log = work / f"{server}-{scale}.log"
            wait_quiet(args.quiet_wait)
            traced = OUT / f"signaling-trace-{scale}.json"
            traced.unlink(missing_ok=True)
            if server == "yuntiao" and args.diagnose:
                env = template.copy(work / f"data-{scale}")
                proc = start_traced(env, port, log, traced)
            elif server == "yuntiao":
                env = template.copy(work / f"data-{scale}")
                proc = start_server(env, port, log)
            elif server == "node":
                spec = work / f"node-{scale}.json"
                node_spec(subset, spec)
                proc = start_node(spec, port, log)
            else:
                raise SystemExit(f"unknown server {server!r}")
            profile = None
            if server == "yuntiao" and config.py_spy and scale == max(config.scales):
                profile = OUT / f"signaling-pyspy-{scale}"
            say(f"{server} at {scale} participants (pid {proc.pid}, port {port})")
            try:
                found = run_load(
                    config,
                    f"http://127.0.0.1:{port}",
                    subset,
                    proc.pid,
                    profile,
                    traced if server == "yuntiao" and args.diagnose else None,
                )
            finally:
                server_cpu_total = cpu_seconds(proc.pid) if proc.poll() is None else None
                stop(proc)
            say(
                f"  relay p50/p99 {found['relay_p50_ms']}/{found['relay_p99_ms']} ms, join "
                f"p50/p99 {found['join_p50_ms']}/{found['join_p99_ms']} ms, chat p99 "
                f"{found['chat_p99_ms']} ms, late or lost: {found['relay_late_or_lost']} signals, "
                f"{found['chat_late_or_lost']} chat deliveries; "
                f"{found['delivered_msgs_per_s']} msgs/s, server CPU "
                f"{found['server_cpu_pct']}% (total {server_cpu_total} s), RSS "
                f"{found['server_rss_mb']} MB, client CPU {found['client_cpu_pct']}%, other "
                f"processes {found['other_cpu_pct']}%, errors "
                f"{found['errors']} {found['first_errors']}"
            )
            if server != "yuntiao":
                prefix = f"{server}_"
            else:
                prefix = ("traced_" if args.diagnose else "") + (
                    "pg_" if args.database == "postgresql" else ""
                )
            for key, value in found.items():
                if key != "first_errors":
                    figures[f"{prefix}{key}_{scale}"] = value
            if args.diagnose and traced.exists():
                say(f"  instrumented server ({traced}):")
                for line in trace_lines(traced, config.window):
                    say("    " + line)
            for phase in ("ramp", "window"):
                raw = profile.with_suffix(f".{phase}.txt") if profile is not None else None
                if raw is not None and raw.exists():
                    say(f"  py-spy profile of the server during the {phase} ({raw}):")
                    for line in summarise_profile(raw):
                        say("    " + line)
    if "yuntiao" in config.servers and "node" in config.servers and args.database == "sqlite":
        for scale in config.scales:
            for key in (
                "relay_p50_ms",
                "relay_p99_ms",
                "join_p50_ms",
                "join_p99_ms",
                "chat_p99_ms",
                "delivered_msgs_per_s",
                "server_cpu_pct",
                "server_rss_mb",
            ):
                name = key.removesuffix("_ms").removesuffix("_pct").removesuffix("_mb")
                figures[f"{name}_ratio_vs_node_{scale}"] = ratio(
                    figures.get(f"{key}_{scale}"), figures.get(f"node_{key}_{scale}")
                )
    if (
        "yuntiao" in config.servers
        and TARGET_PARTICIPANTS in config.scales
        and not args.diagnose
        and args.database == "sqlite"
    ):
        p99 = figures.get(f"relay_p99_ms_{TARGET_PARTICIPANTS}")
        figures["target_1000_relay_p99_le_50ms_met"] = (
            p99 is not None
            and p99 <= TARGET_RELAY_P99_MS
            and figures.get(f"participants_{TARGET_PARTICIPANTS}") == TARGET_PARTICIPANTS
        )
    keep_logs(work, "signaling")
    result(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
