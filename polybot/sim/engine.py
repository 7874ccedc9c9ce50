"""The local exchange core: markets, books, matching, accounts, fees and settlement.

Pure, synchronous and deterministic: no I/O, no clock reads except the ``now`` callable the owner
passes in, ids from counters plus a seeded RNG. The REST/websocket server wraps one `Exchange` and
turns the events it publishes (`subscribe`) into wire frames; the scenario driver feeds it
background liquidity. Subscriber callbacks run synchronously inside the engine call and must not
call back into the engine (queue the event and return).

Decisions taken where the reference is silent (each one a guess a client must survive):

- Books are on the YES instrument. BUY_LONG and SELL_SHORT are bids, SELL_LONG and BUY_SHORT
  offers, all at the YES price. Price-time priority; a fill trades at the resting order's price.
- `submit` always returns an order id for a request the REST layer could parse. Order-level
  problems become one REJECTED execution (no NEW before it) carrying `orderRejectReason` and
  `text`: unknown market (UNKNOWN_MARKET), market not OPEN (EXCHANGE_CLOSED), price outside
  0.01-0.99 (PRICE_OUT_OF_BOUNDS), off tick (INVALID_PRICE_INCREMENT; never normalised), missing /
  non-positive / below or off `min_qty` quantity (INCORRECT_QUANTITY), post-only that would cross,
  GTD without a future `goodTillTime`, unknown intent/type (INCORRECT_ORDER_TYPE or
  EXCHANGE_OPTION), insufficient buying power (EXCHANGE_OPTION, text "insufficient buying
  power"), MARKET with nothing to hit (NO_LIQUIDITY).
- Accepted orders always get a NEW execution first; fills follow (PARTIAL_FILL / FILL). IOC and
  MARKET remainders are CANCELED. FOK that cannot fill completely is NEW then CANCELED with zero
  fills. DAY behaves like GTC (the docs say DAY does not auto-cancel today). GTD orders are
  EXPIRED by `expire_due` (also run at the start of every `submit`).
- MARKET orders sweep the book (optionally bounded by `price`), sized by `quantity` or by
  `cash_order_qty` (dollars of the side bought: p for BUY_LONG/SELL_LONG, 1 − p for the NO-side
  intents), and never rest.
- Self-match (configurable, `SelfMatch`): by default the resting order of the same account is
  canceled (unsolicited, EXCHANGE_OPTION, text "self-match prevention") and matching continues.
- Modify is cancel-replace that KEEPS the order id: one REPLACE execution whose order snapshot has
  the new price/quantity and state NEW or PARTIALLY_FILLED. `quantity` is the new total quantity
  and must exceed what already filled. A price change or a size increase loses time priority (and
  the replaced order may cross and trade as aggressor); a pure size reduction keeps it. A rejected
  modify emits a REJECTED execution whose order is unchanged and still working (text starts with
  "modify rejected") — clients must look at the order state, not only the execution type.
- Accounts are fully collateralised. Cash is `currentBalance`. A bid contract pays p (or, while
  the account is short, closes one short and returns 1 − p); an offer contract costs 1 − p to open
  a short (receive p, lock $1) or returns p when it closes a long. Positions are one signed `net`
  per market: intents are validated at entry (SELL_LONG / SELL_SHORT may not exceed the held long /
  short minus other open orders of the same intent: INCORRECT_QUANTITY), but fills are booked on
  the signed net, so BUY_SHORT while long first closes the long and then opens a short.
- Buying power (§6.3): per instrument the reservation is max(0, all bids fill, all offers fill)
  at limit prices, where contracts that would close the current position count as releasing $1
  each. An order is accepted when cash, after its immediate fills and a taker-fee allowance, still
  covers that instrument's reservation including its resting remainder; orders in other
  instruments are not counted. After every fill, bust or withdrawal the account's instruments are
  re-checked and resting orders that are no longer funded are canceled newest first (unsolicited,
  EXCHANGE_OPTION). `openOrders` = Σ reservations, `assetAvailable` = `marginRequirement` = 0, so
  `buyingPower = currentBalance − openOrders` (negative when instruments over-commit together);
  `assetNotional` marks positions at mid (else last trade, else cost).
- Fees: per fill Θ·C·p·(1 − p), taker Θ = market `fee_coefficient` or 0.0695 with the cumulative
  cap across one aggressive order (`polybot.pricing.FeeAccumulator`), maker Θ = −0.0125 per fill.
  `commission` / `commissionNotionalCollected`: positive = fee charged, negative = rebate. Fees move
  cash (separate COMMISSION balance event) and are not part of realized P&L.
- Cost basis: `cost` is the money locked in the open position (Σp long, Σ(1 − p) short); closing
  releases it pro rata and realizes proceeds − released cost.
- Settlement at any v in [0, 1] cancels the market's orders, pays v per long and 1 − v per short
  contract, records a POSITION_RESOLUTION activity, marks positions expired and the market RESOLVED
  (state EXPIRED). A busted trade subtracts exactly the ledger deltas it caused on both sides
  (position, cost, realized, cash incl. fee), flips both trade activities to BUSTED and re-checks
  funding; a bust may leave cash negative (the account then has every order canceled). Orders'
  cumQuantity is not rewritten by a bust.
- Events: BalanceChanged is emitted for ledger entries only (trade cash, commission, deposit,
  withdrawal, resolution, bust correction); an order resting or leaving the book changes
  `openOrders`/`buyingPower` without a balance event. PositionChanged always carries both
  snapshots (the wire layer sends null for a flat one). Inside `batch()` BookChanged is coalesced
  to one per market at the end; every `submit`/`cancel`/`modify` is its own batch.
- Ids: order "o-…", execution "e-…", trade "t-…", balance change "bc-…": a counter plus seeded
  random hex, so a given seed and call sequence always produces the same ids.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

import attrs

from polybot.model import (
    MAX_PRICE,
    MIN_PRICE,
    ONE,
    ZERO,
    ExecutionType,
    Intent,
    MarketState,
    MarketStatus,
    OrderState,
    OrderType,
    PriceLevel,
    Side,
    TimeInForce,
    is_on_step,
)
from polybot.pricing import MAKER_THETA, TAKER_THETA, FeeAccumulator

PROVIDER_OPTICODDS = "PROVIDER_OPTICODDS"


class RejectReason(enum.StrEnum):
    EXCHANGE_OPTION = "ORD_REJECT_REASON_EXCHANGE_OPTION"
    UNKNOWN_MARKET = "ORD_REJECT_REASON_UNKNOWN_MARKET"
    EXCHANGE_CLOSED = "ORD_REJECT_REASON_EXCHANGE_CLOSED"
    INCORRECT_QUANTITY = "ORD_REJECT_REASON_INCORRECT_QUANTITY"
    INVALID_PRICE_INCREMENT = "ORD_REJECT_REASON_INVALID_PRICE_INCREMENT"
    INCORRECT_ORDER_TYPE = "ORD_REJECT_REASON_INCORRECT_ORDER_TYPE"
    PRICE_OUT_OF_BOUNDS = "ORD_REJECT_REASON_PRICE_OUT_OF_BOUNDS"
    NO_LIQUIDITY = "ORD_REJECT_REASON_NO_LIQUIDITY"


class CancelReason(enum.StrEnum):
    CONNECTION_LOSS = "UNSOLICITED_CXL_REASON_CONNECTION_LOSS"
    LOGOUT = "UNSOLICITED_CXL_REASON_LOGOUT"
    EXCHANGE_OPTION = "UNSOLICITED_CXL_REASON_EXCHANGE_OPTION"
    OTHER = "UNSOLICITED_CXL_REASON_OTHER"


class LedgerEntry(enum.StrEnum):
    ORDER_EXECUTION = "LEDGER_ENTRY_TYPE_ORDER_EXECUTION"
    DEPOSIT = "LEDGER_ENTRY_TYPE_DEPOSIT"
    WITHDRAWAL = "LEDGER_ENTRY_TYPE_WITHDRAWAL"
    RESOLUTION = "LEDGER_ENTRY_TYPE_RESOLUTION"
    COMMISSION = "LEDGER_ENTRY_TYPE_COMMISSION"
    CORRECTION = "LEDGER_ENTRY_TYPE_CORRECTION"


class ActivityType(enum.StrEnum):
    TRADE = "ACTIVITY_TYPE_TRADE"
    POSITION_RESOLUTION = "ACTIVITY_TYPE_POSITION_RESOLUTION"
    ACCOUNT_DEPOSIT = "ACTIVITY_TYPE_ACCOUNT_DEPOSIT"
    ACCOUNT_WITHDRAWAL = "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL"


class TradeState(enum.StrEnum):
    NEW = "TRADE_STATE_NEW"
    CLEARED = "TRADE_STATE_CLEARED"
    BUSTED = "TRADE_STATE_BUSTED"


class ResolutionSide(enum.StrEnum):
    LONG = "POSITION_RESOLUTION_SIDE_LONG"
    SHORT = "POSITION_RESOLUTION_SIDE_SHORT"
    NEUTRAL = "POSITION_RESOLUTION_SIDE_NEUTRAL"


class SelfMatch(enum.StrEnum):
    """What happens when an incoming order would trade against a resting order of its own account."""

    CANCEL_RESTING = "cancel_resting"  # cancel the resting order (unsolicited), keep matching
    CANCEL_AGGRESSOR = "cancel_aggressor"  # stop matching, cancel the incoming order's remainder
    ALLOW = "allow"  # let it trade with itself


class UnknownAccount(KeyError):
    """An operation named an account the exchange does not have (a caller bug, not a reject)."""


# --- reference data ------------------------------------------------------------------------------


@attrs.define(slots=True)
class Team:
    team_id: int
    name: str
    abbreviation: str
    league: str = ""
    provider_ids: tuple[tuple[str, str], ...] = ()  # (("PROVIDER_OPTICODDS", "AAAA11112222"),)
    ordering: str = ""  # "home" / "away"


@attrs.define(slots=True)
class League:
    """A league of the sports v2 endpoints (`GET /v2/leagues`): its games are the events of its
    active series."""

    league_id: int
    slug: str  # "nba"
    name: str  # "NBA"
    sport_id: int
    tag_id: int
    abbreviation: str
    active_series_id: int | None = None
    is_operational: bool = True
    ordering: str = "home"
    created_at: datetime | None = None


@attrs.define(slots=True)
class Series:
    """A league's season ("nba-2026"); events belong to one (`/v1/events?seriesId=`)."""

    series_id: int
    slug: str
    title: str
    league: str


