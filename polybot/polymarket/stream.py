"""Self-healing Polymarket US websockets: the markets stream and the private stream (§4).

Each stream is one long-lived task (`run`) that connects, subscribes, decodes every frame into
a typed event and hands it on: into a Trio memory channel, or (`deliver=`) straight to an async
handler that the socket-reading task awaits for each event, so there is no task hop between the
frame and its consumer. With a handler, a slow consumer slows the reading of the socket (the
back-pressure a full channel would give); only the wait for a frame counts towards staleness, and
the handler's own OSError or ConnectionClosed is not mistaken for the connection's
(`DeliveryFailed`). The traps it exists to avoid:

* A socket can stay open and say nothing. Liveness is judged by data age: if no frame at all
  (heartbeat or data) arrives for `stale_after` seconds the connection is torn down and rebuilt.
  Heartbeats alone do not prove the subscriptions were heard: a gateway that stalled while we
  subscribed ignores the requests and later sends heartbeats only. Every subscription set here
  is answered at once with data (the books; the order snapshot), so a connection that has had
  no data frame `stale_after` seconds after subscribing is torn down as well.
* There are no sequence numbers and no replay. Whenever a connection ends the consumer gets
  `ContinuityLost`; after every (re)connect and re-subscription it gets `StreamConnected`. From
  the loss until fresh data (a full `marketData` per market; the order snapshot ending `eof`)
  the consumer must rebuild, not trust what it held.
* Maintenance lasts hours: the loop never gives up on an unreachable exchange. It backs off
  (jittered exponential, capped at 30 s, reset after a stable connection) and reports
  "reconnecting since T, n attempts" through `status` and the `progress` callback, which it calls
  on every frame and every attempt so a watchdog can tell "reconnecting" from "hung".
* A 401/403 at the upgrade might be a proxy or a skewed clock, so it is confirmed with one signed
  REST call (`auth_probe`, e.g. balances). Only if that is refused too does the loop raise
  `CredentialsRejected` (fatal); otherwise it is one more failed attempt.
* Delivery is at least once: the private stream drops executions whose id it has seen.
* A malformed or unknown frame is logged, counted and skipped; `"error": ""` is not an error.

* The markets stream's set of markets changes at run time (`MarketsStream.set_markets`) on the
  live connection: chunks of at most 100 markets, only changed chunks re-sent (subscribe anew,
  then unsubscribe the old requestId), and a (re)sent subscription that leaves a market without
  its snapshot for 10 s is re-sent, at most 3 times, then the market is reported no_data.
* The private stream subscribes without `marketSlugs` (every market of the account): no change
  of the market set ever touches it.

Headers are re-signed on every connect (the exchange checks the timestamp). Subscriptions carry
at most 100 slugs each. Counters are plain attributes for the metrics exporter.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs
import orjson
import trio

from polybot.clock import LIVE_CLOCK, Clock
from polybot.polymarket import wire
from polybot.polymarket.auth import Signer
from polybot.polymarket.errors import AuthError, CredentialsRejected
from polybot.polymarket.ratelimit import Backoff
from polybot.polymarket.wsconn import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WsConnection,
    connect_websocket,
)

log = logging.getLogger(__name__)

MARKETS_PATH = "/v1/ws/markets"
PRIVATE_PATH = "/v1/ws/private"
MAX_SLUGS_PER_SUBSCRIPTION = 100

MARKET_DATA = "SUBSCRIPTION_TYPE_MARKET_DATA"
MARKET_DATA_LITE = "SUBSCRIPTION_TYPE_MARKET_DATA_LITE"
TRADE = "SUBSCRIPTION_TYPE_TRADE"
ORDER = "SUBSCRIPTION_TYPE_ORDER"
ORDER_SNAPSHOT = "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT"
POSITION = "SUBSCRIPTION_TYPE_POSITION"
ACCOUNT_BALANCE = "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE"


@attrs.frozen
class StreamConfig:
    ws_url: str  # PM_WS_URL: the websocket host; the stream appends its path
    stale_after: float = 15.0  # STALE_FEED_SECONDS
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    stable_after: float = 60.0  # a connection that lived this long resets the backoff
    connect_timeout: float = 10.0
    disconnect_timeout: float = 2.0
    max_message_size: int = 16 * 1024 * 1024
    snapshot_timeout: float = 10.0  # a (re)sent market-data subscription owes each snapshot by
    snapshot_resends: int = 3  # re-sends of a market's subscription before it is marked no_data
    # TLS for a wss:// URL: None = the system's default context (tests pass a test CA's)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)


def stream_config_from_settings(settings: Any) -> StreamConfig:
    """PM_WS_URL and STALE_FEED_SECONDS from `polybot.config.Settings`."""
    return StreamConfig(ws_url=settings.pm_ws_url, stale_after=float(settings.stale_feed_seconds))


# --- lifecycle events (the frame events live in wire.py) ------------------------------------------


@attrs.frozen(slots=True)
class StreamConnected:
    """Connected and subscribed; fresh full state follows (books / order snapshot)."""

    stream: str
    connection: int  # 1 for the first connection, then counts reconnects
    at: float  # trio clock


@attrs.frozen(slots=True)
class ContinuityLost:
    """The connection ended: state derived from this stream is untrusted until rebuilt."""

    stream: str
    reason: str
    at: float


@attrs.define
class StreamStatus:
    """What the health endpoint and the supervisor read about one stream."""

    name: str
    connected: bool = False
    connected_since: float | None = None  # trio clock
    reconnecting_since: float | None = None  # trio clock; None while connected
    reconnecting_since_wall: datetime | None = None
    attempts: int = 0  # connection attempts in the current outage
    last_frame_at: float | None = None  # trio clock
    last_error: str = ""

    def describe(self) -> str:
        if self.connected:
            return f"{self.name}: connected"
        if self.reconnecting_since_wall is None:
            return f"{self.name}: not connected yet"
        since = self.reconnecting_since_wall.isoformat(timespec="seconds")
        return (
            f"{self.name}: reconnecting since {since} ({self.attempts} attempts; {self.last_error})"
        )


def chunks(items: Sequence[str], size: int = MAX_SLUGS_PER_SUBSCRIPTION) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class DeliveryFailed(RuntimeError):
    """The consumer's handler raised an error the stream would otherwise read as the connection's
    (OSError, ConnectionClosed): it ends the stream, as an error in a channel's consumer would."""


