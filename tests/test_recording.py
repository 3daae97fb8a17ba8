"""Recording a hearing, with real parts: aiortc participants (and, in the browser test, Chromium)
send media through the real ``/hearing`` namespace; the mediator starts recording; the server
starts the real recorder process (``yuntiao record``), which joins receive-only, stores each
participant's audio and video and archives them (ffprobe, SHA-256, composite) when dismissed."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cases.actor import Actor
from cases.audit import AuditAction, record, verify_chain
from cases.models import AuditEntry
from cases.uow import transaction
from config import Settings
from evidence.storage import open_sealed
from recordings import archive
from recordings.models import (
    COMPOSITE_FILE,
    HEARING_FILE,
    PARTICIPANT_FILE,
    TIMELINE_FILE,
    RecordingFile,
)
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


# A recording key for the tests that run with encryption at rest (``encrypted`` parametrised).
KEY = base64.b64encode(bytes(range(32))).decode()
EBML = b"\x1a\x45\xdf\xa3"  # Matroska starts with this


@pytest.fixture
def encrypted() -> bool:
    """Tests parametrise this to run with a recording key configured."""
    return False


@pytest.fixture
def settings_overrides(encrypted: bool) -> dict[str, Any]:
    # The recorder process offers only 127.0.0.1, like the test participants (media on loopback).
    overrides: dict[str, Any] = {"recorder_host_addresses": "127.0.0.1"}
    if encrypted:
        overrides["recording_encryption_key"] = KEY
    return overrides


def _key(client: Any) -> bytes | None:
    return archive.master_key(client.app[SETTINGS].recording_encryption_key)


def _plain(root: Path, row: RecordingFile, key: bytes | None, tmp_path: Path) -> Path:
    """The archived file's media bytes on disk: the file itself, or a decrypted copy (by the
    evidence store's reader) when it is sealed."""
    path = root / row.path
    sealed = path.with_name(path.name + ".enc")
    if not sealed.exists():
        return path
    assert key is not None and not path.exists()
    copy = tmp_path / f"plain-{row.id}{path.suffix}"
    with open_sealed(sealed, key) as reader:
        copy.write_bytes(reader.read())
    return copy


