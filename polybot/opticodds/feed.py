"""The odds feed task: OpticOdds stream + REST snapshots -> consensus fair values in `FairValues`.

One stream per sport (`/stream/odds/{sport}`, the configured books, the matched leagues, the
moneyline market, fixture-status updates). The design follows what the API really does
(opticodds-api.md §3.4-3.5), not what its docs promise:

- Delivery is at-least-once and resume does not replay. So after EVERY (re)connect the feed marks
  its markets untrusted, buffers stream events, rebuilds the whole state from a REST snapshot
  (`/fixtures/odds`, batched), applies the buffered events on top, recomputes every consensus, and
  only then marks the markets trusted again. A REST refresh every `refresh_seconds` catches what
  the stream missed while live.
- Duplicates and reordering: events are deduplicated on `entry_id`, and an odd older (by its
  `timestamp`) than what is held is ignored. A lock removes the odd unless a newer price is held.
- A refresh races the stream: an odd the stream touched after the refresh started is kept even
  when the (older) REST answer disagrees.
- Liveness is data age, not socket state: any byte (ping every ~5 s, data, comment) pushes the
  watchdog deadline `stale_seconds` ahead; silence past it closes the connection and reconnects.
  A quiet line is not stale (an odd's timestamp only moves when its price does).
- Reconnects back off exponentially (initial .. max, at least the server's `retry:` hint) and
  are paced by the client's stream-connect budget. A 401 (`AuthError`) or a 400 on the stream
  (bad configuration) is raised: no retry can fix those.
- A book only enters a consensus with every selection of the line present (a locked or vanished
  side drops the whole book); fewer than `min_books` books clears the market's fair value.

Status: `feed.status` (overall) and `feed.statuses` (per sport) say live / rebuilding /
reconnecting since when; `on_progress` is called on every frame, snapshot and reconnect attempt
(reconnecting is progress: the supervisor's hang watchdog must not fire on an unreachable feed).
"""

from __future__ import annotations

import collections
import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

import attrs
import trio

from polybot.errors import fatal_unwrapped
from polybot.fairvalues import FairValues, FixtureInfo
from polybot.model import FairValue, MarketTarget
from polybot.opticodds.client import (
    AuthError,
    BadRequestError,
    OddsStream,
    OpticOddsClient,
    OpticOddsError,
)
from polybot.opticodds.sse import SSEEvent
from polybot.opticodds.wire import (
    Odd,
    WireError,
    parse_fixture_status,
    parse_odds_message,
)
from polybot.pricing import DEVIG_METHODS, BookMarket, consensus

log = logging.getLogger(__name__)


MONEYLINE = "moneyline"  # OpticOdds market id of the full-game winner


@attrs.frozen
class OddsFeedConfig:
    sportsbooks: tuple[str, ...]
    weights: tuple[tuple[str, Decimal], ...] = ()
    min_books: int = 1
    method: str = "shin"
    stale_seconds: float = 15.0
    refresh_seconds: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0

    def __attrs_post_init__(self) -> None:
        if not 1 <= len(self.sportsbooks) <= 5:
            raise ValueError("the odds feed takes 1 to 5 sportsbooks (one stream per sport)")
        if self.method not in DEVIG_METHODS:
            raise ValueError(f"unknown de-vig method {self.method!r}")
        if self.min_books < 1:
            raise ValueError("min_books must be at least 1")


class FeedState(enum.Enum):
    STARTING = "starting"
    RECONNECTING = "reconnecting"
    REBUILDING = "rebuilding"
    LIVE = "live"


@attrs.define
class FeedStatus:
    state: FeedState = FeedState.STARTING
    since: float = 0.0  # Trio clock time of the last state change
    reconnects: int = 0
    last_frame_at: float | None = None
    last_snapshot_at: float | None = None
    last_error: str = ""
    events: int = 0
    malformed: int = 0
    duplicates: int = 0


@attrs.define(eq=False)
class _SportLink:
    """One sport's running connection loop, as `set_targets` steers it."""

    scope: trio.CancelScope  # cancelled when no market of the sport is left
    leagues: frozenset[str]  # the league filter of the current connection
    pending: set[str] = attrs.field(factory=set)  # fixtures added, waiting for their snapshot
    reconnect: bool = False  # a new league: the connection must be rebuilt with a wider filter
    wake: trio.Event = attrs.field(factory=trio.Event)


