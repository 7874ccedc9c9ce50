"""The bot's orders: an explicit state machine, the registry of orders, and the booking path.

**State machine.** `TRANSITIONS` maps (current state, event) to the next state. Events are the
exchange's execution types (`EXEC_*`), order states read from a snapshot or query (`REPORTED_*`,
see `event_for_reported_state`) and the bot's own steps around the POST: SUBMITTED (an id came
back), OUTCOME_UNKNOWN (timeout or ambiguous failure: the order may or may not exist), SEND_FAILED
(definitely refused, no id), FOUND and PROVEN_ABSENT (how an unknown outcome resolves). A pair not
in the table is illegal: it is logged and never applied, so a late or replayed report cannot move
an order backwards (a FILLED order never becomes PARTIALLY_FILLED again). Repeating the current
terminal state (a FILL reported by the stream and again by a snapshot) is a legal no-op.

SUBMITTING and OUTCOME_UNKNOWN count as open at full size for USD at risk until resolved
(`OrderState.is_open`), which is what stops a second order being sized on top of an unknown one.

**Registry.** `OrderRegistry` holds every order the bot placed, by local id and by exchange id; its
one writer is the executor. `TrackedOrder` is mutable on purpose (only the registry mutates it);
everything handed to other components is a frozen `model.Order` from `to_order()`.

**Booking.** `book_execution` is the one path an execution takes, in paper and live mode alike:
registry (state), ledger (fills by cumulative-quantity growth, so duplicates book nothing), then the
recorder (the store) and the trades log. The ledger books even an execution of an order the
registry does not know: the account is dedicated, every fill in it is ours to count.
"""

from __future__ import annotations

import enum
import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import attrs
import orjson

from polybot.clock import LIVE_CLOCK, Clock
from polybot.ledger import Ledger, LedgerState
from polybot.model import (
    ZERO,
    Execution,
    ExecutionType,
    Fill,
    Intent,
    Order,
    OrderRequest,
    OrderState,
    OrderType,
    TimeInForce,
)

log = logging.getLogger(__name__)


class OrderEvent(enum.Enum):
    # the bot's own steps around the POST
    SUBMITTED = "submitted"
    OUTCOME_UNKNOWN = "outcome_unknown"
    SEND_FAILED = "send_failed"
    FOUND = "found"
    PROVEN_ABSENT = "proven_absent"
    # execution types
    EXEC_NEW = "exec_new"
    EXEC_PARTIAL_FILL = "exec_partial_fill"
    EXEC_FILL = "exec_fill"
    EXEC_CANCELED = "exec_canceled"
    EXEC_REPLACE = "exec_replace"
    EXEC_REJECTED = "exec_rejected"
    EXEC_EXPIRED = "exec_expired"
    EXEC_DONE_FOR_DAY = "exec_done_for_day"
    # pending states only seen in order snapshots and queries
    REPORTED_PENDING_NEW = "reported_pending_new"
    REPORTED_PENDING_RISK = "reported_pending_risk"
    REPORTED_PENDING_CANCEL = "reported_pending_cancel"
    REPORTED_PENDING_REPLACE = "reported_pending_replace"


_EXEC_EVENTS = {
    ExecutionType.NEW: OrderEvent.EXEC_NEW,
    ExecutionType.PARTIAL_FILL: OrderEvent.EXEC_PARTIAL_FILL,
    ExecutionType.FILL: OrderEvent.EXEC_FILL,
    ExecutionType.CANCELED: OrderEvent.EXEC_CANCELED,
    ExecutionType.REPLACE: OrderEvent.EXEC_REPLACE,
    ExecutionType.REJECTED: OrderEvent.EXEC_REJECTED,
    ExecutionType.EXPIRED: OrderEvent.EXEC_EXPIRED,
    ExecutionType.DONE_FOR_DAY: OrderEvent.EXEC_DONE_FOR_DAY,
}

