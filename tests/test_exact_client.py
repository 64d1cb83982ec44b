"""ExactClient: OData requests and paging, exact JSON numbers, the error envelope mapped to the error tree."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from gateway.clients.errors import (
    AuthError,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    ValidationError,
)
from gateway.clients.exact import ExactClient, encode_json, odata_quote, parse_odata_date
from gateway.clients.exact_odata import pad_account_code
from gateway.settings import Settings
from tests.support.environment import load_payload

DIVISION = 123456
pytestmark = pytest.mark.anyio  # parametrized async tests need the marker at collection time


@pytest.fixture
def exact_client(http: httpx.AsyncClient, settings: Settings) -> ExactClient:
    return ExactClient(http, host=settings.exact_hosts["nl"], division=DIVISION)


def query_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}


def test_odata_quote_doubles_single_quotes() -> None:
    assert odata_quote("o'brien@x.nl") == "'o''brien@x.nl'"
    assert odata_quote("plain") == "'plain'"


def test_parse_odata_date_reads_epoch_milliseconds_as_utc() -> None:
    assert parse_odata_date("/Date(1700000000000)/") == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert parse_odata_date(None) is None
    with pytest.raises(PermanentApiError):
        parse_odata_date("yesterday")


def test_account_codes_are_padded_to_eighteen_characters() -> None:
    assert pad_account_code("123") == " " * 15 + "123"


def test_encode_json_writes_decimals_as_exact_numbers_and_dates_as_iso() -> None:
    body = {"AmountFC": Decimal("82.64"), "Quantity": Decimal("1E+1"), "Date": dt.date(2026, 11, 20), "Tiny": 0.1}
    assert encode_json(body) == '{"AmountFC":82.64,"Quantity":10,"Date":"2026-11-20T00:00:00","Tiny":0.1}'
    assert json.loads(encode_json(body), parse_float=Decimal)["AmountFC"] == Decimal("82.64")
    with pytest.raises(ValueError, match="NaN"):
        encode_json({"x": Decimal("NaN")})


async def test_get_all_sends_odata_options_and_follows_next_pages(
    exact_client: ExactClient, exact_api: respx.MockRouter
) -> None:
    route = exact_api.get(f"/api/v1/{DIVISION}/vat/VATCodes").mock(
        side_effect=[
            httpx.Response(200, json=load_payload("exact_vatcodes")),
            httpx.Response(200, json={"d": {"results": [{"Code": "1  ", "Percentage": 0.09}]}}),
        ]
    )
    rows = await exact_client.get_all(
        "vat/VATCodes", select=["Code", "Percentage"], filter="IsBlocked eq false", top=50
    )
    assert [r["Code"] for r in rows] == ["2  ", "D1 ", "1  "]
    assert rows[0]["Percentage"] == Decimal("0.21")  # numbers come back as Decimal, never float
    first, second = (call.request for call in route.calls)
    assert query_of(first) == {"$select": "Code,Percentage", "$filter": "IsBlocked eq false", "$top": "50"}
    assert query_of(second)["$skiptoken"] == "guid'3e7c1c1a-0000-4000-8000-0000000000d1'"
    assert first.headers["Accept"] == "application/json"
    assert exact_client.calls == 2


async def test_next_link_to_another_host_is_not_followed(
    exact_client: ExactClient, exact_api: respx.MockRouter
) -> None:
    page = {"d": {"results": [], "__next": "https://evil.test/api/v1/123456/vat/VATCodes?$skiptoken=1"}}
    exact_api.get(f"/api/v1/{DIVISION}/vat/VATCodes").mock(return_value=httpx.Response(200, json=page))
    with pytest.raises(PermanentApiError, match="another host"):
        await exact_client.get_all("vat/VATCodes", select=["Code"])


async def test_get_all_requires_a_select(exact_client: ExactClient) -> None:
    with pytest.raises(ValueError, match="select"):
        await exact_client.get_all("vat/VATCodes", select=[])


async def test_post_sends_exact_json_and_returns_the_created_entity(
    exact_client: ExactClient, exact_api: respx.MockRouter
) -> None:
    route = exact_api.post(f"/api/v1/{DIVISION}/salesentry/SalesEntries").mock(
        return_value=httpx.Response(201, json=load_payload("exact_salesentry_201"))
    )
    payload = {"Journal": "70", "SalesEntryLines": [{"AmountFC": Decimal("82.64"), "VATAmountFC": Decimal("17.36")}]}
    created = await exact_client.post("salesentry/SalesEntries", payload)
    assert created["EntryNumber"] == 26700001
    sent = route.calls.last.request
    assert sent.content == b'{"Journal":"70","SalesEntryLines":[{"AmountFC":82.64,"VATAmountFC":17.36}]}'
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Prefer"] == "return=representation"


async def test_find_account_by_email_quotes_the_value(exact_client: ExactClient, exact_api: respx.MockRouter) -> None:
    route = exact_api.get(f"/api/v1/{DIVISION}/crm/Accounts").mock(
        return_value=httpx.Response(200, json={"d": {"results": []}})
    )
    assert await exact_client.find_account_by_email("o'brien@x.nl") is None
    assert query_of(route.calls.last.request)["$filter"] == "Email eq 'o''brien@x.nl'"
    assert query_of(route.calls.last.request)["$top"] == "1"


async def test_list_vat_codes_retries_without_oss_country_where_the_feature_is_off(
    exact_client: ExactClient, exact_api: respx.MockRouter
) -> None:
    refusal = {"error": {"message": {"value": "Could not find a property named 'OssCountry' on type 'VATCode'."}}}
    route = exact_api.get(f"/api/v1/{DIVISION}/vat/VATCodes").mock(
        side_effect=[
            httpx.Response(400, json=refusal),
            httpx.Response(200, json={"d": {"results": [{"Code": "2  ", "Percentage": 0.21}]}}),
        ]
    )
    codes = await exact_client.list_vat_codes()
    assert [(c.code, c.percent, c.oss_country) for c in codes] == [("2", Decimal(21), "")]
    assert "OssCountry" in query_of(route.calls[0].request)["$select"]
    assert "OssCountry" not in query_of(route.calls[1].request)["$select"]


async def test_typed_lookups_parse_the_fields_the_gateway_uses(
    exact_client: ExactClient, exact_api: respx.MockRouter
) -> None:
    exact_api.get("/api/v1/current/Me").mock(return_value=httpx.Response(200, json=load_payload("exact_me")))
    exact_api.get(f"/api/v1/{DIVISION}/vat/VATCodes").mock(
        return_value=httpx.Response(200, json={"d": {"results": load_payload("exact_vatcodes")["d"]["results"]}})
    )
    me = await exact_client.me()
    assert (me.current_division, me.full_name) == (123456, "Sandra Sandbox")
    codes = await exact_client.list_vat_codes()
    assert [(c.code, c.percentage, c.oss_country, c.is_sales) for c in codes] == [
        ("2", Decimal("0.21"), "", True),
        ("D1", Decimal("0.19"), "DE", True),
    ]


async def test_a_record_without_its_key_is_refused(exact_client: ExactClient, exact_api: respx.MockRouter) -> None:
    exact_api.get(f"/api/v1/{DIVISION}/logistics/Items").mock(
        return_value=httpx.Response(200, json={"d": {"results": [{"Description": "no id"}]}})
    )
    with pytest.raises(PermanentApiError, match="lacks ID"):
        await exact_client.find_item("SKU-1")


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        pytest.param(
            httpx.Response(400, json=load_payload("exact_error_400")), ValidationError, "Mandatory: Journal", id="400"
        ),
        pytest.param(httpx.Response(401, json={}), AuthError, "HTTP 401", id="401"),
        pytest.param(
            httpx.Response(403, json={"error": {"message": {"value": "Forbidden - WrongDivision"}}}),
            AuthError,
            "WrongDivision",
            id="403",
        ),
        pytest.param(httpx.Response(404, text="not here"), NotFoundError, "HTTP 404", id="404"),
        pytest.param(httpx.Response(408, text="slow"), TransientApiError, "HTTP 408", id="408"),
        pytest.param(httpx.Response(409, text="conflict"), ValidationError, "HTTP 409", id="409"),
        pytest.param(httpx.Response(418, text="teapot"), PermanentApiError, "HTTP 418", id="other-4xx"),
        pytest.param(httpx.Response(503, text="busy"), TransientApiError, "HTTP 503", id="503"),
        pytest.param(httpx.Response(200, text="<html>"), PermanentApiError, "invalid JSON", id="bad-json"),
    ],
)
async def test_answers_map_to_the_error_tree(
    exact_client: ExactClient, exact_api: respx.MockRouter, answer: httpx.Response, error: type[Exception], text: str
) -> None:
    exact_api.get(f"/api/v1/{DIVISION}/financial/Journals").mock(return_value=answer)
    with pytest.raises(error, match=text) as caught:
        await exact_client.list_journals()
    assert "Exact Online" in str(caught.value)


async def test_429_carries_the_reset_time_from_the_minutely_header(
    exact_client: ExactClient, exact_api: respx.MockRouter
) -> None:
    reset = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=37)
    headers = {
        "X-RateLimit-Minutely-Limit": "60",
        "X-RateLimit-Minutely-Remaining": "0",
        "X-RateLimit-Minutely-Reset": str(int(reset.timestamp() * 1000)),
    }
    exact_api.get(f"/api/v1/{DIVISION}/financial/Journals").mock(return_value=httpx.Response(429, headers=headers))
    with pytest.raises(RateLimitedError) as caught:
        await exact_client.list_journals()
    assert caught.value.reset_at == reset
    assert 30 < (caught.value.retry_after or 0) <= 37


@pytest.mark.parametrize(
    "failure",
    [pytest.param(httpx.ReadTimeout("slow"), id="timeout"), pytest.param(httpx.ConnectError("down"), id="connect")],
)
async def test_transport_failures_are_transient(
    exact_client: ExactClient, exact_api: respx.MockRouter, failure: Exception
) -> None:
    exact_api.post(f"/api/v1/{DIVISION}/salesentry/SalesEntries").mock(side_effect=failure)
    with pytest.raises(TransientApiError):
        await exact_client.post("salesentry/SalesEntries", {"Journal": "70"})


async def test_error_text_never_carries_a_token(exact_client: ExactClient, exact_api: respx.MockRouter) -> None:
    body = {"error": {"message": {"value": "Bad token access_token=AAEAAsecret123 Bearer AAEAAsecret123"}}}
    exact_api.get(f"/api/v1/{DIVISION}/financial/Journals").mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(ValidationError) as caught:
        await exact_client.list_journals()
    assert "AAEAAsecret123" not in str(caught.value)
