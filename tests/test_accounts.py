"""Staff login: argon2 hashes, lockout after repeated failures, tokens, sessions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cases.models import AuditEntry, User


async def test_passwords_are_argon2(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        hashes = (await session.scalars(select(User.password_hash))).all()
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)


async def test_lockout_after_repeated_failures(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    for _ in range(4):
        resp = await client.post(
            "/api/v1/auth/token", json={"username": "clerk", "password": "wrong-password"}
        )
        assert (await resp.json())["error"]["code"] == "authentication_failed"
    resp = await client.post(
        "/api/v1/auth/token", json={"username": "clerk", "password": "wrong-password"}
    )
    assert (await resp.json())["error"]["code"] == "account_locked"
    # Even the right password is refused while locked.
    resp = await client.post(
        "/api/v1/auth/token", json={"username": "clerk", "password": demo_logins["clerk"]}
    )
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "account_locked"
    async with sessionmaker() as session:
        actions = (
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("login.%"))
            )
        ).all()
    # Four wrong, one that locks, one refused while locked.
    assert actions.count("login.failed") == 6 and actions.count("login.locked") == 1


async def test_success_resets_failure_count(
    client: Any, demo_logins: dict[str, str], sessionmaker: Any
) -> None:
    for _ in range(3):
        await client.post("/api/v1/auth/token", json={"username": "clerk", "password": "nope"})
    ok = await client.post(
        "/api/v1/auth/token", json={"username": "clerk", "password": demo_logins["clerk"]}
    )
    assert ok.status == 201
    for _ in range(3):
        await client.post("/api/v1/auth/token", json={"username": "clerk", "password": "nope"})
    ok = await client.post(
        "/api/v1/auth/token", json={"username": "clerk", "password": demo_logins["clerk"]}
    )
    assert ok.status == 201


async def test_unknown_user_is_not_revealed(client: Any) -> None:
    a = await client.post("/api/v1/auth/token", json={"username": "ghost", "password": "x"})
    b = await client.post("/api/v1/auth/token", json={"username": "clerk", "password": "x"})
    assert (await a.json())["error"] == (await b.json())["error"]
