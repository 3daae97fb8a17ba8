"""Recording a hearing, with real parts: aiortc participants (and, in the browser test, Chromium)
send media through the real ``/hearing`` namespace; the mediator starts recording; the server
starts the real recorder process (``yuntiao record``), which joins receive-only, stores each
participant's audio and video and archives them (ffprobe, SHA-256, composite) when dismissed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from collections.abc import Iterator
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
from tests.rtc import (
    Invite,
    Make,
    RtcParticipant,
    loopback_only,
)
from web.context import SESSIONMAKER, SETTINGS

MEDIATOR = "李静"
APPLICANT = "宜昌某家居用品有限公司"
RESPONDENT = "义乌某电子商务有限公司"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The recorder process offers only 127.0.0.1, like the test participants (media on loopback).
    return {"recorder_host_addresses": "127.0.0.1"}


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    with loopback_only():
        yield


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
    # The finished recorder is reaped by the server itself, not left a zombie process.
    recorder = client.app[RECORDERS].running[hearing_id]
    for _ in range(1200):
        if recorder.returncode is not None:
            break
        await asyncio.sleep(0.1)
    assert recorder.returncode == 0
    assert not await asyncio.to_thread(Path(f"/proc/{recorder.pid}").exists)

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


async def _recorder_connected(people: list[RtcParticipant], recorder_id: int) -> None:
    for person in people:
        await person.until(
            lambda p=person: (
                (link := p.peers.get(recorder_id)) is not None
                and link.pc.connectionState == "connected"
            ),
            30,
            "recorder connected",
        )


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_crashed_recorder_is_replaced_and_both_runs_are_archived(
    client: Any, sessionmaker: Any, participants: Make
) -> None:
    """kill -9 of the recorder mid-hearing: the next person to join starts a new run; what was
    recorded up to the crash is archived with the rest, readable; recording again in the same
    hearing overwrites nothing archived before."""
    hearing_id, links = await recorded_hearing(client, sessionmaker)
    mediator, applicant = await _in_hearing(client, links, participants, (MEDIATOR, APPLICANT))
    recorders = client.app[RECORDERS]
    root = client.app[SETTINGS].recordings_dir

    await mediator.emit("recording_start")
    await mediator.until(lambda: mediator.view["hearing"]["recording"], what="indicator")
    recorder_id = max(p.id for p in await _participants(sessionmaker, hearing_id))
    await _recorder_connected([mediator, applicant], recorder_id)
    await asyncio.sleep(5)
    first = recorders.running[hearing_id]
    first.kill()
    for _ in range(100):
        if first.returncode is not None:
            break
        await asyncio.sleep(0.1)
    assert first.returncode == -9
    assert mediator.view is not None and mediator.view["hearing"]["recording"]

    # The respondent opens their link (they wait in the lobby): a new recorder run starts.
    respondent = participants(RESPONDENT, video_size=(640, 480))
    await respondent.connect(str(client.make_url("/")), links[RESPONDENT].token)
    for _ in range(100):
        if recorders.running[hearing_id] is not first:
            break
        await asyncio.sleep(0.1)
    second = recorders.running[hearing_id]
    assert second is not first
    await asyncio.sleep(1)  # the dead recorder's connections are replaced by the new ones
    await _recorder_connected([mediator, applicant], recorder_id)
    await asyncio.sleep(4)
    await mediator.emit("recording_stop")
    assert await recorders.wait(hearing_id, 120) == 0

    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(RecordingFile).where(RecordingFile.hearing_id == hearing_id)
            )
        ).all()
        by_run: dict[str, list[str]] = {}
        for row in rows:
            by_run.setdefault(row.path.split("/")[1], []).append(row.kind)
        assert sorted(by_run) == ["run-1", "run-2"]
        for kinds in by_run.values():
            assert sorted(kinds) == sorted(
                [PARTICIPANT_FILE, PARTICIPANT_FILE, COMPOSITE_FILE, TIMELINE_FILE]
            )
        crashed = [r for r in rows if r.path.startswith(f"h{hearing_id}/run-1/")]
        for row in crashed:
            if row.kind == TIMELINE_FILE:
                names = {f["file"] for f in json.loads((root / row.path).read_text())["files"]}
                assert len(names) == 2  # written as it went, not only at the end
                continue
            found = await archive.probe(root / row.path)  # a cut-off file: no duration header
            assert found is not None and set(found.kinds) == {"audio", "video"}, row.path
            assert row.duration_s is not None and row.duration_s >= 3, (row.path, row.duration_s)
        report = await archive.verify(session, root, hearing_id)
        assert report.ok and report.checked == 8


# ---- the archive pages, retention and authorisation (a real file made by ffmpeg) ----------------


async def _sample_file(path: Path, seconds: int) -> None:
    """Test pattern and tone, VP8/Opus in Matroska, like the recorder writes."""
    proc = await asyncio.create_subprocess_exec(
        *[
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size=320x240:rate=15:d={seconds}",
        ],
        *["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"],
        *["-c:v", "libvpx", "-b:v", "200k", "-c:a", "libopus", str(path)],
    )
    assert await proc.wait() == 0


async def _archived_sample(client: Any, sessionmaker: Any, seconds: int = 3) -> list[RecordingFile]:
    """A recorded hearing's folder with one participant file (test pattern and tone, VP8/Opus
    in Matroska like the recorder writes), archived the way the recorder does it."""
    hearing_id, _links = await recorded_hearing(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    folder = archive.new_run(root, hearing_id)
    mediator = min(p.id for p in await _participants(sessionmaker, hearing_id))
    await _sample_file(folder / f"p{mediator}-main-1.mkv", seconds)
    async with transaction(sessionmaker) as session:
        return await archive.archive_hearing(session, root, hearing_id)


async def test_archive_pages_play_download_hold_and_check(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    from tests.helpers import login

    rows = await _archived_sample(client, sessionmaker)
    assert sorted(r.kind for r in rows) == [COMPOSITE_FILE, PARTICIPANT_FILE]
    composite = next(r for r in rows if r.kind == COMPOSITE_FILE)
    assert set(_ffprobe(client.app[SETTINGS].recordings_dir / composite.path)) == {"audio", "video"}

    # Nobody signed in: no access (a party has only their hearing link, which is no login).
    resp = await client.get(f"/admin/recordings/{composite.id}/play", allow_redirects=False)
    assert resp.status in (303, 401)
    csrf = await login(client, "admin", demo_logins["admin"])
    page = await (await client.get("/admin/recordings")).text()
    assert f'data-recording="{composite.id}"' in page and "（2026）" in page or "调字" in page

    # Playing in the browser: byte ranges work (seeking), and the play is audited once.
    resp = await client.get(
        f"/admin/recordings/{composite.id}/play", headers={"Range": "bytes=100-199"}
    )
    assert resp.status == 206 and len(await resp.read()) == 100
    resp = await client.get(f"/admin/recordings/{composite.id}/play")
    assert resp.status == 200 and resp.content_type == "video/mp4"
    resp = await client.get(f"/admin/recordings/{composite.id}/download")
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    body = await resp.read()
    assert archive.hashlib.sha256(body).hexdigest() == composite.sha256

    # Legal hold on; integrity check passes.
    resp = await client.post(
        f"/admin/recordings/{composite.id}/hold", data={"hold": "on", "csrf_token": csrf}
    )
    assert resp.status == 200
    resp = await client.post(f"/admin/recordings/{composite.id}/verify", data={"csrf_token": csrf})
    assert "is intact" in await resp.text() or "完整" in await resp.text()
    async with sessionmaker() as session:
        held = await session.get(RecordingFile, composite.id)
        assert held is not None and held.legal_hold
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.object_type == "recording_file")
            )
        ).all()
    assert actions.count(AuditAction.RECORDING_VIEWED) == 1  # the ranged request did not count
    assert AuditAction.RECORDING_DOWNLOADED in actions
    assert AuditAction.RECORDING_HOLD_CHANGED in actions
    assert AuditAction.RECORDING_VERIFIED in actions


async def test_recordings_of_other_cases_are_refused(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    from tests.helpers import login

    rows = await _archived_sample(client, sessionmaker)
    # mediator2 does not mediate case 1; a clerk has no access to recordings at all.
    for username in ("mediator2", "clerk"):
        client.session.cookie_jar.clear()
        await login(client, username, demo_logins[username])
        for route in ("play", "download"):
            resp = await client.get(f"/admin/recordings/{rows[0].id}/{route}")
            assert resp.status == 403, (username, route)
        listing = await client.get("/admin/recordings")
        if username == "mediator2":
            assert f'data-recording="{rows[0].id}"' not in await listing.text()
        else:
            assert listing.status == 403


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_retention_deletes_old_files_but_not_those_under_legal_hold(
    client: Any, sessionmaker: Any
) -> None:
    rows = await _archived_sample(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    held, other = rows[0], rows[1]
    async with transaction(sessionmaker) as session:
        (await session.get(RecordingFile, held.id)).legal_hold = True  # type: ignore[union-attr]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=11)
    async with transaction(sessionmaker) as session:
        deleted = await archive.purge(session, root, retention_days=10, now=later)
    assert [r.id for r in deleted] == [other.id]
    assert (root / held.path).exists() and not (root / other.path).exists()
    async with sessionmaker() as session:
        report = await archive.verify(session, root)
        assert report.ok and report.checked == 1  # the deleted file is no longer expected


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_an_interrupted_archive_is_finished_at_start_up(
    client: Any, sessionmaker: Any, aiohttp_client: Any, settings: Settings
) -> None:
    """Files the recorder wrote before a crash (nothing registered yet) are archived by the
    start-up job of the next server process."""
    from server.app import create_app

    hearing_id, _links = await recorded_hearing(client, sessionmaker)
    folder = archive.new_run(settings.recordings_dir, hearing_id)
    await _sample_file(folder / "p1-main-1.mkv", 2)
    restarted = await aiohttp_client(create_app(settings))
    for _ in range(100):
        async with restarted.app[SESSIONMAKER]() as session:
            kinds = sorted(
                (
                    await session.scalars(
                        select(RecordingFile.kind).where(RecordingFile.hearing_id == hearing_id)
                    )
                ).all()
            )
        if len(kinds) == 2:
            break
        await asyncio.sleep(0.2)
    assert kinds == [COMPOSITE_FILE, PARTICIPANT_FILE]
