"""The per-division rate governor: a call budget shared through Redis by every process that talks to Exact Online.

Exact allows 60 calls a minute and 5,000 a day per app and division, counts clock minutes and UTC days, and answers
429 beyond that (docs/exact.md). The governor keeps a sliding log of call times per division, so no 60-second span
(plus a small margin for network jitter) ever holds more calls than the limit, and a UTC-day counter. Both are
checked and updated in one Lua script, so concurrent workers cannot overshoot; a token bucket paces calls after a
burst of ten, so a freed minute is not spent all at once. Answers keep it in step: their `X-RateLimit-*` headers
can only lower what it believes is left, and a 429 or an exhausted budget blocks the division until the reset Exact
announced, capped at the end of the window that ran out (a skewed clock cannot block longer). When the budget is
spent `acquire` raises RateLimitedError(reset_at=...): the job defers itself instead of failing.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from gateway import metrics
from gateway.clients.errors import RateLimitedError
from gateway.clients.exact_responses import VENDOR, RateLimitHeaders
from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.settings import Settings

logger = logging.getLogger(__name__)

MINUTE = 60.0
DEFAULT_MARGIN = 1.0  # seconds added to the window: a call sent at :59.9 may reach Exact in its next minute
# Wait this long in-process for a slot; longer waits defer the job instead. With ~10 jobs sharing 60 calls a minute a
# slot frees every second or so, so short waits are the norm and a deferral (which restarts the job) the exception.
DEFAULT_MAX_WAIT = 20.0
DEFAULT_BURST = 10  # calls that may go at once before the pace of one per window/limit applies

# KEYS: log, day counter, block, pace, waiters.
# ARGV: now_ms, window_ms, minute_limit, day_limit, day_reset_ms, member, burst, waiter id, waiting since ms, stale ms.
# Returns {1, 0} when a slot was taken, {0, retry_at_ms} when the minute is full, paced, blocked or an older caller
# waits, {-1, reset_ms} for the day. The pace is a token bucket (`burst` calls at once, then one per window/limit) so
# a freed minute is not spent in one burst of parallel requests, which Exact advises against; the sliding log alone
# enforces the limit. Waiting callers are served oldest first, so no job starves until it has to defer.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local function wait(at)
  redis.call('ZADD', KEYS[5], 'NX', tonumber(ARGV[9]), ARGV[8])
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[10]))
  return {0, at}
end
local block = tonumber(redis.call('GET', KEYS[3]) or '0')
if block > now then return {0, block} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if day >= tonumber(ARGV[4]) then return {-1, tonumber(ARGV[5])} end
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return wait(tonumber(oldest[2]) + window)
end
local interval = window / limit
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[10]))
local first = redis.call('ZRANGE', KEYS[5], 0, 0)
if first[1] and first[1] ~= ARGV[8] then return wait(now + math.ceil(interval / 4)) end
local burst = tonumber(ARGV[7])
local pace = redis.call('HMGET', KEYS[4], 'tokens', 'at')
local tokens = tonumber(pace[1] or burst)
local at = tonumber(pace[2] or now)
tokens = math.min(burst, tokens + math.max(0, now - at) / interval)
if tokens < 1 then return wait(now + math.ceil((1 - tokens) * interval)) end
redis.call('HSET', KEYS[4], 'tokens', tostring(tokens - 1), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[4], window * 2)
redis.call('ZREM', KEYS[5], ARGV[8])
redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('PEXPIRE', KEYS[1], window + 1000)
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]) - now + 60000)
return {1, 0}
"""

# KEYS: log, day counter. ARGV: now_ms, window_ms, minutely_used, daily_used, day_reset_ms, member prefix.
# Raises our counts to what Exact says it has counted (never lowers them).
_SYNC = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
if used >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local missing = used - redis.call('ZCARD', KEYS[1])
  for i = 1, missing do redis.call('ZADD', KEYS[1], now, ARGV[6] .. i) end
  if missing > 0 then redis.call('PEXPIRE', KEYS[1], window + 1000) end
