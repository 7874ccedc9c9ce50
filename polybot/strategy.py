"""The signal engine: a market's book against its fair value, net of fees.

`evaluate` is a pure function called by the composition root on every book or fair-value change of
one market (it sits on the hot path from book frame to order, so it only walks a few levels).

For fair probability q of YES, a taker fee f(p) = Θ·p·(1−p) and the minimum edge e:

- **buy YES** (BUY_LONG) lifting offers at a while ``q − a − f(a) >= e``;
- **buy NO** (BUY_SHORT, i.e. sell YES at the bid b, the NO costing 1 − b) while
  ``(1 − q) − (1 − b) − f(b) >= e``;
- holding YES, a bid that clears the buy-NO test is first used to **close** (SELL_LONG); holding
  NO, an offer that clears the buy-YES test closes (SELL_SHORT). While a position is held only the
  close is signalled on that side: opening the other side waits until the position is flat,
  because how the exchange nets an opening order through an opposite position is undocumented.

The test is applied to every level (the marginal price), so the signal's limit is the worst level
that still has the edge and its size is the total available up to that limit. The edge it carries
is the marginal one (the least favourable contract of the order). Sizing is not done here: the
risk gate turns a signal into an order.

No signal at all from an untrusted book, a missing fair value or an untrusted odds stream, or a
market that is not OPEN. Opening signals also stop `stop_before_start_minutes` before the game's
start (whatever `trade_in_play` says) and, unless `trade_in_play`, from the start on; closing
signals are always allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from polybot.model import (
    ONE,
    ZERO,
    BookSnapshot,
    FairValue,
    Intent,
    MarketInfo,
    MarketState,
    MarketStatus,
    Position,
    PriceLevel,
    Side,
    Signal,
    ceil_to_step,
    floor_to_step,
)
from polybot.pricing import fee_per_contract, taker_theta


@attrs.frozen(slots=True)
class StrategyParams:
    min_edge: Decimal = Decimal("0.02")
    trade_in_play: bool = False
    stop_before_start_minutes: Decimal | int = 0
    # the blackout as a timedelta, made once (`opening_allowed` runs on every decision)
    stop_before: timedelta = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "stop_before",
                           timedelta(minutes=float(self.stop_before_start_minutes)))


def edge_buy_yes(q: Decimal, price: Decimal, theta: Decimal) -> Decimal:
    """Edge of buying YES at `price`: q − p − fee(p)."""
    return q - price - fee_per_contract(price, theta)


def edge_buy_no(q: Decimal, bid: Decimal, theta: Decimal) -> Decimal:
    """Edge of buying NO by selling YES at `bid`: (1 − q) − (1 − b) − fee(b)."""
    return (ONE - q) - (ONE - bid) - fee_per_contract(bid, theta)


def opening_allowed(
    market: MarketInfo, params: StrategyParams, now: datetime, fallback_start: datetime | None = None
) -> bool:
    """False inside the pre-start blackout and, unless trading in play, after the start.

    The start comes from the market's Event (`market.start_time`); `fallback_start` (the
    OpticOdds fixture's start) is used only when the exchange gave none. With neither, opening
    stops (fail closed): the blackout and the in-play rule cannot be enforced without it.
    """
    start = market.start_time if market.start_time is not None else fallback_start
    if start is None:
        return False
    if now >= start:
        return params.trade_in_play
    return now < start - params.stop_before


def _sweep(
    levels: Iterable[PriceLevel], q: Decimal, theta: Decimal, min_edge: Decimal, *, offers: bool
) -> tuple[Decimal, Decimal, Decimal] | None:
    """(marginal price, size up to it, marginal edge) of the levels that clear the test."""
    limit: Decimal | None = None
    size = ZERO
    edge = ZERO
    no = ONE - q
    for level in levels:
        p = level.price
        # edge_buy_yes / edge_buy_no, written out (two calls a level on every frame): the same
        # operations in the same order, fee = theta * p * (1 - p) as `fee_per_contract`
        if offers:
            e = q - p - theta * p * (ONE - p)
        else:
            e = no - (ONE - p) - theta * p * (ONE - p)
        if e < min_edge:
            break  # levels are best first, so the edge only shrinks from here
        limit = level.price
        size += level.qty
        edge = e
    if limit is None:
        return None
    return limit, size, edge


def _signal(
    market: MarketInfo,
    intent: Intent,
    sweep: tuple[Decimal, Decimal, Decimal],
    levels: tuple[PriceLevel, ...],
    fair: FairValue,
    created_at: float,
) -> Signal | None:
    limit, size, edge = sweep
    # A level off the market's tick (tick changed under us) is rounded to the side that never
    # pays more than the tested price; the size is then recounted up to the rounded limit.
    if intent.book_side is Side.BUY:
        on_tick = floor_to_step(limit, market.tick)
        if on_tick != limit:
            size = sum((lv.qty for lv in levels if lv.price <= on_tick), ZERO)
    else:
        on_tick = ceil_to_step(limit, market.tick)
        if on_tick != limit:
            size = sum((lv.qty for lv in levels if lv.price >= on_tick), ZERO)
    if size <= 0:
        return None
    return Signal(
        market_slug=market.slug,
        intent=intent,
        limit_price=on_tick,
        size_available=size,
        fair_q=fair.q,
        edge=edge,
        fair_value=fair,
        created_at=created_at,
    )


FINAL_STATUSES = frozenset({MarketStatus.CLOSED, MarketStatus.RESOLVING, MarketStatus.RESOLVED})


def evaluate(
    book: BookSnapshot | None,
    fair: FairValue | None,
    market: MarketInfo,
    position: Position | None,
    params: StrategyParams,
    now: datetime,
    *,
    book_trusted: bool,
    fair_trusted: bool,
    created_at: float = 0.0,
    fallback_start: datetime | None = None,
) -> list[Signal]:
    """Signals for one market, closing ones first. `now` must be timezone-aware (as start times are).

    `book_trusted` comes from `BookStore.is_trusted`; `fair_trusted` is false while the odds stream
    feeding this fair value is dead or being rebuilt. `created_at` stamps the signals (clock time).
    `fallback_start` is the OpticOdds fixture's start time, used when the market has none.
    """
    if book is None or fair is None or not book_trusted or not fair_trusted:
        return []
    # The book's state is the market's live state (the markets stream carries every change);
    # the metadata status, refreshed periodically, only vetoes for good once the market is over.
    if book.state is not MarketState.OPEN or market.status in FINAL_STATUSES:
        return []
    bid, offer = book.best_bid, book.best_offer
    if bid is not None and offer is not None and bid.price >= offer.price:
        return []  # a crossed book is not a market we can reason about; wait for the next frame
    q = fair.q
    theta = taker_theta(market)
    net = position.net_qty if position is not None else ZERO
    can_open = opening_allowed(market, params, now, fallback_start)
    signals: list[Signal] = []

    # The bid side closes a long, else opens (or adds to) a short; the offer side closes a short,
    # else opens (or adds to) a long.
    sides = (
        (book.bids, False, net > 0, Intent.SELL_LONG, Intent.BUY_SHORT),
        (book.offers, True, net < 0, Intent.SELL_SHORT, Intent.BUY_LONG),
    )
    for levels, offers, closes, close_intent, open_intent in sides:
        sweep = _sweep(levels, q, theta, params.min_edge, offers=offers)
        if sweep is None:
            continue
        if closes:
            intent = close_intent
        elif can_open:
            intent = open_intent
        else:
            continue
        sig = _signal(market, intent, sweep, levels, fair, created_at)
        if sig is not None:
            signals.append(sig)

    if len(signals) > 1:
        signals.sort(key=lambda s: s.intent.is_opening)  # closing first
    return signals
