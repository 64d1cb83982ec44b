"""Poller capacity and timeliness: --shops idle Pro shops, polled by real worker processes against the sandbox shop.

The sandbox Mijnwebwinkel (gateway/sandbox) runs in a subprocess on loopback with --shops shops and answers every API
call after --latency seconds (80 ms); it records when each shop was polled. Everything on the gateway side is real:
PostgreSQL (or SQLite), a private Redis, and `gateway worker` processes (run_workers: both queues, every cron), each
counting its database statements. Three phases, one run:

1. capacity with 1 worker, then with 2: every shop is due again a second after its poll (POLL_INTERVAL_SECONDS=1),
   so the workers never run dry; shops polled per minute over --capacity-seconds, and the ratio 2 : 1 (the
   scheduler claims every 10 s, so a capacity above --shops per 10 s cannot show: keep --shops above that);
2. timeliness with --workers workers at the real 60 s interval, the shops' first polls spread over a minute: over
   --seconds, the longest gap between two polls of one shop (target <= 70 s) and how many shops went over it.

Per poll: database statements and transactions, and Redis round trips, counted inside the worker processes (so the
scheduler, the poll jobs, arq's own queue polling and the other crons are all in), and Redis commands from the
server's INFO.

    python -m bench poller [--shops 2000] [--workers 2] [--seconds 120] [--capacity-seconds 30] [--latency 0.08]
                           [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from bench.booking import database, listening
from bench.poller_processes import TOKEN
from gateway import tables
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.local_redis import free_port, start_private_redis
from gateway.queue import create_arq_pool
from gateway.sandbox.mww_seed import SANDBOX_PARTNER_TOKEN
from gateway.store import credentials

GAP_TARGET = 70.0
RATIO_TARGET = 1.7
INTERVAL = 60


# --- the measuring side --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    workers: int
    seconds: float
    polls_in_window: int
    polls: int
    statements: int
    transactions: int
    redis_commands: int
    round_trips: int
    cpu_ms: int  # the worker processes' CPU time, start-up included
    gaps: list[float]  # per shop: the longest wait between two of its polls (or its last one and the end)
    unpolled: int
    overlaps: int  # polls of a shop that started while its previous one was still running

    @property
    def per_minute(self) -> float:
        return self.polls_in_window / self.seconds * 60

    def per_poll(self, count: int) -> float:
        return count / max(self.polls, 1)


@dataclass
class Bed:
    args: argparse.Namespace
    env: dict[str, str]
    engine: AsyncEngine
    shop_url: str
    redis_url: str
    workdir: Path


async def seed(engine: AsyncEngine, cipher: Cipher, shops: int) -> None:
    """`shops` active, connected Pro integrations with an encrypted shop token each, inserted in bulk."""
    now = utcnow()
    async with engine.begin() as conn:
        account = await conn.execute(
            tables.account.insert()
            .values(email="poller@bench.test", password_hash="!", created_at=now)  # noqa: S106
            .returning(tables.account.c.id)
        )
        account_id = int(account.scalar_one())
        for start in range(0, shops, 1000):
            numbers = range(start, min(shops, start + 1000))
            rows = [
                {"account_id": account_id, "name": TOKEN.format(n), "state": "active", "service_level": "pro"}
                | {"shop_connection": "connected", "settings": {}, "created_at": now, "updated_at": now}
                for n in numbers
            ]
            ids = (await conn.execute(tables.integration.insert().returning(tables.integration.c.id), rows)).scalars()
            secrets_ = [
                {"integration_id": i, "kind": credentials.SHOP_TOKEN, "secret": cipher.encrypt(TOKEN.format(n))}
                | {"version": 1, "created_at": now, "updated_at": now}
                for i, n in zip(ids.all(), numbers, strict=True)
            ]
            await conn.execute(tables.credential.insert(), secrets_)


async def spread_due_times(engine: AsyncEngine, over: float) -> None:
    """Every shop due within the next `over` seconds, evenly spread (0: all due now)."""
    now = utcnow()
    c = tables.integration.c
    async with engine.begin() as conn:
        ids = (await conn.execute(select(c.id).order_by(c.id))).scalars().all()
        rows = [{"key": i, "due": now + timedelta(seconds=over * n / len(ids))} for n, i in enumerate(ids)]
        await conn.execute(
            update(tables.integration).where(c.id == bindparam("key")).values(next_poll_at=bindparam("due")), rows
        )


async def redis_commands(url: str) -> int:
    pool = await create_arq_pool(url)
    try:
        return int((await pool.info("stats"))["total_commands_processed"])
    finally:
        await pool.aclose()


async def flush_redis(url: str) -> None:
    pool = await create_arq_pool(url)
    try:
        await pool.flushdb()
    finally:
        await pool.aclose()


@contextlib.contextmanager
def workers(bed: Bed, count: int, interval: int) -> Iterator[list[Path]]:
    """`count` worker processes; on exit SIGTERM (they finish running jobs) and wait. Yields their stats files."""
    env = {**bed.env, "POLL_INTERVAL_SECONDS": str(interval)}
    stats = [bed.workdir / f"worker-{secrets.token_hex(3)}.json" for _ in range(count)]
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.poller_processes", "work", str(path)], env=env, cwd=Path.cwd())
        for path in stats
    ]
    try:
        yield stats
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def recorded_polls(bed: Bed, *, reset: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await (http.post if reset else http.get)(f"{bed.shop_url}/_bench/polls")
    return dict(response.json())


async def phase(bed: Bed, *, count: int, interval: int, warmup: float, seconds: float) -> Phase:
    """Run `count` workers for warmup + seconds; the figures count polls from the sandbox's records."""
    await spread_due_times(bed.engine, 0 if interval < INTERVAL else interval)
    await flush_redis(bed.redis_url)
    await recorded_polls(bed, reset=True)
    commands = await redis_commands(bed.redis_url)
    with workers(bed, count, interval) as stats:
        await asyncio.sleep(warmup)
        start = time.time()
        await asyncio.sleep(seconds)
        end = time.time()
    commands = await redis_commands(bed.redis_url) - commands
    record = await recorded_polls(bed)
    counts = [json.loads(path.read_text()) for path in stats if path.exists()]
    return tally(record, count, start, end, counts, commands, bed.args.shops, bed.args.latency)


