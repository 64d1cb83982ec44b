"""Hardening for the open internet (issue 14): server-side logout, an opaque session cookie, limits on everything
that checks a password or sends mail, client addresses from trusted proxies only, hashing off the event loop, served
hosts and absolute URLs from PUBLIC_URL, the CSP's form-action. docs/security.md maps each control to these tests.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import login_limits, tables
from gateway.app import create_app
from gateway.cli import EXIT_FAILURE, EXIT_OK, uvicorn_options
from gateway.clock import utcnow
from gateway.db import create_engine
from gateway.jobs.outbox import purge_old_mail
from gateway.jobs.sync_order import link_lock_name
from gateway.jobs.worker import cron_jobs
from gateway.local_redis import free_port
from gateway.mail import REDACTED, send_mail
from gateway.passwords import PasswordWork, hash_password
from gateway.settings import Settings
from gateway.store.outbox import create_mail, list_mail
from tests.support.environment import run_in_thread
from tests.support.factories import PAGE_PASSWORD, create_login, csrf_of, log_in, run_cli
from tests.support.smtp import smtp_sink

ENGLISH = {"Accept-Language": "en"}


def post_form(client: Any, url: str, **data: str) -> httpx.Response:
    token = csrf_of(client.get(url).text)
    response: httpx.Response = client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)
    return response


async def count_rows(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


# --- sessions -------------------------------------------------------------------------------------------------------


async def test_logging_out_ends_a_copied_cookie_too(
    client: TestClient, settings: Settings, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="copied@shop.test")
    log_in(client, "copied@shop.test")
    stolen = client.cookies["gw_session"]
    form_token = csrf_of(client.get("/account").text)
    logout = client.post("/logout", data={"csrf_token": form_token}, follow_redirects=False)
    assert logout.status_code == 303
    with TestClient(create_app(settings), base_url="http://testserver", headers=ENGLISH) as thief:
        thief.cookies.set("gw_session", stolen)
        assert thief.get("/account", follow_redirects=False).headers["location"].startswith("/login")
        thief.cookies.set("gw_session", stolen)
        posted = thief.post("/account", data={"csrf_token": form_token, "action": "delete"}, follow_redirects=False)
        assert posted.status_code == 303
        assert posted.headers["location"].startswith("/login")
    assert await count_rows(engine, tables.account) == 1
    assert await count_rows(engine, tables.login_session) == 0


def test_the_operator_ends_every_session_of_an_account(
    client: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async def arrange() -> None:
        engine = create_engine(settings.database_url)
        async with engine.begin() as conn:
            await create_login(conn, email="lost-laptop@shop.test")
            await create_login(conn, email="bystander@shop.test")
        await engine.dispose()

    run_in_thread(arrange())
    log_in(client, "lost-laptop@shop.test")
    with TestClient(create_app(settings), base_url="http://testserver", headers=ENGLISH) as other:
        log_in(other, "bystander@shop.test")
        assert run_cli(settings, ["accounts", "end-sessions", "Lost-Laptop@shop.test"]) == EXIT_OK
        assert "ended 1 session(s)" in capsys.readouterr().err
        ended = client.get("/account", follow_redirects=False)
        assert ended.headers["location"].startswith("/login")
        assert "Your session has ended" in client.get(ended.headers["location"]).text
        assert other.get("/account", follow_redirects=False).status_code == 200  # other accounts stay logged in
    assert run_cli(settings, ["accounts", "end-sessions", "nobody@shop.test"]) == EXIT_FAILURE


async def test_the_session_cookie_is_opaque(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        account_id = await create_login(conn, email="opaque@shop.test")
    log_in(client, "opaque@shop.test")
    cookie = client.cookies["gw_session"]
    for part in cookie.split("."):
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        assert b"account_id" not in decoded
        assert str(account_id).encode() + b"," not in decoded
    async with engine.connect() as conn:
        stored = (await conn.execute(select(tables.login_session.c.token_hash))).scalars().all()
    assert len(stored) == 1
    assert stored[0] not in cookie


async def test_a_tampered_cookie_is_no_session(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="tamper@shop.test")
    log_in(client, "tamper@shop.test")
    cookie = client.cookies["gw_session"]
    client.cookies.set("gw_session", cookie[:-6] + ("AAAAAA" if not cookie.endswith("AAAAAA") else "BBBBBB"))
    assert client.get("/account", follow_redirects=False).headers["location"].startswith("/login")


# --- limits ---------------------------------------------------------------------------------------------------------


async def test_wrong_current_passwords_are_limited_per_account(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="guess@shop.test")
    log_in(client, "guess@shop.test")
    for _ in range(login_limits.CURRENT_PASSWORD_LIMIT):
        wrong = post_form(client, "/account", action="email", email="new@shop.test", current_password="guess-it")
        assert wrong.status_code == 400
    right = post_form(client, "/account", action="email", email="new@shop.test", current_password=PAGE_PASSWORD)
    assert right.status_code == 429
    assert "Too many wrong passwords" in right.text
    async with engine.connect() as conn:
        email = (await conn.execute(select(tables.account.c.email))).scalar_one()
    assert email == "guess@shop.test"


async def test_sign_ups_are_limited_per_address(client: TestClient, engine: AsyncEngine) -> None:
    for n in range(login_limits.SIGNUP_LIMIT):
        assert post_form(client, "/signup", email=f"new{n}@shop.test", password=PAGE_PASSWORD).status_code == 303
        client.cookies.clear()
    refused = post_form(client, "/signup", email="one-more@shop.test", password=PAGE_PASSWORD)
    assert refused.status_code == 400
    assert "Too many requests from your address" in refused.text
    assert await count_rows(engine, tables.account) == login_limits.SIGNUP_LIMIT


async def test_reset_mails_are_limited_per_account_across_addresses(
    settings: Settings, engine: AsyncEngine, clean_state: Settings
) -> None:
    """Behind a trusted proxy, many addresses asking for one account's reset mail cannot flood its mailbox."""
    async with engine.begin() as conn:
        await create_login(conn, email="flooded@shop.test")
    proxied = create_app(dataclasses.replace(settings, forwarded_allow_ips=("testclient",)))
    with TestClient(proxied, base_url="http://testserver", headers=ENGLISH) as browser:
        for n in range(login_limits.FORGOT_ACCOUNT_LIMIT + 3):
            browser.headers["X-Forwarded-For"] = f"198.51.100.{n}"
            post_form(browser, "/forgot", email="flooded@shop.test")
    assert await count_rows(engine, tables.outbox_mail) == login_limits.FORGOT_ACCOUNT_LIMIT


