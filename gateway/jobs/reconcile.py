"""The recovery sweep (arq cron, every minute): whatever the database says should be on the queue, is put there.

Redis only triggers work; the rows are the record. Order syncs left `queued` (an enqueue lost with Redis, or never
made), `retrying` past their time, or `booking` with an expired lease are enqueued again under their deterministic
job ids, which makes this a no-op for jobs that still exist. Running initial exports get their current chunk
re-enqueued the same way. So Redis may be flushed at any moment without losing an order.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import utcnow
from gateway.jobs.initial_export import enqueue_export
from gateway.queue import enqueue_sync
from gateway.store import exports, orders
from gateway.store.integrations import list_integrations

logger = logging.getLogger(__name__)

# A row queued more recently than this is presumed to have its job; older ones are checked against Redis.
STALE_AFTER = timedelta(minutes=2)
BATCH = 500


async def reconcile_orders(ctx: dict[str, Any], *, stale_after: timedelta = STALE_AFTER) -> str:
    """Cron entry point; returns a one-line summary for the job result."""
    engine: AsyncEngine = ctx["engine"]
    redis: ArqRedis = ctx["redis"]
    async with engine.connect() as conn:
        stale = await orders.list_stale_queued(conn, older_than=utcnow() - stale_after, limit=BATCH)
        running = await exports.list_running_exports(conn)
        integrations = {i.id: i for i in await list_integrations(conn)}
    requeued = 0
    for sync in stale:
        integration = integrations.get(sync.integration_id)
        if integration is None or not integration.is_active:
            continue  # paused shops book nothing; their rows wait, queued, until the shop is switched on again
        accepted = await enqueue_sync(
            redis,
            integration_id=sync.integration_id,
            order_sync_id=sync.id,
            generation=sync.generation,
            priority=integration.is_premium,
        )
        if accepted:
            requeued += 1
            async with engine.begin() as conn:
                await orders.mark_enqueued(conn, integration_id=sync.integration_id, order_sync_id=sync.id)
    resumed = 0
    for export in running:
        integration = integrations.get(export.integration_id)
        if integration is not None and integration.is_active:
            resumed += await enqueue_export(redis, export)
    if requeued or resumed:
        logger.info("reconcile: re-enqueued %d order syncs and %d initial exports", requeued, resumed)
    return f"checked {len(stale)} order syncs: {requeued} re-enqueued; {resumed} initial exports resumed"
