"""Job names, deterministic job ids and enqueueing. Redis carries only (job name, ids); the database is the record.

Enqueue only after the transaction that wrote the order_sync row has committed: a lost enqueue is repaired by the
reconcile cron because the row still says `queued`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

SYNC_ORDER = "sync_order"
QUEUE_DEFAULT = "arq:queue"
QUEUE_PRIORITY = "arq:queue:priority"  # premium integrations; the worker drains it first


def serialize(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    return dict(json.loads(data))


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def create_arq_pool(url: str) -> ArqRedis:
    return await create_pool(
        redis_settings(url), job_serializer=serialize, job_deserializer=deserialize, default_queue_name=QUEUE_DEFAULT
    )


def sync_job_id(integration_id: int, order_sync_id: int, generation: int = 0) -> str:
    """Same order, same generation → same id, so a duplicate enqueue is a no-op while the job is queued."""
    return f"{SYNC_ORDER}:{integration_id}:{order_sync_id}:{generation}"


async def enqueue_sync(
    pool: ArqRedis,
    *,
    integration_id: int,
    order_sync_id: int,
    generation: int = 0,
    priority: bool = False,
    defer: timedelta | None = None,
) -> bool:
    """Enqueue the booking job; return False when a job with the same id is already queued or running."""
    job = await pool.enqueue_job(
        SYNC_ORDER,
        order_sync_id,
        _job_id=sync_job_id(integration_id, order_sync_id, generation),
        _queue_name=QUEUE_PRIORITY if priority else QUEUE_DEFAULT,
        _defer_by=defer,
    )
    return job is not None


BOOKS_CHECK = "books_check"


async def enqueue_books_check(pool: ArqRedis, *, integration_id: int, month: str, mail: bool = False) -> bool:
    """Enqueue the books check of one month (gateway/jobs/books_check.py); False when it is already queued."""
    job = await pool.enqueue_job(
        BOOKS_CHECK, integration_id, month, mail, _job_id=f"{BOOKS_CHECK}:{integration_id}:{month}"
    )
    return job is not None
