"""The fast create path (`polybot.polymarket.fastorder`) against the local exchange on loopback.

Real sockets, Trio's mock clock: hypercorn's idle timeout and the client's deadline jump instead
of being waited for. A small TCP (or TLS) forwarder stands between the client and the sim where
a test must cut a connection or terminate TLS.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio
import trio.testing
import trustme

from polybot.clock import epoch_ms
from polybot.model import Intent
from polybot.polymarket import (
    AuthError,
    BadRequest,
    OutcomeUnknown,
    PolymarketRestClient,
    RateLimited,
    RestConfig,
    ServerError,
    Signer,
    Timeout,
    TransportError,
)
from polybot.polymarket.fastorder import (
    FastConfig,
    FastCreate,
    PendingCreate,
    SendFailed,
    _Connection,
    _CountingStream,
)
from polybot.sim.harness import running_sim
from tests.integration.polymarket.loopback import open_loopback_listeners

from .conftest import order


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


class Forwarder:
    """Accepts on loopback (plain or TLS) and pipes each connection to `upstream_port`."""

    def __init__(self, upstream_port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream_port = upstream_port
        self.ssl_context = ssl_context
        self.streams: set[trio.abc.Stream] = set()
        self.accepted = 0

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners, port = await open_loopback_listeners(self.ssl_context)
        task_status.started(port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.abc.Stream) -> None:
        self.accepted += 1
        up = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        self.streams |= {client, up}

        async def pump(a: trio.abc.Stream, b: trio.abc.Stream) -> None:
            try:
                while data := await a.receive_some(65536):
                    await b.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await self._close(a, b)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, up)
            nursery.start_soon(pump, up, client)

    async def _close(self, *streams: trio.abc.Stream) -> None:
        for s in streams:
            self.streams.discard(s)
            await trio.aclose_forcefully(s)

    async def drop_all(self) -> None:
        """Cut every connection now (the exchange side never answers what was in flight)."""
        await self._close(*list(self.streams))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    async with running_sim(seed=7, run_scenario=False, rate_limit=None) as s:
        yield s


def _config(api_url: str, gateway_url: str, **kw: Any) -> RestConfig:
    kw.setdefault("timeout", 2.0)
    return RestConfig(api_url=api_url, gateway_url=gateway_url, backoff_base=0.05,
                      backoff_cap=0.2, **kw)


async def _warm(fast: FastCreate, n: int = 2) -> None:
    with trio.fail_after(10):
        while fast.warm < n:
            await trio.sleep(0.01)


async def _pool(nursery: trio.Nursery, rest: PolymarketRestClient, **kw: Any) -> FastCreate:
    ssl_context = kw.pop("ssl_context", None)
    fast = FastCreate(rest, FastConfig(**kw), ssl_context=ssl_context)
    rest.fast = fast
    await nursery.start(fast.run)
    await _warm(fast)
    return fast


def _accepted(sim: Any) -> list[str]:
    return [a.order_id for a in sim.exchange.orders_accepted if a.account_id == sim.account_id]


async def test_fast_creates_are_exactly_the_orders_the_exchange_holds(sim, mock_clock):
    slug = sim.markets[0]
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        ids = [await rest.create_order(order(slug, Intent.BUY_LONG, f"0.{30 + i}", str(i + 1)))
               for i in range(4)]
        pending = await fast.send_create(order(slug, Intent.BUY_SHORT, "0.80", "3"))
        ids.append(await pending.result())
        assert (fast.creates, fast.fallbacks) == (5, 0)
        assert _accepted(sim) == ids
        held = {o.order_id: (o.intent, o.quantity) for o in await rest.open_orders([slug])}
        assert held == {**{ids[i]: (Intent.BUY_LONG, Decimal(i + 1)) for i in range(4)},
                        ids[4]: (Intent.BUY_SHORT, Decimal(3))}
        nursery.cancel_scope.cancel()


async def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_next_create_goes_fast(
        sim, mock_clock):
    slug = sim.markets[0]
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest, idle_retire_seconds=None)
        first = await rest.create_order(order(slug, Intent.BUY_LONG, "0.30", "1"))
        await trio.sleep(40)  # hypercorn closes connections idle for 30 s
        assert fast.closed_by_peer >= 2
        await _warm(fast)
        second = await rest.create_order(order(slug, Intent.BUY_LONG, "0.31", "1"))
        assert (fast.creates, fast.fallbacks) == (2, 0)
        assert _accepted(sim) == [first, second]
        nursery.cancel_scope.cancel()


async def test_idle_connections_are_retired_before_the_server_times_them_out(sim, mock_clock):
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest, idle_retire_seconds=20.0)
        await trio.sleep(45)
        assert fast.retired >= 4 and fast.closed_by_peer == 0
        await _warm(fast)
        await rest.create_order(order(sim.markets[0], Intent.BUY_LONG, "0.30", "1"))
        assert (fast.creates, fast.fallbacks) == (1, 0)
        nursery.cancel_scope.cancel()


async def test_a_connection_dropped_after_the_send_is_outcome_unknown_and_never_resent(
        sim, mock_clock):
    slug = sim.markets[0]
    async with trio.open_nursery() as outer:
        fwd = Forwarder(_port(sim.api_url))
        port = await outer.start(fwd.serve)
        config = _config(f"http://127.0.0.1:{port}", sim.gateway_url, timeout=30.0)
        async with (PolymarketRestClient(config, Signer(sim.key_id, sim.secret_key)) as rest,
                    trio.open_nursery() as nursery):
            fast = await _pool(nursery, rest)
            sim.faults.hang_orders = 1  # the exchange places it, the answer is withheld
            req = order(slug, Intent.BUY_LONG, "0.33", "2")
            pending = await fast.send_create(req)
            with trio.fail_after(5):
                while len(_accepted(sim)) < 1:
                    await trio.sleep(0.01)
            await fwd.drop_all()
            with pytest.raises(OutcomeUnknown) as info:
                await pending.result()
            assert isinstance(info.value.cause, TransportError)
            assert info.value.sent["marketSlug"] == slug and info.value.correlation_id
            await trio.sleep(5)
            assert len(_accepted(sim)) == 1  # placed once, never resent
            await _warm(fast)
            again = await rest.create_order(order(slug, Intent.BUY_LONG, "0.34", "1"))
            assert _accepted(sim)[1:] == [again] and fast.fallbacks == 0
            assert sorted(o.price for o in await rest.open_orders([slug])) == [
                Decimal("0.33"), Decimal("0.34")]
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def test_an_unanswered_create_times_out_as_outcome_unknown_and_the_pool_recovers(
        sim, mock_clock):
    slug = sim.markets[0]
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        sim.faults.hang_orders = 1
        with pytest.raises(OutcomeUnknown) as info:
            await rest.create_order(order(slug, Intent.BUY_LONG, "0.33", "2"))
        assert isinstance(info.value.cause, Timeout)
        assert len(_accepted(sim)) == 1
        await _warm(fast)
        await rest.create_order(order(slug, Intent.BUY_LONG, "0.35", "2"))
        assert len(_accepted(sim)) == 2 and fast.fallbacks == 0
        nursery.cancel_scope.cancel()


async def test_statuses_map_to_the_same_errors_as_the_httpx_path(sim, mock_clock):
    slug = sim.markets[0]
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)

        async def both(req: Any) -> list[BaseException]:
            out = []
            for create in (rest.create_order_httpx, fast.create_order):
                with pytest.raises(Exception) as info:
                    await create(req)
                out.append(info.value)
            return out

        slow, quick = await both(order("", Intent.BUY_LONG, "0.30", "1"))
        assert type(slow) is type(quick) and isinstance(quick, BadRequest)
        assert (quick.status, quick.message, quick.body) == (slow.status, slow.message, slow.body)

        sim.faults.rate_limit_burst = 2
        slow, quick = await both(order(slug, Intent.BUY_LONG, "0.30", "1"))
        assert isinstance(slow, RateLimited) and isinstance(quick, RateLimited)

        sim.faults.error_burst = 2
        slow, quick = await both(order(slug, Intent.BUY_LONG, "0.30", "1"))
        for err in (slow, quick):
            assert isinstance(err, OutcomeUnknown) and isinstance(err.cause, ServerError)
            assert err.status == 500
        assert _accepted(sim) == []  # the edge refused all of them
        assert fast.creates == 3 and fast.fallbacks == 0
        nursery.cancel_scope.cancel()


async def test_a_refused_key_is_the_same_auth_error_on_both_paths(sim, mock_clock):
    bad = Signer(sim.key_id, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url), bad) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        req = order(sim.markets[0], Intent.BUY_LONG, "0.30", "1")
        with pytest.raises(AuthError) as slow:
            await rest.create_order_httpx(req)
        with pytest.raises(AuthError) as quick:
            await fast.create_order(req)
        assert quick.value.status == slow.value.status == 401
        assert quick.value.message == slow.value.message and quick.value.correlation_id
        assert fast.creates == 1 and _accepted(sim) == []
        nursery.cancel_scope.cancel()


async def test_a_create_round_trips_over_tls(sim, mock_clock):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    slug = sim.markets[0]
    async with trio.open_nursery() as outer:
        fwd = Forwarder(_port(sim.api_url), server_ctx)
        port = await outer.start(fwd.serve)
        config = _config(f"https://127.0.0.1:{port}", sim.gateway_url)
        transport = httpx.AsyncHTTPTransport(verify=client_ctx)
        async with (PolymarketRestClient(config, Signer(sim.key_id, sim.secret_key),
                                         transport=transport) as rest,
                    trio.open_nursery() as nursery):
            fast = await _pool(nursery, rest, ssl_context=client_ctx)
            oid = await rest.create_order(order(slug, Intent.BUY_LONG, "0.41", "3"))
            assert (fast.creates, fast.fallbacks) == (1, 0) and _accepted(sim) == [oid]
            assert [(o.order_id, o.price) for o in await rest.open_orders([slug])] == [
                (oid, Decimal("0.41"))]  # read back through httpx over the same TLS front
            assert fwd.accepted >= 3  # two warm fast connections plus httpx's
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def test_without_a_warm_connection_the_create_falls_back_to_httpx(sim, mock_clock):
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = FastCreate(rest, FastConfig(warm=0))
        rest.fast = fast
        await nursery.start(fast.run)
        oid = await rest.create_order(order(sim.markets[0], Intent.BUY_LONG, "0.30", "1"))
        assert _accepted(sim) == [oid] and (fast.creates, fast.fallbacks) == (0, 1)
        assert rest.requests == 1  # one token of the shared budget, one request
        nursery.cancel_scope.cancel()


def _signer() -> Signer:
    return Signer("k", base64.b64encode(os.urandom(32)).decode())


async def test_a_write_that_sends_nothing_is_a_definite_failure_and_a_closed_peer_is_never_used():
    rest = PolymarketRestClient(_config("http://127.0.0.1:9", "http://127.0.0.1:9"), _signer())
    fast = FastCreate(rest)
    ours, theirs = trio.socket.socketpair()
    stream = _CountingStream(trio.SocketStream(ours))
    conn = _Connection(fast, stream, stream, tls=False)
    assert conn.usable()
    theirs.close()
    assert not conn.usable() and conn.peer_closed  # the FIN is seen before any send
    pending = PendingCreate({"marketSlug": "m"}, "cid", trio.current_time() + 5)
    with pytest.raises(SendFailed):
        await conn.send(b"POST /v1/orders HTTP/1.1\r\n\r\n", pending)
    with pytest.raises(SendFailed):  # definite, not OutcomeUnknown: nothing was placed
        await pending.result()
    assert conn.dead
    await rest.aclose()


@pytest.mark.parametrize("answer, cause", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nnot-js!", ServerError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", ServerError),  # no order id
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", ServerError),
    (b"SPDY/9 what\r\n\r\n", TransportError),  # not HTTP at all
    (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{\"id\":", TransportError),  # cut short
])
async def test_a_malformed_or_idless_answer_is_outcome_unknown(mock_clock, answer, cause):
    requests: list[bytes] = []

    async def exchange(stream: trio.SocketStream) -> None:
        got = b""
        while b"\r\n\r\n" not in got:
            got += await stream.receive_some(65536)
        head, _, body = got.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += await stream.receive_some(65536)
        requests.append(body)
        await stream.send_all(answer)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: trio.serve_tcp(exchange, 0, host="127.0.0.1",
                                               task_status=task_status))
        port = listeners[0].socket.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        rest = PolymarketRestClient(_config(url, url), _signer())
        fast = FastCreate(rest, FastConfig(warm=1))
        await nursery.start(fast.run)
        await _warm(fast, 1)
        with pytest.raises(OutcomeUnknown) as info:
            await fast.create_order(order("m-1", Intent.BUY_LONG, "0.30", "1"))
        assert isinstance(info.value.cause, cause) and info.value.sent["marketSlug"] == "m-1"
        assert len(requests) == 1 and b'"marketSlug":"m-1"' in requests[0]
        assert rest.errors == 1
        nursery.cancel_scope.cancel()
    await rest.aclose()


async def test_a_write_that_left_nothing_goes_through_httpx_once(sim, mock_clock, monkeypatch):
    real_send_all = _CountingStream.send_all
    failed = []

    async def refuse_once(self, data):
        if not failed:
            failed.append(True)
            raise trio.BrokenResourceError("connection reset before the first byte")
        await real_send_all(self, data)

    monkeypatch.setattr(_CountingStream, "send_all", refuse_once)
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        oid = await rest.create_order(order(sim.markets[0], Intent.BUY_LONG, "0.30", "1"))
        assert failed and _accepted(sim) == [oid]  # placed once, by the httpx fallback
        assert (fast.creates, fast.fallbacks, rest.requests, rest.errors) == (0, 1, 1, 0)
        await _warm(fast)
        assert await rest.create_order(order(sim.markets[0], Intent.BUY_LONG, "0.31", "1"))
        assert fast.creates == 1 and len(_accepted(sim)) == 2
        nursery.cancel_scope.cancel()


async def test_the_clients_send_create_hands_over_on_either_path(sim, mock_clock):
    slug = sim.markets[0]
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url),
                                     Signer(sim.key_id, sim.secret_key)) as rest,
                trio.open_nursery() as nursery):
        deferred = await rest.send_create(order(slug, Intent.BUY_LONG, "0.30", "1"))
        assert _accepted(sim) == []  # httpx: nothing goes out until the answer is awaited
        first = await deferred.result()
        fast = await _pool(nursery, rest)
        sent = await rest.send_create(order(slug, Intent.BUY_LONG, "0.31", "1"))
        assert isinstance(sent, PendingCreate) and fast.creates == 1
        second = await sent.result()
        assert _accepted(sim) == [first, second]
        nursery.cancel_scope.cancel()


# --- pre-signed auth (auth.Presigner): each pair once, only while fresh -----------------------


def _record_heads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The head of every request the fast path writes to a socket, as it left (lower-case names)."""
    heads: list[dict[str, str]] = []
    real_send_all = _CountingStream.send_all

    async def recording(self: _CountingStream, data: Any) -> None:
        head = bytes(data).split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")[1:]
        heads.append({k.lower(): v for k, _, v in (line.partition(": ") for line in head)})
        await real_send_all(self, data)

    monkeypatch.setattr(_CountingStream, "send_all", recording)
    return heads


