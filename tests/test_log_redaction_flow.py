"""A whole flow with every secret in play — login, signed webhook, shop API, Exact token renewal, booking — logged at
DEBUG as production JSON lines: no token, password, cookie or key appears, and every line names its request or job."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Secret
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.clock import utcnow
from gateway.crypto import Cipher
from gateway.jobs.worker import create_worker
from gateway.logs import configure_logging
from gateway.routes.webhooks import sign
from gateway.sandbox.exact import create_exact_sandbox
from gateway.sandbox.mijnwebwinkel import create_mww_sandbox, create_order
from gateway.sandbox.mww_seed import SANDBOX_PARTNER_TOKEN, SANDBOX_SHOP_TOKEN
from gateway.sandbox_runner import SandboxPorts, sandbox_settings
from gateway.settings import Settings
from gateway.shop_connection import rotate_signing_secret, rotate_webhook_key
from gateway.store import credentials, orders
from tests.factories import PAGE_PASSWORD, ServedApp, create_login, create_sandbox_integration, log_in

METRICS_TOKEN = "metrics-token-flow-0001"
TOKEN_AGE = 700.0  # seconds: the stored Exact access token has expired, so the booking renews it first


@dataclasses.dataclass
class Flow:
    """What a full flow left behind: the served sandboxes' settings, ids, and every secret that was in play."""

    settings: Settings
    integration_id: int
    order_number: str
    secrets: dict[str, str] = dataclasses.field(default_factory=dict)
    scrape: str = ""


FlowSandboxes = tuple[Any, Any, Settings, list[float]]


@pytest.fixture
def flow_sandboxes(settings: Settings) -> Iterator[FlowSandboxes]:
    yield from serve_flow_sandboxes(settings)


def serve_flow_sandboxes(settings: Settings) -> Iterator[FlowSandboxes]:
    """Both sandboxes over HTTP; the Exact one on a clock the test can set back (to issue an already old token)."""
    offset = [0.0]
    mww_app = create_mww_sandbox(faults_enabled=False)
    exact_app = create_exact_sandbox(clock=lambda: time.time() + offset[0], minutely_limit=10_000, daily_limit=100_000)
    with ServedApp(mww_app) as mww, ServedApp(exact_app) as exact:
        served = sandbox_settings(settings, SandboxPorts(mww=mww.port, exact=exact.port))
        served = dataclasses.replace(
            served, exact_minutely_limit=10_000, exact_daily_limit=100_000, metrics_token=Secret(METRICS_TOKEN)
        )
        yield mww_app, exact_app, served, offset


