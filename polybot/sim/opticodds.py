"""A local OpticOdds v3 (REST + SSE odds stream) publishing sportsbook odds for the sim's games.

It encodes the protocol on its own (it must not import `polybot.opticodds`), following
opticodds-api.md §1-3 and its fake-server checklist (§6):

- base path `/api/v3`; the key in `X-Api-Key` or `?key=`; 401 `{"error":"API key is required"}`
  / `{"error":"Invalid or inactive API key"}`; every error body is `{"error": "..."}`.
- core REST carries `x-ratelimit-limit/-remaining/-reset` (fixed 15-second windows aligned to the
  wall clock, `reset` in Unix seconds); past the limit: 429 `{"error":"rate limit exceeded"}` with
  `Retry-After`. Stream connects count against their own 250 / 15 s bucket and carry no headers.
- repeated query keys, also comma-split; `sportsbook`/`market`/`league` match id or display name
  case-insensitively; unknown sportsbooks are silently dropped (as the real API does).
- `/fixtures`, `/fixtures/active` (`page` + `limit` ≤ 100, default 100, `{data, page,
  has_more}`; `start_date_after` / `start_date_before` inclusive; only fixtures of games the world
  lists, so a league schedule's fixtures appear when their games are listed), `/fixtures/odds`
  (≤ 5 books, ≤ 5 fixtures, the documented validation messages), `/sportsbooks`.
- `GET /stream/odds/{sport}`: `connected` (`ok go`), `ping` every `ping_seconds` with an ISO time,
  `odds` / `locked-odds` with `id:` = `entry_id`, `fixture-status` (live / completed / cancelled,
  start-date moves) only with `include_fixture_updates=true`, `retry: 5000` on every frame; no
  replay on `last_entry_id` (the observed real behaviour). Missing `sportsbook` → 400 text/plain.
  A stream filtered by `league` gets that league's odds and statuses, including fixtures listed
  after it connected (no reconnect needed); one filtered by `fixture_id` only those fixtures.
- Time: odds and status timestamps, pings and the default 3-day window read the world's clock
  (`now`, the scenario's, so an accelerated or mocked world stays consistent); rate-limit windows
  read the host's clock.

The odds model: every quoting book holds, per game, a small mean-reverting offset from the game's
hidden `true_prob_long` (its noise) and lays its margin on multiplicatively; prices are whole
American odds, so a quote (and its `timestamp`) only changes when the rounded price moves. A book
occasionally locks a game's moneyline for a few updates (both sides vanish from REST, `locked-odds`
on the stream with the last price) and then re-posts. Finished games are locked for good.
The world is read every `update_seconds`; the scenario driver is its only writer.

Choices where the reference is silent: the 6th fixture on `/fixtures/odds` gets
`maximum 5 fixture_ids allowed`; `fixture-status` data is the flat object of §3.3; the sim's
`game_id` is `sim-<fixture_id>`. `OddsControl` is the fault switch object tests flip.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import attrs
import orjson
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from polybot.sim.world import SimGame, World

BASE = "/api/v3"
WINDOW = 15
PAGE_LIMIT = 100  # fixtures pages: `limit` max 100, default 100
STATUSES = ("unplayed", "live", "half", "completed", "cancelled", "suspended", "delayed",
            "forfeited", "invalid")
FINISHED = ("completed", "cancelled", "forfeited", "invalid")
SPORT_NAMES = {"basketball": "Basketball", "football": "Football", "baseball": "Baseball",
               "hockey": "Ice Hockey", "soccer": "Soccer", "tennis": "Tennis"}


@attrs.frozen
class SimBook:
    id: str
    name: str
    margin: float  # booksum - 1 laid on multiplicatively
    noise: float  # stdev of the book's offset from the true probability
    quotes: bool = True  # exchanges are listed but publish nothing here


BOOKS: tuple[SimBook, ...] = (
    SimBook("pinnacle", "Pinnacle", 0.025, 0.004),
    SimBook("circa_sports", "Circa Sports", 0.035, 0.006),
    SimBook("betonline", "BetOnline", 0.04, 0.008),
    SimBook("bookmaker", "Bookmaker", 0.035, 0.007),
    SimBook("draftkings", "DraftKings", 0.048, 0.012),
    SimBook("fanduel", "FanDuel", 0.048, 0.012),
    SimBook("kalshi", "Kalshi", 0.0, 0.0, quotes=False),
    SimBook("polymarket", "Polymarket", 0.0, 0.0, quotes=False),
    SimBook("polymarket_usa_", "Polymarket (USA)", 0.0, 0.0, quotes=False),
)


@attrs.define(eq=False)
class OddsControl:
    """Fault switches and probes for tests (fields are read at the moment they matter).

    - `silent`: open streams send nothing at all (no pings, no odds) while set.
    - `error_burst` / `error_status`: the next N REST requests answer that status (default 500).
    - `rate_limit_burst`: the next N REST requests answer 429.
    - `duplicate_frames`: the next N odds / locked-odds frames are each delivered twice
      (the real stream's at-least-once delivery).
    - `drop_streams()`: end every open stream now (the client sees the connection close).
    - `lock(fixture_id, book)` / `unlock(...)`: force a book's line off / back on the board.
    - `update_now()`: re-read the world and publish changes at once (tests change the world).
    Counters: `stream_connects`, `rest_requests`.
    """

    silent: bool = False
    error_burst: int = 0
    error_status: int = 500
    rate_limit_burst: int = 0
    duplicate_frames: int = 0
    stream_connects: int = 0
    rest_requests: int = 0
    _server: LocalOpticOdds | None = attrs.field(default=None, repr=False)

    def drop_streams(self) -> None:
        if self._server is not None:
            self._server.drop_streams()

    def lock(self, fixture_id: str, book: str) -> None:
        assert self._server is not None, "server not started"
        self._server.forced_locks.add((fixture_id, book))
        self._server.update()

    def unlock(self, fixture_id: str, book: str) -> None:
        assert self._server is not None, "server not started"
        self._server.forced_locks.discard((fixture_id, book))
        self._server.update()

    def update_now(self) -> None:
        if self._server is not None:
            self._server.update()

    def quotes(self, fixture_id: str) -> dict[str, dict[str, int]]:
        """Current unlocked prices per book per normalized selection (for test assertions)."""
        assert self._server is not None, "server not started"
        return {
            book: dict(line.prices)
            for (fid, book), line in self._server.lines.items()
            if fid == fixture_id and not line.locked and line.prices
        }


@attrs.define
class _Line:
    """One book's moneyline on one game."""

    offset: float = 0.0
    prices: dict[str, int] = attrs.field(factory=dict)  # normalized selection -> American
    timestamp: float = 0.0
    locked: bool = True  # nothing published yet counts as off the board
    lock_left: int = 0  # updates left in a random lock


@attrs.define(eq=False)
class _Stream:
    sport: str
    books: frozenset[str]
    leagues: frozenset[str]
    fixtures: frozenset[str]
    markets: frozenset[str]
    is_live: bool | None
    fixture_updates: bool
    send: trio.MemorySendChannel[bytes]
    closed: trio.Event = attrs.field(factory=trio.Event)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prob_to_american(p: float) -> int:
    if p >= 0.5:
        return -round(100 * p / (1 - p))
    return round(100 * (1 - p) / p)


def american_to_decimal(a: int) -> float:
    return 1 + a / 100 if a > 0 else 1 + 100 / -a


class LocalOpticOdds:
    def __init__(
        self,
        world: World,
        *,
        api_key: str,
        ping_seconds: float = 5.0,
        seed: int = 0,
        control: OddsControl | None = None,
        books: tuple[SimBook, ...] = BOOKS,
        lock_probability: float = 0.01,
        rate_limit: int = 2500,
        stream_connect_limit: int = 250,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.world = world
        # the world's wall clock (the scenario's): odds and status timestamps, pings, the default
        # date window; rate-limit windows stay on the host's clock (a real budget)
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self._key = api_key
        self.ping_seconds = ping_seconds
        self.rng = random.Random(seed)
        self.control = control if control is not None else OddsControl()
        self.control._server = self
        self.books = books
        self.lock_probability = lock_probability
        self.rate_limit = rate_limit
        self.stream_connect_limit = stream_connect_limit
        self.lines: dict[tuple[str, str], _Line] = {}
        self.forced_locks: set[tuple[str, str]] = set()
        self.streams: set[_Stream] = set()
        self._fixture_seen: dict[str, tuple[str, datetime]] = {}
        self._seq = 0
        self._window: dict[str, tuple[int, int]] = {}  # bucket -> (window end, used)
        self.update(initial=True)

    # --- the odds model -----------------------------------------------------------------------

    def _price_line(self, game: SimGame, book: SimBook, line: _Line) -> dict[str, int]:
        p_home = float(game.true_prob_of(game.home)) + line.offset
        p_home = min(max(p_home, 0.02), 0.98)
        scale = 1 + book.margin
        return {
            game.home.normalized: prob_to_american(min(p_home * scale, 0.995)),
            game.away.normalized: prob_to_american(min((1 - p_home) * scale, 0.995)),
        }

    def update(self, *, initial: bool = False) -> None:
        """Re-read the world, move lines, publish what changed."""
        changed: list[dict[str, Any]] = []
        locked: list[dict[str, Any]] = []
        statuses: list[dict[str, Any]] = []
        now = self.now().timestamp()
        self._forget_pruned()
        for game in self.world.games:
            self._fixture_status(game, statuses, initial)
            for book in self.books:
                if not book.quotes:
                    continue
                key = (game.fixture_id, book.id)
                line = self.lines.get(key)
                if line is None:
                    line = self.lines[key] = _Line(offset=self.rng.gauss(0, book.noise))
                else:  # mean-reverting drift: the book's own line moves
                    line.offset = 0.8 * line.offset + self.rng.gauss(0, book.noise * 0.6)
                off = game.status in FINISHED or key in self.forced_locks
                if not off and not initial and line.lock_left == 0 and (
                    self.rng.random() < self.lock_probability
                ):
                    line.lock_left = self.rng.randint(1, 4)
                if line.lock_left > 0:
                    line.lock_left -= 1
                    off = True
                if off:
                    if not line.locked:
                        line.locked = True
                        locked += self._odds(game, book, line, now)
                    continue
                prices = self._price_line(game, book, line)
                if line.locked or prices != line.prices:
                    line.prices = prices
                    line.timestamp = max(now, line.timestamp + 0.001)
                    line.locked = False
                    changed += self._odds(game, book, line, now)
        if initial:
            return
        if locked:
            self._publish("locked-odds", locked)
        if changed:
            self._publish("odds", changed)
        for st in statuses:
            self._publish_status(st)

    def _fixture_status(self, game: SimGame, out: list[dict[str, Any]], initial: bool) -> None:
        prev = self._fixture_seen.get(game.fixture_id)
        cur = (game.status, game.start_time)
        self._fixture_seen[game.fixture_id] = cur
        if prev is None or prev == cur or initial:
            return
        out.append({
            "fixture_id": game.fixture_id,
            "game_id": self._game_id(game),
            "sport": game.sport,
            "league": game.league.upper(),
            "old_status": prev[0] if prev[0] != cur[0] else None,
            "new_status": cur[0] if prev[0] != cur[0] else None,
            "old_start_date": _iso(prev[1]) if prev[1] != cur[1] else None,
            "new_start_date": _iso(cur[1]) if prev[1] != cur[1] else None,
            "fixture": {"id": game.fixture_id, "game_id": self._game_id(game),
                        "home_team_display": game.home.name, "away_team_display": game.away.name,
                        "start_date": _iso(game.start_time)},
            "timestamp": self.now().timestamp(),
        })

    def _forget_pruned(self) -> None:
        """Drop the lines and status memory of games the world no longer has (pruned)."""
        if len(self._fixture_seen) <= len(self.world.games):
            return
        live = {g.fixture_id for g in self.world.games}
        for fid in [f for f in self._fixture_seen if f not in live]:
            del self._fixture_seen[fid]
        for key in [k for k in self.lines if k[0] not in live]:
            del self.lines[key]
        self.forced_locks = {k for k in self.forced_locks if k[0] in live}

    # --- JSON shapes --------------------------------------------------------------------------

    @staticmethod
    def _game_id(game: SimGame) -> str:
        return f"sim-{game.fixture_id}"

    def _odds(self, game: SimGame, book: SimBook, line: _Line, now: float) -> list[dict[str, Any]]:
        out = []
        for team in (game.home, game.away):
            price = line.prices.get(team.normalized)
            if price is None:
                continue
            out.append({
                "id": f"{self._game_id(game)}:{book.id}:moneyline:{team.normalized}",
                "fixture_id": game.fixture_id,
                "game_id": self._game_id(game),
                "sport": game.sport,
                "league": game.league.upper(),
                "league_id": game.league,
                "sportsbook": book.name,
                "sportsbook_id": book.id,
                "market": "Moneyline",
                "market_id": "moneyline",
                "name": team.name,
                "selection": team.name,
                "normalized_selection": team.normalized,
                "selection_line": None,
                "points": None,
                "selection_points": None,
                "price": price,
                "timestamp": line.timestamp,
                "grouping_key": "default",
                "is_main": True,
                "is_live": game.status == "live",
                "player_id": None,
                "team_id": team.opticodds_id,
                "limits": {"max": 5000} if book.id in ("pinnacle", "betonline") else None,
                "order_book": None,
                "source_ids": None,
                "deep_link": None,
            })
        return out

    @staticmethod
    def _rest_odd(odd: dict[str, Any]) -> dict[str, Any]:
        """REST odds lack the stream-only keys (§2.2: 19 keys)."""
        drop = ("fixture_id", "game_id", "sport", "league", "league_id", "sportsbook_id",
                "selection_points", "is_live")
        return {k: v for k, v in odd.items() if k not in drop}

    def _fixture_json(self, game: SimGame) -> dict[str, Any]:
        def comp(t: Any) -> list[dict[str, Any]]:
            return [{"id": t.opticodds_id, "numerical_id": t.team_id, "base_id": t.team_id,
                     "name": t.name, "abbreviation": t.abbreviation, "logo": None}]

        return {
            "id": game.fixture_id,
            "numerical_id": game.event_id,
            "game_id": self._game_id(game),
            "start_date": _iso(game.start_time),
            "status": game.status,
            "is_live": game.status == "live",
            "has_odds": True,
            "sport": {"id": game.sport, "name": SPORT_NAMES.get(game.sport, game.sport.title())},
            "league": {"id": game.league, "name": game.league.upper()},
            "home_competitors": comp(game.home),
            "away_competitors": comp(game.away),
            "home_team_display": game.home.name,
            "away_team_display": game.away.name,
            "season_type": "Regular Season",
            "season_year": str(game.start_time.year),
            "season_week": None,
            "venue_name": None,
            "venue_location": None,
            "venue_neutral": False,
            "tournament": None,
        }

    # --- streams ------------------------------------------------------------------------------

    def _entry_id(self) -> str:
        self._seq += 1
        return f"{int(self.now().timestamp() * 1000)}-{self._seq}"

    @staticmethod
    def _frame(event: str, data: str, entry_id: str | None = None) -> bytes:
        lines = [f"event: {event}"]
        if entry_id is not None:
            lines.append(f"id: {entry_id}")
        lines.append("retry: 5000")
        lines += [f"data: {d}" for d in data.split("\n")]
        return ("\n".join(lines) + "\n\n").encode()

    def _wants(self, st: _Stream, odd: dict[str, Any]) -> bool:
        return (
            odd["sport"] == st.sport
            and odd["sportsbook_id"] in st.books
            and (not st.leagues or odd["league_id"] in st.leagues)
            and (not st.fixtures or odd["fixture_id"] in st.fixtures)
            and (not st.markets or odd["market_id"] in st.markets)
            and (st.is_live is None or odd["is_live"] == st.is_live)
        )

    def _offer(self, st: _Stream, frame: bytes) -> None:
        if self.control.silent:
            return  # produced while silent: lost, as on a stalled real connection
        try:
            st.send.send_nowait(frame)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            st.closed.set()  # a client this far behind is cut off; it will rebuild from REST

    def _publish(self, kind: str, odds: list[dict[str, Any]]) -> None:
        for st in list(self.streams):
            mine = [o for o in odds if self._wants(st, o)]
            if mine:
                entry = self._entry_id()
                body = orjson.dumps({"entry_id": entry, "type": kind, "data": mine}).decode()
                frame = self._frame(kind, body, entry)
                self._offer(st, frame)
                if self.control.duplicate_frames > 0:
                    self.control.duplicate_frames -= 1
                    self._offer(st, frame)

    def _publish_status(self, data: dict[str, Any]) -> None:
        for st in list(self.streams):
            if (st.fixture_updates and data["sport"] == st.sport
                    and (not st.leagues or data["league"].lower() in st.leagues)
                    and (not st.fixtures or data["fixture_id"] in st.fixtures)):
                entry = self._entry_id()
                body = orjson.dumps({"entry_id": entry, "data": data}).decode()
                self._offer(st, self._frame("fixture-status", body, entry))

    def drop_streams(self) -> None:
        for st in self.streams:
            st.closed.set()

    # --- HTTP ---------------------------------------------------------------------------------

    def _take_budget(self, bucket: str, limit: int) -> tuple[bool, int, int]:
        now = int(time.time())
        end = (now // WINDOW + 1) * WINDOW
        w_end, used = self._window.get(bucket, (end, 0))
        if w_end != end:
            used = 0
        if used >= limit:
            self._window[bucket] = (end, used)
            return False, 0, end
        self._window[bucket] = (end, used + 1)
        return True, limit - used - 1, end

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        params: dict[str, list[str]] = {
            k: [p.strip() for v in vs for p in v.split(",") if p.strip() != ""] for k, vs in query.items()
        }
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("x-api-key") or (query.get("key") or [""])[0]
        if not key:
            return await _json(send, 401, {"error": "API key is required"})
        if key != self._key:
            return await _json(send, 401, {"error": "Invalid or inactive API key"})
        if scope["method"] != "GET":
            return await _json(send, 405, {"error": "method not allowed"})
        if not path.startswith(BASE + "/"):
            return await _json(send, 404, {"error": "not found"})
        route = path[len(BASE):]
        if route.startswith("/stream/odds/"):
            return await self._stream(route[len("/stream/odds/"):], params, receive, send)

        self.control.rest_requests += 1
        if self.control.error_burst > 0:
            self.control.error_burst -= 1
            return await _json(send, self.control.error_status, {"error": "internal server error"})
        forced_429 = self.control.rate_limit_burst > 0
        if forced_429:
            self.control.rate_limit_burst -= 1
        ok, remaining, reset = self._take_budget("core", self.rate_limit)
        rl = [(b"x-ratelimit-limit", str(self.rate_limit).encode()),
              (b"x-ratelimit-remaining", str(remaining).encode()),
              (b"x-ratelimit-reset", str(reset).encode())]
        if forced_429 or not ok:
            retry = max(1, reset - int(time.time()))
            return await _json(send, 429, {"error": "rate limit exceeded"},
                               [*rl, (b"retry-after", str(retry).encode())])
        try:
            status, body = self._rest(route, params)
        except _BadRequest as e:
            status, body = 400, {"error": str(e)}
        await _json(send, status, body, rl)

    def _rest(self, route: str, params: dict[str, list[str]]) -> tuple[int, Any]:
        if route == "/sportsbooks":
            return 200, {"data": [{"id": b.id, "name": b.name, "logo": None,
                                   "is_onshore": b.id in ("draftkings", "fanduel", "kalshi",
                                                          "polymarket_usa_"),
                                   "is_active": True} for b in self.books]}
        if route in ("/fixtures", "/fixtures/active"):
            return 200, self._fixtures(params, active=route.endswith("active"))
        if route == "/fixtures/odds":
            return 200, self._fixture_odds(params)
        return 404, {"error": "not found"}

    def _fixtures(self, params: dict[str, list[str]], *, active: bool) -> dict[str, Any]:
        selectors = ("sport", "league", "id", "numerical_id", "team_id", "tournament_id")
        if not any(params.get(s) for s in selectors):
            raise _BadRequest("you must provide at least one of sport, league, id, numerical_id, "
                              "team_id, or tournament_id to filter by")
        for s in params.get("status", []):
            if s not in STATUSES:
                raise _BadRequest(f"invalid status: {s}")
        games = list(self._select_games(params))
        if active:
            games = [g for g in games if g.status not in FINISHED]
        if params.get("status"):
            games = [g for g in games if g.status in params["status"]]
        if params.get("is_live"):
            want = params["is_live"][0].lower() == "true"
            games = [g for g in games if (g.status == "live") == want]
        after, before = _date_param(params, "start_date_after"), _date_param(params, "start_date_before")
        day = _date_param(params, "start_date")
        if after is None and before is None and day is None and not params.get("id"):
            after = self.now() - timedelta(days=3)  # the documented default window
        if after is not None:
            games = [g for g in games if g.start_time >= after]
        if before is not None:
            games = [g for g in games if g.start_time <= before]
        if day is not None:
            games = [g for g in games if day <= g.start_time < day + timedelta(days=1)]
        games.sort(key=lambda g: (g.start_time, g.fixture_id))
        try:
            page = max(1, int((params.get("page") or ["1"])[0]))
            limit = int((params.get("limit") or [str(PAGE_LIMIT)])[0])
        except ValueError:
            raise _BadRequest("invalid page or limit") from None
        limit = PAGE_LIMIT if limit <= 0 else min(limit, PAGE_LIMIT)
        rows = games[(page - 1) * limit: page * limit]
        return {"data": [self._fixture_json(g) for g in rows], "page": page,
                "has_more": len(games) > page * limit}

    def _select_games(self, params: dict[str, list[str]]) -> Iterable[SimGame]:
        def match(values: list[str] | None, *cands: str) -> bool:
            return not values or any(v.lower() in [c.lower() for c in cands] for v in values)

        for g in self.world.games:
            if (match(params.get("sport"), g.sport, SPORT_NAMES.get(g.sport, ""))
                    and match(params.get("league"), g.league, g.league.upper())
                    and match(params.get("id"), g.fixture_id)
                    and match(params.get("numerical_id"), str(g.event_id))
                    and match(params.get("team_id"), g.home.opticodds_id, g.away.opticodds_id)
                    and not params.get("tournament_id")):
                yield g

    def _books_param(self, params: dict[str, list[str]]) -> list[SimBook]:
        out = []
        for v in params.get("sportsbook", []):
            for b in self.books:
                if v.lower() in (b.id, b.name.lower()) and b not in out:
                    out.append(b)
        return out

    def _fixture_odds(self, params: dict[str, list[str]]) -> dict[str, Any]:
        if not params.get("sportsbook"):
            raise _BadRequest("sportsbook is required")
        if len(params["sportsbook"]) > 5:
            raise _BadRequest("maximum 5 sportsbooks allowed")
        if not (params.get("fixture_id") or params.get("player_id") or params.get("team_id")):
            raise _BadRequest("you must provide at least one of fixture_id, player_id, or team_id")
        if len(params.get("fixture_id", [])) > 5:
            raise _BadRequest("maximum 5 fixture_ids allowed")
        fmt = (params.get("odds_format") or ["AMERICAN"])[0].upper()
        if fmt not in ("AMERICAN", "DECIMAL", "PROBABILITY"):
            raise _BadRequest(f"invalid odds_format: {fmt}")
        books = {b.id for b in self._books_param(params)}
        markets = {m.lower() for m in params.get("market", [])}
        main = params.get("is_main")
        games = [g for g in self.world.games
                 if g.fixture_id in params.get("fixture_id", [])
                 or g.home.opticodds_id in params.get("team_id", [])
                 or g.away.opticodds_id in params.get("team_id", [])]
        data = []
        for g in games:
            odds: list[dict[str, Any]] = []
            if not markets or markets & {"moneyline"}:
                if main is None or main[0].lower() == "true":
                    for b in self.books:
                        line = self.lines.get((g.fixture_id, b.id))
                        if b.id in books and line is not None and not line.locked:
                            odds += [self._rest_odd(o) for o in self._odds(g, b, line, 0)]
            for o in odds:
                o["price"] = _format_price(o["price"], fmt)
            row = {k: v for k, v in self._fixture_json(g).items() if k != "has_odds"}
            row["odds"] = odds
            data.append(row)
        return {"data": data}

    async def _stream(self, sport: str, params: dict[str, list[str]],
                      receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        if not params.get("sportsbook"):
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"At least 1 sportsbook must be provided."})
            return
        if len(params["sportsbook"]) > 5:
            return await _json(send, 400, {"error": "maximum 5 sportsbooks allowed"})
        ok, _, reset = self._take_budget("stream", self.stream_connect_limit)
        if not ok:
            return await _json(send, 429, {"error": "rate limit exceeded"},
                               [(b"retry-after", str(max(1, reset - int(time.time()))).encode())])
        self.control.stream_connects += 1
        markets = {m.lower().replace(" ", "_") for m in params.get("market", [])}
        is_live = params.get("is_live")
        send_ch, recv_ch = trio.open_memory_channel[bytes](1000)
        st = _Stream(
            sport=sport.lower(),
            books=frozenset(b.id for b in self._books_param(params)),
            leagues=frozenset(v.lower() for v in params.get("league", [])),
            fixtures=frozenset(params.get("fixture_id", [])),
            markets=frozenset(markets),
            is_live=None if not is_live else is_live[0].lower() == "true",
            fixture_updates=(params.get("include_fixture_updates") or ["false"])[0].lower() == "true",
            send=send_ch,
        )
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"),
                                (b"cache-control", b"no-cache")]})
        self.streams.add(st)
        try:
            async with trio.open_nursery() as nursery:
                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    nursery.cancel_scope.cancel()

                async def watch_drop() -> None:
                    await st.closed.wait()
                    nursery.cancel_scope.cancel()

                async def pinger() -> None:
                    while True:
                        await trio.sleep(self.ping_seconds)
                        self._offer(st, self._frame("ping", _iso(self.now())))

                nursery.start_soon(watch_disconnect)
                nursery.start_soon(watch_drop)
                nursery.start_soon(pinger)
                if not self.control.silent:
                    await send({"type": "http.response.body", "body": self._frame("connected", "ok go"),
                                "more_body": True})
                async for frame in recv_ch:
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            self.streams.discard(st)
            send_ch.close()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # the client is already gone
                pass


