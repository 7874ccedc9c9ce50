"""Metric label sets follow the universe; every limit is published next to its use."""

from datetime import UTC, datetime
from decimal import Decimal as D

from prometheus_client.parser import text_string_to_metric_families

from polybot.exposure import exposure_of
from polybot.metrics import RISK_SCOPES, Metrics
from polybot.model import Position
from polybot.risk import RiskLimits
from polybot.status import publish_limits
from polybot.trading_state import HaltLimits, TradingStateMachine

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


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


def samples(m: Metrics) -> dict[tuple[str, str], float]:
    """(name, the one label value or "") -> value, from the rendered text."""
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, next(iter(s.labels.values()), ""))] = s.value
    return out


def test_every_limit_is_published_as_its_use_next_to_its_cap():
    limits = RiskLimits(max_position_per_market=D(50), max_correlated_exposure=D(125),
                        max_portfolio_exposure=D(250), max_daily_loss=D(25),
                        max_drawdown_pct=D("0.10"), max_positions=7)
    exposure = exposure_of(
        {"a": Position("a", D(100), D("0.30")),  # 30.00 at risk, event ev-1
         "b": Position("b", D(-40), D("0.60")),  # 16.00 (40 NO at 0.40), event ev-1
         "c": Position("c", D(50), D("0.70"))},  # 35.00, event ev-2: the largest market
        [], {"a": "ev-1", "b": "ev-1", "c": "ev-2"})
    trading = TradingStateMachine(HaltLimits.of(limits))
    m = Metrics.create()
    publish_limits(m, exposure, trading, limits)
    got = samples(m)
    assert ("polybot_risk_cap_usd", "drawdown") not in got  # no high-water mark yet: no cap
    trading.begin(D(1000), NOW)
    trading.observe(D(990), NOW)  # 10 down on the day and from the high
    publish_limits(m, exposure, trading, limits)
    got = samples(m)
    use = {scope: got[("polybot_usd_at_risk", scope)] for scope in RISK_SCOPES}
    cap = {scope: got[("polybot_risk_cap_usd", scope)] for scope in RISK_SCOPES}
    assert use == {"market": 35.0, "event": 46.0, "portfolio": 81.0, "daily_loss": 10.0,
                   "drawdown": 10.0}
    assert cap == {"market": 50.0, "event": 125.0, "portfolio": 250.0, "daily_loss": 25.0,
                   "drawdown": 100.0}
    assert got[("polybot_positions_held", "")] == 3
    assert got[("polybot_risk_cap_positions", "")] == 7


def test_an_instance_labels_every_series_and_polybot_info_and_without_one_nothing_changes():
    def all_samples(m: Metrics) -> list:
        m.up.set(1)
        m.orders.labels(outcome="filled").inc()
        m.decision_latency.observe(0.002)
        return [s for f in text_string_to_metric_families(m.render().decode()) for s in f.samples]

    labelled = all_samples(Metrics.create(instance="alice"))
    assert all(s.labels.get("bot_instance") == "alice" for s in labelled)
    assert ("polybot_orders_total", {"bot_instance": "alice", "outcome": "filled"}, 1.0) in [
        (s.name, s.labels, s.value) for s in labelled]
    plain = all_samples(Metrics.create())
    assert [s.labels for s in plain if s.name == "polybot_info"] == [{"bot_instance": ""}]
    others = [s for s in plain if s.name != "polybot_info"]
    assert others and not any("bot_instance" in s.labels for s in others)
    # the same series apart from the label
    assert {s.name for s in labelled} == {s.name for s in plain}
