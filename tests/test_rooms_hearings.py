"""Hearings on the real database (SQLite and PostgreSQL): scheduling for the demo case,
invitation links (valid, expired, forged, revoked), the lobby (join, admit, deny, remove,
re-admit, reconnection without re-admission), rights and recording consent, caucus, chat and the
end of the hearing — each change with its audit row, and illegal steps refused with the right
error."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from cases.actor import Actor
from cases.audit import AuditAction, verify_chain
from cases.errors import Conflict, DomainError, Forbidden, Invalid
from cases.lifecycle import do_transition
from cases.models import AuditEntry, Case, User, utcnow
from cases.uow import transaction
from rooms import hearings as H
from rooms import invitations, routing
from rooms.access import participant_actor
from rooms.catalogue import (
    ADMITTED,
    DENIED,
    ENDED,
    INVITED,
    LEFT,
    OPEN,
    REMOVED,
    SCHEDULED,
    WAITING,
)
from rooms.errors import InvitationError
from rooms.models import Hearing, HearingMessage, HearingParticipant
from tests.conftest import TEST_SECRET

NOW = dt.datetime(2026, 11, 24, 1, 30, tzinfo=dt.UTC)  # 09:30 in Yichang
START = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
APPLICANT_CO = "宜昌某家居用品有限公司"
RESPONDENT_CO = "义乌某电子商务有限公司"
RESPONDENT_LIU = "刘某"
AGENT_ZHAO = "赵律师"
INTERPRETER = "王翻译"


# ---- helpers --------------------------------------------------------------------------------------


async def user_actor(session: Any, username: str) -> Actor:
    user = await session.scalar(select(User).where(User.username == username))
    return Actor.for_user(user, ip="127.0.0.1", user_agent="pytest")


async def schedule(sessionmaker: Any, **changes: Any) -> int:
    """Schedule a hearing of demo case 1 as its mediator; returns the hearing id."""
    data = H.HearingInput(
        scheduled_at=START,
        duration_minutes=90,
        observers=(H.ObserverInput(INTERPRETER, "interpreter", "respondent"),),
    )
    data = dataclasses.replace(data, **changes)
    async with transaction(sessionmaker) as session:
        case = await session.get(Case, 1)
        hearing = await H.do_schedule_hearing(
            session, await user_actor(session, "mediator"), case, data, now=NOW
        )
        return hearing.id


async def people(sessionmaker: Any, hearing_id: int) -> dict[str, HearingParticipant]:
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(HearingParticipant).where(HearingParticipant.hearing_id == hearing_id)
            )
        ).all()
    return {p.display_name: p for p in rows}


async def act(
    sessionmaker: Any,
    fn: Any,
    name: str,
    hearing_id: int,
    *args: Any,
    by: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``fn(session, actor, participant, …)`` for the participant called ``name`` in its
    own transaction; ``by`` names the staff participant acting (else the participant acts)."""
    async with transaction(sessionmaker) as session:
        rows = (
            await session.scalars(
                select(HearingParticipant).where(HearingParticipant.hearing_id == hearing_id)
            )
        ).all()
        named = {p.display_name: p for p in rows}
        target = named[name]
        if by is None:
            return await fn(session, participant_actor(target), target, *args, **kwargs)
        staff = named[by]
        return await fn(session, participant_actor(staff), target, *args, by=staff, **kwargs)


async def hearing_act(
    sessionmaker: Any, fn: Any, hearing_id: int, *args: Any, by: str = "李静", **kwargs: Any
) -> Any:
    async with transaction(sessionmaker) as session:
        hearing = await session.get(Hearing, hearing_id)
        staff = next(p for p in hearing.participants if p.display_name == by)
        return await fn(session, participant_actor(staff), hearing, *args, by=staff, **kwargs)


async def ready(sessionmaker: Any, hearing_id: int, *names: str) -> None:
    """Parties confirm their rights; the mediator opens the hearing; the named ones are admitted."""
    await act(sessionmaker, H.do_join, "李静", hearing_id, now=NOW)
    for name in names:
        await act(sessionmaker, H.do_acknowledge_rights, name, hearing_id, now=NOW)
        await act(sessionmaker, H.do_join, name, hearing_id, now=NOW)
        await act(sessionmaker, H.do_admit, name, hearing_id, by="李静", now=NOW)


async def actions(sessionmaker: Any, *wanted: AuditAction) -> list[AuditEntry]:
    async with sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.action.in_([str(a) for a in wanted]))
                    .order_by(AuditEntry.seq)
                )
            ).all()
        )


async def states(sessionmaker: Any, hearing_id: int) -> dict[str, tuple[str, str]]:
    return {n: (p.state, p.subroom) for n, p in (await people(sessionmaker, hearing_id)).items()}


def code_of(excinfo: pytest.ExceptionInfo[DomainError]) -> str:
    return excinfo.value.code


