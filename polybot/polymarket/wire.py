"""Wire JSON ⇄ model types for Polymarket US (reference §3–§5).

Conventions of the wire and how they are met here:

* Money and quantities arrive as decimal strings (`"0.5400"`), `Amount` objects
  (`{"value": "0.54", "currency": "USD"}`), or JSON numbers (an order's `quantity`,
  `cumQuantity`, `leavesQuantity`; every balance field). They become `Decimal` from their JSON
  *text*, never through a binary float.
* The hot path (book and execution frames) is decoded with orjson, which is several times
  faster than the stdlib, but orjson turns a JSON number with a fraction into a float. So the
  money reader `dec()` refuses floats (`_FloatMoney`) and the frame is decoded again with
  ``json.loads(parse_float=Decimal)``. Book frames carry only strings, so they never pay for
  the fallback; an order quantity of `25` is an int and is exact too. The private socket, whose
  frames usually carry fractional numbers, uses the exact decoder directly
  (`decode_frame(exact=True)`). `bench/bench_client.py` measures the alternatives.
* int64 fields are JSON strings; ids may be strings or numbers: ids become `str`.
* Timestamps are RFC 3339 with up to nanoseconds; parsed to aware `datetime` (µs precision).
* Unknown enum values map to the enum's `UNKNOWN` member and are logged once per value.
  Missing optional fields take defaults; a frame missing what identifies it (a book's
  `marketSlug`, an order's `id`) raises `WireError` so the stream counts and skips it.
* `"error": ""` on a data frame is not an error (only a non-empty string is).

The module also exposes `converter`, a cattrs `Converter` with these parsers registered as
structure hooks for the model types (``converter.structure(raw, BookSnapshot)``) and the
request encoder as the unstructure hook of `OrderRequest`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs
import cattrs
import orjson

from polybot.model import (
    ZERO,
    Balance,
    BookSnapshot,
    EventInfo,
    Execution,
    ExecutionType,
    Intent,
    LeagueInfo,
    MappedMarketSide,
    MarketInfo,
    MarketSideInfo,
    MarketState,
    MarketStatus,
    Order,
    OrderRequest,
    OrderState,
    OrderType,
    Position,
    PriceLevel,
    Side,
    TeamInfo,
    TimeInForce,
    TradePrint,
)

log = logging.getLogger(__name__)

MANUAL_ORDER_INDICATOR_AUTOMATIC = "MANUAL_ORDER_INDICATOR_AUTOMATIC"

E = TypeVar("E")


class WireError(ValueError):
    """A payload that cannot be turned into a model value (counted and skipped by streams)."""


class UnknownFrame(WireError):
    """A websocket frame with no payload key we know."""


class _FloatMoney(Exception):
    """orjson produced a float where money lives: decode the frame again exactly."""


# --- scalars -------------------------------------------------------------------------------------


def dec(v: Any) -> Decimal:
    """A decimal string, int, Decimal or `Amount` object → Decimal (floats refused)."""
    t = type(v)
    if t is str:
        try:
            return Decimal(v)
        except InvalidOperation:
            raise WireError(f"not a decimal: {v!r}") from None
    if t is dict:
        return dec(v.get("value"))
    if t is int or t is Decimal:
        return Decimal(v)
    if t is float:
        raise _FloatMoney
    raise WireError(f"not a decimal: {v!r}")


def dec_or(v: Any, default: Decimal | None = None) -> Decimal | None:
    if v is None or v == "" or (type(v) is dict and v.get("value") in (None, "")):
        return default
    return dec(v)


def parse_time(v: Any) -> datetime | None:
    """RFC 3339 → aware datetime; None/empty → None; nanoseconds truncated to µs."""
    if not v or type(v) is not str:
        return None
    s = v
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dot = s.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        frac = s[dot + 1 : end][:6].ljust(6, "0")
        s = s[: dot + 1] + frac + s[end:]
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        raise WireError(f"not an RFC 3339 time: {v!r}") from None


def _id(v: Any) -> str:
    return "" if v is None else str(v)


_unknown_seen: set[tuple[str, str]] = set()


def enum_of(cls: type[E], value: Any) -> E:
    """Wire string → enum member; unknown values → UNKNOWN, logged once per value."""
    try:
        return cls(value)  # type: ignore[call-arg]
    except ValueError:
        key = (cls.__name__, str(value))
        if value is not None and key not in _unknown_seen:
            _unknown_seen.add(key)
            log.warning("unknown %s value from exchange: %r (treated as UNKNOWN)", *key)
        return cls["UNKNOWN"]  # type: ignore[index]


_OUTCOME_ACTION_INTENT: dict[tuple[Any, Any], Intent] = {
    ("OUTCOME_SIDE_YES", "ORDER_ACTION_BUY"): Intent.BUY_LONG,
    ("OUTCOME_SIDE_YES", "ORDER_ACTION_SELL"): Intent.SELL_LONG,
    ("OUTCOME_SIDE_NO", "ORDER_ACTION_BUY"): Intent.BUY_SHORT,
    ("OUTCOME_SIDE_NO", "ORDER_ACTION_SELL"): Intent.SELL_SHORT,
}


# --- frame decoding ------------------------------------------------------------------------------


def loads_exact(data: str | bytes) -> Any:
    """Stdlib decode with every JSON number carrying a fraction as Decimal (slow but exact)."""
    return json.loads(data, parse_float=Decimal)


def decode_with(data: str | bytes, parse: Callable[[Any], E]) -> E:
    """Decode JSON text and apply `parse`, falling back to the exact decoder on float money."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"invalid JSON: {exc}") from None
    try:
        return parse(raw)
    except _FloatMoney:
        return parse(loads_exact(data))


