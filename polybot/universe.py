"""The universe: the one owner of the set of markets the bot knows.

Each market has its `MarketInfo` (tick, minimum quantity, fee coefficient, status), the event it
belongs to and the game's start time (both established from an Event object, never by parsing a
slug: the per-event cap and the pre-game blackout depend on them), why either is unknown, its
OpticOdds fixture target (and whether that match is confirmed), where it came from (configured,
discovered, or held by the account) and its phase:

    listed → pre-game → in play → closed → resolved → retired

Markets come and go at run time (discovery adds them, retirement removes them). Components that
hold something per market (the streams' subscriptions, the odds feed's targets, fair values, books,
exposure's event keys, metric labels) follow the universe through listeners instead of copying a
list at construction: `add_listener(fn(listing))` hears every add or change, and
`add_retire_listener(fn(slug))` hears every retirement, after which the market's entries must be
dropped (nothing may grow per retired market over weeks).

A market is retired only when the caller has established it is closed or resolved AND holds no
position AND no open order (`polybot.lifecycle`'s retirement pass); `retire` itself refuses nothing,
so the check lives in one place.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from polybot.model import EventInfo, MarketInfo, MarketStatus, MarketTarget

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    LISTED = "listed"  # known, not (yet) tradeable: no confirmed fixture, no start time, pre-open
    PRE_GAME = "pre-game"  # open, the game has not started
    IN_PLAY = "in play"  # open, the game has started
    CLOSED = "closed"  # no longer accepting orders, not settled (CLOSED, RESOLVING, halted at end)
    RESOLVED = "resolved"  # the settlement is published
    RETIRED = "retired"  # gone from the universe (only ever reported, never held)


class Origin(enum.Enum):
    CONFIGURED = "configured"  # MARKET_SLUGS
    DISCOVERED = "discovered"  # a league listing (MARKET_LEAGUES)
    HELD = "held"  # the account holds it (a position or an order) outside the listings


@attrs.frozen(slots=True)
class Listing:
    """One market of the universe. `info.event_id` and `info.start_time` are as established from
    the market's Event (empty / None: unknown, and the market is not opened)."""

    info: MarketInfo
    unknown_reason: str = ""  # why the event or start time is unknown (for /status)
    event: EventInfo | None = None  # the Event object that lists the market (teams, provider ids)
    origin: Origin = Origin.CONFIGURED
    target: MarketTarget | None = None  # its OpticOdds fixture, once matched
    target_confirmed: bool = False  # confirmed by the partner endpoint or unambiguous provider ids
    unmatched_reason: str = ""  # why no (confirmed) fixture target yet, for /status
    settlement: object | None = None  # the published settlement value (Decimal) once resolved
    no_data: bool = False  # its subscription never delivered a snapshot (not opened; alerted)
    league: str = ""  # Polymarket US league slug ("nba"), when discovered by league

    @property
    def slug(self) -> str:
        return self.info.slug

    @property
    def event_id(self) -> str | None:
        return self.info.event_id or None

    @property
    def start_time(self) -> datetime | None:
        return self.info.start_time

    def phase(self, now: datetime) -> Phase:
        status = self.info.status
        if self.settlement is not None or status is MarketStatus.RESOLVED:
            return Phase.RESOLVED
        if status in (MarketStatus.CLOSED, MarketStatus.RESOLVING):
            return Phase.CLOSED
        if (status is not MarketStatus.OPEN and status is not MarketStatus.HALTED) \
                or self.start_time is None or self.event_id is None:
            return Phase.LISTED
        return Phase.IN_PLAY if now >= self.start_time else Phase.PRE_GAME

    def why_not_traded(self) -> str:
        """Why this market is not opened, from the universe's facts alone ("" if nothing here)."""
        if self.no_data:
            return "no_data: its subscription never delivered a snapshot"
        if self.event_id is None or self.start_time is None:
            return self.unknown_reason or "event or start time unknown"
        if self.target is None:
            return self.unmatched_reason or "not matched to an OpticOdds fixture"
        if not self.target_confirmed:
            return self.unmatched_reason or "fixture match not confirmed yet"
        if self.info.status is MarketStatus.HALTED:
            return "market halted"
        return ""


