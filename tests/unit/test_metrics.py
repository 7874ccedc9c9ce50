"""Metric label sets follow the universe: a retired market's series go."""

from polybot.metrics import Metrics


def test_a_retired_markets_series_are_removed_and_the_others_kept():
    m = Metrics.create()
    m.fills.labels(market="gone").inc()
    m.signals.labels(market="gone").inc(3)
    m.book_age.labels(market="gone").set(1.5)
    m.fair_value_age.labels(market="kept").set(2.0)
    assert m.market_labels() == {"gone", "kept"}
    m.forget_market("gone")
    m.forget_market("never-labelled")  # nothing to remove: no error
    assert m.market_labels() == {"kept"}
    text = m.render().decode()
    assert 'market="gone"' not in text and 'market="kept"' in text


def test_markets_are_counted_by_phase_and_adds_and_retires_are_counters():
    m = Metrics.create()
    m.markets.labels(phase="pre-game").set(3)
    m.markets_added.inc(5)
    m.markets_retired.inc(2)
    text = m.render().decode()
    assert 'polybot_markets{phase="pre-game"} 3.0' in text
    assert "polybot_markets_added_total 5.0" in text
    assert "polybot_markets_retired_total 2.0" in text
