"""A retired market's order bookings leave the ledger's memory (issue 14: a bot running for weeks
holds the bookings of the markets it still trades), and a late or replayed execution of one of its
orders is still booked by its growth only: the store answers for what left memory.

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
    led.booking_lookup = store.read_booking
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
    led.booking_lookup = store.read_booking
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
    again.booking_lookup = store.read_booking
    assert again.held_bookings() == 1  # o3 (its market is still held); o1, o2 stay on disk
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
    assert led.held_bookings() == 1
    assert fill(led, "o1", 10, "0.40", slug="done") is None
