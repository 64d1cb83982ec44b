"""Booking calls on Exact Online: find or create accounts and items, find a document by YourRef and mark (and adopt
only this order's), create sales entries, invoices (+ PrintedSalesInvoices) and orders. Built on
ExactClient.get_all/post; no SQL, no retries.

`resolve_refs()` turns a booking plan into the Exact ids its document needs, using ids the job already knows (stored
links) first and paying a look-up only for what is new; it returns the links it learned so the job can store them.
What it may create (customer accounts, items with "create items") it finds or creates inside the job's `LinkGate`,
so two jobs needing the same new customer or SKU at once make one record in Exact, not two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.booking import (
    DIRECT_SALES_INVOICE,
    DUPLICATE_MARK,
    MISSING_ITEM,
    SALES_ENTRY,
    SALES_INVOICE,
    SALES_ORDER,
    SETTINGS,
    UNMARKED_DOCUMENT,
    BookingError,
    BookingPlan,
    Customer,
    ItemNeed,
    gl_codes_needed,
    items_needed,
)
from gateway.booking_documents import Document, ExactRefs, is_gateway_mark
from gateway.booking_settings import IntegrationSettings
from gateway.clients.errors import PermanentApiError
from gateway.clients.exact import ExactAccount, ExactClient, ExactItem
from gateway.clients.exact_items import CreationBudget, ItemFinder
from gateway.clients.exact_models import ACCOUNT_FIELDS
from gateway.clients.exact_odata import odata_quote

PROCESSED = 50  # SalesInvoices.Status: 10 draft, 20 open, 50 processed (booked; numbered; maybe sent)
_GUID_LENGTH = 36
# Ids per `or` chain: Exact refuses URLs over 6,000 characters after encoding; 25 ids take about 2,000.
MAX_IDS_PER_LOOK_UP = 25

LinkKey = tuple[str, str]  # (kind, key): ("account", e-mail), ("item", code), ("gl_account", code), ...


@dataclass(frozen=True)
class _Endpoint:
    path: str
    id_field: str
    number_field: str
    selects_status: bool
    filters_journal: bool


_ENDPOINTS = {
    SALES_ENTRY: _Endpoint("salesentry/SalesEntries", "EntryID", "EntryNumber", False, True),
    SALES_INVOICE: _Endpoint("salesinvoice/SalesInvoices", "InvoiceID", "InvoiceNumber", True, True),
    DIRECT_SALES_INVOICE: _Endpoint("salesinvoice/SalesInvoices", "InvoiceID", "InvoiceNumber", True, True),
    SALES_ORDER: _Endpoint("salesorder/SalesOrders", "OrderID", "OrderNumber", True, False),
}


@dataclass(frozen=True)
class ExactDocument:
    """A booking in Exact: its id, its number ("" until Exact numbers it) and, for invoices and orders, status."""

    document_type: str
    id: str
    number: str
    status: int | None
    your_ref: str
    payment_reference: str = ""

    @classmethod
    def from_api(cls, document_type: str, data: Mapping[str, Any]) -> ExactDocument:
        endpoint = _ENDPOINTS[document_type]
        doc_id = str(data.get(endpoint.id_field) or "").strip()
        if not doc_id:
            raise PermanentApiError(f"Exact Online answer lacks {endpoint.id_field}", vendor="Exact Online")
        number = data.get(endpoint.number_field)
        status = data.get("Status")
        return cls(
            document_type=document_type,
            id=doc_id,
            number="" if number in (None, "", 0) else str(number).strip(),
            status=None if status in (None, "") else int(status),
            your_ref=str(data.get("YourRef") or "").strip(),
            payment_reference=str(data.get("PaymentReference") or "").strip(),
        )

    @property
    def is_processed(self) -> bool:
        return self.status == PROCESSED


@dataclass(frozen=True)
class ExactPrintResult:
    """What PrintedSalesInvoices said; Exact reports document and e-mail problems in fields of a 201, not as errors."""

    invoice_id: str
    document_error: str
    email_error: str
    email_sent: bool


# More than this many documents with one order number in one journal is itself a reason to stop and look.
FIND_LIMIT = 10


async def find_documents(
    client: ExactClient, *, document_type: str, your_ref: str, mark: str, journal: str = ""
) -> list[ExactDocument]:
    """Bookings that carry `your_ref` (the shop order number) or `mark` (PaymentReference), in one GET: Exact's
    stand-in for an idempotency key. Which of them, if any, is this order's is `own_document`'s call."""
    endpoint = _ENDPOINTS[document_type]
    select = [
        endpoint.id_field,
        endpoint.number_field,
        "YourRef",
        "PaymentReference",
        *(["Status"] if endpoint.selects_status else []),
    ]
    filter_ = f"(YourRef eq {odata_quote(your_ref)} or PaymentReference eq {odata_quote(mark)})"
    if endpoint.filters_journal and journal.strip():
        filter_ += f" and Journal eq {odata_quote(journal.strip())}"
    rows = await client.get_all(endpoint.path, select=select, filter=filter_, top=FIND_LIMIT)
    return [ExactDocument.from_api(document_type, row) for row in rows]


def own_document(documents: Sequence[ExactDocument], *, order_number: str, mark: str) -> ExactDocument | None:
    """The one document among `documents` that carries this order's `mark`, or None when none may be this order's.

    Adoption is proof, not a guess: a document is adopted only when its PaymentReference is this integration's mark
    for this order. Raises NeedsReview when the look-up is not proof either way: two documents carry the mark, or a
    document with the order number carries no gateway mark at all (typed by hand, or made before marks existed).
    A document with another integration's mark is another shop's order with the same number: not this one's.
    """
    own = [d for d in documents if d.payment_reference == mark]
    if len(own) == 1:
        return own[0]
    if len(own) > 1:
        raise NeedsReview(order_number, own, marked=True)
    unmarked = [d for d in documents if not is_gateway_mark(d.payment_reference, order_number=order_number)]
    if unmarked:
        raise NeedsReview(order_number, unmarked, marked=False)
    return None


class NeedsReview(BookingError):
    """Exact holds document(s) that may be this order's booking, but not as proof: a person decides."""

    def __init__(self, order_number: str, documents: Sequence[ExactDocument], *, marked: bool) -> None:
        numbers = ", ".join(d.number or d.id for d in documents)
        kind = DUPLICATE_MARK if marked else UNMARKED_DOCUMENT
        if marked:
            message = (
                f"Exact holds {len(documents)} documents marked as order {order_number} ({numbers}); keep one, "
                "delete the others in Exact, then retry the order"
            )
        else:
            message = (
                f"Exact already holds {numbers} with reference {order_number}, not made by the gateway for this shop; "
                "check it in Exact: if it is this order, mark the order as ignored, else delete it and retry"
            )
        super().__init__(kind, message, attention=True, params={"order": order_number, "documents": numbers})
        self.documents = tuple(documents)


