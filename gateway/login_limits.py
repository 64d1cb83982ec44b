"""Login rate limiting in Redis: failed attempts counted per account (e-mail) and per client address.

A fixed window per key: the first failure starts a window of WINDOW_SECONDS; at the limit further attempts are
refused until the window ends, whether or not the password is right. Keys hold a hash of the e-mail address,
never the address itself. A successful login clears the account's counter (not the address's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

WINDOW_SECONDS = 15 * 60
ACCOUNT_LIMIT = 5  # failures per e-mail address per window
ADDRESS_LIMIT = 20  # failures per client address per window (shared offices, NAT)
FORGOT_LIMIT = 5  # password-reset mails per client address per window


@dataclass(frozen=True)
class Limit:
    key: str
    limit: int


def _email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def login_limits(email: str, address: str) -> tuple[Limit, Limit]:
    return (
        Limit(f"login:fail:account:{_email_key(email)}", ACCOUNT_LIMIT),
        Limit(f"login:fail:address:{address}", ADDRESS_LIMIT),
    )


def forgot_limit(address: str) -> Limit:
    return Limit(f"login:forgot:address:{address}", FORGOT_LIMIT)


async def blocked_for(redis: Redis, limits: tuple[Limit, ...]) -> int:
    """Seconds until the caller may try again; 0 when no limit is reached."""
    wait = 0
    for limit in limits:
        raw = await redis.get(limit.key)
        if raw is not None and int(raw) >= limit.limit:
            wait = max(wait, max(int(await redis.ttl(limit.key)), 1))
    return wait


async def count(redis: Redis, limits: tuple[Limit, ...]) -> None:
    """Count one event against every limit; the first event of a window starts its expiry."""
    async with redis.pipeline(transaction=True) as pipe:
        for limit in limits:
            pipe.incr(limit.key)
            pipe.expire(limit.key, WINDOW_SECONDS, nx=True)
        await pipe.execute()


async def clear(redis: Redis, limit: Limit) -> None:
    await redis.delete(limit.key)
