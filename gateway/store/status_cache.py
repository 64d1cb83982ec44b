"""Cached lists per integration in table lookup_cache: Exact look-ups (gateway/lookups.py) and the shop's order
statuses (kind "mww_order_statuses"). One row per (integration, kind), with an expiry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow
from gateway.db import upsert

ORDER_STATUSES_KIND = "mww_order_statuses"


async def read_cached(
    conn: AsyncConnection, *, integration_id: int, kind: str, now: datetime | None = None
) -> list[dict[str, Any]] | None:
    """The cached list, or None when never stored or expired."""
    c = tables.lookup_cache.c
    row = (
        await conn.execute(select(c.value, c.expires_at).where(c.integration_id == integration_id, c.kind == kind))
    ).first()
    if row is None or row.expires_at <= (now or utcnow()):
        return None
    return [dict(item) for item in row.value]


async def save_cached(
    conn: AsyncConnection, *, integration_id: int, kind: str, value: list[dict[str, Any]], ttl: timedelta
) -> None:
    expires_at = utcnow() + ttl
    await upsert(
        conn,
        tables.lookup_cache,
        {"integration_id": integration_id, "kind": kind, "value": value, "expires_at": expires_at},
        conflict=("integration_id", "kind"),
        update={"value": value, "expires_at": expires_at},
    )


async def delete_cached(conn: AsyncConnection, *, integration_id: int, kinds: Sequence[str]) -> int:
    """Forget the integration's cached lists of these kinds; returns how many were dropped."""
    c = tables.lookup_cache.c
    result = await conn.execute(
        delete(tables.lookup_cache).where(c.integration_id == integration_id, c.kind.in_(list(kinds)))
    )
    return int(result.rowcount or 0)


async def get_cached_order_statuses(
    conn: AsyncConnection, *, integration_id: int, now: datetime | None = None
) -> list[dict[str, Any]] | None:
    """The shop's order statuses as last fetched, or None when never fetched or expired."""
    return await read_cached(conn, integration_id=integration_id, kind=ORDER_STATUSES_KIND, now=now)


async def save_cached_order_statuses(
    conn: AsyncConnection, *, integration_id: int, statuses: list[dict[str, Any]], ttl: timedelta
) -> None:
    await save_cached(conn, integration_id=integration_id, kind=ORDER_STATUSES_KIND, value=statuses, ttl=ttl)
