"""Property: whatever books, fair values and fills arrive, the gate never lets USD at risk exceed a
cap (market, event, portfolio), the positions count exceed its limit, or cash go negative.

Approved orders are kept open until the test fills (at the limit or better, possibly in parts,
with the exchange's fee rounding) or cancels them, so open orders, submitting orders and
positions all weigh on later decisions.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polybot.exposure import Exposure, full_totals
from polybot.model import (
    BookSnapshot,
    FairValue,
    Intent,
    MarketInfo,
    Order,
    OrderRequest,
    OrderState,
    Position,
    PriceLevel,
)
from polybot.pricing import TAKER_THETA, FeeAccumulator
from polybot.risk import RiskGate, RiskLimits
from polybot.strategy import StrategyParams, evaluate
from polybot.trading_state import HaltLimits, TradingStateMachine

TICK = D("0.01")
MARKETS = ["m0", "m1", "m2", "m3", "m4"]
EVENT_OF = {"m0": "e1", "m1": "e1", "m2": "e2", "m3": "e2", "m4": "e4"}
LIMITS = RiskLimits(
    max_position_per_market=D("20"),
    max_portfolio_exposure=D("45"),
    max_daily_loss=D("100000"),
    kelly_fraction=D("1"),
    min_edge=D("0.01"),
    min_trade_size=D("1"),
    max_correlated_exposure=D("30"),
    max_positions=3,
    max_drawdown_pct=D("0.99"),
    order_rate_per_minute=1000,
)
T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
START = T0 + timedelta(days=1)  # every game starts tomorrow: opening allowed

frame = st.tuples(
    st.just("frame"),
    st.sampled_from(MARKETS),
    st.integers(2, 97),  # best bid in ticks
    st.integers(1, 5),  # spread in ticks
    st.lists(st.integers(1, 200), min_size=1, max_size=4),  # level sizes
    st.integers(2, 98),  # fair q in cents
    st.booleans(),  # submitted orders start SUBMITTING (leaves unknown)
)
fill = st.tuples(st.just("fill"), st.integers(0, 50), st.integers(1, 4), st.integers(0, 2))
cancel = st.tuples(st.just("cancel"), st.integers(0, 50))
steps = st.lists(st.one_of(frame, frame, fill, fill, cancel), min_size=1, max_size=40)


def levels(start: int, step: int, sizes: list[int]) -> tuple[PriceLevel, ...]:
    out = []
    for i, size in enumerate(sizes):
        p = start + step * i
        if 1 <= p <= 99:
            out.append(PriceLevel(D(p) / 100, D(size)))
    return tuple(out)


@attrs.define
class World:
    """The account, told to the running exposure the way the ledger and the registry tell it."""

    cash: D
    positions: dict[str, Position] = attrs.Factory(dict)
    orders: list[Order] = attrs.Factory(list)
    fees: dict[str, FeeAccumulator] = attrs.Factory(dict)
    seq: int = 0
    exposure: Exposure = attrs.Factory(Exposure)

    def __attrs_post_init__(self) -> None:
        for slug, event in EVENT_OF.items():
            self.exposure.set_event(slug, event)

    def _replace(self, old: Order, new: Order) -> None:
        self.orders[self.orders.index(old)] = new
        self.exposure.on_order(new.order_id, new)

    def open_orders(self) -> list[Order]:
        return [o for o in self.orders if o.state.is_open]

    def equity(self) -> D:
        # marked at cost: the property is about caps and cash, not P&L
        total = self.cash
        for p in self.positions.values():
            total += p.net_qty * p.avg_price if p.net_qty > 0 else -p.net_qty * (1 - p.avg_price)
        return total

    def submit(self, req: OrderRequest, submitting: bool) -> None:
        self.seq += 1
        oid = f"o{self.seq}"
        self.orders.append(
            Order(
                order_id=oid,
                market_slug=req.market_slug,
                intent=req.intent,
                price=req.price,
                quantity=req.quantity,
                leaves_quantity=D(0) if submitting else req.quantity,
                state=OrderState.SUBMITTING if submitting else OrderState.NEW,
            )
        )
        self.fees[oid] = FeeAccumulator(TAKER_THETA)
        self.exposure.on_order(oid, self.orders[-1])

    def fill(self, idx: int, parts: int, improve: int) -> None:
        live = self.open_orders()
        if not live:
            return
        o = live[idx % len(live)]
        remaining = o.quantity - o.cum_quantity
        qty = max(remaining // parts, D(1)) if parts > 1 else remaining
        qty = min(qty, remaining)
        better = D(improve) * TICK
        buying = o.intent in (Intent.BUY_LONG, Intent.SELL_SHORT)
        px = o.price - better if buying else o.price + better
        px = min(max(px, D("0.01")), D("0.99"))
        fee = self.fees[o.order_id].fill(qty, px)
        pos = self.positions.get(o.market_slug, Position(market_slug=o.market_slug))
        net, avg = pos.net_qty, pos.avg_price
        signed = qty if buying else -qty
        if o.intent is Intent.BUY_LONG:
            self.cash -= qty * px + fee
        elif o.intent is Intent.BUY_SHORT:
            self.cash -= qty * (1 - px) + fee
        elif o.intent is Intent.SELL_LONG:
            self.cash += qty * px - fee
        else:
            self.cash += qty * (1 - px) - fee
        new = net + signed
        assert (net >= 0 and new >= 0) or (net <= 0 and new <= 0), "a fill flipped the position"
        if o.intent.is_opening:
            avg = (abs(net) * avg + qty * px) / abs(new)
        elif new == 0:
            avg = D(0)
        self.positions[o.market_slug] = Position(market_slug=o.market_slug, net_qty=new, avg_price=avg)
        self.exposure.on_position(self.positions[o.market_slug])
        cum = o.cum_quantity + qty
        done = cum == o.quantity
        self._replace(o, attrs.evolve(
            o,
            cum_quantity=cum,
            leaves_quantity=o.quantity - cum,
            state=OrderState.FILLED if done else OrderState.PARTIALLY_FILLED,
        ))

    def cancel(self, idx: int) -> None:
        live = self.open_orders()
        if live:
            o = live[idx % len(live)]
            self._replace(o, attrs.evolve(o, state=OrderState.CANCELED, leaves_quantity=D(0)))


def assert_within_limits(world: World) -> None:
    totals = full_totals(world.positions, world.open_orders(), EVENT_OF)
    # the running totals the gate reads always equal a full recompute
    assert world.exposure.totals() == totals, (world.exposure.totals(), totals)
    for slug, risk in totals.by_market.items():
        assert risk <= LIMITS.max_position_per_market, (slug, risk)
    for event, risk in totals.by_event.items():
        assert risk <= LIMITS.max_correlated_exposure, event
    assert totals.portfolio <= LIMITS.max_portfolio_exposure
    assert len(totals.counted) <= LIMITS.max_positions
    assert world.cash >= 0, world.cash


def new_gate(world: World) -> RiskGate:
    trading = TradingStateMachine(HaltLimits.of(LIMITS))
    trading.begin(world.equity(), T0)
    return RiskGate(LIMITS, trading=trading, exposure=world.exposure)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial_cash=st.integers(2, 60), script=steps)
def test_gate_never_exceeds_a_cap_nor_spends_missing_cash(initial_cash, script):
    world = World(cash=D(initial_cash))
    gate = new_gate(world)
    params = StrategyParams(min_edge=LIMITS.min_edge, trade_in_play=True)
    approved = 0
    for i, step in enumerate(script):
        now = T0 + timedelta(seconds=i)
        if step[0] == "frame":
            _, slug, bid, spread, sizes, q, submitting = step
            book = BookSnapshot(
                market_slug=slug,
                bids=levels(bid, -1, sizes),
                offers=levels(bid + spread, 1, sizes),
            )
            info = MarketInfo(slug=slug, event_id=EVENT_OF[slug], start_time=START)
            fv = FairValue(market_slug=slug, q=D(q) / 100, method="t", quotes=(), computed_at=0.0)
            signals = evaluate(
                book, fv, info, world.positions.get(slug), params, now,
                book_trusted=True, fair_trusted=True,
            )
            for sig in signals:
                r = gate.check(sig, position=world.positions.get(slug), equity=world.equity(),
                               cash=world.cash, market_info=info, now=now)
                if isinstance(r, OrderRequest):
                    approved += 1
                    assert r.quantity >= info.min_qty and r.quantity <= sig.size_available
                    world.submit(r, submitting)
                    assert_within_limits(world)
        elif step[0] == "fill":
            world.fill(step[1], step[2], step[3])
        else:
            world.cancel(step[1])
        assert_within_limits(world)


def test_property_harness_really_trades():
    """Guard against a vacuous property: the same harness approves and fills orders."""
    world = World(cash=D("100"))
    gate = new_gate(world)
    book = BookSnapshot(market_slug="m0", bids=levels(40, -1, [50]), offers=levels(41, 1, [50]))
    info = MarketInfo(slug="m0", event_id="e1", start_time=START)
    fv = FairValue(market_slug="m0", q=D("0.60"), method="t", quotes=(), computed_at=0.0)
    (sig,) = evaluate(book, fv, info, None, StrategyParams(min_edge=D("0.01")), T0,
                      book_trusted=True, fair_trusted=True)
    r = gate.check(sig, position=None, equity=world.equity(), cash=world.cash,
                   market_info=info, now=T0)
    assert isinstance(r, OrderRequest) and r.quantity == D("48")  # 20 / 0.41 per-market cap
    world.submit(r, submitting=False)
    world.fill(0, 1, 0)
    assert world.positions["m0"].net_qty == D("48")
    assert_within_limits(world)
