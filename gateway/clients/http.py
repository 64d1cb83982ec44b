"""The one way to build an outbound HTTP client (shared by the web app, the worker and the operator CLI)."""

from __future__ import annotations

import httpx

from gateway import __version__

USER_AGENT = f"mww-exact-gateway/{__version__}"


def http_client(*, base_url: str = "", timeout: float = 30.0) -> httpx.AsyncClient:
    """Explicit timeouts, connect retries only, our User-Agent, no redirects followed."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=5.0),
        transport=httpx.AsyncHTTPTransport(retries=1),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )
