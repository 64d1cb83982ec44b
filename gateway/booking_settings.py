"""What a customer configured for booking: the integration's settings and its VAT category mappings.

Plain frozen values that the pure booking code (gateway/booking*.py) reads and gateway/store/integrations.py stores;
nothing here does I/O. They move into gateway/booking/ with the package-per-domain layout (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INSERTION_TYPES = ("sales_entry", "sales_invoice", "sales_order", "direct_sales_invoice")
EU_VAT_MODES = ("webshop_country", "oss")
INVOICE_STATUSES = ("draft", "final")


@dataclass(frozen=True)
class IntegrationSettings:
    """Every booking step a customer configures. Stored as JSON on the integration row."""

    selected_statuses: tuple[int, ...] = ()
    insertion_type: str = "sales_entry"
    journal_code: str = ""
    eu_consumer_vat: str = "webshop_country"
    oss_revenue_account: str = ""
    create_items: bool = False
    use_item_ledger: bool = False
    shipping_item: str = ""
    costs_item: str = ""
    discount_item: str = ""
    shipping_gl_account: str = ""
    costs_gl_account: str = ""
    discount_gl_account: str = ""
    invoice_status: str = "draft"
    send_invoice: bool = False
    b2c_collective: bool = False
    b2c_collective_account: str = ""
    payment_condition: str = ""
    warehouse: str = ""
    initial_export_start: str = ""
    completed_steps: tuple[str, ...] = ()  # set-up wizard steps saved as done (routes/setup.py)
    books_check_monthly: bool = False  # check last month's books on the 1st and mail the headline (books check)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> IntegrationSettings:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "selected_statuses" in values:
            values["selected_statuses"] = tuple(int(s) for s in values["selected_statuses"])
        if "completed_steps" in values:
            values["completed_steps"] = tuple(str(s) for s in values["completed_steps"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["selected_statuses"] = list(self.selected_statuses)
        data["completed_steps"] = list(self.completed_steps)
        return data

    def replace(self, **changes: Any) -> IntegrationSettings:
        return dataclasses.replace(self, **changes)


# A VAT category the owner marked as never used: no Exact VAT code is a single "-" (not a code Exact issues).
NOT_USED = "-"


@dataclass(frozen=True)
class VatMapping:
    category: str
    vat_code: str | None  # NOT_USED: the owner said the shop never sells in this category
    gl_account: str | None
    seen_in_orders: bool

    @property
    def not_used(self) -> bool:
        return self.vat_code == NOT_USED

    @property
    def usable(self) -> bool:
        """Mapped to a real Exact VAT code (not missing, not marked as not used)."""
        return bool(self.vat_code) and not self.not_used
