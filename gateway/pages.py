"""What every customer page shares: rendering, flash notices, safe redirects, the logged-in account.

No SQL here (that is gateway/store/) and no route (gateway/routes/); routes call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import NoMatchFound
from starlette.templating import Jinja2Templates

from gateway.auth import LoginRequired, current_account_id, logout_session, require_account_id
from gateway.i18n import N_, Message
from gateway.store.accounts import Account, get_account

SESSION_FLASH = "flash"
FLASH_KINDS = ("success", "info", "warning", "error")


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context or {}, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """Post/redirect/get: 303 makes the browser follow with a GET."""
    return RedirectResponse(url, status_code=303)


def flash(request: Request, message: Message, kind: str = "success") -> None:
    """A notice shown once on the next page (kept in the signed session, translated when shown)."""
    notices = list(request.session.get(SESSION_FLASH, []))
    notices.append([kind if kind in FLASH_KINDS else "info", message.to_json()])
    request.session[SESSION_FLASH] = notices[-5:]


def pop_flashes(request: Request) -> list[tuple[str, Message]]:
    notices = request.session.pop(SESSION_FLASH, None) or []
    return [(kind, Message.from_json(data)) for kind, data in notices]


@dataclass(frozen=True)
class Confirmation:
    """A destructive action's question: the page posts to `action` only after the owner pressed `button`."""

    title: Message
    text: Message
    button: Message
    action: str
    cancel: str
    hidden: tuple[tuple[str, str], ...] = ()  # fields the action needs besides the CSRF token


def confirm_page(request: Request, integration: Any, confirmation: Confirmation, *, tab: str) -> Response:
    """The GET side of a destructive action: one question, a button that posts (with CSRF) and a way back."""
    return render(request, "confirm.html", {"integration": integration, "confirm": confirmation, "tab": tab})


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to continue to after login or a switch; anything else (other hosts, `//x`, `/\\x`) → default."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n"):
        return default
    return target


def optional_url(request: Request, name: str, **params: Any) -> str | None:
    """The URL of a route another module may not provide in every build (e.g. the Exact connect pages)."""
    try:
        return str(request.url_for(name, **params))
    except NoMatchFound:
        return None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def require_account(request: Request, conn: AsyncConnection) -> Account:
    """The logged-in account; a session whose account was deleted is ended and sent to the login page."""
    account = await get_account(conn, account_id=require_account_id(request))
    if account is None:
        logout_session(request)
        raise LoginRequired
    return account


ERROR_PAGES: dict[int, tuple[Message, Message]] = {
    403: (
        N_("This form has expired"),
        N_("The form was open too long or came from another site. Go back, reload the page and try again."),
    ),
    404: (N_("This page does not exist"), N_("The address may be mistyped, or the page belongs to another account.")),
    405: (N_("This page does not exist"), N_("The address may be mistyped, or the page belongs to another account.")),
    500: (N_("Something went wrong on our side"), N_("Nothing you did caused this. Try again in a moment.")),
}


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def http_error_page(request: Request, exc: Exception) -> Response:
    """HTTP errors as a page of the site for browsers; plain text for API clients (webhooks, probes)."""
    if not isinstance(exc, HTTPException):
        raise exc
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if not _wants_html(request) or exc.status_code not in ERROR_PAGES:
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    title, text = ERROR_PAGES[exc.status_code]
    return render(request, "errors/error.html", {"title": title, "text": text}, status_code=exc.status_code)


async def server_error_page(request: Request, exc: Exception) -> Response:
    """An unexpected error: a calm page (the traceback goes to the log, never to the page)."""
    if not _wants_html(request):
        return PlainTextResponse("Internal Server Error", status_code=500)
    title, text = ERROR_PAGES[500]
    try:
        return render(request, "errors/error.html", {"title": title, "text": text}, status_code=500)
    except Exception:  # the page itself failed (template, session): fall back to text
        return PlainTextResponse("Internal Server Error", status_code=500)


def page_context(request: Request) -> dict[str, Any]:
    """Jinja context processor: login state, notices to show once, whether the dev sandbox is on."""
    settings = request.app.state.settings
    return {
        "logged_in": current_account_id(request) is not None,
        "flashes": pop_flashes(request),
        "sandbox_enabled": settings.sandbox_enabled and not settings.is_production,
        "support_email": settings.support_email,
    }
