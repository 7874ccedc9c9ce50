"""The one clock: monotonic time for intervals and deadlines, wall time for days and records.

Everything that reads time is handed a `Clock`; nothing calls `datetime.now()` itself. Monotonic
time is Trio's (`trio.current_time()`), so under Trio's `MockClock` the whole bot runs on
simulated time; `OffsetClock`'s wall time is an epoch plus Trio time, so a test (or a replay)
crosses a trading day on the mock clock without waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

import trio


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class LiveClock:
    """Trio's clock and the host's wall clock (UTC)."""

    def monotonic(self) -> float:
        return trio.current_time()

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """Wall time = `epoch` + Trio time elapsed since `start` (+ `offset`, which a test may move)."""

    def __init__(self, epoch: datetime, *, start: float = 0.0) -> None:
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware")
        self.epoch = epoch
        self.start = start
        self.offset = timedelta(0)

    def monotonic(self) -> float:
        return trio.current_time()

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=trio.current_time() - self.start) + self.offset
