from decimal import Decimal

import pytest

from gateway.clients.mijnwebwinkel_models import MwwOrder, MwwTaxRegion
from gateway.vat import categories_from_regions, describe_category, order_categories, rate_text, vat_category
from tests.support.environment import load_payload


def order(name: str, **changes: object) -> MwwOrder:
    data = load_payload(f"order_{name}")
    data.update(changes)
    return MwwOrder.from_api(data)


@pytest.mark.parametrize(
    ("payload", "mode", "expected"),
    [
        pytest.param("domestic", "webshop_country", ["NL-21", "NL-9"], id="domestic-rates"),
        pytest.param("domestic", "oss", ["NL-21", "NL-9"], id="domestic-rates-under-oss"),
        pytest.param("b2b_reverse_charge", "oss", ["EU-B2B"], id="reverse-charge"),
        pytest.param("b2b_reverse_charge", "webshop_country", ["EU-B2B"], id="reverse-charge-old-rules"),
        pytest.param("export", "oss", ["EXPORT"], id="export"),
        pytest.param("oss_de", "oss", ["OSS-DE-19", "OSS-DE-7"], id="oss-germany"),
        pytest.param("oss_fr", "oss", ["OSS-FR-5.5", "OSS-FR-20"], id="oss-france-fractional-rate"),
        pytest.param("oss_be", "oss", ["OSS-BE-21", "OSS-BE-6"], id="oss-belgium"),
        pytest.param("oss_de", "webshop_country", ["NL-19", "NL-7"], id="foreign-rates-without-oss"),
        pytest.param("eu_consumer_home_rates", "oss", ["NL-21"], id="eu-consumer-charged-home-vat"),
        pytest.param("live_shape", "webshop_country", ["NL-21", "NL-9"], id="live-shape"),
    ],
)
def test_order_categories_follow_the_shops_tax_decision(payload: str, mode: str, expected: list[str]) -> None:
    assert order_categories(order(payload), home_country="NL", eu_consumer_vat=mode) == expected


def test_zero_rate_outside_the_eu_is_export_even_without_a_tax_strategy() -> None:
    export = order("export", tax_strategy="", tax_region="")
    assert vat_category(export, Decimal(0), home_country="NL", eu_consumer_vat="oss") == "EXPORT"


def test_zero_rate_b2b_to_another_eu_country_is_reverse_charge_without_a_tax_strategy() -> None:
    b2b = order("b2b_reverse_charge", tax_strategy="", tax_region="")
    assert vat_category(b2b, Decimal(0), home_country="NL", eu_consumer_vat="webshop_country") == "EU-B2B"


def test_zero_rate_domestic_sale_is_the_domestic_zero_category() -> None:
    domestic = order("domestic")
    assert vat_category(domestic, Decimal("0.00"), home_country="NL", eu_consumer_vat="oss") == "NL-0"


def test_home_country_comes_from_the_integration() -> None:
    belgian_shop = order("oss_be", tax_region="BE")
    assert order_categories(belgian_shop, home_country="BE", eu_consumer_vat="oss") == ["BE-21", "BE-6"]


@pytest.mark.parametrize(
    ("rate", "text"),
    [("21.00", "21"), ("5.50", "5.5"), ("0.00", "0"), ("10", "10"), ("9", "9")],
)
def test_rates_are_written_without_trailing_zeros(rate: str, text: str) -> None:
    assert rate_text(Decimal(rate)) == text


def test_categories_from_regions_lists_home_rates_oss_rates_and_the_fixed_ones() -> None:
    regions = [
        MwwTaxRegion.from_api(
            {"regionCode": "NL", "taxEnabled": True, "taxRate": "0.21", "overrides": [{"taxRate": 0.09}]}
        ),
        MwwTaxRegion.from_api(
            {"regionCode": "DE", "taxEnabled": True, "taxRate": 0.19, "overrides": [{"taxRate": 0.07}]}
        ),
        MwwTaxRegion.from_api({"regionCode": "CH", "taxEnabled": True, "taxRate": 0.081}),
    ]
    with_oss = categories_from_regions(regions, home_country="NL", eu_consumer_vat="oss")
    without = categories_from_regions(regions, home_country="NL", eu_consumer_vat="webshop_country")
    assert {"NL-21", "NL-9", "NL-0", "EU-B2B", "EXPORT", "OSS-DE-19", "OSS-DE-7"} == set(with_oss)
    # Under the webshop country's VAT, Germany's 19 and 7 % are no Dutch rates: no "NL 19 %" to map.
    assert {"NL-21", "NL-9", "NL-0", "EU-B2B", "EXPORT"} == set(without)
    assert with_oss.index("NL-21") < with_oss.index("OSS-DE-19") < with_oss.index("EU-B2B")


@pytest.mark.parametrize(
    ("category", "words"),
    [
        ("NL-21", "NL 21 %"),
        ("OSS-FR-5.5", "OSS FR 5.5 %"),
        ("EU-B2B", "EU B2B (reverse charge)"),
        ("EXPORT", "Export outside the EU"),
    ],
)
def test_categories_are_described_in_words(category: str, words: str) -> None:
    assert describe_category(category) == words
