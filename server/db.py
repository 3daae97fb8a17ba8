"""Database engine and migrations.

SQLite (default) and PostgreSQL through one async engine. On SQLite a unit of work
(``cases.uow.transaction``, which marks its connection with ``WRITER_EXECUTION_OPTION``) starts with
``BEGIN IMMEDIATE``: writers are serialised up front instead of failing with SQLITE_BUSY half-way,
which also keeps the audit hash chain linear (PostgreSQL uses an advisory lock for that). Every
other session only reads and starts with a plain ``BEGIN``: in WAL mode readers neither wait for
the writer nor hold it up (taking the write lock for reads queued every hearing event behind every
join — see bench/signaling.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from cases.uow import WRITER_EXECUTION_OPTION, serialise_writers

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # Default is 5 s of busy waiting, which a burst of hearing events can exceed.
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            writer = conn.get_execution_options().get(WRITER_EXECUTION_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name == "sqlite":
        serialise_writers(maker)
    return maker


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Alembic's env runs its own event loop, so it runs in a
    worker thread here."""
    await asyncio.to_thread(upgrade_sync, url, revision)
