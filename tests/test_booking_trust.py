"""Books you can trust: a document is adopted only with this integration's mark, amounts are cents at the boundary,
VAT sits only on a code of the rate charged, created items come from the settings, credits carry the right sign and
reference. Bookings go through the real job core into the sandbox Exact over HTTP, on the real database and Redis."""

import asyncio
import copy
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.booking_documents import booking_mark
from gateway.clients.exact import ExactClient
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.exact_auth import store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.jobs.sync_order import BookingServices, book_order, services_from_context
from gateway.sandbox.exact import Faults, create_exact_sandbox
from gateway.settings import Settings
from gateway.store import credentials, notices, orders
from gateway.store.integrations import (
    Integration,
    IntegrationSettings,
    create_integration,
    get_integration_or_raise,
    save_vat_mapping,
    update_integration,
)
from tests.support.environment import load_payload

pytestmark = pytest.mark.anyio
DIVISION = 234567  # the sandbox's wholesale administration (direct sales invoices too), journal 70
SHOP_TOKEN = "trust-shop-token-0001"
MAPPINGS = {
    "NL-21": ("2", "8000"),
    "NL-9": ("1", "8010"),
    "NL-0": ("0", "8020"),
    "EU-B2B": ("4", "8030"),
    "EXPORT": ("6", "8020"),
    "OSS-DE-19": ("D1", None),
    "OSS-DE-7": ("D2", None),
}
BOOKING = IntegrationSettings(
    selected_statuses=(2, 3),
    journal_code="70",
    oss_revenue_account="8040",
    create_items=True,
    shipping_item="VERZEND",
    costs_item="BETAALKOSTEN",
    discount_item="KORTING",
    shipping_gl_account="8050",
    discount_gl_account="8060",
    warehouse="5f0b8c1e-0000-4000-8000-000000000001",
)
ENTITY = {
    "sales_entry": "SalesEntries",
    "sales_invoice": "SalesInvoices",
    "direct_sales_invoice": "SalesInvoices",
    "sales_order": "SalesOrders",
}
ID_FIELD = {"SalesEntries": "EntryID", "SalesInvoices": "InvoiceID", "SalesOrders": "OrderID"}


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@dataclass
class Sandbox:
    app: Any
    http: httpx.AsyncClient
    tokens: ExactTokens
    exact: ExactClient  # a direct client, for what an accountant types by hand

    def documents(self, entity: str) -> list[dict[str, Any]]:
        return list(self.app.state.sandbox.divisions[DIVISION].rows[entity])


@pytest.fixture
async def exact_with_articles(settings: Settings) -> AsyncIterator[Sandbox]:
    app = create_exact_sandbox(faults_enabled=True, minutely_limit=100_000, daily_limit=1_000_000)
    redirect = "http://testserver/exact/callback"
    code = app.state.sandbox.tokens.new_code("test-client-id", redirect)
    status, body = app.state.sandbox.tokens.exchange(
        {"code": code, "client_id": "test-client-id", "redirect_uri": redirect}
    )
    assert status == 200, body
    tokens = ExactTokens(body["access_token"], body["refresh_token"], int(body["expires_in"]), utcnow())
    host = settings.exact_hosts["nl"]
    async with httpx.AsyncClient(mounts={host: httpx.ASGITransport(app=app)}) as http:
        exact = ExactClient(http, host=host, division=DIVISION, auth=_Bearer(tokens.access_token))
        for item, description in (("BETAALKOSTEN", "Betaalkosten"), ("KORTING", "Korting")):
            await exact.post("logistics/Items", {"Code": item, "Description": description, "IsSalesItem": True})
        yield Sandbox(app, http, tokens, exact)


@pytest.fixture
def lenient_shop(mww_api: respx.MockRouter) -> dict[str, dict[str, Any]]:
    """Shop orders by number, served like Mijnwebwinkel's GET /orders/{number} (one token for every test shop)."""
    served: dict[str, dict[str, Any]] = {}

    def order(request: httpx.Request, number: str) -> httpx.Response:
        if number not in served:
            return httpx.Response(404, json={"title": "Not found", "status": 404})
        return httpx.Response(200, json=served[number])

    mww_api.get(path__regex=r"/orders/(?P<number>[^/?]+)$").mock(side_effect=order)
    return served


def services_for(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox
) -> BookingServices:
    fast = dataclasses.replace(settings, exact_minutely_limit=100_000, exact_daily_limit=1_000_000)
    ctx = {"engine": engine, "settings": fast, "cipher": Cipher(fast.encryption_keys), "http": exact_with_articles.http}
    return services_from_context({**ctx, "redis": redis})


