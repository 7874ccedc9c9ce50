"""FairValues: the current fair YES probability of every configured market, and whether to trust it.

Placement: DESIGN.md lists FairValues under `strategy.py`; it lives in its own module so the core
(strategy, risk) and the odds adapter (`polybot.opticodds.feed`, its single writer) can both import
it without the core importing an adapter or the adapter importing the signal engine.

Single writer: the odds feed task. Readers (signal engine, health) only call the read methods.
No I/O and no clock of its own: times are passed in (Trio clock seconds), so it is unit-testable.

What "usable" means: a fair value exists AND the odds stream behind it is trusted. The stream is
untrusted while it is down or being rebuilt from a REST snapshot after a (re)connect; during that
time `usable()` returns None even though the last value is kept (for display and for explaining
trades). A quiet sportsbook line is not stale: `age()` is the time since the consensus was last
computed, but staleness of the *feed* is decided by the feed's liveness, reflected in `trusted`.

Listeners (`add_listener`) are called synchronously with the market slug after every change, so
the signal engine can wake on fair-value changes; a listener must be quick and must not raise
(an exception is logged and swallowed so it cannot kill the writer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

import attrs

from polybot.model import FairValue

log = logging.getLogger(__name__)

Phase = Literal["upcoming", "live", "finished", "unknown"]

_PHASES: dict[str, Phase] = {
    "unplayed": "upcoming",
    "delayed": "upcoming",
    "live": "live",
    "half": "live",
    "suspended": "live",
    "completed": "finished",
    "cancelled": "finished",
    "forfeited": "finished",
    "invalid": "finished",
}


@attrs.frozen(slots=True)
class FixtureInfo:
    """An OpticOdds fixture's schedule and status as last seen (REST snapshot or stream)."""

    fixture_id: str
    start_time: datetime | None = None
    status: str = ""

    @property
    def phase(self) -> Phase:
        return _PHASES.get(self.status, "unknown")


class FairValues:
    def __init__(self) -> None:
        self._fixture_of: dict[str, str] = {}  # slug -> fixture id
        self._values: dict[str, FairValue] = {}
        self._fixtures: dict[str, FixtureInfo] = {}  # fixture id -> info
        self._trusted: dict[str, bool] = {}
        self._why_not: dict[str, str] = {}  # slug -> why there is no usable value
        self._trusted_since: dict[str, float] = {}
        self._listeners: list[Callable[[str], None]] = []

    # --- writer (the odds feed) -------------------------------------------------------------------

    def track(self, slug: str, fixture_id: str) -> None:
        """Declare a matched market; it starts untrusted with no value."""
        self._fixture_of[slug] = fixture_id
        self._trusted.setdefault(slug, False)
        self._why_not.setdefault(slug, "waiting for the odds feed")

    def set(self, fv: FairValue) -> None:
        """A new fair value. One for a market not tracked (never matched, or retired while the
        feed still priced it) is dropped: its market is gone, nothing may be kept for it."""
        if fv.market_slug not in self._fixture_of:
            log.debug("fair value for untracked market %s dropped", fv.market_slug)
            return
        if not 0 < fv.q < 1:
            raise ValueError(f"fair value must lie in (0, 1), got {fv.q} for {fv.market_slug}")
        self._values[fv.market_slug] = fv
        self._why_not.pop(fv.market_slug, None)
        self._notify(fv.market_slug)

    def clear(self, slug: str, reason: str) -> None:
        """No fair value now (too few books quoting, game over...); `reason` is kept for display.
        Nothing is kept for a market not tracked."""
        if slug not in self._fixture_of:
            return
        had = self._values.pop(slug, None) is not None
        changed = self._why_not.get(slug) != reason
        self._why_not[slug] = reason
        if had or changed:
            self._notify(slug)

    def set_fixture(self, info: FixtureInfo) -> None:
        if self._fixtures.get(info.fixture_id) == info:
            return
        self._fixtures[info.fixture_id] = info
        for slug, fid in self._fixture_of.items():
            if fid == info.fixture_id:
                self._notify(slug)

    def set_trusted(self, slugs: Iterable[str], trusted: bool, now: float) -> None:
        for slug in slugs:
            if slug not in self._fixture_of or self._trusted.get(slug) == trusted:
                continue
            self._trusted[slug] = trusted
            self._trusted_since[slug] = now
            self._notify(slug)

    def forget(self, slug: str) -> None:
        """The market left the universe: drop its entries (and its fixture's, once unused)."""
        fid = self._fixture_of.pop(slug, None)
        self._values.pop(slug, None)
        self._trusted.pop(slug, None)
        self._why_not.pop(slug, None)
        self._trusted_since.pop(slug, None)
        if fid is not None and fid not in self._fixture_of.values():
            self._fixtures.pop(fid, None)

    def market_keys(self) -> frozenset[str]:
        return frozenset(self._fixture_of).union(self._values, self._trusted, self._why_not,
                                                 self._trusted_since)

    # --- readers ----------------------------------------------------------------------------------

    def get(self, slug: str) -> FairValue | None:
        """The last fair value, trusted or not (for display and explanations)."""
        return self._values.get(slug)

    def usable(self, slug: str) -> FairValue | None:
        """The fair value a signal may use: None when absent or the odds stream is untrusted."""
        if not self._trusted.get(slug, False):
            return None
        return self._values.get(slug)

    def is_trusted(self, slug: str) -> bool:
        return self._trusted.get(slug, False)

    def age(self, slug: str, now: float) -> float | None:
        fv = self._values.get(slug)
        return None if fv is None else max(0.0, now - fv.computed_at)

    def fixture(self, slug: str) -> FixtureInfo | None:
        fid = self._fixture_of.get(slug)
        return None if fid is None else self._fixtures.get(fid)

    def fixture_id(self, slug: str) -> str | None:
        return self._fixture_of.get(slug)

    def why_not(self, slug: str) -> str | None:
        """Why `usable(slug)` is None (or None when it is usable)."""
        if slug not in self._fixture_of:
            return "market not matched to an OpticOdds fixture"
        if slug in self._why_not:
            return self._why_not[slug]
        if not self._trusted.get(slug, False):
            return "odds stream not trusted (down or rebuilding)"
        return None

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(self._fixture_of)

    def add_listener(self, fn: Callable[[str], None]) -> None:
        self._listeners.append(fn)

    def snapshot(self, now: float) -> dict[str, dict[str, Any]]:
        """JSON-friendly summary per market (for /status)."""
        out: dict[str, dict[str, Any]] = {}
        for slug, fid in self._fixture_of.items():
            fv = self._values.get(slug)
            fx = self._fixtures.get(fid)
            out[slug] = {
                "fixture_id": fid,
                "q": str(fv.q) if fv else None,
                "method": fv.method if fv else None,
                "books": [q.book for q in fv.quotes] if fv else [],
                "age_seconds": self.age(slug, now),
                "trusted": self._trusted.get(slug, False),
                "why_not": self.why_not(slug),
                "status": fx.status if fx else None,
                "start_time": fx.start_time.isoformat() if fx and fx.start_time else None,
            }
        return out

    def _notify(self, slug: str) -> None:
        for fn in self._listeners:
            try:
                fn(slug)
            except Exception:
                log.exception("fair-value listener failed for %s", slug)
