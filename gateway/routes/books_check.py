"""The reconciliation pages ("Controle"): the months checked, one month's report with a fix per finding, its CSV and
PDF, "check now", "mark reviewed", "book again" for a deleted document, and the monthly schedule.

A check reads both vendor APIs at length, so the page never runs one itself: "check now" queues the job
(gateway/jobs/books_check.py) and the page shows the stored report. Retry and ignore are the history pages' own
actions (routes/history.py); their forms post there.
"""

from __future__ import annotations

import secrets

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.books_check.exports import report_csv
from gateway.books_check.findings import Kind, Report
from gateway.books_check.pdf import report_pdf
from gateway.books_check.period import Month
from gateway.books_check.texts import ADVICE, TITLES, fix_of
from gateway.clock import local_today
from gateway.csrf import verify_csrf
from gateway.i18n import N_, request_locale
from gateway.pages import flash, redirect, render
from gateway.pipeline import accept_notice
from gateway.queue import enqueue_books_check, enqueue_sync
from gateway.routes.dashboard import load_integration
from gateway.store import books_checks
from gateway.store.integrations import Integration, save_settings


def _month(request: Request) -> Month:
    try:
        return Month.parse(str(request.path_params["month"]))
    except ValueError:
        raise HTTPException(status_code=404) from None


def _month_url(request: Request, integration: Integration, month: Month) -> str:
    return str(request.url_for("books_check_month", integration_id=integration.id, month=str(month)))


async def books_check(request: Request) -> Response:
    """The months checked so far, "check a month", and the monthly schedule."""
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        checks = await books_checks.list_books_checks(conn, integration_id=integration.id)
    today = local_today()
    context = {
        "integration": integration,
        "checks": checks,
        "suggested": str(Month(today.year, today.month).previous()),
        "tab": "books_check",
    }
    return render(request, "books_check/index.html", context)


