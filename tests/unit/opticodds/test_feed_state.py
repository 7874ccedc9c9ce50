"""The odds feed's state rules, driven with hand-made events (no network: the client is unused)."""

from decimal import Decimal

import orjson
import pytest

from polybot.fairvalues import FairValues, FixtureInfo
from polybot.opticodds.feed import MarketTarget, OddsFeed, OddsFeedConfig
from polybot.opticodds.sse import SSEEvent
from polybot.opticodds.wire import Odd


def odd(book, sel, price, ts, fixture="F1"):
    return {"id": f"g:{book}:moneyline:{sel}", "fixture_id": fixture, "sportsbook_id": book,
            "sportsbook": book.title(), "market_id": "moneyline", "normalized_selection": sel,
            "price": price, "timestamp": ts, "grouping_key": "default", "is_main": True}


def event(kind, entry, odds):
    return SSEEvent(kind, orjson.dumps({"entry_id": entry, "type": kind, "data": odds}).decode(), entry)


@pytest.fixture
def feed():
    fv = FairValues()
    t = MarketTarget(slug="m1", fixture_id="F1", yes_selection="home", sport="soccer")
    f = OddsFeed(client=None, fair_values=fv, targets=[t],  # type: ignore[arg-type]
                 config=OddsFeedConfig(sportsbooks=("pinnacle", "betonline"), method="multiplicative"))
    return f, fv


def books_in(fv):
    return [q.book for q in fv.get("m1").quotes]


async def test_duplicate_entry_is_ignored(feed):
    f, fv = feed
    f._handle("soccer", event("odds", "1-0", [odd("pinnacle", "home", -150, 10), odd("pinnacle", "away", 130, 10)]))
    q = fv.get("m1").q
    f._handle("soccer", event("locked-odds", "2-0", [odd("pinnacle", "home", -150, 10)]))
    assert fv.get("m1") is None
    f._handle("soccer", event("odds", "1-0", [odd("pinnacle", "home", -150, 10), odd("pinnacle", "away", 130, 10)]))
    assert fv.get("m1") is None and f.statuses["soccer"].duplicates == 1
    f._handle("soccer", event("odds", "3-0", [odd("pinnacle", "home", -150, 11)]))
    assert fv.get("m1").q == q


async def test_older_price_and_stale_lock_do_not_override_newer_state(feed):
    f, fv = feed
    f._handle("soccer", event("odds", "1-0", [odd("pinnacle", "home", -200, 20), odd("pinnacle", "away", 170, 20)]))
    q = fv.get("m1").q
    f._handle("soccer", event("odds", "0-9", [odd("pinnacle", "home", -110, 15)]))  # out of order
    f._handle("soccer", event("locked-odds", "0-8", [odd("pinnacle", "home", -120, 12)]))  # stale lock
    assert fv.get("m1").q == q


async def test_three_way_market_uses_every_outcome_and_drops_books_missing_one(feed):
    f, fv = feed
    three = [odd("pinnacle", "home", 160, 1), odd("pinnacle", "away", 140, 1), odd("pinnacle", "draw", 230, 1)]
    partial = [odd("betonline", "home", 150, 1), odd("betonline", "away", 150, 1)]  # no draw quoted
    f._handle("soccer", event("odds", "1-0", three + partial))
    v = fv.get("m1")
    assert books_in(fv) == ["pinnacle"]
    q = [Decimal(100) / Decimal(260), Decimal(100) / Decimal(240), Decimal(100) / Decimal(330)]
    assert abs(v.q - q[0] / sum(q)) < Decimal("1e-20")
    assert v.quotes[0].raw_prices == (Decimal(160), Decimal(140), Decimal(230))  # YES, then away, draw


