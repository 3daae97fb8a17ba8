"""Every socket.io event of the hearing namespace, with its payload model: the one place where
the wire protocol is written down. Payloads are plain JSON objects validated at the edge.

Namespace: ``/hearing``. Transport: websocket only (no sticky sessions needed behind a proxy).
Authentication: the client connects with ``auth={"token": <invitation token>}``; each participant
has their own link. The same link opened a second time takes over: the first tab receives
``replaced`` and is disconnected.

Client → server (each may be answered by ``error``):

- ``signal``  ``{"to": int, "description"?: {"type": "offer"|"answer", "sdp": str},
  "candidate"?: {"candidate": str, "sdpMid"?: str, "sdpMLineIndex"?: int}}`` — WebRTC
  negotiation, relayed only between participants who may exchange media (same sub-room).
- ``chat``  ``{"text": str}`` — 1–2000 characters; delivered to the sender's sub-room.
- ``media_state``  ``{"audio": bool, "video": bool, "screen": bool, "hand": bool}``.
- ``speaking``  ``{"level": float}`` — 0..1 audio level, for the active-speaker highlight.
- ``quality``  ``{"rtt_ms"?: float, "loss"?: float}`` — the sender's connection quality.
- ``leave``  ``{}`` — leave for good (others then see "left", not "reconnecting").
- Staff only: ``admit`` / ``deny`` / ``remove`` / ``readmit``  ``{"participant_id": int}``;
  ``caucus_start``  ``{"assignments"?: {participant_id: subroom}}`` (omitted: by side);
  ``move``  ``{"participant_id": int, "subroom": str}``; ``caucus_end``  ``{}``;
  ``mute``  ``{"participant_id": int}`` (asks that participant's browser to mute);
  ``end_hearing``  ``{}``; ``recording_start``  ``{}`` (refused unless the hearing was scheduled
  as recorded and everyone present agreed; the platform's recorder then joins, receive-only);
  ``recording_stop``  ``{}``.

Server → client:

- ``sync`` — the whole view of one participant, sent on connect and after every change:
  ``{"you": Person, "hearing": {...}, "participants": [Person], "peers": [int],
  "lobby": [Person] (staff only), "subrooms": [str] (staff only), "not_recorded": [str] (staff
  only: who present has not agreed to the recording), "ice_servers": [...]}``; ``hearing`` holds
  ``"recording": bool`` (show everyone the recording indicator) and ``"record": bool`` (planned).
  ``Person`` = ``{"id", "name", "kind", "side", "state", "subroom", "connected", "media"}``.
  ``peers`` are the participants to hold a peer connection with; the one with the smaller id
  sends the offer.
- ``signal``  ``{"from": int, "description"?: ..., "candidate"?: ...}``.
- ``chat``  ``{"id", "from", "name", "text", "at", "subroom"}``; ``chat_history`` on connect.
- ``media_state``  ``{"id", "media"}``; ``speaking`` ``{"id", "level"}``; ``quality``
  ``{"id", "rtt_ms", "loss"}`` — to those who see that participant.
- ``mute_request``  ``{"by": int}``; ``replaced`` ``{}``; ``removed`` ``{}``;
  ``hearing_ended`` ``{}``; ``error`` ``{"code", "message", "event"}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NAMESPACE = "/hearing"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Description(Payload):
    type: Literal["offer", "answer"]
    sdp: str = Field(max_length=100_000)


class Candidate(Payload):
    candidate: str = Field(max_length=2000)
    sdpMid: str | None = Field(default=None, max_length=100)  # noqa: N815 (WebRTC's name)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=100)  # noqa: N815
    usernameFragment: str | None = Field(default=None, max_length=256)  # noqa: N815


class Signal(Payload):
    to: int
    description: Description | None = None
    candidate: Candidate | None = None


class Chat(Payload):
    text: str = Field(min_length=1, max_length=2000)


class MediaState(Payload):
    audio: bool = True
    video: bool = True
    screen: bool = False
    hand: bool = False


class Speaking(Payload):
    level: float = Field(ge=0, le=1)


class Quality(Payload):
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000)
    loss: float | None = Field(default=None, ge=0, le=1)


class Empty(Payload):
    pass


class Target(Payload):
    participant_id: int


class CaucusStart(Payload):
    assignments: dict[int, str] | None = None


class Move(Payload):
    participant_id: int
    subroom: str = Field(min_length=1, max_length=40)


CLIENT_EVENTS: dict[str, type[Payload]] = {
    "signal": Signal,
    "chat": Chat,
    "media_state": MediaState,
    "speaking": Speaking,
    "quality": Quality,
    "leave": Empty,
    "admit": Target,
    "deny": Target,
    "remove": Target,
    "readmit": Target,
    "caucus_start": CaucusStart,
    "move": Move,
    "caucus_end": Empty,
    "mute": Target,
    "end_hearing": Empty,
    "recording_start": Empty,
    "recording_stop": Empty,
}

STAFF_EVENTS = frozenset(
    {
        "admit",
        "deny",
        "remove",
        "readmit",
        "caucus_start",
        "move",
        "caucus_end",
        "mute",
        "end_hearing",
        "recording_start",
        "recording_stop",
    }
)

SERVER_EVENTS = frozenset(
    {
        "sync",
        "signal",
        "chat",
        "chat_history",
        "media_state",
        "speaking",
        "quality",
        "mute_request",
        "replaced",
        "removed",
        "hearing_ended",
        "error",
    }
)