@attrs.define(slots=True)
class Event:
    event_id: int
    slug: str
    title: str
    start_time: datetime | None = None
    league: str = ""  # series / league slug, e.g. "nba"
    sport: str = ""  # e.g. "basketball"
    series_slug: str = ""
    series_id: int | None = None  # the series the event belongs to (not served: a filter key)
    teams: tuple[Team, ...] = ()
    market_slugs: list[str] = attrs.field(factory=list)
    external_ids: dict[str, str] = attrs.field(
        factory=dict
    )  # partner -> id, {"opticodds": fixture}
    description: str = ""
    live: bool = False
    ended: bool = False
    closed: bool = False
    created_at: datetime | None = None


@attrs.define(slots=True)
class MarketSide:
    side_id: int
    long: bool  # True: this side is the market's YES (long) side
    description: str  # e.g. the team name
    team_id: int | None = None
    identifier: str = ""
    external_selection: str = ""  # OpticOdds normalized selection ("boston_celtics")


@attrs.define(slots=True)
class MarketStats:
    last_trade_px: Decimal | None = None
    last_trade_qty: Decimal | None = None
    last_trade_time: datetime | None = None
    open_px: Decimal | None = None
    high_px: Decimal | None = None
    low_px: Decimal | None = None
    shares_traded: Decimal = ZERO
    notional_traded: Decimal = ZERO
    open_interest: Decimal = ZERO


@attrs.define(slots=True)
class Market:
    market_id: int
    slug: str
    event_id: int
    title: str
    question: str = ""
    tick: Decimal = Decimal("0.01")
    min_qty: Decimal = Decimal("1")
    fee_coefficient: Decimal | None = None  # taker Θ override; None = TAKER_THETA
    sides: tuple[MarketSide, ...] = ()
    sports_market_type: str = ""  # e.g. "basketball_team_full_game_winner"
    external_market_type: str = ""  # OpticOdds market name, e.g. "moneyline"
    category: str = "sports"
    state: MarketState = MarketState.OPEN
    status: MarketStatus = MarketStatus.OPEN
    settlement: Decimal | None = None
    settled_at: datetime | None = None
    start_time: datetime | None = None
    created_at: datetime | None = None
    stats: MarketStats = attrs.field(factory=MarketStats)
    # The deprecated `gameStartTime` (still on the captured moneylines; the reference says it
    # was removed): False serves the market the way the reference describes it, without it.
    serves_game_start_time: bool = True

    @property
    def taker_theta(self) -> Decimal:
        return self.fee_coefficient if self.fee_coefficient is not None else TAKER_THETA

    @property
    def active(self) -> bool:
        """Accepting orders."""
        return self.state is MarketState.OPEN and self.settlement is None

    @property
    def closed(self) -> bool:
        return self.settlement is not None or self.status in (
            MarketStatus.CLOSED,
            MarketStatus.RESOLVED,
        )


# --- orders and executions -------------------------------------------------------------------------


@attrs.frozen(slots=True)
class OrderSpec:
    """A create-order request as the REST layer parsed it (wire enums already mapped)."""

    market_slug: str
    intent: Intent
    type: OrderType = OrderType.LIMIT
    price: Decimal | None = None  # long-side (YES) price; optional protective bound on MARKET
    quantity: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    good_till_time: datetime | None = None
    post_only: bool = False  # participateDontInitiate
    cash_order_qty: Decimal | None = None  # MARKET orders sized in dollars
    manual_order_indicator: str = ""


@attrs.define(slots=True)
class SimOrder:
    """An order inside the exchange. Values handed out (executions, queries) are snapshots."""

    order_id: str
    account_id: str
    market_slug: str
    intent: Intent
    side: Side
    type: OrderType
    price: Decimal | None
    quantity: Decimal
    tif: TimeInForce
    good_till_time: datetime | None = None
    post_only: bool = False
    cash_order_qty: Decimal | None = None
    manual_order_indicator: str = ""
    state: OrderState = OrderState.PENDING_NEW
    cum_quantity: Decimal = ZERO
    leaves_quantity: Decimal = ZERO
    avg_px: Decimal | None = None
    notional: Decimal = ZERO  # Σ fill qty × fill price, for avg_px
    create_time: datetime | None = None
    insert_time: datetime | None = None
    commission_total: Decimal = ZERO  # positive = fees charged, negative = rebates
    seq: int = 0  # time priority: lower rests earlier

    def snapshot(self) -> SimOrder:
        return attrs.evolve(self)


@attrs.frozen(slots=True)
class SimExecution:
    exec_id: str
    account_id: str
    order: SimOrder  # snapshot after this execution
    type: ExecutionType
    transact_time: datetime
    last_shares: Decimal = ZERO
    last_px: Decimal | None = None
    trade_id: str = ""
    aggressor: bool | None = None
    commission: Decimal | None = None  # positive = fee charged, negative = rebate
    reject_reason: RejectReason | None = None
    text: str = ""
    unsolicited_cancel_reason: CancelReason | None = None


@attrs.frozen(slots=True)
class AcceptedOrder:
    """One create request the exchange gave an id to (rejected ones included)."""

    order_id: str
    account_id: str
    time: datetime
    request: OrderSpec


# --- accounts -----------------------------------------------------------------------------------------


@attrs.define(slots=True)
class SimPosition:
    """One account's position in one market. `net` > 0 long YES, < 0 short."""

    account_id: str
    market_slug: str
    net: Decimal = ZERO
    qty_bought: Decimal = ZERO  # YES contracts bought (bids filled)
    qty_sold: Decimal = ZERO  # YES contracts sold (offers filled)
    cost: Decimal = ZERO  # money locked in the open position: long Σp, short Σ(1 − p); ≥ 0
    realized: Decimal = ZERO  # realized P&L, fees excluded
    fees: Decimal = ZERO  # fees paid (negative = net rebates)
    bod_position: Decimal = ZERO
    expired: bool = False
    update_time: datetime | None = None

    @property
    def avg_px(self) -> Decimal | None:
        """Average cost per contract of the open position, on its own side (NO price if short)."""
        if self.net == 0:
            return None
        return self.cost / abs(self.net)

    def snapshot(self) -> SimPosition:
        return attrs.evolve(self)


@attrs.frozen(slots=True)
class Balance:
    """The account's USD balance; `buying_power = current_balance + asset_available
    - open_orders - margin_requirement` holds by construction."""

    current_balance: Decimal
    buying_power: Decimal
    open_orders: Decimal
    asset_notional: Decimal
    asset_available: Decimal = ZERO
    margin_requirement: Decimal = ZERO
    pending_credit: Decimal = ZERO
    unsettled_funds: Decimal = ZERO
    currency: str = "USD"
    last_updated: datetime | None = None


@attrs.define(slots=True)
class TradeActivity:
    trade_id: str
    market_slug: str
    price: Decimal
    qty: Decimal
    is_aggressor: bool
    cost_basis: Decimal
    realized_pnl: Decimal
    create_time: datetime
    update_time: datetime
    state: TradeState = TradeState.CLEARED
    order_id: str = ""
    intent: Intent = Intent.UNKNOWN
    fee: Decimal = ZERO


@attrs.frozen(slots=True)
class PositionResolution:
    market_slug: str
    before_position: Decimal
    after_position: Decimal
    update_time: datetime
    side: ResolutionSide
    trade_id: str = ""
    value: Decimal = ZERO  # settlement value per YES contract


TRANSFER_PENDING = "ACCOUNT_BALANCE_CHANGE_STATUS_PENDING"
TRANSFER_COMPLETED = "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED"
TRANSFER_PARTIALLY_REFUNDED = "ACCOUNT_BALANCE_CHANGE_STATUS_PARTIALLY_REFUNDED"
TRANSFER_REJECTED = "ACCOUNT_BALANCE_CHANGE_STATUS_REJECTED"
TRANSFER_STATUSES = (
    TRANSFER_PENDING,
    TRANSFER_COMPLETED,
    TRANSFER_PARTIALLY_REFUNDED,
    TRANSFER_REJECTED,
)


def _transfer_moves(amount: Decimal, status: str, refunded: Decimal) -> Decimal:
    """The cash a transfer of `amount` (signed) moves in `status`."""
    if status == TRANSFER_COMPLETED:
        return amount
    if status == TRANSFER_PARTIALLY_REFUNDED:
        return amount - refunded if amount > 0 else amount + refunded
    return ZERO


@attrs.frozen(slots=True)
class AccountBalanceChange:
    transaction_id: str
    amount: Decimal
    create_time: datetime
    update_time: datetime
    status: str = "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED"
    refunded: Decimal = ZERO  # of a PARTIALLY_REFUNDED change: the part given back (a size)


