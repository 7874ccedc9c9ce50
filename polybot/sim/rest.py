"""The REST face of the local exchange: a tiny ASGI router over the engine (reference §3, §9).

Two route tables stand for the two hosts: public market/event data is the *gateway*, everything
signed is the *api* host. With two listeners each serves only its own table (a client that sends
an authenticated call to the gateway gets a 404, as it would from the real hosts); with one
listener both tables are served. The admin endpoints live in server.py on their own listener.

Request pipeline, in order (each step can answer on its own):
1. maintenance -> 503,
2. route lookup (404 / 405),
3. fault bursts (``error_burst`` -> 5xx, ``rate_limit_burst`` -> 429) without touching anything,
4. injected delay,
5. rate limit: 20 requests per rolling second per access key (authenticated routes, counted
   before the signature is checked, as an edge proxy would) or per client IP (public routes)
   -> 429 ``{"code": 8, ...}``; rejected requests are not counted,
6. authentication -> 401,
7. body parsing: malformed JSON or a shape error -> 400 (nothing reaches the engine),
8. the handler. Order-level problems are 200 + id and a REJECTED execution (engine rules).

Errors use the grpc-gateway body ``{"code": <grpc code>, "message": "...", "details": []}``,
which the official SDKs read through ``message``. Every response carries a ``Date`` header from
the (possibly skewed) server clock.

Choices where the reference is silent:
- A missing ``type`` is rejected by the engine (INCORRECT_ORDER_TYPE); a missing ``tif`` means
  GTC; ``outcomeSide`` + ``action``, when both present, win over ``intent``.
- Quantities and prices accept JSON numbers or numeric strings (grpc-gateway does); anything else
  is a 400.
- Single cancel / modify of an order id the account never had -> 404; of a finished order -> 200
  ``{}`` (the engine ignores it).
- ``close-position`` submits a MARKET IOC order for the whole net position (SELL_LONG if long,
  SELL_SHORT if short); with no position the order is rejected (INCORRECT_QUANTITY).
- ``preview`` returns the order as it would be created (state PENDING_NEW) with the average price
  and taker commission it would get from the current book; nothing is placed.
- ``synchronousExecution`` returns the executions produced while the order was entered.
- Positions and activities pages: ``limit`` defaults to 100 and is capped at 100; ``nextCursor``
  is an opaque offset token; ``eof`` is true on the last page.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import attrs
import orjson
import trio

from polybot.model import ZERO, Intent, OrderType, Side, TimeInForce
from polybot.pricing import round_fee
from polybot.sim import wire
from polybot.sim.auth import AuthError, KeyStore
from polybot.sim.engine import (
    AcceptedOrder,
    Exchange,
    ExchangeEvent,
    ExecutionReported,
    OrderSpec,
    RejectReason,
)
from polybot.sim.faults import Faults

log = logging.getLogger(__name__)

JSON = dict[str, Any]
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}
MAX_BATCH = 20
PAGE_LIMIT = 100
LEAGUE_PAGE_LIMIT = 50  # GET /v2/leagues: "max 50 per page", default 50


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"code": GRPC_CODES.get(status, 2), "message": message, "details": []})


def http_date(epoch_seconds: float) -> str:
    return email.utils.formatdate(epoch_seconds, usegmt=True)


@attrs.define
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    client_ip: str
    params: dict[str, str] = attrs.field(factory=dict)
    account_id: str = ""

    def q(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name or k == name + "[]":
                return v
        return None

    def q_all(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name or k == name + "[]"]

    def q_int(self, name: str, default: int) -> int:
        raw = self.q(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer") from None

    def q_bool(self, name: str) -> bool | None:
        raw = self.q(name)
        if raw is None:
            return None
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise ApiError(400, f"{name} must be true or false")

    def json(self) -> JSON:
        if not self.body.strip():
            return {}
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        return data


Handler = Callable[[Request], Awaitable[JSON]]


@attrs.frozen
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    authenticated: bool
    places_order: bool = False


class RateLimiter:
    """At most `limit` requests per rolling second per bucket (trio clock, so mockable)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self._hits: dict[str, deque[float]] = {}

    def allow(self, bucket: str) -> bool:
        if self.limit is None:
            return True
        now = trio.current_time()
        hits = self._hits.setdefault(bucket, deque())
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True


