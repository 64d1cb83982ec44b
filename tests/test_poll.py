import dataclasses
from datetime import datetime, timedelta

import httpx
import pytest
import respx
from arq.worker import FailedJobs
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from gateway import tables
from gateway.clock import utcnow
from gateway.db import create_engine
from gateway.jobs import poll
from gateway.queue import QUEUE_DEFAULT
from gateway.sandbox import mijnwebwinkel as sandbox
from gateway.settings import Settings
from gateway.store import credentials, orders
from gateway.store.integrations import (
    Integration,
    claim_due_integrations,
    get_integration_or_raise,
    update_integration,
)
from tests.support.factories import create_active_integration

pytestmark = pytest.mark.anyio

TOKEN = "shop-token-poll-0001"


@pytest.fixture(autouse=True)
def _no_retry_pauses(monkeypatch) -> None:
    monkeypatch.setattr(poll, "PAGE_RETRY_DELAYS", (0.0, 0.0))


async def shop(ctx: dict, **columns) -> Integration:  # type: ignore[no-untyped-def]
    async with ctx["engine"].begin() as conn:
        integration = await create_active_integration(conn, **columns)
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=TOKEN, cipher=ctx["cipher"]
        )
    return integration


async def reload(ctx: dict, integration: Integration) -> Integration:
    async with ctx["engine"].connect() as conn:
        return await get_integration_or_raise(conn, integration_id=integration.id)


async def rows(engine: AsyncEngine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def poll_due_shops(ctx: dict, make_worker) -> int:  # type: ignore[no-untyped-def]
    """What the workers do each tick: the scheduler cron enqueues, a burst worker runs the poll jobs."""
    await poll.poll_shops(ctx)
    return int(await make_worker(http=ctx["http"], cipher=ctx["cipher"]).run_check())


def change(number: int, status: int, at: str) -> dict:
    day, clock = at.split(" ")
    return {"number": str(number), "status": status, "status_changed_date": day, "status_changed_time": clock}


async def test_a_round_records_every_change_then_moves_the_cursor(ctx, mww_api: respx.MockRouter) -> None:
    integration = await shop(ctx)
    route = mww_api.get("/orders").respond(
        json=[change(2001, 2, "2026-11-20 10:00:00"), change(2002, 1, "2026-11-20 10:05:00")]
    )
    started = utcnow()
    result = await poll.poll_integration(ctx, integration)
    assert (result.outcome, result.changes) == ("ok", 2)
    params = route.calls.last.request.url.params
    since = datetime.strptime(params["status_changed_start_date"], poll.CURSOR_FORMAT)  # noqa: DTZ007
    assert abs(since - (started.replace(tzinfo=None) - poll.OVERLAP)) < timedelta(seconds=5)
    assert params["token"] == TOKEN
    after = await reload(ctx, integration)
    assert after.poll_cursor == "2026-11-20 10:05:00"
    assert after.last_poll_error is None
    assert timedelta(seconds=45) < after.next_poll_at - started <= timedelta(seconds=60)
    async with ctx["engine"].connect() as conn:
        states = dict((await conn.execute(select(tables.order_sync.c.order_number, tables.order_sync.c.state))).all())
    assert states == {"2001": "queued", "2002": "skipped"}
    assert await ctx["redis"].zcard(QUEUE_DEFAULT) == 1


async def test_the_window_overlaps_and_repeats_are_absorbed(ctx, mww_api: respx.MockRouter) -> None:
    integration = await shop(ctx, poll_cursor="2026-11-20 10:00:00")
    route = mww_api.get("/orders").respond(json=[change(2003, 2, "2026-11-20 09:55:00")])
    await poll.poll_integration(ctx, integration)
    await poll.poll_integration(ctx, await reload(ctx, integration))
    assert route.calls[0].request.url.params["status_changed_start_date"] == "2026-11-20 09:50:00"
    assert await rows(ctx["engine"], tables.order_event) == 1
    assert await ctx["redis"].zcard(QUEUE_DEFAULT) == 1
    assert (await reload(ctx, integration)).poll_cursor == "2026-11-20 10:00:00"  # never moves backwards


async def test_pages_are_read_to_the_end(ctx, mww_api: respx.MockRouter) -> None:
    integration = await shop(ctx)
    first = [change(3000 + n, 2, f"2026-11-20 10:{n % 60:02d}:00") for n in range(100)]
    route = mww_api.get("/orders").mock(
        side_effect=[
            httpx.Response(200, json=first),
            httpx.Response(200, json=[change(3100, 3, "2026-11-20 11:30:00")]),
        ]
    )
    result = await poll.poll_integration(ctx, integration)
    assert result.changes == 101
    assert [c.request.url.params["offset"] for c in route.calls] == ["0", "100"]
    assert await rows(ctx["engine"], tables.order_sync) == 101
    assert (await reload(ctx, integration)).poll_cursor == "2026-11-20 11:30:00"


async def test_the_cursor_survives_a_restart(ctx, settings: Settings, mww_api: respx.MockRouter, http, redis) -> None:
    integration = await shop(ctx)
    route = mww_api.get("/orders").respond(json=[change(2004, 2, "2026-11-21 08:00:00")])
    await poll.poll_integration(ctx, integration)
    # A new process: fresh engine and context, nothing carried over but the database.
    fresh_engine = create_engine(settings.database_url)
    try:
        async with fresh_engine.connect() as conn:
            restarted = await get_integration_or_raise(conn, integration_id=integration.id)
        await poll.poll_integration({**ctx, "engine": fresh_engine}, restarted)
    finally:
        await fresh_engine.dispose()
    assert route.calls.last.request.url.params["status_changed_start_date"] == "2026-11-21 07:50:00"


async def test_a_failed_page_keeps_the_cursor_and_the_next_round_catches_up(ctx, mww_api: respx.MockRouter) -> None:
    integration = await shop(ctx, poll_cursor="2026-11-20 00:00:00")
    first = [change(4000 + n, 2, "2026-11-20 10:00:00") for n in range(100)]
    mww_api.get("/orders").mock(side_effect=[httpx.Response(200, json=first), *[httpx.Response(500) for _ in range(3)]])
    failed = await poll.poll_integration(ctx, integration)
    assert failed.outcome == "error"
    after = await reload(ctx, integration)
    assert after.poll_cursor == "2026-11-20 00:00:00"
    assert "unavailable" in after.last_poll_error
    assert await rows(ctx["engine"], tables.order_sync) == 100  # the first page is durable
    mww_api.get("/orders").mock(
        side_effect=[
            httpx.Response(200, json=first),
            httpx.Response(200, json=[change(4100, 2, "2026-11-20 10:01:00")]),
        ]
    )
    recovered = await poll.poll_integration(ctx, after)
    assert recovered.outcome == "ok"
    assert await rows(ctx["engine"], tables.order_sync) == 101
    assert (await reload(ctx, integration)).poll_cursor == "2026-11-20 10:01:00"


async def test_a_transient_fault_on_one_page_is_retried_within_the_round(ctx, mww_api: respx.MockRouter) -> None:
    integration = await shop(ctx)
    route = mww_api.get("/orders").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(429), httpx.Response(200, json=[])]
    )
    assert (await poll.poll_integration(ctx, integration)).outcome == "ok"
    assert route.call_count == 3


