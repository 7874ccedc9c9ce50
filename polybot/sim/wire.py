"""Encode the local exchange's objects as Polymarket US wire JSON (reference §1, §3, §4).

Conventions, all deliberate because clients depend on them:
- Money and prices are ``Amount`` objects ``{"value": "0.5500", "currency": "USD"}`` with
  4-decimal strings (as observed on the live books); quantities in books, executions and
  positions are 4-decimal strings; order ``quantity``/``cumQuantity``/``leavesQuantity`` are JSON
  numbers (proto doubles).
- 64-bit integers are strings (``netPosition``, team ``id`` of sports teams); 32-bit ints are
  numbers (``marketId`` of a market side, ``bidDepth``). Market, event and market-side ``id`` are
  strings, as in the docs' schemas (the Python SDK types them int; it does not check).
- Times are RFC 3339 UTC with milliseconds and a ``Z``.
- Enums are the full string names; absent/unknown values are omitted rather than sent as
  ``..._UNSPECIFIED``.
- Account balances are JSON numbers, not Amounts.
- ``commissionNotionalCollected`` is positive for a fee charged and negative for a rebate (the
  project's documented convention; the real sign is undocumented).
- ``accountBalanceChange`` activities carry both the flat fields the docs show and the
  ``transactions`` list the SDK types declare.

Everything here is a pure function of engine values (plus lookups through the `Exchange` for
market metadata); nothing reads a clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from polybot.model import ZERO, Intent, OrderState
from polybot.sim.engine import (
    Activity,
    Balance,
    BalanceChanged,
    Bbo,
    BookView,
    Event,
    Exchange,
    League,
    Market,
    MarketSide,
    PositionChanged,
    SimExecution,
    SimOrder,
    SimPosition,
    Team,
    TradePrinted,
)

_Q4 = Decimal("0.0001")
_END_AFTER_START = timedelta(days=14)  # captured moneyline: endDate two weeks after the game
JSON = dict[str, Any]


def dec4(value: Decimal) -> str:
    return str(value.quantize(_Q4, rounding=ROUND_HALF_EVEN))


def amount(value: Decimal | None) -> JSON | None:
    if value is None:
        return None
    return {"value": dec4(value), "currency": "USD"}


def number(value: Decimal) -> int | float:
    """A JSON number for a Decimal (integral values print without a fraction)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def two_sig_figs_down(value: Decimal) -> str:
    """Resting size as the bbo reports it: rounded down to 2 significant figures, "0" if none."""
    if value <= 0:
        return "0"
    exponent = value.adjusted() - 1  # keep two significant digits
    quantum = Decimal(1).scaleb(exponent)
    rounded = value.quantize(quantum, rounding=ROUND_DOWN)
    text = format(rounded.normalize(), "f")
    return text


def _compact(d: JSON) -> JSON:
    """Drop absent (None) fields, as the gateway omits unset values."""
    return {k: v for k, v in d.items() if v is not None}


# --- reference data ---------------------------------------------------------------------------


def team(t: Team) -> JSON:
    return _compact(
        {
            "id": t.team_id,
            "name": t.name,
            "abbreviation": t.abbreviation,
            "displayAbbreviation": t.abbreviation,
            "league": t.league or None,
            "ordering": t.ordering or None,
            "safeName": t.name,
            "providerIds": [{"provider": p, "providerId": i} for p, i in t.provider_ids],
        }
    )


def market_side(side: MarketSide, market: Market, teams: dict[int, Team], bbo: Bbo | None) -> JSON:
    quote = None
    if bbo is not None:
        # The side's quote is the price to buy that side: YES at the best ask, NO at 1 - best bid.
        if side.long and bbo.best_ask is not None:
            quote = bbo.best_ask
        elif not side.long and bbo.best_bid is not None:
            quote = 1 - bbo.best_bid
    t = teams.get(side.team_id) if side.team_id is not None else None
    return _compact(
        {
            "id": str(side.side_id),
            "marketSideType": "MARKET_SIDE_TYPE_INSTRUMENT",  # as in the captures
            "identifier": side.identifier or None,
            "description": side.description,
            "price": dec4(quote) if quote is not None else None,
            "marketId": market.market_id,
            "long": side.long,
            "teamId": side.team_id,
            "team": team(t) if t is not None else None,
            "quote": amount(quote),
            "tradable": market.active,
            "createdAt": timestamp(market.created_at),
            "updatedAt": timestamp(market.created_at),
        }
    )


