"""`gateway demo`'s ready shop: the demo login gets the sandbox shop De Theepot, connected to both sandboxes through
the real flows (token check, Exact's OAuth consent), set up with the wizard's own pre-filled answers and switched on
with the export of the last weeks, so a newcomer sees orders booked within a minute, and one stopped with its reason
(the French OSS rates are marked "not used"). Seeded once per account; used by nothing but the demo."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import setup_forms
from gateway.clock import local_now, utcnow
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.exact_auth import complete_connection, exact_client_for
from gateway.exact_oauth import AUTHORIZE_PATH, redirect_uri
from gateway.jobs.initial_export import start_initial_export
from gateway.queue import create_arq_pool
from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN
from gateway.settings import Settings
from gateway.shop_connection import connect_shop, mww_client_for
from gateway.store.accounts import get_account_by_email
from gateway.store.integrations import (
    NOT_USED,
    Integration,
    IntegrationSettings,
    create_integration,
    get_integration_or_raise,
    list_integrations,
    save_settings,
    save_vat_mapping,
    update_integration,
)
from gateway.vat import categories_from_regions

logger = logging.getLogger("gateway.demo")
DEMO_DIVISION = 123456
EXPORT_DAYS = 30
NOT_USED_PREFIX = "OSS-FR-"  # one order (France) stops with a readable reason, to show what a failure looks like


async def seed_demo_shop(settings: Settings, email: str) -> None:
    """Give the demo account its shop once (an account that has a shop is left alone)."""
    engine = create_engine(settings.database_url)
    arq = await create_arq_pool(settings.redis_url)
    try:
        async with engine.begin() as conn:
            account = await get_account_by_email(conn, email=email)
            if account is None or await list_integrations(conn, account_id=account.id):
                return
            integration = await create_integration(conn, account_id=account.id, name="De Theepot (demo)")
        async with httpx.AsyncClient(timeout=30) as http:
            await _connect(settings, engine, arq, http, integration)
            await _set_up(settings, engine, arq, http, integration.id)
        logger.info("demo shop ready for %s: orders of the last %s days are being booked", email, EXPORT_DAYS)
    finally:
        await arq.aclose()
        await engine.dispose()


async def _connect(
    settings: Settings, engine: AsyncEngine, arq: ArqRedis, http: httpx.AsyncClient, shop: Integration
) -> None:
    cipher = Cipher(settings.encryption_keys)
    await connect_shop(
        engine, settings=settings, cipher=cipher, http=http, integration_id=shop.id, shop_token=SANDBOX_SHOP_TOKEN
    )
    # Exact's consent page, answered as the owner would (the sandbox Exact), then the callback's own work.
    host = settings.exact_hosts["nl"]
    form = {"client_id": settings.exact_client_id, "redirect_uri": redirect_uri(settings), "state": "demo"}
    consent = await http.post(f"{host}{AUTHORIZE_PATH}", data={**form, "decision": "approve"})
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    await complete_connection(
        engine=engine, settings=settings, cipher=cipher, http=http, redis=arq, integration=shop, country="nl", code=code
    )


async def _set_up(
    settings: Settings, engine: AsyncEngine, arq: ArqRedis, http: httpx.AsyncClient, shop_id: int
) -> None:
    """The wizard's pre-filled answers: statuses 2 and 3, OSS, best VAT codes and accounts, sales entries."""
    async with engine.begin() as conn:
        await update_integration(conn, integration_id=shop_id, exact_division=DEMO_DIVISION)
        shop = await get_integration_or_raise(conn, integration_id=shop_id)
    client = await exact_client_for(
        engine=engine,
        settings=settings,
        cipher=Cipher(settings.encryption_keys),
        http=http,
        redis=arq,
        integration=shop,
    )
    codes, accounts, journals = (
        await client.list_vat_codes(),
        await client.list_gl_accounts(),
        await client.list_journals(),
    )
    async with engine.connect() as conn:
        mww = await mww_client_for(
            conn, settings=settings, cipher=Cipher(settings.encryption_keys), http=http, integration_id=shop_id
        )
    regions = await mww.list_tax_regions()
    categories = categories_from_regions(regions, home_country=shop.shop_country or "NL", eu_consumer_vat="oss")
    start = (local_now() - timedelta(days=EXPORT_DAYS)).date()
    chosen = IntegrationSettings(
        selected_statuses=(2, 3),
        eu_consumer_vat="oss",
        oss_revenue_account=setup_forms.suggest_gl_account("OSS-", accounts),
        journal_code=min(journals, key=lambda j: (len(j.code), j.code)).code,
        initial_export_start=start.isoformat(),
        completed_steps=("statuses", "export", "administration", "vat", "booking", "items", "service"),
    )
    async with engine.begin() as conn:
        for category in categories:
            code = setup_forms.suggest_vat_code(category, codes) or NOT_USED
            code = NOT_USED if category.startswith(NOT_USED_PREFIX) else code
            account = setup_forms.suggest_gl_account(category, accounts) if code != NOT_USED else ""
            await save_vat_mapping(
                conn, integration_id=shop_id, category=category, vat_code=code, gl_account=account or None
            )
        await save_settings(conn, integration_id=shop_id, settings=chosen)
        now = utcnow()
        await update_integration(
            conn, integration_id=shop_id, state="active", activated_at=now, next_poll_at=now, wizard_step="review"
        )
        await start_initial_export(conn, arq, integration_id=shop_id, start_date=start)
