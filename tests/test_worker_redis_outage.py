"""A `gateway worker` process rides out a Redis outage: it stays up while Redis is gone, takes jobs again once Redis
is back, exits 0 on SIGTERM (also in the middle of its back-off wait), and does not retry a Redis error that is not
an outage. Each test kills and restarts its own redis-server on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import metrics
from gateway.jobs.worker import restart_delay
from gateway.local_redis import PrivateRedis
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY, create_arq_pool
from gateway.settings import Settings
from tests.support.environment import ROOT, start_redis
from tests.support.servers import Sandboxes, booked_once, queue_orders, serve_sandboxes, worker_env

HEALTH_KEYS = [f"{queue}:health-check" for queue in (QUEUE_PRIORITY, QUEUE_DEFAULT)]
LOST_REDIS = "cannot reach Redis"  # the worker's warning line


class OutageRedis:
    """A private redis-server that the test kills and starts again, empty, on the same port (as after a crash)."""

    def __init__(self) -> None:
        self.servers: list[PrivateRedis] = [start_redis()]
        self.url = self.servers[0].url

    def kill(self) -> None:
        process = self.servers[-1].process
        process.kill()
        process.wait()

    def restart(self) -> None:
        self.servers.append(start_redis(self.servers[0].port))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    async def command(self, *args: str) -> Any:
        client = Redis.from_url(self.url)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()


@dataclasses.dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_dir: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self, level: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]
        return [e for e in found if level is None or e["level"] == level]

    def lost_redis(self) -> list[str]:
        return [e["event"] for e in self.events("warning") if LOST_REDIS in e["event"]]

    def reconnects(self) -> float:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.metrics_dir))
        return registry.get_sample_value("gateway_worker_redis_reconnects_total") or 0.0

    async def until(self, condition: Any, *, within: float, what: str) -> None:
        """Poll `condition` (sync or async) until true; fail at once if the worker exits meanwhile."""
        deadline = time.monotonic() + within
        while True:
            assert self.process.poll() is None, (
                f"the worker exited ({self.process.returncode}) waiting for {what}:\n{self.text()}"
            )
            outcome = condition()
            if asyncio.iscoroutine(outcome):
                outcome = await outcome
            if outcome:
                return
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.text()}"
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM, *, within: float = 30) -> float:
        """Send `sig`; the seconds until the process exited."""
        sent = time.monotonic()
        self.process.send_signal(sig)
        await asyncio.to_thread(self.process.wait, within)
        return time.monotonic() - sent


@pytest.fixture
def outage_redis() -> Iterator[OutageRedis]:
    redis = OutageRedis()
    yield redis
    redis.stop()


@pytest.fixture
def outage_sandboxes(settings: Settings, outage_redis: OutageRedis) -> Iterator[Sandboxes]:
    """Both sandboxes over HTTP, with settings that point the worker at the test's own Redis."""
    for served in serve_sandboxes(settings):
        yield dataclasses.replace(served, settings=dataclasses.replace(served.settings, redis_url=outage_redis.url))


