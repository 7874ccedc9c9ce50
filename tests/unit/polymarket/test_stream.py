"""Stream timing and recovery rules, against a tiny scriptable websocket server on loopback.

Time runs on Trio's MockClock with a 1 ms autojump threshold: loopback I/O in this process
completes before the sender blocks, so the clock only jumps when the stream is genuinely
waiting (stale timers, backoff sleeps). Nothing here sleeps for real.
"""

import functools
import itertools
import json
import operator
import random
import socket

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, serve_websocket

from polybot.polymarket import errors as E
from polybot.polymarket import wire
from polybot.polymarket.auth import Signer
from polybot.polymarket.stream import (
    ContinuityLost,
    MarketsStream,
    PrivateStream,
    StreamConfig,
    StreamConnected,
)

SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


def book(slug, px="0.5000"):
    return json.dumps(
        {
            "requestId": "x",
            "marketData": {
                "marketSlug": slug,
                "bids": [{"px": {"value": px, "currency": "USD"}, "qty": "1.0000"}],
                "offers": [],
            },
        }
    )


class Server:
    """Accepts connections and runs `script(ws, conn_no, server)` for each one."""

    def __init__(self, script, reject=None):
        self.script = script
        self.reject = reject  # conn_no -> status code or None
        self.connections = 0
        self.connected_at: list[float] = []
        self.subscriptions: list[list[dict]] = []
        self.headers: list[dict] = []
        self.port = 0

    async def handler(self, request):
        self.connections += 1
        n = self.connections
        self.connected_at.append(trio.current_time())
        self.headers.append({k.decode(): v.decode() for k, v in request.headers})
        code = self.reject(n) if self.reject else None
        self.subscriptions.append([])
        if code:
            await request.reject(code)
            return
        ws = await request.accept()
        try:
            await self.script(ws, n, self)
        except ConnectionClosed:
            pass

    async def read_subs(self, ws, n, count):
        for _ in range(count):
            self.subscriptions[n - 1].append(json.loads(await ws.get_message()))

    async def start(self, nursery):
        server = await nursery.start(serve_websocket, self.handler, "127.0.0.1", 0, None)
        self.port = server.port
        return self

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"


def config(url, **kw):
    kw.setdefault("stale_after", 15.0)
    kw.setdefault("stable_after", 60.0)
    return StreamConfig(ws_url=url, connect_timeout=5, **kw)


async def collect(receive, n, timeout=600):
    out = []
    with trio.fail_after(timeout):
        while len(out) < n:
            out.append(await receive.receive())
    return out


async def test_slugs_are_split_into_subscriptions_of_at_most_100(clock):
    slugs = [f"m{i}" for i in range(250)]

    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 3)
        await ws.send_message(book("m0"))
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, receive = trio.open_memory_channel(100)
        stream = MarketsStream(config(srv.url), Signer("k", SEED), send, slugs)
        nursery.start_soon(stream.run)
        events = await collect(receive, 2)
        nursery.cancel_scope.cancel()
    assert isinstance(events[0], StreamConnected) and isinstance(events[1], wire.BookReplaced)
    subs = [s["subscribe"] for s in srv.subscriptions[0]]
    assert [len(s["marketSlugs"]) for s in subs] == [100, 100, 50]
    assert len({s["requestId"] for s in subs}) == 3
    assert functools.reduce(operator.iadd, (s["marketSlugs"] for s in subs), []) == slugs
    assert srv.headers[0]["x-pm-access-key"] == "k" and srv.headers[0]["x-pm-signature"]


async def test_silent_open_socket_is_torn_down_after_stale_period_and_resubscribed(clock):
    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 1)
        await ws.send_message(book("a"))  # the subscription's answer
        await trio.sleep_forever()  # then connection 1 stays open but says nothing

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, receive = trio.open_memory_channel(100)
        stream = MarketsStream(
            config(srv.url, stale_after=15), Signer("k", SEED), send, ["a"], rng=random.Random(0)
        )
        nursery.start_soon(stream.run)
        start = trio.current_time()
        events = await collect(receive, 5)
        nursery.cancel_scope.cancel()
    assert [type(e) for e in events] == [
        StreamConnected,
        wire.BookReplaced,
        ContinuityLost,
        StreamConnected,
        wire.BookReplaced,
    ]
    assert "stale" in events[2].reason
    assert 15 <= events[2].at - start < 15 + 3  # detected at the stale deadline (+ close timeout)
    assert stream.stale_teardowns == 1 and stream.reconnects == 1
    assert srv.subscriptions[1][0]["subscribe"]["marketSlugs"] == ["a"]  # restored
    # re-signed on reconnect
    assert srv.headers[0]["x-pm-timestamp"] != srv.headers[1]["x-pm-timestamp"]


