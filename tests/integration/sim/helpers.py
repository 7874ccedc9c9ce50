"""Plain httpx / trio-websocket clients for the sim's tests (deliberately not polybot.polymarket)."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from polybot.sim.auth import signed_headers
from polybot.sim.harness import SimHandle


def now_ms() -> int:
    return int(time.time() * 1000)


class Api:
    """A signed client for one account of a running sim."""

    def __init__(self, sim: SimHandle, http: httpx.AsyncClient, key_id: str = "", secret: str = ""):
        self.sim = sim
        self.http = http
        self.key_id = key_id or sim.key_id
        self.secret = secret or sim.secret_key

    def headers(self, method: str, path: str, ts: int | None = None) -> dict[str, str]:
        return signed_headers(
            self.key_id, self.secret, method, path, now_ms() if ts is None else ts
        )

    async def get(self, path: str, params: Any = None) -> httpx.Response:
        return await self.http.get(
            self.sim.api_url + path, params=params, headers=self.headers("GET", path)
        )

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.http.post(
            self.sim.api_url + path, json=body or {}, headers=self.headers("POST", path)
        )

    async def public(self, path: str, params: Any = None) -> httpx.Response:
        return await self.http.get(self.sim.gateway_url + path, params=params)

    async def order(self, slug: str, intent: str, price: str, qty: float, **extra: Any) -> str:
        body = {
            "marketSlug": slug,
            "intent": intent,
            "type": "ORDER_TYPE_LIMIT",
            "price": {"value": price, "currency": "USD"},
            "quantity": qty,
            "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
            **extra,
        }
        r = await self.post("/v1/orders", body)
        assert r.status_code == 200, r.text
        return r.json()["id"]


@asynccontextmanager
async def ws_connect(sim: SimHandle, path: str, key_id: str = "", secret: str = ""):
    headers = signed_headers(key_id or sim.key_id, secret or sim.secret_key, "GET", path, now_ms())
    async with open_websocket_url(sim.ws_url + path, extra_headers=list(headers.items())) as ws:
        yield ws


async def subscribe(ws, request_id: str, sub_type: str, slugs: list[str] | None = None) -> None:
    req: dict[str, Any] = {"requestId": request_id, "subscriptionType": sub_type}
    if slugs is not None:
        req["marketSlugs"] = slugs
    await ws.send_message(json.dumps({"subscribe": req}))


async def next_frame(ws, key: str, timeout: float = 3.0, skip_heartbeats: bool = True) -> dict:
    """The next frame carrying payload `key` (other frames are skipped)."""
    with trio.fail_after(timeout):
        while True:
            frame = json.loads(await ws.get_message())
            if key in frame:
                return frame
            if not skip_heartbeats and "heartbeat" in frame:
                return frame


async def frames_for(ws, seconds: float) -> list[str]:
    """Every raw frame received within `seconds`."""
    out: list[str] = []
    with trio.move_on_after(seconds):
        while True:
            out.append(await ws.get_message())
    return out
