"""Hearings: scheduling, the lobby (join, admit, deny, remove, re-admit), rights and recording
consent, private caucus (背对背调解) and chat.

Every ``do_*`` function changes state in the caller's transaction and writes its audit row there
too (``cases.audit.record``); the caller commits. Functions that change a hearing or its
participants first lock the hearing row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
transactions are already serialised by ``BEGIN IMMEDIATE``) and re-read what they decide on, so
two staff clicking "admit" and "deny" at once, or a join racing the end of the hearing, cannot
both win: the second sees the first's result and gets a ``Conflict``.

The admission ``state`` is stored and survives a dropped connection; being connected is the
transport's business. That is why a participant who reloads the page, loses the network, or
comes back after a server restart is still ``admitted`` and goes straight back into the same
sub-room without being admitted again. Only leaving for good (``do_leave``), removal or the end of
the hearing changes it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cases.actor import Actor
from cases.audit import AuditAction, record
from cases.catalogue import N_
from cases.errors import Conflict, Forbidden, Invalid, NotFound
from cases.lifecycle import ACCEPTED, IN_MEDIATION, NOTIFIED
from cases.models import Case, Party, User, utcnow
from rooms.access import check_control, check_office
from rooms.catalogue import (
    ADMITTED,
    AGENT,
    APPLICANT,
    CLERK,
    DENIED,
    ENDED,
    INVITED,
    LEFT,
    MAIN_ROOM,
    MAX_CHAT_CHARS,
    MEDIATOR,
    NEUTRAL,
    OBSERVER,
    OBSERVER_ROLES,
    OPEN,
    PARTY,
    RECORDER,
    REMOVED,
    RESPONDENT,
    SCHEDULED,
    SIDES,
    WAITING,
)
from rooms.models import Hearing, HearingMessage, HearingParticipant
from rooms.routing import Occupant, Snapshot

# A hearing can only take place while the case is open for mediation.
SCHEDULABLE_CASE_STATES = frozenset({ACCEPTED, NOTIFIED, IN_MEDIATION})
MAX_SCHEDULE_AHEAD = dt.timedelta(days=366)
MIN_DURATION_MINUTES = 10
MAX_DURATION_MINUTES = 8 * 60
# Browsers send to each other in a mesh: beyond ~6 the uplink of a home connection gives out
# (FIELD-NOTES). Admission stops there; scheduling allows a few spare invitations.
MAX_ADMITTED = 6
MAX_PARTICIPANTS = 12
MAX_SUBROOMS = 6  # distinct sub-rooms during a caucus, "main" included
SUBROOM_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# Parties and agents must have been told their rights (人民调解法 Art. 23–24) before joining.
RIGHTS_REQUIRED_KINDS = frozenset({PARTY, AGENT})
JOINABLE_STATES = frozenset({INVITED, WAITING, ADMITTED, LEFT})
REMOVABLE_STATES = frozenset({INVITED, WAITING, ADMITTED, LEFT})
CHAT_HISTORY_LIMIT = 500


@dataclass(frozen=True)
class ObserverInput:
    """Someone without a party role who attends: an interpreter, an expert, an observer."""

    name: str
    role: str = "observer"  # OBSERVER_ROLES
    side: str = NEUTRAL  # e.g. an interpreter for the respondent sits on the respondent side


@dataclass(frozen=True)
class HearingInput:
    scheduled_at: dt.datetime
    duration_minutes: int = 60
    title: str = ""
    record: bool = False
    observers: tuple[ObserverInput, ...] = ()
    clerk_ids: tuple[int, ...] = ()


# ---- loading and locking ------------------------------------------------------------------------


async def get_hearing(session: AsyncSession, hearing_id: int) -> Hearing:
    hearing = await session.get(Hearing, hearing_id)
    if hearing is None:
        raise NotFound(N_("No such hearing."), code="hearing_not_found")
    return hearing


async def hearings_of_case(session: AsyncSession, case_id: int) -> list[Hearing]:
    return list(
        (
            await session.scalars(
                select(Hearing)
                .where(Hearing.case_id == case_id)
                .order_by(Hearing.scheduled_at, Hearing.id)
            )
        ).all()
    )


async def _lock(session: AsyncSession, hearing_id: int) -> tuple[Hearing, Case]:
    """Lock the hearing row for the rest of the transaction and return it, participants and
    case freshly read (not whatever an earlier query left in the identity map)."""
    hearing = await session.scalar(
        select(Hearing)
        .where(Hearing.id == hearing_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if hearing is None:
        raise NotFound(N_("No such hearing."), code="hearing_not_found")
    case = await session.get(Case, hearing.case_id, populate_existing=True)
    if case is None:  # pragma: no cover - the foreign key guarantees it
        raise NotFound(N_("No such case."), code="case_not_found")
    return hearing, case


def _member(hearing: Hearing, participant_id: int) -> HearingParticipant:
    for participant in hearing.participants:
        if participant.id == participant_id:
            return participant
    raise NotFound(N_("No such participant in this hearing."), code="participant_not_found")


def _check_not_ended(hearing: Hearing) -> None:
    if hearing.status == ENDED:
        raise Conflict(N_("This hearing has ended."), code="hearing_ended")


def _check_open(hearing: Hearing) -> None:
    _check_not_ended(hearing)
    if hearing.status != OPEN:
        raise Conflict(N_("The hearing has not started yet."), code="hearing_not_open")


async def _audit(
    session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    case: Case,
    hearing: Hearing,
    participant: HearingParticipant | None = None,
    **details: object,
) -> None:
    if participant is None:
        object_type, object_id = "hearing", hearing.id
    else:
        object_type, object_id = "hearing_participant", participant.id
        details = {"participant": participant.display_name, "kind": participant.kind, **details}
    await record(
        session,
        actor,
        action,
        object_type=object_type,
        object_id=object_id,
        case_id=case.id,
        organisation_id=case.organisation_id,
        details={"hearing_id": hearing.id, **details},
    )


async def _open(
    session: AsyncSession, actor: Actor, case: Case, hearing: Hearing, now: dt.datetime
) -> None:
    """scheduled → open, the first time staff arrive or admit someone."""
    if hearing.status == SCHEDULED:
        hearing.status = OPEN
        hearing.opened_at = now
        await session.flush()
        await _audit(session, actor, AuditAction.HEARING_OPENED, case, hearing)


def _check_capacity(hearing: Hearing, participant: HearingParticipant, limit: int) -> None:
    admitted = sum(
        1
        for p in hearing.participants
        if p.state == ADMITTED and p.id != participant.id and p.kind != RECORDER
    )
    if admitted >= limit:
        raise Conflict(
            N_("The hearing is full (at most %(limit)s people at once)."),
            code="hearing_full",
            limit=limit,
        )


def _now(now: dt.datetime | None) -> dt.datetime:
    value = now or utcnow()
    if value.tzinfo is None:
        raise ValueError("naive now refused")
    return value


# ---- scheduling ---------------------------------------------------------------------------------


def check_hearing_input(data: HearingInput, now: dt.datetime) -> None:
    """Raise ``Invalid`` for a bad time, duration, title or observer."""
    if data.scheduled_at.tzinfo is None:
        raise Invalid(N_("Give the hearing time with its time zone."), code="naive_time")
    if not MIN_DURATION_MINUTES <= data.duration_minutes <= MAX_DURATION_MINUTES:
        raise Invalid(
            N_("A hearing lasts between %(min)s and %(max)s minutes."),
            code="invalid_duration",
            min=MIN_DURATION_MINUTES,
            max=MAX_DURATION_MINUTES,
        )
    if data.scheduled_at + dt.timedelta(minutes=data.duration_minutes) <= now:
        raise Invalid(
            N_("This hearing would be over already; choose a later time."), code="hearing_in_past"
        )
    # Nobody schedules a mediation session years ahead, and a date near the end of the
    # calendar would overflow when the links' expiry is computed.
    if data.scheduled_at > now + MAX_SCHEDULE_AHEAD:
        raise Invalid(
            N_("A hearing can be scheduled at most a year ahead."), code="hearing_too_far_ahead"
        )
    if len(data.title.strip()) > 200:
        raise Invalid(N_("The hearing title is too long."), code="title_too_long")
    for observer in data.observers:
        if not observer.name.strip() or len(observer.name.strip()) > 200:
            raise Invalid(N_("Every observer needs a name."), code="observer_name_required")
        if observer.role not in OBSERVER_ROLES:
            raise Invalid(
                N_("Unknown observer role: %(role)s"),
                code="invalid_observer_role",
                role=observer.role,
            )
        if observer.side not in SIDES:
            raise Invalid(N_("Unknown side: %(side)s"), code="invalid_side", side=observer.side)


def party_side(party: Party, parties: Iterable[Party]) -> str:
    """applicant / respondent for parties; an agent sits with the party they represent."""
    if party.role == "agent":
        principal = next((p for p in parties if p.id == party.represents_id), None)
        return party_side(principal, ()) if principal is not None else NEUTRAL
    return party.role if party.role in (APPLICANT, RESPONDENT) else NEUTRAL


async def do_schedule_hearing(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    data: HearingInput,
    now: dt.datetime | None = None,
) -> Hearing:
    """Schedule a hearing of ``case`` and invite its mediator, the given clerks, every party and
    agent of the case, and the observers; each participant gets their own link later
    (``rooms.invitations.issue_invitation``). Only the case's mediator or the mediation office,
    and only while the case is accepted, notified or in mediation. Audited
    (``hearing.scheduled``)."""
    now = _now(now)
    check_office(actor, case)
    check_hearing_input(data, now)
    if case.status not in SCHEDULABLE_CASE_STATES:
        raise Conflict(
            N_("A hearing can only be scheduled while the case is open for mediation."),
            code="case_not_schedulable",
        )
    if case.mediator_id is None:
        raise Conflict(N_("Assign a mediator before scheduling a hearing."), code="no_mediator")
    mediator = await session.get(User, case.mediator_id)
    if mediator is None:  # pragma: no cover - the foreign key guarantees it
        raise Conflict(N_("Assign a mediator before scheduling a hearing."), code="no_mediator")
    participants = [
        HearingParticipant(
            kind=MEDIATOR, user_id=mediator.id, display_name=mediator.display_name, side=NEUTRAL
        )
    ]
    for clerk_id in dict.fromkeys(data.clerk_ids):
        clerk = await session.get(User, clerk_id)
        if (
            clerk is None
            or clerk.role != "clerk"
            or not clerk.active
            or clerk.organisation_id != case.organisation_id
        ):
            raise Invalid(
                N_("Choose an active clerk of the case's organisation."), code="invalid_clerk"
            )
        participants.append(
            HearingParticipant(
                kind=CLERK, user_id=clerk.id, display_name=clerk.display_name, side=NEUTRAL
            )
        )
    parties = list(case.parties)
    for party in parties:
        participants.append(
            HearingParticipant(
                kind=AGENT if party.role == "agent" else PARTY,
                party_id=party.id,
                display_name=party.name,
                side=party_side(party, parties),
            )
        )
    for observer in data.observers:
        participants.append(
            HearingParticipant(
                kind=OBSERVER,
                display_name=observer.name.strip(),
                observer_role=observer.role,
                side=observer.side,
            )
        )
    if len(participants) > MAX_PARTICIPANTS:
        raise Invalid(
            N_("A hearing can have at most %(limit)s participants."),
            code="too_many_participants",
            limit=MAX_PARTICIPANTS,
        )
    hearing = Hearing(
        case_id=case.id,
        title=data.title.strip() or case.title,
        scheduled_at=data.scheduled_at,
        duration_minutes=data.duration_minutes,
        status=SCHEDULED,
        record=data.record,
        created_by_id=actor.id if actor.kind == "user" else None,
        created_at=now,
        participants=participants,
    )
    for participant in participants:
        participant.state = INVITED
        participant.subroom = MAIN_ROOM
        participant.invitation_version = 1
        participant.created_at = now
    session.add(hearing)
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.HEARING_SCHEDULED,
        case,
        hearing,
        title=hearing.title,
        scheduled_at=hearing.scheduled_at.isoformat(),
        duration_minutes=hearing.duration_minutes,
        record=hearing.record,
        participants=[
            {"id": p.id, "kind": p.kind, "name": p.display_name, "side": p.side}
            for p in participants
        ],
    )
    return hearing


# ---- joining and the lobby ----------------------------------------------------------------------


async def do_join(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    now: dt.datetime | None = None,
    *,
    max_admitted: int = MAX_ADMITTED,
) -> HearingParticipant:
    """A participant opens their link (``participant`` from ``read_invitation``).

    - staff go straight in (``admitted``) and open a scheduled hearing;
    - someone already ``admitted`` stays admitted, in the same sub-room: a reconnection needs no
      new admission;
    - ``invited`` / ``left`` / ``waiting`` → ``waiting`` (the lobby);
    - ``denied`` / ``removed`` → ``Forbidden`` (``participant_denied`` / ``participant_removed``);
      a mediator no longer assigned to the case → ``Forbidden`` (``mediator_replaced``);
      an ended hearing → ``Conflict`` (``hearing_ended``).

    Parties and agents must have acknowledged their rights first, and everyone but staff must
    have answered the recording question when the hearing is recorded. Audited
    (``hearing.participant_joined`` with from/to states)."""
    now = _now(now)
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    _check_not_ended(hearing)
    if participant.state == DENIED:
        raise Forbidden(
            N_(
                "The mediator did not admit you to this hearing. Please contact the "
                "mediation office."
            ),
            code="participant_denied",
        )
    if participant.state == REMOVED:
        raise Forbidden(
            N_(
                "You were removed from this hearing. You can come back only when the "
                "mediator admits you again."
            ),
            code="participant_removed",
        )
    if participant.kind == MEDIATOR and participant.user_id != case.mediator_id:
        # The case was re-assigned (回避): the old mediator's link must not let them sit in.
        raise Forbidden(
            N_("Another mediator has taken over this case, so this link no longer admits you."),
            code="mediator_replaced",
        )
    if participant.kind in RIGHTS_REQUIRED_KINDS and participant.rights_acknowledged_at is None:
        raise Conflict(
            N_("Please read and confirm the notice of your rights and obligations first."),
            code="rights_not_acknowledged",
        )
    if (
        hearing.record
        and not participant.is_staff
        and participant.kind != RECORDER
        and participant.recording_consent is None
    ):
        raise Conflict(
            N_("This hearing is recorded: please say whether you agree to the recording first."),
            code="recording_consent_required",
        )
    previous = participant.state
    if participant.kind == RECORDER and hearing.recording_since is None:
        raise Conflict(N_("This hearing is not being recorded."), code="not_recording")
    if participant.is_staff or participant.kind == RECORDER or previous == ADMITTED:
        target = ADMITTED
    else:
        target = WAITING
    if target == ADMITTED and previous != ADMITTED:
        _check_capacity(hearing, participant, max_admitted)
        participant.subroom_since = now
    participant.state = target
    participant.last_seen_at = now
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.PARTICIPANT_JOINED,
        case,
        hearing,
        participant,
        **{"from": previous, "to": target, "subroom": participant.subroom},
    )
    if participant.is_staff:
        await _open(session, actor, case, hearing, now)
    return participant


async def _admit(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    from_states: frozenset[str],
    *,
    by: HearingParticipant | None,
    subroom: str | None,
    now: dt.datetime | None,
    max_admitted: int,
) -> HearingParticipant:
    now = _now(now)
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    check_control(actor, case, hearing, by)
    _check_not_ended(hearing)
    if participant.state not in from_states:
        raise Conflict(
            N_("%(name)s cannot be admitted now (%(state)s)."),
            code="not_admissible",
            name=participant.display_name,
            state=participant.state,
        )
    target_room = check_subroom_name(subroom) if subroom is not None else participant.subroom
    _check_capacity(hearing, participant, max_admitted)
    previous = participant.state
    participant.state = ADMITTED
    participant.subroom = target_room
    participant.subroom_since = now
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.PARTICIPANT_ADMITTED,
        case,
        hearing,
        participant,
        **{"from": previous, "subroom": target_room},
    )
    await _open(session, actor, case, hearing, now)
    return participant


async def do_admit(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    *,
    by: HearingParticipant | None = None,
    subroom: str | None = None,
    now: dt.datetime | None = None,
    max_admitted: int = MAX_ADMITTED,
) -> HearingParticipant:
    """Let a waiting participant in (into ``subroom``, default their current one). Staff only
    (``by``: the staff participant acting, or the case's mediator as ``actor``). ``Conflict``
    ``not_admissible`` unless waiting — so a second click, or an admit racing a deny, fails.
    Audited (``hearing.participant_admitted``)."""
    return await _admit(
        session,
        actor,
        participant,
        frozenset({WAITING}),
        by=by,
        subroom=subroom,
        now=now,
        max_admitted=max_admitted,
    )


async def do_readmit(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    *,
    by: HearingParticipant | None = None,
    subroom: str | None = None,
    now: dt.datetime | None = None,
    max_admitted: int = MAX_ADMITTED,
) -> HearingParticipant:
    """Take back a denial or a removal: the participant is ``admitted`` again and their link
    lets them straight in. Staff only. Audited (``hearing.participant_admitted``, ``from``
    denied/removed)."""
    return await _admit(
        session,
        actor,
        participant,
        frozenset({DENIED, REMOVED}),
        by=by,
        subroom=subroom,
        now=now,
        max_admitted=max_admitted,
    )


async def _exclude(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    target: str,
    from_states: frozenset[str],
    action: AuditAction,
    by: HearingParticipant | None,
) -> HearingParticipant:
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    check_control(actor, case, hearing, by)
    _check_not_ended(hearing)
    if participant.kind == MEDIATOR:
        raise Conflict(
            N_("The mediator cannot be turned away from their own hearing."),
            code="cannot_exclude_mediator",
        )
    if by is not None and by.id == participant.id:
        raise Conflict(N_("Use “leave” to leave the hearing yourself."), code="cannot_exclude_self")
    if participant.state not in from_states:
        raise Conflict(
            N_("This is not possible while %(name)s is “%(state)s”."),
            code="illegal_participant_state",
            name=participant.display_name,
            state=participant.state,
        )
    previous = participant.state
    participant.state = target
    await session.flush()
    await _audit(session, actor, action, case, hearing, participant, **{"from": previous})
    return participant


async def do_deny(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    *,
    by: HearingParticipant | None = None,
) -> HearingParticipant:
    """Turn away a waiting participant; their link then only shows the refusal until staff
    re-admit them. Staff only; not the mediator. Audited (``hearing.participant_denied``)."""
    return await _exclude(
        session,
        actor,
        participant,
        DENIED,
        frozenset({WAITING}),
        AuditAction.PARTICIPANT_DENIED,
        by,
    )


async def do_remove(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    *,
    by: HearingParticipant | None = None,
) -> HearingParticipant:
    """Put a participant out of the hearing (from the lobby, the hearing, or before they came).
    They stay out — their link is refused — until re-admitted. The transport must disconnect
    them. Staff only; not the mediator. Audited (``hearing.participant_removed``)."""
    return await _exclude(
        session, actor, participant, REMOVED, REMOVABLE_STATES, AuditAction.PARTICIPANT_REMOVED, by
    )


async def do_leave(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    now: dt.datetime | None = None,
) -> HearingParticipant:
    """The participant leaves for good (the "leave" button, not a dropped connection): others
    see "left", and coming back means waiting for admission again. A no-op (not audited) unless
    waiting or admitted. Audited (``hearing.participant_left``)."""
    now = _now(now)
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    if participant.state not in (WAITING, ADMITTED):
        return participant
    previous = participant.state
    participant.state = LEFT
    participant.last_seen_at = now
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.PARTICIPANT_LEFT,
        case,
        hearing,
        participant,
        **{"from": previous},
    )
    return participant


async def do_touch(
    session: AsyncSession, participant: HearingParticipant, now: dt.datetime | None = None
) -> None:
    """Record that the participant's connection is alive (not audited: it is a heartbeat)."""
    participant.last_seen_at = _now(now)
    await session.flush()


# ---- rights and recording consent ---------------------------------------------------------------


async def do_acknowledge_rights(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    now: dt.datetime | None = None,
) -> HearingParticipant:
    """The participant confirms they read the notice of rights and obligations (权利义务告知,
    人民调解法 Art. 23–24). The first confirmation counts and is audited
    (``hearing.rights_acknowledged``); repeating it changes nothing."""
    now = _now(now)
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    _check_not_ended(hearing)
    if participant.rights_acknowledged_at is not None:
        return participant
    participant.rights_acknowledged_at = now
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.RIGHTS_ACKNOWLEDGED,
        case,
        hearing,
        participant,
        at=now.isoformat(),
    )
    return participant


