"""The supervised process: tasks that feed the trading engine and carry out its commands.

Data flows one way:

    markets websocket ─► engine.book_replaced ─┐            ┌─► venue (paper | live) ─► ledger
    OpticOdds stream  ─► FairValues ───────────┼─► trader: engine.decide ─► commands ─┤
    private websocket / reconciliation ─► venue ┘            └─► store (rejections, intents)
    operator files ─► control task ─► engine.operator_files;  housekeeping ─► engine.tick

The money path is the engine's (`polybot.engine`); this module only moves events and commands.

Process layout (one root nursery, `run_bot`):

- outside the supervised group, because they must outlive a group restart: the store's writer
  task, the notifier, the health server (a health endpoint that died with the group could never
  answer "503 restarting"), the REST client (shutdown cancels need it after the group is gone), and
  the components (`polybot.components`): ledger, registry, universe, exposure, trading state, gate,
  books, fair values, the engine and the venue.
- inside the group (`polybot.supervisor`), rebuilt on every restart: `reference` (market metadata
  into the universe, refreshed every few minutes), `markets` (the markets websocket into the
  engine; its subscriptions follow the universe's add and retire listeners, debounced, on the
  live connection), `odds` (the OpticOdds feed writing FairValues; its targets are the universe's
  confirmed fixture targets, changed at run time the same way), `executor` (live mode: the
  private websocket, subscribed to every market, and the live executor's tasks), `trader` (decisions: the only caller of the venue's
  submit), `control` (the kill switch and resume files, polled every 0.25 s) and `housekeeping`
  (the clock tick of the trading state, operator requests, persistence, metrics).

Shutdown (SIGINT/SIGTERM, or `--duration` in the demo): no new orders; creates in flight get
their answer (at most 3 s: a create cancelled mid-POST could land unseen after the bot stopped
looking); the group stops; then in a shielded scope ending 8 s after the signal the executor
resolves what is still unknown and cancels the bot's open orders (`CANCEL_ON_SHUTDOWN`), the
ledger is saved and the store flushed. Exit 0 when every cancel is confirmed, else 1 with an alert
naming what is still open. A second signal exits at once.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from polybot import control
from polybot import operator as operator_requests
from polybot.claims import DataDirLock
from polybot.clock import LIVE_CLOCK, Clock
from polybot.components import NETWORK, Components, Edges, build
from polybot.config import Settings
from polybot.dashboard import Dashboard, DashboardConfig
from polybot.engine import (
    CancelAll,
    Command,
    DecideAll,
    MarketStateChanged,
    PlaceOrder,
    RecordRejection,
    SyncResting,
)
from polybot.errors import EXIT_OK, EXIT_UNCONFIRMED, FatalCredentialsError
from polybot.execution.live import LiveExecutor
from polybot.execution.paper import PaperExecutor
from polybot.health import HealthApp, HealthSources, serve_health
from polybot.model import OrderRequest
from polybot.notify import Level
from polybot.recording import (
    ENGINE_CANCEL_ALL,
    ENGINE_CONTINUITY_LOST,
    ENGINE_FLATTEN,
    ENGINE_OPERATOR_FILES,
    ENGINE_RECONCILED,
    ENGINE_STREAM_CONNECTED,
    ENGINE_TICK,
)
from polybot.sdnotify import SystemdNotifier, watchdog_interval
from polybot.status import StatusViews
from polybot.supervisor import ChildSpec, Progress, Supervisor
from polybot.universe import Origin

log = logging.getLogger("polybot.app")

SHUTDOWN_BOUND_SECONDS = 8.0  # signal to flushed store, inside the 10 s the operator is promised
CREATE_WAIT_SECONDS = 3.0  # of those, at most this long for creates in flight to be answered
FLATTEN_ROUNDS = 5
METADATA_REFRESH_SECONDS = 60.0  # market metadata (status, tick, fees) re-read this often
UNIVERSE_DEBOUNCE_SECONDS = 0.2  # universe changes gathered into one subscription change...
UNIVERSE_DEBOUNCE_MAX_SECONDS = 2.0  # ...while they keep coming, for at most this long


class Wake:
    """A wake-up a follower task resets before each wait: `set()` (from any listener) wakes it,
    and a `set()` from before its last `reset()` does not count again."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def reset(self) -> None:
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class Bot:
    """The components of one process, and the supervised children that drive them."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 status_line: Callable[[str], None] | None = None,
                 edges: Edges = NETWORK, hang_scale: float = 1.0) -> None:
        self.settings = settings
        # the children's progress deadlines are this many times longer: an accelerated demo's
        # Trio clock runs `speed` times real time, and a deadline must stay in real seconds (a
        # 1 s stall of a loaded laptop is 60 "seconds" at 60x, not a hung child)
        self.hang_scale = hang_scale
        self.mode = settings.trading_mode
        self.clock: Clock = clock or LIVE_CLOCK  # the one clock: every component gets this one
        self.status_line = status_line
        c: Components = build(settings, self.clock, edges)
        self.edges = edges  # where I/O goes: the network, or a recording (polybot.backtest)
        self.c = c
        self.metrics, self.notifier, self.store = c.metrics, c.notifier, c.store
        self.secrets = c.secrets
        self.ledger, self.registry, self.universe = c.ledger, c.registry, c.universe
        self.exposure, self.trading, self.gate = c.exposure, c.trading, c.gate
        self.books, self.fair_values, self.engine = c.books, c.fair_values, c.engine
        self.executor, self.recorder, self.rest, self.signer = c.executor, c.recorder, c.rest, c.signer
        self.lifecycle = c.lifecycle
        self.recording = c.recording  # RECORD_DIR: the raw feeds journalled (polybot.recording)
        self.live: LiveExecutor | None = c.executor if isinstance(c.executor, LiveExecutor) else None
        self.paper: PaperExecutor | None = (c.executor if isinstance(c.executor, PaperExecutor)
                                            else None)
        if self.live is not None:
            self.live.may_send = self._may_send
        else:  # paper: the ledger restored is the account
            self._reconciled()
        self.counters = self.engine.counters
        self.recent_errors: deque[str] = deque(maxlen=20)
        self.stopping = False
        self.fair_values.add_listener(self._mark_dirty)
        # insertion-ordered (a dict, not a set): markets are decided in the order they changed,
        # the same in every process (a set's order follows the per-process string hash seed,
        # and two replays of one recording in two processes must decide alike); the value is
        # when it was first marked since its last decision (the decision latency's start)
        self._dirty: dict[str, float] = {}
        self._wake = trio.Event()
        self._last_halt_state: Any = None
        self._received_at: dict[str, float] = {}
        self._markets_stream: Any = None
        self._private_stream: Any = None
        self._odds_feed: Any = None
        self._discovery: Any = None  # polybot.discovery.Discovery, kept across group restarts
        self._reference_loaded = False
        self._flattening = False
        self._stop_deadline: float | None = None
        # the markets stream and the odds feed follow the universe: its listeners (registered
        # once here, since the universe outlives group restarts) wake their follower tasks
        self._markets_wake = Wake()
        self._odds_wake = Wake()
        self.universe.add_listener(self._universe_changed)
        self.universe.add_retire_listener(self._universe_retired)
        self.views = StatusViews(self)
        self.supervisor = self._build_supervisor()
        self.health_port: int | None = None

    def _build_supervisor(self) -> Supervisor:
        s = self.settings
        stale = s.stale_feed_seconds
        children = [
            ChildSpec("reference", self.reference_child, progress_deadline=max(120.0, 8 * stale)),
            ChildSpec("markets", self.markets_child, progress_deadline=max(60.0, 4 * stale)),
            ChildSpec("odds", self.odds_child, progress_deadline=max(60.0, 4 * stale)),
        ]
        if s.market_leagues:
            children.append(ChildSpec("discovery", self.discovery_child, progress_deadline=180.0))
        if self.live is not None:
            children.append(ChildSpec("executor", self.executor_child,
                                      progress_deadline=max(60.0, 4 * stale)))
        elif self.paper is not None:  # settles resolved markets' positions at the published value
            children.append(ChildSpec("settlements", self.paper.settle_resolved,
                                      progress_deadline=60.0))
        children += [
            ChildSpec("trader", self.trader_child, progress_deadline=60.0),
            ChildSpec("control", self.control_child, progress_deadline=30.0),
            ChildSpec("housekeeping", self.housekeeping_child, progress_deadline=30.0),
        ]
        if self.hang_scale != 1.0:
            children = [attrs.evolve(c, progress_deadline=c.progress_deadline * self.hang_scale)
                        if c.progress_deadline is not None else c for c in children]
        sd = SystemdNotifier.from_env()
        return Supervisor(children, max_restarts=s.supervisor_max_restarts,
                          window_seconds=s.supervisor_window_seconds,
                          keepalive=sd.watchdog if sd.enabled else None,
                          keepalive_interval=watchdog_interval(),
                          alert=self.notifier.send_nowait,
                          status=sd.status if sd.enabled else None, metrics=self.metrics)

    def _record_input(self, kind: str, **values: Any) -> None:
        """One of the engine's inputs into the recording, when RECORD_DIR is set (just before the
        engine gets it, so it sorts before what the engine did with it)."""
        if self.recording is not None:
            self.recording.engine(kind, **values)

    def _reconciled(self) -> None:
        now, mono = self.clock.now(), self.clock.monotonic()
        self._record_input(ENGINE_RECONCILED, now=now, mono=mono)
        self.engine.reconciled(now, mono)

    def _alert(self, level: Level, title: str, text: str = "", key: str | None = None) -> None:
        self.notifier.alert(level, title, text, key=key)

    def _mark_dirty(self, slug: str) -> None:
        if slug not in self._dirty:  # the first mark since its last decision: latency runs from it
            self._dirty[slug] = trio.current_time()
        self._wake.set()

    def _mark_all_dirty(self) -> None:
        """Every market of the universe decided again (in the universe's order)."""
        for slug in self.universe:
            self._mark_dirty(slug)

    def per_market_keys(self) -> dict[str, set[str]]:
        """For each container that holds something per market, the markets it holds: after a
        retirement every one of them must be a subset of the live universe (nothing grows per
        retired market)."""
        keys = {
            "books": self.books.market_keys(),
            "fair_values": set(self.fair_values.market_keys()),
            "exposure": self.exposure.market_keys(),
            "engine": self.engine.market_keys(),
            "executor": self.executor.market_keys(),
            "lifecycle": self.lifecycle.keys(),
            "ledger_marks": self.ledger.marked_only(),
            "received_at": set(self._received_at),
            "dirty": set(self._dirty),
            "metric_labels": self.metrics.market_labels(),
        }
        if self._markets_stream is not None:
            keys["subscriptions"] = set(self._markets_stream.slugs)
        if self._odds_feed is not None:
            keys["odds_targets"] = set(self._odds_feed.market_keys())
        return keys

    def _may_send(self, request: OrderRequest) -> bool:
        """Asked by the live venue right before a POST: a halt seen meanwhile stops the order
        (an operator's flatten goes on unless the kill switch is on)."""
        return not self.trading.halt_blocks(flatten=request.reason == "flatten")

    # --- children ----------------------------------------------------------------------------------

    async def reference_child(self, progress: Progress, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Market metadata into the universe, then refreshed (status, tick, fees)."""
        from polybot.reference import load_markets

        task_status.started()
        attempt = 0
        refreshed = -1e18
        while True:
            wanted = self.wanted_markets()
            if (trio.current_time() - refreshed >= METADATA_REFRESH_SECONDS
                    or any(slug not in self.universe for slug in wanted)):
                try:
                    await load_markets(self.rest, self.universe, wanted, self._still_wanted)
                except FatalCredentialsError:
                    raise
                except Exception as exc:  # the exchange may be in maintenance: keep trying
                    attempt += 1
                    progress.reconnecting(attempt, exc)
                    self.recent_errors.append(f"market metadata: {exc}")
                    await trio.sleep(min(30.0, 2.0 ** min(attempt, 5)))
                    continue
                attempt = 0
                refreshed = trio.current_time()
                progress.recovered()
                if not self._reference_loaded:
                    self._reference_loaded = True
                    for slug, why in self.universe.unknown().items():
                        self.recent_errors.append(f"{slug} not opened: {why}")
                self._mark_all_dirty()
            try:  # markets past their start: closed? resolved? (targeted reads, see lifecycle)
                await self.lifecycle.refresh(self.rest, self.clock.now, trio.current_time,
                                             skip=set(wanted))
            except FatalCredentialsError:
                raise
            except Exception as exc:  # asked again on the next pass
                log.warning("market lifecycle refresh: %s", exc)
                self.recent_errors.append(f"market lifecycle refresh: {exc}")
            progress.beat()
            await trio.sleep(5.0)

    def wanted_markets(self) -> list[str]:
        """The configured markets, and any market the account holds a position in: a held market
        joins the universe so it is marked, counts against every cap and settles."""
        gone = self.lifecycle.retired_configured  # settled and retired: not loaded again
        configured = [slug for slug in self.settings.market_slugs if slug not in gone]
        held = [slug for slug in self.ledger.positions if slug not in self.settings.market_slugs]
        return [*configured, *held]

    def _still_wanted(self, slug: str) -> bool:
        """Asked right before a configured or held market is put in the universe: not once it was
        retired meanwhile (a flat held market, or a configured one retired for good)."""
        if slug in self.lifecycle.retired_configured:
            return False
        return slug in self.settings.market_slugs or self.ledger.position(slug).net_qty != 0

    async def markets_child(self, progress: Progress, *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from polybot.polymarket import wire
        from polybot.polymarket.stream import (
            ContinuityLost,
            MarketsStream,
            StreamConnected,
            stream_config_from_settings,
        )

        async def on_event(event: Any) -> None:
            # awaited by the socket-reading task for each event, in order (no channel, no hop):
            # while it runs the socket is not read, so a slow handler slows the feed
            now = trio.current_time()
            if type(event) is wire.BookReplaced:
                await self.on_book_frame(event.book, now)  # the book, then its decision
            elif isinstance(event, wire.TradePrinted):
                self.executor.on_trade(event.trade)
            elif isinstance(event, ContinuityLost):
                self._record_input(ENGINE_CONTINUITY_LOST, stream=event.stream,
                                   reason=event.reason, at=now)
                self.engine.continuity_lost(at=now)
                self.executor.on_continuity_lost()
                progress.degraded(f"exchange market feed down: {event.reason}")
            elif isinstance(event, StreamConnected):
                self._record_input(ENGINE_STREAM_CONNECTED, stream=event.stream,
                                   connection=event.connection, at=now)
                progress.recovered()

        stream = MarketsStream(stream_config_from_settings(self.settings), self.signer,
                               slugs=list(self.universe), deliver=on_event,
                               subscription_types=("SUBSCRIPTION_TYPE_MARKET_DATA",
                                                   "SUBSCRIPTION_TYPE_TRADE"),
                               on_no_data=self._market_no_data,
                               progress=progress.beat, auth_probe=self.rest.balances,
                               clock=self.clock, connect=self.edges.websocket,
                               rng=self.edges.rng)
        if self.recording is not None:
            stream.tap = self.recording.tap("markets")
        self._markets_stream = stream
        start = trio.current_time()
        self._record_input(ENGINE_CONTINUITY_LOST, stream=stream.name, reason="start",
                           at=start)
        self.engine.continuity_lost(at=start)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_universe, stream)
            task_status.started()  # before the first event can reach the handler
            await stream.run()

    def _universe_changed(self, listing: Any) -> None:
        """A market added or changed: wake the followers whose set it may change."""
        stream = self._markets_stream
        if stream is None or not stream.watches(listing.slug):
            self._markets_wake.set()
        feed = self._odds_feed
        if feed is None or feed.target_of(listing.slug) != self._odds_target(listing):
            self._odds_wake.set()

    def _universe_retired(self, slug: str) -> None:
        """A market retired: what the runtime holds for it goes now; the odds feed drops it at
        once (a consensus computed for it after its fair values were forgotten would be an
        error), the markets stream unsubscribes with the next change (books for it arriving
        meanwhile are ignored: see markets_child); the components' own containers are wired in
        `polybot.components`."""
        self._received_at.pop(slug, None)
        self._dirty.pop(slug, None)
        self.metrics.forget_market(slug)
        if self._odds_feed is not None:
            self._odds_feed.set_targets(self._odds_targets())
        self._markets_wake.set()
        self._odds_wake.set()

    async def _follow_universe(self, stream: Any) -> None:
        """Keep the markets stream's subscriptions equal to the universe: woken by the universe's
        listeners, debounced so a discovery pass adding 50 markets makes one change."""
        while True:
            self._markets_wake.reset()
            await stream.set_markets(list(self.universe))
            await self._markets_wake.wait()
            await self._settle(self._markets_wake)

    @staticmethod
    async def _settle(wake: Wake) -> None:
        """Wait until the universe was quiet for UNIVERSE_DEBOUNCE_SECONDS (a discovery pass
        adds its markets one by one), but no longer than UNIVERSE_DEBOUNCE_MAX_SECONDS."""
        end = trio.current_time() + UNIVERSE_DEBOUNCE_MAX_SECONDS
        while trio.current_time() < end:
            wake.reset()
            with trio.move_on_after(UNIVERSE_DEBOUNCE_SECONDS):
                await wake.wait()
            if not wake.is_set():
                return

    def _market_no_data(self, slug: str, no_data: bool) -> None:
        """The markets stream gave up on (or heard at last from) a market's subscription."""
        self.universe.update(slug, no_data=no_data)
        if no_data:
            self.recent_errors.append(f"{slug} not opened: its subscription sent no data")
            self._alert(Level.WARNING, "Market subscription never answered",
                        f"{slug}: no snapshot after every re-send; the market is not traded "
                        "(no_data) until its data arrives", key="no_data")

    async def on_book_frame(self, book: Any, now: float) -> None:
        """A full book from the markets stream, in the socket's task: the book, then the decision
        for its market and any order it makes, with no task hop in between (issue 15)."""
        if self.on_market_book(book, now):
            # this decision sees the latest fair value too: a mark the trader has not taken yet
            # is answered by it (deciding the market twice would only repeat it)
            self._dirty.pop(book.market_slug, None)
            await self.evaluate_market(book.market_slug, now)

    def on_market_book(self, book: Any, now: float) -> bool:
        """A full book: the engine and the venue take it. False for a retired market's last
        frames (before its unsubscribe lands): nothing is kept, nothing to decide."""
        slug = book.market_slug
        if self._reference_loaded and slug not in self.universe:
            return False
        commands = self.engine.book_replaced(book)
        self.executor.on_book(book, trusted=self.books.is_trusted(slug))
        for cmd in commands:
            if isinstance(cmd, MarketStateChanged):
                self.executor.on_market_state(cmd.market_slug, cmd.state)
        self._received_at[slug] = now
        return True

    async def odds_child(self, progress: Progress, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        s = self.settings
        task_status.started()
        if s.opticodds_api_key is None:
            progress.degraded("no OPTICODDS_API_KEY: the bot cannot price, so it never trades")
            while True:
                progress.beat()
                await trio.sleep(5.0)
        from polybot.opticodds.client import OpticOddsClient
        from polybot.opticodds.feed import OddsFeed, OddsFeedConfig
        from polybot.reference import match_all

        while not self._reference_loaded:
            progress.beat()
            await trio.sleep(0.2)
        async with OpticOddsClient(s.opticodds_base_url, s.opticodds_api_key,
                                   transport=self.edges.opticodds) as client:
            if self.recording is not None:
                client.recording = self.recording.rest_tap("opticodds")
            # configured (and held) markets are matched here; discovery matches what it adds
            pending = [listing.slug for listing in self.universe.listings()
                       if listing.target is None and listing.origin is not Origin.DISCOVERED]
            result = await match_all(self.rest, client, self.universe, pending,
                                     s.odds_market_map, progress)
            progress.recovered()
            for target in result.targets:  # the universe holds each market's fixture target
                self.universe.update(target.slug, target=target, target_confirmed=True,
                                     unmatched_reason="")
            for miss in result.unmatched:
                self.recent_errors.append(f"{miss.slug} not matched: {miss.reason}")
                self.universe.update(miss.slug, unmatched_reason=miss.reason)
            config = OddsFeedConfig(sportsbooks=s.opticodds_sportsbooks,
                                    weights=s.odds_book_weights, min_books=s.odds_min_books,
                                    method=s.odds_devig_method, stale_seconds=s.stale_feed_seconds)
            feed = OddsFeed(client, self.fair_values, self._odds_targets(), config,
                            on_progress=progress.beat)
            if self.recording is not None:
                feed.tap = self.recording.tap("odds")
            self._odds_feed = feed
            async with trio.open_nursery() as nursery:
                await nursery.start(feed.run)
                nursery.start_soon(self._follow_odds, feed, progress)

    @staticmethod
    def _odds_target(listing: Any) -> Any:
        """The fixture the odds feed prices a market from: set and confirmed, else none."""
        return listing.target if listing.target is not None and listing.target_confirmed else None

    def _odds_targets(self) -> list[Any]:
        return [t for listing in self.universe.listings()
                if (t := self._odds_target(listing)) is not None]

    async def _follow_odds(self, feed: Any, progress: Progress) -> None:
        """Keep the odds feed's targets equal to the universe's confirmed ones (woken by the
        universe's listeners, debounced): adds and removals without restarting the group.

        A feed with no target (no game matched yet, an off-season) streams nothing and so shows
        no progress of its own: that is idle, not hung, and is beaten for here."""
        while True:
            self._odds_wake.reset()
            feed.set_targets(self._odds_targets())
            while True:
                if not feed.market_keys():
                    progress.beat()
                with trio.move_on_after(5.0):
                    await self._odds_wake.wait()
                if self._odds_wake.is_set():
                    break
            await self._settle(self._odds_wake)

    async def discovery_child(self, progress: Progress, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """MARKET_LEAGUES' games into the universe every DISCOVERY_INTERVAL_SECONDS, each matched
        to its OpticOdds fixture (`polybot.discovery`). Its state (alerts, per-league status)
        outlives a restart of the group; its OpticOdds client does not."""
        from contextlib import AsyncExitStack
        from datetime import timedelta

        from polybot.discovery import Discovery
        from polybot.opticodds.client import OpticOddsClient

        s = self.settings
        levels = {"info": Level.INFO, "warning": Level.WARNING, "error": Level.ERROR}

        def holds(slug: str) -> bool:  # MAX_MARKETS never evicts a market in use
            return bool(self.lifecycle.in_use(slug))

        def ready() -> bool:
            # partner confirmations wait for the exchange side to be up (metadata loaded, market
            # feed connected); not for the odds feed, whose targets they are confirming
            stream = self._markets_stream
            return self._reference_loaded and stream is not None and stream.status.connected

        async with AsyncExitStack() as stack:
            odds = None
            if s.opticodds_api_key is not None:
                odds = await stack.enter_async_context(
                    OpticOddsClient(s.opticodds_base_url, s.opticodds_api_key,
                                    transport=self.edges.opticodds))
                if self.recording is not None:
                    odds.recording = self.recording.rest_tap("opticodds")
            if self._discovery is None:
                self._discovery = Discovery(
                    self.rest, odds, self.universe, leagues=s.market_leagues,
                    odds_league=s.odds_league, clock=self.clock,
                    horizon=timedelta(hours=s.discovery_horizon_hours),
                    interval=s.discovery_interval_seconds, max_markets=s.max_markets,
                    holds=holds, ready=ready, types=s.market_types,
                    retired=self.lifecycle.was_retired,
                    alert=lambda level, title, text, key: self._alert(
                        levels.get(level, Level.WARNING), title, text, key=key))
            self._discovery.odds = odds
            await self._discovery.run(progress, task_status=task_status)

    async def executor_child(self, progress: Progress, *,
                             task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from polybot.polymarket.stream import PrivateStream, stream_config_from_settings

        live = self.live
        assert live is not None  # the child exists in live mode only
        send, recv = trio.open_memory_channel[Any](10_000)
        # every market of the account (no marketSlugs, reference §4.2): the universe never
        # changes this subscription; its liveness is the order snapshot's eof and heartbeats
        stream = PrivateStream(stream_config_from_settings(self.settings), self.signer, send,
                               progress=progress.beat, auth_probe=self.rest.balances,
                               clock=self.clock, connect=self.edges.websocket,
                               rng=self.edges.rng)
        if self.recording is not None:
            stream.tap = self.recording.tap("private")
        self._private_stream = stream
        async with trio.open_nursery() as nursery:
            if getattr(self.rest, "fast", None) is not None:  # warm sockets for order creates
                await nursery.start(self.rest.fast.run)
            await nursery.start(stream.run)
            await nursery.start(live.run, recv)
            task_status.started()
            while True:
                if live.reconciled and not live.adoption_pending and not self.trading.begun:
                    # the day's baselines only now: the ledger holds what the exchange holds
                    self._reconciled()
                # An exchange the executor cannot reconcile with is a dependency down: /health
                # says "degraded" and why (it stays 200), /ready says 503.
                if live.trading_allowed:
                    progress.recovered()
                else:
                    progress.degraded(f"live executor: {live.readiness_reason}")
                await trio.sleep(0.1 if not self.trading.begun else 0.5)

    async def trader_child(self, progress: Progress, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Decisions: the only caller of the venue's submit."""
        task_status.started()
        while True:
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()
            progress.beat()
            dirty, self._dirty = self._dirty, {}
            for slug, marked_at in dirty.items():
                if self.stopping:
                    break
                await self.evaluate_market(slug, marked_at)

    async def evaluate_market(self, slug: str, since: float) -> None:
        """Decide for one market and carry the commands out; again while the engine says a
        further signal of the same market is waiting (at most one order per decision).

        `since`: when the event that asks for this decision arrived (a book frame, a fair value
        that changed), on Trio's clock: the decision latency runs from it."""
        again = True
        while again and not self.stopping:
            signals_before = self.counters.signals
            decision = self.engine.decide(slug, self.clock.now(), trio.current_time(), since)
            await self.execute(decision.commands)
            if self.counters.signals > signals_before:  # metrics after the send
                self.metrics.count_signals(slug, self.counters.signals - signals_before)
            again = decision.again

    async def execute(self, commands: list[Command]) -> None:
        """Carry out the engine's commands, in order."""
        for cmd in commands:
            if isinstance(cmd, PlaceOrder):
                if self.stopping:
                    return
                await self._submit(cmd)
            elif isinstance(cmd, SyncResting):
                self.executor.sync_signals(cmd.market_slug, cmd.signals)
            elif isinstance(cmd, RecordRejection):
                self.metrics.rejections.labels(reason=cmd.rejection.reason).inc()
                self.store.record_rejection(cmd.rejection)
            elif isinstance(cmd, CancelAll):
                cancelled = self.executor.cancel_all(reason=cmd.reason)
                log.warning("%s: cancelling the bot's open orders (%d)", cmd.reason, len(cancelled))
            elif isinstance(cmd, MarketStateChanged):
                self.executor.on_market_state(cmd.market_slug, cmd.state)
            elif isinstance(cmd, DecideAll):  # the trader decides them
                log.info("%s: deciding every market again", cmd.reason)
                self._mark_all_dirty()

    async def _submit(self, cmd: PlaceOrder) -> Any:
        """Send one order (the venue awaits the exchange's answer in a task of its own); the
        metrics and the fair value's row are written after the send."""
        request = cmd.request
        order = await self.executor.send(request)
        self.gate.log_approved(request)
        if cmd.received_at is not None:
            self.metrics.decision_latency.observe(max(0.0, trio.current_time() - cmd.received_at))
        outcome = order.state._name_.lower() if order is not None else "refused"
        self.metrics.count_order(outcome)
        fair = request.signal.fair_q if request.signal is not None else None
        if fair is not None:
            self.store.record_fair_value(request.market_slug, fair)
        return order

    async def control_child(self, progress: Progress, *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The kill switch and resume request: seen within 0.5 s, acted on in the same poll."""
        task_status.started()
        while True:
            progress.beat()
            seen = control.poll_files(self.settings.data_dir)
            now, mono = self.clock.now(), self.clock.monotonic()
            self._record_input(ENGINE_OPERATOR_FILES, kill=seen.kill,
                               kill_reason=seen.kill_reason, resume=seen.resume,
                               now=now, mono=mono)
            await self.execute(self.engine.operator_files(
                kill=seen.kill, kill_reason=seen.kill_reason, resume=seen.resume,
                now=now, mono=mono))
            await trio.sleep(control.POLL_SECONDS)

    async def housekeeping_child(self, progress: Progress, *,
                                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The trading state's clock tick, operator requests, persistence and metrics.

        A flatten runs in a task of its own (it waits on the exchange for seconds), so halts,
        persistence and metrics go on meanwhile; one flatten at a time.
        """
        self._flattening = False  # a flatten cancelled by a group restart is requested again
        async with trio.open_nursery() as nursery:
            task_status.started()
            last_equity_snapshot = -1e9
            last_status_line = -1e9
            while True:
                progress.beat()
                now = trio.current_time()
                wall = self.clock.now()
                self._record_input(ENGINE_TICK, now=wall, mono=now)
                await self.execute(self.engine.tick(wall, now))
                self.lifecycle.retire_finished(self.clock.now())
                self.handle_operator_requests(nursery)
                self.persist()
                if now - last_equity_snapshot >= 60.0:
                    last_equity_snapshot = now
                    self.store.record_ledger_equity(self.ledger, usd_at_risk=self.exposure.portfolio,
                                                    trading_state=self.trading.state.value)
                    self.views.record_daily_stats()
                    self.registry.forget_closed()
                self.views.update_metrics()
                if self.status_line is not None and now - last_status_line >= 5.0:
                    last_status_line = now
                    self.status_line(self.views.one_line_status())
                await trio.sleep(1.0)

    # --- operator requests and persistence ------------------------------------------------------

    def handle_operator_requests(self, nursery: trio.Nursery) -> None:
        data_dir = self.settings.data_dir
        for req in operator_requests.read_requests(data_dir):
            kind = req["kind"]
            if kind == "cancel-all":
                self._record_input(ENGINE_CANCEL_ALL, request_id=req["id"])
                cancelled = self.executor.cancel_all(reason="operator cancel-all")
                self.store.ack_request(req["id"], kind, "done",
                                       f"{len(cancelled)} open order(s) cancelled")
            elif kind == "flatten":
                if not self._flattening:  # else it stays pending until the running one is done
                    self._flattening = True
                    self._record_input(ENGINE_FLATTEN, request_id=req["id"])
                    self.engine.request_flatten()
                    # resting orders go first: a GTC opening order would keep adding to what is
                    # being closed, and a resting own bid would make the closing sell a self-match
                    self.executor.cancel_all(reason="operator flatten")
                    nursery.start_soon(self._flatten_request, req)
                continue  # acknowledged and removed when done
            else:
                self.store.ack_request(req["id"], kind, "unknown request", "")
            operator_requests.remove_request(data_dir, req["id"])

    async def _flatten_request(self, req: dict[str, Any]) -> None:
        sent, still_open = await self.flatten()
        detail = f"{sent} closing order(s) sent; "
        detail += ("still open: " + "; ".join(still_open)) if still_open else "every position closed"
        self.store.ack_request(req["id"], req["kind"], "done",
                               detail + "; trading is REDUCING until `polybot resume`")
        operator_requests.remove_request(self.settings.data_dir, req["id"])
        self._flattening = False

    async def flatten(self) -> tuple[int, list[str]]:
        """Close every position with IOC orders (rounds a second apart); what stays open."""
        sent = 0
        stuck: list[str] = []
        for _ in range(FLATTEN_ROUNDS):
            if not self.ledger.positions or self.stopping:
                break
            orders, stuck = self.engine.flatten_orders(self.clock.now(), trio.current_time())
            for cmd in orders:
                order = await self._submit(cmd)
                if order is not None:  # None: the venue refused it (nothing was sent)
                    sent += 1
            await trio.sleep(1.0)
        still_open = [f"{slug} {pos.net_qty:+}" for slug, pos in self.ledger.positions.items()]
        return sent, still_open if still_open else stuck

    def persist(self) -> None:
        self.store.save_ledger(self.ledger.drain_changes())
        halt = self.trading.halt_state()
        if halt != self._last_halt_state:
            self._last_halt_state = halt
            self.store.save_halt_state(self.trading.state.value, self.trading.reason,
                                       halt.to_dict())

    # --- lifecycle -----------------------------------------------------------------------------------

    async def request_stop(self) -> None:
        """No new orders; let creates in flight get their answer; then stop the group.

        Stopping the group cancels its tasks, and a create cancelled mid-POST may still land at
        the exchange after the bot has stopped looking, so the group is only stopped once the
        creates in flight are answered (bounded): the venue then knows their ids and the
        shutdown cancels them.
        """
        if self._stop_deadline is None:
            self._stop_deadline = trio.current_time() + SHUTDOWN_BOUND_SECONDS
        self.stopping = True
        with trio.move_on_after(CREATE_WAIT_SECONDS):
            while self.executor.creates_in_flight:
                await trio.sleep(0.02)
        self.supervisor.stop()

    async def shutdown(self) -> int:
        """Stop trading, resolve creates in flight, cancel our orders (shielded, bounded), flush."""
        self.stopping = True
        code = EXIT_OK
        deadline = self._stop_deadline or trio.current_time() + SHUTDOWN_BOUND_SECONDS
        with trio.CancelScope(shield=True), trio.move_on_at(deadline) as scope:
            if self.live is not None:
                report = await self.live.shutdown(cancel=self.settings.cancel_on_shutdown)
                if not report.all_confirmed:
                    code = EXIT_UNCONFIRMED
                    self._alert(Level.ERROR, "Orders may still be open after shutdown",
                                str(report), key="shutdown")
            elif self.settings.cancel_on_shutdown:
                self.executor.cancel_all(reason="shutdown")
            self.persist()
            self.store.record_ledger_equity(self.ledger, usd_at_risk=self.exposure.portfolio,
                                            trading_state=self.trading.state.value)
            await self.store.flush()
        if scope.cancelled_caught:
            code = EXIT_UNCONFIRMED
            self._alert(Level.ERROR, "Shutdown overran its time limit",
                        "open orders may remain at the exchange", key="shutdown")
        return code

    # --- what the health app, the status line and the tests read -------------------------------------

    def status_report(self) -> Any:
        return self.views.status_report()

    def usd_at_risk(self) -> Any:
        return self.exposure.portfolio

    def not_ready_reason(self) -> str | None:
        return self.views.not_ready_reason()

    def update_metrics(self) -> None:
        self.views.update_metrics()


async def run_bot(settings: Settings, *, duration: float | None = None,
                  clock: Clock | None = None,
                  status_line: Callable[[str], None] | None = None,
                  on_health_port: Callable[[int], None] | None = None,
                  on_finish: Callable[[dict[str, Any]], object] | None = None,
                  edges: Edges = NETWORK, hang_scale: float = 1.0) -> int:
    """Run until a signal (or `duration` seconds); returns the process exit code.

    `edges`: where the I/O goes (the network; a backtest's recording: `polybot.backtest`).

    `hang_scale`: the supervised children's progress deadlines are this many times longer (an
    accelerated demo passes its speed, so a hang is still judged in real seconds).

    `on_finish` receives {"status": the final StatusReport, "code": exit code} (the demo's summary).

    Raises `polybot.claims.DataDirInUse` (before anything is opened) when another process runs a
    bot on the same DATA_DIR; DATA_DIR/LOCK is held until this returns (or the process dies).
    """
    with DataDirLock.acquire(settings.data_dir):
        bot = Bot(settings, clock=clock, status_line=status_line, edges=edges, hang_scale=hang_scale)
        sd = SystemdNotifier.from_env()
        health = HealthApp(HealthSources(supervisor=bot.supervisor.state,
                                         not_ready_reason=bot.views.not_ready_reason,
                                         status=bot.views.status_report, metrics=bot.metrics,
                                         degraded=bot.views.degraded), secrets=bot.secrets,
                           dashboard=Dashboard(DashboardConfig(
                               settings.data_dir, health_host=settings.health_host,
                               token=settings.dashboard_token.reveal()
                               if settings.dashboard_token is not None else None)))

        def listening(port: int) -> None:
            bot.health_port = port
            if on_health_port is not None:
                on_health_port(port)

        code = EXIT_OK
        try:
            async with trio.open_nursery() as root:
                await root.start(bot.store.run)
                if bot.recording is not None:  # written until the root is cancelled, after shutdown
                    await root.start(bot.recording.run)
                await root.start(bot.notifier.run)
                await root.start(functools.partial(serve_health, health, settings.health_host,
                                                   settings.health_port, on_listening=listening))
                root.start_soon(_signal_watcher, bot, root)
                if duration is not None:
                    root.start_soon(_stop_after, bot, duration)
                bot._alert(Level.INFO, "polybot started",
                           f"{bot.mode} mode, {len(settings.market_slugs)} market(s)"
                           + (f", leagues {','.join(settings.market_leagues)}"
                              if settings.market_leagues else ""), key="lifecycle")
                sd.ready()
                code = await bot.supervisor.run()
                if code == EXIT_OK:  # a requested stop, not a failure
                    sd.stopping()
                    code = await bot.shutdown()
                    bot._alert(Level.INFO, "polybot stopped", f"exit code {code}", key="lifecycle")
                else:
                    # The restart budget is spent (systemd restarts the process after RestartSec):
                    # the same bounded shutdown, so no GTC order rests unattended meanwhile.
                    bot.stopping = True
                    sd.stopping()
                    await bot.shutdown()
                with trio.move_on_after(2.0):
                    await bot.notifier.flush(2.0)
                if on_finish is not None:
                    on_finish({"status": bot.status_report(), "code": code})
                root.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await bot.rest.aclose()
            bot.store.close()
            if bot.c.claims is not None:
                bot.c.claims.release_all()
        return code


async def _signal_watcher(bot: Bot, nursery: trio.Nursery) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if bot.stopping:
                log.error("second signal: exiting at once")
                os._exit(128 + signum)
            log.warning("%s: stopping (no new orders; cancelling our open orders)",
                        signal.Signals(signum).name)
            bot.stopping = True
            nursery.start_soon(bot.request_stop)  # this loop stays ready for a second signal


async def _stop_after(bot: Bot, seconds: float) -> None:
    await trio.sleep(seconds)
    log.info("--duration %.0f s reached: stopping", seconds)
    await bot.request_stop()