# --- market data ---------------------------------------------------------------------------------


def _levels(raw: Iterable[Any] | None) -> tuple[PriceLevel, ...]:
    if not raw:
        return ()
    return tuple([PriceLevel(dec(lv["px"]), dec(lv["qty"])) for lv in raw])


def parse_book(d: Mapping[str, Any], received_at: float = 0.0) -> BookSnapshot:
    """A `marketData` object (REST book or websocket frame) → BookSnapshot."""
    slug = d.get("marketSlug")
    if not slug:
        raise WireError("book without marketSlug")
    try:
        bids = _levels(d.get("bids"))
        offers = _levels(d.get("offers"))
    except (KeyError, TypeError) as exc:
        raise WireError(f"malformed book level in {slug}: {exc!r}") from None
    state = d.get("state")
    return BookSnapshot(
        market_slug=slug,
        bids=bids,
        offers=offers,
        state=MarketState.OPEN if state == "MARKET_STATE_OPEN" else enum_of(MarketState, state),
        transact_time=parse_time(d.get("transactTime")),
        received_at=received_at,
    )


@attrs.frozen(slots=True)
class Bbo:
    """Top of book and stats (`marketDataLite`)."""

    market_slug: str
    best_bid: Decimal | None = None
    best_ask: Decimal | None = None
    last_trade_px: Decimal | None = None
    current_px: Decimal | None = None
    bid_depth: int = 0
    ask_depth: int = 0
    state: MarketState = MarketState.UNKNOWN
    received_at: float = 0.0


def parse_bbo(d: Mapping[str, Any], received_at: float = 0.0) -> Bbo:
    slug = d.get("marketSlug")
    if not slug:
        raise WireError("bbo without marketSlug")
    return Bbo(
        market_slug=slug,
        best_bid=dec_or(d.get("bestBid")),
        best_ask=dec_or(d.get("bestAsk")),
        last_trade_px=dec_or(d.get("lastTradePx")),
        current_px=dec_or(d.get("currentPx")),
        bid_depth=int(d.get("bidDepth") or 0),
        ask_depth=int(d.get("askDepth") or 0),
        state=enum_of(MarketState, d["state"]) if d.get("state") else MarketState.UNKNOWN,
        received_at=received_at,
    )


def parse_trade(d: Mapping[str, Any]) -> TradePrint:
    slug = d.get("marketSlug")
    if not slug or d.get("price") is None:
        raise WireError("trade without marketSlug or price")
    taker = d.get("taker") or {}
    return TradePrint(
        market_slug=slug,
        price=dec(d["price"]),
        qty=dec_or(d.get("quantity"), ZERO) or ZERO,
        taker_side=enum_of(Side, taker.get("side")),
        trade_time=parse_time(d.get("tradeTime")),
    )


# --- orders and executions -----------------------------------------------------------------------


