"""The risk gate: the only path from a signal to an executor.

Everything here is pure: the gate is handed the positions, open orders, equity, cash and the clock
(`now`, a timezone-aware datetime) and answers with an `OrderRequest` or a `Rejection`. The only
I/O is the operator's files in `DATA_DIR` (`KILL`, `RESUME`), stat-ed on each decision so a kill
switch bites at once.

**USD at risk** (the trading-core definitions, used for every cap): what is lost if the market
resolves against a position or an open order, at cost, fees excluded. A YES position risks
qty × average price, a NO (short) one qty × (1 − average YES price); an open BUY_LONG order risks
remaining × limit, an open BUY_SHORT one remaining × (1 − limit); closing orders add nothing. Orders
being submitted or with an unknown outcome count as open at full size. "Remaining" is taken as
max(leaves, quantity − cum) so an order whose leaves are not yet known still counts in full.
Per event = the sum over the event's markets, portfolio = the sum over all markets.

**Sizing an opening order** (BUY_LONG / BUY_SHORT): the Kelly target for the side with the edge,
at the effective cost c = cost per contract + taker fee at the order's limit (the worst it may
pay), is ``kelly_fraction × (w − c)/(1 − c) × equity``; the order only tops the side's current
at-risk up to it, ``floor((target − current)/c)`` on the market's minimum quantity. Then each cap
in turn — the size available, per market, per event, portfolio, cash (including fees, net of what
open orders already reserve) — may shrink it to its headroom; if that leaves less than the
market's minimum quantity or less than `min_trade_size` of notional, the order is rejected with
that cap as the reason. The positions count and the per-market order rate are yes/no checks.

**Closing orders** (SELL_LONG / SELL_SHORT) reduce at-risk, so they skip Kelly, edge and caps:
size = min(position not already being closed by open orders, size available). They never flip a
position.

**Trading states** (global): ACTIVE; REDUCING — the portfolio cap is exceeded although the gate
never lets an order do that (a cap lowered at restart, an adopted position) or an operator asked to
flatten: only closing orders pass; HALTED — nothing passes except an operator's flatten (closing
orders submitted with ``flatten=True``); cancels never go through the gate. Halts:

- daily loss: equity fell by `max_daily_loss` since the trading day's start (the first equity seen
  at or after `reset_hour` in `reset_tz`); holds until the next trading day;
- drawdown: equity fell `max_drawdown_pct` below the high-water mark; holds until the operator's
  `RESUME` request is consumed (which also re-bases the high-water mark at the current equity);
- kill switch: `DATA_DIR/KILL` exists; holds exactly while it exists.

Deposits and withdrawals are not P&L: `on_transfer` shifts the day's start equity and the
high-water mark. The gate is the only writer of this state; `halt_state()`/`restore()` carry it to
and from the store as plain data.

Entering HALTED is announced through the notifier callback (kind ``halt_entered``); the composition
root reacts by cancelling the bot's open orders.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from polybot.model import (
    MAX_PRICE,
    MIN_PRICE,
    ONE,
    ZERO,
    Intent,
    MarketInfo,
    Order,
    OrderRequest,
    OrderState,
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
from polybot.pricing import CENT, TAKER_THETA, fee_per_contract
from polybot.strategy import taker_theta

log = logging.getLogger(__name__)

KILL_FILE = "KILL"
RESUME_FILE = "RESUME"
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


# --- exposure: pure functions of positions and open orders --------------------------------------


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
    return remaining_qty(order) * cost_per_contract(order.intent, order.price)


def position_at_risk(position: Position | None) -> Decimal:
    """YES: qty × average price; NO: qty × (1 − average YES price); cost unknown: qty × $1."""
    if position is None or position.net_qty == 0:
        return ZERO
    if not position.cost_known:  # the most it can have cost
        return abs(position.net_qty)
    if position.net_qty > 0:
        return position.net_qty * position.avg_price
    return -position.net_qty * (ONE - position.avg_price)


def usd_at_risk(position: Position | None, open_orders: Iterable[Order]) -> Decimal:
    """USD at risk of one market: its position plus its open orders (pass only that market's)."""
    return position_at_risk(position) + sum((order_at_risk(o) for o in open_orders), ZERO)


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


def at_risk_by_market(
    positions: Mapping[str, Position], open_orders: Iterable[Order]
) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for slug, pos in positions.items():
        r = position_at_risk(pos)
        if r:
            out[slug] = out.get(slug, ZERO) + r
    for o in open_orders:
        r = order_at_risk(o)
        if r:
            out[o.market_slug] = out.get(o.market_slug, ZERO) + r
    return out


def event_key(slug: str, event_of: Mapping[str, str]) -> str:
    """A market's event id; a market with no known event is an event of its own."""
    return event_of.get(slug) or f"market:{slug}"


def event_at_risk(event_id: str, by_market: Mapping[str, Decimal], event_of: Mapping[str, str]) -> Decimal:
    return sum((r for slug, r in by_market.items() if event_key(slug, event_of) == event_id), ZERO)


def portfolio_at_risk(by_market: Mapping[str, Decimal]) -> Decimal:
    return sum(by_market.values(), ZERO)


def counted_markets(positions: Mapping[str, Position], open_orders: Iterable[Order]) -> set[str]:
    """Markets with a non-zero position or an open opening order (for RISK_MAX_POSITIONS)."""
    out = {slug for slug, p in positions.items() if p.net_qty != 0}
    out.update(o.market_slug for o in open_orders if o.intent.is_opening and remaining_qty(o) > 0)
    return out


def positions_count(positions: Mapping[str, Position], open_orders: Iterable[Order]) -> int:
    return len(counted_markets(positions, open_orders))


def exposure_summary(
    positions: Mapping[str, Position], open_orders: Iterable[Order], event_of: Mapping[str, str]
) -> dict[str, Any]:
    """USD at risk per market, per event and in the portfolio, and the positions count (for
    /status and metrics)."""
    orders = list(open_orders)
    by_market = at_risk_by_market(positions, orders)
    by_event: dict[str, Decimal] = {}
    for slug, r in by_market.items():
        key = event_key(slug, event_of)
        by_event[key] = by_event.get(key, ZERO) + r
    return {
        "by_market": by_market,
        "by_event": by_event,
        "portfolio": portfolio_at_risk(by_market),
        "positions_count": positions_count(positions, orders),
    }


def effective_cost(intent: Intent, price: Decimal, theta: Decimal) -> Decimal:
    """c = cost per contract of the side bought + the taker fee at `price`."""
    return cost_per_contract(intent, price) + fee_per_contract(price, theta)


def kelly_f(intent: Intent, price: Decimal, q: Decimal, theta: Decimal) -> Decimal:
    """Kelly fraction of a binary contract bought at effective cost c: (w − c)/(1 − c), floored at 0."""
    c = effective_cost(intent, price, theta)
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


# --- trading day ------------------------------------------------------------------------------------


def trading_day(now: datetime, tz: ZoneInfo, reset_hour: int) -> date:
    """The trading day `now` falls in: days start at `reset_hour` o'clock (wall time) in `tz`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz).replace(tzinfo=None)
    return (local - timedelta(hours=reset_hour)).date()


# --- persisted state and notices ------------------------------------------------------------------


@attrs.frozen(slots=True)
class HaltState:
    """What the gate must remember across restarts (the kill switch is the file itself)."""

    day: date | None = None
    day_start_equity: Decimal | None = None
    high_water_mark: Decimal | None = None
    daily_loss_halt_day: date | None = None  # halted for daily loss during this trading day
    drawdown_halt: bool = False
    flatten_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: dates ISO, Decimals as strings."""
        return {
            "day": self.day.isoformat() if self.day else None,
            "day_start_equity": str(self.day_start_equity) if self.day_start_equity is not None else None,
            "high_water_mark": str(self.high_water_mark) if self.high_water_mark is not None else None,
            "daily_loss_halt_day": self.daily_loss_halt_day.isoformat() if self.daily_loss_halt_day else None,
            "drawdown_halt": self.drawdown_halt,
            "flatten_requested": self.flatten_requested,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HaltState:
        def dec(v: Any) -> Decimal | None:
            return Decimal(str(v)) if v is not None else None

        def day(v: Any) -> date | None:
            return date.fromisoformat(v) if v else None

        return cls(
            day=day(d.get("day")),
            day_start_equity=dec(d.get("day_start_equity")),
            high_water_mark=dec(d.get("high_water_mark")),
            daily_loss_halt_day=day(d.get("daily_loss_halt_day")),
            drawdown_halt=bool(d.get("drawdown_halt", False)),
            flatten_requested=bool(d.get("flatten_requested", False)),
        )


@attrs.frozen(slots=True)
class Notice:
    """Something an operator must hear (kinds: halt_entered, halt_left, state_changed,
    rejection_burst, resume_consumed, transfer)."""

    kind: str
    message: str
    state: TradingState
    reason: str = ""


Notifier = Callable[[Notice], None]


# --- the gate ---------------------------------------------------------------------------------------


class RiskGate:
    """Sizes signals into orders inside every limit, and owns the trading state (single writer)."""

    def __init__(
        self,
        limits: RiskLimits,
        *,
        data_dir: Path | str | None = None,
        reset_tz: str = "America/New_York",
        reset_hour: int = 0,
        notify: Notifier | None = None,
        burst_threshold: int = 20,
    ) -> None:
        if not 0 <= reset_hour <= 23:
            raise ValueError(f"reset_hour must be 0..23, got {reset_hour}")
        self.limits = limits
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._tz = ZoneInfo(reset_tz)
        self._reset_hour = reset_hour
        self._notify = notify
        self._burst_threshold = burst_threshold
        self._halt = HaltState()
        self._kill = False
        self._over_cap = False
        self._state = TradingState.ACTIVE
        self._reason = ""
        self._recent_orders: dict[str, deque[datetime]] = {}
        self._recent_rejections: deque[datetime] = deque()
        self._last_burst: datetime | None = None
        self._last_rejection: dict[str, str] = {}
        self.rejections: Counter[str] = Counter()
        self.approved = 0

    # --- state as data ------------------------------------------------------------------------

    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def ready(self) -> bool:
        """/ready: trading allowed (ACTIVE or REDUCING)."""
        return self._state is not TradingState.HALTED

    def halt_reasons(self, now: datetime | None = None) -> list[str]:
        reasons = []
        if self._kill:
            reasons.append("kill_switch")
        if self._halt.daily_loss_halt_day is not None and (
            now is None or self._halt.daily_loss_halt_day == self._day(now)
        ):
            reasons.append("daily_loss")
        if self._halt.drawdown_halt:
            reasons.append("drawdown")
        return reasons

    def status(self) -> dict[str, Any]:
        h = self._halt
        return {
            "state": self._state.value,
            "reason": self._reason,
            "ready": self.ready,
            "halt_reasons": self.halt_reasons(),
            "over_portfolio_cap": self._over_cap,
            "flatten_requested": h.flatten_requested,
            "trading_day": h.day.isoformat() if h.day else None,
            "day_start_equity": str(h.day_start_equity) if h.day_start_equity is not None else None,
            "high_water_mark": str(h.high_water_mark) if h.high_water_mark is not None else None,
            "approved": self.approved,
            "rejections": dict(self.rejections),
        }

    def halt_state(self) -> HaltState:
        return self._halt

    def restore(self, state: HaltState | Mapping[str, Any]) -> None:
        """Resume from persisted state (before the first decision)."""
        self._halt = state if isinstance(state, HaltState) else HaltState.from_dict(state)

    # --- operator and bookkeeping inputs --------------------------------------------------------

    def on_transfer(self, amount: Decimal) -> None:
        """A deposit (positive) or withdrawal (negative) is not P&L: shift the baselines."""
        h = self._halt
        self._halt = attrs.evolve(
            h,
            day_start_equity=h.day_start_equity + amount if h.day_start_equity is not None else None,
            high_water_mark=h.high_water_mark + amount if h.high_water_mark is not None else None,
        )
        log.info("risk: transfer of %s shifts day start and high-water mark", amount)

    def request_flatten(self) -> None:
        """Operator flatten: only closing orders pass until the operator resumes."""
        self._halt = attrs.evolve(self._halt, flatten_requested=True)

    def resume(self, equity: Decimal) -> None:
        """Clear a drawdown halt and a flatten request; the high-water mark restarts at `equity`.

        Called when a RESUME request file is consumed. A daily-loss halt still holds until the
        next trading day, and the kill switch while its file exists.
        """
        self._halt = attrs.evolve(
            self._halt, drawdown_halt=False, flatten_requested=False, high_water_mark=equity
        )

    # --- state machine ------------------------------------------------------------------------

    def _day(self, now: datetime) -> date:
        return trading_day(now, self._tz, self._reset_hour)

    def _poll_files(self, equity: Decimal) -> None:
        if self._data_dir is None:
            return
        self._kill = (self._data_dir / KILL_FILE).exists()
        resume = self._data_dir / RESUME_FILE
        if resume.exists():
            try:
                resume.unlink()
            except FileNotFoundError:
                pass
            self.resume(equity)
            self._emit("resume_consumed", "operator resume consumed: drawdown halt and flatten cleared")

    def observe(
        self,
        *,
        equity: Decimal,
        positions: Mapping[str, Position],
        open_orders: Iterable[Order],
        now: datetime,
    ) -> TradingState:
        """Update the trading state from the latest equity and exposure (cheap; call often)."""
        self._poll_files(equity)
        h = self._halt
        today = self._day(now)
        if h.day != today:
            # A new trading day starts at the first equity seen in it.
            expired = h.daily_loss_halt_day is not None and h.daily_loss_halt_day != today
            h = attrs.evolve(
                h,
                day=today,
                day_start_equity=equity,
                daily_loss_halt_day=None if expired else h.daily_loss_halt_day,
            )
        if h.day_start_equity is None:
            h = attrs.evolve(h, day_start_equity=equity)
        if h.high_water_mark is None or equity > h.high_water_mark:
            h = attrs.evolve(h, high_water_mark=equity)
        limits = self.limits
        start, high = h.day_start_equity, h.high_water_mark
        assert start is not None and high is not None  # both set just above
        if h.daily_loss_halt_day != today and start - equity >= limits.max_daily_loss:
            h = attrs.evolve(h, daily_loss_halt_day=today)
        if (
            not h.drawdown_halt
            and high > 0
            and high - equity >= limits.max_drawdown_pct * high
        ):
            h = attrs.evolve(h, drawdown_halt=True)
        self._halt = h
        by_market = at_risk_by_market(positions, open_orders)
        self._over_cap = portfolio_at_risk(by_market) > limits.max_portfolio_exposure
        self._set_state(now)
        return self._state

    def _set_state(self, now: datetime) -> None:
        halts = self.halt_reasons(now)
        if halts:
            state, reason = TradingState.HALTED, ",".join(halts)
        elif self._halt.flatten_requested:
            state, reason = TradingState.REDUCING, "operator_flatten"
        elif self._over_cap:
            state, reason = TradingState.REDUCING, "portfolio_over_cap"
        else:
            state, reason = TradingState.ACTIVE, ""
        if (state, reason) == (self._state, self._reason):
            return
        before = self._state
        self._state, self._reason = state, reason
        if state is TradingState.HALTED and before is not TradingState.HALTED:
            self._emit("halt_entered", f"trading HALTED: {reason}", level=logging.ERROR)
        elif before is TradingState.HALTED and state is not TradingState.HALTED:
            self._emit("halt_left", f"halt cleared, trading {state.value}")
        else:
            self._emit("state_changed", f"trading {state.value}" + (f": {reason}" if reason else ""))

    def _emit(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        notice = Notice(kind=kind, message=message, state=self._state, reason=self._reason)
        log.log(level, "risk: %s", message, extra={"notice": kind, "trading_state": self._state.value})
        if self._notify is not None:
            try:
                self._notify(notice)
            except Exception:  # a broken notifier must never stop the gate
                log.exception("risk: notifier failed")

    # --- decisions ----------------------------------------------------------------------------

    def check(
        self,
        signal: Signal,
        *,
        positions: Mapping[str, Position],
        open_orders: Iterable[Order],
        equity: Decimal,
        cash: Decimal,
        market_info: MarketInfo,
        event_of: Mapping[str, str],
        now: datetime,
        flatten: bool = False,
    ) -> OrderRequest | Rejection:
        """Turn a signal into a sized order inside every limit, or a Rejection with its reason.

        `positions` and `open_orders` cover every configured market (the account is dedicated);
        `event_of` maps market slug to event id. `flatten=True` marks an operator's flatten
        (closing orders only), which passes even while HALTED. An approval counts against the
        market's order rate, so call `check` only for an order that will be submitted.
        """
        orders = list(open_orders)
        self.observe(equity=equity, positions=positions, open_orders=orders, now=now)
        slug = signal.market_slug
        intent = signal.intent
        if intent not in (Intent.BUY_LONG, Intent.SELL_LONG, Intent.BUY_SHORT, Intent.SELL_SHORT):
            return self._reject(signal, "bad_intent", str(intent), now)
        price = signal.limit_price
        if not (MIN_PRICE <= price <= MAX_PRICE) or not is_on_step(price, market_info.tick):
            return self._reject(signal, "bad_price", f"{price} (tick {market_info.tick})", now)
        if self._state is TradingState.HALTED and not flatten:
            return self._reject(signal, "halted", self._reason, now)
        if intent.is_opening:
            if flatten:
                return self._reject(signal, "flatten_closes_only", "", now)
            if self._state is TradingState.REDUCING:
                return self._reject(signal, "reducing", self._reason, now)
        market_orders = [o for o in orders if o.market_slug == slug and o.state.is_open]
        crossing = _self_match(intent, price, market_orders)
        if crossing is not None:
            return self._reject(signal, "self_match", f"own order {crossing.order_id}", now)
        if not self._rate_ok(slug, now):
            return self._reject(
                signal, "order_rate", f"{self.limits.order_rate_per_minute}/min reached", now
            )
        if intent.is_opening:
            result = self._size_opening(
                signal, positions, orders, market_orders, equity, cash, market_info, event_of
            )
        else:
            result = self._size_closing(signal, positions.get(slug), market_orders, market_info)
        if isinstance(result, tuple):
            return self._reject(signal, result[0], result[1], now)
        self._recent_orders.setdefault(slug, deque()).append(now)
        self.approved += 1
        self._last_rejection.pop(slug, None)
        log.info(
            "risk: approved %s %s %s @ %s (%s)",
            slug, intent.name, result.quantity, result.price, result.reason,
        )
        return result

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
        positions: Mapping[str, Position],
        orders: list[Order],
        market_orders: list[Order],
        equity: Decimal,
        cash: Decimal,
        market: MarketInfo,
        event_of: Mapping[str, str],
    ) -> OrderRequest | tuple[str, str]:
        limits = self.limits
        slug, intent, price = signal.market_slug, signal.intent, signal.limit_price
        position = positions.get(slug)
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
        c = effective_cost(intent, price, theta)
        target = kelly_target(intent, price, signal.fair_q, equity, limits.kelly_fraction, theta)
        if target <= 0:
            return ("no_kelly_edge", f"q {signal.fair_q} at effective cost {c}")
        current = side_at_risk(intent, position, market_orders)
        qty = kelly_topup_qty(target, current, c, min_qty)
        if qty <= 0:
            return ("kelly_target_reached", f"at risk {current} >= target {target:.4f}")
        if qty < min_qty or qty * cost < limits.min_trade_size:
            return ("below_min_trade_size", f"kelly top-up {qty} x {cost}")

        held = counted_markets(positions, orders)
        if slug not in held and len(held) >= limits.max_positions:
            return ("max_positions", f"{limits.max_positions} markets already held")

        by_market = at_risk_by_market(positions, orders)
        market_risk = by_market.get(slug, ZERO)
        event_id = event_of.get(slug) or market.event_id or ""
        ev_map: Mapping[str, str] = event_of
        if event_id and slug not in event_of:
            ev_map = {**event_of, slug: event_id}
        event_risk = event_at_risk(event_key(slug, ev_map), by_market, ev_map)
        total_risk = portfolio_at_risk(by_market)
        cash_free = cash - _reserved_cash(orders, theta)
        cash_per_contract = cost + max(fee_per_contract(price, theta), ZERO)

        caps = (
            ("size_available", floor_to_step(signal.size_available, min_qty)),
            ("max_position_per_market", _headroom(limits.max_position_per_market - market_risk, cost, min_qty)),
            ("max_correlated_exposure", _headroom(limits.max_correlated_exposure - event_risk, cost, min_qty)),
            ("max_portfolio_exposure", _headroom(limits.max_portfolio_exposure - total_risk, cost, min_qty)),
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

    def _rate_ok(self, slug: str, now: datetime) -> bool:
        recent = self._recent_orders.get(slug)
        if not recent:
            return True
        while recent and now - recent[0] >= _MINUTE:
            recent.popleft()
        return len(recent) < self.limits.order_rate_per_minute

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
            self._emit("rejection_burst", f"{len(recent)} rejections in a minute ({top})")


# Sizing saying "nothing more to do here" on every frame while a target holds: counted and logged,
# but not a burst an operator must hear about (the demo saw one alert a minute from these alone).
ROUTINE_REJECTIONS = frozenset({
    "kelly_target_reached", "below_min_trade_size", "nothing_to_close", "no_position_to_close",
})


def _headroom(room: Decimal, per_contract: Decimal, min_qty: Decimal) -> Decimal:
    if room <= 0 or per_contract <= 0:
        return ZERO
    return floor_to_step(room / per_contract, min_qty)


def _reserved_cash(orders: Iterable[Order], theta: Decimal) -> Decimal:
    """Cash open opening orders will still consume if they fill (cost + fee, plus a cent each)."""
    reserve_theta = max(theta, TAKER_THETA)
    total = ZERO
    for o in orders:
        if not o.intent.is_opening:
            continue
        rem = remaining_qty(o)
        if rem > 0:
            per = cost_per_contract(o.intent, o.price) + fee_per_contract(o.price, reserve_theta)
            total += rem * per + CENT
    return total


def _self_match(intent: Intent, price: Decimal, market_orders: Iterable[Order]) -> Order | None:
    """An own resting order on the other side of the YES book that this order would trade with."""
    buying = intent.book_side is Side.BUY
    for o in market_orders:
        if o.intent.book_side is intent.book_side or remaining_qty(o) <= 0:
            continue
        if (buying and o.price <= price) or (not buying and o.price >= price):
            return o
    return None


# --- operator helpers (the CLI's `halt` / `resume`; they work with the bot down) --------------------


def write_kill_file(data_dir: Path | str, reason: str = "") -> Path:
    """Create DATA_DIR/KILL: the bot halts at once and stays halted while the file exists."""
    path = Path(data_dir) / KILL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((reason or "halted by operator") + "\n")
    return path


def remove_kill_file(data_dir: Path | str) -> bool:
    """Remove DATA_DIR/KILL; True if it existed."""
    try:
        (Path(data_dir) / KILL_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def write_resume_request(data_dir: Path | str) -> Path:
    """Leave DATA_DIR/RESUME for the bot to consume (clears a drawdown halt and a flatten)."""
    path = Path(data_dir) / RESUME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("resume requested\n")
    return path
