"""Persistence of notes: an acknowledged edit survives ``kill -9`` of the server; snapshots
compact without losing anything; history says who changed what; a restore is a new, audited
edit that brings the old text back (Chinese and emoji included); several processes share
documents through the database and Redis."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from pycrdt import Text
from sqlalchemy import func, select

from cases.audit import AuditAction
from cases.errors import Forbidden
from cases.models import AuditEntry, User, utcnow
from notes import access, store
from notes.live import NoteHub
from notes.models import NoteSnapshot, NoteUpdate
from tests.conftest import ensure_redis
from tests.notes_client import NotesClient
from tests.notes_fixtures import APPLICANT, CLERK, MEDIATOR, make_hearing
from tests.test_scale_out import ServerProcess, two_servers  # noqa: F401  (fixture)
from web.context import SETTINGS


def _env(settings: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUNTIAO_")}
    env.update(
        {
            "YUNTIAO_DATABASE_URL": settings.database_url,
            "YUNTIAO_DATA_DIR": str(settings.data_dir),
            "YUNTIAO_SECRET_KEY": settings.secret_key,
            "YUNTIAO_FIELD_ENCRYPTION_KEY": settings.field_encryption_key,
            "YUNTIAO_SEED_DEMO": "false",
            **extra,
        }
    )
    return env


async def test_no_acknowledged_edit_is_lost_on_kill_9(
    client: Any, settings: Any, sessionmaker: Any
) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    key = f"record:{links['hearing']}"
    # Snapshots every 7 edits: the restart loads a snapshot plus the updates after it.
    env = _env(settings, YUNTIAO_NOTES_SNAPSHOT_EVERY="7")
    server = ServerProcess(env)
    server.wait_ready()
    editors = [NotesClient("mediator"), NotesClient("clerk")]
    restarted: ServerProcess | None = None
    try:
        for editor, name in zip(editors, (MEDIATOR, CLERK), strict=True):
            await editor.connect(server.base, token=links[name][1])
            assert (await editor.open(key))["ok"]
        acknowledged: list[str] = []
        enough = asyncio.Event()

        async def type_lines(editor: NotesClient, label: str) -> None:
            for i in range(1000):
                line = f"{label}第{i}句😀\n"
                try:
                    ack = await editor.edit(
                        key, lambda t, line=line: t.insert(len(str(t).encode()), line)
                    )
                except Exception:  # noqa: BLE001 - the server died mid-call: not acknowledged
                    return
                if ack.get("ok"):
                    acknowledged.append(line)
                    if len(acknowledged) >= 40:
                        enough.set()

        typing = [
            asyncio.create_task(type_lines(editors[0], "调解员")),
            asyncio.create_task(type_lines(editors[1], "书记员")),
        ]
        await asyncio.wait_for(enough.wait(), 30)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        await asyncio.wait(typing, timeout=15)
        assert len(acknowledged) >= 40

        restarted = ServerProcess(env, port=server.port)
        restarted.wait_ready()
        reader = NotesClient("party")
        editors.append(reader)
        await reader.connect(restarted.base, token=links[APPLICANT][1])
        assert (await reader.open(key))["ok"]
        await asyncio.sleep(0.5)
        text = str(reader.text(key))
        lost = [line for line in acknowledged if line not in text]
        assert not lost, f"{len(lost)} acknowledged edits lost, e.g. {lost[:3]}"
        async with sessionmaker() as session:
            snapshots = await session.scalar(select(func.count()).select_from(NoteSnapshot))
        assert snapshots == 1
    finally:
        for editor in editors:
            await editor.sio.disconnect()
        await asyncio.sleep(0.1)
        for proc in (server, restarted):
            if proc is not None and proc.proc.poll() is None:
                proc.stop()


async def test_history_and_restore_with_chinese_and_emoji(client: Any, sessionmaker: Any) -> None:
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    key = f"shared:{links['case']}"
    base = str(client.make_url("/"))
    mediator, party = NotesClient("mediator"), NotesClient("party")
    hub = _hub(client)
    try:
        await mediator.connect(base, token=links[MEDIATOR][1])
        await party.connect(base, token=links[APPLICANT][1])
        await mediator.open(key)
        await party.open(key)
        await mediator.edit(key, lambda t: t.insert(0, "第一版：赔偿👍二十万元"))
        good = "第一版：赔偿👍二十万元"
        await mediator.edit(key, lambda t: t.insert(len(good.encode()), "，分两期𝒳支付"))
        good += "，分两期𝒳支付"
        await mediator.until(lambda: str(mediator.text(key)) == good)

        # The clerk (signed in) overwrites part of it later.
        async with sessionmaker() as session:
            clerk = await session.scalar(select(User).where(User.username == "clerk"))
            document = await store.get_document(session, key)
        assert clerk is not None and document is not None

        async def as_clerk(session: Any) -> access.Principal:
            return access.staff(await session.get(User, clerk.id), "127.0.0.1", "test")

        state = await _state(sessionmaker, document.id)
        doc = store.doc_from(state)
        before = doc.get_state()
        t = doc.get("text", type=Text)
        del t[0 : len("第一版：赔偿👍".encode())]
        t.insert(0, "改：不赔😡")
        await hub.accept(key, doc.get_update(before), as_clerk)
        await party.until(lambda: str(party.text(key)).startswith("改：不赔😡"))

        async with sessionmaker() as session:
            versions = await store.history(session, document.id)
        assert [v.actor_label for v in versions] == ["clerk", MEDIATOR]
        assert versions[1].first_seq == 1 and versions[1].last_seq == 2

        accepted = await hub.restore(key, versions[1].last_seq, as_clerk)
        assert accepted.seq == 4
        await party.until(lambda: str(party.text(key)) == good)
        await mediator.until(lambda: str(mediator.text(key)) == good)
        assert (await hub.current_text(document))[0] == good
        async with sessionmaker() as session:
            audit = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.action == AuditAction.NOTES_RESTORED)
                )
            ).all()
            rows = await session.scalar(select(func.count()).select_from(NoteUpdate))
        assert len(audit) == 1 and audit[0].actor_label == "clerk"
        assert '"to_version":2' in audit[0].details
        assert rows == 4  # nothing rewritten: the restore is one more edit

        # A party cannot restore.
        async def as_party(session: Any) -> access.Principal:
            return await access.by_link(
                session, client.app[SETTINGS].secret_key, links[APPLICANT][1], utcnow()
            )

        with pytest.raises(Forbidden):
            await hub.restore(key, 1, as_party)
    finally:
        await mediator.sio.disconnect()
        await party.sio.disconnect()
        await asyncio.sleep(0.1)


def _hub(client: Any) -> NoteHub:
    from web.notes import NOTES_HUB

    return client.app[NOTES_HUB]


async def _state(sessionmaker: Any, document_id: int) -> bytes:
    async with sessionmaker() as session:
        state, _ = await store.load_state(session, document_id)
    return state


@pytest.mark.parametrize("engine_name", ["postgresql"])
async def test_two_processes_share_a_record(
    two_servers: tuple[ServerProcess, ServerProcess],  # noqa: F811
    client: Any,
    sessionmaker: Any,
) -> None:
    ensure_redis()
    links = await make_hearing(sessionmaker, client.app[SETTINGS].secret_key)
    key = f"record:{links['hearing']}"
    one, two = two_servers
    mediator, clerk, party = NotesClient("mediator"), NotesClient("clerk"), NotesClient("party")
    late = NotesClient("late")
    try:
        await mediator.connect(one.base, token=links[MEDIATOR][1])
        await clerk.connect(two.base, token=links[CLERK][1])
        await party.connect(two.base, token=links[APPLICANT][1])
        for c in (mediator, clerk, party):
            assert (await c.open(key))["ok"]
        # Warm process two's document before process one changes it behind its back.
        await clerk.edit(key, lambda t: t.insert(0, "书记员："))
        await mediator.until(lambda: str(mediator.text(key)) == "书记员：")
        for i in range(5):
            await mediator.edit(key, lambda t, i=i: t.insert(len(str(t).encode()), f"第{i}条🙂"))
        expected = "书记员：" + "".join(f"第{i}条🙂" for i in range(5))
        await party.until(lambda: str(party.text(key)) == expected)
        await clerk.until(lambda: str(clerk.text(key)) == expected)
        # A reader joining process two gets everything from that process's own document.
        await late.connect(two.base, token=links[APPLICANT][1])
        assert (await late.open(key))["ok"]
        await late.until(lambda: str(late.text(key)) == expected)
    finally:
        for c in (mediator, clerk, party, late):
            await c.sio.disconnect()
        await asyncio.sleep(0.2)
