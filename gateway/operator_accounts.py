"""`gateway accounts end-sessions EMAIL`: log an account out everywhere (a lost laptop, a suspected stolen cookie)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.operator_console import add_command, say
from gateway.settings import Settings
from gateway.store.accounts import get_account_by_email
from gateway.store.sessions import end_account_sessions

logger = logging.getLogger("gateway.operator")


async def accounts_end_sessions(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """End every login session of the account; each browser is sent to the login page at its next request."""
    async with engine.begin() as conn:
        account = await get_account_by_email(conn, email=args.email)
        if account is None:
            say("no account has this e-mail address")
            return EXIT_FAILURE
        ended = await end_account_sessions(conn, account_id=account.id)
    logger.info("operator: ended %s sessions of account %s", ended, account.id)
    say(f"ended {ended} session(s) of account {account.id}")
    return EXIT_OK


def add_account_commands(group: Any) -> None:
    parser = add_command(group, "end-sessions", accounts_end_sessions)
    parser.add_argument("email", help="the account's e-mail address")
