"""Who receives what in a hearing (``rooms.routing``): the security core of caucus, checked on
every combination of sub-rooms, states and connections for six participants, against the rules
written out independently here, and against the plain isolation property: nobody who is not
staff ever receives anything from or about another sub-room."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest

from rooms import routing
from rooms.catalogue import (
    ADMITTED,
    AGENT,
    CLERK,
    DENIED,
    INVITED,
    LEFT,
    MEDIATOR,
    OBSERVER,
    PARTICIPANT_STATES,
    PARTY,
    REMOVED,
    STAFF_KINDS,
    WAITING,
)
from rooms.routing import Occupant, Snapshot

# The six seats of a typical hearing: mediator, clerk, applicant, respondent, the applicant's
# agent, an interpreter.
KINDS = {1: MEDIATOR, 2: CLERK, 3: PARTY, 4: PARTY, 5: AGENT, 6: OBSERVER}
IDS = tuple(KINDS)
ROOMS = ("main", "applicant", "respondent")
STATES = tuple(PARTICIPANT_STATES)


def snap(
    rooms: tuple[str, ...],
    states: tuple[str, ...] | None = None,
    connected: tuple[bool, ...] | None = None,
) -> Snapshot:
    states = states or (ADMITTED,) * len(IDS)
    connected = connected or (True,) * len(IDS)
    return Snapshot.of(
        Occupant(pid, KINDS[pid], state, room, conn)
        for pid, room, state, conn in zip(IDS, rooms, states, connected, strict=True)
    )


# ---- the rules, written out a second time ------------------------------------------------------


def oracle_media(s: Snapshot, a: int, b: int) -> bool:
    x, y = s.get(a), s.get(b)
    return (
        x is not None
        and y is not None
        and a != b
        and x.state == ADMITTED
        and y.state == ADMITTED
        and x.connected
        and y.connected
        and x.subroom == y.subroom
    )


def oracle_chat(s: Snapshot, sender: int) -> set[int]:
    x = s.get(sender)
    if x is None or x.state != ADMITTED:
        return set()
    return {o.id for o in s if o.state == ADMITTED and o.subroom == x.subroom}


def oracle_presence(s: Snapshot, about: int) -> set[int]:
    x = s.get(about)
    if x is None:
        return set()
    staff = {o.id for o in s if o.kind in STAFF_KINDS and o.state == ADMITTED}
    room = set()
    if x.state in (ADMITTED, LEFT, REMOVED):
        room = {o.id for o in s if o.state == ADMITTED and o.subroom == x.subroom}
    return (staff | room) - {about}


@dataclass(frozen=True)
class Outcome:
    """Everything routing decides for one snapshot, each function asked once."""

    chat: dict[int, frozenset[int]]
    presence: dict[int, frozenset[int]]
    media: dict[int, frozenset[int]]
    exchange: dict[tuple[int, int], bool]
    signal: dict[tuple[int, int], bool]
    lobby: frozenset[int]

    @classmethod
    def of(cls, s: Snapshot) -> Outcome:
        pairs = list(itertools.product(IDS, IDS))
        return cls(
            chat={a: routing.chat_recipients(s, a) for a in IDS},
            presence={a: routing.presence_recipients(s, a) for a in IDS},
            media={a: routing.media_peers(s, a) for a in IDS},
            exchange={(a, b): routing.can_exchange_media(s, a, b) for a, b in pairs},
            signal={(a, b): routing.may_signal(s, a, b) for a, b in pairs},
            lobby=routing.lobby_recipients(s),
        )


def check_against_oracle(s: Snapshot, out: Outcome) -> None:
    for a in IDS:
        assert out.chat[a] == oracle_chat(s, a), (s, a)
        assert out.presence[a] == oracle_presence(s, a), (s, a)
        assert out.media[a] == {b for b in IDS if oracle_media(s, a, b)}, (s, a)
        for b in IDS:
            assert out.exchange[a, b] == oracle_media(s, a, b), (s, a, b)
    assert out.signal == out.exchange
    assert out.lobby == {o.id for o in s if o.kind in STAFF_KINDS and o.state == ADMITTED}


# ---- the isolation property, stated without the rules --------------------------------------------


def check_isolation(s: Snapshot, out: Outcome) -> None:
    """Whatever the rules say in detail, these must hold for every snapshot."""
    by_id = {o.id: o for o in s}
    for a in IDS:
        sender = by_id[a]
        assert a not in out.presence[a] and a not in out.media[a]
        for b in IDS:
            receiver = by_id[b]
            received = {
                "chat": b in out.chat[a],
                "presence": b in out.presence[a],
                "media": b in out.media[a],
                "signal to": out.signal[a, b],
                "signal from": out.signal[b, a],
                "lobby": b in out.lobby,
            }
            # Someone not admitted receives nothing at all.
            if receiver.state != ADMITTED:
                assert not any(received.values()), (s, a, b, received)
            # Media, chat and signaling never cross sub-rooms, for staff neither.
            if sender.subroom != receiver.subroom:
                assert not (
                    received["chat"]
                    or received["media"]
                    or received["signal to"]
                    or received["signal from"]
                ), (s, a, b, received)
                # …and a non-staff receiver gets no presence from another sub-room either.
                if receiver.kind not in STAFF_KINDS:
                    assert not received["presence"], (s, a, b, received)
            # The lobby is for staff only.
            if receiver.kind not in STAFF_KINDS:
                assert not received["lobby"]
            # Media is mutual and needs both ends connected.
            if received["media"]:
                assert sender.connected and receiver.connected and a in out.media[b]


def check(s: Snapshot) -> None:
    out = Outcome.of(s)
    check_isolation(s, out)
    check_against_oracle(s, out)


# ---- exhaustive and sampled checks ---------------------------------------------------------------


def test_every_subroom_layout_and_connection_pattern() -> None:
    """All 3^6 layouts × 2^6 connection patterns, everyone admitted (46,656 snapshots)."""
    count = 0
    for rooms in itertools.product(ROOMS, repeat=len(IDS)):
        for connected in itertools.product((True, False), repeat=len(IDS)):
            s = snap(rooms, connected=connected)
            check(s)
            count += 1
    assert count == 3**6 * 2**6


@pytest.mark.parametrize(
    "rooms",
    [
        ("main",) * 6,
        ("applicant", "respondent", "applicant", "respondent", "applicant", "main"),
        ("respondent", "main", "applicant", "respondent", "applicant", "respondent"),
    ],
)
def test_every_state_combination(rooms: tuple[str, ...]) -> None:
    """All 6^6 combinations of admission states (46,656) for three layouts."""
    for states in itertools.product(STATES, repeat=len(IDS)):
        check(snap(rooms, states=states))


def test_random_snapshots_over_the_whole_space() -> None:
    """States, sub-rooms (four of them) and connections all varying at once, 20,000 draws."""
    rng = random.Random(20261123)
    rooms = (*ROOMS, "room-2")
    for _ in range(20_000):
        s = snap(
            tuple(rng.choice(rooms) for _ in IDS),
            tuple(rng.choice(STATES) for _ in IDS),
            tuple(rng.random() < 0.8 for _ in IDS),
        )
        check(s)


# ---- the situations of a real hearing, spelled out -----------------------------------------------


def test_caucus_with_mediator_on_the_applicant_side() -> None:
    #     mediator     clerk   applicant    respondent    agent        interpreter
    s = snap(("applicant", "main", "applicant", "respondent", "applicant", "respondent"))
    assert routing.media_peers(s, 1) == {3, 5}
    assert routing.media_peers(s, 4) == {6}
    assert routing.media_peers(s, 2) == set()  # the clerk waits alone in main
    assert routing.chat_recipients(s, 3) == {1, 3, 5}
    assert routing.chat_recipients(s, 4) == {4, 6}
    # The respondent's movements reach their room and both staff, not the applicant side.
    assert routing.presence_recipients(s, 4) == {1, 2, 6}
    # The clerk, alone in main, is seen by the mediator only (staff), not by any party.
    assert routing.presence_recipients(s, 2) == {1}
    assert not routing.may_signal(s, 1, 4) and not routing.may_signal(s, 3, 4)
    assert routing.may_signal(s, 1, 3) and routing.may_signal(s, 3, 1)


def test_mediator_moving_between_rooms() -> None:
    before = snap(("applicant", "main", "applicant", "respondent", "applicant", "respondent"))
    after = snap(("respondent", "main", "applicant", "respondent", "applicant", "respondent"))
    # Told: the applicant side (he leaves them), the respondent side (he arrives), the clerk.
    assert routing.presence_change_recipients(before, after, 1) == {2, 3, 4, 5, 6}
    assert routing.presence_recipients(after, 1) == {2, 4, 6}
    assert routing.media_peers(after, 1) == {4, 6}
    assert routing.media_peers(after, 3) == {5}


def test_party_moved_to_the_other_side_is_dropped_there_and_added_here() -> None:
    before = snap(("main", "main", "applicant", "respondent", "applicant", "main"))
    after = snap(("main", "main", "respondent", "respondent", "applicant", "main"))
    assert routing.presence_recipients(before, 3) == {1, 2, 5}
    assert routing.presence_recipients(after, 3) == {1, 2, 4}
    assert routing.presence_change_recipients(before, after, 3) == {1, 2, 4, 5}


def test_reconnecting_participant_keeps_chat_and_presence_but_not_media() -> None:
    s = snap(("main",) * 6, connected=(True, True, False, True, True, True))
    assert routing.media_peers(s, 3) == set()
    assert 3 not in routing.media_peers(s, 1)
    assert not routing.may_signal(s, 1, 3)
    assert 3 in routing.chat_recipients(s, 4)  # persisted, shown when they are back
    assert routing.presence_recipients(s, 3) == {1, 2, 4, 5, 6}  # others see "reconnecting"


def test_lobby_and_waiting_participants() -> None:
    s = snap(("main",) * 6, states=(ADMITTED, WAITING, WAITING, ADMITTED, INVITED, DENIED))
    assert routing.lobby_recipients(s) == {1}  # the clerk is waiting too: not yet staff on duty
    # Someone waiting is known to admitted staff only, never to the parties inside.
    assert routing.presence_recipients(s, 3) == {1}
    assert routing.chat_recipients(s, 3) == set()
    assert routing.media_peers(s, 3) == set()
    assert routing.chat_recipients(s, 4) == {1, 4}


def test_leaving_and_removal_are_told_to_the_room() -> None:
    s = snap(("main",) * 6, states=(ADMITTED, ADMITTED, LEFT, ADMITTED, REMOVED, ADMITTED))
    assert routing.presence_recipients(s, 3) == {1, 2, 4, 6}
    assert routing.presence_recipients(s, 5) == {1, 2, 4, 6}
    assert routing.media_peers(s, 1) == {2, 4, 6}


def test_unknown_participants_get_and_cause_nothing() -> None:
    s = snap(("main",) * 6)
    assert routing.chat_recipients(s, 99) == set()
    assert routing.presence_recipients(s, 99) == set()
    assert routing.media_peers(s, 99) == set()
    assert not routing.can_exchange_media(s, 1, 99)
    assert not routing.may_signal(s, 99, 1)
    assert routing.lobby_recipients(Snapshot()) == set()


def test_roster_is_the_inverse_of_presence() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        s = snap(
            tuple(rng.choice(ROOMS) for _ in IDS),
            tuple(rng.choice(STATES) for _ in IDS),
            tuple(rng.random() < 0.8 for _ in IDS),
        )
        for viewer in IDS:
            expected = {x for x in IDS if viewer in routing.presence_recipients(s, x)}
            assert routing.roster(s, viewer) == expected


def test_snapshot_refuses_duplicate_ids_and_is_immutable() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Snapshot.of([Occupant(1, PARTY, ADMITTED, "main", True)] * 2)
    s = snap(("main",) * 6)
    with pytest.raises(AttributeError):
        s.occupants = ()  # type: ignore[misc]
    assert s.get(3) == Occupant(3, PARTY, ADMITTED, "main", True)


# ---- the recorder ---------------------------------------------------------------------------------


def _recorded_hearing() -> Snapshot:
    from rooms.catalogue import RECORDER

    def seat(i: int, kind: str, room: str, recorded: bool) -> Occupant:
        return Occupant(
            id=i, kind=kind, state=ADMITTED, subroom=room, connected=True, recorded=recorded
        )

    return Snapshot.of(
        [
            seat(1, MEDIATOR, "applicant", True),
            seat(3, PARTY, "applicant", True),
            seat(4, PARTY, "respondent", True),
            seat(5, AGENT, "respondent", False),  # refused the recording
            seat(9, RECORDER, "main", False),
        ]
    )


def test_recorder_receives_every_consenting_participant_in_every_subroom() -> None:
    snapshot = _recorded_hearing()
    assert routing.media_peers(snapshot, 9) == {1, 3, 4}
    assert 9 in routing.media_peers(snapshot, 4) and 9 not in routing.media_peers(snapshot, 5)
    # The sides still cannot reach each other (the recorder only receives).
    assert routing.media_peers(snapshot, 3) == {1, 9}
    assert not routing.may_signal(snapshot, 3, 4)


def test_recorder_is_invisible_and_hears_no_chat_or_presence() -> None:
    snapshot = _recorded_hearing()
    for viewer in (1, 3, 4, 5):
        assert 9 not in routing.roster(snapshot, viewer)
    for about in (1, 3, 4, 5):
        assert 9 not in routing.presence_recipients(snapshot, about)
    assert 9 not in routing.chat_recipients(snapshot, 3)
    assert routing.chat_recipients(snapshot, 9) == frozenset()
    assert 9 not in routing.lobby_recipients(snapshot)
