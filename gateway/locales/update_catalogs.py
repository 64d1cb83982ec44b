"""Refresh the message catalogs after changing page text: `python -m gateway.locales.update_catalogs`.

Extracts `_()`, `ngettext()`, `N_()` and `NP_()` from the code and templates (babel.cfg), adds the messages other
modules show to shop owners by key (shop token errors), and merges them into nl and en. Then translate the new
`msgstr ""` entries of nl/LC_MESSAGES/messages.po; English needs none (the ids are English). The catalogs are
compiled in memory at start-up (gateway/i18n.py), so there is no compile step.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from gateway.i18n import LOCALES
from gateway.shop_connection import TOKEN_ERROR_MESSAGES

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "NP_": (1, 2)}
METHODS = [("**/templates/**.html", "jinja2"), ("**/templates/**.txt", "jinja2"), ("**.py", "python")]


def external_messages() -> list[str]:
    """Texts other modules store or raise for the pages to show (translated by their exact English wording)."""
    return list(TOKEN_ERROR_MESSAGES.values())


def extract() -> Catalog:
    template = Catalog(project="mww-exact-gateway", fuzzy=False)
    found = extract_from_dir(str(PACKAGE), METHODS, keywords=KEYWORDS, comment_tags=("Translators:",))
    for filename, _lineno, message, _comments, context in found:
        if filename.startswith("sandbox/"):  # the fake vendors mimic foreign pages; not ours to translate
            continue
        template.add(message, locations=(), context=context)
    for text in external_messages():
        template.add(text)
    return template


def translated(string: str | tuple[str, ...] | list[str] | None) -> bool:
    return all(string) if isinstance(string, tuple | list) else bool(string)


def main() -> None:
    template = extract()
    for locale in LOCALES:
        path = HERE / locale / "LC_MESSAGES" / "messages.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as f:
                catalog = read_po(f, locale=locale)
        else:
            catalog = Catalog(locale=locale, project="mww-exact-gateway")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.fuzzy = False
        with path.open("wb") as f:
            write_po(f, catalog, omit_header=False, sort_output=True, ignore_obsolete=True, width=120)
        missing = [m.id for m in catalog if m.id and not translated(m.string) and locale != "en"]
        print(f"{locale}: {len(catalog)} messages, {len(missing)} untranslated")  # noqa: T201 - a developer tool


if __name__ == "__main__":
    main()
