"""The test environment: which database the run uses, PostgreSQL's admin connection, emptying the state between tests,
recorded payloads, and running a coroutine from sync code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway import tables

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent  # the repository (the clone under test)
PAYLOADS = TESTS / "payloads"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MWW_TEST_BASE_URL = "https://api.mww.test/v1"
TEST_PARTNER_TOKEN = "partner-token-s3cr3t-0001"


def database_backend() -> str:
    """`TEST_DATABASE`: sqlite (default) or postgres."""
    backend = os.environ.get("TEST_DATABASE", "sqlite")
    if backend not in {"sqlite", "postgres"}:
        raise pytest.UsageError("TEST_DATABASE must be sqlite or postgres")
    return backend


def postgres_admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)


async def postgres_admin(url: str, statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) outside a transaction."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(tables.metadata.sorted_tables):
                await conn.execute(table.delete())


def run_in_thread(coro: Any) -> Any:
    """Run a coroutine to completion on a fresh loop in another thread (safe from sync tests and fixtures)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def load_payload(name: str) -> Any:
    """Recorded JSON from tests/payloads/<name>.json."""
    return json.loads((PAYLOADS / f"{name}.json").read_text())
