"""Recording a hearing, with real parts: aiortc participants (and, in the browser test, Chromium)
send media through the real ``/hearing`` namespace; the mediator starts recording; the server
starts the real recorder process (``yuntiao record``), which joins receive-only, stores each
participant's audio and video and archives them (ffprobe, SHA-256, composite) when dismissed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cases.actor import Actor
from cases.audit import AuditAction, verify_chain
from cases.models import AuditEntry
from cases.uow import transaction
from config import Settings
from recordings import archive
from recordings.models import COMPOSITE_FILE, PARTICIPANT_FILE, TIMELINE_FILE, RecordingFile
from rooms import hearings
from rooms.invitations import issue_invitation
from server.recording import RECORDERS
from tests.conftest import TEST_FIELD_KEY, TEST_SECRET
from tests.rtc import Invite, RtcParticipant, loopback_only, wait_server_idle
from web.context import SETTINGS

MEDIATOR = "李静"
APPLICANT = "宜昌某家居用品有限公司"
RESPONDENT = "义乌某电子商务有限公司"

Make = Callable[..., RtcParticipant]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The recorder process offers only 127.0.0.1, like the test participants (media on loopback).
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        field_encryption_key=TEST_FIELD_KEY,
        seed_demo=False,
        recorder_host_addresses="127.0.0.1",
    )


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.fixture
async def participants(client: Any) -> AsyncIterator[Make]:
    made: list[RtcParticipant] = []

    def make(name: str, **options: Any) -> RtcParticipant:
        participant = RtcParticipant(name, **options)
        made.append(participant)
        return participant

    yield make
    for participant in made:
        await participant.close()
    await wait_server_idle(client)


async def recorded_hearing(
    client: Any, sessionmaker: Any, consent: dict[str, bool | None] | None = None
) -> tuple[int, dict[str, Invite]]:
    """A hearing of demo case 1 scheduled as recorded; every party read the notice and
    answered the recording question (``consent`` by name; default: agreed)."""
    from cases.intake import get_case

    consent = consent or {}
    secret = client.app[SETTINGS].secret_key
    async with transaction(sessionmaker) as session:
        case = await get_case(session, 1)
        hearing = await hearings.do_schedule_hearing(
            session,
            Actor.for_user(case.mediator),
            case,
            hearings.HearingInput(
                title="录像测试",
                scheduled_at=dt.datetime.now(dt.UTC),
                duration_minutes=60,
                record=True,
            ),
        )
        links = {}
        for p in hearing.participants:
            if not p.is_staff:
                actor = Actor("party", p.party_id)
                await hearings.do_acknowledge_rights(session, actor, p)
                answer = consent.get(p.display_name, True)
                if answer is not None:
                    await hearings.do_record_consent(session, actor, p, answer)
            links[p.display_name] = Invite(
                p.id, p.display_name, p.kind, p.side, issue_invitation(secret, hearing, p)
            )
        return hearing.id, links


async def _in_hearing(
    client: Any, links: dict[str, Invite], make: Make, names: tuple[str, ...]
) -> list[RtcParticipant]:
    url = str(client.make_url("/"))
    people = [make(name, video_size=(640, 480)) for name in names]
    for person in people:
        await person.connect(url, links[person.name].token)
    mediator = people[0]
    for person in people[1:]:
        await mediator.until(
            lambda p=person: any(
                x["id"] == links[p.name].id for x in mediator.view.get("lobby", [])
            ),
            what="lobby",
        )
        await mediator.emit("admit", {"participant_id": links[person.name].id})
    for person in people:
        for other in people:
            if other is not person:
                await person.frames_rising(links[other.name].id)
    return people


def _ffprobe(path: Path) -> dict[str, float]:
    """Duration of each stream kind in the file, decoded by ffprobe (not the container's claim)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration"]
        + ["-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    return {s["codec_type"]: float(data["format"]["duration"]) for s in data["streams"]}


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_recording_is_refused_until_everyone_present_agreed(
    client: Any, sessionmaker: Any, participants: Make
) -> None:
    _hearing_id, links = await recorded_hearing(client, sessionmaker, {APPLICANT: False})
    mediator, applicant = await _in_hearing(client, links, participants, (MEDIATOR, APPLICANT))
    assert mediator.view is not None
    assert mediator.view["not_recorded"] == [APPLICANT]
    await mediator.emit("recording_start")
    await mediator.until(lambda: bool(mediator.events["error"]), what="refusal")
    error = mediator.events["error"][0]
    assert error["code"] == "recording_consent_missing" and APPLICANT in error["message"]
    assert not mediator.view["hearing"]["recording"]
    # A party cannot start it either.
    await applicant.emit("recording_start")
    await applicant.until(lambda: bool(applicant.events["error"]), what="refusal")
    assert applicant.events["error"][0]["code"] == "not_allowed"


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_recorded_hearing_is_archived_per_participant_and_composed(
    client: Any, sessionmaker: Any, participants: Make
) -> None:
    hearing_id, links = await recorded_hearing(client, sessionmaker)
    mediator, applicant = await _in_hearing(client, links, participants, (MEDIATOR, APPLICANT))

    await mediator.emit("recording_start")
    for person in (mediator, applicant):
        await person.until(lambda p=person: p.view["hearing"]["recording"], what="indicator")
        # The recorder is nobody's visible participant and not in the mediator's lists.
        listed = {x["kind"] for x in person.view["participants"] + person.view.get("everyone", [])}
        assert "recorder" not in listed
    recorder_id = max(p.id for p in await _participants(sessionmaker, hearing_id))
    # Each participant gets a connection to the recorder and sends it media; wait for ~8 s of it.
    for person in (mediator, applicant):
        await person.until(lambda p=person: recorder_id in p.peer_ids, 20, "recorder peer")
        await person.until(
            lambda p=person: (
                (link := p.peers.get(recorder_id)) is not None
                and link.pc.connectionState == "connected"
            ),
            20,
            "recorder connected",
        )
    await asyncio.sleep(8)
    await mediator.emit("recording_stop")
    await mediator.until(lambda: not mediator.view["hearing"]["recording"], what="stopped")
    assert await client.app[RECORDERS].wait(hearing_id, 120) == 0

    settings = client.app[SETTINGS]
    root = settings.recordings_dir
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(RecordingFile).where(RecordingFile.hearing_id == hearing_id)
            )
        ).all()
        kinds = sorted(r.kind for r in rows)
        assert kinds == sorted([PARTICIPANT_FILE, PARTICIPANT_FILE, COMPOSITE_FILE, TIMELINE_FILE])
        for row in rows:
            assert archive.sha256_of(root / row.path) == (row.sha256, row.size)
        for row in rows:
            if row.kind == TIMELINE_FILE:
                continue
            streams = _ffprobe(root / row.path)
            assert set(streams) == {"audio", "video"}, (row.path, streams)
            assert 6 <= streams["video"] <= 12, (row.path, streams)
        names = {r.participant_name for r in rows if r.kind == PARTICIPANT_FILE}
        assert names == {MEDIATOR, APPLICANT}
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.case_id == 1).order_by(AuditEntry.seq)
            )
        ).all()
        assert AuditAction.RECORDING_STARTED in actions
        assert AuditAction.RECORDING_STOPPED in actions
        assert actions.count(AuditAction.RECORDING_ARCHIVED) == 4
        assert (await verify_chain(session)).ok
        report = await archive.verify(session, root, hearing_id)
        assert report.ok and report.checked == 4

    # A changed byte on disk is named by verify.
    victim = next(r for r in rows if r.kind == PARTICIPANT_FILE)
    path = root / victim.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    async with sessionmaker() as session:
        report = await archive.verify(session, root, hearing_id)
    assert not report.ok and victim.path in report.problems[0]


async def _participants(sessionmaker: Any, hearing_id: int) -> list[Any]:
    from rooms.models import HearingParticipant

    async with sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(HearingParticipant).where(HearingParticipant.hearing_id == hearing_id)
                )
            ).all()
        )
