"""The sim's REST face over loopback: paths, shapes, status codes, auth and rate limits."""

from __future__ import annotations

import email.utils
import time
from decimal import Decimal

import httpx
import pytest

from polybot.model import MarketState
from polybot.sim.harness import running_sim

from .helpers import Api, now_ms


@pytest.fixture
async def sim():
    async with running_sim(seed=3, run_scenario=False, rate_limit=None) as s:
        yield s


@pytest.fixture
async def api(sim):
    async with httpx.AsyncClient(timeout=5) as http:
        yield Api(sim, http)


@pytest.fixture
async def other(sim, api):
    key = sim.create_account(Decimal("5000"))
    return Api(sim, api.http, key.key_id, key.secret_key)


BUY = "ORDER_INTENT_BUY_LONG"
SELL = "ORDER_INTENT_SELL_LONG"
SHORT = "ORDER_INTENT_BUY_SHORT"


async def test_markets_list_and_lookups_match_exchange(sim, api):
    r = await api.public("/v1/markets")
    assert r.status_code == 200
    markets = r.json()["markets"]
    assert [m["slug"] for m in markets] == sorted(
        sim.exchange.markets, key=lambda s: sim.exchange.markets[s].market_id
    )
    m0 = markets[0]
    ex_m = sim.exchange.markets[m0["slug"]]
    assert m0["id"] == str(ex_m.market_id)
    assert m0["orderPriceMinTickSize"] == 0.01 and m0["minimumTradeQty"] == 1
    assert m0["active"] is True and m0["status"] == "MARKET_STATUS_OPEN"
    assert {s["long"] for s in m0["marketSides"]} == {True, False}
    by_slug = (await api.public(f"/v1/market/slug/{m0['slug']}")).json()["market"]
    by_id = (await api.public(f"/v1/market/id/{m0['id']}")).json()["market"]
    assert by_slug["slug"] == by_id["slug"] == m0["slug"]
    only = (await api.public("/v1/markets", params=[("slug", m0["slug"])])).json()["markets"]
    assert [m["slug"] for m in only] == [m0["slug"]]


async def test_unknown_market_and_event_are_404_with_grpc_error_body(api):
    for path in (
        "/v1/market/slug/nope",
        "/v1/market/id/424242",
        "/v1/markets/nope/book",
        "/v1/markets/nope/bbo",
        "/v1/events/slug/nope",
        "/v1/events/424242",
        "/v1/partners/opticodds/events/nope",
    ):
        r = await api.public(path)
        assert r.status_code == 404, path
        body = r.json()
        assert body["code"] == 5 and body["message"] and body["details"] == []


async def test_book_and_bbo_show_resting_orders_best_first_as_4_decimal_strings(sim, api):
    slug = sim.markets[0]
    for price in ("0.40", "0.42", "0.41"):
        await api.order(slug, BUY, price, 5)
    await api.order(slug, SHORT, "0.60", 7)  # BUY_SHORT rests as an offer at the YES price
    book = (await api.public(f"/v1/markets/{slug}/book")).json()["marketData"]
    assert [lv["px"]["value"] for lv in book["bids"]] == ["0.4200", "0.4100", "0.4000"]
    assert book["bids"][0]["qty"] == "5.0000"
    assert book["offers"] == [{"px": {"value": "0.6000", "currency": "USD"}, "qty": "7.0000"}]
    assert book["state"] == "MARKET_STATE_OPEN"
    bbo = (await api.public(f"/v1/markets/{slug}/bbo")).json()["marketData"]
    assert bbo["bestBid"]["value"] == "0.4200" and bbo["bestAsk"]["value"] == "0.6000"
    assert bbo["bidDepth"] == 3 and bbo["askDepth"] == 1
    assert bbo["bidShares"] == "15" and bbo["askShares"] == "7"


