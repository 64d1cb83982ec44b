"""The route table: one list assembled from the route modules."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from gateway.routes import (
    account,
    books_check,
    dashboard,
    exact_oauth,
    history,
    ops,
    sandbox_outbox,
    setup,
    setup_exact,
    setup_review,
    support,
    webhooks,
)
from gateway.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def build_routes(settings: Settings) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        *ops.routes,
        *webhooks.routes,
        *account.routes,
        *sandbox_outbox.routes,
        *dashboard.routes,
        *history.routes,
        *books_check.routes,
        *setup.routes,
        *setup_exact.routes,
        *setup_review.routes,
        *support.routes,
        *exact_oauth.routes,
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    return routes
