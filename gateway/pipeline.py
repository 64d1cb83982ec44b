"""The notice pipeline shared by every change source (webhook, poller, initial export).

A notice is a hint that one order changed. The pipeline records it and moves the order's sync row in one transaction
(`store.notices.record_notices`: status filter, dedupe, "never book twice"), and only after that commit enqueues the
booking job under its deterministic id. A lost enqueue is harmless: the row says `queued` and the reconcile sweep
(jobs/reconcile.py) enqueues it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, SYNC_ORDER, serialize, sync_job_id
from gateway.store import notices as notice_store
from gateway.store.integrations import Integration
from gateway.store.notices import Notice, NoticeOutcome

logger = logging.getLogger(__name__)

SOURCES = ("webhook", "poller", "initial_export", "operator")
MAX_BATCH = 200


def inactive_reason(integration: Integration) -> str | None:
    """Why notices for this integration are recorded but not booked, or None when it books."""
    if integration.is_active:
        return None
    return f"the integration is {integration.state.replace('_', ' ')}, not active; the poller catches up once it is"


def notice(
    integration: Integration,
    *,
    order_number: str,
    status_id: int | None,
    source: str,
    dedupe_key: str,
    initial_export: bool = False,
) -> Notice:
    """A notice for this integration, judged against its selected statuses and state."""
    if source not in SOURCES:
        raise ValueError(f"unknown notice source {source!r}")
    return Notice(
        integration_id=integration.id,
        order_number=str(order_number).strip(),
        status_id=status_id,
        source=source,
        dedupe_key=dedupe_key,
        selected_statuses=integration.settings.selected_statuses,
        initial_export=initial_export,
        skip_reason=inactive_reason(integration),
    )


async def record_notices(conn: AsyncConnection, notices: list[Notice]) -> list[NoticeOutcome]:
    """The in-transaction half, for callers that commit other rows with the notices (poller cursor, export
    progress). Enqueue the outcomes with `enqueue_outcomes` after the commit."""
    return await notice_store.record_notices(conn, notices=notices)


# arq's own uniqueness rule (ArqRedis.enqueue_job), for many jobs in one atomic round trip: a job is added only when
# neither its job key nor its result key exists. ARGV holds 7 values per job.
_ENQUEUE_SCRIPT = """
local added = 0
for i = 1, #ARGV, 7 do
  local job_key, result_key = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', job_key, result_key) == 0 then
    redis.call('PSETEX', job_key, ARGV[i + 5], ARGV[i + 6])
    redis.call('ZADD', ARGV[i + 2], ARGV[i + 4], ARGV[i + 3])
    added = added + 1
  end
