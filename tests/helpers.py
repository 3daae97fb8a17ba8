"""Test helpers: sign in through the real login form, or get an API bearer token."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


async def login(client: TestClient, username: str, password: str) -> str:  # type: ignore[type-arg]
    """Sign in through the real login form; returns the session's CSRF token."""
    page = await client.get("/login")
    assert page.status == 200
    match = CSRF_RE.search(await page.text())
    assert match, "login form carries a CSRF token"
    resp = await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": match.group(1)},
        allow_redirects=False,
    )
    assert resp.status in (302, 303), await resp.text()
    page = await client.get("/cases")
    match = CSRF_RE.search(await page.text())
    assert match, "signed-in pages carry the session CSRF token"
    return match.group(1)


async def api_headers(client: TestClient, username: str, password: str) -> dict[str, str]:  # type: ignore[type-arg]
    """Authorization header with a fresh bearer token for ``username``."""
    resp = await client.post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    )
    assert resp.status == 201, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}
