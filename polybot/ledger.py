"""The bot's books of account: cash, positions, realized P&L, fees, marks and equity.

One writer (the executor) feeds it executions; everything else reads it. Pure arithmetic, no I/O:
the store persists what `drain_changes` hands it and `Ledger.restore` rebuilds it at start.

Cash model of the fully collateralised exchange (prices are YES prices p, settlement value v):

- opening long (BUY_LONG at p) costs p per contract; opening short (BUY_SHORT at p) costs 1 − p;
- closing long (SELL_LONG at p) returns p; closing short (SELL_SHORT at p) returns 1 − p;
- settlement pays v per long contract and 1 − v per short contract.

The position is one signed net YES quantity per market, so cash follows the *change of the net
position*, not the intent's name: a SELL_LONG larger than the long closes the long at p and opens
a short with the rest at 1 − p (a flip), exactly like a BUY_SHORT of the same size would. One long
and one short contract together are worth exactly $1, which is why netting them releases $1.

Traps this module defuses:

- **Double booking.** The exchange reports a fill on the order stream and again in a snapshot or
  a query. Fills are booked by the *growth* of each order's cumulative filled quantity: a report
  whose cum qty is not above what is already booked books nothing. A reconciliation correction
  can advance the booked quantity (`mark_booked`) so a late execution is not booked twice.
- **Missed executions.** When the growth differs from the execution's `last_shares` (an execution
  was missed), the growth's price is derived from the order's average price so cash stays exact.
- **Marks to zero.** Equity marks a long at the best bid and a short at the best offer; an empty or
  untrusted book keeps the last trusted mark, and a position never marked yet is valued at its
  average cost. A settled market is valued at its settlement value.
- **A stub quote halting the day.** The best price of any size is a fine display mark but a bad
  one to halt on: after maintenance the first bid may be 1 contract at 0.01. Halts read
  `halt_equity`, where each position is valued at its *halt mark*: the VWAP of walking the side
  it would close into for its whole size, any size beyond the book at the last trusted halt mark;
  after a continuity loss (`on_continuity_lost`) a changed halt mark counts only once it has held
  for `HALT_HOLD_SECONDS` (see `_HaltMark`). Its sum is kept as a running total, updated when one
  position's halt value changes, so no book frame sums every position.

Realized P&L is gross of fees; fees (positive = charged, negative = rebate) are kept separately and
already taken out of cash. Deposits and withdrawals are transfers: they move cash but are never
P&L (`pnl` is net of them). The trading day, its start equity and the high-water mark are not the
ledger's: the trading state (`polybot.trading_state`) owns them, and the trading state shifts its
baselines by each transfer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

import attrs

from polybot.model import ONE, ZERO, BookSnapshot, Execution, Fill, Intent, Position

log = logging.getLogger(__name__)

# After a continuity loss a changed halt mark counts only once it has held this long (seconds).
HALT_HOLD_SECONDS = 3.0


class LedgerError(ValueError):
    """An execution or correction the ledger cannot book (bad input; nothing was changed)."""


@attrs.frozen(slots=True)
class MarketBook:
    """Everything the ledger knows about one market (persisted as one row)."""

    market_slug: str
    net_qty: Decimal = ZERO
    avg_price: Decimal = ZERO  # average YES price of the open position (paid if long, got if short)
    realized_pnl: Decimal = ZERO  # gross of fees
    fees: Decimal = ZERO
    mark_bid: Decimal | None = None  # last trusted best bid
    mark_offer: Decimal | None = None  # last trusted best offer
    settled_value: Decimal | None = None
    # False for a position adopted from the exchange without its cost: avg_price is then a
    # placeholder (0) and the risk caps count the position at qty x $1 until a trade prices it
    cost_known: bool = True
    # the last trusted halt mark (persisted: a restart must not take a stub quote the last life
    # displayed as the mark its halts are measured at)
    halt_mark: Decimal | None = None

    def to_position(self) -> Position:
        return Position(self.market_slug, self.net_qty, self.avg_price, self.realized_pnl,
                        cost_known=self.cost_known)


# `update_marks` runs for most book frames (and `_keep_halt_px` for a held market's): there
# `attrs.evolve` costs ~2 µs, the constructor with every field named ~0.8. Import fails if
# MarketBook's fields change without `_marked`.
_MARKET_BOOK_FIELDS = ("market_slug", "net_qty", "avg_price", "realized_pnl", "fees", "mark_bid",
                       "mark_offer", "settled_value", "cost_known", "halt_mark")
if tuple(f.name for f in attrs.fields(MarketBook)) != _MARKET_BOOK_FIELDS:
    raise ImportError("ledger: MarketBook's fields changed; update _marked")


def _marked(m: MarketBook, bid: Decimal | None, offer: Decimal | None,
            halt_mark: Decimal | None) -> MarketBook:
    """`attrs.evolve(m, mark_bid=bid, mark_offer=offer, halt_mark=halt_mark)`, quicker."""
    return MarketBook(m.market_slug, m.net_qty, m.avg_price, m.realized_pnl, m.fees, bid, offer,
                      m.settled_value, m.cost_known, halt_mark)


@attrs.frozen(slots=True)
class OrderBooking:
    """What has been booked for one order: cum qty, its notional (Σ qty × price) and its fees."""

    order_id: str
    cum_qty: Decimal = ZERO
    notional: Decimal = ZERO
    fees: Decimal = ZERO
    market_slug: str = ""  # "" when not known (a booking stored before this was kept)


@attrs.frozen(slots=True)
class LedgerState:
    """A ledger's full state (from `snapshot`) or the part changed since the last drain."""

    cash: Decimal
    initial_cash: Decimal
    net_transfers: Decimal = ZERO
    markets: tuple[MarketBook, ...] = ()
    bookings: tuple[OrderBooking, ...] = ()


