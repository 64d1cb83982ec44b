"""Who is logged in, and which integrations they may touch. Pages derive the tenant from here, never from a form.

The session cookie is encrypted (gateway/session_cookie.py): HttpOnly, SameSite=Lax, Secure in production. A login
also lives on the server: the cookie holds a random token whose hash is a `login_session` row, so logging out (or a
password change, deleting the account, an operator's "end sessions") ends a copied cookie too. The cookie also holds
a stamp of the account's `password_changed_at`; `SessionCheckMiddleware` ends a session whose row is gone, whose
stamp no longer matches (the password was changed or reset elsewhere) or whose account is gone.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.requests import Request

from gateway.csrf import renew_csrf_token
from gateway.i18n import N_, Message
from gateway.store.integrations import Integration, get_integration
from gateway.store.sessions import create_login_session, end_login_session, get_session_state

SESSION_ACCOUNT = "account_id"
SESSION_STAMP = "pw_stamp"
SESSION_TOKEN = "sid"  # noqa: S105 - the session key's name
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LoginRequired(Exception):
    """Raised by `require_account_id`; the app answers with a redirect to the login page."""


def password_stamp(password_changed_at: datetime | None) -> int:
    """A short value that changes with every password change: microseconds since 1970 (0: never set)."""
    if password_changed_at is None:
        return 0
    return (password_changed_at - _EPOCH) // timedelta(microseconds=1)


async def login_session(
    request: Request, conn: AsyncConnection, account_id: int, *, password_changed_at: datetime | None = None
) -> str:
    """Start a fresh session for `account_id` (nothing from the anonymous session survives, new CSRF token) and
    record it on the server; returns its token (for `end_account_sessions(keep_token=...)`).

    `password_changed_at` is the account's, as stored: the session lasts until it changes or its row is deleted.
    """
    token = secrets.token_urlsafe(32)
    await create_login_session(conn, account_id=account_id, token=token)
    request.session.clear()
    request.session[SESSION_ACCOUNT] = account_id
    request.session[SESSION_STAMP] = password_stamp(password_changed_at)
    request.session[SESSION_TOKEN] = token
    renew_csrf_token(request)
    return token


def session_token(request: Request) -> str:
    value = request.session.get(SESSION_TOKEN)
    return value if isinstance(value, str) else ""


def logout_session(request: Request) -> None:
    """Forget the session in this browser only; `end_session` also ends it on the server."""
    request.session.clear()


async def end_session(request: Request, conn: AsyncConnection) -> None:
    """Log out: the server forgets the login (a copy of the cookie stops working) and the browser forgets it too."""
    token = session_token(request)
    if token:
        await end_login_session(conn, token=token)
    logout_session(request)


def current_account_id(request: Request) -> int | None:
    value = request.session.get(SESSION_ACCOUNT)
    return value if isinstance(value, int) else None


async def stale_session(request: Request, conn: AsyncConnection) -> Message | None:
    """Why the logged-in session must end (account deleted, password changed since login, session ended on the
    server); None if it may go on. One primary-key query."""
    account_id = current_account_id(request)
    if account_id is None:
        return None
    state = await get_session_state(conn, account_id=account_id, token=session_token(request))
    if state is None:
        return N_("You were logged out because the account was deleted.")
    if request.session.get(SESSION_STAMP) != password_stamp(state.password_changed_at):
        return N_("You were logged out because the password was changed.")
    if not state.alive:
        return N_("Your session has ended. Log in again.")
    return None


def require_account_id(request: Request) -> int:
    account_id = current_account_id(request)
    if account_id is None:
        raise LoginRequired
    return account_id


async def require_integration(request: Request, conn: AsyncConnection, integration_id: int) -> Integration:
    """The integration named in the URL, if the logged-in account owns it; 404 otherwise (no existence leak)."""
    account_id = require_account_id(request)
    integration = await get_integration(conn, integration_id=integration_id, account_id=account_id)
    if integration is None:
        raise HTTPException(status_code=404, detail="Not found")
    return integration
