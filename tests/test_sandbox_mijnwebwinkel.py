import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from gateway import shop_connection
from gateway.clients.errors import RateLimitedError, TransientApiError
from gateway.clients.mijnwebwinkel import MijnwebwinkelAuthError, MijnwebwinkelClient
from gateway.crypto import Cipher
from gateway.sandbox.mijnwebwinkel import (
    SANDBOX_NO_API_TOKEN,
    SANDBOX_PARTNER_TOKEN,
    SANDBOX_SECOND_SHOP_TOKEN,
    SANDBOX_SHOP_TOKEN,
    SANDBOX_WRONG_PARTNER_TOKEN,
    create_mww_sandbox,
)
from gateway.settings import Settings
from gateway.shop_connection import ShopTokenError
from gateway.store.integrations import create_integration
from tests.support.factories import create_account

pytestmark = pytest.mark.anyio

BASE = "http://mww.sandbox/v1"
CENT = Decimal("0.01")


@pytest.fixture
async def mww_http(mww_sandbox: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to `mww_sandbox` at its own host."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=mww_sandbox), base_url="http://mww.sandbox"
    ) as client:
        yield client


def mww(mww_http: httpx.AsyncClient, token: str = SANDBOX_SHOP_TOKEN) -> MijnwebwinkelClient:
    return MijnwebwinkelClient(mww_http, base_url=BASE, partner_token=SANDBOX_PARTNER_TOKEN, shop_token=token)


def auth(token: str = SANDBOX_SHOP_TOKEN) -> dict[str, str]:
    return {"token": token, "partner_token": SANDBOX_PARTNER_TOKEN}


async def raw_orders(mww_http: httpx.AsyncClient) -> list[dict]:
    r = await mww_http.get("/v1/orders", params={**auth(), "limit": 100})
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_order_adds_up_line_by_line_and_per_rate(mww_http) -> None:
    client = mww(mww_http)
    changes = await client.list_orders(start_date=date(2000, 1, 1))
    assert len(changes) >= 9
    for change in changes:
        order = await client.get_order(change.number)
        assert sum((line.total_including_tax for line in order.lines), Decimal(0)) == order.total, order.number
        incl: dict[Decimal, Decimal] = {}
        excl: dict[Decimal, Decimal] = {}
        for line in order.lines:
            for part in line.prices:
                incl[part.rate] = incl.get(part.rate, Decimal(0)) + part.amount_including_tax
                excl[part.rate] = excl.get(part.rate, Decimal(0)) + part.amount
                assert part.amount == (part.amount_including_tax / (1 + part.rate / 100)).quantize(
                    Decimal("0.000001"), rounding=ROUND_HALF_UP
                )
        vat = {rate: (incl[rate] - excl[rate]).quantize(CENT, rounding=ROUND_HALF_UP) for rate in incl}
        assert {t.rate: t.amount for t in order.tax} == vat, order.number


async def test_the_demo_shop_covers_every_case_the_booking_needs(mww_http) -> None:
    client = mww(mww_http)
    orders = [await client.get_order(str(n)) for n in range(1001, 1010)]
    lines = [line for order in orders for line in order.lines]
    assert {line.type for line in lines} >= {"article", "custom", "shipping", "payment", "discount"}
    assert any(line.type == "article" and line.sku for line in lines)
    assert any(line.type == "article" and not line.sku for line in lines)
    assert {line.type for line in lines if len(line.prices) > 1} == {"payment", "discount"}
    assert any(len({p.rate for line in o.lines for p in line.prices}) > 1 for o in orders)  # multi-rate
    by_strategy = {o.tax_strategy: o for o in orders}
    b2b = by_strategy["reverse_charged_vat"]
    assert (b2b.business_model, b2b.invoice_address.country_code) == ("B2B", "BE")
    assert b2b.invoice_address.taxnumber
    assert by_strategy["zero_percent"].invoice_address.country_code == "US"
    oss = {o.tax_region: {p.rate for line in o.lines for p in line.prices} for o in orders if o.tax_region != "NL"}
    assert oss["DE"] == {Decimal("19.00"), Decimal("7.00")}
    assert Decimal("21.00") in oss["BE"]
    assert oss["FR"] == {Decimal("20.00"), Decimal("5.50")}
    credit = next(o for o in orders if o.is_credit)
    assert credit.credited_order_number == "1001"
    assert credit.status in {s.id for s in await client.list_order_statuses() if s.credit_order}


