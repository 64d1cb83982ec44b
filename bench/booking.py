"""Booking throughput and Exact calls per order: one arq worker books --orders orders of one shop into one
administration of the sandbox Exact Online.

The sandbox Exact Online (gateway/sandbox/exact.py) runs in a subprocess on loopback and answers every division call
after --latency seconds (20 ms), with its rate limits out of the way; a minimal shop in the same subprocess serves
generated orders (a pool of repeat customers, a few articles) after --shop-latency. Everything on the gateway side
is real: the database, Redis, the arq worker with its production settings, Exact token custody, the rate governor
(limits raised so it never waits) and the booking job. The first --warmup orders warm the caches (customer accounts,
G/L accounts: misses are paid once per administration); then --orders orders are queued and one worker process
drains the queue. Afterwards every order is checked to be booked exactly once.

`--mix` chooses the customers: `repeat` (the pool above), `b2c` (--new-share of the orders, 70 % by default, come from
a consumer never seen before, the rest from the pool) or `collective` (consumers booked on one collective account).
Calls per order are reported against the floor: a new customer costs a look-up, a creation and the document (3), a
known customer or the collective account the document alone (1).

    python -m bench booking [--orders 1000] [--warmup 50] [--customers 40] [--latency 0.02] [--shop-latency 0.002]
                            [--database sqlite|postgres] [--insertion-type sales_entry]
                            [--mix repeat|b2c|collective] [--new-share 0.7]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.datastructures import Secret

from gateway import migrations, tables
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.exact_auth import store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.jobs.worker import create_worker
from gateway.local_redis import free_port, start_private_redis
from gateway.queue import create_arq_pool, enqueue_sync
from gateway.settings import EXACT_COUNTRIES, Settings
from gateway.store import credentials, notices
from gateway.store.integrations import (
    IntegrationSettings,
    create_integration,
    save_vat_mapping,
    update_integration,
)

DIVISION = 123456  # a seeded sandbox administration
FLOOR_MARGIN = 0.05  # calls per order may exceed the floor by this much
RATE_TARGET = 50.0
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SHOP_TOKEN = "bench-shop-token-0001"  # noqa: S105 - a loopback benchmark value
CLIENT_ID, REDIRECT = "bench-gateway", "http://127.0.0.1/exact/callback"
UNLIMITED = 1_000_000_000


# --- the served side (subprocess: `python -m bench.booking serve ...`) ---------------------------------------------


def _line(n: int, type_: str, description: str, quantity: int, incl: str, rate: int, sku: str = "") -> dict[str, Any]:
    amount = (Decimal(incl) / (1 + Decimal(rate) / 100)).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    line = {
        "id": f"line-{n}",
        "type": type_,
        "quantity": quantity,
        "description": description,
        "price": {"amount": str(amount), "amount_including_tax": incl, "rate": f"{rate}.00"},
    }
    if sku:
        line["articles"] = [{"id": n, "sku": sku, "description": description}]
    return line


def is_new_customer(number: int, new_share: float, first: int) -> bool:
    """Whether order `number` comes from a consumer never seen before: from order `first` on (the warm-up meets the
    whole pool), `new_share` of every 100 consecutive orders."""
    return number >= first and (number * 37) % 100 < round(new_share * 100)


def bench_order(number: int, customers: int, new_share: float = 0.0, first_new: int = 0) -> dict[str, Any]:
    """A domestic order with two VAT rates and shipping; customer `number % customers` (repeat customers), or a new
    consumer of its own for `new_share` of the orders."""
    lines = [
        _line(1, "article", "T-shirt", 2, "50.00", 21, "TSHIRT-001"),
        _line(2, "article", "Kookboek", 1, "12.50", 9, "BOEK-042"),
        _line(3, "shipping", "Verzendkosten", 1, "5.95", 21),
    ]
    tax: dict[int, list[Decimal]] = {}
    for line in lines:
        price, rate = line["price"], int(Decimal(line["price"]["rate"]))
        incl, excl = tax.setdefault(rate, [Decimal(0), Decimal(0)])
        tax[rate] = [incl + Decimal(price["amount_including_tax"]), excl + Decimal(price["amount"])]
    customer: int | str = number % customers
    if is_new_customer(number, new_share, first_new):
        customer = f"-nieuw-{number}"
    return {
        "number": str(number),
        "date": "2026-11-20",
        "status": 2,
        "currency": "EUR",
        "business_model": "B2C",
        "tax_region": "NL",
        "debtor": {
            "email": f"klant{customer}@bench.test",
            "address": {
                "invoice": {
                    "name": f"Klant {customer}",
                    "street": "Dorpsstraat",
                    "number": "1",
                    "zipcode": "1234 AB",
                    "city": "Utrecht",
                    "country_code": "NL",
                }
            },
        },
        "price": {
            "tax": [
                {"rate": f"{r}.00", "amount": f"{i - e.quantize(Decimal('0.01'), ROUND_HALF_UP):.2f}"}
                for r, (i, e) in tax.items()
            ],
            "total": f"{sum(i for i, _ in tax.values()):.2f}",
        },
        "orderlines": lines,
        "shipping": [{"country": {"isocode": "NL"}}],
    }


def serve(argv: list[str]) -> int:
    """Serve the sandbox Exact Online and the bench shop until killed."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from gateway.sandbox.exact import create_exact_sandbox

    parser = argparse.ArgumentParser(prog="bench.booking serve")
    for name in ("--exact-port", "--shop-port", "--customers"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--latency", type=float, required=True)
    parser.add_argument("--shop-latency", type=float, required=True)
    parser.add_argument("--new-share", type=float, default=0.0)
    parser.add_argument("--first-new", type=int, default=0)
    args = parser.parse_args(argv)
    exact = create_exact_sandbox(latency=args.latency, minutely_limit=UNLIMITED, daily_limit=UNLIMITED)

    async def order(request: Request) -> Response:
        await asyncio.sleep(args.shop_latency)
        return JSONResponse(
            bench_order(int(request.path_params["number"]), args.customers, args.new_share, args.first_new)
        )

    shop = Starlette(routes=[Route("/v1/orders/{number:int}", order)])
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        for app, port in ((exact, args.exact_port), (shop, args.shop_port))
    ]

    async def both() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(both())
    return 0


