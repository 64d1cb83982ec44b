"""Booking: turn a shop order into the Exact Online document the shop configured; pure, no I/O.

`plan_booking()` checks the order and splits it into Exact lines (one per order line and VAT rate) whose amounts add
up to the shop's total and VAT per rate to the cent. The job resolves the Exact ids the plan needs and
`booking_documents.build_document()` makes the payload. Amounts are Decimal end to end (docs/booking.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from gateway.booking_amounts import AmountMismatch, cents, incl_sum, money, reconcile_vat, share_cents
from gateway.booking_settings import IntegrationSettings, VatMapping
from gateway.clients.mijnwebwinkel_models import MwwOrder, MwwOrderLine
from gateway.vat import REVERSE_CHARGED, ZERO_PERCENT, domestic_category, is_oss, rate_text, vat_category

SALES_ENTRY = "sales_entry"
SALES_INVOICE = "sales_invoice"
SALES_ORDER = "sales_order"
DIRECT_SALES_INVOICE = "direct_sales_invoice"
INVOICE_TYPES = {
    (SALES_INVOICE, False): 8020,
    (SALES_INVOICE, True): 8021,  # sales credit note
    (DIRECT_SALES_INVOICE, False): 8023,
    (DIRECT_SALES_INVOICE, True): 8024,  # direct credit note
}
DESCRIPTION_MAX = 60  # Exact cuts item and line descriptions at 60 characters

# Error kinds: orders failed for one kind resume together when its cause is fixed (jobs/sync_order.resume_orders).
UNMAPPED_VAT = "unmapped_vat"
VAT_NOT_USED = "vat_not_used"
MISSING_SKU = "missing_sku"
MISSING_ITEM = "missing_item"
MISSING_GL = "missing_gl"
TOTALS_MISMATCH = "totals_mismatch"
SETTINGS = "settings"
CREDIT_SALES_ORDER = "credit_sales_order"
NEGATIVE_SALES_ORDER = "negative_sales_order"
VAT_CODE_RATE = "vat_code_rate"  # a VAT amount on a code whose rate does not produce it; resumes when mapped
VAT_CONTRADICTION = "vat_contradiction"  # the order says no VAT is due, yet charges VAT
CURRENCY = "currency"  # the order's currency is one the configured journal does not take; resumes when it does
VAT_TOLERANCE = Decimal("0.01")  # per line: the shop rounds each line's VAT, Exact the code's VAT per line
# Exact holds a document that may be this order's but is not proof of it (jobs stop the order as `needs_review`).
UNMARKED_DOCUMENT = "unmarked_document"
DUPLICATE_MARK = "duplicate_mark"
REVIEW_KINDS = (UNMARKED_DOCUMENT, DUPLICATE_MARK)

ARTICLE, SHIPPING, COSTS, DISCOUNT = "article", "shipping", "costs", "discount"
_KIND_OF_TYPE = {"shipping": SHIPPING, "payment": COSTS, "discount": DISCOUNT}
KIND_LABEL = {SHIPPING: "Shipping costs", COSTS: "Payment costs", DISCOUNT: "Discount", ARTICLE: "Article"}


class BookingError(Exception):
    """The order cannot be booked as configured. `kind` groups causes; `attention` means no retry can help.

    The message is English for logs and the operator; `params` are the figures it names, so pages can render the
    kind's sentence from the catalogues (gateway/booking_reasons.py) in the reader's language.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        attention: bool = False,
        categories: tuple[str, ...] = (),
        params: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.attention = attention
        self.categories = categories
        self.params = dict(params or {})

    @property
    def state(self) -> str:
        """The order sync state this error leaves: needs_review, needs_attention or failed."""
        if self.kind in REVIEW_KINDS:
            return "needs_review"
        return "needs_attention" if self.attention else "failed"


@dataclass(frozen=True)
class PlannedLine:
    """One Exact line: one order line at one VAT rate. Amounts are signed as booked (negative on credits)."""

    number: int  # the order line, 1-based, for messages
    kind: str  # article | shipping | costs | discount
    description: str
    quantity: Decimal
    sku: str
    category: str
    rate: Decimal
    vat_code: str
    category_gl: str  # the category's revenue account code ("" when the mapping has none)
    amount: Decimal  # excl. VAT, 2 decimals
    vat: Decimal  # 2 decimals
    # What an item created for this line gets (with "create items"): the shop's article text, and the VAT code and
    # revenue account of its rate in the shop's own country. Empty for a foreign line (OSS, export, EU B2B, another
    # country's VAT): its code and account say nothing about the article at home, so Exact's item group decides.
    article_description: str = ""
    item_vat_code: str = ""
    item_gl: str = ""

    @property
    def label(self) -> str:
        return f"order line {self.number} ({self.description or KIND_LABEL[self.kind]})"


