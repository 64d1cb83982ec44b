"""One big order of new items: a 500-line order whose SKUs Exact does not know yet, booked by the real booking job
(database, Redis, token custody, rate governor at Exact's real 60 calls a minute) into the sandbox Exact Online.

The governor's clock runs --speed times the wall clock (the sandbox keeps real time and no limit of its own), so the
eight-odd simulated minutes that 500 new items need at 60 calls a minute take seconds. Each try of the job is timed
on that clock: none may come near the worker's 120 s job timeout. Exact calls are counted by the sandbox and checked
against the bound (new items + 3: the customer's look-up and creation, and the invoice).

    python -m bench big_order [--lines 500] [--distinct 500] [--speed 30] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from arq import Retry
from cryptography.fernet import Fernet
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.booking import create_bench_integration, database
from bench.governor import ScaledClock
from gateway.clients.exact import ExactClient
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.exact_oauth import ExactTokens
from gateway.jobs.sync_order import BookingServices, book_order, services_from_context
from gateway.jobs.worker import JOB_TIMEOUT
from gateway.local_redis import start_private_redis
from gateway.ratelimit import RateGovernor
from gateway.sandbox.exact import create_exact_sandbox
from gateway.settings import EXACT_COUNTRIES, Settings
from gateway.store import notices
from gateway.store.integrations import IntegrationSettings

DIVISION = 123456
EXACT_URL, SHOP_URL = "http://exact.bench.local", "http://shop.bench.local/v1"
SHOP_TOKEN = "bench-shop-token-0002"  # noqa: S105 - an in-process benchmark value
CLIENT_ID, REDIRECT = "bench-gateway", "http://127.0.0.1/exact/callback"
BOOKING = IntegrationSettings(
    selected_statuses=(2,), insertion_type="sales_invoice", journal_code="70", create_items=True
)


def big_order(number: str, lines: int, distinct: int, email: str) -> dict[str, Any]:
    """`lines` article lines at 21 % over `distinct` SKUs nobody booked before (12.10 incl. VAT each)."""
    rows = [
        {
            "id": f"line-{n}",
            "type": "article",
            "quantity": 1,
            "description": f"Artikel {n % distinct}",
            "price": {"amount": "10.000000", "amount_including_tax": "12.10", "rate": "21.00"},
            "articles": [
                {"id": n, "sku": f"BIG-{number}-{n % distinct:04d}", "description": f"Artikel {n % distinct}"}
            ],
        }
        for n in range(lines)
    ]
    address = {"name": "Nieuwe Klant", "street": "Dorpsstraat", "number": "1", "zipcode": "1234 AB", "city": "Utrecht"}
    return {
        "number": number,
        "date": "2026-11-20",
        "status": 2,
        "currency": "EUR",
        "business_model": "B2C",
        "tax_region": "NL",
        "debtor": {"email": email, "address": {"invoice": {**address, "country_code": "NL"}}},
        "price": {
            "tax": [{"rate": "21.00", "amount": f"{Decimal('2.10') * lines:.2f}"}],
            "total": f"{Decimal('12.10') * lines:.2f}",
        },
        "orderlines": rows,
        "shipping": [{"country": {"isocode": "NL"}}],
    }


@dataclass(frozen=True)
class Figures:
    new_items: int
    calls: Counter[str]
    tries: int
    longest_try: float  # simulated seconds
    longest_try_wall: float  # wall-clock seconds (the DB and Redis work the simulated clock stretches x speed)
    simulated: float
    wall: float
    booked: bool

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def shop_app(served: dict[str, dict[str, Any]]) -> Starlette:
    async def order(request: Request) -> Response:
        return JSONResponse(served[request.path_params["number"]])

    return Starlette(routes=[Route("/v1/orders/{number}", order)])


async def consent(http: httpx.AsyncClient) -> ExactTokens:
    form = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "state": "bench", "decision": "approve"}
    redirect = await http.post(f"{EXACT_URL}/api/oauth2/auth", data=form)
    code = httpx.URL(redirect.headers["location"]).params["code"]
    grant = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": CLIENT_ID}
    body = (await http.post(f"{EXACT_URL}/api/oauth2/token", data=grant)).json()
    return ExactTokens(body["access_token"], body["refresh_token"], int(body["expires_in"]), utcnow())


async def set_up(services: BookingServices, settings: Settings, tokens: ExactTokens) -> int:
    cipher = Cipher(settings.encryption_keys)
    vat = {"NL-21": ("2", "8000")}
    return await create_bench_integration(
        services.engine,
        cipher,
        tokens,
        booking=BOOKING,
        vat=vat,
        email="big@bench.test",
        division=DIVISION,
        shop_token=SHOP_TOKEN,
    )


async def queue(services: BookingServices, integration_id: int, number: str) -> int:
    async with services.engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration_id,
            order_number=number,
            status_id=2,
            source="poller",
            dedupe_key=f"{number}:2",
            selected_statuses=(2,),
        )
    return int(outcome.order_sync_id or 0)


async def book(services: BookingServices, sync_id: int, clock: ScaledClock) -> tuple[str, list[tuple[float, float]]]:
    """Run the job as arq would, sleeping each Retry's deferral on the clock; the result and each try's length
    (simulated, wall)."""
    lengths = []
    for job_try in range(1, 200):
        started, wall = clock.now(), time.perf_counter()
        try:
            result = await book_order(services, sync_id, job_id=f"bench:{sync_id}", job_try=job_try)
        except Retry as retry:
            lengths.append((clock.now() - started, time.perf_counter() - wall))
            await clock.sleep((retry.defer_score or 1000) / 1000)
            continue
        lengths.append((clock.now() - started, time.perf_counter() - wall))
        return result, lengths
    return "not booked after 200 tries", lengths


async def run(args: argparse.Namespace) -> Figures:
    redis_server = start_private_redis()
    exact_app = create_exact_sandbox(minutely_limit=1_000_000_000, daily_limit=1_000_000_000)
    served: dict[str, dict[str, Any]] = {}
    mounts = {
        EXACT_URL: httpx.ASGITransport(app=exact_app),
        "http://shop.bench.local": httpx.ASGITransport(app=shop_app(served)),
    }
    try:
        async with database(args.database) as url, httpx.AsyncClient(mounts=mounts, timeout=60) as http:
            settings = Settings(
                env="test",
                database_url=url,
                redis_url=redis_server.url,
                secret_key=Secret(secrets.token_urlsafe(32)),
                encryption_keys=(Secret(Fernet.generate_key().decode()),),
                mww_base_url=SHOP_URL,
                mww_partner_token=Secret("bench-partner"),
                exact_hosts=dict.fromkeys(EXACT_COUNTRIES, EXACT_URL),
                exact_client_id=CLIENT_ID,
                log_level="WARNING",
            )
            from gateway.queue import create_arq_pool

            engine = create_engine(url)
            redis = await create_arq_pool(settings.redis_url)
            clock = ScaledClock(args.speed, time.time(), start=time.time())
            plain = services_from_context(
                {
                    "engine": engine,
                    "settings": settings,
                    "cipher": Cipher(settings.encryption_keys),
                    "http": http,
                    "redis": redis,
                }
            )

            async def open_exact(integration: Any) -> ExactClient:
                client = await plain.open_exact(integration)
                client.governor = RateGovernor(redis, minutely_limit=60, daily_limit=5000, clock=clock)
                return client

            services = BookingServices(engine=engine, open_exact=open_exact, open_shop=plain.open_shop, redis=redis)
            try:
                return await measure(services, settings, http, exact_app, served, clock, args)
            finally:
                await redis.aclose()
                await engine.dispose()
    finally:
        redis_server.stop()


async def measure(
    services: BookingServices,
    settings: Settings,
    http: httpx.AsyncClient,
    exact_app: Any,
    served: dict[str, dict[str, Any]],
    clock: ScaledClock,
    args: argparse.Namespace,
) -> Figures:
    integration_id = await set_up(services, settings, await consent(http))
    served["1"] = big_order("1", lines=1, distinct=1, email="eerder@bench.test")  # the shop has booked before
    result, _ = await book(services, await queue(services, integration_id, "1"), clock)
    assert result.startswith("booked"), result
    served["2"] = big_order("2", lines=args.lines, distinct=args.distinct, email="nieuw@bench.test")
    calls = exact_app.state.sandbox.calls
    before, sim_start, wall_start = len(calls), clock.now(), time.perf_counter()
    result, lengths = await book(services, await queue(services, integration_id, "2"), clock)
    made = Counter(f"{c.method} {c.path}" for c in calls[before:])
    return Figures(
        new_items=args.distinct,
        calls=made,
        tries=len(lengths),
        longest_try=max(sim for sim, _ in lengths),
        longest_try_wall=max(wall for _, wall in lengths),
        simulated=clock.now() - sim_start,
        wall=time.perf_counter() - wall_start,
        booked=result.startswith("booked"),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench big_order", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--distinct", type=int, default=500, help="distinct new SKUs among the lines")
    parser.add_argument("--speed", type=float, default=30.0, help="simulated seconds per wall second")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    bound = figures.new_items + 3
    print(
        f"one order of {args.lines} lines, {figures.new_items} new items ({args.database}, governor 60 calls/min, "
        f"clock x{args.speed:g})\n"
        f"  booked              {'yes' if figures.booked else 'NO'} in {figures.tries} tries\n"
        f"  Exact calls         {figures.total:5d}   (bound new items + 3 = {bound}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(figures.calls.items()))
        + ")\n"
        f"  longest try         {figures.longest_try:5.0f} s simulated, {figures.longest_try_wall:.1f} s wall   "
        f"(job timeout {JOB_TIMEOUT} s)\n"
        f"  whole order         {figures.simulated / 60:5.1f} min simulated, {figures.wall:.1f} s wall"
    )
    ok = figures.booked and figures.total <= bound and figures.longest_try < JOB_TIMEOUT
    return 0 if ok else 1
