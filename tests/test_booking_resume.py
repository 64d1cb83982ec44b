"""Big orders book in one go: the item step creates each new item once (one call each, stored as it goes), pauses
within its time budget and resumes in the next try; a killed try loses nothing. Run against the sandbox Exact Online
(unique item codes, `or` filters, 400 on a taken code), with the shop served by respx."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import lookups, tables
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.jobs.sync_order import BookingServices, book_order, services_from_context
from gateway.sandbox.exact import create_exact_sandbox
from gateway.settings import Settings
from gateway.store import attempts, credentials, exact_links, notices, orders
from gateway.store.integrations import Integration, IntegrationSettings, save_vat_mapping, update_integration
from tests.support.factories import connect_exact_sandbox, create_active_integration

DIVISION = 123456  # the sandbox's plain administration
SHOP_TOKEN = "shop-token-s3cr3t-7777"
BIG = IntegrationSettings(
    selected_statuses=(2, 3), journal_code="70", insertion_type="sales_invoice", create_items=True
)
ITEMS = "logistics/Items"
ORDER = Path(__file__).parent / "payloads" / "order_domestic.json"  # a real order's shape


@dataclasses.dataclass
class Sandbox:
    app: Any
    http: httpx.AsyncClient

    def calls(self, since: int = 0) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.app.state.sandbox.calls[since:]]

    def rows(self, entity: str) -> list[dict[str, Any]]:
        return list(self.app.state.sandbox.divisions[DIVISION].rows[entity])


class TickClock:
    """Each reading is one second later: the item step's budget runs out after a known number of creates."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        self.t += 1.0
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@pytest.fixture
async def sandbox(settings: Settings) -> AsyncIterator[Sandbox]:
    app = create_exact_sandbox(faults_enabled=False, minutely_limit=100_000, daily_limit=1_000_000)
    async with httpx.AsyncClient(mounts={settings.exact_hosts["nl"]: httpx.ASGITransport(app=app)}) as http:
        yield Sandbox(app, http)


@pytest.fixture
def services(engine: AsyncEngine, fast_settings: Settings, redis: ArqRedis, sandbox: Sandbox) -> BookingServices:
    cipher = Cipher(fast_settings.encryption_keys)
    ctx = {"engine": engine, "settings": fast_settings, "cipher": cipher, "http": sandbox.http, "redis": redis}
    return services_from_context(ctx)


@pytest.fixture
def shop(mww_api: respx.MockRouter) -> dict[str, dict[str, Any]]:
    served: dict[str, dict[str, Any]] = {}

    def order(request: httpx.Request, number: str) -> httpx.Response:
        assert request.url.params["token"] == SHOP_TOKEN
        return httpx.Response(200, json=served[number]) if number in served else httpx.Response(404, json={})

    mww_api.get(path__regex=r"/orders/(?P<number>\d+)$").mock(side_effect=order)
    return served


def big_order(number: str, lines: int, distinct: int, email: str = "Nieuwe.Klant@Example.nl") -> dict[str, Any]:
    """A real order's shape with `lines` article lines at 21 % (12.10 each) over `distinct` new SKUs: some SKUs come
    back on several lines, as a webshop sends a product bought in two sizes or added twice."""
    data = json.loads(ORDER.read_text())
    template = data["orderlines"][0]
    data["number"], data["debtor"]["email"] = number, email
    data["orderlines"] = []
    for n in range(lines):
        line = copy.deepcopy(template)
        sku = f"NEW-{number}-{n % distinct:04d}"
        line["id"] = f"00000000-0000-0000-0000-{n:012d}"
        line["quantity"] = 1
        line["description"] = f"Artikel {n % distinct}"
        line["price"] = {"amount": "10.000000", "amount_including_tax": "12.10", "rate": "21.00"}
        line["articles"] = [{"id": 1000 + n, "description": line["description"], "sku": sku}]
        data["orderlines"].append(line)
    data["price"] = {
        "tax": [{"rate": "21.00", "amount": f"{Decimal('2.10') * lines:.2f}"}],
        "total": f"{Decimal('12.10') * lines:.2f}",
    }
    return data