@pytest.fixture
def proxied(settings: Settings, clean_state: Settings) -> Iterator[TestClient]:
    """The app behind a proxy the operator trusts (the TestClient's own address)."""
    app = create_app(dataclasses.replace(settings, forwarded_allow_ips=("testclient",)))
    with TestClient(app, base_url="http://testserver", headers=ENGLISH) as browser:
        yield browser


def as_address(browser: TestClient, address: str) -> TestClient:
    browser.headers["X-Forwarded-For"] = address
    browser.cookies.clear()
    return browser


async def test_guesses_from_elsewhere_never_lock_out_the_right_password(
    proxied: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="victim@shop.test")
    attacker = as_address(proxied, "203.0.113.7")
    for _ in range(login_limits.PAIR_LIMIT):
        assert post_form(attacker, "/login", email="victim@shop.test", password="guess").status_code == 400
    assert post_form(attacker, "/login", email="victim@shop.test", password=PAGE_PASSWORD).status_code == 429
    owner = as_address(proxied, "192.0.2.44")  # a fresh browser elsewhere
    assert post_form(owner, "/login", email="victim@shop.test", password=PAGE_PASSWORD).status_code == 303
    assert owner.get("/account", follow_redirects=False).status_code == 200


async def test_beyond_the_slow_down_the_right_password_still_works(
    proxied: TestClient, engine: AsyncEngine, redis: Any, settings: Settings
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="popular@shop.test")
    keys = login_limits.LimitKeys(str(settings.secret_key))
    await login_limits.count(redis, (keys.login_account("popular@shop.test"),) * 1)
    for _ in range(login_limits.SLOWDOWN_AFTER):
        await login_limits.count(redis, (keys.login_account("popular@shop.test"),))
    owner = as_address(proxied, "192.0.2.45")
    assert post_form(owner, "/login", email="popular@shop.test", password=PAGE_PASSWORD).status_code == 303
    assert await redis.get(keys.login_account("popular@shop.test").key) is None  # a success ends the slow-down


