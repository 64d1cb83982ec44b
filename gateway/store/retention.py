"""Retention: deleting old notices (order_event) and attempts (sync_attempt) of settled orders, in bounded batches.

Across all integrations (a cron). The order sync row itself is never deleted: that an order was booked, and as what,
stays for good. Only what led there goes once it is older than the retention period.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables

# Orders nothing more happens to unless a new notice arrives: their history may go once it is old.
SETTLED_STATES = ("booked", "ignored", "skipped")


async def prune_notices(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` notices received before `before` whose order is settled (or that made no order)."""
    event, sync = tables.order_event, tables.order_sync
    victims = (
        select(event.c.id)
        .select_from(event.outerjoin(sync, sync.c.id == event.c.order_sync_id))
        .where(event.c.received_at < before, or_(event.c.order_sync_id.is_(None), sync.c.state.in_(SETTLED_STATES)))
        .limit(limit)
    )
    return await _delete(conn, event, list((await conn.execute(victims)).scalars()))


async def prune_attempts(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` attempts started before `before` whose order is settled."""
    attempt, sync = tables.sync_attempt, tables.order_sync
    victims = (
        select(attempt.c.id)
        .select_from(attempt.join(sync, sync.c.id == attempt.c.order_sync_id))
        .where(attempt.c.started_at < before, sync.c.state.in_(SETTLED_STATES))
        .limit(limit)
    )
    return await _delete(conn, attempt, list((await conn.execute(victims)).scalars()))


async def _delete(conn: AsyncConnection, table: Table, ids: list[int]) -> int:
    # By primary key: `id IN (SELECT ... LIMIT n)` in one statement made PostgreSQL scan the whole table.
    if ids:
        await conn.execute(delete(table).where(table.c.id.in_(ids)))
    return len(ids)
