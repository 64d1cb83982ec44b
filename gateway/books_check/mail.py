"""The books check's headline as an e-mail in the owner's language: counts, both totals, VAT per rate side by side,
the number of differences and a link to the month's page. Amounts with Babel; no shop customer data in the mail."""

from __future__ import annotations

from decimal import Decimal

from babel import numbers

from gateway.books_check.exports import rate_text
from gateway.books_check.findings import Report
from gateway.i18n import FORMAT_LOCALES, translate, translations


def headline_mail(report: Report, *, month: str, shop: str, locale: str, link: str) -> tuple[str, str]:
    """(subject, body) of the mail."""
    h = report.headline
    babel = FORMAT_LOCALES.get(locale, locale)

    def money(value: Decimal) -> str:
        return numbers.format_currency(value, "EUR", locale=babel)

    def _(text: str, **params: object) -> str:
        return translate(locale, text, **params)

    subject = _("Reconciliation %(month)s: %(shop)s", month=month, shop=shop)
    differences = translations(locale).ngettext("%(n)s difference", "%(n)s differences", h.differences) % {
        "n": h.differences
    }
    lines = [
        _("The books check of %(month)s for %(shop)s is ready.", month=month, shop=shop),
        "",
        _("Orders in the shop: %(n)s; documents in Exact: %(m)s", n=h.orders, m=h.documents),
        _("Total in the shop: %(shop)s; in Exact: %(exact)s", shop=money(h.shop_total), exact=money(h.exact_total)),
    ]
    lines += [
        f"{rate_text(rate, locale)}: {_('shop')} {money(shop_vat)}, Exact {money(exact_vat)}"
        for rate, shop_vat, exact_vat in h.vat_rows()
    ]
    lines += ["", differences if h.differences else _("0 differences: the books agree."), "", link]
    return subject, "\n".join(lines)
