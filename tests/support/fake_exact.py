"""Exact and the shop for the booking job, served by respx: one Exact division that checks, stores and numbers what
it is sent (and misbehaves on request), the shop's order endpoint, and an integration connected to both with orders
queued for it."""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.exact_auth import store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.settings import Settings
from gateway.store import attempts as attempt_store, credentials, notices, orders
from gateway.store.integrations import Integration, IntegrationSettings, save_vat_mapping
from tests.support.environment import load_payload
from tests.support.exact_contract import CONTRACTS
from tests.support.factories import create_active_integration

DIVISION = 123456
LINES = {"SalesEntries": "SalesEntryLines", "SalesInvoices": "SalesInvoiceLines", "SalesOrders": "SalesOrderLines"}
NUMBERED = {"SalesEntries": "EntryNumber", "SalesOrders": "OrderNumber"}
KEYS = {"SalesEntries": "EntryID", "SalesInvoices": "InvoiceID", "SalesOrders": "OrderID"}
SHOP_TOKEN = "shop-token-s3cr3t-4242"
ACCESS_TOKEN = "exact-access-s3cr3t-4242"
MAPPINGS = {
    "NL-21": ("VH", "8000"),
    "NL-9": ("VL", "8010"),
    "EU-B2B": ("ICP", "8100"),
    "OSS-DE-19": ("D19", "8300"),
    "OSS-DE-7": ("D7", "8300"),
}
BOOKING = IntegrationSettings(
    selected_statuses=(2, 3),
    journal_code="70",
    eu_consumer_vat="oss",
    create_items=True,
    shipping_item="SHIP",
    costs_item="COSTS",
    discount_item="DISC",
    shipping_gl_account="8050",
    warehouse="5f0b8c1e-0000-4000-8000-000000000001",
)
_FILTER = re.compile(r"(\w+) eq (?:guid)?'((?:[^']|'')*)'")


