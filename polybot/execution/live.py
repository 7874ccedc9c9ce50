"""Live execution: real orders, and the bot's view of them kept equal to the exchange's.

The exchange has no client order id and no idempotency key, its streams replay nothing after a
reconnect, and acceptance arrives asynchronously. So:

**Durable intent, then submit.** `submit` takes an `OrderRequest` (only the risk gate makes
those), registers a SUBMITTING order, writes its intent to the store's journal (one `os.write`:
it survives a crash; the fsync and the SQLite copy follow the send, see `polybot/journal.py`) and
only then POSTs. An id back: tracked. A definite refusal (4xx, nothing sent): rejected. Anything
ambiguous (`OutcomeUnknown`: timeout, connection lost after sending, 5xx) is never resent: the
order becomes OUTCOME_UNKNOWN, its market is frozen (no new order there) and a resolver task
looks for it — the order stream, `GET /v1/orders/open`, the market's position and its trade
activities — until it is found (adopted, its fills booked) or proven absent: not open, no trade
we cannot attribute and no position change in its market since the intent, over
`absent_reads` consecutive reads `absent_read_spacing` apart. An IOC order that filled at once
never shows as open, so a position change in the order's direction that is stable over two reads
is booked as that order's fill. Only then may the market trade again. At most one create is in
flight per market, which is what makes matching an exchange order to an intent unambiguous.

**Executions** from the private stream go through `orders.book_execution` (the paper path too):
state by the transition table, fills booked by the growth of each order's cumulative quantity,
so a duplicate (stream and snapshot, or a replay) books nothing. An execution for an order id we
do not know yet is first matched against unacknowledged intents — the stream can beat the POST's
answer — and only then treated as an unknown order (booked all the same: the account is the
bot's). Busted trades are reversed from the fill we booked for that trade id; deposits and
withdrawals are transfers; a resolution settles the market at the exchange's settlement value.

**Reconciliation** runs at every start of `run`, every `reconcile_interval` seconds, after every
reconnect of the private stream and soon after a stream update disagrees with the ledger: open
orders, `GET /v1/order/{id}` for our orders no longer listed, positions (all pages), balances and
the deposit/withdrawal activities. Order reports book missed fills (exactly, fees included: they
carry the cumulative quantity, average price and total commission), which is also how fills made
while the bot was down are booked. Deposits, withdrawals and the other cash activities are
booked from the activities by transaction id (the amount booked is remembered in the store), only
as their money moves (COMPLETED; PARTIALLY_REFUNDED less the refund; a PENDING one is re-read until
final), so neither a repeated check nor a restart books one twice; each booking also reaches the
trading state (`on_transfer`), and an adoption of the account is reported (`on_adopted`) once its
positions are marked, for the day's start and high-water mark to re-base. A market the exchange shows flat or expired is settled at its published settlement value.
A position or cash difference that persists across `mismatch_checks` consecutive checks with
nothing in flight (no unresolved create, no execution booked in between) is logged with both
sides, alerted, and resolved in the exchange's favour; the correction also advances the booked
quantity of every order the exchange reported in that market, so a late execution books nothing.
The startup pass also adopts our stored orders and unacknowledged intents (an open order matching
an intent is ours: the crash between POST and id), reports unknown orders in the configured
markets (counted in USD at risk; cancelled only with `cancel_unknown_orders`), adopts the account
as it is on a first start with an empty ledger, and corrects what is left at once when nothing
arrived during the pass (nothing has been sent yet). Until it succeeds trading stays disabled,
retried with backoff, and `readiness_reason` says why; the same holds while the exchange is
unreachable (maintenance: 503 everywhere, sockets refused) — the executor keeps retrying and
resumes by itself.

**Cancels** are queued (the same synchronous `cancel`/`cancel_all`/`sync_signals` as the paper
executor) and sent by one worker in batches of at most 20, retried until the order is terminal
(cancels are idempotent). Never an implicit account-wide cancel-all: the bot cancels its own
orders by id, and foreign orders in the configured markets only with `cancel_unknown_orders`.

How the composition root drives it::

    send, recv = trio.open_memory_channel(10_000)
    stream = PrivateStream(stream_cfg, signer, send, slugs=slugs)
    executor = LiveExecutor(rest, registry, ledger, store, slugs=slugs,
                            config=LiveConfig(cancel_unknown_orders=...), notify=alert_fn)
    await nursery.start(stream.run)
    await nursery.start(executor.run, recv)      # returns at once; reconciles in the background
    ...
    if executor.can_submit(slug): await executor.submit(order_request)   # gate's output only
    executor.trading_allowed / executor.readiness_reason                  # for /ready, /status
    executor.risk_orders()       # open orders for USD at risk (ours + unknown ones at the exchange)
    executor.cancel_all(reason="halted")                                  # on risk's halt_entered
    report = await executor.shutdown(cancel=CANCEL_ON_SHUTDOWN)   # before closing the REST client
    exit_code = 0 if report.all_confirmed else 1

Traps: the executor must see the private stream's `StreamConnected`/`ContinuityLost` events
(readiness depends on them); `shutdown` needs the REST client still open; `submit` returns None
(and sends nothing) when trading is not allowed in that market — check `can_submit` first.
Attribution of a position change to an unknown outcome assumes the market had no other
unexplained difference at that moment; if it had, the position still ends equal to the
exchange's and cash is corrected by the next checks — only the P&L attribution can be off.
Busts are reversed from memory of our fills; after a restart a bust of an older trade is left to
the two-check correction.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import attrs
import trio

from polybot.clock import Clock
from polybot.execution.orders import (
    UNRESOLVED,
    OrderEvent,
    OrderRegistry,
    TrackedOrder,
    book_execution,
)
from polybot.execution.reconcile import (
    CASH,
    Diff,
    DiffTracker,
    compare,
    exchange_avg_yes,
    matches_intent,
    report_execution,
    vwap,
)
from polybot.execution.venue import ShutdownReport
from polybot.ledger import Ledger, LedgerState
from polybot.model import (
    ZERO,
    Balance,
    BookSnapshot,
    Execution,
    ExecutionType,
    Fill,
    Intent,
    MarketInfo,
    MarketState,
    Order,
    OrderRequest,
    OrderState,
    Signal,
    TimeInForce,
    TradePrint,
)
from polybot.polymarket import errors as E
from polybot.polymarket import wire
from polybot.polymarket.ratelimit import Backoff
from polybot.polymarket.rest import SentCreate
from polybot.polymarket.stream import ContinuityLost, StreamConnected
from polybot.pricing import MAKER_THETA, TAKER_THETA, FeeAccumulator

log = logging.getLogger(__name__)

RESTING = frozenset({OrderState.PENDING_NEW, OrderState.PENDING_RISK, OrderState.NEW,
                     OrderState.PARTIALLY_FILLED, OrderState.PENDING_REPLACE})
MAX_CANCEL_BATCH = 20
MAX_REMEMBERED_TRADES = 100_000
SHUTDOWN_UNLISTED_READS = 2
META_SYNCED_AT = "live_synced_at"
# JSON object: transaction id -> amount booked for it (a list of ids before: amount unknown)
META_TRANSFERS = "live_transfer_ids"
# Cash moved by the account holder or the platform, not by trading: transfers, not P&L
# (docs/design-notes.md, "Cash activities"). A referral bonus is a promotion credit.
TRANSFER_TYPES = ("ACTIVITY_TYPE_ACCOUNT_DEPOSIT", "ACTIVITY_TYPE_ACCOUNT_ADVANCED_DEPOSIT",
                  "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL", "ACTIVITY_TYPE_TRANSFER",
                  "ACTIVITY_TYPE_REFERRAL_BONUS")
# Paid for the bot's trading (weekly/monthly): income in the ledger's P&L, but shifted out of
# the gate's baselines like a transfer, so a payout for past weeks cannot widen today's limit.
INCOME_TYPES = ("ACTIVITY_TYPE_TAKER_FEE_REBATE", "ACTIVITY_TYPE_LIQUIDITY_PROGRAM")
CASH_ACTIVITY_TYPES = TRANSFER_TYPES + INCOME_TYPES
CHANGE_PENDING = "ACCOUNT_BALANCE_CHANGE_STATUS_PENDING"
CHANGE_COMPLETED = "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED"
CHANGE_PARTIALLY_REFUNDED = "ACCOUNT_BALANCE_CHANGE_STATUS_PARTIALLY_REFUNDED"
CHANGE_REJECTED = "ACCOUNT_BALANCE_CHANGE_STATUS_REJECTED"
KEEP_TRANSFER_IDS = 1000
VIEW_READS = 3  # reads of positions + cash for one view that agrees (`_account_view`)
TRADE = "ACTIVITY_TYPE_TRADE"
BUSTED = "TRADE_STATE_BUSTED"
_REVERSE = {Intent.BUY_LONG: Intent.SELL_LONG, Intent.SELL_LONG: Intent.BUY_LONG,
            Intent.BUY_SHORT: Intent.SELL_SHORT, Intent.SELL_SHORT: Intent.BUY_SHORT}


class ExchangeApi(Protocol):
    """The part of `PolymarketRestClient` the executor uses."""

    async def create_order(self, req: OrderRequest) -> str: ...
    async def send_create(self, req: OrderRequest) -> SentCreate: ...
    async def cancel_order(self, order_id: str, market_slug: str) -> None: ...
    async def cancel_orders(self, orders: Sequence[tuple[str, str]]) -> list[str]: ...
    async def open_orders(self, slugs: Iterable[str] = ()) -> list[Order]: ...
    async def order(self, order_id: str) -> Order: ...
    async def positions(self, market: str | None = None) -> dict[str, wire.ExchangePosition]: ...
    async def activities(self, *, market_slug: str | None = None, types: Iterable[str] = (),
                         page_size: int = 100, max_pages: int = 50) -> list[wire.Activity]: ...
    async def balances(self) -> list[Balance]: ...
    async def settlement(self, slug: str) -> Decimal | None: ...


class LiveStore(Protocol):
    """The part of `store.Store` the executor uses."""

    def note_intent(self, order: TrackedOrder) -> None: ...
    def record_order(self, order: TrackedOrder) -> None: ...
    def record_execution(self, execution: Execution, fill: Fill | None,
                         order: TrackedOrder | None) -> None: ...
    def save_ledger(self, changes: LedgerState) -> None: ...
    def load_orders(self, *, open_only: bool = True) -> list[TrackedOrder]: ...
    def known_trade_ids(self, limit: int) -> list[str]: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


@attrs.frozen
class LiveConfig:
    """Timing and policy (the root maps Settings onto it; tests shorten the intervals)."""

    reconcile_interval: float = 60.0  # periodic reconciliation
    mismatch_checks: int = 2  # consecutive quiet checks before a correction
    cross_check_delay: float = 2.0  # re-check this soon after a stream update disagrees
    recheck_delay: float = 2.0  # and this soon after a check that saw a difference
    # consecutive clean reads that prove an unknown order absent; they span more than the
    # exchange's 5 s latency stopgap, after which an unprocessed create is rejected anyway
    absent_reads: int = 4
    absent_read_spacing: float = 2.0
    resolve_alert_after: float = 30.0  # alert if an unknown outcome is still unresolved
    match_time_tolerance: float = 2.0  # an adopted order may predate its intent by this (clocks)
    not_found_reads: int = 3  # GET order 404s before a known order is booked as gone
    retry_base: float = 0.5  # backoff while the exchange is unreachable / reconciliation fails
    retry_cap: float = 30.0
    cancel_retry: float = 1.0  # re-send a cancel not confirmed after this long
    # the root bounds its whole shutdown (8 s inside the 10 s promised): these must fit in it
    shutdown_create_wait: float = 3.0
    shutdown_cancel_timeout: float = 4.0
    shutdown_poll: float = 0.25
    cancel_unknown_orders: bool = False
    cash_tolerance: Decimal = ZERO
    # an adoption waits this long for its positions' marks before it is reported valued at cost
    adoption_mark_wait: float = 30.0


@attrs.frozen(slots=True)
class LiveNotice:
    """Something an operator must hear.

    kinds: outcome_unknown, unresolved, adopted, unknown_order, order_rejected, order_mismatch,
    order_gone, reconcile_difference, trade_busted, cancel_failing, exchange_down, exchange_up,
    shutdown_open_orders. `level` is "info", "warning", "error" or "critical".
    """

    kind: str
    message: str
    level: str = "warning"

    @property
    def title(self) -> str:
        return "Live execution: " + self.kind.replace("_", " ")


class LiveExecutor:
    def __init__(
        self,
        rest: ExchangeApi,
        registry: OrderRegistry,
        ledger: Ledger,
        store: LiveStore,
        *,
        slugs: Iterable[str] = (),
        follow: Collection[str] | None = None,
        config: LiveConfig | None = None,
        notify: Callable[[LiveNotice], None] | None = None,
        clock: Clock | None = None,
        progress: Callable[[], None] | None = None,
        markets: Mapping[str, MarketInfo] | None = None,
        on_foreign_order: Callable[[str, Order | None], None] | None = None,
        may_send: Callable[[OrderRequest], bool] | None = None,
        on_transfer: Callable[[Decimal], None] | None = None,
        on_adopted: Callable[[Decimal], None] | None = None,
    ) -> None:
        self.rest = rest
        # asked once more right before the POST (after the intent is durable): a kill switch or
        # halt seen while the intent was being stored stops the order there
        self.may_send = may_send or (lambda _request: True)
        self.registry = registry
        self.ledger = ledger
        self.store = store
        # the markets it trades: a fixed list, or (`follow`, the universe) whatever the bot
        # knows now, as markets are discovered and retired
        self._fixed_slugs: tuple[str, ...] = tuple(dict.fromkeys(slugs))
        self._follow = follow
        self.config = config or LiveConfig()
        self._notify_fn = notify
        self._clock = clock or registry.clock  # the registry's: one clock stamps an order
        self._progress = progress or (lambda: None)
        self._markets = markets if markets is not None else {}  # fee coefficients
        # trading state's hooks: a transfer shifts its baselines; an adoption re-bases them
        self.on_transfer = on_transfer or (lambda amount: None)
        self.on_adopted = on_adopted or (lambda equity: None)
        self._adoption_unmarked = False  # adopted, but not every position marked yet
        self._adopted_at = 0.0
        # readiness: every entry is a reason trading is not allowed
        self._blocks: dict[str, str] = {
            "startup": "startup reconciliation not done yet",
            "stream": "private stream not connected yet",
        }
        self._started = False
        self._closing = False
        self._stream_up = False
        self._stream_gen = 0  # bumps on every ContinuityLost
        self._inflight: set[str] = set()
        self._inflight_idle = trio.Event()
        self._inflight_idle.set()
        self._foreign: dict[str, Order] = {}  # open orders at the exchange that are not ours
        # hears every change of `_foreign` (unknown orders count at risk like ours)
        self._on_foreign_order = on_foreign_order or (lambda _oid, _order: None)
        self._reported_foreign: set[str] = set()
        # trade id -> our fill (to reverse a bust) / trades we have booked; bounded, oldest out
        self._fills_by_trade: dict[str, Fill] = {}
        self._known_trades: dict[str, None] = {}
        self._report_fills: dict[str, deque[tuple[datetime, Decimal]]] = {}  # no trade id
        self._busted: set[str] = set()
        self._market_seq: dict[str, int] = {}
        self._exec_seq = 0
        self._probe_last: dict[str, tuple[Decimal, int]] = {}
        self._not_found: dict[str, int] = {}
        self._resolving: set[str] = set()
        self._settling: set[str] = set()
        self._cancel_queue: dict[str, tuple[str, str]] = {}  # exchange id -> (slug, reason)
        self._cancel_sent: dict[str, float] = {}
        self._cancel_failures = 0
        self._cancel_wake = trio.Event()
        self._check_wake = trio.Event()
        self._diffs = DiffTracker(self.config.mismatch_checks)
        self._last_check_seq = -1
        self._nursery: trio.Nursery | None = None
        self._check_soon = False
        self._differs = False  # the last check saw a difference it did not correct yet
        self._transfers: dict[str, Decimal | None] | None = None
        self._last_still: list[str] = []
        self._last_detail = ""
        # counters for metrics / status
        self.reconciliations = 0
        self.reconcile_failures = 0
        self.corrections = 0
        self.outcome_unknowns = 0
        self.proven_absent = 0
        self.adopted = 0

    @property
    def slugs(self) -> Collection[str]:
        """The markets it trades (a live view of the universe when it follows one)."""
        return self._follow if self._follow is not None else self._fixed_slugs

    def _order_query(self) -> tuple[str, ...]:
        """The `slugs` filter of an open-orders read: none while following the universe (every
        open order of the account; ours in any market, unknown ones kept for known markets)."""
        return () if self._follow is not None else self._fixed_slugs

    def markets_changed(self) -> None:
        """Markets joined the universe: reconcile soon (unknown orders there count at risk)."""
        self._schedule_check()

    def forget(self, market_slug: str) -> None:
        """The market left the universe (flat, no open order): its stream sequence goes."""
        self._market_seq.pop(market_slug, None)

    def market_keys(self) -> set[str]:
        return set(self._market_seq) | set(self._settling)

    # --- readiness --------------------------------------------------------------------------------

    @property
    def trading_allowed(self) -> bool:
        return not self._blocks and not self._closing

    @property
    def readiness_reason(self) -> str:
        """Why trading is not allowed ("" when it is)."""
        if self._closing:
            return "shutting down"
        return "; ".join(self._blocks.values())

    def frozen_markets(self) -> dict[str, str]:
        """Markets with a create in flight or an unknown outcome -> the order's local id."""
        return self.registry.unresolved_markets()

    def refusal(self, market_slug: str) -> str:
        """Why an order in `market_slug` may not be sent now ("" when it may)."""
        if not self.trading_allowed:
            return self.readiness_reason
        if market_slug not in self.slugs and self.ledger.position(market_slug).net_qty == 0:
            return f"{market_slug} is not a configured market"
        frozen = self.registry.unresolved_in(market_slug)
        if frozen is not None:
            return f"{market_slug} frozen: order {frozen} in flight or outcome unknown"
        return ""

    def can_submit(self, market_slug: str) -> bool:
        return not self.refusal(market_slug)

    async def wait_ready(self, poll: float = 0.05) -> None:
        while not self.trading_allowed:
            await trio.sleep(poll)

    def status(self) -> dict[str, Any]:
        return {
            "trading_allowed": self.trading_allowed,
            "reason": self.readiness_reason,
            "frozen_markets": self.frozen_markets(),
            "unknown_orders": sorted(self._foreign),
            "inflight": len(self._inflight),
            "reconciliations": self.reconciliations,
            "reconcile_failures": self.reconcile_failures,
            "corrections": self.corrections,
            "outcome_unknowns": self.outcome_unknowns,
            "proven_absent": self.proven_absent,
            "cancels_pending": len(self._cancel_queue),
        }

    # --- views shared with the paper executor ----------------------------------------------------

    @property
    def resting(self) -> list[TrackedOrder]:
        return [o for o in self.registry.open_orders() if o.state in RESTING]

    def risk_orders(self, market_slug: str | None = None) -> list[Order]:
        """Open orders for USD at risk: ours (unresolved at full size) and unknown ones."""
        out = self.registry.open_model_orders(market_slug)
        out += [o for o in self._foreign.values()
                if market_slug is None or o.market_slug == market_slug]
        return out

    def unknown_orders(self) -> list[Order]:
        return list(self._foreign.values())

    def effective_book(self, book: BookSnapshot) -> BookSnapshot:
        """The book as it is: the exchange's book already shows what our orders took."""
        return book

    def on_book(self, book: BookSnapshot, *, trusted: bool = True) -> list[Fill]:
        """Nothing to fill (live fills come from the exchange; the engine has marked the ledger
        with this book), but an adoption waiting for its positions' marks may now be reported."""
        if self._adoption_unmarked:
            self._report_adoption()
        return []

    def on_continuity_lost(self) -> list[TrackedOrder]:
        """Nothing: the exchange reports what it cancelled at maintenance on the order stream."""
        return []

    def on_trade(self, trade: TradePrint) -> list[Fill]:
        return []

    @property
    def adoption_pending(self) -> bool:
        """An adopted account waits for its positions' marks before its equity is the baseline."""
        return self._adoption_unmarked

    @property
    def reconciled(self) -> bool:
        """The startup reconciliation is done: the ledger holds what the exchange holds."""
        return self._started

    def on_market_state(self, market_slug: str, state: MarketState) -> None:
        """The markets stream saw a market leave OPEN (halt, suspension, expiry).

        The exchange reports what it does to our orders there (unsolicited cancels) on the order
        stream; a reconciliation soon catches what the stream missed, and an expired market with
        a position is settled as soon as its settlement value is published.
        """
        if state is MarketState.OPEN:
            return
        self._schedule_check()
        if state in (MarketState.EXPIRED, MarketState.TERMINATED) and (
                self.ledger.position(market_slug).net_qty != 0):
            self._start_settle(market_slug)

    # --- the tasks --------------------------------------------------------------------------------

    async def run(self, events: trio.MemoryReceiveChannel[Any], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume the private stream, reconcile, send cancels. Returns only when cancelled.

        May be called again after the supervised group restarts: every run starts with a full
        (startup) reconciliation and waits for the private stream, as the first one did.
        """
        self._started = False
        self._stream_up = False
        self._blocks = {"startup": "startup reconciliation not done yet",
                        "stream": "private stream not connected yet"}
        self._resolving.clear()  # resolvers and settlers died with the previous run's tasks
        self._settling.clear()
        self._probe_last.clear()
        self._diffs = DiffTracker(self.config.mismatch_checks)
        self._check_wake = trio.Event()
        self._cancel_wake = trio.Event()
        if self._cancel_queue:
            self._cancel_wake.set()
        self._load_stored_orders()
        self._load_known_trades()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._consume, events)
            nursery.start_soon(self._cancel_worker)
            nursery.start_soon(self._reconcile_loop)
            task_status.started()

    def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is None:
            return
        try:
            self._nursery.start_soon(fn, *args)
        except RuntimeError:  # the executor is stopping: the next start resolves it
            log.info("live: executor stopping; %s not started", getattr(fn, "__name__", fn))

    async def _consume(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            try:
                self._on_event(event)
            except Exception:  # one bad event must not stop the booking of the next
                log.exception("live: failed to handle %r", type(event).__name__)

    # --- submitting -------------------------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> TrackedOrder | None:
        """Store the intent, then POST it once, and wait for the answer. None (nothing sent) when
        refused; see `refusal`. The trading path uses `send`, which does not wait."""
        order, answer = await self._send(request)
        if answer is not None:
            await answer()
        return order

    @property
    def creates_in_flight(self) -> int:
        return len(self._inflight)

    async def send(self, request: OrderRequest) -> TrackedOrder | None:
        """Store the intent, put the create on the wire and return: a task of the executor awaits
        the answer, so the caller (the markets socket's task) goes on with the next frame.

        The market stays frozen (`refusal`) until the answer, so at most one create per market is
        in flight, and any number across markets. Without a running executor (a unit test) the
        answer is awaited here.
        """
        order, answer = await self._send(request)
        if answer is not None:
            try:
                if self._nursery is None:
                    raise RuntimeError("executor not running")
                self._nursery.start_soon(answer)
            except RuntimeError:
                await answer()
        return order

    async def _send(self, request: OrderRequest
                    ) -> tuple[TrackedOrder | None, Callable[[], Awaitable[None]] | None]:
        """The order and the coroutine function that waits for its create's answer (None when
        nothing was sent)."""
        why = self.refusal(request.market_slug)
        if why:
            log.warning("live: order for %s not sent: %s", request.market_slug, why)
            return None, None
        order = self.registry.new_order(request, now=self._clock.now(), log_intent=False)
        self._inflight.add(order.local_id)
        if self._inflight_idle.is_set():  # a waiter on the unset one is woken when all are done
            self._inflight_idle = trio.Event()
        answer: Callable[[], Awaitable[None]] | None = None
        posted = False
        try:
            try:
                self.store.note_intent(order)  # one journal line; synced after the send
            except Exception as exc:
                self.registry.log_intent(order)
                self.registry.handle(order, OrderEvent.SEND_FAILED, reason=f"intent not stored: {exc}")
                log.error("live: intent %s not stored (%s): order NOT sent", order.local_id, exc)
                return order, None
            if not self.may_send(request):
                self.registry.log_intent(order)
                self.registry.handle(order, OrderEvent.SEND_FAILED,
                                     reason="trading halted before the send")
                self._record_order(order)  # its intent is stored: so must be its end
                log.warning("live: order %s not sent: trading halted meanwhile", order.local_id)
                return order, None
            posted = True  # from here on bytes may reach the exchange
            try:
                sent = await self.rest.send_create(request)
            except Exception as exc:
                self.registry.log_intent(order)
                self._create_failed(order, exc)
                return order, None
            self.registry.log_intent(order)

            async def answer_fn() -> None:
                await self._answered(order, sent)

            answer = answer_fn
            return order, answer
        except BaseException:
            if answer is None and order.state is OrderState.SUBMITTING \
                    and order.exchange_id is None:  # cancelled
                self.registry.log_intent(order)
                if posted:  # the order may exist: resolve it (or the next start will)
                    self.registry.handle(order, OrderEvent.OUTCOME_UNKNOWN,
                                         reason="cancelled while sending")
                    self._start_resolver(order)
                else:
                    self.registry.handle(order, OrderEvent.SEND_FAILED,
                                         reason="cancelled before sending")
                self._record_order(order)
            raise
        finally:
            if answer is None:
                self._done_inflight(order)

    async def _answered(self, order: TrackedOrder, sent: SentCreate) -> None:
        """Wait for a sent create's answer and book what it says."""
        try:
            try:
                exchange_id = await sent.result()
            except Exception as exc:
                self._create_failed(order, exc)
            else:
                self._acknowledged(order, exchange_id)
        except trio.Cancelled:
            if order.exchange_id is None and order.state is OrderState.SUBMITTING:
                # the order may exist: resolve it (or the next start will)
                self.registry.handle(order, OrderEvent.OUTCOME_UNKNOWN, reason="cancelled in flight")
                self._start_resolver(order)
                self._record_order(order)
            raise
        finally:
            self._done_inflight(order)

    def _create_failed(self, order: TrackedOrder, exc: Exception) -> None:
        if isinstance(exc, E.OutcomeUnknown):
            self._outcome_unknown(order, str(exc))
        elif isinstance(exc, E.PolymarketError):  # a definite refusal: nothing was placed
            self._send_failed(order, exc)
        else:  # a bug below us: we cannot know, so assume it may exist
            log.error("live: create of %s failed unexpectedly", order.local_id, exc_info=exc)
            self._outcome_unknown(order, f"unexpected {type(exc).__name__}: {exc}")

    def _done_inflight(self, order: TrackedOrder) -> None:
        self._inflight.discard(order.local_id)
        if not self._inflight:
            self._inflight_idle.set()

    def _acknowledged(self, order: TrackedOrder, exchange_id: str) -> None:
        if order.exchange_id == exchange_id:
            pass  # the stream was faster and already linked it
        elif order.exchange_id is not None:
            self._alert("order_mismatch", f"order {order.local_id} was linked to "
                        f"{order.exchange_id} but the POST answered {exchange_id}", logging.CRITICAL)
            return
        else:
            self.registry.submitted(order, exchange_id)
        self._drop_foreign(exchange_id)
        self._record_order(order)
        if order.cancel_requested and order.is_open:
            self._queue_cancel(order, "cancel requested while submitting")

    def _send_failed(self, order: TrackedOrder, exc: E.PolymarketError) -> None:
        if order.exchange_id is not None:  # the stream says it exists: believe the exchange
            log.error("live: create of %s reported %s but the order exists as %s",
                      order.local_id, exc, order.exchange_id)
            return
        self.registry.handle(order, OrderEvent.SEND_FAILED, reason=f"{type(exc).__name__}: {exc}")
        self._record_order(order)
        log.warning("live: order %s refused: %s", order.local_id, exc)

    def _outcome_unknown(self, order: TrackedOrder, why: str) -> None:
        if order.exchange_id is not None:
            log.info("live: create of %s ambiguous (%s) but already seen as %s",
                     order.local_id, why, order.exchange_id)
            return
        self.outcome_unknowns += 1
        self.registry.handle(order, OrderEvent.OUTCOME_UNKNOWN, reason=why)
        self._record_order(order)
        self._alert("outcome_unknown", f"order {order.local_id} ({order.market_slug} "
                    f"{order.intent.name} {order.quantity}@{order.price}) outcome unknown: {why}; "
                    f"market frozen until resolved")
        self._start_resolver(order)

    # --- resolving unknown outcomes -----------------------------------------------------------

    def _unresolved(self, order: TrackedOrder) -> bool:
        return order.exchange_id is None and order.state in UNRESOLVED

    def _start_resolver(self, order: TrackedOrder) -> None:
        if order.local_id not in self._resolving:
            self._resolving.add(order.local_id)
            self._spawn(self._resolve, order)

    async def _resolve(self, order: TrackedOrder) -> None:
        cfg = self.config
        started = trio.current_time()
        clean = flat = 0
        alerted = False
        try:
            while self._unresolved(order):
                try:
                    verdict = await self._probe(order)
                except E.PolymarketError as exc:
                    verdict = "error"
                    log.warning("live: resolving %s: %s", order.local_id, exc)
                clean = clean + 1 if verdict == "absent" else 0
                flat = flat + 1 if verdict in ("absent", "flat") else 0
                # Trades we cannot name (booked by an earlier run, or under no trade id) must not
                # freeze a market for ever: a position unmoved for twice the reads is the proof.
                if (clean >= cfg.absent_reads or flat >= 2 * cfg.absent_reads) \
                        and self._unresolved(order):
                    self.proven_absent += 1
                    self.registry.handle(order, OrderEvent.PROVEN_ABSENT,
                                         reason=f"proven absent after {flat} reads")
                    self._record_order(order)
                    log.info("live: order %s proven absent; %s unfrozen", order.local_id,
                             order.market_slug)
                    break
                if not alerted and trio.current_time() - started > cfg.resolve_alert_after:
                    alerted = True
                    self._alert("unresolved", f"order {order.local_id} in {order.market_slug} "
                                "still unresolved; market stays frozen", logging.ERROR)
                if self._unresolved(order):
                    await trio.sleep(cfg.absent_read_spacing)
        finally:
            self._resolving.discard(order.local_id)
            self._probe_last.pop(order.local_id, None)

    async def _probe(self, order: TrackedOrder) -> str:
        """One look at the exchange for an unresolved order: found, filled, absent or pending."""
        slug = order.market_slug
        seq = self._market_seq.get(slug, 0)
        open_orders = await self.rest.open_orders([slug])
        if not self._unresolved(order):
            return "found"
        for reported in sorted(open_orders, key=_created):
            if self.registry.find(reported.order_id) is None and self._matches(order, reported):
                self._link(order, reported.order_id, "open orders")
                self._apply_report(order, reported)
                return "found"
        positions = await self.rest.positions(slug)
        acts = await self.rest.activities(market_slug=slug, types=[TRADE], max_pages=1)
        if not self._unresolved(order):
            return "found"
        pos = positions.get(slug)
        delta = ((pos.net_qty if pos else ZERO) - self.ledger.position(slug).net_qty)
        delta *= order.intent.position_sign
        # Trades since the intent (less the clock tolerance: the exchange's clock is not ours)
        # that no booked execution names. Fills recovered from order reports carry no trade id,
        # so their quantity explains that much of them. The position is the real guard (the
        # ledger holds every fill we know of); trades only add evidence and the fill's price.
        since = order.created_at - timedelta(seconds=self.config.match_time_tolerance)
        trades = [a for a in acts if a.trade_id not in self._known_trades
                  and a.trade_state != BUSTED and a.time is not None and a.time >= since]
        unexplained = sum((a.qty or ZERO for a in trades), ZERO) - sum(
            (q for t, q in self._report_fills.get(slug, ()) if t >= since), ZERO)
        if delta == 0:
            return "absent" if unexplained <= 0 else "flat"
        last = self._probe_last.get(order.local_id)
        self._probe_last[order.local_id] = (delta, seq)
        stable = last == (delta, seq) and self._market_seq.get(slug, 0) == seq
        if delta > 0 and stable:
            self._book_inferred(order, min(delta, order.quantity), trades)
            return "filled"
        return "pending"

    def _book_inferred(self, order: TrackedOrder, qty: Decimal,
                       trades: list[wire.Activity]) -> None:
        """A position change the exchange shows and no order explains: this order's fill."""
        priced = [(a.qty, a.price) for a in trades if a.qty and a.price is not None]
        if sum((q for q, _ in priced), ZERO) != qty:  # the trades do not add up: one fill
            priced = [(qty, vwap(priced) or order.price)]
        price = vwap(priced) or order.price
        fill = self.ledger.apply_execution(
            order.local_id, order.market_slug, order.intent, qty, avg_px=price,
            fee=self._estimate_fee(order.market_slug, priced, trades),
            exec_id=f"inferred-{order.local_id}",
            trade_id=trades[0].trade_id if len(trades) == 1 else "")
        for a in trades:
            self._remember_trade(a.trade_id)
        order.cum_qty = qty
        order.avg_px = price
        done = qty >= order.quantity
        self.registry.handle(order, OrderEvent.EXEC_FILL if done else OrderEvent.EXEC_PARTIAL_FILL)
        if not done:
            self.registry.handle(order, OrderEvent.EXEC_CANCELED, reason="not open at the exchange")
        if fill is not None and len(trades) == 1:
            self._remember_trade(trades[0].trade_id, fill)
        synthetic = Execution(exec_id="", order=order.to_order(),
                              exec_type=ExecutionType.FILL if done else ExecutionType.CANCELED,
                              last_shares=qty, last_px=price, text="inferred from position")
        self._bump(order.market_slug)
        self.adopted += 1
        self.store.record_order(order)
        self.store.record_execution(synthetic, fill, order)
        self.store.save_ledger(self.ledger.drain_changes())
        self._schedule_check()  # its fee was estimated: let the balance confirm it soon
        self._alert("adopted", f"order {order.local_id} in {order.market_slug}: no open order but "
                    f"the position moved {qty} its way; booked as its fill at {price}",
                    logging.WARNING)

    def _estimate_fee(self, slug: str, priced: list[tuple[Decimal, Decimal]],
                      trades: list[wire.Activity]) -> Decimal:
        """The exchange's fee rule applied to fills whose commission we never saw (maker only
        if every trade says so); the balance check corrects any difference later."""
        maker = bool(trades) and all(a.is_aggressor is False for a in trades)
        info = self._markets.get(slug)
        theta = MAKER_THETA if maker else (
            info.fee_coefficient if info is not None and info.fee_coefficient is not None
            else TAKER_THETA)
        acc = FeeAccumulator(theta)
        return sum((acc.fill(q, p) for q, p in priced), ZERO)

    def _matches(self, order: TrackedOrder, reported: Order) -> bool:
        return matches_intent(
            market_slug=order.market_slug, intent=order.intent, price=order.price,
            quantity=order.quantity, created_at=order.created_at, reported=reported,
            tolerance=timedelta(seconds=self.config.match_time_tolerance))

    def _claim(self, reported: Order, source: str = "order stream") -> TrackedOrder | None:
        """The unacknowledged intent (or inferred order) an unknown exchange order belongs to."""
        candidates = [o for o in self.registry if o.exchange_id is None
                      and (o.state in UNRESOLVED or (o.reject_reason == "" and o.cum_qty > 0))
                      and self._matches(o, reported)]
        if not candidates:
            return None
        order = min(candidates, key=lambda o: o.created_at)
        self._link(order, reported.order_id, source)
        return order

    def _link(self, order: TrackedOrder, exchange_id: str, source: str) -> None:
        """`exchange_id` is this order's id (adopted from `source`)."""
        if order.state is OrderState.SUBMITTING:
            self.registry.submitted(order, exchange_id)
        elif order.state is OrderState.OUTCOME_UNKNOWN:
            self.registry.found(order, exchange_id)
        else:  # booked from a position change before its id was known: move that booking
            booked = self.ledger.booked(order.local_id, order.market_slug)
            order.exchange_id = exchange_id
            self.registry.add(order)
            self.ledger.mark_booked(exchange_id, booked.cum_qty,
                                    booked.notional / booked.cum_qty if booked.cum_qty else None,
                                    order.market_slug)
        self._drop_foreign(exchange_id)
        self.adopted += 1
        self._record_order(order)
        log.info("live: order %s is %s (from %s)", order.local_id, exchange_id, source)
        if order.cancel_requested and order.is_open:
            self._queue_cancel(order, "cancel requested while unresolved")

    # --- events from the private stream ------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if isinstance(event, wire.ExecutionReported):
            self._on_execution(event.execution)
        elif isinstance(event, wire.OrdersSnapshotted):
            for reported in event.orders:
                self._on_report(reported)
        elif isinstance(event, wire.PositionChanged):
            self._on_position(event)
        elif isinstance(event, wire.BalanceChanged):
            self._on_balance(event)
        elif isinstance(event, StreamConnected):
            self._stream_up = True
            self._blocks["stream"] = "private stream reconnected; reconciling"
            self._check_wake.set()
        elif isinstance(event, ContinuityLost):
            self._stream_up = False
            self._stream_gen += 1
            self._blocks["stream"] = f"private stream down: {event.reason}"
        elif isinstance(event, wire.SubscriptionFailed):
            log.warning("live: private subscription failed: %s", event.message)

    def _on_execution(self, execution: Execution) -> None:
        reported = execution.order
        order = self.registry.find(reported.order_id)
        if order is None:
            order = self._claim(reported)
        fill = book_execution(execution, self.registry, self.ledger, self.store)
        self._bump(reported.market_slug)
        if execution.trade_id:
            self._remember_trade(execution.trade_id, fill)
        if order is None:
            self._note_foreign(reported)
        else:
            if order.state is OrderState.REJECTED and execution.exec_type is ExecutionType.REJECTED:
                self._alert("order_rejected", f"order {order.local_id} rejected by the exchange: "
                            f"{order.reject_reason or execution.text}", logging.WARNING)
            if not order.is_open:
                self._cancel_queue.pop(order.order_id, None)
                self._cancel_sent.pop(order.order_id, None)

    def _on_report(self, reported: Order) -> None:
        """An order snapshot or query result."""
        order = self.registry.find(reported.order_id)
        if order is None:
            order = self._claim(reported)
        if order is None:
            self._note_foreign(reported)
            return
        self._apply_report(order, reported)

    def _apply_report(self, order: TrackedOrder, reported: Order) -> Fill | None:
        if reported.intent is Intent.UNKNOWN or not reported.market_slug:
            # a report missing what we know already must not stop the booking of its fills
            reported = attrs.evolve(reported, intent=order.intent,
                                    market_slug=reported.market_slug or order.market_slug)
        execution = report_execution(reported)
        if execution is None:  # pending states carry no execution type
            self.registry.apply_report(order, reported)
            fill = self.ledger.apply(Execution(exec_id="", order=reported,
                                               exec_type=ExecutionType.UNKNOWN))
            self._record_order(order)
        else:
            fill = book_execution(execution, self.registry, self.ledger, self.store)
        if fill is not None:
            self._bump(order.market_slug)
            fills = self._report_fills.setdefault(order.market_slug, deque(maxlen=1000))
            fills.append((self._clock.now(), fill.qty))
            log.info("live: fill of %s recovered from an order report: %s @ %s",
                     order.local_id, fill.qty, fill.price)
        if not order.is_open:
            self._cancel_queue.pop(order.order_id, None)
            self._cancel_sent.pop(order.order_id, None)
        return fill

    def _drop_foreign(self, order_id: str) -> None:
        if self._foreign.pop(order_id, None) is not None:
            self._on_foreign_order(f"foreign:{order_id}", None)

    def _note_foreign(self, reported: Order) -> None:
        if reported.state.is_terminal:
            self._drop_foreign(reported.order_id)
            return
        if reported.market_slug not in self.slugs:
            return
        self._foreign[reported.order_id] = reported
        self._on_foreign_order(f"foreign:{reported.order_id}", reported)
        if reported.order_id not in self._reported_foreign:
            self._reported_foreign.add(reported.order_id)
            act = "cancelling it" if self.config.cancel_unknown_orders else "leaving it alone"
            self._alert("unknown_order", f"unknown open order {reported.order_id} in "
                        f"{reported.market_slug} ({reported.intent.name} "
                        f"{reported.quantity}@{reported.price}); counted in USD at risk; {act}")
        if self.config.cancel_unknown_orders:
            self._queue(reported.order_id, reported.market_slug, "unknown order")

    def _on_position(self, event: wire.PositionChanged) -> None:
        entry = event.entry_type
        slug = event.market_slug
        if entry.endswith("_RESOLUTION"):
            self._start_settle(slug)
        elif entry.endswith("_CORRECTION") and event.trade_id:
            self._reverse_trade(event.trade_id)
        else:
            theirs = event.after.net_qty if event.after is not None else ZERO
            if theirs != self.ledger.position(slug).net_qty:
                self._schedule_check()

    def _on_balance(self, event: wire.BalanceChanged) -> None:
        # Deposits and withdrawals are booked from the activities, by transaction id, by the
        # next check (the stream event has no id, and a restart must not book one twice).
        entry = event.entry_type
        if (entry.endswith("_DEPOSIT") or entry.endswith("_WITHDRAWAL")
                or (event.after is not None and event.after.current_balance != self.ledger.cash)):
            self._schedule_check()

    def _reverse_trade(self, trade_id: str) -> None:
        fill = self._fills_by_trade.get(trade_id)
        if fill is None or trade_id in self._busted:
            self._schedule_check()  # not ours to reverse from memory: reconciliation corrects
            return
        self._busted.add(trade_id)
        reverse = attrs.evolve(fill, intent=_REVERSE[fill.intent], fee=-fill.fee,
                               exec_id=f"bust-{trade_id}")
        self.ledger.book_fill(reverse)
        self.store.save_ledger(self.ledger.drain_changes())
        self._bump(fill.market_slug)
        self._alert("trade_busted", f"trade {trade_id} in {fill.market_slug} busted: reversed "
                    f"{fill.qty}@{fill.price} (fee {fill.fee})", logging.WARNING)

    def _start_settle(self, slug: str) -> None:
        if slug not in self._settling:
            self._settling.add(slug)
            self._spawn(self._settle_when_known, slug)

    async def _settle_when_known(self, slug: str) -> None:
        backoff = Backoff(self.config.retry_base, self.config.retry_cap)
        try:
            while True:
                try:
                    value = await self.rest.settlement(slug)
                except E.PolymarketError as exc:
                    log.warning("live: settlement of %s not readable: %s", slug, exc)
                    value = None
                if value is not None:
                    self._settle(slug, value)
                    return
                await trio.sleep(backoff.next_delay())
        finally:
            self._settling.discard(slug)

    def _settle(self, slug: str, value: Decimal) -> None:
        m = self.ledger.markets.get(slug)
        if m is None or (m.net_qty == 0 and m.settled_value is not None):
            return
        realized = self.ledger.settle(slug, value)
        self.store.save_ledger(self.ledger.drain_changes())
        self._bump(slug)
        log.info("live: %s settled at %s, realized %s", slug, value, realized)

    def _remember_trade(self, trade_id: str, fill: Fill | None = None) -> None:
        self._known_trades[trade_id] = None
        if fill is not None:
            self._fills_by_trade[trade_id] = fill
        for table in (self._known_trades, self._fills_by_trade):
            while len(table) > MAX_REMEMBERED_TRADES:
                del table[next(iter(table))]

    def _bump(self, slug: str) -> None:
        self._exec_seq += 1
        self._market_seq[slug] = self._market_seq.get(slug, 0) + 1

    # --- reconciliation ----------------------------------------------------------------------

    def _schedule_check(self) -> None:
        self._check_soon = True
        self._check_wake.set()

    async def _reconcile_loop(self) -> None:
        cfg = self.config
        backoff = Backoff(cfg.retry_base, cfg.retry_cap)
        delay = 0.0
        self._check_soon = False
        while True:
            with trio.move_on_after(delay):
                await self._check_wake.wait()
                if self._check_soon and self._started:
                    self._check_soon = False
                    await trio.sleep(cfg.cross_check_delay)  # let executions in flight land
            self._check_wake = trio.Event()
            self._progress()
            ok = await self._reconcile_once()
            if ok:
                backoff.reset()
                # a difference seen is looked at again soon: corrected in seconds if it
                # persists, forgotten if it was a fill in flight
                delay = min(cfg.reconcile_interval, cfg.recheck_delay) if self._differs \
                    else cfg.reconcile_interval
            else:
                delay = backoff.next_delay()

    async def _reconcile_once(self) -> bool:
        gen = self._stream_gen
        stream_was_up = self._stream_up
        try:
            if not self._started:
                await self._startup()
            else:
                await self._check(startup=False)
        except E.PolymarketError as exc:
            self.reconcile_failures += 1
            why = f"exchange unreachable: {exc}"
            if "exchange" not in self._blocks:
                self._alert("exchange_down", f"reconciliation failed: {exc}; trading paused")
            self._blocks["exchange"] = why
            if not self._started:
                self._blocks["startup"] = f"startup reconciliation failed: {exc}; retrying"
            return False
        except Exception as exc:  # a bug must not leave trading enabled
            self.reconcile_failures += 1
            log.exception("live: reconciliation failed")
            self._blocks["exchange"] = f"reconciliation failed: {type(exc).__name__}: {exc}"
            return False
        self.reconciliations += 1
        if self._blocks.pop("exchange", None) is not None:
            self._alert("exchange_up", "reconciliation succeeded; trading may resume",
                        logging.INFO)
        if stream_was_up and self._stream_up and gen == self._stream_gen:
            self._blocks.pop("stream", None)
        self.store.set_meta(META_SYNCED_AT, self._clock.now().isoformat())
        return True

    def _load_known_trades(self) -> None:
        """Trade ids an earlier run booked (the store's fills), so they are not taken for new
        evidence when resolving an unknown outcome after a restart."""
        for trade_id in self.store.known_trade_ids(MAX_REMEMBERED_TRADES):
            self._known_trades[trade_id] = None

    def _load_stored_orders(self) -> None:
        """Our orders from the store (open ones, unacknowledged intents included)."""
        for order in self.store.load_orders(open_only=True):
            if self.registry.get(order.local_id) is None:
                booked = self.ledger.booked(order.order_id, order.market_slug)
                order.cum_qty = max(order.cum_qty, booked.cum_qty)
                self.registry.add(order)
                if order.cancel_requested and order.exchange_id is not None:
                    # asked before a crash: send it again, wherever the market is configured
                    self._queue(order.exchange_id, order.market_slug, "cancel requested before "
                                "the restart")

    async def _startup(self) -> None:
        """The first reconciliation: adopt, book what happened while down, correct the rest."""
        synced = self.store.get_meta(META_SYNCED_AT) is not None
        fresh = not synced and not self.ledger.has_history()
        for order in self.registry.open_orders():
            if order.state is OrderState.SUBMITTING and order.exchange_id is None:
                # the previous run died between storing the intent and learning its fate
                self.registry.handle(order, OrderEvent.OUTCOME_UNKNOWN,
                                     reason="unacknowledged at restart")
                self._record_order(order)
        await self._check(startup=True, fresh=fresh)
        for order in self.registry.open_orders():
            if self._unresolved(order):
                self._start_resolver(order)
        self._started = True
        self._blocks.pop("startup", None)
        log.info("live: startup reconciliation done (%d open orders, %d unknown, frozen: %s)",
                 len(self.registry.open_orders()), len(self._foreign), self.frozen_markets())

    def _booked_transfers(self) -> dict[str, Decimal | None]:
        """Transaction id -> amount booked for it (None: booked by an older version, amount not
        kept): read from the store once, then kept here (the store's writes are queued, so
        reading them back could miss the latest)."""
        if self._transfers is None:
            raw = self.store.get_meta(META_TRANSFERS)
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {}
            if isinstance(data, list):
                self._transfers = {str(i): None for i in data}
            elif isinstance(data, dict):
                self._transfers = {str(k): None if v is None else Decimal(str(v))
                                   for k, v in data.items()}
            else:
                self._transfers = {}
        return self._transfers

    def _book_transfers(self, activities: list[wire.Activity], *, baseline: bool) -> None:
        """Book the cash activities' money as it becomes final (by transaction id), not as P&L.

        Only money that moved counts: a COMPLETED change its amount, a PARTIALLY_REFUNDED one its
        amount less the refund, a REJECTED one nothing; a PENDING one is not remembered, so every
        check reads it again until it is final. A change whose status moves after it was booked
        books the difference. `baseline`: the account is being adopted as it is, so the final
        ones are only remembered (their money is in the adopted cash).
        """
        booked = self._booked_transfers()
        changed = False
        for a in reversed(activities):  # oldest first
            if a.type not in CASH_ACTIVITY_TYPES:
                continue
            tid, moved = _transfer_of(a)
            if not tid or moved is None:
                continue
            if tid in booked:
                before = booked[tid]
                if before is None or before == moved:
                    continue
            else:
                before = ZERO
            booked[tid] = moved
            changed = True
            delta = moved - before
            if baseline or delta == 0:
                continue
            if a.type in INCOME_TYPES:
                self.ledger.set_cash(self.ledger.cash + delta)
                log.info("live: %s %s of %s booked as income", a.type, tid, delta)
            else:
                self.ledger.transfer(delta)
                log.info("live: %s %s of %s booked as a transfer", a.type, tid, delta)
            self.on_transfer(delta)
        if changed:
            keep = list(booked.items())[-KEEP_TRANSFER_IDS:]
            self._transfers = dict(keep)
            self.store.save_ledger(self.ledger.drain_changes())
            self.store.set_meta(META_TRANSFERS, json.dumps(
                {k: None if v is None else str(v) for k, v in keep}))

    async def _check(self, *, startup: bool, fresh: bool = False) -> None:
        """One reconciliation pass (raises PolymarketError when the exchange cannot be read)."""
        seq_before = self._exec_seq
        open_orders = await self.rest.open_orders(self._order_query())
        open_ids = {o.order_id for o in open_orders}
        # unacknowledged intents first, so their orders are not mistaken for unknown ones
        for reported in sorted(open_orders, key=_created):
            if self.registry.find(reported.order_id) is None:
                self._claim(reported, "open orders")
        seen_foreign: set[str] = set()
        for reported in open_orders:
            order = self.registry.find(reported.order_id)
            if order is None:
                seen_foreign.add(reported.order_id)
                self._note_foreign(reported)
            else:
                self._apply_report(order, reported)
                if order.cancel_requested and order.is_open and startup is False:
                    self._requeue_stale_cancel(order)
        for oid in list(self._foreign):
            if oid not in seen_foreign:
                self._drop_foreign(oid)
        # our orders the exchange no longer lists as open: ask for each one's final state
        for order in self.registry.open_orders():
            if order.exchange_id is None or order.exchange_id in open_ids:
                continue
            try:
                reported = await self.rest.order(order.exchange_id)
            except E.NotFound:
                n = self._not_found[order.local_id] = self._not_found.get(order.local_id, 0) + 1
                if n >= self.config.not_found_reads:
                    self.registry.handle(order, OrderEvent.EXEC_CANCELED,
                                         reason="not found at the exchange")
                    self._record_order(order)
                    self._alert("order_gone", f"order {order.local_id} ({order.exchange_id}) "
                                f"not found {n} times; booked as cancelled")
                continue
            self._not_found.pop(order.local_id, None)
            self._apply_report(order, reported)  # monotonic: a stale report changes nothing
        positions, cash, torn = await self._account_view()
        transfers = await self.rest.activities(types=CASH_ACTIVITY_TYPES, max_pages=1)
        await self._settle_resolved(positions)
        # no I/O below this line: a pass that failed above booked nothing twice on its retry
        self._book_transfers(transfers, baseline=fresh)
        theirs = {s: p.net_qty for s, p in positions.items() if p.net_qty != 0}
        diffs = compare(self.ledger, theirs, cash, cash_tolerance=self.config.cash_tolerance)
        unresolved = {o.market_slug for o in self.registry.open_orders() if o.state in UNRESOLVED}
        if fresh:
            self._bootstrap(positions, cash)
            return
        if self._adoption_unmarked:
            self._report_adoption(force=trio.current_time() - self._adopted_at
                                  >= self.config.adoption_mark_wait)
        quiet = (seq_before == self._exec_seq and not torn
                 and (startup or self._last_check_seq == seq_before))
        self._last_check_seq = self._exec_seq
        if startup and quiet:  # nothing sent yet and nothing arrived meanwhile: fix at once
            to_fix = [d for d in diffs if d.key not in unresolved
                      and not (d.key == CASH and unresolved)]
        else:
            persistent = self._diffs.observe(diffs, quiet=quiet and not unresolved)
            to_fix = persistent
        for d in diffs:
            if d not in to_fix:
                log.info("live: ledger vs exchange differ on %s: ledger %s, exchange %s "
                         "(checking again)", d.key, d.ledger, d.exchange)
        self._differs = bool(diffs) and len(to_fix) < len(diffs)
        if to_fix:
            self._correct(to_fix, positions, open_orders)

    async def _account_view(self) -> tuple[dict[str, wire.ExchangePosition], Decimal | None, bool]:
        """The positions and the cash, read so that they agree: (positions, cash, torn).

        They are two requests, and a fill or a settlement between them moves both (a market
        resolving while we were down: its position read still held, its payout already in the
        cash). So the cash is read before and after the positions, and all three again while
        the two cash reads differ. `torn`: they still differed after `VIEW_READS` tries; the
        caller must not correct anything from this view."""
        before = _usd(await self.rest.balances())
        for _ in range(VIEW_READS):
            positions = await self.rest.positions()
            after = _usd(await self.rest.balances())
            if after == before:
                return positions, after, False
            log.info("live: the cash moved while the positions were read (%s -> %s): reading "
                     "again", before, after)
            before = after
        return positions, after, True

    def _requeue_stale_cancel(self, order: TrackedOrder) -> None:
        sent = self._cancel_sent.get(order.order_id)
        if sent is None or trio.current_time() - sent >= self.config.cancel_retry:
            self._queue_cancel(order, "cancel not confirmed; retrying")

    async def _settle_resolved(self, positions: dict[str, wire.ExchangePosition]) -> None:
        """Settle ledger positions the exchange shows flat/expired in a settled market."""
        for slug, m in self.ledger.markets.items():
            if m.net_qty == 0:
                continue
            p = positions.get(slug)
            if p is not None and p.net_qty != 0 and not p.expired:
                continue
            value = await self.rest.settlement(slug)
            if value is not None:
                self._settle(slug, value)

    def _bootstrap(self, positions: dict[str, wire.ExchangePosition],
                   cash: Decimal | None) -> None:
        """First live start on an empty ledger: the account as it is becomes the baseline."""
        if cash is not None:
            self.ledger.set_cash(cash)
        for slug, p in positions.items():
            if p.net_qty != 0:
                self.ledger.set_position(slug, p.net_qty, exchange_avg_yes(p.net_qty, p.cost))
        # P&L counts from what was adopted: the cash and the positions at their cost (with cash
        # alone as the start, `pnl` opened at the adopted positions' whole value)
        self.ledger.initial_cash = self.ledger.equity
        self.store.save_ledger(self.ledger.drain_changes())
        self._alert("adopted", f"empty ledger: adopted the account's cash {cash} and "
                    f"{sum(1 for p in positions.values() if p.net_qty)} positions", logging.INFO)
        self._adoption_unmarked = True
        self._adopted_at = trio.current_time()
        self._report_adoption()

    def _report_adoption(self, *, force: bool = False) -> None:
        """Hand the adopted equity to `on_adopted` (the day's start and high-water mark re-base
        there) once every adopted position in a traded market has the mark it is valued at:
        a baseline valued at cost would count the cost-to-bid gap as today's loss when the first
        book arrives. Following the universe, that is every adopted position (a held market
        joins the universe and its book is subscribed, even when the universe is still empty at
        the adoption). `force` (a reconciliation `adoption_mark_wait` after the adoption): value
        what is still unmarked at cost."""
        for slug, m in self.ledger.markets.items():
            mark = m.mark_bid if m.net_qty > 0 else m.mark_offer
            traded = self._follow is not None or slug in self.slugs
            if not force and m.net_qty != 0 and traded and mark is None:
                return
        self._adoption_unmarked = False
        self.on_adopted(self.ledger.equity)

    def _correct(self, diffs: list[Diff], positions: dict[str, wire.ExchangePosition],
                 open_orders: list[Order]) -> None:
        """Resolve persistent differences in the exchange's favour (logged and alerted)."""
        reports = {o.order_id: o for o in open_orders}
        for d in diffs:
            self.corrections += 1
            self._alert("reconcile_difference", f"ledger and exchange differ on {d.key}: ledger "
                        f"{d.ledger}, exchange {d.exchange}; taking the exchange's",
                        logging.ERROR)
            if d.key == CASH:
                self.ledger.set_cash(d.exchange)
            else:
                p = positions.get(d.key)
                self.ledger.set_position(d.key, d.exchange,
                                         exchange_avg_yes(d.exchange, p.cost if p else None))
                for r in reports.values():  # a late execution of these must book nothing
                    if r.market_slug == d.key:
                        self.ledger.mark_booked(r.order_id, r.cum_quantity, r.avg_px,
                                                r.market_slug)
            self._diffs.forget(d.key)
        self.store.save_ledger(self.ledger.drain_changes())

    # --- cancels ------------------------------------------------------------------------------------

    def cancel(self, order_id: str, reason: str = "cancel requested") -> bool:
        """Queue a cancel of one of our orders (local or exchange id); False if not open."""
        order = self.registry.find(order_id)
        if order is None or not order.is_open:
            foreign = self._foreign.get(order_id)
            if foreign is None:
                return False
            self._queue(order_id, foreign.market_slug, reason)
            return True
        self._queue_cancel(order, reason)
        return True

    def cancel_all(self, slug: str | None = None,
                   reason: str = "cancel all") -> list[TrackedOrder]:
        """Cancel our open orders (in `slug`), and unknown ones there with cancel_unknown_orders.

        Never an account-wide cancel-all: every cancel names an order.
        """
        orders = self.registry.open_orders(slug)
        for order in orders:
            self._queue_cancel(order, reason)
        if self.config.cancel_unknown_orders:
            for o in list(self._foreign.values()):
                if slug is None or o.market_slug == slug:
                    self._queue(o.order_id, o.market_slug, reason)
        return orders

    def sync_signals(self, slug: str, signals: Iterable[Signal]) -> list[TrackedOrder]:
        """Cancel resting orders in `slug` whose signal disappeared or whose limit moved."""
        open_orders = self.registry.open_orders(slug)
        if not open_orders:  # every trading event of a market with nothing open
            return []
        limits = {s.intent: s.limit_price for s in signals if s.market_slug == slug}
        cancelled = []
        for order in open_orders:
            if order.tif in (TimeInForce.IOC, TimeInForce.FOK) or order.cancel_requested:
                continue
            limit = limits.get(order.intent)
            if limit is None or limit != order.price:
                self._queue_cancel(order, "signal gone" if limit is None
                                   else f"limit moved to {limit}")
                cancelled.append(order)
        return cancelled

    def _queue_cancel(self, order: TrackedOrder, reason: str) -> None:
        if not order.cancel_requested:
            order.cancel_requested = True
            self._record_order(order)  # a restart must still cancel it (a crash forgets nothing)
        if order.exchange_id is None:
            return  # sent as soon as its id is known (see _link / _acknowledged)
        self._queue(order.exchange_id, order.market_slug, reason)

    def _queue(self, exchange_id: str, slug: str, reason: str) -> None:
        self._cancel_queue[exchange_id] = (slug, reason)
        self._cancel_wake.set()

    async def _cancel_worker(self) -> None:
        cfg = self.config
        backoff = Backoff(cfg.retry_base, cfg.retry_cap)
        while True:
            if not self._cancel_queue:
                await self._cancel_wake.wait()
                self._cancel_wake = trio.Event()
                continue
            for oid in list(self._cancel_queue):  # finished meanwhile: nothing to cancel
                order = self.registry.find(oid)
                if (order is not None and not order.is_open) or (
                        order is None and oid not in self._foreign):
                    del self._cancel_queue[oid]
            if not self._cancel_queue:
                continue
            batch = list(self._cancel_queue.items())[:MAX_CANCEL_BATCH]
            pairs = [(oid, slug) for oid, (slug, _reason) in batch]
            try:
                await self._send_cancels(pairs)
            except E.PolymarketError as exc:
                self._cancel_failures += 1
                if self._cancel_failures == 3:
                    self._alert("cancel_failing", f"cancels failing: {exc}; retrying",
                                logging.ERROR)
                await trio.sleep(backoff.next_delay())
                continue
            self._cancel_failures = 0
            backoff.reset()
            now = trio.current_time()
            for oid, (_slug, reason) in batch:
                if self._cancel_queue.get(oid, (None, None))[1] == reason:
                    del self._cancel_queue[oid]
                self._cancel_sent[oid] = now
                log.info("live: cancel sent for %s (%s)", oid, reason)
            self._spawn(self._confirm_cancels, [oid for oid, _ in pairs])

    async def _send_cancels(self, pairs: list[tuple[str, str]]) -> None:
        if len(pairs) == 1:
            await self.rest.cancel_order(*pairs[0])
        else:
            await self.rest.cancel_orders(pairs)

    async def _confirm_cancels(self, ids: list[str]) -> None:
        """Re-send cancels whose order is still open after `cancel_retry` (idempotent)."""
        await trio.sleep(self.config.cancel_retry)
        for oid in ids:
            order = self.registry.find(oid)
            if order is not None and order.is_open and oid not in self._cancel_queue:
                self._queue(oid, order.market_slug, "cancel not confirmed; retrying")
            elif order is None and oid in self._foreign and oid not in self._cancel_queue:
                self._queue(oid, self._foreign[oid].market_slug, "cancel not confirmed; retrying")

    # --- shutdown ------------------------------------------------------------------------------------

    async def shutdown(self, *, cancel: bool = True) -> ShutdownReport:
        """Stop sending; wait (bounded) for creates in flight; then cancel and confirm.

        Runs its cancels in a shielded, time-limited scope, so a shutdown signal cannot cut them
        short. Returns whether every cancel was confirmed (the root exits 0, else 1 and alerts).
        """
        self._closing = True
        cfg = self.config
        with trio.move_on_after(cfg.shutdown_create_wait):
            await self._inflight_idle.wait()
        if self._inflight:
            log.warning("live: %d creates still in flight at shutdown", len(self._inflight))
        if not cancel:
            return ShutdownReport(True, (), "cancel on shutdown disabled")
        still: list[str] = []
        detail = ""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(cfg.shutdown_cancel_timeout) as scope:
                still, detail = await self._cancel_and_confirm()
            if scope.cancelled_caught:
                still = list(self._last_still)
                detail = f"timed out after {cfg.shutdown_cancel_timeout} s; {self._last_detail}"
        ok = not still
        if not ok:
            self._alert("shutdown_open_orders", f"shutdown: orders still open: {', '.join(still)} "
                        f"({detail})", logging.CRITICAL)
        return ShutdownReport(ok, tuple(still), detail)

    async def _cancel_and_confirm(self) -> tuple[list[str], str]:
        self._last_still = [o.exchange_id or o.local_id for o in self.registry.open_orders()]
        self._last_detail = "exchange not reached"
        unlisted = 0  # consecutive reads in which no unknown outcome showed up as open
        while True:
            try:
                open_orders = await self.rest.open_orders(self._order_query())
            except E.PolymarketError as exc:
                self._last_detail = f"open orders not readable: {exc}"
                await trio.sleep(self.config.shutdown_poll)
                continue
            targets = []
            for r in open_orders:
                order = self.registry.find(r.order_id)
                if order is None:
                    order = self._claim(r) if any(self._unresolved(o)
                                                  for o in self.registry.open_orders()) else None
                if order is not None or (self.config.cancel_unknown_orders
                                         and r.market_slug in self.slugs):
                    targets.append((r.order_id, r.market_slug))
                if order is not None:
                    self._apply_report(order, r)
            listed = {r.order_id for r in open_orders}
            for order in self.registry.open_orders():  # ours not listed open: ask each one
                if order.exchange_id and order.exchange_id not in listed:
                    try:
                        self._apply_report(order, await self.rest.order(order.exchange_id))
                    except E.PolymarketError:
                        pass
                    if order.is_open:  # e.g. a market no longer configured
                        targets.append((order.exchange_id, order.market_slug))
            unresolved = [o.local_id for o in self.registry.open_orders() if self._unresolved(o)]
            still = [oid for oid, _ in targets] + unresolved
            self._last_still = still
            unlisted = unlisted + 1 if unresolved and not targets else 0
            if not still or unlisted >= SHUTDOWN_UNLISTED_READS:
                # An unknown outcome not open in consecutive reads leaves nothing to cancel; it
                # stays OUTCOME_UNKNOWN in the store and the next start books whatever it did.
                return [], ("all cancels confirmed" if not still else
                            "all cancels confirmed; not open, outcome unknown: "
                            + ", ".join(unresolved))
            self._last_detail = (f"{len(targets)} open" + (
                f", unresolved creates: {', '.join(unresolved)}" if unresolved else ""))
            for i in range(0, len(targets), MAX_CANCEL_BATCH):
                try:
                    await self._send_cancels(targets[i:i + MAX_CANCEL_BATCH])
                except E.PolymarketError as exc:
                    self._last_detail = f"cancel failed: {exc}"
            await trio.sleep(self.config.shutdown_poll)

    # --- helpers ----------------------------------------------------------------------------------

    def _record_order(self, order: TrackedOrder) -> None:
        self.store.record_order(order)

    def _alert(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        log.log(level, "live: %s", message)
        if self._notify_fn is not None:
            try:
                self._notify_fn(LiveNotice(kind, message, logging.getLevelName(level).lower()))
            except Exception:  # an alert must never break trading
                log.exception("live: notify failed")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _usd(balances: list[Any]) -> Decimal | None:
    """The USD balance's current amount (the first balance when none says USD)."""
    usd = next((b for b in balances if b.currency == "USD"), balances[0] if balances else None)
    return usd.current_balance if usd is not None else None


def _created(order: Order) -> datetime:
    return order.create_time or _EPOCH


def _transfer_of(a: wire.Activity) -> tuple[str, Decimal | None]:
    """(transaction id, money moved so far, signed) of a cash activity; None while pending.

    No status (older payloads) counts as COMPLETED; a PARTIALLY_REFUNDED change moved its amount
    less its refunds (or its amount when it lists none).
    """
    status = a.change_status or CHANGE_COMPLETED
    if status == CHANGE_REJECTED:
        return a.change_id, ZERO
    if status not in (CHANGE_COMPLETED, CHANGE_PARTIALLY_REFUNDED) or a.change_amount is None:
        return a.change_id, None  # pending (or a status not known yet): read again until final
    size = abs(a.change_amount)
    if status == CHANGE_PARTIALLY_REFUNDED and a.change_refund is not None:
        size = max(ZERO, size - a.change_refund)
    # the sign of a withdrawal's amount is not documented
    out = a.type.endswith("WITHDRAWAL") or a.change_amount < 0
    return a.change_id, -size if out else size
