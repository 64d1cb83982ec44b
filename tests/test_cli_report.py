"""`gateway report usage --month`: orders booked per integration in a month, with service level, for billing."""

from __future__ import annotations

import csv
import functools
import io
import json
from datetime import UTC, datetime

import anyio
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.cli import EXIT_OK
from gateway.settings import Settings
from gateway.store import notices, orders
from tests.support.factories import create_active_integration, run_cli

pytestmark = pytest.mark.anyio


async def gateway(settings: Settings, *argv: str) -> int:
    return await anyio.to_thread.run_sync(functools.partial(run_cli, settings, list(argv)))


async def book(engine: AsyncEngine, integration_id: int, number: str, booked_at: datetime, **flags: bool) -> None:
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration_id,
            order_number=number,
            status_id=2,
            source="poller",
            dedupe_key=number,
            selected_statuses=(2,),
            initial_export=flags.get("initial_export", False),
        )
        assert outcome.order_sync_id is not None
        await orders.mark_booked(
            conn,
            integration_id=integration_id,
            order_sync_id=outcome.order_sync_id,
            document_type="sales_invoice",
            exact_document_id=f"guid-{number}",
            exact_document_number=number,
        )
        await conn.execute(
            update(tables.order_sync)
            .where(tables.order_sync.c.id == outcome.order_sync_id)
            .values(booked_at=booked_at, is_credit=flags.get("credit", False))
        )


async def arrange_month(engine: AsyncEngine) -> tuple[int, int, int]:
    """Two shops that joined in October and one that joined on 5 December (dates set, not today's: the report is
    about November and December 2026 whatever day the suite runs)."""
    joined = {"Pro shop": datetime(2026, 10, 1, tzinfo=UTC), "Joined later": datetime(2026, 12, 5, tzinfo=UTC)}
    joined["Premium shop"] = datetime(2026, 10, 20, 23, 30, tzinfo=UTC)
    async with engine.begin() as conn:
        pro = await create_active_integration(conn, name="Pro shop")
        premium = await create_active_integration(conn, name="Premium shop", service_level="premium")
        later = await create_active_integration(conn, name="Joined later")
        for integration in (pro, premium, later):
            await conn.execute(
                update(tables.integration)
                .where(tables.integration.c.id == integration.id)
                .values(created_at=joined[integration.name])
            )
    in_month = datetime(2026, 11, 15, 12, tzinfo=UTC)
    await book(engine, pro.id, "1", datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
    await book(engine, pro.id, "2", in_month, credit=True)
    await book(engine, pro.id, "3", datetime(2026, 11, 30, 23, 59, tzinfo=UTC), initial_export=True)
    await book(engine, pro.id, "4", datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # next month
    await book(engine, pro.id, "5", datetime(2026, 10, 31, 23, 59, tzinfo=UTC))  # previous month
    await book(engine, later.id, "6", datetime(2026, 12, 6, tzinfo=UTC))
    return pro.id, premium.id, later.id


async def test_usage_csv_counts_orders_booked_in_the_month_per_integration(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pro, premium, later = await arrange_month(engine)

    assert await gateway(settings, "report", "usage", "--month", "2026-11", "--csv") == EXIT_OK

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_id = {int(r["integration_id"]): r for r in rows}
    assert set(by_id) == {pro, premium}  # the integration created in December is not billed for November
    assert by_id[pro] | {"account_email": ""} == {
        "month": "2026-11",
        "integration_id": str(pro),
        "name": "Pro shop",
        "account_email": "",
        "service_level": "pro",
        "state": "active",
        "orders_booked": "3",
        "credit_orders": "1",
        "initial_export_orders": "1",
    }
    assert (by_id[premium]["service_level"], by_id[premium]["orders_booked"]) == ("premium", "0")


async def test_usage_json_for_the_next_month(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pro, premium, later = await arrange_month(engine)

    assert await gateway(settings, "report", "usage", "--month", "2026-12", "--json") == EXIT_OK

    booked = {r["integration_id"]: r["orders_booked"] for r in json.loads(capsys.readouterr().out)}
    assert booked == {pro: 1, premium: 0, later: 1}
