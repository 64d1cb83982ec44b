"""Seed data of the sandbox Mijnwebwinkel: demo tokens, shops, order statuses and orders built to add up.

Orders are built from (amount including VAT, rate) parts, the way the shop computes them: a line's `amount` is the
amount excluding VAT to 6 decimals, `amount_including_tax` has 2, `price.tax` holds the VAT per rate and
`price.total` is the sum of the lines' amounts including VAT. Some orders are rendered in the live API's awkward
shapes (numbers and amounts as strings, one `price.tax` object, an empty shipping country list).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SANDBOX_PARTNER_TOKEN = "sandbox-partner-token-0001"  # noqa: S105 - public demo value
SANDBOX_SHOP_TOKEN = "sandbox-shop-token-theepot-0001"  # noqa: S105 - public demo value
SANDBOX_SECOND_SHOP_TOKEN = "sandbox-shop-token-fietsen-0002"  # noqa: S105 - public demo value
SANDBOX_WRONG_PARTNER_TOKEN = "sandbox-shop-token-other-partner-0003"  # noqa: S105 - made for another partner
SANDBOX_NO_API_TOKEN = "sandbox-shop-token-basic-plan-0004"  # noqa: S105 - a plan without API access

MICRO = Decimal("0.000001")
CENT = Decimal("0.01")

# The platform's statuses (ids are the sandbox's own; the gateway never hard-codes them).
ORDER_STATUSES: tuple[tuple[int, str, str, bool], ...] = (
    (1, "In behandeling", "Pending", False),
    (2, "Betaald", "Paid", False),
    (3, "Verzonden", "Shipped", False),
    (4, "Afgehaald", "Picked up", False),
    (5, "Geannuleerd", "Cancelled", False),
    (6, "Afgehaald en betaald", "Picked up and paid", False),
    (10, "Creditorder", "Credit order", True),
    (11, "Creditorder terugbetaald", "Credit order refunded", True),
)


@dataclass(frozen=True)
class Line:
    """One order line: `parts` are (amount including VAT for the whole line, VAT rate) pairs."""

    type: str
    description: str
    parts: tuple[tuple[str, str], ...]
    quantity: int = 1
    sku: str | None = None
    article_id: int | None = None


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    country: str
    city: str
    company: str = ""
    taxnumber: str = ""


@dataclass
class SandboxOrder:
    """An order as the sandbox keeps it; `render()` gives the API's JSON."""

    number: int
    date: date
    time: str
    status: int
    status_changed: str  # "yyyy-mm-dd hh:mm:ss", shop time
    customer: Customer
    lines: tuple[Line, ...]
    business_model: str = "B2C"
    tax_region: str = "NL"
    tax_strategy: str = ""
    credited_order_number: int | None = None
    credit_order_numbers: list[int] = field(default_factory=list)
    live_shape: bool = False
    no_shipping_country: bool = False

    def totals(self) -> tuple[Decimal, dict[Decimal, Decimal]]:
        """(total including VAT, VAT per rate), computed from the lines as the shop does."""
        incl: dict[Decimal, Decimal] = {}
        excl: dict[Decimal, Decimal] = {}
        for line in self.lines:
            for amount, rate in line.parts:
                r = Decimal(rate)
                incl[r] = incl.get(r, Decimal(0)) + Decimal(amount)
                excl[r] = excl.get(r, Decimal(0)) + excluding(amount, rate)
        vat = {r: (incl[r] - excl[r]).quantize(CENT, rounding=ROUND_HALF_UP) for r in incl}
        return sum(incl.values(), Decimal(0)), vat

    def render(self) -> dict[str, Any]:
        total, vat = self.totals()
        number: Any = str(self.number) if self.live_shape else self.number
        tax = [_num({"amount": v, "rate": r.quantize(CENT)}, self.live_shape) for r, v in sorted(vat.items())]
        country: Any = (
            [] if self.no_shipping_country else {"description": self.customer.country, "isocode": self.customer.country}
        )
        day, clock = self.status_changed.split(" ")
        return {
            "number": number,
            "uuid": f"5a4d0000-0000-4000-8000-{self.number:012d}",
            "date": self.date.isoformat(),
            "time": self.time,
            "status": str(self.status) if self.live_shape else self.status,
            "status_changed_date": day,
            "status_changed_time": clock,
            "archived": False,
            "finished": True,
            "taxed": "include",
            "locale": "nl_NL",
            "currency": "EUR",
            "business_model": self.business_model,
            **({"reference": f"PO-{self.number}"} if self.business_model == "B2B" else {}),
            "tax_region": self.tax_region,
            "tax_strategy": self.tax_strategy,
            "credited_order_number": self.credited_order_number or 0,
            "credit_order_numbers": list(self.credit_order_numbers),
            "debtor": _debtor(self.customer),
            "price": {
                "tax": tax[0] if self.live_shape and len(tax) == 1 else tax,
                "total": str(total) if self.live_shape else float(total),
            },
            "orderlines": [_line(self.number, i, line, self.live_shape) for i, line in enumerate(self.lines)],
            "shipping": [{"country": country}],
        }