async def test_heartbeats_keep_a_quiet_market_alive(clock):
    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 1)
        await ws.send_message(book("a"))  # the subscription's answer; then only heartbeats
        while True:
            await trio.sleep(10)
            await ws.send_message('{"heartbeat":{}}')

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, _receive = trio.open_memory_channel(100)
        progress = []
        stream = MarketsStream(
            config(srv.url, stale_after=15),
            Signer("k", SEED),
            send,
            ["a"],
            progress=lambda: progress.append(1),
        )
        nursery.start_soon(stream.run)
        await trio.sleep(120)
        nursery.cancel_scope.cancel()
    assert srv.connections == 1 and stream.stale_teardowns == 0
    assert stream.heartbeats >= 11 and len(progress) >= 12
    assert stream.status.last_frame_at is not None and stream.status.last_error == ""


async def test_backoff_grows_to_the_cap_while_the_exchange_is_down_and_never_gives_up(clock):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    send, receive = trio.open_memory_channel(100)
    attempts = []
    stream = MarketsStream(
        config(f"ws://127.0.0.1:{port}"),
        Signer("k", SEED),
        send,
        ["a"],
        progress=lambda: attempts.append(trio.current_time()),
        rng=random.Random(3),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        await trio.sleep(600)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) > 20
    assert gaps[0] < 1 and max(gaps) <= 30 + 0.5
    assert gaps[-1] >= 15  # at the cap (equal jitter: between cap/2 and cap)
    assert stream.status.attempts == len(attempts)
    assert "reconnecting since" in stream.status.describe()
    assert receive.statistics().current_buffer_used == 0  # never connected: nothing to report


async def test_backoff_resets_after_a_stable_connection(clock):
    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 1)
        if n == 4:  # the fourth connection is stable for 100 s, then the exchange drops it
            await ws.send_message(book("a"))
            for _ in range(10):
                await trio.sleep(10)
                await ws.send_message('{"heartbeat":{}}')
        await ws.aclose()

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, _receive = trio.open_memory_channel(1000)
        stream = MarketsStream(
            config(srv.url, backoff_base=2.0), Signer("k", SEED), send, ["a"], rng=random.Random(5)
        )
        nursery.start_soon(stream.run)
        with trio.fail_after(1000):
            while srv.connections < 6:
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    t = srv.connected_at
    assert t[3] - t[2] >= 4  # grown: the third failure waits between 4 and 8 s
    assert t[4] - t[3] >= 100  # the stable session
    assert t[4] - t[3] - 100 <= 2 + 0.5  # after it, the backoff restarted at base (≤ 2 s)


async def test_401_at_upgrade_confirmed_by_rest_is_fatal(clock):
    async def probe():
        raise E.AuthError("refused", status=401)

    async with trio.open_nursery() as nursery:
        srv = await Server(None, reject=lambda n: 401).start(nursery)
        send, _receive = trio.open_memory_channel(10)
        stream = PrivateStream(config(srv.url), Signer("k", SEED), send, auth_probe=probe)
        with pytest.raises(E.CredentialsRejected) as info:
            await stream.run()
        nursery.cancel_scope.cancel()
    assert "credentials rejected" in str(info.value) and SEED not in str(info.value)
    assert srv.connections == 1


async def test_403_at_upgrade_with_rest_accepting_keeps_retrying(clock):
    calls = []

    async def probe():
        calls.append(1)

    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 4)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        srv = await Server(script, reject=lambda n: 403 if n <= 2 else None).start(nursery)
        send, receive = trio.open_memory_channel(10)
        stream = PrivateStream(config(srv.url), Signer("k", SEED), send, auth_probe=probe)
        nursery.start_soon(stream.run)
        events = await collect(receive, 1)
        nursery.cancel_scope.cancel()
    assert isinstance(events[0], StreamConnected) and len(calls) == 2 and srv.connections == 3


async def test_malformed_and_unknown_frames_are_counted_and_skipped(clock):
    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 1)
        await ws.send_message("{garbage")
        await ws.send_message('{"marketData":{"marketSlug":"a","bids":[{"px":{}}]}}')
        await ws.send_message('{"brandNewPayload":{}}')
        await ws.send_message(book("a", "0.6100"))
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, receive = trio.open_memory_channel(10)
        stream = MarketsStream(config(srv.url), Signer("k", SEED), send, ["a"])
        nursery.start_soon(stream.run)
        events = await collect(receive, 2)
        nursery.cancel_scope.cancel()
    assert str(events[1].book.bids[0].price) == "0.6100"
    assert (stream.malformed, stream.unknown_frames, stream.frames, srv.connections) == (2, 1, 4, 1)


EXEC = {
    "orderSubscriptionUpdate": {
        "execution": {
            "id": "e-1",
            "order": {"id": "o-1", "marketSlug": "a", "quantity": 5, "cumQuantity": 2},
            "lastShares": "2",
            "type": "EXECUTION_TYPE_PARTIAL_FILL",
        }
    }
}


