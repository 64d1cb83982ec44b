"""Exact Online look-ups for the settings pages, cached per integration in `lookup_cache` for a short while.

Each list is read from Exact at most once per TTL (they cost calls from the division's budget), filtered to what a
booking may use, and dropped by `invalidate_lookups` (the settings page's "reload from Exact" button, a reconnect, a
change of administration). Items and accounts are looked up per order by the booking, not here.

The booking's shared facts live here too: G/L account ids by code and the configured warehouse's id. One look-up per
fact: concurrent jobs of an administration take one Redis gate per kind, re-read what another job stored meanwhile,
and only then ask Exact (in one batched call); found ids become stored links (store/exact_links.py), absences and
refusals (a 404/403 from an endpoint this administration does not offer) are remembered for a while.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.booking import DIRECT_SALES_INVOICE, SETTINGS, BookingError, BookingPlan, gl_codes_needed
from gateway.booking_settings import IntegrationSettings
from gateway.clients.errors import AuthError, PermanentApiError
from gateway.clients.exact import (
    ExactClient,
    ExactDivision,
    ExactGLAccount,
    ExactItem,
    ExactItemGroup,
    ExactJournal,
    ExactPaymentCondition,
    ExactVatCode,
)
from gateway.clients.exact_batches import find_gl_accounts
from gateway.clients.exact_odata import odata_quote
from gateway.clients.exact_responses import VENDOR as EXACT
from gateway.clients.redis_gate import redis_gate
from gateway.store import exact_links, status_cache
from gateway.store.exact_links import LinkKey

LOOKUP_TTL = dt.timedelta(minutes=15)
DIVISIONS = "divisions"
VAT_CODES = "vat_codes"
GL_ACCOUNTS = "gl_accounts"
JOURNALS = "journals"
ITEM_GROUPS = "item_groups"
PAYMENT_CONDITIONS = "payment_conditions"
SALES_ITEMS = "sales_items"
WAREHOUSES_REFUSED = "refused:warehouses"
KINDS = (DIVISIONS, VAT_CODES, GL_ACCOUNTS, JOURNALS, ITEM_GROUPS, PAYMENT_CONDITIONS, SALES_ITEMS, WAREHOUSES_REFUSED)
# An absent G/L code is remembered briefly: a burst of orders shares one look-up, an account created in Exact is
# seen soon after.
ABSENT_TTL = dt.timedelta(minutes=2)
# The look-up gate: held for one or two calls; a job waits for another's look-up at most GATE_WAIT, then retries.
GATE_LEASE = 60.0
GATE_WAIT = 30.0

T = TypeVar("T")
# Reads of a list in flight in this process, by (engine, integration, kind): see `_cached`.
_IN_FLIGHT: dict[tuple[int, int, str], asyncio.Future[Any]] = {}
_KIND_MAX = 40  # lookup_cache.kind


def _encode(record: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in dataclasses.asdict(record).items()}


def _decode(model: type[T], data: dict[str, Any]) -> T:
    values = {}
    # `model` is one of the clients' frozen dataclasses; a bare TypeVar cannot say "a dataclass" to fields().
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
    redis: Redis | None = None,
) -> list[T]:
    if not refresh:
        async with engine.connect() as conn:
            cached = await read_lookup(conn, integration_id=integration_id, kind=kind)
        if cached is not None:
            return [_decode(model, item) for item in cached]
    # Single flight: concurrent jobs of one administration in this process share one read of a list not cached yet.
    key = (id(engine), integration_id, kind)
    flight = _IN_FLIGHT.get(key)
    if flight is None or refresh:
        read = _fetch_and_store(engine, integration_id=integration_id, kind=kind, model=model, fetch=fetch, redis=redis)
        flight = asyncio.ensure_future(read)
        _IN_FLIGHT[key] = flight
        flight.add_done_callback(lambda done: _IN_FLIGHT.pop(key) if _IN_FLIGHT.get(key) is done else None)
    # Shielded: a waiter cancelled (its job's timeout) does not cancel the read the others wait for.
    return list(await asyncio.shield(flight))


async def _fetch_and_store(
    engine: AsyncEngine,
    *,
    integration_id: int,
    kind: str,
    model: type[T],
    fetch: Callable[[], Awaitable[list[T]]],
    redis: Redis | None,
) -> list[T]:
    """Read the list from Exact and cache it. With `redis`, under the kind's gate for every process, and only when no
    process cached it while this one waited."""
    if redis is None:
        return await _read_and_store(engine, integration_id=integration_id, kind=kind, fetch=fetch)
    async with _gate(redis, integration_id, kind):
        async with engine.connect() as conn:
            cached = await read_lookup(conn, integration_id=integration_id, kind=kind)
        if cached is not None:
            return [_decode(model, item) for item in cached]
        return await _read_and_store(engine, integration_id=integration_id, kind=kind, fetch=fetch)


async def _read_and_store(
    engine: AsyncEngine, *, integration_id: int, kind: str, fetch: Callable[[], Awaitable[list[T]]]
) -> list[T]:
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
    *,
    engine: AsyncEngine,
    client: ExactClient,
    integration_id: int,
    refresh: bool = False,
    redis: Redis | None = None,
) -> list[ExactVatCode]:
    """VAT codes a sales booking may use: sales or both, not blocked (OSS codes carry their country). With `redis`
    (the booking job), one read for all processes when the list is not cached."""

    async def fetch() -> list[ExactVatCode]:
        return [v for v in await client.list_vat_codes() if v.is_sales and not v.is_blocked]

    return await _cached(
        engine,
        integration_id=integration_id,
        kind=VAT_CODES,
        model=ExactVatCode,
        fetch=fetch,
        refresh=refresh,
        redis=redis,
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
    *,
    engine: AsyncEngine,
    client: ExactClient,
    integration_id: int,
    refresh: bool = False,
    redis: Redis | None = None,
) -> list[ExactJournal]:
    """Unblocked sales journals (type 20). With `redis`, one read for all processes when the list is not cached."""

    async def fetch() -> list[ExactJournal]:
        return [j for j in await client.list_journals() if not j.is_blocked]

    return await _cached(
        engine,
        integration_id=integration_id,
        kind=JOURNALS,
        model=ExactJournal,
        fetch=fetch,
        refresh=refresh,
        redis=redis,
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


# ---------------------------------------------------------------- facts a booking shares with concurrent bookings


def _gate(redis: Redis, integration_id: int, kind: str) -> AbstractAsyncContextManager[None]:
    return redis_gate(
        redis,
        f"exact:lookup:{integration_id}:{kind}",
        lease=GATE_LEASE,
        wait=GATE_WAIT,
        what=f"the {kind} look-up lock",
        busy=f"another booking is still looking up {kind} in Exact",
        vendor=EXACT,
    )


def _absent_kind(kind: str, code: str) -> str:
    """The lookup_cache kind remembering that `code` is not in Exact (hashed when it would not fit the column)."""
    name = f"absent:{kind}:{code}"
    return name if len(name) <= _KIND_MAX else f"absent:{kind}:" + hashlib.sha256(code.encode()).hexdigest()[:20]


async def gl_account_ids(
    *,
    engine: AsyncEngine,
    redis: Redis,
    client: ExactClient,
    integration_id: int,
    codes: Sequence[str],
    known: Mapping[LinkKey, str],
) -> dict[LinkKey, str]:
    """The ("gl_account", code) links for `codes`: id, or "" when Exact has no such account. Looks up only what no
    job stored yet, once for all concurrent jobs (a gate per integration, a re-read inside), in one batched call."""
    links = {("gl_account", c): known[("gl_account", c)] for c in codes if known.get(("gl_account", c))}
    missing = [c for c in dict.fromkeys(codes) if ("gl_account", c) not in links]
    if not missing:
        return links
    async with _gate(redis, integration_id, "gl_account"):
        async with engine.connect() as conn:
            stored = await exact_links.get_links(
                conn, integration_id=integration_id, keys=[("gl_account", c) for c in missing]
            )
            for code in missing:
                if stored.get(("gl_account", code)):
                    links[("gl_account", code)] = stored[("gl_account", code)]
                elif (
                    await status_cache.read_cached(conn, integration_id=integration_id, kind=_absent_kind("gl", code))
                    is not None
                ):
                    links[("gl_account", code)] = ""
        ask = [c for c in missing if ("gl_account", c) not in links]
        if ask:
            found = await find_gl_accounts(client, ask)
            learned = {("gl_account", c): found[c].id for c in ask if c in found}
            async with engine.begin() as conn:
                await exact_links.save_links(conn, integration_id=integration_id, links=learned)
                for code in (c for c in ask if c not in found):
                    kind = _absent_kind("gl", code)
                    await status_cache.save_cached(
                        conn, integration_id=integration_id, kind=kind, value=[], ttl=ABSENT_TTL
                    )
            links.update(learned)
            links.update({("gl_account", c): "" for c in ask if c not in found})
    return links


async def warehouse_id(
    *, engine: AsyncEngine, redis: Redis, client: ExactClient, integration_id: int, code: str
) -> str:
    """The id of the warehouse the settings name by code; a stored link first, then one look-up for all concurrent
    jobs. A 404/403 (no warehouses in this administration or for this user) is remembered for LOOKUP_TTL, so the
    orders it stops fail at once without asking again. Raises BookingError when there is no such warehouse."""
    key = ("warehouse", code)
    async with _gate(redis, integration_id, "warehouse"):
        async with engine.connect() as conn:
            stored = (await exact_links.get_links(conn, integration_id=integration_id, keys=[key])).get(key)
            refused = await read_lookup(conn, integration_id=integration_id, kind=WAREHOUSES_REFUSED)
        if stored:
            return stored
        if refused is not None:
            raise BookingError(SETTINGS, _warehouses_refused(refused[0].get("status")))
        try:
            rows = await client.get_all(
                "inventory/Warehouses", select=("ID", "Code"), filter=f"Code eq {odata_quote(code)}", top=1
            )
        except (PermanentApiError, AuthError) as e:
            # A 403 here is this endpoint's refusal (rights, edition), not lost consent: 401 stays an AuthError.
            if e.status not in (403, 404):
                raise
            async with engine.begin() as conn:
                await status_cache.save_cached(
                    conn,
                    integration_id=integration_id,
                    kind=WAREHOUSES_REFUSED,
                    value=[{"status": e.status}],
                    ttl=LOOKUP_TTL,
                )
            raise BookingError(SETTINGS, _warehouses_refused(e.status)) from e
        if not rows:
            raise BookingError(SETTINGS, f"warehouse {code} does not exist in Exact; check the code in the settings")
        async with engine.begin() as conn:
            await exact_links.save_links(conn, integration_id=integration_id, links={key: str(rows[0]["ID"])})
        return str(rows[0]["ID"])


def _warehouses_refused(status: object) -> str:
    return (
        f"Exact does not show this administration's warehouses to the gateway (HTTP {status}); direct sales invoices "
        "need a warehouse, so check the Exact user's rights or choose sales invoice in the settings"
    )


async def shared_links(
    *,
    engine: AsyncEngine,
    redis: Redis,
    client: ExactClient,
    integration_id: int,
    plan: BookingPlan,
    settings: IntegrationSettings,
    known: Mapping[LinkKey, str],
) -> dict[LinkKey, str]:
    """`known` plus the plan's G/L accounts and warehouse, looked up once per fact for all concurrent jobs: what the
    booking's resolver then finds without a call ("" marks a G/L code Exact does not have)."""
    links = dict(known)
    codes = gl_codes_needed(plan, settings)
    links.update(
        await gl_account_ids(
            engine=engine, redis=redis, client=client, integration_id=integration_id, codes=codes, known=known
        )
    )
    code = settings.warehouse.strip()
    if plan.document_type == DIRECT_SALES_INVOICE and code and not known.get(("warehouse", code)) and not _is_id(code):
        links[("warehouse", code)] = await warehouse_id(
            engine=engine, redis=redis, client=client, integration_id=integration_id, code=code
        )
    return links


def _is_id(value: str) -> bool:
    """Whether the settings name the warehouse by its Exact id (a GUID) rather than by code."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


async def sales_items(
    *, engine: AsyncEngine, client: ExactClient, integration_id: int, refresh: bool = False
) -> list[ExactItem]:
    """Sales items to pick shipping, costs and discount items from (the first ones by code; see list_sales_items)."""
    return await _cached(
        engine,
        integration_id=integration_id,
        kind=SALES_ITEMS,
        model=ExactItem,
        fetch=client.list_sales_items,
        refresh=refresh,
    )
