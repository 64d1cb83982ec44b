"""Reconnecting resumes: after Exact is reconnected (the OAuth round trip) or a new shop token is pasted, the orders
that failed for that lost connection are queued again by themselves and the page says so; others stay failed. The
dashboard counts every failed order as needing attention."""

from __future__ import annotations

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.jobs.booking_outcomes import EXACT_AUTH, SHOP_AUTH, UNAVAILABLE
from gateway.queue import QUEUE_DEFAULT, sync_job_id
from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN
from gateway.store import notices, orders
from gateway.store.integrations import update_integration
from tests.support.factories import create_active_integration, create_login, csrf_of, log_in

EMAIL = "reconnect@shop.test"


async def shop_with_failures(engine: AsyncEngine, **columns: object) -> tuple[int, dict[str, int]]:
    """An active shop whose orders failed for a lost Exact connection, a refused shop token, unreachable vendors and
    an unmapped VAT category (one each)."""
    kinds = {"1": EXACT_AUTH, "2": SHOP_AUTH, "3": UNAVAILABLE, "4": "unmapped_vat"}
    async with engine.begin() as conn:
        account = await create_login(conn, email=EMAIL)
        integration = await create_active_integration(conn, account_id=account)
        ids = {}
        for number, kind in kinds.items():
            outcome = await notices.record_notice(
                conn,
                integration_id=integration.id,
                order_number=number,
                status_id=2,
                source="poller",
                dedupe_key=f"{number}:2",
                selected_statuses=(2,),
            )
            ids[kind] = int(outcome.order_sync_id or 0)
            await orders.mark_failed(
                conn, integration_id=integration.id, order_sync_id=ids[kind], error_kind=kind, message="stopped"
            )
        if columns:
            await update_integration(conn, integration_id=integration.id, **columns)
    return integration.id, ids


async def states(engine: AsyncEngine, integration_id: int, ids: dict[str, int]) -> dict[str, str]:
    async with engine.connect() as conn:
        found = {k: await orders.get_sync(conn, integration_id=integration_id, order_sync_id=i) for k, i in ids.items()}
    return {k: s.state for k, s in found.items() if s is not None}


async def queued_jobs(redis: ArqRedis) -> set[str]:
    return {j.decode() for j in await redis.zrange(QUEUE_DEFAULT, 0, -1)}


def submit(client: TestClient, url: str, data: dict[str, str]) -> httpx.Response:
    token = csrf_of(client.get("/account").text)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def reconnect_exact(client: TestClient, integration_id: int) -> httpx.Response:
    """Our connect page, the sandbox's consent form over HTTP, our callback: the answer of the callback."""
    response = submit(client, f"/integrations/{integration_id}/exact/connect", {"country": "nl"})
    assert response.status_code == 303, response.text
    authorize = httpx.URL(response.headers["location"])
    consent = httpx.post(
        authorize.copy_with(query=None), data={**dict(authorize.params), "decision": "approve"}, follow_redirects=False
    )
    callback = httpx.URL(consent.headers["location"])
    return client.get(f"{callback.path}?{callback.query.decode()}", follow_redirects=False)


async def test_reconnecting_exact_requeues_the_orders_that_waited_for_it(
    wizard: TestClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    integration_id, ids = await shop_with_failures(engine, exact_connection="reconnect_needed")
    log_in(wizard, EMAIL)
    done = reconnect_exact(wizard, integration_id)
    assert done.status_code == 303, done.text
    assert await states(engine, integration_id, ids) == {
        EXACT_AUTH: "queued",
        SHOP_AUTH: "failed",
        UNAVAILABLE: "queued",
        "unmapped_vat": "failed",
    }
    async with engine.connect() as conn:
        resumed = [
            await orders.get_sync(conn, integration_id=integration_id, order_sync_id=ids[k])
            for k in (EXACT_AUTH, UNAVAILABLE)
        ]
    assert await queued_jobs(redis) == {sync_job_id(integration_id, s.id, s.generation) for s in resumed if s}
    page = wizard.get(done.headers["location"]).text
    assert "2 orders that stopped for the lost connection are queued again." in page


async def test_a_new_shop_token_requeues_the_orders_the_old_one_stopped(
    wizard: TestClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    integration_id, ids = await shop_with_failures(engine, shop_connection="error")
    log_in(wizard, EMAIL)
    response = submit(wizard, f"/integrations/{integration_id}/setup/shop", {"shop_token": SANDBOX_SHOP_TOKEN})
    assert response.status_code == 303, response.text
    assert await states(engine, integration_id, ids) == {
        EXACT_AUTH: "failed",
        SHOP_AUTH: "queued",
        UNAVAILABLE: "queued",
        "unmapped_vat": "failed",
    }
    assert len(await queued_jobs(redis)) == 2
    page = wizard.get(response.headers["location"]).text
    assert "2 orders that stopped for the lost connection are queued again." in page


async def test_the_dashboard_counts_every_failed_order_as_needing_attention(
    wizard: TestClient, engine: AsyncEngine
) -> None:
    integration_id, _ = await shop_with_failures(engine)
    log_in(wizard, EMAIL)
    page = wizard.get(f"/integrations/{integration_id}/dashboard").text
    assert "<strong>4</strong><span>need your attention" in page
    assert f"/integrations/{integration_id}/history?state=attention" in page
    listed = wizard.get(f"/integrations/{integration_id}/history?state=attention").text
    for number in ("1", "2", "3", "4"):
        assert f">{number}<" in listed, number
