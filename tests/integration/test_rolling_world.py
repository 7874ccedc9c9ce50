"""Issue 14's acceptance run: the whole bot (discovery by league, paper mode) against the local
exchange's rolling two-league schedule for 6 simulated hours that cross DAILY_RESET_HOUR.

Three waves of games per league are listed 90 minutes ahead, traded pre-game (each game gets a
scripted edge well above RISK_MIN_EDGE for ten minutes), played, closed, resolved and settled,
and must then be retired. After each wave every per-market container of the bot equals the live
universe (or is inside it), the markets stream's subscriptions equal it, and the supervised group
never restarted. At the end each game's P&L in the ledger equals what its fills and its published
settlement say, and the cash is the starting cash plus that P&L.

Time: a MockClock that jumps as soon as every task is blocked (`autojump_threshold=0`), with
the store writing inline (`Edges(store_in_thread=False)`, as a replay does). The sim is in this
process and a loopback send is readable before `send` returns, so nothing the bot waits on is
outside the loop but the store's worker thread: left in its thread, time would jump while it
commits, and any threshold is real waiting per jump (1 ms, the floor of epoll's timeout, made
~39,000 jumps cost ~40 s of the 100 s run; inline, the run is CPU-bound, ~30 s). DATA_DIR is
in /dev/shm (see `data_dir`); the world ticks every 10 s and the bot's 0.25 s kill-file poll is
slowed to 5 s for this run (one jump per distinct wake-up).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from polybot import control
from polybot.clock import ReplayClock
from polybot.components import Edges
from polybot.model import Intent
from polybot.sim.harness import running_sim
from polybot.sim.scenario import Liquidity, Timing, league_schedule_spec, script_book
from polybot.universe import Origin
from tests.integration.harness import running_bot

HOUR = 3600.0
START = datetime(2026, 12, 5, 21, 40, tzinfo=UTC)  # the trading day rolls at +2 h 20 min
WAVES = 3
GAMES_PER_WAVE = 2
LEAGUES = ("nba", "nhl")
EDGE = D("0.10")  # the scripted offer sits this far under the truth (RISK_MIN_EDGE is 0.02)


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0)


def _world(seed: int = 14) -> Any:
    return league_schedule_spec(
        seed, LEAGUES, games_per_wave=GAMES_PER_WAVE, waves=WAVES,
        wave_spacing_seconds=2 * HOUR, list_ahead_seconds=1.5 * HOUR,
        game_length_seconds=HOUR, settle_delay_seconds=300.0, first_wave_seconds=0.5 * HOUR,
        wave_stagger_seconds=300.0,
        timing=Timing(tick_seconds=10.0, quote_refresh_seconds=60.0, taker_rate=0.01),
        liquidity=Liquidity(makers=1, levels=3, ladder_step=D("0.01")))


def _pnl_from_fills(fills: list[dict[str, Any]], value: D) -> D:
    """A game's P&L from its fills (YES-price convention) and its published settlement."""
    signed = {Intent.BUY_LONG.name: 1, Intent.SELL_SHORT.name: 1,
              Intent.SELL_LONG.name: -1, Intent.BUY_SHORT.name: -1}
    total = D(0)
    for f in fills:
        total += signed[f["intent"]] * D(f["qty"]) * (value - D(f["price"])) - D(f["fee"])
    return total


def _outside(bot: Any) -> dict[str, set[str]]:
    live = set(bot.universe)
    return {name: keys - live for name, keys in bot.per_market_keys().items() if keys - live}


