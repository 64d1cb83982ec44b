"""Arrange helpers: rows created through the store, returned as the store's dataclasses; the `gateway` command run
in-process."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import tables
from gateway.clock import utcnow
from gateway.store.integrations import (
    Integration,
    IntegrationSettings,
    create_integration,
    get_integration_or_raise,
    update_integration as _update,
)

_counter = {"n": 0}


async def create_account(conn: AsyncConnection, *, email: str | None = None, password_hash: str = "x") -> int:
    _counter["n"] += 1
    email = email or f"owner{_counter['n']}@shop.test"
    result = await conn.execute(
        tables.account.insert()
        .values(email=email, password_hash=password_hash, created_at=utcnow())
        .returning(tables.account.c.id)
    )
    return int(result.scalar_one())


async def create_active_integration(
    conn: AsyncConnection,
    *,
    account_id: int | None = None,
    settings: IntegrationSettings | None = None,
    **columns: Any,
) -> Integration:
    """An integration that is connected on both sides and switched on, with statuses 2 and 3 selected."""
    account_id = account_id or await create_account(conn)
    integration = await create_integration(conn, account_id=account_id, name="Test shop")
    values: dict[str, Any] = {
        "state": "active",
        "shop_name": "Test shop",
        "shop_country": "NL",
        "shop_connection": "connected",
        "exact_country": "nl",
        "exact_division": 123456,
        "exact_connection": "connected",
        "settings": settings or IntegrationSettings(selected_statuses=(2, 3), journal_code="70"),
    }
    values.update(columns)
    await _update(conn, integration_id=integration.id, **values)
    return await get_integration_or_raise(conn, integration_id=integration.id)


def cli_environ(settings: Any, **extra: str) -> dict[str, str]:
    """The environment a `gateway ...` command needs to reach the test database and Redis (for `cli.main`)."""
    return {
        "GATEWAY_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": str(settings.secret_key),
        "ENCRYPTION_KEYS": ",".join(str(k) for k in settings.encryption_keys),
        "MWW_BASE_URL": settings.mww_base_url,
        "MWW_PARTNER_TOKEN": str(settings.mww_partner_token),
        "LOG_LEVEL": "INFO",
        **extra,
    }


async def connect_exact_sandbox(conn: AsyncConnection, *, integration_id: int, sandbox_app: Any, cipher: Any) -> Any:
    """Store a live token pair from the sandbox Exact for the integration, as if the OAuth flow had just run.

    Returns the ExactTokens (tests compare them with what they find in rows and logs)."""
    from datetime import UTC, datetime

    from gateway.exact_auth import store_tokens
    from gateway.exact_oauth import ExactTokens

    service = sandbox_app.state.sandbox.tokens
    redirect = "http://testserver/connect/exact/callback"
    code = service.new_code("test-client-id", redirect)
    status, body = service.exchange({"code": code, "client_id": "test-client-id", "redirect_uri": redirect})
    assert status == 200, body
    tokens = ExactTokens(
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        expires_in=int(body["expires_in"]),
        issued_at=datetime.fromtimestamp(service.clock(), tz=UTC),
    )
    await store_tokens(conn, integration_id=integration_id, tokens=tokens, cipher=cipher)
    return tokens


# --- Customer pages: accounts with real passwords, and logging in through the pages ----------------------------------

PAGE_PASSWORD = "correct horse battery staple"


async def create_login(conn: AsyncConnection, *, email: str, password: str = PAGE_PASSWORD, locale: str = "en") -> int:
    """An account whose password works on the login page (argon2id hash)."""
    from gateway.passwords import hash_password
    from gateway.store.accounts import create_account as create

    account = await create(conn, email=email, password_hash=hash_password(password), locale=locale)
    return account.id


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def log_in(client: Any, email: str, password: str = PAGE_PASSWORD) -> None:
    """Log in through the login page (fresh session); asserts it worked."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"csrf_token": token, "email": email, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


# --- Both sandboxes over real HTTP: an integration the real clients can book with -----------------------------------

SANDBOX_VAT_MAPPINGS = {"NL-21": ("2", "8000"), "NL-9": ("1", "8010")}  # codes the sandbox Exact is seeded with


async def create_sandbox_integration(
    conn: AsyncConnection, *, exact_app: Any, cipher: Any, **columns: Any
) -> Integration:
    """An active integration on the sandbox shop and the sandbox Exact's first administration, booking sales entries
    in journal 70 with the domestic VAT categories mapped (enough for the sandbox's "domestic" order template)."""
    from gateway.sandbox.exact_seed import DIVISIONS
    from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN
    from gateway.store import credentials
    from gateway.store.integrations import save_vat_mapping

    booking = IntegrationSettings(selected_statuses=(2, 3), journal_code="70", shipping_gl_account="8050")
    integration = await create_active_integration(conn, settings=booking, exact_division=DIVISIONS[0].code, **columns)
    await credentials.save_credential(
        conn, integration_id=integration.id, kind=credentials.SHOP_TOKEN, secret=SANDBOX_SHOP_TOKEN, cipher=cipher
    )
    await connect_exact_sandbox(conn, integration_id=integration.id, sandbox_app=exact_app, cipher=cipher)
    for category, (vat_code, gl_account) in SANDBOX_VAT_MAPPINGS.items():
        await save_vat_mapping(
            conn, integration_id=integration.id, category=category, vat_code=vat_code, gl_account=gl_account
        )
    return integration


def run_cli(settings: Any, argv: list[str], **environ: str) -> int:
    """Run one `gateway` command in-process, as a shell would, and leave the test's logging as it was.

    `cli.main` configures logging for the process (a handler on the test's captured stderr, which closes with the
    test); the previous root handlers, levels and record factory come back afterwards.
    """
    import logging

    from gateway.cli import main

    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "uvicorn.access")}
    try:
        return main(argv, cli_environ(settings, **environ))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.setLogRecordFactory(factory)
        for name, library_level in libraries.items():
            logging.getLogger(name).setLevel(library_level)


async def add_order(
    engine: AsyncEngine, integration: Integration, number: str, *, state: str = "queued", **details: object
) -> int:
    """An order sync in `state`, as the pipeline and the job would leave it."""
    from gateway.store import notices, orders

    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number=number,
            status_id=2 if state != "skipped" else 9,
            source="poller",
            dedupe_key=f"{number}:x",
            selected_statuses=(2,),
        )
        sync_id = int(outcome.order_sync_id or 0)
        if details:
            await orders.update_order_details(conn, integration_id=integration.id, order_sync_id=sync_id, **details)
        if state == "booked":
            await orders.mark_booked(
                conn,
                integration_id=integration.id,
                order_sync_id=sync_id,
                document_type="sales_invoice",
                exact_document_id="00000000-0000-0000-0000-0000000000ab",
                exact_document_number="2026/0042",
            )
        elif state == "failed":
            await orders.mark_failed(
                conn,
                integration_id=integration.id,
                order_sync_id=sync_id,
                error_kind="unmapped_vat",
                message="map VAT category NL-21",
            )
        elif state == "needs_attention":
            await orders.mark_needs_attention(
                conn,
                integration_id=integration.id,
                order_sync_id=sync_id,
                error_kind="credit_sales_order",
                message="credit order as sales order",
            )
    return sync_id
