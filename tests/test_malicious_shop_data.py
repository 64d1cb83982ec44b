"""Hostile and unusual shop data through the real booking path: the sandbox shop serves the orders over HTTP, a real
worker books them in the sandbox Exact. HTML and script in names, SQL- and OData-looking e-mails and SKUs, a
500-line order, unicode of every kind (NUL included), negative and zero amounts. Each order is booked correctly
(one document, the shop's total to the cent) or fails with a readable message; the pages escape everything.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import pipeline
from gateway.app import create_app
from gateway.crypto import Cipher
from gateway.jobs.worker import create_worker
from gateway.sandbox.mww_seed import Customer, Line, SandboxOrder
from gateway.store import orders
from gateway.store.integrations import Integration, update_integration
from tests.support.factories import create_login, create_sandbox_integration, log_in
from tests.support.servers import POLLER_AWAY, FlowSandboxes

SCRIPT = '<script>alert("owned")</script>'
NASTY_NAMES = (f"{SCRIPT} & <b>Bold</b>", "Robert'); DROP TABLE order_sync;--", "Zoë 🫖 مرحبا 日本 \u202eevil\u0301")


def line(description: str, amount: str, rate: str = "21", *, sku: str | None = "SKU-1", quantity: int = 1) -> Line:
    return Line("article", description, ((amount, rate),), quantity, sku, 100)


def order(number: int, customer: Customer, lines: tuple[Line, ...], status: int = 2) -> SandboxOrder:
    today = date.today()  # noqa: DTZ011 - the sandbox shop's dates carry no zone
    return SandboxOrder(number, today, "10:00:00", status, f"{today} 10:00:00", customer, lines)


def hostile_orders() -> dict[str, SandboxOrder]:
    shipping = Line("shipping", "Verzendkosten", (("4.95", "21"),))
    cases = {
        "html_name": order(
            9101, Customer(NASTY_NAMES[0], "html@example.nl", "NL", "<i>Utrecht</i>"), (line("Pot", "24.20"), shipping)
        ),
        "sql_name": order(
            9102, Customer(NASTY_NAMES[1], "o'brien+tag@example.nl", "NL", "Leiden"), (line("Pot", "12.10"),)
        ),
        "odata_email": order(
            9103,
            Customer("Odata", "x' or Email ne 'y@example.nl", "NL", "Gouda"),
            (line("Thee ' or 1 eq 1", "10.90", "9", sku="TEA' or Code ne '"),),
        ),
        "unicode": order(
            9104,
            Customer(NASTY_NAMES[2], "zoë@exämple.nl", "NL", "Ünïcödé"),
            (line("Theepot 🫖 \u0000 nul", "30.25", sku="ÜBER-✓"), line("日本茶", "5.45", "9", sku=None)),
        ),
        "huge": order(
            9105,
            Customer("Groot", "groot@example.nl", "NL", "Zwolle"),
            tuple(
                line(f"Artikel {i}", f"{(i % 17) + 1}.{i % 100:02d}", "21" if i % 3 else "9", sku=f"A{i}")
                for i in range(500)
            ),
        ),
        "negative": order(
            9106,
            Customer("Negatief", "neg@example.nl", "NL", "Assen"),
            (line("Retour zonder creditstatus", "-24.20"), Line("discount", "Korting", (("-1.00", "21"),))),
        ),
        "zero": order(9107, Customer("Nul", "nul@example.nl", "NL", "Delft"), (line("Gratis monster", "0.00"),)),
        "mixed_sign": order(
            9108,
            Customer("Korting", "korting@example.nl", "NL", "Breda"),
            (line("Pot", "48.40", quantity=2), Line("discount", "Korting 100%", (("-48.40", "21"),))),
        ),
    }
    return {name: dataclasses.replace(o, live_shape=name == "unicode") for name, o in cases.items()}


async def book_hostile_orders(
    engine: AsyncEngine, redis: ArqRedis, sandboxes: FlowSandboxes, cases: dict[str, SandboxOrder] | None = None
) -> tuple[Integration, dict[str, SandboxOrder], str]:
    mww_app, exact_app, settings, _offset = sandboxes
    cipher = Cipher(settings.encryption_keys)
    email = f"owner-{secrets.token_hex(3)}@shop.test"
    async with engine.begin() as conn:
        account_id = await create_login(conn, email=email)
        integration = await create_sandbox_integration(
            conn, exact_app=exact_app, cipher=cipher, account_id=account_id, next_poll_at=POLLER_AWAY
        )
        booking = integration.settings.replace(discount_gl_account="8060")
        await update_integration(conn, integration_id=integration.id, settings=booking)
    shop = mww_app.state.sandbox.main_shop()
    cases = cases or hostile_orders()
    for case in cases.values():
        shop.orders[case.number] = case
        await pipeline.accept_notice(
            engine,
            redis,
            integration=integration,
            order_number=str(case.number),
            status_id=case.status,
            source="webhook",
            dedupe_key=f"hostile-{case.number}",
        )
    async with httpx.AsyncClient() as http:
        worker = create_worker(
            settings,
            redis_pool=redis,
            burst=True,
            with_cron=False,
            handle_signals=False,
            ctx={"engine": engine, "http": http},
        )
        await worker.async_run()  # burst: every queued job once; outcomes are read from the rows
    return integration, cases, email


def readable(message: str | None) -> bool:
    """A message a shop owner can act on: words, no traceback, no SQL, no object dumps."""
    text = message or ""
    return 10 <= len(text) <= 600 and not re.search(r"Traceback|Error\(|SELECT |INSERT |0x[0-9a-f]{6}|\[SQL", text)


async def outcomes_of(
    engine: AsyncEngine, exact_app: Any, integration: Integration, cases: dict[str, SandboxOrder]
) -> dict[str, str]:
    """Each case's state, after checking it is booked to the cent once, or failed readably without a document."""
    entries = exact_app.state.sandbox.divisions[integration.exact_division].rows["SalesEntries"]
    outcomes = {}
    async with engine.connect() as conn:
        for name, case in cases.items():
            sync = await orders.get_sync_by_number(conn, integration_id=integration.id, order_number=str(case.number))
            assert sync is not None, name
            documents = [e for e in entries if e.get("YourRef") == str(case.number)]
            outcomes[name] = sync.state
            if sync.state == "booked":
                [document] = documents
                assert document["EntryID"] == sync.exact_document_id, name
                total, _vat = case.totals()
                assert Decimal(str(document["AmountFC"])) == total.quantize(Decimal("0.01")), name
                # Kept as the shop sent it (a NUL, which PostgreSQL text cannot hold, may be dropped).
                assert sync.customer_name in (case.customer.name, case.customer.name.replace("\x00", "")), name
            else:
                assert sync.state in ("failed", "needs_attention"), f"{name} left {sync.state}: {sync.last_error}"
                assert documents == [], name
                assert readable(sync.last_error), f"{name}: {sync.last_error!r}"
    return outcomes


