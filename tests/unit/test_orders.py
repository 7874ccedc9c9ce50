import json
import logging
from decimal import Decimal as D

import pytest

from polybot.execution.orders import (
    TRANSITIONS,
    OrderEvent,
    OrderRegistry,
    book_execution,
    event_for_reported_state,
    next_state,
)
from polybot.ledger import Ledger
from polybot.model import (
    Execution,
    ExecutionType,
    Intent,
    Order,
    OrderRequest,
    OrderState,
    TimeInForce,
)

S, E = OrderState, OrderEvent


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (S.SUBMITTING, E.SUBMITTED, S.PENDING_NEW),
        (S.SUBMITTING, E.OUTCOME_UNKNOWN, S.OUTCOME_UNKNOWN),
        (S.SUBMITTING, E.SEND_FAILED, S.REJECTED),
        (S.OUTCOME_UNKNOWN, E.FOUND, S.PENDING_NEW),
        (S.OUTCOME_UNKNOWN, E.PROVEN_ABSENT, S.REJECTED),
        (S.OUTCOME_UNKNOWN, E.EXEC_FILL, S.FILLED),  # resolved by the stream directly
        (S.SUBMITTING, E.EXEC_PARTIAL_FILL, S.PARTIALLY_FILLED),  # fill before the POST answer
        (S.PENDING_NEW, E.EXEC_NEW, S.NEW),
        (S.NEW, E.EXEC_PARTIAL_FILL, S.PARTIALLY_FILLED),
        (S.PARTIALLY_FILLED, E.EXEC_PARTIAL_FILL, S.PARTIALLY_FILLED),
        (S.PARTIALLY_FILLED, E.EXEC_FILL, S.FILLED),
        (S.PARTIALLY_FILLED, E.EXEC_CANCELED, S.CANCELED),
        (S.NEW, E.EXEC_REJECTED, S.REJECTED),  # 200 then REJECTED
        (S.NEW, E.REPORTED_PENDING_CANCEL, S.PENDING_CANCEL),
        (S.PENDING_CANCEL, E.EXEC_CANCELED, S.CANCELED),
        (S.NEW, E.EXEC_EXPIRED, S.EXPIRED),
        (S.NEW, E.EXEC_REPLACE, S.REPLACED),
        (S.FILLED, E.EXEC_FILL, S.FILLED),  # duplicate of a terminal report
        (S.NEW, E.EXEC_DONE_FOR_DAY, S.NEW),
    ],
)
def test_legal_transitions(state, event, expected):
    assert next_state(state, event) is expected


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.FILLED, E.EXEC_PARTIAL_FILL),  # a late partial must not reopen a filled order
        (S.FILLED, E.EXEC_CANCELED),
        (S.CANCELED, E.EXEC_NEW),
        (S.PARTIALLY_FILLED, E.EXEC_NEW),  # backwards
        (S.REJECTED, E.EXEC_FILL),
        (S.NEW, E.SUBMITTED),  # only a SUBMITTING order gets an id from the POST
        (S.NEW, E.PROVEN_ABSENT),  # only an unknown outcome can be proven absent
        (S.SUBMITTING, E.FOUND),
        (S.PARTIALLY_FILLED, E.EXEC_REJECTED),
    ],
)
def test_illegal_transitions_are_absent_from_the_table(state, event):
    assert next_state(state, event) is None


def test_no_transition_leaves_a_terminal_state():
    for (state, _event), new in TRANSITIONS.items():
        if state.is_terminal:
            assert new is state


def request(qty="10", intent=Intent.BUY_LONG):
    return OrderRequest("m", intent, D("0.40"), D(qty), tif=TimeInForce.IOC)


