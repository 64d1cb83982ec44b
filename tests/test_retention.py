"""Retention: old notices and attempts of settled orders go in small batches; order syncs and open orders' history
stay."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.jobs import retention
from gateway.settings import Settings
from tests.support.factories import create_active_integration

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=401)
RECENT = NOW - timedelta(days=399)


@pytest.fixture
def retention_ctx(settings: Settings, engine: AsyncEngine, monkeypatch) -> dict:
    monkeypatch.setattr(retention, "utcnow", lambda: NOW)
    return {"settings": dataclasses.replace(settings, retention_days=400), "engine": engine}


async def order(conn, integration_id: int, number: str, state: str, *, at: datetime) -> int:  # type: ignore[no-untyped-def]
    """An order sync in `state` with one notice and one attempt, both at `at`."""
    result = await conn.execute(
        tables.order_sync.insert()
        .values(integration_id=integration_id, order_number=number, state=state, created_at=at, updated_at=at)
        .returning(tables.order_sync.c.id)
    )
    order_sync_id = int(result.scalar_one())
    await notice(conn, integration_id, number, at=at, order_sync_id=order_sync_id)
    await conn.execute(
        tables.sync_attempt.insert().values(
            integration_id=integration_id, order_sync_id=order_sync_id, outcome="booked", started_at=at
        )
    )
    return order_sync_id


async def notice(conn, integration_id: int, number: str, *, at: datetime, order_sync_id: int | None) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        tables.order_event.insert().values(
            integration_id=integration_id,
            order_number=number,
            source="poller",
            dedupe_key=f"{number}:{at.isoformat()}",
            result="queued" if order_sync_id else "skipped",
            order_sync_id=order_sync_id,
            received_at=at,
        )
    )


async def left(engine: AsyncEngine) -> dict[str, set[str]]:
    """Order numbers that still have a sync row, a notice, an attempt."""
    async with engine.connect() as conn:
        syncs = (await conn.execute(select(tables.order_sync.c.order_number))).scalars().all()
        events = (await conn.execute(select(tables.order_event.c.order_number))).scalars().all()
        attempts = (
            (
                await conn.execute(
                    select(tables.order_sync.c.order_number).join(
                        tables.sync_attempt, tables.sync_attempt.c.order_sync_id == tables.order_sync.c.id
                    )
                )
            )
            .scalars()
            .all()
        )
    return {"syncs": set(syncs), "notices": set(events), "attempts": set(attempts)}


async def test_only_old_history_of_settled_orders_goes_and_every_order_sync_stays(retention_ctx) -> None:
    async with retention_ctx["engine"].begin() as conn:
        shop = (await create_active_integration(conn)).id
        for number, state in [("1", "booked"), ("2", "ignored"), ("3", "skipped"), ("4", "failed"), ("5", "queued")]:
            await order(conn, shop, number, state, at=OLD)
        await order(conn, shop, "6", "booked", at=RECENT)
        await notice(conn, shop, "7", at=OLD, order_sync_id=None)  # a notice that made no order
        await notice(conn, shop, "8", at=RECENT, order_sync_id=None)
    summary = await retention.prune_history(retention_ctx)
    assert summary == "deleted 4 notices and 3 attempts received before 2025-11-01"
    after = await left(retention_ctx["engine"])
    assert after["syncs"] == {"1", "2", "3", "4", "5", "6"}
    assert after["notices"] == {"4", "5", "6", "8"}
    assert after["attempts"] == {"4", "5", "6"}


async def test_a_run_deletes_in_small_batches_and_the_next_run_carries_on(retention_ctx, monkeypatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "MAX_BATCHES", 2)
    async with retention_ctx["engine"].begin() as conn:
        shop = (await create_active_integration(conn)).id
        for number in range(5):
            await order(conn, shop, str(number), "booked", at=OLD)
    assert await retention.prune_history(retention_ctx) == "deleted 4 notices and 4 attempts received before 2025-11-01"
    assert await retention.prune_history(retention_ctx) == "deleted 1 notices and 1 attempts received before 2025-11-01"
    after = await left(retention_ctx["engine"])
    assert (len(after["syncs"]), after["notices"], after["attempts"]) == (5, set(), set())
