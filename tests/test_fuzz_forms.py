"""Fuzzing the settings forms (hypothesis): every field of every set-up and account form, with the page's own
options, nasty text, huge text, unicode, numbers and repeated fields. Each POST ends in a page (200/400) or a
redirect (303), never a 500; whatever is saved is one of the offered options or a well-formed value; and another
account's integration never changes.

The owner's integration is set up for real against both sandboxes over HTTP (shop token, Exact consent), so the
options the forms check against are the live look-ups.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from typing import Any

from hypothesis import HealthCheck, event, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import select
from starlette.testclient import TestClient

from gateway import tables
from gateway.db import create_engine
from gateway.settings import SERVICE_LEVELS, Settings
from gateway.store.integrations import EU_VAT_MODES, INSERTION_TYPES, INVOICE_STATUSES, IntegrationSettings
from tests.support.environment import run_in_thread
from tests.support.factories import create_active_integration, create_login
from tests.support.pages import connect_exact, connect_shop, sign_up, submit

FORMS = ("statuses", "export", "administration", "vat", "booking", "items", "service")
NASTY = (
    "",
    " ",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "70; DROP TABLE integration;--",
    "Code eq '70' or 1 eq 1",
    "\u202e07",
    "ß" * 3,
    "😀",
    "\x00",
    "9" * 30,
    "-1",
    "1e309",
    "2026-02-30",
    "x" * 5000,
)
CODE = re.compile(r"^[^\x00-\x1f]{0,40}$")
FUZZ = hypothesis_settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class FormFields(HTMLParser):
    """Names of the fields of the page's step form and the values the page offers for each."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, list[str]] = {}
        self._select: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._in_form = (a.get("method") or "").lower() == "post" and "/language" not in (a.get("action") or "")
        if not self._in_form:
            return
        name = a.get("name")
        if tag in ("input", "textarea") and name and name != "csrf_token":
            self.fields.setdefault(name, []).append(a.get("value") or "")
        elif tag == "select" and name:
            self._select = name
            self.fields.setdefault(name, [])
        elif tag == "option" and self._select:
            self.fields[self._select].append(a.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False


def fields_of(html: str) -> dict[str, list[str]]:
    parser = FormFields()
    parser.feed(html)
    return parser.fields


def value_for(offered: list[str]) -> st.SearchStrategy[Any]:
    """A value for one field: an offered one, a nasty one, random text, or the field repeated."""
    own = st.sampled_from(offered) if offered else st.just("")
    single = st.one_of(
        own,
        own,
        own,  # mostly the page's own options, so valid combinations are saved too
        st.sampled_from(NASTY),
        st.text(max_size=50),
        st.integers(min_value=-(10**12), max_value=10**12).map(str),
    )
    return st.one_of(single, single, single, st.lists(single, min_size=2, max_size=3))


def read_integrations(settings: Settings) -> dict[int, Any]:
    async def read() -> dict[int, Any]:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(tables.integration))).all()
                mappings = (await conn.execute(select(tables.vat_mapping))).all()
        finally:
            await engine.dispose()
        found = {row.id: dict(row._mapping) for row in rows}
        for m in mappings:
            found[m.integration_id].setdefault("vat", {})[m.category] = (m.vat_code, m.gl_account)
        return found

    return dict(run_in_thread(read()))


def other_account(settings: Settings) -> int:
    async def create() -> int:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                account = await create_login(conn, email="other@shop.test")
                return (await create_active_integration(conn, account_id=account)).id
        finally:
            await engine.dispose()

    return int(run_in_thread(create()))


