"""Drives of the official `polymarket-us` SDK, run in a worker thread (the SDK is asyncio/sync).

Each function takes plain values (URLs, keys, slugs), talks to the sim only through the SDK, and
returns what the SDK handed back, so the Trio side can compare it with the sim's own state.
Nothing here touches the sim's objects: it runs on another thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from polymarket_us import AsyncPolymarketUS, PolymarketUS
from polymarket_us.errors import AuthenticationError, NotFoundError, RateLimitError


def _order(slug: str, intent: str, price: str, qty: float, tif: str = "GOOD_TILL_CANCEL") -> dict:
    return {
        "marketSlug": slug,
        "intent": intent,
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": price, "currency": "USD"},
        "quantity": qty,
        "tif": f"TIME_IN_FORCE_{tif}",
        "manualOrderIndicator": "MANUAL_ORDER_INDICATOR_AUTOMATIC",
    }


def sync_tour(c: dict[str, Any]) -> dict[str, Any]:
    """Every REST endpoint the SDK exposes (and the sim serves), through the sync client."""
    out: dict[str, Any] = {}
    slug, slug2 = c["markets"][0], c["markets"][1]
    with PolymarketUS(
        key_id=c["key_id"],
        secret_key=c["secret_key"],
        gateway_base_url=c["gateway_url"],
        api_base_url=c["api_url"],
        timeout=5,
        max_retries=0,
    ) as client:
        out["markets"] = client.markets.list({"limit": 50})
        out["markets_filtered"] = client.markets.list({"slug": [slug2], "active": True})
        out["market_by_slug"] = client.markets.retrieve_by_slug(slug)
        out["market_by_id"] = client.markets.retrieve(int(out["market_by_slug"]["market"]["id"]))
        out["book"] = client.markets.book(slug)
        out["bbo"] = client.markets.bbo(slug)
        try:
            client.markets.settlement(slug)
            out["settlement_unsettled"] = "no error"
        except NotFoundError as e:
            out["settlement_unsettled"] = e.status_code
        out["settlement_settled"] = client.markets.settlement(c["settled"])
        out["events"] = client.events.list({"limit": 10})
        event = out["events"]["events"][0]
        out["event_by_id"] = client.events.retrieve(int(event["id"]))
        out["event_by_slug"] = client.events.retrieve_by_slug(event["slug"])

        created = client.orders.create(_order(slug, "ORDER_INTENT_BUY_LONG", "0.30", 2))
        out["created"] = created
        oid = created["id"]
        client.orders.modify(
            oid, {"marketSlug": slug, "price": {"value": "0.31", "currency": "USD"}}
        )
        out["retrieved"] = client.orders.retrieve(oid)
        out["open"] = client.orders.list({"slugs": [slug]})
        out["preview"] = client.orders.preview(
            {"request": _order(slug, "ORDER_INTENT_BUY_LONG", "0.70", 1)}
        )
        out["cancel_one"] = client.orders.cancel(oid, {"marketSlug": slug})
        many = client.orders.create_many(
            {
                "orders": [
                    _order(slug2, "ORDER_INTENT_BUY_LONG", "0.20", 1),
                    _order(slug2, "ORDER_INTENT_BUY_SHORT", "0.90", 1),
                ]
            }
        )
        out["create_many"] = many
        ids = many["createdOrderIds"]
        out["modify_many"] = client.orders.modify_many(
            {"orders": [{"orderId": ids[0], "marketSlug": slug2, "quantity": 3}]}
        )
        out["cancel_many"] = client.orders.cancel_many(
            {"orders": [{"orderId": ids[0], "marketSlug": slug2}]}
        )
        out["cancel_all"] = client.orders.cancel_all({"slugs": [slug2]})
        # Take the counterparty's offer so there is a position to page and to close.
        out["taker"] = client.orders.create(
            {
                **_order(slug, "ORDER_INTENT_BUY_LONG", "0.60", 3, "IMMEDIATE_OR_CANCEL"),
                "synchronousExecution": True,
            }
        )
        out["positions"] = client.portfolio.positions({"limit": 100})
        out["activities"] = client.portfolio.activities({"limit": 10})
        out["balances"] = client.account.balances()
        out["close"] = client.orders.close_position({"marketSlug": slug})
        out["positions_after_close"] = client.portfolio.positions({"market": slug})
    return out


def async_tour(c: dict[str, Any]) -> dict[str, Any]:
    """The async client on a few endpoints, its markets websocket and its private websocket."""
    return asyncio.run(_async_tour(c))


async def _wait_for(events: list, pred, timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for e in events:
            if pred(e):
                return e
        await asyncio.sleep(0.01)
    raise TimeoutError("no matching websocket event")


async def _async_tour(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    slug = c["markets"][2]
    me = AsyncPolymarketUS(
        key_id=c["key_id"],
        secret_key=c["secret_key"],
        gateway_base_url=c["gateway_url"],
        api_base_url=c["api_url"],
        timeout=5,
        max_retries=0,
    )
    them = AsyncPolymarketUS(
        key_id=c["other_key_id"],
        secret_key=c["other_secret_key"],
        gateway_base_url=c["gateway_url"],
        api_base_url=c["api_url"],
        timeout=5,
        max_retries=0,
    )
    try:
        out["markets"] = await me.markets.list()
        out["bbo"] = await me.markets.bbo(slug)
        out["balances"] = await me.account.balances()

        events: dict[str, list] = {
            k: []
            for k in (
                "order_update",
                "order_snapshot",
                "position_update",
                "account_balance_snapshot",
                "account_balance_update",
                "heartbeat",
                "error",
                "market_data",
                "market_data_lite",
                "trade",
                "markets_heartbeat",
                "markets_error",
            )
        }
        private = me.ws.private()
        for name in (
            "order_update",
            "order_snapshot",
            "position_update",
            "account_balance_snapshot",
            "account_balance_update",
            "error",
        ):
            private.on(name, lambda m, n=name: events[n].append(m))
        private.on("heartbeat", lambda: events["heartbeat"].append({}))
        markets = me.ws.markets()
        for name in ("market_data", "market_data_lite", "trade"):
            markets.on(name, lambda m, n=name: events[n].append(m))
        markets.on("heartbeat", lambda: events["markets_heartbeat"].append({}))
        markets.on("error", lambda e: events["markets_error"].append(e))
        await private.connect()
        await markets.connect()
        await private.subscribe_orders("orders")
        await private.subscribe_positions("positions")
        await private.subscribe_account_balance("balances")
        await markets.subscribe_market_data("md", [slug])
        await markets.subscribe_market_data_lite("lite", [slug])
        await markets.subscribe_trades("trades", [slug])
        await _wait_for(events["market_data"], lambda m: True)
        await _wait_for(events["account_balance_snapshot"], lambda m: True)

        created = await me.orders.create(_order(slug, "ORDER_INTENT_BUY_LONG", "0.50", 4))
        oid = created["id"]
        out["order_id"] = oid
        new = await _wait_for(
            events["order_update"],
            lambda m: m["orderSubscriptionUpdate"]["execution"]["order"]["id"] == oid,
        )
        out["first_execution"] = new["orderSubscriptionUpdate"]["execution"]
        await private.subscribe_all("snap", "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT")
        snap = await _wait_for(events["order_snapshot"], lambda m: True)
        out["snapshot"] = snap["orderSubscriptionSnapshot"]
        await _wait_for(
            events["market_data"],
            lambda m: any(b["px"]["value"] == "0.5000" for b in m["marketData"]["bids"]),
        )
        await them.orders.create(_order(slug, "ORDER_INTENT_BUY_SHORT", "0.50", 4))
        fill = await _wait_for(
            events["order_update"],
            lambda m: (
                m["orderSubscriptionUpdate"]["execution"]["order"]["id"] == oid
                and m["orderSubscriptionUpdate"]["execution"]["type"] == "EXECUTION_TYPE_FILL"
            ),
        )
        out["fill"] = fill["orderSubscriptionUpdate"]["execution"]
        out["order_types_seen"] = [
            m["orderSubscriptionUpdate"]["execution"]["type"]
            for m in events["order_update"]
            if m["orderSubscriptionUpdate"]["execution"]["order"]["id"] == oid
        ]
        out["trade"] = (await _wait_for(events["trade"], lambda m: True))["trade"]
        out["position"] = (await _wait_for(events["position_update"], lambda m: True))[
            "positionSubscription"
        ]
        out["balance_update"] = (await _wait_for(events["account_balance_update"], lambda m: True))[
            "accountBalancesUpdate"
        ]
        out["lite"] = (await _wait_for(events["market_data_lite"], lambda m: True))[
            "marketDataLite"
        ]
        await _wait_for(events["heartbeat"], lambda m: True)
        await _wait_for(events["markets_heartbeat"], lambda m: True)
        out["private_errors"] = [str(e) for e in events["error"]]
        out["markets_errors"] = [str(e) for e in events["markets_error"]]
        out["private_connected"] = private.is_connected
        await private.close()
        await markets.close()
    finally:
        await me.close()
        await them.close()
    return out


def auth_failures(c: dict[str, Any]) -> dict[str, Any]:
    """What the SDK reports for a wrong secret, and a websocket upgrade with one."""
    out: dict[str, Any] = {}
    bad = PolymarketUS(
        key_id=c["key_id"],
        secret_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        gateway_base_url=c["gateway_url"],
        api_base_url=c["api_url"],
        max_retries=0,
    )
    try:
        bad.account.balances()
        out["rest"] = "no error"
    except AuthenticationError as e:
        out["rest"] = e.status_code
    finally:
        bad.close()

    async def ws() -> Any:
        client = AsyncPolymarketUS(
            key_id=c["key_id"],
            secret_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            api_base_url=c["api_url"],
        )
        sock = client.ws.private()
        try:
            await sock.connect()
            return "connected"
        except Exception as e:  # websockets' InvalidStatus carries the HTTP response
            return getattr(getattr(e, "response", None), "status_code", repr(e))
        finally:
            await client.close()

    out["ws"] = asyncio.run(ws())
    return out


def stale_request(c: dict[str, Any]) -> Any:
    with PolymarketUS(
        key_id=c["key_id"],
        secret_key=c["secret_key"],
        gateway_base_url=c["gateway_url"],
        api_base_url=c["api_url"],
        max_retries=0,
    ) as client:
        try:
            client.account.balances()
            return "no error"
        except AuthenticationError as e:
            return e.status_code


def rate_limited(c: dict[str, Any]) -> list[str]:
    with PolymarketUS(gateway_base_url=c["gateway_url"], max_retries=0) as client:
        outcomes = []
        for _ in range(25):
            try:
                client.markets.list({"limit": 1})
                outcomes.append("ok")
            except RateLimitError:
                outcomes.append("429")
        return outcomes


def open_orders(c: dict[str, Any], slug: str) -> dict[str, Any]:
    """The SDK's view of the open orders in `slug` (one `orders.list`)."""
    with PolymarketUS(
        key_id=c["key_id"],
        secret_key=c["secret_key"],
        gateway_base_url=c["gateway_url"],
        api_base_url=c["api_url"],
        max_retries=0,
    ) as client:
        return client.orders.list({"slugs": [slug]})