@attrs.define(slots=True)
class _HaltMark:
    """The halt mark of one market's position (in memory; rebuilt from the marks at restore).

    `px` is the last trusted halt mark (a YES price per contract) and `value` the position's
    value at it, the amount counted in the ledger's running total. While `lost_at` is set the
    market is on probation after a continuity loss: each trusted frame's candidate mark goes to
    `seen` (clock time, price) and `px` moves only to a price the candidates have held for
    `HALT_HOLD_SECONDS`: the whole window at one price ends the probation; a window wholly below
    (above) `px` moves `px` to its highest (lowest) price, the level the mark has been at or past
    for the whole window, and the probation goes on; a window on both sides of `px` changes nothing.
    """

    px: Decimal
    value: Decimal = ZERO
    lost_at: float | None = None
    seen: deque[tuple[float, Decimal]] = attrs.field(factory=deque)


def _mark_of(m: MarketBook) -> Decimal | None:
    """A position's display mark as a YES price (None when flat): the settlement value once
    settled, else the bid for a long and the offer for a short, else (no quote yet) its average
    price. The one place this choice is made (`mark_price`, `_value`)."""
    if m.net_qty == 0:
        return None
    if m.settled_value is not None:
        return m.settled_value
    quote = m.mark_bid if m.net_qty > 0 else m.mark_offer
    return m.avg_price if quote is None else quote


def _value(m: MarketBook) -> Decimal:
    """A market's position at its display mark: long qty × mark, short |qty| × (1 − mark)."""
    mark = _mark_of(m)
    if mark is None:
        return ZERO
    return m.net_qty * mark if m.net_qty > 0 else -m.net_qty * (ONE - mark)


def _halt_value(net_qty: Decimal, px: Decimal) -> Decimal:
    return net_qty * px if net_qty > 0 else -net_qty * (ONE - px)


def _walk_px(net_qty: Decimal, book: BookSnapshot, last: Decimal) -> Decimal:
    """VWAP (YES price) of closing `net_qty` into `book`; size beyond the book at `last`."""
    want = abs(net_qty)
    notional = ZERO
    left = want
    for level in (book.bids if net_qty > 0 else book.offers):
        if left <= 0:
            break
        take = level.qty if level.qty < left else left
        if take <= 0:
            continue
        notional += take * level.price
        left -= take
    if left == want:
        return last  # nothing on that side: the last trusted mark, exactly
    return (notional + left * last) / want


