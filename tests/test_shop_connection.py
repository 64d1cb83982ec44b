import dataclasses
import logging

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from gateway import shop_connection, tables
from gateway.crypto import Cipher
from gateway.settings import Settings
from gateway.shop_connection import ShopTokenError
from gateway.store import credentials
from gateway.store.integrations import create_integration, get_integration, get_integration_by_webhook_key
from tests.support.environment import load_payload
from tests.support.factories import create_account

pytestmark = pytest.mark.anyio

TOKEN = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"


@pytest.fixture
async def integration_id(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        integration = await create_integration(conn, account_id=await create_account(conn))
    return integration.id


async def connect(engine, settings, cipher, http, integration_id, token=TOKEN):  # type: ignore[no-untyped-def]
    return await shop_connection.connect_shop(
        engine, settings=settings, cipher=cipher, http=http, integration_id=integration_id, shop_token=token
    )


async def stored_token(engine: AsyncEngine, cipher: Cipher, integration_id: int) -> str | None:
    async with engine.connect() as conn:
        found = await credentials.get_credential(
            conn, integration_id=integration_id, kind=credentials.SHOP_TOKEN, cipher=cipher
        )
    return None if found is None else found.secret


async def test_a_valid_token_is_checked_live_then_stored_encrypted(
    engine, settings, cipher, http, integration_id, mww_api: respx.MockRouter
) -> None:
    route = mww_api.get("/store").respond(json=load_payload("mww_store"))
    check = await connect(engine, settings, cipher, http, integration_id, token=f"  {TOKEN}\n")
    assert (check.name, check.country) == ("De Theepot", "NL")
    assert route.calls.last.request.url.params["token"] == TOKEN
    assert await stored_token(engine, cipher, integration_id) == TOKEN
    async with engine.connect() as conn:
        raw = (await conn.execute(select(tables.credential.c.secret))).scalar_one()
        integration = await get_integration(conn, integration_id=integration_id)
    assert TOKEN not in raw
    assert integration is not None
    assert (integration.shop_connection, integration.shop_name, integration.shop_country) == (
        "connected",
        "De Theepot",
        "NL",
    )


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        pytest.param(httpx.Response(401, json={"title": "Invalid token"}), "invalid_token", id="invalid"),
        pytest.param(
            httpx.Response(403, json={"detail": "This token belongs to another partner"}), "wrong_partner", id="partner"
        ),
        pytest.param(
            httpx.Response(403, json={"detail": "API access is not available in this subscription"}),
            "no_api_access",
            id="plan",
        ),
        pytest.param(httpx.Response(503), "unreachable", id="unavailable"),
        pytest.param(httpx.ConnectError("refused"), "unreachable", id="network"),
        pytest.param(httpx.Response(200, json={"unexpected": True}), "unexpected", id="malformed-answer"),
    ],
)
async def test_a_refused_token_gives_a_specific_reason_and_stores_nothing(
    engine, settings, cipher, http, integration_id, mww_api: respx.MockRouter, response, reason, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    if isinstance(response, Exception):
        mww_api.get("/store").mock(side_effect=response)
    else:
        mww_api.get("/store").mock(return_value=response)
    with pytest.raises(ShopTokenError) as caught:
        await connect(engine, settings, cipher, http, integration_id)
    assert caught.value.reason == reason
    assert str(caught.value) == shop_connection.TOKEN_ERROR_MESSAGES[reason]
    assert await stored_token(engine, cipher, integration_id) is None
    async with engine.connect() as conn:
        integration = await get_integration(conn, integration_id=integration_id)
    assert integration is not None
    assert integration.shop_connection == "disconnected"
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value.__cause__ or "")


