"""Stored links to Exact ids (`exact_link`): customer accounts by e-mail, items and their revenue accounts by code,
G/L accounts by code. They make a repeat customer's order cost no look-up; all SQL for them lives here.

Kinds: account | collective_account | item | item_revenue | gl_account. An `item_revenue` link may hold "" (looked up:
no revenue account of its own, or no such item) so the next order does not look again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow
from gateway.db import upsert

LinkKey = tuple[str, str]
KEY_MAX = 254
# One query with many (kind, key) pairs stays well under every database's parameter limit.
_CHUNK = 200


async def get_links(conn: AsyncConnection, *, integration_id: int, keys: Iterable[LinkKey]) -> dict[LinkKey, str]:
    """The stored Exact ids for `keys` that exist, by (kind, key)."""
    wanted = list(dict.fromkeys((kind, key[:KEY_MAX]) for kind, key in keys))
    c = tables.exact_link.c
    found: dict[LinkKey, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        pairs = or_(*(and_(c.kind == kind, c.key == key) for kind, key in chunk))
        rows = await conn.execute(select(c.kind, c.key, c.exact_id).where(c.integration_id == integration_id, pairs))
        found.update({(r.kind, r.key): r.exact_id for r in rows})
    return found


async def save_links(conn: AsyncConnection, *, integration_id: int, links: Mapping[LinkKey, str]) -> None:
    """Insert or update links (the newest id wins)."""
    now = utcnow()
    for (kind, key), exact_id in links.items():
        await upsert(
            conn,
            tables.exact_link,
            {
                "integration_id": integration_id,
                "kind": kind,
                "key": key[:KEY_MAX],
                "exact_id": exact_id,
                "updated_at": now,
            },
            conflict=("integration_id", "kind", "key"),
            update={"exact_id": exact_id, "updated_at": now},
        )


async def delete_links(conn: AsyncConnection, *, integration_id: int, keys: Iterable[LinkKey]) -> int:
    """Forget links (Exact refused a document using them: the id may be stale); returns how many went."""
    c = tables.exact_link.c
    removed = 0
    for kind, key in dict.fromkeys(keys):
        result = await conn.execute(
            delete(tables.exact_link).where(c.integration_id == integration_id, c.kind == kind, c.key == key[:KEY_MAX])
        )
        removed += int(result.rowcount)
    return removed
