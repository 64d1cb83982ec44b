"""Orders that stopped because a connection was lost resume by themselves once it is made again.

A booking that met refused consent (Exact) or a refused shop token fails with `exact_auth` / `shop_auth` and says it
is booked again after reconnecting; one that kept failing to reach a vendor fails with `unavailable`. The pages that
(re)connect call `resume_after_reconnect`, which queues exactly those orders again (jobs/sync_order.resume_orders).
"""

from __future__ import annotations

import logging

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.jobs.booking_outcomes import EXACT_AUTH, SHOP_AUTH, UNAVAILABLE
from gateway.jobs.sync_order import resume_orders

logger = logging.getLogger(__name__)

EXACT = "exact"
SHOP = "shop"
# What a working connection to each side fixes: its own refusal, and faults reaching a vendor.
RESUMED_KINDS = {EXACT: (EXACT_AUTH, UNAVAILABLE), SHOP: (SHOP_AUTH, UNAVAILABLE)}


async def resume_after_reconnect(engine: AsyncEngine, arq: ArqRedis, *, integration_id: int, side: str) -> int:
    """Queue again the integration's orders that failed for the lost connection of `side`; returns how many."""
    queued = await resume_orders(engine, arq, integration_id=integration_id, error_kind=RESUMED_KINDS[side])
    if queued:
        logger.info("integration %s: %s orders queued again after reconnecting %s", integration_id, queued, side)
    return queued