# --- the gateway side --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    orders: int
    seconds: float
    exact_calls: int
    sandbox_calls: int
    duplicates: int
    not_booked: int
    floor: int  # the fewest calls these orders can cost (3 per new customer, 1 per other order)

    @property
    def orders_per_second(self) -> float:
        return self.orders / self.seconds

    @property
    def calls_per_order(self) -> float:
        return self.exact_calls / self.orders

    @property
    def over_floor(self) -> float:
        """How far above the floor the calls are, as a fraction (0.05 = 5 %)."""
        return self.exact_calls / self.floor - 1


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one run; dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-booking-") as directory:
            url = f"sqlite+aiosqlite:///{directory}/gateway.db"
            await asyncio.to_thread(migrations.upgrade, url)
            yield url
        return
    name = f"bench_booking_{secrets.token_hex(4)}"
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def served(args: argparse.Namespace) -> Any:
    exact_port, shop_port = free_port(), free_port()
    command = [sys.executable, "-m", "bench.booking", "serve", "--exact-port", str(exact_port)]
    command += ["--shop-port", str(shop_port), "--customers", str(args.customers)]
    command += ["--latency", str(args.latency), "--shop-latency", str(args.shop_latency)]
    command += ["--new-share", str(new_share(args)), "--first-new", str(args.warmup + 1)]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 30
        while not (listening(exact_port) and listening(shop_port)):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the sandboxes did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{exact_port}", f"http://127.0.0.1:{shop_port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def consent(exact_url: str) -> ExactTokens:
    """The authorization-code flow against the sandbox, as the customer's browser and the callback would do it."""
    async with httpx.AsyncClient(base_url=exact_url) as http:
        form = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "state": "bench", "decision": "approve"}
        redirect = await http.post("/api/oauth2/auth", data=form)
        code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
        grant = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": CLIENT_ID}
        body = (await http.post("/api/oauth2/token", data=grant)).json()
    return ExactTokens(body["access_token"], body["refresh_token"], int(body["expires_in"]), utcnow())