def parse_order(d: Mapping[str, Any]) -> Order:
    oid = d.get("id")
    if not oid:
        raise WireError("order without id")
    intent_raw = d.get("intent")
    if intent_raw:
        intent = enum_of(Intent, intent_raw)
    else:
        intent = _OUTCOME_ACTION_INTENT.get((d.get("outcomeSide"), d.get("action")), Intent.UNKNOWN)
    commission = d.get("commissionNotionalTotalCollected")
    return Order(
        order_id=_id(oid),
        market_slug=d.get("marketSlug") or (d.get("marketMetadata") or {}).get("slug") or "",
        intent=intent,
        price=dec_or(d.get("price"), ZERO) or ZERO,
        quantity=dec_or(d.get("quantity"), ZERO) or ZERO,
        # proto3 JSON omits zero values: an absent cumQuantity is a known zero
        cum_quantity=dec_or(d.get("cumQuantity"), ZERO) or ZERO,
        leaves_quantity=dec_or(d.get("leavesQuantity"), ZERO) or ZERO,
        state=enum_of(OrderState, d.get("state")),
        order_type=enum_of(OrderType, d["type"]) if d.get("type") else OrderType.LIMIT,
        tif=enum_of(TimeInForce, d["tif"]) if d.get("tif") else TimeInForce.UNKNOWN,
        avg_px=dec_or(d.get("avgPx")),
        create_time=parse_time(d.get("createTime")),
        commission_total=dec_or(commission),
    )


def parse_execution(d: Mapping[str, Any]) -> Execution:
    eid = d.get("id")
    order = d.get("order")
    if not eid or not isinstance(order, dict):
        raise WireError("execution without id or order")
    aggressor = d.get("aggressor")
    return Execution(
        exec_id=_id(eid),
        order=parse_order(order),
        exec_type=enum_of(ExecutionType, d.get("type")),
        last_shares=dec_or(d.get("lastShares"), ZERO) or ZERO,
        last_px=dec_or(d.get("lastPx")),
        trade_id=_id(d.get("tradeId")),
        aggressor=aggressor if isinstance(aggressor, bool) else None,
        commission=dec_or(d.get("commissionNotionalCollected")),
        reject_reason=d.get("orderRejectReason") or "",
        text=d.get("text") or "",
        unsolicited_cancel_reason=d.get("unsolicitedCancelReason") or "",
        transact_time=parse_time(d.get("transactTime")),
    )


# --- portfolio and account -----------------------------------------------------------------------


@attrs.frozen(slots=True)
class ExchangePosition:
    """The exchange's `UserPosition` for one market (exact `…Decimal` fields preferred)."""

    market_slug: str
    net_qty: Decimal = ZERO
    qty_bought: Decimal = ZERO
    qty_sold: Decimal = ZERO
    cost: Decimal | None = None
    realized: Decimal = ZERO
    cash_value: Decimal | None = None
    expired: bool = False
    update_time: datetime | None = None

    def to_position(self) -> Position:
        """Signed net YES position with average YES cost (cost basis / |net|)."""
        avg = ZERO
        if self.net_qty and self.cost is not None:
            avg = abs(self.cost) / abs(self.net_qty)
        return Position(self.market_slug, self.net_qty, avg, self.realized)


def _qty2(d: Mapping[str, Any], name: str) -> Decimal:
    exact = d.get(name + "Decimal")
    return dec_or(exact if exact not in (None, "") else d.get(name), ZERO) or ZERO


def parse_position(d: Mapping[str, Any], slug: str = "") -> ExchangePosition:
    slug = slug or (d.get("marketMetadata") or {}).get("slug") or d.get("marketSlug") or ""
    if not slug:
        raise WireError("position without market slug")
    return ExchangePosition(
        market_slug=slug,
        net_qty=_qty2(d, "netPosition"),
        qty_bought=_qty2(d, "qtyBought"),
        qty_sold=_qty2(d, "qtySold"),
        cost=dec_or(d.get("cost")),
        realized=dec_or(d.get("realized"), ZERO) or ZERO,
        cash_value=dec_or(d.get("cashValue")),
        expired=bool(d.get("expired")),
        update_time=parse_time(d.get("updateTime")),
    )


