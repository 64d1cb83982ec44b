"""MijnwebwinkelClient: the Mijnwebwinkel (MyOnlineStore) REST API over an injected httpx.AsyncClient.

Both tokens travel as query parameters (`token`, `partner_token`; vendor spec), so no URL with a query string ever
reaches a log line or an error message: errors name the path only, and `gateway.logs.redact` scrubs the rest.
No retry loops here (one retry policy, in the caller); no SQL (the stored shop token is read by
`shop_connection.mww_client_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import weakref
from collections.abc import AsyncIterator, Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx
from redis.asyncio import Redis

from gateway.clients.errors import (
    AuthError,
    NotFoundError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    ValidationError,
    body_excerpt,
    error_class,
    retry_after_seconds,
)
from gateway.clients.mijnwebwinkel_models import (
    VENDOR,
    MwwOrder,
    MwwOrderChange,
    MwwOrderStatus,
    MwwStore,
    MwwTaxRegion,
)
from gateway.clients.redis_gate import redis_gate

PAGE_LIMIT = 100  # the API's maximum `limit`
REQUEST_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# The per-shop gate: a Redis lock lives at most this long (a crashed holder frees the shop after it)...
IN_FLIGHT_LEASE_SECONDS = 30.0
# ...and a caller waits at most this long for it before giving up with a TransientApiError.
IN_FLIGHT_WAIT_SECONDS = 30.0
_ORDER_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,40}$")  # test orders carry a "T-" suffix (docs/mijnwebwinkel.md)

# Process-local part of the gate, one lock per (event loop, shop key); asyncio locks belong to one loop.
_local_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


class MijnwebwinkelAuthError(AuthError):
    """401/403 from Mijnwebwinkel. `reason` tells the token page what to say:

    invalid_token (unknown, revoked or expired), wrong_partner (the token was made for another partner in the
    shop's token form), no_api_access (the shop's plan has no API), forbidden (refused for another reason).
    """

    vendor = VENDOR

    def __init__(self, message: str, *, status: int | None, reason: str) -> None:
        super().__init__(message, status=status, vendor=VENDOR)
        self.reason = reason


def _local_lock(key: str) -> asyncio.Lock:
    per_loop = _local_locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(key, asyncio.Lock())


class MijnwebwinkelClient:
    """One shop's view of the API. Calls to one shop never overlap: see `_in_flight` and docs/mijnwebwinkel.md."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        partner_token: str,
        shop_token: str,
        shop_key: str | None = None,
        redis: Redis | None = None,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._partner_token = partner_token
        self._shop_token = shop_token
        # The gate's key names the shop without revealing its token: the integration id when known, else a digest
        # that stays in this process.
        self._shop_key = shop_key or "token-" + hashlib.sha256(shop_token.encode()).hexdigest()[:16]
        self._redis = redis if shop_key else None
        self.calls = 0

    def __repr__(self) -> str:  # never show a token
        return f"MijnwebwinkelClient(base_url={self._base_url!r}, shop_key={self._shop_key!r})"

    async def get_store(self) -> MwwStore:
        return MwwStore.from_api(await self._get("/store"))

    async def get_order(self, number: str) -> MwwOrder:
        number = str(number).strip()
        if not _ORDER_NUMBER.match(number):
            raise ValidationError(f"'{number[:40]}' is not a Mijnwebwinkel order number", vendor=VENDOR)
        return MwwOrder.from_api(await self._get(f"/orders/{quote(number)}"))

    async def list_changed_orders(
        self, *, since: str, offset: int = 0, limit: int = PAGE_LIMIT
    ) -> list[MwwOrderChange]:
        """Orders whose status changed at or after `since` ('yyyy-mm-dd hh:mm:ss', shop time), by order number."""
        params = {"status_changed_start_date": since, "ordering": "asc", **_page(offset, limit)}
        return [MwwOrderChange.from_api(item) for item in _listing(await self._get("/orders", params), "orders")]

    async def list_orders(self, *, start_date: date, offset: int = 0, limit: int = PAGE_LIMIT) -> list[MwwOrderChange]:
        """Orders placed on or after `start_date`, by order number (the initial export walks these)."""
        params = {"start_date": start_date.isoformat(), "ordering": "asc", **_page(offset, limit)}
        return [MwwOrderChange.from_api(item) for item in _listing(await self._get("/orders", params), "orders")]

    async def list_orders_placed(
        self, *, start_date: date, end_date: date, offset: int = 0, limit: int = PAGE_LIMIT
    ) -> list[MwwOrder]:
        """Orders placed from `start_date` to `end_date` (both included; the order date), in full, by number: the
        list answers whole orders, so a month costs one call per 100 orders (books check)."""
        params = {
            "start_date": start_date.isoformat(),
            "end_date": end_date.isoformat(),
            "ordering": "asc",
            **_page(offset, limit),
        }
        return [MwwOrder.from_api(item) for item in _listing(await self._get("/orders", params), "orders")]

    async def count_orders(self, **filters: Any) -> int:
        """`orders/count` with the list's filters (start_date, status_id, status_changed_start_date, ...)."""
        data = await self._get("/orders/count", {k: _param(v) for k, v in filters.items() if v is not None})
        count = data.get("count") if isinstance(data, Mapping) else None
        if isinstance(count, bool) or not str(count or "").strip().isdigit():
            raise PermanentApiError("Mijnwebwinkel orders/count answered without a count", vendor=VENDOR)
        return int(str(count).strip())

    async def list_order_statuses(self) -> list[MwwOrderStatus]:
        """The platform's order statuses; the vendor spec declares this endpoint partner-token only."""
        data = await self._get("/orderstatuses", partner_only=True)
        return [MwwOrderStatus.from_api(item) for item in _listing(data, "orderstatuses")]

    async def list_tax_regions(self) -> list[MwwTaxRegion]:
        # The live API wraps this list as {"regions": [...]}; the spec shows a bare array. Accept both.
        return [MwwTaxRegion.from_api(item) for item in _listing(await self._get("/tax-policy/regions"), "regions")]

    async def _get(self, path: str, params: Mapping[str, Any] | None = None, *, partner_only: bool = False) -> Any:
        query = {**(params or {}), "partner_token": self._partner_token}
        if not partner_only:
            query["token"] = self._shop_token
        async with self._in_flight():
            self.calls += 1
            try:
                response = await self._http.get(self._base_url + path, params=query, timeout=REQUEST_TIMEOUT)
            except httpx.TimeoutException as e:
                raise TransientApiError(f"Mijnwebwinkel did not answer in time (GET {path})", vendor=VENDOR) from e
            except httpx.TransportError as e:
                raise TransientApiError(
                    f"Mijnwebwinkel could not be reached (GET {path}: {type(e).__name__})", vendor=VENDOR
                ) from e
        return _answer(response, path)

    @contextlib.asynccontextmanager
    async def _in_flight(self) -> AsyncIterator[None]:
        """At most one request per shop at a time: an asyncio lock in this process, plus a Redis lock across
        processes when the client was built with one (the worker's clients are)."""
        async with _local_lock(self._shop_key):
            if self._redis is None:
                yield
                return
            async with redis_gate(
                self._redis,
                f"mww:in-flight:{self._shop_key}",
                lease=IN_FLIGHT_LEASE_SECONDS,
                wait=IN_FLIGHT_WAIT_SECONDS,
                what="the per-shop request gate",
                busy="another request to this shop is still running; try again",
                vendor=VENDOR,
            ):
                yield


