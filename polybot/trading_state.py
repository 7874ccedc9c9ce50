"""Trading state: ACTIVE / REDUCING / HALTED, and the baselines the halts are measured from.

This module is the one owner of the trading day, the day's start equity, the high-water mark, the
halts and the operator's flatten request. Nothing else keeps a copy: the ledger owns cash,
positions and marks; `/status`'s daily P&L is `equity − day_start_equity` read from here.

States (global): ACTIVE; REDUCING — only closing orders pass (the portfolio cap is exceeded, which
the gate never lets an order do, so a cap was lowered or a position adopted; or an operator asked
to flatten); HALTED — nothing passes except an operator's flatten. Halts:

- daily loss: the halt equity fell by `max_daily_loss` since the trading day's start; holds until
  the next trading day;
- drawdown: the halt equity fell `max_drawdown_pct` below the high-water mark; holds until the
  operator's resume (which re-bases the high-water mark at the current equity);
- kill switch: set by the operator-control task while `DATA_DIR/KILL` exists.

Traps this module exists to defuse (each was a live bug, `../shared/reviews/money-audit.md`):

- **A baseline taken before the books are right.** The trading day does not start, and no
  baseline is taken, until `begin()`: the first reconciliation with the exchange is done (live) or
  the ledger is restored (paper). A fresh live start otherwise takes 0 as the day's start (the
  daily-loss halt can never fire), and a restart on a new day takes the stale pre-reconciliation
  equity (a settlement while the bot was down counts as today's P&L). Until then nothing trades.
- **Deposits and withdrawals are not P&L.** `on_transfer` shifts the day's start and the
  high-water mark by the amount, so a withdrawal never halts and a deposit never widens the limit.
- **A mode switch is a new account.** `rebase()` (paper → live or back, an adopted account) takes
  fresh baselines and drops the halts measured from the old ones; the kill switch is kept.
- **The trading day never moves backwards** (a changed `DAILY_RESET_TZ`/`DAILY_RESET_HOUR` at a
  restart could otherwise clear today's daily-loss halt).

The halts are measured on the *halt equity* the caller passes (the ledger's equity with each
position at its halt mark, see `docs/design-notes.md`), so one stub quote cannot halt the day.
Time is passed in (`now`, an aware datetime from the injected clock); nothing here reads a clock.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from polybot.model import TradingState

log = logging.getLogger(__name__)


def trading_day(now: datetime, tz: ZoneInfo, reset_hour: int) -> date:
    """The trading day `now` falls in: days start at `reset_hour` o'clock (wall time) in `tz`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz).replace(tzinfo=None)
    return (local - timedelta(hours=reset_hour)).date()


