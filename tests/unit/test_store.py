import sqlite3
import threading
from decimal import Decimal as D

import attrs
import pytest
import trio

from polybot.execution.orders import OrderRegistry, book_execution
from polybot.ledger import Ledger
from polybot.model import (
    Execution,
    ExecutionType,
    Intent,
    Order,
    OrderRequest,
    OrderState,
    Rejection,
    Signal,
)
from polybot.store import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    StoreOverflow,
    connect_readonly,
    db_path,
    read_ack,
)


def request(qty="10"):
    sig = Signal("m", Intent.BUY_LONG, D("0.40"), D(50), fair_q=D("0.47"), edge=D("0.05"))
    return OrderRequest("m", Intent.BUY_LONG, D("0.40"), D(qty), signal=sig, reason="open")


def filled(order, qty="10", exec_id="e1"):
    o = Order(order.order_id, "m", Intent.BUY_LONG, D("0.40"), D(10), cum_quantity=D(qty),
              state=OrderState.FILLED, avg_px=D("0.40"), commission_total=D("0.17"))
    return Execution(exec_id, o, ExecutionType.FILL, last_shares=D(qty), last_px=D("0.40"))


async def with_writer(store, body):
    async with trio.open_nursery() as n:
        await n.start(store.run)
        await body()
        await store.flush()
        n.cancel_scope.cancel()


async def test_awaited_intent_is_committed_before_the_call_returns(tmp_path):
    store = Store.open(tmp_path)
    order = OrderRegistry().new_order(request())

    async def body():
        await store.record_intent(order)
        # a separate connection (as another process would) sees it at once
        with sqlite3.connect(db_path(tmp_path)) as other:
            row = other.execute("SELECT state, quantity, fair_q FROM orders WHERE local_id = ?",
                                (order.local_id,)).fetchone()
        assert row == ("SUBMITTING", "10", "0.47")

    await with_writer(store, body)
    store.close()


async def test_restart_restores_the_same_ledger_and_open_orders(tmp_path):
    store = Store.open(tmp_path)
    reg, led = OrderRegistry(), Ledger(D(1000))
    filled_order = reg.new_order(request())
    resting = reg.new_order(request("5"))

    async def body():
        await store.record_intent(filled_order)
        await store.record_intent(resting)
        reg.submitted(filled_order, "x1")
        reg.submitted(resting, "x2")
        book_execution(filled(filled_order), reg, led, store)
        led.update_marks("m", D("0.45"), D("0.47"))
        store.save_ledger(led.drain_changes())
        store.record_order(resting)

    await with_writer(store, body)
    store.close()

    again = Store.open(tmp_path)
    restored = Ledger.restore(again.load_ledger())
    assert restored.snapshot() == led.snapshot()
    assert restored.cash == D("995.83") and restored.equity == D("1000.33")
    assert restored.booked("x1").cum_qty == D(10)
    [open_order] = again.load_orders()
    assert (open_order.local_id, open_order.exchange_id, open_order.state) == (
        resting.local_id, "x2", OrderState.PENDING_NEW)
    assert len(again.load_orders(open_only=False)) == 2
    with connect_readonly(db_path(tmp_path)) as ro:
        [fill] = ro.execute("SELECT qty, price, fee, fair_q FROM fills").fetchall()
    assert tuple(fill) == ("10", "0.40", "0.17", "0.47")
    again.close()


def test_fresh_database_has_no_ledger_and_the_current_schema(tmp_path):
    store = Store.open(tmp_path)
    assert store.load_ledger() is None
    with connect_readonly(db_path(tmp_path)) as ro:
        assert ro.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert ro.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    Store.open(tmp_path).close()  # reopening runs no migration twice


def test_database_from_a_newer_polybot_is_refused(tmp_path):
    Store.open(tmp_path).close()
    with sqlite3.connect(db_path(tmp_path)) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path)


