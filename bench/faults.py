"""Fault scenarios of the two APIs and of tokens and clocks, and the helpers every scenario uses: each runs a fresh
batch of orders, breaks something while they are in flight, and returns the verdict (every order booked exactly
once, or in the terminal state the scenario states, never lost or duplicated).

The sandboxes fail on request through their fault switches (5xx, storing then failing, hangs, 429 storms, latency),
tokens are revoked or issued in the past, signatures carry skewed clocks. Outages of processes and stores are in
bench/outages.py; docs/reliability.md describes each scenario.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from bench.runs import OrderRun, Outcome, Profile, ProofContext
from bench.shops import OrderRow, notice
from gateway import tables
from gateway.exact_auth import store_tokens
from gateway.store import credentials
from gateway.store.integrations import update_integration

Fault = Callable[[ProofContext, Profile], Awaitable[Outcome]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Fault
    postgres_only: bool = False
    slow: bool = False  # recovers through the booking lease (3 min) or the reconcile sweep (2 min + a minute tick)


async def exact_faults(ctx: ProofContext, **switches: Any) -> dict[str, Any]:
    """Set switches of the sandbox Exact's faults (none: just read them); returns what is left of each."""
    response = await ctx.http.post(ctx.stack.url("exact") + "/_sandbox/faults", json=switches)
    response.raise_for_status()
    return dict(response.json())


async def _fired(ctx: ProofContext, outcome: Outcome, counter: str) -> None:
    """A fault that did not fire proves nothing: the scenario fails if its counter was not used up."""
    left = (await exact_faults(ctx))[counter]
    if left:
        outcome.problems.append(f"the fault did not fire fully ({counter}: {left} left)")


async def mww_faults(ctx: ProofContext, mode: str, **options: Any) -> None:
    response = await ctx.http.post(ctx.stack.url("mww") + "/sandbox/faults", json={"mode": mode, **options})
    response.raise_for_status()


# A customer every sandbox administration already has: with it, every POST of a booking is the document itself.
KNOWN_CUSTOMER = {"name": "Jan Jansen", "email": "jan@example.nl"}


async def in_flight(
    ctx: ProofContext,
    profile: Profile,
    name: str,
    fault: Callable[[OrderRun], Awaitable[None]],
    *,
    after: float = 0.2,
    customer: dict[str, str] | None = None,
) -> tuple[OrderRun, float]:
    """Send a batch's notices and strike with `fault` once `after` of the batch is booked (0: before sending).

    Returns the run and the wall time of the strike."""
    run = await OrderRun.create(
        ctx, name, shops=profile.fault_shops, per_shop=profile.fault_per_shop, customer=customer
    )
    if after <= 0:
        await fault(run)
        struck = time.monotonic()
        await run.send_notices(rate=profile.notice_rate)
        return run, struck
    sending = asyncio.create_task(run.send_notices(rate=profile.notice_rate))
    threshold = max(1, int(run.expected * after))
    await run.wait_until(lambda c: c.get("booked", 0) >= threshold, within=profile.settle_within)
    await fault(run)
    struck = time.monotonic()
    await sending
    return run, struck


async def finish(run: OrderRun, struck: float, within: float, **verify: Any) -> Outcome:
    settled = await run.settle(within=within)
    outcome = await run.verify(**verify)
    outcome.figures["recovered_s"] = round(time.monotonic() - struck, 1)
    if not settled:
        outcome.problems.append(f"orders had not settled {within:.0f} s after the fault")
    if run.load is not None and run.load.errors:
        outcome.notes.append(f"{run.load.errors} notices were refused or failed (the poller catches those orders)")
    return outcome


# ------------------------------------------------------------------------------------------ Exact Online faults


def _adopted(outcome: Outcome) -> None:
    """A document stored behind a failed answer must be found by YourRef and adopted, not posted again."""
    if not outcome.figures.get("attempts", {}).get("adopted"):
        outcome.problems.append("no stored document was adopted: the fault did not hit a document")