def exec_(order_id, exec_type, state, cum, last=None, px="0.40", exec_id="e1", fee=None):
    order = Order(order_id, "m", Intent.BUY_LONG, D("0.40"), D(10), cum_quantity=D(cum),
                  leaves_quantity=D(10) - D(cum), state=state, avg_px=D(px) if cum != "0" else None,
                  commission_total=None if fee is None else D(fee))
    return Execution(exec_id, order, exec_type, last_shares=D(last or "0"), last_px=D(px))


def test_illegal_transition_is_logged_and_not_applied(caplog):
    reg = OrderRegistry()
    order = reg.new_order(request())
    reg.submitted(order, "x1")
    reg.apply_execution(exec_("x1", ExecutionType.FILL, S.FILLED, "10", "10", exec_id="e1"))
    with caplog.at_level(logging.WARNING, logger="polybot.execution.orders"):
        reg.apply_execution(exec_("x1", ExecutionType.PARTIAL_FILL, S.PARTIALLY_FILLED, "4",
                                  "4", exec_id="e0"))
    assert order.state is S.FILLED and order.cum_qty == D(10)
    assert reg.illegal_transitions == 1
    assert "illegal order transition" in caplog.text


def test_new_order_counts_open_at_full_size_until_resolved():
    reg = OrderRegistry()
    order = reg.new_order(request("7"))
    assert order.state is S.SUBMITTING
    [risk_view] = reg.open_model_orders("m")
    assert risk_view.leaves_quantity == D(7) and risk_view.state is S.SUBMITTING
    reg.handle(order, E.OUTCOME_UNKNOWN)
    assert reg.open_model_orders()[0].leaves_quantity == D(7)
    reg.handle(order, E.PROVEN_ABSENT, reason="not found")
    assert reg.open_orders() == [] and order.reject_reason == "not found"


def test_registry_finds_orders_by_local_and_exchange_id():
    reg = OrderRegistry(id_prefix="t")
    order = reg.new_order(request())
    assert order.local_id == "t-1"
    reg.submitted(order, "ex-9")
    assert reg.get("t-1") is order and reg.by_exchange_id("ex-9") is order
    assert reg.find("ex-9") is order and order.order_id == "ex-9"
    with pytest.raises(ValueError):
        reg.submitted(order, "ex-10")


def test_repeated_execution_id_changes_nothing():
    reg = OrderRegistry()
    order = reg.new_order(request())
    reg.submitted(order, "x1")
    e = exec_("x1", ExecutionType.PARTIAL_FILL, S.PARTIALLY_FILLED, "4", "4")
    assert reg.apply_execution(e) == (order, True)
    assert reg.apply_execution(e) == (order, False)
    assert order.cum_qty == D(4)


def test_snapshot_report_moves_state_by_reported_state():
    reg = OrderRegistry()
    order = reg.new_order(request())
    reg.handle(order, E.OUTCOME_UNKNOWN)
    reg.found(order, "x1")
    snap = exec_("x1", ExecutionType.NEW, S.PENDING_CANCEL, "3").order
    assert event_for_reported_state(S.PENDING_CANCEL) is E.REPORTED_PENDING_CANCEL
    assert reg.apply_report(order, snap)
    assert order.state is S.PENDING_CANCEL and order.cum_qty == D(3)


class Recorder:
    def __init__(self):
        self.orders, self.executions, self.ledgers = [], [], []

    def record_order(self, order):
        self.orders.append(order.state)

    def record_execution(self, execution, fill, order):
        self.executions.append((execution.exec_id, fill))

    def save_ledger(self, changes):
        self.ledgers.append(changes)


