"""The books check against both sandboxes: a month with every kind of finding planted (a deleted document, a changed
amount, a document changed by hand, another shop's document adopted for an order with the same number, a skipped
order, a missing credit document, an order that never arrived, an ignored one) and a clean month; the reads use the
bulk endpoints within the governor's reserve, and the CLI's exit code says whether the books agree."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import pipeline
from gateway.booking_documents import booking_mark
from gateway.books_check.budget import BudgetBusy, Reserve
from gateway.books_check.findings import Kind
from gateway.books_check.run import run_books_check
from gateway.cli import build_parser
from gateway.clock import FixedClock
from gateway.crypto import Cipher
from gateway.jobs.sync_order import book_order, services_from_context
from gateway.operator_books import books_check
from gateway.ratelimit import RateGovernor
from gateway.sandbox.exact_seed import DIVISIONS
from gateway.sandbox.mww_seed import DOMESTIC_LINES, JAN, SandboxOrder
from gateway.settings import Settings
from gateway.store import books_checks, orders
from tests.support.books_month import CREDIT_LINES, MONTH, ORDER_DAY, PAID, UNSELECTED, BooksMonth, books_month
from tests.support.factories import create_sandbox_integration
from tests.support.servers import serve_sandboxes

OTHER_SHOP = 4242


@pytest.fixture
async def fresh_month(engine: AsyncEngine, redis: ArqRedis, settings: Settings):  # type: ignore[no-untyped-def]
    async with books_month(engine, redis, settings) as box:
        yield box


async def test_a_clean_month_has_no_differences_and_costs_one_call_per_side(fresh_month: BooksMonth) -> None:
    for number in (5001, 5002, 5003):
        fresh_month.add_order(number)
        await fresh_month.book(number)
    fresh_month.add_order(5004, day=MONTH.day_after)  # next month: not this month's
    calls_before = len(fresh_month.exact_app.state.sandbox.calls)

    outcome = await run_books_check(fresh_month.books, integration_id=fresh_month.integration.id, month=MONTH)

    headline = outcome.report.headline
    assert outcome.report.findings == ()
    assert (headline.orders, headline.documents, headline.differences) == (3, 3, 0)
    assert headline.shop_total == headline.exact_total
    assert [(rate, shop == exact) for rate, shop, exact in headline.vat_rows()] == [(9, True), (21, True)]
    reads = fresh_month.exact_app.state.sandbox.calls[calls_before:]
    assert [(c.method, c.path) for c in reads] == [("GET", "bulk/Financial/TransactionLines")]
    assert (outcome.exact_calls, outcome.shop_calls) == (1, 1)
    async with fresh_month.engine.connect() as conn:
        stored = await books_checks.get_books_check(conn, integration_id=fresh_month.integration.id, month=str(MONTH))
    assert stored is not None
    assert (stored.state, stored.report, stored.exact_calls) == ("done", outcome.report, 1)


async def test_every_planted_finding_is_reported_with_both_sides(fresh_month: BooksMonth) -> None:
    for number in (6001, 6002, 6003, 6004, 6006):
        fresh_month.add_order(number)
        await fresh_month.book(number)
    fresh_month.change_amount(6002, "1.00")  # a changed amount
    fresh_month.entry(6003)["Modified"] = fresh_month.exact_app.state.sandbox.now() + timedelta(
        days=1
    )  # edited by hand
    fresh_month.delete(6004)  # deleted in Exact
    fresh_month.add_order(6005, status=UNSELECTED)  # seen unpaid (skipped), paid later without a notice
    await fresh_month.notice(6005, status=UNSELECTED)
    fresh_month.shop.orders[6005].status = PAID
    # Another shop in the same administration has an order 6006 too; our row was pointed at its document.
    foreign = fresh_month.foreign_entry(6006, OTHER_SHOP)
    fresh_month.delete(6006)
    async with fresh_month.engine.begin() as conn:
        row = await orders.get_sync_by_number(conn, integration_id=fresh_month.integration.id, order_number="6006")
        assert row is not None
        await orders.update_sync(conn, row.id, exact_document_id=foreign["EntryID"])
    fresh_month.add_order(6007, lines=CREDIT_LINES, credited=6001)  # a credit order without its credit document
    fresh_month.add_order(6008)  # never reached the gateway
    fresh_month.add_order(6009)
    ignored = await fresh_month.notice(6009)
    async with fresh_month.engine.begin() as conn:
        assert await orders.ignore_sync(conn, integration_id=fresh_month.integration.id, order_sync_id=ignored)
    fresh_month.add_order(6010, status=UNSELECTED)  # not paid: not due

    report = (await run_books_check(fresh_month.books, integration_id=fresh_month.integration.id, month=MONTH)).report

    found = {f.order_number: f for f in report.findings}
    assert {n: f.kind for n, f in found.items()} == {
        "6002": Kind.AMOUNT_DIFFERENCE,
        "6003": Kind.CHANGED_DOCUMENT,
        "6004": Kind.DELETED_DOCUMENT,
        "6005": Kind.SKIPPED_ORDER,
        "6006": Kind.WRONG_DOCUMENT,
        "6007": Kind.MISSING_CREDIT_DOCUMENT,
        "6008": Kind.MISSING_DOCUMENT,
        "6009": Kind.IGNORED,
    }
    changed = found["6002"]
    assert changed.total_cents == 100
    assert changed.vat_cents == {}
    assert changed.shop is not None
    assert changed.exact is not None
    assert changed.exact.total - changed.shop.total == 1
    assert found["6006"].detail == booking_mark(OTHER_SHOP, "6006")  # the other shop's mark, named
    assert found["6007"].total_cents == 2420
    assert found["6004"].order_sync_id is not None
    headline = report.headline
    assert (headline.differences, headline.ignored, headline.not_selected) == (7, 1, 1)
    assert headline.documents == 3  # 6001, 6002, 6003: the other shop's document is not counted


async def test_a_document_with_this_shops_mark_and_no_order_is_reported(fresh_month: BooksMonth) -> None:
    fresh_month.add_order(7001)
    await fresh_month.book(7001)
    del fresh_month.shop.orders[7001]  # the shop no longer lists it

    report = (await run_books_check(fresh_month.books, integration_id=fresh_month.integration.id, month=MONTH)).report

    (finding,) = report.findings
    assert finding.kind == Kind.DOCUMENT_WITHOUT_ORDER
    assert finding.order_number == "7001"
    assert finding.exact is not None
    assert finding.total_cents == int(finding.exact.total * 100)


async def test_the_check_waits_while_bookings_use_the_budget(fresh_month: BooksMonth, redis: ArqRedis) -> None:
    exact = await fresh_month.books.open_exact(fresh_month.integration)
    clock = FixedClock(1_800_000_000.0)
    governor = RateGovernor(redis, minutely_limit=4, daily_limit=1000, clock=clock)
    exact.governor = governor
    for _ in range(2):  # bookings took half the minute
        await governor.acquire(exact.division)
    impatient = Reserve(exact, max_wait=10)
    assert not await impatient.room()
    with pytest.raises(BudgetBusy):
        await impatient.wait()
    assert impatient.waits == 2

    patient = Reserve(exact, max_wait=600)
    await patient.wait()  # the bookings' minute passes: room again, without a call of its own
    assert await patient.room()
    assert 0 < patient.waits * 5 <= 70


async def test_the_cli_exits_1_when_the_books_differ(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gateway books check` against both sandboxes served over HTTP, as an operator runs it."""
    with contextlib.contextmanager(serve_sandboxes)(settings) as served:
        cipher = Cipher(served.settings.encryption_keys)
        async with engine.begin() as conn:
            integration = await create_sandbox_integration(conn, exact_app=served.exact_app, cipher=cipher)
        async with httpx.AsyncClient() as http:
            ctx = {"engine": engine, "settings": served.settings, "cipher": cipher, "http": http, "redis": redis}
            shop = served.mww_app.state.sandbox.main_shop()
            shop.orders[8001] = SandboxOrder(
                8001, ORDER_DAY, "10:00:00", PAID, f"{ORDER_DAY} 10:00:00", JAN, DOMESTIC_LINES
            )
            outcome = await pipeline.accept_notice(
                engine,
                redis,
                integration=integration,
                order_number="8001",
                status_id=PAID,
                source="poller",
                dedupe_key="cli",
            )
            assert outcome.order_sync_id is not None
            await book_order(services_from_context(ctx), outcome.order_sync_id)
        args = build_parser().parse_args(
            ["books", "check", "--integration", str(integration.id), "--month", str(MONTH), "--json"]
        )
        capsys.readouterr()
        assert await books_check(served.settings, engine, args) == 0
        clean = json.loads(capsys.readouterr().out)
        assert (clean["headline"]["orders"], clean["headline"]["differences"], clean["exact_calls"]) == (1, 0, 1)

        served.exact_app.state.sandbox.divisions[DIVISIONS[0].code].rows["SalesEntries"].clear()  # deleted in Exact
        assert await books_check(served.settings, engine, args) == 1
        differs = json.loads(capsys.readouterr().out)
        assert [f["kind"] for f in differs["findings"]] == ["deleted_document"]
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["books", "check", "--integration", "1", "--month", "2026-13"])
    assert refused.value.code == 2