def parse_balance(d: Mapping[str, Any]) -> Balance:
    def f(name: str) -> Decimal:
        return dec_or(d.get(name), ZERO) or ZERO

    return Balance(
        currency=d.get("currency") or "USD",
        current_balance=f("currentBalance"),
        buying_power=f("buyingPower"),
        open_orders=f("openOrders"),
        asset_notional=f("assetNotional"),
        asset_available=f("assetAvailable"),
        unsettled_funds=f("unsettledFunds"),
        margin_requirement=f("marginRequirement"),
        last_updated=parse_time(d.get("lastUpdated")),
    )


@attrs.frozen(slots=True)
class Activity:
    """One portfolio activity; `trade_*` fields are set for ACTIVITY_TYPE_TRADE, `change_*` for
    the cash activities (`accountBalanceChange`: deposits, withdrawals, transfers, bonuses,
    rebates). `change_refund` is the size of the refunds among its `transactions[]` (the entries
    other than the change itself; their sign is undocumented), None when it lists none; an
    amount that is not a decimal (a float, junk) is None rather than a guess."""

    type: str
    market_slug: str = ""
    trade_id: str = ""
    trade_state: str = ""
    price: Decimal | None = None
    qty: Decimal | None = None
    is_aggressor: bool | None = None
    realized_pnl: Decimal | None = None
    time: datetime | None = None
    change_id: str = ""
    change_status: str = ""
    change_amount: Decimal | None = None
    change_refund: Decimal | None = None
    raw: Any = attrs.field(default=None, eq=False, repr=False)  # the untouched payload, for audit


def parse_activity(d: Mapping[str, Any]) -> Activity:
    kind = d.get("type") or "ACTIVITY_TYPE_UNSPECIFIED"
    trade = d.get("trade")
    if isinstance(trade, dict):
        agg = trade.get("isAggressor")
        return Activity(
            type=kind,
            market_slug=trade.get("marketSlug") or "",
            trade_id=_id(trade.get("id")),
            trade_state=trade.get("state") or "",
            price=dec_or(trade.get("price")),
            qty=dec_or(trade.get("qtyDecimal")) or dec_or(trade.get("qty")),
            is_aggressor=agg if isinstance(agg, bool) else None,
            realized_pnl=dec_or(trade.get("realizedPnl")),
            time=parse_time(trade.get("updateTime") or trade.get("createTime")),
            raw=d,
        )
    change = d.get("accountBalanceChange")
    if isinstance(change, dict):
        tid = _id(change.get("transactionId"))
        refunds = [_money_or_none(t.get("amount")) for t in change.get("transactions") or ()
                   if isinstance(t, dict) and _id(t.get("transactionId")) != tid]
        refund = None
        if refunds and all(r is not None for r in refunds):
            refund = abs(sum((r for r in refunds if r is not None), Decimal(0)))
        return Activity(
            type=kind,
            time=parse_time(change.get("updateTime") or change.get("createTime")),
            change_id=tid,
            change_status=change.get("status") or "",
            change_amount=_money_or_none(change.get("amount")),
            change_refund=refund,
            raw=d,
        )
    res = d.get("positionResolution")
    res = res if isinstance(res, dict) else {}
    return Activity(
        type=kind,
        market_slug=res.get("marketSlug") or "",
        time=parse_time(res.get("updateTime") or res.get("createTime")),
        raw=d,
    )


def _money_or_none(v: Any) -> Decimal | None:
    try:
        return dec_or(v)
    except (WireError, _FloatMoney):
        return None


# --- reference data ------------------------------------------------------------------------------


def parse_team(d: Mapping[str, Any]) -> TeamInfo:
    pids = []
    for p in d.get("providerIds") or ():
        if isinstance(p, dict) and p.get("provider"):
            pids.append((p["provider"], _id(p.get("providerId", p.get("id")))))
    return TeamInfo(
        team_id=_id(d.get("id")),
        name=d.get("name") or "",
        abbreviation=d.get("abbreviation") or "",
        league=d.get("league") or "",
        provider_ids=tuple(pids),
    )