@dataclass(frozen=True)
class Customer:
    """Who the document is for: one account per e-mail (B2B always), or the consumers' collective account."""

    link_kind: str  # "account" | "collective_account"
    key: str  # e-mail (lower case) or the collective account's code
    is_b2b: bool
    name: str
    email: str
    address_line: str
    postcode: str
    city: str
    country: str
    vat_number: str
    phone: str

    def account_payload(self) -> dict[str, Any]:
        """crm/Accounts POST: a customer (Status C) with what the shop knows; empty fields left out."""
        payload = {
            "Name": self.name[:50],
            "Status": "C",
            "Email": self.email,
            "AddressLine1": self.address_line,
            "Postcode": self.postcode,
            "City": self.city,
            "Country": self.country,
            "VATNumber": self.vat_number,
            "Phone": self.phone,
        }
        return {k: v for k, v in payload.items() if v}


@dataclass(frozen=True)
class BookingPlan:
    order_number: str
    document_type: str
    is_credit: bool
    credited_order_number: str
    order_date: date
    currency: str
    description: str
    customer: Customer
    lines: tuple[PlannedLine, ...]
    total: Decimal  # incl. VAT, as booked
    vat_by_rate: Mapping[Decimal, Decimal]
    categories: tuple[str, ...]

    def item_code(self, line: PlannedLine, settings: IntegrationSettings) -> str:
        """The Exact item a line books on: the SKU for articles, the configured item for the others."""
        return {
            ARTICLE: line.sku,
            SHIPPING: settings.shipping_item,
            COSTS: settings.costs_item,
            DISCOUNT: settings.discount_item,
        }[line.kind].strip()


# ---------------------------------------------------------------- planning


def plan_booking(
    order: MwwOrder,
    settings: IntegrationSettings,
    mappings: Mapping[str, VatMapping],
    *,
    home_country: str,
    credited_reference: str = "",
    vat_rates: Mapping[str, Decimal] | None = None,
    journal: JournalCurrency | None = None,
) -> BookingPlan:
    """Check `order` against the configuration and split it into Exact lines; raise BookingError when it cannot be
    booked (unmapped VAT category, totals that do not add up, VAT the order's own data or the mapped VAT code's rate
    contradict, a credit order as sales order, missing settings). `vat_rates` are the Exact VAT codes' rates in
    percent by code; a code without a known rate is left to Exact. `journal` says which currencies the configured
    journal takes (None: unknown, left to Exact)."""
    document_type = settings.insertion_type
    _check_settings(order, settings)
    check_currency(order, journal)
    check_vat_strategy(order)
    categories = {}
    for line in order.lines:
        for price in line.prices:
            rate_category = vat_category(
                order, price.rate, home_country=home_country, eu_consumer_vat=settings.eu_consumer_vat
            )
            categories[(line.id, price.rate)] = rate_category
    unmapped = sorted({c for c in categories.values() if not (mappings.get(c) and mappings[c].usable)})
    not_used = [c for c in unmapped if mappings.get(c) and mappings[c].not_used]
    if not_used:  # the owner said the shop never sells in this category: refuse readably, resume once mapped
        message = f"VAT category {not_used[0]} is marked as not used; choose its VAT code in the settings"
        raise BookingError(VAT_NOT_USED, message, categories=tuple(unmapped), params={"category": not_used[0]})
    if unmapped:
        names = ", ".join(unmapped)
        raise BookingError(
            UNMAPPED_VAT, f"map VAT categor{'ies' if len(unmapped) > 1 else 'y'} {names}", categories=tuple(unmapped)
        )
    lines, vat_by_rate = _split_lines(order, settings, mappings, categories, home_country=home_country)
    check_vat_codes(order.number, lines, vat_rates or {})
    if document_type == SALES_ORDER:
        lines = fold_negative_lines(order.number, lines)
    total = sum((line.amount + line.vat for line in lines), Decimal(0))
    description = f"Order {order.number}"
    if order.is_credit:
        description = f"Credit order {order.number} for order {order.credited_order_number}"
        if credited_reference:
            description += f" ({credited_reference})"
    return BookingPlan(
        order_number=order.number,
        document_type=document_type,
        is_credit=order.is_credit,
        credited_order_number=order.credited_order_number,
        order_date=order.date,
        currency=order.currency,
        description=description[:DESCRIPTION_MAX],
        customer=customer_of(order, settings),
        lines=tuple(lines),
        total=total,
        vat_by_rate=vat_by_rate,
        categories=tuple(dict.fromkeys(categories.values())),
    )


