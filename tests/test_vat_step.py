"""The VAT step asks only what matters, pre-answered: the categories the shop can produce under its EU rule, each
filled with the administration's best VAT code and revenue account; a category can be "not used", and an order that
needs it later is refused with a sentence that says so; switching the EU rule re-renders the list without errors."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from starlette.testclient import TestClient

from gateway.booking import VAT_NOT_USED, BookingError, plan_booking
from gateway.booking_reasons import failure_message
from gateway.clients.exact import ExactGLAccount, ExactVatCode
from gateway.clients.mijnwebwinkel_models import MwwOrder, MwwStore, MwwTaxRegion
from gateway.i18n import translate
from gateway.setup_forms import suggest_gl_account, suggest_vat_code
from gateway.store.integrations import NOT_USED, IntegrationSettings, VatMapping
from gateway.vat import categories_from_regions
from tests.support.environment import load_payload
from tests.support.pages import connect_exact, connect_shop, sign_up, submit


def vat(code: str, description: str, rate: str, *, listing: str = "N", oss: str = "", **extra: object) -> ExactVatCode:
    values = {
        "code": code,
        "description": description,
        "percentage": Decimal(rate),
        "type": "B" if rate == "0" else "E",
        "transaction_type": "S",
        "is_blocked": False,
        "oss_country": oss,
        "eu_sales_listing": listing,
        "charged": False,
    }
    values.update(extra)
    return ExactVatCode(**values)  # type: ignore[arg-type]


# A Dutch administration as Exact sets it up: 0 % first, export and ICP further down, a blocked old code.
CODES = [
    vat("0", "0% BTW", "0"),
    vat("1", "BTW verkopen laag 9%", "0.09"),
    vat("2", "BTW verkopen hoog 21%", "0.21"),
    vat("4", "Verkopen verlegd binnen de EU (ICP goederen)", "0", listing="L", charged=True),
    vat("6", "Export buiten de EU", "0"),
    vat("7", "BTW hoog 19% (oud)", "0.19", is_blocked=True),
    vat("11", "BTW inkopen hoog 21%", "0.21", transaction_type="P"),
    vat("D1", "OSS Duitsland 19%", "0.19", oss="DE"),
]
ACCOUNTS = [
    ExactGLAccount("a", "1300", "Debiteuren", 20, False),
    ExactGLAccount("b", "8000", "Omzet hoog tarief", 110, False),
    ExactGLAccount("c", "8010", "Omzet laag tarief", 110, False),
    ExactGLAccount("d", "8020", "Omzet 0% / export buiten de EU", 110, False),
    ExactGLAccount("e", "8030", "Omzet intracommunautaire leveringen", 110, False),
    ExactGLAccount("f", "8040", "Omzet OSS (Unieregeling)", 110, False),
]


@pytest.mark.parametrize(
    ("category", "code", "account"),
    [
        pytest.param("NL-21", "2", "8000", id="high-rate"),
        pytest.param("NL-9", "1", "8010", id="low-rate"),
        pytest.param("EXPORT", "6", "8020", id="export-not-the-plain-0-code"),
        pytest.param("EU-B2B", "4", "8030", id="intra-eu-by-its-icp-listing"),
        pytest.param("OSS-DE-19", "D1", "8040", id="oss-by-country"),
        pytest.param("NL-19", "", "8000", id="no-code-for-a-rate-the-administration-lacks"),
        pytest.param("OSS-BE-6", "", "8040", id="no-oss-code-for-belgium"),
    ],
)
def test_each_category_is_pre_filled_with_the_best_match(category: str, code: str, account: str) -> None:
    assert suggest_vat_code(category, CODES) == code
    assert suggest_gl_account(category, ACCOUNTS) == account


def test_an_order_in_a_category_marked_not_used_is_refused_readably() -> None:
    order = MwwOrder.from_api(load_payload("order_domestic"))
    mappings = {
        "NL-21": VatMapping("NL-21", NOT_USED, None, False),
        "NL-9": VatMapping("NL-9", NOT_USED, None, False),
    }
    with pytest.raises(BookingError) as refused:
        plan_booking(order, IntegrationSettings(journal_code="70"), mappings, home_country="NL")
    assert refused.value.kind == VAT_NOT_USED
    message = failure_message(refused.value.kind, refused.value.params, str(refused.value))
    assert "which you marked as not used" in translate("en", message)
    assert "die je als niet gebruikt hebt gemarkeerd" in translate("nl", message)


def selected(page: str, name: str) -> str:
    field = page.split(f'name="{name}"')[1].split("</select>")[0]
    found = re.search(r'value="([^"]*)" selected', field)
    return found.group(1) if found else ""


def test_the_step_lists_only_the_shops_categories_pre_filled_and_switching_re_renders(wizard: TestClient) -> None:
    shop = sign_up(wizard)
    connect_shop(wizard, shop)
    connect_exact(wizard, shop)
    base = f"/integrations/{shop}/setup"
    submit(wizard, f"{base}/administration", {"division": "123456"})
    page = wizard.get(f"{base}/vat").text
    # The shop has VAT rates for Belgium, Germany and France: it charges the customer's VAT, so OSS is pre-answered.
    assert 'value="oss" checked' in page
    oss = re.findall(r'name="vat_(OSS-[A-Z0-9.-]+)"', page)
    assert set(oss) == {"OSS-BE-21", "OSS-BE-6", "OSS-DE-19", "OSS-DE-7", "OSS-FR-20", "OSS-FR-5.5"}
    assert selected(page, "vat_OSS-DE-19") == "D1"
    assert selected(page, "vat_NL-21") == "2"
    assert selected(page, "gl_NL-21") == "8000"
    assert selected(page, "vat_EXPORT") == "6"
    assert selected(page, "vat_EU-B2B") == "4"
    assert selected(page, "gl_EU-B2B") == "8030"

    switched = submit(wizard, f"{base}/vat", {"eu_consumer_vat": "webshop_country", "shown_mode": "oss"})
    assert switched.status_code == 200  # re-rendered, no error storm
    assert "error-summary" not in switched.text
    categories = re.findall(r'name="vat_([A-Z0-9.-]+)"', switched.text)
    assert categories == ["NL-21", "NL-9", "NL-0", "EU-B2B", "EXPORT"]  # no "NL 19 %" from Germany's region

    answers = {"eu_consumer_vat": "oss", "shown_mode": "oss", "oss_revenue_account": "8040"}
    for name in re.findall(r'<select id="f-[^"]+" name="((?:vat|gl)_[^"]+)"', page):
        answers[name] = selected(page, name)
    answers["vat_NL-0"] = NOT_USED  # the one change the owner makes: the shop never sells at 0 % at home
    saved = submit(wizard, f"{base}/vat", answers)
    assert saved.status_code == 303, saved.text


def test_a_consumer_only_shop_gets_no_eu_business_category() -> None:
    regions = [MwwTaxRegion.from_api({"regionCode": "NL", "taxEnabled": True, "taxRate": 0.21})]
    consumers = categories_from_regions(regions, home_country="NL", eu_consumer_vat="oss", business_models="B2C")
    everyone = categories_from_regions(regions, home_country="NL", eu_consumer_vat="oss", business_models="ALL")
    assert "EU-B2B" not in consumers
    assert "EU-B2B" in everyone
    store = MwwStore.from_api({"name": "De Theepot", "available_business_models": "b2c"})
    assert store.business_models == "B2C"
    assert MwwStore.from_api({"name": "De Theepot"}).business_models == "ALL"
