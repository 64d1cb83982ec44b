"""Rate limits for everything that checks a password or sends mail, counted in Redis (fixed windows).

The scheme (docs/security.md, "Guessing passwords"):
- failed logins count per *account and client address* (PAIR_LIMIT) and per *client address* (ADDRESS_LIMIT); at a
  limit that address is refused until its window ends. Nothing is keyed per account alone, so failures from
  elsewhere never lock the right password out of a fresh browser;
- failed logins also count per account from everywhere; beyond SLOWDOWN_AFTER every answer for that account waits
  SLOWDOWN_SECONDS first (a slow-down, never a refusal). Argon2's own cost and the hashing cap bound the rest;
- sign-ups and reset mails count per address, reset mails also per account (no mail-bombing from many addresses);
- wrong current passwords on the account page count per account (a stolen session cannot guess on).

Key names hold an HMAC of the e-mail address or client address under SECRET_KEY (never the value, and no hash an
outsider could recompute from a list of addresses).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from redis.asyncio import Redis

WINDOW_SECONDS = 15 * 60
PAIR_LIMIT = 5  # failed logins per account and address per window
ADDRESS_LIMIT = 20  # failed logins per client address per window (shared offices, NAT)
SLOWDOWN_AFTER = 10  # failed logins per account, from anywhere, before every answer for it is slowed down
SLOWDOWN_SECONDS = 2.0
SIGNUP_LIMIT = 5  # sign-up attempts per client address per window
FORGOT_LIMIT = 5  # reset mails per client address per window
FORGOT_ACCOUNT_LIMIT = 5  # reset mails per e-mail address per window
CURRENT_PASSWORD_LIMIT = 5  # wrong current passwords on the account page per account per window


@dataclass(frozen=True)
class Limit:
    key: str
    limit: int


class LimitKeys:
    """Builds the Redis key of each limit; values are HMAC'd with SECRET_KEY before they reach a key name."""

    def __init__(self, secret_key: str) -> None:
        self._secret = hashlib.sha256(b"gateway limits v1:" + secret_key.encode()).digest()

    def _tag(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def _email(self, email: str) -> str:
        return self._tag("email", email.strip().lower())

    def login(self, email: str, address: str) -> tuple[Limit, Limit]:
        """(per account and address, per address): what refuses a login."""
        pair = self._tag("pair", f"{self._email(email)}|{address}")
        return (
            Limit(f"limit:login:pair:{pair}", PAIR_LIMIT),
            Limit(f"limit:login:address:{self._tag('address', address)}", ADDRESS_LIMIT),
        )

    def login_account(self, email: str) -> Limit:
        """Failures for the account from everywhere: slows answers down, never refuses."""
        return Limit(f"limit:login:account:{self._email(email)}", SLOWDOWN_AFTER)

    def signup(self, address: str) -> Limit:
        return Limit(f"limit:signup:address:{self._tag('address', address)}", SIGNUP_LIMIT)

    def forgot(self, email: str, address: str) -> tuple[Limit, Limit]:
        return (
            Limit(f"limit:forgot:address:{self._tag('address', address)}", FORGOT_LIMIT),
            Limit(f"limit:forgot:account:{self._email(email)}", FORGOT_ACCOUNT_LIMIT),
        )

    def current_password(self, account_id: int) -> Limit:
        return Limit(f"limit:current-password:account:{self._tag('account', str(account_id))}", CURRENT_PASSWORD_LIMIT)


async def blocked_for(redis: Redis, limits: tuple[Limit, ...]) -> int:
    """Seconds until the caller may try again; 0 when no limit is reached."""
    wait = 0
    for limit in limits:
        raw = await redis.get(limit.key)
        if raw is not None and int(raw) >= limit.limit:
            wait = max(wait, max(int(await redis.ttl(limit.key)), 1))
    return wait


async def reached(redis: Redis, limit: Limit) -> bool:
    raw = await redis.get(limit.key)
    return raw is not None and int(raw) >= limit.limit


async def count(redis: Redis, limits: tuple[Limit, ...]) -> None:
    """Count one event against every limit; the first event of a window starts its expiry."""
    async with redis.pipeline(transaction=True) as pipe:
        for limit in limits:
            pipe.incr(limit.key)
            pipe.expire(limit.key, WINDOW_SECONDS, nx=True)
        await pipe.execute()


async def clear(redis: Redis, *limits: Limit) -> None:
    await redis.delete(*(limit.key for limit in limits))
