"""The test environment: which database the run uses, PostgreSQL's admin connection, emptying the state between tests,
recorded payloads, and running a coroutine from sync code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway import tables
from gateway.local_redis import PrivateRedis, start_private_redis

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


_ENVIRONMENT = threading.Lock()
FAKETIME_VARIABLES = ("LD_PRELOAD", "FAKETIME")


def clock_environment() -> dict[str, str]:
    """What gives a child process this one's clock: under libfaketime (`make test-shifted`) its preload and offset,
    so that a gateway process a test starts agrees with the test on what time it is. Empty otherwise."""
    return {name: os.environ[name] for name in FAKETIME_VARIABLES if name in os.environ}


@contextlib.contextmanager
def without_faketime() -> Iterator[None]:
    """Processes started inside run on the machine's real clock, when the suite itself runs under libfaketime (CI's
    shifted pass, `make test-shifted`): the preload is taken out of the environment they inherit."""
    with _ENVIRONMENT:
        saved = {name: os.environ.get(name) for name in FAKETIME_VARIABLES}
        preload = [lib for lib in (saved["LD_PRELOAD"] or "").split() if "faketime" not in lib]
        os.environ.pop("FAKETIME", None)
        if preload:
            os.environ["LD_PRELOAD"] = " ".join(preload)
        else:
            os.environ.pop("LD_PRELOAD", None)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def start_redis(port: int | None = None) -> PrivateRedis:
    """A private redis-server for tests, on the real clock: redis-server cannot start under libfaketime (it stops on
    libfaketime's recursive clock_gettime guard), and nothing the suite checks depends on Redis's own clock."""
    with without_faketime():
        return start_private_redis(port)
