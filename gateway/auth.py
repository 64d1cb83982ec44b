"""Who is logged in, and which integrations they may touch. Pages derive the tenant from here, never from a form.

The session is Starlette's signed cookie (itsdangerous): HttpOnly, SameSite=Lax, Secure in production. It also
holds a stamp of the account's `password_changed_at`; `SessionCheckMiddleware` ends a session whose stamp no longer
matches (the password was changed or reset elsewhere) or whose account is gone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.requests import Request

from gateway.csrf import renew_csrf_token
from gateway.i18n import N_, Message
from gateway.store.accounts import get_account
from gateway.store.integrations import Integration, get_integration

SESSION_ACCOUNT = "account_id"
SESSION_STAMP = "pw_stamp"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LoginRequired(Exception):
    """Raised by `require_account_id`; the app answers with a redirect to the login page."""


def password_stamp(password_changed_at: datetime | None) -> int:
    """A short value that changes with every password change: microseconds since 1970 (0: never set)."""
    if password_changed_at is None:
        return 0
    return (password_changed_at - _EPOCH) // timedelta(microseconds=1)


def login_session(request: Request, account_id: int, *, password_changed_at: datetime | None = None) -> None:
    """Start a fresh session for `account_id` (nothing from the anonymous session survives, new CSRF token).

    `password_changed_at` is the account's, as stored: the session lasts until it changes.
    """
    request.session.clear()
    request.session[SESSION_ACCOUNT] = account_id
    request.session[SESSION_STAMP] = password_stamp(password_changed_at)
    renew_csrf_token(request)


def logout_session(request: Request) -> None:
    request.session.clear()


def current_account_id(request: Request) -> int | None:
    value = request.session.get(SESSION_ACCOUNT)
    return value if isinstance(value, int) else None


async def stale_session(request: Request, conn: AsyncConnection) -> Message | None:
    """Why the logged-in session must end (account deleted, password changed since login); None if it may go on."""
    account_id = current_account_id(request)
    if account_id is None:
        return None
    account = await get_account(conn, account_id=account_id)
    if account is None:
        return N_("You were logged out because the account was deleted.")
    if request.session.get(SESSION_STAMP) != password_stamp(account.password_changed_at):
        return N_("You were logged out because the password was changed.")
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
