"""The Venue: the one surface the composition root drives an executor through.

`PaperExecutor` (fills against the books) and `LiveExecutor` (the exchange) both implement it,
and mypy checks that they do (the root's `executor` is annotated `Venue`). Where a call does not
apply to a venue it is a no-op there, never a missing method: the root never asks which
executor it holds (no `hasattr`/`getattr` on an executor; a test greps for them).

Calls, in the order a tick meets them:

- market data: `on_book`, `on_trade` (paper fills resting orders from them; live keeps marks),
  `on_market_state` (a market left OPEN: live checks soon and settles an expired holding);
- deciding: `effective_book` (the book minus liquidity paper orders already took; live: the
  book), `sync_signals` (cancel resting orders whose signal went or moved), `can_submit`
  (live: not while a create in `slug` is in flight or its outcome unknown);
- acting: `submit` (and `send`, which does not wait for the answer), `cancel`, `cancel_all`
  (synchronous: cancels are queued or booked at once);
- risk and readiness: `risk_orders` (open orders counted at risk, unknown ones included),
  `trading_allowed` and `readiness_reason`, `status` (for /status);
- lifecycle: `run` (the venue's own tasks; paper has none), `shutdown`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import trio

from polybot.execution.orders import TrackedOrder
from polybot.model import (
    BookSnapshot,
    Fill,
    MarketState,
    Order,
    OrderRequest,
    Signal,
    TradePrint,
)

__all__ = ["ShutdownReport", "Venue"]


@attrs.frozen(slots=True)
class ShutdownReport:
    all_confirmed: bool
    still_open: tuple[str, ...] = ()
    detail: str = ""


class Venue(Protocol):
    # --- market data ---
    def on_book(self, book: BookSnapshot, *, trusted: bool = True) -> list[Fill]: ...

    def on_trade(self, trade: TradePrint) -> list[Fill]: ...

    def on_continuity_lost(self) -> list[TrackedOrder]:
        """The markets feed dropped (paper cancels its resting orders, as maintenance would)."""
        ...

    def on_market_state(self, market_slug: str, state: MarketState) -> None: ...

    # --- deciding ---
    def effective_book(self, book: BookSnapshot) -> BookSnapshot: ...

    def forget(self, market_slug: str) -> None:
        """The market left the universe (flat, no open order): drop what is held for it."""

    def market_keys(self) -> set[str]:
        """The markets something is held for (the per-market keys check)."""
        ...

    def sync_signals(self, slug: str, signals: Iterable[Signal]) -> list[TrackedOrder]: ...

    def can_submit(self, market_slug: str) -> bool: ...

    # --- acting ---
    async def submit(self, request: OrderRequest) -> TrackedOrder | None:
        """The tracked order, or None when the venue refused it before sending anything."""
        ...

    @property
    def creates_in_flight(self) -> int:
        """Creates sent and not answered yet (paper: none)."""
        ...

    async def send(self, request: OrderRequest) -> TrackedOrder | None:
        """As `submit`, but returns once the order is sent: live waits for the exchange's answer
        in a task of its own (the market stays frozen until then); paper is `submit`."""
        ...

    def cancel(self, order_id: str, reason: str = "cancel requested") -> bool: ...

    def cancel_all(self, slug: str | None = None,
                   reason: str = "cancel all") -> list[TrackedOrder]: ...

    # --- risk and readiness ---
    def risk_orders(self, market_slug: str | None = None) -> list[Order]: ...

    @property
    def trading_allowed(self) -> bool: ...

    @property
    def readiness_reason(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    # --- lifecycle ---
    async def run(self, events: trio.MemoryReceiveChannel[Any], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    async def shutdown(self, *, cancel: bool = True) -> ShutdownReport: ...
