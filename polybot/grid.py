"""`python -m polybot backtest RECORDING --grid NAME=v1,v2 [NAME2=...]`: a parameter sweep.

Every combination of the grid's values (the cartesian product, in the order given, each on top
of the `--set`s) is one `polybot.backtest.run` of the same recording, in its own process: a
replay is one Trio run that uses one core, so N combinations on C cores take about N/C replays'
time. Workers are started with the `spawn` context (a fresh interpreter: nothing of the parent's
Trio or logging state is inherited, and it works the same on every platform); `--jobs 1` runs
the combinations one after another in this process, with no pool at all.

Each combination gives one row, read from the replay's own store before it is deleted; what
`polybot report` also shows comes from its `report.build` (so the two cannot disagree), and max
drawdown, which the report draws only as a fraction of the peak, is this module's, in USD:

* P&L and fees: the ledger's at the end of the replay (realized, unrealized at the last mark).
* max drawdown: the largest fall of equity from its running peak, over the replay's equity
  snapshots (`equity_snapshots`, one a minute of replay time) and the final equity.
* trades: fills.
* CLV: per contract over the opening fills, the market's last fair value (the one the store
  keeps, the consensus before the game) minus the price paid, on the side bought.
* hit rate: settled markets that made money over settled markets ("-" when none settled).

Rows are sorted by P&L, best first (ties keep the grid's order), so the output is deterministic:
each replay is (see `polybot.backtest`), and no row depends on which worker ran it or when.

A bad value (a setting that does not exist, a value its parser refuses, data the recording does
not have) is refused in one line naming it before any worker starts: each value is checked alone
on top of the `--set`s, then every combination (two good values can make a bad pair).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from polybot import backtest, report
from polybot.config import ConfigError
from polybot.recording import RecordingError
from polybot.report_html import fmt
from polybot.store import connect_readonly, db_path

__all__ = ["combinations", "main", "parse_grid", "run_grid"]


def parse_grid(pairs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`NAME=v1,v2` pairs as (name, values), in the order given; a name given twice, an empty
    value list or an empty value is refused. Values that are lists themselves (sportsbooks,
    leagues) are separated by `;` instead: `OPTICODDS_SPORTSBOOKS=pinnacle;pinnacle,circa_sports`
    (a `;` anywhere in the pair makes it the separator)."""
    out: list[tuple[str, list[str]]] = []
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        values = [v.strip() for v in text.split(";" if ";" in text else ",")]
        if not sep or not name or not text.strip():
            raise backtest.BacktestError(f"--grid {pair}: expected NAME=v1,v2,...")
        if any(v == "" for v in values):
            raise backtest.BacktestError(f"--grid {pair}: an empty value")
        if name in (n for n, _ in out):
            raise backtest.BacktestError(f"--grid {name}: given twice")
        out.append((name, list(dict.fromkeys(values))))  # a value given twice runs once
    return out


