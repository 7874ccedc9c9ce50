"""The OpticOdds client against the local OpticOdds over loopback."""

from __future__ import annotations

import logging

import pytest
import trio

from polybot.opticodds.client import AuthError, BadRequestError, OpticOddsClient, ServerError
from polybot.pricing import BookMarket, american_to_prob, consensus


async def test_rest_snapshot_gives_both_sides_of_every_book_per_fixture(local_odds):
    fid = local_odds.world.games[0].fixture_id
    async with OpticOddsClient(local_odds.url, local_odds.key) as c:
        snap = await c.fixture_odds([fid], ["pinnacle", "circa_sports", "betonline"])
    fo = snap[fid]
    assert fo.fixture.sport == "basketball" and fo.fixture.status == "unplayed"
    assert {o.book for o in fo.odds} == {"pinnacle", "circa_sports", "betonline"}
    quotes = local_odds.control.quotes(fid)
    for o in fo.odds:
        assert o.market_id == "moneyline" and o.grouping_key == "default"
        assert int(o.price) == quotes[o.book][o.normalized_selection]
    pin = {o.normalized_selection: o.price for o in fo.odds if o.book == "pinnacle"}
    c_ = consensus([BookMarket("pinnacle", (pin["boston_celtics"], pin["new_york_knicks"]))], method="shin")
    assert c_ is not None and abs(float(c_.q) - 0.64) < 0.05  # near the hidden probability
    assert sum(american_to_prob(p) for p in pin.values()) > 1  # the book's margin is there


async def test_odds_requests_are_batched_by_five_books_and_five_fixtures(local_odds):
    games = local_odds.world.games
    fids = [g.fixture_id for g in games] + [f"MISSING{i}" for i in range(4)]  # 7 fixtures
    books = ["pinnacle", "circa_sports", "betonline", "bookmaker", "draftkings", "fanduel"]
    before = local_odds.control.rest_requests
    async with OpticOddsClient(local_odds.url, local_odds.key) as c:
        snap = await c.fixture_odds(fids, books)
    assert local_odds.control.rest_requests - before == 4  # 2 book groups x 2 fixture groups
    assert set(snap) == {g.fixture_id for g in games}
    assert {o.book for o in snap[games[0].fixture_id].odds} == set(books)


async def test_a_failing_snapshot_request_raises_its_own_error_not_a_group(local_odds, mock_clock):
    # the batched requests run a few at a time: the first failure cancels the others and the
    # caller still catches meaning (ServerError), as it did when they ran one by one
    games = local_odds.world.games
    fids = [g.fixture_id for g in games] + [f"MISSING{i}" for i in range(7)]  # 2 requests
    async with OpticOddsClient(local_odds.url, local_odds.key, retries=1) as c:
        local_odds.control.error_burst = 100
        with pytest.raises(ServerError, match="500"):
            await c.fixture_odds(fids, ["pinnacle"])
        local_odds.control.error_burst = 0
        snap = await c.fixture_odds(fids, ["pinnacle"])
    assert set(snap) == {g.fixture_id for g in games}


async def test_bad_key_is_reported_as_auth_error_without_leaking_the_key(local_odds, caplog):
    caplog.set_level(logging.DEBUG)
    async with OpticOddsClient(local_odds.url, "wrong-key-123456") as c:
        with pytest.raises(AuthError) as err:
            await c.sportsbooks()
        assert "wrong-key-123456" not in repr(c)
    assert "401" in str(err.value) and "Invalid or inactive API key" in str(err.value)
    assert "wrong-key-123456" not in caplog.text and "wrong-key-123456" not in str(err.value)


async def test_bad_key_on_the_stream_is_an_auth_error(local_odds):
    async with OpticOddsClient(local_odds.url, "nope") as c:
        with pytest.raises(AuthError, match="Invalid or inactive API key"):
            async with c.stream_odds("basketball", ["pinnacle"]):
                pass


async def test_fixtures_listing_validates_and_filters(local_odds):
    async with OpticOddsClient(local_odds.url, local_odds.key) as c:
        nba = await c.active_fixtures(league=["nba"])
        assert {f.id for f in nba} == {g.fixture_id for g in local_odds.world.games[:2]}
        by_team = await c.fixtures_by_team("EEEE99990000")
        assert [f.league for f in by_team] == ["nhl"]
        assert {c_.id for c_ in by_team[0].home} == {"EEEE99990000"}
        with pytest.raises(BadRequestError, match="at least one of sport, league"):
            await c.fixtures()
        one = await c.fixture(local_odds.world.games[2].fixture_id)
        assert one is not None and one.sport == "hockey"


async def test_server_error_is_retried_then_typed_when_it_persists(local_odds, mock_clock):
    async with OpticOddsClient(local_odds.url, local_odds.key, retries=2) as c:
        local_odds.control.error_burst = 1
        assert any(b.id == "pinnacle" for b in await c.sportsbooks())
        local_odds.control.error_burst = 3
        with pytest.raises(ServerError, match="500"):
            await c.sportsbooks()


async def test_429_waits_for_the_window_then_succeeds(local_odds, mock_clock):
    async with OpticOddsClient(local_odds.url, local_odds.key) as c:
        local_odds.control.rate_limit_burst = 1
        t0 = trio.current_time()
        books = await c.sportsbooks()
    assert books and trio.current_time() - t0 >= 0.5  # slept on the reset, not hammered


async def test_local_budget_spaces_requests_over_fifteen_second_windows(local_odds, mock_clock):
    async with OpticOddsClient(local_odds.url, local_odds.key, rate_limit=2) as c:
        t0 = trio.current_time()
        for _ in range(3):
            await c.sportsbooks()
    assert trio.current_time() - t0 >= 15


async def test_sim_reproduces_documented_validation_messages(local_odds):
    import httpx

    h = {"X-Api-Key": local_odds.key}
    async with httpx.AsyncClient(base_url=local_odds.url, headers=h) as http:
        r = await http.get("/fixtures/odds", params={"fixture_id": "x"})
        assert (r.status_code, r.json()) == (400, {"error": "sportsbook is required"})
        r = await http.get("/fixtures/odds", params=[("fixture_id", "x")] + [("sportsbook", f"b{i}") for i in range(6)])
        assert r.json() == {"error": "maximum 5 sportsbooks allowed"}
        r = await http.get("/fixtures/odds", params={"sportsbook": "pinnacle", "league": "nba"})
        assert r.json()["error"] == "you must provide at least one of fixture_id, player_id, or team_id"
        r = await http.get("/fixtures", params={"league": "nba", "status": "bogus"})
        assert r.json() == {"error": "invalid status: bogus"}
        r = await http.get("/stream/odds/basketball")
        assert r.status_code == 400 and r.text == "At least 1 sportsbook must be provided."
        r = await http.get("/sportsbooks")
        assert int(r.headers["x-ratelimit-reset"]) % 15 == 0
        assert any(b["id"] == "polymarket_usa_" and b["name"] == "Polymarket (USA)" for b in r.json()["data"])
    async with httpx.AsyncClient(base_url=local_odds.url) as http:
        r = await http.get("/sportsbooks")
        assert (r.status_code, r.json()) == (401, {"error": "API key is required"})
        r = await http.get("/sportsbooks", params={"key": local_odds.key})
        assert r.status_code == 200
