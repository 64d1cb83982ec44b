"""The demo's rough edges: the demo login gets a shop connected to both sandboxes, set up and switched on with its
export started (one category "not used", so one order stops with a reason); support messages without a support
address land in the sandbox outbox; three servers in one process log each process event once."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.demo import DEMO_PASSWORD, _ensure_demo_login, _OneLinePerEvent
from gateway.demo_shop import seed_demo_shop
from gateway.settings import Settings
from gateway.store import exports
from gateway.store.integrations import NOT_USED, list_integrations, list_vat_mappings
from gateway.store.outbox import list_mail
from tests.support.factories import create_active_integration, create_login, csrf_of, log_in
from tests.support.servers import Sandboxes

DEMO = "demo@example.com"


async def test_the_demo_login_gets_a_shop_that_books_at_once(
    sandboxes: Sandboxes, engine: AsyncEngine, redis: object
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email=DEMO)
    await seed_demo_shop(sandboxes.settings, DEMO)
    await seed_demo_shop(sandboxes.settings, DEMO)  # once: a second start leaves the shop alone
    async with engine.connect() as conn:
        [shop] = await list_integrations(conn)
        mappings = await list_vat_mappings(conn, integration_id=shop.id)
        export = await exports.get_latest_initial_export(conn, integration_id=shop.id)
    assert shop.state == "active"
    assert shop.shop_connection == "connected"
    assert shop.exact_connection == "connected"
    assert shop.exact_division == 123456
    assert export is not None  # the last weeks' orders are being booked
    assert mappings["NL-21"].vat_code == "2"
    assert mappings["OSS-DE-19"].vat_code == "D1"
    assert mappings["OSS-FR-20"].vat_code == NOT_USED  # the French order stops, readably


@pytest.fixture
def sandbox_client(settings: Settings, clean_state: Settings) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, support_email="", sandbox_enabled=True))
    with TestClient(app, base_url="http://testserver", headers={"Accept-Language": "en"}) as client:
        yield client


async def test_support_without_an_address_lands_in_the_sandbox_outbox(
    sandbox_client: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        owner = await create_login(conn, email="help@shop.test")
        shop = await create_active_integration(conn, account_id=owner)
    log_in(sandbox_client, "help@shop.test")
    url = f"/integrations/{shop.id}/support"
    token = csrf_of(sandbox_client.get(url).text)
    sent = sandbox_client.post(url, data={"csrf_token": token, "message": "Help, please"})
    assert "Sent." in sent.text
    async with engine.connect() as conn:
        mails = await list_mail(conn)
    assert [m.to_address for m in mails if "Help, please" in m.body] == ["support@sandbox.invalid"]


def test_three_servers_in_one_process_log_each_process_event_once() -> None:
    once = _OneLinePerEvent()

    def record(text: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, text, None, None)

    started = [once.filter(record("Started server process [42]")) for _ in range(3)]
    running = [once.filter(record(f"Uvicorn running on http://127.0.0.1:{port}")) for port in (8000, 8001, 8002)]
    assert started == [True, False, False]
    assert running == [True, True, True]


async def test_the_demo_login_keeps_the_language_of_the_page_it_logs_in_from(
    client: TestClient, settings: Settings, engine: AsyncEngine
) -> None:
    assert await _ensure_demo_login(settings)
    for language, words in (("en", "Log out"), ("nl", "Uitloggen")):
        client.cookies.clear()
        client.headers["Accept-Language"] = language
        log_in(client, DEMO, DEMO_PASSWORD)
        assert words in client.get("/integrations").text
