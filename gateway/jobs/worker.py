"""The arq worker: its context, start-up/shut-down, the explicit lists of functions and cron jobs, and the process
that runs the two queues' workers and starts each again after a Redis outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
import time
from collections.abc import Callable
from typing import Any, TypedDict

import httpx
import redis.exceptions
from arq.connections import ArqRedis
from arq.cron import CronJob, cron
from arq.worker import Function, Worker, func
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.clients.http import http_client
from gateway.crypto import Cipher
from gateway.db import create_engine
from gateway.exact_auth import refresh_idle_exact_tokens
from gateway.jobs.books_check import MAX_TRIES as BOOKS_CHECK_TRIES, books_check, schedule_books_checks
from gateway.jobs.initial_export import RUN_INITIAL_EXPORT, run_initial_export
from gateway.jobs.invoice_numbers import backfill_invoice_numbers
from gateway.jobs.outbox import purge_outbox
from gateway.jobs.poll import POLL_JOB_TIMEOUT, POLL_SHOP, SCHEDULE_EVERY, poll_shop, poll_shops
from gateway.jobs.reconcile import reconcile_orders
from gateway.jobs.retention import prune_history
from gateway.jobs.sync_order import JOB_MAX_TRIES, sync_order
from gateway.logs import bind, log_context
from gateway.metrics import JOB_DURATION, REDIS_RECONNECTS, job_name, serve_worker_metrics
from gateway.notifications import notify_owners
from gateway.queue import (
    BOOKS_CHECK,
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
MAX_JOBS = 10  # jobs one queue's worker runs at once (arq's default, stated)
# arq starts new jobs only once per poll: at its default 0.5 s a queue's worker ran at most MAX_JOBS / 0.5 = 20 jobs
# a second, however short they were (bench poller, docs/operations.md). An idle poll is one ZRANGEBYSCORE.
POLL_DELAY = 0.05
# A worker that lost Redis is started again after 0.5 s, 1 s, 2 s, ... at most 30 s (each with jitter).
RESTART_DELAY_MIN = 0.5
RESTART_DELAY_MAX = 30.0
# What an unreachable Redis raises (connection refused or reset, timeouts, Redis still loading its AOF) ...
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
# ... except a refused password or ACL: configuration, not an outage.
REDIS_REFUSED = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)


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
    """Open what ctx does not hold yet (the engine, cipher and HTTP client); idempotent."""
    settings: Settings = ctx["settings"]
    if "engine" not in ctx:
        # Both queues' jobs share it: a connection for each job that may run at once (MAX_JOBS per queue).
        ctx["engine"] = create_engine(settings.database_url, pool_size=2 * MAX_JOBS)
    if "cipher" not in ctx:
        ctx["cipher"] = Cipher(settings.encryption_keys)
    if "http" not in ctx:
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
    return [
        func(sync_order, name=SYNC_ORDER, max_tries=JOB_MAX_TRIES),
        func(run_initial_export, name=RUN_INITIAL_EXPORT, max_tries=10),
        # No result kept, so the job id is free for the next round; a crashed round is the scheduler's to repeat.
        func(poll_shop, name=POLL_SHOP, max_tries=1, keep_result=0, timeout=POLL_JOB_TIMEOUT),
        # A month's books check (docs/books-check.md); no result kept, so "check again" can queue it at once.
        func(books_check, name=BOOKS_CHECK, max_tries=BOOKS_CHECK_TRIES, keep_result=0, timeout=3600),
    ]


def cron_jobs(settings: Settings) -> list[CronJob]:
    return [
        # Claims the shops whose next_poll_at (service level, back-off) passed; poll_shop jobs do the polling.
        cron(poll_shops, name="poll_shops", second=set(range(0, 60, SCHEDULE_EVERY)), timeout=60, run_at_startup=True),
        cron(reconcile_orders, name="reconcile_orders", second={30}, timeout=120, run_at_startup=True),
        cron(notify_owners, name="notify_owners", minute=set(range(0, 60, 5)), run_at_startup=False),
        # Processed invoices' numbers, read back in batches while the budget has room (docs/booking.md).
        cron(
            backfill_invoice_numbers,
            name="backfill_invoice_numbers",
            minute=set(range(2, 60, 5)),
            second={15},
            timeout=240,
            run_at_startup=False,
        ),
        # Old notices and attempts of settled orders, in small batches (RETENTION_DAYS, docs/operations.md).
        cron(prune_history, name="prune_history", minute={43}, second={0}, timeout=600, run_at_startup=False),
        # Mail older than OUTBOX_RETENTION_DAYS leaves the outbox (docs/security.md).
        cron(purge_outbox, name="purge_outbox", hour={4}, minute={7}, second={0}, run_at_startup=False),
        # Exact refresh tokens die after 30 idle days: renew quiet connections daily (docs/exact.md).
        cron(refresh_idle_exact_tokens, name="refresh_idle_exact_tokens", hour={3}, minute={17}, run_at_startup=False),
        # Last month's books check for owners who asked for it, on the 1st (UTC 05:30, after the Dutch month ended).
        cron(schedule_books_checks, name="schedule_books_checks", day={1}, hour={5}, minute={30}, second={0}),
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
    supervised: bool = False,
) -> Worker:
    """Build the worker; tests pass `redis_pool`, `burst=True` and resources in `ctx`.

    `supervised` (run_workers): the caller owns the resources in ctx and retries a lost Redis itself, so the worker
    neither closes them on shutdown nor retries its first connection (arq would log and sleep 5 times)."""
    connection = None if redis_pool else redis_settings(settings.redis_url)
    if connection is not None and supervised:
        connection = dataclasses.replace(connection, conn_retries=0)
    return Worker(
        functions=functions(),
        cron_jobs=cron_jobs(settings) if with_cron else [],
        queue_name=queue_name,
        redis_settings=connection,
        redis_pool=redis_pool,
        burst=burst,
        poll_delay=POLL_DELAY,
        on_startup=startup,
        on_shutdown=None if supervised else shutdown,
        on_job_start=on_job_start,
        on_job_end=on_job_end,
        handle_signals=handle_signals,
        job_completion_wait=JOB_COMPLETION_WAIT,
        job_timeout=JOB_TIMEOUT,
        max_jobs=MAX_JOBS,
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


def restart_delay(attempt: int) -> float:
    """Capped exponential back-off with jitter: 0.5 s, 1 s, 2 s, ... 30 s, each cut by up to half at random."""
    base = RESTART_DELAY_MIN * 2.0 ** min(attempt, 16)  # the exponent is capped too: a long outage counts on
    return min(RESTART_DELAY_MAX, base) * random.uniform(0.5, 1.0)  # noqa: S311


class QueueRunner:
    """The arq worker of one queue, started again after each Redis outage until the process is told to stop.

    Every start is a fresh arq `Worker`: one whose main loop failed in the middle of taking a job keeps that job slot
    for good (arq's `start_jobs` counts it before talking to Redis), and a fresh one writes its health-check key at
    once. The engine, cipher and HTTP client in `resources` are opened and closed by the caller (run_workers), once
    for both queues' runners and all their workers. A worker that lost Redis while jobs ran is kept until they finish
    (they use its Redis pool) and counted in the SIGTERM wait like the current one.
    """

    def __init__(
        self, settings: Settings, resources: dict[str, Any], *, queue_name: str, with_cron: bool, burst: bool = False
    ) -> None:
        self.settings = settings
        self.queue_name = queue_name
        self.with_cron = with_cron
        self.burst = burst
        self.ctx = resources
        self.workers: list[Worker] = []  # the current one last
        self.stopping = False
        self._wake = asyncio.Event()

    def stop(self, signum: signal.Signals) -> None:
        """Stop taking jobs, let running ones finish (up to JOB_COMPLETION_WAIT), cut a back-off wait short."""
        self.stopping = True
        self._wake.set()
        for worker in self.workers:
            worker.handle_sig_wait_for_completion(signum)

    async def run(self, *, on_failure: Callable[[], object] | None = None) -> None:
        """Run until stopped (or, in burst mode, until the queue is empty). A failure that is not a Redis outage is
        raised, after `on_failure` (run_workers stops the other queue's runner with it) and the usual closing."""
        try:
            await self._run()
        except Exception:
            if on_failure is not None:
                on_failure()
            raise
        finally:
            await self._close_workers()

    async def _run(self) -> None:
        attempt = 0
        while not self.stopping:
            await self._close_idle_retired()
            worker = create_worker(
                self.settings,
                queue_name=self.queue_name,
                burst=self.burst,
                ctx=self.ctx,
                with_cron=self.with_cron,
                handle_signals=False,
                supervised=True,
            )
            self.workers.append(worker)
            started = time.monotonic()
            try:
                await worker.async_run()
                return  # burst: the queue is empty
            except asyncio.CancelledError:
                if self.stopping:  # the signal's wait is over and arq cancelled the main task
                    return
                raise
            except REDIS_REFUSED:
                raise
            except REDIS_DOWN as exc:
                if self.stopping:
                    return
                if time.monotonic() - started > RESTART_DELAY_MAX:
                    attempt = 0  # it had been running: this is a new outage
                delay = restart_delay(attempt)
                attempt += 1
                # The exception text names host:port only; the URL (which may hold a password) is never logged.
                logger.warning(
                    "worker %s cannot reach Redis (%s: %s); starting it again in %.1f s",
                    self.queue_name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if not self.stopping:
                    REDIS_RECONNECTS.inc()

    async def _close_idle_retired(self) -> None:
        """Release the Redis pool of every earlier worker whose jobs are all done."""
        for worker in self.workers[:]:
            if not any(not t.done() for t in worker.tasks.values()):
                self.workers.remove(worker)
                await _close(worker, health_key=False)

    async def _close_workers(self) -> None:
        """Let jobs still running finish (up to JOB_COMPLETION_WAIT), cancel the rest, release every Redis pool."""
        running = [t for w in self.workers for t in w.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=JOB_COMPLETION_WAIT)
        for task in running:
            task.cancel()
        for worker in self.workers:
            await _close(worker, health_key=worker is self.workers[-1])
        self.workers.clear()


async def _close(worker: Worker, *, health_key: bool) -> None:
    """`Worker.close` without the on_shutdown hook (the runner owns ctx) and without failing when Redis is gone."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    pool: ArqRedis | None = worker.pool
    if pool is None:  # it never connected
        return
    try:
        if health_key:
            await pool.delete(worker.health_check_key)
    except REDIS_DOWN:
        pass
    finally:
        await pool.aclose(close_connection_pool=True)


async def run_workers(settings: Settings, *, burst: bool = False) -> None:
    """Run the priority-queue worker and the default-queue worker in this process until SIGTERM/SIGINT.

    On a signal both stop taking jobs and let running ones finish (up to JOB_COMPLETION_WAIT seconds) before exiting.
    A worker that loses Redis is started again after a back-off (QueueRunner); any other failure of one stops the
    other the same graceful way and is raised.
    """
    resources: dict[str, Any] = {"settings": settings}
    await startup(resources)  # one engine, cipher and HTTP client for both queues
    runners = [
        QueueRunner(settings, resources, queue_name=QUEUE_PRIORITY, with_cron=False, burst=burst),
        QueueRunner(settings, resources, queue_name=QUEUE_DEFAULT, with_cron=True, burst=burst),
    ]

    def stop(signum: signal.Signals) -> None:
        for runner in runners:
            runner.stop(signum)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    stop_metrics = None
    if settings.worker_metrics_port:
        stop_metrics = serve_worker_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
        logger.info("worker metrics on port %s", settings.worker_metrics_port)
    try:
        # Each runner ends on its own: one without running jobs stops at once, the other waits for its jobs.
        outcomes = await asyncio.gather(
            *(r.run(on_failure=lambda: stop(signal.SIGTERM)) for r in runners), return_exceptions=True
        )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if stop_metrics is not None:
            stop_metrics()
        await shutdown(resources)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