def _media_magic(data_dir: Path) -> list[str]:
    """Files under the data dir that start like plaintext media (Matroska or MP4)."""
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                head = fh.read(12)
            if head.startswith(EBML) or head[4:8] == b"ftyp":
                found.append(str(path.relative_to(data_dir)))
    return found


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


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_recorded_hearing_is_archived_per_participant_and_composed(
    client: Any, sessionmaker: Any, participants: Make, encrypted: bool, tmp_path: Path
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
        key = _key(client)
        for row in rows:
            plain = _plain(root, row, key, tmp_path)
            assert archive.sha256_of(plain) == (row.sha256, row.size)
        # With a key, the recorder process sealed what it archived: no plaintext media is left.
        magic = _media_magic(settings.data_dir)
        assert len(magic) == (0 if encrypted else 3), magic  # 2 participants + the composite
        for row in rows:
            if row.kind == TIMELINE_FILE:
                continue
            streams = _ffprobe(_plain(root, row, key, tmp_path))
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
        report = await archive.verify(session, root, hearing_id, key=key)
        assert report.ok and report.checked == 4

    # A changed byte on disk (of the ciphertext, when sealed) is named by verify.
    victim = next(r for r in rows if r.kind == PARTICIPANT_FILE)
    path = root / victim.path
    path = path.with_name(path.name + ".enc") if encrypted else path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    async with sessionmaker() as session:
        report = await archive.verify(session, root, hearing_id, key=key)
    assert not report.ok and victim.path in report.problems[0]
    assert "changed since archived" in report.problems[0]


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
        parts = sorted((r for r in rows if r.kind == COMPOSITE_FILE), key=lambda r: r.path)

    # The mediator ends the hearing: no run can follow, so its one playable file is made, the
    # two runs' composites one after the other.
    await mediator.emit("end_hearing")
    whole = None
    for _ in range(600):
        async with sessionmaker() as session:
            whole = await session.scalar(
                select(RecordingFile).where(
                    RecordingFile.hearing_id == hearing_id, RecordingFile.kind == HEARING_FILE
                )
            )
        if whole is not None:
            break
        await asyncio.sleep(0.1)
    assert whole is not None and whole.path == f"h{hearing_id}/hearing.mp4"
    streams = _ffprobe(root / whole.path)
    expected = sum(p.duration_s or 0 for p in parts)
    assert set(streams) == {"audio", "video"}
    assert all(abs(seconds - expected) < 1.0 for seconds in streams.values()), (streams, expected)
    async with sessionmaker() as session:
        report = await archive.verify(session, root, hearing_id)
        assert report.ok and report.checked == 9


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_hearing_recorded_in_two_runs_gets_one_joined_file_when_it_ends(
    client: Any, sessionmaker: Any, encrypted: bool, tmp_path: Path
) -> None:
    """Recording stopped and started again: each run has its composite; once the hearing has
    ended (and only then) one file joins them in order, sealed like the rest when a key is set.
    A run recorded without any picture is black for its length, not dropped."""
    hearing_id, _links = await recorded_hearing(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    key = _key(client)
    mediator = min(p.id for p in await _participants(sessionmaker, hearing_id))
    await _sample_file(archive.new_run(root, hearing_id) / f"p{mediator}-main-1.mkv", 3)
    second = archive.new_run(root, hearing_id) / f"p{mediator}-main-1.mkv"
    proc = await asyncio.create_subprocess_exec(
        *["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=660:duration=2"],
        *["-c:a", "libopus", str(second)],
    )
    assert await proc.wait() == 0
    rows = await archive.archive_hearing(sessionmaker, root, hearing_id, key=key)
    assert sorted(r.kind for r in rows).count(COMPOSITE_FILE) == 2
    assert HEARING_FILE not in {r.kind for r in rows}  # the hearing goes on: more may come

    async with transaction(sessionmaker) as session:
        hearing = await hearings.get_hearing(session, hearing_id)
        hearing.ended_at = dt.datetime.now(dt.UTC)
    rows = await archive.archive_hearing(sessionmaker, root, hearing_id, key=key)
    assert [r.kind for r in rows] == [HEARING_FILE]
    whole = rows[0]
    streams = _ffprobe(_plain(root, whole, key, tmp_path))
    assert set(streams) == {"audio", "video"}
    assert all(abs(seconds - 5.0) < 0.5 for seconds in streams.values()), streams
    assert await archive.archive_hearing(sessionmaker, root, hearing_id, key=key) == []
    assert len(_media_magic(client.app[SETTINGS].data_dir)) == (0 if encrypted else 5)
    async with sessionmaker() as session:
        report = await archive.verify(session, root, key=key)
    assert report.ok and report.checked == 5


# ---- the archive pages, retention and authorisation (a real file made by ffmpeg) ----------------


async def _sample_file(path: Path, seconds: int, *, noisy: bool = False) -> None:
    """Test pattern and tone, VP8/Opus in Matroska, like the recorder writes. ``noisy`` adds
    sensor-like noise at 4 Mbit/s: a file of more than one encryption chunk (1 MiB)."""
    video = f"testsrc=size=320x240:rate=15:d={seconds}" + (",noise=alls=30:allf=t" if noisy else "")
    proc = await asyncio.create_subprocess_exec(
        *["ffmpeg", "-v", "error", "-f", "lavfi", "-i", video],
        *["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"],
        *["-c:v", "libvpx", "-b:v", "4M" if noisy else "200k", "-c:a", "libopus", str(path)],
    )
    assert await proc.wait() == 0


async def _archived_sample(
    client: Any, sessionmaker: Any, seconds: int = 3, *, noisy: bool = False
) -> tuple[list[RecordingFile], bytes]:
    """A recorded hearing's folder with one participant file (test pattern and tone, VP8/Opus
    in Matroska like the recorder writes), archived the way the recorder does it (sealed when
    the app has a recording key). Also the participant file's bytes as ffmpeg wrote them."""
    hearing_id, _links = await recorded_hearing(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    folder = archive.new_run(root, hearing_id)
    mediator = min(p.id for p in await _participants(sessionmaker, hearing_id))
    sample = folder / f"p{mediator}-main-1.mkv"
    await _sample_file(sample, seconds, noisy=noisy)
    original = sample.read_bytes()
    rows = await archive.archive_hearing(sessionmaker, root, hearing_id, key=_key(client))
    return rows, original


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_archive_pages_play_download_hold_and_check(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str], encrypted: bool, tmp_path: Path
) -> None:
    from tests.helpers import login

    settings = client.app[SETTINGS]
    rows, original = await _archived_sample(client, sessionmaker, noisy=True)
    assert sorted(r.kind for r in rows) == [COMPOSITE_FILE, PARTICIPANT_FILE]
    composite = next(r for r in rows if r.kind == COMPOSITE_FILE)
    single = next(r for r in rows if r.kind == PARTICIPANT_FILE)
    assert single.sha256 == hashlib.sha256(original).hexdigest() and len(original) > 1 << 20
    plain = _plain(settings.recordings_dir, composite, _key(client), tmp_path)
    assert set(_ffprobe(plain)) == {"audio", "video"}
    # With a key no plaintext media is left in the data dir; without one both files are plain.
    assert len(_media_magic(settings.data_dir)) == (0 if encrypted else 2)

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
    # A range across the first 1 MiB chunk boundary returns the original bytes.
    resp = await client.get(
        f"/admin/recordings/{single.id}/play", headers={"Range": "bytes=1048000-1049999"}
    )
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 1048000-1049999/{len(original)}"
    assert await resp.read() == original[1048000:1050000]
    resp = await client.get(f"/admin/recordings/{single.id}/play", headers={"Range": "bytes=-500"})
    assert resp.status == 206 and await resp.read() == original[-500:]
    resp = await client.get(
        f"/admin/recordings/{single.id}/play", headers={"Range": f"bytes={len(original)}-"}
    )
    assert resp.status == 416
    resp = await client.get(f"/admin/recordings/{composite.id}/play")
    assert resp.status == 200 and resp.content_type == "video/mp4"
    await resp.read()
    resp = await client.get(f"/admin/recordings/{composite.id}/download")
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    assert resp.headers["Content-Disposition"].endswith('.mp4"')
    body = await resp.read()
    assert hashlib.sha256(body).hexdigest() == composite.sha256
    resp = await client.get(f"/admin/recordings/{single.id}/download")
    assert await resp.read() == original

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
                select(AuditEntry.action).where(
                    AuditEntry.object_type == "recording_file",
                    AuditEntry.object_id == str(composite.id),
                )
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

    rows, _original = await _archived_sample(client, sessionmaker)
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


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_retention_deletes_old_files_but_not_those_under_legal_hold(
    client: Any, sessionmaker: Any, encrypted: bool
) -> None:
    rows, _original = await _archived_sample(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    held, other = rows[0], rows[1]
    # A plaintext copy left beside the sealed file (a crash) goes with it.
    (root / other.path).write_bytes(b"leftover")
    async with transaction(sessionmaker) as session:
        (await session.get(RecordingFile, held.id)).legal_hold = True  # type: ignore[union-attr]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=11)
    # While an archiver holds the hearing (sealing, say), retention leaves it for its next run.
    async with archive.hold(root, other.hearing_id, archive.ARCHIVE_LOCK):
        async with transaction(sessionmaker) as session:
            assert await archive.purge(session, root, retention_days=10, now=later) == []
    assert archive.stored_file(root, other.path) is not None
    async with transaction(sessionmaker) as session:
        deleted = await archive.purge(session, root, retention_days=10, now=later)
    assert [r.id for r in deleted] == [other.id]
    assert archive.stored_file(root, held.path) == (
        (root / f"{held.path}.enc", True) if encrypted else (root / held.path, False)
    )
    assert archive.stored_file(root, other.path) is None
    assert not list((root / other.path).parent.glob(Path(other.path).name + "*"))
    async with sessionmaker() as session:
        report = await archive.verify(session, root, key=_key(client))
        assert report.ok and report.checked == 1  # the deleted file is no longer expected


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_an_interrupted_archive_is_finished_at_start_up(
    client: Any, sessionmaker: Any, aiohttp_client: Any, settings: Settings, encrypted: bool
) -> None:
    """Files the recorder wrote before a crash (nothing registered yet) are archived, and
    sealed when a key is set, by the start-up job of the next server process."""
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
        if len(kinds) == 2 and (not encrypted or not _media_magic(settings.data_dir)):
            break
        await asyncio.sleep(0.2)
    assert kinds == [COMPOSITE_FILE, PARTICIPANT_FILE]
    assert len(_media_magic(settings.data_dir)) == (0 if encrypted else 2)
    async with sessionmaker() as session:
        report = await archive.verify(session, settings.recordings_dir, key=_key(client))
    assert report.ok and report.checked == 2


@pytest.mark.parametrize("encrypted", [True])
@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_a_crash_while_sealing_is_repaired_at_start_up(
    client: Any, sessionmaker: Any, aiohttp_client: Any, settings: Settings
) -> None:
    """Crashes at each step of sealing leave states the start-up job repairs: a registered file
    not sealed yet, a sealed copy with its plaintext not deleted yet, a half-written
    ``.enc.part``. Afterwards each file is sealed once and nothing is plain."""
    from server.app import create_app

    rows, original = await _archived_sample(client, sessionmaker)
    root = settings.recordings_dir
    single = next(r for r in rows if r.kind == PARTICIPANT_FILE)
    composite = next(r for r in rows if r.kind == COMPOSITE_FILE)
    # Not sealed yet: only the plaintext, and a torn .part of an interrupted seal_file.
    plain = root / single.path
    (root / f"{single.path}.enc").unlink()
    plain.write_bytes(original)
    (root / f"{single.path}.enc.part").write_bytes(b"YTEVID\x00\x01torn")
    # Sealed, the plaintext not deleted yet.
    key = _key(client)
    assert key is not None
    with open_sealed(root / f"{composite.path}.enc", key) as reader:
        (root / composite.path).write_bytes(reader.read())
    assert len(_media_magic(settings.data_dir)) == 2

    await aiohttp_client(create_app(settings))
    for _ in range(100):
        if not _media_magic(settings.data_dir):
            break
        await asyncio.sleep(0.2)
    assert _media_magic(settings.data_dir) == []
    names = sorted(p.name for p in plain.parent.iterdir() if not p.name.endswith(".lock"))
    assert names == sorted([f"{plain.name}.enc", "hearing.mp4.enc"])
    async with sessionmaker() as session:
        report = await archive.verify(session, root, key=key)
        assert report.ok and report.checked == 2
        count = await session.scalar(select(func.count()).select_from(RecordingFile))
    assert count == 2  # nothing registered twice


@pytest.mark.parametrize("encrypted", [True])
async def test_sealed_recordings_without_the_key_or_changed_are_named_not_crashed(
    client: Any, sessionmaker: Any, aiohttp_client: Any, demo_logins: dict[str, str]
) -> None:
    from server.app import create_app
    from tests.helpers import login

    rows, _original = await _archived_sample(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    composite = next(r for r in rows if r.kind == COMPOSITE_FILE)
    single = next(r for r in rows if r.kind == PARTICIPANT_FILE)

    # The server started without the key: pages and verify say "key missing", never a 500.
    keyless = await aiohttp_client(
        create_app(dataclasses.replace(client.app[SETTINGS], recording_encryption_key=""))
    )
    csrf = await login(keyless, "admin", demo_logins["admin"])
    resp = await keyless.get(f"/admin/recordings/{composite.id}/play")
    assert resp.status == 409 and "密钥缺失" in await resp.text()
    resp = await keyless.post(f"/admin/recordings/{composite.id}/verify", data={"csrf_token": csrf})
    assert resp.status == 200 and "密钥缺失" in await resp.text()
    async with sessionmaker() as session:
        report = await archive.verify(session, root, key=None)
    assert report.checked == 2 and len(report.problems) == 2
    assert all("key missing" in problem for problem in report.problems)

    # A changed byte of the ciphertext: verify names a mismatch; playing it is a readable
    # refusal when the first chunk is hit.
    sealed = root / f"{single.path}.enc"
    data = bytearray(sealed.read_bytes())
    data[100] ^= 0x01
    sealed.write_bytes(bytes(data))
    async with sessionmaker() as session:
        report = await archive.verify(session, root, key=_key(client))
    assert len(report.problems) == 1 and single.path in report.problems[0]
    assert "changed since archived" in report.problems[0]
    await login(client, "admin", demo_logins["admin"])
    resp = await client.get(f"/admin/recordings/{single.id}/play")
    assert resp.status == 409 and "无法解密" in await resp.text()


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_the_archive_list_filters_by_organisation_case_mediator_and_day(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    from cases.models import Case, User
    from tests.helpers import login

    rows, _original = await _archived_sample(client, sessionmaker)
    async with sessionmaker() as session:
        case = await session.get(Case, rows[0].case_id)
        assert case is not None and case.mediator_id is not None
        other_mediator = await session.scalar(
            select(User.id).where(User.role == "mediator", User.id != case.mediator_id)
        )
    marker = f'data-recording="{rows[0].id}"'
    today = dt.datetime.now(dt.UTC).date()

    async def shown(**query: Any) -> bool:
        resp = await client.get("/admin/recordings", params=query)
        assert resp.status == 200
        return marker in await resp.text()

    await login(client, "sysadmin", demo_logins["sysadmin"])
    page = await (await client.get("/admin/recordings")).text()
    assert 'id="f-organisation"' in page and marker in page
    assert await shown(organisation=case.organisation_id)
    assert not await shown(organisation=case.organisation_id + 1000)
    assert await shown(case=case.number[-6:]) and not await shown(case="不存在的案号")
    assert await shown(mediator=case.mediator_id) and not await shown(mediator=other_mediator)
    assert await shown(**{"from": today.isoformat(), "to": today.isoformat()})
    assert not await shown(**{"from": (today + dt.timedelta(days=1)).isoformat()})
    assert not await shown(to=(today - dt.timedelta(days=1)).isoformat())
    assert await shown(**{"from": "not-a-date"})  # ignored, not an error

    # An organisation's administrator sees only their own organisation: no choice offered.
    client.session.cookie_jar.clear()
    await login(client, "admin", demo_logins["admin"])
    page = await (await client.get("/admin/recordings")).text()
    assert 'id="f-organisation"' not in page and marker in page


@pytest.mark.parametrize("engine_name", ["sqlite"])
async def test_compose_runs_outside_the_database_transaction(
    client: Any, sessionmaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While ffmpeg composes, other writers are not blocked (SQLite has one writer at a time:
    a write transaction held across the compose would stall every hearing event)."""
    real_compose = archive.compose
    wrote: list[bool] = []

    async def compose_and_write(out: Path, inputs: Any) -> bool:
        async with asyncio.timeout(10):
            async with transaction(sessionmaker) as session:
                await record(session, Actor.system("test"), AuditAction.DEMO_SEEDED)
        wrote.append(True)
        return await real_compose(out, inputs)

    monkeypatch.setattr(archive, "compose", compose_and_write)
    rows, _original = await _archived_sample(client, sessionmaker)
    assert wrote == [True] and len(rows) == 2


# ---- sharing a recording with the parties ---------------------------------------------------------


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_a_recording_shared_with_one_party_reaches_only_that_party(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str], encrypted: bool
) -> None:
    from cases.models import Case, Party, User
    from recordings import sharing
    from tests.helpers import login
    from tests.test_evidence_api import other_case
    from tests.test_evidence_support import party_token

    hearing_id, links = await recorded_hearing(client, sessionmaker)
    root = client.app[SETTINGS].recordings_dir
    folder = archive.new_run(root, hearing_id)
    await _sample_file(folder / f"p{links[APPLICANT].id}-main-1.mkv", 3)
    rows = await archive.archive_hearing(sessionmaker, root, hearing_id, key=_key(client))
    composite = next(r for r in rows if r.kind == COMPOSITE_FILE)
    applicant, respondent = links[APPLICANT].token, links[RESPONDENT].token
    async with sessionmaker() as session:
        parties = {p.name: p.id for p in (await session.scalars(select(Party))).all()}
    play = f"/recordings/{composite.id}/play"

    # Nothing is shared yet: the party sees no recording and gets 403 on its routes.
    page = await client.get(f"/h/{applicant}")
    assert "data-recordings-link" not in await page.text()
    resp = await client.get(f"/h/{applicant}/recordings")
    assert resp.status == 200 and "data-recording=" not in await resp.text()
    resp = await client.get(f"/h/{applicant}{play}")
    assert resp.status == 403 and "未向您共享" in await resp.text()

    # Staff who are not administrators of the case's organisation cannot share.
    for username in ("mediator", "mediator2", "clerk"):
        client.session.cookie_jar.clear()
        csrf = await login(client, username, demo_logins[username])
        resp = await client.post(
            f"/admin/recordings/{composite.id}/share", data={"party": "all", "csrf_token": csrf}
        )
        assert resp.status == 403, username
    elsewhere = User(role="org_admin", organisation_id=999, username="x", display_name="x")
    assert not sharing.can_share(elsewhere, Case(organisation_id=1))

    # The administrator shares it with the applicant only.
    client.session.cookie_jar.clear()
    csrf = await login(client, "admin", demo_logins["admin"])
    resp = await client.post(
        f"/admin/recordings/{composite.id}/share",
        data={"party": str(parties[APPLICANT]), "csrf_token": csrf},
    )
    assert resp.status == 200 and f'data-shared-party="{parties[APPLICANT]}"' in await resp.text()
    resp = await client.post(
        f"/admin/recordings/{composite.id}/share", data={"party": "12345", "csrf_token": csrf}
    )
    assert resp.status == 422  # not a party of this case
    client.session.cookie_jar.clear()

    page = await client.get(f"/h/{applicant}")
    assert "data-recordings-link" in await page.text()
    listing = await (await client.get(f"/h/{applicant}/recordings")).text()
    assert f'data-recording="{composite.id}"' in listing
    whole = await client.get(f"/h/{applicant}/recordings/{composite.id}/download")
    assert whole.status == 200 and "attachment" in whole.headers["Content-Disposition"]
    body = await whole.read()
    assert hashlib.sha256(body).hexdigest() == composite.sha256
    resp = await client.get(f"/h/{applicant}{play}", headers={"Range": "bytes=0-99"})
    assert resp.status == 206 and await resp.read() == body[:100]
    resp = await client.get(f"/h/{applicant}{play}", headers={"Range": "bytes=1000-"})
    assert resp.status == 206 and await resp.read() == body[1000:]

    # The applicant's agent (代理人) acts for the applicant: they see it too.
    agent = links["赵律师"].token
    assert "data-recordings-link" in await (await client.get(f"/h/{agent}")).text()
    resp = await client.get(f"/h/{agent}{play}", headers={"Range": "bytes=0-99"})
    assert resp.status == 206 and await resp.read() == body[:100]

    # The other side, a party of another case, a forged link: refused with a readable page.
    resp = await client.get(f"/h/{respondent}{play}")
    assert resp.status == 403 and "未向您共享" in await resp.text()
    assert (
        f'data-recording="{composite.id}"'
        not in await (await client.get(f"/h/{respondent}/recordings")).text()
    )
    case2 = await other_case(client, demo_logins)
    stranger = await party_token(client, sessionmaker, case2, "applicant")
    assert (await client.get(f"/h/{stranger}{play}")).status == 403
    assert (await client.get(f"/h/{stranger}/recordings/{composite.id}/download")).status == 403
    resp = await client.get(f"/h/not.a.token{play}")
    assert resp.status == 403 and "链接" in await resp.text()
    assert (await client.get(f"/h/{applicant}/recordings/999999/play")).status == 404

    # Revoked: the applicant loses it at once.
    csrf = await login(client, "admin", demo_logins["admin"])
    resp = await client.post(
        f"/admin/recordings/{composite.id}/revoke",
        data={"party": str(parties[APPLICANT]), "csrf_token": csrf},
    )
    assert resp.status == 200 and "data-shared-party" not in await resp.text()
    client.session.cookie_jar.clear()
    assert (await client.get(f"/h/{applicant}{play}")).status == 403
    assert (await client.get(f"/h/{agent}{play}")).status == 403
    listing = await (await client.get(f"/h/{applicant}/recordings")).text()
    assert f'data-recording="{composite.id}"' not in listing

    # Shared with everyone: both sides see it.
    csrf = await login(client, "admin", demo_logins["admin"])
    await client.post(
        f"/admin/recordings/{composite.id}/share", data={"party": "all", "csrf_token": csrf}
    )
    client.session.cookie_jar.clear()
    for token in (applicant, respondent):
        resp = await client.get(f"/h/{token}{play}", headers={"Range": "bytes=0-9"})
        assert resp.status == 206

    async with sessionmaker() as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.object_type == "recording_file",
                    AuditEntry.object_id == str(composite.id),
                )
                .order_by(AuditEntry.seq)
            )
        ).all()
        assert (await verify_chain(session)).ok
    by_party = [
        (e.action, e.actor_id) for e in entries if e.actor_type == "party"
    ]  # the party is the actor of their own plays and downloads
    assert (AuditAction.RECORDING_DOWNLOADED, parties[APPLICANT]) in by_party
    assert (AuditAction.RECORDING_VIEWED, parties[APPLICANT]) in by_party
    assert (AuditAction.RECORDING_VIEWED, parties[RESPONDENT]) in by_party
    actions = [e.action for e in entries]
    # The applicant, then every party of the case (the applicant again: revoked in between).
    assert actions.count(AuditAction.RECORDING_SHARED) == 1 + len(parties)
    assert actions.count(AuditAction.RECORDING_SHARE_REVOKED) == 1
