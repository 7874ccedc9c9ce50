"""A league schedule served over loopback on a mock clock: the discovery endpoints in the real
shapes (decoded by the bot's own parsers), games rolling from listing to settlement, the local
OpticOdds following the same world, and the faults discovery tests need.

Time: `MockClock(autojump_threshold=0.001)` with real sockets (the sim is in this process and
loopback answers at once, so the threshold is only real waiting per jump); the world's cadences
(model tick, odds updates, heartbeats, pings) are minutes, so hours of schedule take few jumps.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import trio
import trio.testing

from polybot.model import MarketStatus
from polybot.opticodds.client import OpticOddsClient
from polybot.opticodds.wire import parse_fixture_status, parse_odds_message
from polybot.polymarket import wire
from polybot.sim.harness import running_sim
from polybot.sim.scenario import LEAGUE_REFDATA, Liquidity, Timing, league_schedule_spec

HOUR = 3600.0
SLOW = dict(heartbeat_seconds=600.0, odds_update_seconds=60.0, odds_ping_seconds=600.0,
            rate_limit=None)
TIMING = Timing(tick_seconds=60.0, quote_refresh_seconds=300.0, taker_rate=0.002)
THIN = Liquidity(makers=1, levels=2)


def schedule(seed: int = 4, **kw):
    args = dict(games_per_wave=2, wave_spacing_seconds=2 * HOUR, list_ahead_seconds=3 * HOUR,
                game_length_seconds=HOUR, settle_delay_seconds=600.0, first_wave_seconds=HOUR,
                wave_stagger_seconds=600.0, timing=TIMING, liquidity=THIN)
    args.update(kw)
    return league_schedule_spec(seed, ("nba", "nhl"), **args)


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def exact(r: httpx.Response) -> dict:
    """The body as the bot decodes money (numbers with a fraction as Decimal)."""
    assert r.status_code == 200, r.text
    return wire.loads_exact(r.content)


async def listing(http: httpx.AsyncClient, league: str, **params) -> list[dict]:
    series = LEAGUE_REFDATA[league][4]
    return exact(await http.get("/v1/events", params={"seriesId": series, **params}))["events"]


async def test_leagues_are_served_in_the_documented_shape_and_paged_by_50(mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        leagues = (await http.get("/v2/leagues")).json()["leagues"]
        assert [lg["slug"] for lg in leagues] == ["nfl", "nba", "nhl"]
        for lg in leagues:
            name, league_id, sport_id, tag_id, series_id = LEAGUE_REFDATA[lg["slug"]]
            assert (lg["name"], lg["id"], lg["sportId"], lg["tagId"], lg["activeSeriesId"]) == (
                name, league_id, sport_id, tag_id, series_id)
            assert lg["isOperational"] is True and lg["abbreviation"] == name
        page = (await http.get("/v2/leagues", params={"limit": 2, "offset": 1})).json()
        assert [lg["slug"] for lg in page["leagues"]] == ["nba", "nhl"]
        one = (await http.get("/v2/leagues/nhl")).json()
        assert one == {"league": leagues[2]}
        missing = await http.get("/v2/leagues/ncaab")
        assert missing.status_code == 404 and missing.json()["code"] == 5
        # the league lives on the public gateway, not on the signed api host
        assert (await http.get(sim.api_url + "/v2/leagues")).status_code == 404


async def test_league_events_list_the_active_series_upcoming_games_decoded_by_the_bots_parser(
        mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        body = exact(await http.get("/v2/leagues/nba/events"))
        assert (body["type"], body["typeTitle"], body["section"], body["sectionTitle"]) == (
            "sport", "Games", "general", "Sport")
        assert body["league"]["slug"] == "nba"
        games = {g.event_slug: g for g in sim.world.games if g.league == "nba"}
        assert [e["slug"] for e in body["events"]] == sorted(
            games, key=lambda s: (games[s].start_time, games[s].event_id))
        for raw in body["events"]:
            event, markets = wire.parse_event(raw)
            g = games[event.slug]
            assert event.start_time == g.start_time and event.series_slug == "nba-2026"
            assert {t.provider_id("PROVIDER_OPTICODDS") for t in event.teams} == {
                g.home.opticodds_id, g.away.opticodds_id}
            assert [m.slug for m in markets] == [g.market_slug]
            m = markets[0]
            assert m.sports_market_type == "basketball_team_full_game_winner"
            assert m.event_slug == event.slug and m.status is MarketStatus.OPEN
            long_team = next(s for s in m.sides if s.long).team_id
            assert long_team == str(g.long_team.team_id)
        first = body["events"][0]
        paged = (await http.get("/v2/leagues/nba/events",
                                params={"limit": 1, "offset": 1})).json()["events"]
        assert [e["slug"] for e in paged] == [body["events"][1]["slug"]]
        rest = (await http.get("/v2/leagues/nba/events",
                               params=[("excludeEventId", first["id"])])).json()["events"]
        assert [e["slug"] for e in rest] == [e["slug"] for e in body["events"][1:]]
        futures = (await http.get("/v2/leagues/nba/events", params={"type": "futures"})).json()
        assert futures["events"] == [] and futures["typeTitle"] == "Futures"
        hockey = (await http.get("/v2/leagues/nhl/events")).json()["events"]
        assert hockey and all(
            m["sportsMarketType"] == "hockey_team_full_game_winner"
            for e in hockey for m in e["markets"])


async def test_v1_events_filter_by_series_start_window_state_and_page_by_offset(mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        nba = {g.event_slug: g for g in sim.world.games if g.league == "nba"}
        nhl = {g.event_slug: g for g in sim.world.games if g.league == "nhl"}
        assert len(nba) == len(nhl) == 3
        assert {e["slug"] for e in await listing(http, "nba")} == set(nba)
        both = (await http.get("/v1/events", params=[
            ("seriesId", LEAGUE_REFDATA["nba"][4]), ("seriesId", LEAGUE_REFDATA["nhl"][4])])).json()
        assert {e["slug"] for e in both["events"]} == set(nba) | set(nhl)
        # the start-time window is inclusive at both ends
        starts = sorted(g.start_time for g in nba.values())
        window = await listing(http, "nba", startTimeMin=iso(starts[0]), startTimeMax=iso(starts[1]))
        assert sorted(wire.parse_event(e)[0].start_time for e in window) == starts[:2]
        assert await listing(http, "nba", startTimeMin=iso(starts[-1] + timedelta(seconds=1))) == []
        bad = await http.get("/v1/events", params={"startTimeMin": "tomorrow"})
        assert bad.status_code == 400
        # offset paging walks the series once, without repeats
        pages = [await listing(http, "nba", limit=2, offset=k) for k in (0, 2, 4)]
        assert [len(p) for p in pages] == [2, 1, 0]
        assert sorted(e["slug"] for p in pages for e in p) == sorted(nba)
        assert await listing(http, "nba", live="true") == []
        assert len(await listing(http, "nba", closed="false", ended="false")) == 3
        # an hour and a bit later the first game is live, and listed as such
        await trio.sleep(HOUR + 120)
        live = await listing(http, "nba", live="true")
        assert [e["slug"] for e in live] == [min(nba, key=lambda s: nba[s].start_time)]
        assert live[0]["live"] is True and live[0]["ended"] is False


async def test_games_roll_through_listing_play_close_and_settlement_over_seven_hours(mock_clock):
    async with running_sim(scenario=schedule(), opticodds=True, **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        seen_open: set[str] = set()
        seen_closed: set[str] = set()
        settled: dict[str, Decimal] = {}
        for _ in range(7 * 6):
            await trio.sleep(600)
            now = sim.now()
            for league in ("nba", "nhl"):
                for raw in await listing(http, league, closed="false"):
                    event, (market,) = wire.parse_event(raw)
                    # listed no earlier than list_ahead before the start
                    assert event.start_time is not None
                    assert event.start_time <= now + timedelta(hours=3, seconds=60)
                    if market.status is MarketStatus.OPEN:
                        seen_open.add(market.slug)
                    elif market.status is MarketStatus.CLOSED:
                        seen_closed.add(market.slug)
                        assert raw["ended"] is True
                listed = {e["slug"] for e in await listing(http, league, closed="false")}
                board = {e["slug"] for e in
                         (await http.get(f"/v2/leagues/{league}/events")).json()["events"]}
                assert board == listed
                fixtures = await oo.active_fixtures(league=[league])
                unfinished = {g.fixture_id for g in sim.world.games
                              if g.league == league and g.status in ("unplayed", "live")}
                assert {f.id for f in fixtures} == unfinished
            for g in sim.world.games:
                r = await http.get(f"/v1/markets/{g.market_slug}/settlement")
                if r.status_code == 200:
                    settled[g.market_slug] = Decimal(str(r.json()["settlement"]))
        by_league = {lg: [s for s in settled if f"-{lg}-" in f"-{s}"] for lg in ("nba", "nhl")}
        # waves start at +1, +3, +5 h (2 games each, 10 min apart): three waves have settled
        assert len(by_league["nba"]) == len(by_league["nhl"]) == 6
        assert set(settled) <= seen_open and set(settled) <= seen_closed
        for slug, value in settled.items():
            assert value in (Decimal(0), Decimal(1))
            market = (await http.get(f"/v1/market/slug/{slug}")).json()["market"]
            assert market["status"] == "MARKET_STATUS_RESOLVED" and market["closed"] is True
        # a closed event leaves the open listings but stays readable by slug
        assert not set(settled) & {m["slug"] for e in await listing(http, "nba", closed="false")
                                   for m in e["markets"]}
        assert all(e["closed"] for e in await listing(http, "nba", closed="true"))


async def test_a_league_listing_fails_for_the_next_n_requests_and_other_leagues_are_served(
        mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        nba, nhl = LEAGUE_REFDATA["nba"][4], LEAGUE_REFDATA["nhl"][4]
        sim.faults.fail_listings(3, "nba")
        codes = []
        for path, params in [("/v1/events", {"seriesId": nba}),
                             ("/v1/events", {"seriesId": nhl}),
                             ("/v2/leagues/nhl/events", {}),
                             ("/v2/leagues/nba/events", {}),
                             ("/v2/leagues/nba", {}),  # the league itself is not a listing
                             ("/v1/events", {"seriesId": nba}),
                             ("/v1/events", {"seriesId": nba})]:
            codes.append((await http.get(path, params=params)).status_code)
        assert codes == [503, 200, 200, 503, 200, 503, 200]
        body = (await http.get("/v1/events", params={"seriesId": nba})).json()
        assert len(body["events"]) == 3
        # through the admin API, for a bot in another process: any league's listing fails
        admin = await http.post(sim.admin_url + "/admin/faults",
                                json={"listing_error_burst": 1, "listing_error_league": ""})
        assert admin.status_code == 200 and admin.json()["listing_error_burst"] == 1
        assert (await http.get("/v1/events", params={"seriesId": nhl})).status_code == 503
        assert (await http.get("/v1/events", params={"seriesId": nhl})).status_code == 200


async def test_a_postponed_game_moves_in_place_on_the_exchange_and_at_opticodds(mock_clock):
    async with running_sim(scenario=schedule(), opticodds=True, **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        g = min((g for g in sim.world.games if g.league == "nba"), key=lambda g: g.start_time)
        old = g.start_time
        statuses = []

        async def watch(task_status=trio.TASK_STATUS_IGNORED):
            async with oo.stream_odds("basketball", ["pinnacle"], leagues=["nba"]) as stream:
                task_status.started()
                async for ev in stream.events():
                    if ev is not None and ev.event == "fixture-status":
                        statuses.append(parse_fixture_status(ev.data))

        async with trio.open_nursery() as n:
            await n.start(watch)
            sim.scenario.postpone(g.market_slug, 2 * HOUR)
            await trio.sleep(120)
            n.cancel_scope.cancel()
        (raw,) = exact(await http.get("/v1/events", params={"slug": g.event_slug}))["events"]
        event, (market,) = wire.parse_event(raw)
        assert event.start_time == old + timedelta(hours=2) == g.start_time
        assert market.slug == g.market_slug and market.start_time == g.start_time
        fixture = await oo.fixture(g.fixture_id)
        assert fixture is not None and fixture.start_date == g.start_time
        assert [(s.fixture_id, s.status, s.start_date) for s in statuses] == [
            (g.fixture_id, None, g.start_time)]


async def test_a_league_stream_gets_fixtures_listed_after_it_connected_and_their_statuses(
        mock_clock):
    async with running_sim(scenario=schedule(), opticodds=True, **SLOW) as sim, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        at_connect = {g.fixture_id for g in sim.world.games}
        odds_fixtures: set[str] = set()
        statuses: dict[str, list[str]] = {}

        async def watch(task_status=trio.TASK_STATUS_IGNORED):
            async with oo.stream_odds("basketball", ["pinnacle", "draftkings"],
                                      leagues=["nba"]) as stream:
                task_status.started()
                async for ev in stream.events():
                    if ev is None:
                        continue
                    if ev.event in ("odds", "locked-odds"):
                        msg = parse_odds_message(ev.data, locked=ev.event == "locked-odds")
                        odds_fixtures.update(o.fixture_id for o in msg.odds)
                    elif ev.event == "fixture-status":
                        st = parse_fixture_status(ev.data)
                        if st.status:
                            statuses.setdefault(st.fixture_id, []).append(st.status)

        async with trio.open_nursery() as n:
            await n.start(watch)
            await trio.sleep(3.5 * HOUR)
            n.cancel_scope.cancel()
        later = {g.fixture_id for g in sim.world.games if g.league == "nba"} - at_connect
        assert later, "the schedule listed new nba games while the stream was open"
        assert later <= odds_fixtures  # no reconnect needed for new fixtures of the league
        nhl = {g.fixture_id for g in sim.world.games if g.league == "nhl"}
        assert not odds_fixtures & nhl and not set(statuses) & nhl
        first_wave = [g for g in sim.world.games
                      if g.league == "nba" and g.start_time < sim.now() - timedelta(hours=1)]
        assert first_wave
        for g in first_wave:
            assert statuses[g.fixture_id] == ["live", "completed"]


async def test_a_crowded_schedule_serves_more_than_100_markets_over_several_pages(mock_clock):
    crowded = schedule(games_per_wave=60, wave_stagger_seconds=5.0,
                       wave_spacing_seconds=10 * HOUR)
    async with running_sim(scenario=crowded, opticodds=True, run_scenario=False, **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        assert len(sim.markets) == 120
        params = [("seriesId", LEAGUE_REFDATA["nba"][4]), ("seriesId", LEAGUE_REFDATA["nhl"][4])]
        first = (await http.get("/v1/events", params=params)).json()["events"]
        second = (await http.get("/v1/events", params=[*params, ("offset", "100")])).json()
        assert len(first) == 100 and len(second["events"]) == 20  # the default page is 100
        assert {m["slug"] for e in first + second["events"] for m in e["markets"]} == set(
            sim.markets)
        raw = await http.get(sim.opticodds_url + "/fixtures/active",
                             params={"league": "nba", "limit": 500, "key": sim.opticodds_key})
        assert len(raw.json()["data"]) == 60 and raw.json()["has_more"] is False
        raw = await http.get(sim.opticodds_url + "/fixtures/active",
                             params={"league": "nba", "limit": 25, "page": 3,
                                     "key": sim.opticodds_key})
        assert len(raw.json()["data"]) == 10 and raw.json()["has_more"] is False
        assert len(await oo.active_fixtures(sport=["basketball", "hockey"])) == 120


async def test_a_halted_market_shows_halted_then_open_again(mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        slug = sim.markets[0]
        sim.scenario.halt(slug, reopen_after_seconds=900)
        await trio.sleep(60)
        m = (await http.get(f"/v1/market/slug/{slug}")).json()["market"]
        assert (m["status"], m["active"]) == ("MARKET_STATUS_HALTED", False)
        await trio.sleep(900)
        m = (await http.get(f"/v1/market/slug/{slug}")).json()["market"]
        assert (m["status"], m["active"]) == ("MARKET_STATUS_OPEN", True)


async def test_a_market_resolves_with_no_client_connected(mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        slug = sim.markets[0]
        sim.scenario.finish_game(slug, outcome=Decimal(0))
        assert (await http.get(f"/v1/markets/{slug}/settlement")).status_code == 404
        await trio.sleep(660)
        r = await http.get(f"/v1/markets/{slug}/settlement")
        assert r.status_code == 200 and r.json() == {"slug": slug, "settlement": 0.0}


async def test_a_game_is_unknown_until_listed_then_found_by_fixture_window_and_partner_id(
        mock_clock):
    async with running_sim(scenario=schedule(), opticodds=True, **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        before = {g.fixture_id for g in sim.world.games}
        await trio.sleep(HOUR + 60)  # wave 1's second games are listed at +1 h 10 min
        new = [g for g in sim.world.games if g.fixture_id not in before]
        assert new and all(g.start_time - sim.now() > timedelta(hours=1) for g in new)
        for g in new:
            r = await http.get(f"/v1/partners/opticodds/events/{g.fixture_id}")
            assert r.status_code == 200
            event, (market,) = wire.parse_event(wire.loads_exact(r.content)["event"])
            assert market.slug == g.market_slug and event.start_time == g.start_time
        ahead = await oo.active_fixtures(league=["nhl"], start_after=sim.now() + timedelta(hours=1),
                                         start_before=sim.now() + timedelta(hours=3))
        assert {f.id for f in ahead} == {
            g.fixture_id for g in sim.world.games if g.league == "nhl"
            and sim.now() + timedelta(hours=1) <= g.start_time <= sim.now() + timedelta(hours=3)}
        assert ahead
        unlisted = "20990101DEADBEEF"
        assert (await http.get(f"/v1/partners/opticodds/events/{unlisted}")).status_code == 404
        assert await oo.fixture(unlisted) is None


async def test_a_cancelled_game_is_pushed_as_cancelled_and_leaves_the_active_fixtures(mock_clock):
    async with running_sim(scenario=schedule(), opticodds=True, **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        g = next(g for g in sim.world.games if g.league == "nhl")
        statuses = []

        async def watch(task_status=trio.TASK_STATUS_IGNORED):
            async with oo.stream_odds("hockey", ["pinnacle"], leagues=["nhl"]) as stream:
                task_status.started()
                async for ev in stream.events():
                    if ev is not None and ev.event == "fixture-status":
                        statuses.append(parse_fixture_status(ev.data))

        async with trio.open_nursery() as n:
            await n.start(watch)
            sim.scenario.cancel_game(g.market_slug)
            await trio.sleep(700)
            n.cancel_scope.cancel()
        assert [(s.fixture_id, s.status) for s in statuses] == [(g.fixture_id, "cancelled")]
        assert g.fixture_id not in {f.id for f in await oo.active_fixtures(league=["nhl"])}
        r = await http.get(f"/v1/markets/{g.market_slug}/settlement")
        assert r.status_code == 200 and 0 < r.json()["settlement"] < 1  # the last fair price


async def test_a_new_season_changes_the_active_series_id_a_client_must_read(mock_clock):
    async with running_sim(scenario=schedule(), **SLOW) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        old = (await http.get("/v2/leagues/nba")).json()["league"]["activeSeriesId"]
        listed = {e["slug"] for e in await listing(http, "nba")}
        new = sim.scenario.new_season("nba")
        assert (await http.get("/v2/leagues/nba")).json()["league"]["activeSeriesId"] == new
        await trio.sleep(HOUR)  # the next nba game is listed into the new series
        board = exact(await http.get("/v2/leagues/nba/events"))["events"]
        in_new = exact(await http.get("/v1/events", params={"seriesId": new}))["events"]
        assert board and {e["slug"] for e in board} == {e["slug"] for e in in_new}
        assert not listed & {e["slug"] for e in board}
        still = exact(await http.get("/v1/events", params={"seriesId": old}))["events"]
        assert {e["slug"] for e in still} == listed
