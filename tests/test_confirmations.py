"""Destructive actions ask once: ignoring an order and disconnecting a shop or Exact show a question page (a GET that
changes nothing) whose button posts the action; the pages link to the question, never post directly."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.store import notices, orders
from gateway.store.integrations import Integration, get_integration_or_raise
from tests.support.factories import create_active_integration, create_login, csrf_of, log_in

EMAIL = "confirm@shop.test"


async def shop_with_failed_order(engine: AsyncEngine) -> tuple[Integration, int]:
    async with engine.begin() as conn:
        owner = await create_login(conn, email=EMAIL)
        integration = await create_active_integration(conn, account_id=owner)
        outcome = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number="8001",
            status_id=2,
            source="poller",
            dedupe_key="8001:x",
            selected_statuses=(2,),
        )
        sync_id = int(outcome.order_sync_id or 0)
        await orders.mark_failed(
            conn, integration_id=integration.id, order_sync_id=sync_id, error_kind="settings", message="x"
        )
    return integration, sync_id


async def sync_state(engine: AsyncEngine, integration: Integration, sync_id: int) -> str:
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=sync_id)
    assert sync is not None
    return sync.state


async def test_ignoring_an_order_asks_once_then_ignores(client: TestClient, engine: AsyncEngine) -> None:
    integration, sync_id = await shop_with_failed_order(engine)
    log_in(client, EMAIL)
    detail = f"/integrations/{integration.id}/history/{sync_id}"
    assert f'href="http://testserver{detail}/ignore"' in client.get(detail).text  # a link, not a form that posts
    question = client.get(detail + "/ignore")
    assert question.status_code == 200
    assert "Ignore order 8001?" in question.text
    assert "Yes, ignore this order" in question.text
    assert await sync_state(engine, integration, sync_id) == "failed"  # asking changed nothing
    done = client.post(detail + "/ignore", data={"csrf_token": csrf_of(question.text)})
    assert "The order is ignored" in done.text
    assert await sync_state(engine, integration, sync_id) == "ignored"


async def test_ignoring_without_the_csrf_token_is_refused(client: TestClient, engine: AsyncEngine) -> None:
    integration, sync_id = await shop_with_failed_order(engine)
    log_in(client, EMAIL)
    response = client.post(f"/integrations/{integration.id}/history/{sync_id}/ignore", data={})
    assert response.status_code == 403
    assert await sync_state(engine, integration, sync_id) == "failed"


async def test_disconnecting_exact_asks_once_then_says_it_is_done(client: TestClient, engine: AsyncEngine) -> None:
    integration, _ = await shop_with_failed_order(engine)
    log_in(client, EMAIL)
    url = f"/integrations/{integration.id}/exact/disconnect"
    assert f'href="http://testserver{url}"' in client.get(f"/integrations/{integration.id}/connections").text
    question = client.get(url)
    assert "Disconnect Exact Online?" in question.text
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=integration.id)).exact_connection == "connected"
    done = client.post(url, data={"csrf_token": csrf_of(question.text)})
    assert "Exact Online is disconnected." in done.text
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=integration.id)).exact_connection == "disconnected"


async def test_disconnecting_the_shop_asks_once_in_dutch(client: TestClient, engine: AsyncEngine) -> None:
    integration, _ = await shop_with_failed_order(engine)
    log_in(client, EMAIL)
    token = csrf_of(client.get("/account").text)
    client.post("/language", data={"csrf_token": token, "lang": "nl", "next": "/account"})
    url = f"/integrations/{integration.id}/connections/shop/disconnect"
    question = client.get(url)
    assert "De winkel ontkoppelen?" in question.text
    assert "Ja, ontkoppel de winkel" in question.text
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=integration.id)).shop_connection == "connected"
    client.post(url, data={"csrf_token": csrf_of(question.text)})
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=integration.id)).shop_connection != "connected"


async def webhook_key_hash(engine: AsyncEngine, integration_id: int) -> str | None:
    async with engine.connect() as conn:
        column = tables.integration.c.webhook_key_hash
        return (await conn.execute(select(column).where(tables.integration.c.id == integration_id))).scalar_one()


async def test_removing_the_webhook_address_asks_once(client: TestClient, engine: AsyncEngine) -> None:
    integration, _ = await shop_with_failed_order(engine)
    log_in(client, EMAIL)
    connections = f"/integrations/{integration.id}/connections"
    token = csrf_of(client.get(connections).text)
    client.post(connections + "/webhook", data={"csrf_token": token})  # create one
    assert await webhook_key_hash(engine, integration.id)
    assert f'href="http://testserver{connections}/webhook/remove"' in client.get(connections).text
    question = client.get(connections + "/webhook/remove")
    assert "Remove the webhook address?" in question.text
    assert '<input type="hidden" name="action" value="remove">' in question.text
    assert await webhook_key_hash(engine, integration.id)  # asking changed nothing
    client.post(connections + "/webhook", data={"csrf_token": csrf_of(question.text), "action": "remove"})
    assert not await webhook_key_hash(engine, integration.id)
