from decimal import Decimal as D

import attrs
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from polybot.book import BookStore
from polybot.execution.orders import OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.ledger import Ledger
from polybot.model import (
    BookSnapshot,
    Intent,
    MarketState,
    OrderRequest,
    OrderState,
    PriceLevel,
    Side,
    Signal,
    TimeInForce,
    TradePrint,
)


def levels(*pairs):
    return tuple(PriceLevel(D(p), D(q)) for p, q in pairs)


def book(bids=(), offers=(), state=MarketState.OPEN):
    return BookSnapshot("m", levels(*bids), levels(*offers), state=state)


def make(cash="1000", recorder=None):
    books = BookStore()
    ledger = Ledger(D(cash))
    ex = PaperExecutor(OrderRegistry(), ledger, books, recorder=recorder)
    return ex, books, ledger


def req(intent, price, qty, tif=TimeInForce.IOC):
    return OrderRequest("m", intent, D(price), D(qty), tif=tif)


async def test_ioc_buy_walks_offers_up_to_the_limit_and_cancels_the_rest():
    ex, books, led = make()
    books.update(book(offers=[("0.40", "10"), ("0.41", "5"), ("0.43", "100")]))
    order = await ex.submit(req(Intent.BUY_LONG, "0.41", "20"))
    assert order.state is OrderState.CANCELED and order.cum_qty == D(15)
    # fees 0.1668 -> 0.17 and 0.0841 -> 0.08 (cumulative 0.2509 -> 0.25 caps nothing)
    assert led.cash == D("1000") - D("4.00") - D("2.05") - D("0.25")
    pos = led.positions["m"]
    assert pos.net_qty == D(15) and pos.avg_price == D("6.05") / D(15)
    assert led.fees_total == D("0.25")


async def test_buy_short_hits_bids_at_or_above_the_limit_and_pays_one_minus_price():
    ex, books, led = make()
    books.update(book(bids=[("0.60", "10"), ("0.58", "10")]))
    order = await ex.submit(req(Intent.BUY_SHORT, "0.59", "15"))
    assert order.cum_qty == D(10) and order.state is OrderState.CANCELED
    assert led.cash == D("1000") - D("4.00") - D("0.17")
    assert led.positions["m"].net_qty == D(-10)


async def test_fok_fills_nothing_unless_the_whole_quantity_is_there():
    ex, books, led = make()
    books.update(book(offers=[("0.40", "10"), ("0.41", "5")]))
    killed = await ex.submit(req(Intent.BUY_LONG, "0.41", "16", TimeInForce.FOK))
    assert killed.state is OrderState.CANCELED and killed.cum_qty == 0
    assert led.cash == D(1000) and led.positions == {}
    full = await ex.submit(req(Intent.BUY_LONG, "0.41", "15", TimeInForce.FOK))
    assert full.state is OrderState.FILLED and full.cum_qty == D(15)


async def test_gtc_remainder_rests_and_fills_at_the_maker_rebate_on_a_crossing_book_and_print():
    ex, books, led = make()
    books.update(book(offers=[("0.45", "10")]))
    order = await ex.submit(req(Intent.BUY_LONG, "0.42", "10", TimeInForce.GTC))
    assert order.state is OrderState.NEW and ex.resting == [order]
    assert ex.on_book(book(offers=[("0.45", "10")])) == []  # not crossed
    [f1] = ex.on_book(book(offers=[("0.41", "4")]))
    # maker fills at its own price; rebate −0.0125 × 4 × 0.42 × 0.58 = −0.01218 -> −0.01
    assert (f1.qty, f1.price, f1.fee, f1.is_taker) == (D(4), D("0.42"), D("-0.01"), False)
    assert order.state is OrderState.PARTIALLY_FILLED
    assert ex.on_trade(TradePrint("m", D("0.42"), D(50), Side.SELL)) == []  # at, not through
    [f2] = ex.on_trade(TradePrint("m", D("0.40"), D(50), Side.SELL))
    assert (f2.qty, f2.fee) == (D(6), D("-0.02"))
    assert order.state is OrderState.FILLED and ex.resting == []
    assert led.cash == D(1000) - D("4.20") + D("0.03")


async def test_second_order_does_not_refill_the_same_liquidity_until_the_level_changes():
    ex, books, led = make()
    frame = book(offers=[("0.40", "10"), ("0.50", "10")])
    books.update(frame)
    first = await ex.submit(req(Intent.BUY_LONG, "0.40", "10"))
    assert first.cum_qty == D(10)
    ex.on_book(frame)  # the next frame still shows the 10 we took
    assert ex.effective_book(frame).offers == levels(("0.50", "10"))
    second = await ex.submit(req(Intent.BUY_LONG, "0.40", "10"))
    assert second.cum_qty == 0 and second.state is OrderState.CANCELED
    refreshed = book(offers=[("0.40", "12"), ("0.50", "10")])
    books.update(refreshed)
    ex.on_book(refreshed)
    third = await ex.submit(req(Intent.BUY_LONG, "0.40", "10"))
    assert third.cum_qty == D(10)
    assert led.positions["m"].net_qty == D(20)


