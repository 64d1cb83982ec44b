"""Mijnwebwinkel (MyOnlineStore) API models, parsed at the boundary from the live shapes.

The live API is looser than its spec (see docs/mijnwebwinkel.md): numbers and amounts arrive as strings or numbers,
`price.tax` and a line's `price` as an object or a list, `shipping[].country` as `[]`. Amounts are `Decimal`, never
float. Money is rounded once, here, to the cent (ROUND_HALF_UP): the order total, each line's amount incl. VAT and the
order's VAT per rate, so float noise ("24.89999999999999946709294818") is 24.90 everywhere after the boundary; only a
line's excl. amount keeps its decimals, to derive a missing incl. amount (docs/booking.md, "Cents at the boundary").
A missing or malformed field we need raises PermanentApiError naming the field (never the token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from gateway.clients.errors import PermanentApiError

VENDOR = "Mijnwebwinkel"
CENT = Decimal("0.01")


def _fail(what: str, field: str) -> PermanentApiError:
    return PermanentApiError(f"{what}: field '{field}' is missing or malformed", vendor=VENDOR)


def decimal_of(value: Any, *, what: str, field: str) -> Decimal:
    """Decimal from a string or a number; floats go through str() so 0.1 stays 0.1."""
    if isinstance(value, bool) or value is None:
        raise _fail(what, field)
    try:
        result = Decimal(str(value).strip()) if isinstance(value, str | int | float) else None
    except InvalidOperation as e:
        raise _fail(what, field) from e
    if result is None or not result.is_finite():
        raise _fail(what, field)
    return result


def _optional_decimal(value: Any, *, what: str, field: str) -> Decimal | None:
    return None if value in (None, "") else decimal_of(value, what=what, field=field)


def _int_of(value: Any, *, what: str, field: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError) as e:
        raise _fail(what, field) from e


def _as_list(value: Any) -> list[Any]:
    """The API sends either one object or a list of them in several places."""
    if value is None or value == "":
        return []
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def _object(value: Any) -> Mapping[str, Any]:
    """A nested JSON object, or an empty one when the API sent something else (or nothing)."""
    return value if isinstance(value, Mapping) else {}


# C0 control characters other than tab/newline/return: PostgreSQL text cannot hold NUL, and none belongs in a name,
# an address or a SKU, so they are dropped at the boundary.
_CONTROL_CHARS = dict.fromkeys(c for c in range(32) if chr(c) not in "\t\n\r")


def _text(value: Any) -> str:
    return "" if value is None else str(value).translate(_CONTROL_CHARS).strip()


def cents(value: Decimal) -> Decimal:
    """The one rounding rule for money: to the cent, half up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def rate_of(value: Any, *, what: str, field: str) -> Decimal:
    """A VAT rate in percent, to two decimals (5.5, 21): float noise in a rate would make a category of its own."""
    return decimal_of(value, what=what, field=field).quantize(CENT, rounding=ROUND_HALF_UP)


def money_of(value: Any, *, what: str, field: str) -> Decimal:
    """An amount of money from a string or a number, rounded once to the cent."""
    return cents(decimal_of(value, what=what, field=field))


@dataclass(frozen=True)
class MwwTaxPrice:
    """One VAT rate's share of a line: `amount` excl. VAT (up to 6 decimals), `amount_including_tax` (2 decimals)."""

    rate: Decimal
    amount: Decimal
    amount_including_tax: Decimal

    @classmethod
    def from_api(cls, data: Any, *, what: str) -> MwwTaxPrice:
        if not isinstance(data, Mapping):
            raise _fail(what, "price")
        rate = rate_of(data.get("rate"), what=what, field="price.rate")
        amount = _optional_decimal(data.get("amount"), what=what, field="price.amount")
        incl = _optional_decimal(data.get("amount_including_tax"), what=what, field="price.amount_including_tax")
        if incl is None:
            if amount is None:
                raise _fail(what, "price.amount")
            # Older answers lack the pre-rounded figure; derive it the way the shop does (2 decimals, half up).
            incl = amount * (1 + rate / 100)
        elif amount is None:
            amount = incl / (1 + rate / 100)  # only the incl. figure came: the excl. one follows from the rate
        return cls(rate=rate, amount=amount, amount_including_tax=cents(incl))

    @property
    def vat(self) -> Decimal:
        return self.amount_including_tax - cents(self.amount)


@dataclass(frozen=True)
class MwwArticle:
    id: int | None
    sku: str
    description: str

    @classmethod
    def from_api(cls, data: Any) -> MwwArticle:
        data = data if isinstance(data, Mapping) else {}
        raw_id = data.get("id")
        return cls(
            id=int(raw_id) if str(raw_id or "").isdigit() else None,
            sku=_text(data.get("sku")),
            description=_text(data.get("description")),
        )


