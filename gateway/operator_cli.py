"""Operator commands of the `gateway` CLI: integrations, syncs, keys and usage reports, across all integrations.

Exit codes (from gateway.cli): 0 done; 1 nothing done (unknown id, wrong state, unreadable secret, failed look-ups);
2 bad arguments; 3 bad configuration. Listing commands print a table, or with --json one JSON array on stdout.
Messages for people go to stderr, data to stdout, so scripts can pipe the output. Each command group lives in its own
module (operator_integrations, operator_syncs, operator_keys, operator_reports); what they share in operator_console.
"""

from __future__ import annotations

from typing import Any

from gateway.operator_accounts import add_account_commands
from gateway.operator_books import add_books_commands
from gateway.operator_console import EPILOG
from gateway.operator_integrations import add_integration_commands
from gateway.operator_keys import add_key_commands
from gateway.operator_reports import add_report_commands
from gateway.operator_syncs import add_sync_commands


def add_operator_commands(sub: Any) -> None:
    """Register the operator subcommands on the `gateway` parser's subparsers."""
    add_integration_commands(_group(sub, "integrations", "list integrations; pause, resume or activate one"))
    add_sync_commands(_group(sub, "syncs", "list, retry, ignore or re-run order syncs across integrations"))
    add_key_commands(_group(sub, "keys", "encryption keys of stored secrets"))
    add_report_commands(_group(sub, "report", "reports for billing"))
    add_books_commands(_group(sub, "books", "check a month's books: every shop order against Exact Online"))
    add_account_commands(_group(sub, "accounts", "customer accounts: end an account's login sessions"))


def _group(sub: Any, name: str, help_text: str) -> Any:
    parser = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)
