"""Benchmark of the rate governor: 2,000 orders' worth of Exact calls for one administration, against the sandbox.

The limits are Exact's own (60 calls a minute, 5,000 a day); time is accelerated for the governor and the sandbox
alike. Each order costs what the booking job spends with master data cached: a look-up by reference (Exact has no
idempotency key) and the POST of the sales entry; a customer seen for the first time adds a look-up by e-mail and the
POST of the account. Eight workers book concurrently, like the arq worker; a job the governor refuses waits until
the reset it was given (the job's defer) and starts again. Prints calls per minute against the limit (target
>= 95 %), 429s after the first minute (target 0) and calls per order.

Two clocks:
- `virtual` (default): discrete-event time. The sandbox runs in-process behind httpx's ASGI transport; time stands
  still while any worker is busy and jumps to the next wake-up when all wait. Measures the governor's algorithm
  exactly, in seconds of wall time.
- `scaled --speed N`: the sandbox in its own process over HTTP and both clocks running N times the wall clock. Every
  millisecond of event-loop or network delay becomes N ms of simulated time, so at high N the sandbox sees calls
  later than the governor sent them; keep N <= 30 for a faithful picture.

    python -m bench governor [--orders 2000] [--customers 200] [--workers 8] [--clock virtual|scaled --speed 30]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import heapq
import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn

from gateway.clients.errors import AuthError, RateLimitedError, TransientApiError
from gateway.clients.exact import ExactClient, odata_quote
from gateway.local_redis import free_port, start_private_redis
from gateway.queue import create_arq_pool
from gateway.ratelimit import RateGovernor
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_seed import stable_id

DIVISION = 123456
SIM_START = dt.datetime(2026, 3, 2, 8, 0, 0, tzinfo=dt.UTC).timestamp()  # a Monday, on a minute boundary
IN_PROCESS = "http://sandbox.exact.local"


class VirtualClock:
    """Discrete-event time: stands still while any worker runs, jumps to the earliest wake-up once all sleep."""

    def __init__(self, start: float = SIM_START) -> None:
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

    def _advance_if_idle(self) -> None:
        if self.active > 0 or not self._sleepers:
            return
        self.t = max(self.t, self._sleepers[0][0])
        while self._sleepers and self._sleepers[0][0] <= self.t:
            self.active += 1
            heapq.heappop(self._sleepers)[2].set_result(None)

    async def run(self, work: list[Awaitable[None]]) -> None:
        async def task(step: Awaitable[None]) -> None:
            try:
                await step
            finally:
                self.active -= 1
                self._advance_if_idle()

        self.active += len(work)
        await asyncio.gather(*(task(w) for w in work))


class ScaledClock:
    """Simulated epoch seconds running `speed` times the wall clock since `wall_start`; the sandbox process builds
    the same clock from the same numbers."""

    def __init__(self, speed: float, wall_start: float, start: float = SIM_START) -> None:
        self.speed, self.wall_start, self.start = speed, wall_start, start

    def now(self) -> float:
        return self.start + (time.time() - self.wall_start) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def run(self, work: list[Awaitable[None]]) -> None:
        await asyncio.gather(*work)


Clock = VirtualClock | ScaledClock


class SandboxBearer(httpx.Auth):
    """A token from the sandbox's own OAuth flow, fetched again when it expires. Token custody has its own tests;
    here only the division budget is measured, and token requests do not count against it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    async def mint(self, http: httpx.AsyncClient) -> None:
        form = {"client_id": "bench", "redirect_uri": "http://bench.test/cb", "state": "s", "decision": "approve"}
        consent = await http.post(f"{self.base}/api/oauth2/auth", data=form, auth=None)
        code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
        exchange = {**form, "grant_type": "authorization_code", "code": code, "client_secret": "bench"}
        self.token = (await http.post(f"{self.base}/api/oauth2/token", data=exchange, auth=None)).json()["access_token"]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@dataclass
class Run:
    orders: int
    customers: int
    deferrals: int = 0
    retries: int = 0


