"""End to end over real HTTP: the sandbox Mijnwebwinkel and the gateway each run under uvicorn on loopback; a status
change in the shop reaches the booking queue by webhook push, by the poller and by the initial export."""

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
import uvicorn
from arq.connections import ArqRedis
from arq.jobs import Job
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.datastructures import Secret

from gateway import shop_connection, tables
from gateway.app import create_app
from gateway.crypto import Cipher
from gateway.jobs import initial_export as export_job, poll
from gateway.jobs.reconcile import reconcile_orders
from gateway.queue import deserialize, sync_job_id
from gateway.sandbox.mijnwebwinkel import SANDBOX_PARTNER_TOKEN, SANDBOX_SHOP_TOKEN, create_mww_sandbox
from gateway.settings import Settings
from gateway.store import credentials
from gateway.store.integrations import Integration, get_integration_or_raise, update_integration
from tests.support.factories import create_active_integration

pytestmark = pytest.mark.anyio


def serve(app: Starlette) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


@dataclass(frozen=True)
class Live:
    gateway: str
    mww: str
    settings: Settings


@pytest.fixture
def live_shop(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> Iterator[Live]:
    """The sandbox shop and the gateway, each under uvicorn on loopback."""
    sandbox_url, sandbox_server, sandbox_thread = serve(create_mww_sandbox(faults_enabled=True))
    gateway_settings = dataclasses.replace(
        settings, mww_base_url=f"{sandbox_url}/v1", mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN)
    )
    gateway_url, gateway_server, gateway_thread = serve(create_app(gateway_settings))
    try:
        yield Live(gateway_url, sandbox_url, gateway_settings)
    finally:
        for server, thread in ((gateway_server, gateway_thread), (sandbox_server, sandbox_thread)):
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def live_ctx(live_shop: Live, engine: AsyncEngine, redis: ArqRedis, http) -> dict:
    """The job context on `live_shop`'s settings."""
    return {
        "settings": live_shop.settings,
        "engine": engine,
        "cipher": Cipher(live_shop.settings.encryption_keys),
        "http": http,
        "redis": redis,
    }


async def sandbox_shop(live_ctx: dict, **columns) -> Integration:  # type: ignore[no-untyped-def]
    async with live_ctx["engine"].begin() as conn:
        integration = await create_active_integration(conn, **columns)
        await credentials.save_credential(
            conn,
            integration_id=integration.id,
            kind=credentials.SHOP_TOKEN,
            secret=SANDBOX_SHOP_TOKEN,
            cipher=live_ctx["cipher"],
        )
    return integration


async def queued(live_ctx: dict) -> dict[str, int]:
    """order number -> order_sync id of every queued row."""
    c = tables.order_sync.c
    async with live_ctx["engine"].connect() as conn:
        found = (await conn.execute(select(c.order_number, c.id).where(c.state == "queued"))).all()
    return {r.order_number: r.id for r in found}


async def assert_each_queued_row_has_its_job(live_ctx: dict, integration: Integration) -> None:
    for order_sync_id in (await queued(live_ctx)).values():
        job = Job(sync_job_id(integration.id, order_sync_id), live_ctx["redis"], _deserializer=deserialize)
        info = await job.info()
        assert info is not None, f"order sync {order_sync_id} has no job"
        assert list(info.args) == [order_sync_id]


async def test_a_status_change_reaches_the_queue_by_signed_webhook(live_shop: Live, live_ctx, http) -> None:
    integration = await sandbox_shop(live_ctx)
    async with live_ctx["engine"].begin() as conn:
        key = await shop_connection.rotate_webhook_key(conn, integration_id=integration.id)
        secret = await shop_connection.rotate_signing_secret(
            conn, integration_id=integration.id, cipher=live_ctx["cipher"]
        )
    target = {
        "url": shop_connection.webhook_url(dataclasses.replace(live_shop.settings, public_url=live_shop.gateway), key)
    }
    assert (await http.post(f"{live_shop.mww}/sandbox/notify", json={**target, "secret": secret})).status_code == 200
    for _ in range(2):  # the same change pushed twice: two notices, one order, one job
        r = await http.post(f"{live_shop.mww}/sandbox/orders/1009/status", json={"status": 2})
        assert r.status_code == 200, r.text
        assert "HTTP 202" in r.json()["webhook"]
    assert list(await queued(live_ctx)) == ["1009"]
    assert await live_ctx["redis"].zcard("arq:queue") == 1
    await assert_each_queued_row_has_its_job(live_ctx, integration)


