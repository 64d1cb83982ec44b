"""The booking corpus: every shop order in tests/payloads/order_*.json under all four insertion types and both EU
consumer options, checked field by field against Exact's POST contract and total by total against the shop."""

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from gateway import booking
from gateway.booking import BookingError, BookingPlan, gl_codes_needed, items_needed, plan_booking
from gateway.booking_amounts import reconcile_vat, share_cents, unit_prices
from gateway.booking_documents import (
    Document,
    ExactRefs,
    build_document,
    document_amounts,
    finalize_payload,
    line_amount,
    line_vat,
    summarize,
)
from gateway.clients.mijnwebwinkel_models import MwwOrder
from gateway.store.integrations import IntegrationSettings, VatMapping
from tests.support.corpus import ORDER_CORPUS, expected_failure
from tests.support.environment import load_payload
from tests.support.exact_contract import CONTRACTS

CENT = Decimal("0.01")
WAREHOUSE = "5f0b8c1e-0000-4000-8000-000000000001"
TYPES = ("sales_entry", "sales_invoice", "sales_order", "direct_sales_invoice")
MODES = ("webshop_country", "oss")
# category → (VAT code, revenue account code, rate of the code)
MAPPED = {
    "NL-21": ("VH", "8000", "21"),
    "NL-9": ("VL", "8010", "9"),
    "NL-0": ("V0", "8020", "0"),
    "EU-B2B": ("ICP", "8100", "0"),
    "EXPORT": ("EXP", "8200", "0"),
    "OSS-DE-19": ("D19", "", "19"),
    "OSS-DE-7": ("D7", "", "7"),
    "OSS-FR-20": ("F20", "", "20"),
    "OSS-FR-5.5": ("F5", "", "5.5"),
    "OSS-BE-21": ("B21", "8310", "21"),
    "OSS-BE-6": ("B6", "", "6"),
}
MARK = "5001/MW1"  # the PaymentReference every document carries (booking_documents.booking_mark)
RATE_OF_CODE = {code: Decimal(rate) for code, _, rate in MAPPED.values()}
MAPPINGS = {category: VatMapping(category, code, gl or None, True) for category, (code, gl, _) in MAPPED.items()}
SETTINGS = IntegrationSettings(
    journal_code="70",
    oss_revenue_account="8300",
    create_items=True,
    shipping_item="SHIP",
    costs_item="COSTS",
    discount_item="DISC",
    shipping_gl_account="8050",
    costs_gl_account="8060",
    discount_gl_account="8070",
    warehouse=WAREHOUSE,
    payment_condition="14",
)


def shop_order(name: str) -> MwwOrder:
    return MwwOrder.from_api(load_payload(f"order_{name}"))


def refs_for(plan: BookingPlan, settings: IntegrationSettings) -> ExactRefs:
    return ExactRefs(
        account_id="acc-0001",
        items={n.code: f"item-{n.code}" for n in items_needed(plan, settings)},
        gl_accounts={code: f"gl-{code}" for code in gl_codes_needed(plan, settings)},
        warehouse=WAREHOUSE if settings.insertion_type == "direct_sales_invoice" else "",
    )


def book(name: str, document_type: str, mode: str, **changes: Any) -> tuple[MwwOrder, BookingPlan, Document]:
    settings = SETTINGS.replace(insertion_type=document_type, eu_consumer_vat=mode, **changes)
    order = shop_order(name)
    plan = plan_booking(order, settings, MAPPINGS, home_country="NL", credited_reference="70260001")
    return order, plan, build_document(plan, settings, refs_for(plan, settings), mark=MARK)


def assert_contract(document: Document) -> None:
    """Only properties the entity accepts on POST, and every required one (see tests/support/exact_contract.py)."""
    assert CONTRACTS[document.entity].refusal(document.payload) is None
    for line in document.lines:
        assert CONTRACTS[document.line_entity].refusal(line, nested=True) is None


def vat_per_rate(document: Document) -> dict[Decimal, Decimal]:
    totals: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in document.lines:
        totals[RATE_OF_CODE[line["VATCode"]]] += line_vat(line)
    return dict(totals)


CASES = [
    pytest.param(name, document_type, mode, id=f"{name}-{document_type}-{mode}")
    for name in ORDER_CORPUS
    for document_type in TYPES
    for mode in MODES
]