def new_share(args: argparse.Namespace) -> float:
    return args.new_share if args.mix == "b2c" else 0.0


async def set_up(engine: AsyncEngine, settings: Settings, tokens: ExactTokens, insertion_type: str, mix: str) -> int:
    cipher = Cipher(settings.encryption_keys)
    booking = IntegrationSettings(
        selected_statuses=(2,),
        insertion_type=insertion_type,
        journal_code="70",
        shipping_item="VERZEND",
        shipping_gl_account="8050",
        create_items=True,
        b2c_collective=mix == "collective",
        b2c_collective_account="1" if mix == "collective" else "",  # a seeded sandbox account
    )
    vat = {"NL-21": ("2", "8000"), "NL-9": ("1", "8010")}
    return await create_bench_integration(engine, cipher, tokens, booking=booking, vat=vat, email="bench@bench.test")


async def create_bench_integration(
    engine: AsyncEngine,
    cipher: Cipher,
    tokens: ExactTokens,
    *,
    booking: IntegrationSettings,
    vat: dict[str, tuple[str, str]],
    email: str,
    division: int = DIVISION,
    shop_token: str = SHOP_TOKEN,
) -> int:
    """An active integration of a new account, both sides connected, with `vat` as category -> (code, G/L)."""
    async with engine.begin() as conn:
        account = await conn.execute(
            tables.account.insert().values(email=email, password_hash="!", created_at=utcnow())  # noqa: S106
        )
        integration = await create_integration(conn, account_id=int(account.inserted_primary_key[0]), name="Bench")
        await update_integration(
            conn,
            integration_id=integration.id,
            state="active",
            shop_country="NL",
            shop_connection="connected",
            exact_country="nl",
            exact_division=division,
            exact_connection="connected",
            settings=booking,
        )
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=shop_token, cipher=cipher
        )
        await store_tokens(conn, integration_id=integration.id, tokens=tokens, cipher=cipher)
        for category, (code, gl) in vat.items():
            await save_vat_mapping(conn, integration_id=integration.id, category=category, vat_code=code, gl_account=gl)
    return integration.id


async def queue_orders(engine: AsyncEngine, pool: Any, integration_id: int, numbers: range) -> None:
    for number in numbers:
        async with engine.begin() as conn:
            outcome = await notices.record_notice(
                conn,
                integration_id=integration_id,
                order_number=str(number),
                status_id=2,
                source="poller",
                dedupe_key=f"{number}:2",
                selected_statuses=(2,),
            )
        await enqueue_sync(pool, integration_id=integration_id, order_sync_id=outcome.order_sync_id or 0)


async def drain(settings: Settings, pool: Any, engine: AsyncEngine) -> float:
    """Run one worker (production settings, burst) until the queue is empty; return the seconds it took."""
    worker = create_worker(
        settings, redis_pool=pool, burst=True, with_cron=False, handle_signals=False, ctx={"engine": engine}
    )
    started = time.perf_counter()
    await worker.run_check()
    return time.perf_counter() - started


async def sandbox_calls(exact_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=exact_url, timeout=60) as http:
        return list((await http.get("/_sandbox/state")).json()["calls"])


