"""The booking job: `sync_order` (arq) is a thin wrapper; `book_order` is the testable core.

Exactly once (docs/booking.md): the order's sync row is the lock (a claim with a lease, one job at a time per order)
and the record (the Exact document id/number are stored in the transaction that marks it booked, with the attempt).
Exact has no idempotency key, so every document carries a mark (order number + integration, `booking_mark`) and
whenever an earlier attempt may have reached Exact (it sent the document, or it left no record because its worker
died) the job first looks the order up and adopts only a document with its mark; anything short of that proof stops
the order as `needs_review`. The core
never holds a database transaction while it talks to an API. A customer account or item the booking may create is
found or created under a Redis lock per record (`_LinkLocks`), so concurrent orders of one new customer make one.
How a try that books nothing ends, what every try records, and the retry policy live in jobs/booking_outcomes.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import booking, lookups
from gateway.booking import BookingError, plan_booking
from gateway.booking_documents import booking_mark, build_document, finalize_payload, summarize
from gateway.clients.errors import AuthError, PermanentApiError, TransientApiError
from gateway.clients.exact import ExactClient
from gateway.clients.exact_documents import (
    ExactDocument,
    LinkKey,
    create_document,
    finalize_invoice,
    find_documents,
    find_invoice_numbers,
    link_keys,
    own_document,
    resolve_refs,
)
from gateway.clients.exact_items import CreationPaused
from gateway.clients.exact_responses import VENDOR as EXACT
from gateway.clients.mijnwebwinkel_models import MwwOrder
from gateway.clients.redis_gate import redis_gate
from gateway.clock import Clock
from gateway.exact_auth import exact_client_for
from gateway.jobs.booking_outcomes import (
    EXACT_REFUSED,
    INVOICE_PROCESSING,
    JOB_MAX_TRIES,
    MAX_TRIES,
    BookingAttempt,
    auth_lost,
    give_up,
    record_attempt,
    record_progress,
    retry_delay,
    retry_later,
)
from gateway.jobs.booking_progress import continue_later, creation_budget
from gateway.logs import bind, log_context
from gateway.lookups import sales_journals, vat_codes
from gateway.queue import enqueue_sync
from gateway.shop_connection import mww_client_for
from gateway.store import attempts, exact_links, orders
from gateway.store.attempts import SyncAttempt
from gateway.store.integrations import Integration, get_integration, get_integration_or_raise, list_vat_mappings
from gateway.store.orders import OrderSync

__all__ = [
    "JOB_MAX_TRIES",
    "MAX_TRIES",
    "BookingServices",
    "book_order",
    "resume_orders",
    "retry_delay",
    "services_from_context",
    "sync_order",
]

logger = logging.getLogger(__name__)

# Longer than the worker's JOB_TIMEOUT (120 s): a claim outlives the job that holds it, so a second worker can only
# take the order over once the first one is surely gone.
LEASE = timedelta(minutes=3)
# The lock around "find or create" of one account or item also outlives the job that holds it, so no second job
# creates while the first one's POST may still be in flight; a job waits for it at most LINK_LOCK_WAIT, then retries
# later rather than creating blindly. Held for a look-up and a create (normally well under a second).
LINK_LOCK_SECONDS = 150.0
LINK_LOCK_WAIT = 30.0
DIRECT_INVOICE = booking.DIRECT_SALES_INVOICE


class OrderReader(Protocol):
    async def get_order(self, number: str) -> MwwOrder: ...


@dataclass(frozen=True)
class BookingServices:
    """What the core needs: the database and a way to open each API client for an integration."""

    engine: AsyncEngine
    open_exact: Callable[[Integration], Awaitable[ExactClient]]
    open_shop: Callable[[Integration], Awaitable[OrderReader]]
    redis: Redis
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    clock: Clock | None = None  # times the item step (None: the rate governor's clock)
    lock_secret: str = ""  # keys the hash of e-mail addresses in lock names (SECRET_KEY; docs/security.md)


async def sync_order(ctx: dict[str, Any], order_sync_id: int) -> str:
    """arq job `sync_order`: book one order sync. Arguments are ids only."""
    return await book_order(
        services_from_context(ctx), order_sync_id, job_id=ctx.get("job_id"), job_try=int(ctx.get("job_try") or 1)
    )


def services_from_context(ctx: dict[str, Any]) -> BookingServices:
    """The real clients: the shop token and Exact token custody from the database, the worker's pooled HTTP client."""
    engine, settings, cipher, http, redis = ctx["engine"], ctx["settings"], ctx["cipher"], ctx["http"], ctx["redis"]

    async def open_exact(integration: Integration) -> ExactClient:
        return await exact_client_for(
            engine=engine, settings=settings, cipher=cipher, http=http, redis=redis, integration=integration
        )

    async def open_shop(integration: Integration) -> OrderReader:
        async with engine.connect() as conn:
            return await mww_client_for(
                conn, settings=settings, cipher=cipher, http=http, integration_id=integration.id, redis=redis
            )

    return BookingServices(
        engine=engine,
        open_exact=open_exact,
        open_shop=open_shop,
        redis=redis,
        lock_secret=str(settings.secret_key),
    )


