"""Discovery: the games of the configured leagues into the universe, matched to their fixtures.

Every `DISCOVERY_INTERVAL_SECONDS`, per league (reference §1.12):

1. `GET /v2/leagues/{slug}` → `activeSeriesId` (it changes by season: read every pass), then
   `GET /v1/events?seriesId=…&startTimeMin=now-grace&startTimeMax=now+horizon&closed=false`
   paged by 100. Offset paging can repeat rows while the set changes, so rows are deduplicated
   by slug and a full page with no new row ends the listing as *incomplete* (not as the end).
   Without a series, or when that listing fails, `GET /v2/leagues/{slug}/events` filtered here.
2. Events with a `gameId` and two teams are games; their market is picked by `sportsMarketType`
   (the moneyline set of §1.9), never by parsing a slug. Soccer's three-way result is skipped
   with one log line per event for as long as the event is listed, not one per pass.
3. One `GET /fixtures/active?league=<OpticOdds league>` listing per league (paged) matches the
   games in bulk (`matching.match_bulk`): both teams' OpticOdds provider ids single a fixture out
   (the market may open), or the team names propose one, which the exchange's partner lookup
   (`/v1/partners/opticodds/events/{id}`) must confirm. A market neither could match (the two
   vendors spell a team differently) is found the other way round: the fixtures near its start
   that no market claims are looked up by the partner endpoint, which names their event. Those
   lookups run in a task of their own, only once the bot is ready, at most 5 per second.
4. New markets join the universe (`Origin.DISCOVERED`), nearest start first, up to `MAX_MARKETS`:
   configured and held markets always stay and count first; a discovered market with a position
   or an open order (`holds(slug)`) is never evicted; a later-starting discovered market without
   either makes room for a nearer one.

Discovery never retires a market because a listing failed or no longer shows it: a failed listing
keeps the universe as it is and is retried with backoff (retirement is the runtime's pass, on
closed/resolved markets with neither position nor order). Alerts: a league whose listing failed 3
passes in a row; a league that listed no event at all for 24 h; no complete pass (every league
listed) for 3 intervals. A league with no game inside the horizon (off-season) is not an alert:
`status()` says so, for `/status`.

Listings go through the REST client's listing budget (half the public per-IP budget), so public
reads the trading needs keep their share, and creates and cancels (the signed budget) never wait
behind discovery. The first pass is the exception: it runs before the bot can trade, so it takes
the whole public budget (`whole_public_budget`), and the leagues are listed side by side.

The bot is not ready (`/ready` 503) until the first pass has listed every league (or failed to):
its first 200 means the leagues' games are in, subscribed and priced, not an empty universe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs
import trio

from polybot.clock import Clock
from polybot.errors import FatalCredentialsError, fatal_unwrapped
from polybot.matching import BulkMatch, Unmatched, match_bulk, partner_target
from polybot.model import EventInfo, MarketInfo, MarketStatus, MarketTarget
from polybot.opticodds import client as oc
from polybot.opticodds.wire import Fixture
from polybot.polymarket import errors as pm
from polybot.polymarket import wire
from polybot.polymarket.ratelimit import Backoff, TokenBucket
from polybot.universe import Origin, Universe

log = logging.getLogger("polybot.discovery")

# The two-outcome full-game winners of reference §1.9, and the generic value of older markets.
MONEYLINE_TYPES = frozenset({
    "basketball_team_full_game_winner", "football_team_full_game_winner",
    "baseball_team_full_game_winner", "hockey_team_full_game_winner", "tennis_match_winner",
    "cricket_match_winner", "esports_match_winner", "ufc_fight_winner", "moneyline",
})
THREE_WAY_TYPES = frozenset({"soccer_team_full_time_winner", "drawable_outcome"})
TYPES_OF = {"moneyline": MONEYLINE_TYPES}  # MARKET_TYPES value -> sportsMarketType values
FINISHED = (MarketStatus.CLOSED, MarketStatus.RESOLVING, MarketStatus.RESOLVED)

PAGE_SIZE = 100
MAX_PAGES = 50  # 5,000 events of one league: far beyond a season's window; hitting it = incomplete
LISTING_GRACE = timedelta(hours=6)  # games that started up to this long ago are still listed
MATCH_TOLERANCE = timedelta(hours=6)  # exchange start vs OpticOdds start
FAILED_PASSES_ALERT = 3
SILENT_LEAGUE_ALERT_SECONDS = 24 * 3600.0
STALLED_INTERVALS_ALERT = 3
PARTNER_LOOKUPS_PER_SECOND = 5.0
RETRY_BASE_SECONDS = 5.0
TICK_SECONDS = 10.0  # the task's longest sleep: alerts are looked at this often

# level ("info" | "warning" | "error"), title, text, key
Alert = Callable[[str, str, str, str], object]


class Progress(Protocol):
    """What discovery reports to its supervisor (`polybot.supervisor.Progress`)."""

    def beat(self) -> None: ...

    def degraded(self, reason: str) -> None: ...

    def recovered(self) -> None: ...


# --- what a league's listing offers (pure) -----------------------------------------------------


@attrs.frozen
class Listed:
    """A game's market as a listing offers it: the market placed in its Event."""

    event: EventInfo
    market: MarketInfo  # event id/slug and the game's start from the Event (`wire.with_event`)


