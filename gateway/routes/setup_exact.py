"""The Exact Online steps of the set-up wizard: administration, VAT mapping, booking type, items and accounts.

Dropdowns are filled from the customer's own administration through gateway/lookups.py (cached; "reload" reads
again). Combinations that cannot work are refused inline with the reason (gateway/setup_forms.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import lookups, setup_forms, shop_connection
from gateway.booking import (
    CREDIT_SALES_ORDER,
    MISSING_GL,
    MISSING_ITEM,
    SETTINGS,
    UNMAPPED_VAT,
    VAT_CODE_RATE,
    VAT_NOT_USED,
)
from gateway.clients.errors import ApiError, AuthError, TransientApiError
from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import create_item
from gateway.csrf import verify_csrf
from gateway.exact_auth import exact_client_for
from gateway.forms import Errors
from gateway.i18n import N_, Message, request_locale, translate
from gateway.jobs.sync_order import resume_orders
from gateway.pages import render
from gateway.routes.dashboard import load_integration
from gateway.routes.setup import after_save, save_step, step_context
from gateway.shop_connection import mww_client_for
from gateway.store.integrations import (
    EU_VAT_MODES,
    NOT_USED,
    Integration,
    VatMapping,
    list_vat_mappings,
    save_vat_mapping,
    update_integration,
)
from gateway.vat import EU_VAT_OSS, categories_from_regions, is_oss

logger = logging.getLogger(__name__)


class LookupFailed(Exception):
    def __init__(self, message: Message) -> None:
        super().__init__(message.text)
        self.message = message


async def exact_client(request: Request, integration: Integration) -> ExactClient:
    state = request.app.state
    return await exact_client_for(
        engine=state.engine,
        settings=state.settings,
        cipher=state.cipher,
        http=state.http,
        redis=state.arq,
        integration=integration,
    )


async def read_lists(request: Request, integration: Integration, *names: str) -> dict[str, list[Any]]:
    """The named look-up lists from Exact (cached); `?refresh=1` reads them again. Raises LookupFailed."""
    refresh = request.query_params.get("refresh") == "1"
    readers: dict[str, Callable[..., Awaitable[list[Any]]]] = {
        "divisions": lookups.divisions,
        "vat_codes": lookups.vat_codes,
        "gl_accounts": lookups.revenue_gl_accounts,
        "journals": lookups.sales_journals,
        "payment_conditions": lookups.payment_conditions,
        "sales_items": lookups.sales_items,
    }
    try:
        client = await exact_client(request, integration)
        return {
            name: await readers[name](
                engine=request.app.state.engine, client=client, integration_id=integration.id, refresh=refresh
            )
            for name in names
        }
    except AuthError as e:
        logger.info("exact look-ups for integration %s: %s", integration.id, e)
        raise LookupFailed(N_("The connection to Exact Online needs to be renewed. Reconnect Exact first.")) from e
    except TransientApiError as e:
        raise LookupFailed(N_("Exact Online could not be reached just now. Try again in a minute.")) from e
    except ApiError as e:
        logger.warning("exact look-ups for integration %s failed: %s", integration.id, e)
        raise LookupFailed(N_("Exact Online did not give the lists this page needs: %(error)s", error=str(e))) from e


async def vat_categories(
    request: Request, integration: Integration, mode: str, saved: Mapping[str, VatMapping]
) -> tuple[list[str], Message | None]:
    """The VAT categories this shop can produce (from its tax regions) plus those its orders already showed.

    OSS categories belong to the OSS choice only; with the webshop-country choice they are left out.
    """
    state = request.app.state
    home = integration.shop_country or "NL"
    problem: Message | None = None
    try:
        async with state.engine.connect() as conn:
            client = await mww_client_for(
                conn, settings=state.settings, cipher=state.cipher, http=state.http, integration_id=integration.id
            )
        regions = await client.list_tax_regions()
        business_models = (await client.get_store()).business_models
    except ApiError as e:
        logger.warning("tax regions of integration %s unavailable: %s", integration.id, e)
        regions, business_models = [], "ALL"
        problem = N_("The shop's VAT rates could not be read just now; only the usual categories are listed.")
    found = categories_from_regions(regions, home_country=home, eu_consumer_vat=mode, business_models=business_models)
    extra = [c for c, m in saved.items() if (m.seen_in_orders or m.vat_code) and (mode == "oss" or not is_oss(c))]
    return list(dict.fromkeys([*found, *sorted(c for c in extra if c not in found)])), problem


async def credit_statuses_selected(request: Request, integration: Integration) -> bool:
    """Whether a selected order status is a credit status (cached list; False when it cannot be read)."""
    state = request.app.state
    try:
        statuses = await shop_connection.order_statuses(
            state.engine, settings=state.settings, http=state.http, integration_id=integration.id
        )
    except ApiError:
        return False
    selected = set(integration.settings.selected_statuses)
    return any(s.credit_order and s.id in selected for s in statuses)


async def create_items(request: Request, integration: Integration, values: dict[str, Any]) -> Errors:
    """The items the owner asked the gateway to create (CREATE_ITEM), made in Exact now, while the owner waits; an
    item with that code already there is used as it is. `values` get the codes."""
    errors: Errors = {}
    wanted = [name for name in setup_forms.ITEM_FIELDS if values.get(name) == setup_forms.CREATE_ITEM]
    if not wanted:
        return errors
    locale = request_locale(request)
    try:
        client = await exact_client(request, integration)
        for name in wanted:
            code, description = setup_forms.NEW_ITEMS[name]
            if await client.find_item(code) is None:
                payload = {"Code": code, "Description": translate(locale, description), "IsSalesItem": True}
                await create_item(client, payload)
            values[name] = code
    except ApiError as e:
        logger.info("creating items for integration %s failed: %s", integration.id, e)
        for name in wanted:
            if values.get(name) == setup_forms.CREATE_ITEM:
                errors[name] = N_("Exact Online did not create the item just now. Try again, or choose an item.")
    async with request.app.state.engine.begin() as conn:
        await lookups.invalidate_lookups(conn, integration_id=integration.id, kinds=[lookups.SALES_ITEMS])
    return errors


async def _resume(request: Request, integration: Integration, *kinds: str) -> None:
    """Orders that failed for a cause this page fixes are queued again."""
    queued = await resume_orders(
        request.app.state.engine, request.app.state.arq, integration_id=integration.id, error_kind=kinds
    )
    if queued:
        logger.info("integration %s: %s orders queued again after a settings change", integration.id, queued)


async def _page(request: Request, key: str, template: str, lists: tuple[str, ...], handle: Any) -> Response:
    """The common shape of an Exact step: CSRF, the integration, the lists (or the reason they are missing),
    then `handle(integration, context, data)` which returns a response on success or None to re-render."""
    data = await verify_csrf(request) if request.method == "POST" else None
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = step_context(request, integration, key)
    if context["missing"]:
        return render(request, template, context, status_code=400 if data is not None else 200)
    try:
        context.update(await read_lists(request, integration, *lists))
    except LookupFailed as e:
        context["load_error"] = e.message
        return render(request, template, context, status_code=502 if data is not None else 200)
    response: Response | None = await handle(integration, context, data)
    if response is not None:
        return response
    return render(request, template, context, status_code=400 if context["errors"] else 200)


async def setup_administration(request: Request) -> Response:
    """Step 5: which Exact administration (division) the orders are booked in."""

    async def handle(integration: Integration, context: dict[str, Any], data: Any) -> Response | None:
        context["values"] = {"division": integration.exact_division or ""}
        if data is None:
            return None
        values, errors = setup_forms.parse_administration(data, context["divisions"])
        if errors:
            context.update(values=values, errors=errors)
            return None
        division = values["division_record"]
        async with request.app.state.engine.begin() as conn:
            if division.code != integration.exact_division:
                await lookups.invalidate_lookups(
                    conn, integration_id=integration.id, kinds=[k for k in lookups.KINDS if k != lookups.DIVISIONS]
                )
            await update_integration(
                conn,
                integration_id=integration.id,
                exact_division=division.code,
                exact_division_name=(division.description or str(division.code))[:200],
            )
        await save_step(request, integration, "administration")
        return after_save(request, integration, "administration", data.get("back"))

    return await _page(request, "administration", "setup/administration.html", ("divisions",), handle)


async def setup_vat(request: Request) -> Response:
    """Step 6: EU consumer VAT (webshop country or OSS), then a VAT code and revenue account per VAT category."""

    async def handle(integration: Integration, context: dict[str, Any], data: Any) -> Response | None:
        async with request.app.state.engine.connect() as conn:
            saved = await list_vat_mappings(conn, integration_id=integration.id)
        mode = integration.settings.eu_consumer_vat
        if data is not None and data.get("eu_consumer_vat") in EU_VAT_MODES:
            mode = str(data.get("eu_consumer_vat"))
        categories, problem = await vat_categories(request, integration, mode, saved)
        if data is None and "vat" not in integration.settings.completed_steps and mode != EU_VAT_OSS:
            # Pre-answered: a shop with VAT rates of other EU countries charges the customer's VAT (OSS).
            oss, problem = await vat_categories(request, integration, EU_VAT_OSS, saved)
            if any(is_oss(c) for c in oss):
                mode, categories = EU_VAT_OSS, oss
                integration = dataclasses.replace(
                    integration, settings=integration.settings.replace(eu_consumer_vat=EU_VAT_OSS)
                )
        initial = setup_forms.vat_initial_values(
            integration, saved, categories, context["vat_codes"], context["gl_accounts"]
        )
        context.update(categories=categories, category_problem=problem, mode=mode, values=initial, not_used=NOT_USED)
        context["warnings"] = setup_forms.vat_rate_warnings(initial, categories, context["vat_codes"])
        context["no_code"] = {c for c in categories if not setup_forms.suggest_vat_code(c, context["vat_codes"])}
        if data is None:
            return None
        if data.get("action") == "show" or mode != str(data.get("shown_mode") or mode):
            # A changed EU rule first shows its own list, pre-filled (no errors for categories not seen yet).
            shown = {**initial, **{k: v for k, v in data.items() if k in initial and k.startswith(("vat_", "gl_"))}}
            context.update(values={**shown, "eu_consumer_vat": mode}, mode_changed=True)
            return None
        values, errors = setup_forms.parse_vat(data, categories, context["vat_codes"], context["gl_accounts"])
        if errors:
            # Categories new with a changed EU choice start from the suggestions, not blank.
            kept = {k: v for k, v in values.items() if v or k not in initial}
            shown = {**initial, **kept}
            context.update(
                values=shown,
                errors=errors,
                mode_changed=mode != integration.settings.eu_consumer_vat,
                warnings=setup_forms.vat_rate_warnings(shown, categories, context["vat_codes"]),
            )
            return None
        async with request.app.state.engine.begin() as conn:
            for category in categories:
                await save_vat_mapping(
                    conn,
                    integration_id=integration.id,
                    category=category,
                    vat_code=values[f"vat_{category}"],
                    gl_account=values[f"gl_{category}"] or None,
                )
        await save_step(
            request, integration, "vat", eu_consumer_vat=mode, oss_revenue_account=values["oss_revenue_account"]
        )
        await _resume(request, integration, UNMAPPED_VAT, VAT_NOT_USED, MISSING_GL, VAT_CODE_RATE)
        return after_save(request, integration, "vat", data.get("back"))

    return await _page(request, "vat", "setup/vat.html", ("vat_codes", "gl_accounts"), handle)


async def setup_booking(request: Request) -> Response:
    """Step 7: insertion type (with the edition caveat), journal, invoice status and sending, payment condition."""

    async def handle(integration: Integration, context: dict[str, Any], data: Any) -> Response | None:
        context["values"] = setup_forms.booking_initial_values(integration.settings)
        if not context["values"]["journal_code"] and context["journals"]:
            # Pre-answered with the administration's first sales journal (Exact's own is 70, "Verkoopboek").
            context["values"]["journal_code"] = min(context["journals"], key=lambda j: (len(j.code), j.code)).code
        context["credit_selected"] = await credit_statuses_selected(request, integration)
        if data is None:
            return None
        values, errors = setup_forms.parse_booking(
            data, context["journals"], context["payment_conditions"], credit_selected=context["credit_selected"]
        )
        if errors:
            context.update(values=values, errors=errors)
            return None
        await save_step(request, integration, "booking", **setup_forms.booking_changes(values))
        await _resume(request, integration, SETTINGS, CREDIT_SALES_ORDER)
        return after_save(request, integration, "booking", data.get("back"))

    return await _page(request, "booking", "setup/booking.html", ("journals", "payment_conditions"), handle)


async def setup_items(request: Request) -> Response:
    """Step 8: items for articles, shipping, costs and discounts (or their revenue accounts for sales entries)."""

    async def handle(integration: Integration, context: dict[str, Any], data: Any) -> Response | None:
        context["values"] = setup_forms.items_initial_values(integration.settings, context["sales_items"])
        context["uses_items"] = integration.settings.insertion_type != "sales_entry"
        listed = [item.code for item in context["sales_items"]]
        saved = [getattr(integration.settings, name) for name in setup_forms.ITEM_FIELDS]
        context["other_codes"] = [code for code in dict.fromkeys(saved) if code and code not in listed]
        context.update(create_item=setup_forms.CREATE_ITEM, new_items=setup_forms.NEW_ITEMS)
        if data is None:
            return None
        values, errors = setup_forms.parse_items(
            data, context["gl_accounts"], [*listed, *context["other_codes"]], uses_items=context["uses_items"]
        )
        if not errors and context["uses_items"]:
            errors = await create_items(request, integration, values)
        if errors:
            context.update(values=values, errors=errors)
            return None
        await save_step(request, integration, "items", **setup_forms.items_changes(values))
        await _resume(request, integration, SETTINGS, MISSING_ITEM, MISSING_GL)
        return after_save(request, integration, "items", data.get("back"))

    return await _page(request, "items", "setup/items.html", ("gl_accounts", "sales_items"), handle)


_BASE = "/integrations/{integration_id:int}/setup"
routes = [
    Route(_BASE + "/administration", setup_administration, name="setup_administration", methods=["GET", "POST"]),
    Route(_BASE + "/vat", setup_vat, name="setup_vat", methods=["GET", "POST"]),
    Route(_BASE + "/booking", setup_booking, name="setup_booking", methods=["GET", "POST"]),
    Route(_BASE + "/items", setup_items, name="setup_items", methods=["GET", "POST"]),
]
