from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from polybot.model import (
    BookSnapshot,
    FairValue,
    Intent,
    MarketInfo,
    MarketState,
    MarketStatus,
    Position,
    PriceLevel,
)
from polybot.strategy import StrategyParams, edge_buy_no, edge_buy_yes, evaluate, opening_allowed

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MARKET = MarketInfo(slug="m1", event_id="e1", start_time=NOW + timedelta(hours=3))
PARAMS = StrategyParams(min_edge=D("0.02"))


def lv(price: str, qty: str) -> PriceLevel:
    return PriceLevel(D(price), D(qty))


def book(bids=(), offers=(), state=MarketState.OPEN) -> BookSnapshot:
    return BookSnapshot(
        market_slug="m1",
        bids=tuple(lv(*b) for b in bids),
        offers=tuple(lv(*o) for o in offers),
        state=state,
    )


def fair(q: str) -> FairValue:
    return FairValue(market_slug="m1", q=D(q), method="test", quotes=(), computed_at=1.0)


def run(b, f, *, market=MARKET, position=None, params=PARAMS, now=NOW, book_trusted=True, fair_trusted=True):
    return evaluate(
        b, f, market, position, params, now, book_trusted=book_trusted, fair_trusted=fair_trusted
    )


# q = 0.60, taker Θ = 0.0695: fee(0.55) = 0.01720125, fee(0.56) = 0.0171248, fee(0.57) = 0.01703445
YES_BOOK = book(bids=[("0.50", "5")], offers=[("0.55", "10"), ("0.56", "5"), ("0.57", "100")])
# q = 0.40: the mirror image on the bid side
NO_BOOK = book(bids=[("0.45", "7"), ("0.44", "3"), ("0.43", "50")], offers=[("0.50", "5")])


def test_edge_net_of_fees_worked_numbers():
    theta = D("0.0695")
    assert edge_buy_yes(D("0.60"), D("0.55"), theta) == D("0.03279875")
    assert edge_buy_yes(D("0.60"), D("0.56"), theta) == D("0.0228752")
    assert edge_buy_yes(D("0.60"), D("0.57"), theta) == D("0.01296555")
    assert edge_buy_no(D("0.40"), D("0.45"), theta) == D("0.03279875")
    assert edge_buy_no(D("0.40"), D("0.44"), theta) == D("0.0228752")
    assert edge_buy_no(D("0.40"), D("0.43"), theta) == D("0.01296555")


def test_buy_yes_lifts_offers_while_marginal_edge_clears():
    (sig,) = run(YES_BOOK, fair("0.60"))
    assert sig.intent is Intent.BUY_LONG
    assert sig.limit_price == D("0.56")
    assert sig.size_available == D("15")
    assert sig.edge == D("0.0228752")
    assert sig.fair_q == D("0.60")
    assert sig.fair_value == fair("0.60")


def test_buy_no_sells_yes_at_bids_while_marginal_edge_clears():
    (sig,) = run(NO_BOOK, fair("0.40"))
    assert sig.intent is Intent.BUY_SHORT
    assert sig.limit_price == D("0.44")
    assert sig.size_available == D("10")
    assert sig.edge == D("0.0228752")


def test_edge_exactly_at_minimum_trades():
    # fee(0.50) = 0.017375, so q = 0.537375 gives an edge of exactly 0.02
    (sig,) = run(book(offers=[("0.50", "4")]), fair("0.537375"))
    assert sig.edge == D("0.02") and sig.size_available == D("4")
    assert run(book(offers=[("0.50", "4")]), fair("0.537374")) == []


def test_no_edge_no_signal():
    assert run(YES_BOOK, fair("0.55")) == []


def test_market_fee_coefficient_is_used():
    free = MarketInfo(slug="m1", fee_coefficient=D("0"), start_time=MARKET.start_time)
    (sig,) = run(YES_BOOK, fair("0.60"), market=free)
    assert sig.limit_price == D("0.57") and sig.size_available == D("115")
    assert sig.edge == D("0.03")


