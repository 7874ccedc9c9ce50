"""The odds feed against the local OpticOdds: snapshot, live updates, locks, drops and silence."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import trio

from polybot.fairvalues import FairValues
from polybot.opticodds.client import AuthError, OpticOddsClient
from polybot.opticodds.feed import FeedState, MarketTarget, OddsFeed, OddsFeedConfig
from polybot.pricing import BookMarket, consensus

BOOKS = ("pinnacle", "circa_sports", "betonline")


def targets(world):
    out = []
    for g in world.games:
        out.append(MarketTarget(slug=g.market_slug, fixture_id=g.fixture_id,
                                yes_selection=g.long_team.normalized, sport=g.sport, league=g.league))
    return out


def expected_q(control, game, books=BOOKS, method="shin"):
    """The consensus recomputed independently from the server's own current quotes."""
    quotes = control.quotes(game.fixture_id)
    yes, no = game.long_team.normalized, game.short_team.normalized
    markets = [BookMarket(b, (Decimal(quotes[b][yes]), Decimal(quotes[b][no])))
               for b in books if b in quotes]
    c = consensus(markets, method=method)
    return None if c is None else c.q


async def wait_for(cond, timeout=120, poll=1.0):
    # Virtual time: each autojump costs 20 ms of real idleness, so poll coarsely.
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(poll)


async def start_feed(nursery, local_odds, fv, **cfg):
    client = OpticOddsClient(local_odds.url, local_odds.key)
    progress = []
    config = OddsFeedConfig(sportsbooks=cfg.pop("books", BOOKS), **cfg)
    feed = OddsFeed(client, fv, targets(local_odds.world), config, on_progress=lambda: progress.append(1))
    await nursery.start(feed.run)
    return feed, progress