async def create_document(client: ExactClient, document: Document) -> ExactDocument:
    """POST the booking. A timeout or 5xx here is ambiguous: look the document up before posting it again."""
    return ExactDocument.from_api(document.document_type, await client.post(document.path, document.payload))


async def finalize_invoice(client: ExactClient, payload: Mapping[str, Any]) -> ExactPrintResult:
    """Process a sales invoice (book and number it) and, when asked, have Exact e-mail it to the customer."""
    data = await client.post("salesinvoice/PrintedSalesInvoices", payload)
    return ExactPrintResult(
        invoice_id=str(payload["InvoiceID"]),
        document_error=str(data.get("DocumentCreationError") or "").strip(),
        email_error=str(data.get("EmailCreationError") or "").strip(),
        email_sent=bool(str(data.get("EmailCreationSuccess") or "").strip()),
    )


async def find_invoice_numbers(client: ExactClient, invoice_ids: Sequence[str]) -> dict[str, str]:
    """The numbers of processed sales invoices (Status 50) among `invoice_ids`, in one GET, by lower-case id.

    Drafts, open invoices and ids Exact does not know are left out; so is anything that is not an Exact id.
    """
    ids = list(dict.fromkeys(i.strip().lower() for i in invoice_ids if _is_guid(i)))
    if len(ids) > MAX_IDS_PER_LOOK_UP:
        raise ValueError(f"at most {MAX_IDS_PER_LOOK_UP} invoices per look-up (Exact's URL limit)")
    if not ids:
        return {}
    endpoint = _ENDPOINTS[SALES_INVOICE]
    rows = await client.get_all(
        endpoint.path,
        select=(endpoint.id_field, endpoint.number_field, "Status"),
        filter=" or ".join(f"{endpoint.id_field} eq guid'{i}'" for i in ids),
        top=len(ids),
    )
    documents = [ExactDocument.from_api(SALES_INVOICE, row) for row in rows]
    return {d.id.lower(): d.number for d in documents if d.is_processed and d.number}


