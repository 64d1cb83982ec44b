"""Hot queries at scale: --syncs order syncs (5 notices and 1 attempt each) and --shops integrations on PostgreSQL,
then the p95 latency of the history page's queries, the recovery sweep, the due-shop query and claim, and one
retention batch, each with its EXPLAIN ANALYZE plan (the scan lines), which should name an index.

The rows are generated in SQL (generate_series) straight into a fresh, migrated database: a tenth of the syncs
belong to one big shop (the history page is timed for it), the rest spread over the other shops; creation times
spread over 800 days, so about half the history is past the 400-day retention; 95 % booked, 3 % failed, 2 % skipped,
0.1 % queued and 0.1 % retrying (the sweep's rows); the shops' next polls spread over a minute, a sixth of them due.
The statements timed are the store functions themselves (the time includes building their rows); claims and
deletes run in a transaction that is rolled back, so each repetition sees the same data.

    python -m bench retention [--syncs 200000] [--shops 10000] [--runs 30]      (the issue's figure: --syncs 1000000)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench.booking import database
from gateway.clock import utcnow
from gateway.db import create_engine
from gateway.store import orders
from gateway.store.integrations import claim_due_integrations, due_integrations
from gateway.store.retention import prune_notices

TARGETS_MS = {
    "history page": 50.0,
    "recovery sweep": 20.0,
    "due-shop query": 20.0,
    "due-shop claim": 50.0,  # no target in the issue: the query above plus moving up to 500 rows' next_poll_at
    "retention batch": 100.0,  # no target in the issue: a cron's batch of 1,000 notices
}
BIG_SHOP = 1

SEED = [
    """INSERT INTO account (id, email, password_hash, created_at) VALUES (1, 'scale@bench.test', '!', now())""",
    """INSERT INTO integration (id, account_id, name, state, service_level, shop_connection, settings, next_poll_at,
           created_at, updated_at)
       SELECT i, 1, 'shop ' || i, CASE WHEN i % 20 = 0 THEN 'paused' ELSE 'active' END, 'pro',
              CASE WHEN i % 50 = 0 THEN 'error' ELSE 'connected' END, '{}',
              now() + ((i % 60) - 10) * interval '1 second', now(), now()
       FROM generate_series(1, :shops) AS i""",
    """INSERT INTO order_sync (id, integration_id, order_number, state, attempts, enqueued_at, next_attempt_at,
           created_at, updated_at, booked_at)
       SELECT i, CASE WHEN i % 10 = 0 THEN 1 ELSE 2 + i % (:shops - 1) END, i::text,
              CASE WHEN i % 1000 = 997 THEN 'queued' WHEN i % 1000 = 998 THEN 'retrying'
                   WHEN i % 100 < 95 THEN 'booked' WHEN i % 100 < 98 THEN 'failed' ELSE 'skipped' END,
              1, t, t + interval '1 day', t, t, t
       FROM (SELECT i, now() - (i % 800) * interval '1 day' - (i % 86400) * interval '1 second' AS t
             FROM generate_series(1, :syncs) AS i) AS s""",
    """INSERT INTO order_event (integration_id, order_number, status_id, source, dedupe_key, result, order_sync_id,
           received_at)
       SELECT s.integration_id, s.order_number, j, 'poller', s.order_number || ':' || j, 'queued', s.id,
              s.created_at + j * interval '1 minute'
       FROM order_sync AS s CROSS JOIN generate_series(1, 5) AS j""",
    """INSERT INTO sync_attempt (integration_id, order_sync_id, outcome, exact_calls, started_at, finished_at)
       SELECT integration_id, id, CASE WHEN state = 'booked' THEN 'booked' ELSE 'transient' END, 2, created_at,
              created_at
       FROM order_sync""",
    "SELECT setval(pg_get_serial_sequence('order_sync', 'id'), (SELECT max(id) FROM order_sync))",
]
# Just before the due-shop query is timed: the next polls spread over the coming minute, the last sixth overdue.
DUE_TIMES = "UPDATE integration SET next_poll_at = now() + ((id % 60) - 10) * interval '1 second'"


async def seed(engine: AsyncEngine, *, syncs: int, shops: int) -> float:
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in SEED:
            await conn.execute(text(statement), {"syncs": syncs, "shops": shops})
    await vacuum(engine)
    return time.perf_counter() - started


async def vacuum(engine: AsyncEngine) -> None:
    """What autovacuum does to tables in steady use: statistics, and the visibility map index-only scans need."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE")


