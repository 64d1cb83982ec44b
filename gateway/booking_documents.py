"""Exact Online document payloads for a booking plan, one builder per insertion type; pure, no I/O.

Every payload carries only properties the entity accepts on POST (`exact-entities.json`, checked by the tests) and
amounts as Decimal with 2 decimals; the Exact client writes them as exact JSON numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from gateway.booking import (
    ARTICLE,
    DIRECT_SALES_INVOICE,
    INVOICE_TYPES,
    MISSING_GL,
    MISSING_ITEM,
    SALES_ENTRY,
    SALES_INVOICE,
    SALES_ORDER,
    SETTINGS,
    TOTALS_MISMATCH,
    BookingError,
    BookingPlan,
    PlannedLine,
    kind_gl,
)
from gateway.booking_amounts import cents, money, unit_prices
from gateway.booking_settings import IntegrationSettings
from gateway.vat import describe_category, is_oss


@dataclass(frozen=True)
class ExactRefs:
    """Exact ids the plan needs, resolved by the job: the account, items by code, G/L accounts by code."""

    account_id: str
    items: Mapping[str, str] = field(default_factory=dict)
    item_revenue: Mapping[str, str] = field(default_factory=dict)  # item code → revenue G/L id (item or its group)
    gl_accounts: Mapping[str, str] = field(default_factory=dict)
    warehouse: str = ""  # id of the configured warehouse (direct sales invoices)


@dataclass(frozen=True)
class Document:
    document_type: str
    path: str  # under /api/v1/{division}/
    entity: str  # the header's name in exact-entities.json
    line_entity: str
    payload: dict[str, Any]

    @property
    def lines(self) -> list[dict[str, Any]]:
        return list(self.payload[self.line_entity])


# The mark every document the gateway creates carries in `PaymentReference` (docs/booking.md, "The mark"):
# "<order number>/MW<integration id in base 36>". Exact has no idempotency key; YourRef alone (the order number)
# repeats across shops in one administration, so a look-up adopts only a document with this integration's mark.
MARK_SEPARATOR = "/MW"
PAYMENT_REFERENCE_MAX = 32  # kept well under what Exact's PaymentReference holds (docs/booking.md)
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def integration_marker(integration_id: int) -> str:
    """The integration's part of the mark: stable, derived from its id, a few characters."""
    if integration_id <= 0:
        raise ValueError("an integration id is positive")
    digits = ""
    while integration_id:
        integration_id, rest = divmod(integration_id, 36)
        digits = _BASE36[rest] + digits
    return f"MW{digits}"


def booking_mark(integration_id: int, order_number: str) -> str:
    """The PaymentReference that ties a document to one integration and one order."""
    mark = f"{order_number.strip()}/{integration_marker(integration_id)}"
    if len(mark) > PAYMENT_REFERENCE_MAX:
        raise BookingError(SETTINGS, f"order number {order_number[:40]!r} is too long for an Exact reference")
    return mark


def is_gateway_mark(reference: str, *, order_number: str) -> bool:
    """Whether a PaymentReference is a mark of some integration for `order_number`: "<order>/MW<base 36>"."""
    order, separator, marker = reference.strip().rpartition(MARK_SEPARATOR)
    return order == order_number.strip() and bool(separator and marker) and all(c in _BASE36 for c in marker)


def build_document(plan: BookingPlan, settings: IntegrationSettings, refs: ExactRefs, *, mark: str) -> Document:
    """The POST payload for the configured insertion type, carrying `mark` (see `booking_mark`); raises BookingError
    for a missing item or account."""
    if not mark:
        raise ValueError("every document carries its integration's mark")
    if plan.document_type == SALES_ENTRY:
        document = _sales_entry(plan, settings, refs)
    elif plan.document_type == SALES_ORDER:
        document = _sales_order(plan, settings, refs)
    else:
        document = _sales_invoice(plan, settings, refs)
    document.payload["PaymentReference"] = mark
    _verify(plan, document)
    return document


