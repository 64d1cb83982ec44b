"""The books check as a PDF an accountant can file (fpdf2): the month's headline, VAT per rate side by side, every
finding with both sides' figures, and how the check was made. In the reader's language; amounts and dates formatted
with Babel. The built-in Helvetica covers Latin-1 only, so text is reduced to it and amounts carry the currency code
(EUR) instead of a sign the font lacks; nothing here depends on fonts installed on the machine."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from babel import dates, numbers
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gateway.books_check.exports import rate_text
from gateway.books_check.findings import Finding, Report
from gateway.books_check.texts import TITLES
from gateway.clock import DISPLAY_ZONE
from gateway.i18n import FORMAT_LOCALES, translate, translations

_WIDTHS = (58, 22, 26, 26, 26, 22)  # finding, order, document, shop, Exact, difference (mm; A4 width 190)


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


class _Writer:
    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.babel = FORMAT_LOCALES.get(locale, locale)
        self.pdf = FPDF(orientation="P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=15)
        self.pdf.add_page()

    def _(self, text: str, **params: object) -> str:
        return translate(self.locale, text, **params)

    def plural(self, singular: str, plural: str, n: int) -> str:
        return str(translations(self.locale).ngettext(singular, plural, n) % {"n": n})

    def money(self, value: Decimal | None) -> str:
        if value is None:
            return "-"
        return numbers.format_decimal(value, format="#,##0.00", locale=self.babel)

    def line(self, text: str, *, size: float = 10, bold: bool = False, height: float = 6) -> None:
        self.pdf.set_font("Helvetica", "B" if bold else "", size)
        self.pdf.multi_cell(0, height, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def row(self, cells: list[str], widths: tuple[int, ...], *, bold: bool = False) -> None:
        self.pdf.set_font("Helvetica", "B" if bold else "", 9)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            align = "R" if index >= 3 or (len(widths) == 3 and index > 0) else "L"
            self.pdf.cell(width, 6, _latin1(cell)[:40], border="B", align=align)
        self.pdf.ln(6)


def report_pdf(
    report: Report, *, month: str, shop: str, locale: str, made_at: datetime, reviewed: frozenset[str]
) -> bytes:
    """The whole report; `made_at` is when the check ran (shown on the Dutch calendar)."""
    w = _Writer(locale)
    w.line(w._("Reconciliation %(month)s", month=month), size=16, bold=True, height=9)
    w.line(shop)
    made = dates.format_datetime(made_at.astimezone(DISPLAY_ZONE), "medium", locale=w.babel)
    w.line(w._("Checked on %(when)s", when=made), size=9)
    w.pdf.ln(3)
    _headline(w, report)
    w.pdf.ln(4)
    _findings(w, report.findings, reviewed)
    w.pdf.ln(4)
    w.line(
        w._(
            "How this was checked: every order the shop lists for the month is matched to the documents in the "
            "Exact journal of that month that carry this shop's mark (payment reference '<order>/MW<shop>'). "
            "Totals and VAT per rate are compared in cents. Amounts in EUR."
        ),
        size=8,
        height=4,
    )
    return bytes(w.pdf.output())


def _headline(w: _Writer, report: Report) -> None:
    h = report.headline
    widths = (90, 50, 50)
    w.row([w._("Summary"), w._("Shop"), w._("Exact")], widths, bold=True)
    w.row([w._("Orders / documents"), str(h.orders), str(h.documents)], widths)
    w.row([w._("Total including VAT"), w.money(h.shop_total), w.money(h.exact_total)], widths)
    for rate, shop, exact in h.vat_rows():
        w.row([rate_text(rate, w.locale), w.money(shop), w.money(exact)], widths)
    if h.differences:
        w.line(w.plural("%(n)s difference", "%(n)s differences", h.differences), bold=True)
    else:
        w.line(w._("0 differences: the books agree."), bold=True)
    if h.ignored:
        w.line(
            w.plural(
                "%(n)s order ignored on purpose (listed below, not counted as a difference).",
                "%(n)s orders ignored on purpose (listed below, not counted as differences).",
                h.ignored,
            ),
            size=9,
        )


def _findings(w: _Writer, findings: tuple[Finding, ...], reviewed: frozenset[str]) -> None:
    if not findings:
        return
    w.row(
        [w._("Finding"), w._("Order"), w._("Document"), w._("Shop"), w._("Exact"), w._("Difference")],
        _WIDTHS,
        bold=True,
    )
    for finding in findings:
        title = w._(TITLES[finding.kind].text)
        if finding.key in reviewed:
            title += " (" + w._("reviewed") + ")"
        difference = w.money(Decimal(finding.total_cents) / 100) if finding.total_cents else ""
        w.row(
            [
                title,
                finding.order_number,
                finding.document_number,
                w.money(finding.shop.total if finding.shop else None),
                w.money(finding.exact.total if finding.exact else None),
                difference,
            ],
            _WIDTHS,
        )
        for rate, cents in finding.vat_cents.items():
            w.line(f"    {rate_text(rate, w.locale)}: {w.money(Decimal(cents) / 100)}", size=8, height=4)