async def shop_integration(
    engine: AsyncEngine,
    settings: Settings,
    exact_with_articles: Sandbox,
    booking: IntegrationSettings = BOOKING,
    mappings: dict[str, tuple[str, str | None]] = MAPPINGS,
) -> Integration:
    """An active integration booking into the sandbox's administration (every test shop shares it)."""
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        account = await conn.execute(
            tables.account.insert()
            .values(email=f"owner-{utcnow().timestamp()}@shop.test", password_hash="x", created_at=utcnow())
            .returning(tables.account.c.id)
        )
        integration = await create_integration(conn, account_id=int(account.scalar_one()), name="Shop")
        await update_integration(
            conn,
            integration_id=integration.id,
            state="active",
            shop_country="NL",
            shop_connection="connected",
            exact_country="nl",
            exact_division=DIVISION,
            exact_connection="connected",
            settings=booking,
        )
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SHOP_TOKEN, cipher=cipher
        )
        await store_tokens(conn, integration_id=integration.id, tokens=exact_with_articles.tokens, cipher=cipher)
        for category, (code, gl) in mappings.items():
            await save_vat_mapping(conn, integration_id=integration.id, category=category, vat_code=code, gl_account=gl)
        return await get_integration_or_raise(conn, integration_id=integration.id)


async def queue(engine: AsyncEngine, integration: Integration, number: str) -> int:
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number=number,
            status_id=2,
            source="poller",
            dedupe_key=f"{number}:2",
            selected_statuses=(2, 3),
        )
    assert outcome.order_sync_id is not None
    return outcome.order_sync_id


