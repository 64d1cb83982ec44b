"""create_app(settings) -> Starlette: routes, middleware, exception handlers and the one lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.auth import LoginRequired
from gateway.clients.http import http_client
from gateway.crypto import Cipher
from gateway.csrf import csrf_context
from gateway.db import create_engine
from gateway.i18n import i18n_context
from gateway.login_limits import LimitKeys
from gateway.middleware import (
    BodySizeLimitMiddleware,
    HostCheckMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    SessionCheckMiddleware,
)
from gateway.pages import http_error_page, page_context, server_error_page
from gateway.passwords import PasswordWork
from gateway.queue import create_arq_pool
from gateway.routes import build_routes
from gateway.session_cookie import EncryptedSessionMiddleware
from gateway.settings import Settings

logger = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent


def create_templates() -> Jinja2Templates:
    return Jinja2Templates(
        directory=str(PACKAGE_DIR / "templates"), context_processors=[csrf_context, i18n_context, page_context]
    )


async def redirect_to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def proxy_middleware(settings: Settings) -> list[Middleware]:
    """X-Forwarded-For/-Proto are believed only from the proxies the operator names in FORWARDED_ALLOW_IPS; with
    none named (the default) the connecting address is the client (uvicorn's own handling is off: cli.py)."""
    if not settings.forwarded_allow_ips:
        return []
    return [Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.forwarded_allow_ips))]


def served_hosts(settings: Settings) -> tuple[str, ...]:
    """The Host names answered: PUBLIC_URL's, ALLOWED_HOSTS, and outside production the loopback names too (dev and
    the test runs serve on 127.0.0.1 whatever PUBLIC_URL says)."""
    loopback = () if settings.is_production else ("127.0.0.1", "localhost")
    return tuple(dict.fromkeys((settings.public_host, *settings.allowed_hosts, *loopback)))


def form_targets(settings: Settings) -> tuple[str, ...]:
    """Where a form may lead (CSP form-action): this site, and the Exact hosts the connect form redirects to."""
    return tuple(sorted(set(settings.exact_hosts.values())))


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.engine = create_engine(settings.database_url)
        app.state.arq = await create_arq_pool(settings.redis_url)
        app.state.http = http_client()
        app.state.passwords = PasswordWork(settings.password_hash_concurrency)
        if settings.is_dev:
            logger.warning(
                "DEV MODE: generated secrets under ./var/, SQLite at %s; never use this in production",
                settings.database_url,
            )
        try:
            yield
        finally:
            app.state.passwords.close()
            await app.state.http.aclose()
            await app.state.arq.aclose()
            await app.state.engine.dispose()

    middleware = [
        *proxy_middleware(settings),
        Middleware(RequestIdMiddleware),
        Middleware(SecurityHeadersMiddleware, hsts=settings.is_production, form_targets=form_targets(settings)),
        Middleware(
            HostCheckMiddleware,
            allowed_hosts=served_hosts(settings),
            public_url=settings.public_url if settings.is_production else None,
        ),
        Middleware(
            BodySizeLimitMiddleware,
            default=settings.form_max_body_bytes,
            limits={"/webhooks/": settings.webhook_max_body_bytes},
        ),
        Middleware(
            EncryptedSessionMiddleware,
            secret_key=str(settings.secret_key),
            session_cookie="gw_session",
            max_age=14 * 24 * 3600,
            same_site="lax",
            https_only=settings.is_production,
        ),
        Middleware(SessionCheckMiddleware),  # inside the session: ends sessions of a changed password
    ]
    app = Starlette(
        routes=build_routes(settings),
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            LoginRequired: redirect_to_login,
            HTTPException: http_error_page,
            Exception: server_error_page,
        },
    )
    app.state.settings = settings
    app.state.cipher = Cipher(settings.encryption_keys)
    app.state.limit_keys = LimitKeys(str(settings.secret_key))
    app.state.templates = create_templates()
    return app
