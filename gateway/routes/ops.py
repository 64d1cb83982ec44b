"""Operator endpoints: /healthz (process alive), /readyz (database, Redis, schema at head), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import logging
import secrets

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway import metrics
from gateway.clock import utcnow
from gateway.migrations import current_revision, head_revision
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY
from gateway.store.operator import oldest_pending_since

logger = logging.getLogger(__name__)
CHECK_TIMEOUT = 2.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _check_database(request: Request) -> str | None:
    async with request.app.state.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        current = await current_revision(conn)
    head = head_revision()
    return None if current == head else f"schema at {current}, expected {head}: run `gateway migrate`"


async def _check_redis(request: Request) -> str | None:
    await request.app.state.arq.ping()
    return None


async def readyz(request: Request) -> JSONResponse:
    checks = {"database": _check_database, "redis": _check_redis}
    problems: dict[str, str] = {}
    for name, check in checks.items():
        try:
            problem = await asyncio.wait_for(check(request), CHECK_TIMEOUT)
        except Exception as e:
            problem = f"unreachable ({type(e).__name__})"
        if problem:
            problems[name] = problem
    if problems:
        logger.warning("not ready: %s", ", ".join(f"{k}: {v}" for k, v in problems.items()))
        return JSONResponse({"status": "unavailable", "down": problems}, status_code=503)
    return JSONResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok")})


def _metrics_authorised(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition behind `Authorization: Bearer METRICS_TOKEN`; 404 while no token is configured."""
    token = str(request.app.state.settings.metrics_token)
    if not token:
        return PlainTextResponse("Not Found", status_code=404)
    if not _metrics_authorised(request, token):
        return PlainTextResponse("Unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    arq = request.app.state.arq
    depth = {queue: int(await arq.zcard(queue)) for queue in (QUEUE_DEFAULT, QUEUE_PRIORITY)}
    async with request.app.state.engine.connect() as conn:
        oldest = await oldest_pending_since(conn)
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest else None
    body = metrics.render(queue_depth=depth, oldest_pending_age_seconds=age)
    return Response(body, media_type=metrics.CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, name="healthz"),
    Route("/readyz", readyz, name="readyz"),
    Route("/metrics", metrics_endpoint, name="metrics"),
]
