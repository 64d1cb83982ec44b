"""Digest e-mails: failed orders or a connection needing consent, at most one per integration per hour."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import tables
from gateway.clock import utcnow
from gateway.notifications import send_digests
from gateway.settings import Settings
from gateway.store import notices, orders
from gateway.store.integrations import Integration, update_integration
from tests.support.factories import create_account, create_active_integration

pytestmark = pytest.mark.anyio


async def fail_order(
    engine: AsyncEngine, integration_id: int, number: str, message: str = "VAT code V21 unknown"
) -> None:
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration_id,
            order_number=number,
            status_id=2,
            source="poller",
            dedupe_key=number,
            selected_statuses=(2,),
        )
        assert outcome.order_sync_id is not None
        await orders.update_order_details(
            conn, integration_id=integration_id, order_sync_id=outcome.order_sync_id, customer_name="Jan Jansen"
        )
        await orders.mark_failed(
            conn,
            integration_id=integration_id,
            order_sync_id=outcome.order_sync_id,
            error_kind="validation",
            message=message,
        )


async def outbox(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.outbox_mail).order_by(tables.outbox_mail.c.id))).all()
    return [(r.to_address, r.subject, r.body) for r in rows]


async def shop(
    engine: AsyncEngine, *, email: str = "owner@shop.test", locale: str = "en", **columns: str
) -> Integration:
    async with engine.begin() as conn:
        account = await create_account(conn, email=email)
        await conn.execute(tables.account.update().where(tables.account.c.id == account).values(locale=locale))
        return await create_active_integration(conn, account_id=account, name="Bakery", **columns)


async def test_failed_orders_send_one_digest_with_the_errors_and_a_link_to_fix(
    engine: AsyncEngine, settings: Settings
) -> None:
    integration = await shop(engine)
    await fail_order(engine, integration.id, "1001")
    await fail_order(engine, integration.id, "1002", message="Journal 70 does not exist")

    assert await send_digests(engine, settings) == 1

    [(to, subject, body)] = await outbox(engine)
    assert to == "owner@shop.test"
    assert subject == "Action needed: Bakery"
    assert "2 orders could not be booked" in body
    # The failure's sentence from the catalogue, never the stored English detail.
    assert "- 1001 (Jan Jansen): This order could not be booked." in body
    assert "- 1002 (Jan Jansen): This order could not be booked." in body
    assert "Journal 70 does not exist" not in body
    assert f"http://testserver/integrations/{integration.id}/history?state=failed" in body
    async with engine.connect() as conn:
        notified = (
            await conn.execute(
                select(tables.integration.c.last_notified_at).where(tables.integration.c.id == integration.id)
            )
        ).scalar_one()
    assert notified is not None


async def test_a_second_digest_waits_an_hour_and_lists_only_new_failures(
    engine: AsyncEngine, settings: Settings
) -> None:
    integration = await shop(engine)
    await fail_order(engine, integration.id, "1001")
    start = utcnow()
    assert await send_digests(engine, settings, now=start) == 1

    await fail_order(engine, integration.id, "1002")
    assert await send_digests(engine, settings, now=start + timedelta(minutes=30)) == 0
    assert await send_digests(engine, settings, now=start + timedelta(minutes=61)) == 1
    assert await send_digests(engine, settings, now=start + timedelta(minutes=200)) == 0  # nothing new

    first, second = await outbox(engine)
    assert "1001" in first[2]
    assert "1002" in second[2]
    assert "1001" not in second[2]


async def test_exact_needing_consent_sends_a_reconnect_link_repeated_daily_not_hourly(
    engine: AsyncEngine, settings: Settings
) -> None:
    integration = await shop(engine, exact_connection="reconnect_needed")
    start = utcnow()

    assert await send_digests(engine, settings, now=start) == 1
    assert await send_digests(engine, settings, now=start + timedelta(hours=2)) == 0
    assert await send_digests(engine, settings, now=start + timedelta(hours=25)) == 1

    mails = await outbox(engine)
    assert len(mails) == 2
    assert f"http://testserver/integrations/{integration.id}/exact/connect" in mails[0][2]
    assert "could not be booked" not in mails[0][2]


async def test_a_refused_shop_token_points_to_the_connections_page(engine: AsyncEngine, settings: Settings) -> None:
    integration = await shop(engine, shop_connection="error")

    assert await send_digests(engine, settings) == 1

    [(_, _, body)] = await outbox(engine)
    assert "Mijnwebwinkel refused the shop token" in body
    assert f"/integrations/{integration.id}/connections" in body


async def test_digest_is_in_the_owners_language(engine: AsyncEngine, settings: Settings) -> None:
    integration = await shop(engine, locale="nl")
    await fail_order(engine, integration.id, "1001")

    assert await send_digests(engine, settings) == 1

    [(_, subject, body)] = await outbox(engine)
    assert subject == "Actie nodig: Bakery"
    assert "1 bestelling kon niet geboekt worden" in body
    assert "- 1001 (Jan Jansen): Deze bestelling kon niet geboekt worden." in body


async def test_no_digest_without_problems_old_problems_or_unfinished_setup(
    engine: AsyncEngine, settings: Settings
) -> None:
    healthy = await shop(engine, email="a@shop.test")
    in_setup = await shop(engine, email="b@shop.test", state="setup", exact_connection="reconnect_needed")
    await fail_order(engine, in_setup.id, "1")
    old = await shop(engine, email="c@shop.test")
    await fail_order(engine, old.id, "2")
    async with engine.begin() as conn:
        await update_integration(conn, integration_id=healthy.id, last_notified_at=utcnow() - timedelta(days=3))

    # Two days later, the failure of `old` is no longer new for a first digest.
    assert await send_digests(engine, settings, now=utcnow() + timedelta(days=2)) == 0
    assert await outbox(engine) == []


async def test_concurrent_passes_send_one_digest(engine: AsyncEngine, settings: Settings) -> None:
    from gateway.db import create_engine

    integration = await shop(engine)
    await fail_order(engine, integration.id, "1001")
    other = create_engine(settings.database_url)
    try:
        now: datetime = utcnow()
        sent = await asyncio.gather(*(send_digests(e, settings, now=now) for e in (engine, other, engine, other)))
    finally:
        await other.dispose()

    assert sum(sent) == 1
    assert len(await outbox(engine)) == 1


async def test_without_smtp_the_digest_stays_in_the_outbox_with_a_log_line(
    engine: AsyncEngine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    integration = await shop(engine)
    await fail_order(engine, integration.id, "1001")

    with caplog.at_level("INFO"):
        assert await send_digests(engine, settings) == 1

    assert settings.smtp_host == ""
    assert any("no SMTP_HOST" in r.getMessage() for r in caplog.records)
    async with engine.connect() as conn:
        sent = (await conn.execute(select(tables.outbox_mail.c.sent))).scalars().all()
    assert sent == [False]


async def test_needs_attention_orders_link_to_their_own_history_filter(engine: AsyncEngine, settings: Settings) -> None:
    integration = await shop(engine)
    async with engine.begin() as conn:
        outcome = await notices.record_notice(
            conn,
            integration_id=integration.id,
            order_number="77",
            status_id=2,
            source="poller",
            dedupe_key="77",
            selected_statuses=(2,),
        )
        assert outcome.order_sync_id is not None
        await orders.mark_needs_attention(
            conn,
            integration_id=integration.id,
            order_sync_id=outcome.order_sync_id,
            error_kind="unmapped_vat",
            message="map VAT category OSS-DE-19",
        )

    assert await send_digests(engine, settings) == 1

    [(_, _, body)] = await outbox(engine)
    assert "- 77 (-): This order has a kind of VAT that has no Exact VAT code yet." in body
    assert f"/integrations/{integration.id}/history?state=needs_attention" in body


async def test_the_worker_runs_the_digest_pass_as_a_cron_job(engine: AsyncEngine, settings: Settings) -> None:
    from gateway.jobs.worker import cron_jobs
    from gateway.notifications import notify_owners

    job = next(c for c in cron_jobs(settings) if c.name == "notify_owners")
    assert job.minute == set(range(0, 60, 5))
    integration = await shop(engine)
    await fail_order(engine, integration.id, "1001")

    assert await notify_owners({"engine": engine, "settings": settings}) == 1
    assert len(await outbox(engine)) == 1
