"""The attempts log: one row per try to book an order sync, with what was sent (a summary) and Exact's answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow


@dataclass(frozen=True)
class SyncAttempt:
    id: int
    integration_id: int
    order_sync_id: int
    job_id: str | None
    outcome: str
    document_type: str | None
    request_summary: Any
    response_summary: str | None
    error_message: str | None
    exact_calls: int
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> SyncAttempt:
        return cls(**dict(row._mapping))


async def record_attempt(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    outcome: str,
    started_at: datetime,
    job_id: str | None = None,
    document_type: str | None = None,
    request_summary: Any = None,
    response_summary: str | None = None,
    error_message: str | None = None,
    exact_calls: int = 0,
) -> int:
    """One log row per try: what was sent (a summary, never a secret) and what Exact answered."""
    result = await conn.execute(
        tables.sync_attempt.insert()
        .values(
            integration_id=integration_id,
            order_sync_id=order_sync_id,
            job_id=job_id,
            outcome=outcome,
            document_type=document_type,
            request_summary=request_summary,
            response_summary=(response_summary or "")[:2000] or None,
            error_message=error_message,
            exact_calls=exact_calls,
            started_at=started_at,
            finished_at=utcnow(),
        )
        .returning(tables.sync_attempt.c.id)
    )
    return int(result.scalar_one())


async def list_attempts(conn: AsyncConnection, *, integration_id: int, order_sync_id: int) -> list[SyncAttempt]:
    c = tables.sync_attempt.c
    rows = (
        await conn.execute(
            select(tables.sync_attempt)
            .where(c.integration_id == integration_id, c.order_sync_id == order_sync_id)
            .order_by(c.started_at.desc(), c.id.desc())
        )
    ).all()
    return [SyncAttempt.from_row(r) for r in rows]


async def count_job_attempts(
    conn: AsyncConnection, *, integration_id: int, order_sync_id: int, job_id: str, outcome: str
) -> int:
    """How many tries of one arq job (its retries share the job id) ended with `outcome`."""
    c = tables.sync_attempt.c
    query = (
        select(func.count())
        .select_from(tables.sync_attempt)
        .where(
            c.integration_id == integration_id,
            c.order_sync_id == order_sync_id,
            c.job_id == job_id,
            c.outcome == outcome,
        )
    )
    return int((await conn.execute(query)).scalar_one())
