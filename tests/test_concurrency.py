"""Concurrent requests cannot corrupt state: one winner per transition, unique case numbers,
and an audit chain that stays linear."""

from __future__ import annotations

import asyncio
from typing import Any

from cases import intake, lifecycle
from cases.actor import Actor
from cases.audit import verify_chain
from cases.errors import Conflict
from cases.uow import transaction


async def test_two_simultaneous_transitions_one_wins(client: Any, sessionmaker: Any) -> None:
    async def attempt(target: str) -> str:
        try:
            async with transaction(sessionmaker) as session:
                case = await intake.get_case(session, 1)
                await asyncio.sleep(0.05)  # both have read "accepted" before either writes
                await lifecycle.do_transition(session, Actor.system("t"), case, target, "r")
            return "ok"
        except Conflict as exc:
            return exc.code

    # Two clicks on the same button: one moves the case, the other is refused — by the
    # conditional UPDATE (PostgreSQL) or, when SQLite serialised the two, by the state machine.
    results = sorted(await asyncio.gather(attempt("notified"), attempt("notified")))
    assert results in (["concurrent_change", "ok"], ["illegal_transition", "ok"])
    async with sessionmaker() as session:
        assert (await verify_chain(session)).ok


async def test_parallel_intake_gets_unique_numbers(client: Any, sessionmaker: Any) -> None:
    from cases.protect import FieldCipher
    from web.context import CIPHER

    cipher: FieldCipher = client.app[CIPHER]
    data = intake.CaseInput(
        channel="party_application",
        category="contract",
        title="并发受理",
        parties=[
            intake.PartyInput(role="applicant", name="甲"),
            intake.PartyInput(role="respondent", name="乙"),
        ],
    )

    async def create() -> str:
        async with transaction(sessionmaker) as session:
            case = await intake.do_create_case(session, Actor.system("t"), cipher, 1, data)
            return case.number

    numbers = await asyncio.gather(*(create() for _ in range(8)))
    assert len(set(numbers)) == 8
    seqs = sorted(int(n.split("第")[1].rstrip("号")) for n in numbers)
    assert seqs == list(range(2, 10))
    async with sessionmaker() as session:
        assert (await verify_chain(session)).ok


async def test_reading_never_waits_for_a_writer(client: Any, sessionmaker: Any) -> None:
    """A page or a hearing event that only reads goes ahead while a change is being written
    (on SQLite only units of work take the write lock), and sees the state before that change."""
    async with transaction(sessionmaker) as session:
        case = await intake.get_case(session, 1)
        before = case.status
        await lifecycle.do_transition(session, Actor.system("t"), case, "notified", "r")
        async with sessionmaker() as reader:
            seen = await asyncio.wait_for(intake.get_case(reader, 1), timeout=20)
            assert seen.status == before
    async with sessionmaker() as reader:
        assert (await intake.get_case(reader, 1)).status == "notified"