@attrs.frozen(slots=True)
class Activity:
    """One portfolio activity; exactly one of trade / resolution / balance_change is set."""

    type: ActivityType
    time: datetime
    account_id: str
    trade: TradeActivity | None = None  # mutable: a bust flips its state to BUSTED
    resolution: PositionResolution | None = None
    balance_change: AccountBalanceChange | None = None


@attrs.define(slots=True)
class TradeLeg:
    """One side of a trade with the exact ledger deltas it caused (a bust subtracts them)."""

    account_id: str
    order_id: str
    intent: Intent
    side: Side
    aggressor: bool
    fee: Decimal
    cash_delta: Decimal  # includes the fee
    net_delta: Decimal
    cost_delta: Decimal
    realized_delta: Decimal
    activity: TradeActivity


@attrs.define(slots=True)
class Trade:
    trade_id: str
    market_slug: str
    price: Decimal
    qty: Decimal
    time: datetime
    maker: TradeLeg
    taker: TradeLeg
    state: TradeState = TradeState.CLEARED


# --- book views -------------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class BookView:
    market_slug: str
    bids: tuple[PriceLevel, ...]  # best first
    offers: tuple[PriceLevel, ...]  # best first
    state: MarketState
    transact_time: datetime | None
    stats: MarketStats
    settlement: Decimal | None = None


@attrs.frozen(slots=True)
class Bbo:
    market_slug: str
    best_bid: Decimal | None
    best_ask: Decimal | None
    bid_depth: int  # number of price levels
    ask_depth: int
    bid_shares: Decimal  # total resting size
    ask_shares: Decimal
    last_trade_px: Decimal | None
    current_px: Decimal | None  # mid when both sides exist, else last trade
    settlement_px: Decimal | None
    shares_traded: Decimal
    open_interest: Decimal
    state: MarketState
    transact_time: datetime | None = None


# --- events published to subscribers ---------------------------------------------------------------


@attrs.frozen(slots=True)
class BookChanged:
    """The book (or the book's state / stats) of `slug` changed: send a fresh full book."""

    slug: str
    time: datetime


@attrs.frozen(slots=True)
class TradePrinted:
    trade_id: str
    slug: str
    price: Decimal
    qty: Decimal
    maker_side: Side
    maker_intent: Intent
    taker_side: Side
    taker_intent: Intent
    time: datetime


@attrs.frozen(slots=True)
class ExecutionReported:
    account_id: str
    execution: SimExecution


@attrs.frozen(slots=True)
class PositionChanged:
    account_id: str
    slug: str
    before: SimPosition  # snapshots; the wire sends null for a flat (net 0) before/after
    after: SimPosition
    entry_type: LedgerEntry
    time: datetime
    trade_id: str = ""
    description: str = ""


@attrs.frozen(slots=True)
class BalanceChanged:
    account_id: str
    before: Balance
    after: Balance
    entry_type: LedgerEntry
    time: datetime
    change_id: str
    description: str = ""
    slug: str = ""


@attrs.frozen(slots=True)
class MarketChanged:
    """Reference data of a market changed (state, status, settlement): REST views are stale."""

    slug: str
    time: datetime


ExchangeEvent = (
    BookChanged
    | TradePrinted
    | ExecutionReported
    | PositionChanged
    | BalanceChanged
    | MarketChanged
)


# --- internals -------------------------------------------------------------------------------------

_CENT = Decimal("0.01")
_COST_Q = Decimal("0.000001")  # cost basis / average price precision
_RESTING_STATES = (OrderState.NEW, OrderState.PARTIALLY_FILLED)
_STATUS_FOR_STATE = {
    MarketState.OPEN: MarketStatus.OPEN,
    MarketState.MATCH_AND_CLOSE_AUCTION: MarketStatus.OPEN,
    MarketState.PREOPEN: MarketStatus.UNKNOWN,
    MarketState.SUSPENDED: MarketStatus.HALTED,
    MarketState.HALTED: MarketStatus.HALTED,
    MarketState.CLOSED: MarketStatus.CLOSED,
    MarketState.EXPIRED: MarketStatus.RESOLVING,
    MarketState.TERMINATED: MarketStatus.CLOSED,
}


class _Account:
    __slots__ = ("account_id", "activities", "cash", "last_updated", "open", "orders", "positions")

    def __init__(self, account_id: str, now: datetime) -> None:
        self.account_id = account_id
        self.cash = ZERO
        self.orders: dict[str, SimOrder] = {}
        self.open: dict[str, dict[str, SimOrder]] = {}  # slug -> resting orders (by id)
        self.positions: dict[str, SimPosition] = {}
        self.activities: list[Activity] = []
        self.last_updated = now

    def net(self, slug: str) -> Decimal:
        """Net YES position in `slug` (zero if never traded)."""
        pos = self.positions.get(slug)
        return pos.net if pos is not None else ZERO


class _Book:
    """One market's YES book: price levels of FIFO queues; prices kept sorted ascending."""

    __slots__ = ("bid_prices", "bids", "offer_prices", "offers")

    def __init__(self) -> None:
        self.bids: dict[Decimal, deque[SimOrder]] = {}
        self.offers: dict[Decimal, deque[SimOrder]] = {}
        self.bid_prices: list[Decimal] = []
        self.offer_prices: list[Decimal] = []

    def _side(self, side: Side) -> tuple[dict[Decimal, deque[SimOrder]], list[Decimal]]:
        if side is Side.BUY:
            return self.bids, self.bid_prices
        return self.offers, self.offer_prices

    def add(self, order: SimOrder) -> None:
        assert order.price is not None
        levels, prices = self._side(order.side)
        q = levels.get(order.price)
        if q is None:
            q = levels[order.price] = deque()
            prices.append(order.price)
            prices.sort()
        q.append(order)

    def remove(self, order: SimOrder) -> None:
        assert order.price is not None
        levels, prices = self._side(order.side)
        q = levels[order.price]
        q.remove(order)
        if not q:
            del levels[order.price]
            prices.remove(order.price)

    def walk(self, incoming_side: Side) -> Iterator[SimOrder]:
        """Resting orders the incoming side would meet, best price first, then time."""
        if incoming_side is Side.BUY:
            levels, prices = self.offers, self.offer_prices
        else:
            levels, prices = self.bids, list(reversed(self.bid_prices))
        for p in prices:
            yield from levels[p]

    def best(self, side: Side) -> Decimal | None:
        prices = self.bid_prices if side is Side.BUY else self.offer_prices
        if not prices:
            return None
        return prices[-1] if side is Side.BUY else prices[0]

    def levels(self, side: Side, depth: int) -> tuple[PriceLevel, ...]:
        levels, prices = self._side(side)
        ordered = reversed(prices) if side is Side.BUY else iter(prices)
        out = []
        for p in itertools.islice(ordered, depth):
            out.append(PriceLevel(p, sum((o.leaves_quantity for o in levels[p]), ZERO)))
        return tuple(out)

    def total(self, side: Side) -> tuple[int, Decimal]:
        levels, prices = self._side(side)
        qty = sum((o.leaves_quantity for q in levels.values() for o in q), ZERO)
        return len(prices), qty


def _crosses(side: Side, limit: Decimal | None, resting_price: Decimal) -> bool:
    if limit is None:
        return True
    return resting_price <= limit if side is Side.BUY else resting_price >= limit


def _cash_for_fill(side: Side, net: Decimal, price: Decimal, qty: Decimal) -> Decimal:
    """Cash change (fees excluded) of filling `qty` on `side` at `price` from signed position `net`."""
    if side is Side.BUY:
        closing = min(qty, max(-net, ZERO))
        return closing * (ONE - price) - (qty - closing) * price
    closing = min(qty, max(net, ZERO))
    return closing * price - (qty - closing) * (ONE - price)


def _reservation(orders: Iterable[tuple[Side, Decimal, Decimal]], net: Decimal) -> Decimal:
    """Worst-case cash one instrument's resting orders can consume (§6.3), given position `net`."""
    bid_cost = offer_cost = ZERO
    bid_qty = offer_qty = ZERO
    for side, price, qty in orders:
        if side is Side.BUY:
            bid_cost += qty * price
            bid_qty += qty
        else:
            offer_cost += qty * (ONE - price)
            offer_qty += qty
    bid_cost -= min(max(-net, ZERO), bid_qty)
    offer_cost -= min(max(net, ZERO), offer_qty)
    return max(ZERO, bid_cost, offer_cost)


def _ceil_cent(x: Decimal) -> Decimal:
    return x.quantize(_CENT, rounding=ROUND_CEILING)


# --- the exchange -------------------------------------------------------------------------------------


