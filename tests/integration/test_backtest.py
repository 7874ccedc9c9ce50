"""`backtest` replays a recording through the whole bot (`polybot.backtest`).

The recording is made here, once for the module: a short paper run of the demo's world (two
leagues found by discovery, OpticOdds odds) against the local exchange with RECORD_DIR set, on the
mock clock. Each replay then runs the same bot on the recording alone."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D
from pathlib import Path

import pytest
import trio
import trio.testing

from polybot import backtest
from polybot.clock import LIVE_CLOCK, ReplayClock
from polybot.config import load_settings
from polybot.demo import demo_env
from polybot.errors import EXIT_OK
from polybot.runtime import run_bot
from polybot.sim.harness import running_sim
from polybot.sim.scenario import demo_world

RUN_SECONDS = 8.0  # the world's first trades come at 3 s and 5 s (seed 7)
SEED = 7


def record(root: Path) -> None:
    async def main() -> None:
        clock = ReplayClock(LIVE_CLOCK.now(), origin=trio.current_time())
        async with running_sim(seed=SEED, scenario=demo_world(SEED), opticodds=True,
                               clock=clock.now) as sim:
            env = demo_env(sim, data_dir=root / "data", live=False,
                           record_dir=root / "recording")
            env.update(LOG_FILE="", TRADES_LOG_FILE="", LOG_LEVEL="WARNING")
            assert await run_bot(load_settings(env), duration=RUN_SECONDS, clock=clock) == EXIT_OK

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.02))


def backtest_json(recording: Path, *sets: str) -> tuple[int, str]:
    out = io.StringIO()
    code = backtest.main(recording, list(sets), as_json=True, out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("backtest")
    record(root)
    return root


@pytest.fixture(scope="module")
def replayed(recorded):
    code, text = backtest_json(recorded / "recording")
    assert code == EXIT_OK
    return text


def without_times(rows):
    return [{k: v for k, v in row.items() if k not in ("created_at", "ts")} for row in rows]


def test_two_replays_of_a_recording_print_the_same_json(recorded, replayed):
    report = json.loads(replayed)
    assert report["fills"]  # something happened worth comparing
    assert report["records"]["markets"]["replayed"] == report["records"]["markets"]["recorded"]
    assert report["records"]["odds"]["replayed"] == report["records"]["odds"]["recorded"] > 0
    assert report["unanswered_requests"] == {}
    assert backtest_json(recorded / "recording") == (EXIT_OK, replayed)


def test_a_replay_makes_the_orders_fills_and_ledger_of_the_paper_run_it_recorded(
        recorded, replayed):
    live = backtest.summarize(recorded / "data")  # what the recorded run itself booked
    report = json.loads(replayed)
    assert len(live["fills"]) >= 2
    assert without_times(report["orders"]) == without_times(live["orders"])
    assert without_times(report["fills"]) == without_times(live["fills"])
    assert report["ledger"] == live["ledger"]


def test_a_higher_min_edge_set_on_the_command_line_leaves_out_the_thinner_orders(
        recorded, replayed):
    base = json.loads(replayed)["orders"]
    edges = sorted(D(o["edge"]) for o in base)
    cut = (edges[0] + edges[-1]) / 2
    assert edges[0] < cut < edges[-1]
    code, text = backtest_json(recorded / "recording", f"RISK_MIN_EDGE={cut}")
    assert code == EXIT_OK
    report = json.loads(text)
    assert report["settings"] == {"RISK_MIN_EDGE": str(cut)}
    assert report["orders"] and len(report["orders"]) < len(base)
    assert all(D(o["edge"]) >= cut for o in report["orders"])


def test_an_unknown_setting_is_refused_with_one_line(recorded, capsys):
    code, text = backtest_json(recorded / "recording", "RISK_MIN_EGDE=0.05")
    assert code != EXIT_OK and text == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RISK_MIN_EGDE" in err and "no such setting" in err
