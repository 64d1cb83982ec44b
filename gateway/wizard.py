"""The set-up wizard's steps, in the order of the installation manual, and which of them an integration has done.

The two connection steps are done when their connection is; every other step when it was saved at least once
(`IntegrationSettings.completed_steps`). Pure: no I/O; routes/setup.py and routes/setup_exact.py use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.i18n import N_, NP_, Message
from gateway.store.integrations import Integration, IntegrationSettings


@dataclass(frozen=True)
class Step:
    key: str
    route: str
    title: Message
    group: Message
    needs: tuple[str, ...] = ()  # connections this step reads from: "shop", "exact"


CONNECT = N_("Connect")
SHOP_SETTINGS = N_("Mijnwebwinkel settings")
EXACT_SETTINGS = N_("Exact Online settings")
FINISH = N_("Finish")

STEPS: tuple[Step, ...] = (
    Step("shop", "setup_shop", N_("Connect Mijnwebwinkel"), CONNECT),
    Step("exact", "setup_exact", N_("Connect Exact Online"), CONNECT),
    Step("statuses", "setup_statuses", N_("Order statuses"), SHOP_SETTINGS),
    Step("export", "setup_export", N_("Existing orders"), SHOP_SETTINGS, ("shop",)),
    Step("administration", "setup_administration", N_("Administration"), EXACT_SETTINGS, ("exact",)),
    Step("vat", "setup_vat", N_("VAT codes and revenue accounts"), EXACT_SETTINGS, ("shop", "exact")),
    Step("booking", "setup_booking", N_("How orders are booked"), EXACT_SETTINGS, ("exact",)),
    Step("items", "setup_items", N_("Items, shipping costs and discounts"), EXACT_SETTINGS, ("exact",)),
    Step("service", "setup_service", N_("Service level"), FINISH),
    Step("review", "setup_review", N_("Review and switch on"), FINISH),
)
STEP_KEYS = tuple(step.key for step in STEPS)
BY_KEY = {step.key: step for step in STEPS}


def is_done(integration: Integration, key: str) -> bool:
    if key == "shop":
        return integration.shop_connection == "connected"
    if key == "exact":
        return integration.exact_connection == "connected"
    if key == "administration" and not integration.exact_division:
        return False
    if key == "review":
        return integration.activated_at is not None
    return key in integration.settings.completed_steps


def missing_connections(integration: Integration, step: Step) -> list[str]:
    return [need for need in step.needs if not is_done(integration, need)]


def current_step(integration: Integration) -> Step:
    """Where to continue: the first step not done yet (the review when all are)."""
    for step in STEPS:
        if not is_done(integration, step.key):
            return step
    return BY_KEY["review"]


def next_step(key: str) -> Step:
    index = STEP_KEYS.index(key)
    return STEPS[min(index + 1, len(STEPS) - 1)]


def previous_step(key: str) -> Step | None:
    index = STEP_KEYS.index(key)
    return STEPS[index - 1] if index > 0 else None


def steps_left(integration: Integration) -> list[Step]:
    """Steps that must be done before switching on (every step but the review itself)."""
    return [step for step in STEPS if step.key != "review" and not is_done(integration, step.key)]


def mark_done(settings: IntegrationSettings, key: str, **changes: object) -> IntegrationSettings:
    """The settings with `changes` applied and `key` recorded as done."""
    done = settings.completed_steps if key in settings.completed_steps else (*settings.completed_steps, key)
    return settings.replace(completed_steps=done, **changes)


INSERTION_NAMES = {
    "sales_entry": N_("Sales entries"),
    "sales_invoice": N_("Sales invoices"),
    "sales_order": N_("Sales orders"),
    "direct_sales_invoice": N_("Direct sales invoices"),
}


def step_summary(integration: Integration, key: str) -> Message | None:
    """One line under a done step in the overview: what was chosen."""
    if not is_done(integration, key):
        return None
    settings = integration.settings
    summaries: dict[str, Message | None] = {
        "shop": N_("Shop %(name)s", name=integration.shop_name or ""),
        "exact": N_("Connected by %(user)s", user=integration.exact_user_name) if integration.exact_user_name else None,
        "statuses": NP_("%(n)s status", "%(n)s statuses", len(settings.selected_statuses)),
        "export": N_("From %(date)s", date=settings.initial_export_start)
        if settings.initial_export_start
        else N_("Only new orders"),
        "administration": N_("%(name)s", name=integration.exact_division_name or integration.exact_division),
        "vat": N_("One-Stop-Shop (OSS)") if settings.eu_consumer_vat == "oss" else N_("VAT of the webshop's country"),
        "booking": INSERTION_NAMES.get(settings.insertion_type),
        "items": items_summary(settings),
        "service": N_("%(level)s", level=integration.service_level.capitalize()),
    }
    return summaries.get(key)


def items_summary(settings: IntegrationSettings) -> Message:
    """The items (invoices, orders) or revenue accounts (sales entries) for shipping, costs and discounts."""
    not_used = N_("not used")
    if settings.insertion_type == "sales_entry":
        return N_(
            "Revenue accounts: shipping %(shipping)s, costs %(costs)s, discounts %(discount)s",
            shipping=settings.shipping_gl_account or N_("as the VAT category"),
            costs=settings.costs_gl_account or N_("as the VAT category"),
            discount=settings.discount_gl_account or N_("as the VAT category"),
        )
    return N_(
        "Items: shipping %(shipping)s, costs %(costs)s, discounts %(discount)s",
        shipping=settings.shipping_item or not_used,
        costs=settings.costs_item or not_used,
        discount=settings.discount_item or not_used,
    )