_REPORTED_EVENTS = {
    OrderState.PENDING_NEW: OrderEvent.REPORTED_PENDING_NEW,
    OrderState.PENDING_RISK: OrderEvent.REPORTED_PENDING_RISK,
    OrderState.PENDING_CANCEL: OrderEvent.REPORTED_PENDING_CANCEL,
    OrderState.PENDING_REPLACE: OrderEvent.REPORTED_PENDING_REPLACE,
    OrderState.NEW: OrderEvent.EXEC_NEW,
    OrderState.PARTIALLY_FILLED: OrderEvent.EXEC_PARTIAL_FILL,
    OrderState.FILLED: OrderEvent.EXEC_FILL,
    OrderState.CANCELED: OrderEvent.EXEC_CANCELED,
    OrderState.REPLACED: OrderEvent.EXEC_REPLACE,
    OrderState.REJECTED: OrderEvent.EXEC_REJECTED,
    OrderState.EXPIRED: OrderEvent.EXEC_EXPIRED,
}


def event_for_execution(exec_type: ExecutionType) -> OrderEvent | None:
    return _EXEC_EVENTS.get(exec_type)


def event_for_reported_state(state: OrderState) -> OrderEvent | None:
    """The event an order snapshot (open orders, GET order) reporting `state` stands for."""
    return _REPORTED_EVENTS.get(state)


def _build_table() -> dict[tuple[OrderState, OrderEvent], OrderState]:
    S, E = OrderState, OrderEvent
    unresolved = {S.SUBMITTING, S.OUTCOME_UNKNOWN}
    pending = {S.PENDING_NEW, S.PENDING_RISK}
    resting = {S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE}
    working = unresolved | pending | resting
    t: dict[tuple[OrderState, OrderEvent], OrderState] = {
        (S.SUBMITTING, E.SUBMITTED): S.PENDING_NEW,
        (S.SUBMITTING, E.OUTCOME_UNKNOWN): S.OUTCOME_UNKNOWN,
        (S.SUBMITTING, E.SEND_FAILED): S.REJECTED,
        (S.OUTCOME_UNKNOWN, E.FOUND): S.PENDING_NEW,
        (S.OUTCOME_UNKNOWN, E.PROVEN_ABSENT): S.REJECTED,
        (S.OUTCOME_UNKNOWN, E.OUTCOME_UNKNOWN): S.OUTCOME_UNKNOWN,
    }
    # An execution may overtake the POST's answer: every working state accepts fills and ends.
    for s in working:
        t[(s, E.EXEC_PARTIAL_FILL)] = S.PARTIALLY_FILLED
        t[(s, E.EXEC_FILL)] = S.FILLED
        t[(s, E.EXEC_CANCELED)] = S.CANCELED
        t[(s, E.EXEC_EXPIRED)] = S.EXPIRED
        t[(s, E.EXEC_DONE_FOR_DAY)] = s  # no more fills today; the order may still rest
    for s in unresolved | pending | {S.NEW, S.PENDING_REPLACE}:
        t[(s, E.EXEC_NEW)] = S.NEW  # a NEW after a partial fill would move it backwards
    for s in unresolved | pending | {S.NEW}:
        t[(s, E.EXEC_REJECTED)] = S.REJECTED  # accepted (200) and then rejected
    for s in unresolved | pending:
        t[(s, E.REPORTED_PENDING_NEW)] = S.PENDING_NEW
        t[(s, E.REPORTED_PENDING_RISK)] = S.PENDING_RISK
    for s in pending | resting:
        t[(s, E.REPORTED_PENDING_CANCEL)] = S.PENDING_CANCEL
        t[(s, E.REPORTED_PENDING_REPLACE)] = S.PENDING_REPLACE
    for s in {S.NEW, S.PARTIALLY_FILLED, S.PENDING_REPLACE}:
        t[(s, E.EXEC_REPLACE)] = S.REPLACED
    # a rejected cancel or modify leaves the order working: the next report says how
    t[(S.PENDING_CANCEL, E.EXEC_NEW)] = S.NEW
    # duplicates of a terminal report are harmless repeats
    for s, e in [(S.FILLED, E.EXEC_FILL), (S.CANCELED, E.EXEC_CANCELED),
                 (S.REJECTED, E.EXEC_REJECTED), (S.EXPIRED, E.EXEC_EXPIRED),
                 (S.REPLACED, E.EXEC_REPLACE)]:
        t[(s, e)] = s
    return t


TRANSITIONS: dict[tuple[OrderState, OrderEvent], OrderState] = _build_table()


def next_state(state: OrderState, event: OrderEvent) -> OrderState | None:
    """The state after `event`, or None when the transition is illegal."""
    return TRANSITIONS.get((state, event))


