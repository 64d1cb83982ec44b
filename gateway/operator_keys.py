"""`gateway keys rotate`: re-encrypt every stored secret under the newest encryption key."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.crypto import Cipher, DecryptionError
from gateway.operator_console import add_command, emit, say
from gateway.settings import Settings
from gateway.store import credentials as credential_store, operator as store

logger = logging.getLogger("gateway.operator")


async def keys_rotate(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Re-encrypt every stored secret under the first ENCRYPTION_KEYS key, then verify."""
    cipher = Cipher(settings.encryption_keys)
    try:
        async with engine.begin() as conn:
            kinds = await store.count_secrets_by_kind(conn)
            rewritten = await credential_store.reencrypt_all(conn, cipher=cipher)
    except DecryptionError as e:
        say(f"nothing rotated: {e}; add the missing key to ENCRYPTION_KEYS and run again")
        return EXIT_FAILURE
    async with engine.connect() as conn:
        unreadable = await store.count_unreadable_secrets(conn, cipher=Cipher(settings.encryption_keys[:1]))
    emit([{"kind": k, "secrets": n} for k, n in sorted(kinds.items())], args, ("kind", "secrets"))
    logger.info("operator: re-encrypted %s secrets under the newest key", rewritten)
    if unreadable:
        say(f"re-encrypted {rewritten} secrets, but {unreadable} are still unreadable with the newest key alone")
        return EXIT_FAILURE
    spare = len(settings.encryption_keys) - 1
    advice = f"; the {spare} older key(s) can now be removed from ENCRYPTION_KEYS" if spare else ""
    say(f"re-encrypted {rewritten} secrets under the newest key{advice}")
    return EXIT_OK


def add_key_commands(group: Any) -> None:
    add_command(group, "rotate", keys_rotate, lists=True)
