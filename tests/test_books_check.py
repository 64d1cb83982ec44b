"""The books check against both sandboxes: a month with every kind of finding planted (a deleted document, a changed
amount, a document changed by hand, another shop's document adopted for an order with the same number, a skipped
order, a missing credit document, an order that never arrived, an ignored one) and a clean month; the reads use the
bulk endpoints within the governor's reserve, and the CLI's exit code says whether the books agree."""

from __future__ import annotations

from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.booking_documents import booking_mark
from gateway.books_check.budget import BudgetBusy, Reserve
from gateway.books_check.findings import Kind
from gateway.books_check.run import run_books_check
from gateway.clock import FixedClock
from gateway.ratelimit import RateGovernor
from gateway.settings import Settings
from gateway.store import books_checks, orders
from tests.support.books_month import CREDIT_LINES, MONTH, PAID, UNSELECTED, BooksMonth, books_month

OTHER_SHOP = 4242


@pytest.fixture
async def month(engine: AsyncEngine, redis: ArqRedis, settings: Settings):  # type: ignore[no-untyped-def]
    async with books_month(engine, redis, settings) as box:
        yield box


async def test_a_clean_month_has_no_differences_and_costs_one_call_per_side(month: BooksMonth) -> None:
    for number in (5001, 5002, 5003):
        month.add_order(number)
        await month.book(number)
    month.add_order(5004, day=MONTH.day_after)  # next month: not this month's
    calls_before = len(month.exact_app.state.sandbox.calls)

    outcome = await run_books_check(month.books, integration_id=month.integration.id, month=MONTH)

    headline = outcome.report.headline
    assert outcome.report.findings == ()
    assert (headline.orders, headline.documents, headline.differences) == (3, 3, 0)
    assert headline.shop_total == headline.exact_total
    assert [(rate, shop == exact) for rate, shop, exact in headline.vat_rows()] == [(9, True), (21, True)]
    reads = month.exact_app.state.sandbox.calls[calls_before:]
    assert [(c.method, c.path) for c in reads] == [("GET", "bulk/Financial/TransactionLines")]
    assert (outcome.exact_calls, outcome.shop_calls) == (1, 1)
    async with month.engine.connect() as conn:
        stored = await books_checks.get_books_check(conn, integration_id=month.integration.id, month=str(MONTH))
    assert stored is not None
    assert (stored.state, stored.report, stored.exact_calls) == ("done", outcome.report, 1)


async def test_every_planted_finding_is_reported_with_both_sides(month: BooksMonth) -> None:
    for number in (6001, 6002, 6003, 6004, 6006):
        month.add_order(number)
        await month.book(number)
    month.change_amount(6002, "1.00")  # a changed amount
    month.entry(6003)["Modified"] = month.exact_app.state.sandbox.now() + timedelta(days=1)  # edited by hand
    month.delete(6004)  # deleted in Exact
    month.add_order(6005, status=UNSELECTED)  # seen unpaid (skipped), paid later without a notice
    await month.notice(6005, status=UNSELECTED)
    month.shop.orders[6005].status = PAID
    # Another shop in the same administration has an order 6006 too; our row was pointed at its document.
    foreign = month.foreign_entry(6006, OTHER_SHOP)
    month.delete(6006)
    async with month.engine.begin() as conn:
        row = await orders.get_sync_by_number(conn, integration_id=month.integration.id, order_number="6006")
        assert row is not None
        await orders.update_sync(conn, row.id, exact_document_id=foreign["EntryID"])
    month.add_order(6007, lines=CREDIT_LINES, credited=6001)  # a credit order without its credit document
    month.add_order(6008)  # never reached the gateway
    month.add_order(6009)
    ignored = await month.notice(6009)
    async with month.engine.begin() as conn:
        assert await orders.ignore_sync(conn, integration_id=month.integration.id, order_sync_id=ignored)
    month.add_order(6010, status=UNSELECTED)  # not paid: not due

    report = (await run_books_check(month.books, integration_id=month.integration.id, month=MONTH)).report

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


async def test_a_document_with_this_shops_mark_and_no_order_is_reported(month: BooksMonth) -> None:
    month.add_order(7001)
    await month.book(7001)
    del month.shop.orders[7001]  # the shop no longer lists it

    report = (await run_books_check(month.books, integration_id=month.integration.id, month=MONTH)).report

    (finding,) = report.findings
    assert finding.kind == Kind.DOCUMENT_WITHOUT_ORDER
    assert finding.order_number == "7001"
    assert finding.exact is not None
    assert finding.total_cents == int(finding.exact.total * 100)


async def test_the_check_waits_while_bookings_use_the_budget(month: BooksMonth, redis: ArqRedis) -> None:
    exact = await month.books.open_exact(month.integration)
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
