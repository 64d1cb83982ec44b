"""Integrations (the tenant: one shop + one Exact administration), their settings and VAT/ledger mappings.

Functions take `conn` first and everything else keyword-only; tenant reads take `integration_id` and, from pages,
`account_id` too, so one account never sees another's integration.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables

# The booking settings live with the booking code; imported here under their old address for existing importers.
from gateway.booking_settings import (
    EU_VAT_MODES as EU_VAT_MODES,
    INSERTION_TYPES as INSERTION_TYPES,
    INVOICE_STATUSES as INVOICE_STATUSES,
    NOT_USED as NOT_USED,
    IntegrationSettings as IntegrationSettings,
    VatMapping as VatMapping,
)
from gateway.clock import utcnow
from gateway.db import upsert

SERVICE_LEVELS = ("basic", "pro", "premium")


@dataclass(frozen=True)
class Integration:
    id: int
    account_id: int
    name: str
    state: str
    service_level: str
    wizard_step: str
    shop_name: str | None
    shop_country: str | None
    shop_connection: str
    shop_connection_error: str | None
    poll_cursor: str | None
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    last_poll_error: str | None
    exact_country: str | None
    exact_division: int | None
    exact_division_name: str | None
    exact_user_name: str | None
    exact_connection: str
    exact_connection_error: str | None
    settings: IntegrationSettings = field(default_factory=IntegrationSettings)
    trial_ends_at: datetime | None = None
    activated_at: datetime | None = None
    last_notified_at: datetime | None = None
    created_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.state == "active"

    @property
    def is_premium(self) -> bool:
        return self.service_level == "premium"

    @classmethod
    def from_row(cls, row: Any) -> Integration:
        data = dict(row._mapping)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names and k != "settings"}
        return cls(settings=IntegrationSettings.from_json(data.get("settings")), **values)


def hash_webhook_key(key: str) -> str:
    """Webhook keys are stored hashed: a leaked database does not reveal working webhook URLs."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_integration(
    conn: AsyncConnection, *, account_id: int, name: str = "", trial_days: int = 30, service_level: str = "pro"
) -> Integration:
    now = utcnow()
    result = await conn.execute(
        tables.integration.insert()
        .values(
            account_id=account_id,
            name=name,
            state="setup",
            service_level=service_level,
            settings={},
            trial_ends_at=now + timedelta(days=trial_days),
            created_at=now,
            updated_at=now,
        )
        .returning(tables.integration)
    )
    return Integration.from_row(result.one())


async def get_integration(
    conn: AsyncConnection, *, integration_id: int, account_id: int | None = None
) -> Integration | None:
    """One integration; with `account_id` (pages) only if that account owns it."""
    query = select(tables.integration).where(tables.integration.c.id == integration_id)
    if account_id is not None:
        query = query.where(tables.integration.c.account_id == account_id)
    row = (await conn.execute(query)).first()
    return None if row is None else Integration.from_row(row)


async def get_integration_or_raise(conn: AsyncConnection, *, integration_id: int) -> Integration:
    found = await get_integration(conn, integration_id=integration_id)
    if found is None:
        raise LookupError(f"integration {integration_id} does not exist")
    return found


async def get_integration_by_webhook_key(conn: AsyncConnection, *, webhook_key: str) -> Integration | None:
    row = (
        await conn.execute(
            select(tables.integration).where(tables.integration.c.webhook_key_hash == hash_webhook_key(webhook_key))
        )
    ).first()
    return None if row is None else Integration.from_row(row)


async def list_integrations(conn: AsyncConnection, *, account_id: int | None = None) -> list[Integration]:
    """An account's integrations, or every integration (operator, poller) when account_id is None."""
    query = select(tables.integration).order_by(tables.integration.c.id)
    if account_id is not None:
        query = query.where(tables.integration.c.account_id == account_id)
    return [Integration.from_row(r) for r in (await conn.execute(query)).all()]


def due_integrations(*, due_by: datetime, limit: int) -> Select[tuple[int, datetime | None]]:
    """The due-shop query: active, connected shops whose `next_poll_at` is before `due_by` (or unset), with it, most
    overdue first."""
    c = tables.integration.c
    return (
        select(c.id, c.next_poll_at)
        .where(
            c.state == "active",
            c.shop_connection == "connected",
            or_(c.next_poll_at.is_(None), c.next_poll_at <= due_by),
        )
        .order_by(c.next_poll_at.nulls_first(), c.id)
        .limit(limit)
    )


async def claim_due_integrations(
    conn: AsyncConnection, *, due_by: datetime, lease_until: datetime, limit: int
) -> list[tuple[int, datetime | None]]:
    """Claim up to `limit` shops due before `due_by` (`due_integrations`) by moving their `next_poll_at` to
    `lease_until`; return (id, when it was due). Across all integrations (poller).

    The poll round sets `next_poll_at` again when it ends; a claim whose job was lost simply runs out at
    `lease_until` and the shop is due again. PostgreSQL skips rows another scheduler holds (FOR UPDATE SKIP LOCKED);
    SQLite ignores the clause, and its BEGIN IMMEDIATE (db.py) serialises writers, which is the same claim there.
    The caller commits, then enqueues.
    """
    due = due_integrations(due_by=due_by, limit=limit).with_for_update(skip_locked=True)
    claims = [(int(r.id), r.next_poll_at) for r in (await conn.execute(due)).all()]
    if claims:
        c = tables.integration.c
        ids = [i for i, _ in claims]
        await conn.execute(update(tables.integration).where(c.id.in_(ids)).values(next_poll_at=lease_until))
    return claims


async def update_integration(conn: AsyncConnection, *, integration_id: int, **values: Any) -> None:
    """Set columns of one integration (state, connection fields, cursor, ...). `settings` takes IntegrationSettings."""
    if isinstance(values.get("settings"), IntegrationSettings):
        values["settings"] = values["settings"].to_json()
    await conn.execute(
        update(tables.integration)
        .where(tables.integration.c.id == integration_id)
        .values(**values, updated_at=utcnow())
    )


async def save_settings(conn: AsyncConnection, *, integration_id: int, settings: IntegrationSettings) -> None:
    await update_integration(conn, integration_id=integration_id, settings=settings)


async def list_vat_mappings(conn: AsyncConnection, *, integration_id: int) -> dict[str, VatMapping]:
    rows = (
        await conn.execute(
            select(tables.vat_mapping)
            .where(tables.vat_mapping.c.integration_id == integration_id)
            .order_by(tables.vat_mapping.c.category)
        )
    ).all()
    return {r.category: VatMapping(r.category, r.vat_code, r.gl_account, bool(r.seen_in_orders)) for r in rows}


async def save_vat_mapping(
    conn: AsyncConnection, *, integration_id: int, category: str, vat_code: str | None, gl_account: str | None
) -> None:
    now = utcnow()
    await upsert(
        conn,
        tables.vat_mapping,
        {
            "integration_id": integration_id,
            "category": category,
            "vat_code": vat_code,
            "gl_account": gl_account,
            "updated_at": now,
        },
        conflict=("integration_id", "category"),
        update={"vat_code": vat_code, "gl_account": gl_account, "updated_at": now},
    )


async def note_vat_category_seen(conn: AsyncConnection, *, integration_id: int, category: str) -> None:
    """Remember a category an order used, so the settings page lists it even before it is mapped."""
    now = utcnow()
    await upsert(
        conn,
        tables.vat_mapping,
        {"integration_id": integration_id, "category": category, "seen_in_orders": True, "updated_at": now},
        conflict=("integration_id", "category"),
        update={"seen_in_orders": True},
    )
