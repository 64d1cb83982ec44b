"""A bounded async load generator: a fixed number of httpx connections sending POSTs at a target rate.

Request i is due at `start + i / rate`; `concurrency` senders take the next due request in turn, so the achieved rate
falls below the target when the server (or this client, on a shared 2-core machine) cannot keep up: the result
reports both, never the target as if achieved. Bounded by count and by time; refuses anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

Request = tuple[str, bytes, dict[str, str]]  # url, body, headers


@dataclass
class LoadResult:
    target_rate: float
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # transport errors by exception name
    latencies: list[float] = field(default_factory=list)  # seconds, send to full response
    duration: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.duration if self.duration else 0.0

    @property
    def errors(self) -> int:
        """Transport failures and every answer other than the expected 202."""
        return sum(self.failures.values()) + sum(n for status, n in self.statuses.items() if status != 202)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _loopback_only(url: str) -> None:
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"the load generator only sends to 127.0.0.1, not {urlsplit(url).hostname}")


async def run_load(
    make_request: Callable[[int], Request],
    *,
    count: int,
    rate: float,
    concurrency: int = 32,
    max_seconds: float = 120.0,
    request_timeout: float = 10.0,
    on_sent: Callable[[int, float], None] | None = None,
) -> LoadResult:
    """Send up to `count` requests at `rate` per second, stopping after `max_seconds` whatever is left.

    `make_request(i)` builds request i; `on_sent(i, at)` is told the wall-clock time each one was sent.
    """
    result = LoadResult(target_rate=rate)
    counter = itertools.count()
    started = time.perf_counter()
    deadline = started + max_seconds
    # One client with one keep-alive connection per sender: httpx's shared pool gets slower with many connections.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def sender() -> None:
        async with httpx.AsyncClient(timeout=request_timeout, limits=limits) as client:
            while True:
                i = next(counter)
                due = started + i / rate
                if i >= count or due > deadline:
                    return
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                url, body, headers = make_request(i)
                _loopback_only(url)
                if on_sent is not None:
                    on_sent(i, time.time())
                sent_at = time.perf_counter()
                result.sent += 1
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as e:
                    result.failures[type(e).__name__] += 1
                    continue
                result.latencies.append(time.perf_counter() - sent_at)
                result.statuses[response.status_code] += 1

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    result.duration = time.perf_counter() - started
    return result
