"""The initial export: walk a shop's orders since a start date and feed them into the pipeline as "initial export".

Such orders are booked like any other but their invoices are never e-mailed. Progress lives in the `initial_export`
row (done / total from `orders/count`, `next_offset`), so a crash or restart resumes at the last committed page; the
reconcile sweep re-enqueues a running export whose job was lost. The job works in chunks of pages and re-enqueues
itself under an id derived from the offset, so a duplicate enqueue of the same chunk is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from redis.exceptions import LockError, RedisError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import pipeline
from gateway.clients.errors import ApiError, TransientApiError
from gateway.clients.mijnwebwinkel import MijnwebwinkelAuthError, MijnwebwinkelClient
from gateway.clock import local_now, utcnow
from gateway.crypto import DecryptionError
from gateway.logs import bind
from gateway.queue import QUEUE_DEFAULT
from gateway.shop_connection import mark_shop_refused, mww_client_for
from gateway.store import exports
from gateway.store.exports import InitialExport
from gateway.store.integrations import Integration, get_integration

logger = logging.getLogger(__name__)

RUN_INITIAL_EXPORT = "run_initial_export"
PAGE_SIZE = 100
PAGES_PER_JOB = 10  # then the job hands over to a fresh one, keeping each run well inside the job timeout
EARLIEST_START = date(2000, 1, 1)
EXPORT_LOCK_SECONDS = 180  # longer than a run may take (job timeout); a dead run frees the export after it
FIRST_RUN_DELAY = timedelta(seconds=1)  # lets the caller's transaction commit the row before the job looks for it


class ExportNotAllowed(Exception):
    """The export cannot start; the message says why, for the page."""


class _Cancelled(Exception):
    pass


@dataclass(frozen=True)
class ExportProgress:
    """What the dashboard shows about the latest export."""

    export_id: int
    state: str  # running | done | cancelled | failed
    start_date: date
    done: int
    total: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.state == "done" else None
        return min(100, self.done * 100 // self.total)


def export_job_id(export_id: int, offset: int) -> str:
    return f"{RUN_INITIAL_EXPORT}:{export_id}:{offset}"


async def enqueue_export(arq: ArqRedis, export: InitialExport, *, defer: timedelta | None = None) -> bool:
    """Enqueue the chunk that starts at the export's `next_offset`; False when that chunk is already queued."""
    job = await arq.enqueue_job(
        RUN_INITIAL_EXPORT,
        export.id,
        _job_id=export_job_id(export.id, export.next_offset),
        _queue_name=QUEUE_DEFAULT,
        _defer_by=defer,
    )
    return job is not None


async def start_initial_export(
    conn: AsyncConnection, arq: ArqRedis, *, integration_id: int, start_date: date, today: date | None = None
) -> InitialExport:
    """Create the export row in the caller's transaction and enqueue its job (deferred a moment, so the commit lands
    first; if it still runs too early, the reconcile sweep picks the export up within a minute).

    Raises ExportNotAllowed when the shop is not connected, the date is out of range, or an export is running.
    The orders are booked once the integration is active; until then the export waits.
    """
    today = today or local_now().date()
    if not EARLIEST_START <= start_date <= today:
        raise ExportNotAllowed(f"the start date must be between {EARLIEST_START.isoformat()} and today")
    integration = await get_integration(conn, integration_id=integration_id)
    if integration is None or integration.shop_connection != "connected":
        raise ExportNotAllowed("connect the Mijnwebwinkel shop before exporting its orders")
    latest = await exports.get_latest_initial_export(conn, integration_id=integration_id)
    if latest is not None and latest.state == "running":
        raise ExportNotAllowed("an export is already running; cancel it first to pick another start date")
    export = await exports.create_initial_export(conn, integration_id=integration_id, start_date=start_date)
    await enqueue_export(arq, export, defer=FIRST_RUN_DELAY)
    return export


async def cancel_initial_export(conn: AsyncConnection, *, integration_id: int, export_id: int) -> bool:
    """Stop a running export. Pages already recorded stay recorded (and their orders booked); nothing more is read."""
    return await exports.update_initial_export(
        conn, integration_id=integration_id, export_id=export_id, state="cancelled", finished_at=utcnow()
    )


async def get_export_progress(conn: AsyncConnection, *, integration_id: int) -> ExportProgress | None:
    """The latest export of this integration, or None when none was ever started."""
    export = await exports.get_latest_initial_export(conn, integration_id=integration_id)
    if export is None:
        return None
    return ExportProgress(
        export_id=export.id,
        state=export.state,
        start_date=export.start_date,
        done=export.done,
        total=export.total,
        error=export.error,
        created_at=export.created_at,
        finished_at=export.finished_at,
    )


