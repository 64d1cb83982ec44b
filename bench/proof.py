"""`make proof` / `make proof-fast`: the gateway under load, faults and bad input, with figures.

    python -m bench.proof [--fast] [--database postgres|sqlite] [--only NAME,...] [--skip NAME,...] [--json PATH]

Starts a private stack (bench/harness.py: Redis, a fresh database, both sandboxes, `gateway serve`, `gateway
worker`), then: webhook intake load; end-to-end booking with Exact's limits off and on; every fault scenario
(bench/faults.py); a barrage of bad requests; a scan of Redis and the logs for secrets. Prints one table and exits
non-zero when any assertion failed. Phases: load, e2e, faults (or scenario names), bad_input, secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.bad_input import BadInputResult, barrage
from bench.harness import DEFAULT_ADMIN_URL, Stack, StackOptions
from bench.load import LoadResult, run_load
from bench.outages import SCENARIOS
from bench.runs import OrderRun, Outcome, Profile, ProofContext
from bench.secrets_scan import scan_for_secrets
from bench.shops import ShopFactory, event_count, notice, order_rows
from bench.table import render
from gateway.queue import create_arq_pool
from gateway.store.integrations import update_integration

FULL = Profile(
    name="full",
    load_rate=1000,
    load_seconds=60,
    load_concurrency=16,
    e2e_orders=5000,
    e2e_shops=50,
    workers=2,
    fault_shops=4,
    fault_per_shop=25,
    notice_rate=25,
    settle_within=240,
    recovery_within=480,
    hang_seconds=35,
    outage_seconds=90,
    bad_inputs=2000,
)
FAST = Profile(
    name="fast",
    load_rate=200,
    load_seconds=5,
    load_concurrency=8,
    e2e_orders=200,
    e2e_shops=5,
    workers=1,
    fault_shops=2,
    fault_per_shop=10,
    notice_rate=10,
    settle_within=90,
    recovery_within=420,
    hang_seconds=3,
    outage_seconds=20,
    bad_inputs=200,
)
EXACT_LIMITS_ON = {"minutely": 60, "daily": 5000}  # Exact's real per-administration limits (docs/exact.md)
NO_LIMIT = 1_000_000


@dataclass
class ProofReport:
    profile: str
    database: str
    load: dict[str, Any] = field(default_factory=dict)
    e2e: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Outcome] = field(default_factory=list)
    bad_input: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return sum(o.lost for o in self.faults) + sum(int(e["lost"]) for e in self.e2e)

    @property
    def duplicated(self) -> int:
        return sum(o.duplicated for o in self.faults) + sum(int(e["duplicated"]) for e in self.e2e)

    @property
    def passed(self) -> bool:
        return not self.problems and all(o.passed for o in self.faults) and self.lost == 0 and self.duplicated == 0


async def load_phase(ctx: ProofContext, profile: Profile, report: ProofReport) -> None:
    """Webhook intake alone (workers stopped): distinct orders over 10 shops, signed, at the target rate."""
    await ctx.stack.stop_workers()
    shops = await ctx.factory.add_shops(10, label="load")
    result = await run_load(
        lambda i: notice(ctx.stack, shops[i % len(shops)], 200_000 + i),
        count=int(profile.load_rate * profile.load_seconds),
        rate=profile.load_rate,
        concurrency=profile.load_concurrency,
        max_seconds=profile.load_seconds,
    )
    stored = await event_count(ctx.engine, [s.integration_id for s in shops])
    report.load = _load_figures(result) | {"stored": stored, "memory_kb": ctx.stack.memory()}
    if result.errors:
        report.problems.append(f"load: {result.errors} notices failed or were refused ({dict(result.statuses)})")
    if stored != result.statuses.get(202, 0):
        report.problems.append(f"load: {result.statuses.get(202, 0)} notices accepted but {stored} stored")
    async with ctx.engine.begin() as conn:  # their orders do not exist in the shop: keep them out of the next phases
        for shop in shops:
            await update_integration(conn, integration_id=shop.integration_id, state="paused")
    await ctx.stack.redis_command("FLUSHALL")


def _load_figures(result: LoadResult) -> dict[str, Any]:
    return {
        "target_rate": result.target_rate,
        "achieved_rate": round(result.achieved_rate, 1),
        "sent": result.sent,
        "seconds": round(result.duration, 1),
        "p50_ms": round(result.percentile(50) * 1000, 1),
        "p99_ms": round(result.percentile(99) * 1000, 1),
        "errors": result.errors,
    }


async def set_exact_limits(ctx: ProofContext, profile: Profile, *, on: bool) -> None:
    """Limits on: Exact's real 60 a minute and 5,000 a day per administration, in the sandbox and in the gateway's
    rate governor (the workers restart with them). Off: both effectively unlimited."""
    limits = EXACT_LIMITS_ON if on else {"minutely": NO_LIMIT, "daily": NO_LIMIT}
    await ctx.http.post(ctx.stack.url("exact") + "/_proof/limits", json=limits)
    await ctx.stack.stop_workers()
    ctx.stack.worker_env = {"EXACT_MINUTELY_LIMIT": str(limits["minutely"]), "EXACT_DAILY_LIMIT": str(limits["daily"])}
    for _ in range(profile.workers):
        await ctx.stack.start_worker()


async def e2e_phase(ctx: ProofContext, profile: Profile, report: ProofReport, *, limits_on: bool) -> None:
    await set_exact_limits(ctx, profile, on=limits_on)
    label = "e2e-on" if limits_on else "e2e-off"
    run = await OrderRun.create(ctx, label, shops=profile.e2e_shops, per_shop=profile.e2e_orders // profile.e2e_shops)
    calls_before = await _exact_calls(ctx)
    await run.send_notices(rate=200, concurrency=8)
    settled = await run.settle(within=profile.e2e_orders * 0.5 + 120)
    outcome = await run.verify()
    rows = await order_rows(ctx.engine, run.integration_ids)
    latencies = sorted(run.latencies(rows))
    booked = [r.booked_at.timestamp() for r in rows if r.booked_at is not None]
    first_notice = min(run.sent_at.values(), default=0.0)
    span = (max(booked) - first_notice) if booked else 0.0
    calls = {k: v - calls_before.get(k, 0) for k, v in (await _exact_calls(ctx)).items()}
    report.e2e.append(
        {
            "limits": f"on ({EXACT_LIMITS_ON['minutely']}/min)" if limits_on else "off",
            "orders": run.expected,
            "shops": len(run.shops),
            "orders_per_s": round(len(booked) / span, 1) if span else 0.0,
            "p50_s": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "slowest_s": round(latencies[-1], 1) if latencies else None,
            "booked_once": outcome.booked_once,
            "lost": outcome.lost,
            "duplicated": outcome.duplicated,
            "exact_429": calls.get("429", 0),
            "exact_calls": sum(calls.values()),
            "memory_kb": ctx.stack.memory(),
        }
    )
    if not settled or not outcome.passed:
        report.problems += [f"{label}: {p}" for p in outcome.problems[:10]] or [f"{label}: orders did not settle"]


async def _exact_calls(ctx: ProofContext) -> dict[str, int]:
    response = await ctx.http.get(ctx.stack.url("exact") + "/_proof/documents?divisions=0")
    return dict(response.json()["calls"])


async def faults_phase(
    ctx: ProofContext, profile: Profile, report: ProofReport, names: set[str], database: str
) -> None:
    await set_exact_limits(ctx, profile, on=True)
    for scenario in SCENARIOS:
        if scenario.name not in names or (scenario.postgres_only and database != "postgres"):
            continue
        started = time.monotonic()
        ctx.phase = scenario.name
        try:
            outcome = await scenario.run(ctx, profile)
        except Exception as e:  # a crashed scenario is a failed one; the others still run and the table shows it
            outcome = Outcome(scenario.name, 0, problems=[f"scenario crashed: {type(e).__name__}: {e}"])
        outcome.name = scenario.title
        outcome.seconds = round(time.monotonic() - started, 1)
        report.faults.append(outcome)
        print(f"  {scenario.name}: {'ok' if outcome.passed else 'FAILED'} in {outcome.seconds:.0f} s", flush=True)


async def bad_input_phase(ctx: ProofContext, profile: Profile, report: ProofReport) -> None:
    (shop,) = await ctx.factory.add_shops(1, label="bad")
    result: BadInputResult = await barrage(ctx, shop, count=profile.bad_inputs)
    report.bad_input = {"tried": result.tried, "statuses": dict(result.statuses), "server_errors": result.server_errors}
    report.problems += [f"bad input: {p}" for p in result.problems[:10]]


async def secrets_phase(ctx: ProofContext, report: ProofReport) -> None:
    found = await scan_for_secrets(ctx)
    report.secrets = found
    if found["leaks"]:
        report.problems.append(f"secrets found: {found['leaks']}")


PHASES = ("load", "e2e", "faults", "bad_input", "secrets")


async def run_proof(
    profile: Profile,
    *,
    database: str,
    only: set[str],
    skip: set[str],
    admin_url: str = DEFAULT_ADMIN_URL,
    keep_logs: bool = False,
) -> ProofReport:
    """Run the selected phases and scenarios on a fresh stack; always stops the stack."""
    names = {s.name for s in SCENARIOS}
    wanted = (only or set(PHASES) | names) - skip
    if "faults" in wanted:
        wanted |= names - skip
    report = ProofReport(profile.name, database)
    started = time.monotonic()
    options = StackOptions(database=database, admin_url=admin_url, exact_minutely=NO_LIMIT, exact_daily=NO_LIMIT)
    stack = Stack(options)
    await stack.start(workers=profile.workers)
    engine = await stack.engine()
    arq = await create_arq_pool(stack.redis_url)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            ctx = ProofContext(stack, engine, http, ShopFactory(stack, engine, http), arq)
            if "load" in wanted:
                await _phase("load", load_phase(ctx, profile, report))
            if "e2e" in wanted:
                await _phase("e2e, Exact limits off", e2e_phase(ctx, profile, report, limits_on=False))
                await _phase("e2e, Exact limits on", e2e_phase(ctx, profile, report, limits_on=True))
            if wanted & names:
                await _phase("faults", faults_phase(ctx, profile, report, wanted & names, database))
            if "bad_input" in wanted:
                await _phase("bad input", bad_input_phase(ctx, profile, report))
            if "secrets" in wanted:
                await _phase("secrets", secrets_phase(ctx, report))
            report.memory = stack.memory()
            report.notes += ctx.notes
    finally:
        await arq.aclose()
        await engine.dispose()
        await stack.stop(keep_logs=keep_logs or not report.passed)
        if keep_logs or not report.passed:
            report.notes.append(f"process logs kept in {stack.workdir}")
    report.seconds = round(time.monotonic() - started, 1)
    return report


async def _phase(title: str, step: Any) -> None:
    print(f"proof: {title} ...", flush=True)
    started = time.monotonic()
    await step
    print(f"proof: {title} done in {time.monotonic() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proof", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="the CI variant: counts and durations 10-50x smaller")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--only", default="", help="comma-separated phases or scenario names to run")
    parser.add_argument("--skip", default="", help="comma-separated phases or scenario names to leave out")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_ADMIN_URL),
        help="a PostgreSQL server where the proof may create and drop its own database (default: TEST_POSTGRES_URL)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs even when all checks pass")
    args = parser.parse_args(argv)
    profile = FAST if args.fast else FULL
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    options = {"admin_url": args.postgres_url, "keep_logs": args.keep_logs}
    report = asyncio.run(run_proof(profile, database=args.database, only=only, skip=skip, **options))
    print(render(report))
    if args.json:
        data = asdict(report) | {"lost": report.lost, "duplicated": report.duplicated, "passed": report.passed}
        args.json.write_text(json.dumps(data, indent=2, default=str))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
