"""The trading engine: events in, commands out. Synchronous, no I/O, time passed in.

Every caller that trades drives this one object: the composition root (`app`), the benchmarks, the
tests and the backtest to come. Feeds hand it what they decoded (a book replaced, a continuity
loss, a fair value that changed); the venue and the reconciliation hand it what happened to the
account (reconciliation done, a transfer, an adopted account); the operator-control task hands it
the kill switch; a clock tick rolls the trading day and checks the halts. It answers with
commands for the caller to carry out: place an order, re-sync a market's resting orders, cancel
everything, record a rejection, tell the venue a market changed state.

It wires the pure core together and owns nothing itself:

    books (BookStore) · fair values · universe ─► strategy.evaluate ─► gate.check ─► PlaceOrder
    ledger (marks, cash, positions) ─► exposure (running USD at risk) ─┘      ▲
    trading state (day, baselines, halts) ───────────────────────────────────┘

Only the engine calls the signal evaluation and the gate's check (an import-linter contract says
so). One decision per market per call: `decide` places at most one order, and says when the
market should be decided again once that order is registered (a second signal must see the first
order in the exposure, or two orders of one evaluation could cross each other).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import attrs

from polybot.book import BookStore
from polybot.claims import MarketClaims
from polybot.execution.venue import Venue
from polybot.exposure import Exposure
from polybot.fairvalues import FairValues
from polybot.ledger import Ledger
from polybot.model import (
    BookSnapshot,
    Intent,
    MarketInfo,
    MarketState,
    MarketStatus,
    OrderRequest,
    Position,
    Rejection,
    Signal,
    TimeInForce,
)
from polybot.risk import RiskGate
from polybot.strategy import StrategyParams, evaluate
from polybot.trading_state import Notice, NoticeKind, TradingStateMachine
from polybot.universe import Universe

log = logging.getLogger(__name__)

FLATTEN_TICKS = 5  # an operator's flatten crosses at most this many ticks through the best price


# --- commands -----------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class PlaceOrder:
    request: OrderRequest
    received_at: float | None = None  # when the book that led to it arrived (monotonic)


@attrs.frozen(slots=True)
class SyncResting:
    """Cancel the market's resting orders that no current signal supports."""

    market_slug: str
    signals: tuple[Signal, ...]


@attrs.frozen(slots=True)
class CancelAll:
    reason: str


@attrs.frozen(slots=True)
class DecideAll:
    """Decide every market again now: a halt was lifted, and an edge already in a book would
    otherwise wait for that market's next frame or fair-value change (a quiet market: minutes)."""

    reason: str


@attrs.frozen(slots=True)
class RecordRejection:
    rejection: Rejection


@attrs.frozen(slots=True)
class MarketStateChanged:
    market_slug: str
    state: MarketState


Command = PlaceOrder | SyncResting | CancelAll | DecideAll | RecordRejection | MarketStateChanged


@attrs.frozen(slots=True)
class Decision:
    commands: list[Command]
    again: bool = False  # an order was placed and more signals wait: decide this market again


@attrs.define
class Counters:
    signals: int = 0
    orders: int = 0
    rejections: int = 0


