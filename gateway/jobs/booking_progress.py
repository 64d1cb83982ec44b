"""A booking that needs more Exact records than one try can create: how a try ends that paused with work left.

The item step persists every record it creates (a stored link, in its own transaction, before the next call), so a
paused or killed try loses nothing and the next try resumes where it stopped. A pause is not a failure: it is
recorded as `deferred` (like a rate-limit deferral it does not count toward MAX_TRIES) and the job comes back at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import NoReturn

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clients.exact import ExactClient
from gateway.clients.exact_items import CreationBudget, CreationPaused
from gateway.clock import SYSTEM_CLOCK, Clock, utcnow
from gateway.jobs.booking_outcomes import DEFERRED, BookingAttempt, record_attempt, record_progress
from gateway.store import orders

logger = logging.getLogger("gateway.jobs.sync_order")

# How long one try may keep creating items: well inside the worker's JOB_TIMEOUT (120 s) with the steps before it
# (claim, shop read, look-ups) and the last create in flight (a governor wait of at most 20 s plus the HTTP call).
CREATION_SECONDS = 45.0
CREATING = "creating_records"  # the error kind shown while a big order is being worked through
CONTINUE_AFTER = timedelta(seconds=1)


def creation_budget(exact: ExactClient, clock: Clock | None = None) -> CreationBudget:
    """The try's budget on `clock`, else the rate governor's (the benchmark accelerates it), else the system's."""
    if clock is None:
        clock = exact.governor.clock if exact.governor is not None else SYSTEM_CLOCK
    return CreationBudget.lasting(clock, CREATION_SECONDS)


async def continue_later(engine: AsyncEngine, attempt: BookingAttempt, paused: CreationPaused) -> NoReturn:
    """Record the try's progress and come back at once (arq.Retry): the next try resumes from the stored links."""
    message = f"{paused}; the booking continues by itself"
    async with engine.begin() as conn:
        await record_progress(conn, attempt)
        await orders.mark_retrying(
            conn,
            integration_id=attempt.integration.id,
            order_sync_id=attempt.sync.id,
            error_kind=CREATING,
            message=message,
            next_attempt_at=utcnow() + CONTINUE_AFTER,
        )
        await record_attempt(conn, attempt, DEFERRED, message)
    logger.info("order %s continues: %s", attempt.sync.order_number, paused)
    raise Retry(defer=CONTINUE_AFTER)
