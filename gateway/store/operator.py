"""Cross-tenant queries for the operator (CLI, metrics, notifications): overviews, syncs by state, usage.

These functions deliberately span every integration; they are never called from customer pages, which use the
tenant-scoped functions in integrations.py and orders.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow
from gateway.crypto import Cipher, DecryptionError
from gateway.store.orders import OrderSync

PENDING_STATES = ("queued", "booking", "retrying")
PROBLEM_STATES = ("failed", "needs_attention", "needs_review")
STATE_ALIASES = {"pending": PENDING_STATES, "problems": PROBLEM_STATES}
# The connection states that need the shop owner: Exact consent withdrawn or expired, shop token refused.
CONNECTION_PROBLEMS = {"exact_connection": ("reconnect_needed",), "shop_connection": ("error",)}


@dataclass(frozen=True)
class IntegrationOverview:
    """One integration as the operator sees it: who owns it, where it stands, and its orders by state."""

    id: int
    name: str
    account_email: str
    state: str
    service_level: str
    shop_name: str | None
    shop_connection: str
    exact_connection: str
    exact_division: int | None
    trial_ends_at: datetime | None
    activated_at: datetime | None
    last_polled_at: datetime | None
    last_poll_error: str | None
    orders: dict[str, int] = field(default_factory=dict)


async def list_integration_overviews(conn: AsyncConnection) -> list[IntegrationOverview]:
    i, a, o = tables.integration.c, tables.account.c, tables.order_sync.c
    counts: dict[int, dict[str, int]] = {}
    for integration_id, state, n in (
        await conn.execute(select(o.integration_id, o.state, func.count()).group_by(o.integration_id, o.state))
    ).all():
        counts.setdefault(integration_id, {})[state] = int(n)
    rows = (
        await conn.execute(
            select(tables.integration, a.email.label("account_email"))
            .join(tables.account, a.id == i.account_id)
            .order_by(i.id)
        )
    ).all()
    return [
        IntegrationOverview(
            id=r.id,
            name=r.name,
            account_email=r.account_email,
            state=r.state,
            service_level=r.service_level,
            shop_name=r.shop_name,
            shop_connection=r.shop_connection,
            exact_connection=r.exact_connection,
            exact_division=r.exact_division,
            trial_ends_at=r.trial_ends_at,
            activated_at=r.activated_at,
            last_polled_at=r.last_polled_at,
            last_poll_error=r.last_poll_error,
            orders=counts.get(r.id, {}),
        )
        for r in rows
    ]


def expand_states(states: Sequence[str]) -> tuple[str, ...]:
    """`pending` and `problems` stand for several states; other names are passed through."""
    expanded: list[str] = []
    for state in states:
        for name in STATE_ALIASES.get(state, (state,)):
            if name not in expanded:
                expanded.append(name)
    return tuple(expanded)


async def list_syncs_across(
    conn: AsyncConnection,
    *,
    states: Sequence[str],
    integration_id: int | None = None,
    error_kind: str | None = None,
    since: datetime | None = None,
    limit: int | None = 100,
) -> list[OrderSync]:
    """Order syncs in `states` across integrations (or one), most recently changed first.

    `since` keeps rows whose state last changed at or after it (for a failed row: when it failed).
    """
    c = tables.order_sync.c
    conditions: list[Any] = [c.state.in_(expand_states(states))]
    if integration_id is not None:
        conditions.append(c.integration_id == integration_id)
    if error_kind:
        conditions.append(c.error_kind == error_kind)
    if since is not None:
        conditions.append(c.updated_at >= since)
    query = select(tables.order_sync).where(*conditions).order_by(c.updated_at.desc(), c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [OrderSync.from_row(r) for r in (await conn.execute(query)).all()]


async def transition_integration(
    conn: AsyncConnection, *, integration_id: int, from_states: Sequence[str], to_state: str, **values: Any
) -> bool:
    """Move an integration to `to_state` only if it is in one of `from_states` (one atomic UPDATE)."""
    c = tables.integration.c
    result = await conn.execute(
        update(tables.integration)
        .where(c.id == integration_id, c.state.in_(tuple(from_states)))
        .values(state=to_state, updated_at=utcnow(), **values)
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class UsageRow:
    """Orders booked in one period for one integration: the billing line."""

    integration_id: int
    name: str
    account_email: str
    service_level: str
    state: str
    orders_booked: int
    credit_orders: int
    initial_export_orders: int


async def usage_report(conn: AsyncConnection, *, start: datetime, end: datetime) -> list[UsageRow]:
    """Every integration that existed before `end`, with its orders booked in [start, end) (zero included)."""
    i, a, o = tables.integration.c, tables.account.c, tables.order_sync.c
    booked = (
        select(
            o.integration_id,
            func.count().label("booked"),
            func.sum(case((o.is_credit, 1), else_=0)).label("credit"),
            func.sum(case((o.initial_export, 1), else_=0)).label("initial"),
        )
        .where(o.state == "booked", o.booked_at >= start, o.booked_at < end)
        .group_by(o.integration_id)
        .subquery()
    )
    rows = (
        await conn.execute(
            select(i.id, i.name, i.service_level, i.state, a.email, booked.c.booked, booked.c.credit, booked.c.initial)
            .join(tables.account, a.id == i.account_id)
            .outerjoin(booked, booked.c.integration_id == i.id)
            .where(i.created_at < end)
            .order_by(i.id)
        )
    ).all()
    return [
        UsageRow(
            integration_id=r.id,
            name=r.name,
            account_email=r.email,
            service_level=r.service_level,
            state=r.state,
            orders_booked=int(r.booked or 0),
            credit_orders=int(r.credit or 0),
            initial_export_orders=int(r.initial or 0),
        )
        for r in rows
    ]


async def oldest_pending_since(conn: AsyncConnection) -> datetime | None:
    """When the longest-waiting order still to be booked was queued (None when nothing waits)."""
    c = tables.order_sync.c
    query = select(func.min(func.coalesce(c.enqueued_at, c.created_at))).where(c.state.in_(PENDING_STATES))
    oldest: datetime | None = (await conn.execute(query)).scalar_one()
    return oldest


@dataclass(frozen=True)
class DigestCandidate:
    """An integration with something to tell its owner, and the owner's address."""

    integration_id: int
    name: str
    shop_name: str | None
    account_id: int
    account_email: str
    locale: str
    last_notified_at: datetime | None
    exact_connection: str
    exact_connection_error: str | None
    shop_connection: str
    shop_connection_error: str | None

    @property
    def exact_needs_consent(self) -> bool:
        return self.exact_connection in CONNECTION_PROBLEMS["exact_connection"]

    @property
    def shop_refused(self) -> bool:
        return self.shop_connection in CONNECTION_PROBLEMS["shop_connection"]


