"""Encrypted secrets per integration: the shop token, the Exact OAuth tokens, the webhook signing secret.

Values are encrypted with crypto.Cipher before they reach SQL and decrypted after; plaintext never touches a row.
Exact token custody (renewal under a lock) lives in gateway/exact_auth.py and stores through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.db import upsert

SHOP_TOKEN = "shop_token"  # noqa: S105 - a kind name, not a secret
EXACT_OAUTH = "exact_oauth"
WEBHOOK_SIGNING_SECRET = "webhook_signing_secret"  # noqa: S105 - a kind name
KINDS = (SHOP_TOKEN, EXACT_OAUTH, WEBHOOK_SIGNING_SECRET)


@dataclass(frozen=True)
class Credential:
    """A decrypted credential; `version` increases with every write (compare-and-swap for token renewals)."""

    integration_id: int
    kind: str
    secret: str
    version: int
    access_expires_at: datetime | None
    access_issued_at: datetime | None
    refresh_expires_at: datetime | None
    updated_at: datetime

    def __repr__(self) -> str:  # never print the secret
        return f"Credential(integration_id={self.integration_id}, kind={self.kind!r}, version={self.version})"


async def save_credential(
    conn: AsyncConnection, *, integration_id: int, kind: str, secret: str, cipher: Cipher, **times: datetime | None
) -> None:
    """Create or replace one credential. `times`: access_expires_at, access_issued_at, refresh_expires_at."""
    if kind not in KINDS:
        raise ValueError(f"unknown credential kind {kind!r}")
    now = utcnow()
    encrypted = cipher.encrypt(secret)
    values: dict[str, Any] = {"secret": encrypted, "updated_at": now, **times}
    await upsert(
        conn,
        tables.credential,
        {"integration_id": integration_id, "kind": kind, "created_at": now, "version": 1, **values},
        conflict=("integration_id", "kind"),
        update={**values, "version": tables.credential.c.version + 1},
    )


async def get_credential(
    conn: AsyncConnection, *, integration_id: int, kind: str, cipher: Cipher, for_update: bool = False
) -> Credential | None:
    query = select(tables.credential).where(
        tables.credential.c.integration_id == integration_id, tables.credential.c.kind == kind
    )
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Credential(
        integration_id=row.integration_id,
        kind=row.kind,
        secret=cipher.decrypt(row.secret),
        version=row.version,
        access_expires_at=row.access_expires_at,
        access_issued_at=row.access_issued_at,
        refresh_expires_at=row.refresh_expires_at,
        updated_at=row.updated_at,
    )


async def delete_credential(conn: AsyncConnection, *, integration_id: int, kind: str) -> bool:
    result = await conn.execute(
        delete(tables.credential).where(
            tables.credential.c.integration_id == integration_id, tables.credential.c.kind == kind
        )
    )
    return bool(result.rowcount)


async def reencrypt_all(conn: AsyncConnection, *, cipher: Cipher) -> int:
    """Key rotation: re-encrypt every stored secret under the newest key. Returns how many rows were rewritten."""
    rows = (await conn.execute(select(tables.credential.c.id, tables.credential.c.secret))).all()
    for row in rows:
        await conn.execute(
            update(tables.credential).where(tables.credential.c.id == row.id).values(secret=cipher.rotate(row.secret))
        )
    return len(rows)