class Ledger:
    def __init__(self, cash: Decimal = ZERO, *, initial_cash: Decimal | None = None) -> None:
        self.cash = Decimal(cash)
        self.initial_cash = Decimal(cash if initial_cash is None else initial_cash)
        self.net_transfers = ZERO
        self._markets: dict[str, MarketBook] = {}
        self._bookings: dict[str, OrderBooking] = {}
        self._dirty_markets: dict[str, MarketBook] = {}
        self._dirty_bookings: dict[str, OrderBooking] = {}
        # With a store attached (`attach_store`), a market that leaves the universe flat leaves
        # memory with its orders' bookings: its realized P&L and fees fold into the totals below,
        # and the store answers for it if it is ever traded or reported on again.
        self._read_booking: Callable[[str], OrderBooking | None] | None = None
        self._read_market: Callable[[str], MarketBook | None] | None = None
        self._folded_realized = ZERO
        self._folded_fees = ZERO
        self._folded = 0  # markets folded away (has_history)
        # hears every change of a position's quantity or cost (the running exposure follows it)
        self.on_position: Callable[[Position], None] | None = None
        self._halt: dict[str, _HaltMark] = {}
        self._halt_total = ZERO  # Σ _halt[s].value, kept running
        self._value_total = ZERO  # Σ _value(m) over _markets (the positions at display marks), kept running
        self._probation: set[str] = set()  # markets whose _HaltMark.lost_at is set

    # --- reading ---------------------------------------------------------------------------------

    @property
    def positions(self) -> dict[str, Position]:
        """Non-zero positions by market slug (a fresh dict; the risk gate's view)."""
        return {s: m.to_position() for s, m in self._markets.items() if m.net_qty != 0}

    @property
    def markets(self) -> dict[str, MarketBook]:
        """Every market the ledger has seen, flat ones included (realized P&L, fees, marks)."""
        return dict(self._markets)

    def position(self, market_slug: str) -> Position:
        m = self._markets.get(market_slug)
        return m.to_position() if m else Position(market_slug)

    def booked(self, order_id: str, market_slug: str = "") -> OrderBooking:
        """What is booked for `order_id`. An order of a market not in memory (folded away, or
        new) is read from the store, so a late or replayed execution of an order of a retired
        market books only its growth, never the whole quantity again."""
        b = self._bookings.get(order_id) or self._dirty_bookings.get(order_id)
        if b is None and market_slug and market_slug not in self._markets \
                and self._read_booking is not None:
            b = self._read_booking(order_id)
        return b or OrderBooking(order_id, market_slug=market_slug)

    def has_history(self) -> bool:
        """Whether this ledger ever booked anything (in memory or folded away)."""
        return bool(self._markets or self._bookings or self._folded)

    def attach_store(self, read_booking: Callable[[str], OrderBooking | None],
                     read_market: Callable[[str], MarketBook | None]) -> None:
        """Let flat markets leave memory (the running bot; the store keeps their rows): every
        flat market restored is folded away now, and each one retired from here on."""
        self._read_booking, self._read_market = read_booking, read_market
        for slug, m in list(self._markets.items()):
            if m.net_qty == 0:
                self._fold(slug)

    def held_bookings(self) -> int:
        """How many order bookings are in memory (the memory benchmark and its tests)."""
        return len(self._bookings)

    def held_markets(self) -> int:
        """How many markets' books are in memory (the memory benchmark and its tests)."""
        return len(self._markets)

    @property
    def fees_total(self) -> Decimal:
        return sum((m.fees for m in self._markets.values()), self._folded_fees)

    @property
    def realized_pnl(self) -> Decimal:
        """Σ realized P&L over markets (those folded away included), gross of fees."""
        return sum((m.realized_pnl for m in self._markets.values()), self._folded_realized)

    def mark_price(self, market_slug: str) -> Decimal | None:
        """Value of one contract of the current position, as a YES price (None when flat)."""
        m = self._markets.get(market_slug)
        return None if m is None else _mark_of(m)

    def market_value(self, market_slug: str) -> Decimal:
        """What the position is worth now: long qty × bid, short |qty| × (1 − offer)."""
        m = self._markets.get(market_slug)
        return ZERO if m is None else _value(m)

    def unrealized_pnl(self, market_slug: str | None = None) -> Decimal:
        slugs: Iterable[str] = self._markets if market_slug is None else [market_slug]
        total = ZERO
        for s in slugs:
            m = self._markets.get(s)
            mark = self.mark_price(s)
            if m is None or mark is None:
                continue
            total += (mark - m.avg_price) * m.net_qty  # same formula for longs and shorts
        return total

    @property
    def equity(self) -> Decimal:
        """Cash + positions marked: long at the bid, short at the offer, through empty books.

        The positions' sum is a running total (`_value_total`), moved whenever a market's row
        changes, so sizing an order never walks every market the bot knows."""
        return self.cash + self._value_total

    def halt_mark(self, market_slug: str) -> Decimal | None:
        """The YES price a position is valued at for halts (None when flat); see `_HaltMark`."""
        m = self._markets.get(market_slug)
        h = self._halt.get(market_slug)
        if m is None or m.net_qty == 0 or h is None:
            return None
        return h.px

    def halt_equity(self, now: float) -> Decimal:
        """Cash + every position at its halt mark: what the daily-loss and drawdown halts read.

        `now` is the monotonic clock time (the clock of `BookSnapshot.received_at`): marks on
        probation after a continuity loss that have held long enough count from here on.
        """
        for slug in list(self._probation):
            self._settle_probation(slug, now)
        return self.cash + self._halt_total

    def baseline_equity(self, now: float) -> Decimal:
        """The halt equity with every mark on probation counted at no more than the book now
        shows: what the trading day's start and the high-water mark may be taken from.

        A mark held through a continuity loss keeps a stub quote from halting the day, but it is
        stale: counting it into the high would measure the drawdown from a peak the account
        never had (the book fell while the feed was away), and the halt would fire when the
        probation ends. Baselines take the lower of the held value and the latest candidate's.
        """
        equity = self.halt_equity(now)
        for slug in self._probation:
            h = self._halt.get(slug)
            m = self._markets.get(slug)
            if h is None or not h.seen or m is None or m.net_qty == 0 or \
                    m.settled_value is not None:
                continue
            equity += min(ZERO, _halt_value(m.net_qty, h.seen[-1][1]) - h.value)
        return equity

    @property
    def pnl(self) -> Decimal:
        """Total P&L since the start: equity change net of deposits and withdrawals."""
        return self.equity - self.initial_cash - self.net_transfers

    def summary(self) -> dict[str, object]:
        """Plain data for /status, alerts and the status line (Decimals kept)."""
        return {
            "cash": self.cash, "equity": self.equity, "pnl": self.pnl,
            "realized_pnl": self.realized_pnl, "unrealized_pnl": self.unrealized_pnl(),
            "fees": self.fees_total,
            "positions": {s: {"net_qty": p.net_qty, "avg_price": p.avg_price,
                              "mark": self.mark_price(s), "unrealized_pnl": self.unrealized_pnl(s)}
                          for s, p in self.positions.items()},
        }

    # --- booking fills ---------------------------------------------------------------------------

    def apply(self, execution: Execution) -> Fill | None:
        """Book whatever growth of the order's cumulative quantity this execution reports."""
        order = execution.order
        return self.apply_execution(
            order.order_id,
            order.market_slug,
            order.intent,
            order.cum_quantity,
            avg_px=order.avg_px,
            last_px=execution.last_px,
            last_qty=execution.last_shares if execution.exec_type.is_fill else None,
            fee=execution.commission,
            fee_total=order.commission_total,
            exec_id=execution.exec_id,
            trade_id=execution.trade_id,
            is_taker=execution.aggressor is not False,
            ts=execution.transact_time,
        )

    def apply_execution(
        self,
        order_id: str,
        market_slug: str,
        intent: Intent,
        cum_qty: Decimal,
        *,
        avg_px: Decimal | None = None,
        last_px: Decimal | None = None,
        last_qty: Decimal | None = None,
        fee: Decimal | None = None,
        fee_total: Decimal | None = None,
        exec_id: str = "",
        trade_id: str = "",
        is_taker: bool = True,
        ts: datetime | None = None,
    ) -> Fill | None:
        """Book the growth of `order_id`'s cumulative filled quantity; return it as a Fill.

        Returns None when nothing new was filled (a duplicate or stale report). The fee booked is
        `fee` (this execution's commission) when the execution is exactly the growth, else the
        growth of `fee_total` (the order's total commission, so missed executions' fees are caught
        up). Nothing is booked, fees included, unless quantity grew.
        """
        if intent not in (Intent.BUY_LONG, Intent.SELL_LONG, Intent.BUY_SHORT, Intent.SELL_SHORT):
            raise LedgerError(f"order {order_id}: cannot book intent {intent}")
        prev = self.booked(order_id, market_slug)
        growth = cum_qty - prev.cum_qty
        if fee is not None and (last_qty == growth or fee_total is None):
            fee_now = fee  # this execution is exactly the growth: its own commission
        elif fee_total is not None:
            fee_now = fee_total - prev.fees  # executions were missed: catch up on the total
        else:
            fee_now = ZERO
        if growth <= 0:
            if growth < 0:
                log.warning("order %s reports cum qty %s below booked %s; ignored",
                            order_id, cum_qty, prev.cum_qty)
            # Fees move only with quantity: a stale snapshot's lower total must not refund them
            # (the live balance reconciliation corrects cash if a fee ever arrives on its own).
            return None
        price = self._growth_price(order_id, prev, cum_qty, growth, avg_px, last_px, last_qty)
        self._book_trade(market_slug, intent.position_sign * growth, price)
        self._book_fee(market_slug, fee_now)
        self._set_booking(OrderBooking(order_id, cum_qty, prev.notional + growth * price,
                                       prev.fees + fee_now, market_slug))
        return Fill(order_id, market_slug, intent, growth, price, fee_now, exec_id=exec_id,
                    trade_id=trade_id, is_taker=is_taker, ts=ts)

    @staticmethod
    def _growth_price(order_id: str, prev: OrderBooking, cum_qty: Decimal, growth: Decimal,
                      avg_px: Decimal | None, last_px: Decimal | None,
                      last_qty: Decimal | None) -> Decimal:
        if last_px is not None and (last_qty is None or last_qty == growth):
            return last_px
        if avg_px is not None:
            price = (avg_px * cum_qty - prev.notional) / growth
            if ZERO <= price <= ONE:
                return price
            log.warning("order %s: derived fill price %s out of range; using avg %s",
                        order_id, price, avg_px)
            return avg_px
        if last_px is not None:
            return last_px
        raise LedgerError(f"order {order_id}: fill of {growth} without a price")

    def _book_trade(self, slug: str, signed_qty: Decimal, price: Decimal) -> None:
        """Move the net position by `signed_qty` at YES price `price`, with its cash and P&L."""
        if not ZERO <= price <= ONE:
            raise LedgerError(f"{slug}: price {price} outside [0, 1]")
        m = self._book_of(slug)
        net, avg, realized = m.net_qty, m.avg_price, m.realized_pnl
        closing = ZERO
        if net != 0 and (net > 0) != (signed_qty > 0):
            closing = min(abs(net), abs(signed_qty))
        opening = abs(signed_qty) - closing
        if net > 0:  # closing a long returns p and realizes p − avg
            self.cash += closing * price
            realized += closing * (price - avg)
            net -= closing
        elif net < 0:  # closing a short returns 1 − p and realizes avg − p
            self.cash += closing * (ONE - price)
            realized += closing * (avg - price)
            net += closing
        known = m.cost_known
        if net == 0:
            avg, known = ZERO, True
        if opening > 0:
            if signed_qty > 0:
                self.cash -= opening * price
                avg = (avg * net + price * opening) / (net + opening)
                net += opening
            else:
                self.cash -= opening * (ONE - price)
                avg = (avg * -net + price * opening) / (-net + opening)
                net -= opening
        self._set_market(attrs.evolve(m, net_qty=net, avg_price=avg, realized_pnl=realized,
                                      settled_value=None, cost_known=known))
        if opening > 0:
            self._cap_halt_px(slug, price)

    def _book_fee(self, slug: str, fee: Decimal) -> None:
        if fee == 0:
            return
        self.cash -= fee
        m = self._book_of(slug)
        self._store_market(attrs.evolve(m, fees=m.fees + fee))

    def book_fill(self, fill: Fill) -> None:
        """Book a fill not tied to an order's cumulative quantity (e.g. an adopted trade)."""
        self._book_trade(fill.market_slug, fill.intent.position_sign * fill.qty, fill.price)
        self._book_fee(fill.market_slug, fill.fee)

    # --- marks, settlement, transfers, corrections -----------------------------------------------

    def update_marks(self, market_slug: str, best_bid: Decimal | None,
                     best_offer: Decimal | None, *, trusted: bool = True) -> None:
        """Record the best prices of a trusted book; missing sides keep their last trusted mark."""
        if not trusted or (best_bid is None and best_offer is None):
            return
        # no store read here (the book frame's path): `recall` brought back any history when the
        # market joined the universe
        m = self._markets.get(market_slug) or MarketBook(market_slug)
        bid = m.mark_bid if best_bid is None else best_bid
        offer = m.mark_offer if best_offer is None else best_offer
        if bid == m.mark_bid and offer == m.mark_offer:
            return
        new = _marked(m, bid, offer, m.halt_mark)
        if m.net_qty == 0:
            self._markets[market_slug] = new  # only held positions' marks move equity or persist
            return
        self._store_market(new)

    def forget_marks(self, market_slug: str) -> None:
        """The market left the universe. With a store attached a flat market is folded away
        (`_fold`): a bot running for weeks holds the markets and bookings it still trades, not
        every one it ever traded. Without one (a report, a unit test), only a market the ledger
        merely marked (never traded, never settled) is dropped."""
        m = self._markets.get(market_slug)
        if m is None or m.net_qty != 0:
            return
        if self._read_market is not None:
            self._fold(market_slug)
            return
        if m.realized_pnl or m.fees or m.settled_value is not None \
                or market_slug in self._dirty_markets:
            return
        del self._markets[market_slug]
        self._halt.pop(market_slug, None)

    def _fold(self, market_slug: str) -> None:
        """A flat market leaves memory: its realized P&L and fees join the folded totals, its
        bookings go (an unsaved change stays queued in the dirty maps until drained; the store
        answers for both afterwards, `_book_of` and `booked`)."""
        m = self._markets.pop(market_slug)
        self._folded_realized += m.realized_pnl
        self._folded_fees += m.fees
        self._folded += 1
        self._halt.pop(market_slug, None)
        self._probation.discard(market_slug)
        for order_id in [o for o, b in self._bookings.items() if b.market_slug == market_slug]:
            del self._bookings[order_id]

    def recall(self, market_slug: str) -> None:
        """A market joined the universe: a market folded away comes back with its history (out
        of the folded totals), before any book of it is marked."""
        if market_slug in self._markets or self._read_market is None:
            return
        stored = self._dirty_markets.get(market_slug) or self._read_market(market_slug)
        if stored is not None:
            self._folded_realized -= stored.realized_pnl
            self._folded_fees -= stored.fees
            self._folded -= 1
            self._markets[market_slug] = stored
            self._value_total += _value(stored)

    def _book_of(self, market_slug: str) -> MarketBook:
        """The market's book to change: in memory, else the store's (`recall`: a market traded
        outside the universe, an adopted position), else a new one."""
        self.recall(market_slug)
        return self._markets.get(market_slug) or MarketBook(market_slug)

    def marked_only(self) -> set[str]:
        """Markets the ledger holds only marks for (the per-market keys check)."""
        return {slug for slug, m in self._markets.items() if m.net_qty == 0 and not m.realized_pnl
                and not m.fees and m.settled_value is None}

    def on_book(self, book: BookSnapshot, *, trusted: bool = True, now: float | None = None) -> None:
        """A full book: the display marks (best prices) and the halt mark (a walk of the book).

        `now` defaults to the book's `received_at` (both on the monotonic clock).
        """
        bid, offer = book.best_bid, book.best_offer
        self.update_marks(book.market_slug, bid.price if bid else None,
                          offer.price if offer else None, trusted=trusted)
        if not trusted:
            return
        h = self._halt.get(book.market_slug)
        m = self._markets.get(book.market_slug)
        if h is None or m is None or m.net_qty == 0 or m.settled_value is not None:
            return
        at = book.received_at if now is None else now
        candidate = _walk_px(m.net_qty, book, h.px)
        if h.lost_at is None:
            if candidate != h.px:
                h.px = candidate
                self._revalue(h, m.net_qty)
                self._keep_halt_px(book.market_slug, candidate)
            return
        if at < h.lost_at:
            return  # received before the loss: not evidence of anything after it
        if not h.seen or h.seen[-1][1] != candidate:
            h.seen.append((at, candidate))
        self._settle_probation(book.market_slug, at)

    def on_continuity_lost(self, market_slug: str | None, at: float) -> None:
        """The market feed lost continuity (reconnect, maintenance) for one market or all, at `at`.

        Until a changed halt mark has held for `HALT_HOLD_SECONDS` after this, halts keep the
        last trusted one (a stub quote in the first frames must not halt the day).
        """
        slugs = list(self._halt) if market_slug is None else [market_slug]
        for slug in slugs:
            h = self._halt.get(slug)
            if h is None:
                continue
            h.lost_at = at
            h.seen.clear()
            self._probation.add(slug)

    def _settle_probation(self, slug: str, now: float) -> None:
        h = self._halt.get(slug)
        if h is None or h.lost_at is None:
            self._probation.discard(slug)
            return
        since = now - HALT_HOLD_SECONDS
        seen = h.seen
        while len(seen) > 1 and seen[1][0] <= since:
            seen.popleft()  # superseded before the window began
        if not seen or seen[0][0] > since:
            return  # no candidate has held for the whole window yet
        prices = [px for _, px in seen]
        lo, hi = min(prices), max(prices)
        if lo == hi:
            new = lo
            h.lost_at = None
            seen.clear()
            self._probation.discard(slug)
        elif hi < h.px:
            new = hi
        elif lo > h.px:
            new = lo
        else:
            return
        if new != h.px:
            h.px = new
            m = self._markets.get(slug)
            self._revalue(h, m.net_qty if m is not None else ZERO)
            self._keep_halt_px(slug, new)

    def _keep_halt_px(self, slug: str, px: Decimal) -> None:
        """Record a trusted halt mark on the market's row, so a restart starts from it."""
        m = self._markets.get(slug)
        if m is not None and m.halt_mark != px:
            self._markets[slug] = self._dirty_markets[slug] = _marked(m, m.mark_bid,
                                                                     m.mark_offer, px)

    def _revalue(self, h: _HaltMark, net_qty: Decimal) -> None:
        value = _halt_value(net_qty, h.px) if net_qty != 0 else ZERO
        self._halt_total += value - h.value
        h.value = value

    def _rehalt(self, m: MarketBook, before: Decimal) -> None:
        """Keep the halt value of `m`'s position current after its size changed (was `before`)."""
        h = self._halt.get(m.market_slug)
        if m.net_qty == 0 or m.settled_value is not None:
            if h is not None:
                self._revalue(h, ZERO)
            return
        if h is None:
            h = self._halt[m.market_slug] = _HaltMark(px=m.avg_price)
        elif before == 0 or (before > 0) != (m.net_qty > 0):
            h.px = m.avg_price  # a new position (or a flip): its own price until a book walks it
        self._revalue(h, m.net_qty)
        self._keep_halt_px(m.market_slug, h.px)

    def _cap_halt_px(self, slug: str, price: Decimal) -> None:
        """A position just grew at `price` (YES): its halt mark is no better than that price.

        Buying takes the offer, and closing gets at most the bid below it, so the price paid is
        an upper bound on what the position fetches. A mark held through a continuity loss (on
        probation) or read from a stale book may be above it: counting the new contracts at it
        would lift the high-water mark to equity the account never had, and the drawdown halt
        would fire once the true book is walked (chaos seed 3, contracts bought at 0.05 on a
        book the feed last showed at 0.14).
        """
        h = self._halt.get(slug)
        m = self._markets.get(slug)
        if h is None or m is None or m.net_qty == 0:
            return
        capped = min(h.px, price) if m.net_qty > 0 else max(h.px, price)
        if capped != h.px:
            h.px = capped
            self._revalue(h, m.net_qty)
            self._keep_halt_px(slug, capped)

    def settle(self, market_slug: str, value: Decimal) -> Decimal:
        """Resolve a market at `value` in [0, 1]; returns the P&L realized by it (gross of fees)."""
        if not ZERO <= value <= ONE:
            raise LedgerError(f"{market_slug}: settlement value {value} outside [0, 1]")
        m = self._book_of(market_slug)
        if m.net_qty > 0:
            self.cash += m.net_qty * value
        else:
            self.cash += -m.net_qty * (ONE - value)
        realized = (value - m.avg_price) * m.net_qty
        self._set_market(attrs.evolve(m, net_qty=ZERO, avg_price=ZERO,
                                      realized_pnl=m.realized_pnl + realized,
                                      settled_value=value, cost_known=True))
        return realized

    def transfer(self, amount: Decimal) -> None:
        """A deposit (positive) or withdrawal (negative): cash, but not P&L (the trading state
        shifts its baselines by the same amount)."""
        self.cash += amount
        self.net_transfers += amount

    def mark_booked(self, order_id: str, cum_qty: Decimal, avg_px: Decimal | None = None,
                    market_slug: str = "") -> None:
        """Advance an order's booked quantity without booking cash (a correction already did)."""
        prev = self.booked(order_id, market_slug)
        if cum_qty <= prev.cum_qty:
            return
        price = avg_px if avg_px is not None else (
            prev.notional / prev.cum_qty if prev.cum_qty else ZERO)
        self._set_booking(OrderBooking(order_id, cum_qty, cum_qty * price, prev.fees,
                                       market_slug or prev.market_slug))

    def set_position(self, market_slug: str, net_qty: Decimal,
                     avg_price: Decimal | None = None) -> None:
        """Overwrite a position (reconciliation in the exchange's favour); cash is left alone.

        `avg_price` None keeps the average of a position already held; a position taken up from
        flat without one has an unknown cost (`cost_known` False) until one is given.
        """
        m = self._book_of(market_slug)
        if not net_qty:
            avg, known = ZERO, True
        elif avg_price is not None:
            avg, known = avg_price, True
        else:
            avg, known = m.avg_price, m.cost_known and m.net_qty != 0
        self._set_market(attrs.evolve(m, net_qty=net_qty, avg_price=avg, cost_known=known))

    def set_cash(self, cash: Decimal) -> None:
        """Overwrite cash (reconciliation with the exchange's balance)."""
        self.cash = cash

    # --- persistence -----------------------------------------------------------------------------

    def _set_market(self, m: MarketBook) -> None:
        old = self._markets.get(m.market_slug)
        self._store_market(m)
        self._rehalt(m, old.net_qty if old is not None else ZERO)

    def _store_market(self, m: MarketBook) -> None:
        old = self._markets.get(m.market_slug)
        self._markets[m.market_slug] = self._dirty_markets[m.market_slug] = m
        self._value_total += _value(m) - (ZERO if old is None else _value(old))
        if self.on_position is not None and (
                old is None or old.net_qty != m.net_qty or old.avg_price != m.avg_price):
            self.on_position(m.to_position())

    def _set_booking(self, b: OrderBooking) -> None:
        self._bookings[b.order_id] = b
        self._dirty_bookings[b.order_id] = b

    def snapshot(self) -> LedgerState:
        return LedgerState(
            cash=self.cash, initial_cash=self.initial_cash, net_transfers=self.net_transfers,
            markets=tuple(self._markets.values()),
            bookings=tuple(self._bookings.values()))

    def drain_changes(self) -> LedgerState:
        """The scalars plus the markets and bookings changed since the last drain (to persist)."""
        state = LedgerState(
            cash=self.cash, initial_cash=self.initial_cash, net_transfers=self.net_transfers,
            markets=tuple(self._dirty_markets[s] for s in sorted(self._dirty_markets)),
            bookings=tuple(self._dirty_bookings[o] for o in sorted(self._dirty_bookings)))
        self._dirty_markets.clear()
        self._dirty_bookings.clear()
        return state

    @classmethod
    def restore(cls, state: LedgerState) -> Ledger:
        led = cls(state.cash, initial_cash=state.initial_cash)
        led.net_transfers = state.net_transfers
        led._markets = {m.market_slug: m for m in state.markets}
        led._value_total = sum((_value(m) for m in state.markets), ZERO)
        led._bookings = {b.order_id: b for b in state.bookings}
        for m in state.markets:
            if m.net_qty != 0 and m.settled_value is None:
                # the last trusted halt mark; a database from before it was kept: the last
                # display mark, else the cost
                mark = m.halt_mark
                if mark is None:
                    mark = m.mark_bid if m.net_qty > 0 else m.mark_offer
                h = led._halt[m.market_slug] = _HaltMark(px=m.avg_price if mark is None else mark)
                led._revalue(h, m.net_qty)
        return led
