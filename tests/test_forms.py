"""Form parsing: the typed validators, the account forms and the wizard's Exact settings rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from starlette.datastructures import FormData

from gateway import forms, setup_forms
from gateway.clients.exact import ExactDivision, ExactGLAccount, ExactJournal, ExactVatCode
from gateway.i18n import translate


def errors_text(errors: forms.Errors) -> dict[str, str]:
    return {name: translate("en", message) for name, message in errors.items()}


def test_text_trims_requires_and_bounds() -> None:
    form = forms.Form({"name": "  Theepot  ", "long": "x" * 201, "blank": "   "})
    assert form.text("name") == "Theepot"
    form.text("long")
    form.text("blank")
    form.text("optional", required=False)
    assert errors_text(form.errors) == {
        "long": "Use at most 200 characters.",
        "blank": "This field is required.",
    }
    assert form.values["optional"] == ""


def test_email_is_lower_cased_and_checked() -> None:
    good = forms.Form({"email": " Owner@Shop.NL "})
    assert good.email() == "owner@shop.nl"
    assert good.ok
    for bad in ("owner", "owner@shop", "a b@shop.nl", "@shop.nl"):
        form = forms.Form({"email": bad})
        form.email()
        assert "email" in form.errors, bad


def test_passwords_are_not_trimmed_and_are_bounded() -> None:
    form = forms.Form({"password": "  spaces count  ", "new_password": "123456789", "old_password": "x" * 201})
    assert form.password("password", new=True) == "  spaces count  "
    form.password("new_password", new=True)
    form.password("old_password")
    form.email()
    assert errors_text(form.errors) == {
        "new_password": "Use at least 10 characters.",
        "old_password": "Use at most 200 characters.",
        "email": "This field is required.",
    }
    assert forms.public_values(form.values) == {"email": ""}  # no password goes back to the page


def test_choice_integer_date_and_checkbox() -> None:
    form = forms.Form({"level": "gold", "count": "12", "low": "0", "word": "twelve", "day": "2026-02-30", "ok": "on"})
    form.choice("level", ("basic", "pro"))
    assert form.integer("count", minimum=1, maximum=20) == 12
    form.integer("low", minimum=1, maximum=5)
    form.integer("word")
    form.date("day")
    assert form.checkbox("ok") is True
    assert form.checkbox("missing") is False
    assert errors_text(form.errors) == {
        "level": "Choose one of the options.",
        "low": "Enter a number from 1 to 5.",
        "word": "Enter a whole number.",
        "day": "Enter a date as yyyy-mm-dd.",
    }


def test_dates_respect_their_bounds() -> None:
    form = forms.Form({"early": "2009-12-31", "late": "2030-01-01", "fine": "2026-03-01"})
    form.date("early", earliest=date(2010, 1, 1))
    form.date("late", latest=date(2026, 11, 24))
    assert form.date("fine", earliest=date(2010, 1, 1), latest=date(2026, 11, 24)) == date(2026, 3, 1)
    assert errors_text(form.errors) == {
        "early": "Choose 2010-01-01 or later.",
        "late": "Choose 2026-11-24 or earlier.",
    }


def test_checkbox_lists_refuse_values_outside_the_choices() -> None:
    data = FormData([("statuses", "3"), ("statuses", "2"), ("statuses", "2")])
    form = forms.Form(data)
    assert form.int_list("statuses", [1, 2, 3]) == (2, 3)
    bad = forms.Form(FormData([("statuses", "2"), ("statuses", "99"), ("statuses", "x")]))
    bad.int_list("statuses", [1, 2, 3])
    assert "statuses" in bad.errors


def test_new_password_must_be_typed_twice_alike() -> None:
    _, errors = forms.parse_new_password({"new_password": "a long password 1", "confirm_password": "another"})
    assert errors_text(errors) == {"confirm_password": "The two passwords are not the same."}
    values, errors = forms.parse_change_password(
        {"current_password": "old", "new_password": "a long password 1", "confirm_password": "a long password 1"}
    )
    assert errors == {}
    assert values["current_password"] == "old"


def test_deleting_needs_the_tick() -> None:
    _, errors = forms.parse_delete_account({"current_password": "secret"})
    assert errors_text(errors) == {"confirm": "Tick the box to confirm."}


# --- wizard: Exact settings ---------------------------------------------------------------------------------------


def vat(code: str, percent: str, *, oss: str = "", listing: str = "N", kind: str = "E") -> ExactVatCode:
    return ExactVatCode(code, code, Decimal(percent) / 100, kind, "S", False, oss, listing, False)


CODES = [
    vat("0", "0", kind="B"),
    vat("1", "9"),
    vat("2", "21"),
    vat("3", "21", kind="I"),
    vat("4", "0", listing="L", kind="B"),
    vat("D1", "19", oss="DE"),
]
ACCOUNTS = [ExactGLAccount("g1", "8000", "Omzet hoog", 110, False), ExactGLAccount("g2", "8040", "OSS", 110, False)]


def test_vat_codes_are_suggested_by_rate_country_and_listing() -> None:
    assert setup_forms.suggest_vat_code("NL-21", CODES) == "2"  # excluding VAT beats including
    assert setup_forms.suggest_vat_code("NL-9", CODES) == "1"
    assert setup_forms.suggest_vat_code("OSS-DE-19", CODES) == "D1"
    assert setup_forms.suggest_vat_code("EU-B2B", CODES) == "4"
    assert setup_forms.suggest_vat_code("OSS-FR-20", CODES) == ""


def test_every_category_needs_a_vat_code_and_an_account_unless_oss_has_a_default() -> None:
    categories = ["NL-21", "OSS-DE-19"]
    data = {"eu_consumer_vat": "oss", "vat_NL-21": "2", "gl_NL-21": "", "vat_OSS-DE-19": "", "gl_OSS-DE-19": ""}
    _, errors = setup_forms.parse_vat(data, categories, CODES, ACCOUNTS)
    assert errors_text(errors) == {
        "gl_NL-21": "Choose the revenue account for NL 21 %.",
        "vat_OSS-DE-19": "Choose the Exact VAT code for OSS DE 19 %, or mark it as not used.",
        "gl_OSS-DE-19": "Choose the revenue account for OSS DE 19 %.",
        "oss_revenue_account": "Choose the default revenue account for OSS sales.",
    }
    complete = {**data, "gl_NL-21": "8000", "vat_OSS-DE-19": "D1", "oss_revenue_account": "8040"}
    values, errors = setup_forms.parse_vat(complete, categories, CODES, ACCOUNTS)
    assert errors == {}
    assert values["gl_OSS-DE-19"] == ""


def test_an_oss_code_of_another_country_is_refused_and_rate_mismatches_are_pointed_out() -> None:
    data = {"eu_consumer_vat": "oss", "vat_OSS-BE-21": "D1", "gl_OSS-BE-21": "8040"}
    _, errors = setup_forms.parse_vat(data, ["OSS-BE-21"], CODES, ACCOUNTS)
    assert errors_text(errors) == {"vat_OSS-BE-21": "This VAT code is for OSS country DE."}
    warnings = setup_forms.vat_rate_warnings({"vat_NL-21": "1", "vat_NL-9": "1"}, ["NL-21", "NL-9"], CODES)
    assert {k: translate("en", v) for k, v in warnings.items()} == {"vat_NL-21": "This code is 9 %, the category 21 %."}


JOURNALS = [ExactJournal("70", "Verkoopboek", 20, False)]


def booking(data: dict[str, str], *, credit: bool = False) -> dict[str, str]:
    _, errors = setup_forms.parse_booking(data, JOURNALS, [], credit_selected=credit)
    return errors_text(errors)


def test_booking_combinations_exact_would_refuse_are_explained() -> None:
    assert booking({"insertion_type": "sales_entry"}) == {
        "journal_code": "Choose the sales journal the orders are booked in."
    }
    assert "insertion_type" in booking({"insertion_type": "sales_order"}, credit=True)
    assert booking({"insertion_type": "sales_order"}) == {}
    assert booking({"insertion_type": "direct_sales_invoice", "journal_code": "70"}) == {
        "warehouse": "Direct sales invoices need the code of the warehouse the goods leave from."
    }
    assert booking({"insertion_type": "sales_entry", "journal_code": "70", "send_invoice": "on"}) == {
        "send_invoice": "Only invoices can be e-mailed; this booking type makes no invoice."
    }
    assert "send_invoice" in booking({"insertion_type": "sales_invoice", "journal_code": "70", "send_invoice": "on"})
    assert (
        booking(
            {"insertion_type": "sales_invoice", "journal_code": "70", "send_invoice": "on", "invoice_status": "final"}
        )
        == {}
    )


def test_booking_changes_drop_what_the_type_does_not_use() -> None:
    values, _ = setup_forms.parse_booking(
        {"insertion_type": "sales_entry", "journal_code": "70", "invoice_status": "final", "warehouse": "1"},
        JOURNALS,
        [],
        credit_selected=False,
    )
    changes = setup_forms.booking_changes(values)
    assert changes["invoice_status"] == "draft"
    assert changes["warehouse"] == ""
    assert changes["send_invoice"] is False


def test_items_are_required_for_invoices_and_optional_for_entries() -> None:
    _, errors = setup_forms.parse_items({}, ACCOUNTS, ["VERZEND"], uses_items=True)
    assert set(errors) == {"shipping_item"}  # costs and discounts may be "not used"
    assert errors["shipping_item"] == setup_forms.ITEM_MISSING["shipping_item"]
    values, errors = setup_forms.parse_items(
        {"shipping_item": "VERZEND", "costs_item": "+", "discount_item": "NOPE"}, ACCOUNTS, ["VERZEND"], uses_items=True
    )
    assert set(errors) == {"discount_item"}  # only listed items, or "create it"
    assert values["costs_item"] == setup_forms.CREATE_ITEM
    _, errors = setup_forms.parse_items({"shipping_gl_account": "9999"}, ACCOUNTS, uses_items=False)
    assert set(errors) == {"shipping_gl_account"}
    _, errors = setup_forms.parse_items({"b2c_collective": "on"}, ACCOUNTS, uses_items=False)
    assert set(errors) == {"b2c_collective_account"}


def test_only_listed_administrations_can_be_chosen() -> None:
    divisions = [ExactDivision(123456, "Demo", "", "NL", "")]
    values, errors = setup_forms.parse_administration({"division": "123456"}, divisions)
    assert errors == {}
    assert values["division_record"] == divisions[0]
    _, errors = setup_forms.parse_administration({"division": "42"}, divisions)
    assert errors_text(errors) == {"division": "Choose one of the listed administrations."}
