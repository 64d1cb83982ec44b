"""Process lifecycle: migrations from several replicas at once, migrate-before-serve, and worker shutdown."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrations
from gateway.db import create_engine
from gateway.jobs.worker import create_worker
from gateway.local_redis import free_port
from gateway.settings import Settings
from gateway.store import orders
from tests.support.environment import database_backend, postgres_admin, postgres_admin_url
from tests.support.servers import (
    Sandboxes,
    booked_once,
    gateway_process,
    process_env,
    queue_orders,
    wait_for,
    worker_env,
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
    admin_url = postgres_admin_url()
    name = f"gw_migrate_{secrets.token_hex(4)}"
    asyncio.run(postgres_admin(admin_url, f'CREATE DATABASE "{name}"'))
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
        asyncio.run(postgres_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