# ---- scheduling -----------------------------------------------------------------------------------


async def test_schedule_invites_mediator_parties_agent_and_observer(
    sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    assert "mediator" in demo_logins
    hearing_id = await schedule(sessionmaker, record=True)
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        assert hearing.status == SCHEDULED and hearing.record
        assert hearing.title == "外观设计专利侵权纠纷（跨三省）"
        assert hearing.scheduled_at == START and hearing.scheduled_at.tzinfo is not None
        seats = {p.display_name: (p.kind, p.side, p.state, p.subroom) for p in hearing.participants}
    assert seats == {
        "李静": ("mediator", "neutral", INVITED, "main"),
        APPLICANT_CO: ("party", "applicant", INVITED, "main"),
        RESPONDENT_CO: ("party", "respondent", INVITED, "main"),
        RESPONDENT_LIU: ("party", "respondent", INVITED, "main"),
        AGENT_ZHAO: ("agent", "applicant", INVITED, "main"),  # sits with the party represented
        INTERPRETER: ("observer", "respondent", INVITED, "main"),
    }
    [entry] = await actions(sessionmaker, AuditAction.HEARING_SCHEDULED)
    assert entry.case_id == 1 and entry.actor_label == "mediator" and entry.ip == "127.0.0.1"
    assert len(entry.details_dict()["participants"]) == 6


async def test_the_office_may_schedule_but_not_another_mediator(sessionmaker: Any) -> None:
    data = H.HearingInput(scheduled_at=START, clerk_ids=(0,))
    async with sessionmaker() as session:
        case = await session.get(Case, 1)
        clerk = await session.scalar(select(User).where(User.username == "clerk"))
        with pytest.raises(Forbidden) as excinfo:
            await H.do_schedule_hearing(
                session,
                await user_actor(session, "mediator2"),
                case,
                H.HearingInput(scheduled_at=START),
                now=NOW,
            )
        assert code_of(excinfo) == "not_case_staff"
        with pytest.raises(Invalid) as excinfo:
            await H.do_schedule_hearing(
                session, await user_actor(session, "clerk"), case, data, now=NOW
            )
        assert code_of(excinfo) == "invalid_clerk"
    async with transaction(sessionmaker) as session:
        case = await session.get(Case, 1)
        hearing = await H.do_schedule_hearing(
            session,
            await user_actor(session, "clerk"),
            case,
            H.HearingInput(scheduled_at=START, clerk_ids=(clerk.id,)),
            now=NOW,
        )
        assert [p.kind for p in hearing.participants][:2] == ["mediator", "clerk"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (H.HearingInput(scheduled_at=START.replace(tzinfo=None)), "naive_time"),
        (H.HearingInput(scheduled_at=START, duration_minutes=5), "invalid_duration"),
        (H.HearingInput(scheduled_at=NOW - dt.timedelta(hours=3)), "hearing_in_past"),
        (
            H.HearingInput(scheduled_at=START, observers=(H.ObserverInput(" "),)),
            "observer_name_required",
        ),
        (
            H.HearingInput(scheduled_at=START, observers=(H.ObserverInput("X", "judge"),)),
            "invalid_observer_role",
        ),
    ],
)
async def test_bad_schedules_are_refused(
    sessionmaker: Any, data: H.HearingInput, code: str
) -> None:
    async with sessionmaker() as session:
        case = await session.get(Case, 1)
        with pytest.raises(Invalid) as excinfo:
            await H.do_schedule_hearing(
                session, await user_actor(session, "mediator"), case, data, now=NOW
            )
    assert code_of(excinfo) == code


async def test_no_hearing_for_a_case_that_is_no_longer_in_mediation(sessionmaker: Any) -> None:
    async with transaction(sessionmaker) as session:
        case = await session.get(Case, 1)
        await do_transition(
            session, await user_actor(session, "mediator"), case, "failed", reason="当事人拒绝调解"
        )
    async with sessionmaker() as session:
        case = await session.get(Case, 1)
        with pytest.raises(Conflict) as excinfo:
            await H.do_schedule_hearing(
                session,
                await user_actor(session, "mediator"),
                case,
                H.HearingInput(scheduled_at=START),
                now=NOW,
            )
    assert code_of(excinfo) == "case_not_schedulable"


# ---- invitation links ---------------------------------------------------------------------------


