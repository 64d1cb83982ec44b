"""Order history: every order the gateway has seen, filters and search, one order's attempts, retry and ignore.

Retries enqueue after the commit that put the row back to `queued` (the reconcile sweep heals a lost enqueue).
"""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.booking_reasons import failure_message
from gateway.csrf import verify_csrf
from gateway.forms import Form
from gateway.i18n import N_, NP_, Message
from gateway.pages import Confirmation, confirm_page, flash, redirect, render
from gateway.queue import enqueue_sync
from gateway.routes.dashboard import load_integration
from gateway.sent_documents import sent_document
from gateway.store import attempts, orders, status_cache
from gateway.store.integrations import Integration

logger = logging.getLogger(__name__)
PAGE_SIZE = 25
MAX_BULK_RETRY = 500
# The history filter's choices: one word per group of states.
STATE_FILTERS: dict[str, tuple[str, ...]] = {
    "booked": ("booked",),
    "pending": ("queued", "booking", "retrying"),
    "retrying": ("retrying",),
    "failed": ("failed",),
    "needs_attention": ("needs_attention",),
    "needs_review": ("needs_review",),
    "attention": ("failed", "needs_attention", "needs_review"),  # the dashboard's "need your attention"
    "skipped": ("skipped",),
    "ignored": ("ignored",),
}
RETRYABLE = ("failed", "retrying", "needs_attention", "needs_review", "skipped", "ignored")
IGNORABLE = ("queued", "retrying", "failed", "needs_attention", "needs_review", "skipped")
# States whose row shows why the order was not booked (`failure_message`).
FAILURE_STATES = ("failed", "retrying", "needs_attention", "needs_review")


def exact_document_url(integration: Integration, sync: orders.OrderSync, exact_hosts: Any) -> str | None:
    """Best effort link to the booked document in Exact's web app (docs/pages.md): known for sales invoices only."""
    host = exact_hosts.get(integration.exact_country or "")
    if not (host and sync.exact_document_id and integration.exact_division):
        return None
    if sync.document_type in ("sales_invoice", "direct_sales_invoice"):
        query = urlencode({"ID": sync.exact_document_id, "_Division_": integration.exact_division})
        return f"{host}/docs/SalesInvoice.aspx?{query}"
    return None


# Reasons other modules store in English; shown as their catalogue sentence (N_ so the extractor finds them).
_REASONS: list[tuple[re.Pattern[str], Message]] = [
    (
        re.compile(r"^status (?P<status>\S+) is not one of the selected statuses$"),
        N_("Status %(status)s is not one of the selected statuses."),
    ),
    (
        re.compile(r"^already booked as (?P<document>.+); a later status change does not book it again$"),
        N_("Already booked as %(document)s; a later status change does not book it again."),
    ),
    (
        re.compile(r"^the integration is (?P<state>.+), not active; the poller catches up once it is$"),
        N_("Booking was off when this order changed; it is picked up again once booking is on."),
    ),
    (re.compile(r"^(the order is ignored|ignored by the shop owner)$"), N_("Ignored by you.")),
]
OTHER_REASON = N_("Not booked; the details are in the order's attempts.")


def describe_reason(reason: str | None, statuses: dict[int, str]) -> Message | str:
    if not reason:
        return ""
    for pattern, message in _REASONS:
        match = pattern.match(reason)
        if match:
            params = {k: v for k, v in match.groupdict().items() if f"%({k})s" in message.text}
            if "status" in params and params["status"].isdigit():
                params["status"] = statuses.get(int(params["status"]), params["status"])
            return N_(message.text, **params)
    return OTHER_REASON


