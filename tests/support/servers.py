"""Apps and processes the tests serve: sandboxes and the gateway over real HTTP in threads, both sandboxes wired
to the gateway's settings, the gateway's own processes (`python -m gateway ...`), and waiting until something is so."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from gateway import tables
from gateway.app import create_app
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.jobs.worker import create_worker
from gateway.local_redis import free_port
from gateway.pipeline import accept_notice
from gateway.queue import enqueue_sync
from gateway.routes.webhooks import sign
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_seed import DIVISIONS
from gateway.sandbox.mijnwebwinkel import create_mww_sandbox, create_order
from gateway.sandbox.mww_seed import SANDBOX_PARTNER_TOKEN, SANDBOX_SHOP_TOKEN
from gateway.sandbox_runner import SandboxPorts, sandbox_settings
from gateway.settings import Settings
from gateway.shop_connection import rotate_signing_secret, rotate_webhook_key
from gateway.store import credentials, orders
from tests.support.environment import ROOT, clock_environment
from tests.support.factories import PAGE_PASSWORD, cli_environ, create_login, create_sandbox_integration, log_in


class ServedApp:
    """A Starlette app served over real HTTP by uvicorn in a background thread (for sandboxes in flow tests)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the served app did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ServerThread:
    """A Starlette app under uvicorn in a background thread on a given port (with its lifespan, unlike ServedApp)."""

    def __init__(self, app: Any, port: int, *, lifespan: str = "on") -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class WorkerThread:
    """The two arq workers (priority and default queue) in their own thread and event loop, as in production."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Future[Any] | None = None
        self.started = threading.Event()

    def _run(self) -> None:
        from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY

        asyncio.set_event_loop(self.loop)
        workers = [
            create_worker(self.settings, queue_name=queue, handle_signals=False, with_cron=False)
            for queue in (QUEUE_PRIORITY, QUEUE_DEFAULT)
        ]
        self.task = asyncio.gather(*(w.async_run() for w in workers))
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        with warnings.catch_warnings():
            # arq's Worker.close still calls redis-py's deprecated close(); nothing to fix on our side.
            warnings.simplefilter("ignore", DeprecationWarning)
            for worker in workers:
                self.loop.run_until_complete(worker.close())
        self.loop.close()

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=15)


# --- Both sandboxes over HTTP, wired to the gateway's settings ----------------------------------------------------

FAST_LIMITS = {"minutely_limit": 100_000, "daily_limit": 1_000_000}


@dataclasses.dataclass
class Sandboxes:
    """Both sandboxes served over HTTP, and the gateway settings that point at them."""

    mww_app: Any
    exact_app: Any
    settings: Settings

    def new_order(self) -> str:
        state = self.mww_app.state.sandbox
        return str(create_order(state, state.main_shop(), "domestic", 2).number)

    def entries(self) -> list[dict[str, Any]]:
        return list(self.exact_app.state.sandbox.divisions[DIVISIONS[0].code].rows["SalesEntries"])


def serve_sandboxes(settings: Settings) -> Iterator[Sandboxes]:
    mww_app = create_mww_sandbox(faults_enabled=True)
    exact_app = create_exact_sandbox(faults_enabled=True, **FAST_LIMITS)
    with ServedApp(mww_app) as mww, ServedApp(exact_app) as exact:
        served = sandbox_settings(settings, SandboxPorts(mww=mww.port, exact=exact.port))
        yield Sandboxes(
            mww_app,
            exact_app,
            dataclasses.replace(served, exact_minutely_limit=100_000, exact_daily_limit=1_000_000),
        )


async def queue_orders(
    engine: AsyncEngine, redis: ArqRedis, sandboxes: Sandboxes, count: int, *, duplicates: bool = True
) -> tuple[int, list[int]]:
    """`count` new shop orders noticed and queued; with `duplicates` each also gets a second job (generation 1), as if
    a duplicate trigger or an operator retry raced the first one. The poller is kept away (next poll in a day)."""
    async with engine.begin() as conn:
        integration = await create_sandbox_integration(
            conn,
            exact_app=sandboxes.exact_app,
            cipher=Cipher(sandboxes.settings.encryption_keys),
            next_poll_at=utcnow() + timedelta(days=1),
        )
    sync_ids = []
    for _ in range(count):
        outcome = await accept_notice(
            engine,
            redis,
            integration=integration,
            order_number=sandboxes.new_order(),
            status_id=2,
            source="webhook",
            dedupe_key=secrets.token_hex(8),
        )
        assert outcome.order_sync_id is not None
        sync_ids.append(outcome.order_sync_id)
        if duplicates:
            await enqueue_sync(redis, integration_id=integration.id, order_sync_id=outcome.order_sync_id, generation=1)
    return integration.id, sync_ids


async def booked_once(engine: AsyncEngine, sandboxes: Sandboxes, integration_id: int, sync_ids: list[int]) -> None:
    """Every order is booked, with one Exact entry carrying its number and one booking attempt."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.order_sync).where(tables.order_sync.c.id.in_(sync_ids)))).all()
        booked_attempts = (
            (
                await conn.execute(
                    select(tables.sync_attempt.c.order_sync_id).where(
                        tables.sync_attempt.c.outcome.in_(("booked", "adopted"))
                    )
                )
            )
            .scalars()
            .all()
        )
    assert {r.state for r in rows} == {"booked"}
    refs = [e["YourRef"] for e in sandboxes.entries()]
    assert sorted(refs) == sorted(r.order_number for r in rows)
    assert sorted(booked_attempts) == sorted(sync_ids)
    assert {r.exact_document_id for r in rows} == {str(e["EntryID"]) for e in sandboxes.entries()}
    assert all(r.integration_id == integration_id for r in rows)


