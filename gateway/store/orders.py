"""Order syncs: one row per shop order, its state transitions and the lists the pages and crons read.

Notices that create and move rows live in store/notices.py; the attempts log in store/attempts.py.

States of an order sync:
  queued          a booking job is (or should be) on the queue; reconcile re-enqueues it if Redis lost it
  booking         a worker holds the claim until `claimed_until`
  retrying        a transient fault; the job is deferred until `next_attempt_at`
  booked          done; `exact_document_*` say where (never booked twice)
  failed          a permanent fault with a message for the shop owner; resumes on retry / when the cause is fixed
  needs_attention the order cannot be booked as configured (e.g. a credit order as sales order); explicit action
  needs_review    Exact holds a document that may be this order's booking but is not proof of it (no mark, or
                  two): a person checks Exact, then retries or ignores the order; never booked by a guess
  skipped         the order was seen in a status the shop did not select
  ignored         the shop owner chose not to book it
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow

FINAL_STATES = ("booked", "ignored")
REQUEUEABLE_STATES = ("skipped", "failed", "needs_attention", "needs_review", "retrying")
ACTIVE_STATES = ("queued", "booking")
ALL_STATES = (
    "queued",
    "booking",
    "retrying",
    "booked",
    "failed",
    "needs_attention",
    "needs_review",
    "skipped",
    "ignored",
)


@dataclass(frozen=True)
class OrderSync:
    id: int
    integration_id: int
    order_number: str
    state: str
    status_id: int | None
    customer_name: str | None
    customer_email: str | None
    order_total: str | None
    currency: str | None
    order_date: date | None
    is_credit: bool
    initial_export: bool
    attempts: int
    generation: int
    error_kind: str | None
    last_error: str | None
    error_params: dict[str, Any] | None
    reason: str | None
    document_type: str | None
    exact_document_id: str | None
    exact_document_number: str | None
    claimed_by: str | None
    claimed_until: datetime | None
    enqueued_at: datetime | None
    next_attempt_at: datetime | None
    booked_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> OrderSync:
        return cls(**dict(row._mapping))


async def update_sync(conn: AsyncConnection, order_sync_id: int, *, now: datetime | None = None, **values: Any) -> int:
    result = await conn.execute(
        update(tables.order_sync)
        .where(tables.order_sync.c.id == order_sync_id)
        .values(**values, updated_at=now or utcnow())
    )
    return int(result.rowcount)


async def get_sync(conn: AsyncConnection, *, integration_id: int, order_sync_id: int) -> OrderSync | None:
    row = (
        await conn.execute(
            select(tables.order_sync).where(
                tables.order_sync.c.id == order_sync_id, tables.order_sync.c.integration_id == integration_id
            )
        )
    ).first()
    return None if row is None else OrderSync.from_row(row)


async def get_sync_by_number(conn: AsyncConnection, *, integration_id: int, order_number: str) -> OrderSync | None:
    row = (
        await conn.execute(
            select(tables.order_sync).where(
                tables.order_sync.c.integration_id == integration_id, tables.order_sync.c.order_number == order_number
            )
        )
    ).first()
    return None if row is None else OrderSync.from_row(row)


async def get_sync_for_job(conn: AsyncConnection, *, order_sync_id: int) -> OrderSync | None:
    """The job knows only the row id (job arguments are ids); the row names its integration."""
    row = (await conn.execute(select(tables.order_sync).where(tables.order_sync.c.id == order_sync_id))).first()
    return None if row is None else OrderSync.from_row(row)


async def claim_for_booking(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    worker: str,
    lease: timedelta,
    now: datetime | None = None,
) -> bool:
    """Take the row for one booking attempt: one job at a time per order, across workers and processes.

    Succeeds from queued/retrying, or from `booking` whose lease ran out (a worker died mid-booking).
    """
    now = now or utcnow()
    c = tables.order_sync.c
    result = await conn.execute(
        update(tables.order_sync)
        .where(
            c.id == order_sync_id,
            c.integration_id == integration_id,
            or_(c.state.in_(("queued", "retrying")), and_(c.state == "booking", c.claimed_until < now)),
        )
        .values(state="booking", claimed_by=worker, claimed_until=now + lease, attempts=c.attempts + 1, updated_at=now)
    )
    return bool(result.rowcount)


async def update_order_details(
    conn: AsyncConnection, *, integration_id: int, order_sync_id: int, **details: Any
) -> None:
    """Store what the history page shows: customer name/e-mail, total, currency, order date, credit flag."""
    allowed = {"customer_name", "customer_email", "order_total", "currency", "order_date", "is_credit"}
    values = {k: v for k, v in details.items() if k in allowed}
    await conn.execute(
        update(tables.order_sync)
        .where(tables.order_sync.c.id == order_sync_id, tables.order_sync.c.integration_id == integration_id)
        .values(**values)
    )


async def mark_booked(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    document_type: str,
    exact_document_id: str,
    exact_document_number: str | None,
) -> None:
    """Store where the order was booked in the same step that marks it booked."""
    now = utcnow()
    await conn.execute(
        update(tables.order_sync)
        .where(tables.order_sync.c.id == order_sync_id, tables.order_sync.c.integration_id == integration_id)
        .values(
            state="booked",
            document_type=document_type,
            exact_document_id=exact_document_id,
            exact_document_number=exact_document_number,
            booked_at=now,
            error_kind=None,
            last_error=None,
            error_params=None,
            reason=None,
            claimed_by=None,
            claimed_until=None,
            next_attempt_at=None,
            updated_at=now,
        )
    )


async def mark_retrying(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    error_kind: str,
    message: str,
    next_attempt_at: datetime,
) -> None:
    await _mark(
        conn,
        integration_id,
        order_sync_id,
        state="retrying",
        error_kind=error_kind,
        last_error=message,
        error_params=None,
        next_attempt_at=next_attempt_at,
    )


async def mark_failed(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    error_kind: str,
    message: str,
    params: dict[str, str] | None = None,
    state: str = "failed",
) -> None:
    """A permanent fault: not retried; the message is shown to the shop owner (`params` are the figures it names).

    `state` is failed, needs_attention or needs_review (docs at the top of this module)."""
    if state not in ("failed", "needs_attention", "needs_review"):
        raise ValueError(f"{state} is not a state a fault leaves")
    await _mark(
        conn,
        integration_id,
        order_sync_id,
        state=state,
        error_kind=error_kind,
        last_error=message,
        error_params=params or None,
        next_attempt_at=None,
    )


async def mark_needs_attention(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    error_kind: str,
    message: str,
    params: dict[str, str] | None = None,
) -> None:
    await mark_failed(
        conn,
        integration_id=integration_id,
        order_sync_id=order_sync_id,
        error_kind=error_kind,
        message=message,
        params=params,
        state="needs_attention",
    )


async def release_claim(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_sync_id: int,
    state: str = "queued",
    next_attempt_at: datetime | None = None,
) -> None:
    """Hand the row back without an outcome (deferred by the rate governor, worker shutting down)."""
    await _mark(conn, integration_id, order_sync_id, state=state, next_attempt_at=next_attempt_at)


async def _mark(conn: AsyncConnection, integration_id: int, order_sync_id: int, **values: Any) -> None:
    await conn.execute(
        update(tables.order_sync)
        .where(
            tables.order_sync.c.id == order_sync_id,
            tables.order_sync.c.integration_id == integration_id,
            tables.order_sync.c.state != "booked",
        )
        .values(**values, claimed_by=None, claimed_until=None, updated_at=utcnow())
    )


async def request_retry(conn: AsyncConnection, *, integration_id: int, order_sync_id: int) -> int | None:
    """Put a failed/retrying/needs-attention/skipped/ignored order back in the queue with a new job generation.

    Returns the new generation (for the job id), or None when the order is booked or already queued.
    """
    c = tables.order_sync.c
    result = await conn.execute(
        update(tables.order_sync)
        .where(
            c.id == order_sync_id,
            c.integration_id == integration_id,
            c.state.in_(("failed", "retrying", "needs_attention", "needs_review", "skipped", "ignored")),
        )
        .values(
            state="queued",
            generation=c.generation + 1,
            error_kind=None,
            reason=None,
            next_attempt_at=None,
            enqueued_at=utcnow(),
            updated_at=utcnow(),
        )
        .returning(c.generation)
    )
    row = result.first()
    return None if row is None else int(row[0])


async def ignore_sync(conn: AsyncConnection, *, integration_id: int, order_sync_id: int) -> bool:
    c = tables.order_sync.c
    result = await conn.execute(
        update(tables.order_sync)
        .where(c.id == order_sync_id, c.integration_id == integration_id, c.state.notin_(("booked", "booking")))
        .values(state="ignored", reason="ignored by the shop owner", updated_at=utcnow())
    )
    return bool(result.rowcount)


async def list_syncs(
    conn: AsyncConnection,
    *,
    integration_id: int,
    states: tuple[str, ...] = (),
    search: str = "",
    created_from: date | None = None,
    created_to: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[OrderSync], int]:
    """A page of an integration's order syncs, newest first, and the total count matching the filters."""
    c = tables.order_sync.c
    conditions = [c.integration_id == integration_id]
    if states:
        conditions.append(c.state.in_(states))
    if search:
        pattern = f"%{search.lower()}%"
        conditions.append(
            or_(
                func.lower(c.order_number).like(pattern),
                func.lower(c.customer_name).like(pattern),
                func.lower(c.customer_email).like(pattern),
            )
        )
    if created_from:
        conditions.append(c.created_at >= datetime.combine(created_from, datetime.min.time()).replace(tzinfo=UTC))
    if created_to:
        end = datetime.combine(created_to + timedelta(days=1), datetime.min.time()).replace(tzinfo=UTC)
        conditions.append(c.created_at < end)
    rows = (
        await conn.execute(
            select(tables.order_sync)
            .where(*conditions)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    total = (await conn.execute(select(func.count()).select_from(tables.order_sync).where(*conditions))).scalar_one()
    return [OrderSync.from_row(r) for r in rows], int(total)


async def count_by_state(conn: AsyncConnection, *, integration_id: int, states: tuple[str, ...] = ()) -> dict[str, int]:
    """Order syncs per state, of every state or only of `states` (cheap for a big shop: an index range each)."""
    c = tables.order_sync.c
    conditions = [c.integration_id == integration_id]
    if states:
        conditions.append(c.state.in_(states))
    rows = (await conn.execute(select(c.state, func.count()).where(*conditions).group_by(c.state))).all()
    return {state: int(n) for state, n in rows}


async def count_booked_since(conn: AsyncConnection, *, integration_id: int, since: datetime) -> int:
    c = tables.order_sync.c
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(tables.order_sync)
                .where(c.integration_id == integration_id, c.state == "booked", c.booked_at >= since)
            )
        ).scalar_one()
    )


