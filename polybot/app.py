"""The composition root: builds every component from Settings and runs the supervised process.

This is the only module that knows every component. Data flows one way:

    markets websocket -> market feed -> BookStore ----------\\
    OpticOdds stream  -> odds feed   -> FairValues ---------+-> trader: evaluate -> risk gate
                                                                 -> executor (paper | live) -> ledger -> store

Process layout (one root nursery):

- outside the supervised group, because they must outlive a group restart: the store's writer
  task, the notifier, the health server (a health endpoint that died with the group could never
  answer "503 restarting"), the REST client (shutdown cancels need it after the group is gone),
  and the state the group's children read and write: ledger, order registry, risk gate, books,
  fair values.
- inside the group (`polybot.supervisor`), rebuilt on every restart: `reference` (market
  metadata, then matching to OpticOdds fixtures), `markets` (the markets websocket feeding the
  BookStore), `odds` (the OpticOdds feed writing FairValues), `executor` (live mode: the private
  websocket and the live executor's tasks), `trader` (signal evaluation and risk gating, the only
  caller of the executor's submit) and `housekeeping` (the gate's halts and kill switch, operator
  requests, persistence, metrics).

Shutdown (SIGINT/SIGTERM, or `--duration` in the demo): no new orders; creates in flight get
their answer (at most 3 s: a create cancelled mid-POST could land unseen after the bot stopped
looking); the group stops; then in a shielded scope ending 8 s after the signal the executor
resolves what is still unknown and cancels the bot's open orders (`CANCEL_ON_SHUTDOWN`), the
ledger is saved and the store flushed. Exit 0 when every cancel
is confirmed, else 1 with an alert naming what is still open. A second signal exits at once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from polybot import operator as operator_requests
from polybot.book import BookStore
from polybot.config import Settings, load_settings
from polybot.errors import (
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_OK,
    EXIT_UNCONFIRMED,
    FatalCredentialsError,
)
from polybot.execution.orders import OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.fairvalues import FairValues
from polybot.health import HealthApp, HealthSources, MarketRow, StatusReport, serve_health
from polybot.ledger import Ledger
from polybot.logs import configure_from_settings
from polybot.metrics import Metrics
from polybot.model import (
    BookSnapshot,
    FairValue,
    Intent,
    MarketInfo,
    MarketState,
    OrderRequest,
    Signal,
    TimeInForce,
    TradingState,
)
from polybot.notify import DiscordWebhook, Level, Notifier, TelegramBot
from polybot.pricing import fee_per_contract
from polybot.risk import RiskGate, RiskLimits, at_risk_by_market, portfolio_at_risk
from polybot.sdnotify import SystemdNotifier, watchdog_interval
from polybot.store import Store
from polybot.strategy import StrategyParams, evaluate, taker_theta
from polybot.supervisor import ChildSpec, Progress, Supervisor

log = logging.getLogger("polybot.app")

SHUTDOWN_BOUND_SECONDS = 8.0  # signal to flushed store, inside the 10 s the operator is promised
CREATE_WAIT_SECONDS = 3.0  # of those, at most this long for creates in flight to be answered
FLATTEN_TICKS = 5
FLATTEN_ROUNDS = 5


@attrs.define
class Counters:
    signals: int = 0
    orders: int = 0
    rejections: int = 0


class Bot:
    """Every component of one process, and the supervised children that drive them."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] | None = None,
                 status_line: Callable[[str], None] | None = None) -> None:
        from polybot.polymarket.rest import client_from_settings, signer_from_settings

        self.settings = settings
        self.mode = settings.trading_mode
        self.clock = clock or (lambda: datetime.now(UTC))
        self.status_line = status_line
        self.metrics = Metrics.create()
        self.metrics.daily_loss_limit_usd.set(float(settings.risk_max_daily_loss))
        self.secrets = settings.secret_values()
        self.notifier = Notifier(_sinks(settings), metrics=self.metrics, secrets=self.secrets)
        self.store = Store.open(settings.data_dir)
        switch = self.store.switch_mode(self.mode)  # before anything reads the ledger
        if switch is not None:
            log.warning("%s", switch.describe())
            self._alert(Level.WARNING, "Trading mode switched", switch.describe(), key="mode")
        self.ledger = self._restore_ledger()
        self.registry = OrderRegistry()
        self.gate = RiskGate(RiskLimits.from_settings(settings), data_dir=settings.data_dir,
                             reset_tz=settings.daily_reset_tz, reset_hour=settings.daily_reset_hour,
                             notify=self._on_risk_notice)
        halt = self.store.load_halt_state()
        if halt is not None and halt.data:
            self.gate.restore(halt.data)
        self.books = BookStore()
        self.fair_values = FairValues()
        self.fair_values.add_listener(self._fair_changed)
        self.signer = signer_from_settings(settings)
        self.rest = client_from_settings(settings)
        self.markets: dict[str, MarketInfo] = {}
        self.event_of: dict[str, str] = {}
        self.counters = Counters()
        self.recent_errors: deque[str] = deque(maxlen=20)
        self.stopping = False
        self.strategy_params = StrategyParams(
            min_edge=settings.risk_min_edge, trade_in_play=settings.trade_in_play,
            stop_before_start_minutes=settings.stop_before_start_minutes)
        self.tif = TimeInForce.GTC if settings.order_tif == "gtc" else TimeInForce.IOC
        self.recorder = _FillCounting(self.store, self.metrics)
        self.executor: Any = self._build_executor()
        self.supervisor = self._build_supervisor()
        self._dirty: set[str] = set()
        self._wake = trio.Event()
        self._last_halt_state: Any = None
        self._received_at: dict[str, float] = {}
        self._markets_stream: Any = None
        self._private_stream: Any = None
        self._odds_feed: Any = None
        self._reference_loaded = False
        self._halt_cancel_pending = False
        self._flattening = False
        self._submits_in_flight = 0
        self._stop_deadline: float | None = None
        self._day_base: tuple[Any, int, Decimal, int] | None = None  # counts when the day began
        self.health_port: int | None = None

    # --- construction ------------------------------------------------------------------------------

    def _restore_ledger(self) -> Ledger:
        state = self.store.load_ledger()
        if state is not None:
            ledger = Ledger.restore(state)
            log.info("ledger restored from %s: cash %s, %d position(s)", self.store.path,
                     ledger.cash, len(ledger.positions))
            return ledger
        return Ledger(self.settings.initial_balance if self.mode == "paper" else Decimal(0))

    def _build_executor(self) -> Any:
        if self.mode == "paper":
            executor = PaperExecutor(self.registry, self.ledger, self.books,
                                     recorder=self.recorder,
                                     markets=self.markets)
            # Paper orders left open by a previous run no longer exist anywhere: book them cancelled.
            executor.cancel_restored(self.store.load_orders())
            return executor
        from polybot.execution.live import LiveConfig, LiveExecutor

        return LiveExecutor(self.rest, self.registry, self.ledger, self.recorder,
                            slugs=list(self.settings.market_slugs),
                            config=LiveConfig(cancel_unknown_orders=self.settings.cancel_unknown_orders),
                            notify=self._on_live_notice, markets=self.markets,
                            on_transfer=self.gate.on_transfer, on_adopted=self._rebase_gate)

    def _rebase_gate(self, equity: Decimal) -> None:
        """The account was adopted: the day's start and the high-water mark start at its equity."""
        self.gate.restore(attrs.evolve(self.gate.halt_state(), day_start_equity=equity,
                                       high_water_mark=equity))
        log.info("risk: day start and high-water mark re-based at the adopted equity %s", equity)

    def _build_supervisor(self) -> Supervisor:
        s = self.settings
        stale = s.stale_feed_seconds
        children = [
            ChildSpec("reference", self.reference_child, progress_deadline=max(120.0, 8 * stale)),
            ChildSpec("markets", self.markets_child, progress_deadline=max(60.0, 4 * stale)),
            ChildSpec("odds", self.odds_child, progress_deadline=max(60.0, 4 * stale)),
        ]
        if self.mode == "live":
            children.append(ChildSpec("executor", self.executor_child,
                                      progress_deadline=max(60.0, 4 * stale)))
        children += [
            ChildSpec("trader", self.trader_child, progress_deadline=60.0),
            ChildSpec("housekeeping", self.housekeeping_child, progress_deadline=30.0),
        ]
        sd = SystemdNotifier.from_env()
        return Supervisor(children, max_restarts=s.supervisor_max_restarts,
                          window_seconds=s.supervisor_window_seconds,
                          keepalive=sd.watchdog if sd.enabled else None,
                          keepalive_interval=watchdog_interval(),
                          alert=self.notifier.send_nowait,
                          status=sd.status if sd.enabled else None, metrics=self.metrics)

    # --- notices from the components -----------------------------------------------------------

    def _alert(self, level: Level, title: str, text: str = "", key: str | None = None) -> None:
        self.notifier.alert(level, title, text, key=key)

    def _on_risk_notice(self, notice: Any) -> None:
        kind = getattr(notice, "kind", "")
        message = getattr(notice, "message", str(notice))
        if kind == "halt_entered":
            self._halt_cancel_pending = True
            self._alert(Level.ERROR, "Trading halted", message, key="halt")
        elif kind == "halt_left":
            self._alert(Level.INFO, "Trading resumed", message, key="halt")
        elif kind == "rejection_burst":
            self._alert(Level.WARNING, "Burst of risk rejections", message, key="rejections")
        else:
            log.info("risk: %s", message)

    def _on_live_notice(self, notice: Any) -> None:
        level = getattr(notice, "level", "warning")
        text = getattr(notice, "message", str(notice))
        title = getattr(notice, "title", "Live execution")
        self._alert(Level.ERROR if str(level).lower() in ("error", "critical") else Level.WARNING,
                    title, text, key=getattr(notice, "kind", None))

    def _fair_changed(self, slug: str) -> None:
        self._mark_dirty(slug)

    def _mark_dirty(self, slug: str) -> None:
        self._dirty.add(slug)
        self._wake.set()

    # --- children ----------------------------------------------------------------------------------

    async def reference_child(self, progress: Progress, *,
                              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Market metadata (tick, min qty, fee coefficient, event, start time), then matching."""
        task_status.started()
        attempt = 0
        while True:
            try:
                await self._load_markets()
                break
            except FatalCredentialsError:
                raise
            except Exception as exc:  # the exchange may be in maintenance: keep trying
                attempt += 1
                progress.reconnecting(attempt, exc)
                self.recent_errors.append(f"market metadata: {exc}")
                await trio.sleep(min(30.0, 2.0 ** min(attempt, 5)))
        progress.recovered()
        self._reference_loaded = True
        for slug in self.markets:
            self._mark_dirty(slug)
        while True:  # keep the watchdog fed; metadata changes (status) arrive with the books
            progress.beat()
            await trio.sleep(5.0)

    async def _load_markets(self) -> None:
        for slug in self.settings.market_slugs:
            if slug in self.markets:
                continue
            info = await self.rest.market_by_slug(slug)
            if info.event_id and info.start_time is None:
                try:
                    event, _ = await self.rest.event_by_id(info.event_id)
                    if event.start_time is not None:
                        info = attrs.evolve(info, start_time=event.start_time)
                except Exception as exc:
                    log.warning("event of %s not loaded (%s): start time from OpticOdds", slug, exc)
            self.markets[slug] = info
            self.event_of[slug] = info.event_id or slug
        log.info("market metadata loaded for %d market(s)", len(self.markets))

    async def markets_child(self, progress: Progress, *,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from polybot.polymarket import wire
        from polybot.polymarket.stream import (
            ContinuityLost,
            MarketsStream,
            StreamConnected,
            stream_config_from_settings,
        )

        send, recv = trio.open_memory_channel[Any](10_000)
        stream = MarketsStream(stream_config_from_settings(self.settings), self.signer, send,
                               self.settings.market_slugs,
                               subscription_types=("SUBSCRIPTION_TYPE_MARKET_DATA",
                                                   "SUBSCRIPTION_TYPE_TRADE"),
                               progress=progress.beat, auth_probe=self.rest.balances)
        self._markets_stream = stream
        self.books.mark_untrusted()
        async with trio.open_nursery() as nursery:
            await nursery.start(stream.run)
            task_status.started()
            async for event in recv:
                now = trio.current_time()
                if isinstance(event, wire.BookReplaced):
                    self.on_market_book(event.book, now)
                elif isinstance(event, wire.TradePrinted):
                    self.executor.on_trade(event.trade)
                elif isinstance(event, ContinuityLost):
                    self.books.mark_untrusted()
                    progress.degraded(f"exchange market feed down: {event.reason}")
                elif isinstance(event, StreamConnected):
                    progress.recovered()

    def on_market_book(self, book: BookSnapshot, now: float) -> None:
        """A full book from the markets stream: books, marks, the executor, the trader."""
        slug = book.market_slug
        previous = self.books.get(slug)
        self.books.update(book)
        trusted = self.books.is_trusted(slug)
        self.ledger.on_book(book, trusted=trusted)
        self.executor.on_book(book, trusted=trusted)
        if book.state is not MarketState.OPEN and (previous is None
                                                   or previous.state is not book.state):
            # the live executor checks soon and settles an expired market it holds once the
            # value is published, even when the private stream's resolution frame was lost
            on_state = getattr(self.executor, "on_market_state", None)
            if on_state is not None:
                on_state(slug, book.state)
        self._received_at[slug] = now
        self._mark_dirty(slug)

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

        while not self._reference_loaded:
            progress.beat()
            await trio.sleep(0.2)
        async with OpticOddsClient(s.opticodds_base_url, s.opticodds_api_key) as client:
            result = await self._match(client, progress)
            progress.recovered()
            for miss in result.unmatched:
                self.recent_errors.append(f"{miss.slug} not matched: {miss.reason}")
            config = OddsFeedConfig(sportsbooks=s.opticodds_sportsbooks,
                                    weights=s.odds_book_weights, min_books=s.odds_min_books,
                                    method=s.odds_devig_method, stale_seconds=s.stale_feed_seconds)
            feed = OddsFeed(client, self.fair_values, result.targets, config,
                            on_progress=progress.beat)
            self._odds_feed = feed
            await feed.run(task_status=trio.TASK_STATUS_IGNORED)

    async def _match(self, client: Any, progress: Progress) -> Any:
        """Every market matched to its OpticOdds fixture, or reported unmatched for good.

        `match_markets` reports a market whose lookup raised as "not matched" and goes on; for a
        5xx, a 429, a timeout or a refused connection that would leave the market untraded for
        the life of the process while /ready says 200. Such markets are matched again (backoff
        capped at 30 s, reported as reconnecting, so /health says degraded and why) until the
        lookups answer — the bot waits for an unreachable service, as for the exchange's
        metadata. Markets are matched one by one to know which lookup failed.
        """
        from polybot.matching import MatchResult, lookups, match_markets

        look = lookups(self.rest, client)
        targets: list[Any] = []
        unmatched: list[Any] = []
        pending = list(self.markets)
        attempt = 0
        while True:
            retry: list[tuple[str, str]] = []
            for slug in pending:
                transient: list[str] = []
                noting: dict[str, Any] = {
                    name: _noting_transient(fn, transient) for name, fn in look.items()}
                one = await match_markets([slug], overrides=self.settings.odds_market_map,
                                          **noting)
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

    async def executor_child(self, progress: Progress, *,
                             task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from polybot.polymarket.stream import PrivateStream, stream_config_from_settings

        send, recv = trio.open_memory_channel[Any](10_000)
        stream = PrivateStream(stream_config_from_settings(self.settings), self.signer, send,
                               slugs=self.settings.market_slugs, progress=progress.beat,
                               auth_probe=self.rest.balances)
        self._private_stream = stream
        async with trio.open_nursery() as nursery:
            await nursery.start(stream.run)
            await nursery.start(self.executor.run, recv)
            task_status.started()
            while True:
                # An exchange the executor cannot reconcile with is a dependency down: /health
                # says "degraded" and why (it stays 200), /ready says 503.
                if self.executor.trading_allowed:
                    progress.recovered()
                else:
                    progress.degraded(f"live executor: {self.executor.readiness_reason}")
                await trio.sleep(0.5)

    async def trader_child(self, progress: Progress, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Signal evaluation and risk gating: the only caller of the executor's submit."""
        task_status.started()
        while True:
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()
            progress.beat()
            dirty, self._dirty = self._dirty, set()
            for slug in dirty:
                if self.stopping:
                    break
                await self.evaluate_market(slug)

    def _open_orders(self) -> list[Any]:
        if hasattr(self.executor, "risk_orders"):
            return list(self.executor.risk_orders())
        return self.registry.open_model_orders()

    def signals_for(self, slug: str) -> list[Signal]:
        market = self.markets.get(slug)
        book = self.books.get(slug)
        if market is None or book is None:
            return []
        if hasattr(self.executor, "effective_book"):
            # paper: liquidity the bot already took stays taken until the book shows it refreshed
            book = self.executor.effective_book(book)
        fair = self.fair_values.usable(slug)
        fixture = self.fair_values.fixture(slug)
        return evaluate(book, fair, market, self.ledger.position(slug), self.strategy_params,
                        self.clock(), book_trusted=self.books.is_trusted(slug),
                        fair_trusted=fair is not None, created_at=trio.current_time(),
                        fallback_start=fixture.start_time if fixture else None)

    async def evaluate_market(self, slug: str) -> None:
        signals = self.signals_for(slug)
        self.executor.sync_signals(slug, signals)
        if self.gate.state is TradingState.HALTED and not signals:
            return
        for sig in signals:
            if self.stopping:
                return
            self.counters.signals += 1
            self.metrics.signals.labels(market=slug).inc()
            if hasattr(self.executor, "can_submit") and not self.executor.can_submit(slug):
                continue
            result = self.gate.check(sig, positions=self.ledger.positions,
                                     open_orders=self._open_orders(), equity=self.ledger.equity,
                                     cash=self.ledger.cash, market_info=self.markets[slug],
                                     event_of=self.event_of, now=self.clock())
            if isinstance(result, OrderRequest):
                await self._submit(attrs.evolve(result, tif=self.tif))
            else:
                self.counters.rejections += 1
                self.metrics.rejections.labels(reason=result.reason).inc()
                self.store.record_rejection(result)

    async def _submit(self, request: OrderRequest) -> Any:
        received = self._received_at.get(request.market_slug)
        if received is not None:
            self.metrics.decision_latency.observe(max(0.0, trio.current_time() - received))
        self.counters.orders += 1
        self._submits_in_flight += 1
        try:
            order = await self.executor.submit(request)
        finally:
            self._submits_in_flight -= 1
        outcome = "submitted" if order is not None else "refused"
        if order is not None and getattr(order, "state", None) is not None:
            outcome = order.state.name.lower()
        self.metrics.orders.labels(outcome=outcome).inc()
        fair = request.signal.fair_q if request.signal is not None else None
        if fair is not None:
            self.store.record_fair_value(request.market_slug, fair)
        return order

    async def housekeeping_child(self, progress: Progress, *,
                                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The gate's halts and kill switch, operator requests, persistence and metrics.

        A flatten runs in a task of its own (it waits on the exchange for seconds), so the kill
        switch, halts, persistence and metrics go on meanwhile; one flatten at a time.
        """
        self._flattening = False  # a flatten cancelled by a group restart is requested again
        async with trio.open_nursery() as nursery:
            task_status.started()
            last_equity_snapshot = -1e9
            last_status_line = -1e9
            while True:
                progress.beat()
                now = trio.current_time()
                await self.observe_risk()
                await self.handle_operator_requests(nursery)
                self.persist()
                if now - last_equity_snapshot >= 60.0:
                    last_equity_snapshot = now
                    self.store.record_ledger_equity(self.ledger, usd_at_risk=self.usd_at_risk(),
                                                    trading_state=self.gate.state.value)
                    self.record_daily_stats()
                    self.registry.forget_closed()
                self.update_metrics()
                if self.status_line is not None and now - last_status_line >= 5.0:
                    last_status_line = now
                    self.status_line(self.one_line_status())
                await trio.sleep(1.0)

    # --- risk, operator requests, persistence ---------------------------------------------------

    async def observe_risk(self) -> None:
        self.gate.observe(equity=self.ledger.equity, positions=self.ledger.positions,
                          open_orders=self._open_orders(), now=self.clock())
        if self._halt_cancel_pending:
            self._halt_cancel_pending = False
            cancelled = self.executor.cancel_all(reason="trading halted")
            log.warning("trading halted: cancelling the bot's open orders (%d)", len(cancelled or ()))

    async def handle_operator_requests(self, nursery: trio.Nursery) -> None:
        data_dir = self.settings.data_dir
        for req in operator_requests.read_requests(data_dir):
            kind = req["kind"]
            if kind == "cancel-all":
                cancelled = self.executor.cancel_all(reason="operator cancel-all")
                self.store.ack_request(req["id"], kind, "done",
                                       f"{len(cancelled or ())} open order(s) cancelled")
            elif kind == "flatten":
                if not self._flattening:  # else it stays pending until the running one is done
                    self._flattening = True
                    self.gate.request_flatten()
                    nursery.start_soon(self._flatten_request, req)
                continue  # acknowledged and removed when done
            else:
                self.store.ack_request(req["id"], kind, "unknown request", "")
            operator_requests.remove_request(data_dir, req["id"])

    async def _flatten_request(self, req: dict[str, Any]) -> None:
        sent = await self.flatten()
        self.store.ack_request(req["id"], req["kind"], "done",
                               f"{sent} closing order(s) sent; trading is REDUCING "
                               "until `polybot resume`")
        operator_requests.remove_request(self.settings.data_dir, req["id"])
        self._flattening = False

    async def flatten(self) -> int:
        """Close every position with IOC orders at most 5 ticks through the best price, 5 rounds."""
        sent = 0
        for _ in range(FLATTEN_ROUNDS):
            positions = {s: p for s, p in self.ledger.positions.items() if p.net_qty != 0}
            if not positions or self.stopping:
                break
            for slug, pos in positions.items():
                market = self.markets.get(slug)
                book = self.books.get(slug)
                if market is None or book is None:
                    continue
                if pos.net_qty > 0 and book.best_bid is not None:
                    intent = Intent.SELL_LONG
                    limit = max(Decimal("0.01"), book.best_bid.price - FLATTEN_TICKS * market.tick)
                elif pos.net_qty < 0 and book.best_offer is not None:
                    intent = Intent.SELL_SHORT
                    limit = min(Decimal("0.99"), book.best_offer.price + FLATTEN_TICKS * market.tick)
                else:
                    continue
                sig = Signal(market_slug=slug, intent=intent, limit_price=limit,
                             size_available=abs(pos.net_qty), fair_q=Decimal("0.5"),
                             edge=Decimal(0), created_at=trio.current_time())
                result = self.gate.check(sig, positions=self.ledger.positions,
                                         open_orders=self._open_orders(), equity=self.ledger.equity,
                                         cash=self.ledger.cash, market_info=market,
                                         event_of=self.event_of, now=self.clock(), flatten=True)
                if isinstance(result, OrderRequest):
                    order = await self._submit(attrs.evolve(result, tif=TimeInForce.IOC))
                    if order is not None:  # None: the executor refused it (nothing was sent)
                        sent += 1
            await trio.sleep(1.0)
        return sent

    def persist(self) -> None:
        self.store.save_ledger(self.ledger.drain_changes())
        halt = self.gate.halt_state()
        if halt != self._last_halt_state:
            self._last_halt_state = halt
            self.store.save_halt_state(self.gate.state.value, self.gate.reason, halt.to_dict())

    # --- what the health app and the status line read -----------------------------------------------

    def not_ready_reason(self) -> str | None:
        sup = self.supervisor.state()
        if sup.phase.name != "RUNNING":
            return f"supervisor {sup.phase.name.lower()}" + (f": {sup.reason}" if sup.reason else "")
        if not self._reference_loaded:
            return "loading market metadata from the exchange"
        stream = self._markets_stream
        if stream is None or not stream.status.connected:
            return "exchange market feed not connected" + (
                f" ({stream.status.describe()})" if stream is not None else "")
        if self.settings.opticodds_api_key is None:
            return "no OPTICODDS_API_KEY: cannot price, so no trading"
        feed = self._odds_feed
        if feed is None:
            return "matching markets to OpticOdds fixtures"
        if feed.status.state.value != "live":
            return f"odds feed not live ({feed.status.state.value})"
        if self.mode == "live" and not self.executor.trading_allowed:
            return f"live executor: {self.executor.readiness_reason}"
        if self.gate.state is TradingState.HALTED:
            return f"trading HALTED: {self.gate.reason}"
        return None

    def degraded(self) -> list[str]:
        out = []
        if self._markets_stream is not None and not self._markets_stream.status.connected:
            out.append(self._markets_stream.status.describe())
        if self._odds_feed is not None and self._odds_feed.status.state.value != "live":
            out.append(f"odds feed {self._odds_feed.status.state.value}")
        return out

    def status_report(self) -> StatusReport:
        rows = []
        positions = self.ledger.positions
        for slug in self.settings.market_slugs:
            book = self.books.get(slug)
            fv: FairValue | None = self.fair_values.get(slug)
            bid = book.best_bid.price if book and book.best_bid else None
            ask = book.best_offer.price if book and book.best_offer else None
            edge = None
            if fv is not None and ask is not None:
                info = self.markets.get(slug)
                theta = taker_theta(info) if info else Decimal("0.0695")
                edge = (fv.q - ask - fee_per_contract(ask, theta)).quantize(Decimal("0.0001"))
            pos = positions.get(slug)
            state = ("closed" if book and book.state is not MarketState.OPEN else
                     "trusted" if self.books.is_trusted(slug) else "stale")
            rows.append(MarketRow(slug=slug, bid=bid, ask=ask,
                                  fair=fv.q.quantize(Decimal("0.0001")) if fv else None, edge=edge,
                                  position=pos.net_qty if pos else Decimal(0), state=state))
        led = self.ledger
        pnl = {"equity": led.equity, "cash": led.cash, "daily": led.daily_pnl,
               "realized": led.realized_pnl, "unrealized": led.unrealized_pnl(), "fees": led.fees_total}
        extra: dict[str, Any] = {"counters": attrs.asdict(self.counters),
                                 "rejections": dict(self.gate.rejections)}
        if self.mode == "live":
            extra["executor"] = self.executor.status()
        return StatusReport(mode=self.mode, trading_state=self.gate.state.value,
                            trading_reason=self.gate.reason or None, markets=rows, pnl=pnl,
                            recent_errors=list(self.recent_errors), extra=extra)

    def update_metrics(self) -> None:
        m, led = self.metrics, self.ledger
        m.equity_usd.set(float(led.equity))
        m.daily_pnl_usd.set(float(led.daily_pnl))
        m.realized_pnl_usd.set(float(led.realized_pnl))
        m.usd_at_risk.set(float(self.usd_at_risk()))
        m.trading_halted.set(1.0 if self.gate.state is TradingState.HALTED else 0.0)
        now = trio.current_time()
        for slug, t in self._received_at.items():
            m.book_age.labels(market=slug).set(now - t)
        for slug in self.fair_values.slugs:
            age = self.fair_values.age(slug, now)
            if age is not None:
                m.fair_value_age.labels(market=slug).set(age)
        for name, stream in (("markets", self._markets_stream), ("private", self._private_stream)):
            if stream is not None:
                _sync_counter(m.frames.labels(stream=name), stream.frames)
                _sync_counter(m.bytes_received.labels(stream=name), stream.bytes)
                _sync_counter(m.reconnects.labels(stream=name), stream.reconnects)
        feed = self._odds_feed
        if feed is not None:  # per-sport SSE streams; their bytes are not kept across connections
            _sync_counter(m.frames.labels(stream="odds"),
                          sum(st.events for st in feed.statuses.values()))
            _sync_counter(m.reconnects.labels(stream="odds"),
                          sum(st.reconnects for st in feed.statuses.values()))

    def record_daily_stats(self) -> None:
        """The trading day's row (the gate's day and start equity; counts since the day began)."""
        halt = self.gate.halt_state()
        if halt.day is None or halt.day_start_equity is None:
            return
        totals = (self.recorder.fills, self.ledger.fees_total, sum(self.gate.rejections.values()))
        if self._day_base is None or self._day_base[0] != halt.day:
            self._day_base = (halt.day, *totals)
        _, fills, fees, rejections = self._day_base
        self.store.record_daily_stats(halt.day.isoformat(), start_equity=halt.day_start_equity,
                                      end_equity=self.ledger.equity, fills=totals[0] - fills,
                                      fees=totals[1] - fees, rejections=totals[2] - rejections)

    def usd_at_risk(self) -> Decimal:
        return portfolio_at_risk(at_risk_by_market(self.ledger.positions, self._open_orders()))

    def one_line_status(self) -> str:
        live = sum(1 for s in self.settings.market_slugs if self.books.is_trusted(s))
        priced = sum(1 for s in self.settings.market_slugs if self.fair_values.usable(s) is not None)
        c = self.counters
        return (f"[{self.mode}] markets live {live}/{len(self.settings.market_slugs)} priced {priced}"
                f" | signals {c.signals} orders {c.orders} fills {self.recorder.fills}"
                f" | equity {self.ledger.equity:.2f} P&L {self.ledger.pnl:+.2f}"
                f" | {self.gate.state.value}")

    # --- lifecycle -----------------------------------------------------------------------------------

    async def request_stop(self) -> None:
        """No new orders; let creates in flight get their answer; then stop the group.

        Stopping the group cancels its tasks, and a create cancelled mid-POST may still land at
        the exchange after the bot has stopped looking (an order path slower than reads), so the
        group is only stopped once the creates in flight are answered (bounded): the executor
        then knows their ids and the shutdown cancels them.
        """
        if self._stop_deadline is None:
            self._stop_deadline = trio.current_time() + SHUTDOWN_BOUND_SECONDS
        self.stopping = True
        with trio.move_on_after(CREATE_WAIT_SECONDS):
            while self._submits_in_flight:
                await trio.sleep(0.02)
        self.supervisor.stop()

    async def shutdown(self) -> int:
        """Stop trading, resolve creates in flight, cancel our orders (shielded, bounded), flush."""
        self.stopping = True
        code = EXIT_OK
        deadline = self._stop_deadline or trio.current_time() + SHUTDOWN_BOUND_SECONDS
        with trio.CancelScope(shield=True), trio.move_on_at(deadline) as scope:
            if self.mode == "live":
                report = await self.executor.shutdown(cancel=self.settings.cancel_on_shutdown)
                if not report.all_confirmed:
                    code = EXIT_UNCONFIRMED
                    self._alert(Level.ERROR, "Orders may still be open after shutdown",
                                str(report), key="shutdown")
            elif self.settings.cancel_on_shutdown:
                self.executor.cancel_all(reason="shutdown")
            self.persist()
            self.store.record_ledger_equity(self.ledger, usd_at_risk=self.usd_at_risk(),
                                            trading_state=self.gate.state.value)
            await self.store.flush()
        if scope.cancelled_caught:
            code = EXIT_UNCONFIRMED
            self._alert(Level.ERROR, "Shutdown overran its time limit",
                        "open orders may remain at the exchange", key="shutdown")
        return code


def _is_transient(exc: BaseException) -> bool:
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
            if _is_transient(exc):
                seen.append(f"{type(exc).__name__}: {exc}")
            raise

    return lookup


class _FillCounting:
    """The store as the executors' recorder, counting each booked fill into `polybot_fills`.

    Every execution of both executors is recorded through here exactly once with its fill
    (`orders.book_execution`, and the live executor's inferred fills), so this is the one place
    a fill can be counted without a second path that could drift from the ledger.
    """

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self.fills = 0  # for the demo's status line

    def record_execution(self, execution: Any, fill: Any, order: Any) -> None:
        self._store.record_execution(execution, fill, order)
        if fill is not None:
            self.fills += 1
            self._metrics.fills.labels(market=fill.market_slug).inc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _sync_counter(counter: Any, value: int) -> None:
    """Advance a Prometheus counter to a component's own running total."""
    current = counter._value.get()
    if value > current:
        counter.inc(value - current)


def _sinks(settings: Settings) -> list[Any]:
    sinks: list[Any] = []
    if settings.discord_webhook is not None:
        sinks.append(DiscordWebhook(settings.discord_webhook))
    if settings.telegram_bot_token is not None and settings.telegram_chat_id:
        sinks.append(TelegramBot(settings.telegram_bot_token, settings.telegram_chat_id))
    return sinks


# --- running the process ----------------------------------------------------------------------------


async def run_bot(settings: Settings, *, duration: float | None = None,
                  status_line: Callable[[str], None] | None = None,
                  on_health_port: Callable[[int], None] | None = None,
                  on_finish: Callable[[dict[str, Any]], object] | None = None) -> int:
    """Run until a signal (or `duration` seconds); returns the process exit code.

    `on_finish` receives {"status": the final StatusReport, "code": exit code} (the demo's summary).
    """
    bot = Bot(settings, status_line=status_line)
    sd = SystemdNotifier.from_env()
    health = HealthApp(HealthSources(supervisor=bot.supervisor.state,
                                     not_ready_reason=bot.not_ready_reason,
                                     status=bot.status_report, metrics=bot.metrics,
                                     degraded=bot.degraded), secrets=bot.secrets)

    def listening(port: int) -> None:
        bot.health_port = port
        if on_health_port is not None:
            on_health_port(port)

    code = EXIT_OK
    try:
        async with trio.open_nursery() as root:
            await root.start(bot.store.run)
            await root.start(bot.notifier.run)
            await root.start(functools.partial(serve_health, health, settings.health_host,
                                               settings.health_port, on_listening=listening))
            root.start_soon(_signal_watcher, bot, root)
            if duration is not None:
                root.start_soon(_stop_after, bot, duration)
            bot._alert(Level.INFO, "polybot started",
                       f"{bot.mode} mode, {len(settings.market_slugs)} market(s)", key="lifecycle")
            sd.ready()
            code = await bot.supervisor.run()
            if code == EXIT_OK:  # a requested stop, not a failure
                sd.stopping()
                code = await bot.shutdown()
                bot._alert(Level.INFO, "polybot stopped", f"exit code {code}", key="lifecycle")
            else:
                bot.stopping = True
                with trio.CancelScope(shield=True), trio.move_on_after(3.0):
                    bot.persist()
                    await bot.store.flush()
            with trio.move_on_after(2.0):
                await bot.notifier.flush(2.0)
            if on_finish is not None:
                on_finish({"status": bot.status_report(), "code": code})
            root.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await bot.rest.aclose()
        bot.store.close()
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


# --- the `run` command -----------------------------------------------------------------------------


def main(args: Any) -> int:
    """`python -m polybot run` (called by polybot.cli)."""
    from polybot import cli

    if args.sim:
        from polybot.demo import run_demo

        return run_demo(duration=args.duration, seed=args.seed, live=args.live,
                        data_dir=Path(args.data_dir) if args.data_dir else None)
    env = cli._env(args)
    if args.sim_credentials is not None:
        env.update(credentials_env(args.sim_credentials, env))
    try:
        settings = load_settings(env, warn=lambda w: cli._err(f"polybot: warning: {w}"))
    except Exception as exc:
        from polybot.config import ConfigError

        if isinstance(exc, ConfigError):
            for problem in exc.problems:
                cli._err(f"polybot: bad setting: {problem}")
            return EXIT_CONFIG
        raise
    configure_from_settings(settings)
    try:
        return trio.run(run_bot, settings)
    except FatalCredentialsError as exc:
        log.critical("credentials rejected: %s", exc)
        return EXIT_CREDENTIALS


def credentials_env(path: Path, env: dict[str, str]) -> dict[str, str]:
    """Settings from a `polybot sim --credentials-file` JSON (MARKET_SLUGS only when unset)."""
    creds = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {
        "PM_API_KEY_ID": creds["key_id"],
        "PM_PRIVATE_KEY": creds["secret_key"],
        "PM_BASE_URL": creds["api_url"],
        "PM_GATEWAY_URL": creds["gateway_url"],
        "PM_WS_URL": creds["ws_url"],
    }
    if not env.get("MARKET_SLUGS"):
        out["MARKET_SLUGS"] = ",".join(creds["markets"])
    if creds.get("opticodds_url"):
        out["OPTICODDS_BASE_URL"] = creds["opticodds_url"]
        out["OPTICODDS_API_KEY"] = creds["opticodds_key"]
    return out
