"""The sandbox Exact Online answers like the real API: token rules, OData envelope and paging, mandatory filtering,
POST validation in Exact's words, limits with Exact's headers, booked documents kept, and fault switches."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.clients.exact import parse_odata_date
from gateway.sandbox import exact_entities
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_seed import CREATED, stable_id

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "exact-entities.json"
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
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Any:
    return create_exact_sandbox(faults_enabled=True, minutely_limit=5, daily_limit=8, clock=clock)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as client:
        yield client


async def authorize(http: httpx.AsyncClient, decision: str = "approve") -> dict[str, list[str]]:
    page = await http.get(
        "/api/oauth2/auth",
        params={"client_id": "c", "redirect_uri": REDIRECT, "response_type": "code", "state": "s<1>"},
    )
    assert page.status_code == 200
    assert 'value="s&lt;1&gt;"' in page.text  # escaped, no script needed: a form with two buttons
    answer = await http.post(
        "/api/oauth2/auth", data={"client_id": "c", "redirect_uri": REDIRECT, "state": "s<1>", "decision": decision}
    )
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


async def token(http: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await http.post("/api/oauth2/token", data={"client_id": "c", "client_secret": "s", **form})


async def first_pair(http: httpx.AsyncClient) -> dict[str, str]:
    code = (await authorize(http))["code"][0]
    response = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
async def bearer(http: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await first_pair(http))['access_token']}"}


def test_the_entity_table_matches_exacts_reference() -> None:
    if not REFERENCE.exists():
        pytest.skip("../shared/reference is not beside the project")
    reference = json.loads(REFERENCE.read_text())
    specs = [*exact_entities.WRITABLE.values()]
    specs += [s.line_spec for s in specs if s.line_spec is not None]
    for spec in specs:
        accepted = {p["name"] for p in reference[spec.name]["properties"] if "POST" in p["methods"]}
        required = {p["name"] for p in reference[spec.name]["properties"] if p["required"] and not p["key"]}
        assert spec.accepted == accepted, spec.name
        assert set(spec.required) <= required | {spec.key}, spec.name


# ---------------------------------------------------------------- OAuth


async def test_denying_consent_redirects_with_access_denied(http: httpx.AsyncClient) -> None:
    assert await authorize(http, decision="deny") == {"error": ["access_denied"], "state": ["s<1>"]}


async def test_a_code_works_once_and_tokens_come_as_exact_sends_them(http: httpx.AsyncClient) -> None:
    code = (await authorize(http))["code"][0]
    assert "!" in code  # Exact's codes carry "!", sent URL-encoded
    first = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert first.json()["expires_in"] == "600"
    assert first.json()["token_type"] == "bearer"
    again = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_a_code_expires_after_three_minutes(http: httpx.AsyncClient, clock: Clock) -> None:
    code = (await authorize(http))["code"][0]
    clock.t += 181
    response = await token(http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert response.status_code == 400


async def test_refresh_tokens_are_single_use_and_renewal_waits_570_seconds(
    http: httpx.AsyncClient, clock: Clock
) -> None:
    pair = await first_pair(http)
    early = await token(http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert (early.status_code, early.json()["error_description"]) == (401, "Access Token not expired")
    clock.t += 570
    renewed = await token(http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != pair["refresh_token"]
    clock.t += 600
    reused = await token(http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert (reused.status_code, reused.json()) == (
        401,
        {"error": "invalid_grant", "error_description": "Old refresh token used."},
    )


async def test_a_refresh_token_unused_for_30_days_expires(http: httpx.AsyncClient, clock: Clock) -> None:
    pair = await first_pair(http)
    clock.t += 31 * 24 * 3600
    response = await token(http, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error_description"].startswith("The refresh token expired at")


async def test_access_tokens_last_ten_minutes(http: httpx.AsyncClient, bearer: dict[str, str], clock: Clock) -> None:
    assert (await http.get("/api/v1/current/Me", headers=bearer)).status_code == 200
    clock.t += 601
    assert (await http.get("/api/v1/current/Me", headers=bearer)).status_code == 401


# ---------------------------------------------------------------- reads


async def test_lists_use_the_odata_envelope_and_page_by_60(
    http: httpx.AsyncClient, bearer: dict[str, str], app: Any
) -> None:
    app.state.sandbox.divisions[DIVISION].rows["Accounts"].extend(
        {"ID": f"id-{n}", "Code": f"{n:>18}", "Name": f"Klant {n}", "Status": "C"} for n in range(70)
    )
    response = await http.get(
        f"/api/v1/{DIVISION}/crm/Accounts",
        params={"$select": "ID,Name", "$filter": "Status eq 'C'"},
        headers=bearer,
    )
    body = response.json()["d"]
    assert len(body["results"]) == 60
    assert set(body["results"][0]) == {"ID", "Name"}
    following = await http.get(body["__next"], headers=bearer)
    assert len(following.json()["d"]["results"]) == 72 - 60
    assert "__next" not in following.json()["d"]


async def test_dates_come_as_epoch_milliseconds(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await http.get(
        f"/api/v1/{DIVISION}/logistics/Items",
        params={"$select": "Code,Created", "$filter": "Code eq 'VERZEND'"},
        headers=bearer,
    )
    [item] = response.json()["d"]["results"]
    assert parse_odata_date(item["Created"]) == CREATED


@pytest.mark.parametrize("path", ["crm/Accounts", "logistics/Items"])
async def test_accounts_and_items_need_a_filter(http: httpx.AsyncClient, bearer: dict[str, str], path: str) -> None:
    response = await http.get(f"/api/v1/{DIVISION}/{path}", params={"$select": "ID"}, headers=bearer)
    assert response.status_code == 400
    assert "mandatory filtering" in response.json()["error"]["message"]["value"]


async def test_filters_understand_quotes_trim_and_guids(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    account = stable_id(DIVISION, "account", "1")
    for expression in ("trim(Code) eq '1'", f"ID eq guid'{account}'", "Name eq 'Jan Jansen' and Status eq 'C'"):
        response = await http.get(
            f"/api/v1/{DIVISION}/crm/Accounts", params={"$select": "ID", "$filter": expression}, headers=bearer
        )
        assert response.json()["d"]["results"] == [{"ID": account}], expression
    bad = await http.get(
        f"/api/v1/{DIVISION}/crm/Accounts", params={"$select": "ID", "$filter": "Name eq 'o'brien'"}, headers=bearer
    )
    assert bad.status_code == 400


async def test_oss_country_exists_only_where_the_feature_is_on(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    params = {"$select": "Code,OssCountry"}
    assert (await http.get(f"/api/v1/{DIVISION}/vat/VATCodes", params=params, headers=bearer)).status_code == 200
    refused = await http.get("/api/v1/345678/vat/VATCodes", params=params, headers=bearer)
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


async def post(http: httpx.AsyncClient, bearer: dict[str, str], path: str, body: Any, division: int = DIVISION) -> Any:
    return await http.post(f"/api/v1/{division}/{path}", json=body, headers=bearer)


def message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"]["value"])


async def test_a_sales_entry_is_booked_and_kept(http: httpx.AsyncClient, bearer: dict[str, str], app: Any) -> None:
    response = await post(http, bearer, "salesentry/SalesEntries", entry())
    assert response.status_code == 201
    created = response.json()["d"]
    assert created["AmountFC"] == 99.99
    assert created["SalesEntryLines"] == {"__deferred": {"uri": ""}}
    state = (await http.get("/_sandbox/state")).json()
    [kept] = state["divisions"][str(DIVISION)]["SalesEntries"]
    assert (kept["EntryID"], kept["YourRef"]) == (created["EntryID"], "5001")
    assert kept["SalesEntryLines"][0]["VATAmountFC"] == "17.35"
    found = await http.get(
        f"/api/v1/{DIVISION}/salesentry/SalesEntries",
        params={"$select": "EntryID", "$filter": "YourRef eq '5001'"},
        headers=bearer,
    )
    assert found.json()["d"]["results"] == [{"EntryID": created["EntryID"]}]


async def test_an_unknown_property_is_refused_like_exact(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await post(http, bearer, "salesentry/SalesEntries", entry(Amount=1))
    assert response.status_code == 400
    assert message(response) == (
        "Error processing request stream. The property name 'Amount' specified for type "
        "'Exact.Web.Api.Models.SalesEntry' is not valid."
    )
    line = {"GLAccount": stable_id(DIVISION, "gl", "8000"), "AmountFC": 1, "Type": 20}  # read-only on lines
    assert (await post(http, bearer, "salesentry/SalesEntries", entry(SalesEntryLines=[line]))).status_code == 400


async def test_missing_and_wrong_fields_are_all_reported(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    response = await post(
        http, bearer, "salesentry/SalesEntries", {"YourRef": "1", "SalesEntryLines": [{"GLAccount": "nope"}]}
    )
    assert response.status_code == 400
    assert message(response).split("\r\n") == [
        "Mandatory: Customer",
        "Mandatory: Journal",
        "Mandatory: AmountFC",
        "Invalid reference: GLAccount",
    ]


async def test_a_purchase_or_blocked_vat_code_is_refused(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    lines = [{"GLAccount": stable_id(DIVISION, "gl", "8000"), "AmountFC": 10, "VATCode": "11"}]
    response = await post(http, bearer, "salesentry/SalesEntries", entry(SalesEntryLines=lines))
    assert "VATCode" in message(response)


async def test_direct_sales_invoices_need_the_wholesale_edition(
    http: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    def invoice(division: int) -> dict[str, Any]:
        return {
            "Journal": "70",
            "OrderedBy": stable_id(division, "account", "1"),
            "Type": 8023,
            "Warehouse": "6b7e5c1a-0000-4000-8000-000000000001",
            "SalesInvoiceLines": [{"Item": stable_id(division, "item", "TSHIRT-001"), "Quantity": 2, "UnitPrice": 10}],
        }

    refused = await post(http, bearer, "salesinvoice/SalesInvoices", invoice(DIVISION))
    assert refused.status_code == 400
    assert "Wholesale & Distribution" in message(refused)
    accepted = await post(http, bearer, "salesinvoice/SalesInvoices", invoice(234567), division=234567)
    assert accepted.status_code == 201, accepted.text


async def test_printing_an_invoice_processes_and_numbers_it(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    body = {
        "Journal": "70",
        "OrderedBy": stable_id(DIVISION, "account", "1"),
        "YourRef": "5002",
        "SalesInvoiceLines": [{"Item": stable_id(DIVISION, "item", "TSHIRT-001"), "Quantity": 2, "UnitPrice": 10}],
    }
    invoice = (await post(http, bearer, "salesinvoice/SalesInvoices", body)).json()["d"]
    assert (invoice["Status"], invoice["InvoiceNumber"]) == (20, None)
    printed = await post(
        http,
        bearer,
        "salesinvoice/PrintedSalesInvoices",
        {"InvoiceID": invoice["InvoiceID"], "SendEmailToCustomer": True},
    )
    assert printed.status_code == 201
    assert printed.json()["d"]["EmailCreationSuccess"]
    state = (await http.get("/_sandbox/state")).json()["divisions"][str(DIVISION)]
    assert state["SalesInvoices"][0]["Status"] == 50
    assert state["SalesInvoices"][0]["InvoiceNumber"] is not None
    again = await post(http, bearer, "salesinvoice/PrintedSalesInvoices", {"InvoiceID": invoice["InvoiceID"]})
    assert again.status_code == 400


async def test_sales_orders_refuse_negative_amounts(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    line = {"Item": stable_id(DIVISION, "item", "TSHIRT-001"), "Quantity": 1, "UnitPrice": -5}
    body = {"OrderedBy": stable_id(DIVISION, "account", "1"), "SalesOrderLines": [line]}
    assert (await post(http, bearer, "salesorder/SalesOrders", body)).status_code == 400
    line["UnitPrice"] = 5
    created = await post(http, bearer, "salesorder/SalesOrders", body)
    assert (created.status_code, created.json()["d"]["Status"]) == (201, 12)


async def test_accounts_and_items_can_be_created(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    account = await post(http, bearer, "crm/Accounts", {"Name": "Piet", "Email": "piet@example.nl", "Status": "C"})
    assert account.status_code == 201
    assert len(account.json()["d"]["Code"]) == 18
    item = await post(http, bearer, "logistics/Items", {"Code": "NEW-1", "Description": "x" * 61})
    assert "60" in message(item)
    assert (await post(http, bearer, "logistics/Items", {"Code": "VERZEND", "Description": "dup"})).status_code == 400


# ---------------------------------------------------------------- limits and faults


async def test_minutely_limit_with_exacts_headers_then_429(
    http: httpx.AsyncClient, bearer: dict[str, str], clock: Clock
) -> None:
    url = f"/api/v1/{DIVISION}/financial/Journals"
    answers = [await http.get(url, params={"$select": "Code"}, headers=bearer) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[0].headers["X-RateLimit-Minutely-Remaining"] == "4"
    assert answers[0].headers["X-RateLimit-Minutely-Reset"] == str(1_800_000_060_000)
    assert answers[4].headers["X-RateLimit-Remaining"] == "3"
    assert "X-RateLimit-Remaining" not in answers[5].headers  # only the minutely headers once those are spent
    clock.t += 30
    assert (await http.get(url, params={"$select": "Code"}, headers=bearer)).status_code == 200
    assert (await http.get("/api/v1/current/Me", headers=bearer)).status_code == 200  # no division: not counted


async def test_daily_limit_answers_429_until_the_next_day(
    http: httpx.AsyncClient, bearer: dict[str, str], clock: Clock
) -> None:
    url = f"/api/v1/{DIVISION}/financial/Journals"
    statuses = []
    for _ in range(9):
        statuses.append((await http.get(url, params={"$select": "Code"}, headers=bearer)).status_code)
        clock.t += 61
    assert statuses == [200] * 8 + [429]


async def test_fault_switches_are_off_unless_enabled() -> None:
    app = create_exact_sandbox()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HOST) as http:
        assert (await http.post("/_sandbox/faults", json={"fail_next": 1})).status_code == 404


async def test_a_storm_of_429s_and_5xx_answers(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    assert (await http.post("/_sandbox/faults", json={"storm_429": 2, "fail_next": 1})).status_code == 200
    url = f"/api/v1/{DIVISION}/financial/Journals"
    statuses = [(await http.get(url, params={"$select": "Code"}, headers=bearer)).status_code for _ in range(4)]
    assert statuses == [429, 429, 503, 200]


async def test_fail_after_storing_keeps_the_document(http: httpx.AsyncClient, bearer: dict[str, str]) -> None:
    await http.post("/_sandbox/faults", json={"fail_after_store": 1})
    failed = await post(http, bearer, "salesentry/SalesEntries", entry(YourRef="7001"))
    assert failed.status_code == 500
    state = (await http.get("/_sandbox/state")).json()["divisions"][str(DIVISION)]
    assert [e["YourRef"] for e in state["SalesEntries"]] == ["7001"]
