"""Digest e-mails to shop owners: orders that failed, or a connection that needs consent again, with a link to fix it.

At most one digest per integration per DIGEST_INTERVAL, across any number of workers (a compare-and-set on
`integration.last_notified_at`). A digest lists only problems that are new since the previous one; a connection that
stays broken is repeated at most every CONNECTION_REMINDER. Mail goes through gateway.mail: without SMTP settings it
stays in the outbox and one log line says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.booking_reasons import failure_message
from gateway.clock import utcnow
from gateway.i18n import DEFAULT_LOCALE, LOCALES, N_, NP_, Message, translate
from gateway.mail import send_mail
from gateway.settings import Settings
from gateway.store.operator import DigestCandidate, claim_digest, list_digest_candidates, list_new_problems
from gateway.store.orders import OrderSync

logger = logging.getLogger(__name__)

DIGEST_INTERVAL = timedelta(hours=1)
FIRST_LOOKBACK = timedelta(hours=24)  # before the first digest, problems this recent count as new
CONNECTION_REMINDER = timedelta(hours=24)
ORDERS_LISTED = 20

# The digest's sentences, from the catalogues in the owner's language (gateway/locales).
SUBJECT = N_("Action needed: %(name)s")
INTRO = N_("The gateway between your Mijnwebwinkel shop and Exact Online needs your attention (%(name)s).")
EXACT_CONSENT = N_(
    "The connection to Exact Online has to be renewed: Exact no longer accepts it. Until you connect again, no orders "
    "are booked. Reconnect here:"
)
SHOP_REFUSED = N_("Mijnwebwinkel refused the shop token, so no new orders are picked up. Check the connection here:")
FIX = N_("See why and retry them here:")
FOOTER = N_("You receive at most one of these messages per hour, and only when something is new.")


def _orders_not_booked(total: int) -> Message:
    return NP_("%(n)s order could not be booked:", "%(n)s orders could not be booked:", total)


def _more(count: int) -> Message:
    return NP_("... and %(n)s more.", "... and %(n)s more.", count)


@dataclass(frozen=True)
class Digest:
    to: str
    subject: str
    body: str
    account_id: int


def fix_links(settings: Settings, integration_id: int, problems: Sequence[OrderSync] = ()) -> dict[str, str]:
    """Where the owner fixes each kind of problem (the customer pages' URLs); the history filtered to the problems."""
    base = f"{settings.public_url}/integrations/{integration_id}"
    states = {sync.state for sync in problems}
    history = f"{base}/history?state={states.pop()}" if len(states) == 1 else f"{base}/history"
    return {"exact": f"{base}/exact/connect", "shop": f"{base}/connections", "orders": history}


def compose_digest(
    settings: Settings,
    candidate: DigestCandidate,
    *,
    problems: list[OrderSync],
    total: int,
    connection: bool,
) -> Digest:
    """The digest mail in the owner's language. Order lines hold number, customer, and the failure's sentence."""
    locale = candidate.locale if candidate.locale in LOCALES else DEFAULT_LOCALE
    links = fix_links(settings, candidate.integration_id, problems)
    name = candidate.name or candidate.shop_name or f"#{candidate.integration_id}"
    parts = [translate(locale, INTRO, name=name)]
    if connection and candidate.exact_needs_consent:
        parts.append(f"{translate(locale, EXACT_CONSENT)}\n{links['exact']}")
    if connection and candidate.shop_refused:
        parts.append(f"{translate(locale, SHOP_REFUSED)}\n{links['shop']}")
    if problems:
        lines = [translate(locale, _orders_not_booked(total))]
        for sync in problems:
            error = translate(locale, failure_message(sync.error_kind, sync.error_params, sync.last_error))
            lines.append(f"- {sync.order_number} ({sync.customer_name or '-'}): {error}")
        if total > len(problems):
            lines.append(translate(locale, _more(total - len(problems))))
        lines.append(f"{translate(locale, FIX)}\n{links['orders']}")
        parts.append("\n".join(lines))
    parts.append(translate(locale, FOOTER))
    subject = translate(locale, SUBJECT, name=name)
    return Digest(candidate.account_email, subject, "\n\n".join(parts), candidate.account_id)


def _connection_due(candidate: DigestCandidate, *, now: datetime, new_orders: bool) -> bool:
    if not (candidate.exact_needs_consent or candidate.shop_refused):
        return False
    last = candidate.last_notified_at
    return new_orders or last is None or last <= now - CONNECTION_REMINDER


async def _prepare(engine: AsyncEngine, settings: Settings, candidate: DigestCandidate, now: datetime) -> Digest | None:
    """Compose the candidate's digest and claim the right to send it; None when there is nothing new or it lost."""
    since = candidate.last_notified_at or now - FIRST_LOOKBACK
    async with engine.begin() as conn:
        problems, total = await list_new_problems(
            conn, integration_id=candidate.integration_id, since=since, limit=ORDERS_LISTED
        )
        connection = _connection_due(candidate, now=now, new_orders=bool(problems))
        if not (problems or connection):
            return None
        claimed = await claim_digest(conn, integration_id=candidate.integration_id, now=now, interval=DIGEST_INTERVAL)
    if not claimed:
        return None
    return compose_digest(settings, candidate, problems=problems, total=total, connection=connection)


async def send_digests(engine: AsyncEngine, settings: Settings, *, now: datetime | None = None) -> int:
    """One pass over every integration: send the digests that are due. Returns how many were sent."""
    now = now or utcnow()
    async with engine.connect() as conn:
        candidates = await list_digest_candidates(
            conn, now=now, interval=DIGEST_INTERVAL, lookback=max(FIRST_LOOKBACK, CONNECTION_REMINDER)
        )
    sent = 0
    for candidate in candidates:
        digest = await _prepare(engine, settings, candidate, now)
        if digest is None:
            continue
        await send_mail(
            engine, settings, to=digest.to, subject=digest.subject, body=digest.body, account_id=digest.account_id
        )
        logger.info("digest sent for integration %s", candidate.integration_id)
        sent += 1
    return sent


async def notify_owners(ctx: dict[str, Any]) -> int:
    """Cron job: send the digests that are due."""
    return await send_digests(ctx["engine"], ctx["settings"])