def excluding(amount_including: str, rate: str) -> Decimal:
    return (Decimal(amount_including) / (1 + Decimal(rate) / 100)).quantize(MICRO, rounding=ROUND_HALF_UP)


def _num(values: dict[str, Decimal], as_string: bool) -> dict[str, Any]:
    return {k: str(v) if as_string else float(v) for k, v in values.items()}


def _tax_price(amount: str, rate: str, as_string: bool) -> dict[str, Any]:
    values = {
        "amount": excluding(amount, rate),
        "amount_including_tax": Decimal(amount).quantize(CENT),
        "rate": Decimal(rate).quantize(CENT),
    }
    return _num(values, as_string)


def _line(number: int, index: int, line: Line, as_string: bool) -> dict[str, Any]:
    prices = [_tax_price(amount, rate, as_string) for amount, rate in line.parts]
    data: dict[str, Any] = {
        "id": f"0b7e0000-0000-4000-9000-{number:08d}{index:04d}",
        "type": line.type,
        "quantity": str(line.quantity) if as_string else line.quantity,
        "weight": 0,
        "description": line.description,
        "price": prices[0] if len(prices) == 1 else prices,
    }
    if line.type == "article":
        article: dict[str, Any] = {"id": line.article_id or 100 + index, "description": line.description}
        if line.sku is not None:
            article["sku"] = line.sku
        amount, rate = line.parts[0]
        unit = (excluding(amount, rate) / line.quantity).quantize(MICRO, rounding=ROUND_HALF_UP)
        article["price"] = _num({"amount": unit, "rate": Decimal(rate).quantize(CENT)}, as_string)
        data["articles"] = [article]
    return data


def _debtor(c: Customer) -> dict[str, Any]:
    invoice = {
        "name": c.name,
        "company": c.company,
        "street": "Voorbeeldstraat",
        "number": "12",
        "zipcode": "1234 AB" if c.country == "NL" else "10115",
        "city": c.city,
        "country_code": c.country,
        "phone": "",
        **({"taxnumber": c.taxnumber} if c.taxnumber else {}),
    }
    return {"email": c.email, "address": {"invoice": invoice}}


def _stamp(day: date, clock: str) -> str:
    return f"{day.isoformat()} {clock}"


