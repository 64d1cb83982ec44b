"""Connecting Exact Online through the pages, against the sandbox served over HTTP: the full round trip, and every
way it can go wrong (replayed, forged, expired or foreign state; denied consent; a code from another country's host)
ending on a clear 400 page."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import exact_oauth, tables
from gateway.auth import login_session
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.exact_oauth import STATE_SALT, StateError, check_state, new_state
from gateway.sandbox.exact import create_exact_sandbox
from gateway.settings import EXACT_COUNTRIES, Settings
from gateway.store.integrations import Integration, create_integration, get_integration_or_raise
from tests.support.environment import run_in_thread
from tests.support.factories import connect_exact_sandbox, create_account
from tests.support.servers import ServedApp

CALLBACK = "http://testserver/connect/exact/callback"
ENGLISH = {"Accept-Language": "en"}  # the pages are Dutch by default; the assertions read the English text


def arrange(settings: Settings, action: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                return await action(conn)
        finally:
            await engine.dispose()

    return run_in_thread(run())


def integration_row(settings: Settings, integration_id: int) -> Integration:
    async def read(conn: AsyncConnection) -> Integration:
        return await get_integration_or_raise(conn, integration_id=integration_id)

    return arrange(settings, read)


def rows(settings: Settings, table: Any) -> list[Any]:
    async def read(conn: AsyncConnection) -> list[Any]:
        return list((await conn.execute(select(table))).all())

    return arrange(settings, read)


def new_owner(settings: Settings, **columns: Any) -> tuple[int, int]:
    async def create(conn: AsyncConnection) -> tuple[int, int]:
        from gateway.store.integrations import update_integration

        account_id = await create_account(conn)
        integration = await create_integration(conn, account_id=account_id, name="Shop")
        if columns:
            await update_integration(conn, integration_id=integration.id, **columns)
        return account_id, integration.id

    return arrange(settings, create)


async def _login(request: Request) -> PlainTextResponse:
    """Test-only: start a session for the account (mounted on the test app, never on the real one)."""
    async with request.app.state.engine.begin() as conn:
        await login_session(request, conn, request.path_params["account_id"])
    return PlainTextResponse("ok")


@pytest.fixture
def exact_sandboxes() -> Iterator[dict[str, tuple[Any, str]]]:
    """Two sandbox Exacts: one for nl (and every other country), one for be, each on its own port."""
    nl = create_exact_sandbox(client_id="test-client-id", client_secret="exact-client-secret-0001")
    be = create_exact_sandbox(client_id="test-client-id", client_secret="exact-client-secret-0001")
    with ServedApp(nl) as served_nl, ServedApp(be) as served_be:
        yield {"nl": (nl, served_nl.url), "be": (be, served_be.url)}


@pytest.fixture
def web_settings(settings: Settings, clean_state: Settings, exact_sandboxes: dict[str, tuple[Any, str]]) -> Settings:
    hosts = dict.fromkeys(EXACT_COUNTRIES, exact_sandboxes["nl"][1]) | {"be": exact_sandboxes["be"][1]}
    return dataclasses.replace(settings, exact_hosts=hosts)


@pytest.fixture
def web(web_settings: Settings) -> Iterator[TestClient]:
    from gateway.app import create_app

    app = create_app(web_settings)
    app.router.routes.append(Route("/_test/login/{account_id:int}", _login))
    with TestClient(app, base_url="http://testserver", follow_redirects=False, headers=ENGLISH) as client:
        yield client


@pytest.fixture
def owner(web: TestClient, web_settings: Settings) -> tuple[int, int]:
    account_id, integration_id = new_owner(web_settings)
    assert web.get(f"/_test/login/{account_id}").status_code == 200
    return account_id, integration_id


def csrf(web: TestClient, integration_id: int) -> str:
    page = web.get(f"/integrations/{integration_id}/exact/connect")
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def start(web: TestClient, integration_id: int, country: str = "nl") -> str:
    """POST the country choice; return the authorize URL the browser is sent to."""
    response = web.post(
        f"/integrations/{integration_id}/exact/connect",
        data={"country": country, "csrf_token": csrf(web, integration_id)},
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


def consent(authorize_url: str, decision: str = "approve") -> str:
    """What the browser does at Exact: load the page, press a button; return the callback path with its query."""
    with httpx.Client() as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200
        assert 'value="approve"' in page.text
        assert 'value="deny"' in page.text
        fields = dict(re.findall(r'name="(client_id|redirect_uri|state)" value="([^"]*)"', page.text))
        base = authorize_url.split("/api/oauth2/auth")[0]
        answer = browser.post(f"{base}/api/oauth2/auth", data={**fields, "decision": decision})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(CALLBACK)
    return location.removeprefix("http://testserver")


def token_requests(exact_sandboxes: dict[str, tuple[Any, str]], country: str = "nl") -> list[Any]:
    return exact_sandboxes[country][0].state.sandbox.tokens.requests


def assert_clear_failure(response: httpx.Response, *texts: str) -> None:
    assert response.status_code == 400
    assert "Traceback" not in response.text
    for text in texts:
        assert text in response.text


def test_the_connect_page_offers_every_country(web: TestClient, owner: tuple[int, int]) -> None:
    page = web.get(f"/integrations/{owner[1]}/exact/connect")
    assert page.status_code == 200
    for code in EXACT_COUNTRIES:
        assert f'value="{code}"' in page.text


def test_the_connect_page_needs_a_login(web: TestClient, web_settings: Settings) -> None:
    _, integration_id = new_owner(web_settings)
    response = web.get(f"/integrations/{integration_id}/exact/connect")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_another_accounts_integration_is_not_found(
    web: TestClient, web_settings: Settings, owner: tuple[int, int]
) -> None:
    _, foreign = new_owner(web_settings)
    assert web.get(f"/integrations/{foreign}/exact/connect").status_code == 404
    assert (
        web.post(f"/integrations/{foreign}/exact/disconnect", data={"csrf_token": csrf(web, owner[1])}).status_code
        == 404
    )


def test_posts_without_the_csrf_token_are_refused(web: TestClient, owner: tuple[int, int]) -> None:
    assert web.post(f"/integrations/{owner[1]}/exact/connect", data={"country": "nl"}).status_code == 403
    assert web.post(f"/integrations/{owner[1]}/exact/disconnect").status_code == 403


def test_an_unknown_country_shows_the_form_again(web: TestClient, owner: tuple[int, int]) -> None:
    response = web.post(
        f"/integrations/{owner[1]}/exact/connect", data={"country": "xx", "csrf_token": csrf(web, owner[1])}
    )
    assert response.status_code == 400
    assert "Choose the country" in response.text


def test_a_full_connect_round_trip_over_http(
    web: TestClient, web_settings: Settings, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    integration_id = owner[1]
    authorize = start(web, integration_id)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{exact_sandboxes['nl'][1]}/api/oauth2/auth?")
    assert query["client_id"] == ["test-client-id"]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["response_type"] == ["code"]
    done = web.get(consent(authorize))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/integrations/{integration_id}/setup"
    integration = integration_row(web_settings, integration_id)
    assert (integration.exact_connection, integration.exact_country) == ("connected", "nl")
    assert (integration.exact_division, integration.exact_division_name) == (123456, "Demo Webwinkel BV")
    assert integration.exact_user_name == "Sandra Sandbox"
    [credential] = rows(web_settings, tables.credential)
    grant = next(iter(exact_sandboxes["nl"][0].state.sandbox.tokens.grants.values()))
    assert grant.refresh_token not in credential.secret
    assert grant.refresh_token in Cipher(web_settings.encryption_keys).decrypt(credential.secret)
    assert [row.kind for row in rows(web_settings, tables.lookup_cache)] == ["divisions"]
    assert [r.grant_type for r in token_requests(exact_sandboxes)] == ["authorization_code"]


def test_a_replayed_callback_is_refused(
    web: TestClient, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    callback = consent(start(web, owner[1]))
    assert web.get(callback).status_code == 303
    again = web.get(callback)
    assert_clear_failure(again, "already used")
    assert len(token_requests(exact_sandboxes)) == 1


def test_a_used_state_is_refused_even_with_the_cookie_from_before_the_callback(
    web: TestClient, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    """The state is single-use on the server: replaying it with a copy of the earlier cookie and a fresh code from
    Exact connects nothing."""
    authorize = start(web, owner[1])
    before_callback = web.cookies["gw_session"]
    assert web.get(consent(authorize)).status_code == 303
    web.cookies.set("gw_session", before_callback)
    again = web.get(consent(authorize))  # the same state, a fresh authorization code
    assert_clear_failure(again, "already used")
    assert len(token_requests(exact_sandboxes)) == 1


async def test_a_state_is_single_use_and_bound_to_its_account(settings: Settings, redis: Any) -> None:
    session: dict[str, Any] = {}
    state = await new_state(settings, session, redis, account_id=7, integration_id=3, country="nl")
    with pytest.raises(StateError):
        await check_state(settings, session, redis, state, account_id=8)  # another account's session
    session = {}
    state = await new_state(settings, session, redis, account_id=7, integration_id=3, country="nl")
    copied = dict(session)
    checked = await check_state(settings, session, redis, state, account_id=7)
    assert (checked.integration_id, checked.country) == (3, "nl")
    with pytest.raises(StateError):
        await check_state(settings, copied, redis, state, account_id=7)  # a replay with a copy of the session


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: URLSafeTimedSerializer("another-key", salt=STATE_SALT).dumps(s), id="other-key"),
        pytest.param(lambda s: "x" + URLSafeTimedSerializer("k").dumps(s), id="garbage"),
    ],
)
def test_a_forged_state_is_refused(
    web: TestClient, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]], forge: Callable[[Any], str]
) -> None:
    callback = consent(start(web, owner[1]))
    real = parse_qs(urlsplit(callback).query)
    state = forge({"i": owner[1], "c": "nl", "n": "guess"})
    response = web.get("/connect/exact/callback", params={"code": real["code"][0], "state": state})
    assert_clear_failure(response, "not for this gateway")
    assert token_requests(exact_sandboxes) == []
    assert real["code"][0] not in response.text


def test_an_expired_state_is_refused(
    web: TestClient,
    owner: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    exact_sandboxes: dict[str, tuple[Any, str]],
) -> None:
    signed = exact_oauth._serializer

    def eleven_minutes_ago(settings: Settings) -> URLSafeTimedSerializer:
        serializer = signed(settings)

        class EarlierSigner(serializer.signer):  # type: ignore[name-defined,misc]
            def get_timestamp(self) -> int:
                return int(time.time()) - 660

        serializer.signer = EarlierSigner
        return serializer

    with monkeypatch.context() as patch:
        patch.setattr(exact_oauth, "_serializer", eleven_minutes_ago)
        authorize = start(web, owner[1])
    assert_clear_failure(web.get(consent(authorize)), "longer than 10 minutes")
    assert token_requests(exact_sandboxes) == []


def test_a_state_from_another_browser_session_is_refused(
    web: TestClient, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    callback = consent(start(web, owner[1]))
    web.get(f"/_test/login/{owner[0]}")  # a new session for the same account: it never started this attempt
    assert_clear_failure(web.get(callback), "another browser session")
    assert token_requests(exact_sandboxes) == []


def test_denied_consent_ends_on_a_clear_page(
    web: TestClient, web_settings: Settings, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    response = web.get(consent(start(web, owner[1]), decision="deny"))
    assert_clear_failure(response, "did not give the gateway access")
    assert integration_row(web_settings, owner[1]).exact_connection == "disconnected"
    assert token_requests(exact_sandboxes) == []


def test_a_code_from_another_countrys_host_is_refused(
    web: TestClient, web_settings: Settings, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    authorize_be = start(web, owner[1], country="be")
    assert authorize_be.startswith(exact_sandboxes["be"][1])
    # The account lives in the Netherlands: consent happens at the nl host, whose code the be host does not know.
    callback = consent(authorize_be.replace(exact_sandboxes["be"][1], exact_sandboxes["nl"][1]))
    response = web.get(callback)
    assert_clear_failure(response, "did not accept the authorisation", "België")
    assert parse_qs(urlsplit(callback).query)["code"][0] not in response.text
    assert integration_row(web_settings, owner[1]).exact_connection == "disconnected"
    assert rows(web_settings, tables.credential) == []


def test_a_reconnect_keeps_the_administration_chosen_before(
    web: TestClient, web_settings: Settings, exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    account_id, integration_id = new_owner(
        web_settings,
        exact_country="nl",
        exact_division=234567,
        exact_connection="reconnect_needed",
        exact_connection_error="Exact Online refused the authorisation: Old refresh token used.",
    )
    web.get(f"/_test/login/{account_id}")
    page = web.get(f"/integrations/{integration_id}/exact/connect")
    assert "Old refresh token used." in page.text
    assert web.get(consent(start(web, integration_id))).status_code == 303
    integration = integration_row(web_settings, integration_id)
    assert (integration.exact_division, integration.exact_division_name) == (234567, "Demo Groothandel BV")
    assert (integration.exact_connection, integration.exact_connection_error) == ("connected", None)


def test_disconnect_forgets_the_tokens(
    web: TestClient, web_settings: Settings, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    integration_id = owner[1]
    assert web.get(consent(start(web, integration_id))).status_code == 303
    response = web.post(
        f"/integrations/{integration_id}/exact/disconnect", data={"csrf_token": csrf(web, integration_id)}
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"/integrations/{integration_id}/exact/connect")
    assert rows(web_settings, tables.credential) == []
    assert rows(web_settings, tables.lookup_cache) == []
    assert integration_row(web_settings, integration_id).exact_connection == "disconnected"


def test_connecting_needs_a_registered_app(web_settings: Settings) -> None:
    from gateway.app import create_app

    app = create_app(dataclasses.replace(web_settings, exact_client_id=""))
    app.router.routes.append(Route("/_test/login/{account_id:int}", _login))
    account_id, integration_id = new_owner(web_settings)
    with TestClient(app, base_url="http://testserver", follow_redirects=False, headers=ENGLISH) as web:
        web.get(f"/_test/login/{account_id}")
        response = web.post(
            f"/integrations/{integration_id}/exact/connect",
            data={"country": "nl", "csrf_token": csrf(web, integration_id)},
        )
    assert response.status_code == 400
    assert "EXACT_CLIENT_ID" in response.text


def test_the_factory_tokens_match_the_sandbox(
    web_settings: Settings, exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    """The helper other tests use stores a pair the sandbox accepts (guards the factory itself)."""
    _, integration_id = new_owner(web_settings)
    sandbox_app = exact_sandboxes["nl"][0]

    async def connect(conn: AsyncConnection) -> Any:
        return await connect_exact_sandbox(
            conn, integration_id=integration_id, sandbox_app=sandbox_app, cipher=Cipher(web_settings.encryption_keys)
        )

    tokens = arrange(web_settings, connect)
    assert sandbox_app.state.sandbox.tokens.bearer_ok(f"Bearer {tokens.access_token}")


def test_connect_failures_read_in_dutch(
    web: TestClient, owner: tuple[int, int], exact_sandboxes: dict[str, tuple[Any, str]]
) -> None:
    authorize_be = start(web, owner[1], country="be")
    callback = consent(authorize_be.replace(exact_sandboxes["be"][1], exact_sandboxes["nl"][1]))
    dutch = {"Accept-Language": "nl"}
    wrong_country = web.get(callback, headers=dutch)
    assert_clear_failure(wrong_country, "Staat je Exact Online-account niet in België")
    replayed = web.get(callback, headers=dutch)
    assert_clear_failure(replayed, "al gebruikt of in een andere browsersessie", "Begin opnieuw met koppelen")
