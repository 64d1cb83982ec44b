"""`gateway syncs ...`: list, retry, ignore or re-run order syncs across integrations.

A retry commits first and enqueues after (a lost enqueue is reconciled); a re-run feeds fresh notices to the pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from gateway.clients.errors import ApiError, AuthError, NotFoundError
from gateway.clients.http import http_client
from gateway.clients.mijnwebwinkel import MijnwebwinkelClient
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.operator_console import add_command, emit, say
from gateway.pipeline import accept_notice
from gateway.queue import create_arq_pool, enqueue_sync
from gateway.settings import Settings
from gateway.shop_connection import mww_client_for
from gateway.store import operator as store
from gateway.store.integrations import Integration, get_integration, list_integrations
from gateway.store.orders import ALL_STATES, get_sync_for_job, ignore_sync, request_retry

logger = logging.getLogger("gateway.operator")

RETRY_BATCH = 200
MAX_RERUN_RANGE = 1000
STATE_CHOICES = (*ALL_STATES, *store.STATE_ALIASES)
SYNC_COLUMNS = ("id", "integration_id", "order_number", "state", "attempts", "error_kind", "updated_at", "last_error")


async def syncs_list(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Order syncs by state across integrations (default: failed and needs_attention)."""
    async with engine.connect() as conn:
        syncs = await store.list_syncs_across(
            conn, states=args.state or store.PROBLEM_STATES, integration_id=args.integration, limit=args.limit
        )
    emit([dataclasses.asdict(s) for s in syncs], args, SYNC_COLUMNS)
    return EXIT_OK