def _check_settings(order: MwwOrder, settings: IntegrationSettings) -> None:
    kind = settings.insertion_type
    if kind not in (SALES_ENTRY, SALES_INVOICE, SALES_ORDER, DIRECT_SALES_INVOICE):
        raise BookingError(SETTINGS, f"choose how orders are booked (unknown insertion type {kind!r})")
    if order.is_credit and kind == SALES_ORDER:
        raise BookingError(
            CREDIT_SALES_ORDER,
            f"order {order.number} is a credit order (return of order {order.credited_order_number}); Exact sales "
            "orders cannot be negative, so book this credit by hand or switch to sales entries or invoices",
            attention=True,
        )
    if kind != SALES_ORDER and not settings.journal_code.strip():
        raise BookingError(SETTINGS, "choose the sales journal in the settings")
    if kind == DIRECT_SALES_INVOICE and not settings.warehouse.strip():
        raise BookingError(SETTINGS, "choose the warehouse for direct sales invoices in the settings")
    if not order.lines:
        raise BookingError(TOTALS_MISMATCH, f"order {order.number} has no order lines to book")


@dataclass(frozen=True)
class JournalCurrency:
    """The configured sales journal's currency rule (Exact Journals.Currency, AllowVariableCurrency)."""

    code: str
    currency: str
    allows_other_currencies: bool


def check_currency(order: MwwOrder, journal: JournalCurrency | None) -> None:
    """Every document type books in the order's currency (header Currency, FC amounts; docs/booking.md); a journal
    that takes only its own currency cannot hold another, so such an order is refused before anything is sent."""
    if journal is None or journal.allows_other_currencies or not journal.currency:
        return
    if order.currency.upper() == journal.currency.upper():
        return
    raise BookingError(
        CURRENCY,
        f"order {order.number} is in {order.currency}, but sales journal {journal.code} books only {journal.currency}; "
        f"allow other currencies on journal {journal.code} in Exact (or choose a journal that does), then retry",
        params={
            "order": order.number,
            "currency": order.currency,
            "journal": journal.code,
            "journal_currency": journal.currency,
        },
    )


def check_vat_strategy(order: MwwOrder) -> None:
    """An order whose tax strategy says no VAT is due (reverse charge, zero rated) must charge none."""
    if order.tax_strategy not in (REVERSE_CHARGED, ZERO_PERCENT):
        return
    charged = sum((abs(p.vat) for line in order.lines for p in line.prices if p.rate), Decimal(0))
    charged = max(charged, sum((abs(t.amount) for t in order.tax if t.rate), Decimal(0)))
    if charged:
        raise BookingError(
            VAT_CONTRADICTION,
            f"order {order.number} says no VAT is due ({order.tax_strategy}) but charges {money(charged)} VAT; "
            "correct the order in the shop, then retry it",
            params={"order": order.number, "strategy": order.tax_strategy, "vat": money(charged)},
        )


def check_vat_codes(order_number: str, lines: Sequence[PlannedLine], vat_rates: Mapping[str, Decimal]) -> None:
    """VAT sits only on a code whose rate produces it: per (category, code), the lines' VAT must be the code's rate
    of their amount, to a cent per line (docs/booking.md, "VAT is consistent or refused")."""
    groups: dict[tuple[str, str], list[PlannedLine]] = {}
    for line in lines:
        groups.setdefault((line.category, line.vat_code), []).append(line)
    for (category, code), members in groups.items():
        code_rate = vat_rates.get(code)
        if code_rate is None:
            continue
        amount = sum((line.amount for line in members), Decimal(0))
        vat = sum((line.vat for line in members), Decimal(0))
        expected = cents(amount * code_rate / 100)
        if abs(vat - expected) <= VAT_TOLERANCE * len(members):
            continue
        rate = ", ".join(dict.fromkeys(rate_text(line.rate) for line in members))
        params = {
            "order": order_number,
            "vat": money(vat),
            "amount": money(amount),
            "rate": rate,
            "category": category,
            "code": code,
            "code_rate": rate_text(code_rate),
            "expected": money(expected),
        }
        raise BookingError(
            VAT_CODE_RATE,
            f"order {order_number} carries {params['vat']} VAT on {params['amount']} at {rate} % (category "
            f"{category}), but VAT code {code} charges {params['code_rate']} %, which makes {params['expected']}; "
            f"map category {category} to a VAT code of {rate} %",
            categories=(category,),
            params=params,
        )