def _header(plan: BookingPlan, settings: IntegrationSettings) -> dict[str, Any]:
    header: dict[str, Any] = {
        "Description": plan.description,
        "YourRef": plan.order_number,  # the shop order number, as accountants and customers know it
        "Currency": plan.currency,
        "PaymentReference": "",  # the mark, set by build_document
    }
    if settings.payment_condition.strip():
        header["PaymentCondition"] = settings.payment_condition.strip()
    return header


def _sales_entry(plan: BookingPlan, settings: IntegrationSettings, refs: ExactRefs) -> Document:
    lines = [
        {
            "GLAccount": line_gl(line, settings, refs, item_code=line.sku if line.kind == ARTICLE else ""),
            "Description": line.description,
            "Quantity": line.quantity,
            "AmountFC": line.amount,
            "VATCode": line.vat_code,
            "VATAmountFC": line.vat,  # overrides Exact's own VAT calculation, so VAT matches the shop to the cent
        }
        for line in plan.lines
    ]
    payload = {
        "Journal": settings.journal_code.strip(),
        "Customer": refs.account_id,
        "EntryDate": exact_date(plan.order_date),
        **_header(plan, settings),
        "SalesEntryLines": lines,
    }
    return Document(SALES_ENTRY, "salesentry/SalesEntries", "SalesEntries", "SalesEntryLines", payload)


def _sales_invoice(plan: BookingPlan, settings: IntegrationSettings, refs: ExactRefs) -> Document:
    lines = []
    for line in plan.lines:
        code = plan.item_code(line, settings)
        item, gl = _item_id(code, line, refs), line_gl(line, settings, refs, item_code=code)
        for quantity, unit_price, vat in unit_prices(line.quantity, line.amount, line.vat):
            lines.append(
                {
                    "Item": item,
                    "GLAccount": gl,
                    "Description": line.description,
                    "Quantity": quantity,
                    "UnitPrice": unit_price,
                    "VATCode": line.vat_code,
                    "VATAmountFC": vat,
                }
            )
    payload: dict[str, Any] = {
        "Journal": settings.journal_code.strip(),
        "OrderedBy": refs.account_id,
        "Type": INVOICE_TYPES[(plan.document_type, plan.is_credit)],
        "OrderDate": exact_date(plan.order_date),
        **_header(plan, settings),
        "SalesInvoiceLines": lines,
    }
    if plan.document_type == DIRECT_SALES_INVOICE:
        if not refs.warehouse:
            raise BookingError(SETTINGS, f"warehouse {settings.warehouse.strip()} does not exist in Exact")
        payload["Warehouse"] = refs.warehouse  # an id; mandatory for 8023/8024, refused on other types
    return Document(plan.document_type, "salesinvoice/SalesInvoices", "SalesInvoices", "SalesInvoiceLines", payload)


def _sales_order(plan: BookingPlan, settings: IntegrationSettings, refs: ExactRefs) -> Document:
    lines = []
    for line in plan.lines:
        item = _item_id(plan.item_code(line, settings), line, refs)
        for quantity, unit_price, vat in unit_prices(line.quantity, line.amount, line.vat):
            lines.append(
                {
                    "Item": item,
                    "Description": line.description,
                    "Quantity": quantity,
                    "UnitPrice": unit_price,
                    "VATCode": line.vat_code,
                    "VATAmount": vat,  # sales order lines call it VATAmount, not VATAmountFC
                }
            )
    payload = {
        "OrderedBy": refs.account_id,
        "OrderDate": exact_date(plan.order_date),
        **_header(plan, settings),
        "SalesOrderLines": lines,
    }
    return Document(SALES_ORDER, "salesorder/SalesOrders", "SalesOrders", "SalesOrderLines", payload)


def exact_date(value: date) -> str:
    # Midnight without an offset: an offset could move the booking date by a day (docs/booking.md).
    return f"{value.isoformat()}T00:00:00"


def _item_id(code: str, line: PlannedLine, refs: ExactRefs) -> str:
    item = refs.items.get(code)
    if not item:
        raise BookingError(MISSING_ITEM, f"item {code} for {line.label} does not exist in Exact")
    return item


