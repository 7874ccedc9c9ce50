"""The trading state: the trading day, its baselines and the halts (the one owner of each)."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest

from polybot import control
from polybot.model import TradingState
from polybot.risk import RiskLimits
from polybot.trading_state import (
    HaltLimits,
    HaltState,
    NoticeKind,
    TradingStateMachine,
    trading_day,
)

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 10:00 in New York
LIMITS = HaltLimits.of(RiskLimits())  # daily loss 25, drawdown 15 %, portfolio 250


def begun(equity="1000", now=NOW, limits=LIMITS, **kw) -> TradingStateMachine:
    ts = TradingStateMachine(limits, **kw)
    ts.begin(D(equity), now)
    return ts


def test_the_day_does_not_start_before_the_books_are_right():
    # money-audit known defect: a fresh live start took the day's start equity as 0 (cash not
    # adopted yet), so the daily-loss halt could never fire on the first day
    ts = TradingStateMachine(LIMITS)
    ts.observe(D("0"), NOW)
    assert ts.day_start_equity is None and ts.high_water_mark is None and not ts.ready
    ts.begin(D("1000"), NOW + timedelta(seconds=5))
    assert ts.day_start_equity == D("1000") and ts.ready
    ts.observe(D("975"), NOW + timedelta(seconds=6))
    assert ts.state is TradingState.HALTED and ts.reason == "daily_loss"


def test_a_restart_on_a_new_day_starts_the_day_at_the_reconciled_equity():
    # money-audit r9: yesterday's state restored; a settlement while down raised equity to 1446;
    # the day must start there, not at the stale 991 from before the reconciliation
    ts = TradingStateMachine(LIMITS)
    ts.restore(HaltState(day=date(2026, 11, 25), day_start_equity=D("1000"),
                         high_water_mark=D("1000")))
    ts.observe(D("991.87"), NOW)  # the stale ledger, before the reconciliation: ignored
    assert ts.day == date(2026, 11, 25)
    ts.begin(D("1446.87"), NOW)
    assert ts.day == date(2026, 11, 26) and ts.day_start_equity == D("1446.87")
    ts.observe(D("1421.87"), NOW + timedelta(minutes=1))  # a $25 loss today halts
    assert ts.state is TradingState.HALTED and ts.reason == "daily_loss"


def test_a_restart_within_the_day_keeps_the_days_start():
    ts = TradingStateMachine(LIMITS)
    ts.restore(HaltState(day=date(2026, 11, 26), day_start_equity=D("1000"),
                         high_water_mark=D("1000")))
    ts.begin(D("980"), NOW)
    assert ts.day_start_equity == D("1000")
    ts.observe(D("975"), NOW)
    assert ts.state is TradingState.HALTED


def test_transfers_are_not_pnl():
    # money-audit defect 1: a withdrawal halted, a deposit widened the daily-loss limit
    ts = begun()
    ts.on_transfer(D("-300"))
    ts.observe(D("700"), NOW)
    assert ts.state is TradingState.ACTIVE
    assert ts.day_start_equity == D("700") and ts.high_water_mark == D("700")
    ts.on_transfer(D("500"))
    ts.observe(D("1180"), NOW)  # lost 20 after a deposit
    assert ts.state is TradingState.ACTIVE
    ts.observe(D("1175"), NOW)
    assert ts.state is TradingState.HALTED and ts.reason == "daily_loss"
    assert ts.daily_pnl(D("1175")) == D("-25")


def test_a_rebase_takes_fresh_baselines_and_drops_the_old_halts():
    # paper → live: the paper baseline must not carry over (money-audit r4)
    notices = []
    ts = begun(notify=notices.append)
    ts.observe(D("800"), NOW)
    assert ts.reason == "daily_loss,drawdown"
    ts.rebase(D("5000"), NOW + timedelta(seconds=1), "paper -> live")
    assert ts.state is TradingState.ACTIVE
    assert ts.day_start_equity == D("5000") and ts.high_water_mark == D("5000")
    ts.observe(D("4975"), NOW + timedelta(seconds=2))
    assert ts.reason == "daily_loss"
    assert NoticeKind.REBASED in [n.kind for n in notices]


def test_the_trading_day_never_moves_backwards():
    # a changed DAILY_RESET_TZ at a restart could otherwise clear today's daily-loss halt
    ts = TradingStateMachine(LIMITS, reset_tz="Pacific/Kiritimati")  # UTC+14
    ts.restore(HaltState(day=date(2026, 11, 27), day_start_equity=D("1000"),
                         high_water_mark=D("1000"), daily_loss_halt_day=date(2026, 11, 27)))
    again = TradingStateMachine(LIMITS, reset_tz="America/New_York")
    again.restore(ts.halt_state())
    again.begin(D("970"), NOW)  # the 26th in New York
    assert again.day == date(2026, 11, 27)
    assert again.state is TradingState.HALTED and again.reason == "daily_loss"


def test_reducing_when_portfolio_over_cap_without_the_bot_acting():
    notices = []
    ts = begun(notify=notices.append)
    ts.observe(D("1000"), NOW, over_cap=True)
    assert ts.state is TradingState.REDUCING and ts.reason == "portfolio_over_cap" and ts.ready
    ts.observe(D("1000"), NOW, over_cap=False)
    assert ts.state is TradingState.ACTIVE
    assert [n.kind for n in notices] == [NoticeKind.STATE_CHANGED, NoticeKind.STATE_CHANGED]


def test_operator_flatten_reduces_until_resume():
    ts = begun()
    ts.request_flatten()
    assert ts.state is TradingState.REDUCING and ts.reason == "operator_flatten"
    ts.resume(D("1000"), NOW)
    assert ts.state is TradingState.ACTIVE


def test_daily_loss_halts_until_next_trading_day():
    notices = []
    ts = begun(notify=notices.append, reset_tz="America/New_York", reset_hour=0)
    assert ts.day == date(2026, 11, 26)
    ts.observe(D("975.01"), NOW + timedelta(hours=1))
    assert ts.state is TradingState.ACTIVE
    ts.observe(D("975"), NOW + timedelta(hours=2))
    assert ts.state is TradingState.HALTED and ts.reason == "daily_loss" and not ts.ready
    late = datetime(2026, 11, 27, 4, 59, tzinfo=UTC)  # 23:59 in New York
    ts.observe(D("990"), late)
    assert ts.state is TradingState.HALTED
    midnight = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    ts.observe(D("975"), midnight)
    assert ts.state is TradingState.ACTIVE and ts.day_start_equity == D("975")
    assert ts.halt_reasons() == [] and ts.halt_state().daily_loss_halt_day is None
    assert [n.kind for n in notices] == [NoticeKind.HALT_ENTERED, NoticeKind.HALT_LEFT]


def test_trading_day_follows_configured_timezone_and_hour_across_dst():
    ny = ZoneInfo("America/New_York")
    assert trading_day(datetime(2026, 1, 15, 4, 59, tzinfo=UTC), ny, 0) == date(2026, 1, 14)
    assert trading_day(datetime(2026, 1, 15, 5, 0, tzinfo=UTC), ny, 0) == date(2026, 1, 15)
    assert trading_day(datetime(2026, 7, 15, 3, 59, tzinfo=UTC), ny, 0) == date(2026, 7, 14)
    assert trading_day(datetime(2026, 7, 15, 4, 0, tzinfo=UTC), ny, 0) == date(2026, 7, 15)
    assert trading_day(datetime(2026, 7, 15, 20, 59, tzinfo=UTC), ny, 17) == date(2026, 7, 14)
    assert trading_day(datetime(2026, 7, 15, 21, 0, tzinfo=UTC), ny, 17) == date(2026, 7, 15)
    with pytest.raises(ValueError):
        trading_day(datetime(2026, 7, 15, 21, 0), ny, 17)


def test_daily_reset_hour_in_other_timezone():
    t0 = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 16:00 London: day of the 25th
    ts = begun(now=t0, reset_tz="Europe/London", reset_hour=17)
    ts.observe(D("970"), t0 + timedelta(minutes=30))
    assert ts.state is TradingState.HALTED
    ts.observe(D("970"), t0 + timedelta(minutes=59))
    assert ts.state is TradingState.HALTED
    ts.observe(D("970"), t0 + timedelta(minutes=60))
    assert ts.state is TradingState.ACTIVE


def test_drawdown_halts_until_operator_resume():
    ts = begun(limits=HaltLimits.of(RiskLimits(max_daily_loss=D("10000"))))
    ts.observe(D("1200"), NOW)  # high-water mark
    ts.observe(D("1020.01"), NOW)
    assert ts.state is TradingState.ACTIVE
    ts.observe(D("1020"), NOW)  # 15 % of 1200
    assert ts.state is TradingState.HALTED and ts.reason == "drawdown"
    ts.observe(D("1150"), NOW + timedelta(days=2))
    assert ts.state is TradingState.HALTED  # recovery and new days do not clear it
    ts.resume(D("1150"), NOW + timedelta(days=2))
    assert ts.state is TradingState.ACTIVE and ts.high_water_mark == D("1150")


def test_the_limits_use_reaches_its_cap_exactly_when_the_halt_fires():
    # what the Grafana panels draw: the halts' own figures on the halt equity, never negative
    ts = TradingStateMachine(HaltLimits.of(RiskLimits(max_daily_loss=D("100"))))
    assert (ts.daily_loss_used(), ts.drawdown_used(), ts.drawdown_limit()) == (0, 0, None)
    ts.begin(D("1000"), NOW)
    ts.observe(D("1200"), NOW)  # up on the day: no loss used; a new high
    assert (ts.daily_loss_used(), ts.drawdown_used(), ts.drawdown_limit()) == (0, 0, D("180"))
    ts.observe(D("1100.01"), NOW)
    assert ts.daily_loss_used() == 0 and ts.drawdown_used() == D("99.99")
    assert ts.state is TradingState.ACTIVE
    ts.observe(D("1020"), NOW)  # 15 % of 1200
    assert ts.drawdown_used() == ts.drawdown_limit() == D("180")
    assert ts.state is TradingState.HALTED and ts.reason == "drawdown"
    ts.observe(D("900"), NOW)
    assert ts.daily_loss_used() == D("100") == ts.limits.max_daily_loss
    assert ts.halt_reasons() == ["daily_loss", "drawdown"]


def test_kill_switch_halts_while_set_and_resume_does_not_clear_it_or_daily_loss():
    ts = begun()
    ts.observe(D("900"), NOW)
    assert ts.halt_reasons(NOW) == ["daily_loss"]
    ts.set_kill(True, "halted by operator", NOW)
    ts.resume(D("900"), NOW)
    assert ts.state is TradingState.HALTED
    assert ts.reason == "kill_switch,daily_loss (halted by operator)"


def test_halt_state_round_trips_and_restores_a_halt():
    limits = HaltLimits.of(RiskLimits(max_daily_loss=D("10000")))
    ts = begun(limits=limits)
    ts.observe(D("800"), NOW)
    data = ts.halt_state().to_dict()
    assert data["drawdown_halt"] is True and data["high_water_mark"] == "1000"
    again = TradingStateMachine(limits)
    again.restore(data)
    assert again.halt_state() == ts.halt_state()
    again.begin(D("990"), NOW + timedelta(days=1))
    assert again.state is TradingState.HALTED and again.reason == "drawdown"
    assert HaltState.from_dict(HaltState().to_dict()) == HaltState()


def test_restored_daily_halt_expires_with_its_day():
    ts = TradingStateMachine(LIMITS)
    ts.restore(HaltState(day=date(2026, 11, 25), day_start_equity=D("1000"),
                         high_water_mark=D("1000"), daily_loss_halt_day=date(2026, 11, 25)))
    ts.begin(D("970"), NOW)
    assert ts.state is TradingState.ACTIVE and ts.day_start_equity == D("970")


# --- the operator's files ---------------------------------------------------------------------------


def test_kill_file_is_seen_by_a_poll_and_resume_is_consumed(tmp_path):
    assert control.poll_files(tmp_path) == control.FileSignals(False, "", False)
    control.write_kill_file(tmp_path, "stop now")
    control.write_resume_request(tmp_path)
    seen = control.poll_files(tmp_path)
    assert seen == control.FileSignals(kill=True, kill_reason="stop now", resume=True)
    assert not (tmp_path / control.RESUME_FILE).exists()  # consumed
    assert control.poll_files(tmp_path).resume is False
    assert control.remove_kill_file(tmp_path) and not control.remove_kill_file(tmp_path)
    assert control.poll_files(tmp_path).kill is False
