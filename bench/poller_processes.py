"""The processes of `python -m bench poller`: the slow, recording sandbox shop and a counting `gateway worker`.

python -m bench.poller_processes serve --port P --shops N --latency S
python -m bench.poller_processes work STATS_FILE      (settings from the environment, like `gateway worker`)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.sandbox.mww_seed import SANDBOX_PARTNER_TOKEN

TOKEN = "bench-poll-{:06d}"  # noqa: S105 - a loopback benchmark value


# --- the served side --------------------------------------------------------------------------------------------


class SlowRecordingShop:
    """ASGI wrapper around the sandbox: every API call waits `latency`; each order listing is recorded per token."""

    def __init__(self, app: Any, latency: float) -> None:
        self.app, self.latency = app, latency
        self.polls: dict[str, list[float]] = defaultdict(list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/_bench/polls":
            from starlette.responses import JSONResponse

            body = {"polls": self.polls, "total": sum(len(t) for t in self.polls.values())}
            if scope["method"] == "POST":
                self.polls = defaultdict(list)
            await JSONResponse(body)(scope, receive, send)
            return
        if path == "/v1/orders":
            token = parse_qs(scope["query_string"].decode()).get("token", [""])[0]
            self.polls[token].append(time.time())
        if path.startswith("/v1/"):
            await asyncio.sleep(self.latency)
        await self.app(scope, receive, send)


def serve(argv: list[str]) -> int:
    import uvicorn

    from gateway.sandbox.mijnwebwinkel import create_mww_sandbox
    from gateway.sandbox.mww_seed import SandboxShop

    parser = argparse.ArgumentParser(prog="bench.poller serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shops", type=int, required=True)
    parser.add_argument("--latency", type=float, required=True)
    args = parser.parse_args(argv)
    app = create_mww_sandbox(faults_enabled=False)
    for n in range(args.shops):
        token = TOKEN.format(n)
        app.state.sandbox.shops[token] = SandboxShop(token, SANDBOX_PARTNER_TOKEN, True, {"name": token}, {})
    config = uvicorn.Config(
        SlowRecordingShop(app, args.latency), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )
    uvicorn.Server(config).run()
    return 0


# --- a worker process ------------------------------------------------------------------------------------------


def work(argv: list[str]) -> int:
    """`gateway worker`, counting its database statements and transactions and its Redis round trips; the counts go
    to STATS_FILE on exit."""
    from redis.asyncio.connection import AbstractConnection
    from sqlalchemy import event

    from gateway.jobs import worker as worker_module
    from gateway.logs import configure_logging
    from gateway.settings import load_settings

    settings = load_settings()
    configure_logging(level=settings.log_level, fmt="console")
    counts = {"statements": 0, "transactions": 0, "round_trips": 0}
    from gateway.db import create_engine as real_create_engine  # what gateway.jobs.worker calls

    real_send = AbstractConnection.send_packed_command

    async def counting_send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counts["round_trips"] += 1  # one write per command, or per pipeline: then one read of the answers
        await real_send(self, command, check_health)

    AbstractConnection.send_packed_command = counting_send  # type: ignore[method-assign]

    def counting_engine(url: str, **kwargs: Any) -> AsyncEngine:
        engine = real_create_engine(url, **kwargs)

        def statement(*_: Any) -> None:
            counts["statements"] += 1

        def transaction(*_: Any) -> None:
            counts["transactions"] += 1

        event.listen(engine.sync_engine, "before_cursor_execute", statement)
        event.listen(engine.sync_engine, "begin", transaction)
        return engine

    worker_module.create_engine = counting_engine  # type: ignore[attr-defined]
    try:
        if os.environ.get("BENCH_POLLER_PROFILE"):  # a CPU profile of the worker: BENCH_POLLER_PROFILE=path
            import cProfile

            with cProfile.Profile(time.process_time) as profile:  # CPU time, not waiting
                asyncio.run(worker_module.run_workers(settings))
            profile.dump_stats(f"{os.environ['BENCH_POLLER_PROFILE']}.{os.getpid()}")
        else:
            asyncio.run(worker_module.run_workers(settings))
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        counts["cpu_ms"] = int((usage.ru_utime + usage.ru_stime) * 1000)
        Path(argv[0]).write_text(json.dumps(counts))
    return 0


def main(argv: list[str]) -> int:
    return serve(argv[1:]) if argv[:1] == ["serve"] else work(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