class OddsFeed:
    def __init__(
        self,
        client: OpticOddsClient,
        fair_values: FairValues,
        targets: Sequence[MarketTarget],
        config: OddsFeedConfig,
        *,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._fv = fair_values
        self._cfg = config
        self._progress = on_progress or (lambda: None)
        self._targets: dict[str, MarketTarget] = {}  # slug -> target
        self._by_fixture: dict[str, list[MarketTarget]] = {}
        self._sports: dict[str, list[MarketTarget]] = {}
        self._markets: frozenset[str] = frozenset({MONEYLINE})  # OpticOdds markets streamed
        self._books = frozenset(b.lower() for b in config.sportsbooks)
        self._odds: dict[str, dict[str, Odd]] = {}  # fixture id -> odd id -> odd
        self._touched: dict[str, dict[str, int]] = {}  # fixture -> odd id -> stream seq of change
        self._seq = 0
        self._seen_entries: collections.deque[str] = collections.deque(maxlen=4096)
        self._seen_set: set[str] = set()
        self._book_ids: dict[str, str] = {}
        self.unknown_books: tuple[str, ...] = ()
        self.statuses: dict[str, FeedStatus] = {}
        self._live: dict[str, _SportLink] = {}  # sport -> its running connection loop
        self._nursery: trio.Nursery | None = None
        # recording (issue 16): called with each stream event as received, as SSE text
        self.tap: Callable[[str | bytes, float], None] | None = None
        self.added = 0  # targets added at run time (after construction)
        self.removed = 0
        self._apply_targets(targets)
        self.added = 0

    # --- public -------------------------------------------------------------------------------

    @property
    def status(self) -> FeedStatus:
        """The worst sport's status (live only when every stream is live)."""
        order = [FeedState.STARTING, FeedState.RECONNECTING, FeedState.REBUILDING, FeedState.LIVE]
        if not self.statuses:
            return FeedStatus(state=FeedState.LIVE)
        return min(self.statuses.values(), key=lambda s: (order.index(s.state), -s.since))

    def target_of(self, slug: str) -> MarketTarget | None:
        return self._targets.get(slug)

    @property
    def targets(self) -> dict[str, MarketTarget]:
        return dict(self._targets)

    def market_keys(self) -> frozenset[str]:
        """The markets this feed holds anything for (after a retirement: a subset of the
        universe; its per-fixture state follows `fixtures`)."""
        return frozenset(self._targets).union(
            *({t.slug for t in ts} for ts in self._by_fixture.values()))

    @property
    def fixtures(self) -> frozenset[str]:
        """The fixtures whose odds are held (one entry per priced fixture, nothing else)."""
        return frozenset(self._odds)

    def set_targets(self, targets: Iterable[MarketTarget]) -> None:
        """Price exactly these markets from now on, without restarting the feed.

        A new fixture in a league already streamed needs no reconnect (the league-filtered
        stream already carries it): its odds are loaded by a REST snapshot and it is trusted once
        that arrived. A new league of a streamed sport reconnects that sport's stream (filters are
        fixed per connection); a new sport starts its own stream. A removed market's fair value is
        cleared and everything held for its fixture is dropped.
        """
        self._apply_targets(targets)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Ready at once: trust is reported per market through FairValues."""
        await self._check_books()
        if not self._sports:
            log.info("odds feed: no matched markets yet; streams start as targets arrive")
        with fatal_unwrapped(AuthError, BadRequestError):
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for sport in list(self._sports):
                        self._start_sport(sport)
                    task_status.started()
                    await trio.sleep_forever()
                finally:
                    self._nursery = None
                    self._live.clear()

    # --- targets ------------------------------------------------------------------------------

    def _apply_targets(self, targets: Iterable[MarketTarget]) -> None:
        new = {t.slug: t for t in targets}
        old = self._targets
        gone = [slug for slug in old if slug not in new or new[slug] != old[slug]]
        came = [t for slug, t in new.items() if old.get(slug) != t]
        if not gone and not came:
            return
        for slug in gone:
            old.pop(slug)
            self.removed += 1
            # stop pricing it (unless its container already forgot a retired market: re-adding
            # a reason for it would grow per retired market)
            if self._fv.fixture_id(slug) is not None:
                self._fv.clear(slug, "fixture target changed" if slug in new
                               else "no confirmed OpticOdds fixture target")
        for t in came:
            old[t.slug] = t
            self.added += 1
            self._fv.track(t.slug, t.fixture_id)
        self._index()
        for t in came:  # a fixture seen for the first time: its odds come from a snapshot
            if t.fixture_id not in self._odds:
                self._odds[t.fixture_id] = {}
                self._touched[t.fixture_id] = {}
                link = self._live.get(t.sport)
                if link is not None:
                    link.pending.add(t.fixture_id)
        for fid in [f for f in self._odds if f not in self._by_fixture]:
            del self._odds[fid]  # nothing may grow per removed market
            self._touched.pop(fid, None)
        for sport, link in list(self._live.items()):
            if sport not in self._sports:
                link.scope.cancel()  # no market of this sport is left
                del self._live[sport]
                self.statuses.pop(sport, None)
            elif not self._leagues(sport) <= link.leagues:
                link.reconnect = True  # the connection's league filter misses a new league
                link.wake.set()
            elif link.pending:
                link.wake.set()
        for sport in self._sports:
            if sport not in self._live and self._nursery is not None:
                self._start_sport(sport)
        for t in came:  # may be priced at once from odds already held for its fixture
            if self._odds.get(t.fixture_id):
                self._recompute([t.fixture_id])

    def _index(self) -> None:
        self._by_fixture = {}
        self._sports = {}
        for t in self._targets.values():
            self._by_fixture.setdefault(t.fixture_id, []).append(t)
            self._sports.setdefault(t.sport, []).append(t)
        self._markets = frozenset(t.market_id for t in self._targets.values()) or frozenset(
            {MONEYLINE})

    def _leagues(self, sport: str) -> frozenset[str]:
        return frozenset(t.league for t in self._sports.get(sport, ()) if t.league)

    def _sport_slugs(self, sport: str) -> list[str]:
        return [t.slug for t in self._sports.get(sport, ())]

    def _start_sport(self, sport: str) -> None:
        assert self._nursery is not None
        link = _SportLink(trio.CancelScope(), self._leagues(sport))
        self._live[sport] = link
        self.statuses.setdefault(sport, FeedStatus())
        self._nursery.start_soon(self._run_sport, sport, link)

    # --- start-up -----------------------------------------------------------------------------

    async def _check_books(self) -> None:
        try:
            books = await self._client.sportsbooks()
        except AuthError:
            raise
        except OpticOddsError as e:
            log.warning("odds feed: could not list OpticOdds sportsbooks (%s); book ids unchecked", e)
            return
        self._book_ids = {b.name: b.id for b in books}
        known = {b.id for b in books}
        unknown = tuple(b for b in self._cfg.sportsbooks if b not in known)
        self.unknown_books = unknown
        if unknown:
            log.warning("OpticOdds does not know sportsbook id(s) %s: they will never quote "
                        "(check OPTICODDS_SPORTSBOOKS)", ", ".join(unknown))

    # --- one sport's connection loop -------------------------------------------------------------

    def _status(self, sport: str) -> FeedStatus:
        return self.statuses.setdefault(sport, FeedStatus())

    def _set_state(self, sport: str, state: FeedState, error: str = "") -> None:
        st = self._status(sport)
        if st.state is not state:
            st.state = state
            st.since = trio.current_time()
        if error:
            st.last_error = error

    async def _run_sport(self, sport: str, link: _SportLink) -> None:
        with link.scope:
            await self._sport_loop(sport, link)

    async def _sport_loop(self, sport: str, link: _SportLink) -> None:
        backoff = self._cfg.backoff_initial
        retry_hint = 0.0
        last_entry: str | None = None
        first = True
        while True:
            self._fv.set_trusted(self._sport_slugs(sport), False, trio.current_time())
            self._set_state(sport, FeedState.STARTING if first else FeedState.RECONNECTING)
            if not first:
                self._status(sport).reconnects += 1
            first = False
            self._progress()
            reached_live = False
            link.leagues = self._leagues(sport)
            link.reconnect = False
            link.pending.clear()  # the rebuild below loads every fixture of the sport
            try:
                async with self._client.stream_odds(
                    sport, self._cfg.sportsbooks, leagues=sorted(link.leagues),
                    markets=sorted(self._markets), include_fixture_updates=True,
                    last_entry_id=last_entry,
                ) as stream:
                    reason, reached_live = await self._session(sport, link, stream)
                    last_entry = stream.parser.last_event_id or last_entry
                    if stream.parser.retry_ms is not None:
                        retry_hint = stream.parser.retry_ms / 1000
            except (AuthError, BadRequestError):
                self._set_state(sport, FeedState.RECONNECTING, "fatal: see the raised error")
                raise
            except OpticOddsError as e:
                reason = str(e)
            self._fv.set_trusted(self._sport_slugs(sport), False, trio.current_time())
            if link.reconnect:  # a new league: reconnect at once with the wider filter
                log.info("odds stream %s: reconnecting for new league(s) %s", sport,
                         ", ".join(sorted(self._leagues(sport) - link.leagues)))
                continue
            if reached_live:
                backoff = self._cfg.backoff_initial
            wait = max(backoff, retry_hint)
            log.warning("odds stream %s: %s; reconnecting in %.1fs", sport, reason, wait)
            self._set_state(sport, FeedState.RECONNECTING, reason)
            self._progress()
            await trio.sleep(wait)
            backoff = min(backoff * 2, self._cfg.backoff_max)

    async def _session(self, sport: str, link: _SportLink,
                       stream: OddsStream) -> tuple[str, bool]:
        """One connection: rebuild, then live until the stream ends or goes silent."""
        status = self._status(sport)
        self._set_state(sport, FeedState.REBUILDING)
        buffered: list[SSEEvent] = []
        rebuilding = True
        outcome = "stream closed by the server"
        reached_live = False
        with trio.CancelScope() as watchdog, fatal_unwrapped(AuthError, BadRequestError):
            watchdog.deadline = trio.current_time() + self._cfg.stale_seconds
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    nonlocal outcome
                    try:
                        async for ev in stream.events():
                            now = trio.current_time()
                            watchdog.deadline = now + self._cfg.stale_seconds
                            status.last_frame_at = now
                            self._progress()
                            if ev is None:
                                continue
                            if self.tap is not None:
                                self.tap(ev.wire(comment=sport), now)
                            if rebuilding:
                                buffered.append(ev)
                            else:
                                self._handle(sport, ev)
                    except OpticOddsError as e:
                        outcome = str(e)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(reader)
                try:
                    await self._rebuild(sport)
                except (AuthError, BadRequestError):
                    raise
                except OpticOddsError as e:
                    outcome = f"REST snapshot failed ({e})"
                    nursery.cancel_scope.cancel()
                    return outcome, False
                for ev in buffered:
                    self._handle(sport, ev)
                buffered.clear()
                rebuilding = False
                self._recompute(self._sport_fixtures(sport))
                self._fv.set_trusted(self._sport_slugs(sport), True, trio.current_time())
                self._set_state(sport, FeedState.LIVE)
                reached_live = True
                log.info("odds stream %s live (%d markets)", sport, len(self._sport_slugs(sport)))
                nursery.start_soon(self._refresher, sport)
                nursery.start_soon(self._adder, sport, link, nursery.cancel_scope)
        if watchdog.cancelled_caught:
            outcome = f"no data for {self._cfg.stale_seconds:.0f}s (stream silent)"
        if link.reconnect:
            outcome = "new league(s) to stream"
        return outcome, reached_live

    async def _adder(self, sport: str, link: _SportLink, session: trio.CancelScope) -> None:
        """While live: load the snapshot of fixtures added at run time (same connection), or end
        the session when a new league needs a wider filter."""
        while True:
            await link.wake.wait()
            link.wake = trio.Event()
            if link.reconnect:
                session.cancel()
                return
            fids = [f for f in link.pending if f in self._by_fixture]
            link.pending.clear()
            if not fids:
                continue
            try:
                await self._rebuild(sport, merge=True, fixtures=fids)
            except (AuthError, BadRequestError):
                raise
            except OpticOddsError as e:
                log.warning("odds feed %s: snapshot of %d new fixture(s) failed (%s); retrying",
                            sport, len(fids), e)
                link.pending.update(fids)
                await trio.sleep(self._cfg.backoff_initial)
                link.wake.set()
                continue
            fids = [f for f in fids if f in self._by_fixture]
            self._recompute(fids)
            slugs = [t.slug for f in fids for t in self._by_fixture[f]]
            self._fv.set_trusted(slugs, True, trio.current_time())
            log.info("odds stream %s: %d fixture(s) added without a reconnect", sport, len(fids))

    async def _refresher(self, sport: str) -> None:
        while True:
            await trio.sleep(self._cfg.refresh_seconds)
            try:
                await self._rebuild(sport, merge=True)
            except (AuthError, BadRequestError):
                raise
            except OpticOddsError as e:
                log.warning("odds feed %s: REST refresh failed (%s); stream still live", sport, e)
                continue
            self._recompute(self._sport_fixtures(sport))

    # --- state ----------------------------------------------------------------------------------

    def _sport_fixtures(self, sport: str) -> list[str]:
        return list(dict.fromkeys(t.fixture_id for t in self._sports.get(sport, ())))

    async def _rebuild(self, sport: str, *, merge: bool = False,
                       fixtures: Sequence[str] | None = None) -> None:
        """Replace (or, when live, merge) the sport's odds with a REST snapshot."""
        fixtures = list(fixtures) if fixtures is not None else self._sport_fixtures(sport)
        if not fixtures:
            return
        start_seq = self._seq
        snap = await self._client.fixture_odds(
            fixtures, self._cfg.sportsbooks, markets=sorted(self._markets), book_ids=self._book_ids)
        self._progress()
        st = self.statuses.get(sport)
        if st is not None:
            st.last_snapshot_at = trio.current_time()
        for fid in fixtures:
            if fid not in self._odds:
                continue  # removed while the snapshot was in flight
            fo = snap.get(fid)
            if fo is not None:
                self._fv.set_fixture(FixtureInfo(fid, fo.fixture.start_date, fo.fixture.status))
            if self._finished(fid):  # completed / cancelled: its odds are not held any more
                self._odds[fid].clear()
                self._touched.get(fid, {}).clear()
                continue
            rest = {o.id: o for o in fo.odds if self._relevant(o)} if fo else {}
            if merge:
                self._merge(self._odds[fid], rest, start_seq, self._touched.get(fid, {}))
            else:
                self._odds[fid] = rest

    @staticmethod
    def _merge(held: dict[str, Odd], rest: dict[str, Odd], start_seq: int,
               touched: dict[str, int]) -> None:
        """Fold a REST refresh into live state; the stream wins where it moved after the request."""
        for oid in list(held):
            if oid not in rest and touched.get(oid, -1) <= start_seq:
                del held[oid]  # absent from REST = suspended
        for oid, odd in rest.items():
            mine = held.get(oid)
            if mine is None and touched.get(oid, -1) > start_seq:
                continue  # the stream locked it after the snapshot was taken
            if mine is None or mine.timestamp <= odd.timestamp:
                held[oid] = odd

    def _relevant(self, o: Odd) -> bool:
        return o.market_id in self._markets and o.book in self._books

    def _handle(self, sport: str, ev: SSEEvent) -> None:
        status = self._status(sport)
        if ev.event in ("connected", "ping", "message"):
            return
        try:
            if ev.event in ("odds", "locked-odds"):
                msg = parse_odds_message(ev.data, locked=ev.event == "locked-odds")
                if self._duplicate(msg.entry_id):
                    status.duplicates += 1
                    return
                status.events += 1
                if msg.skipped:
                    status.malformed += msg.skipped
                    log.warning("odds stream %s: skipped %d malformed odds in %s",
                                sport, msg.skipped, msg.entry_id)
                self._recompute(self._apply(msg.odds, locked=msg.locked))
            elif ev.event == "fixture-status":
                fs = parse_fixture_status(ev.data)
                if self._duplicate(fs.entry_id):
                    status.duplicates += 1
                    return
                status.events += 1
                if fs.fixture_id in self._odds:
                    slug = self._by_fixture[fs.fixture_id][0].slug
                    prev = self._fv.fixture(slug) or FixtureInfo(fs.fixture_id)
                    info = FixtureInfo(fs.fixture_id, fs.start_date or prev.start_time,
                                       fs.status or prev.status)
                    self._fv.set_fixture(info)
                    if info.phase == "finished":  # completed / cancelled: no more pricing
                        log.info("odds feed: fixture %s is %s; its market(s) are no longer "
                                 "priced", fs.fixture_id, info.status)
                        self._odds[fs.fixture_id].clear()
                        self._touched[fs.fixture_id].clear()
                    self._recompute([fs.fixture_id])
            else:
                log.debug("odds stream %s: ignored event %r", sport, ev.event)
        except WireError as e:
            status.malformed += 1
            log.warning("odds stream %s: malformed %s event skipped (%s)", sport, ev.event, e)

    def _duplicate(self, entry_id: str) -> bool:
        if not entry_id:
            return False
        if entry_id in self._seen_set:
            return True
        if len(self._seen_entries) == self._seen_entries.maxlen:
            self._seen_set.discard(self._seen_entries[0])
        self._seen_entries.append(entry_id)
        self._seen_set.add(entry_id)
        return False

    def _finished(self, fixture_id: str) -> bool:
        targets = self._by_fixture.get(fixture_id)
        if not targets:
            return False
        fx = self._fv.fixture(targets[0].slug)
        return fx is not None and fx.phase == "finished"

    def _apply(self, odds: Iterable[Odd], *, locked: bool) -> dict[str, None]:
        # the fixtures touched, in the order the event has them (a dict: a set's order follows
        # the process's string hash seed, and replays must recompute alike in every process)
        touched: dict[str, None] = {}
        # whether a fixture is finished cannot change within one event: asked once per fixture
        # (an event carries hundreds of odds of a few dozen fixtures)
        finished: dict[str, bool] = {}
        for o in odds:
            fid = o.fixture_id
            held = self._odds.get(fid)
            if held is None or not self._relevant(o):
                continue
            done = finished.get(fid)
            if done is None:
                done = finished[fid] = self._finished(fid)
            if done:
                continue
            mine = held.get(o.id)
            if mine is not None and o.timestamp < mine.timestamp:
                continue  # older than what we hold: a late duplicate or out of order
            self._seq += 1
            self._touched.setdefault(fid, {})[o.id] = self._seq
            if locked:
                if mine is not None:
                    del held[o.id]
                    touched[fid] = None
            else:
                held[o.id] = o
                touched[fid] = None
        return touched

    def _recompute(self, fixture_ids: Iterable[str]) -> None:
        now = trio.current_time()
        for fid in fixture_ids:
            for t in self._by_fixture.get(fid, ()):
                self._recompute_target(t, now)

    def _recompute_target(self, t: MarketTarget, now: float) -> None:
        fx = self._fv.fixture(t.slug)
        if fx is not None and fx.phase == "finished":
            self._fv.clear(t.slug, f"fixture {t.fixture_id} is {fx.status}")
            return
        line = [o for o in self._odds.get(t.fixture_id, {}).values()
                if o.market_id == t.market_id and o.grouping_key == t.grouping_key]
        selections = {o.normalized_selection for o in line}
        if t.yes_selection not in selections:
            self._fv.clear(t.slug, f"no book quotes {t.yes_selection!r} on {t.fixture_id}")
            return
        per_book: dict[str, dict[str, Odd]] = collections.defaultdict(dict)
        for o in line:
            per_book[o.book][o.normalized_selection] = o
        others = sorted(s for s in selections if s != t.yes_selection)
        markets = []
        for book, sel in sorted(per_book.items()):
            if set(sel) != selections:
                continue  # a side is locked or vanished: the book's line is incomplete
            markets.append(BookMarket(book, (sel[t.yes_selection].price, *(sel[s].price for s in others))))
        c = consensus(markets, method=self._cfg.method, weights=self._cfg.weights,
                      min_books=self._cfg.min_books)
        if c is None:
            self._fv.clear(t.slug, f"{len(markets)} book(s) quoting, {self._cfg.min_books} needed")
            return
        self._fv.set(FairValue(market_slug=t.slug, q=c.q, method=c.method, quotes=c.quotes,
                               computed_at=now, fixture_id=t.fixture_id))