async def run_initial_export(ctx: dict[str, Any], export_id: int) -> str:
    """The job: read up to PAGES_PER_JOB pages from `next_offset`, then finish or hand over to the next chunk.

    A Redis lock per export keeps two runs (a handed-over chunk and a reconcile re-enqueue) from walking at once.
    """
    engine: AsyncEngine = ctx["engine"]
    async with engine.connect() as conn:
        export = await exports.get_initial_export_for_job(conn, export_id=export_id)
        integration = None if export is None else await get_integration(conn, integration_id=export.integration_id)
    if export is None or integration is None:
        return f"skipped: export {export_id} does not exist (yet)"
    if export.state != "running":
        return f"skipped: export {export_id} is {export.state}"
    if not integration.is_active:
        return f"waiting: integration {integration.id} is not active; reconcile retries every minute"
    bind(integration_id=integration.id)  # the job's own context: arq's on_job_end drops it with the job id
    redis: ArqRedis = ctx["redis"]
    lock = redis.lock(f"mww:export:{export_id}", timeout=EXPORT_LOCK_SECONDS, blocking=False, thread_local=False)
    if not await lock.acquire():
        return f"busy: export {export_id} is being walked by another run"
    try:
        result, handover = await _run_locked(ctx, integration, export)
    finally:
        with contextlib.suppress(LockError, RedisError):
            await lock.release()
    if handover:
        async with engine.connect() as conn:
            current = await exports.get_initial_export_for_job(conn, export_id=export_id)
        if current is not None and current.state == "running":
            await enqueue_export(redis, current)
    return result


async def _run_locked(ctx: dict[str, Any], integration: Integration, export: InitialExport) -> tuple[str, bool]:
    engine: AsyncEngine = ctx["engine"]
    try:
        async with engine.connect() as conn:
            # Re-read under the lock: a run that held it before may have moved the offset.
            export = await exports.get_initial_export_for_job(conn, export_id=export.id) or export
            client = await mww_client_for(
                conn,
                settings=ctx["settings"],
                cipher=ctx["cipher"],
                http=ctx["http"],
                integration_id=integration.id,
                redis=ctx["redis"],
            )
        if export.state != "running":
            return f"skipped: export {export.id} is {export.state}", False
        return await _export_chunk(ctx, integration, export, client)
    except _Cancelled:
        return f"cancelled: export {export.id}", False
    except TransientApiError as e:
        await _note(engine, export, error=f"{e}; retrying")
        raise Retry(defer=min(300, 30 * int(ctx.get("job_try", 1)))) from e
    except (ApiError, DecryptionError) as e:
        return await _fail(engine, export, e), False


async def _export_chunk(
    ctx: dict[str, Any], integration: Integration, export: InitialExport, client: MijnwebwinkelClient
) -> tuple[str, bool]:
    engine: AsyncEngine = ctx["engine"]
    if export.total is None:
        total = await client.count_orders(start_date=export.start_date)
        await _note(engine, export, total=total)
    offset, done = export.next_offset, export.done
    for _ in range(PAGES_PER_JOB):
        page = await client.list_orders(start_date=export.start_date, offset=offset, limit=PAGE_SIZE)
        async with engine.begin() as conn:
            offset, done = offset + len(page), done + len(page)
            finished = len(page) < PAGE_SIZE
            progress: dict[str, Any] = {"next_offset": offset, "done": done, "error": None}
            if finished:
                progress.update(state="done", finished_at=utcnow())
            # Progress first: if the export was cancelled meanwhile this matches nothing and the page is dropped.
            if not await exports.update_initial_export(
                conn, integration_id=integration.id, export_id=export.id, **progress
            ):
                raise _Cancelled
            notices = [
                pipeline.notice(
                    integration,
                    order_number=change.number,
                    status_id=change.status,
                    source="initial_export",
                    dedupe_key=f"export:{export.id}:{change.number}",
                    initial_export=True,
                )
                for change in page
            ]
            outcomes = await pipeline.record_notices(conn, notices)
        await pipeline.enqueue_outcomes(ctx["redis"], integration=integration, outcomes=outcomes)
        if finished:
            logger.info("initial export %s done: %d orders", export.id, done)
            return f"done: export {export.id}, {done} orders", False
    return f"continuing: export {export.id} at offset {offset}", True


async def _note(engine: AsyncEngine, export: InitialExport, **values: Any) -> None:
    async with engine.begin() as conn:
        await exports.update_initial_export(conn, integration_id=export.integration_id, export_id=export.id, **values)


async def _fail(engine: AsyncEngine, export: InitialExport, error: Exception) -> str:
    message = str(error) if isinstance(error, ApiError) else "the stored shop token cannot be decrypted"
    async with engine.begin() as conn:
        if isinstance(error, MijnwebwinkelAuthError):
            await mark_shop_refused(conn, integration_id=export.integration_id, error=error)
        await exports.update_initial_export(
            conn,
            integration_id=export.integration_id,
            export_id=export.id,
            state="failed",
            error=message[:1000],
            finished_at=utcnow(),
        )
    logger.warning("initial export %s failed: %s", export.id, message)
    return f"failed: export {export.id}: {message}"