def parse_market(d: Mapping[str, Any]) -> MarketInfo:
    slug = d.get("slug")
    if not slug:
        raise WireError("market without slug")
    sides = []
    for s in d.get("marketSides") or ():
        sides.append(
            MarketSideInfo(
                side_id=_id(s.get("id")),
                long=bool(s.get("long")),
                description=s.get("description") or "",
                team_id=_id(s.get("teamId") or (s.get("team") or {}).get("id")),
            )
        )
    fee = d.get("feeCoefficient")
    return MarketInfo(
        slug=slug,
        market_id=_id(d.get("id")),
        event_id=_id(d.get("eventId")),
        event_slug=d.get("eventSlug") or "",
        tick=dec_or(d.get("orderPriceMinTickSize"), Decimal("0.01")) or Decimal("0.01"),
        min_qty=dec_or(d.get("minimumTradeQty"), Decimal(1)) or Decimal(1),
        fee_coefficient=dec_or(fee),
        status=enum_of(MarketStatus, d["status"]) if d.get("status") else MarketStatus.UNKNOWN,
        # the game's start only: `startDate` is the listing time (real captures); without the
        # deprecated `gameStartTime` the market's Event supplies it (`with_event`)
        start_time=parse_time(d.get("gameStartTime")),
        title=d.get("question") or d.get("title") or "",
        sides=tuple(sides),
        sports_market_type=d.get("sportsMarketType") or "",
    )


def parse_event(d: Mapping[str, Any]) -> tuple[EventInfo, tuple[MarketInfo, ...]]:
    """An `Event` → (EventInfo, its markets with event id/slug filled in)."""
    eid = _id(d.get("id"))
    slug = d.get("slug") or ""
    markets = []
    for m in d.get("markets") or ():
        mi = parse_market(m)
        if not mi.event_id or not mi.event_slug:
            mi = attrs.evolve(mi, event_id=mi.event_id or eid, event_slug=mi.event_slug or slug)
        markets.append(mi)
    info = EventInfo(
        event_id=eid,
        slug=slug,
        title=d.get("title") or "",
        start_time=parse_time(d.get("startTime") or d.get("startDate")),
        series_slug=d.get("seriesSlug") or (d.get("series") or {}).get("slug") or "",
        teams=tuple(parse_team(t) for t in d.get("teams") or ()),
        market_slugs=tuple(m.slug for m in markets),
        market_ids=tuple(m.market_id for m in markets),
        game_id=_id(d.get("gameId")) if d.get("gameId") not in (None, "", 0, "0") else "",
    )
    return info, tuple(markets)


def parse_league(d: Mapping[str, Any]) -> LeagueInfo:
    """A `League` object; ids arrive as strings (the docs' schema) or numbers (real captures)."""
    slug = d.get("slug")
    if not slug or not isinstance(slug, str):
        raise WireError("league without slug")
    series = d.get("activeSeriesId")
    return LeagueInfo(
        slug=slug,
        name=d.get("name") or "",
        league_id=_id(d.get("id")),
        active_series_id="" if series in (None, "", 0, "0") else _id(series),
        is_operational=bool(d.get("isOperational", True)),
    )


def with_event(market: MarketInfo, event: EventInfo) -> MarketInfo:
    """`market` as a market of `event`: its event id/slug and the game's start from the Event.

    The real Market object carries neither `eventId` nor `eventSlug`, so the Event that lists
    the market (an events listing, or the partner lookup of its fixture) is the only source.
    The Event's `startTime` wins over the market's deprecated `gameStartTime`.
    """
    return attrs.evolve(
        market,
        event_id=event.event_id,
        event_slug=event.slug,
        start_time=event.start_time or market.start_time,
    )


def parse_mapped_side(d: Mapping[str, Any]) -> MappedMarketSide:
    return MappedMarketSide(
        market_side_id=_id(d.get("marketSideId")),
        market_id=_id(d.get("marketId")),
        event_id=_id(d.get("eventId")),
        external_event_id=_id(d.get("externalEventId")),
        external_market_type=_id(d.get("externalMarketType")),
        external_normalized_selection=_id(d.get("externalNormalizedSelection")),
        external_selection_line=_id(d.get("externalSelectionLine")),
        external_points=_id(d.get("externalPoints")),
    )


# --- requests ------------------------------------------------------------------------------------


def _fmt(d: Decimal) -> str:
    return format(d, "f")


def usd(value: Decimal) -> dict[str, str]:
    """An `Amount` object in USD, its value as exact decimal text."""
    return {"value": _fmt(value), "currency": "USD"}


