"""The baseline bot: what a user might write instead of polybot, run by `bench.tick_to_order`.

    PM_PRIVATE_KEY=... BASELINE_CONFIG='{...}' .venv/bin/python -m bench.baseline_bot

asyncio, one kept-alive aiohttp session (REST) plus its markets websocket, stdlib `json`, the
decision rule polybot's engine applies (same fair values, minimum edge, fee and Kelly sizing, given
by the benchmark in `BASELINE_CONFIG`), one IOC order per edge, at most one order in flight per
market (until the create's answer). No durability, no logging on the path, no risk limits beyond Kelly: the cheapest honest
order path a script can have. It imports nothing from polybot: the Ed25519 request signing
(``<timestamp ms><METHOD><path>``, three ``X-PM-*`` headers) is copied here as a user would copy
it from the API docs.

The order's fill is learned after the create's answer (GET of the order, in a task of its own,
off the path) to keep the position that decides between opening and closing. The websocket does
not offer permessage-deflate (aiohttp's default would): polybot's client does not either, and the
benchmark finds the frame's bytes in the exchange's socket write.

`BASELINE_CONFIG` (JSON): ``api_url``, ``ws_url``, ``key_id``, ``markets`` ({slug: {"fair",
"theta"}} as decimal strings), ``min_edge``, ``kelly_fraction``, ``bankroll`` and ``ready_file``
(written once every market's first book has arrived). The secret key comes from
``PM_PRIVATE_KEY`` only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ONE = Decimal(1)
MARKETS_PATH = "/v1/ws/markets"
OPEN_STATES = ("ORDER_STATE_PENDING_NEW", "ORDER_STATE_NEW", "ORDER_STATE_PARTIALLY_FILLED")


class Auth:
    """Ed25519 signing of ``<timestamp ms><METHOD><path>`` (Polymarket US)."""

    def __init__(self, key_id: str, secret_b64: str) -> None:
        raw = base64.b64decode(secret_b64)
        self._key = Ed25519PrivateKey.from_private_bytes(raw[:32])
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"Auth(key_id={self.key_id!r})"

    def headers(self, method: str, path: str) -> dict[str, str]:
        ts = str(time.time_ns() // 1_000_000)
        sig = base64.b64encode(self._key.sign((ts + method + path).encode())).decode()
        return {"X-PM-Access-Key": self.key_id, "X-PM-Timestamp": ts, "X-PM-Signature": sig}


def fee(price: Decimal, theta: Decimal) -> Decimal:
    return theta * price * (ONE - price)


def kelly_qty(q: Decimal, cost: Decimal, bankroll: Decimal, kelly_fraction: Decimal,
              at_risk: Decimal, available: Decimal) -> Decimal:
    """Contracts that top the side's money at risk up to kelly_fraction × f × bankroll."""
    if not 0 < cost < 1:
        return Decimal(0)
    f = (q - cost) / (ONE - cost)
    target = kelly_fraction * f * bankroll
    qty = ((target - at_risk) / cost).to_integral_value(ROUND_FLOOR)
    return max(Decimal(0), min(qty, available))


def decide(book: dict[str, Any], q: Decimal, theta: Decimal, min_edge: Decimal,
           position: Decimal, at_risk: Decimal, bankroll: Decimal,
           kelly_fraction: Decimal) -> tuple[str, Decimal, Decimal] | None:
    """(intent, limit price, quantity) for one book, or None. Polybot's rule: every level with
    the edge after the taker fee is swept up to the worst such level; an edge against a held
    position closes it (never opens the other side while it is held); an edge with it tops the
    position up to the Kelly target."""
    if book.get("state") not in (None, "MARKET_STATE_OPEN"):
        return None
    bids, offers = book.get("bids") or (), book.get("offers") or ()
    if bids and offers and Decimal(bids[0]["px"]["value"]) >= Decimal(offers[0]["px"]["value"]):
        return None  # crossed: no market to reason about
    # buy YES at offers a while q - a - fee(a) >= min_edge (or close a NO position)
    limit, avail = None, Decimal(0)
    for lv in offers:
        a = Decimal(lv["px"]["value"])
        if q - a - fee(a, theta) < min_edge:
            break
        limit, avail = a, avail + Decimal(lv["qty"])
    if limit is not None:
        if position < 0:
            return "ORDER_INTENT_SELL_SHORT", limit, min(avail, -position)
        qty = kelly_qty(q, limit + fee(limit, theta), bankroll, kelly_fraction, at_risk, avail)
        return ("ORDER_INTENT_BUY_LONG", limit, qty) if qty > 0 else None
    # sell YES at bids b while (1 - q) - (1 - b) - fee(b) >= min_edge (or close a YES position)
    limit, avail = None, Decimal(0)
    for lv in bids:
        b = Decimal(lv["px"]["value"])
        if (ONE - q) - (ONE - b) - fee(b, theta) < min_edge:
            break
        limit, avail = b, avail + Decimal(lv["qty"])
    if limit is not None:
        if position > 0:
            return "ORDER_INTENT_SELL_LONG", limit, min(avail, position)
        cost = ONE - limit + fee(limit, theta)
        qty = kelly_qty(ONE - q, cost, bankroll, kelly_fraction, at_risk, avail)
        return ("ORDER_INTENT_BUY_SHORT", limit, qty) if qty > 0 else None
    return None


