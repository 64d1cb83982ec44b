"""The rate governor on a real Redis: minutely and daily budgets per division, in step with Exact's headers, and a
429 storm against the sandbox that loses no booking and never exceeds 60 calls in any 60 seconds."""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import heapq
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from gateway.clients.errors import RateLimitedError, TransientApiError
from gateway.clients.exact import ExactClient, odata_quote
from gateway.ratelimit import RateGovernor
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_seed import stable_id

START = dt.datetime(2026, 1, 5, 10, 0, 30, tzinfo=dt.UTC).timestamp()


class VirtualClock:
    """Discrete-event time: it stands still while any task works and jumps to the next wake-up once all sleep.

    So a call acquired at one instant reaches the sandbox at that same instant, as it would within milliseconds.
    """

    def __init__(self, start: float = START) -> None:
        self.t = start
        self.active = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), next(self._seq), future))
        self.active -= 1
        self._advance_if_idle()
        await future

    async def sleep_until(self, moment: dt.datetime) -> None:
        await self.sleep(moment.timestamp() - self.t)

    def _advance_if_idle(self) -> None:
        if self.active > 0 or not self._sleepers:
            return
        self.t = max(self.t, self._sleepers[0][0])
        while self._sleepers and self._sleepers[0][0] <= self.t:
            _, _, future = heapq.heappop(self._sleepers)
            self.active += 1
            future.set_result(None)

    async def run(self, *work: Any) -> list[Any]:
        """Run coroutines as the simulated tasks."""

        async def task(coro: Any) -> Any:
            try:
                return await coro
            finally:
                self.active -= 1
                self._advance_if_idle()

        self.active += len(work)
        return list(await asyncio.gather(*(task(w) for w in work)))


def governor(redis: ArqRedis, clock: VirtualClock, **options: Any) -> RateGovernor:
    """A governor for window tests: no pacing (the whole minute may go at once) unless `burst` is given."""
    defaults: dict[str, Any] = {"minutely_limit": 5, "daily_limit": 1000, "margin": 0.0, "max_wait": 0.0, "burst": 60}
    return RateGovernor(redis, clock=clock, **{**defaults, **options})