end
return added
"""


async def enqueue_outcomes(arq: ArqRedis, *, integration: Integration, outcomes: Iterable[NoticeOutcome]) -> int:
    """Enqueue the booking job for each outcome that asks for it; return how many new jobs Redis accepted."""
    return await enqueue_bookings(arq, [(integration.id, integration.is_premium, o) for o in outcomes])


async def enqueue_bookings(arq: ArqRedis, items: list[tuple[int, bool, NoticeOutcome]]) -> int:
    """Enqueue the booking jobs of (integration id, premium, outcome) items in one Redis round trip, exactly as
    `queue.enqueue_sync` would one by one (same job ids, queues, job format and "already there" rule).

    Redis being down is not an error here: the database already says `queued`, and reconcile repairs it.
    """
    now_ms = int(time.time() * 1000)
    args: list[str | bytes | int] = []
    for integration_id, premium, outcome in items:
        if not outcome.enqueue or outcome.order_sync_id is None:
            continue
        job_id = sync_job_id(integration_id, outcome.order_sync_id, outcome.generation)
        payload = serialize_job(
            SYNC_ORDER, (outcome.order_sync_id,), {}, None, now_ms, serializer=arq.job_serializer or serialize
        )
        queue = QUEUE_PRIORITY if premium else QUEUE_DEFAULT
        args += [job_key_prefix + job_id, result_key_prefix + job_id, queue, job_id, now_ms, arq.expires_extra_ms]
        args.append(payload)
    if not args:
        return 0
    try:
        # redis-py types eval() for its sync and async clients at once (str arguments, result `Awaitable[str] | str`);
        # the async client encodes bytes and int arguments and always returns an awaitable.
        return int(await arq.eval(_ENQUEUE_SCRIPT, 0, *args))  # type: ignore[arg-type,misc]
    except (TimeoutError, RedisError, OSError) as e:
        logger.warning(
            "could not enqueue %d booking jobs (%s); the reconcile sweep will", len(args) // 7, type(e).__name__
        )
        return 0


class NoticeWriter:
    """Group commit for notices that arrive one per request (webhooks).

    A notice joins a shared list; whoever holds the lock writes everything listed so far in ONE transaction and,
    after the commit, enqueues their booking jobs in one Redis round trip. Notices arriving meanwhile share the next
    round. Each caller returns only after its notice was committed and its job enqueue attempted. On SQLite this
    also keeps this process's writers from busy-waiting on the database lock.
    """

    def __init__(self, engine: AsyncEngine, arq: ArqRedis) -> None:
        self._engine = engine
        self.arq = arq
        self._pending: list[tuple[Notice, bool, asyncio.Future[NoticeOutcome]]] = []
        self._lock = asyncio.Lock()

    async def record(self, item: Notice, *, premium: bool) -> NoticeOutcome:
        future: asyncio.Future[NoticeOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((item, premium, future))
        async with self._lock:
            while not future.done():
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                # Shielded: a caller that goes away (client disconnect) must not abort the others' round.
                await asyncio.shield(self._round(batch))
        return future.result()

    async def _round(self, batch: list[tuple[Notice, bool, asyncio.Future[NoticeOutcome]]]) -> None:
        """One transaction for the batch, then its enqueue. If the database refuses the transaction, each notice is
        tried alone, so a notice the database cannot take fails only its own request."""
        try:
            async with self._engine.begin() as conn:
                outcomes = await record_notices(conn, [item for item, _premium, _future in batch])
        except DBAPIError as error:
            if len(batch) > 1:
                for entry in batch:
                    await self._round([entry])
            else:
                _fail(batch, error)
            return
        except BaseException as error:
            _fail(batch, error)
            raise
        await enqueue_bookings(
            self.arq,
            [(item.integration_id, premium, o) for (item, premium, _f), o in zip(batch, outcomes, strict=True)],
        )
        for (_item, _premium, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)


def _fail(batch: list[tuple[Notice, bool, asyncio.Future[NoticeOutcome]]], error: BaseException) -> None:
    for _item, _premium, future in batch:
        if not future.done():
            future.set_exception(error)


_writers: weakref.WeakKeyDictionary[AsyncEngine, NoticeWriter] = weakref.WeakKeyDictionary()


def notice_writer(engine: AsyncEngine, arq: ArqRedis) -> NoticeWriter:
    """The writer for this engine and its Redis pool (an app has one of each, on one event loop)."""
    writer = _writers.get(engine)
    if writer is None or writer.arq is not arq:
        writer = _writers[engine] = NoticeWriter(engine, arq)
    return writer


async def accept_notice(
    engine: AsyncEngine,
    arq: ArqRedis,
    *,
    integration: Integration,
    order_number: str,
    status_id: int | None,
    source: str,
    dedupe_key: str,
    initial_export: bool = False,
) -> NoticeOutcome:
    """Record one notice and enqueue its booking job after the commit (shared with concurrent notices)."""
    item = notice(
        integration,
        order_number=order_number,
        status_id=status_id,
        source=source,
        dedupe_key=dedupe_key,
        initial_export=initial_export,
    )
    return await notice_writer(engine, arq).record(item, premium=integration.is_premium)
