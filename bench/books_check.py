"""Benchmark of the books check: one month of 2,000 orders, every one booked as a sales entry, against both sandboxes.

The sandbox shop lists the orders (100 a page, as the API does); the sandbox Exact holds a sales entry per order with
the gateway's mark, built like the booking job builds it (one line per VAT rate, VAT fixed with VATAmountFC), and
serves `bulk/Financial/TransactionLines` 1,000 rows a page. The database is a fresh SQLite file with the gateway's
rows (booked); Redis is a private server for the rate governor. Exact's limits are its own (60 a minute, 5,000 a day);
the governor's clock stands still unless something waits on it, so the run takes seconds of wall time.

Two runs:
- quiet: the administration has nothing else to do. Prints Exact calls and Mijnwebwinkel calls per order (target
  Exact <= 0.05) and that the report found 0 differences.
- busy: bookings have just used BUSY_CALLS of the minute's 60 calls. The check waits (on the governor's clock) until
  the minute leaves the bookings their reserve, then reads; prints how long it waited and the highest share of the
  minute the division used while the check spent a call (target <= 50 % + the check's own call).

    python -m bench books_check [--orders 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrations, tables
from gateway.booking_documents import booking_mark
from gateway.books_check.budget import Reserve
from gateway.books_check.period import Month
from gateway.books_check.run import BooksCheckServices, CountingReader, Outcome, run_books_check
from gateway.clients.exact import ExactClient
from gateway.clients.mijnwebwinkel import MijnwebwinkelClient
from gateway.clock import FixedClock
from gateway.db import create_engine
from gateway.local_redis import start_private_redis
from gateway.queue import create_arq_pool
from gateway.ratelimit import RateGovernor
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_entities import WRITABLE
from gateway.sandbox.exact_records import create_record
from gateway.sandbox.exact_seed import DIVISIONS, stable_id
from gateway.sandbox.mijnwebwinkel import create_mww_sandbox
from gateway.sandbox.mww_seed import DOMESTIC_LINES, JAN, SANDBOX_PARTNER_TOKEN, SANDBOX_SHOP_TOKEN, SandboxOrder
from gateway.store.integrations import Integration, IntegrationSettings, create_integration, update_integration

MONTH = Month(2026, 10)
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC).timestamp()
EXACT = "https://exact.bench.local"
MWW = "https://mww.bench.local"
VAT_CODES = {Decimal(21): "2", Decimal(9): "1"}  # the sandbox's seeded VAT codes
REVENUE = {Decimal(21): "8000", Decimal(9): "8010"}
BUSY_CALLS = 45
FIRST_ORDER = 100_001


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@dataclass
class Bench:
    engine: AsyncEngine
    http: httpx.AsyncClient
    exact_app: Any
    integration: Integration
    token: str
    redis: Any


def _order(number: int, day: date) -> SandboxOrder:
    return SandboxOrder(number, day, "10:00:00", 3, f"{day} 10:00:00", JAN, DOMESTIC_LINES)


def _entry(order: SandboxOrder, integration_id: int, customer: str) -> dict[str, Any]:
    """The sales entry the booking job makes for the order: a line per rate, amounts excl. VAT, VAT fixed."""
    incl, vat = order.totals()
    by_rate: dict[Decimal, Decimal] = {}
    for line in order.lines:
        for amount, rate in line.parts:
            by_rate[Decimal(rate)] = by_rate.get(Decimal(rate), Decimal(0)) + Decimal(amount)
    code = DIVISIONS[0].code
    lines = [
        {
            "GLAccount": stable_id(code, "gl", REVENUE[rate]),
            "Description": f"Omzet {rate}%",
            "AmountFC": (gross - vat[rate]).quantize(Decimal("0.01")),
            "VATCode": VAT_CODES[rate],
            "VATAmountFC": vat[rate],
        }
        for rate, gross in sorted(by_rate.items())
    ]
    return {
        "Journal": "70",
        "Customer": customer,
        "EntryDate": f"{order.date.isoformat()}T00:00:00",
        "YourRef": str(order.number),
        "PaymentReference": booking_mark(integration_id, str(order.number)),
        "Description": f"Order {order.number}",
        "SalesEntryLines": lines,
    }


async def _seed(bench: Bench, mww_app: Any, orders: int) -> None:
    """The month's orders in the shop, their entries in Exact and the gateway's booked rows."""
    shop = mww_app.state.sandbox.main_shop()
    division = bench.exact_app.state.sandbox.divisions[DIVISIONS[0].code]
    customer = division.rows["Accounts"][0]["ID"]
    days = (MONTH.day_after - MONTH.first_day).days
    now = datetime.fromtimestamp(START, UTC)
    rows = []
    for index in range(orders):
        number = FIRST_ORDER + index
        order = _order(number, date.fromordinal(MONTH.first_day.toordinal() + index % days))
        shop.orders[number] = order
        entry = create_record(division, WRITABLE["SalesEntries"], _entry(order, bench.integration.id, customer), now)
        rows.append(_sync_row(bench.integration.id, order, entry["EntryID"], now))
    async with bench.engine.begin() as conn:
        await conn.execute(tables.order_sync.insert(), rows)


def _sync_row(integration_id: int, order: SandboxOrder, entry_id: str, now: datetime) -> dict[str, Any]:
    total, _ = order.totals()
    return {
        "integration_id": integration_id,
        "order_number": str(order.number),
        "state": "booked",
        "status_id": order.status,
        "order_total": str(total),
        "currency": "EUR",
        "order_date": order.date,
        "document_type": "sales_entry",
        "exact_document_id": entry_id,
        "booked_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _services(bench: Bench, governor: RateGovernor, clients: list[Any]) -> BooksCheckServices:
    async def open_exact(integration: Integration) -> ExactClient:
        client = ExactClient(
            bench.http, host=EXACT, division=DIVISIONS[0].code, auth=_Bearer(bench.token), governor=governor
        )
        clients.append(client)
        return client

    async def open_shop(integration: Integration) -> CountingReader:
        return MijnwebwinkelClient(
            bench.http, base_url=f"{MWW}/v1", partner_token=SANDBOX_PARTNER_TOKEN, shop_token=SANDBOX_SHOP_TOKEN
        )

    return BooksCheckServices(engine=bench.engine, open_exact=open_exact, open_shop=open_shop)


@asynccontextmanager
async def _bench(orders: int) -> AsyncIterator[Bench]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(migrations.upgrade, url, "head")
        engine = create_engine(url)
        redis_server = start_private_redis()
        clock = FixedClock(START)
        exact_app = create_exact_sandbox(clock=clock.now)
        mww_app = create_mww_sandbox(faults_enabled=False)
        mounts = {EXACT: httpx.ASGITransport(app=exact_app), MWW: httpx.ASGITransport(app=mww_app)}
        redis = await create_arq_pool(redis_server.url)
        try:
            async with httpx.AsyncClient(mounts=mounts) as http:
                integration = await _integration(engine)
                service = exact_app.state.sandbox.tokens
                code = service.new_code("bench", "http://bench/callback")
                _, body = service.exchange(
                    {"code": code, "client_id": "bench", "redirect_uri": "http://bench/callback"}
                )
                bench = Bench(engine, http, exact_app, integration, body["access_token"], redis)
                await _seed(bench, mww_app, orders)
                yield bench
        finally:
            await redis.aclose()
            redis_server.stop()
            await engine.dispose()


async def _integration(engine: AsyncEngine) -> Integration:
    async with engine.begin() as conn:
        result = await conn.execute(
            tables.account.insert()
            .values(email="bench@books.test", password_hash="x", created_at=datetime.fromtimestamp(START, UTC))  # noqa: S106
            .returning(tables.account.c.id)
        )
        integration = await create_integration(conn, account_id=int(result.scalar_one()), name="Bench shop")
        settings = IntegrationSettings(selected_statuses=(2, 3), journal_code="70")
        await update_integration(
            conn, integration_id=integration.id, state="active", exact_division=DIVISIONS[0].code, settings=settings
        )
    return integration


async def _run(bench: Bench, *, busy: bool) -> tuple[Outcome, float, float, float]:
    """One check; returns it, its wall seconds, the governor-clock seconds it waited, and the highest share of the
    minute the division had used when the check spent a call."""
    clock = FixedClock(START + (3600 if busy else 0))
    governor = RateGovernor(bench.redis, minutely_limit=60, daily_limit=5000, clock=clock, prefix=f"bench:{busy}")
    if busy:
        for _ in range(BUSY_CALLS):
            await governor.acquire(DIVISIONS[0].code)
    clients: list[ExactClient] = []
    highest = 0.0
    original = Reserve.wait

    async def observed(reserve: Reserve) -> None:
        nonlocal highest
        await original(reserve)
        usage = await governor.usage(DIVISIONS[0].code)
        highest = max(highest, usage.in_window / governor.minutely_limit)

    Reserve.wait = observed  # type: ignore[method-assign]
    started, waited_from = time.perf_counter(), clock.now()
    try:
        outcome = await run_books_check(
            _services(bench, governor, clients), integration_id=bench.integration.id, month=MONTH
        )
    finally:
        Reserve.wait = original  # type: ignore[method-assign]
    return outcome, time.perf_counter() - started, clock.now() - waited_from, highest


def _report(name: str, orders: int, outcome: Outcome, wall: float, waited: float, highest: float) -> None:
    h = outcome.report.headline
    print(
        f"{name:5}  orders {h.orders}  documents {h.documents}  differences {h.differences}  "
        f"Exact calls {outcome.exact_calls} ({outcome.exact_calls / orders:.4f}/order)  "
        f"Mijnwebwinkel calls {outcome.shop_calls} ({outcome.shop_calls / orders:.4f}/order)  "
        f"waited {waited:.0f} s (governor clock)  pauses {outcome.budget_waits}  "
        f"highest minute share at a call {highest:.0%}  wall {wall:.1f} s",
        flush=True,
    )


async def _main(orders: int) -> int:
    async with _bench(orders) as bench:
        quiet = await _run(bench, busy=False)
        _report("quiet", orders, *quiet)
        busy = await _run(bench, busy=True)
        _report("busy", orders, *busy)
    ok = (
        quiet[0].report.headline.differences == 0
        and quiet[0].exact_calls / orders <= 0.05
        and busy[0].report.headline.differences == 0
        and busy[3] <= 0.5 + 1 / 60
    )
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench books_check", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.orders))
