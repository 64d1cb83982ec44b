"""Run one books check: read both sides of a month, match them, store the report. The job, the CLI, the page's
"check now" and the benchmark all come here.

Order of work: the month's row says `running` (own transaction); the shop's orders are read (one call per 100), then
Exact's documents (bulk, giving way to bookings before every page: budget.py); no transaction is held across a call;
the report is stored with what it cost. An API error marks the row `failed` with the error's safe message and is
raised again for the caller (the job retries a transient one).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.books_check.budget import Reserve
from gateway.books_check.exact_reads import read_month
from gateway.books_check.findings import ExactBooking, GatewayRecord, Report, ShopOrder
from gateway.books_check.matcher import match_month
from gateway.books_check.period import Month
from gateway.books_check.shop_reads import MonthReader, read_shop_month
from gateway.clients.errors import ApiError
from gateway.clients.exact import ExactClient
from gateway.exact_auth import exact_client_for
from gateway.shop_connection import mww_client_for
from gateway.store import books_checks
from gateway.store.integrations import Integration, get_integration_or_raise

if TYPE_CHECKING:
    import httpx
    from redis.asyncio import Redis

    from gateway.crypto import Cipher
    from gateway.settings import Settings

logger = logging.getLogger(__name__)


class CountingReader(MonthReader, Protocol):
    """What `open_shop` returns: a MonthReader with a `calls` counter (the Mijnwebwinkel client is one)."""

    calls: int


@dataclass(frozen=True)
class BooksCheckServices:
    engine: AsyncEngine
    open_exact: Callable[[Integration], Awaitable[ExactClient]]
    open_shop: Callable[[Integration], Awaitable[CountingReader]]


@dataclass(frozen=True)
class Outcome:
    month: Month
    report: Report
    exact_calls: int
    shop_calls: int
    budget_waits: int


@dataclass
class _Sides:
    """Both sides of the month as read so far, and the clients that read them (their call counters)."""

    shop: CountingReader | None = None
    exact: ExactClient | None = None
    orders: Sequence[ShopOrder] = ()
    records: Mapping[str, GatewayRecord] = field(default_factory=dict)
    bookings: Sequence[ExactBooking] = ()
    waits: int = 0


async def run_books_check(services: BooksCheckServices, *, integration_id: int, month: Month) -> Outcome:
    """Check `month` for one integration and store the report; raises the API error that stopped it."""
    async with services.engine.begin() as conn:
        integration = await get_integration_or_raise(conn, integration_id=integration_id)
        await books_checks.start_books_check(conn, integration_id=integration_id, month=str(month))
    sides = _Sides()
    try:
        exact, shop = await _read(services, integration, month, sides)
    except ApiError as e:
        await _finish(services, integration_id, month, None, sides.exact, sides.shop, error=str(e))
        raise
    settings = integration.settings
    report = match_month(
        integration_id=integration_id,
        selected_statuses=settings.selected_statuses,
        orders=sides.orders,
        bookings=sides.bookings,
        records=sides.records,
        drafts_processed_in_exact=settings.invoice_status != "final",
    )
    await _finish(services, integration_id, month, report, exact, shop)
    logger.info(
        "books check of integration %s for %s: %s difference(s), %s Exact call(s), %s shop call(s)",
        integration_id,
        month,
        report.headline.differences,
        exact.calls,
        shop.calls,
    )
    return Outcome(month, report, exact.calls, shop.calls, sides.waits)


async def _read(
    services: BooksCheckServices, integration: Integration, month: Month, sides: _Sides
) -> tuple[ExactClient, CountingReader]:
    """The shop's orders, the gateway's rows of them, then Exact's documents (giving way to bookings); fills `sides`
    as it goes (so a failure still reports the calls made) and returns the two clients."""
    sides.shop = shop = await services.open_shop(integration)
    sides.orders = await read_shop_month(shop, month)
    async with services.engine.connect() as conn:
        sides.records = await books_checks.list_month_records(
            conn,
            integration_id=integration.id,
            first_day=month.first_day,
            day_after=month.day_after,
            order_numbers=[o.number for o in sides.orders],
        )
        booked_types = await books_checks.document_types_of_month(
            conn, integration_id=integration.id, first_day=month.first_day, day_after=month.day_after
        )
    sides.exact = exact = await services.open_exact(integration)
    reserve = Reserve(exact)
    settings = integration.settings
    sides.bookings = await read_month(
        exact,
        document_types=list(dict.fromkeys([settings.insertion_type, *booked_types])),
        journal=settings.journal_code,
        month=month,
        before_page=reserve.wait,
    )
    sides.waits = reserve.waits
    return exact, shop


async def _finish(
    services: BooksCheckServices,
    integration_id: int,
    month: Month,
    report: Report | None,
    exact: ExactClient | None,
    shop: CountingReader | None,
    *,
    error: str | None = None,
) -> None:
    async with services.engine.begin() as conn:
        await books_checks.finish_books_check(
            conn,
            integration_id=integration_id,
            month=str(month),
            report=report,
            exact_calls=exact.calls if exact else 0,
            shop_calls=shop.calls if shop else 0,
            error=error[:500] if error else None,
        )


def build_services(
    *, engine: AsyncEngine, settings: Settings, cipher: Cipher, http: httpx.AsyncClient, redis: Redis
) -> BooksCheckServices:
    """The real clients, as the booking job opens them: token custody, the rate governor, the per-shop gate."""

    async def open_exact(integration: Integration) -> ExactClient:
        return await exact_client_for(
            engine=engine, settings=settings, cipher=cipher, http=http, redis=redis, integration=integration
        )

    async def open_shop(integration: Integration) -> CountingReader:
        async with engine.connect() as conn:
            return await mww_client_for(
                conn, settings=settings, cipher=cipher, http=http, integration_id=integration.id, redis=redis
            )

    return BooksCheckServices(engine=engine, open_exact=open_exact, open_shop=open_shop)
