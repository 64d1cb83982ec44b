"""Shop list, dashboard (connections, on/off, counts, trial), plan, support and connections pages."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.app import create_app
from gateway.crypto import Cipher
from gateway.settings import Settings
from gateway.store import credentials, exports, orders
from gateway.store.integrations import (
    get_integration,
    get_integration_or_raise,
    hash_webhook_key,
    update_integration,
    utcnow,
)
from gateway.store.outbox import list_mail
from tests.support.factories import add_order, create_active_integration, create_login, csrf_of, log_in


async def owner(engine: AsyncEngine, **columns: object) -> int:
    async with engine.begin() as conn:
        account = await create_login(conn, email="dash@shop.test")
        return (await create_active_integration(conn, account_id=account, **columns)).id


def post(client: TestClient, url: str, **data: str) -> object:
    token = csrf_of(client.get("/account").text)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


async def test_adding_a_shop_starts_its_set_up(client: TestClient, engine: AsyncEngine) -> None:
    first = await owner(engine)
    log_in(client, "dash@shop.test")
    assert "Test shop" in client.get("/integrations").text
    response = post(client, "/integrations")
    assert response.status_code == 303
    new_id = int(response.headers["location"].split("/integrations/")[1].split("/")[0])
    assert new_id != first
    assert response.headers["location"].endswith(f"/integrations/{new_id}/setup")
    async with engine.connect() as conn:
        created = await get_integration_or_raise(conn, integration_id=new_id)
    assert created.state == "setup"


async def test_the_dashboard_counts_orders_and_shows_sync_times(client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(engine, last_polled_at=utcnow() - timedelta(minutes=3))
    async with engine.connect() as conn:
        shop = await get_integration_or_raise(conn, integration_id=shop_id)
    for number in ("1", "2"):
        await add_order(engine, shop, number, state="booked")
    await add_order(engine, shop, "3", state="failed")
    await add_order(engine, shop, "4", state="needs_attention")
    await add_order(engine, shop, "5")
    log_in(client, "dash@shop.test")
    page = client.get(f"/integrations/{shop_id}/dashboard").text
    assert "Booking is on" in page
    for number, label in (("2", "booked today"), ("1", "failed"), ("2", "need your attention"), ("1", "waiting")):
        assert f"<strong>{number}</strong><span>{label}" in page, label
    assert "3 minutes ago" in page
    assert "New orders are picked up within a minute" in page
    assert "days of trial left" in page


async def test_a_broken_connection_shows_its_reason_and_fix(client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(
        engine,
        shop_connection="error",
        shop_connection_error="Mijnwebwinkel does not accept this token.",
        exact_connection="reconnect",
        exact_connection_error="Exact Online refused the stored authorisation.",
    )
    log_in(client, "dash@shop.test")
    page = client.get(f"/integrations/{shop_id}/dashboard").text
    assert "Mijnwebwinkel does not accept this token." in page
    assert "Exact Online refused the stored authorisation." in page
    assert f"/integrations/{shop_id}/setup/exact" in page
    assert "Reconnect Exact" in page
    assert f"/integrations/{shop_id}/setup/shop" in page


async def test_switching_off_and_on(client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(engine)
    log_in(client, "dash@shop.test")
    post(client, f"/integrations/{shop_id}/switch", state="off")
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=shop_id)).state == "paused"
    post(client, f"/integrations/{shop_id}/switch", state="on")
    async with engine.connect() as conn:
        switched = await get_integration_or_raise(conn, integration_id=shop_id)
    assert switched.state == "active"
    assert switched.next_poll_at is not None


async def test_switching_on_needs_both_connections(client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(engine, state="paused", exact_connection="disconnected")
    log_in(client, "dash@shop.test")
    page = client.post(
        f"/integrations/{shop_id}/switch", data={"csrf_token": csrf_of(client.get("/account").text), "state": "on"}
    ).text
    assert "Connect both the shop and Exact Online before switching on." in page
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=shop_id)).state == "paused"


async def test_an_ended_trial_pauses_booking_without_touching_booked_orders(
    client: TestClient, engine: AsyncEngine
) -> None:
    shop_id = await owner(engine, trial_ends_at=utcnow() - timedelta(hours=1))
    async with engine.connect() as conn:
        shop = await get_integration_or_raise(conn, integration_id=shop_id)
    booked = await add_order(engine, shop, "900", state="booked")
    log_in(client, "dash@shop.test")
    page = client.get(f"/integrations/{shop_id}/dashboard").text
    assert "Your trial has ended, so booking is paused." in page
    refused = client.post(f"/integrations/{shop_id}/switch", data={"csrf_token": csrf_of(page), "state": "on"}).text
    assert "The trial has ended." in refused
    async with engine.connect() as conn:
        paused = await get_integration_or_raise(conn, integration_id=shop_id)
        sync = await orders.get_sync(conn, integration_id=shop_id, order_sync_id=booked)
    assert paused.state == "trial_ended"
    assert sync is not None
    assert sync.state == "booked"
    assert sync.exact_document_number == "2026/0042"


async def test_changing_the_plan_changes_the_poll_schedule(client: TestClient, engine: AsyncEngine) -> None:
    later = utcnow() + timedelta(hours=3)
    shop_id = await owner(engine, service_level="basic", next_poll_at=later)
    log_in(client, "dash@shop.test")
    page = client.get(f"/integrations/{shop_id}/billing").text
    assert "New orders are picked up every 120 minutes." in page
    assert "€25.00 a month" in page
    assert post(client, f"/integrations/{shop_id}/billing", service_level="premium").status_code == 303
    async with engine.connect() as conn:
        premium = await get_integration_or_raise(conn, integration_id=shop_id)
    assert premium.service_level == "premium"
    assert premium.next_poll_at is not None
    assert premium.next_poll_at <= utcnow()  # polled at once instead of in three hours
    assert post(client, f"/integrations/{shop_id}/billing", service_level="gold").status_code == 400
    assert post(client, f"/integrations/{shop_id}/billing", service_level="basic").status_code == 303
    async with engine.connect() as conn:
        basic = await get_integration_or_raise(conn, integration_id=shop_id)
    assert basic.next_poll_at is not None
    assert basic.next_poll_at <= utcnow() + timedelta(minutes=121)


@pytest.fixture
def support_client(settings: Settings, clean_state: Settings) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, support_email="help@gateway.test", support_phone="+31 20 123"))
    with TestClient(app, base_url="http://testserver", headers={"Accept-Language": "en"}) as client:
        yield client


async def test_sending_recent_failures_to_support(support_client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(engine)
    async with engine.connect() as conn:
        shop = await get_integration_or_raise(conn, integration_id=shop_id)
    await add_order(engine, shop, "777", state="failed")
    log_in(support_client, "dash@shop.test")
    page = support_client.get(f"/integrations/{shop_id}/support").text
    assert "help@gateway.test" in page
    assert "tel:+3120123" in page
    too_long = post(support_client, f"/integrations/{shop_id}/support", message="x" * 2001)
    assert too_long.status_code == 400
    sent = post(support_client, f"/integrations/{shop_id}/support", message="Order 777 <script>?")
    assert sent.status_code == 303
    async with engine.connect() as conn:
        mails = await list_mail(conn)
    assert mails[0].to_address == "help@gateway.test"
    assert "order 777" in mails[0].body
    assert "map VAT category NL-21" in mails[0].body
    assert "dash@shop.test" in mails[0].body
    assert "Order 777 <script>?" in mails[0].body


async def test_support_without_an_address_says_so(client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(engine)
    log_in(client, "dash@shop.test")
    response = post(client, f"/integrations/{shop_id}/support", message="help")
    assert response.status_code == 400
    assert "No support address is configured" in response.text


async def test_disconnecting_the_shop_forgets_its_token(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    shop_id = await owner(engine)
    async with engine.begin() as conn:
        await credentials.save_credential(
            conn,
            integration_id=shop_id,
            kind=credentials.SHOP_TOKEN,
            secret="tok-123456",
            cipher=Cipher(settings.encryption_keys),
        )
    log_in(client, "dash@shop.test")
    assert "Disconnect shop" in client.get(f"/integrations/{shop_id}/connections").text
    assert post(client, f"/integrations/{shop_id}/connections/shop/disconnect").status_code == 303
    async with engine.connect() as conn:
        shop = await get_integration_or_raise(conn, integration_id=shop_id)
        stored = await credentials.get_credential(
            conn, integration_id=shop_id, kind=credentials.SHOP_TOKEN, cipher=Cipher(settings.encryption_keys)
        )
    assert shop.shop_connection == "disconnected"
    assert stored is None


async def test_a_new_webhook_address_is_shown_once_and_stored_hashed(client: TestClient, engine: AsyncEngine) -> None:
    shop_id = await owner(engine)
    log_in(client, "dash@shop.test")
    response = post(client, f"/integrations/{shop_id}/connections/webhook")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    key = response.text.split("/webhooks/mijnwebwinkel/")[1].split("<")[0].strip()
    assert "whsec_" in response.text
    async with engine.connect() as conn:
        row = await get_integration(conn, integration_id=shop_id)
        stored = (
            (await conn.execute(tables.integration.select().where(tables.integration.c.id == shop_id)))
            .one()
            .webhook_key_hash
        )
    assert row is not None
    assert stored == hash_webhook_key(key)
    assert key not in client.get(f"/integrations/{shop_id}/connections").text
    post(client, f"/integrations/{shop_id}/connections/webhook", action="remove")
    async with engine.connect() as conn:
        gone = (
            (await conn.execute(tables.integration.select().where(tables.integration.c.id == shop_id)))
            .one()
            .webhook_key_hash
        )
    assert gone is None


async def test_the_export_of_existing_orders_shows_progress_and_can_be_stopped(
    client: TestClient, engine: AsyncEngine
) -> None:
    shop_id = await owner(engine)
    async with engine.begin() as conn:
        export = await exports.create_initial_export(conn, integration_id=shop_id, start_date=date(2026, 1, 1))
        await exports.update_initial_export(conn, integration_id=shop_id, export_id=export.id, total=40, done=10)
    log_in(client, "dash@shop.test")
    page = client.get(f"/integrations/{shop_id}/dashboard").text
    assert "10 of 40 orders read" in page
    assert 'value="25"' in page
    post(client, f"/integrations/{shop_id}/export/cancel")
    async with engine.connect() as conn:
        stopped = await exports.get_latest_initial_export(conn, integration_id=shop_id)
    assert stopped is not None
    assert stopped.state == "cancelled"


async def test_an_operator_activation_after_the_trial_ends_the_pause(client: TestClient, engine: AsyncEngine) -> None:
    ended = utcnow() - timedelta(days=2)
    shop_id = await owner(engine, trial_ends_at=ended, activated_at=utcnow() - timedelta(days=40))
    log_in(client, "dash@shop.test")
    client.get(f"/integrations/{shop_id}/dashboard")
    async with engine.begin() as conn:
        assert (await get_integration_or_raise(conn, integration_id=shop_id)).state == "trial_ended"
        # `gateway integrations activate`: state active, activated_at now (after the trial's end).
        await update_integration(conn, integration_id=shop_id, state="active", activated_at=utcnow())
    page = client.get(f"/integrations/{shop_id}/dashboard").text
    assert "Booking is on" in page
    assert "trial left" not in page
    assert "Your subscription is active." in client.get(f"/integrations/{shop_id}/billing").text
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=shop_id)).state == "active"