@attrs.frozen
class LeagueListing:
    league: str
    listed: tuple[Listed, ...]
    events_seen: int  # every event the listing returned (games or not, inside the horizon or not)
    complete: bool  # False: paging stopped early (a page with no new row, or the page cap)
    source: str  # "series" (/v1/events) or "league" (/v2/leagues/{slug}/events)
    three_way: tuple[EventInfo, ...] = ()  # games whose only winner market is soccer's three-way
    malformed: int = 0


def pick_market(markets: Sequence[MarketInfo], types: frozenset[str]) -> MarketInfo | None:
    """The event's market of the wanted `sportsMarketType`s with two sides (None if none)."""
    for market in markets:
        if market.sports_market_type.lower() in types and len(market.sides) == 2:
            return market
    return None


def select(events: Iterable[tuple[EventInfo, Sequence[MarketInfo]]], *, types: frozenset[str],
           start_min: datetime, start_max: datetime) -> tuple[list[Listed], list[EventInfo]]:
    """The games (a `gameId`, two teams, a start inside the window) and their wanted market;
    and the games skipped because their only winner market is a three-way one."""
    listed: list[Listed] = []
    three_way: list[EventInfo] = []
    seen: set[str] = set()
    for event, markets in events:
        if not event.game_id or len(event.teams) != 2:
            continue  # futures and placeholder events
        if event.start_time is None or not start_min <= event.start_time <= start_max:
            continue
        market = pick_market(markets, types)
        if market is None:
            if any(m.sports_market_type.lower() in THREE_WAY_TYPES for m in markets):
                three_way.append(event)
            continue
        if market.slug in seen or market.status in FINISHED:
            continue
        seen.add(market.slug)
        listed.append(Listed(event=event, market=wire.with_event(market, event)))
    return listed, three_way