async def established_shop(
    engine: AsyncEngine, settings: Settings, sandbox: Sandbox, services: BookingServices
) -> Integration:
    """A shop that has booked before: its revenue account is a stored link, VAT codes and journals are cached."""
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, settings=BIG, exact_division=DIVISION)
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SHOP_TOKEN, cipher=cipher
        )
        await connect_exact_sandbox(conn, integration_id=integration.id, sandbox_app=sandbox.app, cipher=cipher)
        await save_vat_mapping(conn, integration_id=integration.id, category="NL-21", vat_code="2", gl_account="8000")
    exact = await services.open_exact(integration)
    await lookups.vat_codes(engine=engine, client=exact, integration_id=integration.id)
    await lookups.sales_journals(engine=engine, client=exact, integration_id=integration.id)
    await lookups.gl_account_ids(
        engine=engine, redis=services.redis, client=exact, integration_id=integration.id, codes=["8000"], known={}
    )
    return integration


async def queue(engine: AsyncEngine, shop: dict[str, Any], integration: Integration, order: dict[str, Any]) -> int:
    shop[order["number"]] = order
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number=order["number"],
            status_id=2,
            source="poller",
            dedupe_key=f"{order['number']}:2",
            selected_statuses=(2, 3),
        )
    return int(outcome.order_sync_id or 0)


async def book_until_done(services: BookingServices, sync_id: int, *, limit: int = 40) -> tuple[str, int]:
    """Run the job as arq would after each Retry; returns the result and the number of tries."""
    for job_try in range(1, limit + 1):
        try:
            return await book_order(services, sync_id, job_id=f"sync_order:x:{sync_id}:0", job_try=job_try), job_try
        except Retry:
            continue
    raise AssertionError(f"not done after {limit} tries")


async def recorded_calls(engine: AsyncEngine, integration: Integration, sync_id: int) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        found = await attempts.list_attempts(conn, integration_id=integration.id, order_sync_id=sync_id)
    return [(a.outcome, a.exact_calls) for a in found]


async def test_a_500_line_order_of_new_items_books_with_one_call_per_new_item(
    engine: AsyncEngine, fast_settings: Settings, sandbox: Sandbox, services: BookingServices, shop: dict
) -> None:
    integration = await established_shop(engine, fast_settings, sandbox, services)
    sync_id = await queue(engine, shop, integration, big_order("7001", lines=500, distinct=480))
    before = len(sandbox.calls())
    result, tries = await book_until_done(services, sync_id)
    assert result.startswith("booked"), result
    calls = Counter(sandbox.calls(before))
    new_items = 480
    assert calls[("POST", ITEMS)] == new_items
    assert sum(calls.values()) <= new_items + 3, calls  # + account look-up, account, invoice
    codes = Counter(row["Code"].strip() for row in sandbox.rows("Items") if row["Code"].startswith("NEW-7001"))
    assert len(codes) == new_items
    assert set(codes.values()) == {1}
    [invoice] = [r for r in sandbox.rows("SalesInvoices") if r.get("YourRef") == "7001"]
    assert len(invoice["SalesInvoiceLines"]) == 500
    assert sum(n for _, n in await recorded_calls(engine, integration, sync_id)) == sum(calls.values())


async def test_the_item_step_pauses_within_its_budget_and_resumes_without_repeating_a_call(
    engine: AsyncEngine, fast_settings: Settings, sandbox: Sandbox, services: BookingServices, shop: dict
) -> None:
    integration = await established_shop(engine, fast_settings, sandbox, services)
    sync_id = await queue(engine, shop, integration, big_order("7002", lines=300, distinct=300))
    ticking = dataclasses.replace(services, clock=TickClock())
    before = len(sandbox.calls())
    result, tries = await book_until_done(ticking, sync_id)
    assert result.startswith("booked"), result
    assert tries >= 300 // 45  # each try creates what its budget allows (45 "seconds", one tick per create)
    calls = Counter(sandbox.calls(before))
    assert calls[("POST", ITEMS)] == 300
    assert sum(calls.values()) <= 300 + 3, calls
    recorded = await recorded_calls(engine, integration, sync_id)
    assert [o for o, _ in recorded].count("deferred") == tries - 1
    assert sum(n for _, n in recorded) == sum(calls.values())  # every call has its attempt record
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=sync_id)
        links = await exact_links.get_links(
            conn, integration_id=integration.id, keys=[("item", f"NEW-7002-{n:04d}") for n in range(300)]
        )
    assert sync is not None
    assert sync.state == "booked"
    assert len(links) == 300