def _still_signer(sim: Any) -> tuple[Signer, list[int]]:
    """A signer whose clock moves only when the test moves it (starting at the host's now)."""
    now = [epoch_ms()]
    return Signer(sim.key_id, sim.secret_key, clock_ms=lambda: now[0]), now


async def test_consecutive_creates_each_carry_a_signature_of_their_own_and_all_are_placed(
        sim, mock_clock, monkeypatch):
    heads = _record_heads(monkeypatch)
    signer, _ = _still_signer(sim)  # the clock stands still: a repeated stamp would repeat
    slug = sim.markets[0]
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url), signer) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        ids = [await rest.create_order(order(slug, Intent.BUY_LONG, f"0.{30 + i}", "1"))
               for i in range(3)]
        # two sends back to back, before either is answered
        a = await fast.send_create(order(slug, Intent.BUY_LONG, "0.40", "1"))
        b = await fast.send_create(order(slug, Intent.BUY_LONG, "0.41", "1"))
        ids += [await a.result(), await b.result()]
        stamps = [h["x-pm-timestamp"] for h in heads]
        signatures = [h["x-pm-signature"] for h in heads]
        assert len(set(stamps)) == len(set(signatures)) == len(heads) == 5
        assert _accepted(sim) == ids  # the exchange verified every one of them
        assert fast.presigner.presigned >= 3 and fast.creates == 5
        nursery.cancel_scope.cancel()