# --- body parsing -----------------------------------------------------------------------------


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, f"{name} must be a number")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ApiError(400, f"{name} must be a number") from None
    if not d.is_finite():
        raise ApiError(400, f"{name} must be finite")
    return d


def _amount(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "value" not in value:
        raise ApiError(400, f"{name} must be an Amount object {{value, currency}}")
    return _decimal(value["value"], f"{name}.value")


def _time(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be an RFC 3339 string")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be an RFC 3339 string") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _int_value(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None


def _bool(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be a boolean")
    return value


def _enum_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name} must be an enum string")
    return value


_OUTCOME_ACTION = {
    ("OUTCOME_SIDE_YES", "ORDER_ACTION_BUY"): Intent.BUY_LONG,
    ("OUTCOME_SIDE_YES", "ORDER_ACTION_SELL"): Intent.SELL_LONG,
    ("OUTCOME_SIDE_NO", "ORDER_ACTION_BUY"): Intent.BUY_SHORT,
    ("OUTCOME_SIDE_NO", "ORDER_ACTION_SELL"): Intent.SELL_SHORT,
}


def parse_order(body: Any) -> OrderSpec:
    """A CreateOrderRequest body -> OrderSpec; shape errors are ApiError(400)."""
    if not isinstance(body, dict):
        raise ApiError(400, "order must be a JSON object")
    slug = body.get("marketSlug")
    if not isinstance(slug, str) or not slug:
        raise ApiError(400, "marketSlug is required")
    intent_s = _enum_str(body.get("intent"), "intent")
    side_s = _enum_str(body.get("outcomeSide"), "outcomeSide")
    action_s = _enum_str(body.get("action"), "action")
    if side_s is not None and action_s is not None:
        intent = _OUTCOME_ACTION.get((side_s, action_s), Intent.UNKNOWN)
    else:
        intent = Intent.from_wire(intent_s) if intent_s is not None else Intent.UNKNOWN
    type_s = _enum_str(body.get("type"), "type")
    tif_s = _enum_str(body.get("tif"), "tif")
    quantity = body.get("quantity")
    mpi = _enum_str(body.get("manualOrderIndicator"), "manualOrderIndicator")
    return OrderSpec(
        market_slug=slug,
        intent=intent,
        type=OrderType.from_wire(type_s),
        price=_amount(body.get("price"), "price"),
        quantity=None if quantity is None else _decimal(quantity, "quantity"),
        tif=TimeInForce.GTC if tif_s is None else TimeInForce.from_wire(tif_s),
        good_till_time=_time(body.get("goodTillTime"), "goodTillTime"),
        post_only=_bool(body.get("participateDontInitiate"), "participateDontInitiate"),
        cash_order_qty=_amount(body.get("cashOrderQty"), "cashOrderQty"),
        manual_order_indicator=mpi or "",
    )


def _modify_fields(body: JSON) -> dict[str, Any]:
    tif_s = _enum_str(body.get("tif"), "tif")
    pdi = body.get("participateDontInitiate")
    quantity = body.get("quantity")
    return {
        "price": _amount(body.get("price"), "price"),
        "quantity": None if quantity is None else _decimal(quantity, "quantity"),
        "tif": None if tif_s is None else TimeInForce.from_wire(tif_s),
        "good_till_time": _time(body.get("goodTillTime"), "goodTillTime"),
        "post_only": None if pdi is None else _bool(pdi, "participateDontInitiate"),
    }


def _batch(body: JSON) -> list[Any]:
    orders = body.get("orders")
    if not isinstance(orders, list) or not orders:
        raise ApiError(400, "orders must be a non-empty list")
    if len(orders) > MAX_BATCH:
        raise ApiError(400, f"at most {MAX_BATCH} orders per batch")
    return orders


def _id_entry(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise ApiError(400, "each entry must be an object")
    oid, slug = entry.get("orderId"), entry.get("marketSlug")
    if not isinstance(oid, str) or not oid or not isinstance(slug, str) or not slug:
        raise ApiError(400, "each entry needs orderId and marketSlug")
    return oid, slug


def _cursor_decode(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("off:"):
            raise ValueError(text)
        return max(0, int(text[4:]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid cursor") from None


def _cursor_encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"off:{offset}".encode()).decode()


def _page(items: list[Any], req: Request) -> tuple[list[Any], str, bool]:
    limit = req.q_int("limit", PAGE_LIMIT)
    limit = PAGE_LIMIT if limit <= 0 else min(limit, PAGE_LIMIT)
    start = _cursor_decode(req.q("cursor"))
    chunk = items[start : start + limit]
    end = start + len(chunk)
    eof = end >= len(items)
    return chunk, ("" if eof else _cursor_encode(end)), eof


def _offset_page(items: list[Any], req: Request) -> list[Any]:
    """The gateway's offset/limit listing (markets, events): `orderDirection=desc` reverses,
    a non-positive limit means no limit."""
    if req.q("orderDirection") == "desc":
        items = items[::-1]
    offset = max(0, req.q_int("offset", 0))
    limit = req.q_int("limit", 100)
    return items[offset : offset + limit] if limit > 0 else items[offset:]


# --- the REST face ----------------------------------------------------------------------------


class RestFace:
    """Routes and handlers; one instance per running sim (both hosts share it)."""

    def __init__(
        self,
        exchange: Exchange,
        keys: KeyStore,
        faults: Faults,
        *,
        rate_limit: float | None = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ex = exchange
        self.keys = keys
        self.faults = faults
        self.clock = clock
        self.limiter = RateLimiter(rate_limit)
        self.gateway_routes = self._gateway_routes()
        self.api_routes = self._api_routes()

    def now(self) -> float:
        """Server wall clock in epoch seconds, skew fault included."""
        return self.clock() + self.faults.clock_skew_seconds

    # -- route tables ------------------------------------------------------------------------

    @staticmethod
    def _r(method: str, path: str, handler: Handler, auth: bool, places: bool = False) -> Route:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"
        return Route(method, re.compile(regex), handler, auth, places)

    def _gateway_routes(self) -> list[Route]:
        r = self._r
        return [
            r("GET", "/v1/markets", self.list_markets, False),
            r("GET", "/v1/market/id/{id}", self.market_by_id, False),
            r("GET", "/v1/market/slug/{slug}", self.market_by_slug, False),
            r("GET", "/v1/markets/{slug}/book", self.market_book, False),
            r("GET", "/v1/markets/{slug}/bbo", self.market_bbo, False),
            r("GET", "/v1/markets/{slug}/settlement", self.market_settlement, False),
            r("GET", "/v1/events", self.list_events, False),
            r("GET", "/v1/events/slug/{slug}", self.event_by_slug, False),
            r("GET", "/v1/events/{id}", self.event_by_id, False),
            r("GET", "/v1/partners/{partner}/events/{external_id}", self.partner_event, False),
            r("GET", "/v2/leagues", self.list_leagues, False),
            r("GET", "/v2/leagues/{slug}", self.league_by_slug, False),
            r("GET", "/v2/leagues/{slug}/events", self.league_events, False),
        ]

    def _api_routes(self) -> list[Route]:
        r = self._r
        return [
            r("POST", "/v1/orders", self.create_order, True, True),
            r("POST", "/v1/orders/batched", self.create_orders, True, True),
            r("POST", "/v1/orders/batched/cancel", self.cancel_orders, True),
            r("POST", "/v1/orders/batched/modify", self.modify_orders, True),
            r("GET", "/v1/orders/open", self.open_orders, True),
            r("POST", "/v1/orders/open/cancel", self.cancel_all, True),
            r("POST", "/v1/order/preview", self.preview_order, True),
            r("POST", "/v1/order/close-position", self.close_position, True, True),
            r("GET", "/v1/order/{order_id}", self.get_order, True),
            r("POST", "/v1/order/{order_id}/cancel", self.cancel_order, True),
            r("POST", "/v1/order/{order_id}/modify", self.modify_order, True),
            r("GET", "/v1/portfolio/positions", self.positions, True),
            r("GET", "/v1/portfolio/activities", self.activities, True),
            r("GET", "/v1/account/balances", self.balances, True),
        ]

    # -- ASGI ------------------------------------------------------------------------------------

    async def asgi(self, scope: JSON, receive: Any, send: Any, routes: list[Route]) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        client = scope.get("client") or ("", 0)
        req = Request(scope["method"], scope["path"], query, headers, body, client[0])
        status, payload = await self.handle(req, routes)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"date", http_date(self.now()).encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def handle(self, req: Request, routes: list[Route]) -> tuple[int, bytes]:
        try:
            if self.faults.maintenance:  # 503 on everything, known path or not
                raise ApiError(503, "exchange is under maintenance")
            route = self._match(req, routes)
            burst = self.faults.take_error()
            if burst is not None:
                raise ApiError(burst, "Too Many Requests" if burst == 429 else "injected failure")
            if self.faults.delay_seconds > 0:
                await trio.sleep(self.faults.delay_seconds)
            if route.authenticated:
                bucket = "key:" + req.headers.get("x-pm-access-key", "")
            else:
                bucket = "ip:" + req.client_ip
            if not self.limiter.allow(bucket):
                raise ApiError(429, "Too Many Requests")
            if route.authenticated:
                try:
                    req.account_id = self.keys.verify(
                        req.headers, req.method, req.path, int(self.now() * 1000)
                    )
                except AuthError as e:
                    raise ApiError(401, str(e)) from None
            result = await route.handler(req)
            if route.places_order and self.faults.take_hang():
                # The order is in the book; the client never learns its id from this request.
                if self.faults.hang_seconds is None:
                    await trio.sleep_forever()
                await trio.sleep(self.faults.hang_seconds)
            return 200, orjson.dumps(result)
        except ApiError as e:
            return e.status, error_body(e.status, e.message)
        except Exception:  # a sim bug answers 500 like a real server would, and is logged
            log.exception("unhandled error serving %s %s", req.method, req.path)
            return 500, error_body(500, "internal error")

    def _match(self, req: Request, routes: list[Route]) -> Route:
        allowed = False
        for route in routes:
            m = route.pattern.match(req.path)
            if m is None:
                continue
            if route.method != req.method:
                allowed = True
                continue
            req.params = m.groupdict()
            return route
        if allowed:
            raise ApiError(405, "method not allowed")
        raise ApiError(404, "Not Found")

    # -- public handlers -----------------------------------------------------------------------

    def _market_or_404(self, slug: str):
        m = self.ex.markets.get(slug)
        if m is None:
            raise ApiError(404, f"market {slug!r} not found")
        return m

    @staticmethod
    def _int_param(req: Request, name: str) -> int:
        try:
            return int(req.params[name])
        except ValueError:
            raise ApiError(400, f"{name} must be an integer") from None

    async def list_markets(self, req: Request) -> JSON:
        markets = sorted(self.ex.markets.values(), key=lambda m: m.market_id)
        slugs = set(req.q_all("slug"))
        ids = set(req.q_all("id"))
        event_slugs = set(req.q_all("eventSlug"))
        active, closed = req.q_bool("active"), req.q_bool("closed")
        categories = set(req.q_all("categories"))
        out = []
        for m in markets:
            if slugs and m.slug not in slugs:
                continue
            if ids and str(m.market_id) not in ids:
                continue
            if active is not None and m.active != active:
                continue
            if closed is not None and m.closed != closed:
                continue
            if categories and m.category not in categories:
                continue
            if event_slugs:
                e = self.ex.event_by_id(m.event_id)
                if e is None or e.slug not in event_slugs:
                    continue
            out.append(m)
        return {"markets": [wire.market(m, self.ex) for m in _offset_page(out, req)]}

    async def market_by_id(self, req: Request) -> JSON:
        m = self.ex.market_by_id(self._int_param(req, "id"))
        if m is None:
            raise ApiError(404, "market not found")
        return {"market": wire.market(m, self.ex)}

    async def market_by_slug(self, req: Request) -> JSON:
        return {"market": wire.market(self._market_or_404(req.params["slug"]), self.ex)}

    async def market_book(self, req: Request) -> JSON:
        m = self._market_or_404(req.params["slug"])
        return {"marketData": wire.book(self.ex.book(m.slug))}

    async def market_bbo(self, req: Request) -> JSON:
        m = self._market_or_404(req.params["slug"])
        return {"marketData": wire.bbo(self.ex.bbo(m.slug))}

    async def market_settlement(self, req: Request) -> JSON:
        m = self._market_or_404(req.params["slug"])
        if m.settlement is None:
            raise ApiError(404, f"market {m.slug!r} is not settled")
        return {"slug": m.slug, "settlement": float(m.settlement)}

    async def list_events(self, req: Request) -> JSON:
        """`GET /v1/events`: `slug`, `id`, `seriesId`, `excludeSeriesId`, `gameId`, `active`,
        `closed`, `live`, `ended`, `startTimeMin`/`startTimeMax` (ISO 8601, inclusive; an event
        without a start time never passes them), then `orderDirection`, `offset`, `limit`
        (default 100). Other documented filters are accepted and ignored."""
        series = {_int_value(v, "seriesId") for v in req.q_all("seriesId")}
        excluded = {_int_value(v, "excludeSeriesId") for v in req.q_all("excludeSeriesId")}
        slugs = set(req.q_all("slug"))
        ids = set(req.q_all("id"))
        game_ids = set(req.q_all("gameId"))
        active, closed = req.q_bool("active"), req.q_bool("closed")
        live, ended = req.q_bool("live"), req.q_bool("ended")
        t_min = _time(req.q("startTimeMin"), "startTimeMin")
        t_max = _time(req.q("startTimeMax"), "startTimeMax")
        leagues = {s.league for i, s in self.ex.series.items() if i in series} if series else None
        self._listing_fault(leagues)
        out = []
        for e in sorted(self.ex.events.values(), key=lambda e: e.event_id):
            if series and e.series_id not in series:
                continue
            if excluded and e.series_id in excluded:
                continue
            if slugs and e.slug not in slugs:
                continue
            if ids and str(e.event_id) not in ids:
                continue
            if game_ids and str(e.event_id) not in game_ids:
                continue
            if active is not None and (not e.closed) != active:
                continue
            if closed is not None and e.closed != closed:
                continue
            if live is not None and e.live != live:
                continue
            if ended is not None and e.ended != ended:
                continue
            if (t_min is not None or t_max is not None) and e.start_time is None:
                continue
            if t_min is not None and e.start_time is not None and e.start_time < t_min:
                continue
            if t_max is not None and e.start_time is not None and e.start_time > t_max:
                continue
            out.append(e)
        return {"events": [wire.event(e, self.ex) for e in _offset_page(out, req)]}

    def _listing_fault(self, leagues: set[str] | None) -> None:
        status = self.faults.take_listing_error(leagues)
        if status is not None:
            raise ApiError(status, "service unavailable" if status == 503 else "injected failure")

    def _league_or_404(self, slug: str):
        league = self.ex.leagues.get(slug)
        if league is None:
            raise ApiError(404, "League not found")
        return league

    async def list_leagues(self, req: Request) -> JSON:
        """`GET /v2/leagues`: `limit` (default and max 50), `offset`."""
        limit = req.q_int("limit", LEAGUE_PAGE_LIMIT)
        limit = LEAGUE_PAGE_LIMIT if limit <= 0 else min(limit, LEAGUE_PAGE_LIMIT)
        offset = max(0, req.q_int("offset", 0))
        leagues = list(self.ex.leagues.values())[offset : offset + limit]
        return {"leagues": [wire.league(lg) for lg in leagues]}

    async def league_by_slug(self, req: Request) -> JSON:
        return {"league": wire.league(self._league_or_404(req.params["slug"]))}

    async def league_events(self, req: Request) -> JSON:
        """`GET /v2/leagues/{slug}/events`: the events of the league's active series that are not
        closed (upcoming, live, and ended but not yet resolved), by start time; `limit` (default
        100), `offset`, `excludeEventId`; `type=futures` lists nothing (the sim lists games
        only); `section` is echoed."""
        league = self._league_or_404(req.params["slug"])
        kind = req.q("type") or "sport"
        section = req.q("section") or "general"
        if kind not in ("sport", "futures") or section not in ("general", "trending"):
            raise ApiError(400, "type must be sport or futures, section general or trending")
        self._listing_fault({league.slug})
        excluded = set(req.q_all("excludeEventId"))
        events = []
        if kind == "sport":
            events = sorted(
                (
                    e
                    for e in self.ex.events.values()
                    if e.series_id is not None
                    and e.series_id == league.active_series_id
                    and not e.closed
                    and str(e.event_id) not in excluded
                ),
                key=lambda e: (e.start_time or datetime.max.replace(tzinfo=UTC), e.event_id),
            )
        offset = max(0, req.q_int("offset", 0))
        limit = req.q_int("limit", PAGE_LIMIT)
        page = events[offset : offset + limit] if limit > 0 else events[offset:]
        return {
            "type": kind,
            "typeTitle": "Games" if kind == "sport" else "Futures",
            "section": section,
            "sectionTitle": "Sport" if section == "general" else "Trending",
            "events": [wire.event(e, self.ex) for e in page],
            "league": wire.league(league),
        }

    async def event_by_id(self, req: Request) -> JSON:
        e = self.ex.event_by_id(self._int_param(req, "id"))
        if e is None:
            raise ApiError(404, "event not found")
        return {"event": wire.event(e, self.ex)}

    async def event_by_slug(self, req: Request) -> JSON:
        e = self.ex.events.get(req.params["slug"])
        if e is None:
            raise ApiError(404, "event not found")
        return {"event": wire.event(e, self.ex)}

    async def partner_event(self, req: Request) -> JSON:
        partner, external_id = req.params["partner"], req.params["external_id"]
        e = self.ex.event_by_external_id(partner, external_id)
        if e is None:
            raise ApiError(404, "no event linked to this partner id")
        return {
            "event": wire.event(e, self.ex),
            "mappedMarketSides": wire.mapped_market_sides(e, self.ex, partner, external_id),
        }

    # -- order handlers -------------------------------------------------------------------------

    def _submit(self, account_id: str, spec: OrderSpec) -> str:
        if self.faults.reject_all_orders:
            return submit_rejected(self.ex, account_id, spec, "orders are rejected (fault)")
        return self.ex.submit(account_id, spec)

    async def create_order(self, req: Request) -> JSON:
        body = req.json()
        spec = parse_order(body)
        if not body.get("synchronousExecution"):
            return {"id": self._submit(req.account_id, spec)}
        seen: list[Any] = []

        def collect(event: ExchangeEvent) -> None:
            if isinstance(event, ExecutionReported) and event.account_id == req.account_id:
                seen.append(event.execution)

        unsubscribe = self.ex.subscribe(collect)
        try:
            oid = self._submit(req.account_id, spec)
        finally:
            unsubscribe()
        mine = [wire.execution(x, self.ex) for x in seen if x.order.order_id == oid]
        return {"id": oid, "executions": mine}

    async def create_orders(self, req: Request) -> JSON:
        specs = [parse_order(o) for o in _batch(req.json())]  # all parsed before any is placed
        return {"createdOrderIds": [self._submit(req.account_id, s) for s in specs]}

    async def cancel_orders(self, req: Request) -> JSON:
        entries = [_id_entry(o) for o in _batch(req.json())]
        with self.ex.batch():
            for oid, _slug in entries:
                self.ex.cancel(req.account_id, oid)
        return {"canceledOrderIds": [oid for oid, _ in entries]}

    async def modify_orders(self, req: Request) -> JSON:
        entries = _batch(req.json())
        parsed = [(_id_entry(o)[0], _modify_fields(o)) for o in entries]
        with self.ex.batch():
            for oid, fields in parsed:
                if self.ex.get_order(req.account_id, oid) is not None:
                    self.ex.modify(req.account_id, oid, **fields)
        return {"modifiedOrderIds": [oid for oid, _ in parsed]}

    async def open_orders(self, req: Request) -> JSON:
        slugs = req.q_all("slugs")
        orders = self.ex.open_orders(req.account_id, slugs or None)
        return {"orders": [wire.order(o, self.ex) for o in orders]}

    async def cancel_all(self, req: Request) -> JSON:
        body = req.json()
        slugs = body.get("slugs")
        if slugs is not None and (
            not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs)
        ):
            raise ApiError(400, "slugs must be a list of strings")
        ids = self.ex.cancel_all(req.account_id, slugs or None)
        return {"canceledOrderIds": ids}

    async def get_order(self, req: Request) -> JSON:
        o = self.ex.get_order(req.account_id, req.params["order_id"])
        if o is None:
            raise ApiError(404, "order not found")
        return {"order": wire.order(o, self.ex)}

    def _require_slug(self, body: JSON) -> str:
        slug = body.get("marketSlug")
        if not isinstance(slug, str) or not slug:
            raise ApiError(400, "marketSlug is required")
        return slug

    async def cancel_order(self, req: Request) -> JSON:
        self._require_slug(req.json())
        oid = req.params["order_id"]
        if self.ex.get_order(req.account_id, oid) is None:
            raise ApiError(404, "order not found")
        self.ex.cancel(req.account_id, oid)
        return {}

    async def modify_order(self, req: Request) -> JSON:
        body = req.json()
        self._require_slug(body)
        fields = _modify_fields(body)
        oid = req.params["order_id"]
        if self.ex.get_order(req.account_id, oid) is None:
            raise ApiError(404, "order not found")
        self.ex.modify(req.account_id, oid, **fields)
        return {}

    async def preview_order(self, req: Request) -> JSON:
        body = req.json()
        inner = body.get("request")
        if not isinstance(inner, dict):
            raise ApiError(400, "request is required")
        spec = parse_order(inner)
        return {"order": self._preview(req.account_id, spec)}

    def _preview(self, account_id: str, spec: OrderSpec) -> JSON:
        side = spec.intent.book_side if spec.intent is not Intent.UNKNOWN else Side.UNKNOWN
        qty = spec.quantity or ZERO
        out: JSON = {
            "id": "",
            "marketSlug": spec.market_slug,
            "side": side.value,
            "type": spec.type.value,
            "price": wire.amount(spec.price),
            "quantity": wire.number(qty),
            "cumQuantity": 0,
            "leavesQuantity": wire.number(qty),
            "tif": spec.tif.value,
            "intent": spec.intent.value,
            "state": "ORDER_STATE_PENDING_NEW",
            "marketMetadata": wire.market_metadata(spec.market_slug, self.ex),
        }
        m = self.ex.markets.get(spec.market_slug)
        if m is None or side is Side.UNKNOWN or qty <= 0:
            return out
        book = self.ex.book(m.slug, depth=1000)
        levels = book.offers if side is Side.BUY else book.bids
        remaining, notional, fee = qty, ZERO, ZERO
        theta = m.taker_theta
        for lv in levels:
            if spec.price is not None and (
                (side is Side.BUY and lv.price > spec.price)
                or (side is Side.SELL and lv.price < spec.price)
            ):
                break
            take = min(remaining, lv.qty)
            notional += take * lv.price
            fee += theta * take * lv.price * (1 - lv.price)
            remaining -= take
            if remaining <= 0:
                break
        filled = qty - remaining
        if filled > 0:
            out["avgPx"] = wire.amount(notional / filled)
            out["commissionNotionalTotalCollected"] = wire.amount(round_fee(fee))
        return out

    async def close_position(self, req: Request) -> JSON:
        body = req.json()
        slug = self._require_slug(body)
        positions = self.ex.positions(req.account_id)
        net = positions[slug].net if slug in positions else ZERO
        intent = Intent.SELL_LONG if net >= 0 else Intent.SELL_SHORT
        mpi = _enum_str(body.get("manualOrderIndicator"), "manualOrderIndicator")
        spec = OrderSpec(
            market_slug=slug,
            intent=intent,
            type=OrderType.MARKET,
            quantity=abs(net),
            tif=TimeInForce.IOC,
            manual_order_indicator=mpi or "",
        )
        if not body.get("synchronousExecution"):
            return {"id": self._submit(req.account_id, spec)}
        seen: list[Any] = []
        unsubscribe = self.ex.subscribe(
            lambda ev: seen.append(ev.execution) if isinstance(ev, ExecutionReported) else None
        )
        try:
            oid = self._submit(req.account_id, spec)
        finally:
            unsubscribe()
        return {
            "id": oid,
            "executions": [wire.execution(x, self.ex) for x in seen if x.order.order_id == oid],
        }

    # -- portfolio / account ----------------------------------------------------------------

    async def positions(self, req: Request) -> JSON:
        market = req.q("market")
        items = sorted(self.ex.positions(req.account_id).items())
        if market:
            items = [(s, p) for s, p in items if s == market]
        chunk, cursor, eof = _page(items, req)
        out: JSON = {"positions": {s: wire.position(p, self.ex) for s, p in chunk}, "eof": eof}
        if cursor:
            out["nextCursor"] = cursor
        return out

    async def activities(self, req: Request) -> JSON:
        acts = self.ex.activities(req.account_id)  # oldest first
        if req.q("sortOrder") != "SORT_ORDER_ASCENDING":
            acts = list(reversed(acts))
        slug = req.q("marketSlug")
        types = set(req.q_all("types"))
        if types:
            acts = [a for a in acts if a.type.value in types]
        if slug:
            acts = [a for a in acts if _activity_slug(a) == slug]
        chunk, cursor, eof = _page(acts, req)
        out: JSON = {"activities": [wire.activity(a, self.ex) for a in chunk], "eof": eof}
        if cursor:
            out["nextCursor"] = cursor
        return out

    async def balances(self, req: Request) -> JSON:
        return {"balances": [wire.balance(self.ex.balance(req.account_id))]}


def _activity_slug(a: Any) -> str | None:
    if a.trade is not None:
        return a.trade.market_slug
    if a.resolution is not None:
        return a.resolution.market_slug
    return None


def submit_rejected(ex: Exchange, account_id: str, spec: OrderSpec, text: str) -> str:
    """Give a create request an id and reject it outright (the ``reject_all_orders`` fault)."""
    return ex.submit_rejected(account_id, spec, RejectReason.EXCHANGE_OPTION, text)


def accepted_record(a: AcceptedOrder) -> JSON:
    """One entry of the admin accepted-order record."""
    s = a.request
    return {
        "orderId": a.order_id,
        "accountId": a.account_id,
        "time": wire.timestamp(a.time),
        "marketSlug": s.market_slug,
        "intent": s.intent.value,
        "type": s.type.value,
        "price": None if s.price is None else wire.dec4(s.price),
        "quantity": None if s.quantity is None else str(s.quantity),
        "tif": s.tif.value,
    }
