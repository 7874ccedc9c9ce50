"""The health app served by a real hypercorn on loopback, queried with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any

import attrs
import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from polybot.config import Secret
from polybot.health import (
    HealthApp,
    HealthSources,
    MarketRow,
    StatusReport,
    secret_values,
    serve_health,
)
from polybot.metrics import Metrics
from polybot.supervisor import ChildSpec, ChildState, Phase, Progress, Supervisor, SupervisorState

API_KEY = "sk-live-0123456789abcdef0123456789abcdef"
WEBHOOK = "https://discord.example/api/webhooks/42/hook-token-abcdefghijklmnop"


def child(name: str, **kw: Any) -> ChildState:
    fields: dict[str, Any] = dict(
        name=name,
        started=True,
        progress_deadline=30.0,
        last_progress_age=0.5,
        hung=False,
        degraded=None,
        reconnect_attempts=0,
    )
    return ChildState(**(fields | kw))


def running_state(*children: ChildState, **kw: Any) -> SupervisorState:
    fields: dict[str, Any] = dict(
        phase=Phase.RUNNING,
        reason=None,
        attempt=0,
        next_start_in=None,
        restarts=0,
        uptime=12.0,
        children=children
        or (child("markets"), child("odds"), child("health", progress_deadline=None)),
        recent_errors=(),
    )
    return SupervisorState(**(fields | kw))


@attrs.define
class World:
    """What the composition root would expose; tests change it between requests."""

    state: SupervisorState = attrs.Factory(running_state)
    not_ready: str | None = None
    extra_degraded: tuple[str, ...] = ()
    metrics: Metrics = attrs.Factory(Metrics.create)
    status_broken: bool = False

    def status(self) -> StatusReport:
        if self.status_broken:
            raise RuntimeError("bug in the status builder")
        return StatusReport(
            mode="paper",
            trading_state="ACTIVE",
            trading_reason=None,
            markets=(
                MarketRow(
                    slug="nba-bos-nyk-2026-11-26",
                    bid=Decimal("0.54"),
                    ask=Decimal("0.56"),
                    fair=Decimal("0.6012"),
                    edge=Decimal("0.0312"),
                    position=Decimal("25"),
                    state="trusted",
                ),
            ),
            pnl={"equity": Decimal("1012.50"), "daily": Decimal("12.50")},
            recent_errors=(f"POST failed for key {API_KEY}",),
            extra={"api_key": "plain-string-under-a-secret-key", "alerts": Secret(WEBHOOK)},
        )


@pytest.fixture
async def served(nursery) -> AsyncIterator[tuple[World, httpx.AsyncClient]]:
    world = World()
    app = HealthApp(
        HealthSources(
            supervisor=lambda: world.state,
            not_ready_reason=lambda: world.not_ready,
            status=world.status,
            metrics=world.metrics,
            degraded=lambda: world.extra_degraded,
        ),
        secrets=[API_KEY, WEBHOOK],
    )
    port = await nursery.start(partial(serve_health, app, "127.0.0.1", 0))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield world, client


async def test_health_is_200_ok_while_every_child_runs(served):
    _world, client = served
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() | {"uptime": None} == {
        "status": "ok",
        "phase": "running",
        "reasons": [],
        "restarts": 0,
        "uptime": None,
    }
    assert r.headers["cache-control"] == "no-store"


async def test_health_is_200_degraded_with_reasons_while_a_dependency_is_unreachable(served):
    world, client = served
    world.state = running_state(
        child(
            "markets",
            degraded="reconnecting, attempt 4: ConnectError: refused",
            reconnect_attempts=4,
        ),
        child("odds"),
    )
    world.extra_degraded = ("exchange in maintenance",)
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert r.json()["reasons"] == [
        "markets: reconnecting, attempt 4: ConnectError: refused",
        "exchange in maintenance",
    ]


async def test_health_is_200_degraded_while_the_group_is_starting(served):
    world, client = served
    world.state = running_state(
        child("markets"), child("odds", started=False), phase=Phase.STARTING
    )
    r = await client.get("/health")
    assert (r.status_code, r.json()["status"]) == (200, "degraded")
    assert r.json()["reasons"] == ["starting: waiting for odds"]


async def test_health_is_503_when_a_child_is_hung(served):
    world, client = served
    world.state = running_state(child("markets"), child("book", hung=True, last_progress_age=42.0))
    r = await client.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"
    assert r.json()["reasons"] == ["book hung: no progress for 42.0s (deadline 30s)"]


async def test_health_is_503_while_the_group_is_restarting(served):
    world, client = served
    world.state = running_state(
        phase=Phase.RESTARTING,
        reason="odds: RuntimeError: boom",
        attempt=2,
        next_start_in=3.25,
        restarts=2,
    )
    r = await client.get("/health")
    assert r.status_code == 503
    assert r.json()["reasons"] == [
        "group restarting after odds: RuntimeError: boom; next start in 3.2s"
    ]


async def test_ready_is_200_only_when_trading_is_allowed(served):
    world, client = served
    r = await client.get("/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})
    world.not_ready = "reconciling open orders with the exchange"
    r = await client.get("/ready")
    assert (r.status_code, r.json()) == (
        503,
        {"ready": False, "reason": "reconciling open orders with the exchange"},
    )


async def test_ready_is_503_while_the_group_is_not_running_even_if_trading_would_be_allowed(served):
    world, client = served
    world.state = running_state(phase=Phase.STARTING)
    r = await client.get("/ready")
    assert (r.status_code, r.json()["reason"]) == (503, "supervised group starting")
    world.state = running_state(child("book", hung=True, last_progress_age=99.0))
    r = await client.get("/ready")
    assert (r.status_code, r.json()["reason"]) == (503, "hung: book")


async def test_metrics_parse_as_prometheus_text_with_every_metric(served):
    world, client = served
    m = world.metrics
    m.frames.labels(stream="markets").inc(3)
    m.bytes_received.labels(stream="markets").inc(2048)
    m.book_age.labels(market="nba-x").set(0.4)
    m.fair_value_age.labels(market="nba-x").set(2.0)
    m.signals.labels(market="nba-x").inc()
    m.orders.labels(outcome="filled").inc()
    m.fills.labels(market="nba-x").inc()
    m.rejections.labels(reason="max_position").inc()
    m.decision_latency.observe(0.003)
    m.equity_usd.set(1012.5)
    m.daily_pnl_usd.set(12.5)
    m.realized_pnl_usd.set(4.0)
    m.set_limit("portfolio", 55.0, 250.0)
    m.positions_held.set(2)
    m.risk_cap_positions.set(10)
    m.daily_loss_limit_usd.set(100)
    m.trading_halted.set(0)
    m.up.set(1)
    m.restarts.inc()
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    for expected in [
        "polybot_stream_frames_total",
        "polybot_stream_bytes_total",
        "polybot_book_age_seconds",
        "polybot_fair_value_age_seconds",
        "polybot_signals_total",
        "polybot_orders_total",
        "polybot_fills_total",
        "polybot_rejections_total",
        "polybot_decision_latency_seconds_bucket",
        "polybot_decision_latency_seconds_count",
        "polybot_equity_usd",
        "polybot_daily_pnl_usd",
        "polybot_realized_pnl_usd",
        "polybot_usd_at_risk",
        "polybot_risk_cap_usd",
        "polybot_positions_held",
        "polybot_risk_cap_positions",
        "polybot_daily_loss_limit_usd",
        "polybot_trading_halted",
        "polybot_up",
        "polybot_restarts_total",
    ]:
        assert expected in names, expected
    assert samples[("polybot_stream_frames_total", (("stream", "markets"),))] == 3
    assert samples[("polybot_restarts_total", ())] == 1
    assert samples[("polybot_usd_at_risk", (("scope", "portfolio"),))] == 55
    assert samples[("polybot_usd_at_risk", (("scope", "market"),))] == 0  # exposed before set
    assert samples[("polybot_risk_cap_usd", (("cap", "portfolio"),))] == 250
    assert samples[("polybot_decision_latency_seconds_bucket", (("le", "0.005"),))] == 1


async def test_status_json_has_mode_trading_state_markets_pnl_errors_and_supervisor(served):
    world, client = served
    world.state = running_state(recent_errors=("odds: RuntimeError: boom",), restarts=1)
    r = await client.get("/status")
    assert r.status_code == 200
    body = r.json()
    assert body["mode"] == "paper"
    assert body["trading_state"] == "ACTIVE" and body["trading_reason"] is None
    assert body["markets"] == [
        {
            "slug": "nba-bos-nyk-2026-11-26",
            "bid": "0.54",
            "ask": "0.56",
            "fair": "0.6012",
            "edge": "0.0312",
            "position": "25",
            "state": "trusted",
            # the universe's facts, filled by the bot's status view (none given here)
            "phase": None,
            "start_time": None,
            "fixture": None,
            "origin": None,
            "league": None,
            "not_traded": "",
            "settlement": None,
        }
    ]
    assert body["pnl"] == {"equity": "1012.50", "daily": "12.50"}
    assert body["supervisor"]["phase"] == "running"
    assert body["supervisor"]["recent_errors"] == ["odds: RuntimeError: boom"]
    assert [c["name"] for c in body["supervisor"]["children"]] == ["markets", "odds", "health"]


async def test_no_secret_value_appears_in_any_response(served):
    world, client = served
    world.state = running_state(
        child("notify", degraded=f"webhook {WEBHOOK} refused"),
        recent_errors=(f"auth failed with {API_KEY}",),
    )
    world.metrics.rejections.labels(reason=f"weird {API_KEY}").inc()
    bodies = [
        (await client.get(path)).text for path in ("/health", "/ready", "/metrics", "/status")
    ]
    everything = "\n".join(bodies)
    for secret in (
        API_KEY,
        WEBHOOK,
        "hook-token-abcdefghijklmnop",
        "plain-string-under-a-secret-key",
    ):
        assert secret not in everything, secret
    status = orjson.loads(bodies[3])
    assert status["extra"] == {"api_key": "[redacted]", "alerts": "[redacted]"}
    assert status["recent_errors"] == ["POST failed for key [redacted]"]


async def test_unknown_path_is_404_and_non_get_is_405_and_head_has_no_body(served):
    _world, client = served
    assert (await client.get("/nope")).status_code == 404
    r = await client.post("/health")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
    r = await client.head("/health")
    assert (r.status_code, r.content) == (200, b"")


async def test_a_failing_source_gives_500_and_the_server_keeps_serving(served):
    world, client = served
    world.status_broken = True
    assert (await client.get("/status")).status_code == 500
    assert (await client.get("/health")).status_code == 200


async def test_health_child_under_a_real_supervisor_reports_a_reconnecting_feed():
    """Wiring check: serve_health as a supervised child reading Supervisor.state."""

    async def feed(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        attempt = 0
        while True:
            attempt += 1
            progress.reconnecting(attempt, "ConnectError: refused")
            await trio.sleep(0.05)

    ports: list[int] = []
    metrics = Metrics.create()
    holder: list[Supervisor] = []
    app = HealthApp(
        HealthSources(
            supervisor=lambda: holder[0].state(),
            not_ready_reason=lambda: "market feed down",
            status=lambda: {"mode": "paper"},
            metrics=metrics,
        )
    )
    sup = Supervisor(
        [
            ChildSpec(
                "health", partial(serve_health, app, "127.0.0.1", 0, on_listening=ports.append)
            ),
            ChildSpec("markets", feed, progress_deadline=5),
        ],
        metrics=metrics,
    )
    holder.append(sup)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run)
            while sup.state().phase is not Phase.RUNNING:
                await trio.sleep(0.01)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}") as client:
                health = await client.get("/health")
                ready = await client.get("/ready")
                scraped = (await client.get("/metrics")).text
            sup.stop()
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["reasons"][0].startswith("markets: reconnecting, attempt ")
    assert (ready.status_code, ready.json()["reason"]) == (503, "market feed down")
    assert "polybot_up 1.0" in scraped


def test_secret_values_collects_every_secret_field_of_settings_like_objects():
    @attrs.frozen
    class FakeSettings:
        api_key: Secret
        webhook: Secret | None
        host: str

    assert secret_values(FakeSettings(Secret(API_KEY), Secret(WEBHOOK), "127.0.0.1")) == [
        API_KEY,
        WEBHOOK,
    ]
    assert secret_values(FakeSettings(Secret(API_KEY), None, "x")) == [API_KEY]
