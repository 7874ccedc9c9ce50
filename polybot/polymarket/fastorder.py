"""Order creates on kept-alive HTTP/1.1 connections with a prebuilt request (issue 15 §3).

httpx spends ~200 µs getting a request head onto the wire; a create here costs one `%` of a byte
template and ONE `send_all` on a connection that is already open. Its auth was signed ahead of it
(`auth.Presigner`, a task of `run`: the signed message has no body): each pre-signed pair goes
out at most once and only while fresh (≤ 2 s), else the create signs inline as before.
Everything else (reads, cancels, batches) stays on httpx in `PolymarketRestClient`.

The pool (`FastCreate.run`, a task of the supervised group) keeps `warm` idle connections open
(one plus a spare), opening and TLS-handshaking them in the background, so a create never waits
for a handshake; when no warm connection is ready the create falls back to the httpx path
(counted in `fallbacks`). Each connection carries at most ONE create at a time (no pipelining: a
create never queues behind another one's answer, and a connection the server closes after an
answer can only lose the create it answered) and has a reader task that parses the answer with
h11 and notices a close by the server while the connection is idle.

The traps, and what this module does about them:

* Same contract as `PolymarketRestClient.create_order`: the same token bucket (the client's
  signed-call bucket object, so creates share one budget with httpx, never double it), the same
  per-attempt deadline (`RestConfig.timeout`), the same HTTP-status mapping, never retried.
* Once any byte of a create may have reached the server, every failure (connection lost,
  deadline passed, malformed answer, 408/5xx, answer without an id) is `OutcomeUnknown`. A write
  that fails before a single byte left (counted below the TLS layer by `_CountingStream`) is a
  definite `TransportError`: nothing was placed.
* Servers close idle connections (hypercorn: after 30 s idle, and after 1,000 requests with a
  `connection: close` on the last answer). A connection is checked just before use with a
  zero-timeout poll of its socket (a FIN, or unsolicited bytes on an idle plain connection, retires
  it without sending), connections idle for `idle_retire_seconds` are replaced before the server's
  idle timeout can race a send, and after `max_requests` creates a connection is retired.
* `send_create` returns once the bytes were handed to the socket; `PendingCreate.result()` waits
  for the answer. The reader enforces the deadline itself, so an abandoned pending never holds a
  connection forever.
"""

from __future__ import annotations

import logging
import math
import os
import select
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import attrs
import h11
import httpx
import trio

from polybot.model import OrderRequest
from polybot.polymarket import errors as E
from polybot.polymarket import wire
from polybot.polymarket.auth import (
    ACCESS_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Presigner,
    Signer,
)
from polybot.polymarket.ratelimit import Backoff, TokenBucket
from polybot.polymarket.rest import (
    CORRELATION_ID_HEADER,
    USER_AGENT,
    PolymarketRestClient,
    RestConfig,
    error_for,
)

log = logging.getLogger(__name__)

ORDERS_PATH = "/v1/orders"
_POLL_FLAGS = (getattr(select, "POLLIN", 1) | getattr(select, "POLLRDHUP", 0)
               | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0))
_POLL_CLOSED = getattr(select, "POLLRDHUP", 0) | getattr(select, "POLLHUP", 0) | getattr(
    select, "POLLERR", 0)
# h11 parses the answers but never writes a request: it is told one was sent (with an empty
# body: only its state machine needs it) when the first bytes of the answer arrive
_H11_REQUEST = h11.Request(method="POST", target=ORDERS_PATH,
                           headers=[("Host", "x"), ("Content-Length", "0")])
_H11_END = h11.EndOfMessage()


@attrs.frozen
class FastConfig:
    """The pool's shape. Defaults suit the real exchange and the local one alike."""

    warm: int = 2  # idle connections kept open: one plus a spare
    max_connections: int = 6  # open at once (idle + busy + connecting)
    idle_retire_seconds: float | None = 20.0  # replace before a server's idle timeout (30 s)
    max_requests: int = 500  # creates per connection before it is replaced (hypercorn: 1,000)


class SendFailed(E.TransportError):
    """Nothing of the create left the machine (a definite failure: no order was placed)."""


