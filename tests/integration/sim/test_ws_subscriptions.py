"""The sim's markets socket holds several subscriptions, honours unsubscribe, and can leave a slug
silently unanswered (the fault the client's re-send path is tested with). Plain websocket client;
simulated time (MockClock with real loopback sockets)."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio.testing

from polybot.sim.harness import running_sim

from .helpers import Api, frames_for, next_frame, subscribe, ws_connect

MD = "SUBSCRIPTION_TYPE_MARKET_DATA"
BUY = "ORDER_INTENT_BUY_LONG"


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


@pytest.fixture
async def sim(mock_clock):
    async with running_sim(seed=5, run_scenario=False, rate_limit=None, heartbeat_seconds=30,
                           private_empty_error_probability=0.0) as s:
        yield s


def md_frames(raw: list[str]) -> list[dict]:
    return [f for f in map(json.loads, raw) if "marketData" in f]


async def test_each_subscription_answers_its_own_markets_and_unsubscribe_stops_it(sim, mock_clock):
    a, b, c = sim.markets[:3]
    async with ws_connect(sim, "/v1/ws/markets") as ws, httpx.AsyncClient(timeout=5) as http:
        await subscribe(ws, "one", MD, [a, b])
        await subscribe(ws, "two", MD, [c])
        got = md_frames(await frames_for(ws, 1.0))
        assert sorted((f["requestId"], f["marketData"]["marketSlug"]) for f in got) == sorted(
            [("one", a), ("one", b), ("two", c)])  # a snapshot per market, per subscription
        await ws.send_message(json.dumps({"unsubscribe": {"requestId": "one"}}))
        await trio.sleep(0.5)
        api = Api(sim, http)
        await api.order(a, BUY, "0.30", 1)
        await api.order(c, BUY, "0.31", 1)
        got = md_frames(await frames_for(ws, 1.0))
        assert [(f["requestId"], f["marketData"]["marketSlug"]) for f in got] == [("two", c)]
    assert sim.server.hub.accepted["markets"] == 1


async def test_an_unanswered_slug_gets_nothing_for_its_first_k_subscribes_then_is_served(sim, mock_clock):
    a, b = sim.markets[:2]
    sim.faults.unanswer_subscriptions(a, 2)
    async with ws_connect(sim, "/v1/ws/markets") as ws, httpx.AsyncClient(timeout=5) as http:
        for rid in ("r1", "r2"):
            await subscribe(ws, rid, MD, [a, b])
            got = md_frames(await frames_for(ws, 1.0))
            # no snapshot, no error: the other market of the same subscription is served
            assert [f["marketData"]["marketSlug"] for f in got] == [b]
        await Api(sim, http).order(a, BUY, "0.30", 1)
        assert md_frames(await frames_for(ws, 1.0)) == []  # and no later frame either
        await subscribe(ws, "r3", MD, [a])
        frame = await next_frame(ws, "marketData")
        assert (frame["requestId"], frame["marketData"]["marketSlug"]) == ("r3", a)
        assert frame["marketData"]["bids"][0]["px"]["value"] == "0.3000"
    assert sim.faults.ws_unanswered == {}


async def test_a_subscription_left_with_no_market_by_the_fault_covers_none(sim, mock_clock):
    a, b = sim.markets[:2]
    sim.faults.unanswer_subscriptions(a, 1)
    async with ws_connect(sim, "/v1/ws/markets") as ws, httpx.AsyncClient(timeout=5) as http:
        await subscribe(ws, "only-a", MD, [a])
        await Api(sim, http).order(b, BUY, "0.30", 1)
        assert md_frames(await frames_for(ws, 1.0)) == []


async def test_a_private_subscription_without_market_slugs_covers_a_market_listed_after_it(
        sim, mock_clock):
    async with ws_connect(sim, "/v1/ws/private") as ws, httpx.AsyncClient(timeout=5) as http:
        await subscribe(ws, "orders", "SUBSCRIPTION_TYPE_ORDER")  # no marketSlugs: every market
        await trio.sleep(0.1)
        sim.exchange.add_event(990001, "nba-new-game-2026-12-07", "A game listed later")
        sim.exchange.add_market("aec-nba-new-game-2026-12-07", 990002, 990001)
        oid = await Api(sim, http).order("aec-nba-new-game-2026-12-07", BUY, "0.40", 1)
        frame = await next_frame(ws, "orderSubscriptionUpdate")
        execution = frame["orderSubscriptionUpdate"]["execution"]
        assert frame["requestId"] == "orders" and execution["order"]["id"] == oid
        assert execution["order"]["marketSlug"] == "aec-nba-new-game-2026-12-07"
