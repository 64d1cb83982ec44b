"""Look-ups for the settings pages: only what a booking may use, cached per integration, invalidated on demand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import lookups, tables
from gateway.clients.exact import ExactClient
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.exact_auth import exact_client_for
from gateway.settings import Settings
from gateway.store.integrations import Integration
from tests.support.factories import connect_exact_sandbox, create_active_integration


async def connected_client(
    engine: AsyncEngine,
    settings: Settings,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    **columns: Any,
) -> tuple[Integration, ExactClient]:
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, **columns)
        await connect_exact_sandbox(conn, integration_id=integration.id, sandbox_app=exact_sandbox, cipher=cipher)
    client = await exact_client_for(
        engine=engine, settings=settings, cipher=cipher, http=exact_sandbox_http, redis=redis, integration=integration
    )
    return integration, client


def api_calls(exact_sandbox: Any) -> int:
    return len(exact_sandbox.state.sandbox.calls)


async def test_vat_codes_offer_only_unblocked_sales_codes_with_their_oss_country(
    engine: AsyncEngine, settings: Settings, exact_sandbox_http: Any, redis: ArqRedis, exact_sandbox: Any
) -> None:
    integration, client = await connected_client(engine, settings, exact_sandbox_http, redis, exact_sandbox)
    codes = await lookups.vat_codes(engine=engine, client=client, integration_id=integration.id)
    by_code = {c.code: c for c in codes}
    assert by_code["2"].percent == Decimal(21)
    assert (by_code["D1"].oss_country, by_code["D1"].percentage) == ("DE", Decimal("0.19"))
    assert "11" not in by_code  # purchase only
    assert "7" not in by_code  # blocked
    assert all(c.is_sales and not c.is_blocked for c in codes)


async def test_a_second_read_comes_from_the_cache_until_invalidated(
    engine: AsyncEngine, settings: Settings, exact_sandbox_http: Any, redis: ArqRedis, exact_sandbox: Any
) -> None:
    integration, client = await connected_client(engine, settings, exact_sandbox_http, redis, exact_sandbox)
    first = await lookups.sales_journals(engine=engine, client=client, integration_id=integration.id)
    calls = api_calls(exact_sandbox)
    assert await lookups.sales_journals(engine=engine, client=client, integration_id=integration.id) == first
    assert api_calls(exact_sandbox) == calls
    async with engine.begin() as conn:
        assert await lookups.invalidate_lookups(conn, integration_id=integration.id) == 1
    assert await lookups.sales_journals(engine=engine, client=client, integration_id=integration.id) == first
    assert api_calls(exact_sandbox) == calls + 1


async def test_an_expired_entry_is_read_again(
    engine: AsyncEngine, settings: Settings, exact_sandbox_http: Any, redis: ArqRedis, exact_sandbox: Any
) -> None:
    integration, client = await connected_client(engine, settings, exact_sandbox_http, redis, exact_sandbox)
    await lookups.payment_conditions(engine=engine, client=client, integration_id=integration.id)
    async with engine.begin() as conn:
        await conn.execute(update(tables.lookup_cache).values(expires_at=utcnow()))
    calls = api_calls(exact_sandbox)
    conditions = await lookups.payment_conditions(engine=engine, client=client, integration_id=integration.id)
    assert [c.code for c in conditions] == ["00", "14", "30"]
    assert api_calls(exact_sandbox) == calls + 1


async def test_each_list_holds_what_a_booking_may_use(
    engine: AsyncEngine, settings: Settings, exact_sandbox_http: Any, redis: ArqRedis, exact_sandbox: Any
) -> None:
    integration, client = await connected_client(engine, settings, exact_sandbox_http, redis, exact_sandbox)
    kw = {"engine": engine, "client": client, "integration_id": integration.id}
    gl = await lookups.revenue_gl_accounts(**kw)
    assert [a.code for a in gl] == ["8000", "8010", "8020", "8030", "8040", "8050", "8060"]  # 8099 is blocked
    assert [j.code for j in await lookups.sales_journals(**kw)] == ["70", "71"]
    groups = await lookups.item_groups(**kw)
    assert [(g.code, g.is_default) for g in groups] == [("001", True), ("002", False)]
    assert [d.code for d in await lookups.divisions(**kw)] == [123456, 234567, 345678]


async def test_a_division_without_oss_still_lists_its_codes(
    engine: AsyncEngine, settings: Settings, exact_sandbox_http: Any, redis: ArqRedis, exact_sandbox: Any
) -> None:
    integration, client = await connected_client(
        engine, settings, exact_sandbox_http, redis, exact_sandbox, exact_division=345678
    )
    codes = await lookups.vat_codes(engine=engine, client=client, integration_id=integration.id)
    assert codes
    assert {c.oss_country for c in codes} == {""}


async def test_the_cache_is_per_integration(
    engine: AsyncEngine, settings: Settings, exact_sandbox_http: Any, redis: ArqRedis, exact_sandbox: Any
) -> None:
    first, first_client = await connected_client(engine, settings, exact_sandbox_http, redis, exact_sandbox)
    second, second_client = await connected_client(
        engine, settings, exact_sandbox_http, redis, exact_sandbox, exact_division=345678
    )
    await lookups.vat_codes(engine=engine, client=first_client, integration_id=first.id)
    await lookups.vat_codes(engine=engine, client=second_client, integration_id=second.id)
    async with engine.begin() as conn:
        await lookups.invalidate_lookups(conn, integration_id=first.id)
        kept = (await conn.execute(select(tables.lookup_cache.c.integration_id))).scalars().all()
    assert kept == [second.id]
    cached = await lookups.vat_codes(engine=engine, client=second_client, integration_id=second.id)
    assert {c.oss_country for c in cached} == {""}  # the second integration's own list, not the first's
