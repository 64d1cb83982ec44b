"""`gateway integrations ...`: list every integration; pause, resume or activate one."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.clock import utcnow
from gateway.operator_console import add_command, emit, say
from gateway.settings import Settings
from gateway.store import operator as store
from gateway.store.integrations import get_integration

logger = logging.getLogger("gateway.operator")

# Which states each command moves an integration from, and to.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("active",), "paused"),
    "resume": (("paused",), "active"),
    "activate": (("trial_ended", "paused", "active"), "active"),
}


async def integrations_list(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Every integration with its owner, state, connections and orders by state."""
    async with engine.connect() as conn:
        overviews = await store.list_integration_overviews(conn)
    rows = []
    for o in overviews:
        row = dataclasses.asdict(o)
        for state in ("queued", "retrying", "failed", "needs_attention", "booked"):
            row[state] = o.orders.get(state, 0)
        row["shop"], row["exact"] = o.shop_connection, o.exact_connection
        rows.append(row)
    columns = ("id", "name", "account_email", "state", "service_level", "shop", "exact", "queued", "retrying")
    emit(rows, args, (*columns, "failed", "needs_attention", "booked", "last_polled_at"))
    return EXIT_OK


async def integrations_transition(settings: Settings, engine: AsyncEngine, args: argparse.Namespace) -> int:
    from_states, to_state = TRANSITIONS[args.action]
    now = utcnow()
    values: dict[str, Any] = {"activated_at": now} if args.action == "activate" else {}
    if to_state == "active":
        values["next_poll_at"] = now  # polled at the scheduler's next run, not after an old claim or back-off
    async with engine.begin() as conn:
        integration = await get_integration(conn, integration_id=args.integration_id)
        if integration is None:
            say(f"integration {args.integration_id} does not exist")
            return EXIT_FAILURE
        moved = await store.transition_integration(
            conn, integration_id=integration.id, from_states=from_states, to_state=to_state, **values
        )
    if not moved:
        hint = " (the trial ended: use `gateway integrations activate`)" if integration.state == "trial_ended" else ""
        say(f"integration {integration.id} is {integration.state}; cannot {args.action} it{hint}")
        return EXIT_FAILURE
    logger.info("operator: integration %s %s (was %s)", integration.id, to_state, integration.state)
    say(f"integration {integration.id}: {to_state} (was {integration.state})")
    return EXIT_OK


def add_integration_commands(group: Any) -> None:
    add_command(group, "list", integrations_list, lists=True)
    for name, help_text in (
        ("pause", "stop polling and booking for an integration (active -> paused)"),
        ("resume", "resume a paused integration (paused -> active)"),
        ("activate", "activate after payment: ends a trial pause (trial_ended/paused -> active, sets activated_at)"),
    ):
        parser = add_command(group, name, integrations_transition, help_text=help_text)
        parser.add_argument("integration_id", type=int, metavar="N", help="integration id")
        parser.set_defaults(action=name)
