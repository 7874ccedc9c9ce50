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
- Ids: order "o-…", execution "e-…", trade "t-…", balance change "bc-…": a counter plus seeded
  random hex, so a given seed and call sequence always produces the same ids.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

import attrs

from polybot.model import (
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
)

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
class Event:
    event_id: int
    slug: str
    title: str
    start_time: datetime | None = None
    league: str = ""  # series / league slug, e.g. "nba"
    sport: str = ""  # e.g. "basketball"
    series_slug: str = ""
    teams: tuple[Team, ...] = ()
    market_slugs: list[str] = attrs.field(factory=list)
    external_ids: dict[str, str] = attrs.field(factory=dict)  # partner -> id, {"opticodds": fixture}
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


@attrs.frozen(slots=True)
class AccountBalanceChange:
    transaction_id: str
    amount: Decimal
    create_time: datetime
    update_time: datetime
    status: str = "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED"


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
    before: SimPosition | None  # None when the position opens
    after: SimPosition | None  # None when it goes flat
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
    BookChanged | TradePrinted | ExecutionReported | PositionChanged | BalanceChanged | MarketChanged
)


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
        self.orders_accepted: list[AcceptedOrder] = []
        self.trades: dict[str, Trade] = {}
        self.fee_income = ZERO  # net fees the exchange kept (charged − rebated)
        raise NotImplementedError

    # reference data
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
    ) -> Event:
        raise NotImplementedError

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
        raise NotImplementedError

    def event_by_id(self, event_id: int) -> Event | None:
        raise NotImplementedError

    def market_by_id(self, market_id: int) -> Market | None:
        raise NotImplementedError

    def event_by_external_id(self, partner: str, external_id: str) -> Event | None:
        """Event linked to a partner's id, e.g. ("opticodds", fixture id)."""
        raise NotImplementedError

    # accounts
    def create_account(self, account_id: str, cash: Decimal = ZERO) -> None:
        raise NotImplementedError

    def has_account(self, account_id: str) -> bool:
        raise NotImplementedError

    def deposit(self, account_id: str, amount: Decimal) -> None:
        raise NotImplementedError

    def withdraw(self, account_id: str, amount: Decimal) -> None:
        raise NotImplementedError

    # orders
    def submit(self, account_id: str, req: OrderSpec) -> str:
        raise NotImplementedError

    def cancel(
        self, account_id: str, order_id: str, *, reason: CancelReason | None = None
    ) -> bool:
        raise NotImplementedError

    def cancel_all(self, account_id: str, slugs: Iterable[str] | None = None) -> list[str]:
        raise NotImplementedError

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
        raise NotImplementedError

    def expire_due(self, now: datetime | None = None) -> list[str]:
        raise NotImplementedError

    # queries
    def open_orders(self, account_id: str, slugs: Iterable[str] | None = None) -> list[SimOrder]:
        raise NotImplementedError

    def get_order(self, account_id: str, order_id: str) -> SimOrder | None:
        raise NotImplementedError

    def positions(self, account_id: str) -> dict[str, SimPosition]:
        raise NotImplementedError

    def balance(self, account_id: str) -> Balance:
        raise NotImplementedError

    def activities(self, account_id: str) -> list[Activity]:
        raise NotImplementedError

    def book(self, slug: str, depth: int = 10) -> BookView:
        raise NotImplementedError

    def bbo(self, slug: str) -> Bbo:
        raise NotImplementedError

    def settlement(self, slug: str) -> Decimal | None:
        raise NotImplementedError

    # market operations
    def set_market_state(
        self, slug: str, state: MarketState, status: MarketStatus | None = None
    ) -> None:
        raise NotImplementedError

    def settle(self, slug: str, value: Decimal) -> None:
        raise NotImplementedError

    def bust_trade(self, trade_id: str) -> None:
        raise NotImplementedError

    def cancel_everything(self, reason: CancelReason = CancelReason.EXCHANGE_OPTION) -> list[str]:
        raise NotImplementedError

    # events
    def subscribe(self, callback: Callable[[ExchangeEvent], None]) -> Callable[[], None]:
        raise NotImplementedError

    @contextmanager
    def batch(self) -> Iterator[None]:
        raise NotImplementedError
        yield