def tally(
    record: dict[str, Any],
    count: int,
    start: float,
    end: float,
    counts: list[dict[str, int]],
    commands: int,
    shops: int,
    latency: float,
) -> Phase:
    gaps, in_window, overlaps = [], 0, 0
    for times in record["polls"].values():
        ordered = sorted(times)
        # A request takes `latency` at least: a shop's next one starting sooner means two polls at once.
        overlaps += sum(1 for a, b in zip(ordered, ordered[1:], strict=False) if b - a < latency)
        inside = [t for t in ordered if start <= t <= end]
        in_window += len(inside)
        edges = [*inside, end]  # the wait after the last poll counts too: a shop never polled again is late
        gaps.append(max(b - a for a, b in zip(edges, edges[1:], strict=False)) if inside else end - start)
    unpolled = shops - len(record["polls"])
    gaps += [end - start] * unpolled
    return Phase(
        workers=count,
        seconds=end - start,
        polls_in_window=in_window,
        polls=int(record["total"]),
        statements=sum(c["statements"] for c in counts),
        transactions=sum(c["transactions"] for c in counts),
        redis_commands=commands,
        round_trips=sum(c["round_trips"] for c in counts),
        cpu_ms=sum(c["cpu_ms"] for c in counts),
        gaps=gaps,
        unpolled=unpolled,
        overlaps=overlaps,
    )


