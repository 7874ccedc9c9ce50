from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from polybot.model import (
    FairValue,
    Intent,
    MarketInfo,
    Order,
    OrderRequest,
    OrderState,
    Position,
    Rejection,
    Signal,
    TimeInForce,
    TradingState,
)
from polybot.risk import (
    HaltState,
    RiskGate,
    RiskLimits,
    at_risk_by_market,
    event_at_risk,
    exposure_summary,
    kelly_f,
    kelly_target,
    kelly_topup_qty,
    portfolio_at_risk,
    positions_count,
    remove_kill_file,
    trading_day,
    usd_at_risk,
    write_kill_file,
    write_resume_request,
)

THETA = D("0.0695")
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 10:00 in New York
LIMITS = RiskLimits()
MARKET = MarketInfo(slug="m1", event_id="e1")


def sig(intent=Intent.BUY_LONG, price="0.56", q="0.60", size="1000", edge="0.0228752", slug="m1"):
    return Signal(
        market_slug=slug,
        intent=intent,
        limit_price=D(price),
        size_available=D(size),
        fair_q=D(q),
        edge=D(edge),
        fair_value=FairValue(market_slug=slug, q=D(q), method="t", quotes=(), computed_at=0.0),
    )


def pos(slug, qty, avg):
    return Position(market_slug=slug, net_qty=D(qty), avg_price=D(avg))


def order(slug, intent, price, qty, leaves=None, state=OrderState.NEW, oid="o1"):
    return Order(
        order_id=oid,
        market_slug=slug,
        intent=intent,
        price=D(price),
        quantity=D(qty),
        leaves_quantity=D(leaves if leaves is not None else qty),
        state=state,
    )


def check(gate, signal, *, positions=None, orders=(), equity="1000", cash="1000", market=MARKET,
          event_of=None, now=NOW, flatten=False):
    return gate.check(
        signal,
        positions=positions or {},
        open_orders=list(orders),
        equity=D(equity),
        cash=D(cash),
        market_info=market,
        event_of=event_of if event_of is not None else {"m1": "e1"},
        now=now,
        flatten=flatten,
    )


# --- USD at risk --------------------------------------------------------------------------------


def test_usd_at_risk_per_definition():
    orders = [
        order("m1", Intent.BUY_LONG, "0.40", "10", leaves="0", state=OrderState.SUBMITTING),
        order("m1", Intent.BUY_LONG, "0.50", "10", leaves="0", state=OrderState.OUTCOME_UNKNOWN),
        order("m1", Intent.BUY_SHORT, "0.30", "8", leaves="5", state=OrderState.PARTIALLY_FILLED),
        order("m1", Intent.SELL_LONG, "0.90", "10"),
        order("m1", Intent.BUY_LONG, "0.40", "10", leaves="0", state=OrderState.CANCELED),
    ]
    # partially filled BUY_SHORT: cum 0 here, so quantity − cum (8) wins over leaves (5)
    assert usd_at_risk(None, orders) == D("4.0") + D("5.0") + D("8") * D("0.70")
    assert usd_at_risk(pos("m1", "10", "0.30"), []) == D("3.00")
    assert usd_at_risk(pos("m1", "-10", "0.30"), []) == D("7.00")


def test_partially_filled_order_counts_its_leaves():
    o = Order(order_id="x", market_slug="m1", intent=Intent.BUY_SHORT, price=D("0.30"),
              quantity=D("8"), cum_quantity=D("3"), leaves_quantity=D("5"),
              state=OrderState.PARTIALLY_FILLED)
    assert usd_at_risk(None, [o]) == D("3.50")


def test_event_and_portfolio_sums_without_netting():
    positions = {"a": pos("a", "10", "0.60"), "b": pos("b", "-10", "0.60"), "c": pos("c", "5", "0.20")}
    orders = [order("c", Intent.BUY_LONG, "0.20", "5")]
    by = at_risk_by_market(positions, orders)
    ev = {"a": "e1", "b": "e1", "c": "e2"}
    assert by == {"a": D("6.00"), "b": D("4.00"), "c": D("2.00")}
    assert event_at_risk("e1", by, ev) == D("10.00")  # YES on one, NO on the other: no hedge
    assert portfolio_at_risk(by) == D("12.00")
    assert positions_count(positions, orders) == 3
    summary = exposure_summary(positions, orders, ev)
    assert summary["by_event"] == {"e1": D("10.00"), "e2": D("2.00")}
    assert summary["portfolio"] == D("12.00") and summary["positions_count"] == 3
    assert positions_count({"z": pos("z", "0", "0")}, [order("y", Intent.BUY_LONG, "0.2", "1")]) == 1
    assert positions_count({}, [order("y", Intent.SELL_LONG, "0.2", "1")]) == 0


# --- Kelly ----------------------------------------------------------------------------------------


def test_kelly_target_worked_numbers():
    # c = 0.56 + 0.0695*0.56*0.44 = 0.5771248; f = (0.60 - c)/(1 - c) = 0.0540944...
    f = kelly_f(Intent.BUY_LONG, D("0.56"), D("0.60"), THETA)
    assert f.quantize(D("0.0000001")) == D("0.0540944")
    target = kelly_target(Intent.BUY_LONG, D("0.56"), D("0.60"), D("1000"), D("0.25"), THETA)
    assert target.quantize(D("0.0001")) == D("13.5236")
    # the NO side mirrors it: BUY_SHORT at 0.44 with q = 0.40 costs 0.56 + the same fee
    assert kelly_target(Intent.BUY_SHORT, D("0.44"), D("0.40"), D("1000"), D("0.25"), THETA) == target
    assert kelly_topup_qty(target, D("0"), D("0.5771248"), D("1")) == D("23")
    assert kelly_topup_qty(target, D("5.60"), D("0.5771248"), D("1")) == D("13")
    assert kelly_topup_qty(target, D("13.6"), D("0.5771248"), D("1")) == 0
    assert kelly_f(Intent.BUY_LONG, D("0.60"), D("0.60"), THETA) == 0


def test_gate_sizes_to_kelly_target():
    r = check(RiskGate(LIMITS), sig())
    assert isinstance(r, OrderRequest)
    assert (r.intent, r.price, r.quantity, r.tif) == (Intent.BUY_LONG, D("0.56"), D("23"), TimeInForce.IOC)


def test_gate_tops_up_an_existing_position_only_to_the_target():
    gate = RiskGate(LIMITS)
    r = check(gate, sig(), positions={"m1": pos("m1", "10", "0.56")})
    assert r.quantity == D("13")
    # an open order on the same side counts too: 24 x 0.56 = 13.44, 0.08 short of the target
    r = check(gate, sig(), orders=[order("m1", Intent.BUY_LONG, "0.56", "24", oid="o9")])
    assert isinstance(r, Rejection) and r.reason == "kelly_target_reached"
    # 23 x 0.56 = 12.88 leaves room for 1 contract, below the $1 minimum trade
    r = check(gate, sig(), orders=[order("m1", Intent.BUY_LONG, "0.56", "23", oid="o9")])
    assert r.reason == "below_min_trade_size"


def test_gate_sizes_no_side_kelly():
    r = check(RiskGate(LIMITS), sig(Intent.BUY_SHORT, price="0.44", q="0.40"))
    assert (r.intent, r.quantity) == (Intent.BUY_SHORT, D("23"))


def test_gate_rechecks_min_edge():
    r = check(RiskGate(LIMITS), sig(edge="0.019"))
    assert r.reason == "below_min_edge"


def test_size_available_shrinks():
    r = check(RiskGate(LIMITS), sig(size="7"))
    assert r.quantity == D("7") and "size_available" in r.reason


# --- caps (q = 0.80 at 0.50: Kelly wants 282 contracts of 1000 equity) ------------------------------


BIG = dict(price="0.50", q="0.80", edge="0.28")


def test_market_cap_shrinks_to_headroom():
    r = check(RiskGate(LIMITS), sig(**BIG))
    assert r.quantity == D("100") and "max_position_per_market" in r.reason  # 50 / 0.50
    r = check(RiskGate(LIMITS), sig(**BIG), positions={"m1": pos("m1", "40", "0.50")})
    assert r.quantity == D("60")  # (50 - 20) / 0.50


def test_market_cap_rejects_when_headroom_below_minimum():
    r = check(RiskGate(LIMITS), sig(**BIG), positions={"m1": pos("m1", "99", "0.50")})
    assert isinstance(r, Rejection) and r.reason == "max_position_per_market"  # 0.50 < $1 minimum


def test_event_cap_shrinks_and_rejects():
    positions = {"m2": pos("m2", "100", "0.50"), "m3": pos("m3", "-100", "0.50")}
    ev = {"m1": "e1", "m2": "e1", "m3": "e1"}
    # event headroom 125 - 50 = 75 (150 contracts) is wider than the market's 100
    r = check(RiskGate(LIMITS), sig(**BIG), positions={"m2": positions["m2"]}, event_of=ev)
    assert r.quantity == D("100") and "max_correlated_exposure" not in r.reason
    # YES in m2 and NO in m3 both count: 125 - 100 = 25 -> 50 contracts
    r = check(RiskGate(LIMITS), sig(**BIG), positions=positions, event_of=ev)
    assert r.quantity == D("50") and "max_correlated_exposure" in r.reason
    big = {**positions, "m4": pos("m4", "49", "0.50")}
    r = check(RiskGate(LIMITS), sig(**BIG), positions=big, event_of={**ev, "m4": "e1"})
    assert r.reason == "max_correlated_exposure"  # 125 - 124.5 = 0.5 < $1


def test_event_from_market_info_when_not_in_map():
    positions = {"m2": pos("m2", "200", "0.50")}
    r = check(RiskGate(LIMITS), sig(**BIG), positions=positions,
              event_of={"m2": "e1"}, market=MarketInfo(slug="m1", event_id="e1"))
    assert r.quantity == D("50")


def test_portfolio_cap_shrinks_and_rejects():
    lim = RiskLimits(max_positions=20)
    positions = {f"x{i}": pos(f"x{i}", "90", "0.50") for i in range(5)}  # 5 x 45 = 225
    r = check(RiskGate(lim), sig(**BIG), positions=positions)
    assert r.quantity == D("50") and "max_portfolio_exposure" in r.reason
    positions["x5"] = pos("x5", "49", "0.50")  # 249.5
    r = check(RiskGate(lim), sig(**BIG), positions=positions)
    assert r.reason == "max_portfolio_exposure"


def test_positions_count_rejects_new_market_but_not_held_one():
    lim = RiskLimits(max_positions=2)
    positions = {"a": pos("a", "1", "0.5"), "b": pos("b", "-1", "0.5")}
    r = check(RiskGate(lim), sig(), positions=positions)
    assert r.reason == "max_positions"
    r = check(RiskGate(lim), sig(), positions={**positions, "m1": pos("m1", "1", "0.56")})
    assert isinstance(r, OrderRequest)


def test_cash_including_fees_shrinks_and_rejects():
    # per contract 0.50 + fee 0.017375 = 0.517375; (20 - 0.01) / 0.517375 = 38.6
    r = check(RiskGate(LIMITS), sig(**BIG), cash="20")
    assert r.quantity == D("38") and "cash" in r.reason
    # an open order's cash is reserved: 30 x (0.50 + 0.017375) + 0.01 = 15.53125
    r = check(RiskGate(LIMITS), sig(**BIG), cash="20",
              orders=[order("m9", Intent.BUY_LONG, "0.50", "30")])
    assert r.quantity == D("8")
    r = check(RiskGate(LIMITS), sig(**BIG), cash="1.00")
    assert r.reason == "cash"


def test_cash_check_covers_fee_rounding_up():
    # 1 contract at 0.50: exact fee 0.017375 but the exchange may charge 0.02, so 0.518 is short
    lim = RiskLimits(min_trade_size=D("0"))
    assert check(RiskGate(lim), sig(**BIG), cash="0.518").reason == "cash"
    assert check(RiskGate(lim), sig(**BIG), cash="0.528").quantity == D("1")


def test_min_trade_size_on_notional():
    # equity 5: target 0.732 -> 1 contract x 0.50 < $1
    r = check(RiskGate(LIMITS), sig(**BIG), equity="5")
    assert r.reason == "below_min_trade_size"
    r = check(RiskGate(LIMITS), sig(**BIG), equity="10")
    assert r.quantity == D("2")


def test_fractional_min_qty_sizes_on_its_step():
    m = MarketInfo(slug="m1", event_id="e1", min_qty=D("0.01"))
    r = check(RiskGate(LIMITS), sig(), market=m)
    assert r.quantity == D("23.43")


def test_order_rate_per_market_per_minute():
    gate = RiskGate(RiskLimits(order_rate_per_minute=2))
    s = sig(size="2")
    for i in range(2):
        assert isinstance(check(gate, s, now=NOW + timedelta(seconds=i)), OrderRequest)
    assert check(gate, s, now=NOW + timedelta(seconds=30)).reason == "order_rate"
    assert isinstance(check(gate, sig(slug="m2", size="2"), now=NOW + timedelta(seconds=30)), OrderRequest)
    assert isinstance(check(gate, s, now=NOW + timedelta(seconds=60)), OrderRequest)


def test_opening_against_opposite_position_rejected():
    r = check(RiskGate(LIMITS), sig(), positions={"m1": pos("m1", "-5", "0.5")})
    assert r.reason == "opposite_position"


def test_opening_while_other_side_order_works_rejected():
    working = order("m1", Intent.BUY_SHORT, "0.70", "5", state=OrderState.PARTIALLY_FILLED)
    r = check(RiskGate(LIMITS), sig(), orders=[working])
    assert r.reason == "opposite_order_open"


def test_self_match_against_own_resting_order_rejected():
    long = {"m1": pos("m1", "-10", "0.50")}
    resting = order("m1", Intent.BUY_SHORT, "0.55", "5")  # rests as an offer at 0.55
    close = sig(Intent.SELL_SHORT, price="0.56")  # would buy YES up to 0.56
    r = check(RiskGate(LIMITS), close, positions=long, orders=[resting])
    assert r.reason == "self_match"
    far = order("m1", Intent.BUY_SHORT, "0.60", "5")
    assert isinstance(check(RiskGate(LIMITS), close, positions=long, orders=[far]), OrderRequest)


def test_bad_price_rejected():
    assert check(RiskGate(LIMITS), sig(price="0.555")).reason == "bad_price"
    assert check(RiskGate(LIMITS), sig(price="1.00")).reason == "bad_price"


# --- closing --------------------------------------------------------------------------------------


def test_closing_size_is_min_of_position_and_available():
    gate = RiskGate(LIMITS)
    long = {"m1": pos("m1", "20", "0.30")}
    r = check(gate, sig(Intent.SELL_LONG, price="0.44", size="50", edge="0"), positions=long)
    assert (r.intent, r.quantity, r.reason) == (Intent.SELL_LONG, D("20"), "close")
    r = check(gate, sig(Intent.SELL_LONG, price="0.44", size="8", edge="0"), positions=long)
    assert r.quantity == D("8")
    short = {"m1": pos("m1", "-6", "0.70")}
    r = check(gate, sig(Intent.SELL_SHORT, price="0.56", size="50", edge="0"), positions=short)
    assert (r.intent, r.quantity) == (Intent.SELL_SHORT, D("6"))


def test_closing_never_oversells_with_open_closing_orders():
    long = {"m1": pos("m1", "20", "0.30")}
    pending = [order("m1", Intent.SELL_LONG, "0.44", "15")]
    r = check(RiskGate(LIMITS), sig(Intent.SELL_LONG, price="0.44", size="50"), positions=long, orders=pending)
    assert r.quantity == D("5")
    pending.append(order("m1", Intent.SELL_LONG, "0.44", "5", oid="o2"))
    r = check(RiskGate(LIMITS), sig(Intent.SELL_LONG, price="0.44", size="50"), positions=long, orders=pending)
    assert r.reason == "nothing_to_close"


def test_closing_without_position_rejected():
    r = check(RiskGate(LIMITS), sig(Intent.SELL_LONG, price="0.44"), positions={"m1": pos("m1", "-3", "0.5")})
    assert r.reason == "no_position_to_close"


