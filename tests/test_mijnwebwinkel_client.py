import asyncio
import logging
from datetime import date
from decimal import Decimal

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clients import mijnwebwinkel as mww
from gateway.clients.errors import (
    AuthError,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    ValidationError,
)
from gateway.clients.mijnwebwinkel import MijnwebwinkelAuthError, MijnwebwinkelClient
from gateway.crypto import Cipher
from gateway.settings import Settings
from gateway.shop_connection import mww_client_for
from gateway.store import credentials
from tests.support.environment import TEST_PARTNER_TOKEN, load_payload
from tests.support.factories import create_active_integration

# Parametrized async tests need the marker at collection time (the conftest hook adds it too late for them).
pytestmark = pytest.mark.anyio

SHOP_TOKEN = "shop-token-s3cr3t-0042"


@pytest.fixture
def shop_client(settings: Settings, http: httpx.AsyncClient) -> MijnwebwinkelClient:
    return MijnwebwinkelClient(
        http, base_url=settings.mww_base_url, partner_token=TEST_PARTNER_TOKEN, shop_token=SHOP_TOKEN
    )


def sum_of_lines(order) -> Decimal:  # type: ignore[no-untyped-def]
    return sum((line.total_including_tax for line in order.lines), Decimal(0))


async def test_get_order_sends_both_tokens_as_query_parameters(shop_client, mww_api: respx.MockRouter) -> None:
    route = mww_api.get("/orders/1001").respond(json=load_payload("mww_order_live_shape"))
    await shop_client.get_order("1001")
    params = route.calls.last.request.url.params
    assert params["token"] == SHOP_TOKEN
    assert params["partner_token"] == TEST_PARTNER_TOKEN
    assert "authorization" not in route.calls.last.request.headers


async def test_live_shapes_parse_to_decimals(shop_client, mww_api: respx.MockRouter) -> None:
    payload = load_payload("mww_order_live_shape")
    mww_api.get("/orders/1001").respond(json=payload)
    order = await shop_client.get_order("1001")
    assert order.number == payload["number"]
    assert order.status == int(payload["status"])
    assert order.total == Decimal(payload["price"]["total"])
    assert [t.rate for t in order.tax] == [Decimal(payload["price"]["tax"]["rate"])]
    assert order.shipping_country == ""
    assert order.credited_order_number == ""  # the live API sends 0 for "not a credit order"
    assert not order.is_credit
    assert all(isinstance(p.amount, Decimal) for line in order.lines for p in line.prices)
    assert sum_of_lines(order) == order.total
    assert order.status_changed_at == f"{payload['status_changed_date']} {payload['status_changed_time']}"


async def test_split_vat_lines_keep_every_rate(shop_client, mww_api: respx.MockRouter) -> None:
    payload = load_payload("mww_order_multi_rate")
    mww_api.get("/orders/1002").respond(json=payload)
    order = await shop_client.get_order("1002")
    split = [line for line in order.lines if len(line.prices) > 1]
    assert {line.type for line in split} == {"payment", "discount"}
    assert sum_of_lines(order) == order.total == Decimal(str(payload["price"]["total"]))
    assert order.lines[0].sku == "TEE-RED-M"
    assert order.lines[1].sku == ""
    assert order.delivery_address is not None


async def test_list_changed_orders_pages_by_status_change_time(shop_client, mww_api: respx.MockRouter) -> None:
    route = mww_api.get("/orders").respond(json=load_payload("mww_orders_page"))
    changes = await shop_client.list_changed_orders(since="2026-11-02 10:00:00", offset=200)
    params = route.calls.last.request.url.params
    assert params["status_changed_start_date"] == "2026-11-02 10:00:00"
    assert params["ordering"] == "asc"
    assert (params["offset"], params["limit"]) == ("200", "100")
    assert [(c.number, c.status) for c in changes] == [("1001", 2), ("1002", 3)]
    assert changes[0].status_changed_at == "2026-11-02 10:20:31"


async def test_list_orders_filters_on_order_date_and_caps_the_limit(shop_client, mww_api: respx.MockRouter) -> None:
    route = mww_api.get("/orders").respond(json=[])
    assert await shop_client.list_orders(start_date=date(2026, 1, 31), limit=500) == []
    params = route.calls.last.request.url.params
    assert params["start_date"] == "2026-01-31"
    assert params["limit"] == "100"
    assert "status_changed_start_date" not in params


