"""Value types shared by every part of polybot.

Everything here is a frozen, slotted attrs class or an enum, free of I/O. Prices are always the
long (YES) side's price in USD as `Decimal`, quantities are contracts as `Decimal`. The enums carry
the exchange's wire names (``ORDER_INTENT_BUY_LONG`` ...) as their values so the wire layer can map
them without tables, and each has an ``UNKNOWN`` member for values the exchange adds later.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import attrs

ZERO = Decimal(0)
ONE = Decimal(1)
MIN_PRICE = Decimal("0.01")
MAX_PRICE = Decimal("0.99")


class _WireEnum(enum.Enum):
    """An enum whose value is the exchange's wire string; unknown strings map to UNKNOWN."""

    # Members are singletons compared by identity: hash them by identity too (C), not by name
    # (`enum.Enum.__hash__` is a Python call, paid at every set or dict lookup of an order state
    # or intent on the trading path).
    __hash__ = object.__hash__

    @classmethod
    def from_wire(cls, value: str | None) -> Any:
        if value is None:
            return cls["UNKNOWN"]
        try:
            return cls(value)
        except ValueError:
            return cls["UNKNOWN"]


class Intent(_WireEnum):
    BUY_LONG = "ORDER_INTENT_BUY_LONG"
    SELL_LONG = "ORDER_INTENT_SELL_LONG"
    BUY_SHORT = "ORDER_INTENT_BUY_SHORT"
    SELL_SHORT = "ORDER_INTENT_SELL_SHORT"
    UNKNOWN = "ORDER_INTENT_UNSPECIFIED"

    # Constants of each member, set once below (plain attributes: read on every decision, where
    # a property is a Python call each time).
    is_opening: bool  # BUY_LONG and BUY_SHORT open (add) exposure; SELL_* close it
    book_side: Side  # the side it takes on the YES book (BUY_SHORT sells YES, SELL_SHORT buys it)
    position_sign: int  # +1 if a fill raises the signed net YES position, -1 if it lowers it


class Side(_WireEnum):
    BUY = "ORDER_SIDE_BUY"
    SELL = "ORDER_SIDE_SELL"
    UNKNOWN = "ORDER_SIDE_UNSPECIFIED"


for _intent in Intent:
    _intent.is_opening = _intent in (Intent.BUY_LONG, Intent.BUY_SHORT)
    _intent.book_side = Side.BUY if _intent in (Intent.BUY_LONG, Intent.SELL_SHORT) else Side.SELL
    _intent.position_sign = 1 if _intent.book_side is Side.BUY else -1


class OrderType(_WireEnum):
    LIMIT = "ORDER_TYPE_LIMIT"
    MARKET = "ORDER_TYPE_MARKET"
    UNKNOWN = "ORDER_TYPE_UNSPECIFIED"


class TimeInForce(_WireEnum):
    DAY = "TIME_IN_FORCE_DAY"
    GTC = "TIME_IN_FORCE_GOOD_TILL_CANCEL"
    GTD = "TIME_IN_FORCE_GOOD_TILL_DATE"
    IOC = "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL"
    FOK = "TIME_IN_FORCE_FILL_OR_KILL"
    UNKNOWN = "TIME_IN_FORCE_UNSPECIFIED"


