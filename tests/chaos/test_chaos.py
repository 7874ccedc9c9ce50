"""The chaos suite's CI budget: seeds 0..2 (seed 2 with the bot as a real subprocess).

About 30 s of real time per seed (20 s of faults, at least 7 s quiet and on until the bot has
converged, start and stop), ~1.5 minutes in all (3 seeds: CI's whole run, 14.5 minutes with 4, must stay under 15);
`CHAOS_SEEDS=50` runs more (or `python -m tests.chaos --seeds 50`). A failure names the seed to
replay with `python -m tests.chaos --seed N --keep -v`.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.chaos.run import run_seeds, summary


@pytest.mark.slow
async def test_chaos_seeds_keep_every_money_invariant() -> None:
    n = int(os.environ.get("CHAOS_SEEDS", "3"))
    first = int(os.environ.get("CHAOS_FIRST_SEED", "0"))
    lines: list[str] = []
    results = await run_seeds(list(range(first, first + n)), session=20.0, quiet=7.0,
                              workdir=None, say=lines.append)
    print("\n".join(lines))
    for r in results:
        if r.passed:
            shutil.rmtree(r.data_dir, ignore_errors=True)
    assert all(r.passed for r in results), "\n".join([*lines, summary(results)])


@pytest.mark.slow
async def test_a_session_ends_only_once_the_bot_has_converged_however_short_the_quiet() -> None:
    # quiet=0: no calm window at all. The bot is stopped, and the ledger compared with the
    # exchange, only once it is ready again with every create's outcome known; a fixed window
    # failed seeds without a bug whenever the bot needed longer (a late restart, a hung create,
    # a loaded machine). Seed 0 runs the bot in process, stopped by a real SIGTERM.
    lines: list[str] = []
    [r] = await run_seeds([0], session=10.0, quiet=0.0, workdir=None, say=lines.append)
    assert r.passed, "\n".join([*lines, *r.failures])
    shutil.rmtree(r.data_dir, ignore_errors=True)
