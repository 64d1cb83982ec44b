"""Two booking jobs at once for orders that need the same new Exact record (a customer account, an item created from a
SKU) create it once: real database and Redis, Exact served by respx whose look-ups answer slowly, so two jobs that do
not wait for each other would both miss and both create."""

import asyncio
import dataclasses

import httpx
import pytest
import respx
from arq import Retry
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.jobs import sync_order
from gateway.jobs.sync_order import BookingServices, book_order, link_lock_name
from gateway.local_redis import free_port
from gateway.settings import Settings
from gateway.store import exact_links
from tests.support.fake_exact import (
    BOOKING,
    FakeExact,
    attempts,
    connected_integration,
    queued_order,
    sync_row,
)

pytestmark = pytest.mark.anyio
LOOKUP_DELAY = 0.3  # seconds an account or item look-up takes: both jobs are inside one before either creates
NEW_SKUS = {"TS-BLUE", "BOOK-7", "MUG-1"}  # the articles of the "domestic" order; Exact knows none of them


class SlowLookups(FakeExact):
    """Answers an account or item look-up with what Exact held when it arrived, after LOOKUP_DELAY."""

    async def get(self, request: httpx.Request, entity: str) -> httpx.Response:  # type: ignore[override]
        response = super().get(request, entity)
        if entity in ("Accounts", "Items"):
            await asyncio.sleep(LOOKUP_DELAY)
        return response


@pytest.fixture
def slow_exact(exact_api: respx.MockRouter) -> SlowLookups:
    return SlowLookups(exact_api)


async def book_at_once(booking_services: BookingServices, *sync_ids: int) -> list[str]:
    """Each order by its own worker, all started together (as arq runs them, in one process or several)."""
    workers = [dataclasses.replace(booking_services, worker=f"worker-{n}") for n in range(len(sync_ids))]
    return list(await asyncio.gather(*(book_order(w, s) for w, s in zip(workers, sync_ids, strict=True))))


async def test_two_first_orders_of_one_new_customer_at_once_make_one_exact_account(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    slow_exact: SlowLookups,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    first = await queued_order(engine, shop_orders, integration, "domestic")
    second = await queued_order(engine, shop_orders, integration, "domestic", number="5101")
    results = await book_at_once(booking_services, first, second)
    assert [r.split(":")[0] for r in results] == ["booked", "booked"]
    assert slow_exact.requests.count(("POST", "Accounts")) == 1
    [account] = slow_exact.documents("Accounts")
    assert [entry["Customer"] for entry in slow_exact.documents("SalesEntries")] == [account["ID"]] * 2
    # The job that waited found the link the first one stored under the lock: no look-up of its own.
    assert slow_exact.requests.count(("GET", "Accounts")) == 1  # both spellings in one call, by one job
    async with engine.connect() as conn:
        links = await exact_links.get_links(conn, integration_id=integration.id, keys=[("account", "jan@example.nl")])
    assert links == {("account", "jan@example.nl"): account["ID"]}


async def test_two_orders_with_the_same_new_skus_at_once_create_each_item_once(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    slow_exact: SlowLookups,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings, BOOKING.replace(insertion_type="sales_invoice"))
    assert integration.settings.create_items
    known = {"ID": "8f1d7a52-0000-4000-8000-00000000c001", "Code": "1001", "Email": "jan@example.nl"}
    slow_exact.rows["Accounts"].append(known)
    async with engine.begin() as conn:  # a repeat customer: both jobs go straight to the items
        await exact_links.save_links(
            conn, integration_id=integration.id, links={("account", known["Email"]): known["ID"]}
        )
    first = await queued_order(engine, shop_orders, integration, "domestic")
    second = await queued_order(engine, shop_orders, integration, "domestic", number="5101")
    results = await book_at_once(booking_services, first, second)
    assert [r.split(":")[0] for r in results] == ["booked", "booked"]
    assert slow_exact.requests.count(("POST", "Items")) == len(NEW_SKUS)
    created = {item["Code"]: item["ID"] for item in slow_exact.documents("Items") if item["Code"] in NEW_SKUS}
    assert len(created) == len(NEW_SKUS) == len([i for i in slow_exact.documents("Items") if i["Code"] in NEW_SKUS])
    for invoice in slow_exact.documents("SalesInvoices"):
        used = {line["Item"] for line in invoice["SalesInvoiceLines"]}
        assert set(created.values()) <= used
    for sync_id in (first, second):
        assert (await sync_row(engine, sync_id)).state == "booked"


async def test_a_customer_whose_creation_lock_stays_taken_is_retried_later_without_creating(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    slow_exact: SlowLookups,
    shop_orders: dict,
    redis: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_order, "LINK_LOCK_WAIT", 0.2)
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    name = link_lock_name(integration.id, "account", "jan@example.nl", secret=booking_services.lock_secret)
    assert booking_services.lock_secret == str(fast_settings.secret_key)
    assert name.startswith(f"exact:create:{integration.id}:account:")
    assert "example" not in name  # the e-mail address only as a hash
    held = redis.lock(name, timeout=30, thread_local=False)
    assert await held.acquire(blocking=False)
    with pytest.raises(Retry):
        await book_order(booking_services, sync_id, job_try=1)
    assert ("POST", "Accounts") not in slow_exact.requests
    assert ("GET", "Accounts") not in slow_exact.requests
    row = await sync_row(engine, sync_id)
    assert (row.state, row.error_kind) == ("retrying", "unavailable")
    [attempt] = await attempts(engine, row)
    assert (attempt.outcome, attempt.request_summary["sent"]) == ("transient", False)
    await held.release()
    assert (await book_order(booking_services, sync_id, job_try=2)).startswith("booked: order 5001")
    assert slow_exact.requests.count(("POST", "Accounts")) == 1


async def test_without_redis_a_new_customer_is_not_created_blindly(
    engine: AsyncEngine,
    fast_settings: Settings,
    booking_services: BookingServices,
    slow_exact: SlowLookups,
    shop_orders: dict,
) -> None:
    integration = await connected_integration(engine, fast_settings)
    sync_id = await queued_order(engine, shop_orders, integration, "domestic")
    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(Retry):
            await book_order(dataclasses.replace(booking_services, redis=gone), sync_id, job_try=1)
    finally:
        await gone.aclose()
    assert not any(entity == "Accounts" for _, entity in slow_exact.requests)
    row = await sync_row(engine, sync_id)
    assert row.state == "retrying"
    assert "lock (Redis) is unavailable" in (row.last_error or "")
