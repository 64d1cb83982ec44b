import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import respx

from gateway import booking
from gateway.booking import BookingError, gl_codes_needed, items_needed, plan_booking
from gateway.booking_documents import ExactRefs, build_document
from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import (
    create_document,
    finalize_invoice,
    find_documents,
    link_keys,
    resolve_refs,
)
from gateway.clients.mijnwebwinkel_models import MwwOrder
from gateway.settings import Settings
from gateway.store.integrations import IntegrationSettings, VatMapping
from tests.support.environment import load_payload

DIVISION = 123456
BASE = f"/api/v1/{DIVISION}"
MAPPINGS = {
    "NL-21": VatMapping("NL-21", "VH", "8000", True),
    "NL-9": VatMapping("NL-9", "VL", "8010", True),
}
SETTINGS = IntegrationSettings(journal_code="70", shipping_item="SHIP", costs_item="COSTS", discount_item="DISC")
GUID = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"


def d(*rows: dict[str, object]) -> dict[str, object]:
    return {"d": {"results": list(rows)}}


@pytest.fixture
async def exact(settings: Settings) -> AsyncIterator[ExactClient]:
    async with httpx.AsyncClient() as http:
        yield ExactClient(http, host=settings.exact_hosts["nl"], division=DIVISION)


def plan_for(name: str, settings: IntegrationSettings) -> booking.BookingPlan:
    order = MwwOrder.from_api(load_payload(f"order_{name}"))
    return plan_booking(order, settings, MAPPINGS, home_country="NL")


