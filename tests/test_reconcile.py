from datetime import date, timedelta

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from sqlalchemy import update

from gateway import pipeline, tables
from gateway.clock import utcnow
from gateway.jobs import initial_export as export_job
from gateway.jobs.reconcile import reconcile_orders
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, deserialize, sync_job_id
from gateway.store import exports, orders
from gateway.store.integrations import Integration
from tests.support.factories import create_active_integration

pytestmark = pytest.mark.anyio

NOW = timedelta(0)  # stale_after for tests: every row counts as old enough


async def queued_order(ctx, number: str = "8001", **columns) -> tuple[Integration, int]:  # type: ignore[no-untyped-def]
    async with ctx["engine"].begin() as conn:
        integration = await create_active_integration(conn, **columns)
    outcome = await pipeline.accept_notice(
        ctx["engine"],
        ctx["redis"],
        integration=integration,
        order_number=number,
        status_id=2,
        source="webhook",
        dedupe_key=f"{number}:2",
    )
    return integration, outcome.order_sync_id


async def set_row(ctx, order_sync_id: int, **values) -> None:  # type: ignore[no-untyped-def]
    async with ctx["engine"].begin() as conn:
        await conn.execute(update(tables.order_sync).where(tables.order_sync.c.id == order_sync_id).values(**values))


async def jobs(redis: ArqRedis, queue: str = QUEUE_DEFAULT) -> list[str]:
    return [j.decode() for j in await redis.zrange(queue, 0, -1)]


async def test_a_flushed_redis_gets_the_order_queued_again(ctx) -> None:
    integration, sync_id = await queued_order(ctx)
    job_id = sync_job_id(integration.id, sync_id)
    assert await jobs(ctx["redis"]) == [job_id]
    await ctx["redis"].flushdb()
    summary = await reconcile_orders(ctx, stale_after=NOW)
    assert "1 re-enqueued" in summary
    assert await jobs(ctx["redis"]) == [job_id]
    info = await Job(job_id, ctx["redis"], _deserializer=deserialize).info()
    assert (info.function, list(info.args)) == ("sync_order", [sync_id])  # ids only


async def test_jobs_that_still_exist_are_left_alone(ctx) -> None:
    await queued_order(ctx)
    assert "0 re-enqueued" in await reconcile_orders(ctx, stale_after=NOW)
    assert len(await jobs(ctx["redis"])) == 1


async def test_recently_queued_rows_are_not_second_guessed(ctx) -> None:
    await queued_order(ctx)
    await ctx["redis"].flushdb()
    assert (await reconcile_orders(ctx)).startswith("checked 0 order syncs")
    assert await jobs(ctx["redis"]) == []


@pytest.mark.parametrize(
    ("values", "requeued"),
    [
        pytest.param({"state": "retrying", "next_attempt_at": -timedelta(seconds=1)}, True, id="retry-due"),
        pytest.param({"state": "retrying", "next_attempt_at": timedelta(hours=1)}, False, id="retry-later"),
        pytest.param({"state": "booking", "claimed_until": -timedelta(seconds=1)}, True, id="lease-expired"),
        pytest.param({"state": "booking", "claimed_until": timedelta(minutes=1)}, False, id="lease-held"),
        pytest.param({"state": "booked"}, False, id="booked"),
        pytest.param({"state": "failed"}, False, id="failed"),
        pytest.param({"attempts": 20}, False, id="out-of-attempts"),
    ],
)
async def test_which_rows_are_enqueued_again(ctx, values, requeued) -> None:
    _integration, sync_id = await queued_order(ctx)
    # Times are given relative to now, evaluated when the test runs.
    await set_row(ctx, sync_id, **{k: utcnow() + v if isinstance(v, timedelta) else v for k, v in values.items()})
    await ctx["redis"].flushdb()
    await reconcile_orders(ctx, stale_after=NOW)
    assert bool(await jobs(ctx["redis"])) is requeued


async def test_paused_shops_are_not_enqueued_and_premium_ones_jump_the_queue(ctx) -> None:
    paused, _ = await queued_order(ctx, "8002")
    premium, premium_sync = await queued_order(ctx, "8003", service_level="premium")
    async with ctx["engine"].begin() as conn:
        await conn.execute(
            update(tables.integration).where(tables.integration.c.id == paused.id).values(state="paused")
        )
    await ctx["redis"].flushdb()
    await reconcile_orders(ctx, stale_after=NOW)
    assert await jobs(ctx["redis"]) == []
    assert await jobs(ctx["redis"], QUEUE_PRIORITY) == [sync_job_id(premium.id, premium_sync)]


async def test_re_enqueued_rows_are_stamped_so_the_next_sweep_skips_them(ctx) -> None:
    integration, sync_id = await queued_order(ctx)
    await set_row(ctx, sync_id, enqueued_at=utcnow() - timedelta(hours=1))
    await ctx["redis"].flushdb()
    await reconcile_orders(ctx)
    async with ctx["engine"].connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=sync_id)
    assert utcnow() - sync.enqueued_at < timedelta(minutes=1)
    assert (await reconcile_orders(ctx)).startswith("checked 0")


async def test_a_running_initial_export_whose_job_was_lost_is_resumed(ctx) -> None:
    async with ctx["engine"].begin() as conn:
        integration = await create_active_integration(conn)
        running = await exports.create_initial_export(conn, integration_id=integration.id, start_date=date(2026, 1, 1))
        await exports.update_initial_export(conn, integration_id=integration.id, export_id=running.id, next_offset=300)
        finished = await exports.create_initial_export(conn, integration_id=integration.id, start_date=date(2026, 1, 1))
        await exports.update_initial_export(conn, integration_id=integration.id, export_id=finished.id, state="done")
    assert "1 initial exports resumed" in await reconcile_orders(ctx)
    assert await jobs(ctx["redis"]) == [export_job.export_job_id(running.id, 300)]
    assert "0 initial exports resumed" in await reconcile_orders(ctx)
