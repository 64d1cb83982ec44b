"""Browser tests: the real gateway under uvicorn, a real arq worker, both sandboxes over HTTP, and Debian's
headless Chromium driven by Playwright. Without chromium they skip with the reason, unless REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.datastructures import Secret

from gateway.local_redis import free_port
from gateway.settings import EXACT_COUNTRIES, Settings

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser(database_url: str, redis_server: str) -> Iterator[Any]:
    """One Chromium per module. Playwright's sync API runs an event loop on this thread while it lives, so it must
    stop before the async tests of other modules run, and the database and Redis (set up with asyncio.run) come
    first."""
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} and REQUIRE_BROWSER=1", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class ServerThread:
    """A Starlette app under uvicorn in a background thread (with its lifespan, unlike a bare sandbox)."""

    def __init__(self, app: Any, port: int, *, lifespan: str = "on") -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class WorkerThread:
    """The two arq workers (priority and default queue) in their own thread and event loop, as in production."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.task: asyncio.Future[Any] | None = None
        self.started = threading.Event()

    def _run(self) -> None:
        from gateway.jobs.worker import create_worker
        from gateway.queue import QUEUE_DEFAULT, QUEUE_PRIORITY

        asyncio.set_event_loop(self.loop)
        workers = [
            create_worker(self.settings, queue_name=queue, handle_signals=False, with_cron=False)
            for queue in (QUEUE_PRIORITY, QUEUE_DEFAULT)
        ]
        self.task = asyncio.gather(*(w.async_run() for w in workers))
        self.started.set()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self.task)
        with warnings.catch_warnings():
            # arq's Worker.close still calls redis-py's deprecated close(); nothing to fix on our side.
            warnings.simplefilter("ignore", DeprecationWarning)
            for worker in workers:
                self.loop.run_until_complete(worker.close())
        self.loop.close()

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        self.started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=15)


@dataclass(frozen=True)
class Live:
    url: str
    mww_url: str
    exact_url: str
    settings: Settings


@pytest.fixture
def live(settings: Settings, clean_state: Settings) -> Iterator[Live]:
    """Sandboxes, the gateway and its worker, wired like `gateway demo` (sandbox settings), on free ports."""
    from gateway.app import create_app
    from gateway.sandbox.exact import create_exact_sandbox
    from gateway.sandbox.mijnwebwinkel import SANDBOX_PARTNER_TOKEN, create_mww_sandbox

    mww_port, exact_port, port = free_port(), free_port(), free_port()
    live_settings = dataclasses.replace(
        settings,
        public_url=f"http://127.0.0.1:{port}",
        mww_base_url=f"http://127.0.0.1:{mww_port}/v1",
        mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN),
        exact_hosts=dict.fromkeys(EXACT_COUNTRIES, f"http://127.0.0.1:{exact_port}"),
        sandbox_enabled=True,
        log_level="WARNING",
    )
    mww = create_mww_sandbox(faults_enabled=True)
    exact = create_exact_sandbox(faults_enabled=True)
    with (
        ServerThread(mww, mww_port, lifespan="off") as mww_server,
        ServerThread(exact, exact_port, lifespan="off") as exact_server,
        ServerThread(create_app(live_settings), port) as gateway,
        WorkerThread(live_settings),
    ):
        yield Live(gateway.url, mww_server.url, exact_server.url, live_settings)


# Every visible form control must have a name a screen reader can read: a <label>, aria-label or aria-labelledby.
UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


def shoot(page: Any, name: str) -> None:
    """Full-page screenshots at desktop and phone width, checking on the way that every control is labelled,
    that the page has one h1 and a lang, and that nothing sticks out sideways on a phone."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state()
    assert page.evaluate(UNLABELLED) == [], f"unlabelled controls on {page.url}"
    assert page.locator("h1").count() >= 1, f"no h1 on {page.url}"
    assert page.locator("html").get_attribute("lang") in ("nl", "en"), page.url
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        if label == "phone":
            assert page.evaluate(OVERFLOW) <= 0, f"{page.url} is wider than a phone"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
