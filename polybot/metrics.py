"""Prometheus metrics of one polybot process, on a registry of its own.

A private `CollectorRegistry` (not prometheus-client's global one) keeps tests independent and
lets every component be handed the same `Metrics` value by the composition root. All names start
with ``polybot_``; counters are declared without the ``_total`` suffix, which prometheus-client
adds on exposition (``polybot_restarts`` is scraped as ``polybot_restarts_total``).

Money gauges take floats: metrics are observability, not accounting, so convert at this boundary
(``metrics.equity_usd.set(float(ledger.equity))``) and never read a value back for a decision.

Several bots on one host (INSTANCE, issue 17): `Metrics.create(instance="alice")` puts the
constant label ``bot_instance="alice"`` on every series at exposition, and ``polybot_info`` (always
1) carries it too. Both, because the two kinds of reader differ: Prometheus/Grafana can join an
info metric (``label_values(polybot_info, bot_instance)`` fills a dashboard's account picker), but
CloudWatch cannot join, and its per-account alarms need the dimension on the very metric they read
(``polybot_up``, ``polybot_daily_pnl_usd``). The label comes from the bot's own configuration, not
from the scraper's target list, so a port mixed up in a scrape config cannot put one account's
P&L under another's name. Not ``instance``: Prometheus gives that label to every target
(host:port) and would rename ours ``exported_instance``. Without INSTANCE the series are exactly
as before (no label), so existing dashboards and alarms keep working.
"""

from __future__ import annotations

from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

INSTANCE_LABEL = "bot_instance"

# Frame received -> order handed to the executor: sub-millisecond when hot, a second is a problem.
DECISION_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Every USD limit the bot enforces, each the `scope` of its use in `polybot_usd_at_risk` and the
# `cap` of its limit in `polybot_risk_cap_usd` (one name for both, so a panel pairs them):
# "market" and "event" are the largest market's and event's USD at risk (the cap is the same for
# each, so the largest is the distance to the one that binds first), "portfolio" the sum,
# "daily_loss" and "drawdown" what the two halts measure on the halt equity. The positions count
# is not USD: `polybot_positions_held` against `polybot_risk_cap_positions`.
RISK_SCOPES = ("market", "event", "portfolio", "daily_loss", "drawdown")


@attrs.frozen
class Metrics:
    """Every metric object of the process; build with `Metrics.create()`.

    Labels: ``stream`` (e.g. "markets", "private", "odds"), ``market`` (market slug),
    ``outcome`` (orders: e.g. "accepted", "filled", "cancelled", "rejected", "unknown"),
    ``reason`` (risk rejections), ``channel`` (alerts: "discord", "telegram"), ``scope`` and
    ``cap`` (the USD limits, `RISK_SCOPES`).
    """

    registry: CollectorRegistry
    # feeds
    frames: Counter  # polybot_stream_frames_total{stream}
    bytes_received: Counter  # polybot_stream_bytes_total{stream}
    reconnects: Counter  # polybot_stream_reconnects_total{stream}
    book_age: Gauge  # polybot_book_age_seconds{market}
    fair_value_age: Gauge  # polybot_fair_value_age_seconds{market}
    # decisions and orders
    signals: Counter  # polybot_signals_total{market}
    orders: Counter  # polybot_orders_total{outcome}
    fills: Counter  # polybot_fills_total{market}
    rejections: Counter  # polybot_rejections_total{reason}
    decision_latency: Histogram  # polybot_decision_latency_seconds
    # money and risk
    equity_usd: Gauge  # polybot_equity_usd
    daily_pnl_usd: Gauge  # polybot_daily_pnl_usd
    realized_pnl_usd: Gauge  # polybot_realized_pnl_usd
    usd_at_risk: Gauge  # polybot_usd_at_risk{scope}: each USD limit's use (RISK_SCOPES)
    risk_cap_usd: Gauge  # polybot_risk_cap_usd{cap}: each USD limit (RISK_SCOPES)
    positions_held: Gauge  # polybot_positions_held: markets counted by RISK_MAX_POSITIONS
    risk_cap_positions: Gauge  # polybot_risk_cap_positions: RISK_MAX_POSITIONS
    daily_loss_limit_usd: Gauge  # polybot_daily_loss_limit_usd
    trading_halted: Gauge  # polybot_trading_halted (0/1)
    # the universe
    markets: Gauge  # polybot_markets{phase}: markets in the universe by phase
    markets_added: Counter  # polybot_markets_added_total
    markets_retired: Counter  # polybot_markets_retired_total
    # process
    up: Gauge  # polybot_up: 1 while the supervised group runs, 0 while starting/restarting
    restarts: Counter  # polybot_restarts_total: group restarts after a crash
    alerts: Counter  # polybot_alerts_total{channel,outcome}: sent / failed / dropped / coalesced
    info: Gauge  # polybot_info{bot_instance}: always 1; which bot this is (INSTANCE)
    instance: str = ""  # INSTANCE: the constant bot_instance label of every series ("" = none)
    # the labelled children the trading path increments, looked up once (a `labels` call is a
    # lock and a tuple build each time); a market's go with its label sets in `forget_market`
    _children: dict[tuple[str, str], Any] = attrs.field(factory=dict, init=False, repr=False)

    @classmethod
    def create(cls, instance: str = "") -> Metrics:
        r = CollectorRegistry(auto_describe=True)
        info = Gauge("polybot_info", "Always 1; bot_instance names this bot (INSTANCE, empty for the single bot).", [INSTANCE_LABEL], registry=r)  # fmt: skip
        info.labels(instance).set(1)
        usd_at_risk = Gauge("polybot_usd_at_risk", "USD at risk against each limit (its scope).", ["scope"], registry=r)
        for scope in RISK_SCOPES:  # exposed from the start, 0 until the first housekeeping pass
            usd_at_risk.labels(scope=scope)
        return cls(
            registry=r,
            frames=Counter("polybot_stream_frames", "Frames received per stream.", ["stream"], registry=r),
            bytes_received=Counter("polybot_stream_bytes", "Bytes received per stream.", ["stream"], registry=r),
            reconnects=Counter("polybot_stream_reconnects", "Reconnect attempts per stream.", ["stream"], registry=r),
            book_age=Gauge("polybot_book_age_seconds", "Seconds since the market's book last changed or was confirmed.", ["market"], registry=r),
            fair_value_age=Gauge("polybot_fair_value_age_seconds", "Seconds since the market's fair value was last confirmed.", ["market"], registry=r),
            signals=Counter("polybot_signals", "Signals emitted by the signal engine.", ["market"], registry=r),
            orders=Counter("polybot_orders", "Orders by outcome.", ["outcome"], registry=r),
            fills=Counter("polybot_fills", "Fills booked by the ledger.", ["market"], registry=r),
            rejections=Counter("polybot_rejections", "Signals the risk gate rejected, by reason.", ["reason"], registry=r),
            decision_latency=Histogram(
                "polybot_decision_latency_seconds",
                "The event that asked for the decision (a book frame, a changed fair value) to the order handed to the executor.",
                buckets=DECISION_LATENCY_BUCKETS,
                registry=r,
            ),
            equity_usd=Gauge("polybot_equity_usd", "Account equity in USD.", registry=r),
            daily_pnl_usd=Gauge("polybot_daily_pnl_usd", "P&L of the current trading day in USD.", registry=r),
            realized_pnl_usd=Gauge("polybot_realized_pnl_usd", "Realized P&L in USD.", registry=r),
            usd_at_risk=usd_at_risk,
            risk_cap_usd=Gauge("polybot_risk_cap_usd", "Each USD limit, the cap of polybot_usd_at_risk of the same scope.", ["cap"], registry=r),
            positions_held=Gauge("polybot_positions_held", "Markets held (a position or an open opening order), as RISK_MAX_POSITIONS counts them.", registry=r),
            risk_cap_positions=Gauge("polybot_risk_cap_positions", "RISK_MAX_POSITIONS: the most markets held at once.", registry=r),
            daily_loss_limit_usd=Gauge("polybot_daily_loss_limit_usd", "Configured daily loss limit in USD.", registry=r),
            trading_halted=Gauge("polybot_trading_halted", "1 while trading is halted, else 0.", registry=r),
            markets=Gauge("polybot_markets", "Markets in the universe by phase.", ["phase"], registry=r),
            markets_added=Counter("polybot_markets_added", "Markets added to the universe.", registry=r),
            markets_retired=Counter("polybot_markets_retired", "Markets retired from the universe.", registry=r),
            up=Gauge("polybot_up", "1 while the supervised task group is running.", registry=r),
            restarts=Counter("polybot_restarts", "Restarts of the supervised task group after a crash.", registry=r),
            alerts=Counter("polybot_alerts", "Alerts by channel and outcome.", ["channel", "outcome"], registry=r),
            info=info,
            instance=instance,
        )  # fmt: skip

    def per_market(self) -> tuple[Counter | Gauge, ...]:
        """The metrics labelled by market (their label sets follow the universe)."""
        return (self.book_age, self.fair_value_age, self.signals, self.fills)

    def count_signals(self, slug: str, n: int) -> None:
        """`signals{market=slug}` += n."""
        child = self._children.get(("signals", slug))
        if child is None:
            child = self._children[("signals", slug)] = self.signals.labels(market=slug)
        child.inc(n)

    def count_order(self, outcome: str) -> None:
        """`orders{outcome}` += 1."""
        child = self._children.get(("orders", outcome))
        if child is None:
            child = self._children[("orders", outcome)] = self.orders.labels(outcome=outcome)
        child.inc()

    def set_limit(self, scope: str, used: float, cap: float | None) -> None:
        """One USD limit's use and cap (a cap not known yet, None, is left unset: absent, not 0)."""
        self.usd_at_risk.labels(scope=scope).set(used)
        if cap is not None:
            self.risk_cap_usd.labels(cap=scope).set(cap)

    def forget_market(self, slug: str) -> None:
        """A retired market's label sets go (a series per retired market would grow for ever)."""
        self._children.pop(("signals", slug), None)
        for metric in self.per_market():
            try:
                metric.remove(slug)
            except KeyError:  # never labelled for this market
                pass

    def market_labels(self) -> set[str]:
        """Every market some metric holds a label set for."""
        out: set[str] = set()
        for metric in self.per_market():
            out |= {labels[0] for labels in metric._metrics}  # prometheus_client keeps them here
        return out

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format (with ``bot_instance`` on every
        series when INSTANCE is set)."""
        if not self.instance:
            return generate_latest(self.registry)
        return generate_latest(_Labelled(self.registry, {INSTANCE_LABEL: self.instance}))  # type: ignore[arg-type]


class _Labelled:
    """A registry seen with constant labels added to every sample (prometheus-client has no
    constant labels of its own); only exposition reads it, so the trading path pays nothing."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self.registry = registry
        self.labels = labels

    def collect(self) -> Any:
        for family in self.registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={**s.labels, **self.labels}) for s in family.samples]
            yield out
