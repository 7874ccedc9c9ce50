"""The Grafana dashboard (grafana/polybot.json) and the bot's metrics agree, both ways: every
series a panel queries is one `Metrics.create()` exposes, and every limit the bot publishes has a
panel drawing its use against its cap."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from polybot.exposure import Exposure
from polybot.metrics import Metrics
from polybot.risk import RiskLimits
from polybot.status import publish_limits
from polybot.trading_state import HaltLimits, TradingStateMachine

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "polybot.json"

# What a query may name of each family: counters are scraped with `_total`, histograms as
# `_bucket`/`_count`/`_sum` (a bare counter or histogram name matches no series in Prometheus).
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
# A cap that is a gauge of its own (not a `cap` label of polybot_risk_cap_usd), with its use.
USE_OF_CAP = {"polybot_risk_cap_positions": "polybot_positions_held"}

_SELECTOR = re.compile(r"\b(polybot_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())


def selectors(panel: dict[str, Any]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """(metric name, its `label="value"` matchers) of every series the panel's queries select."""
    out = set()
    for target in panel.get("targets", ()):
        for name, braces in _SELECTOR.findall(target.get("expr", "")):
            equal = {(k, v) for k, op, v in _MATCHER.findall(braces) if op == "="}
            out.add((name, frozenset(equal)))
    return out


def exposed_names() -> set[str]:
    return {family.name + suffix for family in Metrics.create().registry.collect()
            for suffix in SUFFIXES[family.type]}


def published_caps() -> dict[str, tuple[tuple[str, str | None], tuple[str, str | None]]]:
    """Every cap the bot publishes (a begun trading state: the drawdown cap needs a high-water
    mark), as cap -> ((use metric, scope), (cap metric, cap label))."""
    limits = RiskLimits()
    trading = TradingStateMachine(HaltLimits.of(limits))
    trading.begin(D(1000), datetime(2026, 11, 26, 15, 0, tzinfo=UTC))
    m = Metrics.create()
    publish_limits(m, Exposure(), trading, limits)
    out: dict[str, tuple[tuple[str, str | None], tuple[str, str | None]]] = {}
    for family in m.registry.collect():
        if not family.name.startswith("polybot_risk_cap"):
            continue
        for sample in family.samples:
            if "cap" in sample.labels:
                cap = sample.labels["cap"]
                out[cap] = (("polybot_usd_at_risk", cap), (family.name, cap))
            else:
                assert family.name in USE_OF_CAP, f"{family.name}: which metric is its use?"
                out[family.name] = ((USE_OF_CAP[family.name], None), (family.name, None))
    return out


def _draws(panel: dict[str, Any], metric: str, label: str, value: str | None) -> bool:
    return any(name == metric and (value is None or (label, value) in matchers)
               for name, matchers in selectors(panel))


def unknown_metrics(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Panel title -> the metric names it queries that the bot does not expose."""
    exposed = exposed_names()
    out = {}
    for panel in panels(dashboard):
        unknown = {name for name, _ in selectors(panel)} - exposed
        if unknown:
            out[panel["title"]] = unknown
    return out


def caps_without_a_panel(dashboard: dict[str, Any]) -> set[str]:
    """The caps no panel draws against their use."""
    missing = set()
    for cap, ((use, scope), (limit, label)) in published_caps().items():
        if not any(_draws(p, use, "scope", scope) and _draws(p, limit, "cap", label)
                   for p in panels(dashboard)):
            missing.add(cap)
    return missing


def test_every_metric_a_panel_queries_is_one_the_bot_exposes():
    dashboard = load()
    assert sum(1 for p in panels(dashboard) if p.get("targets")) >= 15
    assert unknown_metrics(dashboard) == {}


def test_every_cap_the_bot_publishes_has_a_panel_of_its_use_against_it():
    caps = published_caps()
    assert set(caps) == {"market", "event", "portfolio", "daily_loss", "drawdown",
                         "polybot_risk_cap_positions"}
    assert caps_without_a_panel(load()) == set()


def test_the_checks_fail_on_a_removed_panel_or_a_renamed_metric():
    dashboard = load()
    without = copy.deepcopy(dashboard)
    without["panels"] = [p for p in without["panels"] if not p["title"].startswith("Drawdown")]
    assert caps_without_a_panel(without) == {"drawdown"}
    renamed = json.loads(json.dumps(dashboard).replace("polybot_restarts_total",
                                                       "polybot_restarts"))
    assert unknown_metrics(renamed) == {"Restarts": {"polybot_restarts"}}


def test_every_query_filters_on_the_instance_and_account_variables_of_a_prometheus_datasource():
    """`instance` is the scrape target Prometheus adds; `bot_instance` the account (INSTANCE) the
    bot labels its own series with, so several accounts behind one Prometheus stay apart."""
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("instance", "bot_instance"):
        assert variables[var]["includeAll"] and variables[var]["allValue"] == ".*"
    assert "polybot_info" in variables["bot_instance"]["definition"]
    for panel in panels(dashboard):
        for target in panel.get("targets", ()):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for name, braces in _SELECTOR.findall(target["expr"]):
                assert 'instance=~"$instance"' in braces, (panel["title"], name)
                assert 'bot_instance=~"$bot_instance"' in braces, (panel["title"], name)
