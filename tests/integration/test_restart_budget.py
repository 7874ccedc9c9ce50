"""The restart budget spent (exit 70): the bot still cancels its orders before it exits."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
import trio
import trio.testing

from polybot.config import load_settings
from polybot.errors import EXIT_RESTART_BUDGET
from polybot.model import Intent, OrderRequest, TimeInForce
from polybot.runtime import Bot, run_bot
from polybot.sim.harness import running_sim
from tests.integration.harness import bot_env, replay_clock


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


async def test_exit_70_cancels_the_bots_resting_orders(tmp_path, mock_clock, monkeypatch):
    # money audit suspicion (held): exit 70 skipped the shutdown cancels, so GTC orders rested
    # unattended for systemd's RestartSec
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        slug = sim.markets[0]
        mine = sim.account_id
        crash = trio.Event()

        async def control_child(self, progress, *, task_status=trio.TASK_STATUS_IGNORED):
            task_status.started()
            while True:
                progress.beat()
                if crash.is_set():
                    raise RuntimeError("injected crash")
                await trio.sleep(0.25)

        async def no_decisions(self, slug, since=None):  # the order below must rest, not be re-synced away
            return None

        monkeypatch.setattr(Bot, "control_child", control_child)
        monkeypatch.setattr(Bot, "evaluate_market", no_decisions)
        bots: list[Bot] = []
        build = Bot.__init__

        def capture(self, *args, **kwargs):
            build(self, *args, **kwargs)
            bots.append(self)

        monkeypatch.setattr(Bot, "__init__", capture)
        settings = load_settings(bot_env(sim, tmp_path, live=True, MARKET_SLUGS=slug,
                                         SUPERVISOR_MAX_RESTARTS="0", ORDER_TIF="gtc"))
        result: list[int] = []

        async def run() -> None:
            result.append(await run_bot(settings, clock=replay_clock()))

        async with trio.open_nursery() as n:
            n.start_soon(run)
            await trio.sleep(10)  # started, reconciled
            # one of the bot's own orders rests at the exchange (sent through its venue)
            order = await bots[0].executor.submit(
                OrderRequest(slug, Intent.BUY_LONG, D("0.02"), D("5"), TimeInForce.GTC))
            assert order is not None and order.exchange_id is not None
            await trio.sleep(1)
            assert [o.order_id for o in sim.exchange.open_orders(mine, [slug])] == [
                order.exchange_id]
            crash.set()
        assert result == [EXIT_RESTART_BUDGET]
        assert sim.exchange.open_orders(mine, [slug]) == []