def market(m: Market, ex: Exchange, event: Event | None = None) -> JSON:
    event = event if event is not None else ex.event_by_id(m.event_id)
    teams = {t.team_id: t for t in event.teams} if event is not None else {}
    bbo = ex.bbo(m.slug)
    sides = [market_side(s, m, teams, bbo) for s in m.sides]
    # The real Market object has no eventId/eventSlug (captures): a client learns the event only
    # from the Event that lists the market. `startDate` is the listing time, not the game's.
    return _compact(
        {
            "id": str(m.market_id),
            "slug": m.slug,
            "question": m.question or m.title,
            "title": m.title,
            "description": m.question or m.title,
            "category": m.category,
            "startDate": timestamp(m.created_at),
            "endDate": timestamp(m.start_time + _END_AFTER_START if m.start_time else None),
            "createdAt": timestamp(m.created_at),
            "updatedAt": timestamp(m.created_at),
            "gameStartTime": timestamp(m.start_time) if m.serves_game_start_time else None,
            "outcomes": json.dumps([s.description for s in m.sides]),
            "outcomePrices": json.dumps([dec4(bbo.best_bid) if bbo.best_bid is not None else "0",
                                         dec4(bbo.best_ask) if bbo.best_ask is not None else "0"]),
            "active": m.active,
            "closed": m.closed,
            "archived": False,
            "hidden": False,
            "status": m.status.value,
            "ep3Status": m.state.value,
            "orderPriceMinTickSize": number(m.tick),
            "minimumTradeQty": number(m.min_qty),
            "feeCoefficient": number(m.fee_coefficient) if m.fee_coefficient is not None else None,
            "sportsMarketType": m.sports_market_type or None,
            "marketSides": sides,
            "bestBidQuote": amount(bbo.best_bid),
            "bestAskQuote": amount(bbo.best_ask),
            "volume": number(m.stats.notional_traded),
            "volumeNum": number(m.stats.notional_traded),
            "liquidity": 0,
            "comboEnabled": False,
        }
    )


def event(e: Event, ex: Exchange) -> JSON:
    markets = [ex.markets[s] for s in e.market_slugs if s in ex.markets]
    return _compact(
        {
            "id": str(e.event_id),
            "slug": e.slug,
            "ticker": e.slug,
            "title": e.title,
            "description": e.description or e.title,
            "category": "sports",
            "subcategory": e.league or None,
            "seriesSlug": e.series_slug or e.league or None,
            # the captured Event's startDate equals its startTime (unlike a Market's)
            "startDate": timestamp(e.start_time),
            "startTime": timestamp(e.start_time),
            "createdAt": timestamp(e.created_at),
            "updatedAt": timestamp(e.created_at),
            "gameId": e.event_id,
            "participants": [],
            "eventDate": e.start_time.date().isoformat() if e.start_time else None,
            "endDate": timestamp(e.start_time),
            "active": not e.closed,
            "closed": e.closed,
            "archived": False,
            "hidden": False,
            "live": e.live,
            "ended": e.ended,
            "markets": [market(m, ex, e) for m in markets],
            "teams": [team(t) for t in e.teams],
        }
    )


def league(lg: League) -> JSON:
    """A `gateway.sports.v2.League`: int32 ids are JSON numbers (docs' schema; the captured
    event's embedded league object agrees)."""
    return _compact(
        {
            "id": lg.league_id,
            "name": lg.name,
            "slug": lg.slug,
            "sportId": lg.sport_id,
            "tagId": lg.tag_id,
            "isOperational": lg.is_operational,
            "activeSeriesId": lg.active_series_id,
            "ordering": lg.ordering or None,
            "abbreviation": lg.abbreviation or None,
            "createdAt": timestamp(lg.created_at),
        }
    )


