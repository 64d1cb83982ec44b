"""arq entry points of the books check: `books_check` (one integration, one month) and the monthly cron
`schedule_books_checks`, which on the first of the month queues last month's check for every integration whose owner
switched it on; a scheduled check mails its headline to the owner through the outbox.

Not `reconcile_orders` (jobs/reconcile.py, the sweep that re-enqueues lost booking jobs). Arguments are ids and a
month ("2026-11"); no secret. A transient failure (Exact or the shop away, bookings using the budget) is retried
later; a refusal (consent needed, a 4xx) ends the run with the row marked failed and its message.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.books_check.mail import headline_mail
from gateway.books_check.period import Month
from gateway.books_check.run import Outcome, build_services, run_books_check
from gateway.clients.errors import AuthError, PermanentApiError, TransientApiError
from gateway.clock import local_today
from gateway.mail import send_mail
from gateway.queue import enqueue_books_check
from gateway.store.accounts import get_account
from gateway.store.integrations import get_integration_or_raise, list_integrations

logger = logging.getLogger(__name__)

RETRY_AFTER = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4))
MAX_TRIES = len(RETRY_AFTER) + 1


async def books_check(ctx: dict[str, Any], integration_id: int, month: str, mail: bool = False) -> str:
    """Check one month of one integration's books; with `mail`, send the owner the headline."""
    services = build_services(
        engine=ctx["engine"], settings=ctx["settings"], cipher=ctx["cipher"], http=ctx["http"], redis=ctx["redis"]
    )
    try:
        outcome = await run_books_check(services, integration_id=integration_id, month=Month.parse(month))
    except TransientApiError as e:
        job_try = int(ctx.get("job_try") or 1)
        if job_try < MAX_TRIES:
            raise Retry(defer=RETRY_AFTER[job_try - 1]) from e
        return f"failed: {e}"
    except (AuthError, PermanentApiError) as e:
        return f"failed: {e}"
    if mail:
        await mail_headline(ctx, integration_id, outcome)
    return f"{outcome.report.headline.differences} difference(s) in {month}"


async def mail_headline(ctx: dict[str, Any], integration_id: int, outcome: Outcome) -> None:
    """The headline in the owner's language, with a link to the month's page (gateway/books_check/mail.py)."""
    engine, settings = ctx["engine"], ctx["settings"]
    async with engine.connect() as conn:
        integration = await get_integration_or_raise(conn, integration_id=integration_id)
        account = await get_account(conn, account_id=integration.account_id)
    if account is None:
        return
    link = f"{settings.public_url}/integrations/{integration_id}/books/{outcome.month}"
    name = integration.name or integration.shop_name or f"#{integration_id}"
    subject, body = headline_mail(outcome.report, month=str(outcome.month), shop=name, locale=account.locale, link=link)
    await send_mail(engine, settings, to=account.email, subject=subject, body=body, account_id=account.id)
    logger.info("books check headline of %s mailed for integration %s", outcome.month, integration_id)


async def schedule_books_checks(ctx: dict[str, Any]) -> str:
    """Cron, on the first of the month: queue last month's check where the owner asked for it."""
    return await queue_monthly_checks(ctx["engine"], ctx["redis"], today=local_today())


async def queue_monthly_checks(engine: AsyncEngine, redis: ArqRedis, *, today: date) -> str:
    """Queue the check of the month before `today`'s (Dutch calendar) for every active integration with Exact
    connected whose owner switched the monthly check on; each mails its headline."""
    month = Month(today.year, today.month).previous()
    async with engine.connect() as conn:
        integrations = [
            i
            for i in await list_integrations(conn)
            if i.is_active and i.settings.books_check_monthly and i.exact_connection == "connected"
        ]
    queued = 0
    for integration in integrations:
        queued += await enqueue_books_check(redis, integration_id=integration.id, month=str(month), mail=True)
    return f"queued {queued} books check(s) for {month}"