def _page(offset: int, limit: int) -> dict[str, int]:
    return {"offset": max(0, int(offset)), "limit": min(PAGE_LIMIT, max(1, int(limit)))}


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _listing(data: Any, key: str) -> list[Any]:
    """List endpoints answer with a bare JSON array (spec); tolerate one wrapping object, as the live API does."""
    if isinstance(data, Mapping) and isinstance(data.get(key), list):
        data = data[key]
    if not isinstance(data, list):
        raise PermanentApiError(f"Mijnwebwinkel answered {key} with something that is not a list", vendor=VENDOR)
    return data


# How a failed answer is put to a shop owner, by error class.
_WHAT_HAPPENED = {
    TransientApiError: "is unavailable",
    NotFoundError: "has no such resource",
    ValidationError: "rejected the request",
}


def _answer(response: httpx.Response, path: str) -> Any:
    """Map one response to data or to the error tree; messages name the path, never the query string."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PermanentApiError(
                f"Mijnwebwinkel answered GET {path} with invalid JSON (HTTP {status})", status=status, vendor=VENDOR
            ) from e
    detail = body_excerpt(response)
    where = f"GET {path}: HTTP {status}" + (f" {detail}" if detail else "")
    if status in (401, 403):
        reason = _auth_reason(status, detail)
        raise MijnwebwinkelAuthError(f"Mijnwebwinkel refused the shop token ({where})", status=status, reason=reason)
    if status == 429:
        raise RateLimitedError(
            f"Mijnwebwinkel rate limit reached ({where})", retry_after=retry_after_seconds(response), vendor=VENDOR
        )
    kind = error_class(status)
    message = f"Mijnwebwinkel {_WHAT_HAPPENED.get(kind, 'answered unexpectedly')} ({where})"
    if kind is TransientApiError:
        raise TransientApiError(message, status=status, vendor=VENDOR, retry_after=retry_after_seconds(response))
    raise kind(message, status=status, vendor=VENDOR)


def _auth_reason(status: int, detail: str) -> str:
    # The live status codes and bodies for a bad token are undocumented (docs/mijnwebwinkel.md, "Token errors");
    # read the problem text for the two causes shop owners hit most.
    text = detail.lower()
    if "partner" in text:
        return "wrong_partner"
    if any(word in text for word in ("plan", "subscription", "abonnement", "premium", "package", "not available")):
        return "no_api_access"
    return "invalid_token" if status == 401 else "forbidden"