async def test_book_is_capped_at_ten_levels_a_side(sim, api):
    slug = sim.markets[1]
    for i in range(12):
        await api.order(slug, BUY, f"0.{10 + i}", 1)
    bids = (await api.public(f"/v1/markets/{slug}/book")).json()["marketData"]["bids"]
    assert len(bids) == 10 and bids[0]["px"]["value"] == "0.2100"


async def test_settlement_is_404_until_settled_then_a_number(sim, api):
    slug = sim.markets[0]
    assert (await api.public(f"/v1/markets/{slug}/settlement")).status_code == 404
    sim.exchange.settle(slug, Decimal("0.5"))
    r = await api.public(f"/v1/markets/{slug}/settlement")
    assert r.status_code == 200 and r.json() == {"slug": slug, "settlement": 0.5}


async def test_events_and_partner_lookup_map_opticodds_selections(sim, api):
    events = (await api.public("/v1/events")).json()["events"]
    assert len(events) == len(sim.world.games)
    game = sim.world.games[0]
    by_slug = (await api.public(f"/v1/events/slug/{game.event_slug}")).json()["event"]
    by_id = (await api.public(f"/v1/events/{game.event_id}")).json()["event"]
    assert by_slug["id"] == by_id["id"] == str(game.event_id)
    assert by_slug["markets"][0]["slug"] == game.market_slug
    providers = {p["providerId"] for t in by_slug["teams"] for p in t["providerIds"]}
    assert providers == {game.home.opticodds_id, game.away.opticodds_id}
    r = (await api.public(f"/v1/partners/opticodds/events/{game.fixture_id}")).json()
    assert r["event"]["slug"] == game.event_slug
    sides = {s["externalNormalizedSelection"]: s for s in r["mappedMarketSides"]}
    assert set(sides) == {game.home.normalized, game.away.normalized}
    market_sides = {s["id"]: s for s in r["event"]["markets"][0]["marketSides"]}
    long_sel = sides[game.long_team.normalized]
    assert market_sides[str(long_sel["marketSideId"])]["long"] is True
    assert market_sides[str(sides[game.short_team.normalized]["marketSideId"])]["long"] is False
    assert long_sel["externalMarketType"] == "moneyline"
    assert long_sel["marketId"] == game.market_id and long_sel["externalEventId"] == game.fixture_id


async def test_each_host_serves_only_its_own_routes(sim, api):
    r = await api.http.get(sim.api_url + "/v1/markets")
    assert r.status_code == 404
    path = "/v1/account/balances"
    r = await api.http.get(sim.gateway_url + path, headers=api.headers("GET", path))
    assert r.status_code == 404


async def test_one_host_mode_serves_both_route_tables():
    async with running_sim(run_scenario=False, two_hosts=False, rate_limit=None) as s:
        assert s.api_url == s.gateway_url
        async with httpx.AsyncClient() as http:
            a = Api(s, http)
            assert (await http.get(s.api_url + "/v1/markets")).status_code == 200
            assert (await a.get("/v1/account/balances")).status_code == 200


async def test_every_response_has_a_date_header_from_the_server_clock(api):
    r = await api.public("/v1/markets")
    sent = email.utils.parsedate_to_datetime(r.headers["date"]).timestamp()
    assert abs(sent - time.time()) < 5


