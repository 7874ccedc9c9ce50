"""Unit tests of the live executor's rules, with a hand-written exchange and the real store.

The exchange here is a small fake of the REST client (the network path is covered against
`polybot.sim` in tests/integration/live); time runs on Trio's autojump clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from polybot.execution.live import LiveConfig, LiveExecutor, LiveNotice
from polybot.execution.orders import OrderRegistry
from polybot.execution.reconcile import (
    CASH,
    Diff,
    DiffTracker,
    compare,
    exchange_avg_yes,
    matches_intent,
    report_execution,
)
from polybot.ledger import Ledger
from polybot.model import (
    Balance,
    BookSnapshot,
    Execution,
    ExecutionType,
    Intent,
    MarketState,
    Order,
    OrderRequest,
    OrderState,
    PriceLevel,
    Signal,
    TimeInForce,
)
from polybot.polymarket import errors as E
from polybot.polymarket import wire
from polybot.polymarket.rest import DeferredCreate
from polybot.polymarket.stream import ContinuityLost, StreamConnected
from polybot.store import Store, StoreError

D = Decimal
SLUG = "aec-nba-bos-lal"
SLUG2 = "aec-nba-nyk-mia"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# --- pure helpers ---------------------------------------------------------------------------------


def exch_order(oid: str, *, slug: str = SLUG, intent: Intent = Intent.BUY_LONG, price: str = "0.40",
               qty: str = "5", cum: str = "0", state: OrderState = OrderState.NEW,
               created: datetime | None = T0, avg: str | None = None,
               fees: str | None = None) -> Order:
    return Order(order_id=oid, market_slug=slug, intent=intent, price=D(price), quantity=D(qty),
                 cum_quantity=D(cum), leaves_quantity=D(qty) - D(cum), state=state,
                 create_time=created, avg_px=D(avg) if avg else None,
                 commission_total=D(fees) if fees else None)


def test_an_exchange_order_matches_an_intent_only_on_every_field_and_not_before_it():
    kw = dict(market_slug=SLUG, intent=Intent.BUY_LONG, price=D("0.40"), quantity=D(5),
              created_at=T0, tolerance=timedelta(seconds=2))
    assert matches_intent(reported=exch_order("o1"), **kw)
    assert matches_intent(reported=exch_order("o1", created=T0 - timedelta(seconds=1)), **kw)
    assert not matches_intent(reported=exch_order("o1", created=T0 - timedelta(seconds=3)), **kw)
    assert not matches_intent(reported=exch_order("o1", price="0.41"), **kw)
    assert not matches_intent(reported=exch_order("o1", qty="6"), **kw)
    assert not matches_intent(reported=exch_order("o1", intent=Intent.BUY_SHORT), **kw)
    assert not matches_intent(reported=exch_order("o1", slug=SLUG2), **kw)


def test_exchange_cost_becomes_the_ledgers_average_yes_price_for_longs_and_shorts():
    assert exchange_avg_yes(D(10), D("4.5")) == D("0.45")
    assert exchange_avg_yes(D(-10), D("6")) == D("0.4")  # short: cost is Σ(1 − p)
    assert exchange_avg_yes(D(0), D(1)) is None


def test_a_difference_is_persistent_only_after_two_equal_quiet_checks():
    t = DiffTracker(2)
    d = Diff(SLUG, D(0), D(5))
    assert t.observe([d], quiet=True) == []
    assert t.observe([d], quiet=True) == [d]
    t2 = DiffTracker(2)
    t2.observe([d], quiet=True)
    assert t2.observe([d], quiet=False) == []  # an execution in between restarts the count
    assert t2.observe([d], quiet=True) == []
    t3 = DiffTracker(2)
    t3.observe([d], quiet=True)
    assert t3.observe([Diff(SLUG, D(0), D(6))], quiet=True) == []  # it moved: not the same


def test_compare_lists_position_and_cash_differences():
    led = Ledger(D(100))
    led.apply_execution("o1", SLUG, Intent.BUY_LONG, D(5), last_px=D("0.4"))
    assert compare(led, {SLUG: D(5)}, D(98)) == []
    assert compare(led, {SLUG: D(4), SLUG2: D(-1)}, D(97)) == [
        Diff(SLUG, D(5), D(4)), Diff(SLUG2, D(0), D(-1)), Diff(CASH, D(98), D(97))]


def test_a_pending_report_has_no_synthetic_execution():
    assert report_execution(exch_order("o1", state=OrderState.PENDING_NEW)) is None
    ex = report_execution(exch_order("o1", state=OrderState.FILLED, cum="5"))
    assert ex is not None and ex.exec_type is ExecutionType.FILL and ex.exec_id == ""


# --- a fake exchange ---------------------------------------------------------------------------------


class FakeExchange:
    """Just enough of PolymarketRestClient, with every call logged."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.open: dict[str, Order] = {}
        self.orders: dict[str, Order] = {}
        self.positions_: dict[str, wire.ExchangePosition] = {}
        self.cash = D(1000)
        self.acts: list[wire.Activity] = []
        self.settled: dict[str, Decimal] = {}
        self.create: Callable[[OrderRequest], Awaitable[str]] | None = None
        self.fail_reads = 0
        self.fail_cancels = 0
        self.cancel_batches: list[list[str]] = []
        self.cancels_remove = True
        self._n = 0

    def _read(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise E.ServerError("maintenance", status=503)

    def place(self, req: OrderRequest, *, cum: str = "0") -> Order:
        self._n += 1
        o = exch_order(f"x{self._n}", slug=req.market_slug, intent=req.intent,
                       price=str(req.price), qty=str(req.quantity), cum=cum,
                       created=datetime.now(UTC))
        self.open[o.order_id] = o
        self.orders[o.order_id] = o
        return o

    async def create_order(self, req: OrderRequest) -> str:
        self.calls.append("create")
        if self.create is not None:
            return await self.create(req)
        return self.place(req).order_id

    async def send_create(self, req: OrderRequest) -> DeferredCreate:
        return DeferredCreate(lambda: self.create_order(req))

    async def cancel_order(self, order_id: str, market_slug: str) -> None:
        await self.cancel_orders([(order_id, market_slug)])

    async def cancel_orders(self, orders: list[tuple[str, str]]) -> list[str]:
        self.calls.append("cancel")
        if self.fail_cancels > 0:
            self.fail_cancels -= 1
            raise E.ServerError("boom", status=500)
        assert 1 <= len(orders) <= 20
        self.cancel_batches.append([o for o, _ in orders])
        if self.cancels_remove:
            for oid, _ in orders:
                if self.open.pop(oid, None) is not None:
                    self.orders[oid] = attrs.evolve(self.orders[oid], state=OrderState.CANCELED)
        return [o for o, _ in orders]

    async def open_orders(self, slugs: Any = ()) -> list[Order]:
        self._read("open_orders")
        return [o for o in self.open.values() if not slugs or o.market_slug in set(slugs)]

    async def order(self, order_id: str) -> Order:
        self._read("order")
        if order_id not in self.orders:
            raise E.NotFound("no such order", status=404)
        return self.orders[order_id]

    async def positions(self, market: str | None = None) -> dict[str, wire.ExchangePosition]:
        self._read("positions")
        return {s: p for s, p in self.positions_.items() if market is None or s == market}

    async def activities(self, *, types: Any = (), **kw: Any) -> list[wire.Activity]:
        self._read("activities")
        return [a for a in self.acts if not types or a.type in types]

    def deposit(self, tid: str, amount: str) -> None:
        self.cash += D(amount)
        self.acts.insert(0, wire.parse_activity({
            "type": "ACTIVITY_TYPE_ACCOUNT_DEPOSIT",
            "accountBalanceChange": {"transactionId": tid, "amount": {"value": amount}}}))

    def change(self, kind: str, tid: str, amount: str, status: str, *,
               refunds: tuple[str, ...] = (), moves: bool = True) -> None:
        """A cash activity (newest first); `moves`: its money is in the balance now."""
        tx = {"transactionId": tid, "status": f"ACCOUNT_BALANCE_CHANGE_STATUS_{status}",
              "amount": {"value": amount, "currency": "USD"}}
        body = {**tx, "transactions": [tx] + [
            {"transactionId": f"{tid}-r{i}", "amount": {"value": r, "currency": "USD"}}
            for i, r in enumerate(refunds)]}
        self.acts = [a for a in self.acts if a.change_id != tid]
        self.acts.insert(0, wire.parse_activity({"type": f"ACTIVITY_TYPE_{kind}",
                                                 "accountBalanceChange": body}))
        if moves:
            self.cash += D(amount) + sum((D(r) for r in refunds), D(0))

    async def balances(self) -> list[Balance]:
        self._read("balances")
        return [Balance(current_balance=self.cash)]

    async def settlement(self, slug: str) -> Decimal | None:
        return self.settled.get(slug)

    def set_position(self, slug: str, net: str, cost: str) -> None:
        self.positions_[slug] = wire.ExchangePosition(slug, D(net), cost=D(cost))


def config(**kw: Any) -> LiveConfig:
    base: dict[str, Any] = dict(reconcile_interval=10.0, cross_check_delay=0.5,
                                recheck_delay=10.0, absent_reads=3,
                                absent_read_spacing=1.0, retry_base=1.0, retry_cap=4.0,
                                cancel_retry=1.0, shutdown_create_wait=3.0,
                                shutdown_cancel_timeout=5.0, shutdown_poll=0.5)
    base.update(kw)
    return LiveConfig(**base)


class Harness:
    def __init__(self, tmp_path: Path, nursery: trio.Nursery, **cfg: Any) -> None:
        self.fake = FakeExchange()
        self.store = Store(tmp_path / "db.sqlite", in_thread=False)
        self.registry = OrderRegistry(id_prefix="t")
        self.ledger = Ledger()
        self.notices: list[LiveNotice] = []
        self.transfers: list[Decimal] = []  # what reached the trading state's baselines
        self.adopted: list[Decimal] = []
        self.ex = LiveExecutor(self.fake, self.registry, self.ledger, self.store,
                               slugs=[SLUG, SLUG2], config=config(**cfg),
                               notify=self.notices.append, on_transfer=self.transfers.append,
                               on_adopted=self.adopted.append)
        self.nursery = nursery
        self.send, self.recv = trio.open_memory_channel[Any](1000)

    async def start(self, *, ready: bool = True) -> None:
        await self.nursery.start(self.store.run)
        self.run_scope = trio.CancelScope()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with self.run_scope:
                await self.ex.run(self.recv, task_status=task_status)

        await self.nursery.start(run)
        await self.send.send(StreamConnected("private", 1, trio.current_time()))
        if ready:
            with trio.fail_after(30):
                await self.ex.wait_ready()

    def execution(self, order: Order, exec_type: ExecutionType, eid: str, *, last: str = "0",
                  px: str | None = None, fee: str | None = None, trade: str = "") -> None:
        self.ex._on_event(wire.ExecutionReported(Execution(
            exec_id=eid, order=order, exec_type=exec_type, last_shares=D(last),
            last_px=D(px) if px else None, commission=D(fee) if fee else None, trade_id=trade)))

    def kinds(self) -> list[str]:
        return [n.kind for n in self.notices]


@pytest.fixture
async def h(tmp_path: Path) -> Any:
    # tests take `autojump_clock` themselves: pytest-trio only sees a clock passed to the test
    async with trio.open_nursery() as nursery:
        harness = Harness(tmp_path, nursery)
        yield harness
        nursery.cancel_scope.cancel()


def req(qty: str = "5", price: str = "0.40", tif: TimeInForce = TimeInForce.GTC,
        slug: str = SLUG, intent: Intent = Intent.BUY_LONG) -> OrderRequest:
    return OrderRequest(slug, intent, D(price), D(qty), tif)


# --- submitting ---------------------------------------------------------------------------------------


async def test_the_intent_is_committed_before_the_post_is_sent(h, autojump_clock):
    await h.start()
    seen: list[Any] = []

    async def create(r: OrderRequest) -> str:
        seen.extend(h.store.load_orders())  # what a crash right now would leave behind
        return h.fake.place(r).order_id

    h.fake.create = create
    order = await h.ex.submit(req())
    assert [(o.local_id, o.state) for o in seen] == [(order.local_id, OrderState.SUBMITTING)]
    assert order.state is OrderState.PENDING_NEW and order.exchange_id == "x1"


async def test_an_intent_the_store_cannot_commit_is_never_sent(h, autojump_clock):
    await h.start()

    def broken(order: Any) -> None:
        raise StoreError("disk full")

    h.store.note_intent = broken  # type: ignore[method-assign]
    order = await h.ex.submit(req())
    assert order.state is OrderState.REJECTED and "intent not stored" in order.reject_reason
    assert "create" not in h.fake.calls


async def test_an_intent_stored_then_halted_before_the_send_is_stored_as_rejected(h, autojump_clock):
    # chaos seed 3 (CI): the drawdown halt came between the intent's commit and the POST; the
    # order was rejected in memory but its row stayed SUBMITTING, an unresolved create for ever
    await h.start()
    h.ex.may_send = lambda request: False
    order = await h.ex.submit(req())
    assert order.state is OrderState.REJECTED and "halted" in order.reject_reason
    assert "create" not in h.fake.calls
    await h.store.flush()
    assert [(o.local_id, o.state) for o in h.store.load_orders(open_only=False)
            if o.local_id == order.local_id] == [(order.local_id, OrderState.REJECTED)]


async def test_nothing_is_sent_before_startup_reconciliation_or_while_the_stream_is_down(h, autojump_clock):
    h.fake.fail_reads = 2
    await h.start(ready=False)
    assert await h.ex.submit(req()) is None
    assert "startup" in h.ex.readiness_reason
    await h.ex.wait_ready()
    await h.send.send(ContinuityLost("private", "closed", trio.current_time()))
    await trio.sleep(0.1)
    assert not h.ex.trading_allowed and "private stream down" in h.ex.readiness_reason
    assert await h.ex.submit(req()) is None
    await h.send.send(StreamConnected("private", 2, trio.current_time()))
    await h.ex.wait_ready()  # a reconciliation after the reconnect re-enables trading
    assert h.fake.calls.count("create") == 0


async def test_a_definite_refusal_rejects_the_order_and_leaves_the_market_open(h, autojump_clock):
    await h.start()

    async def refuse(r: OrderRequest) -> str:
        raise E.BadRequest("missing marketSlug", status=400)

    h.fake.create = refuse
    order = await h.ex.submit(req())
    assert order.state is OrderState.REJECTED and "BadRequest" in order.reject_reason
    assert h.ex.can_submit(SLUG)


async def ambiguous(r: OrderRequest) -> str:
    raise E.OutcomeUnknown("timeout", sent={}, cause=E.Timeout("t"))


async def test_an_unknown_outcome_freezes_the_market_and_is_proven_absent_by_clean_reads(h, autojump_clock):
    await h.start()
    h.fake.create = ambiguous
    order = await h.ex.submit(req())
    assert order.state is OrderState.OUTCOME_UNKNOWN
    assert h.ex.frozen_markets() == {SLUG: order.local_id}
    assert h.ex.can_submit(SLUG2) and not h.ex.can_submit(SLUG)
    assert await h.ex.submit(req()) is None
    assert "outcome_unknown" in h.kinds()
    await trio.sleep(1.5)
    assert order.state is OrderState.OUTCOME_UNKNOWN  # two reads are not a proof
    await trio.sleep(2)
    assert order.state is OrderState.REJECTED and h.ex.proven_absent == 1
    assert h.ex.can_submit(SLUG)
    assert h.fake.calls.count("create") == 1  # never resent


async def test_a_failed_read_restarts_the_proof_of_absence(h, autojump_clock):
    await h.start()
    h.fake.create = ambiguous
    order = await h.ex.submit(req())
    await trio.sleep(1.5)
    h.fake.fail_reads = 1
    await trio.sleep(2.2)
    assert order.state is OrderState.OUTCOME_UNKNOWN
    await trio.sleep(2)
    assert order.state is OrderState.REJECTED


async def test_an_unknown_outcome_found_open_is_adopted_with_its_fills(h, autojump_clock):
    await h.start()

    async def placed_then_timeout(r: OrderRequest) -> str:
        o = h.fake.place(r)
        h.fake.open[o.order_id] = h.fake.orders[o.order_id] = exch_order(
            o.order_id, cum="2", state=OrderState.PARTIALLY_FILLED, avg="0.40", fees="0.03",
            created=o.create_time)
        raise E.OutcomeUnknown("timeout", sent={}, cause=E.Timeout("t"))

    h.fake.create = placed_then_timeout
    order = await h.ex.submit(req())
    await trio.sleep(0.5)
    assert order.exchange_id == "x1" and order.state is OrderState.PARTIALLY_FILLED
    assert h.ledger.position(SLUG).net_qty == 2
    assert h.ledger.cash == D(1000) - D("0.80") - D("0.03")
    assert h.ex.can_submit(SLUG)


async def test_an_unknown_ioc_that_filled_is_booked_from_a_stable_position_change(h, autojump_clock):
    await h.start()

    async def filled_then_timeout(r: OrderRequest) -> str:
        h.fake.set_position(SLUG, "5", "2.00")
        h.fake.acts = [wire.Activity(type="ACTIVITY_TYPE_TRADE", market_slug=SLUG, trade_id="t9",
                                     price=D("0.40"), qty=D(5), time=datetime.now(UTC))]
        raise E.OutcomeUnknown("timeout", sent={}, cause=E.Timeout("t"))

    h.fake.create = filled_then_timeout
    order = await h.ex.submit(req(tif=TimeInForce.IOC))
    await trio.sleep(0.5)
    assert order.state is OrderState.OUTCOME_UNKNOWN  # one read is not enough
    await trio.sleep(1.0)
    assert order.state is OrderState.FILLED and order.cum_qty == 5
    assert h.ledger.position(SLUG).net_qty == 5 and h.ledger.position(SLUG).avg_price == D("0.4")
    assert "adopted" in h.kinds() and h.ex.can_submit(SLUG)
    # the execution arriving late (stream back) is linked to it and books nothing more
    h.execution(exch_order("x77", cum="5", state=OrderState.FILLED, avg="0.40",
                           created=datetime.now(UTC)), ExecutionType.FILL, "e1", last="5",
                px="0.40")
    assert order.exchange_id == "x77" and h.ledger.position(SLUG).net_qty == 5


async def test_an_execution_that_beats_the_posts_answer_is_linked_and_applied(h, autojump_clock):
    await h.start()

    async def stream_first(r: OrderRequest) -> str:
        o = h.fake.place(r)
        h.execution(exch_order(o.order_id, cum="5", state=OrderState.FILLED, avg="0.40",
                               fees="0.05", created=o.create_time),
                    ExecutionType.FILL, "e1", last="5", px="0.40", fee="0.05", trade="t1")
        return o.order_id

    h.fake.create = stream_first
    order = await h.ex.submit(req(tif=TimeInForce.IOC))
    assert order.exchange_id == "x1" and order.state is OrderState.FILLED
    assert h.registry.illegal_transitions == 0
    assert h.ledger.position(SLUG).net_qty == 5 and h.ledger.cash == D(1000) - D("2.05")


async def test_a_report_without_intent_still_books_our_orders_fill(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    h.fake.open["x1"] = h.fake.orders["x1"] = attrs.evolve(exch_order(
        "x1", cum="2", state=OrderState.PARTIALLY_FILLED, avg="0.40", created=order.created_at),
        intent=Intent.UNKNOWN, market_slug="")
    await trio.sleep(10.5)
    assert order.cum_qty == 2 and h.ledger.position(SLUG).net_qty == 2
    assert h.ex.trading_allowed


# --- executions -----------------------------------------------------------------------------------------


async def test_a_duplicate_execution_books_once_and_a_fill_before_new_still_applies(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    filled = exch_order("x1", cum="3", state=OrderState.PARTIALLY_FILLED, avg="0.40",
                        fees="0.02", created=order.created_at)
    h.execution(filled, ExecutionType.PARTIAL_FILL, "e1", last="3", px="0.40", fee="0.02")
    h.execution(filled, ExecutionType.PARTIAL_FILL, "e1", last="3", px="0.40", fee="0.02")
    h.execution(exch_order("x1", created=order.created_at), ExecutionType.NEW, "e0")
    assert order.state is OrderState.PARTIALLY_FILLED and order.cum_qty == 3
    assert h.ledger.position(SLUG).net_qty == 3 and h.ledger.cash == D(1000) - D("1.22")


async def test_a_busted_trade_is_reversed_from_the_fill_booked_for_it(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req(tif=TimeInForce.IOC))
    h.execution(exch_order("x1", cum="5", state=OrderState.FILLED, avg="0.40", fees="0.05",
                           created=order.created_at), ExecutionType.FILL, "e1", last="5",
                px="0.40", fee="0.05", trade="t1")
    h.ex._on_event(wire.PositionChanged(SLUG, None, None, "LEDGER_ENTRY_TYPE_CORRECTION", "t1"))
    assert h.ledger.position(SLUG).net_qty == 0 and h.ledger.cash == 1000
    assert h.ledger.markets[SLUG].fees == 0 and h.ledger.realized_pnl == 0
    h.ex._on_event(wire.PositionChanged(SLUG, None, None, "LEDGER_ENTRY_TYPE_CORRECTION", "t1"))
    assert h.ledger.cash == 1000  # a repeated bust event reverses nothing more


async def test_deposits_are_transfers_booked_once_by_transaction_id(h, autojump_clock):
    h.fake.deposit("bc-0", "40")  # before the first start: part of the adopted cash
    await h.start()
    assert h.ledger.cash == 1040 and h.ledger.net_transfers == 0
    pnl = h.ledger.pnl
    h.fake.deposit("bc-1", "250")
    h.ex._on_event(wire.BalanceChanged(Balance(current_balance=D(1040)),
                                       Balance(current_balance=D(1290)),
                                       "LEDGER_ENTRY_TYPE_DEPOSIT"))
    await trio.sleep(1)
    assert h.ledger.cash == 1290 and h.ledger.net_transfers == 250 and h.ledger.pnl == pnl
    await trio.sleep(25)  # later checks see the same activity: booked once
    assert h.ledger.net_transfers == 250 and h.ex.corrections == 0
    await h.store.flush()
    ledger = Ledger.restore(h.store.load_ledger())
    ex2 = LiveExecutor(h.fake, OrderRegistry(id_prefix="u"), ledger, h.store, slugs=[SLUG],
                       config=config())
    send, recv = trio.open_memory_channel[Any](10)
    await h.nursery.start(ex2.run, recv)
    await send.send(StreamConnected("private", 1, trio.current_time()))
    await ex2.wait_ready()
    assert ledger.net_transfers == 250 and ledger.cash == 1290  # a restart books it once too


async def test_only_money_that_moved_is_booked_and_each_booking_reaches_the_gate(h, autojump_clock):
    h.fake.change("ACCOUNT_DEPOSIT", "bc-0", "1000", "COMPLETED", moves=False)  # adopted cash
    h.fake.change("ACCOUNT_WITHDRAWAL", "bc-p0", "-50", "PENDING", moves=False)
    await h.start()
    assert (h.ledger.cash, h.ledger.net_transfers, h.transfers) == (D(1000), D(0), [])
    assert h.adopted == [D(1000)]  # the gate re-bases at the adopted equity
    h.fake.change("ACCOUNT_WITHDRAWAL", "bc-1", "-300", "REJECTED", moves=False)
    h.fake.change("ACCOUNT_DEPOSIT", "bc-2", "200", "PENDING", moves=False)
    await trio.sleep(25)  # two periodic checks
    assert (h.ledger.cash, h.ledger.net_transfers, h.transfers) == (D(1000), D(0), [])
    h.fake.change("ACCOUNT_DEPOSIT", "bc-2", "200", "COMPLETED")  # now the money moved
    h.fake.change("ACCOUNT_WITHDRAWAL", "bc-p0", "-50", "COMPLETED")  # pending at adoption
    h.fake.change("ACCOUNT_WITHDRAWAL", "bc-3", "-100", "PARTIALLY_REFUNDED", refunds=("40",))
    await trio.sleep(12)
    assert h.ledger.net_transfers == D(200 - 50 - 60) and h.ledger.cash == D(1090)
    assert sorted(h.transfers) == [D(-60), D(-50), D(200)]
    h.fake.change("ACCOUNT_DEPOSIT", "bc-2", "200", "PARTIALLY_REFUNDED", refunds=("-80",),
                  moves=False)  # a deposit refunded in part after it completed
    h.fake.cash -= 80
    await trio.sleep(12)
    assert h.ledger.net_transfers == D(10) and h.transfers[-1] == D(-80)
    assert h.ex.corrections == 0 and h.ledger.pnl == 0


async def test_the_adopted_equity_is_reported_once_adopted_positions_are_marked(h, autojump_clock):
    # the gate re-bases at this equity: valued at cost, the first book's bid below the cost
    # would count as today's loss (a false daily-loss halt right after the adoption)
    h.fake.set_position(SLUG, "100", "40")
    await h.start()
    assert h.ledger.position(SLUG).net_qty == 100 and h.adopted == []
    book = BookSnapshot(SLUG, (PriceLevel(D("0.35"), D(50)),), ())
    h.ledger.on_book(book)  # the engine marks the ledger, then hands the venue the book
    h.ex.on_book(book)
    assert h.adopted == [D(1035)]
    book = BookSnapshot(SLUG, (PriceLevel(D("0.30"), D(50)),), ())
    h.ledger.on_book(book)
    h.ex.on_book(book)
    assert h.adopted == [D(1035)]  # once


async def test_an_adopted_position_never_marked_is_reported_at_cost_by_the_next_check(
        h, autojump_clock):
    h.fake.set_position(SLUG, "100", "40")
    await h.start()
    await trio.sleep(25)
    assert h.adopted == []
    await trio.sleep(10)  # the first reconciliation after adoption_mark_wait (30 s)
    assert h.adopted == [D(1040)]


async def test_fee_rebates_are_income_and_other_cash_activities_are_transfers(h, autojump_clock):
    await h.start()
    h.fake.change("TAKER_FEE_REBATE", "bc-r", "12.5", "COMPLETED")
    h.fake.change("LIQUIDITY_PROGRAM", "bc-l", "7.5", "COMPLETED")
    h.fake.change("REFERRAL_BONUS", "bc-b", "25", "COMPLETED")
    h.fake.change("TRANSFER", "bc-t", "-40", "COMPLETED")
    await trio.sleep(12)
    assert h.ledger.cash == D(1005) and h.ex.corrections == 0
    assert h.ledger.net_transfers == D(-15)  # bonus and transfer: not P&L
    assert h.ledger.pnl == D(20)  # the rebates are income ...
    assert sum(h.transfers) == D(5)  # ... yet every one moves the gate's baselines


async def test_transfers_booked_by_an_older_version_are_not_booked_again(h, autojump_clock):
    h.store.set_meta("live_synced_at", "2026-11-20T18:00:00+00:00")
    h.store.set_meta("live_transfer_ids", '["bc-old"]')  # e7900f6's format: ids only
    h.ledger.set_cash(D(1000))
    h.fake.change("ACCOUNT_DEPOSIT", "bc-old", "500", "COMPLETED", moves=False)
    await h.start()
    await trio.sleep(12)
    assert (h.ledger.cash, h.ledger.net_transfers, h.transfers) == (D(1000), D(0), [])


async def test_a_cancel_requested_before_a_restart_is_sent_in_a_market_no_longer_configured(
        h, autojump_clock):
    await h.start()
    placed = await h.ex.submit(req(slug=SLUG2))
    assert placed is not None and placed.exchange_id is not None
    h.fake.cancels_remove = False
    h.fake.fail_cancels = 100  # the cancel never gets through before the crash
    h.ex.cancel(placed.local_id)
    await trio.sleep(1)
    h.run_scope.cancel()
    await h.store.flush()
    h.fake.fail_cancels = 0
    ledger = Ledger.restore(h.store.load_ledger())
    ex2 = LiveExecutor(h.fake, OrderRegistry(id_prefix="u"), ledger, h.store, slugs=[SLUG],
                       config=config())  # SLUG2 dropped from MARKET_SLUGS
    send, recv = trio.open_memory_channel[Any](10)
    await h.nursery.start(ex2.run, recv)
    await send.send(StreamConnected("private", 1, trio.current_time()))
    await ex2.wait_ready()
    await trio.sleep(2)
    assert [placed.exchange_id] in h.fake.cancel_batches


async def test_a_resolution_settles_the_market_at_the_exchanges_value(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req(tif=TimeInForce.IOC))
    h.execution(exch_order("x1", cum="5", state=OrderState.FILLED, avg="0.40",
                           created=order.created_at), ExecutionType.FILL, "e1", last="5",
                px="0.40", trade="t1")
    h.fake.settled[SLUG] = D("0.5")
    h.ex._on_event(wire.PositionChanged(SLUG, None, None, "LEDGER_ENTRY_TYPE_RESOLUTION"))
    await trio.sleep(0.1)
    m = h.ledger.markets[SLUG]
    assert m.net_qty == 0 and m.settled_value == D("0.5") and m.realized_pnl == D("0.5")


async def test_an_expired_market_is_settled_once_its_value_is_published(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req(intent=Intent.BUY_SHORT, tif=TimeInForce.IOC))
    h.execution(exch_order("x1", intent=Intent.BUY_SHORT, cum="5", state=OrderState.FILLED,
                           avg="0.40", created=order.created_at), ExecutionType.FILL, "e1",
                last="5", px="0.40", trade="t1")
    assert h.ledger.cash == 1000 - 3  # a short at 0.40 costs 0.60 a contract
    h.ex.on_market_state(SLUG, MarketState.EXPIRED)
    await trio.sleep(5)
    assert h.ledger.position(SLUG).net_qty == -5  # nothing published yet: nothing invented
    h.fake.settled[SLUG] = D(0)
    await trio.sleep(10)
    m = h.ledger.markets[SLUG]
    assert m.net_qty == 0 and m.settled_value == 0 and h.ledger.cash == 1000 + 2
    assert m.realized_pnl == 2


# --- reconciliation --------------------------------------------------------------------------------------


async def test_startup_adopts_known_orders_and_books_fills_made_while_down(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    h.fake.open.pop("x1")  # filled completely while the next bot was not running
    h.fake.orders["x1"] = exch_order("x1", cum="5", state=OrderState.FILLED, avg="0.40",
                                     fees="0.05", created=order.created_at)
    h.fake.set_position(SLUG, "5", "2.00")
    h.fake.cash = D(1000) - D(2) - D("0.05")
    await h.store.flush()
    registry = OrderRegistry(id_prefix="u")
    ledger = Ledger.restore(h.store.load_ledger())
    ex2 = LiveExecutor(h.fake, registry, ledger, h.store, slugs=[SLUG], config=config())
    send, recv = trio.open_memory_channel[Any](10)
    await h.nursery.start(ex2.run, recv)
    await send.send(StreamConnected("private", 1, trio.current_time()))
    await ex2.wait_ready()
    again = registry.get(order.local_id)
    assert again.state is OrderState.FILLED and again.cum_qty == 5
    assert ledger.position(SLUG).net_qty == 5 and ledger.cash == h.fake.cash
    assert ex2.corrections == 0  # booked from the order's report, not forced


async def test_a_second_run_after_a_group_restart_reconciles_again_before_trading(
        h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    scope = trio.CancelScope()

    async def second_run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await h.ex.run(recv, task_status=task_status)

    h.run_scope.cancel()  # the supervised group goes down ...
    await trio.sleep(1)
    h.fake.open.pop("x1")  # ... and the exchange cancels our order meanwhile
    h.fake.orders["x1"] = exch_order("x1", state=OrderState.CANCELED, created=order.created_at)
    send, recv = trio.open_memory_channel[Any](10)
    calls = h.fake.calls.count("open_orders")
    await h.nursery.start(second_run)
    assert not h.ex.trading_allowed and "startup" in h.ex.readiness_reason
    await send.send(StreamConnected("private", 1, trio.current_time()))
    await h.ex.wait_ready()
    assert h.fake.calls.count("open_orders") > calls and order.state is OrderState.CANCELED
    scope.cancel()


async def test_a_persistent_difference_is_corrected_and_a_late_execution_books_nothing(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    h.fake.open["x1"] = h.fake.orders["x1"] = exch_order(
        "x1", cum="0", state=OrderState.NEW, created=order.created_at)
    h.fake.set_position(SLUG, "2", "0.80")  # the exchange knows a fill the order report lags
    await trio.sleep(10.5)  # first check sees the difference
    assert h.ex.corrections == 0 and h.ledger.position(SLUG).net_qty == 0
    h.fake.open["x1"] = h.fake.orders["x1"] = exch_order(
        "x1", cum="2", state=OrderState.PARTIALLY_FILLED, avg="0.40", created=order.created_at)
    h.fake.set_position(SLUG, "2", "0.80")
    h.fake.cash = D(1000) - D("0.80")
    await trio.sleep(10)  # the report now books the fill: nothing left to correct
    assert h.ledger.position(SLUG).net_qty == 2 and h.ex.corrections == 0
    h.fake.set_position(SLUG, "3", "1.20")  # one contract nobody explains
    h.fake.cash -= D("0.40")
    await trio.sleep(10)
    assert h.ex.corrections == 0  # one check is not enough
    await trio.sleep(10)
    assert h.ledger.position(SLUG).net_qty == 3 and h.ledger.cash == h.fake.cash
    assert h.ex.corrections == 2 and "reconcile_difference" in h.kinds()
    msg = next(n.message for n in h.notices if n.kind == "reconcile_difference")
    assert "ledger 2" in msg and "exchange 3" in msg
    # the correction advanced the order's booked quantity: its late execution books nothing
    h.execution(exch_order("x1", cum="2", state=OrderState.PARTIALLY_FILLED, avg="0.40",
                           created=order.created_at), ExecutionType.PARTIAL_FILL, "e5",
                last="2", px="0.40")
    assert h.ledger.position(SLUG).net_qty == 3


async def test_executions_between_checks_postpone_a_correction(h, autojump_clock):
    await h.start()
    h.fake.set_position(SLUG2, "4", "2.00")
    await trio.sleep(10.5)
    h.execution(exch_order("zz", slug=SLUG2, cum="1", state=OrderState.PARTIALLY_FILLED,
                           avg="0.50"), ExecutionType.PARTIAL_FILL, "e1", last="1", px="0.50")
    await trio.sleep(10)
    assert h.ex.corrections == 0  # the fill in between makes the check not quiet


async def test_unknown_open_orders_are_reported_counted_and_left_alone_by_default(h, autojump_clock):
    h.fake.open["m1"] = exch_order("m1", slug=SLUG2, price="0.20", qty="3")
    await h.start()
    assert [o.order_id for o in h.ex.risk_orders(SLUG2)] == ["m1"]
    assert h.kinds().count("unknown_order") == 1
    await trio.sleep(25)
    assert "m1" in h.fake.open and h.kinds().count("unknown_order") == 1
    h.ex.cancel_all(reason="halted")
    await trio.sleep(1)
    assert "m1" in h.fake.open  # without cancel_unknown_orders it is not ours to cancel


# --- cancels and shutdown ---------------------------------------------------------------------------------


async def test_cancel_all_sends_batches_of_at_most_20_by_id_and_retries_failures(h, autojump_clock):
    await h.start()
    orders = [await h.ex.submit(req(slug=SLUG if i % 2 else SLUG2)) for i in range(45)]
    h.fake.fail_cancels = 1
    h.ex.cancel_all(reason="halted")
    await trio.sleep(3)
    sent = [oid for batch in h.fake.cancel_batches for oid in batch]
    assert sorted(set(sent)) == sorted(o.exchange_id for o in orders)
    assert max(len(b) for b in h.fake.cancel_batches) == 20
    assert h.fake.calls.count("cancel") >= 4  # 3 batches + the failed one retried


async def test_unconfirmed_cancels_are_sent_again(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    h.fake.cancels_remove = False
    assert h.ex.cancel(order.local_id, "test")
    await trio.sleep(2.5)
    assert sum(b.count(order.exchange_id) for b in h.fake.cancel_batches) >= 2
    h.execution(exch_order("x1", state=OrderState.CANCELED, created=order.created_at),
                ExecutionType.CANCELED, "e1")
    n = len(h.fake.cancel_batches)
    await trio.sleep(3)
    assert len(h.fake.cancel_batches) == n and not order.is_open


async def test_resting_orders_whose_signal_disappeared_are_cancelled(h, autojump_clock):
    await h.start()
    keep = await h.ex.submit(req(price="0.40"))
    moved = await h.ex.submit(req(price="0.35", slug=SLUG2))
    signals = [Signal(SLUG, Intent.BUY_LONG, D("0.40"), D(5), D("0.5"), D("0.05")),
               Signal(SLUG2, Intent.BUY_LONG, D("0.36"), D(5), D("0.5"), D("0.05"))]
    assert h.ex.sync_signals(SLUG, signals) == []
    assert h.ex.sync_signals(SLUG2, signals) == [moved]
    assert h.ex.sync_signals(SLUG, []) == [keep]
    await trio.sleep(0.5)
    assert sorted(oid for b in h.fake.cancel_batches for oid in b) == sorted(
        [keep.exchange_id, moved.exchange_id])


async def test_shutdown_waits_for_creates_in_flight_then_cancels_and_confirms(h, autojump_clock):
    await h.start()
    resting = await h.ex.submit(req())

    async def slow(r: OrderRequest) -> str:
        await trio.sleep(1)
        return h.fake.place(r).order_id

    h.fake.create = slow
    async with trio.open_nursery() as n:
        n.start_soon(h.ex.submit, req(slug=SLUG2))
        await trio.sleep(0.1)
        report = await h.ex.shutdown(cancel=True)
    assert report.all_confirmed and h.fake.open == {}
    assert resting.exchange_id in [oid for b in h.fake.cancel_batches for oid in b]
    assert await h.ex.submit(req()) is None  # nothing new after shutdown began


async def test_shutdown_reports_orders_it_could_not_cancel(h, autojump_clock):
    await h.start()
    order = await h.ex.submit(req())
    h.fake.cancels_remove = False
    start = trio.current_time()
    report = await h.ex.shutdown(cancel=True)
    assert not report.all_confirmed and report.still_open == (order.exchange_id,)
    assert trio.current_time() - start <= 3 + 5 + 1  # bounded
    assert "shutdown_open_orders" in h.kinds()


async def test_shutdown_does_not_wait_on_an_unknown_outcome_that_is_not_open(
        h, autojump_clock):
    await h.start()
    h.fake.create = ambiguous
    order = await h.ex.submit(req())
    start = trio.current_time()
    report = await h.ex.shutdown(cancel=True)
    assert report.all_confirmed and "outcome unknown" in report.detail
    assert trio.current_time() - start < 3 + 2  # two reads, not the whole time limit
    assert order.state is OrderState.OUTCOME_UNKNOWN  # the next start resolves it
    assert await h.ex.submit(req(slug=SLUG2)) is None  # shutting down


async def test_shutdown_cancels_an_unknown_outcome_found_open(h, autojump_clock):
    await h.start()

    async def placed_then_timeout(r: OrderRequest) -> str:
        h.fake.place(r)
        raise E.OutcomeUnknown("timeout", sent={}, cause=E.Timeout("t"))

    h.fake.create = placed_then_timeout
    h.run_scope.cancel()  # no resolver running: shutdown itself must find it
    await trio.sleep(0.1)
    h.ex._closing = False
    h.ex._blocks.clear()
    order = await h.ex.submit(req())
    report = await h.ex.shutdown(cancel=True)
    assert report.all_confirmed and order.exchange_id == "x1" and h.fake.open == {}


async def test_shutdown_names_an_unresolved_create_as_possibly_open(h, autojump_clock):
    await h.start()
    h.fake.create = ambiguous
    order = await h.ex.submit(req())
    h.fake.fail_reads = 10_000  # the exchange cannot be read any more
    report = await h.ex.shutdown(cancel=True)
    assert not report.all_confirmed and order.local_id in report.still_open


async def test_a_fresh_adoption_starts_the_pnl_at_zero_with_positions_at_their_cost(
        h, autojump_clock):
    # money audit suspicion: a fresh live bootstrap set the start to the cash alone, so `pnl`
    # opened at the adopted positions' whole value (+$40 here) although nothing was earned
    h.fake.set_position(SLUG, "100", "40")
    await h.start()
    assert h.ledger.position(SLUG).net_qty == 100
    assert h.ledger.pnl == 0 and h.ledger.initial_cash == h.ledger.equity