async def book_order(
    services: BookingServices, order_sync_id: int, *, job_id: str | None = None, job_try: int = 1
) -> str:
    """Book one order sync once; returns what happened in words. Raises arq.Retry after a transient fault."""
    claim = await _claim(services, order_sync_id, job_id)
    if isinstance(claim, str):
        return claim
    token = bind(integration_id=claim.integration.id, order_sync_id=order_sync_id, order_number=claim.sync.order_number)
    try:
        return await _book(services, claim)
    except BookingError as e:
        return await give_up(
            services.engine, claim, e.kind, str(e), categories=e.categories, params=e.params, state=e.state
        )
    except CreationPaused as e:
        await continue_later(services.engine, claim, e)
    except AuthError as e:
        return await auth_lost(services.engine, claim, e)
    except TransientApiError as e:
        return await retry_later(services.engine, claim, e, job_try)
    except PermanentApiError as e:
        kind = INVOICE_PROCESSING if claim.document else EXACT_REFUSED if e.vendor == EXACT else "shop_refused"
        message = str(e)
        if claim.document:
            message = f"the invoice was created in Exact but could not be processed: {e}"
        return await give_up(services.engine, claim, kind, message, attention=claim.document is not None)
    finally:
        log_context.reset(token)


async def _claim(services: BookingServices, order_sync_id: int, job_id: str | None) -> BookingAttempt | str:
    async with services.engine.begin() as conn:
        sync = await orders.get_sync_for_job(conn, order_sync_id=order_sync_id)
        if sync is None:
            return f"skipped: order sync {order_sync_id} does not exist"
        if sync.state == "booked":
            return f"skipped: already booked as {sync.exact_document_number or sync.exact_document_id}"
        integration = await get_integration_or_raise(conn, integration_id=sync.integration_id)
        if not integration.is_active:
            return f"skipped: the integration is {integration.state}"
        claimed = await orders.claim_for_booking(
            conn, integration_id=integration.id, order_sync_id=sync.id, worker=services.worker, lease=LEASE
        )
        if not claimed:
            return f"skipped: order {sync.order_number} is {sync.state}" + (
                " by another worker" if sync.state == "booking" else ""
            )
        sync = await orders.get_sync_for_job(conn, order_sync_id=order_sync_id) or sync
        # Read after our own claim: attempts == 1 means no earlier claim ever happened, so there is no history.
        history = (
            await attempts.list_attempts(conn, integration_id=integration.id, order_sync_id=sync.id)
            if sync.attempts > 1
            else []
        )
        mappings = await list_vat_mappings(conn, integration_id=integration.id)
    return BookingAttempt(sync, integration, mappings, ambiguous=_ambiguous(sync.attempts - 1, history), job_id=job_id)


def _ambiguous(earlier_claims: int, history: list[SyncAttempt]) -> bool:
    """Whether an earlier attempt may have created the document: it sent it, or it died without a record."""
    if len(history) < earlier_claims:
        return True
    return any(isinstance(a.request_summary, dict) and a.request_summary.get("sent") for a in history)


