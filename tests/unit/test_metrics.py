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


def test_an_instance_labels_every_series_and_polybot_info_and_without_one_nothing_changes():
    from prometheus_client.parser import text_string_to_metric_families

    def samples(m: Metrics) -> list:
        m.up.set(1)
        m.orders.labels(outcome="filled").inc()
        m.decision_latency.observe(0.002)
        return [s for f in text_string_to_metric_families(m.render().decode()) for s in f.samples]

    labelled = samples(Metrics.create(instance="alice"))
    assert all(s.labels.get("bot_instance") == "alice" for s in labelled)
    assert ("polybot_orders_total", {"bot_instance": "alice", "outcome": "filled"}, 1.0) in [
        (s.name, s.labels, s.value) for s in labelled]
    plain = samples(Metrics.create())
    assert [s.labels for s in plain if s.name == "polybot_info"] == [{"bot_instance": ""}]
    others = [s for s in plain if s.name != "polybot_info"]
    assert others and not any("bot_instance" in s.labels for s in others)
    # the same series apart from the label
    assert {s.name for s in labelled} == {s.name for s in plain}
