"""The two sandboxes served as separate processes for the proof, with bench-only controls under `/_proof`.

`python -m bench.sandboxes mww --port P` / `python -m bench.sandboxes exact --port P [--minutely N --daily N]` serve
the project's own sandbox apps (gateway/sandbox/*) with faults enabled, plus routes the proof needs to steer them
at scale: add shops and orders in bulk, revoke and restore a shop token, add Exact administrations, move the Exact
clock, change Exact's limits, revoke a grant, and count the booked documents per YourRef. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.exact_records import DivisionState
from gateway.sandbox.exact_seed import DivisionSeed
from gateway.sandbox.mijnwebwinkel import create_mww_sandbox
from gateway.sandbox.mww_seed import DOMESTIC_LINES, SANDBOX_PARTNER_TOKEN, Customer, Line, SandboxOrder, SandboxShop

PROOF_CLIENT_ID = "proof-gateway"
PROOF_CLIENT_SECRET = "proof-client-secret-0001"  # noqa: S105 - a loopback sandbox value, not a real secret
MAX_BULK = 10_000
DOCUMENT_IDS = {"SalesEntries": "EntryID", "SalesInvoices": "InvoiceID", "SalesOrders": "OrderID"}


async def _json(request: Request) -> dict[str, Any]:
    data = json.loads(await request.body() or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _store(name: str) -> dict[str, Any]:
    slug = name.lower().replace(" ", "")
    return {
        "id": f"7e57ab1e-0000-4000-8000-{zlib.crc32(slug.encode()):012d}",
        "name": name,
        "primary_domain": f"https://www.{slug}.example",
        "open": True,
        "version": "Premium",
        "currency": "EUR",
        "prices_include_tax": True,
        "available_business_models": "ALL",
        "region_code": "NL",
    }


def proof_order(
    number: int, *, clock_now: Any, status: int, customer: Customer, lines: tuple[Line, ...]
) -> SandboxOrder:
    now = clock_now
    return SandboxOrder(
        number=number,
        date=now.date(),
        time=now.strftime("%H:%M:%S"),
        status=status,
        status_changed=now.strftime("%Y-%m-%d %H:%M:%S"),
        customer=customer,
        lines=lines,
    )


def _customer(index: int) -> Customer:
    return Customer(f"Proef Klant {index}", f"klant{index}@proof.test", "NL", "Utrecht")


async def add_shops(request: Request) -> Response:
    """{"tokens": [...]}: a working shop (this partner, API access, no orders) per new token."""
    state = request.app.state.sandbox
    data = await _json(request)
    for token in [str(t) for t in data.get("tokens", [])][:MAX_BULK]:
        if token not in state.shops:
            state.shops[token] = SandboxShop(token, SANDBOX_PARTNER_TOKEN, True, _store(f"Proef {token[-6:]}"), {})
    return JSONResponse({"shops": len(state.shops)})


async def add_orders(request: Request) -> Response:
    """{"shop_token", "numbers": [...], "status": 2, "lines": "domestic" | [[desc, sku, qty, amount, rate], ...],
    "customer": {"name", "email"}}: create (or replace) orders with the given numbers."""
    state = request.app.state.sandbox
    data = await _json(request)
    shop = state.shops.get(str(data.get("shop_token")))
    if shop is None:
        return JSONResponse({"error": "unknown shop"}, status_code=404)
    lines = _lines(data.get("lines", "domestic"))
    given = data.get("customer")
    numbers = [int(n) for n in data.get("numbers", [])][:MAX_BULK]
    now = state.clock()
    for n in numbers:
        customer = _customer(n % 20)
        if isinstance(given, dict):
            customer = Customer(str(given.get("name", "")), str(given.get("email", "")), "NL", "Utrecht")
        shop.orders[n] = proof_order(
            n, clock_now=now, status=int(data.get("status", 2)), customer=customer, lines=lines
        )
    return JSONResponse({"created": len(numbers)}, status_code=201)


async def revoke_shop_token(request: Request) -> Response:
    """{"token", "new_token"}: the shop token is revoked; the shop answers only to `new_token` from now on (the
    owner made a new one), or to nobody when it is empty."""
    state = request.app.state.sandbox
    data = await _json(request)
    shop = state.shops.pop(str(data.get("token")), None)
    if shop is None:
        return JSONResponse({"error": "unknown shop"}, status_code=404)
    if data.get("new_token"):
        shop.token = str(data["new_token"])
        state.shops[shop.token] = shop
    return JSONResponse({"shops": len(state.shops)})


async def mww_stats(request: Request) -> Response:
    state = request.app.state.sandbox
    return JSONResponse({"requests": state.requests, "shops": len(state.shops)})


def mww_app() -> Starlette:
    """The sandbox Mijnwebwinkel with faults on, plus /_proof/{shops,orders,revoke,stats}."""
    app = create_mww_sandbox(faults_enabled=True)
    app.router.routes += [
        Route("/_proof/shops", add_shops, methods=["POST"]),
        Route("/_proof/orders", add_orders, methods=["POST"]),
        Route("/_proof/revoke", revoke_shop_token, methods=["POST"]),
        Route("/_proof/stats", mww_stats, methods=["GET"]),
    ]
    return app


def _lines(spec: Any) -> tuple[Line, ...]:
    """ "domestic" (the demo's 21 % + 9 % order) or explicit article lines [description, sku, quantity, incl, rate]."""
    if spec == "domestic" or not isinstance(spec, list):
        return DOMESTIC_LINES
    lines = []
    for index, item in enumerate(spec[:1000]):
        kind = str(item[5]) if len(item) > 5 else "article"
        description, sku, quantity, amount, rate = item[:5]
        lines.append(Line(kind, str(description), ((str(amount), str(rate)),), int(quantity), sku, 1000 + index))
    return tuple(lines)


class OffsetClock:
    """The Exact sandbox's clock: real time plus an offset the proof can move forward (token expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def add_divisions(request: Request) -> Response:
    """{"codes": [...]}: a freshly seeded administration per new code."""
    sandbox = request.app.state.sandbox
    data = await _json(request)
    for code in [int(c) for c in data.get("codes", [])][:MAX_BULK]:
        if code not in sandbox.divisions:
            seed = DivisionSeed(code, f"Proef administratie {code}", vat_number=f"NL{code:09d}B01")
            sandbox.divisions[code] = DivisionState.fresh(seed)
    return JSONResponse({"divisions": len(sandbox.divisions)})


async def move_clock(request: Request) -> Response:
    """{"advance": seconds}: Exact's clock moves on (tokens age, minutes and days turn)."""
    clock: OffsetClock = request.app.state.proof_clock
    clock.offset += float((await _json(request)).get("advance", 0))
    return JSONResponse({"offset": clock.offset})


async def set_limits(request: Request) -> Response:
    """{"minutely", "daily"}: Exact's call limits per administration from now on."""
    sandbox = request.app.state.sandbox
    data = await _json(request)
    sandbox.minutely_limit = int(data.get("minutely", sandbox.minutely_limit))
    sandbox.daily_limit = int(data.get("daily", sandbox.daily_limit))
    return JSONResponse({"minutely": sandbox.minutely_limit, "daily": sandbox.daily_limit})


async def revoke_consent(request: Request) -> Response:
    """{"refresh_token"}: the consent behind it is withdrawn; its tokens stop working at once."""
    tokens = request.app.state.sandbox.tokens
    token = str((await _json(request)).get("refresh_token", ""))
    found = [g for g in tokens.grants.values() if token == g.refresh_token or token in g.dead_refresh_tokens]
    for grant in found:
        del tokens.grants[grant.id]
        for access in [a for a, (gid, _) in tokens.access.items() if gid == grant.id]:
            del tokens.access[access]
    return JSONResponse({"revoked": len(found)})


async def documents(request: Request) -> Response:
    """Per division asked for: the booked documents' ids per YourRef, and how many customer e-mails have two
    accounts; plus Exact's answers to every call by status, and the number of token requests."""
    sandbox = request.app.state.sandbox
    wanted = {int(c) for c in request.query_params.get("divisions", "").split(",") if c.strip().isdigit()}
    result: dict[str, Any] = {}
    for code in wanted & set(sandbox.divisions):
        state = sandbox.divisions[code]
        refs: dict[str, list[str]] = {}
        for name, id_field in DOCUMENT_IDS.items():
            for row in state.rows[name]:
                refs.setdefault(str(row.get("YourRef") or ""), []).append(str(row.get(id_field)))
        emails = Counter(str(r.get("Email") or "").lower() for r in state.rows["Accounts"] if r.get("Email"))
        result[str(code)] = {"refs": refs, "duplicate_accounts": sum(n - 1 for n in emails.values() if n > 1)}
    calls = Counter(str(c.status) for c in sandbox.calls)
    return JSONResponse({"divisions": result, "calls": dict(calls), "token_requests": len(sandbox.tokens.requests)})


def exact_app(*, minutely: int, daily: int) -> Starlette:
    """The sandbox Exact Online with faults on, plus /_proof/{divisions,clock,limits,revoke,documents}."""
    clock = OffsetClock()
    app = create_exact_sandbox(
        faults_enabled=True,
        minutely_limit=minutely,
        daily_limit=daily,
        clock=clock,
        client_id=PROOF_CLIENT_ID,
        client_secret=PROOF_CLIENT_SECRET,
    )
    app.state.proof_clock = clock
    app.router.routes += [
        Route("/_proof/divisions", add_divisions, methods=["POST"]),
        Route("/_proof/clock", move_clock, methods=["POST"]),
        Route("/_proof/limits", set_limits, methods=["POST"]),
        Route("/_proof/revoke", revoke_consent, methods=["POST"]),
        Route("/_proof/documents", documents, methods=["GET"]),
    ]
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandboxes")
    parser.add_argument("which", choices=["mww", "exact"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--minutely", type=int, default=60)
    parser.add_argument("--daily", type=int, default=5000)
    args = parser.parse_args()
    app = mww_app() if args.which == "mww" else exact_app(minutely=args.minutely, daily=args.daily)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
