"""Pure helpers of live reconciliation: matching intents to exchange orders, comparing books.

The live executor (`execution/live.py`) does the I/O; everything here is a function of values so
the rules that decide "is this order ours?" and "does the ledger agree with the exchange?" can be
tested without a network.

- `matches_intent`: an exchange order is the one an unacknowledged intent produced when market,
  intent, limit price and quantity are equal and it was created no earlier than the intent (less a
  clock tolerance). The exchange has no client order id, so this is the only link there is; the
  executor keeps at most one create in flight per market so two candidates cannot be confused.
- `exchange_avg_yes`: the exchange's `cost` is the money locked in the position (Σp long,
  Σ(1 − p) short); the ledger keeps the average YES price, so a short's average is 1 − cost/|net|.
- `compare` lists the markets (and cash) where ledger and exchange disagree; `DiffTracker`
  answers which of those differences persisted across two consecutive quiet checks — only those
  are corrected, because a fill in flight makes the two sides differ for a moment.
- `report_execution` turns an order report (open orders, GET order, snapshot) into a synthetic
  `Execution`, so a report books through the same path as a stream execution (growth of the
  order's cumulative quantity, so nothing is booked twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from polybot.ledger import Ledger
from polybot.model import ONE, ZERO, Execution, ExecutionType, Order, OrderState

_STATE_EXEC = {
    OrderState.NEW: ExecutionType.NEW,
    OrderState.PARTIALLY_FILLED: ExecutionType.PARTIAL_FILL,
    OrderState.FILLED: ExecutionType.FILL,
    OrderState.CANCELED: ExecutionType.CANCELED,
    OrderState.REJECTED: ExecutionType.REJECTED,
    OrderState.EXPIRED: ExecutionType.EXPIRED,
    OrderState.REPLACED: ExecutionType.REPLACE,
}


def matches_intent(
    *,
    market_slug: str,
    intent: object,
    price: Decimal,
    quantity: Decimal,
    created_at: datetime,
    reported: Order,
    tolerance: timedelta,
) -> bool:
    """Is `reported` the order an intent with these fields produced?"""
    if (reported.market_slug, reported.intent, reported.price, reported.quantity) != (
        market_slug, intent, price, quantity):
        return False
    if reported.create_time is None:
        return True  # nothing to compare; the other four fields agree
    return reported.create_time >= created_at - tolerance


def report_execution(reported: Order) -> Execution | None:
    """A synthetic execution standing for an order report, or None for pending states.

    It has no execution id (so it is never stored as one) and no reason text: a report does not
    say why an order ended, and an empty reason keeps whatever the stream said.
    """
    exec_type = _STATE_EXEC.get(reported.state)
    if exec_type is None:
        return None
    return Execution(exec_id="", order=reported, exec_type=exec_type)


def exchange_avg_yes(net: Decimal, cost: Decimal | None) -> Decimal | None:
    """Average YES price of an exchange position (None when flat or without a cost)."""
    if net == 0 or cost is None:
        return None
    per = abs(cost) / abs(net)
    return per if net > 0 else ONE - per


def vwap(fills: Iterable[tuple[Decimal, Decimal]]) -> Decimal | None:
    """Volume-weighted price of (qty, price) pairs, or None when there is no volume."""
    qty = notional = ZERO
    for q, p in fills:
        qty += q
        notional += q * p
    return notional / qty if qty else None


@attrs.frozen(slots=True)
class Diff:
    """One disagreement: `key` is a market slug or "cash"; values are ledger vs exchange."""

    key: str
    ledger: Decimal
    exchange: Decimal


CASH = "cash"


def compare(
    ledger: Ledger,
    exchange_positions: Mapping[str, Decimal],
    exchange_cash: Decimal | None,
    *,
    cash_tolerance: Decimal = ZERO,
) -> list[Diff]:
    """Markets whose net position differs (and cash, when given), sorted by key."""
    out: list[Diff] = []
    slugs = set(exchange_positions) | {s for s, m in ledger.markets.items() if m.net_qty != 0}
    for slug in sorted(slugs):
        mine = ledger.position(slug).net_qty
        theirs = exchange_positions.get(slug, ZERO)
        if mine != theirs:
            out.append(Diff(slug, mine, theirs))
    if exchange_cash is not None and abs(ledger.cash - exchange_cash) > cash_tolerance:
        out.append(Diff(CASH, ledger.cash, exchange_cash))
    return out


class DiffTracker:
    """Which differences persisted over consecutive quiet checks (no execution in between)."""

    def __init__(self, checks: int = 2) -> None:
        self.checks = max(1, checks)
        self._seen: dict[str, tuple[int, Diff]] = {}

    def observe(self, diffs: Iterable[Diff], *, quiet: bool) -> list[Diff]:
        """Record one check; returns the diffs seen in `checks` consecutive quiet checks."""
        if not quiet:
            self._seen.clear()
            return []
        now: dict[str, tuple[int, Diff]] = {}
        persistent = []
        for d in diffs:
            prev = self._seen.get(d.key)
            count = prev[0] + 1 if prev is not None and prev[1] == d else 1
            now[d.key] = (count, d)
            if count >= self.checks:
                persistent.append(d)
        self._seen = now
        return persistent

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)
