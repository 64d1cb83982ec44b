"""Security checks over the whole app: every route without a session, cross-tenant webhooks, CSRF on every POST
form (including the account pages), the session cookie's flags, and — after a full flow with every secret in play —
a scan of the entire Redis keyspace: no token or secret in any key or value, and job arguments that are ids only.

Per-page tenant isolation is in test_pages_access.py and the log scan in test_log_redaction_flow.py; this file
covers what lies between them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from gateway import tables
from gateway.app import create_app
from gateway.crypto import Cipher
from gateway.queue import deserialize
from gateway.routes.webhooks import sign
from gateway.settings import Settings
from gateway.shop_connection import rotate_signing_secret, rotate_webhook_key
from tests.support.factories import create_active_integration, create_login, csrf_of, log_in
from tests.support.servers import FlowSandboxes, run_full_flow

# Reachable without a session, and why. Every other route must send an anonymous visitor away.
PUBLIC = {
    "/": "the landing page",
    "/login": "the login form",
    "/signup": "the sign-up form",
    "/forgot": "the forgotten-password form",
    "/reset/{token}": "a reset link (the token in the URL is the credential)",
    "/welcome/{token}": "the link that finishes a sign-up (the token in the URL is the credential)",
    "/language": "switching the language of the anonymous pages",
    "/healthz": "process liveness for the orchestrator",
    "/readyz": "readiness for the orchestrator (names no secret)",
    "/metrics": "bearer token of its own (404 while none is configured)",
    "/webhooks/mijnwebwinkel/{webhook_key}": "the webhook key in the URL names the shop",
    "/connect/exact/callback": "checks the signed state, which is bound to a session",
    "/sandbox/outbox": "404 unless the sandbox is on",
}
REFUSED = {303, 401, 403, 404, 405}


def all_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from all_routes(list(route.routes), prefix + route.path)  # StaticFiles has none
        elif isinstance(route, Route):
            yield prefix + route.path_format, route


def fill(path: str) -> str:
    return (
        path.replace("{integration_id}", "1")
        .replace("{order_sync_id}", "1")
        .replace("{token}", "x" * 40)
        .replace("{webhook_key}", "k" * 43)
    )


def test_the_route_table_is_covered(app: Any) -> None:
    """Guards the guard: the walk finds the routes, and every public one listed here still exists."""
    paths = {path for path, _ in all_routes(list(app.routes))}
    assert len(paths) >= 30
    assert set(PUBLIC) <= paths, set(PUBLIC) - paths


def test_every_route_without_a_session_redirects_to_login_or_refuses(app: Any, client: TestClient) -> None:
    checked = 0
    for path, route in all_routes(list(app.routes)):
        if path in PUBLIC:
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            response = client.request(method, fill(path), data={}, follow_redirects=False)
            assert response.status_code in REFUSED, f"{method} {path} answered {response.status_code} without a session"
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login"), f"{method} {path}"
            checked += 1
    assert checked >= 25


def test_public_routes_never_fail_without_a_session(app: Any, client: TestClient) -> None:
    for path, route in all_routes(list(app.routes)):
        if path not in PUBLIC:
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            response = client.request(method, fill(path), follow_redirects=False)
            assert response.status_code < 500, f"{method} {path} answered {response.status_code}"
    assert client.get("/sandbox/outbox").status_code == 404  # the test settings have no sandbox


async def test_every_post_form_refuses_a_missing_or_forged_csrf_token(
    app: Any, client: TestClient, engine: AsyncEngine
) -> None:
    """Including the anonymous forms: no account is created, nobody is logged in, nothing changes."""
    async with engine.begin() as conn:
        account_id = await create_login(conn, email="owner@shop.test")
        await create_active_integration(conn, account_id=account_id)
    anonymous = {"/signup": {"email": "new@shop.test", "password": "a long enough password"}}
    anonymous["/login"] = {"email": "owner@shop.test", "password": "correct horse battery staple"}
    anonymous["/forgot"] = {"email": "owner@shop.test"}
    for url, data in anonymous.items():
        for token in ({}, {"csrf_token": "forged"}):
            response = client.post(url, data={**data, **token}, follow_redirects=False)
            assert response.status_code == 403, f"POST {url} with {token} answered {response.status_code}"
    assert client.get("/account", follow_redirects=False).status_code == 303  # still not logged in
    async with engine.connect() as conn:
        accounts = (await conn.execute(select(func.count()).select_from(tables.account))).scalar_one()
    assert accounts == 1

    log_in(client, "owner@shop.test")
    checked = 0
    for path, route in all_routes(list(app.routes)):
        if "POST" not in (route.methods or ()) or path.startswith("/webhooks/"):
            continue
        response = client.post(fill(path), data={"csrf_token": "forged"}, follow_redirects=False)
        assert response.status_code in (403, 404), f"POST {path} with a forged token answered {response.status_code}"
        checked += 1
    assert checked >= 15


def session_cookie(response: Any) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith("gw_session=")]
    return header


async def test_the_session_cookie_is_httponly_lax_and_renewed_at_login(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="owner@shop.test")
    page = client.get("/login")
    before = csrf_of(page.text)
    response = client.post(
        "/login",
        data={"csrf_token": before, "email": "owner@shop.test", "password": "correct horse battery staple"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    flags = [part.strip().lower() for part in session_cookie(response).split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "secure" not in flags  # plain http in tests; production below
    after = csrf_of(client.get("/account").text)
    assert after != before  # a fresh session at login: nothing from the anonymous one survives


async def test_the_session_cookie_is_secure_in_production(settings: Settings, engine: AsyncEngine) -> None:
    production = dataclasses.replace(settings, env="production", sandbox_enabled=False)
    async with engine.begin() as conn:
        await create_login(conn, email="owner@shop.test")
    with TestClient(create_app(production), base_url="https://testserver") as client:
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={"csrf_token": token, "email": "owner@shop.test", "password": "correct horse battery staple"},
            follow_redirects=False,
        )
    assert response.status_code == 303
    flags = [part.strip().lower() for part in session_cookie(response).split(";")]
    assert {"httponly", "secure", "samesite=lax"} <= set(flags)


def signed(secret: str, number: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"order_number": number, "status": 2}).encode()
    msg_id, stamp = f"msg_{secrets.token_hex(6)}", str(int(time.time()))
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": stamp}
    return body, {**headers, "webhook-signature": f"v1,{sign(secret, msg_id, stamp, body)}"}


async def test_a_webhook_never_reaches_another_shop(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    """Shop B's URL with shop A's signature is refused; each shop's notice lands on that shop only."""
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        a = await create_active_integration(conn)
        b = await create_active_integration(conn)
        key_a = await rotate_webhook_key(conn, integration_id=a.id)
        key_b = await rotate_webhook_key(conn, integration_id=b.id)
        secret_a = await rotate_signing_secret(conn, integration_id=a.id, cipher=cipher)
        secret_b = await rotate_signing_secret(conn, integration_id=b.id, cipher=cipher)
    body, headers = signed(secret_a, "7001")
    assert client.post(f"/webhooks/mijnwebwinkel/{key_b}", content=body, headers=headers).status_code == 401
    assert client.post(f"/webhooks/mijnwebwinkel/{key_a}", content=body, headers=headers).status_code == 202
    body, headers = signed(secret_b, "7002")
    assert client.post(f"/webhooks/mijnwebwinkel/{key_b}", content=body, headers=headers).status_code == 202
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(tables.order_event.c.integration_id, tables.order_event.c.order_number))
        ).all()
    assert sorted((r[0], r[1]) for r in rows) == [(a.id, "7001"), (b.id, "7002")]


