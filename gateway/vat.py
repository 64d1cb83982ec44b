"""VAT categories: the gateway's names for the kinds of VAT a shop order carries; pure, no I/O.

Mijnwebwinkel has no named VAT categories, only a rate per order line plus the order's `tax_strategy`,
`tax_region` and addresses (docs/booking.md). The gateway derives one category per line rate:

  "NL-21", "NL-9", "NL-0"   domestic rates of the webshop's country (also EU consumer sales under the old rules)
  "EU-B2B"                   B2B sale to another EU country, VAT reverse charged (0 %)
  "EXPORT"                   sale across the EU border (0 %)
  "OSS-DE-19"                EU consumer sale taxed in the destination country (One-Stop-Shop), per country and rate

The customer maps each category to an Exact VAT code and a revenue account (store.integrations.vat_mapping).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from gateway.clients.mijnwebwinkel_models import MwwOrder, MwwTaxRegion

# The 27 member states by ISO 3166 code (Greece is GR here, EL only in VAT numbers).
EU_COUNTRIES = frozenset(
    ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU")
    + ("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")
)
EU_B2B = "EU-B2B"
EXPORT = "EXPORT"
OSS_PREFIX = "OSS-"
EU_VAT_WEBSHOP_COUNTRY = "webshop_country"
EU_VAT_OSS = "oss"
# Mijnwebwinkel `tax_strategy` values (openapi "Tax rules"): the shop decided the order carries 0 % VAT.
REVERSE_CHARGED = "reverse_charged_vat"
ZERO_PERCENT = "zero_percent"
DEFAULT_HOME_COUNTRY = "NL"


def rate_text(rate: Decimal) -> str:
    """A rate as it appears in a category: 21.00 → "21", 5.50 → "5.5", 0 → "0"."""
    text = format(rate.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def domestic_category(country: str, rate: Decimal) -> str:
    return f"{country.upper()}-{rate_text(rate)}"


def oss_category(country: str, rate: Decimal) -> str:
    return f"{OSS_PREFIX}{country.upper()}-{rate_text(rate)}"


def is_oss(category: str) -> bool:
    return category.startswith(OSS_PREFIX)


def vat_category(order: MwwOrder, rate: Decimal, *, home_country: str, eu_consumer_vat: str) -> str:
    """The category of one line rate of `order`: from the rate actually charged and the destination.

    A 0 % line is reverse charge or export when the shop's `tax_strategy` says so; without one, a 0 % line to outside
    the EU is export and a 0 % B2B line with a VAT number to another EU country is EU B2B. A line that charges VAT is
    never put in a 0 % category, whatever the strategy: VAT the shop charged in a country outside the EU (its
    `tax_region`, where the goods go) is that country's category ("GB-20"); EU consumer sales to another country are
    OSS categories when the shop uses OSS; everything else is a domestic rate.
    """
    home = (home_country or DEFAULT_HOME_COUNTRY).upper()
    destination = order.destination_country or home
    if rate == 0:
        zero = _zero_rate_category(order, home, destination)
        if zero:
            return zero
    taxed_in = order.tax_region or destination
    if rate and taxed_in == destination and destination not in EU_COUNTRIES and home in EU_COUNTRIES:
        return domestic_category(destination, rate)  # VAT of the country outside the EU (UK VAT on a sale to GB)
    if eu_consumer_vat == EU_VAT_OSS and taxed_in != home and taxed_in in EU_COUNTRIES:
        return oss_category(taxed_in, rate)
    return domestic_category(home, rate)


def _zero_rate_category(order: MwwOrder, home: str, destination: str) -> str:
    """The category of a 0 % line, or "" for a domestic 0 % rate. The shop's strategy only chooses among the 0 %
    categories: a line that charges VAT is never export or reverse charge (booking.check_vat_strategy refuses an
    order whose strategy and VAT disagree)."""
    if order.tax_strategy == REVERSE_CHARGED:
        return EU_B2B
    if order.tax_strategy == ZERO_PERCENT:
        return EXPORT
    if destination == home:
        return ""
    if destination not in EU_COUNTRIES and home in EU_COUNTRIES:
        return EXPORT
    if order.business_model == "B2B" and order.invoice_address.taxnumber and destination in EU_COUNTRIES:
        return EU_B2B
    return ""


def order_categories(order: MwwOrder, *, home_country: str, eu_consumer_vat: str) -> list[str]:
    """Every category the order's lines use, in first-seen order."""
    seen: dict[str, None] = {}
    for line in order.lines:
        for price in line.prices:
            category = vat_category(order, price.rate, home_country=home_country, eu_consumer_vat=eu_consumer_vat)
            seen.setdefault(category, None)
    return list(seen)


def categories_from_regions(
    regions: Iterable[MwwTaxRegion], *, home_country: str, eu_consumer_vat: str, business_models: str = "ALL"
) -> list[str]:
    """The categories a shop can produce, from its `tax-policy/regions`, so the settings page forgets none.

    Always lists the domestic 0 % rate and export, which any EU shop can meet without a region for them, and EU B2B
    unless the shop sells to consumers only (Store.available_business_models B2C).
    """
    home = (home_country or DEFAULT_HOME_COUNTRY).upper()
    found = {domestic_category(home, Decimal(0)), EXPORT}
    if business_models.upper() != "B2C":
        found.add(EU_B2B)
    for region in regions:
        rates = [r for r in (region.tax_rate, *region.override_rates) if r is not None]
        if not region.tax_enabled:
            rates = [Decimal(0)]
        for rate in rates:
            if region.region_code == home:
                found.add(domestic_category(home, rate))
            elif region.region_code in EU_COUNTRIES and eu_consumer_vat == EU_VAT_OSS:
                found.add(oss_category(region.region_code, rate))
            # Under the webshop country's VAT a foreign region's rates are not the shop's: "NL 19 %" exists nowhere.
    return sorted(found, key=_category_sort_key)


def _category_sort_key(category: str) -> tuple[int, str, Decimal]:
    if category in (EU_B2B, EXPORT):
        return (2, category, Decimal(0))
    group = 1 if is_oss(category) else 0
    prefix, _, rate = category.rpartition("-")
    try:
        return (group, prefix, -Decimal(rate))
    except ArithmeticError:
        return (group, category, Decimal(0))


def describe_category(category: str) -> str:
    """Words for a shop owner: "NL 21 %", "EU B2B (reverse charge)", "Export outside the EU", "OSS DE 19 %"."""
    if category == EU_B2B:
        return "EU B2B (reverse charge)"
    if category == EXPORT:
        return "Export outside the EU"
    prefix, _, rate = category.rpartition("-")
    if is_oss(category):
        return f"OSS {prefix.removeprefix(OSS_PREFIX)} {rate} %"
    return f"{prefix} {rate} %"
