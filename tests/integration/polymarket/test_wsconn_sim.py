"""The lean websocket client (`polybot.polymarket.wsconn`) against the local exchange on loopback.

Real sockets, Trio's mock clock. The sim (hypercorn) never pings, fragments or sends over-long
messages, so a small frame tap stands between the client and the sim: it passes the upgrade
through, records every frame each way, and where a test asks, re-frames the sim's messages
(a ping before the first one; each one split into three fragments with a ping between) or
terminates TLS with a test CA in front of the plain sim.
"""

from __future__ import annotations

import json
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from polybot.polymarket.auth import Signer
from polybot.polymarket.stream import MARKET_DATA, MARKETS_PATH
from polybot.polymarket.wsconn import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WsConnection,
    connect_websocket,
)
from polybot.sim.harness import running_sim
from tests.integration.polymarket.loopback import open_loopback_listeners

PING, PONG, CLOSE, TEXT, CONT = 0x9, 0xA, 0x8, 0x1, 0x0


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.001)


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    async with running_sim(seed=7, run_scenario=False, rate_limit=None) as s:
        yield s


def _parse(buf: bytearray) -> tuple[bool, int, bool, bytes] | None:
    """Take one frame off `buf`: (fin, opcode, masked, unmasked payload), or None if partial."""
    if len(buf) < 2:
        return None
    n, pos = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    masked = bool(buf[1] & 0x80)
    key = bytes(buf[pos : pos + 4]) if masked else b""
    pos += 4 if masked else 0
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos : pos + n])
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
    del buf[: pos + n]
    return fin, opcode, masked, payload


def _server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        return struct.pack("!BB", b0, n) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


class FrameTap:
    """Accepts on loopback (plain or TLS), pipes to the sim, records and optionally re-frames."""

    def __init__(self, upstream_port: int, *, ssl_context: ssl.SSLContext | None = None,
                 ping_first: bytes = b"", split: bool = False) -> None:
        self.upstream_port = upstream_port
        self.ssl_context = ssl_context
        self.ping_first = ping_first
        self.split = split
        self.server_texts: list[bytes] = []  # whole text messages the sim sent, in order
        self.client_frames: list[tuple[bool, int, bool, bytes]] = []

    def client(self, opcode: int) -> list[bytes]:
        return [p for _, op, _, p in self.client_frames if op == opcode]

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners, port = await open_loopback_listeners(self.ssl_context)
        task_status.started(port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.abc.Stream) -> None:
        up = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_sim, client, up)
                nursery.start_soon(self._sim_to_client, up, client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # either side hung up (or failed the TLS handshake)
        finally:
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(up)

    async def _client_to_sim(self, client: trio.abc.Stream, up: trio.abc.Stream) -> None:
        buf, head = bytearray(), True
        while data := await client.receive_some(65536):
            buf += data
            if head and b"\r\n\r\n" in buf:
                del buf[: buf.index(b"\r\n\r\n") + 4]
                head = False
            while not head and (frame := _parse(buf)) is not None:
                self.client_frames.append(frame)  # recorded even if the sim has hung up
            await up.send_all(data)
        await trio.aclose_forcefully(up)

    async def _sim_to_client(self, up: trio.abc.Stream, client: trio.abc.Stream) -> None:
        buf, head = bytearray(), True
        while data := await up.receive_some(65536):
            buf += data
            if head:
                if b"\r\n\r\n" not in buf:
                    continue
                end = buf.index(b"\r\n\r\n") + 4
                await client.send_all(bytes(buf[:end]))
                del buf[:end]
                head = False
            out = b""
            while (frame := _parse(buf)) is not None:
                fin, opcode, _, payload = frame
                if opcode == TEXT and fin:
                    self.server_texts.append(payload)
                    if self.ping_first:
                        out += _server_frame(PING, self.ping_first)
                        self.ping_first = b""
                    if self.split:
                        third = len(payload) // 3
                        out += (_server_frame(TEXT, payload[:third], fin=False)
                                + _server_frame(PING, b"mid")
                                + _server_frame(CONT, payload[third : 2 * third], fin=False)
                                + _server_frame(CONT, payload[2 * third :]))
                        continue
                out += _server_frame(opcode, payload, fin)
            if out:
                await client.send_all(out)
        # the sim hung up: the client side stays open until the client closes it (its close
        # frame, answering the sim's, must still be seen)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def _open(sim: Any, base: str, **kw: Any) -> WsConnection:
    url = base + MARKETS_PATH
    headers = Signer(sim.key_id, sim.secret_key).ws_headers(url)
    return await connect_websocket(url, headers, connect_timeout=5, disconnect_timeout=1, **kw)


async def _subscribe(conn: WsConnection, slugs: list[str]) -> None:
    await conn.send(json.dumps({"subscribe": {
        "requestId": "r1", "subscriptionType": MARKET_DATA, "marketSlugs": slugs}}))


async def _snapshots(conn: WsConnection, n: int) -> list[str]:
    """The next `n` messages that are not heartbeats."""
    out: list[str] = []
    with trio.fail_after(30):
        while len(out) < n:
            msg = await conn.receive()
            assert isinstance(msg, str)
            if "heartbeat" not in json.loads(msg):
                out.append(msg)
    return out


async def _until(predicate: Any) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.01)