def order_body(
    req: OrderRequest,
    *,
    participate_dont_initiate: bool = False,
    good_till_time: datetime | None = None,
) -> dict[str, Any]:
    """CreateOrderRequest for an approved OrderRequest (`quantity` stays a Decimal: see dumps)."""
    body: dict[str, Any] = {
        "marketSlug": req.market_slug,
        "intent": req.intent.value,
        "type": req.order_type.value,
        "quantity": req.quantity,
        "tif": req.tif.value,
        "manualOrderIndicator": MANUAL_ORDER_INDICATOR_AUTOMATIC,
    }
    if req.order_type is OrderType.LIMIT:
        body["price"] = usd(req.price)
    if participate_dont_initiate:
        body["participateDontInitiate"] = True
    if good_till_time is not None:
        body["goodTillTime"] = good_till_time.isoformat().replace("+00:00", "Z")
    return body


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        # A Decimal left in a body is a JSON *number* (e.g. quantity): emit its exact text.
        if not o.is_finite():
            raise TypeError(f"cannot send non-finite number {o}")
        return orjson.Fragment(_fmt(o).encode())
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"cannot encode {type(o).__name__}")


def dumps(obj: Any) -> bytes:
    """Encode a request body; Decimals become exact JSON numbers, never floats."""
    return orjson.dumps(obj, default=_default)


# --- cattrs face ---------------------------------------------------------------------------------

converter = cattrs.Converter()
converter.register_structure_hook(BookSnapshot, lambda d, _: parse_book(d))
converter.register_structure_hook(Order, lambda d, _: parse_order(d))
converter.register_structure_hook(Execution, lambda d, _: parse_execution(d))
converter.register_structure_hook(TradePrint, lambda d, _: parse_trade(d))
converter.register_structure_hook(MarketInfo, lambda d, _: parse_market(d))
converter.register_structure_hook(TeamInfo, lambda d, _: parse_team(d))
converter.register_structure_hook(MappedMarketSide, lambda d, _: parse_mapped_side(d))
converter.register_structure_hook(Balance, lambda d, _: parse_balance(d))
converter.register_structure_hook(Bbo, lambda d, _: parse_bbo(d))
converter.register_structure_hook(ExchangePosition, lambda d, _: parse_position(d))
converter.register_structure_hook(Activity, lambda d, _: parse_activity(d))
converter.register_unstructure_hook(OrderRequest, order_body)


# --- websocket frames → events ---------------------------------------------------------------------
# Events are named in the past tense: something the exchange told us.


@attrs.frozen(slots=True)
class BookReplaced:
    """A full book: replaces whatever the consumer held for the market."""

    book: BookSnapshot
    request_id: str = ""  # the subscription that sent it (a re-sent one must answer by itself)


@attrs.frozen(slots=True)
class BboUpdated:
    bbo: Bbo


@attrs.frozen(slots=True)
class TradePrinted:
    trade: TradePrint


@attrs.frozen(slots=True)
class ExecutionReported:
    """One execution (deduplicated by exec id); `execution.order.cum_quantity` is authoritative."""

    execution: Execution


@attrs.frozen(slots=True)
class OrdersSnapshotted:
    """One page of the open-orders snapshot; the last page has `eof=True`."""

    orders: tuple[Order, ...]
    eof: bool
    request_id: str = ""


@attrs.frozen(slots=True)
class PositionChanged:
    market_slug: str
    before: ExchangePosition | None
    after: ExchangePosition | None
    entry_type: str = ""
    trade_id: str = ""
    update_time: datetime | None = None


@attrs.frozen(slots=True)
class BalancesSnapshotted:
    balances: tuple[Balance, ...]


@attrs.frozen(slots=True)
class BalanceChanged:
    before: Balance | None
    after: Balance | None
    entry_type: str = ""
    description: str = ""
    update_time: datetime | None = None


@attrs.frozen(slots=True)
class SubscriptionFailed:
    """An error frame (non-empty `error`) for one of our subscriptions."""

    request_id: str
    subscription_type: str
    message: str


class _Heartbeat:
    __slots__ = ()

    def __repr__(self) -> str:
        return "HEARTBEAT"


HEARTBEAT = _Heartbeat()

