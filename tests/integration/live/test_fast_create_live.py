"""The live bot sends its order creates over the fast path (`polybot.polymarket.fastorder`)
started by the supervised group, and over httpx when `PM_FAST_CREATE=false`."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
import trio.testing

from polybot.model import Intent, OrderRequest, TimeInForce
from polybot.sim.harness import running_sim
from tests.integration.harness import running_bot, wait_for


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


def _req(slug: str) -> OrderRequest:
    return OrderRequest(slug, Intent.BUY_LONG, Decimal("0.30"), Decimal("1"), TimeInForce.GTC)


async def test_the_live_bot_creates_over_warm_sockets_started_by_the_supervisor(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, rate_limit=None) as sim:
        async with running_bot(sim, tmp_path, live=True) as bot:
            fast = bot.rest.fast
            assert fast is not None
            assert await wait_for(lambda: fast.running and fast.warm >= 2, 30)
            oid = await bot.rest.create_order(_req(sim.markets[0]))
            assert (fast.creates, fast.fallbacks) == (1, 0)
            assert [a.order_id for a in sim.exchange.orders_accepted] == [oid]


async def test_fast_create_off_keeps_creates_on_httpx(tmp_path, mock_clock):
    async with running_sim(run_scenario=False, rate_limit=None) as sim:
        async with running_bot(sim, tmp_path, live=True, PM_FAST_CREATE="false") as bot:
            assert bot.rest.fast is None
