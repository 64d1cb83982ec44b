"""The sandbox Exact's bulk endpoints behave as Exact documents them: GET only, a $select and a $filter required,
1,000 rows a page followed by a `__next` link that keeps every query option."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_entities import WRITABLE
from gateway.sandbox.exact_records import create_record
from gateway.sandbox.exact_seed import DIVISIONS, stable_id

HOST = "https://exact.bulk.test"
DIVISION = DIVISIONS[0].code
LINES = f"/api/v1/{DIVISION}/bulk/Financial/TransactionLines"


@pytest.fixture
async def bulk_exact() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_exact_sandbox(minutely_limit=100_000, daily_limit=1_000_000)
    tokens = app.state.sandbox.tokens
    code = tokens.new_code("bulk", "http://bulk/cb")
    _, body = tokens.exchange({"code": code, "client_id": "bulk", "redirect_uri": "http://bulk/cb"})
    headers = {"Authorization": f"Bearer {body['access_token']}", "Accept": "application/json"}
    async with httpx.AsyncClient(base_url=HOST, transport=httpx.ASGITransport(app=app), headers=headers) as http:
        yield app, http


def entry(division: Any, number: int) -> None:
    payload = {
        "Journal": "70",
        "Customer": division.rows["Accounts"][0]["ID"],
        "EntryDate": "2026-10-05T00:00:00",
        "YourRef": str(number),
        "PaymentReference": f"{number}/MW1",
        "SalesEntryLines": [
            {
                "GLAccount": stable_id(DIVISION, "gl", "8000"),
                "AmountFC": "100.00",
                "VATCode": "2",
                "VATAmountFC": "21.00",
            }
        ],
    }
    create_record(division, WRITABLE["SalesEntries"], payload, datetime(2026, 10, 5, tzinfo=UTC))


async def test_transaction_lines_come_1000_a_page_with_the_entry_total_and_vat(bulk_exact: Any) -> None:
    app, http = bulk_exact
    division = app.state.sandbox.divisions[DIVISION]
    for number in range(400):  # 3 lines each: receivable, revenue, VAT
        entry(division, 5000 + number)
    params = {"$select": "EntryID,AmountFC,AmountVATFC,VATCode", "$filter": "JournalCode eq '70'"}

    first = (await http.get(LINES, params=params)).json()["d"]
    assert len(first["results"]) == 1000
    second = (await http.get(first["__next"])).json()["d"]
    assert len(second["results"]) == 200
    assert "__next" not in second
    assert set(first["results"][0]) == {"EntryID", "AmountFC", "AmountVATFC", "VATCode"}
    one = [r for r in first["results"] if r["EntryID"] == first["results"][0]["EntryID"]]
    assert sorted((r["AmountFC"], r["AmountVATFC"], (r["VATCode"] or "").strip()) for r in one) == [
        (-100.0, -21.0, "2"),
        (-21.0, 0.0, "2"),
        (121.0, 0.0, ""),
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"$filter": "JournalCode eq '70'"}, "$select", id="no-select"),
        pytest.param({"$select": "EntryID"}, "mandatory filtering", id="no-filter"),
        pytest.param({"$select": "Nope", "$filter": "JournalCode eq '70'"}, "Nope", id="unknown-field"),
    ],
)
async def test_bulk_reads_are_refused_like_exact_refuses_them(
    bulk_exact: Any, params: dict[str, str], message: str
) -> None:
    _, http = bulk_exact
    response = await http.get(LINES, params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]["value"]


async def test_bulk_endpoints_are_read_only(bulk_exact: Any) -> None:
    _, http = bulk_exact
    response = await http.post(f"/api/v1/{DIVISION}/bulk/SalesInvoice/SalesInvoices", json={})
    assert response.status_code == 405
