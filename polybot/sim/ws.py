"""The two websocket endpoints of the local exchange: ``/v1/ws/markets`` and ``/v1/ws/private``.

Served as ASGI ``websocket`` scopes (hypercorn). Authentication happens on the upgrade request,
exactly like REST (the ``X-PM-*`` headers signed over ``GET/v1/ws/...``); a failed upgrade gets an
HTTP 401 with the usual JSON error body through the ASGI websocket denial-response extension, and
during maintenance a 503. There is no auth message inside the socket.

One `WsConnection` per socket runs three tasks: a reader (subscribe / unsubscribe requests), a
writer draining a bounded outbound queue, and a heartbeat ticker sending ``{"heartbeat": {}}``
every ``heartbeat_seconds``. Everything a socket will send goes through its queue, so frames of
one socket leave in the order they were produced (the real gateway promises in-order delivery).
A consumer so slow that its queue fills is disconnected (close 1008) rather than silently
skipped: a lost frame is worse than a reconnect.

`WsHub` is the fan-out: the exchange adapter (server.py) tells it what changed (a market's book,
a trade, an execution, a position, a balance) and it builds each subscriber's frame. Payloads
are produced by a `WsSource` (wire-encoded dicts), so this module knows the envelope and the
subscription rules but not the engine.

Protocol choices where the reference is silent (§4, §14):
- No subscribe/unsubscribe acknowledgement frames.
- MARKET_DATA / MARKET_DATA_LITE: one full frame per market right after subscribe, then one on
  every change of that market (``responsesDebounced`` is accepted and ignored).
- ORDER streams updates only; ORDER_SNAPSHOT sends the open orders in frames of at most
  ``snapshot_page_size`` orders, the last with ``eof: true`` (also when there are none), and then
  the subscription is finished. ORDER also accepts an optional snapshot (``order_snapshot_on_order``)
  because older docs describe one.
- POSITION sends changes only, no snapshot (as SDK 2.4.1 documents for the current gateway).
- ACCOUNT_BALANCE sends ``accountBalancesSnapshot`` first, then ``accountBalancesUpdate``.
- Error frames are ``{"requestId", "subscriptionType", "error": "<text>"}``: invalid JSON,
  unknown request, unknown or wrong-socket subscription type, missing or more than 100
  ``marketSlugs`` on market data, duplicate live ``requestId``, unknown market slugs (the known
  ones of the same request are still subscribed).
- ``unsubscribe`` of a live ``requestId`` ends that subscription at once (no frame of it follows;
  no acknowledgement); one socket holds any number of subscriptions, each answered on its own.
- Fault ``Faults.unanswer_subscriptions``: a market-data subscription silently leaves a slug out
  (no snapshot, no later frame, no error), so a client's re-send path can be exercised.
- Only private frames ever carry ``"error": ""`` (the official markets-socket handler would
  treat any ``error`` key as an error; the private one tests truthiness).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from typing import Any, Protocol

import attrs
import orjson
import trio

from polybot.sim.faults import Faults

log = logging.getLogger(__name__)

MARKETS_PATH = "/v1/ws/markets"
PRIVATE_PATH = "/v1/ws/private"
MAX_SLUGS_PER_SUBSCRIPTION = 100

MARKET_TYPES = frozenset(
    {
        "SUBSCRIPTION_TYPE_MARKET_DATA",
        "SUBSCRIPTION_TYPE_MARKET_DATA_LITE",
        "SUBSCRIPTION_TYPE_TRADE",
    }
)
PRIVATE_TYPES = frozenset(
    {
        "SUBSCRIPTION_TYPE_ORDER",
        "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT",
        "SUBSCRIPTION_TYPE_POSITION",
        "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE",
        "SUBSCRIPTION_TYPE_RFQ",
    }
)

ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]


class WsSource(Protocol):
    """What the sockets need from the exchange, already wire-encoded."""

    def market_exists(self, slug: str) -> bool: ...
    def market_data(self, slug: str) -> dict[str, Any]: ...
    def market_data_lite(self, slug: str) -> dict[str, Any]: ...
    def open_orders(self, account_id: str, slugs: frozenset[str]) -> list[dict[str, Any]]: ...
    def balances(self, account_id: str) -> list[dict[str, Any]]: ...


@attrs.define
class WsSettings:
    heartbeat_seconds: float = 10.0
    queue_size: int = 10_000
    snapshot_page_size: int = 100
    order_snapshot_on_order: bool = False


@attrs.define(eq=False)
class Subscription:
    request_id: str
    sub_type: str
    slugs: frozenset[str]  # empty = every market (private types only)

    def covers(self, slug: str) -> bool:
        if self.sub_type in MARKET_TYPES:  # never "all": every slug left out by a fault
            return slug in self.slugs
        return not self.slugs or slug in self.slugs


class WsConnection:
    def __init__(
        self,
        hub: WsHub,
        kind: str,
        account_id: str,
        send: ASGISend,
        receive: ASGIReceive,
    ) -> None:
        self.hub = hub
        self.kind = kind  # "markets" | "private"
        self.account_id = account_id
        self._send = send
        self._receive = receive
        self.subs: dict[str, Subscription] = {}
        self._out_send, self._out_recv = trio.open_memory_channel[str](hub.settings.queue_size)
        self._scope: trio.CancelScope | None = None
        self._close_code: int | None = None
        self.frames_sent = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        self.hub.connections.add(self)
        self.hub.accepted[self.kind] += 1
        try:
            with trio.CancelScope() as self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reader)
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._heartbeats)
        finally:
            self.hub.connections.discard(self)
        if self._close_code is not None:
            with suppress(Exception):
                await self._send({"type": "websocket.close", "code": self._close_code})

    def close(self, code: int) -> None:
        """End this socket from the server side (drop fault, maintenance, slow consumer)."""
        if self._close_code is None:
            self._close_code = code
        if self._scope is not None:
            self._scope.cancel()

    async def _reader(self) -> None:
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._close_code = None
                assert self._scope is not None
                self._scope.cancel()
                return
            if kind != "websocket.receive":
                continue
            if self.hub.faults.ws_silent:
                continue  # a stalled gateway neither answers nor acts
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                text = raw.decode("utf-8", errors="replace")
            self._handle_request(text)

    async def _writer(self) -> None:
        async for text in self._out_recv:
            if self.hub.faults.ws_silent:
                continue
            try:
                for junk in self.hub.faults.take_extra_frames():
                    await self._send({"type": "websocket.send", "text": junk})
                await self._send({"type": "websocket.send", "text": text})
            except Exception as e:  # the peer went away mid-send: the socket is over
                log.debug("websocket send failed (%s); closing", type(e).__name__)
                self._close_code = None
                assert self._scope is not None
                self._scope.cancel()
                return
            self.frames_sent += 1

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self.hub.settings.heartbeat_seconds)
            if not self.hub.faults.ws_silent:
                self._enqueue_raw('{"heartbeat":{}}')

    # -- outbound ----------------------------------------------------------------------------

    def _enqueue_raw(self, text: str) -> None:
        try:
            self._out_send.send_nowait(text)
        except trio.WouldBlock:
            log.warning("websocket consumer too slow; closing %s socket", self.kind)
            self.close(1008)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def send_frame(self, sub: Subscription, payload_key: str, payload: Any) -> None:
        frame: dict[str, Any] = {
            "requestId": sub.request_id,
            "subscriptionType": sub.sub_type,
            payload_key: payload,
        }
        if self.kind == "private" and self.hub.faults.empty_error_roll():
            frame["error"] = ""
        self._enqueue_raw(orjson.dumps(frame).decode())

    def send_error(self, request_id: str, sub_type: str, text: str) -> None:
        frame = {"requestId": request_id, "subscriptionType": sub_type, "error": text}
        self._enqueue_raw(orjson.dumps(frame).decode())

    # -- inbound -------------------------------------------------------------------------------

    def _handle_request(self, text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.send_error("", "", "invalid JSON")
            return
        if not isinstance(msg, dict):
            self.send_error("", "", "request must be a JSON object")
            return
        if isinstance(msg.get("subscribe"), dict):
            self._subscribe(msg["subscribe"])
        elif isinstance(msg.get("unsubscribe"), dict):
            rid = str(msg["unsubscribe"].get("requestId", ""))
            sub = self.subs.pop(rid, None)
            if sub is None:
                self.send_error(rid, "", f"no subscription with requestId {rid!r}")
        else:
            self.send_error("", "", "unknown request; expected subscribe or unsubscribe")

    def _subscribe(self, req: dict[str, Any]) -> None:
        rid = req.get("requestId")
        sub_type = req.get("subscriptionType")
        if not isinstance(rid, str) or not rid:
            self.send_error("", str(sub_type or ""), "requestId is required")
            return
        allowed = MARKET_TYPES if self.kind == "markets" else PRIVATE_TYPES
        if sub_type not in allowed:
            self.send_error(rid, str(sub_type or ""), f"unsupported subscriptionType {sub_type!r}")
            return
        if rid in self.subs:
            self.send_error(rid, sub_type, f"requestId {rid!r} is already subscribed")
            return
        slugs_raw = req.get("marketSlugs") or []
        if not isinstance(slugs_raw, list) or not all(isinstance(s, str) for s in slugs_raw):
            self.send_error(rid, sub_type, "marketSlugs must be a list of strings")
            return
        if len(slugs_raw) > MAX_SLUGS_PER_SUBSCRIPTION:
            self.send_error(
                rid,
                sub_type,
                f"too many markets in one subscription: {len(slugs_raw)} > "
                f"{MAX_SLUGS_PER_SUBSCRIPTION}",
            )
            return
        if sub_type in MARKET_TYPES and not slugs_raw:
            self.send_error(rid, sub_type, "marketSlugs is required")
            return
        unknown = [s for s in slugs_raw if not self.hub.source.market_exists(s)]
        known = [s for s in dict.fromkeys(slugs_raw) if s not in unknown]
        if unknown:
            self.send_error(rid, sub_type, f"market not found: {', '.join(unknown)}")
            if not known:
                return
        if sub_type in MARKET_TYPES:
            # the unanswered-subscription fault: a slug the gateway silently ignores this time
            known = [s for s in known if not self.hub.faults.take_unanswered(s)]
        sub = Subscription(rid, sub_type, frozenset(known))
        src = self.hub.source
        if sub_type == "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT":
            self._send_order_snapshot(sub)
            return  # a one-shot request: nothing more follows eof
        self.subs[rid] = sub
        if sub_type == "SUBSCRIPTION_TYPE_MARKET_DATA":
            for slug in known:
                self.send_frame(sub, "marketData", src.market_data(slug))
        elif sub_type == "SUBSCRIPTION_TYPE_MARKET_DATA_LITE":
            for slug in known:
                self.send_frame(sub, "marketDataLite", src.market_data_lite(slug))
        elif sub_type == "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE":
            self.send_frame(
                sub, "accountBalancesSnapshot", {"balances": src.balances(self.account_id)}
            )
        elif sub_type == "SUBSCRIPTION_TYPE_ORDER" and self.hub.settings.order_snapshot_on_order:
            self._send_order_snapshot(sub)

    def _send_order_snapshot(self, sub: Subscription) -> None:
        orders = self.hub.source.open_orders(self.account_id, sub.slugs)
        page = max(1, self.hub.settings.snapshot_page_size)
        chunks = [orders[i : i + page] for i in range(0, len(orders), page)] or [[]]
        for i, chunk in enumerate(chunks):
            self.send_frame(
                sub, "orderSubscriptionSnapshot", {"orders": chunk, "eof": i == len(chunks) - 1}
            )

    def matching(self, sub_type: str, slug: str | None) -> Iterable[Subscription]:
        for sub in list(self.subs.values()):
            if sub.sub_type == sub_type and (slug is None or sub.covers(slug)):
                yield sub


class WsHub:
    """Every open socket, and the fan-out of exchange changes to their subscriptions."""

    def __init__(self, source: WsSource, faults: Faults, settings: WsSettings) -> None:
        self.source = source
        self.faults = faults
        self.settings = settings
        self.connections: set[WsConnection] = set()
        self.accepted: dict[str, int] = {"markets": 0, "private": 0}  # sockets ever opened

    def drop_all(self, code: int = 1011) -> None:
        for conn in list(self.connections):
            conn.close(code)

    def _conns(self, kind: str, account_id: str | None = None) -> list[WsConnection]:
        return [
            c
            for c in self.connections
            if c.kind == kind and (account_id is None or c.account_id == account_id)
        ]

    # -- notifications from the exchange adapter -----------------------------------------------

    def book_changed(self, slug: str) -> None:
        conns = self._conns("markets")
        if not conns:
            return
        full = lite = None
        for conn in conns:
            for sub in conn.matching("SUBSCRIPTION_TYPE_MARKET_DATA", slug):
                full = full if full is not None else self.source.market_data(slug)
                conn.send_frame(sub, "marketData", full)
            for sub in conn.matching("SUBSCRIPTION_TYPE_MARKET_DATA_LITE", slug):
                lite = lite if lite is not None else self.source.market_data_lite(slug)
                conn.send_frame(sub, "marketDataLite", lite)

    def trade(self, slug: str, payload: dict[str, Any]) -> None:
        for conn in self._conns("markets"):
            for sub in conn.matching("SUBSCRIPTION_TYPE_TRADE", slug):
                conn.send_frame(sub, "trade", payload)

    def execution(self, account_id: str, slug: str, payload: dict[str, Any]) -> None:
        for conn in self._conns("private", account_id):
            for sub in conn.matching("SUBSCRIPTION_TYPE_ORDER", slug):
                conn.send_frame(sub, "orderSubscriptionUpdate", {"execution": payload})

    def position(self, account_id: str, slug: str, payload: dict[str, Any]) -> None:
        for conn in self._conns("private", account_id):
            for sub in conn.matching("SUBSCRIPTION_TYPE_POSITION", slug):
                conn.send_frame(sub, "positionSubscription", payload)

    def balance(self, account_id: str, payload: dict[str, Any]) -> None:
        for conn in self._conns("private", account_id):
            for sub in conn.matching("SUBSCRIPTION_TYPE_ACCOUNT_BALANCE", None):
                conn.send_frame(sub, "accountBalancesUpdate", {"balanceChange": payload})


async def deny(
    send: ASGISend, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """Refuse a websocket upgrade with a real HTTP response (ASGI denial-response extension)."""
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
