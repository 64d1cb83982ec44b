"""An order's page as a document: what an attempt sent to Exact, read back from its stored summary as lines, VAT
per code and totals, beside the shop's order total. Pure; the summary is `booking_documents.summarize`'s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class SentLine:
    description: str
    quantity: Decimal | None
    vat_code: str
    amount: Decimal
    vat: Decimal


@dataclass(frozen=True)
class SentDocument:
    currency: str
    lines: tuple[SentLine, ...]
    vat_by_code: tuple[tuple[str, Decimal, Decimal], ...]  # (VAT code, amount excl. VAT, VAT)
    amount: Decimal
    vat: Decimal
    total: Decimal
    shop_total: Decimal | None

    @property
    def matches_shop(self) -> bool | None:
        return None if self.shop_total is None else self.shop_total == self.total


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "", "None") else None
    except InvalidOperation:
        return None


def sent_document(summary: Any, *, shop_total: str | None) -> SentDocument | None:
    """The document an attempt sent, or None when its summary holds no lines (a refusal before sending)."""
    if not isinstance(summary, Mapping) or not isinstance(summary.get("lines"), Sequence) or not summary["lines"]:
        return None
    lines = tuple(
        SentLine(
            str(line.get("description") or ""),
            _decimal(line.get("quantity")),
            str(line.get("vat_code") or "").strip(),
            _decimal(line.get("amount")) or Decimal(0),
            _decimal(line.get("vat")) or Decimal(0),
        )
        for line in summary["lines"]
        if isinstance(line, Mapping)
    )
    by_code: dict[str, tuple[Decimal, Decimal]] = {}
    for line in lines:
        amount, vat = by_code.get(line.vat_code, (Decimal(0), Decimal(0)))
        by_code[line.vat_code] = (amount + line.amount, vat + line.vat)
    amount = sum((line.amount for line in lines), Decimal(0))
    vat = sum((line.vat for line in lines), Decimal(0))
    return SentDocument(
        currency=str(summary.get("currency") or "EUR"),
        lines=lines,
        vat_by_code=tuple((code, a, v) for code, (a, v) in sorted(by_code.items())),
        amount=amount,
        vat=vat,
        total=amount + vat,
        shop_total=_decimal(shop_total),
    )
