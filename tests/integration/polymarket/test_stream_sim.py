"""Both websockets against the local exchange: data, faults, recovery."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from polybot.model import ExecutionType, Intent, OrderState, Side, TimeInForce
from polybot.polymarket import (
    BalanceChanged,
    BalancesSnapshotted,
    BboUpdated,
    BookReplaced,
    ContinuityLost,
    CredentialsRejected,
    ExecutionReported,
    MarketsStream,
    OrdersSnapshotted,
    PolymarketRestClient,
    PositionChanged,
    PrivateStream,
    Signer,
    StreamConnected,
    TradePrinted,
)
from polybot.polymarket.stream import MARKET_DATA, MARKET_DATA_LITE, TRADE

from .conftest import next_of, order


async def fresh_books(receive, slugs, timeout=5.0):
    """Collect one BookReplaced per slug (after a (re)connect)."""
    seen = {}
    with trio.fail_after(timeout):
        while set(seen) != set(slugs):
            ev = await receive.receive()
            if isinstance(ev, BookReplaced):
                seen[ev.book.market_slug] = ev.book
    return seen


async def test_markets_stream_delivers_full_books_then_changes(env):
    slugs = env.sim.markets
    send, receive = trio.open_memory_channel(1000)
    stream = MarketsStream(env.stream_config(), env.signer, send, slugs)
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        assert (await next_of(receive, StreamConnected)).connection == 1
        books = await fresh_books(receive, slugs)
        assert all(b.bids == () for b in books.values())
        await env.other.create_order(order(slugs[0], Intent.BUY_LONG, "0.44", "9"))
        ev = await next_of(receive, BookReplaced, where=lambda e: e.book.bids)
        assert ev.book.market_slug == slugs[0] and ev.book.bids[0].price == Decimal("0.44")
        assert ev.book.bids[0].qty == Decimal(9)
        n.cancel_scope.cancel()
    assert stream.frames > 0 and stream.bytes > 0 and stream.malformed == 0


async def test_trade_prints_and_bbo_when_subscribed(env):
    slug = env.sim.markets[0]
    send, receive = trio.open_memory_channel(1000)
    types = (MARKET_DATA, MARKET_DATA_LITE, TRADE)
    stream = MarketsStream(env.stream_config(), env.signer, send, [slug], subscription_types=types)
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        await next_of(receive, StreamConnected)
        await env.other.create_order(order(slug, Intent.BUY_SHORT, "0.47", "5"))
        await env.rest.create_order(order(slug, Intent.BUY_LONG, "0.47", "2", TimeInForce.IOC))
        trade = (await next_of(receive, TradePrinted)).trade
        assert (trade.market_slug, trade.price, trade.qty, trade.taker_side) == (
            slug,
            Decimal("0.47"),
            Decimal(2),
            Side.BUY,
        )
        bbo = await next_of(receive, BboUpdated, where=lambda e: e.bbo.best_ask is not None)
        assert bbo.bbo.best_ask == Decimal("0.47")
        n.cancel_scope.cancel()


async def test_dropped_socket_is_reconnected_resubscribed_and_books_resent(env):
    slugs = env.sim.markets
    send, receive = trio.open_memory_channel(1000)
    stream = MarketsStream(env.stream_config(), env.signer, send, slugs)
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        await next_of(receive, StreamConnected)
        await fresh_books(receive, slugs)
        await env.other.create_order(order(slugs[2], Intent.BUY_LONG, "0.12", "1"))
        env.sim.faults.drop_websockets()
        lost = await next_of(receive, ContinuityLost)
        assert "closed" in lost.reason
        assert (await next_of(receive, StreamConnected)).connection == 2
        books = await fresh_books(receive, slugs)
        assert books[slugs[2]].bids[0].price == Decimal("0.12")  # full state, not a delta
        n.cancel_scope.cancel()
    assert stream.reconnects == 1


async def test_silent_open_socket_is_detected_by_data_age_and_replaced(env):
    slugs = env.sim.markets[:1]
    send, receive = trio.open_memory_channel(1000)
    stream = MarketsStream(env.stream_config(stale_after=0.8), env.signer, send, slugs)
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        await next_of(receive, StreamConnected)
        await fresh_books(receive, slugs)
        env.sim.faults.ws_silent = True  # open, but no data and no heartbeats
        start = trio.current_time()
        lost = await next_of(receive, ContinuityLost)
        assert "stale" in lost.reason and 0.7 < trio.current_time() - start < 2.5
        env.sim.faults.ws_silent = False
        await next_of(receive, StreamConnected)
        await fresh_books(receive, slugs)
        n.cancel_scope.cancel()
    assert stream.stale_teardowns >= 1


async def test_malformed_and_unknown_frames_do_not_break_the_stream(env):
    slugs = env.sim.markets[:1]
    send, receive = trio.open_memory_channel(1000)
    stream = MarketsStream(env.stream_config(), env.signer, send, slugs)
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        await next_of(receive, StreamConnected)
        await fresh_books(receive, slugs)
        env.sim.faults.malformed_frames = 1
        env.sim.faults.unknown_frames = 1
        await env.other.create_order(order(slugs[0], Intent.BUY_LONG, "0.33", "2"))
        ev = await next_of(receive, BookReplaced, where=lambda e: e.book.bids)
        assert ev.book.bids[0].price == Decimal("0.33")
        n.cancel_scope.cancel()
    assert (stream.malformed, stream.unknown_frames, stream.reconnects) == (1, 1, 0)


def random_secret() -> str:
    import base64

    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return base64.b64encode(raw).decode()


async def test_401_at_upgrade_confirmed_by_rest_stops_the_loop(env):
    bad = Signer(env.sim.key_id, random_secret())
    send, _ = trio.open_memory_channel(10)
    async with PolymarketRestClient(env.rest_config(), bad) as probe_client:
        stream = PrivateStream(env.stream_config(), bad, send, auth_probe=probe_client.balances)
        with trio.fail_after(5), pytest.raises(CredentialsRejected) as info:
            await stream.run()
    assert "credentials rejected" in str(info.value) and "401" in str(info.value)
    assert stream.connects == 0


async def test_maintenance_keeps_the_stream_reconnecting_then_it_recovers(env):
    slugs = env.sim.markets[:1]
    send, receive = trio.open_memory_channel(1000)
    progress = []
    stream = MarketsStream(
        env.stream_config(),
        env.signer,
        send,
        slugs,
        progress=lambda: progress.append(1),
        auth_probe=env.rest.balances,
    )
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        await next_of(receive, StreamConnected)
        env.sim.faults.maintenance = True
        await next_of(receive, ContinuityLost)
        await trio.sleep(1.0)
        assert not stream.status.connected and stream.status.attempts >= 3
        assert "reconnecting since" in stream.status.describe()
        calls = len(progress)
        env.sim.faults.maintenance = False
        await next_of(receive, StreamConnected)
        await fresh_books(receive, slugs)
        assert len(progress) > calls
        n.cancel_scope.cancel()


async def test_private_stream_snapshot_executions_positions_balances_and_dedup(env):
    slug = env.sim.markets[0]
    resting = await env.rest.create_order(order(slug, Intent.BUY_LONG, "0.20", "3"))
    send, receive = trio.open_memory_channel(1000)
    stream = PrivateStream(env.stream_config(), env.signer, send, auth_probe=env.rest.balances)
    async with trio.open_nursery() as n:
        n.start_soon(stream.run)
        await next_of(receive, StreamConnected)
        snap = await next_of(receive, OrdersSnapshotted, where=lambda e: e.eof)
        assert [o.order_id for o in snap.orders] == [resting]
        assert (await next_of(receive, BalancesSnapshotted)).balances[0].current_balance == Decimal(
            10000
        )

        await env.other.create_order(order(slug, Intent.BUY_SHORT, "0.40", "10"))
        oid = await env.rest.create_order(order(slug, Intent.BUY_LONG, "0.40", "4"))
        fills = []
        while not fills or fills[-1].order.state is not OrderState.FILLED:
            ev = await next_of(
                receive, ExecutionReported, where=lambda e: e.execution.order.order_id == oid
            )
            if ev.execution.exec_type.is_fill:
                fills.append(ev.execution)
        assert sum(f.last_shares for f in fills) == Decimal(4) == fills[-1].order.cum_quantity
        assert fills[-1].exec_type is ExecutionType.FILL and fills[-1].aggressor is True
        pos = await next_of(receive, PositionChanged)
        assert pos.market_slug == slug and pos.after.net_qty == Decimal(4)
        await next_of(receive, BalanceChanged)

        env.sim.faults.drop_websockets()
        await next_of(receive, ContinuityLost)
        await next_of(receive, StreamConnected)
        snap = await next_of(receive, OrdersSnapshotted, where=lambda e: e.eof)
        assert resting in {o.order_id for o in snap.orders}
        n.cancel_scope.cancel()
    assert stream.duplicate_executions == 0 and stream.executions >= 2
