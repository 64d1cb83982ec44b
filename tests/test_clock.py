"""gateway/clock.py at the instants a deployment meets: month and year ends, both summer-time changes, 29 February,
and the hours when UTC's date is not the Dutch date. Pinned with `FixedClock` and with `time_machine` (the system
clock), never the real time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from hypothesis import given, strategies as st

from gateway.clock import (
    DISPLAY_ZONE,
    SYSTEM_CLOCK,
    FixedClock,
    local_day_start,
    local_now,
    local_today,
    month_bounds,
    previous_month,
    utcnow,
)
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


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("instant", "dutch_today", "utc_date"),
    [
        (LAST_SECOND_OF_NOVEMBER, date(2027, 11, 30), date(2027, 11, 30)),
        (LAST_SECOND_OF_NOVEMBER + timedelta(seconds=1), date(2027, 12, 1), date(2027, 11, 30)),
        (LAST_SECOND_OF_THE_YEAR, date(2027, 12, 31), date(2027, 12, 31)),
        (LAST_SECOND_OF_THE_YEAR + timedelta(seconds=1), date(2028, 1, 1), date(2027, 12, 31)),
        (NEW_YEAR_IN_AMSTERDAM_ONLY, date(2028, 1, 1), date(2027, 12, 31)),
        (NEW_MONTH_IN_AMSTERDAM_ONLY, date(2027, 7, 1), date(2027, 6, 30)),
        (LEAP_DAY, date(2028, 2, 29), date(2028, 2, 29)),
        (utc(2028, 2, 29, 23, 0, 0), date(2028, 3, 1), date(2028, 2, 29)),
        (SUMMER_TIME_BEGINS, date(2027, 3, 28), date(2027, 3, 28)),
        (SUMMER_TIME_ENDS, date(2027, 10, 31), date(2027, 10, 31)),
    ],
)
def test_today_is_the_dutch_date_whatever_utc_says(instant: datetime, dutch_today: date, utc_date: date) -> None:
    clock = FixedClock.at_instant(instant)
    assert utcnow(clock) == instant
    assert utcnow(clock).tzinfo is UTC
    assert utcnow(clock).date() == utc_date
    assert local_today(clock) == dutch_today
    assert local_now(clock).tzinfo is DISPLAY_ZONE


def test_the_dutch_clock_jumps_an_hour_forward_and_back() -> None:
    before, after = SUMMER_TIME_BEGINS - timedelta(seconds=1), SUMMER_TIME_BEGINS
    assert local_now(FixedClock.at_instant(before)).strftime("%H:%M:%S %Z") == "01:59:59 CET"
    assert local_now(FixedClock.at_instant(after)).strftime("%H:%M:%S %Z") == "03:00:00 CEST"
    # When summer time ends, 02:30 happens twice, an hour apart; both are the same Dutch day.
    first, second = (local_now(FixedClock.at_instant(SUMMER_TIME_ENDS + timedelta(minutes=m))) for m in (-30, 30))
    assert first.strftime("%H:%M %Z") == "02:30 CEST"
    assert second.strftime("%H:%M %Z") == "02:30 CET"
    assert first.date() == second.date() == date(2027, 10, 31)


@pytest.mark.parametrize(
    ("day", "starts", "hours"),
    [
        (date(2027, 3, 28), utc(2027, 3, 27, 23), 23),  # summer time begins: a short day
        (date(2027, 10, 31), utc(2027, 10, 30, 22), 25),  # summer time ends: a long day
        (date(2028, 2, 29), utc(2028, 2, 28, 23), 24),
        (date(2028, 1, 1), utc(2027, 12, 31, 23), 24),
        (date(2027, 7, 1), utc(2027, 6, 30, 22), 24),
    ],
)
def test_a_dutch_day_starts_at_local_midnight_and_lasts_23_24_or_25_hours(
    day: date, starts: datetime, hours: int
) -> None:
    assert local_day_start(day) == starts
    assert local_day_start(day + timedelta(days=1)) - local_day_start(day) == timedelta(hours=hours)


@given(st.integers(min_value=utc(2000, 1, 1).timestamp(), max_value=utc(2100, 1, 1).timestamp()))
def test_every_instant_falls_in_its_dutch_day_and_month(seconds: int) -> None:
    clock = FixedClock(seconds)
    today = local_today(clock)
    assert local_day_start(today) <= utcnow(clock) < local_day_start(today + timedelta(days=1))
    start, end = month_bounds(today.year, today.month, DISPLAY_ZONE)
    assert start <= utcnow(clock) < end
    assert start == local_day_start(today.replace(day=1))


@pytest.mark.parametrize(
    ("year", "month", "zone", "bounds"),
    [
        (2027, 12, None, (utc(2027, 12, 1), utc(2028, 1, 1))),
        (2027, 12, DISPLAY_ZONE, (utc(2027, 11, 30, 23), utc(2027, 12, 31, 23))),
        (2028, 2, None, (utc(2028, 2, 1), utc(2028, 3, 1))),
        (2028, 2, DISPLAY_ZONE, (utc(2028, 1, 31, 23), utc(2028, 2, 29, 23))),
        (2027, 2, DISPLAY_ZONE, (utc(2027, 1, 31, 23), utc(2027, 2, 28, 23))),
        (2027, 3, DISPLAY_ZONE, (utc(2027, 2, 28, 23), utc(2027, 3, 31, 22))),  # summer time begins inside
        (2027, 10, DISPLAY_ZONE, (utc(2027, 9, 30, 22), utc(2027, 10, 31, 23))),  # summer time ends inside
    ],
)
def test_month_bounds_in_utc_and_on_the_dutch_calendar(
    year: int, month: int, zone: object, bounds: tuple[datetime, datetime]
) -> None:
    assert month_bounds(year, month, zone) == bounds  # type: ignore[arg-type]
    assert all(b.tzinfo is not None and b.utcoffset() == timedelta(0) for b in bounds)


@pytest.mark.parametrize(
    ("today", "previous"),
    [
        (date(2028, 1, 1), (2027, 12)),
        (date(2027, 12, 31), (2027, 11)),
        (date(2028, 2, 29), (2028, 1)),
        (date(2028, 3, 1), (2028, 2)),
        (date(2028, 3, 31), (2028, 2)),
    ],
)
def test_the_previous_month(today: date, previous: tuple[int, int]) -> None:
    assert previous_month(today) == previous


@pytest.mark.parametrize("instant", awkward_instants())
def test_the_system_clock_answers_what_time_machine_pins(instant: datetime) -> None:
    """Code that does not take a clock asks the system one; time-machine moves it for such code's tests."""
    with time_machine.travel(instant, tick=False):
        assert utcnow() == instant
        assert local_now() == instant.astimezone(DISPLAY_ZONE)
        assert local_today() == local_today(FixedClock.at_instant(instant))
        assert SYSTEM_CLOCK.now() == instant.timestamp()


async def test_a_fixed_clock_moves_only_when_slept_on() -> None:
    clock = FixedClock.at_instant(LAST_SECOND_OF_THE_YEAR)
    assert local_today(clock) == date(2027, 12, 31)
    await clock.sleep(1)
    assert local_today(clock) == date(2028, 1, 1)
    await clock.sleep(-5)  # a negative wait does not turn the clock back
    assert utcnow(clock) == LAST_SECOND_OF_THE_YEAR + timedelta(seconds=1)
