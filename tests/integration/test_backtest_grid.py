"""`backtest --grid` runs a sweep of replays across processes (`polybot.grid`).

One short recording for the module (the paper run `test_backtest` records); each row of a sweep
must be what a single `backtest --set` of the same settings gives."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D

import pytest

from polybot import backtest, grid
from polybot.cli import main as cli_main
from polybot.errors import EXIT_OK
from tests.integration.test_backtest import backtest_json, load_settings_of, record


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    record(root)
    return root / "recording"


def sweep_json(recording, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    pairs = list(args)
    sets = [a.removeprefix("set:") for a in pairs if a.startswith("set:")]
    grids = [a for a in pairs if not a.startswith("set:")]
    code = grid.main(recording, sets, grids, jobs=2, as_json=True, out=out)
    return code, out.getvalue()


def test_a_sweep_gives_one_row_per_combination_sorted_by_pnl_each_the_single_backtests(
        recording):
    min_edge = D(load_settings_of(recording)["RISK_MIN_EDGE"])
    values = [str(min_edge), str(min_edge / 4)]
    code, text = sweep_json(recording, f"RISK_MIN_EDGE={','.join(values)}",
                            "set:RISK_MAX_POSITIONS=9")
    assert code == EXIT_OK
    rows = json.loads(text)
    assert [r["settings"]["RISK_MIN_EDGE"] for r in rows] != [] and len(rows) == 2
    assert sorted(r["settings"]["RISK_MIN_EDGE"] for r in rows) == sorted(values)
    pnls = [D(r["pnl"]) for r in rows]
    assert pnls == sorted(pnls, reverse=True)
    for row in rows:
        assert row["settings"]["RISK_MAX_POSITIONS"] == "9"  # the --set is in every combination
        sets = [f"{k}={v}" for k, v in row["settings"].items()]
        single_code, single = backtest_json(recording, *sets)
        assert single_code == EXIT_OK
        one = json.loads(single)
        assert row["settings"] == one["settings"]
        assert row["pnl"] == one["ledger"]["pnl"] and row["fees"] == one["ledger"]["fees"]
        assert row["trades"] == len(one["fills"])
    trades = {r["settings"]["RISK_MIN_EDGE"]: r["trades"] for r in rows}
    assert 0 < trades[values[0]] <= trades[values[1]]  # the thinner edge trades at least as much
    assert all(D(r["max_drawdown"]) >= 0 for r in rows)
    assert any(r["clv"] is not None for r in rows)


def test_a_bad_grid_value_is_refused_in_one_line_naming_it_before_any_replay(
        recording, capsys, monkeypatch):
    def no_replay(*args, **kwargs):
        raise AssertionError("a replay started")

    monkeypatch.setattr(grid, "run_grid", no_replay)
    code = cli_main(["backtest", str(recording), "--grid", "RISK_MIN_EDGE=0.02,lots",
                     "--grid", "RISK_KELLY_FRACTION=0.25"])
    assert code != EXIT_OK
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "RISK_MIN_EDGE=lots" in err
    code = cli_main(["backtest", str(recording), "--grid", "RISK_MIN_EGDE=0.02"])
    err = capsys.readouterr().err
    assert code != EXIT_OK and err.count("\n") == 1 and "RISK_MIN_EGDE" in err


def test_max_drawdown_is_the_largest_fall_from_a_running_peak():
    assert grid.max_drawdown([D(100), D(90), D(120), D(95), D(130), D(125)]) == D(25)
    assert grid.max_drawdown([D(100), D(110)]) == 0


def test_a_grid_pair_without_values_is_refused():
    with pytest.raises(backtest.BacktestError, match="RISK_MIN_EDGE"):
        grid.parse_grid(["RISK_MIN_EDGE="])


def test_grid_values_that_are_lists_are_separated_by_semicolons():
    assert grid.parse_grid(["OPTICODDS_SPORTSBOOKS=pinnacle;pinnacle,circa_sports",
                            "RISK_MIN_EDGE=0.01,0.02"]) == [
        ("OPTICODDS_SPORTSBOOKS", ["pinnacle", "pinnacle,circa_sports"]),
        ("RISK_MIN_EDGE", ["0.01", "0.02"])]
    assert len(grid.combinations({"RISK_MAX_POSITIONS": "3"}, grid.parse_grid(
        ["RISK_MIN_EDGE=0.01,0.02", "RISK_KELLY_FRACTION=0.2,0.3,0.4"]))) == 6
