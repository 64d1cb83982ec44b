"""Password hashing with argon2id (argon2-cffi), and the signed single-use tokens of password-reset links.

Nothing here logs or returns a password; a wrong password and a malformed hash both verify as False. A hash costs
about a quarter of a second of CPU, so the web process never runs one on its event loop: routes use `PasswordWork`,
a pool of `limit` threads (argon2-cffi releases the GIL) whose OS priority is lowered, so under a flood of logins the
event loop still gets the CPU first and /healthz and webhooks stay fast (bench/login_load.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

# argon2-cffi's defaults follow RFC 9106's second recommended profile (argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()

MIN_LENGTH = 10
MAX_LENGTH = 200  # argon2 accepts any length; the cap only bounds the work one login request can cause


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's; rehash it at the next login."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return hash_password("no account has this password; it only spends the same time")


def spend_verify_time(password: str) -> None:
    """Verify against a throwaway hash: an unknown e-mail costs as much time as a wrong password (no enumeration)."""
    verify_password(_dummy_hash(), password)


T = TypeVar("T")
HASHING_NICENESS = 19  # hashing threads yield the CPU to the event loop (Linux: niceness is per thread)


def _lower_priority() -> None:
    """Thread initializer: argon2's own lane threads are created from here and inherit the niceness."""
    if hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


class PasswordWork:
    """Hashing and verifying off the event loop in a pool of `limit` low-priority threads: beyond `limit` hashes
    at once callers wait their turn (without blocking the loop), so a flood of logins slows logins only."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="argon2", initializer=_lower_priority)
        self._running = 0
        self._lock = threading.Lock()

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        def counted() -> T:
            with self._lock:
                self._running += 1
            try:
                return function(*args)
            finally:
                with self._lock:
                    self._running -= 1

        return await asyncio.get_running_loop().run_in_executor(self._pool, counted)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(verify_password, password_hash, password)

    async def spend_verify_time(self, password: str) -> None:
        await self._run(spend_verify_time, password)

    @property
    def busy(self) -> int:
        """Hashes running now (for tests and metrics)."""
        return self._running

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


RESET_MAX_AGE = 60 * 60  # a reset link works for one hour
_RESET_SALT = "password-reset"


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def make_reset_token(secret_key: str, *, account_id: int, password_hash: str) -> str:
    """A signed, expiring token for the reset link. It names the current password hash (by fingerprint), so it
    stops working as soon as the password changes: single use without a table."""
    return URLSafeTimedSerializer(secret_key, salt=_RESET_SALT).dumps([account_id, _fingerprint(password_hash)])


def read_reset_token(secret_key: str, token: str) -> tuple[int, str] | None:
    """(account_id, fingerprint) from a valid, unexpired token; None otherwise. Check the fingerprint with
    `reset_token_matches` against the account's current hash."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_RESET_SALT).loads(token, max_age=RESET_MAX_AGE)
    except BadSignature:
        return None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], int) and isinstance(data[1], str)):
        return None
    return data[0], data[1]


def reset_token_matches(fingerprint: str, password_hash: str) -> bool:
    return hmac.compare_digest(fingerprint, _fingerprint(password_hash))


SIGNIN_MAX_AGE = 24 * 60 * 60  # the link that finishes a sign-up works for a day
_SIGNIN_SALT = "sign-up-confirm"


def make_signin_token(secret_key: str, *, account_id: int, password_hash: str) -> str:
    """A signed, expiring token for the link that finishes a sign-up. Like a reset token it names the password hash
    (a later sign-up with the same address replaces the hash, and the older link stops working); the route also
    refuses it once the address is confirmed, so it works once."""
    return URLSafeTimedSerializer(secret_key, salt=_SIGNIN_SALT).dumps([account_id, _fingerprint(password_hash)])


def read_signin_token(secret_key: str, token: str) -> tuple[int, str] | None:
    try:
        data = URLSafeTimedSerializer(secret_key, salt=_SIGNIN_SALT).loads(token, max_age=SIGNIN_MAX_AGE)
    except BadSignature:
        return None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], int) and isinstance(data[1], str)):
        return None
    return data[0], data[1]
