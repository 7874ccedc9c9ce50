"""A stream that hands each event straight to an awaited handler (`deliver=`), no channel:
the same events in the same order, back-pressure on the socket, and a handler's failure never
mistaken for the connection's. Same loopback server and mock clock as test_stream.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from polybot.polymarket import wire
from polybot.polymarket.auth import Signer
from polybot.polymarket.stream import (
    ContinuityLost,
    DeliveryFailed,
    MarketsStream,
    PrivateStream,
    StreamConnected,
)

from .test_stream import SEED, Server, config


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.001)


def book(slug: str, px: str) -> str:
    return json.dumps({"requestId": "x", "marketData": {
        "marketSlug": slug, "state": "MARKET_STATE_OPEN",
        "bids": [{"px": {"value": px, "currency": "USD"}, "qty": "1.0000"}], "offers": []}})


def described(events: list[Any]) -> list[str]:
    out = []
    for ev in events:
        if isinstance(ev, wire.BookReplaced):
            out.append(f"book {ev.book.bids[0].price}")
        elif isinstance(ev, StreamConnected):
            out.append(f"connected {ev.connection}")
        else:
            out.append(type(ev).__name__)
    return out


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def test_the_handler_gets_every_event_in_order_with_the_loss_between_connections(
    clock: trio.testing.MockClock,
) -> None:
    async def script(ws: Any, n: int, srv: Server) -> None:
        await srv.read_subs(ws, n, 1)
        if n == 1:
            for px in ("0.50", "0.51"):
                await ws.send_message(book("a", px))
            await ws.aclose()  # the connection drops
            return
        await ws.send_message(book("a", "0.52"))
        await trio.sleep_forever()

    events: list[Any] = []
    done = trio.Event()

    async def handler(event: Any) -> None:
        events.append(event)
        if len(events) == 6:
            done.set()

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        stream = MarketsStream(config(srv.url), Signer("k", SEED), slugs=["a"], deliver=handler)
        nursery.start_soon(stream.run)
        with trio.fail_after(60):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert described(events) == ["connected 1", "book 0.50", "book 0.51", "ContinuityLost",
                                 "connected 2", "book 0.52"]


async def test_a_slow_handler_holds_the_socket_and_is_never_torn_down_as_stale(
    clock: trio.testing.MockClock,
) -> None:
    async def script(ws: Any, n: int, srv: Server) -> None:
        await srv.read_subs(ws, n, 1)
        for px in ("0.50", "0.51", "0.52", "0.53"):
            await ws.send_message(book("a", px))
        await trio.sleep_forever()

    events: list[Any] = []
    frames_read_while_slow: list[int] = []
    done = trio.Event()

    async def handler(event: Any) -> None:
        events.append(event)
        if isinstance(event, wire.BookReplaced) and len(events) == 2:
            await trio.sleep(40)  # longer than stale_after (15 s): the consumer is slow
            frames_read_while_slow.append(stream.frames)
        if len(events) == 5:
            done.set()

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        stream = MarketsStream(config(srv.url), Signer("k", SEED), slugs=["a"], deliver=handler)
        nursery.start_soon(stream.run)
        with trio.fail_after(120):
            await done.wait()
        nursery.cancel_scope.cancel()
    assert frames_read_while_slow == [1]  # no frame was read while the handler ran
    assert described(events) == ["connected 1", "book 0.50", "book 0.51", "book 0.52",
                                 "book 0.53"]
    assert (stream.stale_teardowns, srv.connections) == (0, 1)  # its wait was not a silence


async def test_a_handler_error_ends_the_stream_instead_of_reading_as_a_lost_connection(
    clock: trio.testing.MockClock,
) -> None:
    async def script(ws: Any, n: int, srv: Server) -> None:
        await srv.read_subs(ws, n, 4)
        await trio.sleep_forever()

    async def handler(event: Any) -> None:
        if isinstance(event, StreamConnected):
            raise OSError(28, "No space left on device")  # the consumer's disk, not the socket

    with pytest.raises(BaseException) as caught:  # the leaves are checked below
        async with trio.open_nursery() as nursery:
            srv = await Server(script).start(nursery)
            stream = PrivateStream(config(srv.url), Signer("k", SEED), deliver=handler)
            with trio.fail_after(60):
                await stream.run()
    (failure,) = [e for e in leaves(caught.value) if not isinstance(e, trio.Cancelled)]
    assert isinstance(failure, DeliveryFailed)
    assert isinstance(failure.__cause__, OSError)
    assert srv.connections == 1  # no reconnect: the connection was fine


def test_a_stream_takes_a_channel_or_a_handler_not_both() -> None:
    send, _ = trio.open_memory_channel[Any](1)

    async def handler(event: Any) -> None: ...

    with pytest.raises(ValueError):
        MarketsStream(config("ws://unused"), Signer("k", SEED), send, deliver=handler)
    with pytest.raises(ValueError):
        MarketsStream(config("ws://unused"), Signer("k", SEED))
    assert isinstance(ContinuityLost("markets", "x", 0.0), ContinuityLost)