async def do_record_consent(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    consent: bool,
) -> HearingParticipant:
    """Answer (or change the answer to) "do you agree to this hearing being recorded?".
    ``False`` is a valid answer: the participant still joins, and the recorder must leave them
    out. Every change is audited (``hearing.recording_consent``); the same answer again is not."""
    if not isinstance(consent, bool):
        raise Invalid(N_("Answer yes or no."), code="invalid_consent")
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    _check_not_ended(hearing)
    if participant.recording_consent is consent:
        return participant
    previous = participant.recording_consent
    participant.recording_consent = consent
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.RECORDING_CONSENT,
        case,
        hearing,
        participant,
        consent=consent,
        previous=previous,
        recorded=hearing.record,
    )
    return participant


# ---- caucus -------------------------------------------------------------------------------------


def check_subroom_name(name: object) -> str:
    """A sub-room name: lower-case ASCII letter first, then letters, digits, ``_`` or ``-``, at
    most 40 characters ("main", "applicant", "respondent", "room-2")."""
    if not isinstance(name, str) or not SUBROOM_RE.fullmatch(name):
        raise Invalid(
            N_(
                "A sub-room name uses lower-case letters, digits, “-” and “_” and starts "
                "with a letter."
            ),
            code="invalid_subroom",
        )
    return name