async def list_stale_queued(
    conn: AsyncConnection, *, older_than: datetime, limit: int = 500, max_attempts: int = 20
) -> list[OrderSync]:
    """Across all integrations (reconcile cron): rows that should be on the queue but may not be.

    queued since before `older_than`; retrying whose `next_attempt_at` passed; booking whose lease expired.
    Rows whose recorded attempts reached `max_attempts` are left for a person (no endless loop).
    """
    c = tables.order_sync.c
    now = utcnow()
    rows = (
        await conn.execute(
            select(tables.order_sync)
            .where(
                c.attempts < max_attempts,
                or_(
                    and_(c.state == "queued", or_(c.enqueued_at.is_(None), c.enqueued_at < older_than)),
                    and_(c.state == "retrying", c.next_attempt_at < now),
                    and_(c.state == "booking", c.claimed_until < now),
                ),
            )
            .order_by(c.id)
            .limit(limit)
        )
    ).all()
    return [OrderSync.from_row(r) for r in rows]


async def mark_enqueued(conn: AsyncConnection, *, integration_id: int, order_sync_id: int) -> None:
    await conn.execute(
        update(tables.order_sync)
        .where(tables.order_sync.c.id == order_sync_id, tables.order_sync.c.integration_id == integration_id)
        .values(enqueued_at=utcnow())
    )