async def run(args: argparse.Namespace) -> Figures:
    redis = start_private_redis()
    try:
        async with database(args.database) as url, contextlib.AsyncExitStack() as stack:
            exact_url, shop_url = stack.enter_context(served(args))
            settings = Settings(
                env="test",
                database_url=url,
                redis_url=redis.url,
                secret_key=Secret(secrets.token_urlsafe(32)),
                encryption_keys=(Secret(Fernet.generate_key().decode()),),
                mww_base_url=shop_url,
                mww_partner_token=Secret("bench-partner"),
                exact_hosts=dict.fromkeys(EXACT_COUNTRIES, exact_url),
                exact_client_id=CLIENT_ID,
                exact_minutely_limit=UNLIMITED,
                exact_daily_limit=UNLIMITED,
                log_level="WARNING",
            )
            engine = create_engine(url)
            stack.push_async_callback(engine.dispose)
            pool = await create_arq_pool(settings.redis_url)
            stack.push_async_callback(pool.aclose)
            integration_id = await set_up(engine, settings, await consent(exact_url), args.insertion_type, args.mix)
            await queue_orders(engine, pool, integration_id, range(1, args.warmup + 1))
            await drain(settings, pool, engine)
            before = len(await sandbox_calls(exact_url))
            measured = range(args.warmup + 1, args.warmup + args.orders + 1)
            await queue_orders(engine, pool, integration_id, measured)
            seconds = await drain(settings, pool, engine)
            calls = (await sandbox_calls(exact_url))[before:]
            floor = sum(3 if is_new_customer(n, new_share(args), args.warmup + 1) else 1 for n in measured)
            return await tally(engine, exact_url, measured, seconds, len(calls), floor)
    finally:
        redis.stop()


async def tally(
    engine: AsyncEngine, exact_url: str, measured: range, seconds: float, sandbox_calls: int, floor: int
) -> Figures:
    numbers = [str(n) for n in measured]
    c = tables.order_sync.c
    async with engine.connect() as conn:
        booked = await conn.execute(select(func.count()).where(c.state == "booked", c.order_number.in_(numbers)))
        ids = select(c.id).where(c.order_number.in_(numbers))
        calls = await conn.execute(
            select(func.coalesce(func.sum(tables.sync_attempt.c.exact_calls), 0)).where(
                tables.sync_attempt.c.order_sync_id.in_(ids)
            )
        )
        booked_count, exact_calls = int(booked.scalar_one()), int(calls.scalar_one())
    async with httpx.AsyncClient(base_url=exact_url, timeout=60) as http:
        state = (await http.get("/_sandbox/state")).json()
    refs = Counter(
        str(e["YourRef"])
        for name in ("SalesEntries", "SalesInvoices", "SalesOrders")
        for e in state["divisions"][str(DIVISION)][name]
    )
    return Figures(
        orders=len(numbers),
        seconds=seconds,
        exact_calls=exact_calls,
        sandbox_calls=sandbox_calls,
        duplicates=sum(1 for n in numbers if refs[n] > 1),
        not_booked=len(numbers) - booked_count,
        floor=floor,
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench booking", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the sandbox Exact takes per call")
    parser.add_argument("--shop-latency", type=float, default=0.002, help="seconds the shop takes per order read")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--insertion-type", default="sales_entry", choices=("sales_entry", "sales_invoice", "sales_order")
    )
    parser.add_argument("--mix", choices=("repeat", "b2c", "collective"), default="repeat")
    parser.add_argument("--new-share", type=float, default=0.7, help="b2c: the share of orders from new consumers")
    args = parser.parse_args(argv)
    if args.warmup < args.customers:
        parser.error("--warmup must be at least --customers, so every customer's account exists before measuring")
    figures = asyncio.run(run(args))
    print(
        f"booked {figures.orders} orders ({args.insertion_type}, {args.database}, Exact {args.latency * 1000:.0f} ms, "
        f"shop {args.shop_latency * 1000:.0f} ms) with one worker in {figures.seconds:.1f} s\n"
        f"  orders/s per worker  {figures.orders_per_second:7.1f}   (target >= {RATE_TARGET:.0f})\n"
        f"  customers            {args.mix}" + (f" ({new_share(args):.0%} new)" if args.mix == "b2c" else "") + "\n"
        f"  Exact calls / order  {figures.calls_per_order:7.3f}   (floor {figures.floor / figures.orders:.3f}, "
        f"{figures.over_floor:+.1%} over it, target <= +{FLOOR_MARGIN:.0%}; sandbox counted "
        f"{figures.sandbox_calls / figures.orders:.3f})\n"
        f"  not booked {figures.not_booked}   booked twice {figures.duplicates}"
    )
    ok = figures.not_booked == 0 and figures.duplicates == 0 and figures.over_floor <= FLOOR_MARGIN
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