def propose_caucus(participants: Iterable[HearingParticipant]) -> dict[int, str]:
    """A starting point for the mediator: each side in its own room, staff with the applicant
    side (the mediator usually hears the applicant first), neutral participants in "main"."""
    proposal = {}
    for participant in participants:
        if participant.is_staff:
            proposal[participant.id] = APPLICANT
        elif participant.side in (APPLICANT, RESPONDENT):
            proposal[participant.id] = participant.side
        else:
            proposal[participant.id] = MAIN_ROOM
    return proposal


def check_caucus_assignments(hearing: Hearing, assignments: Mapping[int, str]) -> dict[int, str]:
    """Validate ``{participant_id: subroom}`` for ``hearing`` and return the complete layout:
    participants not named go to "main"."""
    known = {p.id for p in hearing.participants}
    layout = {}
    for participant_id, room in assignments.items():
        if (
            not isinstance(participant_id, int)
            or isinstance(participant_id, bool)
            or participant_id not in known
        ):
            raise Invalid(N_("No such participant in this hearing."), code="participant_not_found")
        layout[participant_id] = check_subroom_name(room)
    full = {p.id: layout.get(p.id, MAIN_ROOM) for p in hearing.participants}
    rooms = set(full.values())
    if rooms == {MAIN_ROOM}:
        raise Invalid(
            N_("Put at least one participant in a separate sub-room."), code="caucus_empty"
        )
    if len(rooms) > MAX_SUBROOMS:
        raise Invalid(
            N_("At most %(limit)s sub-rooms at once."), code="too_many_subrooms", limit=MAX_SUBROOMS
        )
    return full


