"""A protocol-level hearing participant built on aiortc, for tests and benchmarks.

``RtcParticipant`` is the platform's ``signaling.peer.HearingPeer`` (the wire protocol, one
aiortc connection per peer, the smaller id offers) sending synthetic audio and video (no
devices, no files); it counts the video frames it decodes from each remote participant, so a
test can watch media actually flow.

Media must stay on loopback: wrap the participants in ``loopback_only()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame

from signaling.peer import HearingPeer, PeerLink, loopback_only

Make = Callable[..., "RtcParticipant"]

__all__ = [
    "HearingPeer",
    "Invite",
    "Make",
    "PeerLink",
    "RtcParticipant",
    "loopback_only",
]


# ---- synthetic media ---------------------------------------------------------------------------


class SyntheticVideo(VideoStreamTrack):
    """aiortc's synthetic video source (30 fps, blank frames) at a chosen size."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=self.width, height=self.height)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = time_base
        return frame


# ---- a hearing, scheduled the way the mediator does it ----------------------------------------


@dataclasses.dataclass(frozen=True)
class Invite:
    """One participant of a scheduled hearing and their own link token."""

    id: int
    name: str
    kind: str
    side: str
    token: str


async def schedule_hearing(client: Any, sessionmaker: Any, case_id: int = 1) -> dict[str, Invite]:
    """Schedule a hearing of a demo case (as its mediator) starting now, with every party's
    rights acknowledged; returns each participant's link by display name."""
    from cases.actor import Actor
    from cases.intake import get_case
    from cases.uow import transaction
    from rooms import hearings
    from rooms.invitations import issue_invitation
    from web.context import SETTINGS

    secret = client.app[SETTINGS].secret_key
    async with transaction(sessionmaker) as session:
        case = await get_case(session, case_id)
        hearing = await hearings.do_schedule_hearing(
            session,
            Actor.for_user(case.mediator),
            case,
            hearings.HearingInput(
                title="音视频测试", scheduled_at=dt.datetime.now(dt.UTC), duration_minutes=60
            ),
        )
        links = {}
        for p in hearing.participants:
            if not p.is_staff:
                await hearings.do_acknowledge_rights(session, Actor("party", p.party_id), p)
            links[p.display_name] = Invite(
                p.id, p.display_name, p.kind, p.side, issue_invitation(secret, hearing, p)
            )
    return links


async def wait_server_idle(client: Any, seconds: float = 5.0) -> None:
    """Wait until the server has handled every disconnect (its handlers touch the database,
    which the test's teardown then drops)."""
    from server.app import SIGNALING

    registry = client.app[SIGNALING].connections
    for _ in range(int(seconds / 0.05)):
        if not registry.local_count():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)


# ---- the participant ---------------------------------------------------------------------------


class RtcParticipant(HearingPeer):
    """A hearing participant sending synthetic audio and video."""

    def __init__(
        self,
        name: str,
        *,
        ice_transport_policy: str = "all",
        audio: bool = True,
        video: bool = True,
        video_size: tuple[int, int] = (320, 240),
        trickle: bool = False,
    ) -> None:
        super().__init__(name, ice_transport_policy=ice_transport_policy, trickle=trickle)
        self.audio = audio
        self.video = video
        self.video_size = video_size

    def add_tracks(self, pc: RTCPeerConnection) -> None:
        if self.audio:
            pc.addTrack(AudioStreamTrack())
        if self.video:
            pc.addTrack(SyntheticVideo(*self.video_size))
