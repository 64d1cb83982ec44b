"""The customer pages' forms as a test fills them: CSRF tokens, links from the outbox, and the set-up wizard's steps
(signing up through the mailed link, connecting the shop and Exact through the sandboxes)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.testclient import TestClient

from gateway.db import create_engine
from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN
from gateway.settings import Settings
from gateway.store.outbox import list_mail
from tests.support.environment import run_in_thread
from tests.support.factories import csrf_of


def mailed_link(settings: Settings, prefix: str) -> str:
    """The path of the newest link starting with `prefix` (e.g. "/welcome/") in the outbox."""

    async def newest() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                mails = await list_mail(conn)
        finally:
            await engine.dispose()
        for mail in mails:
            match = re.search(re.escape(settings.public_url + prefix) + r"\S+", mail.body)
            if match:
                return match.group(0).removeprefix(settings.public_url)
        raise AssertionError(f"no mail holds a link under {prefix}")

    return str(run_in_thread(newest()))


def sign_up(client: TestClient, email: str = "wizard@shop.test", password: str = "a long enough password") -> int:
    """Sign up and open the mailed link, as a new owner does; returns the new shop's integration id."""
    token = csrf_of(client.get("/signup").text)
    response = client.post(
        "/signup", data={"csrf_token": token, "email": email, "password": password}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    link = mailed_link(client.app.state.settings, "/welcome/")  # type: ignore[attr-defined]
    confirmed = client.post(link, data={"csrf_token": csrf_of(client.get(link).text)}, follow_redirects=False)
    assert confirmed.status_code == 303, confirmed.text
    return int(confirmed.headers["location"].split("/integrations/")[1].split("/")[0])


def submit(client: TestClient, url: str, data: dict[str, Any]) -> httpx.Response:
    """POST a form with the session's CSRF token; a list value sends the field once per item (checkboxes)."""
    token = csrf_of(client.get("/account").text)
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=False)


def connect_shop(client: TestClient, shop: int) -> None:
    response = submit(client, f"/integrations/{shop}/setup/shop", {"shop_token": SANDBOX_SHOP_TOKEN})
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith(f"/integrations/{shop}/setup/exact")


def connect_exact(client: TestClient, shop: int) -> None:
    """The real OAuth dance: our connect page, the sandbox's consent form (over HTTP), our callback."""
    response = submit(client, f"/integrations/{shop}/exact/connect", {"country": "nl"})
    assert response.status_code == 303, response.text
    authorize = httpx.URL(response.headers["location"])
    consent = httpx.post(
        authorize.copy_with(query=None),
        data={**dict(authorize.params), "decision": "approve"},
        follow_redirects=False,
    )
    callback = httpx.URL(consent.headers["location"])
    done = client.get(f"{callback.path}?{callback.query.decode()}", follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/integrations/{shop}/setup"
