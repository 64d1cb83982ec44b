"""`gateway demo`: everything on one laptop. Finds or starts Redis, migrates, and runs the sandboxes, the web app and
the worker in one process until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from urllib.parse import urlsplit

import uvicorn

from gateway import migrations
from gateway.app import create_app
from gateway.db import create_engine
from gateway.demo_shop import seed_demo_shop
from gateway.jobs.worker import create_worker
from gateway.local_redis import PrivateRedis, RedisUnavailable, reachable, start_private_redis
from gateway.passwords import hash_password
from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY
from gateway.sandbox_runner import SandboxPorts, sandbox_servers, sandbox_settings
from gateway.settings import Settings
from gateway.store.accounts import ensure_account, set_locale

logger = logging.getLogger("gateway.demo")


def _redis_for_demo(settings: Settings) -> tuple[Settings, PrivateRedis | None]:
    parts = urlsplit(settings.redis_url)
    if reachable(parts.hostname or "127.0.0.1", parts.port or 6379):
        return settings, None
    private = start_private_redis(appendonly=True)
    logger.info("no Redis at the configured REDIS_URL; started a private redis-server on port %s", private.port)
    return dataclasses.replace(settings, redis_url=private.url), private


class _OneLinePerEvent(logging.Filter):
    """Three uvicorn servers share one process and one logger: each would announce the process starting and
    stopping; one line per event is enough (the "running on" lines differ by port and all pass)."""

    PROCESS_LINES = ("Started server process", "Finished server process", "Shutting down", "Waiting for")

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith(self.PROCESS_LINES):
            return True
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


async def _serve(settings: Settings, port: int, ports: SandboxPorts) -> None:
    logging.getLogger("uvicorn.error").addFilter(_OneLinePerEvent())
    servers = [uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))]
    servers += sandbox_servers(settings, ports)
    workers = [
        create_worker(settings, queue_name=q, handle_signals=False, with_cron=q == QUEUE_DEFAULT)
        for q in (QUEUE_PRIORITY, QUEUE_DEFAULT)
    ]
    worker_tasks = [asyncio.create_task(w.async_run()) for w in workers]
    print(f"\n  Gateway running at {settings.public_url}/  (Ctrl-C stops everything)\n", flush=True)  # noqa: T201
    stop_all = asyncio.create_task(_stop_together(servers))
    seeding = asyncio.create_task(_seed_when_up(settings, servers)) if settings.sandbox_enabled else None
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        stop_all.cancel()
        if seeding is not None:
            seeding.cancel()
        # Let running jobs finish (as `gateway worker` does on SIGTERM), then close.
        for worker in workers:
            worker.handle_sig_wait_for_completion(signal.SIGINT)
        await asyncio.gather(*worker_tasks, return_exceptions=True)
        for worker in workers:
            with contextlib.suppress(Exception):
                await worker.close()


async def _seed_when_up(settings: Settings, servers: list[uvicorn.Server]) -> None:
    """Once every server listens, give the demo login its ready shop (gateway/demo_shop.py)."""
    while not all(s.started for s in servers):  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.1)
    try:
        await seed_demo_shop(settings, DEMO_EMAIL)
    except Exception:  # the demo still runs; the login then starts from an empty account
        logger.exception("the demo shop could not be set up")


async def _stop_together(servers: list[uvicorn.Server]) -> None:
    """Each uvicorn server catches Ctrl-C for itself only; when one stops, stop them all."""
    while not any(s.should_exit for s in servers):  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.1)
    for server in servers:
        server.should_exit = True


DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the published demo login, dev mode only
NO_LOCALE = ""  # not one of i18n.LOCALES: the login leaves the session's language as it is


async def _ensure_demo_login(settings: Settings) -> bool:
    """Create the demo account once; an existing one keeps whatever password its owner set."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            account, created = await ensure_account(conn, email=DEMO_EMAIL, password_hash=hash_password(DEMO_PASSWORD))
            if created:  # no language of its own: logging in keeps the page's, until the visitor picks one
                await set_locale(conn, account_id=account.id, locale=NO_LOCALE)
    finally:
        await engine.dispose()
    return created


def run_demo(settings: Settings, *, port: int, ports: SandboxPorts | None = None) -> int:
    """Run the demo until Ctrl-C/SIGTERM; the sandboxes listen on `ports` and the gateway is pointed at them."""
    ports = ports or SandboxPorts()
    try:
        settings, private = _redis_for_demo(settings)
    except RedisUnavailable as e:
        print(f"gateway demo: {e}")  # noqa: T201
        return 1
    settings = dataclasses.replace(settings, public_url=f"http://127.0.0.1:{port}")
    if settings.sandbox_enabled:
        settings = sandbox_settings(settings, ports)
    try:
        migrations.upgrade(settings.database_url)
        created = asyncio.run(_ensure_demo_login(settings))
        print(  # noqa: T201
            f"\n  Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}"
            + ("" if created else " (unless you changed it)")
            + f"\n  Sandbox shop (change order statuses here): http://127.0.0.1:{ports.mww}/sandbox"
            f"\n  Sandbox Exact bookings (JSON): http://127.0.0.1:{ports.exact}/_sandbox/state",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, port, ports))
    finally:
        if private is not None:
            private.stop()
    print("gateway demo stopped")  # noqa: T201
    return 0
