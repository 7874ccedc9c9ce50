"""The local exchange core: book sides, cash, fills, TIFs, rejects, fees, funding, settlement, busts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polybot.model import (
    ExecutionType,
    Intent,
    MarketState,
    OrderState,
    OrderType,
    Side,
    TimeInForce,
)
from polybot.sim.engine import (
    ActivityType,
    BookChanged,
    CancelReason,
    Exchange,
    ExecutionReported,
    OrderSpec,
    RejectReason,
    SelfMatch,
    TradePrinted,
    TradeState,
)

T0 = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
SLUG = "aec-nba-bos-nyk-2026-11-26"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


def make_exchange(*, cash: D = D(1000), accounts=("a", "b", "c"), **market_kw) -> Exchange:
    ex = Exchange(Clock(), seed=7)
    ex.add_event(1, "nba-bos-nyk-2026-11-26", "Celtics vs Knicks")
    ex.add_market(SLUG, 10, 1, **market_kw)
    ex.add_market("other", 11, 1)
    for a in accounts:
        ex.create_account(a, cash)
    return ex


def spec(intent: Intent, price: str | None, qty: str | int | None, **kw) -> OrderSpec:
    return OrderSpec(
        SLUG,
        intent,
        price=None if price is None else D(price),
        quantity=None if qty is None else D(qty),
        **kw,
    )


class Recorder:
    def __init__(self, ex: Exchange) -> None:
        self.events: list = []
        ex.subscribe(self.events.append)

    def execs(self, order_id: str) -> list:
        return [
            e.execution
            for e in self.events
            if isinstance(e, ExecutionReported) and e.execution.order.order_id == order_id
        ]

    def types(self, order_id: str) -> list[ExecutionType]:
        return [x.type for x in self.execs(order_id)]


def net(ex: Exchange, acct: str, slug: str = SLUG) -> D:
    pos = ex.positions(acct).get(slug)
    return D(0) if pos is None else pos.net


# --- intents: book side and cash --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "side"),
    [
        (Intent.BUY_LONG, "bids"),
        (Intent.SELL_SHORT, "bids"),
        (Intent.BUY_SHORT, "offers"),
        (Intent.SELL_LONG, "offers"),
    ],
)
def test_each_intent_rests_on_its_documented_side_of_the_yes_book(intent, side):
    ex = make_exchange()
    # give "a" a long and a short to close: long in SLUG via a trade with "b"
    if intent is Intent.SELL_LONG:
        ex.submit("b", spec(Intent.BUY_SHORT, "0.30", 5))
        ex.submit("a", spec(Intent.BUY_LONG, "0.30", 5))
    if intent is Intent.SELL_SHORT:
        ex.submit("b", spec(Intent.BUY_LONG, "0.30", 5))
        ex.submit("a", spec(Intent.BUY_SHORT, "0.30", 5))
    oid = ex.submit("a", spec(intent, "0.60" if side == "offers" else "0.20", 5))
    book = ex.book(SLUG)
    levels = getattr(book, side)
    assert [(lv.price, lv.qty) for lv in levels] == [
        (D("0.60") if side == "offers" else D("0.20"), D(5))
    ]
    assert ex.get_order("a", oid).side is (Side.SELL if side == "offers" else Side.BUY)


def test_opening_and_closing_cash_effects_per_intent_match_full_collateral():
    ex = make_exchange(fee_coefficient=D(0))  # taker fee 0; maker rebates computed below
    # b rests BUY_SHORT 10 @ 0.40 (offer); a lifts it with BUY_LONG: a pays 0.40, b pays 0.60.
    ex.submit("b", spec(Intent.BUY_SHORT, "0.40", 10))
    ex.submit("a", spec(Intent.BUY_LONG, "0.40", 10))
    rebate = D("-0.03")  # -0.0125 * 10 * 0.4 * 0.6 = -0.03
    assert ex.balance("a").current_balance == D(1000) - D("4.00")
    assert ex.balance("b").current_balance == D(1000) - D("6.00") - rebate
    assert net(ex, "a") == 10 and net(ex, "b") == -10
    # a closes with SELL_LONG (offer) at 0.70, b closes with SELL_SHORT (bid) lifting it:
    # a receives 0.70, b pays 0.70 and gets its $1 back: +0.30.
    ex.submit("a", spec(Intent.SELL_LONG, "0.70", 10))
    ex.submit("b", spec(Intent.SELL_SHORT, "0.70", 10))
    rebate2 = D("-0.03")  # -0.0125 * 10 * 0.7 * 0.3 = -0.02625 -> -0.03
    assert ex.balance("a").current_balance == D(1000) - D("4.00") + D("7.00") - rebate2
    assert ex.balance("b").current_balance == D(1000) - D("6.00") - rebate + D("3.00")
    pa, pb = ex.positions("a")[SLUG], ex.positions("b")[SLUG]
    assert (pa.net, pa.qty_bought, pa.qty_sold, pa.cost) == (0, 10, 10, 0)
    assert pa.realized == D("3.00") and pb.realized == D("-3.00")


def test_buy_short_while_long_first_closes_the_long_then_opens_a_short():
    ex = make_exchange(fee_coefficient=D(0))
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 4))
    ex.submit("a", spec(Intent.BUY_LONG, "0.50", 4))
    ex.submit("c", spec(Intent.BUY_LONG, "0.50", 10))
    cash = ex.balance("a").current_balance
    ex.submit("a", spec(Intent.BUY_SHORT, "0.50", 10))
    assert net(ex, "a") == -6
    # closes 4 longs (+0.50 each), opens 6 shorts (-0.50 each); taker fee 0
    assert ex.balance("a").current_balance == cash + 4 * D("0.50") - 6 * D("0.50")


def test_sell_long_beyond_the_long_position_is_rejected_incorrect_quantity():
    ex = make_exchange()
    rec = Recorder(ex)
    oid = ex.submit("a", spec(Intent.SELL_LONG, "0.50", 1))
    assert oid
    [x] = rec.execs(oid)
    assert x.type is ExecutionType.REJECTED
    assert x.reject_reason is RejectReason.INCORRECT_QUANTITY
    assert ex.get_order("a", oid).state is OrderState.REJECTED


# --- fills and time in force ---------------------------------------------------------------------------


def test_crossing_order_gets_new_then_partial_fills_across_levels_and_rests_the_rest():
    ex = make_exchange()
    rec = Recorder(ex)
    m1 = ex.submit("b", spec(Intent.BUY_SHORT, "0.41", 3))
    m2 = ex.submit("c", spec(Intent.BUY_SHORT, "0.42", 4))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.42", 10))
    assert rec.types(oid) == [
        ExecutionType.NEW,
        ExecutionType.PARTIAL_FILL,
        ExecutionType.PARTIAL_FILL,
    ]
    fills = rec.execs(oid)[1:]
    assert [(f.last_px, f.last_shares, f.aggressor) for f in fills] == [
        (D("0.41"), D(3), True),
        (D("0.42"), D(4), True),
    ]
    order = ex.get_order("a", oid)
    assert (order.cum_quantity, order.leaves_quantity, order.state) == (
        D(7),
        D(3),
        OrderState.PARTIALLY_FILLED,
    )
    assert order.avg_px == D("0.415714")  # (0.41*3 + 0.42*4) / 7 to 6 places
    assert rec.types(m1)[-1] is ExecutionType.FILL and rec.types(m2)[-1] is ExecutionType.FILL
    # both sides of each trade share one trade id; maker reports aggressor False
    assert rec.execs(m1)[-1].trade_id == fills[0].trade_id
    assert rec.execs(m1)[-1].aggressor is False
    assert [(lv.price, lv.qty) for lv in ex.book(SLUG).bids] == [(D("0.42"), D(3))]
    prints = [e for e in rec.events if isinstance(e, TradePrinted)]
    assert [(p.maker_intent, p.taker_intent, p.taker_side) for p in prints] == [
        (Intent.BUY_SHORT, Intent.BUY_LONG, Side.BUY)
    ] * 2


def test_ioc_remainder_is_canceled_after_fills():
    ex = make_exchange()
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 3))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.55", 5, tif=TimeInForce.IOC))
    assert rec.types(oid) == [ExecutionType.NEW, ExecutionType.PARTIAL_FILL, ExecutionType.CANCELED]
    order = ex.get_order("a", oid)
    assert (order.state, order.cum_quantity, order.leaves_quantity) == (
        OrderState.CANCELED,
        D(3),
        D(0),
    )
    assert ex.book(SLUG).bids == ()


def test_fok_that_cannot_fill_completely_is_canceled_with_no_fills():
    ex = make_exchange()
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 3))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.55", 5, tif=TimeInForce.FOK))
    assert rec.types(oid) == [ExecutionType.NEW, ExecutionType.CANCELED]
    assert ex.get_order("a", oid).cum_quantity == 0
    assert [(lv.price, lv.qty) for lv in ex.book(SLUG).offers] == [(D("0.50"), D(3))]
    assert net(ex, "a") == 0


def test_fok_that_can_fill_fills_completely():
    ex = make_exchange()
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 3))
    ex.submit("c", spec(Intent.BUY_SHORT, "0.52", 3))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.55", 5, tif=TimeInForce.FOK))
    assert rec.types(oid)[-1] is ExecutionType.FILL
    assert net(ex, "a") == 5


def test_post_only_order_that_would_cross_is_rejected_and_one_that_would_not_rests():
    ex = make_exchange()
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 3))
    bad = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 1, post_only=True))
    good = ex.submit("a", spec(Intent.BUY_LONG, "0.49", 1, post_only=True))
    assert rec.types(bad) == [ExecutionType.REJECTED]
    assert rec.types(good) == [ExecutionType.NEW]
    assert net(ex, "a") == 0


def test_gtd_order_expires_at_its_good_till_time():
    ex = make_exchange()
    rec = Recorder(ex)
    oid = ex.submit(
        "a",
        spec(
            Intent.BUY_LONG,
            "0.40",
            1,
            tif=TimeInForce.GTD,
            good_till_time=T0 + timedelta(seconds=30),
        ),
    )
    assert ex.expire_due(T0 + timedelta(seconds=29)) == []
    assert ex.expire_due(T0 + timedelta(seconds=30)) == [oid]
    assert rec.types(oid) == [ExecutionType.NEW, ExecutionType.EXPIRED]
    assert ex.open_orders("a") == []


def test_market_order_sweeps_and_one_with_no_liquidity_is_rejected():
    ex = make_exchange()
    rec = Recorder(ex)
    empty = ex.submit("a", OrderSpec(SLUG, Intent.BUY_LONG, type=OrderType.MARKET, quantity=D(5)))
    assert rec.execs(empty)[-1].reject_reason is RejectReason.NO_LIQUIDITY
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 3))
    ex.submit("b", spec(Intent.BUY_SHORT, "0.60", 3))
    oid = ex.submit("a", OrderSpec(SLUG, Intent.BUY_LONG, type=OrderType.MARKET, quantity=D(4)))
    assert rec.types(oid)[-1] is ExecutionType.FILL
    assert net(ex, "a") == 4
    # a market order sized in dollars: $1.20 at 0.60 buys 2 contracts
    cash = ex.submit(
        "c", OrderSpec(SLUG, Intent.BUY_LONG, type=OrderType.MARKET, cash_order_qty=D("1.20"))
    )
    assert ex.get_order("c", cash).cum_quantity == 2


# --- rejects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (spec(Intent.BUY_LONG, "0.505", 1), RejectReason.INVALID_PRICE_INCREMENT),
        (spec(Intent.BUY_LONG, "1.00", 1), RejectReason.PRICE_OUT_OF_BOUNDS),
        (spec(Intent.BUY_LONG, "0.00", 1), RejectReason.PRICE_OUT_OF_BOUNDS),
        (spec(Intent.BUY_LONG, "45", 1), RejectReason.PRICE_OUT_OF_BOUNDS),
        (spec(Intent.BUY_LONG, "0.50", 0), RejectReason.INCORRECT_QUANTITY),
        (spec(Intent.BUY_LONG, "0.50", "1.5"), RejectReason.INCORRECT_QUANTITY),
        (spec(Intent.BUY_LONG, "0.50", None), RejectReason.INCORRECT_QUANTITY),
        (
            OrderSpec("nope", Intent.BUY_LONG, price=D("0.5"), quantity=D(1)),
            RejectReason.UNKNOWN_MARKET,
        ),
        (spec(Intent.BUY_LONG, "0.50", 5000), RejectReason.EXCHANGE_OPTION),  # buying power
        (spec(Intent.BUY_LONG, "0.50", 1, tif=TimeInForce.GTD), RejectReason.EXCHANGE_OPTION),
    ],
)
def test_order_level_problems_get_an_id_then_a_rejected_execution(req, reason):
    ex = make_exchange()
    rec = Recorder(ex)
    oid = ex.submit("a", req)
    assert isinstance(oid, str) and oid
    execs = rec.execs(oid)
    assert [x.type for x in execs] == [ExecutionType.REJECTED]
    assert execs[0].reject_reason is reason and execs[0].text
    assert ex.get_order("a", oid).state is OrderState.REJECTED
    assert ex.orders_accepted[-1].order_id == oid
    assert ex.open_orders("a") == [] and ex.balance("a").current_balance == 1000


def test_min_qty_and_tick_are_per_market():
    ex = make_exchange(tick=D("0.005"), min_qty=D("0.01"))
    rec = Recorder(ex)
    ok = ex.submit("a", spec(Intent.BUY_LONG, "0.505", "0.37"))
    off = ex.submit("a", spec(Intent.BUY_LONG, "0.505", "0.375"))
    assert rec.types(ok) == [ExecutionType.NEW]
    assert rec.execs(off)[0].reject_reason is RejectReason.INCORRECT_QUANTITY


def test_orders_in_a_non_open_market_are_rejected_exchange_closed():
    ex = make_exchange()
    rec = Recorder(ex)
    ex.set_market_state(SLUG, MarketState.SUSPENDED)
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 1))
    assert rec.execs(oid)[0].reject_reason is RejectReason.EXCHANGE_CLOSED


# --- fees ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "taker", "maker"),
    [("0.50", D("17.38"), D("-3.12")), ("0.10", D("6.26"), D("-1.12"))],
)
def test_fees_follow_the_reference_worked_checks_with_bankers_rounding(price, taker, maker):
    ex = make_exchange(cash=D(10_000))
    rec = Recorder(ex)
    mk = ex.submit("b", spec(Intent.BUY_SHORT, price, 1000))
    tk = ex.submit("a", spec(Intent.BUY_LONG, price, 1000))
    assert rec.execs(tk)[-1].commission == taker
    assert rec.execs(mk)[-1].commission == maker
    assert ex.balance("a").current_balance == D(10_000) - D(price) * 1000 - taker
    assert ex.get_order("a", tk).commission_total == taker
    assert ex.fee_income == taker + maker


def test_taker_fee_is_capped_at_the_rounded_cumulative_fee_across_one_orders_fills():
    ex = make_exchange()
    rec = Recorder(ex)
    for acct in ("b", "c", "b"):
        ex.submit(acct, spec(Intent.BUY_SHORT, "0.50", 1))
    tk = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 3))
    fees = [x.commission for x in rec.execs(tk) if x.type.is_fill]
    # per fill 0.017375 rounds to 0.02 each (0.06), cumulative exact 0.052125 -> 0.05
    assert sum(fees) == D("0.05")
    assert fees == [D("0.02"), D("0.01"), D("0.02")]


def test_market_fee_coefficient_replaces_the_taker_theta():
    ex = make_exchange(fee_coefficient=D("0.10"))
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 100))
    tk = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 100))
    assert rec.execs(tk)[-1].commission == D("2.50")


# --- funding -------------------------------------------------------------------------------------------


def test_orders_in_different_instruments_do_not_reserve_against_each_other_until_a_fill():
    ex = make_exchange(cash=D(10))
    rec = Recorder(ex)
    a1 = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 20))  # reserves 10 in SLUG
    a2 = ex.submit("a", OrderSpec("other", Intent.BUY_LONG, price=D("0.50"), quantity=D(20)))
    assert rec.types(a1) == [ExecutionType.NEW] and rec.types(a2) == [ExecutionType.NEW]
    bal = ex.balance("a")
    assert bal.open_orders == 20 and bal.buying_power == -10
    # a further order in SLUG is not funded
    a3 = ex.submit("a", spec(Intent.BUY_LONG, "0.40", 1))
    assert rec.execs(a3)[0].reject_reason is RejectReason.EXCHANGE_OPTION
    # the SLUG bid fills: cash drops to ~0 and the "other" order is canceled, unsolicited
    ex.deposit("b", D(100))
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 20))
    assert net(ex, "a") == 20
    last = rec.execs(a2)[-1]
    assert last.type is ExecutionType.CANCELED
    assert last.unsolicited_cancel_reason is CancelReason.EXCHANGE_OPTION
    assert ex.open_orders("a") == []
    assert ex.balance("a").current_balance >= 0


def test_closing_orders_need_no_buying_power():
    ex = make_exchange(cash=D(5))
    ex.submit("b", spec(Intent.BUY_SHORT, "0.50", 10))
    ex.submit("a", spec(Intent.BUY_LONG, "0.50", 10))  # a spends 5 + fee ... too much
    assert net(ex, "a") == 0  # rejected: fee allowance not covered
    ex.submit("a", spec(Intent.BUY_LONG, "0.50", 9))
    assert net(ex, "a") == 9
    rec = Recorder(ex)
    oid = ex.submit("a", spec(Intent.SELL_LONG, "0.90", 9))
    assert rec.types(oid) == [ExecutionType.NEW]
    assert ex.balance("a").open_orders == 0


# --- self-match, modify, cancel ------------------------------------------------------------------------


def test_self_match_cancels_the_resting_order_of_the_same_account_by_default():
    ex = make_exchange()
    rec = Recorder(ex)
    own = ex.submit("a", spec(Intent.BUY_SHORT, "0.50", 5))
    ex.submit("b", spec(Intent.BUY_SHORT, "0.51", 5))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.51", 5))
    assert rec.types(own)[-1] is ExecutionType.CANCELED
    assert rec.execs(own)[-1].text == "self-match prevention"
    assert rec.types(oid)[-1] is ExecutionType.FILL
    assert net(ex, "a") == 5


def test_self_match_allow_lets_an_account_trade_with_itself():
    ex = make_exchange()
    ex.self_match = SelfMatch.ALLOW
    ex.submit("a", spec(Intent.BUY_SHORT, "0.50", 5))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 5))
    assert ex.get_order("a", oid).state is OrderState.FILLED
    assert net(ex, "a") == 0


def test_modify_keeps_the_order_id_and_a_crossing_price_trades_as_aggressor():
    ex = make_exchange()
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.55", 5))
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 5))
    assert ex.modify("a", oid, quantity=D(4))
    assert rec.types(oid) == [ExecutionType.NEW, ExecutionType.REPLACE]
    assert ex.get_order("a", oid).leaves_quantity == 4
    assert ex.modify("a", oid, price=D("0.55"))
    assert rec.types(oid)[-2:] == [ExecutionType.REPLACE, ExecutionType.FILL]
    assert rec.execs(oid)[-1].aggressor is True
    assert not ex.modify("a", oid, price=D("0.40"))  # filled: nothing to modify


def test_rejected_modify_leaves_the_order_working_unchanged():
    ex = make_exchange()
    rec = Recorder(ex)
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 5))
    assert ex.modify("a", oid, price=D("0.505"))
    last = rec.execs(oid)[-1]
    assert last.type is ExecutionType.REJECTED and last.text.startswith("modify rejected")
    order = ex.get_order("a", oid)
    assert (order.state, order.price) == (OrderState.NEW, D("0.50"))
    assert [(lv.price, lv.qty) for lv in ex.book(SLUG).bids] == [(D("0.50"), D(5))]


def test_modify_reducing_size_keeps_time_priority():
    ex = make_exchange()
    first = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 5))
    ex.submit("b", spec(Intent.BUY_LONG, "0.50", 5))
    ex.modify("a", first, quantity=D(3))
    ex.submit("c", spec(Intent.BUY_SHORT, "0.50", 3))
    assert net(ex, "a") == 3 and net(ex, "b") == 0


def test_cancel_of_unknown_or_foreign_order_is_ignored_and_cancel_all_filters_by_slug():
    ex = make_exchange()
    oid = ex.submit("a", spec(Intent.BUY_LONG, "0.50", 5))
    other = ex.submit("a", OrderSpec("other", Intent.BUY_LONG, price=D("0.5"), quantity=D(1)))
    assert not ex.cancel("b", oid)
    assert not ex.cancel("a", "o-nope")
    assert ex.cancel_all("a", [SLUG]) == [oid]
    assert [o.order_id for o in ex.open_orders("a")] == [other]
    assert not ex.cancel("a", oid)


def test_cancel_everything_cancels_all_accounts_with_an_unsolicited_reason():
    ex = make_exchange()
    rec = Recorder(ex)
    ids = [ex.submit(a, spec(Intent.BUY_LONG, "0.40", 1)) for a in ("a", "b")]
    assert sorted(ex.cancel_everything()) == sorted(ids)
    for oid in ids:
        assert rec.execs(oid)[-1].unsolicited_cancel_reason is CancelReason.EXCHANGE_OPTION
    assert ex.book(SLUG).bids == ()


def test_a_batch_coalesces_book_changed_events_per_market():
    ex = make_exchange()
    rec = Recorder(ex)
    with ex.batch():
        for p in ("0.40", "0.41", "0.42"):
            ex.submit("a", spec(Intent.BUY_LONG, p, 1))
    assert [e.slug for e in rec.events if isinstance(e, BookChanged)] == [SLUG]


# --- settlement and busts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "long_gets", "short_gets"), [("1", 10, 0), ("0", 0, 10), ("0.5", 5, 5)]
)
def test_settlement_pays_value_per_long_and_one_minus_value_per_short(value, long_gets, short_gets):
    ex = make_exchange(fee_coefficient=D(0))
    rec = Recorder(ex)
    ex.submit("b", spec(Intent.BUY_SHORT, "0.40", 10))
    ex.submit("a", spec(Intent.BUY_LONG, "0.40", 10))
    resting = ex.submit("c", spec(Intent.BUY_LONG, "0.30", 1))
    cash_a, cash_b = ex.balance("a").current_balance, ex.balance("b").current_balance
    ex.settle(SLUG, D(value))
    assert ex.balance("a").current_balance == cash_a + long_gets
    assert ex.balance("b").current_balance == cash_b + short_gets
    assert ex.settlement(SLUG) == D(value)
    assert rec.types(resting)[-1] is ExecutionType.CANCELED
    pa = ex.positions("a")[SLUG]
    assert pa.net == 0 and pa.expired and pa.realized == long_gets - 4
    res = [x for x in ex.activities("b") if x.type is ActivityType.POSITION_RESOLUTION]
    assert res[0].resolution.before_position == -10
    again = ex.submit("a", spec(Intent.BUY_LONG, "0.40", 1))
    assert rec.execs(again)[0].reject_reason is RejectReason.EXCHANGE_CLOSED
    with pytest.raises(ValueError):
        ex.settle(SLUG, D(1))


def test_busted_trade_is_reversed_on_both_sides():
    ex = make_exchange()
    rec = Recorder(ex)
    before = {a: ex.balance(a).current_balance for a in ("a", "b")}
    ex.submit("b", spec(Intent.BUY_SHORT, "0.40", 10))
    ex.submit("a", spec(Intent.BUY_LONG, "0.40", 10))
    [trade_id] = {e.trade_id for e in rec.events if isinstance(e, TradePrinted)}
    ex.bust_trade(trade_id)
    for a in ("a", "b"):
        assert ex.balance(a).current_balance == before[a]
        assert net(ex, a) == 0 and ex.positions(a)[SLUG].cost == 0
        [t] = [x.trade for x in ex.activities(a) if x.type is ActivityType.TRADE]
        assert t.state is TradeState.BUSTED
    assert ex.fee_income == 0 and ex.open_interest(SLUG) == 0
    with pytest.raises(ValueError):
        ex.bust_trade(trade_id)


def test_ids_are_deterministic_for_a_seed():
    def run() -> list[str]:
        ex = make_exchange()
        rec = Recorder(ex)
        ex.submit("b", spec(Intent.BUY_SHORT, "0.40", 10))
        ex.submit("a", spec(Intent.BUY_LONG, "0.40", 10))
        return [e.execution.exec_id for e in rec.events if isinstance(e, ExecutionReported)]

    assert run() == run()


# --- invariants after random order flows ----------------------------------------------------------------

ACCOUNTS = ("a", "b", "c", "d", "e")
SLUGS = (SLUG, "other")


def random_flow(rng: random.Random, n: int = 60) -> list[tuple]:
    """A random mix of orders around one price, cancels, modifies and market orders."""
    flow = []
    for _ in range(n):
        price = rng.randint(44, 56) if rng.random() < 0.8 else rng.randint(1, 99)
        flow.append(
            (
                rng.choice(ACCOUNTS),
                SLUG if rng.random() < 0.75 else "other",
                rng.choice(
                    [Intent.BUY_LONG, Intent.BUY_SHORT] * 3 + [Intent.SELL_LONG, Intent.SELL_SHORT]
                ),
                price,
                rng.randint(1, 40),
                rng.choice([TimeInForce.GTC] * 3 + [TimeInForce.IOC, TimeInForce.FOK]),
                rng.choice(["submit"] * 6 + ["cancel", "modify", "market"]),
            )
        )
    return flow


def check_invariants(ex: Exchange, deposits: D) -> None:
    total_cash = D(0)
    for a in ACCOUNTS:
        bal = ex.balance(a)
        assert bal.buying_power == (
            bal.current_balance + bal.asset_available - bal.open_orders - bal.margin_requirement
        )
        assert bal.current_balance >= 0
        assert bal.open_orders >= 0
        total_cash += bal.current_balance
        for o in ex.open_orders(a):
            assert o.leaves_quantity > 0 and o.state in (
                OrderState.NEW,
                OrderState.PARTIALLY_FILLED,
            )
    for slug in SLUGS:
        assert sum((net(ex, a, slug) for a in ACCOUNTS), D(0)) == 0
        book = ex.book(slug)
        if book.bids and book.offers:
            assert book.bids[0].price < book.offers[0].price
    longs = sum((max(net(ex, a, s), D(0)) for a in ACCOUNTS for s in SLUGS), D(0))
    # every open long/short pair locks exactly $1; fees went to the exchange
    assert total_cash + longs + ex.fee_income == deposits


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.sampled_from(["none", "1", "0", "0.5"]))
def test_random_order_flows_keep_balances_positions_and_cash_consistent(rng, settle_value):
    flow = random_flow(rng)
    ex = make_exchange(cash=D(200), accounts=ACCOUNTS)
    deposits = D(200) * len(ACCOUNTS)
    for acct, slug, intent, price, qty, tif, action in flow:
        if action == "cancel":
            opens = ex.open_orders(acct)
            if opens:
                ex.cancel(acct, opens[price % len(opens)].order_id)
        elif action == "modify":
            opens = ex.open_orders(acct)
            if opens:
                ex.modify(acct, opens[0].order_id, price=D(price) / 100, quantity=D(qty) + 60)
        elif action == "market":
            ex.submit(acct, OrderSpec(slug, intent, type=OrderType.MARKET, quantity=D(qty)))
        else:
            ex.submit(acct, OrderSpec(slug, intent, price=D(price) / 100, quantity=D(qty), tif=tif))
        check_invariants(ex, deposits)
    if settle_value != "none":
        ex.settle(SLUG, D(settle_value))
        check_invariants(ex, deposits)


def test_random_flows_used_by_the_property_test_do_trade():
    ex = make_exchange(cash=D(200), accounts=ACCOUNTS)
    for acct, slug, intent, price, qty, tif, _ in random_flow(random.Random(3)):
        ex.submit(acct, OrderSpec(slug, intent, price=D(price) / 100, quantity=D(qty), tif=tif))
    assert len(ex.trades) >= 8
