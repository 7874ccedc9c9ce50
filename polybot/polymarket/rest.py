"""Typed async REST client for Polymarket US, under Trio (reference §3, §9).

One `httpx.AsyncClient` (connection pool) per host: the signed API host and the public gateway.
httpx timeouts are per socket operation, so each attempt also runs under `trio.fail_after`
(`timeout`), the overall deadline.

Retry policy, the part that can lose money if wrong:

* Reads (GET) and cancels (idempotent: unknown ids are ignored) are retried on timeouts,
  transport errors and 408/409/429/5xx with capped, jittered exponential backoff; the same
  `poly-correlation-id` is reused across the retries of one call.
* Creates (single and batched) and modifies are NEVER retried: there is no idempotency key, so
  a resend could double an order. When their fate is unknown (deadline passed, connection broke
  after the request may have left, 408 or 5xx) they raise `OutcomeUnknown` carrying the body
  that was sent; the caller reconciles from the order stream / open orders. A failure to even
  connect raises the plain `TransportError`/`Timeout`: nothing left the machine.
* Every order carries `manualOrderIndicator: MANUAL_ORDER_INDICATOR_AUTOMATIC` (wire.order_body).

Token buckets keep authenticated and public calls under their per-second limits. The server's
`Date` header is compared with the local clock; a skew over 5 s is warned about once (the
exchange refuses signatures 30 s off).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import attrs
import httpx
import trio

from polybot.clock import epoch_ms
from polybot.model import (
    Balance,
    BookSnapshot,
    EventInfo,
    LeagueInfo,
    MappedMarketSide,
    MarketInfo,
    Order,
    OrderRequest,
    TimeInForce,
)
from polybot.polymarket import errors as E
from polybot.polymarket import wire
from polybot.polymarket.auth import PolymarketAuth, Signer
from polybot.polymarket.ratelimit import Backoff, TokenBucket

log = logging.getLogger(__name__)

CORRELATION_ID_HEADER = "poly-correlation-id"
USER_AGENT = "polybot/0.1"
MAX_BATCH = 20
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})

Kind = Literal["read", "cancel", "create"]
# (method, path, query, status or None, body, error or None): `polybot.recording.Recorder.rest_tap`
ResponseTap = Callable[[str, str, Sequence[tuple[str, str]], int | None, bytes, str | None], None]


class SentCreate(Protocol):
    """A create handed to the wire (`send_create`); its answer is awaited apart."""

    async def result(self) -> str: ...


class DeferredCreate:
    """`send_create` without the fast path: the httpx create runs when the answer is awaited."""

    __slots__ = ("_create",)

    def __init__(self, create: Callable[[], Awaitable[str]]) -> None:
        self._create = create

    async def result(self) -> str:
        return await self._create()


@attrs.frozen
class EventsPage:
    """One page of an events listing: the events that parsed, how many rows the page held (a
    short page is the last) and how many were malformed (logged, counted, skipped)."""

    events: tuple[tuple[EventInfo, tuple[MarketInfo, ...]], ...]
    rows: int
    malformed: int = 0


@attrs.frozen
class RestConfig:
    """Where and how fast to talk (the composition root maps Settings onto this)."""

    api_url: str  # PM_BASE_URL, signed endpoints
    gateway_url: str  # PM_GATEWAY_URL, public endpoints
    timeout: float = 10.0  # HTTP_TIMEOUT_SECONDS: overall deadline per attempt
    rate_limit_per_second: float = 20.0  # PM_RATE_LIMIT_PER_SECOND
    public_rate_limit_per_second: float = 20.0  # PM_PUBLIC_RATE_LIMIT_PER_SECOND
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    skew_warn_seconds: float = 5.0


def error_for(status: int, message: str, **kw: Any) -> E.PolymarketError:
    kw["status"] = status
    if status == 400:
        return E.BadRequest(message, **kw)
    if status in (401, 403):
        return E.AuthError(message, **kw)
    if status == 404:
        return E.NotFound(message, **kw)
    if status == 429:
        return E.RateLimited(message, **kw)
    if status >= 500:
        return E.ServerError(message, **kw)
    return E.ApiStatusError(message, **kw)


def _error_message(resp: httpx.Response) -> tuple[str, Any]:
    try:
        body = wire.loads_exact(resp.content)
    except ValueError:
        return (resp.text[:200] or resp.reason_phrase or "error"), None
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or resp.reason_phrase), body
    return resp.reason_phrase or "error", body


class PolymarketRestClient:
    """The exchange's REST surface as typed async methods. Use as an async context manager."""

    def __init__(
        self,
        config: RestConfig,
        signer: Signer | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.signer = signer
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
        common: dict[str, Any] = {
            "timeout": config.timeout,
            "limits": limits,
            "headers": {"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        }
        if transport is not None:
            common["transport"] = transport
        self._api = httpx.AsyncClient(
            base_url=config.api_url.rstrip("/"),
            auth=PolymarketAuth(signer) if signer else None,
            **common,
        )
        self._gateway = httpx.AsyncClient(base_url=config.gateway_url.rstrip("/"), **common)
        self._authed_bucket = TokenBucket.under_limit(config.rate_limit_per_second)
        # order creates over kept-alive sockets (`fastorder.FastCreate`), used while it runs
        self.fast: Any = None
        self._public_bucket = TokenBucket.under_limit(config.public_rate_limit_per_second)
        # discovery's listings take at most half the public budget, so the public reads trading
        # needs (settlement, metadata) keep the other half (its first pass, before the bot
        # trades, takes it all: `whole_public_budget`); creates and cancels are signed and use
        # the authed bucket, so they never wait behind discovery at all
        self._listing_bucket = TokenBucket.under_limit(config.public_rate_limit_per_second / 2)
        self._whole_budget = 0  # > 0: inside `whole_public_budget`
        self.clock_skew_seconds: float | None = None  # server minus local, from `Date`
        # recording (issue 16): called with each answer to a public (unsigned) request as it
        # arrives: method, path, query, status (None: no answer, see error), body, error. The
        # signed calls (orders, cancels, the account) are the executor's and are not recorded.
        self.recording: ResponseTap | None = None
        self._skew_warned = False
        # counters for metrics
        self.requests = 0
        self.retries = 0
        self.errors = 0

    @contextmanager
    def whole_public_budget(self) -> Iterator[None]:
        """Listings made meanwhile take the whole public budget, not half: discovery's first
        pass, before the bot trades, when no public read of the trading's needs the other half.
        The public bucket still keeps every call under the per-IP limit."""
        self._whole_budget += 1
        try:
            yield
        finally:
            self._whole_budget -= 1

    async def __aenter__(self) -> PolymarketRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._api.aclose()
            await self._gateway.aclose()

    # --- core ------------------------------------------------------------------------------------

    def _check_skew(self, resp: httpx.Response) -> None:
        date = resp.headers.get("date")
        if not date:
            return
        try:
            server = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        # against the host clock the signer stamps requests with (not a replayed calendar)
        self.clock_skew_seconds = skew = server - epoch_ms() / 1000
        if abs(skew) > self.config.skew_warn_seconds and not self._skew_warned:
            self._skew_warned = True
            log.warning(
                "clock skew vs exchange is %.1f s (signatures fail beyond 30 s): check NTP", skew
            )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        authed: bool,
        kind: Kind = "read",
        query: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        listing: bool = False,
        paid: bool = False,
    ) -> Any:
        if authed and self.signer is None:
            raise E.AuthError(
                "no API key configured for a signed endpoint", method=method, path=path
            )
        client = self._api if authed else self._gateway
        bucket = self._authed_bucket if authed else self._public_bucket
        cid = str(uuid.uuid4())
        ctx: dict[str, Any] = {"correlation_id": cid, "method": method, "path": path}
        content = wire.dumps(body) if body is not None else None
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap)
        retryable = kind != "create"
        attempt = 0
        while True:
            if listing and not self._whole_budget:
                await self._listing_bucket.acquire()
            if paid:  # the caller took this attempt's token already (the fast create's fallback)
                paid = False
            else:
                await bucket.acquire()
            self.requests += 1
            err: E.PolymarketError
            unknown = False  # for creates: may the request have reached the exchange?
            try:
                with trio.fail_after(self.config.timeout):
                    resp = await client.request(
                        method,
                        path,
                        params=list(query) if query else None,
                        content=content,
                        headers={CORRELATION_ID_HEADER: cid},
                    )
            except (trio.TooSlowError, httpx.TimeoutException) as exc:
                never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                err = E.Timeout(f"no answer within {self.config.timeout} s", **ctx)
                unknown = not never_sent
                if self.recording is not None and not authed:
                    self.recording(method, path, query or (), None, b"", type(exc).__name__)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError)
                err = E.TransportError(f"{type(exc).__name__}: {exc}", **ctx)
                unknown = not never_sent
                if self.recording is not None and not authed:
                    self.recording(method, path, query or (), None, b"", type(exc).__name__)
            else:
                if self.recording is not None and not authed:
                    self.recording(method, path, query or (), resp.status_code, resp.content, None)
                self._check_skew(resp)
                if resp.is_success:
                    if not resp.content:
                        return {}
                    try:
                        return wire.loads_exact(resp.content)
                    except ValueError as exc:
                        err = E.ServerError(
                            f"unparseable success body: {exc}", status=resp.status_code, **ctx
                        )
                        unknown = True
                else:
                    msg, ebody = _error_message(resp)
                    err = error_for(resp.status_code, msg, body=ebody, **ctx)
                    unknown = resp.status_code in (408,) or resp.status_code >= 500
                    if resp.status_code not in RETRYABLE_STATUS:
                        self.errors += 1
                        raise err
            if not retryable:
                self.errors += 1
                if unknown:
                    raise E.OutcomeUnknown(
                        f"outcome of {method} {path} unknown: {err.message}",
                        sent=body,
                        cause=err,
                        status=err.status,
                        **ctx,
                    ) from err
                raise err
            if attempt >= self.config.max_retries:
                self.errors += 1
                raise err
            attempt += 1
            self.retries += 1
            delay = backoff.next_delay()
            log.info("retrying %s %s in %.2f s after %s", method, path, delay, err)
            await trio.sleep(delay)

    # --- markets (public) ------------------------------------------------------------------------

    async def list_markets(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        active: bool | None = None,
        closed: bool | None = None,
        slugs: Iterable[str] = (),
        extra: Iterable[tuple[str, str]] = (),
    ) -> list[MarketInfo]:
        """One page of `GET /v1/markets` (offset pagination: a short page is the last)."""
        q: list[tuple[str, str]] = [("limit", str(limit)), ("offset", str(offset))]
        if active is not None:
            q.append(("active", str(active).lower()))
        if closed is not None:
            q.append(("closed", str(closed).lower()))
        q.extend(("slug", s) for s in slugs)
        q.extend(extra)
        data = await self._request("GET", "/v1/markets", authed=False, query=q)
        return [wire.parse_market(m) for m in data.get("markets") or ()]

    async def all_markets(
        self, *, page_size: int = 100, max_pages: int = 100, **filters: Any
    ) -> list[MarketInfo]:
        """Every market matching `filters` (see `list_markets`), paging by offset."""
        out: list[MarketInfo] = []
        for page in range(max_pages):
            batch = await self.list_markets(limit=page_size, offset=page * page_size, **filters)
            out.extend(batch)
            if len(batch) < page_size:
                break
        return out

    async def market_by_slug(self, slug: str) -> MarketInfo:
        data = await self._request("GET", f"/v1/market/slug/{slug}", authed=False)
        return wire.parse_market(data.get("market") or {})

    async def book(self, slug: str) -> BookSnapshot:
        data = await self._request("GET", f"/v1/markets/{slug}/book", authed=False)
        return wire.parse_book(data.get("marketData") or {}, trio.current_time())

    async def bbo(self, slug: str) -> wire.Bbo:
        data = await self._request("GET", f"/v1/markets/{slug}/bbo", authed=False)
        return wire.parse_bbo(data.get("marketData") or {}, trio.current_time())

    async def settlement(self, slug: str) -> Decimal | None:
        """The settlement price, or None while the market is not settled (404)."""
        try:
            data = await self._request("GET", f"/v1/markets/{slug}/settlement", authed=False)
        except E.NotFound:
            return None
        value = data.get("settlement")
        return None if value is None else wire.dec(value)

    # --- events (public) -------------------------------------------------------------------------

    async def event_by_slug(self, slug: str) -> tuple[EventInfo, tuple[MarketInfo, ...]]:
        data = await self._request("GET", f"/v1/events/slug/{slug}", authed=False)
        return wire.parse_event(data.get("event") or {})

    async def event_by_id(self, event_id: str | int) -> tuple[EventInfo, tuple[MarketInfo, ...]]:
        data = await self._request("GET", f"/v1/events/{event_id}", authed=False)
        return wire.parse_event(data.get("event") or {})

    async def partner_event(
        self, external_id: str, partner: str = "opticodds"
    ) -> tuple[EventInfo, tuple[MarketInfo, ...], tuple[MappedMarketSide, ...]] | None:
        """OpticOdds fixture id → (event, its markets, mapped sides); None when not linked (404)."""
        try:
            data = await self._request(
                "GET", f"/v1/partners/{partner}/events/{external_id}", authed=False
            )
        except E.NotFound:
            return None
        event, markets = wire.parse_event(data.get("event") or {})
        sides = tuple(wire.parse_mapped_side(s) for s in data.get("mappedMarketSides") or ())
        return event, markets, sides

    async def events_of_markets(
        self, market_ids: Iterable[str], *, page_size: int = 100, max_pages: int = 100
    ) -> dict[str, EventInfo]:
        """Market id → the Event whose `markets[]` lists it, from `GET /v1/events` pages.

        The real Market object carries no `eventId`/`eventSlug`, and slugs are not a contract,
        so an events listing (or the partner lookup, `event_of_fixture`) is the only way to
        learn a market's event. Pages active, unclosed events until every id is found or the
        listing ends; an id missing from the result has no event that could be established.
        """
        want = {str(i) for i in market_ids if i}
        found: dict[str, EventInfo] = {}
        for page in range(max_pages):
            if not want - set(found):
                break
            q = [
                ("limit", str(page_size)),
                ("offset", str(page * page_size)),
                ("active", "true"),
                ("closed", "false"),
            ]
            data = await self._request("GET", "/v1/events", authed=False, query=q)
            events = data.get("events") or ()
            for raw in events:
                event, _markets = wire.parse_event(raw)
                for mid in event.market_ids:
                    if mid in want:
                        found.setdefault(mid, event)
            if len(events) < page_size:
                break
        return found

    # --- discovery (public, on the listing budget) ---------------------------------------------

    async def league(self, slug: str) -> LeagueInfo:
        """`GET /v2/leagues/{slug}` (NotFound for an unknown league)."""
        data = await self._request("GET", f"/v2/leagues/{slug}", authed=False, listing=True)
        league = data.get("league") if isinstance(data, dict) else None
        if not isinstance(league, dict):
            raise E.ServerError("league answer without a `league` object",
                                path=f"/v2/leagues/{slug}")
        try:
            return wire.parse_league(league)
        except wire.WireError as exc:
            raise E.ServerError(f"malformed league: {exc}", path=f"/v2/leagues/{slug}") from None

    async def events_page(
        self,
        *,
        series_ids: Iterable[str] = (),
        start_min: datetime | None = None,
        start_max: datetime | None = None,
        closed: bool | None = False,
        limit: int = 100,
        offset: int = 0,
    ) -> EventsPage:
        """One page of `GET /v1/events` filtered by series and game start (ISO 8601 UTC)."""
        q: list[tuple[str, str]] = [("seriesId", s) for s in series_ids]
        if start_min is not None:
            q.append(("startTimeMin", _iso(start_min)))
        if start_max is not None:
            q.append(("startTimeMax", _iso(start_max)))
        if closed is not None:
            q.append(("closed", str(closed).lower()))
        q += [("limit", str(limit)), ("offset", str(offset))]
        data = await self._request("GET", "/v1/events", authed=False, query=q, listing=True)
        return _events_page(data, "/v1/events")

    async def league_events_page(self, slug: str, *, limit: int = 100,
                                 offset: int = 0) -> EventsPage:
        """One page of `GET /v2/leagues/{slug}/events` (the league's active series)."""
        path = f"/v2/leagues/{slug}/events"
        q = [("limit", str(limit)), ("offset", str(offset))]
        data = await self._request("GET", path, authed=False, query=q, listing=True)
        return _events_page(data, path)

    async def event_of_fixture(self, fixture_id: str, market_id: str) -> EventInfo | None:
        """The Event the exchange links to OpticOdds fixture `fixture_id`, if it maps `market_id`.

        None when the fixture is not linked (404) or its `mappedMarketSides` name no side of
        this market: a fixture's event is the market's only if the exchange says so.
        """
        found = await self.partner_event(fixture_id)
        if found is None:
            return None
        event, _markets, sides = found
        if not any(s.market_id == str(market_id) for s in sides):
            return None
        return event

    async def market_with_event(self, slug: str) -> tuple[MarketInfo, EventInfo | None]:
        """The market of `slug` placed in its Event (event id/slug, start time), or with None.

        The start time is the Event's `startTime` (the deprecated `gameStartTime` otherwise);
        never `Market.startDate`, the listing time.
        """
        market = await self.market_by_slug(slug)
        event = (await self.events_of_markets([market.market_id])).get(market.market_id)
        if event is None:
            return market, None
        return wire.with_event(market, event), event

    # --- orders (signed) -------------------------------------------------------------------------

    @property
    def signed_bucket(self) -> TokenBucket:
        """The budget of every signed call (creates on any path share it)."""
        return self._authed_bucket

    async def create_order(
        self,
        req: OrderRequest,
        *,
        post_only: bool = False,
        good_till_time: datetime | None = None,
    ) -> str:
        """Submit one order; returns the exchange order id ("submitted", not "accepted").

        Never retried. Raises OutcomeUnknown when it may or may not have been placed. Goes over
        the fast path (`self.fast`, a running `fastorder.FastCreate`) when there is one.
        """
        fast = self.fast
        if fast is not None and fast.running:
            return str(await fast.create_order(req, post_only=post_only,
                                               good_till_time=good_till_time))
        return await self.create_order_httpx(req, post_only=post_only,
                                             good_till_time=good_till_time)

    async def send_create(
        self,
        req: OrderRequest,
        *,
        post_only: bool = False,
        good_till_time: datetime | None = None,
    ) -> SentCreate:
        """Put a create on the wire where that can be done apart from its answer (the fast path
        while it runs): returns once the request is with the socket; `await sent.result()` for
        the exchange id, with `create_order`'s errors. On httpx the whole create runs in
        `result()`, so the caller's task is never held by the round trip either way.
        """
        fast = self.fast
        if fast is not None and fast.running:
            sent: SentCreate = await fast.send_create(req, post_only=post_only,
                                                      good_till_time=good_till_time)
            return sent
        return DeferredCreate(lambda: self.create_order_httpx(
            req, post_only=post_only, good_till_time=good_till_time))

    async def create_order_httpx(
        self,
        req: OrderRequest,
        *,
        post_only: bool = False,
        good_till_time: datetime | None = None,
        paid: bool = False,
    ) -> str:
        """`create_order` through httpx; `paid`: the caller already took the bucket's token."""
        body = wire.order_body(
            req, participate_dont_initiate=post_only, good_till_time=good_till_time
        )
        data = await self._request("POST", "/v1/orders", authed=True, kind="create", body=body,
                                   paid=paid)
        oid = data.get("id")
        if not oid:
            raise E.OutcomeUnknown(
                "create answered without an order id",
                sent=body,
                cause=E.ServerError("no id"),
                method="POST",
                path="/v1/orders",
            )
        return str(oid)

    async def create_orders(self, reqs: Sequence[OrderRequest]) -> list[str]:
        """Submit 1–20 orders in one call; ids in request order. Never retried."""
        if not 1 <= len(reqs) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1..{MAX_BATCH} orders, got {len(reqs)}")
        body = {"orders": [wire.order_body(r) for r in reqs]}
        data = await self._request(
            "POST", "/v1/orders/batched", authed=True, kind="create", body=body
        )
        return [str(i) for i in data.get("createdOrderIds") or ()]

    async def cancel_order(self, order_id: str, market_slug: str) -> None:
        await self._request(
            "POST",
            f"/v1/order/{order_id}/cancel",
            authed=True,
            kind="cancel",
            body={"marketSlug": market_slug},
        )

    async def cancel_orders(self, orders: Sequence[tuple[str, str]]) -> list[str]:
        """Cancel 1–20 (order_id, market_slug) pairs; returns the echoed ids."""
        if not 1 <= len(orders) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1..{MAX_BATCH} cancels, got {len(orders)}")
        body = {"orders": [{"orderId": o, "marketSlug": s} for o, s in orders]}
        data = await self._request(
            "POST", "/v1/orders/batched/cancel", authed=True, kind="cancel", body=body
        )
        return [str(i) for i in data.get("canceledOrderIds") or ()]

    async def cancel_all(self, slugs: Iterable[str] = ()) -> list[str]:
        """Cancel every open order (in `slugs`, or everywhere when empty)."""
        s = list(slugs)
        body: dict[str, Any] = {"slugs": s} if s else {}
        data = await self._request(
            "POST", "/v1/orders/open/cancel", authed=True, kind="cancel", body=body
        )
        return [str(i) for i in data.get("canceledOrderIds") or ()]

    async def modify_order(
        self,
        order_id: str,
        market_slug: str,
        *,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
        tif: TimeInForce | None = None,
    ) -> None:
        """Cancel-replace at the exchange. Never retried (OutcomeUnknown when ambiguous)."""
        body: dict[str, Any] = {"marketSlug": market_slug}
        if price is not None:
            body["price"] = wire.usd(price)
        if quantity is not None:
            body["quantity"] = quantity
        if tif is not None:
            body["tif"] = tif.value
        await self._request(
            "POST", f"/v1/order/{order_id}/modify", authed=True, kind="create", body=body
        )

    async def open_orders(self, slugs: Iterable[str] = ()) -> list[Order]:
        q = [("slugs", s) for s in slugs]
        data = await self._request("GET", "/v1/orders/open", authed=True, query=q)
        return [wire.parse_order(o) for o in data.get("orders") or ()]

    async def order(self, order_id: str) -> Order:
        data = await self._request("GET", f"/v1/order/{order_id}", authed=True)
        return wire.parse_order(data.get("order") or {})

    # --- portfolio and account (signed) --------------------------------------------------------

    async def positions(
        self, market: str | None = None, *, page_size: int = 100
    ) -> dict[str, wire.ExchangePosition]:
        """Every position, following `nextCursor` until `eof`."""
        out: dict[str, wire.ExchangePosition] = {}
        cursor = ""
        while True:
            q = [("limit", str(page_size))]
            if market:
                q.append(("market", market))
            if cursor:
                q.append(("cursor", cursor))
            data = await self._request("GET", "/v1/portfolio/positions", authed=True, query=q)
            for slug, p in (data.get("positions") or {}).items():
                out[slug] = wire.parse_position(p, slug)
            cursor = data.get("nextCursor") or ""
            if data.get("eof") or not cursor:
                return out

    async def activities(
        self,
        *,
        market_slug: str | None = None,
        types: Iterable[str] = (),
        page_size: int = 100,
        max_pages: int = 50,
    ) -> list[wire.Activity]:
        """Activities, newest first, following cursors until `eof` (or `max_pages`)."""
        out: list[wire.Activity] = []
        cursor = ""
        for _ in range(max_pages):
            q = [("limit", str(page_size))]
            if market_slug:
                q.append(("marketSlug", market_slug))
            q.extend(("types", t) for t in types)
            if cursor:
                q.append(("cursor", cursor))
            data = await self._request("GET", "/v1/portfolio/activities", authed=True, query=q)
            out.extend(wire.parse_activity(a) for a in data.get("activities") or ())
            cursor = data.get("nextCursor") or ""
            if data.get("eof") or not cursor:
                break
        return out

    async def balances(self) -> list[Balance]:
        data = await self._request("GET", "/v1/account/balances", authed=True)
        return [wire.parse_balance(b) for b in data.get("balances") or ()]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _events_page(data: Any, path: str) -> EventsPage:
    rows = data.get("events") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise E.ServerError("events answer without an `events` list", path=path)
    events = []
    malformed = 0
    for raw in rows:
        try:
            if not isinstance(raw, dict):
                raise wire.WireError("event is not an object")
            events.append(wire.parse_event(raw))
        except (wire.WireError, ValueError, TypeError, KeyError) as exc:
            malformed += 1
            log.warning("%s: skipped a malformed event (%s)", path, exc)
    return EventsPage(events=tuple(events), rows=len(rows), malformed=malformed)


def signer_from_settings(settings: Any) -> Signer:
    """The API key of `polybot.config.Settings` as a Signer (the secret stays inside)."""
    return Signer(settings.pm_api_key_id, settings.pm_private_key.reveal())


def rest_config_from_settings(settings: Any) -> RestConfig:
    return RestConfig(
        api_url=settings.pm_base_url,
        gateway_url=settings.pm_gateway_url,
        timeout=float(settings.http_timeout_seconds),
        rate_limit_per_second=float(settings.pm_rate_limit_per_second),
        public_rate_limit_per_second=float(settings.pm_public_rate_limit_per_second),
    )


def client_from_settings(settings: Any, *,
                         transport: httpx.AsyncBaseTransport | None = None) -> PolymarketRestClient:
    """A REST client configured from Settings; use it as ``async with``. `transport`: where the
    requests go (default: the network; a backtest answers them from a recording)."""
    return PolymarketRestClient(rest_config_from_settings(settings), signer_from_settings(settings),
                                transport=transport)
