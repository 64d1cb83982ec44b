"""Service levels and the trial: what each level does, what it costs, and when a trial pauses an integration.

Basic: the poller visits the shop every BASIC_POLL_INTERVAL_SECONDS (default 120 minutes).
Pro: every POLL_INTERVAL_SECONDS (default 60 s), and webhook notices are handled at once.
Premium: as Pro, and its booking jobs and retries go to the priority queue, which the worker drains first.
Prices are operator settings (PRICE_BASIC, ...); no payment is processed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.clock import utcnow
from gateway.i18n import N_, Message
from gateway.settings import SERVICE_LEVELS, Settings
from gateway.store.integrations import Integration, get_integration_or_raise, update_integration

# States a trial end pauses; "setup" is not paused (it books nothing yet) but cannot be switched on.
PAUSABLE_STATES = ("active", "paused")
TRIAL_ENDED = "trial_ended"


@dataclass(frozen=True)
class ServiceLevel:
    code: str
    name: Message
    effect: Message
    price: Decimal | None  # euros a month; the page formats it in the reader's language
    poll_interval: timedelta
    priority_queue: bool


_AMOUNT = re.compile(r"\d+(?:[.,]\d{1,2})?")


def monthly_price(setting: str) -> Decimal | None:
    """The monthly price in euros from PRICE_<LEVEL> ("9", "9.50"; an older "€ 9 / month" is read for its number)."""
    found = _AMOUNT.search(setting)
    return Decimal(found.group().replace(",", ".")) if found else None


def service_levels(settings: Settings) -> list[ServiceLevel]:
    basic_minutes = settings.basic_poll_interval_seconds // 60
    pro_seconds = settings.poll_interval_seconds
    return [
        ServiceLevel(
            "basic",
            N_("Basic"),
            N_("New orders are picked up every %(minutes)s minutes.", minutes=basic_minutes),
            monthly_price(settings.prices.get("basic", "")),
            timedelta(seconds=settings.basic_poll_interval_seconds),
            False,
        ),
        ServiceLevel(
            "pro",
            N_("Pro"),
            N_(
                "New orders are picked up within a minute (the shop is checked every %(seconds)s seconds).",
                seconds=pro_seconds,
            ),
            monthly_price(settings.prices.get("pro", "")),
            timedelta(seconds=pro_seconds),
            False,
        ),
        ServiceLevel(
            "premium",
            N_("Premium"),
            N_("As Pro, and your orders and retries go first in a priority queue, ahead of other shops."),
            monthly_price(settings.prices.get("premium", "")),
            timedelta(seconds=pro_seconds),
            True,
        ),
    ]


def service_level(settings: Settings, code: str) -> ServiceLevel:
    levels = {level.code: level for level in service_levels(settings)}
    return levels.get(code, levels["pro"])


async def change_service_level(
    conn: AsyncConnection, *, integration: Integration, level: str, settings: Settings
) -> None:
    """Store the level and move the next poll so the new schedule applies now, not after the old interval.

    Faster levels are polled right away; Basic keeps its next poll no later than one Basic interval from now.
    """
    if level not in SERVICE_LEVELS:
        raise ValueError(f"unknown service level {level!r}")
    now = utcnow()
    interval = service_level(settings, level).poll_interval
    next_poll = integration.next_poll_at
    next_poll = now if level != "basic" else min(next_poll or now + interval, now + interval)
    await update_integration(conn, integration_id=integration.id, service_level=level, next_poll_at=next_poll)


@dataclass(frozen=True)
class Trial:
    ends_at: datetime | None
    days_left: int | None  # None: no trial (the operator activated the integration)
    ended: bool


def trial_of(integration: Integration, now: datetime | None = None) -> Trial:
    """The trial as the pages show it. An activation after the trial's end is the operator's (`gateway
    integrations activate`, after payment): from then on there is no trial. The owner's own first switch-on
    happens during the trial (an ended trial refuses it), so it never counts as paid."""
    activated = integration.activated_at
    if integration.trial_ends_at is None or (activated is not None and activated >= integration.trial_ends_at):
        return Trial(None, None, False)
    now = now or utcnow()
    remaining = (integration.trial_ends_at - now).total_seconds()
    return Trial(integration.trial_ends_at, max(0, math.ceil(remaining / 86400)), remaining <= 0)


async def pause_if_trial_ended(conn: AsyncConnection, *, integration: Integration) -> Integration:
    """Pause an active or paused integration whose trial is over, until the operator activates it.

    Only the state changes: queued orders stay queued, nothing already booked is touched. Returns the fresh row.
    """
    if integration.state in PAUSABLE_STATES and trial_of(integration).ended:
        await update_integration(conn, integration_id=integration.id, state=TRIAL_ENDED)
        return await get_integration_or_raise(conn, integration_id=integration.id)
    return integration
