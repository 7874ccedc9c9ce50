"""The sim's websockets over loopback: auth on upgrade, subscriptions, payloads, heartbeats."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from polybot.sim.harness import running_sim

from .helpers import Api, frames_for, next_frame, subscribe, ws_connect

MD = "SUBSCRIPTION_TYPE_MARKET_DATA"
BUY = "ORDER_INTENT_BUY_LONG"
SHORT = "ORDER_INTENT_BUY_SHORT"


@pytest.fixture
async def sim():
    async with running_sim(
        seed=5,
        run_scenario=False,
        rate_limit=None,
        heartbeat_seconds=0.2,
        private_empty_error_probability=0.0,
    ) as s:
        yield s


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(timeout=5) as http:
        yield Api(sim, http)


@pytest.fixture
async def other(sim, api):
    key = sim.create_account(Decimal("5000"))
    return Api(sim, api.http, key.key_id, key.secret_key)


@pytest.mark.parametrize("path", ["/v1/ws/markets", "/v1/ws/private"])
async def test_unsigned_upgrade_is_refused_with_401(sim, path):
    with pytest.raises(ConnectionRejected) as err:
        async with open_websocket_url(sim.ws_url + path):
            pass
    assert err.value.status_code == 401
    assert json.loads(err.value.body)["code"] == 16


async def test_stale_signature_upgrade_is_refused_with_401(sim):
    from polybot.sim.auth import signed_headers

    from .helpers import now_ms

    headers = signed_headers(sim.key_id, sim.secret_key, "GET", "/v1/ws/private", now_ms() - 60_000)
    with pytest.raises(ConnectionRejected) as err:
        async with open_websocket_url(
            sim.ws_url + "/v1/ws/private", extra_headers=list(headers.items())
        ):
            pass
    assert err.value.status_code == 401


async def test_market_data_full_book_on_subscribe_and_on_every_change(sim, api):
    slug = sim.markets[0]
    await api.order(slug, BUY, "0.40", 3)
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        await subscribe(ws, "md-1", MD, [slug])
        first = await next_frame(ws, "marketData")
        assert first["requestId"] == "md-1" and first["subscriptionType"] == MD
        assert first["marketData"]["bids"] == [
            {"px": {"value": "0.4000", "currency": "USD"}, "qty": "3.0000"}
        ]
        await api.order(slug, BUY, "0.41", 2)
        second = await next_frame(ws, "marketData")
        assert [lv["px"]["value"] for lv in second["marketData"]["bids"]] == ["0.4100", "0.4000"]
        await ws.send_message(json.dumps({"unsubscribe": {"requestId": "md-1"}}))
        await trio.sleep(0.05)
        await api.order(slug, BUY, "0.42", 2)
        frames = await frames_for(ws, 0.3)
        assert not any("marketData" in f for f in frames)


async def test_lite_and_trade_subscriptions(sim, api, other):
    slug = sim.markets[0]
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        await subscribe(ws, "lite", "SUBSCRIPTION_TYPE_MARKET_DATA_LITE", [slug])
        await subscribe(ws, "tr", "SUBSCRIPTION_TYPE_TRADE", [slug])
        lite = await next_frame(ws, "marketDataLite")
        assert (
            lite["marketDataLite"]["marketSlug"] == slug and lite["marketDataLite"]["bidDepth"] == 0
        )
        await other.order(slug, BUY, "0.45", 5)
        await api.order(slug, SHORT, "0.45", 2)
        trade = (await next_frame(ws, "trade"))["trade"]
        assert trade["price"]["value"] == "0.4500" and trade["quantity"]["value"] == "2.0000"
        assert trade["maker"] == {"side": "ORDER_SIDE_BUY", "intent": BUY}
        assert trade["taker"] == {"side": "ORDER_SIDE_SELL", "intent": SHORT}


async def test_subscription_errors(sim):
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        await subscribe(ws, "big", MD, [sim.markets[0]] * 101)
        err = await next_frame(ws, "error")
        assert err["requestId"] == "big" and "too many" in err["error"]
        await subscribe(ws, "wrong", "SUBSCRIPTION_TYPE_ORDER", [])
        assert (await next_frame(ws, "error"))["requestId"] == "wrong"
        await subscribe(ws, "none", MD, [])
        assert (await next_frame(ws, "error"))["requestId"] == "none"
        await subscribe(ws, "unk", MD, ["no-such-market"])
        assert "not found" in (await next_frame(ws, "error"))["error"]
        await ws.send_message("{not json")
        assert (await next_frame(ws, "error"))["error"] == "invalid JSON"
        await subscribe(ws, "ok", MD, [sim.markets[0]])
        await next_frame(ws, "marketData")
        await subscribe(ws, "ok", MD, [sim.markets[1]])
        assert "already" in (await next_frame(ws, "error"))["error"]


async def test_hundred_slugs_per_subscription_is_allowed(sim):
    slugs = (sim.markets * 25)[:100]
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        await subscribe(ws, "max", MD, slugs)
        frame = await next_frame(ws, "marketData")
        assert frame["requestId"] == "max"


async def test_heartbeats_arrive_at_the_configured_interval(sim):
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        frames = await frames_for(ws, 0.7)
    beats = [f for f in frames if json.loads(f) == {"heartbeat": {}}]
    assert 2 <= len(beats) <= 4


async def test_private_order_stream_new_then_fill_with_shared_trade_id(sim, api, other):
    slug = sim.markets[0]
    async with (
        ws_connect(sim, "/v1/ws/private") as mine,
        ws_connect(sim, "/v1/ws/private", other.key_id, other.secret) as theirs,
    ):
        await subscribe(mine, "o", "SUBSCRIPTION_TYPE_ORDER")
        await subscribe(theirs, "o", "SUBSCRIPTION_TYPE_ORDER", [slug])
        await trio.sleep(0.05)
        oid = await api.order(slug, BUY, "0.50", 4)
        new = (await next_frame(mine, "orderSubscriptionUpdate"))["orderSubscriptionUpdate"][
            "execution"
        ]
        assert new["type"] == "EXECUTION_TYPE_NEW" and new["order"]["id"] == oid
        assert new["order"]["state"] == "ORDER_STATE_NEW"
        await other.order(slug, SHORT, "0.50", 4)
        fill = (await next_frame(mine, "orderSubscriptionUpdate"))["orderSubscriptionUpdate"][
            "execution"
        ]
        assert fill["type"] == "EXECUTION_TYPE_FILL" and fill["aggressor"] is False
        assert fill["order"]["state"] == "ORDER_STATE_FILLED" and fill["lastShares"] == "4.0000"
        assert fill["commissionNotionalCollected"]["value"].startswith("-")  # maker rebate
        t_new = (await next_frame(theirs, "orderSubscriptionUpdate"))["orderSubscriptionUpdate"][
            "execution"
        ]
        t_fill = (await next_frame(theirs, "orderSubscriptionUpdate"))["orderSubscriptionUpdate"][
            "execution"
        ]
        assert t_new["type"] == "EXECUTION_TYPE_NEW" and t_fill["aggressor"] is True
        assert t_fill["tradeId"] == fill["tradeId"]


async def test_order_snapshot_pages_end_with_eof(sim, api):
    sim.server.hub.settings.snapshot_page_size = 2
    ids = [await api.order(sim.markets[0], BUY, "0.30", 1) for _ in range(3)]
    async with ws_connect(sim, "/v1/ws/private") as ws:
        await subscribe(ws, "snap", "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT")
        a = (await next_frame(ws, "orderSubscriptionSnapshot"))["orderSubscriptionSnapshot"]
        b = (await next_frame(ws, "orderSubscriptionSnapshot"))["orderSubscriptionSnapshot"]
    assert a["eof"] is False and b["eof"] is True
    assert [o["id"] for o in a["orders"] + b["orders"]] == ids


async def test_empty_order_snapshot_is_one_eof_frame(sim):
    async with ws_connect(sim, "/v1/ws/private") as ws:
        await subscribe(ws, "snap", "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT")
        snap = (await next_frame(ws, "orderSubscriptionSnapshot"))["orderSubscriptionSnapshot"]
    assert snap == {"orders": [], "eof": True}


async def test_positions_changes_and_balance_snapshot_then_updates(sim, api, other):
    slug = sim.markets[0]
    async with ws_connect(sim, "/v1/ws/private") as ws:
        await subscribe(ws, "pos", "SUBSCRIPTION_TYPE_POSITION")
        await subscribe(ws, "bal", "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE")
        snap = (await next_frame(ws, "accountBalancesSnapshot"))["accountBalancesSnapshot"]
        assert snap["balances"][0]["currentBalance"] == 10000
        await other.order(slug, SHORT, "0.50", 2)
        await api.order(slug, BUY, "0.50", 2)
        pos = (await next_frame(ws, "positionSubscription"))["positionSubscription"]
        assert pos["beforePosition"] is None
        assert pos["afterPosition"]["netPositionDecimal"] == "2.0000"
        assert pos["afterPosition"]["marketMetadata"]["slug"] == slug
        upd = (await next_frame(ws, "accountBalancesUpdate"))["accountBalancesUpdate"][
            "balanceChange"
        ]
        assert upd["beforeBalance"]["currentBalance"] == 10000
        assert upd["afterBalance"]["currentBalance"] < 10000


async def test_empty_error_string_appears_only_on_private_frames():
    async with running_sim(
        run_scenario=False, heartbeat_seconds=60, private_empty_error_probability=1.0
    ) as s:
        async with ws_connect(s, "/v1/ws/private") as priv, ws_connect(s, "/v1/ws/markets") as pub:
            await subscribe(priv, "bal", "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE")
            await subscribe(pub, "md", MD, [s.markets[0]])
            p = await next_frame(priv, "accountBalancesSnapshot")
            m = await next_frame(pub, "marketData")
    assert p["error"] == ""
    assert "error" not in m


async def test_running_scenario_quotes_books_that_reach_websocket_subscribers():
    async with running_sim(seed=2, heartbeat_seconds=5) as s:
        assert s.scenario is not None and len(s.markets) >= 2
        async with ws_connect(s, "/v1/ws/markets") as ws:
            await subscribe(ws, "md", MD, s.markets[:2])
            frame = await next_frame(ws, "marketData")
        book = frame["marketData"]
        assert book["bids"] and book["offers"]
        assert Decimal(book["bids"][0]["px"]["value"]) < Decimal(book["offers"][0]["px"]["value"])


async def test_order_subscription_can_start_with_a_snapshot_like_older_docs():
    async with (
        running_sim(
            run_scenario=False, order_snapshot_on_order=True, private_empty_error_probability=0.0
        ) as s,
        httpx.AsyncClient() as http,
    ):
        oid = await Api(s, http).order(s.markets[0], BUY, "0.30", 1)
        async with ws_connect(s, "/v1/ws/private") as ws:
            await subscribe(ws, "o", "SUBSCRIPTION_TYPE_ORDER")
            snap = await next_frame(ws, "orderSubscriptionSnapshot")
    assert snap["requestId"] == "o"
    assert snap["orderSubscriptionSnapshot"]["eof"] is True
    assert [o["id"] for o in snap["orderSubscriptionSnapshot"]["orders"]] == [oid]
