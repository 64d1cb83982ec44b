"""How a try at booking an order ends when it books nothing, and what every try records.

`BookingAttempt` is what one try knows so far; `record_progress` and `record_attempt` write it down; `give_up`,
`auth_lost` and `retry_later` end a try that failed (permanently, for lost consent, or for now), with the one retry
policy of the booking job (`MAX_TRIES`, `retry_delay`). No API calls here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import metrics
from gateway.booking import BookingPlan
from gateway.clients.errors import AuthError, RateLimitedError, TransientApiError
from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import ExactDocument
from gateway.clients.exact_responses import VENDOR as EXACT
from gateway.clients.mijnwebwinkel_models import MwwOrder
from gateway.clock import utcnow
from gateway.exact_auth import mark_reconnect_needed
from gateway.store import attempts, exact_links, orders
from gateway.store.integrations import Integration, VatMapping, note_vat_category_seen
from gateway.store.orders import OrderSync

# The booking job's log lines keep one logger name, whichever of its modules writes them.
logger = logging.getLogger("gateway.jobs.sync_order")

MAX_TRIES = 8
# arq's cap on the runs of one job, failures and deferrals together. Past it arq drops the job and the sweep
# (jobs/reconcile.py) enqueues the row again once its retry time has passed, so even a long wait loses nothing.
JOB_MAX_TRIES = MAX_TRIES + 100
BACKOFF_BASE = 10.0  # seconds; the ceiling doubles per try (10, 20, 40, ... up to BACKOFF_CAP)
BACKOFF_CAP = 30 * 60.0
EXACT_AUTH = "exact_auth"
SHOP_AUTH = "shop_auth"
EXACT_REFUSED = "exact_refused"
INVOICE_PROCESSING = "invoice_processing"
UNAVAILABLE = "unavailable"
DEFERRED = "deferred"  # the attempt outcome of a try that waited for the rate budget
_jitter = random.SystemRandom()


@dataclass
class BookingAttempt:
    """One try at booking one order: what is known so far, for the attempt record."""

    sync: OrderSync
    integration: Integration
    mappings: dict[str, VatMapping]
    ambiguous: bool
    job_id: str | None
    started: datetime = field(default_factory=utcnow)
    order: MwwOrder | None = None
    plan: BookingPlan | None = None
    exact: ExactClient | None = None
    calls_before: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    sent: bool = False
    document: ExactDocument | None = None
    response: str = ""
    used_links: list[tuple[str, str]] = field(default_factory=list)
    learned: dict[tuple[str, str], str] = field(default_factory=dict)
    stale_links: bool = False

    @property
    def exact_calls(self) -> int:
        return 0 if self.exact is None else self.exact.calls - self.calls_before

    @property
    def settings(self) -> Any:
        return self.integration.settings


async def record_progress(conn: AsyncConnection, attempt: BookingAttempt) -> None:
    """What every outcome keeps: the order's details for the history page, learned links, categories seen."""
    integration_id = attempt.integration.id
    order = attempt.order
    if order is not None:
        await orders.update_order_details(
            conn,
            integration_id=integration_id,
            order_sync_id=attempt.sync.id,
            customer_name=order.customer_name[:200] or None,
            customer_email=order.email[:254] or None,
            order_total=f"{order.total:.2f}",
            currency=order.currency,
            order_date=order.date,
            is_credit=order.is_credit,
        )
    if attempt.learned:
        await exact_links.save_links(conn, integration_id=integration_id, links=attempt.learned)
    if attempt.stale_links and attempt.used_links:
        await exact_links.delete_links(conn, integration_id=integration_id, keys=attempt.used_links)
    for category in attempt.plan.categories if attempt.plan else ():
        mapping = attempt.mappings.get(category)
        if mapping is None or not mapping.seen_in_orders:
            await note_vat_category_seen(conn, integration_id=integration_id, category=category)


async def record_attempt(
    conn: AsyncConnection, attempt: BookingAttempt, outcome: str, error: str | None = None
) -> None:
    metrics.BOOKINGS.labels(outcome, attempt.settings.insertion_type).inc()
    await attempts.record_attempt(
        conn,
        integration_id=attempt.integration.id,
        order_sync_id=attempt.sync.id,
        outcome=outcome,
        started_at=attempt.started,
        job_id=attempt.job_id,
        document_type=attempt.settings.insertion_type,
        request_summary={**attempt.summary, "order": attempt.sync.order_number, "sent": attempt.sent},
        response_summary=attempt.response or error,
        error_message=error,
        exact_calls=attempt.exact_calls,
    )


