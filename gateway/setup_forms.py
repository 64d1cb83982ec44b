"""Parsing and checking the Exact settings forms of the wizard; pure (no I/O), so every rule has a direct test.

Each `parse_*` returns `(values, errors)`. Options come from the customer's administration (gateway/lookups.py);
a submitted value outside them is an error. Combinations Exact would refuse are errors with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.clients.exact import (
    ExactDivision,
    ExactGLAccount,
    ExactItem,
    ExactJournal,
    ExactPaymentCondition,
    ExactVatCode,
)
from gateway.forms import Errors, Form
from gateway.i18n import N_, Message
from gateway.store.integrations import (
    EU_VAT_MODES,
    INSERTION_TYPES,
    INVOICE_STATUSES,
    NOT_USED,
    Integration,
    IntegrationSettings,
    VatMapping,
)
from gateway.vat import EU_B2B, EXPORT, is_oss

INVOICE_KINDS = ("sales_invoice", "direct_sales_invoice")
CODE_MAX = 40

CREDIT_AS_SALES_ORDER = N_(
    "Credit statuses cannot be booked as sales orders: Exact sales orders cannot be negative. Untick the credit "
    "statuses, or book orders as sales entries or invoices."
)


def parse_administration(data: Any, divisions: Sequence[ExactDivision]) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    chosen = form.integer("division")
    by_code = {d.code: d for d in divisions}
    if chosen is not None and chosen not in by_code:
        form.error("division", N_("Choose one of the listed administrations."))
    form.values["division_record"] = by_code.get(chosen) if chosen is not None else None
    return form.values, form.errors


# --- VAT ----------------------------------------------------------------------------------------------------------


def category_country_rate(category: str) -> tuple[str, str]:
    """("NL", "21") for "NL-21", ("DE", "19") for "OSS-DE-19", ("", "") for EU-B2B/EXPORT."""
    if category in (EU_B2B, EXPORT):
        return "", ""
    prefix, _, rate = category.rpartition("-")
    return prefix.removeprefix("OSS-"), rate


def vat_category_label(category: str) -> Message:
    """Words for a VAT category ("NL 21 %", "OSS DE 19 %", ...), translated when shown."""
    if category == EU_B2B:
        return N_("EU business customers (VAT reverse charged)")
    if category == EXPORT:
        return N_("Export outside the EU")
    country, rate = category_country_rate(category)
    if is_oss(category):
        return N_("OSS %(country)s %(rate)s %%", country=country, rate=rate)
    return N_("%(country)s %(rate)s %%", country=country, rate=rate)


# Words Exact administrations use in VAT code and revenue account descriptions (Dutch and English charts).
EXPORT_WORDS = ("export", "buiten de eu", "outside the eu", "non-eu")
ICP_WORDS = ("icp", "intracommunautair", "intra-community", "binnen de eu", "within the eu", "eu b2b")
OSS_WORDS = ("oss", "unieregeling", "one-stop", "one stop")


def _mentions(text: str, words: Sequence[str]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def suggest_vat_code(category: str, codes: Sequence[ExactVatCode]) -> str:
    """The administration's best match for a category (the owner confirms it), or "" when it has none: a sales
    code, not blocked, of the same rate; for OSS of the same country; export and intra-EU by their EU listing and
    description (ICP listing "L"; export is a 0 % code that says so)."""
    country, rate = category_country_rate(category)
    usable = [c for c in codes if c.is_sales and not c.is_blocked]
    if category == EU_B2B:  # EUSalesListing: L goods, S services, T triangulation, N none (docs/setup.md)
        matches = [c for c in usable if c.percentage == 0 and not c.oss_country and c.eu_sales_listing in ("L", "S")]
        matches.sort(key=lambda c: (c.eu_sales_listing != "L", not _mentions(c.description, ICP_WORDS), c.code))
    elif category == EXPORT:
        matches = [c for c in usable if c.percentage == 0 and not c.oss_country and c.eu_sales_listing in ("N", "")]
        matches.sort(key=lambda c: (not _mentions(c.description, EXPORT_WORDS), c.charged, c.code))
    else:
        matches = [
            c
            for c in usable
            if str(c.percent) == rate and (c.oss_country == country if is_oss(category) else not c.oss_country)
        ]
        # Prefer VAT-excluding codes: the gateway books net amounts with the VAT beside them.
        matches.sort(key=lambda c: (c.type != "E", c.charged, c.code))
    return matches[0].code if matches else ""


def suggest_gl_account(category: str, accounts: Sequence[ExactGLAccount]) -> str:
    """The revenue account (G/L type 110) a category most likely books on: by the words of its description
    (export, intra-EU, OSS, high or low rate, 0 %), else the first revenue account; "" when there is none."""
    revenue = [a for a in accounts if a.type == 110 and not a.is_blocked]
    _, rate = category_country_rate(category)
    if category == EXPORT:
        wanted: Sequence[str] = EXPORT_WORDS
    elif category == EU_B2B:
        wanted = ICP_WORDS
    elif is_oss(category):
        wanted = OSS_WORDS
    elif rate == "0":
        wanted = ("0%", "0 %", "nul", "vrijgesteld", "exempt")
    elif rate and float(rate) >= 15:
        wanted = ("hoog", "high", "standard", "algemeen", f"{rate}%", f"{rate} %")
    else:
        wanted = ("laag", "low", "reduced", "verlaagd", f"{rate}%", f"{rate} %")
    for account in revenue:
        if _mentions(account.description, wanted):
            return account.code
    general = [a for a in revenue if not _mentions(a.description, (*EXPORT_WORDS, *ICP_WORDS, *OSS_WORDS))]
    return (general or revenue)[0].code if (general or revenue) else ""


def vat_rate_warnings(
    values: Mapping[str, Any], categories: Sequence[str], codes: Sequence[ExactVatCode]
) -> dict[str, Message]:
    """Chosen codes whose rate differs from their category's: allowed (the booking sends the shop's VAT amounts),
    but the VAT return in Exact would then be wrong, so the page points it out."""
    by_code = {c.code: c for c in codes}
    warnings: dict[str, Message] = {}
    for category in categories:
        code = by_code.get(str(values.get(f"vat_{category}") or ""))
        rate = category_country_rate(category)[1] or "0"
        if code is not None and str(code.percent) != rate:
            warnings[f"vat_{category}"] = N_(
                "This code is %(code_rate)s %%, the category %(rate)s %%.", code_rate=str(code.percent), rate=rate
            )
    return warnings


def vat_initial_values(
    integration: Integration,
    saved: Mapping[str, VatMapping],
    categories: Sequence[str],
    codes: Sequence[ExactVatCode],
    accounts: Sequence[ExactGLAccount] = (),
) -> dict[str, Any]:
    """Saved answers, else the administration's best match: a VAT code and a revenue account per category, and
    "not used" for a category the administration has no code for (the owner can still choose one)."""
    values: dict[str, Any] = {
        "eu_consumer_vat": integration.settings.eu_consumer_vat,
        "oss_revenue_account": integration.settings.oss_revenue_account or suggest_gl_account("OSS-", accounts),
    }
    for category in categories:
        mapping = saved.get(category)
        values[f"vat_{category}"] = (
            (mapping.vat_code if mapping else "") or suggest_vat_code(category, codes) or NOT_USED
        )
        values[f"gl_{category}"] = (mapping.gl_account if mapping else "") or suggest_gl_account(category, accounts)
    return values


def parse_vat(
    data: Any,
    categories: Sequence[str],
    codes: Sequence[ExactVatCode],
    accounts: Sequence[ExactGLAccount],
) -> tuple[dict[str, Any], Errors]:
    """A VAT code for every category; a revenue account for each too, except OSS categories when the default OSS
    revenue account is chosen."""
    form = Form(data)
    mode = form.choice("eu_consumer_vat", EU_VAT_MODES)
    code_set = [c.code for c in codes]
    account_set = [a.code for a in accounts]
    oss_default = form.choice("oss_revenue_account", account_set, required=False)
    for category in categories:
        vat_code = form.choice(f"vat_{category}", [*code_set, NOT_USED])
        if f"vat_{category}" in form.errors and not vat_code:
            form.errors[f"vat_{category}"] = N_(
                "Choose the Exact VAT code for %(category)s, or mark it as not used.",
                category=vat_category_label(category),
            )
        code = next((c for c in codes if c.code == vat_code), None)
        if code is not None and is_oss(category) and code.oss_country and code.oss_country != category[4:6]:
            form.error(f"vat_{category}", N_("This VAT code is for OSS country %(country)s.", country=code.oss_country))
        gl = form.choice(f"gl_{category}", account_set, required=False)
        if not gl and vat_code != NOT_USED and not (is_oss(category) and oss_default):
            form.error(
                f"gl_{category}",
                N_("Choose the revenue account for %(category)s.", category=vat_category_label(category)),
            )
    if mode == "oss" and not oss_default and any(is_oss(c) for c in categories):
        values_missing = [c for c in categories if is_oss(c) and not form.values.get(f"gl_{c}")]
        if values_missing:
            form.error("oss_revenue_account", N_("Choose the default revenue account for OSS sales."))
    return form.values, form.errors


# --- How orders are booked ------------------------------------------------------------------------------------------


def booking_initial_values(settings: IntegrationSettings) -> dict[str, Any]:
    return {
        "insertion_type": settings.insertion_type,
        "journal_code": settings.journal_code,
        "invoice_status": settings.invoice_status,
        "send_invoice": settings.send_invoice,
        "warehouse": settings.warehouse,
        "payment_condition": settings.payment_condition,
    }


def parse_booking(
    data: Any,
    journals: Sequence[ExactJournal],
    conditions: Sequence[ExactPaymentCondition],
    *,
    credit_selected: bool,
) -> tuple[dict[str, Any], Errors]:
    form = Form(data)
    kind = form.choice("insertion_type", INSERTION_TYPES)
    journal = form.choice("journal_code", [j.code for j in journals], required=kind != "sales_order")
    if kind != "sales_order" and not journal and "journal_code" in form.errors:
        form.errors["journal_code"] = N_("Choose the sales journal the orders are booked in.")
    status = form.choice("invoice_status", INVOICE_STATUSES, required=False) or "draft"
    send = form.checkbox("send_invoice")
    warehouse = form.text("warehouse", required=False, max_length=CODE_MAX)
    form.choice("payment_condition", [c.code for c in conditions], required=False)
    if kind == "sales_order" and credit_selected:
        form.error("insertion_type", CREDIT_AS_SALES_ORDER)
    if kind == "direct_sales_invoice" and not warehouse:
        form.error("warehouse", N_("Direct sales invoices need the code of the warehouse the goods leave from."))
    if send and kind not in INVOICE_KINDS:
        form.error("send_invoice", N_("Only invoices can be e-mailed; this booking type makes no invoice."))
    elif send and status != "final":
        form.error("send_invoice", N_("Exact e-mails an invoice only once it is final. Choose final, or do not send."))
    form.values["invoice_status"] = status
    return form.values, form.errors


def booking_changes(values: Mapping[str, Any]) -> dict[str, Any]:
    kind = values["insertion_type"]
    is_invoice = kind in INVOICE_KINDS
    return {
        "insertion_type": kind,
        "journal_code": values["journal_code"],
        "invoice_status": values["invoice_status"] if is_invoice else "draft",
        "send_invoice": bool(values["send_invoice"]) and is_invoice,
        "warehouse": values["warehouse"] if kind == "direct_sales_invoice" else "",
        "payment_condition": values["payment_condition"],
    }


# --- Items and accounts ---------------------------------------------------------------------------------------------

ITEM_FIELDS = ("shipping_item", "costs_item", "discount_item")
GL_FIELDS = ("shipping_gl_account", "costs_gl_account", "discount_gl_account")
CREATE_ITEM = "+"  # the choice "create it in Exact for me": the page creates the item when it is saved
# The item the page creates per field (code, description) and the words that find an existing one.
NEW_ITEMS = {
    "shipping_item": ("VERZENDKOSTEN", N_("Shipping costs")),
    "costs_item": ("BETAALKOSTEN", N_("Payment and other costs")),
    "discount_item": ("KORTING", N_("Discount")),
}
ITEM_WORDS = {
    "shipping_item": ("verzend", "shipping", "porto", "bezorg", "delivery"),
    "costs_item": ("betaalkosten", "payment", "transactiekosten", "toeslag", "surcharge"),
    "discount_item": ("korting", "discount"),
}
ITEM_MISSING = {
    "shipping_item": N_("Choose the item for shipping costs, or let the gateway create it."),
    "costs_item": N_("Choose the item for payment and other costs, let the gateway create it, or choose not used."),
    "discount_item": N_("Choose the item for discounts, let the gateway create it, or choose not used."),
}


def suggest_item(name: str, items: Sequence[ExactItem]) -> str:
    """An existing item that reads like the field's purpose, else "create it" (the owner sees the choice)."""
    for item in items:
        if _mentions(f"{item.code} {item.description}", ITEM_WORDS[name]):
            return item.code
    return CREATE_ITEM