async def book(client: ExactClient, clock: Clock, run: Run, number: int, known: dict[str, str]) -> None:
    """One order, as the booking job does it, retried the way the job is (defer on refusal, later on 5xx)."""
    email = f"klant{number % run.customers}@example.nl"
    reference = f"B{number:05d}"
    gl = stable_id(DIVISION, "gl", "8000")
    while True:
        try:
            if email not in known:
                account = await client.find_account_by_email(email)
                if account is None:
                    created = await client.post("crm/Accounts", {"Name": email, "Email": email, "Status": "C"})
                    known[email] = str(created["ID"])
                else:
                    known[email] = account.id
            found = await client.get_all(
                "salesentry/SalesEntries", select=["EntryID"], filter=f"YourRef eq {odata_quote(reference)}", top=1
            )
            if not found:
                lines = [{"GLAccount": gl, "AmountFC": "82.64", "VATCode": "2", "VATAmountFC": "17.36"}]
                body = {"Journal": "70", "Customer": known[email], "YourRef": reference, "SalesEntryLines": lines}
                await client.post("salesentry/SalesEntries", body)
            return
        except RateLimitedError as e:
            run.deferrals += 1
            reset = e.reset_at.timestamp() if e.reset_at else clock.now() + 60
            await clock.sleep(reset - clock.now())
        except TransientApiError:
            run.retries += 1
            await clock.sleep(5)
        except AuthError:
            assert isinstance(client.auth, SandboxBearer)
            await client.auth.mint(client.http)  # the 10-minute token ran out (simulated time)


async def run_orders(
    args: argparse.Namespace, http: httpx.AsyncClient, base: str, clock: Clock, redis_url: str
) -> tuple[Run, float, float]:
    redis = await create_arq_pool(redis_url)
    run = Run(orders=args.orders, customers=args.customers)
    try:
        governor = RateGovernor(
            redis,
            minutely_limit=args.minutely,
            daily_limit=args.daily,
            margin=args.margin,
            clock=clock,
            prefix=f"bench:{os.getpid()}:{time.time_ns()}",
        )
        auth = SandboxBearer(base)
        await auth.mint(http)
        client = ExactClient(http, host=base, division=DIVISION, auth=auth, governor=governor)
        queue = list(range(args.orders))
        known: dict[str, str] = {}

        async def worker() -> None:
            while queue:
                await book(client, clock, run, queue.pop(0), known)

        started = clock.now()
        await clock.run([worker() for _ in range(args.workers)])
        return run, started, clock.now()
    finally:
        await redis.aclose()


def max_in_window(times: list[float], window: float = 60.0) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


