"""The last wizard step: a summary of every setting, "test with one order" (a dry run), and switching on.

The test reads one recent order from the shop and plans its booking with gateway/booking.py exactly as the job
would, then checks the Exact accounts and items it needs exist; nothing is written to Exact or to the order history.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import wizard
from gateway.booking import BookingError, BookingPlan, gl_codes_needed, items_needed, plan_booking
from gateway.booking_reasons import failure_message
from gateway.clients.errors import ApiError
from gateway.clients.mijnwebwinkel_models import MwwOrder
from gateway.clock import local_now, utcnow
from gateway.csrf import verify_csrf
from gateway.forms import Form
from gateway.i18n import N_, Message
from gateway.jobs.initial_export import ExportNotAllowed, get_export_progress, start_initial_export
from gateway.pages import flash, redirect, render
from gateway.routes.dashboard import load_integration
from gateway.routes.setup_exact import LookupFailed, exact_client, read_lists
from gateway.service_levels import service_level, trial_of
from gateway.setup_forms import vat_category_label
from gateway.shop_connection import mww_client_for
from gateway.store.integrations import Integration, list_vat_mappings, update_integration

logger = logging.getLogger(__name__)
TEST_WINDOW_DAYS = 30
ORDER_NUMBER_MAX = 40


async def review_context(request: Request, integration: Integration) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        mappings = await list_vat_mappings(conn, integration_id=integration.id)
    return {
        "integration": integration,
        "steps": wizard.STEPS,
        "is_done": wizard.is_done,
        "summary": wizard.step_summary,
        "left": wizard.steps_left(integration),
        "mappings": mappings,
        "level": service_level(request.app.state.settings, integration.service_level),
        "trial": trial_of(integration),
        "step": wizard.BY_KEY["review"],
        "number": len(wizard.STEPS),
        "values": {},
        "errors": {},
        "vat_label": vat_category_label,
        "tab": "setup",
    }


async def setup_review(request: Request) -> Response:
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    return render(request, "setup/review.html", await review_context(request, integration))


async def setup_test(request: Request) -> Response:
    """Dry-run one order (the number given, else the shop's most recent in a selected status) and show the plan.

    The answer is rendered directly (no redirect): the test changes nothing, and the plan is too big for a cookie.
    """
    data = await verify_csrf(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = await review_context(request, integration)
    form = Form(data)
    number = form.text("order_number", required=False, max_length=ORDER_NUMBER_MAX)
    context["values"] = form.values
    if form.errors:
        context["errors"] = form.errors
        return render(request, "setup/review.html", context, status_code=400)
    order, problem = await _test_order(request, integration, number)
    if order is None:
        context["test"] = {"problem": problem}
        return render(request, "setup/review.html", context, status_code=400 if number else 200)
    try:
        plan = plan_booking(
            order, integration.settings, context["mappings"], home_country=integration.shop_country or "NL"
        )
    except BookingError as e:
        context["test"] = {"order": order, "refused": failure_message(e.kind, e.params, str(e)), "detail": str(e)}
        return render(request, "setup/review.html", context)
    context["test"] = {"order": order, "plan": plan, "missing": await _missing_in_exact(request, integration, plan)}
    return render(request, "setup/review.html", context)


async def _test_order(
    request: Request, integration: Integration, number: str
) -> tuple[MwwOrder | None, Message | None]:
    state = request.app.state
    try:
        async with state.engine.connect() as conn:
            client = await mww_client_for(
                conn, settings=state.settings, cipher=state.cipher, http=state.http, integration_id=integration.id
            )
        if not number:
            since = (local_now() - timedelta(days=TEST_WINDOW_DAYS)).strftime("%Y-%m-%d 00:00:00")
            changes = await client.list_changed_orders(since=since)
            selected = [c for c in changes if c.status in integration.settings.selected_statuses]
            if not (selected or changes):
                return None, N_(
                    "The shop has no orders from the last %(days)s days to test with.", days=TEST_WINDOW_DAYS
                )
            number = (selected or changes)[-1].number
        return await client.get_order(number), None
    except ApiError as e:
        logger.info("test order for integration %s unavailable: %s", integration.id, e)
        if number:
            return None, N_("Order %(number)s could not be read from the shop: %(error)s", number=number, error=str(e))
        return None, N_("The shop could not be read just now: %(error)s", error=str(e))


async def _missing_in_exact(request: Request, integration: Integration, plan: BookingPlan) -> list[Message]:
    """What the booking would refer to but the administration lacks (read-only checks)."""
    missing: list[Message] = []
    try:
        lists = await read_lists(request, integration, "gl_accounts")
        known = {a.code for a in lists["gl_accounts"]}
        missing += [
            N_("Revenue account %(code)s", code=c)
            for c in gl_codes_needed(plan, integration.settings)
            if c not in known
        ]
        client = await exact_client(request, integration)
        for need in items_needed(plan, integration.settings)[:10]:
            if need.required and not need.creatable and await client.find_item(need.code) is None:
                missing.append(N_("Item %(code)s", code=need.code))
    except BookingError as e:
        missing.append(failure_message(e.kind, e.params, str(e)))
    except (LookupFailed, ApiError) as e:
        logger.info("exact checks of the test order for integration %s skipped: %s", integration.id, e)
    return missing


async def setup_activate(request: Request) -> Response:
    """Switch booking on once every step is done; the export of existing orders (if chosen) starts now."""
    await verify_csrf(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        left = wizard.steps_left(integration)
        if left:
            flash(request, N_("Finish these steps first: %(steps)s.", steps=", ".join(s.key for s in left)), "error")
            return redirect(str(request.url_for("setup_review", integration_id=integration.id)))
        if trial_of(integration).ended or integration.state == "trial_ended":
            flash(request, N_("The trial has ended. Contact support to continue."), "error")
            return redirect(str(request.url_for("setup_review", integration_id=integration.id)))
        await update_integration(
            conn,
            integration_id=integration.id,
            state="active",
            activated_at=integration.activated_at or utcnow(),
            next_poll_at=utcnow(),
            wizard_step="review",
        )
    await _start_export(request, integration)
    flash(request, N_("Booking is on. New orders in the selected statuses are booked in Exact Online."))
    return redirect(str(request.url_for("dashboard", integration_id=integration.id)))


async def _start_export(request: Request, integration: Integration) -> None:
    """Start the export of existing orders chosen in the wizard, once (a later switch-on does not repeat it)."""
    start = integration.settings.initial_export_start
    if not start:
        return
    async with request.app.state.engine.begin() as conn:
        if await get_export_progress(conn, integration_id=integration.id) is not None:
            return
        try:
            await start_initial_export(
                conn, request.app.state.arq, integration_id=integration.id, start_date=date.fromisoformat(start)
            )
        except ExportNotAllowed as e:
            logger.info("initial export of integration %s not started: %s", integration.id, e)
            flash(request, N_("The export of existing orders did not start: %(reason)s", reason=str(e)), "warning")


_BASE = "/integrations/{integration_id:int}/setup"
routes = [
    Route(_BASE + "/review", setup_review, name="setup_review"),
    Route(_BASE + "/test", setup_test, name="setup_test", methods=["POST"]),
    Route(_BASE + "/activate", setup_activate, name="setup_activate", methods=["POST"]),
]
