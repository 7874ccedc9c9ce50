"""`WsConnection`'s frame reader over Trio's in-memory stream pair (no sockets): what the local
exchange never sends — 64-bit lengths split across many reads, masked or extension frames from
a server, a backlog of buffered messages — and how the reader handles it.
(The connection against the sim: tests/integration/polymarket/test_wsconn_sim.py.)"""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from polybot.polymarket.wsconn import ConnectionClosed, WsConnection


def frame(opcode: int, payload: bytes, *, fin: bool = True, b0_extra: int = 0,
          masked: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | opcode | b0_extra
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mask_bit | 127, n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def pair(buffered: bytes = b"", max_size: int = 1 << 20) -> tuple[WsConnection, trio.abc.Stream]:
    client, server = trio.testing.memory_stream_pair()
    return WsConnection(client, buffered, max_size, 1.0), server


async def test_a_64_bit_length_message_arriving_in_small_reads_is_returned_whole() -> None:
    payload = bytes(range(256)) * 300  # 76,800 bytes: the 8-byte length form
    conn, server = pair()
    data = frame(0x2, payload) + frame(0x1, b"next")

    async def trickle() -> None:
        for i in range(0, len(data), 1000):
            await server.send_all(data[i : i + 1000])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        assert await conn.receive() == payload
        assert await conn.receive() == "next"


@pytest.mark.parametrize("bad", [frame(0x1, b"x", masked=True), frame(0x1, b"x", b0_extra=0x40),
                                 frame(0x9, b"p", fin=False), frame(0x0, b"orphan"),
                                 frame(0x1, b"\xff\xfe")],
                         ids=["masked", "rsv1 (deflate)", "fragmented ping", "orphan continuation",
                              "not utf-8"])
async def test_a_frame_a_server_must_not_send_closes_the_connection_with_a_code(bad: bytes) -> None:
    conn, server = pair(bad)
    with pytest.raises(ConnectionClosed) as caught:
        await conn.receive()
    code = 1007 if bad.endswith(b"\xff\xfe") else 1002
    assert caught.value.reason.code == code
    sent = await server.receive_some(1024)  # our close frame, masked, with that code
    assert sent[0] == 0x88 and sent[1] & 0x80
    unmasked = bytes(b ^ sent[2 + i % 4] for i, b in enumerate(sent[6:8]))
    assert unmasked == code.to_bytes(2, "big")


async def test_a_backlog_of_buffered_messages_lets_other_tasks_run_at_least_every_32() -> None:
    conn, _server = pair(b"".join(frame(0x1, f"m{i}".encode()) for i in range(100)))
    got: list[str | bytes] = []
    other_ran_at: list[int] = []

    async def other() -> None:
        other_ran_at.append(len(got))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(100):
            got.append(await conn.receive())
    assert got == [f"m{i}" for i in range(100)]
    assert other_ran_at and other_ran_at[0] <= 64  # within two windows: a batch runs in random order
