"""The poller: a scheduler cron claims the shops that are due in SQL and enqueues one `poll_shop` job per shop, which
any worker runs: a round that reads the shop's order status changes into the pipeline.

Mijnwebwinkel has no webhooks, so this is how real shops are served. Per shop it lists orders whose status changed
since the stored cursor minus an overlap window (the API's times have no zone, and an order that changes while the
pages are read can slip behind the offset), pages to the end, records every change through the notice pipeline
(duplicates are absorbed by dedupe keys), and only then advances the cursor. Guarantees: docs/mijnwebwinkel.md;
scale-out: docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import metrics, pipeline
from gateway.clients.errors import ApiError, AuthError, RateLimitedError, TransientApiError
from gateway.clients.mijnwebwinkel import MijnwebwinkelAuthError, MijnwebwinkelClient
from gateway.clients.mijnwebwinkel_models import MwwOrderChange
from gateway.clock import utcnow
from gateway.crypto import DecryptionError
from gateway.logs import bind, log_context
from gateway.pipeline import _ENQUEUE_SCRIPT as ENQUEUE_SCRIPT  # arq's uniqueness rule, many jobs per round trip
from gateway.queue import QUEUE_DEFAULT, serialize
from gateway.settings import Settings
from gateway.shop_connection import mark_shop_refused, mww_client_for
from gateway.store.integrations import Integration, claim_due_integrations, get_integration, update_integration

logger = logging.getLogger(__name__)

CURSOR_FORMAT = "%Y-%m-%d %H:%M:%S"
OVERLAP = timedelta(minutes=10)
PAGE_SIZE = 100
MAX_PAGES = 200  # 20,000 changes in one round: beyond that the round fails loudly instead of guessing a cursor
# One page may be retried this often within a round, after these pauses (x jitter 0.5..1); then the round fails.
PAGE_RETRY_DELAYS = (1.0, 3.0)
MAX_INLINE_RETRY_AFTER = 5.0  # a 429 asking for a longer pause ends the round; back-off takes over
BACKOFF_CAP = timedelta(hours=1)
POLL_LOCK_SECONDS = 300
POLL_SHOP = "poll_shop"
POLL_JOB_TIMEOUT = 240
# The scheduler runs every SCHEDULE_EVERY seconds and claims at most CLAIM_BATCH shops per statement, up to
# MAX_BATCHES statements per run (40,000 shops a run: far more than the workers could take in one).
SCHEDULE_EVERY = 10
CLAIM_BATCH = 500
MAX_BATCHES = 80
SCHEDULE_AHEAD = timedelta(seconds=SCHEDULE_EVERY)  # shops due before the next run are claimed now, to run on time
# A claimed shop whose job never ran (Redis flushed, worker killed) is due again after this.
CLAIM_LEASE = timedelta(seconds=POLL_JOB_TIMEOUT + 60)


class PollIncomplete(ApiError):
    """The round could not read every page; nothing beyond the recorded pages is assumed."""


@dataclass(frozen=True)
class PollResult:
    integration_id: int
    outcome: str  # ok | error | auth_error | busy
    changes: int
    cursor: str | None
    error: str | None = None


def poll_interval(integration: Integration, settings: Settings) -> timedelta:
    """Basic shops are polled every `basic_poll_interval_seconds` (2 h); pro and premium every minute."""
    seconds = (
        settings.basic_poll_interval_seconds if integration.service_level == "basic" else settings.poll_interval_seconds
    )
    return timedelta(seconds=seconds)


def is_pollable(integration: Integration) -> bool:
    return integration.state == "active" and integration.shop_connection == "connected"


def window_start(cursor: str | None, now: datetime) -> str:
    """`status_changed_start_date` for this round: the cursor minus the overlap.

    A shop without a cursor starts at the current UTC time minus the overlap: shop time is Dutch local time, ahead of
    UTC, so this reads a little more than needed, never less. Older orders are the initial export's job.
    """
    if cursor:
        start = datetime.strptime(cursor, CURSOR_FORMAT) - OVERLAP  # noqa: DTZ007 - the API's times carry no zone
    else:
        start = now.replace(tzinfo=None, microsecond=0) - OVERLAP
    return start.strftime(CURSOR_FORMAT)


def next_poll_after_success(integration: Integration, settings: Settings, started: datetime) -> datetime:
    interval = poll_interval(integration, settings)
    # Jobs run when their shop is due, so the pause is the interval; 2 s early absorbs a short wait in the queue.
    return started + interval - min(timedelta(seconds=2), interval / 6)


def next_poll_after_failure(
    integration: Integration, settings: Settings, started: datetime, retry_after: float | None = None
) -> datetime:
    """Exponential back-off with jitter: the interval after a first failure, then double the previous pause, capped.

    The previous pause is the time since the failed round before (`last_polled_at`): the row's `next_poll_at` holds
    the scheduler's claim by now, not the pause that was planned.
    """
    interval = poll_interval(integration, settings)
    delay = interval
    if integration.last_poll_error and integration.last_polled_at:
        delay = max(interval, (started - integration.last_polled_at) * 2)
    delay = min(delay, max(BACKOFF_CAP, interval)) * random.uniform(0.85, 1.0)  # noqa: S311 - jitter, not crypto
    return started + max(delay, timedelta(seconds=retry_after or 0))


async def poll_shops(ctx: dict[str, Any]) -> str:
    """Scheduler cron: claim the shops due before the next run in bounded batches and enqueue one `poll_shop` job
    each, after commit, to run when the shop is due (so a shop keeps its minute whatever the tick's phase).

    Each job id is `poll_shop:<integration id>`, so a shop whose job is still queued or running is not enqueued
    twice; every worker takes these jobs, so one slow or failing shop delays no other.
    """
    engine: AsyncEngine = ctx["engine"]
    claimed = enqueued = 0
    for _ in range(MAX_BATCHES):
        now = utcnow()
        async with engine.begin() as conn:
            claims = await claim_due_integrations(
                conn, due_by=now + SCHEDULE_AHEAD, lease_until=now + CLAIM_LEASE, limit=CLAIM_BATCH
            )
        claimed += len(claims)
        enqueued += await enqueue_polls(ctx["redis"], claims)
        if len(claims) < CLAIM_BATCH:
            break
    return f"claimed {claimed} due shops, enqueued {enqueued} polls"


def poll_job_id(integration_id: int) -> str:
    return f"{POLL_SHOP}:{integration_id}"


async def enqueue_polls(arq: ArqRedis, claims: list[tuple[int, datetime | None]]) -> int:
    """Enqueue a `poll_shop` job per (shop, due time) in one Redis round trip, with arq's own "already there" rule;
    a job waits in the queue until its shop's due time (arq's deferred jobs: the queue's score is the time to run).

    Redis being down is not an error: the claims run out (CLAIM_LEASE) and the shops are claimed again.
    """
    if not claims:
        return 0
    now_ms = int(utcnow().timestamp() * 1000)
    args: list[str | bytes | int] = []
    for integration_id, due in claims:
        job_id = poll_job_id(integration_id)
        run_at = max(now_ms, int(due.timestamp() * 1000)) if due else now_ms
        payload = serialize_job(POLL_SHOP, (integration_id,), {}, None, now_ms, serializer=serialize)
        args += [job_key_prefix + job_id, result_key_prefix + job_id, QUEUE_DEFAULT, job_id, run_at]
        args += [arq.expires_extra_ms, payload]
    try:
        # redis-py types eval() for its sync and async clients at once (str arguments, result `Awaitable[str] | str`);
        # the async client encodes bytes and int arguments and always returns an awaitable.
        return int(await arq.eval(ENQUEUE_SCRIPT, 0, *args))  # type: ignore[arg-type,misc]
    except (TimeoutError, RedisError, OSError) as e:
        logger.warning("could not enqueue %d poll jobs (%s); their claims run out", len(claims), type(e).__name__)
        return 0


async def poll_shop(ctx: dict[str, Any], integration_id: int) -> str:
    """Job: one poll round for one shop, unless it was paused or disconnected since it was claimed."""
    client = None
    async with ctx["engine"].connect() as conn:
        integration = await get_integration(conn, integration_id=integration_id)
        if integration is None or not is_pollable(integration):
            return "skipped: not active and connected"
        # Read the token on the same connection; a missing or unreadable one is the round's to record.
        with contextlib.suppress(ApiError, DecryptionError):
            client = await _client(ctx, conn, integration)
    result = await poll_integration(ctx, integration, client=client)
    return f"{result.outcome}: {result.changes} changes"


async def poll_integration(
    ctx: dict[str, Any], integration: Integration, *, client: MijnwebwinkelClient | None = None
) -> PollResult:
    """One round for one shop, under a Redis lock: whatever starts a round (a job run twice, the initial export's
    hand-over), the same shop is never polled twice at once."""
    redis: Redis = ctx["redis"]
    token = bind(integration_id=integration.id)
    lock = redis.lock(f"mww:poll:{integration.id}", timeout=POLL_LOCK_SECONDS, blocking=False, thread_local=False)
    try:
        if not await lock.acquire():
            return PollResult(integration.id, "busy", 0, integration.poll_cursor)
        try:
            return await _poll_round(ctx, integration, client)
        finally:
            try:
                await lock.release()
            except RedisError:
                logger.warning("poll lock of integration %s expired before release", integration.id)
    finally:
        log_context.reset(token)


async def _client(ctx: dict[str, Any], conn: AsyncConnection, integration: Integration) -> MijnwebwinkelClient:
    return await mww_client_for(
        conn,
        settings=ctx["settings"],
        cipher=ctx["cipher"],
        http=ctx["http"],
        integration_id=integration.id,
        redis=ctx["redis"],
    )


async def _poll_round(ctx: dict[str, Any], integration: Integration, client: MijnwebwinkelClient | None) -> PollResult:
    settings: Settings = ctx["settings"]
    engine: AsyncEngine = ctx["engine"]
    started = utcnow()
    try:
        if client is None:
            async with engine.connect() as conn:
                client = await _client(ctx, conn, integration)
        seen, changes = await read_changes(
            ctx, integration, client, since=window_start(integration.poll_cursor, started)
        )
    except (ApiError, DecryptionError) as e:
        return await _record_failure(ctx, integration, started, e)
    # Every change is committed by now: only now may the cursor move, to the latest change the shop reported. A
    # first round that saw nothing pins where it started, so a later run of failures cannot slide the window.
    cursor = max(filter(None, [integration.poll_cursor, seen]), default=None) or window_start(None, started + OVERLAP)
    async with engine.begin() as conn:
        await update_integration(
            conn,
            integration_id=integration.id,
            poll_cursor=cursor,
            last_polled_at=started,
            next_poll_at=next_poll_after_success(integration, settings, started),
            last_poll_error=None,
        )
    metrics.POLL_RUNS.labels("ok").inc()
    logger.info("polled integration %s: %d changes, cursor %s", integration.id, changes, cursor)
    return PollResult(integration.id, "ok", changes, cursor)


async def read_changes(
    ctx: dict[str, Any], integration: Integration, client: MijnwebwinkelClient, *, since: str
) -> tuple[str | None, int]:
    """Page through the changes since `since`, recording each page through the pipeline before reading the next.

    Returns (latest status change seen, number of changes read). Raises PollIncomplete past MAX_PAGES.
    """
    latest: str | None = None
    count = 0
    for page in range(MAX_PAGES):
        changes = await _read_page(client, since=since, offset=page * PAGE_SIZE)
        await _record_page(ctx, integration, changes)
        count += len(changes)
        latest = max(filter(None, [latest, *(c.status_changed_at for c in changes)]), default=latest)
        if len(changes) < PAGE_SIZE:
            return latest, count
    raise PollIncomplete(f"more than {MAX_PAGES * PAGE_SIZE} status changes since {since}; the cursor was kept")


async def _read_page(client: MijnwebwinkelClient, *, since: str, offset: int) -> list[MwwOrderChange]:
    """One page, with a small bounded retry on transient faults (the job-level back-off handles the rest)."""
    for pause in (*PAGE_RETRY_DELAYS, None):
        try:
            return await client.list_changed_orders(since=since, offset=offset, limit=PAGE_SIZE)
        except TransientApiError as e:
            if pause is None:
                raise
            wait = pause if not isinstance(e, RateLimitedError) else max(pause, e.retry_after or 0)
            if wait > MAX_INLINE_RETRY_AFTER:
                raise
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")  # pragma: no cover


async def _record_page(ctx: dict[str, Any], integration: Integration, changes: list[MwwOrderChange]) -> None:
    if not changes:
        return  # an idle shop's round costs no transaction here
    notices = [
        pipeline.notice(
            integration,
            order_number=change.number,
            status_id=change.status,
            source="poller",
            dedupe_key=f"{change.number}:{change.status}:{change.status_changed_at}",
        )
        for change in changes
    ]
    async with ctx["engine"].begin() as conn:
        outcomes = await pipeline.record_notices(conn, notices)
    await pipeline.enqueue_outcomes(ctx["redis"], integration=integration, outcomes=outcomes)


async def _record_failure(
    ctx: dict[str, Any], integration: Integration, started: datetime, error: Exception
) -> PollResult:
    message = str(error) if isinstance(error, ApiError) else "the stored shop token cannot be decrypted"
    retry_after = error.retry_after if isinstance(error, TransientApiError) else None
    async with ctx["engine"].begin() as conn:
        if isinstance(error, MijnwebwinkelAuthError):
            await mark_shop_refused(conn, integration_id=integration.id, error=error)
        await update_integration(
            conn,
            integration_id=integration.id,
            last_polled_at=started,
            next_poll_at=next_poll_after_failure(integration, ctx["settings"], started, retry_after),
            last_poll_error=message[:1000],
        )
    outcome = "auth_error" if isinstance(error, AuthError) else "error"
    metrics.POLL_RUNS.labels(outcome).inc()
    logger.warning("polling integration %s failed: %s", integration.id, message)
    return PollResult(integration.id, outcome, 0, integration.poll_cursor, message)
