"""The sandbox Mijnwebwinkel: a Starlette app serving `/v1/...` like the real API, for the demo and the tests.

Same query-parameter auth (`token` + `partner_token`), same endpoints and shapes (including the live API's awkward
ones, see mww_seed.py), seeded shops with fixed demo tokens. Beside the API: a page and JSON endpoints under
`/sandbox` to change an order's status (which posts a signed webhook notice when a target is set) and to create
orders, plus fault switches (slow, 429, 500, bad token) when faults are enabled. State lives in memory per app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.sandbox.mww_controls import (
    change_status,
    create_order,
    sandbox_change_status,
    sandbox_create_order,
    sandbox_faults,
    sandbox_notify_target,
    sandbox_page,
)
from gateway.sandbox.mww_seed import (
    ORDER_STATUSES,
    SANDBOX_NO_API_TOKEN,
    SANDBOX_PARTNER_TOKEN,
    SANDBOX_SECOND_SHOP_TOKEN,
    SANDBOX_SHOP_TOKEN,
    SANDBOX_WRONG_PARTNER_TOKEN,
    SandboxOrder,
    SandboxShop,
    seeded_shops,
)
from gateway.sandbox.mww_state import Faults, Problem, SandboxState, find_order, int_param, shop_now

__all__ = [
    "SANDBOX_NO_API_TOKEN",
    "SANDBOX_PARTNER_TOKEN",
    "SANDBOX_SECOND_SHOP_TOKEN",
    "SANDBOX_SHOP_TOKEN",
    "SANDBOX_WRONG_PARTNER_TOKEN",
    "Faults",
    "SandboxState",
    "change_status",
    "create_mww_sandbox",
    "create_order",
]

MAX_LIMIT = 100


Handler = Callable[[Request, SandboxState, SandboxShop | None], Awaitable[Any]]


def _api(handler: Handler, *, partner_only: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an API handler with the fault switches and the query-parameter authentication."""

    async def endpoint(request: Request) -> Response:
        state: SandboxState = request.app.state.sandbox
        state.requests += 1
        try:
            await _apply_fault(state)
            shop = None if partner_only else _authenticate(request, state)
            if partner_only and request.query_params.get("partner_token") != SANDBOX_PARTNER_TOKEN:
                raise Problem(401, "Unauthorized", "Invalid partner token")
            return JSONResponse(await handler(request, state, shop))
        except Problem as problem:
            return problem.response()

    return endpoint


async def _apply_fault(state: SandboxState) -> None:
    mode = state.faults.take() if state.faults_enabled else None
    if mode == "slow":
        await asyncio.sleep(state.faults.seconds)
    elif mode == "429":
        raise Problem(429, "Too Many Requests", "Rate limit exceeded", {"Retry-After": "1"})
    elif mode == "500":
        raise Problem(500, "Internal Server Error", "Something went wrong")
    elif mode == "bad_token":
        raise Problem(401, "Unauthorized", "Invalid token")


def _required(shop: SandboxShop | None) -> SandboxShop:
    if shop is None:
        raise Problem(401, "Unauthorized", "Invalid token")
    return shop


def _authenticate(request: Request, state: SandboxState) -> SandboxShop:
    shop = state.shops.get(request.query_params.get("token", ""))
    if shop is None:
        raise Problem(401, "Unauthorized", "Invalid token")
    if request.query_params.get("partner_token") != shop.partner_token:
        raise Problem(403, "Forbidden", "This token was created for another partner")
    if not shop.api_access:
        raise Problem(403, "Forbidden", "API access is not available in the shop's current subscription plan")
    return shop


async def get_store(request: Request, state: SandboxState, shop: SandboxShop | None) -> Any:
    shop = _required(shop)
    return shop.store


