"""The baseline bot's decision rule (bench/baseline_bot.py): polybot's rule, written as a user
would, so the tick-to-order comparison times the same decision."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bench.baseline_bot import decide

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
