"""The books check's matcher: every kind of finding from planted months, with both sides' figures in cents."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from gateway.booking_documents import booking_mark
from gateway.books_check.exact_reads import without_invoice_entries
from gateway.books_check.findings import ExactBooking, GatewayRecord, Kind, Report, ShopOrder
from gateway.books_check.matcher import mark_order, match_month

D = Decimal
BOOKED_AT = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
PAID = 3


def order(number: str, total: str = "121.00", vat: str = "21.00", *, status: int = PAID, credit: str = "") -> ShopOrder:
    return ShopOrder(
        number=number,
        order_date=date(2026, 11, 2),
        status=status,
        total=D(total),
        vat={D(21): D(vat)},
        is_credit=bool(credit),
        credited_order_number=credit,
    )


def document(
    ref: str, total: str = "121.00", vat: str = "21.00", *, integration: int = 1, **kw: object
) -> ExactBooking:
    values: dict[str, object] = {
        "document_type": "sales_entry",
        "id": f"00000000-0000-0000-0000-{int(ref):012d}",
        "number": f"2670{int(ref):04d}",
        "your_ref": ref,
        "payment_reference": booking_mark(integration, ref),
        "total": D(total),
        "vat": {D("21.0"): D(vat)},
        "modified": BOOKED_AT,
    }
    values.update(kw)
    return ExactBooking(**values)  # type: ignore[arg-type]


def booked(number: str, doc: ExactBooking | None = None, state: str = "booked") -> GatewayRecord:
    return GatewayRecord(
        order_sync_id=int(number),
        order_number=number,
        state=state,
        document_id=doc.id if doc else "",
        booked_at=BOOKED_AT,
    )


def run(orders: list[ShopOrder], docs: list[ExactBooking], records: list[GatewayRecord]) -> Report:
    return match_month(
        integration_id=1,
        selected_statuses=(PAID,),
        orders=orders,
        bookings=docs,
        records={r.order_number: r for r in records},
    )


def test_a_clean_month_reports_no_differences_and_both_totals() -> None:
    docs = [document("1001"), document("1002", "60.50", "10.50")]
    report = run(
        [order("1001"), order("1002", "60.50", "10.50")], docs, [booked("1001", docs[0]), booked("1002", docs[1])]
    )
    assert report.findings == ()
    headline = report.headline
    assert (headline.orders, headline.documents, headline.differences) == (2, 2, 0)
    assert headline.shop_total == headline.exact_total == D("181.50")
    assert headline.vat_rows() == [(D(21), D("31.50"), D("31.50"))]


def test_every_planted_finding_is_found_with_its_figures() -> None:
    ok = document("1001")
    changed_amount = document("1002", "121.01", "21.01")
    modified = document("1003", modified=BOOKED_AT + timedelta(days=2))
    other_shop = document("1006", integration=2)
    stray = document("1099")
    docs = [ok, changed_amount, modified, other_shop, stray]
    records = [
        booked("1001", ok),
        booked("1002", changed_amount),
        booked("1003", modified),
        booked("1004", document("1004")),  # booked, then deleted in Exact
        booked("1005", state="skipped"),
        booked("1006", other_shop),  # adopted another shop's document with the same number
        booked("1008", state="ignored"),
    ]
    orders = [
        order("1001"),
        order("1002"),
        order("1003"),
        order("1004"),
        order("1005"),
        order("1006"),
        order("1007", "-121.00", "-21.00", credit="1001"),
        order("1008"),
        order("1009", status=1),  # not in a selected status, never booked: not counted
    ]
    report = run(orders, docs, records)
    kinds = {(f.kind, f.order_number) for f in report.findings}
    assert kinds == {
        (Kind.AMOUNT_DIFFERENCE, "1002"),
        (Kind.CHANGED_DOCUMENT, "1003"),
        (Kind.DELETED_DOCUMENT, "1004"),
        (Kind.SKIPPED_ORDER, "1005"),
        (Kind.WRONG_DOCUMENT, "1006"),
        (Kind.MISSING_CREDIT_DOCUMENT, "1007"),
        (Kind.IGNORED, "1008"),
        (Kind.DOCUMENT_WITHOUT_ORDER, "1099"),
    }
    amount = next(f for f in report.findings if f.kind == Kind.AMOUNT_DIFFERENCE)
    assert (amount.total_cents, dict(amount.vat_cents)) == (1, {"21": 1})
    assert amount.shop is not None
    assert amount.shop.total == D("121.00")
    assert amount.exact is not None
    assert amount.exact.total == D("121.01")
    wrong = next(f for f in report.findings if f.kind == Kind.WRONG_DOCUMENT)
    assert wrong.detail == booking_mark(2, "1006")
    assert report.headline.differences == 7
    assert (report.headline.ignored, report.headline.not_selected) == (1, 1)
    assert report.headline.documents == 4  # only documents with this integration's mark


def test_two_documents_with_one_mark_are_a_double() -> None:
    first, second = document("1001"), document("1001", id="00000000-0000-0000-0000-000000009999", number="26700099")
    report = run([order("1001")], [first, second], [booked("1001", first)])
    (finding,) = report.findings
    assert finding.kind == Kind.DOUBLE_DOCUMENT
    assert finding.exact is not None
    assert finding.exact.total == D("242.00")


def test_a_missing_order_names_the_other_shops_document_with_its_number() -> None:
    report = run([order("1001")], [document("1001", integration=2)], [])
    (finding,) = report.findings
    assert finding.kind == Kind.MISSING_DOCUMENT
    assert booking_mark(2, "1001") in finding.detail
    assert finding.total_cents == -12100


def test_a_mark_belongs_to_one_integration_only() -> None:
    assert mark_order(1, booking_mark(1, "5001")) == "5001"
    assert mark_order(1, booking_mark(37, "5001")) is None
    assert mark_order(1, "5001") is None


def test_a_report_survives_its_json() -> None:
    docs = [document("1002", "121.01", "21.01")]
    report = run([order("1002"), order("1003")], docs, [booked("1002", docs[0])])
    assert Report.from_json(report.to_json()) == report


def test_processing_a_draft_invoice_in_exact_is_not_a_change_when_the_owner_processes_drafts() -> None:
    later = BOOKED_AT + timedelta(days=3)
    invoice = document("1001", document_type="sales_invoice", modified=later, status=50)
    draft = document("1002", document_type="sales_invoice", modified=later, status=20)
    records = {"1001": booked("1001", invoice), "1002": booked("1002", draft)}

    def kinds(drafts: bool) -> set[tuple[Kind, str]]:
        report = match_month(
            integration_id=1,
            selected_statuses=(PAID,),
            orders=[order("1001"), order("1002")],
            bookings=[invoice, draft],
            records=records,
            drafts_processed_in_exact=drafts,
        )
        return {(f.kind, f.order_number) for f in report.findings}

    assert kinds(True) == {(Kind.CHANGED_DOCUMENT, "1002")}  # still a draft, yet edited: a change
    assert kinds(False) == {(Kind.CHANGED_DOCUMENT, "1001"), (Kind.CHANGED_DOCUMENT, "1002")}


def test_an_invoices_financial_entry_is_not_counted_beside_the_invoice() -> None:
    invoice = document("1001", document_type="sales_invoice", number="26700001")
    its_entry = document("1001", number="26700001", id="00000000-0000-0000-0000-00000000e001")
    own_entry = document("1002")
    assert without_invoice_entries([its_entry, own_entry], [invoice]) == [own_entry]
