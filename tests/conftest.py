"""Shared fixtures. Tests run against the real engines: every database test runs on SQLite and on
PostgreSQL (127.0.0.1:5432, started here if it is down — never skipped).

Sign-in helpers are in ``tests/helpers.py`` (``login``, ``api_headers``).

Each engine gets one migrated template database with the demo data per test session; each test
gets a fresh copy (SQLite: a file copy; PostgreSQL: CREATE DATABASE … TEMPLATE …), so tests are
independent and fast.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from cases.protect import FieldCipher
from cases.uow import transaction
from config import Settings
from server import db

PG_ADMIN_DSN = os.environ.get(
    "YUNTIAO_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_PORT = 6379
TEST_FIELD_KEY = base64.b64encode(b"k" * 32).decode()
TEST_SECRET = "test-secret-key-not-for-production"
ENGINES = ["sqlite", "postgresql"]


# ---- local services ---------------------------------------------------------------------------


def _pg_ready() -> bool:
    return (
        subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True
        ).returncode
        == 0
    )


def _redis_ready() -> bool:
    try:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(REDIS_PORT), "ping"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "PONG"


def _wait(check: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f} s")


def ensure_postgres() -> None:
    if _pg_ready():
        return
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=True
    )
    _wait(_pg_ready, "PostgreSQL")


def ensure_redis() -> None:
    if _redis_ready():
        return
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
        ],
        check=True,
    )
    _wait(_redis_ready, "Redis")


# ---- database templates -----------------------------------------------------------------------


class Template:
    """A migrated database with the demo data, copied for each test."""

    def __init__(self, engine: str, root: Path) -> None:
        self.engine = engine
        self.root = root
        self.name = f"yuntiao_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.logins: dict[str, str] = {}

    def url(self, database: str) -> str:
        if self.engine == "sqlite":
            return f"sqlite+aiosqlite:///{self.root / (database + '.sqlite3')}"
        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{dsn}/{database}"

    async def build(self) -> None:
        if self.engine == "postgresql":
            await _pg_admin(f'CREATE DATABASE "{self.name}"')
        await db.upgrade(self.url(self.name))
        engine = db.make_engine(self.url(self.name))
        try:
            from cases import demo

            async with transaction(db.make_sessionmaker(engine)) as session:
                logins = await demo.seed_demo(session, FieldCipher(TEST_FIELD_KEY))
            self.logins = {login.username: login.password for login in logins}
        finally:
            await engine.dispose()

    async def copy(self) -> str:
        name = f"yuntiao_t_{uuid.uuid4().hex[:10]}"
        if self.engine == "sqlite":
            shutil.copyfile(self.root / f"{self.name}.sqlite3", self.root / f"{name}.sqlite3")
        else:
            await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        return name

    async def drop(self, name: str) -> None:
        if self.engine == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                (self.root / f"{name}.sqlite3{suffix}").unlink(missing_ok=True)
        else:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Template]]:
    ensure_postgres()
    root = tmp_path_factory.mktemp("db")
    built: dict[str, Template] = {}
    for engine in ENGINES:
        template = Template(engine, root)
        asyncio.run(template.build())
        built[engine] = template
    yield built
    if "postgresql" in built:
        asyncio.run(built["postgresql"].drop(built["postgresql"].name))


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(templates: dict[str, Template], engine_name: str) -> AsyncIterator[str]:
    """A fresh copy of the migrated, demo-seeded database for this test."""
    template = templates[engine_name]
    name = await template.copy()
    yield template.url(name)
    await template.drop(name)


@pytest.fixture
def demo_logins(templates: dict[str, Template], engine_name: str) -> dict[str, str]:
    """Username → password of the demo accounts (sysadmin, admin, mediator, mediator2, clerk)."""
    return dict(templates[engine_name].logins)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change a setting for its tests."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        field_encryption_key=TEST_FIELD_KEY,
        seed_demo=False,
        **settings_overrides,
    )


@pytest.fixture
def app(settings: Settings) -> Any:
    from server.app import create_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: Any, app: Any) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(app)


@pytest.fixture
def sessionmaker(client: TestClient) -> Any:  # type: ignore[type-arg]
    """The running app's session maker, for tests that look at or tamper with the database."""
    from web.context import SESSIONMAKER

    return client.app[SESSIONMAKER]


@pytest.fixture(autouse=True)
def fail_on_logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Like Home Assistant: a test whose server logged an error fails, even if it passed."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, "server logged errors:\n" + "\n".join(r.getMessage() for r in errors)


@pytest.fixture
async def participants(client: Any) -> AsyncIterator[Any]:
    """A factory of aiortc participants (``tests.rtc.RtcParticipant``), all closed — and checked
    for negotiation failures — after the test, once the server has handled their disconnects."""
    from tests.rtc import RtcParticipant, wait_server_idle

    made: list[RtcParticipant] = []

    def make(name: str, **options: Any) -> RtcParticipant:
        participant = RtcParticipant(name, **options)
        made.append(participant)
        return participant

    yield make
    for participant in made:
        await participant.close()
    await wait_server_idle(client)
    for participant in made:
        assert not participant.failures, participant.summary()