@attrs.define(eq=False)
class TrackedOrder:
    """One of the bot's orders as the bot knows it (mutated only by its registry)."""

    local_id: str
    market_slug: str
    intent: Intent
    price: Decimal
    quantity: Decimal
    tif: TimeInForce = TimeInForce.IOC
    order_type: OrderType = OrderType.LIMIT
    state: OrderState = OrderState.SUBMITTING
    exchange_id: str | None = None
    cum_qty: Decimal = ZERO
    avg_px: Decimal | None = None
    created_at: datetime = attrs.field(kw_only=True)  # the injected clock's, never the host's
    updated_at: datetime | None = None
    fair_q: Decimal | None = None
    edge: Decimal | None = None
    reason: str = ""  # why the gate sent it (e.g. "open", "close", "flatten")
    reject_reason: str = ""
    cancel_requested: bool = False
    exec_ids: set[str] = attrs.field(factory=set, repr=False)

    @property
    def order_id(self) -> str:
        """The id executions carry: the exchange's id once known, else the local one."""
        return self.exchange_id or self.local_id

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    @property
    def leaves(self) -> Decimal:
        return max(self.quantity - self.cum_qty, ZERO) if self.is_open else ZERO

    def to_order(self) -> Order:
        return Order(
            order_id=self.order_id, market_slug=self.market_slug, intent=self.intent,
            price=self.price, quantity=self.quantity, cum_quantity=self.cum_qty,
            leaves_quantity=self.leaves, state=self.state, order_type=self.order_type,
            tif=self.tif, avg_px=self.avg_px, create_time=self.created_at)


# an order's create in flight, or its outcome unknown: the exchange may hold it under an id the
# bot has not learnt (its market is frozen until it resolves)
UNRESOLVED = frozenset({OrderState.SUBMITTING, OrderState.OUTCOME_UNKNOWN})