async def history_page(conn: AsyncConnection) -> None:
    """The queries of routes/history.py:history for the first page."""
    await orders.list_syncs(conn, integration_id=BIG_SHOP, limit=50)
    await orders.count_by_state(conn, integration_id=BIG_SHOP, states=("failed",))


async def recovery_sweep(conn: AsyncConnection) -> None:
    await orders.list_stale_queued(conn, older_than=utcnow() - timedelta(minutes=2), limit=500)


async def due_shop_query(conn: AsyncConnection) -> None:
    await conn.execute(due_integrations(due_by=utcnow() + timedelta(seconds=10), limit=500))


async def due_shop_claim(conn: AsyncConnection) -> None:
    now = utcnow()
    await claim_due_integrations(
        conn, due_by=now + timedelta(seconds=10), lease_until=now + timedelta(minutes=5), limit=500
    )


async def retention_batch(conn: AsyncConnection) -> None:
    await prune_notices(conn, before=utcnow() - timedelta(days=400), limit=1000)


QUERIES: dict[str, Callable[[AsyncConnection], Awaitable[None]]] = {
    "history page": history_page,
    "recovery sweep": recovery_sweep,
    "due-shop query": due_shop_query,
    "due-shop claim": due_shop_claim,
    "retention batch": retention_batch,
}


async def p95(engine: AsyncEngine, query: Callable[[AsyncConnection], Awaitable[None]], runs: int) -> list[float]:
    """Milliseconds per run, each in its own transaction that is rolled back (claims and deletes leave no trace)."""
    times = []
    for _ in range(runs + 2):
        async with engine.connect() as conn:
            started = time.perf_counter()
            await query(conn)
            times.append((time.perf_counter() - started) * 1000)
            await conn.rollback()
    return times[2:]  # the first two warm the caches and the prepared statements


async def plans(engine: AsyncEngine, query: Callable[[AsyncConnection], Awaitable[None]]) -> list[str]:
    """EXPLAIN ANALYZE of every statement `query` runs, with its own parameters; only the plan's scan lines."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    async with engine.connect() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", capture)
        await query(conn)
        event.remove(conn.sync_connection, "before_cursor_execute", capture)
        lines = []
        for statement, parameters in list(seen):
            result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters)
            for (line,) in result.all():
                if any(word in line for word in ("Scan", "Execution Time")):
                    lines.append(line.rstrip())
        await conn.rollback()
    return lines


async def run(args: argparse.Namespace) -> bool:
    async with database("postgres") as url:
        engine = create_engine(url)
        try:
            seconds = await seed(engine, syncs=args.syncs, shops=args.shops)
            print(
                f"{args.syncs} order syncs, {args.syncs * 5} notices, {args.syncs} attempts, {args.shops} shops "
                f"(seeded in {seconds:.0f} s); the big shop has {args.syncs // 10} syncs; p95 of {args.runs} runs"
            )
            ok = True
            for name, query in QUERIES.items():
                if name.startswith("due-shop"):
                    async with engine.begin() as conn:
                        await conn.execute(text(DUE_TIMES))
                times = sorted(await p95(engine, query, args.runs))
                value = times[max(0, int(len(times) * 0.95) - 1)]
                ok &= value < TARGETS_MS[name]
                print(
                    f"  {name:16} p95 {value:7.1f} ms  median {statistics.median(times):6.1f} ms  "
                    f"(target < {TARGETS_MS[name]:.0f} ms)"
                )
                for line in await plans(engine, query):
                    print(f"      {line}")
            return ok
        finally:
            await engine.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench retention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--syncs", type=int, default=200_000)
    parser.add_argument("--shops", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    return 0 if asyncio.run(run(args)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
