"""Outgoing e-mail: every message is first written to the `outbox_mail` table, then sent by SMTP when configured.

Without SMTP (dev, demo, tests) the message stays in the outbox, readable at /sandbox/outbox when the sandbox is
on, and one log line says so (subject and row id only: bodies carry links with tokens, which never reach a log).
A failing SMTP server never fails the caller: the row stays `sent = false` and a warning is logged.

Working secrets in a mail (a reset link) are passed as `redact`: the outbox keeps the body with them replaced, and
only the SMTP server ever sees them. The one exception is the outbox as the delivery channel itself (no SMTP, not
production), where the reader of /sandbox/outbox needs the link. Old rows are purged (jobs/outbox.py).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings
from gateway.store.outbox import create_mail, mark_mail_sent

logger = logging.getLogger(__name__)
SMTP_TIMEOUT = 15.0
REDACTED = "[link removed from the stored copy]"


def stored_body(settings: Settings, body: str, redact: Sequence[str]) -> str:
    """The body as the outbox keeps it: every secret in `redact` replaced, unless the outbox is how mail is read."""
    if not settings.smtp_host and not settings.is_production:
        return body
    for secret in redact:
        if secret:
            body = body.replace(secret, REDACTED)
    return body


async def send_mail(
    engine: AsyncEngine,
    settings: Settings,
    *,
    to: str,
    subject: str,
    body: str,
    account_id: int | None = None,
    redact: Sequence[str] = (),
) -> int:
    """Record one plain-text mail in the outbox, then send it by SMTP if configured. Returns the outbox row id.

    Call it outside any open transaction: it commits the outbox row itself before talking to the SMTP server.
    `account_id` ties the mail to an account (deleted with it); leave it None for mail to the operator/support.
    `redact` lists working secrets (links with tokens) the stored copy must not hold.
    """
    async with engine.begin() as conn:
        mail_id = await create_mail(
            conn, to_address=to, subject=subject, body=stored_body(settings, body, redact), account_id=account_id
        )
    if not settings.smtp_host:
        logger.info(
            "mail %s %r kept in the outbox (no SMTP_HOST); read it at %s/sandbox/outbox",
            mail_id,
            subject,
            settings.public_url,
        )
        return mail_id
    message = build_message(settings, to=to, subject=subject, body=body)
    try:
        await asyncio.to_thread(_deliver, settings, message)
    except (OSError, smtplib.SMTPException) as e:
        logger.warning("mail %s not sent: SMTP error %s", mail_id, type(e).__name__)
        return mail_id
    async with engine.begin() as conn:
        await mark_mail_sent(conn, mail_id=mail_id)
    logger.info("mail %s %r sent by SMTP", mail_id, subject)
    return mail_id


def build_message(settings: Settings, *, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def _deliver(settings: Settings, message: EmailMessage) -> None:
    """Blocking SMTP delivery (runs in a thread): TLS on 465, STARTTLS when offered, login when a user is set."""
    context = ssl.create_default_context()
    if settings.smtp_port == 465:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT)
    with smtp:
        smtp.ehlo()
        if settings.smtp_port != 465 and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, str(settings.smtp_password))
        smtp.send_message(message)