class PendingCreate:
    """A create whose bytes were handed to the socket; `await result()` for the exchange id."""

    __slots__ = ("_done", "_error", "_id", "correlation_id", "deadline", "sent")

    def __init__(self, sent: Any, correlation_id: str, deadline: float) -> None:
        self.sent = sent  # the JSON body (never our headers: no secrets)
        self.correlation_id = correlation_id
        self.deadline = deadline
        self._done = trio.Event()
        self._id: str | None = None
        self._error: E.PolymarketError | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _settle(self, order_id: str | None, error: E.PolymarketError | None) -> None:
        if self._done.is_set():
            return  # the first outcome wins (the reader and the sender can both fail it)
        self._id, self._error = order_id, error
        self._done.set()

    def _unknown(self, cause: E.PolymarketError) -> None:
        self._settle(None, _unknown(self, cause))

    async def result(self) -> str:
        """The exchange order id; raises `OutcomeUnknown` or a definite `PolymarketError`."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._id is not None
        return self._id


def _ctx(p: PendingCreate) -> dict[str, Any]:
    return {"correlation_id": p.correlation_id, "method": "POST", "path": ORDERS_PATH}


def _unknown(p: PendingCreate, cause: E.PolymarketError) -> E.OutcomeUnknown:
    return E.OutcomeUnknown(f"outcome of POST {ORDERS_PATH} unknown: {cause.message}",
                            sent=p.sent, cause=cause, status=cause.status, **_ctx(p))


def outcome(p: PendingCreate, status: int, reason: str, content: bytes) -> str | E.PolymarketError:
    """The exchange id, or the error `PolymarketRestClient._request` raises for this answer."""
    ctx = _ctx(p)
    if 200 <= status < 300:
        try:
            data = wire.loads_exact(content) if content else {}
        except ValueError as exc:
            return _unknown(p, E.ServerError(f"unparseable success body: {exc}", status=status,
                                             **ctx))
        oid = data.get("id") if isinstance(data, dict) else None
        if not oid:
            return E.OutcomeUnknown("create answered without an order id", sent=p.sent,
                                    cause=E.ServerError("no id"), method="POST", path=ORDERS_PATH)
        return str(oid)
    try:
        body = wire.loads_exact(content)
    except ValueError:
        msg, ebody = content.decode("utf-8", "replace")[:200] or reason or "error", None
    else:
        ebody = body
        msg = (str(body.get("message") or body.get("error") or reason) if isinstance(body, dict)
               else reason or "error")
    err = error_for(status, msg, body=ebody, **ctx)
    if status == 408 or status >= 500:
        return _unknown(p, err)
    return err


class _CountingStream(trio.abc.Stream):
    """A `trio.SocketStream` whose writes count the bytes the kernel took, so a failed write is
    known to have sent nothing (below TLS too: `trio.SSLStream` writes through this)."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.sent = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.inner.socket
        with memoryview(data) as view:
            total = 0
            try:
                # the first write straight to the (non-blocking) socket: a small request is
                # with the kernel without a trip through the scheduler
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    total = os.write(sock.fileno(), view)
                except BlockingIOError:
                    total = 0
                self.sent += total
                while total < len(view):
                    n = await sock.send(view[total:])
                    total += n
                    self.sent += n
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket send failed: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Connection:
    """One kept-alive connection: at most one create in flight, answered to its reader."""

    def __init__(self, pool: FastCreate, raw: _CountingStream, stream: trio.abc.Stream,
                 tls: bool) -> None:
        self.pool = pool
        self.raw = raw
        self.stream = stream
        self.tls = tls
        self.h11 = h11.Connection(h11.CLIENT)
        self.pending: PendingCreate | None = None
        self.requests = 0
        self.last_used = trio.current_time()
        self.dead = False
        self.peer_closed = False
        self._scope: trio.CancelScope | None = None
        self._reader_scope = trio.CancelScope()
        self._status = 0
        self._reason = ""
        self._body: list[bytes] = []
        self._poll: Any = None
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(raw.inner.socket.fileno(), _POLL_FLAGS)

    def usable(self) -> bool:
        """Open as far as the kernel knows: no FIN from the peer, nothing unasked-for waiting."""
        if self.dead or self.pending is not None:
            return False
        if self._poll is None:
            return True
        try:
            events = self._poll.poll(0)
        except (OSError, ValueError):
            return False
        for _fd, mask in events:
            if mask & _POLL_CLOSED:
                self.peer_closed = True
                return False
            # bytes on an idle plain connection were not asked for (a 408 before a close); on
            # TLS they may be session tickets, which the reader consumes
            if not self.tls:
                return False
        return True

    def _lost(self, pending: PendingCreate, cause: E.PolymarketError) -> None:
        """The create's answer will never come: `OutcomeUnknown` (unless already settled)."""
        if pending.done:
            return
        self.pool.rest.errors += 1
        log.warning("fast create [correlation-id %s]: outcome unknown: %s",
                    pending.correlation_id, cause.message)
        pending._unknown(cause)

    def close(self) -> None:
        """Stop the reader; it settles any create in flight and closes the socket."""
        self.dead = True
        self._reader_scope.cancel()

    async def send(self, data: bytes, pending: PendingCreate) -> None:
        """Hand the request to the socket; `SendFailed` when not one byte left."""
        self.pending = pending
        self.requests += 1
        if self._scope is not None:
            self._scope.deadline = pending.deadline
        before = self.raw.sent
        try:
            with trio.fail_at(pending.deadline):
                await self.stream.send_all(data)
        except BaseException as exc:
            self.close()
            if self.raw.sent == before:  # not one byte left: no order can exist
                err = SendFailed(f"nothing sent: {type(exc).__name__}: {exc}", **_ctx(pending))
                pending._settle(None, err)
                if not isinstance(exc, Exception):  # Cancelled, KeyboardInterrupt: theirs
                    raise
                raise err from None
            if isinstance(exc, trio.TooSlowError):
                cause: E.PolymarketError = E.Timeout(
                    f"no answer within {self.pool.config.timeout} s", **_ctx(pending))
            else:
                cause = E.TransportError(f"{type(exc).__name__}: {exc}", **_ctx(pending))
            self._lost(pending, cause)  # some bytes may have left: the order may exist
            if not isinstance(exc, Exception):
                raise
            # a partial write: the caller learns it from result(), like any lost connection

    async def read(self) -> None:
        """The reader task: answers to `pending`, and the end of the connection."""
        reason = "connection closed by the exchange"
        try:
            with self._reader_scope:
                while True:
                    deadline = self.pending.deadline if self.pending is not None else math.inf
                    with trio.CancelScope(deadline=deadline) as scope:
                        self._scope = scope
                        data = await self.stream.receive_some(65536)
                    self._scope = None
                    if scope.cancelled_caught:
                        if self.pending is not None:
                            self._lost(self.pending, E.Timeout(
                                f"no answer within {self.pool.config.timeout} s",
                                **_ctx(self.pending)))
                        reason = "deadline passed"
                        return
                    if not data:
                        self.peer_closed = True
                        return
                    if not self._feed(data):
                        reason = "connection not reusable"
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.peer_closed = True
            reason = f"{type(exc).__name__}: {exc}"
        except h11.RemoteProtocolError as exc:
            reason = f"malformed answer: {exc}"
        finally:
            self.dead = True
            if self.pending is not None:
                self._lost(self.pending, E.TransportError(reason, **_ctx(self.pending)))
                self.pending = None
            self.pool._gone(self)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    def _feed(self, data: bytes | bytearray) -> bool:
        """Parse answer bytes; False when the connection must close."""
        pending = self.pending
        if pending is None:
            return False  # nothing asked: the server is talking on its own (a close is coming)
        conn = self.h11
        if conn.our_state is h11.IDLE:
            conn.send(_H11_REQUEST)
            conn.send(_H11_END)
        conn.receive_data(bytes(data))
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                return True
            if isinstance(ev, h11.Response):
                self._status, self._reason = ev.status_code, ev.reason.decode("latin-1")
            elif isinstance(ev, h11.Data):
                self._body.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                result = outcome(pending, self._status, self._reason, b"".join(self._body))
                self._body.clear()
                self.pending = None
                if isinstance(result, str):
                    pending._settle(result, None)
                else:
                    self.pool.rest.errors += 1
                    pending._settle(None, result)
                self.last_used = trio.current_time()
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    if conn.trailing_data[0]:
                        return False  # bytes past the answer: nothing we asked for
                    self.pool._returned(self)
                    return True
                return False  # `connection: close` or similar: not reusable
            elif isinstance(ev, h11.ConnectionClosed):
                return False
            # InformationalResponse (1xx) and PAUSED need nothing


