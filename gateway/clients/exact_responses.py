"""What an Exact Online answer says besides its data: the error envelope mapped onto the error tree
(clients/errors.py) and the rate-limit headers the governor (gateway/ratelimit.py) keeps the budget by. No requests.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from gateway.clients.errors import RateLimitedError, body_excerpt, error_class
from gateway.clock import utcnow

VENDOR = "Exact Online"


@dataclass(frozen=True)
class RateLimitHeaders:
    """What one answer said about the division's budget. Resets are UTC epoch milliseconds on the wire."""

    minutely_limit: int | None = None
    minutely_remaining: int | None = None
    minutely_reset: dt.datetime | None = None
    daily_limit: int | None = None
    daily_remaining: int | None = None
    daily_reset: dt.datetime | None = None

    @classmethod
    def parse(cls, headers: httpx.Headers | Mapping[str, str]) -> RateLimitHeaders:
        h = httpx.Headers(headers)
        return cls(
            minutely_limit=_header_int(h, "X-RateLimit-Minutely-Limit"),
            minutely_remaining=_header_int(h, "X-RateLimit-Minutely-Remaining"),
            minutely_reset=_header_ms(h, "X-RateLimit-Minutely-Reset"),
            daily_limit=_header_int(h, "X-RateLimit-Limit"),
            daily_remaining=_header_int(h, "X-RateLimit-Remaining"),
            daily_reset=_header_ms(h, "X-RateLimit-Reset"),
        )

    def reset_after_429(self, now: dt.datetime) -> dt.datetime:
        """When a refused call may be tried again: the window that ran out, else the next minute."""
        if self.daily_remaining == 0 and self.daily_reset and self.minutely_remaining != 0:
            return self.daily_reset
        if self.minutely_reset and self.minutely_reset > now:
            return self.minutely_reset
        if self.daily_remaining == 0 and self.daily_reset:
            return self.daily_reset
        # No usable header (older reports saw 429s without any): Exact's windows are clock minutes.
        return now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def _header_int(headers: httpx.Headers, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _header_ms(headers: httpx.Headers, name: str) -> dt.datetime | None:
    value = _header_int(headers, name)
    return None if value is None else dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


def error_message(response: httpx.Response) -> str:
    """The human text of an Exact error: the OData envelope's message.value, the OAuth error_description, or an
    excerpt of the body."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body_excerpt(response)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            text = message.get("value") if isinstance(message, dict) else message
            if text:
                return str(text)[:500]
        if isinstance(error, str):
            return str(data.get("error_description") or error)[:500]
    return body_excerpt(response)


def error_for(response: httpx.Response, *, now: dt.datetime | None = None) -> Exception:
    """Map a failed answer to the error tree. Exact counts 400/401/403/404 against an hourly error budget per
    endpoint, so none of those is ever worth retrying as is (docs/exact.md)."""
    status = response.status_code
    text = f"{VENDOR}: {error_message(response) or response.reason_phrase} (HTTP {status})"
    if status == 429:
        now = now or utcnow()
        reset_at = RateLimitHeaders.parse(response.headers).reset_after_429(now)
        return RateLimitedError(
            f"{VENDOR} rate limit reached; retry after {reset_at:%H:%M:%S} UTC",
            reset_at=reset_at,
            retry_after=max(0.0, (reset_at - now).total_seconds()),
            vendor=VENDOR,
        )
    return error_class(status)(text, status=status, vendor=VENDOR)
