"""The real composition root (`polybot.runtime.Bot`, paper mode) against `polybot.sim` over loopback.

The money-audit reproductions (../shared/reviews/money-audit.md, appendix) as tests of their
"Should": r8 (a stub quote after maintenance must not halt the day), r3 (paper settles a resolved
market) and r11 (a market halted at start is traded once it reopens).

Time runs on Trio's MockClock (every test here asks for `clock`; without it a test sleeps in
real seconds): it jumps after 1 ms of real idleness. The sim runs in this process over loopback,
whose answer is in the socket before `send` returns, so a jump never waits on the network; each
jump costs the threshold in real time (at 50 ms the halted-at-start test took 42 s, now ~1.5 s).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from polybot.config import load_settings
from polybot.model import (
    Intent,
    MarketState,
    MarketStatus,
    OrderRequest,
    OrderState,
    TimeInForce,
)
from polybot.runtime import Bot
from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from tests.integration import harness


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


def running_bot(sim: Any, data_dir: Path, slug: str, **extra: str) -> Any:
    """The harness's running bot, in paper mode on one market."""
    return harness.running_bot(sim, data_dir, live=False, MARKET_SLUGS=slug, **extra)


async def wait_for(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.1)
        return True
    return False


async def test_a_stub_bid_after_maintenance_does_not_halt_the_day(tmp_path, clock):
    # money-audit r8: 500 YES held at bid 0.09; maintenance; the first bid after reopening is 1
    # contract at 0.01 (equity at the best bid: −$40, past the $25 daily-loss limit); 5 s later
    # the makers are back at 0.09. The halt mark walks the bids for all 500 (1 at 0.01, 499 at
    # the last trusted 0.09) and a changed mark only counts after holding 3 s: no halt.
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug = sim.markets[0]
        script_book(sim.exchange, slug, bids=[("0.09", 500)], offers=[("0.10", 500)])
        async with running_bot(sim, tmp_path, slug, RISK_MAX_DAILY_LOSS="25") as bot:
            assert await wait_for(lambda: bot.ledger.position(slug).net_qty >= 500)
            await trio.sleep(2)
            assert bot.trading.state.value == "ACTIVE"
            sim.faults.maintenance = True
            await trio.sleep(3)
            sim.faults.maintenance = False
            await trio.sleep(3)
            script_book(sim.exchange, slug, bids=[("0.01", 1)], offers=[])
            assert await wait_for(lambda: bot.ledger.mark_price(slug) == D("0.01"), 10)
            await trio.sleep(3)
            script_book(sim.exchange, slug, bids=[("0.09", 500)], offers=[("0.11", 500)])
            assert await wait_for(lambda: bot.ledger.mark_price(slug) == D("0.09"), 10)
            await trio.sleep(5)
            assert (bot.trading.state.value, bot.trading.reason) == ("ACTIVE", "")


async def test_paper_settles_a_resolved_market_at_its_settlement_value(tmp_path, clock):
    # money-audit r3: paper buys 500 YES at 0.10; the market settles at 0: the paper position
    # is closed at the settlement value, so equity shows the loss and nothing stays at risk.
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug = sim.markets[0]
        script_book(sim.exchange, slug, bids=[("0.05", 500)], offers=[("0.10", 500)])
        async with running_bot(sim, tmp_path, slug) as bot:
            assert await wait_for(lambda: bot.ledger.position(slug).net_qty >= 500)
            await trio.sleep(2)
            cash_before = bot.ledger.cash
            sim.exchange.settle(slug, D("0"))
            assert await wait_for(lambda: bot.ledger.position(slug).net_qty == 0, 30), (
                f"paper position {bot.ledger.position(slug).net_qty} 30 s after settlement, "
                f"equity {bot.ledger.equity}")
            assert harness.market_book(bot, slug).settled_value == D("0")
            assert bot.ledger.cash == cash_before  # a losing long pays nothing
            assert bot.ledger.equity == bot.ledger.cash
            assert bot.usd_at_risk() == 0


async def test_a_market_halted_at_start_is_traded_once_it_reopens(tmp_path, clock):
    # money-audit r11: the market is HALTED while the bot starts and reopens 3 s later with an
    # edge on the book: the bot trades it (status follows the book's state).
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug = sim.markets[0]
        ex = sim.exchange
        script_book(ex, slug, bids=[("0.05", 500)], offers=[("0.10", 500)])
        ex.set_market_state(slug, MarketState.HALTED)
        async with running_bot(sim, tmp_path, slug) as bot:
            assert await wait_for(lambda: slug in bot.universe, 20)
            await trio.sleep(3)
            assert bot.ledger.position(slug).net_qty == 0
            ex.set_market_state(slug, MarketState.OPEN)
            script_book(ex, slug, bids=[("0.05", 500)], offers=[("0.10", 500)])
            assert await wait_for(lambda: bot.ledger.position(slug).net_qty > 0, 15), (
                f"no trade 15 s after reopening: cached status {bot.universe.info(slug).status}, "
                f"signals {bot.counters.signals}")
            # the cached metadata follows too, with the periodic refresh
            assert await wait_for(lambda: bot.universe.info(slug).status is MarketStatus.OPEN, 70)


async def test_a_resting_paper_order_does_not_survive_maintenance(tmp_path, clock):
    # money-audit "paper realism": the exchange cancels every order at maintenance; a paper order
    # kept through it would fill as maker against the first book after reopening. The Bot's own
    # market feed child (real stream vs the sim) runs alone here: without the trader, no signal
    # sync can cancel the order for another reason.
    from polybot.reference import load_markets
    from polybot.supervisor import Progress

    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        slug = sim.markets[0]
        script_book(sim.exchange, slug, bids=[("0.05", 500)], offers=[("0.10", 500)])
        bot = Bot(load_settings(harness.bot_env(sim, tmp_path, live=False, MARKET_SLUGS=slug)))
        async with trio.open_nursery() as n:
            await n.start(bot.store.run)
            # the market joins the universe as the reference child would add it: the markets
            # stream follows the universe
            await load_markets(bot.rest, bot.universe, [slug])
            await n.start(bot.markets_child, Progress("markets", None))
            assert await wait_for(lambda: bot.books.is_trusted(slug), 20)
            order = await bot.executor.submit(
                OrderRequest(slug, Intent.BUY_LONG, D("0.04"), D(10), tif=TimeInForce.GTC))
            assert order.state is OrderState.NEW and bot.executor.resting == [order]
            sim.faults.maintenance = True
            await trio.sleep(3)
            sim.faults.maintenance = False
            # the first quote after reopening crosses the old bid
            script_book(sim.exchange, slug, bids=[], offers=[("0.03", 10)])
            assert await wait_for(lambda: bot.books.is_trusted(slug) and bot.books.best_offer(
                slug) is not None and bot.books.best_offer(slug).price == D("0.03"), 30)
            await trio.sleep(1)
            assert (order.state, order.cum_qty) == (OrderState.CANCELED, 0)
            assert bot.ledger.position(slug).net_qty == 0
            n.cancel_scope.cancel()
        await bot.rest.aclose()
        bot.store.close()
