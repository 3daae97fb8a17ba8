"""Who receives what in a hearing: pure functions over a snapshot of the participants.

This is the security core of caucus (背对背调解). The transport (signaling) builds a ``Snapshot``
from the database and its own connection table, asks these functions for recipients, and
delivers to exactly those — it never widens a set.

The rules:

- **media and signaling** flow only between two different participants who are both admitted,
  both connected, and in the same sub-room;
- **chat** goes to the admitted participants of the sender's sub-room (the sender included, so
  their own other tab shows it), and only an admitted sender can chat;
- **presence** (joined / reconnecting / left / moved) about a participant goes to the admitted
  participants of that participant's sub-room, plus admitted staff wherever they are: staff see
  who is where, but staff in another sub-room get *presence only*, never media or chat. Presence
  about someone who has not been admitted (invited, waiting, denied) goes to staff only;
- **lobby** events (someone is waiting) go to admitted staff only;
- the **recorder** (the platform's receive-only peer, present while a hearing is recorded)
  exchanges media with every admitted, connected participant who agreed to the recording, in
  every sub-room — it only receives, so nothing crosses sub-rooms through it — and is part of
  no roster, presence, chat or lobby.

Consequently a non-staff participant never receives media, chat, signaling or presence from or
about a participant in another sub-room, and someone not admitted receives nothing at all
(the transport answers them about their own state directly).

Recipient sets do not filter on ``connected`` except for media/signaling: whoever is not
connected simply has no socket to deliver to, and chat is persisted for them anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rooms.catalogue import ADMITTED, LEFT, RECORDER, REMOVED, STAFF_KINDS


@dataclass(frozen=True)
class Occupant:
    """One participant as routing sees them at one instant."""

    id: int
    kind: str
    state: str
    subroom: str
    connected: bool
    # Agreed to the recording (staff record as part of their work); a refusal keeps them out
    # of the recorder's reach.
    recorded: bool = False

    @property
    def is_staff(self) -> bool:
        return self.kind in STAFF_KINDS

    @property
    def is_recorder(self) -> bool:
        return self.kind == RECORDER

    @property
    def admitted(self) -> bool:
        return self.state == ADMITTED


@dataclass(frozen=True)
class Snapshot:
    """The participants of one hearing at one instant, by id. Build with ``Snapshot.of``."""

    occupants: tuple[Occupant, ...] = ()
    _by_id: dict[int, Occupant] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {o.id: o for o in self.occupants}
        if len(by_id) != len(self.occupants):
            raise ValueError("duplicate participant id in snapshot")
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def of(cls, occupants: Iterable[Occupant]) -> Snapshot:
        return cls(tuple(occupants))

    def get(self, participant_id: int) -> Occupant | None:
        return self._by_id.get(participant_id)

    def __iter__(self) -> Iterator[Occupant]:
        return iter(self.occupants)


Recipients = frozenset[int]


def can_exchange_media(snapshot: Snapshot, a: int, b: int) -> bool:
    """True when ``a`` and ``b`` may send each other audio/video (symmetric)."""
    if a == b:
        return False
    first, second = snapshot.get(a), snapshot.get(b)
    if first is None or second is None:
        return False
    both_live = first.admitted and second.admitted and first.connected and second.connected
    if first.is_recorder or second.is_recorder:
        other = second if first.is_recorder else first
        return both_live and not other.is_recorder and other.recorded
    return both_live and first.subroom == second.subroom


def may_signal(snapshot: Snapshot, from_id: int, to_id: int) -> bool:
    """Whether an offer/answer/ICE message may pass from ``from_id`` to ``to_id``: exactly when
    they may exchange media (signaling is what sets media up)."""
    return can_exchange_media(snapshot, from_id, to_id)


def media_peers(snapshot: Snapshot, participant_id: int) -> Recipients:
    """Everyone ``participant_id`` should hold a peer connection with right now."""
    return frozenset(o.id for o in snapshot if can_exchange_media(snapshot, participant_id, o.id))


def chat_recipients(snapshot: Snapshot, sender_id: int) -> Recipients:
    """Admitted participants in the sender's sub-room, sender included; empty unless the sender
    is admitted."""
    sender = snapshot.get(sender_id)
    if sender is None or not sender.admitted or sender.is_recorder:
        return frozenset()
    return frozenset(
        o.id for o in snapshot if o.admitted and not o.is_recorder and o.subroom == sender.subroom
    )


def _visible_to_subroom(about: Occupant) -> bool:
    """Whether the sub-room of ``about`` hears of them: while admitted, and when they leave or
    are removed (their tile must go). Someone invited, waiting or denied was never in a room."""
    return about.state in (ADMITTED, LEFT, REMOVED)


def presence_recipients(snapshot: Snapshot, about_id: int) -> Recipients:
    """Who is told about a change of ``about_id`` (never ``about_id`` itself)."""
    about = snapshot.get(about_id)
    if about is None or about.is_recorder:
        return frozenset()
    recipients = set()
    for other in snapshot:
        if other.id == about_id or not other.admitted or other.is_recorder:
            continue
        if other.is_staff or (_visible_to_subroom(about) and other.subroom == about.subroom):
            recipients.add(other.id)
    return frozenset(recipients)


def presence_change_recipients(before: Snapshot, after: Snapshot, about_id: int) -> Recipients:
    """For a change that moves ``about_id`` (sub-room or state): those who saw them before (to
    drop them) and those who see them after (to add them). Send the *new* details only to
    ``presence_recipients(after, …)``; the others get a plain "gone"."""
    return presence_recipients(before, about_id) | presence_recipients(after, about_id)


def lobby_recipients(snapshot: Snapshot) -> Recipients:
    """Who sees the waiting room: admitted staff, in whichever sub-room."""
    return frozenset(o.id for o in snapshot if o.admitted and o.is_staff)


def roster(snapshot: Snapshot, viewer_id: int) -> Recipients:
    """The participants ``viewer_id`` may see listed (the inverse of ``presence_recipients``):
    what the transport sends a participant when they (re)connect."""
    return frozenset(o.id for o in snapshot if viewer_id in presence_recipients(snapshot, o.id))