async def _book(services: BookingServices, attempt: BookingAttempt) -> str:
    integration, sync, settings = attempt.integration, attempt.sync, attempt.settings
    attempt.exact = exact = await services.open_exact(integration)  # raises AuthError before reading the shop
    attempt.calls_before = exact.calls
    shop = await services.open_shop(integration)
    attempt.order = order = await shop.get_order(sync.order_number)
    mark = booking_mark(integration.id, order.number)
    if attempt.ambiguous:
        found = await find_documents(
            exact,
            document_type=settings.insertion_type,
            your_ref=order.number,
            mark=mark,
            journal=settings.journal_code,
        )
        existing = own_document(found, order_number=order.number, mark=mark)  # raises NeedsReview when unsure
        if existing is not None:
            attempt.document = existing
            return await _complete(services, attempt, exact, order, existing, "adopted")
    attempt.plan = plan = await _plan(services, attempt, exact, order)
    async with services.engine.connect() as conn:
        known = await exact_links.get_links(conn, integration_id=integration.id, keys=link_keys(plan, settings))
    known = await lookups.shared_links(
        engine=services.engine,
        redis=services.redis,
        client=exact,
        integration_id=integration.id,
        plan=plan,
        settings=settings,
        known=known,
    )
    gate = _LinkLocks(services.engine, services.redis, integration.id, services.lock_secret)
    resolution = await resolve_refs(exact, plan, settings, known, gate, creation_budget(exact, services.clock))
    attempt.used_links, attempt.learned = resolution.used, resolution.learned
    document = build_document(plan, settings, resolution.refs, mark=mark)
    attempt.summary = summarize(document)
    attempt.sent = True
    try:
        created = await create_document(exact, document)
    except PermanentApiError as e:
        _refused(attempt, e)
        raise
    attempt.document = created
    return await _complete(services, attempt, exact, order, created, "booked")


async def _plan(
    services: BookingServices, attempt: BookingAttempt, exact: ExactClient, order: MwwOrder
) -> booking.BookingPlan:
    """The booking plan, checked against the rates of the Exact VAT codes it maps to and the currencies its journal
    takes (cached look-ups)."""
    integration = attempt.integration
    codes = await vat_codes(engine=services.engine, client=exact, integration_id=integration.id, redis=services.redis)
    return plan_booking(
        order,
        attempt.settings,
        attempt.mappings,
        home_country=integration.shop_country or "NL",
        credited_reference=await _credited_reference(services, exact, order, integration.id),
        vat_rates={code.code: code.percent for code in codes},
        journal=await _journal_currency(services, exact, attempt),
    )


async def _journal_currency(
    services: BookingServices, exact: ExactClient, attempt: BookingAttempt
) -> booking.JournalCurrency | None:
    """The configured sales journal's currency rule, None when the document has no journal or Exact did not say."""
    code = attempt.settings.journal_code.strip()
    if attempt.settings.insertion_type == booking.SALES_ORDER or not code:
        return None
    journals = await sales_journals(
        engine=services.engine, client=exact, integration_id=attempt.integration.id, redis=services.redis
    )
    journal = next((j for j in journals if j.code == code), None)
    if journal is None or journal.currency is None or journal.allows_other_currencies is None:
        return None
    return booking.JournalCurrency(code, journal.currency, journal.allows_other_currencies)


def link_lock_name(integration_id: int, kind: str, key: str, *, secret: str) -> str:
    """The Redis key of the lock for one link; the key (an e-mail address, a SKU) appears only as an HMAC keyed
    with `secret`, so nobody holding the keyspace can test it against a list of addresses."""
    digest = hmac.new(secret.encode(), key[: exact_links.KEY_MAX].encode(), hashlib.sha256).hexdigest()[:32]
    return f"exact:create:{integration_id}:{kind}:{digest}"


@dataclass(frozen=True)
class _LinkLocks:
    """exact_documents.LinkGate for the job: a Redis lock per (integration, kind, key) across workers and processes;
    the stored links are re-read and written each in its own short database step."""

    engine: AsyncEngine
    redis: Redis
    integration_id: int
    secret: str

    @contextlib.asynccontextmanager
    async def hold(self, key: LinkKey) -> AsyncIterator[None]:
        kind = key[0]
        async with redis_gate(
            self.redis,
            link_lock_name(self.integration_id, *key, secret=self.secret),
            lease=LINK_LOCK_SECONDS,
            wait=LINK_LOCK_WAIT,
            what=f"the {kind} creation lock",
            busy=f"another booking is still creating this {kind} in Exact",
            vendor=EXACT,
        ):
            yield

    async def stored(self, keys: Sequence[LinkKey]) -> dict[LinkKey, str]:
        async with self.engine.connect() as conn:
            return await exact_links.get_links(conn, integration_id=self.integration_id, keys=keys)

    async def save(self, links: Mapping[LinkKey, str]) -> None:
        async with self.engine.begin() as conn:
            await exact_links.save_links(conn, integration_id=self.integration_id, links=links)


def _refused(attempt: BookingAttempt, error: PermanentApiError) -> None:
    """Exact refused the document: its stored ids may be stale; a direct sales invoice may not exist in this edition."""
    attempt.stale_links = True
    if attempt.settings.insertion_type == booking.DIRECT_SALES_INVOICE:
        raise BookingError(
            booking.SETTINGS,  # resumes when the insertion type is changed
            f"Exact refused the direct sales invoice ({error}). Direct sales invoices exist only in Exact Online for "
            "Wholesale & Distribution or Manufacturing (Plus, Professional or Premium); if your edition lacks them, "
            "choose sales invoice or sales entry in the settings",
        ) from error


