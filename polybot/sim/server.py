"""Serve the local exchange over HTTP and websockets.

`SimServer` wires one `Exchange` to the network: the REST face (rest.py), the websocket hub
(ws.py), the fault switches (faults.py) and a loopback admin API. `serve_exchange` starts the
listeners; `polybot.sim.harness` runs it (``running_sim``, and ``python -m polybot sim``).

Why hypercorn: it is already a dependency (the bot's health app uses it), it runs natively on
Trio (`hypercorn.trio.serve`), one ASGI callable handles both ``http`` and ``websocket`` scopes,
and it implements the ASGI websocket denial-response extension, so a refused upgrade is a real
HTTP 401/503 with our JSON error body, as a client of the real gateway would see. trio-websocket
alone would have meant a hand-written HTTP server for REST next to it.

Listeners (port 0 = a free port each):
- two-hosts mode (default): *api* (signed REST + both websockets; the SDK derives its websocket
  URL from the api base URL) and *gateway* (public REST), plus *admin*;
- one-host mode: one listener serves api + gateway + websockets, plus *admin*.
With an explicit ``--port P``: api = P, gateway = P + 1, admin = P + 2 (one-host: admin = P + 1),
unless ``--gateway-port`` / ``--admin-port`` say otherwise.

Exchange events are queued by a synchronous subscriber (the engine forbids re-entry from its
callbacks) and turned into websocket frames by one pump task, in emission order; book frames of a
drained batch go out once per market after the batch's trades and executions, built from the book
as it is then.

Admin API (loopback, no auth; JSON):
- ``GET /admin/faults`` / ``POST /admin/faults`` (body: fault fields, plus ``drop_websockets`` or
  ``reset`` true) -> current switches;
- ``GET /admin/orders[?account=ID]`` -> ``{"orders": [...]}`` every order the exchange gave an id;
- ``POST /admin/settle`` ``{"slug", "value"}``; ``POST /admin/bust`` ``{"tradeId"}``;
- ``POST /admin/maintenance`` ``{"on": bool}``;
- ``POST /admin/accounts`` ``{"cash": "1000"}`` -> ``{"account_id", "key_id", "secret_key"}``;
- ``GET /admin/state`` -> markets and their states, accounts.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
import orjson
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from polybot.model import MarketState
from polybot.sim import wire
from polybot.sim.auth import ApiKey, AuthError, KeyStore
from polybot.sim.engine import (
    BalanceChanged,
    BookChanged,
    Exchange,
    ExchangeEvent,
    ExecutionReported,
    PositionChanged,
    TradePrinted,
)
from polybot.sim.faults import Faults
from polybot.sim.rest import ApiError, RestFace, accepted_record, error_body, http_date
from polybot.sim.ws import (
    MARKETS_PATH,
    PRIVATE_PATH,
    WsConnection,
    WsHub,
    WsSettings,
    deny,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]


@attrs.frozen
class SimUrls:
    api_url: str
    gateway_url: str
    ws_url: str
    admin_url: str


class _Source:
    """What the websocket hub asks of the exchange, wire-encoded."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex

    def market_exists(self, slug: str) -> bool:
        return slug in self.ex.markets

    def market_data(self, slug: str) -> JSON:
        return wire.book(self.ex.book(slug))

    def market_data_lite(self, slug: str) -> JSON:
        return wire.bbo(self.ex.bbo(slug))

    def open_orders(self, account_id: str, slugs: frozenset[str]) -> list[JSON]:
        return [wire.order(o, self.ex) for o in self.ex.open_orders(account_id, slugs or None)]

    def balances(self, account_id: str) -> list[JSON]:
        return [wire.balance(self.ex.balance(account_id))]