MarketEvent = BookReplaced | BboUpdated | TradePrinted
PrivateEvent = (
    ExecutionReported | OrdersSnapshotted | PositionChanged | BalancesSnapshotted | BalanceChanged
)


def _position_change(p: Mapping[str, Any]) -> PositionChanged:
    before = p.get("beforePosition")
    after = p.get("afterPosition")
    b = parse_position(before) if isinstance(before, dict) else None
    a = parse_position(after) if isinstance(after, dict) else None
    known = a or b
    slug = known.market_slug if known is not None else p.get("marketSlug") or ""
    if not slug:
        raise WireError("position change without market")
    return PositionChanged(
        market_slug=slug,
        before=b,
        after=a,
        entry_type=p.get("entryType") or "",
        trade_id=_id(p.get("tradeId")),
        update_time=parse_time(p.get("updateTime")),
    )


def _balance_change(p: Mapping[str, Any]) -> BalanceChanged:
    c = p.get("balanceChange", p)
    before, after = c.get("beforeBalance"), c.get("afterBalance")
    return BalanceChanged(
        before=parse_balance(before) if isinstance(before, dict) else None,
        after=parse_balance(after) if isinstance(after, dict) else None,
        entry_type=c.get("entryType") or "",
        description=c.get("description") or "",
        update_time=parse_time(c.get("updateTime")),
    )


def _event_of(msg: Any, received_at: float) -> Any:
    if type(msg) is not dict:
        raise WireError("frame is not a JSON object")
    # hot keys first; dispatch by payload key, never by subscriptionType
    p = msg.get("marketData")
    if p is not None:
        return BookReplaced(parse_book(p, received_at), _id(msg.get("requestId")))
    if "heartbeat" in msg:
        return HEARTBEAT
    err = msg.get("error")
    if err:  # "error": "" rides on normal data frames and means nothing
        return SubscriptionFailed(
            _id(msg.get("requestId")), msg.get("subscriptionType") or "", str(err)
        )
    p = msg.get("orderSubscriptionUpdate") or msg.get("orderUpdate")
    if p is not None:
        return ExecutionReported(parse_execution(p["execution"] if "execution" in p else p))
    p = msg.get("marketDataLite")
    if p is not None:
        return BboUpdated(parse_bbo(p, received_at))
    p = msg.get("trade")
    if p is not None:
        return TradePrinted(parse_trade(p))
    p = msg.get("orderSubscriptionSnapshot") or msg.get("ordersSnapshot")
    if p is not None:
        return OrdersSnapshotted(
            tuple(parse_order(o) for o in p.get("orders") or ()),
            bool(p.get("eof")),
            _id(msg.get("requestId")),
        )
    for key in ("positionSubscription", "positionSubscriptionUpdate", "positionUpdate"):
        p = msg.get(key)
        if p is not None:
            return _position_change(p)
    for key in ("accountBalancesSnapshot", "accountBalanceSubscriptionSnapshot"):
        p = msg.get(key)
        if p is not None:
            return BalancesSnapshotted(tuple(parse_balance(b) for b in p.get("balances") or ()))
    for key in (
        "accountBalancesUpdate",
        "accountBalanceSubscriptionUpdate",
        "accountBalanceUpdate",
    ):
        p = msg.get(key)
        if p is not None:
            return _balance_change(p)
    raise UnknownFrame(f"unknown frame keys: {sorted(msg)[:5]}")


# --- the markets socket's hot path -------------------------------------------------------------
# Almost every frame of the markets socket is a full book. `decode_market_frame` builds its
# BookSnapshot straight from orjson's dict, reading only the fields the bot uses, and makes the
# levels without the attrs constructor's overhead (a memo of the Decimals was measured and does
# not pay: `Decimal(text)` costs about what a dict lookup does). It takes only the shape it
# can vouch for: every level an object whose `px` is a decimal string or an `Amount` with a decimal-string `value`, `qty` a
# decimal string, the state OPEN, the slug a non-empty string. Anything else (another frame type,
# a halted book, an int or float quantity, a malformed level, invalid JSON) goes to
# `decode_frame`, so the errors, the warnings and what the stream counts are the full decoder's.
# tests/unit/polymarket/test_wire_hot.py proves the two agree (hypothesis, and every recorded
# real frame).

