"""Account pages: sign up, log in and out (rate-limited), forgotten password, account settings, deletion."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.crypto import Cipher
from gateway.login_limits import ADDRESS_LIMIT, FORGOT_LIMIT, PAIR_LIMIT
from gateway.passwords import make_reset_token, verify_password
from gateway.settings import Settings
from gateway.store import accounts, credentials
from gateway.store.integrations import create_integration, list_integrations
from gateway.store.outbox import list_mail
from tests.support.factories import PAGE_PASSWORD, create_active_integration, create_login, csrf_of, log_in
from tests.support.pages import mailed_link


def post_form(client: TestClient, url: str, **data: str) -> object:
    token = csrf_of(client.get(url).text)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def log_out(client: TestClient) -> None:
    token = csrf_of(client.get("/account").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303


async def count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


# --- sign up ----------------------------------------------------------------------------------------------------------


async def test_signing_up_creates_the_account_a_shop_and_a_welcome_mail(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    response = post_form(client, "/signup", email=" New.Owner@Shop.test ", password="a long enough password")
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith("/login")
    async with engine.connect() as conn:
        account = await accounts.get_account_by_email(conn, email="new.owner@shop.test")
        assert account is not None
        shops = await list_integrations(conn, account_id=account.id)
        mails = await list_mail(conn)
    assert account.password_hash.startswith("$argon2id$")
    assert verify_password(account.password_hash, "a long enough password")
    assert not account.confirmed
    assert len(shops) == 1
    assert shops[0].state == "setup"
    assert shops[0].trial_ends_at is not None
    assert [m.to_address for m in mails] == ["new.owner@shop.test"]
    assert client.get("/account", follow_redirects=False).status_code == 303  # not logged in before the link
    link = mailed_link(settings, "/welcome/")
    assert client.get(link).status_code == 200  # opening the link (a mail scanner) confirms nothing
    confirmed = client.post(link, data={"csrf_token": csrf_of(client.get(link).text)}, follow_redirects=False)
    assert confirmed.status_code == 303, confirmed.text
    assert confirmed.headers["location"].endswith(f"/integrations/{shops[0].id}/setup")
    assert client.get("/account").status_code == 200  # logged in
    assert client.get(link).status_code == 400  # the link worked once


async def test_sign_up_errors_keep_the_email_and_never_echo_the_password(
    client: TestClient, engine: AsyncEngine
) -> None:
    response = post_form(client, "/signup", email="not-an-address", password="short")
    assert response.status_code == 400
    assert 'value="not-an-address"' in response.text
    assert 'value="short"' not in response.text
    assert "Enter an e-mail address like name@example.com." in response.text
    assert "Use at least 10 characters." in response.text
    assert await count(engine, tables.account) == 0


async def test_signing_up_with_a_taken_address_answers_the_same_and_mails_the_owner(
    client: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="taken@shop.test")
    taken = post_form(client, "/signup", email="TAKEN@shop.test", password="another long password")
    fresh = post_form(client, "/signup", email="fresh@shop.test", password="another long password")
    assert (taken.status_code, taken.headers["location"]) == (fresh.status_code, fresh.headers["location"])
    notice = client.get("/login").text
    assert "Almost done: open the link we sent to" in notice
    async with engine.connect() as conn:
        owner = await accounts.get_account_by_email(conn, email="taken@shop.test")
        mails = {m.to_address: m for m in await list_mail(conn)}
    assert owner is not None
    assert verify_password(owner.password_hash, PAGE_PASSWORD)  # nothing changed
    assert "already has an account" in mails["taken@shop.test"].body
    assert "/welcome/" not in mails["taken@shop.test"].body
    assert "/welcome/" in mails["fresh@shop.test"].body
    assert await count(engine, tables.account) == 2


async def test_an_unconfirmed_account_cannot_log_in_and_a_later_sign_up_takes_over(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    """Someone else signing up with your address first gains nothing: no login with their password, and your own
    sign-up replaces it (their link stops working)."""
    assert post_form(client, "/signup", email="mine@shop.test", password="the squatter's password").status_code == 303
    squatter_link = mailed_link(settings, "/welcome/")
    refused = post_form(client, "/login", email="mine@shop.test", password="the squatter's password")
    assert refused.status_code == 400
    assert post_form(client, "/signup", email="mine@shop.test", password="the owner's password").status_code == 303
    assert client.get(squatter_link).status_code == 400
    owner_link = mailed_link(settings, "/welcome/")
    client.post(owner_link, data={"csrf_token": csrf_of(client.get(owner_link).text)})
    client.cookies.clear()
    assert post_form(client, "/login", email="mine@shop.test", password="the squatter's password").status_code == 400
    assert post_form(client, "/login", email="mine@shop.test", password="the owner's password").status_code == 303


async def test_the_home_page_leads_to_the_right_place(client: TestClient, engine: AsyncEngine) -> None:
    assert "Start your free trial" in client.get("/").text
    async with engine.begin() as conn:
        owner = await create_login(conn, email="home@shop.test")
        first = await create_active_integration(conn, account_id=owner)
    log_in(client, "home@shop.test")
    assert client.get("/", follow_redirects=False).headers["location"].endswith(f"/integrations/{first.id}/dashboard")
    async with engine.begin() as conn:
        await create_integration(conn, account_id=owner)
    assert client.get("/", follow_redirects=False).headers["location"].endswith("/integrations")


# --- log in / out -----------------------------------------------------------------------------------------------------


async def test_logging_in_renews_the_session_and_follows_a_local_next(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="in@shop.test")
    page = client.get("/login?next=/account")
    anonymous_token = csrf_of(page.text)
    response = client.post(
        "/login",
        data={"csrf_token": anonymous_token, "email": "in@shop.test", "password": PAGE_PASSWORD, "next": "/account"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    # The anonymous session's CSRF token died with it (session fixation).
    refused = client.post("/logout", data={"csrf_token": anonymous_token}, follow_redirects=False)
    assert refused.status_code == 403
    async with engine.connect() as conn:
        account = await accounts.get_account_by_email(conn, email="in@shop.test")
    assert account is not None
    assert account.last_login_at is not None


async def test_a_next_pointing_elsewhere_is_ignored(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="next@shop.test")
    for target in ("//evil.test/x", "https://evil.test/", "/\\evil.test"):
        client.cookies.clear()
        token = csrf_of(client.get("/login").text)
        response = client.post(
            "/login",
            data={"csrf_token": token, "email": "next@shop.test", "password": PAGE_PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", target


async def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(
    client: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="known@shop.test")
    wrong = post_form(client, "/login", email="known@shop.test", password="not the password")
    unknown = post_form(client, "/login", email="nobody@shop.test", password="not the password")
    assert wrong.status_code == unknown.status_code == 400
    message = "The e-mail address or the password is not right."
    assert message in wrong.text
    assert message in unknown.text
    assert client.get("/account", follow_redirects=False).status_code == 303


async def test_an_account_is_locked_after_repeated_failures_even_with_the_right_password(
    client: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="locked@shop.test")
    for _ in range(PAIR_LIMIT):
        assert post_form(client, "/login", email="locked@shop.test", password="guess").status_code == 400
    response = post_form(client, "/login", email="locked@shop.test", password=PAGE_PASSWORD)
    assert response.status_code == 429
    assert "Too many failed attempts" in response.text
    assert client.get("/account", follow_redirects=False).status_code == 303


async def test_one_address_trying_many_accounts_is_limited(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="victim@shop.test")
    for n in range(ADDRESS_LIMIT):
        post_form(client, "/login", email=f"guess{n}@shop.test", password="guess")
    response = post_form(client, "/login", email="victim@shop.test", password=PAGE_PASSWORD)
    assert response.status_code == 429


async def test_a_successful_login_clears_the_accounts_failures(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="forgetful@shop.test")
    for _ in range(PAIR_LIMIT - 1):
        post_form(client, "/login", email="forgetful@shop.test", password="guess")
    log_in(client, "forgetful@shop.test")
    log_out(client)
    for _ in range(PAIR_LIMIT - 1):
        assert post_form(client, "/login", email="forgetful@shop.test", password="guess").status_code == 400


async def test_logging_out_ends_the_session(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="out@shop.test")
    log_in(client, "out@shop.test")
    assert client.get("/logout").status_code == 405
    token = csrf_of(client.get("/account").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/account", follow_redirects=False).status_code == 303


# --- forgotten password -----------------------------------------------------------------------------------------------


def reset_link(body: str) -> str:
    match = re.search(r"http://testserver(/reset/\S+)", body)
    assert match, body
    return match.group(1)


async def test_a_reset_link_sets_a_new_password_once(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="forgot@shop.test")
    response = post_form(client, "/forgot", email="forgot@shop.test")
    assert response.status_code == 303
    async with engine.connect() as conn:
        mails = await list_mail(conn)
    link = reset_link(mails[0].body)
    assert client.get(link).status_code == 200
    mismatch = post_form(client, link, new_password="a brand new password", confirm_password="something else")
    assert mismatch.status_code == 400
    assert "not the same" in mismatch.text
    done = post_form(client, link, new_password="a brand new password", confirm_password="a brand new password")
    assert done.status_code == 303
    assert client.get("/account").status_code == 200  # logged in by the reset
    assert client.get(link).status_code == 400  # single use
    log_out(client)
    log_in(client, "forgot@shop.test", "a brand new password")


async def test_forgot_answers_alike_for_unknown_addresses_and_sends_nothing(
    client: TestClient, engine: AsyncEngine
) -> None:
    response = post_form(client, "/forgot", email="nobody@shop.test")
    assert response.status_code == 303
    assert response.headers["location"].endswith("/login")
    assert await count(engine, tables.outbox_mail) == 0


async def test_forgot_is_limited_per_address(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="spam@shop.test")
    for _ in range(FORGOT_LIMIT):
        assert post_form(client, "/forgot", email="spam@shop.test").status_code == 303
    assert post_form(client, "/forgot", email="spam@shop.test").status_code == 400
    assert await count(engine, tables.outbox_mail) == FORGOT_LIMIT


async def test_a_forged_or_foreign_reset_link_is_refused(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    async with engine.begin() as conn:
        account_id = await create_login(conn, email="target@shop.test")
        account = await accounts.get_account(conn, account_id=account_id)
    assert account is not None
    forged = make_reset_token("another-secret-key", account_id=account.id, password_hash=account.password_hash)
    stale = make_reset_token(str(settings.secret_key), account_id=account.id, password_hash="an older hash")
    for token in (forged, stale, "garbage"):
        response = client.get(f"/reset/{token}")
        assert response.status_code == 400
        assert "no longer works" in response.text


# --- account settings -------------------------------------------------------------------------------------------------


async def test_changing_the_email_needs_the_current_password(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="old@shop.test")
        await create_login(conn, email="other@shop.test")
    log_in(client, "old@shop.test")
    wrong = post_form(client, "/account", action="email", email="new@shop.test", current_password="wrong")
    assert wrong.status_code == 400
    assert "This is not your current password." in wrong.text
    taken = post_form(client, "/account", action="email", email="other@shop.test", current_password=PAGE_PASSWORD)
    assert taken.status_code == 400
    assert 'value="other@shop.test"' in taken.text
    done = post_form(client, "/account", action="email", email="new@shop.test", current_password=PAGE_PASSWORD)
    assert done.status_code == 303
    async with engine.connect() as conn:
        assert await accounts.get_account_by_email(conn, email="new@shop.test") is not None
        assert await accounts.get_account_by_email(conn, email="old@shop.test") is None


async def test_changing_the_password(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="pw@shop.test")
    log_in(client, "pw@shop.test")
    short = post_form(
        client, "/account", action="password", current_password=PAGE_PASSWORD, new_password="x", confirm_password="x"
    )
    assert short.status_code == 400
    new = "a different long password"
    done = post_form(
        client, "/account", action="password", current_password=PAGE_PASSWORD, new_password=new, confirm_password=new
    )
    assert done.status_code == 303
    log_out(client)
    assert post_form(client, "/login", email="pw@shop.test", password=PAGE_PASSWORD).status_code == 400
    log_in(client, "pw@shop.test", new)


async def test_deleting_the_account_forgets_its_shops_and_tokens(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    cipher = Cipher(settings.encryption_keys)
    async with engine.begin() as conn:
        owner = await create_login(conn, email="leaving@shop.test")
        stays = await create_login(conn, email="staying@shop.test")
        shop = await create_active_integration(conn, account_id=owner)
        other = await create_active_integration(conn, account_id=stays)
        for integration_id in (shop.id, other.id):
            await credentials.save_credential(
                conn, integration_id=integration_id, kind=credentials.SHOP_TOKEN, secret="shop-token-1", cipher=cipher
            )
    log_in(client, "leaving@shop.test")
    unconfirmed = post_form(client, "/account", action="delete", current_password=PAGE_PASSWORD)
    assert unconfirmed.status_code == 400
    assert "Tick the box" in unconfirmed.text
    done = post_form(client, "/account", action="delete", current_password=PAGE_PASSWORD, confirm="on")
    assert done.status_code == 303
    async with engine.connect() as conn:
        assert await accounts.get_account(conn, account_id=owner) is None
        assert await list_integrations(conn, account_id=owner) == []
        remaining = (await conn.execute(select(tables.credential.c.integration_id))).scalars().all()
    assert remaining == [other.id]
    assert client.get("/account", follow_redirects=False).status_code == 303


async def test_the_session_cookie_is_signed_http_only_and_same_site(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="cookie@shop.test")
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login",
        data={"csrf_token": token, "email": "cookie@shop.test", "password": PAGE_PASSWORD},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("gw_session=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "cookie@shop.test" not in cookie
    client.cookies.set("gw_session", "forged." + response.cookies["gw_session"][7:])
    assert client.get("/account", follow_redirects=False).status_code == 303  # a tampered cookie is no session
