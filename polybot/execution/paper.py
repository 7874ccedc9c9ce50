"""Paper execution: fills simulated against the real book, booked exactly like live fills.

`PaperExecutor.submit` takes an `OrderRequest` (only the risk gate makes those), stores the intent
(awaited, as live mode must), then matches it like the exchange would and pushes every resulting
`model.Execution` through `orders.book_execution` — the same path the live executor's private
stream uses, so registry, ledger, store and trades log cannot tell paper from live.

Matching rules:

- An aggressive order walks the opposite side best first while the level is no worse than its
  limit (BUY_LONG / SELL_SHORT lift offers, SELL_LONG / BUY_SHORT hit bids), one fill per level at
  the level's price, taker fee rounded per fill with the exchange's rule (`FeeAccumulator`).
  IOC cancels the remainder; FOK fills nothing unless the whole quantity is there; GTC (and DAY,
  GTD) rest the remainder at the limit.
- A resting order fills as maker (rebate, Θ −0.0125) at its own price only when a later book
  crosses it (an offer at or below a resting bid; a bid at or above a resting offer) or a trade
  prints strictly through it. It is cancelled when its signal disappears or its limit moves
  (`sync_signals`), on `cancel`, when the market feed loses continuity (`on_continuity_lost`:
  the exchange cancels every order at maintenance), when its market resolves, and at restart
  (paper orders do not survive a restart:
  `cancel_restored` cancels them through the normal path so the store agrees).
- An order is rejected, like the exchange would, when the part of it that opens exposure (beyond
  closing the current position) costs more at its limit, taker fee included, than cash minus what
  resting opening orders reserve; so cash never goes negative.

**Settlement.** A market leaving OPEN for EXPIRED or TERMINATED (`on_market_state`, from the
market's book) has been resolved: the exchange cancels its orders and pays each position its
settlement value. The paper executor cancels its resting orders there at once and, in `run` (a
supervised child), asks the exchange's public settlement endpoint (`settlement`, the one the live
executor uses) until the value is published, then settles the paper position in the ledger.

**Liquidity memory.** The real book does not know about paper fills, so the next frame still shows
the size we just "took". Per market, side and price the executor remembers the level size it saw
and how much of it it took; the same level with the same size offers only the rest. When the
level's size changes (or the level goes away) the book has refreshed and the memory for that level
is dropped. `effective_book` shows a book minus what was taken, for a strategy that wants to size
against what is really left.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Protocol

import attrs
import trio

from polybot.clock import Clock
from polybot.execution.orders import (
    ExecutionRecorder,
    OrderRegistry,
    TrackedOrder,
    book_execution,
)
from polybot.execution.venue import ShutdownReport
from polybot.ledger import Ledger
from polybot.model import (
    ZERO,
    BookSnapshot,
    Execution,
    ExecutionType,
    Fill,
    MarketInfo,
    MarketState,
    Order,
    OrderRequest,
    OrderState,
    PriceLevel,
    Side,
    Signal,
    TimeInForce,
    TradePrint,
    cost_per_contract,
)
from polybot.pricing import MAKER_THETA, TAKER_THETA, FeeAccumulator, fee_per_contract, taker_theta

log = logging.getLogger(__name__)


class BookSource(Protocol):
    def get(self, slug: str) -> BookSnapshot | None: ...


class IntentRecorder(ExecutionRecorder, Protocol):
    def note_intent(self, order: TrackedOrder) -> None: ...


class Beat(Protocol):
    def beat(self) -> None: ...


SettlementLookup = Callable[[str], Awaitable[Decimal | None]]
RESOLVED_STATES = (MarketState.EXPIRED, MarketState.TERMINATED)


@attrs.define
class _Taken:
    level_qty: Decimal  # the level's size when we took from it
    taken: Decimal


@attrs.define
class _Sim:
    """The exchange-side view of one paper order."""

    order: TrackedOrder
    taker_fees: FeeAccumulator
    maker_fees: Decimal = ZERO
    cum: Decimal = ZERO
    notional: Decimal = ZERO

    @property
    def leaves(self) -> Decimal:
        return self.order.quantity - self.cum

    @property
    def commission(self) -> Decimal:
        return self.taker_fees.total + self.maker_fees


def _all_sized(levels: tuple[PriceLevel, ...]) -> bool:
    for lv in levels:  # a plain loop: cheaper than all() over a generator, on every frame
        if not lv.qty > ZERO:
            return False
    return True


class PaperExecutor:
    def __init__(
        self,
        registry: OrderRegistry,
        ledger: Ledger,
        books: BookSource,
        *,
        recorder: IntentRecorder | None = None,
        markets: Mapping[str, MarketInfo] | None = None,
        clock: Clock | None = None,
        settlement: SettlementLookup | None = None,
        settle_poll_seconds: float = 2.0,
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self._books = books
        self._recorder = recorder
        self._markets = markets if markets is not None else {}
        self._clock = clock or registry.clock  # the registry's: one clock stamps an order
        self._taken: dict[str, dict[tuple[Side, Decimal], _Taken]] = {}
        # The memory of liquidity taken does not survive a restart: in a market the restored
        # ledger traded in, the first book's levels count as taken until their size changes, so
        # the same liquidity is never taken twice (never kinder than the exchange). Markets whose
        # first book of this run arrived (dropped with the market when it retires).
        self._seen: set[str] = set()
        self._resting: dict[str, _Sim] = {}
        self._exec_ids = itertools.count(1)
        self._session = uuid.uuid4().hex[:8]
        self._settlement = settlement
        self._settle_poll = settle_poll_seconds
        self._unsettled: set[str] = set()  # resolved markets whose paper position awaits its value

    # --- submitting -------------------------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> TrackedOrder:
        """Store the intent, then match it against the current book. Returns the tracked order."""
        order = self.registry.new_order(request, now=self._clock.now())
        if self._recorder is not None:
            self._recorder.note_intent(order)  # durable before "sending", as in live
        self.registry.submitted(order, order.local_id)  # the paper exchange's id is the local one
        sim = _Sim(order, FeeAccumulator(self._taker_theta(order.market_slug)))
        book = self._books.get(order.market_slug)
        reject = self._reject_reason(order, book)
        if reject:
            self._emit(sim, ExecutionType.REJECTED, OrderState.REJECTED, reject=reject)
            return order
        self._emit(sim, ExecutionType.NEW, OrderState.NEW)
        assert book is not None
        self._take(sim, book)
        if sim.leaves > 0 and sim.order.is_open:
            if order.tif in (TimeInForce.IOC, TimeInForce.FOK):
                self._emit(sim, ExecutionType.CANCELED, OrderState.CANCELED,
                           text=f"{order.tif.name} remainder {sim.leaves} cancelled")
            else:
                self._resting[order.order_id] = sim
        return order

    @property
    def creates_in_flight(self) -> int:
        return 0

    async def send(self, request: OrderRequest) -> TrackedOrder:
        """Paper answers at once: `submit`."""
        return await self.submit(request)

    def _reject_reason(self, order: TrackedOrder, book: BookSnapshot | None) -> str:
        if book is None or book.state is not MarketState.OPEN:
            return "ORD_REJECT_REASON_EXCHANGE_CLOSED"
        opening = self._opening_qty(order.market_slug, order.intent.book_side, order.quantity)
        if opening > 0:
            theta = self._taker_theta(order.market_slug)
            per_contract = cost_per_contract(order.intent, order.price)
            worst = opening * (per_contract + max(fee_per_contract(order.price, theta), ZERO))
            if worst > self.ledger.cash - self._reserved():
                return "ORD_REJECT_REASON_EXCHANGE_OPTION: insufficient buying power"
        return ""

    def _opening_qty(self, slug: str, side: Side, qty: Decimal) -> Decimal:
        """The part of `qty` that would open exposure rather than close the current position.

        Whatever the intent's name: a SELL_LONG larger than the long opens a short with the rest,
        and that rest needs collateral like a BUY_SHORT (its closing part pays its own fee).
        """
        net = self.ledger.position(slug).net_qty
        closable = max(-net, ZERO) if side is Side.BUY else max(net, ZERO)
        return max(qty - closable, ZERO)

    def _reserved(self) -> Decimal:
        return sum((s.leaves * cost_per_contract(s.order.intent, s.order.price)
                    for s in self._resting.values() if s.order.intent.is_opening), ZERO)

    def _take(self, sim: _Sim, book: BookSnapshot) -> None:
        """Fill `sim` as a taker against `book` (FOK: all or nothing)."""
        order = sim.order
        side = order.intent.book_side
        plan: list[tuple[PriceLevel, Decimal]] = []
        need = sim.leaves
        for level in self._crossing(book, side, order.price):
            if need <= 0:
                break
            take = min(self._available(order.market_slug, side, level), need)
            if take > 0:
                plan.append((level, take))
                need -= take
        if order.tif is TimeInForce.FOK and need > 0:
            self._emit(sim, ExecutionType.CANCELED, OrderState.CANCELED,
                       text=f"FOK: only {sim.leaves - need} of {sim.leaves} available")
            return
        for level, take in plan:
            self._consume(order.market_slug, side, level, take)
            fee = sim.taker_fees.fill(take, level.price)
            self._fill(sim, take, level.price, fee, aggressor=True)

    @staticmethod
    def _crossing(book: BookSnapshot, side: Side, limit: Decimal) -> Iterable[PriceLevel]:
        """Opposite-side levels a `side` order at `limit` trades with, best first."""
        if side is Side.BUY:
            return (lv for lv in book.offers if lv.price <= limit)
        return (lv for lv in book.bids if lv.price >= limit)

    # --- liquidity memory -------------------------------------------------------------------------

    def _available(self, slug: str, side: Side, level: PriceLevel) -> Decimal:
        mem = self._taken.get(slug, {}).get((side, level.price))
        if mem is None or mem.level_qty != level.qty:
            return level.qty
        return max(level.qty - mem.taken, ZERO)

    def _consume(self, slug: str, side: Side, level: PriceLevel, qty: Decimal) -> None:
        per_market = self._taken.setdefault(slug, {})
        mem = per_market.get((side, level.price))
        already = mem.taken if mem is not None and mem.level_qty == level.qty else ZERO
        per_market[(side, level.price)] = _Taken(level.qty, already + qty)

    def _refresh(self, book: BookSnapshot) -> None:
        """Forget taken liquidity at levels whose size changed (the book refreshed there)."""
        per_market = self._taken.get(book.market_slug)
        if not per_market:
            return
        sizes = {(Side.BUY, lv.price): lv.qty for lv in book.offers}
        sizes.update({(Side.SELL, lv.price): lv.qty for lv in book.bids})
        for key, mem in list(per_market.items()):
            if sizes.get(key) != mem.level_qty:
                del per_market[key]

    def effective_book(self, book: BookSnapshot) -> BookSnapshot:
        """`book` minus the liquidity paper orders already took from it (empty levels dropped).
        On every frame's path: a book nothing was taken from comes back as it is (no copy)."""
        taken = self._taken.get(book.market_slug)
        if not taken:  # the usual case: only empty levels would go (a stored book has none)
            if _all_sized(book.bids) and _all_sized(book.offers):
                return book
            taken = {}
        changed = False

        def left(levels: tuple[PriceLevel, ...], side: Side) -> tuple[PriceLevel, ...]:
            nonlocal changed
            out = []
            for lv in levels:
                qty = lv.qty
                mem = taken.get((side, lv.price))
                if mem is not None and mem.level_qty == qty:  # as `_available`
                    qty = max(qty - mem.taken, ZERO)
                if qty > 0:
                    if qty == lv.qty:
                        out.append(lv)
                        continue
                    out.append(PriceLevel(lv.price, qty))
                changed = True
            return tuple(out)

        bids, offers = left(book.bids, Side.SELL), left(book.offers, Side.BUY)
        if not changed:
            return book
        return attrs.evolve(book, bids=bids, offers=offers)

    # --- market data driving resting orders -------------------------------------------------------

    def on_book(self, book: BookSnapshot, *, trusted: bool = True) -> list[Fill]:
        """A new full book: refresh memory, fill resting orders it crosses (as maker). The engine
        has already marked the ledger with it (the ledger's marks have one writer)."""
        if book.market_slug not in self._seen:
            self._seen.add(book.market_slug)
            if self._traded_before(book.market_slug):
                self._taken[book.market_slug] = {
                    **{(Side.BUY, lv.price): _Taken(lv.qty, lv.qty) for lv in book.offers},
                    **{(Side.SELL, lv.price): _Taken(lv.qty, lv.qty) for lv in book.bids}}
        self._refresh(book)
        if not trusted or book.state is not MarketState.OPEN:
            return []
        fills: list[Fill] = []
        for sim in self._resting_in(book.market_slug):
            side = sim.order.intent.book_side
            for level in self._crossing(book, side, sim.order.price):
                if sim.leaves <= 0:
                    break
                take = min(self._available(book.market_slug, side, level), sim.leaves)
                if take > 0:
                    self._consume(book.market_slug, side, level, take)
                    fills += self._maker_fill(sim, take)
        return fills

    def _traded_before(self, slug: str) -> bool:
        """The ledger traded in `slug` before this run (a restored ledger: the book the last run
        took from may still show the same levels) and it is not settled. A market this run took
        from already has its memory."""
        m = self.ledger.markets.get(slug)
        return slug not in self._taken and m is not None and m.settled_value is None and bool(
            m.net_qty or m.realized_pnl or m.fees)

    def on_continuity_lost(self) -> list[TrackedOrder]:
        """The market feed dropped: cancel every resting paper order.

        The exchange cancels every order at maintenance, and from here a maintenance cannot be
        told from a plain reconnect; a paper order kept through it would fill against the first
        book after reopening, which the real one cannot (never kinder than the exchange).
        """
        return self.cancel_all(reason="market feed continuity lost (maintenance cancels all)")

    def on_market_state(self, market_slug: str, state: MarketState) -> None:
        """The market's book left OPEN; a resolved market cancels our orders and is settled."""
        if state not in RESOLVED_STATES:
            return
        self.cancel_all(market_slug, reason="market resolved")
        if self.ledger.position(market_slug).net_qty != 0:
            self._unsettled.add(market_slug)

    async def settle_resolved(self, progress: Beat, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Settle resolved markets' paper positions once the exchange publishes their value
        (a supervised child in paper mode)."""
        task_status.started()
        while True:
            progress.beat()
            for slug in sorted(self._unsettled):
                await self._settle_if_published(slug)
            await trio.sleep(self._settle_poll)

    async def _settle_if_published(self, slug: str) -> None:
        if self._settlement is None:
            return
        try:
            value = await self._settlement(slug)
        except Exception as exc:  # the exchange may be busy or in maintenance: ask again later
            log.warning("paper: settlement of %s not readable: %s", slug, exc)
            return
        if value is None:
            return
        self._unsettled.discard(slug)
        if self.ledger.position(slug).net_qty != 0:
            realized = self.ledger.settle(slug, value)
            log.info("paper: %s settled at %s, realized %s", slug, value, realized)

    def forget(self, market_slug: str) -> None:
        """The market left the universe (flat, no open order): its liquidity memory goes."""
        self._taken.pop(market_slug, None)
        self._seen.discard(market_slug)
        self._unsettled.discard(market_slug)

    def market_keys(self) -> set[str]:
        return (set(self._taken) | self._seen | self._unsettled
                | {s.order.market_slug for s in self._resting.values()})

    def on_trade(self, trade: TradePrint) -> list[Fill]:
        """A trade printed strictly through a resting order's price fills it (as maker)."""
        left = trade.qty
        fills: list[Fill] = []
        for sim in self._resting_in(trade.market_slug):
            if left <= 0:
                break
            buy = sim.order.intent.book_side is Side.BUY
            through = trade.price < sim.order.price if buy else trade.price > sim.order.price
            if through:
                take = min(left, sim.leaves)
                left -= take
                fills += self._maker_fill(sim, take)
        return fills

    def _resting_in(self, slug: str) -> list[_Sim]:
        return [s for s in self._resting.values() if s.order.market_slug == slug]

    def _maker_fill(self, sim: _Sim, qty: Decimal) -> list[Fill]:
        price = sim.order.price
        side = sim.order.intent.book_side
        opening = self._opening_qty(sim.order.market_slug, side, qty)
        if opening > 0:
            others = self._reserved() - (sim.leaves * cost_per_contract(sim.order.intent, price)
                                         if sim.order.intent.is_opening else ZERO)
            if opening * cost_per_contract(sim.order.intent, price) > self.ledger.cash - others:
                # the exchange cancels resting orders that are no longer funded
                self._cancel(sim, "unfunded")
                return []
        fee = FeeAccumulator(MAKER_THETA).fill(qty, price)  # rebates round per fill
        sim.maker_fees += fee
        fill = self._fill(sim, qty, price, fee, aggressor=False)
        if sim.leaves <= 0:
            self._resting.pop(sim.order.order_id, None)
        return [fill] if fill is not None else []

    # --- cancels ----------------------------------------------------------------------------------

    def sync_signals(self, slug: str, signals: Iterable[Signal]) -> list[TrackedOrder]:
        """Cancel resting orders in `slug` whose signal disappeared or whose limit moved.

        Synchronous, like `cancel` and `cancel_all`, and like the live executor's (which queues
        its cancels): paper and live share one face, so the root never checks which it holds.
        """
        limits = {s.intent: s.limit_price for s in signals if s.market_slug == slug}
        cancelled = []
        for sim in self._resting_in(slug):
            limit = limits.get(sim.order.intent)
            if limit is None or limit != sim.order.price:
                why = "signal gone" if limit is None else f"limit moved to {limit}"
                self._cancel(sim, why)
                cancelled.append(sim.order)
        return cancelled

    def cancel(self, order_id: str, reason: str = "cancel requested") -> bool:
        sim = self._resting.get(order_id)
        if sim is None:
            return False
        self._cancel(sim, reason)
        return True

    def cancel_all(self, slug: str | None = None,
                         reason: str = "cancel all") -> list[TrackedOrder]:
        sims = [s for s in self._resting.values() if slug is None or s.order.market_slug == slug]
        for sim in sims:
            self._cancel(sim, reason)
        return [s.order for s in sims]

    def cancel_restored(self, orders: Iterable[TrackedOrder]) -> int:
        """Paper orders left open by a previous run no longer exist: book them cancelled."""
        n = 0
        for order in orders:
            if not order.is_open:
                continue
            if order.exchange_id is None:
                order.exchange_id = order.local_id
            self.registry.add(order)
            booked = self.ledger.booked(order.order_id, order.market_slug)
            sim = _Sim(order, FeeAccumulator(self._taker_theta(order.market_slug)),
                       maker_fees=booked.fees, cum=booked.cum_qty, notional=booked.notional)
            self._emit(sim, ExecutionType.CANCELED, OrderState.CANCELED, text="paper restart")
            n += 1
        return n

    def _cancel(self, sim: _Sim, reason: str) -> None:
        self._resting.pop(sim.order.order_id, None)
        sim.order.cancel_requested = True
        self._emit(sim, ExecutionType.CANCELED, OrderState.CANCELED, text=reason)

    @property
    def resting(self) -> list[TrackedOrder]:
        return [s.order for s in self._resting.values()]

    # --- the rest of the Venue surface (execution/venue.py) ----------------------------------------

    def can_submit(self, market_slug: str) -> bool:
        return True  # paper creates are answered at once: none is ever in flight

    def risk_orders(self, market_slug: str | None = None) -> list[Order]:
        return self.registry.open_model_orders(market_slug)

    @property
    def trading_allowed(self) -> bool:
        return True  # no exchange to reconcile with

    @property
    def readiness_reason(self) -> str:
        return ""

    def status(self) -> dict[str, Any]:
        return {"trading_allowed": True, "reason": "", "resting": len(self._resting)}

    async def run(self, events: trio.MemoryReceiveChannel[Any], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Paper has no private stream nor tasks of its own: drains `events` until closed."""
        task_status.started()
        async for _ in events:
            pass

    async def shutdown(self, *, cancel: bool = True) -> ShutdownReport:
        """Cancel the resting paper orders (booked at once, so always confirmed)."""
        if not cancel:
            return ShutdownReport(True, (), "cancel on shutdown disabled")
        cancelled = self.cancel_all(reason="shutdown")
        return ShutdownReport(True, (), f"{len(cancelled)} paper order(s) cancelled")

    # --- emitting executions ----------------------------------------------------------------------

    def _fill(self, sim: _Sim, qty: Decimal, price: Decimal, fee: Decimal, *,
              aggressor: bool) -> Fill | None:
        sim.cum += qty
        sim.notional += qty * price
        done = sim.cum >= sim.order.quantity
        return self._emit(sim, ExecutionType.FILL if done else ExecutionType.PARTIAL_FILL,
                          OrderState.FILLED if done else OrderState.PARTIALLY_FILLED,
                          last_qty=qty, last_px=price, fee=fee, aggressor=aggressor)

    def _emit(self, sim: _Sim, exec_type: ExecutionType, state: OrderState, *,
              last_qty: Decimal = ZERO, last_px: Decimal | None = None,
              fee: Decimal | None = None, aggressor: bool | None = None, reject: str = "",
              text: str = "") -> Fill | None:
        o = sim.order
        n = next(self._exec_ids)
        report = Order(
            order_id=o.order_id, market_slug=o.market_slug, intent=o.intent, price=o.price,
            quantity=o.quantity, cum_quantity=sim.cum,
            leaves_quantity=sim.leaves if not state.is_terminal else ZERO, state=state,
            order_type=o.order_type, tif=o.tif,
            avg_px=sim.notional / sim.cum if sim.cum > 0 else None, create_time=o.created_at,
            commission_total=sim.commission)
        execution = Execution(
            exec_id=f"paper-{self._session}-e{n}", order=report, exec_type=exec_type,
            last_shares=last_qty, last_px=last_px,
            trade_id=f"paper-{self._session}-t{n}" if exec_type.is_fill else "",
            aggressor=aggressor, commission=fee, reject_reason=reject, text=text,
            transact_time=self._clock.now())
        return book_execution(execution, self.registry, self.ledger, self._recorder)

    def _taker_theta(self, slug: str) -> Decimal:
        info = self._markets.get(slug)
        return taker_theta(info) if info is not None else TAKER_THETA