def _connection_problem() -> Any:
    i = tables.integration.c
    return or_(*(getattr(i, column).in_(values) for column, values in CONNECTION_PROBLEMS.items()))


async def list_digest_candidates(
    conn: AsyncConnection, *, now: datetime, interval: timedelta, lookback: timedelta
) -> list[DigestCandidate]:
    """Integrations not notified within `interval` that have new problem orders or a connection needing consent.

    New means changed after the last digest (or within `lookback` when none was sent yet).
    """
    i, a, o = tables.integration.c, tables.account.c, tables.order_sync.c
    cutoff = func.coalesce(i.last_notified_at, now - lookback)
    new_problems = (
        select(o.id).where(o.integration_id == i.id, o.state.in_(PROBLEM_STATES), o.updated_at > cutoff).exists()
    )
    due = or_(i.last_notified_at.is_(None), i.last_notified_at <= now - interval)
    columns = (
        i.name,
        i.shop_name,
        i.account_id,
        a.locale,
        i.exact_connection,
        i.exact_connection_error,
        i.shop_connection,
        i.shop_connection_error,
    )
    rows = (
        await conn.execute(
            select(i.id, a.email, i.last_notified_at, *columns)
            .join(tables.account, a.id == i.account_id)
            .where(due, i.state != "setup", or_(new_problems, _connection_problem()))
            .order_by(i.id)
        )
    ).all()
    return [
        DigestCandidate(
            integration_id=r.id,
            account_email=r.email,
            last_notified_at=r.last_notified_at,
            **{c.name: getattr(r, c.name) for c in columns},
        )
        for r in rows
    ]


async def claim_digest(conn: AsyncConnection, *, integration_id: int, now: datetime, interval: timedelta) -> bool:
    """Take the right to send this integration's digest: at most one per `interval`, across workers.

    The UPDATE re-checks `last_notified_at` under the row lock, so of two workers racing only one wins.
    """
    c = tables.integration.c
    result = await conn.execute(
        update(tables.integration)
        .where(c.id == integration_id, or_(c.last_notified_at.is_(None), c.last_notified_at <= now - interval))
        .values(last_notified_at=now)
    )
    return bool(result.rowcount)


async def list_new_problems(
    conn: AsyncConnection, *, integration_id: int, since: datetime, limit: int = 20
) -> tuple[list[OrderSync], int]:
    """Problem orders (failed / needs attention) of one integration changed after `since`: a page and the total."""
    c = tables.order_sync.c
    conditions = and_(c.integration_id == integration_id, c.state.in_(PROBLEM_STATES), c.updated_at > since)
    rows = (
        await conn.execute(select(tables.order_sync).where(conditions).order_by(c.updated_at.desc()).limit(limit))
    ).all()
    total = (await conn.execute(select(func.count()).select_from(tables.order_sync).where(conditions))).scalar_one()
    return [OrderSync.from_row(r) for r in rows], int(total)


async def count_secrets_by_kind(conn: AsyncConnection) -> dict[str, int]:
    c = tables.credential.c
    rows = (await conn.execute(select(c.kind, func.count()).group_by(c.kind))).all()
    return {kind: int(n) for kind, n in rows}


async def count_unreadable_secrets(conn: AsyncConnection, *, cipher: Cipher) -> int:
    """How many stored secrets `cipher` cannot decrypt: after a rotation, proof that old keys can be dropped.

    The plaintext is decrypted and discarded; it never leaves this function.
    """
    unreadable = 0
    for (token,) in (await conn.execute(select(tables.credential.c.secret))).all():
        try:
            cipher.decrypt(token)
        except DecryptionError:
            unreadable += 1
    return unreadable
