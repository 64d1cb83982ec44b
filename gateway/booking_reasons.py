"""Why an order was not booked, in the reader's language: the sentence of each error kind that stores its figures.

A failure is stored as its kind (`order_sync.error_kind`), its figures (`error_params`) and an English sentence
(`last_error`, for logs, the operator CLI and support mail). Pages render the kind's sentence below with the stored
figures through the catalogues (gateway/locales); a kind without a sentence here, or a row from before figures were
stored, shows `last_error` as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.i18n import N_, Message

REASONS: dict[str, Message | tuple[Message, ...]] = {
    "unmarked_document": N_(
        "Exact already holds %(documents)s with reference %(order)s, not made by the gateway for this shop. Check it "
        "in Exact: if it is this order, mark the order as ignored; otherwise delete it there and retry the order."
    ),
    "duplicate_mark": N_(
        "Exact holds several documents marked as order %(order)s (%(documents)s). Keep one, delete the others in "
        "Exact, then retry the order."
    ),
    "totals_mismatch": (
        N_(
            "The lines of order %(order)s add up to %(lines)s, but the order total is %(total)s. Correct the order in "
            "the shop, then retry it."
        ),
        N_(
            "The VAT at %(rate)s %% of order %(order)s is %(vat)s, but its lines carry %(lines)s. Correct the order in "
            "the shop, then retry it."
        ),
        N_(
            "Order %(order)s charges %(vat)s VAT at %(rate)s %%, but no line has that rate. Correct the order in the "
            "shop, then retry it."
        ),
    ),
    "vat_code_rate": N_(
        "Order %(order)s carries %(vat)s VAT on %(amount)s at %(rate)s %% (category %(category)s), but VAT code "
        "%(code)s charges %(code_rate)s %%, which makes %(expected)s. Map category %(category)s to a VAT code of "
        "%(rate)s %%."
    ),
    "vat_contradiction": N_(
        "Order %(order)s says no VAT is due (%(strategy)s) but charges %(vat)s VAT. Correct the order in the shop, "
        "then retry it."
    ),
    "currency": N_(
        "Order %(order)s is in %(currency)s, but sales journal %(journal)s books only %(journal_currency)s. Allow "
        "other currencies on journal %(journal)s in Exact, or choose a journal that does, then retry the order."
    ),
}


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def describe_failure(error_kind: str | None, params: Mapping[str, Any] | None, last_error: str | None) -> Message | str:
    """The failure of an order sync for a page: the kind's sentence that names exactly the stored figures, else the
    stored English text."""
    found = REASONS.get(error_kind or "")
    templates = (found,) if isinstance(found, Message) else found or ()
    for template in templates:
        if params and set(_PLACEHOLDER.findall(template.text)) == set(params):
            return N_(template.text, **{k: str(v) for k, v in params.items()})
    return last_error or ""


# ---------------------------------------------------------------- for pages: never the English text

# Without its figures (an older row, or a kind whose message names none) a failure shows its kind's summary, so a
# page never shows the English `last_error` outside the "technical details" disclosure.
SUMMARIES: dict[str, Message] = {
    "creating_records": N_(
        "This big order needs many new items in Exact. They are being created in steps; the order is booked by "
        "itself once they all exist."
    ),
    "unmapped_vat": N_(
        "This order has a kind of VAT that has no Exact VAT code yet. Choose its code in the VAT step of the settings; "
        "the order is booked once you save it."
    ),
    "vat_not_used": N_(
        "This order has VAT category %(category)s, which you marked as not used. Choose its Exact VAT code in the VAT "
        "step of the settings; the order is booked once you save it."
    ),
    "missing_sku": N_(
        "An order line has no article number (SKU), so it cannot be matched to an Exact item. Add the SKU in the shop, "
        "then retry the order."
    ),
    "missing_item": N_(
        "An item chosen in the settings does not exist in Exact (any more). Choose another item in the settings, then "
        "retry the order."
    ),
    "missing_gl": N_(
        "A revenue account chosen in the settings does not exist in Exact (any more). Choose another account in the "
        "VAT step, then retry the order."
    ),
    "totals_mismatch": N_(
        "The amounts of this order do not add up, so it was not booked. Correct the order in the shop, then retry it."
    ),
    "settings": N_(
        "A setting needed to book this order is missing or no longer matches Exact. Check the settings, then retry the "
        "order."
    ),
    "credit_sales_order": N_(
        "This is a credit order, and Exact sales orders cannot be credited. Book it by hand in Exact or ignore it."
    ),
    "negative_sales_order": N_(
        "This order discounts more than it charges at one VAT rate, and Exact sales orders cannot be negative. Book it "
        "by hand in Exact, or book orders as sales entries or invoices."
    ),
    "unmarked_document": N_(
        "Exact already holds a document that may be this order. Check it in Exact, then retry or ignore the order."
    ),
    "duplicate_mark": N_(
        "Exact holds several documents marked as this order. Keep one, delete the others in Exact, then retry the "
        "order."
    ),
    "exact_auth": N_(
        "The connection to Exact Online was lost. Connect Exact again; the order is booked once you have."
    ),
    "shop_auth": N_(
        "Mijnwebwinkel no longer accepts the shop token. Paste a new token; the order is booked once you have."
    ),
    "exact_refused": N_(
        "Exact Online refused the booking; its answer is under the attempt below. Correct the cause, then retry the "
        "order."
    ),
    "shop_refused": N_(
        "Mijnwebwinkel did not hand over this order. Retry it later; if that keeps failing, send it to support."
    ),
    "invoice_processing": N_(
        "The invoice was created in Exact but could not be processed. Process it in Exact, then retry or ignore the "
        "order."
    ),
    "unavailable": N_("Exact Online or Mijnwebwinkel could not be reached, even after several tries. Retry it later."),
    "vat_code_rate": N_(
        "The VAT rate of an order line differs from the rate of its Exact VAT code. Choose a code with that rate in "
        "the VAT step, then retry the order."
    ),
    "vat_contradiction": N_(
        "The order says no VAT is due but charges VAT. Correct the order in the shop, then retry it."
    ),
    "currency": N_(
        "This order is in a currency the chosen sales journal does not take. Allow other currencies on the journal in "
        "Exact, or choose a journal that does, then retry the order."
    ),
}
UNKNOWN_FAILURE = N_("This order could not be booked. Retry it, or send it to support with the details below.")
_FIGURE = re.compile(r"%\((\w+)\)s")


def failure_message(error_kind: str | None, params: Mapping[str, Any] | None, last_error: str | None) -> Message:
    """What a page shows for a failure, always from the catalogues: the kind's sentence with its figures
    (`describe_failure`), else the kind's summary, else a general sentence."""
    described = describe_failure(error_kind, params, last_error)
    if isinstance(described, Message):
        return described
    summary = SUMMARIES.get(error_kind or "")
    names = set(_FIGURE.findall(summary.text)) if summary else set()
    if summary is not None and names <= set(params or {}):
        return N_(summary.text, **{k: str(v) for k, v in (params or {}).items() if k in names})
    return UNKNOWN_FAILURE