def test_no_signal_from_untrusted_book_or_fair_value_or_closed_market():
    assert run(YES_BOOK, fair("0.60"), book_trusted=False) == []
    assert run(YES_BOOK, fair("0.60"), fair_trusted=False) == []
    assert run(YES_BOOK, None) == []
    assert run(None, fair("0.60")) == []
    suspended = book(offers=[("0.55", "10")], state=MarketState.SUSPENDED)
    assert run(suspended, fair("0.60")) == []
    closed = MarketInfo(slug="m1", status=MarketStatus.CLOSED)
    assert run(YES_BOOK, fair("0.60"), market=closed) == []


def test_the_books_state_decides_a_market_halted_in_its_metadata_status():
    # money-audit r11: metadata read while the market was halted must not block it for good
    # once its book is OPEN again (closes included); a final status still blocks.
    halted_at_start = MarketInfo(slug="m1", status=MarketStatus.HALTED, start_time=MARKET.start_time)
    assert [s.intent for s in run(YES_BOOK, fair("0.60"), market=halted_at_start)] == [
        s.intent for s in run(YES_BOOK, fair("0.60"))] != []
    held = Position(market_slug="m1", net_qty=D("8"), avg_price=D("0.30"))
    assert [s.intent for s in run(NO_BOOK, fair("0.40"), position=held,
                                  market=halted_at_start)] == [Intent.SELL_LONG]
    for final in (MarketStatus.RESOLVING, MarketStatus.RESOLVED):
        assert run(YES_BOOK, fair("0.60"), market=MarketInfo(slug="m1", status=final)) == []


def test_crossed_book_gives_no_signal():
    crossed = book(bids=[("0.70", "5")], offers=[("0.50", "5")])
    assert run(crossed, fair("0.60")) == []


def test_holding_yes_closes_first_instead_of_buying_no():
    pos = Position(market_slug="m1", net_qty=D("8"), avg_price=D("0.30"))
    (sig,) = run(NO_BOOK, fair("0.40"), position=pos)
    assert sig.intent is Intent.SELL_LONG
    assert sig.limit_price == D("0.44") and sig.size_available == D("10")


def test_holding_no_closes_first_instead_of_buying_yes():
    pos = Position(market_slug="m1", net_qty=D("-8"), avg_price=D("0.70"))
    (sig,) = run(YES_BOOK, fair("0.60"), position=pos)
    assert sig.intent is Intent.SELL_SHORT
    assert sig.limit_price == D("0.56")


def test_holding_yes_with_edge_on_offers_tops_up():
    pos = Position(market_slug="m1", net_qty=D("8"), avg_price=D("0.50"))
    (sig,) = run(YES_BOOK, fair("0.60"), position=pos)
    assert sig.intent is Intent.BUY_LONG


def test_opening_stops_before_start_but_closing_continues():
    params = StrategyParams(min_edge=D("0.02"), stop_before_start_minutes=60)
    soon = MarketInfo(slug="m1", start_time=NOW + timedelta(minutes=30))
    assert run(YES_BOOK, fair("0.60"), market=soon, params=params) == []
    pos = Position(market_slug="m1", net_qty=D("8"), avg_price=D("0.30"))
    (sig,) = run(NO_BOOK, fair("0.40"), market=soon, params=params, position=pos)
    assert sig.intent is Intent.SELL_LONG
    later = MarketInfo(slug="m1", start_time=NOW + timedelta(minutes=61))
    assert run(YES_BOOK, fair("0.60"), market=later, params=params) != []


def test_in_play_opening_only_with_trade_in_play():
    started = MarketInfo(slug="m1", start_time=NOW - timedelta(minutes=1))
    assert run(YES_BOOK, fair("0.60"), market=started) == []
    in_play = StrategyParams(min_edge=D("0.02"), trade_in_play=True)
    assert [s.intent for s in run(YES_BOOK, fair("0.60"), market=started, params=in_play)] == [
        Intent.BUY_LONG
    ]


