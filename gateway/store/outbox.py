"""The mail outbox (`outbox_mail`): every outgoing e-mail is a row first; gateway/mail.py sends it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import tables
from gateway.clock import utcnow


@dataclass(frozen=True)
class OutboxMail:
    id: int
    account_id: int | None
    to_address: str
    subject: str
    body: str
    sent: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> OutboxMail:
        data = dict(row._mapping)
        data["sent"] = bool(data["sent"])
        return cls(**data)


async def create_mail(
    conn: AsyncConnection, *, to_address: str, subject: str, body: str, account_id: int | None = None
) -> int:
    result = await conn.execute(
        tables.outbox_mail.insert()
        .values(
            account_id=account_id,
            to_address=to_address,
            subject=subject[:300],
            body=body,
            sent=False,
            created_at=utcnow(),
        )
        .returning(tables.outbox_mail.c.id)
    )
    return int(result.scalar_one())


async def mark_mail_sent(conn: AsyncConnection, *, mail_id: int) -> None:
    await conn.execute(update(tables.outbox_mail).where(tables.outbox_mail.c.id == mail_id).values(sent=True))


async def list_mail(conn: AsyncConnection, *, limit: int = 50) -> list[OutboxMail]:
    """The newest mails first (the dev outbox page)."""
    c = tables.outbox_mail.c
    rows = (await conn.execute(select(tables.outbox_mail).order_by(c.id.desc()).limit(limit))).all()
    return [OutboxMail.from_row(r) for r in rows]


async def purge_mail(conn: AsyncConnection, *, created_before: datetime) -> int:
    """Delete every mail created before `created_before` (sent or not: an unsent one is never retried); the count."""
    result = await conn.execute(delete(tables.outbox_mail).where(tables.outbox_mail.c.created_at < created_before))
    return int(result.rowcount or 0)
