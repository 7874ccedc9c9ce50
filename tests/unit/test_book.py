from decimal import Decimal as D

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polybot.book import BookStore, depth_walk
from polybot.model import BookSnapshot, MarketState, PriceLevel, Side


def lv(price: str, qty: str) -> PriceLevel:
    return PriceLevel(D(price), D(qty))


def book(slug="m1", bids=(), offers=(), state=MarketState.OPEN, received_at=0.0) -> BookSnapshot:
    return BookSnapshot(
        market_slug=slug,
        bids=tuple(lv(*b) for b in bids),
        offers=tuple(lv(*o) for o in offers),
        state=state,
        received_at=received_at,
    )


BOOK = book(
    bids=[("0.48", "5"), ("0.47", "10"), ("0.45", "20")],
    offers=[("0.50", "10"), ("0.52", "10"), ("0.55", "10")],
)


def test_depth_walk_buy_lifts_offers_up_to_limit_with_vwap():
    w = depth_walk(BOOK, Side.BUY, D("0.52"))
    assert w.qty == D("20")
    assert w.vwap == D("0.51")
    assert w.worst_price == D("0.52")
    assert w.levels == 2


def test_depth_walk_sell_hits_bids_down_to_limit():
    w = depth_walk(BOOK, Side.SELL, D("0.47"))
    assert w.qty == D("15")
    assert w.vwap == (D("5") * D("0.48") + D("10") * D("0.47")) / D("15")
    assert w.worst_price == D("0.47")


def test_depth_walk_caps_at_max_qty():
    w = depth_walk(BOOK, Side.BUY, D("0.99"), max_qty=D("12"))
    assert w.qty == D("12")
    assert w.vwap == (D("10") * D("0.50") + D("2") * D("0.52")) / D("12")


def test_depth_walk_nothing_inside_limit_is_empty():
    w = depth_walk(BOOK, Side.BUY, D("0.49"))
    assert w.qty == 0 and w.vwap is None and w.worst_price is None


def test_store_keeps_latest_full_book_and_best_prices():
    s = BookStore()
    s.update(BOOK)
    s.update(book(bids=[("0.40", "1")], offers=[("0.60", "2")]))
    assert s.best_bid("m1") == lv("0.40", "1")
    assert s.best_offer("m1") == lv("0.60", "2")
    assert s.walk("m1", Side.BUY, D("0.99")).qty == D("2")  # replaced, not merged
    assert s.is_trusted("m1") and s.is_tradable("m1")


def test_store_sorts_levels_best_first_and_drops_empty_ones():
    s = BookStore()
    s.update(book(bids=[("0.40", "1"), ("0.45", "0"), ("0.42", "3")], offers=[("0.60", "2"), ("0.55", "1")]))
    b = s.get("m1")
    assert [x.price for x in b.bids] == [D("0.42"), D("0.40")]
    assert [x.price for x in b.offers] == [D("0.55"), D("0.60")]


def test_unknown_market_is_untrusted_and_has_no_depth():
    s = BookStore()
    assert not s.is_trusted("nope") and not s.is_tradable("nope")
    assert s.walk("nope", Side.BUY, D("0.99")).qty == 0


def test_only_open_market_is_tradable():
    s = BookStore()
    s.update(book(bids=[("0.40", "1")], state=MarketState.SUSPENDED))
    assert s.is_trusted("m1") and not s.is_tradable("m1")
    s.set_state("m1", MarketState.OPEN)
    assert s.is_tradable("m1")


def test_continuity_loss_untrusts_until_next_full_book():
    s = BookStore()
    s.update(BOOK)
    s.update(book(slug="m2", bids=[("0.30", "1")]))
    s.mark_untrusted("m1")
    assert not s.is_trusted("m1") and not s.is_tradable("m1")
    assert s.is_trusted("m2")
    s.update(BOOK)
    assert s.is_trusted("m1")


def test_continuity_loss_of_all_markets():
    s = BookStore()
    s.update(BOOK)
    s.update(book(slug="m2", bids=[("0.30", "1")]))
    s.mark_untrusted()
    assert not s.is_trusted("m1") and not s.is_trusted("m2")
    s.update(book(slug="m2", bids=[("0.31", "1")]))
    assert s.is_trusted("m2") and not s.is_trusted("m1")


def test_book_received_before_the_loss_does_not_restore_trust():
    s = BookStore()
    s.update(book(bids=[("0.40", "1")], received_at=1.0))
    s.mark_untrusted("m1", at=5.0)
    s.update(book(bids=[("0.10", "1")], received_at=4.0))  # queued before the loss
    assert not s.is_trusted("m1")
    s.update(book(bids=[("0.41", "1")], received_at=6.0))
    assert s.is_trusted("m1")


def test_loss_of_all_at_a_time_also_covers_markets_seen_later():
    s = BookStore()
    s.mark_untrusted(at=5.0)
    s.update(book(slug="new", bids=[("0.40", "1")], received_at=4.0))
    assert not s.is_trusted("new")
    s.update(book(slug="new", bids=[("0.40", "1")], received_at=5.5))
    assert s.is_trusted("new")


def test_walk_rejects_unknown_side():
    with pytest.raises(ValueError):
        depth_walk(BOOK, Side.UNKNOWN, D("0.5"))


# the store keeps what sorting best first and dropping empty levels gives, whatever the order
# it came in; a book already so (every exchange frame) is kept as it is, not copied
_LEVELS = st.lists(st.tuples(st.sampled_from(["0.40", "0.41", "0.42", "0.5", "0.50"]),
                             st.sampled_from(["0", "1", "2.5", "-1"])), max_size=5)


@settings(max_examples=150, deadline=None)
@given(_LEVELS, _LEVELS)
def test_store_holds_each_side_sorted_best_first_without_empty_levels(bids, offers):
    s = BookStore()
    sent = book(bids=bids, offers=offers)
    s.update(sent)
    kept = s.get("m1")
    want_bids = tuple(sorted((x for x in sent.bids if x.qty > 0), key=lambda x: x.price,
                             reverse=True))
    want_offers = tuple(sorted((x for x in sent.offers if x.qty > 0), key=lambda x: x.price))
    assert (kept.bids, kept.offers) == (want_bids, want_offers)
    assert kept == attrs.evolve(sent, bids=want_bids, offers=want_offers)
    if (want_bids, want_offers) == (sent.bids, sent.offers):
        assert kept is sent


def test_an_exchange_ordered_book_is_stored_without_a_copy():
    s = BookStore()
    sent = book(bids=[("0.42", "3"), ("0.42", "1"), ("0.40", "1")], offers=[("0.55", "1")])
    s.update(sent)
    assert s.get("m1") is sent
