"""Live is live: an order that reaches a selected status after switch-on is a live order (its invoice is e-mailed
when the settings say so), whatever the initial export read of it before; an order the export queued stays one."""

from datetime import date

import pytest
import respx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import pipeline
from gateway.booking_documents import finalize_payload
from gateway.jobs.sync_order import book_order
from gateway.settings import Settings
from gateway.store import orders
from gateway.store.integrations import Integration, IntegrationSettings
from gateway.store.orders import OrderSync
from tests.support.booking_sandbox import (
    PLAIN_DIVISION,
    SANDBOX_BOOKING,
    BookingSandbox,
    sandbox_integration,
    sandbox_services,
)
from tests.support.environment import load_payload
from tests.support.factories import create_active_integration
from tests.support.fake_exact import serve_orders

SENDING = IntegrationSettings(
    selected_statuses=(2, 3),
    journal_code="70",
    insertion_type="sales_invoice",
    invoice_status="final",
    send_invoice=True,
)


async def shop(engine: AsyncEngine) -> Integration:
    async with engine.begin() as conn:
        return await create_active_integration(conn, settings=SENDING)


async def notice(engine: AsyncEngine, redis: ArqRedis, integration: Integration, number: str, status: int, source: str):  # type: ignore[no-untyped-def]
    export = source == "initial_export"
    return await pipeline.accept_notice(
        engine,
        redis,
        integration=integration,
        order_number=number,
        status_id=status,
        source=source,
        dedupe_key=f"{'export:1:' if export else ''}{number}:{status}",
        initial_export=export,
    )


async def row(engine: AsyncEngine, integration: Integration, sync_id: int | None) -> OrderSync:
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=int(sync_id or 0))
    assert sync is not None
    return sync


def sends(integration: Integration, sync: OrderSync) -> bool:
    payload = finalize_payload(
        "sales_invoice", date(2026, 12, 1), integration.settings, "inv-1", initial_export=sync.initial_export
    )
    assert payload is not None
    return bool(payload.get("SendEmailToCustomer"))


@pytest.mark.parametrize("later_source", [pytest.param("poller", id="poller"), pytest.param("webhook", id="webhook")])
async def test_an_order_paid_after_switch_on_is_live_although_the_export_read_it_before(
    engine: AsyncEngine, redis: ArqRedis, later_source: str
) -> None:
    integration = await shop(engine)
    read = await notice(engine, redis, integration, "9001", 1, "initial_export")  # "new": not a selected status
    assert read.result == "skipped"
    assert (await row(engine, integration, read.order_sync_id)).initial_export is True
    paid = await notice(engine, redis, integration, "9001", 2, later_source)
    sync = await row(engine, integration, paid.order_sync_id)
    assert (paid.result, sync.state, sync.initial_export) == ("queued", "queued", False)
    assert sends(integration, sync)


async def test_an_order_the_export_queued_stays_an_export_order_when_a_live_notice_requeues_it(
    engine: AsyncEngine, redis: ArqRedis
) -> None:
    integration = await shop(engine)
    queued = await notice(engine, redis, integration, "9002", 2, "initial_export")
    async with engine.begin() as conn:
        await orders.mark_failed(
            conn,
            integration_id=integration.id,
            order_sync_id=int(queued.order_sync_id or 0),
            error_kind="unmapped_vat",
            message="map VAT category NL-21",
        )
    again = await notice(engine, redis, integration, "9002", 3, "poller")
    sync = await row(engine, integration, again.order_sync_id)
    assert (sync.state, sync.initial_export) == ("queued", True)
    assert not sends(integration, sync)


async def test_a_live_order_is_not_turned_into_an_export_order_by_a_later_export_read(
    engine: AsyncEngine, redis: ArqRedis
) -> None:
    integration = await shop(engine)
    live = await notice(engine, redis, integration, "9003", 2, "poller")
    async with engine.begin() as conn:
        await orders.mark_failed(
            conn,
            integration_id=integration.id,
            order_sync_id=int(live.order_sync_id or 0),
            error_kind="unmapped_vat",
            message="map VAT category NL-21",
        )
    await notice(engine, redis, integration, "9003", 2, "initial_export")
    sync = await row(engine, integration, live.order_sync_id)
    assert (sync.state, sync.initial_export) == ("queued", False)
    assert sends(integration, sync)


async def test_the_job_e_mails_the_invoice_of_an_order_paid_after_switch_on_but_not_one_the_export_queued(
    engine: AsyncEngine,
    fast_settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    mww_api: respx.MockRouter,
) -> None:
    booking = SANDBOX_BOOKING.replace(insertion_type="sales_invoice", invoice_status="final", send_invoice=True)
    integration = await sandbox_integration(engine, fast_settings, booking_sandbox, booking=booking)
    services = sandbox_services(engine, fast_settings, redis, booking_sandbox)
    shop = serve_orders(mww_api)
    for number in ("9101", "9102"):
        shop[number] = {**load_payload("order_domestic"), "number": number}
    await notice(engine, redis, integration, "9101", 1, "initial_export")  # read while still "new"
    live = await notice(engine, redis, integration, "9101", 2, "poller")  # paid after switch-on
    exported = await notice(engine, redis, integration, "9102", 2, "initial_export")  # paid before switch-on
    live_result = await book_order(services, int(live.order_sync_id or 0))
    export_result = await book_order(services, int(exported.order_sync_id or 0))
    assert live_result.startswith("booked"), live_result
    assert "e-mailed to the customer" in live_result
    assert export_result.startswith("booked"), export_result
    assert "e-mailed" not in export_result
    printed = booking_sandbox.division(PLAIN_DIVISION).rows["PrintedSalesInvoices"]
    assert sorted(bool(p["SendEmailToCustomer"]) for p in printed) == [False, True]
