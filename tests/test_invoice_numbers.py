"""Reading back processed sales invoices' numbers: one Exact GET per batch, drafts and other tenants untouched,
integrations needing consent skipped, bookings first, and the history page showing Exact's number."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import find_invoice_numbers
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.exact_auth import store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.jobs.invoice_numbers import read_back_invoice_numbers
from gateway.jobs.sync_order import BookingServices, book_order
from gateway.ratelimit import RateGovernor
from gateway.sandbox.exact import Faults
from gateway.settings import Settings
from gateway.store import credentials, orders
from gateway.store.integrations import Integration, IntegrationSettings, save_vat_mapping, update_integration
from tests.support.booking_sandbox import (
    INVOICES,
    PLAIN_DIVISION,
    SANDBOX_BOOKING,
    SANDBOX_MAPPINGS,
    BookingSandbox,
    sandbox_services,
)
from tests.support.factories import connect_exact_sandbox, create_active_integration, create_login, log_in
from tests.support.fake_exact import SHOP_TOKEN, queued_order, sync_row

pytestmark = pytest.mark.anyio

FINAL = SANDBOX_BOOKING.replace(insertion_type="sales_invoice", invoice_status="final", send_invoice=False)
DRAFT = FINAL.replace(invoice_status="draft")


async def shop_on_sandbox(
    engine: AsyncEngine,
    settings: Settings,
    booking_sandbox: BookingSandbox,
    email: str,
    booking: IntegrationSettings = FINAL,
) -> Integration:
    """An owner (who can log in) with a shop booking sales invoices into the sandbox's first administration."""
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        owner = await create_login(conn, email=email)
        integration = await create_active_integration(
            conn, account_id=owner, settings=booking, exact_division=PLAIN_DIVISION
        )
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SHOP_TOKEN, cipher=cipher
        )
        await connect_exact_sandbox(conn, integration_id=integration.id, sandbox_app=booking_sandbox.app, cipher=cipher)
        for category, (code, gl) in SANDBOX_MAPPINGS.items():
            await save_vat_mapping(conn, integration_id=integration.id, category=category, vat_code=code, gl_account=gl)
    return integration


async def book(
    booking_services: BookingServices, shop_orders: dict[str, Any], integration: Integration, numbers: list[str]
) -> list[int]:
    ids = []
    for number in numbers:
        sync_id = await queued_order(booking_services.engine, shop_orders, integration, "domestic", number=number)
        result = await book_order(booking_services, sync_id)
        assert result.startswith("booked"), result
        ids.append(sync_id)
    return ids


async def set_booking(engine: AsyncEngine, integration: Integration, booking: IntegrationSettings) -> None:
    async with engine.begin() as conn:
        await update_integration(conn, integration_id=integration.id, settings=booking)


async def test_processed_invoices_get_exacts_numbers_with_one_get_per_batch_and_drafts_wait(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox)
    shop_a = await shop_on_sandbox(engine, settings, booking_sandbox, "a@shop.test")
    processed = await book(booking_services, shop_orders, shop_a, ["7001", "7002", "7003", "7004", "7005"])
    await set_booking(engine, shop_a, DRAFT)
    drafts = await book(booking_services, shop_orders, shop_a, ["7006", "7007"])
    await set_booking(engine, shop_a, FINAL)
    # Another tenant in the same administration, whose Exact connection needs a new consent.
    shop_b = await shop_on_sandbox(engine, settings, booking_sandbox, "b@shop.test")
    [other] = await book(booking_services, shop_orders, shop_b, ["7001"])
    async with engine.begin() as conn:
        await update_integration(conn, integration_id=shop_b.id, exact_connection="reconnect_needed")
    rows = {i: await sync_row(engine, i) for i in [*processed, *drafts, other]}
    assert [r.exact_document_number for r in rows.values()] == [None] * 8  # PrintedSalesInvoices says no number

    calls = len(booking_sandbox.state.calls)
    result = await read_back_invoice_numbers(booking_services, batch=3)

    assert len(booking_sandbox.state.calls) - calls == len(booking_sandbox.invoice_gets(calls)) == math.ceil(7 / 3)
    assert result == "numbered 5 invoice(s) in 3 look-up(s); 0 integration(s) skipped this round"
    for sync_id in processed:
        row = await sync_row(engine, sync_id)
        invoice = booking_sandbox.invoice(row.exact_document_id or "")
        assert invoice["Status"] == 50
        assert row.exact_document_number == str(invoice["InvoiceNumber"])
        assert row.updated_at == rows[sync_id].updated_at
    for sync_id in drafts:
        assert booking_sandbox.invoice(rows[sync_id].exact_document_id or "")["Status"] == 20
        assert await sync_row(engine, sync_id) == rows[sync_id]
    assert booking_sandbox.invoice(rows[other].exact_document_id or "")["Status"] == 50
    assert await sync_row(engine, other) == rows[other]

    # The drafts stay candidates; once someone processes one in Exact, the next round stores its number.
    calls = len(booking_sandbox.state.calls)
    assert (await read_back_invoice_numbers(booking_services, batch=3)).startswith(
        "numbered 0 invoice(s) in 1 look-up(s)"
    )
    await booking_sandbox.client().post(
        "salesinvoice/PrintedSalesInvoices", {"InvoiceID": rows[drafts[0]].exact_document_id}
    )
    assert (await read_back_invoice_numbers(booking_services)).startswith("numbered 1 invoice(s) in 1 look-up(s)")
    assert len(booking_sandbox.invoice_gets(calls)) == 2
    numbered = await sync_row(engine, drafts[0])
    assert numbered.exact_document_number == str(
        booking_sandbox.invoice(numbered.exact_document_id or "")["InvoiceNumber"]
    )
    assert (await sync_row(engine, drafts[1])).exact_document_number is None
    assert await sync_row(engine, other) == rows[other]