class SimServer:
    """The network face of one exchange. Build, then `await serve(...)` inside a nursery."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        keys: KeyStore | None = None,
        faults: Faults | None = None,
        heartbeat_seconds: float = 10.0,
        rate_limit: float | None = 20.0,
        private_empty_error_probability: float = 0.1,
        order_snapshot_on_order: bool = False,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ex = exchange
        self.keys = keys if keys is not None else KeyStore()
        self.faults = faults if faults is not None else Faults(seed=seed)
        if faults is None:
            self.faults.private_empty_error_probability = private_empty_error_probability
        self.rest = RestFace(exchange, self.keys, self.faults, rate_limit=rate_limit, clock=clock)
        self.hub = WsHub(
            _Source(exchange),
            self.faults,
            WsSettings(heartbeat_seconds, order_snapshot_on_order=order_snapshot_on_order),
        )
        self.faults.on_maintenance = self._maintenance
        self.faults.on_drop_websockets = lambda: self.hub.drop_all(1011)
        self._suspended: list[str] = []
        self._pending: deque[ExchangeEvent] = deque()
        self._wake = trio.Event()
        self._account_counter = 0
        exchange.subscribe(self._on_event)

    # -- accounts ---------------------------------------------------------------------------

    def create_account(self, cash: Decimal = Decimal(0), account_id: str | None = None) -> ApiKey:
        """A new funded account with one API key (the secret is in the returned ApiKey)."""
        if account_id is None:
            self._account_counter += 1
            account_id = f"acct-{self._account_counter:04d}"
            while self.ex.has_account(account_id):
                self._account_counter += 1
                account_id = f"acct-{self._account_counter:04d}"
        if not self.ex.has_account(account_id):
            self.ex.create_account(account_id, cash)
        return self.keys.create(account_id)

    # -- exchange events -> websocket frames --------------------------------------------------

    def _on_event(self, event: ExchangeEvent) -> None:
        self._pending.append(event)
        self._wake.set()

    async def pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._pending:
                batch = list(self._pending)
                self._pending.clear()
                try:
                    self._dispatch(batch)
                except Exception:  # a bad frame must not stop the exchange's streams
                    log.exception("failed to publish exchange events")

    def _dispatch(self, events: list[ExchangeEvent]) -> None:
        books: dict[str, None] = {}
        for ev in events:
            if isinstance(ev, BookChanged):
                books[ev.slug] = None
            elif isinstance(ev, TradePrinted):
                self.hub.trade(ev.slug, wire.trade_print(ev))
            elif isinstance(ev, ExecutionReported):
                x = ev.execution
                self.hub.execution(ev.account_id, x.order.market_slug, wire.execution(x, self.ex))
            elif isinstance(ev, PositionChanged):
                self.hub.position(ev.account_id, ev.slug, wire.position_change(ev, self.ex))
            elif isinstance(ev, BalanceChanged):
                self.hub.balance(ev.account_id, wire.balance_change(ev))
        for slug in books:
            if slug in self.ex.markets:
                self.hub.book_changed(slug)

    # -- maintenance ---------------------------------------------------------------------------

    def _maintenance(self, on: bool) -> None:
        if on:
            self.ex.cancel_everything()
            self._suspended = []
            with self.ex.batch():
                for m in self.ex.markets.values():
                    if m.settlement is None and m.state is MarketState.OPEN:
                        self.ex.set_market_state(m.slug, MarketState.SUSPENDED)
                        self._suspended.append(m.slug)
            self.hub.drop_all(1012)  # 1012 = service restart
        else:
            # Connections come back first; the markets then reopen SUSPENDED -> OPEN, books empty.
            with self.ex.batch():
                for slug in self._suspended:
                    reopened = self.ex.markets.get(slug)
                    if reopened is not None and reopened.settlement is None:
                        self.ex.set_market_state(slug, MarketState.OPEN)
            self._suspended = []

    # -- ASGI apps -------------------------------------------------------------------------------

    def app(self, *, public: bool, private: bool) -> Callable[..., Any]:
        routes = (self.rest.gateway_routes if public else []) + (
            self.rest.api_routes if private else []
        )

        async def asgi(scope: JSON, receive: Any, send: Any) -> None:
            kind = scope["type"]
            if kind == "http":
                await self.rest.asgi(scope, receive, send, routes)
            elif kind == "websocket":
                await self._websocket(scope, receive, send, enabled=private)
            elif kind == "lifespan":
                await _lifespan(receive, send)

        return asgi

    async def _websocket(self, scope: JSON, receive: Any, send: Any, *, enabled: bool) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        date = [(b"date", http_date(self.rest.now()).encode())]
        path = scope["path"]
        kind = {MARKETS_PATH: "markets", PRIVATE_PATH: "private"}.get(path)
        if kind is None or not enabled:
            await deny(send, 404, error_body(404, "Not Found"), date)
            return
        if self.faults.maintenance:
            await deny(send, 503, error_body(503, "exchange is under maintenance"), date)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            account_id = self.keys.verify(headers, "GET", path, int(self.rest.now() * 1000))
        except AuthError as e:
            await deny(send, 401, error_body(401, str(e)), date)
            return
        await send({"type": "websocket.accept", "headers": date})
        await WsConnection(self.hub, kind, account_id, send, receive).run()

    def admin_app(self) -> Callable[..., Any]:
        async def asgi(scope: JSON, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
                return
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            query = scope.get("query_string", b"").decode()
            try:
                status, payload = 200, self._admin(scope["method"], scope["path"], query, body)
            except ApiError as e:
                status, payload = e.status, {"error": e.message}
            raw = orjson.dumps(payload)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"date", http_date(self.rest.now()).encode()),
                        (b"content-length", str(len(raw)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": raw})

        return asgi

    def _admin(self, method: str, path: str, query: str, body: bytes) -> JSON:
        try:
            data = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise ApiError(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        key = (method, path)
        if key == ("GET", "/admin/faults"):
            return self.faults.snapshot()
        if key == ("POST", "/admin/faults"):
            try:
                self.faults.apply(data)
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            return self.faults.snapshot()
        if key == ("GET", "/admin/orders"):
            account = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("account")
            records = [
                accepted_record(a)
                for a in self.ex.orders_accepted
                if account is None or a.account_id == account
            ]
            return {"orders": records}
        if key == ("POST", "/admin/settle"):
            slug = data.get("slug")
            if slug not in self.ex.markets:
                raise ApiError(404, "unknown market")
            try:
                self.ex.settle(slug, Decimal(str(data.get("value"))))
            except (InvalidOperation, ValueError) as e:
                raise ApiError(400, str(e)) from None
            return {"slug": slug, "settlement": str(self.ex.markets[slug].settlement)}
        if key == ("POST", "/admin/bust"):
            try:
                self.ex.bust_trade(str(data.get("tradeId")))
            except KeyError:
                raise ApiError(404, "unknown trade") from None
            except ValueError as e:
                raise ApiError(400, str(e)) from None
            return {"tradeId": data.get("tradeId"), "state": "busted"}
        if key == ("POST", "/admin/maintenance"):
            on = data.get("on")
            if not isinstance(on, bool):
                raise ApiError(400, "on must be a boolean")
            self.faults.maintenance = on
            return {"maintenance": self.faults.maintenance}
        if key == ("POST", "/admin/accounts"):
            try:
                cash = Decimal(str(data.get("cash", "0")))
            except InvalidOperation:
                raise ApiError(400, "cash must be a decimal") from None
            k = self.create_account(cash)
            return {"account_id": k.account_id, "key_id": k.key_id, "secret_key": k.secret_key}
        if key == ("GET", "/admin/state"):
            return {
                "markets": {
                    s: {
                        "state": m.state.value,
                        "status": m.status.value,
                        "settlement": None if m.settlement is None else str(m.settlement),
                    }
                    for s, m in self.ex.markets.items()
                },
                "accounts": self.ex.account_ids(),
                "maintenance": self.faults.maintenance,
            }
        raise ApiError(404, "unknown admin endpoint")

    # -- listeners --------------------------------------------------------------------------------

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        api_port: int = 0,
        gateway_port: int = 0,
        admin_port: int = 0,
        two_hosts: bool = True,
        task_status: trio.TaskStatus[SimUrls] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every listener and the frame pump until cancelled; report the URLs once all accept."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.pump)
            api = await nursery.start(
                _listen, self.app(public=not two_hosts, private=True), host, api_port
            )
            gateway = api
            if two_hosts:
                gateway = await nursery.start(
                    _listen, self.app(public=True, private=False), host, gateway_port
                )
            admin = await nursery.start(_listen, self.admin_app(), host, admin_port)
            task_status.started(
                SimUrls(
                    api_url=api,
                    gateway_url=gateway,
                    ws_url=api.replace("http://", "ws://", 1),
                    admin_url=admin,
                )
            )


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _listen(
    app: Callable[..., Any],
    host: str,
    port: int,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    config = HyperConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("polybot.sim.hypercorn")
    config.include_date_header = False  # we send our own, from the (skewable) sim clock
    config.include_server_header = False
    config.graceful_timeout = 0.5
    config.keep_alive_timeout = 30
    await serve(app, config, task_status=_FirstBind(task_status))


class _FirstBind:
    """Adapts hypercorn's `started(list_of_binds)` to our `started(url)`."""

    def __init__(self, inner: trio.TaskStatus[str]) -> None:
        self.inner = inner

    def started(self, binds: Sequence[str] | None = None) -> None:
        self.inner.started(binds[0] if binds else "")
