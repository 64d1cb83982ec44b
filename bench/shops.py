"""Proof shops: integrations set up the way a shop owner would end up, each with its own sandbox shop and its own
Exact administration (so YourRef is unique per administration and Exact's limits apply per shop).

Rows go in through the gateway's own store functions; the Exact tokens come from the sandbox's OAuth endpoints over
HTTP (authorize, then exchange the code), exactly as the callback would store them. Also: creating sandbox orders,
signing notices, and reading the outcome back (order rows, documents in the sandbox Exact per YourRef).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import Stack
from bench.sandboxes import PROOF_CLIENT_ID, PROOF_CLIENT_SECRET
from gateway import tables
from gateway.crypto import Cipher
from gateway.exact_auth import store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.shop_connection import rotate_signing_secret, rotate_webhook_key
from gateway.store import accounts, credentials
from gateway.store.integrations import IntegrationSettings, create_integration, save_vat_mapping, update_integration

PROOF_SETTINGS = IntegrationSettings(
    selected_statuses=(2, 3),
    insertion_type="sales_entry",
    journal_code="70",
    shipping_gl_account="8050",
    completed_steps=("shop", "exact", "statuses", "booking", "vat"),
)
VAT_MAPPINGS = {"NL-21": ("2", "8000"), "NL-9": ("1", "8010"), "NL-0": ("0", "8020")}
NO_LOGIN = "!proof-no-login"  # not a hash of anything: proof accounts cannot log in
REDIRECT_URI = "http://127.0.0.1/connect/exact/callback"


@dataclass(frozen=True)
class ProofShop:
    integration_id: int
    label: str
    shop_token: str
    webhook_key: str
    signing_secret: str
    division: int


@dataclass
class ShopFactory:
    """Creates proof shops on one running Stack. Holds every secret it made, for the leak scans."""

    stack: Stack
    engine: AsyncEngine
    http: httpx.AsyncClient
    next_division: int = 700_001
    secrets_made: list[str] = field(default_factory=list)

    @property
    def cipher(self) -> Cipher:
        return Cipher(self.stack.settings.encryption_keys)

    async def add_shops(self, count: int, *, label: str) -> list[ProofShop]:
        tokens = [f"proof-{label}-{i:03d}-{secrets.token_urlsafe(12)}" for i in range(count)]
        divisions = list(range(self.next_division, self.next_division + count))
        self.next_division += count
        await self._post("mww", "/_proof/shops", {"tokens": tokens})
        await self._post("exact", "/_proof/divisions", {"codes": divisions})
        shops = []
        for index, (token, division) in enumerate(zip(tokens, divisions, strict=True)):
            shops.append(await self._integration(f"{label}-{index:03d}", token, division))
        return shops

    async def _integration(self, label: str, shop_token: str, division: int) -> ProofShop:
        tokens = await self.exact_consent()
        async with self.engine.begin() as conn:
            account = await accounts.create_account(
                conn, email=f"{label}-{secrets.token_hex(3)}@proof.test", password_hash=NO_LOGIN
            )
            integration = await create_integration(conn, account_id=account.id, name=f"Proof {label}")
            await update_integration(
                conn,
                integration_id=integration.id,
                state="active",
                shop_name=f"Proof {label}",
                shop_country="NL",
                shop_connection="connected",
                exact_country="nl",
                exact_division=division,
                exact_division_name=f"Proef administratie {division}",
                exact_connection="connected",
                settings=PROOF_SETTINGS,
            )
            for category, (vat_code, gl) in VAT_MAPPINGS.items():
                await save_vat_mapping(
                    conn, integration_id=integration.id, category=category, vat_code=vat_code, gl_account=gl
                )
            await credentials.save_credential(
                conn,
                integration_id=integration.id,
                kind=credentials.SHOP_TOKEN,
                secret=shop_token,
                cipher=self.cipher,
            )
            key = await rotate_webhook_key(conn, integration_id=integration.id)
            secret = await rotate_signing_secret(conn, integration_id=integration.id, cipher=self.cipher)
            await store_tokens(conn, integration_id=integration.id, tokens=tokens, cipher=self.cipher)
        self.secrets_made += [shop_token, key, secret, tokens.access_token, tokens.refresh_token]
        return ProofShop(integration.id, label, shop_token, key, secret, division)

    async def exact_consent(self) -> ExactTokens:
        """Approve the sandbox's consent page and exchange the code, as the OAuth callback does."""
        base = self.stack.url("exact")
        approve = await self.http.post(
            f"{base}/api/oauth2/auth",
            data={"client_id": PROOF_CLIENT_ID, "redirect_uri": REDIRECT_URI, "state": "s", "decision": "approve"},
        )
        code = parse_qs(urlsplit(approve.headers["location"]).query)["code"][0]
        answer = await self.http.post(
            f"{base}/api/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": PROOF_CLIENT_ID,
                "client_secret": PROOF_CLIENT_SECRET,
                "redirect_uri": REDIRECT_URI,
            },
        )
        answer.raise_for_status()
        body = answer.json()
        return ExactTokens(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            expires_in=int(body["expires_in"]),
            issued_at=datetime.now(UTC),
        )

    async def create_orders(
        self, shop: ProofShop, numbers: list[int], *, lines: Any = "domestic", customer: dict[str, str] | None = None
    ) -> None:
        for start in range(0, len(numbers), 2000):
            body: dict[str, Any] = {"shop_token": shop.shop_token, "numbers": numbers[start : start + 2000]}
            body |= {"lines": lines, "status": 2} | ({"customer": customer} if customer else {})
            await self._post("mww", "/_proof/orders", body)

    async def _post(self, which: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(self.stack.url(which) + path, json=body)
        response.raise_for_status()
        return dict(response.json())

    async def documents(self, shops: list[ProofShop]) -> dict[int, dict[str, Any]]:
        """{division: {entity: {YourRef: count}, "accounts": n}} for the shops' administrations."""
        codes = ",".join(str(s.division) for s in shops)
        response = await self.http.get(self.stack.url("exact") + f"/_proof/documents?divisions={codes}")
        response.raise_for_status()
        return {int(k): v for k, v in response.json()["divisions"].items()}


def sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks v1: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" keyed with the bytes behind "whsec_".

    Written from the spec here rather than imported, so the proof does not trust the gateway's own signer."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    return base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()


def notice(
    stack: Stack, shop: ProofShop, number: int, *, status: int = 2, skew: float = 0.0, signed: bool = True
) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) of one webhook notice, signed with the shop's secret at now + `skew` seconds."""
    body = json.dumps({"order_number": str(number), "status": status}).encode()
    msg_id = f"msg_{secrets.token_hex(10)}"
    stamp = str(int(time.time() + skew))
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": stamp}
    if signed:
        headers["webhook-signature"] = "v1," + sign(shop.signing_secret, msg_id, stamp, body)
    return f"{stack.url('web')}/webhooks/mijnwebwinkel/{shop.webhook_key}", body, headers