def check_saved(row: dict[str, Any], offered: dict[str, dict[str, list[str]]]) -> None:
    """What the forms saved is one of the offered options or a well-formed value."""
    saved = IntegrationSettings.from_json(row["settings"])
    assert saved.insertion_type in INSERTION_TYPES
    assert saved.eu_consumer_vat in EU_VAT_MODES
    assert saved.invoice_status in INVOICE_STATUSES
    assert row["service_level"] in SERVICE_LEVELS
    assert set(map(str, saved.selected_statuses)) <= set(offered["statuses"].get("statuses", [])), saved
    for code in (saved.journal_code, saved.shipping_gl_account, saved.costs_gl_account, saved.discount_gl_account):
        assert CODE.match(code), code
    if saved.journal_code:
        assert saved.journal_code in offered["booking"].get("journal_code", []), saved.journal_code
    if saved.initial_export_start:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", saved.initial_export_start), saved.initial_export_start
    for category, (vat_code, gl) in row.get("vat", {}).items():
        assert vat_code is None or vat_code in offered["vat"].get(f"vat_{category}", []), (category, vat_code)
        assert gl is None or CODE.match(gl), (category, gl)


@FUZZ
@given(data=st.data())
def test_no_form_value_breaks_a_page_or_stores_garbage(
    wizard: TestClient, wizard_settings: Settings, data: Any
) -> None:
    state = getattr(wizard, "_fuzz_state", None)
    if state is None:  # once per test run: a real set-up, another account, the forms' fields
        shop = sign_up(wizard)
        connect_shop(wizard, shop)
        connect_exact(wizard, shop)
        base = f"/integrations/{shop}/setup"
        offered = {form: fields_of(wizard.get(f"{base}/{form}").text) for form in FORMS}
        assert all(offered.values()), {form: list(fields) for form, fields in offered.items()}
        state = wizard._fuzz_state = (shop, base, offered, other_account(wizard_settings))  # type: ignore[attr-defined]
    shop, base, offered, other = state
    before = read_integrations(wizard_settings)[other]

    form = data.draw(st.sampled_from(FORMS), label="form")
    fields = offered[form]
    mode = data.draw(st.sampled_from(["options", "one_bad", "random"]), label="mode")
    if mode == "random":
        names = data.draw(st.lists(st.sampled_from(sorted(fields)), unique=True), label="fields")
        values = {name: data.draw(value_for(fields[name]), label=name) for name in names}
    else:  # the page's own options throughout (a save), or all but one field
        values = {n: data.draw(st.sampled_from([v for v in fields[n] if v] or [""]), label=n) for n in fields}
        if mode == "one_bad":
            name = data.draw(st.sampled_from(sorted(fields)), label="bad field")
            values[name] = data.draw(value_for(fields[name]), label=f"bad {name}")
    if data.draw(st.booleans(), label="unknown field"):
        values["integration_id"] = str(other)  # the tenant never comes from a form field
    response = submit(wizard, f"{base}/{form}", values)
    event(f"{form}: {response.status_code}")

    assert response.status_code in (200, 303, 400), f"{form} {values!r}: {response.status_code} {response.text[:300]}"
    assert "<script>alert(1)</script>" not in response.text
    rows = read_integrations(wizard_settings)
    assert rows[other] == before, "a form changed another account's integration"
    check_saved(rows[shop], offered)


def test_the_field_reader_finds_the_step_form_only() -> None:
    page = (
        '<form method="post" action="/language"><input name="locale" value="nl"></form>'
        '<form method="post"><input type="hidden" name="csrf_token" value="t"><select name="journal_code">'
        '<option value="70">Verkoop</option><option value="71">Web</option></select>'
        '<input type="checkbox" name="statuses" value="2"><input type="checkbox" name="statuses" value="3"></form>'
    )
    assert fields_of(page) == {"journal_code": ["70", "71"], "statuses": ["2", "3"]}


def test_settings_dataclass_rejects_nothing_silently() -> None:
    """Guards check_saved: unknown keys in stored settings are ignored, known ones keep their type."""
    saved = IntegrationSettings.from_json({"selected_statuses": ["2"], "bogus": 1})
    assert saved.selected_statuses == (2,)
    assert dataclasses.asdict(saved)["insertion_type"] == "sales_entry"