async def redis_keyspace(redis: ArqRedis) -> dict[bytes, list[bytes]]:
    """Every key with every value it holds, whatever its type."""
    found: dict[bytes, list[bytes]] = {}
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            values = [await redis.get(key) or b""]
        elif kind == "list":
            values = await redis.lrange(key, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "hash":
            values = [item for pair in (await redis.hgetall(key)).items() for item in pair]
        else:
            values = [kind.encode()]
        found[key] = values
    return found


async def test_after_a_full_flow_redis_holds_no_secret_and_jobs_carry_ids_only(
    engine: AsyncEngine, redis: ArqRedis, flow_sandboxes: FlowSandboxes
) -> None:
    flow = await run_full_flow(engine, redis, flow_sandboxes)
    # One more notice, left on the queue, so a job's stored arguments can be read.
    _mww, _exact, settings, _offset = flow_sandboxes
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        key = await rotate_webhook_key(conn, integration_id=flow.integration_id)
        secret = await rotate_signing_secret(conn, integration_id=flow.integration_id, cipher=cipher)
    flow.secrets |= {"new webhook key": key, "new signing secret": secret}
    with TestClient(create_app(settings)) as client:
        body, headers = signed(secret, "1002")
        assert client.post(f"/webhooks/mijnwebwinkel/{key}", content=body, headers=headers).status_code == 202

    keyspace = await redis_keyspace(redis)
    assert keyspace, "the flow left nothing in Redis to scan"
    everything = b"\n".join(k + b"\n" + b"\n".join(v) for k, v in keyspace.items())
    leaks = sorted(name for name, value in flow.secrets.items() if value and value.encode() in everything)
    assert not leaks, f"secrets in Redis: {leaks}"

    jobs = [deserialize(values[0]) for key, values in keyspace.items() if key.startswith(b"arq:job:")]
    assert jobs, "no queued job to inspect"
    for job in jobs:
        assert all(isinstance(arg, int) for arg in job["a"]), job
        assert all(isinstance(value, int) for value in job["k"].values()), job