@dataclass(frozen=True)
class OrderRow:
    integration_id: int
    order_number: str
    state: str
    error_kind: str | None
    last_error: str | None
    exact_document_id: str | None
    booked_at: datetime | None
    attempts: int


async def order_rows(engine: AsyncEngine, integration_ids: list[int]) -> list[OrderRow]:
    c = tables.order_sync.c
    query = select(
        c.integration_id,
        c.order_number,
        c.state,
        c.error_kind,
        c.last_error,
        c.exact_document_id,
        c.booked_at,
        c.attempts,
    ).where(c.integration_id.in_(integration_ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        OrderRow(*r[:6], r[6].replace(tzinfo=UTC) if r[6] and r[6].tzinfo is None else r[6], int(r[7])) for r in rows
    ]


async def state_counts(engine: AsyncEngine, integration_ids: list[int]) -> Counter[str]:
    c = tables.order_sync.c
    query = select(c.state, func.count()).where(c.integration_id.in_(integration_ids)).group_by(c.state)
    async with engine.connect() as conn:
        return Counter({state: int(n) for state, n in (await conn.execute(query)).all()})


async def attempt_outcomes(engine: AsyncEngine, integration_ids: list[int]) -> Counter[str]:
    """Booking attempts by outcome (booked, adopted, transient, permanent): the evidence that a fault was met."""
    c = tables.sync_attempt.c
    query = select(c.outcome, func.count()).where(c.integration_id.in_(integration_ids)).group_by(c.outcome)
    async with engine.connect() as conn:
        return Counter({outcome: int(n) for outcome, n in (await conn.execute(query)).all()})


async def event_count(engine: AsyncEngine, integration_ids: list[int]) -> int:
    c = tables.order_event.c
    query = select(func.count()).select_from(tables.order_event).where(c.integration_id.in_(integration_ids))
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())
