import dataclasses
from datetime import date, timedelta

import httpx
import pytest
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from gateway import tables
from gateway.clock import local_now
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.jobs import initial_export as export_job
from gateway.jobs.initial_export import ExportNotAllowed
from gateway.queue import QUEUE_DEFAULT
from gateway.sandbox import mijnwebwinkel as sandbox
from gateway.settings import Settings
from gateway.store import credentials
from gateway.store.integrations import Integration, get_integration_or_raise, update_integration
from tests.support.factories import create_active_integration

pytestmark = pytest.mark.anyio

START = date(2000, 1, 1)
DEMO_ORDERS = 9


class Recorder(httpx.AsyncBaseTransport):
    """The sandbox over ASGI, remembering the offsets of order listings and running a hook after each."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.inner = httpx.ASGITransport(app=app)
        self.offsets: list[int] = []
        self.after_list = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/v1/orders":
            self.offsets.append(int(request.url.params["offset"]))
            if self.after_list:
                await self.after_list()
        return response


@pytest.fixture
def transport(mww_sandbox) -> Recorder:
    return Recorder(mww_sandbox)


@pytest.fixture
async def export_ctx(settings: Settings, engine: AsyncEngine, redis: ArqRedis, transport):
    settings = dataclasses.replace(
        settings, mww_base_url="http://mww.sandbox/v1", mww_partner_token=Secret(sandbox.SANDBOX_PARTNER_TOKEN)
    )
    async with httpx.AsyncClient(transport=transport) as http:
        yield {
            "settings": settings,
            "engine": engine,
            "cipher": Cipher(settings.encryption_keys),
            "http": http,
            "redis": redis,
        }


async def connected_shop(export_ctx, **columns) -> Integration:  # type: ignore[no-untyped-def]
    async with export_ctx["engine"].begin() as conn:
        integration = await create_active_integration(conn, **columns)
        await credentials.save_credential(
            conn,
            integration_id=integration.id,
            kind=credentials.SHOP_TOKEN,
            secret=sandbox.SANDBOX_SHOP_TOKEN,
            cipher=export_ctx["cipher"],
        )
    return integration


async def start(export_ctx, integration: Integration, start_date: date = START):  # type: ignore[no-untyped-def]
    async with export_ctx["engine"].begin() as conn:
        return await export_job.start_initial_export(
            conn, export_ctx["redis"], integration_id=integration.id, start_date=start_date
        )


async def progress(export_ctx, integration: Integration):  # type: ignore[no-untyped-def]
    async with export_ctx["engine"].connect() as conn:
        return await export_job.get_export_progress(conn, integration_id=integration.id)


async def syncs(export_ctx) -> dict[str, tuple[str, bool]]:  # type: ignore[no-untyped-def]
    c = tables.order_sync.c
    async with export_ctx["engine"].connect() as conn:
        found = (await conn.execute(select(c.order_number, c.state, c.initial_export))).all()
    return {r.order_number: (r.state, bool(r.initial_export)) for r in found}


async def test_starting_creates_the_row_and_queues_the_first_chunk(export_ctx) -> None:
    integration = await connected_shop(export_ctx)
    assert await progress(export_ctx, integration) is None
    export = await start(export_ctx, integration)
    queued = [j.decode() for j in await export_ctx["redis"].zrange(QUEUE_DEFAULT, 0, -1)]
    assert queued == [export_job.export_job_id(export.id, 0)]
    shown = await progress(export_ctx, integration)
    assert (shown.state, shown.done, shown.total, shown.start_date) == ("running", 0, None, START)


@pytest.mark.parametrize(
    ("columns", "start_date", "message"),
    [
        pytest.param({"shop_connection": "disconnected"}, START, "connect the Mijnwebwinkel shop", id="no-shop"),
        pytest.param({}, "tomorrow", "start date", id="future"),  # the Dutch tomorrow when the test runs
        pytest.param({}, date(1999, 12, 31), "start date", id="too-old"),
    ],
)
async def test_an_export_that_cannot_start_says_why(export_ctx, columns, start_date, message) -> None:
    if start_date == "tomorrow":
        start_date = local_now().date() + timedelta(days=1)
    integration = await connected_shop(export_ctx, **columns)
    with pytest.raises(ExportNotAllowed, match=message):
        await start(export_ctx, integration, start_date)


async def test_only_one_export_runs_at_a_time(export_ctx) -> None:
    integration = await connected_shop(export_ctx)
    await start(export_ctx, integration)
    with pytest.raises(ExportNotAllowed, match="already running"):
        await start(export_ctx, integration)


async def test_the_job_walks_every_order_into_the_pipeline_as_initial_export(export_ctx) -> None:
    integration = await connected_shop(export_ctx)
    export = await start(export_ctx, integration)
    result = await export_job.run_initial_export(export_ctx, export.id)
    assert result.startswith("done")
    found = await syncs(export_ctx)
    assert len(found) == DEMO_ORDERS
    assert all(flag for _state, flag in found.values())
    assert {n for n, (state, _) in found.items() if state == "queued"} == {
        "1001",
        "1002",
        "1003",
        "1004",
        "1005",
        "1006",
        "1007",
    }  # statuses 2 and 3 are selected; 1008 (credit) and 1009 (pending) are skipped with a reason
    shown = await progress(export_ctx, integration)
    assert (shown.state, shown.done, shown.total, shown.percent) == ("done", DEMO_ORDERS, DEMO_ORDERS, 100)
    assert await export_ctx["redis"].zcard(QUEUE_DEFAULT) == 7 + 1  # seven bookings + the (deferred) first chunk


async def test_a_crash_or_restart_resumes_at_the_last_committed_page(
    export_ctx, settings, transport, monkeypatch
) -> None:
    monkeypatch.setattr(export_job, "PAGE_SIZE", 2)
    monkeypatch.setattr(export_job, "PAGES_PER_JOB", 2)
    integration = await connected_shop(export_ctx)
    export = await start(export_ctx, integration)
    first = await export_job.run_initial_export(export_ctx, export.id)
    assert first == f"continuing: export {export.id} at offset 4"
    assert export_job.export_job_id(export.id, 4).encode() in await export_ctx["redis"].zrange(QUEUE_DEFAULT, 0, -1)
    await export_ctx["redis"].flushdb()  # the handed-over job is lost with Redis
    fresh = create_engine(export_ctx["settings"].database_url)  # and the worker restarts
    try:
        second = await export_job.run_initial_export({**export_ctx, "engine": fresh}, export.id)
        third = await export_job.run_initial_export({**export_ctx, "engine": fresh}, export.id)
    finally:
        await fresh.dispose()
    assert second.startswith("continuing")
    assert third.startswith("done")
    assert transport.offsets == [0, 2, 4, 6, 8]
    assert len(await syncs(export_ctx)) == DEMO_ORDERS


async def test_cancelling_stops_the_walk_and_drops_a_page_in_flight(export_ctx, transport, monkeypatch) -> None:
    monkeypatch.setattr(export_job, "PAGE_SIZE", 2)
    integration = await connected_shop(export_ctx)
    export = await start(export_ctx, integration)

    async def cancel_after_second_listing() -> None:
        if len(transport.offsets) == 2:
            async with export_ctx["engine"].begin() as conn:
                assert await export_job.cancel_initial_export(conn, integration_id=integration.id, export_id=export.id)

    transport.after_list = cancel_after_second_listing
    assert await export_job.run_initial_export(export_ctx, export.id) == f"cancelled: export {export.id}"
    assert len(await syncs(export_ctx)) == 2  # the first page only
    shown = await progress(export_ctx, integration)
    assert (shown.state, shown.done) == ("cancelled", 2)
    assert await export_job.run_initial_export(export_ctx, export.id) == f"skipped: export {export.id} is cancelled"
    async with export_ctx["engine"].begin() as conn:
        assert not await export_job.cancel_initial_export(conn, integration_id=integration.id, export_id=export.id)


async def test_a_transient_fault_is_retried_later_and_shown(export_ctx, mww_sandbox) -> None:
    integration = await connected_shop(export_ctx)
    export = await start(export_ctx, integration)
    mww_sandbox.state.sandbox.faults = sandbox.Faults(mode="500", remaining=None)
    with pytest.raises(Retry):
        await export_job.run_initial_export({**export_ctx, "job_try": 1}, export.id)
    shown = await progress(export_ctx, integration)
    assert shown.state == "running"
    assert "unavailable" in shown.error
    mww_sandbox.state.sandbox.faults = sandbox.Faults()
    assert (await export_job.run_initial_export(export_ctx, export.id)).startswith("done")
    assert (await progress(export_ctx, integration)).error is None


async def test_a_refused_token_fails_the_export_and_flags_the_shop(export_ctx, mww_sandbox) -> None:
    integration = await connected_shop(export_ctx)
    export = await start(export_ctx, integration)
    mww_sandbox.state.sandbox.faults = sandbox.Faults(mode="bad_token", remaining=None)
    assert (await export_job.run_initial_export(export_ctx, export.id)).startswith("failed")
    shown = await progress(export_ctx, integration)
    assert shown.state == "failed"
    async with export_ctx["engine"].connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=integration.id)).shop_connection == "error"


async def test_the_export_waits_until_the_integration_is_active(export_ctx, transport) -> None:
    integration = await connected_shop(export_ctx, state="setup")
    export = await start(export_ctx, integration)
    assert (await export_job.run_initial_export(export_ctx, export.id)).startswith("waiting")
    assert transport.offsets == []
    async with export_ctx["engine"].begin() as conn:
        await update_integration(conn, integration_id=integration.id, state="active")
    assert (await export_job.run_initial_export(export_ctx, export.id)).startswith("done")


async def test_a_second_run_of_the_same_export_leaves_it_to_the_first(export_ctx, transport) -> None:
    integration = await connected_shop(export_ctx)
    export = await start(export_ctx, integration)
    held = export_ctx["redis"].lock(f"mww:export:{export.id}", timeout=5, thread_local=False)
    assert await held.acquire()
    try:
        assert (await export_job.run_initial_export(export_ctx, export.id)).startswith("busy")
    finally:
        await held.release()
    assert transport.offsets == []