@pytest.mark.parametrize(("name", "document_type", "mode"), CASES)
def test_corpus_books_to_the_cent_with_only_accepted_properties(name: str, document_type: str, mode: str) -> None:
    failure = expected_failure(name, document_type, mode)
    if failure is not None:
        with pytest.raises(BookingError) as caught:
            book(name, document_type, mode)
        assert caught.value.kind == failure
        return
    order, plan, document = book(name, document_type, mode)
    assert_contract(document)
    sign = Decimal(-1) if order.is_credit else Decimal(1)
    excl, vat = document_amounts(document)
    assert excl + vat == sign * abs(order.total)
    shop_vat = {tax.rate.normalize(): sign * abs(tax.amount) for tax in order.tax if tax.amount}
    assert {rate: amount for rate, amount in vat_per_rate(document).items() if amount} == shop_vat
    for line in document.lines:
        for field in ("AmountFC", "VATAmountFC", "VATAmount", "UnitPrice"):
            if field in line:
                assert line[field] == line[field].quantize(CENT), f"{field} has more than 2 decimals"
    payload = document.payload
    assert payload["YourRef"] == order.number
    assert payload["Currency"] == order.currency
    assert payload.get("Journal") == (None if document_type == "sales_order" else "70")


@pytest.mark.parametrize("document_type", ["sales_invoice", "sales_order", "direct_sales_invoice"])
def test_item_lines_keep_the_shops_quantities(document_type: str) -> None:
    order, _, document = book("domestic", document_type, "oss")
    booked: dict[str, Decimal] = defaultdict(Decimal)
    for line in document.lines:
        booked[line["Item"]] += line["Quantity"]
    for line in order.lines:
        if line.type == "article":
            assert booked[f"item-{line.sku}"] == line.quantity


def test_an_amount_that_does_not_divide_by_its_quantity_becomes_two_lines_of_the_same_item() -> None:
    _, plan, document = book("domestic", "sales_invoice", "oss")
    planned = next(line for line in plan.lines if line.sku == "MUG-1")
    assert planned.amount / 3 != (planned.amount / 3).quantize(CENT)  # 3 mugs for an amount that does not divide
    mugs = [line for line in document.lines if line["Item"] == "item-MUG-1"]
    low = (planned.amount / 3).quantize(CENT, rounding="ROUND_FLOOR")
    assert [line["UnitPrice"] for line in mugs] == [low, low + CENT]
    assert sum(line["Quantity"] for line in mugs) == 3
    assert sum(line_amount(line) for line in mugs) == planned.amount
    assert sum(line_vat(line) for line in mugs) == planned.vat


@pytest.mark.parametrize(
    ("quantity", "amount", "vat"),
    [("3", "10.00", "2.10"), ("-3", "-10.00", "-2.10"), ("7", "1.00", "0.21"), ("4", "-0.03", "0.00"), ("2", "5", "1")],
)
def test_unit_prices_always_add_up_to_the_line(quantity: str, amount: str, vat: str) -> None:
    parts = unit_prices(Decimal(quantity), Decimal(amount), Decimal(vat))
    assert sum(q * p for q, p, _ in parts) == Decimal(amount)
    assert sum(q for q, _, _ in parts) == Decimal(quantity)
    assert sum(v for _, _, v in parts) == Decimal(vat)
    assert all(p == p.quantize(CENT) for _, p, _ in parts)


@pytest.mark.parametrize(
    ("total", "weights"),
    [("-1.00", ["3", "3", "3"]), ("0.07", ["1", "2"]), ("-4.50", ["50.00", "0.01", "12.34"]), ("0", ["1"])],
)
def test_cent_shares_add_up_and_follow_the_weights(total: str, weights: list[str]) -> None:
    shares = share_cents(Decimal(total), [Decimal(w) for w in weights])
    assert sum(shares) == Decimal(total)
    assert all(s == s.quantize(CENT) for s in shares)
    exact = [Decimal(total) * Decimal(w) / sum(Decimal(x) for x in weights) for w in weights]
    assert all(abs(s - e) < CENT for s, e in zip(shares, exact, strict=True))