class Exchange:
    """One exchange: reference data, one book per market, accounts, the order and trade records."""

    def __init__(
        self,
        now: Callable[[], datetime],
        seed: int = 0,
        *,
        self_match: SelfMatch = SelfMatch.CANCEL_RESTING,
    ) -> None:
        self.now = now
        self.seed = seed
        self.self_match = self_match
        self.markets: dict[str, Market] = {}
        self.events: dict[str, Event] = {}  # by slug
        self.leagues: dict[str, League] = {}  # by slug, in listing order
        self.series: dict[int, Series] = {}  # by id
        self._events_by_id: dict[int, Event] = {}
        self._markets_by_id: dict[int, Market] = {}
        self.orders_accepted: list[AcceptedOrder] = []
        self.trades: dict[str, Trade] = {}
        self.fee_income = ZERO  # net fees the exchange kept (charged − rebated)
        self._rng = random.Random(seed)
        self._counter = itertools.count(1)
        self._seq = itertools.count(1)
        self._accounts: dict[str, _Account] = {}
        self._books: dict[str, _Book] = {}
        self._holders: dict[str, dict[str, SimPosition]] = {}  # slug -> account -> position
        self._gtd: dict[str, SimOrder] = {}
        self._taker_fees: dict[str, FeeAccumulator] = {}
        self._subscribers: list[Callable[[ExchangeEvent], None]] = []
        self._batch_depth = 0
        self._pending_books: dict[str, None] = {}

    # --- ids and events --------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._counter):07d}-{self._rng.getrandbits(32):08x}"

    def subscribe(self, callback: Callable[[ExchangeEvent], None]) -> Callable[[], None]:
        """Call `callback(event)` synchronously for every event; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: ExchangeEvent) -> None:
        for cb in list(self._subscribers):
            cb(event)

    def _book_changed(self, slug: str) -> None:
        if self._batch_depth:
            self._pending_books[slug] = None
        else:
            self._emit(BookChanged(slug, self.now()))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Coalesce BookChanged events: one per touched market when the outermost batch exits."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0 and self._pending_books:
                slugs, self._pending_books = list(self._pending_books), {}
                now = self.now()
                for slug in slugs:
                    self._emit(BookChanged(slug, now))

    # --- reference data --------------------------------------------------------------------------

    def add_league(
        self,
        slug: str,
        name: str,
        *,
        league_id: int,
        sport_id: int,
        tag_id: int,
        series_id: int,
        series_slug: str,
        abbreviation: str = "",
        ordering: str = "home",
    ) -> League:
        """A league with its active series (the series the league's events are listed under)."""
        if slug in self.leagues:
            raise ValueError(f"league {slug!r} already exists")
        if series_id in self.series:
            raise ValueError(f"series {series_id} already exists")
        self.series[series_id] = Series(series_id, series_slug, f"{name} {series_slug}", slug)
        league = League(
            league_id=league_id,
            slug=slug,
            name=name,
            sport_id=sport_id,
            tag_id=tag_id,
            abbreviation=abbreviation or name,
            active_series_id=series_id,
            ordering=ordering,
            created_at=self.now(),
        )
        self.leagues[slug] = league
        return league

    def roll_series(self, league: str, series_id: int, series_slug: str) -> Series:
        """A new season: `league`'s active series becomes a new one (ids change by season, so a
        client must read `activeSeriesId` at run time); existing events keep their series."""
        lg = self.leagues[league]
        if series_id in self.series:
            raise ValueError(f"series {series_id} already exists")
        series = self.series[series_id] = Series(series_id, series_slug,
                                                 f"{lg.name} {series_slug}", league)
        lg.active_series_id = series_id
        return series

    def add_event(
        self,
        event_id: int,
        slug: str,
        title: str,
        *,
        start_time: datetime | None = None,
        league: str = "",
        sport: str = "",
        series_slug: str = "",
        teams: Iterable[Team] = (),
        external_ids: dict[str, str] | None = None,
        description: str = "",
        series_id: int | None = None,
    ) -> Event:
        if slug in self.events or self.event_by_id(event_id) is not None:
            raise ValueError(f"event {slug!r} / {event_id} already exists")
        if series_id is not None and series_id not in self.series:
            raise ValueError(f"unknown series id {series_id}")
        ev = Event(
            event_id=event_id,
            slug=slug,
            title=title,
            start_time=start_time,
            league=league,
            sport=sport,
            series_slug=series_slug or league,
            series_id=series_id,
            teams=tuple(teams),
            external_ids=dict(external_ids or {}),
            description=description,
            created_at=self.now(),
        )
        self.events[slug] = ev
        self._events_by_id[event_id] = ev
        return ev

    def add_market(
        self,
        slug: str,
        market_id: int,
        event_id: int,
        *,
        title: str = "",
        question: str = "",
        tick: Decimal = Decimal("0.01"),
        min_qty: Decimal = Decimal("1"),
        fee_coefficient: Decimal | None = None,
        sides: Iterable[MarketSide] = (),
        sports_market_type: str = "",
        external_market_type: str = "",
        start_time: datetime | None = None,
        state: MarketState = MarketState.OPEN,
    ) -> Market:
        if slug in self.markets or self.market_by_id(market_id) is not None:
            raise ValueError(f"market {slug!r} / {market_id} already exists")
        ev = self.event_by_id(event_id)
        if ev is None:
            raise ValueError(f"unknown event id {event_id}")
        if tick <= 0 or min_qty <= 0:
            raise ValueError("tick and min_qty must be positive")
        m = Market(
            market_id=market_id,
            slug=slug,
            event_id=event_id,
            title=title or ev.title,
            question=question,
            tick=tick,
            min_qty=min_qty,
            fee_coefficient=fee_coefficient,
            sides=tuple(sides),
            sports_market_type=sports_market_type,
            external_market_type=external_market_type,
            state=state,
            status=_STATUS_FOR_STATE.get(state, MarketStatus.UNKNOWN),
            start_time=start_time if start_time is not None else ev.start_time,
            created_at=self.now(),
        )
        self.markets[slug] = m
        self._markets_by_id[market_id] = m
        self._books[slug] = _Book()
        self._holders[slug] = {}
        ev.market_slugs.append(slug)
        return m

    def event_by_id(self, event_id: int) -> Event | None:
        return self._events_by_id.get(event_id)

    def market_by_id(self, market_id: int) -> Market | None:
        return self._markets_by_id.get(market_id)

    def event_by_external_id(self, partner: str, external_id: str) -> Event | None:
        """Event linked to a partner's id, e.g. ("opticodds", fixture id)."""
        for ev in self.events.values():
            if ev.external_ids.get(partner) == external_id:
                return ev
        return None

    def update_event(
        self,
        slug: str,
        *,
        live: bool | None = None,
        ended: bool | None = None,
        closed: bool | None = None,
        start_time: datetime | None = None,
    ) -> None:
        """Change an event's game state; a new `start_time` (a postponed game) is moved in place,
        on the event and on its markets, as the real exchange does (reference §2.4)."""
        ev = self.events[slug]
        if start_time is not None:
            ev.start_time = start_time
            for ms in ev.market_slugs:
                if ms in self.markets:
                    self.markets[ms].start_time = start_time
        if live is not None:
            ev.live = live
        if ended is not None:
            ev.ended = ended
        if closed is not None:
            ev.closed = closed
        now = self.now()
        for ms in ev.market_slugs:
            self._emit(MarketChanged(ms, now))

    # --- accounts ----------------------------------------------------------------------------------

    def _account(self, account_id: str) -> _Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnknownAccount(account_id) from None

    def create_account(self, account_id: str, cash: Decimal = ZERO) -> None:
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} already exists")
        self._accounts[account_id] = _Account(account_id, self.now())
        if cash:
            self.deposit(account_id, cash)

    def has_account(self, account_id: str) -> bool:
        return account_id in self._accounts

    def account_ids(self) -> list[str]:
        return list(self._accounts)

    def deposit(self, account_id: str, amount: Decimal) -> None:
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self._balance_entry(
            self._account(account_id), amount, LedgerEntry.DEPOSIT, ActivityType.ACCOUNT_DEPOSIT
        )

    def withdraw(self, account_id: str, amount: Decimal) -> None:
        """Withdraw cash; must leave every instrument's open-order reservation funded."""
        acct = self._account(account_id)
        if amount <= 0:
            raise ValueError("withdrawal must be positive")
        largest = max((self._market_reservation(acct, s) for s in acct.open), default=ZERO)
        if amount > acct.cash - largest:
            raise ValueError("withdrawal exceeds available funds")
        self._balance_entry(acct, -amount, LedgerEntry.WITHDRAWAL, ActivityType.ACCOUNT_WITHDRAWAL)

    def _balance_entry(
        self,
        acct: _Account,
        amount: Decimal,
        entry: LedgerEntry,
        activity: ActivityType,
        status: str = TRANSFER_COMPLETED,
        moved: Decimal | None = None,
    ) -> str:
        """Record a transfer activity of `amount` with `status`; cash moves by `moved`."""
        now = self.now()
        moved = amount if moved is None else moved
        change_id = self._new_id("bc")
        refunded = abs(amount) - abs(moved) if status == TRANSFER_PARTIALLY_REFUNDED else ZERO
        acct.activities.append(
            Activity(
                type=activity,
                time=now,
                account_id=acct.account_id,
                balance_change=AccountBalanceChange(change_id, amount, now, now, status,
                                                    refunded=refunded),
            )
        )
        self._move_cash(acct, moved, entry, change_id)
        return change_id

    def _move_cash(self, acct: _Account, moved: Decimal, entry: LedgerEntry, change_id: str) -> None:
        if not moved:
            return
        now = self.now()
        before = self._balance(acct)
        acct.cash += moved
        acct.last_updated = now
        self._emit(
            BalanceChanged(acct.account_id, before, self._balance(acct), entry, now, change_id)
        )

    def transfer(
        self, account_id: str, amount: Decimal, status: str, *, refunded: Decimal = ZERO
    ) -> str:
        """A deposit (`amount` > 0) or withdrawal (< 0) activity with any status (reference §3.3).

        What the balance does: COMPLETED moves `amount`; PENDING and REJECTED move nothing;
        PARTIALLY_REFUNDED moves `amount` less the `refunded` part (a withdrawal of 300 with 100
        refunded takes 200). A pending transfer is finished later with `finish_transfer`.
        Returns the transaction id.
        """
        if status not in TRANSFER_STATUSES:
            raise ValueError(f"unknown transfer status {status!r}")
        if not amount or refunded < 0 or refunded > abs(amount):
            raise ValueError("transfer needs a non-zero amount and 0 <= refunded <= |amount|")
        acct = self._account(account_id)
        entry, kind = (
            (LedgerEntry.DEPOSIT, ActivityType.ACCOUNT_DEPOSIT)
            if amount > 0
            else (LedgerEntry.WITHDRAWAL, ActivityType.ACCOUNT_WITHDRAWAL)
        )
        return self._balance_entry(
            acct, amount, entry, kind, status, _transfer_moves(amount, status, refunded)
        )

    def finish_transfer(
        self, account_id: str, transaction_id: str, status: str, *, refunded: Decimal = ZERO
    ) -> None:
        """Move a PENDING transfer to a final status, moving cash as `transfer` would."""
        acct = self._account(account_id)
        for i, a in enumerate(acct.activities):
            c = a.balance_change
            if c is None or c.transaction_id != transaction_id:
                continue
            if c.status != TRANSFER_PENDING:
                raise ValueError(f"transfer {transaction_id} is {c.status}, not pending")
            if status not in TRANSFER_STATUSES or status == TRANSFER_PENDING:
                raise ValueError(f"not a final transfer status: {status!r}")
            now = self.now()
            acct.activities[i] = attrs.evolve(
                a, balance_change=attrs.evolve(
                    c, status=status, update_time=now,
                    refunded=refunded if status == TRANSFER_PARTIALLY_REFUNDED else ZERO)
            )
            entry = LedgerEntry.DEPOSIT if c.amount > 0 else LedgerEntry.WITHDRAWAL
            self._move_cash(acct, _transfer_moves(c.amount, status, refunded), entry, c.transaction_id)
            return
        raise KeyError(transaction_id)

    # --- order entry ---------------------------------------------------------------------------------

    def submit(self, account_id: str, req: OrderSpec) -> str:
        """Accept a create-order request: always returns its id; problems become a REJECTED execution."""
        acct = self._account(account_id)
        now = self.now()
        self.expire_due(now)
        order = self._record(acct, req, now)
        oid = order.order_id
        with self.batch():
            problem = self._validate(acct, order)
            if problem is not None:
                self._reject(order, *problem)
            else:
                self._enter(acct, order)
        return oid

    def _record(self, acct: _Account, req: OrderSpec, now: datetime) -> SimOrder:
        """Give a create request an id and record it (in `orders_accepted` too), PENDING_NEW."""
        oid = self._new_id("o")
        order = SimOrder(
            order_id=oid,
            account_id=acct.account_id,
            market_slug=req.market_slug,
            intent=req.intent,
            side=req.intent.book_side if req.intent is not Intent.UNKNOWN else Side.UNKNOWN,
            type=req.type,
            price=req.price,
            quantity=req.quantity if req.quantity is not None else ZERO,
            tif=req.tif,
            good_till_time=req.good_till_time,
            post_only=req.post_only,
            cash_order_qty=req.cash_order_qty,
            manual_order_indicator=req.manual_order_indicator,
            create_time=now,
        )
        acct.orders[oid] = order
        self.orders_accepted.append(AcceptedOrder(oid, acct.account_id, now, req))
        return order

    def _validate(self, acct: _Account, order: SimOrder) -> tuple[RejectReason, str] | None:
        m = self.markets.get(order.market_slug)
        if m is None:
            return RejectReason.UNKNOWN_MARKET, f"unknown market {order.market_slug!r}"
        if not m.active:
            return RejectReason.EXCHANGE_CLOSED, f"market is not open ({m.state.value})"
        if order.intent is Intent.UNKNOWN:
            return RejectReason.INCORRECT_ORDER_TYPE, "unknown order intent"
        if order.type not in (OrderType.LIMIT, OrderType.MARKET):
            return RejectReason.INCORRECT_ORDER_TYPE, "unknown order type"
        if order.tif is TimeInForce.UNKNOWN:
            return RejectReason.INCORRECT_ORDER_TYPE, "unknown time in force"
        if order.type is OrderType.LIMIT and order.price is None:
            return RejectReason.INCORRECT_ORDER_TYPE, "limit order without price"
        if order.price is not None:
            if not MIN_PRICE <= order.price <= MAX_PRICE:
                return RejectReason.PRICE_OUT_OF_BOUNDS, "price must be within 0.01 and 0.99"
            if not is_on_step(order.price, m.tick):
                return RejectReason.INVALID_PRICE_INCREMENT, f"price is not a multiple of {m.tick}"
        if order.type is OrderType.MARKET and order.post_only:
            return RejectReason.INCORRECT_ORDER_TYPE, "market order cannot be post-only"
        if order.type is OrderType.LIMIT or order.cash_order_qty is None:
            if order.quantity <= 0 or order.quantity < m.min_qty:
                return RejectReason.INCORRECT_QUANTITY, f"quantity must be at least {m.min_qty}"
            if not is_on_step(order.quantity, m.min_qty):
                return (
                    RejectReason.INCORRECT_QUANTITY,
                    f"quantity must be a multiple of {m.min_qty}",
                )
        elif order.cash_order_qty <= 0:
            return RejectReason.INCORRECT_QUANTITY, "cashOrderQty must be positive"
        if (
            order.tif is TimeInForce.GTD
            and order.type is OrderType.LIMIT
            and (order.good_till_time is None or order.good_till_time <= self.now())
        ):
            return RejectReason.EXCHANGE_OPTION, "good-till-date order needs a future goodTillTime"
        if order.post_only and order.price is not None and self._would_cross(order, order.price):
            return RejectReason.EXCHANGE_OPTION, "post-only order would cross"
        return None

    def _would_cross(self, order: SimOrder, price: Decimal) -> bool:
        """Whether `order` at `price` would trade against the opposite side's best level now."""
        best = self._books[order.market_slug].best(
            Side.SELL if order.side is Side.BUY else Side.BUY
        )
        return best is not None and _crosses(order.side, price, best)

    def _closing_problem(self, acct: _Account, order: SimOrder) -> tuple[RejectReason, str] | None:
        """SELL_LONG / SELL_SHORT may only close what is held (minus other closing orders)."""
        if order.intent not in (Intent.SELL_LONG, Intent.SELL_SHORT):
            return None
        net = acct.net(order.market_slug)
        held = max(net, ZERO) if order.intent is Intent.SELL_LONG else max(-net, ZERO)
        committed = sum(
            (
                o.leaves_quantity
                for o in acct.open.get(order.market_slug, {}).values()
                if o.intent is order.intent and o is not order
            ),
            ZERO,
        )
        if order.quantity > held - committed:
            side = "long" if order.intent is Intent.SELL_LONG else "short"
            return RejectReason.INCORRECT_QUANTITY, f"quantity exceeds the {side} position held"
        return None

    def _plan(
        self, order: SimOrder, limit_qty: Decimal | None, cash: Decimal | None
    ) -> tuple[list[tuple[Decimal, Decimal]], list[SimOrder]]:
        """The fills (price, qty) the incoming order would get now, and own orders self-match would
        cancel. Sized by `limit_qty` contracts or, for cash-sized orders, by `cash` dollars."""
        m = self.markets[order.market_slug]
        fills: list[tuple[Decimal, Decimal]] = []
        cancels: list[SimOrder] = []
        left_qty = limit_qty
        left_cash = cash
        for resting in self._books[m.slug].walk(order.side):
            assert resting.price is not None
            if not _crosses(order.side, order.price, resting.price):
                break
            if resting.account_id == order.account_id and self.self_match is not SelfMatch.ALLOW:
                if self.self_match is SelfMatch.CANCEL_AGGRESSOR:
                    break
                cancels.append(resting)
                continue
            q = resting.leaves_quantity
            if left_qty is not None:
                q = min(q, left_qty)
            if left_cash is not None:
                per = (
                    resting.price
                    if order.intent in (Intent.BUY_LONG, Intent.SELL_LONG)
                    else (ONE - resting.price)
                )
                q = min(q, (left_cash / per // m.min_qty) * m.min_qty)
            if q <= 0:
                break
            fills.append((resting.price, q))
            if left_qty is not None:
                left_qty -= q
                if left_qty <= 0:
                    break
            if left_cash is not None:
                left_cash -= q * per
        return fills, cancels

    def _enter(self, acct: _Account, order: SimOrder) -> None:
        m = self.markets[order.market_slug]
        is_market = order.type is OrderType.MARKET
        if is_market and order.cash_order_qty is not None:
            fills, _ = self._plan(order, None, order.cash_order_qty)
            order.quantity = sum((q for _, q in fills), ZERO)
            if not fills:
                if self._books[m.slug].best(Side.SELL if order.side is Side.BUY else Side.BUY):
                    self._reject(
                        order,
                        RejectReason.INCORRECT_QUANTITY,
                        "cashOrderQty buys less than the minimum quantity",
                    )
                else:
                    self._reject(order, RejectReason.NO_LIQUIDITY, "no liquidity")
                return
        problem = self._closing_problem(acct, order)
        if problem is not None:
            self._reject(order, *problem)
            return
        fills, self_cancels = self._plan(order, order.quantity, None)
        filled = sum((q for _, q in fills), ZERO)
        if is_market and not fills:
            self._reject(order, RejectReason.NO_LIQUIDITY, "no liquidity")
            return
        immediate_only = is_market or order.tif in (TimeInForce.IOC, TimeInForce.FOK)
        fok_short = order.tif is TimeInForce.FOK and filled < order.quantity
        if not fok_short and not self._funded_entry(
            acct, order, m, fills, self_cancels, ZERO if immediate_only else order.quantity - filled
        ):
            self._reject(order, RejectReason.EXCHANGE_OPTION, "insufficient buying power")
            return
        now = self.now()
        order.state = OrderState.NEW
        order.leaves_quantity = order.quantity
        order.insert_time = now
        order.seq = next(self._seq)
        self._execution(order, ExecutionType.NEW)
        if fok_short:
            self._finish(
                order,
                OrderState.CANCELED,
                ExecutionType.CANCELED,
                text="fill-or-kill order could not be filled completely",
            )
            return
        stopped = self._match(acct, order, m)
        if order.leaves_quantity > 0:
            if immediate_only or stopped:
                text = "self-match prevention" if stopped else "unfilled remainder canceled"
                self._finish(order, OrderState.CANCELED, ExecutionType.CANCELED, text=text)
            else:
                self._rest(acct, order)

    def _funded_entry(
        self,
        acct: _Account,
        order: SimOrder,
        m: Market,
        fills: list[tuple[Decimal, Decimal]],
        self_cancels: list[SimOrder],
        resting_remainder: Decimal,
    ) -> bool:
        net = acct.net(m.slug)
        cash = acct.cash
        sign = ONE if order.side is Side.BUY else -ONE
        exact_fee = ZERO
        theta = m.taker_theta
        for price, q in fills:
            cash += _cash_for_fill(order.side, net, price, q)
            net += sign * q
            exact_fee += theta * q * price * (ONE - price)
        if fills:
            cash -= _ceil_cent(exact_fee) + _CENT
        resting = [
            (o.side, o.price, o.leaves_quantity)
            for o in acct.open.get(m.slug, {}).values()
            if o not in self_cancels
        ]
        if resting_remainder > 0:
            assert order.price is not None
            resting.append((order.side, order.price, resting_remainder))
        return cash >= _reservation(resting, net)  # type: ignore[arg-type]

    def _match(self, acct: _Account, order: SimOrder, m: Market) -> bool:
        """Trade the incoming order against the book; True if self-match stopped it."""
        book = self._books[m.slug]
        theta = m.taker_theta
        self._taker_fees[order.order_id] = FeeAccumulator(theta)
        try:
            while order.leaves_quantity > 0:
                resting = next(book.walk(order.side), None)
                if resting is None or not _crosses(order.side, order.price, resting.price):  # type: ignore[arg-type]
                    return False
                if (
                    resting.account_id == order.account_id
                    and self.self_match is not SelfMatch.ALLOW
                ):
                    if self.self_match is SelfMatch.CANCEL_AGGRESSOR:
                        return True
                    self._cancel_order(
                        resting, CancelReason.EXCHANGE_OPTION, "self-match prevention"
                    )
                    continue
                self._trade(order, resting, min(order.leaves_quantity, resting.leaves_quantity))
            return False
        finally:
            del self._taker_fees[order.order_id]

    def _rest(self, acct: _Account, order: SimOrder) -> None:
        self._books[order.market_slug].add(order)
        acct.open.setdefault(order.market_slug, {})[order.order_id] = order
        if order.tif is TimeInForce.GTD:
            self._gtd[order.order_id] = order
        self._book_changed(order.market_slug)

    def _unrest(self, order: SimOrder) -> None:
        acct = self._accounts[order.account_id]
        resting = acct.open.get(order.market_slug)
        if resting is not None and order.order_id in resting:
            del resting[order.order_id]
            if not resting:
                del acct.open[order.market_slug]
            self._books[order.market_slug].remove(order)
            self._book_changed(order.market_slug)
        self._gtd.pop(order.order_id, None)

    def _execution(self, order: SimOrder, exec_type: ExecutionType, **fields: object) -> None:
        ex = SimExecution(
            exec_id=self._new_id("e"),
            account_id=order.account_id,
            order=order.snapshot(),
            type=exec_type,
            transact_time=self.now(),
            **fields,  # type: ignore[arg-type]
        )
        self._emit(ExecutionReported(order.account_id, ex))

    def _reject(self, order: SimOrder, reason: RejectReason, text: str) -> None:
        order.state = OrderState.REJECTED
        order.leaves_quantity = ZERO
        self._execution(order, ExecutionType.REJECTED, reject_reason=reason, text=text)

    def _finish(
        self,
        order: SimOrder,
        state: OrderState,
        exec_type: ExecutionType,
        *,
        text: str = "",
        reason: CancelReason | None = None,
    ) -> None:
        self._unrest(order)
        order.state = state
        order.leaves_quantity = ZERO
        self._execution(order, exec_type, text=text, unsolicited_cancel_reason=reason)

    def _cancel_order(self, order: SimOrder, reason: CancelReason | None, text: str = "") -> None:
        self._finish(order, OrderState.CANCELED, ExecutionType.CANCELED, text=text, reason=reason)

    # --- trades ------------------------------------------------------------------------------------------

    def _trade(self, taker: SimOrder, maker: SimOrder, qty: Decimal) -> None:
        price = maker.price
        assert price is not None
        now = self.now()
        slug = maker.market_slug
        m = self.markets[slug]
        trade_id = self._new_id("t")
        taker_fee = self._taker_fees[taker.order_id].fill(qty, price)
        maker_fee = FeeAccumulator(MAKER_THETA).fill(qty, price)
        self.fee_income += taker_fee + maker_fee
        taker_acct = self._accounts[taker.account_id]
        maker_acct = self._accounts[maker.account_id]
        before_bal = {a.account_id: self._balance(a) for a in (maker_acct, taker_acct)}
        legs = []
        for order, acct, fee, aggressor in (
            (maker, maker_acct, maker_fee, False),
            (taker, taker_acct, taker_fee, True),
        ):
            order.cum_quantity += qty
            order.leaves_quantity -= qty
            order.notional += qty * price
            order.avg_px = (order.notional / order.cum_quantity).quantize(_COST_Q)
            order.commission_total += fee
            order.state = (
                OrderState.FILLED if order.leaves_quantity == 0 else OrderState.PARTIALLY_FILLED
            )
            if not aggressor and order.leaves_quantity == 0:
                self._unrest(order)
            legs.append(self._book_fill(acct, order, price, qty, fee, aggressor, trade_id, now))
        maker_leg, taker_leg = legs
        trade = Trade(trade_id, slug, price, qty, now, maker_leg[0], taker_leg[0])
        self.trades[trade_id] = trade
        st = m.stats
        st.last_trade_px, st.last_trade_qty, st.last_trade_time = price, qty, now
        st.open_px = st.open_px if st.open_px is not None else price
        st.high_px = price if st.high_px is None else max(st.high_px, price)
        st.low_px = price if st.low_px is None else min(st.low_px, price)
        st.shares_traded += qty
        st.notional_traded += qty * price
        st.open_interest = self._open_interest(slug)
        for order, fee, aggressor in ((maker, maker_fee, False), (taker, taker_fee, True)):
            self._execution(
                order,
                ExecutionType.FILL if order.leaves_quantity == 0 else ExecutionType.PARTIAL_FILL,
                last_shares=qty,
                last_px=price,
                trade_id=trade_id,
                aggressor=aggressor,
                commission=fee,
            )
        self._emit(
            TradePrinted(
                trade_id, slug, price, qty, maker.side, maker.intent, taker.side, taker.intent, now
            )
        )
        for (leg, pos_before, pos_after, cash_before_fee), acct in zip(
            legs, (maker_acct, taker_acct), strict=True
        ):
            self._emit(
                PositionChanged(
                    acct.account_id,
                    slug,
                    pos_before,
                    pos_after,
                    LedgerEntry.ORDER_EXECUTION,
                    now,
                    trade_id,
                )
            )
            after = self._balance(acct)
            mid = attrs.evolve(
                after,
                current_balance=cash_before_fee,
                buying_power=after.buying_power - after.current_balance + cash_before_fee,
            )
            self._emit(
                BalanceChanged(
                    acct.account_id,
                    before_bal[acct.account_id],
                    mid,
                    LedgerEntry.ORDER_EXECUTION,
                    now,
                    self._new_id("bc"),
                    "trade",
                    slug,
                )
            )
            if leg.fee:
                self._emit(
                    BalanceChanged(
                        acct.account_id,
                        mid,
                        after,
                        LedgerEntry.COMMISSION,
                        now,
                        self._new_id("bc"),
                        "commission",
                        slug,
                    )
                )
        self._book_changed(slug)
        for acct in (maker_acct, taker_acct):
            self._recheck_funding(acct)

    def _book_fill(
        self,
        acct: _Account,
        order: SimOrder,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
        aggressor: bool,
        trade_id: str,
        now: datetime,
    ) -> tuple[TradeLeg, SimPosition, SimPosition, Decimal]:
        slug = order.market_slug
        pos = self._position(acct, slug)
        before = pos.snapshot()
        cash_delta = _cash_for_fill(order.side, pos.net, price, qty)
        sign = ONE if order.side is Side.BUY else -ONE
        held = pos.net if order.side is Side.SELL else -pos.net  # the position this fill can close
        closing = min(qty, max(held, ZERO))
        opening = qty - closing
        released = ZERO
        if closing:
            released = (
                pos.cost
                if closing == abs(pos.net)
                else (pos.cost * closing / abs(pos.net)).quantize(_COST_Q, rounding=ROUND_HALF_EVEN)
            )
        proceeds = closing * (price if order.side is Side.SELL else ONE - price)
        realized = proceeds - released
        added = opening * (price if order.side is Side.BUY else ONE - price)
        cost_delta = added - released
        pos.net += sign * qty
        pos.cost += cost_delta
        pos.realized += realized
        pos.fees += fee
        if order.side is Side.BUY:
            pos.qty_bought += qty
        else:
            pos.qty_sold += qty
        pos.update_time = now
        acct.cash += cash_delta
        cash_before_fee = acct.cash
        acct.cash -= fee
        acct.last_updated = now
        activity = TradeActivity(
            trade_id=trade_id,
            market_slug=slug,
            price=price,
            qty=qty,
            is_aggressor=aggressor,
            cost_basis=released + added,
            realized_pnl=realized,
            create_time=now,
            update_time=now,
            order_id=order.order_id,
            intent=order.intent,
            fee=fee,
        )
        acct.activities.append(Activity(ActivityType.TRADE, now, acct.account_id, trade=activity))
        leg = TradeLeg(
            account_id=acct.account_id,
            order_id=order.order_id,
            intent=order.intent,
            side=order.side,
            aggressor=aggressor,
            fee=fee,
            cash_delta=cash_delta - fee,
            net_delta=sign * qty,
            cost_delta=cost_delta,
            realized_delta=realized,
            activity=activity,
        )
        return leg, before, pos.snapshot(), cash_before_fee

    def _position(self, acct: _Account, slug: str) -> SimPosition:
        pos = acct.positions.get(slug)
        if pos is None:
            pos = acct.positions[slug] = SimPosition(acct.account_id, slug)
            self._holders[slug][acct.account_id] = pos
        return pos

    def _open_interest(self, slug: str) -> Decimal:
        return sum((max(p.net, ZERO) for p in self._holders[slug].values()), ZERO)

    # --- funding --------------------------------------------------------------------------------------

    def _market_reservation(self, acct: _Account, slug: str) -> Decimal:
        return _reservation(
            ((o.side, o.price, o.leaves_quantity) for o in acct.open.get(slug, {}).values()),  # type: ignore[misc]
            acct.net(slug),
        )

    def _recheck_funding(self, acct: _Account) -> None:
        """Cancel, newest first, resting orders the account's cash no longer covers (§6.3)."""
        for slug in list(acct.open):
            while slug in acct.open and (
                acct.cash < 0 or self._market_reservation(acct, slug) > acct.cash
            ):
                newest = max(acct.open[slug].values(), key=lambda o: o.seq)
                self._cancel_order(
                    newest, CancelReason.EXCHANGE_OPTION, "insufficient buying power"
                )

    # --- cancel / modify / expire ----------------------------------------------------------------------

    def cancel(self, account_id: str, order_id: str, *, reason: CancelReason | None = None) -> bool:
        """Cancel one working order; unknown, foreign or finished ids are ignored (False)."""
        acct = self._account(account_id)
        order = acct.orders.get(order_id)
        if order is None or order.state not in _RESTING_STATES:
            return False
        with self.batch():
            self._cancel_order(order, reason)
        return True

    def cancel_all(self, account_id: str, slugs: Iterable[str] | None = None) -> list[str]:
        acct = self._account(account_id)
        wanted = None if slugs is None else set(slugs)
        ids = [o.order_id for o in self._open_list(acct, wanted)]
        with self.batch():
            for oid in ids:
                self.cancel(account_id, oid)
        return ids

    def cancel_everything(self, reason: CancelReason = CancelReason.EXCHANGE_OPTION) -> list[str]:
        """Cancel every working order of every account (maintenance), unsolicited."""
        ids = []
        with self.batch():
            for acct in self._accounts.values():
                for o in self._open_list(acct, None):
                    self._cancel_order(o, reason, "exchange maintenance")
                    ids.append(o.order_id)
        return ids

    def modify(
        self,
        account_id: str,
        order_id: str,
        *,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
        tif: TimeInForce | None = None,
        good_till_time: datetime | None = None,
        post_only: bool | None = None,
    ) -> bool:
        """Cancel-replace keeping the order id (see module docstring). False if the order is not
        working (nothing emitted); a modify that fails validation emits a REJECTED execution and
        leaves the order as it was."""
        acct = self._account(account_id)
        order = acct.orders.get(order_id)
        if order is None or order.state not in _RESTING_STATES:
            return False
        m = self.markets[order.market_slug]
        new_price = order.price if price is None else price
        new_qty = order.quantity if quantity is None else quantity
        new_tif = order.tif if tif is None else tif
        new_gtt = order.good_till_time if good_till_time is None else good_till_time
        new_post = order.post_only if post_only is None else post_only
        assert new_price is not None
        with self.batch():
            problem = self._modify_problem(
                acct, order, m, new_price, new_qty, new_tif, new_gtt, new_post
            )
            if problem is not None:
                self._execution(
                    order,
                    ExecutionType.REJECTED,
                    reject_reason=problem[0],
                    text="modify rejected: " + problem[1],
                )
                return True
            keeps_priority = new_price == order.price and new_qty <= order.quantity
            self._unrest(order)
            old = (
                order.price,
                order.quantity,
                order.tif,
                order.good_till_time,
                order.post_only,
                order.leaves_quantity,
            )
            order.price, order.quantity, order.tif = new_price, new_qty, new_tif
            order.good_till_time, order.post_only = new_gtt, new_post
            order.leaves_quantity = new_qty - order.cum_quantity
            fills, cancels = self._plan(order, order.leaves_quantity, None)
            immediate = new_tif in (TimeInForce.IOC, TimeInForce.FOK)
            remainder = order.leaves_quantity - sum((q for _, q in fills), ZERO)
            if not self._funded_entry(
                acct, order, m, fills, cancels, ZERO if immediate else remainder
            ):
                (
                    order.price,
                    order.quantity,
                    order.tif,
                    order.good_till_time,
                    order.post_only,
                    order.leaves_quantity,
                ) = old
                self._rest_at_priority(acct, order)
                self._execution(
                    order,
                    ExecutionType.REJECTED,
                    reject_reason=RejectReason.EXCHANGE_OPTION,
                    text="modify rejected: insufficient buying power",
                )
                return True
            now = self.now()
            order.insert_time = now
            if not keeps_priority:
                order.seq = next(self._seq)
            self._execution(order, ExecutionType.REPLACE)
            stopped = self._match(acct, order, m)
            if order.leaves_quantity > 0:
                if immediate or stopped:
                    self._finish(
                        order,
                        OrderState.CANCELED,
                        ExecutionType.CANCELED,
                        text="unfilled remainder canceled",
                    )
                elif keeps_priority:
                    self._rest_at_priority(acct, order)
                else:
                    self._rest(acct, order)
        return True

    def _rest_at_priority(self, acct: _Account, order: SimOrder) -> None:
        """Put an order back into its level at the place its `seq` earns."""
        self._rest(acct, order)
        book = self._books[order.market_slug]
        levels = book.bids if order.side is Side.BUY else book.offers
        q = levels[order.price]  # type: ignore[index]
        ordered = sorted(q, key=lambda o: o.seq)
        q.clear()
        q.extend(ordered)

    def _modify_problem(
        self,
        acct: _Account,
        order: SimOrder,
        m: Market,
        price: Decimal,
        qty: Decimal,
        tif: TimeInForce,
        gtt: datetime | None,
        post_only: bool,
    ) -> tuple[RejectReason, str] | None:
        if not m.active:
            return RejectReason.EXCHANGE_CLOSED, "market is not open"
        if not MIN_PRICE <= price <= MAX_PRICE:
            return RejectReason.PRICE_OUT_OF_BOUNDS, "price must be within 0.01 and 0.99"
        if not is_on_step(price, m.tick):
            return RejectReason.INVALID_PRICE_INCREMENT, f"price is not a multiple of {m.tick}"
        if qty <= order.cum_quantity or qty < m.min_qty or not is_on_step(qty, m.min_qty):
            return RejectReason.INCORRECT_QUANTITY, "quantity must exceed the filled quantity"
        if tif is TimeInForce.GTD and (gtt is None or gtt <= self.now()):
            return RejectReason.EXCHANGE_OPTION, "good-till-date order needs a future goodTillTime"
        if post_only and self._would_cross(order, price):
            return RejectReason.EXCHANGE_OPTION, "post-only order would cross"
        if order.intent in (Intent.SELL_LONG, Intent.SELL_SHORT):
            probe = attrs.evolve(order, quantity=qty - order.cum_quantity)
            return self._closing_problem(acct, probe)
        return None

    def expire_due(self, now: datetime | None = None) -> list[str]:
        """Expire GTD orders whose goodTillTime has passed."""
        now = self.now() if now is None else now
        due = [
            o
            for o in self._gtd.values()
            if o.good_till_time is not None and o.good_till_time <= now
        ]
        if not due:
            return []
        with self.batch():
            for o in sorted(due, key=lambda o: o.seq):
                self._finish(
                    o, OrderState.EXPIRED, ExecutionType.EXPIRED, text="good-till-date expired"
                )
        return [o.order_id for o in due]

    # --- queries ----------------------------------------------------------------------------------------

    def _open_list(self, acct: _Account, slugs: set[str] | None) -> list[SimOrder]:
        out = [
            o
            for slug, orders in acct.open.items()
            if slugs is None or slug in slugs
            for o in orders.values()
        ]
        out.sort(key=lambda o: o.seq)
        return out

    def open_orders(self, account_id: str, slugs: Iterable[str] | None = None) -> list[SimOrder]:
        wanted = None if slugs is None else set(slugs)
        return [o.snapshot() for o in self._open_list(self._account(account_id), wanted or None)]

    def get_order(self, account_id: str, order_id: str) -> SimOrder | None:
        order = self._account(account_id).orders.get(order_id)
        return None if order is None else order.snapshot()

    def forget_history(self, account_ids: Iterable[str], before: datetime) -> int:
        """Drop what `account_ids` no longer need so a long-running world stays bounded: their
        finished orders (from the account and from `orders_accepted`), their activities older
        than `before`, and trades older than `before` between those accounts only. Positions,
        balances and resting orders stay. Meant for the background traders of a world that
        runs for days; returns how many records went."""
        accounts = set(account_ids)
        gone = 0
        for account_id in accounts:
            acct = self._accounts.get(account_id)
            if acct is None:
                continue
            finished = [oid for oid, o in acct.orders.items() if o.state not in _RESTING_STATES
                        and o.state is not OrderState.PENDING_NEW]
            for oid in finished:
                del acct.orders[oid]
            kept = [a for a in acct.activities if a.time >= before]
            gone += len(finished) + len(acct.activities) - len(kept)
            acct.activities = kept
        n = len(self.orders_accepted)
        self.orders_accepted = [
            a for a in self.orders_accepted
            if a.account_id not in accounts or a.order_id in self._accounts[a.account_id].orders
        ]
        gone += n - len(self.orders_accepted)
        old = [tid for tid, t in self.trades.items() if t.time < before
               and t.maker.account_id in accounts and t.taker.account_id in accounts]
        for tid in old:
            del self.trades[tid]
        return gone + len(old)

    def order_state(self, account_id: str, order_id: str) -> OrderState | None:
        """The order's state without copying it (the scenario's makers ask this a lot)."""
        order = self._account(account_id).orders.get(order_id)
        return None if order is None else order.state

    def positions(self, account_id: str) -> dict[str, SimPosition]:
        return {s: p.snapshot() for s, p in self._account(account_id).positions.items()}

    def balance(self, account_id: str) -> Balance:
        return self._balance(self._account(account_id))

    def _balance(self, acct: _Account) -> Balance:
        reserved = sum((self._market_reservation(acct, s) for s in acct.open), ZERO)
        notional = ZERO
        for slug, pos in acct.positions.items():
            if pos.net == 0:
                continue
            mark = self._mark(slug)
            if mark is None:
                notional += pos.cost
            elif pos.net > 0:
                notional += pos.net * mark
            else:
                notional += -pos.net * (ONE - mark)
        return Balance(
            current_balance=acct.cash,
            buying_power=acct.cash - reserved,
            open_orders=reserved,
            asset_notional=notional,
            last_updated=acct.last_updated,
        )

    def _mark(self, slug: str) -> Decimal | None:
        m = self.markets[slug]
        if m.settlement is not None:
            return m.settlement
        book = self._books[slug]
        bid, ask = book.best(Side.BUY), book.best(Side.SELL)
        if bid is not None and ask is not None:
            return (bid + ask) / 2
        return m.stats.last_trade_px

    def activities(self, account_id: str) -> list[Activity]:
        """The account's activities, oldest first."""
        return list(self._account(account_id).activities)

    def book(self, slug: str, depth: int = 10) -> BookView:
        m = self.markets[slug]
        book = self._books[slug]
        return BookView(
            market_slug=slug,
            bids=book.levels(Side.BUY, depth),
            offers=book.levels(Side.SELL, depth),
            state=m.state,
            transact_time=self.now(),
            stats=attrs.evolve(m.stats),
            settlement=m.settlement,
        )

    def bbo(self, slug: str) -> Bbo:
        m = self.markets[slug]
        book = self._books[slug]
        bid_depth, bid_shares = book.total(Side.BUY)
        ask_depth, ask_shares = book.total(Side.SELL)
        return Bbo(
            market_slug=slug,
            best_bid=book.best(Side.BUY),
            best_ask=book.best(Side.SELL),
            bid_depth=bid_depth,
            ask_depth=ask_depth,
            bid_shares=bid_shares,
            ask_shares=ask_shares,
            last_trade_px=m.stats.last_trade_px,
            current_px=self._mark(slug),
            settlement_px=m.settlement,
            shares_traded=m.stats.shares_traded,
            open_interest=m.stats.open_interest,
            state=m.state,
            transact_time=self.now(),
        )

    def settlement(self, slug: str) -> Decimal | None:
        m = self.markets.get(slug)
        return None if m is None else m.settlement

    def open_interest(self, slug: str) -> Decimal:
        return self._open_interest(slug)

    # --- market operations -----------------------------------------------------------------------------

    def set_market_state(
        self, slug: str, state: MarketState, status: MarketStatus | None = None
    ) -> None:
        """Change a market's trading state; resting orders stay (maintenance cancels them first)."""
        m = self.markets[slug]
        if m.settlement is not None:
            raise ValueError(f"market {slug!r} is settled")
        m.state = state
        m.status = (
            status if status is not None else _STATUS_FOR_STATE.get(state, MarketStatus.UNKNOWN)
        )
        self._emit(MarketChanged(slug, self.now()))
        self._book_changed(slug)

    def settle(self, slug: str, value: Decimal) -> None:
        """Resolve a market at `value` per YES contract (any value in [0, 1])."""
        m = self.markets[slug]
        if m.settlement is not None:
            raise ValueError(f"market {slug!r} already settled")
        if not ZERO <= value <= ONE:
            raise ValueError("settlement value must be within 0 and 1")
        now = self.now()
        with self.batch():
            for acct in self._accounts.values():
                for o in self._open_list(acct, {slug}):
                    self._cancel_order(o, CancelReason.EXCHANGE_OPTION, "market resolved")
            m.settlement = value
            m.settled_at = now
            m.state = MarketState.EXPIRED
            m.status = MarketStatus.RESOLVED
            for account_id, pos in sorted(self._holders[slug].items()):
                acct = self._accounts[account_id]
                before_pos = pos.snapshot()
                before_bal = self._balance(acct)
                net = pos.net
                if net > 0:
                    payout, side = net * value, ResolutionSide.LONG
                elif net < 0:
                    payout, side = -net * (ONE - value), ResolutionSide.SHORT
                else:
                    payout, side = ZERO, ResolutionSide.NEUTRAL
                pos.realized += payout - pos.cost
                pos.cost = ZERO
                pos.net = ZERO
                pos.expired = True
                pos.update_time = now
                acct.cash += payout
                acct.last_updated = now
                acct.activities.append(
                    Activity(
                        ActivityType.POSITION_RESOLUTION,
                        now,
                        account_id,
                        resolution=PositionResolution(slug, net, ZERO, now, side, value=value),
                    )
                )
                self._emit(
                    PositionChanged(
                        account_id,
                        slug,
                        before_pos,
                        pos.snapshot(),
                        LedgerEntry.RESOLUTION,
                        now,
                        description="market resolved",
                    )
                )
                if payout:
                    self._emit(
                        BalanceChanged(
                            account_id,
                            before_bal,
                            self._balance(acct),
                            LedgerEntry.RESOLUTION,
                            now,
                            self._new_id("bc"),
                            "market resolved",
                            slug,
                        )
                    )
            m.stats.open_interest = ZERO
            self._emit(MarketChanged(slug, now))
            self._book_changed(slug)

    def bust_trade(self, trade_id: str) -> None:
        """Reverse a trade on both sides (positions, cost, realized, cash incl. fees)."""
        trade = self.trades.get(trade_id)
        if trade is None:
            raise KeyError(trade_id)
        if trade.state is TradeState.BUSTED:
            raise ValueError(f"trade {trade_id} is already busted")
        m = self.markets[trade.market_slug]
        if m.settlement is not None:
            raise ValueError("cannot bust a trade of a settled market")
        now = self.now()
        trade.state = TradeState.BUSTED
        with self.batch():
            for leg in (trade.maker, trade.taker):
                acct = self._accounts[leg.account_id]
                pos = acct.positions[trade.market_slug]
                before_pos = pos.snapshot()
                before_bal = self._balance(acct)
                pos.net -= leg.net_delta
                pos.cost -= leg.cost_delta
                if pos.net == 0:
                    pos.cost = ZERO
                pos.realized -= leg.realized_delta
                pos.fees -= leg.fee
                if leg.side is Side.BUY:
                    pos.qty_bought -= trade.qty
                else:
                    pos.qty_sold -= trade.qty
                pos.update_time = now
                acct.cash -= leg.cash_delta
                acct.last_updated = now
                self.fee_income -= leg.fee
                leg.activity.state = TradeState.BUSTED
                leg.activity.update_time = now
                self._emit(
                    PositionChanged(
                        acct.account_id,
                        trade.market_slug,
                        before_pos,
                        pos.snapshot(),
                        LedgerEntry.CORRECTION,
                        now,
                        trade_id,
                        "trade busted",
                    )
                )
                self._emit(
                    BalanceChanged(
                        acct.account_id,
                        before_bal,
                        self._balance(acct),
                        LedgerEntry.CORRECTION,
                        now,
                        self._new_id("bc"),
                        "trade busted",
                        trade.market_slug,
                    )
                )
            m.stats.shares_traded -= trade.qty
            m.stats.notional_traded -= trade.qty * trade.price
            m.stats.open_interest = self._open_interest(trade.market_slug)
            self._book_changed(trade.market_slug)
            for leg in (trade.maker, trade.taker):
                self._recheck_funding(self._accounts[leg.account_id])

    # --- served-exchange hooks (added by the REST/ws server's author; purely additive) -----------

    def submit_rejected(
        self,
        account_id: str,
        req: OrderSpec,
        reason: RejectReason = RejectReason.EXCHANGE_OPTION,
        text: str = "order rejected",
    ) -> str:
        """Record a create request under a fresh id and reject it at once, whatever it says.

        The server's ``reject_all_orders`` fault: the order is recorded in `orders_accepted`
        like any other and gets one REJECTED execution, so clients see 200 + id then a reject.
        """
        acct = self._account(account_id)
        now = self.now()
        order = self._record(acct, req, now)
        oid = order.order_id
        self._reject(order, reason, text)
        return oid
