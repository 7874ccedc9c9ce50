"""A market's event and game start come from the Event that lists it (issue 13, defects 6 and 7).

The real Market object carries no `eventId`/`eventSlug` and its `startDate` is the listing time
(tests/fixtures/real_payloads). The sim serves that shape; these tests drive the bot's real
REST client and `polybot.reference.load_markets` against it over loopback.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import trio
import trio.testing

from polybot.config import load_settings
from polybot.model import Intent, Rejection, Signal
from polybot.reference import load_markets
from polybot.runtime import Bot
from polybot.sim.engine import MarketSide as SimSide
from polybot.sim.harness import running_sim
from polybot.strategy import opening_allowed
from tests.integration import harness


@pytest.fixture
def slow_autojump_clock():
    # virtual time that jumps after 1 ms of real idleness: the sockets are real, but the sim is
    # in this process and loopback answers at once (docs/design-notes.md, "CI time")
    return trio.testing.MockClock(autojump_threshold=0.001)


def _bot(sim, tmp_path, slugs, **extra: str) -> Bot:
    env = harness.bot_env(sim, tmp_path, live=False, MARKET_SLUGS=",".join(slugs), **extra)
    return Bot(load_settings(env))


def _second_market_of(sim, slug: str) -> str:
    """List one more market (a spread, say) in the event of `slug`."""
    first = sim.exchange.markets[slug]
    other = f"{slug}-spread"
    sim.exchange.add_market(
        other, 7777, first.event_id, title="spread",
        sides=(SimSide(7778, True, "home -1.5"), SimSide(7779, False, "away +1.5")))
    return other


async def test_per_event_cap_binds_across_two_markets_of_one_event_without_event_ids(
        tmp_path, slow_autojump_clock):
    async with running_sim(run_scenario=False, cash=Decimal("1000")) as sim:
        one = sim.markets[0]
        two = _second_market_of(sim, one)
        bot = _bot(sim, tmp_path, [one, two], RISK_MAX_CORRELATED_EXPOSURE="125",
                   RISK_MAX_POSITION_PER_MARKET="50")
        try:
            await load_markets(bot.rest, bot.universe, [one, two])
            # $100 already at risk in market one: the event has $25 of headroom left, so an
            # opening order in market two is cut to $25 (the per-market cap alone allows $50)
            bot.ledger.set_position(one, Decimal(200), Decimal("0.50"))
            sig = Signal(two, Intent.BUY_LONG, Decimal("0.50"), Decimal(1000), Decimal("0.90"),
                         Decimal("0.30"))
            result = bot.gate.check(sig, position=None, equity=Decimal(1000), cash=Decimal(900),
                                    market_info=bot.universe.info(two), now=bot.clock.now())
            assert not isinstance(result, Rejection), result
            assert result.quantity * Decimal("0.50") <= Decimal(25), result
            event_id = str(sim.exchange.markets[one].event_id)
            assert [bot.universe.get(s).event_id for s in (one, two)] == [event_id, event_id]
        finally:
            await bot.rest.aclose()
            bot.store.close()


async def test_game_start_comes_from_the_event_not_the_listing_time_so_the_blackout_holds(
        tmp_path, slow_autojump_clock):
    # audit defect 8 (reproduction r6_start_time, "drop"): the Market object without
    # gameStartTime, TRADE_IN_PLAY=true and a 100000-minute pre-start blackout
    async with running_sim(run_scenario=False, cash=Decimal("1000")) as sim:
        slug = sim.markets[0]
        market = sim.exchange.markets[slug]
        market.serves_game_start_time = False
        game_start = sim.exchange.event_by_id(market.event_id).start_time
        assert market.created_at != game_start
        bot = _bot(sim, tmp_path, [slug], TRADE_IN_PLAY="true", STOP_BEFORE_START_MINUTES="100000")
        try:
            await load_markets(bot.rest, bot.universe, [slug])
            info = bot.universe.info(slug)
            assert info.start_time == game_start
            assert not opening_allowed(info, bot.engine.params, bot.clock.now())
        finally:
            await bot.rest.aclose()
            bot.store.close()


async def test_a_market_whose_event_cannot_be_established_is_named_and_not_given_an_event(
        tmp_path, slow_autojump_clock, caplog):
    async with running_sim(run_scenario=False, cash=Decimal("1000")) as sim:
        lonely, fine = sim.markets[0], sim.markets[1]
        sim.exchange.update_event(sim.world.games[0].event_slug, closed=True)  # not listed
        bot = _bot(sim, tmp_path, [lonely, fine])
        try:
            with caplog.at_level(logging.WARNING, logger="polybot.reference"):
                await load_markets(bot.rest, bot.universe, [lonely, fine])
            assert bot.universe.get(lonely).event_id is None
            assert bot.universe.get(fine).event_id == str(sim.exchange.markets[fine].event_id)
            assert any(lonely in r.getMessage() and r.levelno == logging.WARNING
                       for r in caplog.records)
            assert "no exchange Event lists market" in bot.universe.unknown()[lonely]
            # and the gate refuses to open it (the per-event cap could not bind)
            sig = Signal(lonely, Intent.BUY_LONG, Decimal("0.50"), Decimal(1000), Decimal("0.90"),
                         Decimal("0.30"))
            result = bot.gate.check(sig, position=None, equity=Decimal(1000), cash=Decimal(900),
                                    market_info=bot.universe.info(lonely), now=bot.clock.now())
            assert isinstance(result, Rejection) and result.reason == "event_unknown"
        finally:
            await bot.rest.aclose()
            bot.store.close()