@asynccontextmanager
async def _with_tap(tap: FrameTap, scheme: str = "ws") -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(tap.serve)
        yield f"{scheme}://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def test_messages_arrive_whole_in_order_and_every_client_frame_is_masked(sim, mock_clock):
    tap = FrameTap(_port(sim.ws_url))
    slugs = sim.markets[:3]
    async with _with_tap(tap) as base:
        async with await _open(sim, base) as conn:
            await _subscribe(conn, slugs)
            got = await _snapshots(conn, 3)
        await _until(lambda: tap.client(CLOSE))
    sent = [t.decode() for t in tap.server_texts if b"heartbeat" not in t]
    assert got == sent[:3]  # exactly what the sim wrote, in its order
    assert sorted(json.loads(m)["marketData"]["marketSlug"] for m in got) == sorted(slugs)
    assert json.loads(tap.client(TEXT)[0])["subscribe"]["marketSlugs"] == slugs
    assert tap.client_frames and all(masked for _, _, masked, _ in tap.client_frames)
    assert tap.client(CLOSE)[0][:2] == (1000).to_bytes(2, "big")  # a clean close of our own


async def test_a_ping_is_answered_with_a_pong_of_its_payload(sim, mock_clock):
    tap = FrameTap(_port(sim.ws_url), ping_first=b"tap-1")
    async with _with_tap(tap) as base:
        async with await _open(sim, base) as conn:
            await _subscribe(conn, sim.markets[:2])
            got = await _snapshots(conn, 2)
            await _until(lambda: tap.client(PONG))
    assert tap.client(PONG) == [b"tap-1"]
    assert len(got) == 2  # the ping did not cost a message


async def test_a_fragmented_message_is_reassembled_across_a_ping_between_its_fragments(
        sim, mock_clock):
    tap = FrameTap(_port(sim.ws_url), split=True)
    async with _with_tap(tap) as base:
        async with await _open(sim, base) as conn:
            await _subscribe(conn, sim.markets[:3])
            got = await _snapshots(conn, 3)
            await _until(lambda: len(tap.client(PONG)) >= 3)
    assert got == [t.decode() for t in tap.server_texts if b"heartbeat" not in t][:3]
    assert set(tap.client(PONG)) == {b"mid"}


@pytest.mark.parametrize("split", [False, True], ids=["one frame", "summed over fragments"])
async def test_a_message_over_the_size_limit_is_refused_with_close_code_1009(
        sim, mock_clock, split):
    tap = FrameTap(_port(sim.ws_url), split=split)
    async with _with_tap(tap) as base:
        conn = await _open(sim, base, max_message_size=200)  # a book snapshot is ~330 bytes
        await _subscribe(conn, sim.markets[:1])
        with pytest.raises(ConnectionClosed) as caught:
            await _snapshots(conn, 1)
        assert caught.value.reason.code == 1009
        await _until(lambda: tap.client(CLOSE))
        with pytest.raises(ConnectionClosed):
            await conn.send("after the close")  # the connection stays closed
    whole = len(tap.server_texts[0])
    assert whole > 200 and (not split or whole - 2 * (whole // 3) < 200)  # each fragment fits
    assert tap.client(CLOSE)[0][:2] == (1009).to_bytes(2, "big")


async def test_a_close_from_the_server_is_answered_and_raised_with_its_code(sim, mock_clock):
    tap = FrameTap(_port(sim.ws_url))
    async with _with_tap(tap) as base:
        conn = await _open(sim, base)
        await _subscribe(conn, sim.markets[:1])
        await _snapshots(conn, 1)
        sim.faults.drop_websockets()  # the sim closes every socket with code 1011
        with pytest.raises(ConnectionClosed) as caught:
            with trio.fail_after(10):
                while True:
                    await conn.receive()
        assert caught.value.reason.code == 1011
        await _until(lambda: tap.client(CLOSE))
        await conn.aclose()  # idempotent after the peer's close
    assert tap.client(CLOSE)[0][:2] == (1011).to_bytes(2, "big")  # the handshake's echo


async def test_wss_through_a_tls_front_with_a_test_ca(sim, mock_clock):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    tap = FrameTap(_port(sim.ws_url), ssl_context=server_ctx)
    async with _with_tap(tap, "wss") as base:
        async with await _open(sim, base, ssl_context=client_ctx) as conn:
            await _subscribe(conn, sim.markets[:2])
            got = await _snapshots(conn, 2)
        with pytest.raises(HandshakeError) as caught:  # the system CAs do not know the test CA
            await _open(sim, base)
    assert sorted(json.loads(m)["marketData"]["marketSlug"] for m in got) == sorted(
        sim.markets[:2])
    assert isinstance(caught.value.__cause__, trio.BrokenResourceError)


async def test_a_refused_upgrade_raises_with_the_status_and_the_body(sim, mock_clock):
    url = sim.ws_url + MARKETS_PATH
    headers = Signer("not-a-key", sim.secret_key).ws_headers(url)
    with pytest.raises(ConnectionRejected) as caught:
        await connect_websocket(url, headers, connect_timeout=5)
    assert caught.value.status_code == 401 and caught.value.body
