from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.clock import utcnow
from gateway.store import attempts, notices, orders
from tests.support.factories import create_active_integration

SELECTED = (2, 3)


async def notice(conn, integration_id: int, number: str, status: int, key: str | None = None):  # type: ignore[no-untyped-def]
    return await notices.record_notice(
        conn,
        integration_id=integration_id,
        order_number=number,
        status_id=status,
        source="webhook",
        dedupe_key=key or f"{number}:{status}",
        selected_statuses=SELECTED,
    )


async def test_selected_status_creates_one_queued_row_and_duplicates_change_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        first = await notice(conn, integration.id, "5001", 2)
        again = await notice(conn, integration.id, "5001", 2)
    assert first.result == "queued"
    assert first.enqueue
    assert again.result == "duplicate"
    assert not again.enqueue
    assert again.order_sync_id == first.order_sync_id
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(tables.order_sync))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(tables.order_event))).scalar_one() == 1


async def test_unselected_status_is_recorded_as_skipped_with_reason(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        outcome = await notice(conn, integration.id, "5002", 1)
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=outcome.order_sync_id)
    assert outcome.result == "skipped"
    assert not outcome.enqueue
    assert sync is not None
    assert sync.state == "skipped"
    assert "status 1" in (sync.reason or "")


async def test_skipped_order_reaching_a_selected_status_is_queued(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        await notice(conn, integration.id, "5003", 1)
        outcome = await notice(conn, integration.id, "5003", 2)
    assert outcome.result == "queued"
    assert outcome.enqueue


async def test_booked_order_reaching_a_second_selected_status_is_not_booked_again(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        first = await notice(conn, integration.id, "5004", 2)
        assert await orders.claim_for_booking(
            conn,
            integration_id=integration.id,
            order_sync_id=first.order_sync_id,
            worker="w1",
            lease=timedelta(minutes=2),
        )
        await orders.mark_booked(
            conn,
            integration_id=integration.id,
            order_sync_id=first.order_sync_id,
            document_type="sales_entry",
            exact_document_id="guid-1",
            exact_document_number="70000001",
        )
        second = await notice(conn, integration.id, "5004", 3)
    assert second.result == "already_booked"
    assert not second.enqueue
    assert "70000001" in (second.reason or "")


async def test_only_one_claim_wins_until_the_lease_expires(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        outcome = await notice(conn, integration.id, "5005", 2)
        kwargs = {"integration_id": integration.id, "order_sync_id": outcome.order_sync_id}
        assert await orders.claim_for_booking(conn, worker="w1", lease=timedelta(seconds=30), **kwargs)
        assert not await orders.claim_for_booking(conn, worker="w2", lease=timedelta(seconds=30), **kwargs)
        later = utcnow() + timedelta(seconds=31)
        assert await orders.claim_for_booking(conn, worker="w2", lease=timedelta(seconds=30), now=later, **kwargs)


async def test_tenant_isolation_other_integration_sees_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        a = await create_active_integration(conn)
        b = await create_active_integration(conn)
        outcome = await notice(conn, a.id, "5006", 2)
        sync_id = outcome.order_sync_id
        assert await orders.get_sync(conn, integration_id=b.id, order_sync_id=sync_id) is None
        assert await orders.get_sync_by_number(conn, integration_id=b.id, order_number="5006") is None
        assert not await orders.claim_for_booking(
            conn, integration_id=b.id, order_sync_id=sync_id, worker="w", lease=timedelta(seconds=5)
        )
        assert await orders.request_retry(conn, integration_id=b.id, order_sync_id=sync_id) is None
        assert not await orders.ignore_sync(conn, integration_id=b.id, order_sync_id=sync_id)
        assert await orders.list_syncs(conn, integration_id=b.id) == ([], 0)
        assert await attempts.list_attempts(conn, integration_id=b.id, order_sync_id=sync_id) == []
        await orders.mark_failed(conn, integration_id=b.id, order_sync_id=sync_id, error_kind="x", message="m")
        still = await orders.get_sync(conn, integration_id=a.id, order_sync_id=sync_id)
    assert still is not None
    assert still.state == "queued"


async def test_retry_bumps_generation_and_requeues_a_failed_order(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        outcome = await notice(conn, integration.id, "5007", 2)
        kwargs = {"integration_id": integration.id, "order_sync_id": outcome.order_sync_id}
        await orders.claim_for_booking(conn, worker="w", lease=timedelta(seconds=30), **kwargs)
        await orders.mark_failed(conn, error_kind="vat_unmapped", message="map VAT category NL-21", **kwargs)
        generation = await orders.request_retry(conn, **kwargs)
        sync = await orders.get_sync(conn, **kwargs)
    assert generation == 1
    assert sync is not None
    assert sync.state == "queued"
    assert sync.last_error == "map VAT category NL-21"


async def test_stale_queued_rows_are_listed_for_reconcile(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        outcome = await notice(conn, integration.id, "5008", 2)
        stale = await orders.list_stale_queued(conn, older_than=utcnow() + timedelta(seconds=1))
        fresh = await orders.list_stale_queued(conn, older_than=utcnow() - timedelta(minutes=5))
    assert [s.id for s in stale] == [outcome.order_sync_id]
    assert fresh == []


async def test_times_in_another_zone_compare_as_the_same_instant(engine: AsyncEngine) -> None:
    """23:30 UTC is already tomorrow in Amsterdam: a local midnight bound must count it (SQLite stores no offset)."""
    booked = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    amsterdam_midnight = datetime(2026, 11, 25, tzinfo=ZoneInfo("Europe/Amsterdam"))  # 23:00 UTC
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        outcome = await notice(conn, integration.id, "5010", 2)
        await conn.execute(
            update(tables.order_sync)
            .where(tables.order_sync.c.id == outcome.order_sync_id)
            .values(state="booked", booked_at=booked.astimezone(ZoneInfo("America/New_York")))
        )
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=outcome.order_sync_id)
        counts = [
            await orders.count_booked_since(conn, integration_id=integration.id, since=since)
            for since in (amsterdam_midnight, amsterdam_midnight + timedelta(hours=1))
        ]
    assert sync is not None
    assert sync.booked_at == booked
    assert sync.booked_at.tzinfo is UTC
    assert counts == [1, 0]
