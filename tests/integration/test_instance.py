"""INSTANCE (issue 17, several accounts on one host): a running bot against the local exchange
puts its instance name on every log line, every trades-log line and every series of /metrics (and
in /status), so two bots' lines and series never mix in CloudWatch or Prometheus."""

from __future__ import annotations

import io
import json
from decimal import Decimal as D

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from polybot.config import load_settings
from polybot.errors import EXIT_OK
from polybot.logs import configure_from_settings, configure_logging
from polybot.runtime import run_bot
from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from tests.integration.harness import bot_env, replay_clock


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    configure_logging(level="WARNING")  # drop the test's handlers (and their open files)


async def test_a_running_bot_labels_its_log_lines_trades_and_metrics_with_its_instance(
        tmp_path, mock_clock):
    bot_log, trades_log = tmp_path / "logs" / "bot.log", tmp_path / "logs" / "trades.log"
    stderr = io.StringIO()
    scraped: list[str] = []
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        cheap = sim.markets[0]  # an offer far under its fair value: the bot buys it
        script_book(sim.exchange, cheap, bids=[("0.09", 500)], offers=[("0.10", 500)])
        settings = load_settings(bot_env(
            sim, tmp_path / "data", live=True, MARKET_SLUGS=cheap, INSTANCE="alice", LOG_JSON="true",
            LOG_LEVEL="INFO", LOG_FILE=str(bot_log), TRADES_LOG_FILE=str(trades_log)))
        configure_from_settings(settings, stream=stderr)
        ports: list[int] = []

        async def scrape_once_trading() -> None:
            with trio.move_on_after(5.5):
                while not ports or not trades_log.exists() or not trades_log.read_text():
                    await trio.sleep(0.2)
            async with httpx.AsyncClient() as client:
                answer = await client.get(f"http://127.0.0.1:{ports[0]}/metrics")
                status = await client.get(f"http://127.0.0.1:{ports[0]}/status")
            assert answer.status_code == 200
            scraped.append(answer.text)
            assert status.json()["extra"]["instance"] == "alice"

        async with trio.open_nursery() as n:
            n.start_soon(scrape_once_trading)
            assert await run_bot(settings, duration=6.0, clock=replay_clock(),
                                 on_health_port=ports.append) == EXIT_OK

    lines = [json.loads(line) for line in bot_log.read_text().splitlines()]
    assert len(lines) > 3
    assert all(line["instance"] == "alice" for line in lines)
    assert [json.loads(line) for line in stderr.getvalue().splitlines()] == lines
    trades = [json.loads(line) for line in trades_log.read_text().splitlines()]
    assert trades and all(t["instance"] == "alice" for t in trades)
    assert {"order_intent", "fill"} <= {t["event"] for t in trades}

    (text,) = scraped
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert {s.name for s in samples} >= {"polybot_up", "polybot_equity_usd", "polybot_info",
                                         "polybot_orders_total"}
    assert all(s.labels.get("bot_instance") == "alice" for s in samples)
    (info,) = [s for s in samples if s.name == "polybot_info"]
    assert info.value == 1