async def test_a_pre_signed_pair_past_its_freshness_limit_is_not_used(sim, mock_clock, monkeypatch):
    heads = _record_heads(monkeypatch)
    signer, now = _still_signer(sim)
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url), signer) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        presigned_at = now[0]
        now[0] += fast.presigner.max_age_ms + 1  # the create comes before the refresher wakes
        oid = await rest.create_order(order(sim.markets[0], Intent.BUY_LONG, "0.30", "1"))
        assert heads[-1]["x-pm-timestamp"] == str(now[0]) != str(presigned_at)  # signed now
        assert (fast.presigner.presigned, fast.presigner.inline) == (0, 1)
        assert _accepted(sim) == [oid]
        nursery.cancel_scope.cancel()


async def test_a_create_goes_out_with_the_pair_signed_before_it_was_called(
        sim, mock_clock, monkeypatch):
    heads = _record_heads(monkeypatch)
    signer, now = _still_signer(sim)
    signed: list[str] = []
    real_sign = Signer.sign

    def counting_sign(self: Signer, message: str) -> str:
        signed.append(message)
        return real_sign(self, message)

    monkeypatch.setattr(Signer, "sign", counting_sign)
    async with (PolymarketRestClient(_config(sim.api_url, sim.gateway_url), signer) as rest,
                trio.open_nursery() as nursery):
        fast = await _pool(nursery, rest)
        presigned_at = now[0]
        now[0] += 500  # half a second later: still fresh
        before = len(signed)
        pending = await fast.send_create(order(sim.markets[0], Intent.BUY_LONG, "0.30", "1"))
        assert len(signed) == before  # nothing signed between the call and the send
        assert heads[-1]["x-pm-timestamp"] == str(presigned_at)
        oid = await pending.result()
        assert _accepted(sim) == [oid]
        assert (fast.presigner.presigned, fast.presigner.inline) == (1, 0)
        assert signed[before:] == [f"{presigned_at + 500}POST/v1/orders"]  # the next one, ahead
        nursery.cancel_scope.cancel()
