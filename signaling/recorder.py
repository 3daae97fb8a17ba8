"""The hearing recorder: a receive-only participant that stores each participant's audio and
video exactly as it arrived, without decoding or re-encoding it.

It runs as its own process (``yuntiao record --hearing N``, started by the server when the
mediator starts recording), joins the hearing on the wire with the recorder participant's link
(``rooms.hearings.do_start_recording``) and is offered media by every participant who agreed to
the recording, in every sub-room (``rooms.routing``).

Cost: aiortc's ``MediaRecorder`` decodes and re-encodes every stream (~17% of a core per
640×480 stream to H.264, FIELD-NOTES). Here aiortc's decoder is replaced, in this process only,
by a pass-through that hands on the reassembled encoded frames (VP8, Opus), and PyAV remuxes
them into one Matroska file per participant connection. Matroska is written as it goes, so a
crash leaves a file that is readable up to its last second (``CRASH_SAFE_MKV``). Audio is held
back until the first video keyframe (the container needs the video's size before its header is
written; the same ordering problem as MediaRecorder's audio-before-video bug), or recorded alone
when no video comes. The run's timeline is rewritten (atomically) whenever it changes.

When the recorder is dismissed (recording stopped, hearing ended, the server gone) it closes
its files and archives them (``recordings.archive``): ffprobe check, SHA-256, database rows,
audit, then the run's composite file. A recorder that died is replaced by the next join
(``server.recording.RecorderProcesses``) in a new run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import aiortc.rtcrtpreceiver
import av
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from recordings.archive import TIMELINE_NAME
from signaling.peer import HearingPeer

log = logging.getLogger("yuntiao.recorder")

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
# Matroska keeps a cluster in memory until it is complete (up to 5 s or 5 MB) and the output
# buffer holds even the header: killed after 5 s, a file had 0 bytes. One-second clusters,
# handed to the kernel as each one completes, bound the loss to the last second.
CRASH_SAFE_MKV = {"cluster_time_limit": "1000", "flush_packets": "1"}
# Record audio alone when no video keyframe arrived within this many seconds of the first audio.
AUDIO_ONLY_AFTER_S = 4.0


@dataclasses.dataclass
class Encoded:
    """One encoded frame as it came off the wire."""

    codec: str  # "vp8", "opus", ...
    data: bytes
    timestamp: int  # RTP clock, counted from the track's first frame


class PassThroughDecoder(Decoder):
    """Stands in for aiortc's decoder: returns the encoded frame itself."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.codec = codec.mimeType.split("/")[-1].lower()

    def decode(self, encoded_frame: JitterFrame) -> list[Any]:
        return [Encoded(self.codec, encoded_frame.data, encoded_frame.timestamp)]