@pytest.mark.parametrize(
    ("insertion_type", "entity", "lines", "vat_field"),
    [
        pytest.param("sales_invoice", "SalesInvoices", "SalesInvoiceLines", "VATAmountFC", id="sales-invoices"),
        pytest.param("sales_order", "SalesOrders", "SalesOrderLines", "VATAmount", id="sales-orders"),
    ],
)
async def test_invoices_and_orders_are_read_from_their_bulk_endpoints(
    engine: AsyncEngine,
    redis: ArqRedis,
    settings: Settings,
    insertion_type: str,
    entity: str,
    lines: str,
    vat_field: str,
) -> None:
    async with books_month(engine, redis, settings, insertion_type=insertion_type) as box:
        for number in (7101, 7102):
            box.add_order(number)
            await box.book(number)
        changed = box.entry(7102, entity=entity)[lines][0]
        changed[vat_field] = Decimal(str(changed.get(vat_field) or changed["VATAmountFC"])) + Decimal("0.02")
        changed["VATAmountFC"] = changed[vat_field]
        calls_before = len(box.exact_app.state.sandbox.calls)

        outcome = await run_books_check(box.books, integration_id=box.integration.id, month=MONTH)

    (finding,) = outcome.report.findings
    assert (finding.kind, finding.order_number, finding.total_cents) == (Kind.AMOUNT_DIFFERENCE, "7102", 2)
    assert list(finding.vat_cents.values()) == [2]
    assert outcome.report.headline.documents == 2
    paths = [c.path for c in box.exact_app.state.sandbox.calls[calls_before:]]
    assert paths == [
        f"bulk/{'SalesInvoice' if entity == 'SalesInvoices' else 'SalesOrder'}/{p}" for p in (entity, lines)
    ]


async def test_a_month_without_orders_or_documents_agrees(fresh_month: BooksMonth) -> None:
    outcome = await run_books_check(
        fresh_month.books, integration_id=fresh_month.integration.id, month=MONTH.previous()
    )

    headline = outcome.report.headline
    assert (headline.orders, headline.documents, headline.differences, outcome.report.findings) == (0, 0, 0, ())
    assert headline.shop_total == headline.exact_total == 0