@pytest.mark.parametrize("name", ["domestic", "oss_fr"])
def test_sales_orders_carry_discounts_inside_their_lines_never_as_negative_lines(name: str) -> None:
    order, plan, document = book(name, "sales_order", "oss")
    assert any(line.type == "discount" for line in order.lines)
    assert all(line["Quantity"] > 0 and line["UnitPrice"] >= 0 and line["VATAmount"] >= 0 for line in document.lines)
    _, entry_plan, _ = book(name, "sales_entry", "oss")
    assert len(plan.lines) < len(entry_plan.lines)
    for rate in plan.vat_by_rate:
        assert sum(x.vat for x in plan.lines if x.rate.normalize() == rate) == plan.vat_by_rate[rate]


def test_a_discount_larger_than_its_category_cannot_be_a_sales_order() -> None:
    data = load_payload("order_domestic")
    data["orderlines"] = [
        {
            "id": "a",
            "type": "article",
            "quantity": 1,
            "description": "Mok",
            "articles": [{"sku": "MUG-1"}],
            "price": {"amount": "8.264463", "amount_including_tax": "10.00", "rate": "21.00"},
        },
        {
            "id": "b",
            "type": "article",
            "quantity": 1,
            "description": "Boek",
            "articles": [{"sku": "BOOK-7"}],
            "price": {"amount": "18.348624", "amount_including_tax": "20.00", "rate": "9.00"},
        },
        {
            "id": "c",
            "type": "discount",
            "quantity": 1,
            "description": "Korting",
            "price": {"amount": "-12.396694", "amount_including_tax": "-15.00", "rate": "21.00"},
        },
    ]
    data["price"] = {
        "tax": [{"rate": "21.00", "amount": "-0.87"}, {"rate": "9.00", "amount": "1.65"}],
        "total": "15.00",
    }
    with pytest.raises(BookingError) as caught:
        plan_booking(
            MwwOrder.from_api(data), SETTINGS.replace(insertion_type="sales_order"), MAPPINGS, home_country="NL"
        )
    assert (caught.value.kind, caught.value.attention) == (booking.NEGATIVE_SALES_ORDER, True)
    assert "15.00 discount at VAT category NL-21, more than it discounts" in str(caught.value)


def test_vat_rounding_residue_goes_to_the_largest_line_of_its_rate() -> None:
    data = load_payload("order_domestic")
    data["price"]["tax"] = [{"rate": "9.00", "amount": "2.38"}, {"rate": "21.00", "amount": "14.50"}]
    order = MwwOrder.from_api(data)
    vats, targets = reconcile_vat(order)
    natural = {(i, j): p.vat for i, line in enumerate(order.lines) for j, p in enumerate(line.prices)}
    changed = {key: vats[key] - natural[key] for key in vats if vats[key] != natural[key]}
    assert targets == {Decimal(9): Decimal("2.38"), Decimal(21): Decimal("14.50")}
    assert sum(changed.values()) == Decimal("2.38") + Decimal("14.50") - sum(natural.values())
    assert all(abs(delta) == CENT for delta in changed.values())
    assert (0, 0) in changed  # the T-shirts: the largest 21 % line


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param({"total": "112.26"}, "add up to 112.25 but the order total is 112.26", id="total"),
        pytest.param(
            {"tax": [{"rate": "21.00", "amount": "14.00"}, {"rate": "9.00", "amount": "2.37"}]}, "VAT at 21 %", id="vat"
        ),
        pytest.param(
            {
                "tax": [
                    {"rate": "21.00", "amount": "14.51"},
                    {"rate": "9.00", "amount": "2.37"},
                    {"rate": "6", "amount": "1"},
                ]
            },
            "no line has that rate",
            id="rate",
        ),
    ],
)
def test_a_shop_order_that_does_not_add_up_is_not_booked(change: dict[str, Any], words: str) -> None:
    data = load_payload("order_domestic")
    data["price"].update(change)
    with pytest.raises(BookingError) as caught:
        plan_booking(MwwOrder.from_api(data), SETTINGS, MAPPINGS, home_country="NL")
    assert caught.value.kind == booking.TOTALS_MISMATCH
    assert words in str(caught.value)


def test_unmapped_categories_are_named_in_the_message() -> None:
    with pytest.raises(BookingError) as caught:
        book("oss_de", "sales_entry", "webshop_country")
    assert str(caught.value) == "map VAT categories NL-19, NL-7"
    assert caught.value.categories == ("NL-19", "NL-7")


