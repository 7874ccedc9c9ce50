"""Paper mode end to end, no network: book -> signal -> gate -> paper fill -> ledger -> store."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import trio

from polybot.book import BookStore
from polybot.engine import (
    CancelAll,
    DecideAll,
    PlaceOrder,
    RecordRejection,
    SyncResting,
    TradingEngine,
)
from polybot.execution.orders import OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.exposure import Exposure, side_at_risk
from polybot.fairvalues import FairValues
from polybot.ledger import Ledger
from polybot.model import (
    BookSnapshot,
    FairValue,
    Intent,
    MarketInfo,
    MarketTarget,
    OrderRequest,
    OrderState,
    PriceLevel,
    Rejection,
    floor_to_step,
)
from polybot.pricing import fee_per_contract
from polybot.risk import RiskGate, RiskLimits, kelly_target
from polybot.store import Store
from polybot.strategy import StrategyParams
from polybot.trading_state import HaltLimits, TradingStateMachine
from polybot.universe import Universe

SLUG = "aec-nba-bos-lal-2026-11-27"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MARKET = MarketInfo(slug=SLUG, event_id="ev-1", tick=D("0.01"), min_qty=D(1),
                    start_time=NOW + timedelta(days=1))
LIMITS = RiskLimits(kelly_fraction=D("0.25"), max_position_per_market=D(50),
                    max_portfolio_exposure=D(250), min_edge=D("0.02"), order_rate_per_minute=60)
FAIR = FairValue(SLUG, D("0.55"), "test", (), computed_at=0.0)


def frame(bids, offers):
    return BookSnapshot(SLUG, tuple(PriceLevel(D(p), D(q)) for p, q in bids),
                        tuple(PriceLevel(D(p), D(q)) for p, q in offers))


class Bot:
    """The components wired as `polybot.components` wires them in paper mode, driven through the
    one trading engine (what the runtime's trader task does, without its tasks)."""

    def __init__(self, store: Store, ledger: Ledger, tmp_path) -> None:
        self.store, self.ledger = store, ledger
        self.books = BookStore()
        universe = Universe()
        exposure = Exposure()
        universe.add_listener(lambda listing: exposure.set_event(listing.info.slug,
                                                                 listing.event_id))
        universe.put(MARKET)
        # matched to its fixture and confirmed, as matching does before a market is opened
        universe.update(SLUG, target=MarketTarget(SLUG, "fx-1", "boston_celtics", "basketball"),
                        target_confirmed=True)
        ledger.on_position = exposure.on_position
        self.registry = OrderRegistry(on_change=exposure.on_order)
        trading = TradingStateMachine(HaltLimits.of(LIMITS))
        trading.begin(ledger.equity, NOW)
        self.executor = PaperExecutor(self.registry, ledger, self.books, recorder=store,
                                      markets=universe.info_map)
        self.fair_values = FairValues()
        self.fair_values.track(SLUG, "fx-1")
        self.fair_values.set_trusted([SLUG], True, 0.0)
        self.engine = TradingEngine(
            universe=universe, books=self.books, fair_values=self.fair_values, ledger=ledger,
            exposure=exposure, trading=trading,
            gate=RiskGate(LIMITS, trading=trading, exposure=exposure), venue=self.executor,
            params=StrategyParams(min_edge=LIMITS.min_edge))
        self.outcomes: list[OrderRequest | Rejection] = []

    async def on_frame(self, book: BookSnapshot, fair: FairValue) -> list:
        self.fair_values.set(fair)
        self.engine.book_replaced(book)
        self.executor.on_book(book, trusted=self.books.is_trusted(SLUG))
        placed = []
        while True:
            decision = self.engine.decide(SLUG, NOW, 0.0)
            for cmd in decision.commands:
                if isinstance(cmd, SyncResting):
                    self.executor.sync_signals(SLUG, cmd.signals)
                elif isinstance(cmd, RecordRejection):
                    self.outcomes.append(cmd.rejection)
                    self.store.record_rejection(cmd.rejection)
                elif isinstance(cmd, PlaceOrder):
                    self.outcomes.append(cmd.request)
                    placed.append(await self.executor.submit(cmd.request))
            if not decision.again:
                return placed

    def yes_at_risk(self):
        return side_at_risk(Intent.BUY_LONG, self.ledger.positions.get(SLUG),
                            self.registry.open_model_orders(SLUG))


def effective_cost(price):
    return price + fee_per_contract(price)


async def test_edge_fills_once_then_tops_up_only_to_kelly_and_restart_restores_the_ledger(tmp_path):
    store = Store.open(tmp_path)
    bot = Bot(store, Ledger(D(1000)), tmp_path)
    book = frame(bids=[("0.44", "100")], offers=[("0.45", "60"), ("0.46", "100"), ("0.60", "50")])
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)

        # Frame 1: q 0.55 clears the edge at 0.45 and 0.46 (not 0.60), so the limit is 0.46.
        # c = 0.46 + 0.0695 × 0.46 × 0.54 = 0.4772638; f = (0.55 − c)/(1 − c) = 0.13914...;
        # target = 0.25 × f × 1000 = 34.79 USD; qty = floor(34.79 / c) = 72.
        [first] = await bot.on_frame(book, FAIR)
        c = effective_cost(D("0.46"))
        assert first.quantity == floor_to_step(
            kelly_target(Intent.BUY_LONG, D("0.46"), D("0.55"), D(1000), D("0.25"),
                         D("0.0695")) / c, D(1)) == D(72)
        assert (first.state, first.cum_qty, first.price) == (OrderState.FILLED, D(72), D("0.46"))
        # walked 60 @ 0.45 then 12 @ 0.46; fees 1.03 + 0.21
        assert bot.ledger.cash == D(1000) - D(27) - D("5.52") - D("1.24")
        assert bot.ledger.positions[SLUG].net_qty == D(72)

        # Frame 2: same book, same edge. The 60 @ 0.45 we took are not there again, and the gate
        # only tops up to the (slightly lower, equity fell by the spread and fees) Kelly target.
        [second] = await bot.on_frame(book, FAIR)
        assert second.cum_qty == D(4)  # (34.71 − 32.52) / 0.4773 = 4.6 -> 4, all at 0.46
        assert bot.ledger.booked(second.order_id).notional == second.cum_qty * D("0.46")
        target = kelly_target(Intent.BUY_LONG, D("0.46"), D("0.55"), bot.ledger.equity,
                              D("0.25"), D("0.0695"))
        assert bot.yes_at_risk() <= target

        # Frame 3: at the target: nothing more is sent.
        assert await bot.on_frame(book, FAIR) == []
        assert bot.outcomes[-1].reason == "kelly_target_reached"

        await store.flush()
        nursery.cancel_scope.cancel()
    before = bot.ledger.snapshot()
    store.close()

    # Restart: a new process would build everything again from the same DATA_DIR.
    again = Store.open(tmp_path)
    restored = Ledger.restore(again.load_ledger())
    assert restored.snapshot() == before
    assert restored.cash == bot.ledger.cash and restored.equity == bot.ledger.equity
    assert restored.positions == bot.ledger.positions
    assert again.load_orders() == []  # IOC orders are all finished
    assert len(again.load_orders(open_only=False)) == 2
    again.close()