class FastCreate:
    """Lean `POST /v1/orders` for a `PolymarketRestClient`: same key, budget, deadline, errors.

    Start `run` in a nursery (it owns the connections); `rest.fast = FastCreate(rest)` makes the
    client's `create_order` use it while it runs.
    """

    def __init__(self, rest: PolymarketRestClient, pool: FastConfig | None = None, *,
                 ssl_context: Any = None) -> None:
        if rest.signer is None:
            raise ValueError("a fast create needs the client's API key")
        self.rest = rest
        self.config: RestConfig = rest.config
        self.pool_config = pool or FastConfig()
        self.signer: Signer = rest.signer
        self.bucket: TokenBucket = rest.signed_bucket  # ONE budget for every signed call
        url = urlsplit(self.config.api_url)
        self.tls = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.tls else 80)
        self.path = url.path.rstrip("/") + ORDERS_PATH
        # the create's auth, signed ahead by `run` (each pair used once, at most ~2 s old)
        self.presigner = Presigner(self.signer, "POST", self.path)
        default_port = 443 if self.tls else 80
        host_header = self.host if self.port == default_port else f"{self.host}:{self.port}"
        self._ssl_context = ssl_context
        # the constant part of every create's head, built once
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {host_header}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
            "Content-Type: application/json\r\n"
            f"{ACCESS_KEY_HEADER}: {self.signer.key_id}\r\n"
        ).encode("ascii")
        self._idle: list[_Connection] = []  # most recently used last
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.running = False
        # counters for metrics and tests
        self.creates = 0  # sent on the fast path
        self.fallbacks = 0  # sent through httpx because no warm connection was ready
        self.connects = 0
        self.connect_failures = 0
        self.closed_by_peer = 0  # connections the server closed (noticed by a reader or a poll)
        self.retired = 0  # connections we closed (idle too long, too many requests)

    def __repr__(self) -> str:
        return (f"FastCreate({self.host}:{self.port}, idle={len(self._idle)}, "
                f"open={len(self._open)}, running={self.running})")

    @property
    def warm(self) -> int:
        """Idle connections ready for a create now."""
        return sum(1 for c in self._idle if not c.dead)

    # --- the pool ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep `warm` connections open until cancelled; creates use the pool meanwhile."""
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.presigner.run)
                self.running = True
                task_status.started()
                while True:
                    next_retire = self._retire_stale()
                    cfg = self.pool_config
                    want = min(cfg.warm - len(self._idle) - self._connecting,
                               cfg.max_connections - len(self._open) - self._connecting)
                    for _ in range(max(0, want)):
                        self._connecting += 1
                        nursery.start_soon(self._connect, backoff)
                    with trio.move_on_at(next_retire):
                        await self._wake.wait()
                    self._wake = trio.Event()
        finally:
            self.running = False
            self._nursery = None
            for conn in list(self._open):
                conn.close()
            self._idle.clear()

    def _retire_stale(self) -> float:
        """Close idle connections past `idle_retire_seconds`; when the next one is due."""
        ttl = self.pool_config.idle_retire_seconds
        if ttl is None:
            return math.inf
        now = trio.current_time()
        keep = []
        for conn in self._idle:
            if now - conn.last_used >= ttl:
                self.retired += 1
                conn.close()
            else:
                keep.append(conn)
        self._idle[:] = keep
        return min((c.last_used + ttl for c in keep), default=math.inf)

    async def _connect(self, backoff: Backoff) -> None:
        try:
            try:
                with trio.fail_after(self.config.timeout):
                    sock = await trio.open_tcp_stream(self.host, self.port)
                    raw = _CountingStream(sock)
                    stream: trio.abc.Stream = raw
                    if self.tls:
                        ssl_stream = trio.SSLStream(raw, self._ssl(), server_hostname=self.host,
                                                    https_compatible=True)
                        await ssl_stream.do_handshake()
                        stream = ssl_stream
            except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                self.connect_failures += 1
                delay = backoff.next_delay()
                log.info("fast create: connecting to %s:%s failed (%s); again in %.2f s",
                         self.host, self.port, exc, delay)
                await trio.sleep(delay)
                return
            backoff.reset()
            self.connects += 1
            conn = _Connection(self, raw, stream, self.tls)
            self._open.add(conn)
            self._idle.append(conn)
            assert self._nursery is not None
            self._nursery.start_soon(conn.read)
        finally:
            self._connecting -= 1
            self._wake.set()

    def _ssl(self) -> Any:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    def _gone(self, conn: _Connection) -> None:
        """A connection ended (its reader returned): forget it, open another."""
        if conn.peer_closed:
            self.closed_by_peer += 1
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake.set()

    def _returned(self, conn: _Connection) -> None:
        """An answered connection is idle again (unless it served its share)."""
        if conn.requests >= self.pool_config.max_requests:
            self.retired += 1
            conn.close()
            return
        self._idle.append(conn)
        self._wake.set()

    def _take(self) -> _Connection | None:
        """The most recently used idle connection that is still open (stale ones are closed)."""
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                self._wake.set()  # below `warm` now: the pool tops up
                return conn
            if conn.peer_closed:
                conn.close()
            else:
                self.retired += 1
                conn.close()
        return None

    # --- creates -----------------------------------------------------------------------------

    async def send_create(
        self,
        req: OrderRequest,
        *,
        post_only: bool = False,
        good_till_time: datetime | None = None,
    ) -> PendingCreate:
        """Hand a create to a warm connection; returns once its bytes are with the socket.

        Raises a definite error only when nothing was sent; every later failure comes from
        `PendingCreate.result()`. Goes through the httpx create instead (the returned pending is
        then already answered) when no connection is warm, or when the write failed before a
        single byte left (nothing reached the exchange, so this is not a resend).
        """
        if not self.running or not self._idle:
            return await self._fallback(req, post_only, good_till_time, paid=False)
        if not self.bucket.try_acquire():  # the same budget, without a scheduler trip when free
            await self.bucket.acquire()
        conn = self._take()
        if conn is None:
            return await self._fallback(req, post_only, good_till_time, paid=True)
        body = wire.order_body(req, participate_dont_initiate=post_only,
                               good_till_time=good_till_time)
        content = wire.dumps(body)
        cid = str(uuid.uuid4())
        timestamp, signature = self.presigner.take()
        data = b"".join((
            self._head,
            (f"{CORRELATION_ID_HEADER}: {cid}\r\n{TIMESTAMP_HEADER}: {timestamp}\r\n"
             f"{SIGNATURE_HEADER}: {signature}\r\n"
             f"Content-Length: {len(content)}\r\n\r\n").encode("ascii"),
            content,
        ))
        pending = PendingCreate(body, cid, trio.current_time() + self.config.timeout)
        try:
            await conn.send(data, pending)
        except SendFailed as exc:
            # not one byte left, so no order can exist: this token's request goes through httpx
            # instead (not a resend: the exchange never saw the first)
            log.info("fast create: %s; sending through httpx", exc.message)
            return await self._fallback(req, post_only, good_till_time, paid=True)
        self.rest.requests += 1
        self.creates += 1
        return pending

    async def create_order(
        self,
        req: OrderRequest,
        *,
        post_only: bool = False,
        good_till_time: datetime | None = None,
    ) -> str:
        """`PolymarketRestClient.create_order`'s contract, over the pool: send, then answer."""
        pending = await self.send_create(req, post_only=post_only, good_till_time=good_till_time)
        return await pending.result()

    async def _fallback(self, req: OrderRequest, post_only: bool,
                        good_till_time: datetime | None, *, paid: bool) -> PendingCreate:
        self.fallbacks += 1
        create: Callable[..., Awaitable[str]] = self.rest.create_order_httpx
        body = wire.order_body(req, participate_dont_initiate=post_only,
                               good_till_time=good_till_time)
        pending = PendingCreate(body, "", trio.current_time())
        try:
            oid = await create(req, post_only=post_only, good_till_time=good_till_time,
                               paid=paid)
        except E.PolymarketError as exc:
            if not isinstance(exc, E.OutcomeUnknown) and exc.status is None:
                raise  # nothing left the machine (connect failed): definite, like SendFailed
            pending._settle(None, exc)
        else:
            pending._settle(oid, None)
        return pending