async def _complete(
    services: BookingServices,
    attempt: BookingAttempt,
    exact: ExactClient,
    order: MwwOrder,
    document: ExactDocument,
    outcome: str,
) -> str:
    """Process the invoice when the settings ask for it, then mark the order booked with its attempt."""
    settings = attempt.settings
    payload = finalize_payload(
        settings.insertion_type, order.date, settings, document.id, initial_export=attempt.sync.initial_export
    )
    attempt.response = f"{document.document_type} {document.number or document.id}"
    if payload is not None and not document.is_processed:
        printed = await finalize_invoice(exact, payload)
        attempt.response += "; processed" + (", e-mailed to the customer" if printed.email_sent else "")
        for problem in (printed.document_error, printed.email_error):
            attempt.response += f"; Exact: {problem}" if problem else ""
    async with services.engine.begin() as conn:
        await record_progress(conn, attempt)
        await orders.mark_booked(
            conn,
            integration_id=attempt.integration.id,
            order_sync_id=attempt.sync.id,
            document_type=document.document_type,
            exact_document_id=document.id,
            exact_document_number=document.number or None,
        )
        await record_attempt(conn, attempt, outcome)
    logger.info("order %s %s: %s", attempt.sync.order_number, outcome, attempt.response)
    return f"{outcome}: order {attempt.sync.order_number} as {attempt.response}"


async def _credited_reference(
    services: BookingServices, exact: ExactClient, order: MwwOrder, integration_id: int
) -> str:
    """For a credit order: the Exact number of the original order's booking, "" until it is booked (an id is no number
    a reader can look up; the number of a processed invoice arrives later, docs/booking.md "Credit orders")."""
    if not order.is_credit:
        return ""
    async with services.engine.connect() as conn:
        original = await orders.get_sync_by_number(
            conn, integration_id=integration_id, order_number=order.credited_order_number
        )
    if original is not None and original.state in ("queued", "booking", "retrying"):
        # The original is on its way: the credit waits for it, so its description can name the original's number.
        raise TransientApiError(
            f"order {order.number} credits order {order.credited_order_number}, which is not booked yet; "
            "the credit order follows it",
            vendor="The original order",
            retry_after=60,
        )
    if original is None or original.state != "booked" or not original.exact_document_id:
        return ""
    if original.exact_document_number or original.document_type not in (booking.SALES_INVOICE, DIRECT_INVOICE):
        return original.exact_document_number or ""
    # A processed invoice's number is read back in batches later (jobs/invoice_numbers.py); the credit needs it now.
    number = (await find_invoice_numbers(exact, [original.exact_document_id])).get(original.exact_document_id.lower())
    if not number:
        return ""  # a draft invoice has no number yet
    async with services.engine.begin() as conn:
        await orders.set_document_number(
            conn,
            integration_id=integration_id,
            order_sync_id=original.id,
            exact_document_id=original.exact_document_id,
            number=number,
        )
    return number


async def resume_orders(
    engine: AsyncEngine, arq: ArqRedis, *, integration_id: int, error_kind: str | Iterable[str]
) -> int:
    """Re-queue an integration's orders that stopped for `error_kind` (failed or needing attention), after the
    cause was fixed: a mapping saved, a setting changed, Exact reconnected. Returns how many were queued; enqueues
    after the commit, with a new job generation per order.
    """
    kinds = {error_kind} if isinstance(error_kind, str) else set(error_kind)
    async with engine.begin() as conn:
        integration = await get_integration(conn, integration_id=integration_id)
        if integration is None:
            return 0
        candidates: list[OrderSync] = []
        page, offset = 500, 0
        while True:
            syncs, total = await orders.list_syncs(
                conn, integration_id=integration_id, states=("failed", "needs_attention"), limit=page, offset=offset
            )
            candidates += [s for s in syncs if s.error_kind in kinds]
            offset += page
            if offset >= total:
                break
        queued = []
        for sync in candidates:
            generation = await orders.request_retry(conn, integration_id=integration_id, order_sync_id=sync.id)
            if generation is not None:
                queued.append((sync.id, generation))
    for order_sync_id, generation in queued:
        await enqueue_sync(
            arq,
            integration_id=integration_id,
            order_sync_id=order_sync_id,
            generation=generation,
            priority=integration.is_premium,
        )
    return len(queued)
