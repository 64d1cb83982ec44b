"""Initial exports: one walk over a shop's order history from a start date (jobs/initial_export.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow

EXPORT_STATES = ("running", "done", "cancelled", "failed")


@dataclass(frozen=True)
class InitialExport:
    id: int
    integration_id: int
    start_date: date
    state: str
    total: int | None
    done: int
    next_offset: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> InitialExport:
        return cls(**dict(row._mapping))


async def create_initial_export(conn: AsyncConnection, *, integration_id: int, start_date: date) -> InitialExport:
    result = await conn.execute(
        tables.initial_export.insert()
        .values(integration_id=integration_id, start_date=start_date, state="running", created_at=utcnow())
        .returning(tables.initial_export)
    )
    return InitialExport.from_row(result.one())


async def get_initial_export(conn: AsyncConnection, *, integration_id: int, export_id: int) -> InitialExport | None:
    c = tables.initial_export.c
    row = (
        await conn.execute(select(tables.initial_export).where(c.id == export_id, c.integration_id == integration_id))
    ).first()
    return None if row is None else InitialExport.from_row(row)


async def get_initial_export_for_job(conn: AsyncConnection, *, export_id: int) -> InitialExport | None:
    """The job knows only the export id (job arguments are ids); the row names its integration."""
    row = (await conn.execute(select(tables.initial_export).where(tables.initial_export.c.id == export_id))).first()
    return None if row is None else InitialExport.from_row(row)


async def get_latest_initial_export(conn: AsyncConnection, *, integration_id: int) -> InitialExport | None:
    c = tables.initial_export.c
    row = (
        await conn.execute(
            select(tables.initial_export)
            .where(c.integration_id == integration_id)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else InitialExport.from_row(row)


async def list_running_exports(conn: AsyncConnection) -> list[InitialExport]:
    """Across all integrations (reconcile cron): exports whose job may have been lost."""
    c = tables.initial_export.c
    rows = (await conn.execute(select(tables.initial_export).where(c.state == "running").order_by(c.id))).all()
    return [InitialExport.from_row(r) for r in rows]


async def update_initial_export(
    conn: AsyncConnection, *, integration_id: int, export_id: int, only_if_running: bool = True, **values: Any
) -> bool:
    """Set total/done/next_offset/state/error/finished_at. With `only_if_running` (the job's writes) a cancelled or
    finished export is left alone, so a cancel always wins over a page still in flight. True when a row changed."""
    c = tables.initial_export.c
    conditions = [c.id == export_id, c.integration_id == integration_id]
    if only_if_running:
        conditions.append(c.state == "running")
    result = await conn.execute(update(tables.initial_export).where(*conditions).values(**values))
    return bool(result.rowcount)
