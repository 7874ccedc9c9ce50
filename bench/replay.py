"""Benchmark: replay speed (issue 16 item 4) — book frames replayed per second of CPU on one
core, and the `backtest --grid` sweep's wall-time speed-up on all cores over one.

    .venv/bin/python -m bench.replay [--markets 100] [--seconds 300] [--combos 4] [--jobs N]
                                     [--profile]

**The recording** is made here, through the real bot: a paper run of `python -m polybot run`'s
own `run_bot` with RECORD_DIR set, against the local exchange and the local OpticOdds
(`running_sim`), in one Trio run on the mock clock (`autojump_threshold` 0.02 s: simulated time
jumps whenever everything waits, so `--seconds` of world take what the CPU needs). The world is
`--markets` synthetic pre-game games (unique teams, nba and nhl, found by discovery as an
operator configures it), two makers quoting 10 levels a side with lagging views (re-quoting
every 1 s) and background takers (one order every 2 s per market), so every market's book
streams frames and some carry an edge the bot trades.

**Replay** (one core): `polybot.backtest.run` of that recording with its own settings, in this
process; frames/s = book frames replayed (the `markets` stream's records) / CPU seconds
(`time.process_time`) of the whole replay, start-up, REST answers, odds and the bot's
decisions included. The issue's bar: >= 20,000 frames/s. `--profile` writes a cProfile of it to
`bench/results/replay_profile.txt`.

**Sweep**: `--combos` values of RISK_MIN_EDGE through `polybot.grid.run_grid`, once with one job
(the combinations one after another in this process) and once with `--jobs` processes (default:
every core), wall time each; the speed-up is one's over the other's, and the rows of both must
be identical (a replay is deterministic in any process). CPU seconds of both (this process and
its workers) are shown too: on a shared machine the wall-time speed-up is only as good as the
cores others leave free, and the CPU says whether the work itself grew.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio
import trio.testing

from bench.common import RESULTS_DIR, Run, print_table

LEAGUES = ("nba", "nhl")


def world(n_markets: int, seed: int = 5) -> Any:
    """`n_markets` pre-game games with unique teams, half nba, half nhl, starting after the
    recording (their odds stream all along), true probabilities spread over 0.3..0.7; two
    makers quoting 10 levels a side, re-quoting every second, and takers."""
    from bench.scale import league_scenario
    from polybot.sim.scenario import Liquidity, Timing

    return league_scenario(n_markets, LEAGUES, start_offset=1800,
                           true_prob=lambda i: Decimal("0.3") + Decimal(i % 41) / 100, seed=seed,
                           timing=Timing(respawn=False, quote_refresh_seconds=1.0,
                                         taker_rate=0.5),
                           liquidity=Liquidity(levels=10))


def record(root: Path, n_markets: int, seconds: float, seed: int = 5) -> Path:
    """A paper run of the bot on `world(n_markets)` for `seconds`, recorded to root/recording."""
    from polybot.clock import LIVE_CLOCK, ReplayClock
    from polybot.config import load_settings
    from polybot.demo import demo_env
    from polybot.runtime import run_bot
    from polybot.sim.harness import running_sim

    async def main() -> None:
        clock = ReplayClock(LIVE_CLOCK.now(), origin=trio.current_time())
        async with running_sim(seed=seed, scenario=world(n_markets, seed), opticodds=True,
                               clock=clock.now) as sim:
            env = demo_env(sim, data_dir=root / "data", live=False, record_dir=root / "recording")
            env.update(LOG_FILE="", TRADES_LOG_FILE="", LOG_LEVEL="ERROR",
                       MARKET_LEAGUES=",".join(LEAGUES), RISK_MAX_POSITIONS=str(n_markets))
            await run_bot(load_settings(env), duration=seconds, clock=clock)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.02))
    return root / "recording"


def replay_once(recording: Path, profile: Path | None = None) -> dict[str, Any]:
    from polybot import backtest

    profiler = cProfile.Profile() if profile is not None else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    bt = backtest.run(recording)
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    report = bt.report()
    frames = report["records"]["markets"]["replayed"]
    if profiler is not None and profile is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        profile.write_text(text.getvalue())
    return {"what": "replay (one core)", "frames": frames,
            "recorded_frames": report["records"]["markets"]["recorded"],
            "odds_events": report["records"].get("odds", {}).get("replayed", 0),
            "orders": len(report["orders"]), "fills": len(report["fills"]),
            "replay_seconds": report["window"]["seconds"], "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3), "frames_per_cpu_s": round(frames / cpu) if cpu else None,
            "exit_code": bt.code}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the sweep's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def sweep(recording: Path, combos: int, jobs: int) -> tuple[list[dict[str, Any]], bool]:
    from polybot import grid

    values = [f"{Decimal('0.005') * (i + 1):.3f}" for i in range(combos)]
    grid_combos = grid.combinations({}, [("RISK_MIN_EDGE", values)])
    rows, results = [], []
    for n in (1, jobs):
        t0, cpu0 = time.perf_counter(), _cpu()
        results.append(grid.run_grid(recording, grid_combos, jobs=n))
        rows.append({"what": f"sweep of {combos}, {n} job(s)", "combos": combos, "jobs": n,
                     "wall_s": round(time.perf_counter() - t0, 3),
                     "cpu_s": round(_cpu() - cpu0, 3)})
    return rows, results[0] == results[1]


def run(markets: int = 100, seconds: float = 300.0, combos: int = 4, jobs: int | None = None,
        profile: bool = False, out_dir: Path | None = None,
        keep: Path | None = None) -> dict[str, Any]:
    jobs = jobs or os.cpu_count() or 1
    bench = Run("replay", {"markets": markets, "seconds": seconds, "combos": combos,
                           "jobs": jobs, "recording": "a paper run of the bot on the local "
                           "exchange, RECORD_DIR set, mock clock"})
    out_dir = out_dir or RESULTS_DIR
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        t0 = time.perf_counter()
        root = keep or Path(tmp)
        record_s: float | None = None
        if keep is not None and (keep / "recording").is_dir():
            recording = keep / "recording"  # made by an earlier run with the same --keep
        else:
            recording = record(root, markets, seconds)
            record_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in recording.iterdir())
        one = replay_once(recording, out_dir / "replay_profile.txt" if profile else None)
        sweep_rows, same = sweep(recording, combos, jobs)
    rows = [one, *sweep_rows]
    made = "an earlier run's" if record_s is None else f"recorded in {record_s:.1f} s"
    print_table(f"replay: {markets} markets, {seconds:.0f} s of world ({made}, "
                f"{size / 1e6:.1f} MB)",
                [("what", "what"), ("frames", "book frames"), ("cpu_s", "CPU s"),
                 ("wall_s", "wall s"), ("frames_per_cpu_s", "frames/CPU s"), ("jobs", "jobs")],
                rows, digits=2)
    speedup = sweep_rows[0]["wall_s"] / sweep_rows[1]["wall_s"] if sweep_rows[1]["wall_s"] else None
    summary = {
        "frames": one["frames"], "replay_cpu_s": one["cpu_s"],
        "frames_per_cpu_s": one["frames_per_cpu_s"],
        "meets_20k_frames_per_s": bool(one["frames_per_cpu_s"] and
                                       one["frames_per_cpu_s"] >= 20_000),
        "sweep_combos": combos, "sweep_jobs": jobs,
        "sweep_wall_s_one_job": sweep_rows[0]["wall_s"],
        "sweep_wall_s_all_jobs": sweep_rows[1]["wall_s"],
        "sweep_speedup": round(speedup, 2) if speedup else None,
        "sweep_rows_identical": same,
        "recording_bytes": size,
        "record_wall_s": None if record_s is None else round(record_s, 2),
    }
    print(f"\nreplay {one['frames_per_cpu_s']:,} book frames per CPU second (bar 20,000); "
          f"sweep of {combos} on {jobs} job(s) {summary['sweep_speedup']}x faster than on one "
          f"(rows identical: {same})")
    result, _path = bench.write(rows, summary, out_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="simulated seconds of world recorded")
    parser.add_argument("--combos", type=int, default=4, help="combinations in the sweep")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: every core)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the replay to bench/results/replay_profile.txt")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="record into DIR and keep it; a later run with the same DIR replays "
                        "that recording (its --markets/--seconds are then the first run's)")
    args = parser.parse_args()
    run(args.markets, args.seconds, args.combos, args.jobs, args.profile, keep=args.keep)


if __name__ == "__main__":
    main()
