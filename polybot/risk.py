"""The risk gate: the only path from a signal to an order.

Pure: the gate is handed the market's position, equity, cash and the time (`now`, an aware
datetime from the injected clock), reads the running exposure totals (`polybot.exposure`) and the
trading state (`polybot.trading_state`), and answers with an `OrderRequest` or a `Rejection`. It
owns neither: it keeps only its order-rate windows and rejection counts. No file I/O: the kill
switch reaches the trading state through the operator-control task.

**Sizing an opening order** (BUY_LONG / BUY_SHORT): the Kelly target for the side with the edge,
at the effective cost c = cost per contract + taker fee at the order's limit (the worst it may
pay), is ``kelly_fraction × (w − c)/(1 − c) × equity``; the order only tops the side's current
at-risk up to it, ``floor((target − current)/c)`` on the market's minimum quantity. Then each cap
in turn — the size available, per market, per event, portfolio, cash (including fees, net of what
open orders already reserve) — may shrink it to its headroom; if that leaves less than the
market's minimum quantity or less than `min_trade_size` of notional, the order is rejected with
that cap as the reason. The positions count and the per-market order rate are yes/no checks. A
market whose event is not established is not opened (the per-event cap could not bind).

**Closing orders** (SELL_LONG / SELL_SHORT) reduce at-risk, so they skip Kelly, edge and caps:
size = min(position not already being closed by open orders, size available). They never flip a
position. An operator's flatten (``flatten=True``) passes while HALTED (not while the kill switch
is on: `TradingStateMachine.halt_blocks`) and has its own rate budget (`FLATTEN_ORDERS_PER_MINUTE`
per market), so the orders that built a position never stop it being closed.

Nothing passes before the trading state has begun (the first reconciliation or ledger restore).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from polybot.exposure import Exposure, remaining_qty, side_at_risk
from polybot.model import (
    MAX_PRICE,
    MIN_PRICE,
    ONE,
    ZERO,
    Intent,
    MarketInfo,
    Order,
    OrderRequest,
    Position,
    Rejection,
    Side,
    Signal,
    TimeInForce,
    TradingState,
    cost_per_contract,
    floor_to_step,
    is_on_step,
)
from polybot.pricing import CENT, fee_per_contract, taker_theta
from polybot.trading_state import Notice, NoticeKind, Notifier, TradingStateMachine

log = logging.getLogger(__name__)

FLATTEN_ORDERS_PER_MINUTE = 60  # per market, for an operator's flatten only
_MINUTE = timedelta(minutes=1)


def _to_tif(value: TimeInForce | str) -> TimeInForce:
    if isinstance(value, TimeInForce):
        return value
    tifs = {"ioc": TimeInForce.IOC, "gtc": TimeInForce.GTC, "fok": TimeInForce.FOK}
    try:
        return tifs[value.strip().lower()]
    except KeyError:
        raise ValueError(f"order time in force must be one of {sorted(tifs)}, got {value!r}") from None


def _positive(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:  # type: ignore[type-arg]
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _non_negative(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:  # type: ignore[type-arg]
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


def _fraction(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:  # type: ignore[type-arg]
    if not (0 < value <= 1):
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen(slots=True)
class RiskLimits:
    """The risk settings (RISK_*, ORDER_RATE_PER_MINUTE, ORDER_TIF), money as Decimal."""

    max_position_per_market: Decimal = attrs.field(default=Decimal("50.00"), validator=_non_negative)
    max_portfolio_exposure: Decimal = attrs.field(default=Decimal("250.00"), validator=_non_negative)
    max_daily_loss: Decimal = attrs.field(default=Decimal("25.00"), validator=_positive)
    kelly_fraction: Decimal = attrs.field(default=Decimal("0.25"), validator=_fraction)
    min_edge: Decimal = Decimal("0.02")
    min_trade_size: Decimal = attrs.field(default=Decimal("1.00"), validator=_non_negative)
    max_correlated_exposure: Decimal = attrs.field(default=Decimal("125.00"), validator=_non_negative)
    max_positions: int = attrs.field(default=10, validator=_non_negative)
    max_drawdown_pct: Decimal = attrs.field(default=Decimal("0.15"), validator=_fraction)
    order_rate_per_minute: int = attrs.field(default=6, validator=_positive)
    tif: TimeInForce = attrs.field(default=TimeInForce.IOC, converter=_to_tif)

    @classmethod
    def from_settings(cls, settings: Any) -> RiskLimits:
        """Map `polybot.config.Settings` (duck-typed: the core imports no config)."""
        return cls(
            max_position_per_market=settings.risk_max_position_per_market,
            max_portfolio_exposure=settings.risk_max_portfolio_exposure,
            max_daily_loss=settings.risk_max_daily_loss,
            kelly_fraction=settings.risk_kelly_fraction,
            min_edge=settings.risk_min_edge,
            min_trade_size=settings.risk_min_trade_size,
            max_correlated_exposure=settings.risk_max_correlated_exposure,
            max_positions=settings.risk_max_positions,
            max_drawdown_pct=settings.risk_max_drawdown_pct,
            order_rate_per_minute=settings.order_rate_per_minute,
            tif=settings.order_tif,
        )


# --- sizing -----------------------------------------------------------------------------------------


def effective_cost(intent: Intent, price: Decimal, theta: Decimal) -> Decimal:
    """c = cost per contract of the side bought + the taker fee at `price`."""
    return cost_per_contract(intent, price) + fee_per_contract(price, theta)


def kelly_f(intent: Intent, price: Decimal, q: Decimal, theta: Decimal) -> Decimal:
    """Kelly fraction of a binary contract bought at effective cost c: (w − c)/(1 − c), floored at 0."""
    return _kelly_f_at(intent, effective_cost(intent, price, theta), q)


def _kelly_f_at(intent: Intent, c: Decimal, q: Decimal) -> Decimal:
    """`kelly_f` at an effective cost `c` already computed."""
    if c >= ONE:
        return ZERO
    w = q if intent is Intent.BUY_LONG else ONE - q
    return max((w - c) / (ONE - c), ZERO)


def kelly_target(
    intent: Intent, price: Decimal, q: Decimal, equity: Decimal, kelly_fraction: Decimal, theta: Decimal
) -> Decimal:
    """Target USD at risk of the side `intent` opens: kelly_fraction × f × equity."""
    if equity <= 0:
        return ZERO
    return kelly_fraction * kelly_f(intent, price, q, theta) * equity


def kelly_topup_qty(target: Decimal, current: Decimal, cost: Decimal, min_qty: Decimal) -> Decimal:
    """Contracts that top `current` at-risk up to `target` at effective cost `cost` (never negative)."""
    if target <= current or cost <= 0:
        return ZERO
    return floor_to_step((target - current) / cost, min_qty)


# --- the gate ---------------------------------------------------------------------------------------


class RiskGate:
    """Sizes signals into orders inside every limit (reads the trading state and exposure)."""

    def __init__(
        self,
        limits: RiskLimits,
        *,
        trading: TradingStateMachine,
        exposure: Exposure,
        notify: Notifier | None = None,
        burst_threshold: int = 20,
    ) -> None:
        self.limits = limits
        self.trading = trading
        self.exposure = exposure
        self._notify = notify
        self._burst_threshold = burst_threshold
        self._recent_orders: dict[tuple[str, bool], deque[datetime]] = {}
        self._recent_rejections: deque[datetime] = deque()
        self._last_burst: datetime | None = None
        self._last_rejection: dict[str, str] = {}
        self.rejections: Counter[str] = Counter()
        self.approved = 0

    def set_notifier(self, notify: Notifier) -> None:
        self._notify = notify

    def check(
        self,
        signal: Signal,
        *,
        position: Position | None,
        equity: Decimal,
        cash: Decimal,
        market_info: MarketInfo,
        now: datetime,
        flatten: bool = False,
    ) -> OrderRequest | Rejection:
        """Turn a signal into a sized order inside every limit, or a Rejection with its reason.

        `position` is the market's (from the ledger); the other markets enter through the running
        exposure totals. `flatten=True` marks an operator's flatten (closing orders only), which
        passes even while HALTED and has a rate budget of its own. An approval counts against the
        market's order rate, so call `check` only for an order that will be submitted.
        """
        trading = self.trading
        slug = signal.market_slug
        intent = signal.intent
        if not trading.begun:
            return self._reject(signal, "not_started", trading.reason, now)
        if intent not in (Intent.BUY_LONG, Intent.SELL_LONG, Intent.BUY_SHORT, Intent.SELL_SHORT):
            return self._reject(signal, "bad_intent", str(intent), now)
        price = signal.limit_price
        if not (MIN_PRICE <= price <= MAX_PRICE) or not is_on_step(price, market_info.tick):
            return self._reject(signal, "bad_price", f"{price} (tick {market_info.tick})", now)
        state = trading.state
        if trading.halt_blocks(flatten=flatten):
            return self._reject(signal, "halted", trading.reason, now)
        if intent.is_opening:
            if flatten:
                return self._reject(signal, "flatten_closes_only", "", now)
            if state is TradingState.REDUCING:
                return self._reject(signal, "reducing", trading.reason, now)
            if not self.exposure.event_known(slug):
                return self._reject(signal, "event_unknown",
                                    "the market's event is not established", now)
        market_orders = self.exposure.market_orders(slug)
        crossing = _self_match(intent, price, market_orders)
        if crossing is not None:
            return self._reject(signal, "self_match", f"own order {crossing.order_id}", now)
        if not self._rate_ok(slug, flatten, now):
            budget = FLATTEN_ORDERS_PER_MINUTE if flatten else self.limits.order_rate_per_minute
            return self._reject(signal, "order_rate", f"{budget}/min reached", now)
        if intent.is_opening:
            result = self._size_opening(signal, position, market_orders, equity, cash, market_info)
        else:
            result = self._size_closing(signal, position, market_orders, market_info)
        if isinstance(result, tuple):
            return self._reject(signal, result[0], result[1], now)
        recent = self._recent_orders.get((slug, flatten))
        if recent is None:
            recent = self._recent_orders[(slug, flatten)] = deque()
        recent.append(now)
        self.approved += 1
        self._last_rejection.pop(slug, None)
        return result  # logged by `log_approved` once the order is sent: nothing formats before

    @staticmethod
    def log_approved(request: OrderRequest) -> None:
        log.info("risk: approved %s %s %s @ %s (%s)", request.market_slug, request.intent._name_,
                 request.quantity, request.price, request.reason)

    def _size_closing(
        self,
        signal: Signal,
        position: Position | None,
        market_orders: list[Order],
        market: MarketInfo,
    ) -> OrderRequest | tuple[str, str]:
        net = position.net_qty if position is not None else ZERO
        held = net if signal.intent is Intent.SELL_LONG else -net
        if held <= 0:
            return ("no_position_to_close", f"net position {net}")
        closing = sum((remaining_qty(o) for o in market_orders if o.intent is signal.intent), ZERO)
        qty = floor_to_step(min(held - closing, signal.size_available), market.min_qty)
        if qty < market.min_qty:
            return ("nothing_to_close", f"held {held}, being closed {closing}")
        return self._request(signal, qty, "close")

    def _size_opening(
        self,
        signal: Signal,
        position: Position | None,
        market_orders: list[Order],
        equity: Decimal,
        cash: Decimal,
        market: MarketInfo,
    ) -> OrderRequest | tuple[str, str]:
        limits = self.limits
        exposure = self.exposure
        slug, intent, price = signal.market_slug, signal.intent, signal.limit_price
        net = position.net_qty if position is not None else ZERO
        if (net < 0 and intent is Intent.BUY_LONG) or (net > 0 and intent is Intent.BUY_SHORT):
            return ("opposite_position", f"net position {net}: close it first")
        # Long and short opening orders working together could flip the position through zero,
        # which the exchange nets in an undocumented way: one side at a time.
        other = Intent.BUY_SHORT if intent is Intent.BUY_LONG else Intent.BUY_LONG
        for o in market_orders:
            if o.intent is other and remaining_qty(o) > 0:
                return ("opposite_order_open", f"own {other.name} order {o.order_id} is working")
        if signal.edge < limits.min_edge:
            return ("below_min_edge", f"edge {signal.edge} < {limits.min_edge}")
        if equity <= 0:
            return ("no_equity", f"equity {equity}")
        min_qty = market.min_qty
        theta = taker_theta(market)
        cost = cost_per_contract(intent, price)
        fee = fee_per_contract(price, theta)
        c = cost + fee  # effective_cost
        # kelly_target (equity > 0 here), at the effective cost just computed
        target = limits.kelly_fraction * _kelly_f_at(intent, c, signal.fair_q) * equity
        if target <= 0:
            return ("no_kelly_edge", f"q {signal.fair_q} at effective cost {c}")
        current = side_at_risk(intent, position, market_orders)
        qty = kelly_topup_qty(target, current, c, min_qty)
        if qty <= 0:
            return ("kelly_target_reached", f"at risk {current} >= target {target:.4f}")
        if qty < min_qty or qty * cost < limits.min_trade_size:
            return ("below_min_trade_size", f"kelly top-up {qty} x {cost}")

        if not exposure.is_held(slug) and exposure.held_count >= limits.max_positions:
            return ("max_positions", f"{limits.max_positions} markets already held")

        cash_free = cash - exposure.reserved_cash
        cash_per_contract = cost + max(fee, ZERO)
        caps = (
            ("size_available", floor_to_step(signal.size_available, min_qty)),
            ("max_position_per_market",
             _headroom(limits.max_position_per_market - exposure.market(slug), cost, min_qty)),
            ("max_correlated_exposure",
             _headroom(limits.max_correlated_exposure - exposure.event_of_market(slug), cost, min_qty)),
            ("max_portfolio_exposure",
             _headroom(limits.max_portfolio_exposure - exposure.portfolio, cost, min_qty)),
            # one cent per order covers the per-fill rounding of fees
            ("cash", _headroom(cash_free - CENT, cash_per_contract, min_qty)),
        )
        shrunk: list[str] = []
        for reason, cap in caps:
            if cap < qty:
                qty = cap
                shrunk.append(reason)
                if qty < min_qty or qty * cost < limits.min_trade_size:
                    return (reason, f"headroom {cap} contracts (x {cost}) below the minimum")
        why = "kelly" + (f", shrunk to {'/'.join(shrunk)}" if shrunk else "")
        return self._request(signal, qty, why)

    def _request(self, signal: Signal, qty: Decimal, why: str) -> OrderRequest:
        return OrderRequest(
            market_slug=signal.market_slug,
            intent=signal.intent,
            price=signal.limit_price,
            quantity=qty,
            tif=self.limits.tif,
            signal=signal,
            reason=why,
        )

    def forget(self, slug: str) -> None:
        """The market left the universe: its order-rate windows and last rejection go."""
        self._recent_orders.pop((slug, False), None)
        self._recent_orders.pop((slug, True), None)
        self._last_rejection.pop(slug, None)

    def market_keys(self) -> set[str]:
        return {slug for slug, _ in self._recent_orders} | set(self._last_rejection)

    def _rate_ok(self, slug: str, flatten: bool, now: datetime) -> bool:
        # An operator's flatten has a budget of its own: the orders that built a position must
        # not stop it being closed.
        recent = self._recent_orders.get((slug, flatten))
        if not recent:
            return True
        while recent and now - recent[0] >= _MINUTE:
            recent.popleft()
        budget = FLATTEN_ORDERS_PER_MINUTE if flatten else self.limits.order_rate_per_minute
        return len(recent) < budget

    def _reject(self, signal: Signal, reason: str, detail: str, now: datetime) -> Rejection:
        slug = signal.market_slug
        self.rejections[reason] += 1
        # Log every rejection, but a repeat of the same reason for a market (every book frame
        # while a target is reached) only at debug, so the log stays readable.
        level = logging.DEBUG if self._last_rejection.get(slug) == reason else logging.INFO
        self._last_rejection[slug] = reason
        log.log(
            level,
            "risk: rejected %s %s: %s %s",
            slug, signal.intent.name, reason, detail,
            extra={"rejection": reason, "market": slug},
        )
        if reason not in ROUTINE_REJECTIONS:
            self._note_burst(now)
        return Rejection(market_slug=slug, intent=signal.intent, reason=reason, detail=detail)

    def _note_burst(self, now: datetime) -> None:
        recent = self._recent_rejections
        recent.append(now)
        while recent and now - recent[0] >= _MINUTE:
            recent.popleft()
        if len(recent) >= self._burst_threshold and (
            self._last_burst is None or now - self._last_burst >= _MINUTE
        ):
            self._last_burst = now
            top = ", ".join(f"{r}={n}" for r, n in self.rejections.most_common(3))
            message = f"{len(recent)} rejections in a minute ({top})"
            log.warning("risk: %s", message)
            if self._notify is not None:
                try:
                    self._notify(Notice(kind=NoticeKind.REJECTION_BURST, message=message,
                                        state=self.trading.state, reason=self.trading.reason))
                except Exception:  # a broken notifier must never stop the gate
                    log.exception("risk: notifier failed")


# Sizing saying "nothing more to do here" on every frame while a target holds: counted and logged,
# but not a burst an operator must hear about (the demo saw one alert a minute from these alone).
ROUTINE_REJECTIONS = frozenset({
    "kelly_target_reached", "below_min_trade_size", "nothing_to_close", "no_position_to_close",
})


def _headroom(room: Decimal, per_contract: Decimal, min_qty: Decimal) -> Decimal:
    if room <= 0 or per_contract <= 0:
        return ZERO
    return floor_to_step(room / per_contract, min_qty)


def _self_match(intent: Intent, price: Decimal, market_orders: Iterable[Order]) -> Order | None:
    """An own resting order on the other side of the YES book that this order would trade with."""
    buying = intent.book_side is Side.BUY
    for o in market_orders:
        if o.intent.book_side is intent.book_side or remaining_qty(o) <= 0:
            continue
        if (buying and o.price <= price) or (not buying and o.price >= price):
            return o
    return None