class OrderState(_WireEnum):
    """Exchange order states, plus the bot's own SUBMITTING and OUTCOME_UNKNOWN (never on the wire)."""

    SUBMITTING = "polybot:SUBMITTING"
    OUTCOME_UNKNOWN = "polybot:OUTCOME_UNKNOWN"
    PENDING_NEW = "ORDER_STATE_PENDING_NEW"
    NEW = "ORDER_STATE_NEW"
    PARTIALLY_FILLED = "ORDER_STATE_PARTIALLY_FILLED"
    FILLED = "ORDER_STATE_FILLED"
    CANCELED = "ORDER_STATE_CANCELED"
    REPLACED = "ORDER_STATE_REPLACED"
    REJECTED = "ORDER_STATE_REJECTED"
    EXPIRED = "ORDER_STATE_EXPIRED"
    PENDING_REPLACE = "ORDER_STATE_PENDING_REPLACE"
    PENDING_CANCEL = "ORDER_STATE_PENDING_CANCEL"
    PENDING_RISK = "ORDER_STATE_PENDING_RISK"
    UNKNOWN = "ORDER_STATE_UNSPECIFIED"

    # Constants of each member, set once below (plain attributes, read on the trading path).
    is_terminal: bool
    is_open: bool  # counts as open for USD at risk: working at the exchange, or not yet resolved


_TERMINAL_STATES = frozenset(
    {
        OrderState.FILLED,
        OrderState.CANCELED,
        OrderState.REPLACED,
        OrderState.REJECTED,
        OrderState.EXPIRED,
    }
)
for _state in OrderState:
    _state.is_terminal = _state in _TERMINAL_STATES
    _state.is_open = not _state.is_terminal and _state is not OrderState.UNKNOWN


class ExecutionType(_WireEnum):
    NEW = "EXECUTION_TYPE_NEW"
    PARTIAL_FILL = "EXECUTION_TYPE_PARTIAL_FILL"
    FILL = "EXECUTION_TYPE_FILL"
    CANCELED = "EXECUTION_TYPE_CANCELED"
    REPLACE = "EXECUTION_TYPE_REPLACE"
    REJECTED = "EXECUTION_TYPE_REJECTED"
    EXPIRED = "EXECUTION_TYPE_EXPIRED"
    DONE_FOR_DAY = "EXECUTION_TYPE_DONE_FOR_DAY"
    UNKNOWN = "EXECUTION_TYPE_UNSPECIFIED"

    @property
    def is_fill(self) -> bool:
        return self in (ExecutionType.PARTIAL_FILL, ExecutionType.FILL)


class MarketState(_WireEnum):
    OPEN = "MARKET_STATE_OPEN"
    PREOPEN = "MARKET_STATE_PREOPEN"
    SUSPENDED = "MARKET_STATE_SUSPENDED"
    HALTED = "MARKET_STATE_HALTED"
    EXPIRED = "MARKET_STATE_EXPIRED"
    TERMINATED = "MARKET_STATE_TERMINATED"
    MATCH_AND_CLOSE_AUCTION = "MARKET_STATE_MATCH_AND_CLOSE_AUCTION"
    CLOSED = "MARKET_STATE_CLOSED"
    UNKNOWN = "MARKET_STATE_UNSPECIFIED"


class MarketStatus(_WireEnum):
    OPEN = "MARKET_STATUS_OPEN"
    CLOSED = "MARKET_STATUS_CLOSED"
    RESOLVING = "MARKET_STATUS_RESOLVING"
    RESOLVED = "MARKET_STATUS_RESOLVED"
    HALTED = "MARKET_STATUS_HALTED"
    UNKNOWN = "MARKET_STATUS_UNSPECIFIED"


class TradingState(enum.Enum):
    """The risk gate's global state (see the trading-core definitions)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


# --- price and quantity arithmetic on the market's grid --------------------------------------


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` not above `value` (sizing always rounds down)."""
    if step <= 0:
        raise ValueError("step must be positive")
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        raise ValueError("step must be positive")
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def is_on_step(value: Decimal, step: Decimal) -> bool:
    steps = value / step
    return steps == steps.to_integral_value()


def cost_per_contract(intent: Intent, price: Decimal) -> Decimal:
    """What one contract of an opening order puts at risk, fees excluded.

    BUY_LONG at YES price p pays p; BUY_SHORT at p costs the NO side, 1 - p.
    """
    if intent is Intent.BUY_LONG or intent is Intent.SELL_SHORT:
        return price
    return ONE - price


# --- market reference data ---------------------------------------------------------------------


