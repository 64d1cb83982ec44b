"""The reconciliation pages: a month's headline and findings from a real check of the sandboxes, each finding linked
to its order with its fix (retry, book again, mark reviewed), the CSV and the PDF, "check now" queueing the job, the
monthly schedule, and nothing of one shop visible to another owner."""

from __future__ import annotations

import csv
import io
import re
import zlib
from decimal import Decimal

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.books_check.exports import report_csv
from gateway.books_check.findings import Kind
from gateway.books_check.run import run_books_check
from gateway.settings import Settings
from gateway.store import books_checks, orders
from gateway.store.accounts import set_locale
from gateway.store.integrations import get_integration_or_raise
from tests.support.books_month import MONTH, BooksMonth, books_month
from tests.support.factories import create_login, csrf_of, log_in

OWNER = "owner@books.test"
STRANGER = "stranger@books.test"


@pytest.fixture
async def month(engine: AsyncEngine, redis: ArqRedis, settings: Settings):  # type: ignore[no-untyped-def]
    """A checked month: 9101 fine, 9102 with a changed amount, 9103 deleted in Exact, 9104 never seen."""
    async with engine.begin() as conn:
        owner = await create_login(conn, email=OWNER)
        await create_login(conn, email=STRANGER)
    async with books_month(engine, redis, settings, account_id=owner) as box:
        for number in (9101, 9102, 9103):
            box.add_order(number)
            await box.book(number)
        box.change_amount(9102, "-0.05")
        box.delete(9103)
        box.add_order(9104)  # paid, but the gateway never heard of it
        await run_books_check(box.books, integration_id=box.integration.id, month=MONTH)
        yield box


def pdf_text(pdf: bytes) -> bytes:
    """The PDF's content streams, inflated (fpdf2 compresses them): where its text is written."""
    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S)
    return b"".join(zlib.decompress(s) for s in streams if s[:1] == b"x")


def page(client: TestClient, month: BooksMonth, suffix: str = "") -> str:
    return f"/integrations/{month.integration.id}/books{suffix}"


async def test_the_month_page_shows_the_headline_and_each_finding_with_its_fix(
    client: TestClient, month: BooksMonth
) -> None:
    log_in(client, OWNER)
    overview = client.get(page(client, month))
    assert overview.status_code == 200, overview.text
    assert f'/integrations/{month.integration.id}/books/{MONTH}"' in overview.text

    response = client.get(page(client, month, f"/{MONTH}"))
    assert response.status_code == 200, response.text
    html = response.text
    assert "4 orders" in html
    assert "2 documents" in html
    assert "3 differences" in html
    assert "Amounts differ" in html
    assert "Deleted in Exact after booking" in html
    assert "difference -€0.05" in html
    async with month.engine.connect() as conn:
        deleted = await orders.get_sync_by_number(conn, integration_id=month.integration.id, order_number="9103")
    assert deleted is not None
    assert f"/integrations/{month.integration.id}/history/{deleted.id}" in html
    assert f"/books/{MONTH}/rebook/{deleted.id}" in html
    assert "Mark reviewed" in html


async def test_book_again_requeues_the_deleted_order_and_mark_reviewed_is_remembered(
    client: TestClient, month: BooksMonth, redis: ArqRedis
) -> None:
    log_in(client, OWNER)
    html = client.get(page(client, month, f"/{MONTH}")).text
    async with month.engine.connect() as conn:
        deleted = await orders.get_sync_by_number(conn, integration_id=month.integration.id, order_number="9103")
    assert deleted is not None
    token = csrf_of(html)

    rebook = client.post(page(client, month, f"/{MONTH}/rebook/{deleted.id}"), data={"csrf_token": token})
    assert rebook.status_code == 200, rebook.text
    async with month.engine.connect() as conn:
        row = await orders.get_sync(conn, integration_id=month.integration.id, order_sync_id=deleted.id)
    assert row is not None
    assert (row.state, row.exact_document_id) == ("queued", None)
    assert await redis.exists(f"arq:job:sync_order:{month.integration.id}:{deleted.id}:{row.generation}")

    key = f"{Kind.AMOUNT_DIFFERENCE.value}:9102:"
    async with month.engine.connect() as conn:
        check = await books_checks.get_books_check(conn, integration_id=month.integration.id, month=str(MONTH))
    assert check is not None
    assert check.report is not None
    finding = next(f for f in check.report.findings if f.kind == Kind.AMOUNT_DIFFERENCE)
    assert finding.key.startswith(key)
    reviewed = client.post(page(client, month, f"/{MONTH}/reviewed"), data={"csrf_token": token, "key": finding.key})
    assert reviewed.status_code == 200
    assert "reviewed" in reviewed.text
    async with month.engine.connect() as conn:
        check = await books_checks.get_books_check(conn, integration_id=month.integration.id, month=str(MONTH))
    assert check is not None
    assert finding.key in check.reviewed
    refused = client.post(page(client, month, f"/{MONTH}/reviewed"), data={"key": finding.key})
    assert refused.status_code == 403


