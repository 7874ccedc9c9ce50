"""The pure parts of `polybot.backtest`: how a replayed request finds its recorded answer, and
the settings a replay runs with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from polybot.backtest import BacktestError, parse_sets, replay_settings, rest_key


def test_a_listing_asked_a_moment_off_the_recorded_one_finds_its_answer():
    recorded = rest_key("polymarket", "GET", "/v1/events",
                        [["seriesId", "12190"], ["startTimeMin", "2026-12-06T15:09:47Z"]])
    asked = rest_key("polymarket", "GET", "/v1/events",
                     [["seriesId", "12190"], ["startTimeMin", "2026-12-06T15:09:48Z"]])
    assert asked == recorded
    other = rest_key("polymarket", "GET", "/v1/events",
                     [["seriesId", "12193"], ["startTimeMin", "2026-12-06T15:09:47Z"]])
    assert other != recorded
    odds = rest_key("opticodds", "GET", "/fixtures/active",
                    [["start_date_after", "2026-12-06T09:09:47.106734+00:00"]])
    assert odds == rest_key("opticodds", "GET", "/fixtures/active",
                            [["start_date_after", "2026-12-06T09:09:47.3+00:00"]])


HEADER = {"settings": {"TRADING_MODE": "live", "PM_API_KEY_ID": "123e4567-e89b-12d3-a456-426614174000", "PM_PRIVATE_KEY": "***",
                       "OPTICODDS_API_KEY": "***", "MARKET_SLUGS": "m1", "RISK_MIN_EDGE": "0.02",
                       "DISCORD_WEBHOOK": "***", "HEALTH_PORT": "8080", "RECORD_DIR": "/rec"}}


def test_a_replay_runs_the_recorded_settings_in_paper_mode_with_set_on_top(tmp_path):
    s = replay_settings(HEADER, parse_sets(["RISK_MIN_EDGE=0.05"]), tmp_path)
    assert s.trading_mode == "paper" and s.data_dir == tmp_path
    assert str(s.risk_min_edge) == "0.05" and s.market_slugs == ("m1",)
    assert s.record_dir is None and s.discord_webhook is None and s.health_port == 0
    assert s.opticodds_api_key is not None  # a placeholder: the odds feed runs on the recording


@pytest.mark.parametrize("pair, says", [
    ("RISK_MIN_EGDE=0.05", "no such setting"),
    ("DATA_DIR=/elsewhere", "sets this itself"),
])
def test_a_set_the_backtest_cannot_take_is_refused(pair, says):
    with pytest.raises(BacktestError, match=says):
        replay_settings(HEADER, parse_sets([pair]), Path("/tmp/x"))


def test_a_set_that_needs_a_sportsbook_or_league_the_recording_lacks_is_refused():
    from collections import Counter

    from polybot.backtest import Replay, check_recorded

    replay = Replay(header=HEADER, origin=0.0, origin_wall=datetime(2026, 12, 6, tzinfo=UTC), end=1.0, markets=[], losses=[],
                    odds={}, rest={}, engine=[], recorded=Counter(),
                    sportsbooks=frozenset({"pinnacle", "betonline"}), leagues=frozenset({"nba"}))
    env = {"OPTICODDS_SPORTSBOOKS": "pinnacle,draftkings", "MARKET_LEAGUES": "nba"}
    settings = replay_settings(HEADER, env, Path("/tmp/x"))
    with pytest.raises(BacktestError, match="draftkings not in the recording"):
        check_recorded(replay, settings, {"OPTICODDS_SPORTSBOOKS": "pinnacle,draftkings"})
    check_recorded(replay, settings, {"MARKET_LEAGUES": "nba"})  # recorded: fine
    nhl = replay_settings(HEADER, {"MARKET_LEAGUES": "nba,nhl"}, Path("/tmp/x"))
    with pytest.raises(BacktestError, match="nhl not in the recording"):
        check_recorded(replay, nhl, {"MARKET_LEAGUES": "nba,nhl"})


@pytest.mark.parametrize("where, says", [("missing/page.html", "no folder"), (".", "a folder")])
def test_an_html_path_that_cannot_be_written_is_refused_before_the_replay(
        tmp_path, capsys, where, says):
    from polybot import backtest

    def never(*args, **kwargs):
        raise AssertionError("no page is built for a path that cannot be written")

    code = backtest.main(tmp_path / "no-recording", [], html=tmp_path / where, html_data=never)
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1  # not the recording's error


def test_the_replays_collector_settings_are_the_processes_own_again_after_it_even_when_it_fails():
    import gc

    from polybot.backtest import REPLAY_GC_GEN0, replay_gc

    before = gc.get_threshold()
    with replay_gc():
        assert gc.get_threshold() == (REPLAY_GC_GEN0, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), replay_gc():
        raise RuntimeError("the replay failed")
    assert gc.get_threshold() == before  # a caller's process (a test run, a grid worker) keeps its own


def test_the_sequencer_skips_its_barrier_only_when_no_other_task_is_due_this_batch_included():
    # Two tasks woken by one deadline run in one batch: while the first runs, the second is in
    # no run queue Trio reports, yet the all-blocked barrier would let it run first. Only the
    # second (or a lone task) may skip the barrier; a task already scheduled stops it too.
    import trio
    import trio.testing

    from polybot.backtest import Sequencer, StepCounter

    seen: list[bool] = []

    async def main(steps: StepCounter) -> None:
        sequencer = Sequencer([], steps)

        async def woken_at_one() -> None:
            await trio.sleep_until(1.0)
            seen.append(sequencer._all_blocked_but_me())
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(woken_at_one)
            nursery.start_soon(woken_at_one)
            await trio.sleep_until(2.0)
            assert sequencer._all_blocked_but_me()  # both asleep for good: nothing else due
            nursery.start_soon(trio.sleep_forever)  # scheduled, not yet run
            assert not sequencer._all_blocked_but_me()
            nursery.cancel_scope.cancel()

    steps = StepCounter()
    trio.run(main, steps, clock=trio.testing.MockClock(autojump_threshold=0),
             instruments=[steps])
    assert sorted(seen) == [False, True]