async def test_failures_back_off_exponentially_and_never_delay_another_shop(
    ctx, mww_api: respx.MockRouter, make_worker, monkeypatch
) -> None:
    broken = await shop(ctx)
    healthy = await shop(ctx)
    mww_api.get("/orders").mock(
        side_effect=lambda request: (
            httpx.Response(200, json=[]) if "broken" not in request.url.params["token"] else httpx.Response(503)
        )
    )
    async with ctx["engine"].begin() as conn:
        await credentials.save_credential(
            conn, integration_id=broken.id, kind=credentials.SHOP_TOKEN, secret="broken-token-01", cipher=ctx["cipher"]
        )
    assert await poll.poll_shops(ctx) == "claimed 2 due shops, enqueued 2 polls"
    assert await make_worker(http=ctx["http"], cipher=ctx["cipher"]).run_check() == 2
    first = await reload(ctx, broken)
    pause1 = first.next_poll_at - first.last_polled_at
    assert timedelta(seconds=50) <= pause1 <= timedelta(seconds=60)
    due = first.next_poll_at
    monkeypatch.setattr(poll, "utcnow", lambda: due)  # the next round runs when the back-off says so
    second_round = await poll.poll_integration(ctx, first)
    assert second_round.outcome == "error"
    second = await reload(ctx, broken)
    pause2 = second.next_poll_at - second.last_polled_at
    assert pause1 * 1.6 < pause2 <= pause1 * 2
    assert (await reload(ctx, healthy)).last_poll_error is None


