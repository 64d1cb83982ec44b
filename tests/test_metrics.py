"""/metrics: bearer-protected Prometheus exposition with scrape-time gauges, and multiprocess aggregation."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from gateway import metrics, tables
from gateway.app import create_app
from gateway.clients.errors import ApiError, RateLimitedError
from gateway.clients.exact import ExactClient
from gateway.clock import utcnow
from gateway.local_redis import free_port
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, create_arq_pool, enqueue_sync
from gateway.ratelimit import RateGovernor
from gateway.settings import Settings
from gateway.store import notices
from tests.support.environment import ROOT, run_in_thread
from tests.support.factories import create_active_integration
from tests.support.servers import FlowSandboxes, Sandboxes, gateway_process, queue_orders, run_full_flow, worker_env

METRICS_TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def metrics_client(settings: Settings, clean_state: Settings) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, metrics_token=Secret(METRICS_TOKEN)))
    with TestClient(app) as client:
        yield client


def test_metrics_answer_404_while_no_token_is_configured(client: TestClient) -> None:
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Basic {METRICS_TOKEN}"}, id="wrong-scheme"),
        pytest.param({"Authorization": f"Bearer {METRICS_TOKEN}x"}, id="longer-token"),
    ],
)
def test_metrics_refuse_a_missing_or_wrong_bearer_token(metrics_client: TestClient, headers: dict[str, str]) -> None:
    r = metrics_client.get("/metrics", headers=headers)
    assert r.status_code == 401
    assert "gateway_" not in r.text


async def _arrange_queue(settings: Settings) -> None:
    from gateway.db import create_engine

    engine = create_engine(settings.database_url)
    pool = await create_arq_pool(settings.redis_url)
    try:
        async with engine.begin() as conn:
            integration = await create_active_integration(conn)
            for number, minutes_ago in (("1", 30), ("2", 5)):
                outcome = await notices.record_notice(
                    conn,
                    integration_id=integration.id,
                    order_number=number,
                    status_id=2,
                    source="webhook",
                    dedupe_key=number,
                    selected_statuses=(2,),
                )
                await conn.execute(
                    update(tables.order_sync)
                    .where(tables.order_sync.c.id == outcome.order_sync_id)
                    .values(enqueued_at=utcnow() - timedelta(minutes=minutes_ago))
                )
                assert outcome.order_sync_id is not None
                await enqueue_sync(pool, integration_id=integration.id, order_sync_id=outcome.order_sync_id)
            await enqueue_sync(pool, integration_id=integration.id, order_sync_id=999, priority=True)
    finally:
        await pool.aclose()
        await engine.dispose()


def test_scrape_reads_queue_depth_and_oldest_pending_order_age(metrics_client: TestClient, settings: Settings) -> None:
    run_in_thread(_arrange_queue(settings))

    r = metrics_client.get("/metrics", headers=AUTH)

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = samples(r.text)
    assert values[("gateway_queue_depth", (("queue", QUEUE_DEFAULT),))] == 2
    assert values[("gateway_queue_depth", (("queue", QUEUE_PRIORITY),))] == 1
    age = values[("gateway_oldest_pending_order_age_seconds", ())]
    assert 30 * 60 <= age < 31 * 60


def test_scrape_of_an_idle_gateway_reports_zero_waiting(metrics_client: TestClient) -> None:
    values = samples(metrics_client.get("/metrics", headers=AUTH).text)
    assert values[("gateway_oldest_pending_order_age_seconds", ())] == 0
    assert values[("gateway_queue_depth", (("queue", QUEUE_DEFAULT),))] == 0


def test_counters_carry_no_per_customer_label() -> None:
    labels = {
        name
        for metric in (
            metrics.WEBHOOK_NOTICES,
            metrics.POLL_RUNS,
            metrics.BOOKINGS,
            metrics.EXACT_CALLS,
            metrics.RATE_LIMIT_DEFERRALS,
            metrics.TOKEN_RENEWALS,
            metrics.JOB_DURATION,
        )
        for name in metric._labelnames
    }
    assert not labels & {"integration_id", "integration", "shop", "division", "account", "order_number"}


@pytest.mark.parametrize(
    ("job_id", "name"),
    [
        pytest.param("sync_order:1:2:0", "sync_order", id="sync"),
        pytest.param("cron:poll_shops:1700000000123", "poll_shops", id="cron"),
        pytest.param("3f2a9c", "other", id="random"),
        pytest.param(None, "other", id="none"),
    ],
)
def test_job_name_label_comes_from_the_job_id(job_id: str | None, name: str) -> None:
    assert metrics.job_name(job_id) == name


@pytest.mark.parametrize(("code", "label"), [(200, "2xx"), (201, "2xx"), (429, "4xx"), (503, "5xx"), (None, "error")])
def test_status_class_label(code: int | None, label: str) -> None:
    assert metrics.status_class(code) == label


WRITER = """
import sys
from gateway import metrics
metrics.BOOKINGS.labels(result="booked", document_type="sales_entry").inc(int(sys.argv[1]))
metrics.EXACT_CALLS.labels(status_class="2xx").inc(int(sys.argv[1]) * 2)
metrics.JOB_DURATION.labels(job="sync_order").observe(0.3)
"""


def test_multiprocess_mode_aggregates_what_several_processes_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics_client: TestClient
) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {"PATH": "/usr/bin:/bin", metrics.MULTIPROC_ENV: str(multiproc)}
    for count in ("3", "4"):
        subprocess.run([sys.executable, "-c", WRITER, count], env=env, check=True, cwd=Path(__file__).parent.parent)
    assert len(list(multiproc.glob("*.db"))) >= 2  # one file per process and metric type

    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(multiproc))
    values = samples(metrics_client.get("/metrics", headers=AUTH).text)

    assert values[("gateway_bookings_total", (("document_type", "sales_entry"), ("result", "booked")))] == 7
    assert values[("gateway_exact_calls_total", (("status_class", "2xx"),))] == 14
    assert values[("gateway_job_duration_seconds_count", (("job", "sync_order"),))] == 2
    assert values[("gateway_queue_depth", (("queue", QUEUE_DEFAULT),))] == 0


def counter(metric: Any, **labels: str) -> float:
    """The current value of one labelled counter child in this process."""
    return float(metric.labels(**labels)._value.get())


async def test_exact_calls_are_counted_by_status_class(settings: Settings, exact_api: respx.MockRouter) -> None:
    exact_api.get(path__regex=r"/api/v1/1/crm/Accounts").mock(
        side_effect=[
            httpx.Response(200, json={"d": {"results": []}}),
            httpx.Response(404, json={"error": {"message": {"value": "not found"}}}),
            httpx.ConnectTimeout("slow"),
        ]
    )
    before = {c: counter(metrics.EXACT_CALLS, status_class=c) for c in ("2xx", "4xx", "error")}
    async with httpx.AsyncClient() as http:
        client = ExactClient(http, host=settings.exact_hosts["nl"], division=1)
        await client.get_all("crm/Accounts", select=["ID"], filter="Email eq 'a@b.test'")
        for _ in range(2):
            with pytest.raises(ApiError):
                await client.get_all("crm/Accounts", select=["ID"], filter="Email eq 'a@b.test'")

    after = {c: counter(metrics.EXACT_CALLS, status_class=c) for c in before}
    assert {c: after[c] - before[c] for c in before} == {"2xx": 1, "4xx": 1, "error": 1}


async def test_a_call_refused_by_the_rate_governor_counts_as_a_deferral(redis: ArqRedis) -> None:
    governor = RateGovernor(redis, minutely_limit=1, daily_limit=100, max_wait=0)
    before = counter(metrics.RATE_LIMIT_DEFERRALS, limit="minutely")
    await governor.acquire(7)
    with pytest.raises(RateLimitedError):
        await governor.acquire(7)
    assert counter(metrics.RATE_LIMIT_DEFERRALS, limit="minutely") == before + 1


async def test_a_scrape_after_a_full_flow_shows_every_counter_of_it_moved(
    engine: AsyncEngine, redis: ArqRedis, flow_sandboxes: FlowSandboxes
) -> None:
    before = samples(generate_latest(metrics.REGISTRY).decode())

    flow = await run_full_flow(engine, redis, flow_sandboxes)  # webhook -> worker -> token renewal -> booking

    after = samples(flow.scrape)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("gateway_webhook_notices_total", result="queued") == 1
    assert moved("gateway_bookings_total", result="booked", document_type="sales_entry") == 1
    assert moved("gateway_token_renewals_total", result="ok") == 1
    assert moved("gateway_exact_calls_total", status_class="2xx") >= 2  # at least the look-up by reference and the POST
    assert moved("gateway_exact_calls_total", status_class="5xx") == 0
    assert moved("gateway_job_duration_seconds_count", job="sync_order") == 1
    assert moved("gateway_job_duration_seconds_sum", job="sync_order") > 0
    assert after[("gateway_oldest_pending_order_age_seconds", ())] == 0  # the only order is booked


async def test_a_worker_process_counts_into_the_shared_directory_the_web_scrape_reads(
    engine: AsyncEngine,
    redis: ArqRedis,
    sandboxes: Sandboxes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    metrics_client: TestClient,
) -> None:
    """The deployment docs/operations.md describes: web and worker share PROMETHEUS_MULTIPROC_DIR."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    _, sync_ids = await queue_orders(engine, redis, sandboxes, 2, duplicates=False)
    env = {**worker_env(sandboxes), metrics.MULTIPROC_ENV: str(multiproc)}

    worker = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "worker", "--burst"], env=env, cwd=ROOT, capture_output=True
    )

    assert worker.returncode == 0, worker.stderr.decode()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(multiproc))
    values = samples(metrics_client.get("/metrics", headers=AUTH).text)
    assert values[("gateway_bookings_total", (("document_type", "sales_entry"), ("result", "booked")))] == len(sync_ids)
    assert values[("gateway_job_duration_seconds_count", (("job", "sync_order"),))] == len(sync_ids)
    assert values[("gateway_exact_calls_total", (("status_class", "2xx"),))] >= 2 * len(sync_ids)


async def test_a_worker_alone_serves_its_counters_on_its_own_port(
    engine: AsyncEngine, redis: ArqRedis, sandboxes: Sandboxes
) -> None:
    """A worker on a host of its own (no shared directory, no web process): WORKER_METRICS_PORT."""
    _, sync_ids = await queue_orders(engine, redis, sandboxes, 2, duplicates=False)
    port = free_port()
    env = {**worker_env(sandboxes), "WORKER_METRICS_PORT": str(port), "WORKER_METRICS_HOST": "127.0.0.1"}
    env.pop(metrics.MULTIPROC_ENV, None)
    worker = gateway_process(env, "worker")
    booked = ("gateway_bookings_total", (("document_type", "sales_entry"), ("result", "booked")))
    try:
        values: dict[Any, float] = {}
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                assert worker.poll() is None, "the worker exited"
                with contextlib.suppress(httpx.TransportError):
                    values = samples((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
                if values.get(booked) == len(sync_ids):
                    break
                await asyncio.sleep(0.1)
        assert values.get(booked) == len(sync_ids), values
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(worker.communicate, timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err.decode()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/metrics")