async def test_without_a_trusted_proxy_a_forged_forwarded_for_changes_nothing(
    client: TestClient, engine: AsyncEngine
) -> None:
    for n in range(login_limits.ADDRESS_LIMIT):
        client.headers["X-Forwarded-For"] = f"203.0.113.{n}"
        assert post_form(client, "/login", email=f"nobody{n}@shop.test", password="guess").status_code == 400
    client.headers["X-Forwarded-For"] = "192.0.2.99"
    assert post_form(client, "/login", email="another@shop.test", password="guess").status_code == 429


class ServedGateway:
    """The gateway under uvicorn, run exactly as `gateway serve` runs it (cli.uvicorn_options), on loopback."""

    def __init__(self, settings: Settings) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        options = uvicorn_options(settings, host="127.0.0.1", port=port)
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedGateway:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            assert self.thread.is_alive(), "gateway did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def test_gateway_serve_believes_no_forwarded_for_by_default(settings: Settings, clean_state: Settings) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise; `gateway serve` must not."""
    served = dataclasses.replace(settings, public_url="http://127.0.0.1")
    with ServedGateway(served) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as browser:
        for n in range(login_limits.ADDRESS_LIMIT):
            browser.headers["X-Forwarded-For"] = f"203.0.113.{n}"
            assert post_form(browser, "/login", email=f"x{n}@shop.test", password="guess").status_code == 400
        browser.headers["X-Forwarded-For"] = "192.0.2.1"
        assert post_form(browser, "/login", email="y@shop.test", password="guess").status_code == 429


# --- hashing off the event loop -------------------------------------------------------------------------------------


async def test_hashes_run_off_the_event_loop_at_most_limit_at_a_time() -> None:
    work = PasswordWork(limit=1)
    stored = hash_password("a password for the test")
    ticks, most_busy = 0, 0

    async def ticker(done: asyncio.Event) -> None:
        nonlocal ticks, most_busy
        while not done.is_set():
            await asyncio.sleep(0.005)
            ticks += 1
            most_busy = max(most_busy, work.busy)

    done = asyncio.Event()
    task = asyncio.create_task(ticker(done))
    results = await asyncio.gather(*(work.verify(stored, guess) for guess in ("wrong", "a password for the test", "x")))
    done.set()
    await task
    assert results == [False, True, False]
    assert most_busy == 1  # the cap: one hash at a time
    assert ticks >= 10  # the loop kept running while three hashes (~0.25 s each) ran


# --- hosts, URLs and headers ----------------------------------------------------------------------------------------


def test_an_unknown_host_is_refused_and_never_reflected(client: TestClient) -> None:
    response = client.get("/login", headers={"Host": "evil.test"})
    assert response.status_code == 400
    assert "evil.test" not in response.text
    assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200  # probes by address


