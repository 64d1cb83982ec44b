"""Exact Online look-ups for the settings pages, cached per integration in `lookup_cache` for a short while.

Each list is read from Exact at most once per TTL (they cost calls from the division's budget), filtered to what a
booking may use, and dropped by `invalidate_lookups` (the settings page's "reload from Exact" button, a reconnect, a
change of administration). Items and accounts are looked up per order by the booking, not here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.clients.exact import (
    ExactClient,
    ExactDivision,
    ExactGLAccount,
    ExactItemGroup,
    ExactJournal,
    ExactPaymentCondition,
    ExactVatCode,
)
from gateway.store import status_cache

LOOKUP_TTL = dt.timedelta(minutes=15)
DIVISIONS = "divisions"
VAT_CODES = "vat_codes"
GL_ACCOUNTS = "gl_accounts"
JOURNALS = "journals"
ITEM_GROUPS = "item_groups"
PAYMENT_CONDITIONS = "payment_conditions"
KINDS = (DIVISIONS, VAT_CODES, GL_ACCOUNTS, JOURNALS, ITEM_GROUPS, PAYMENT_CONDITIONS)

T = TypeVar("T")


def _encode(record: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in dataclasses.asdict(record).items()}


def _decode(model: type[T], data: dict[str, Any]) -> T:
    values = {}
    for f in dataclasses.fields(model):  # type: ignore[arg-type]
        value = data.get(f.name)
        values[f.name] = Decimal(value) if f.type == "Decimal" and value is not None else value
    return model(**values)


async def read_lookup(conn: AsyncConnection, *, integration_id: int, kind: str) -> list[dict[str, Any]] | None:
    """The cached list, or None when absent or expired."""
    return await status_cache.read_cached(conn, integration_id=integration_id, kind=kind)


async def store_lookup(
    conn: AsyncConnection, *, integration_id: int, kind: str, records: Sequence[Any], ttl: dt.timedelta = LOOKUP_TTL
) -> None:
    value = [_encode(r) for r in records]
    await status_cache.save_cached(conn, integration_id=integration_id, kind=kind, value=value, ttl=ttl)


async def invalidate_lookups(conn: AsyncConnection, *, integration_id: int, kinds: Sequence[str] = KINDS) -> int:
    """Forget cached lists of one integration; the next read goes to Exact. Returns how many were dropped."""
    return await status_cache.delete_cached(conn, integration_id=integration_id, kinds=kinds)


async def _cached(
    engine: AsyncEngine,
    *,
    integration_id: int,
    kind: str,
    model: type[T],
    fetch: Callable[[], Awaitable[list[T]]],
    refresh: bool,
) -> list[T]:
    if not refresh:
        async with engine.connect() as conn:
            cached = await read_lookup(conn, integration_id=integration_id, kind=kind)
        if cached is not None:
            return [_decode(model, item) for item in cached]
    # Read Exact outside any transaction: a slow answer must not hold a database lock.
    records = await fetch()
    async with engine.begin() as conn:
        await store_lookup(conn, integration_id=integration_id, kind=kind, records=records)
    return records


async def divisions(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactDivision]:
    """The administrations the connected Exact user may access."""
    return await _cached(
        engine,
        integration_id=integration_id,
        kind=DIVISIONS,
        model=ExactDivision,
        fetch=client.list_divisions,
        refresh=refresh,
    )


async def vat_codes(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactVatCode]:
    """VAT codes a sales booking may use: sales or both, not blocked (OSS codes carry their country)."""

    async def fetch() -> list[ExactVatCode]:
        return [v for v in await client.list_vat_codes() if v.is_sales and not v.is_blocked]

    return await _cached(
        engine, integration_id=integration_id, kind=VAT_CODES, model=ExactVatCode, fetch=fetch, refresh=refresh
    )


async def revenue_gl_accounts(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactGLAccount]:
    """Unblocked revenue G/L accounts (type 110)."""

    async def fetch() -> list[ExactGLAccount]:
        return [a for a in await client.list_gl_accounts() if not a.is_blocked]

    return await _cached(
        engine, integration_id=integration_id, kind=GL_ACCOUNTS, model=ExactGLAccount, fetch=fetch, refresh=refresh
    )


async def sales_journals(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactJournal]:
    """Unblocked sales journals (type 20)."""

    async def fetch() -> list[ExactJournal]:
        return [j for j in await client.list_journals() if not j.is_blocked]

    return await _cached(
        engine, integration_id=integration_id, kind=JOURNALS, model=ExactJournal, fetch=fetch, refresh=refresh
    )


async def item_groups(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactItemGroup]:
    return await _cached(
        engine,
        integration_id=integration_id,
        kind=ITEM_GROUPS,
        model=ExactItemGroup,
        fetch=client.list_item_groups,
        refresh=refresh,
    )


async def payment_conditions(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactPaymentCondition]:
    return await _cached(
        engine,
        integration_id=integration_id,
        kind=PAYMENT_CONDITIONS,
        model=ExactPaymentCondition,
        fetch=client.list_payment_conditions,
        refresh=refresh,
    )
