"""`gateway integrations ...`: the overview listing and the pause / resume / activate transitions."""

from __future__ import annotations

import functools
import json

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import EXIT_FAILURE, EXIT_OK
from gateway.settings import Settings
from gateway.store import notices, orders
from gateway.store.integrations import get_integration_or_raise
from tests.support.factories import create_account, create_active_integration, run_cli

pytestmark = pytest.mark.anyio


async def gateway(settings: Settings, *argv: str) -> int:
    return await anyio.to_thread.run_sync(functools.partial(run_cli, settings, list(argv)))


async def state_of(engine: AsyncEngine, integration_id: int) -> str:
    async with engine.connect() as conn:
        return (await get_integration_or_raise(conn, integration_id=integration_id)).state


async def test_list_shows_every_integration_with_owner_state_and_order_counts(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        account = await create_account(conn, email="owner@shop.test")
        busy = await create_active_integration(conn, account_id=account, service_level="premium")
        quiet = await create_active_integration(conn, state="paused", exact_connection="reconnect_needed")
        for number in ("1", "2", "3"):
            outcome = await notices.record_notice(
                conn,
                integration_id=busy.id,
                order_number=number,
                status_id=2,
                source="webhook",
                dedupe_key=number,
                selected_statuses=(2,),
            )
            assert outcome.order_sync_id is not None
        await orders.mark_failed(
            conn, integration_id=busy.id, order_sync_id=outcome.order_sync_id, error_kind="auth", message="x"
        )

    assert await gateway(settings, "integrations", "list", "--json") == EXIT_OK

    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {busy.id, quiet.id}
    assert (rows[busy.id]["account_email"], rows[busy.id]["service_level"]) == ("owner@shop.test", "premium")
    assert (rows[busy.id]["queued"], rows[busy.id]["failed"], rows[busy.id]["booked"]) == (2, 1, 0)
    assert (rows[quiet.id]["state"], rows[quiet.id]["exact"]) == ("paused", "reconnect_needed")


async def test_pause_and_resume_move_an_active_integration_and_back(engine: AsyncEngine, settings: Settings) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn)

    assert await gateway(settings, "integrations", "pause", str(integration.id)) == EXIT_OK
    assert await state_of(engine, integration.id) == "paused"
    assert await gateway(settings, "integrations", "pause", str(integration.id)) == EXIT_FAILURE
    assert await gateway(settings, "integrations", "resume", str(integration.id)) == EXIT_OK
    assert await state_of(engine, integration.id) == "active"
    assert await gateway(settings, "integrations", "resume", str(integration.id)) == EXIT_FAILURE


async def test_resume_refuses_an_ended_trial_and_points_to_activate(
    engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, state="trial_ended")

    assert await gateway(settings, "integrations", "resume", str(integration.id)) == EXIT_FAILURE
    assert "gateway integrations activate" in capsys.readouterr().err
    assert await state_of(engine, integration.id) == "trial_ended"


async def test_activate_ends_a_trial_pause_and_records_the_activation(engine: AsyncEngine, settings: Settings) -> None:
    async with engine.begin() as conn:
        integration = await create_active_integration(conn, state="trial_ended")
    assert integration.activated_at is None

    assert await gateway(settings, "integrations", "activate", str(integration.id)) == EXIT_OK

    async with engine.connect() as conn:
        after = await get_integration_or_raise(conn, integration_id=integration.id)
    assert after.state == "active"
    assert after.activated_at is not None
    assert after.next_poll_at == after.activated_at  # polled at the scheduler's next run


@pytest.mark.parametrize("action", ["pause", "resume", "activate"])
async def test_transitions_of_an_unknown_or_unfinished_integration_fail(
    engine: AsyncEngine, settings: Settings, action: str
) -> None:
    async with engine.begin() as conn:
        in_setup = await create_active_integration(conn, state="setup")

    assert await gateway(settings, "integrations", action, "999999") == EXIT_FAILURE
    assert await gateway(settings, "integrations", action, str(in_setup.id)) == EXIT_FAILURE
    assert await state_of(engine, in_setup.id) == "setup"