async def test_the_history_page_shows_exacts_number_once_read_back(
    client: TestClient,
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    client.headers["Accept-Language"] = "en"
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox)
    integration = await shop_on_sandbox(engine, settings, booking_sandbox, "history@shop.test")
    [sync_id] = await book(booking_services, shop_orders, integration, ["7101"])
    row = await sync_row(engine, sync_id)
    number = str(booking_sandbox.invoice(row.exact_document_id or "")["InvoiceNumber"])
    log_in(client, "history@shop.test")
    pages = (f"/integrations/{integration.id}/history", f"/integrations/{integration.id}/history/{sync_id}")

    def page(url: str) -> str:
        response = client.get(url)
        assert response.status_code == 200
        assert "7101" in response.text
        return response.text

    assert [number in page(url) for url in pages] == [False, False]
    await read_back_invoice_numbers(booking_services)
    assert [number in page(url) for url in pages] == [True, True]


async def test_an_integration_whose_exact_consent_is_gone_is_skipped_without_error(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox)
    healthy = await shop_on_sandbox(engine, settings, booking_sandbox, "a@shop.test")
    revoked = await shop_on_sandbox(engine, settings, booking_sandbox, "b@shop.test")
    [healthy_id] = await book(booking_services, shop_orders, healthy, ["7201"])
    [revoked_id] = await book(booking_services, shop_orders, revoked, ["7202"])
    dead = ExactTokens("dead-access", "dead-refresh", 600, utcnow() - timedelta(hours=1))  # expired, not renewable
    async with engine.begin() as conn:
        await store_tokens(conn, integration_id=revoked.id, tokens=dead, cipher=Cipher(settings.encryption_keys))
    before = await sync_row(engine, revoked_id)

    result = await read_back_invoice_numbers(booking_services)

    assert result == "numbered 1 invoice(s) in 1 look-up(s); 1 integration(s) skipped this round"
    assert (await sync_row(engine, healthy_id)).exact_document_number is not None
    assert await sync_row(engine, revoked_id) == before
    calls = len(booking_sandbox.state.calls)
    assert (await read_back_invoice_numbers(booking_services)).endswith("0 integration(s) skipped this round")
    assert booking_sandbox.invoice_gets(calls) == []  # token custody marked it reconnect_needed: not tried again


async def test_no_call_is_spent_while_bookings_use_more_than_half_the_minute(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    integration = await shop_on_sandbox(engine, settings, booking_sandbox, "a@shop.test")
    [sync_id] = await book(
        sandbox_services(engine, settings, redis, booking_sandbox), shop_orders, integration, ["7301"]
    )
    await redis.flushdb()  # forget the booking's own calls
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox, exact_minutely_limit=10)
    governor = RateGovernor.from_settings(redis, dataclasses.replace(settings, exact_minutely_limit=10))
    for _ in range(5):
        await governor.acquire(PLAIN_DIVISION)  # five booking calls this minute: half the budget
    calls = len(booking_sandbox.state.calls)

    result = await read_back_invoice_numbers(booking_services)

    assert result == "numbered 0 invoice(s) in 0 look-up(s); 1 integration(s) skipped this round"
    assert booking_sandbox.state.calls[calls:] == []
    assert (await sync_row(engine, sync_id)).exact_document_number is None