async def run_full_flow(engine: AsyncEngine, redis: ArqRedis, sandboxes: FlowSandboxes) -> Flow:
    """Owner logs in and opens the dashboard; a signed webhook notice arrives; a worker renews the Exact token and
    books the order; the operator scrapes /metrics."""
    mww_app, exact_app, settings, offset = sandboxes
    cipher = Cipher(settings.encryption_keys)
    email = f"owner-{secrets.token_hex(3)}@shop.test"
    offset[0] = -TOKEN_AGE
    async with engine.begin() as conn:
        account_id = await create_login(conn, email=email)
        integration = await create_sandbox_integration(
            conn, exact_app=exact_app, cipher=cipher, account_id=account_id, next_poll_at=utcnow().replace(year=2100)
        )
        old = await credentials.get_credential(
            conn, integration_id=integration.id, kind=credentials.EXACT_OAUTH, cipher=cipher
        )
        webhook_key = await rotate_webhook_key(conn, integration_id=integration.id)
        signing_secret = await rotate_signing_secret(conn, integration_id=integration.id, cipher=cipher)
    offset[0] = 0.0
    state = mww_app.state.sandbox
    number = str(create_order(state, state.main_shop(), "domestic", 2).number)
    flow = Flow(settings, integration.id, number)
    assert old is not None
    flow.secrets.update(
        {
            "old exact tokens": old.secret,
            "webhook key": webhook_key,
            "signing secret": signing_secret,
            "password": PAGE_PASSWORD,
            "shop token": SANDBOX_SHOP_TOKEN,
            "partner token": SANDBOX_PARTNER_TOKEN,
            "exact client secret": str(settings.exact_client_secret),
            "secret key": str(settings.secret_key),
            "encryption key": str(settings.encryption_keys[0]),
            "metrics token": METRICS_TOKEN,
        }
    )
    for name, value in json.loads(old.secret).items():
        if "token" in name:
            flow.secrets[f"old {name}"] = str(value)
    with TestClient(create_app(settings)) as client:
        log_in(client, email)
        flow.secrets["session cookie"] = client.cookies["gw_session"]
        assert client.get(f"/integrations/{integration.id}/dashboard").status_code == 200
        body = json.dumps({"order_number": number, "status": 2}).encode()
        msg_id, stamp = f"msg_{secrets.token_hex(6)}", str(int(time.time()))
        response = client.post(
            f"/webhooks/mijnwebwinkel/{webhook_key}?token={SANDBOX_SHOP_TOKEN}",
            content=body,
            headers={
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": stamp,
                "webhook-signature": f"v1,{sign(signing_secret, msg_id, stamp, body)}",
            },
        )
        assert response.status_code == 202, response.text
        flow.secrets["webhook signature"] = sign(signing_secret, msg_id, stamp, body)
        async with httpx.AsyncClient() as http:
            worker = create_worker(
                settings,
                redis_pool=redis,
                burst=True,
                with_cron=False,
                handle_signals=False,
                ctx={"engine": engine, "http": http},
            )
            assert await worker.run_check() == 1
        scrape = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scrape.status_code == 200, scrape.text
        flow.scrape = scrape.text
    async with engine.connect() as conn:
        sync = await orders.get_sync_by_number(conn, integration_id=integration.id, order_number=number)
        new = await credentials.get_credential(
            conn, integration_id=integration.id, kind=credentials.EXACT_OAUTH, cipher=cipher
        )
    assert sync is not None
    assert sync.state == "booked", sync.last_error
    assert new is not None
    assert new.secret != old.secret  # the token was renewed during the flow
    for name, value in json.loads(new.secret).items():
        if "token" in name:
            flow.secrets[f"new {name}"] = str(value)
    return flow


@contextlib.contextmanager
def json_logging() -> Iterator[None]:
    """Production logging (JSON lines on stderr) at DEBUG, with the library loggers opened up to DEBUG as well.

    Entered inside the test, so the handler writes to the stream capsys captures during the call.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(level="DEBUG", fmt="json")
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "uvicorn.access")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for name, library_level in quiet.items():
            logging.getLogger(name).setLevel(library_level)
        root.handlers[:] = handlers  # the json handler writes to this test's stderr, which closes with the test
        root.setLevel(level)


async def test_a_full_flow_logs_no_secret_and_every_line_names_its_request_or_job(
    engine: AsyncEngine,
    redis: ArqRedis,
    flow_sandboxes: FlowSandboxes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with json_logging():
        flow = await run_full_flow(engine, redis, flow_sandboxes)

    err = capsys.readouterr().err
    not_json = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
    assert not not_json, "\n".join(not_json[:40])
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(lines) > 20, err
    leaks = {name: value for name, value in flow.secrets.items() if value and value in err}
    assert not leaks, f"secrets in the log: {sorted(leaks)}"
    assert "[redacted]" in err  # the shop API URLs and the webhook path were logged, with their secrets blanked

    assert all({"time", "level", "logger", "event"} <= line.keys() for line in lines)
    requests = [line for line in lines if line["logger"] == "gateway.access"]
    assert requests
    assert all("request_id" in line for line in requests)
    tenant_pages = [line for line in requests if f"/integrations/{flow.integration_id}/" in line["event"]]
    assert tenant_pages
    assert all(line["integration_id"] == str(flow.integration_id) for line in tenant_pages)
    [webhook] = [line for line in requests if line["event"].startswith("POST /webhooks/mijnwebwinkel/[redacted] 202")]
    assert (webhook["integration_id"], webhook["order_number"]) == (flow.integration_id, flow.order_number)
    booking = [line for line in lines if line["logger"] == "gateway.jobs.sync_order"]
    assert booking
    for line in booking:
        assert line["job_id"].startswith(f"sync_order:{flow.integration_id}:")
        assert (line["integration_id"], line["order_number"]) == (flow.integration_id, flow.order_number)
    renewal = [line for line in lines if line["event"].startswith("exact token renewed")]
    assert len(renewal) == 1
    assert renewal[0]["job_id"].startswith("sync_order:")
