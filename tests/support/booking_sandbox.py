"""The sandbox Exact in-process, ready for the booking job: tokens issued, the articles a shop would have made, the
VAT categories mapped, and a look at what it stored."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clients.exact import ExactClient
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.exact_auth import store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.jobs.sync_order import BookingServices, services_from_context
from gateway.sandbox.exact import create_exact_sandbox
from gateway.settings import Settings
from gateway.store import credentials
from gateway.store.integrations import Integration, IntegrationSettings, save_vat_mapping
from tests.support.factories import create_active_integration
from tests.support.fake_exact import SHOP_TOKEN

SANDBOX_MAPPINGS = {
    "NL-21": ("2", "8000"),
    "NL-9": ("1", "8010"),
    "NL-0": ("0", "8020"),
    "EU-B2B": ("4", "8030"),
    "EXPORT": ("6", "8020"),
    "OSS-DE-19": ("D1", None),
    "OSS-DE-7": ("D2", None),
    "OSS-BE-21": ("B1", None),
    "OSS-BE-6": ("B2", None),
    "OSS-FR-20": ("F1", None),
    "OSS-FR-5.5": ("F2", None),
}
SANDBOX_BOOKING = IntegrationSettings(
    selected_statuses=(2, 3),
    journal_code="70",
    oss_revenue_account="8040",
    create_items=True,
    shipping_item="VERZEND",
    costs_item="BETAALKOSTEN",
    discount_item="KORTING",
    shipping_gl_account="8050",
    discount_gl_account="8060",
    payment_condition="14",
    invoice_status="final",
    send_invoice=True,
    warehouse="5f0b8c1e-0000-4000-8000-000000000001",
)
PLAIN_DIVISION, WHOLESALE_DIVISION = 123456, 234567  # the sandbox's seeds; only the second allows direct invoices


class Bearer(httpx.Auth):
    """A bearer token on every request (a client outside the gateway's token custody)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


INVOICES = "salesinvoice/SalesInvoices"
REDIRECT = "http://testserver/exact/callback"


@dataclass
class BookingSandbox:
    """The sandbox Exact (faults on, limits far away) on an httpx client mounted at the test settings' nl host."""

    app: Any
    http: httpx.AsyncClient
    settings: Settings
    tokens: ExactTokens  # issued to the gateway: store them for an integration

    @property
    def state(self) -> Any:
        return self.app.state.sandbox

    def division(self, code: int) -> Any:
        return self.state.divisions[code]

    def booked(self, code: int, entity: str) -> list[dict[str, Any]]:
        return list(self.division(code).rows[entity])

    def invoice(self, invoice_id: str, division: int = PLAIN_DIVISION) -> dict[str, Any]:
        found = self.division(division).find("SalesInvoices", "InvoiceID", invoice_id)
        assert found is not None
        return dict(found)

    def invoice_gets(self, since: int) -> list[Any]:
        """The GETs of sales invoices among the calls the sandbox received after the first `since`."""
        return [c for c in self.state.calls[since:] if (c.method, c.path) == ("GET", INVOICES)]

    def client(self, division: int = PLAIN_DIVISION) -> ExactClient:
        """A client outside the gateway, as someone working in Exact (no governor, a token of its own)."""
        return ExactClient(
            self.http, host=self.settings.exact_hosts["nl"], division=division, auth=Bearer(issue_token(self.app))
        )


def issue_tokens(app: Any) -> ExactTokens:
    """A fresh token pair from the sandbox's OAuth service, as the consent flow would get it."""
    service = app.state.sandbox.tokens
    code = service.new_code("test-client-id", REDIRECT)
    status, body = service.exchange({"code": code, "client_id": "test-client-id", "redirect_uri": REDIRECT})
    assert status == 200, body
    return ExactTokens(body["access_token"], body["refresh_token"], int(body["expires_in"]), utcnow())


def issue_token(app: Any) -> str:
    return issue_tokens(app).access_token


@asynccontextmanager
async def open_booking_sandbox(settings: Settings) -> AsyncIterator[BookingSandbox]:
    """A BookingSandbox whose administrations hold the costs and discount articles a shop would have made."""
    app = create_exact_sandbox(faults_enabled=True, minutely_limit=100_000, daily_limit=1_000_000)
    async with httpx.AsyncClient(mounts={settings.exact_hosts["nl"]: httpx.ASGITransport(app=app)}) as http:
        box = BookingSandbox(app, http, settings, issue_tokens(app))
        for division in (PLAIN_DIVISION, WHOLESALE_DIVISION):
            exact = box.client(division)
            for item, description in (("BETAALKOSTEN", "Betaalkosten"), ("KORTING", "Korting")):
                await exact.post("logistics/Items", {"Code": item, "Description": description, "IsSalesItem": True})
        yield box


async def sandbox_integration(
    engine: AsyncEngine,
    settings: Settings,
    sandbox: BookingSandbox,
    booking: IntegrationSettings = SANDBOX_BOOKING,
    division: int = PLAIN_DIVISION,
) -> Integration:
    """An active integration booking into one of the sandbox's administrations with the gateway's tokens."""
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, settings=booking, exact_division=division)
        await credentials.save_credential(
            conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SHOP_TOKEN, cipher=cipher
        )
        await store_tokens(conn, integration_id=integration.id, tokens=sandbox.tokens, cipher=cipher)
        for category, (code, gl) in SANDBOX_MAPPINGS.items():
            await save_vat_mapping(conn, integration_id=integration.id, category=category, vat_code=code, gl_account=gl)
    return integration


def sandbox_services(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, sandbox: BookingSandbox, **limits: int
) -> BookingServices:
    """The booking job's services talking to the sandbox; the rate limits far away unless given."""
    limits = {"exact_minutely_limit": 100_000, "exact_daily_limit": 1_000_000, **limits}
    fast = dataclasses.replace(settings, **limits)
    ctx = {"engine": engine, "settings": fast, "cipher": Cipher(fast.encryption_keys), "http": sandbox.http}
    return services_from_context({**ctx, "redis": redis})