async def test_books_outside_the_configuration_and_other_markets_are_ignored(feed):
    f, fv = feed
    f._handle("soccer", event("odds", "1-0", [odd("draftkings", "home", -150, 1), odd("draftkings", "away", 130, 1)]))
    other = odd("pinnacle", "home", -150, 1) | {"market_id": "total_goals"}
    f._handle("soccer", event("odds", "2-0", [other]))
    assert fv.get("m1") is None


async def test_malformed_event_is_counted_and_skipped(feed):
    f, fv = feed
    f._handle("soccer", SSEEvent("odds", "{not json", "x"))
    f._handle("soccer", event("odds", "2-0", [odd("pinnacle", "home", "junk", 1)]))
    assert f.statuses["soccer"].malformed == 2
    f._handle("soccer", event("odds", "3-0", [odd("pinnacle", "home", -150, 1), odd("pinnacle", "away", 130, 1)]))
    assert fv.get("m1") is not None


async def test_fixture_status_event_updates_status_and_start(feed):
    f, fv = feed
    data = {"entry_id": "5-0", "data": {"fixture_id": "F1", "new_status": "live", "new_start_date": None}}
    f._handle("soccer", SSEEvent("fixture-status", orjson.dumps(data).decode(), "5-0"))
    assert fv.fixture("m1") == FixtureInfo("F1", None, "live")


def test_refresh_merge_keeps_what_the_stream_changed_during_the_request(feed):
    f, _ = feed
    held = {}
    a = Odd(id="a", fixture_id="F1", book="pinnacle", market_id="moneyline", normalized_selection="home",
            price=Decimal(-150), timestamp=10)
    b = Odd(id="b", fixture_id="F1", book="pinnacle", market_id="moneyline", normalized_selection="away",
            price=Decimal(130), timestamp=10)
    held = {"a": a, "b": b}
    f._merge(held, {}, start_seq=3, touched={"a": 5, "b": 1})  # REST (taken at seq 3) has neither
    assert list(held) == ["a"]  # b was not touched since: suspended; a was updated by the stream: kept


async def test_a_fixture_shared_by_two_markets_is_kept_until_its_last_market_goes(feed):
    f, fv = feed
    t1 = f.target_of("m1")
    t2 = MarketTarget(slug="m2", fixture_id="F1", yes_selection="away", sport="soccer")
    f.set_targets([t1, t2])
    f._handle("soccer", event("odds", "1-0", [odd("pinnacle", "home", -150, 1), odd("pinnacle", "away", 130, 1)]))
    assert fv.get("m1") is not None and fv.get("m2") is not None
    f.set_targets([t2])
    assert f.fixtures == {"F1"} and fv.get("m1") is None and fv.get("m2") is not None
    moved = MarketTarget(slug="m2", fixture_id="F2", yes_selection="away", sport="soccer")
    f.set_targets([moved])  # re-matched to another fixture: the old one's odds go
    assert f.fixtures == {"F2"} and set(f._touched) == {"F2"} and fv.get("m2") is None
    assert fv.fixture_id("m2") == "F2" and f.market_keys() == {"m2"}
    f.set_targets([])
    assert f.fixtures == frozenset() and f._touched == {} and f.market_keys() == frozenset()


async def test_a_late_odd_of_a_finished_fixture_does_not_price_it_again(feed):
    f, fv = feed
    f._handle("soccer", event("odds", "1-0", [odd("pinnacle", "home", -150, 1), odd("pinnacle", "away", 130, 1)]))
    data = {"entry_id": "5-0", "data": {"fixture_id": "F1", "new_status": "completed"}}
    f._handle("soccer", SSEEvent("fixture-status", orjson.dumps(data).decode(), "5-0"))
    assert fv.get("m1") is None and f._odds["F1"] == {}
    f._handle("soccer", event("odds", "6-0", [odd("pinnacle", "home", -140, 2), odd("pinnacle", "away", 120, 2)]))
    assert fv.get("m1") is None and f._odds["F1"] == {}
    assert fv.why_not("m1") == "fixture F1 is completed"
