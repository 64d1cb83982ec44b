"""Connecting Exact Online: pick the country, consent at Exact, come back to the callback; and disconnecting.

The integration comes from the URL (connect, disconnect) or from the signed, session-bound state (callback), always
checked against the logged-in account. Every failure ends on a page that says what happened, with status 400.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

from gateway.auth import current_account_id, require_integration
from gateway.clients.errors import ApiError, AuthError
from gateway.csrf import verify_csrf
from gateway.exact_auth import complete_connection, forget_connection
from gateway.exact_oauth import StateError, authorize_url, check_state, new_state
from gateway.i18n import N_, NP_, Message
from gateway.jobs.reconnect import EXACT, resume_after_reconnect
from gateway.pages import Confirmation, confirm_page, flash
from gateway.settings import EXACT_COUNTRIES
from gateway.store.integrations import Integration

logger = logging.getLogger(__name__)

COUNTRY_NAMES = {
    "nl": "Nederland",
    "be": "België / Belgique",
    "de": "Deutschland",
    "uk": "United Kingdom",
    "us": "United States",
    "es": "España",
    "fr": "France",
}


def _page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _connect_page(
    request: Request, integration: Integration, *, error: Message | None = None, status_code: int = 200
) -> Response:
    context = {
        "integration": integration,
        "countries": [(cc, COUNTRY_NAMES[cc]) for cc in EXACT_COUNTRIES],
        "selected": integration.exact_country or "nl",
        "error": error,
    }
    return _page(request, "exact/connect.html", context, status_code)


def _failed(request: Request, message: Message, *, integration_id: int | None = None) -> Response:
    return _page(request, "exact/error.html", {"message": message, "integration_id": integration_id}, 400)


async def connect(request: Request) -> Response:
    """GET: the country choice. POST: a fresh signed state, then off to that country's Exact authorize page."""
    settings = request.app.state.settings
    async with request.app.state.engine.connect() as conn:
        integration = await require_integration(request, conn, request.path_params["integration_id"])
    if request.method == "GET":
        return _connect_page(request, integration)
    form = await verify_csrf(request)
    country = str(form.get("country", "")).strip().lower()
    if country not in EXACT_COUNTRIES:
        return _connect_page(
            request, integration, error=N_("Choose the country of your Exact Online account."), status_code=400
        )
    if not settings.exact_client_id:
        return _connect_page(
            request,
            integration,
            error=N_("This gateway has no Exact Online app registered yet (EXACT_CLIENT_ID). Ask the operator."),
            status_code=400,
        )
    state = await new_state(
        settings,
        request.session,
        request.app.state.arq,
        account_id=integration.account_id,
        integration_id=integration.id,
        country=country,
    )
    return RedirectResponse(authorize_url(settings, country=country, state=state), status_code=303)


async def callback(request: Request) -> Response:
    """Exact sends the browser back here with `code` and `state`, or with `error` when consent was refused."""
    app = request.app.state
    params = request.query_params
    try:
        state = await check_state(
            app.settings, request.session, app.arq, params.get("state"), account_id=current_account_id(request)
        )
    except StateError as e:
        return _failed(request, N_("%(reason)s Start connecting again from the gateway.", reason=e.message))
    async with app.engine.connect() as conn:
        integration = await require_integration(request, conn, state.integration_id)
    if params.get("error"):
        message = N_("You did not give the gateway access to Exact Online, so nothing was connected.")
        return _failed(request, message, integration_id=integration.id)
    code = params.get("code")
    if not code:
        return _failed(request, N_("Exact Online sent no authorisation code."), integration_id=integration.id)
    try:
        await complete_connection(
            engine=app.engine,
            settings=app.settings,
            cipher=app.cipher,
            http=app.http,
            redis=app.arq,
            integration=integration,
            country=state.country,
            code=code,
        )
    except AuthError:
        message = N_(
            "Exact Online did not accept the authorisation. If your Exact Online account is not in %(country)s, "
            "connect again and choose its country; otherwise start again.",
            country=COUNTRY_NAMES[state.country],
        )
        return _failed(request, message, integration_id=integration.id)
    except ApiError as e:
        logger.warning("exact connect for integration %s failed: %s", integration.id, e)
        return _failed(
            request,
            N_("Connecting did not complete: %(reason)s. Try again in a moment.", reason=str(e)),
            integration_id=integration.id,
        )
    flash(request, N_("Exact Online is connected. Choose the administration the orders are booked in."))
    queued = await resume_after_reconnect(app.engine, app.arq, integration_id=integration.id, side=EXACT)
    if queued:
        flash(
            request,
            NP_(
                "%(n)s order that stopped for the lost connection is queued again.",
                "%(n)s orders that stopped for the lost connection are queued again.",
                queued,
            ),
        )
    return RedirectResponse(f"/integrations/{integration.id}/setup", status_code=303)


DISCONNECT_QUESTION = (
    N_("Disconnect Exact Online?"),
    N_(
        "The gateway forgets its access to your administration and books no more orders until you connect again. "
        "Nothing already booked in Exact is touched."
    ),
    N_("Yes, disconnect Exact Online"),
)


async def disconnect(request: Request) -> Response:
    """GET asks once; POST forgets the tokens here (Exact keeps the app listed until the customer removes it there)."""
    posted = request.method == "POST" and await verify_csrf(request) is not None
    async with request.app.state.engine.begin() as conn:
        integration = await require_integration(request, conn, request.path_params["integration_id"])
        if not posted:
            title, text, button = DISCONNECT_QUESTION
            action = str(request.url_for("exact_disconnect", integration_id=integration.id))
            cancel = str(request.url_for("connections", integration_id=integration.id))
            return confirm_page(
                request, integration, Confirmation(title, text, button, action, cancel), tab="connections"
            )
        await forget_connection(conn, integration_id=integration.id)
    flash(
        request,
        N_("Exact Online is disconnected. Also remove the app in Exact Online if you no longer use it."),
        "info",
    )
    return RedirectResponse(str(request.url_for("exact_connect", integration_id=integration.id)), status_code=303)


routes = [
    Mount("/connect/exact", routes=[Route("/callback", callback, name="callback")], name="exact"),
    Route("/integrations/{integration_id:int}/exact/connect", connect, methods=["GET", "POST"], name="exact_connect"),
    Route(
        "/integrations/{integration_id:int}/exact/disconnect",
        disconnect,
        methods=["GET", "POST"],
        name="exact_disconnect",
    ),
]
