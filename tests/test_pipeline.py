import asyncio
import dataclasses
from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker, func as arq_function
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import pipeline, tables
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, deserialize, enqueue_sync, serialize, sync_job_id
from gateway.store import notices, orders
from gateway.store.integrations import Integration
from gateway.store.notices import NoticeOutcome
from tests.support.factories import create_active_integration


async def queued_job_ids(redis: ArqRedis, queue: str = QUEUE_DEFAULT) -> list[str]:
    return [j.decode() for j in await redis.zrange(queue, 0, -1)]


async def count(engine: AsyncEngine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def notice(engine, redis, integration: Integration, number: str, status: int, key: str | None = None, **kw):  # type: ignore[no-untyped-def]
    return await pipeline.accept_notice(
        engine,
        redis,
        integration=integration,
        order_number=number,
        status_id=status,
        source=kw.pop("source", "webhook"),
        dedupe_key=key or f"{number}:{status}",
        **kw,
    )


async def active(engine: AsyncEngine, **columns) -> Integration:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        return await create_active_integration(conn, **columns)


async def test_selected_status_writes_one_row_then_enqueues_one_job(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    outcome = await notice(engine, redis, integration, "7001", 2)
    assert outcome.result == "queued"
    assert await queued_job_ids(redis) == [sync_job_id(integration.id, outcome.order_sync_id)]
    assert await queued_job_ids(redis, QUEUE_PRIORITY) == []
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=outcome.order_sync_id)
    assert sync is not None
    assert (sync.state, sync.order_number, sync.status_id) == ("queued", "7001", 2)


async def test_duplicate_and_replayed_notices_give_one_row_and_one_job(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    first = await notice(engine, redis, integration, "7002", 2, key="msg_1")
    replay = await notice(engine, redis, integration, "7002", 2, key="msg_1")
    other_source = await notice(engine, redis, integration, "7002", 3, key="7002:3:2026-11-01 10:00:00")
    assert (first.result, replay.result, other_source.result) == ("queued", "duplicate", "queued")
    assert first.order_sync_id == replay.order_sync_id == other_source.order_sync_id
    assert await count(engine, tables.order_sync) == 1
    assert await count(engine, tables.order_event) == 2  # the replay is not stored again
    assert len(await queued_job_ids(redis)) == 1


async def test_unselected_status_is_recorded_as_skipped_with_reason(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    outcome = await notice(engine, redis, integration, "7003", 1)
    assert outcome.result == "skipped"
    assert await queued_job_ids(redis) == []
    async with engine.connect() as conn:
        event = (await conn.execute(select(tables.order_event))).one()
    assert event.result == "skipped"
    assert "status 1" in event.reason


async def test_booked_order_reaching_another_selected_status_is_not_booked_again(
    engine: AsyncEngine, redis: ArqRedis
) -> None:
    integration = await active(engine)
    first = await notice(engine, redis, integration, "7004", 2)
    async with engine.begin() as conn:
        await orders.claim_for_booking(
            conn, integration_id=integration.id, order_sync_id=first.order_sync_id, worker="w", lease=timedelta(1)
        )
        await orders.mark_booked(
            conn,
            integration_id=integration.id,
            order_sync_id=first.order_sync_id,
            document_type="sales_entry",
            exact_document_id="guid",
            exact_document_number="2026/0001",
        )
    await redis.flushdb()
    later = await notice(engine, redis, integration, "7004", 3)
    assert later.result == "already_booked"
    assert await queued_job_ids(redis) == []
    async with engine.connect() as conn:
        reasons = (await conn.execute(select(tables.order_event.c.reason).order_by(tables.order_event.c.id))).all()
    assert "already booked as 2026/0001" in reasons[-1].reason


async def test_premium_shops_use_the_priority_queue(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine, service_level="premium")
    outcome = await notice(engine, redis, integration, "7005", 2)
    assert await queued_job_ids(redis, QUEUE_PRIORITY) == [sync_job_id(integration.id, outcome.order_sync_id)]
    assert await queued_job_ids(redis) == []


async def test_notices_for_a_paused_integration_are_recorded_but_not_queued(
    engine: AsyncEngine, redis: ArqRedis
) -> None:
    integration = await active(engine, state="paused")
    outcome = await notice(engine, redis, integration, "7006", 2)
    assert outcome.result == "skipped"
    assert "paused" in (outcome.reason or "")
    assert await queued_job_ids(redis) == []


async def test_initial_export_flag_reaches_the_row(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    await notice(engine, redis, integration, "7007", 1, source="poller")
    outcome = await notice(engine, redis, integration, "7007", 2, key="export:1:7007", initial_export=True)
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=outcome.order_sync_id)
    assert sync is not None
    assert (sync.state, sync.initial_export) == ("queued", True)


async def test_redis_down_keeps_the_row_queued_for_reconcile(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    unreachable = ArqRedis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        outcome = await notice(engine, unreachable, integration, "7008", 2)
    finally:
        await unreachable.aclose()
    assert outcome.result == "queued"
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=outcome.order_sync_id)
    assert sync is not None
    assert sync.state == "queued"
    assert sync.enqueued_at is not None


async def test_concurrent_notices_share_transactions_and_stay_exact(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    commits: list[int] = []

    def count_commit(conn) -> None:  # type: ignore[no-untyped-def]
        commits.append(1)

    event.listen(engine.sync_engine, "commit", count_commit)
    try:
        outcomes = await asyncio.gather(
            *(notice(engine, redis, integration, f"75{n % 10:02d}", 2, key=f"k{n % 10}") for n in range(30))
        )
    finally:
        event.remove(engine.sync_engine, "commit", count_commit)
    results = [o.result for o in outcomes]
    assert results.count("queued") == 10
    assert results.count("duplicate") == 20
    assert await count(engine, tables.order_sync) == 10
    assert len(await queued_job_ids(redis)) == 10
    assert len(commits) < 30  # group commit: concurrent notices shared transactions


notice_strategy = st.tuples(
    st.sampled_from(["9001", "9002", "9003"]),  # order
    st.sampled_from([1, 2, 3]),  # status (2 and 3 selected)
    st.sampled_from(["a", "b", "c", "d", "e", "f"]),  # dedupe key
    st.booleans(),  # initial export
    st.sampled_from([None, None, None, "the integration is paused"]),  # skip reason
)


@pytest.mark.anyio
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(notice_strategy, min_size=1, max_size=12), booked=st.sets(st.sampled_from(["9001", "9002"])))
async def test_a_batch_has_the_same_outcomes_as_one_by_one(engine: AsyncEngine, batch, booked) -> None:
    async with engine.begin() as conn:
        one_by_one = await create_active_integration(conn)
        batched = await create_active_integration(conn)
        for integration in (one_by_one, batched):
            for number in booked:
                sync_id = (
                    await notices.record_notice(
                        conn,
                        integration_id=integration.id,
                        order_number=number,
                        status_id=2,
                        source="webhook",
                        dedupe_key=f"setup-{number}",
                        selected_statuses=(2, 3),
                    )
                ).order_sync_id
                await orders.claim_for_booking(
                    conn, integration_id=integration.id, order_sync_id=sync_id, worker="w", lease=timedelta(1)
                )
                await orders.mark_booked(
                    conn,
                    integration_id=integration.id,
                    order_sync_id=sync_id,
                    document_type="sales_entry",
                    exact_document_id="g",
                    exact_document_number=f"D{number}",
                )

    def as_notice(integration_id: int, item) -> notices.Notice:  # type: ignore[no-untyped-def]
        number, status, key, export, skip = item
        return notices.Notice(integration_id, number, status, "poller", key, (2, 3), export, skip)

    async with engine.begin() as conn:
        expected = [
            await notices.record_notice(
                conn,
                integration_id=n.integration_id,
                order_number=n.order_number,
                status_id=n.status_id,
                source=n.source,
                dedupe_key=n.dedupe_key,
                selected_statuses=n.selected_statuses,
                initial_export=n.initial_export,
                skip_reason=n.skip_reason,
            )
            for n in (as_notice(one_by_one.id, item) for item in batch)
        ]
        actual = await notices.record_notices(conn, notices=[as_notice(batched.id, item) for item in batch])

    async def snapshot(integration_id: int):  # type: ignore[no-untyped-def]
        s, e = tables.order_sync.c, tables.order_event.c
        async with engine.connect() as conn:
            syncs = (
                await conn.execute(
                    select(s.id, s.order_number, s.state, s.status_id, s.reason, s.initial_export).where(
                        s.integration_id == integration_id
                    )
                )
            ).all()
            events = (
                await conn.execute(
                    select(e.dedupe_key, e.order_number, e.result, e.reason, e.order_sync_id)
                    .where(e.integration_id == integration_id)
                    .order_by(e.dedupe_key)
                )
            ).all()
        numbers = {row.id: row.order_number for row in syncs}
        return (
            sorted((r.order_number, r.state, r.status_id, r.reason, bool(r.initial_export)) for r in syncs),
            [(r.dedupe_key, r.order_number, r.result, r.reason, numbers.get(r.order_sync_id)) for r in events],
            numbers,
        )

    want_syncs, want_events, want_numbers = await snapshot(one_by_one.id)
    got_syncs, got_events, got_numbers = await snapshot(batched.id)
    assert got_syncs == want_syncs
    assert got_events == want_events
    assert [(o.result, o.reason, o.generation, got_numbers.get(o.order_sync_id)) for o in actual] == [
        (o.result, o.reason, o.generation, want_numbers.get(o.order_sync_id)) for o in expected
    ]


async def test_batched_jobs_are_the_jobs_arq_would_enqueue_and_run(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    outcome = NoticeOutcome("queued", 41, 0, None)
    other = NoticeOutcome("queued", 42, 0, None)
    assert await enqueue_sync(redis, integration_id=integration.id, order_sync_id=42)
    before = await redis.get(f"arq:job:{sync_job_id(integration.id, 42)}")
    added = await pipeline.enqueue_outcomes(redis, integration=integration, outcomes=[outcome, other, outcome])
    assert added == 1  # 42 was already queued, and 41 only once
    assert await redis.get(f"arq:job:{sync_job_id(integration.id, 42)}") == before
    ours = deserialize(await redis.get(f"arq:job:{sync_job_id(integration.id, 41)}"))
    assert set(ours) == set(deserialize(before))
    assert (ours["f"], ours["a"]) == ("sync_order", [41])
    ran: list[int] = []

    async def sync_order(ctx, order_sync_id: int) -> None:  # type: ignore[no-untyped-def]
        ran.append(order_sync_id)

    worker = Worker(
        functions=[arq_function(sync_order, name="sync_order")],
        redis_pool=redis,
        burst=True,
        poll_delay=0,
        job_serializer=serialize,
        job_deserializer=deserialize,
        handle_signals=False,
    )
    await worker.main()
    assert sorted(ran) == [41, 42]


async def test_a_finished_job_with_a_kept_result_is_not_enqueued_again(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    await redis.set(f"arq:result:{sync_job_id(integration.id, 43)}", b"done")
    added = await pipeline.enqueue_outcomes(
        redis, integration=integration, outcomes=[NoticeOutcome("queued", 43, 0, None)]
    )
    assert added == 0
    assert await queued_job_ids(redis) == []


async def test_a_notice_the_database_refuses_fails_alone(engine: AsyncEngine, redis: ArqRedis) -> None:
    integration = await active(engine)
    writer = pipeline.notice_writer(engine, redis)
    good = [
        pipeline.notice(integration, order_number=f"76{n:02d}", status_id=2, source="webhook", dedupe_key=f"g{n}")
        for n in range(5)
    ]
    poison = dataclasses.replace(good[0], integration_id=integration.id + 1000, dedupe_key="poison")  # no such shop
    results = await asyncio.gather(
        *(writer.record(item, premium=False) for item in [*good[:3], poison, *good[3:]]), return_exceptions=True
    )
    assert isinstance(results[3], DBAPIError)
    assert [r.result for i, r in enumerate(results) if i != 3] == ["queued"] * 5
    assert await count(engine, tables.order_sync) == 5
    assert len(await queued_job_ids(redis)) == 5