class _BadRequest(Exception):
    pass


def _format_price(american: int, fmt: str) -> float | int:
    if fmt == "DECIMAL":
        return round(american_to_decimal(american), 4)
    if fmt == "PROBABILITY":
        return round(1 / american_to_decimal(american), 6)
    return american


def _date_param(params: dict[str, list[str]], name: str) -> datetime | None:
    v = params.get(name)
    if not v:
        return None
    s = v[0]
    try:
        if len(s) == 10:  # date-only means that day in US Eastern (approximated as UTC-5)
            return datetime.fromisoformat(s).replace(tzinfo=UTC) + timedelta(hours=5)
        t = datetime.fromisoformat(s)
    except ValueError:
        raise _BadRequest(f"invalid {name}: {s}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


async def _json(send: Callable[[Any], Awaitable[None]], status: int, body: Any,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    raw = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(raw)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": raw})


async def serve_opticodds(
    world: World,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str,
    ping_seconds: float = 5.0,
    seed: int = 0,
    update_seconds: float = 1.0,
    lock_probability: float = 0.01,
    control: OddsControl | None = None,
    now: Callable[[], datetime] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the local OpticOdds until cancelled; `task_status.started(base_url)`.

    `base_url` is e.g. `http://127.0.0.1:PORT/api/v3` (as `OPTICODDS_BASE_URL` takes it). Pass an
    `OddsControl` to flip faults and force locks from a test.
    """
    app = LocalOpticOdds(world, api_key=api_key, ping_seconds=ping_seconds, seed=seed,
                         control=control, lock_probability=lock_probability, now=now)
    config = HyperConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    config.keep_alive_timeout = 30
    async with trio.open_nursery() as nursery:
        asgi: Any = app  # a plain ASGI callable; hypercorn's typing wants its own TypedDicts
        binds = await nursery.start(lambda task_status: serve(asgi, config, task_status=task_status))
        url = binds[0] if binds else ""

        async def updater() -> None:
            while True:
                await trio.sleep(update_seconds)
                app.update()

        nursery.start_soon(updater)
        task_status.started(f"{url}{BASE}")

