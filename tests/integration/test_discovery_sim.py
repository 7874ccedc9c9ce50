"""Discovery against the local exchange: the real REST and OpticOdds clients on loopback, a rolling
league schedule (`league_schedule_spec`), simulated time (`MockClock` with real sockets)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from polybot.discovery import Discovery
from polybot.opticodds.client import OpticOddsClient
from polybot.polymarket.rest import PolymarketRestClient, RestConfig
from polybot.sim.harness import running_sim
from polybot.sim.scenario import league_schedule_spec
from polybot.universe import Origin, Universe
from tests.integration.harness import running_bot, wait_for


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


class SimClock:
    """The bot's view of the world's wall clock."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def now(self) -> Any:
        return self.sim.now()

    def monotonic(self) -> float:
        return trio.current_time()


class Progress:
    def beat(self) -> None:
        pass

    def degraded(self, reason: str) -> None:
        self.reason = reason

    def recovered(self) -> None:
        pass


def make(sim: Any, rest: Any, odds: Any, universe: Universe, alerts: list[Any],
         leagues: tuple[str, ...] = ("nba", "nhl"), **kw: Any) -> Discovery:
    return Discovery(rest, odds, universe, leagues=leagues, odds_league=lambda s: s,
                     clock=SimClock(sim), horizon=timedelta(hours=36), interval=300.0,
                     max_markets=kw.pop("max_markets", 500), holds=lambda slug: False,
                     ready=lambda: True, alert=lambda *a: alerts.append(a), **kw)


def clients(sim: Any) -> tuple[PolymarketRestClient, OpticOddsClient]:
    rest = PolymarketRestClient(RestConfig(api_url=sim.api_url, gateway_url=sim.gateway_url,
                                           backoff_base=0.05, backoff_cap=0.2))
    return rest, OpticOddsClient(sim.opticodds_url, sim.opticodds_key)


def expected_targets(sim: Any) -> dict[str, tuple[str, str]]:
    out = {}
    for slug in sim.exchange.markets:
        g = sim.world.game_by_slug(slug)
        if g is not None:
            out[slug] = (g.fixture_id, g.long_team.normalized)
    return out


async def test_every_listed_game_joins_the_universe_matched_to_its_fixture_and_yes_team(mock_clock):
    spec = league_schedule_spec(3, ("nba", "nhl"), games_per_wave=3)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts)
            for league in d.leagues:
                await d.pass_league(league)
        want = expected_targets(sim)
        assert len(want) >= 6 and set(u) == set(want)
        for listing in u.listings():
            assert listing.origin is Origin.DISCOVERED and listing.league in ("nba", "nhl")
            assert listing.target_confirmed and listing.why_not_traded() == ""
            assert (listing.target.fixture_id, listing.target.yes_selection) == want[listing.slug]
            assert listing.start_time == sim.world.game_by_slug(listing.slug).start_time
        assert alerts == []
        status = d.status()["leagues"]
        assert status["nba"]["source"] == "series" and status["nba"]["markets_added"] >= 3


async def test_a_listing_error_retires_nothing_and_the_league_is_retried(mock_clock):
    spec = league_schedule_spec(4, ("nba",), games_per_wave=3)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts, leagues=("nba",))
            await d.pass_league("nba")
            before = {x.slug: x for x in u.listings()}
            assert before
            # 4 attempts (the client's 3 retries) of the series listing, 4 of the fallback, and
            # a few more: the next pass fails too
            sim.faults.fail_listings(10, league="nba")
            async with trio.open_nursery() as n:
                d.leagues["nba"].next_due = trio.current_time()
                n.start_soon(d.run, Progress())
                assert await wait_for(lambda: d.leagues["nba"].errors >= 1, 60)
                assert {x.slug: x for x in u.listings()} == before and u.retired == 0
                assert await wait_for(lambda: d.leagues["nba"].failed_in_a_row == 0, 120)
                n.cancel_scope.cancel()
        assert d.leagues["nba"].errors >= 1 and u.retired == 0 and set(u) == set(before)
        assert d.status()["leagues"]["nba"]["last_error"].startswith("ServerError")


async def test_more_than_100_markets_are_listed_across_pages_without_duplicates(mock_clock):
    spec = league_schedule_spec(5, ("nba",), games_per_wave=130, wave_stagger_seconds=60.0)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts, leagues=("nba",))
            requests = rest.requests
            await d.pass_league("nba")
            listings = rest.requests - requests
        want = expected_targets(sim)
        assert len(want) > 100 and set(u) == set(want)
        assert listings >= 3  # the league, then two pages of events
        assert d.leagues["nba"].complete
        assert all(x.target_confirmed for x in u.listings())


