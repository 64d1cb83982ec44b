"""The shop list and each integration's dashboard: connection health with the fix, on/off, counts, sync times.

The integration always comes from the URL and `require_integration` (404 unless the logged-in account owns it).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import require_integration
from gateway.clock import DISPLAY_ZONE, utcnow
from gateway.csrf import verify_csrf
from gateway.forms import Form
from gateway.i18n import N_, Message
from gateway.jobs.initial_export import cancel_initial_export, get_export_progress
from gateway.pages import flash, redirect, render, require_account
from gateway.service_levels import (
    TRIAL_ENDED,
    change_service_level,
    pause_if_trial_ended,
    service_level,
    service_levels,
    trial_of,
)
from gateway.settings import SERVICE_LEVELS
from gateway.store import orders
from gateway.store.integrations import Integration, create_integration, list_integrations, update_integration

PENDING_STATES = ("queued", "booking", "retrying")
ATTENTION_STATES = ("failed", "needs_attention", "needs_review")


async def load_integration(request: Request, conn: AsyncConnection) -> Integration:
    """The URL's integration (404 unless owned), with an ended trial applied first."""
    integration = await require_integration(request, conn, request.path_params["integration_id"])
    return await pause_if_trial_ended(conn, integration=integration)


async def integrations(request: Request) -> Response:
    """Every shop of the account, and "add a shop" (POST creates one and starts its set-up)."""
    settings = request.app.state.settings
    if request.method == "POST":
        await verify_csrf(request)
        async with request.app.state.engine.begin() as conn:
            account = await require_account(request, conn)
            created = await create_integration(conn, account_id=account.id, trial_days=settings.trial_days)
        return redirect(str(request.url_for("setup", integration_id=created.id)))
    async with request.app.state.engine.begin() as conn:
        account = await require_account(request, conn)
        found = [
            await pause_if_trial_ended(conn, integration=i)
            for i in await list_integrations(conn, account_id=account.id)
        ]
    return render(request, "integrations/list.html", {"integrations": found})


def day_and_month_start(now: datetime) -> tuple[datetime, datetime]:
    """Midnight today and the first of this month, in the display zone (the shop owner's calendar)."""
    local = now.astimezone(DISPLAY_ZONE)
    today = datetime.combine(local.date(), time.min, tzinfo=DISPLAY_ZONE)
    return today, today.replace(day=1)


def connection_problems(integration: Integration) -> list[Message]:
    problems = []
    if integration.shop_connection != "connected":
        problems.append(N_("The shop is not connected."))
    if integration.exact_connection != "connected":
        problems.append(N_("Exact Online is not connected."))
    return problems


async def dashboard_numbers(conn: AsyncConnection, integration: Integration) -> dict[str, int]:
    by_state = await orders.count_by_state(conn, integration_id=integration.id)
    today, month = day_and_month_start(utcnow())
    return {
        "booked_today": await orders.count_booked_since(conn, integration_id=integration.id, since=today),
        "booked_month": await orders.count_booked_since(conn, integration_id=integration.id, since=month),
        "pending": sum(by_state.get(s, 0) for s in PENDING_STATES),
        "failed": by_state.get("failed", 0),
        # Every order that will not book without the owner: failed ones too (a fix or a retry), not only those
        # needing a decision; the number links to both.
        "needs_attention": sum(by_state.get(s, 0) for s in ATTENTION_STATES),
    }


async def dashboard(request: Request) -> Response:
    settings = request.app.state.settings
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        numbers = await dashboard_numbers(conn, integration)
        export = await get_export_progress(conn, integration_id=integration.id)
    context: dict[str, Any] = {
        "integration": integration,
        "numbers": numbers,
        "export": export,
        "level": service_level(settings, integration.service_level),
        "trial": trial_of(integration),
        "problems": connection_problems(integration),
        "now": utcnow(),
        "tab": "dashboard",
    }
    return render(request, "dashboard/dashboard.html", context)


async def integration_switch(request: Request) -> Response:
    """Switch booking on or off. On needs both connections and an unexpired trial; off never touches bookings."""
    data = await verify_csrf(request)
    turn_on = data.get("state") == "on"
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        target = request.url_for("dashboard", integration_id=integration.id)
        if turn_on and integration.state == "setup":
            target = request.url_for("setup_review", integration_id=integration.id)
        elif integration.state == TRIAL_ENDED or (turn_on and trial_of(integration).ended):
            flash(
                request,
                N_("The trial has ended. Contact support to continue; nothing already booked changes."),
                "error",
            )
        elif turn_on and connection_problems(integration):
            flash(request, N_("Connect both the shop and Exact Online before switching on."), "error")
        elif turn_on:
            values: dict[str, Any] = {"state": "active"}
            if integration.activated_at is None:
                values["activated_at"] = utcnow()
            await update_integration(conn, integration_id=integration.id, next_poll_at=utcnow(), **values)
            flash(request, N_("Switched on: new orders are booked in Exact Online."))
        elif integration.state == "active":
            await update_integration(conn, integration_id=integration.id, state="paused")
            flash(request, N_("Switched off: orders are not booked until you switch on again."), "info")
    return redirect(str(target))


async def billing(request: Request) -> Response:
    """Plan (service level) with price and effect, changeable at any time; the trial and its days left."""
    settings = request.app.state.settings
    errors: dict[str, Message] = {}
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        if request.method == "POST":
            form = Form(await verify_csrf(request))
            level = form.choice("service_level", SERVICE_LEVELS)
            errors = form.errors
            if not errors:
                await change_service_level(conn, integration=integration, level=level, settings=settings)
                flash(request, N_("Your plan is now %(name)s.", name=service_level(settings, level).name.text))
                return redirect(str(request.url_for("billing", integration_id=integration.id)))
    context = {
        "integration": integration,
        "levels": service_levels(settings),
        "trial": trial_of(integration),
        "errors": errors,
        "tab": "billing",
    }
    return render(request, "dashboard/billing.html", context, status_code=400 if errors else 200)


async def export_cancel(request: Request) -> Response:
    """Stop the running export of existing orders; what was read stays recorded."""
    await verify_csrf(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        export = await get_export_progress(conn, integration_id=integration.id)
        if export is not None and await cancel_initial_export(
            conn, integration_id=integration.id, export_id=export.export_id
        ):
            flash(request, N_("The export of existing orders is stopped."), "info")
    return redirect(str(request.url_for("dashboard", integration_id=integration.id)))


routes = [
    Route("/integrations", integrations, name="integrations", methods=["GET", "POST"]),
    Route("/integrations/{integration_id:int}/dashboard", dashboard, name="dashboard"),
    Route("/integrations/{integration_id:int}/export/cancel", export_cancel, name="export_cancel", methods=["POST"]),
    Route("/integrations/{integration_id:int}/billing", billing, name="billing", methods=["GET", "POST"]),
    Route("/integrations/{integration_id:int}/switch", integration_switch, name="integration_switch", methods=["POST"]),
]
