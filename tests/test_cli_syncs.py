"""`gateway syncs ...`: list by state across integrations, retry one, retry all failed, ignore."""

from __future__ import annotations

import functools
import json
from datetime import timedelta
from typing import Any

import anyio
import pytest
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.clock import utcnow
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, sync_job_id
from gateway.settings import Settings
from gateway.store import notices, orders
from tests.support.factories import create_active_integration, run_cli

pytestmark = pytest.mark.anyio  # parametrized async tests need the marker at collection time


async def gateway(settings: Settings, *argv: str) -> int:
    """Run one `gateway` command in-process on its own thread and loop, as a shell would run it."""
    return await anyio.to_thread.run_sync(functools.partial(run_cli, settings, list(argv)))


async def make_sync(
    engine: AsyncEngine,
    integration_id: int,
    number: str,
    state: str,
    *,
    error_kind: str = "validation",
    age_days: int = 0,
) -> orders.OrderSync:
    """An order sync moved to `state` through the store, last changed `age_days` ago."""
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration_id,
            order_number=number,
            status_id=2,
            source="poller",
            dedupe_key=f"{number}:2",
            selected_statuses=(2,),
        )
        sync_id = outcome.order_sync_id
        assert sync_id is not None
        ids: dict[str, Any] = {"integration_id": integration_id, "order_sync_id": sync_id}
        if state == "failed":
            await orders.mark_failed(conn, **ids, error_kind=error_kind, message="Exact refused the entry")
        elif state == "needs_attention":
            await orders.mark_needs_attention(conn, **ids, error_kind=error_kind, message="map VAT category NL-21")
        elif state == "booked":
            await orders.mark_booked(
                conn, **ids, document_type="sales_entry", exact_document_id="guid-1", exact_document_number="70001"
            )
        if age_days:
            await conn.execute(
                update(tables.order_sync)
                .where(tables.order_sync.c.id == sync_id)
                .values(updated_at=utcnow() - timedelta(days=age_days))
            )
        found = await orders.get_sync(conn, **ids)
    assert found is not None
    assert found.state == state
    return found


async def queued_job_ids(redis: ArqRedis, queue: str = QUEUE_DEFAULT) -> set[str]:
    return {j.decode() for j in await redis.zrange(queue, 0, -1)}


