"""Languages: every message of the pages has a Dutch translation, the language follows the browser and the switch."""

from __future__ import annotations

import re

from babel.messages.pofile import read_po
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.i18n import LOCALE_DIR, N_, Message, negotiate, parse_accept_language, translate
from gateway.locales.update_catalogs import extract
from gateway.store import accounts
from tests.support.factories import create_login, csrf_of, log_in

PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def dutch_catalog() -> dict[object, object]:
    with (LOCALE_DIR / "nl" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return {m.id: m.string for m in read_po(f, locale="nl") if m.id}


def test_every_message_in_the_code_and_templates_has_a_dutch_translation() -> None:
    """Fails when page text changes without `python -m gateway.locales.update_catalogs` and a translation."""
    catalog = dutch_catalog()
    missing = [m.id for m in extract() if m.id and not catalog.get(m.id)]
    assert missing == []
    empty_plurals = [k for k, v in catalog.items() if isinstance(v, tuple) and not all(v)]
    assert empty_plurals == []


def test_translations_keep_every_placeholder() -> None:
    for msgid, msgstr in dutch_catalog().items():
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        strs = msgstr if isinstance(msgstr, tuple) else (msgstr,)
        wanted = sorted(PLACEHOLDER.findall(ids[-1]))
        for text in strs:
            assert sorted(PLACEHOLDER.findall(str(text))) == wanted, (msgid, text)


def test_accept_language_is_parsed_by_quality() -> None:
    assert parse_accept_language("en-GB,en;q=0.9,nl;q=0.8") == ["en-gb", "en", "nl"]
    assert parse_accept_language("de;q=0.5, nl-BE;q=0.9, fr;q=0") == ["nl-be", "de"]
    assert negotiate("de-DE,de;q=0.9,en;q=0.4") == "en"
    assert negotiate("nl-BE") == "nl"
    assert negotiate("de, fr") is None
    assert negotiate("q=garbage;;,") is None


def test_messages_translate_with_nested_parameters() -> None:
    message = N_("Choose the Exact VAT code for %(category)s.", category=N_("Export outside the EU"))
    assert translate("nl", message) == "Kies de Exact-btw-code voor Export buiten de EU."
    assert translate("en", message) == "Choose the Exact VAT code for Export outside the EU."
    assert Message.from_json(message.to_json()) == message
    assert translate("nl", "a text nobody translated") == "a text nobody translated"


def test_the_browser_language_picks_the_page_language(client: TestClient) -> None:
    dutch = client.get("/", headers={"Accept-Language": "nl-NL,nl;q=0.9"}).text
    english = client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"}).text
    other = client.get("/", headers={"Accept-Language": "de-DE"}).text
    assert '<html lang="nl">' in dutch
    assert "Begin je gratis proefperiode" in dutch
    assert '<html lang="en">' in english
    assert "Start your free trial" in english
    assert "Begin je gratis proefperiode" in other  # Dutch is the default


async def test_the_switch_sticks_to_the_session_and_the_account(client: TestClient, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        account_id = await create_login(conn, email="taal@shop.test", locale="en")
    headers = {"Accept-Language": "en"}
    token = csrf_of(client.get("/login", headers=headers).text)
    switched = client.post(
        "/language", data={"csrf_token": token, "lang": "nl", "next": "/login"}, follow_redirects=False
    )
    assert switched.headers["location"] == "/login"
    assert "Wachtwoord vergeten?" in client.get("/login", headers=headers).text
    log_in(client, "taal@shop.test")  # logging in takes the account's language (en)
    assert "Log out" in client.get("/account", headers=headers).text
    token = csrf_of(client.get("/account").text)
    client.post("/language", data={"csrf_token": token, "lang": "nl", "next": "//evil.test"})
    async with engine.connect() as conn:
        account = await accounts.get_account(conn, account_id=account_id)
    assert account is not None
    assert account.locale == "nl"
    page = client.get("/account")
    assert "Uitloggen" in page.text
    assert "E-mailadres wijzigen" in page.text


def test_form_errors_are_translated(client: TestClient) -> None:
    headers = {"Accept-Language": "nl"}
    token = csrf_of(client.get("/signup", headers=headers).text)
    page = client.post("/signup", data={"csrf_token": token, "email": "x", "password": "kort"}, headers=headers).text
    assert "Er zijn 2 problemen" in page
    assert "Vul een e-mailadres in zoals naam@voorbeeld.nl." in page
    assert "Gebruik minstens 10 tekens." in page