async def test_live_awkward_shapes_are_served(mww_http) -> None:
    raw = await raw_orders(mww_http)
    assert any(isinstance(o["number"], str) for o in raw)
    assert any(isinstance(o["number"], int) for o in raw)
    assert any(isinstance(o["price"]["tax"], dict) for o in raw)
    assert any(isinstance(o["price"]["total"], str) for o in raw)
    assert any(o["shipping"][0]["country"] == [] for o in raw)


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        pytest.param("nope", 401, "invalid_token", id="unknown"),
        pytest.param(SANDBOX_WRONG_PARTNER_TOKEN, 403, "wrong_partner", id="other-partner"),
        pytest.param(SANDBOX_NO_API_TOKEN, 403, "no_api_access", id="plan"),
    ],
)
async def test_bad_tokens_are_refused_like_the_real_api(mww_http, token, status, reason) -> None:
    r = await mww_http.get("/v1/store", params=auth(token))
    assert r.status_code == status
    assert set(r.json()) == {"type", "title", "detail", "status"}
    with pytest.raises(MijnwebwinkelAuthError) as caught:
        await mww(mww_http, token).get_store()
    assert caught.value.reason == reason


async def test_order_statuses_need_only_the_partner_token(mww_http) -> None:
    ok = await mww_http.get("/v1/orderstatuses", params={"partner_token": SANDBOX_PARTNER_TOKEN, "language": "en_GB"})
    assert ok.status_code == 200
    assert {"status", "description", "credit_order"} <= set(ok.json()[0])
    assert (await mww_http.get("/v1/orderstatuses", params={"partner_token": "x"})).status_code == 401


async def test_filters_paging_and_count_agree(mww_http) -> None:
    changed = await mww(mww_http).list_changed_orders(since="2000-01-01 00:00:00", limit=3)
    assert [c.number for c in changed] == ["1001", "1002", "1003"]
    page2 = await mww(mww_http).list_changed_orders(since="2000-01-01 00:00:00", offset=3, limit=3)
    assert [c.number for c in page2] == ["1004", "1005", "1006"]
    assert await mww(mww_http).count_orders(status_id=2) == len(
        [o for o in await raw_orders(mww_http) if int(o["status"]) == 2]
    )
    assert (await mww_http.get("/v1/orders", params={**auth(), "limit": 101})).status_code == 400
    assert (await mww_http.get("/v1/orders/999999", params=auth())).status_code == 404


async def test_shops_are_separate(mww_http) -> None:
    other = await mww(mww_http, SANDBOX_SECOND_SHOP_TOKEN).list_orders(start_date=date(2000, 1, 1))
    assert [c.number for c in other] == ["501"]


def verify(secret: str, request: httpx.Request) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.content
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return request.headers["webhook-signature"] == f"v1,{expected}"