def answer(status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


async def test_budget_is_taken_up_to_the_limit_then_refused_until_the_oldest_call_ages_out(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock)
    for _ in range(5):
        await rg.acquire(1)
        clock.t += 1
    with pytest.raises(RateLimitedError) as caught:
        await rg.acquire(1)
    assert caught.value.reset_at == dt.datetime.fromtimestamp(START + 60, tz=dt.UTC)
    clock.t = START + 60.5  # the first call left the window, the second has not
    await rg.acquire(1)
    with pytest.raises(RateLimitedError):
        await rg.acquire(1)
    assert (await rg.usage(1)).in_window == 5


async def test_a_short_wait_for_a_slot_happens_in_process(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock, max_wait=5.0)
    for _ in range(5):
        await rg.acquire(1)
    clock.t = START + 57
    await rg.acquire(1)
    assert clock.t >= START + 60


async def test_divisions_have_separate_budgets(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock)
    for _ in range(5):
        await rg.acquire(1)
    await rg.acquire(2)
    assert (await rg.usage(2)).in_window == 1


async def test_concurrent_callers_in_two_governors_never_overshoot(redis: ArqRedis) -> None:
    """Two governors stand for two worker processes sharing one Redis."""
    first, second = (RateGovernor(redis, minutely_limit=60, max_wait=0, burst=60) for _ in range(2))

    async def attempt(rg: RateGovernor) -> bool:
        try:
            await rg.acquire(7)
        except RateLimitedError:
            return False
        return True

    results = await asyncio.gather(*(attempt(first if i % 2 else second) for i in range(150)))
    assert sum(results) == 60


async def test_after_a_burst_calls_are_paced_one_per_window_share(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock, minutely_limit=60, margin=1.0, burst=10)
    for _ in range(10):
        await rg.acquire(1)
    with pytest.raises(RateLimitedError) as caught:
        await rg.acquire(1)
    assert caught.value.reset_at is not None
    assert abs(caught.value.reset_at.timestamp() - (START + 61 / 60)) < 0.002  # one interval: 61 s / 60
    clock.t += 61 / 60 * 5 + 0.01  # five intervals later: five more calls, not six
    for _ in range(5):
        await rg.acquire(1)
    with pytest.raises(RateLimitedError):
        await rg.acquire(1)


async def test_daily_budget_refuses_until_midnight_utc(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock, minutely_limit=60, daily_limit=3)
    for _ in range(3):
        await rg.acquire(1)
    with pytest.raises(RateLimitedError, match="daily") as caught:
        await rg.acquire(1)
    assert caught.value.reset_at == dt.datetime(2026, 1, 6, tzinfo=dt.UTC)
    clock.t = dt.datetime(2026, 1, 6, 0, 0, 1, tzinfo=dt.UTC).timestamp()
    await rg.acquire(1)


async def test_headers_showing_fewer_calls_left_lower_the_budget(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock, minutely_limit=60, daily_limit=5000)
    await rg.acquire(1)
    await rg.observe(
        1,
        answer(
            **{
                "X-RateLimit-Minutely-Limit": "60",
                "X-RateLimit-Minutely-Remaining": "10",
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "4000",
            }
        ),
    )
    usage = await rg.usage(1)
    assert (usage.in_window, usage.today) == (50, 1000)
    for _ in range(10):
        await rg.acquire(1)
    with pytest.raises(RateLimitedError):
        await rg.acquire(1)


async def test_a_429_blocks_the_division_until_the_reset_exact_announced(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock, minutely_limit=60)
    reset = START + 30
    await rg.observe(1, answer(429, **{"X-RateLimit-Minutely-Reset": str(int(reset * 1000))}))
    with pytest.raises(RateLimitedError) as caught:
        await rg.acquire(1)
    assert caught.value.reset_at == dt.datetime.fromtimestamp(reset, tz=dt.UTC)
    await rg.acquire(2)  # another administration is not affected
    clock.t = reset + 0.1
    await rg.acquire(1)


async def test_no_daily_calls_left_blocks_until_the_daily_reset(redis: ArqRedis) -> None:
    clock = VirtualClock()
    rg = governor(redis, clock, minutely_limit=60)
    midnight = dt.datetime(2026, 1, 6, tzinfo=dt.UTC)
    await rg.observe(
        1,
        answer(**{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(midnight.timestamp() * 1000))}),
    )
    with pytest.raises(RateLimitedError) as caught:
        await rg.acquire(1)
    assert caught.value.reset_at == midnight


# ---------------------------------------------------------------- a 429 storm against the sandbox


@pytest.fixture
async def storm_setup() -> AsyncIterator[tuple[VirtualClock, Any, httpx.AsyncClient]]:
    clock = VirtualClock()
    app = create_exact_sandbox(faults_enabled=True, clock=clock.now)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://exact-nl.test") as http:
        yield clock, app, http


def bearer_for(app: Any) -> httpx.Auth:
    """A fresh sandbox token whenever the last one expired (token custody has its own tests)."""
    service = app.state.sandbox.tokens

    def mint() -> str:
        code = service.new_code("c", "http://testserver/cb")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "c",
            "redirect_uri": "http://testserver/cb",
        }
        return str(service.token(form)[1]["access_token"])

    class Bearer(httpx.Auth):
        token = mint()

        def auth_flow(self, request: httpx.Request) -> Any:
            request.headers["Authorization"] = f"Bearer {self.token}"
            response = yield request
            if response.status_code == 401:
                Bearer.token = mint()
                request.headers["Authorization"] = f"Bearer {self.token}"
                yield request

    return Bearer()


