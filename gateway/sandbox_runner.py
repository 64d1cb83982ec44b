"""The sandboxes `gateway demo` serves beside the web app, and the settings that point the gateway at them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Secret

from gateway.sandbox.exact import SANDBOX_CLIENT_ID, create_exact_sandbox
from gateway.sandbox.mijnwebwinkel import SANDBOX_PARTNER_TOKEN, create_mww_sandbox
from gateway.settings import EXACT_COUNTRIES, Settings


@dataclass(frozen=True)
class SandboxPorts:
    mww: int = 8001
    exact: int = 8002


def sandbox_settings(settings: Settings, ports: SandboxPorts) -> Settings:
    """The gateway's settings with both vendor APIs pointed at the local sandboxes (over HTTP, like the real ones)."""
    return dataclasses.replace(
        settings,
        mww_base_url=f"http://127.0.0.1:{ports.mww}/v1",
        exact_hosts=dict.fromkeys(EXACT_COUNTRIES, f"http://127.0.0.1:{ports.exact}"),
        # The sandbox Exact accepts any app; the demo needs one registered to start the OAuth flow.
        exact_client_id=settings.exact_client_id or SANDBOX_CLIENT_ID,
        # The sandbox shop only answers to its own demo partner token.
        mww_partner_token=Secret(SANDBOX_PARTNER_TOKEN),
        sandbox_enabled=True,
    )


def sandbox_apps(settings: Settings) -> dict[str, Starlette]:
    """{"mww": app, "exact": app}: filled in by gateway/sandbox/mijnwebwinkel.py and gateway/sandbox/exact.py."""
    apps: dict[str, Starlette] = {
        "mww": create_mww_sandbox(faults_enabled=settings.sandbox_faults),
        "exact": create_exact_sandbox(faults_enabled=settings.sandbox_faults),
    }
    return apps


def sandbox_servers(settings: Settings, ports: SandboxPorts) -> list[uvicorn.Server]:
    apps = sandbox_apps(settings)
    port_of = {"mww": ports.mww, "exact": ports.exact}
    return [
        # No lifespan (the sandboxes have none): its start-up lines would repeat the gateway's own.
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port_of[name], log_config=None, lifespan="off"))
        for name, app in apps.items()
    ]