@pytest.mark.parametrize("name", ["credit", "credit_positive"])
@pytest.mark.parametrize(("document_type", "invoice_type"), [("sales_invoice", 8021), ("direct_sales_invoice", 8024)])
def test_credit_orders_become_credit_notes_linked_to_the_original(
    name: str, document_type: str, invoice_type: int
) -> None:
    order, _, document = book(name, document_type, "oss")
    assert document.payload["Type"] == invoice_type
    assert document.payload["Description"] == f"Credit order {order.number} for order 5001 (70260001)"
    assert all(line["Quantity"] < 0 for line in document.lines)


@pytest.mark.parametrize("name", ["credit", "credit_positive"])
def test_credit_orders_become_negative_sales_entries(name: str) -> None:
    _, _, document = book(name, "sales_entry", "oss")
    assert all(line["AmountFC"] < 0 and line["VATAmountFC"] <= 0 for line in document.lines)


def test_normal_invoices_and_direct_invoices_differ_in_type_and_warehouse() -> None:
    _, _, invoice = book("domestic", "sales_invoice", "oss")
    _, _, direct = book("domestic", "direct_sales_invoice", "oss")
    assert (invoice.payload["Type"], "Warehouse" in invoice.payload) == (8020, False)
    assert (direct.payload["Type"], direct.payload["Warehouse"]) == (8023, WAREHOUSE)


def test_sales_entry_lines_book_on_the_configured_accounts() -> None:
    _, _, document = book("domestic", "sales_entry", "oss")
    by_description = {line["Description"]: line["GLAccount"] for line in document.lines}
    assert by_description["T-shirt blauw"] == "gl-8000"
    assert by_description["Kookboek"] == "gl-8010"
    assert by_description["Verzendkosten"] == "gl-8050"
    assert by_description["Betaalkosten (9 %)"] == "gl-8060"
    assert by_description["Korting WELKOM (21 %)"] == "gl-8070"


def test_without_configured_cost_accounts_cost_lines_book_on_their_category_account() -> None:
    _, _, document = book("domestic", "sales_entry", "oss", shipping_gl_account="", costs_gl_account="")
    by_description = {line["Description"]: line["GLAccount"] for line in document.lines}
    assert by_description["Verzendkosten"] == "gl-8000"
    assert by_description["Betaalkosten (9 %)"] == "gl-8010"


def test_oss_lines_book_on_the_oss_revenue_account_unless_the_category_has_its_own() -> None:
    _, _, germany = book("oss_de", "sales_entry", "oss")
    _, _, belgium = book("oss_be", "sales_entry", "oss")
    assert {line["GLAccount"] for line in germany.lines} == {"gl-8300"}
    assert {line["VATCode"] for line in germany.lines} == {"D19", "D7"}
    assert {line["GLAccount"] for line in belgium.lines if line["VATCode"] == "B21"} == {"gl-8310"}


def test_item_ledger_accounts_win_over_the_mapping_when_switched_on() -> None:
    settings = SETTINGS.replace(insertion_type="sales_invoice", use_item_ledger=True)
    plan = plan_booking(shop_order("domestic"), settings, MAPPINGS, home_country="NL")
    refs = refs_for(plan, settings)
    refs = ExactRefs(refs.account_id, refs.items, {"TS-BLUE": "gl-item-ts"}, refs.gl_accounts, refs.warehouse)
    document = build_document(plan, settings, refs, mark=MARK)
    accounts = {line["Description"]: line["GLAccount"] for line in document.lines}
    assert accounts["T-shirt blauw"] == "gl-item-ts"
    assert accounts["Mok"] == "gl-8000"  # no account of its own: the mapping