def _place(participant: HearingParticipant, room: str, now: dt.datetime) -> bool:
    if participant.subroom == room:
        return False
    participant.subroom = room
    participant.subroom_since = now
    return True


async def do_start_caucus(
    session: AsyncSession,
    actor: Actor,
    hearing: Hearing,
    assignments: Mapping[int, str],
    *,
    by: HearingParticipant | None = None,
    now: dt.datetime | None = None,
) -> dict[int, str]:
    """Split the open hearing into sub-rooms: ``assignments`` maps participant ids to sub-room
    names; everyone not named is put in "main". Also re-arranges a caucus already under way.
    Returns the full layout. Staff only. Audited (``hearing.caucus_started``)."""
    now = _now(now)
    hearing, case = await _lock(session, hearing.id)
    check_control(actor, case, hearing, by)
    _check_open(hearing)
    layout = check_caucus_assignments(hearing, assignments)
    for participant in hearing.participants:
        _place(participant, layout[participant.id], now)
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.CAUCUS_STARTED,
        case,
        hearing,
        layout={str(pid): room for pid, room in sorted(layout.items())},
    )
    return layout


async def do_move(
    session: AsyncSession,
    actor: Actor,
    participant: HearingParticipant,
    subroom: str,
    *,
    by: HearingParticipant | None = None,
    now: dt.datetime | None = None,
) -> HearingParticipant:
    """Move a participant — typically the mediator themselves — to ``subroom`` (which may be a
    new one). Staff only. Audited (``hearing.caucus_moved``) unless already there."""
    now = _now(now)
    room = check_subroom_name(subroom)
    hearing, case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    check_control(actor, case, hearing, by)
    _check_open(hearing)
    previous = participant.subroom
    rooms = {p.subroom for p in hearing.participants if p.id != participant.id} | {room}
    if len(rooms) > MAX_SUBROOMS:
        raise Invalid(
            N_("At most %(limit)s sub-rooms at once."), code="too_many_subrooms", limit=MAX_SUBROOMS
        )
    if _place(participant, room, now):
        await session.flush()
        await _audit(
            session,
            actor,
            AuditAction.CAUCUS_MOVED,
            case,
            hearing,
            participant,
            **{"from": previous, "to": room},
        )
    return participant


