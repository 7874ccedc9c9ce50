"""Typed async client for the OpticOdds v3 REST API and the SSE odds stream (httpx under Trio).

Design and traps:
- The key travels only in the `X-Api-Key` header, never in a URL (URLs get logged, by httpx
  among others), and never appears in an error, a log line or this object's repr.
- Every failure is one of the `OpticOddsError` subclasses below, mapped from the status code or
  the transport error, so callers catch meaning: `AuthError` (401; no retry can fix it),
  `ForbiddenError`, `BadRequestError`, `NotFoundError`, `RateLimitedError`, `ServerError`,
  `OpticOddsTransportError`, `MalformedResponseError`.
- Every request here is a GET (idempotent), so 429, 5xx and transport failures are retried a few
  times with backoff; 4xx other than 429 are not.
- Rate limits (opticodds-api.md §1.3) are fixed 15-second windows: 2,500 core requests and 250
  stream connects per window. `_Window` spends a local budget per window (on the Trio clock, so
  tests can run it on a mock clock) and also obeys the server's `x-ratelimit-remaining` /
  `x-ratelimit-reset` headers when present: at zero remaining it waits for the reset. A 429 waits
  until `x-ratelimit-reset` (or `Retry-After`, or a whole window) before the retry.
- `/fixtures/odds` takes at most 5 sportsbooks and 5 fixtures per request: `fixture_odds`
  batches over both and merges per fixture.
- Multi-value parameters are sent as repeated keys (the documented form).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import attrs
import httpx
import trio

from polybot.clock import epoch_ms
from polybot.opticodds.sse import SSEEvent, SSEParser
from polybot.opticodds.wire import (
    Fixture,
    FixtureOdds,
    Sportsbook,
    WireError,
    loads,
    parse_fixture,
    parse_fixture_odds,
    parse_page,
    parse_sportsbooks,
)

log = logging.getLogger(__name__)

MAX_BOOKS_PER_REQUEST = 5
MAX_FIXTURES_PER_REQUEST = 5
CONCURRENT_GETS = 8  # batched snapshot requests in flight at once (fixture_odds)
WINDOW_SECONDS = 15.0
# (method, path, query, status or None, body, error or None): `polybot.recording.Recorder.rest_tap`
ResponseTap = Callable[[str, str, Sequence[tuple[str, str]], int | None, bytes, str | None], None]


# --- errors ----------------------------------------------------------------------------------------


class OpticOddsError(Exception):
    """Base of every OpticOdds client failure."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(OpticOddsError):
    """401: the API key is missing, wrong or inactive. Fatal: retrying cannot fix it."""


class ForbiddenError(OpticOddsError):
    """403: the key is valid but the data product is not licensed."""


class BadRequestError(OpticOddsError):
    """400: the request was rejected by validation (the server's message is kept)."""


class NotFoundError(OpticOddsError):
    pass


class RateLimitedError(OpticOddsError):
    """429 that persisted through the retries."""


class ServerError(OpticOddsError):
    """5xx that persisted through the retries."""


class OpticOddsTransportError(OpticOddsError):
    """Connection refused/reset, timeout: the request may not have reached the server."""


class MalformedResponseError(OpticOddsError):
    """A 2xx whose body is not what the API documents."""


_BY_STATUS: dict[int, type[OpticOddsError]] = {
    400: BadRequestError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitedError,
}


class _HasReveal(Protocol):
    def reveal(self) -> str: ...


def _error_text(resp: httpx.Response) -> str:
    """The server's `{"error": ...}` text (or a plain-text body), cut short."""
    try:
        body = resp.json()
        if isinstance(body, Mapping) and isinstance(body.get("error"), str):
            return body["error"][:300]
    except ValueError:
        pass
    return resp.text[:300].strip() or resp.reason_phrase


def error_for(resp: httpx.Response, what: str) -> OpticOddsError:
    status = resp.status_code
    text = _error_text(resp)
    if status == 401:
        return AuthError(f"OpticOdds rejected the API key on {what} (401: {text})", status=401)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else OpticOddsError)
    return cls(f"OpticOdds {what} failed ({status}: {text})", status=status)


# --- rate limiting -------------------------------------------------------------------------------


