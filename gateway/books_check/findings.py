"""The books check's vocabulary: both sides of a month as typed values, and what the matcher finds; pure, no I/O.

Money is Decimal and compared in cents. VAT is kept per rate in percent ("21", "9", "0"), the way the shop states it;
Exact's fractions (0.21) are turned into percent where they are read (books_check/exact_reads.py).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
ZERO = Decimal(0)

VatByRate = Mapping[Decimal, Decimal]  # rate in percent → VAT amount


def to_cents(value: Decimal) -> int:
    """A money amount as whole cents (half up, as the shop and Exact round)."""
    return int((value.quantize(CENT, rounding=ROUND_HALF_UP) * 100).to_integral_value())


def rate_key(rate: Decimal) -> Decimal:
    """One spelling per rate: 21, 21.0 and 21.00 are one key; 5.5 stays 5.5."""
    normal = rate.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


class Kind(enum.StrEnum):
    """What a finding says; stored by value and rendered in the reader's language (books_check/texts.py)."""

    MISSING_DOCUMENT = "missing_document"  # the shop counted the order; Exact has no document with its mark
    MISSING_CREDIT_DOCUMENT = "missing_credit_document"  # a credit order without its credit document
    DELETED_DOCUMENT = "deleted_document"  # the gateway booked it; the document is gone from Exact
    CHANGED_DOCUMENT = "changed_document"  # the document was modified in Exact after the gateway booked it
    AMOUNT_DIFFERENCE = "amount_difference"  # total or VAT per rate differ between shop and Exact
    SKIPPED_ORDER = "skipped_order"  # the order is in a selected status but the gateway skipped it
    DOUBLE_DOCUMENT = "double_document"  # more than one document carries the order's mark
    DOCUMENT_WITHOUT_ORDER = "document_without_order"  # a document with this shop's mark, no such order this month
    WRONG_DOCUMENT = "wrong_document"  # the gateway's row points at a document that is not this order's (other shop)
    IGNORED = "ignored"  # deliberately ignored by the owner: listed, not a difference


DIFFERENCES = frozenset(Kind) - {Kind.IGNORED}


@dataclass(frozen=True)
class ShopOrder:
    """An order as Mijnwebwinkel counts it. Credit orders carry their amounts negative, as their document does."""

    number: str
    order_date: date
    status: int
    total: Decimal
    vat: VatByRate
    is_credit: bool = False
    credited_order_number: str = ""


@dataclass(frozen=True)
class ExactBooking:
    """A document in the integration's journal and period, with its totals as Exact holds them now."""

    document_type: str
    id: str
    number: str
    your_ref: str
    payment_reference: str
    total: Decimal
    vat: VatByRate
    modified: datetime | None = None
    status: int | None = None  # invoices and orders: Exact's Status (invoices: 50 = processed)


@dataclass(frozen=True)
class GatewayRecord:
    """The gateway's own row of an order (order_sync): its state and where it says the order is booked."""

    order_sync_id: int
    order_number: str
    state: str
    document_id: str = ""
    booked_at: datetime | None = None


@dataclass(frozen=True)
class Figures:
    """One side's amounts for a finding; `None` where that side has nothing."""

    total: Decimal
    vat: VatByRate

    def to_json(self) -> dict[str, Any]:
        return {"total": str(self.total), "vat": {str(k): str(v) for k, v in sorted(self.vat.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Figures | None:
        if not data:
            return None
        vat = {Decimal(k): Decimal(v) for k, v in dict(data.get("vat") or {}).items()}
        return cls(total=Decimal(str(data["total"])), vat=vat)


@dataclass(frozen=True)
class Finding:
    """One line of the report: what, which order, both sides' figures and the difference in cents."""

    kind: Kind
    order_number: str
    shop: Figures | None = None
    exact: Figures | None = None
    document_number: str = ""
    order_sync_id: int | None = None
    gateway_state: str = ""
    total_cents: int = 0  # Exact minus shop
    vat_cents: Mapping[str, int] = field(default_factory=dict)  # per rate, Exact minus shop, only where they differ
    detail: str = ""  # a fact for the reader: the other shop's mark, the modification time, the shop status
    shop_status: int | None = None  # the order's status in the shop (to feed a never-seen order to the pipeline)

    @property
    def is_difference(self) -> bool:
        return self.kind in DIFFERENCES

    @property
    def key(self) -> str:
        """Stable within a month: what "mark reviewed" remembers."""
        return f"{self.kind.value}:{self.order_number}:{self.document_number}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "order_number": self.order_number,
            "shop": self.shop.to_json() if self.shop else None,
            "exact": self.exact.to_json() if self.exact else None,
            "document_number": self.document_number,
            "order_sync_id": self.order_sync_id,
            "gateway_state": self.gateway_state,
            "total_cents": self.total_cents,
            "vat_cents": dict(self.vat_cents),
            "detail": self.detail,
            "shop_status": self.shop_status,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            kind=Kind(data["kind"]),
            order_number=str(data["order_number"]),
            shop=Figures.from_json(data.get("shop")),
            exact=Figures.from_json(data.get("exact")),
            document_number=str(data.get("document_number") or ""),
            order_sync_id=data.get("order_sync_id"),
            gateway_state=str(data.get("gateway_state") or ""),
            total_cents=int(data.get("total_cents") or 0),
            vat_cents={str(k): int(v) for k, v in dict(data.get("vat_cents") or {}).items()},
            detail=str(data.get("detail") or ""),
            shop_status=data.get("shop_status"),
        )


@dataclass(frozen=True)
class Headline:
    """The month at a glance: counts, both totals, VAT per rate side by side, and how many differences."""

    orders: int
    documents: int
    shop_total: Decimal
    exact_total: Decimal
    shop_vat: VatByRate
    exact_vat: VatByRate
    differences: int
    ignored: int
    not_selected: int

    def to_json(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "documents": self.documents,
            "shop_total": str(self.shop_total),
            "exact_total": str(self.exact_total),
            "shop_vat": {str(k): str(v) for k, v in sorted(self.shop_vat.items())},
            "exact_vat": {str(k): str(v) for k, v in sorted(self.exact_vat.items())},
            "differences": self.differences,
            "ignored": self.ignored,
            "not_selected": self.not_selected,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Headline:
        return cls(
            orders=int(data["orders"]),
            documents=int(data["documents"]),
            shop_total=Decimal(data["shop_total"]),
            exact_total=Decimal(data["exact_total"]),
            shop_vat={Decimal(k): Decimal(v) for k, v in data["shop_vat"].items()},
            exact_vat={Decimal(k): Decimal(v) for k, v in data["exact_vat"].items()},
            differences=int(data["differences"]),
            ignored=int(data["ignored"]),
            not_selected=int(data.get("not_selected") or 0),
        )

    def vat_rows(self) -> list[tuple[Decimal, Decimal, Decimal]]:
        """(rate, shop VAT, Exact VAT) for every rate either side carries, lowest rate first."""
        rates = sorted(set(self.shop_vat) | set(self.exact_vat))
        return [(r, self.shop_vat.get(r, ZERO), self.exact_vat.get(r, ZERO)) for r in rates]


@dataclass(frozen=True)
class Report:
    headline: Headline
    findings: tuple[Finding, ...]

    @property
    def differences(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_difference)

    def to_json(self) -> dict[str, Any]:
        return {"headline": self.headline.to_json(), "findings": [f.to_json() for f in self.findings]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            headline=Headline.from_json(data["headline"]),
            findings=tuple(Finding.from_json(f) for f in data.get("findings") or ()),
        )