async def do_end_caucus(
    session: AsyncSession,
    actor: Actor,
    hearing: Hearing,
    *,
    by: HearingParticipant | None = None,
    now: dt.datetime | None = None,
) -> Hearing:
    """Bring everyone back to "main". Staff only. Audited (``hearing.caucus_ended``)."""
    now = _now(now)
    hearing, case = await _lock(session, hearing.id)
    check_control(actor, case, hearing, by)
    _check_open(hearing)
    moved = [p.id for p in hearing.participants if _place(p, MAIN_ROOM, now)]
    await session.flush()
    await _audit(session, actor, AuditAction.CAUCUS_ENDED, case, hearing, moved=moved)
    return hearing


# ---- ending -------------------------------------------------------------------------------------


async def do_end_hearing(
    session: AsyncSession,
    actor: Actor,
    hearing: Hearing,
    *,
    by: HearingParticipant | None = None,
    now: dt.datetime | None = None,
) -> Hearing:
    """End the hearing for everyone: status ``ended``, everyone invited, waiting or admitted is
    ``left`` and back in "main" (denied and removed stay as they were, for the record). Links
    then only show "the hearing has ended". Staff only. Audited (``hearing.ended``)."""
    now = _now(now)
    hearing, case = await _lock(session, hearing.id)
    check_control(actor, case, hearing, by)
    _check_not_ended(hearing)
    present = []
    for participant in hearing.participants:
        if participant.state in (INVITED, WAITING, ADMITTED):
            if participant.state == ADMITTED:
                present.append(participant.id)
            participant.state = LEFT
        _place(participant, MAIN_ROOM, now)
    if hearing.recording_since is not None:
        await _stop_recording(session, actor, case, hearing, now, reason="hearing_ended")
    hearing.status = ENDED
    hearing.ended_at = now
    await session.flush()
    await _audit(session, actor, AuditAction.HEARING_ENDED, case, hearing, present_at_end=present)
    return hearing