async def list_league(rest: Any, league: str, *, now: datetime, horizon: timedelta,
                      types: frozenset[str] = MONEYLINE_TYPES,
                      grace: timedelta = LISTING_GRACE) -> LeagueListing:
    """One league's games starting in [now - grace, now + horizon], through the documented calls.

    Raises the listing's error when neither the series listing nor the fallback answered.
    """
    start_min, start_max = now - grace, now + horizon
    series_error: Exception | None = None
    try:
        try:
            info = await rest.league(league)
        except pm.NotFound:
            raise pm.NotFound(f"the exchange knows no league {league!r} (GET /v2/leagues lists "
                              "them; college leagues are cbb and cfb)", status=404) from None
        if info.active_series_id:
            rows, complete, malformed = await _paged(
                lambda offset: rest.events_page(series_ids=[info.active_series_id],
                                                start_min=start_min, start_max=start_max,
                                                closed=False, limit=PAGE_SIZE, offset=offset),
                f"{league} series {info.active_series_id}")
            return _listing(league, rows, complete, malformed, "series", types, start_min,
                            start_max)
        log.info("league %s has no active series: listing /v2/leagues/%s/events", league, league)
    except (pm.AuthError, FatalCredentialsError):
        raise
    except pm.PolymarketError as exc:
        series_error = exc
        log.warning("league %s: the series listing failed (%s); trying /v2/leagues/%s/events",
                    league, exc, league)
    try:
        rows, complete, malformed = await _paged(
            lambda offset: rest.league_events_page(league, limit=PAGE_SIZE, offset=offset),
            f"{league} league events")
    except pm.PolymarketError:
        if series_error is not None:
            raise series_error from None
        raise
    return _listing(league, rows, complete, malformed, "league", types, start_min, start_max)


def _listing(league: str, rows: list[tuple[EventInfo, tuple[MarketInfo, ...]]], complete: bool,
             malformed: int, source: str, types: frozenset[str], start_min: datetime,
             start_max: datetime) -> LeagueListing:
    listed, three_way = select(rows, types=types, start_min=start_min, start_max=start_max)
    return LeagueListing(league=league, listed=tuple(listed), events_seen=len(rows),
                         complete=complete, source=source, three_way=tuple(three_way),
                         malformed=malformed)


async def _paged(fetch: Callable[[int], Any], what: str,
                 ) -> tuple[list[tuple[EventInfo, tuple[MarketInfo, ...]]], bool, int]:
    """Every row of an offset-paged events listing, deduplicated by slug; and whether complete."""
    rows: dict[str, tuple[EventInfo, tuple[MarketInfo, ...]]] = {}
    malformed = 0
    for page in range(MAX_PAGES):
        answer = await fetch(page * PAGE_SIZE)
        malformed += answer.malformed
        new = 0
        for event, markets in answer.events:
            key = event.slug or event.event_id
            if key not in rows:
                rows[key] = (event, markets)
                new += 1
        if answer.rows < PAGE_SIZE:
            return list(rows.values()), True, malformed
        if new == 0:
            log.warning("%s: page at offset %d repeated every row: the listing is incomplete",
                        what, page * PAGE_SIZE)
            return list(rows.values()), False, malformed
    log.warning("%s: stopped at %d pages: the listing is incomplete", what, MAX_PAGES)
    return list(rows.values()), False, malformed


# --- the running task --------------------------------------------------------------------------


@attrs.define
class LeagueState:
    """What /status shows of one league, and what its alerts are decided on."""

    league: str
    odds_league: str
    last_pass: datetime | None = None  # last successful listing (wall clock)
    events_seen: int = 0  # in the last successful listing
    markets_listed: int = 0  # games with a wanted market inside the horizon, last listing
    markets_added: int = 0  # markets this league added to the universe, ever
    errors: int = 0  # failed listings, ever
    malformed: int = 0  # malformed events skipped (logged by the client), ever
    failed_in_a_row: int = 0
    last_error: str = ""
    complete: bool = True
    source: str = ""
    fixtures_error: str = ""
    next_due: float = 0.0  # trio time of its next listing
    last_event_at: float = 0.0  # trio time it last listed any event
    alerted_failing: bool = False
    alerted_silent: bool = False
    three_way_logged: set[str] = attrs.Factory(set)  # events whose skip was logged (pruned)
    probed: set[str] = attrs.Factory(set)  # fixtures looked up by partner (pruned to the listing)

    def view(self) -> dict[str, Any]:
        note = ""
        if self.last_pass is not None and self.markets_listed == 0:
            note = "no game within the horizon"
        return {"odds_league": self.odds_league,
                "last_pass": self.last_pass.isoformat() if self.last_pass else None,
                "events_seen": self.events_seen, "markets_listed": self.markets_listed,
                "markets_added": self.markets_added, "errors": self.errors,
                "malformed_events": self.malformed,
                "failed_in_a_row": self.failed_in_a_row, "last_error": self.last_error,
                "complete": self.complete, "source": self.source,
                "fixtures_error": self.fixtures_error, "note": note}