class _Stream:
    name = ""
    path = ""
    exact_decode = False  # see wire.decode_frame

    def __init__(
        self,
        config: StreamConfig,
        signer: Signer,
        events: trio.MemorySendChannel[Any] | None = None,
        *,
        deliver: Callable[[Any], Awaitable[None]] | None = None,
        progress: Callable[[], None] | None = None,
        auth_probe: Callable[[], Awaitable[object]] | None = None,
        rng: random.Random | None = None,
        clock: Clock = LIVE_CLOCK,
        connect: Callable[..., Awaitable[WsConnection]] | None = None,
    ) -> None:
        self.config = config
        # opens a connection: `connect_websocket` (a backtest replays a recording's frames)
        self._connect = connect or connect_websocket
        self.signer = signer
        self._clock = clock  # wall time of a reconnect, for /status
        if (events is None) == (deliver is None):
            raise ValueError("a stream delivers into a channel or to a handler: give one of them")
        self._events = events
        self._handler = deliver
        self._progress = progress or (lambda: None)
        self._auth_probe = auth_probe
        self._backoff = Backoff(config.backoff_base, config.backoff_cap, rng=rng)
        self.status = StreamStatus(self.name)
        self._ws: WsConnection | None = None
        self._connection_no = 0
        self._request_no = 0
        # counters (plain attributes for metrics)
        self.frames = 0
        self.bytes = 0
        self.heartbeats = 0
        self.malformed = 0
        self.unknown_frames = 0
        self.error_frames = 0
        self.connects = 0
        self.reconnects = 0
        self.stale_teardowns = 0
        self._answered = False
        # recording (issue 16): called with each frame as received, before it is decoded
        self.tap: Callable[[str | bytes, float], None] | None = None
        # staleness (see _read)
        self._answer_by = 0.0  # trio time by which a data frame must have answered
        self._waiting_since: float | None = None  # start of the current wait for a frame
        self._stale_reason = ""

    @property
    def url(self) -> str:
        return self.config.ws_url.rstrip("/") + self.path

    def _request_id(self, prefix: str) -> str:
        self._request_no += 1
        return f"{prefix}-{self._connection_no}-{self._request_no}"

    async def _send(self, ws: WsConnection, msg: dict[str, Any]) -> None:
        await ws.send(orjson.dumps(msg).decode())

    async def _subscribe(
        self, ws: WsConnection, prefix: str, sub_type: str, slugs: Sequence[str] = (),
        rid: str = "",
    ) -> str:
        rid = rid or self._request_id(prefix)
        sub: dict[str, Any] = {"requestId": rid, "subscriptionType": sub_type}
        if slugs:
            sub["marketSlugs"] = list(slugs)
        await self._send(ws, {"subscribe": sub})
        return rid

    # hooks for the two streams
    async def _on_connect(self, ws: WsConnection) -> None:
        raise NotImplementedError

    async def _deliver(self, event: Any) -> None:
        if self._handler is None:
            await self._events.send(event)  # type: ignore[union-attr]
            return
        try:
            await self._handler(event)
        except (OSError, ConnectionClosed, HandshakeError) as exc:
            raise DeliveryFailed(
                f"{self.name}: the event handler failed: {type(exc).__name__}: {exc}") from exc

    # --- the loop -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run forever (until cancelled or credentials are definitively refused)."""
        task_status.started()
        while True:
            self._note_attempt()
            reason = await self._connect_once()
            self.status.last_error = reason
            delay = self._backoff.next_delay()
            log.warning("%s; next attempt in %.1f s (%s)", self.status.describe(), delay, self.url)
            await trio.sleep(delay)

    def _note_attempt(self) -> None:
        st = self.status
        if st.reconnecting_since is None:
            st.reconnecting_since = trio.current_time()
            st.reconnecting_since_wall = self._clock.now()
            st.attempts = 0
        st.attempts += 1
        self._progress()

    async def _connect_once(self) -> str:
        """One connection attempt and, if it opens, one session; returns why it ended."""
        headers = self.signer.ws_headers(self.url)
        opened = False
        reason = ""
        try:
            ws = await self._connect(
                self.url,
                headers,
                connect_timeout=self.config.connect_timeout,
                disconnect_timeout=self.config.disconnect_timeout,
                max_message_size=self.config.max_message_size,
                ssl_context=self.config.ssl_context,
            )
            async with ws:
                opened = True
                reason = await self._session(ws)
        except ConnectionRejected as exc:
            if exc.status_code in (401, 403):
                await self._confirm_credentials(exc.status_code)
            reason = f"upgrade rejected with HTTP {exc.status_code}"
        except HandshakeError as exc:  # TCP, TLS or the upgrade failed, or connect_timeout
            cause = exc.__cause__ or exc
            reason = reason or f"connect failed: {type(cause).__name__}: {cause}"
        except (OSError, ConnectionClosed) as exc:
            reason = reason or f"connection lost: {type(exc).__name__}: {exc}"
        if opened:
            await self._deliver(ContinuityLost(self.name, reason, trio.current_time()))
        return reason

    async def _session(self, ws: WsConnection) -> str:
        now = trio.current_time()
        self._connection_no += 1
        self.connects += 1
        if self._connection_no > 1:
            self.reconnects += 1
        self._ws = ws
        st = self.status
        st.connected, st.connected_since = True, now
        st.reconnecting_since = st.reconnecting_since_wall = None
        st.last_frame_at = now  # data age counts from the upgrade
        self._answered = False  # no data frame on this connection yet
        log.info("%s connected (connection %d) to %s", self.name, self._connection_no, self.url)
        try:
            await self._on_connect(ws)
            await self._deliver(StreamConnected(self.name, self._connection_no, now))
            return await self._read(ws)
        except ConnectionClosed as exc:
            return f"closed by peer: {exc.reason}"
        finally:
            self._ws = None
            st.connected = False
            st.reconnecting_since = trio.current_time()
            st.reconnecting_since_wall = self._clock.now()
            st.attempts = 0
            if trio.current_time() - now >= self.config.stable_after:
                self._backoff.reset()

    async def _read(self, ws: WsConnection) -> str:
        """Read and handle frames until the connection ends or goes stale; why it ended.

        Only the wait for a frame is timed: a slow consumer must never cancel a delivery. A
        scope per frame costs ~6 us, and one re-armed scope whose deadline passed just as a frame
        arrived would stay cancelled around the handler; so a watchdog task checks the time the
        current wait started (`_waiting_since`, None while a frame is handled) and cancels the
        reading scope only during a wait. If it fires as a frame arrives, the reader sees the
        cancelled scope before it checkpoints again and drops the connection without handling
        that frame (the consumer then gets ContinuityLost, as for any stale teardown)."""
        self._answer_by = trio.current_time() + self.config.stale_after  # subscriptions just sent
        self._waiting_since = None
        self._stale_reason = ""
        reading = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_staleness, reading)
            reason = ""
            with reading:
                reason = await self._frames(ws, reading)
            nursery.cancel_scope.cancel()
        if reason:
            return reason
        return self._stale_teardown()

    def _stale_teardown(self) -> str:
        stale_after = self.config.stale_after
        self.stale_teardowns += 1
        if self._stale_reason == "unanswered":
            log.warning("%s: subscriptions unanswered for %s s (heartbeats only); tearing "
                        "the connection down", self.name, stale_after)
            return f"subscriptions unanswered for {stale_after} s"
        log.warning("%s: no frame for %s s; tearing the connection down", self.name, stale_after)
        return f"no frame for {stale_after} s (stale feed)"

    async def _watch_staleness(self, reading: trio.CancelScope) -> None:
        """Cancel `reading` once a wait for a frame has lasted `stale_after` (or the
        subscriptions are still unanswered at their deadline). Wakes about once per period."""
        stale_after = self.config.stale_after
        while True:
            now = trio.current_time()
            since = self._waiting_since
            unanswered = not self._answered
            if since is None:  # handling a frame: the next wait starts no earlier than now
                due = now + stale_after
                if unanswered and self._answer_by > now:
                    due = min(due, self._answer_by)
                await trio.sleep_until(due)
                continue
            due = since + stale_after
            if unanswered:
                due = min(due, self._answer_by)
            if now >= due:
                self._stale_reason = (
                    "unanswered" if unanswered and now >= self._answer_by else "stale")
                reading.cancel()
                return
            await trio.sleep_until(due)

    async def _frames(self, ws: WsConnection, reading: trio.CancelScope) -> str:
        """The reading loop; returns why the connection closed, or "" for a stale teardown."""
        st = self.status
        while True:
            since = self._waiting_since = trio.current_time()
            if not self._answered and since >= self._answer_by:
                self._stale_reason = "unanswered"  # the deadline passed inside the handler
                return ""
            try:
                msg = await ws.receive()
            except ConnectionClosed as exc:
                return f"closed by peer: {exc.reason}"
            self._waiting_since = None
            if reading.cancel_called:  # the watchdog fired as this frame arrived
                return ""
            now = st.last_frame_at = trio.current_time()
            self.frames += 1
            self.bytes += len(msg)
            self._progress()
            if (
                st.connected_since is not None
                and now - st.connected_since >= self.config.stable_after
            ):
                self._backoff.reset()
            await self._handle(msg, now)

    def _decode(self, msg: str | bytes, now: float) -> Any:
        return wire.decode_frame(msg, now, exact=self.exact_decode)

    async def _handle(self, msg: str | bytes, now: float) -> None:
        if self.tap is not None:
            self.tap(msg, now)
        try:
            event = self._decode(msg, now)
        except wire.UnknownFrame as exc:
            self.unknown_frames += 1
            log.warning("%s: skipped unknown frame: %s", self.name, exc)
            return
        except wire.WireError as exc:
            self.malformed += 1
            log.warning("%s: skipped malformed frame: %s: %.200r", self.name, exc, msg)
            return
        if event is wire.HEARTBEAT:
            self.heartbeats += 1
            return
        if self._answers(event):
            self._answered = True
        if isinstance(event, wire.SubscriptionFailed):
            self.error_frames += 1
            log.warning("%s: subscription error: %s", self.name, event)
        await self._on_event(event)

    def _answers(self, event: Any) -> bool:
        """Whether this frame proves the connection's subscriptions were heard."""
        return True

    async def _on_event(self, event: Any) -> None:
        await self._deliver(event)

    async def _confirm_credentials(self, status: int) -> None:
        """A 401/403 at upgrade: fatal only if a signed REST call is refused as well."""
        if self._auth_probe is None:
            raise CredentialsRejected(
                f"{self.name} websocket upgrade refused with HTTP {status} (no REST probe to confirm)",
                status=status,
                method="GET",
                path=self.path,
            )
        try:
            await self._auth_probe()
        except AuthError as exc:
            raise CredentialsRejected(
                f"credentials rejected: {self.name} websocket upgrade got HTTP {status} and a "
                f"signed REST call got HTTP {exc.status}; check the API key and the clock",
                status=status,
                method="GET",
                path=self.path,
                correlation_id=exc.correlation_id,
            ) from exc
        except Exception as exc:  # the exchange being down is not a verdict on our key
            log.warning("%s: auth probe inconclusive (%s); will retry", self.name, exc)
        else:
            log.warning(
                "%s: upgrade refused (HTTP %d) but REST accepts our key; retrying",
                self.name,
                status,
            )