async def test_matches_by_team_names_open_only_once_the_partner_lookup_confirms_them(mock_clock):
    spec = league_schedule_spec(6, ("nba",), games_per_wave=4)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        for event in sim.exchange.events.values():  # as in the real captures: no OpticOdds ids
            for t in event.teams:
                t.provider_ids = tuple(p for p in t.provider_ids if p[0] != "PROVIDER_OPTICODDS")
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts, leagues=("nba",))
            await d.pass_league("nba")
            assert u.listings() and all(not x.target_confirmed for x in u.listings())
            assert all(x.why_not_traded() for x in u.listings())
            async with trio.open_nursery() as n:
                n.start_soon(d.run, Progress())
                assert await wait_for(lambda: not d.pending, 60)
                n.cancel_scope.cancel()
        want = expected_targets(sim)
        for listing in u.listings():
            assert listing.target_confirmed and listing.why_not_traded() == ""
            assert (listing.target.fixture_id, listing.target.yes_selection) == want[listing.slug]
        assert d.partner_lookups == len(want)


async def test_a_postponed_game_moves_its_start_in_the_universe(mock_clock):
    spec = league_schedule_spec(7, ("nba",), games_per_wave=2)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts, leagues=("nba",))
            await d.pass_league("nba")
            slug = sorted(u, key=lambda s: u.get(s).start_time)[-1]
            before = u.get(slug).start_time
            sim.scenario.postpone(slug, 3 * 3600)
            await d.pass_league("nba")
        assert u.get(slug).start_time == before + timedelta(hours=3)
        assert u.get(slug).target_confirmed and u.retired == 0


async def test_the_bot_with_leagues_only_discovers_its_markets_and_shows_discovery_in_status(
        tmp_path, mock_clock):
    spec = league_schedule_spec(8, ("nba", "nhl"), games_per_wave=2)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        async with running_bot(sim, tmp_path, live=False, clock=SimClock(sim), MARKET_SLUGS="",
                               MARKET_LEAGUES="nba,nhl") as bot:
            want = expected_targets(sim)
            assert await wait_for(lambda: set(bot.universe) == set(want), 60)
            assert await wait_for(
                lambda: all(x.target_confirmed for x in bot.universe.listings()), 60)
            report = bot.status_report()
            leagues = report.extra["discovery"]["leagues"]
            assert set(leagues) == {"nba", "nhl"}
            for league, view in leagues.items():
                listed = [s for s in want if sim.world.game_by_slug(s).league == league]
                assert view["markets_added"] == len(listed) > 0 and view["errors"] == 0
            assert "discovery" in [c.name for c in bot.supervisor.state().children]


async def test_listings_never_delay_a_signed_call_and_leave_public_reads_their_share(mock_clock):
    from polybot.polymarket.auth import Signer

    spec = league_schedule_spec(9, ("nba",), games_per_wave=2)
    async with running_sim(scenario=spec, run_scenario=False) as sim:
        rest = PolymarketRestClient(RestConfig(api_url=sim.api_url, gateway_url=sim.gateway_url),
                                    Signer(sim.key_id, sim.secret_key))
        waited: dict[str, float] = {}

        async def timed(name: str, call: Any) -> None:
            t = trio.current_time()
            await call()
            waited[name] = trio.current_time() - t

        async with rest:
            start = trio.current_time()
            async with trio.open_nursery() as n:
                for _ in range(60):  # a burst of listings: far more than a second's budget
                    n.start_soon(rest.league, "nba")
                await trio.sleep(1.0)
                await timed("signed", rest.balances)
                await timed("public", lambda: rest.settlement(sim.markets[0]))
            took = trio.current_time() - start
        assert took > 5.0  # the listings were paced (at most half of the public 20/s) ...
        assert waited["signed"] < 0.1  # ... a signed call (creates, cancels) did not wait ...
        assert waited["public"] < 0.5  # ... and a public read kept its share meanwhile


async def test_an_unknown_league_fails_with_a_reason_naming_it_and_the_others_go_on(mock_clock):
    spec = league_schedule_spec(10, ("nba",), games_per_wave=2)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts, leagues=("nbaa", "nba"))
            for league in d.leagues:
                await d.pass_league(league)
        assert "knows no league 'nbaa'" in d.leagues["nbaa"].last_error
        assert d.leagues["nba"].failed_in_a_row == 0 and len(u) > 0


async def test_the_bot_alerts_on_a_failing_league_and_keeps_running(tmp_path, mock_clock):
    from polybot.notify import Level

    spec = league_schedule_spec(11, ("nba", "nhl"), games_per_wave=2)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        sim.faults.fail_listings(100_000, league="nba")  # nba's listings fail from the start
        async with running_bot(sim, tmp_path, live=False, clock=SimClock(sim), MARKET_SLUGS="",
                               MARKET_LEAGUES="nba,nhl") as bot:
            sent: list[Any] = []
            real = bot.notifier.send_nowait

            def spy(alert: Any) -> bool:
                sent.append(alert)
                return real(alert)

            bot.notifier.send_nowait = spy  # type: ignore[method-assign]
            assert await wait_for(lambda: any(a.key == "discovery-failing-nba" for a in sent), 120)
            [alert] = [a for a in sent if a.key == "discovery-failing-nba"]
            assert alert.level is Level.WARNING and "3 passes in a row" in alert.text
            nhl = [s for s in expected_targets(sim) if s.startswith("aec-nhl")]
            assert nhl and set(bot.universe) == set(nhl)  # the other league goes on
            assert bot.supervisor.state().restarts == 0
            view = bot.status_report().extra["discovery"]["leagues"]["nba"]
            assert view["failed_in_a_row"] >= 3 and view["last_error"]