async def test_a_killed_try_loses_no_item_and_the_next_creates_none_twice(
    engine: AsyncEngine, fast_settings: Settings, sandbox: Sandbox, services: BookingServices, shop: dict
) -> None:
    integration = await established_shop(engine, fast_settings, sandbox, services)
    sync_id = await queue(engine, shop, integration, big_order("7003", lines=250, distinct=250))
    task = asyncio.create_task(book_order(services, sync_id, job_try=1))
    while sum(1 for call in sandbox.calls() if call == ("POST", ITEMS)) < 120:  # noqa: ASYNC110 (the sandbox has no hook)
        await asyncio.sleep(0.005)
    task.cancel()  # the job timeout: no attempt record, the claim still held
    with pytest.raises(asyncio.CancelledError):
        await task
    async with engine.begin() as conn:  # the lease runs out
        await conn.execute(
            update(tables.order_sync).where(tables.order_sync.c.id == sync_id).values(claimed_until=utcnow())
        )
    result, _ = await book_until_done(services, sync_id)
    assert result.startswith("booked"), result
    codes = Counter(row["Code"].strip() for row in sandbox.rows("Items") if row["Code"].startswith("NEW-7003"))
    assert len(codes) == 250
    assert set(codes.values()) == {1}
    posts = [call for call in sandbox.calls() if call == ("POST", ITEMS)]
    assert len(posts) <= 251  # one create may have been in flight when the try died: refused once as taken


async def test_two_simultaneous_orders_of_one_new_customer_sharing_new_skus_make_each_record_once(
    engine: AsyncEngine, fast_settings: Settings, sandbox: Sandbox, services: BookingServices, shop: dict
) -> None:
    integration = await established_shop(engine, fast_settings, sandbox, services)
    first = big_order("7004", lines=30, distinct=20, email="twice@example.nl")
    second = copy.deepcopy(first)
    second["number"] = "7005"
    ids = [await queue(engine, shop, integration, order) for order in (first, second)]
    results = await asyncio.gather(*(book_until_done(services, sync_id) for sync_id in ids))
    assert all(result.startswith("booked") for result, _ in results), results
    accounts = [row for row in sandbox.rows("Accounts") if str(row.get("Email", "")).lower() == "twice@example.nl"]
    assert len(accounts) == 1
    codes = Counter(row["Code"].strip() for row in sandbox.rows("Items") if row["Code"].startswith("NEW-7004"))
    assert len(codes) == 20
    assert set(codes.values()) == {1}


async def test_a_big_order_of_items_exact_already_has_adopts_them_with_batched_look_ups(
    engine: AsyncEngine, fast_settings: Settings, sandbox: Sandbox, services: BookingServices, shop: dict
) -> None:
    integration = await established_shop(engine, fast_settings, sandbox, services)
    order = big_order("7006", lines=150, distinct=150)
    exact = await services.open_exact(integration)
    for line in order["orderlines"]:  # the catalogue is in Exact already, but the gateway has no link to it
        sku = line["articles"][0]["sku"]
        await exact.post(ITEMS, {"Code": sku, "Description": sku, "IsSalesItem": True})
    sync_id = await queue(engine, shop, integration, order)
    before = len(sandbox.calls())
    result, _ = await book_until_done(services, sync_id)
    assert result.startswith("booked"), result
    calls = Counter(sandbox.calls(before))
    assert calls[("POST", ITEMS)] == 2  # two creates refused as taken, then the rest looked up
    assert calls[("GET", ITEMS)] == 2 + 3  # each refused code, then 148 codes in batches of 60 (a page each)
    codes = Counter(row["Code"].strip() for row in sandbox.rows("Items") if row["Code"].startswith("NEW-7006"))
    assert len(codes) == 150
    assert set(codes.values()) == {1}


async def test_new_items_of_one_item_group_cost_one_look_up_of_its_revenue_account(
    engine: AsyncEngine, fast_settings: Settings, sandbox: Sandbox, services: BookingServices, shop: dict
) -> None:
    integration = await established_shop(engine, fast_settings, sandbox, services)
    async with engine.begin() as conn:  # no revenue account of its own: the items' group decides (item ledger)
        await save_vat_mapping(conn, integration_id=integration.id, category="NL-21", vat_code="2", gl_account=None)
        await update_integration(conn, integration_id=integration.id, settings=BIG.replace(use_item_ledger=True))
    sync_id = await queue(engine, shop, integration, big_order("7007", lines=25, distinct=20))
    before = len(sandbox.calls())
    result, _ = await book_until_done(services, sync_id)
    assert result.startswith("booked"), result
    calls = Counter(sandbox.calls(before))
    assert calls[("POST", ITEMS)] == 20
    assert calls[("GET", "logistics/ItemGroups")] == 1
