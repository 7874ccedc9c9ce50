"""The universe: a market the account holds joins it even when it is not configured."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
import trio
import trio.testing

from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from tests.integration.harness import market_book, running_bot, wait_for


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


async def test_a_held_market_outside_market_slugs_is_marked_counted_and_settled(
        tmp_path, mock_clock):
    # architecture review: positions in markets outside MARKET_SLUGS never got marks (no book
    # subscription), so they were valued at cost and invisible to the daily-loss and drawdown halts
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        held, other = sim.markets[0], sim.markets[1]
        script_book(sim.exchange, held, bids=[("0.09", 500)], offers=[("0.10", 500)])
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=held) as bot:
            assert await wait_for(lambda: bot.ledger.position(held).net_qty > 0, 60)
            await trio.sleep(2)
        qty = sim.exchange.positions(sim.account_id)[held].net
        script_book(sim.exchange, held, bids=[("0.05", 500)], offers=[("0.06", 500)])
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=other) as bot:
            assert await wait_for(lambda: bot.ledger.mark_price(held) == D("0.05"), 30)
            assert held in bot.universe
            assert bot.exposure.market(held) > 0 and bot.exposure.is_held(held)
            assert held in [row.slug for row in bot.status_report().markets]
            sim.exchange.settle(held, D("1"))
            assert await wait_for(lambda: bot.ledger.position(held).net_qty == 0, 60)
            assert market_book(bot, held).settled_value == D("1")
            assert bot.exposure.market(held) == 0
            assert qty > 0
