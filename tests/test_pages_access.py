"""Tenant isolation, login and CSRF for every customer page, listed from the app's own route table.

New routes are covered automatically: each route whose path names an integration must answer 404 to another
account, send an anonymous visitor to the login page, and refuse a POST without the form's CSRF token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from gateway.store import notices, orders
from tests.support.factories import create_login, csrf_of, log_in

# Routes that are not customer pages: they authenticate otherwise (webhook key, bearer token) or not at all.
NOT_PAGES = ("/webhooks/", "/metrics", "/healthz", "/readyz", "/static")


def page_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """(full path format, route) for every Route, descending into Mounts."""
    for route in routes:
        if isinstance(route, Mount):
            yield from page_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = prefix + route.path_format
            if not path.startswith(NOT_PAGES):
                yield path, route


def tenant_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path format) of every route whose path carries an integration id."""
    found = []
    for path, route in page_routes(list(app.routes)):
        if "{integration_id}" in path:
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def post_routes(app: Any) -> list[str]:
    return [path for path, route in page_routes(list(app.routes)) if "POST" in (route.methods or ())]


async def two_accounts(engine: AsyncEngine) -> dict[str, Any]:
    """Account A with an integration and one failed order; account B with its own integration."""
    from tests.support.factories import create_active_integration

    async with engine.begin() as conn:
        a = await create_login(conn, email="a@shop.test")
        b = await create_login(conn, email="b@shop.test")
        integration_a = await create_active_integration(conn, account_id=a)
        integration_b = await create_active_integration(conn, account_id=b)
        outcome = await notices.record_notice(
            conn,
            integration_id=integration_a.id,
            order_number="1001",
            status_id=2,
            source="poller",
            dedupe_key="1001:2",
            selected_statuses=(2,),
        )
        await orders.mark_failed(
            conn,
            integration_id=integration_a.id,
            order_sync_id=int(outcome.order_sync_id or 0),
            error_kind="settings",
            message="choose the sales journal",
        )
    return {"a": integration_a.id, "b": integration_b.id, "sync": outcome.order_sync_id}


def fill(path: str, ids: dict[str, Any]) -> str:
    return path.format(
        integration_id=ids["a"], order_sync_id=ids["sync"], token="x", month="2026-10", order_number="1001"
    )


def test_the_route_table_has_the_tenant_pages(app: Any) -> None:
    """Guards the guard: the listing must find the customer pages, else the tests below would prove nothing."""
    paths = {path for _, path in tenant_routes(app)}
    for expected in ("dashboard", "history", "setup", "billing", "support", "connections"):
        assert any(f"/{expected}" in path for path in paths), expected
    assert len(paths) >= 20


async def test_another_account_gets_404_for_every_url_of_an_integration(
    app: Any, client: TestClient, engine: AsyncEngine
) -> None:
    ids = await two_accounts(engine)
    log_in(client, "b@shop.test")
    token = csrf_of(client.get("/account").text)
    for method, path in tenant_routes(app):
        url = fill(path, ids)
        if method == "GET":
            response = client.get(url, follow_redirects=False)
        else:
            response = client.request(method, url, data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == 404, f"{method} {url} answered {response.status_code} to another account"
        assert "1001" not in response.text


async def test_the_owner_reaches_every_page_of_the_integration(
    app: Any, client: TestClient, engine: AsyncEngine
) -> None:
    ids = await two_accounts(engine)
    log_in(client, "a@shop.test")
    for method, path in tenant_routes(app):
        if method == "GET":
            url = fill(path, ids)
            response = client.get(url, follow_redirects=False)
            assert response.status_code in (200, 303), f"GET {url} answered {response.status_code} to its owner"


async def test_anonymous_visitors_are_sent_to_the_login_page(app: Any, client: TestClient, engine: AsyncEngine) -> None:
    ids = await two_accounts(engine)
    for method, path in tenant_routes(app):
        if method != "GET":
            continue
        url = fill(path, ids)
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 303, url
        assert response.headers["location"].startswith("/login?next=")
    for url in ("/account", "/integrations"):
        assert client.get(url, follow_redirects=False).headers["location"] == f"/login?next={url}"


async def test_every_post_without_the_csrf_token_is_refused(app: Any, client: TestClient, engine: AsyncEngine) -> None:
    ids = await two_accounts(engine)
    log_in(client, "a@shop.test")
    checked = 0
    for path in post_routes(app):
        url = fill(path, ids)
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(url, data=data, follow_redirects=False)
            assert response.status_code == 403, f"POST {url} with {data} answered {response.status_code}"
        checked += 1
    assert checked >= 15
    async with engine.connect() as conn:
        sync = await orders.get_sync(conn, integration_id=ids["a"], order_sync_id=ids["sync"])
    assert sync is not None
    assert sync.state == "failed"  # no refused POST changed anything


async def test_an_unknown_integration_is_404(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await create_login(conn, email="c@shop.test")
    log_in(client, "c@shop.test")
    for path in ("/integrations/999999/dashboard", "/integrations/999999/history/1"):
        assert client.get(path).status_code == 404


async def test_another_accounts_order_is_404_under_ones_own_integration(
    client: TestClient, engine: AsyncEngine
) -> None:
    ids = await two_accounts(engine)
    log_in(client, "b@shop.test")
    token = csrf_of(client.get("/account").text)
    own = f"/integrations/{ids['b']}/history/{ids['sync']}"
    assert client.get(own).status_code == 404
    assert client.post(own + "/retry", data={"csrf_token": token}).status_code == 404
    assert client.post(own + "/ignore", data={"csrf_token": token}).status_code == 404


async def test_errors_are_pages_for_browsers_and_text_for_api_clients(client: TestClient, engine: AsyncEngine) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    missing = client.get("/integrations/424242/dashboard", headers=html, follow_redirects=False)
    assert missing.status_code == 303  # anonymous: to the login page first
    async with engine.begin() as conn:
        await create_login(conn, email="err@shop.test")
    log_in(client, "err@shop.test")
    page = client.get("/integrations/424242/dashboard", headers=html)
    assert page.status_code == 404
    assert "This page does not exist" in page.text
    assert "<html" in page.text
    plain = client.get("/integrations/424242/dashboard", headers={"Accept": "application/json"})
    assert plain.status_code == 404
    assert "<html" not in plain.text
    expired = client.post("/logout", data={"csrf_token": "old"}, headers=html)
    assert expired.status_code == 403
    assert "This form has expired" in expired.text
    client.cookies.clear()
    dutch = client.get("/no-such-page", headers={**html, "Accept-Language": "nl"})
    assert dutch.status_code == 404
    assert "Deze pagina bestaat niet" in dutch.text