def worker_env(sandboxes: Sandboxes) -> dict[str, str]:
    settings = sandboxes.settings
    hosts = {f"EXACT_HOST_{cc.upper()}": url for cc, url in settings.exact_hosts.items()}
    return process_env(
        settings,
        MWW_BASE_URL=settings.mww_base_url,
        MWW_PARTNER_TOKEN=str(settings.mww_partner_token),
        EXACT_CLIENT_ID=settings.exact_client_id,
        EXACT_CLIENT_SECRET=str(settings.exact_client_secret),
        EXACT_MINUTELY_LIMIT=str(settings.exact_minutely_limit),
        EXACT_DAILY_LIMIT=str(settings.exact_daily_limit),
        LOG_FORMAT="json",
        **hosts,
    )


# --- The gateway's own processes ------------------------------------------------------------------------------------


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **clock_environment(),
        **cli_environ(settings, **extra),
    }


def gateway_process(env: dict[str, str], *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def wait_for(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Poll `condition` every 50 ms until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# --- A whole flow with every secret in play (log redaction, Redis contents, metrics) ---------------------------------

POLLER_AWAY = datetime(2100, 1, 1, tzinfo=UTC)  # next_poll_at that keeps the poller off a test's shop (any "now")
METRICS_TOKEN = "metrics-token-flow-0001"
TOKEN_AGE = 700.0  # seconds: the stored Exact access token has expired, so the booking renews it first


@dataclasses.dataclass
class Flow:
    """What a full flow left behind: the served sandboxes' settings, ids, and every secret that was in play."""

    settings: Settings
    integration_id: int
    order_number: str
    secrets: dict[str, str] = dataclasses.field(default_factory=dict)
    scrape: str = ""


FlowSandboxes = tuple[Any, Any, Settings, list[float]]


def serve_flow_sandboxes(settings: Settings) -> Iterator[FlowSandboxes]:
    """Both sandboxes over HTTP; the Exact one on a clock the test can set back (to issue an already old token)."""
    offset = [0.0]
    mww_app = create_mww_sandbox(faults_enabled=False)
    exact_app = create_exact_sandbox(clock=lambda: time.time() + offset[0], minutely_limit=10_000, daily_limit=100_000)
    with ServedApp(mww_app) as mww, ServedApp(exact_app) as exact:
        served = sandbox_settings(settings, SandboxPorts(mww=mww.port, exact=exact.port))
        served = dataclasses.replace(
            served, exact_minutely_limit=10_000, exact_daily_limit=100_000, metrics_token=Secret(METRICS_TOKEN)
        )
        yield mww_app, exact_app, served, offset


async def run_full_flow(engine: AsyncEngine, redis: ArqRedis, sandboxes: FlowSandboxes) -> Flow:
    """Owner logs in and opens the dashboard; a signed webhook notice arrives; a worker renews the Exact token and
    books the order; the operator scrapes /metrics."""
    mww_app, exact_app, settings, offset = sandboxes
    cipher = Cipher(settings.encryption_keys)
    email = f"owner-{secrets.token_hex(3)}@shop.test"
    offset[0] = -TOKEN_AGE
    async with engine.begin() as conn:
        account_id = await create_login(conn, email=email)
        integration = await create_sandbox_integration(
            conn, exact_app=exact_app, cipher=cipher, account_id=account_id, next_poll_at=POLLER_AWAY
        )
        old = await credentials.get_credential(
            conn, integration_id=integration.id, kind=credentials.EXACT_OAUTH, cipher=cipher
        )
        webhook_key = await rotate_webhook_key(conn, integration_id=integration.id)
        signing_secret = await rotate_signing_secret(conn, integration_id=integration.id, cipher=cipher)
    offset[0] = 0.0
    state = mww_app.state.sandbox
    number = str(create_order(state, state.main_shop(), "domestic", 2).number)
    flow = Flow(settings, integration.id, number)
    assert old is not None
    flow.secrets.update(
        {
            "old exact tokens": old.secret,
            "webhook key": webhook_key,
            "signing secret": signing_secret,
            "password": PAGE_PASSWORD,
            "shop token": SANDBOX_SHOP_TOKEN,
            "partner token": SANDBOX_PARTNER_TOKEN,
            "exact client secret": str(settings.exact_client_secret),
            "secret key": str(settings.secret_key),
            "encryption key": str(settings.encryption_keys[0]),
            "metrics token": METRICS_TOKEN,
        }
    )
    for name, value in json.loads(old.secret).items():
        if "token" in name:
            flow.secrets[f"old {name}"] = str(value)
    with TestClient(create_app(settings)) as client:
        log_in(client, email)
        flow.secrets["session cookie"] = client.cookies["gw_session"]
        assert client.get(f"/integrations/{integration.id}/dashboard").status_code == 200
        body = json.dumps({"order_number": number, "status": 2}).encode()
        msg_id, stamp = f"msg_{secrets.token_hex(6)}", str(int(time.time()))
        response = client.post(
            f"/webhooks/mijnwebwinkel/{webhook_key}?token={SANDBOX_SHOP_TOKEN}",
            content=body,
            headers={
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": stamp,
                "webhook-signature": f"v1,{sign(signing_secret, msg_id, stamp, body)}",
            },
        )
        assert response.status_code == 202, response.text
        flow.secrets["webhook signature"] = sign(signing_secret, msg_id, stamp, body)
        async with httpx.AsyncClient() as http:
            worker = create_worker(
                settings,
                redis_pool=redis,
                burst=True,
                with_cron=False,
                handle_signals=False,
                ctx={"engine": engine, "http": http},
            )
            assert await worker.run_check() == 1
        scrape = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scrape.status_code == 200, scrape.text
        flow.scrape = scrape.text
    async with engine.connect() as conn:
        sync = await orders.get_sync_by_number(conn, integration_id=integration.id, order_number=number)
        new = await credentials.get_credential(
            conn, integration_id=integration.id, kind=credentials.EXACT_OAUTH, cipher=cipher
        )
    assert sync is not None
    assert sync.state == "booked", sync.last_error
    assert new is not None
    assert new.secret != old.secret  # the token was renewed during the flow
    for name, value in json.loads(new.secret).items():
        if "token" in name:
            flow.secrets[f"new {name}"] = str(value)
    return flow
