"""What "today" and "this month" mean at the instants a deployment meets — the last second of a month and of a year,
both summer-time changes, 29 February, and the hours when UTC's date is not the Dutch one — for the dashboard's
counts, the start date of the export of existing orders, and the month of the usage report.

The shop owner's calendar is Europe/Amsterdam's (the dashboard, the export's "today"); the usage report's month is a
UTC month (`gateway report usage --month`). Each test pins "now" with time-machine; none depends on the real time.
"""

from __future__ import annotations

import csv
import functools
import io
from datetime import UTC, date, datetime, timedelta

import anyio
import pytest
import time_machine
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import tables
from gateway.cli import EXIT_OK
from gateway.clock import DISPLAY_ZONE
from gateway.crypto import Cipher
from gateway.jobs.initial_export import ExportNotAllowed, start_initial_export
from gateway.routes.dashboard import dashboard_numbers, day_and_month_start
from gateway.settings import Settings
from gateway.store import credentials
from gateway.store.integrations import get_integration_or_raise
from tests.support.clocks import (
    LAST_SECOND_OF_NOVEMBER,
    LAST_SECOND_OF_THE_YEAR,
    LEAP_DAY,
    NEW_MONTH_IN_AMSTERDAM_ONLY,
    NEW_YEAR_IN_AMSTERDAM_ONLY,
    SUMMER_TIME_BEGINS,
    SUMMER_TIME_ENDS,
    awkward_instants,
)
from tests.support.factories import add_order, create_active_integration, create_login, csrf_of, log_in, run_cli

pytestmark = pytest.mark.anyio


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def dutch_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=DISPLAY_ZONE)


# ---------------------------------------------------------------- the dashboard: booked today, booked this month


@pytest.mark.parametrize(
    ("now", "today_starts", "month_starts"),
    [
        (LAST_SECOND_OF_NOVEMBER, utc(2027, 11, 29, 23), utc(2027, 10, 31, 23)),
        (LAST_SECOND_OF_NOVEMBER + timedelta(seconds=1), utc(2027, 11, 30, 23), utc(2027, 11, 30, 23)),
        (LAST_SECOND_OF_THE_YEAR, utc(2027, 12, 30, 23), utc(2027, 11, 30, 23)),
        (NEW_YEAR_IN_AMSTERDAM_ONLY, utc(2027, 12, 31, 23), utc(2027, 12, 31, 23)),
        (NEW_MONTH_IN_AMSTERDAM_ONLY, utc(2027, 6, 30, 22), utc(2027, 6, 30, 22)),
        (SUMMER_TIME_BEGINS, utc(2027, 3, 27, 23), utc(2027, 2, 28, 23)),  # midnight was still winter time
        (SUMMER_TIME_ENDS, utc(2027, 10, 30, 22), utc(2027, 9, 30, 22)),  # midnight was still summer time
        (LEAP_DAY, utc(2028, 2, 28, 23), utc(2028, 1, 31, 23)),
    ],
)
def test_the_dashboard_day_and_month_begin_at_dutch_midnight(
    now: datetime, today_starts: datetime, month_starts: datetime
) -> None:
    assert day_and_month_start(now) == (today_starts, month_starts)


def booked_on_the_dutch_calendar(now: datetime, booked: list[datetime]) -> tuple[int, int]:
    """The counts the dashboard should show, worked out from Dutch dates alone."""
    here = now.astimezone(DISPLAY_ZONE).date()
    dates = [b.astimezone(DISPLAY_ZONE).date() for b in booked if b <= now]
    return sum(d == here for d in dates), sum((d.year, d.month) == (here.year, here.month) for d in dates)


@pytest.mark.parametrize("now", awkward_instants())
async def test_the_dashboard_counts_orders_by_the_dutch_day_and_month(engine: AsyncEngine, now: datetime) -> None:
    day = now.astimezone(DISPLAY_ZONE).date()
    midnight, first = dutch_midnight(day), dutch_midnight(day.replace(day=1))
    booked = [  # just either side of the day's and the month's start, and now itself
        midnight - timedelta(seconds=1),
        midnight,
        first - timedelta(seconds=1),
        first,
        now,
    ]
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
    for number, at in enumerate(booked, 1):
        sync_id = await add_order(engine, integration, str(number), state="booked")
        async with engine.begin() as conn:
            await conn.execute(update(tables.order_sync).where(tables.order_sync.c.id == sync_id).values(booked_at=at))
    with time_machine.travel(now, tick=False):
        async with engine.connect() as conn:
            numbers = await dashboard_numbers(conn, integration)
    assert (numbers["booked_today"], numbers["booked_month"]) == booked_on_the_dutch_calendar(now, booked)


# ---------------------------------------------------------------- the export of existing orders: up to today


async def connected_shop(engine: AsyncEngine, settings: Settings) -> int:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        await credentials.save_credential(
            conn,
            integration_id=integration.id,
            kind=credentials.SHOP_TOKEN,
            secret="shop-token-0001",
            cipher=Cipher(settings.encryption_keys),
        )
    return integration.id