def summarise(state: dict[str, Any], run: Run, started: float, finished: float) -> dict[str, Any]:
    calls = [c for c in state["calls"] if c["division"] == DIVISION]
    counted = [c["at"] for c in calls if c["status"] != 429]
    booked = Counter(e["YourRef"] for e in state["divisions"][str(DIVISION)]["SalesEntries"])
    per_minute = Counter(int((t - started) // 60) for t in counted)
    whole = [per_minute[m] for m in range(1, int((finished - started) // 60))]  # whole minutes after the first
    return {
        "orders": run.orders,
        "booked_once": sum(1 for n in booked.values() if n == 1),
        "duplicates": sum(n - 1 for n in booked.values() if n > 1),
        "calls": len(counted),
        "calls_per_order": len(counted) / run.orders,
        "throttled_429": sum(1 for c in calls if c["status"] == 429),
        "throttled_429_after_first_minute": sum(1 for c in calls if c["status"] == 429 and c["at"] >= started + 60),
        "sim_minutes": (finished - started) / 60,
        "steady_calls_per_minute": sum(whole) / len(whole) if whole else 0.0,
        "slowest_minute": min(whole, default=0),
        "max_in_any_60s": max_in_window(counted),
        "deferrals": run.deferrals,
        "retries": run.retries,
    }


def report(result: dict[str, Any], args: argparse.Namespace, wall: float) -> bool:
    limit = args.minutely
    share = result["steady_calls_per_minute"] / limit * 100
    ok = share >= 95 and result["throttled_429_after_first_minute"] == 0 and result["duplicates"] == 0
    ok = ok and result["booked_once"] == result["orders"] and result["max_in_any_60s"] <= limit
    clock = "discrete-event time, sandbox in-process" if args.clock == "virtual" else f"time x{args.speed:g}, HTTP"
    lines = [
        f"governor benchmark: {result['orders']} orders for one administration ({args.customers} customers), "
        f"limits {limit}/min and {args.daily}/day, {args.workers} workers, {clock}",
        f"  booked once: {result['booked_once']}/{result['orders']}, duplicates: {result['duplicates']}",
        f"  calls to Exact: {result['calls']} = {result['calls_per_order']:.2f} per order",
        f"  simulated time: {result['sim_minutes']:.1f} min; wall time {wall:.1f} s",
        f"  calls per minute: {result['steady_calls_per_minute']:.1f} on average over the whole minutes after the "
        f"first = {share:.1f} % of the limit (target >= 95 %); slowest minute {result['slowest_minute']}",
        f"  most calls in any 60 s (as the sandbox saw them arrive): {result['max_in_any_60s']} (limit {limit})",
        f"  429 answers: {result['throttled_429']}, after the first minute: "
        f"{result['throttled_429_after_first_minute']} (target 0)",
        f"  jobs deferred by the governor: {result['deferrals']}, retried after 5xx: {result['retries']}",
        f"  {'PASS' if ok else 'FAIL'}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return ok


async def in_process(args: argparse.Namespace, redis_url: str) -> tuple[dict[str, Any], Run, float, float]:
    clock = VirtualClock()
    app = create_exact_sandbox(minutely_limit=args.minutely, daily_limit=args.daily, clock=clock.now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        run, started, finished = await run_orders(args, http, IN_PROCESS, clock, redis_url)
    return app.state.sandbox.state_json(), run, started, finished


def over_http(args: argparse.Namespace, redis_url: str) -> tuple[dict[str, Any], Run, float, float]:
    wall_start = time.time()
    clock = ScaledClock(args.speed, wall_start)
    port = free_port()
    options = ["--speed", str(args.speed), "--minutely", str(args.minutely), "--daily", str(args.daily)]
    command = [sys.executable, "-m", "bench.governor", "--serve-sandbox", str(port), "--wall-start", str(wall_start)]
    child = subprocess.Popen([*command, *options])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)

        async def go() -> tuple[Run, float, float]:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as http:
                return await run_orders(args, http, base, clock, redis_url)

        run, started, finished = asyncio.run(go())
        return httpx.get(f"{base}/_sandbox/state", timeout=60).json(), run, started, finished
    finally:
        child.terminate()
        child.wait(timeout=10)


def wait_until_up(base: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/_sandbox/state", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("the sandbox Exact did not start")


def serve_sandbox(args: argparse.Namespace) -> None:
    """The child process of `--clock scaled`: the sandbox Exact on loopback, on the shared scaled clock."""
    clock = ScaledClock(args.speed, args.wall_start)
    app = create_exact_sandbox(minutely_limit=args.minutely, daily_limit=args.daily, clock=clock.now)
    uvicorn.run(app, host="127.0.0.1", port=args.serve_sandbox, log_level="warning", access_log=False)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench governor", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--clock", choices=("virtual", "scaled"), default="virtual")
    parser.add_argument("--speed", type=float, default=30.0, help="scaled clock: simulated seconds per wall second")
    parser.add_argument("--minutely", type=int, default=60)
    parser.add_argument("--daily", type=int, default=5000)
    parser.add_argument("--margin", type=float, default=1.0, help="seconds added to the governor's window")
    parser.add_argument("--serve-sandbox", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--wall-start", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.serve_sandbox:
        serve_sandbox(args)
        return 0
    private = None if os.environ.get("REDIS_URL") else start_private_redis()
    redis_url = os.environ.get("REDIS_URL") or private.url  # type: ignore[union-attr]
    wall = time.perf_counter()
    try:
        if args.clock == "virtual":
            state, run, started, finished = asyncio.run(in_process(args, redis_url))
        else:
            state, run, started, finished = over_http(args, redis_url)
    finally:
        if private is not None:
            private.stop()
    return 0 if report(summarise(state, run, started, finished), args, time.perf_counter() - wall) else 1


if __name__ == "__main__":
    raise SystemExit(main())
