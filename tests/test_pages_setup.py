"""The set-up wizard against both sandboxes served over HTTP: every step, its validation, resuming, the dry-run
test with one order, and switching on."""

from __future__ import annotations

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN, SANDBOX_WRONG_PARTNER_TOKEN
from gateway.store import credentials, exports
from gateway.store.integrations import get_integration_or_raise, list_vat_mappings
from tests.support.factories import csrf_of
from tests.support.pages import connect_exact, connect_shop, sign_up, submit


async def test_the_token_step_checks_the_token_live_and_never_echoes_it(
    wizard: TestClient, engine: AsyncEngine
) -> None:
    shop = sign_up(wizard)
    page = wizard.get(f"/integrations/{shop}/setup/shop").text
    assert SANDBOX_SHOP_TOKEN in page  # the sandbox token is offered in dev/demo
    assert "Add-ons &amp; Modules" in page
    for token, message in (
        ("", "Paste the shop token"),
        ("has spaces in it", "does not look like a Mijnwebwinkel token"),
        (SANDBOX_WRONG_PARTNER_TOKEN, "made for another partner"),
    ):
        response = submit(wizard, f"/integrations/{shop}/setup/shop", {"shop_token": token})
        assert response.status_code == 400
        assert message in response.text
        if token:
            assert token not in response.text
    connect_shop(wizard, shop)
    async with engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=shop)
        stored = await credentials.get_credential(
            conn, integration_id=shop, kind=credentials.SHOP_TOKEN, cipher=wizard.app.state.cipher
        )
    assert integration.shop_connection == "connected"
    assert integration.name == integration.shop_name
    assert stored is not None
    assert stored.secret == SANDBOX_SHOP_TOKEN


async def test_the_whole_wizard_in_order_then_switch_on(
    wizard: TestClient, engine: AsyncEngine, redis: ArqRedis
) -> None:
    shop = sign_up(wizard)
    base = f"/integrations/{shop}/setup"
    assert "10 steps to go" in wizard.get(base).text
    connect_shop(wizard, shop)
    connect_exact(wizard, shop)
    overview = wizard.get(base).text
    assert "8 steps to go" in overview
    assert "Continue: Order statuses" in overview

    statuses = wizard.get(f"{base}/statuses").text
    assert "Credit status" in statuses
    assert submit(wizard, f"{base}/statuses", {}).status_code == 400
    assert submit(wizard, f"{base}/statuses", {"statuses": ["2", "999"]}).status_code == 400
    response = submit(wizard, f"{base}/statuses", {"statuses": ["2", "3"]})
    assert response.headers["location"].endswith(f"{base}/export")

    assert submit(wizard, f"{base}/export", {"export": "from", "start_date": "2999-01-01"}).status_code == 400
    assert submit(wizard, f"{base}/export", {"export": "from"}).status_code == 400
    assert submit(wizard, f"{base}/export", {"export": "from", "start_date": "2026-01-01"}).status_code == 303

    administration = wizard.get(f"{base}/administration").text
    assert "Demo Webwinkel BV" in administration
    assert submit(wizard, f"{base}/administration", {"division": "999"}).status_code == 400
    assert submit(wizard, f"{base}/administration", {"division": "123456"}).status_code == 303

    vat_page = wizard.get(f"{base}/vat")
    assert vat_page.status_code == 200, vat_page.text
    assert 'value="2" selected' in vat_page.text  # NL 21 % suggested as code 2
    missing = submit(wizard, f"{base}/vat", {"eu_consumer_vat": "webshop_country"})
    assert missing.status_code == 400
    assert "Choose the Exact VAT code" in missing.text
    response = submit(wizard, f"{base}/vat", vat_answers(vat_page.text))
    assert response.status_code == 303, response.text

    wrong = submit(wizard, f"{base}/booking", {"insertion_type": "sales_invoice", "send_invoice": "on"})
    assert wrong.status_code == 400
    assert "Choose the sales journal" in wrong.text
    assert "only once it is final" in wrong.text
    booking = {"insertion_type": "sales_entry", "journal_code": "70", "invoice_status": "draft"}
    assert submit(wizard, f"{base}/booking", booking).status_code == 303
    assert submit(wizard, f"{base}/items", {"shipping_gl_account": "8050"}).status_code == 303
    assert submit(wizard, f"{base}/service", {"service_level": "premium"}).status_code == 303

    review = wizard.get(f"{base}/review").text
    assert "Finish these steps" not in review
    tested = submit(wizard, f"{base}/test", {"order_number": "1001"})
    assert tested.status_code == 200, tested.text
    assert "Order 1001 would be booked as Sales entry" in tested.text
    assert "Nothing is sent to Exact" in tested.text
    response = submit(wizard, f"{base}/activate", {})
    assert response.headers["location"].endswith(f"/integrations/{shop}/dashboard")
    async with engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=shop)
        mappings = await list_vat_mappings(conn, integration_id=shop)
        export = await exports.get_latest_initial_export(conn, integration_id=shop)
    assert integration.state == "active"
    assert integration.activated_at is not None
    assert integration.service_level == "premium"
    assert integration.exact_division == 123456
    assert integration.settings.selected_statuses == (2, 3)
    assert integration.settings.journal_code == "70"
    assert integration.settings.shipping_gl_account == "8050"
    assert mappings["NL-21"].vat_code == "2"
    assert mappings["NL-21"].gl_account == "8000"
    assert export is not None
    assert export.start_date.isoformat() == "2026-01-01"
    assert "Set-up is complete" in wizard.get(base).text