# ---- recording ----------------------------------------------------------------------------------


def is_recorded(participant: HearingParticipant) -> bool:
    """Whether the recorder may take this participant's audio and video: staff record as part
    of their work; everyone else only after agreeing on the pre-join page."""
    return participant.is_staff or participant.recording_consent is True


def recording_blockers(hearing: Hearing) -> list[HearingParticipant]:
    """The people in the hearing right now who have not agreed to the recording: while there
    is one, the recording cannot start (the mediator is shown their names)."""
    return [
        p
        for p in hearing.participants
        if p.state == ADMITTED and p.kind != RECORDER and not is_recorded(p)
    ]


def recorder_of(hearing: Hearing) -> HearingParticipant | None:
    return next((p for p in hearing.participants if p.kind == RECORDER), None)


async def do_start_recording(
    session: AsyncSession,
    actor: Actor,
    hearing: Hearing,
    *,
    by: HearingParticipant | None = None,
    now: dt.datetime | None = None,
) -> HearingParticipant:
    """Start recording: only for a hearing scheduled as recorded, and only when everyone present
    has agreed (``recording_consent_missing`` names who has not). Returns the recorder's
    participant row (created once per hearing), whose link the recorder process joins with.
    Staff only. Audited (``hearing.recording_started``)."""
    now = _now(now)
    hearing, case = await _lock(session, hearing.id)
    check_control(actor, case, hearing, by)
    _check_not_ended(hearing)
    if not hearing.record:
        raise Conflict(
            N_(
                "This hearing was not scheduled as recorded, so the participants were not "
                "asked for their consent. Schedule a recorded hearing to record."
            ),
            code="recording_not_planned",
        )
    if hearing.recording_since is not None:
        raise Conflict(N_("The hearing is already being recorded."), code="already_recording")
    blockers = recording_blockers(hearing)
    if blockers:
        raise Conflict(
            N_(
                "The recording cannot start: %(names)s did not agree to it. Ask them, or "
                "continue without recording."
            ),
            code="recording_consent_missing",
            names="、".join(p.display_name for p in blockers),
        )
    recorder = recorder_of(hearing)
    if recorder is None:
        recorder = HearingParticipant(
            kind=RECORDER, display_name="录像", side=NEUTRAL, state=INVITED, subroom=MAIN_ROOM
        )
        hearing.participants.append(recorder)
    else:
        recorder.state = INVITED
    hearing.recording_since = now
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.RECORDING_STARTED,
        case,
        hearing,
        recorded=[p.id for p in hearing.participants if p.state == ADMITTED and is_recorded(p)],
    )
    return recorder


