"""`gateway report usage`: orders booked per integration in a month, for billing."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import EXIT_OK
from gateway.operator_console import add_command, emit
from gateway.settings import Settings
from gateway.store import operator as store

USAGE_COLUMNS: tuple[str, ...] = ("month", "integration_id", "name", "account_email", "service_level", "state")
USAGE_COLUMNS += ("orders_booked", "credit_orders", "initial_export_orders")


async def report_usage(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Orders booked per integration in a month, with service level (for billing)."""
    start, end = args.month
    async with engine.connect() as conn:
        usage = await store.usage_report(conn, start=start, end=end)
    rows = [{"month": start.strftime("%Y-%m"), **dataclasses.asdict(u)} for u in usage]
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=USAGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        emit(rows, args, USAGE_COLUMNS)
    return EXIT_OK


def _month(value: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(value + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {value!r}") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def add_report_commands(group: Any) -> None:
    usage = add_command(group, "usage", report_usage, lists=True)
    usage.add_argument("--month", type=_month, required=True, metavar="YYYY-MM")
    usage.add_argument("--csv", action="store_true", help="CSV with a header row (for billing)")