def items_initial_values(settings: IntegrationSettings, items: Sequence[ExactItem] = ()) -> dict[str, Any]:
    names = (*ITEM_FIELDS, *GL_FIELDS, "create_items", "use_item_ledger", "b2c_collective", "b2c_collective_account")
    values = {name: getattr(settings, name) for name in names}
    if "items" not in settings.completed_steps:
        values.update({name: getattr(settings, name) or suggest_item(name, items) for name in ITEM_FIELDS})
    return values


def parse_items(
    data: Any, accounts: Sequence[ExactGLAccount], items: Sequence[str] = (), *, uses_items: bool
) -> tuple[dict[str, Any], Errors]:
    """Invoices and orders book every line on an Exact item: shipping needs one (picked from `items`, or created),
    costs and discounts one or "not used" (an order with such a line is then refused readably). Sales entries book
    on revenue accounts: these are optional (the VAT category's account is the fallback)."""
    form = Form(data)
    account_codes = [a.code for a in accounts]
    for name in ITEM_FIELDS:
        form.choice(name, [*items, CREATE_ITEM], required=uses_items and name == "shipping_item")
        if name in form.errors:  # each field's own sentence, so the summary names what to fix
            form.errors[name] = ITEM_MISSING[name]
    for name in GL_FIELDS:
        form.choice(name, account_codes, required=False)
    form.checkbox("create_items")
    form.checkbox("use_item_ledger")
    collective = form.checkbox("b2c_collective")
    form.text("b2c_collective_account", required=collective, max_length=CODE_MAX)
    if collective and not form.values["b2c_collective_account"]:
        form.errors["b2c_collective_account"] = N_("Enter the code of the Exact customer that collects consumers.")
    return form.values, form.errors


def items_changes(values: Mapping[str, Any]) -> dict[str, Any]:
    changes = {name: values[name] for name in (*ITEM_FIELDS, *GL_FIELDS)}
    changes.update(
        create_items=bool(values["create_items"]),
        use_item_ledger=bool(values["use_item_ledger"]),
        b2c_collective=bool(values["b2c_collective"]),
        b2c_collective_account=values["b2c_collective_account"] if values["b2c_collective"] else "",
    )
    return changes
