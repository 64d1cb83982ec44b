"""Token custody against the sandbox Exact: renewal only when due, one renewal for many concurrent jobs (asyncio and
two OS processes), persist-before-use, dead grants → reconnect needed, tokens encrypted at rest and absent from logs.

Time is moved by ageing the stored pair and the sandbox's record of the last issue alike (real clocks throughout).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret

from gateway import tables
from gateway.clients.errors import AuthError
from gateway.crypto import Cipher
from gateway.exact_auth import ExactAuth, exact_client_for, refresh_idle_tokens, store_tokens
from gateway.exact_oauth import ExactTokens
from gateway.settings import EXACT_COUNTRIES, Settings
from gateway.store.credentials import EXACT_OAUTH, get_credential
from gateway.store.integrations import Integration, get_integration_or_raise
from tests.support.environment import ROOT
from tests.support.factories import connect_exact_sandbox, create_active_integration
from tests.support.servers import ServedApp


@pytest.fixture
async def connected(engine: AsyncEngine, exact_sandbox: Any, cipher: Cipher) -> tuple[Integration, ExactTokens]:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        tokens = await connect_exact_sandbox(
            conn, integration_id=integration.id, sandbox_app=exact_sandbox, cipher=cipher
        )
    return integration, tokens


async def client_for(
    engine: AsyncEngine, settings: Settings, cipher: Cipher, exact_sandbox_http: Any, redis: Any, iid: int
) -> Any:
    async with engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=iid)
    return await exact_client_for(
        engine=engine, settings=settings, cipher=cipher, http=exact_sandbox_http, redis=redis, integration=integration
    )


async def age_tokens(engine: AsyncEngine, cipher: Cipher, exact_sandbox: Any, iid: int, seconds: float) -> ExactTokens:
    """Pretend the stored pair was issued `seconds` earlier, in our row and in the sandbox alike."""
    async with engine.begin() as conn:
        credential = await get_credential(conn, integration_id=iid, kind=EXACT_OAUTH, cipher=cipher)
        assert credential is not None
        assert credential.access_issued_at is not None
        data = json.loads(credential.secret)
        aged = ExactTokens(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            expires_in=600,
            issued_at=credential.access_issued_at - dt.timedelta(seconds=seconds),
        )
        await store_tokens(conn, integration_id=iid, tokens=aged, cipher=cipher)
    for grant in exact_sandbox.state.sandbox.tokens.grants.values():
        if grant.refresh_token == aged.refresh_token:
            grant.issued_at -= seconds
    return aged


def refreshes(exact_sandbox: Any) -> list[Any]:
    return [r for r in exact_sandbox.state.sandbox.tokens.requests if r.grant_type == "refresh_token"]


async def stored_tokens(engine: AsyncEngine, cipher: Cipher, iid: int) -> dict[str, str]:
    async with engine.connect() as conn:
        credential = await get_credential(conn, integration_id=iid, kind=EXACT_OAUTH, cipher=cipher)
    assert credential is not None
    return dict(json.loads(credential.secret))


async def test_a_fresh_token_is_used_without_renewal(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
) -> None:
    integration, _ = connected
    client = await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    assert (await client.me()).current_division == 123456
    assert refreshes(exact_sandbox) == []


async def test_a_token_with_under_30_seconds_left_is_renewed_and_stored_before_use(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
) -> None:
    integration, tokens = connected
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 580)
    client = await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    await client.list_journals()
    assert len(refreshes(exact_sandbox)) == 1
    stored = await stored_tokens(engine, cipher, integration.id)
    grant = next(iter(exact_sandbox.state.sandbox.tokens.grants.values()))
    assert stored["refresh_token"] == grant.refresh_token != tokens.refresh_token
    assert stored["access_token"] != tokens.access_token


async def test_twenty_concurrent_jobs_cause_exactly_one_renewal(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
) -> None:
    integration, _ = connected
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 590)
    clients = [await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id) for _ in range(20)]
    results = await asyncio.gather(*(c.me() for c in clients))
    assert {me.current_division for me in results} == {123456}
    assert len(refreshes(exact_sandbox)) == 1
    assert sum(c.auth.renewals for c in clients) == 1


async def test_two_processes_renewing_at_once_cause_exactly_one_renewal(
    engine: AsyncEngine, settings: Settings, cipher: Cipher, exact_sandbox: Any, connected: Any
) -> None:
    integration, _ = connected
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 590)
    with ServedApp(exact_sandbox) as served:
        config = {
            "database_url": settings.database_url,
            "redis_url": settings.redis_url,
            "key": str(settings.encryption_keys[0]),
            "host": served.url,
            "integration_id": integration.id,
            "start_at": time.time() + 3,
        }
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.test_exact_auth",
                json.dumps(config),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        outputs = await asyncio.wait_for(asyncio.gather(*(child.communicate() for child in children)), timeout=60)
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip() == "ok 10"
    assert len(refreshes(exact_sandbox)) == 1


async def test_a_reused_refresh_token_needs_reconnect_and_stops_further_calls(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
) -> None:
    integration, tokens = connected
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 590)
    # Someone else (a stale copy of the tokens) renews first: our stored refresh token is now dead.
    status, _ = exact_sandbox.state.sandbox.tokens.refresh({"refresh_token": tokens.refresh_token})
    assert status == 200
    with pytest.raises(AuthError, match="Old refresh token used"):  # the token is read when the client is made
        await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    async with engine.connect() as conn:
        after = await get_integration_or_raise(conn, integration_id=integration.id)
    assert after.exact_connection == "reconnect_needed"
    assert "Old refresh token used" in (after.exact_connection_error or "")
    calls_before = (len(exact_sandbox.state.sandbox.tokens.requests), len(exact_sandbox.state.sandbox.calls))
    with pytest.raises(AuthError):
        await exact_client_for(
            engine=engine, settings=settings, cipher=cipher, http=exact_sandbox_http, redis=redis, integration=after
        )
    assert (len(exact_sandbox.state.sandbox.tokens.requests), len(exact_sandbox.state.sandbox.calls)) == calls_before


async def test_a_rejected_young_token_is_not_renewed_before_570_seconds(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
) -> None:
    integration, tokens = connected
    del exact_sandbox.state.sandbox.tokens.access[tokens.access_token]  # Exact no longer accepts it
    client = await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    with pytest.raises(AuthError, match="401"):
        await client.list_journals()
    assert refreshes(exact_sandbox) == []


async def test_a_401_is_replayed_once_with_the_newer_token_another_job_stored(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
) -> None:
    integration, tokens = connected
    slow = await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    await slow.me()  # caches the current access token in this job's custody
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 590)
    other = await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    await other.me()  # renews and stores a new pair
    del exact_sandbox.state.sandbox.tokens.access[tokens.access_token]
    await slow.list_journals()
    assert len(refreshes(exact_sandbox)) == 1
    assert slow.auth.renewals == 0


async def test_tokens_are_encrypted_at_rest(engine: AsyncEngine, connected: Any, cipher: Cipher) -> None:
    integration, tokens = connected
    async with engine.connect() as conn:
        raw = (await conn.execute(select(tables.credential.c.secret))).scalar_one()
    assert tokens.access_token not in raw
    assert tokens.refresh_token not in raw
    assert tokens.refresh_token in cipher.decrypt(raw)


async def test_tokens_never_reach_the_logs(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
    connected: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    integration, tokens = connected
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 590)
    client = await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)
    await client.me()
    await client.list_vat_codes()
    exact_sandbox.state.sandbox.tokens.grants.clear()  # the next renewal fails
    await age_tokens(engine, cipher, exact_sandbox, integration.id, 600)
    with pytest.raises(AuthError):
        await (await client_for(engine, settings, cipher, exact_sandbox_http, redis, integration.id)).me()
    new = await stored_tokens(engine, cipher, integration.id)
    secrets = {tokens.access_token, tokens.refresh_token, new["access_token"], new["refresh_token"]}
    assert "exact token renewed" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
        assert secret[10:40] not in caplog.text


async def test_the_keep_alive_renews_only_connections_idle_for_20_days(
    engine: AsyncEngine,
    settings: Settings,
    cipher: Cipher,
    exact_sandbox_http: Any,
    redis: ArqRedis,
    exact_sandbox: Any,
) -> None:
    async with engine.begin() as conn:
        idle = await create_active_integration(conn)
        busy = await create_active_integration(conn)
        idle_tokens = await connect_exact_sandbox(
            conn, integration_id=idle.id, sandbox_app=exact_sandbox, cipher=cipher
        )
        busy_tokens = await connect_exact_sandbox(
            conn, integration_id=busy.id, sandbox_app=exact_sandbox, cipher=cipher
        )
    await age_tokens(engine, cipher, exact_sandbox, idle.id, 21 * 24 * 3600)
    await age_tokens(engine, cipher, exact_sandbox, busy.id, 3 * 24 * 3600)
    renewed = await refresh_idle_tokens(
        engine=engine, settings=settings, cipher=cipher, http=exact_sandbox_http, redis=redis
    )
    assert renewed == 1
    assert (await stored_tokens(engine, cipher, idle.id))["refresh_token"] != idle_tokens.refresh_token
    assert (await stored_tokens(engine, cipher, busy.id))["refresh_token"] == busy_tokens.refresh_token


def test_the_keep_alive_runs_as_a_daily_cron(settings: Settings) -> None:
    from gateway.jobs.worker import cron_jobs

    jobs = {job.name: job for job in cron_jobs(settings)}
    assert "refresh_idle_exact_tokens" in jobs


async def test_an_unconnected_integration_gets_no_client(
    engine: AsyncEngine, settings: Settings, cipher: Cipher, exact_sandbox_http: Any, redis: ArqRedis
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, exact_connection="disconnected")
    with pytest.raises(AuthError, match="not connected"):
        await exact_client_for(
            engine=engine,
            settings=settings,
            cipher=cipher,
            http=exact_sandbox_http,
            redis=redis,
            integration=integration,
        )


async def test_no_stored_tokens_is_an_auth_error(
    engine: AsyncEngine, settings: Settings, cipher: Cipher, exact_sandbox_http: Any, redis: ArqRedis
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    auth = ExactAuth(
        engine=engine,
        cipher=cipher,
        http=exact_sandbox_http,
        redis=redis,
        settings=settings,
        integration_id=integration.id,
        host="x",
    )
    with pytest.raises(AuthError, match="not connected"):
        await auth.access_tokens()


# ---------------------------------------------------------------- the child process of the two-process test


async def _child(config: dict[str, Any]) -> int:
    from gateway.db import create_engine
    from gateway.queue import create_arq_pool

    settings = Settings(
        env="test",
        database_url=config["database_url"],
        redis_url=config["redis_url"],
        secret_key=Secret("child-" + "x" * 40),
        encryption_keys=(Secret(config["key"]),),
        exact_hosts=dict.fromkeys(EXACT_COUNTRIES, config["host"]),
        exact_client_id="test-client-id",
        exact_client_secret=Secret("exact-client-secret-0001"),
    )
    engine = create_engine(settings.database_url)
    redis = await create_arq_pool(settings.redis_url)
    cipher = Cipher(settings.encryption_keys)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            clients = [
                await client_for(engine, settings, cipher, http, redis, config["integration_id"]) for _ in range(10)
            ]
            await asyncio.sleep(max(0.0, config["start_at"] - time.time()))
            results = await asyncio.gather(*(c.me() for c in clients))
    finally:
        await redis.aclose()
        await engine.dispose()
    return len(results)


if __name__ == "__main__":
    count = asyncio.run(_child(json.loads(sys.argv[1])))
    sys.stdout.write(f"ok {count}\n")
