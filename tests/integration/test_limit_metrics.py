"""A running paper bot (`polybot.runtime.Bot` against `polybot.sim` over loopback) publishes every
limit's use next to its cap on /metrics: the caps are the settings, the uses the bot's own figures.

Time runs on Trio's MockClock (real sockets, simulated seconds).
"""

from __future__ import annotations

from decimal import Decimal as D

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from polybot.health import HealthApp, HealthSources, serve_health
from polybot.metrics import RISK_SCOPES
from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from tests.integration import harness

CAPS = {"market": "40", "event": "60", "portfolio": "200", "daily_loss": "30"}
SETTINGS = dict(RISK_MAX_POSITION_PER_MARKET=CAPS["market"],
                RISK_MAX_CORRELATED_EXPOSURE=CAPS["event"],
                RISK_MAX_PORTFOLIO_EXPOSURE=CAPS["portfolio"], RISK_MAX_DAILY_LOSS=CAPS["daily_loss"],
                RISK_MAX_DRAWDOWN_PCT="0.2", RISK_MAX_POSITIONS="4")


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0.05)


def scrape(text: str) -> dict[tuple[str, str], float]:
    """(name, its one label value or "") -> value."""
    return {(s.name, next(iter(s.labels.values()), "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith(("polybot_usd_at_risk", "polybot_risk_cap", "polybot_positions"))}


async def test_a_trading_bot_shows_each_limits_use_against_the_configured_cap(tmp_path, clock):
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug = sim.markets[0]
        script_book(sim.exchange, slug, bids=[("0.05", 500)], offers=[("0.10", 500)])
        async with harness.running_bot(sim, tmp_path, live=False, MARKET_SLUGS=slug,
                                       **SETTINGS) as bot, trio.open_nursery() as n:
            health = HealthApp(HealthSources(supervisor=bot.supervisor.state,
                                             not_ready_reason=bot.views.not_ready_reason,
                                             status=bot.views.status_report, metrics=bot.metrics,
                                             degraded=bot.views.degraded), secrets=bot.secrets)
            port = await n.start(serve_health, health, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

                async def metrics() -> dict[tuple[str, str], float]:
                    r = await client.get("/metrics")
                    assert r.status_code == 200
                    return scrape(r.text)

                # the edge buys up to the per-market cap; the housekeeping second publishes it
                assert await harness.wait_for(
                    lambda: bot.ledger.position(slug).net_qty > 0, 30)
                await trio.sleep(3)
                got = await metrics()
                at_risk = float(bot.exposure.portfolio)
                high = bot.trading.high_water_mark
            n.cancel_scope.cancel()

    assert 0 < at_risk <= float(CAPS["market"])
    cap = {scope: got[("polybot_risk_cap_usd", scope)] for scope in RISK_SCOPES}
    use = {scope: got[("polybot_usd_at_risk", scope)] for scope in RISK_SCOPES}
    assert high is not None
    assert cap == {scope: float(v) for scope, v in CAPS.items()} | {
        "drawdown": float(D("0.2") * high)}
    # one market: it is the largest market, its event and the whole portfolio
    assert use["market"] == use["event"] == use["portfolio"] == at_risk
    # a taker buy marks below its cost: a small loss, nowhere near the limits (no halt)
    assert 0 <= use["daily_loss"] < cap["daily_loss"]
    assert 0 <= use["drawdown"] < cap["drawdown"]
    assert (got[("polybot_positions_held", "")], got[("polybot_risk_cap_positions", "")]) == (1, 4)


async def test_decision_latency_runs_from_the_fair_value_change_that_asked_for_the_order(
        tmp_path, clock):
    """An order a fair value's move asks for, on a book that last changed long before, is timed
    from the move (on the mock clock nothing in between takes time), not from the book's frame:
    the Grafana panel of decision latency would otherwise show the age of a quiet book."""
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        slug = sim.markets[0]
        game = sim.world.game_by_slug(slug)
        assert game is not None
        game.true_prob_long = D("0.30")
        sim.opticodds_control.update_now()  # the books' lines move there before the bot asks
        script_book(sim.exchange, slug, bids=[("0.01", 500)], offers=[("0.99", 500)])
        async with harness.running_bot(sim, tmp_path, live=False, MARKET_SLUGS=slug,
                                       **SETTINGS) as bot:
            assert await harness.wait_for(lambda: bot.fair_values.usable(slug) is not None, 30)
            fair = bot.fair_values.usable(slug).q
            # a book around the fair value, nothing to buy on either side; then it stays still
            script_book(sim.exchange, slug, bids=[(str(round(fair - D("0.12"), 2)), 500)],
                        offers=[(str(round(fair + D("0.12"), 2)), 500)])
            await trio.sleep(20)  # the book's last frame is now 20 s old
            assert bot.ledger.position(slug).net_qty == 0
            game.true_prob_long = D("0.90")
            sim.opticodds_control.update_now()
            assert await harness.wait_for(lambda: bot.ledger.position(slug).net_qty > 0, 30)
            latency = {s.name: s.value for f in text_string_to_metric_families(
                bot.metrics.render().decode()) for s in f.samples
                if s.name.startswith("polybot_decision_latency_seconds")}
    assert latency["polybot_decision_latency_seconds_count"] >= 1
    assert latency["polybot_decision_latency_seconds_sum"] < 0.01, latency