class FakeExact:
    """One Exact division served by respx: it checks POST bodies against Exact's contract, stores what it gets,
    answers `$filter=X eq '…'` look-ups from what it stored, and misbehaves on request (`fail`)."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.requests: list[tuple[str, str]] = []
        self.faults: dict[str, list[Any]] = defaultdict(list)
        self.numbers = 26700000
        for code in ("8000", "8010", "8050", "8060", "8070", "8100", "8300"):
            self.rows["GLAccounts"].append({"ID": str(uuid.uuid4()), "Code": code})
        for code in ("SHIP", "COSTS", "DISC"):
            self.rows["Items"].append({"ID": str(uuid.uuid4()), "Code": code, "GLRevenue": None})
        path = rf"/api/v1/{DIVISION}/\w+/(?P<entity>\w+)"
        router.route(method="GET", path__regex=path).mock(side_effect=self.get)
        router.route(method="POST", path__regex=path).mock(side_effect=self.post)

    def fail(self, entity: str, *effects: Any) -> None:
        """Next POSTs to `entity`: "timeout-after-store", "503-after-store", an httpx.Response (not stored), or an
        awaitable factory run after storing (to hold the request open)."""
        self.faults[entity].extend(effects)

    def documents(self, entity: str) -> list[dict[str, Any]]:
        return self.rows[entity]

    def get(self, request: httpx.Request, entity: str) -> httpx.Response:
        self.requests.append(("GET", entity))
        text = request.url.params.get("$filter", "")
        conditions = _FILTER.findall(text)
        joined = any if " or " in text else all  # batched look-ups chain `Code eq '…' or Code eq '…'`
        rows = [
            r
            for r in self.rows[entity]
            if joined(str(r.get(k, "")).strip() == v.replace("''", "'") for k, v in conditions)
        ]
        top = int(request.url.params.get("$top", len(rows) or 1))
        return httpx.Response(200, json={"d": {"results": json.loads(json.dumps(rows[:top], default=str))}})

    async def post(self, request: httpx.Request, entity: str) -> httpx.Response:
        self.requests.append(("POST", entity))
        body = json.loads(request.content, parse_float=Decimal)
        effect = self.faults[entity].pop(0) if self.faults[entity] else None
        if isinstance(effect, httpx.Response):
            return effect
        problem = self.refuse(entity, body)
        if problem:
            return httpx.Response(400, json={"error": {"code": "", "message": {"lang": "", "value": problem}}})
        stored = self.store(entity, body)
        if effect == "timeout-after-store":
            raise httpx.ReadTimeout("timed out", request=request)
        if effect == "503-after-store":
            return httpx.Response(503, json={"error": {"message": {"value": "Service unavailable"}}})
        if callable(effect):
            await effect()
        return httpx.Response(201, json={"d": json.loads(json.dumps(stored, default=str))})

    def refuse(self, entity: str, body: dict[str, Any]) -> str:
        """Why Exact would refuse this document (see tests/support/exact_contract.py), or ""."""
        contract = CONTRACTS[entity]
        problems = [contract.refusal(body)]
        if contract.lines:
            problems += [CONTRACTS[contract.lines].refusal(line, nested=True) for line in body.get(contract.lines, [])]
        return next((p for p in problems if p), "")

    def store(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity == "PrintedSalesInvoices":
            invoice = next(r for r in self.rows["SalesInvoices"] if r["InvoiceID"] == body["InvoiceID"])
            self.numbers += 1
            invoice.update(Status=50, InvoiceNumber=self.numbers)
            self.rows[entity].append(body)
            return {**body, "EmailCreationSuccess": "sent" if body.get("SendEmailToCustomer") else None}
        stored = {**body, KEYS.get(entity, "ID"): str(uuid.uuid4())}
        if entity in NUMBERED:
            self.numbers += 1
            stored[NUMBERED[entity]] = self.numbers
        if entity == "SalesInvoices":
            stored.update(Status=20, InvoiceNumber=None)
        self.rows[entity].append(stored)
        return stored


def serve_orders(router: respx.MockRouter) -> dict[str, dict[str, Any]]:
    """Serve shop orders from a dict (by number) on the Mijnwebwinkel router; returns that dict to fill."""
    served: dict[str, dict[str, Any]] = {}

    def order(request: httpx.Request, number: str) -> httpx.Response:
        assert request.url.params["token"] == SHOP_TOKEN
        if number not in served:
            return httpx.Response(404, json={"title": "Not found", "status": 404})
        return httpx.Response(200, json=served[number])

    router.get(path__regex=r"/orders/(?P<number>\d+)$").mock(side_effect=order)
    return served


async def connected_integration(
    engine: AsyncEngine, settings: Settings, booking: IntegrationSettings = BOOKING, **columns: Any
) -> Integration:
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, settings=booking, **columns)
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SHOP_TOKEN, cipher=cipher
        )
        tokens = ExactTokens(ACCESS_TOKEN, "exact-refresh-s3cr3t", 600, utcnow())
        await store_tokens(conn, integration_id=integration.id, tokens=tokens, cipher=cipher)
        for category, (code, gl) in MAPPINGS.items():
            await save_vat_mapping(conn, integration_id=integration.id, category=category, vat_code=code, gl_account=gl)
    return integration


async def queued_order(
    engine: AsyncEngine, shop: dict[str, Any], integration: Integration, name: str, number: str | None = None
) -> int:
    data = load_payload(f"order_{name}")
    if number:
        data["number"] = number
    shop[str(data["number"])] = data
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number=str(data["number"]),
            status_id=2,
            source="poller",
            dedupe_key=f"{data['number']}:2",
            selected_statuses=(2, 3),
        )
    assert outcome.order_sync_id is not None
    return outcome.order_sync_id


async def sync_row(engine: AsyncEngine, order_sync_id: int) -> orders.OrderSync:
    async with engine.connect() as conn:
        found = await orders.get_sync_for_job(conn, order_sync_id=order_sync_id)
    assert found is not None
    return found


async def attempts(engine: AsyncEngine, sync: orders.OrderSync) -> list[attempt_store.SyncAttempt]:
    async with engine.connect() as conn:
        return list(
            reversed(await attempt_store.list_attempts(conn, integration_id=sync.integration_id, order_sync_id=sync.id))
        )