async def book_like_a_job(client: ExactClient, clock: VirtualClock, reference: str, customer: str, gl: str) -> None:
    """Look up by reference before creating (Exact has no idempotency key); defer on a refusal, retry on 5xx."""
    while True:
        try:
            found = await client.get_all(
                "salesentry/SalesEntries", select=["EntryID"], filter=f"YourRef eq {odata_quote(reference)}"
            )
            if not found:
                lines = [{"GLAccount": gl, "AmountFC": "10.00", "VATCode": "2"}]
                await client.post(
                    "salesentry/SalesEntries",
                    {"Journal": "70", "Customer": customer, "YourRef": reference, "SalesEntryLines": lines},
                )
            return
        except RateLimitedError as e:
            await clock.sleep_until(e.reset_at or dt.datetime.fromtimestamp(clock.t + 60, tz=dt.UTC))
        except TransientApiError:
            await clock.sleep(5)


def max_calls_in_any_window(times: list[float], window: float = 60.0) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


async def test_a_429_storm_loses_no_booking_and_no_division_exceeds_60_calls_a_minute(
    redis: ArqRedis, storm_setup: tuple[VirtualClock, Any, httpx.AsyncClient]
) -> None:
    clock, app, http = storm_setup
    sandbox = app.state.sandbox
    sandbox.faults.storm_429 = 40
    sandbox.faults.fail_after_store = 3  # stored, then a 500: the next try must find it, not book it twice
    auth = bearer_for(app)
    rg = RateGovernor(redis, minutely_limit=60, daily_limit=5000, clock=clock)
    orders = 90

    def workers_for(division: int) -> list[Any]:
        client = ExactClient(http, host="https://exact-nl.test", division=division, auth=auth, governor=rg)
        customer, gl = stable_id(division, "account", "1"), stable_id(division, "gl", "8000")
        queue = [f"{division}-{n}" for n in range(orders)]

        async def worker() -> None:
            while queue:
                await book_like_a_job(client, clock, queue.pop(), customer, gl)

        return [worker() for _ in range(4)]

    await clock.run(*workers_for(123456), *workers_for(234567))

    statuses = Counter(call.status for call in sandbox.calls)
    assert statuses[429] == 40  # the storm only: the governor itself never ran into Exact's limit
    for division in (123456, 234567):
        entries = sandbox.divisions[division].rows["SalesEntries"]
        assert sorted(e["YourRef"] for e in entries) == sorted(f"{division}-{n}" for n in range(orders))
        counted = [c.at for c in sandbox.calls if c.division == division and c.status != 429]
        assert len(counted) >= 2 * orders
        assert max_calls_in_any_window(counted) <= 60


@pytest.mark.parametrize(
    ("headers", "status", "latest"),
    [
        pytest.param({"X-RateLimit-Minutely-Reset": "+600"}, 429, START + 60, id="429-minutely-10-min-ahead"),
        pytest.param(
            {"X-RateLimit-Minutely-Remaining": "0", "X-RateLimit-Minutely-Reset": "+3600"},
            200,
            START + 60,
            id="none-left-minutely-1-h-ahead",
        ),
        pytest.param(
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "+172800"},
            200,
            dt.datetime(2026, 1, 6, tzinfo=dt.UTC).timestamp() + 60,
            id="none-left-daily-2-days-ahead",
        ),
    ],
)
async def test_a_reset_beyond_its_window_is_capped(
    redis: ArqRedis, headers: dict[str, str], status: int, latest: float
) -> None:
    """Exact's clock running ahead of ours must not block an administration past the window that ran out."""
    clock = VirtualClock()
    rg = governor(redis, clock, minutely_limit=60)
    absolute = {name: str(int((START + int(value)) * 1000)) for name, value in headers.items() if value[0] == "+"}
    await rg.observe(1, answer(status, **{**headers, **absolute}))
    with pytest.raises(RateLimitedError) as caught:
        await rg.acquire(1)
    assert caught.value.reset_at == dt.datetime.fromtimestamp(latest, tz=dt.UTC)
    clock.t = latest + 0.1
    await rg.acquire(1)