def test_closing_skips_caps_and_cash():
    lim = RiskLimits(max_position_per_market=D("0"), max_portfolio_exposure=D("0"))
    long = {"m1": pos("m1", "20", "0.30")}
    r = check(RiskGate(lim), sig(Intent.SELL_LONG, price="0.44", size="50"), positions=long, cash="0")
    assert r.quantity == D("20")


# --- trading states -----------------------------------------------------------------------------


def test_reducing_when_portfolio_over_cap_without_the_bot_acting():
    notices = []
    gate = RiskGate(RiskLimits(max_portfolio_exposure=D("10")), notify=notices.append)
    over = {"m1": pos("m1", "30", "0.50")}  # 15 at risk, e.g. the cap was lowered at restart
    r = check(gate, sig(), positions=over)
    assert gate.state is TradingState.REDUCING and gate.reason == "portfolio_over_cap"
    assert r.reason == "reducing"
    assert gate.ready
    r = check(gate, sig(Intent.SELL_LONG, price="0.44", size="50"), positions=over)
    assert r.quantity == D("30")
    gate.observe(equity=D("1000"), positions={"m1": pos("m1", "10", "0.50")}, open_orders=[], now=NOW)
    assert gate.state is TradingState.ACTIVE
    assert [n.kind for n in notices] == ["state_changed", "state_changed"]


def test_operator_flatten_reduces_until_resume(tmp_path):
    gate = RiskGate(LIMITS, data_dir=tmp_path)
    gate.request_flatten()
    assert check(gate, sig()).reason == "reducing"
    assert gate.reason == "operator_flatten"
    write_resume_request(tmp_path)
    assert isinstance(check(gate, sig()), OrderRequest)
    assert not (tmp_path / "RESUME").exists()  # consumed


def test_daily_loss_halts_until_next_trading_day():
    notices = []
    gate = RiskGate(LIMITS, reset_tz="America/New_York", reset_hour=0, notify=notices.append)
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=NOW)
    assert gate.halt_state().day == date(2026, 11, 26)
    gate.observe(equity=D("975.01"), positions={}, open_orders=[], now=NOW + timedelta(hours=1))
    assert gate.state is TradingState.ACTIVE
    r = check(gate, sig(), equity="975", now=NOW + timedelta(hours=2))
    assert gate.state is TradingState.HALTED and gate.reason == "daily_loss"
    assert r.reason == "halted" and not gate.ready
    # closing also stops, except an operator's flatten
    long = {"m1": pos("m1", "5", "0.5")}
    late = datetime(2026, 11, 27, 4, 59, tzinfo=UTC)  # 23:59 in New York
    assert check(gate, sig(Intent.SELL_LONG, price="0.44"), positions=long, equity="990", now=late).reason == "halted"
    ok = check(gate, sig(Intent.SELL_LONG, price="0.44"), positions=long, equity="990", now=late, flatten=True)
    assert ok.quantity == D("5")
    assert check(gate, sig(), equity="990", now=late, flatten=True).reason == "flatten_closes_only"
    midnight = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)
    r = check(gate, sig(), equity="975", now=midnight)
    assert gate.state is TradingState.ACTIVE and isinstance(r, OrderRequest)
    assert gate.halt_state().day_start_equity == D("975")
    assert gate.status()["halt_reasons"] == [] and gate.halt_state().daily_loss_halt_day is None
    assert [n.kind for n in notices] == ["halt_entered", "halt_left"]


def test_trading_day_follows_configured_timezone_and_hour_across_dst():
    ny = __import__("zoneinfo").ZoneInfo("America/New_York")
    # winter (EST, UTC-5) and summer (EDT, UTC-4)
    assert trading_day(datetime(2026, 1, 15, 4, 59, tzinfo=UTC), ny, 0) == date(2026, 1, 14)
    assert trading_day(datetime(2026, 1, 15, 5, 0, tzinfo=UTC), ny, 0) == date(2026, 1, 15)
    assert trading_day(datetime(2026, 7, 15, 3, 59, tzinfo=UTC), ny, 0) == date(2026, 7, 14)
    assert trading_day(datetime(2026, 7, 15, 4, 0, tzinfo=UTC), ny, 0) == date(2026, 7, 15)
    # a 17:00 reset: 16:59 local still belongs to the previous day
    assert trading_day(datetime(2026, 7, 15, 20, 59, tzinfo=UTC), ny, 17) == date(2026, 7, 14)
    assert trading_day(datetime(2026, 7, 15, 21, 0, tzinfo=UTC), ny, 17) == date(2026, 7, 15)
    with pytest.raises(ValueError):
        trading_day(datetime(2026, 7, 15, 21, 0), ny, 17)