async def test_partly_taken_level_offers_only_the_rest():
    ex, books, _ = make()
    books.update(book(offers=[("0.40", "10")]))
    await ex.submit(req(Intent.BUY_LONG, "0.40", "6"))
    again = await ex.submit(req(Intent.BUY_LONG, "0.40", "6"))
    assert again.cum_qty == D(4)


async def test_resting_order_is_cancelled_when_its_signal_disappears_or_its_limit_moves():
    ex, books, _ = make()
    books.update(book(offers=[("0.45", "10")]))
    a = await ex.submit(req(Intent.BUY_LONG, "0.42", "5", TimeInForce.GTC))
    sig = Signal("m", Intent.BUY_LONG, D("0.42"), D(10), D("0.5"), D("0.05"))
    assert ex.sync_signals("m", [sig]) == [] and a.is_open
    moved = Signal("m", Intent.BUY_LONG, D("0.43"), D(10), D("0.5"), D("0.05"))
    assert ex.sync_signals("m", [moved]) == [a]
    assert a.state is OrderState.CANCELED
    b = await ex.submit(req(Intent.BUY_LONG, "0.42", "5", TimeInForce.GTC))
    assert ex.sync_signals("m", []) == [b] and b.state is OrderState.CANCELED


async def test_cancel_and_cancel_all_end_resting_orders_and_free_their_reservation():
    ex, books, _ = make(cash="10")
    books.update(book(offers=[("0.45", "100")]))
    a = await ex.submit(req(Intent.BUY_LONG, "0.40", "20", TimeInForce.GTC))  # reserves 8
    blocked = await ex.submit(req(Intent.BUY_LONG, "0.40", "10", TimeInForce.GTC))
    assert blocked.state is OrderState.REJECTED
    assert ex.cancel(a.order_id) and a.state is OrderState.CANCELED
    assert not ex.cancel(a.order_id)
    b = await ex.submit(req(Intent.BUY_LONG, "0.40", "10", TimeInForce.GTC))
    assert b.state is OrderState.NEW
    assert ex.cancel_all("m") == [b] and b.state is OrderState.CANCELED
    assert ex.resting == []


async def test_opening_order_beyond_cash_is_rejected_so_cash_never_goes_negative():
    ex, books, led = make(cash="3")
    books.update(book(offers=[("0.40", "100")]))
    order = await ex.submit(req(Intent.BUY_LONG, "0.40", "10"))  # needs 4 + fee
    assert order.state is OrderState.REJECTED and "buying power" in order.reject_reason
    assert led.cash == D(3)


async def test_order_in_a_market_that_is_not_open_is_rejected():
    ex, books, _ = make()
    books.update(book(offers=[("0.40", "100")], state=MarketState.SUSPENDED))
    order = await ex.submit(req(Intent.BUY_LONG, "0.40", "1"))
    assert order.state is OrderState.REJECTED


class Recorder:
    def __init__(self):
        self.events = []

    def note_intent(self, order):
        self.events.append(("intent", order.state))

    def record_order(self, order):
        self.events.append(("order", order.state))

    def record_execution(self, execution, fill, order):
        self.events.append(("exec", execution.exec_type.name, fill is not None))

    def save_ledger(self, changes):
        self.events.append(("ledger",))


async def test_intent_is_recorded_before_matching_and_every_execution_after_booking():
    rec = Recorder()
    ex, books, _ = make(recorder=rec)
    books.update(book(offers=[("0.40", "10")]))
    await ex.submit(req(Intent.BUY_LONG, "0.40", "10"))
    assert rec.events[0] == ("intent", OrderState.SUBMITTING)
    execs = [e[1:] for e in rec.events if e[0] == "exec"]
    assert execs == [("NEW", False), ("FILL", True)]


async def test_orders_left_open_by_a_previous_run_are_booked_cancelled():
    ex, books, led = make()
    books.update(book(offers=[("0.45", "10")]))
    old = await ex.submit(req(Intent.BUY_LONG, "0.42", "5", TimeInForce.GTC))
    fresh, _, _ = make()
    fresh.ledger = led
    assert fresh.cancel_restored([old]) == 1
    assert old.state is OrderState.CANCELED and led.cash == D(1000)


# --- properties -------------------------------------------------------------------------------



INTENTS = [Intent.BUY_LONG, Intent.SELL_LONG, Intent.BUY_SHORT, Intent.SELL_SHORT]
books_st = st.tuples(st.integers(1, 98), st.integers(1, 200), st.integers(1, 200))
orders_st = st.tuples(st.sampled_from(INTENTS), st.integers(1, 99), st.integers(1, 300),
                      st.sampled_from([TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTC]))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.lists(st.tuples(books_st, st.lists(orders_st, max_size=3)),
                                     max_size=8))
