"""The baseline bot's decision rule (bench/baseline_bot.py): polybot's rule, written as a user
would, so the tick-to-order comparison times the same decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.baseline_bot import decide
from polybot.model import BookSnapshot, FairValue, MarketInfo, MarketState, Position, PriceLevel
from polybot.strategy import StrategyParams, evaluate

D = Decimal
THETA = D("0.0695")


def book(bids: list[tuple[str, int]], offers: list[tuple[str, int]]) -> dict[str, Any]:
    def levels(xs: list[tuple[str, int]]) -> list[dict[str, Any]]:
        return [{"px": {"value": p, "currency": "USD"}, "qty": f"{q}.0000"} for p, q in xs]

    return {"marketSlug": "m", "bids": levels(bids), "offers": levels(offers),
            "state": "MARKET_STATE_OPEN"}


def _decide(b: dict[str, Any], position: str = "0", at_risk: str = "0") -> Any:
    return decide(b, D("0.5"), THETA, D("0.02"), D(position), D(at_risk), D("1000000"), D("1"))


def test_an_offer_under_fair_by_more_than_fee_and_edge_is_lifted_up_to_the_worst_such_level() -> None:
    b = book([("0.42", 200)], [("0.44", 10), ("0.45", 5), ("0.47", 200)])
    # 0.47: 0.5 - 0.47 - 0.0695 * 0.47 * 0.53 = 0.0127 < 0.02, so the sweep stops at 0.45
    assert _decide(b) == ("ORDER_INTENT_BUY_LONG", D("0.45"), D(15))


def test_a_book_without_an_edge_sends_nothing() -> None:
    assert _decide(book([("0.47", 100)], [("0.53", 100)])) is None


def test_a_rich_bid_closes_a_held_yes_position_and_never_sells_more_than_is_held() -> None:
    b = book([("0.56", 30)], [("0.60", 100)])
    assert _decide(b, position="12", at_risk="5.28") == ("ORDER_INTENT_SELL_LONG", D("0.56"), D(12))
    assert _decide(b)[0] == "ORDER_INTENT_BUY_SHORT"  # flat: the same bid opens NO


def test_kelly_tops_the_position_up_to_its_target_and_no_further() -> None:
    b = book([], [("0.44", 10)])
    cost = D("0.44") + THETA * D("0.44") * D("0.56")
    target = (D("0.5") - cost) / (1 - cost) * D("1000000")  # Kelly fraction 1 of the bankroll
    assert _decide(b, position="100", at_risk=str(target - 3 * cost)) == (
        "ORDER_INTENT_BUY_LONG", D("0.44"), D(3))
    assert _decide(b, position="100", at_risk=str(target)) is None


# --- the same rule as polybot's signal engine ------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MARKET = MarketInfo(slug="m", event_id="e", start_time=NOW + timedelta(hours=3))
TICKS = [D(c) / 100 for c in range(1, 100)]


@st.composite
def books(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    prices = sorted(draw(st.lists(st.sampled_from(TICKS), min_size=1, max_size=8, unique=True)))
    split = draw(st.integers(0, len(prices)))
    qty = st.integers(1, 300)
    bids = [(str(p), draw(qty)) for p in reversed(prices[:split])]
    offers = [(str(p), draw(qty)) for p in prices[split:]]
    return bids, offers


@given(books(), st.sampled_from(TICKS[10:-10]), st.sampled_from([-20, 0, 20]))
@settings(max_examples=300, deadline=None)
def test_the_baseline_chooses_the_side_and_limit_polybot_signals_first(
        levels: tuple[list[tuple[str, int]], list[tuple[str, int]]], q: Decimal,
        position: int) -> None:
    bids, offers = levels
    snap = BookSnapshot(market_slug="m", state=MarketState.OPEN,
                        bids=tuple(PriceLevel(D(p), D(n)) for p, n in bids),
                        offers=tuple(PriceLevel(D(p), D(n)) for p, n in offers))
    fv = FairValue(market_slug="m", q=q, method="test", quotes=(), computed_at=1.0)
    signals = evaluate(snap, fv, MARKET, Position("m", D(position)), StrategyParams(D("0.02")),
                       NOW, book_trusted=True, fair_trusted=True)
    ours = decide(book(bids, offers), q, THETA, D("0.02"), D(position),
                  abs(D(position)) * D("0.5"), D("1000000"), D("1"))
    if ours is None:
        assert signals == []
        return
    # the baseline takes the offer side first, polybot lists closing signals first: compare the
    # baseline's order with polybot's signal of the same side
    same = [s for s in signals if s.intent.value == ours[0]]
    assert same, (ours, signals)
    assert same[0].limit_price == ours[1]
