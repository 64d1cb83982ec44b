"""`gateway syncs rerun`: a range of order numbers re-read from the shop and fed through the notice pipeline."""

from __future__ import annotations

import functools
import json

import anyio
import httpx
import pytest
import respx
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from gateway.crypto import Cipher
from gateway.queue import QUEUE_DEFAULT, sync_job_id
from gateway.settings import Settings
from gateway.store import credentials, notices, orders
from tests.support.environment import load_payload
from tests.support.factories import create_active_integration, run_cli

pytestmark = pytest.mark.anyio
SHOP_TOKEN = "shop-token-rerun-0001"
STATUSES = {"1001": 3, "1002": 1, "1004": 2}  # 1002 is in a status the shop did not select; 1003 does not exist


async def gateway(settings: Settings, *argv: str) -> int:
    return await anyio.to_thread.run_sync(functools.partial(run_cli, settings, list(argv)))


def shop_order(request: httpx.Request, number: str) -> httpx.Response:
    if number not in STATUSES:
        return httpx.Response(404, json={"error": "Order not found"})
    return httpx.Response(
        200, json={**load_payload("mww_order_multi_rate"), "number": number, "status": STATUSES[number]}
    )


async def connected_shop(engine: AsyncEngine, settings: Settings) -> int:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        await credentials.save_credential(
            conn,
            integration_id=integration.id,
            kind=credentials.SHOP_TOKEN,
            secret=SHOP_TOKEN,
            cipher=Cipher(settings.encryption_keys),
        )
        booked = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number="1004",
            status_id=2,
            source="poller",
            dedupe_key="1004:2",
            selected_statuses=(2,),
        )
        assert booked.order_sync_id is not None
        await orders.mark_booked(
            conn,
            integration_id=integration.id,
            order_sync_id=booked.order_sync_id,
            document_type="sales_entry",
            exact_document_id="guid-1004",
            exact_document_number="70004",
        )
    return integration.id


async def test_rerun_reads_each_order_and_notices_it_with_source_operator(
    engine: AsyncEngine,
    redis: ArqRedis,
    settings: Settings,
    mww_api: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    integration_id = await connected_shop(engine, settings)
    route = mww_api.get(path__regex=r"/orders/(?P<number>\d+)$").mock(side_effect=shop_order)

    code = await gateway(
        settings, "syncs", "rerun", "--integration", str(integration_id), "--from", "1001", "--to", "1004", "--json"
    )

    assert code == EXIT_OK
    results = {r["order_number"]: r["result"] for r in json.loads(capsys.readouterr().out)}
    assert results == {"1001": "queued", "1002": "skipped", "1003": "not_found", "1004": "already_booked"}
    assert [c.request.url.params["token"] for c in route.calls] == [SHOP_TOKEN] * 4
    async with engine.connect() as conn:
        events = (await conn.execute(select(tables.order_event.c.order_number, tables.order_event.c.source))).all()
        queued = await orders.get_sync_by_number(conn, integration_id=integration_id, order_number="1001")
    assert sorted(events) == [("1001", "operator"), ("1002", "operator"), ("1004", "operator"), ("1004", "poller")]
    assert queued is not None
    assert {j.decode() for j in await redis.zrange(QUEUE_DEFAULT, 0, -1)} == {sync_job_id(integration_id, queued.id, 0)}


async def test_rerun_twice_records_the_operator_notice_again(
    engine: AsyncEngine, settings: Settings, mww_api: respx.MockRouter
) -> None:
    integration_id = await connected_shop(engine, settings)
    mww_api.get(path__regex=r"/orders/(?P<number>\d+)$").mock(side_effect=shop_order)
    argv = ("syncs", "rerun", "--integration", str(integration_id), "--from", "1002", "--to", "1002")

    assert await gateway(settings, *argv) == EXIT_OK
    assert await gateway(settings, *argv) == EXIT_OK

    async with engine.connect() as conn:
        sources = (await conn.execute(select(tables.order_event.c.source))).scalars().all()
    assert sources.count("operator") == 2


async def test_rerun_reports_shop_errors_with_exit_code_1(
    engine: AsyncEngine, settings: Settings, mww_api: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    integration_id = await connected_shop(engine, settings)
    mww_api.get(path__regex=r"/orders/\d+$").respond(503)

    code = await gateway(
        settings, "syncs", "rerun", "--integration", str(integration_id), "--from", "7", "--to", "8", "--json"
    )

    assert code == EXIT_FAILURE
    out = capsys.readouterr()
    assert [r["result"] for r in json.loads(out.out)] == ["error", "error"]
    assert SHOP_TOKEN not in out.out + out.err


@pytest.mark.parametrize(
    ("first", "last"), [pytest.param("10", "9", id="reversed"), pytest.param("1", "5000", id="too-long")]
)
async def test_rerun_refuses_a_bad_range(engine: AsyncEngine, settings: Settings, first: str, last: str) -> None:
    code = await gateway(settings, "syncs", "rerun", "--integration", "1", "--from", first, "--to", last)
    assert code == EXIT_USAGE


async def test_rerun_without_a_shop_token_fails(engine: AsyncEngine, settings: Settings) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    assert (
        await gateway(settings, "syncs", "rerun", "--integration", str(integration.id), "--from", "1", "--to", "1") == 1
    )
    assert await gateway(settings, "syncs", "rerun", "--integration", "999999", "--from", "1", "--to", "1") == 1
