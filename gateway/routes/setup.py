"""The set-up wizard: overview, connect the shop, connect Exact, order statuses, existing orders, service level.

Each step is one GET+POST endpoint that saves its part and records the step as done, so the wizard is resumable.
The Exact configuration steps are in routes/setup_exact.py, review/test/activate in routes/setup_review.py.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import shop_connection, wizard
from gateway.clients.errors import ApiError
from gateway.clock import local_now
from gateway.csrf import verify_csrf
from gateway.forms import Errors, Form
from gateway.i18n import N_, NP_
from gateway.jobs.reconnect import SHOP, resume_after_reconnect
from gateway.pages import flash, optional_url, redirect, render
from gateway.routes.dashboard import load_integration
from gateway.service_levels import change_service_level, service_levels
from gateway.settings import SERVICE_LEVELS
from gateway.setup_forms import CREDIT_AS_SALES_ORDER, vat_category_label
from gateway.store.integrations import Integration, IntegrationSettings, save_settings, update_integration

logger = logging.getLogger(__name__)
BACK_TARGETS = ("setup", "setup_review")
EXPORT_EARLIEST = date(2010, 1, 1)


def step_context(request: Request, integration: Integration, key: str, **extra: Any) -> dict[str, Any]:
    """What every step page shows: the step, its place in the wizard, where Back and Save lead."""
    step = wizard.BY_KEY[key]
    previous = wizard.previous_step(key)
    back = request.query_params.get("back") or ""
    return {
        "integration": integration,
        "step": step,
        "steps": wizard.STEPS,
        "number": wizard.STEP_KEYS.index(key) + 1,
        "is_done": wizard.is_done,
        "missing": wizard.missing_connections(integration, step),
        "previous_url": request.url_for(previous.route, integration_id=integration.id) if previous else None,
        "back": back if back in BACK_TARGETS else "",
        "values": {},
        "errors": {},
        "vat_label": vat_category_label,
        "tab": "setup",
        **extra,
    }


def after_save(request: Request, integration: Integration, key: str, back: Any) -> Response:
    """Post/redirect/get to the next step, or back to the page the owner came from (overview or review)."""
    if back in BACK_TARGETS:
        return redirect(str(request.url_for(str(back), integration_id=integration.id)))
    return redirect(str(request.url_for(wizard.next_step(key).route, integration_id=integration.id)))


async def save_step(request: Request, integration: Integration, key: str, **changes: Any) -> None:
    """Store the step's settings, record it as done, and remember where the wizard continues."""
    async with request.app.state.engine.begin() as conn:
        fresh = await load_integration(request, conn)
        settings = wizard.mark_done(fresh.settings, key, **changes)
        await save_settings(conn, integration_id=fresh.id, settings=settings)
        continue_at = wizard.current_step(_with_settings(fresh, settings)).key
        await update_integration(conn, integration_id=fresh.id, wizard_step=continue_at)


def _with_settings(integration: Integration, settings: IntegrationSettings) -> Integration:
    return dataclasses.replace(integration, settings=settings)


async def setup(request: Request) -> Response:
    """The wizard overview: every step with its state, and where to continue."""
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = {
        "integration": integration,
        "steps": wizard.STEPS,
        "is_done": wizard.is_done,
        "current": wizard.current_step(integration),
        "summary": wizard.step_summary,
        "left": wizard.steps_left(integration),
        "tab": "setup",
    }
    return render(request, "setup/overview.html", context)


async def setup_shop(request: Request) -> Response:
    """Step 1: paste the shop token; it is checked live before it is stored (encrypted)."""
    state = request.app.state
    data = await verify_csrf(request) if request.method == "POST" else None
    async with state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = step_context(request, integration, "shop", sandbox_token=_sandbox_shop_token(request))
    if data is not None:
        try:
            check = await shop_connection.connect_shop(
                state.engine,
                settings=state.settings,
                cipher=state.cipher,
                http=state.http,
                integration_id=integration.id,
                shop_token=str(data.get("shop_token") or ""),
                redis=state.arq,
            )
        except shop_connection.ShopTokenError as e:
            # The token is never echoed back into the page: it is a secret.
            context["errors"] = {"shop_token": N_(shop_connection.TOKEN_ERROR_MESSAGES[e.reason])}
            return render(request, "setup/shop.html", context, status_code=400)
        if not integration.name:
            async with state.engine.begin() as conn:
                await update_integration(conn, integration_id=integration.id, name=check.name[:200])
        flash(request, N_("Connected to your shop %(name)s.", name=check.name))
        queued = await resume_after_reconnect(state.engine, state.arq, integration_id=integration.id, side=SHOP)
        if queued:
            flash(
                request,
                NP_(
                    "%(n)s order that stopped for the lost connection is queued again.",
                    "%(n)s orders that stopped for the lost connection are queued again.",
                    queued,
                ),
            )
        return after_save(request, integration, "shop", data.get("back"))
    return render(request, "setup/shop.html", context)