async def test_a_refused_token_stops_polling_until_the_owner_acts(ctx, mww_api: respx.MockRouter, make_worker) -> None:
    integration = await shop(ctx)
    route = mww_api.get("/orders").respond(401, json={"title": "Invalid token"})
    result = await poll.poll_integration(ctx, integration)
    assert result.outcome == "auth_error"
    after = await reload(ctx, integration)
    assert after.shop_connection == "error"
    assert "does not accept this token" in after.shop_connection_error
    assert await poll_due_shops(ctx, make_worker) == 0
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("columns", "due"),
    [
        pytest.param({}, True, id="active-connected"),
        pytest.param({"state": "paused"}, False, id="paused"),
        pytest.param({"state": "setup"}, False, id="setup"),
        pytest.param({"shop_connection": "disconnected"}, False, id="disconnected"),
        pytest.param({"next_poll_at": timedelta(minutes=5)}, False, id="not-yet"),
    ],
)
async def test_only_due_active_connected_shops_are_polled(
    ctx, mww_api: respx.MockRouter, make_worker, columns, due
) -> None:
    await shop(ctx, **{k: utcnow() + v if isinstance(v, timedelta) else v for k, v in columns.items()})
    route = mww_api.get("/orders").respond(json=[])
    assert await poll_due_shops(ctx, make_worker) == int(due)
    assert route.called is due


async def test_service_levels_set_the_interval(ctx, mww_api: respx.MockRouter, make_worker) -> None:
    basic = await shop(ctx, service_level="basic")
    premium = await shop(ctx, service_level="premium")
    mww_api.get("/orders").respond(json=[])
    started = utcnow()
    assert await poll_due_shops(ctx, make_worker) == 2
    assert (await reload(ctx, basic)).next_poll_at - started > timedelta(minutes=119)
    assert (await reload(ctx, premium)).next_poll_at - started < timedelta(seconds=61)