@attrs.define(eq=False)
class _Chunk:
    """Up to 100 markets subscribed together: one subscription per type, re-sent as a whole."""

    slugs: list[str]
    request_ids: dict[str, str] = attrs.field(factory=dict)  # type -> requestId on this connection
    awaiting: set[str] = attrs.field(factory=set)  # markets whose snapshot is still owed
    deadline: float | None = None  # trio time by which `awaiting` must be empty


class MarketsStream(_Stream):
    """Books (and optionally BBO and trade prints) for a set of markets that changes at run time.

    The set changes without a reconnect (`set_markets`). The gateway has no add/remove inside a
    subscription (discovery notes §3), so the markets are kept in chunks of at most 100; a chunk
    whose membership changed is subscribed again under a new requestId and then its old
    requestId is unsubscribed (data never gaps); a chunk that is unchanged is left alone, so one
    market added to 150 re-sends at most one chunk. New markets fill chunks with room before a
    new chunk is made, so the number of chunks is bounded by the largest set ever held.

    Silent subscription failures are a known trap: every (re)sent market-data subscription must
    deliver a snapshot for each of its markets within `snapshot_timeout` seconds, else the chunk is
    re-sent under a new requestId, at most `snapshot_resends` times for a market; after that the
    market is reported through `on_no_data(slug, True)` (its chunk stays subscribed), and a later
    snapshot reports `on_no_data(slug, False)`. Frames for a market no longer watched (in flight
    when it was unsubscribed) are dropped, and a market that leaves the set leaves no state here.
    """

    name = "markets"
    path = MARKETS_PATH

    def __init__(
        self,
        config: StreamConfig,
        signer: Signer,
        events: trio.MemorySendChannel[Any] | None = None,
        slugs: Iterable[str] = (),
        *,
        subscription_types: Sequence[str] = (MARKET_DATA,),
        on_no_data: Callable[[str, bool], None] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(config, signer, events, **kw)
        self.slugs: tuple[str, ...] = ()
        self._wanted: frozenset[str] = frozenset()
        self.subscription_types = tuple(subscription_types)
        self._on_no_data = on_no_data or (lambda slug, no_data: None)
        self._chunks: list[_Chunk] = []
        self._chunk_of_rid: dict[str, _Chunk] = {}  # live market-data requestId -> its chunk
        self._unanswered: dict[str, int] = {}  # slug -> subscribes in a row that owed a snapshot
        self.no_data: set[str] = set()  # markets given up on (their chunk stays subscribed)
        self._lock = trio.Lock()  # one change of the subscriptions at a time
        self._deadline_changed = trio.Event()
        # counters
        self.subscribes = 0  # subscribe requests sent (every type)
        self.unsubscribes = 0
        self.resends = 0  # chunks re-sent because a snapshot was owed past the deadline
        self.dropped_unwatched = 0  # frames for markets no longer in the set
        self._place(tuple(dict.fromkeys(slugs)))

    def _decode(self, msg: str | bytes, now: float) -> Any:
        return wire.decode_market_frame(msg, now)  # the full decoder's events, quicker for books

    @property
    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        """The live subscriptions of the first type: requestId -> markets (tests, /status)."""
        first = self.subscription_types[0] if self.subscription_types else ""
        return {c.request_ids[first]: tuple(c.slugs) for c in self._chunks
                if first in c.request_ids}

    def watches(self, slug: str) -> bool:
        return slug in self._wanted

    @property
    def _tracks_snapshots(self) -> bool:
        return MARKET_DATA in self.subscription_types

    # --- membership -----------------------------------------------------------------------------

    def _place(self, new: tuple[str, ...]) -> list[_Chunk]:
        """Fit the chunks to `new`; the chunks whose membership changed (empty ones included)."""
        wanted = frozenset(new)
        for slug in self._wanted - wanted:
            self._unanswered.pop(slug, None)
            self.no_data.discard(slug)
        added = [s for s in new if s not in self._wanted]
        self.slugs, self._wanted = new, wanted
        changed: list[_Chunk] = []
        for chunk in self._chunks:
            keep = [s for s in chunk.slugs if s in wanted]
            if len(keep) != len(chunk.slugs):
                chunk.slugs = keep
                changed.append(chunk)
        for chunk in [*changed, *(c for c in self._chunks if c not in changed)]:
            room = MAX_SLUGS_PER_SUBSCRIPTION - len(chunk.slugs)
            if not added:
                break
            if room <= 0:
                continue
            chunk.slugs += added[:room]
            added = added[room:]
            if chunk not in changed:
                changed.append(chunk)
        for part in chunks(added):
            chunk = _Chunk(part)
            self._chunks.append(chunk)
            changed.append(chunk)
        return changed

    async def set_markets(self, slugs: Iterable[str]) -> None:
        """Change the watched markets; a live connection is re-subscribed at once, chunk by
        changed chunk (the next connect subscribes everything anyway)."""
        new = tuple(dict.fromkeys(slugs))
        async with self._lock:
            if frozenset(new) == self._wanted:
                self.slugs = new
                return
            changed = self._place(new)
            ws = self._ws
            try:
                if ws is not None:
                    for chunk in changed:
                        await self._send_chunk(ws, chunk)
            except ConnectionClosed:
                pass  # the reader notices and reconnects with the new set
            finally:
                self._chunks = [c for c in self._chunks if c.slugs]

    async def _send_chunk(self, ws: WsConnection, chunk: _Chunk) -> None:
        """Subscribe the chunk under new requestIds, then unsubscribe its old ones."""
        old = list(chunk.request_ids.values())
        chunk.request_ids = {}
        chunk.awaiting, chunk.deadline = set(), None
        for rid in old:
            self._chunk_of_rid.pop(rid, None)
        if chunk.slugs:
            if self._tracks_snapshots:
                chunk.awaiting = {s for s in chunk.slugs if s not in self.no_data}
                if chunk.awaiting:
                    chunk.deadline = trio.current_time() + self.config.snapshot_timeout
                    self._deadline_changed.set()
            for sub_type in self.subscription_types:
                rid = self._request_id("md")
                chunk.request_ids[sub_type] = rid
                if sub_type == MARKET_DATA:  # known before the answer can arrive
                    self._chunk_of_rid[rid] = chunk
                await self._subscribe(ws, "md", sub_type, chunk.slugs, rid=rid)
                self.subscribes += 1
        for rid in old:
            await self._send(ws, {"unsubscribe": {"requestId": rid}})
            self.unsubscribes += 1

    # --- connection hooks -----------------------------------------------------------------------

    async def _on_connect(self, ws: WsConnection) -> None:
        async with self._lock:
            self._chunk_of_rid.clear()
            for chunk in self._chunks:
                chunk.request_ids = {}  # requestIds of the previous connection died with it
            for chunk in self._chunks:
                await self._send_chunk(ws, chunk)
            if not any(c.awaiting for c in self._chunks):
                self._answered = True  # no snapshot owed (no market): heartbeats are enough

    async def _read(self, ws: WsConnection) -> str:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_snapshots, ws)
            reason = await super()._read(ws)
            nursery.cancel_scope.cancel()
        return reason

    async def _watch_snapshots(self, ws: WsConnection) -> None:
        """Re-send a chunk whose snapshots are overdue; give up on a market after the re-sends."""
        while True:
            self._deadline_changed = trio.Event()
            due = min((c.deadline for c in self._chunks if c.deadline is not None),
                      default=math.inf)
            with trio.move_on_at(due):
                await self._deadline_changed.wait()
            if trio.current_time() < due:
                continue
            try:
                await self._expire(ws)
            except ConnectionClosed:
                return  # the reader notices and reconnects

    async def _expire(self, ws: WsConnection) -> None:
        async with self._lock:
            now = trio.current_time()
            for chunk in list(self._chunks):
                if chunk.deadline is None or now < chunk.deadline:
                    continue
                missing, chunk.awaiting, chunk.deadline = chunk.awaiting, set(), None
                resend = False
                for slug in sorted(missing):
                    sent = self._unanswered[slug] = self._unanswered.get(slug, 0) + 1
                    if sent <= self.config.snapshot_resends:
                        resend = True
                        continue
                    self._unanswered.pop(slug, None)
                    self.no_data.add(slug)
                    log.error("markets: no snapshot for %s after %d subscriptions; marked no_data",
                              slug, sent)
                    self._on_no_data(slug, True)
                if resend:
                    self.resends += 1
                    log.warning("markets: %d market(s) of subscription %s sent no snapshot within "
                                "%.0f s (%s); re-sending it", len(missing),
                                chunk.request_ids.get(MARKET_DATA, "?"),
                                self.config.snapshot_timeout, ", ".join(sorted(missing)[:5]))
                    await self._send_chunk(ws, chunk)

    async def _on_event(self, event: Any) -> None:
        if isinstance(event, wire.BookReplaced):
            slug = event.book.market_slug
            if slug not in self._wanted:
                self.dropped_unwatched += 1
                return
            chunk = self._chunk_of_rid.get(event.request_id)
            if chunk is not None and slug in chunk.awaiting:
                chunk.awaiting.discard(slug)
                if not chunk.awaiting:
                    chunk.deadline = None
                self._unanswered.pop(slug, None)
            if slug in self.no_data:
                self.no_data.discard(slug)
                log.warning("markets: %s delivered a snapshot at last; no_data cleared", slug)
                self._on_no_data(slug, False)
        elif isinstance(event, wire.TradePrinted) and event.trade.market_slug not in self._wanted:
            self.dropped_unwatched += 1
            return
        await self._deliver(event)


