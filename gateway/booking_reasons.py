"""Why an order was not booked, in the reader's language: the sentence of each error kind that stores its figures.

A failure is stored as its kind (`order_sync.error_kind`), its figures (`error_params`) and an English sentence
(`last_error`, for logs, the operator CLI and support mail). Pages render the kind's sentence below with the stored
figures through the catalogues (gateway/locales); a kind without a sentence here, or a row from before figures were
stored, shows `last_error` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.i18n import N_, Message

REASONS: dict[str, Message] = {
    "unmarked_document": N_(
        "Exact already holds %(documents)s with reference %(order)s, not made by the gateway for this shop. Check it "
        "in Exact: if it is this order, mark the order as ignored; otherwise delete it there and retry the order."
    ),
    "duplicate_mark": N_(
        "Exact holds several documents marked as order %(order)s (%(documents)s). Keep one, delete the others in "
        "Exact, then retry the order."
    ),
    "totals_mismatch": N_(
        "The lines of order %(order)s add up to %(lines)s, but the order total is %(total)s. Correct the order in the "
        "shop, then retry it."
    ),
    "vat_mismatch": N_(
        "The VAT at %(rate)s %% of order %(order)s is %(vat)s, but its lines carry %(lines)s. Correct the order in "
        "the shop, then retry it."
    ),
    "vat_code_rate": N_(
        "%(line)s of order %(order)s carries %(vat)s VAT on %(amount)s (%(rate)s %%), but VAT code %(code)s of "
        "category %(category)s charges %(code_rate)s %% (%(expected)s). Map the category to a code of %(rate)s %%."
    ),
    "vat_contradiction": N_(
        "Order %(order)s says no VAT is due (%(strategy)s) but charges %(vat)s VAT. Correct the order in the shop, "
        "then retry it."
    ),
    "currency": N_("Order %(order)s is in %(currency)s; %(reason)s Book it by hand in Exact or ignore it."),
}


def describe_failure(error_kind: str | None, params: Mapping[str, Any] | None, last_error: str | None) -> Message | str:
    """The failure of an order sync for a page: the kind's sentence with its figures, else the stored English text."""
    template = REASONS.get(error_kind or "")
    if template is None or not params:
        return last_error or ""
    try:
        template.text % dict(params)  # every figure the sentence names was stored
    except (KeyError, TypeError, ValueError):
        return last_error or ""
    return N_(template.text, **{k: str(v) for k, v in params.items()})
