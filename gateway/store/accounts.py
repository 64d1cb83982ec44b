"""Accounts: the people who log in to the customer pages. All SQL for the `account` table lives here.

E-mail addresses are stored lower-cased and trimmed, so one address is one account. Password hashes come from
gateway/passwords.py; this module never sees a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow


class EmailTaken(Exception):
    """Another account already uses this e-mail address."""


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    password_hash: str
    locale: str
    is_operator: bool
    created_at: datetime
    password_changed_at: datetime | None
    last_login_at: datetime | None
    email_confirmed_at: datetime | None

    @property
    def confirmed(self) -> bool:
        return self.email_confirmed_at is not None

    def __repr__(self) -> str:  # keep the hash out of logs and tracebacks
        return f"Account(id={self.id})"

    @classmethod
    def from_row(cls, row: Any) -> Account:
        data = dict(row._mapping)
        data["is_operator"] = bool(data["is_operator"])
        return cls(**data)


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def create_account(
    conn: AsyncConnection, *, email: str, password_hash: str, locale: str = "nl", confirmed: bool = True
) -> Account:
    """Insert a new account; raise EmailTaken when the address is in use (the transaction stays usable).

    The sign-up page creates it unconfirmed (no login until the mailed link is opened); the demo, the operator and
    tests create confirmed ones."""
    now = utcnow()
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                tables.account.insert()
                .values(
                    email=normalize_email(email),
                    password_hash=password_hash,
                    locale=locale,
                    created_at=now,
                    password_changed_at=now,
                    email_confirmed_at=now if confirmed else None,
                )
                .returning(tables.account)
            )
    except IntegrityError as e:
        raise EmailTaken from e
    return Account.from_row(result.one())


async def ensure_account(conn: AsyncConnection, *, email: str, password_hash: str) -> tuple[Account, bool]:
    """The account with this address, created with `password_hash` when missing; (account, created).

    For `gateway demo`'s demo login: an existing account keeps its password.
    """
    found = await get_account_by_email(conn, email=email)
    if found is not None:
        return found, False
    return await create_account(conn, email=email, password_hash=password_hash), True


async def get_account(conn: AsyncConnection, *, account_id: int) -> Account | None:
    row = (await conn.execute(select(tables.account).where(tables.account.c.id == account_id))).first()
    return None if row is None else Account.from_row(row)


async def get_account_by_email(conn: AsyncConnection, *, email: str) -> Account | None:
    row = (await conn.execute(select(tables.account).where(tables.account.c.email == normalize_email(email)))).first()
    return None if row is None else Account.from_row(row)


async def set_password_hash(conn: AsyncConnection, *, account_id: int, password_hash: str) -> datetime:
    """Store a new hash (older reset links stop working); the new `password_changed_at` ends older sessions."""
    changed_at = utcnow()
    await conn.execute(
        update(tables.account)
        .where(tables.account.c.id == account_id)
        .values(password_hash=password_hash, password_changed_at=changed_at)
    )
    return changed_at


async def set_email(conn: AsyncConnection, *, account_id: int, email: str) -> None:
    """Change the login address; raise EmailTaken when another account has it."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                update(tables.account).where(tables.account.c.id == account_id).values(email=normalize_email(email))
            )
    except IntegrityError as e:
        raise EmailTaken from e


async def set_locale(conn: AsyncConnection, *, account_id: int, locale: str) -> None:
    await conn.execute(update(tables.account).where(tables.account.c.id == account_id).values(locale=locale))


async def record_login(conn: AsyncConnection, *, account_id: int, rehashed: str | None = None) -> None:
    """Note the login time; store `rehashed` when the old hash used weaker parameters."""
    values: dict[str, Any] = {"last_login_at": utcnow()}
    if rehashed:
        values["password_hash"] = rehashed
    await conn.execute(update(tables.account).where(tables.account.c.id == account_id).values(**values))


async def delete_account(conn: AsyncConnection, *, account_id: int) -> bool:
    """Delete the account with its integrations and every stored token (credentials first, explicitly).

    The foreign keys cascade too; deleting credentials by name keeps "forgets all tokens" true even where a
    database was created without cascades.
    """
    integration_ids = select(tables.integration.c.id).where(tables.integration.c.account_id == account_id)
    await conn.execute(delete(tables.credential).where(tables.credential.c.integration_id.in_(integration_ids)))
    for table in reversed(tables.metadata.sorted_tables):  # children before parents
        if table in tables.TENANT_TABLES and table is not tables.credential:
            await conn.execute(delete(table).where(table.c.integration_id.in_(integration_ids)))
    await conn.execute(delete(tables.integration).where(tables.integration.c.account_id == account_id))
    await conn.execute(delete(tables.outbox_mail).where(tables.outbox_mail.c.account_id == account_id))
    await conn.execute(delete(tables.login_session).where(tables.login_session.c.account_id == account_id))
    result = await conn.execute(delete(tables.account).where(tables.account.c.id == account_id))
    return bool(result.rowcount)


async def confirm_email(conn: AsyncConnection, *, account_id: int) -> bool:
    """Mark the address as its owner's (the sign-up link, or a reset link, was opened); False if it was already."""
    result = await conn.execute(
        update(tables.account)
        .where(tables.account.c.id == account_id, tables.account.c.email_confirmed_at.is_(None))
        .values(email_confirmed_at=utcnow())
    )
    return bool(result.rowcount)
