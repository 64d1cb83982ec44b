"""Outages of the processes and stores around the gateway, each with a fresh batch of orders in flight: workers
SIGKILLed, Redis restarted or flushed, the proof database closed (the stand-in for a PostgreSQL restart), the shop
API down while the poller is the only source. Also SCENARIOS: the catalogue of every scenario the proof runs.
"""

from __future__ import annotations

import asyncio
import signal
import time

from bench.faults import (
    Scenario,
    exact_5xx_burst,
    exact_429_storm,
    exact_faults,
    exact_slow,
    exact_stored_then_500,
    exact_stored_then_timeout,
    exact_token_expired,
    exact_token_revoked,
    finish,
    in_flight,
    mww_faults,
    shop_token_revoked,
    webhook_clock_skew,
)
from bench.runs import OrderRun, Outcome, Profile, ProofContext


async def worker_sigkill(ctx: ProofContext, profile: Profile) -> Outcome:
    """SIGKILL every worker while bookings are in flight (Exact answers 0.3 s late to widen the window)."""
    await exact_faults(ctx, latency=0.3)

    async def fault(run: OrderRun) -> None:
        await run.wait_until(lambda c: c.get("booking", 0) > 0, within=profile.settle_within)
        killed = await ctx.stack.stop_workers(signal.SIGKILL)
        in_flight = (await run.counts()).get("booking", 0)
        run.ctx.notes.append(f"worker_sigkill: killed {len(killed)} worker(s) with {in_flight} bookings in flight")
        await exact_faults(ctx, reset=True)
        for _ in range(profile.workers):
            await ctx.stack.start_worker()

    run, struck = await in_flight(ctx, profile, "sigkill", fault)
    return await finish(run, struck, profile.recovery_within)


async def redis_restart(ctx: ProofContext, profile: Profile) -> Outcome:
    """Redis stops (writing its AOF) for a few seconds while notices arrive and bookings run, then comes back.

    The workers must ride it out in-process: one that exited (and was started again by `supervise`) fails it."""
    workers = ctx.stack.live_workers

    async def fault(run: OrderRun) -> None:
        down = await ctx.stack.restart_redis(down_for=profile.outage_seconds / 5)
        run.ctx.notes.append(f"redis_restart: Redis was down {down:.1f} s (AOF kept)")

    run, struck = await in_flight(ctx, profile, "redisrestart", fault)
    outcome = await finish(run, struck, profile.recovery_within)
    for worker in workers:
        if not worker.alive():
            code = worker.process.returncode if worker.process else "?"
            outcome.problems.append(f"{worker.name} exited with {code} during the Redis restart")
    return outcome


async def redis_flushall(ctx: ProofContext, profile: Profile) -> Outcome:
    async def fault(run: OrderRun) -> None:
        await ctx.stack.redis_command("FLUSHALL")

    run, struck = await in_flight(ctx, profile, "flushall", fault)
    return await finish(run, struck, profile.recovery_within)


async def postgres_restart(ctx: ProofContext, profile: Profile) -> Outcome:
    """The stand-in for a PostgreSQL restart that leaves the shared server alone: the proof database refuses new
    connections and every open one is terminated, for a few seconds, then it accepts connections again."""

    async def fault(run: OrderRun) -> None:
        ended = await ctx.stack.database_outage(seconds=profile.outage_seconds / 5)
        run.ctx.notes.append(f"postgres_restart: {ended} connections terminated, database closed for a while")

    run, struck = await in_flight(ctx, profile, "pgrestart", fault)
    return await finish(run, struck, profile.recovery_within)


async def mww_outage_polling(ctx: ProofContext, profile: Profile) -> Outcome:
    """No webhooks: the poller is the only source, and the shop API answers 500 to everything for a while."""
    run = await OrderRun.create(ctx, "mwwdown", shops=profile.fault_shops, per_shop=profile.fault_per_shop)
    await mww_faults(ctx, "500")
    struck = time.monotonic()
    await asyncio.sleep(profile.outage_seconds)
    await mww_faults(ctx, "off")
    outcome = await finish(run, struck, profile.recovery_within)
    outcome.figures["fault"] = f"shop API answered 500 for {profile.outage_seconds:.0f} s; poller only"
    return outcome


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("exact_5xx_burst", "Exact 5xx burst", exact_5xx_burst),
    Scenario("exact_stored_then_500", "Exact stores, then answers 500", exact_stored_then_500),
    Scenario("exact_stored_then_timeout", "Exact stores, then times out", exact_stored_then_timeout),
    Scenario("exact_429_storm", "Exact 429 storm", exact_429_storm, slow=True),
    Scenario("exact_slow", "Exact slow responses (1 s)", exact_slow),
    Scenario("exact_token_expired", "Exact access tokens expired", exact_token_expired),
    Scenario("exact_token_revoked", "Exact consent revoked, reconnected", exact_token_revoked),
    Scenario("shop_token_revoked", "Shop token revoked, replaced", shop_token_revoked),
    Scenario("webhook_clock_skew", "Webhook signature clock skew", webhook_clock_skew, slow=True),
    Scenario("mww_outage_polling", "Mijnwebwinkel outage during polling", mww_outage_polling, slow=True),
    Scenario("worker_sigkill", "Worker SIGKILL mid-booking", worker_sigkill, slow=True),
    Scenario("redis_restart", "Redis restart", redis_restart, slow=True),
    Scenario("redis_flushall", "Redis FLUSHALL", redis_flushall, slow=True),
    Scenario("postgres_restart", "PostgreSQL connections terminated", postgres_restart, postgres_only=True, slow=True),
)