class BaselineBot:
    def __init__(self, cfg: dict[str, Any], auth: Auth) -> None:
        self.cfg = cfg
        self.auth = auth
        self.fair = {s: Decimal(m["fair"]) for s, m in cfg["markets"].items()}
        self.theta = {s: Decimal(m["theta"]) for s, m in cfg["markets"].items()}
        self.min_edge = Decimal(cfg["min_edge"])
        self.kelly_fraction = Decimal(cfg["kelly_fraction"])
        self.bankroll = Decimal(cfg["bankroll"])
        self.position = {s: Decimal(0) for s in self.fair}  # + YES, - NO contracts
        self.at_risk = {s: Decimal(0) for s in self.fair}  # USD paid for the open position
        self.in_flight: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        api = self.cfg["api_url"]
        async with aiohttp.ClientSession(api) as session:
            # a start-up call, as any script makes: it also opens the kept-alive connection
            async with session.get("/v1/account/balances",
                                   headers=self.auth.headers("GET", "/v1/account/balances")) as r:
                r.raise_for_status()
            async with aiohttp.ClientSession() as ws_session, ws_session.ws_connect(
                    self.cfg["ws_url"] + MARKETS_PATH, max_msg_size=0, compress=0,
                    headers=self.auth.headers("GET", MARKETS_PATH)) as ws:
                await ws.send_str(json.dumps({"subscribe": {
                    "requestId": "baseline-1", "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA",
                    "marketSlugs": list(self.fair)}}))
                unseen = set(self.fair)
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    book = json.loads(msg.data).get("marketData")
                    if book is None:
                        continue
                    slug = book.get("marketSlug")
                    if unseen:
                        unseen.discard(slug)
                        if not unseen:
                            Path(self.cfg["ready_file"]).write_text("ready\n")
                    if slug not in self.fair or slug in self.in_flight:
                        continue
                    order = decide(book, self.fair[slug], self.theta[slug], self.min_edge,
                                   self.position[slug], self.at_risk[slug], self.bankroll,
                                   self.kelly_fraction)
                    if order is not None:
                        await self.create(session, slug, *order)

    async def create(self, session: aiohttp.ClientSession, slug: str, intent: str,
                     price: Decimal, qty: Decimal) -> None:
        body = json.dumps({
            "marketSlug": slug, "intent": intent, "type": "ORDER_TYPE_LIMIT",
            "price": {"value": str(price), "currency": "USD"}, "quantity": int(qty),
            "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL",
            "manualOrderIndicator": "MANUAL_ORDER_INDICATOR_AUTOMATIC"})
        self.in_flight.add(slug)
        try:
            async with session.post("/v1/orders", data=body, headers={
                    **self.auth.headers("POST", "/v1/orders"),
                    "Content-Type": "application/json"}) as r:
                answer = await r.json()
        except (aiohttp.ClientError, ValueError):
            return  # outcome unknown: a script would just move on
        finally:
            self.in_flight.discard(slug)
        oid = answer.get("id") if isinstance(answer, dict) else None
        if not oid:
            return
        task = asyncio.create_task(self.learn_fill(session, slug, str(oid), intent))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def learn_fill(self, session: aiohttp.ClientSession, slug: str, oid: str,
                         intent: str) -> None:
        """After the create: how much of the IOC filled, into the position (off the path)."""
        path = f"/v1/order/{oid}"
        try:
            for _ in range(50):
                async with session.get(path, headers=self.auth.headers("GET", path)) as r:
                    order = (await r.json()).get("order") or {}
                if order.get("state") not in OPEN_STATES:
                    break
                await asyncio.sleep(0.005)
            filled = Decimal(str(order.get("cumQuantity") or 0))
            avg = Decimal(str((order.get("avgPx") or {}).get("value") or 0))
            sign = 1 if intent in ("ORDER_INTENT_BUY_LONG", "ORDER_INTENT_SELL_SHORT") else -1
            opening = intent in ("ORDER_INTENT_BUY_LONG", "ORDER_INTENT_BUY_SHORT")
            before = self.position[slug]
            self.position[slug] = before + sign * filled
            if opening:
                cost = avg if intent == "ORDER_INTENT_BUY_LONG" else ONE - avg
                self.at_risk[slug] += filled * cost
            elif before:
                self.at_risk[slug] *= abs(self.position[slug]) / abs(before)
        except (aiohttp.ClientError, ValueError):
            pass


def main() -> None:
    cfg = json.loads(os.environ["BASELINE_CONFIG"])
    auth = Auth(cfg["key_id"], os.environ["PM_PRIVATE_KEY"])
    asyncio.run(BaselineBot(cfg, auth).run())


if __name__ == "__main__":
    main()