@contextlib.contextmanager
def served(args: argparse.Namespace) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.poller_processes", "serve", "--port", str(port), "--shops", str(args.shops)]
    process = subprocess.Popen([*command, "--latency", str(args.latency)])
    try:
        deadline = time.monotonic() + 60
        while not listening(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the sandbox shop did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def run(args: argparse.Namespace) -> tuple[Phase, Phase, Phase]:
    redis = start_private_redis()
    key = Fernet.generate_key().decode()
    try:
        async with database(args.database) as url, contextlib.AsyncExitStack() as stack:
            shop_url = stack.enter_context(served(args))
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-poller-")))
            engine = create_engine(url)
            stack.push_async_callback(engine.dispose)
            await seed(engine, Cipher((Secret(key),)), args.shops)
            env = {**os.environ, "GATEWAY_ENV": "test", "DATABASE_URL": url, "REDIS_URL": redis.url}
            env |= {"SECRET_KEY": secrets.token_urlsafe(32), "ENCRYPTION_KEYS": key, "LOG_LEVEL": "WARNING"}
            env |= {"MWW_BASE_URL": f"{shop_url}/v1", "MWW_PARTNER_TOKEN": SANDBOX_PARTNER_TOKEN}
            bed = Bed(args, env, engine, shop_url, redis.url, workdir)
            capacity = args.capacity_seconds
            one = await phase(bed, count=1, interval=1, warmup=10, seconds=capacity)
            two = await phase(bed, count=2, interval=1, warmup=10, seconds=capacity)
            timely = await phase(bed, count=args.workers, interval=INTERVAL, warmup=0, seconds=args.seconds)
            return one, two, timely
    finally:
        redis.stop()


def report(args: argparse.Namespace, one: Phase, two: Phase, timely: Phase) -> bool:
    late = sum(1 for gap in timely.gaps if gap > GAP_TARGET)
    worst = max(timely.gaps)
    ratio = two.per_minute / max(one.per_minute, 1)
    print(f"{args.shops} idle Pro shops, sandbox shop {args.latency * 1000:.0f} ms per call, {args.database}")
    for p in (one, two):
        print(
            f"  capacity, {p.workers} worker(s): {p.per_minute:8.0f} shops polled/min   per poll: "
            f"{p.per_poll(p.statements):.1f} DB statements, {p.per_poll(p.transactions):.1f} transactions, "
            f"{p.per_poll(p.round_trips):.1f} Redis round trips ({p.per_poll(p.redis_commands):.1f} commands), "
            f"{p.per_poll(p.cpu_ms):.1f} ms worker CPU"
        )
    print(f"  2 workers : 1 worker = {ratio:.2f}   (target >= {RATIO_TARGET})")
    print(
        f"  every {INTERVAL} s with {timely.workers} worker(s) for {timely.seconds:.0f} s: "
        f"{timely.per_minute:.0f} shops polled/min; longest gap between two polls of one shop {worst:.1f} s "
        f"(most-late shop {worst - INTERVAL:+.1f} s past its minute; target <= {GAP_TARGET:.0f} s); "
        f"{late} shops over {GAP_TARGET:.0f} s, {timely.unpolled} never polled; "
        f"shops polled twice at once in all phases: {one.overlaps + two.overlaps + timely.overlaps}"
    )
    print(
        f"  per poll at {INTERVAL} s: {timely.per_poll(timely.statements):.1f} DB statements, "
        f"{timely.per_poll(timely.transactions):.1f} transactions, {timely.per_poll(timely.round_trips):.1f} Redis "
        f"round trips ({timely.per_poll(timely.redis_commands):.1f} commands), {timely.per_poll(timely.cpu_ms):.1f} ms "
        "worker CPU"
    )
    return late == 0 and ratio >= RATIO_TARGET and one.overlaps + two.overlaps + timely.overlaps == 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench poller", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the 60 s timeliness phase")
    parser.add_argument("--seconds", type=float, default=120, help="length of the timeliness phase")
    parser.add_argument("--capacity-seconds", type=float, default=30, help="measured length of each capacity phase")
    parser.add_argument("--latency", type=float, default=0.08, help="seconds the sandbox shop takes per call")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args(argv)
    return 0 if report(args, *asyncio.run(run(args))) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
