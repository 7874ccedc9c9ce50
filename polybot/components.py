"""Every component of one bot, built from Settings and a clock, wired so each fact has one owner.

`build()` is shared by the composition roots (`app` for `run`, `demo`, and the backtest to come),
so none of them imports another. What is built here outlives a restart of the supervised group:
the store, the ledger, the order registry, the universe, exposure, the trading state, the gate,
books, fair values, the engine and the venue (executor). Connections are the runtime's.

Who writes what (the wiring below):

- the ledger (cash, positions, marks) → `exposure.on_position` on every position change;
- the order registry (the bot's orders) and the live venue (unknown orders at the exchange) →
  `exposure.on_order`;
- the universe (markets, events, start times) → `exposure.set_event`;
- the trading state's notices → the engine (a halt cancels our orders) → the notifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

from polybot.book import BookStore
from polybot.claims import MarketClaims, instance_id
from polybot.clock import Clock
from polybot.config import Settings
from polybot.engine import TradingEngine
from polybot.execution.live import LiveConfig, LiveExecutor, LiveNotice
from polybot.execution.orders import OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.execution.venue import Venue
from polybot.exposure import Exposure
from polybot.fairvalues import FairValues
from polybot.ledger import Ledger
from polybot.lifecycle import Lifecycle
from polybot.metrics import Metrics
from polybot.model import TimeInForce
from polybot.notify import DiscordWebhook, Level, Notifier, TelegramBot
from polybot.pricing import TAKER_THETA, taker_theta
from polybot.recording import ENGINE_ADOPTED, ENGINE_TRANSFER, Recorder
from polybot.risk import RiskGate, RiskLimits
from polybot.store import Store
from polybot.strategy import StrategyParams
from polybot.trading_state import HaltLimits, Notice, NoticeKind, TradingStateMachine
from polybot.universe import Listing, Universe

log = logging.getLogger("polybot.components")


@attrs.frozen
class Edges:
    """Where the bot's I/O goes: None for each means the network (`run`). A backtest
    (`polybot.backtest`) answers every one from a recording instead; nothing past these edges
    knows the difference.

    `polymarket` and `opticodds`: the httpx transports of the two REST clients (OpticOdds' SSE
    stream goes through its client too); `websocket`: opens the markets stream's connections
    (`polybot.polymarket.wsconn.connect_websocket`'s signature); `rng`: the markets stream's
    reconnect jitter; `store_in_thread`: the store's SQLite writes in a worker thread (so an fsync
    never stalls the loop), or inline (a replay on the mock clock: time must not jump while a
    thread works); `store_synchronous`: SQLite's `synchronous` for the store (a replay's store
    is a temp file nobody needs after a power cut: OFF spares it an fsync per commit)."""

    polymarket: Any = None  # httpx.AsyncBaseTransport
    opticodds: Any = None  # httpx.AsyncBaseTransport
    websocket: Callable[..., Any] | None = None
    rng: Any = None  # random.Random
    store_in_thread: bool = True
    store_synchronous: str = "FULL"


NETWORK = Edges()


@attrs.define(eq=False)
class Components:
    settings: Settings
    clock: Clock
    metrics: Metrics
    secrets: list[str]
    notifier: Notifier
    store: Store
    ledger: Ledger
    registry: OrderRegistry
    universe: Universe
    exposure: Exposure
    trading: TradingStateMachine
    gate: RiskGate
    books: BookStore
    fair_values: FairValues
    engine: TradingEngine
    executor: Venue
    lifecycle: Lifecycle
    recorder: Any
    rest: Any
    signer: Any
    recording: Recorder | None = None  # RECORD_DIR's feed recorder (its task: the runtime's)
    claims: MarketClaims | None = None  # CLAIMS_DIR: the markets this instance may trade


def build(settings: Settings, clock: Clock, edges: Edges = NETWORK) -> Components:
    from polybot.polymarket.rest import client_from_settings, signer_from_settings

    metrics = Metrics.create(instance=settings.instance)
    metrics.daily_loss_limit_usd.set(float(settings.risk_max_daily_loss))
    secrets = settings.secret_values()
    notifier = Notifier(_sinks(settings, clock), metrics=metrics, secrets=secrets,
                        instance=settings.instance)
    store = Store.open(settings.data_dir, clock=clock, in_thread=edges.store_in_thread,
                       synchronous=edges.store_synchronous)
    # A mode switch (paper <-> live on one DATA_DIR) archives the old ledger and halt state before
    # anything reads them: the new mode starts afresh (adopted from the account, or INITIAL_BALANCE).
    switch = store.switch_mode(settings.trading_mode)
    if switch is not None:
        log.warning("%s", switch.describe())
        notifier.alert(Level.WARNING, "Trading mode switched", switch.describe(), key="mode")
    universe = Universe()

    def theta_of(slug: str) -> Decimal:
        info = universe.info(slug)
        return taker_theta(info) if info is not None else TAKER_THETA

    exposure = Exposure(theta_of=theta_of)
    universe.add_listener(lambda listing: _follow_event(exposure, listing))
    ledger = _restore_ledger(store, settings)
    ledger.attach_store(store.read_booking, store.read_market)  # retired markets leave memory
    universe.add_listener(lambda listing: ledger.recall(listing.slug))
    ledger.on_position = exposure.on_position
    for position in ledger.positions.values():
        exposure.on_position(position)
    registry = OrderRegistry(clock=clock, on_change=exposure.on_order)
    limits = RiskLimits.from_settings(settings)
    trading = TradingStateMachine(HaltLimits.of(limits), reset_tz=settings.daily_reset_tz,
                                  reset_hour=settings.daily_reset_hour)
    halt = store.load_halt_state()
    if halt is not None and halt.data:
        trading.restore(halt.data)
    gate = RiskGate(limits, trading=trading, exposure=exposure)
    books = BookStore()
    fair_values = FairValues()
    recorder = FillCounting(store, metrics)
    recording = (Recorder(settings.record_dir, clock=clock, settings=settings)
                 if settings.record_dir is not None else None)
    rest = client_from_settings(settings, transport=edges.polymarket)
    if recording is not None:  # the public answers that feed decisions (polybot.recording)
        rest.recording = recording.rest_tap("polymarket")

    def live_notice(notice: LiveNotice) -> None:
        level = notice.level.lower()
        notifier.alert(Level.ERROR if level in ("error", "critical") else Level.WARNING,
                       notice.title, notice.message, key=notice.kind)

    claims = _reclaim(settings, store, ledger, notifier)
    executor: Venue
    if settings.trading_mode == "paper":
        paper = PaperExecutor(registry, ledger, books, recorder=recorder, markets=universe.info_map,
                              clock=clock, settlement=rest.settlement)
        # Paper orders left open by a previous run no longer exist anywhere: book them cancelled.
        paper.cancel_restored(store.load_orders())
        executor = paper
    else:
        if settings.pm_fast_create:  # creates over kept-alive sockets while its pool runs
            from polybot.polymarket.fastorder import FastCreate

            rest.fast = FastCreate(rest)
        executor = LiveExecutor(
            rest, registry, ledger, recorder, follow=universe,
            config=LiveConfig(cancel_unknown_orders=settings.cancel_unknown_orders),
            notify=live_notice, markets=universe.info_map, clock=clock,
            on_foreign_order=exposure.on_order)
    engine = TradingEngine(
        universe=universe, books=books, fair_values=fair_values, ledger=ledger,
        exposure=exposure, trading=trading, gate=gate, venue=executor,
        params=StrategyParams(min_edge=settings.risk_min_edge,
                              trade_in_play=settings.trade_in_play,
                              stop_before_start_minutes=settings.stop_before_start_minutes),
        tif=TimeInForce.GTC if settings.order_tif == "gtc" else TimeInForce.IOC,
        alert=lambda notice: _alert_notice(notifier, notice), claims=claims)
    lifecycle = Lifecycle(universe, books=books, ledger=ledger, exposure=exposure,
                          registry=registry, venue=executor, configured=settings.market_slugs)
    _follow_retirements(universe, books, fair_values, exposure, engine, executor)
    universe.add_retire_listener(ledger.forget_marks)
    trading.set_notifier(engine.on_notice)
    gate.set_notifier(engine.on_notice)
    if isinstance(executor, LiveExecutor):
        live = executor
        seen = [universe.added]

        def new_markets(_listing: Listing) -> None:
            # a market joined: unknown orders in it count at risk from the next reconciliation
            if universe.added != seen[0]:
                seen[0] = universe.added
                live.markets_changed()

        universe.add_listener(new_markets)
        # a transfer shifts the trading state's baselines; an adopted account is the baseline
        executor.on_transfer = _transfer(engine, recording)
        executor.on_adopted = _adopted(engine, clock, recording)
    return Components(settings=settings, clock=clock, metrics=metrics, secrets=secrets,
                      notifier=notifier, store=store, ledger=ledger, registry=registry,
                      universe=universe, exposure=exposure, trading=trading, gate=gate,
                      books=books, fair_values=fair_values, engine=engine, executor=executor,
                      lifecycle=lifecycle, recorder=recorder, rest=rest,
                      signer=signer_from_settings(settings), recording=recording, claims=claims)


def _reclaim(settings: Settings, store: Store, ledger: Ledger,
             notifier: Notifier) -> MarketClaims | None:
    """CLAIMS_DIR's claims. Before anything trades, the markets this instance claimed before are
    locked again: kept where it holds a position or an open order, released where it is flat. A
    market it holds something in that another instance took is not traded here, closing
    included: an alert says so."""
    if settings.claims_dir is None or settings.trading_mode != "live":
        return None  # paper orders never reach the exchange: a paper instance claims nothing
    claims = MarketClaims(settings.claims_dir, instance_id(settings.data_dir))
    in_use = set(ledger.positions)  # only markets with a position
    in_use |= {order.market_slug for order in store.load_orders()}
    for slug in claims.keep_only(in_use):
        notifier.alert(Level.ERROR, "Market held here is claimed by another instance",
                       f"{slug}: {claims.why_not(slug)}; this instance holds a position or an "
                       "order there and sends it nothing until the claim is back",
                       key=f"claim:{slug}")
    return claims


def _transfer(engine: TradingEngine, recording: Recorder | None) -> Callable[[Decimal], None]:
    if recording is None:
        return engine.transfer

    def transfer(amount: Decimal) -> None:
        recording.engine(ENGINE_TRANSFER, amount=amount)
        engine.transfer(amount)

    return transfer


def _adopted(engine: TradingEngine, clock: Clock,
             recording: Recorder | None) -> Callable[[Decimal], None]:
    def adopted(_equity: Decimal) -> None:
        now, mono, why = clock.now(), clock.monotonic(), "the account was adopted"
        if recording is not None:
            recording.engine(ENGINE_ADOPTED, now=now, mono=mono, why=why)
        engine.adopted(now, mono, why)

    return adopted


def _follow_event(exposure: Exposure, listing: Listing) -> None:
    exposure.set_event(listing.info.slug, listing.event_id)


def _follow_retirements(universe: Universe, books: BookStore, fair_values: FairValues,
                        exposure: Exposure, engine: TradingEngine, executor: Venue) -> None:
    """Every per-market container built here drops a retired market (the runtime's own, the
    metrics' labels and the streams' subscriptions follow in `polybot.runtime`)."""
    universe.add_retire_listener(books.forget)
    universe.add_retire_listener(fair_values.forget)
    universe.add_retire_listener(exposure.forget)
    universe.add_retire_listener(engine.market_retired)
    universe.add_retire_listener(executor.forget)


def _restore_ledger(store: Store, settings: Settings) -> Ledger:
    state = store.load_ledger()
    if state is not None:
        ledger = Ledger.restore(state)
        log.info("ledger restored from %s: cash %s, %d position(s)", store.path, ledger.cash,
                 len(ledger.positions))
        return ledger
    return Ledger(settings.initial_balance if settings.trading_mode == "paper" else Decimal(0))


def _alert_notice(notifier: Notifier, notice: Notice) -> None:
    kind = notice.kind
    if kind is NoticeKind.HALT_ENTERED:
        notifier.alert(Level.ERROR, "Trading halted", notice.message, key="halt")
    elif kind is NoticeKind.HALT_LEFT:
        notifier.alert(Level.INFO, "Trading resumed", notice.message, key="halt")
    elif kind is NoticeKind.REJECTION_BURST:
        notifier.alert(Level.WARNING, "Burst of risk rejections", notice.message, key="rejections")
    elif kind is NoticeKind.REBASED:
        notifier.alert(Level.WARNING, "Trading state re-based", notice.message, key="rebase")
    else:
        log.info("trading state: %s", notice.message)


class FillCounting:
    """The store as the executors' recorder, counting each booked fill into `polybot_fills`.

    Every execution of both executors is recorded through here exactly once with its fill
    (`orders.book_execution`, and the live executor's inferred fills), so this is the one place
    a fill can be counted without a second path that could drift from the ledger.
    """

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self.fills = 0  # for the demo's status line
        # the store's own method, without a `__getattr__` hop, on the path to every create
        self.note_intent = store.note_intent

    def record_execution(self, execution: Any, fill: Any, order: Any) -> None:
        self._store.record_execution(execution, fill, order)
        if fill is not None:
            self.fills += 1
            self._metrics.fills.labels(market=fill.market_slug).inc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _sinks(settings: Settings, clock: Clock) -> list[Any]:
    sinks: list[Any] = []
    if settings.discord_webhook is not None:
        sinks.append(DiscordWebhook(settings.discord_webhook, clock=clock))
    if settings.telegram_bot_token is not None and settings.telegram_chat_id:
        sinks.append(TelegramBot(settings.telegram_bot_token, settings.telegram_chat_id))
    return sinks

