"""Reference data: the configured markets' metadata into the universe, and their OpticOdds fixtures.

Market metadata (tick, minimum quantity, fee coefficient, status) comes from the exchange's
market object; the market's event and the game's start time from its Event object (the market
object of the real API carries neither an event id nor the game's start). A market whose event
or start time cannot be established is kept in the universe with the reason, and is not opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs
import trio

from polybot.universe import Universe

log = logging.getLogger("polybot.reference")


class Progress(Protocol):
    """What matching reports to its supervisor (`polybot.supervisor.Progress`)."""

    def beat(self) -> None: ...

    def reconnecting(self, attempt: int, error: BaseException | str | None = None) -> None: ...


async def load_markets(rest: Any, universe: Universe, slugs: Iterable[str],
                       still_wanted: Callable[[str], bool] = lambda _slug: True) -> None:
    """(Re)load every configured market's metadata into the universe.

    `still_wanted(slug)` is asked right before each market is put: one retired while the reads
    were in flight is not added back.

    Each market's event and game start come from the Event listing it (the real Market object has
    no eventId, and its startDate is the listing time). Once established they are kept across
    refreshes; a refresh updates the rest (status, tick, minimum quantity, fee coefficient).
    """
    from polybot.polymarket import wire

    infos = {slug: await rest.market_by_slug(slug) for slug in slugs}
    settled: dict[str, Any] = {}
    for slug in infos:
        known = universe.get(slug)
        if known is not None and known.event_id and known.start_time is not None:
            settled[slug] = known
    missing = [info.market_id for slug, info in infos.items() if slug not in settled]
    events = await rest.events_of_markets(missing) if missing else {}
    for slug, info in infos.items():
        reason = ""
        if slug in settled:
            old = settled[slug].info
            event = settled[slug].event
            info = attrs.evolve(info, event_id=old.event_id, event_slug=old.event_slug,
                                start_time=old.start_time)
        else:
            event = events.get(info.market_id)
            if event is None:
                reason = f"no exchange Event lists market {slug} (id {info.market_id})"
                info = attrs.evolve(info, event_id="", event_slug="")
            else:
                info = wire.with_event(info, event)
                if info.start_time is None:
                    reason = f"the Event of {slug} has no start time"
        known = universe.get(slug)
        if known is None and not still_wanted(slug):
            continue
        if reason and (known is None or known.unknown_reason != reason):
            log.warning("%s will not be opened: %s", slug, reason)
        universe.put(info, unknown_reason=reason, event=event)
    log.info("market metadata loaded for %d market(s)", len(universe))


def is_transient(exc: BaseException) -> bool:
    """A lookup error that may well not recur: 5xx, 429, timeout, connection trouble."""
    from polybot.opticodds import client as oc
    from polybot.polymarket import errors as pm

    return isinstance(exc, (oc.ServerError, oc.RateLimitedError, oc.OpticOddsTransportError,
                            pm.ServerError, pm.RateLimited, pm.TransportError, pm.Timeout))


def _noting_transient(fn: Callable[..., Any], seen: list[str]) -> Callable[..., Any]:
    async def lookup(*args: Any) -> Any:
        try:
            return await fn(*args)
        except Exception as exc:
            if is_transient(exc):
                seen.append(f"{type(exc).__name__}: {exc}")
            raise

    return lookup


async def match_all(rest: Any, client: Any, universe: Universe, slugs: list[str],
                    overrides: Iterable[tuple[str, str, str]],
                    progress: Progress) -> Any:
    """Every market matched to its OpticOdds fixture, or reported unmatched for good.

    `match_markets` reports a market whose lookup raised as "not matched" and goes on; for a 5xx,
    a 429, a timeout or a refused connection that would leave the market untraded for the life of
    the process while /ready says 200. Such markets are matched again (backoff capped at 30 s,
    reported as reconnecting, so /health says degraded and why) until the lookups answer.
    Markets are matched one by one to know which lookup failed.
    """
    from polybot.matching import MatchResult, lookups, match_markets

    look = lookups(rest, client)
    listed = look["market_lookup"]

    async def market_lookup(slug: str) -> Any:
        # the market and its Event as `load_markets` established them: one events listing for
        # all markets, not one per market (which made start-up quadratic in the markets)
        listing = universe.get(slug)
        if listing is None or listing.event is None:
            return await listed(slug)
        return listing.info, listing.event

    look["market_lookup"] = market_lookup
    targets: list[Any] = []
    unmatched: list[Any] = []
    pending = list(slugs)
    attempt = 0
    while True:
        retry: list[tuple[str, str]] = []
        for slug in pending:
            transient: list[str] = []
            noting: dict[str, Any] = {
                name: _noting_transient(fn, transient) for name, fn in look.items()}
            one = await match_markets([slug], overrides=overrides, **noting)
            progress.beat()
            targets += one.targets
            if transient and one.unmatched:
                retry.append((slug, transient[0]))
            else:
                unmatched += one.unmatched
        if not retry:
            return MatchResult(tuple(targets), tuple(unmatched))
        attempt += 1
        pending = [slug for slug, _ in retry]
        progress.reconnecting(attempt, f"matching {len(pending)} market(s) to OpticOdds: "
                                       f"{retry[0][1]}")
        await trio.sleep(min(30.0, 2.0 ** min(attempt, 5)))
