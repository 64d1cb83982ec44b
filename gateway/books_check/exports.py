"""The books check as a CSV file for a spreadsheet: one row per finding, then the month's summary; in the reader's
language, with the reader's decimal comma and the list separator their spreadsheet expects (";" where the decimal
separator is a comma, as Dutch Excel does). Amounts are plain numbers (no currency sign), so they add up."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal

from babel import numbers

from gateway.books_check.findings import Finding, Report
from gateway.books_check.texts import TITLES
from gateway.i18n import FORMAT_LOCALES, translate


def amount(value: Decimal | None, locale: str) -> str:
    """2 decimals, the reader's decimal separator, no grouping: a spreadsheet reads it as a number."""
    if value is None:
        return ""
    return numbers.format_decimal(value, format="0.00", locale=FORMAT_LOCALES.get(locale, locale))


def separator(locale: str) -> str:
    return ";" if numbers.get_decimal_symbol(FORMAT_LOCALES.get(locale, locale)) == "," else ","


def rate_text(rate: str | Decimal, locale: str) -> str:
    return translate(
        locale,
        "VAT %(rate)s%%",
        rate=numbers.format_decimal(Decimal(str(rate)), locale=FORMAT_LOCALES.get(locale, locale)),
    )


def _finding_row(finding: Finding, month: str, locale: str, reviewed: frozenset[str]) -> list[str]:
    vat = ", ".join(f"{rate_text(rate, locale)}: {cents:+d}" for rate, cents in finding.vat_cents.items())
    return [
        month,
        translate(locale, TITLES[finding.kind]),
        finding.order_number,
        finding.document_number,
        amount(finding.shop.total if finding.shop else None, locale),
        amount(finding.exact.total if finding.exact else None, locale),
        str(finding.total_cents),
        vat,
        finding.gateway_state,
        finding.detail,
        translate(locale, "yes") if finding.key in reviewed else "",
    ]


def _summary(report: Report, locale: str) -> Iterable[list[str]]:
    h = report.headline
    yield [translate(locale, "Orders"), str(h.orders)]
    yield [translate(locale, "Documents in Exact"), str(h.documents)]
    yield [translate(locale, "Total in the shop"), amount(h.shop_total, locale)]
    yield [translate(locale, "Total in Exact"), amount(h.exact_total, locale)]
    for rate, shop, exact in h.vat_rows():
        yield [rate_text(rate, locale), amount(shop, locale), amount(exact, locale)]
    yield [translate(locale, "Differences"), str(h.differences)]


def report_csv(report: Report, *, month: str, locale: str, reviewed: frozenset[str] = frozenset()) -> bytes:
    """UTF-8 with a byte-order mark, so spreadsheets open accented names correctly."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator(locale), lineterminator="\r\n")
    writer.writerow(
        [
            translate(locale, text)
            for text in (
                "Month",
                "Finding",
                "Order",
                "Document in Exact",
                "Shop total",
                "Exact total",
                "Difference (cents)",
                "VAT difference (cents)",
                "State in the gateway",
                "Detail",
                "Reviewed",
            )
        ]
    )
    for finding in report.findings:
        writer.writerow(_finding_row(finding, month, locale, reviewed))
    writer.writerow([])
    writer.writerows(_summary(report, locale))
    return ("\ufeff" + out.getvalue()).encode("utf-8")
