"""The odds feed's targets change at run time (the universe adds and retires markets), against the
local OpticOdds: adds within a streamed league need no reconnect, removals leave nothing behind,
and completed / cancelled fixtures stop being priced."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest
import trio

from polybot.fairvalues import FairValues
from polybot.opticodds.client import OpticOddsClient
from polybot.opticodds.feed import FeedState, OddsFeed, OddsFeedConfig

from .test_feed import BOOKS, expected_q, targets, wait_for


async def start(nursery, local_odds, fv, initial):
    client = OpticOddsClient(local_odds.url, local_odds.key)
    feed = OddsFeed(client, fv, initial, OddsFeedConfig(sportsbooks=BOOKS))
    await nursery.start(feed.run)
    return feed


@pytest.fixture
def games(local_odds):
    return local_odds.world.games, targets(local_odds.world)


async def test_a_fixture_added_in_a_streamed_league_is_priced_without_a_reconnect(
        nursery, local_odds, games, mock_clock):
    (g0, g1, _), (t0, t1, _) = games
    fv = FairValues()
    feed = await start(nursery, local_odds, fv, [t0])
    await wait_for(lambda: feed.status.state is FeedState.LIVE and fv.usable(g0.market_slug))
    connects = local_odds.control.stream_connects
    assert connects == 1 and fv.usable(g1.market_slug) is None
    feed.set_targets([t0, t1])
    await wait_for(lambda: fv.usable(g1.market_slug) is not None)
    assert fv.usable(g1.market_slug).q == expected_q(local_odds.control, g1)
    # and the stream carries it from now on
    g1.true_prob_long = Decimal("0.25")
    local_odds.control.update_now()
    await wait_for(lambda: fv.usable(g1.market_slug).q == expected_q(local_odds.control, g1))
    assert local_odds.control.stream_connects == connects
    assert feed.statuses["basketball"].reconnects == 0


async def test_a_removed_target_stops_being_priced_and_its_fixture_state_is_dropped(
        nursery, local_odds, games, mock_clock):
    (g0, g1, _), (t0, t1, _) = games
    fv = FairValues()
    feed = await start(nursery, local_odds, fv, [t0, t1])
    await wait_for(lambda: fv.usable(g0.market_slug) and fv.usable(g1.market_slug))
    connects = local_odds.control.stream_connects
    feed.set_targets([t0])
    assert fv.usable(g1.market_slug) is None
    assert "no confirmed OpticOdds fixture target" in fv.why_not(g1.market_slug)
    assert feed.fixtures == {g0.fixture_id} and set(feed._touched) <= {g0.fixture_id}
    assert feed.market_keys() == {g0.market_slug}
    g1.true_prob_long = Decimal("0.25")
    g0.true_prob_long = Decimal("0.35")
    local_odds.control.update_now()
    await wait_for(lambda: fv.usable(g0.market_slug).q == expected_q(local_odds.control, g0))
    assert fv.get(g1.market_slug) is None and feed.fixtures == {g0.fixture_id}
    assert local_odds.control.stream_connects == connects
    assert (feed.added, feed.removed) == (0, 1)


async def test_a_new_sport_starts_its_own_stream_and_its_last_market_stops_it(
        nursery, local_odds, games, mock_clock):
    (g0, _, g2), (t0, _, t2) = games
    fv = FairValues()
    feed = await start(nursery, local_odds, fv, [t0])
    await wait_for(lambda: fv.usable(g0.market_slug) is not None)
    assert set(feed.statuses) == {"basketball"} and local_odds.control.stream_connects == 1
    feed.set_targets([t0, t2])
    await wait_for(lambda: fv.usable(g2.market_slug) is not None)
    assert fv.usable(g2.market_slug).q == expected_q(local_odds.control, g2)
    assert local_odds.control.stream_connects == 2  # hockey's own; basketball untouched
    assert feed.statuses["basketball"].reconnects == 0
    feed.set_targets([t0])
    await wait_for(lambda: not any(s.sport == "hockey" for s in local_odds.control._server.streams))
    assert set(feed.statuses) == {"basketball"} and feed.fixtures == {g0.fixture_id}
    assert fv.usable(g0.market_slug) is not None


async def test_a_new_league_of_a_streamed_sport_reconnects_that_sport_only(
        nursery, local_odds, games, mock_clock):
    (g0, g1, g2), (t0, t1, t2) = games
    fv = FairValues()
    feed = await start(nursery, local_odds, fv, [t0, t2])
    await wait_for(lambda: fv.usable(g0.market_slug) and fv.usable(g2.market_slug))
    assert local_odds.control.stream_connects == 2
    other_league = attrs.evolve(t1, league="wnba")  # the filter must widen: a new connection
    feed.set_targets([t0, other_league, t2])
    await wait_for(lambda: feed.statuses["basketball"].reconnects == 1
                   and feed.status.state is FeedState.LIVE and fv.usable(g1.market_slug))
    assert local_odds.control.stream_connects == 3 and feed.statuses["hockey"].reconnects == 0
    assert fv.usable(g0.market_slug) is not None


@pytest.mark.parametrize("status", ["completed", "cancelled"])
async def test_a_finished_fixture_is_no_longer_priced_and_its_odds_are_dropped(
        nursery, local_odds, games, mock_clock, status):
    (g0, g1, _), (t0, t1, _) = games
    fv = FairValues()
    feed = await start(nursery, local_odds, fv, [t0, t1])
    await wait_for(lambda: fv.usable(g0.market_slug) and fv.usable(g1.market_slug))
    g1.status = status
    local_odds.control.update_now()
    await wait_for(lambda: fv.get(g1.market_slug) is None)
    assert fv.why_not(g1.market_slug) == f"fixture {g1.fixture_id} is {status}"
    assert feed._odds[g1.fixture_id] == {}
    # later updates (and the REST refresh) do not bring the price back
    g0.true_prob_long = Decimal("0.41")
    local_odds.control.update_now()
    await wait_for(lambda: fv.usable(g0.market_slug).q == expected_q(local_odds.control, g0))
    await trio.sleep(90)  # past a REST refresh (60 s)
    assert fv.get(g1.market_slug) is None and feed._odds[g1.fixture_id] == {}


async def test_a_feed_started_with_no_target_streams_nothing_until_one_arrives(
        nursery, local_odds, games, mock_clock):
    (g0, _, _), (t0, _, _) = games
    fv = FairValues()
    feed = await start(nursery, local_odds, fv, [])
    await trio.sleep(60)
    assert local_odds.control.stream_connects == 0 and feed.status.state is FeedState.LIVE
    feed.set_targets([t0])
    await wait_for(lambda: fv.usable(g0.market_slug) is not None)
    assert fv.usable(g0.market_slug).q == expected_q(local_odds.control, g0)
    assert local_odds.control.stream_connects == 1
