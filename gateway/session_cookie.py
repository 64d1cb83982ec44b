"""The session cookie, encrypted: Starlette's SessionMiddleware with its signer swapped for Fernet (AES + HMAC).

Starlette's cookie is signed but readable (base64 JSON): anyone holding it sees the account id, the CSRF token and
the login token. Here the same middleware seals the same data with a key derived from SECRET_KEY, so the cookie is
opaque, tamper-proof and expires after `max_age` (Fernet's timestamp). The login itself lives on the server
(gateway/store/sessions.py); this only keeps the cookie's contents private.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken
from itsdangerous import BadSignature
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

_KEY_PURPOSE = b"gateway session cookie v1"


def cookie_key(secret_key: str) -> bytes:
    """A Fernet key of its own for the cookie, derived from SECRET_KEY (HMAC-SHA256 as the KDF)."""
    return base64.urlsafe_b64encode(hmac.new(secret_key.encode(), _KEY_PURPOSE, hashlib.sha256).digest())


class _FernetSealer:
    """Quacks like the itsdangerous signer SessionMiddleware calls: `sign` seals, `unsign` opens or raises."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def sign(self, value: bytes) -> bytes:
        return self._fernet.encrypt(value)

    def unsign(self, value: bytes, max_age: int | None = None) -> bytes:
        try:
            return self._fernet.decrypt(value, ttl=max_age)
        except InvalidToken as e:
            raise BadSignature("session cookie is not ours or has expired") from e


class EncryptedSessionMiddleware(SessionMiddleware):
    def __init__(
        self,
        app: ASGIApp,
        secret_key: str,
        *,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 3600,
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
    ) -> None:
        super().__init__(
            app,
            secret_key=secret_key,
            session_cookie=session_cookie,
            max_age=max_age,
            same_site=same_site,
            https_only=https_only,
        )
        # SessionMiddleware types its signer as itsdangerous' TimestampSigner but only calls sign() and unsign(),
        # which the sealer provides with the same signatures.
        self.signer = _FernetSealer(cookie_key(secret_key))  # type: ignore[assignment]
