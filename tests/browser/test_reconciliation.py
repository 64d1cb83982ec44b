"""An owner opens a month's reconciliation in Chromium, reads the headline and the findings, and downloads the CSV."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.booking_documents import booking_mark
from gateway.books_check.findings import ExactBooking, GatewayRecord, ShopOrder
from gateway.books_check.matcher import match_month
from gateway.db import create_engine
from gateway.store import books_checks
from tests.support.browser import Live, shoot
from tests.support.factories import PAGE_PASSWORD, create_active_integration, create_login

pytestmark = pytest.mark.browser

EMAIL = "books@theepot.test"
MONTH = "2026-10"


async def _checked_month(database_url: str) -> int:
    """An owner with a shop whose October check found one changed amount (stored as the job stores it)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            owner = await create_login(conn, email=EMAIL)
            integration = await create_active_integration(conn, account_id=owner)
            orders = [
                ShopOrder(n, date(2026, 10, 2), 3, Decimal("121.00"), {Decimal(21): Decimal("21.00")})
                for n in ("1", "2")
            ]
            documents = [
                ExactBooking(
                    "sales_entry",
                    f"id-{n}",
                    f"2670000{n}",
                    n,
                    booking_mark(integration.id, n),
                    total,
                    {Decimal(21): vat},
                )
                for n, total, vat in (
                    ("1", Decimal("121.00"), Decimal("21.00")),
                    ("2", Decimal("120.00"), Decimal("20.83")),
                )
            ]
            records = {
                n: GatewayRecord(0, n, "booked", f"id-{n}", datetime(2026, 10, 2, tzinfo=UTC)) for n in ("1", "2")
            }
            report = match_month(
                integration_id=integration.id,
                selected_statuses=(3,),
                orders=orders,
                bookings=documents,
                records=records,
            )
            await books_checks.start_books_check(conn, integration_id=integration.id, month=MONTH)
            await books_checks.finish_books_check(
                conn, integration_id=integration.id, month=MONTH, report=report, exact_calls=1, shop_calls=1
            )
        return integration.id
    finally:
        await engine.dispose()


def test_the_owner_reads_the_months_reconciliation_and_downloads_the_csv(browser: Any, live: Live) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        integration_id = pool.submit(asyncio.run, _checked_month(live.settings.database_url)).result()
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(live.url + "/login")
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password").fill(PAGE_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/integrations|/setup|/$"))

    page.goto(f"{live.url}/integrations/{integration_id}/books")
    page.get_by_role("link", name=MONTH).click()
    page.wait_for_url(re.compile(rf"/books/{MONTH}$"))
    assert "2 orders" in page.locator("#headline").inner_text()
    assert page.locator("#differences").inner_text().strip() == "1 difference"
    assert "Amounts differ" in page.locator("#findings").inner_text()
    shoot(page, "50-reconciliation-month")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"reconciliation-{integration_id}-{MONTH}.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert rows[1][1:3] == ["Amounts differ", "2"]
    assert rows[1][6] == "-100"
    context.close()
