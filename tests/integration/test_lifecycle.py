"""Markets end: the whole bot against the local exchange on Trio's mock clock (real sockets) —
retirement only once a market is over, flat and without an order; settlement (also of a market
resolved while the bot was down); every per-market container following the universe; the report's
won/lost/push; metrics by phase; and `cancel-all --direct` by stored order ids."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D

import pytest
import trio
import trio.testing

from polybot import console, operator, report
from polybot.model import Intent, MarketState, OrderRequest, TimeInForce
from polybot.runtime import Bot
from polybot.sim.engine import OrderSpec
from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from tests.integration.harness import bot_env, market_book, running_bot, wait_for


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


def containers_follow_the_universe(bot: Bot) -> dict[str, set[str]]:
    """Each container's markets that are not in the universe (all empty when it follows)."""
    live = set(bot.universe)
    return {name: keys - live for name, keys in bot.per_market_keys().items() if keys - live}


def report_rows(data_dir) -> dict[str, dict]:
    buf = io.StringIO()
    assert report.main(data_dir, as_json=True, out=buf) == 0
    return {row["market"]: row for row in json.loads(buf.getvalue())["markets"]}


async def test_a_market_retires_only_once_over_flat_and_without_orders_and_is_not_loaded_again(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        held, flat, other = sim.markets[0], sim.markets[1], sim.markets[2]
        script_book(sim.exchange, held, bids=[("0.09", 500)], offers=[("0.10", 500)])
        slugs = ",".join([held, flat, other])
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=slugs) as bot:
            assert await wait_for(lambda: bot.ledger.position(held).net_qty > 0, 60)
            assert await wait_for(lambda: bot.fair_values.market_keys() >= {held, flat}, 30)
            metrics = bot.metrics.render().decode()
            assert 'polybot_markets{phase="pre-game"} 3.0' in metrics

            # both expire (the book's state says so at once): the flat one goes, the held one stays
            sim.exchange.set_market_state(flat, MarketState.EXPIRED)
            sim.exchange.set_market_state(held, MarketState.EXPIRED)
            assert await wait_for(lambda: flat not in bot.universe, 30)
            await trio.sleep(5)
            assert held in bot.universe
            assert "until settled" in bot.lifecycle.kept_reason(held, bot.clock.now())

            sim.exchange.settle(held, D("1"))
            assert await wait_for(lambda: held not in bot.universe, 90)
            assert bot.ledger.position(held).net_qty == 0
            # gone from memory with its history folded into the totals; the store keeps its row
            assert held not in bot.ledger.markets
            assert bot.store.read_market(held).settled_value == D("1")
            assert bot.lifecycle.retired_configured == {held, flat}
            await trio.sleep(70)  # another metadata refresh: neither is loaded again
            assert list(bot.universe) == [other]
            assert await wait_for(lambda: not containers_follow_the_universe(bot), 30), \
                containers_follow_the_universe(bot)
            assert bot.exposure.portfolio == 0 and bot.exposure.held_count == 0
            bot.views.update_metrics()
            metrics = bot.metrics.render().decode()
            assert "polybot_markets_retired_total 2.0" in metrics
            assert 'polybot_markets{phase="pre-game"} 1.0' in metrics
            assert f'market="{held}"' not in metrics  # its fills/book-age series went with it
            assert "+3 -2" in bot.views.one_line_status()
            assert bot.supervisor.state().restarts == 0  # the group rolled on, never restarted
        assert report_rows(tmp_path)[held]["result"] == "won"


async def test_an_order_the_bot_did_not_place_keeps_a_closed_market_until_it_is_gone(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug, other = sim.markets[0], sim.markets[1]
        mine = sim.account_id
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=f"{slug},{other}") as bot:
            assert await wait_for(lambda: slug in bot.universe and bot.live.trading_allowed, 60)
            foreign = sim.exchange.submit(mine, OrderSpec(slug, Intent.BUY_LONG, price=D("0.03"),
                                                          quantity=D("5")))
            assert await wait_for(lambda: bot.exposure.market_orders(slug), 90)
            sim.exchange.set_market_state(slug, MarketState.CLOSED)  # the order stays open
            await trio.sleep(70)  # the closed status has been re-read
            assert slug in bot.universe
            assert bot.lifecycle.kept_reason(slug, bot.clock.now()) == "1 open order(s)"
            sim.exchange.cancel(mine, foreign)
            assert await wait_for(lambda: slug not in bot.universe, 90)
            assert bot.exposure.market_keys() <= set(bot.universe)


