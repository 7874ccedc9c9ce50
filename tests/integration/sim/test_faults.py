"""Each fault switch of the sim does what it says (switched from the test and the admin API)."""

from __future__ import annotations

import email.utils
import json
import time
from decimal import Decimal

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected

from polybot.sim.harness import running_sim

from .helpers import Api, frames_for, next_frame, now_ms, subscribe, ws_connect

MD = "SUBSCRIPTION_TYPE_MARKET_DATA"
BUY = "ORDER_INTENT_BUY_LONG"
SHORT = "ORDER_INTENT_BUY_SHORT"


@pytest.fixture
async def sim():
    async with running_sim(
        seed=7,
        run_scenario=False,
        rate_limit=None,
        heartbeat_seconds=0.1,
        private_empty_error_probability=0.0,
    ) as s:
        yield s


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(timeout=5) as http:
        yield Api(sim, http)


def _order_body(slug: str, price: str = "0.30") -> dict:
    return {
        "marketSlug": slug,
        "intent": BUY,
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": price, "currency": "USD"},
        "quantity": 1,
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
    }


async def test_delay_seconds_holds_every_rest_response(sim, api):
    sim.faults.delay_seconds = 0.3
    t0 = trio.current_time()
    assert (await api.public("/v1/markets")).status_code == 200
    assert trio.current_time() - t0 >= 0.3
    sim.faults.delay_seconds = 0
    t0 = trio.current_time()
    await api.public("/v1/markets")
    assert trio.current_time() - t0 < 0.3


async def test_error_burst_answers_5xx_for_n_requests_without_placing(sim, api):
    sim.faults.error_burst = 2
    sim.faults.error_status = 502
    r1 = await api.post("/v1/orders", _order_body(sim.markets[0]))
    r2 = await api.public("/v1/markets")
    r3 = await api.public("/v1/markets")
    assert (r1.status_code, r2.status_code, r3.status_code) == (502, 502, 200)
    assert r1.json()["code"] == 14
    assert sim.exchange.orders_accepted == []


async def test_rate_limit_burst_answers_429_for_n_requests(sim, api):
    sim.faults.rate_limit_burst = 1
    assert (await api.get("/v1/account/balances")).status_code == 429
    assert (await api.get("/v1/account/balances")).status_code == 200


async def test_hang_orders_places_the_order_but_never_answers(sim, api):
    sim.faults.hang_orders = 1
    with pytest.raises(httpx.ReadTimeout):
        await api.http.post(
            sim.api_url + "/v1/orders",
            json=_order_body(sim.markets[0]),
            headers=api.headers("POST", "/v1/orders"),
            timeout=0.3,
        )
    assert len(sim.exchange.orders_accepted) == 1  # it is in the book all the same
    open_ = (await api.get("/v1/orders/open")).json()["orders"]
    assert [o["id"] for o in open_] == [sim.exchange.orders_accepted[0].order_id]
    assert (await api.post("/v1/orders", _order_body(sim.markets[0]))).status_code == 200


async def test_hang_seconds_answers_after_the_delay(sim, api):
    sim.faults.hang_orders = 1
    sim.faults.hang_seconds = 0.4
    t0 = trio.current_time()
    r = await api.post("/v1/orders", _order_body(sim.markets[0]))
    assert r.status_code == 200 and trio.current_time() - t0 >= 0.4
    assert r.json()["id"] == sim.exchange.orders_accepted[0].order_id


async def test_reject_all_orders_gives_ids_then_rejects(sim, api):
    sim.faults.reject_all_orders = True
    oid = await api.order(sim.markets[0], BUY, "0.30", 1)
    order = (await api.get(f"/v1/order/{oid}")).json()["order"]
    assert order["state"] == "ORDER_STATE_REJECTED"
    assert [a.order_id for a in sim.exchange.orders_accepted] == [oid]
    sim.faults.reject_all_orders = False
    oid2 = await api.order(sim.markets[0], BUY, "0.30", 1)
    assert (await api.get(f"/v1/order/{oid2}")).json()["order"]["state"] == "ORDER_STATE_NEW"


async def test_maintenance_cancels_all_then_503_and_reopens_with_empty_books(sim, api):
    slug = sim.markets[0]
    oid = await api.order(slug, BUY, "0.30", 1)
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        sim.faults.maintenance = True
        with pytest.raises(ConnectionClosed):
            with trio.fail_after(2):
                while True:
                    await ws.get_message()
    assert sim.exchange.get_order(sim.account_id, oid).state.value == "ORDER_STATE_CANCELED"
    assert (await api.public("/v1/markets")).status_code == 503
    r = await api.get("/v1/account/balances")
    assert r.status_code == 503 and r.json()["code"] == 14
    with pytest.raises(ConnectionRejected) as err:
        async with ws_connect(sim, "/v1/ws/private"):
            pass
    assert err.value.status_code == 503
    assert sim.exchange.markets[slug].state.value == "MARKET_STATE_SUSPENDED"
    sim.faults.maintenance = False
    m = (await api.public(f"/v1/market/slug/{slug}")).json()["market"]
    assert m["active"] is True and m["ep3Status"] == "MARKET_STATE_OPEN"
    book = (await api.public(f"/v1/markets/{slug}/book")).json()["marketData"]
    assert book["bids"] == [] and book["offers"] == []