Listener = Callable[[Listing], None]
RetireListener = Callable[[str], None]


class Universe:
    def __init__(self) -> None:
        self._markets: dict[str, Listing] = {}
        self._listeners: list[Listener] = []
        self._retire_listeners: list[RetireListener] = []
        self.added = 0  # markets ever added (metrics)
        self.retired = 0  # markets ever retired

    def add_listener(self, listener: Listener) -> None:
        """`listener(listing)` hears every added or changed market."""
        self._listeners.append(listener)

    def add_retire_listener(self, listener: RetireListener) -> None:
        """`listener(slug)` hears every retired market: drop everything held for it."""
        self._retire_listeners.append(listener)

    def put(self, info: MarketInfo, *, unknown_reason: str = "",
            event: EventInfo | None = None, origin: Origin | None = None,
            league: str | None = None) -> Listing:
        """Add a market or replace its exchange facts (info, event). The fixture target, origin,
        settlement and league of a known market are kept unless given."""
        old = self._markets.get(info.slug)
        if old is None:
            listing = Listing(info=info, unknown_reason=unknown_reason, event=event,
                              origin=origin or Origin.CONFIGURED, league=league or "")
            self.added += 1
            log.info("market added: %s (%s%s, starts %s)", info.slug,
                     listing.origin.value, f", {listing.league}" if listing.league else "",
                     info.start_time.isoformat() if info.start_time else "unknown")
        else:
            listing = attrs.evolve(old, info=info, unknown_reason=unknown_reason, event=event,
                                   origin=origin or old.origin,
                                   league=old.league if league is None else league)
        return self._set(listing)

    def update(self, slug: str, **changes: Any) -> Listing | None:
        """Change some of a known market's facts (`target`, `target_confirmed`, `unmatched_reason`,
        `settlement`, `no_data`, `info`...); None if the market is not in the universe."""
        old = self._markets.get(slug)
        if old is None:
            return None
        new = attrs.evolve(old, **changes)
        if new == old:
            return old
        return self._set(new)

    def retire(self, slug: str, why: str) -> bool:
        """Remove a market (the caller checked: closed or resolved, no position, no open order)."""
        listing = self._markets.pop(slug, None)
        if listing is None:
            return False
        self.retired += 1
        log.info("market retired: %s (%s)", slug, why)
        for listener in self._retire_listeners:
            listener(slug)
        return True

    def _set(self, listing: Listing) -> Listing:
        self._markets[listing.slug] = listing
        for listener in self._listeners:
            listener(listing)
        return listing

    def get(self, slug: str) -> Listing | None:
        return self._markets.get(slug)

    def info(self, slug: str) -> MarketInfo | None:
        listing = self._markets.get(slug)
        return listing.info if listing is not None else None

    def listings(self) -> list[Listing]:
        return list(self._markets.values())

    def __contains__(self, slug: object) -> bool:
        return slug in self._markets

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._markets))

    def __len__(self) -> int:
        return len(self._markets)

    @property
    def info_map(self) -> Mapping[str, MarketInfo]:
        """A read-only view of every market's info that follows the universe."""
        return _InfoView(self._markets)

    def unknown(self) -> dict[str, str]:
        """Markets that will not be opened, with the reason (event or start time unknown)."""
        return {slug: listing.unknown_reason or "event or start time unknown"
                for slug, listing in self._markets.items()
                if listing.event_id is None or listing.start_time is None}

    def by_phase(self, now: datetime) -> dict[Phase, int]:
        counts: dict[Phase, int] = {p: 0 for p in Phase if p is not Phase.RETIRED}
        for listing in self._markets.values():
            counts[listing.phase(now)] += 1
        return counts


class _InfoView(Mapping[str, MarketInfo]):
    def __init__(self, markets: dict[str, Listing]) -> None:
        self._markets = markets

    def __getitem__(self, slug: str) -> MarketInfo:
        return self._markets[slug].info

    def __iter__(self) -> Iterator[str]:
        return iter(self._markets)

    def __len__(self) -> int:
        return len(self._markets)