def _sandbox_shop_token(request: Request) -> str | None:
    """In dev/demo with the sandbox on, the sandbox shop's token, shown so a newcomer can finish locally."""
    settings = request.app.state.settings
    if not settings.sandbox_enabled or settings.is_production:
        return None
    from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN

    return SANDBOX_SHOP_TOKEN


async def setup_exact(request: Request) -> Response:
    """Step 2: log in at Exact Online (the connect pages of routes/exact_oauth.py) and come back connected."""
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    settings = request.app.state.settings
    context = step_context(
        request,
        integration,
        "exact",
        connect_url=optional_url(request, "exact_connect", integration_id=integration.id),
        sandbox_country="nl" if settings.sandbox_enabled and not settings.is_production else None,
    )
    return render(request, "setup/exact.html", context)


async def setup_statuses(request: Request) -> Response:
    """Step 3: which order statuses book an order (checkboxes from the live list; credit statuses marked)."""
    state = request.app.state
    data = await verify_csrf(request) if request.method == "POST" else None
    async with state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = step_context(request, integration, "statuses")
    try:
        statuses = await shop_connection.order_statuses(
            state.engine, settings=state.settings, http=state.http, integration_id=integration.id
        )
    except ApiError as e:
        logger.warning("order statuses for integration %s unavailable: %s", integration.id, e)
        context["load_error"] = N_("The list of order statuses could not be read from Mijnwebwinkel just now.")
        return render(request, "setup/statuses.html", context, status_code=502 if data is not None else 200)
    context["statuses"] = statuses
    context["values"] = {"statuses": list(integration.settings.selected_statuses)}
    if data is not None:
        form = Form(data)
        chosen = form.int_list("statuses", [s.id for s in statuses])
        credit = {s.id for s in statuses if s.credit_order}
        if not chosen and "statuses" not in form.errors:
            form.error("statuses", N_("Choose at least one status."))
        elif integration.settings.insertion_type == "sales_order" and credit & set(chosen):
            form.error("statuses", CREDIT_AS_SALES_ORDER)
        if form.errors:
            context.update(values=form.values, errors=form.errors)
            return render(request, "setup/statuses.html", context, status_code=400)
        await save_step(request, integration, "statuses", selected_statuses=chosen)
        return after_save(request, integration, "statuses", data.get("back"))
    return render(request, "setup/statuses.html", context)


def parse_export(data: Any, today: date) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    mode = form.choice("export", ("none", "from"))
    start = form.date("start_date", earliest=EXPORT_EARLIEST, latest=today)
    if mode == "from" and start is None and "start_date" not in form.errors:
        form.error("start_date", N_("Choose the date of the first order to export."))
    form.values["start"] = start if mode == "from" else None
    return form.values, form.errors


async def setup_export(request: Request) -> Response:
    """Step 4: optionally export existing orders from a start date; the export runs once booking is switched on."""
    data = await verify_csrf(request) if request.method == "POST" else None
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    saved = integration.settings.initial_export_start
    today = local_now().date()
    context = step_context(request, integration, "export", today=today)
    context["values"] = {"export": "from" if saved else "none", "start_date": saved}
    if data is not None:
        values, errors = parse_export(data, today)
        if errors:
            context.update(values=values, errors=errors)
            return render(request, "setup/export.html", context, status_code=400)
        start = values["start"].isoformat() if values["start"] else ""
        await save_step(request, integration, "export", initial_export_start=start)
        return after_save(request, integration, "export", data.get("back"))
    return render(request, "setup/export.html", context)


async def setup_service(request: Request) -> Response:
    """Step 9: the service level, with its real effect and price (changeable later on the plan page)."""
    settings = request.app.state.settings
    data = await verify_csrf(request) if request.method == "POST" else None
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = step_context(request, integration, "service", levels=service_levels(settings))
    context["values"] = {"service_level": integration.service_level}
    if data is not None:
        form = Form(data)
        level = form.choice("service_level", SERVICE_LEVELS)
        if form.errors:
            context.update(values=form.values, errors=form.errors)
            return render(request, "setup/service.html", context, status_code=400)
        async with request.app.state.engine.begin() as conn:
            await change_service_level(conn, integration=integration, level=level, settings=settings)
        await save_step(request, integration, "service")
        return after_save(request, integration, "service", data.get("back"))
    return render(request, "setup/service.html", context)


_BASE = "/integrations/{integration_id:int}/setup"
routes = [
    Route(_BASE, setup, name="setup"),
    Route(_BASE + "/shop", setup_shop, name="setup_shop", methods=["GET", "POST"]),
    Route(_BASE + "/exact", setup_exact, name="setup_exact"),
    Route(_BASE + "/statuses", setup_statuses, name="setup_statuses", methods=["GET", "POST"]),
    Route(_BASE + "/export", setup_export, name="setup_export", methods=["GET", "POST"]),
    Route(_BASE + "/service", setup_service, name="setup_service", methods=["GET", "POST"]),
]