async def test_feed_goes_live_with_consensus_from_the_rest_snapshot(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, progress = await start_feed(nursery, local_odds, fv)
    world = local_odds.world
    await wait_for(lambda: all(fv.usable(g.market_slug) for g in world.games))
    assert feed.status.state is FeedState.LIVE
    assert set(feed.statuses) == {"basketball", "hockey"}
    for g in world.games:
        v = fv.usable(g.market_slug)
        assert v.q == expected_q(local_odds.control, g)
        assert [q.book for q in v.quotes] == sorted(BOOKS)
        assert v.method == "shin" and v.fixture_id == g.fixture_id
        info = fv.fixture(g.market_slug)
        assert info.status == "unplayed" and info.start_time == g.start_time and info.phase == "upcoming"
    # YES on the away (second-named) team for game 2: q near its hidden probability
    assert abs(fv.usable(world.games[1].market_slug).q - Decimal("0.55")) < Decimal("0.05")
    assert progress


async def test_stream_updates_are_applied(nursery, local_odds, mock_clock):
    fv = FairValues()
    await start_feed(nursery, local_odds, fv)
    g = local_odds.world.games[0]
    await wait_for(lambda: fv.usable(g.market_slug) is not None)
    before = fv.usable(g.market_slug).q
    g.true_prob_long = Decimal("0.75")
    local_odds.control.update_now()
    await wait_for(lambda: fv.usable(g.market_slug).q != before)
    assert fv.usable(g.market_slug).q == expected_q(local_odds.control, g)
    assert fv.usable(g.market_slug).q > Decimal("0.7")


async def test_locked_line_is_removed_from_the_consensus_and_returns_on_unlock(nursery, local_odds, mock_clock):
    fv = FairValues()
    await start_feed(nursery, local_odds, fv)
    g = local_odds.world.games[0]
    await wait_for(lambda: fv.usable(g.market_slug) is not None)
    local_odds.control.lock(g.fixture_id, "pinnacle")
    await wait_for(lambda: "pinnacle" not in [q.book for q in fv.usable(g.market_slug).quotes])
    assert [q.book for q in fv.usable(g.market_slug).quotes] == ["betonline", "circa_sports"]
    assert fv.usable(g.market_slug).q == expected_q(local_odds.control, g)
    local_odds.control.unlock(g.fixture_id, "pinnacle")
    await wait_for(lambda: len(fv.usable(g.market_slug).quotes) == 3)


async def test_too_few_books_clears_the_fair_value_with_a_reason(nursery, local_odds, mock_clock):
    fv = FairValues()
    await start_feed(nursery, local_odds, fv, min_books=3)
    g = local_odds.world.games[0]
    await wait_for(lambda: fv.usable(g.market_slug) is not None)
    local_odds.control.lock(g.fixture_id, "betonline")
    await wait_for(lambda: fv.get(g.market_slug) is None)
    assert fv.why_not(g.market_slug) == "2 book(s) quoting, 3 needed"


async def test_dropped_stream_is_rebuilt_from_rest_including_changes_missed_meanwhile(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv)
    g = local_odds.world.games[0]
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    assert local_odds.control.stream_connects == 2
    before = fv.usable(g.market_slug).q
    local_odds.control.drop_streams()
    await wait_for(lambda: feed.statuses["basketball"].state is FeedState.RECONNECTING)
    assert fv.usable(g.market_slug) is None  # untrusted while down
    assert fv.get(g.market_slug) is not None  # the last value is kept for display
    # a move published while no stream is connected is lost on the stream...
    g.true_prob_long = Decimal("0.30")
    local_odds.control.lock(g.fixture_id, "circa_sports")
    # ...and recovered by the REST rebuild after the reconnect
    await wait_for(lambda: feed.statuses["basketball"].state is FeedState.LIVE and fv.usable(g.market_slug) is not None)
    assert feed.statuses["basketball"].reconnects == 1
    assert local_odds.control.stream_connects == 4  # both sports reconnected once
    v = fv.usable(g.market_slug)
    assert v.q != before and v.q == expected_q(local_odds.control, g)
    assert "circa_sports" not in [q.book for q in v.quotes]


async def test_silent_stream_is_detected_and_reconnected(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv, stale_seconds=15.0)
    g = local_odds.world.games[0]
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    local_odds.control.silent = True
    await wait_for(lambda: feed.statuses["basketball"].state is not FeedState.LIVE)
    st = feed.statuses["basketball"]
    assert st.since - st.last_frame_at >= 15.0  # declared dead only after 15 s without a byte
    assert "silent" in feed.statuses["basketball"].last_error
    assert fv.usable(g.market_slug) is None
    local_odds.control.silent = False
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    assert fv.usable(g.market_slug) is not None
    assert feed.statuses["basketball"].reconnects >= 1


async def test_pings_keep_a_quiet_stream_alive(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv, stale_seconds=15.0)
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    await trio.sleep(120)  # no odds move (updates are manual), only pings every 5 s
    assert feed.status.state is FeedState.LIVE
    assert all(s.reconnects == 0 for s in feed.statuses.values())


async def test_unknown_configured_book_is_named_in_a_warning(nursery, local_odds, mock_clock, caplog):
    caplog.set_level(logging.WARNING)
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv, books=("pinnacle", "notabook"))
    assert feed.unknown_books == ("notabook",)
    assert "notabook" in caplog.text and "OPTICODDS_SPORTSBOOKS" in caplog.text


async def test_bad_key_stops_the_feed_with_a_clear_auth_error(local_odds, mock_clock):
    fv = FairValues()
    client = OpticOddsClient(local_odds.url, "bad-key")
    feed = OddsFeed(client, fv, targets(local_odds.world), OddsFeedConfig(sportsbooks=BOOKS))
    with pytest.raises(AuthError, match="Invalid or inactive API key"):
        await feed.run()