async def test_count_orders_passes_filters(shop_client, mww_api: respx.MockRouter) -> None:
    route = mww_api.get("/orders/count").respond(json={"count": "57"})
    assert await shop_client.count_orders(start_date=date(2026, 1, 1), archived=False) == 57
    params = route.calls.last.request.url.params
    assert params["start_date"] == "2026-01-01"
    assert params["archived"] == "false"


async def test_count_without_a_number_is_a_permanent_error(shop_client, mww_api: respx.MockRouter) -> None:
    mww_api.get("/orders/count").respond(json={"total": 3})
    with pytest.raises(PermanentApiError):
        await shop_client.count_orders()


async def test_order_statuses_use_the_partner_token_only(shop_client, mww_api: respx.MockRouter) -> None:
    route = mww_api.get("/orderstatuses").respond(json=load_payload("mww_orderstatuses"))
    statuses = await shop_client.list_order_statuses()
    params = route.calls.last.request.url.params
    assert "token" not in params
    assert params["partner_token"] == TEST_PARTNER_TOKEN
    assert [s.id for s in statuses if s.credit_order] == [10]
    assert statuses[1].id == 2


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(load_payload("mww_tax_regions"), id="wrapped"),
        pytest.param(load_payload("mww_tax_regions")["regions"], id="bare-array"),
    ],
)
async def test_tax_regions_accept_both_shapes(shop_client, mww_api: respx.MockRouter, payload) -> None:
    mww_api.get("/tax-policy/regions").respond(json=payload)
    regions = await shop_client.list_tax_regions()
    assert [r.region_code for r in regions] == ["NL", "DE"]
    assert regions[0].tax_rate == Decimal("21.00")
    assert regions[0].override_rates == (Decimal("9.00"),)


async def test_get_store(shop_client, mww_api: respx.MockRouter) -> None:
    mww_api.get("/store").respond(json=load_payload("mww_store"))
    store = await shop_client.get_store()
    assert (store.name, store.region_code) == ("De Theepot", "NL")


@pytest.mark.parametrize(
    ("response", "error", "reason"),
    [
        pytest.param(
            httpx.Response(401, json={"title": "Unauthorized"}), MijnwebwinkelAuthError, "invalid_token", id="401"
        ),
        pytest.param(
            httpx.Response(403, json={"detail": "Token not valid for this partner"}),
            MijnwebwinkelAuthError,
            "wrong_partner",
            id="403-partner",
        ),
        pytest.param(
            httpx.Response(403, json={"detail": "API not available in the current subscription plan"}),
            MijnwebwinkelAuthError,
            "no_api_access",
            id="403-plan",
        ),
        pytest.param(httpx.Response(403, text="Forbidden"), MijnwebwinkelAuthError, "forbidden", id="403-other"),
        pytest.param(httpx.Response(404, json={"title": "Not found"}), NotFoundError, None, id="404"),
        pytest.param(httpx.Response(422, json={"title": "Invalid"}), ValidationError, None, id="422"),
        pytest.param(httpx.Response(409, json={"title": "Conflict"}), ValidationError, None, id="409"),
        pytest.param(httpx.Response(408, text="timeout"), TransientApiError, None, id="408"),
        pytest.param(httpx.Response(500, text="boom"), TransientApiError, None, id="500"),
        pytest.param(httpx.Response(503, text="maintenance"), TransientApiError, None, id="503"),
        pytest.param(httpx.Response(200, text="<html>not json"), PermanentApiError, None, id="invalid-json"),
        pytest.param(httpx.Response(418, text="teapot"), PermanentApiError, None, id="other-4xx"),
    ],
)
async def test_responses_map_to_the_error_tree(shop_client, mww_api: respx.MockRouter, response, error, reason) -> None:
    mww_api.get("/store").mock(return_value=response)
    with pytest.raises(error) as caught:
        await shop_client.get_store()
    if reason:
        assert caught.value.reason == reason
        assert isinstance(caught.value, AuthError)
    assert "/store" in str(caught.value)


async def test_429_is_rate_limited_with_retry_after(shop_client, mww_api: respx.MockRouter) -> None:
    mww_api.get("/orders").respond(429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimitedError) as caught:
        await shop_client.list_changed_orders(since="2026-11-01 00:00:00")
    assert caught.value.retry_after == 30