@pytest.mark.parametrize(
    ("now", "dutch_today"),
    [
        (NEW_YEAR_IN_AMSTERDAM_ONLY, date(2028, 1, 1)),  # UTC still says 31 December 2027
        (LAST_SECOND_OF_THE_YEAR, date(2027, 12, 31)),
        (NEW_MONTH_IN_AMSTERDAM_ONLY, date(2027, 7, 1)),
        (LEAP_DAY, date(2028, 2, 29)),
        (SUMMER_TIME_ENDS, date(2027, 10, 31)),
    ],
)
async def test_an_export_may_start_on_the_dutch_today_and_not_after_it(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, now: datetime, dutch_today: date
) -> None:
    integration_id = await connected_shop(engine, settings)
    with time_machine.travel(now, tick=False):
        async with engine.begin() as conn:
            with pytest.raises(ExportNotAllowed, match="between"):
                await start_initial_export(
                    conn, redis, integration_id=integration_id, start_date=dutch_today + timedelta(days=1)
                )
        async with engine.begin() as conn:
            export = await start_initial_export(conn, redis, integration_id=integration_id, start_date=dutch_today)
    assert export.start_date == dutch_today


@pytest.mark.parametrize(
    ("now", "dutch_today"), [(NEW_YEAR_IN_AMSTERDAM_ONLY, date(2028, 1, 1)), (LEAP_DAY, date(2028, 2, 29))]
)
async def test_the_wizard_offers_the_export_up_to_the_dutch_today(
    client: TestClient, engine: AsyncEngine, now: datetime, dutch_today: date
) -> None:
    async with engine.begin() as conn:
        owner = await create_login(conn, email="calendar@shop.test")
        integration = await create_active_integration(conn, account_id=owner)
    url = f"/integrations/{integration.id}/setup/export"
    with time_machine.travel(now, tick=False):
        log_in(client, "calendar@shop.test")  # at the pinned time: a session from the real "now" would be too old
        token = csrf_of(client.get(url).text)
        later = {"csrf_token": token, "export": "from", "start_date": (dutch_today + timedelta(days=1)).isoformat()}
        refused = client.post(url, data=later, follow_redirects=False)
        taken = client.post(url, data=later | {"start_date": dutch_today.isoformat()}, follow_redirects=False)
    assert refused.status_code == 400
    assert f"Choose {dutch_today.isoformat()} or earlier" in refused.text
    assert taken.status_code == 303, taken.text
    async with engine.connect() as conn:
        saved = await get_integration_or_raise(conn, integration_id=integration.id)
    assert saved.settings.initial_export_start == dutch_today.isoformat()


# ---------------------------------------------------------------- the usage report: a UTC calendar month


async def usage(settings: Settings, month: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    code = await anyio.to_thread.run_sync(
        functools.partial(run_cli, settings, ["report", "usage", "--month", month, "--csv"])
    )
    assert code == EXIT_OK
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    return row


@pytest.mark.parametrize(
    ("month", "inside", "outside"),
    [
        (
            "2027-12",
            [utc(2027, 12, 1), utc(2027, 12, 31, 23, 59, 59)],
            [utc(2027, 11, 30, 23, 59, 59), utc(2028, 1, 1)],
        ),
        ("2028-02", [utc(2028, 2, 1), utc(2028, 2, 29, 23, 59, 59)], [utc(2028, 1, 31, 23, 59, 59), utc(2028, 3, 1)]),
        ("2027-03", [utc(2027, 3, 28, 1), utc(2027, 3, 31, 23, 59, 59)], [utc(2027, 4, 1), utc(2027, 2, 28, 23, 59)]),
        ("2027-10", [utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 30)], [utc(2027, 11, 1), utc(2027, 9, 30, 23)]),
    ],
)
async def test_the_usage_report_counts_the_utc_month_to_the_last_second(
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    month: str,
    inside: list[datetime],
    outside: list[datetime],
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)
        await conn.execute(
            update(tables.integration)
            .where(tables.integration.c.id == integration.id)
            .values(created_at=utc(2027, 1, 1))
        )
    for number, at in enumerate([*inside, *outside], 1):
        sync_id = await add_order(engine, integration, str(number), state="booked")
        async with engine.begin() as conn:
            await conn.execute(update(tables.order_sync).where(tables.order_sync.c.id == sync_id).values(booked_at=at))
    # Run on the last second of the year: the report is about the month asked for, whatever day it is run.
    with time_machine.travel(LAST_SECOND_OF_THE_YEAR, tick=False):
        row = await usage(settings, month, capsys)
    assert (row["month"], row["orders_booked"]) == (month, str(len(inside)))


async def test_an_order_booked_in_the_dutch_new_year_is_billed_in_utcs_december(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half past midnight on 1 January in Amsterdam is still December in UTC: it is billed with December."""
    with time_machine.travel(NEW_YEAR_IN_AMSTERDAM_ONLY, tick=False):
        async with engine.begin() as conn:
            integration = await create_active_integration(conn)
        await add_order(engine, integration, "1", state="booked")  # booked_at is the pinned "now"
        december = await usage(settings, "2027-12", capsys)
        january = await usage(settings, "2028-01", capsys)
    assert (december["orders_booked"], january["orders_booked"]) == ("1", "0")