class OrderRegistry:
    """The bot's orders by local id and exchange id; the executor is its only writer."""

    def __init__(self, id_prefix: str | None = None, *, clock: Clock = LIVE_CLOCK,
                 on_change: Callable[[str, Order | None], None] | None = None) -> None:
        self.clock = clock  # stamps orders and the trades log
        # `on_change(local_id, order)` hears every change that can move USD at risk (the running
        # exposure totals follow the registry through it; closed orders arrive as closed).
        self.on_change = on_change
        self._by_local: dict[str, TrackedOrder] = {}
        self._by_exchange: dict[str, TrackedOrder] = {}
        # market -> local ids of its orders whose create is in flight or of unknown outcome
        # (what freezes a market), kept by `changed` so the order path never scans all orders
        self._unresolved: dict[str, dict[str, None]] = {}
        # market -> its open orders by local id, in the order they were tracked, kept by
        # `changed`: the live executor lists a market's open orders on every book frame
        # (`sync_signals`), and `_by_local` keeps closed orders for up to a minute
        self._open: dict[str, dict[str, TrackedOrder]] = {}
        self._prefix = id_prefix or f"pb-{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count(1)
        self.illegal_transitions = 0

    # --- creating and finding ------------------------------------------------------------------

    def new_order(self, request: OrderRequest, *, now: datetime | None = None,
                  log_intent: bool = True) -> TrackedOrder:
        """A SUBMITTING order for an approved request (store its intent before sending it).

        `log_intent=False` leaves its trades-log line to `log_intent`, called after the send: the
        live order path formats nothing before the create is on the wire."""
        sig = request.signal
        order = TrackedOrder(
            local_id=f"{self._prefix}-{next(self._seq)}", market_slug=request.market_slug,
            intent=request.intent, price=request.price, quantity=request.quantity,
            tif=request.tif, order_type=request.order_type,
            created_at=now or self.clock.now(),
            fair_q=sig.fair_q if sig else None, edge=sig.edge if sig else None,
            reason=request.reason)
        self.add(order)
        if log_intent:
            self.log_intent(order)
        return order

    @staticmethod
    def log_intent(order: TrackedOrder) -> None:
        log_trade("order_intent", order.created_at, **_order_fields(order))

    def add(self, order: TrackedOrder) -> None:
        """Track an order (new, restored from the store, or adopted at reconciliation)."""
        self._by_local[order.local_id] = order
        if order.exchange_id:
            self._by_exchange[order.exchange_id] = order
        self.changed(order)

    def changed(self, order: TrackedOrder) -> None:
        """Tell the listener an order's state or quantities changed."""
        slug = order.market_slug
        if order.state in UNRESOLVED:
            self._unresolved.setdefault(slug, {})[order.local_id] = None
        elif order.local_id in self._unresolved.get(slug, ()):
            ids = self._unresolved[slug]
            del ids[order.local_id]
            if not ids:
                del self._unresolved[slug]
        if order.is_open:
            self._open.setdefault(slug, {})[order.local_id] = order
        elif order.local_id in self._open.get(slug, ()):
            market = self._open[slug]
            del market[order.local_id]
            if not market:
                del self._open[slug]
        if self.on_change is not None:
            self.on_change(order.local_id, order.to_order())

    def unresolved_in(self, market_slug: str) -> str | None:
        """The local id of an order in `market_slug` whose create is in flight or of unknown
        outcome (the oldest), if any."""
        ids = self._unresolved.get(market_slug)
        return next(iter(ids)) if ids else None

    def unresolved_markets(self) -> dict[str, str]:
        """Each market with such an order -> the oldest one's local id."""
        return {slug: next(iter(ids)) for slug, ids in self._unresolved.items()}

    def get(self, local_id: str) -> TrackedOrder | None:
        return self._by_local.get(local_id)

    def by_exchange_id(self, exchange_id: str) -> TrackedOrder | None:
        return self._by_exchange.get(exchange_id)

    def find(self, order_id: str) -> TrackedOrder | None:
        return self._by_exchange.get(order_id) or self._by_local.get(order_id)

    def __iter__(self) -> Iterator[TrackedOrder]:
        return iter(list(self._by_local.values()))

    def __len__(self) -> int:
        return len(self._by_local)

    def open_orders(self, market_slug: str | None = None) -> list[TrackedOrder]:
        """Open orders (of `market_slug`: from its index, without a walk of every order)."""
        if market_slug is not None:
            market = self._open.get(market_slug)
            return [o for o in market.values() if o.is_open] if market else []
        return [o for o in self._by_local.values() if o.is_open]

    def open_model_orders(self, market_slug: str | None = None) -> list[Order]:
        """Open orders as frozen values (SUBMITTING / OUTCOME_UNKNOWN at full size): risk's view."""
        return [o.to_order() for o in self.open_orders(market_slug)]

    def forget_closed(self) -> int:
        """Drop terminal orders from memory (they stay in the store); returns how many."""
        gone = [o for o in self._by_local.values() if not o.is_open]
        for o in gone:
            self._by_local.pop(o.local_id, None)
            if o.exchange_id:
                self._by_exchange.pop(o.exchange_id, None)
        return len(gone)

    # --- transitions ------------------------------------------------------------------------------

    def handle(self, order: TrackedOrder, event: OrderEvent, *, reason: str = "",
               now: datetime | None = None) -> bool:
        """Apply `event` to `order` through the table; False (logged, unchanged) if illegal."""
        new = next_state(order.state, event)
        if new is None:
            self.illegal_transitions += 1
            log.warning("illegal order transition ignored: order=%s state=%s event=%s",
                        order.local_id, order.state.name, event.value)
            return False
        old = order.state
        order.state = new
        order.updated_at = at = now or self.clock.now()
        if new is OrderState.REJECTED and reason:
            order.reject_reason = reason
        if new is not old:
            log_trade("order_state", at, **_order_fields(order), previous=old.name,
                      trigger=event.value, detail=reason)
        self.changed(order)
        return True

    def submitted(self, order: TrackedOrder, exchange_id: str) -> bool:
        """The POST answered with an id."""
        self._set_exchange_id(order, exchange_id)
        return self.handle(order, OrderEvent.SUBMITTED)

    def found(self, order: TrackedOrder, exchange_id: str) -> bool:
        """An order whose outcome was unknown exists at the exchange under `exchange_id`."""
        self._set_exchange_id(order, exchange_id)
        return self.handle(order, OrderEvent.FOUND)

    def _set_exchange_id(self, order: TrackedOrder, exchange_id: str) -> None:
        if order.exchange_id and order.exchange_id != exchange_id:
            raise ValueError(f"order {order.local_id} already has exchange id {order.exchange_id}")
        order.exchange_id = exchange_id
        self._by_exchange[exchange_id] = order

    def apply_execution(self, execution: Execution) -> tuple[TrackedOrder | None, bool]:
        """Apply an execution to the order it names; returns (order or None if unknown, is_new).

        A repeated execution id changes nothing. Quantities only grow; the state moves only
        along the table.
        """
        reported = execution.order
        order = self.find(reported.order_id)
        if order is None:
            return None, False
        if execution.exec_id and execution.exec_id in order.exec_ids:
            return order, False
        if execution.exec_id:
            order.exec_ids.add(execution.exec_id)
        self.apply_report(order, reported, execution.exec_type, reason=execution.reject_reason
                          or execution.unsolicited_cancel_reason or execution.text)
        return order, True

    def apply_report(self, order: TrackedOrder, reported: Order,
                     exec_type: ExecutionType | None = None, *, reason: str = "") -> bool:
        """Apply an order report (from an execution, or a snapshot/query when exec_type is None)."""
        if reported.cum_quantity > order.cum_qty:
            order.cum_qty = reported.cum_quantity
            if reported.avg_px is not None:
                order.avg_px = reported.avg_px
            self.changed(order)
        event = (event_for_execution(exec_type) if exec_type is not None
                 else event_for_reported_state(reported.state))
        if event is None:
            log.warning("order %s: report without a usable state (%s); state unchanged",
                        order.local_id, exec_type or reported.state)
            return False
        return self.handle(order, event, reason=reason)


