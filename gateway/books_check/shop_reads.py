"""Read a month of orders from Mijnwebwinkel: `GET /orders?start_date&end_date` answers whole orders, 100 a page
(the API's maximum), so the month costs one call per 100 orders and no call per order. Test orders are left out,
as the API does by default; a credit order's amounts are made negative, as its Exact document carries them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Protocol

from gateway.booking_amounts import incl_sum
from gateway.books_check.findings import ZERO, ShopOrder, rate_key
from gateway.books_check.period import Month
from gateway.clients.mijnwebwinkel_models import MwwOrder

PAGE = 100
MAX_PAGES = 1000  # a safety stop: 100,000 orders in a month


class MonthReader(Protocol):
    async def list_orders_placed(
        self, *, start_date: date, end_date: date, offset: int = 0, limit: int = PAGE
    ) -> list[MwwOrder]: ...


def shop_order(order: MwwOrder) -> ShopOrder:
    """What the books check compares: total and VAT per rate, signed like the booking (booking.py `_split_lines`)."""
    sign = Decimal(-1) if order.is_credit and (order.total > 0 or incl_sum(order) > 0) else Decimal(1)
    vat: dict[Decimal, Decimal] = {}
    for tax in order.tax:
        key = rate_key(tax.rate)
        vat[key] = vat.get(key, ZERO) + sign * tax.amount
    return ShopOrder(
        number=order.number,
        order_date=order.date,
        status=order.status,
        total=sign * order.total,
        vat={rate: amount for rate, amount in vat.items() if amount},
        is_credit=order.is_credit,
        credited_order_number=order.credited_order_number,
    )


async def read_shop_month(reader: MonthReader, month: Month) -> Sequence[ShopOrder]:
    """Every order placed in `month` (the shop's order date), each once."""
    orders: dict[str, ShopOrder] = {}
    for page in range(MAX_PAGES):
        batch = await reader.list_orders_placed(
            start_date=month.first_day, end_date=month.last_day, offset=page * PAGE, limit=PAGE
        )
        for order in batch:
            if month.first_day <= order.date <= month.last_day:
                orders[order.number] = shop_order(order)
        if len(batch) < PAGE:
            return list(orders.values())
    raise RuntimeError(f"more than {MAX_PAGES * PAGE} orders in {month}; not read to the end")
