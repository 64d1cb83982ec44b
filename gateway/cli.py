"""The `gateway` command: serve, worker, migrate, check, demo (and the operator commands in operator_cli.py).

Settings are loaded once here and passed down; a SettingsError ends the process with one line naming the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from gateway import __version__, migrations
from gateway.app import create_app
from gateway.checks import run_checks
from gateway.demo import run_demo
from gateway.jobs.worker import run_workers
from gateway.logs import configure_logging
from gateway.sandbox_runner import SandboxPorts
from gateway.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("gateway.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3

Command = Callable[[Settings, argparse.Namespace], int]


def uvicorn_options(settings: Settings, *, host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """How `gateway serve` runs uvicorn. Proxy headers are the app's business (create_app trusts exactly
    FORWARDED_ALLOW_IPS), so uvicorn's own handling, which trusts 127.0.0.1 by default, stays off."""
    return {
        "host": host or settings.host,
        "port": port or settings.port,
        "workers": 1,
        "log_config": None,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 25,
    }


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.migrate:
        cmd_migrate(settings, args)
    uvicorn.run(create_app(settings), **uvicorn_options(settings, host=args.host, port=args.port))
    return EXIT_OK


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(run_workers(settings, burst=args.burst))
    return EXIT_OK


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    revision = getattr(args, "revision", "head") or "head"
    if getattr(args, "down", False):
        migrations.downgrade(settings.database_url, revision)
    else:
        migrations.upgrade(settings.database_url, revision)
    logger.info("database migrated to %s", revision)
    return EXIT_OK


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    problems = asyncio.run(run_checks(settings))
    for name, problem in problems.items():
        print(f"{name}: {problem}", file=sys.stderr)  # noqa: T201 - CLI output
    if problems:
        return EXIT_FAILURE
    print("configuration and connectivity OK")  # noqa: T201 - CLI output
    return EXIT_OK


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    return run_demo(
        settings, port=args.port or settings.port, ports=SandboxPorts(mww=args.mww_port, exact=args.exact_port)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Books Mijnwebwinkel webshop orders into Exact Online. Configuration comes from environment "
        "variables (see README); with none set, the gateway runs in dev mode on ./var/.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the web process (customer pages, webhooks, /healthz, /readyz)")
    serve.add_argument("--host", help="bind address (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PORT or 8000)")
    serve.add_argument("--migrate", action="store_true", help="migrate the database to head before serving")
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser("worker", help="run the arq worker that polls shops and books orders")
    worker.add_argument("--burst", action="store_true", help="process the queued jobs, then exit")
    worker.set_defaults(handler=cmd_worker)

    migrate = sub.add_parser("migrate", help="migrate the database to the newest schema (safe on several replicas)")
    migrate.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    migrate.add_argument("--down", action="store_true", help="downgrade to the revision instead (default: base)")
    migrate.set_defaults(handler=cmd_migrate)

    check = sub.add_parser("check", help="validate configuration and reach the database and Redis; exit 1 if not")
    check.set_defaults(handler=cmd_check)

    demo = sub.add_parser("demo", help="run everything on this machine: sandboxes, web, worker (Ctrl-C stops it)")
    demo.add_argument("--port", type=int, help="web port (default 8000)")
    demo.add_argument("--mww-port", type=int, default=8001, help="sandbox Mijnwebwinkel port (default 8001)")
    demo.add_argument("--exact-port", type=int, default=8002, help="sandbox Exact Online port (default 8002)")
    demo.set_defaults(handler=cmd_demo)

    # Imported here to break a cycle: gateway.operator_cli -> gateway.operator_* -> gateway.cli (the EXIT_* codes).
    from gateway.operator_cli import add_operator_commands

    add_operator_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(environ)
    except SettingsError as e:
        print("gateway: invalid configuration:", file=sys.stderr)  # noqa: T201 - CLI output
        for problem in e.problems:  # one line naming each bad variable (`gateway check` prints the same)
            print(f"gateway: {problem}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_CONFIG
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if args.command == "migrate" and args.down and args.revision == "head":
        args.revision = "base"
    handler: Command = args.handler
    return handler(settings, args)