@pytest.fixture
def data_dir(tmp_path):
    """DATA_DIR in memory where the host has /dev/shm: the store commits with fsync every
    second of simulated time (21,600 times here), which would be most of the real time; the
    store's durability is tested elsewhere."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="polybot-rolling-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_six_hours_of_two_leagues_list_trade_settle_and_retire_with_no_restart(
        data_dir, mock_clock, monkeypatch):
    monkeypatch.setattr(control, "POLL_SECONDS", 5.0)
    real_start = time.perf_counter()
    t0 = trio.current_time()
    clock = ReplayClock(START, origin=t0)
    edges: dict[str, D] = {}  # slug -> the scripted offer's price

    async with running_sim(scenario=_world(), opticodds=True, clock=clock.now,
                           odds_update_seconds=10.0,
                           odds_ping_seconds=10.0) as sim:
        scenario = sim.scenario

        def edge_on(slug: str) -> None:
            truth = scenario.true_prob(slug)
            price = (truth - EDGE).quantize(D("0.01"))
            edges[slug] = price
            scenario.script_book(slug, bids=[(price - D("0.05"), 40)], offers=[(price, 40)])

        def edge_off(slug: str) -> None:
            script_book(sim.exchange, slug)
            scenario.quiet.discard(slug)

        def listed(game: Any) -> None:
            slug = game.market_slug
            scenario.at(game.start_time - timedelta(minutes=50), lambda: edge_on(slug))
            scenario.at(game.start_time - timedelta(minutes=40), lambda: edge_off(slug))

        scenario.on_game_listed(listed)
        for game in sim.world.games:  # listed before the hook was set
            listed(game)

        async with running_bot(
                sim, data_dir, live=False, clock=clock, MARKET_SLUGS="",
                MARKET_LEAGUES=",".join(LEAGUES), DISCOVERY_HORIZON_HOURS="2",
                DISCOVERY_INTERVAL_SECONDS="300", DAILY_RESET_TZ="UTC", DAILY_RESET_HOUR="0",
                RISK_MAX_POSITION_PER_MARKET="40.00", RISK_MAX_CORRELATED_EXPOSURE="80.00",
                RISK_MAX_PORTFOLIO_EXPOSURE="600.00", RISK_MAX_POSITIONS="20",
                RISK_MAX_DAILY_LOSS="500.00", RISK_MAX_DRAWDOWN_PCT="0.90",
                edges=Edges(store_in_thread=False)) as bot:
            seen: set[str] = set()
            for wave in range(WAVES):
                # the wave's games are over 0.5 h + wave * 2 h + 5 min + 1 h + 5 min after START
                wave_over = 0.5 * HOUR + wave * 2 * HOUR + 300.0 + HOUR + 300.0
                await trio.sleep(max(0.0, wave_over + 600.0 - (trio.current_time() - t0)))
                seen |= {g.market_slug for g in sim.world.games}
                settled = {g.market_slug for g in sim.world.games if g.settled_at is not None}
                assert len(settled) == (wave + 1) * GAMES_PER_WAVE * len(LEAGUES), settled
                assert not settled & set(bot.universe), \
                    {s: bot.lifecycle.kept_reason(s, bot.clock.now()) for s in settled
                     if s in bot.universe}
                assert not _outside(bot), _outside(bot)
                keys = bot.per_market_keys()
                assert keys["subscriptions"] == set(bot.universe)
                assert keys["exposure"] <= set(bot.universe)
                assert all(x.origin is Origin.DISCOVERED for x in bot.universe.listings())
                assert bot.supervisor.state().restarts == 0

            games = sorted(seen)
            assert len(games) == WAVES * GAMES_PER_WAVE * len(LEAGUES)
            # each game showed its edge for ten minutes and got an order
            assert set(edges) == set(games)
            fills = _fills(data_dir)
            assert {f["market_slug"] for f in fills} >= set(games), set(games) - {
                f["market_slug"] for f in fills}
            # every game settled and retired; P&L from the fills and the settlement
            total = D(0)
            for slug in games:
                value = sim.exchange.settlement(slug)
                assert value is not None
                assert slug not in bot.ledger.markets  # retired: folded out of memory
                market = bot.store.read_market(slug)  # its history, kept by the store
                assert market is not None
                assert market.net_qty == 0  # settled, or traded out before the end
                assert market.settled_value in (None, value)
                expected = _pnl_from_fills([f for f in fills if f["market_slug"] == slug], value)
                # equal to the cent and far below (the ledger's average price carries 28 digits)
                assert abs(market.realized_pnl - market.fees - expected) < D("1e-9"), slug
                total += expected
            assert bot.ledger.positions == {}
            assert abs(bot.ledger.cash - (D("1000") + total)) < D("1e-9")
            # the folded markets' P&L and fees are still in the ledger's totals
            assert abs(bot.ledger.realized_pnl - bot.ledger.fees_total - total) < D("1e-9")
            assert bot.universe.retired == len(games) and len(bot.universe) == 0
            assert bot.supervisor.state().restarts == 0
            # the trading day rolled inside the run (and nothing above restarted or halted)
            assert bot.trading.day == START.date() + timedelta(days=1)
            assert bot.trading.state.value == "ACTIVE"
    elapsed = time.perf_counter() - real_start
    print(f"6 simulated hours, {len(games)} games: {elapsed:.1f} s of real time")


def _fills(data_dir: Any) -> list[dict[str, Any]]:
    import sqlite3

    conn = sqlite3.connect(data_dir / "polybot.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(
            "SELECT market_slug, intent, qty, price, fee FROM fills ORDER BY id")]
    finally:
        conn.close()