async def test_links_valid_expired_forged_and_revoked(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        seats = {p.display_name: p for p in hearing.participants}
        liu, zhao = seats[RESPONDENT_LIU], seats[AGENT_ZHAO]
        token = invitations.issue_invitation(TEST_SECRET, hearing, liu)
        short = invitations.issue_invitation(
            TEST_SECRET, hearing, zhao, expires_at=NOW + dt.timedelta(minutes=5)
        )
        assert invitations.default_expiry(hearing) == START + dt.timedelta(minutes=90, hours=24)

        # Valid until the scheduled end plus 24 hours, then expired.
        assert (await invitations.read_invitation(session, TEST_SECRET, token, NOW)).id == liu.id
        end = START + dt.timedelta(minutes=90, hours=24)
        await invitations.read_invitation(
            session, TEST_SECRET, token, end - dt.timedelta(seconds=1)
        )
        for late_token, at in ((token, end), (short, NOW + dt.timedelta(minutes=5))):
            with pytest.raises(InvitationError) as excinfo:
                await invitations.read_invitation(session, TEST_SECRET, late_token, at)
            assert code_of(excinfo) == "invitation_expired"
            assert "ask the mediation office for a new link" in str(excinfo.value)

        # Forged: another key, a changed character, garbage, or a signed payload that does not
        # match the database (wrong kind, another hearing's participant).
        ours = URLSafeTimedSerializer(TEST_SECRET, salt=invitations.SALT)
        forged = [
            invitations.issue_invitation("another-secret", hearing, liu),
            token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"),
            "not-a-token",
            "",
            "x" * 5000,
            ours.dumps(
                {
                    "c": 1,
                    "h": hearing_id,
                    "p": liu.id,
                    "k": "mediator",
                    "v": 1,
                    "e": int(end.timestamp()),
                }
            ),
            ours.dumps(
                {
                    "c": 2,
                    "h": hearing_id,
                    "p": liu.id,
                    "k": "party",
                    "v": 1,
                    "e": int(end.timestamp()),
                }
            ),
            ours.dumps(
                {
                    "c": 1,
                    "h": hearing_id,
                    "p": 10_000,
                    "k": "party",
                    "v": 1,
                    "e": int(end.timestamp()),
                }
            ),
            ours.dumps(
                {
                    "c": 1,
                    "h": hearing_id,
                    "p": liu.id,
                    "k": "party",
                    "v": True,
                    "e": int(end.timestamp()),
                }
            ),
            ours.dumps(["c", 1]),
            # The same payload under another salt (a link of another kind, say) is not ours.
            URLSafeTimedSerializer(TEST_SECRET, salt="other").dumps(
                {
                    "c": 1,
                    "h": hearing_id,
                    "p": liu.id,
                    "k": "party",
                    "v": 1,
                    "e": int(end.timestamp()),
                }
            ),
        ]
        for bad in forged:
            with pytest.raises(InvitationError) as excinfo:
                # Checked even long after expiry: a forged link never claims to be "expired".
                await invitations.read_invitation(
                    session, TEST_SECRET, bad, end + dt.timedelta(days=30)
                )
            assert code_of(excinfo) == "invitation_invalid", bad
            assert excinfo.value.message.endswith("ask the mediation office for a new link.")

    # Revoked: a staff member bumps the version; the old link fails, a new one works.
    async with transaction(sessionmaker) as session:
        liu = await session.get(HearingParticipant, liu.id)
        with pytest.raises(Forbidden):
            await invitations.do_revoke_invitation(session, participant_actor(liu), liu)
        await invitations.do_revoke_invitation(session, await user_actor(session, "mediator"), liu)
        assert liu.invitation_version == 2
        fresh = invitations.issue_invitation(
            TEST_SECRET, await session.get(Hearing, hearing_id), liu
        )
    async with sessionmaker() as session:
        with pytest.raises(InvitationError) as excinfo:
            await invitations.read_invitation(session, TEST_SECRET, token, NOW)
        assert code_of(excinfo) == "invitation_revoked"
        assert (await invitations.read_invitation(session, TEST_SECRET, fresh, NOW)).id == liu.id
    [entry] = await actions(sessionmaker, AuditAction.INVITATION_REVOKED)
    assert entry.details_dict()["version"] == 2 and entry.object_id == str(liu.id)


def test_links_need_a_secret_and_aware_times() -> None:
    hearing = Hearing(id=1, case_id=1, scheduled_at=START, duration_minutes=60)
    participant = HearingParticipant(id=1, hearing_id=1, kind="party", invitation_version=1)
    with pytest.raises(ValueError, match="secret"):
        invitations.issue_invitation("", hearing, participant)
    with pytest.raises(ValueError, match="naive"):
        invitations.issue_invitation(
            "s", hearing, participant, expires_at=START.replace(tzinfo=None)
        )


# ---- joining and the lobby ----------------------------------------------------------------------


async def test_join_wait_admit_and_reconnect_without_readmission(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    # A party must confirm the notice of rights and obligations before joining.
    with pytest.raises(Conflict) as excinfo:
        await act(sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id, now=NOW)
    assert code_of(excinfo) == "rights_not_acknowledged"
    await act(sessionmaker, H.do_acknowledge_rights, RESPONDENT_LIU, hearing_id, now=NOW)
    await act(sessionmaker, H.do_acknowledge_rights, RESPONDENT_LIU, hearing_id, now=NOW)
    assert len(await actions(sessionmaker, AuditAction.RIGHTS_ACKNOWLEDGED)) == 1

    # Into the lobby; the hearing is still only scheduled.
    liu = await act(sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id, now=NOW)
    assert liu.state == WAITING
    # A party cannot admit anyone, themselves included.
    with pytest.raises(Forbidden) as excinfo:
        await act(sessionmaker, H.do_admit, RESPONDENT_LIU, hearing_id, by=RESPONDENT_LIU)
    assert code_of(excinfo) == "not_hearing_staff"

    # The mediator opens their link: straight in, and the hearing opens.
    mediator = await act(sessionmaker, H.do_join, "李静", hearing_id, now=NOW)
    assert mediator.state == ADMITTED
    async with sessionmaker() as session:
        assert (await session.get(Hearing, hearing_id)).status == OPEN
        snapshot = await H.load_snapshot(session, hearing_id, connected={mediator.id, liu.id})
    assert routing.lobby_recipients(snapshot) == {mediator.id}
    assert routing.presence_recipients(snapshot, liu.id) == {mediator.id}

    admitted = await act(sessionmaker, H.do_admit, RESPONDENT_LIU, hearing_id, by="李静", now=NOW)
    assert admitted.state == ADMITTED and admitted.subroom == "main"
    # A second click (or a second staff member) finds them admitted already.
    with pytest.raises(Conflict) as excinfo:
        await act(sessionmaker, H.do_admit, RESPONDENT_LIU, hearing_id, by="李静")
    assert code_of(excinfo) == "not_admissible"

    # The network drops, the page reloads, the server restarts: the link lets them straight back.
    for _ in range(3):
        back = await act(
            sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id, now=NOW + dt.timedelta(minutes=5)
        )
        assert back.state == ADMITTED and back.subroom == "main"
        assert back.last_seen_at == NOW + dt.timedelta(minutes=5)
    joined = await actions(sessionmaker, AuditAction.PARTICIPANT_JOINED)
    assert [(e.details_dict()["from"], e.details_dict()["to"]) for e in joined] == [
        (INVITED, WAITING),
        (INVITED, ADMITTED),
        (ADMITTED, ADMITTED),
        (ADMITTED, ADMITTED),
        (ADMITTED, ADMITTED),
    ]
    assert [e.actor_type for e in joined[:2]] == ["party", "user"]
    assert len(await actions(sessionmaker, AuditAction.PARTICIPANT_ADMITTED)) == 1
    assert len(await actions(sessionmaker, AuditAction.HEARING_OPENED)) == 1


async def test_the_case_mediator_signed_in_may_admit_without_a_link(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await act(sessionmaker, H.do_acknowledge_rights, APPLICANT_CO, hearing_id)
    await act(sessionmaker, H.do_join, APPLICANT_CO, hearing_id)
    async with transaction(sessionmaker) as session:
        seat = (await people(sessionmaker, hearing_id))[APPLICANT_CO]
        seat = await session.get(HearingParticipant, seat.id)
        with pytest.raises(Forbidden):
            await H.do_admit(session, await user_actor(session, "mediator2"), seat)
        with pytest.raises(Forbidden):  # the clerk is not a participant of this hearing
            await H.do_admit(session, await user_actor(session, "clerk"), seat)
        await H.do_admit(session, await user_actor(session, "mediator"), seat, subroom="applicant")
    assert (await states(sessionmaker, hearing_id))[APPLICANT_CO] == (ADMITTED, "applicant")


async def test_recorded_hearing_needs_an_answer_about_recording(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker, record=True)
    await act(sessionmaker, H.do_acknowledge_rights, AGENT_ZHAO, hearing_id)
    with pytest.raises(Conflict) as excinfo:
        await act(sessionmaker, H.do_join, AGENT_ZHAO, hearing_id)
    assert code_of(excinfo) == "recording_consent_required"
    # The interpreter has no rights notice to confirm, but is asked about recording too.
    with pytest.raises(Conflict) as excinfo:
        await act(sessionmaker, H.do_join, INTERPRETER, hearing_id)
    assert code_of(excinfo) == "recording_consent_required"
    # Refusing is an answer: they still join.
    await act(sessionmaker, H.do_record_consent, AGENT_ZHAO, hearing_id, False)
    assert (await act(sessionmaker, H.do_join, AGENT_ZHAO, hearing_id)).state == WAITING
    await act(sessionmaker, H.do_record_consent, AGENT_ZHAO, hearing_id, False)
    await act(sessionmaker, H.do_record_consent, AGENT_ZHAO, hearing_id, True)
    answers = [e.details_dict() for e in await actions(sessionmaker, AuditAction.RECORDING_CONSENT)]
    assert [(a["previous"], a["consent"]) for a in answers] == [(None, False), (False, True)]
    with pytest.raises(Invalid):
        await act(sessionmaker, H.do_record_consent, AGENT_ZHAO, hearing_id, "yes")


async def test_denied_participant_is_refused_until_readmitted(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id)
    await act(sessionmaker, H.do_acknowledge_rights, RESPONDENT_CO, hearing_id)
    await act(sessionmaker, H.do_join, RESPONDENT_CO, hearing_id)
    denied = await act(sessionmaker, H.do_deny, RESPONDENT_CO, hearing_id, by="李静")
    assert denied.state == DENIED
    with pytest.raises(Forbidden) as excinfo:
        await act(sessionmaker, H.do_join, RESPONDENT_CO, hearing_id)
    assert code_of(excinfo) == "participant_denied"
    # Only someone waiting can be denied.
    with pytest.raises(Conflict):
        await act(sessionmaker, H.do_deny, RESPONDENT_CO, hearing_id, by="李静")
    await act(sessionmaker, H.do_readmit, RESPONDENT_CO, hearing_id, by="李静")
    assert (await act(sessionmaker, H.do_join, RESPONDENT_CO, hearing_id)).state == ADMITTED
    [entry] = await actions(sessionmaker, AuditAction.PARTICIPANT_DENIED)
    assert entry.actor_type == "user" and entry.actor_label == "李静"
    assert entry.details_dict()["from"] == WAITING


async def test_removed_participant_stays_out_until_readmitted(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, RESPONDENT_LIU, APPLICANT_CO)
    removed = await act(sessionmaker, H.do_remove, RESPONDENT_LIU, hearing_id, by="李静")
    assert removed.state == REMOVED
    for _ in range(2):
        with pytest.raises(Forbidden) as excinfo:
            await act(sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id)
        assert code_of(excinfo) == "participant_removed"
    # Nobody removes the mediator, a party removes nobody, nothing is removed twice.
    with pytest.raises(Conflict) as excinfo:
        await act(sessionmaker, H.do_remove, "李静", hearing_id, by="李静")
    assert code_of(excinfo) == "cannot_exclude_mediator"
    with pytest.raises(Forbidden):
        await act(sessionmaker, H.do_remove, APPLICANT_CO, hearing_id, by=RESPONDENT_LIU)
    with pytest.raises(Conflict):
        await act(sessionmaker, H.do_remove, RESPONDENT_LIU, hearing_id, by="李静")
    async with sessionmaker() as session:
        snapshot = await H.load_snapshot(
            session, hearing_id, {p.id for p in (await people(sessionmaker, hearing_id)).values()}
        )
    liu = (await people(sessionmaker, hearing_id))[RESPONDENT_LIU]
    assert routing.media_peers(snapshot, liu.id) == set()
    assert routing.chat_recipients(snapshot, liu.id) == set()

    await act(sessionmaker, H.do_readmit, RESPONDENT_LIU, hearing_id, by="李静")
    back = await act(sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id)
    assert back.state == ADMITTED
    trail = await actions(
        sessionmaker, AuditAction.PARTICIPANT_REMOVED, AuditAction.PARTICIPANT_ADMITTED
    )
    assert [(e.action, e.details_dict()["from"]) for e in trail][-2:] == [
        ("hearing.participant_removed", ADMITTED),
        ("hearing.participant_admitted", REMOVED),
    ]


async def test_leaving_for_good_means_waiting_again(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, APPLICANT_CO)
    left = await act(sessionmaker, H.do_leave, APPLICANT_CO, hearing_id)
    assert left.state == LEFT
    await act(sessionmaker, H.do_leave, APPLICANT_CO, hearing_id)  # no-op, not audited
    assert len(await actions(sessionmaker, AuditAction.PARTICIPANT_LEFT)) == 1
    assert (await act(sessionmaker, H.do_join, APPLICANT_CO, hearing_id)).state == WAITING


async def test_admission_stops_when_the_mesh_is_full(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, APPLICANT_CO)
    await act(sessionmaker, H.do_acknowledge_rights, RESPONDENT_CO, hearing_id)
    await act(sessionmaker, H.do_join, RESPONDENT_CO, hearing_id)
    with pytest.raises(Conflict) as excinfo:
        await act(sessionmaker, H.do_admit, RESPONDENT_CO, hearing_id, by="李静", max_admitted=2)
    assert code_of(excinfo) == "hearing_full"
    assert (await states(sessionmaker, hearing_id))[RESPONDENT_CO] == (WAITING, "main")


async def test_admit_and_deny_at_the_same_moment_cannot_both_win(
    sessionmaker: Any, engine_name: str
) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id)
    await act(sessionmaker, H.do_acknowledge_rights, RESPONDENT_LIU, hearing_id)
    await act(sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id)
    # On PostgreSQL both transactions first read "waiting", then decide at the same instant.
    # (SQLite serialises whole write transactions, so there the second simply starts later.)
    barrier = asyncio.Barrier(2 if engine_name == "postgresql" else 1)

    async def decide(fn: Any) -> HearingParticipant:
        async with transaction(sessionmaker) as session:
            seats = {
                p.display_name: p
                for p in (
                    await session.scalars(
                        select(HearingParticipant).where(
                            HearingParticipant.hearing_id == hearing_id
                        )
                    )
                ).all()
            }
            if engine_name == "postgresql":
                assert seats[RESPONDENT_LIU].state == WAITING
            await barrier.wait()
            staff = seats["李静"]
            result: HearingParticipant = await fn(
                session, participant_actor(staff), seats[RESPONDENT_LIU], by=staff
            )
            return result

    results = await asyncio.gather(decide(H.do_admit), decide(H.do_deny), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], Conflict), results
    final = (await states(sessionmaker, hearing_id))[RESPONDENT_LIU][0]
    winner = next(r for r in results if not isinstance(r, BaseException))
    assert final == winner.state
    decided = await actions(
        sessionmaker, AuditAction.PARTICIPANT_ADMITTED, AuditAction.PARTICIPANT_DENIED
    )
    assert len(decided) == 1


# ---- caucus ---------------------------------------------------------------------------------------


async def test_caucus_start_move_end_with_audit_rows(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    # Not before the hearing is open (the mediator signed in, not yet through their link).
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        with pytest.raises(Conflict) as excinfo:
            await H.do_start_caucus(
                session,
                await user_actor(session, "mediator"),
                hearing,
                {hearing.participants[1].id: "applicant"},
            )
    assert code_of(excinfo) == "hearing_not_open"
    await ready(
        sessionmaker,
        hearing_id,
        APPLICANT_CO,
        RESPONDENT_CO,
        RESPONDENT_LIU,
        AGENT_ZHAO,
        INTERPRETER,
    )
    seats = await people(sessionmaker, hearing_id)
    ids = {name: p.id for name, p in seats.items()}
    proposal = H.propose_caucus(seats.values())
    assert proposal == {
        ids["李静"]: "applicant",
        ids[APPLICANT_CO]: "applicant",
        ids[AGENT_ZHAO]: "applicant",
        ids[RESPONDENT_CO]: "respondent",
        ids[RESPONDENT_LIU]: "respondent",
        ids[INTERPRETER]: "respondent",
    }

    # Validation: names, participants, an actual split, staff only.
    for bad, code in (
        ({ids[APPLICANT_CO]: "Applicant"}, "invalid_subroom"),
        ({ids[APPLICANT_CO]: "房间"}, "invalid_subroom"),
        ({ids[APPLICANT_CO]: "a" * 41}, "invalid_subroom"),
        ({10_000: "applicant"}, "participant_not_found"),
        ({ids[APPLICANT_CO]: "main"}, "caucus_empty"),
        ({str(ids[APPLICANT_CO]): "applicant"}, "participant_not_found"),
    ):
        with pytest.raises(Invalid) as excinfo:
            await hearing_act(sessionmaker, H.do_start_caucus, hearing_id, bad)
        assert code_of(excinfo) == code, bad
    with pytest.raises(Forbidden):
        await hearing_act(sessionmaker, H.do_start_caucus, hearing_id, proposal, by=APPLICANT_CO)

    layout = await hearing_act(sessionmaker, H.do_start_caucus, hearing_id, proposal)
    assert layout == proposal
    connected = set(ids.values())
    async with sessionmaker() as session:
        s = await H.load_snapshot(session, hearing_id, connected)
    applicant_side = {ids["李静"], ids[APPLICANT_CO], ids[AGENT_ZHAO]}
    respondent_side = {ids[RESPONDENT_CO], ids[RESPONDENT_LIU], ids[INTERPRETER]}
    assert routing.chat_recipients(s, ids[APPLICANT_CO]) == applicant_side
    assert routing.chat_recipients(s, ids[RESPONDENT_LIU]) == respondent_side
    assert routing.presence_recipients(s, ids[RESPONDENT_LIU]) == respondent_side - {
        ids[RESPONDENT_LIU]
    } | {ids["李静"]}

    # The mediator goes over to the respondent side.
    moved = await act(sessionmaker, H.do_move, "李静", hearing_id, "respondent", by="李静")
    assert moved.subroom == "respondent"
    with pytest.raises(Forbidden):  # a party cannot move anyone, themselves neither
        await act(sessionmaker, H.do_move, APPLICANT_CO, hearing_id, "respondent", by=APPLICANT_CO)
    async with sessionmaker() as session:
        s = await H.load_snapshot(session, hearing_id, connected)
    assert routing.media_peers(s, ids["李静"]) == respondent_side
    assert routing.media_peers(s, ids[APPLICANT_CO]) == {ids[AGENT_ZHAO]}

    await hearing_act(sessionmaker, H.do_end_caucus, hearing_id)
    assert {room for _, room in (await states(sessionmaker, hearing_id)).values()} == {"main"}
    trail = await actions(
        sessionmaker, AuditAction.CAUCUS_STARTED, AuditAction.CAUCUS_MOVED, AuditAction.CAUCUS_ENDED
    )
    assert [e.action for e in trail] == [
        "hearing.caucus_started",
        "hearing.caucus_moved",
        "hearing.caucus_ended",
    ]
    assert trail[0].details_dict()["layout"][str(ids[RESPONDENT_LIU])] == "respondent"
    assert trail[1].details_dict()["from"] == "applicant"
    assert trail[1].details_dict()["to"] == "respondent"
    assert sorted(trail[2].details_dict()["moved"]) == sorted(ids.values())


def test_no_more_subrooms_than_a_mesh_can_serve() -> None:
    hearing = Hearing(
        id=1,
        participants=[HearingParticipant(id=n, kind="party", subroom="main") for n in range(1, 9)],
    )
    with pytest.raises(Invalid) as excinfo:
        H.check_caucus_assignments(hearing, {n: f"room-{n}" for n in range(1, 8)})
    assert code_of(excinfo) == "too_many_subrooms"
    layout = H.check_caucus_assignments(hearing, {1: "applicant", 2: "respondent"})
    assert layout == {1: "applicant", 2: "respondent", **{n: "main" for n in range(3, 9)}}


async def test_reconnection_during_caucus_returns_to_the_same_subroom(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, RESPONDENT_LIU, APPLICANT_CO)
    ids = {n: p.id for n, p in (await people(sessionmaker, hearing_id)).items()}
    await hearing_act(
        sessionmaker,
        H.do_start_caucus,
        hearing_id,
        {
            ids[RESPONDENT_LIU]: "respondent",
            ids["李静"]: "applicant",
            ids[APPLICANT_CO]: "applicant",
        },
    )
    back = await act(sessionmaker, H.do_join, RESPONDENT_LIU, hearing_id)
    assert (back.state, back.subroom) == (ADMITTED, "respondent")


# ---- chat -----------------------------------------------------------------------------------------


async def post(sessionmaker: Any, name: str, hearing_id: int, text: str) -> HearingMessage:
    async with transaction(sessionmaker) as session:
        seat = (await people(sessionmaker, hearing_id))[name]
        seat = await session.get(HearingParticipant, seat.id)
        return await H.do_post_message(session, seat, text, now=utcnow())


async def history(sessionmaker: Any, name: str, hearing_id: int) -> list[str]:
    async with sessionmaker() as session:
        seat = (await people(sessionmaker, hearing_id))[name]
        return [m.text for m in await H.chat_history(session, seat)]


async def test_chat_is_stored_as_typed_and_caucus_chat_stays_in_its_room(
    sessionmaker: Any,
) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, APPLICANT_CO, RESPONDENT_LIU)
    ids = {n: p.id for n, p in (await people(sessionmaker, hearing_id)).items()}

    stored = await post(
        sessionmaker, APPLICANT_CO, hearing_id, "  <script>alert('x')</script> 我方同意调解 😀  "
    )
    assert stored.text == "<script>alert('x')</script> 我方同意调解 😀"  # trimmed, not escaped
    assert stored.subroom == "main"
    await post(sessionmaker, "李静", hearing_id, "好的")
    for bad, code in (("   ", "message_empty"), ("字" * 2001, "message_too_long")):
        with pytest.raises(Invalid) as excinfo:
            await post(sessionmaker, APPLICANT_CO, hearing_id, bad)
        assert code_of(excinfo) == code
    assert len((await post(sessionmaker, APPLICANT_CO, hearing_id, "字" * 2000)).text) == 2000
    # Someone not admitted cannot chat.
    with pytest.raises(Forbidden) as excinfo:
        await post(sessionmaker, RESPONDENT_CO, hearing_id, "hello")
    assert code_of(excinfo) == "not_admitted"

    await hearing_act(
        sessionmaker,
        H.do_start_caucus,
        hearing_id,
        {
            ids["李静"]: "applicant",
            ids[APPLICANT_CO]: "applicant",
            ids[RESPONDENT_LIU]: "respondent",
        },
    )
    await post(sessionmaker, APPLICANT_CO, hearing_id, "底线是二十万")
    await post(sessionmaker, RESPONDENT_LIU, hearing_id, "最多十万")
    assert "底线是二十万" not in await history(sessionmaker, RESPONDENT_LIU, hearing_id)
    await hearing_act(sessionmaker, H.do_end_caucus, hearing_id)

    # Back in main: nobody sees the other side's caucus chat, the mediator sees everything.
    liu_sees = await history(sessionmaker, RESPONDENT_LIU, hearing_id)
    applicant_sees = await history(sessionmaker, APPLICANT_CO, hearing_id)
    assert "底线是二十万" not in liu_sees and "最多十万" in liu_sees
    assert "最多十万" not in applicant_sees and "底线是二十万" in applicant_sees
    mediator_sees = await history(sessionmaker, "李静", hearing_id)
    assert {"底线是二十万", "最多十万", "好的"} <= set(mediator_sees)
    assert mediator_sees[0] == "<script>alert('x')</script> 我方同意调解 😀"

    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(HearingMessage)
                .where(HearingMessage.hearing_id == hearing_id)
                .order_by(HearingMessage.id)
            )
        ).all()
    assert [(m.subroom, m.participant_id) for m in rows][-2:] == [
        ("applicant", ids[APPLICANT_CO]),
        ("respondent", ids[RESPONDENT_LIU]),
    ]
    assert all(m.at.tzinfo is not None for m in rows)