async def test_a_status_change_reaches_the_queue_through_the_poller(live_shop: Live, live_ctx, http) -> None:
    integration = await sandbox_shop(live_ctx)
    r = await http.post(f"{live_shop.mww}/sandbox/orders/1009/status", json={"status": 3})
    assert r.status_code == 200
    assert (await poll.poll_shop(live_ctx, integration.id)) == "ok: 1 changes"  # the job the scheduler enqueues
    assert list(await queued(live_ctx)) == ["1009"]
    async with live_ctx["engine"].begin() as conn:
        await update_integration(conn, integration_id=integration.id, next_poll_at=None)
    await poll.poll_shop(live_ctx, integration.id)  # the overlap window sees the change again; nothing new is recorded
    assert await live_ctx["redis"].zcard("arq:queue") == 1
    async with live_ctx["engine"].connect() as conn:
        events = (await conn.execute(select(tables.order_event.c.id))).all()
        cursor = (await get_integration_or_raise(conn, integration_id=integration.id)).poll_cursor
    assert len(events) == 1
    assert cursor
    assert cursor.startswith(r.json()["order"]["status_changed_date"])


async def test_redis_flushed_mid_flow_loses_nothing(live_shop: Live, live_ctx, http) -> None:
    integration = await sandbox_shop(live_ctx)
    async with live_ctx["engine"].begin() as conn:
        export = await export_job.start_initial_export(
            conn,
            live_ctx["redis"],
            integration_id=integration.id,
            start_date=date.today() - timedelta(days=30),  # noqa: DTZ011
        )
    await live_ctx["redis"].flushdb()  # the export's first job is gone before it ever ran
    await reconcile_orders(live_ctx)
    assert (await export_job.run_initial_export(live_ctx, export.id)).startswith("done")
    before = await queued(live_ctx)
    assert len(before) == 7
    await live_ctx["redis"].flushdb()  # and now every booking job is gone
    summary = await reconcile_orders(live_ctx, stale_after=timedelta(0))
    assert "7 re-enqueued" in summary
    assert await queued(live_ctx) == before
    await assert_each_queued_row_has_its_job(live_ctx, integration)


async def test_tokens_never_reach_the_logs(live_shop: Live, live_ctx, http, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "uvicorn.access", "uvicorn.error"):
        caplog.set_level(logging.DEBUG, logger=name)
    integration = await sandbox_shop(live_ctx)
    await http.post(f"{live_shop.mww}/sandbox/faults", json={"mode": "500", "count": 3})
    failed = await poll.poll_integration(live_ctx, integration)  # every page attempt fails: logged as a warning
    assert failed.outcome == "error"
    async with live_ctx["engine"].connect() as conn:
        after_failure = await get_integration_or_raise(conn, integration_id=integration.id)
    assert (await poll.poll_integration(live_ctx, after_failure)).outcome == "ok"
    with pytest.raises(shop_connection.ShopTokenError):
        await shop_connection.connect_shop(
            live_ctx["engine"],
            settings=live_shop.settings,
            cipher=live_ctx["cipher"],
            http=http,
            integration_id=integration.id,
            shop_token="sandbox-token-not-valid-0009",
        )
    assert "token=[redacted]" in caplog.text  # URLs with query tokens were logged, and redacted
    for secret in (SANDBOX_SHOP_TOKEN, SANDBOX_PARTNER_TOKEN, "sandbox-token-not-valid-0009"):
        assert secret not in caplog.text
        async with live_ctx["engine"].connect() as conn:
            stored = await get_integration_or_raise(conn, integration_id=integration.id)
        assert secret not in (stored.last_poll_error or "")