async def test_the_bot_confirms_name_matches_through_the_partner_lookup_once_ready(
        tmp_path, mock_clock):
    spec = league_schedule_spec(12, ("nba",), games_per_wave=3)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        for event in sim.exchange.events.values():  # as in the real captures: no OpticOdds ids
            for t in event.teams:
                t.provider_ids = tuple(p for p in t.provider_ids if p[0] != "PROVIDER_OPTICODDS")
        async with running_bot(sim, tmp_path, live=False, clock=SimClock(sim), MARKET_SLUGS="",
                               MARKET_LEAGUES="nba") as bot:
            want = expected_targets(sim)
            assert await wait_for(lambda: set(bot.universe) == set(want), 60)
            assert await wait_for(
                lambda: all(x.target_confirmed for x in bot.universe.listings()), 60)
            assert bot._markets_stream.status.connected  # confirmed once the exchange side was up
            for listing in bot.universe.listings():
                assert listing.target.source == "partner"
                assert (listing.target.fixture_id, listing.target.yes_selection) == want[listing.slug]
            assert bot.status_report().extra["discovery"]["partner_lookups"] == len(want)


async def test_teams_named_differently_by_the_two_vendors_are_found_through_the_partner_lookup(
        mock_clock):
    spec = league_schedule_spec(13, ("nba",), games_per_wave=3)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        for event in sim.exchange.events.values():  # no OpticOdds ids, and other spellings
            for t in event.teams:
                t.provider_ids = tuple(p for p in t.provider_ids if p[0] != "PROVIDER_OPTICODDS")
                t.name = f"The {t.name} Club"
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts, leagues=("nba",))
            await d.pass_league("nba")
            assert all(x.target is None for x in u.listings())
            async with trio.open_nursery() as n:
                n.start_soon(d.run, Progress())
                assert await wait_for(lambda: all(x.target_confirmed for x in u.listings()), 60)
                n.cancel_scope.cancel()
        want = expected_targets(sim)
        assert set(u) == set(want)
        for listing in u.listings():
            assert (listing.target.fixture_id, listing.target.yes_selection) == want[listing.slug]



async def test_the_first_pass_takes_the_whole_public_budget_and_later_passes_half(mock_clock):
    # before the bot trades, no public read of the trading's needs the listing budget's other
    # half: the first pass is paced by the public bucket alone (it still stays under the
    # exchange's per-IP limit: no 429), every later pass by the listing share
    spec = league_schedule_spec(15, ("nba", "nhl"), games_per_wave=3)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        rest, odds = clients(sim)
        async with rest, odds:
            u, alerts = Universe(), []
            d = make(sim, rest, odds, u, alerts)
            for state in d.leagues.values():
                state.next_due = trio.current_time()
            await d.run_due(Progress())
            assert d.listed_once and set(u) == set(expected_targets(sim))
            assert rest._listing_bucket.waits == 0 and rest.retries == 0
            for state in d.leagues.values():
                state.next_due = trio.current_time()
            await d.run_due(Progress())
            assert rest._listing_bucket.waits > 0 and rest.retries == 0


async def test_the_first_ready_comes_with_every_league_s_games_subscribed_and_priced(
        tmp_path, mock_clock):
    # a 200 from /ready over a universe discovery has not filled yet would tell an operator
    # the bot trades its leagues while it trades nothing
    spec = league_schedule_spec(14, ("nba", "nhl"), games_per_wave=3)
    async with running_sim(scenario=spec, opticodds=True, run_scenario=False) as sim:
        async with running_bot(sim, tmp_path, live=False, clock=SimClock(sim), MARKET_SLUGS="",
                               MARKET_LEAGUES="nba,nhl") as bot:
            reasons = []
            with trio.fail_after(60):
                while (reason := bot.not_ready_reason()) is not None:
                    if not reasons or reasons[-1] != reason:
                        reasons.append(reason)
                    await trio.sleep(0.01)
            want = expected_targets(sim)
            assert len(want) >= 6 and set(bot.universe) == set(want)
            assert all(bot._markets_stream.watches(slug) for slug in want)
            feed = bot._odds_feed
            for listing in bot.universe.listings():
                assert listing.target_confirmed
                assert feed.target_of(listing.slug) == listing.target
            assert feed.status.state.value == "live"
            assert "discovering the games of nba, nhl" in reasons
            # a game a later pass adds joins the feeds a moment after the universe: the markets
            # already trading stay ready meanwhile
            later = next(iter(bot.universe.listings()))
            bot.universe.put(attrs.evolve(later.info, slug=later.slug + "-2"), event=later.event,
                             origin=Origin.DISCOVERED, league=later.league)
            assert not bot._markets_stream.watches(later.slug + "-2")
            assert bot.not_ready_reason() is None
