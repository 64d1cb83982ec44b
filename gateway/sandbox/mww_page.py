"""The sandbox Mijnwebwinkel's one HTML page: the demo shop's orders with status buttons, new orders, the webhook
target and (when enabled) the fault switches. Plain HTML forms, every value escaped; no script."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from starlette.responses import HTMLResponse

from gateway.sandbox.mww_seed import NEW_ORDER_TEMPLATES, ORDER_STATUSES, SANDBOX_PARTNER_TOKEN, SANDBOX_SHOP_TOKEN

if TYPE_CHECKING:
    from gateway.sandbox.mww_state import SandboxState

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:68rem;padding:1.5rem;color:#1d2733}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #dde3ea;vertical-align:middle}
code{background:#eef2f6;padding:.1rem .3rem;border-radius:3px}form.inline{display:flex;gap:.4rem}
select,input,button{font:inherit;padding:.25rem .4rem}button{cursor:pointer}.muted{color:#5b6b7c}
"""


def _status_options(selected: int) -> str:
    return "".join(
        f'<option value="{sid}"{" selected" if sid == selected else ""}>{escape(nl)}{" (credit)" if credit else ""}'
        "</option>"
        for sid, nl, _en, credit in ORDER_STATUSES
    )


def _orders_table(state: SandboxState) -> str:
    rows = []
    for order in sorted(state.main_shop().orders.values(), key=lambda o: o.number, reverse=True):
        total, _vat = order.totals()
        rows.append(
            "<tr>"
            f"<td>{order.number}</td><td>{order.date.isoformat()}</td><td>{escape(order.customer.name)}"
            f" <span class=muted>({escape(order.customer.country)}, {escape(order.tax_strategy or order.tax_region)})"
            f"</span></td><td>€ {total}</td><td class=muted>{escape(order.status_changed)}</td>"
            f'<td><form class=inline method=post action="/sandbox/orders/{order.number}/status">'
            f'<label class=muted for="s{order.number}">status</label>'
            f'<select id="s{order.number}" name=status>{_status_options(order.status)}</select>'
            "<button>Change</button></form></td></tr>"
        )
    head = "<tr><th>Order</th><th>Date</th><th>Customer</th><th>Total</th><th>Status changed</th><th>Status</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _new_order_form() -> str:
    templates = "".join(
        f'<option value="{escape(name)}">{escape(label)}</option>'
        for name, (label, *_rest) in NEW_ORDER_TEMPLATES.items()
    )
    return (
        '<form class=inline method=post action="/sandbox/orders">'
        f"<label for=t>Kind</label><select id=t name=template>{templates}</select>"
        f"<label for=ns>status</label><select id=ns name=status>{_status_options(2)}</select>"
        "<button>Create order</button></form>"
    )


def _notify_form(state: SandboxState) -> str:
    current = "set" if state.notify_url else "not set (the gateway's poller still sees every change)"
    log = "".join(f"<li>{escape(line)}</li>" for line in state.notifications)
    return (
        f"<p>Webhook target: {current}{', signed' if state.notify_secret else ''}.</p>"
        '<form method=post action="/sandbox/notify">'
        "<p><label>Webhook URL from the gateway <input name=url size=70 type=url></label></p>"
        "<p><label>Signing secret (optional) <input name=secret size=50 autocomplete=off></label></p>"
        f"<button>Save target</button></form><ul>{log}</ul>"
    )


def _faults_form(state: SandboxState) -> str:
    if not state.faults_enabled:
        return "<p class=muted>Fault switches are off (start with SANDBOX_FAULTS=true).</p>"
    modes = "".join(f'<option value="{m}">{m}</option>' for m in ("off", "slow", "429", "500", "bad_token"))
    return (
        f"<p>Current fault: {escape(state.faults.mode or 'none')}</p>"
        '<form class=inline method=post action="/sandbox/faults">'
        f"<label for=m>mode</label><select id=m name=mode>{modes}</select>"
        "<label for=c>for the next</label><input id=c name=count size=3 inputmode=numeric> requests "
        "<button>Switch</button></form>"
    )


def render_page(state: SandboxState) -> HTMLResponse:
    store = state.main_shop().store
    body = (
        f"<!doctype html><html lang=nl><head><meta charset=utf-8><title>Sandbox Mijnwebwinkel</title>"
        f'<meta name=viewport content="width=device-width,initial-scale=1"><style>{STYLE}</style></head><body>'
        f"<h1>Sandbox Mijnwebwinkel: {escape(store['name'])}</h1>"
        f"<p>Shop token <code>{SANDBOX_SHOP_TOKEN}</code>, partner token <code>{SANDBOX_PARTNER_TOKEN}</code> "
        "(demo values). The API lives under <code>/v1</code>.</p>"
        f"<h2>Orders</h2>{_orders_table(state)}<h2>New order</h2>{_new_order_form()}"
        f"<h2>Webhook notices</h2>{_notify_form(state)}<h2>Faults</h2>{_faults_form(state)}</body></html>"
    )
    return HTMLResponse(body)
