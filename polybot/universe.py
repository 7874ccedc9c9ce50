"""The universe: the one owner of the set of markets the bot knows.

Each market has its `MarketInfo` (tick, minimum quantity, fee coefficient, status), the event it
belongs to and the game's start time (both established from an Event object, never by parsing a
slug: the per-event cap and the pre-game blackout depend on them), and why either is unknown.
Components that follow the set of markets (exposure's event keys, the streams, the odds feed,
health) subscribe through `add_listener` instead of copying `MARKET_SLUGS`.

Today the universe is fed by `MARKET_SLUGS` at start, plus markets the account already holds;
market discovery will add and retire markets at run time through the same calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

import attrs

from polybot.model import EventInfo, MarketInfo

log = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class Listing:
    """One market of the universe. `info.event_id` and `info.start_time` are as established from
    the market's Event (empty / None: unknown, and the market is not opened)."""

    info: MarketInfo
    unknown_reason: str = ""  # why the event or start time is unknown (for /status)
    event: EventInfo | None = None  # the Event object that lists the market (teams, provider ids)

    @property
    def event_id(self) -> str | None:
        return self.info.event_id or None

    @property
    def start_time(self) -> datetime | None:
        return self.info.start_time


Listener = Callable[[Listing], None]


class Universe:
    def __init__(self) -> None:
        self._markets: dict[str, Listing] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """`listener(listing)` hears every added or changed market."""
        self._listeners.append(listener)

    def put(self, info: MarketInfo, *, unknown_reason: str = "",
            event: EventInfo | None = None) -> Listing:
        """Add a market or replace what is known of it."""
        listing = Listing(info=info, unknown_reason=unknown_reason, event=event)
        self._markets[info.slug] = listing
        for listener in self._listeners:
            listener(listing)
        return listing

    def get(self, slug: str) -> Listing | None:
        return self._markets.get(slug)

    def info(self, slug: str) -> MarketInfo | None:
        listing = self._markets.get(slug)
        return listing.info if listing is not None else None

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


class _InfoView(Mapping[str, MarketInfo]):
    def __init__(self, markets: dict[str, Listing]) -> None:
        self._markets = markets

    def __getitem__(self, slug: str) -> MarketInfo:
        return self._markets[slug].info

    def __iter__(self) -> Iterator[str]:
        return iter(self._markets)

    def __len__(self) -> int:
        return len(self._markets)
