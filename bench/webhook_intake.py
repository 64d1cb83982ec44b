"""Webhook intake throughput and p99 latency: the gateway's intake against a bare route, same run, same machine.

The bare route parses the JSON body and enqueues one arq job. The gateway's route does the real intake: bounded
body, webhook key lookup, HMAC signature check, notice validation, a durable insert (order event + order sync) in
one transaction, then the enqueue. Both run as single-process uvicorn servers in subprocesses on loopback, with a
private redis-server, on SQLite and on PostgreSQL. The load is a fixed number of signed notices sent over
`--concurrency` keep-alive connections by a raw asyncio HTTP/1.1 client (cheap, so the client is not what is
measured). Every notice is a distinct order, and the rows and jobs are counted afterwards.

    python -m bench webhook_intake [--requests 3000] [--concurrency 16] [--databases sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.datastructures import Secret
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from gateway import migrations, shop_connection, tables
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.local_redis import free_port, start_private_redis
from gateway.queue import create_arq_pool
from gateway.routes.webhooks import sign
from gateway.settings import Settings
from gateway.store.integrations import IntegrationSettings, create_integration, update_integration

TARGET_RATIO = 0.5
WARMUP = 200
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Figures:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    def line(self) -> str:
        return (
            f"  {self.name:<16} {self.throughput:8.0f} req/s   p50 {self.percentile(0.50):6.1f} ms   "
            f"p99 {self.percentile(0.99):6.1f} ms   server CPU {self.cpu_seconds / self.requests * 1000:.2f} ms/req   "
            f"errors {self.errors}"
        )


# --- the two servers (run in subprocesses: `python -m bench.webhook_intake serve ...`) ------------------------------


def bare_app(redis_url: str) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.arq = await create_arq_pool(redis_url)
        yield
        await app.state.arq.aclose()

    async def notice(request: Request) -> JSONResponse:
        data = await request.json()
        await request.app.state.arq.enqueue_job("bench_notice", data["order_number"])
        return JSONResponse({"accepted": True}, status_code=202)

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/notice", notice, methods=["POST"]), Route("/healthz", ready)], lifespan=lifespan)


def serve(kind: str, port: int, config: dict[str, str]) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    if kind == "bare":
        app = bare_app(config["redis_url"])
    else:
        configure_logging(level="INFO", fmt="json")  # as in production: one access line per request
        app = create_app(bench_settings(config))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, log_level="warning")


def bench_settings(config: dict[str, str]) -> Settings:
    return Settings(
        env="test",
        database_url=config["database_url"],
        redis_url=config["redis_url"],
        secret_key=Secret(config["secret_key"]),
        encryption_keys=(Secret(config["encryption_key"]),),
    )


@contextlib.contextmanager
def server(kind: str, config: dict[str, str]) -> Iterator[tuple[int, int]]:
    port = free_port()
    command = [sys.executable, "-m", "bench.webhook_intake", "serve", kind, str(port)]
    env = {**os.environ, "BENCH_INTAKE_CONFIG": json.dumps(config)}  # throwaway keys, kept out of the process list
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{kind} server did not start:\n{log.read().decode()[-2000:]}")
                time.sleep(0.1)
            yield port, process.pid
        finally:
            process.terminate()
            process.wait(timeout=15)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), independent of what else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load: raw HTTP/1.1 over keep-alive connections -----------------------------------------------------------


def build_requests(port: int, path: str, numbers: range, secret: str | None) -> list[bytes]:
    requests = []
    for number in numbers:
        body = json.dumps({"order_number": str(number), "status": 2}).encode()
        headers = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        if secret:
            msg_id, timestamp = f"msg_{number}", str(int(time.time()))
            headers += f"webhook-id: {msg_id}\r\nwebhook-timestamp: {timestamp}\r\n"
            headers += f"webhook-signature: v1,{sign(secret, msg_id, timestamp, body)}\r\n"
        requests.append(f"{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return requests


async def send_all(port: int, requests: list[bytes], concurrency: int) -> tuple[list[float], int, float]:
    """Send every request once over `concurrency` connections; (latencies, non-202 count, elapsed seconds)."""
    pending = iter(requests)
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in pending:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                errors += not head.startswith(b"HTTP/1.1 202")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


@dataclass
class Target:
    name: str
    port: int
    pid: int
    path: str
    secret: str | None
    next_number: int
    latencies: list[float]
    errors: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def send(self, count: int, concurrency: int) -> float:
        """Send `count` fresh notices; return this burst's throughput."""
        numbers = range(self.next_number, self.next_number + count)
        self.next_number += count
        requests = build_requests(self.port, self.path, numbers, self.secret)
        cpu_before = process_cpu_seconds(self.pid)
        latencies, errors, seconds = asyncio.run(send_all(self.port, requests, concurrency))
        self.cpu_seconds += process_cpu_seconds(self.pid) - cpu_before
        self.latencies += latencies
        self.errors += errors
        self.seconds += seconds
        return count / seconds

    def figures(self) -> Figures:
        return Figures(self.name, len(self.latencies), self.errors, self.seconds, self.latencies, self.cpu_seconds)