async def _premium_ids(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        return {i.id for i in await list_integrations(conn) if i.is_premium}


@contextlib.asynccontextmanager
async def _arq_pool(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(settings.redis_url)
    try:
        yield pool
    finally:
        await pool.aclose()


async def _enqueue(settings: Settings, engine: AsyncEngine, retried: Iterable[tuple[int, int, int]]) -> int:
    """Enqueue (integration_id, order_sync_id, generation) after the retry committed; a lost one is reconciled."""
    premium = await _premium_ids(engine)
    queued = 0
    async with _arq_pool(settings) as pool:
        for integration_id, sync_id, generation in retried:
            queued += await enqueue_sync(
                pool,
                integration_id=integration_id,
                order_sync_id=sync_id,
                generation=generation,
                priority=integration_id in premium,
            )
    return queued


async def syncs_retry(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Queue one order sync again (failed, retrying, needs_attention, skipped or ignored)."""
    async with engine.begin() as conn:
        sync = await get_sync_for_job(conn, order_sync_id=args.order_sync_id)
        if sync is None:
            say(f"order sync {args.order_sync_id} does not exist")
            return EXIT_FAILURE
        generation = await request_retry(conn, integration_id=sync.integration_id, order_sync_id=sync.id)
    if generation is None:
        say(f"order sync {sync.id} (order {sync.order_number}) is {sync.state}: nothing to retry")
        return EXIT_FAILURE
    await _enqueue(settings, engine, [(sync.integration_id, sync.id, generation)])
    logger.info("operator: retry of order sync %s (generation %s)", sync.id, generation)
    say(f"order sync {sync.id} (order {sync.order_number}) queued again")
    return EXIT_OK


async def syncs_retry_failed(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Queue every failed order sync again, optionally filtered."""
    since = datetime.combine(args.since, datetime.min.time(), tzinfo=UTC) if args.since else None
    async with engine.connect() as conn:
        failed = await store.list_syncs_across(
            conn,
            states=("failed",),
            integration_id=args.integration,
            error_kind=args.error_kind,
            since=since,
            limit=None,
        )
    retried: list[tuple[int, int, int]] = []
    for start in range(0, 0 if args.dry_run else len(failed), RETRY_BATCH):
        batch: list[tuple[int, int, int]] = []
        async with engine.begin() as conn:
            for sync in failed[start : start + RETRY_BATCH]:
                generation = await request_retry(conn, integration_id=sync.integration_id, order_sync_id=sync.id)
                if generation is not None:
                    batch.append((sync.integration_id, sync.id, generation))
        await _enqueue(settings, engine, batch)
        retried.extend(batch)
    done = {sync_id for _, sync_id, _ in retried}
    rows = [{**dataclasses.asdict(s), "retried": s.id in done} for s in failed]
    emit(rows, args, ("id", "integration_id", "order_number", "error_kind", "updated_at", "retried"))
    verb = "would retry" if args.dry_run else "retried"
    logger.info("operator: %s %s failed order syncs", verb, len(failed) if args.dry_run else len(retried))
    say(f"{verb} {len(failed) if args.dry_run else len(retried)} of {len(failed)} failed order syncs")
    return EXIT_OK


async def syncs_ignore(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Never book this order (any state but booked or booking)."""
    async with engine.begin() as conn:
        sync = await get_sync_for_job(conn, order_sync_id=args.order_sync_id)
        if sync is None:
            say(f"order sync {args.order_sync_id} does not exist")
            return EXIT_FAILURE
        ignored = await ignore_sync(conn, integration_id=sync.integration_id, order_sync_id=sync.id)
    if not ignored:
        say(f"order sync {sync.id} (order {sync.order_number}) is {sync.state}: it cannot be ignored")
        return EXIT_FAILURE
    logger.info("operator: order sync %s ignored", sync.id)
    say(f"order sync {sync.id} (order {sync.order_number}) ignored")
    return EXIT_OK


async def syncs_rerun(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Re-read a range of order numbers from the shop and feed them to the notice pipeline (source "operator")."""
    if not 0 <= args.to_number - args.from_number < MAX_RERUN_RANGE:
        say(f"--to must be >= --from and the range at most {MAX_RERUN_RANGE} orders")
        return EXIT_USAGE
    async with engine.connect() as conn:
        integration = await get_integration(conn, integration_id=args.integration)
    if integration is None:
        say(f"integration {args.integration} does not exist")
        return EXIT_FAILURE
    cipher = Cipher(settings.encryption_keys)
    async with http_client() as http, _arq_pool(settings) as pool:
        try:
            async with engine.connect() as conn:
                client = await mww_client_for(
                    conn, settings=settings, cipher=cipher, http=http, integration_id=integration.id, redis=pool
                )
        except AuthError as e:
            say(f"integration {integration.id}: {e}")
            return EXIT_FAILURE
        rerun = functools.partial(
            _rerun_order, engine, pool, client, integration, f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        )
        rows = [await rerun(n) for n in range(args.from_number, args.to_number + 1)]
    emit(rows, args, ("order_number", "result", "order_sync_id", "reason"))
    errors = sum(r["result"] == "error" for r in rows)
    logger.info("operator: re-ran orders %s-%s of integration %s", args.from_number, args.to_number, integration.id)
    say(f"{len(rows)} orders fed to the pipeline, {errors} could not be read from the shop")
    return EXIT_FAILURE if errors else EXIT_OK


async def _rerun_order(
    engine: AsyncEngine, pool: ArqRedis, client: MijnwebwinkelClient, integration: Integration, stamp: str, number: int
) -> dict[str, Any]:
    """One order of a re-run: read its status from the shop (a notice is a hint; the status decides), then notice it."""
    row: dict[str, Any] = {"order_number": str(number), "result": "", "order_sync_id": None, "reason": None}
    try:
        order = await client.get_order(str(number))
    except NotFoundError:
        return {**row, "result": "not_found", "reason": "the shop has no such order"}
    except ApiError as e:
        return {**row, "result": "error", "reason": str(e)}
    outcome = await accept_notice(
        engine,
        pool,
        integration=integration,
        order_number=str(number),
        status_id=order.status,
        source="operator",
        dedupe_key=f"operator:{number}:{stamp}",  # a fresh key: the operator wants this notice recorded again
    )
    return {**row, "result": outcome.result, "order_sync_id": outcome.order_sync_id, "reason": outcome.reason}


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def add_sync_commands(group: Any) -> None:
    listing = add_command(group, "list", syncs_list, lists=True)
    listing.add_argument(
        "--state", action="append", choices=STATE_CHOICES, help="repeatable; pending = queued/booking/retrying"
    )
    listing.add_argument("--integration", type=int, metavar="N", help="only this integration")
    listing.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    add_command(group, "retry", syncs_retry).add_argument("order_sync_id", type=int, metavar="ID")
    bulk = add_command(group, "retry-failed", syncs_retry_failed, lists=True)
    bulk.add_argument("--integration", type=int, metavar="N", help="only this integration")
    bulk.add_argument("--error-kind", metavar="K", help="only this error kind (see `syncs list`)")
    bulk.add_argument(
        "--since", type=_date, metavar="DATE", help="only those that failed on or after DATE (YYYY-MM-DD)"
    )
    bulk.add_argument("--dry-run", action="store_true", help="list what would be retried; change nothing")
    add_command(group, "ignore", syncs_ignore).add_argument("order_sync_id", type=int, metavar="ID")
    rerun = add_command(group, "rerun", syncs_rerun, lists=True)
    rerun.add_argument("--integration", type=int, required=True, metavar="N")
    rerun.add_argument(
        "--from", dest="from_number", type=int, required=True, metavar="ORDER", help="first order number"
    )
    rerun.add_argument("--to", dest="to_number", type=int, required=True, metavar="ORDER", help="last (inclusive)")
