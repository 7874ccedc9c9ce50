"""Order books of the configured markets, as the market feed last saw them.

The exchange sends whole books (no deltas, no sequence numbers), so a book is replaced, never
patched: each frame is the truth until the next one. `BookStore` has one writer, the market feed
task; every other part of the bot only reads it.

Two traps this module exists to defuse:

- **Continuity.** When the market stream drops (or is being rebuilt) the last book we hold may be
  arbitrarily wrong, yet it looks perfectly normal. The feed calls `mark_untrusted` at the moment
  continuity is lost; the book stays untrusted (no signals may come from it) until a fresh full
  book arrives. A frame that was received before the loss (still queued in a channel) does not
  restore trust.

Marks are not kept here: the ledger owns them (`Ledger.on_book` reads each book).

A quiet market is not stale: freshness is a property of the stream (the feed's watchdog), not of
how long ago a book changed, so there is no per-book age check here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from decimal import Decimal

import attrs

from polybot.model import ZERO, BookSnapshot, MarketState, PriceLevel, Side


@attrs.frozen(slots=True)
class DepthWalk:
    """What a taker gets walking one side of a book up to a limit price.

    `qty` is the total size at levels no worse than the limit (capped by `max_qty` if given),
    `vwap` its volume-weighted price (None when `qty` is zero) and `worst_price` the last level
    touched (the marginal price).
    """

    qty: Decimal
    vwap: Decimal | None
    worst_price: Decimal | None
    levels: int


EMPTY_WALK = DepthWalk(qty=ZERO, vwap=None, worst_price=None, levels=0)


def walk_levels(
    levels: Iterable[PriceLevel], limit: Decimal, *, buying: bool, max_qty: Decimal | None = None
) -> DepthWalk:
    """Walk `levels` (best first) while the price is no worse than `limit`.

    `buying=True` walks offers (prices <= limit); `buying=False` walks bids (prices >= limit).
    """
    total = ZERO
    notional = ZERO
    worst: Decimal | None = None
    count = 0
    for level in levels:
        if (level.price > limit) if buying else (level.price < limit):
            break
        take = level.qty
        if max_qty is not None and total + take > max_qty:
            take = max_qty - total
        if take <= 0:
            break
        total += take
        notional += take * level.price
        worst = level.price
        count += 1
    if total == 0:
        return EMPTY_WALK
    return DepthWalk(qty=total, vwap=notional / total, worst_price=worst, levels=count)


def depth_walk(
    book: BookSnapshot, side: Side, limit: Decimal, max_qty: Decimal | None = None
) -> DepthWalk:
    """Walk the book as an order on `side` of the YES book would: BUY lifts offers, SELL hits bids."""
    if side is Side.BUY:
        return walk_levels(book.offers, limit, buying=True, max_qty=max_qty)
    if side is Side.SELL:
        return walk_levels(book.bids, limit, buying=False, max_qty=max_qty)
    raise ValueError(f"cannot walk a book for side {side!r}")


@attrs.define(slots=True)
class _Entry:
    book: BookSnapshot
    trusted: bool
    lost_at: float | None = None  # clock time of the last continuity loss


def _in_order(levels: tuple[PriceLevel, ...], descending: bool) -> bool:
    """Every level has size and the prices run best first (ties kept): what sorting would keep."""
    prev = None
    for lv in levels:
        if not lv.qty > ZERO:
            return False
        price = lv.price
        if prev is not None and (price > prev if descending else price < prev):
            return False
        prev = price
    return True


def _normalise(book: BookSnapshot) -> BookSnapshot:
    """Drop empty levels and make sure each side is sorted best first (cheap; books are short).
    The exchange sends them so: that case is one pass over the levels, with no copy."""
    if _in_order(book.bids, True) and _in_order(book.offers, False):
        return book
    bids = tuple(sorted((lv for lv in book.bids if lv.qty > 0), key=lambda lv: lv.price, reverse=True))
    offers = tuple(sorted((lv for lv in book.offers if lv.qty > 0), key=lambda lv: lv.price))
    if bids == book.bids and offers == book.offers:
        return book
    return attrs.evolve(book, bids=bids, offers=offers)


class BookStore:
    """Latest full book per market, with its trust. Single writer: the market feed."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lost_all_at: float | None = None
        self.updates = 0

    # --- writer side (the market feed) -----------------------------------------------------

    def update(self, book: BookSnapshot) -> None:
        """Replace the market's book with a fresh full book.

        The book is trusted unless it was received (``received_at``) before the market's last
        continuity loss.
        """
        book = _normalise(book)
        entry = self._entries.get(book.market_slug)
        lost_at = self._lost_all_at
        if entry is not None and entry.lost_at is not None:
            lost_at = entry.lost_at if lost_at is None else max(lost_at, entry.lost_at)
        trusted = lost_at is None or book.received_at >= lost_at
        if entry is None:
            entry = _Entry(book=book, trusted=trusted, lost_at=lost_at)
            self._entries[book.market_slug] = entry
        else:
            entry.book = book
            entry.trusted = trusted
        if trusted:
            entry.lost_at = None
        self.updates += 1

    def mark_untrusted(self, slug: str | None = None, *, at: float | None = None) -> None:
        """Record a continuity loss for one market (or all, with ``slug=None``).

        `at` is the clock time of the loss (same clock as ``BookSnapshot.received_at``); books
        received before it do not restore trust. Without it, the next book restores trust.
        """
        stamp = at if at is not None else float("-inf")
        if slug is None:
            for entry in self._entries.values():
                entry.trusted = False
                entry.lost_at = stamp
            self._lost_all_at = stamp if at is not None else None
            return
        one = self._entries.get(slug)
        if one is not None:
            one.trusted = False
            one.lost_at = stamp

    def set_state(self, slug: str, state: MarketState) -> None:
        """Apply a market-state change that arrived without a book (trust is unchanged)."""
        entry = self._entries.get(slug)
        if entry is not None:
            entry.book = attrs.evolve(entry.book, state=state)

    def forget(self, slug: str) -> None:
        self._entries.pop(slug, None)

    # --- readers ---------------------------------------------------------------------------

    def get(self, slug: str) -> BookSnapshot | None:
        entry = self._entries.get(slug)
        return entry.book if entry is not None else None

    def is_trusted(self, slug: str) -> bool:
        entry = self._entries.get(slug)
        return entry is not None and entry.trusted

    def state(self, slug: str) -> MarketState | None:
        entry = self._entries.get(slug)
        return entry.book.state if entry is not None else None

    def is_tradable(self, slug: str) -> bool:
        """A trusted book of an OPEN market."""
        entry = self._entries.get(slug)
        return entry is not None and entry.trusted and entry.book.state is MarketState.OPEN

    def best_bid(self, slug: str) -> PriceLevel | None:
        book = self.get(slug)
        return book.best_bid if book is not None else None

    def best_offer(self, slug: str) -> PriceLevel | None:
        book = self.get(slug)
        return book.best_offer if book is not None else None

    def walk(
        self, slug: str, side: Side, limit: Decimal, max_qty: Decimal | None = None
    ) -> DepthWalk:
        book = self.get(slug)
        if book is None:
            return EMPTY_WALK
        return depth_walk(book, side, limit, max_qty)

    def market_keys(self) -> set[str]:
        return set(self._entries)

    def slugs(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