async def test_list_shows_problem_syncs_across_integrations_by_default(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        first = await create_active_integration(conn)
        second = await create_active_integration(conn)
    failed = await make_sync(engine, first.id, "101", "failed")
    attention = await make_sync(engine, second.id, "201", "needs_attention")
    await make_sync(engine, first.id, "102", "booked")
    await make_sync(engine, second.id, "202", "queued")

    assert await gateway(settings, "syncs", "list", "--json") == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert {(r["id"], r["integration_id"], r["state"]) for r in rows} == {
        (failed.id, first.id, "failed"),
        (attention.id, second.id, "needs_attention"),
    }
    assert next(r for r in rows if r["id"] == failed.id)["last_error"] == "Exact refused the entry"


async def test_list_filters_by_state_alias_and_integration(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        first = await create_active_integration(conn)
        second = await create_active_integration(conn)
    queued = await make_sync(engine, first.id, "101", "queued")
    await make_sync(engine, second.id, "201", "queued")
    await make_sync(engine, first.id, "102", "failed")

    assert await gateway(settings, "syncs", "list", "--state", "pending", "--integration", str(first.id), "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [queued.id]


async def test_list_prints_a_table_with_a_header(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    await make_sync(engine, integration.id, "555", "failed")

    assert await gateway(settings, "syncs", "list") == EXIT_OK
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["ID", "INTEGRATION_ID", "ORDER_NUMBER", "STATE"]
    assert "555" in line.split()
    assert "failed" in line.split()


async def test_retry_requeues_a_failed_sync_with_a_new_job_generation(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    sync = await make_sync(engine, integration.id, "101", "failed")

    assert await gateway(settings, "syncs", "retry", str(sync.id)) == EXIT_OK

    async with engine.connect() as conn:
        after = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=sync.id)
    assert after is not None
    assert (after.state, after.generation, after.error_kind) == ("queued", 1, None)
    assert await queued_job_ids(redis) == {sync_job_id(integration.id, sync.id, 1)}


@pytest.mark.parametrize("state", [pytest.param("booked", id="booked"), pytest.param("queued", id="queued")])
async def test_retry_refuses_a_sync_that_is_booked_or_queued(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    sync = await make_sync(engine, integration.id, "101", state)

    assert await gateway(settings, "syncs", "retry", str(sync.id)) == EXIT_FAILURE
    assert f"is {state}" in capsys.readouterr().err
    assert await queued_job_ids(redis) == set()


async def test_retry_of_an_unknown_id_fails(engine: AsyncEngine, settings: Settings) -> None:
    assert await gateway(settings, "syncs", "retry", "999999") == EXIT_FAILURE


async def test_retry_failed_requeues_only_the_matching_failed_syncs(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        first = await create_active_integration(conn)
        second = await create_active_integration(conn)
    match = await make_sync(engine, first.id, "101", "failed", error_kind="validation")
    await make_sync(engine, first.id, "102", "failed", error_kind="auth")  # other error kind
    await make_sync(engine, first.id, "103", "failed", error_kind="validation", age_days=10)  # too old
    await make_sync(engine, second.id, "201", "failed", error_kind="validation")  # other integration
    await make_sync(engine, first.id, "104", "needs_attention", error_kind="validation")  # not failed
    since = (utcnow() - timedelta(days=2)).date().isoformat()

    code = await gateway(
        settings,
        "syncs",
        "retry-failed",
        "--integration",
        str(first.id),
        "--error-kind",
        "validation",
        "--since",
        since,
        "--json",
    )

    assert code == EXIT_OK
    assert [(r["id"], r["retried"]) for r in json.loads(capsys.readouterr().out)] == [(match.id, True)]
    assert await queued_job_ids(redis) == {sync_job_id(first.id, match.id, 1)}
    async with engine.connect() as conn:
        failed = await orders.list_syncs(conn, integration_id=first.id, states=("failed",))
    assert len(failed[0]) == 2


async def test_retry_failed_sends_premium_integrations_to_the_priority_queue(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings
) -> None:
    async with engine.begin() as conn:
        premium = await create_active_integration(conn, service_level="premium")
        pro = await create_active_integration(conn)
    fast = await make_sync(engine, premium.id, "1", "failed")
    normal = await make_sync(engine, pro.id, "2", "failed")

    assert await gateway(settings, "syncs", "retry-failed") == EXIT_OK

    assert await queued_job_ids(redis, QUEUE_PRIORITY) == {sync_job_id(premium.id, fast.id, 1)}
    assert await queued_job_ids(redis, QUEUE_DEFAULT) == {sync_job_id(pro.id, normal.id, 1)}


async def test_retry_failed_dry_run_changes_nothing(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    sync = await make_sync(engine, integration.id, "101", "failed")

    assert await gateway(settings, "syncs", "retry-failed", "--dry-run", "--json") == EXIT_OK

    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [sync.id]
    async with engine.connect() as conn:
        after = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=sync.id)
    assert after is not None
    assert after.state == "failed"
    assert await queued_job_ids(redis) == set()


async def test_ignore_marks_a_failed_sync_ignored_and_refuses_a_booked_one(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    failed = await make_sync(engine, integration.id, "101", "failed")
    booked = await make_sync(engine, integration.id, "102", "booked")

    assert await gateway(settings, "syncs", "ignore", str(failed.id)) == EXIT_OK
    assert await gateway(settings, "syncs", "ignore", str(booked.id)) == EXIT_FAILURE
    assert await gateway(settings, "syncs", "ignore", "999999") == EXIT_FAILURE

    async with engine.connect() as conn:
        states = await orders.count_by_state(conn, integration_id=integration.id)
    assert states == {"ignored": 1, "booked": 1}
