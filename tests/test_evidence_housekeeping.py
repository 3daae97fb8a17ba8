"""The housekeeping job as the running server starts it (``cleanup_ctx``), on both engines:
with a one-second interval it deletes an abandoned upload and signs a tree head on its own."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from sqlalchemy import func, select

from config import Settings
from evidence.models import EvidenceUpload, TreeHead
from tests.helpers import api_headers
from tests.test_evidence_support import create_upload, pdf_bytes, upload


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        evidence_housekeeping_interval_s=1,
        evidence_upload_expiry_s=0,  # every unfinished upload counts as abandoned
        evidence_tree_head_interval_s=0,
    )


async def test_the_server_runs_housekeeping_by_itself(
    client: Any, sessionmaker: Any, demo_logins: dict[str, str]
) -> None:
    staff = await api_headers(client, "mediator", demo_logins["mediator"])
    assert (await create_upload(client, staff, 5000)).status == 201
    assert (await upload(client, staff, pdf_bytes(3000))).status == 204

    async def counts() -> tuple[int, int]:
        async with sessionmaker() as session:
            uploads = await session.scalar(
                select(func.count())
                .select_from(EvidenceUpload)
                .where(EvidenceUpload.status == "receiving")
            )
            heads = await session.scalar(select(func.count()).select_from(TreeHead))
        return int(uploads or 0), int(heads or 0)

    for _ in range(100):
        if await counts() == (0, 1):
            break
        await asyncio.sleep(0.1)
    assert await counts() == (0, 1)