async def test_order_level_problems_are_200_then_rejected(sim, api):
    slug = sim.markets[0]
    cases = {
        "1.5": "ORD_REJECT_REASON_PRICE_OUT_OF_BOUNDS",
        "0.555": "ORD_REJECT_REASON_INVALID_PRICE_INCREMENT",
    }
    for price, reason in cases.items():
        r = await api.post(
            "/v1/orders",
            {
                "marketSlug": slug,
                "intent": BUY,
                "type": "ORDER_TYPE_LIMIT",
                "price": {"value": price, "currency": "USD"},
                "quantity": 1,
                "synchronousExecution": True,
            },
        )
        assert r.status_code == 200
        (execution,) = r.json()["executions"]
        assert execution["type"] == "EXECUTION_TYPE_REJECTED"
        assert execution["orderRejectReason"] == reason
        order = (await api.get(f"/v1/order/{r.json()['id']}")).json()["order"]
        assert order["state"] == "ORDER_STATE_REJECTED"
    assert len(sim.exchange.orders_accepted) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"intent": BUY, "price": {"value": "0.5", "currency": "USD"}, "quantity": 1},
        {"marketSlug": "x", "intent": BUY, "price": "0.5", "quantity": 1},
        {"marketSlug": "x", "intent": BUY, "price": {"value": "abc"}, "quantity": 1},
        {"marketSlug": "x", "intent": BUY, "quantity": "lots"},
        {"marketSlug": "x", "intent": BUY, "goodTillTime": "tomorrow"},
    ],
)
async def test_malformed_create_is_400_and_reaches_no_engine(sim, api, body):
    r = await api.post("/v1/orders", body)
    assert r.status_code == 400 and r.json()["code"] == 3
    assert sim.exchange.orders_accepted == []


async def test_invalid_json_body_is_400(sim, api):
    r = await api.http.post(
        sim.api_url + "/v1/orders", content=b"{nope", headers=api.headers("POST", "/v1/orders")
    )
    assert r.status_code == 400


async def test_batch_create_is_atomic_on_shape_errors_and_ordered_on_success(sim, api):
    slug = sim.markets[0]
    good = {
        "marketSlug": slug,
        "intent": BUY,
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": "0.30", "currency": "USD"},
        "quantity": 1,
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
    }
    for orders in ([good] * 21, [], [good, {"intent": BUY}]):
        r = await api.post("/v1/orders/batched", {"orders": orders})
        assert r.status_code == 400
    assert sim.exchange.orders_accepted == []
    r = await api.post("/v1/orders/batched", {"orders": [good, {**good, "quantity": 2}]})
    ids = r.json()["createdOrderIds"]
    assert [a.order_id for a in sim.exchange.orders_accepted] == ids
    assert [sim.exchange.get_order(sim.account_id, i).quantity for i in ids] == [1, 2]


async def test_cancel_paths(sim, api):
    slug = sim.markets[0]
    a, b, c, d = [await api.order(slug, BUY, "0.30", 1) for _ in range(4)]
    r = await api.post(
        "/v1/orders/batched/cancel",
        {
            "orders": [
                {"orderId": a, "marketSlug": slug},
                {"orderId": "unknown", "marketSlug": slug},
            ]
        },
    )
    assert r.json() == {"canceledOrderIds": [a, "unknown"]}
    assert (
        await api.post("/v1/orders/batched/cancel", {"orders": [{"orderId": b}]})
    ).status_code == 400
    assert (await api.post(f"/v1/order/{b}/cancel", {})).status_code == 400
    assert (await api.post(f"/v1/order/{b}/cancel", {"marketSlug": slug})).json() == {}
    assert (await api.post("/v1/order/nope/cancel", {"marketSlug": slug})).status_code == 404
    r = await api.post("/v1/orders/open/cancel", {"slugs": [sim.markets[1]]})
    assert r.json() == {"canceledOrderIds": []}
    r = await api.post("/v1/orders/open/cancel", {})
    assert sorted(r.json()["canceledOrderIds"]) == sorted([c, d])
    open_ = (await api.get("/v1/orders/open")).json()["orders"]
    assert open_ == []
    states = {(await api.get(f"/v1/order/{i}")).json()["order"]["state"] for i in (a, b, c, d)}
    assert states == {"ORDER_STATE_CANCELED"}


async def test_open_orders_filter_by_slugs_and_get_order_404(sim, api):
    a = await api.order(sim.markets[0], BUY, "0.30", 1)
    b = await api.order(sim.markets[1], BUY, "0.30", 1)
    all_ids = [o["id"] for o in (await api.get("/v1/orders/open")).json()["orders"]]
    assert sorted(all_ids) == sorted([a, b])
    only = (await api.get("/v1/orders/open", params=[("slugs", sim.markets[1])])).json()["orders"]
    assert [o["id"] for o in only] == [b]
    assert (await api.get("/v1/order/o-nope")).status_code == 404


