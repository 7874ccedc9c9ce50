"""USD at risk, kept as running totals: per market, per event, for the portfolio, plus cash reserved.

**USD at risk** (the trading-core definitions, used for every cap): what is lost if the market
resolves against a position or an open order, at cost, fees excluded. A YES position risks
qty × average price, a NO (short) one qty × (1 − average YES price); an open BUY_LONG order risks
remaining × limit, an open BUY_SHORT one remaining × (1 − limit); closing orders add nothing. Orders
being submitted or with an unknown outcome count as open at full size. "Remaining" is
max(leaves, quantity − cum) so an order whose leaves are not yet known still counts in full.
Per event = the sum over the event's markets, portfolio = the sum over all markets.

The totals are updated by order and position events (`on_order`, `on_position`) instead of being
recomputed over every position on every decision: with hundreds of markets a recompute per book
frame was a fifth of the hot path. Each order's and position's contribution is remembered, so an
update applies the difference; `full_totals()` is the sum from scratch the running totals must
always equal (a hypothesis test drives random event sequences through both).

Single owner: nothing else keeps USD at risk. The ledger owns positions (it calls `on_position`),
the order registry owns orders (it calls `on_order`), the universe owns which event a market
belongs to (`set_event`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_CEILING, Decimal

import attrs

from polybot.model import ONE, ZERO, Intent, Order, OrderState, Position, cost_per_contract
from polybot.pricing import CENT, TAKER_THETA, fee_per_contract

# Each contribution is rounded up to this step: sums of such values are exact in Decimal's 28
# digits, so adding and taking back a contribution leaves the running total exactly where a full
# recompute lands (an average price like 0.2866...67 would otherwise drift in the last digit).
RISK_STEP = Decimal("1E-12")

log = logging.getLogger(__name__)


def _up(value: Decimal) -> Decimal:
    return value.quantize(RISK_STEP, rounding=ROUND_CEILING)


def remaining_qty(order: Order) -> Decimal:
    """Contracts an open order may still fill (full size while submitting or unknown)."""
    if not order.state.is_open:
        return ZERO
    if order.state in (OrderState.SUBMITTING, OrderState.OUTCOME_UNKNOWN):
        return max(order.quantity - order.cum_quantity, ZERO)
    return max(order.leaves_quantity, order.quantity - order.cum_quantity, ZERO)


def order_at_risk(order: Order) -> Decimal:
    """USD at risk of one order: opening orders at cost of the side bought, closing ones nothing."""
    if not order.intent.is_opening:
        return ZERO
    return _up(remaining_qty(order) * cost_per_contract(order.intent, order.price))


def position_at_risk(position: Position | None) -> Decimal:
    """YES: qty × average price; NO: qty × (1 − average YES price).

    A position whose cost is not known (adopted from an account that did not report it) counts at
    qty × $1, the most it can lose, until its cost is known: 0 would let every cap pass it.
    """
    if position is None or position.net_qty == 0:
        return ZERO
    if not position.cost_known:
        return _up(abs(position.net_qty) * ONE)
    if position.net_qty > 0:
        return _up(position.net_qty * position.avg_price)
    return _up(-position.net_qty * (ONE - position.avg_price))


def side_at_risk(intent: Intent, position: Position | None, open_orders: Iterable[Order]) -> Decimal:
    """At-risk on the side `intent` opens (YES for BUY_LONG, NO for BUY_SHORT) in one market."""
    long_side = intent is Intent.BUY_LONG
    total = ZERO
    if position is not None and position.net_qty != 0 and (position.net_qty > 0) == long_side:
        total += position_at_risk(position)
    for o in open_orders:
        if o.intent is intent:
            total += order_at_risk(o)
    return total


def order_reserve(order: Order, theta: Decimal) -> Decimal:
    """Cash an open opening order will still consume if it fills (cost + fee, plus a cent)."""
    if not order.intent.is_opening:
        return ZERO
    rem = remaining_qty(order)
    if rem <= 0:
        return ZERO
    reserve_theta = max(theta, TAKER_THETA)
    return _up(rem * (cost_per_contract(order.intent, order.price)
                      + fee_per_contract(order.price, reserve_theta)) + CENT)


def event_key(slug: str, event_id: str | None) -> str:
    """The key a market's risk is summed under: its event, or the market alone when unknown."""
    return event_id or f"market:{slug}"


