"""Every operator command documents itself with --help, and bad arguments or configuration give usable exit codes."""

from __future__ import annotations

import argparse

import pytest

from gateway.cli import EXIT_CONFIG, EXIT_USAGE, build_parser, main
from gateway.settings import Settings
from tests.support.factories import cli_environ

OPERATOR_GROUPS = ("integrations", "syncs", "keys", "report")


def leaf_commands() -> list[tuple[str, ...]]:
    """Every (group, action) pair registered on the parser, read from the parser itself."""
    commands = []
    root = build_parser()
    groups = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    for group in OPERATOR_GROUPS:
        actions = next(a for a in groups.choices[group]._actions if isinstance(a, argparse._SubParsersAction))
        commands.extend((group, action) for action in actions.choices)
    return commands


def test_every_operator_command_is_registered() -> None:
    assert set(leaf_commands()) >= {
        ("integrations", "list"),
        ("integrations", "pause"),
        ("integrations", "resume"),
        ("integrations", "activate"),
        ("syncs", "list"),
        ("syncs", "retry"),
        ("syncs", "retry-failed"),
        ("syncs", "ignore"),
        ("syncs", "rerun"),
        ("keys", "rotate"),
        ("report", "usage"),
    }


@pytest.mark.parametrize("command", leaf_commands(), ids=" ".join)
def test_every_operator_command_has_help_with_exit_codes(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"], {})
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gateway {' '.join(command)}")
    assert "exit codes:" in out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["report", "usage", "--month", "2026-13"], id="bad-month"),
        pytest.param(["report", "usage"], id="missing-month"),
        pytest.param(["syncs", "retry", "abc"], id="id-not-a-number"),
        pytest.param(["syncs", "retry-failed", "--since", "yesterday"], id="bad-date"),
        pytest.param(["syncs", "list", "--state", "lost"], id="unknown-state"),
        pytest.param(["syncs", "rerun", "--integration", "1", "--from", "5"], id="missing-to"),
    ],
)
def test_bad_arguments_exit_with_the_usage_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv, {})
    assert exit_info.value.code == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def test_a_command_without_configuration_exits_with_the_config_code(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = cli_environ(settings, ENCRYPTION_KEYS="")
    assert main(["syncs", "list"], environ) == EXIT_CONFIG
    assert "ENCRYPTION_KEYS" in capsys.readouterr().err