def test_production_builds_absolute_urls_from_public_url(settings: Settings, clean_state: Settings) -> None:
    production = dataclasses.replace(settings, env="production", public_url="https://gw.example.com")
    with TestClient(create_app(production), base_url="http://gw.example.com") as browser:
        response = browser.get("/account", follow_redirects=False)
        assert response.status_code == 303
        page = browser.get("/login", headers={"Host": "gw.example.com:8000"})
        assert page.status_code == 200
        assert "http://gw.example.com" not in page.text
        assert browser.get("/login", headers={"Host": "evil.test"}).status_code == 400


def test_forms_may_only_lead_to_this_site_and_exact(client: TestClient, settings: Settings) -> None:
    csp = client.get("/login").headers["content-security-policy"]
    form_action = next(part.strip() for part in csp.split(";") if part.strip().startswith("form-action"))
    assert form_action.split()[1] == "'self'"
    assert set(form_action.split()[2:]) == set(settings.exact_hosts.values())


# --- secrets at rest: the outbox -------------------------------------------------------------------------------------


def production_settings(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, env="production", public_url="https://testserver", **changes)


async def test_in_production_the_outbox_keeps_no_working_reset_link(
    settings: Settings, engine: AsyncEngine, clean_state: Settings
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="reset@shop.test")
    with (
        smtp_sink() as (port, received),
        TestClient(
            create_app(production_settings(settings, smtp_host="127.0.0.1", smtp_port=port)),
            base_url="https://testserver",
            headers=ENGLISH,
        ) as browser,
    ):
        assert post_form(browser, "/forgot", email="reset@shop.test").status_code == 303
    async with engine.connect() as conn:
        [stored] = await list_mail(conn)
    [sent] = received
    link = re.search(r"https://testserver/reset/[A-Za-z0-9_.=-]+", sent.replace("=\r\n", ""))
    assert link, sent
    assert stored.sent
    assert "/reset/" not in stored.body
    assert link.group(0).rsplit("/", 1)[1] not in stored.body
    assert REDACTED in stored.body


async def test_in_production_without_smtp_the_link_is_not_kept_either(settings: Settings, engine: AsyncEngine) -> None:
    await send_mail(
        engine,
        production_settings(settings),
        to="o@shop.test",
        subject="Reset",
        body="go to /reset/t0k3n",
        redact=["t0k3n"],
    )
    async with engine.connect() as conn:
        [stored] = await list_mail(conn)
    assert "t0k3n" not in stored.body


async def test_old_mail_is_purged(engine: AsyncEngine, settings: Settings) -> None:
    async with engine.begin() as conn:
        old = await create_mail(conn, to_address="a@shop.test", subject="old", body="old")
        new = await create_mail(conn, to_address="b@shop.test", subject="new", body="new")
        await conn.execute(
            update(tables.outbox_mail)
            .where(tables.outbox_mail.c.id == old)
            .values(created_at=utcnow() - timedelta(days=settings.outbox_retention_days, minutes=1))
        )
    assert await purge_old_mail(engine, settings) == "deleted 1 mails"
    async with engine.connect() as conn:
        assert [m.id for m in await list_mail(conn)] == [new]
    assert "purge_outbox" in {job.name for job in cron_jobs(settings)}


# --- webhook intake: unknown keys -------------------------------------------------------------------------------------


def test_a_repeated_unknown_webhook_key_costs_one_query(client: TestClient) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = client.app.state.engine.sync_engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", count)
    try:
        url = f"/webhooks/mijnwebwinkel/{'u' * 40}"
        answers = [client.post(url, json={"order_number": "1", "status": 2}).status_code for _ in range(20)]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert answers == [404] * 20
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_lock_names_hold_a_keyed_hash_of_the_address() -> None:
    name = link_lock_name(7, "account", "jan@example.nl", secret="one-secret")
    assert hashlib.sha256(b"jan@example.nl").hexdigest()[:32] not in name  # not recomputable from a list
    assert name != link_lock_name(7, "account", "jan@example.nl", secret="another-secret")
    assert name == link_lock_name(7, "account", "jan@example.nl", secret="one-secret")