def mapped_market_sides(e: Event, ex: Exchange, partner: str, external_id: str) -> list[JSON]:
    out: list[JSON] = []
    for slug in e.market_slugs:
        m = ex.markets.get(slug)
        if m is None:
            continue
        for side in m.sides:
            if not side.external_selection:
                continue
            out.append(
                {
                    "marketSideId": side.side_id,
                    "marketId": m.market_id,
                    "eventId": e.event_id,
                    "externalEventId": external_id,
                    "externalMarketType": m.external_market_type,
                    "externalNormalizedSelection": side.external_selection,
                    "externalSelectionLine": "",
                    "externalPoints": "",
                }
            )
    return out


# --- market data ------------------------------------------------------------------------------


def _levels(levels) -> list[JSON]:
    return [{"px": amount(lv.price), "qty": dec4(lv.qty)} for lv in levels]


def book(b: BookView) -> JSON:
    s = b.stats
    stats = _compact(
        {
            "lastTradePx": amount(s.last_trade_px),
            "lastTradeQty": dec4(s.last_trade_qty) if s.last_trade_qty is not None else None,
            "openPx": amount(s.open_px),
            "highPx": amount(s.high_px),
            "lowPx": amount(s.low_px),
            "settlementPx": amount(b.settlement),
            "sharesTraded": dec4(s.shares_traded),
            "notionalTraded": amount(s.notional_traded),
            "openInterest": dec4(s.open_interest),
        }
    )
    return _compact(
        {
            "marketSlug": b.market_slug,
            "bids": _levels(b.bids),
            "offers": _levels(b.offers),
            "state": b.state.value,
            "stats": stats,
            "transactTime": timestamp(b.transact_time),
        }
    )


def bbo(b: Bbo) -> JSON:
    return _compact(
        {
            "marketSlug": b.market_slug,
            "currentPx": amount(b.current_px),
            "lastTradePx": amount(b.last_trade_px),
            "settlementPx": amount(b.settlement_px),
            "bestBid": amount(b.best_bid),
            "bestAsk": amount(b.best_ask),
            "bidDepth": b.bid_depth,
            "askDepth": b.ask_depth,
            "bidShares": two_sig_figs_down(b.bid_shares),
            "askShares": two_sig_figs_down(b.ask_shares),
            "sharesTraded": dec4(b.shares_traded),
            "openInterest": dec4(b.open_interest),
            "longQuote": amount(b.best_ask),
            "shortQuote": amount(1 - b.best_bid) if b.best_bid is not None else None,
            "state": b.state.value,
            "transactTime": timestamp(b.transact_time),
        }
    )


def trade_print(t: TradePrinted) -> JSON:
    return {
        "marketSlug": t.slug,
        "price": amount(t.price),
        # The documented oddity: quantity is Amount-shaped, its value the contract count.
        "quantity": {"value": dec4(t.qty), "currency": "USD"},
        "tradeTime": timestamp(t.time),
        "maker": {"side": t.maker_side.value, "intent": t.maker_intent.value},
        "taker": {"side": t.taker_side.value, "intent": t.taker_intent.value},
    }


# --- orders -----------------------------------------------------------------------------------


def market_metadata(slug: str, ex: Exchange) -> JSON:
    m = ex.markets.get(slug)
    if m is None:
        return {"slug": slug}
    e = ex.event_by_id(m.event_id)
    long_side = next((s for s in m.sides if s.long), None)
    t = None
    if e is not None and long_side is not None and long_side.team_id is not None:
        t = next((x for x in e.teams if x.team_id == long_side.team_id), None)
    return _compact(
        {
            "slug": slug,
            "icon": "",
            "title": m.title,
            "outcome": long_side.description if long_side is not None else None,
            "eventSlug": e.slug if e is not None else None,
            "eventId": str(m.event_id),
            "teamId": t.team_id if t is not None else None,
            "team": team(t) if t is not None else None,
        }
    )


