"""One batch of orders through the running stack, and the verdict on every one of them.

`OrderRun` makes fresh shops (each with its own sandbox shop and Exact administration), creates the orders in the
sandbox shop, sends their webhook notices (or leaves them to the poller), waits until every order has settled, and
checks each against both records: the gateway's row and the documents in the sandbox Exact carrying its YourRef.
An order counts as booked once only when the row says booked, Exact holds exactly one document with its reference,
and that document is the one the row names.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import Stack
from bench.load import LoadResult, run_load
from bench.shops import OrderRow, ProofShop, ShopFactory, attempt_outcomes, notice, order_rows, state_counts

UNSETTLED = ("queued", "booking", "retrying")
FIRST_ORDER = 100_001


@dataclass(frozen=True)
class Profile:
    """Counts and durations of one proof run: FULL for `make proof`, FAST (10-50x smaller) for CI."""

    name: str
    load_rate: float  # notices/s asked of the load generator
    load_seconds: float
    load_concurrency: int
    e2e_orders: int
    e2e_shops: int
    workers: int  # `gateway worker` processes
    fault_shops: int
    fault_per_shop: int
    notice_rate: float  # notices/s while a fault scenario runs
    settle_within: float  # seconds an ordinary scenario may take to settle
    recovery_within: float  # ... one that recovers through the 3-minute booking lease or the reconcile sweep
    hang_seconds: float  # how long the sandbox Exact hangs after storing ("timeout after storing")
    outage_seconds: float  # Mijnwebwinkel outage during polling
    bad_inputs: int


@dataclass
class ProofContext:
    """What every phase and scenario shares: the stack and the proof's own clients."""

    stack: Stack
    engine: AsyncEngine
    http: httpx.AsyncClient
    factory: ShopFactory
    arq: ArqRedis
    notes: list[str] = field(default_factory=list)
    phase: str = ""  # what was running when a note was taken

    async def supervise(self) -> None:
        """Play the container orchestrator: a gateway process that exited is started again, and that is noted."""
        for worker in list(self.stack.workers):
            if worker.process is not None and worker.process.poll() is not None and not getattr(worker, "ended", 0):
                worker.ended = 1  # type: ignore[attr-defined]
                if worker.process.returncode not in (0, -9, -15):
                    code = worker.process.returncode
                    self.notes.append(f"{self.phase}: {worker.name} exited with {code}; restarted")
                    await self.stack.start_worker()
        web = self.stack.procs.get("web")
        if web is not None and not web.alive():
            code = web.process.returncode if web.process else "?"
            self.notes.append(f"{self.phase}: web exited with {code}; restarted")
            await self.stack.start_web()


@dataclass
class Outcome:
    """The verdict on one batch. `terminal` counts orders in a stated terminal state (and without a document)."""

    name: str
    orders: int
    booked_once: int = 0
    terminal: int = 0
    lost: int = 0
    duplicated: int = 0
    duplicate_accounts: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0


@dataclass
class OrderRun:
    ctx: ProofContext
    name: str
    shops: list[ProofShop]
    per_shop: int
    sent_at: dict[tuple[int, int], float] = field(default_factory=dict)
    load: LoadResult | None = None
    started: float = field(default_factory=time.time)

    @classmethod
    async def create(
        cls,
        ctx: ProofContext,
        name: str,
        *,
        shops: int,
        per_shop: int,
        lines: Any = "domestic",
        customer: dict[str, str] | None = None,
    ) -> OrderRun:
        made = await ctx.factory.add_shops(shops, label=name)
        numbers = list(range(FIRST_ORDER, FIRST_ORDER + per_shop))
        orders = [ctx.factory.create_orders(shop, numbers, lines=lines, customer=customer) for shop in made]
        await asyncio.gather(*orders)
        return cls(ctx, name, made, per_shop)

    @property
    def integration_ids(self) -> list[int]:
        return [s.integration_id for s in self.shops]

    @property
    def expected(self) -> int:
        return len(self.shops) * self.per_shop

    def order(self, i: int) -> tuple[ProofShop, int]:
        """Notice i goes to shop i % shops: every shop's orders arrive interleaved, as real traffic would."""
        return self.shops[i % len(self.shops)], FIRST_ORDER + i // len(self.shops)

    async def send_notices(self, *, rate: float, concurrency: int = 8, max_seconds: float = 600.0) -> LoadResult:
        def make(i: int) -> tuple[str, bytes, dict[str, str]]:
            shop, number = self.order(i)
            return notice(self.ctx.stack, shop, number)

        def sent(i: int, at: float) -> None:
            shop, number = self.order(i)
            self.sent_at.setdefault((shop.integration_id, number), at)

        self.started = time.time()
        self.load = await run_load(
            make, count=self.expected, rate=rate, concurrency=concurrency, max_seconds=max_seconds, on_sent=sent
        )
        return self.load

    async def counts(self) -> Counter[str]:
        return await state_counts(self.ctx.engine, self.integration_ids)

    async def wait_until(self, check: Callable[[Counter[str]], bool], *, within: float) -> bool:
        """Poll the order states until `check` says yes (True) or `within` seconds pass (False)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await self.ctx.supervise()
            if check(await self.counts()):
                return True
            await asyncio.sleep(0.25)
        return False

    async def settle(self, *, within: float) -> bool:
        """Wait until no order is queued, booking or retrying and every order has a row (or `within` passes)."""

        def settled(counts: Counter[str]) -> bool:
            return sum(counts.values()) >= self.expected and not any(counts.get(s) for s in UNSETTLED)

        return await self.wait_until(settled, within=within)

    async def verify(self, *, allowed: Callable[[OrderRow], bool] | None = None) -> Outcome:
        """Check every order against its row and the documents in Exact carrying its YourRef."""
        outcome = Outcome(self.name, self.expected, seconds=time.time() - self.started)
        rows = {(r.integration_id, r.order_number): r for r in await order_rows(self.ctx.engine, self.integration_ids)}
        documents = await self.ctx.factory.documents(self.shops)
        outcome.figures["attempts"] = dict(await attempt_outcomes(self.ctx.engine, self.integration_ids))
        for shop in self.shops:
            division = documents.get(shop.division, {"refs": {}, "duplicate_accounts": 0})
            outcome.duplicate_accounts += int(division["duplicate_accounts"])
            for number in range(FIRST_ORDER, FIRST_ORDER + self.per_shop):
                row = rows.get((shop.integration_id, str(number)))
                ids = division["refs"].get(str(number), [])
                outcome.duplicated += max(0, len(ids) - 1)
                if row is not None and row.state == "booked" and ids == [row.exact_document_id]:
                    outcome.booked_once += 1
                elif row is not None and not ids and allowed is not None and allowed(row):
                    outcome.terminal += 1
                elif len(ids) <= 1:
                    outcome.lost += 1
                    state = f"{row.state} ({row.error_kind}: {row.last_error})" if row else "no row"
                    outcome.problems.append(f"order {number} of {shop.label}: {state}, {len(ids)} document(s)")
        return outcome

    def latencies(self, rows: list[OrderRow]) -> list[float]:
        """Seconds from each order's first notice to its booking (booked_at is written by the worker)."""
        found = []
        for row in rows:
            sent = self.sent_at.get((row.integration_id, int(row.order_number)))
            if row.booked_at is not None and sent is not None:
                found.append(row.booked_at.timestamp() - sent)
        return found


async def timed(step: Awaitable[Any]) -> float:
    started = time.monotonic()
    await step
    return time.monotonic() - started
