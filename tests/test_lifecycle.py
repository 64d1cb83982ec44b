"""Process lifecycle: migrations from several replicas at once, migrate-before-serve, and worker shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrations, tables
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.jobs.worker import create_worker
from gateway.pipeline import accept_notice
from gateway.queue import enqueue_sync
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_seed import DIVISIONS
from gateway.sandbox.mijnwebwinkel import create_mww_sandbox, create_order
from gateway.sandbox_runner import SandboxPorts, sandbox_settings
from gateway.settings import Settings
from gateway.store import orders
from tests.conftest import DEFAULT_POSTGRES_ADMIN_URL, _postgres_admin, database_backend
from tests.factories import ServedApp, cli_environ, create_sandbox_integration

ROOT = Path(__file__).resolve().parent.parent


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **cli_environ(settings, **extra),
    }


def gateway_process(env: dict[str, str], *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def _schema(url: str) -> tuple[str | None, set[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            revision = await migrations.current_revision(conn)
            names = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
            versions = (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar_one()
    finally:
        await engine.dispose()
    assert versions == 1
    return revision, names


@pytest.mark.skipif(database_backend() != "postgres", reason="the advisory lock is PostgreSQL's; SQLite is one file")
def test_two_migrate_processes_at_once_on_a_fresh_postgres_database(settings: Settings) -> None:
    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
    name = f"gw_migrate_{secrets.token_hex(4)}"
    asyncio.run(_postgres_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        env = process_env(settings, DATABASE_URL=url)
        replicas = [gateway_process(env, "migrate") for _ in range(3)]
        results = [p.communicate(timeout=60) for p in replicas]
        for process, (_, err) in zip(replicas, results, strict=True):
            assert process.returncode == 0, err.decode()
        revision, names = asyncio.run(_schema(url))
        assert revision == migrations.head_revision()
        assert {"integration", "order_sync", "credential"} <= names
    finally:
        asyncio.run(_postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_migrate_brings_an_empty_database_to_head_before_serving(settings: Settings, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    port = free_port()
    server = gateway_process(process_env(settings, DATABASE_URL=url), "serve", "--migrate", "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)
        server.terminate()  # SIGTERM: uvicorn stops accepting, finishes requests in flight, then exits
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert status == 200, err.decode()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM, not a crash.
    assert server.returncode in (0, -signal.SIGTERM), err.decode()
    assert "Finished server process" in err.decode()
    revision, _ = asyncio.run(_schema(url))
    assert revision == migrations.head_revision()


# --- Workers against the sandboxes over HTTP -----------------------------------------------------------------------

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


@pytest.fixture
def sandboxes(settings: Settings) -> Iterator[Sandboxes]:
    yield from serve_sandboxes(settings)


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


async def test_two_workers_on_one_queue_book_every_order_exactly_once(
    engine: AsyncEngine, redis: ArqRedis, sandboxes: Sandboxes
) -> None:
    sandboxes.exact_app.state.sandbox.faults.latency = 0.02  # long enough for the two workers to interleave
    integration_id, sync_ids = await queue_orders(engine, redis, sandboxes, 12)
    async with httpx.AsyncClient() as http_one, httpx.AsyncClient() as http_two:
        workers = [
            create_worker(
                sandboxes.settings,
                redis_pool=redis,
                burst=True,
                with_cron=False,
                handle_signals=False,
                ctx={"engine": engine, "http": http, "worker_name": name},
            )
            for name, http in (("worker-1", http_one), ("worker-2", http_two))
        ]
        await asyncio.gather(*(w.run_check() for w in workers))

    assert all(w.jobs_complete > 0 for w in workers), [w.jobs_complete for w in workers]
    assert sum(w.jobs_complete for w in workers) == 2 * len(sync_ids)  # every job ran; the duplicates did nothing
    await booked_once(engine, sandboxes, integration_id, sync_ids)


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


async def wait_for(condition: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_sigterm_mid_booking_lets_the_worker_finish_the_order_once(
    engine: AsyncEngine, redis: ArqRedis, sandboxes: Sandboxes
) -> None:
    exact = sandboxes.exact_app.state.sandbox
    integration_id, [sync_id] = await queue_orders(engine, redis, sandboxes, 1, duplicates=False)
    exact.faults.latency = 0.8  # every Exact call of the booking is slow: the signal lands in the middle

    async def row_state() -> str:
        async with engine.connect() as conn:
            found = await orders.get_sync(conn, integration_id=integration_id, order_sync_id=sync_id)
        assert found is not None
        return found.state

    async def mid_booking() -> bool:
        return await row_state() == "booking" and any(c.method == "GET" for c in exact.calls)

    worker = gateway_process(worker_env(sandboxes), "worker")
    try:
        await wait_for(mid_booking, within=30, what="the worker to start booking")
        worker.send_signal(signal.SIGTERM)
        assert await row_state() == "booking"  # not booked yet when the signal arrived
        _, err = await asyncio.to_thread(worker.communicate, timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    log = err.decode()
    assert worker.returncode == 0, log
    assert await row_state() == "booked", log
    await booked_once(engine, sandboxes, integration_id, [sync_id])
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    booked = [e for e in lines if e["event"].startswith(f"order {sandboxes.entries()[0]['YourRef']} booked")]
    assert len(booked) == 1, log
    assert booked[0]["job_id"] == f"sync_order:{integration_id}:{sync_id}:0"
    assert (booked[0]["integration_id"], booked[0]["order_number"]) == (
        integration_id,
        sandboxes.entries()[0]["YourRef"],
    )
