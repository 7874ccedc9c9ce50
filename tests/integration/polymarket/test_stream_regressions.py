"""Stream regressions found by the chaos suite (tests/chaos), against the local exchange."""

from __future__ import annotations

import trio

from polybot.polymarket import (
    BookReplaced,
    MarketsStream,
    OrdersSnapshotted,
    PrivateStream,
    StreamConnected,
)

from .conftest import next_of


async def subscribed_during_a_stall_gets_data(env, stream, receive, data_kind) -> None:
    """Connect while the gateway ignores requests (the subscriptions go unanswered), then let it
    speak again: heartbeats resume on that connection, data never would on it."""
    env.sim.faults.ws_silent = True
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        assert (await next_of(receive, StreamConnected)).connection == 1
        await trio.sleep(0.3)
        env.sim.faults.ws_silent = False
        await next_of(receive, data_kind, timeout=4.0)
        assert stream.connects == 2  # torn down and subscribed again
        n.cancel_scope.cancel()


async def test_private_stream_whose_subscriptions_went_unanswered_reconnects(env):
    # chaos seed 36: the bot restarted during a gateway stall; its private subscriptions were
    # ignored, heartbeats kept the socket "alive", and a settlement (and any fill) was missed
    send, receive = trio.open_memory_channel(1000)
    stream = PrivateStream(env.stream_config(), env.signer, send)
    await subscribed_during_a_stall_gets_data(env, stream, receive, OrdersSnapshotted)


async def test_markets_stream_whose_subscriptions_went_unanswered_reconnects(env):
    send, receive = trio.open_memory_channel(1000)
    stream = MarketsStream(env.stream_config(), env.signer, send, env.sim.markets)
    await subscribed_during_a_stall_gets_data(env, stream, receive, BookReplaced)