def serve(lenient_shop: dict[str, Any], name: str, number: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(load_payload(f"order_{name}"))
    data.update(number=number, **changes)
    lenient_shop[number] = data
    return data


async def row(engine: AsyncEngine, order_sync_id: int) -> orders.OrderSync:
    async with engine.connect() as conn:
        found = await orders.get_sync_for_job(conn, order_sync_id=order_sync_id)
    assert found is not None
    return found


async def died_without_a_record(engine: AsyncEngine, order_sync_id: int) -> None:
    """What a worker killed before it could record anything leaves: a claim (attempts + 1), no attempt row."""
    async with engine.begin() as conn:
        await conn.execute(
            update(tables.order_sync)
            .where(tables.order_sync.c.id == order_sync_id)
            .values(attempts=tables.order_sync.c.attempts + 1)
        )


async def killed_after_exact_stored(
    services: BookingServices, engine: AsyncEngine, exact_with_articles: Sandbox, order_sync_id: int, entity: str
) -> dict[str, Any]:
    """Exact creates the document, the job dies before it hears the answer (no record); its lease runs out.
    Returns the document Exact stored."""
    before = len(exact_with_articles.documents(entity))
    exact_with_articles.app.state.sandbox.faults = Faults(
        fail_after_store=1, fail_after_store_mode="timeout", hang_seconds=3600
    )
    dying = asyncio.create_task(book_order(services, order_sync_id))
    for _ in range(500):
        if len(exact_with_articles.documents(entity)) > before:
            break
        await asyncio.sleep(0.01)
    dying.cancel()  # what arq's job timeout or a killed process does to a booking in flight
    with pytest.raises(asyncio.CancelledError):
        await dying
    exact_with_articles.app.state.sandbox.faults = Faults()
    async with engine.begin() as conn:  # the lease runs out
        await conn.execute(
            update(tables.order_sync)
            .where(tables.order_sync.c.id == order_sync_id)
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
    stored = exact_with_articles.documents(entity)[before:]
    assert len(stored) == 1, "Exact stored the document before the job died"
    return stored[0]


# ---------------------------------------------------------------- adoption is proof, not a guess


@pytest.mark.parametrize("document_type", list(ENTITY))
async def test_a_killed_booking_adopts_its_own_document_not_another_shops_with_the_same_number(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    exact_with_articles: Sandbox,
    lenient_shop: dict,
    document_type: str,
) -> None:
    booking = BOOKING.replace(insertion_type=document_type)
    first, second = [await shop_integration(engine, settings, exact_with_articles, booking) for _ in range(2)]
    services = services_for(engine, settings, redis, exact_with_articles)
    serve(lenient_shop, "b2b_domestic", "6101")  # both shops have an order 6101; the shop client is one respx router
    entity = ENTITY[document_type]
    first_sync, second_sync = await queue(engine, first, "6101"), await queue(engine, second, "6101")
    assert (await book_order(services, first_sync)).startswith("booked: order 6101")
    [theirs] = exact_with_articles.documents(entity)
    ours = await killed_after_exact_stored(services, engine, exact_with_articles, second_sync, entity)
    result = await book_order(services, second_sync)
    assert result.startswith("adopted: order 6101"), result
    booked = await row(engine, second_sync)
    assert (booked.state, booked.exact_document_id) == ("booked", ours[ID_FIELD[entity]])
    assert booked.exact_document_id != theirs[ID_FIELD[entity]]
    assert (theirs["PaymentReference"], ours["PaymentReference"]) == (
        booking_mark(first.id, "6101"),
        booking_mark(second.id, "6101"),
    )
    assert {d["YourRef"] for d in exact_with_articles.documents(entity)} == {"6101"}
    assert len(exact_with_articles.documents(entity)) == 2  # nothing posted again


async def test_another_shops_document_is_no_reason_to_stop_or_adopt(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    first, second = [await shop_integration(engine, settings, exact_with_articles) for _ in range(2)]
    services = services_for(engine, settings, redis, exact_with_articles)
    serve(lenient_shop, "domestic", "6101")
    first_sync, second_sync = await queue(engine, first, "6101"), await queue(engine, second, "6101")
    await book_order(services, first_sync)
    await died_without_a_record(engine, second_sync)  # killed before its POST reached Exact
    result = await book_order(services, second_sync)
    assert result.startswith("booked: order 6101"), result
    theirs, ours = exact_with_articles.documents("SalesEntries")
    assert (await row(engine, second_sync)).exact_document_id == ours["EntryID"] != theirs["EntryID"]


async def post_entry(exact_with_articles: Sandbox, your_ref: str, payment_reference: str = "") -> dict[str, Any]:
    """A sales entry posted straight to Exact: what an accountant types, or what a dead job left behind."""
    [customer] = await exact_with_articles.exact.get_all(
        "crm/Accounts", select=["ID"], filter="Name eq 'Jan Jansen'", top=1
    )
    [gl] = await exact_with_articles.exact.get_all(
        "financial/GLAccounts", select=["ID"], filter="Code eq '8000'", top=1
    )
    payload: dict[str, Any] = {
        "Journal": "70",
        "Customer": customer["ID"],
        "YourRef": your_ref,
        "SalesEntryLines": [{"GLAccount": gl["ID"], "AmountFC": 10, "VATCode": "2"}],
    }
    if payment_reference:
        payload["PaymentReference"] = payment_reference
    return await exact_with_articles.exact.post("salesentry/SalesEntries", payload)


async def test_a_hand_typed_document_with_the_order_number_stops_the_order_for_review(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(engine, settings, exact_with_articles)
    services = services_for(engine, settings, redis, exact_with_articles)
    serve(lenient_shop, "domestic", "6101")
    sync_id = await queue(engine, integration, "6101")
    typed = await post_entry(
        exact_with_articles, "6101"
    )  # an accountant's entry, or one made before documents had a mark
    await died_without_a_record(engine, sync_id)
    result = await book_order(services, sync_id)
    stopped = await row(engine, sync_id)
    number = str(typed["EntryNumber"])
    assert (stopped.state, stopped.error_kind) == ("needs_review", "unmarked_document"), result
    assert stopped.error_params == {"order": "6101", "documents": number}
    assert number in (stopped.last_error or "")
    assert (stopped.exact_document_id, stopped.booked_at) == (None, None)
    assert len(exact_with_articles.documents("SalesEntries")) == 1  # nothing booked by a guess


async def test_two_documents_with_this_orders_mark_stop_the_order_for_review(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(engine, settings, exact_with_articles)
    services = services_for(engine, settings, redis, exact_with_articles)
    serve(lenient_shop, "domestic", "6101")
    sync_id = await queue(engine, integration, "6101")
    mark = booking_mark(integration.id, "6101")
    twins = [await post_entry(exact_with_articles, "6101", mark), await post_entry(exact_with_articles, "6101", mark)]
    await died_without_a_record(engine, sync_id)
    await book_order(services, sync_id)
    stopped = await row(engine, sync_id)
    assert (stopped.state, stopped.error_kind) == ("needs_review", "duplicate_mark")
    assert stopped.error_params == {"order": "6101", "documents": ", ".join(str(t["EntryNumber"]) for t in twins)}
    assert len(exact_with_articles.documents("SalesEntries")) == 2


def test_the_mark_is_short_stable_and_names_integration_and_order() -> None:
    assert booking_mark(1, "6101") == "6101/MW1"
    assert booking_mark(36**4, "6101") == "6101/MW10000"
    assert booking_mark(7, " 6101 ") == booking_mark(7, "6101") != booking_mark(8, "6101")
    assert len(booking_mark(2**62, "9" * 12)) <= 32


@pytest.mark.parametrize(
    ("language", "state_label", "sentence"),
    [
        pytest.param("en", "Needs review", "Exact already holds 70260042 with reference 6101", id="en"),
        pytest.param("nl", "Te controleren", "Exact heeft al 70260042 met referentie 6101", id="nl"),
    ],
)
async def test_an_order_stopped_for_review_says_so_in_both_languages_with_the_exact_number(
    client: Any, engine: AsyncEngine, language: str, state_label: str, sentence: str
) -> None:
    from tests.support.factories import create_active_integration, create_login, log_in

    async with engine.begin() as conn:
        owner = await create_login(conn, email="review@shop.test", locale=language)
        integration = await create_active_integration(conn, account_id=owner)
    sync_id = await queue(engine, integration, "6101")
    async with engine.begin() as conn:
        await orders.mark_failed(
            conn,
            integration_id=integration.id,
            order_sync_id=sync_id,
            error_kind="unmarked_document",
            message="Exact already holds 70260042 with reference 6101, not made by the gateway for this shop; ...",
            params={"order": "6101", "documents": "70260042"},
            state="needs_review",
        )
    client.headers["Accept-Language"] = language
    log_in(client, "review@shop.test")
    listing = client.get(f"/integrations/{integration.id}/history?state=needs_review")
    assert listing.status_code == 200, listing.text
    detail = client.get(f"/integrations/{integration.id}/history/{sync_id}").text
    for page in (listing.text, detail):
        assert state_label in page
        assert sentence in page
    assert "6101" in listing.text


# ---------------------------------------------------------------- amounts are cents at the boundary


def float_noise_order(number: str = "5002") -> dict[str, Any]:
    """Order 5002 as a live shop sent it: the total with float noise, excl. amounts with six decimals, numbers and
    strings mixed, the VAT per rate as a float."""
    data = copy.deepcopy(load_payload("order_domestic"))
    data.update(number=number)
    data["price"] = {"tax": [{"rate": 21, "amount": 4.3199999999999998}], "total": "24.89999999999999946709294818"}
    data["orderlines"] = [
        {
            "id": "l-1",
            "type": "article",
            "quantity": "1",
            "description": "Theedoek",
            "price": {"amount": 16.487603, "amount_including_tax": "19.949999999999999", "rate": "21.00"},
            "articles": [{"id": 7, "description": "Theedoek", "sku": "TD-1"}],
        },
        {
            "id": "l-2",
            "type": "shipping",
            "quantity": 1,
            "description": "Verzendkosten",
            "price": {"amount": "4.090909", "amount_including_tax": 4.95, "rate": 21},
        },
    ]
    return data


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({}, id="float-noise-as-sent"),
        pytest.param({"incl": ""}, id="empty-incl-amounts-derived"),
        pytest.param({"incl": None}, id="missing-incl-amounts-derived"),
        pytest.param({"total": 24.9}, id="total-as-a-number"),
        pytest.param({"total": "24.900"}, id="total-with-three-decimals"),
        pytest.param({"tax": None}, id="no-vat-per-rate"),
        pytest.param({"quantity": ""}, id="empty-quantity-is-one"),
    ],
)
def test_float_noise_and_loose_fields_plan_to_the_cent(change: dict[str, Any]) -> None:
    from gateway.booking import plan_booking
    from gateway.clients.mijnwebwinkel_models import MwwOrder
    from gateway.store.integrations import VatMapping

    data = float_noise_order()
    for line in data["orderlines"]:
        if "incl" in change:
            line["price"]["amount_including_tax"] = change["incl"]
        if "quantity" in change:
            line["quantity"] = change["quantity"]
    if "total" in change:
        data["price"]["total"] = change["total"]
    if "tax" in change:
        data["price"]["tax"] = change["tax"]
    order = MwwOrder.from_api(data)
    assert order.total == Decimal("24.90")
    assert str(order.total) == "24.90"
    mappings = {"NL-21": VatMapping("NL-21", "2", "8000", True)}
    plan = plan_booking(order, BOOKING, mappings, home_country="NL")
    assert plan.total == Decimal("24.90")
    assert sum(line.vat for line in plan.lines) == Decimal("4.32")
    assert [(line.amount, line.vat) for line in plan.lines] == [
        (Decimal("16.49"), Decimal("3.46")),
        (Decimal("4.09"), Decimal("0.86")),
    ]


async def test_the_float_noise_order_books_once_with_its_cents(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(engine, settings, exact_with_articles)
    lenient_shop["5002"] = float_noise_order()
    sync_id = await queue(engine, integration, "5002")
    result = await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    assert result.startswith("booked: order 5002"), result
    booked = await row(engine, sync_id)
    assert (booked.state, booked.order_total) == ("booked", "24.90")
    [entry] = exact_with_articles.documents("SalesEntries")
    assert entry["AmountFC"] == Decimal("24.90")
    assert entry["VATAmountFC"] == Decimal("4.32")


@pytest.mark.parametrize(
    ("change", "figures"),
    [
        pytest.param({"total": "24.91"}, ("24.90", "24.91"), id="total-a-cent-off"),
        pytest.param({"total": "24.895"}, None, id="total-rounds-half-up-to-24.90"),
        pytest.param({"total": "24.8949999"}, ("24.90", "24.89"), id="total-rounds-down-to-24.89"),
        pytest.param({"tax": [{"rate": 21, "amount": "4.35"}]}, ("4.35", "4.32"), id="vat-three-cents-off"),
    ],
)
def test_a_mismatch_names_two_figures_that_differ(change: dict[str, Any], figures: tuple[str, str] | None) -> None:
    from gateway.booking import BookingError, plan_booking
    from gateway.clients.mijnwebwinkel_models import MwwOrder
    from gateway.store.integrations import VatMapping

    data = float_noise_order()
    data["price"].update(change)
    mappings = {"NL-21": VatMapping("NL-21", "2", "8000", True)}
    if figures is None:
        assert plan_booking(MwwOrder.from_api(data), BOOKING, mappings, home_country="NL").total == Decimal("24.90")
        return
    with pytest.raises(BookingError) as caught:
        plan_booking(MwwOrder.from_api(data), BOOKING, mappings, home_country="NL")
    message, params = str(caught.value), caught.value.params
    first, second = figures
    assert first != second
    assert first in message
    assert second in message
    assert {first, second} <= set(params.values())
    assert caught.value.kind == "totals_mismatch"


# ---------------------------------------------------------------- VAT is consistent or refused


def uk_consumer_order(number: str, **changes: Any) -> dict[str, Any]:
    """A GBP order to a consumer in the UK carrying 20 % VAT (4.17), as a Dutch shop taxing UK sales sends it."""
    data = copy.deepcopy(load_payload("order_gbp"))
    data.update(number=number, currency="GBP", tax_region="GB", tax_strategy="")
    data["debtor"]["address"]["invoice"].update(country_code="GB", zipcode="SW1A 1AA", city="London")
    data["shipping"] = [{"country": {"description": "United Kingdom", "isocode": "GB"}}]
    data["price"] = {"tax": [{"rate": "20.00", "amount": "4.17"}], "total": "25.00"}
    data["orderlines"] = [
        {
            "id": "uk-1",
            "type": "article",
            "quantity": 1,
            "description": "Theepot",
            "price": {"amount": "20.833333", "amount_including_tax": "25.00", "rate": "20.00"},
            "articles": [{"id": 9, "description": "Theepot", "sku": "TP-1"}],
        }
    ]
    data.update(changes)
    return data


async def test_uk_vat_mapped_to_the_zero_rate_export_code_is_refused_with_the_orders_figures(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(
        engine, settings, exact_with_articles, mappings={**MAPPINGS, "GB-20": ("6", "8020")}
    )
    lenient_shop["5101"] = uk_consumer_order("5101")
    sync_id = await queue(engine, integration, "5101")
    await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    stopped = await row(engine, sync_id)
    assert (stopped.state, stopped.error_kind) == ("failed", "vat_code_rate")
    assert stopped.error_params is not None
    assert {k: stopped.error_params[k] for k in ("vat", "amount", "rate", "category", "code", "code_rate")} == {
        "vat": "4.17",
        "amount": "20.83",
        "rate": "20",
        "category": "GB-20",
        "code": "6",
        "code_rate": "0",
    }
    assert stopped.error_params["expected"] == "0.00"
    assert "map category GB-20 to a VAT code of 20 %" in (stopped.last_error or "")
    assert exact_with_articles.documents("SalesEntries") == []


async def test_an_order_that_says_no_vat_is_due_but_charges_it_is_refused(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(engine, settings, exact_with_articles)
    lenient_shop["5102"] = uk_consumer_order("5102", tax_strategy="zero_percent")
    sync_id = await queue(engine, integration, "5102")
    await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    stopped = await row(engine, sync_id)
    assert (stopped.state, stopped.error_kind) == ("failed", "vat_contradiction")
    assert stopped.error_params == {"order": "5102", "strategy": "zero_percent", "vat": "4.17"}
    assert exact_with_articles.documents("SalesEntries") == []


@pytest.mark.parametrize(
    ("name", "changes", "category"),
    [
        pytest.param("gbp", {"tax_region": "GB", "tax_strategy": "zero_percent"}, None, id="zero-strategy-with-vat"),
        pytest.param("export", {"tax_strategy": ""}, "EXPORT", id="zero-rate-outside-the-eu"),
        pytest.param("b2b_reverse_charge", {}, "EU-B2B", id="reverse-charge-at-zero"),
        pytest.param("oss_de", {}, "OSS-DE-19", id="oss-rate-charged"),
    ],
)
def test_the_category_follows_the_rate_charged_not_the_strategy_alone(
    name: str, changes: dict[str, Any], category: str | None
) -> None:
    from gateway.booking import BookingError, plan_booking
    from gateway.clients.mijnwebwinkel_models import MwwOrder
    from gateway.store.integrations import VatMapping

    data = {**copy.deepcopy(load_payload(f"order_{name}")), **changes}
    mappings = {c: VatMapping(c, code, gl, True) for c, (code, gl) in MAPPINGS.items()}
    settings = BOOKING.replace(eu_consumer_vat="oss")
    if category is None:
        with pytest.raises(BookingError) as caught:
            plan_booking(MwwOrder.from_api(data), settings, mappings, home_country="NL")
        assert caught.value.kind == "vat_contradiction"
        return
    plan = plan_booking(MwwOrder.from_api(data), settings, mappings, home_country="NL", vat_rates=SANDBOX_RATES)
    assert category in plan.categories


SANDBOX_RATES = {"0": Decimal(0), "1": Decimal(9), "2": Decimal(21), "4": Decimal(0), "6": Decimal(0)}
SANDBOX_RATES |= {"D1": Decimal(19), "D2": Decimal(7)}


@pytest.mark.parametrize(
    ("category", "code", "refused"),
    [
        pytest.param("NL-21", "2", False, id="21-on-the-21-code"),
        pytest.param("NL-21", "1", True, id="21-on-the-9-code"),
        pytest.param("NL-9", "2", True, id="9-on-the-21-code"),
        pytest.param("NL-21", "0", True, id="21-on-the-0-code"),
    ],
)
def test_every_line_of_the_corpus_order_must_fit_its_codes_rate(category: str, code: str, refused: bool) -> None:
    from gateway.booking import BookingError, plan_booking
    from gateway.clients.mijnwebwinkel_models import MwwOrder
    from gateway.store.integrations import VatMapping

    mappings = {c: VatMapping(c, vat_code, gl, True) for c, (vat_code, gl) in MAPPINGS.items()}
    mappings[category] = VatMapping(category, code, "8000", True)
    order = MwwOrder.from_api(load_payload("order_domestic"))
    if not refused:
        plan_booking(order, BOOKING, mappings, home_country="NL", vat_rates=SANDBOX_RATES)
        return
    with pytest.raises(BookingError) as caught:
        plan_booking(order, BOOKING, mappings, home_country="NL", vat_rates=SANDBOX_RATES)
    assert caught.value.kind == "vat_code_rate"
    assert caught.value.params["vat"] != caught.value.params["expected"]
    assert caught.value.params["code"] == code


# ---------------------------------------------------------------- credit orders


@pytest.mark.parametrize("document_type", ["sales_entry", "sales_invoice", "direct_sales_invoice"])
@pytest.mark.parametrize("credit", ["credit", "credit_positive"])
@pytest.mark.parametrize("credit_first", [False, True], ids=["original-first", "credit-first"])
async def test_a_credit_carries_the_documents_sign_and_the_originals_exact_number(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    exact_with_articles: Sandbox,
    lenient_shop: dict,
    document_type: str,
    credit: str,
    credit_first: bool,
) -> None:
    booking = BOOKING.replace(insertion_type=document_type, invoice_status="final")
    integration = await shop_integration(engine, settings, exact_with_articles, booking)
    services = services_for(engine, settings, redis, exact_with_articles)
    serve(lenient_shop, "domestic", "5001")
    credit_order = serve(lenient_shop, credit, credit.replace("credit_positive", "5008").replace("credit", "5007"))
    original_sync = await queue(engine, integration, "5001")
    credit_sync = await queue(engine, integration, credit_order["number"])
    if credit_first:  # the credit waits for its original, without using up a try's budget of documents
        from arq import Retry

        with pytest.raises(Retry):
            await book_order(services, credit_sync)
        assert (await row(engine, credit_sync)).state == "retrying"
        assert exact_with_articles.documents(ENTITY[document_type]) == []
    assert (await book_order(services, original_sync)).startswith("booked")
    assert (await book_order(services, credit_sync, job_try=2 if credit_first else 1)).startswith("booked")
    original, booked_credit = exact_with_articles.documents(ENTITY[document_type])
    number = (await row(engine, original_sync)).exact_document_number
    assert number
    assert booked_credit["Description"] == f"Credit order {credit_order['number']} for order 5001 ({number})"
    lines = booked_credit["SalesEntryLines" if document_type == "sales_entry" else "SalesInvoiceLines"]
    assert sum(line["AmountFC"] + line["VATAmountFC"] for line in lines) == -abs(
        Decimal(credit_order["price"]["total"])
    )
    if document_type == "sales_entry":
        assert booked_credit["Type"] == 21  # Exact's sales credit note: negative lines
    else:
        assert booked_credit["Type"] == {"sales_invoice": 8021, "direct_sales_invoice": 8024}[document_type]
        assert all(line["Quantity"] < 0 for line in lines)


async def test_a_credit_as_sales_order_needs_attention_and_books_nothing(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(
        engine, settings, exact_with_articles, BOOKING.replace(insertion_type="sales_order")
    )
    serve(lenient_shop, "credit", "5007")
    sync_id = await queue(engine, integration, "5007")
    await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    assert ((await row(engine, sync_id)).state, exact_with_articles.documents("SalesOrders")) == ("needs_attention", [])


# ---------------------------------------------------------------- created items come from the settings


def sandbox_item(exact_with_articles: Sandbox, code: str) -> dict[str, Any]:
    [item] = [i for i in exact_with_articles.app.state.sandbox.divisions[DIVISION].rows["Items"] if i["Code"] == code]
    return dict(item)


def sandbox_gl_id(exact_with_articles: Sandbox, code: str) -> str:
    rows = exact_with_articles.app.state.sandbox.divisions[DIVISION].rows["GLAccounts"]
    return str(next(g["ID"] for g in rows if g["Code"] == code))


@pytest.mark.parametrize("first", ["oss_de", "domestic"], ids=["oss-order-first", "domestic-order-first"])
async def test_an_item_is_created_from_the_settings_never_from_an_oss_line(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    exact_with_articles: Sandbox,
    lenient_shop: dict,
    first: str,
) -> None:
    booking = BOOKING.replace(insertion_type="sales_invoice", eu_consumer_vat="oss", oss_revenue_account="8040")
    integration = await shop_integration(engine, settings, exact_with_articles, booking)
    services = services_for(engine, settings, redis, exact_with_articles)
    first_order = serve(lenient_shop, first, "6201")
    sync_id = await queue(engine, integration, "6201")
    assert (await book_order(services, sync_id)).startswith("booked"), first_order["number"]
    item = sandbox_item(exact_with_articles, "TS-BLUE")
    if first == "oss_de":
        # The German line's code (D1, 19 %) and the OSS revenue account say nothing about the article at home.
        assert "SalesVatCode" not in item or not item.get("SalesVatCode")
        assert item.get("GLRevenue") in (None, "")  # the item group's revenue account applies, not OSS 8040
    else:
        assert str(item["SalesVatCode"]).strip() == "2"  # NL-21, the shop's own rate for the article
        assert item["GLRevenue"] == sandbox_gl_id(exact_with_articles, "8000")
        assert item["Description"] == "T-shirt blauw"  # the article's text, not the line's


def test_an_item_takes_the_articles_text_not_the_lines() -> None:
    from gateway.booking import items_needed, plan_booking
    from gateway.clients.mijnwebwinkel_models import MwwOrder
    from gateway.store.integrations import VatMapping

    data = copy.deepcopy(load_payload("order_domestic"))
    shirt_line = data["orderlines"][0]
    shirt_line["description"] = "T-shirt blauw - maat L, cadeauverpakking"  # the line's text carries the options
    shirt_line["price"] = [
        {"amount": "20.661157", "amount_including_tax": "25.00", "rate": "21.00"},
        {"amount": "22.935780", "amount_including_tax": "25.00", "rate": "9.00"},
    ]
    data["price"]["tax"] = [{"rate": "9.00", "amount": "4.43"}, {"rate": "21.00", "amount": "10.17"}]
    mappings = {c: VatMapping(c, code, gl, True) for c, (code, gl) in MAPPINGS.items()}
    settings = BOOKING.replace(insertion_type="sales_invoice")
    plan = plan_booking(MwwOrder.from_api(data), settings, mappings, home_country="NL")
    [shirt] = [need for need in items_needed(plan, settings) if need.code == "TS-BLUE"]
    assert (shirt.vat_code, shirt.gl_code, shirt.description) == ("2", "8000", "T-shirt blauw")


# ---------------------------------------------------------------- foreign currencies


@pytest.mark.parametrize("document_type", list(ENTITY))
async def test_a_gbp_order_is_booked_in_pounds_on_every_document_type(
    engine: AsyncEngine,
    settings: Settings,
    redis: ArqRedis,
    exact_with_articles: Sandbox,
    lenient_shop: dict,
    document_type: str,
) -> None:
    integration = await shop_integration(
        engine, settings, exact_with_articles, BOOKING.replace(insertion_type=document_type)
    )
    order = serve(lenient_shop, "gbp", "5301")
    sync_id = await queue(engine, integration, "5301")
    result = await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    assert result.startswith("booked"), result
    [document] = exact_with_articles.documents(ENTITY[document_type])
    assert document["Currency"] == "GBP"
    total = document["AmountFC"]
    if document_type == "sales_order":  # a sales order's AmountFC is excl. VAT
        total += sum(line["VATAmount"] for line in document["SalesOrderLines"])
    assert total == Decimal(order["price"]["total"])


async def test_a_journal_that_takes_only_euros_refuses_a_gbp_order_before_anything_is_sent(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(engine, settings, exact_with_articles)
    journals = exact_with_articles.app.state.sandbox.divisions[DIVISION].rows["Journals"]
    next(j for j in journals if j["Code"] == "70")["AllowVariableCurrency"] = False
    serve(lenient_shop, "gbp", "5302")
    sync_id = await queue(engine, integration, "5302")
    await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    stopped = await row(engine, sync_id)
    assert (stopped.state, stopped.error_kind) == ("failed", "currency")
    assert stopped.error_params == {"order": "5302", "currency": "GBP", "journal": "70", "journal_currency": "EUR"}
    assert exact_with_articles.documents("SalesEntries") == []


async def test_the_sandbox_refuses_a_currency_its_journal_does_not_take(exact_with_articles: Sandbox) -> None:
    from gateway.clients.errors import PermanentApiError

    journals = exact_with_articles.app.state.sandbox.divisions[DIVISION].rows["Journals"]
    next(j for j in journals if j["Code"] == "70")["AllowVariableCurrency"] = False
    [customer] = await exact_with_articles.exact.get_all(
        "crm/Accounts", select=["ID"], filter="Name eq 'Jan Jansen'", top=1
    )
    [gl] = await exact_with_articles.exact.get_all(
        "financial/GLAccounts", select=["ID"], filter="Code eq '8000'", top=1
    )
    entry = {
        "Journal": "70",
        "Customer": customer["ID"],
        "Currency": "GBP",
        "SalesEntryLines": [{"GLAccount": gl["ID"], "AmountFC": 10, "VATCode": "2"}],
    }
    with pytest.raises(PermanentApiError, match="journal 70 does not allow currency GBP"):
        await exact_with_articles.exact.post("salesentry/SalesEntries", entry)
    assert (await exact_with_articles.exact.post("salesentry/SalesEntries", {**entry, "Currency": "EUR"}))[
        "Currency"
    ] == "EUR"


# ---------------------------------------------------------------- long orders


def long_order(number: str, lines: int) -> dict[str, Any]:
    """A long order in the live shape: amounts as JSON numbers with float noise, rates as numbers and strings."""
    data = copy.deepcopy(load_payload("order_domestic"))
    data["number"] = number
    orderlines, total, vat = [], Decimal(0), {Decimal(21): Decimal(0), Decimal(9): Decimal(0)}
    for i in range(lines):
        rate = Decimal(21) if i % 3 else Decimal(9)
        incl = Decimal(199 + 37 * i) / 100
        excl = incl / (1 + rate / 100)
        orderlines.append(
            {
                "id": f"long-{i}",
                "type": "article",
                "quantity": (i % 4) + 1,
                "description": f"Artikel {i}",
                "price": {
                    "amount": float(round(excl, 6)),
                    "amount_including_tax": float(incl) + 1e-13,  # what a float-summing shop sends
                    "rate": float(rate) if i % 2 else f"{rate:.2f}",
                },
                "articles": [{"id": 1000 + i, "description": f"Artikel {i}", "sku": f"LONG-{i}"}],
            }
        )
        total += incl
        vat[rate] += incl - (excl.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP"))
    data["orderlines"] = orderlines
    data["price"] = {"tax": [{"rate": float(r), "amount": float(v)} for r, v in vat.items()], "total": float(total)}
    return data


async def test_a_long_order_with_float_noise_everywhere_books_once_to_the_cent(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, exact_with_articles: Sandbox, lenient_shop: dict
) -> None:
    integration = await shop_integration(engine, settings, exact_with_articles)
    lenient_shop["7001"] = data = long_order("7001", 150)
    sync_id = await queue(engine, integration, "7001")
    result = await book_order(services_for(engine, settings, redis, exact_with_articles), sync_id)
    assert result.startswith("booked"), result
    [entry] = exact_with_articles.documents("SalesEntries")
    assert len(entry["SalesEntryLines"]) == 150
    assert entry["AmountFC"] == Decimal(str(data["price"]["total"])).quantize(Decimal("0.01"))
    assert (await row(engine, sync_id)).order_total == f"{entry['AmountFC']:.2f}"


@pytest.mark.parametrize(
    ("references", "outcome"),
    [
        pytest.param(["6101/MW7"], "adopt", id="own-mark"),
        pytest.param(["6101/MW8"], None, id="another-integrations-mark"),
        pytest.param(["6101/MW8", "6101/MW7"], "adopt", id="own-among-others"),
        pytest.param(["6101/MW7", "6101/MW7"], "duplicate_mark", id="own-mark-twice"),
        pytest.param([""], "unmarked_document", id="no-payment-reference"),
        pytest.param(["6101"], "unmarked_document", id="order-number-only"),
        pytest.param(["9999/MW8"], "unmarked_document", id="a-mark-for-another-order"),
        pytest.param(["6101/MW-7"], "unmarked_document", id="not-a-mark"),
        pytest.param([], None, id="nothing"),
    ],
)
def test_only_this_orders_mark_is_proof(references: list[str], outcome: str | None) -> None:
    from gateway.booking import BookingError
    from gateway.clients.exact_documents import ExactDocument, own_document

    documents = [
        ExactDocument("sales_entry", f"id-{i}", f"2670{i:04d}", None, "6101", reference)
        for i, reference in enumerate(references)
    ]
    mark = booking_mark(7, "6101")
    if outcome in (None, "adopt"):
        found = own_document(documents, order_number="6101", mark=mark)
        assert (found.payment_reference if found else None) == (mark if outcome else None)
        return
    with pytest.raises(BookingError) as caught:
        own_document(documents, order_number="6101", mark=mark)
    assert (caught.value.kind, caught.value.state) == (outcome, "needs_review")
    assert caught.value.params["order"] == "6101"
