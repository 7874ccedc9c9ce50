"""The end of a market's life: learning that it closed or resolved, recording its settlement, and
retiring it from the universe once nothing of ours is left in it.

    listed → pre-game → in play → closed → resolved → retired

**The rule** (`why_kept`, pure): a market is retired only when it is over (its phase is CLOSED or
RESOLVED, or its book's state is EXPIRED or TERMINATED, both final at the exchange) AND the
ledger holds no position in it AND no open order rests in it (the bot's, or one the exchange
reported that the bot did not place: both are in the exposure's per-market orders, and the
order registry is asked too, so a create still in flight keeps the market). Whatever its origin:
a configured (MARKET_SLUGS) market is not loaded again once retired (`retired_configured`); a
market held outside the listings stays until its position is settled. HALTED and SUSPENDED reopen,
so they never retire a market.

**How the bot learns a market is over**, without polling every market every minute (the public
budget, 20 requests/s per IP, is shared with discovery and every instance on the host):

- the markets stream's book `state` (read from `BookStore` by the rule itself);
- `refresh`: a targeted `GET /v1/market/slug/{slug}` once a minute, only for markets past their
  start that nobody else refreshes (the reference child reloads the configured and held markets;
  discovery re-lists upcoming ones, but no longer lists a game once it is closed);
- the settlement endpoint, `GET /v1/markets/{slug}/settlement` (404 until published), asked every
  30 s for a market that is over: the value is recorded in the universe (`settlement`, so the
  phase reads RESOLVED and /status shows it) and, when the ledger holds a position there, the
  venue is told the market resolved (`on_market_state(EXPIRED)`): the venue is the one writer of
  the ledger's settlement (paper from the same endpoint, live from the exchange's records). A
  market resolved while the bot was down is settled this way on the first pass after start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import attrs

from polybot.errors import FatalError
from polybot.model import MarketState, MarketStatus
from polybot.universe import Listing, Origin, Phase, Universe

log = logging.getLogger(__name__)

FINAL_BOOK_STATES = frozenset({MarketState.EXPIRED, MarketState.TERMINATED})
OVER_PHASES = frozenset({Phase.CLOSED, Phase.RESOLVED})
REFRESH_SECONDS = 60.0  # a started market's metadata is re-read this often (one market per call)
SETTLEMENT_POLL_SECONDS = 30.0  # an over market's settlement is asked this often until published
# A retired market is remembered this long, so a listing that still shows it (an event stays
# listed until it settles, and an unsettled contract up to about two weeks) does not add it back.
# Bounded by the markets retired in the window, not by the days the bot runs.
RETIRED_MEMORY = timedelta(days=15)


def is_over(listing: Listing, now: datetime, book_state: MarketState | None) -> bool:
    """Closed or resolved for good (never a halt or a suspension: those reopen)."""
    return listing.phase(now) in OVER_PHASES or book_state in FINAL_BOOK_STATES


def why_kept(listing: Listing, now: datetime, *, book_state: MarketState | None,
             position_qty: Decimal, open_orders: int) -> str:
    """Why the market stays in the universe ("": retire it)."""
    if not is_over(listing, now, book_state):
        return f"{listing.phase(now).value}, not over"
    if open_orders:
        return f"{open_orders} open order(s)"
    if position_qty != 0:
        return f"position {position_qty:+} until settled"
    return ""


class Books(Protocol):
    def state(self, slug: str) -> MarketState | None: ...


class Positions(Protocol):
    def position(self, slug: str) -> Any: ...


class OpenOrders(Protocol):
    def market_orders(self, slug: str) -> list[Any]: ...


class Registry(Protocol):
    def open_orders(self, market_slug: str | None = None) -> list[Any]: ...


class Venue(Protocol):
    def on_market_state(self, market_slug: str, state: MarketState) -> None: ...


class Rest(Protocol):
    async def market_by_slug(self, slug: str) -> Any: ...

    async def settlement(self, slug: str) -> Decimal | None: ...


class Lifecycle:
    """The retirement pass and the end-of-game refreshes (one instance per process)."""

    def __init__(self, universe: Universe, *, books: Books, ledger: Positions,
                 exposure: OpenOrders, registry: Registry, venue: Venue,
                 configured: Iterable[str] = ()) -> None:
        self.universe = universe
        self.books = books
        self.ledger = ledger
        self.exposure = exposure
        self.registry = registry
        self.venue = venue
        self.configured = frozenset(configured)
        # configured markets retired for good (bounded by MARKET_SLUGS): not loaded again
        self.retired_configured: set[str] = set()
        self._refreshed: dict[str, float] = {}  # slug -> monotonic time of its last refresh
        self._asked: dict[str, float] = {}  # slug -> monotonic time of its last settlement read
        self._retired_at: dict[str, datetime] = {}  # slug -> when it was retired (RETIRED_MEMORY)
        universe.add_retire_listener(self._forget)

    # --- the retirement pass (sync, cheap: every housekeeping second) ----------------------------

    def kept_reason(self, slug: str, now: datetime) -> str | None:
        """Why `slug` stays (None: not in the universe; "": it would be retired now)."""
        listing = self.universe.get(slug)
        if listing is None:
            return None
        return why_kept(listing, now, book_state=self.books.state(slug),
                        position_qty=self.ledger.position(slug).net_qty,
                        open_orders=self._open_orders(slug))

    def in_use(self, slug: str) -> str:
        """Why `slug` may not leave the universe whatever its phase (a position or an open order:
        what `MAX_MARKETS` must never evict), "" when nothing of ours is in it."""
        orders = self._open_orders(slug)
        if orders:
            return f"{orders} open order(s)"
        qty = self.ledger.position(slug).net_qty
        return f"position {qty:+}" if qty != 0 else ""

    def retire_finished(self, now: datetime) -> list[str]:
        """Retire every market that is over, flat and without an open order; the slugs retired."""
        retired = []
        for listing in self.universe.listings():
            slug = listing.slug
            if not is_over(listing, now, self.books.state(slug)) \
                    or self.kept_reason(slug, now) != "":
                continue
            why = ("settled at " + str(listing.settlement) if listing.settlement is not None
                   else listing.phase(now).value if listing.phase(now) in OVER_PHASES
                   else f"book {self.books.state(slug)}")
            if slug in self.configured or listing.origin is Origin.CONFIGURED:
                self.retired_configured.add(slug)
            self._retired_at[slug] = now
            self.universe.retire(slug, why)
            retired.append(slug)
        self._prune_retired(now)
        return retired

    def was_retired(self, slug: str) -> bool:
        """Retired in the last `RETIRED_MEMORY` (or a configured market retired in this run): a
        listing that still shows it must not add it back (discovery asks before `put`)."""
        return slug in self._retired_at or slug in self.retired_configured

    def _prune_retired(self, now: datetime) -> None:
        if not self._retired_at:
            return
        oldest = next(iter(self._retired_at.values()))  # insertion order is retirement order
        if now - oldest < RETIRED_MEMORY:
            return
        self._retired_at = {s: t for s, t in self._retired_at.items() if now - t < RETIRED_MEMORY}

    def _open_orders(self, slug: str) -> int:
        ours = len(self.registry.open_orders(slug))
        return max(len(self.exposure.market_orders(slug)), ours)

    # --- learning that markets ended (I/O: the reference child calls it) -------------------------

    def due_refresh(self, now: datetime, mono: float, skip: Collection[str] = ()) -> list[str]:
        """Started markets, not resolved, whose metadata nobody else refreshes, due a re-read."""
        out = []
        for listing in self.universe.listings():
            slug = listing.slug
            if slug in skip or listing.phase(now) is Phase.RESOLVED:
                continue
            start = listing.start_time
            if start is None or now < start:
                continue
            if mono - self._refreshed.get(slug, -1e18) >= REFRESH_SECONDS:
                out.append(slug)
        return out

    def due_settlement(self, now: datetime, mono: float) -> list[str]:
        """Markets that are over with no recorded settlement, due a settlement read."""
        out = []
        for listing in self.universe.listings():
            slug = listing.slug
            if listing.settlement is not None or not is_over(listing, now,
                                                               self.books.state(slug)):
                continue
            if mono - self._asked.get(slug, -1e18) >= SETTLEMENT_POLL_SECONDS:
                out.append(slug)
        return out

    async def refresh(self, rest: Rest, now: Callable[[], datetime], mono: Callable[[], float],
                      *, skip: Collection[str] = ()) -> None:
        """One pass: targeted metadata re-reads, then settlement reads. A read that fails is
        asked again on its own schedule and the others go on; the first error is raised at the
        end (for the caller to report)."""
        failed: Exception | None = None
        for slug in self.due_refresh(now(), mono(), skip):
            if slug not in self.universe:
                continue  # retired while an earlier read was awaited: nothing to keep for it
            self._refreshed[slug] = mono()
            try:
                info = await rest.market_by_slug(slug)
            except FatalError:
                raise
            except Exception as exc:  # this market is asked again in a minute; the rest go on
                failed = failed or exc
                continue
            self.note_status(slug, info.status)
        for slug in self.due_settlement(now(), mono()):
            if slug not in self.universe:
                continue
            self._asked[slug] = mono()
            try:
                value = await rest.settlement(slug)
            except FatalError:
                raise
            except Exception as exc:
                failed = failed or exc
                continue
            if value is not None:
                self.note_settlement(slug, value)
        if failed is not None:
            raise failed

    def note_status(self, slug: str, status: MarketStatus) -> None:
        """A re-read market status (the event linkage and start time stay as established)."""
        listing = self.universe.get(slug)
        if listing is not None and listing.info.status is not status:
            self.universe.update(slug, info=attrs.evolve(listing.info, status=status))

    def note_settlement(self, slug: str, value: Decimal) -> None:
        """The published settlement: into the universe, and the venue settles a position."""
        listing = self.universe.update(slug, settlement=value)
        if listing is None:
            return
        log.info("market %s resolved: settlement %s", slug, value)
        if self.ledger.position(slug).net_qty != 0:
            self.venue.on_market_state(slug, MarketState.EXPIRED)

    def _forget(self, slug: str) -> None:
        self._refreshed.pop(slug, None)
        self._asked.pop(slug, None)

    def keys(self) -> set[str]:
        """The markets this object holds anything for (the per-market keys check)."""
        return set(self._refreshed) | set(self._asked)
