"""The scenario driver: a lively, deterministic world; JSON scenarios; scripted books; trio run."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import attrs
import trio

from polybot.model import Intent, MarketState, MarketStatus
from polybot.sim.engine import PROVIDER_OPTICODDS, BookChanged, OrderSpec, TradePrinted
from polybot.sim.scenario import (
    Liquidity,
    Scenario,
    ScenarioSpec,
    SimClock,
    Timing,
    build_scenario,
    build_sim,
    default_spec,
    load_scenario,
)

T0 = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def run_for(sc: Scenario, seconds: int) -> tuple[str, Counter]:
    """Step the scenario second by second; return a digest of every exchange event and counts."""
    digest = hashlib.sha256()
    counts: Counter = Counter()

    def on_event(event: object) -> None:
        counts[type(event).__name__] += 1
        digest.update(repr(event).encode())

    sc.exchange.subscribe(on_event)
    for s in range(seconds + 1):
        sc.step(T0 + timedelta(seconds=s))
    return digest.hexdigest(), counts


def test_ten_minutes_produce_trades_book_changes_and_a_settlement_identically_per_seed():
    first = build_scenario(11, start=T0)
    digest1, counts = run_for(first, 600)
    assert counts[TradePrinted.__name__] > 20
    assert counts[BookChanged.__name__] > 100
    settled = [g for g in first.world.games if g.settlement is not None and g.settled_at]
    assert settled
    for g in settled:
        assert first.exchange.settlement(g.market_slug) == g.settlement
        assert first.exchange.markets[g.market_slug].status is MarketStatus.RESOLVED

    digest2, _ = run_for(build_scenario(11, start=T0), 600)
    assert digest2 == digest1
    digest3, _ = run_for(build_scenario(12, start=T0), 600)
    assert digest3 != digest1


def test_games_fill_every_world_field_and_match_the_exchange_listing():
    sc = build_scenario(3, start=T0)
    games = sc.world.games
    assert len(games) == 6 and len({g.league for g in games}) >= 2
    assert min(g.start_time for g in games) <= T0 + timedelta(minutes=5)
    assert len({g.market_slug for g in games}) == len(games)
    for g in games:
        assert re.fullmatch(r"2026112\d[0-9A-F]{8}", g.fixture_id)
        for team in (g.home, g.away):
            assert re.fullmatch(r"[0-9A-F]{12}", team.opticodds_id)
        assert g.market_slug == f"aec-{g.event_slug}"
        assert g.event_slug.startswith(f"{g.league}-{g.long_team.abbreviation.lower()}-")
        assert g.end_time is not None and g.end_time > g.start_time
        assert D(0) < g.true_prob_long < D(1)
        ev = sc.exchange.event_by_external_id("opticodds", g.fixture_id)
        assert ev is not None and ev.event_id == g.event_id and ev.slug == g.event_slug
        provider_ids = {t.provider_ids[0] for t in ev.teams}
        assert provider_ids == {
            (PROVIDER_OPTICODDS, g.home.opticodds_id),
            (PROVIDER_OPTICODDS, g.away.opticodds_id),
        }
        m = sc.exchange.markets[g.market_slug]
        assert m.market_id == g.market_id and m.event_id == g.event_id
        long_side = next(s for s in m.sides if s.long)
        short_side = next(s for s in m.sides if not s.long)
        assert long_side.team_id == g.long_team.team_id
        assert long_side.external_selection == g.long_team.normalized
        assert (long_side.side_id, short_side.side_id) == g.market_side_ids


def test_games_go_live_then_complete_then_settle_at_their_relative_times():
    timing = Timing(first_start_seconds=30, first_length_seconds=60, settle_delay_seconds=10)
    sc = build_scenario(5, start=T0, n_games=1, timing=timing)
    g = sc.world.games[0]
    sc.step(T0 + timedelta(seconds=29))
    assert g.status == "unplayed"
    sc.step(T0 + timedelta(seconds=30))
    assert g.status == "live" and sc.exchange.events[g.event_slug].live
    sc.step(T0 + timedelta(seconds=90))
    assert g.status == "completed" and g.settlement in (D(0), D(1))
    assert sc.exchange.markets[g.market_slug].state is MarketState.CLOSED
    assert sc.exchange.open_orders("bg-maker-1", [g.market_slug]) == []
    sc.step(T0 + timedelta(seconds=100))
    assert sc.exchange.settlement(g.market_slug) == g.settlement
    # a replacement game is scheduled so the demo never runs dry
    assert len(sc.world.games) == 2 and sc.world.games[1].start_time > T0 + timedelta(seconds=100)


def test_json_scenario_with_a_tie_settles_at_one_half_and_pays_both_sides(tmp_path):
    path = tmp_path / "tie.json"
    path.write_text(
        json.dumps(
            {
                "seed": 4,
                "timing": {"first_start_seconds": 10, "settle_delay_seconds": 5, "respawn": False},
                "liquidity": {"makers": 1, "half_spread": "0.02"},
                "games": [
                    {
                        "league": "nhl",
                        "home": {"name": "Boston Bruins", "abbreviation": "BOS"},
                        "away": {
                            "name": "Toronto Maple Leafs",
                            "abbreviation": "TOR",
                            "opticodds_id": "ABCDEF012345",
                        },
                        "start_offset_seconds": 10,
                        "length_seconds": 30,
                        "true_prob": "0.55",
                        "outcome": "0.5",
                        "fixture_id": "20261126DEADBEEF",
                        "min_qty": "0.01",
                    }
                ],
            }
        )
    )
    spec = load_scenario(path)
    assert spec.games[0].sport == "hockey" and spec.liquidity.half_spread == D("0.02")
    sc = Scenario(spec, start=T0)
    sc.setup()
    g = sc.world.game_by_fixture("20261126DEADBEEF")
    assert g is not None and g.away.opticodds_id == "ABCDEF012345"
    assert sc.exchange.markets[g.market_slug].min_qty == D("0.01")
    sc.exchange.create_account("me", D(100))
    sc.step(T0 + timedelta(seconds=5))
    ask = sc.exchange.bbo(g.market_slug).best_ask
    assert ask is not None
    sc.exchange.submit("me", OrderSpec(g.market_slug, Intent.BUY_LONG, price=ask, quantity=D(10)))
    cash = sc.exchange.balance("me").current_balance
    sc.step(T0 + timedelta(seconds=60))
    assert g.settlement == D("0.5") and sc.exchange.settlement(g.market_slug) == D("0.5")
    assert sc.exchange.balance("me").current_balance == cash + D(5)
    assert len(sc.world.games) == 1  # respawn off


def test_script_book_places_exact_levels_that_background_makers_leave_alone():
    sc = build_scenario(2, start=T0)
    slug = sc.world.games[2].market_slug
    sc.step(T0 + timedelta(seconds=3))
    sc.script_book(slug, bids=[("0.45", 10), ("0.44", 20)], offers=[("0.48", 5)])
    sc.step(T0 + timedelta(seconds=60))
    book = sc.exchange.book(slug)
    assert [(lv.price, lv.qty) for lv in book.bids] == [(D("0.45"), D(10)), (D("0.44"), D(20))]
    assert [(lv.price, lv.qty) for lv in book.offers] == [(D("0.48"), D(5))]


def quiet_spec(seed: int, timing: Timing) -> ScenarioSpec:
    """Default games, no view noise, the given timing."""
    return attrs.evolve(default_spec(seed, 6, timing), liquidity=Liquidity(view_noise=0.0))


def test_lagging_makers_leave_stale_quotes_away_from_the_true_probability():
    timing = Timing(lag_probability=1.0, lag_seconds=100_000, taker_rate=0.0, drift_per_minute=0.2)
    sc = Scenario(quiet_spec(8, timing), start=T0)
    for s in range(0, 301, 5):
        sc.step(T0 + timedelta(seconds=s))
    gaps = []
    for g in sc.world.games:
        bbo = sc.exchange.bbo(g.market_slug)
        if bbo.best_bid is not None and bbo.best_ask is not None:
            gaps.append(abs((bbo.best_bid + bbo.best_ask) / 2 - sc.true_prob(g.market_slug)))
    assert max(gaps) > D("0.05")


def test_makers_without_lag_quote_around_the_true_probability():
    sc = Scenario(quiet_spec(8, Timing(lag_probability=0.0, taker_rate=0.0)), start=T0)
    sc.step(T0)
    for g in sc.world.games:
        bbo = sc.exchange.bbo(g.market_slug)
        assert bbo.best_bid is not None and bbo.best_ask is not None
        assert bbo.best_bid < sc.true_prob(g.market_slug) < bbo.best_ask
        assert bbo.bid_depth == 10 and bbo.ask_depth == 10


async def test_run_steps_the_world_on_the_trio_clock(autojump_clock):
    t_base = trio.current_time()

    def clock() -> datetime:
        return T0 + timedelta(seconds=trio.current_time() - t_base)

    timing = Timing(first_start_seconds=20, first_length_seconds=30, settle_delay_seconds=5)
    sc = build_scenario(9, start=T0, clock=clock, n_games=2, timing=timing)
    async with trio.open_nursery() as nursery:
        await nursery.start(sc.run)
        await trio.sleep(70)
        nursery.cancel_scope.cancel()
    first = sc.world.games[0]
    assert first.settled_at is not None
    assert sc.exchange.settlement(first.market_slug) == first.settlement
    assert sc.exchange.trades


def test_build_sim_accepts_nothing_a_spec_a_scenario_or_a_json_file(tmp_path):
    world, ex, driver = build_sim(seed=4, now=T0)
    assert driver.world is world and driver.exchange is ex and len(world.games) == 6
    assert ex.has_account("bg-maker-1")
    spec = default_spec(5, 2)
    assert len(build_sim(scenario=spec, now=T0)[0].games) == 2
    assert build_sim(scenario=driver, now=T0)[2] is driver
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"games": []}))
    _, _, from_file = build_sim(seed=9, scenario=str(path), now=T0)
    assert from_file.spec.seed == 9 and from_file.world.games == []


async def test_sim_clock_follows_trio_time_from_the_start_and_never_goes_back(autojump_clock):
    clock = SimClock(T0)
    assert clock() == T0
    await trio.sleep(90)
    assert clock() == T0 + timedelta(seconds=90)
