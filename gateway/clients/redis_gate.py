"""A Redis lock held around work that must not run twice at once across processes, failing as a transient API error.

Used where a second caller must wait its turn, and retry later when the wait runs out or Redis is gone: one request
in flight per shop (clients/mijnwebwinkel.py) and "find or create" of one Exact record (jobs/sync_order.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from gateway.clients.errors import TransientApiError

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def redis_gate(
    redis: Redis, name: str, *, lease: float, wait: float, what: str, busy: str, vendor: str
) -> AsyncIterator[None]:
    """Hold lock `name` (expiring after `lease` seconds) while the block runs, waiting up to `wait` seconds for it.

    Raises TransientApiError ("`what` (Redis) is unavailable", or `busy` when the wait ran out); the block does not
    run then. Releasing never fails: an expired lease is logged, a Redis gone lets the lock expire on its own.
    """
    lock = redis.lock(name, timeout=lease, sleep=0.05, blocking_timeout=wait, thread_local=False)
    try:
        acquired = await lock.acquire()
    except RedisError as e:
        raise TransientApiError(f"{what} (Redis) is unavailable", vendor=vendor) from e
    if not acquired:
        raise TransientApiError(busy, vendor=vendor)
    try:
        yield
    finally:
        try:
            await lock.release()
        except LockError:
            logger.warning("%s expired before it was released", what)
        except RedisError:
            pass  # Redis gone: the lock expires on its own
