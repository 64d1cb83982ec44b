"""create_app(settings) -> Starlette: routes, middleware, exception handlers and the one lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from gateway import __version__
from gateway.auth import LoginRequired
from gateway.crypto import Cipher
from gateway.csrf import csrf_context
from gateway.db import create_engine
from gateway.i18n import i18n_context
from gateway.middleware import (
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    SessionCheckMiddleware,
)
from gateway.pages import http_error_page, page_context, server_error_page
from gateway.queue import create_arq_pool
from gateway.routes import build_routes
from gateway.settings import Settings

logger = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent
USER_AGENT = f"mww-exact-gateway/{__version__}"


def http_client(*, base_url: str = "", timeout: float = 30.0) -> httpx.AsyncClient:
    """The one way to build an outbound client: explicit timeouts, connect retries only, our User-Agent."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=5.0),
        transport=httpx.AsyncHTTPTransport(retries=1),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def create_templates() -> Jinja2Templates:
    return Jinja2Templates(
        directory=str(PACKAGE_DIR / "templates"), context_processors=[csrf_context, i18n_context, page_context]
    )


async def redirect_to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.engine = create_engine(settings.database_url)
        app.state.arq = await create_arq_pool(settings.redis_url)
        app.state.http = http_client()
        if settings.is_dev:
            logger.warning(
                "DEV MODE: generated secrets under ./var/, SQLite at %s; never use this in production",
                settings.database_url,
            )
        try:
            yield
        finally:
            await app.state.http.aclose()
            await app.state.arq.aclose()
            await app.state.engine.dispose()

    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(SecurityHeadersMiddleware, hsts=settings.is_production),
        Middleware(
            BodySizeLimitMiddleware,
            default=settings.form_max_body_bytes,
            limits={"/webhooks/": settings.webhook_max_body_bytes},
        ),
        Middleware(
            SessionMiddleware,
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
    app.state.templates = create_templates()
    return app
