"""`gateway books check`: the books check of one integration and month from the command line.

Not `reconcile_orders` (the sweep that re-enqueues lost booking jobs): this reads both sides of a month and lists
every difference (docs/books-check.md). Exit code 0 when the books agree, 1 when there are differences (or the check
could not run), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.books_check.findings import Report
from gateway.books_check.period import Month
from gateway.books_check.run import Outcome, build_services, run_books_check
from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.clients.errors import ApiError
from gateway.clients.http import http_client
from gateway.crypto import Cipher
from gateway.operator_console import add_command, emit, say
from gateway.queue import create_arq_pool
from gateway.settings import Settings
from gateway.store.integrations import get_integration

FINDING_COLUMNS = ("kind", "order_number", "document_number", "shop_total", "exact_total", "total_cents", "vat_cents")


async def books_check(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Check one month of an integration's books: every shop order against Exact; exit 1 when they differ."""
    async with engine.connect() as conn:
        integration = await get_integration(conn, integration_id=args.integration)
    if integration is None:
        say(f"integration {args.integration} does not exist")
        return EXIT_FAILURE
    pool = await create_arq_pool(settings.redis_url)
    try:
        async with http_client() as http:
            services = build_services(
                engine=engine, settings=settings, cipher=Cipher(settings.encryption_keys), http=http, redis=pool
            )
            outcome = await run_books_check(services, integration_id=integration.id, month=args.month)
    except ApiError as e:
        say(f"integration {integration.id}, {args.month}: the books check could not run: {e}")
        return EXIT_FAILURE
    finally:
        await pool.aclose()
    _print(outcome, args)
    return EXIT_FAILURE if outcome.report.headline.differences else EXIT_OK


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "month": str(outcome.month),
        **outcome.report.to_json(),
        "exact_calls": outcome.exact_calls,
        "shop_calls": outcome.shop_calls,
    }


def _print(outcome: Outcome, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(outcome_json(outcome)))  # noqa: T201 - CLI output
        return
    say(headline_text(outcome.report, str(outcome.month)))
    say(f"cost: {outcome.exact_calls} Exact call(s), {outcome.shop_calls} Mijnwebwinkel call(s)")
    rows = [
        {
            "kind": f.kind.value,
            "order_number": f.order_number,
            "document_number": f.document_number,
            "shop_total": f.shop.total if f.shop else None,
            "exact_total": f.exact.total if f.exact else None,
            "total_cents": f.total_cents,
            "vat_cents": ", ".join(f"{rate}%: {c:+d}" for rate, c in f.vat_cents.items()),
        }
        for f in outcome.report.findings
    ]
    emit(rows, args, FINDING_COLUMNS)


def headline_text(report: Report, month: str) -> str:
    """One plain-English paragraph for the operator (the pages and e-mail render it in the reader's language)."""
    h = report.headline
    vat = "; ".join(f"{rate}%: shop {shop} / Exact {exact}" for rate, shop, exact in h.vat_rows()) or "none"
    return (
        f"{month}: {h.orders} order(s), {h.documents} document(s); total shop {h.shop_total} / Exact {h.exact_total}; "
        f"VAT {vat}; {h.differences} difference(s), {h.ignored} ignored"
    )


def _month(value: str) -> Month:
    try:
        return Month.parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_books_commands(group: Any) -> None:
    check = add_command(group, "check", books_check)
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.add_argument("--integration", type=int, required=True, metavar="N")
    check.add_argument("--month", type=_month, required=True, metavar="YYYY-MM")