def test_book_execution_books_a_stream_fill_and_its_snapshot_repeat_once(caplog):
    reg, led, rec = OrderRegistry(), Ledger(D(100)), Recorder()
    order = reg.new_order(request())
    reg.submitted(order, "x1")
    stream = exec_("x1", ExecutionType.FILL, S.FILLED, "10", "10", exec_id="e1", fee="0.17")
    snapshot = exec_("x1", ExecutionType.FILL, S.FILLED, "10", "10", exec_id="snap-1", fee="0.17")
    with caplog.at_level(logging.INFO, logger="polybot.trades"):
        first = book_execution(stream, reg, led, rec)
        second = book_execution(snapshot, reg, led, rec)
    assert first.qty == D(10) and second is None
    assert led.cash == D("95.83")
    assert order.state is S.FILLED
    assert [f is not None for _, f in rec.executions] == [True, False]
    fills = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "polybot.trades" and '"fill"' in r.getMessage()]
    assert len(fills) == 1 and fills[0]["qty"] == "10" and fills[0]["price"] == "0.40"


def test_execution_of_an_unknown_order_is_still_booked_in_the_ledger():
    reg, led = OrderRegistry(), Ledger(D(100))
    fill = book_execution(exec_("stranger", ExecutionType.FILL, S.FILLED, "10", "10"), reg, led)
    assert fill is not None and led.positions["m"].net_qty == D(10)


def test_trades_log_gets_one_json_line_per_order_event(caplog):
    reg = OrderRegistry(id_prefix="t")
    with caplog.at_level(logging.INFO, logger="polybot.trades"):
        order = reg.new_order(request("3"))
        reg.submitted(order, "x1")
        reg.apply_execution(exec_("x1", ExecutionType.NEW, S.NEW, "0"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "polybot.trades"]
    assert [(x["event"], x["state"]) for x in lines] == [
        ("order_intent", "SUBMITTING"), ("order_state", "PENDING_NEW"), ("order_state", "NEW")]
    assert lines[0]["local_id"] == "t-1" and lines[0]["qty"] == "3" and lines[2]["order_id"] == "x1"


def test_a_market_is_frozen_exactly_while_one_of_its_creates_is_unanswered_or_unknown():
    # the order path asks this on every decision: an index kept by the registry, not a scan
    reg = OrderRegistry()
    a = reg.new_order(request())
    slug = a.market_slug
    assert reg.unresolved_in(slug) == a.local_id
    b = reg.new_order(request("3"))  # after a restart two may be open at once
    reg.submitted(a, "x1")
    assert reg.unresolved_in(slug) == b.local_id
    reg.handle(b, OrderEvent.OUTCOME_UNKNOWN, reason="timeout")
    assert reg.unresolved_markets() == {slug: b.local_id}
    reg.handle(b, OrderEvent.PROVEN_ABSENT)
    assert reg.unresolved_in(slug) is None and reg.unresolved_markets() == {}


def test_a_markets_open_orders_follow_every_transition_in_creation_order():
    # sync_signals lists a market's open orders on every book frame: an index kept by the
    # registry, which must always say what a walk of every tracked order says
    import random

    rng = random.Random(3)
    reg = OrderRegistry(id_prefix="t")
    orders = []
    for k in range(300):
        if not orders or rng.random() < 0.4:
            req = request(str(rng.randint(1, 9)))
            orders.append(reg.new_order(OrderRequest(
                market_slug=rng.choice(["m", "n", "o"]), intent=req.intent, price=req.price,
                quantity=req.quantity, tif=req.tif), log_intent=False))
        else:
            order = rng.choice(orders)
            event = rng.choice([e for e in OrderEvent if next_state(order.state, e) is not None]
                               or [E.SUBMITTED])
            if event in (E.SUBMITTED, E.FOUND) and order.exchange_id is None:
                reg._set_exchange_id(order, f"x{k}")
            reg.handle(order, event)
        if k % 50 == 49:
            reg.forget_closed()
        for slug in ("m", "n", "o", "p"):
            walk = [o for o in orders if o.is_open and o.market_slug == slug]
            assert reg.open_orders(slug) == walk
        # and it holds nothing else: a closed order left in it would be walked on every frame
        assert sum(map(len, reg._open.values())) == sum(o.is_open for o in orders)
    assert any(reg.open_orders(s) for s in "mno")
    assert any(not o.is_open for o in orders)
