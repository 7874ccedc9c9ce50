"""The official `polymarket-us` SDK (2.4.1) against the sim: the SDK is the referee.

The SDK runs on asyncio (and its sync client blocks), so every drive runs in a worker thread via
`trio.to_thread.run_sync` while the sim keeps serving on the Trio loop; comparisons with the
sim's state happen back on the Trio side.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import trio
import trio.testing

from polybot.model import Intent, OrderRequest, OrderState, TimeInForce
from polybot.polymarket import PolymarketRestClient, RestConfig, Signer
from polybot.polymarket.fastorder import FastCreate
from polybot.sim.engine import OrderSpec
from polybot.sim.harness import running_sim

from . import sdk_tour


@pytest.fixture
async def sim():
    async with running_sim(
        seed=11,
        run_scenario=False,
        rate_limit=None,
        heartbeat_seconds=0.3,
        private_empty_error_probability=0.5,  # the SDK must shrug off "error": ""
    ) as s:
        yield s


def _creds(sim, other=None) -> dict:
    c = {
        "key_id": sim.key_id,
        "secret_key": sim.secret_key,
        "api_url": sim.api_url,
        "gateway_url": sim.gateway_url,
        "markets": list(sim.markets),
        "settled": sim.markets[3],
    }
    if other is not None:
        c["other_key_id"], c["other_secret_key"] = other.key_id, other.secret_key
    return c


def _limit(slug: str, intent: Intent, price: str, qty: int) -> OrderSpec:
    return OrderSpec(slug, intent, price=Decimal(price), quantity=Decimal(qty))


async def test_sync_client_every_rest_endpoint_matches_sim_state(sim):
    ex = sim.exchange
    maker = sim.create_account(Decimal("5000"))
    slug, slug2 = sim.markets[0], sim.markets[1]
    ex.submit(maker.account_id, _limit(slug, Intent.BUY_SHORT, "0.60", 5))
    ex.submit(maker.account_id, _limit(slug, Intent.BUY_LONG, "0.55", 5))
    ex.settle(sim.markets[3], Decimal(1))

    out = await trio.to_thread.run_sync(sdk_tour.sync_tour, _creds(sim))

    assert {m["slug"] for m in out["markets"]["markets"]} == set(ex.markets)
    assert [m["slug"] for m in out["markets_filtered"]["markets"]] == [slug2]
    assert out["market_by_slug"] == out["market_by_id"]
    assert out["market_by_slug"]["market"]["orderPriceMinTickSize"] == float(ex.markets[slug].tick)
    book = out["book"]["marketData"]
    assert book["marketSlug"] == slug
    assert book["offers"] == [{"px": {"value": "0.6000", "currency": "USD"}, "qty": "5.0000"}]
    assert book["bids"][0] == {"px": {"value": "0.5500", "currency": "USD"}, "qty": "5.0000"}
    assert out["bbo"]["marketData"]["bestAsk"]["value"] == "0.6000"
    assert out["settlement_unsettled"] == 404
    assert out["settlement_settled"] == {"slug": sim.markets[3], "settlement": 1.0}
    assert len(out["events"]["events"]) == len(ex.events)
    assert out["event_by_id"] == out["event_by_slug"]

    oid = out["created"]["id"]
    accepted = [a.order_id for a in ex.orders_accepted if a.account_id == sim.account_id]
    assert accepted[0] == oid
    assert out["retrieved"]["order"]["price"]["value"] == "0.3100"  # modified before retrieval
    assert [o["id"] for o in out["open"]["orders"]] == [oid]
    assert out["preview"]["order"]["avgPx"]["value"] == "0.6000"
    assert out["cancel_one"] is None
    assert ex.get_order(sim.account_id, oid).state is OrderState.CANCELED
    ids = out["create_many"]["createdOrderIds"]
    assert ids == accepted[1:3]
    assert out["modify_many"] == {"modifiedOrderIds": [ids[0]]}
    assert out["cancel_many"] == {"canceledOrderIds": [ids[0]]}
    assert out["cancel_all"] == {"canceledOrderIds": [ids[1]]}
    assert ex.get_order(sim.account_id, ids[0]).quantity == 3

    fill = out["taker"]["executions"][-1]
    assert fill["type"] == "EXECUTION_TYPE_FILL" and fill["lastShares"] == "3.0000"
    assert out["positions"]["eof"] is True
    assert out["positions"]["positions"][slug]["netPositionDecimal"] == "3.0000"
    assert out["activities"]["activities"][0]["type"] == "ACTIVITY_TYPE_TRADE"
    bal = out["balances"]["balances"][0]
    fee = Decimal(fill["commissionNotionalCollected"]["value"])
    assert fee == Decimal("0.0500")  # 0.0695 * 3 * 0.6 * 0.4 = 0.05004
    assert Decimal(str(bal["currentBalance"])) == Decimal(10000) - 3 * Decimal("0.60") - fee
    close_id = out["close"]["id"]
    assert ex.get_order(sim.account_id, close_id).state is OrderState.FILLED
    after = out["positions_after_close"]["positions"][slug]
    assert after["netPositionDecimal"] == "0.0000"
    assert ex.positions(sim.account_id)[slug].net == 0


async def test_async_client_and_both_websockets_see_new_then_fill(sim):
    other = sim.create_account(Decimal("5000"))
    out = await trio.to_thread.run_sync(sdk_tour.async_tour, _creds(sim, other))

    oid = out["order_id"]
    assert out["first_execution"]["type"] == "EXECUTION_TYPE_NEW"
    assert out["order_types_seen"] == ["EXECUTION_TYPE_NEW", "EXECUTION_TYPE_FILL"]
    assert out["fill"]["lastShares"] == "4.0000" and out["fill"]["aggressor"] is False
    assert out["snapshot"]["eof"] is True
    assert [o["id"] for o in out["snapshot"]["orders"]] == [oid]
    assert out["trade"]["price"]["value"] == "0.5000"
    assert out["trade"]["quantity"]["value"] == "4.0000"
    assert out["position"]["afterPosition"]["netPositionDecimal"] == "4.0000"
    assert out["balance_update"]["balanceChange"]["entryType"].startswith("LEDGER_ENTRY_TYPE_")
    assert out["lite"]["marketSlug"] == sim.markets[2]
    assert out["private_errors"] == [] and out["markets_errors"] == []
    assert out["private_connected"] is True
    assert sim.exchange.get_order(sim.account_id, oid).state is OrderState.FILLED
    assert len(out["markets"]["markets"]) == len(sim.exchange.markets)


async def test_unsigned_bad_signature_and_stale_timestamp_get_401(sim):
    async with httpx.AsyncClient() as http:
        r = await http.get(sim.api_url + "/v1/account/balances")
    assert r.status_code == 401
    out = await trio.to_thread.run_sync(sdk_tour.auth_failures, _creds(sim))
    assert out == {"rest": 401, "ws": 401}
    sim.faults.clock_skew_seconds = 45  # the SDK's honest timestamp is now 45 s stale
    assert await trio.to_thread.run_sync(sdk_tour.stale_request, _creds(sim)) == 401
    sim.faults.clock_skew_seconds = 0
    assert await trio.to_thread.run_sync(sdk_tour.stale_request, _creds(sim)) == "no error"


async def test_sdk_sees_429_past_20_requests_per_second_on_public_endpoints():
    async with running_sim(run_scenario=False) as s:
        outcomes = await trio.to_thread.run_sync(sdk_tour.rate_limited, _creds(s))
    assert outcomes[:20] == ["ok"] * 20 and "429" in outcomes[20:]


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.05)


async def test_orders_created_by_the_fast_path_look_the_same_to_the_sdk_as_httpx_ones(
        sim, mock_clock):
    slug = sim.markets[0]
    config = RestConfig(api_url=sim.api_url, gateway_url=sim.gateway_url, timeout=5.0)
    async with (PolymarketRestClient(config, Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = FastCreate(rest)
        await nursery.start(fast.run)
        with trio.fail_after(5):
            while not fast.warm:
                await trio.sleep(0.01)
        ids: dict[str, tuple[str, str]] = {}
        for intent, price, qty, tif in ((Intent.BUY_LONG, "0.31", "2", TimeInForce.GTC),
                                        (Intent.BUY_SHORT, "0.77", "5", TimeInForce.GTC)):
            req = OrderRequest(slug, intent, Decimal(price), Decimal(qty), tif)
            ids[f"{intent}/{price}"] = (await rest.create_order_httpx(req),
                                        await fast.create_order(req))
        assert fast.creates == 2 and fast.fallbacks == 0
        nursery.cancel_scope.cancel()

    out = await trio.to_thread.run_sync(sdk_tour.open_orders, _creds(sim), slug)
    seen = {o["id"]: o for o in out["orders"]}
    assert set(seen) == {oid for pair in ids.values() for oid in pair}
    volatile = {"id", "createTime", "updateTime", "insertTime", "transactTime"}
    for slow_id, fast_id in ids.values():
        slow = {k: v for k, v in seen[slow_id].items() if k not in volatile}
        quick = {k: v for k, v in seen[fast_id].items() if k not in volatile}
        assert quick == slow
        assert quick["manualOrderIndicator"] == "MANUAL_ORDER_INDICATOR_AUTOMATIC"