async def test_orders_of_another_account_are_invisible(sim, api, other):
    oid = await other.order(sim.markets[0], BUY, "0.30", 1)
    assert (await api.get(f"/v1/order/{oid}")).status_code == 404
    assert (
        await api.post(f"/v1/order/{oid}/cancel", {"marketSlug": sim.markets[0]})
    ).status_code == 404


async def test_modify_reprices_and_batched_modify_echoes(sim, api):
    slug = sim.markets[0]
    oid = await api.order(slug, BUY, "0.30", 2)
    r = await api.post(
        f"/v1/order/{oid}/modify",
        {"marketSlug": slug, "price": {"value": "0.35", "currency": "USD"}},
    )
    assert r.status_code == 200 and r.json() == {}
    order = (await api.get(f"/v1/order/{oid}")).json()["order"]
    assert order["price"]["value"] == "0.3500"
    r = await api.post(
        "/v1/orders/batched/modify",
        {"orders": [{"orderId": oid, "marketSlug": slug, "quantity": 5}]},
    )
    assert r.json() == {"modifiedOrderIds": [oid]}
    assert (await api.get(f"/v1/order/{oid}")).json()["order"]["quantity"] == 5
    assert (await api.post("/v1/order/nope/modify", {"marketSlug": slug})).status_code == 404


async def test_preview_places_nothing_and_prices_against_the_book(sim, api, other):
    slug = sim.markets[0]
    await other.order(slug, SHORT, "0.60", 10)
    body = {
        "request": {
            "marketSlug": slug,
            "intent": BUY,
            "type": "ORDER_TYPE_LIMIT",
            "price": {"value": "0.65", "currency": "USD"},
            "quantity": 4,
        }
    }
    r = await api.post("/v1/order/preview", body)
    order = r.json()["order"]
    assert order["avgPx"]["value"] == "0.6000"
    assert order["commissionNotionalTotalCollected"]["value"] == "0.0700"  # 0.0695*4*.6*.4=0.0667
    assert len(sim.exchange.orders_accepted) == 1  # only the maker's order
    assert (await api.get("/v1/orders/open")).json()["orders"] == []


async def test_fill_updates_positions_activities_and_balances(sim, api, other):
    slug = sim.markets[0]
    await other.order(slug, SHORT, "0.60", 10)
    r = await api.post(
        "/v1/orders",
        {
            "marketSlug": slug,
            "intent": BUY,
            "type": "ORDER_TYPE_LIMIT",
            "price": {"value": "0.60", "currency": "USD"},
            "quantity": 4,
            "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL",
            "synchronousExecution": True,
        },
    )
    types = [x["type"] for x in r.json()["executions"]]
    assert types[-1] == "EXECUTION_TYPE_FILL"
    fill = r.json()["executions"][-1]
    assert fill["lastShares"] == "4.0000" and fill["aggressor"] is True and fill["tradeId"]
    assert fill["commissionNotionalCollected"]["value"] == "0.0700"
    pos = (await api.get("/v1/portfolio/positions")).json()
    assert pos["eof"] is True
    p = pos["positions"][slug]
    assert p["netPosition"] == "4" and p["netPositionDecimal"] == "4.0000"
    assert p["cost"]["value"] == "2.4000" and p["marketMetadata"]["slug"] == slug
    acts = (await api.get("/v1/portfolio/activities")).json()
    trade = next(a for a in acts["activities"] if a["type"] == "ACTIVITY_TYPE_TRADE")["trade"]
    assert trade["id"] == fill["tradeId"] and trade["qtyDecimal"] == "4.0000"
    bal = (await api.get("/v1/account/balances")).json()["balances"][0]
    assert bal["currentBalance"] == pytest.approx(10000 - 2.4 - 0.07)
    assert bal["buyingPower"] == pytest.approx(
        bal["currentBalance"] + bal["assetAvailable"] - bal["openOrders"] - bal["marginRequirement"]
    )