async def test_bad_key_on_the_stream_is_fatal_even_after_startup(nursery, local_odds, mock_clock):
    """A key revoked after start: the stream connect gets 401 and the feed raises, bare."""
    fv = FairValues()
    client = OpticOddsClient(local_odds.url, local_odds.key)
    feed = OddsFeed(client, fv, targets(local_odds.world), OddsFeedConfig(sportsbooks=BOOKS))
    await feed._check_books()
    client._headers["X-Api-Key"] = "revoked"
    with pytest.raises(AuthError):
        await feed.run()


async def test_finished_fixture_clears_fair_value(nursery, local_odds, mock_clock):
    fv = FairValues()
    await start_feed(nursery, local_odds, fv)
    g = local_odds.world.games[2]
    await wait_for(lambda: fv.usable(g.market_slug) is not None)
    g.status = "completed"
    local_odds.control.update_now()
    await wait_for(lambda: fv.get(g.market_slug) is None)
    assert fv.fixture(g.market_slug).phase == "finished"


async def test_periodic_rest_refresh_catches_a_change_the_stream_missed(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv, refresh_seconds=60.0)
    g = local_odds.world.games[0]
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    before = fv.usable(g.market_slug).q
    local_odds.control.silent = True  # the next frames are lost in transit...
    g.true_prob_long = Decimal("0.20")
    local_odds.control.update_now()
    local_odds.control.silent = False  # ...but the connection stays healthy
    await trio.sleep(30)
    assert fv.usable(g.market_slug).q == before  # the stream never told us
    await wait_for(lambda: fv.usable(g.market_slug).q != before)
    assert fv.usable(g.market_slug).q == expected_q(local_odds.control, g)
    assert all(s.reconnects == 0 for s in feed.statuses.values())


async def test_scenario_world_is_priced_for_every_game_near_its_hidden_probability(nursery, mock_clock):
    from datetime import UTC, datetime
    from functools import partial

    from polybot.sim.opticodds import OddsControl, serve_opticodds
    from polybot.sim.scenario import build_scenario

    sc = build_scenario(3, start=datetime.now(UTC))
    control = OddsControl()
    url = await nursery.start(partial(serve_opticodds, sc.world, api_key="k", update_seconds=1e6,
                                      lock_probability=0.0, control=control))
    fv = FairValues()
    client = OpticOddsClient(url, "k")
    feed = OddsFeed(client, fv, targets(sc.world), OddsFeedConfig(sportsbooks=BOOKS))
    await nursery.start(feed.run)
    await wait_for(lambda: all(fv.usable(g.market_slug) for g in sc.world.games))
    assert len({g.sport for g in sc.world.games}) >= 2  # one stream per sport
    for g in sc.world.games:
        assert abs(fv.usable(g.market_slug).q - g.true_prob_long) < Decimal("0.06"), g.market_slug


async def test_duplicated_frames_are_applied_once(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv)
    g = local_odds.world.games[0]
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    local_odds.control.duplicate_frames = 5
    g.true_prob_long = Decimal("0.70")
    local_odds.control.update_now()
    await wait_for(lambda: feed.statuses["basketball"].duplicates >= 1)
    assert fv.usable(g.market_slug).q == expected_q(local_odds.control, g)


async def test_rest_outage_keeps_markets_untrusted_until_a_snapshot_succeeds(nursery, local_odds, mock_clock):
    fv = FairValues()
    feed, _ = await start_feed(nursery, local_odds, fv)
    g = local_odds.world.games[0]
    await wait_for(lambda: feed.status.state is FeedState.LIVE)
    local_odds.control.error_burst = 12  # a few rebuild attempts' worth of 500s
    local_odds.control.drop_streams()
    await wait_for(lambda: "REST snapshot failed" in feed.statuses["basketball"].last_error)
    assert fv.usable(g.market_slug) is None
    await wait_for(lambda: feed.status.state is FeedState.LIVE, timeout=600)
    assert local_odds.control.error_burst == 0
    assert fv.usable(g.market_slug).q == expected_q(local_odds.control, g)
