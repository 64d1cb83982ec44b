"""Cent-exact arithmetic for bookings: VAT per order line that adds up to the shop's VAT per rate, shares of an
amount in whole cents, and unit prices whose products add up to a line. Pure; amounts are Decimal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from gateway.clients.mijnwebwinkel_models import MwwOrder, MwwTaxPrice

CENT = Decimal("0.01")


class AmountMismatch(ValueError):
    """The shop's figures do not add up; the message names the two figures that differ (in cents, never equal when
    printed), and `params` holds them for the pages (gateway/booking_reasons.py)."""

    def __init__(self, message: str, **params: str) -> None:
        super().__init__(message)
        self.params = params


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Decimal) -> str:
    return f"{value:.2f}"


def incl_sum(order: MwwOrder) -> Decimal:
    return sum((p.amount_including_tax for line in order.lines for p in line.prices), Decimal(0))


def reconcile_vat(order: MwwOrder) -> tuple[dict[tuple[int, int], Decimal], dict[Decimal, Decimal]]:
    """VAT per (line, price) such that the lines add up to the order's total and to its VAT per rate exactly.

    Each price's VAT starts as its 2-decimal incl. amount minus its rounded excl. amount. The shop rounds VAT per
    rate on the order, so the sum of the lines can differ by a cent or so: that residue goes, a cent at a time, to
    the largest lines of that rate. More than a cent per line is a real mismatch and stops the booking.
    """
    incl, total = cents(incl_sum(order)), cents(order.total)  # already cents from the boundary; compared as cents
    if incl != total:
        raise AmountMismatch(
            f"the lines of order {order.number} add up to {money(incl)} but the order total is {money(total)}",
            order=order.number,
            lines=money(incl),
            total=money(total),
        )
    vats: dict[tuple[int, int], Decimal] = {}
    by_rate: dict[Decimal, list[tuple[int, int, MwwTaxPrice]]] = defaultdict(list)
    for i, line in enumerate(order.lines):
        for j, price in enumerate(line.prices):
            vats[(i, j)] = price.vat
            by_rate[price.rate.normalize()].append((i, j, price))
    targets = _order_vat(order, by_rate)
    for rate, prices in by_rate.items():
        _spread(order, rate, prices, targets.get(rate, Decimal(0)), vats)
    for rate, amount in targets.items():
        if rate not in by_rate and amount:
            raise AmountMismatch(
                f"order {order.number} charges {money(amount)} VAT at {rate:f} % but no line has that rate",
                order=order.number,
                vat=money(amount),
                rate=f"{rate:f}",
            )
    return vats, {rate: targets.get(rate, Decimal(0)) for rate in by_rate}


def _order_vat(
    order: MwwOrder, by_rate: Mapping[Decimal, list[tuple[int, int, MwwTaxPrice]]]
) -> dict[Decimal, Decimal]:
    """The order's VAT per rate (`price.tax`); without it, the lines' own VAT. Credit signs follow the lines."""
    if not order.tax:
        return {rate: sum((p.vat for _, _, p in prices), Decimal(0)) for rate, prices in by_rate.items()}
    targets: dict[Decimal, Decimal] = defaultdict(Decimal)
    for tax in order.tax:
        targets[tax.rate.normalize()] += tax.amount
    for rate, amount in targets.items():
        line_incl = sum((p.amount_including_tax for _, _, p in by_rate.get(rate, [])), Decimal(0))
        if amount * line_incl < 0:  # credit orders may list VAT with the opposite sign of their lines
            targets[rate] = -amount
    return dict(targets)


def _spread(
    order: MwwOrder,
    rate: Decimal,
    prices: list[tuple[int, int, MwwTaxPrice]],
    target: Decimal,
    vats: dict[tuple[int, int], Decimal],
) -> None:
    residue = target - sum((vats[(i, j)] for i, j, _ in prices), Decimal(0))
    steps = int(abs(residue) / CENT)
    if steps > len(prices) or residue != cents(residue):
        raise AmountMismatch(
            f"the VAT at {rate:f} % of order {order.number} is {money(target)} but its lines carry "
            f"{money(target - residue)}",
            order=order.number,
            rate=f"{rate:f}",
            vat=money(target),
            lines=money(target - residue),
        )
    step = CENT if residue > 0 else -CENT
    largest_first = sorted(prices, key=lambda p: (-abs(p[2].amount_including_tax), p[0], p[1]))
    for i, j, _ in largest_first[:steps]:
        vats[(i, j)] += step


def unit_prices(quantity: Decimal, amount: Decimal, vat: Decimal) -> list[tuple[Decimal, Decimal, Decimal]]:
    """(quantity, unit price, VAT) parts whose quantity × unit price add up to `amount` exactly.

    Exact multiplies the quantity by a 2-decimal unit price. When the amount does not divide evenly (3 for 10.00),
    the line becomes two with the same item, 2 × 3.33 and 1 × 3.34, so quantity and cents both stay right.
    """
    if quantity == 0:
        return [(Decimal(1), amount, vat)]
    if amount / quantity == cents(amount / quantity):
        return [(quantity, cents(amount / quantity), vat)]
    q_sign = 1 if quantity > 0 else -1
    if quantity != quantity.to_integral_value():
        return [(Decimal(q_sign), amount * q_sign, vat)]
    units = int(abs(quantity))
    base, rest = divmod(int(amount / CENT) * q_sign, units)  # floor division keeps rest in [0, units)
    parts = [(units - rest, base), (rest, base + 1)]
    first_vat = cents(vat * Decimal(q_sign * parts[0][0] * parts[0][1]) * CENT / amount)
    return [
        (Decimal(q_sign * count), Decimal(price) * CENT, part_vat)
        for (count, price), part_vat in zip(parts, (first_vat, vat - first_vat), strict=True)
    ]


def share_cents(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """`total` (whole cents) split over `weights` in proportion, by largest remainder: the shares add up exactly."""
    weight_sum = sum(weights, Decimal(0))
    if not weights or weight_sum == 0:
        raise ValueError("nothing to share over")
    total_cents = int(total / CENT)
    raw = [total_cents * w / weight_sum for w in weights]
    floors = [int(r.to_integral_value(rounding=ROUND_FLOOR)) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (raw[i] - floors[i], -i), reverse=True)
    for i in by_remainder[: total_cents - sum(floors)]:
        floors[i] += 1
    return [Decimal(f) * CENT for f in floors]