async def do_stop_recording(
    session: AsyncSession,
    actor: Actor,
    hearing: Hearing,
    *,
    by: HearingParticipant | None = None,
    now: dt.datetime | None = None,
) -> Hearing:
    """Stop recording (staff only; ending the hearing stops it too). Audited
    (``hearing.recording_stopped``)."""
    now = _now(now)
    hearing, case = await _lock(session, hearing.id)
    check_control(actor, case, hearing, by)
    if hearing.recording_since is None:
        raise Conflict(N_("The hearing is not being recorded."), code="not_recording")
    await _stop_recording(session, actor, case, hearing, now, reason="stopped")
    return hearing


async def _stop_recording(
    session: AsyncSession,
    actor: Actor,
    case: Case,
    hearing: Hearing,
    now: dt.datetime,
    *,
    reason: str,
) -> None:
    started = hearing.recording_since
    hearing.recording_since = None
    recorder = recorder_of(hearing)
    if recorder is not None:
        recorder.state = LEFT
    await session.flush()
    await _audit(
        session,
        actor,
        AuditAction.RECORDING_STOPPED,
        case,
        hearing,
        reason=reason,
        seconds=round((now - started).total_seconds()) if started else None,
    )


# ---- chat ---------------------------------------------------------------------------------------


def check_chat_text(text: object) -> str:
    """The text as it will be stored: trimmed, 1–2000 characters. Not escaped — pages escape."""
    if not isinstance(text, str):
        raise Invalid(N_("A message is text."), code="invalid_message")
    text = text.strip()
    if not text:
        raise Invalid(N_("The message is empty."), code="message_empty")
    if len(text) > MAX_CHAT_CHARS:
        raise Invalid(
            N_("A message has at most %(limit)s characters."),
            code="message_too_long",
            limit=MAX_CHAT_CHARS,
        )
    return text


