"""Recording benchmark: what the recorder costs per recorded stream, and how fast the composite
is made.

For each scale (2 and 4 recorded streams): one recorded hearing on our server (its own process,
SQLite, ``yuntiao serve``); the mediator and the parties are aiortc participants in this process
sending 640×480 video (VP8, camera-like moving pictures with sensor noise, so the encoder works
at a WebRTC camera's bit rate; see ``CAMERA_LIKE``) and Opus audio. Each sits in a sub-room of their own (a caucus), so the only media they send goes
to the recorder: the figures are the recorder's, not a mesh's. The mediator starts recording;
once every stream reaches the recorder, the window (``--window`` s) starts; then the mediator
stops recording and the recorder archives (ffprobe, SHA-256, composite).

Figures (suffix ``_<streams>``):

- ``recorder_cpu_pct_per_stream``: the recorder process's CPU over the window (utime+stime from
  /proc) divided by the streams, in % of one core; ``recorder_cpu_s_per_stream_minute`` the same
  as CPU-seconds per recorded minute of one stream. Target: ≤ 10% (aiortc's MediaRecorder
  re-encoding to MP4 costs ~17%, FIELD-NOTES).
- ``recorder_rss_peak_mb``: the recorder's peak resident memory (VmHWM).
- ``composite_speed_x_realtime``: recorded seconds divided by the wall time ``compose`` takes
  to make the grid MP4 from the participant files (run again here on the recorded files).
  Target ≥ 4.
- ``recorded_s``: the length of the composite (ffprobe).
- ``recorded_kbps_per_stream``: the mean bit rate of the participant files (audio + video), i.e.
  the load the recorder was given.

Usage: ``python -m bench.recording [--scales 2,4] [--window 30] [--video-kbps 1500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench.common import (
    ServerEnv,
    boost_priority,
    code_version,
    cpu_reference_ms,
    cpu_seconds,
    free_port,
    keep_logs,
    memory_mb,
    prepare,
    result,
    rounded,
    say,
    start_server,
    stop,
    wait_quiet,
)

TARGET_CPU_PCT = 10.0
TARGET_COMPOSITE_X = 4.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid and b"record" in cmdline:
            found.append(int(entry.name))
    return found


# What a camera sends: moving shapes and colour gradients with a little sensor noise that
# changes every frame (ffmpeg's testsrc2 + temporal noise). Pure random noise, which this
# benchmark used before, cannot be compressed: aiortc's encoder then sent ~10 Mbit/s per
# 640×480 stream (WebRTC cameras send 0.5-2.5 Mbit/s) and the figures measured that.
CAMERA_LIKE = "testsrc2=size={w}x{h}:rate=30,noise=alls=12:allf=t,format=yuv420p"
CAMERA_FRAMES = 90  # 3 s, cycled


def _moving_video(width: int, height: int) -> Any:
    """A video track of camera-like pictures (precomputed, cycled)."""
    import av
    from aiortc.mediastreams import VideoStreamTrack
    from av import VideoFrame

    source = av.open(CAMERA_LIKE.format(w=width, h=height), format="lavfi")
    planes = []
    for frame in source.decode(video=0):
        planes.append([bytes(p) for p in frame.planes])
        if len(planes) >= CAMERA_FRAMES:
            break
    source.close()

    class Moving(VideoStreamTrack):
        counter = 0

        async def recv(self) -> VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = VideoFrame(width=width, height=height)
            for plane, data in zip(frame.planes, planes[self.counter % len(planes)], strict=True):
                plane.update(data)
            self.counter += 1
            frame.pts = pts
            frame.time_base = time_base or Fraction(1, 90000)
            return frame

    return Moving()


async def _run_scale(
    base: str, server_pid: int, hearing: Any, streams: int, window: float, video_kbps: int
) -> dict[str, Any]:
    # Every sender's VP8 encoder at one fixed bit rate (aiortc otherwise starts at 500 kbit/s
    # and follows the receiver's REMB between 250 kbit/s and 1.5 Mbit/s).
    import aiortc.codecs.vpx as vpx
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    from signaling.peer import HearingPeer, loopback_only

    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = video_kbps * 1000

    class Sender(HearingPeer):
        def add_tracks(self, pc: RTCPeerConnection) -> None:
            pc.addTrack(AudioStreamTrack())
            pc.addTrack(_moving_video(640, 480))

    links = hearing.links[:streams]
    people = [Sender(link.name) for link in links]
    with loopback_only():
        try:
            mediator = people[0]
            for person, link in zip(people, links, strict=True):
                await person.connect(base, link.token)
            for link in links[1:]:
                await mediator.until(
                    lambda lk=link: any(
                        p["id"] == lk.participant_id for p in mediator.view.get("lobby", [])
                    ),
                    30,
                    "lobby",
                )
                await mediator.emit("admit", {"participant_id": link.participant_id})
            # Each in a room of their own: they send only to the recorder.
            layout = {str(link.participant_id): f"r{i}" for i, link in enumerate(links)}
            await mediator.emit("caucus_start", {"assignments": layout})
            for person in people:
                await person.until(
                    lambda p=person: p.view["you"]["subroom"] != "main", 30, "caucus"
                )
            await mediator.emit("recording_start")
            for person in people:
                await person.until(lambda p=person: p.view["hearing"]["recording"], 30, "recording")
            recorder_pid = None
            for _ in range(100):
                found = _children(server_pid)
                if found:
                    recorder_pid = found[0]
                    break
                await asyncio.sleep(0.1)
            assert recorder_pid is not None, "the recorder process did not start"
            for person in people:
                await person.until(
                    lambda p=person: any(
                        link.pc.connectionState == "connected" for link in p.peers.values()
                    ),
                    60,
                    "recorder connection",
                )
            await asyncio.sleep(3)  # every stream past its first key frame
            say(
                f"  {streams} streams reach the recorder (pid {recorder_pid}); measuring {window:.0f} s"
            )
            cpu0, t0 = cpu_seconds(recorder_pid), time.monotonic()
            await asyncio.sleep(window)
            cpu1, t1 = cpu_seconds(recorder_pid), time.monotonic()
            _rss, hwm = memory_mb(recorder_pid)
            await mediator.emit("recording_stop")
            for _ in range(600):
                if not await asyncio.to_thread(Path(f"/proc/{recorder_pid}").exists):
                    break
                await asyncio.sleep(0.2)
        finally:
            for person in people:
                with contextlib.suppress(Exception):
                    await person.close()
    pct = 100 * (cpu1 - cpu0) / (t1 - t0) / streams
    return {
        "recorder_cpu_pct_per_stream": rounded(pct, 1),
        "recorder_cpu_s_per_stream_minute": rounded(pct / 100 * 60, 2),
        "recorder_rss_peak_mb": rounded(hwm, 1),
    }


async def _compose_speed(folder: Path) -> tuple[float | None, float | None, float | None]:
    """(composite speed × real time, composite seconds, mean recorded kbit/s per stream)."""
    from recordings import archive

    inputs = []
    kbps = []
    for path in sorted(await asyncio.to_thread(lambda: list(folder.glob("run-*/p*.mkv")))):
        found = await archive.probe(path)
        if found is not None:
            inputs.append((path, 0.0, found))
            if found.duration_s:
                kbps.append(path.stat().st_size * 8 / 1000 / found.duration_s)
    if not inputs:
        return None, None, None
    mean_kbps = sum(kbps) / len(kbps) if kbps else None
    out = folder / "bench-composite.mp4"
    started = time.monotonic()
    ok = await archive.compose(out, inputs)
    took = time.monotonic() - started
    made = await archive.probe(out) if ok else None
    if made is None or not made.duration_s:
        return None, None, mean_kbps
    return made.duration_s / took, made.duration_s, mean_kbps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="2,4", help="recorded streams per run (comma list)")
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds")
    parser.add_argument(
        "--video-kbps",
        type=int,
        default=1500,
        help="each sender's VP8 bit rate (default 1500: aiortc's maximum, about what Chrome "
        "sends for 640x480 on a good network)",
    )
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--nice", type=int, default=-10)
    args = parser.parse_args(argv)
    scales = [int(x) for x in args.scales.split(",") if x.strip()]
    niceness = boost_priority(args.nice)
    work = Path(tempfile.mkdtemp(prefix="yuntiao-bench-recording-"))
    env = ServerEnv(work / "data")
    hearings = prepare(env, len(scales), parties=max(scales) - 1, record=True)
    port = free_port()
    os.environ["YUNTIAO_RECORDER_HOST_ADDRESSES"] = "127.0.0.1"
    figures: dict[str, Any] = {
        "benchmark": "recording",
        "code": code_version(),
        "niceness": niceness,
        "window_s": args.window,
        "video": "640x480 VP8 + Opus, as sent by aiortc",
        "video_kbps_sent": args.video_kbps,
    }
    busy = wait_quiet(args.quiet_wait)
    figures["machine_busy_before_pct"] = rounded(busy, 1)
    figures["cpu_reference_before_ms"] = cpu_reference_ms()
    proc = start_server(env, port, work / "server.log")
    try:
        for hearing, streams in zip(hearings, scales, strict=True):
            say(f"recording {streams} streams")
            measured = asyncio.run(
                _run_scale(
                    f"http://127.0.0.1:{port}",
                    proc.pid,
                    hearing,
                    streams,
                    args.window,
                    args.video_kbps,
                )
            )
            folder = env.data_dir / "recordings" / f"h{hearing.hearing_id}"
            speed, seconds, kbps = asyncio.run(_compose_speed(folder))
            measured["composite_speed_x_realtime"] = rounded(speed, 1)
            measured["recorded_s"] = rounded(seconds, 1)
            measured["recorded_kbps_per_stream"] = rounded(kbps, 0)
            say(f"  {measured}")
            figures.update({f"{k}_{streams}": v for k, v in measured.items()})
    finally:
        stop(proc)
        keep_logs(work, "recording")
    cpu = [figures.get(f"recorder_cpu_pct_per_stream_{s}") for s in scales]
    speeds = [figures.get(f"composite_speed_x_realtime_{s}") for s in scales]
    figures["target_cpu_le_10pct_per_stream_met"] = all(
        c is not None and c <= TARGET_CPU_PCT for c in cpu
    )
    figures["target_composite_ge_4x_met"] = all(
        s is not None and s >= TARGET_COMPOSITE_X for s in speeds
    )
    result(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
