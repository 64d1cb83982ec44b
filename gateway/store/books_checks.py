"""Books checks (`books_check`): one row per integration and month with the latest run's report, and the gateway's
own rows of a month read for the check. Every function takes `integration_id`; callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.books_check.findings import GatewayRecord, Report
from gateway.clock import utcnow
from gateway.db import insert_ignore

NUMBERS_PER_QUERY = 500


@dataclass(frozen=True)
class BooksCheck:
    id: int
    integration_id: int
    month: str
    state: str
    report: Report | None
    reviewed: frozenset[str]
    error: str | None
    exact_calls: int
    shop_calls: int
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> BooksCheck:
        data = dict(row._mapping)
        data["report"] = Report.from_json(data["report"]) if data.get("report") else None
        data["reviewed"] = frozenset(data.get("reviewed") or ())
        return cls(**data)


async def get_books_check(conn: AsyncConnection, *, integration_id: int, month: str) -> BooksCheck | None:
    c = tables.books_check.c
    row = (
        await conn.execute(select(tables.books_check).where(c.integration_id == integration_id, c.month == month))
    ).first()
    return None if row is None else BooksCheck.from_row(row)


async def list_books_checks(conn: AsyncConnection, *, integration_id: int, limit: int = 24) -> list[BooksCheck]:
    c = tables.books_check.c
    rows = await conn.execute(
        select(tables.books_check).where(c.integration_id == integration_id).order_by(c.month.desc()).limit(limit)
    )
    return [BooksCheck.from_row(r) for r in rows]


async def start_books_check(conn: AsyncConnection, *, integration_id: int, month: str) -> None:
    """The month's row says `running` (created if new); a rerun keeps what the owner marked reviewed."""
    now = utcnow()
    await insert_ignore(
        conn,
        tables.books_check,
        {"integration_id": integration_id, "month": month, "state": "running", "started_at": now},
        conflict=("integration_id", "month"),
    )
    c = tables.books_check.c
    await conn.execute(
        update(tables.books_check)
        .where(c.integration_id == integration_id, c.month == month)
        .values(state="running", error=None, started_at=now, finished_at=None)
    )


async def finish_books_check(
    conn: AsyncConnection,
    *,
    integration_id: int,
    month: str,
    report: Report | None,
    exact_calls: int,
    shop_calls: int,
    error: str | None = None,
) -> None:
    c = tables.books_check.c
    values: dict[str, Any] = {
        "state": "failed" if error else "done",
        "error": error,
        "exact_calls": exact_calls,
        "shop_calls": shop_calls,
        "finished_at": utcnow(),
    }
    if report is not None:
        values["report"] = report.to_json()
    await conn.execute(
        update(tables.books_check).where(c.integration_id == integration_id, c.month == month).values(**values)
    )


async def mark_reviewed(conn: AsyncConnection, *, integration_id: int, month: str, key: str) -> bool:
    """Remember that the owner looked at one finding (its key); False when the month has no check."""
    check = await get_books_check(conn, integration_id=integration_id, month=month)
    if check is None:
        return False
    c = tables.books_check.c
    reviewed = sorted(check.reviewed | {key[:200]})
    await conn.execute(
        update(tables.books_check).where(c.integration_id == integration_id, c.month == month).values(reviewed=reviewed)
    )
    return True


async def list_month_records(
    conn: AsyncConnection, *, integration_id: int, first_day: date, day_after: date, order_numbers: Sequence[str]
) -> dict[str, GatewayRecord]:
    """The gateway's rows of orders dated in the month, and of `order_numbers` whatever their stored date."""
    c = tables.order_sync.c
    columns = (c.id, c.order_number, c.state, c.exact_document_id, c.booked_at)
    in_month = and_(c.order_date >= first_day, c.order_date < day_after)
    records: dict[str, GatewayRecord] = {}
    numbers = list(dict.fromkeys(order_numbers))
    chunks = [numbers[i : i + NUMBERS_PER_QUERY] for i in range(0, len(numbers), NUMBERS_PER_QUERY)] or [[]]
    for index, chunk in enumerate(chunks):
        condition = or_(in_month, c.order_number.in_(chunk)) if index == 0 else c.order_number.in_(chunk)
        rows = await conn.execute(select(*columns).where(c.integration_id == integration_id, condition))
        for row in rows:
            records[row.order_number] = GatewayRecord(
                order_sync_id=int(row.id),
                order_number=row.order_number,
                state=row.state,
                document_id=row.exact_document_id or "",
                booked_at=row.booked_at,
            )
    return records


async def document_types_of_month(
    conn: AsyncConnection, *, integration_id: int, first_day: date, day_after: date
) -> list[str]:
    """The document types the gateway booked orders of the month as (the integration may have switched type)."""
    c = tables.order_sync.c
    rows = await conn.execute(
        select(c.document_type)
        .where(
            c.integration_id == integration_id,
            c.order_date >= first_day,
            c.order_date < day_after,
            c.document_type.is_not(None),
        )
        .distinct()
    )
    return sorted(str(r[0]) for r in rows)


async def requeue_deleted_booking(
    conn: AsyncConnection, *, integration_id: int, order_sync_id: int, document_id: str
) -> int | None:
    """A booked row whose document the books check found deleted in Exact goes back to `queued` (new generation), so
    the booking job books it again (it looks for a marked document first, as always). None if the row moved on."""
    c = tables.order_sync.c
    result = await conn.execute(
        update(tables.order_sync)
        .where(
            c.id == order_sync_id,
            c.integration_id == integration_id,
            c.state == "booked",
            c.exact_document_id == document_id,
        )
        .values(
            state="queued",
            generation=c.generation + 1,
            exact_document_id=None,
            exact_document_number=None,
            reason="its document was deleted in Exact (books check)",
            enqueued_at=utcnow(),
            updated_at=utcnow(),
        )
        .returning(c.generation)
    )
    row = result.first()
    return None if row is None else int(row[0])