@attrs.frozen(slots=True)
class MarketInfo:
    """What the bot needs to know about one tradable market (from the exchange's market object)."""

    slug: str
    market_id: str = ""
    event_id: str = ""
    event_slug: str = ""
    tick: Decimal = Decimal("0.01")
    min_qty: Decimal = ONE
    fee_coefficient: Decimal | None = None
    status: MarketStatus = MarketStatus.OPEN
    start_time: datetime | None = None
    title: str = ""
    sides: tuple[MarketSideInfo, ...] = ()
    sports_market_type: str = ""


@attrs.frozen(slots=True)
class MarketSideInfo:
    """One side of a market (`marketSides[]`): `long` is True for the YES side."""

    side_id: str
    long: bool
    description: str = ""
    team_id: str = ""


@attrs.frozen(slots=True)
class TeamInfo:
    """A team of an exchange event; `provider_ids` pairs (provider, id), e.g. ("PROVIDER_OPTICODDS", "AAAA11112222")."""

    team_id: str
    name: str
    abbreviation: str = ""
    league: str = ""
    provider_ids: tuple[tuple[str, str], ...] = ()

    def provider_id(self, provider: str) -> str | None:
        for p, i in self.provider_ids:
            if p == provider:
                return i
        return None


@attrs.frozen(slots=True)
class EventInfo:
    """An exchange event (one game) with its teams and the slugs of its markets."""

    event_id: str
    slug: str
    title: str = ""
    start_time: datetime | None = None
    series_slug: str = ""
    teams: tuple[TeamInfo, ...] = ()
    market_slugs: tuple[str, ...] = ()
    market_ids: tuple[str, ...] = ()
    game_id: str = ""  # the exchange's gameId: set on game events, absent on futures/placeholders


@attrs.frozen(slots=True)
class LeagueInfo:
    """A Polymarket US league (`GET /v2/leagues/{slug}`); its active series lists its games."""

    slug: str
    name: str = ""
    league_id: str = ""
    active_series_id: str = ""  # changes by season: read at run time, never hard-coded
    is_operational: bool = True


@attrs.frozen(slots=True)
class MappedMarketSide:
    """A partner (OpticOdds) selection mapped onto an exchange market side (reference §11)."""

    market_side_id: str
    market_id: str
    event_id: str
    external_event_id: str = ""
    external_market_type: str = ""
    external_normalized_selection: str = ""
    external_selection_line: str = ""
    external_points: str = ""


@attrs.frozen(slots=True)
class PriceLevel:
    price: Decimal
    qty: Decimal


@attrs.frozen(slots=True)
class BookSnapshot:
    """One full book of a market's YES instrument, as the exchange sends it (best first)."""

    market_slug: str
    bids: tuple[PriceLevel, ...]
    offers: tuple[PriceLevel, ...]
    state: MarketState = MarketState.OPEN
    transact_time: datetime | None = None
    received_at: float = 0.0  # trio.current_time() (or time.monotonic()) at arrival

    @property
    def best_bid(self) -> PriceLevel | None:
        return self.bids[0] if self.bids else None

    @property
    def best_offer(self) -> PriceLevel | None:
        return self.offers[0] if self.offers else None


@attrs.frozen(slots=True)
class TradePrint:
    market_slug: str
    price: Decimal
    qty: Decimal
    taker_side: Side
    trade_time: datetime | None = None


# --- orders, executions, fills ------------------------------------------------------------------


@attrs.frozen(slots=True)
class Order:
    """An order as the exchange reports it (or as the paper executor mirrors it)."""

    order_id: str
    market_slug: str
    intent: Intent
    price: Decimal
    quantity: Decimal
    cum_quantity: Decimal = ZERO
    leaves_quantity: Decimal = ZERO
    state: OrderState = OrderState.NEW
    order_type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    avg_px: Decimal | None = None
    create_time: datetime | None = None
    commission_total: Decimal | None = None