@attrs.frozen(slots=True)
class HaltState:
    """What must be remembered across restarts (the kill switch is the file itself)."""

    day: date | None = None
    day_start_equity: Decimal | None = None
    high_water_mark: Decimal | None = None
    daily_loss_halt_day: date | None = None  # halted for daily loss during this trading day
    drawdown_halt: bool = False
    flatten_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: dates ISO, Decimals as strings (the store's `halt_state` format)."""
        return {
            "day": self.day.isoformat() if self.day else None,
            "day_start_equity": str(self.day_start_equity) if self.day_start_equity is not None else None,
            "high_water_mark": str(self.high_water_mark) if self.high_water_mark is not None else None,
            "daily_loss_halt_day": self.daily_loss_halt_day.isoformat() if self.daily_loss_halt_day else None,
            "drawdown_halt": self.drawdown_halt,
            "flatten_requested": self.flatten_requested,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HaltState:
        def dec(v: Any) -> Decimal | None:
            return Decimal(str(v)) if v is not None else None

        def day(v: Any) -> date | None:
            return date.fromisoformat(v) if v else None

        return cls(
            day=day(d.get("day")),
            day_start_equity=dec(d.get("day_start_equity")),
            high_water_mark=dec(d.get("high_water_mark")),
            daily_loss_halt_day=day(d.get("daily_loss_halt_day")),
            drawdown_halt=bool(d.get("drawdown_halt", False)),
            flatten_requested=bool(d.get("flatten_requested", False)),
        )


class NoticeKind(enum.Enum):
    """What an operator must hear about the trading state."""

    HALT_ENTERED = "halt_entered"
    HALT_LEFT = "halt_left"
    STATE_CHANGED = "state_changed"
    REJECTION_BURST = "rejection_burst"
    RESUME_CONSUMED = "resume_consumed"
    REBASED = "rebased"


@attrs.frozen(slots=True)
class Notice:
    kind: NoticeKind
    message: str
    state: TradingState
    reason: str = ""


Notifier = Callable[[Notice], None]


@attrs.frozen(slots=True)
class HaltLimits:
    """The limits the trading state enforces (the rest are the gate's sizing caps)."""

    max_daily_loss: Decimal
    max_drawdown_pct: Decimal
    max_portfolio_exposure: Decimal

    @classmethod
    def of(cls, limits: Any) -> HaltLimits:
        """From `risk.RiskLimits` (duck-typed, so this module stays below risk)."""
        return cls(limits.max_daily_loss, limits.max_drawdown_pct, limits.max_portfolio_exposure)


class TradingStateMachine:
    """The global trading state and its baselines (single writer: the engine's owner)."""

    def __init__(self, limits: HaltLimits, *, reset_tz: str = "America/New_York",
                 reset_hour: int = 0, notify: Notifier | None = None) -> None:
        if not 0 <= reset_hour <= 23:
            raise ValueError(f"reset_hour must be 0..23, got {reset_hour}")
        self.limits = limits
        self._tz = ZoneInfo(reset_tz)
        self._reset_hour = reset_hour
        self._notify = notify
        self._halt = HaltState()
        self._begun = False
        self._kill = False
        self._kill_reason = ""
        self._over_cap = False
        self._equity: Decimal | None = None  # the halt equity `observe` last measured
        self._state = TradingState.ACTIVE
        self._reason = ""

    def set_notifier(self, notify: Notifier) -> None:
        self._notify = notify

    # --- reads ------------------------------------------------------------------------------------

    @property
    def begun(self) -> bool:
        """The first reconciliation (live) or ledger restore (paper) is done: the day has started."""
        return self._begun

    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason if self._begun else "waiting for the first reconciliation"

    @property
    def ready(self) -> bool:
        """Trading allowed (begun, and ACTIVE or REDUCING)."""
        return self._begun and self._state is not TradingState.HALTED

    @property
    def day(self) -> date | None:
        return self._halt.day

    @property
    def day_start_equity(self) -> Decimal | None:
        return self._halt.day_start_equity

    @property
    def high_water_mark(self) -> Decimal | None:
        return self._halt.high_water_mark

    @property
    def kill_active(self) -> bool:
        return self._kill

    def halt_blocks(self, *, flatten: bool = False) -> bool:
        """True when the halts stop an order now: while HALTED only an operator's flatten goes,
        and not even that while the kill switch is on (the operator asked for nothing to go)."""
        if self._kill:
            return True
        return self._state is TradingState.HALTED and not flatten

    def daily_pnl(self, equity: Decimal) -> Decimal:
        """Equity change since the trading day's start (0 before the day has started)."""
        start = self._halt.day_start_equity
        return equity - start if self._begun and start is not None else Decimal(0)

    def daily_loss_used(self) -> Decimal:
        """What the daily-loss halt measures: the day's start less the halt equity last observed
        (0 while up on the day, or before the day began). It halts at `max_daily_loss`."""
        start, equity = self._halt.day_start_equity, self._equity
        if not self._begun or start is None or equity is None:
            return Decimal(0)
        return max(start - equity, Decimal(0))

    def drawdown_used(self) -> Decimal:
        """What the drawdown halt measures: the high-water mark less the halt equity last observed
        (0 at a new high, or before the day began). It halts at `drawdown_limit()`."""
        high, equity = self._halt.high_water_mark, self._equity
        if not self._begun or high is None or equity is None:
            return Decimal(0)
        return max(high - equity, Decimal(0))

    def drawdown_limit(self) -> Decimal | None:
        """The drawdown halt's threshold in USD, `max_drawdown_pct` × the high-water mark (None
        until there is a high-water mark)."""
        high = self._halt.high_water_mark
        return None if high is None else self.limits.max_drawdown_pct * high

    def halt_reasons(self, now: datetime | None = None) -> list[str]:
        reasons = []
        if self._kill:
            reasons.append("kill_switch")
        if self._halt.daily_loss_halt_day is not None and (
            now is None or self._halt.daily_loss_halt_day == self._today(now)
        ):
            reasons.append("daily_loss")
        if self._halt.drawdown_halt:
            reasons.append("drawdown")
        return reasons

    def status(self) -> dict[str, Any]:
        h = self._halt
        return {
            "state": self._state.value,
            "reason": self.reason,
            "ready": self.ready,
            "begun": self._begun,
            "halt_reasons": self.halt_reasons(),
            "over_portfolio_cap": self._over_cap,
            "flatten_requested": h.flatten_requested,
            "trading_day": h.day.isoformat() if h.day else None,
            "day_start_equity": str(h.day_start_equity) if h.day_start_equity is not None else None,
            "high_water_mark": str(h.high_water_mark) if h.high_water_mark is not None else None,
        }

    def halt_state(self) -> HaltState:
        return self._halt

    # --- inputs -----------------------------------------------------------------------------------

    def restore(self, state: HaltState | Mapping[str, Any]) -> None:
        """Carry the persisted state over a restart (before `begin`)."""
        self._halt = state if isinstance(state, HaltState) else HaltState.from_dict(state)

    def begin(self, equity: Decimal, now: datetime) -> None:
        """The books are right (first reconciliation done, or the paper ledger restored).

        A restart within the same trading day keeps the day's start; a new day starts at `equity`,
        which now includes whatever happened while the bot was down (that belongs to no trading
        day the bot saw, so it is neither today's profit nor today's loss).
        """
        if self._begun:
            return
        self._begun = True
        h = self._halt
        if h.high_water_mark is None:
            h = attrs.evolve(h, high_water_mark=equity)
        self._halt = h
        log.info("trading state: day begins (equity %s, restored day %s)", equity, h.day)
        self.observe(equity, now)

    def rebase(self, equity: Decimal, now: datetime, why: str) -> None:
        """A new account behind the ledger (a mode switch, an adopted account): fresh baselines.

        The daily-loss and drawdown halts measured from the old baselines are dropped with them;
        the kill switch and an operator's flatten request stay.
        """
        self._halt = attrs.evolve(self._halt, day=self._today(now), day_start_equity=equity,
                                  high_water_mark=equity, daily_loss_halt_day=None,
                                  drawdown_halt=False)
        self._emit(NoticeKind.REBASED, f"trading state re-based at equity {equity}: {why}")
        if self._begun:
            self.observe(equity, now)

    def on_transfer(self, amount: Decimal) -> None:
        """A completed deposit (positive) or withdrawal (negative): shift both baselines."""
        h = self._halt
        self._halt = attrs.evolve(
            h,
            day_start_equity=h.day_start_equity + amount if h.day_start_equity is not None else None,
            high_water_mark=h.high_water_mark + amount if h.high_water_mark is not None else None,
        )
        log.info("trading state: transfer of %s shifts the day's start and the high-water mark",
                 amount)

    def set_kill(self, active: bool, reason: str = "", now: datetime | None = None) -> None:
        """The operator-control task saw `DATA_DIR/KILL` appear (or go)."""
        if active == self._kill:
            return
        self._kill = active
        self._kill_reason = reason
        self._set_state(now)

    def request_flatten(self) -> None:
        """Operator flatten: only closing orders pass until the operator resumes."""
        self._halt = attrs.evolve(self._halt, flatten_requested=True)
        self._set_state(None)

    def resume(self, equity: Decimal, now: datetime | None = None) -> None:
        """The operator's resume: clears a drawdown halt and a flatten request, and the high-water
        mark restarts at `equity`. A daily-loss halt holds until the next trading day, the kill
        switch while its file exists."""
        self._halt = attrs.evolve(self._halt, drawdown_halt=False, flatten_requested=False,
                                  high_water_mark=equity)
        self._emit(NoticeKind.RESUME_CONSUMED,
                   "operator resume consumed: drawdown halt and flatten cleared")
        self._set_state(now)

    def observe(self, equity: Decimal, now: datetime, *, over_cap: bool = False,
                baseline: Decimal | None = None) -> TradingState:
        """Roll the trading day and check the halts against the latest halt equity.

        `baseline` (default `equity`) is what a new day's start and a new high-water mark are
        taken from: the ledger's `baseline_equity`, which never counts a stale held mark above
        the book, so neither baseline is set from a value the account did not have.
        """
        self._over_cap = over_cap
        base = equity if baseline is None else min(equity, baseline)
        if not self._begun:
            return self._state
        self._equity = equity
        h = self._halt
        today = self._today(now)
        if h.day is None or today > h.day:
            # A new trading day starts at the first equity seen in it.
            expired = h.daily_loss_halt_day is not None and h.daily_loss_halt_day != today
            h = attrs.evolve(h, day=today, day_start_equity=base,
                             daily_loss_halt_day=None if expired else h.daily_loss_halt_day)
        if h.day_start_equity is None:
            h = attrs.evolve(h, day_start_equity=base)
        if h.high_water_mark is None or base > h.high_water_mark:
            h = attrs.evolve(h, high_water_mark=base)
        start, high = h.day_start_equity, h.high_water_mark
        assert start is not None and high is not None  # both set just above
        if h.daily_loss_halt_day != today and start - equity >= self.limits.max_daily_loss:
            h = attrs.evolve(h, daily_loss_halt_day=today)
        if not h.drawdown_halt and high > 0 and high - equity >= self.limits.max_drawdown_pct * high:
            h = attrs.evolve(h, drawdown_halt=True)
        self._halt = h
        self._set_state(now)
        return self._state

    # --- the state machine ------------------------------------------------------------------------

    def _today(self, now: datetime) -> date:
        # The day never moves backwards (a changed reset hour or zone at a restart).
        today = trading_day(now, self._tz, self._reset_hour)
        day = self._halt.day
        return day if day is not None and today < day else today

    def _set_state(self, now: datetime | None) -> None:
        halts = self.halt_reasons(now)
        if halts:
            state, reason = TradingState.HALTED, ",".join(halts)
            if self._kill and self._kill_reason:
                reason += f" ({self._kill_reason})"
        elif self._halt.flatten_requested:
            state, reason = TradingState.REDUCING, "operator_flatten"
        elif self._over_cap:
            state, reason = TradingState.REDUCING, "portfolio_over_cap"
        else:
            state, reason = TradingState.ACTIVE, ""
        if (state, reason) == (self._state, self._reason):
            return
        before = self._state
        self._state, self._reason = state, reason
        if state is TradingState.HALTED and before is not TradingState.HALTED:
            self._emit(NoticeKind.HALT_ENTERED, f"trading HALTED: {reason}", level=logging.ERROR)
        elif before is TradingState.HALTED and state is not TradingState.HALTED:
            self._emit(NoticeKind.HALT_LEFT, f"halt cleared, trading {state.value}")
        else:
            self._emit(NoticeKind.STATE_CHANGED,
                       f"trading {state.value}" + (f": {reason}" if reason else ""))

    def _emit(self, kind: NoticeKind, message: str, level: int = logging.WARNING) -> None:
        notice = Notice(kind=kind, message=message, state=self._state, reason=self._reason)
        log.log(level, "trading state: %s", message,
                extra={"notice": kind.value, "trading_state": self._state.value})
        if self._notify is not None:
            try:
                self._notify(notice)
            except Exception:  # a broken notifier must never stop the trading state
                log.exception("trading state: notifier failed")