@contextlib.contextmanager
def worker_process(outage_sandboxes: Sandboxes, tmp_path: Path) -> Iterator[WorkerProcess]:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    log = tmp_path / "worker.log"
    env = {**worker_env(outage_sandboxes), metrics.MULTIPROC_ENV: str(metrics_dir)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "worker"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield WorkerProcess(process, log, metrics_dir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def healthy(redis: OutageRedis) -> bool:
    """Both arq workers of the process have written their health-check key."""
    try:
        return bool(await redis.command("EXISTS", *HEALTH_KEYS) == len(HEALTH_KEYS))
    except (RedisError, OSError):
        return False


async def test_the_worker_outlives_a_redis_restart_and_books_an_order_queued_after_it(
    engine: AsyncEngine, outage_sandboxes: Sandboxes, outage_redis: OutageRedis, tmp_path: Path
) -> None:
    with worker_process(outage_sandboxes, tmp_path) as worker:
        await worker.until(lambda: healthy(outage_redis), within=30, what="the worker to start")

        outage_redis.kill()
        down = time.monotonic()
        await worker.until(lambda: len(worker.lost_redis()) >= 2, within=10, what="both arq workers to notice")
        await asyncio.sleep(max(0.0, down + 3 - time.monotonic()))  # down about 3 s: restarts fail meanwhile
        outage_redis.restart()

        # The restarted Redis is empty: the health-check keys are back only if the worker took up Redis again.
        await worker.until(lambda: healthy(outage_redis), within=20, what="the worker to take up Redis again")
        pool = await create_arq_pool(outage_redis.url)
        try:
            integration_id, sync_ids = await queue_orders(engine, pool, outage_sandboxes, 1, duplicates=False)
        finally:
            await pool.aclose()

        async def booked() -> bool:
            with contextlib.suppress(AssertionError):
                await booked_once(engine, outage_sandboxes, integration_id, sync_ids)
                return True
            return False

        await worker.until(booked, within=20, what="the order queued after the outage to be booked")
        await worker.stop(signal.SIGTERM)

    log = worker.text()
    assert worker.process.returncode == 0, log
    assert "Traceback" not in log, log
    warnings = worker.lost_redis()
    assert {QUEUE_PRIORITY, QUEUE_DEFAULT} <= {w.split()[1] for w in warnings}, warnings
    assert not any("redis://" in w for w in warnings), warnings
    assert worker.reconnects() >= 2  # at least one restart per arq worker


async def test_sigterm_while_redis_is_down_ends_the_worker_at_once_with_exit_0(
    outage_sandboxes: Sandboxes, outage_redis: OutageRedis, tmp_path: Path
) -> None:
    with worker_process(outage_sandboxes, tmp_path) as worker:
        await worker.until(lambda: healthy(outage_redis), within=30, what="the worker to start")
        outage_redis.kill()

        def both_waiting_long() -> bool:
            """Each arq worker's latest warning announced a back-off of 2 s or more (the third or fourth attempt)."""
            latest = {w.split()[1]: float(w.split(" again in ")[1].split()[0]) for w in worker.lost_redis()}
            return len(latest) == 2 and min(latest.values()) >= 2.0

        await worker.until(both_waiting_long, within=15, what="restarts that found no Redis")
        took = await worker.stop(signal.SIGTERM, within=10)

    log = worker.text()
    assert worker.process.returncode == 0, log
    assert took < 1.5, log  # well before either back-off would have ended
    assert "Traceback" not in log, log


async def test_a_redis_error_that_is_no_outage_still_ends_the_worker(
    outage_sandboxes: Sandboxes, outage_redis: OutageRedis, tmp_path: Path
) -> None:
    """A bug must not be retried forever: a key of the wrong type makes arq's main loop fail with a ResponseError."""
    await outage_redis.command("SET", QUEUE_DEFAULT, "not a sorted set")
    with worker_process(outage_sandboxes, tmp_path) as worker:
        await asyncio.to_thread(worker.process.wait, 30)

    log = worker.text()
    assert worker.process.returncode == 1, log
    assert "WRONGTYPE" in log, log
    assert not worker.lost_redis(), log


def test_the_back_off_doubles_from_half_a_second_up_to_30_s_even_after_a_very_long_outage() -> None:
    bounds = {0: (0.25, 0.5), 1: (0.5, 1.0), 5: (8.0, 16.0), 6: (15.0, 30.0), 100_000: (15.0, 30.0)}
    for attempt, (low, high) in bounds.items():
        delays = [restart_delay(attempt) for _ in range(200)]
        assert low <= min(delays), (attempt, min(delays))
        assert max(delays) <= high, (attempt, max(delays))
        assert max(delays) - min(delays) > (high - low) / 4  # jittered, so workers do not reconnect in lockstep


async def test_both_queues_share_one_engine_and_http_client(
    settings: Settings, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One set of resources per worker process, opened once and closed once, whatever the number of queues."""
    from gateway.jobs import worker as worker_module

    opened: list[AsyncEngine] = []
    real_create_engine = worker_module.create_engine

    def counting_create_engine(url: str, **options: Any) -> AsyncEngine:
        opened.append(real_create_engine(url, **options))
        return opened[-1]

    monkeypatch.setattr(worker_module, "create_engine", counting_create_engine)
    await worker_module.run_workers(settings, burst=True)
    assert len(opened) == 1
