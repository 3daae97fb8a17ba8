"""Judicial-confirmation reminders sent by the running server (``server.reminders``), on both
engines: two app instances on one database with a short interval text each party of an agreement
whose deadline is near exactly once, audited; with the interval at 0 nobody is texted."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cases.audit import AuditAction
from cases.models import AuditEntry
from cases.notifications import OutboxMessage
from config import Settings
from esign.catalogue import EFFECTIVE, JUDICIAL_DEADLINE_DAYS
from esign.models import Agreement
from server.app import create_app
from tests.helpers import api_headers
from tests.test_esign_api import issued_agreement

PHONES = {"13900000001", "13900000002"}  # the two parties of tests.test_api.COURT_CASE


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"judicial_reminder_interval_s": 1, "judicial_reminder_days": 7}


@pytest.fixture
async def staff(client: Any, demo_logins: dict[str, str]) -> dict[str, dict[str, str]]:
    return {
        name: await api_headers(client, name, demo_logins[name])
        for name in ("clerk", "mediator", "admin")
    }


async def agreement_due_for_reminder(
    client: Any, sessionmaker: Any, staff: dict[str, dict[str, str]]
) -> int:
    """An agreement in force whose deadline is 5 days away (within the 7-day window). It is
    issued through the API; its signing is tested elsewhere, so it is put in force directly."""
    agreement = await issued_agreement(client, sessionmaker, staff)
    effective = dt.datetime.now(dt.UTC) - dt.timedelta(days=JUDICIAL_DEADLINE_DAYS - 5)
    async with sessionmaker() as session:
        await session.execute(
            update(Agreement)
            .where(Agreement.id == agreement["id"])
            .values(status=EFFECTIVE, effective_at=effective)
        )
        await session.commit()
    return int(agreement["id"])


async def reminders(sessionmaker: Any, agreement_id: int) -> tuple[list[str], int, int, bool]:
    """Texts about judicial confirmation (recipients), audit rows of the reminder and of
    queued notifications, and whether the agreement is marked reminded."""
    async with sessionmaker() as session:
        recipients = list(
            await session.scalars(
                select(OutboxMessage.recipient).where(OutboxMessage.body.contains("司法确认"))
            )
        )
        sent = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.action == AuditAction.JUDICIAL_REMINDER_SENT.value,
                AuditEntry.object_id == str(agreement_id),
            )
        )
        queued = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.action == AuditAction.NOTIFICATION_QUEUED.value,
                AuditEntry.actor_label == "reminders",
            )
        )
        marked = await session.scalar(
            select(Agreement.judicial_reminded_at).where(Agreement.id == agreement_id)
        )
    return sorted(recipients), int(sent or 0), int(queued or 0), marked is not None


async def test_two_servers_remind_each_party_once(
    client: Any,
    aiohttp_client: Any,
    settings: Settings,
    sessionmaker: Any,
    staff: dict[str, dict[str, str]],
) -> None:
    await aiohttp_client(create_app(settings))  # a second server process on the same database
    agreement_id = await agreement_due_for_reminder(client, sessionmaker, staff)
    for _ in range(100):
        if (await reminders(sessionmaker, agreement_id))[0]:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(3 * settings.judicial_reminder_interval_s)  # both ran again since
    recipients, sent, queued, marked = await reminders(sessionmaker, agreement_id)
    assert recipients == sorted(PHONES)  # each party texted once
    assert sent == 1 and queued == 2 and marked


@pytest.mark.parametrize("settings_overrides", [{"judicial_reminder_interval_s": 0}])
async def test_no_reminders_when_the_interval_is_zero(
    client: Any,
    aiohttp_client: Any,
    settings: Settings,
    sessionmaker: Any,
    staff: dict[str, dict[str, str]],
) -> None:
    agreement_id = await agreement_due_for_reminder(client, sessionmaker, staff)
    await aiohttp_client(create_app(settings))  # a server started while the reminder is due
    await asyncio.sleep(2.5)
    assert await reminders(sessionmaker, agreement_id) == ([], 0, 0, False)