def vat_answers(page: str) -> dict[str, str]:
    """The suggested VAT code of every category (as the page pre-selects them) and a revenue account each."""
    import re

    answers = {"eu_consumer_vat": "webshop_country"}
    for category in re.findall(r'name="vat_([A-Z0-9.-]+)"', page):
        field = page.split(f'name="vat_{category}"')[1].split("</select>")[0]
        selected = re.search(r'value="([^"]+)" selected', field)
        answers[f"vat_{category}"] = selected.group(1) if selected else "0"
        answers[f"gl_{category}"] = "8000"
    return answers


async def test_steps_resume_where_the_owner_left(wizard: TestClient) -> None:
    shop = sign_up(wizard)
    connect_shop(wizard, shop)
    wizard.cookies.clear()
    token = csrf_of(wizard.get("/login").text)
    wizard.post("/login", data={"csrf_token": token, "email": "wizard@shop.test", "password": "a long enough password"})
    landing = wizard.get("/", follow_redirects=False)
    assert landing.headers["location"].endswith(f"/integrations/{shop}/setup")
    overview = wizard.get(f"/integrations/{shop}/setup").text
    assert "Continue: Connect Exact Online" in overview


async def test_exact_steps_ask_for_the_connection_first(wizard: TestClient) -> None:
    shop = sign_up(wizard)
    page = wizard.get(f"/integrations/{shop}/setup/vat").text
    assert "Connect Mijnwebwinkel first" in page
    assert "Connect Exact Online first" in page
    refused = submit(wizard, f"/integrations/{shop}/setup/booking", {"insertion_type": "sales_entry"})
    assert refused.status_code == 400


async def test_invalid_combinations_are_explained(wizard: TestClient, engine: AsyncEngine) -> None:
    shop = sign_up(wizard)
    connect_shop(wizard, shop)
    connect_exact(wizard, shop)
    base = f"/integrations/{shop}/setup"
    submit(wizard, f"{base}/statuses", {"statuses": ["3", "10"]})  # 10 is a credit status
    as_order = submit(wizard, f"{base}/booking", {"insertion_type": "sales_order"})
    assert as_order.status_code == 400
    assert "Credit statuses cannot be booked as sales orders" in as_order.text
    direct = submit(wizard, f"{base}/booking", {"insertion_type": "direct_sales_invoice", "journal_code": "70"})
    assert direct.status_code == 400
    assert "need the code of the warehouse" in direct.text
    invoice = {"insertion_type": "sales_invoice", "journal_code": "70", "invoice_status": "final"}
    assert submit(wizard, f"{base}/booking", {**invoice, "send_invoice": "on"}).status_code == 303
    empty = submit(wizard, f"{base}/items", {"shipping_item": "", "costs_item": "VERZEND", "discount_item": ""})
    assert empty.status_code == 400  # shipping needs an item; discounts may be "not used"
    assert "Choose the item for shipping costs, or let the gateway create it." in empty.text
    unknown = submit(wizard, f"{base}/items", {"shipping_item": "NOPE", "costs_item": "VERZEND", "discount_item": "X"})
    assert unknown.status_code == 400
    assert "Choose the item for shipping costs, or let the gateway create it." in unknown.text
    assert "Choose the item for discounts, let the gateway create it, or choose not used." in unknown.text
    ok = submit(
        wizard, f"{base}/items", {"shipping_item": "VERZEND", "costs_item": "VERZEND", "discount_item": "VERZEND"}
    )
    assert ok.status_code == 303
    async with engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=shop)
    assert integration.settings.send_invoice is True
    assert integration.settings.shipping_item == "VERZEND"


async def test_switching_on_before_the_steps_are_done_is_refused(wizard: TestClient, engine: AsyncEngine) -> None:
    shop = sign_up(wizard)
    response = submit(wizard, f"/integrations/{shop}/setup/activate", {})
    assert response.headers["location"].endswith(f"/integrations/{shop}/setup/review")
    assert "Finish these steps first" in wizard.get(response.headers["location"]).text
    async with engine.connect() as conn:
        assert (await get_integration_or_raise(conn, integration_id=shop)).state == "setup"
