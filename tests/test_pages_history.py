"""History pages: list with filters, search and paging; one order's attempts; retry one, retry all failed, ignore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, sync_job_id
from gateway.store import attempts, orders
from gateway.store.integrations import Integration
from tests.support.factories import add_order, create_active_integration, create_login, csrf_of, log_in


async def owner_with_shop(engine: AsyncEngine, **columns: object) -> Integration:
    async with engine.begin() as conn:
        owner = await create_login(conn, email="history@shop.test")
        return await create_active_integration(conn, account_id=owner, **columns)


async def test_the_list_shows_every_order_newest_first_with_its_state_and_reason(
    client: TestClient, engine: AsyncEngine
) -> None:
    shop = await owner_with_shop(engine)
    await add_order(engine, shop, "1001", state="booked", customer_name="Anna <b>Jansen</b>")
    await add_order(engine, shop, "1002", state="failed")
    await add_order(engine, shop, "1003", state="skipped")
    log_in(client, "history@shop.test")
    page = client.get(f"/integrations/{shop.id}/history").text
    assert page.index("1003") < page.index("1002") < page.index("1001")
    assert "Anna &lt;b&gt;Jansen&lt;/b&gt;" in page  # shop data is escaped
    assert "2026/0042" in page
    assert "This order has a kind of VAT that has no Exact VAT code yet." in page  # the kind, never the English detail
    assert "map VAT category NL-21" not in page
    assert "Status 9 is not one of the selected statuses." in page
    assert "Retry 1 failed order" in page


async def test_filters_search_and_dates_narrow_the_list(client: TestClient, engine: AsyncEngine) -> None:
    shop = await owner_with_shop(engine)
    await add_order(engine, shop, "2001", state="booked", customer_name="Piet Bakker")
    await add_order(engine, shop, "2002", state="failed", customer_email="kees@example.test")
    old = await add_order(engine, shop, "2003", state="booked")
    async with engine.begin() as conn:
        await conn.execute(
            update(tables.order_sync)
            .where(tables.order_sync.c.id == old)
            .values(created_at=datetime(2025, 1, 10, 12, tzinfo=UTC))
        )
    log_in(client, "history@shop.test")
    base = f"/integrations/{shop.id}/history"

    def numbers(query: str) -> set[str]:
        text = client.get(f"{base}?{query}").text
        return {n for n in ("2001", "2002", "2003") if n in text}

    assert numbers("state=failed") == {"2002"}
    assert numbers("state=booked") == {"2001", "2003"}
    assert numbers("q=bakker") == {"2001"}
    assert numbers("q=KEES@") == {"2002"}
    assert numbers("q=2003") == {"2003"}
    assert numbers("to=2025-01-31") == {"2003"}
    assert numbers("from=2025-02-01") == {"2001", "2002"}


async def test_bad_filters_are_explained_with_400(client: TestClient, engine: AsyncEngine) -> None:
    shop = await owner_with_shop(engine)
    log_in(client, "history@shop.test")
    response = client.get(f"/integrations/{shop.id}/history?state=nonsense&from=31-12-2025&page=0")
    assert response.status_code == 400
    assert "Enter a date as yyyy-mm-dd." in response.text
    assert "Choose one of the options." in response.text


async def test_the_list_is_paged(client: TestClient, engine: AsyncEngine) -> None:
    shop = await owner_with_shop(engine)
    for n in range(30):
        await add_order(engine, shop, f"3{n:03d}")
    log_in(client, "history@shop.test")
    first = client.get(f"/integrations/{shop.id}/history").text
    second = client.get(f"/integrations/{shop.id}/history?page=2").text
    assert "3029" in first
    assert "3000" not in first
    assert "3000" in second
    assert "Page 2 of 2" in second


async def test_the_detail_page_shows_attempts_and_the_exact_link(client: TestClient, engine: AsyncEngine) -> None:
    shop = await owner_with_shop(engine)
    sync_id = await add_order(engine, shop, "4001", state="booked", customer_name="Ria")
    async with engine.begin() as conn:
        await attempts.record_attempt(
            conn,
            integration_id=shop.id,
            order_sync_id=sync_id,
            outcome="booked",
            started_at=datetime.now(UTC) - timedelta(seconds=2),
            document_type="sales_invoice",
            request_summary={"YourRef": "4001", "lines": 2},
            response_summary="201 Created, InvoiceNumber 2026/0042",
            exact_calls=3,
        )
    log_in(client, "history@shop.test")
    page = client.get(f"/integrations/{shop.id}/history/{sync_id}").text
    assert "201 Created, InvoiceNumber 2026/0042" in page
    assert '"YourRef": "4001"' in page
    assert "3 calls to Exact" in page
    assert "https://exact-nl.test/docs/SalesInvoice.aspx?ID=00000000-0000-0000-0000-0000000000ab" in page
    assert "_Division_=123456" in page


async def test_retrying_a_failed_order_requeues_and_enqueues_it(
    client: TestClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    shop = await owner_with_shop(engine)
    sync_id = await add_order(engine, shop, "5001", state="failed")
    log_in(client, "history@shop.test")
    detail = f"/integrations/{shop.id}/history/{sync_id}"
    token = csrf_of(client.get(detail).text)
    response = client.post(detail + "/retry", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=shop.id, order_sync_id=sync_id)
    assert sync is not None
    assert sync.state == "queued"
    assert sync.generation == 1
    assert await redis.exists(f"arq:job:{sync_job_id(shop.id, sync_id, 1)}")
    assert await redis.zcard(QUEUE_DEFAULT) == 1
    # A booked order cannot be retried.
    booked = await add_order(engine, shop, "5002", state="booked")
    client.post(f"/integrations/{shop.id}/history/{booked}/retry", data={"csrf_token": token})
    async with engine.connect() as conn:
        still = await orders.get_sync(conn, integration_id=shop.id, order_sync_id=booked)
    assert still is not None
    assert still.state == "booked"


async def test_premium_retries_go_to_the_priority_queue(
    client: TestClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    shop = await owner_with_shop(engine, service_level="premium")
    sync_id = await add_order(engine, shop, "5101", state="failed")
    log_in(client, "history@shop.test")
    token = csrf_of(client.get(f"/integrations/{shop.id}/history").text)
    client.post(f"/integrations/{shop.id}/history/{sync_id}/retry", data={"csrf_token": token})
    assert await redis.zcard(QUEUE_PRIORITY) == 1
    assert await redis.zcard(QUEUE_DEFAULT) == 0


async def test_retry_all_failed_requeues_only_the_failed(
    client: TestClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    shop = await owner_with_shop(engine)
    failed = [await add_order(engine, shop, f"600{n}", state="failed") for n in range(3)]
    attention = await add_order(engine, shop, "6100", state="needs_attention")
    log_in(client, "history@shop.test")
    token = csrf_of(client.get(f"/integrations/{shop.id}/history").text)
    response = client.post(f"/integrations/{shop.id}/history/retry-failed", data={"csrf_token": token})
    assert "3 failed orders are queued to be booked again." in response.text
    async with engine.connect() as conn:
        states = {s.id: s.state for s in (await orders.list_syncs(conn, integration_id=shop.id, limit=10))[0]}
    assert [states[i] for i in failed] == ["queued"] * 3
    assert states[attention] == "needs_attention"
    assert await redis.zcard(QUEUE_DEFAULT) == 3


async def test_ignoring_an_order(client: TestClient, engine: AsyncEngine) -> None:
    shop = await owner_with_shop(engine)
    sync_id = await add_order(engine, shop, "7001", state="failed")
    booked = await add_order(engine, shop, "7002", state="booked")
    log_in(client, "history@shop.test")
    token = csrf_of(client.get(f"/integrations/{shop.id}/history").text)
    page = client.post(f"/integrations/{shop.id}/history/{sync_id}/ignore", data={"csrf_token": token}).text
    assert "The order is ignored" in page
    refused = client.post(f"/integrations/{shop.id}/history/{booked}/ignore", data={"csrf_token": token}).text
    assert "cannot be ignored" in refused
    async with engine.connect() as conn:
        ignored = await orders.get_sync(conn, integration_id=shop.id, order_sync_id=sync_id)
        kept = await orders.get_sync(conn, integration_id=shop.id, order_sync_id=booked)
    assert ignored is not None
    assert ignored.state == "ignored"
    assert kept is not None
    assert kept.state == "booked"
