"""Accounts underneath the pages: password hashing and reset tokens, the accounts store, login limits, mail."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import itsdangerous.timed
import pytest
from argon2 import PasswordHasher
from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import login_limits, passwords, tables
from gateway.local_redis import free_port
from gateway.mail import send_mail
from gateway.settings import Settings
from gateway.store import accounts
from gateway.store.outbox import list_mail
from tests.support.factories import PAGE_PASSWORD, create_active_integration, log_in
from tests.support.smtp import smtp_sink as local_smtp_sink

# --- passwords and reset tokens -----------------------------------------------------------------------------------


def test_passwords_are_hashed_with_argon2id_and_verified() -> None:
    hashed = passwords.hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert passwords.verify_password(hashed, "correct horse")
    assert not passwords.verify_password(hashed, "Correct horse")
    assert not passwords.verify_password("not a hash", "correct horse")
    assert not passwords.needs_rehash(hashed)
    assert passwords.needs_rehash(PasswordHasher(time_cost=1, memory_cost=1024).hash("x"))


def test_a_reset_token_names_the_account_and_dies_with_the_password(settings: Settings) -> None:
    secret = str(settings.secret_key)
    token = passwords.make_reset_token(secret, account_id=7, password_hash="hash-1")
    claim = passwords.read_reset_token(secret, token)
    assert claim is not None
    assert claim[0] == 7
    assert passwords.reset_token_matches(claim[1], "hash-1")
    assert not passwords.reset_token_matches(claim[1], "hash-2")  # the password changed: the link is used up
    assert passwords.read_reset_token("another secret", token) is None
    assert passwords.read_reset_token(secret, token[:-2]) is None


def test_a_reset_token_expires_after_an_hour(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = str(settings.secret_key)
    now = itsdangerous.timed.time.time()
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now - passwords.RESET_MAX_AGE - 5)
    old = passwords.make_reset_token(secret, account_id=7, password_hash="h")
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: now)
    assert passwords.read_reset_token(secret, old) is None


# --- the accounts store ---------------------------------------------------------------------------------------------


async def test_one_address_is_one_account_and_the_transaction_survives(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await accounts.create_account(conn, email=" Owner@Shop.test", password_hash="$argon2id$v=19$xyz")
        with pytest.raises(accounts.EmailTaken):
            await accounts.create_account(conn, email="owner@shop.TEST", password_hash="h")
        second = await accounts.create_account(conn, email="other@shop.test", password_hash="h")
        with pytest.raises(accounts.EmailTaken):
            await accounts.set_email(conn, account_id=second.id, email="OWNER@shop.test")
    async with engine.connect() as conn:
        found = await accounts.get_account_by_email(conn, email="OWNER@SHOP.TEST")
        again = await accounts.get_account(conn, account_id=second.id)
    assert found is not None
    assert found.id == first.id
    assert found.email == "owner@shop.test"
    assert again is not None
    assert again.email == "other@shop.test"
    assert "argon2" not in repr(found)


async def test_ensure_account_creates_once_and_keeps_the_password(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first, created = await accounts.ensure_account(conn, email="demo@example.test", password_hash="first")
        again, created_again = await accounts.ensure_account(conn, email="Demo@Example.test", password_hash="second")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert again.password_hash == "first"


async def test_a_password_change_moves_the_change_time(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        account = await accounts.create_account(conn, email="a@shop.test", password_hash="old")
        await accounts.set_password_hash(conn, account_id=account.id, password_hash="new")
        changed = await accounts.get_account(conn, account_id=account.id)
    assert changed is not None
    assert changed.password_hash == "new"
    assert changed.password_changed_at is not None
    assert account.password_changed_at is not None
    assert changed.password_changed_at >= account.password_changed_at


async def test_deleting_an_account_removes_its_rows_and_keeps_others(engine: AsyncEngine, settings: Settings) -> None:
    async with engine.begin() as conn:
        leaving = await accounts.create_account(conn, email="leave@shop.test", password_hash="h")
        staying = await accounts.create_account(conn, email="stay@shop.test", password_hash="h")
        await create_active_integration(conn, account_id=leaving.id)
        await create_active_integration(conn, account_id=staying.id)
    await send_mail(engine, settings, to="leave@shop.test", subject="Hi", body="b", account_id=leaving.id)
    async with engine.begin() as conn:
        assert await accounts.delete_account(conn, account_id=leaving.id)
    async with engine.connect() as conn:
        owners = (await conn.execute(select(tables.integration.c.account_id))).scalars().all()
        mail = (await conn.execute(select(func.count()).select_from(tables.outbox_mail))).scalar_one()
    assert owners == [staying.id]
    assert mail == 0


async def test_a_login_upgrades_a_weak_hash(client: TestClient, engine: AsyncEngine) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=1024).hash(PAGE_PASSWORD)
    async with engine.begin() as conn:
        account = await accounts.create_account(conn, email="weak@shop.test", password_hash=weak)
    log_in(client, "weak@shop.test")
    async with engine.connect() as conn:
        upgraded = await accounts.get_account(conn, account_id=account.id)
    assert upgraded is not None
    assert upgraded.password_hash != weak
    assert not passwords.needs_rehash(upgraded.password_hash)
    assert upgraded.last_login_at is not None


# --- login limits -------------------------------------------------------------------------------------------------


async def test_limits_count_per_window_and_never_store_the_address(redis: ArqRedis) -> None:
    keys = login_limits.LimitKeys("a-secret-key-" + "k" * 40)
    limits = keys.login("Owner@Shop.test", "10.0.0.1")
    assert not any("owner" in limit.key.lower() or "10.0.0.1" in limit.key for limit in limits)
    assert limits == keys.login("owner@shop.test ", "10.0.0.1")
    assert limits != login_limits.LimitKeys("another-secret-" + "k" * 40).login("owner@shop.test", "10.0.0.1")
    for _ in range(login_limits.PAIR_LIMIT - 1):
        await login_limits.count(redis, limits)
    assert await login_limits.blocked_for(redis, limits) == 0
    await login_limits.count(redis, limits)
    wait = await login_limits.blocked_for(redis, limits)
    assert 0 < wait <= login_limits.WINDOW_SECONDS
    await login_limits.clear(redis, limits[0])
    assert await login_limits.blocked_for(redis, limits) == 0
    assert 0 < await redis.ttl(limits[1].key) <= login_limits.WINDOW_SECONDS  # the address keeps counting


# --- mail ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[tuple[int, list[str]]]:
    with local_smtp_sink() as sink:
        yield sink


async def test_without_smtp_mail_stays_in_the_outbox_and_the_log_has_no_body(
    engine: AsyncEngine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.mail"):
        mail_id = await send_mail(engine, settings, to="o@shop.test", subject="Reset", body="secret link /reset/abc")
    async with engine.connect() as conn:
        mails = await list_mail(conn)
    assert [(m.id, m.sent, m.body) for m in mails] == [(mail_id, False, "secret link /reset/abc")]
    assert "Reset" in caplog.text
    assert "/sandbox/outbox" in caplog.text
    assert "secret link" not in caplog.text


async def test_with_smtp_the_mail_is_delivered_and_marked_sent(
    engine: AsyncEngine, settings: Settings, smtp_sink: tuple[int, list[str]]
) -> None:
    port, received = smtp_sink
    smtp = dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_from="gateway@shop.test")
    await send_mail(engine, smtp, to="owner@shop.test", subject="Welkom", body="Hallo daar")
    async with engine.connect() as conn:
        mails = await list_mail(conn)
    assert mails[0].sent is True
    assert len(received) == 1
    assert "Subject: Welkom" in received[0]
    assert "To: owner@shop.test" in received[0]
    assert "Hallo daar" in received[0]


async def test_a_failing_smtp_server_keeps_the_mail_unsent_without_failing_the_caller(
    engine: AsyncEngine, settings: Settings
) -> None:
    unreachable = dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=free_port())
    await send_mail(engine, unreachable, to="owner@shop.test", subject="Hi", body="b")
    async with engine.connect() as conn:
        mails = await list_mail(conn)
    assert [m.sent for m in mails] == [False]
