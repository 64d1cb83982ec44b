"""Finding and creating the Exact items of one order in as few calls as the facts allow, within a time budget.

An order whose item codes fit one look-up asks Exact about all its unlinked codes in that one call, then creates the
missing ones. A bigger order (a shop's first orders with a new catalogue) creates its unlinked articles first and
looks up nothing: Exact keeps item codes unique per administration and refuses a second item with a code it has
(docs/exact.md), so a refused or failed create is followed by one look-up of that code, and a second code found taken
by one batched look-up of the codes still unchecked. Either way a new item costs one call.

Creating stops when the try's `CreationBudget` is spent (`CreationPaused`): the booking job stores what it has and
continues in a new try, so no try runs into the job timeout. No SQL here; the caller stores each link as it goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.clients.errors import PermanentApiError, RateLimitedError, TransientApiError
from gateway.clients.exact import ExactClient
from gateway.clients.exact_batches import code_chunks, find_items
from gateway.clients.exact_models import ExactItem
from gateway.clock import Clock


class CreationPaused(Exception):
    """The try's time for creating records ran out; every record created so far is stored. Continue in a new try."""

    def __init__(self, created: int, left: int) -> None:
        super().__init__(f"created {created} new items in Exact, {left} to go")
        self.created = created
        self.left = left


@dataclass(frozen=True)
class CreationBudget:
    """Until when (seconds on `clock`) one try may start creating records."""

    clock: Clock
    deadline: float

    @classmethod
    def lasting(cls, clock: Clock, seconds: float) -> CreationBudget:
        return cls(clock=clock, deadline=clock.now() + seconds)

    def spent(self) -> bool:
        return self.clock.now() >= self.deadline


class ItemFinder:
    """What one resolution knows about its items: looked up (`found`, None = not in Exact) or presumed new."""

    def __init__(self, client: ExactClient, budget: CreationBudget | None = None) -> None:
        self.client = client
        self.budget = budget
        self.found: dict[str, ExactItem | None] = {}
        self.unchecked: set[str] = set()
        self.created = 0
        self.to_create = 0
        self.taken = 0  # creates Exact refused because the code exists

    async def prefetch(self, order_codes: Sequence[str], unknown: Mapping[str, bool]) -> None:
        """Look up the `unknown` codes (code → creatable) of an order with `order_codes`: all of them in one call when
        the order's codes fit one, else only those that cannot be created (the others are created first)."""
        creatable = [code for code, can_create in unknown.items() if can_create]
        big = len(list(code_chunks(order_codes))) > 1
        if creatable and big:
            self.unchecked = set(creatable)
            codes = [code for code, can_create in unknown.items() if not can_create]
        else:
            codes = list(unknown)
        await self._look_up(codes)
        self.to_create = len(self.unchecked) + sum(1 for c in creatable if c in self.found and self.found[c] is None)

    async def find(self, code: str) -> ExactItem | None:
        """The item with `code`, or None when Exact has none (or it is presumed new); asks only what is not known."""
        if code in self.unchecked:
            return None
        if code not in self.found:
            self.found[code] = await self.client.find_item(code)
        return self.found[code]

    async def create(self, code: str, payload: Mapping[str, Any]) -> ExactItem:
        """Create the item, or take the existing one when Exact refuses the code as taken. Raises CreationPaused when
        the budget is spent, before sending anything."""
        if self.budget is not None and self.created and self.budget.spent():  # every try creates at least one
            raise CreationPaused(self.created, max(1, self.to_create - self.created))
        try:
            item = ExactItem.from_api(await self.client.post("logistics/Items", payload))
        except (PermanentApiError, TransientApiError) as e:
            # A taken code is refused with a 400 by the sandbox; Exact has been seen answering "Gegeven bestaat reeds"
            # with a 500, and a timeout may have created it: whatever the failure (but a 429), look before raising.
            if isinstance(e, RateLimitedError):
                raise
            existing = await self.client.find_item(code)
            if existing is None:
                raise
            self.unchecked.discard(code)
            self.taken += 1
            if self.taken > 1:
                # Presumed new, but there twice (once may be a killed try's create whose link was never stored): the
                # catalogue exists in Exact, so look up the rest before creating.
                await self._look_up(sorted(self.unchecked))
                self.unchecked.clear()
            return existing
        self.unchecked.discard(code)
        self.created += 1
        return item

    async def _look_up(self, codes: Sequence[str]) -> None:
        if not codes:
            return
        found = await find_items(self.client, codes)
        self.found.update({code: found.get(code) for code in codes})