async def create_account(client: ExactClient, payload: Mapping[str, Any]) -> ExactAccount:
    return ExactAccount.from_api(await client.post("crm/Accounts", payload))


async def create_item(client: ExactClient, payload: Mapping[str, Any]) -> ExactItem:
    return ExactItem.from_api(await client.post("logistics/Items", payload))


async def item_group_revenue(client: ExactClient, group_id: str) -> str:
    """The revenue G/L account id of an item group ("" when it has none)."""
    rows = await client.get_all(
        "logistics/ItemGroups", select=("ID", "GLRevenue"), filter=f"ID eq guid'{_guid(group_id)}'", top=1
    )
    return str(rows[0].get("GLRevenue") or "").strip() if rows else ""


def _is_guid(value: str) -> bool:
    text = value.strip()
    return len(text) == _GUID_LENGTH and text.count("-") == 4 and all(c in "0123456789abcdefABCDEF-" for c in text)


def _guid(value: str) -> str:
    if not _is_guid(value):
        raise BookingError(SETTINGS, f"{value.strip()[:40]!r} is not an Exact id")
    return value.strip()


# ---------------------------------------------------------------- resolving the ids a plan needs


@dataclass
class Resolution:
    """The ids a document needs, which stored links were used, and the links learned on the way."""

    refs: ExactRefs
    used: list[LinkKey] = field(default_factory=list)
    learned: dict[LinkKey, str] = field(default_factory=dict)


class LinkGate(Protocol):
    """Serialises "find or create" of one Exact record across jobs and processes (the job's Redis lock), and keeps
    what it finds at once (stored links). Inside `hold(key)`: `stored` re-reads links another job may have saved while
    this one waited; `save` stores a new link in its own transaction, before the hold ends."""

    def hold(self, key: LinkKey) -> AbstractAsyncContextManager[None]: ...

    async def stored(self, keys: Sequence[LinkKey]) -> dict[LinkKey, str]: ...

    async def save(self, links: Mapping[LinkKey, str]) -> None: ...


class NoGate:
    """No serialisation and nothing stored early: for callers without Redis (tests of the resolver, tools)."""

    def hold(self, key: LinkKey) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def stored(self, keys: Sequence[LinkKey]) -> dict[LinkKey, str]:
        return {}

    async def save(self, links: Mapping[LinkKey, str]) -> None:
        return None


def link_keys(plan: BookingPlan, settings: IntegrationSettings) -> list[LinkKey]:
    """The stored links worth loading before resolving `plan` (the job reads them in one query)."""
    keys: list[LinkKey] = [(plan.customer.link_kind, plan.customer.key)]
    keys += [("gl_account", code) for code in gl_codes_needed(plan, settings)]
    for need in items_needed(plan, settings):
        keys += [("item", need.code), ("item_revenue", need.code)]
    if plan.document_type == DIRECT_SALES_INVOICE:
        keys.append(("warehouse", settings.warehouse.strip()))
    return keys


