"""The sandbox Exact Online answers like the real API: token rules, OData envelope and paging, mandatory filtering,
POST validation in Exact's words, limits with Exact's headers, booked documents kept, and fault switches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.clients.exact import parse_odata_date
from gateway.sandbox import exact_entities
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_seed import CREATED, stable_id
from tests.support.exact_contract import CONTRACTS

HOST = "https://exact-nl.test"
DIVISION = 123456
REDIRECT = "http://gateway.test/connect/exact/callback"
pytestmark = pytest.mark.anyio  # parametrized async tests need the marker at collection time


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_030.0  # 30 s into a clock minute

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    """The sandbox's clock, set by the test."""
    return Clock()


@pytest.fixture
def tight_exact(clock: Clock) -> Any:
    """The sandbox with faults switchable and tight limits (5 calls a minute, 8 a day) on the test's clock."""
    return create_exact_sandbox(faults_enabled=True, minutely_limit=5, daily_limit=8, clock=clock)


@pytest.fixture
async def exact_http(tight_exact: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to `tight_exact` at the test host."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tight_exact), base_url=HOST) as client:
        yield client


async def authorize(exact_http: httpx.AsyncClient, decision: str = "approve") -> dict[str, list[str]]:
    page = await exact_http.get(
        "/api/oauth2/auth",
        params={"client_id": "c", "redirect_uri": REDIRECT, "response_type": "code", "state": "s<1>"},
    )
    assert page.status_code == 200
    assert 'value="s&lt;1&gt;"' in page.text  # escaped, no script needed: a form with two buttons
    answer = await exact_http.post(
        "/api/oauth2/auth", data={"client_id": "c", "redirect_uri": REDIRECT, "state": "s<1>", "decision": decision}
    )
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


async def token(exact_http: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await exact_http.post("/api/oauth2/token", data={"client_id": "c", "client_secret": "s", **form})


async def first_pair(exact_http: httpx.AsyncClient) -> dict[str, str]:
    code = (await authorize(exact_http))["code"][0]
    response = await token(exact_http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
async def bearer(exact_http: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await first_pair(exact_http))['access_token']}"}


def test_the_entity_table_matches_exacts_contract() -> None:
    """The sandbox's own table (gateway/sandbox/exact_entities.py) against the test data derived separately from
    Exact's reference (tests/support/exact_contract.py): same properties accepted, no requirement Exact lacks."""
    specs = [*exact_entities.WRITABLE.values()]
    specs += [s.line_spec for s in specs if s.line_spec is not None]
    assert {spec.name for spec in specs} <= set(CONTRACTS)
    for spec in specs:
        contract = CONTRACTS[spec.name]
        assert spec.accepted == contract.accepted, spec.name
        assert spec.key == contract.key, spec.name
        assert set(spec.required) <= contract.required | {spec.key}, spec.name


# ---------------------------------------------------------------- OAuth


async def test_denying_consent_redirects_with_access_denied(exact_http: httpx.AsyncClient) -> None:
    assert await authorize(exact_http, decision="deny") == {"error": ["access_denied"], "state": ["s<1>"]}


async def test_a_code_works_once_and_tokens_come_as_exact_sends_them(exact_http: httpx.AsyncClient) -> None:
    code = (await authorize(exact_http))["code"][0]
    assert "!" in code  # Exact's codes carry "!", sent URL-encoded
    first = await token(exact_http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert first.json()["expires_in"] == "600"
    assert first.json()["token_type"] == "bearer"
    again = await token(exact_http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_a_code_expires_after_three_minutes(exact_http: httpx.AsyncClient, clock: Clock) -> None:
    code = (await authorize(exact_http))["code"][0]
    clock.t += 181
    response = await token(exact_http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert response.status_code == 400


async def test_refresh_tokens_are_single_use_and_renewal_waits_570_seconds(
    exact_http: httpx.AsyncClient, clock: Clock
) -> None:
    pair = await first_pair(exact_http)
    early = await token(exact_http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert (early.status_code, early.json()["error_description"]) == (401, "Access Token not expired")
    clock.t += 570
    renewed = await token(exact_http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != pair["refresh_token"]
    clock.t += 600
    reused = await token(exact_http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert (reused.status_code, reused.json()) == (
        401,
        {"error": "invalid_grant", "error_description": "Old refresh token used."},
    )


async def test_a_refresh_token_unused_for_30_days_expires(exact_http: httpx.AsyncClient, clock: Clock) -> None:
    pair = await first_pair(exact_http)
    clock.t += 31 * 24 * 3600
    response = await token(exact_http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error_description"].startswith("The refresh token expired at")


async def test_access_tokens_last_ten_minutes(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], clock: Clock
) -> None:
    assert (await exact_http.get("/api/v1/current/Me", headers=bearer)).status_code == 200
    clock.t += 601
    assert (await exact_http.get("/api/v1/current/Me", headers=bearer)).status_code == 401


# ---------------------------------------------------------------- reads


async def test_lists_use_the_odata_envelope_and_page_by_60(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], tight_exact: Any
) -> None:
    tight_exact.state.sandbox.divisions[DIVISION].rows["Accounts"].extend(
        {"ID": f"id-{n}", "Code": f"{n:>18}", "Name": f"Klant {n}", "Status": "C"} for n in range(70)
    )
    response = await exact_http.get(
        f"/api/v1/{DIVISION}/crm/Accounts",
        params={"$select": "ID,Name", "$filter": "Status eq 'C'"},
        headers=bearer,
    )
    body = response.json()["d"]
    assert len(body["results"]) == 60
    assert set(body["results"][0]) == {"ID", "Name"}
    following = await exact_http.get(body["__next"], headers=bearer)
    assert len(following.json()["d"]["results"]) == 72 - 60
    assert "__next" not in following.json()["d"]


async def test_dates_come_as_epoch_milliseconds(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await exact_http.get(
        f"/api/v1/{DIVISION}/logistics/Items",
        params={"$select": "Code,Created", "$filter": "Code eq 'VERZEND'"},
        headers=bearer,
    )
    [item] = response.json()["d"]["results"]
    assert parse_odata_date(item["Created"]) == CREATED


@pytest.mark.parametrize("path", ["crm/Accounts", "logistics/Items"])
async def test_accounts_and_items_need_a_filter(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], path: str
) -> None:
    response = await exact_http.get(f"/api/v1/{DIVISION}/{path}", params={"$select": "ID"}, headers=bearer)
    assert response.status_code == 400
    assert "mandatory filtering" in response.json()["error"]["message"]["value"]


async def test_filters_understand_quotes_trim_and_guids(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    account = stable_id(DIVISION, "account", "1")
    for expression in ("trim(Code) eq '1'", f"ID eq guid'{account}'", "Name eq 'Jan Jansen' and Status eq 'C'"):
        response = await exact_http.get(
            f"/api/v1/{DIVISION}/crm/Accounts", params={"$select": "ID", "$filter": expression}, headers=bearer
        )
        assert response.json()["d"]["results"] == [{"ID": account}], expression
    bad = await exact_http.get(
        f"/api/v1/{DIVISION}/crm/Accounts", params={"$select": "ID", "$filter": "Name eq 'o'brien'"}, headers=bearer
    )
    assert bad.status_code == 400


async def test_oss_country_exists_only_where_the_feature_is_on(
    exact_http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    params = {"$select": "Code,OssCountry"}
    assert (await exact_http.get(f"/api/v1/{DIVISION}/vat/VATCodes", params=params, headers=bearer)).status_code == 200
    refused = await exact_http.get("/api/v1/345678/vat/VATCodes", params=params, headers=bearer)
    assert refused.status_code == 400
    assert "OssCountry" in refused.json()["error"]["message"]["value"]


# ---------------------------------------------------------------- writes


def entry(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Journal": "70",
        "Customer": stable_id(DIVISION, "account", "1"),
        "YourRef": "5001",
        "SalesEntryLines": [{"GLAccount": stable_id(DIVISION, "gl", "8000"), "AmountFC": 82.64, "VATCode": "2"}],
    }
    return {**body, **changes}


async def post(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], path: str, body: Any, division: int = DIVISION
) -> Any:
    return await exact_http.post(f"/api/v1/{division}/{path}", json=body, headers=bearer)


def message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"]["value"])


async def test_a_sales_entry_is_booked_and_kept(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], tight_exact: Any
) -> None:
    response = await post(exact_http, bearer, "salesentry/SalesEntries", entry())
    assert response.status_code == 201
    created = response.json()["d"]
    assert created["AmountFC"] == 99.99
    assert created["SalesEntryLines"] == {"__deferred": {"uri": ""}}
    state = (await exact_http.get("/_sandbox/state")).json()
    [kept] = state["divisions"][str(DIVISION)]["SalesEntries"]
    assert (kept["EntryID"], kept["YourRef"]) == (created["EntryID"], "5001")
    assert kept["SalesEntryLines"][0]["VATAmountFC"] == "17.35"
    found = await exact_http.get(
        f"/api/v1/{DIVISION}/salesentry/SalesEntries",
        params={"$select": "EntryID", "$filter": "YourRef eq '5001'"},
        headers=bearer,
    )
    assert found.json()["d"]["results"] == [{"EntryID": created["EntryID"]}]


async def test_an_unknown_property_is_refused_like_exact(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await post(exact_http, bearer, "salesentry/SalesEntries", entry(Amount=1))
    assert response.status_code == 400
    assert message(response) == (
        "Error processing request stream. The property name 'Amount' specified for type "
        "'Exact.Web.Api.Models.SalesEntry' is not valid."
    )
    line = {"GLAccount": stable_id(DIVISION, "gl", "8000"), "AmountFC": 1, "Type": 20}  # read-only on lines
    assert (await post(exact_http, bearer, "salesentry/SalesEntries", entry(SalesEntryLines=[line]))).status_code == 400


async def test_missing_and_wrong_fields_are_all_reported(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await post(
        exact_http, bearer, "salesentry/SalesEntries", {"YourRef": "1", "SalesEntryLines": [{"GLAccount": "nope"}]}
    )
    assert response.status_code == 400
    assert message(response).split("\r\n") == [
        "Mandatory: Customer",
        "Mandatory: Journal",
        "Mandatory: AmountFC",
        "Invalid reference: GLAccount",
    ]


async def test_a_purchase_or_blocked_vat_code_is_refused(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    lines = [{"GLAccount": stable_id(DIVISION, "gl", "8000"), "AmountFC": 10, "VATCode": "11"}]
    response = await post(exact_http, bearer, "salesentry/SalesEntries", entry(SalesEntryLines=lines))
    assert "VATCode" in message(response)


async def test_direct_sales_invoices_need_the_wholesale_edition(
    exact_http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    def invoice(division: int) -> dict[str, Any]:
        return {
            "Journal": "70",
            "OrderedBy": stable_id(division, "account", "1"),
            "Type": 8023,
            "Warehouse": "6b7e5c1a-0000-4000-8000-000000000001",
            "SalesInvoiceLines": [{"Item": stable_id(division, "item", "TSHIRT-001"), "Quantity": 2, "UnitPrice": 10}],
        }

    refused = await post(exact_http, bearer, "salesinvoice/SalesInvoices", invoice(DIVISION))
    assert refused.status_code == 400
    assert "Wholesale & Distribution" in message(refused)
    accepted = await post(exact_http, bearer, "salesinvoice/SalesInvoices", invoice(234567), division=234567)
    assert accepted.status_code == 201, accepted.text


async def test_printing_an_invoice_processes_and_numbers_it(
    exact_http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    body = {
        "Journal": "70",
        "OrderedBy": stable_id(DIVISION, "account", "1"),
        "YourRef": "5002",
        "SalesInvoiceLines": [{"Item": stable_id(DIVISION, "item", "TSHIRT-001"), "Quantity": 2, "UnitPrice": 10}],
    }
    invoice = (await post(exact_http, bearer, "salesinvoice/SalesInvoices", body)).json()["d"]
    assert (invoice["Status"], invoice["InvoiceNumber"]) == (20, None)
    printed = await post(
        exact_http,
        bearer,
        "salesinvoice/PrintedSalesInvoices",
        {"InvoiceID": invoice["InvoiceID"], "SendEmailToCustomer": True},
    )
    assert printed.status_code == 201
    assert printed.json()["d"]["EmailCreationSuccess"]
    state = (await exact_http.get("/_sandbox/state")).json()["divisions"][str(DIVISION)]
    assert state["SalesInvoices"][0]["Status"] == 50
    assert state["SalesInvoices"][0]["InvoiceNumber"] is not None
    again = await post(exact_http, bearer, "salesinvoice/PrintedSalesInvoices", {"InvoiceID": invoice["InvoiceID"]})
    assert again.status_code == 400


async def test_sales_orders_refuse_negative_amounts(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    line = {"Item": stable_id(DIVISION, "item", "TSHIRT-001"), "Quantity": 1, "UnitPrice": -5}
    body = {"OrderedBy": stable_id(DIVISION, "account", "1"), "SalesOrderLines": [line]}
    assert (await post(exact_http, bearer, "salesorder/SalesOrders", body)).status_code == 400
    line["UnitPrice"] = 5
    created = await post(exact_http, bearer, "salesorder/SalesOrders", body)
    assert (created.status_code, created.json()["d"]["Status"]) == (201, 12)


async def test_accounts_and_items_can_be_created(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    account = await post(
        exact_http, bearer, "crm/Accounts", {"Name": "Piet", "Email": "piet@example.nl", "Status": "C"}
    )
    assert account.status_code == 201
    assert len(account.json()["d"]["Code"]) == 18
    item = await post(exact_http, bearer, "logistics/Items", {"Code": "NEW-1", "Description": "x" * 61})
    assert "60" in message(item)
    assert (
        await post(exact_http, bearer, "logistics/Items", {"Code": "VERZEND", "Description": "dup"})
    ).status_code == 400


# ---------------------------------------------------------------- limits and faults


async def test_minutely_limit_with_exacts_headers_then_429(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], clock: Clock
) -> None:
    url = f"/api/v1/{DIVISION}/financial/Journals"
    answers = [await exact_http.get(url, params={"$select": "Code"}, headers=bearer) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[0].headers["X-RateLimit-Minutely-Remaining"] == "4"
    assert answers[0].headers["X-RateLimit-Minutely-Reset"] == str(1_800_000_060_000)
    assert answers[4].headers["X-RateLimit-Remaining"] == "3"
    assert "X-RateLimit-Remaining" not in answers[5].headers  # only the minutely headers once those are spent
    clock.t += 30
    assert (await exact_http.get(url, params={"$select": "Code"}, headers=bearer)).status_code == 200
    assert (await exact_http.get("/api/v1/current/Me", headers=bearer)).status_code == 200  # no division: not counted


async def test_daily_limit_answers_429_until_the_next_day(
    exact_http: httpx.AsyncClient, bearer: dict[str, str], clock: Clock
) -> None:
    url = f"/api/v1/{DIVISION}/financial/Journals"
    statuses = []
    for _ in range(9):
        statuses.append((await exact_http.get(url, params={"$select": "Code"}, headers=bearer)).status_code)
        clock.t += 61
    assert statuses == [200] * 8 + [429]


async def test_fault_switches_are_off_unless_enabled() -> None:
    app = create_exact_sandbox()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as exact_http:
        assert (await exact_http.post("/_sandbox/faults", json={"fail_next": 1})).status_code == 404


async def test_a_storm_of_429s_and_5xx_answers(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    assert (await exact_http.post("/_sandbox/faults", json={"storm_429": 2, "fail_next": 1})).status_code == 200
    url = f"/api/v1/{DIVISION}/financial/Journals"
    statuses = [(await exact_http.get(url, params={"$select": "Code"}, headers=bearer)).status_code for _ in range(4)]
    assert statuses == [429, 429, 503, 200]


async def test_fail_after_storing_keeps_the_document(exact_http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    await exact_http.post("/_sandbox/faults", json={"fail_after_store": 1})
    failed = await post(exact_http, bearer, "salesentry/SalesEntries", entry(YourRef="7001"))
    assert failed.status_code == 500
    state = (await exact_http.get("/_sandbox/state")).json()["divisions"][str(DIVISION)]
    assert [e["YourRef"] for e in state["SalesEntries"]] == ["7001"]