@pytest.mark.parametrize("live", [False, True], ids=["paper", "live"])
async def test_a_market_resolved_while_the_bot_is_down_is_settled_on_start_then_retired(
        tmp_path, mock_clock, live):
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug, other = sim.markets[0], sim.markets[1]
        script_book(sim.exchange, slug, bids=[("0.09", 500)], offers=[("0.10", 500)])
        async with running_bot(sim, tmp_path, live=live, MARKET_SLUGS=slug) as bot:
            assert await wait_for(lambda: bot.ledger.position(slug).net_qty > 0, 60)
            await trio.sleep(2)
            qty = bot.ledger.position(slug).net_qty
            cash = bot.ledger.cash
        script_book(sim.exchange, slug)
        sim.exchange.settle(slug, D("0"))  # resolves NO while the bot is down
        async with running_bot(sim, tmp_path, live=live, MARKET_SLUGS=other) as bot:
            # held outside the configured markets: it joins the universe, settles and retires
            assert await wait_for(lambda: bot.ledger.position(slug).net_qty == 0, 60)
            assert market_book(bot, slug).settled_value == D("0")
            assert bot.ledger.cash == cash  # a long position resolved at 0 pays nothing
            assert await wait_for(lambda: slug not in bot.universe, 30)
            assert await wait_for(lambda: not containers_follow_the_universe(bot), 30), \
                containers_follow_the_universe(bot)
            assert bot.supervisor.state().restarts == 0
            assert qty > 0
        row = report_rows(tmp_path)[slug]
        assert row["result"] == "lost" and D(row["settled"]) == 0


async def test_status_lists_each_market_with_its_phase_start_fixture_and_why_not_traded(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, opticodds=True) as sim:
        slug, halted = sim.markets[0], sim.markets[1]
        async with running_bot(sim, tmp_path, live=False,
                               MARKET_SLUGS=f"{slug},{halted}") as bot:
            assert await wait_for(lambda: bot.fair_values.fixture_id(slug) is not None, 60)
            sim.exchange.set_market_state(halted, MarketState.HALTED)

            def why_not(slug: str) -> str:
                return {r.slug: r for r in bot.status_report().markets}[slug].not_traded

            assert await wait_for(lambda: why_not(halted) == "market halted", 30)
            rows = {r.slug: r for r in bot.status_report().markets}
            assert rows[slug].phase == "pre-game" and rows[slug].not_traded == ""
            assert rows[slug].start_time == bot.universe.get(slug).start_time is not None
            assert rows[slug].fixture == bot.fair_values.fixture_id(slug)
            assert rows[slug].origin == "configured"
            assert rows[halted].not_traded == "market halted"
            assert bot.status_report().extra["universe"]["by_phase"]["pre-game"] == 2


async def test_cancel_all_direct_cancels_the_stored_orders_by_id_without_market_slugs(
        tmp_path, mock_clock, monkeypatch):
    async def no_decisions(self, slug, since=None):  # the orders below must rest, not be re-synced away
        return None

    monkeypatch.setattr(Bot, "evaluate_market", no_decisions)
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        a, b = sim.markets[0], sim.markets[1]
        mine = sim.account_id
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=f"{a},{b}",
                               CANCEL_ON_SHUTDOWN="false") as bot:
            assert await wait_for(lambda: bot.live.trading_allowed, 60)
            ids = []
            for slug in (a, b):
                order = await bot.executor.submit(
                    OrderRequest(slug, Intent.BUY_LONG, D("0.02"), D("5"), TimeInForce.GTC))
                assert order is not None and order.exchange_id is not None
                ids.append(order.exchange_id)
            await trio.sleep(1)
        assert sorted(o.order_id for o in sim.exchange.open_orders(mine)) == sorted(ids)
        # an order of the same account the bot did not place: never touched
        foreign = sim.exchange.submit(mine, OrderSpec(a, Intent.BUY_LONG, price=D("0.03"),
                                                      quantity=D("5")))
        env = bot_env(sim, tmp_path, live=True)
        del env["MARKET_SLUGS"]
        settings = console.settings_without_markets_or_exit(env)
        result = await operator.cancel_stored_orders(settings)
        assert sorted(result.cancelled) == sorted(ids) and result.ok
        assert [o.order_id for o in sim.exchange.open_orders(mine)] == [foreign]


def test_cancel_all_direct_loads_its_settings_without_market_slugs(tmp_path):
    env = {"PM_API_KEY_ID": "00000000-0000-4000-8000-000000000000",
           "PM_PRIVATE_KEY": "A" * 43 + "=", "DATA_DIR": str(tmp_path), "TRADING_MODE": "live"}
    settings = console.settings_without_markets_or_exit(env)
    assert settings.data_dir == tmp_path and settings.trading_mode == "live"
    assert settings.market_slugs == () and settings.market_leagues == ()  # no placeholder market
