"""`backtest` replays a recording through the whole bot (`polybot.backtest`).

The recording is made here, once for the module: a short paper run of the demo's world (two
leagues found by discovery, OpticOdds odds) against the local exchange with RECORD_DIR set, on the
mock clock. Each replay then runs the same bot on the recording alone."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
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
from tests.integration.harness import operator_script

RUN_SECONDS = 9.0  # the world's first trades come at 3 s and 5 s (seed 7)
SEED = 7


async def operate(data_dir: Path) -> None:
    """What an operator does meanwhile: a flatten of what was bought, a kill switch on and off,
    a resume, a cancel-all (`operator_script`)."""
    await operator_script(data_dir, (5.6, 0.7, 1.0, 0.5))


def record(root: Path) -> None:
    async def main() -> None:
        clock = ReplayClock(LIVE_CLOCK.now(), origin=trio.current_time())
        async with running_sim(seed=SEED, scenario=demo_world(SEED), opticodds=True,
                               clock=clock.now) as sim:
            env = demo_env(sim, data_dir=root / "data", live=False,
                           record_dir=root / "recording")
            env.update(LOG_FILE="", TRADES_LOG_FILE="", LOG_LEVEL="WARNING")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(operate, root / "data")
                assert await run_bot(load_settings(env), duration=RUN_SECONDS,
                                     clock=clock) == EXIT_OK

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
    assert report["records"]["engine"]["replayed"] == 5  # flatten, kill, unkill, resume, cancel
    assert backtest_json(recorded / "recording") == (EXIT_OK, replayed)


def test_a_replay_makes_the_orders_fills_and_ledger_of_the_paper_run_it_recorded(
        recorded, replayed):
    live = backtest.summarize(recorded / "data")  # what the recorded run itself booked
    report = json.loads(replayed)
    assert len(live["fills"]) >= 2
    assert without_times(report["orders"]) == without_times(live["orders"])
    assert without_times(report["fills"]) == without_times(live["fills"])
    assert report["ledger"] == live["ledger"]


def test_a_lower_min_edge_set_on_the_command_line_takes_the_thinner_edges_too(
        recorded, replayed):
    min_edge = D(load_settings_of(recorded / "recording")["RISK_MIN_EDGE"])
    lower = min_edge / 2
    code, text = backtest_json(recorded / "recording", f"RISK_MIN_EDGE={lower}")
    assert code == EXIT_OK
    report = json.loads(text)
    assert report["settings"] == {"RISK_MIN_EDGE": str(lower)}
    opening = [D(o["edge"]) for o in report["orders"] if o["intent"].startswith("BUY_")]
    recorded_opening = [D(o["edge"]) for o in json.loads(replayed)["orders"]
                        if o["intent"].startswith("BUY_")]
    assert all(edge >= min_edge for edge in recorded_opening)
    assert all(edge >= lower for edge in opening)
    assert any(edge < min_edge for edge in opening)  # orders the recorded run did not make


def load_settings_of(recording: Path) -> dict[str, str]:
    from polybot.recording import read_headers

    return read_headers(recording)[0][1]["settings"]


def test_an_unknown_setting_is_refused_with_one_line(recorded, capsys):
    code, text = backtest_json(recorded / "recording", "RISK_MIN_EGDE=0.05")
    assert code != EXIT_OK and text == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RISK_MIN_EGDE" in err and "no such setting" in err


def test_a_truncated_recording_replays_up_to_the_damage_says_where_and_exits_non_zero(
        recorded, tmp_path):
    import shutil

    copy = tmp_path / "recording"
    shutil.copytree(recorded / "recording", copy)
    (data,) = copy.glob("*.rec.gz")
    raw = data.read_bytes()
    data.write_bytes(raw[:len(raw) * 2 // 3])
    code, text = backtest_json(copy)
    assert code != EXIT_OK
    report = json.loads(text)
    assert data.name in report["damaged"] and "last good record: seq" in report["damaged"]
    whole = json.loads(backtest_json(recorded / "recording")[1])["records"]
    assert 0 < report["records"]["markets"]["replayed"] < whole["markets"]["recorded"]


def test_a_recording_of_another_format_is_refused_with_one_line(recorded, tmp_path, capsys):
    import gzip
    import struct

    from polybot.recording import MAGIC

    old = tmp_path / "old"
    old.mkdir()
    header = json.dumps({"format": 0, "bot_version": "0.0.1"}).encode()
    (old / "20261206T21.0001.rec.gz").write_bytes(
        gzip.compress(MAGIC + struct.pack("<I", len(header)) + header))
    code, text = backtest_json(old)
    assert code != EXIT_OK and text == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "format 0" in err


def test_to_cuts_the_feeds_at_a_wall_time(recorded, replayed):
    whole = json.loads(replayed)
    start = datetime.fromisoformat(whole["window"]["from"])
    out = io.StringIO()
    code = backtest.main(recorded / "recording", [], stop=(start + timedelta(seconds=2)).isoformat(),
                         as_json=True, out=out)
    assert code == EXIT_OK
    report = json.loads(out.getvalue())
    assert report["window"]["seconds"] <= 2
    assert report["records"]["markets"]["recorded"] < whole["records"]["markets"]["recorded"]
    assert report["records"]["markets"]["replayed"] == report["records"]["markets"]["recorded"]


def test_a_recording_continued_by_a_later_run_replays_the_first_run_and_says_where_it_stops(
        recorded, replayed, tmp_path):
    import shutil

    from polybot.recording import Recorder, read_recording

    copy = tmp_path / "recording"
    shutil.copytree(recorded / "recording", copy)
    last = list(read_recording(copy))[-1]
    later = last.wall_ns + 60 * 10**9

    async def second_run() -> None:  # a restarted process: its Trio clock starts afresh
        clock = ReplayClock(datetime.fromtimestamp(later / 1e9, UTC), origin=trio.current_time())
        rec = Recorder(copy, clock=clock)
        async with trio.open_nursery() as nursery:
            await nursery.start(rec.run)
            rec.record("markets", '{"heartbeat":{}}', 1_000, later)
            nursery.cancel_scope.cancel()

    trio.run(second_run)
    code, text = backtest_json(copy)
    assert code == EXIT_OK
    report = json.loads(text)
    assert "another run at seq" in report["stopped"]
    first = json.loads(replayed)
    assert report["fills"] == first["fills"] and report["ledger"] == first["ledger"]


def test_html_writes_the_replays_page_against_its_own_caps_beside_the_json(
        recorded, replayed, tmp_path, monkeypatch, capsys):
    from polybot import cli

    recording = recorded / "recording"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RISK_MAX_PORTFOLIO_EXPOSURE", "999")  # the environment's: not drawn
    assert cli.main(["backtest", str(recording), "--json", "--html", "--set",
                     "RISK_MAX_DAILY_LOSS=123.45", "--set", "OPTICODDS_API_KEY=sekrit-key"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout: the JSON alone
    first = json.loads(replayed)
    assert report["fills"] and report["fills"] == first["fills"]
    assert report["ledger"] == first["ledger"]

    page = (tmp_path / "backtest-report.html").read_text(encoding="utf-8")  # the default name
    exposure = D(load_settings_of(recording)["RISK_MAX_PORTFOLIO_EXPOSURE"])
    assert exposure != 999
    # the caps the replay ran with: the recording's, and a --set on top
    assert f"RISK_MAX_PORTFOLIO_EXPOSURE {exposure:,.2f}," in page
    assert "RISK_MAX_DAILY_LOSS 123.45," in page
    assert "the replay&#x27;s own settings: the recording&#x27;s, with --set " \
           "RISK_MAX_DAILY_LOSS=123.45)" in page
    assert "--set OPTICODDS_API_KEY=***, RISK_MAX_DAILY_LOSS=123.45" in page
    assert "sekrit-key" not in page
    trades = page.split('<table id="trades">', 1)[1].split("</table>", 1)[0]
    assert trades.count("<tr><td") == len(report["fills"])
