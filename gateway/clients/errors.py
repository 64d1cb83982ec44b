"""The one error tree for both vendor APIs. Every message is safe to show a shop owner: no token, no full body.

The booking job decides what to do by class: Transient → retry later (within the rate governor), Permanent → mark
failed with the message, Auth → mark the connection as needing attention and stop.
"""

from __future__ import annotations

import json
from datetime import datetime

import httpx

from gateway.logs import redact

BODY_EXCERPT = 300


class ApiError(Exception):
    """Base of every vendor API failure."""

    vendor: str = "API"

    def __init__(self, message: str, *, status: int | None = None, vendor: str | None = None) -> None:
        self.status = status
        if vendor:
            self.vendor = vendor
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self)


class TransientApiError(ApiError):
    """Network failure, timeout, 5xx or 429: try again later. `retry_after` is seconds, when the vendor said."""

    def __init__(
        self, message: str, *, status: int | None = None, vendor: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, vendor=vendor)
        self.retry_after = retry_after


class RateLimitedError(TransientApiError):
    """429, or our own governor refusing a call: wait until `reset_at`."""

    def __init__(
        self,
        message: str,
        *,
        reset_at: datetime | None = None,
        retry_after: float | None = None,
        status: int | None = 429,
        vendor: str | None = None,
    ) -> None:
        super().__init__(message, status=status, vendor=vendor, retry_after=retry_after)
        self.reset_at = reset_at


class PermanentApiError(ApiError):
    """400/404/422 or a malformed answer: retrying the same request cannot help."""


class NotFoundError(PermanentApiError):
    pass


class ValidationError(PermanentApiError):
    pass


class AuthError(ApiError):
    """401/403: the token is invalid, revoked or lacks rights. Needs the customer (reconnect or new token)."""


def error_class(status: int) -> type[ApiError]:
    """The class of a failed answer, by status: one table for both vendors. Clients raise the finer kinds first where
    the vendor tells more: a 429's reset (RateLimitedError), a refused token's reason."""
    if status >= 500 or status in (408, 429):
        return TransientApiError
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status in (400, 409, 422):
        return ValidationError
    return PermanentApiError


def body_excerpt(response: httpx.Response) -> str:
    """A short, redacted excerpt of a response body for messages and attempt records."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    return redact(" ".join(text.split()))[:BODY_EXCERPT]


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def parse_json(response: httpx.Response, vendor: str) -> object:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PermanentApiError(
            f"{vendor} answered with invalid JSON (HTTP {response.status_code})",
            status=response.status_code,
            vendor=vendor,
        ) from e