@attrs.define
class _Window:
    """A fixed-window request budget, plus whatever the server's headers say."""

    limit: int
    seconds: float = WINDOW_SECONDS
    _window_end: float = 0.0
    _used: int = 0
    _blocked_until: float = 0.0  # from headers / a 429, on the Trio clock

    async def acquire(self) -> None:
        while True:
            now = trio.current_time()
            if now < self._blocked_until:
                await trio.sleep_until(self._blocked_until)
                continue
            if now >= self._window_end:
                self._window_end = now + self.seconds
                self._used = 0
            if self._used < self.limit:
                self._used += 1
                return
            log.warning("OpticOdds request budget (%d per %.0fs) spent; waiting %.1fs",
                        self.limit, self.seconds, self._window_end - now)
            await trio.sleep_until(self._window_end)

    def block_for(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, trio.current_time() + seconds)

    def observe(self, resp: httpx.Response) -> None:
        remaining = resp.headers.get("x-ratelimit-remaining")
        reset = resp.headers.get("x-ratelimit-reset")
        if remaining is None:
            return
        try:
            if int(remaining) > 0:
                return
        except ValueError:
            return
        self.block_for(_seconds_until_reset(reset))


def _seconds_until_reset(reset: str | None, retry_after: str | None = None) -> float:
    """Seconds to wait: `x-ratelimit-reset` is Unix seconds at the window's end.

    Measured against the host's clock (the server's header is real time, never a replayed one).
    """
    if reset:
        try:
            return min(max(float(reset) - epoch_ms() / 1000, 0.0) + 0.05, WINDOW_SECONDS + 1)
        except ValueError:
            pass
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), 60.0)
        except ValueError:
            pass
    return WINDOW_SECONDS


# --- the client ----------------------------------------------------------------------------------


def _chunks(items: Sequence[str], n: int) -> list[list[str]]:
    return [list(items[i:i + n]) for i in range(0, len(items), n)]


