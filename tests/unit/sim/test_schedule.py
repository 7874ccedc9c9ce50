"""The league schedule: waves of games listed ahead, played, closed, settled and pruned, on the
scenario's own model time (no server), and the controls tests use on it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from polybot.model import Intent, MarketState, MarketStatus
from polybot.sim.engine import OrderSpec
from polybot.sim.scenario import (
    DEMO_SPEED,
    LEAGUE_REFDATA,
    TAKER_ACCOUNT,
    Liquidity,
    Scenario,
    Timing,
    demo_world,
    league_schedule_spec,
    scenario_from_dict,
)

T0 = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
HOUR = 3600.0
# model ticks of 30 s keep hours of schedule fast; quotes and takers still run
FAST = Timing(tick_seconds=30.0, quote_refresh_seconds=60.0, taker_rate=0.01)
THIN = Liquidity(makers=1, levels=2)


def _spec(seed: int = 5, **kw):
    args = dict(games_per_wave=2, wave_spacing_seconds=2 * HOUR, list_ahead_seconds=3 * HOUR,
                game_length_seconds=HOUR, settle_delay_seconds=600.0,
                first_wave_seconds=HOUR, wave_stagger_seconds=600.0, timing=FAST, liquidity=THIN)
    args.update(kw)
    return league_schedule_spec(seed, ("nba", "nhl"), **args)


def _run(sc: Scenario, hours: float, every: float = 30.0) -> list[tuple[float, str, str]]:
    """Step through `hours`; record (offset s, slug, what happened) for listings and lifecycle."""
    seen: dict[str, str] = {}
    log: list[tuple[float, str, str]] = []
    t = 0.0
    while t <= hours * HOUR:
        sc.step(T0 + timedelta(seconds=t))
        for g in sc.world.games:
            state = "settled" if g.settled_at is not None else g.status
            if seen.get(g.market_slug) != state:
                seen[g.market_slug] = state
                log.append((t, g.market_slug, state))
        t += every
    return log


def test_waves_of_games_are_listed_ahead_played_closed_and_settled_over_simulated_hours():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    # at the start: wave 0 (starts +1 h .. +1 h 10) and wave 1 (+3 h ..) are within 3 h ahead
    # only for starts <= +3 h, i.e. the whole of wave 0 and wave 1's first game per league
    first = {g.market_slug: g for g in sc.world.games}
    assert len(first) == 2 * 2 + 2
    log = _run(sc, 9)
    listed = {slug for _, slug, what in log}
    settled = {slug for _, slug, what in log if what == "settled"}
    # waves start at +1, +3, +5, +7, +9 h; everything starting by +7 h has settled by +9 h
    games = {g.market_slug: g for g in sc.world.games}
    assert len(settled) >= 4 * 2 * 2 and settled <= listed
    for slug in settled:
        g = games[slug]
        ex_m = sc.exchange.markets[slug]
        assert ex_m.status is MarketStatus.RESOLVED and ex_m.settlement == g.settlement
        assert sc.exchange.events[g.event_slug].closed
        lifecycle = [(t, what) for t, s, what in log if s == slug]
        assert [what for _, what in lifecycle] == ["unplayed", "live", "completed", "settled"]
        listed_at, live_at, done_at, settled_at = (T0 + timedelta(seconds=t) for t, _ in lifecycle)
        if slug not in first:  # listed while the world ran: exactly list_ahead before its start
            assert g.start_time - timedelta(hours=3) <= listed_at < (
                g.start_time - timedelta(hours=3) + timedelta(seconds=30))
        assert g.start_time <= live_at < g.start_time + timedelta(seconds=30)
        assert done_at - live_at == timedelta(hours=1)
        assert settled_at - done_at == timedelta(minutes=10)
    # both leagues roll, each wave brings games_per_wave of each
    per_league = Counter(games[s].league for s in settled)
    assert per_league["nba"] == per_league["nhl"] >= 8
    # the exchange lists every game as a moneyline of the real sportsMarketType in its series
    for g in games.values():
        m = sc.exchange.markets[g.market_slug]
        ev = sc.exchange.events[g.event_slug]
        sport = {"nba": "basketball", "nhl": "hockey"}[g.league]
        assert m.sports_market_type == f"{sport}_team_full_game_winner"
        assert ev.series_id == LEAGUE_REFDATA[g.league][4] == (
            sc.exchange.leagues[g.league].active_series_id)
        assert ev.series_slug == f"{g.league}-2026"


def test_a_team_never_plays_two_games_of_one_wave():
    sc = Scenario(_spec(games_per_wave=4), start=T0)  # nba has 8 teams, nhl 6 (+1 made-up pair)
    sc.setup()
    _run(sc, 12, every=600.0)
    by_start: dict[tuple[str, int], list] = {}
    for g in sc.world.games:
        wave = int(((g.start_time - T0).total_seconds() - HOUR) // (2 * HOUR))
        by_start.setdefault((g.league, wave), []).append(g)
    complete = [k for k, games in by_start.items() if len(games) == 4]
    assert len(complete) >= 2 * 5
    for league, wave in complete:
        games = by_start[(league, wave)]
        teams = [t.abbreviation for g in games for t in (g.home, g.away)]
        assert len(teams) == len(set(teams)) == 8, (league, teams)


def test_the_schedule_is_the_same_for_a_seed_and_differs_across_seeds():
    def digest(seed: int) -> list[tuple]:
        sc = Scenario(_spec(seed), start=T0)
        sc.setup()
        _run(sc, 6, every=300.0)
        return [(g.market_slug, g.fixture_id, g.start_time, g.true_prob_long, g.settlement)
                for g in sc.world.games]

    assert digest(7) == digest(7)
    assert digest(7) != digest(8)


def test_settled_games_are_pruned_from_the_world_a_day_later_but_stay_on_the_exchange():
    spec = _spec(timing=Timing(tick_seconds=300.0, quote_refresh_seconds=600.0, taker_rate=0.002,
                               prune_after_seconds=6 * HOUR))
    sc = Scenario(spec, start=T0)
    sc.setup()
    ex = sc.exchange
    ex.create_account("bot", D(1000))
    slug = sc.world.games[0].market_slug
    _run_from(sc, 0, 0.1)
    ask = ex.bbo(slug).best_ask
    assert ask is not None
    bot_order = ex.submit("bot", OrderSpec(slug, Intent.BUY_LONG, price=ask, quantity=D(5)))
    bot_history = len(ex.activities("bot"))
    _run(sc, 30, every=300.0)
    assert sc.pruned > 0
    # the background traders' history is forgotten past the window; the bot's is kept
    assert ex.get_order("bot", bot_order) is not None and len(ex.activities("bot")) > bot_history
    assert bot_order in {a.order_id for a in ex.orders_accepted}
    background = {"bg-maker-1", TAKER_ACCOUNT}
    assert all(a.account_id == "bot" or a.order_id in {
        o.order_id for o in ex.open_orders(a.account_id)} for a in ex.orders_accepted
        if a.time < T0 + timedelta(hours=29))
    window = T0 + timedelta(hours=30 - 6) - timedelta(minutes=10)
    assert all(t.time >= window for t in ex.trades.values()
               if {t.maker.account_id, t.taker.account_id} <= background)
    assert all(a.time >= window for a in ex.activities("bg-maker-1"))
    oldest_kept = min(g.start_time for g in sc.world.games)
    assert oldest_kept > T0 + timedelta(hours=30 - 6 - 1 - 1)  # settled within the last 6 h
    # ids keep counting (no reuse after pruning); the exchange keeps every market and settlement
    assert len(sc.exchange.markets) == len(sc.world.games) + sc.pruned
    assert len({m.market_id for m in sc.exchange.markets.values()}) == len(sc.exchange.markets)
    assert all(m.settlement is not None for s, m in sc.exchange.markets.items()
               if sc.world.game_by_slug(s) is None)
    # the world stays bounded: about a window of waves, not 30 hours of them
    assert len(sc.world.games) <= 2 * 2 * 6


def test_a_crowded_schedule_lists_more_than_100_markets_at_once():
    sc = Scenario(_spec(games_per_wave=30, wave_stagger_seconds=10.0,
                        list_ahead_seconds=5 * HOUR), start=T0)
    sc.setup()
    listed = sc.listed_markets()
    assert len(listed) > 100
    assert all(sc.exchange.markets[s].active for s in listed)
    assert len({sc.world.game_by_slug(s).fixture_id for s in listed}) == len(listed)


def test_a_postponed_game_moves_its_start_in_place_on_the_exchange_and_in_the_world():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    g = sc.world.games[0]
    slug, fixture, start = g.market_slug, g.fixture_id, g.start_time
    sc.postpone(slug, 2 * HOUR)
    assert g.start_time == start + timedelta(hours=2) and g.fixture_id == fixture
    assert sc.exchange.events[g.event_slug].start_time == g.start_time
    assert sc.exchange.markets[slug].start_time == g.start_time
    _run(sc, 2.5)
    assert g.status == "unplayed"  # not at the old start
    _run_from(sc, 2.5, 3.2)
    assert g.status == "live"


def _run_from(sc: Scenario, h0: float, h1: float) -> None:
    t = h0 * HOUR
    while t <= h1 * HOUR:
        sc.step(T0 + timedelta(seconds=t))
        t += 30.0


def test_a_live_game_cannot_be_postponed():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    g = sc.world.games[0]
    _run(sc, 1.05)
    with pytest.raises(ValueError, match="live"):
        sc.postpone(g.market_slug, 60)


def test_a_halted_market_takes_no_quotes_and_reopens_after_the_given_time():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    slug = sc.world.games[0].market_slug
    _run_from(sc, 0, 0.1)
    sc.halt(slug, reopen_after_seconds=1200)
    m = sc.exchange.markets[slug]
    assert m.state is MarketState.HALTED and m.status is MarketStatus.HALTED and not m.active
    _run_from(sc, 0.11, 0.4)
    assert m.state is MarketState.HALTED
    _run_from(sc, 0.41, 0.5)
    assert m.state is MarketState.OPEN and m.active
    assert sc.exchange.bbo(slug).best_bid is not None  # makers are back


def test_finish_game_closes_now_and_resolves_after_the_settle_delay_at_the_given_outcome():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    g = sc.world.games[0]
    _run_from(sc, 0, 0.2)
    sc.finish_game(g.market_slug, outcome=D(1))
    assert g.status == "completed"
    assert sc.exchange.markets[g.market_slug].state is MarketState.CLOSED
    assert sc.exchange.events[g.event_slug].ended
    _run_from(sc, 0.2, 0.4)
    assert sc.exchange.settlement(g.market_slug) == D(1) and g.settled_at is not None


def test_a_cancelled_game_settles_at_the_last_fair_price():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    g = sc.world.games[0]
    _run_from(sc, 0, 0.2)
    truth = sc.true_prob(g.market_slug)
    sc.cancel_game(g.market_slug)
    assert g.status == "cancelled"
    _run_from(sc, 0.2, 0.4)
    value = sc.exchange.settlement(g.market_slug)
    assert value is not None and abs(value - truth) <= D("0.01") and value not in (D(0), D(1))


def test_the_demo_world_settles_a_game_within_a_minute_of_real_time_at_demo_speed():
    sc = Scenario(demo_world(1), start=T0)
    sc.setup()
    assert sc.world.games, "the demo lists games as soon as it starts"
    first_settled = None
    t = 0.0
    while first_settled is None and t < 60 * DEMO_SPEED:
        sc.step(T0 + timedelta(seconds=t))
        if any(g.settled_at is not None for g in sc.world.games):
            first_settled = t
        t += 5.0
    assert first_settled is not None and first_settled / DEMO_SPEED < 40
    leagues = {g.league for g in sc.world.games}
    assert leagues == {"nba", "nhl"}
    # new games keep being listed after the start
    assert max(g.start_time for g in sc.world.games) > T0 + timedelta(seconds=first_settled)


def test_unknown_leagues_and_empty_waves_are_refused():
    with pytest.raises(ValueError, match="unknown league"):
        league_schedule_spec(1, ("nba", "ncaab"))
    with pytest.raises(ValueError, match="games_per_wave"):
        league_schedule_spec(1, games_per_wave=0)


def test_a_json_scenario_can_carry_a_league_schedule():
    spec = scenario_from_dict({
        "seed": 3,
        "timing": {"list_ahead_seconds": 600, "wave_spacing_seconds": 900,
                   "first_wave_seconds": 60, "game_length_seconds": 300},
        "schedule": {"leagues": ["nhl"], "games_per_wave": 2, "waves": 2},
    })
    assert spec.schedule is not None and spec.timing.respawn is False
    sc = Scenario(spec, start=T0)
    sc.setup()
    _run_from(sc, 0, 1)
    assert len(sc.world.games) == 4 and {g.league for g in sc.world.games} == {"nhl"}
    with pytest.raises(ValueError, match="unknown league"):
        scenario_from_dict({"schedule": {"leagues": ["ncaaf"]}})


def test_every_listed_game_can_be_scripted_as_it_appears():
    sc = Scenario(_spec(), start=T0)
    seen = []

    def script(game):
        seen.append(game.market_slug)
        sc.script_outcome(game.market_slug, D("0.5") if game.league == "nhl" else D(1))
        sc.script_book(game.market_slug, bids=[("0.40", 10)], offers=[("0.45", 10)])

    sc.on_game_listed(script)
    sc.setup()
    assert seen == [g.market_slug for g in sc.world.games]  # the ones listed at the start too
    _run(sc, 7)
    assert seen == [g.market_slug for g in sc.world.games] and len(seen) > 6
    for g in sc.world.games:
        if g.settled_at is not None:
            assert g.settlement == (D("0.5") if g.league == "nhl" else D(1))
        else:
            book = sc.exchange.bbo(g.market_slug)
            assert (book.best_bid, book.best_ask) == (D("0.40"), D("0.45"))  # makers stay out
    with pytest.raises(ValueError):
        sc.script_outcome(seen[-1], D(2))


def test_a_new_season_puts_later_games_in_a_new_series_and_keeps_listed_ones_in_the_old():
    sc = Scenario(_spec(), start=T0)
    sc.setup()
    old_series = sc.exchange.leagues["nba"].active_series_id
    before = {g.event_slug for g in sc.world.games if g.league == "nba"}
    new_series = sc.new_season("nba")
    assert new_series != old_series and sc.exchange.leagues["nba"].active_series_id == new_series
    assert sc.exchange.leagues["nhl"].active_series_id == LEAGUE_REFDATA["nhl"][4]
    _run(sc, 3)
    for g in sc.world.games:
        ev = sc.exchange.events[g.event_slug]
        if g.league == "nba":
            assert ev.series_id == (old_series if g.event_slug in before else new_series)
            assert ev.series_slug == ("nba-2026" if g.event_slug in before else "nba-2026-2")
    assert any(g.league == "nba" and g.event_slug not in before for g in sc.world.games)