def combinations(sets: dict[str, str],
                 grid: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """The `--set`s plus each combination of the grid's values (a grid name wins over a --set)."""
    names = [name for name, _ in grid]
    return [{**sets, **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(values for _, values in grid))]


def check(replay: backtest.Replay, sets: dict[str, str],
          grid: list[tuple[str, list[str]]]) -> None:
    """Refuse, naming it, a grid value the backtest would refuse: alone, then in combination."""
    with tempfile.TemporaryDirectory(prefix="polybot-grid-") as tmp:
        data_dir = Path(tmp)

        def refused(overrides: dict[str, str]) -> str | None:
            try:
                settings = backtest.replay_settings(replay.header, overrides, data_dir)
                backtest.check_recorded(replay, settings, overrides)
            except ConfigError as exc:
                return "; ".join(exc.problems)
            except backtest.BacktestError as exc:
                return str(exc).removeprefix("--set ")
            return None

        for name, values in grid:
            for value in values:
                why = refused({**sets, name: value})
                if why is not None:
                    raise backtest.BacktestError(f"--grid {name}={value}: {why}")
        for combo in combinations(sets, grid):
            why = refused(combo)
            if why is not None:
                shown = ",".join(f"{n}={combo[n]}" for n, _ in grid)
                raise backtest.BacktestError(f"--grid {shown}: {why}")


def read_store(data_dir: Path) -> dict[str, Any]:
    """What a sweep's row needs of a replay's store (see the module's docstring)."""
    with closing(connect_readonly(db_path(data_dir))) as conn:
        summary = report.build(conn)["summary"]
        equity = [Decimal(r["equity"]) for r in conn.execute(
            "SELECT equity FROM equity_snapshots ORDER BY id")]
        trades = conn.execute("SELECT COUNT(*) AS n FROM fills").fetchone()["n"]
    equity.append(summary["equity"])
    settled = summary["wins"] + summary["losses"] + summary["pushes"]
    return {
        "pnl": summary["pnl"],
        "max_drawdown": max_drawdown(equity),
        "trades": trades,
        "fees": summary["fees"],
        "clv": summary["clv"],
        "hit_rate": Decimal(summary["wins"]) / settled if settled else None,
        "settled": settled,
    }


def max_drawdown(equity: Sequence[Decimal]) -> Decimal:
    """The largest fall from a running peak, in USD (0 when equity never fell)."""
    worst = Decimal(0)
    peak: Decimal | None = None
    for value in equity:
        peak = value if peak is None or value > peak else peak
        worst = max(worst, peak - value)
    return worst


def run_one(directory: Path, overrides: dict[str, str], start: datetime | None,
            stop: datetime | None) -> dict[str, Any]:
    """One combination's row (a worker's job; module-level so the spawn context can pickle it)."""
    bt = backtest.run(directory, overrides, start=start, stop=stop, inspect=read_store)
    return {"settings": dict(sorted(overrides.items())), **bt.inspected,
            "exit_code": bt.code, "damaged": bt.replay.damaged}


def run_grid(directory: Path, combos: list[dict[str, str]], *, start: datetime | None = None,
             stop: datetime | None = None, jobs: int | None = None) -> list[dict[str, Any]]:
    """Every combination's row, sorted by P&L (best first; ties in the grid's order)."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(combos)))
    if jobs == 1:
        rows = [run_one(directory, combo, start, stop) for combo in combos]
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(run_one, directory, combo, start, stop) for combo in combos]
            rows = [f.result() for f in futures]
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["pnl"], i))
    return [rows[i] for i in order]


def render(rows: list[dict[str, Any]], names: list[str]) -> str:
    header = [*names, "P&L", "max DD", "trades", "fees", "CLV", "hit rate"]
    table = [[
        *(row["settings"][n] for n in names), fmt(row["pnl"], 2), fmt(row["max_drawdown"], 2),
        str(row["trades"]), fmt(row["fees"], 2), fmt(row["clv"], 4),
        "-" if row["hit_rate"] is None else f"{row['hit_rate'] * 100:.0f}% of {row['settled']}",
    ] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i < len(names) else h.rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    for r in table:
        lines.append("  ".join(c.ljust(w) if i < len(names) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    for row in rows:
        if row["exit_code"] or row["damaged"]:
            shown = ",".join(f"{n}={row['settings'][n]}" for n in names)
            lines.append(f"  {shown}: exit code {row['exit_code']}"
                         + (f", stopped at damage: {row['damaged']}" if row["damaged"] else ""))
    return "\n".join(lines)


def main(directory: Path, sets: list[str], grid: list[str], *, start: str | None = None,
         stop: str | None = None, jobs: int | None = None, as_json: bool = False,
         out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        if jobs is not None and jobs < 1:
            raise backtest.BacktestError(f"--jobs {jobs}: at least 1")
        overrides = backtest.parse_sets(sets)
        parsed = parse_grid(grid)
        begin, end = backtest.parse_when(start), backtest.parse_when(stop)
        check(backtest.load(directory, start=begin, stop=end), overrides, parsed)
    except (backtest.BacktestError, RecordingError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    rows = run_grid(directory, combinations(overrides, parsed), start=begin, stop=end, jobs=jobs)
    if as_json:
        out.write(json.dumps(rows, sort_keys=True, indent=2, default=str) + "\n")
    else:
        out.write(render(rows, [name for name, _ in parsed]) + "\n")
    if any(row["damaged"] for row in rows):
        return 1
    return max((row["exit_code"] for row in rows), default=0)
