"""The recorded shop orders (tests/payloads/order_*.json) and which of them a configuration cannot book, and why."""

from __future__ import annotations

from gateway import booking
from tests.support.environment import PAYLOADS

ORDER_CORPUS = sorted(p.stem.removeprefix("order_") for p in PAYLOADS.glob("order_*.json"))


def expected_failure(name: str, document_type: str, mode: str) -> str | None:
    """Which orders of the corpus cannot be booked under a configuration, and why."""
    if name == "oss_it_unmapped" or (name.startswith("oss_") and mode == "webshop_country"):
        return booking.UNMAPPED_VAT
    if name.startswith("credit") and document_type == "sales_order":
        return booking.CREDIT_SALES_ORDER
    if name == "no_sku" and document_type != "sales_entry":
        return booking.MISSING_SKU
    return None
