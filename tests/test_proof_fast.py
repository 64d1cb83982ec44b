"""The proof (bench/proof.py), small, inside the test suite: real processes on loopback — a private Redis, the
run's database backend, both sandboxes, `gateway serve` and `gateway worker` — under webhook load, end-to-end
booking with Exact's limits off and on, a share of the fault scenarios, a bad-input barrage and a secret scan.

The suite runs once per database, so the scenarios are split between the two runs (each well under 90 s on a
2-core machine); `make proof-fast` runs them all, `make proof` at full size.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.proof import ProofReport, run_proof
from bench.runs import Profile
from bench.table import render
from tests.support.environment import database_backend, postgres_admin_url

pytestmark = pytest.mark.slow

CI = Profile(
    name="ci",
    load_rate=100,
    load_seconds=3,
    load_concurrency=8,
    e2e_orders=60,
    e2e_shops=3,
    workers=1,
    fault_shops=2,
    fault_per_shop=8,
    notice_rate=10,
    settle_within=60,
    recovery_within=120,
    hang_seconds=3,
    outage_seconds=10,
    bad_inputs=100,
)
COMMON = {"load", "e2e", "bad_input", "secrets"}
SCENARIOS = {
    "sqlite": {"exact_5xx_burst", "exact_stored_then_500", "exact_slow"},
    "postgres": {"exact_stored_then_timeout", "exact_token_expired", "exact_token_revoked", "shop_token_revoked"},
}


@pytest.fixture(scope="module")
def report(database_url: str) -> ProofReport:
    """One proof run per module on the run's backend (its own database and Redis, not the suite's)."""
    backend = database_backend()
    admin_url = postgres_admin_url()
    return asyncio.run(
        run_proof(CI, database=backend, only=COMMON | SCENARIOS[backend], skip=set(), admin_url=admin_url)
    )


def test_the_verdict_is_what_its_figures_say(report: ProofReport) -> None:
    """`passed` is made of: no problem noted by any phase, every fault scenario held, nothing lost, nothing doubled."""
    assert report.problems == [], render(report)
    assert [o.name for o in report.faults if not o.passed] == [], render(report)
    assert report.lost == sum(o.lost for o in report.faults) + sum(e["lost"] for e in report.e2e) == 0
    assert report.duplicated == sum(o.duplicated for o in report.faults) + sum(e["duplicated"] for e in report.e2e) == 0
    assert report.passed


def test_webhook_intake_held_the_load_without_errors(report: ProofReport) -> None:
    load = report.load
    assert load["target_rate"] == CI.load_rate
    assert load["sent"] == CI.load_rate * CI.load_seconds
    assert load["errors"] == 0, render(report)
    assert load["stored"] == load["sent"]  # every notice accepted was stored, and every one sent was accepted
    assert load["achieved_rate"] > 0.5 * CI.load_rate, render(report)
    assert 0 < load["p50_ms"] <= load["p99_ms"]
    assert 0 < load["seconds"] < 3 * CI.load_seconds
    assert load["memory_kb"]["web"]["VmRSS"] > 0


def test_every_order_was_booked_once_with_limits_off_and_on(report: ProofReport) -> None:
    assert [e["limits"] for e in report.e2e] == ["off", "on (60/min)"]
    for e2e in report.e2e:
        assert (e2e["orders"], e2e["shops"]) == (CI.e2e_orders, CI.e2e_shops)
        assert (e2e["booked_once"], e2e["lost"], e2e["duplicated"]) == (CI.e2e_orders, 0, 0), render(report)
        assert e2e["exact_calls"] >= e2e["orders"]  # at least the document of each order
        assert e2e["orders_per_s"] > 0
        # Seconds from notice to booking, by the harness's clock and the worker's: they agree on the time.
        assert 0 <= e2e["p50_s"] <= e2e["slowest_s"] <= CI.e2e_orders * 0.5 + 120, render(report)


def test_the_fault_scenarios_of_this_backend_ran_and_held(report: ProofReport) -> None:
    assert len(report.faults) == len(SCENARIOS[database_backend()])
    for outcome in report.faults:
        assert outcome.problems == [], render(report)
        assert (outcome.lost, outcome.duplicated) == (0, 0), outcome.name
        assert outcome.orders == CI.fault_shops * CI.fault_per_shop
        assert outcome.booked_once + outcome.terminal == outcome.orders
        assert outcome.figures["fault"], outcome.name  # what was done to the stack is on record
        assert outcome.passed


def test_bad_input_was_refused_cleanly_and_no_secret_leaked(report: ProofReport) -> None:
    assert report.bad_input["tried"] == CI.bad_inputs
    assert sum(report.bad_input["statuses"].values()) == CI.bad_inputs
    assert report.bad_input["server_errors"] == 0
    assert all(400 <= int(status) < 500 for status in report.bad_input["statuses"])
    assert report.secrets["leaks"] == []
    assert report.secrets["redis_keys"] > 0
