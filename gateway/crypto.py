"""Encryption of secrets at rest: MultiFernet over the keys in ENCRYPTION_KEYS, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from starlette.datastructures import Secret


class DecryptionError(Exception):
    """A stored secret cannot be read with any configured key (key removed too early?)."""


class Cipher:
    """Encrypts with the first key; decrypts with any. `rotate` re-encrypts under the first key."""

    def __init__(self, keys: Sequence[Secret | str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(str(key).encode()) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise DecryptionError("stored secret cannot be decrypted with the configured ENCRYPTION_KEYS") from e

    def rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as e:
            raise DecryptionError("stored secret cannot be decrypted with the configured ENCRYPTION_KEYS") from e
