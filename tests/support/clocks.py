"""The awkward instants a real deployment meets, for tests that pin "now" (`FixedClock`, or `time_machine.travel`).

Each is an aware UTC datetime with the Dutch wall-clock time it is (Europe/Amsterdam) in its name or note. 2027 and 2028
are used so that no instant is near the day the suite happens to run.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

# The last second of a month and of a year, on the Dutch calendar (23:59:59 CET is 22:59:59 UTC).
LAST_SECOND_OF_NOVEMBER = datetime(2027, 11, 30, 22, 59, 59, tzinfo=UTC)
LAST_SECOND_OF_THE_YEAR = datetime(2027, 12, 31, 22, 59, 59, tzinfo=UTC)
# Summer time begins on 28 March 2027: at 01:00 UTC the Dutch clocks jump from 02:00 to 03:00 (a 23-hour day).
SUMMER_TIME_BEGINS = datetime(2027, 3, 28, 1, 0, 0, tzinfo=UTC)
# Summer time ends on 31 October 2027: at 01:00 UTC the Dutch clocks go back from 03:00 to 02:00 (a 25-hour day);
# 00:30 and 01:30 UTC are both 02:30 in Amsterdam.
SUMMER_TIME_ENDS = datetime(2027, 10, 31, 1, 0, 0, tzinfo=UTC)
# 29 February 2028, at noon in Amsterdam.
LEAP_DAY = datetime(2028, 2, 29, 11, 0, 0, tzinfo=UTC)
# UTC's date is still 31 December 2027 while it is already 1 January 2028, 00:59:30, in Amsterdam (CI's shifted pass).
NEW_YEAR_IN_AMSTERDAM_ONLY = datetime(2027, 12, 31, 23, 59, 30, tzinfo=UTC)
# UTC's date is 30 June 2027 while it is 1 July 2027, 01:30 (summer time), in Amsterdam.
NEW_MONTH_IN_AMSTERDAM_ONLY = datetime(2027, 6, 30, 23, 30, 0, tzinfo=UTC)

AWKWARD = {
    "last second of a month": LAST_SECOND_OF_NOVEMBER,
    "last second of a year": LAST_SECOND_OF_THE_YEAR,
    "summer time begins": SUMMER_TIME_BEGINS,
    "summer time ends": SUMMER_TIME_ENDS,
    "29 February": LEAP_DAY,
    "new year in Amsterdam, not in UTC": NEW_YEAR_IN_AMSTERDAM_ONLY,
    "new month in Amsterdam, not in UTC": NEW_MONTH_IN_AMSTERDAM_ONLY,
}


def awkward_instants() -> list[object]:
    """`AWKWARD` as pytest params named after the instant (for `@pytest.mark.parametrize("instant", ...)`)."""
    return [pytest.param(instant, id=name.replace(" ", "-")) for name, instant in AWKWARD.items()]
