"""The hash-chained audit trail: written with each change, and tampering in SQL is detected —
through the API and through ``yuntiao audit verify`` — on both engines."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from sqlalchemy import delete, select, text, update

from cases.models import AuditEntry
from tests.helpers import api_headers


def _cli(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "YUNTIAO_DATABASE_URL": settings.database_url,
        "YUNTIAO_DATA_DIR": str(settings.data_dir),
        "YUNTIAO_FIELD_ENCRYPTION_KEY": settings.field_encryption_key,
        "YUNTIAO_SECRET_KEY": settings.secret_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_rows_carry_actor_time_ip_and_user_agent(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    await client.get("/api/v1/cases/1", headers={**headers, "User-Agent": "Phone/1.0"})
    async with sessionmaker() as session:
        entry = await session.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
    assert entry.action == "case.opened"
    assert entry.actor_label == "mediator" and entry.actor_type == "user"
    assert entry.ip == "127.0.0.1" and entry.user_agent == "Phone/1.0"
    assert entry.at.tzinfo is not None


async def test_intact_chain_verifies(
    client: Any, demo_logins: dict[str, str], settings: Any
) -> None:
    headers = await api_headers(client, "sysadmin", demo_logins["sysadmin"])
    report = await (await client.get("/api/v1/audit/verify", headers=headers)).json()
    assert report["ok"] is True and report["rows"] > 10
    result = _cli(settings, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK")


async def test_edited_row_is_named(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any, settings: Any
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text('UPDATE audit_log SET details = \'{"reason":"forged"}\' WHERE seq = 7')
        )
    headers = await api_headers(client, "sysadmin", demo_logins["sysadmin"])
    report = await (await client.get("/api/v1/audit/verify", headers=headers)).json()
    assert report["ok"] is False and report["first_bad_seq"] == 7
    result = _cli(settings, "audit", "verify")
    assert result.returncode == 1
    assert "first bad row 7" in result.stdout


async def test_deleted_row_is_named(sessionmaker: Any, settings: Any) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
    result = _cli(settings, "audit", "verify")
    assert result.returncode == 1
    assert "first bad row 5" in result.stdout and "missing" in result.stdout


async def test_deleted_and_renumbered_row_is_named(sessionmaker: Any, settings: Any) -> None:
    """A careful forger deletes row 5 and shifts later rows down: the links no longer fit."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
        last = await session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()))
        for seq in range(6, last + 1):
            await session.execute(
                update(AuditEntry).where(AuditEntry.seq == seq).values(seq=seq - 1)
            )
    result = _cli(settings, "audit", "verify")
    assert result.returncode == 1
    assert "first bad row 5" in result.stdout


async def test_failed_change_leaves_no_audit_row(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    headers = await api_headers(client, "mediator", demo_logins["mediator"])
    async with sessionmaker() as session:
        before = await session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()))
    resp = await client.post("/api/v1/cases/1/transitions", json={"to": "closed"}, headers=headers)
    assert resp.status == 409
    async with sessionmaker() as session:
        after = await session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()))
    assert after == before
