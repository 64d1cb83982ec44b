"""The outbox purge cron: mail older than OUTBOX_RETENTION_DAYS leaves the database (docs/security.md).

The outbox is a delivery record, not an archive; stored copies are redacted already (gateway/mail.py), and purging
bounds what a copy of the database holds about who was mailed what.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import utcnow
from gateway.settings import Settings
from gateway.store.outbox import purge_mail

logger = logging.getLogger(__name__)


async def purge_outbox(ctx: dict[str, Any]) -> str:
    """Cron entry point; one short delete. Safe to run twice."""
    return await purge_old_mail(ctx["engine"], ctx["settings"])


async def purge_old_mail(engine: AsyncEngine, settings: Settings) -> str:
    cutoff = utcnow() - timedelta(days=settings.outbox_retention_days)
    async with engine.begin() as conn:
        deleted = await purge_mail(conn, created_before=cutoff)
    if deleted:
        logger.info("outbox: %s mails older than %s days deleted", deleted, settings.outbox_retention_days)
    return f"deleted {deleted} mails"
