"""The one clock of the process: monotonic time for intervals, wall time for days and stamps.

Every component that reads time takes a `Clock` (the composition root passes its own), so a run
on Trio's `MockClock` is consistent: rate windows, the trading day, pre-game cut-offs and every
timestamp move with the mock clock instead of with the host's calendar.

- `monotonic()` is Trio's clock (`trio.current_time()`): the one for intervals and deadlines.
  Code that only measures intervals may keep calling `trio.current_time()` directly; it is the
  same clock.
- `now()` is an aware UTC datetime: the one for trading days, order and fill stamps, and start
  times.

`LiveClock` reads the host's wall clock. `ReplayClock` derives wall time from Trio time
(`epoch + (trio time - origin)`), so on `MockClock(autojump_threshold=0)` a whole day passes in
milliseconds of real time and crosses `DAILY_RESET_HOUR` exactly when the test says.

This module is the only place in `polybot/` (outside the simulated exchange, which is a separate
world with its own clock) that reads the host's wall clock; a test greps for it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import trio

__all__ = ["LIVE_CLOCK", "Clock", "LiveClock", "ReplayClock", "epoch_ms"]


@runtime_checkable
class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on Trio's clock (only differences mean anything)."""
        ...

    def now(self) -> datetime:
        """The wall time, timezone-aware, in UTC."""
        ...


class LiveClock:
    """The host's clocks: Trio's for intervals, the system calendar for wall time."""

    def monotonic(self) -> float:
        return trio.current_time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "LiveClock()"


LIVE_CLOCK = LiveClock()


class ReplayClock:
    """Wall time = `epoch` + (Trio time − `origin`): a calendar that runs on Trio's clock.

    Under `trio.testing.MockClock` (which starts at 0, the default `origin`) the wall clock jumps
    with the mock clock, so a test can cross a trading day with `await trio.sleep(...)`; a
    backtest sets `epoch` to the recording's first timestamp.
    """

    def __init__(self, epoch: datetime, *, origin: float = 0.0) -> None:
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self.epoch = epoch.astimezone(UTC)
        self.origin = origin

    def monotonic(self) -> float:
        return trio.current_time()

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=trio.current_time() - self.origin)

    def jump(self, delta: timedelta) -> None:
        """Move the calendar by `delta` without Trio time passing (a restart the next day)."""
        self.epoch += delta

    def __repr__(self) -> str:
        return f"ReplayClock(epoch={self.epoch.isoformat()}, origin={self.origin})"


def epoch_ms() -> int:
    """The host's Unix time in ms, for protocols the real exchange checks against its own clock.

    Request signatures carry it: the exchange rejects a timestamp 30 s off its own, so a replayed
    calendar must never reach them (the signer takes its own `clock_ms` for tests).
    """
    return time.time_ns() // 1_000_000