def test_daily_reset_hour_in_other_timezone():
    gate = RiskGate(LIMITS, reset_tz="Europe/London", reset_hour=17)
    t0 = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 16:00 London: day of the 25th
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=t0)
    gate.observe(equity=D("970"), positions={}, open_orders=[], now=t0 + timedelta(minutes=30))
    assert gate.state is TradingState.HALTED
    gate.observe(equity=D("970"), positions={}, open_orders=[], now=t0 + timedelta(minutes=59))
    assert gate.state is TradingState.HALTED
    gate.observe(equity=D("970"), positions={}, open_orders=[], now=t0 + timedelta(minutes=60))
    assert gate.state is TradingState.ACTIVE


def test_drawdown_halts_until_operator_resume(tmp_path):
    lim = RiskLimits(max_daily_loss=D("10000"))
    gate = RiskGate(lim, data_dir=tmp_path)
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=NOW)
    gate.observe(equity=D("1200"), positions={}, open_orders=[], now=NOW)  # high-water mark
    gate.observe(equity=D("1020.01"), positions={}, open_orders=[], now=NOW)
    assert gate.state is TradingState.ACTIVE
    gate.observe(equity=D("1020"), positions={}, open_orders=[], now=NOW)  # 15% of 1200
    assert gate.state is TradingState.HALTED and gate.reason == "drawdown"
    gate.observe(equity=D("1150"), positions={}, open_orders=[], now=NOW + timedelta(days=2))
    assert gate.state is TradingState.HALTED  # recovery and new days do not clear it
    write_resume_request(tmp_path)
    gate.observe(equity=D("1150"), positions={}, open_orders=[], now=NOW + timedelta(days=2))
    assert gate.state is TradingState.ACTIVE
    assert gate.halt_state().high_water_mark == D("1150")


def test_kill_file_halts_at_once_while_it_exists(tmp_path):
    gate = RiskGate(LIMITS, data_dir=tmp_path)
    assert isinstance(check(gate, sig()), OrderRequest)
    write_kill_file(tmp_path)
    assert (tmp_path / "KILL").exists()
    r = check(gate, sig(), now=NOW + timedelta(seconds=1))
    assert r.reason == "halted" and gate.reason == "kill_switch"
    assert gate.status()["ready"] is False
    assert remove_kill_file(tmp_path) and not remove_kill_file(tmp_path)
    assert isinstance(check(gate, sig(), now=NOW + timedelta(seconds=2)), OrderRequest)


def test_kill_file_written_while_bot_down_holds_from_start(tmp_path):
    write_kill_file(tmp_path / "data")
    gate = RiskGate(LIMITS, data_dir=tmp_path / "data")
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=NOW)
    assert gate.state is TradingState.HALTED


def test_resume_does_not_clear_daily_loss_or_kill(tmp_path):
    gate = RiskGate(LIMITS, data_dir=tmp_path)
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=NOW)
    gate.observe(equity=D("900"), positions={}, open_orders=[], now=NOW)
    assert gate.halt_reasons(NOW) == ["daily_loss"]
    write_kill_file(tmp_path)
    write_resume_request(tmp_path)
    gate.observe(equity=D("900"), positions={}, open_orders=[], now=NOW)
    assert gate.state is TradingState.HALTED
    assert gate.reason == "kill_switch,daily_loss"


