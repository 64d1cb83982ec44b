"""Login sessions (`login_session`): one row per logged-in browser, found by the SHA-256 of the cookie's token.

The token itself never reaches the database; this module hashes what it is given. Callers own the transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow


@dataclass(frozen=True)
class SessionState:
    """What a request needs to know about its login: the account's password stamp and whether the row still lives."""

    password_changed_at: datetime | None
    alive: bool


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_login_session(conn: AsyncConnection, *, account_id: int, token: str) -> None:
    await conn.execute(
        tables.login_session.insert().values(account_id=account_id, token_hash=token_hash(token), created_at=utcnow())
    )


async def get_session_state(conn: AsyncConnection, *, account_id: int, token: str) -> SessionState | None:
    """The account's stamp and the session's liveness in one query; None when the account is gone."""
    a, s = tables.account, tables.login_session
    joined = a.outerjoin(s, and_(s.c.account_id == a.c.id, s.c.token_hash == token_hash(token)))
    row = (
        await conn.execute(select(a.c.password_changed_at, s.c.id).select_from(joined).where(a.c.id == account_id))
    ).first()
    if row is None:
        return None
    return SessionState(password_changed_at=row[0], alive=row[1] is not None)


async def end_login_session(conn: AsyncConnection, *, token: str) -> None:
    await conn.execute(delete(tables.login_session).where(tables.login_session.c.token_hash == token_hash(token)))


async def end_account_sessions(conn: AsyncConnection, *, account_id: int, keep_token: str | None = None) -> int:
    """End every session of the account (but `keep_token`'s); returns how many ended."""
    query = delete(tables.login_session).where(tables.login_session.c.account_id == account_id)
    if keep_token is not None:
        query = query.where(tables.login_session.c.token_hash != token_hash(keep_token))
    result = await conn.execute(query)
    return int(result.rowcount or 0)
