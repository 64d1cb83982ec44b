"""Shared fixtures: settings, a real database (SQLite or PostgreSQL, chosen by TEST_DATABASE), a real Redis, an arq
pool and burst worker, the app's TestClient, and respx routers for the two vendor APIs.

The suite runs once per database: `TEST_DATABASE=sqlite` (default) or `TEST_DATABASE=postgres`. PostgreSQL comes from
TEST_POSTGRES_URL (default: the local server, database `test`), where each run creates and drops its own database.
Redis comes from TEST_REDIS_URL, or a private redis-server started for the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from arq.worker import Worker
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from gateway import migrations, tables
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.jobs.sync_order import BookingServices, services_from_context
from gateway.local_redis import PrivateRedis, RedisUnavailable, start_private_redis
from gateway.logs import configure_logging
from gateway.queue import create_arq_pool
from gateway.settings import EXACT_COUNTRIES, Settings

PAYLOADS = Path(__file__).parent / "payloads"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MWW_TEST_BASE_URL = "https://api.mww.test/v1"
TEST_PARTNER_TOKEN = "partner-token-s3cr3t-0001"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every `async def` test runs on AnyIO's asyncio backend without a marker on each test."""
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture(autouse=True)
def anyio_backend() -> str:
    """Autouse, so every test has it from collection on: AnyIO otherwise re-creates a marked test's item for its
    backend and drops the test's own `parametrize` values."""
    return "asyncio"


def database_backend() -> str:
    backend = os.environ.get("TEST_DATABASE", "sqlite")
    if backend not in {"sqlite", "postgres"}:
        raise pytest.UsageError("TEST_DATABASE must be sqlite or postgres")
    return backend


async def _postgres_admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database migrated to head, for the whole run; dropped afterwards."""
    if database_backend() == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
        migrations.upgrade(url)
        yield url
        return
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    name = f"gw_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_postgres_admin(admin_url, f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as e:
        reason = f"PostgreSQL not reachable at TEST_POSTGRES_URL ({type(e).__name__})"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} and REQUIRE_POSTGRES=1", pytrace=False)
        pytest.skip(reason)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(_postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """TEST_REDIS_URL, or a private redis-server for this run (so parallel runs never share keys)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    try:
        private: PrivateRedis = start_private_redis()
    except RedisUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    yield private.url
    private.stop()


@pytest.fixture
def fernet_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(database_url: str, redis_server: str, fernet_key: str) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_server,
        secret_key=Secret("test-secret-key-" + "x" * 32),
        encryption_keys=(Secret(fernet_key),),
        public_url="http://testserver",
        mww_base_url=MWW_TEST_BASE_URL,
        mww_partner_token=Secret(TEST_PARTNER_TOKEN),
        exact_hosts={cc: f"https://exact-{cc}.test" for cc in EXACT_COUNTRIES},
        exact_client_id="test-client-id",
        exact_client_secret=Secret("exact-client-secret-0001"),
        log_format="console",
    )


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    configure_logging(level="INFO", fmt="console")


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


async def _reset(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await truncate_all(engine)
    finally:
        await engine.dispose()
    pool = await create_arq_pool(settings.redis_url)
    try:
        await pool.flushdb()
    finally:
        await pool.aclose()


@pytest.fixture
def clean_state(settings: Settings) -> Settings:
    """Empty every table and the Redis database before the test."""
    run_in_thread(_reset(settings))
    return settings


@pytest.fixture
async def engine(clean_state: Settings) -> AsyncIterator[AsyncEngine]:
    """The test database (emptied before the test), on the test's own loop."""
    engine = create_engine(clean_state.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def redis(clean_state: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(clean_state.redis_url)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
def make_worker(settings: Settings, redis: ArqRedis, engine: AsyncEngine) -> Callable[..., Worker]:
    """Build a burst worker on the test Redis; `await worker.run_check()` raises if a job failed."""
    from gateway.jobs.worker import create_worker

    def factory(**ctx: Any) -> Worker:
        queue = ctx.pop("queue_name", None)
        kwargs: dict[str, Any] = {"queue_name": queue} if queue else {}
        return create_worker(
            settings,
            redis_pool=redis,
            burst=True,
            with_cron=False,
            handle_signals=False,
            ctx={"engine": engine, **ctx},
            **kwargs,
        )

    return factory


@pytest.fixture
def app(settings: Settings) -> Any:
    from gateway.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Any, clean_state: Settings) -> Iterator[TestClient]:
    """The app with its lifespan running (its own loop, engine and Redis pool)."""
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for the code under test (respx intercepts it where a test mocks a vendor)."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """No rate governor waits: the Exact limits are far away."""
    return dataclasses.replace(settings, exact_minutely_limit=100_000, exact_daily_limit=1_000_000)


@pytest.fixture
def services(engine: AsyncEngine, fast_settings: Settings, redis: ArqRedis, http: httpx.AsyncClient) -> BookingServices:
    """The booking job's real services (token custody, governor far away, the shop client) for one test."""
    ctx = {"engine": engine, "settings": fast_settings, "cipher": Cipher(fast_settings.encryption_keys), "http": http}
    return services_from_context({**ctx, "redis": redis})


@pytest.fixture
def mww_api(settings: Settings) -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=settings.mww_base_url, assert_all_called=False) as router:
        yield router


@pytest.fixture
def exact_api(settings: Settings) -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=settings.exact_hosts["nl"], assert_all_called=False) as router:
        yield router


def load_payload(name: str) -> Any:
    """Recorded JSON from tests/payloads/<name>.json."""
    return json.loads((PAYLOADS / f"{name}.json").read_text())
