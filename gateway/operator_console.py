"""What every operator command shares: one engine per command, data on stdout as a table or JSON, messages on
stderr, and the registration of a subcommand whose help is its action's docstring. No command logic here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import create_engine
from gateway.settings import Settings

EPILOG = "exit codes: 0 done; 1 nothing done (unknown id, wrong state, ...); 2 bad arguments; 3 bad configuration"

Action = Callable[[Settings, AsyncEngine, argparse.Namespace], Awaitable[int]]


def _out(text: str = "") -> None:
    print(text)  # noqa: T201 - CLI output


def say(text: str) -> None:
    print(text, file=sys.stderr)  # noqa: T201 - CLI messages


def _run(action: Action) -> Callable[[Settings, argparse.Namespace], int]:
    """Wrap an async action as a CLI handler owning one engine for the command."""

    def handler(settings: Settings, args: argparse.Namespace) -> int:
        async def main() -> int:
            engine = create_engine(settings.database_url)
            try:
                return await action(settings, engine, args)
            finally:
                await engine.dispose()

        return asyncio.run(main())

    return handler


def emit(rows: Sequence[dict[str, Any]], args: argparse.Namespace, columns: Sequence[str]) -> None:
    """Print rows as one JSON array (--json) or as a table of `columns`; "(none)" on stderr when there are none."""
    if getattr(args, "json", False):
        _out(json.dumps(list(rows), default=_json_value))
        return
    if not rows:
        say("(none)")
        return
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    _out("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        _out("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def add_command(
    group: Any, name: str, action: Action, *, lists: bool = False, help_text: str = ""
) -> argparse.ArgumentParser:
    """One subcommand; its help is the action's docstring (first line, without the full stop) unless given."""
    text = help_text or (action.__doc__ or "").strip().splitlines()[0].rstrip(".")
    text = text[:1].lower() + text[1:]
    parser: argparse.ArgumentParser = group.add_parser(name, help=text, description=text, epilog=EPILOG)
    parser.set_defaults(handler=_run(action))
    if lists:
        parser.add_argument("--json", action="store_true", help="print one JSON array instead of a table")
    return parser
