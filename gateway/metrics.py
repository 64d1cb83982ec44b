"""Every Prometheus metric of the gateway, in one place, and the exposition for `/metrics`.

Counters are incremented by the modules that do the work (webhooks, poller, booking job, Exact client, token custody,
rate governor, the worker's Redis restarts); gauges that describe shared state (queue depth, oldest pending order)
are computed at scrape time by the scraping process, so they are right whichever replica answers. No metric carries
a per-customer label.

Multiprocess mode: when PROMETHEUS_MULTIPROC_DIR is set *before* the process starts (prometheus-client reads it at
import), every process writes its values to files in that directory and a scrape aggregates all of them. The
directory must be emptied when the whole service (re)starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The gateway's own registry: no default process/platform collectors mixed in, and tests can read it directly.
REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_NOTICES = Counter(
    "gateway_webhook_notices",
    "Webhook notices received, by result: queued, skipped, duplicate, already_booked, ignored, "
    "unknown_key (no integration for the URL key), invalid (unreadable body), inactive (integration paused).",
    ["result"],
    registry=REGISTRY,
)
POLL_RUNS = Counter(
    "gateway_poll_runs",
    "Poller runs per shop, by result: ok, error (shop API failed), auth_error (shop token refused).",
    ["result"],
    registry=REGISTRY,
)
BOOKINGS = Counter(
    "gateway_bookings",
    "Booking attempts, by result (booked; adopted = found in Exact by its reference after an ambiguous attempt; "
    "transient = retried later; deferred = waited for the rate budget; permanent = failed or needs attention) "
    "and document type (sales_entry, sales_invoice, sales_order, direct_sales_invoice).",
    ["result", "document_type"],
    registry=REGISTRY,
)
EXACT_CALLS = Counter(
    "gateway_exact_calls",
    "HTTP calls to Exact Online, by status class: 2xx, 3xx, 4xx, 5xx, or error (no response: timeout, connect).",
    ["status_class"],
    registry=REGISTRY,
)
RATE_LIMIT_DEFERRALS = Counter(
    "gateway_rate_limit_deferrals",
    "Exact calls the per-administration rate governor refused (the job defers itself), by limit: minutely, daily.",
    ["limit"],
    registry=REGISTRY,
)
TOKEN_RENEWALS = Counter(
    "gateway_token_renewals",
    "Exact OAuth access-token renewals, by result: ok, failed (refresh refused: the connection needs re-consent).",
    ["result"],
    registry=REGISTRY,
)
REDIS_RECONNECTS = Counter(
    "gateway_worker_redis_reconnects",
    "Times an arq worker was started again after it could not reach Redis (every attempt during an outage counts).",
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "gateway_job_duration_seconds",
    "Wall time of worker jobs, by job name (sync_order, poll_shops, reconcile_orders, ...).",
    ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)


def status_class(status_code: int | None) -> str:
    """The EXACT_CALLS label for a response status (None: the call got no response)."""
    return "error" if status_code is None else f"{status_code // 100}xx"


def multiprocess_dir() -> str | None:
    """The multiprocess directory, when this deployment runs several processes that share one scrape."""
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry() -> CollectorRegistry:
    """This process's registry, or (multiprocess mode) a fresh one aggregating every process's files."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def serve_worker_metrics(host: str, port: int) -> Callable[[], None]:
    """Serve this process's counters (all processes' in multiprocess mode) at http://host:port/metrics from a daemon
    thread, for a worker with no web process beside it; returns the function that stops it. The port is the
    protection: expose it to the scraper's network only (no bearer token on this listener)."""
    server, thread = start_http_server(port, addr=host, registry=scrape_registry())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def render(*, queue_depth: Mapping[str, int], oldest_pending_age_seconds: float | None) -> bytes:
    """The exposition text: the counters of every process plus the gauges read at this scrape."""
    gauges = CollectorRegistry()
    gauges.register(_ScrapeGauges(queue_depth, oldest_pending_age_seconds))
    return generate_latest(scrape_registry()) + generate_latest(gauges)


class _ScrapeGauges:
    """Gauges computed by the scraping process from Redis and the database (shared state, not per process)."""

    def __init__(self, queue_depth: Mapping[str, int], oldest_pending_age_seconds: float | None) -> None:
        self.queue_depth = queue_depth
        self.oldest = oldest_pending_age_seconds

    def collect(self) -> list[GaugeMetricFamily]:
        depth = GaugeMetricFamily("gateway_queue_depth", "Jobs waiting in each arq queue.", labels=["queue"])
        for queue, value in sorted(self.queue_depth.items()):
            depth.add_metric([queue], value)
        oldest = GaugeMetricFamily(
            "gateway_oldest_pending_order_age_seconds",
            "Age of the oldest order waiting to be booked (queued, booking or retrying); 0 when none waits.",
            value=self.oldest or 0.0,
        )
        return [depth, oldest]


def job_name(job_id: str | None) -> str:
    """The JOB_DURATION label for an arq job id: `sync_order:1:2:0` -> sync_order, `cron:poll_shops:...` -> poll_shops.

    Ids made by arq itself (random hex) say nothing about the job, so they count as "other".
    """
    parts = (job_id or "").split(":")
    if parts[0] == "cron" and len(parts) > 1:
        return parts[1]
    return parts[0] if len(parts) > 1 else "other"
