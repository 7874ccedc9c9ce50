"""The stale-feed watchdog (stream.py `_read`): a frame that arrives in the very scheduler batch in
which the watchdog's deadline passes must never leave the handler running inside a cancelled
scope. A pure unit test: a hand-written connection whose frame is due exactly at the stale
deadline, on Trio's mock clock; Trio runs a batch of woken tasks in random order, so repeated
rounds see both orders (the frame first, the watchdog first).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from polybot.polymarket.auth import Signer
from polybot.polymarket.stream import MarketsStream

from .test_stream import SEED, config
from .test_stream_deliver import book

STALE = 15.0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.001)


class FrameAtTheDeadline:
    """Gives one book exactly when the stream's current wait reaches `stale_after`, then
    nothing. The frame is handed over by a feeder task, as the I/O manager would wake a socket
    read: a plain wake-up with a value, not a cancellation of the reader's wait."""

    def __init__(self, stream: MarketsStream, nursery: trio.Nursery) -> None:
        self.stream = stream
        self.nursery = nursery
        self.returned = False

    async def _feed(self, at: float, send: trio.MemorySendChannel[str]) -> None:
        await trio.sleep_until(at)
        send.send_nowait(book("a", "0.50"))

    async def receive(self) -> str:
        if self.returned:
            await trio.sleep_forever()
        since = self.stream._waiting_since
        assert since is not None
        send, receive = trio.open_memory_channel[str](1)
        self.nursery.start_soon(self._feed, since + STALE, send)
        frame = await receive.receive()
        self.returned = True
        return frame

    async def send(self, message: str) -> None:
        pass


async def test_a_frame_arriving_as_the_stale_deadline_passes_is_never_handled_under_a_cancel(
        clock: trio.testing.MockClock) -> None:
    outcomes: set[str] = set()
    started: list[Any] = []
    finished: list[Any] = []

    async def handler(event: Any) -> None:
        started.append(event)
        await trio.sleep(1)  # a checkpoint: raises Cancelled inside a cancelled scope
        finished.append(event)

    for _ in range(24):
        stream = MarketsStream(config("ws://unused", stale_after=STALE), Signer("k", SEED),
                               slugs=["a"], deliver=handler)
        stream._answered = True  # subscriptions answered: only the frame gap is judged
        async with trio.open_nursery() as nursery:
            conn = FrameAtTheDeadline(stream, nursery)
            reason = await stream._read(conn)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()
        assert "stale" in reason and stream.stale_teardowns == 1
        assert started == finished == []  # the late frame was dropped, not handled half-way
        outcomes.add("frame returned as the watchdog fired" if conn.returned else "wait cancelled")
    # both orders of the two wake-ups happened, so both branches were checked
    assert outcomes == {"frame returned as the watchdog fired", "wait cancelled"}