async def exact_5xx_burst(ctx: ProofContext, profile: Profile) -> Outcome:
    burst = max(10, profile.fault_shops * profile.fault_per_shop // 4)

    async def fault(run: OrderRun) -> None:
        await exact_faults(ctx, fail_next=burst, fail_status=503)

    run, struck = await in_flight(ctx, profile, "x5xx", fault)
    outcome = await finish(run, struck, profile.settle_within)
    outcome.figures["fault"] = f"{burst} answers 503"
    await _fired(ctx, outcome, "fail_next")
    await exact_faults(ctx, reset=True)
    return outcome


async def exact_stored_then_500(ctx: ProofContext, profile: Profile) -> Outcome:
    count = max(5, profile.fault_shops * profile.fault_per_shop // 8)

    async def fault(run: OrderRun) -> None:
        await exact_faults(ctx, fail_after_store=count, fail_after_store_mode="500")

    run, struck = await in_flight(ctx, profile, "xstore500", fault, after=0, customer=KNOWN_CUSTOMER)
    outcome = await finish(run, struck, profile.settle_within)
    outcome.figures["fault"] = f"{count} documents stored, then answered 500"
    await _fired(ctx, outcome, "fail_after_store")
    _adopted(outcome)
    await exact_faults(ctx, reset=True)
    return outcome


async def exact_stored_then_timeout(ctx: ProofContext, profile: Profile) -> Outcome:
    async def fault(run: OrderRun) -> None:
        await exact_faults(ctx, fail_after_store=3, fail_after_store_mode="timeout", hang_seconds=profile.hang_seconds)

    run, struck = await in_flight(ctx, profile, "xstorehang", fault, after=0, customer=KNOWN_CUSTOMER)
    outcome = await finish(run, struck, profile.settle_within + profile.hang_seconds * 3)
    outcome.figures["fault"] = f"3 documents stored, then {profile.hang_seconds:.0f} s without an answer"
    await _fired(ctx, outcome, "fail_after_store")
    _adopted(outcome)
    await exact_faults(ctx, reset=True)
    return outcome


async def exact_429_storm(ctx: ProofContext, profile: Profile) -> Outcome:
    # A 429 blocks its administration until Exact's next minute, so a storm costs about a minute per answer and
    # administration: two per shop keeps the scenario to a few minutes.
    storm = 2 * profile.fault_shops

    async def fault(run: OrderRun) -> None:
        await exact_faults(ctx, storm_429=storm)

    run, struck = await in_flight(ctx, profile, "x429", fault)
    # Each 429 blocks the administration until Exact's next minute, and retries back off exponentially.
    outcome = await finish(run, struck, profile.recovery_within)
    outcome.figures["fault"] = f"{storm} answers 429"
    await _fired(ctx, outcome, "storm_429")
    await exact_faults(ctx, reset=True)
    return outcome


async def exact_slow(ctx: ProofContext, profile: Profile) -> Outcome:
    async def fault(run: OrderRun) -> None:
        await exact_faults(ctx, latency=1.0)

    run, struck = await in_flight(ctx, profile, "xslow", fault, after=0)
    outcome = await finish(run, struck, profile.settle_within * 2)
    outcome.figures["fault"] = "every Exact answer 1 s late"
    await exact_faults(ctx, reset=True)
    return outcome


# ------------------------------------------------------------------------------------------ tokens and clocks


async def exact_token_expired(ctx: ProofContext, profile: Profile) -> Outcome:
    """Every shop's Exact tokens were issued 11 minutes ago (the sandbox clock is set back while they are issued, and
    the stored pairs carry that time), so each access token has expired when the orders arrive. The worker must renew
    each one (refresh tokens are single-use) and book."""
    await _move_exact_clock(ctx, -660)
    try:
        run = await OrderRun.create(ctx, "xexpired", shops=profile.fault_shops, per_shop=profile.fault_per_shop)
    finally:
        await _move_exact_clock(ctx, 660)
    issued = datetime.now(UTC) - timedelta(seconds=660)
    async with ctx.engine.begin() as conn:
        c = tables.credential.c
        await conn.execute(
            update(tables.credential)
            .where(c.integration_id.in_(run.integration_ids), c.kind == credentials.EXACT_OAUTH)
            .values(access_issued_at=issued, access_expires_at=issued + timedelta(seconds=600))
        )
    before = await _token_requests(ctx)
    await run.send_notices(rate=profile.notice_rate)
    outcome = await finish(run, time.monotonic(), profile.settle_within)
    renewals = await _token_requests(ctx) - before
    outcome.figures["fault"] = f"all {len(run.shops)} access tokens 11 minutes old; {renewals} renewals"
    if renewals < len(run.shops):
        outcome.problems.append(f"expected a renewal per shop, saw {renewals}")
    return outcome


async def _move_exact_clock(ctx: ProofContext, seconds: float) -> None:
    response = await ctx.http.post(ctx.stack.url("exact") + "/_proof/clock", json={"advance": seconds})
    response.raise_for_status()


async def _token_requests(ctx: ProofContext) -> int:
    response = await ctx.http.get(ctx.stack.url("exact") + "/_proof/documents?divisions=0")
    return int(response.json()["token_requests"])


async def exact_token_revoked(ctx: ProofContext, profile: Profile) -> Outcome:
    """Consent withdrawn mid-flight: the rest must fail readably ("connect again"), book nothing, and book once each
    after the owner reconnects."""

    async def fault(run: OrderRun) -> None:
        for shop in run.shops:
            async with ctx.engine.connect() as conn:
                stored = await credentials.get_credential(
                    conn, integration_id=shop.integration_id, kind=credentials.EXACT_OAUTH, cipher=ctx.factory.cipher
                )
            assert stored is not None
            refresh = json.loads(stored.secret)["refresh_token"]
            await ctx.http.post(ctx.stack.url("exact") + "/_proof/revoke", json={"refresh_token": refresh})

    def refused(row: OrderRow) -> bool:
        return row.state == "failed" and row.error_kind == "exact_auth" and "connect" in (row.last_error or "")

    run, struck = await in_flight(ctx, profile, "xrevoked", fault, after=0.3)
    first = await finish(run, struck, profile.settle_within, allowed=refused)
    for shop in run.shops:
        tokens = await ctx.factory.exact_consent()
        async with ctx.engine.begin() as conn:
            await store_tokens(conn, integration_id=shop.integration_id, tokens=tokens, cipher=ctx.factory.cipher)
            await update_integration(
                conn, integration_id=shop.integration_id, exact_connection="connected", exact_connection_error=None
            )
        ctx.factory.secrets_made += [tokens.access_token, tokens.refresh_token]
    return await _resumed(ctx, profile, run, first, "exact_auth", "Exact consent revoked")


async def shop_token_revoked(ctx: ProofContext, profile: Profile) -> Outcome:
    """The shop token is revoked mid-flight; the owner pastes a new one (checked live, stored encrypted)."""
    from gateway.shop_connection import connect_shop

    new_tokens: dict[int, str] = {}

    async def fault(run: OrderRun) -> None:
        for shop in run.shops:
            new_tokens[shop.integration_id] = new = shop.shop_token + "-new"
            await ctx.http.post(
                ctx.stack.url("mww") + "/_proof/revoke", json={"token": shop.shop_token, "new_token": new}
            )
            ctx.factory.secrets_made.append(new)

    def refused(row: OrderRow) -> bool:
        return row.state == "failed" and row.error_kind == "shop_auth" and "token" in (row.last_error or "")

    run, struck = await in_flight(ctx, profile, "srevoked", fault, after=0.3)
    first = await finish(run, struck, profile.settle_within, allowed=refused)
    for shop in run.shops:
        await connect_shop(
            ctx.engine,
            settings=ctx.stack.settings,
            cipher=ctx.factory.cipher,
            http=ctx.http,
            integration_id=shop.integration_id,
            shop_token=new_tokens[shop.integration_id],
        )
    return await _resumed(ctx, profile, run, first, "shop_auth", "shop token revoked")


async def _resumed(ctx: ProofContext, profile: Profile, run: OrderRun, first: Outcome, kind: str, what: str) -> Outcome:
    from gateway.jobs.sync_order import resume_orders

    for shop in run.shops:
        await resume_orders(ctx.engine, ctx.arq, integration_id=shop.integration_id, error_kind=kind)
    outcome = await finish(run, time.monotonic(), profile.settle_within)
    outcome.figures["fault"] = f"{what}: {first.terminal} orders failed readably, booked after reconnecting"
    outcome.problems += first.problems
    outcome.duplicated = max(outcome.duplicated, first.duplicated)
    if first.terminal == 0:
        outcome.notes.append("no order was caught by the revocation (all were booked before it)")
    return outcome


async def webhook_clock_skew(ctx: ProofContext, profile: Profile) -> Outcome:
    """Signed notices 4 minutes early or late are accepted; 7 minutes off are refused (401) and never stored. The
    refused orders still reach the gateway through the poller."""
    run = await OrderRun.create(ctx, "skew", shops=profile.fault_shops, per_shop=profile.fault_per_shop)
    skews = (-240.0, 240.0, -420.0, 420.0)
    statuses: dict[float, set[int]] = {s: set() for s in skews}
    for i in range(run.expected):
        shop, number = run.order(i)
        skew = skews[i % len(skews)]
        url, body, headers = notice(ctx.stack, shop, number, skew=skew)
        statuses[skew].add((await ctx.http.post(url, content=body, headers=headers)).status_code)
    struck = time.monotonic()
    async with ctx.engine.connect() as conn:
        c = tables.order_event.c
        stored = (
            await conn.execute(
                select(func.count()).where(c.integration_id.in_(run.integration_ids), c.source == "webhook")
            )
        ).scalar_one()
    outcome = await finish(run, struck, profile.recovery_within)
    accepted = sum(1 for i in range(run.expected) if abs(skews[i % len(skews)]) < 300)
    outcome.figures["fault"] = f"answers by skew: { ({int(k): sorted(v) for k, v in statuses.items()}) }"
    if statuses[-240.0] != {202} or statuses[240.0] != {202} or statuses[-420.0] != {401} or statuses[420.0] != {401}:
        outcome.problems.append(f"unexpected answers by skew: {statuses}")
    if stored != accepted:
        outcome.problems.append(f"{stored} webhook notices stored, expected only the {accepted} accepted ones")
    return outcome
