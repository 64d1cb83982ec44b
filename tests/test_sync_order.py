"""The booking job core (`book_order`) against the real database and Redis, with both vendor APIs served by respx:
outcomes, attempt records, call counts, retries, and exactly-once under duplicates, timeouts, crashes and races."""

import asyncio
import dataclasses
import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import respx
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.jobs.sync_order import (
    MAX_TRIES,
    BookingServices,
    book_order,
    resume_orders,
    retry_delay,
)
from gateway.queue import sync_job_id
from gateway.settings import Settings
from gateway.store import attempts as attempt_store, exact_links, orders
from gateway.store.integrations import (
    list_vat_mappings,
    save_settings,
    save_vat_mapping,
    utcnow,
)
from tests.support.fake_exact import (
    ACCESS_TOKEN,
    BOOKING,
    LINES,
    SHOP_TOKEN,
    FakeExact,
    attempts,
    connected_integration,
    queued_order,
    sync_row,
)

pytestmark = pytest.mark.anyio  # parametrized async tests need the marker at collection time


async def test_a_sales_entry_is_booked_once_with_its_attempt_details_and_links(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    result = await book_order(booking_services, sync_id, job_id="job-1")
    entry = fake_exact.documents("SalesEntries")
    assert len(entry) == 1
    row = await sync_row(engine, sync_id)
    assert result == f"booked: order 5001 as sales_entry {entry[0]['EntryNumber']}"
    assert (row.state, row.exact_document_id, row.exact_document_number) == (
        "booked",
        entry[0]["EntryID"],
        str(entry[0]["EntryNumber"]),
    )
    assert (row.customer_email, row.order_total, row.currency, row.is_credit) == (
        "Jan@Example.nl",
        "112.25",
        "EUR",
        False,
    )
    assert sum(line["AmountFC"] + line["VATAmountFC"] for line in entry[0]["SalesEntryLines"]) == Decimal("112.25")
    [attempt] = await attempts(engine, row)
    assert (attempt.outcome, attempt.job_id, attempt.request_summary["total"]) == ("booked", "job-1", "112.25")
    assert attempt.exact_calls == len(fake_exact.requests)
    assert ("GET", "SalesEntries") not in fake_exact.requests  # a first attempt cannot have booked anything before
    async with engine.connect() as conn:
        links = await exact_links.get_links(
            conn, integration_id=integration.id, keys=[("account", "jan@example.nl"), ("gl_account", "8000")]
        )
    assert links[("account", "jan@example.nl")] == fake_exact.documents("Accounts")[0]["ID"]
    assert ("gl_account", "8000") in links


async def test_a_repeat_customers_order_costs_one_call_with_warm_caches(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    first = await queued_order(engine, shop_orders, integration, "domestic")
    second = await queued_order(engine, shop_orders, integration, "domestic", number="5101")
    await book_order(booking_services, first)
    before = len(fake_exact.requests)
    await book_order(booking_services, second)
    assert fake_exact.requests[before:] == [("POST", "SalesEntries")]
    [attempt] = await attempts(engine, await sync_row(engine, second))
    assert attempt.exact_calls == 1


@pytest.mark.parametrize(
    ("insertion_type", "entity", "invoice_type"),
    [
        ("sales_invoice", "SalesInvoices", 8020),
        ("direct_sales_invoice", "SalesInvoices", 8023),
        ("sales_order", "SalesOrders", None),
    ],
)
async def test_each_insertion_type_posts_its_document(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    insertion_type: str,
    entity: str,
    invoice_type: int | None,
) -> None:
    integration = await connected_integration(engine, fast_settings, BOOKING.replace(insertion_type=insertion_type))
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    assert (await book_order(booking_services, sync_id)).startswith("booked: order 5001")
    [document] = fake_exact.documents(entity)
    assert document.get("Type") == invoice_type
    lines = document[LINES[entity]]
    assert sum(
        line["Quantity"] * line["UnitPrice"] + line.get("VATAmountFC", line.get("VATAmount")) for line in lines
    ) == Decimal("112.25")
    assert {item["Code"] for item in fake_exact.documents("Items")} >= {"TS-BLUE", "BOOK-7", "MUG-1"}
    assert fake_exact.documents("PrintedSalesInvoices") == []  # draft: left for the shop owner
    assert (await sync_row(engine, sync_id)).document_type == insertion_type


@pytest.mark.parametrize(("initial_export", "emailed"), [(False, True), (True, False)])
async def test_final_invoices_are_processed_and_sent_except_from_the_initial_export(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    initial_export: bool,
    emailed: bool,
) -> None:
    booking = BOOKING.replace(insertion_type="sales_invoice", invoice_status="final", send_invoice=True)
    integration = await connected_integration(engine, fast_settings, booking)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    async with engine.begin() as conn:
        await conn.execute(update(tables.order_sync).values(initial_export=initial_export))
    result = await book_order(booking_services, sync_id)
    [printed] = fake_exact.documents("PrintedSalesInvoices")
    assert printed["SendEmailToCustomer"] is emailed
    [invoice] = fake_exact.documents("SalesInvoices")
    assert invoice["Status"] == 50
    assert ("e-mailed to the customer" in result) is emailed
    row = await sync_row(engine, sync_id)
    assert (row.state, row.exact_document_id) == ("booked", invoice["InvoiceID"])


async def test_a_duplicate_trigger_after_booking_changes_nothing(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    await book_order(booking_services, sync_id)
    calls = len(fake_exact.requests)
    again = await book_order(booking_services, sync_id)
    row = await sync_row(engine, sync_id)
    assert again == f"skipped: already booked as {row.exact_document_number}"
    assert len(fake_exact.requests) == calls
    assert len(await attempts(engine, row)) == 1


@pytest.mark.parametrize("fault", ["timeout-after-store", "503-after-store"])
async def test_exact_failing_after_it_stored_the_entry_leaves_exactly_one_entry(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    fault: str,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    fake_exact.fail("SalesEntries", fault)
    with pytest.raises(Retry):
        await book_order(booking_services, sync_id, job_try=1)
    row = await sync_row(engine, sync_id)
    assert (row.state, row.error_kind) == ("retrying", "unavailable")
    assert row.next_attempt_at is not None
    [first] = await attempts(engine, row)
    assert (first.outcome, first.request_summary["sent"]) == ("transient", True)
    result = await book_order(booking_services, sync_id, job_try=2)
    [entry] = fake_exact.documents("SalesEntries")
    assert result.startswith("adopted: order 5001")
    row = await sync_row(engine, sync_id)
    assert (row.state, row.exact_document_id) == ("booked", entry["EntryID"])
    assert fake_exact.requests.count(("POST", "SalesEntries")) == 1
    assert [a.outcome for a in await attempts(engine, row)] == ["transient", "adopted"]


async def test_a_worker_killed_mid_booking_is_taken_over_after_its_lease_without_a_second_entry(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    stored = asyncio.Event()

    async def hang() -> None:
        stored.set()
        await asyncio.sleep(3600)

    fake_exact.fail("SalesEntries", hang)
    dying = asyncio.create_task(book_order(booking_services, sync_id))
    await asyncio.wait_for(stored.wait(), 10)
    dying.cancel()  # what arq's job timeout or a killed process does to a booking in flight
    with pytest.raises(asyncio.CancelledError):
        await dying
    assert (await book_order(booking_services, sync_id)).endswith("is booking by another worker")
    async with engine.begin() as conn:  # the lease runs out
        await conn.execute(update(tables.order_sync).values(claimed_until=utcnow() - timedelta(seconds=1)))
    result = await book_order(booking_services, sync_id)
    assert result.startswith("adopted: order 5001")
    assert len(fake_exact.documents("SalesEntries")) == 1
    row = await sync_row(engine, sync_id)
    assert (row.state, row.attempts) == ("booked", 2)


async def test_two_workers_on_one_order_make_one_entry(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")

    async def slow() -> None:
        await asyncio.sleep(0.2)

    fake_exact.fail("SalesEntries", slow)
    one = dataclasses.replace(booking_services, worker="worker-1")
    two = dataclasses.replace(booking_services, worker="worker-2")
    results = await asyncio.gather(book_order(one, sync_id), book_order(two, sync_id))
    assert sorted(r.split(":")[0] for r in results) == ["booked", "skipped"]
    assert len(fake_exact.documents("SalesEntries")) == 1
    assert len(await attempts(engine, await sync_row(engine, sync_id))) == 1


async def test_an_unmapped_category_fails_and_the_order_resumes_once_it_is_mapped(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    redis: ArqRedis,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "oss_it_unmapped")
    assert await book_order(booking_services, sync_id) == "failed: map VAT category OSS-IT-22"
    row = await sync_row(engine, sync_id)
    assert (row.state, row.error_kind, row.last_error) == ("failed", "unmapped_vat", "map VAT category OSS-IT-22")
    assert not any(method == "POST" for method, _ in fake_exact.requests)
    async with engine.begin() as conn:
        seen = await list_vat_mappings(conn, integration_id=integration.id)
        assert seen["OSS-IT-22"].seen_in_orders
        assert seen["OSS-IT-22"].vat_code is None
        await save_vat_mapping(
            conn, integration_id=integration.id, category="OSS-IT-22", vat_code="I22", gl_account="8300"
        )
    assert await resume_orders(engine, redis, integration_id=integration.id, error_kind="unmapped_vat") == 1
    row = await sync_row(engine, sync_id)
    assert (row.state, row.generation) == ("queued", 1)
    assert await redis.exists(f"arq:job:{sync_job_id(integration.id, sync_id, 1)}")
    assert (await book_order(booking_services, sync_id)).startswith("booked: order 5013")
    assert ("GET", "SalesEntries") not in fake_exact.requests  # the failed attempt never sent anything
    [entry] = fake_exact.documents("SalesEntries")
    assert entry["SalesEntryLines"][0]["VATCode"] == "I22"


async def test_resume_leaves_orders_that_failed_for_another_reason(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    redis: ArqRedis,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "oss_it_unmapped")
    await book_order(booking_services, sync_id)
    assert (
        await resume_orders(engine, redis, integration_id=integration.id, error_kind=("exact_auth", "missing_item"))
        == 0
    )
    assert (await sync_row(engine, sync_id)).state == "failed"


async def test_a_transient_fault_before_sending_is_retried_later_without_a_look_up(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    mww_api: respx.MockRouter,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    fake_exact.fail("Accounts", httpx.Response(503, json={"error": {"message": {"value": "Service unavailable"}}}))
    with pytest.raises(Retry) as caught:
        await book_order(booking_services, sync_id, job_try=3)
    assert 1 <= caught.value.defer_score / 1000 <= 1 + 40
    row = await sync_row(engine, sync_id)
    assert row.state == "retrying"
    [attempt] = await attempts(engine, row)
    assert (attempt.outcome, attempt.request_summary["sent"]) == ("transient", False)
    assert "Service unavailable" in (attempt.error_message or "")
    assert (await book_order(booking_services, sync_id, job_try=4)).startswith("booked")
    assert ("GET", "SalesEntries") not in fake_exact.requests


async def test_the_last_try_gives_up_with_a_message(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    fake_exact.fail("Accounts", httpx.Response(502))
    result = await book_order(booking_services, sync_id, job_try=8)
    assert result.startswith("failed: Exact Online kept failing after 8 tries")
    assert (await sync_row(engine, sync_id)).state == "failed"


def test_retry_delays_grow_with_full_jitter_and_respect_the_reset_time() -> None:
    from gateway.clients.errors import RateLimitedError, TransientApiError

    now = utcnow()
    plain = TransientApiError("down")
    assert all(1 <= retry_delay(1, plain, now=now) <= 11 for _ in range(50))
    assert max(retry_delay(6, plain, now=now) for _ in range(200)) > 100
    assert all(retry_delay(20, plain, now=now) <= 1 + 1800 for _ in range(50))
    limited = RateLimitedError("slow down", reset_at=now + timedelta(seconds=42))
    assert all(retry_delay(1, limited, now=now) >= 42 for _ in range(50))


async def test_lost_consent_fails_the_order_and_marks_the_connection(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    fake_exact.fail("SalesEntries", httpx.Response(403, json={"error": {"message": {"value": "Forbidden"}}}))
    result = await book_order(booking_services, sync_id)
    assert result.startswith("failed: Exact Online must be connected again")
    row = await sync_row(engine, sync_id)
    assert (row.state, row.error_kind) == ("failed", "exact_auth")
    async with engine.connect() as conn:
        state = (await conn.execute(select(tables.integration.c.exact_connection))).scalar_one()
    assert state == "reconnect_needed"
    second = await queued_order(engine, shop_orders, integration, "domestic", number="5102")
    calls = len(fake_exact.requests)
    assert (await book_order(booking_services, second)).startswith("failed: Exact Online must be connected again")
    assert len(fake_exact.requests) == calls  # no job talks to Exact until the customer reconnects


async def test_a_credit_order_as_sales_order_needs_attention(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings, BOOKING.replace(insertion_type="sales_order"))
    sync_id = await queued_order(engine, shop_orders, integration, "credit")
    result = await book_order(booking_services, sync_id)
    row = await sync_row(engine, sync_id)
    assert result.startswith("needs attention: order 5007 is a credit order")
    assert (row.state, row.error_kind, row.is_credit) == ("needs_attention", "credit_sales_order", True)


async def test_a_credit_order_refers_to_the_original_booking(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    original = await queued_order(engine, shop_orders, integration, "domestic")
    credit = await queued_order(engine, shop_orders, integration, "credit")
    await book_order(booking_services, original)
    await book_order(booking_services, credit)
    first, second = fake_exact.documents("SalesEntries")
    assert second["Description"] == f"Credit order 5007 for order 5001 ({first['EntryNumber']})"
    assert sum(line["AmountFC"] + line["VATAmountFC"] for line in second["SalesEntryLines"]) == Decimal("-30.95")


async def test_a_refused_direct_sales_invoice_is_explained_in_plain_words(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(
        engine, fast_settings, BOOKING.replace(insertion_type="direct_sales_invoice")
    )
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    refusal = {"error": {"message": {"value": "Invoice type 8023 is not available in your package"}}}
    fake_exact.fail("SalesInvoices", httpx.Response(400, json=refusal))
    result = await book_order(booking_services, sync_id)
    row = await sync_row(engine, sync_id)
    assert row.error_kind == "settings"
    assert "Wholesale & Distribution or Manufacturing" in result
    assert "not available in your package" in (row.last_error or "")


async def test_an_invoice_exact_would_not_process_is_not_created_twice_on_retry(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    booking = BOOKING.replace(insertion_type="sales_invoice", invoice_status="final")
    integration = await connected_integration(engine, fast_settings, booking)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    refusal = {"error": {"message": {"value": "The reporting period is closed"}}}
    fake_exact.fail("PrintedSalesInvoices", httpx.Response(400, json=refusal))
    result = await book_order(booking_services, sync_id)
    assert result.startswith("needs attention: the invoice was created in Exact but could not be processed")
    async with engine.begin() as conn:
        assert await orders.request_retry(conn, integration_id=integration.id, order_sync_id=sync_id) == 1
    assert (await book_order(booking_services, sync_id)).startswith("adopted: order 5001")
    [invoice] = fake_exact.documents("SalesInvoices")
    assert invoice["Status"] == 50
    assert len(fake_exact.documents("PrintedSalesInvoices")) == 1


async def test_a_stale_stored_account_is_forgotten_when_exact_refuses_the_entry(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    async with engine.begin() as conn:
        await exact_links.save_links(conn, integration_id=integration.id, links={("account", "jan@example.nl"): "gone"})
    refusal = {"error": {"message": {"value": "Customer: account does not exist"}}}
    fake_exact.fail("SalesEntries", httpx.Response(400, json=refusal))
    result = await book_order(booking_services, sync_id)
    assert result == "failed: Exact Online: Customer: account does not exist (HTTP 400)"
    async with engine.connect() as conn:
        assert (
            await exact_links.get_links(conn, integration_id=integration.id, keys=[("account", "jan@example.nl")]) == {}
        )


async def test_a_paused_integration_books_nothing(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings, state="paused")
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    assert await book_order(booking_services, sync_id) == "skipped: the integration is paused"
    assert fake_exact.requests == []
    assert (await sync_row(engine, sync_id)).state == "queued"


async def test_no_token_reaches_an_attempt_record(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    booked = await queued_order(engine, shop_orders, integration, "domestic")
    failing = await queued_order(engine, shop_orders, integration, "gbp")
    await book_order(booking_services, booked)
    fake_exact.fail("SalesEntries", "timeout-after-store")
    with pytest.raises(Retry):
        await book_order(booking_services, failing)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.sync_attempt))).all()
        syncs = (await conn.execute(select(tables.order_sync))).all()
    text = json.dumps([list(r) for r in rows + syncs], default=str)
    assert SHOP_TOKEN not in text
    assert ACCESS_TOKEN not in text
    assert "exact-refresh" not in text


async def test_resume_also_queues_orders_that_needed_attention_for_that_cause(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
    redis: ArqRedis,
) -> None:
    integration = await connected_integration(engine, fast_settings, BOOKING.replace(insertion_type="sales_order"))
    sync_id = await queued_order(engine, shop_orders, integration, "credit")
    await book_order(booking_services, sync_id)
    assert (await sync_row(engine, sync_id)).state == "needs_attention"
    async with engine.begin() as conn:
        await save_settings(conn, integration_id=integration.id, settings=BOOKING.replace(insertion_type="sales_entry"))
    assert (
        await resume_orders(engine, redis, integration_id=integration.id, error_kind=("settings", "credit_sales_order"))
        == 1
    )
    assert (await book_order(booking_services, sync_id)).startswith("booked: order 5007")


async def test_a_rate_limit_defers_without_using_up_a_try(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    fake_exact.fail("Accounts", httpx.Response(429, json={"error": {"message": {"value": "Too many requests"}}}))
    with pytest.raises(Retry):
        await book_order(booking_services, sync_id, job_id="job-1", job_try=MAX_TRIES + 3)
    row = await sync_row(engine, sync_id)
    assert row.state == "retrying"
    [attempt] = await attempts(engine, row)
    assert attempt.outcome == "deferred"


async def test_only_failed_tries_count_toward_giving_up(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    fake_exact: FakeExact,
    shop_orders: dict,
) -> None:
    """Three deferrals in this job, then failures: the order gives up after MAX_TRIES failures, not MAX_TRIES tries."""
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    async with engine.begin() as conn:
        for job_id in ("job-1", "job-1", "job-1", "another-job"):
            await attempt_store.record_attempt(
                conn,
                integration_id=integration.id,
                order_sync_id=sync_id,
                job_id=job_id,
                outcome="deferred",
                started_at=utcnow(),
            )
    fake_exact.fail("Accounts", httpx.Response(502))
    with pytest.raises(Retry):
        await book_order(booking_services, sync_id, job_id="job-1", job_try=MAX_TRIES + 2)
    fake_exact.fail("Accounts", httpx.Response(502))
    result = await book_order(booking_services, sync_id, job_id="job-1", job_try=MAX_TRIES + 3)
    assert result.startswith(f"failed: Exact Online kept failing after {MAX_TRIES} tries")
