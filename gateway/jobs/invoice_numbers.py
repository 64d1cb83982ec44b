"""Read back the numbers of processed sales invoices (arq cron, every 5 minutes).

Exact numbers a sales invoice when it is processed, and PrintedSalesInvoices, which processes it, does not return the
number; so a booked invoice's row keeps only the invoice id. This job asks Exact for the numbers of such rows, up to
BATCH ids in one filtered GET, and stores those of processed invoices (Status 50); drafts wait for a later round.

Bookings come first. The job uses the booking job's way to open an Exact client (token custody, rate governor) and
spends a call only while the governor has counted at most half of the administration's minute and 90 % of its day.
When Exact needs a new consent, the budget is spent or Exact does not answer, the integration is skipped for the
round with one log line. A refused look-up (4xx, which Exact counts against an hourly error budget) pauses the
integration's read-back for PAUSE_AFTER_REFUSAL.

Only rows the gateway itself processed are read: an integration whose settings keep invoices as drafts is left out
(its invoices get a number only when someone processes them in Exact), and so are rows of the initial export when
the settings send invoices without making them final. Rows booked more than LOOKBACK ago are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.booking import DIRECT_SALES_INVOICE, SALES_INVOICE
from gateway.booking_documents import finalize_payload
from gateway.clients.errors import AuthError, PermanentApiError, TransientApiError
from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import MAX_IDS_PER_LOOK_UP, find_invoice_numbers
from gateway.clock import utcnow
from gateway.jobs.sync_order import BookingServices, services_from_context
from gateway.store import orders
from gateway.store.integrations import Integration, IntegrationSettings, list_integrations

logger = logging.getLogger(__name__)

BATCH = MAX_IDS_PER_LOOK_UP
MAX_BATCHES = 4  # look-ups per integration per round: at most 100 invoices
LOOKBACK = timedelta(days=30)
MINUTE_SHARE = 0.5  # spend a call only while the governor counts at most this share of the minute's budget ...
DAY_SHARE = 0.9  # ... and of the day's
PAUSE_AFTER_REFUSAL = timedelta(hours=6)
INVOICES = (SALES_INVOICE, DIRECT_SALES_INVOICE)


@dataclass
class _Tally:
    numbered: int = 0
    look_ups: int = 0
    skipped: int = 0


async def backfill_invoice_numbers(ctx: dict[str, Any]) -> str:
    """Cron entry point; returns a one-line summary for the job result."""
    return await read_back_invoice_numbers(services_from_context(ctx))


async def read_back_invoice_numbers(
    services: BookingServices, *, batch: int = BATCH, max_batches: int = MAX_BATCHES
) -> str:
    """One round over every active integration with Exact connected. Never raises for one integration's trouble."""
    if not 0 < batch <= MAX_IDS_PER_LOOK_UP:
        raise ValueError(f"batch must be 1..{MAX_IDS_PER_LOOK_UP}")
    async with services.engine.connect() as conn:
        integrations = [i for i in await list_integrations(conn) if _eligible(i)]
    tally = _Tally()
    for integration in integrations:
        if await services.redis.exists(_pause_key(integration.id)):
            continue
        try:
            await _read_back(services, integration, tally, batch=batch, max_batches=max_batches)
        except (AuthError, TransientApiError) as e:  # RateLimitedError is a TransientApiError
            tally.skipped += 1
            logger.info("invoice numbers of integration %s skipped this round: %s", integration.id, e)
        except PermanentApiError as e:
            tally.skipped += 1
            await services.redis.set(_pause_key(integration.id), 1, ex=int(PAUSE_AFTER_REFUSAL.total_seconds()))
            logger.warning("invoice numbers of integration %s paused: Exact refused the look-up: %s", integration.id, e)
    return (
        f"numbered {tally.numbered} invoice(s) in {tally.look_ups} look-up(s); "
        f"{tally.skipped} integration(s) skipped this round"
    )


def _eligible(integration: Integration) -> bool:
    return (
        integration.is_active
        and integration.exact_connection == "connected"
        and bool(integration.exact_division)
        and _processes(integration.settings, initial_export=False)
    )


def _processes(settings: IntegrationSettings, *, initial_export: bool) -> bool:
    """Whether the booking job processes (and so numbers) the invoices it books under these settings."""
    payload = finalize_payload(SALES_INVOICE, utcnow().date(), settings, "", initial_export=initial_export)
    return payload is not None


def _pause_key(integration_id: int) -> str:
    return f"invoice-numbers:paused:{integration_id}"


async def _read_back(
    services: BookingServices, integration: Integration, tally: _Tally, *, batch: int, max_batches: int
) -> None:
    async with services.engine.connect() as conn:
        rows = await orders.list_unnumbered_documents(
            conn,
            integration_id=integration.id,
            document_types=INVOICES,
            booked_since=utcnow() - LOOKBACK,
            include_initial_export=_processes(integration.settings, initial_export=True),
            limit=batch * max_batches,
        )
    if not rows:
        return  # no client opened, no call made
    exact = await services.open_exact(integration)
    for start in range(0, len(rows), batch):
        if not await _room_left(exact):
            tally.skipped += 1
            logger.info("invoice numbers of integration %s wait: bookings are using the call budget", integration.id)
            return
        chunk = rows[start : start + batch]
        numbers = await find_invoice_numbers(exact, [row.exact_document_id or "" for row in chunk])
        tally.look_ups += 1
        async with services.engine.begin() as conn:
            for row in chunk:
                document_id = row.exact_document_id or ""
                number = numbers.get(document_id.strip().lower())
                if number and await orders.set_document_number(
                    conn,
                    integration_id=integration.id,
                    order_sync_id=row.id,
                    exact_document_id=document_id,
                    number=number,
                ):
                    tally.numbered += 1


async def _room_left(exact: ExactClient) -> bool:
    """Whether the division's budget leaves room for bookings after one more call of ours."""
    governor = exact.governor
    if governor is None:
        return True
    usage = await governor.usage(exact.division)
    return (
        usage.blocked_until is None
        and usage.in_window < governor.minutely_limit * MINUTE_SHARE
        and usage.today < governor.daily_limit * DAY_SHARE
    )