class ExecutionRecorder(Protocol):
    """Where booked executions go after the ledger (the store implements it)."""

    def record_order(self, order: TrackedOrder) -> None: ...

    def record_execution(self, execution: Execution, fill: Fill | None,
                         order: TrackedOrder | None) -> None: ...

    def save_ledger(self, changes: LedgerState) -> None: ...


def book_execution(execution: Execution, registry: OrderRegistry, ledger: Ledger,
                   recorder: ExecutionRecorder | None = None) -> Fill | None:
    """The one path of an execution: order state, ledger, store, trades log; returns the fill."""
    order, is_new = registry.apply_execution(execution)
    if order is None:
        log.warning("execution %s for unknown order %s (%s): booked in the ledger",
                    execution.exec_id, execution.order.order_id, execution.order.market_slug)
    fill = ledger.apply(execution)
    if fill is not None:
        log_trade("fill", registry.clock.now(), order_id=fill.order_id,
                  local_id=order.local_id if order else None, market=fill.market_slug,
                  intent=fill.intent.name, qty=fill.qty, price=fill.price, fee=fill.fee,
                  taker=fill.is_taker, exec_id=fill.exec_id, trade_id=fill.trade_id,
                  fair_q=order.fair_q if order else None)
    if recorder is not None and (is_new or fill is not None or order is None):
        if order is not None:
            recorder.record_order(order)
        recorder.record_execution(execution, fill, order)
        recorder.save_ledger(ledger.drain_changes())
    return fill


def _order_fields(order: TrackedOrder) -> dict[str, object]:
    # `_name_`: the member's name without enum's Python-level `name` property
    return {
        "local_id": order.local_id, "order_id": order.exchange_id, "market": order.market_slug,
        "intent": order.intent._name_, "price": order.price, "qty": order.quantity,
        "tif": order.tif._name_, "state": order.state._name_, "cum_qty": order.cum_qty,
        "fair_q": order.fair_q, "edge": order.edge, "reason": order.reason,
    }


TRADES_LOGGER = "polybot.trades"
_trades = logging.getLogger(TRADES_LOGGER)


def log_trade(kind: str, ts: datetime, **fields: object) -> None:
    """One JSON line on the trades log (`TRADES_LOG_FILE`, configured by polybot.logs).

    `ts` is the injected clock's wall time, so a replay's trades log carries the replayed times.
    Encoded by orjson (a few µs; `json.dumps` with a default took ~10, once per order event):
    compact like `separators=(",", ":")`, non-ASCII as UTF-8 rather than `\\u` escapes, and
    `_json_default` for what orjson does not encode itself (Decimal). Callers pass enums by
    name and times as strings (orjson would encode an enum by its value).
    """
    if not _trades.isEnabledFor(logging.INFO):
        return  # nobody would read the line
    body = {"ts": ts.isoformat(), "event": kind, **fields}
    _trades.info(orjson.dumps(body, default=_json_default).decode())


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name
    return str(value)