@attrs.frozen(slots=True)
class Execution:
    """One state change of one order (the exchange's Execution object)."""

    exec_id: str
    order: Order
    exec_type: ExecutionType
    last_shares: Decimal = ZERO
    last_px: Decimal | None = None
    trade_id: str = ""
    aggressor: bool | None = None
    # positive = fee charged, negative = rebate (convention shared with polybot.sim)
    commission: Decimal | None = None
    reject_reason: str = ""
    text: str = ""
    unsolicited_cancel_reason: str = ""
    transact_time: datetime | None = None


@attrs.frozen(slots=True)
class Fill:
    """A booked fill: the growth of one order's cumulative quantity."""

    order_id: str
    market_slug: str
    intent: Intent
    qty: Decimal
    price: Decimal
    fee: Decimal  # positive = charged, negative = rebate
    exec_id: str = ""
    trade_id: str = ""
    is_taker: bool = True
    ts: datetime | None = None


@attrs.frozen(slots=True)
class Position:
    """Signed net YES position of one market with its average YES cost."""

    market_slug: str
    net_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    # False for a position adopted from an account that did not report its cost: avg_price is a
    # placeholder, and it counts at qty × $1 at risk (the most it can lose) until the cost is known.
    cost_known: bool = True


# --- the decision path: fair value -> signal -> order request -------------------------------------


@attrs.frozen(slots=True)
class BookQuote:
    """One sportsbook's input to a consensus (kept so a trade can be explained later)."""

    book: str
    raw_prices: tuple[Decimal, ...]
    fair_yes: Decimal
    weight: Decimal


@attrs.frozen(slots=True)
class FairValue:
    """The consensus fair probability that a market resolves YES."""

    market_slug: str
    q: Decimal
    method: str
    quotes: tuple[BookQuote, ...]
    computed_at: float  # clock time of computation
    fixture_id: str = ""


@attrs.frozen(slots=True)
class Signal:
    market_slug: str
    intent: Intent
    limit_price: Decimal  # long-side price, on the tick
    size_available: Decimal  # contracts available up to the limit
    fair_q: Decimal
    edge: Decimal  # net of fees, on the side bought
    fair_value: FairValue | None = None
    created_at: float = 0.0


@attrs.frozen(slots=True)
class OrderRequest:
    """A sized order the risk gate approved; the only thing an executor accepts."""

    market_slug: str
    intent: Intent
    price: Decimal
    quantity: Decimal
    tif: TimeInForce = TimeInForce.IOC
    order_type: OrderType = OrderType.LIMIT
    signal: Signal | None = None
    reason: str = ""


@attrs.frozen(slots=True)
class Rejection:
    """A signal the gate denied, with a machine-readable reason (an event, not an exception)."""

    market_slug: str
    intent: Intent
    reason: str
    detail: str = ""


def frozen_mapping(d: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Hashable, ordered view of a small mapping (for values that must stay frozen)."""
    return tuple(sorted(d.items()))


# --- account ----------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Balance:
    """One currency's account balance as the exchange reports it (`UserBalance`)."""

    currency: str = "USD"
    current_balance: Decimal = ZERO
    buying_power: Decimal = ZERO
    open_orders: Decimal = ZERO
    asset_notional: Decimal = ZERO
    asset_available: Decimal = ZERO
    unsettled_funds: Decimal = ZERO
    margin_requirement: Decimal = ZERO
    last_updated: datetime | None = None


@attrs.frozen
class MarketTarget:
    """A market the odds feed prices: fixture, the selection that is YES, and its line."""

    slug: str
    fixture_id: str
    yes_selection: str  # OpticOdds normalized_selection of the market's YES side
    sport: str
    league: str = ""
    start_time: datetime | None = None
    market_id: str = "moneyline"  # OpticOdds market
    grouping_key: str = "default"
    source: str = "auto"  # "override" or "auto"