def test_blackout_before_start_applies_even_when_trading_in_play():
    params = StrategyParams(min_edge=D("0.02"), trade_in_play=True, stop_before_start_minutes=10)
    start = NOW + timedelta(minutes=5)
    m = MarketInfo(slug="m1", start_time=start)
    assert not opening_allowed(m, params, NOW)
    assert opening_allowed(m, params, start)
    assert opening_allowed(m, params, start - timedelta(minutes=10, seconds=1))


def test_market_without_a_trustworthy_start_time_does_not_open_but_still_closes():
    # money-audit defect 8: the listing time was taken for the game's start and the pre-game
    # blackout never held; with no start at all, opening stops (fail closed)
    m = MarketInfo(slug="m1")
    assert run(YES_BOOK, fair("0.60"), market=m) == []
    long = Position(market_slug="m1", net_qty=D("5"), avg_price=D("0.30"))
    (sig,) = run(book(bids=[("0.50", "5")]), fair("0.40"), market=m, position=long)
    assert sig.intent is Intent.SELL_LONG


def test_off_tick_level_rounds_limit_toward_safety():
    m = MarketInfo(slug="m1", tick=D("0.01"), start_time=MARKET.start_time)
    b = book(offers=[("0.55", "10"), ("0.555", "5")])
    (sig,) = run(b, fair("0.60"), market=m)
    assert sig.limit_price == D("0.55") and sig.size_available == D("10")


def test_fixture_start_time_is_only_a_fallback():
    no_start = MarketInfo(slug="m1")
    started = NOW - timedelta(minutes=1)
    assert run(YES_BOOK, fair("0.60"), market=no_start) == []
    assert evaluate(YES_BOOK, fair("0.60"), no_start, None, PARAMS, NOW, book_trusted=True,
                    fair_trusted=True, fallback_start=NOW + timedelta(days=1)) != []
    assert evaluate(YES_BOOK, fair("0.60"), no_start, None, PARAMS, NOW, book_trusted=True,
                    fair_trusted=True, fallback_start=started) == []
    # the exchange's own start time wins over the fixture's
    assert evaluate(YES_BOOK, fair("0.60"), MARKET, None, PARAMS, NOW, book_trusted=True,
                    fair_trusted=True, fallback_start=started) != []


@settings(max_examples=300, deadline=None)
@given(q=st.integers(2, 98), best_bid=st.integers(1, 97), spread=st.integers(1, 5),
       sizes=st.lists(st.integers(1, 50), min_size=1, max_size=6),
       theta=st.sampled_from([D("0.0695"), D("0.03"), D("0.1"), D(0)]),
       min_edge=st.sampled_from([D("0.01"), D("0.02"), D("0.005")]))
def test_each_level_is_tested_with_the_public_edge_functions(q, best_bid, spread, sizes, theta,
                                                              min_edge):
    """The sweep writes the edge out per level; its signals must be what the public edge
    functions say: the limit the worst level that clears, the size every level up to it, the
    edge the limit's."""
    fq = D(q) / 100
    bids = [(D(best_bid - i) / 100, D(s)) for i, s in enumerate(sizes) if best_bid - i >= 1]
    offers = [(D(best_bid + spread + i) / 100, D(s)) for i, s in enumerate(sizes)
              if best_bid + spread + i <= 99]
    b = BookSnapshot("m1", tuple(PriceLevel(p, s) for p, s in bids),
                     tuple(PriceLevel(p, s) for p, s in offers))
    market = attrs.evolve(MARKET, fee_coefficient=theta)
    signals = run(b, fair(str(fq)), market=market, params=StrategyParams(min_edge=min_edge))
    expected = []
    for levels, fn, intent in ((bids, edge_buy_no, Intent.BUY_SHORT),
                               (offers, edge_buy_yes, Intent.BUY_LONG)):
        passing = []
        for p, s in levels:
            if fn(fq, p, theta) < min_edge:
                break
            passing.append((p, s))
        if passing:
            limit = passing[-1][0]
            expected.append((intent, limit, sum(s for _, s in passing), fn(fq, limit, theta)))
    assert sorted((s.intent.name, s.limit_price, s.size_available, s.edge) for s in signals) \
        == sorted((i.name, p, n, e) for i, p, n, e in expected)
