"""What the sandbox Exact keeps per division, and how a POST becomes a record: Exact's validation, in its words.

A POST with an unknown property, a missing mandatory field or a reference to something that does not exist is
refused with 400 and the error envelope ("Mandatory: Journal", "Invalid reference: GLAccount"); several problems
are reported together, one per line, as Exact does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.sandbox.exact_entities import (
    ACCOUNT,
    ITEM,
    PRINTED_SALES_INVOICE,
    SALES_ENTRY,
    SALES_INVOICE,
    SALES_ORDER,
    EntitySpec,
)
from gateway.sandbox.exact_odata import ODataError, parse_iso_date
from gateway.sandbox.exact_seed import DivisionSeed, seed_division

CENT = Decimal("0.01")
DIRECT_TYPES = (8023, 8024)
DIRECT_REFUSAL = (
    "Type: direct sales invoices (8023) and direct credit notes (8024) are only supported by the Plus, Professional "
    "and Premium editions for Wholesale & Distribution and Manufacturing."
)


@dataclass
class DivisionState:
    seed: DivisionSeed
    rows: dict[str, list[dict[str, Any]]]
    direct_invoices: bool
    sequences: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fresh(cls, seed: DivisionSeed) -> DivisionState:
        return cls(seed=seed, rows=seed_division(seed), direct_invoices=seed.direct_invoices)

    def next_number(self, kind: str, start: int) -> int:
        self.sequences[kind] = self.sequences.get(kind, start - 1) + 1
        return self.sequences[kind]

    def find(self, entity: str, key: str, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        wanted = str(value).strip().lower()
        return next((r for r in self.rows[entity] if str(r.get(key) or "").strip().lower() == wanted), None)


class _Problems:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        if message not in self.messages:
            self.messages.append(message)

    def raise_if_any(self) -> None:
        if self.messages:
            raise ODataError("\r\n".join(self.messages))


def _check_shape(spec: EntitySpec, payload: Any, problems: _Problems, *, nested: bool = False) -> None:
    if not isinstance(payload, Mapping):
        raise ODataError("Error processing request stream. The request should be a valid top-level resource object.")
    for name in payload:
        if name not in spec.accepted:
            raise ODataError(
                f"Error processing request stream. The property name '{name}' specified for type "
                f"'{spec.type_name}' is not valid."
            )
    if spec.lines and payload.get(spec.lines) is not None and not isinstance(payload[spec.lines], list):
        raise ODataError(f"Error processing request stream. {spec.lines} must be a collection.")
    for name in spec.required:
        if payload.get(name) in (None, "", []):
            problems.add(f"Mandatory: {name}")
    if spec.lines and isinstance(payload.get(spec.lines), list) and spec.line_spec is not None:
        for line in payload[spec.lines]:
            _check_shape(spec.line_spec, line, problems, nested=True)


def _number(value: Any, name: str, problems: _Problems) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        problems.add(f"Invalid value: {name}")
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        problems.add(f"Invalid value: {name}")
        return None


def _reference(
    state: DivisionState, entity: str, key: str, value: Any, name: str, problems: _Problems
) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    found = state.find(entity, key, value)
    if found is None:
        problems.add(f"Invalid reference: {name}")
    return found


def _vat_code(state: DivisionState, code: Any, problems: _Problems) -> dict[str, Any] | None:
    row = _reference(state, "VATCodes", "Code", code, "VATCode", problems)
    if row is not None and (row["IsBlocked"] or row["VATTransactionType"] == "P"):
        problems.add("Invalid: VATCode (blocked or not for sales)")
    return row


def _date(value: Any, name: str, problems: _Problems, default: dt.datetime) -> dt.datetime:
    if value in (None, ""):
        return default
    try:
        return parse_iso_date(value, name)
    except ODataError as e:
        problems.add(str(e))
        return default


def _vat_line(state: DivisionState, line: Mapping[str, Any], amount: Decimal | None, p: _Problems) -> dict[str, Any]:
    vat = _vat_code(state, line.get("VATCode"), p)
    percentage = vat["Percentage"] if vat else Decimal(0)
    given = _number(line.get("VATAmountFC"), "VATAmountFC", p)
    computed = ((amount or Decimal(0)) * percentage).quantize(CENT)
    return {"VATCode": vat["Code"] if vat else None, "VATPercentage": percentage, "VATAmountFC": given or computed}


def _journal_currency(journal: Mapping[str, Any] | None, payload: Mapping[str, Any], p: _Problems) -> None:
    """Journals.Currency is "the only currency that can be used" when AllowVariableCurrency is false (entities)."""
    if journal is None or journal.get("AllowVariableCurrency") is not False:
        return
    currency = str(payload.get("Currency") or journal.get("Currency") or "").upper()
    if currency != journal.get("Currency"):
        p.add(f"Currency: journal {journal['Code']} does not allow currency {currency}")


def _sales_entry(state: DivisionState, payload: Mapping[str, Any], now: dt.datetime, p: _Problems) -> dict[str, Any]:
    journal = _reference(state, "Journals", "Code", payload.get("Journal"), "Journal", p)
    if journal is not None and journal["Type"] != 20:
        p.add("Invalid: Journal (not a sales journal)")
    _journal_currency(journal, payload, p)
    _reference(state, "Accounts", "ID", payload.get("Customer"), "Customer", p)
    _reference(state, "PaymentConditions", "Code", payload.get("PaymentCondition"), "PaymentCondition", p)
    lines = []
    for line in payload.get("SalesEntryLines") or []:
        gl = _reference(state, "GLAccounts", "ID", line.get("GLAccount"), "GLAccount", p)
        if gl is not None and gl["Type"] in (20, 24):
            p.add("Invalid: G/L account type")
        amount = _number(line.get("AmountFC"), "AmountFC", p)
        lines.append({**line, "AmountFC": amount, **_vat_line(state, line, amount, p), "ID": str(uuid.uuid4())})
    p.raise_if_any()
    net = sum((line["AmountFC"] or Decimal(0) for line in lines), Decimal(0))
    vat = sum((line["VATAmountFC"] for line in lines), Decimal(0))
    number = state.next_number(f"entry:{journal['Code'] if journal else ''}", 1)
    entry_date = _date(payload.get("EntryDate"), "EntryDate", p, now)
    return {
        **payload,
        "EntryID": str(payload.get("EntryID") or uuid.uuid4()),
        "EntryNumber": int(f"{entry_date:%y}{str(payload['Journal']).strip()}{number:04d}"),
        "EntryDate": entry_date,
        "Status": 20,
        "Type": 21 if net < 0 else 20,
        "AmountFC": net + vat,
        "VATAmountFC": vat,
        "Currency": payload.get("Currency") or "EUR",
        "SalesEntryLines": lines,
    }


def _invoice_lines(state: DivisionState, lines: list[Mapping[str, Any]], p: _Problems) -> list[dict[str, Any]]:
    result = []
    for line in lines:
        item = _reference(state, "Items", "ID", line.get("Item"), "Item", p)
        gl_id = line.get("GLAccount") or (item or {}).get("GLRevenue")
        if gl_id is None and item is not None:
            group = state.find("ItemGroups", "ID", item.get("ItemGroup"))
            gl_id = (group or {}).get("GLRevenue")
        if item is not None and gl_id is None:
            p.add("Mandatory: GLAccount")
        _reference(state, "GLAccounts", "ID", gl_id, "GLAccount", p)
        quantity = _number(line.get("Quantity"), "Quantity", p) or Decimal(1)
        price = _number(line.get("UnitPrice", line.get("NetPrice")), "UnitPrice", p)
        amount = _number(line.get("AmountFC"), "AmountFC", p)
        amount = amount if amount is not None else (quantity * (price or Decimal(0))).quantize(CENT)
        vat_source = {**line, "VATCode": line.get("VATCode") or (item or {}).get("SalesVatCode")}
        result.append(
            {**line, "ID": str(uuid.uuid4()), "GLAccount": gl_id, "Quantity": quantity, "AmountFC": amount}
            | _vat_line(state, vat_source, amount, p)
        )
    return result


def _sales_invoice(state: DivisionState, payload: Mapping[str, Any], now: dt.datetime, p: _Problems) -> dict[str, Any]:
    kind = int(_number(payload.get("Type"), "Type", p) or 8020)
    if kind not in (8020, 8021, *DIRECT_TYPES):
        p.add("Invalid value: Type")
    if kind in DIRECT_TYPES and not state.direct_invoices:
        raise ODataError(DIRECT_REFUSAL)
    if kind in DIRECT_TYPES and not payload.get("Warehouse"):
        p.add("Mandatory: Warehouse")
    if kind not in DIRECT_TYPES and payload.get("Warehouse"):
        p.add("Warehouse: cannot be set for a normal sales invoice or credit note")
    journal = _reference(state, "Journals", "Code", payload.get("Journal"), "Journal", p)
    if journal is not None and journal["Type"] != 20:
        p.add("Invalid: Journal (not a sales journal)")
    _journal_currency(journal, payload, p)
    for name in ("OrderedBy", "InvoiceTo", "DeliverTo"):
        _reference(state, "Accounts", "ID", payload.get(name), name, p)
    lines = _invoice_lines(state, payload.get("SalesInvoiceLines") or [], p)
    p.raise_if_any()
    net = sum((line["AmountFC"] for line in lines), Decimal(0))
    vat = sum((line["VATAmountFC"] for line in lines), Decimal(0))
    return {
        **payload,
        "InvoiceID": str(payload.get("InvoiceID") or uuid.uuid4()),
        "Type": kind,
        "Status": 20,
        "InvoiceNumber": None,
        "OrderNumber": payload.get("OrderNumber") or state.next_number("invoice-order", 1),
        "OrderDate": _date(payload.get("OrderDate"), "OrderDate", p, now),
        "InvoiceTo": payload.get("InvoiceTo") or payload.get("OrderedBy"),
        "AmountFCExclVat": net,
        "VATAmountFC": vat,
        "AmountFC": net + vat,
        "Currency": payload.get("Currency") or "EUR",
        "SalesInvoiceLines": lines,
    }


def _printed_invoice(
    state: DivisionState, payload: Mapping[str, Any], now: dt.datetime, p: _Problems
) -> dict[str, Any]:
    invoice = _reference(state, "SalesInvoices", "InvoiceID", payload.get("InvoiceID"), "InvoiceID", p)
    p.raise_if_any()
    if invoice is None:
        raise ODataError("Mandatory: InvoiceID")
    if invoice["Status"] == 50:
        raise ODataError("The invoice has already been processed.")
    invoice["Status"] = 50
    invoice["InvoiceNumber"] = int(f"{now:%y}{str(invoice['Journal']).strip()}{state.next_number('invoice', 1):04d}")
    invoice["InvoiceDate"] = _date(payload.get("InvoiceDate"), "InvoiceDate", p, now)
    customer = state.find("Accounts", "ID", invoice.get("InvoiceTo")) or {}
    record: dict[str, Any] = {**payload, "DocumentCreationSuccess": "Document created"}
    if payload.get("SendEmailToCustomer"):
        if customer.get("Email"):
            record["EmailCreationSuccess"] = "E-mail sent"
        else:
            record["EmailCreationError"] = "The customer has no e-mail address"
    return record


def _sales_order(state: DivisionState, payload: Mapping[str, Any], now: dt.datetime, p: _Problems) -> dict[str, Any]:
    for name in ("OrderedBy", "InvoiceTo", "DeliverTo"):
        _reference(state, "Accounts", "ID", payload.get(name), name, p)
    lines = _invoice_lines(state, payload.get("SalesOrderLines") or [], p)
    for line in lines:
        if line["AmountFC"] < 0 or (_number(line.get("UnitPrice"), "UnitPrice", p) or 0) < 0:
            p.add("Sales orders cannot have negative amounts")
    p.raise_if_any()
    net = sum((line["AmountFC"] for line in lines), Decimal(0))
    return {
        **payload,
        "OrderID": str(payload.get("OrderID") or uuid.uuid4()),
        "OrderNumber": payload.get("OrderNumber") or state.next_number("order", 1),
        "OrderDate": _date(payload.get("OrderDate"), "OrderDate", p, now),
        "Status": 12,
        "AmountFC": net,
        "Currency": payload.get("Currency") or "EUR",
        "SalesOrderLines": lines,
    }


def _account(state: DivisionState, payload: Mapping[str, Any], now: dt.datetime, p: _Problems) -> dict[str, Any]:
    code = str(payload.get("Code") or state.next_number("account", 1000)).strip()
    if state.find("Accounts", "Code", code) is not None:
        p.add("Duplicate: Code")
    if payload.get("SalesVATCode"):
        _vat_code(state, payload["SalesVATCode"], p)
    p.raise_if_any()
    return {**payload, "ID": str(payload.get("ID") or uuid.uuid4()), "Code": f"{code:>18}", "Created": now}


def _item(state: DivisionState, payload: Mapping[str, Any], now: dt.datetime, p: _Problems) -> dict[str, Any]:
    if payload.get("Code") and state.find("Items", "Code", payload.get("Code")) is not None:
        p.add("Duplicate: Code")
    if len(str(payload.get("Description") or "")) > 60:
        p.add("Description: the maximum length is 60 characters")
    group = _reference(state, "ItemGroups", "ID", payload.get("ItemGroup"), "ItemGroup", p)
    if group is None and not payload.get("ItemGroup"):
        group = next((g for g in state.rows["ItemGroups"] if g["IsDefault"]), None)
    _reference(state, "GLAccounts", "ID", payload.get("GLRevenue"), "GLRevenue", p)
    if payload.get("SalesVatCode"):
        _vat_code(state, payload["SalesVatCode"], p)
    p.raise_if_any()
    item_id = str(payload.get("ID") or uuid.uuid4())
    return {**payload, "ID": item_id, "ItemGroup": group["ID"] if group else None, "Created": now}


_CREATORS = {
    SALES_ENTRY.name: _sales_entry,
    SALES_INVOICE.name: _sales_invoice,
    PRINTED_SALES_INVOICE.name: _printed_invoice,
    SALES_ORDER.name: _sales_order,
    ACCOUNT.name: _account,
    ITEM.name: _item,
}


def create_record(state: DivisionState, spec: EntitySpec, payload: Any, now: dt.datetime) -> dict[str, Any]:
    """Validate a POST body like Exact and store the new record; return it (as the `d` of the 201)."""
    problems = _Problems()
    _check_shape(spec, payload, problems)
    record = _CREATORS[spec.name](state, payload, now, problems)
    record.setdefault("Created", now)
    record["Modified"] = now
    record["Division"] = state.seed.code
    state.rows[spec.name].append(record)
    return record