_OPEN = MarketState.OPEN
_new = object.__new__
_set_price = PriceLevel.__dict__["price"].__set__  # type: ignore[index]
_set_qty = PriceLevel.__dict__["qty"].__set__  # type: ignore[index]
# `_hot_levels` skips PriceLevel.__init__: valid only while it has nothing to run (else every
# frame takes the full decoder)
_PLAIN_LEVEL = (
    [(f.name, f.validator, f.converter) for f in attrs.fields(PriceLevel)]
    == [("price", None, None), ("qty", None, None)]
    and not hasattr(PriceLevel, "__attrs_pre_init__")
    and not hasattr(PriceLevel, "__attrs_post_init__")
)


class _Unusual(Exception):
    """The hot decoder met something it does not vouch for: the full decoder decides."""


def _hot_levels(
    raw: Any, new: Any = _new, cls: type[PriceLevel] = PriceLevel, dec: type[Decimal] = Decimal,
    set_price: Any = _set_price, set_qty: Any = _set_qty,
) -> tuple[PriceLevel, ...]:
    # (the defaults bind what the loop uses as locals: this runs ~20 times a frame)
    if raw is None:
        return ()
    if type(raw) is not list:
        raise _Unusual
    out: list[PriceLevel] = []
    append = out.append
    for lv in raw:
        if type(lv) is not dict:
            raise _Unusual
        px = lv.get("px")
        if type(px) is dict:
            px = px.get("value")
        qty = lv.get("qty")
        if type(px) is not str or type(qty) is not str:
            raise _Unusual  # floats, ints, nested amounts, missing fields: not ours to judge
        level = new(cls)
        set_price(level, dec(px))  # InvalidOperation: the caller falls back
        set_qty(level, dec(qty))
        append(level)
    return tuple(out)


def _hot_time(v: Any) -> datetime | None:
    """`parse_time(v)` for the exchange's own shapes (`…:SSZ`, `…:SS.fffZ`, `.ffffffZ`,
    `.fffffffffZ`): Python 3.11's fromisoformat reads them as parse_time does (UTC, the fraction
    truncated to µs); anything else goes to parse_time itself."""
    if (type(v) is str and v[-1:] == "Z" and len(v) in (20, 24, 27, 30) and v[10:11] == "T"
            and "." not in v[:19]):
        if len(v) == 20 or (v[19] == "." and v[20:-1].isascii() and v[20:-1].isdigit()):
            try:
                return datetime.fromisoformat(v)
            except ValueError:
                pass
    return parse_time(v)


def decode_market_frame(data: str | bytes, received_at: float = 0.0) -> Any:
    """`decode_frame(data, received_at)` for the markets socket, quicker for a plain book frame
    (same event, same errors: see the comment above)."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return decode_frame(data, received_at)
    if _PLAIN_LEVEL and type(msg) is dict:
        p = msg.get("marketData")
        if type(p) is dict:
            slug = p.get("marketSlug")
            if type(slug) is str and slug and p.get("state") == "MARKET_STATE_OPEN":
                try:
                    bids = _hot_levels(p.get("bids"))
                    offers = _hot_levels(p.get("offers"))
                    when = _hot_time(p.get("transactTime"))
                except Exception:  # _Unusual, InvalidOperation, a bad time: the full decoder
                    pass  # says what it is (and raises, logs and counts as it always did)
                else:
                    book = BookSnapshot(slug, bids, offers, _OPEN, when, received_at)
                    return BookReplaced(book, _id(msg.get("requestId")))
    return decode_frame(data, received_at)


def decode_frame(data: str | bytes, received_at: float = 0.0, *, exact: bool = False) -> Any:
    """One websocket frame → an event, `HEARTBEAT`, or WireError/UnknownFrame.

    `exact=True` goes straight to the stdlib's exact decoder: the private socket's frames
    (orders on partial-contract markets, balances) usually carry fractional JSON numbers, where
    orjson-then-re-decode would pay twice.
    """
    try:
        if exact:
            try:
                raw = loads_exact(data)
            except ValueError as exc:
                raise WireError(f"invalid JSON: {exc}") from None
            return _event_of(raw, received_at)
        return decode_with(data, lambda m: _event_of(m, received_at))
    except WireError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise WireError(f"malformed frame: {exc!r}") from None