async def do_post_message(
    session: AsyncSession,
    participant: HearingParticipant,
    text: str,
    now: dt.datetime | None = None,
) -> HearingMessage:
    """Store a chat line in the sender's current sub-room; deliver it to
    ``routing.chat_recipients`` of a snapshot taken after this call. Only admitted participants
    of an open hearing. Not audited: the message table is its own record."""
    now = _now(now)
    text = check_chat_text(text)
    hearing, _case = await _lock(session, participant.hearing_id)
    participant = _member(hearing, participant.id)
    _check_open(hearing)
    if participant.state != ADMITTED:
        raise Forbidden(
            N_("Only participants in the hearing can send messages."), code="not_admitted"
        )
    message = HearingMessage(
        hearing_id=hearing.id,
        participant_id=participant.id,
        subroom=participant.subroom,
        text=text,
        at=now,
    )
    session.add(message)
    await session.flush()
    return message


async def chat_history(
    session: AsyncSession, participant: HearingParticipant, limit: int = CHAT_HISTORY_LIMIT
) -> list[HearingMessage]:
    """The chat a (re)connecting participant may see, oldest first (the last ``limit``):

    - staff: every message of the hearing, from every sub-room;
    - anyone else who is admitted: their own messages, and the messages of their current
      sub-room posted since they last entered it — exactly what ``chat_recipients`` delivered
      to them live, so a caucus conversation never shows up later in another side's history;
    - anyone not admitted: nothing.
    """
    participant = (
        await session.get(HearingParticipant, participant.id, populate_existing=True) or participant
    )
    query = select(HearingMessage).where(HearingMessage.hearing_id == participant.hearing_id)
    if not participant.is_staff:
        if participant.state != ADMITTED or participant.subroom_since is None:
            return []
        query = query.where(
            or_(
                HearingMessage.participant_id == participant.id,
                (HearingMessage.subroom == participant.subroom)
                & (HearingMessage.at >= participant.subroom_since),
            )
        )
    elif participant.state != ADMITTED:
        return []
    rows = (
        await session.scalars(
            query.order_by(HearingMessage.at.desc(), HearingMessage.id.desc()).limit(limit)
        )
    ).all()
    return list(reversed(rows))


# ---- snapshots for routing ----------------------------------------------------------------------


def snapshot_of(participants: Iterable[HearingParticipant], connected: Collection[int]) -> Snapshot:
    """The routing snapshot of ``participants``; ``connected`` holds the ids with a live socket
    (the transport's knowledge)."""
    return Snapshot.of(
        Occupant(
            id=p.id,
            kind=p.kind,
            state=p.state,
            subroom=p.subroom,
            connected=p.id in connected,
            recorded=is_recorded(p),
        )
        for p in participants
    )


async def load_snapshot(
    session: AsyncSession, hearing_id: int, connected: Collection[int]
) -> Snapshot:
    """Read the participants of ``hearing_id`` fresh from the database and snapshot them."""
    participants = (
        await session.scalars(
            select(HearingParticipant)
            .where(HearingParticipant.hearing_id == hearing_id)
            .order_by(HearingParticipant.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    return snapshot_of(participants, connected)
