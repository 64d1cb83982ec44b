"""Match a month of shop orders against the documents in Exact and the gateway's own rows; pure, no I/O.

A document is this integration's only by its mark (booking_documents.booking_mark: PaymentReference
'<order>/MW<integration>'); the order it belongs to is read from the mark, not from YourRef, which a person may edit.
Documents with another integration's mark, or none, are never counted, but the matcher names them where they explain a
gap (another shop's order with the same number) or where the gateway's row points at one (adopted the wrong document).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from gateway.booking import DIRECT_SALES_INVOICE, SALES_INVOICE, BookingError
from gateway.booking_documents import MARK_SEPARATOR, booking_mark
from gateway.books_check.findings import (
    ZERO,
    ExactBooking,
    Figures,
    Finding,
    GatewayRecord,
    Headline,
    Kind,
    Report,
    ShopOrder,
    VatByRate,
    rate_key,
    to_cents,
)

# Exact itself touches a document right after the gateway made it (processing an invoice, numbering it): a change
# within this grace after `booked_at` is the gateway's own.
CHANGE_GRACE = timedelta(minutes=10)
INVOICES = (SALES_INVOICE, DIRECT_SALES_INVOICE)
PROCESSED = 50  # SalesInvoices.Status


def mark_parts(payment_reference: str) -> tuple[str, int] | None:
    """(order number, integration id) of a PaymentReference that is a gateway mark, else None. A reference counts
    only when `booking_mark` of what it names gives it back exactly: the mark is defined once, there."""
    reference = payment_reference.strip()
    order, separator, marker = reference.rpartition(MARK_SEPARATOR)
    if not (order and separator and marker):
        return None
    try:
        integration_id = int(marker, 36)
        return (order, integration_id) if booking_mark(integration_id, order) == reference else None
    except (ValueError, BookingError):  # not base 36, not a positive id, or too long to be a mark
        return None


def mark_order(integration_id: int, payment_reference: str) -> str | None:
    """The order number a PaymentReference marks for this integration, or None when it is not this one's mark."""
    parts = mark_parts(payment_reference)
    return parts[0] if parts is not None and parts[1] == integration_id else None


def _sum_vat(items: Iterable[VatByRate]) -> dict[Decimal, Decimal]:
    totals: dict[Decimal, Decimal] = defaultdict(lambda: ZERO)
    for vat in items:
        for rate, amount in vat.items():
            totals[rate_key(rate)] += amount
    return dict(totals)


def vat_differences(shop: VatByRate, exact: VatByRate) -> dict[str, int]:
    """Exact minus shop in cents, per rate, only where they differ (a rate with no VAT on either side is equal)."""
    shop_n, exact_n = _sum_vat([shop]), _sum_vat([exact])
    diffs = {}
    for rate in sorted(set(shop_n) | set(exact_n)):
        delta = to_cents(exact_n.get(rate, ZERO)) - to_cents(shop_n.get(rate, ZERO))
        if delta:
            diffs[f"{rate}"] = delta
    return diffs


@dataclass
class _Month:
    integration_id: int
    drafts_processed_in_exact: bool = False
    own: dict[str, list[ExactBooking]] = field(default_factory=lambda: defaultdict(list))
    foreign_by_ref: dict[str, list[ExactBooking]] = field(default_factory=lambda: defaultdict(list))
    by_id: dict[str, ExactBooking] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def sort(self, bookings: Iterable[ExactBooking]) -> None:
        for booking in bookings:
            self.by_id[booking.id.strip().lower()] = booking
            order = mark_order(self.integration_id, booking.payment_reference)
            if order is not None:
                self.own[order].append(booking)
            elif booking.your_ref.strip():
                self.foreign_by_ref[booking.your_ref.strip()].append(booking)

    def foreign_note(self, order_number: str) -> str:
        others = self.foreign_by_ref.get(order_number, [])
        return ", ".join(f"{d.number or d.id} ({d.payment_reference or '-'})" for d in others)


def match_month(
    *,
    integration_id: int,
    selected_statuses: Collection[int],
    orders: Sequence[ShopOrder],
    bookings: Sequence[ExactBooking],
    records: Mapping[str, GatewayRecord],
    drafts_processed_in_exact: bool = False,
) -> Report:
    """Every finding of one month. `bookings` may hold every document of the journal and period (any mark);
    `records` are the gateway's rows by order number. With `drafts_processed_in_exact` (the gateway leaves invoices
    as drafts for the owner to process), a processed invoice modified after booking is the owner's processing, not a
    change."""
    month = _Month(integration_id, drafts_processed_in_exact)
    month.sort(bookings)
    counted: list[ShopOrder] = []
    ignored = not_selected = 0
    for order in sorted(orders, key=lambda o: o.number):
        record = records.get(order.number)
        documents = month.own.pop(order.number, [])
        if record is not None and record.state == "ignored":
            ignored += 1
            month.findings.append(_ignored(order, record, documents))
            continue
        booked = record is not None and record.state == "booked"
        if order.status not in selected_statuses and not documents and not booked:
            not_selected += 1
            continue
        counted.append(order)
        month.findings.extend(_order_findings(month, order, record, documents))
    own_documents = [d for docs in month.own.values() for d in docs]
    for booking in sorted(own_documents, key=lambda d: d.payment_reference):
        month.findings.append(_without_order(month, booking))
    documents_counted = [d for d in bookings if mark_order(integration_id, d.payment_reference) is not None]
    headline = Headline(
        orders=len(counted),
        documents=len(documents_counted),
        shop_total=sum((o.total for o in counted), ZERO),
        exact_total=sum((d.total for d in documents_counted), ZERO),
        shop_vat=_sum_vat(o.vat for o in counted),
        exact_vat=_sum_vat(d.vat for d in documents_counted),
        differences=sum(1 for f in month.findings if f.is_difference),
        ignored=ignored,
        not_selected=not_selected,
    )
    return Report(headline=headline, findings=tuple(month.findings))