@pytest.mark.parametrize(
    "fault", [httpx.ConnectTimeout("timed out"), httpx.ReadTimeout("timed out"), httpx.ConnectError("refused")]
)
async def test_network_faults_are_transient(shop_client, mww_api: respx.MockRouter, fault) -> None:
    mww_api.get("/store").mock(side_effect=fault)
    with pytest.raises(TransientApiError):
        await shop_client.get_store()


async def test_malformed_order_names_the_field(shop_client, mww_api: respx.MockRouter) -> None:
    payload = load_payload("mww_order_live_shape")
    payload["price"]["total"] = "n/a"
    mww_api.get("/orders/1001").respond(json=payload)
    with pytest.raises(PermanentApiError, match="price.total"):
        await shop_client.get_order("1001")


async def test_an_order_number_cannot_escape_the_orders_path(shop_client, mww_api: respx.MockRouter) -> None:
    route = mww_api.route()
    with pytest.raises(ValidationError):
        await shop_client.get_order("../store")
    assert not route.called


async def test_tokens_never_reach_errors_or_logs(shop_client, mww_api: respx.MockRouter, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    echo = f"bad token={SHOP_TOKEN}&partner_token={TEST_PARTNER_TOKEN}"
    mww_api.get("/store").respond(401, text=echo)
    mww_api.get("/orders/1").mock(side_effect=httpx.ConnectError(f"failed for ?token={SHOP_TOKEN}"))
    errors = []
    for call in (shop_client.get_store(), shop_client.get_order("1")):
        with pytest.raises(Exception) as caught:  # noqa: PT011 - two different errors, both checked below
            await call
        errors.append(caught.value)
        logging.getLogger("gateway.test").warning("call failed: %s", caught.value, exc_info=caught.value)
    assert "token=[redacted]" in caplog.text  # httpx logged the request URL, redacted
    for text in [*(str(e) for e in errors), caplog.text, repr(shop_client)]:
        assert SHOP_TOKEN not in text
        assert TEST_PARTNER_TOKEN not in text


async def test_calls_to_one_shop_never_overlap(shop_client, mww_api: respx.MockRouter) -> None:
    in_flight = {"now": 0, "max": 0}

    async def slow(request: httpx.Request) -> httpx.Response:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.02)
        in_flight["now"] -= 1
        return httpx.Response(200, json={"count": 1})

    route = mww_api.get("/orders/count").mock(side_effect=slow)
    # A second client for the same shop (same token) in this process shares the gate.
    other = MijnwebwinkelClient(
        shop_client._http, base_url=shop_client._base_url, partner_token=TEST_PARTNER_TOKEN, shop_token=SHOP_TOKEN
    )
    await asyncio.gather(*(c.count_orders() for c in (shop_client, other, shop_client, other)))
    assert route.call_count == 4
    assert in_flight["max"] == 1


async def test_a_shop_busy_in_another_process_makes_the_call_wait_then_fail(
    settings: Settings, http, redis: ArqRedis, mww_api: respx.MockRouter, monkeypatch
) -> None:
    monkeypatch.setattr(mww, "IN_FLIGHT_WAIT_SECONDS", 0.2)
    route = mww_api.get("/store").respond(json=load_payload("mww_store"))
    gated = MijnwebwinkelClient(
        http, base_url=settings.mww_base_url, partner_token="p", shop_token="s", shop_key="integration-7", redis=redis
    )
    held = redis.lock("mww:in-flight:integration-7", timeout=5, thread_local=False)
    assert await held.acquire()
    with pytest.raises(TransientApiError, match="still running"):
        await gated.get_store()
    assert not route.called
    await held.release()
    assert (await gated.get_store()).name == "De Theepot"
    assert await redis.get("mww:in-flight:integration-7") is None


async def test_client_for_an_integration_reads_its_encrypted_token(
    engine: AsyncEngine, settings: Settings, http, mww_api: respx.MockRouter
) -> None:
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        with pytest.raises(AuthError):
            await mww_client_for(conn, settings=settings, cipher=cipher, http=http, integration_id=integration.id)
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SHOP_TOKEN, cipher=cipher
        )
        shop_client = await mww_client_for(
            conn, settings=settings, cipher=cipher, http=http, integration_id=integration.id
        )
    route = mww_api.get("/store").respond(json=load_payload("mww_store"))
    await shop_client.get_store()
    assert route.calls.last.request.url.params["token"] == SHOP_TOKEN
