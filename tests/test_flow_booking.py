"""End to end: a notice arrives at the webhook, the arq worker books the order in Exact once, replays send nothing."""

from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.clients.mijnwebwinkel_models import MwwOrder
from gateway.jobs.sync_order import book_order
from gateway.sandbox.exact import Faults
from gateway.settings import Settings
from gateway.store import notices
from gateway.store.integrations import (
    hash_webhook_key,
    update_integration,
)
from tests.support.booking_sandbox import (
    PLAIN_DIVISION,
    SANDBOX_BOOKING,
    WHOLESALE_DIVISION,
    BookingSandbox,
    sandbox_integration,
    sandbox_services,
)
from tests.support.corpus import ORDER_CORPUS, expected_failure
from tests.support.environment import load_payload
from tests.support.fake_exact import KEYS as KEY, FakeExact, connected_integration, queued_order, sync_row

pytestmark = pytest.mark.anyio
WEBHOOK_KEY = "flow-test-webhook-key-0001"


def notify(client: TestClient, number: str, status: int, notice_id: str) -> dict[str, Any]:
    response = client.post(
        f"/webhooks/mijnwebwinkel/{WEBHOOK_KEY}",
        json={"order_number": number, "status": status},
        headers={"webhook-id": notice_id},
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


async def test_a_webhook_notice_is_booked_once_and_replays_send_nothing(
    client: TestClient,
    make_worker: Any,
    engine: AsyncEngine,
    settings: Settings,
    fake_exact: FakeExact,
    shop_orders: dict[str, Any],
) -> None:
    integration = await connected_integration(engine, settings)
    async with engine.begin() as conn:
        await update_integration(conn, integration_id=integration.id, webhook_key_hash=hash_webhook_key(WEBHOOK_KEY))
    shop_orders["5001"] = load_payload("order_domestic")

    assert notify(client, "5001", 2, "notice-1")["result"] == "queued"
    assert await make_worker().run_check() == 1
    [entry] = fake_exact.documents("SalesEntries")
    async with engine.connect() as conn:
        row = (await conn.execute(select(tables.order_sync))).one()
        attempts = (await conn.execute(select(tables.sync_attempt))).all()
    assert (row.state, row.exact_document_id) == ("booked", entry["EntryID"])
    assert [(a.outcome, a.job_id) for a in attempts] == [("booked", f"sync_order:{integration.id}:{row.id}:0")]

    calls = len(fake_exact.requests)
    assert notify(client, "5001", 2, "notice-1")["result"] == "duplicate"
    assert notify(client, "5001", 3, "notice-2")["result"] == "already_booked"
    assert await make_worker().run_check() == 0
    assert len(fake_exact.requests) == calls
    assert len(fake_exact.documents("SalesEntries")) == 1


# ---------------------------------------------------------------- the corpus against the sandbox Exact Online

ENTITY = {
    "sales_entry": ("SalesEntries", "SalesEntryLines"),
    "sales_invoice": ("SalesInvoices", "SalesInvoiceLines"),
    "direct_sales_invoice": ("SalesInvoices", "SalesInvoiceLines"),
    "sales_order": ("SalesOrders", "SalesOrderLines"),
}


def assert_booked_like_the_shop(order: MwwOrder, document_type: str, record: dict[str, Any], division: Any) -> None:
    """What the sandbox stored matches the shop order: references, customer, date, currency, total, VAT per rate."""
    sign = Decimal(-1) if order.is_credit else Decimal(1)
    lines = record[ENTITY[document_type][1]]
    net = sum((Decimal(line["AmountFC"]) for line in lines), Decimal(0))
    vat_field = "VATAmount" if document_type == "sales_order" else "VATAmountFC"  # the sandbox recomputes order VAT
    vat_by_rate: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        vat_by_rate[(Decimal(line["VATPercentage"]) * 100).normalize()] += Decimal(line[vat_field])
    assert net + sum(vat_by_rate.values()) == sign * abs(order.total)
    shop_vat = {t.rate.normalize(): sign * abs(t.amount) for t in order.tax if t.amount}
    assert {rate: amount for rate, amount in vat_by_rate.items() if amount} == shop_vat
    assert record["YourRef"] == order.number
    assert record["Currency"] == order.currency
    customer_id = record.get("Customer") or record.get("OrderedBy")
    customer = division.find("Accounts", "ID", customer_id)
    assert customer["Email"].lower() == order.email.lower()
    date_field = "EntryDate" if document_type == "sales_entry" else "OrderDate"
    assert record[date_field].date() == order.date
    if document_type in ("sales_invoice", "direct_sales_invoice"):
        assert record["Type"] == {False: 8020, True: 8021}[order.is_credit] + (
            3 if document_type != "sales_invoice" else 0
        )
        assert (record["Status"], record["InvoiceNumber"] is not None) == (50, True)


@pytest.mark.parametrize("mode", ["webshop_country", "oss"])
@pytest.mark.parametrize("document_type", ["sales_entry", "sales_invoice", "sales_order", "direct_sales_invoice"])
async def test_the_corpus_books_into_the_sandbox_exactly_as_the_shop_sold_it(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
    document_type: str,
    mode: str,
) -> None:
    division = WHOLESALE_DIVISION if document_type == "direct_sales_invoice" else PLAIN_DIVISION
    booking = SANDBOX_BOOKING.replace(insertion_type=document_type, eu_consumer_vat=mode)
    integration = await sandbox_integration(engine, settings, booking_sandbox, booking, division)
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox)
    entity = ENTITY[document_type][0]
    for name in ORDER_CORPUS:
        data = load_payload(f"order_{name}")
        shop_orders[str(data["number"])] = data
        async with engine.begin() as conn:
            outcome = await notices.record_notice(
                conn,
                integration_id=integration.id,
                order_number=str(data["number"]),
                status_id=2,
                source="poller",
                dedupe_key=f"{data['number']}:2",
                selected_statuses=(2, 3),
            )
        result = await book_order(booking_services, outcome.order_sync_id)
        failure = expected_failure(name, document_type, mode)
        row = await sync_row(engine, outcome.order_sync_id)
        booked = [r for r in booking_sandbox.booked(division, entity) if r["YourRef"] == str(data["number"])]
        if failure is not None:
            assert (row.error_kind, booked) == (failure, []), result
            continue
        assert row.state == "booked", result
        [record] = booked
        assert row.exact_document_id == record[KEY[entity]]
        assert_booked_like_the_shop(MwwOrder.from_api(data), document_type, record, booking_sandbox.division(division))
    if document_type in ("sales_invoice", "direct_sales_invoice"):
        printed = booking_sandbox.booked(division, "PrintedSalesInvoices")
        assert len(printed) == len(booking_sandbox.booked(division, "SalesInvoices"))
        assert all(p["SendEmailToCustomer"] for p in printed)