@attrs.frozen(slots=True)
class Totals:
    """USD at risk by market and by event, the portfolio, cash reserved, markets counted."""

    by_market: Mapping[str, Decimal]
    by_event: Mapping[str, Decimal]
    portfolio: Decimal
    reserved_cash: Decimal
    counted: frozenset[str]


@attrs.define(slots=True)
class _OrderEntry:
    slug: str
    order: Order
    risk: Decimal
    reserve: Decimal
    counts: bool  # an open opening order with something left: the market counts as held


class Exposure:
    """Running USD at risk (one writer per input: the ledger, the order registry, the universe)."""

    def __init__(self, *, theta_of: Callable[[str], Decimal] | None = None) -> None:
        self._theta_of = theta_of or (lambda _slug: TAKER_THETA)
        self._event: dict[str, str | None] = {}
        self._positions: dict[str, Position] = {}
        self._orders: dict[str, _OrderEntry] = {}
        self._market_orders: dict[str, dict[str, Order]] = {}
        self._market: dict[str, Decimal] = {}
        self._by_event: dict[str, Decimal] = {}
        self._portfolio = ZERO
        self._reserved = ZERO
        self._held: dict[str, int] = {}  # market -> number of reasons it counts as held

    # --- inputs -------------------------------------------------------------------------------------

    def set_event(self, slug: str, event_id: str | None) -> None:
        """The market's event became known (or changed): its risk moves to that event's sum."""
        old = self._event.get(slug)
        if slug in self._event and old == event_id:
            return
        risk = self._market.get(slug, ZERO)
        if risk:
            self._add_event(event_key(slug, old), -risk)
            self._add_event(event_key(slug, event_id), risk)
        self._event[slug] = event_id

    def on_position(self, position: Position) -> None:
        """The ledger's position in a market changed."""
        slug = position.market_slug
        old = self._positions.get(slug)
        delta = position_at_risk(position) - position_at_risk(old)
        was_held = old is not None and old.net_qty != 0
        is_held = position.net_qty != 0
        if is_held:
            self._positions[slug] = position
        else:
            self._positions.pop(slug, None)
        if delta:
            self._add_market(slug, delta)
        if was_held != is_held:
            self._hold(slug, 1 if is_held else -1)

    def on_order(self, key: str, order: Order | None) -> None:
        """An order changed (`None`, or a closed state: it no longer counts). `key` is stable over
        the order's life (the local id for the bot's own orders)."""
        old = self._orders.pop(key, None)
        if old is not None:
            self._market_orders.get(old.slug, {}).pop(key, None)
            if old.risk:
                self._add_market(old.slug, -old.risk)
            self._reserved -= old.reserve
            if old.counts:
                self._hold(old.slug, -1)
        if order is None or not order.state.is_open:
            return
        slug = order.market_slug
        risk = order_at_risk(order)
        entry = _OrderEntry(slug, order, risk, order_reserve(order, self._theta_of(slug)),
                            order.intent.is_opening and remaining_qty(order) > 0)
        self._orders[key] = entry
        self._market_orders.setdefault(slug, {})[key] = order
        if risk:
            self._add_market(slug, risk)
        self._reserved += entry.reserve
        if entry.counts:
            self._hold(slug, 1)

    def forget(self, slug: str) -> None:
        """The market left the universe: drop its event key. Refused (everything kept, an error
        logged) while it holds a position or an open order: the caps must never lose a
        market that is at risk (the retirement rule never retires one)."""
        if slug in self._positions or self._market_orders.get(slug) or self._market.get(slug):
            log.error("exposure: market %s retired while it holds a position or an open order; "
                      "kept in every cap", slug)
            return
        self._event.pop(slug, None)
        self._market_orders.pop(slug, None)
        self._held.pop(slug, None)

    def market_keys(self) -> set[str]:
        return (set(self._event) | set(self._positions) | set(self._market)
                | set(self._market_orders) | set(self._held))

    # --- reads (O(1), or O(orders in one market)) ---------------------------------------------------

    def market(self, slug: str) -> Decimal:
        return self._market.get(slug, ZERO)

    def event_known(self, slug: str) -> bool:
        return self._event.get(slug) is not None

    def event_of_market(self, slug: str) -> Decimal:
        """USD at risk of the event the market belongs to (the market alone if unknown)."""
        return self._by_event.get(event_key(slug, self._event.get(slug)), ZERO)

    @property
    def portfolio(self) -> Decimal:
        return self._portfolio

    @property
    def reserved_cash(self) -> Decimal:
        return self._reserved

    @property
    def held_count(self) -> int:
        return len(self._held)

    def is_held(self, slug: str) -> bool:
        return slug in self._held

    def market_orders(self, slug: str) -> list[Order]:
        """The open orders of one market (the bot's and unknown ones)."""
        return list(self._market_orders.get(slug, {}).values())

    def totals(self) -> Totals:
        return Totals(by_market={k: v for k, v in self._market.items() if v},
                      by_event={k: v for k, v in self._by_event.items() if v},
                      portfolio=self._portfolio, reserved_cash=self._reserved,
                      counted=frozenset(self._held))

    # --- bookkeeping ------------------------------------------------------------------------------

    def _add_market(self, slug: str, delta: Decimal) -> None:
        total = self._market.get(slug, ZERO) + delta
        if total:
            self._market[slug] = total
        else:
            self._market.pop(slug, None)
        self._add_event(event_key(slug, self._event.get(slug)), delta)
        self._portfolio += delta

    def _add_event(self, key: str, delta: Decimal) -> None:
        total = self._by_event.get(key, ZERO) + delta
        if total:
            self._by_event[key] = total
        else:
            self._by_event.pop(key, None)

    def _hold(self, slug: str, delta: int) -> None:
        n = self._held.get(slug, 0) + delta
        if n > 0:
            self._held[slug] = n
        else:
            self._held.pop(slug, None)


