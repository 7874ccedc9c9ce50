"""Memory over simulated days (issue 14, by hand, not in CI): the whole bot, discovering by league,
against the local exchange's rolling two-league schedule for `--days` simulated days, with
`tracemalloc` counting only what `polybot/` allocates for the bot (the local exchange,
`polybot/sim/`, is excluded: it keeps every market, order and trade, as a real exchange does).
An allocation counts as the exchange's when any of its last TRACE_FRAMES frames is in
`polybot/sim/`: the exchange computes its fees and sizes with `polybot.pricing` and stamps its
records with the bot's clock, and those allocations are its, not the bot's.

    .venv/bin/python -m bench.rolling_memory [--days 3] [--seed 14] [--day-hours 24]

Prints, at the end of each simulated day, the bytes held by polybot's own code, the universe's
size and the markets added and retired so far, then day N against day 1. Runs on a MockClock that
jumps after 1 ms of real idleness (real sockets), DATA_DIR in /dev/shm when there is one, so a simulated day takes a few minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio
import trio.testing

from polybot import control
from polybot.clock import ReplayClock
from polybot.config import load_settings
from polybot.runtime import Bot
from polybot.sim.harness import running_sim
from polybot.sim.scenario import Liquidity, Timing, league_schedule_spec

HOUR = 3600.0
START = datetime(2026, 12, 5, 21, 40, tzinfo=UTC)


def world(seed: int) -> Any:
    """The acceptance test's world (tests/integration/test_rolling_world.py), rolling forever."""
    return league_schedule_spec(
        seed, ("nba", "nhl"), games_per_wave=2, waves=None,
        wave_spacing_seconds=2 * HOUR, list_ahead_seconds=1.5 * HOUR,
        game_length_seconds=HOUR, settle_delay_seconds=300.0, first_wave_seconds=0.5 * HOUR,
        wave_stagger_seconds=300.0,
        timing=Timing(tick_seconds=10.0, quote_refresh_seconds=60.0, taker_rate=0.01),
        liquidity=Liquidity(makers=1, levels=3, ladder_step=Decimal("0.01")))


SNAPSHOTS: list[tracemalloc.Snapshot] = []
TRACE_FRAMES = 3


def polybot_bytes() -> int:
    gc.collect()
    snap = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(True, "*/polybot/*"),
        tracemalloc.Filter(False, "*/polybot/sim/*", all_frames=True),
    ])
    SNAPSHOTS.append(snap)
    return sum(stat.size for stat in snap.statistics("filename"))


def growth(top: int = 12) -> list[str]:
    """The lines of polybot whose allocations grew most from the first snapshot to the last."""
    if len(SNAPSHOTS) < 2:
        return []
    diff = SNAPSHOTS[-1].compare_to(SNAPSHOTS[0], "lineno")
    return [str(stat) for stat in diff[:top]]


async def run(days: int, seed: int, data_dir: Path, day_hours: float) -> list[dict[str, Any]]:
    control.POLL_SECONDS = 5.0  # as in the acceptance test: fewer clock jumps per hour
    clock = ReplayClock(START, origin=trio.current_time())
    rows: list[dict[str, Any]] = []
    async with running_sim(scenario=world(seed), opticodds=True, clock=clock.now,
                           odds_update_seconds=10.0, odds_ping_seconds=10.0) as sim:
        env = {
            "TRADING_MODE": "paper", "PM_API_KEY_ID": sim.key_id,
            "PM_PRIVATE_KEY": sim.secret_key, "PM_BASE_URL": sim.api_url,
            "PM_GATEWAY_URL": sim.gateway_url, "PM_WS_URL": sim.ws_url,
            "OPTICODDS_BASE_URL": sim.opticodds_url, "OPTICODDS_API_KEY": sim.opticodds_key,
            "MARKET_LEAGUES": "nba,nhl", "DISCOVERY_HORIZON_HOURS": "2",
            "DATA_DIR": str(data_dir), "LOG_FILE": "", "TRADES_LOG_FILE": "",
            "HEALTH_PORT": "0", "LOG_LEVEL": "ERROR", "DAILY_RESET_TZ": "UTC",
            "RISK_MAX_DAILY_LOSS": "500.00", "RISK_MAX_DRAWDOWN_PCT": "0.90",
            "RISK_MAX_POSITIONS": "20", "RISK_MAX_PORTFOLIO_EXPOSURE": "600.00",
        }
        bot = Bot(load_settings(env), clock=clock)
        async with trio.open_nursery() as n:
            await n.start(bot.store.run)
            await n.start(bot.notifier.run)
            n.start_soon(bot.supervisor.run)
            t0 = trio.current_time()
            for day in range(1, days + 1):
                await trio.sleep(t0 + day * day_hours * HOUR - trio.current_time())
                row = {"day": day, "polybot_bytes": polybot_bytes(),
                       "universe": len(bot.universe), "added": bot.universe.added,
                       "retired": bot.universe.retired,
                       "bookings_held": bot.ledger.held_bookings(),
                       "ledger_markets": bot.ledger.held_markets(),
                       "restarts": bot.supervisor.state().restarts,
                       "sim_time": clock.now().isoformat(timespec="minutes")}
                rows.append(row)
                print(json.dumps(row), flush=True)
            await bot.request_stop()
            with trio.move_on_after(10):
                await bot.shutdown()
            n.cancel_scope.cancel()
        await bot.rest.aclose()
        bot.store.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--day-hours", type=float, default=24.0,
                   help="length of a 'day' in simulated hours (shorter: a quick diagnostic)")
    args = p.parse_args()
    tracemalloc.start(TRACE_FRAMES)
    started = time.perf_counter()
    shm = Path("/dev/shm")  # the store's fsync every simulated second would dominate on disk
    with tempfile.TemporaryDirectory(prefix="polybot-memory-",
                                     dir=shm if shm.is_dir() else None) as tmp:
        rows = trio.run(run, args.days, args.seed, Path(tmp), args.day_hours,
                        clock=trio.testing.MockClock(autojump_threshold=0.001))
    first, last = rows[0]["polybot_bytes"], rows[-1]["polybot_bytes"]
    print(f"day {rows[-1]['day']} vs day 1: {last / first:.3f} ({last:,} / {first:,} bytes); "
          f"{rows[-1]['added']} markets added, {rows[-1]['retired']} retired; "
          f"{time.perf_counter() - started:.0f} s real time")
    print("largest growth, first day to last, by line of polybot:")
    for line in growth():
        print("  " + line)


if __name__ == "__main__":
    main()
