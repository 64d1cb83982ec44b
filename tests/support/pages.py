"""The customer pages' forms as a test fills them: CSRF tokens, and the set-up wizard's steps (signing up, connecting
the shop and Exact through the sandboxes)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.testclient import TestClient

from gateway.sandbox.mww_seed import SANDBOX_SHOP_TOKEN
from tests.support.factories import csrf_of


def sign_up(client: TestClient) -> int:
    token = csrf_of(client.get("/signup").text)
    response = client.post(
        "/signup",
        data={"csrf_token": token, "email": "wizard@shop.test", "password": "a long enough password"},
        follow_redirects=False,
    )
    return int(response.headers["location"].split("/integrations/")[1].split("/")[0])


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