async def test_a_429_skips_the_round_and_a_refused_look_up_pauses_the_integration(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    booking_services = sandbox_services(engine, settings, redis, booking_sandbox)
    integration = await shop_on_sandbox(engine, settings, booking_sandbox, "a@shop.test")
    [sync_id] = await book(booking_services, shop_orders, integration, ["7351"])

    booking_sandbox.state.faults = Faults(storm_429=1)
    skipped = "numbered 0 invoice(s) in 0 look-up(s); 1 integration(s) skipped this round"
    assert await read_back_invoice_numbers(booking_services) == skipped
    await redis.flushdb()  # the governor's block after the 429 ends
    booking_sandbox.state.faults = Faults(fail_next=1, fail_status=400)
    calls = len(booking_sandbox.state.calls)
    assert await read_back_invoice_numbers(booking_services) == skipped
    assert (
        await read_back_invoice_numbers(booking_services)
        == "numbered 0 invoice(s) in 0 look-up(s); 0 integration(s) skipped this round"
    )
    assert len(booking_sandbox.invoice_gets(calls)) == 1  # one refusal, then no more calls against Exact's error budget
    assert (await sync_row(engine, sync_id)).exact_document_number is None


async def test_a_number_is_stored_only_for_the_tenant_that_owns_the_row(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    booking_sandbox: BookingSandbox,
    shop_orders: dict[str, Any],
) -> None:
    owner = await shop_on_sandbox(engine, settings, booking_sandbox, "a@shop.test")
    stranger = await shop_on_sandbox(engine, settings, booking_sandbox, "b@shop.test")
    [sync_id] = await book(sandbox_services(engine, settings, redis, booking_sandbox), shop_orders, owner, ["7401"])
    row = await sync_row(engine, sync_id)
    ids = {"order_sync_id": sync_id, "exact_document_id": row.exact_document_id or "", "number": "26700099"}
    async with engine.begin() as conn:
        assert not await orders.set_document_number(conn, integration_id=stranger.id, **ids)
        assert not await orders.list_unnumbered_documents(
            conn,
            integration_id=stranger.id,
            document_types=("sales_invoice",),
            booked_since=utcnow() - timedelta(days=1),
        )
    assert await sync_row(engine, sync_id) == row


async def test_a_full_batch_fits_exacts_url_limit_and_a_longer_url_is_refused(booking_sandbox: BookingSandbox) -> None:
    exact = booking_sandbox.client()
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(25)]
    assert await find_invoice_numbers(exact, ids) == {}
    response = await booking_sandbox.http.get(
        f"{exact.base_url}{INVOICES}",
        params={"$select": "InvoiceID", "$filter": " or ".join(f"InvoiceID eq guid'{i}'" for i in ids * 4)},
        auth=exact.auth,
    )
    assert response.status_code == 414
    with pytest.raises(ValueError, match="at most 25 invoices"):
        await find_invoice_numbers(exact, [*ids, "00000000-0000-4000-8000-999999999999"])


async def test_only_processed_invoices_give_their_number_from_one_filtered_get(
    settings: Settings, exact_api: respx.MockRouter
) -> None:
    draft, processed, unnumbered = (f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
    rows = [
        {"InvoiceID": draft, "InvoiceNumber": 26700001, "Status": 20},  # numbered at entry, not processed yet
        {"InvoiceID": processed.upper(), "InvoiceNumber": 26700002, "Status": 50},
        {"InvoiceID": unnumbered, "InvoiceNumber": None, "Status": 50},
    ]
    route = exact_api.get(f"/api/v1/{PLAIN_DIVISION}/{INVOICES}").respond(json={"d": {"results": rows}})
    async with httpx.AsyncClient() as http:
        exact = ExactClient(http, host=settings.exact_hosts["nl"], division=PLAIN_DIVISION)
        found = await find_invoice_numbers(exact, [draft, processed, unnumbered, processed, "not-an-id"])
    assert found == {processed: "26700002"}
    [call] = route.calls
    assert call.request.url.params["$select"] == "InvoiceID,InvoiceNumber,Status"
    assert call.request.url.params["$filter"] == " or ".join(
        f"InvoiceID eq guid'{i}'" for i in (draft, processed, unnumbered)
    )


async def test_the_worker_reads_numbers_back_every_five_minutes(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings
) -> None:
    from gateway.jobs.invoice_numbers import backfill_invoice_numbers
    from gateway.jobs.worker import cron_jobs

    job = next(c for c in cron_jobs(settings) if c.name == "backfill_invoice_numbers")
    assert job.minute == set(range(2, 60, 5))
    async with engine.begin() as conn:
        await create_active_integration(conn)
    async with httpx.AsyncClient() as http:
        ctx = {"engine": engine, "redis": redis, "settings": settings, "cipher": Cipher(settings.encryption_keys)}
        summary = await backfill_invoice_numbers({**ctx, "http": http})
    assert summary == "numbered 0 invoice(s) in 0 look-up(s); 0 integration(s) skipped this round"