async def resolve_refs(
    client: ExactClient,
    plan: BookingPlan,
    settings: IntegrationSettings,
    known: Mapping[LinkKey, str],
    gate: LinkGate | None = None,
    budget: CreationBudget | None = None,
) -> Resolution:
    """Account, G/L accounts and items for `plan`: stored links first, then Exact look-ups, creating what the
    settings allow (customers always, items with "create items") under `gate`. Raises BookingError for what must
    exist. Without a gate nothing is serialised: two concurrent callers may each create the same record. Items are
    found in batches and created within `budget` (exact_items.py): past it, CreationPaused (all created are saved)."""
    resolver = _Resolver(client, settings, known, gate or NoGate(), ItemFinder(client, budget))
    account_id = await resolver.account(plan.customer)
    gl_accounts = await resolver.gl_accounts(gl_codes_needed(plan, settings))
    needs = items_needed(plan, settings)
    await resolver.prefetch_items(needs)
    for need in needs:
        await resolver.item(need, gl_accounts)
    warehouse = await resolver.warehouse(settings.warehouse) if plan.document_type == DIRECT_SALES_INVOICE else ""
    refs = ExactRefs(
        account_id=account_id,
        items=resolver.items,
        item_revenue=resolver.revenue,
        gl_accounts=gl_accounts,
        warehouse=warehouse,
    )
    return Resolution(refs=refs, used=resolver.used, learned=resolver.learned)


