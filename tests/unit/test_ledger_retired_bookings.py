"""A retired market leaves the ledger's memory with its order bookings (issue 14: a bot running
for weeks holds the markets it still trades, nothing per retired market), its realized P&L and
fees stay in the totals, and a late or replayed execution of one of its orders is still booked by
its growth only: the store answers for what left memory.

Real parts: the ledger and a SQLite store on disk, its writer task running.
"""

from datetime import UTC, datetime
from decimal import Decimal as D

import trio

from polybot.execution.orders import TrackedOrder
from polybot.ledger import Ledger
from polybot.model import Intent, OrderState
from polybot.store import Store

NOW = datetime(2026, 12, 6, 20, tzinfo=UTC)


def fill(led, order_id, qty, price, *, slug, intent=Intent.BUY_LONG, cum=None):
    return led.apply_execution(order_id, slug, intent, D(cum or qty), last_px=D(price),
                               last_qty=D(qty), fee_total=D("0.10"))


def order(local_id, slug):
    return TrackedOrder(local_id, slug, Intent.BUY_LONG, D("0.40"), D(10),
                        state=OrderState.FILLED, cum_qty=D(10), created_at=NOW)


async def traded_and_retired(store: Store) -> Ledger:
    """Two markets traded; `done` settles flat and is retired, `live` is still held."""
    led = Ledger(D(1000))
    led.attach_store(store.read_booking, store.read_market)
    for oid, slug in (("o1", "done"), ("o2", "done"), ("o3", "live")):
        store.record_order(order(oid, slug))
        fill(led, oid, 10, "0.40", slug=slug)
    led.settle("done", D(1))
    store.save_ledger(led.drain_changes())
    await store.flush()
    led.forget_marks("done")
    return led


async def test_a_retired_market_s_bookings_leave_memory_and_a_replay_books_nothing(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    async with trio.open_nursery() as n:
        await n.start(store.run)
        led = await traded_and_retired(store)
        assert led.held_bookings() == 1  # only o3's, of the market still traded
        assert led.held_markets() == 1  # "done" folded away
        assert led.realized_pnl == D(12) and led.fees_total == D("0.30")  # its history kept
        cash = led.cash
        # the private stream replays o1's execution after a reconnect: nothing is booked twice
        assert fill(led, "o1", 10, "0.40", slug="done") is None
        assert led.cash == cash and led.position("done").net_qty == 0
        # a report of real growth (had one been missed) books only the growth
        grown = fill(led, "o2", 2, "0.40", slug="done", cum=12)
        assert grown is not None and grown.qty == D(2)
        assert led.cash == cash - D(2) * D("0.40")
        n.cancel_scope.cancel()
    store.close()


async def test_a_booking_queued_but_not_committed_still_answers(tmp_path):
    # the market retires between the ledger's drain and the writer's commit
    store = Store.open(tmp_path, in_thread=False)
    led = Ledger(D(1000))
    led.attach_store(store.read_booking, store.read_market)
    fill(led, "o1", 10, "0.40", slug="done")
    led.settle("done", D(1))
    store.save_ledger(led.drain_changes())  # queued; the writer task is not running
    led.forget_marks("done")
    assert led.held_bookings() == 0
    cash = led.cash
    assert fill(led, "o1", 10, "0.40", slug="done") is None
    assert led.cash == cash
    store.close()


async def test_a_restart_holds_no_booking_of_a_market_settled_flat(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    async with trio.open_nursery() as n:
        await n.start(store.run)
        await traded_and_retired(store)
        n.cancel_scope.cancel()
    state = store.load_ledger()
    assert state is not None
    again = Ledger.restore(state)
    realized, fees = again.realized_pnl, again.fees_total
    again.attach_store(store.read_booking, store.read_market)
    assert again.held_bookings() == 1  # o3 (its market is still held); o1, o2 stay on disk
    assert again.held_markets() == 1 and again.markets.keys() == {"live"}
    assert (again.realized_pnl, again.fees_total) == (realized, fees)  # folded, not lost
    cash = again.cash
    assert fill(again, "o1", 10, "0.40", slug="done") is None
    assert fill(again, "o3", 10, "0.40", slug="live") is None
    assert again.cash == cash
    store.close()


def test_without_a_store_to_answer_the_bookings_stay_in_memory():
    led = Ledger(D(1000))
    fill(led, "o1", 10, "0.40", slug="done")
    led.settle("done", D(1))
    led.forget_marks("done")
    assert led.held_bookings() == 1 and led.held_markets() == 1
    assert fill(led, "o1", 10, "0.40", slug="done") is None


async def test_a_market_folded_away_and_traded_again_comes_back_with_its_history(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    async with trio.open_nursery() as n:
        await n.start(store.run)
        led = await traded_and_retired(store)
        fill(led, "o9", 5, "0.50", slug="done")  # listed again (say a postponed game)
        m = led.markets["done"]
        assert m.realized_pnl == D(12) and m.fees == D("0.30")  # 20 x (1 - 0.40); 3 fees of 0.10
        assert m.net_qty == D(5)
        assert led.realized_pnl == D(12) and led.fees_total == D("0.40")  # not counted twice
        store.save_ledger(led.drain_changes())
        await store.flush()
        n.cancel_scope.cancel()
    state = store.load_ledger()
    assert state is not None
    row = {m.market_slug: m for m in state.markets}["done"]
    assert (row.realized_pnl, row.fees, row.net_qty) == (D(12), D("0.30"), D(5))
    store.close()


async def test_the_store_answers_for_every_saved_market_whenever_it_first_looked(tmp_path):
    # `read_market` keeps the set of saved markets (so the 500 markets discovered at start are
    # answered without a database read each): a market queued before the set was read and
    # committed after, one saved after it, and one in the file at a restart are all found
    store = Store.open(tmp_path, in_thread=False)
    led = Ledger(D(1000))
    fill(led, "o1", 10, "0.40", slug="early")
    store.save_ledger(led.drain_changes())  # queued; the writer is not running yet
    assert store.read_market("never-traded") is None  # the set is read now
    async with trio.open_nursery() as n:
        await n.start(store.run)
        await store.flush()  # "early" committed: no longer queued
        early = store.read_market("early")
        assert early is not None and early.net_qty == D(10)
        fill(led, "o2", 5, "0.40", slug="late")
        store.save_ledger(led.drain_changes())
        await store.flush()
        late = store.read_market("late")
        assert late is not None and late.net_qty == D(5)
        n.cancel_scope.cancel()
    assert store.read_market("never-traded") is None
    store.close()
    again = Store.open(tmp_path, in_thread=False)
    assert {slug for slug in ("early", "late", "never-traded")
            if again.read_market(slug) is not None} == {"early", "late"}
    again.close()
