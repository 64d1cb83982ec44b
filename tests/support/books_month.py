"""A books-check month on both sandboxes, in process: the sandbox shop serves the orders, the real booking job books
them in the sandbox Exact (so every document carries the gateway's real mark), and a test then plants findings by
changing either sandbox's state, as a person would in the shop or in Exact."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from gateway import pipeline
from gateway.booking_documents import booking_mark
from gateway.books_check.period import Month
from gateway.books_check.run import BooksCheckServices, build_services
from gateway.crypto import Cipher
from gateway.jobs.sync_order import BookingServices, book_order, services_from_context
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_records import DivisionState
from gateway.sandbox.exact_seed import DIVISIONS
from gateway.sandbox.mijnwebwinkel import create_mww_sandbox
from gateway.sandbox.mww_seed import DOMESTIC_LINES, JAN, SANDBOX_PARTNER_TOKEN, Line, SandboxOrder, SandboxShop
from gateway.settings import Settings
from gateway.store.integrations import Integration, get_integration_or_raise, save_settings
from tests.support.factories import create_sandbox_integration

MONTH = Month(2026, 10)
ORDER_DAY = date(2026, 10, 15)
PAID = 3
UNSELECTED = 1
CREDIT_LINES = (Line("article", "Theepot Blauw (retour)", (("-24.20", "21"),), 1, "POT-BLUE", 11),)


@dataclass
class BooksMonth:
    settings: Settings
    exact_app: Any
    mww_app: Any
    http: httpx.AsyncClient
    engine: AsyncEngine
    redis: ArqRedis
    integration: Integration
    booking: BookingServices
    books: BooksCheckServices

    @property
    def shop(self) -> SandboxShop:
        return self.mww_app.state.sandbox.main_shop()  # type: ignore[no-any-return]

    @property
    def division(self) -> DivisionState:
        return self.exact_app.state.sandbox.divisions[DIVISIONS[0].code]  # type: ignore[no-any-return]

    def add_order(
        self,
        number: int,
        *,
        status: int = PAID,
        lines: tuple[Line, ...] = DOMESTIC_LINES,
        day: date = ORDER_DAY,
        credited: int | None = None,
    ) -> SandboxOrder:
        order = SandboxOrder(
            number, day, "10:00:00", status, f"{day} 10:00:00", JAN, lines, credited_order_number=credited
        )
        self.shop.orders[number] = order
        return order

    async def notice(self, number: int, status: int = PAID) -> int:
        """The order reaches the gateway (as the poller would): a row, queued or skipped by its status."""
        outcome = await pipeline.accept_notice(
            self.engine,
            self.redis,
            integration=self.integration,
            order_number=str(number),
            status_id=status,
            source="poller",
            dedupe_key=f"test:{number}:{status}:{uuid.uuid4().hex[:8]}",
        )
        assert outcome.order_sync_id is not None
        return outcome.order_sync_id

    async def book(self, number: int) -> int:
        """Notice and book the order with the real booking job; returns its order sync id."""
        sync_id = await self.notice(number)
        result = await book_order(self.booking, sync_id)
        assert result.startswith("booked"), result
        return sync_id

    def entry(self, number: int, *, entity: str = "SalesEntries") -> dict[str, Any]:
        """The document in the sandbox Exact that carries the order's mark (a sales entry, by default)."""
        mark = booking_mark(self.integration.id, str(number))
        found = [e for e in self.division.rows[entity] if e.get("PaymentReference") == mark]
        assert len(found) == 1, found
        return found[0]

    def foreign_entry(self, number: int, integration_id: int) -> dict[str, Any]:
        """A copy of this order's entry as another shop (integration) booked it into the same administration."""
        entry = dict(self.entry(number))
        entry.update(EntryID=str(uuid.uuid4()), EntryNumber=entry["EntryNumber"] + 5000)
        entry["PaymentReference"] = booking_mark(integration_id, str(number))
        entry["SalesEntryLines"] = [dict(line) for line in entry["SalesEntryLines"]]
        self.division.rows["SalesEntries"].append(entry)
        return entry

    def change_amount(self, number: int, delta: str) -> None:
        entry = self.entry(number)
        line = entry["SalesEntryLines"][0]
        line["AmountFC"] = Decimal(str(line["AmountFC"])) + Decimal(delta)
        entry["Modified"] = self.exact_app.state.sandbox.now()

    def delete(self, number: int) -> None:
        entry = self.entry(number)
        self.division.rows["SalesEntries"].remove(entry)


@contextlib.asynccontextmanager
async def books_month(
    engine: AsyncEngine,
    redis: ArqRedis,
    settings: Settings,
    *,
    account_id: int | None = None,
    insertion_type: str = "sales_entry",
) -> AsyncIterator[BooksMonth]:
    """Both sandboxes behind one HTTP client, and an integration booking sales entries into journal 70."""
    fast = dataclasses.replace(
        settings,
        mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN),
        exact_minutely_limit=100_000,
        exact_daily_limit=1_000_000,
    )
    exact_app = create_exact_sandbox(minutely_limit=100_000, daily_limit=1_000_000)
    mww_app = create_mww_sandbox(faults_enabled=False)
    mww_host = str(httpx.URL(fast.mww_base_url).copy_with(path="/", query=None)).rstrip("/")
    mounts = {fast.exact_hosts["nl"]: httpx.ASGITransport(app=exact_app), mww_host: httpx.ASGITransport(app=mww_app)}
    cipher = Cipher(fast.encryption_keys)
    async with httpx.AsyncClient(mounts=mounts) as http:
        async with engine.begin() as conn:
            owner = {"account_id": account_id} if account_id else {}
            integration = await create_sandbox_integration(conn, exact_app=exact_app, cipher=cipher, **owner)
            if insertion_type != "sales_entry":  # documents with items: made as the shop sells them
                booking = integration.settings.replace(
                    insertion_type=insertion_type, create_items=True, shipping_item="VERZEND"
                )
                await save_settings(conn, integration_id=integration.id, settings=booking)
                integration = await get_integration_or_raise(conn, integration_id=integration.id)
        ctx = {"engine": engine, "settings": fast, "cipher": cipher, "http": http, "redis": redis}
        yield BooksMonth(
            settings=fast,
            exact_app=exact_app,
            mww_app=mww_app,
            http=http,
            engine=engine,
            redis=redis,
            integration=integration,
            booking=services_from_context(ctx),
            books=build_services(engine=engine, settings=fast, cipher=cipher, http=http, redis=redis),
        )