def customer_of(order: MwwOrder, settings: IntegrationSettings) -> Customer:
    address = order.invoice_address
    is_b2b = order.business_model == "B2B" or bool(address.taxnumber)
    email = order.email.strip().lower()
    if not is_b2b and settings.b2c_collective:
        if not settings.b2c_collective_account.strip():
            raise BookingError(SETTINGS, "choose the collective account for consumers in the settings")
        link_kind, key = "collective_account", settings.b2c_collective_account.strip()
    else:
        link_kind = "account"
        key = email or f"no-email:{address.name}|{address.zipcode}|{address.country_code}".lower()
    return Customer(
        link_kind=link_kind,
        key=key[:254],
        is_b2b=is_b2b,
        name=(address.company or address.name or order.email or f"Webshop customer {order.number}").strip(),
        email=order.email.strip(),
        address_line=address.address_line,
        postcode=address.zipcode,
        city=address.city,
        country=address.country_code,
        vat_number=address.taxnumber if is_b2b else "",
        phone=address.phone,
    )


def line_kind(line: MwwOrderLine) -> str:
    """Shipping, payment costs and discount lines by their `type`; everything else (article, custom) is an article."""
    return _KIND_OF_TYPE.get(line.type, ARTICLE)


def _split_lines(
    order: MwwOrder,
    settings: IntegrationSettings,
    mappings: Mapping[str, VatMapping],
    categories: Mapping[tuple[str, Decimal], str],
    *,
    home_country: str,
) -> tuple[list[PlannedLine], dict[Decimal, Decimal]]:
    try:
        vats, targets = reconcile_vat(order)
    except AmountMismatch as e:
        raise BookingError(TOTALS_MISMATCH, f"{e}; not booked so no wrong amount reaches Exact", params=e.params) from e
    sign = Decimal(-1) if order.is_credit and (order.total > 0 or incl_sum(order) > 0) else Decimal(1)
    lines = []
    for index, line in enumerate(order.lines):
        kind = line_kind(line)
        for position, price in enumerate(line.prices):
            category = categories[(line.id, price.rate)]
            mapping = mappings[category]
            description = line.description or KIND_LABEL[kind]
            if len(line.prices) > 1:
                description = f"{description} ({price.rate.normalize():f} %)"
            vat = vats[(index, position)]
            quantity = abs(line.quantity) if line.quantity else Decimal(1)
            item_vat_code, item_gl = _item_defaults(category, price.rate, mappings, home_country)
            lines.append(
                PlannedLine(
                    number=index + 1,
                    kind=kind,
                    description=description[:DESCRIPTION_MAX],
                    quantity=-quantity if order.is_credit else quantity,
                    sku=line.sku,
                    category=category,
                    rate=price.rate,
                    vat_code=(mapping.vat_code or "").strip(),
                    category_gl=_category_gl(category, mapping, settings),
                    article_description=_article_description(line)[:DESCRIPTION_MAX],
                    item_vat_code=item_vat_code,
                    item_gl=item_gl,
                    amount=sign * (price.amount_including_tax - vat),
                    vat=sign * vat,
                )
            )
    return lines, {rate: sign * amount for rate, amount in targets.items()}


def _article_description(line: MwwOrderLine) -> str:
    """The shop's own article text (not the line's, which may carry an option or a rate)."""
    return next((a.description for a in line.articles if a.description), "") or line.description


def _item_defaults(
    category: str, rate: Decimal, mappings: Mapping[str, VatMapping], home_country: str
) -> tuple[str, str]:
    """(VAT code, revenue account) an item created from this line gets: those mapped for the line's rate in the
    shop's own country, only when the line is a domestic one."""
    if category != domestic_category(home_country or "NL", rate):
        return "", ""
    mapping = mappings[category]
    return (mapping.vat_code or "").strip(), (mapping.gl_account or "").strip()


def _category_gl(category: str, mapping: VatMapping, settings: IntegrationSettings) -> str:
    gl = (mapping.gl_account or "").strip()
    if not gl and is_oss(category):
        gl = settings.oss_revenue_account.strip()  # the "default sales revenue account for OSS"
    return gl


