"""A password change or reset ends the account's other sessions; deleting the account ends all of them.

Two browsers: the `client` fixture and `other`, a second TestClient on a second app (as a second web process would
be) over the same database and secret key.
"""

from __future__ import annotations

import json
import re
from base64 import b64encode
from collections.abc import Iterator

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from gateway.store.outbox import list_mail
from tests.support.factories import PAGE_PASSWORD, create_active_integration, create_login, csrf_of, log_in

ENGLISH = {"Accept-Language": "en"}
CHANGED = "You were logged out because the password was changed."
DELETED = "You were logged out because the account was deleted."
NEW_PASSWORD = "a brand new password"


@pytest.fixture
def other(settings: Settings, clean_state: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver", headers=ENGLISH) as other:
        yield other


def post_form(client: TestClient, url: str, **data: str) -> object:
    token = csrf_of(client.get(url).text)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def assert_sent_to_login(browser: TestClient, url: str, notice: str) -> None:
    """The next request ends on the login page with the notice, and the session stays ended."""
    response = browser.get(url, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    page = browser.get(response.headers["location"])
    assert page.status_code == 200
    assert 'name="password"' in page.text
    assert notice in page.text
    assert browser.get("/account", follow_redirects=False).headers["location"].startswith("/login")


async def test_a_password_change_logs_out_the_other_browsers_only(
    client: TestClient, other: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="two@shop.test")
    log_in(client, "two@shop.test")
    log_in(other, "two@shop.test")
    assert other.get("/account", follow_redirects=False).status_code == 200
    done = post_form(
        client,
        "/account",
        action="password",
        current_password=PAGE_PASSWORD,
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    assert done.status_code == 303
    assert client.get("/account", follow_redirects=False).status_code == 200  # the changer stays logged in
    assert_sent_to_login(other, "/account", CHANGED)
    assert client.get("/account", follow_redirects=False).status_code == 200
    log_in(other, "two@shop.test", NEW_PASSWORD)
    assert other.get("/account", follow_redirects=False).status_code == 200


async def test_a_reset_logs_out_the_other_browsers_in_their_language(
    client: TestClient, other: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="forgot@shop.test", locale="nl")
    log_in(other, "forgot@shop.test")  # e.g. a forgotten logged-in computer
    assert post_form(client, "/forgot", email="forgot@shop.test").status_code == 303
    async with engine.connect() as conn:
        [mail] = await list_mail(conn)
    match = re.search(r"http://testserver(/reset/\S+)", mail.body)
    assert match
    done = post_form(client, match.group(1), new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    assert done.status_code == 303
    assert client.get("/account", follow_redirects=False).status_code == 200  # logged in by the reset
    assert_sent_to_login(other, "/", "Je bent uitgelogd omdat het wachtwoord is gewijzigd.")


async def test_deleting_the_account_ends_its_other_sessions(
    client: TestClient, other: TestClient, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        account_id = await create_login(conn, email="gone@shop.test")
        shop = await create_active_integration(conn, account_id=account_id)
    log_in(client, "gone@shop.test")
    log_in(other, "gone@shop.test")
    done = post_form(client, "/account", action="delete", current_password=PAGE_PASSWORD, confirm="on")
    assert done.status_code == 303
    assert_sent_to_login(other, f"/integrations/{shop.id}/dashboard", DELETED)


async def test_a_readable_signed_cookie_of_the_old_kind_is_no_login(
    client: TestClient, engine: AsyncEngine, settings: Settings
) -> None:
    """A cookie signed (not encrypted) as sessions were before, even naming a real account, is no login."""
    async with engine.begin() as conn:
        account_id = await create_login(conn, email="old@shop.test")
    data = b64encode(json.dumps({"account_id": account_id, "pw_stamp": 0}).encode())
    client.cookies.set("gw_session", TimestampSigner(str(settings.secret_key)).sign(data).decode())
    response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