def compare(bare: Target, intake: Target, *, requests: int, rounds: int, concurrency: int) -> list[float]:
    """Alternate bursts (bare, intake, intake, bare, ...) so background load on a shared machine hits both alike.

    Returns each round's throughput ratio.
    """
    for target in (bare, intake):  # warm-up: connections, caches, prepared statements
        target.send(WARMUP, concurrency)
        target.latencies, target.errors, target.seconds, target.cpu_seconds = [], 0, 0.0, 0.0
    ratios = []
    for round_ in range(rounds):
        order = (bare, intake) if round_ % 2 == 0 else (intake, bare)
        rates = {target.name: target.send(requests // rounds, concurrency) for target in order}
        ratios.append(rates[intake.name] / rates[bare.name])
    return ratios


# --- databases and the shop ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        migrations.upgrade(url)
        yield url
        return
    name = f"bench_intake_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as e:
        print(f"  PostgreSQL not reachable at {make_url(POSTGRES_ADMIN_URL).render_as_string()}: {type(e).__name__}")
        yield None
        return
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_shop(config: dict[str, str]) -> tuple[str, str]:
    """An active shop selecting status 2, with a webhook key and a signing secret: (key, secret)."""
    engine = create_engine(config["database_url"])
    try:
        async with engine.begin() as conn:
            account = await conn.execute(
                tables.account.insert().values(email="bench@example.test", password_hash="-", created_at=func.now())  # noqa: S106
            )
            integration = await create_integration(conn, account_id=int(account.inserted_primary_key[0]))
            await update_integration(
                conn,
                integration_id=integration.id,
                state="active",
                shop_connection="connected",
                settings=IntegrationSettings(selected_statuses=(2,)),
            )
            key = await shop_connection.rotate_webhook_key(conn, integration_id=integration.id)
            cipher = Cipher([config["encryption_key"]])
            secret = await shop_connection.rotate_signing_secret(conn, integration_id=integration.id, cipher=cipher)
    finally:
        await engine.dispose()
    return key, secret


async def count_rows(config: dict[str, str]) -> tuple[int, int]:
    engine = create_engine(config["database_url"])
    pool = await create_arq_pool(config["redis_url"])
    try:
        async with engine.connect() as conn:
            events = (await conn.execute(select(func.count()).select_from(tables.order_event))).scalar_one()
        jobs = sum(1 for job_id in await pool.zrange("arq:queue", 0, -1) if job_id.startswith(b"sync_order:"))
    finally:
        await pool.aclose()
        await engine.dispose()
    return int(events), int(jobs)


# --- the run -------------------------------------------------------------------------------------------------------


def run_database(kind: str, url: str, redis_url: str, args: argparse.Namespace) -> float:
    config = {
        "database_url": url,
        "redis_url": redis_url,
        "secret_key": secrets.token_urlsafe(40),
        "encryption_key": Fernet.generate_key().decode(),
    }
    key, secret = asyncio.run(create_shop(config))
    with server("bare", config) as (bare_port, bare_pid), server("gateway", config) as (gateway_port, gateway_pid):
        bare = Target("bare route", bare_port, bare_pid, "/notice", None, 1, [])
        path = f"/webhooks/mijnwebwinkel/{key}"
        intake = Target("gateway intake", gateway_port, gateway_pid, path, secret, 10**6, [])
        ratios = compare(bare, intake, requests=args.requests, rounds=args.rounds, concurrency=args.concurrency)
    events, jobs = asyncio.run(count_rows(config))
    ratio = intake.figures().throughput / bare.figures().throughput
    print(f"{kind}:\n{bare.figures().line()}\n{intake.figures().line()}")
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}x"
    print(f"  ratio {ratio:.2f}x ({spread}; target >= {TARGET_RATIO}x: {verdict})")
    expected = WARMUP + args.requests // args.rounds * args.rounds
    complete = "all of them" if events == jobs == expected else f"EXPECTED {expected}"
    print(f"  {events} notices stored and {jobs} booking jobs queued ({complete}), each before its 202")
    return ratio


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench webhook_intake", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per server (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--databases", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=6, help="alternating bursts per server (default 6)")
    args = parser.parse_args(argv)
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.requests} signed notices per server "
        f"in {args.rounds} alternating bursts over {args.concurrency} connections"
    )
    redis = start_private_redis()
    ratios = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-intake-") as workdir:
            for kind in args.databases.split(","):
                with database(kind.strip(), Path(workdir)) as url:
                    if url is not None:
                        ratios.append(run_database(kind.strip(), url, redis.url, args))
                asyncio.run(_flush(redis.url))
    finally:
        redis.stop()
    return 0 if ratios and min(ratios) >= TARGET_RATIO else 1


async def _flush(url: str) -> None:
    pool = await create_arq_pool(url)
    await pool.flushdb()
    await pool.aclose()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), json.loads(os.environ["BENCH_INTAKE_CONFIG"]))
    else:
        sys.exit(main(sys.argv[1:]))