async def test_a_shop_already_being_polled_is_left_alone(ctx, mww_api: respx.MockRouter) -> None:
    integration = await shop(ctx)
    route = mww_api.get("/orders").respond(json=[])
    held = ctx["redis"].lock(f"mww:poll:{integration.id}", timeout=5, thread_local=False)
    assert await held.acquire()
    try:
        assert (await poll.poll_integration(ctx, integration)).outcome == "busy"
    finally:
        await held.release()
    assert not route.called


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_an_order_changing_while_the_poller_pages_is_not_missed(ctx, monkeypatch) -> None:
    """Order 1001 moves into the window after page 1 was read; its new position is behind the offset, so this round
    cannot see it. The overlap window makes the next round find it, and the shift loses no other order."""
    monkeypatch.setattr(poll, "PAGE_SIZE", 2)
    clock = Clock(datetime(2026, 11, 20, 12, 0, 0))  # noqa: DTZ001 - the shop's zone-less time
    app = sandbox.create_mww_sandbox(faults_enabled=False, clock=clock)
    state = app.state.sandbox
    inner = httpx.ASGITransport(app=app)
    listed = []

    class ChangeAfterFirstPage(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            if request.url.path == "/v1/orders":
                listed.append(request.url.params["offset"])
                if len(listed) == 1:
                    clock.now = datetime(2026, 11, 20, 12, 0, 5)  # noqa: DTZ001
                    await sandbox.change_status(state, state.main_shop(), 1001, 2)
            return response

    settings = dataclasses.replace(
        ctx["settings"], mww_base_url="http://mww.sandbox/v1", mww_partner_token=Secret(sandbox.SANDBOX_PARTNER_TOKEN)
    )
    async with httpx.AsyncClient(transport=ChangeAfterFirstPage()) as http:
        ctx = {**ctx, "settings": settings, "http": http}
        async with ctx["engine"].begin() as conn:
            integration = await create_active_integration(conn, poll_cursor="2026-11-17 00:00:00")
            await credentials.save_credential(
                conn,
                integration_id=integration.id,
                kind=credentials.SHOP_TOKEN,
                secret=sandbox.SANDBOX_SHOP_TOKEN,
                cipher=ctx["cipher"],
            )
        first = await poll.poll_integration(ctx, integration)
        async with ctx["engine"].connect() as conn:
            missed = await orders.get_sync_by_number(conn, integration_id=integration.id, order_number="1001")
            seen_first = {r[0] for r in (await conn.execute(select(tables.order_sync.c.order_number))).all()}
        assert first.outcome == "ok"
        assert missed is None, "the scenario needs 1001 to be behind the offset in round one"
        assert seen_first == {"1007", "1008", "1009"}  # the shift duplicated 1008 but dropped nothing
        async with ctx["engine"].begin() as conn:
            await update_integration(conn, integration_id=integration.id, next_poll_at=None)
        second = await poll.poll_integration(ctx, await reload(ctx, integration))
    async with ctx["engine"].connect() as conn:
        caught = await orders.get_sync_by_number(conn, integration_id=integration.id, order_number="1001")
    assert second.outcome == "ok"
    assert caught is not None
    assert (caught.state, caught.status_id) == ("queued", 2)


async def test_the_scheduler_claims_due_shops_in_batches_and_enqueues_one_job_each(ctx, monkeypatch) -> None:
    monkeypatch.setattr(poll, "CLAIM_BATCH", 2)
    due = [await shop(ctx) for _ in range(3)]
    await shop(ctx, next_poll_at=utcnow() + timedelta(minutes=5))
    await shop(ctx, state="paused")
    assert await poll.poll_shops(ctx) == "claimed 3 due shops, enqueued 3 polls"
    queued = {job.job_id for job in await ctx["redis"].queued_jobs()}
    assert queued == {f"poll_shop:{i.id}" for i in due}
    for integration in due:  # claimed: not due again until the round ends or the claim runs out
        assert (await reload(ctx, integration)).next_poll_at > utcnow() + poll.CLAIM_LEASE - timedelta(seconds=30)
    assert await poll.poll_shops(ctx) == "claimed 0 due shops, enqueued 0 polls"


async def test_a_claim_whose_job_was_lost_runs_out(ctx) -> None:
    integration = await shop(ctx)
    now = utcnow()
    later = now + poll.CLAIM_LEASE + timedelta(seconds=1)

    async def claim(conn, at: datetime) -> list[int]:  # type: ignore[no-untyped-def]
        claims = await claim_due_integrations(conn, due_by=at, lease_until=at + poll.CLAIM_LEASE, limit=10)
        return [integration_id for integration_id, _ in claims]

    async with ctx["engine"].begin() as conn:
        assert await claim(conn, now) == [integration.id]
        assert await claim(conn, now) == []
        assert await claim(conn, later) == [integration.id]


async def test_a_shop_due_before_the_next_run_is_queued_to_run_when_it_is_due(ctx) -> None:
    due = utcnow() + timedelta(seconds=5)
    integration = await shop(ctx, next_poll_at=due)
    await shop(ctx, next_poll_at=utcnow() + poll.SCHEDULE_AHEAD + timedelta(seconds=5))  # the next run's
    assert await poll.poll_shops(ctx) == "claimed 1 due shops, enqueued 1 polls"
    run_at = await ctx["redis"].zscore(QUEUE_DEFAULT, poll.poll_job_id(integration.id))
    assert abs(run_at - due.timestamp() * 1000) < 1000


async def test_a_shop_is_never_queued_twice_and_its_job_id_is_free_after_the_round(
    ctx, mww_api: respx.MockRouter, make_worker
) -> None:
    integration = await shop(ctx)
    mww_api.get("/orders").respond(json=[])
    claim = [(integration.id, None)]
    assert await poll.enqueue_polls(ctx["redis"], claim) == 1
    assert await poll.enqueue_polls(ctx["redis"], claim) == 0
    assert await ctx["redis"].zcard(QUEUE_DEFAULT) == 1
    assert await make_worker(http=ctx["http"], cipher=ctx["cipher"]).run_check() == 1
    assert await poll.enqueue_polls(ctx["redis"], claim) == 1


async def test_a_shop_whose_round_crashes_does_not_stop_the_others(ctx, mww_api: respx.MockRouter, make_worker) -> None:
    crashing, healthy = await shop(ctx), await shop(ctx)
    async with ctx["engine"].begin() as conn:
        await credentials.save_credential(
            conn, integration_id=crashing.id, kind=credentials.SHOP_TOKEN, secret="crash-token-01", cipher=ctx["cipher"]
        )

    def answer(request: httpx.Request) -> httpx.Response:
        if "crash" in request.url.params["token"]:
            raise RuntimeError("a bug in one shop's round")
        return httpx.Response(200, json=[])

    mww_api.get("/orders").mock(side_effect=answer)
    await poll.poll_shops(ctx)
    with pytest.raises(FailedJobs):
        await make_worker(http=ctx["http"], cipher=ctx["cipher"]).run_check()
    assert (await reload(ctx, healthy)).last_polled_at is not None
    assert (await reload(ctx, crashing)).last_polled_at is None


async def test_a_shop_paused_after_its_claim_is_not_polled(ctx, mww_api: respx.MockRouter, make_worker) -> None:
    integration = await shop(ctx)
    route = mww_api.get("/orders").respond(json=[])
    await poll.poll_shops(ctx)
    async with ctx["engine"].begin() as conn:
        await update_integration(conn, integration_id=integration.id, state="paused")
    assert await make_worker(http=ctx["http"], cipher=ctx["cipher"]).run_check() == 1
    assert not route.called
