"""Read a journal's month from Exact Online the cheapest way: bulk endpoints (1,000 rows a page), `$select` of only
the fields the matcher needs, and a pause before every page while bookings need the budget (`before_page`).

- Sales entries: `bulk/Financial/TransactionLines` of the journal and period; one entry's lines grouped by EntryID.
  The receivable line carries no VAT code and holds the total including VAT; revenue lines carry the VAT code and
  their VAT (AmountVATFC) with the ledger's sign (a sale's revenue is a credit, so negative). VAT is therefore summed
  over lines with a VAT code and negated, and the total taken from lines without one (docs/books-check.md).
- Sales invoices (and direct ones) and sales orders: the headers from `bulk/SalesInvoice/SalesInvoices` /
  `bulk/SalesOrder/SalesOrders`, then the lines of documents that carry a gateway mark from the bulk lines endpoint,
  MAX_IDS_PER_LOOK_UP ids per `or` chain (Exact's URL limit).
No SQL, no retries: errors go up the client's error tree.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.booking import DIRECT_SALES_INVOICE, SALES_ENTRY, SALES_INVOICE, SALES_ORDER
from gateway.books_check.findings import ZERO, ExactBooking, rate_key
from gateway.books_check.matcher import mark_parts
from gateway.books_check.period import Month
from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import MAX_IDS_PER_LOOK_UP
from gateway.clients.exact_odata import odata_quote, parse_odata_date

BeforePage = Callable[[], Awaitable[None]]

TRANSACTION_LINES = "bulk/Financial/TransactionLines"
TRANSACTION_LINE_FIELDS = (
    "EntryID",
    "EntryNumber",
    "YourRef",
    "PaymentReference",
    "AmountFC",
    "AmountVATFC",
    "VATCode",
    "VATPercentage",
    "Modified",
)


@dataclass(frozen=True)
class _Documents:
    """A bulk header endpoint and its lines endpoint (sales invoices, sales orders)."""

    path: str
    lines_path: str
    id_field: str
    number_field: str
    date_field: str
    by_journal: bool
    line_vat_field: str


_DOCUMENTS = {
    SALES_INVOICE: _Documents(
        "bulk/SalesInvoice/SalesInvoices",
        "bulk/SalesInvoice/SalesInvoiceLines",
        "InvoiceID",
        "InvoiceNumber",
        "OrderDate",
        True,
        "VATAmountFC",
    ),
    SALES_ORDER: _Documents(
        "bulk/SalesOrder/SalesOrders",
        "bulk/SalesOrder/SalesOrderLines",
        "OrderID",
        "OrderNumber",
        "OrderDate",
        False,
        "VATAmount",  # sales order lines call it VATAmount
    ),
}
_DOCUMENTS[DIRECT_SALES_INVOICE] = _DOCUMENTS[SALES_INVOICE]


def percent(value: Any) -> Decimal:
    """Exact states VAT percentages as fractions (0.21 for 21 %; docs/exact.md); a value above 1 is already percent."""
    rate = Decimal(str(value or 0))
    return rate_key(rate * 100 if rate <= 1 else rate)


def _date_filter(name: str, month: Month) -> str:
    return (
        f"{name} ge datetime'{month.first_day.isoformat()}T00:00:00' and "
        f"{name} lt datetime'{month.day_after.isoformat()}T00:00:00'"
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _modified(value: Any) -> dt.datetime | None:
    return parse_odata_date(value) if value else None


@dataclass
class _Entry:
    id: str
    number: str = ""
    your_ref: str = ""
    payment_reference: str = ""
    total: Decimal = ZERO
    vat: dict[Decimal, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    modified: dt.datetime | None = None

    def add(self, row: Mapping[str, Any]) -> None:
        self.number = self.number or _text(row.get("EntryNumber"))
        self.your_ref = self.your_ref or _text(row.get("YourRef"))
        self.payment_reference = self.payment_reference or _text(row.get("PaymentReference"))
        if _text(row.get("VATCode")):
            self.vat[percent(row.get("VATPercentage"))] -= Decimal(str(row.get("AmountVATFC") or 0))
        else:
            self.total += Decimal(str(row.get("AmountFC") or 0))
        modified = _modified(row.get("Modified"))
        if modified is not None and (self.modified is None or modified > self.modified):
            self.modified = modified

    def booking(self) -> ExactBooking:
        vat = {rate: amount for rate, amount in self.vat.items() if amount}
        return ExactBooking(
            SALES_ENTRY, self.id, self.number, self.your_ref, self.payment_reference, self.total, vat, self.modified
        )


async def read_sales_entries(
    client: ExactClient, *, journal: str, month: Month, before_page: BeforePage | None = None
) -> list[ExactBooking]:
    """Every sales entry of `journal` dated in `month`, whatever its mark (the matcher decides whose it is)."""
    filter_ = f"JournalCode eq {odata_quote(journal.strip())} and {_date_filter('Date', month)}"
    entries: dict[str, _Entry] = {}
    async for page in client.iter_pages(
        TRANSACTION_LINES, select=TRANSACTION_LINE_FIELDS, filter=filter_, before_page=before_page
    ):
        for row in page:
            entry_id = _text(row.get("EntryID")).lower()
            if entry_id:
                entries.setdefault(entry_id, _Entry(entry_id)).add(row)
    return [entry.booking() for entry in entries.values()]


async def read_documents(
    client: ExactClient, *, document_type: str, journal: str, month: Month, before_page: BeforePage | None = None
) -> list[ExactBooking]:
    """Sales invoices or sales orders of the period (invoices: of `journal`); lines only of marked documents."""
    spec = _DOCUMENTS[document_type]
    filter_ = _date_filter(spec.date_field, month)
    if spec.by_journal:
        filter_ = f"Journal eq {odata_quote(journal.strip())} and {filter_}"
    select = (spec.id_field, spec.number_field, "YourRef", "PaymentReference", "Modified", "Status")
    headers: list[Mapping[str, Any]] = []
    async for page in client.iter_pages(spec.path, select=select, filter=filter_, before_page=before_page):
        headers.extend(page)
    marked = [_text(h.get(spec.id_field)).lower() for h in headers if mark_parts(_text(h.get("PaymentReference")))]
    lines = await _read_lines(client, spec, marked, before_page)
    return [_document(document_type, spec, header, lines) for header in headers if _text(header.get(spec.id_field))]


async def _read_lines(
    client: ExactClient, spec: _Documents, ids: Sequence[str], before_page: BeforePage | None
) -> dict[str, list[Mapping[str, Any]]]:
    lines: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    select = (spec.id_field, "AmountFC", spec.line_vat_field, "VATPercentage")
    for start in range(0, len(ids), MAX_IDS_PER_LOOK_UP):
        chunk = ids[start : start + MAX_IDS_PER_LOOK_UP]
        filter_ = " or ".join(f"{spec.id_field} eq guid'{i}'" for i in chunk)
        async for page in client.iter_pages(spec.lines_path, select=select, filter=filter_, before_page=before_page):
            for row in page:
                lines[_text(row.get(spec.id_field)).lower()].append(row)
    return lines


def _document(
    document_type: str, spec: _Documents, header: Mapping[str, Any], lines: Mapping[str, list[Mapping[str, Any]]]
) -> ExactBooking:
    doc_id = _text(header.get(spec.id_field))
    total = ZERO
    vat: defaultdict[Decimal, Decimal] = defaultdict(lambda: ZERO)
    for line in lines.get(doc_id.lower(), []):
        line_vat = Decimal(str(line.get(spec.line_vat_field) or 0))
        total += Decimal(str(line.get("AmountFC") or 0)) + line_vat
        vat[percent(line.get("VATPercentage"))] += line_vat
    number = _text(header.get(spec.number_field))
    return ExactBooking(
        document_type=document_type,
        id=doc_id,
        number="" if number in ("", "0", "None") else number,
        your_ref=_text(header.get("YourRef")),
        payment_reference=_text(header.get("PaymentReference")),
        total=total,
        vat={rate: amount for rate, amount in vat.items() if amount},
        modified=_modified(header.get("Modified")),
        status=None if header.get("Status") in (None, "") else int(header["Status"]),
    )


async def read_month(
    client: ExactClient,
    *,
    document_types: Sequence[str],
    journal: str,
    month: Month,
    before_page: BeforePage | None = None,
) -> list[ExactBooking]:
    """Every document of the month for the document types the integration booked (a type read once)."""
    entries: list[ExactBooking] = []
    documents: list[ExactBooking] = []
    read: set[str] = set()
    for document_type in document_types:
        path = TRANSACTION_LINES if document_type == SALES_ENTRY else _DOCUMENTS[document_type].path
        if path in read:
            continue
        read.add(path)
        if document_type == SALES_ENTRY:
            entries = await read_sales_entries(client, journal=journal, month=month, before_page=before_page)
        else:
            documents += await read_documents(
                client, document_type=document_type, journal=journal, month=month, before_page=before_page
            )
    return without_invoice_entries(entries, documents) + documents


def without_invoice_entries(entries: Sequence[ExactBooking], documents: Sequence[ExactBooking]) -> list[ExactBooking]:
    """The sales entries that are not the financial entry of a processed invoice read as an invoice already: such an
    entry carries the invoice's mark and its number (Exact copies InvoiceNumber to EntryNumber when processing)."""
    invoices = {(d.payment_reference, d.number) for d in documents if d.document_type != SALES_ORDER and d.number}
    return [e for e in entries if (e.payment_reference, e.number) not in invoices]