async def test_find_documents_filters_on_your_ref_or_mark_and_journal(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    route = exact_api.get(f"{BASE}/salesentry/SalesEntries").respond(
        json=d({"EntryID": GUID, "EntryNumber": 26700012, "YourRef": "5001", "PaymentReference": "5001/MW1"})
    )
    [found] = await find_documents(exact, document_type="sales_entry", your_ref="5001", mark="5001/MW1", journal="70")
    params = route.calls.last.request.url.params
    assert params["$filter"] == "(YourRef eq '5001' or PaymentReference eq '5001/MW1') and Journal eq '70'"
    assert params["$select"] == "EntryID,EntryNumber,YourRef,PaymentReference"
    assert params["$top"] == "10"
    assert (found.id, found.number, found.status, found.payment_reference) == (GUID, "26700012", None, "5001/MW1")


async def test_find_invoice_reads_its_status_and_quotes_the_reference(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    route = exact_api.get(f"{BASE}/salesinvoice/SalesInvoices").respond(
        json=d({"InvoiceID": GUID, "InvoiceNumber": None, "YourRef": "O'5", "Status": 20})
    )
    [found] = await find_documents(exact, document_type="sales_invoice", your_ref="O'5", mark="O'5/MW1", journal="70")
    filter_ = "(YourRef eq 'O''5' or PaymentReference eq 'O''5/MW1') and Journal eq '70'"
    assert route.calls.last.request.url.params["$filter"] == filter_
    assert "Status" in route.calls.last.request.url.params["$select"]
    assert (found.number, found.status, found.is_processed) == ("", 20, False)


async def test_find_sales_order_has_no_journal_and_may_find_nothing(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    route = exact_api.get(f"{BASE}/salesorder/SalesOrders").respond(json=d())
    assert (
        await find_documents(exact, document_type="sales_order", your_ref="5001", mark="5001/MW1", journal="70") == []
    )
    assert route.calls.last.request.url.params["$filter"] == "(YourRef eq '5001' or PaymentReference eq '5001/MW1')"


async def test_create_document_posts_exact_numbers_and_reads_the_new_id(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    route = exact_api.post(f"{BASE}/salesentry/SalesEntries").respond(
        201, json={"d": {"EntryID": GUID, "EntryNumber": 26700013, "YourRef": "5001"}}
    )
    settings = SETTINGS.replace(insertion_type="sales_entry")
    plan = plan_for("domestic", settings)
    refs = booking_refs(plan, settings)
    document = build_document(plan, settings, refs, mark="5001/MW1")
    created = await create_document(exact, document)
    sent = route.calls.last.request
    assert (created.id, created.number) == (GUID, "26700013")
    assert b'"AmountFC":41.32' in sent.content  # an exact decimal, never 41.319999
    body = json.loads(sent.content, parse_float=Decimal)
    assert body["YourRef"] == "5001"
    assert sum(line["AmountFC"] + line["VATAmountFC"] for line in body["SalesEntryLines"]) == Decimal("112.25")
    assert exact.calls == 1


def booking_refs(plan: booking.BookingPlan, settings: IntegrationSettings) -> ExactRefs:
    return ExactRefs(
        account_id=GUID,
        items={n.code: GUID for n in items_needed(plan, settings)},
        gl_accounts=dict.fromkeys(gl_codes_needed(plan, settings), GUID),
    )


async def test_finalize_reports_what_exact_could_not_do(exact: ExactClient, exact_api: respx.MockRouter) -> None:
    route = exact_api.post(f"{BASE}/salesinvoice/PrintedSalesInvoices").respond(
        201,
        json={"d": {"InvoiceID": GUID, "EmailCreationError": "No e-mail address for the customer", "Document": None}},
    )
    printed = await finalize_invoice(exact, {"InvoiceID": GUID, "SendEmailToCustomer": True})
    assert json.loads(route.calls.last.request.content) == {"InvoiceID": GUID, "SendEmailToCustomer": True}
    assert (printed.email_error, printed.email_sent, printed.document_error) == (
        "No e-mail address for the customer",
        False,
        "",
    )


async def test_known_links_resolve_a_repeat_customer_without_any_call(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_invoice")
    plan = plan_for("domestic", settings)
    known = {key: f"id-{key[1]}" for key in link_keys(plan, settings) if key[0] != "item_revenue"}
    resolution = await resolve_refs(exact, plan, settings, known)
    assert exact.calls == 0
    assert resolution.learned == {}
    assert resolution.refs.account_id == "id-jan@example.nl"
    assert resolution.refs.items["TS-BLUE"] == "id-TS-BLUE"
    assert set(resolution.used) == set(known)


async def test_a_new_customer_and_a_new_article_are_created_once_and_remembered(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_invoice", create_items=True)
    plan = plan_for("unknown_sku", settings)
    accounts = exact_api.get(f"{BASE}/crm/Accounts").respond(json=d())
    new_account = exact_api.post(f"{BASE}/crm/Accounts").respond(
        201, json={"d": {"ID": "acc-new", "Name": "Piet de Vries", "Email": "piet@example.nl"}}
    )
    exact_api.get(f"{BASE}/financial/GLAccounts").respond(json=d({"ID": "gl-8000", "Code": "8000"}))
    items = exact_api.get(f"{BASE}/logistics/Items").respond(json=d())
    new_item = exact_api.post(f"{BASE}/logistics/Items").respond(
        201, json={"d": {"ID": "item-new", "Code": "POSTER-NEW", "Description": "Nieuwe poster"}}
    )
    resolution = await resolve_refs(exact, plan, settings, {})
    assert accounts.calls.last.request.url.params["$filter"] == "Email eq 'piet@example.nl'"
    assert json.loads(new_account.calls.last.request.content)["Email"] == "piet@example.nl"
    assert items.calls.last.request.url.params["$filter"] == "Code eq 'POSTER-NEW'"
    assert json.loads(new_item.calls.last.request.content) == {
        "Code": "POSTER-NEW",
        "Description": "Nieuwe poster",
        "IsSalesItem": True,
        "SalesVatCode": "VH",
        "GLRevenue": "gl-8000",
    }
    assert resolution.learned == {
        ("account", "piet@example.nl"): "acc-new",
        ("gl_account", "8000"): "gl-8000",
        ("item", "POSTER-NEW"): "item-new",
        ("item_revenue", "POSTER-NEW"): "",
    }


async def test_an_unknown_article_is_an_error_when_items_are_not_created(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_order", create_items=False)
    plan = plan_for("unknown_sku", settings)
    known = {("account", "piet@example.nl"): "acc-1"}
    exact_api.get(f"{BASE}/financial/GLAccounts").respond(json=d({"ID": "gl-8000", "Code": "8000"}))
    exact_api.get(f"{BASE}/logistics/Items").respond(json=d())
    create = exact_api.post(f"{BASE}/logistics/Items")
    with pytest.raises(BookingError) as caught:
        await resolve_refs(exact, plan, settings, known)
    assert caught.value.kind == booking.MISSING_ITEM
    assert "POSTER-NEW does not exist in Exact" in str(caught.value)
    assert not create.called


async def test_item_ledger_takes_the_item_groups_account_when_the_item_has_none(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_entry", use_item_ledger=True)
    plan = plan_for("unknown_sku", settings)
    known = {("account", "piet@example.nl"): "acc-1", ("gl_account", "8000"): "gl-8000"}
    exact_api.get(f"{BASE}/logistics/Items").respond(
        json=d({"ID": "item-1", "Code": "POSTER-NEW", "GLRevenue": None, "ItemGroup": GUID})
    )
    groups = exact_api.get(f"{BASE}/logistics/ItemGroups").respond(json=d({"ID": GUID, "GLRevenue": "gl-group"}))
    resolution = await resolve_refs(exact, plan, settings, known)
    assert groups.calls.last.request.url.params["$filter"] == f"ID eq guid'{GUID}'"
    assert resolution.refs.item_revenue == {"POSTER-NEW": "gl-group"}
    document = build_document(plan, settings, resolution.refs, mark="5001/MW1")
    assert [line["GLAccount"] for line in document.lines] == ["gl-group"]


async def test_sales_entries_remember_an_sku_that_is_not_an_exact_item(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_entry", use_item_ledger=True)
    plan = plan_for("unknown_sku", settings)
    known = {("account", "piet@example.nl"): "acc-1", ("gl_account", "8000"): "gl-8000"}
    items = exact_api.get(f"{BASE}/logistics/Items").respond(json=d())
    first = await resolve_refs(exact, plan, settings, known)
    second = await resolve_refs(exact, plan, settings, {**known, **first.learned})
    assert items.call_count == 1
    assert first.learned == {("item_revenue", "POSTER-NEW"): ""}
    assert build_document(plan, settings, second.refs, mark="5001/MW1").lines[0]["GLAccount"] == "gl-8000"


async def test_the_collective_account_is_found_by_its_padded_code_or_used_as_an_id(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    accounts = exact_api.get(f"{BASE}/crm/Accounts").respond(json=d({"ID": "acc-collective", "Code": "1000"}))
    exact_api.get(f"{BASE}/financial/GLAccounts").respond(json=d({"ID": "gl-x", "Code": "8000"}))
    by_code = SETTINGS.replace(b2c_collective=True, b2c_collective_account="1000")
    resolved = await resolve_refs(exact, plan_for("unknown_sku", by_code), by_code, {})
    assert accounts.calls.last.request.url.params["$filter"] == f"Code eq '{'1000':>18}'"
    assert resolved.refs.account_id == "acc-collective"
    assert resolved.learned[("collective_account", "1000")] == "acc-collective"
    by_id = SETTINGS.replace(b2c_collective=True, b2c_collective_account=GUID)
    calls = accounts.call_count
    assert (await resolve_refs(exact, plan_for("unknown_sku", by_id), by_id, {})).refs.account_id == GUID
    assert accounts.call_count == calls


async def test_a_missing_collective_account_is_a_settings_error(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    exact_api.get(f"{BASE}/crm/Accounts").respond(json=d())
    settings = SETTINGS.replace(b2c_collective=True, b2c_collective_account="9999")
    with pytest.raises(BookingError) as caught:
        await resolve_refs(exact, plan_for("unknown_sku", settings), settings, {})
    assert caught.value.kind == booking.SETTINGS
    assert "collective account 9999" in str(caught.value)


async def test_a_customer_is_looked_up_by_lower_case_e_mail_and_as_written_in_one_call(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="sales_entry")
    plan = plan_for("domestic", settings)  # the shop wrote "Jan@Example.nl"
    known = {("gl_account", code): f"gl-{code}" for code in gl_codes_needed(plan, settings)}
    accounts = exact_api.get(f"{BASE}/crm/Accounts").mock(
        side_effect=[httpx.Response(200, json=d({"ID": "acc-jan", "Code": "7", "Email": "Jan@Example.nl"}))]
    )
    create = exact_api.post(f"{BASE}/crm/Accounts")
    resolution = await resolve_refs(exact, plan, settings, known)
    assert [c.request.url.params["$filter"] for c in accounts.calls] == [
        "Email eq 'jan@example.nl' or Email eq 'Jan@Example.nl'",
    ]
    assert resolution.refs.account_id == "acc-jan"
    assert resolution.learned == {("account", "jan@example.nl"): "acc-jan"}
    assert not create.called


async def test_the_direct_invoice_warehouse_is_resolved_from_its_code_once(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    settings = SETTINGS.replace(insertion_type="direct_sales_invoice", warehouse="1")
    plan = plan_for("domestic", settings)
    known = {key: f"id-{key[1]}" for key in link_keys(plan, settings) if key[0] in ("account", "item", "gl_account")}
    warehouses = exact_api.get(f"{BASE}/inventory/Warehouses").respond(json=d({"ID": GUID, "Code": "1"}))
    first = await resolve_refs(exact, plan, settings, known)
    assert warehouses.calls.last.request.url.params["$filter"] == "Code eq '1'"
    assert (first.refs.warehouse, first.learned) == (GUID, {("warehouse", "1"): GUID})
    second = await resolve_refs(exact, plan, settings, {**known, **first.learned})
    assert (second.refs.warehouse, warehouses.call_count) == (GUID, 1)
    assert build_document(plan, settings, second.refs, mark="5001/MW1").payload["Warehouse"] == GUID


async def test_a_warehouse_given_as_an_id_needs_no_look_up_and_an_unknown_code_is_named(
    exact: ExactClient, exact_api: respx.MockRouter
) -> None:
    by_id = SETTINGS.replace(insertion_type="direct_sales_invoice", warehouse=GUID)
    plan = plan_for("domestic", by_id)
    known = {key: f"id-{key[1]}" for key in link_keys(plan, by_id) if key[0] in ("account", "item", "gl_account")}
    warehouses = exact_api.get(f"{BASE}/inventory/Warehouses").respond(json=d())
    assert (await resolve_refs(exact, plan, by_id, known)).refs.warehouse == GUID
    assert not warehouses.called
    unknown = by_id.replace(warehouse="9")
    with pytest.raises(BookingError) as caught:
        await resolve_refs(exact, plan, unknown, known)
    assert (caught.value.kind, str(caught.value)) == (
        booking.SETTINGS,
        "warehouse 9 does not exist in Exact; check the code in the settings",
    )
