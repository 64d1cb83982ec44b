"""The books check yields to live bookings: it spends an Exact call only while the rate governor leaves a reserve.

Before every page it asks the governor what the division has used: while more than MINUTE_SHARE of the minute's
budget or DAY_SHARE of the day's is counted, or the division is blocked, it waits (on the governor's clock, so the
benchmark can accelerate it) in steps of WAIT_STEP; after MAX_WAIT it gives up with `BudgetBusy`, a transient error:
the job tries again later. Bookings never wait for the books check; the books check waits for them.
"""

from __future__ import annotations

from gateway.clients.errors import TransientApiError
from gateway.clients.exact import ExactClient

MINUTE_SHARE = 0.5
DAY_SHARE = 0.8
WAIT_STEP = 5.0
MAX_WAIT = 15 * 60.0


class BudgetBusy(TransientApiError):
    """Bookings used the division's budget for longer than the books check waits; run it again later."""


class Reserve:
    """`await reserve.wait()` before each call; `waits` counts the pauses (the benchmark reports them)."""

    def __init__(
        self,
        exact: ExactClient,
        *,
        minute_share: float = MINUTE_SHARE,
        day_share: float = DAY_SHARE,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.exact = exact
        self.minute_share = minute_share
        self.day_share = day_share
        self.max_wait = max_wait
        self.waits = 0

    async def room(self) -> bool:
        governor = self.exact.governor
        if governor is None:
            return True
        usage = await governor.usage(self.exact.division)
        return (
            usage.blocked_until is None
            and usage.in_window < governor.minutely_limit * self.minute_share
            and usage.today < governor.daily_limit * self.day_share
        )

    async def wait(self) -> None:
        governor = self.exact.governor
        if governor is None:
            return
        waited = 0.0
        while not await self.room():
            if waited >= self.max_wait:
                raise BudgetBusy(
                    "bookings are using the Exact call budget; the books check tries again later", vendor="Exact Online"
                )
            await governor.clock.sleep(WAIT_STEP)
            waited += WAIT_STEP
            self.waits += 1
