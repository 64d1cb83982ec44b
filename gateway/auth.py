"""Who is logged in, and which integrations they may touch. Pages derive the tenant from here, never from a form.

The session is Starlette's signed cookie (itsdangerous): HttpOnly, SameSite=Lax, Secure in production.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.requests import Request

from gateway.csrf import renew_csrf_token
from gateway.store.integrations import Integration, get_integration

SESSION_ACCOUNT = "account_id"


class LoginRequired(Exception):
    """Raised by `require_account_id`; the app answers with a redirect to the login page."""


def login_session(request: Request, account_id: int) -> None:
    """Start a fresh session for `account_id` (nothing from the anonymous session survives, new CSRF token)."""
    request.session.clear()
    request.session[SESSION_ACCOUNT] = account_id
    renew_csrf_token(request)


def logout_session(request: Request) -> None:
    request.session.clear()


def current_account_id(request: Request) -> int | None:
    value = request.session.get(SESSION_ACCOUNT)
    return value if isinstance(value, int) else None


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
