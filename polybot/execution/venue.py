"""The venue: what the runtime and the engine may ask of an executor, paper or live.

Both `PaperExecutor` and `LiveExecutor` implement it (mypy checks the assignment in
`polybot.components`); nothing reaches an executor through `hasattr`/`getattr`. What only the live
venue has (its private-stream task, its shutdown report) is reached through its own type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from polybot.execution.orders import TrackedOrder
from polybot.model import BookSnapshot, Fill, MarketState, OrderRequest, Signal, TradePrint


class Venue(Protocol):
    async def submit(self, request: OrderRequest) -> TrackedOrder | None:
        """Send an approved order; None when refused before anything was sent."""
        ...

    def can_submit(self, market_slug: str) -> bool:
        """False while an earlier create in the market is unanswered or unresolved."""
        ...

    def effective_book(self, book: BookSnapshot) -> BookSnapshot:
        """The book as this venue can trade it (paper: less the liquidity it already took)."""
        ...

    def sync_signals(self, slug: str, signals: Iterable[Signal]) -> list[TrackedOrder]:
        """Cancel resting orders in `slug` that no current signal supports."""
        ...

    def cancel_all(self, slug: str | None = None,
                   reason: str = "cancel all") -> list[TrackedOrder]: ...

    def on_book(self, book: BookSnapshot, *, trusted: bool = True) -> list[Fill]:
        """A new book (paper fills resting orders against it)."""
        ...

    def on_trade(self, trade: TradePrint) -> list[Fill]: ...

    def on_market_state(self, market_slug: str, state: MarketState) -> None:
        """The market left OPEN (halt, suspension, expiry)."""
        ...
