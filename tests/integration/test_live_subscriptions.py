"""The whole bot against the sim: markets joining and leaving the universe change the websocket
subscriptions while it runs (no reconnect, no group restart), a market whose subscription never
answers is marked no_data (not traded, alerted), and the private socket covers every market."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
import trio
import trio.testing

from polybot.reference import load_markets
from polybot.sim.harness import running_sim
from polybot.sim.scenario import default_spec
from polybot.universe import Origin, Universe
from tests.integration.harness import running_bot, wait_for


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


def market_subs(sim) -> dict[str, frozenset[str]]:
    return {rid: sub.slugs for conn in sim.server.hub.connections if conn.kind == "markets"
            for rid, sub in conn.subs.items() if sub.sub_type == "SUBSCRIPTION_TYPE_MARKET_DATA"}


def subscribed(sim) -> frozenset[str]:
    return frozenset().union(*market_subs(sim).values())


async def test_markets_added_and_retired_at_run_time_follow_the_universe_without_reconnecting(
        tmp_path, mock_clock):
    async with running_sim(scenario=default_spec(4, n_games=110), run_scenario=False,
                           cash=D("1000")) as sim:
        configured, later = sim.markets[:100], sim.markets[100:110]
        async with running_bot(sim, tmp_path, live=True,
                               MARKET_SLUGS=",".join(configured)) as bot:
            assert await wait_for(lambda: subscribed(sim) == frozenset(configured), 60)
            assert await wait_for(lambda: all(bot.books.is_trusted(s) for s in configured), 30)
            stream = bot._markets_stream
            sent = (stream.subscribes, stream.unsubscribes)
            # a change of a market's facts is no change of the set: nothing is sent
            bot.universe.update(configured[0], unmatched_reason="(test)")
            await trio.sleep(1)
            assert (stream.subscribes, stream.unsubscribes) == sent
            # discovery adds ten markets in one pass, one by one: one change (the chunk of 100 is
            # full, so one new subscription per type), nothing unsubscribed, no reconnect
            found = Universe()
            await load_markets(bot.rest, found, later)
            for listing in found.listings():
                bot.universe.put(listing.info, event=listing.event, origin=Origin.DISCOVERED)
                await trio.sleep(0.05)
            assert await wait_for(lambda: subscribed(sim) == frozenset(sim.markets[:110]), 10)
            assert len(market_subs(sim)) == 2
            assert (stream.subscribes - sent[0], stream.unsubscribes - sent[1]) == (2, 0)
            assert await wait_for(lambda: all(bot.books.is_trusted(s) for s in later), 15)
            # retirement unsubscribes, and the stream holds nothing more for the market
            gone = later[0]
            bot.universe.retire(gone, "settled (test)")
            assert await wait_for(lambda: gone not in subscribed(sim), 10)
            assert gone not in stream.slugs and all(gone not in c.slugs for c in stream._chunks)
            assert gone not in bot._received_at
            assert subscribed(sim) == frozenset(bot.universe)
            assert sim.server.hub.accepted["markets"] == 1 and stream.connects == 1
            assert bot.supervisor.state().restarts == 0
            # the private socket covers every market (no marketSlugs): the universe never
            # changed it
            private = [sub.slugs for conn in sim.server.hub.connections if conn.kind == "private"
                       for sub in conn.subs.values()]
            assert private and all(slugs == frozenset() for slugs in private)
            assert sim.server.hub.accepted["private"] == 1


async def test_a_market_whose_subscription_never_answers_is_no_data_not_traded_and_alerted(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        silent, other = sim.markets[:2]
        sim.faults.unanswer_subscriptions(silent, 100)
        async with running_bot(sim, tmp_path, live=True,
                               MARKET_SLUGS=f"{silent},{other}") as bot:
            alerts: list = []
            send = bot.notifier.send_nowait

            def record(alert):
                alerts.append(alert)
                return send(alert)

            bot.notifier.send_nowait = record  # a spy: alerts still go to the real notifier
            assert await wait_for(lambda: silent in bot.universe, 30)
            t0 = trio.current_time()
            assert await wait_for(lambda: bot.universe.get(silent).no_data, 90)
            assert 35 <= trio.current_time() - t0 <= 60  # a first send and three re-sends of 10 s
            listing = bot.universe.get(silent)
            assert listing.why_not_traded().startswith("no_data")
            assert not bot.universe.get(other).no_data
            assert [a.title for a in alerts if a.key == "no_data"] == [
                "Market subscription never answered"]
            assert silent in alerts[-1].text
            assert bot._markets_stream.resends == 3
            assert sim.server.hub.accepted["markets"] == 1
            assert bot.supervisor.state().restarts == 0
            # the market answers at last (the gateway recovered): no_data is cleared
            sim.faults.unanswer_subscriptions(silent, 0)
            sim.faults.drop_websockets()
            assert await wait_for(lambda: not bot.universe.get(silent).no_data, 30)


async def test_the_odds_feed_follows_the_universe_targets_and_an_idle_feed_is_not_hung(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug = sim.markets[0]
        async with running_bot(sim, tmp_path, live=False, MARKET_SLUGS=slug) as bot:
            assert await wait_for(lambda: bot.fair_values.usable(slug) is not None, 60)
            feed = bot._odds_feed
            target = bot.universe.get(slug).target
            assert bot.universe.get(slug).target_confirmed and feed.market_keys() == {slug}
            # the match goes away (e.g. discovery no longer confirms it): no more pricing
            bot.universe.update(slug, target=None, target_confirmed=False,
                                unmatched_reason="(test)")
            assert await wait_for(lambda: not feed.market_keys(), 5)
            assert bot.fair_values.usable(slug) is None and feed.fixtures == frozenset()
            await trio.sleep(200)  # nothing to stream: idle, which the watchdog must not call hung
            assert bot.supervisor.state().restarts == 0 and bot._odds_feed is feed
            # confirmed again: priced again, by the same feed
            bot.universe.update(slug, target=target, target_confirmed=True, unmatched_reason="")
            assert await wait_for(lambda: bot.fair_values.usable(slug) is not None, 30)
            assert bot.supervisor.state().restarts == 0 and bot._odds_feed is feed
