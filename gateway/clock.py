"""The project's one clock: every "what is now / today / this month" question is asked here.

Times are stored and compared in UTC. A shop owner's calendar is Europe/Amsterdam's: "today", "this month" and a date
a customer picks are that zone's dates, which differ from UTC's for one or two hours around midnight, and whose
midnight moves with summer time. Code that needs the time takes a `Clock` (default: `SYSTEM_CLOCK`), or calls the
module functions, which ask the system clock; tests pin either (a `FixedClock`, or `time-machine`, which moves
`datetime.now` and `time.time` together). Imports nothing of the project.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DISPLAY_ZONE = ZoneInfo("Europe/Amsterdam")


class Clock(Protocol):
    """Wall-clock seconds since the epoch, and a way to wait: what the rate governor and the jobs need."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class FixedClock:
    """A clock that stands still until it is moved (or slept on): for tests and benchmarks."""

    at: float

    @classmethod
    def at_instant(cls, instant: datetime) -> FixedClock:
        return cls(instant.timestamp())

    def now(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += max(seconds, 0.0)
        await asyncio.sleep(0)


SYSTEM_CLOCK: Clock = SystemClock()


def utcnow(clock: Clock = SYSTEM_CLOCK) -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.now(), UTC)


def local_now(clock: Clock = SYSTEM_CLOCK) -> datetime:
    """Now on the shop owner's calendar: "today" for dates a customer picks is this zone's date, not UTC's."""
    return utcnow(clock).astimezone(DISPLAY_ZONE)


def local_today(clock: Clock = SYSTEM_CLOCK) -> date:
    return local_now(clock).date()


def local_day_start(day: date) -> datetime:
    """The instant the Dutch calendar day begins (23:00 or 22:00 UTC the evening before, by the season)."""
    return datetime(day.year, day.month, day.day, tzinfo=DISPLAY_ZONE).astimezone(UTC)


def month_bounds(year: int, month: int, zone: ZoneInfo | None = None) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month as aware UTC datetimes; in `zone`'s calendar when given, else UTC's."""
    tz = zone or UTC
    start = datetime(year, month, 1, tzinfo=tz)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.astimezone(UTC), following.astimezone(UTC)


def previous_month(today: date) -> tuple[int, int]:
    """(year, month) of the calendar month before the one `today` falls in."""
    first = today.replace(day=1) - timedelta(days=1)
    return first.year, first.month