async def list_unnumbered_documents(
    conn: AsyncConnection,
    *,
    integration_id: int,
    document_types: tuple[str, ...],
    booked_since: datetime,
    include_initial_export: bool = True,
    limit: int = 100,
) -> list[OrderSync]:
    """Booked documents of these types that Exact has not given a number yet (as far as the row knows), newest
    first: a sales invoice is numbered when it is processed, and Exact's answer to that does not say the number."""
    c = tables.order_sync.c
    conditions = [
        c.integration_id == integration_id,
        c.state == "booked",
        c.document_type.in_(document_types),
        c.exact_document_id.is_not(None),
        or_(c.exact_document_number.is_(None), c.exact_document_number == ""),
        c.booked_at >= booked_since,
    ]
    if not include_initial_export:
        conditions.append(c.initial_export.is_(False))
    rows = (
        await conn.execute(
            select(tables.order_sync).where(*conditions).order_by(c.booked_at.desc(), c.id.desc()).limit(limit)
        )
    ).all()
    return [OrderSync.from_row(r) for r in rows]


async def set_document_number(
    conn: AsyncConnection, *, integration_id: int, order_sync_id: int, exact_document_id: str, number: str
) -> bool:
    """Store the number Exact gave a booked document later; only while the row still points at that document and
    has no number. Returns whether the row changed."""
    c = tables.order_sync.c
    result = await conn.execute(
        update(tables.order_sync)
        .where(
            c.id == order_sync_id,
            c.integration_id == integration_id,
            c.state == "booked",
            c.exact_document_id == exact_document_id,
            or_(c.exact_document_number.is_(None), c.exact_document_number == ""),
        )
        .values(exact_document_number=number)
    )
    return bool(result.rowcount)