def install_pass_through() -> None:
    """Make every receiver of this process hand on encoded frames (recorder process only)."""
    aiortc.rtcrtpreceiver.get_decoder = PassThroughDecoder


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when ``data`` is a VP8 key frame (RFC 6386 §9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


class ParticipantFile:
    """One participant connection's audio and video, remuxed into a Matroska file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened_at = time.monotonic()
        self.wall_started = time.time()
        self.container: Any = None
        self.streams: dict[str, Any] = {}
        self.offsets: dict[str, int] = {}  # kind → pts offset (its clock) of its first frame
        self.held: list[tuple[str, Encoded, float]] = []
        self.last_pts: dict[str, int] = {}
        self.packets = 0
        self.skipped_codecs: set[str] = set()

    def add(self, kind: str, frame: Encoded) -> None:
        now = time.monotonic()
        if frame.codec not in ("vp8", "opus"):
            self.skipped_codecs.add(frame.codec)
            return
        if self.container is None:
            size = vp8_keyframe_size(frame.data) if kind == "video" else None
            if size is not None:
                self._open(size)
            elif kind == "audio":
                self.held.append((kind, frame, now))
                if now - self.held[0][2] > AUDIO_ONLY_AFTER_S:
                    self._open(None)
                return
            else:
                return  # video before its first key frame cannot be decoded later: drop
        self._mux(kind, frame, now)

    def _open(self, size: tuple[int, int] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w", format="matroska", options=CRASH_SAFE_MKV)
        if size is not None:
            video = self.container.add_stream("vp8")
            video.width, video.height = size
            video.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self.streams["video"] = video
        audio = self.container.add_stream("opus", rate=AUDIO_CLOCK)
        audio.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        self.streams["audio"] = audio
        held, self.held = self.held, []
        for kind, frame, at in held:
            self._mux(kind, frame, at)

    def _mux(self, kind: str, frame: Encoded, arrived: float) -> None:
        stream = self.streams.get(kind)
        if stream is None:
            return
        clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        if kind not in self.offsets:
            # Both kinds on one time line: each starts where it arrived after the file opened.
            self.offsets[kind] = round((arrived - self.opened_at) * clock) - frame.timestamp
        pts = frame.timestamp + self.offsets[kind]
        if pts <= self.last_pts.get(kind, -1):
            return  # a repeated or reordered frame: the container needs rising times
        self.last_pts[kind] = pts
        packet = av.Packet(frame.data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        # Our clock, not ``stream.time_base``: the muxer changes that to Matroska's 1/1000 when
        # it writes the header, and PyAV rescales from the packet's time base.
        packet.time_base = fractions.Fraction(1, clock)
        if kind == "video":
            packet.is_keyframe = vp8_keyframe_size(frame.data) is not None
        self.container.mux(packet)
        self.packets += 1

    def close(self) -> bool:
        """Finish the file; False when nothing was written (no file)."""
        if self.container is None and self.held:
            self._open(None)
        if self.container is None:
            return False
        self.container.close()
        self.container = None
        return self.packets > 0


@dataclasses.dataclass
class TimelineEvent:
    at: float  # Unix time
    participant_id: int
    name: str
    event: str  # "joined", "left", "reconnecting", "moved"
    subroom: str


class HearingRecorder(HearingPeer):
    """The recorder participant: receives, stores, sends nothing."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__("recorder")
        self.out_dir = out_dir
        self.files: dict[int, ParticipantFile] = {}
        self.finished: list[tuple[int, Path, str, float]] = []  # (participant, path, subroom, t0)
        self.people: dict[int, dict[str, Any]] = {}
        self.timeline: list[TimelineEvent] = []
        self.segments: dict[int, int] = {}
        self.saved_events = 0
        self.done = asyncio.Event()

    # What the hearing looks like, for file labels and the timeline.
    def note_view(self, view: dict[str, Any]) -> None:
        seen: dict[int, dict[str, Any]] = {}
        for person in view.get("everyone") or view.get("participants") or []:
            seen[int(person["id"])] = person
        now = time.time()
        for pid, person in seen.items():
            before = self.people.get(pid)
            state = _presence(person)
            if before is None or _presence(before) != state:
                self.timeline.append(
                    TimelineEvent(now, pid, person["name"], state, person.get("subroom", ""))
                )
            elif before.get("subroom") != person.get("subroom"):
                self.timeline.append(
                    TimelineEvent(now, pid, person["name"], "moved", person["subroom"])
                )
        self.people = seen
        if len(self.timeline) != self.saved_events:
            self.save_timeline()

    def received(self, remote_id: int, kind: str, frame: Any) -> None:
        if not isinstance(frame, Encoded):
            return
        target = self.files.get(remote_id)
        if target is None:
            segment = self.segments.get(remote_id, 0) + 1
            self.segments[remote_id] = segment
            subroom = str(self.people.get(remote_id, {}).get("subroom", "main"))
            name = f"p{remote_id}-{_safe(subroom)}-{segment}.mkv"
            target = self.files[remote_id] = ParticipantFile(self.out_dir / name)
            self.save_timeline()
        try:
            target.add(kind, frame)
        except av.FFmpegError:
            log.exception("recording participant %s failed; their file is closed", remote_id)
            self.peer_closed(remote_id)

    def peer_closed(self, remote_id: int) -> None:
        target = self.files.pop(remote_id, None)
        if target is None:
            return
        subroom = str(self.people.get(remote_id, {}).get("subroom", "main"))
        if target.close():
            self.finished.append((remote_id, target.path, subroom, target.wall_started))
        if target.skipped_codecs:
            log.warning(
                "participant %s sent %s, which the recorder does not store",
                remote_id,
                sorted(target.skipped_codecs),
            )

    async def finish(self) -> None:
        """Close every connection (which closes its file) and write the timeline."""
        await self.disconnect()
        for remote_id in list(self.files):
            self.peer_closed(remote_id)
        self.save_timeline()

    def save_timeline(self) -> None:
        """Write the run's timeline (events so far, files finished and still open) atomically,
        whenever it changes: after a crash the run still says who was where and when."""
        files = [
            {"participant_id": pid, "file": path.name, "subroom": room, "start": t0}
            for pid, path, room, t0 in self.finished
        ] + [
            {
                "participant_id": pid,
                "file": target.path.name,
                "subroom": str(self.people.get(pid, {}).get("subroom", "main")),
                "start": target.wall_started,
            }
            for pid, target in self.files.items()
        ]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        part = self.out_dir / f"{TIMELINE_NAME}.part"
        part.write_text(
            json.dumps(
                {"events": [dataclasses.asdict(e) for e in self.timeline], "files": files},
                ensure_ascii=False,
                indent=1,
            )
        )
        os.replace(part, self.out_dir / TIMELINE_NAME)
        self.saved_events = len(self.timeline)

    async def _on_sync(self, view: dict[str, Any]) -> None:
        self.note_view(view)
        await super()._on_sync(view)


def _presence(person: dict[str, Any]) -> str:
    if person.get("state") != "admitted":
        return "left"
    return "joined" if person.get("connected") else "reconnecting"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40] or "room"


async def record(
    base_url: str, token: str, out_dir: Path, stop: asyncio.Event | None = None
) -> HearingRecorder:
    """Join with the recorder's link and record until dismissed (or ``stop`` is set); returns
    the recorder with its finished files (archiving is the caller's job)."""
    install_pass_through()
    recorder = HearingRecorder(out_dir)
    await recorder.connect(base_url, token)
    dismissed = ("replaced", "removed", "hearing_ended", "disconnect")
    stop = stop or asyncio.Event()
    while not stop.is_set() and not any(recorder.events.get(name) for name in dismissed):
        recorder.changed.clear()
        waiter = asyncio.create_task(stop.wait())
        changed = asyncio.create_task(recorder.changed.wait())
        await asyncio.wait({waiter, changed}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        changed.cancel()
    await recorder.finish()
    return recorder