class _Resolver:
    def __init__(
        self,
        client: ExactClient,
        settings: IntegrationSettings,
        known: Mapping[LinkKey, str],
        gate: LinkGate,
        finder: ItemFinder,
    ) -> None:
        self.client = client
        self.finder = finder
        self.group_revenue: dict[str, str] = {}  # item group id -> its revenue G/L account id
        self.settings = settings
        self.known = known
        self.gate = gate
        self.learned: dict[LinkKey, str] = {}
        self.used: list[LinkKey] = []
        self.items: dict[str, str] = {}
        self.revenue: dict[str, str] = {}

    def _stored(self, key: LinkKey) -> str:
        value = self.known.get(key, "")
        if value:
            self.used.append(key)
        return value

    async def account(self, customer: Customer) -> str:
        key = (customer.link_kind, customer.key)
        if stored := self._stored(key):
            return stored
        if customer.link_kind == "collective_account":
            if _is_guid(customer.key):
                return customer.key  # the settings page may store the account's id itself
            found = await self.client.find_account_by_code(customer.key)
            if found is None:
                raise BookingError(
                    SETTINGS, f"the collective account {customer.key} for consumers does not exist in Exact"
                )
        else:
            async with self.gate.hold(key):
                if stored := (await self.gate.stored([key])).get(key, ""):
                    self.used.append(key)  # another job created it while this one waited
                    return stored
                found = await self._account_by_email(customer.email)
                if found is None:
                    found = await create_account(self.client, customer.account_payload())
                await self.gate.save({key: found.id})
        self.learned[key] = found.id
        return found.id

    async def _account_by_email(self, email: str) -> ExactAccount | None:
        """By e-mail, lower case first (how most accounts hold it), then as the shop wrote it: whether Exact compares
        e-mail case-insensitively is not documented, and a second account for one customer is worse than a call."""
        spellings = list(dict.fromkeys(e for e in (email.strip().lower(), email.strip()) if e))
        if len(spellings) < 2:
            return await self.client.find_account_by_email(spellings[0]) if spellings else None
        # Both spellings in one call; the lower-case one wins when both exist.
        rows = await self.client.get_all(
            "crm/Accounts",
            select=ACCOUNT_FIELDS,
            filter=" or ".join(f"Email eq {odata_quote(s)}" for s in spellings),
            top=len(spellings),
        )
        accounts = [ExactAccount.from_api(row) for row in rows]
        for spelling in spellings:
            for account in accounts:
                if account.email == spelling:
                    return account
        return accounts[0] if accounts else None

    async def warehouse(self, code: str) -> str:
        """The id of the warehouse the settings name by code (or by id)."""
        code = code.strip()
        if _is_guid(code):
            return code
        key = ("warehouse", code)
        if stored := self._stored(key):
            return stored
        rows = await self.client.get_all(
            "inventory/Warehouses", select=("ID", "Code"), filter=f"Code eq {odata_quote(code)}", top=1
        )
        if not rows:
            raise BookingError(SETTINGS, f"warehouse {code} does not exist in Exact; check the code in the settings")
        self.learned[key] = str(rows[0]["ID"])
        return self.learned[key]

    async def gl_accounts(self, codes: list[str]) -> dict[str, str]:
        """Ids by code. A code Exact does not know is left out; the document names it if a line needs it."""
        found: dict[str, str] = {}
        for code in codes:
            key = ("gl_account", code)
            if stored := self._stored(key):
                found[code] = stored
                continue
            if key in self.known:
                continue  # looked up just now for every concurrent job (lookups.shared_links): not in Exact
            account = await self.client.find_gl_account(code)
            if account is not None:
                found[code] = self.learned[key] = account.id
        return found

    async def item(self, need: ItemNeed, gl_accounts: Mapping[str, str]) -> None:
        item_key, revenue_key = ("item", need.code), ("item_revenue", need.code)
        if stored := self._stored(item_key):
            self._use_item(need.code, stored, self.known.get(revenue_key, ""))
            return
        if not need.required and revenue_key in self.known:
            self.revenue[need.code] = self.known[revenue_key]  # looked up before: not an Exact item
            return
        if need.creatable:
            async with self.gate.hold(item_key):
                links = await self.gate.stored([item_key, revenue_key])
                if stored := links.get(item_key, ""):
                    self.used.append(item_key)  # another job created it while this one waited
                    self._use_item(need.code, stored, links.get(revenue_key, ""))
                    return
                item = await self.finder.find(need.code)
                if item is None:
                    item = await self.finder.create(need.code, _item_payload(need, gl_accounts))
                await self._learn_item(need.code, item)
                await self.gate.save({item_key: self.learned[item_key], revenue_key: self.learned[revenue_key]})
            return
        item = await self.finder.find(need.code)
        if item is None:
            if need.required:
                raise BookingError(
                    MISSING_ITEM,
                    f"item {need.code} does not exist in Exact; create it there or switch on 'create items'",
                )
            self.learned[revenue_key] = ""  # remembered, so the next order does not look again
            return
        await self._learn_item(need.code, item)

    async def prefetch_items(self, needs: Sequence[ItemNeed]) -> None:
        """Look up in batches the items no stored link answers (see ItemFinder.prefetch)."""
        unknown = {
            need.code: need.creatable
            for need in needs
            if not self.known.get(("item", need.code))
            and (need.required or ("item_revenue", need.code) not in self.known)
        }
        await self.finder.prefetch([need.code for need in needs], unknown)

    def _use_item(self, code: str, item_id: str, revenue: str) -> None:
        self.items[code] = item_id
        self.revenue[code] = revenue

    async def _learn_item(self, code: str, item: ExactItem) -> None:
        """Take the item and its revenue account (its own, else its item group's with "use item ledger accounts")."""
        gl = item.gl_revenue
        if not gl and self.settings.use_item_ledger and item.item_group:
            if item.item_group not in self.group_revenue:  # one look-up per group, not per item of a big order
                self.group_revenue[item.item_group] = await item_group_revenue(self.client, item.item_group)
            gl = self.group_revenue[item.item_group]
        self.items[code] = self.learned[("item", code)] = item.id
        self.revenue[code] = self.learned[("item_revenue", code)] = gl


def _item_payload(need: ItemNeed, gl_accounts: Mapping[str, str]) -> dict[str, Any]:
    """logistics/Items POST for an article seen in an order: code = SKU, a sales item with the VAT code and revenue
    account of its rate at home (booking.items_needed); without them Exact's item group decides."""
    payload: dict[str, Any] = {
        "Code": need.code,
        "Description": need.description[:60] or need.code,
        "IsSalesItem": True,
    }
    if need.vat_code:
        payload["SalesVatCode"] = need.vat_code
    if gl_accounts.get(need.gl_code):
        payload["GLRevenue"] = gl_accounts[need.gl_code]
    return payload