async def test_clock_skew_shifts_auth_window_and_date_header(sim, api):
    sim.faults.clock_skew_seconds = 120
    r = await api.get("/v1/account/balances")
    assert r.status_code == 401
    server_now = email.utils.parsedate_to_datetime(r.headers["date"]).timestamp()
    assert server_now - time.time() == pytest.approx(120, abs=3)
    skewed = api.headers("GET", "/v1/account/balances", ts=now_ms() + 120_000)
    r = await api.http.get(sim.api_url + "/v1/account/balances", headers=skewed)
    assert r.status_code == 200


async def test_ws_silent_stops_every_frame_including_heartbeats(sim, api):
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        await next_frame(ws, "heartbeat")
        sim.faults.ws_silent = True
        await trio.sleep(0.05)
        await frames_for(ws, 0.05)  # drain anything queued before the switch
        await subscribe(ws, "md", MD, [sim.markets[0]])
        await api.order(sim.markets[0], BUY, "0.30", 1)
        assert await frames_for(ws, 0.4) == []
        sim.faults.ws_silent = False
        assert json.loads(await ws.get_message()) == {"heartbeat": {}}


async def test_drop_websockets_closes_every_open_socket(sim):
    async with ws_connect(sim, "/v1/ws/markets") as a, ws_connect(sim, "/v1/ws/private") as b:
        sim.faults.drop_websockets()
        for ws in (a, b):
            with pytest.raises(ConnectionClosed) as err:
                with trio.fail_after(2):
                    while True:
                        await ws.get_message()
            assert err.value.reason.code == 1011


async def test_malformed_and_unknown_frames_precede_the_next_real_frame(sim):
    async with ws_connect(sim, "/v1/ws/markets") as ws:
        await next_frame(ws, "heartbeat")
        sim.faults.malformed_frames = 1
        sim.faults.unknown_frames = 1
        frames = [await ws.get_message() for _ in range(3)]
    with pytest.raises(json.JSONDecodeError):
        json.loads(frames[0])
    assert "fromTheFuture" in json.loads(frames[1])
    assert json.loads(frames[2]) == {"heartbeat": {}}


async def test_admin_api_switches_faults_and_lists_accepted_orders(sim, api):
    admin = sim.admin_url
    r = await api.http.post(
        admin + "/admin/faults", json={"reject_all_orders": True, "error_burst": 0}
    )
    assert r.status_code == 200 and r.json()["reject_all_orders"] is True
    assert sim.faults.reject_all_orders is True
    r = await api.http.post(admin + "/admin/faults", json={"nonsense": 1})
    assert r.status_code == 400 and sim.faults.reject_all_orders is True
    await api.http.post(admin + "/admin/faults", json={"reset": True})
    assert sim.faults.reject_all_orders is False
    body = _order_body(sim.markets[0])
    await api.post("/v1/orders", body)
    await api.post("/v1/orders", body)
    orders = (await api.http.get(admin + "/admin/orders")).json()["orders"]
    assert len(orders) == 2 and orders[0]["marketSlug"] == sim.markets[0]
    assert orders[0]["price"] == "0.3000" and orders[0]["accountId"] == sim.account_id
    mine = (await api.http.get(admin + f"/admin/orders?account={sim.account_id}")).json()
    assert len(mine["orders"]) == 2
    r = await api.http.post(admin + "/admin/maintenance", json={"on": True})
    assert r.json() == {"maintenance": True} and sim.faults.maintenance
    assert (await api.public("/v1/markets")).status_code == 503
    await api.http.post(admin + "/admin/maintenance", json={"on": False})
    r = await api.http.post(admin + "/admin/settle", json={"slug": sim.markets[1], "value": "1"})
    assert r.status_code == 200
    assert (await api.public(f"/v1/markets/{sim.markets[1]}/settlement")).json()[
        "settlement"
    ] == 1.0
    r = await api.http.post(
        admin + "/admin/faults", json={"drop_websockets": True, "ws_silent": True}
    )
    assert r.json()["ws_silent"] is True
    acct = (await api.http.post(admin + "/admin/accounts", json={"cash": "250"})).json()
    other = Api(sim, api.http, acct["key_id"], acct["secret_key"])
    bal = (await other.get("/v1/account/balances")).json()["balances"][0]
    assert bal["currentBalance"] == 250
    assert Decimal(250) == sim.exchange.balance(acct["account_id"]).current_balance


async def test_after_maintenance_the_scenario_makers_requote_the_empty_books():
    from polybot.sim.scenario import Timing, default_spec

    spec = default_spec(9, n_games=2, timing=Timing(tick_seconds=0.05, quote_refresh_seconds=0.1))
    async with running_sim(scenario=spec, rate_limit=None) as s:
        slug = s.markets[0]
        assert s.exchange.book(slug).bids  # quoted from the first tick
        s.faults.maintenance = True
        await trio.sleep(0.3)
        assert s.exchange.book(slug).bids == () and s.exchange.book(slug).offers == ()
        s.faults.maintenance = False
        assert s.exchange.markets[slug].state.value == "MARKET_STATE_OPEN"
        with trio.fail_after(3):
            while not s.exchange.book(slug).bids:
                await trio.sleep(0.05)