async def test_private_stream_subscribes_everything_and_dedupes_executions_across_reconnects(clock):
    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 4)
        snap_id = srv.subscriptions[n - 1][1]["subscribe"]["requestId"]
        if n == 1:
            await ws.send_message(json.dumps({"requestId": snap_id, "error": "deadline exceeded"}))
            await srv.read_subs(ws, n, 1)  # the snapshot asked again
            snap_id = srv.subscriptions[0][4]["subscribe"]["requestId"]
        await ws.send_message(
            json.dumps(
                {"requestId": snap_id, "orderSubscriptionSnapshot": {"orders": [], "eof": True}}
            )
        )
        await ws.send_message(json.dumps(EXEC))  # at least once: repeated after the reconnect
        if n == 1:
            await ws.send_message(json.dumps(EXEC))
            await ws.aclose()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, receive = trio.open_memory_channel(100)
        stream = PrivateStream(config(srv.url), Signer("k", SEED), send)
        nursery.start_soon(stream.run)
        events = await collect(receive, 7)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "StreamConnected",
        "SubscriptionFailed",
        "OrdersSnapshotted",
        "ExecutionReported",
        "ContinuityLost",
        "StreamConnected",
        "OrdersSnapshotted",
    ]
    assert receive.statistics().current_buffer_used == 0  # the redelivered execution was dropped
    assert stream.duplicate_executions == 2 and stream.executions == 1
    types = [s["subscribe"]["subscriptionType"] for s in srv.subscriptions[1]]
    assert types == [
        "SUBSCRIPTION_TYPE_ORDER",
        "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT",
        "SUBSCRIPTION_TYPE_POSITION",
        "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE",
    ]
    assert len({s["subscribe"]["requestId"] for s in srv.subscriptions[1]}) == 4
    assert events[3].execution.order.cum_quantity == 2


async def test_set_markets_subscribes_the_new_set_then_unsubscribes_the_old_on_the_live_connection(clock):
    async def script(ws, n, srv):
        while True:
            srv.subscriptions[n - 1].append(json.loads(await ws.get_message()))

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, receive = trio.open_memory_channel(10)
        stream = MarketsStream(config(srv.url, stale_after=1000), Signer("k", SEED), send, ["a"])
        nursery.start_soon(stream.run)
        await collect(receive, 1)
        await stream.set_markets(["a", "b"])
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    msgs = srv.subscriptions[0]
    # no add inside a subscription: the new one first (no gap in the data), then the old one goes
    assert msgs[1]["subscribe"]["marketSlugs"] == ["a", "b"] and srv.connections == 1
    assert msgs[1]["subscribe"]["requestId"] != msgs[0]["subscribe"]["requestId"]
    assert msgs[2] == {"unsubscribe": {"requestId": msgs[0]["subscribe"]["requestId"]}}


async def test_private_stream_without_the_order_snapshot_eof_is_torn_down_despite_other_data(clock):
    # its liveness is the order snapshot's eof: a balance snapshot and heartbeats do not show the
    # orders were heard (the executor would wait on that eof forever)
    async def script(ws, n, srv):
        await srv.read_subs(ws, n, 4)
        balances = srv.subscriptions[n - 1][3]["subscribe"]["requestId"]
        await ws.send_message(json.dumps(
            {"requestId": balances, "accountBalancesSnapshot": {"balances": []}}))
        if n == 2:
            snap_id = srv.subscriptions[n - 1][1]["subscribe"]["requestId"]
            await ws.send_message(json.dumps(
                {"requestId": snap_id, "orderSubscriptionSnapshot": {"orders": [], "eof": True}}))
        while True:
            await ws.send_message('{"heartbeat":{}}')
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        srv = await Server(script).start(nursery)
        send, _receive = trio.open_memory_channel(100)
        stream = PrivateStream(config(srv.url, stale_after=15.0), Signer("k", SEED), send)
        nursery.start_soon(stream.run)
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert srv.connections == 2 and stream.stale_teardowns == 1
    assert 15 <= srv.connected_at[1] - srv.connected_at[0] <= 17


def test_chunks_follow_a_churning_set_changing_only_what_they_must():
    import math

    send, _receive = trio.open_memory_channel(1)
    stream = MarketsStream(config("ws://unused"), Signer("k", SEED), send,
                           [f"m{i}" for i in range(150)])
    assert sorted(len(c.slugs) for c in stream._chunks) == [50, 100]
    changed = stream._place((*stream.slugs, "new"))
    assert len(changed) == 1 and "new" in changed[0].slugs  # one chunk re-sent, not two
    rng = random.Random(5)
    live = list(stream.slugs)
    peak, counter = len(live), itertools.count(1000)
    for _ in range(300):  # days of games listed and retired
        before = {id(c): list(c.slugs) for c in stream._chunks}
        gone = set(rng.sample(live, k=min(len(live), rng.randint(0, 30))))
        live = [s for s in live if s not in gone] + [
            f"m{next(counter)}" for _ in range(rng.randint(0, 30))]
        peak = max(peak, len(live))
        changed = stream._place(tuple(live))
        stream._chunks = [c for c in stream._chunks if c.slugs]
        every = [s for c in stream._chunks for s in c.slugs]
        assert sorted(every) == sorted(live) and all(len(c.slugs) <= 100 for c in stream._chunks)
        for c in stream._chunks:  # a chunk is re-sent exactly when its membership changed
            assert (c in changed) == (before.get(id(c)) != c.slugs)
        assert len(stream._chunks) <= math.ceil(peak / 100)