@pytest.mark.parametrize(
    ("token", "reason"),
    [pytest.param("", "empty", id="empty"), pytest.param("abc def ghi jkl", "malformed", id="spaces")],
)
async def test_an_empty_or_malformed_token_is_refused_without_a_call(
    engine, settings, cipher, http, integration_id, mww_api: respx.MockRouter, token, reason
) -> None:
    route = mww_api.route()
    with pytest.raises(ShopTokenError) as caught:
        await connect(engine, settings, cipher, http, integration_id, token=token)
    assert caught.value.reason == reason
    assert not route.called


async def test_without_a_partner_token_the_operator_is_named(
    engine, settings, cipher, http, integration_id, mww_api: respx.MockRouter
) -> None:
    route = mww_api.route()
    unconfigured = dataclasses.replace(settings, mww_partner_token=Secret(""))
    with pytest.raises(ShopTokenError, match="MWW_PARTNER_TOKEN"):
        await connect(engine, unconfigured, cipher, http, integration_id)
    assert not route.called


async def test_replacing_then_revoking_a_token(
    engine, settings, cipher, http, integration_id, mww_api: respx.MockRouter
) -> None:
    mww_api.get("/store").respond(json=load_payload("mww_store"))
    await connect(engine, settings, cipher, http, integration_id)
    await connect(engine, settings, cipher, http, integration_id, token="f" * 32)
    assert await stored_token(engine, cipher, integration_id) == "f" * 32
    async with engine.begin() as conn:
        assert await shop_connection.revoke_shop(conn, integration_id=integration_id)
    assert await stored_token(engine, cipher, integration_id) is None
    async with engine.connect() as conn:
        integration = await get_integration(conn, integration_id=integration_id)
    assert integration is not None
    assert integration.shop_connection == "disconnected"


async def test_webhook_key_is_stored_hashed_and_rotation_retires_the_old_key(engine, integration_id) -> None:
    async with engine.begin() as conn:
        first = await shop_connection.rotate_webhook_key(conn, integration_id=integration_id)
    async with engine.begin() as conn:
        assert (await get_integration_by_webhook_key(conn, webhook_key=first)).id == integration_id
        hashes = (await conn.execute(select(tables.integration.c.webhook_key_hash))).scalars().all()
        assert first not in hashes
        second = await shop_connection.rotate_webhook_key(conn, integration_id=integration_id)
    async with engine.connect() as conn:
        assert await get_integration_by_webhook_key(conn, webhook_key=first) is None
        assert (await get_integration_by_webhook_key(conn, webhook_key=second)).id == integration_id
    assert len(first) >= 40
    assert shop_connection.webhook_url(Settings(public_url="https://gw.test"), second).endswith(f"/{second}")


async def test_signing_secret_is_standard_webhooks_shaped_and_encrypted(engine, cipher, integration_id) -> None:
    async with engine.begin() as conn:
        secret = await shop_connection.rotate_signing_secret(conn, integration_id=integration_id, cipher=cipher)
        raw = (await conn.execute(select(tables.credential.c.secret))).scalar_one()
    assert secret.startswith("whsec_")
    assert len(shop_connection.signing_key(secret)) == 32
    assert secret not in raw
    async with engine.begin() as conn:
        assert await shop_connection.remove_signing_secret(conn, integration_id=integration_id)
        assert not await shop_connection.remove_signing_secret(conn, integration_id=integration_id)


async def test_order_statuses_are_read_live_once_then_cached(
    engine, settings, http, integration_id, mww_api: respx.MockRouter
) -> None:
    route = mww_api.get("/orderstatuses").respond(json=load_payload("mww_orderstatuses"))
    first = await shop_connection.order_statuses(engine, settings=settings, http=http, integration_id=integration_id)
    again = await shop_connection.order_statuses(engine, settings=settings, http=http, integration_id=integration_id)
    assert first == again
    assert route.call_count == 1
    assert [s.id for s in first if s.credit_order] == [10]
    await shop_connection.order_statuses(
        engine, settings=settings, http=http, integration_id=integration_id, refresh=True
    )
    assert route.call_count == 2