class OpticOddsClient:
    """REST and stream access to OpticOdds. Use as an async context manager, or call `aclose()`.

    `base_url` is e.g. `https://api.opticodds.com/api/v3` (or the local sim's URL); `api_key` a
    string or a `Secret` (anything with `.reveal()`). `http` lets the caller supply the httpx
    client (the seam for transports); the client then stays the caller's to close.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | _HasReveal,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        rate_limit: int = 2500,
        stream_connect_limit: int = 250,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        key = api_key.reveal() if hasattr(api_key, "reveal") else str(api_key)
        if not key:
            raise AuthError("no OpticOdds API key configured")
        self._headers = {"X-Api-Key": key, "Accept": "application/json"}
        self._own_http = http is None
        # `transport`: where the requests go (a backtest answers them from a recording)
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout), transport=transport)
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self.core_window = _Window(rate_limit)
        self.stream_window = _Window(stream_connect_limit)
        # recording (issue 16): called with each REST answer as it arrives: method, path, query,
        # status (None: no answer, see error), body, error. Never the headers (the key is there).
        self.recording: ResponseTap | None = None

    def __repr__(self) -> str:
        return f"OpticOddsClient({self._base!r}, api_key='***')"

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> OpticOddsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- plumbing ---------------------------------------------------------------------------------

    async def _get(self, path: str, params: Iterable[tuple[str, str]] = ()) -> Any:
        what = f"GET {path}"
        params = list(params)
        last: OpticOddsError | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await trio.sleep(self._backoff * 2 ** (attempt - 1))
            await self.core_window.acquire()
            try:
                resp = await self._http.get(self._base + path, params=httpx.QueryParams(tuple(params)),
                                            headers=self._headers)
            except httpx.TimeoutException as e:
                last = OpticOddsTransportError(f"OpticOdds {what} timed out")
                if self.recording is not None:
                    self.recording("GET", path, params, None, b"", type(e).__name__)
                continue
            except httpx.TransportError as e:
                last = OpticOddsTransportError(f"OpticOdds {what}: {type(e).__name__}")
                if self.recording is not None:
                    self.recording("GET", path, params, None, b"", type(e).__name__)
                continue
            if self.recording is not None:
                self.recording("GET", path, params, resp.status_code, resp.content, None)
            self.core_window.observe(resp)
            if resp.status_code == 200:
                try:
                    return loads(resp.content)
                except WireError as e:
                    raise MalformedResponseError(f"OpticOdds {what}: {e}", status=200) from None
            err = error_for(resp, what)
            if resp.status_code == 429:
                self.core_window.block_for(_seconds_until_reset(
                    resp.headers.get("x-ratelimit-reset"), resp.headers.get("retry-after")))
                last = err
                continue
            if resp.status_code >= 500:
                last = err
                continue
            raise err
        assert last is not None
        raise last

    async def _get_all(self, path: str, requests: Sequence[list[tuple[str, str]]]) -> list[Any]:
        """`_get` of each parameter list, at most CONCURRENT_GETS in flight; the answers in
        request order. The first failure cancels the rest and is raised as `_get` raised it."""
        if len(requests) <= 1:
            return [await self._get(path, params) for params in requests]
        answers: list[Any] = [None] * len(requests)
        failed: list[Exception] = []
        limit = trio.CapacityLimiter(CONCURRENT_GETS)

        async def one(i: int, params: list[tuple[str, str]], scope: trio.CancelScope) -> None:
            async with limit:
                try:
                    answers[i] = await self._get(path, params)
                except Exception as exc:  # an OpticOddsError: raised below, bare
                    failed.append(exc)
                    scope.cancel()

        async with trio.open_nursery() as nursery:
            for i, params in enumerate(requests):
                nursery.start_soon(one, i, params, nursery.cancel_scope)
        if failed:
            raise failed[0]
        return answers

    async def _paged(self, path: str, params: list[tuple[str, str]]) -> list[Any]:
        rows: list[Any] = []
        page = 1
        while True:
            body = await self._get(path, [*params, ("page", str(page))])
            try:
                batch, more = parse_page(body)
            except WireError as e:
                raise MalformedResponseError(f"OpticOdds GET {path}: {e}") from None
            rows += batch
            if not more or not batch or page >= 1000:
                return rows
            page += 1

    def _parse(self, what: str, fn: Any, obj: Any) -> Any:
        try:
            return fn(obj)
        except WireError as e:
            raise MalformedResponseError(f"OpticOdds {what}: {e}") from None

    # --- REST ---------------------------------------------------------------------------------

    async def sportsbooks(self) -> list[Sportsbook]:
        body = await self._get("/sportsbooks")
        return self._parse("GET /sportsbooks", parse_sportsbooks, body)

    async def fixtures(
        self,
        *,
        active: bool = False,
        sport: Sequence[str] = (),
        league: Sequence[str] = (),
        fixture_id: Sequence[str] = (),
        team_id: Sequence[str] = (),
        status: Sequence[str] = (),
        start_after: datetime | None = None,
        start_before: datetime | None = None,
    ) -> list[Fixture]:
        """`/fixtures` (or `/fixtures/active`), every page; at least one selector is required."""
        params: list[tuple[str, str]] = []
        for name, values in (("sport", sport), ("league", league), ("id", fixture_id),
                             ("team_id", team_id), ("status", status)):
            params += [(name, v) for v in values]
        if start_after is not None:
            params.append(("start_date_after", start_after.isoformat()))
        if start_before is not None:
            params.append(("start_date_before", start_before.isoformat()))
        path = "/fixtures/active" if active else "/fixtures"
        rows = await self._paged(path, params)
        out: list[Fixture] = []
        for r in rows:
            try:
                out.append(parse_fixture(r))
            except WireError as e:
                log.warning("OpticOdds %s: skipped a malformed fixture (%s)", path, e)
        return out

    async def active_fixtures(self, **kw: Any) -> list[Fixture]:
        return await self.fixtures(active=True, **kw)

    async def fixture(self, fixture_id: str) -> Fixture | None:
        found = await self.fixtures(fixture_id=[fixture_id])
        return next((f for f in found if f.id == fixture_id), None)

    async def fixtures_by_team(self, team_id: str, **kw: Any) -> list[Fixture]:
        return await self.fixtures(team_id=[team_id], **kw)

    async def fixture_odds(
        self,
        fixture_ids: Sequence[str],
        sportsbooks: Sequence[str],
        *,
        markets: Sequence[str] = ("moneyline",),
        is_main: bool | None = None,
        odds_format: str = "AMERICAN",
        book_ids: Mapping[str, str] | None = None,
    ) -> dict[str, FixtureOdds]:
        """Current odds per fixture id, batched ≤ 5 fixtures × ≤ 5 books per request.

        An odd absent from the answer is suspended (the API returns only available odds).
        """
        if not sportsbooks:
            raise BadRequestError("fixture_odds needs at least one sportsbook")
        out: dict[str, FixtureOdds] = {}
        fids = list(dict.fromkeys(fixture_ids))
        requests: list[list[tuple[str, str]]] = []
        for books in _chunks(list(dict.fromkeys(sportsbooks)), MAX_BOOKS_PER_REQUEST):
            for group in _chunks(fids, MAX_FIXTURES_PER_REQUEST):
                params = [("fixture_id", f) for f in group] + [("sportsbook", b) for b in books]
                params += [("market", m) for m in markets]
                params.append(("odds_format", odds_format))
                if is_main is not None:
                    params.append(("is_main", "true" if is_main else "false"))
                requests.append(params)
        # a few requests in flight at once (a league's snapshot is 50 of them: in turn, they made
        # the feed's start wait on 50 round trips); answers are merged in request order
        bodies = await self._get_all("/fixtures/odds", requests)
        for body in bodies:
            rows = body.get("data") if isinstance(body, Mapping) else None
            if not isinstance(rows, list):
                raise MalformedResponseError("OpticOdds GET /fixtures/odds: 'data' is not a list")
            for r in rows:
                try:
                    fo = parse_fixture_odds(r, book_ids=book_ids)
                except WireError as e:
                    log.warning("OpticOdds /fixtures/odds: skipped a malformed fixture (%s)", e)
                    continue
                if fo.skipped:
                    log.warning("OpticOdds /fixtures/odds: skipped %d malformed odds of %s",
                                fo.skipped, fo.fixture.id)
                prev = out.get(fo.fixture.id)
                if prev is not None:
                    fo = FixtureOdds(fixture=fo.fixture, odds=prev.odds + fo.odds,
                                     skipped=prev.skipped + fo.skipped)
                out[fo.fixture.id] = fo
        return out

    # --- SSE stream ---------------------------------------------------------------------------

    @asynccontextmanager
    async def stream_odds(
        self,
        sport: str,
        sportsbooks: Sequence[str],
        *,
        leagues: Sequence[str] = (),
        fixture_ids: Sequence[str] = (),
        markets: Sequence[str] = ("moneyline",),
        include_fixture_updates: bool = True,
        last_entry_id: str | None = None,
        parser: SSEParser | None = None,
    ) -> AsyncIterator[OddsStream]:
        """Open `/stream/odds/{sport}`; yields an `OddsStream` once the server answered 200.

        Errors on connect are typed like REST errors (a 400 here is `text/plain`). Not retried:
        the caller (the odds feed) owns reconnection and its pacing.
        """
        if not 1 <= len(sportsbooks) <= MAX_BOOKS_PER_REQUEST:
            raise BadRequestError(f"a stream takes 1 to {MAX_BOOKS_PER_REQUEST} sportsbooks")
        params = [("sportsbook", b) for b in sportsbooks]
        params += [("league", x) for x in leagues] + [("fixture_id", x) for x in fixture_ids]
        params += [("market", m) for m in markets]
        if include_fixture_updates:
            params.append(("include_fixture_updates", "true"))
        if last_entry_id:
            params.append(("last_entry_id", last_entry_id))
        what = f"stream /stream/odds/{sport}"
        await self.stream_window.acquire()
        timeout = httpx.Timeout(self._timeout, read=None)  # liveness is the feed's watchdog
        try:
            async with self._http.stream("GET", f"{self._base}/stream/odds/{sport}",
                                         params=httpx.QueryParams(tuple(params)),
                                         headers={**self._headers, "Accept": "text/event-stream"},
                                         timeout=timeout) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    if resp.status_code == 429:
                        self.stream_window.block_for(_seconds_until_reset(
                            resp.headers.get("x-ratelimit-reset"), resp.headers.get("retry-after")))
                    raise error_for(resp, what)
                yield OddsStream(resp, parser or SSEParser())
        except httpx.TimeoutException:
            raise OpticOddsTransportError(f"OpticOdds {what} timed out") from None
        except httpx.TransportError as e:
            raise OpticOddsTransportError(f"OpticOdds {what}: {type(e).__name__}") from None


class OddsStream:
    """Events of one open stream connection; `bytes_received` counts what arrived (any byte = alive)."""

    def __init__(self, resp: httpx.Response, parser: SSEParser) -> None:
        self._resp = resp
        self.parser = parser
        self.bytes_received = 0

    async def events(self) -> AsyncIterator[SSEEvent | None]:
        """Yields each parsed event, and None for a chunk that completed no event (a sign of
        life such as a comment or half a frame). Ends when the server closes the stream."""
        chunks = self._resp.aiter_bytes()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except httpx.TimeoutException:
                raise OpticOddsTransportError("OpticOdds stream timed out") from None
            except httpx.HTTPError as e:  # reset mid-chunk, broken chunked encoding, ...
                raise OpticOddsTransportError(f"OpticOdds stream broke: {type(e).__name__}") from None
            self.bytes_received += len(chunk)
            events = self.parser.feed(chunk)
            if not events:
                yield None
            for ev in events:
                yield ev