def test_transfers_are_not_pnl():
    gate = RiskGate(LIMITS)
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=NOW)
    gate.on_transfer(D("-300"))
    gate.observe(equity=D("700"), positions={}, open_orders=[], now=NOW)
    assert gate.state is TradingState.ACTIVE
    assert gate.halt_state().day_start_equity == D("700")
    assert gate.halt_state().high_water_mark == D("700")
    gate.on_transfer(D("500"))
    gate.observe(equity=D("1180"), positions={}, open_orders=[], now=NOW)  # lost 20 after a deposit
    assert gate.state is TradingState.ACTIVE
    gate.observe(equity=D("1175"), positions={}, open_orders=[], now=NOW)
    assert gate.state is TradingState.HALTED and gate.reason == "daily_loss"


def test_halt_state_round_trips_and_restores_a_halt():
    gate = RiskGate(RiskLimits(max_daily_loss=D("10000")))
    gate.observe(equity=D("1000"), positions={}, open_orders=[], now=NOW)
    gate.observe(equity=D("800"), positions={}, open_orders=[], now=NOW)
    data = gate.halt_state().to_dict()
    assert data["drawdown_halt"] is True and data["high_water_mark"] == "1000"
    again = RiskGate(RiskLimits(max_daily_loss=D("10000")))
    again.restore(data)
    assert again.halt_state() == gate.halt_state()
    again.observe(equity=D("990"), positions={}, open_orders=[], now=NOW + timedelta(days=1))
    assert again.state is TradingState.HALTED and again.reason == "drawdown"
    assert HaltState.from_dict(HaltState().to_dict()) == HaltState()


def test_restored_daily_halt_expires_with_its_day():
    gate = RiskGate(LIMITS)
    gate.restore(HaltState(day=date(2026, 11, 25), day_start_equity=D("1000"),
                           high_water_mark=D("1000"), daily_loss_halt_day=date(2026, 11, 25)))
    gate.observe(equity=D("970"), positions={}, open_orders=[], now=NOW)
    assert gate.state is TradingState.ACTIVE
    assert gate.halt_state().day_start_equity == D("970")


def test_rejections_counted_by_reason_and_burst_notified():
    notices = []
    gate = RiskGate(LIMITS, notify=notices.append, burst_threshold=5)
    for i in range(6):
        check(gate, sig(edge="0"), now=NOW + timedelta(seconds=i))
    assert gate.rejections["below_min_edge"] == 6
    assert [n.kind for n in notices] == ["rejection_burst"]
    st = gate.status()
    assert st["rejections"] == {"below_min_edge": 6} and st["state"] == "ACTIVE"


def test_routine_sizing_rejections_are_counted_but_never_make_a_burst_alert():
    # every book frame while the Kelly target holds is rejected; that is the gate working, and an
    # alert a minute about it would teach the operator to ignore the real ones
    notices = []
    gate = RiskGate(LIMITS, notify=notices.append, burst_threshold=5)
    at_target = [order("m1", Intent.BUY_LONG, "0.56", "24", oid="o9")]
    for i in range(10):
        r = check(gate, sig(), orders=at_target, now=NOW + timedelta(seconds=i))
        assert isinstance(r, Rejection) and r.reason == "kelly_target_reached"
    assert gate.rejections["kelly_target_reached"] == 10
    assert [n.kind for n in notices] == []


def test_broken_notifier_does_not_stop_the_gate(tmp_path):
    def boom(_):
        raise RuntimeError("down")

    gate = RiskGate(LIMITS, data_dir=tmp_path, notify=boom)
    write_kill_file(tmp_path)
    assert check(gate, sig()).reason == "halted"


def test_limits_from_settings_like_object_and_validation():
    class S:
        risk_max_position_per_market = D("50")
        risk_max_portfolio_exposure = D("250")
        risk_max_daily_loss = D("25")
        risk_kelly_fraction = D("0.25")
        risk_min_edge = D("0.02")
        risk_min_trade_size = D("1")
        risk_max_correlated_exposure = D("125")
        risk_max_positions = 10
        risk_max_drawdown_pct = D("0.15")
        order_rate_per_minute = 6
        order_tif = "gtc"

    assert RiskLimits.from_settings(S()).tif is TimeInForce.GTC
    with pytest.raises(ValueError):
        RiskLimits(kelly_fraction=D("1.5"))
    with pytest.raises(ValueError):
        RiskLimits(tif="day")
