"""An order's page reads like a document: the lines sent to Exact, VAT per code and totals beside the shop's order
total, amounts the reader's way, the raw data behind a disclosure, and Exact's number or a clear wait for it."""

from __future__ import annotations

from datetime import date

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.clock import utcnow
from gateway.store import attempts
from gateway.store.integrations import Integration
from tests.support.factories import add_order, create_active_integration, create_login, csrf_of, log_in

EMAIL = "document@shop.test"
SUMMARY = {
    "entity": "salesentry/SalesEntries",
    "your_ref": "9101",
    "currency": "EUR",
    "total": "66.43",
    "lines": [
        {"description": "Thee Sencha 100 g", "vat_code": "1  ", "quantity": "2", "amount": "18.35", "vat": "1.65"},
        {"description": "Theepot", "vat_code": "2", "quantity": "1", "amount": "37.19", "vat": "7.81"},
        {"description": "Verzendkosten", "vat_code": "2", "quantity": "1", "amount": "1.07", "vat": "0.36"},
    ],
}


async def booked_order(engine: AsyncEngine, *, number: str | None) -> tuple[Integration, int]:
    async with engine.begin() as conn:
        owner = await create_login(conn, email=EMAIL)
        integration = await create_active_integration(conn, account_id=owner)
    sync_id = await add_order(
        engine, integration, "9101", state="booked", order_total="66.43", currency="EUR", order_date=date(2026, 11, 3)
    )
    async with engine.begin() as conn:
        await conn.execute(
            update(tables.order_sync).where(tables.order_sync.c.id == sync_id).values(exact_document_number=number)
        )
        await attempts.record_attempt(
            conn,
            integration_id=integration.id,
            order_sync_id=sync_id,
            outcome="booked",
            started_at=utcnow(),
            document_type="sales_entry",
            request_summary={**SUMMARY, "order": "9101", "sent": True},
            response_summary="201 Created",
            exact_calls=2,
        )
    return integration, sync_id


def dutch(client: TestClient) -> None:
    token = csrf_of(client.get("/account").text)
    client.post("/language", data={"csrf_token": token, "lang": "nl", "next": "/account"})


async def test_the_order_page_shows_what_was_booked_as_lines_vat_per_code_and_totals(
    client: TestClient, engine: AsyncEngine
) -> None:
    integration, sync_id = await booked_order(engine, number="26700042")
    log_in(client, EMAIL)
    page = client.get(f"/integrations/{integration.id}/history/{sync_id}").text
    assert "What was booked in Exact" in page
    assert "Thee Sencha 100 g" in page
    assert "€1.65" in page  # VAT of code 1
    assert "€8.17" in page  # VAT of code 2, summed over its two lines
    assert "€66.43" in page
    assert "the same" in page  # the shop's order total and what Exact got agree
    assert "<summary>The data sent (JSON)</summary>" in page  # the raw data only behind a disclosure
    assert "26700042" in page
    dutch(client)
    page = client.get(f"/integrations/{integration.id}/history/{sync_id}").text
    assert "€\xa066,43" in page  # Babel's Dutch: euro sign, no-break space, decimal comma
    assert "Btw per code" in page
    assert "EUR 66.43" not in page


async def test_a_booking_without_exacts_number_says_it_waits_for_it(client: TestClient, engine: AsyncEngine) -> None:
    integration, sync_id = await booked_order(engine, number=None)
    log_in(client, EMAIL)
    for url in (f"/integrations/{integration.id}/history", f"/integrations/{integration.id}/history/{sync_id}"):
        page = client.get(url).text
        assert "waiting for Exact&#39;s number" in page or "waiting for Exact's number" in page
        assert ">00000000-0000-0000-0000-0000000000ab" not in page  # never the document's id as its number
