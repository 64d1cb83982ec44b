"""Support and connections pages of one integration: contact details, "send my recent failures to support",
each connected account (shop, Exact administration, webhook address) with reconnect and disconnect.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import shop_connection
from gateway.csrf import verify_csrf
from gateway.forms import Errors, Form
from gateway.i18n import N_, request_locale, translate
from gateway.mail import send_mail
from gateway.pages import Confirmation, confirm_page, flash, optional_url, redirect, render, require_account
from gateway.routes.dashboard import connection_problems, load_integration
from gateway.store import orders

logger = logging.getLogger(__name__)
RECENT_FAILURES = 20
MESSAGE_MAX = 2000
SANDBOX_SUPPORT = "support@sandbox.invalid"  # no such mailbox: with the sandbox on, the outbox page shows it


async def support(request: Request) -> Response:
    """Operator contact details; POST mails the integration's recent failures (and a note) to support."""
    settings = request.app.state.settings
    engine = request.app.state.engine
    values: dict[str, object] = {}
    errors: Errors = {}
    async with engine.begin() as conn:
        account = await require_account(request, conn)
        integration = await load_integration(request, conn)
        failures, _ = await orders.list_syncs(
            conn,
            integration_id=integration.id,
            states=("failed", "needs_attention", "needs_review", "retrying"),
            limit=RECENT_FAILURES,
        )
    if request.method == "POST":
        form = Form(await verify_csrf(request))
        form.text("message", required=False, max_length=MESSAGE_MAX)
        # Without a support address the demo's message goes to the sandbox outbox, where the newcomer can read it.
        to = settings.support_email or (SANDBOX_SUPPORT if settings.sandbox_enabled else "")
        if not to:
            form.error("message", N_("No support address is configured for this gateway."))
        values, errors = form.values, form.errors
        if not errors:
            body = request.app.state.templates.get_template("mail/support.txt").render(
                account=account,
                integration=integration,
                failures=failures,
                message=values["message"],
                problems=[translate("en", p) for p in connection_problems(integration)],
            )
            subject = f"Support request: integration {integration.id} ({integration.shop_name or 'no shop yet'})"
            await send_mail(engine, settings, to=to, subject=subject, body=body)
            logger.info("support request sent for integration %s with %s failures", integration.id, len(failures))
            flash(request, N_("Sent. Support replies to %(email)s.", email=account.email))
            return redirect(str(request.url_for("support", integration_id=integration.id)))
    context = {
        "integration": integration,
        "failures": failures,
        "values": values,
        "errors": errors,
        "support_phone": settings.support_phone,
        "tab": "support",
    }
    return render(request, "dashboard/support.html", context, status_code=400 if errors else 200)


async def connections(request: Request) -> Response:
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    context = {
        "integration": integration,
        "exact_connect_url": optional_url(request, "exact_connect", integration_id=integration.id),
        "exact_disconnect_url": optional_url(request, "exact_disconnect", integration_id=integration.id),
        "tab": "connections",
    }
    return render(request, "dashboard/connections.html", context)


SHOP_DISCONNECT_QUESTION = (
    N_("Disconnect the shop?"),
    N_(
        "The gateway deletes the shop token and reads no more orders from your shop until you paste a token again. "
        "Nothing already booked in Exact is touched."
    ),
    N_("Yes, disconnect the shop"),
)


async def connections_shop_disconnect(request: Request) -> Response:
    """GET asks once; POST forgets the shop token and stops reading the shop (the page reminds the owner to revoke
    it in the shop too)."""
    posted = request.method == "POST" and await verify_csrf(request) is not None
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        if not posted:
            title, text, button = SHOP_DISCONNECT_QUESTION
            action = str(request.url_for("connections_shop_disconnect", integration_id=integration.id))
            cancel = str(request.url_for("connections", integration_id=integration.id))
            return confirm_page(
                request, integration, Confirmation(title, text, button, action, cancel), tab="connections"
            )
        await shop_connection.revoke_shop(conn, integration_id=integration.id)
    flash(
        request,
        N_(
            "The shop is disconnected and its token is deleted here. Also delete the token in your Mijnwebwinkel admin."
        ),
        "info",
    )
    return redirect(str(request.url_for("connections", integration_id=integration.id)))


WEBHOOK_REMOVE_QUESTION = (
    N_("Remove the webhook address?"),
    N_(
        "Pushes to the old address are refused from now on. The shop is still read every few minutes, so no order is "
        "missed. You can create a new address at any time."
    ),
    N_("Yes, remove the webhook address"),
)


async def connections_webhook_remove(request: Request) -> Response:
    """Asks once before the webhook address is removed; the button posts to connections_webhook."""
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
    title, text, button = WEBHOOK_REMOVE_QUESTION
    action = str(request.url_for("connections_webhook", integration_id=integration.id))
    cancel = str(request.url_for("connections", integration_id=integration.id))
    question = Confirmation(title, text, button, action, cancel, hidden=(("action", "remove"),))
    return confirm_page(request, integration, question, tab="connections")


async def connections_webhook(request: Request) -> Response:
    """Create a new webhook address (and signing secret). Shown once, in this response: they are stored hashed or
    encrypted and can never be shown again."""
    data = await verify_csrf(request)
    async with request.app.state.engine.begin() as conn:
        integration = await load_integration(request, conn)
        if data.get("action") == "remove":
            await shop_connection.remove_webhook_key(conn, integration_id=integration.id)
            await shop_connection.remove_signing_secret(conn, integration_id=integration.id)
            flash(request, N_("The webhook address is removed; the shop is still read every few minutes."), "info")
            return redirect(str(request.url_for("connections", integration_id=integration.id)))
        key = await shop_connection.rotate_webhook_key(conn, integration_id=integration.id)
        secret = await shop_connection.rotate_signing_secret(
            conn, integration_id=integration.id, cipher=request.app.state.cipher
        )
    context = {
        "integration": integration,
        "webhook_url": shop_connection.webhook_url(request.app.state.settings, key),
        "signing_secret": secret,
        "locale": request_locale(request),
        "tab": "connections",
    }
    response = render(request, "dashboard/webhook_created.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response


_BASE = "/integrations/{integration_id:int}"
routes = [
    Route(_BASE + "/support", support, name="support", methods=["GET", "POST"]),
    Route(_BASE + "/connections", connections, name="connections"),
    Route(
        _BASE + "/connections/shop/disconnect",
        connections_shop_disconnect,
        name="connections_shop_disconnect",
        methods=["GET", "POST"],
    ),
    Route(_BASE + "/connections/webhook", connections_webhook, name="connections_webhook", methods=["POST"]),
    Route(_BASE + "/connections/webhook/remove", connections_webhook_remove, name="connections_webhook_remove"),
]