end
local daily = tonumber(ARGV[4])
if daily >= 0 and daily > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], daily, 'PX', tonumber(ARGV[5]) - now + 60000)
end
return 1
"""


@dataclass(frozen=True)
class Usage:
    in_window: int
    today: int
    blocked_until: dt.datetime | None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _from_ms(ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


class RateGovernor:
    """Per-division budget in Redis. `acquire` before every counted call, `observe` every answer."""

    def __init__(
        self,
        redis: Redis,
        *,
        minutely_limit: int = 60,
        daily_limit: int = 5000,
        margin: float = DEFAULT_MARGIN,
        max_wait: float = DEFAULT_MAX_WAIT,
        burst: int = DEFAULT_BURST,
        clock: Clock | None = None,
        prefix: str = "exact:rl",
    ) -> None:
        self.redis = redis
        self.minutely_limit = minutely_limit
        self.daily_limit = daily_limit
        self.window = MINUTE + margin
        self.max_wait = max_wait
        self.burst = max(1, min(burst, minutely_limit))
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._sync = redis.register_script(_SYNC)

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> RateGovernor:
        return cls(
            redis,
            minutely_limit=settings.exact_minutely_limit,
            daily_limit=settings.exact_daily_limit,
        )

    def _keys(self, division: int, now: float) -> tuple[str, str, str]:
        day = dt.datetime.fromtimestamp(now, tz=dt.UTC).strftime("%Y%m%d")
        base = f"{self.prefix}:{int(division)}"
        return f"{base}:log", f"{base}:day:{day}", f"{base}:block"

    def _day_reset(self, now: float) -> float:
        today = dt.datetime.fromtimestamp(now, tz=dt.UTC).date()
        return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC).timestamp()

    async def acquire(self, division: int) -> None:
        """Take one call slot, waiting up to `max_wait` for one; else raise RateLimitedError(reset_at=...)."""
        since = self.clock.now()
        waiter = secrets.token_hex(8)
        base = f"{self.prefix}:{int(division)}"
        while True:
            now = self.clock.now()
            status, at_ms = await self._acquire(
                keys=[*self._keys(division, now), f"{base}:pace", f"{base}:waiters"],
                args=[
                    _ms(now),
                    _ms(self.window),
                    self.minutely_limit,
                    self.daily_limit,
                    _ms(self._day_reset(now)),
                    f"{_ms(now)}:{waiter}",
                    self.burst,
                    waiter,
                    _ms(since),
                    _ms(self.max_wait + 5),
                ],
            )
            if int(status) == 1:
                return
            free_at = int(at_ms) / 1000
            if int(status) == -1 or free_at > since + self.max_wait:
                await self._leave(base, waiter)
                raise self._refusal(int(status) == -1, free_at, now)
            await self.clock.sleep(max(0.001, free_at - now))

    async def _leave(self, base: str, waiter: str) -> None:
        await self.redis.zrem(f"{base}:waiters", waiter)

    def _refusal(self, daily: bool, free_at: float, now: float) -> RateLimitedError:
        reset_at = _from_ms(_ms(free_at))
        kind = "daily" if daily else "minutely"
        metrics.RATE_LIMIT_DEFERRALS.labels(kind).inc()
        return RateLimitedError(
            f"{VENDOR} {kind} call budget for this administration is used up until {reset_at:%H:%M:%S} UTC",
            reset_at=reset_at,
            retry_after=max(0.0, free_at - now),
            status=None,
            vendor=VENDOR,
        )

    async def observe(self, division: int, response: httpx.Response) -> None:
        """Bring the budget in step with what Exact said: its counts, its resets, and any 429."""
        headers = RateLimitHeaders.parse(response.headers)
        now = self.clock.now()
        log_key, day_key, block_key = self._keys(division, now)
        minutely_used = -1
        if headers.minutely_limit is not None and headers.minutely_remaining is not None:
            minutely_used = max(0, min(self.minutely_limit, headers.minutely_limit) - headers.minutely_remaining)
        daily_used = -1
        if headers.daily_limit is not None and headers.daily_remaining is not None:
            daily_used = max(0, min(self.daily_limit, headers.daily_limit) - headers.daily_remaining)
        if minutely_used >= 0 or daily_used >= 0:
            await self._sync(
                keys=[log_key, day_key],
                args=[
                    _ms(now),
                    _ms(self.window),
                    minutely_used,
                    daily_used,
                    _ms(self._day_reset(now)),
                    f"x{_ms(now)}:",
                ],
            )
        block_until = self._block_until(response.status_code, headers, now)
        if block_until is not None:
            await self.block(division, until=block_until)

    def _block_until(self, status: int, headers: RateLimitHeaders, now: float) -> dt.datetime | None:
        current = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        if status == 429:
            until = headers.reset_after_429(current)
        elif headers.daily_remaining == 0 and headers.daily_reset:
            until = headers.daily_reset
        elif headers.minutely_remaining == 0 and headers.minutely_reset and headers.minutely_reset > current:
            until = headers.minutely_reset
        else:
            return None
        return self._within_window(until, daily=until == headers.daily_reset, now=now)

    def _within_window(self, until: dt.datetime, *, daily: bool, now: float) -> dt.datetime:
        """A reset no further ahead than its window allows: Exact's times are its clock's, and a skewed clock must not
        block an administration for longer than the minute (or the UTC day) that actually ran out."""
        latest = _from_ms(_ms((self._day_reset(now) if daily else now) + self.window))
        if until <= latest:
            return until
        logger.warning(
            "exact announced a %s reset at %s, beyond its window; clock skew? blocking until %s instead",
            "daily" if daily else "minutely",
            until.isoformat(timespec="seconds"),
            latest.isoformat(timespec="seconds"),
        )
        return latest

    async def block(self, division: int, *, until: dt.datetime) -> None:
        """Refuse every call for `division` until `until` (a 429, or Exact saying nothing is left)."""
        now = self.clock.now()
        until_ms = _ms(until.timestamp())
        if until_ms <= _ms(now):
            return
        _, _, block_key = self._keys(division, now)
        current = int(await self.redis.get(block_key) or 0)
        if until_ms > current:
            await self.redis.set(block_key, until_ms, px=max(1, until_ms - _ms(now)) + 1000)
            logger.info("exact division %s rate-limited until %s", division, until.isoformat(timespec="seconds"))

    async def usage(self, division: int) -> Usage:
        """What the governor has counted (for the dashboard, tests and the benchmark)."""
        now = self.clock.now()
        log_key, day_key, block_key = self._keys(division, now)
        in_window = await self.redis.zcount(log_key, _ms(now - self.window) + 1, "+inf")
        today = int(await self.redis.get(day_key) or 0)
        block = int(await self.redis.get(block_key) or 0)
        return Usage(int(in_window), today, _from_ms(block) if block > _ms(now) else None)
