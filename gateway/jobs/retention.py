"""The retention cron: notices and attempts of settled orders older than RETENTION_DAYS are deleted in small
batches, each in its own short transaction, so the tables stay bounded and no lock is held for long.

The order sync rows stay (store/retention.py says which rows go). A run stops after MAX_BATCHES per table; the next
run carries on, so a first run over years of history spreads over a few hours instead of one long job.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import utcnow
from gateway.settings import Settings
from gateway.store.retention import prune_attempts, prune_notices

logger = logging.getLogger(__name__)

BATCH = 1000
MAX_BATCHES = 100  # per table and run: at most 100,000 rows of each an hour

Prune = Callable[..., Awaitable[int]]


async def prune_history(ctx: dict[str, Any]) -> str:
    """Cron entry point; returns a one-line summary for the job result."""
    settings: Settings = ctx["settings"]
    before = utcnow() - timedelta(days=settings.retention_days)
    notices = await _in_batches(ctx["engine"], prune_notices, before)
    attempts = await _in_batches(ctx["engine"], prune_attempts, before)
    if notices or attempts:
        logger.info("retention: deleted %d notices and %d attempts older than %s", notices, attempts, before.date())
    return f"deleted {notices} notices and {attempts} attempts received before {before:%Y-%m-%d}"


async def _in_batches(engine: AsyncEngine, prune: Prune, before: datetime) -> int:
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with engine.begin() as conn:
            batch = await prune(conn, before=before, limit=BATCH)
        deleted += batch
        if batch < BATCH:
            break
    return deleted
