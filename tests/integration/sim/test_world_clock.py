"""One accelerated clock for the bot and the world: Trio on `MockClock(rate=N)`, the bot's
`ReplayClock` on Trio's clock, and `running_sim(clock=that.now)`, so games start, odds are stamped
and events are created at the time the bot reads (what the `run --sim` demo relies on)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trio
import trio.testing

from polybot.clock import ReplayClock
from polybot.opticodds.client import OpticOddsClient
from polybot.polymarket import wire
from polybot.sim.harness import running_sim
from polybot.sim.scenario import demo_world

SPEED = 100.0


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(rate=SPEED)


async def test_the_world_and_the_bot_read_one_clock_running_faster_than_real_time(mock_clock):
    clock = ReplayClock(datetime.now(UTC), origin=trio.current_time())
    async with running_sim(scenario=demo_world(3), opticodds=True, clock=clock.now) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http, \
            OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
        assert sim.scenario.clock == clock.now  # the same wall clock, not a copy
        first = min(sim.world.games, key=lambda g: g.start_time)
        assert first.start_time - clock.now() <= timedelta(minutes=2)
        real0, world0 = time.monotonic(), clock.now()
        await trio.sleep((first.start_time - clock.now()).total_seconds() + 30)
        # about 150 simulated seconds passed in about 1.5 real seconds
        assert time.monotonic() - real0 < 0.3 * (clock.now() - world0).total_seconds()
        assert abs((sim.now() - clock.now()).total_seconds()) < 1
        assert first.status == "live"
        (raw,) = wire.loads_exact((await http.get(
            "/v1/events", params={"slug": first.event_slug})).content)["events"]
        assert raw["live"] is True
        # exchange and odds stamps are the shared clock's, not the host's (which is behind)
        host_lag = (clock.now() - datetime.now(UTC)).total_seconds()
        assert host_lag > 60
        event, _ = wire.parse_event(raw)
        assert event.start_time == first.start_time
        assert abs((sim.exchange.now() - clock.now()).total_seconds()) < 1
        odds = await oo.fixture_odds([first.fixture_id], ["pinnacle"])
        stamps = [o.timestamp for o in odds[first.fixture_id].odds]
        assert stamps and all(abs(s - clock.now().timestamp()) < 60 for s in stamps)
