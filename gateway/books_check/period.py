"""A books-check month on the Dutch calendar: its first and last day, and how it is written ("2026-11")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from gateway.clock import DISPLAY_ZONE, month_bounds

_MONTH = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})$")


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """'YYYY-MM' → Month; ValueError for anything else (the CLI and the page show the message)."""
        match = _MONTH.match(text.strip())
        if match is None or not 1 <= int(match["month"]) <= 12 or int(match["year"]) < 2000:
            raise ValueError(f"{text[:20]!r} is not a month like 2026-11")
        return cls(int(match["year"]), int(match["month"]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        start, _ = month_bounds(self.year, self.month, DISPLAY_ZONE)
        return start.astimezone(DISPLAY_ZONE).date()

    @property
    def day_after(self) -> date:
        """The first day of the next month: periods are [first_day, day_after)."""
        _, end = month_bounds(self.year, self.month, DISPLAY_ZONE)
        return end.astimezone(DISPLAY_ZONE).date()

    @property
    def last_day(self) -> date:
        return self.day_after - timedelta(days=1)

    def previous(self) -> Month:
        first = self.first_day - timedelta(days=1)
        return Month(first.year, first.month)

    def next(self) -> Month:
        return Month(self.day_after.year, self.day_after.month)