def _figures(item: ShopOrder | ExactBooking) -> Figures:
    return Figures(total=item.total, vat=dict(item.vat))


def _base(kind: Kind, order: ShopOrder, record: GatewayRecord | None, **values: object) -> Finding:
    return Finding(
        kind=kind,
        order_number=order.number,
        shop=_figures(order),
        order_sync_id=record.order_sync_id if record else None,
        gateway_state=record.state if record else "",
        shop_status=order.status,
        # The kind-specific fields (Exact's figures, document numbers, cent differences) as the callers name them;
        # the dataclass constructor rejects an unknown name.
        **values,  # type: ignore[arg-type]
    )


def _ignored(order: ShopOrder, record: GatewayRecord, documents: Sequence[ExactBooking]) -> Finding:
    exact = _figures(documents[0]) if documents else None
    number = documents[0].number if documents else ""
    return _base(Kind.IGNORED, order, record, exact=exact, document_number=number)


def _order_findings(
    month: _Month, order: ShopOrder, record: GatewayRecord | None, documents: Sequence[ExactBooking]
) -> list[Finding]:
    if not documents:
        return [_missing(month, order, record)]
    if len(documents) > 1:
        numbers = ", ".join(d.number or d.id for d in documents)
        total = sum((d.total for d in documents), ZERO)
        exact = Figures(total=total, vat=_sum_vat(d.vat for d in documents))
        return [_base(Kind.DOUBLE_DOCUMENT, order, record, exact=exact, document_number=numbers)]
    document = documents[0]
    findings = []
    wrong = _wrong_document(month, record, document)
    if wrong is not None:
        findings.append(_base(Kind.WRONG_DOCUMENT, order, record, **wrong))
    total_cents = to_cents(document.total) - to_cents(order.total)
    vat_cents = vat_differences(order.vat, document.vat)
    common = {"exact": _figures(document), "document_number": document.number or document.id}
    if total_cents or vat_cents:
        findings.append(
            _base(Kind.AMOUNT_DIFFERENCE, order, record, total_cents=total_cents, vat_cents=vat_cents, **common)
        )
    elif _changed_after_booking(month, record, document):
        modified = document.modified.isoformat() if document.modified else ""
        findings.append(_base(Kind.CHANGED_DOCUMENT, order, record, detail=modified, **common))
    return findings


def _wrong_document(month: _Month, record: GatewayRecord | None, own: ExactBooking) -> dict[str, object] | None:
    """The row points at another document than the one with the mark: say which, and whose mark it carries."""
    if record is None or not record.document_id or record.document_id.strip().lower() == own.id.strip().lower():
        return None
    other = month.by_id.get(record.document_id.strip().lower())
    if other is None:
        return None  # not in this journal and period: nothing proven
    return {"exact": _figures(other), "document_number": other.number or other.id, "detail": other.payment_reference}


def _changed_after_booking(month: _Month, record: GatewayRecord | None, document: ExactBooking) -> bool:
    if record is None or record.booked_at is None or document.modified is None:
        return False
    if month.drafts_processed_in_exact and document.document_type in INVOICES and document.status == PROCESSED:
        return False
    return document.modified > record.booked_at + CHANGE_GRACE


def _missing(month: _Month, order: ShopOrder, record: GatewayRecord | None) -> Finding:
    note = month.foreign_note(order.number)
    if record is not None and record.state == "booked" and record.document_id:
        other = month.by_id.get(record.document_id.strip().lower())
        if other is not None:  # booked on a document that carries another shop's mark, or none
            return _base(
                Kind.WRONG_DOCUMENT,
                order,
                record,
                exact=_figures(other),
                document_number=other.number or other.id,
                detail=other.payment_reference,
            )
        return _base(Kind.DELETED_DOCUMENT, order, record, document_number=record.document_id, detail=note)
    if record is not None and record.state == "skipped":
        return _base(Kind.SKIPPED_ORDER, order, record, detail=note or str(order.status))
    kind = Kind.MISSING_CREDIT_DOCUMENT if order.is_credit else Kind.MISSING_DOCUMENT
    return _base(kind, order, record, detail=note or order.credited_order_number, total_cents=-to_cents(order.total))


def _without_order(month: _Month, booking: ExactBooking) -> Finding:
    order = mark_order(month.integration_id, booking.payment_reference) or booking.your_ref
    return Finding(
        kind=Kind.DOCUMENT_WITHOUT_ORDER,
        order_number=order,
        exact=_figures(booking),
        document_number=booking.number or booking.id,
        total_cents=to_cents(booking.total),
    )
