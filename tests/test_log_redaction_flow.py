"""A whole flow with every secret in play — login, signed webhook, shop API, Exact token renewal, booking — logged at
DEBUG as production JSON lines: no token, password, cookie or key appears, and every line names its request or job."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.logs import configure_logging
from tests.support.servers import FlowSandboxes, run_full_flow


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