# ---- the end ----------------------------------------------------------------------------------------


async def test_ending_the_hearing(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, APPLICANT_CO, RESPONDENT_LIU)
    ids = {n: p.id for n, p in (await people(sessionmaker, hearing_id)).items()}
    await act(sessionmaker, H.do_remove, RESPONDENT_LIU, hearing_id, by="李静")
    await hearing_act(sessionmaker, H.do_start_caucus, hearing_id, {ids[APPLICANT_CO]: "applicant"})
    with pytest.raises(Forbidden):
        await hearing_act(sessionmaker, H.do_end_hearing, hearing_id, by=APPLICANT_CO)
    ended = await hearing_act(sessionmaker, H.do_end_hearing, hearing_id)
    assert ended.status == ENDED and ended.ended_at is not None
    final = await states(sessionmaker, hearing_id)
    assert final[APPLICANT_CO] == (LEFT, "main")
    assert final["李静"] == (LEFT, "main")
    assert final[RESPONDENT_CO] == (LEFT, "main")  # was only invited
    assert final[RESPONDENT_LIU] == (REMOVED, "main")  # stays on record as removed

    for attempt in (
        lambda: act(sessionmaker, H.do_join, APPLICANT_CO, hearing_id),
        lambda: act(sessionmaker, H.do_join, "李静", hearing_id),
        lambda: hearing_act(sessionmaker, H.do_end_hearing, hearing_id),
        lambda: hearing_act(sessionmaker, H.do_end_caucus, hearing_id),
        lambda: post(sessionmaker, APPLICANT_CO, hearing_id, "还在吗"),
    ):
        with pytest.raises(DomainError) as excinfo:
            await attempt()
        assert code_of(excinfo) in ("hearing_ended", "not_hearing_staff")
    # Ended is ended even for the case's mediator signed in.
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        with pytest.raises(Conflict) as excinfo:
            await H.do_end_hearing(session, await user_actor(session, "mediator"), hearing)
        assert code_of(excinfo) == "hearing_ended"
    [entry] = await actions(sessionmaker, AuditAction.HEARING_ENDED)
    assert sorted(entry.details_dict()["present_at_end"]) == sorted(
        [ids["李静"], ids[APPLICANT_CO]]
    )

    # The link still opens (so the page can say "ended") until it expires.
    async with sessionmaker() as session:
        hearing = await session.get(Hearing, hearing_id)
        seat = next(p for p in hearing.participants if p.id == ids[APPLICANT_CO])
        token = invitations.issue_invitation(TEST_SECRET, hearing, seat)
        assert (await invitations.read_invitation(session, TEST_SECRET, token, NOW)).id == seat.id