async def test_close_position_flattens_with_a_market_order(sim, api, other):
    slug = sim.markets[0]
    await other.order(slug, SHORT, "0.60", 3)
    await api.order(slug, BUY, "0.60", 3)
    await other.order(slug, BUY, "0.55", 5)
    r = await api.post("/v1/order/close-position", {"marketSlug": slug})
    oid = r.json()["id"]
    order = (await api.get(f"/v1/order/{oid}")).json()["order"]
    assert order["intent"] == SELL and order["type"] == "ORDER_TYPE_MARKET"
    assert order["state"] == "ORDER_STATE_FILLED"
    pos = (await api.get("/v1/portfolio/positions")).json()["positions"][slug]
    assert pos["netPositionDecimal"] == "0.0000"


async def test_positions_and_activities_page_with_cursor_until_eof(sim, api, other):
    for slug in sim.markets[:3]:
        await other.order(slug, SHORT, "0.50", 1)
        await api.order(slug, BUY, "0.50", 1)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/portfolio/positions", params=params)).json()
        seen += list(page["positions"])
        if page["eof"]:
            break
        cursor = page["nextCursor"]
    assert seen == sorted(sim.markets[:3])
    acts = (await api.get("/v1/portfolio/activities", params={"limit": 2})).json()
    assert len(acts["activities"]) == 2 and acts["eof"] is False and acts["nextCursor"]
    only = (await api.get("/v1/portfolio/positions", params={"market": sim.markets[1]})).json()
    assert list(only["positions"]) == [sim.markets[1]]
    assert (await api.get("/v1/portfolio/positions", params={"cursor": "%%%"})).status_code == 400


async def test_unsigned_stale_and_foreign_signatures_are_401(sim, api):
    path = "/v1/account/balances"
    assert (await api.http.get(sim.api_url + path)).status_code == 401
    stale = api.headers("GET", path, ts=now_ms() - 31_000)
    r = await api.http.get(sim.api_url + path, headers=stale)
    assert r.status_code == 401 and r.json()["code"] == 16
    wrong_path = api.headers("GET", "/v1/portfolio/positions")
    assert (await api.http.get(sim.api_url + path, headers=wrong_path)).status_code == 401
    with_query = api.headers("GET", "/v1/orders/open?slugs=a")
    r = await api.http.get(sim.api_url + "/v1/orders/open?slugs=a", headers=with_query)
    assert r.status_code == 401


async def test_rate_limit_is_20_per_second_per_key_and_per_ip():
    async with running_sim(run_scenario=False) as s, httpx.AsyncClient() as http:
        a = Api(s, http)
        codes = [(await a.get("/v1/account/balances")).status_code for _ in range(22)]
        assert codes[:20] == [200] * 20 and 429 in codes[20:]
        r = await a.get("/v1/account/balances")
        assert r.json()["code"] == 8 or r.status_code == 200
        k2 = s.create_account()
        b = Api(s, http, k2.key_id, k2.secret_key)
        assert (await b.get("/v1/account/balances")).status_code == 200  # per key, not global
        pub = [(await a.public("/v1/markets")).status_code for _ in range(22)]
        assert pub[:20] == [200] * 20 and 429 in pub[20:]


async def test_market_reopen_state_visible_on_rest(sim, api):
    slug = sim.markets[0]
    sim.exchange.set_market_state(slug, MarketState.SUSPENDED)
    m = (await api.public(f"/v1/market/slug/{slug}")).json()["market"]
    assert m["active"] is False
    oid = await api.order(slug, BUY, "0.30", 1)
    assert (await api.get(f"/v1/order/{oid}")).json()["order"]["state"] == "ORDER_STATE_REJECTED"
