"""The sandbox Mijnwebwinkel's own controls: change an order's status (and push a signed webhook notice), create
orders, set the webhook target, switch faults. JSON or plain forms; no login, it is a local test tool."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.sandbox.mww_page import render_page
from gateway.sandbox.mww_seed import NEW_ORDER_TEMPLATES, ORDER_STATUSES, SANDBOX_SHOP_TOKEN, SandboxOrder, SandboxShop
from gateway.sandbox.mww_state import FAULT_MODES, Faults, Problem, SandboxState, find_order, int_param


async def change_status(state: SandboxState, shop: SandboxShop, number: int, status: int) -> tuple[SandboxOrder, str]:
    """Move an order to `status` now (shop time) and post the webhook notice when a target is set."""
    if status not in {sid for sid, *_ in ORDER_STATUSES}:
        raise Problem(422, "Unprocessable Entity", f"unknown status {status}")
    order = find_order(shop, str(number))
    order.status = status
    order.status_changed = state.clock().strftime("%Y-%m-%d %H:%M:%S")
    return order, await _notify(state, order)


def create_order(state: SandboxState, shop: SandboxShop, template: str, status: int) -> SandboxOrder:
    if template not in NEW_ORDER_TEMPLATES or status not in {sid for sid, *_ in ORDER_STATUSES}:
        raise Problem(422, "Unprocessable Entity", f"template must be one of {', '.join(NEW_ORDER_TEMPLATES)}")
    _label, lines, customer, attributes = NEW_ORDER_TEMPLATES[template]
    now = state.clock()
    order = SandboxOrder(
        number=max(shop.orders, default=1000) + 1,
        date=now.date(),
        time=now.strftime("%H:%M:%S"),
        status=status,
        status_changed=now.strftime("%Y-%m-%d %H:%M:%S"),
        customer=customer,
        lines=lines,
        **attributes,
    )
    shop.orders[order.number] = order
    return order


def _signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def _notify(state: SandboxState, order: SandboxOrder) -> str:
    if not state.notify_url:
        return "no webhook target set"
    body = json.dumps({"order_number": str(order.number), "status": order.status}).encode()
    msg_id, timestamp = f"msg_{secrets.token_hex(12)}", str(int(time.time()))
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": timestamp}
    if state.notify_secret:
        headers["webhook-signature"] = _signature(state.notify_secret, msg_id, timestamp, body)
    async with httpx.AsyncClient(transport=state.notify_transport, timeout=5.0) as http:
        try:
            response = await http.post(state.notify_url, content=body, headers=headers)
            outcome = f"order {order.number}: webhook answered HTTP {response.status_code}"
        except httpx.HTTPError as e:
            outcome = f"order {order.number}: webhook failed ({type(e).__name__})"
    state.notifications = [outcome, *state.notifications][:20]
    return outcome


async def _values(request: Request) -> tuple[dict[str, Any], bool]:
    """The control's input from JSON or a form, and whether the caller wants JSON back."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(await request.body())
        except json.JSONDecodeError:
            raise Problem(400, "Bad Request", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Problem(400, "Bad Request", "body must be a JSON object")
        return data, True
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}, False


def _shop_of(state: SandboxState, data: dict[str, Any]) -> SandboxShop:
    shop = state.shops.get(str(data.get("shop_token") or SANDBOX_SHOP_TOKEN))
    if shop is None:
        raise Problem(404, "Not Found", "unknown shop")
    return shop


async def sandbox_page(request: Request) -> Response:
    return render_page(request.app.state.sandbox)


async def sandbox_change_status(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    try:
        data, wants_json = await _values(request)
        status = int_param(data, "status", -1)
        order, outcome = await change_status(state, _shop_of(state, data), int(request.path_params["number"]), status)
    except Problem as problem:
        return problem.response()
    if not wants_json:
        return RedirectResponse("/sandbox", status_code=303)
    return JSONResponse({"order": order.render(), "webhook": outcome})


async def sandbox_create_order(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    try:
        data, wants_json = await _values(request)
        order = create_order(
            state, _shop_of(state, data), str(data.get("template", "domestic")), int_param(data, "status", 2)
        )
        outcome = await _notify(state, order)
    except Problem as problem:
        return problem.response()
    if not wants_json:
        return RedirectResponse("/sandbox", status_code=303)
    return JSONResponse({"order": order.render(), "webhook": outcome}, status_code=201)


async def sandbox_notify_target(request: Request) -> Response:
    """Set where status changes are pushed: the gateway's webhook URL (and signing secret) for the demo shop."""
    state: SandboxState = request.app.state.sandbox
    try:
        data, wants_json = await _values(request)
    except Problem as problem:
        return problem.response()
    url = str(data.get("url") or "").strip()
    if url and not url.startswith(("http://", "https://")):
        return Problem(422, "Unprocessable Entity", "url must start with http:// or https://").response()
    state.notify_url, state.notify_secret = url or None, str(data.get("secret") or "").strip() or None
    if not wants_json:
        return RedirectResponse("/sandbox", status_code=303)
    return JSONResponse({"notify": bool(state.notify_url), "signed": bool(state.notify_secret)})


async def sandbox_faults(request: Request) -> Response:
    """Switch a fault on for the next `count` API requests (or until switched off): slow, 429, 500, bad_token."""
    state: SandboxState = request.app.state.sandbox
    if not state.faults_enabled:
        return Problem(404, "Not Found", "faults are disabled (SANDBOX_FAULTS)").response()
    try:
        data, wants_json = await _values(request)
    except Problem as problem:
        return problem.response()
    mode = str(data.get("mode") or "off")
    if mode not in (*FAULT_MODES, "off"):
        return Problem(422, "Unprocessable Entity", f"mode must be one of {', '.join(FAULT_MODES)} or off").response()
    count = str(data.get("count") or "")
    state.faults = Faults(
        mode=None if mode == "off" else mode,
        remaining=int(count) if count.isdigit() and int(count) > 0 else None,
        seconds=float(data.get("seconds") or 3.0),
    )
    if not wants_json:
        return RedirectResponse("/sandbox", status_code=303)
    return JSONResponse({"mode": state.faults.mode, "remaining": state.faults.remaining})