def order(o: SimOrder, ex: Exchange) -> JSON:
    outcome_side, action = _outcome_action(o.intent)
    return _compact(
        {
            "id": o.order_id,
            "marketSlug": o.market_slug,
            "side": o.side.value,
            "type": o.type.value,
            "price": amount(o.price),
            "quantity": number(o.quantity),
            "cumQuantity": number(o.cum_quantity),
            "leavesQuantity": number(o.leaves_quantity),
            "tif": o.tif.value,
            "goodTillTime": timestamp(o.good_till_time),
            "intent": o.intent.value if o.intent is not Intent.UNKNOWN else None,
            "outcomeSide": outcome_side,
            "action": action,
            "marketMetadata": market_metadata(o.market_slug, ex),
            "state": o.state.value if o.state is not OrderState.UNKNOWN else None,
            "avgPx": amount(o.avg_px),
            "cashOrderQty": amount(o.cash_order_qty),
            "insertTime": timestamp(o.insert_time),
            "createTime": timestamp(o.create_time),
            "commissionNotionalTotalCollected": amount(o.commission_total),
            "participateDontInitiate": o.post_only or None,
            "manualOrderIndicator": o.manual_order_indicator or None,
        }
    )


def _outcome_action(intent: Intent) -> tuple[str | None, str | None]:
    return {
        Intent.BUY_LONG: ("OUTCOME_SIDE_YES", "ORDER_ACTION_BUY"),
        Intent.SELL_LONG: ("OUTCOME_SIDE_YES", "ORDER_ACTION_SELL"),
        Intent.BUY_SHORT: ("OUTCOME_SIDE_NO", "ORDER_ACTION_BUY"),
        Intent.SELL_SHORT: ("OUTCOME_SIDE_NO", "ORDER_ACTION_SELL"),
    }.get(intent, (None, None))


def execution(x: SimExecution, ex: Exchange) -> JSON:
    return _compact(
        {
            "id": x.exec_id,
            "order": order(x.order, ex),
            "lastShares": dec4(x.last_shares),
            "lastPx": amount(x.last_px),
            "type": x.type.value,
            "text": x.text or None,
            "orderRejectReason": x.reject_reason.value if x.reject_reason else None,
            "transactTime": timestamp(x.transact_time),
            "tradeId": x.trade_id or None,
            "aggressor": x.aggressor,
            "commissionNotionalCollected": amount(x.commission),
            "unsolicitedCancelReason": (
                x.unsolicited_cancel_reason.value if x.unsolicited_cancel_reason else None
            ),
        }
    )


# --- portfolio and account --------------------------------------------------------------------


def _int_str(value: Decimal) -> str:
    """Deprecated rounded int64 twin of a decimal quantity."""
    return str(int(value.to_integral_value(rounding=ROUND_HALF_EVEN)))


def position(p: SimPosition, ex: Exchange) -> JSON:
    mark = None
    if p.market_slug in ex.markets:
        m = ex.markets[p.market_slug]
        mark = m.settlement if m.settlement is not None else ex.bbo(p.market_slug).current_px
    if mark is None and p.net != 0:
        mark = (p.cost / abs(p.net)) if p.net > 0 else 1 - p.cost / abs(p.net)
    cash_value = ZERO
    if mark is not None:
        cash_value = p.net * mark if p.net > 0 else -p.net * (1 - mark)
    available = abs(p.net)
    avg = p.avg_px
    return _compact(
        {
            "netPosition": _int_str(p.net),
            "qtyBought": _int_str(p.qty_bought),
            "qtySold": _int_str(p.qty_sold),
            "bodPosition": _int_str(p.bod_position),
            "qtyAvailable": _int_str(available),
            "netPositionDecimal": dec4(p.net),
            "qtyBoughtDecimal": dec4(p.qty_bought),
            "qtySoldDecimal": dec4(p.qty_sold),
            "bodPositionDecimal": dec4(p.bod_position),
            "qtyAvailableDecimal": dec4(available),
            "cost": amount(p.cost),
            "baseCost": amount(p.cost),
            "realized": amount(p.realized),
            "fees": amount(p.fees),
            "avgPx": amount(avg),
            "costPerShare": amount(avg),
            "cashValue": amount(cash_value),
            "expired": p.expired,
            "updateTime": timestamp(p.update_time),
            "marketMetadata": market_metadata(p.market_slug, ex),
        }
    )


