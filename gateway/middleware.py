"""Pure-ASGI middlewares: request id + access log line, request body limit, security headers, served hosts, stale
sessions."""

from __future__ import annotations

import logging
import re
import secrets
import time
from urllib.parse import quote, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import current_account_id, logout_session, stale_session
from gateway.i18n import request_locale, set_request_locale
from gateway.logs import bind, log_context
from gateway.pages import flash

logger = logging.getLogger("gateway.access")
session_logger = logging.getLogger("gateway.sessions")
# Tenant pages live under /integrations/{id}/: their log lines carry the integration id from the first line on.
_TENANT_PATH = re.compile(r"^/integrations/(\d+)(?:/|$)")


class RequestIdMiddleware:
    """Binds a request id to every log line of the request and writes one access line when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        tenant = _TENANT_PATH.match(scope["path"])
        token = bind(request_id=request_id, **({"integration_id": tenant.group(1)} if tenant else {}))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The path only: query strings may carry secrets (OAuth code/state).
            logger.info(
                "%s %s %s %.1fms", scope["method"], scope["path"], status, (time.perf_counter() - started) * 1000
            )
            log_context.reset(token)


class BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuses bodies over a limit with 413, by Content-Length up front or by counting a streamed body.

    Paths under a prefix in `limits` get that limit (webhooks: 64 KiB); all others get `default`.
    """

    def __init__(self, app: ASGIApp, *, default: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.limits = limits or {}

    def _limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_413(send)
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _send_413(send)


async def _send_413(send: Send) -> None:
    body = b'{"error":"request body too large"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Conservative headers on every response; pages need no inline script, so the CSP forbids it. Forms may only
    lead to this site and to `form_targets` (the Exact hosts the connect form redirects to: browsers apply
    form-action to the redirect after a POST too)."""

    def __init__(self, app: ASGIApp, *, hsts: bool, form_targets: tuple[str, ...] = ()) -> None:
        self.app = app
        self.hsts = hsts
        form_action = " ".join(("'self'", *form_targets))
        self.csp = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Content-Security-Policy", self.csp)
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Probes and scrapers address the pod or container directly (Host: 10.0.0.7:8000); these paths build no URLs.
HOST_CHECK_EXEMPT = ("/healthz", "/readyz", "/metrics")


class HostCheckMiddleware:
    """Answers only the configured host names (400 otherwise), so no page or redirect is ever built from a Host an
    attacker sent. With `public_url` (production) the scheme and host of every request are PUBLIC_URL's, so
    absolute URLs (`url_for`, redirects) are built from it even behind a TLS-terminating proxy."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: tuple[str, ...], public_url: str | None = None) -> None:
        self.app = app
        self.checked = TrustedHostMiddleware(self._served, allowed_hosts=list(allowed_hosts), www_redirect=False)
        public = urlsplit(public_url) if public_url else None
        self.public = (public.scheme, public.netloc.encode("latin-1")) if public else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in HOST_CHECK_EXEMPT:
            await self.app(scope, receive, send)
            return
        await self.checked(scope, receive, send)

    async def _served(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.public is not None:
            scheme, netloc = self.public
            headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
            scope = {**scope, "scheme": scheme, "headers": [*headers, (b"host", netloc)]}
        await self.app(scope, receive, send)


class SessionCheckMiddleware:
    """Ends a logged-in session whose account is deleted or whose password changed since login (after a change
    elsewhere, or a reset): the session is cleared and the browser sent to the login page with a notice.

    Sits inside SessionMiddleware, so every page request passes here; one primary-key query per logged-in request
    (static files skipped).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        reason = None
        if current_account_id(request) is not None:
            async with request.app.state.engine.connect() as conn:
                reason = await stale_session(request, conn)
        if reason is None:
            await self.app(scope, receive, send)
            return
        session_logger.info("session of account %s ended: %s", current_account_id(request), reason.text)
        locale = request_locale(request)
        logout_session(request)
        set_request_locale(request, locale)
        flash(request, reason, "warning")
        path = scope["path"]
        target = f"/login?next={quote(path)}" if scope["method"] == "GET" and path != "/login" else "/login"
        await RedirectResponse(target, status_code=303)(scope, receive, send)