DOMESTIC_LINES = (
    Line("article", "Theepot Blauw", (("48.40", "21"),), 2, "POT-BLUE", 11),
    Line("article", "Losse thee Earl Grey", (("13.08", "9"),), 3, "TEA-EG", 12),
    Line("shipping", "Verzendkosten", (("4.95", "21"),)),
)
EVERY_LINE_TYPE = (
    Line("article", "Theeglas (zonder artikelnummer)", (("17.85", "21"),), 3, None, 13),
    Line("article", "Kookboek Thee", (("24.95", "9"),), 1, "", 14),
    Line("custom", "Cadeauverpakking", (("2.50", "21"),)),
    Line("payment", "Transactiekosten iDEAL", (("0.21", "9"), ("0.79", "21"))),
    Line("discount", "Korting WINTER10", (("-2.49", "9"), ("-2.04", "21"))),
    Line("shipping", "Verzendkosten", (("6.95", "21"),)),
)
REVERSE_CHARGE_LINES = (
    Line("article", "Theepot Blauw", (("80.00", "0"),), 4, "POT-BLUE", 11),
    Line("shipping", "Verzendkosten", (("9.50", "0"),)),
)
EXPORT_LINES = (
    Line("article", "Theepot Groen", (("32.00", "0"),), 1, "POT-GREEN", 15),
    Line("shipping", "International shipping", (("19.95", "0"),)),
)
OSS_DE_LINES = (
    Line("article", "Theepot Blauw", (("23.80", "19"),), 1, "POT-BLUE", 11),
    Line("article", "Losse thee Sencha", (("5.35", "7"),), 1, "TEA-SEN", 16),
    Line("shipping", "Versand", (("5.95", "19"),)),
)
OSS_BE_LINES = (
    Line("article", "Theepot Groen", (("36.30", "21"),), 1, "POT-GREEN", 15),
    Line("shipping", "Verzendkosten", (("7.95", "21"),)),
)
OSS_FR_LINES = (
    Line("article", "Théière bleue", (("24.00", "20"),), 1, "POT-BLUE", 11),
    Line("article", "Thé vert", (("10.55", "5.5"),), 1, "TEA-GRN", 17),
    Line("shipping", "Livraison", (("8.40", "20"),)),
)
CREDIT_LINES = (Line("article", "Theepot Blauw (retour)", (("-24.20", "21"),), 1, "POT-BLUE", 11),)
PENDING_LINES = (
    Line("article", "Losse thee Earl Grey", (("8.72", "9"),), 2, "TEA-EG", 12),
    Line("shipping", "Verzendkosten", (("4.95", "21"),)),
)

B2B_BE: dict[str, Any] = {"business_model": "B2B", "tax_region": "BE", "tax_strategy": "reverse_charged_vat"}
JAN = Customer("Jan Jansen", "jan@example.nl", "NL", "Utrecht")
PIET = Customer("Piet de Vries", "piet@example.nl", "NL", "Leiden")
PEETERS = Customer("Marie Peeters", "inkoop@theehuis.be", "BE", "Antwerpen", "Theehuis Peeters BVBA", "BE0123456749")
SMITH = Customer("John Smith", "john@example.com", "US", "Boston")
SCHMIDT = Customer("Anna Schmidt", "anna@example.de", "DE", "Berlin")
JANSSENS = Customer("Luc Janssens", "luc@example.be", "BE", "Gent")
MARTIN = Customer("Claire Martin", "claire@example.fr", "FR", "Lille")
BAKKER = Customer("Sanne Bakker", "sanne@example.nl", "NL", "Zwolle")


def demo_orders(today: date) -> list[SandboxOrder]:
    """The demo shop's orders: every line type, multi-rate VAT, reverse charge, export, OSS, a credit order."""

    def at(days_ago: int, clock: str) -> str:
        return _stamp(today - timedelta(days=days_ago), clock)

    def day(days_ago: int) -> date:
        return today - timedelta(days=days_ago)

    return [
        SandboxOrder(1001, day(10), "10:15:00", 3, at(9, "09:00:00"), JAN, DOMESTIC_LINES, credit_order_numbers=[1008]),
        SandboxOrder(1002, day(9), "11:02:13", 2, at(9, "11:05:00"), PIET, EVERY_LINE_TYPE),
        SandboxOrder(1003, day(8), "14:40:00", 2, at(8, "15:00:00"), PEETERS, REVERSE_CHARGE_LINES, **B2B_BE),
        SandboxOrder(
            1004,
            day(7),
            "08:12:00",
            3,
            at(6, "10:00:00"),
            SMITH,
            EXPORT_LINES,
            tax_region="US",
            tax_strategy="zero_percent",
        ),
        SandboxOrder(
            1005,
            day(6),
            "19:30:00",
            2,
            at(6, "19:31:00"),
            SCHMIDT,
            OSS_DE_LINES,
            tax_region="DE",
            live_shape=True,
            no_shipping_country=True,
        ),
        SandboxOrder(
            1006, day(5), "12:00:00", 2, at(5, "12:03:00"), JANSSENS, OSS_BE_LINES, tax_region="BE", live_shape=True
        ),
        SandboxOrder(1007, day(4), "16:45:00", 3, at(3, "09:30:00"), MARTIN, OSS_FR_LINES, tax_region="FR"),
        SandboxOrder(1008, day(3), "10:00:00", 10, at(3, "10:00:00"), JAN, CREDIT_LINES, credited_order_number=1001),
        SandboxOrder(1009, day(2), "09:10:00", 1, at(2, "09:10:00"), BAKKER, PENDING_LINES, live_shape=True),
    ]