async def list_orders(request: Request, state: SandboxState, shop: SandboxShop | None) -> Any:
    shop = _required(shop)
    params = request.query_params
    limit, offset = int_param(params, "limit", 10), int_param(params, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise Problem(400, "Bad Request", f"limit must be 1..{MAX_LIMIT} and offset >= 0")
    return [order.render() for order in _filtered(shop, params)[offset : offset + limit]]


async def count_orders(request: Request, state: SandboxState, shop: SandboxShop | None) -> Any:
    shop = _required(shop)
    return {"count": len(_filtered(shop, request.query_params))}


async def get_order(request: Request, state: SandboxState, shop: SandboxShop | None) -> Any:
    shop = _required(shop)
    return find_order(shop, request.path_params["number"]).render()


async def list_order_statuses(request: Request, state: SandboxState, shop: SandboxShop | None) -> Any:
    english = request.query_params.get("language", "nl_NL").startswith("en")
    return [
        {"status": sid, "description": en if english else nl, "credit_order": credit}
        for sid, nl, en, credit in ORDER_STATUSES
    ]


async def list_tax_regions(request: Request, state: SandboxState, shop: SandboxShop | None) -> Any:
    def region(code: str, rate: float, reduced: float | None) -> dict[str, Any]:
        overrides = [{"taxRate": reduced, "items": [{"type": "collection", "references": ["thee"]}]}] if reduced else []
        return {
            "regionCode": code,
            "taxEnabled": True,
            "taxNumber": "NL000099998B57" if code == "NL" else None,
            "taxRate": rate,
            "shippingTaxMethod": "proportional",
            "shippingTaxRate": None,
            "transactionTaxMethod": "proportional",
            "transactionTaxRate": None,
            "overrides": overrides,
        }

    # The live API wraps this list in {"regions": ...} (docs/mijnwebwinkel.md).
    return {
        "regions": [
            region("NL", 0.21, 0.09),
            region("BE", 0.21, 0.06),
            region("DE", 0.19, 0.07),
            region("FR", 0.20, 0.055),
        ]
    }


def _moment(raw: str, *, end: bool) -> str:
    """'yyyy-mm-dd hh:mm:ss' from a full stamp or a date (a date alone covers the whole day)."""
    raw = raw.strip()
    try:
        if len(raw) == 10:
            date.fromisoformat(raw)
            return f"{raw} {'23:59:59' if end else '00:00:00'}"
        datetime.strptime(raw, "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 - the API's times carry no zone
    except ValueError:
        raise Problem(400, "Bad Request", "dates must be yyyy-mm-dd or yyyy-mm-dd hh:mm:ss") from None
    return raw


def _filtered(shop: SandboxShop, params: Any) -> list[SandboxOrder]:
    orders = sorted(shop.orders.values(), key=lambda o: o.number, reverse=params.get("ordering") == "desc")
    checks: list[Callable[[SandboxOrder], bool]] = []
    if params.get("start_date"):
        start = _moment(params["start_date"], end=False)[:10]
        checks.append(lambda o: o.date.isoformat() >= start)
    if params.get("end_date"):
        end = _moment(params["end_date"], end=True)[:10]
        checks.append(lambda o: o.date.isoformat() <= end)
    if params.get("status_id"):
        status = int_param(params, "status_id", 0)
        checks.append(lambda o: o.status == status)
    if params.get("status_changed_start_date"):
        changed_from = _moment(params["status_changed_start_date"], end=False)
        checks.append(lambda o: o.status_changed >= changed_from)
    if params.get("status_changed_end_date"):
        changed_to = _moment(params["status_changed_end_date"], end=True)
        checks.append(lambda o: o.status_changed <= changed_to)
    return [o for o in orders if all(check(o) for check in checks)]


# --- The sandbox's own controls: change a status, create an order, set the webhook target, switch faults ---------


def create_mww_sandbox(
    *,
    faults_enabled: bool,
    notify_url: str | None = None,
    notify_secret: str | None = None,
    notify_transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = shop_now,
) -> Starlette:
    """A fresh sandbox (seeded shops, no faults). `notify_url` receives a webhook notice on every status change."""
    routes = [
        Route("/v1/store", _api(get_store), methods=["GET"]),
        Route("/v1/orders", _api(list_orders), methods=["GET"]),
        Route("/v1/orders/count", _api(count_orders), methods=["GET"]),
        Route("/v1/orders/{number}", _api(get_order), methods=["GET"]),
        Route("/v1/orderstatuses", _api(list_order_statuses, partner_only=True), methods=["GET"]),
        Route("/v1/tax-policy/regions", _api(list_tax_regions), methods=["GET"]),
        Route("/", lambda request: RedirectResponse("/sandbox", status_code=303), methods=["GET"]),
        Route("/sandbox", sandbox_page, name="sandbox_page", methods=["GET"]),
        Route("/sandbox/orders", sandbox_create_order, methods=["POST"]),
        Route("/sandbox/orders/{number:int}/status", sandbox_change_status, methods=["POST"]),
        Route("/sandbox/notify", sandbox_notify_target, methods=["POST"]),
        Route("/sandbox/faults", sandbox_faults, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = SandboxState(
        shops=seeded_shops(clock().date()),
        faults_enabled=faults_enabled,
        clock=clock,
        notify_url=notify_url,
        notify_secret=notify_secret,
        notify_transport=notify_transport,
    )
    return app
