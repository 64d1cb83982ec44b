"""One look-up per fact: concurrent bookings of one administration share the G/L account look-up (one gate, a re-read,
one batched call) and the stored links; a warehouse list Exact refuses (404/403) is asked once per TTL."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
import respx
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import lookups, tables
from gateway.booking import SETTINGS, BookingError
from gateway.clients.exact import ExactClient
from gateway.clock import utcnow
from gateway.db import create_engine
from gateway.jobs.sync_order import book_order
from gateway.settings import Settings
from gateway.store import exact_links
from tests.support.booking_sandbox import (
    SANDBOX_BOOKING,
    BookingSandbox,
    sandbox_integration,
    sandbox_services,
)
from tests.support.environment import load_payload
from tests.support.factories import create_active_integration
from tests.support.fake_exact import queued_order, serve_orders

DIVISION = 123456
CODES = ["8000", "8010", "8020", "8030", "8040", "8050", "8060", "8070"]
IN_EXACT = {code: str(uuid.uuid4()) for code in CODES[:7]}  # 8070 is not in this administration
_CODE = re.compile(r"Code eq '([^']*)'")


def gl_accounts(request: httpx.Request) -> httpx.Response:
    wanted = _CODE.findall(request.url.params.get("$filter", ""))
    rows = [
        {"ID": IN_EXACT[c], "Code": c, "Description": c, "Type": 110, "IsBlocked": False}
        for c in wanted
        if c in IN_EXACT
    ]
    return httpx.Response(200, json={"d": {"results": rows}})


def client(settings: Settings, http: httpx.AsyncClient) -> ExactClient:
    return ExactClient(http, host=settings.exact_hosts["nl"], division=DIVISION)


async def integration_id(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        return (await create_active_integration(conn)).id


@pytest.mark.parametrize("jobs", [pytest.param(2, id="2-jobs"), pytest.param(6, id="6-jobs")])
async def test_concurrent_jobs_needing_the_same_codes_look_them_up_once(
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    http: httpx.AsyncClient,
    exact_api: respx.MockRouter,
    jobs: int,
) -> None:
    route = exact_api.get(path=f"/api/v1/{DIVISION}/financial/GLAccounts").mock(side_effect=gl_accounts)
    shop = await integration_id(engine)

    async def job(order: int) -> dict[tuple[str, str], str]:
        codes = CODES[order % 2 :] + CODES[: order % 2]  # jobs ask in different orders
        return await lookups.gl_account_ids(
            engine=engine, redis=redis, client=client(settings, http), integration_id=shop, codes=codes, known={}
        )

    answers = await asyncio.gather(*(job(n) for n in range(jobs)))
    expected = {("gl_account", c): IN_EXACT.get(c, "") for c in CODES}
    assert all(answer == expected for answer in answers)
    assert route.call_count <= len(CODES)
    assert route.call_count == 1  # batched: one `or` chain for the eight codes
    async with engine.connect() as conn:
        stored = await exact_links.get_links(conn, integration_id=shop, keys=[("gl_account", c) for c in CODES])
    assert stored == {k: v for k, v in expected.items() if v}
    again = await job(0)  # the next order: found ids are stored links, the absent code is remembered
    assert again == expected
    assert route.call_count == 1


@pytest.mark.parametrize("status", [pytest.param(404, id="404"), pytest.param(403, id="403")])
async def test_a_refused_warehouse_list_is_asked_once_per_ttl(
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    http: httpx.AsyncClient,
    exact_api: respx.MockRouter,
    status: int,
) -> None:
    route = exact_api.get(path=f"/api/v1/{DIVISION}/inventory/Warehouses").mock(
        return_value=httpx.Response(status, json={"error": {"message": {"value": "Forbidden"}}})
    )
    shop = await integration_id(engine)

    async def ask() -> BookingError:
        with pytest.raises(BookingError) as caught:
            await lookups.warehouse_id(
                engine=engine, redis=redis, client=client(settings, http), integration_id=shop, code="1"
            )
        return caught.value

    errors = await asyncio.gather(*(ask() for _ in range(4)))
    errors.append(await ask())
    assert route.call_count == 1
    assert {e.kind for e in errors} == {SETTINGS}
    assert all(f"HTTP {status}" in str(e) for e in errors)
    async with engine.begin() as conn:  # the TTL runs out
        await conn.execute(
            update(tables.lookup_cache)
            .where(tables.lookup_cache.c.kind == lookups.WAREHOUSES_REFUSED)
            .values(expires_at=utcnow())
        )
    await ask()
    assert route.call_count == 2


async def test_a_found_warehouse_becomes_a_stored_link(
    engine: AsyncEngine, redis: Redis, settings: Settings, http: httpx.AsyncClient, exact_api: respx.MockRouter
) -> None:
    warehouse = str(uuid.uuid4())
    route = exact_api.get(path=f"/api/v1/{DIVISION}/inventory/Warehouses").mock(
        return_value=httpx.Response(200, json={"d": {"results": [{"ID": warehouse, "Code": "1"}]}})
    )
    shop = await integration_id(engine)
    for _ in range(3):
        found = await lookups.warehouse_id(
            engine=engine, redis=redis, client=client(settings, http), integration_id=shop, code="1"
        )
        assert found == warehouse
    assert route.call_count == 1


@pytest.mark.parametrize("jobs", [pytest.param(6, id="6-jobs")])
async def test_concurrent_booking_jobs_of_one_administration_share_the_gl_look_up(
    engine: AsyncEngine,
    fast_settings: Settings,
    redis: Redis,
    booking_sandbox: BookingSandbox,
    mww_api: respx.MockRouter,
    jobs: int,
) -> None:
    booking = SANDBOX_BOOKING.replace(insertion_type="sales_entry", costs_gl_account="8040")
    integration = await sandbox_integration(engine, fast_settings, booking_sandbox, booking=booking)
    services = sandbox_services(engine, fast_settings, redis, booking_sandbox)
    shop = serve_orders(mww_api)
    ids = [await queued_order(engine, shop, integration, "domestic", number=str(6100 + n)) for n in range(jobs)]
    before = len(booking_sandbox.state.calls)
    results = await asyncio.gather(*(book_order(services, sync_id) for sync_id in ids))
    assert all(r.startswith("booked") for r in results), results
    gl_gets = [c for c in booking_sandbox.state.calls[before:] if (c.method, c.path) == ("GET", "financial/GLAccounts")]
    assert len(gl_gets) == 1  # five codes (8000, 8010, 8040, 8050, 8060), one batched look-up for all six jobs
    async with engine.connect() as conn:
        stored = await exact_links.get_links(
            conn,
            integration_id=integration.id,
            keys=[("gl_account", c) for c in ("8000", "8010", "8040", "8050", "8060")],
        )
    assert len(stored) == 5


async def test_concurrent_jobs_share_one_read_of_a_list_not_cached_yet(
    engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient, exact_api: respx.MockRouter
) -> None:
    answered = asyncio.Event()

    async def vat_codes(request: httpx.Request) -> httpx.Response:
        await answered.wait()  # every job asks before the first answer comes
        return httpx.Response(200, json={"d": {"results": load_payload("exact_vatcodes")["d"]["results"]}})

    route = exact_api.get(path=f"/api/v1/{DIVISION}/vat/VATCodes").mock(side_effect=vat_codes)
    shop = await integration_id(engine)
    jobs = [
        asyncio.create_task(lookups.vat_codes(engine=engine, client=client(settings, http), integration_id=shop))
        for _ in range(5)
    ]
    await asyncio.sleep(0.05)
    answered.set()
    lists = await asyncio.gather(*jobs)
    assert route.call_count == 1
    assert all(codes == lists[0] for codes in lists)
    assert lists[0]
    await lookups.vat_codes(engine=engine, client=client(settings, http), integration_id=shop)  # cached now
    assert route.call_count == 1


async def test_booking_processes_share_one_read_of_a_list_through_redis(
    engine: AsyncEngine,
    redis: Redis,
    settings: Settings,
    http: httpx.AsyncClient,
    exact_api: respx.MockRouter,
) -> None:
    answered = asyncio.Event()

    async def journals(request: httpx.Request) -> httpx.Response:
        await answered.wait()
        rows = [{"Code": "70", "Description": "Verkoop", "Type": 20, "IsBlocked": False}]
        return httpx.Response(200, json={"d": {"results": rows}})

    route = exact_api.get(path=f"/api/v1/{DIVISION}/financial/Journals").mock(side_effect=journals)
    shop = await integration_id(engine)
    other_process = create_engine(settings.database_url)  # a second worker: its own engine, the same Redis
    try:
        jobs = [
            asyncio.create_task(
                lookups.sales_journals(engine=e, client=client(settings, http), integration_id=shop, redis=redis)
            )
            for e in (engine, other_process, engine, other_process)
        ]
        await asyncio.sleep(0.05)
        answered.set()
        lists = await asyncio.gather(*jobs)
    finally:
        await other_process.dispose()
    assert route.call_count == 1
    assert all([j.code for j in found] == ["70"] for found in lists)