@pytest.mark.parametrize("mode", ["500", "timeout"])
async def test_the_sandbox_failing_after_it_stored_a_booking_leaves_one_document(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
    mode: str,
) -> None:
    integration = await sandbox_integration(engine, settings, booking_sandbox, SANDBOX_BOOKING, PLAIN_DIVISION)
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")  # Jan is a seeded customer: one POST
    accounts = len(booking_sandbox.booked(PLAIN_DIVISION, "Accounts"))
    booking_sandbox.app.state.sandbox.faults = Faults(fail_after_store=1, fail_after_store_mode=mode, hang_seconds=0.05)
    with pytest.raises(Retry):
        await book_order(booking_services, sync_id)
    [entry] = booking_sandbox.booked(PLAIN_DIVISION, "SalesEntries")  # stored, though the answer was an error
    assert (await sync_row(engine, sync_id)).state == "retrying"
    result = await book_order(booking_services, sync_id, job_try=2)
    assert result.startswith("adopted: order 5001")
    assert booking_sandbox.booked(PLAIN_DIVISION, "SalesEntries") == [entry]
    assert (await sync_row(engine, sync_id)).exact_document_id == entry["EntryID"]
    assert len(booking_sandbox.booked(PLAIN_DIVISION, "Accounts")) == accounts


async def test_a_direct_sales_invoice_in_a_plain_edition_is_refused_in_plain_words(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    booking = SANDBOX_BOOKING.replace(insertion_type="direct_sales_invoice")
    integration = await sandbox_integration(engine, settings, booking_sandbox, booking, PLAIN_DIVISION)
    sync_id = await queued_order(engine, shop_orders, integration, "b2b_domestic")
    result = await book_order(sandbox_services(engine, settings, redis, booking_sandbox), sync_id)
    row = await sync_row(engine, sync_id)
    assert (row.state, row.error_kind) == ("failed", "settings")
    assert "choose sales invoice or sales entry in the settings" in result
    assert booking_sandbox.booked(PLAIN_DIVISION, "SalesInvoices") == []