async def test_the_csv_and_pdf_download_in_the_readers_language(client: TestClient, month: BooksMonth) -> None:
    log_in(client, OWNER)
    response = client.get(page(client, month, f"/{MONTH}.csv"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Month", "Finding", "Order"]
    by_order = {r[2]: r for r in rows[1:] if len(r) > 2}
    assert by_order["9102"][1] == "Amounts differ"
    assert by_order["9102"][6] == "-5"
    assert ["Differences", "3"] in rows

    pdf = client.get(page(client, month, f"/{MONTH}.pdf"))
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    text = pdf_text(pdf.content)
    for expected in (b"(Reconciliation 2026-10)", b"(Amounts differ)", b"(9102)", b"(Deleted in Exact after booking)"):
        assert expected in text, expected


async def test_the_dutch_csv_uses_decimal_commas_and_semicolons(month: BooksMonth) -> None:
    async with month.engine.connect() as conn:
        check = await books_checks.get_books_check(conn, integration_id=month.integration.id, month=str(MONTH))
    assert check is not None
    assert check.report is not None
    text = report_csv(check.report, month=str(MONTH), locale="nl").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0][:3] == ["Maand", "Bevinding", "Bestelling"]
    shop_total = next(r for r in rows if r[2:3] == ["9102"])[4]
    assert "," in shop_total
    assert Decimal(shop_total.replace(",", ".")) > 0


async def test_check_now_queues_the_job_and_the_schedule_is_saved(
    client: TestClient, month: BooksMonth, redis: ArqRedis
) -> None:
    log_in(client, OWNER)
    token = csrf_of(client.get(page(client, month)).text)
    response = client.post(page(client, month, "/run"), data={"csrf_token": token, "month": "2026-09"})
    assert response.status_code == 200
    assert await redis.exists(f"arq:job:books_check:{month.integration.id}:2026-09")
    future = client.post(page(client, month, "/run"), data={"csrf_token": token, "month": "2999-01"})
    assert "Choose a month that has begun" in future.text

    client.post(page(client, month, "/schedule"), data={"csrf_token": token, "monthly": "on"})
    async with month.engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=month.integration.id)
    assert integration.settings.books_check_monthly


async def test_another_owner_sees_nothing_of_this_shops_books(client: TestClient, month: BooksMonth) -> None:
    log_in(client, STRANGER)
    for suffix in (f"/{MONTH}", f"/{MONTH}.csv", f"/{MONTH}.pdf", ""):
        assert client.get(page(client, month, suffix)).status_code == 404, suffix


async def test_a_dutch_owner_reads_the_month_in_dutch_with_dutch_amounts(client: TestClient, month: BooksMonth) -> None:
    async with month.engine.begin() as conn:
        await set_locale(conn, account_id=month.integration.account_id, locale="nl")
    log_in(client, OWNER)
    html = client.get(page(client, month, f"/{MONTH}"), headers={"Accept-Language": "nl"}).text
    assert "Controle 2026-10" in html
    assert "3 verschillen" in html
    assert "Bedragen verschillen" in html
    assert "verschil €\u00a0-0,05" in html  # Babel, Dutch: the sign after the currency


async def test_an_order_the_gateway_never_saw_is_booked_with_one_click(
    client: TestClient, month: BooksMonth, redis: ArqRedis
) -> None:
    log_in(client, OWNER)
    html = client.get(page(client, month, f"/{MONTH}")).text
    assert f"/books/{MONTH}/fetch/9104" in html
    token = csrf_of(html)

    response = client.post(page(client, month, f"/{MONTH}/fetch/9104"), data={"csrf_token": token})

    assert "The order is queued to be booked." in response.text
    async with month.engine.connect() as conn:
        row = await orders.get_sync_by_number(conn, integration_id=month.integration.id, order_number="9104")
    assert row is not None
    assert row.state == "queued"
    assert await redis.exists(f"arq:job:sync_order:{month.integration.id}:{row.id}:{row.generation}")
    assert client.post(page(client, month, f"/{MONTH}/fetch/9101"), data={"csrf_token": token}).status_code == 404
