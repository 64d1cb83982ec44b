"""The books check as a job: on the first of the month last month's check is queued for owners who asked for it, the
job stores the report and mails the headline (in the owner's language, amounts with Babel) through the outbox, and a
transient failure is retried later."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.crypto import Cipher
from gateway.jobs.books_check import books_check, queue_monthly_checks
from gateway.queue import enqueue_books_check
from gateway.settings import Settings
from gateway.store import books_checks
from gateway.store.integrations import save_settings, update_integration
from gateway.store.outbox import list_mail
from tests.support.books_month import MONTH, BooksMonth, books_month
from tests.support.factories import create_login

OWNER = "eigenaar@books.test"


@pytest.fixture
async def booked_month(engine: AsyncEngine, redis: ArqRedis, settings: Settings):  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        owner = await create_login(conn, email=OWNER, locale="nl")
    async with books_month(engine, redis, settings, account_id=owner) as box:
        for number in (9201, 9202):
            box.add_order(number)
            await box.book(number)
        yield box


def job_context(booked_month: BooksMonth, job_try: int = 1) -> dict[str, Any]:
    settings = booked_month.settings
    return {
        "engine": booked_month.engine,
        "settings": settings,
        "cipher": Cipher(settings.encryption_keys),
        "http": booked_month.http,
        "redis": booked_month.redis,
        "job_try": job_try,
    }


async def test_the_first_of_the_month_queues_last_months_check_for_owners_who_asked(
    booked_month: BooksMonth, redis: ArqRedis
) -> None:
    assert (
        await queue_monthly_checks(booked_month.engine, redis, today=date(2026, 11, 1))
        == "queued 0 books check(s) for 2026-10"
    )
    async with booked_month.engine.begin() as conn:
        await save_settings(
            conn,
            integration_id=booked_month.integration.id,
            settings=booked_month.integration.settings.replace(books_check_monthly=True),
        )
    summary = await queue_monthly_checks(booked_month.engine, redis, today=date(2026, 11, 1))
    assert summary == "queued 1 books check(s) for 2026-10"
    assert await redis.exists(f"arq:job:books_check:{booked_month.integration.id}:2026-10")
    async with booked_month.engine.begin() as conn:
        await update_integration(conn, integration_id=booked_month.integration.id, state="paused")
    assert (await queue_monthly_checks(booked_month.engine, redis, today=date(2026, 12, 1))).startswith("queued 0")


async def test_a_scheduled_check_mails_its_headline_in_the_owners_language(booked_month: BooksMonth) -> None:
    booked_month.change_amount(9202, "0.10")

    result = await books_check(job_context(booked_month), booked_month.integration.id, str(MONTH), True)

    assert result == "1 difference(s) in 2026-10"
    async with booked_month.engine.connect() as conn:
        mails = await list_mail(conn)
        stored = await books_checks.get_books_check(conn, integration_id=booked_month.integration.id, month=str(MONTH))
    assert stored is not None
    assert stored.state == "done"
    (mail,) = [m for m in mails if m.to_address == OWNER]
    assert mail.subject.startswith("Controle 2026-10")
    assert "1 verschil" in mail.body
    assert "€" in mail.body
    assert "," in mail.body.split("Totaal in de winkel: ")[1].split(";")[0]  # a Dutch decimal comma
    assert f"/integrations/{booked_month.integration.id}/books/2026-10" in mail.body
    assert "Jan Jansen" not in mail.body  # no customer data in the mail


async def test_a_check_that_meets_an_unreachable_exact_is_retried_later(booked_month: BooksMonth) -> None:
    booked_month.exact_app.state.sandbox.faults_enabled = True
    booked_month.exact_app.state.sandbox.faults.fail_next = 5

    with pytest.raises(Retry):
        await books_check(job_context(booked_month), booked_month.integration.id, str(MONTH))
    last_try = await books_check(job_context(booked_month, job_try=4), booked_month.integration.id, str(MONTH))
    assert last_try.startswith("failed: ")
    async with booked_month.engine.connect() as conn:
        stored = await books_checks.get_books_check(conn, integration_id=booked_month.integration.id, month=str(MONTH))
    assert stored is not None
    assert stored.state == "failed"
    assert stored.error
    assert "token" not in stored.error.lower()


async def test_a_queued_check_runs_on_the_worker(booked_month: BooksMonth, make_worker: Any) -> None:
    assert await enqueue_books_check(
        booked_month.redis, integration_id=booked_month.integration.id, month=str(MONTH), mail=True
    )
    assert not await enqueue_books_check(
        booked_month.redis, integration_id=booked_month.integration.id, month=str(MONTH)
    )

    worker = make_worker(
        settings=booked_month.settings, http=booked_month.http, cipher=Cipher(booked_month.settings.encryption_keys)
    )
    await worker.run_check()

    async with booked_month.engine.connect() as conn:
        stored = await books_checks.get_books_check(conn, integration_id=booked_month.integration.id, month=str(MONTH))
        mails = await list_mail(conn)
    assert stored is not None
    assert stored.report is not None
    assert (stored.state, stored.report.headline.orders, stored.report.headline.differences) == ("done", 2, 0)
    assert [m.subject for m in mails if m.to_address == OWNER] == ["Controle 2026-10: Test shop"]
