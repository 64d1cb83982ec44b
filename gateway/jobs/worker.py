"""The arq worker: its context, start-up/shut-down, and the explicit lists of functions and cron jobs."""

from __future__ import annotations

import logging
import time
from typing import Any, TypedDict

import httpx
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function, Worker
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.logs import bind, log_context
from gateway.metrics import JOB_DURATION, job_name
from gateway.queue import (
    QUEUE_DEFAULT,
    QUEUE_PRIORITY,
    SYNC_ORDER,
    create_arq_pool,
    deserialize,
    redis_settings,
    serialize,
)
from gateway.settings import Settings

logger = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL = 30
# On SIGTERM the worker stops picking jobs and lets a running booking finish for up to this long.
JOB_COMPLETION_WAIT = 25
JOB_TIMEOUT = 120


class WorkerContext(TypedDict, total=False):
    """What every job receives besides its ids. Built in `startup`, closed in `shutdown`."""

    settings: Settings
    engine: AsyncEngine
    cipher: Cipher
    http: httpx.AsyncClient
    redis: ArqRedis
    job_id: str
    job_try: int
    worker_name: str


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx.setdefault("engine", create_engine(settings.database_url))
    ctx.setdefault("cipher", Cipher(settings.encryption_keys))
    if "http" not in ctx:
        from gateway.app import http_client

        ctx["http"] = http_client()
    logger.info("worker started")


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()
    await ctx["engine"].dispose()
    logger.info("worker stopped")


async def on_job_start(ctx: dict[str, Any]) -> None:
    job_id = str(ctx.get("job_id") or "")
    ids: dict[str, Any] = {"job_id": job_id}
    parts = job_id.split(":")
    if parts[0] == SYNC_ORDER and len(parts) >= 3:  # sync_order:{integration_id}:{order_sync_id}:{generation}
        ids.update(integration_id=parts[1], order_sync_id=parts[2])
    ctx["_log_token"] = bind(**ids)
    ctx["_started"] = time.perf_counter()


async def on_job_end(ctx: dict[str, Any]) -> None:
    started = ctx.pop("_started", None)
    if started is not None:
        JOB_DURATION.labels(job=job_name(ctx.get("job_id"))).observe(time.perf_counter() - started)
    token = ctx.pop("_log_token", None)
    if token is not None:
        log_context.reset(token)


def functions() -> list[Function | Any]:
    """Every job function the worker runs. Listed explicitly; nothing registers itself on import."""
    from arq.worker import func

    from gateway.jobs.initial_export import RUN_INITIAL_EXPORT, run_initial_export
    from gateway.jobs.sync_order import MAX_TRIES, sync_order

    return [
        func(sync_order, name=SYNC_ORDER, max_tries=MAX_TRIES),
        func(run_initial_export, name=RUN_INITIAL_EXPORT, max_tries=10),
    ]


def cron_jobs(settings: Settings) -> list[CronJob]:
    from arq.cron import cron

    from gateway.exact_auth import refresh_idle_exact_tokens
    from gateway.jobs.poll import poll_shops
    from gateway.jobs.reconcile import reconcile_orders
    from gateway.notifications import notify_owners

    return [
        # Every minute; each shop is polled when its own next_poll_at (service level, back-off) says so.
        cron(poll_shops, name="poll_shops", second={0}, timeout=240, run_at_startup=True),
        cron(reconcile_orders, name="reconcile_orders", second={30}, timeout=120, run_at_startup=True),
        cron(notify_owners, name="notify_owners", minute=set(range(0, 60, 5)), run_at_startup=False),
        # Exact refresh tokens die after 30 idle days: renew quiet connections daily (docs/exact.md).
        cron(refresh_idle_exact_tokens, name="refresh_idle_exact_tokens", hour={3}, minute={17}, run_at_startup=False),
    ]


def create_worker(
    settings: Settings,
    *,
    queue_name: str = QUEUE_DEFAULT,
    redis_pool: ArqRedis | None = None,
    burst: bool = False,
    ctx: dict[str, Any] | None = None,
    with_cron: bool = True,
    handle_signals: bool = True,
) -> Worker:
    """Build the worker; tests pass `redis_pool`, `burst=True` and resources in `ctx`."""
    return Worker(
        functions=functions(),
        cron_jobs=cron_jobs(settings) if with_cron else [],
        queue_name=queue_name,
        redis_settings=None if redis_pool else redis_settings(settings.redis_url),
        redis_pool=redis_pool,
        burst=burst,
        poll_delay=0.05 if burst else 0.5,
        on_startup=startup,
        on_shutdown=shutdown,
        on_job_start=on_job_start,
        on_job_end=on_job_end,
        handle_signals=handle_signals,
        job_completion_wait=JOB_COMPLETION_WAIT,
        job_timeout=JOB_TIMEOUT,
        keep_result=settings.job_keep_result_seconds,
        max_tries=10,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        ctx={"settings": settings, **(ctx or {})},
        job_serializer=serialize,
        job_deserializer=deserialize,
        allow_abort_jobs=False,
    )


async def create_pool(settings: Settings) -> ArqRedis:
    return await create_arq_pool(settings.redis_url)


async def run_workers(settings: Settings, *, burst: bool = False) -> None:
    """Run the priority-queue worker and the default-queue worker in this process until SIGTERM/SIGINT.

    On a signal both stop taking jobs and let running ones finish (up to JOB_COMPLETION_WAIT seconds) before exiting.
    """
    import asyncio
    import signal

    shared: dict[str, Any] = {}
    workers = [
        create_worker(
            settings, queue_name=QUEUE_PRIORITY, burst=burst, ctx=shared, with_cron=False, handle_signals=False
        ),
        create_worker(settings, queue_name=QUEUE_DEFAULT, burst=burst, ctx=shared, handle_signals=False),
    ]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: [w.handle_sig_wait_for_completion(s) for w in workers])
    try:
        # Each worker ends on its own: one without running jobs stops at once (arq cancels its main task), the other
        # waits for its jobs. A plain gather would let the first cancellation cut the second one's wait short.
        outcomes = await asyncio.gather(*(w.async_run() for w in workers), return_exceptions=True)
    finally:
        for w in workers:
            await w.close()
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