def balance(b: Balance) -> JSON:
    return _compact(
        {
            "currentBalance": number(b.current_balance),
            "currency": b.currency,
            "lastUpdated": timestamp(b.last_updated),
            "buyingPower": number(b.buying_power),
            "assetNotional": number(b.asset_notional),
            "assetAvailable": number(b.asset_available),
            "pendingCredit": number(b.pending_credit),
            "openOrders": number(b.open_orders),
            "unsettledFunds": number(b.unsettled_funds),
            "pendingWithdrawals": [],
            "marginRequirement": number(b.margin_requirement),
            "balanceReservation": 0,
            "availableToWithdraw": number(max(ZERO, b.buying_power)),
        }
    )


def position_change(ev: PositionChanged, ex: Exchange) -> JSON:
    # A flat side is null: beforePosition is null when a position opens, afterPosition when it
    # closes (reference §4.5), even if the engine hands us a zero position.
    before = ev.before if ev.before is not None and ev.before.net != 0 else None
    after = ev.after if ev.after is not None and ev.after.net != 0 else None
    return {
        "beforePosition": position(before, ex) if before is not None else None,
        "afterPosition": position(after, ex) if after is not None else None,
        "updateTime": timestamp(ev.time),
        "entryType": ev.entry_type.value,
        "tradeId": ev.trade_id,
        "referenceId": ev.trade_id,
        "description": ev.description,
        "allocationGroupId": "",
        "transferReferenceTradeIds": [],
        "shortTransfer": False,
        "updateTradeDate": ev.time.date().isoformat(),
    }


def balance_change(ev: BalanceChanged) -> JSON:
    return {
        "beforeBalance": balance(ev.before),
        "afterBalance": balance(ev.after),
        "description": ev.description,
        "updateTime": timestamp(ev.time),
        "modifiedSecurityId": ev.slug,
        "entryType": ev.entry_type.value,
        "accountName": ev.account_id,
        "id": ev.change_id,
    }


def activity(a: Activity, ex: Exchange) -> JSON:
    out: JSON = {"type": a.type.value}
    if a.trade is not None:
        t = a.trade
        out["trade"] = {
            "id": t.trade_id,
            "marketSlug": t.market_slug,
            "state": t.state.value,
            "createTime": timestamp(t.create_time),
            "updateTime": timestamp(t.update_time),
            "price": amount(t.price),
            "qty": _int_str(t.qty),
            "qtyDecimal": dec4(t.qty),
            "isAggressor": t.is_aggressor,
            "costBasis": amount(t.cost_basis),
            "realizedPnl": amount(t.realized_pnl),
        }
    if a.resolution is not None:
        r = a.resolution
        out["positionResolution"] = {
            "marketSlug": r.market_slug,
            "beforePosition": {
                "netPosition": _int_str(r.before_position),
                "netPositionDecimal": dec4(r.before_position),
            },
            "afterPosition": {
                "netPosition": _int_str(r.after_position),
                "netPositionDecimal": dec4(r.after_position),
            },
            "updateTime": timestamp(r.update_time),
            "tradeId": r.trade_id,
            "side": r.side.value,
        }
    if a.balance_change is not None:
        c = a.balance_change
        tx = {
            "transactionId": c.transaction_id,
            "status": c.status,
            "amount": amount(c.amount),
            "updateTime": timestamp(c.update_time),
            "createTime": timestamp(c.create_time),
        }
        transactions = [tx]
        if c.refunded:
            # the part given back, as an entry of its own reversing part of the change (the
            # reference does not document this shape; the bot reads refunds from here)
            transactions.append({
                "transactionId": f"{c.transaction_id}-refund",
                "status": c.status,
                "amount": amount(-c.refunded if c.amount > 0 else c.refunded),
                "updateTime": timestamp(c.update_time),
                "createTime": timestamp(c.update_time),
            })
        out["accountBalanceChange"] = {**tx, "transactions": transactions}
    return out
