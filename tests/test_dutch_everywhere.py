"""Entirely Dutch: the Dutch catalogue is complete (msgfmt --statistics: 0 untranslated, 0 fuzzy), every failure
kind reads as a Dutch sentence, and every page of a set-up shop with orders in every state renders in Dutch without
a single text that misses the catalogue (every `_()` / `ngettext()` a page calls is recorded and checked)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from babel.messages.pofile import read_po
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import i18n
from gateway.booking_reasons import REASONS, SUMMARIES, failure_message
from gateway.i18n import LOCALE_DIR, Message, translate
from gateway.store import orders
from gateway.store.integrations import get_integration_or_raise, update_integration
from tests.support.factories import add_order, csrf_of
from tests.support.pages import connect_exact, connect_shop, sign_up, submit

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
DETAIL = "an English detail only for the technical disclosure"


def dutch_entries() -> list[Any]:
    with (LOCALE_DIR / "nl" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return [m for m in read_po(f, locale="nl") if m.id]


def test_the_dutch_catalogue_has_no_untranslated_and_no_fuzzy_message() -> None:
    entries = dutch_entries()
    untranslated = [m.id for m in entries if not (all(m.string) if isinstance(m.string, tuple) else m.string)]
    fuzzy = [m.id for m in entries if m.fuzzy]
    print(f"nl: {len(entries)} translated messages, {len(untranslated)} untranslated, {len(fuzzy)} fuzzy")  # noqa: T201
    assert untranslated == []
    assert fuzzy == []


def kind_cases() -> Iterator[Any]:
    for kind in SUMMARIES:
        yield pytest.param(kind, None, id=f"{kind}-without-figures")
    for kind, found in REASONS.items():
        for n, template in enumerate((found,) if isinstance(found, Message) else found):
            figures = dict.fromkeys(PLACEHOLDER.findall(template.text), "7")
            yield pytest.param(kind, figures, id=f"{kind}-{n}")
    yield pytest.param("a_kind_nobody_named", None, id="unknown-kind")


@pytest.mark.parametrize(("kind", "figures"), list(kind_cases()))
def test_every_failure_kind_reads_as_a_dutch_sentence(kind: str, figures: dict[str, str] | None) -> None:
    message = failure_message(kind, figures, DETAIL)
    dutch, english = translate("nl", message), translate("en", message)
    assert DETAIL not in dutch
    assert dutch != english, f"{kind} has no Dutch sentence: {english}"
    for value in (figures or {}).values():
        assert value in dutch


class Recorder:
    """A catalogue that notes every message id a page asked for and the Dutch catalogue does not translate."""

    def __init__(self, real: Any, known: dict[Any, Any], misses: set[str]) -> None:
        self.real, self.known, self.misses = real, known, misses

    def gettext(self, text: str) -> str:
        if not self.known.get(text):
            self.misses.add(text)
        return str(self.real.gettext(text))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        if not self.known.get(singular):
            self.misses.add(singular)
        return str(self.real.ngettext(singular, plural, n))


@pytest.fixture
def misses(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    found: set[str] = set()
    known = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in dutch_entries()}
    real = i18n.translations

    def recording(locale: str) -> Any:
        return Recorder(real(locale), known, found) if locale == "nl" else real(locale)

    monkeypatch.setattr(i18n, "translations", recording)
    return found


def english_texts() -> list[str]:
    """English catalogue texts a Dutch page must never show: each message's longest literal run of 3+ words."""
    texts = []
    for entry in dutch_entries():
        msgid = entry.id if isinstance(entry.id, str) else entry.id[0]
        if msgid == (entry.string if isinstance(entry.string, str) else entry.string[0]):
            continue
        run = max(PLACEHOLDER.split(msgid), key=len).strip(" .:,;()")
        if len(run.split()) >= 3:
            texts.append(run)
    return texts


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"<details\b.*?</details>", " ", page, flags=re.S)  # technical details may quote Exact's English
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def seed_orders(engine: AsyncEngine, shop: int) -> list[int]:
    """Orders in every state and with every failure kind, as the pipeline and the job leave them."""
    async with engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=shop)
    ids = [
        await add_order(engine, integration, "9001", state="booked", order_total="66.43", currency="EUR"),
        await add_order(engine, integration, "9002", state="skipped"),
        await add_order(engine, integration, "9003", state="queued"),
    ]
    cases = [(kind, figures) for kind, figures in (c.values for c in kind_cases())]
    for n, (kind, figures) in enumerate(cases):
        sync_id = await add_order(engine, integration, f"95{n:02d}")
        async with engine.begin() as conn:
            await orders.mark_failed(
                conn, integration_id=shop, order_sync_id=sync_id, error_kind=kind, message=DETAIL, params=figures
            )
        ids.append(sync_id)
    ignored = await add_order(engine, integration, "9004", state="queued")
    async with engine.begin() as conn:
        await orders.ignore_sync(conn, integration_id=shop, order_sync_id=ignored)
    return [*ids, ignored]


