"""Shared fixtures: settings, a real database (SQLite or PostgreSQL, chosen by TEST_DATABASE), a real Redis, an arq
pool and burst worker, the app's TestClient, and respx routers for the two vendor APIs.

The suite runs once per database: `TEST_DATABASE=sqlite` (default) or `TEST_DATABASE=postgres`. PostgreSQL comes from
TEST_POSTGRES_URL (default: the local server, database `test`), where each run creates and drops its own database.
Redis comes from TEST_REDIS_URL, or a private redis-server started for the run.

Every fixture is defined here, once; what fixtures and tests share besides (builders, fakes, servers, waiters) lives
in tests/support, and no test module imports another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from arq.worker import Worker
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from gateway import migrations
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.jobs.sync_order import BookingServices, services_from_context
from gateway.local_redis import PrivateRedis, RedisUnavailable, free_port
from gateway.logs import configure_logging
from gateway.queue import create_arq_pool
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.mijnwebwinkel import SANDBOX_PARTNER_TOKEN, create_mww_sandbox
from gateway.settings import EXACT_COUNTRIES, Settings
from tests.support.booking_sandbox import BookingSandbox, open_booking_sandbox
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, Live
from tests.support.environment import (
    MWW_TEST_BASE_URL,
    TEST_PARTNER_TOKEN,
    database_backend,
    postgres_admin,
    postgres_admin_url,
    run_in_thread,
    start_redis,
    truncate_all,
)
from tests.support.fake_exact import FakeExact, serve_orders
from tests.support.servers import (
    FlowSandboxes,
    Sandboxes,
    ServedApp,
    ServerThread,
    WorkerThread,
    serve_flow_sandboxes,
    serve_sandboxes,
)

EXACT_CLIENT_ID = "test-client-id"
EXACT_CLIENT_SECRET = "exact-client-secret-0001"


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


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database migrated to head, for the whole run; dropped afterwards."""
    if database_backend() == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
        migrations.upgrade(url)
        yield url
        return
    admin_url = postgres_admin_url()
    name = f"gw_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(postgres_admin(admin_url, f'CREATE DATABASE "{name}"'))
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
        asyncio.run(postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """TEST_REDIS_URL, or a private redis-server for this run (so parallel runs never share keys)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    try:
        private: PrivateRedis = start_redis()
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
        exact_client_id=EXACT_CLIENT_ID,
        exact_client_secret=Secret(EXACT_CLIENT_SECRET),
        log_format="console",
    )


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    configure_logging(level="INFO", fmt="console")


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
    """The app with its lifespan running (its own loop, engine and Redis pool), asking for English pages: assertions
    quote the English text (test_i18n.py asks for Dutch)."""
    with TestClient(app, base_url="http://testserver", headers={"Accept-Language": "en"}) as client:
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
def booking_services(
    engine: AsyncEngine, fast_settings: Settings, redis: ArqRedis, http: httpx.AsyncClient
) -> BookingServices:
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


@pytest.fixture
def cipher(settings: Settings) -> Cipher:
    return Cipher(settings.encryption_keys)


@pytest.fixture
def ctx(settings: Settings, engine: AsyncEngine, redis: ArqRedis, http: httpx.AsyncClient, cipher: Cipher) -> dict:
    """The context a worker hands its jobs (settings, engine, cipher, http, redis)."""
    return {"settings": settings, "engine": engine, "cipher": cipher, "http": http, "redis": redis}


# --- The vendors: respx stand-ins, and the sandboxes in-process or over HTTP -----------------------------------------


@pytest.fixture
def fake_exact(exact_api: respx.MockRouter) -> FakeExact:
    """One Exact division on the `exact_api` router that checks, stores and numbers what it is sent."""
    return FakeExact(exact_api)


@pytest.fixture
def shop_orders(mww_api: respx.MockRouter) -> dict[str, dict[str, Any]]:
    """The shop's orders by number, served on the `mww_api` router: put an order in to serve it."""
    return serve_orders(mww_api)


@pytest.fixture
def exact_sandbox() -> Any:
    """The sandbox Exact app (checking the test settings' client credentials at its token endpoint)."""
    return create_exact_sandbox(client_id=EXACT_CLIENT_ID, client_secret=EXACT_CLIENT_SECRET)


@pytest.fixture
async def exact_sandbox_http(exact_sandbox: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose every request goes to `exact_sandbox`, whatever the host."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=exact_sandbox)) as client:
        yield client


@pytest.fixture
def mww_sandbox() -> Any:
    """The sandbox Mijnwebwinkel app, faults switchable."""
    return create_mww_sandbox(faults_enabled=True)


@pytest.fixture
async def booking_sandbox(settings: Settings) -> AsyncIterator[BookingSandbox]:
    """The sandbox Exact ready for the booking job, on an httpx client mounted at the settings' nl host."""
    async with open_booking_sandbox(settings) as sandbox:
        yield sandbox


@pytest.fixture
def sandboxes(settings: Settings) -> Iterator[Sandboxes]:
    """Both sandboxes over HTTP, and settings pointing the gateway at them (rate limits far away)."""
    yield from serve_sandboxes(settings)


@pytest.fixture
def flow_sandboxes(settings: Settings) -> Iterator[FlowSandboxes]:
    """Both sandboxes over HTTP for a whole flow; the Exact one on a clock the test can set back."""
    yield from serve_flow_sandboxes(settings)


# --- The set-up wizard against both sandboxes -----------------------------------------------------------------------


@pytest.fixture
def wizard_sandboxes() -> Iterator[dict[str, ServedApp]]:
    """Both sandboxes over HTTP, as a new owner's wizard meets them (no faults, default limits)."""
    with ServedApp(create_mww_sandbox(faults_enabled=False)) as mww, ServedApp(create_exact_sandbox()) as exact:
        yield {"mww": mww, "exact": exact}


@pytest.fixture
def wizard_settings(settings: Settings, wizard_sandboxes: dict[str, ServedApp]) -> Settings:
    return dataclasses.replace(
        settings,
        mww_base_url=f"{wizard_sandboxes['mww'].url}/v1",
        mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN),
        exact_hosts=dict.fromkeys(EXACT_COUNTRIES, wizard_sandboxes["exact"].url),
        sandbox_enabled=True,
    )


@pytest.fixture
def wizard(wizard_settings: Settings, clean_state: Settings) -> Iterator[TestClient]:
    """The gateway's pages (in English) on `wizard_settings`."""
    from gateway.app import create_app

    with TestClient(
        create_app(wizard_settings), base_url="http://testserver", headers={"Accept-Language": "en"}
    ) as client:
        yield client


# --- Browser tests: Debian's headless Chromium and the whole gateway live ------------------------------------------


@pytest.fixture(scope="module")
def browser(database_url: str, redis_server: str) -> Iterator[Any]:
    """One Chromium per module; skipped without chromium unless REQUIRE_BROWSER=1 (CI). Playwright's sync API runs an
    event loop on this thread while it lives, so it must stop before the async tests of other modules run, and the
    database and Redis (set up with asyncio.run) come first."""
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} and REQUIRE_BROWSER=1", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live(settings: Settings, clean_state: Settings) -> Iterator[Live]:
    """Sandboxes, the gateway and its worker, wired like `gateway demo` (sandbox settings), on free ports."""
    from gateway.app import create_app

    mww_port, exact_port, port = free_port(), free_port(), free_port()
    live_settings = dataclasses.replace(
        settings,
        public_url=f"http://127.0.0.1:{port}",
        mww_base_url=f"http://127.0.0.1:{mww_port}/v1",
        mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN),
        exact_hosts=dict.fromkeys(EXACT_COUNTRIES, f"http://127.0.0.1:{exact_port}"),
        sandbox_enabled=True,
        log_level="WARNING",
    )
    mww = create_mww_sandbox(faults_enabled=True)
    exact = create_exact_sandbox(faults_enabled=True)
    with (
        ServerThread(mww, mww_port, lifespan="off") as mww_server,
        ServerThread(exact, exact_port, lifespan="off") as exact_server,
        ServerThread(create_app(live_settings), port) as gateway,
        WorkerThread(live_settings),
    ):
        yield Live(gateway.url, mww_server.url, exact_server.url, live_settings)
