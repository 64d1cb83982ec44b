"""Languages of the customer pages: Dutch and English from Babel catalogs, picked per request.

The message ids are English. `gateway/locales/<lang>/LC_MESSAGES/messages.po` holds the translations; the catalogs
are compiled in memory at first use, so no compiled `.mo` file is kept in the repository. The language comes from
the session (set by the switcher or at login from the account), else from the browser's Accept-Language, else Dutch.
Python code marks text with `N_("...", **params)` (a `Message`, translated when rendered) or, counted,
`NP_("singular", "plural", n, **params)`; templates call `_()` and `ngettext()`.
"""

from __future__ import annotations

import functools
import gettext as gettext_module
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

from babel import dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.requests import Request

from gateway.clock import DISPLAY_ZONE

LOCALES: dict[str, str] = {"nl": "Nederlands", "en": "English"}
DEFAULT_LOCALE = "nl"
SESSION_LANG = "lang"
LOCALE_DIR = Path(__file__).resolve().parent / "locales"
# Shop owners are in the Netherlands and Belgium; times are stored in UTC and shown in this zone.


@dataclass(frozen=True)
class Message:
    """Text for a person, translated only when rendered (form errors, flash messages, state reasons)."""

    text: str
    params: Mapping[str, Any] = field(default_factory=dict)
    plural: str = ""  # the plural id of a counted message (NP_): the catalogue picks the form for params["n"]

    def to_json(self) -> list[Any]:
        """For the session (flash notices); nested messages keep their own parameters."""
        params = {k: {"$message": v.to_json()} if isinstance(v, Message) else v for k, v in self.params.items()}
        return [self.text, params, self.plural] if self.plural else [self.text, params]

    @classmethod
    def from_json(cls, data: Any) -> Message:
        text, params, *plural = data
        return cls(
            str(text),
            {
                k: cls.from_json(v["$message"]) if isinstance(v, dict) and "$message" in v else v
                for k, v in params.items()
            },
            str(plural[0]) if plural else "",
        )


# The gettext convention: Babel's extractor finds N_("...") calls.
def N_(text: str, **params: Any) -> Message:
    return Message(text, params)


def NP_(singular: str, plural: str, n: int, **params: Any) -> Message:
    """A counted message ("1 status", "3 statuses"): the reader's catalogue picks the plural form for `n`."""
    return Message(singular, {"n": n, **params}, plural)


@functools.cache
def translations(locale: str) -> gettext_module.NullTranslations:
    """The compiled catalog of `locale` (cached per process); English ids fall through untranslated."""
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return gettext_module.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=locale)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def translate(locale: str, text: str | Message, **params: Any) -> str:
    """Translate `text` (a message id or a Message) and fill in its %(name)s parameters."""
    plural = ""
    if isinstance(text, Message):
        params = {**text.params, **params}
        plural = text.plural
        text = text.text
    params = {k: translate(locale, v) if isinstance(v, Message) else v for k, v in params.items()}
    if plural:
        return translations(locale).ngettext(text, plural, int(params.get("n", 0))) % params
    translated = translations(locale).gettext(text)
    return translated % params if params else translated


def parse_accept_language(header: str) -> list[str]:
    """Language tags from an Accept-Language header, most preferred first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, rest = part.strip().partition(";")
        quality = 1.0
        if rest.strip().startswith("q="):
            try:
                quality = float(rest.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(header: str) -> str | None:
    for tag in parse_accept_language(header):
        primary = tag.split("-")[0]
        if primary in LOCALES:
            return primary
    return None


def request_locale(request: Request) -> str:
    chosen = request.session.get(SESSION_LANG)
    if chosen in LOCALES:
        return str(chosen)
    return negotiate(request.headers.get("accept-language", "")) or DEFAULT_LOCALE


def set_request_locale(request: Request, locale: str) -> None:
    if locale in LOCALES:
        request.session[SESSION_LANG] = locale


def _local(value: datetime) -> datetime:
    return value.astimezone(DISPLAY_ZONE)


# English pages format dates the European way (24 Nov 2026), like the Dutch ones.
FORMAT_LOCALES = {"en": "en_GB", "nl": "nl_NL"}


def formatters(locale: str) -> dict[str, Callable[..., str]]:
    """Locale-aware formatting for templates: dates in the display zone, relative times, numbers."""
    locale = FORMAT_LOCALES.get(locale, locale)

    def format_datetime(value: datetime | None, fmt: str = "medium") -> str:
        return "" if value is None else dates.format_datetime(_local(value), fmt, locale=locale)

    def format_date(value: date | datetime | None, fmt: str = "medium") -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = _local(value).date()
        return dates.format_date(value, fmt, locale=locale)

    def format_relative(delta: timedelta) -> str:
        return dates.format_timedelta(delta, add_direction=True, threshold=1.2, locale=locale)

    def format_number(value: int | float | Decimal) -> str:
        return numbers.format_decimal(value, locale=locale)

    def format_money(value: Decimal | int | float | str | None, currency: str | None = "EUR") -> str:
        """An amount the reader's way: € 66,43 in Dutch, €66.43 in English; empty for no amount."""
        if value is None or value == "":
            return ""
        return numbers.format_currency(Decimal(str(value)), currency or "EUR", locale=locale)

    return {
        "format_datetime": format_datetime,
        "format_date": format_date,
        "format_relative": format_relative,
        "format_number": format_number,
        "format_money": format_money,
    }


def i18n_context(request: Request) -> dict[str, Any]:
    """Jinja context processor: `_()`, `lang`, the language list and the formatters for this request."""
    locale = request_locale(request)

    def gettext(text: str | Message, **params: Any) -> str:
        return translate(locale, text, **params)

    def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
        return translations(locale).ngettext(singular, plural, n) % {"n": n, **params}

    return {"_": gettext, "ngettext": ngettext, "lang": locale, "locales": LOCALES, **formatters(locale)}