@attrs.frozen
class _Pending:
    """A match by team names that the partner lookup must confirm."""

    fixture: Fixture
    target: MarketTarget


FINISHED_STATUSES = (MarketStatus.CLOSED, MarketStatus.RESOLVING, MarketStatus.RESOLVED)


class Discovery:
    """The discovery task's state and passes. `run(progress)` is the supervised child's body.

    `rest`: the Polymarket US REST client (`league`, `events_page`, `league_events_page`,
    `partner_event`); `odds`: the OpticOdds client or None (no key: nothing can be matched);
    `holds(slug)`: whether the account holds a position or an open order in the market;
    `ready()`: whether the bot is ready (partner confirmations wait for it); `alert(level,
    title, text, key)`: the notifier.
    """

    def __init__(self, rest: Any, odds: Any, universe: Universe, *, leagues: Sequence[str],
                 odds_league: Callable[[str], str], clock: Clock, horizon: timedelta,
                 interval: float, max_markets: int, holds: Callable[[str], bool],
                 ready: Callable[[], bool], alert: Alert,
                 retired: Callable[[str], bool] = lambda slug: False,
                 types: Sequence[str] = ("moneyline",),
                 partner_rate: float = PARTNER_LOOKUPS_PER_SECOND) -> None:
        self.rest = rest
        self.odds = odds
        self.universe = universe
        self.clock = clock
        self.horizon = horizon
        self.interval = interval
        self.max_markets = max_markets
        self.holds = holds
        self.retired = retired
        self.ready = ready
        self.alert = alert
        self.types = frozenset().union(*(TYPES_OF[t] for t in types))
        self.leagues = {slug: LeagueState(slug, odds_league(slug)) for slug in leagues}
        self.pending: dict[str, _Pending] = {}
        self.probes: dict[str, Fixture] = {}  # fixture id -> fixture, to look up by partner
        # slug -> (fixture id, why) of name matches the partner lookup refused (pruned to the
        # universe): the same match is not put to it again every pass
        self._refused: dict[str, tuple[str, str]] = {}
        self._pending_added = trio.Event()
        self._partner_bucket = TokenBucket.under_limit(partner_rate)
        self._backoff = {slug: Backoff(RETRY_BASE_SECONDS, interval) for slug in leagues}
        self.started_at: float | None = None
        self.last_complete_pass: float | None = None  # trio time every league last listed fine
        self.passes = 0  # complete passes
        self.partner_lookups = 0
        self.not_admitted = 0  # markets left out by MAX_MARKETS in the last pass
        self._alerted_stalled = False
        # every league listed (or its listing failed) at least once: the bot's readiness waits
        # for it, so a first 200 from /ready means the configured leagues' games are in
        self.listed_once = False

    # --- the task ----------------------------------------------------------------------------

    async def run(self, progress: Progress, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        now = trio.current_time()
        self.started_at = now
        if self.last_complete_pass is None:
            self.last_complete_pass = now
        for state in self.leagues.values():
            state.next_due = min(state.next_due, now) if state.next_due else now
            state.last_event_at = state.last_event_at or now
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._confirmations, progress)
            task_status.started()
            while True:
                await self.run_due(progress)
                self.check_alerts()
                progress.beat()
                # until the next league is due, looking at the alerts every 10 s meanwhile
                due = min(st.next_due for st in self.leagues.values()) if self.leagues else 1e18
                await trio.sleep(max(0.0, min(TICK_SECONDS, due - trio.current_time())))

    async def run_due(self, progress: Progress) -> None:
        """List every league whose time has come (a new pass, or the retry of a failed one)."""
        now = trio.current_time()
        due = [s for s in self.leagues.values() if s.next_due <= now]

        async def one(league: str) -> None:
            await self.pass_league(league)
            progress.beat()

        # the leagues side by side: one league's fixtures listing and matching overlap the next
        # league's exchange listing (the REST client's buckets pace the exchange calls). The
        # first pass, before the bot can trade, may take the whole public budget: no public
        # read of the trading's is there to leave room for.
        with self._budget(first=not self.listed_once), fatal_unwrapped(pm.AuthError, FatalCredentialsError, oc.AuthError):
            async with trio.open_nursery() as nursery:
                for state in due:
                    nursery.start_soon(one, state.league)
        if not self.listed_once:
            self.listed_once = all(s.last_pass is not None or s.errors
                                   for s in self.leagues.values())
        if due and all(s.failed_in_a_row == 0 for s in self.leagues.values()):
            self.last_complete_pass = trio.current_time()
            self.passes += 1
            if self._alerted_stalled:
                self._alerted_stalled = False
                self.alert("info", "Discovery passes complete again", "", "discovery-stalled")
        failing = [s.league for s in self.leagues.values() if s.failed_in_a_row]
        if failing:
            progress.degraded("discovery: listing failed for " + ", ".join(failing))
        elif due:
            progress.recovered()

    def _budget(self, *, first: bool) -> AbstractContextManager[object]:
        whole = getattr(self.rest, "whole_public_budget", None)
        return whole() if first and whole is not None else nullcontext()

    def check_alerts(self) -> None:
        now = trio.current_time()
        started = self.started_at if self.started_at is not None else now
        last = self.last_complete_pass if self.last_complete_pass is not None else started
        if not self._alerted_stalled and now - last >= STALLED_INTERVALS_ALERT * self.interval:
            self._alerted_stalled = True
            self.alert("error", "No discovery pass completed",
                       f"no pass listed every league for {now - last:.0f} s "
                       f"({STALLED_INTERVALS_ALERT} intervals); the universe is not refreshed",
                       "discovery-stalled")
        for s in self.leagues.values():
            if not s.alerted_silent and now - s.last_event_at >= SILENT_LEAGUE_ALERT_SECONDS:
                s.alerted_silent = True
                self.alert("warning", f"League {s.league} lists no event",
                           f"no event at all for {(now - s.last_event_at) / 3600:.0f} h: is the "
                           "slug right, or is the league gone from the exchange?",
                           f"discovery-silent-{s.league}")

    # --- one league --------------------------------------------------------------------------

    async def pass_league(self, league: str) -> None:
        state = self.leagues[league]
        now = self.clock.now()
        try:
            listing = await list_league(self.rest, league, now=now, horizon=self.horizon,
                                        types=self.types)
        except (pm.AuthError, FatalCredentialsError):
            raise
        except Exception as exc:  # the exchange may be in maintenance: keep the universe
            self._failed(state, exc)
            return
        t = trio.current_time()
        state.next_due = t + self.interval
        self._backoff[league].reset()
        state.failed_in_a_row = 0
        if state.alerted_failing:
            state.alerted_failing = False
            self.alert("info", f"League {league} lists again", "", f"discovery-failing-{league}")
        state.last_pass, state.events_seen = now, listing.events_seen
        state.markets_listed, state.complete = len(listing.listed), listing.complete
        state.source = listing.source
        state.malformed += listing.malformed
        if listing.events_seen:
            state.last_event_at = t
            if state.alerted_silent:
                state.alerted_silent = False
                self.alert("info", f"League {league} lists events again", "",
                           f"discovery-silent-{league}")
        self._log_three_way(state, listing.three_way)
        for slug in [s for s in self._refused if s not in self.universe]:
            del self._refused[slug]
        matches, fixtures = await self._match(state, listing, now)
        self._admit(league, listing.listed, matches)
        self._queue_probes(state, listing.listed, fixtures)

    def _failed(self, state: LeagueState, exc: BaseException) -> None:
        state.errors += 1
        state.failed_in_a_row += 1
        state.last_error = f"{type(exc).__name__}: {exc}"
        delay = self._backoff[state.league].next_delay()
        state.next_due = trio.current_time() + delay
        log.warning("discovery: league %s listing failed (%d in a row): %s; the universe is kept, "
                    "retry in %.0f s", state.league, state.failed_in_a_row, state.last_error, delay)
        if state.failed_in_a_row >= FAILED_PASSES_ALERT and not state.alerted_failing:
            state.alerted_failing = True
            self.alert("warning", f"Discovery of {state.league} failing",
                       f"the listing failed {state.failed_in_a_row} passes in a row "
                       f"({state.last_error}); its markets are kept",
                       f"discovery-failing-{state.league}")

    def _log_three_way(self, state: LeagueState, events: Sequence[EventInfo]) -> None:
        current = {e.event_id or e.slug for e in events}
        for event in events:
            key = event.event_id or event.slug
            if key not in state.three_way_logged:
                log.info("discovery: %s skipped: its winner market is three-way (soccer), "
                         "not a two-outcome moneyline", event.slug or key)
        state.three_way_logged = current  # forget events no longer listed: nothing grows

    async def _match(self, state: LeagueState, listing: LeagueListing, now: datetime,
                     ) -> tuple[dict[str, BulkMatch] | str, list[Fixture]]:
        """Bulk matches of the league's markets that still need one (or why none could be made),
        and the fixtures listing they were made from."""
        todo = []
        for item in listing.listed:
            known = self.universe.get(item.market.slug)
            if known is not None and (known.target_confirmed or known.origin is not Origin.DISCOVERED):
                continue
            todo.append((item.event, item.market))
        if not todo:
            return {}, []
        if self.odds is None:
            return "no OPTICODDS_API_KEY: markets cannot be matched to fixtures", []
        try:
            fixtures = await self.odds.active_fixtures(
                league=[state.odds_league], start_after=now - LISTING_GRACE - MATCH_TOLERANCE,
                start_before=now + self.horizon + MATCH_TOLERANCE)
        except oc.AuthError:
            raise
        except oc.OpticOddsError as exc:
            state.fixtures_error = f"{type(exc).__name__}: {exc}"
            log.warning("discovery: OpticOdds fixtures of %s failed: %s (matched next pass)",
                        state.odds_league, exc)
            return f"OpticOdds fixtures listing failed: {exc}", []
        state.fixtures_error = ""
        return match_bulk(todo, fixtures, tolerance=MATCH_TOLERANCE), fixtures

    # --- into the universe -------------------------------------------------------------------

    def _admit(self, league: str, listed: Sequence[Listed],
               matches: dict[str, BulkMatch] | str) -> None:
        """Refresh the known markets, add the new ones within MAX_MARKETS, then their targets."""
        fresh: list[Listed] = []
        for item in listed:
            known = self.universe.get(item.market.slug)
            if known is None:
                # a market retired at its close may still be listed until its event closes, and a
                # finished one is not worth adding: neither comes back
                if (not self.retired(item.market.slug)
                        and item.market.status not in FINISHED_STATUSES):
                    fresh.append(item)
            elif known.origin is Origin.DISCOVERED and (
                    known.info != item.market or known.event != item.event):
                # a postponed game's new start, a status change: the listing is the source
                self.universe.put(item.market, event=item.event)
        added = self._bound(fresh)
        state = self.leagues[league]
        for item in added:
            self.universe.put(item.market, event=item.event, origin=Origin.DISCOVERED,
                              league=league)
            state.markets_added += 1
        for item in listed:
            listing = self.universe.get(item.market.slug)
            if listing is None or listing.origin is not Origin.DISCOVERED or listing.target_confirmed:
                continue
            self._apply_match(item.market.slug, matches)

    def _bound(self, fresh: Sequence[Listed]) -> list[Listed]:
        """The new markets that fit under MAX_MARKETS, nearest start first; evicts later-starting
        discovered markets that hold nothing when a nearer game needs the room."""
        def start_key(t: datetime | None) -> float:
            return t.timestamp() if t is not None else float("inf")

        protected = 0
        pool: list[tuple[float, int, str, Listed | None]] = []
        for existing in self.universe.listings():
            if existing.origin is not Origin.DISCOVERED or self.holds(existing.slug):
                protected += 1
            else:
                pool.append((start_key(existing.start_time), 0, existing.slug, None))
        for item in fresh:
            pool.append((start_key(item.market.start_time), 1, item.market.slug, item))
        room = max(0, self.max_markets - protected)
        if len(pool) <= room:
            self.not_admitted = 0
            return list(fresh)
        pool.sort(key=lambda p: (p[0], p[1], p[2]))  # nearest first; on a tie the known stays
        keep, out = pool[:room], pool[room:]
        for _, _, slug, new in out:
            if new is None:
                self.universe.retire(slug, "MAX_MARKETS: a game starting sooner took its place")
        self.not_admitted = sum(1 for p in out if p[3] is not None)
        if self.not_admitted:
            log.warning("discovery: MAX_MARKETS=%d leaves %d new market(s) out (nearest start "
                        "first)", self.max_markets, self.not_admitted)
        return [new for _, _, _, new in keep if new is not None]

    def _apply_match(self, slug: str, matches: dict[str, BulkMatch] | str) -> None:
        if isinstance(matches, str):
            listing = self.universe.get(slug)
            if listing is not None and listing.target is None:
                self.universe.update(slug, unmatched_reason=matches)
            return
        m = matches.get(slug)
        if m is None:
            return
        if m.target is not None and m.confirmed:
            self.pending.pop(slug, None)
            self.universe.update(slug, target=m.target, target_confirmed=True, unmatched_reason="")
            log.info("discovery: %s -> OpticOdds fixture %s, YES = %s (%s)", slug,
                     m.target.fixture_id, m.target.yes_selection, m.target.source)
        elif m.target is not None and m.fixture is not None:
            refused = self._refused.get(slug)
            if refused is not None and refused[0] == m.fixture.id:
                return  # the partner lookup already refused this very match: not asked again
            self.pending[slug] = _Pending(m.fixture, m.target)
            self._pending_added.set()
            self.universe.update(slug, target=m.target, target_confirmed=False,
                                 unmatched_reason=m.reason)
        else:
            self.pending.pop(slug, None)
            self.universe.update(slug, target=None, target_confirmed=False,
                                 unmatched_reason=m.reason)

    def _queue_probes(self, state: LeagueState, listed: Sequence[Listed],
                      fixtures: Sequence[Fixture]) -> None:
        """Markets neither provider ids nor team names could match (vendors spell teams
        differently: "LA Clippers", "Los Angeles Clippers"): the fixtures near their start that no
        market claims are looked up through the partner endpoint, which names their event.
        Each fixture is probed once while it is listed (the set is pruned to the listing)."""
        listed_ids = {fx.id for fx in fixtures}
        state.probed &= listed_ids
        if not fixtures:
            return
        claimed = {x.target.fixture_id for x in self.universe.listings() if x.target is not None}
        for item in listed:
            known = self.universe.get(item.market.slug)
            if (known is None or known.origin is not Origin.DISCOVERED or known.target is not None
                    or not known.unmatched_reason.startswith("no OpticOdds fixture")):
                continue
            start = known.start_time
            for fx in fixtures:
                if (fx.id in claimed or fx.id in state.probed or fx.start_date is None
                        or start is None or abs(fx.start_date - start) > MATCH_TOLERANCE):
                    continue
                state.probed.add(fx.id)
                self.probes[fx.id] = fx
                self._pending_added.set()

    async def probe(self, fixture_id: str) -> None:
        """One fixture's partner lookup: the discovered markets of the event it names get it."""
        fx = self.probes.pop(fixture_id, None)
        if fx is None:
            return
        self.partner_lookups += 1
        try:
            found = await self.rest.partner_event(fx.id)
        except (pm.AuthError, FatalCredentialsError):
            raise
        except pm.PolymarketError as exc:  # transient: to the back of the queue
            log.info("discovery: partner lookup of fixture %s failed (%s); retried later", fx.id,
                     exc)
            self.probes[fx.id] = fx
            await trio.sleep(1.0)
            return
        if found is None:
            return
        event = found[0]
        for listing in self.universe.listings():
            if (listing.origin is not Origin.DISCOVERED or listing.target is not None
                    or listing.event is None or listing.event_id != event.event_id):
                continue
            result = partner_target(listing.slug, listing.info, listing.event, fx, found,
                                    source="partner")
            if isinstance(result, MarketTarget):
                self.universe.update(listing.slug, target=result, target_confirmed=True,
                                     unmatched_reason="")
                log.info("discovery: %s -> OpticOdds fixture %s found through the partner "
                         "lookup, YES = %s", listing.slug, fx.id, result.yes_selection)

    # --- partner confirmations ---------------------------------------------------------------

    async def _confirmations(self, progress: Progress) -> None:
        """Confirm matches by team names through the partner lookup: after ready, ≤ 5/s."""
        while True:
            if not self.pending and not self.probes:
                self._pending_added = trio.Event()
                await self._pending_added.wait()
                continue
            if not self.ready():
                await trio.sleep(1.0)
                continue
            await self._partner_bucket.acquire()
            if self.pending:
                await self.confirm(next(iter(self.pending)))
            elif self.probes:
                await self.probe(next(iter(self.probes)))
            progress.beat()

    async def confirm(self, slug: str) -> None:
        pending = self.pending.get(slug)
        if pending is None:
            return
        listing = self.universe.get(slug)
        if listing is None or listing.event is None or listing.target_confirmed:
            self.pending.pop(slug, None)
            return
        self.partner_lookups += 1
        try:
            found = await self.rest.partner_event(pending.fixture.id)
        except (pm.AuthError, FatalCredentialsError):
            raise
        except pm.PolymarketError as exc:  # transient: to the back of the queue
            log.info("discovery: partner lookup of fixture %s failed (%s); retried later",
                     pending.fixture.id, exc)
            self.pending.pop(slug, None)
            self.pending[slug] = pending
            await trio.sleep(1.0)
            return
        self.pending.pop(slug, None)
        result = partner_target(slug, listing.info, listing.event, pending.fixture, found,
                                source="partner")
        if isinstance(result, Unmatched):
            reason = result.reason
        elif result.yes_selection != pending.target.yes_selection:
            reason = (f"the partner lookup maps YES to {result.yes_selection!r}, the team names "
                      f"to {pending.target.yes_selection!r}: not traded while they disagree")
        else:
            self.universe.update(slug, target=result, target_confirmed=True, unmatched_reason="")
            log.info("discovery: %s -> OpticOdds fixture %s confirmed by the partner lookup, "
                     "YES = %s", slug, result.fixture_id, result.yes_selection)
            return
        log.warning("discovery: %s will not be traded: %s", slug, reason)
        self._refused[slug] = (pending.fixture.id, reason)
        self.universe.update(slug, target=None, target_confirmed=False, unmatched_reason=reason)

    # --- /status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = trio.current_time()
        return {
            "leagues": {slug: s.view() for slug, s in self.leagues.items()},
            "seconds_since_complete_pass": (None if self.last_complete_pass is None
                                            else round(now - self.last_complete_pass, 1)),
            "complete_passes": self.passes,
            "pending_confirmations": len(self.pending),
            "pending_probes": len(self.probes),
            "partner_lookups": self.partner_lookups,
            "not_admitted_by_max_markets": self.not_admitted,
        }