async def test_hostile_orders_are_booked_to_the_cent_or_fail_readably(
    engine: AsyncEngine, redis: ArqRedis, flow_sandboxes: FlowSandboxes
) -> None:
    integration, cases, _email = await book_hostile_orders(engine, redis, flow_sandboxes)
    outcomes = await outcomes_of(engine, flow_sandboxes[1], integration, cases)
    # The hostile text itself never stops a booking: these must all be in Exact.
    for name in ("html_name", "sql_name", "odata_email", "unicode", "huge", "mixed_sign"):
        assert outcomes[name] == "booked", outcomes
    entries = flow_sandboxes[1].state.sandbox.divisions[integration.exact_division].rows["SalesEntries"]
    big = next(e for e in entries if e.get("YourRef") == "9105")
    assert len(big["SalesEntryLines"]) == 500


async def test_a_nul_in_shop_data_is_booked_or_fails_readably(
    engine: AsyncEngine, redis: ArqRedis, flow_sandboxes: FlowSandboxes
) -> None:
    customer = Customer("Nul\x00Byte", "nul-byte@example.nl", "NL", "Ede\x00")
    case = {"nul": order(9110, customer, (line("Pot\x00", "24.20", sku="NUL\x00SKU"),))}
    integration, cases, _email = await book_hostile_orders(engine, redis, flow_sandboxes, case)
    assert await outcomes_of(engine, flow_sandboxes[1], integration, cases) == {"nul": "booked"}


async def test_pages_escape_every_hostile_value(
    engine: AsyncEngine, redis: ArqRedis, flow_sandboxes: FlowSandboxes
) -> None:
    integration, cases, email = await book_hostile_orders(engine, redis, flow_sandboxes)
    settings = flow_sandboxes[2]
    with TestClient(create_app(settings)) as client:
        log_in(client, email)
        pages = [
            client.get(f"/integrations/{integration.id}/history"),
            client.get(f"/integrations/{integration.id}/dashboard"),
        ]
        async with engine.connect() as conn:
            syncs, _total = await orders.list_syncs(conn, integration_id=integration.id, limit=50)
        pages += [client.get(f"/integrations/{integration.id}/history/{sync.id}") for sync in syncs]
        pages.append(client.get(f"/integrations/{integration.id}/history", params={"q": SCRIPT}))
    assert len(syncs) == len(cases)
    for page in pages:
        assert page.status_code == 200, page.url
        assert SCRIPT not in page.text, page.url
        assert "<b>Bold</b>" not in page.text, page.url
        assert "<i>Utrecht</i>" not in page.text, page.url
    history = pages[0].text
    assert "&lt;script&gt;" in history  # shown, escaped
    assert "Robert&#39;); DROP TABLE order_sync;--" in history or "Robert'); DROP TABLE" in history