class PrivateStream(_Stream):
    """Orders (updates + snapshot), positions and balances of our account."""

    name = "private"
    path = PRIVATE_PATH
    exact_decode = True
    DEDUP_CAPACITY = 200_000
    SNAPSHOT_RETRIES = 3

    def __init__(
        self,
        config: StreamConfig,
        signer: Signer,
        events: trio.MemorySendChannel[Any] | None = None,
        *,
        slugs: Iterable[str] = (),
        **kw: Any,
    ) -> None:
        super().__init__(config, signer, events, **kw)
        self.slugs = tuple(slugs)  # empty = all markets
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._snapshot_id = ""
        self._snapshot_retries = 0
        self.duplicate_executions = 0
        self.executions = 0

    def _answers(self, event: Any) -> bool:
        # liveness is the order snapshot's eof (and heartbeats after it): a balance snapshot
        # alone does not show the orders were heard, and the executor waits on that eof
        return isinstance(event, wire.OrdersSnapshotted) and event.eof

    async def _on_connect(self, ws: WsConnection) -> None:
        await self._subscribe(ws, "orders", ORDER, self.slugs)
        self._snapshot_retries = 0
        self._snapshot_id = await self._subscribe(ws, "snapshot", ORDER_SNAPSHOT, self.slugs)
        await self._subscribe(ws, "positions", POSITION, self.slugs)
        await self._subscribe(ws, "balances", ACCOUNT_BALANCE)

    async def _on_event(self, event: Any) -> None:
        if isinstance(event, wire.ExecutionReported):
            eid = event.execution.exec_id
            if eid in self._seen:
                self.duplicate_executions += 1
                return
            self._seen[eid] = None
            if len(self._seen) > self.DEDUP_CAPACITY:
                self._seen.popitem(last=False)
            self.executions += 1
        elif (
            isinstance(event, wire.SubscriptionFailed)
            and event.request_id == self._snapshot_id
            and self._ws is not None
            and self._snapshot_retries < self.SNAPSHOT_RETRIES
        ):
            # the consumer is waiting for eof; ask again rather than leave it blind
            self._snapshot_retries += 1
            self._snapshot_id = await self._subscribe(
                self._ws, "snapshot", ORDER_SNAPSHOT, self.slugs
            )
        await self._deliver(event)