async def test_a_reassigned_mediator_loses_control(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker)
    await ready(sessionmaker, hearing_id, APPLICANT_CO)
    async with transaction(sessionmaker) as session:
        case = await session.get(Case, 1)
        other = await session.scalar(select(User).where(User.username == "mediator2"))
        case.mediator_id = other.id
    with pytest.raises(Forbidden):
        await act(sessionmaker, H.do_remove, APPLICANT_CO, hearing_id, by="李静")
    with pytest.raises(Forbidden) as excinfo:
        await act(sessionmaker, H.do_join, "李静", hearing_id)
    assert code_of(excinfo) == "mediator_replaced"


async def test_the_trail_stays_intact(sessionmaker: Any) -> None:
    hearing_id = await schedule(sessionmaker, record=True)
    for name in (APPLICANT_CO, RESPONDENT_LIU):
        await act(sessionmaker, H.do_record_consent, name, hearing_id, True)
    await ready(sessionmaker, hearing_id, APPLICANT_CO, RESPONDENT_LIU)
    ids = {n: p.id for n, p in (await people(sessionmaker, hearing_id)).items()}
    await hearing_act(sessionmaker, H.do_start_caucus, hearing_id, {ids[RESPONDENT_LIU]: "r"})
    await hearing_act(sessionmaker, H.do_end_hearing, hearing_id)
    async with sessionmaker() as session:
        report = await verify_chain(session)
    assert report.ok, report
