"""Database engine creation and the few dialect differences (SQLite vs PostgreSQL); no queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """Create the async engine for sqlite+aiosqlite or postgresql+asyncpg URLs; `pool_size` PostgreSQL connections
    stay open (as many again may be opened for bursts)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take over so BEGIN IMMEDIATE works (SQLAlchemy docs,
        # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite).
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # asyncpg prepares every statement; after five runs PostgreSQL may switch a prepared statement to a generic plan
    # that does not see the bound values. Our states are skewed (nearly every order is booked), and the generic plan
    # of the recovery sweep scanned a million order syncs (bench retention). Custom plans cost a little planning.
    server_settings = {"plan_cache_mode": "force_custom_plan"}
    return create_async_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": server_settings},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so two writers never deadlock on a read-then-write upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(conn: AsyncConnection | AsyncEngine) -> bool:
    return conn.dialect.name == "sqlite"


def _dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    return sqlite.insert(table) if is_sqlite(conn) else postgresql.insert(table)


async def insert_ignore(
    conn: AsyncConnection, table: Table, values: Mapping[str, Any], *, conflict: Sequence[str]
) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING; return the new row's id, or None when the row already existed."""
    stmt = _dialect_insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    result = await conn.execute(stmt.returning(table.c.id))
    row = result.first()
    return None if row is None else int(row[0])


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    *,
    conflict: Sequence[str],
    update: Mapping[str, Any],
) -> int:
    """INSERT … ON CONFLICT DO UPDATE SET `update`; return the row's id."""
    stmt = _dialect_insert(conn, table).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=list(conflict), set_=dict(update))
    result = await conn.execute(stmt.returning(table.c.id))
    return int(result.scalar_one())