@dataclass(frozen=True)
class MwwOrderLine:
    """One order line. `type` is "article", "custom", "shipping", "payment" or "discount" (live values vary)."""

    id: str
    type: str
    quantity: Decimal
    description: str
    prices: tuple[MwwTaxPrice, ...]
    articles: tuple[MwwArticle, ...]

    @classmethod
    def from_api(cls, data: Any, *, order_number: str, index: int) -> MwwOrderLine:
        what = f"order {order_number} line {index + 1}"
        if not isinstance(data, Mapping):
            raise _fail(what, "orderlines")
        prices = tuple(MwwTaxPrice.from_api(p, what=what) for p in _as_list(data.get("price")))
        if not prices:
            raise _fail(what, "price")
        quantity = _optional_decimal(data.get("quantity"), what=what, field="quantity")
        return cls(
            id=_text(data.get("id")),
            type=_text(data.get("type")).lower() or "custom",
            quantity=Decimal(1) if quantity is None else quantity,
            description=_text(data.get("description")),
            prices=prices,
            articles=tuple(MwwArticle.from_api(a) for a in _as_list(data.get("articles"))),
        )

    @property
    def sku(self) -> str:
        return next((a.sku for a in self.articles if a.sku), "")

    @property
    def total_including_tax(self) -> Decimal:
        return sum((p.amount_including_tax for p in self.prices), Decimal(0))


@dataclass(frozen=True)
class MwwAddress:
    name: str
    company: str
    street: str
    number: str
    zipcode: str
    city: str
    country_code: str
    phone: str
    taxnumber: str

    @classmethod
    def from_api(cls, data: Any) -> MwwAddress:
        data = data if isinstance(data, Mapping) else {}
        return cls(
            name=_text(data.get("name")),
            company=_text(data.get("company")),
            street=_text(data.get("street")),
            number=_text(data.get("number")),
            zipcode=_text(data.get("zipcode")),
            city=_text(data.get("city")),
            country_code=_text(data.get("country_code")).upper()[:2],
            phone=_text(data.get("phone")),
            taxnumber=_text(data.get("taxnumber")),
        )

    @property
    def address_line(self) -> str:
        return f"{self.street} {self.number}".strip()


@dataclass(frozen=True)
class MwwOrder:
    """An order as the booking needs it. `tax` is the order's VAT per rate (`price.tax`, VAT amounts)."""

    number: str
    uuid: str
    date: date
    status: int
    status_changed_at: str
    currency: str
    business_model: str
    tax_region: str
    tax_strategy: str
    reference: str
    email: str
    invoice_address: MwwAddress
    delivery_address: MwwAddress | None
    shipping_country: str
    total: Decimal
    tax: tuple[MwwTaxPrice, ...]
    lines: tuple[MwwOrderLine, ...]
    credited_order_number: str
    credit_order_numbers: tuple[str, ...]

    @classmethod
    def from_api(cls, data: Any) -> MwwOrder:
        if not isinstance(data, Mapping):
            raise PermanentApiError("Mijnwebwinkel order is not an object", vendor=VENDOR)
        number = _text(data.get("number"))
        if not number:
            raise _fail("order", "number")
        what = f"order {number}"
        try:
            order_date = date.fromisoformat(_text(data.get("date"))[:10])
        except ValueError as e:
            raise _fail(what, "date") from e
        price = _object(data.get("price"))
        debtor = _object(data.get("debtor"))
        addresses = _object(debtor.get("address"))
        delivery = addresses.get("delivery")
        return cls(
            number=number,
            uuid=_text(data.get("uuid")),
            date=order_date,
            status=_int_of(data.get("status"), what=what, field="status"),
            status_changed_at=status_changed_at(data),
            currency=_text(data.get("currency")).upper() or "EUR",
            business_model=_text(data.get("business_model")).upper() or "B2C",
            tax_region=_text(data.get("tax_region")).upper()[:2],
            tax_strategy=_text(data.get("tax_strategy")),
            reference=_text(data.get("reference")),
            email=_text(debtor.get("email")),
            invoice_address=MwwAddress.from_api(addresses.get("invoice")),
            delivery_address=MwwAddress.from_api(delivery) if isinstance(delivery, Mapping) else None,
            shipping_country=_shipping_country(data.get("shipping")),
            total=money_of(price.get("total"), what=what, field="price.total"),
            tax=tuple(_order_tax(t, what=what) for t in _as_list(price.get("tax"))),
            lines=tuple(
                MwwOrderLine.from_api(line, order_number=number, index=i)
                for i, line in enumerate(_as_list(data.get("orderlines")))
            ),
            credited_order_number=_order_number_or_empty(data.get("credited_order_number")),
            credit_order_numbers=tuple(
                n for n in (_order_number_or_empty(v) for v in _as_list(data.get("credit_order_numbers"))) if n
            ),
        )

    @property
    def is_credit(self) -> bool:
        return bool(self.credited_order_number)

    @property
    def customer_name(self) -> str:
        return self.invoice_address.company or self.invoice_address.name

    @property
    def destination_country(self) -> str:
        """Where the goods go: the delivery address, else the shipping country, else the invoice address."""
        if self.delivery_address and self.delivery_address.country_code:
            return self.delivery_address.country_code
        return self.shipping_country or self.invoice_address.country_code


