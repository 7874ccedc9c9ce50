"""A lean websocket client connection (RFC 6455) whose frames are read in the caller's task.

Why not trio-websocket: it runs a reader task of its own that parses frames with wsproto and hands
each message through a channel to `get_message()`, one task hop and ~25-30 us of CPU per frame
before the stream can decide anything (perf probe §5). Here `await conn.receive()` parses the
socket's bytes in the task that awaits it: a frame already in the buffer costs no await at all,
and the socket is read 64 KiB at a time (with a checkpoint at least every 32 messages).

What it does, and the traps:

* Connect: TCP (and TLS for ``wss://``), then the HTTP/1.1 upgrade (h11, already under httpx)
  with the caller's headers (the signed auth headers). Any answer but 101 raises
  `ConnectionRejected` with its status, headers and body; a 101 whose Sec-WebSocket-Accept is
  wrong, or that names an extension, fails the handshake (`HandshakeError`). Bytes that came
  after the 101 head are the first frames, not lost.
* No extension is ever offered (no permessage-deflate): a frame with an RSV bit set is a
  protocol error. Server frames must not be masked; client frames always are.
* Control frames may arrive between the fragments of a message: a ping is answered with a pong
  at once (in the reading task), a pong is ignored, a close is answered (the close handshake)
  and ends the connection with `ConnectionClosed`. Fragments are reassembled; a message larger
  than `max_message_size` (whole or summed over fragments) is refused with close code 1009, a
  text message that is not UTF-8 with 1007, a protocol breach with 1002 — each then raises
  `ConnectionClosed` in the reader.
* Sends (subscriptions from other tasks, a pong or the close from the reader) share one lock, so
  two tasks never interleave frames on the socket.
* A socket that breaks (reset, EOF, TLS failure) raises `ConnectionClosed` with code 1006, in
  the reader and in a sender alike: callers catch one meaning, not trio's or ssl's mechanism.

There is no timeout in `receive`: staleness is the caller's policy (see stream.py's watchdog).
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import struct
from collections.abc import Sequence
from types import TracebackType
from typing import NoReturn
from urllib.parse import urlsplit

import h11
import trio

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "HandshakeError",
    "WebSocketError",
    "WsConnection",
    "connect_websocket",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_READ_SIZE = 65536
_MAX_HEAD = 65536  # bytes of an upgrade answer's head (and of a refusal's body) we read
# A message already buffered is returned without a checkpoint (no scheduler pass before the
# decision), so a backlog of small frames could hold the scheduler for a whole 64 KiB read;
# one checkpoint every this many messages bounds that (and lets a cancellation in).
_MAX_UNYIELDED = 32

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

NORMAL, GOING_AWAY, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG, ABNORMAL = 1000, 1001, 1002, 1007, 1009, 1006


class CloseReason:
    """Why a connection ended: the close code and reason text (1006: no close frame)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"code {self.code}" + (f" ({self.reason})" if self.reason else "")

    def __repr__(self) -> str:
        return f"CloseReason(code={self.code}, reason={self.reason!r})"


class WebSocketError(Exception):
    """Every failure of a websocket connection."""


class HandshakeError(WebSocketError):
    """The connection could not be opened (TCP, TLS or the upgrade); `__cause__` says why."""


class ConnectionRejected(HandshakeError):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status_code: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"upgrade rejected with HTTP {status_code}")
        self.status_code = status_code
        self.headers = list(headers)
        self.body = body