def second_shop_orders(today: date) -> list[SandboxOrder]:
    customer = Customer("Kees Visser", "kees@example.nl", "NL", "Groningen")
    lines = (
        Line("article", "Fietsbel", (("12.10", "21"),), 1, "BELL-1", 1),
        Line("shipping", "Verzendkosten", (("3.95", "21"),)),
    )
    day = today - timedelta(days=3)
    return [SandboxOrder(501, day, "13:00:00", 2, _stamp(day, "13:10:00"), customer, lines)]


# Orders created from the sandbox page: template name -> (label, lines, customer, order attributes).
NEW_ORDER_TEMPLATES: dict[str, tuple[str, tuple[Line, ...], Customer, dict[str, Any]]] = {
    "domestic": ("Binnenland, 21% en 9%", DOMESTIC_LINES, JAN, {}),
    "every_line_type": ("Alle regelsoorten, gesplitste btw", EVERY_LINE_TYPE, PIET, {}),
    "reverse_charge": ("B2B België, btw verlegd", REVERSE_CHARGE_LINES, PEETERS, B2B_BE),
    "export": ("Export buiten de EU", EXPORT_LINES, SMITH, {"tax_region": "US", "tax_strategy": "zero_percent"}),
    "oss_de": ("OSS Duitsland 19% en 7%", OSS_DE_LINES, SCHMIDT, {"tax_region": "DE", "live_shape": True}),
    "oss_fr": ("OSS Frankrijk 20% en 5,5%", OSS_FR_LINES, MARTIN, {"tax_region": "FR"}),
}


@dataclass
class SandboxShop:
    token: str
    partner_token: str
    api_access: bool
    store: dict[str, Any]
    orders: dict[int, SandboxOrder]


def seeded_shops(today: date) -> dict[str, SandboxShop]:
    """The sandbox's shops by token: two working shops, one made for another partner, one without API access."""

    def store(name: str, region: str, version: str) -> dict[str, Any]:
        slug = name.lower().replace(" ", "")
        return {
            "id": f"7e57ab1e-0000-4000-8000-{zlib.crc32(slug.encode()):012d}",
            "name": name,
            "primary_domain": f"https://www.{slug}.example",
            "open": True,
            "version": version,
            "currency": "EUR",
            "prices_include_tax": True,
            "available_business_models": "ALL",
            "region_code": region,
        }

    return {
        SANDBOX_SHOP_TOKEN: SandboxShop(
            SANDBOX_SHOP_TOKEN,
            SANDBOX_PARTNER_TOKEN,
            True,
            store("De Theepot", "NL", "Premium"),
            {o.number: o for o in demo_orders(today)},
        ),
        SANDBOX_SECOND_SHOP_TOKEN: SandboxShop(
            SANDBOX_SECOND_SHOP_TOKEN,
            SANDBOX_PARTNER_TOKEN,
            True,
            store("Fietsen Visser", "NL", "Premium"),
            {o.number: o for o in second_shop_orders(today)},
        ),
        SANDBOX_WRONG_PARTNER_TOKEN: SandboxShop(
            SANDBOX_WRONG_PARTNER_TOKEN, "another-partner", True, store("Andere Partner", "NL", "Premium"), {}
        ),
        SANDBOX_NO_API_TOKEN: SandboxShop(
            SANDBOX_NO_API_TOKEN, SANDBOX_PARTNER_TOKEN, False, store("Basis Winkel", "NL", "Basic"), {}
        ),
    }