def test_a_line_without_any_revenue_account_names_its_category() -> None:
    mappings = {**MAPPINGS, "NL-9": VatMapping("NL-9", "VL", None, True)}
    settings = SETTINGS.replace(costs_gl_account="", discount_gl_account="")
    plan = plan_booking(shop_order("domestic"), settings, mappings, home_country="NL")
    with pytest.raises(BookingError) as caught:
        build_document(plan, settings, refs_for(plan, settings), mark=MARK)
    assert caught.value.kind == booking.MISSING_GL
    assert "VAT category NL-9" in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({"journal_code": ""}, "sales journal", id="journal"),
        pytest.param({"insertion_type": "direct_sales_invoice", "warehouse": ""}, "warehouse", id="warehouse"),
        pytest.param({"b2c_collective": True, "b2c_collective_account": ""}, "collective account", id="collective"),
        pytest.param({"insertion_type": "sales_order", "shipping_item": ""}, "shipping costs item", id="shipping"),
    ],
)
def test_missing_settings_are_named(changes: dict[str, Any], words: str) -> None:
    settings = SETTINGS.replace(**changes)

    def plan_and_list_items() -> None:
        items_needed(plan_booking(shop_order("domestic"), settings, MAPPINGS, home_country="NL"), settings)

    with pytest.raises(BookingError) as caught:
        plan_and_list_items()
    assert caught.value.kind == booking.SETTINGS
    assert words in str(caught.value)


def test_an_article_without_sku_names_its_order_line() -> None:
    settings = SETTINGS.replace(insertion_type="sales_invoice")
    plan = plan_booking(shop_order("no_sku"), settings, MAPPINGS, home_country="NL")
    with pytest.raises(BookingError) as caught:
        items_needed(plan, settings)
    assert str(caught.value).startswith("order line 1 (Handgemaakte kaart) has no SKU")


def test_consumers_share_the_collective_account_but_businesses_get_their_own() -> None:
    settings = SETTINGS.replace(b2c_collective=True, b2c_collective_account="1000")
    consumer = plan_booking(shop_order("domestic"), settings, MAPPINGS, home_country="NL").customer
    business = plan_booking(shop_order("b2b_domestic"), settings, MAPPINGS, home_country="NL").customer
    assert (consumer.link_kind, consumer.key) == ("collective_account", "1000")
    assert (business.link_kind, business.key) == ("account", "inkoop@kantoor.nl")
    assert business.account_payload() == {
        "Name": "Kantoor BV",
        "Status": "C",
        "Email": "inkoop@kantoor.nl",
        "AddressLine1": "Oudegracht 1",
        "Postcode": "3511 AB",
        "City": "Amsterdam",
        "Country": "NL",
        "VATNumber": "NL001234567B01",
        "Phone": "06-12345678",
    }
    assert CONTRACTS["Accounts"].refusal(business.account_payload()) is None


def test_customer_accounts_are_matched_on_the_e_mail_in_lower_case() -> None:
    customer = plan_booking(shop_order("domestic"), SETTINGS, MAPPINGS, home_country="NL").customer
    assert (customer.link_kind, customer.key, customer.email) == ("account", "jan@example.nl", "Jan@Example.nl")
    assert "VATNumber" not in customer.account_payload()


@pytest.mark.parametrize(
    ("status", "send", "initial_export", "expected"),
    [
        ("draft", False, False, None),
        ("final", False, False, False),
        ("final", True, False, True),
        ("draft", True, False, True),
        ("final", True, True, False),
        ("draft", True, True, None),
    ],
)
def test_invoices_are_processed_and_sent_as_configured_but_never_from_the_initial_export(
    status: str, send: bool, initial_export: bool, expected: bool | None
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_invoice", invoice_status=status, send_invoice=send)
    order = shop_order("domestic")
    payload = finalize_payload("sales_invoice", order.date, settings, "inv-1", initial_export=initial_export)
    if expected is None:
        assert payload is None
        return
    assert payload == {"InvoiceID": "inv-1", "SendEmailToCustomer": expected, "InvoiceDate": "2026-11-20T00:00:00"}
    assert CONTRACTS["PrintedSalesInvoices"].refusal(payload) is None


def test_sales_entries_and_orders_are_never_printed() -> None:
    settings = SETTINGS.replace(invoice_status="final", send_invoice=True)
    order = shop_order("domestic")
    for document_type in ("sales_entry", "sales_order"):
        assert finalize_payload(document_type, order.date, settings, "x", initial_export=False) is None


def test_the_attempt_summary_holds_references_and_totals_as_text() -> None:
    _, _, document = book("domestic", "sales_entry", "oss")
    summary = summarize(document)
    assert summary["your_ref"] == "5001"
    assert summary["total"] == "112.25"
    assert summary["vat"] == "16.88"
    assert len(summary["lines"]) == len(document.lines)
    json.dumps(summary)  # stored as JSON