async def test_next_frame_showing_the_same_size_does_not_refill_it(tmp_path):
    store = Store.open(tmp_path)
    bot = Bot(store, Ledger(D(1000)), tmp_path)
    thin = frame(bids=[("0.44", "100")], offers=[("0.45", "30"), ("0.60", "50")])
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        [first] = await bot.on_frame(thin, FAIR)
        assert first.cum_qty == D(30)  # Kelly wants more; the level has 30
        # The real book still shows the 30 we took: the engine sees the book less what paper
        # already took, so no order is sent for liquidity that is not there.
        assert await bot.on_frame(thin, FAIR) == []
        assert bot.ledger.positions[SLUG].net_qty == D(30)
        # Someone refreshed the level: it may fill again.
        refreshed = frame(bids=[("0.44", "100")], offers=[("0.45", "35"), ("0.60", "50")])
        [third] = await bot.on_frame(refreshed, FAIR)
        assert third.cum_qty > 0
        assert bot.yes_at_risk() <= kelly_target(
            Intent.BUY_LONG, D("0.45"), D("0.55"), bot.ledger.equity, D("0.25"), D("0.0695"))
        await store.flush()
        nursery.cancel_scope.cancel()
    store.close()


async def test_a_lifted_halt_has_every_market_decided_again_without_a_new_frame(tmp_path):
    # The edge below is in the book while the kill switch is on. Once the halt is lifted nothing
    # in that market need change for a while (a quiet book, a steady fair value): the engine
    # asks for every market to be decided again (the runtime marks them for the trader), and
    # the decision then sends the order the halt held back.
    store = Store.open(tmp_path)
    bot = Bot(store, Ledger(D(1000)), tmp_path)
    bot.engine.trading.set_notifier(bot.engine.on_notice)  # as polybot.components wires it
    book = frame(bids=[("0.44", "100")], offers=[("0.45", "60")])
    halted = bot.engine.operator_files(kill=True, kill_reason="test", resume=False, now=NOW,
                                       mono=0.0)
    assert [type(c) for c in halted] == [CancelAll]
    assert await bot.on_frame(book, FAIR) == []
    assert bot.outcomes[-1].reason == "halted"

    lifted = bot.engine.operator_files(kill=False, kill_reason="", resume=True, now=NOW,
                                       mono=0.0)
    assert [type(c) for c in lifted] == [DecideAll]
    again = bot.engine.decide(SLUG, NOW, 0.0)  # what the trader does for each marked market
    assert [c.request.intent for c in again.commands if isinstance(c, PlaceOrder)] == [
        Intent.BUY_LONG]
    assert bot.engine.operator_files(kill=False, kill_reason="", resume=False, now=NOW,
                                     mono=0.0) == []  # once, not on every poll
    store.close()