def line_gl(line: PlannedLine, settings: IntegrationSettings, refs: ExactRefs, *, item_code: str) -> str:
    """The revenue G/L account id of a line.

    OSS turnover stays on the category's (OSS) account. Otherwise: the item's own account when "use item ledger
    accounts" is on, then the configured account of shipping/costs/discount lines, then the category's account,
    and, as a last resort, the item's account.
    """
    item_gl = refs.item_revenue.get(item_code, "") if item_code else ""
    if is_oss(line.category) and line.category_gl:
        return _gl_id(line.category_gl, line, refs)
    if settings.use_item_ledger and item_gl:
        return item_gl
    for code in (kind_gl(line, settings), line.category_gl):
        if code:
            return _gl_id(code, line, refs)
    if item_gl:
        return item_gl
    raise BookingError(
        MISSING_GL, f"choose a revenue account for VAT category {line.category} ({describe_category(line.category)})"
    )


def _gl_id(code: str, line: PlannedLine, refs: ExactRefs) -> str:
    gl_id = refs.gl_accounts.get(code)
    if not gl_id:
        raise BookingError(MISSING_GL, f"revenue account {code} for {line.label} does not exist in Exact")
    return gl_id


def line_amount(line: Mapping[str, Any]) -> Decimal:
    """A payload line's amount excl. VAT, the way Exact computes it."""
    return Decimal(line["AmountFC"]) if "AmountFC" in line else Decimal(line["Quantity"]) * Decimal(line["UnitPrice"])


def line_vat(line: Mapping[str, Any]) -> Decimal:
    return Decimal(line.get("VATAmountFC", line.get("VATAmount", 0)))


def document_amounts(document: Document) -> tuple[Decimal, Decimal]:
    """(amount excl. VAT, VAT) of a payload."""
    lines = document.lines
    return sum((line_amount(x) for x in lines), Decimal(0)), sum((line_vat(x) for x in lines), Decimal(0))


def _verify(plan: BookingPlan, document: Document) -> None:
    """The payload adds up to the plan to the cent; the message names the figure that differs, both ways."""
    excl, vat = document_amounts(document)
    planned_vat = sum(plan.vat_by_rate.values(), Decimal(0))
    what = f"the {plan.document_type.replace('_', ' ')} for order {plan.order_number}"
    if cents(excl + vat) != cents(plan.total):
        raise BookingError(
            TOTALS_MISMATCH,
            f"{what} would total {money(excl + vat)} instead of {money(plan.total)}; not booked",
        )
    if cents(vat) != cents(planned_vat):
        raise BookingError(
            TOTALS_MISMATCH, f"{what} would carry {money(vat)} VAT instead of {money(planned_vat)}; not booked"
        )


def finalize_payload(
    document_type: str, order_date: date, settings: IntegrationSettings, invoice_id: str, *, initial_export: bool
) -> dict[str, Any] | None:
    """The PrintedSalesInvoices POST that processes (and maybe e-mails) an invoice, or None to leave it a draft.

    Invoices from the initial export are never e-mailed to customers.
    """
    if document_type not in (SALES_INVOICE, DIRECT_SALES_INVOICE):
        return None
    send = settings.send_invoice and not initial_export
    if settings.invoice_status != "final" and not send:
        return None
    return {"InvoiceID": invoice_id, "SendEmailToCustomer": send, "InvoiceDate": exact_date(order_date)}


def summarize(document: Document) -> dict[str, Any]:
    """What an attempt record keeps of a payload: references, totals and lines, as strings (no secrets in here)."""
    excl, vat = document_amounts(document)
    payload = document.payload
    return {
        "entity": document.entity,
        "your_ref": payload.get("YourRef"),
        "payment_reference": payload.get("PaymentReference"),
        "journal": payload.get("Journal"),
        "type": payload.get("Type"),
        "currency": payload.get("Currency"),
        "amount_excl_vat": money(excl),
        "vat": money(vat),
        "total": money(excl + vat),
        "lines": [
            {
                "description": line.get("Description"),
                "vat_code": line.get("VATCode"),
                "quantity": str(line.get("Quantity")),
                "amount": money(line_amount(line)),
                "vat": money(line_vat(line)),
            }
            for line in document.lines
        ],
    }