def full_totals(positions: Mapping[str, Position], open_orders: Iterable[Order],
                event_of: Mapping[str, str | None],
                theta_of: Callable[[str], Decimal] = lambda _slug: TAKER_THETA) -> Totals:
    """Every total summed from scratch over positions and open orders."""
    by_market: dict[str, Decimal] = {}
    counted: set[str] = set()
    reserved = ZERO
    for slug, pos in positions.items():
        r = position_at_risk(pos)
        if r:
            by_market[slug] = by_market.get(slug, ZERO) + r
        if pos.net_qty != 0:
            counted.add(slug)
    for o in open_orders:
        if not o.state.is_open:
            continue
        r = order_at_risk(o)
        if r:
            by_market[o.market_slug] = by_market.get(o.market_slug, ZERO) + r
        reserved += order_reserve(o, theta_of(o.market_slug))
        if o.intent.is_opening and remaining_qty(o) > 0:
            counted.add(o.market_slug)
    by_event: dict[str, Decimal] = {}
    for slug, r in by_market.items():
        key = event_key(slug, event_of.get(slug))
        by_event[key] = by_event.get(key, ZERO) + r
    return Totals(by_market=by_market, by_event={k: v for k, v in by_event.items() if v},
                  portfolio=sum(by_market.values(), ZERO), reserved_cash=reserved,
                  counted=frozenset(counted))


def exposure_of(positions: Mapping[str, Position], open_orders: Iterable[Order],
                event_of: Mapping[str, str | None] | None = None) -> Exposure:
    """An Exposure holding exactly these positions and orders (tests, tools, a restore)."""
    exposure = Exposure()
    for slug, event_id in (event_of or {}).items():
        exposure.set_event(slug, event_id)
    for pos in positions.values():
        exposure.on_position(pos)
    for i, o in enumerate(open_orders):
        exposure.on_order(f"{o.order_id}#{i}", o)
    return exposure