async def test_a_status_change_moves_the_change_time_and_posts_a_signed_notice() -> None:
    seen: list[httpx.Request] = []
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"accepted": True})

    app = create_mww_sandbox(
        faults_enabled=False,
        notify_url="http://gateway.test/webhooks/mijnwebwinkel/KEY",
        notify_secret=secret,
        notify_transport=httpx.MockTransport(receive),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mww.sandbox") as mww_http:
        before = (await mww_http.get("/v1/orders/1009", params=auth())).json()
        r = await mww_http.post("/sandbox/orders/1009/status", json={"status": 2})
        assert r.status_code == 200, r.text
        after = (await mww_http.get("/v1/orders/1009", params=auth())).json()
    assert int(after["status"]) == 2
    assert (after["status_changed_date"], after["status_changed_time"]) > (
        before["status_changed_date"],
        before["status_changed_time"],
    )
    assert json.loads(seen[0].content) == {"order_number": "1009", "status": 2}
    assert verify(secret, seen[0])
    assert abs(int(seen[0].headers["webhook-timestamp"]) - time.time()) < 60
    assert "HTTP 202" in r.json()["webhook"]


async def test_new_orders_get_the_next_number_and_add_up(mww_http) -> None:
    r = await mww_http.post("/sandbox/orders", json={"template": "oss_fr", "status": 2})
    assert r.status_code == 201, r.text
    order = await mww(mww_http).get_order(str(r.json()["order"]["number"]))
    assert order.number == "1010"
    assert sum((line.total_including_tax for line in order.lines), Decimal(0)) == order.total
    assert (await mww_http.post("/sandbox/orders", json={"template": "nope"})).status_code == 422


async def test_the_page_lists_orders_and_its_forms_work(mww_http) -> None:
    page = await mww_http.get("/sandbox")
    assert page.status_code == 200
    assert "1009" in page.text
    assert "<script" not in page.text
    r = await mww_http.post("/sandbox/orders/1009/status", data={"status": "3"})
    assert r.status_code == 303
    assert int((await mww_http.get("/v1/orders/1009", params=auth())).json()["status"]) == 3


async def test_fault_switches_apply_for_the_requested_count(mww_http) -> None:
    client = mww(mww_http)
    assert (await mww_http.post("/sandbox/faults", json={"mode": "429", "count": 1})).status_code == 200
    with pytest.raises(RateLimitedError):
        await client.get_store()
    assert (await client.get_store()).name == "De Theepot"
    await mww_http.post("/sandbox/faults", json={"mode": "500", "count": 1})
    with pytest.raises(TransientApiError):
        await client.get_store()
    await mww_http.post("/sandbox/faults", json={"mode": "bad_token", "count": 1})
    with pytest.raises(MijnwebwinkelAuthError):
        await client.get_store()
    await mww_http.post("/sandbox/faults", json={"mode": "slow", "count": 1, "seconds": 0.2})
    started = time.perf_counter()
    await client.get_store()
    assert time.perf_counter() - started >= 0.2


async def test_fault_switches_are_absent_unless_enabled() -> None:
    app = create_mww_sandbox(faults_enabled=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mww.sandbox") as mww_http:
        assert (await mww_http.post("/sandbox/faults", json={"mode": "500"})).status_code == 404
        assert (await mww_http.get("/v1/store", params=auth())).status_code == 200


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(SANDBOX_SHOP_TOKEN, None, id="valid"),
        pytest.param(SANDBOX_WRONG_PARTNER_TOKEN, "wrong_partner", id="wrong-partner"),
        pytest.param(SANDBOX_NO_API_TOKEN, "no_api_access", id="plan"),
        pytest.param("sandbox-token-that-does-not-exist", "invalid_token", id="invalid"),
    ],
)
async def test_token_entry_against_the_sandbox(
    engine: AsyncEngine, settings: Settings, mww_http, token, reason
) -> None:
    settings = dataclasses.replace(settings, mww_base_url=BASE, mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN))
    async with engine.begin() as conn:
        integration = await create_integration(conn, account_id=await create_account(conn))
    connect = shop_connection.connect_shop(
        engine,
        settings=settings,
        cipher=Cipher(settings.encryption_keys),
        http=mww_http,
        integration_id=integration.id,
        shop_token=token,
    )
    if reason is None:
        check = await connect
        assert (check.name, check.country) == ("De Theepot", "NL")
        return
    with pytest.raises(ShopTokenError) as caught:
        await connect
    assert caught.value.reason == reason