class TradingEngine:
    def __init__(
        self,
        *,
        universe: Universe,
        books: BookStore,
        fair_values: FairValues,
        ledger: Ledger,
        exposure: Exposure,
        trading: TradingStateMachine,
        gate: RiskGate,
        venue: Venue,  # read only: `can_submit` and `effective_book` (no I/O here)
        params: StrategyParams,
        tif: TimeInForce = TimeInForce.IOC,
        alert: Callable[[Notice], None] | None = None,
        claims: MarketClaims | None = None,  # CLAIMS_DIR: markets shared with other instances
    ) -> None:
        self.universe = universe
        self.books = books
        self.fair_values = fair_values
        self.ledger = ledger
        self.exposure = exposure
        self.trading = trading
        self.gate = gate
        self.venue = venue
        self.params = params
        self.tif = tif
        self.counters = Counters()
        self._alert = alert
        self.claims = claims
        self._halt_cancel_pending = False
        self._decide_all_pending = False

    # --- what the feeds say -----------------------------------------------------------------------

    def book_replaced(self, book: BookSnapshot) -> list[Command]:
        """A full book from the markets stream: books and the ledger's marks (its one writer).
        The book's state is the market's live state (the strategy reads it from the book)."""
        slug = book.market_slug
        previous = self.books.get(slug)
        self.books.update(book)
        self.ledger.on_book(book, trusted=self.books.is_trusted(slug))
        if previous is not None and previous.state is book.state:
            return []
        if book.state is not MarketState.OPEN:
            # the venue checks soon and settles an expired market it holds once the value is
            # published, even when the private stream's resolution frame was lost
            return [MarketStateChanged(slug, book.state)]
        return []

    def continuity_lost(self, at: float) -> None:
        """The markets stream reconnects: no book is trusted until a newer frame arrives, and a
        changed mark counts for the halts only once it has held (the ledger's halt-mark rule)."""
        self.books.mark_untrusted(at=at)
        self.ledger.on_continuity_lost(None, at)

    # --- what the account says --------------------------------------------------------------------

    def reconciled(self, now: datetime, mono: float) -> None:
        """The first reconciliation (live) or the ledger's restore (paper) is done."""
        self.trading.begin(self.ledger.baseline_equity(mono), now)

    def transfer(self, amount: Decimal) -> None:
        """A completed deposit or withdrawal (already in the ledger's cash): not P&L."""
        self.trading.on_transfer(amount)

    def adopted(self, now: datetime, mono: float, why: str) -> None:
        """The account behind the ledger was adopted (a fresh live start, a mode switch) and its
        positions are marked: its equity is the baseline. The day begins there, or, had it begun,
        re-bases."""
        equity = self.ledger.baseline_equity(mono)
        if not self.trading.begun:
            self.trading.begin(equity, now)
        else:
            self.trading.rebase(equity, now, why)

    # --- the operator and the clock ---------------------------------------------------------------

    def operator_files(self, *, kill: bool, kill_reason: str, resume: bool, now: datetime,
                       mono: float) -> list[Command]:
        """One poll of the operator's kill switch and resume request (`polybot.control`)."""
        if resume:
            self.trading.resume(self.ledger.baseline_equity(mono), now)
        self.trading.set_kill(kill, kill_reason, now)
        return self._pending_commands()

    def request_flatten(self) -> None:
        self.trading.request_flatten()

    def tick(self, now: datetime, mono: float) -> list[Command]:
        """Roll the trading day and check the halts on the halt equity (the housekeeping second)."""
        over_cap = self.exposure.portfolio > self.gate.limits.max_portfolio_exposure
        self.trading.observe(self.ledger.halt_equity(mono), now, over_cap=over_cap,
                             baseline=self.ledger.baseline_equity(mono))
        return self._pending_commands()

    def on_notice(self, notice: Notice) -> None:
        """The trading state's notices (wired as its notifier): a halt cancels our orders, and
        its end has every market decided again."""
        if notice.kind is NoticeKind.HALT_ENTERED:
            self._halt_cancel_pending = True
        elif notice.kind is NoticeKind.HALT_LEFT:
            self._decide_all_pending = True
        if self._alert is not None:
            self._alert(notice)

    def _pending_commands(self) -> list[Command]:
        out: list[Command] = []
        if self._halt_cancel_pending:
            self._halt_cancel_pending = False
            out.append(CancelAll("trading halted"))
        if self._decide_all_pending:
            self._decide_all_pending = False
            out.append(DecideAll("trading resumed"))
        return out

    # --- decisions --------------------------------------------------------------------------------

    def not_opened(self, slug: str) -> str:
        """Why no opening order goes to `slug` ("" when one may): the universe's facts (no event
        or start time, no confirmed fixture, no data, halted), or another instance holding the
        market's claim (CLAIMS_DIR: then no order at all goes there, closing included)."""
        why = self._not_opened(slug, self.books.state(slug))
        if not why and self.claims is not None:
            why = self.claims.why_not(slug)
        return why

    def _not_opened(self, slug: str, state: MarketState | None) -> str:
        """`not_opened`, given the market's book state (the decision has its book in hand)."""
        listing = self.universe.get(slug)
        if listing is None:
            return "not in the universe"
        why = listing.why_not_traded()
        if why and listing.info.status is MarketStatus.HALTED and state is MarketState.OPEN:
            # the book's state is the market's live state: a halt the cached metadata still
            # shows (refreshed every minute) is over once the book trades again
            live = attrs.evolve(listing, info=attrs.evolve(listing.info, status=MarketStatus.OPEN))
            why = live.why_not_traded()
        if not why and state in (MarketState.HALTED, MarketState.SUSPENDED):
            why = "market halted"  # the book says so before the metadata does
        return why

    def signals_for(self, slug: str, now: datetime, mono: float) -> list[Signal]:
        market = self.universe.info(slug)
        book = self.books.get(slug)
        if market is None or book is None:
            return []
        return self._signals(slug, market, book, self.ledger.position(slug), now, mono)

    def _signals(self, slug: str, market: MarketInfo, book: BookSnapshot, position: Position,
                 now: datetime, mono: float) -> list[Signal]:
        fair = self.fair_values.usable(slug)
        fixture = self.fair_values.fixture(slug)
        # paper: liquidity the bot already took stays taken until the book shows it refreshed
        signals = evaluate(self.venue.effective_book(book), fair, market, position, self.params,
                           now, book_trusted=self.books.is_trusted(slug),
                           fair_trusted=fair is not None, created_at=mono,
                           fallback_start=fixture.start_time if fixture else None)
        for s in signals:
            if s.intent.is_opening:
                if self._not_opened(slug, book.state):
                    return [s for s in signals if not s.intent.is_opening]
                break
        return signals

    def decide(self, slug: str, now: datetime, mono: float,
               received_at: float | None = None) -> Decision:
        """Signals for one market through the gate: at most one order per call."""
        # the market, its book and its position are read once: nothing changes them in here
        market = self.universe.info(slug)
        book = self.books.get(slug)
        if market is None or book is None:
            signals: list[Signal] = []
            position = None
        else:
            position = self.ledger.position(slug)
            signals = self._signals(slug, market, book, position, now, mono)
        claims = self.claims
        if signals and claims is not None and claims.refused_recently(slug, mono):
            signals = []  # another instance trades this market (asked again in a few seconds)
        commands: list[Command] = [SyncResting(slug, tuple(signals))]
        if not signals:
            return Decision(commands)
        ledger = self.ledger
        for i, sig in enumerate(signals):
            self.counters.signals += 1
            if market is None or not self.venue.can_submit(slug):
                continue
            result = self.gate.check(sig, position=position, equity=ledger.equity,
                                     cash=ledger.cash, market_info=market, now=now)
            if isinstance(result, OrderRequest):
                if claims is not None and not claims.claim(slug, mono):
                    # never trade against another instance of ours (wash trading): the market
                    # is claimed the first time an order would go there
                    self.counters.rejections += 1
                    commands.append(RecordRejection(Rejection(
                        slug, sig.intent, "claimed_elsewhere", claims.why_not(slug))))
                    return Decision(commands)
                self.counters.orders += 1
                if result.tif is not self.tif:  # an evolve costs ~3 µs on the way to the wire
                    result = attrs.evolve(result, tif=self.tif)
                commands.append(PlaceOrder(result, received_at))
                return Decision(commands, again=i + 1 < len(signals))
            self.counters.rejections += 1
            commands.append(RecordRejection(result))
        return Decision(commands)

    def flatten_orders(self, now: datetime, mono: float) -> tuple[list[PlaceOrder], list[str]]:
        """IOC closing orders for every open position, at most `FLATTEN_TICKS` ticks through the
        best price; and the markets that cannot be closed now (no book, no bid/offer, refused)."""
        orders: list[PlaceOrder] = []
        stuck: list[str] = []
        for slug, pos in self.ledger.positions.items():
            market = self.universe.info(slug)
            book = self.books.get(slug)
            if market is None or book is None:
                stuck.append(f"{slug} {pos.net_qty:+} (no book)")
                continue
            if pos.net_qty > 0 and book.best_bid is not None:
                intent = Intent.SELL_LONG
                limit = max(Decimal("0.01"), book.best_bid.price - FLATTEN_TICKS * market.tick)
            elif pos.net_qty < 0 and book.best_offer is not None:
                intent = Intent.SELL_SHORT
                limit = min(Decimal("0.99"), book.best_offer.price + FLATTEN_TICKS * market.tick)
            else:
                stuck.append(f"{slug} {pos.net_qty:+} (nothing to close into)")
                continue
            sig = Signal(market_slug=slug, intent=intent, limit_price=limit,
                         size_available=abs(pos.net_qty), fair_q=Decimal("0.5"),
                         edge=Decimal(0), created_at=mono)
            if self.claims is not None and not self.claims.claim(slug, mono):
                stuck.append(f"{slug} {pos.net_qty:+} ({self.claims.why_not(slug)})")
                continue
            result = self.gate.check(sig, position=pos, equity=self.ledger.equity,
                                     cash=self.ledger.cash, market_info=market, now=now,
                                     flatten=True)
            if isinstance(result, OrderRequest):
                self.counters.orders += 1
                orders.append(PlaceOrder(attrs.evolve(result, tif=TimeInForce.IOC,
                                                      reason="flatten")))
            elif result.reason != "nothing_to_close":  # already being closed by an open order
                stuck.append(f"{slug} {pos.net_qty:+} ({result.reason})")
        return orders, stuck

    # --- the universe -----------------------------------------------------------------------------

    def market_retired(self, slug: str) -> None:
        """A retire listener: the gate's per-market windows go with the market, and its claim
        (the market is flat and without an order: another instance may take it)."""
        self.gate.forget(slug)
        if self.claims is not None:
            self.claims.release(slug)

    def market_keys(self) -> set[str]:
        keys = self.gate.market_keys()
        return keys | self.claims.market_keys() if self.claims is not None else keys

    # --- reads for status and metrics -------------------------------------------------------------

    def daily_pnl(self) -> Decimal:
        return self.trading.daily_pnl(self.ledger.equity)
