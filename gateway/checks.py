"""`gateway check`: is the configuration usable and are the database and Redis reachable at the right schema?"""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from gateway.db import create_engine
from gateway.migrations import current_revision, head_revision
from gateway.queue import create_arq_pool
from gateway.settings import Settings

TIMEOUT = 5.0


async def _database(settings: Settings) -> str | None:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await current_revision(conn)
    finally:
        await engine.dispose()
    head = head_revision()
    return None if current == head else f"schema at {current}, expected {head}: run `gateway migrate`"


async def _redis(settings: Settings) -> str | None:
    pool = await create_arq_pool(settings.redis_url)
    try:
        await pool.ping()
    finally:
        await pool.aclose()
    return None


async def run_checks(settings: Settings) -> dict[str, str]:
    """Return {component: problem} for everything that is not right; empty when all is well."""
    problems: dict[str, str] = {}
    if settings.is_production and not settings.mww_partner_token:
        problems["MWW_PARTNER_TOKEN"] = "not set: shops cannot be connected without the gateway's partner token"  # noqa: S105
    if settings.is_production and not (settings.exact_client_id and settings.exact_client_secret):
        problems["EXACT_CLIENT_ID"] = "EXACT_CLIENT_ID/EXACT_CLIENT_SECRET not set: Exact Online cannot be connected"
    for name, check in {"database": _database, "redis": _redis}.items():
        try:
            problem = await asyncio.wait_for(check(settings), TIMEOUT)
        except Exception as e:
            problem = f"unreachable ({type(e).__name__}: {str(e)[:200]})"
        if problem:
            problems[name] = problem
    return problems