def parse_filters(params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    form = Form(params)
    form.choice("state", STATE_FILTERS, required=False)
    form.text("q", required=False, max_length=100)
    start = form.date("from", earliest=date(2000, 1, 1))
    form.date("to", earliest=start)
    page = form.integer("page", required=False, minimum=1, maximum=100_000)
    form.values["page"] = page or 1
    return form.values, form.errors


async def status_names(conn: AsyncConnection, integration_id: int) -> dict[int, str]:
    """Status names from the cached list (no network call on a history page); empty when not cached."""
    cached = await status_cache.get_cached_order_statuses(conn, integration_id=integration_id) or []
    return {int(item["status"]): str(item["description"]) for item in cached}


async def history(request: Request) -> Response:
    values, errors = parse_filters(request.query_params)
    states = STATE_FILTERS.get(values["state"], ()) if "state" not in errors else ()
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        syncs, total = await orders.list_syncs(
            conn,
            integration_id=integration.id,
            states=states,
            search="" if "q" in errors else values["q"],
            created_from=None if "from" in errors else date.fromisoformat(values["from"]) if values["from"] else None,
            created_to=None if "to" in errors else date.fromisoformat(values["to"]) if values["to"] else None,
            limit=PAGE_SIZE,
            offset=(values["page"] - 1) * PAGE_SIZE,
        )
        failed = (await orders.count_by_state(conn, integration_id=integration.id, states=("failed",))).get("failed", 0)
        statuses = await status_names(conn, integration.id)
    pages = max(1, -(-total // PAGE_SIZE))
    query = {k: values[k] for k in ("state", "q", "from", "to") if values.get(k) and k not in errors}
    context = {
        "integration": integration,
        "syncs": syncs,
        "total": total,
        "page": values["page"],
        "pages": pages,
        "query": query,
        "values": values,
        "errors": errors,
        "failed_count": failed,
        "state_filters": STATE_FILTERS,
        "statuses": statuses,
        "describe_reason": describe_reason,
        "failure_message": failure_message,
        "failure_states": FAILURE_STATES,
        "tab": "history",
    }
    return render(request, "history/list.html", context, status_code=400 if errors else 200)


async def history_detail(request: Request) -> Response:
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        sync = await orders.get_sync(
            conn, integration_id=integration.id, order_sync_id=request.path_params["order_sync_id"]
        )
        if sync is None:
            raise HTTPException(status_code=404)
        tries = await attempts.list_attempts(conn, integration_id=integration.id, order_sync_id=sync.id)
        statuses = await status_names(conn, integration.id)
    context = {
        "integration": integration,
        "sync": sync,
        "attempts": tries,
        "document_url": exact_document_url(integration, sync, request.app.state.settings.exact_hosts),
        "can_retry": sync.state in RETRYABLE,
        "can_ignore": sync.state in IGNORABLE,
        "statuses": statuses,
        "reason": describe_reason(sync.reason, statuses),
        "sent": next(
            (d for a in tries if (d := sent_document(a.request_summary, shop_total=sync.order_total)) is not None), None
        ),
        "failure": failure_message(sync.error_kind, sync.error_params, sync.last_error)
        if sync.state in FAILURE_STATES
        else "",
        "tab": "history",
    }
    return render(request, "history/detail.html", context)


async def _retry(request: Request, integration: Integration, order_sync_ids: list[int]) -> int:
    """Requeue the rows (one transaction), then enqueue each after the commit. Returns how many were requeued."""
    requeued: list[tuple[int, int]] = []
    async with request.app.state.engine.begin() as conn:
        for order_sync_id in order_sync_ids:
            generation = await orders.request_retry(conn, integration_id=integration.id, order_sync_id=order_sync_id)
            if generation is not None:
                requeued.append((order_sync_id, generation))
    for order_sync_id, generation in requeued:
        await enqueue_sync(
            request.app.state.arq,
            integration_id=integration.id,
            order_sync_id=order_sync_id,
            generation=generation,
            priority=integration.is_premium,
        )
    return len(requeued)


async def history_retry(request: Request) -> Response:
    await verify_csrf(request)
    order_sync_id = request.path_params["order_sync_id"]
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        if await orders.get_sync(conn, integration_id=integration.id, order_sync_id=order_sync_id) is None:
            raise HTTPException(status_code=404)
    if await _retry(request, integration, [order_sync_id]):
        flash(request, N_("The order is queued to be booked again."))
    else:
        flash(request, N_("This order cannot be retried: it is booked or already on its way."), "warning")
    return redirect(str(request.url_for("history_detail", integration_id=integration.id, order_sync_id=order_sync_id)))


async def history_retry_failed(request: Request) -> Response:
    await verify_csrf(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        failed, _ = await orders.list_syncs(
            conn, integration_id=integration.id, states=("failed",), limit=MAX_BULK_RETRY
        )
    count = await _retry(request, integration, [sync.id for sync in failed])
    flash(
        request,
        NP_(
            "%(n)s failed order is queued to be booked again.",
            "%(n)s failed orders are queued to be booked again.",
            count,
        ),
    )
    return redirect(str(request.url_for("history", integration_id=integration.id)))


def ignore_question(request: Request, integration: Integration, sync: orders.OrderSync) -> Confirmation:
    detail = str(request.url_for("history_detail", integration_id=integration.id, order_sync_id=sync.id))
    return Confirmation(
        title=N_("Ignore order %(number)s?", number=sync.order_number),
        text=N_(
            "The gateway will not book this order in Exact Online. Do this when you booked it by hand or it should "
            "not be in your books. You can still retry it later."
        ),
        button=N_("Yes, ignore this order"),
        action=str(request.url_for("history_ignore", integration_id=integration.id, order_sync_id=sync.id)),
        cancel=detail,
    )


async def history_ignore(request: Request) -> Response:
    """GET asks once (a page that works without JavaScript); POST ignores the order."""
    data = await verify_csrf(request) if request.method == "POST" else None
    order_sync_id = request.path_params["order_sync_id"]
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        sync = await orders.get_sync(conn, integration_id=integration.id, order_sync_id=order_sync_id)
        if sync is None:
            raise HTTPException(status_code=404)
        if data is None and sync.state in IGNORABLE:
            return confirm_page(request, integration, ignore_question(request, integration, sync), tab="history")
        ignored = sync.state in IGNORABLE and await orders.ignore_sync(
            conn, integration_id=integration.id, order_sync_id=order_sync_id
        )
    if ignored:
        flash(request, N_("The order is ignored: it will not be booked. You can still retry it later."), "info")
    else:
        flash(request, N_("This order cannot be ignored: it is booked or being booked right now."), "warning")
    return redirect(str(request.url_for("history_detail", integration_id=integration.id, order_sync_id=order_sync_id)))


_BASE = "/integrations/{integration_id:int}/history"
routes = [
    Route(_BASE, history, name="history"),
    Route(_BASE + "/retry-failed", history_retry_failed, name="history_retry_failed", methods=["POST"]),
    Route(_BASE + "/{order_sync_id:int}", history_detail, name="history_detail"),
    Route(_BASE + "/{order_sync_id:int}/retry", history_retry, name="history_retry", methods=["POST"]),
    Route(_BASE + "/{order_sync_id:int}/ignore", history_ignore, name="history_ignore", methods=["GET", "POST"]),
]
