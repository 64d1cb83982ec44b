"""The sandbox Exact's read-only bulk endpoints the books check uses, faithful to what Exact documents for them:
GET only, up to 1,000 rows a page with `__next` links, a `$select` required, a `$filter` required (mandatory filtering
on endpoints that have a sync API), OData `$filter` as on the CRUD endpoints.

- `bulk/Financial/TransactionLines`: the ledger lines of every sales entry: one receivable line (no VAT code, the
  total including VAT), and per entry line a revenue line and a VAT line, amounts with the ledger's sign (a sale's
  revenue and VAT are credits: negative). Derived from the stored entries, so a change to an entry shows at once.
- `bulk/SalesInvoice/SalesInvoices`, `bulk/SalesOrder/SalesOrders`: the headers as stored.
- `bulk/SalesInvoice/SalesInvoiceLines`, `bulk/SalesOrder/SalesOrderLines`: the lines, each with its document's id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from gateway.sandbox.exact_odata import ODataError, query_rows
from gateway.sandbox.exact_records import DivisionState

BULK_PAGE_SIZE = 1000
ZERO = Decimal(0)
_LINE_NAMESPACE = uuid.UUID("6f1d4c1e-8c1b-4f7a-9d55-0b6c3f9e2a10")

TRANSACTION_LINE_FIELDS = frozenset(
    {
        *("ID", "EntryID", "EntryNumber", "Date", "JournalCode", "YourRef", "PaymentReference", "Modified", "Type"),
        *("LineNumber", "AmountFC", "AmountVATFC", "VATCode", "VATPercentage", "FinancialYear", "FinancialPeriod"),
        *("Division", "Status", "GLAccount", "Description"),
    }
)


def _number(value: Any) -> Decimal:
    return ZERO if value in (None, "") else Decimal(str(value))


def _transaction_lines(state: DivisionState) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in state.rows["SalesEntries"]:
        date = entry.get("EntryDate")
        base = {
            "EntryID": entry["EntryID"],
            "EntryNumber": entry.get("EntryNumber"),
            "Date": date,
            "JournalCode": str(entry.get("Journal") or "").strip(),
            "YourRef": entry.get("YourRef"),
            "PaymentReference": entry.get("PaymentReference"),
            "Modified": entry.get("Modified"),
            "Type": entry.get("Type"),
            "Status": entry.get("Status"),
            "Division": state.seed.code,
            "FinancialYear": getattr(date, "year", None),
            "FinancialPeriod": getattr(date, "month", None),
        }
        lines = entry.get("SalesEntryLines") or []
        total = sum((_number(x.get("AmountFC")) + _number(x.get("VATAmountFC")) for x in lines), ZERO)
        rows.append(_line(base, 0, AmountFC=total, AmountVATFC=ZERO, VATCode=None, VATPercentage=ZERO))
        for index, line in enumerate(lines, start=1):
            amount, vat = _number(line.get("AmountFC")), _number(line.get("VATAmountFC"))
            code, rate = line.get("VATCode"), _number(line.get("VATPercentage"))
            rows.append(
                _line(base, 2 * index - 1, AmountFC=-amount, AmountVATFC=-vat, VATCode=code, VATPercentage=rate)
            )
            rows.append(_line(base, 2 * index, AmountFC=-vat, AmountVATFC=ZERO, VATCode=code, VATPercentage=rate))
    return rows


def _line(base: Mapping[str, Any], number: int, **values: Any) -> dict[str, Any]:
    line_id = uuid.uuid5(_LINE_NAMESPACE, f"{base['EntryID']}:{number}")
    return {**base, "ID": str(line_id), "LineNumber": number, **values}


def _headers(entity: str) -> Callable[[DivisionState], list[dict[str, Any]]]:
    return lambda state: state.rows[entity]


def _lines(entity: str, collection: str, key: str) -> Callable[[DivisionState], list[dict[str, Any]]]:
    def rows(state: DivisionState) -> list[dict[str, Any]]:
        result = []
        for document in state.rows[entity]:
            for line in document.get(collection) or []:
                vat = line.get("VATAmount", line.get("VATAmountFC"))
                result.append({**line, key: document[key], "VATAmount": vat, "VATAmountFC": line.get("VATAmountFC")})
        return result

    return rows


BULK: dict[str, tuple[str, Callable[[DivisionState], list[dict[str, Any]]]]] = {
    "bulk/Financial/TransactionLines": ("TransactionLine", _transaction_lines),
    "bulk/SalesInvoice/SalesInvoices": ("SalesInvoice", _headers("SalesInvoices")),
    "bulk/SalesInvoice/SalesInvoiceLines": (
        "SalesInvoiceLine",
        _lines("SalesInvoices", "SalesInvoiceLines", "InvoiceID"),
    ),
    "bulk/SalesOrder/SalesOrders": ("SalesOrder", _headers("SalesOrders")),
    "bulk/SalesOrder/SalesOrderLines": ("SalesOrderLine", _lines("SalesOrders", "SalesOrderLines", "OrderID")),
}


def bulk_page(state: DivisionState, path: str, params: Mapping[str, str]) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a bulk endpoint, and the offset of the next (None at the end). Raises ODataError like Exact."""
    type_name, source = BULK[path]
    if not params.get("$select", "").strip():
        raise ODataError("Please add a $select or a $top=1 statement to the query string.")
    rows = source(state)
    fields = TRANSACTION_LINE_FIELDS if type_name == "TransactionLine" else _fields(rows)
    return query_rows(
        rows,
        params,
        fields=set(fields),
        type_name=f"Exact.Web.Api.Models.Bulk.{type_name}",
        mandatory_filter=set(fields),
        page_size=BULK_PAGE_SIZE,
    )


def _fields(rows: list[dict[str, Any]]) -> set[str]:
    names = {"Modified", "PaymentReference", "YourRef", "OrderDate", "Journal", "Status", "Type", "VATPercentage"}
    names |= {"InvoiceID", "InvoiceNumber", "OrderID", "OrderNumber", "AmountFC", "VATAmountFC", "VATAmount"}
    return names.union(*(r.keys() for r in rows)) if rows else names