def _order_tax(data: Any, *, what: str) -> MwwTaxPrice:
    # price.tax entries carry the VAT amount per rate in `amount` (no amount_including_tax).
    if not isinstance(data, Mapping):
        raise _fail(what, "price.tax")
    rate = rate_of(data.get("rate"), what=what, field="price.tax.rate")
    vat = money_of(data.get("amount"), what=what, field="price.tax.amount")
    return MwwTaxPrice(rate=rate, amount=vat, amount_including_tax=vat)


def _order_number_or_empty(value: Any) -> str:
    """An order reference, or '' for the "none" values the API may send (null, "", 0, "0")."""
    text = _text(value)
    return "" if text in {"", "0"} else text


def _shipping_country(shipping: Any) -> str:
    for entry in _as_list(shipping):
        country = entry.get("country") if isinstance(entry, Mapping) else None
        if isinstance(country, Mapping) and country.get("isocode"):
            return _text(country["isocode"]).upper()[:2]
    return ""


def status_changed_at(data: Mapping[str, Any]) -> str:
    """The order's last status change as 'yyyy-mm-dd hh:mm:ss' (the API's zone-less shop time), or ''."""
    day = _text(data.get("status_changed_date"))[:10]
    time = _text(data.get("status_changed_time"))[:8] or "00:00:00"
    return f"{day} {time}" if day else ""


@dataclass(frozen=True)
class MwwOrderChange:
    """The few fields the poller needs from a list entry: which order, which status, when it changed."""

    number: str
    status: int
    status_changed_at: str

    @classmethod
    def from_api(cls, data: Any) -> MwwOrderChange:
        if not isinstance(data, Mapping) or not _text(data.get("number")):
            raise _fail("order list entry", "number")
        number = _text(data.get("number"))
        return cls(
            number=number,
            status=_int_of(data.get("status"), what=f"order {number}", field="status"),
            status_changed_at=status_changed_at(data),
        )


@dataclass(frozen=True)
class MwwStore:
    id: str
    name: str
    region_code: str
    currency: str
    prices_include_tax: bool
    version: str
    business_models: str = "ALL"  # available_business_models: B2C, B2B or ALL (which customers the shop sells to)

    @classmethod
    def from_api(cls, data: Any) -> MwwStore:
        if not isinstance(data, Mapping) or not _text(data.get("name")):
            raise _fail("store", "name")
        return cls(
            id=_text(data.get("id")),
            name=_text(data.get("name")),
            region_code=_text(data.get("region_code")).upper()[:2],
            currency=_text(data.get("currency")) or "EUR",
            prices_include_tax=bool(data.get("prices_include_tax", True)),
            version=_text(data.get("version")),
            business_models=_text(data.get("available_business_models")).upper() or "ALL",
        )


@dataclass(frozen=True)
class MwwOrderStatus:
    id: int
    description: str
    credit_order: bool

    @classmethod
    def from_api(cls, data: Any) -> MwwOrderStatus:
        if not isinstance(data, Mapping):
            raise _fail("order status", "status")
        return cls(
            id=_int_of(data.get("status"), what="order status", field="status"),
            description=_text(data.get("description")),
            credit_order=bool(data.get("credit_order")),
        )


@dataclass(frozen=True)
class MwwTaxRegion:
    """A shop tax region (`tax-policy/regions`); rates are fractions 0..1 in the API, percentages here."""

    region_code: str
    tax_enabled: bool
    tax_rate: Decimal | None
    override_rates: tuple[Decimal, ...]

    @classmethod
    def from_api(cls, data: Any) -> MwwTaxRegion:
        if not isinstance(data, Mapping) or not _text(data.get("regionCode")):
            raise _fail("tax region", "regionCode")
        what = f"tax region {data.get('regionCode')}"
        rate = _optional_decimal(data.get("taxRate"), what=what, field="taxRate")
        overrides = tuple(
            decimal_of(o.get("taxRate"), what=what, field="overrides.taxRate") * 100
            for o in _as_list(data.get("overrides"))
            if isinstance(o, Mapping) and o.get("taxRate") is not None
        )
        return cls(
            region_code=_text(data["regionCode"]).upper()[:2],
            tax_enabled=bool(data.get("taxEnabled", True)),
            tax_rate=None if rate is None else rate * 100,
            override_rates=overrides,
        )
