"""Each benchmark runs end to end at a tiny size and writes a result of the documented shape.

These keep `bench/` from rotting as the code under it changes. They assert structure and
bookkeeping (every frame dispatched, every event accounted for), never a time: speed is reported
by `python -m bench` as ratios against a baseline measured in the same run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import fast_create, hot_path, scale, tick_to_order

TOP_KEYS = {"benchmark", "started_at", "duration_seconds", "machine", "params", "rows", "summary"}


def _written(out: Path, name: str, result: dict[str, Any]) -> dict[str, Any]:
    on_disk = json.loads((out / f"{name}.json").read_text())
    assert set(on_disk) == TOP_KEYS
    assert on_disk["benchmark"] == name
    machine = on_disk["machine"]
    assert machine["python"] and machine["cpu_count"] >= 1
    assert machine["packages"]["polybot"] and machine["packages"]["polymarket-us"]
    assert on_disk["summary"] == json.loads(json.dumps(result["summary"], default=str))
    return on_disk


def test_hot_path_result_has_both_pipelines_their_ratio_and_a_profile(tmp_path: Path) -> None:
    result = hot_path.run(markets=10, frames=200, rounds=3, edge_share=0.2, profile=True,
                          out_dir=tmp_path)
    data = _written(tmp_path, "hot_path", result)
    pipelines = [r["pipeline"] for r in data["rows"]]
    assert any(p.startswith("polybot: decode") for p in pipelines)
    assert any(p.startswith("polymarket-us SDK") for p in pipelines)
    full = data["rows"][0]
    assert full["frames"] == 200 * 3  # every frame of every round went through the pipeline
    s = data["summary"]
    assert s["ratio_polybot_full_over_sdk_decode"] == pytest.approx(
        s["polybot_frames_per_s"] / s["sdk_frames_per_s"], abs=6e-4)  # rounded to 3 decimals
    assert s["orders"] > 0  # the edge frames reached the gate and the paper executor
    assert "polybot_frame" in (tmp_path / "hot_path_profile.txt").read_text()


@pytest.mark.slow
def test_tick_to_order_accounts_for_every_event_next_to_the_loopback_rtt(tmp_path: Path) -> None:
    result = tick_to_order.run(events=6, markets=3, timeout=3.0, out_dir=tmp_path)
    data = _written(tmp_path, "tick_to_order", result)
    s = data["summary"]
    assert s["measured"] + s["missed"] == 6
    assert s["measured"] > 0
    measures = [r["measure"] for r in data["rows"]]
    assert measures[0].startswith("tick to order")
    assert any("ping" in m for m in measures) and any("HTTP GET" in m for m in measures)
    assert data["params"]["mode"] == "live"
    assert s["bot_counters"]["orders"] >= s["measured"]
    split = [r for r in data["rows"] if r["measure"].lstrip().startswith("of which")]
    assert len(split) == 2 and split[0]["n"] + s["split_unmatched"] == s["measured"]


@pytest.mark.slow
def test_scale_samples_idle_and_load_for_each_size_and_the_bot_keeps_count(tmp_path: Path) -> None:
    result = scale.run(sizes=(3,), rate=200.0, idle=0.6, load=1.0, out_dir=tmp_path)
    data = _written(tmp_path, "scale", result)
    (row,) = data["rows"]
    assert row["markets"] == 3 and row["trusted_books"] == 3
    assert row["idle_rss_mib"] > 0 and row["load_rss_mib"] > 0
    assert row["frames_sent"] > 0
    assert row["bot_frames"] >= row["frames_sent"]  # heartbeats count too
    assert row["ready_s"] > 0
    assert set(data["summary"]) >= {"m3_ready_s", "m3_idle_rss_mib", "m3_load_cpu_pct"}


def test_fast_create_times_every_create_of_both_paths_without_a_fallback(tmp_path: Path) -> None:
    result = fast_create.run(n=20, per_round=10, out_dir=tmp_path)
    data = _written(tmp_path, "fast_create", result)
    assert [r["n"] for r in data["rows"]] == [20, 20, 20]
    s = data["summary"]
    assert s["fast_creates"] == 20 + 3 and s["fast_fallbacks"] == 0  # 3 warm-up creates


@pytest.mark.slow
def test_scale_start_times_the_first_ready_with_every_discovered_market_in(tmp_path: Path) -> None:
    result = scale.run_start(n_markets=4, leagues=("nba", "nhl"), modes=("paper",), runs=1,
                             out_dir=tmp_path, bytecode=False)
    data = _written(tmp_path, "scale-start", result)
    (row,) = data["rows"]
    assert row["listed_at_first"] == 4 and row["matched_at_first"] == 4
    assert row["first_ready_s"] == row["ready_all_s"] > 0 and row["cpu_to_ready_s"] > 0
    assert row["http_429"] == 0 and row["partner_lookups"] == 0
    assert row["exchange_calls"] <= 4  # per league: the league and one events page
    assert data["summary"]["paper_first_ready_had_all"] is True