class ConnectionClosed(WebSocketError):
    """The connection is closed (by the peer, by us, or broken); `reason` says how."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(str(reason))
        self.reason = reason


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame with FIN set."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WsConnection:
    """An open client websocket. One task calls `receive`; any task may send."""

    def __init__(self, stream: trio.abc.Stream, buffered: bytes, max_message_size: int,
                 disconnect_timeout: float) -> None:
        self._stream = stream
        self._buf = bytes(buffered)
        self._pos = 0
        self._max = max_message_size
        self._disconnect_timeout = disconnect_timeout
        self._send_lock = trio.Lock()
        self._parts: list[bytes] = []  # fragments of the message being reassembled
        self._parts_size = 0
        self._parts_op = 0
        self.closed: CloseReason | None = None  # set once the connection ended
        self._close_sent = False
        self._unyielded = 0  # messages returned since the last checkpoint

    # --- receiving ------------------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message: `str` for a text message, `bytes` for a binary one.

        Answers pings and the close handshake on the way; raises `ConnectionClosed` once the
        connection has ended (a close frame, a broken socket, or a refused frame)."""
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        if self._unyielded >= _MAX_UNYIELDED:
            self._unyielded = 0  # a backlog: let the other tasks run now and then
            await trio.lowlevel.checkpoint()
        self._unyielded += 1
        while True:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                n = b1 & 0x7F
                start = pos + 2
                if n == 126:
                    if avail >= 4:
                        n = (buf[pos + 2] << 8) | buf[pos + 3]
                        start = pos + 4
                    else:
                        start = -1
                elif n == 127:
                    if avail >= 10:
                        n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                        start = pos + 10
                    else:
                        start = -1
                if start >= 0:
                    if b1 & 0x80 or b0 & 0x70:
                        await self._fail(PROTOCOL_ERROR, "masked or extension frame from server")
                    if n > self._max:
                        await self._fail(TOO_BIG, f"frame of {n} bytes exceeds {self._max}")
                    end = start + n
                    if end <= len(buf):
                        self._pos = end
                        opcode = b0 & 0x0F
                        if b0 & 0x80 and opcode == OP_TEXT and not self._parts:
                            try:
                                return str(buf[start:end], "utf-8")
                            except UnicodeDecodeError:
                                await self._fail(INVALID_DATA, "text message is not UTF-8")
                        msg = await self._other(b0, opcode, buf[start:end])
                        if msg is not None:
                            return msg
                        continue
                    await self._fill(end - pos)
                    continue
            await self._fill(0)

    async def _fill(self, need: int) -> None:
        """Read at least once, and until `need` bytes (one whole frame) are buffered: a large
        frame's reads are joined once, not copied over and over."""
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        parts = [self._buf[self._pos :]] if self._pos < len(self._buf) else []
        have = len(parts[0]) if parts else 0
        while True:
            try:
                data = await self._stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                await self._abort(f"{type(exc).__name__}: {exc}")
            if not data:
                await self._abort("the peer closed the socket without a close frame")
            self._unyielded = 0  # receive_some is a checkpoint
            parts.append(bytes(data))
            have += len(data)
            if have >= need:
                break
        self._buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos = 0

    async def _other(self, b0: int, opcode: int, payload: bytes) -> str | bytes | None:
        """Everything but an unfragmented text frame; the completed message, or None."""
        fin = b0 & 0x80
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                await self._fail(PROTOCOL_ERROR, "fragmented or oversized control frame")
            if opcode == OP_PING:
                await self._send_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                await self._on_close(payload)
            elif opcode != OP_PONG:
                await self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return None
        if opcode == OP_CONT:
            if not self._parts_op:
                await self._fail(PROTOCOL_ERROR, "continuation without a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._parts_op:
                await self._fail(PROTOCOL_ERROR, "new message inside a fragmented one")
            if fin:
                if opcode == OP_BINARY:
                    return bytes(payload)
                return await self._text(payload)
            self._parts_op = opcode
        else:
            await self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        self._parts_size += len(payload)
        if self._parts_size > self._max:
            await self._fail(TOO_BIG, f"message exceeds {self._max} bytes")
        self._parts.append(payload)
        if not fin:
            return None
        data = b"".join(self._parts)
        op = self._parts_op
        self._parts, self._parts_size, self._parts_op = [], 0, 0
        return data if op == OP_BINARY else await self._text(data)

    async def _text(self, data: bytes) -> str:
        try:
            return str(data, "utf-8")
        except UnicodeDecodeError:
            await self._fail(INVALID_DATA, "text message is not UTF-8")

    async def _on_close(self, payload: bytes) -> NoReturn:
        code, reason = 1005, ""  # 1005: the close frame carried no code
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            reason = payload[2:].decode("utf-8", "replace")
        elif payload:
            code = PROTOCOL_ERROR
        self.closed = CloseReason(code, reason)
        # answer with the peer's code (1000 for none), then drop the socket
        echo = code if 1000 <= code < 5000 and code not in (1005, 1006, 1015) else NORMAL
        await self._close_socket(echo)
        raise ConnectionClosed(self.closed)

    async def _fail(self, code: int, why: str) -> NoReturn:
        """Refuse what the peer sent: close with `code`, then raise ConnectionClosed."""
        self.closed = CloseReason(code, why)
        await self._close_socket(code, why)
        raise ConnectionClosed(self.closed)

    async def _abort(self, why: str) -> NoReturn:
        self.closed = self.closed or CloseReason(ABNORMAL, why)
        await trio.aclose_forcefully(self._stream)
        raise ConnectionClosed(self.closed)

    # --- sending --------------------------------------------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Send one text (`str`) or binary (`bytes`) message."""
        if isinstance(message, str):
            await self._send_frame(OP_TEXT, message.encode())
        else:
            await self._send_frame(OP_BINARY, bytes(message))

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.closed is not None or self._close_sent:
            raise ConnectionClosed(self.closed or CloseReason(NORMAL, "closed by us"))
        data = _frame(opcode, payload)
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = self.closed or CloseReason(ABNORMAL, f"{type(exc).__name__}: {exc}")
            await trio.aclose_forcefully(self._stream)
            raise ConnectionClosed(self.closed) from exc

    # --- closing --------------------------------------------------------------------------------

    async def _close_socket(self, code: int, reason: str = "") -> None:
        """Send our close frame (once; bounded, even when cancelled), then close the socket."""
        if not self._close_sent:
            self._close_sent = True
            payload = code.to_bytes(2, "big") + reason.encode()[:123]
            with trio.move_on_after(self._disconnect_timeout) as scope:
                scope.shield = True
                try:
                    async with self._send_lock:
                        await self._stream.send_all(_frame(OP_CLOSE, payload))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        await trio.aclose_forcefully(self._stream)

    async def aclose(self, code: int = NORMAL, reason: str = "") -> None:
        """Close from our side (a close frame, then the socket); idempotent."""
        if self.closed is None:
            self.closed = CloseReason(code, reason or "closed by us")
        await self._close_socket(code, reason)

    async def __aenter__(self) -> WsConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose(GOING_AWAY if exc is not None else NORMAL)


async def connect_websocket(
    url: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = 2.0,
    max_message_size: int = 16 * 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> WsConnection:
    """Open a websocket to `url` (ws:// or wss://) with extra upgrade `headers`.

    Raises `ConnectionRejected` for a non-101 answer, `HandshakeError` for everything else that
    keeps the connection from opening (its `__cause__` is the underlying error), including the
    `connect_timeout` running out."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a websocket URL: {url!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if parts.port is None else f"{host}:{port}"
    if ":" in host and parts.port is None:
        host_header = f"[{host}]"
    elif ":" in host:
        host_header = f"[{host}]:{port}"
    key = base64.b64encode(os.urandom(16))
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(connect_timeout):
            stream = await trio.open_tcp_stream(host, port)
            if secure:
                ctx = ssl_context or ssl.create_default_context()
                tls = trio.SSLStream(stream, ctx, server_hostname=host, https_compatible=True)
                stream = tls
                await tls.do_handshake()
            return await _upgrade(stream, host_header, target, key, headers, max_message_size,
                                  disconnect_timeout)
    except ConnectionRejected:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
            h11.ProtocolError, HandshakeError) as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        if isinstance(exc, HandshakeError):
            raise
        raise HandshakeError(f"{type(exc).__name__}: {exc}") from exc
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise


async def _upgrade(stream: trio.abc.Stream, host: str, target: str, key: bytes,
                   headers: Sequence[tuple[str, str]], max_message_size: int,
                   disconnect_timeout: float) -> WsConnection:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
    request = h11.Request(method="GET", target=target, headers=[
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key.decode()),
        ("Sec-WebSocket-Version", "13"),
        *headers,
    ])
    # the request is complete (no body), so h11 takes a 101 as the switch, not as an interim answer
    await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_READ_SIZE)
            conn.receive_data(bytes(data))  # b"" is EOF: h11 then raises or ends the response
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            break
        if isinstance(event, h11.Response):
            raise ConnectionRejected(event.status_code, event.headers,
                                     await _body(stream, conn))
        if isinstance(event, h11.InformationalResponse):
            continue  # a 1xx other than 101 (e.g. 100): the real answer follows
        raise HandshakeError(f"unexpected upgrade answer: {event!r}")
    answer = {k.lower(): v for k, v in event.headers}
    expected = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    if answer.get(b"upgrade", b"").lower() != b"websocket":
        raise HandshakeError("101 without Upgrade: websocket")
    if answer.get(b"sec-websocket-accept") != expected:
        raise HandshakeError("101 with a wrong Sec-WebSocket-Accept")
    if answer.get(b"sec-websocket-extensions"):
        raise HandshakeError("101 names an extension we did not offer")
    buffered, _closed = conn.trailing_data
    return WsConnection(stream, buffered, max_message_size, disconnect_timeout)


async def _body(stream: trio.abc.Stream, conn: h11.Connection) -> bytes:
    """A refusal's body (up to 64 KiB; whatever came if the server stops sending)."""
    body = b""
    while len(body) < _MAX_HEAD:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_READ_SIZE)
            conn.receive_data(bytes(data))
            if not data:
                break
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        else:
            break
    return body
