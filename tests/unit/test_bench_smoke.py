"""Each benchmark runs end to end at a tiny size and writes a result of the documented shape.

These keep `bench/` from rotting as the code under it changes. They assert structure and
bookkeeping (every frame dispatched, every event accounted for), never a time: speed is reported
by `python -m bench` as ratios against a baseline measured in the same run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bench import fast_create, hot_path, replay, scale, stream_cpu, tick_to_order, trade_path

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
    quiet = next(r for r in data["rows"] if r["pipeline"].startswith("polybot: non-trading"))
    assert quiet["frames"] == 200 * 3 and quiet["cpu_us_per_frame"] > 0
    assert s["polybot_nontrading_orders"] == 0  # what it measures is frames that do not trade
    assert s["polybot_cpu_us_per_nontrading_frame"] == round(quiet["cpu_us_per_frame"], 1)
    assert "polybot_frame" in (tmp_path / "hot_path_profile.txt").read_text()


def test_hot_path_live_sends_nothing_while_its_registry_holds_a_minute_of_closed_orders(
        tmp_path: Path) -> None:
    result = hot_path.run(markets=10, frames=200, rounds=2, edge_share=0.2, profile=False,
                          out_dir=tmp_path, live=True)
    data = _written(tmp_path, "hot_path_live", result)
    assert data["params"]["mode"] == "live (nothing sent)"
    s = data["summary"]
    assert s["signals"] > 0 and s["orders"] == 0  # decided up to the venue's refusal
    assert s["polybot_cpu_us_per_nontrading_frame"] > 0


def test_trade_path_sends_one_create_per_event_through_the_live_bot(tmp_path: Path) -> None:
    root_handlers = logging.getLogger().handlers[:]
    result = trade_path.run(markets=5, events=40, rounds=2, profile="cprofile", top=5,
                            out_dir=tmp_path)
    assert logging.getLogger().handlers == root_handlers  # its logging set-up was undone
    data = _written(tmp_path, "trade_path", result)
    s = data["summary"]
    # warm-up (2 per market), every event of every round, of the two counting passes and of the
    # profiled one: one order each
    assert s["orders"] == 2 * 5 + 40 * 2 + 40 * 2 + 40 and s["rejections"] == 0
    assert s["to_create_p50_us"] > 0 and s["cpu_us_per_event_handler"] > 0
    assert 0 < s["calls_per_event_to_create"] < s["calls_per_event"]
    assert len(data["rows"]) == 9


def test_stream_cpu_delivers_every_frame_of_the_burst_and_reports_cpu(tmp_path: Path) -> None:
    result = stream_cpu.run(frames=400, rounds=1, out_dir=tmp_path)
    data = _written(tmp_path, "stream_cpu", result)
    (row,) = data["rows"]
    assert row["cpu_us_per_frame"] > 0 and len(row["cpu_us_rounds"]) == 1
    assert data["summary"]["malformed"] == 0  # every frame decoded (the burst's last one ends it)


@pytest.mark.slow
def test_tick_to_order_measures_both_bots_at_the_socket_in_both_scenarios(tmp_path: Path) -> None:
    result = tick_to_order.run(events=4, block=4, idle_spacing=0.03, loaded_spacing=0.03,
                               load_rate=100.0, timeout=3.0, out_dir=tmp_path)
    data = _written(tmp_path, "tick_to_order", result)
    s = data["summary"]
    assert data["params"]["mode"] == "live"
    for scen in ("idle", "loaded"):
        for bot in ("polybot", "baseline"):
            pre = f"{scen}_{bot}"
            assert s[f"{pre}_measured"] + s[f"{pre}_missed"] == 4  # every event accounted for
            assert s[f"{pre}_measured"] > 0  # both bots traded the edge
            assert s[f"{pre}_orders"] >= s[f"{pre}_measured"]
        rtt = [r for r in data["rows"] if r["scenario"] == scen and r["figure"] == "rtt"]
        assert rtt[0]["n"] == s[f"{scen}_polybot_measured"] + s[f"{scen}_baseline_measured"]
        assert s[f"{scen}_ratio_polybot_over_baseline_p50"] == pytest.approx(
            s[f"{scen}_polybot_p50_us"] / s[f"{scen}_baseline_p50_us"], rel=1e-2)
    assert s["loaded_polybot_load_rate_per_s"] > 0  # the load markets streamed
    # the socket stamps sit outside the server stack: a frame's write follows its ASGI send,
    # an order's first bytes precede its ASGI entry
    shares = [r for r in data["rows"] if r["figure"] in ("ws_share", "post_share")]
    assert len(shares) == 8 and all(r["min_us"] >= 0 for r in shares)
    # the kernel's receive stamp of the POST: taken for every event, never after the read
    for scen in ("idle", "loaded"):
        for bot in ("polybot", "baseline"):
            kernel = next(r for r in data["rows"] if r["figure"] == "kernel"
                          and r["scenario"] == scen and r["bot"] == bot)
            socket = next(r for r in data["rows"] if r["figure"] == "socket"
                          and r["scenario"] == scen and r["bot"] == bot)
            assert kernel["n"] == socket["n"]
            assert 0 < kernel["p50_us"] <= socket["p50_us"]
    assert s["pass"] is (s["loaded_ratio_polybot_over_baseline_p50"] <= 0.6
                         and s["loaded_polybot_p50_us"] < 250 and s["loaded_polybot_p99_us"] < 1000)
    assert s["verdict"].startswith("PASS" if s["pass"] else "FAIL")
    split = [r for r in data["rows"] if r["figure"] in ("intent", "post")]
    assert split[0]["n"] + s["split_unmatched"] == (
        s["idle_polybot_measured"] + s["loaded_polybot_measured"])


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
    assert s["fast_presigned"] + s["fast_signed_inline"] == s["fast_creates"]


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


def test_replay_records_a_paper_run_replays_every_frame_and_sweeps_with_identical_rows(
        tmp_path: Path) -> None:
    result = replay.run(markets=2, seconds=8, combos=2, jobs=1, out_dir=tmp_path)
    data = _written(tmp_path, "replay", result)
    one = data["rows"][0]
    assert one["frames"] == one["recorded_frames"] > 0  # every recorded book frame replayed
    assert one["odds_events"] > 0 and one["exit_code"] == 0
    s = data["summary"]
    assert s["frames"] == one["frames"] and s["frames_per_cpu_s"] > 0
    assert [r["jobs"] for r in data["rows"][1:]] == [1, 1] and s["sweep_combos"] == 2
    assert s["sweep_rows_identical"] is True
