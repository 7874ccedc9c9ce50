"""The FairValues store: single-writer state read by the signal engine."""

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from polybot.fairvalues import FairValues, FixtureInfo
from polybot.model import BookQuote, FairValue


def fv(slug="m1", q="0.6", t=100.0):
    return FairValue(market_slug=slug, q=D(q), method="shin",
                     quotes=(BookQuote("pinnacle", (D(-150), D(130)), D(q), D(1)),), computed_at=t,
                     fixture_id="F1")


def store():
    s = FairValues()
    s.track("m1", "F1")
    s.track("m2", "F1")
    return s


def test_value_is_not_usable_until_the_stream_is_trusted():
    s = store()
    s.set(fv())
    assert s.get("m1") is not None
    assert s.usable("m1") is None
    assert s.why_not("m1") == "odds stream not trusted (down or rebuilding)"
    s.set_trusted(["m1"], True, now=101.0)
    assert s.usable("m1").q == D("0.6")
    assert s.why_not("m1") is None


def test_losing_trust_hides_the_value_but_keeps_it_for_display():
    s = store()
    s.set(fv())
    s.set_trusted(["m1"], True, 1.0)
    s.set_trusted(["m1"], False, 2.0)
    assert s.usable("m1") is None and s.get("m1") is not None


def test_age_counts_from_computation():
    s = store()
    assert s.age("m1", 200.0) is None
    s.set(fv(t=100.0))
    assert s.age("m1", 130.5) == 30.5


def test_clear_records_why_and_notifies():
    s = store()
    seen = []
    s.add_listener(seen.append)
    s.set(fv())
    s.set_trusted(["m1"], True, 1.0)
    s.clear("m1", "1 book(s) quoting, 2 needed")
    assert s.get("m1") is None and s.usable("m1") is None
    assert s.why_not("m1") == "1 book(s) quoting, 2 needed"
    assert seen == ["m1", "m1", "m1"]
    s.clear("m1", "1 book(s) quoting, 2 needed")  # no change, no wake-up
    assert len(seen) == 3


def test_fixture_info_is_shared_by_the_markets_of_one_fixture_and_gives_the_phase():
    s = store()
    seen = []
    s.add_listener(seen.append)
    start = datetime(2026, 11, 27, tzinfo=UTC)
    s.set_fixture(FixtureInfo("F1", start, "live"))
    assert s.fixture("m2") == FixtureInfo("F1", start, "live")
    assert s.fixture("m1").phase == "live"
    assert sorted(seen) == ["m1", "m2"]
    assert FixtureInfo("F1", None, "unplayed").phase == "upcoming"
    assert FixtureInfo("F1", None, "completed").phase == "finished"
    assert FixtureInfo("F1", None, "weird").phase == "unknown"


def test_values_for_untracked_markets_or_outside_unit_interval_are_refused():
    s = store()
    s.set(fv(slug="nope"))  # dropped: a feed lagging behind a retirement must not crash
    assert s.get("nope") is None
    with pytest.raises(ValueError):
        s.set(fv(q="1"))


def test_a_forgotten_market_keeps_nothing_even_when_the_feed_still_writes_it():
    s = store()
    s.set(fv())
    s.forget("m1")
    s.set(fv())
    s.clear("m1", "fixture completed")
    s.set_trusted(["m1"], False, 1.0)
    assert s.market_keys() == {"m2"} and s.get("m1") is None


def test_a_failing_listener_does_not_break_the_writer():
    s = store()

    def bad(_slug):
        raise RuntimeError("listener bug")

    s.add_listener(bad)
    s.set(fv())
    assert s.get("m1") is not None


def test_untracked_market_says_it_is_not_matched():
    assert FairValues().why_not("x") == "market not matched to an OpticOdds fixture"


def test_snapshot_is_json_friendly():
    s = store()
    s.set(fv(t=10.0))
    snap = s.snapshot(now=12.0)
    assert snap["m1"]["q"] == "0.6" and snap["m1"]["books"] == ["pinnacle"]
    assert snap["m1"]["age_seconds"] == 2.0 and snap["m2"]["q"] is None