def dutch_pages(wizard: TestClient, shop: int, sync_ids: list[int]) -> Iterator[str]:
    base = f"/integrations/{shop}"
    yield from ("/", "/login", "/signup", "/forgot", "/reset/no-such-token")  # logged in they still render
    steps = ("statuses", "export", "administration", "vat", "booking", "items", "service", "review", "shop", "exact")
    yield from (f"{base}/setup", *(f"{base}/setup/{step}" for step in steps))
    yield from (f"{base}/dashboard", f"{base}/history", f"{base}/connections", f"{base}/billing", f"{base}/support")
    yield from ("/account", "/integrations", f"{base}/exact/connect", f"{base}/exact/disconnect")
    yield from (f"{base}/connections/shop/disconnect", f"{base}/connections/webhook/remove", f"{base}/books")
    for state in ("booked", "pending", "failed", "needs_attention", "skipped", "ignored"):
        yield f"{base}/history?state={state}"
    for sync_id in sync_ids:
        yield f"{base}/history/{sync_id}"
        yield f"{base}/history/{sync_id}/ignore"


async def test_every_page_renders_entirely_in_dutch(wizard: TestClient, engine: AsyncEngine, misses: set[str]) -> None:
    wizard.headers["Accept-Language"] = "nl"
    shop = sign_up(wizard)
    connect_shop(wizard, shop)
    connect_exact(wizard, shop)
    token = csrf_of(wizard.get("/account").text)
    wizard.post("/language", data={"csrf_token": token, "lang": "nl", "next": "/account"})
    submit(wizard, f"/integrations/{shop}/setup/statuses", {"statuses": ["2", "3"]})
    submit(wizard, f"/integrations/{shop}/setup/administration", {"division": "123456"})
    sync_ids = await seed_orders(engine, shop)
    english = english_texts()
    shown: dict[str, list[str]] = {}
    for url in dutch_pages(wizard, shop, sync_ids):
        response = wizard.get(url)
        assert response.status_code == (400 if "/reset/" in url else 200), (url, response.status_code)
        shown.update(english_on(response.text, url, english))
    # A lost Exact connection and a failed shop check store English detail: the pages say it in Dutch.
    async with engine.begin() as conn:
        await update_integration(
            conn,
            integration_id=shop,
            exact_connection="reconnect_needed",
            exact_connection_error=DETAIL,
            last_poll_error=DETAIL,
        )
    base = f"/integrations/{shop}"
    for url in (f"{base}/dashboard", f"{base}/connections", f"{base}/setup/exact", f"{base}/exact/connect"):
        shown.update(english_on(wizard.get(url).text, url, english))
    async with engine.begin() as conn:
        await update_integration(conn, integration_id=shop, exact_connection="connected", exact_connection_error=None)
    # The dry run refuses (no sales journal chosen yet): the reason is the kind's Dutch sentence.
    tested = submit(wizard, f"/integrations/{shop}/setup/test", {"order_number": ""})
    assert "kan met deze instellingen niet worden geboekt" in tested.text
    assert "Een instelling die nodig is om deze bestelling te boeken ontbreekt" in tested.text
    shown.update(english_on(tested.text, "dry run", english))
    assert shown == {}
    assert sorted(misses) == []


def english_on(page: str, where: str, english: list[str]) -> dict[str, list[str]]:
    assert '<html lang="nl">' in page, where
    text = visible_text(page)
    assert DETAIL not in text, where
    found = [t for t in english if t in text]
    return {where: found} if found else {}