async def give_up(
    engine: AsyncEngine,
    attempt: BookingAttempt,
    kind: str,
    message: str,
    *,
    attention: bool = False,
    categories: tuple[str, ...] = (),
    params: Mapping[str, str] | None = None,
    state: str | None = None,
) -> str:
    """A permanent fault: recorded with a message for the shop owner (and the figures it names, `params`), not
    retried; resumes when the cause is fixed. `state` defaults to needs_attention or failed by `attention`."""
    state = state or ("needs_attention" if attention else "failed")
    async with engine.begin() as conn:
        await record_progress(conn, attempt)
        for category in categories:
            await note_vat_category_seen(conn, integration_id=attempt.integration.id, category=category)
        await orders.mark_failed(
            conn,
            integration_id=attempt.integration.id,
            order_sync_id=attempt.sync.id,
            error_kind=kind,
            message=message,
            params=dict(params or {}),
            state=state,
        )
        await record_attempt(conn, attempt, "permanent", message)
    logger.info("order %s not booked (%s): %s", attempt.sync.order_number, kind, message)
    return f"{state.replace('_', ' ')}: {message}"


async def auth_lost(engine: AsyncEngine, attempt: BookingAttempt, error: AuthError) -> str:
    """Consent lost: the connection is marked so no job retries against it; the orders resume after reconnecting."""
    if error.vendor == EXACT:
        if attempt.integration.exact_connection == "connected":
            await mark_reconnect_needed(engine, integration_id=attempt.integration.id, reason=str(error))
        message = f"Exact Online must be connected again ({error}); the order is booked once you reconnect"
        return await give_up(engine, attempt, EXACT_AUTH, message)
    message = f"Mijnwebwinkel refused the shop token ({error}); paste a new token and the order is booked again"
    return await give_up(engine, attempt, SHOP_AUTH, message)


async def _deferrals_so_far(engine: AsyncEngine, attempt: BookingAttempt, job_try: int) -> int:
    """Earlier tries of this job that were deferrals (none to count on a first try, or without a job id)."""
    if job_try <= 1 or not attempt.job_id:
        return 0
    async with engine.connect() as conn:
        return await attempts.count_job_attempts(
            conn,
            integration_id=attempt.integration.id,
            order_sync_id=attempt.sync.id,
            job_id=attempt.job_id,
            outcome=DEFERRED,
        )


def retry_delay(job_try: int, error: TransientApiError, *, now: datetime) -> float:
    """Seconds until the next try: exponential back-off with full jitter, never before the vendor's reset time."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, job_try - 1))
    floor = 0.0
    if isinstance(error, RateLimitedError) and error.reset_at is not None:
        floor = (error.reset_at - now).total_seconds()
    elif error.retry_after:
        floor = error.retry_after
    return max(1.0, floor) + _jitter.uniform(0, ceiling)


async def retry_later(engine: AsyncEngine, attempt: BookingAttempt, error: TransientApiError, job_try: int) -> str:
    """A transient fault: recorded, then arq.Retry after `retry_delay`; after MAX_TRIES failed tries the order gives up.

    A rate limit (our governor's or Exact's 429) is a deferral, not a failure: nothing went wrong, the budget was
    spent. It is recorded as `deferred` and does not count toward MAX_TRIES, so a busy administration's backlog waits
    its turn however long it takes instead of failing after eight deferrals. The back-off still grows with every try:
    deferred jobs that all came back at the reset would crowd the budget and hold worker slots waiting for it.
    """
    now = utcnow()
    deferral = isinstance(error, RateLimitedError)
    if not deferral:
        failures = job_try - await _deferrals_so_far(engine, attempt, job_try)
        if failures >= MAX_TRIES:
            message = f"{error.vendor} kept failing after {failures} tries ({error}); retry the order later"
            return await give_up(engine, attempt, UNAVAILABLE, message)
    delay = retry_delay(job_try, error, now=now)  # every try spreads the retries out, deferrals too
    async with engine.begin() as conn:
        await record_progress(conn, attempt)
        await orders.mark_retrying(
            conn,
            integration_id=attempt.integration.id,
            order_sync_id=attempt.sync.id,
            error_kind=UNAVAILABLE,
            message=str(error),
            next_attempt_at=now + timedelta(seconds=delay),
        )
        await record_attempt(conn, attempt, DEFERRED if deferral else "transient", str(error))
    logger.info("order %s retried in %.0f s: %s", attempt.sync.order_number, delay, error)
    raise Retry(defer=timedelta(seconds=delay))