def fold_negative_lines(order_number: str, lines: list[PlannedLine]) -> list[PlannedLine]:
    """Exact sales orders take no negative lines: each discount (or other negative line) is spread over the positive
    lines of its VAT category in proportion to their amounts, in whole cents, so the order's total and its VAT per
    rate stay the shop's. Quantities stay; unit prices come out lower, as the customer paid."""
    negative = [i for i, line in enumerate(lines) if line.amount < 0 or line.vat < 0]
    if not negative:
        return lines
    kept = [line for i, line in enumerate(lines) if i not in negative]
    for category in dict.fromkeys(lines[i].category for i in negative):
        cut = [lines[i] for i in negative if lines[i].category == category]
        targets = [i for i, line in enumerate(kept) if line.category == category and line.amount > 0]
        weights = [kept[i].amount for i in targets]
        cut_amount, cut_vat = sum((x.amount for x in cut), Decimal(0)), sum((x.vat for x in cut), Decimal(0))
        if not targets or sum(weights) + cut_amount < 0 or sum(kept[i].vat for i in targets) + cut_vat < 0:
            raise BookingError(
                NEGATIVE_SALES_ORDER,
                f"order {order_number} has {money(-cut_amount - cut_vat)} discount at VAT category {category}, more "
                "than it discounts; Exact sales orders cannot be negative, so book it as a sales entry or invoice",
                attention=True,
            )
        shares = zip(targets, share_cents(cut_amount, weights), share_cents(cut_vat, weights), strict=True)
        for i, amount, vat in shares:
            kept[i] = replace(kept[i], amount=kept[i].amount + amount, vat=kept[i].vat + vat)
    return kept


# ---------------------------------------------------------------- what the plan needs from Exact


@dataclass(frozen=True)
class ItemNeed:
    code: str
    description: str
    vat_code: str
    gl_code: str  # revenue account for a created item
    creatable: bool  # an article SKU may be created (create_items); configured items must exist
    required: bool  # False: looked up only for its revenue account (sales entry + item ledger)


def items_needed(plan: BookingPlan, settings: IntegrationSettings) -> list[ItemNeed]:
    """The Exact items the document refers to, once per code; raises BookingError for a line without an item."""
    needs: dict[str, ItemNeed] = {}
    uses_items = plan.document_type != SALES_ENTRY
    for line in plan.lines:
        code = plan.item_code(line, settings)
        if not uses_items and not (settings.use_item_ledger and line.kind == ARTICLE and code):
            continue
        if not code:
            if line.kind == ARTICLE:
                raise BookingError(
                    MISSING_SKU, f"{line.label} has no SKU, so it cannot be matched to an Exact item; add a SKU"
                )
            raise BookingError(SETTINGS, f"choose the {KIND_LABEL[line.kind].lower()} item in the settings")
        need = _item_need(line, code, settings, required=uses_items)
        if code not in needs or (need.vat_code and not needs[code].vat_code):
            needs[code] = need  # the first domestic line of a SKU says what its item is at home
    return list(needs.values())


def _item_need(line: PlannedLine, code: str, settings: IntegrationSettings, *, required: bool) -> ItemNeed:
    """An article may be created from the settings (its rate's VAT code and revenue account at home, the shop's
    article text), never from a foreign or OSS line's code and account; configured items must exist."""
    if line.kind == ARTICLE:
        return ItemNeed(
            code=code,
            description=line.article_description or line.description,
            vat_code=line.item_vat_code,
            gl_code=line.item_gl,
            creatable=settings.create_items,
            required=required,
        )
    return ItemNeed(code, line.description, line.vat_code, line.category_gl, creatable=False, required=required)


def gl_codes_needed(plan: BookingPlan, settings: IntegrationSettings) -> list[str]:
    """Revenue account codes the lines may book on (category accounts and the configured cost accounts)."""
    codes: dict[str, None] = {}
    for line in plan.lines:
        for code in (kind_gl(line, settings), line.category_gl):
            if code:
                codes.setdefault(code, None)
    return list(codes)


def kind_gl(line: PlannedLine, settings: IntegrationSettings) -> str:
    return {
        ARTICLE: "",
        SHIPPING: settings.shipping_gl_account,
        COSTS: settings.costs_gl_account,
        DISCOUNT: settings.discount_gl_account,
    }[line.kind].strip()
