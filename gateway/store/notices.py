"""Notices: the change signals (webhook, poller, initial export, operator) recorded per order, and how each one
moves the order's sync row. Idempotent on (integration, dedupe key); the caller enqueues after commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow
from gateway.db import insert_ignore
from gateway.store.orders import ACTIVE_STATES, OrderSync, get_sync_by_number, update_sync


@dataclass(frozen=True)
class NoticeOutcome:
    """What the pipeline did with one notice. `enqueue` says whether the caller must enqueue after commit."""

    result: str  # queued | skipped | duplicate | already_booked | ignored
    order_sync_id: int | None
    generation: int
    reason: str | None

    @property
    def enqueue(self) -> bool:
        return self.result == "queued"


async def record_notice(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_number: str,
    status_id: int | None,
    source: str,
    dedupe_key: str,
    selected_statuses: tuple[int, ...] | frozenset[int],
    initial_export: bool = False,
    now: datetime | None = None,
    skip_reason: str | None = None,
) -> NoticeOutcome:
    """Record one notice and move the order's sync row; idempotent on (integration, dedupe_key).

    Must run in the caller's transaction; the caller enqueues after commit when `outcome.enqueue`.
    `skip_reason` records the notice as skipped whatever its status (e.g. the integration is paused).
    """
    now = now or utcnow()
    event_id = await insert_ignore(
        conn,
        tables.order_event,
        {
            "integration_id": integration_id,
            "order_number": order_number,
            "status_id": status_id,
            "source": source,
            "dedupe_key": dedupe_key[:120],
            "result": "pending",
            "received_at": now,
        },
        conflict=("integration_id", "dedupe_key"),
    )
    if event_id is None:
        existing = await get_sync_by_number(conn, integration_id=integration_id, order_number=order_number)
        return NoticeOutcome(
            "duplicate", existing.id if existing else None, existing.generation if existing else 0, "duplicate notice"
        )
    outcome = await _apply_notice(
        conn,
        integration_id=integration_id,
        order_number=order_number,
        status_id=status_id,
        selected=status_id in selected_statuses and skip_reason is None,
        initial_export=initial_export,
        now=now,
        skip_reason=skip_reason,
    )
    await conn.execute(
        update(tables.order_event)
        .where(tables.order_event.c.id == event_id)
        .values(result=outcome.result, reason=outcome.reason, order_sync_id=outcome.order_sync_id)
    )
    return outcome


@dataclass(frozen=True)
class Notice:
    """One notice for `record_notices` (the arguments of `record_notice`)."""

    integration_id: int
    order_number: str
    status_id: int | None
    source: str
    dedupe_key: str
    selected_statuses: tuple[int, ...] | frozenset[int]
    initial_export: bool = False
    skip_reason: str | None = None

    @property
    def selected(self) -> bool:
        return self.status_id in self.selected_statuses and self.skip_reason is None


async def record_notices(
    conn: AsyncConnection, *, notices: list[Notice], now: datetime | None = None
) -> list[NoticeOutcome]:
    """`record_notice` for many notices at once, with the same outcomes as calling it for each in order, in a few
    statements: one insert for the events, one for the new orders' sync rows, one update of the events. Orders that
    already have a row (or get several notices) go through the one-by-one state transitions."""
    if not notices:
        return []
    now = now or utcnow()
    keys = [(n.integration_id, n.dedupe_key[:120]) for n in notices]
    first_of_key: dict[tuple[int, str], int] = {}
    for index, key in enumerate(keys):
        first_of_key.setdefault(key, index)
    event_ids = await _insert_events(conn, notices, sorted(first_of_key.values()), now)
    fresh = [i for i, key in enumerate(keys) if first_of_key[key] == i and key in event_ids]
    outcomes = await _insert_new_syncs(conn, notices, fresh, now)
    created_by = {(notices[i].integration_id, notices[i].order_number): i for i in outcomes}
    for index in fresh:
        if index not in outcomes:
            n = notices[index]
            outcomes[index] = await _apply_notice(
                conn,
                integration_id=n.integration_id,
                order_number=n.order_number,
                status_id=n.status_id,
                selected=n.selected,
                initial_export=n.initial_export,
                now=now,
                skip_reason=n.skip_reason,
            )
    await _finish_events(conn, [(event_ids[keys[i]], outcomes[i]) for i in fresh])
    duplicates = [i for i in range(len(notices)) if i not in outcomes]
    outcomes.update(await _duplicate_outcomes(conn, notices, duplicates, created_by))
    return [outcomes[i] for i in range(len(notices))]


def _dialect_insert(conn: AsyncConnection, table: Any) -> Any:
    return sqlite.insert(table) if conn.dialect.name == "sqlite" else postgresql.insert(table)


async def _insert_events(
    conn: AsyncConnection, notices: list[Notice], indexes: list[int], now: datetime
) -> dict[tuple[int, str], int]:
    c = tables.order_event.c
    rows = [
        {
            "integration_id": notices[i].integration_id,
            "order_number": notices[i].order_number,
            "status_id": notices[i].status_id,
            "source": notices[i].source,
            "dedupe_key": notices[i].dedupe_key[:120],
            "result": "pending",
            "received_at": now,
        }
        for i in indexes
    ]
    # One cached single-row statement with a list of rows: SQLAlchemy batches it ("insertmanyvalues") without
    # compiling a new multi-row statement for every batch size.
    stmt = _dialect_insert(conn, tables.order_event).on_conflict_do_nothing(
        index_elements=["integration_id", "dedupe_key"]
    )
    result = await conn.execute(stmt.returning(c.id, c.integration_id, c.dedupe_key), rows)
    return {(r.integration_id, r.dedupe_key): int(r.id) for r in result}


async def _insert_new_syncs(
    conn: AsyncConnection, notices: list[Notice], fresh: list[int], now: datetime
) -> dict[int, NoticeOutcome]:
    """Insert the sync row of each order's first fresh notice; those whose order had no row are done."""
    first_of_order: dict[tuple[int, str], int] = {}
    for index in fresh:
        first_of_order.setdefault((notices[index].integration_id, notices[index].order_number), index)
    if not first_of_order:
        return {}
    planned: dict[int, tuple[str, str | None]] = {}
    rows = []
    for index in first_of_order.values():
        n = notices[index]
        state = "queued" if n.selected else "skipped"
        reason = None if n.selected else n.skip_reason or f"status {n.status_id} is not one of the selected statuses"
        planned[index] = (state, reason)
        rows.append(
            {
                "integration_id": n.integration_id,
                "order_number": n.order_number,
                "state": state,
                "status_id": n.status_id,
                "reason": reason,
                "initial_export": n.initial_export,
                "enqueued_at": now if n.selected else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    c = tables.order_sync.c
    stmt = _dialect_insert(conn, tables.order_sync).on_conflict_do_nothing(
        index_elements=["integration_id", "order_number"]
    )
    created = {
        (r.integration_id, r.order_number): int(r.id)
        for r in await conn.execute(stmt.returning(c.id, c.integration_id, c.order_number), rows)
    }
    return {
        index: NoticeOutcome(planned[index][0], created[order], 0, planned[index][1])
        for order, index in first_of_order.items()
        if order in created
    }


async def _finish_events(conn: AsyncConnection, done: list[tuple[int, NoticeOutcome]]) -> None:
    if not done:
        return
    stmt = (
        update(tables.order_event)
        .where(tables.order_event.c.id == bindparam("event_id"))
        .values(result=bindparam("new_result"), reason=bindparam("new_reason"), order_sync_id=bindparam("sync_id"))
    )
    await conn.execute(
        stmt,
        [
            {"event_id": event_id, "new_result": o.result, "new_reason": o.reason, "sync_id": o.order_sync_id}
            for event_id, o in done
        ],
    )


async def _duplicate_outcomes(
    conn: AsyncConnection, notices: list[Notice], indexes: list[int], created_by: dict[tuple[int, str], int]
) -> dict[int, NoticeOutcome]:
    """A duplicate names the order's row as it was at that point: none yet if a later notice of the batch made it."""
    outcomes = {}
    for index in indexes:
        n = notices[index]
        existing = await get_sync_by_number(conn, integration_id=n.integration_id, order_number=n.order_number)
        if created_by.get((n.integration_id, n.order_number), -1) > index:
            existing = None
        outcomes[index] = NoticeOutcome(
            "duplicate", existing.id if existing else None, existing.generation if existing else 0, "duplicate notice"
        )
    return outcomes


async def _apply_notice(
    conn: AsyncConnection,
    *,
    integration_id: int,
    order_number: str,
    status_id: int | None,
    selected: bool,
    initial_export: bool,
    now: datetime,
    skip_reason: str | None = None,
) -> NoticeOutcome:
    state = "queued" if selected else "skipped"
    reason = None if selected else skip_reason or f"status {status_id} is not one of the selected statuses"
    new_id = await insert_ignore(
        conn,
        tables.order_sync,
        {
            "integration_id": integration_id,
            "order_number": order_number,
            "state": state,
            "status_id": status_id,
            "reason": reason,
            "initial_export": initial_export,
            "enqueued_at": now if selected else None,
            "created_at": now,
            "updated_at": now,
        },
        conflict=("integration_id", "order_number"),
    )
    if new_id is not None:
        return NoticeOutcome(state, new_id, 0, reason)
    sync = await _lock_sync(conn, integration_id=integration_id, order_number=order_number)
    if sync.state == "booked":
        return NoticeOutcome(
            "already_booked",
            sync.id,
            sync.generation,
            f"already booked as {sync.exact_document_number or sync.exact_document_id}; "
            f"a later status change does not book it again",
        )
    if sync.state == "ignored":
        return NoticeOutcome("ignored", sync.id, sync.generation, "the order is ignored")
    if not selected:
        if sync.state == "skipped":
            await update_sync(conn, sync.id, status_id=status_id, reason=reason, now=now)
        return NoticeOutcome("skipped", sync.id, sync.generation, reason)
    if sync.state in ACTIVE_STATES:
        # Already on its way; enqueueing again is a no-op thanks to the deterministic job id, and heals a lost job.
        await update_sync(conn, sync.id, status_id=status_id, now=now)
        return NoticeOutcome("queued", sync.id, sync.generation, "already queued")
    # The notice that first queues an order decides whether it is an initial-export order (invoice never e-mailed):
    # an order the export read in another status and that reaches a selected status later is a live order, with
    # every live setting. Once queued, the flag stays whatever notice re-queues it.
    export_flag = {"initial_export": initial_export} if sync.state == "skipped" else {}
    await update_sync(
        conn,
        sync.id,
        state="queued",
        status_id=status_id,
        reason=None,
        enqueued_at=now,
        next_attempt_at=None,
        now=now,
        **export_flag,
    )
    return NoticeOutcome("queued", sync.id, sync.generation, None)


async def _lock_sync(conn: AsyncConnection, *, integration_id: int, order_number: str) -> OrderSync:
    query = select(tables.order_sync).where(
        tables.order_sync.c.integration_id == integration_id, tables.order_sync.c.order_number == order_number
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return OrderSync.from_row((await conn.execute(query)).one())