def test_cash_never_goes_negative_whatever_is_sent(cash, steps):
    async def run():
        ex, books, led = make(cash=str(cash))
        for (bid_cents, bid_qty, offer_qty), orders in steps:
            bid = D(bid_cents) / 100
            frame = book(bids=[(str(bid), str(bid_qty))],
                         offers=[(str(bid + D("0.01")), str(offer_qty))])
            books.update(frame)
            ex.on_book(frame)
            for intent, cents, qty, tif in orders:
                await ex.submit(req(intent, str(D(cents) / 100), str(qty), tif))
                assert led.cash >= 0
            assert led.cash >= 0
    trio.run(run)


# --- resolution, settlement and maintenance (issue 13: defect 11, paper realism) -----------------


async def test_a_resolved_market_cancels_resting_orders_and_settles_at_the_published_value(
        autojump_clock):
    published: dict[str, D] = {}

    async def settlement(slug):
        return published.get(slug)

    books = BookStore()
    led = Ledger(D(1000))
    ex = PaperExecutor(OrderRegistry(), led, books, settlement=settlement, settle_poll_seconds=1.0)
    books.update(book(bids=[("0.30", "5")], offers=[("0.40", "10")]))
    await ex.submit(req(Intent.BUY_LONG, "0.40", "10"))
    resting = await ex.submit(req(Intent.BUY_LONG, "0.35", "5", TimeInForce.GTC))
    cash = led.cash
    ex.on_market_state("m", MarketState.EXPIRED)
    assert resting.state is OrderState.CANCELED and ex.resting == []

    class Beat:
        def beat(self):
            pass

    async with trio.open_nursery() as n:
        await n.start(ex.settle_resolved, Beat())
        await trio.sleep(3)
        assert led.positions["m"].net_qty == D(10)  # not published yet: nothing to settle with
        published["m"] = D(1)
        await trio.sleep(1.5)
        n.cancel_scope.cancel()
    assert led.positions == {} and led.markets["m"].settled_value == D(1)
    assert led.cash == cash + D(10)


async def test_continuity_loss_cancels_resting_paper_orders_like_maintenance_on_the_exchange():
    ex, books, led = make()
    books.update(book(offers=[("0.45", "5")]))
    resting = await ex.submit(req(Intent.BUY_LONG, "0.40", "5", TimeInForce.GTC))
    ex.on_continuity_lost()
    # the first book after reopening crosses the old bid: the exchange's order is gone, so no fill
    assert ex.on_book(book(offers=[("0.38", "5")])) == []
    assert resting.state is OrderState.CANCELED and led.positions == {}


def test_after_a_restart_unchanged_levels_are_not_taken_a_second_time():
    # money audit suspicion (held): the memory of liquidity taken was lost on restart, so a level
    # whose size had not changed since the paper fill offered its whole size again
    from polybot.book import BookStore
    from polybot.execution.orders import OrderRegistry
    from polybot.execution.paper import PaperExecutor
    from polybot.ledger import Ledger
    from polybot.model import BookSnapshot, Intent, PriceLevel

    led = Ledger(D(1000))
    led.apply_execution("o1", "m", Intent.BUY_LONG, D(30), last_px=D("0.45"), last_qty=D(30))
    restarted = PaperExecutor(OrderRegistry(), Ledger.restore(led.snapshot()), BookStore())
    same = BookSnapshot("m", (PriceLevel(D("0.40"), D(50)),), (PriceLevel(D("0.45"), D(30)),))
    restarted.on_book(same)
    assert restarted.effective_book(same).offers == ()
    refreshed = BookSnapshot("m", same.bids, (PriceLevel(D("0.45"), D(35)),))
    restarted.on_book(refreshed)
    assert restarted.effective_book(refreshed).offers == (PriceLevel(D("0.45"), D(35)),)
    other = PaperExecutor(OrderRegistry(), Ledger(D(1000)), BookStore())  # never traded there
    other.on_book(same)
    assert other.effective_book(same).offers == (PriceLevel(D("0.45"), D(30)),)


async def test_effective_book_takes_off_only_what_paper_orders_took_and_copies_nothing_else():
    ex, books, _led = make()
    frame = book(bids=[("0.38", "4")], offers=[("0.40", "10"), ("0.50", "10")])
    assert ex.effective_book(frame) is frame  # nothing taken in this market: the book as it is
    hollow = book(offers=[("0.40", "0"), ("0.50", "10")])
    assert ex.effective_book(hollow).offers == levels(("0.50", "10"))  # an empty level still goes
    books.update(frame)
    await ex.submit(req(Intent.BUY_LONG, "0.50", "14"))  # all of 0.40, 4 of 0.50
    ex.on_book(frame)
    seen = ex.effective_book(frame)
    assert (seen.bids, seen.offers) == (frame.bids, levels(("0.50", "6")))
    assert seen == attrs.evolve(frame, offers=levels(("0.50", "6")))
    moved = book(bids=[("0.38", "4")], offers=[("0.41", "3"), ("0.50", "12")])  # refreshed
    ex.on_book(moved)
    assert ex.effective_book(moved) is moved