async def books_check_month(request: Request) -> Response:
    month = _month(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        check = await books_checks.get_books_check(conn, integration_id=integration.id, month=str(month))
    context = {
        "integration": integration,
        "month": month,
        "check": check,
        "titles": TITLES,
        "advice": ADVICE,
        "fix_of": fix_of,
        "ignored_kind": Kind.IGNORED,
        "tab": "books_check",
    }
    return render(request, "books_check/month.html", context)


class _NotChecked(Exception):
    """The month has no report (yet): downloads and fixes lead to the month's page, which says so."""

    def __init__(self, url: str) -> None:
        self.url = url


async def _stored(request: Request) -> tuple[Integration, Month, books_checks.BooksCheck, Report]:
    month = _month(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        check = await books_checks.get_books_check(conn, integration_id=integration.id, month=str(month))
    if check is None or check.report is None:
        raise _NotChecked(_month_url(request, integration, month))
    return integration, month, check, check.report


async def books_check_csv(request: Request) -> Response:
    try:
        integration, month, check, report = await _stored(request)
    except _NotChecked as e:
        return redirect(e.url)
    body = report_csv(report, month=str(month), locale=request_locale(request), reviewed=check.reviewed)
    name = f"reconciliation-{integration.id}-{month}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=headers)


async def books_check_pdf(request: Request) -> Response:
    try:
        integration, month, check, report = await _stored(request)
    except _NotChecked as e:
        return redirect(e.url)
    body = report_pdf(
        report,
        month=str(month),
        shop=integration.name or integration.shop_name or f"#{integration.id}",
        locale=request_locale(request),
        made_at=check.finished_at or check.started_at,
        reviewed=check.reviewed,
    )
    name = f"reconciliation-{integration.id}-{month}.pdf"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type="application/pdf", headers=headers)


async def books_check_run(request: Request) -> Response:
    """Queue the check of the month in the form (POST, CSRF); the page shows the report when the job is done."""
    form = await verify_csrf(request)
    try:
        month = Month.parse(str(form.get("month") or ""))
    except ValueError:
        month = None
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    if month is None or month.first_day > local_today():
        flash(request, N_("Choose a month that has begun, like 2026-11."), "warning")
        return redirect(str(request.url_for("books_check", integration_id=integration.id)))
    await enqueue_books_check(request.app.state.arq, integration_id=integration.id, month=str(month))
    flash(request, N_("The check of %(month)s is running; this page shows it when it is done.", month=str(month)))
    return redirect(_month_url(request, integration, month))


async def books_check_reviewed(request: Request) -> Response:
    form = await verify_csrf(request)
    month = _month(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        done = await books_checks.mark_reviewed(
            conn, integration_id=integration.id, month=str(month), key=str(form.get("key") or "")
        )
    if done:
        flash(request, N_("Marked as reviewed."))
    return redirect(_month_url(request, integration, month))


async def books_check_rebook(request: Request) -> Response:
    """Book again an order whose document the check found deleted in Exact (its row goes back to the queue)."""
    await verify_csrf(request)
    try:
        integration, month, _, report = await _stored(request)
    except _NotChecked as e:
        return redirect(e.url)
    order_sync_id = int(request.path_params["order_sync_id"])
    deleted = [
        f
        for f in report.findings
        if f.kind == Kind.DELETED_DOCUMENT and f.order_sync_id == order_sync_id and f.document_number
    ]
    generation = None
    if deleted:
        async with request.app.state.engine.begin() as conn:
            generation = await books_checks.requeue_deleted_booking(
                conn, integration_id=integration.id, order_sync_id=order_sync_id, document_id=deleted[0].document_number
            )
    if generation is None:
        flash(request, N_("This order cannot be booked again from here: it changed since the check."), "warning")
        return redirect(_month_url(request, integration, month))
    await enqueue_sync(
        request.app.state.arq,
        integration_id=integration.id,
        order_sync_id=order_sync_id,
        generation=generation,
        priority=integration.is_premium,
    )
    flash(request, N_("The order is queued to be booked again."))
    return redirect(_month_url(request, integration, month))


async def books_check_fetch(request: Request) -> Response:
    """Feed an order the gateway never saw to the notice pipeline (source "operator"), as the poller would: it is
    re-read from the shop, filtered by status and booked like any other."""
    await verify_csrf(request)
    try:
        integration, month, _, report = await _stored(request)
    except _NotChecked as e:
        return redirect(e.url)
    number = str(request.path_params["order_number"])
    missing = [
        f
        for f in report.findings
        if f.order_number == number and f.order_sync_id is None and f.shop_status is not None and fix_of(f) == "fetch"
    ]
    if not missing:
        raise HTTPException(status_code=404)
    outcome = await accept_notice(
        request.app.state.engine,
        request.app.state.arq,
        integration=integration,
        order_number=number,
        status_id=missing[0].shop_status,
        source="operator",
        dedupe_key=f"books_check:{month}:{number}:{secrets.token_hex(4)}",
    )
    if outcome.result == "queued":
        flash(request, N_("The order is queued to be booked."))
    else:
        flash(request, N_("The order was not queued: its status is not one of the selected statuses."), "warning")
    return redirect(_month_url(request, integration, month))


async def books_check_schedule(request: Request) -> Response:
    form = await verify_csrf(request)
    monthly = form.get("monthly") == "on"
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        await save_settings(
            conn, integration_id=integration.id, settings=integration.settings.replace(books_check_monthly=monthly)
        )
    if monthly:
        flash(request, N_("On the first of every month you get last month's check by e-mail."))
    else:
        flash(request, N_("The monthly check is off."), "info")
    return redirect(str(request.url_for("books_check", integration_id=integration.id)))


_BASE = "/integrations/{integration_id:int}/books"
routes = [
    Route(_BASE, books_check, name="books_check"),
    Route(_BASE + "/run", books_check_run, name="books_check_run", methods=["POST"]),
    Route(_BASE + "/schedule", books_check_schedule, name="books_check_schedule", methods=["POST"]),
    Route(_BASE + "/{month}.csv", books_check_csv, name="books_check_csv"),
    Route(_BASE + "/{month}.pdf", books_check_pdf, name="books_check_pdf"),
    Route(_BASE + "/{month}", books_check_month, name="books_check_month"),
    Route(_BASE + "/{month}/reviewed", books_check_reviewed, name="books_check_reviewed", methods=["POST"]),
    Route(
        _BASE + "/{month}/rebook/{order_sync_id:int}", books_check_rebook, name="books_check_rebook", methods=["POST"]
    ),
    Route(_BASE + "/{month}/fetch/{order_number}", books_check_fetch, name="books_check_fetch", methods=["POST"]),
]