async def test_a_bad_write_fails_alone_and_its_waiter_is_told(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    store.set_meta("before", "1")

    def bad(conn):
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    async def body():
        with pytest.raises(StoreError):
            await store.write_and_wait(bad, "bad")
        store.set_meta("after", "2")

    await with_writer(store, body)
    assert (store.get_meta("before"), store.get_meta("after")) == ("1", "2")
    assert store.failed_writes == 1
    store.close()


def test_a_full_queue_raises_instead_of_dropping(tmp_path):
    store = Store.open(tmp_path, queue_size=1)
    store.set_meta("a", "1")
    with pytest.raises(StoreOverflow):
        store.set_meta("b", "2")
    store.close()  # the queued write is still committed
    assert Store.open(tmp_path).get_meta("a") == "1"


async def test_halt_state_acks_rejections_and_fair_values_round_trip(tmp_path):
    store = Store.open(tmp_path)

    async def body():
        await store.save_halt_state_and_wait("HALTED", "drawdown", {"hwm": D("1100")})
        store.ack_request("req-1", "halt", "ok")
        store.record_rejection(Rejection("m", Intent.BUY_LONG, "max_market", "at cap"))
        store.record_fair_value("m", D("0.55"))
        store.record_market_closed("m")
        store.record_fair_value("m", D("0.99"))  # after the close: not the closing line

    await with_writer(store, body)
    halt = store.load_halt_state()
    assert (halt.state, halt.reason, halt.data) == ("HALTED", "drawdown", {"hwm": "1100"})
    assert read_ack(tmp_path, "req-1")["outcome"] == "ok"
    assert read_ack(tmp_path, "req-2") is None
    with connect_readonly(db_path(tmp_path)) as ro:
        assert ro.execute("SELECT q FROM fair_values").fetchone()[0] == "0.55"
        assert ro.execute("SELECT reason FROM rejections").fetchone()[0] == "max_market"
        with pytest.raises(sqlite3.OperationalError):
            ro.execute("INSERT INTO meta VALUES ('x', 'y')")
    store.close()


def test_read_ack_without_a_database_is_none(tmp_path):
    assert read_ack(tmp_path, "req-1") is None


async def test_equity_snapshot_also_saves_the_ledger_changes(tmp_path):
    store = Store.open(tmp_path)
    led = Ledger(D(100))
    led.apply_execution("o1", "m", Intent.BUY_LONG, D(10), last_px=D("0.40"))
    led.update_marks("m", D("0.45"), D("0.47"))

    async def body():
        store.record_ledger_equity(led, usd_at_risk=D(4), trading_state="ACTIVE")

    await with_writer(store, body)
    with connect_readonly(db_path(tmp_path)) as ro:
        row = ro.execute("SELECT equity, cash, unrealized_pnl, usd_at_risk, trading_state"
                         " FROM equity_snapshots").fetchone()
    assert tuple(row) == ("100.50", "96.00", "0.50", "4", "ACTIVE")
    assert Ledger.restore(store.load_ledger()).equity == D("100.50")
    store.close()


def test_restore_ledger_starts_fresh_with_initial_cash_only_on_an_empty_database(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    assert store.restore_ledger(D(1000)).cash == D(1000)
    led = Ledger(D(1000))
    led.apply_execution("o1", "m", Intent.BUY_LONG, D(10), last_px=D("0.40"))
    store.save_ledger(led.snapshot())
    store.drain_sync()
    # INITIAL_BALANCE only seeds a fresh database; a restart keeps the cash it had
    assert store.restore_ledger(D(5000)).cash == D(996)
    store.close()


async def test_a_batch_in_flight_when_the_writer_is_cancelled_still_commits_and_tells_its_waiter(
        tmp_path):
    store = Store.open(tmp_path)
    in_thread, release = threading.Event(), threading.Event()
    told = []

    def slow_write(conn):
        in_thread.set()
        release.wait(5)
        conn.execute("INSERT INTO meta VALUES ('k', 'v')")

    async def writer(task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await store.run()

    async def waiter():
        await store.write_and_wait(slow_write, "slow")
        told.append(True)

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            scope = await n.start(writer)
            n.start_soon(waiter)
            await trio.to_thread.run_sync(in_thread.wait)  # the batch is inside sqlite now
            scope.cancel()
            release.set()
    assert told == [True]
    assert store.get_meta("k") == "v"
    store.close()


async def test_known_trade_ids_are_the_latest_booked_fills_oldest_first(tmp_path):
    # the live executor reads these after a restart so an old fill is not taken for new evidence
    store = Store.open(tmp_path)
    reg, led = OrderRegistry(), Ledger(D(1000))

    async def body():
        for n in (1, 2, 3):
            order = reg.new_order(request("1"))
            await store.record_intent(order)
            reg.submitted(order, f"x{n}")
            ex = filled(order, qty="1", exec_id=f"e{n}")
            book_execution(attrs.evolve(ex, trade_id=f"t{n}"), reg, led, store)

    await with_writer(store, body)
    assert store.known_trade_ids(2) == ["t2", "t3"]
    assert store.known_trade_ids(10) == ["t1", "t2", "t3"]
    store.close()
