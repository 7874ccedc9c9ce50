"""Benchmark 2: tick to order over loopback, stamped at the exchange's socket: from the local
exchange writing a book frame that creates an edge to the first bytes of the bot's order request
reaching the exchange's socket, in live mode, for polybot and for a baseline bot a user might
write instead (`bench/baseline_bot.py`), interleaved in one run.

    .venv/bin/python -m bench.tick_to_order [--events 1000] [--block 100] [--load-rate 500]

**Set-up.** This process runs the local exchange and the local OpticOdds (`running_sim`, no
background traders, no REST rate limit) over a world of 21 synthetic pre-game markets, fair value
about 0.50: one *event market* where the edges appear and 20 *load markets*. Each bot runs in its
own process and subscribes to all 21 markets:
- polybot: ``python -m polybot run``, live mode, env settings pointing at the local venues, risk
  limits raised so every event may trade (Kelly fraction 1, caps far above what the events use);
- the baseline: ``python -m bench.baseline_bot`` (asyncio, aiohttp, stdlib json, the same rule),
  with its own account, given polybot's fair values (read from polybot's ``/status``), minimum
  edge, fee coefficient, Kelly fraction and bankroll.
Only one bot runs at a time: two subscribed bots would race for the same edge. They alternate in
blocks of `--block` events per scenario (the first bot of a round alternates too), so load from
other processes on this machine hits both.

**One event.** The benchmark scripts the event market's book (`script_book`) with one level of
10 contracts 6 cents under the bot's fair value on the offer side and the rest far from any edge,
so the bot sends one IOC buy that takes exactly that level. The scripting (the matching engine's
~1 ms) is done with the frame held back; the frame is published `HOLD` (5 ms) later, so it
reaches the bots amid the load markets' frames like any other, not after a stall of the exchange. It waits for the order to arrive and
to finish, does one raw-socket ping-pong, then waits out the event spacing.

**Two scenarios.** *idle*: nothing else streams; events `--idle-spacing` apart (default 250 ms:
on this VM an idle core makes the next piece of work 2-8x slower, which this shows). *loaded*
(the headline): the 20 load markets stream no-edge 10-level books at `--load-rate` frames/s in
total while the events go on (`--loaded-spacing` apart). The load frames are pushed into the
exchange's own websocket fan-out (`WsHub` subscriptions, its queue, writer and hypercorn), not
through its matching engine, which costs ~1 ms per scripted book here and would make the
exchange, not the bot, the bottleneck. The printed spacing is the measured one.

**Stamps** (`time.perf_counter_ns`, all in this process, by wrapping at run time; nothing the
exchange does changes):
- *frame sent*: `trio.SocketStream.send_all` of the bytes carrying the event market's book,
  just before the write (socket level); and its ASGI ``websocket.send`` (ASGI level);
- *order arrived*: `trio.SocketStream.receive_some` returning bytes that start
  ``POST /v1/orders `` (socket level: before hypercorn parses anything); and the ASGI entry of
  that request (ASGI level). The read is a `recvmsg` with `SO_TIMESTAMPNS` on, so the kernel's
  own receive time of those bytes is reported too (*kernel*): the socket-level stamp still
  includes the exchange's event loop waking up to read them, which is the exchange's cost.
The socket-level figure is the headline. The ASGI-level one (what this benchmark measured
before) and the exchange's share (ASGI send → socket write, plus socket read → ASGI entry) are
reported next to it.

**Baseline of the machine.** After every event, one 1-byte ping-pong over a kept-alive loopback
TCP connection to an echo server in a child process (blocking sockets, `TCP_NODELAY`): one round
trip is the floor of tick to order (frame one way, order the other). The bot's share is tick to
order minus that RTT.

**Split (polybot).** Each polybot event is also cut at its ``order_intent`` trades-log line
(wall clock) when it writes one: frame sent → intent, intent → POST arrives. Events without a
line in between are counted as unmatched.

**Recording's cost** (issue 16): ``--against recording`` runs polybot against polybot with
``RECORD_DIR`` set (its own data directory, same account, alternating in blocks like the
baseline), and judges the loaded p50 with recording on against without (<= 1.1x).

**Verdict.** The issue's criteria, against the loaded scenario: polybot p50 <= 0.6x the
baseline's p50, p50 < 250 µs, p99 < 1 ms (judged on one run here; the issue asks for the median
of 5 runs).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import errno
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio

from bench.common import Run, percentile, print_table, spawn, spawn_bot

EDGE = Decimal("0.06")
Q = Decimal("0.01")
EDGE_QTY = 10
N_MARKETS = 21  # one event market and 20 load markets
CASH = Decimal("1000000")
MIN_EDGE = "0.02"
KELLY_FRACTION = "1"
LOAD_VARIANTS = 8
POST_ORDERS = b"POST /v1/orders "
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
HOLD = 0.005  # seconds an event's scripted book is held back before its frame is published

# the criteria for the loaded scenario
MAX_RATIO = 0.6
MAX_P50_US = 250.0
MAX_P99_US = 1000.0
MAX_RECORDING_RATIO = 1.1  # issue 16: tick to order with recording on, against without


def _kernel_stamp(ancillary: list[tuple[int, int, bytes]], offset_ns: int) -> int | None:
    """The kernel's receive time of the bytes just read (SCM_TIMESTAMPNS, wall clock), as a
    `perf_counter_ns` value (`offset_ns` = perf - wall, read together), or None."""
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
            sec, nsec = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
            return sec * 1_000_000_000 + nsec + offset_ns
    return None


class Stamps:
    """Frame-sent and order-arrived stamps at the exchange's socket and at its ASGI layer.

    `arm(slug)` before scripting an event: the next socket write carrying that market's book and
    its ASGI send are stamped once. Every request starting ``POST /v1/orders `` is stamped at
    the socket read that brought it, and at its ASGI entry."""

    def __init__(self) -> None:
        self._pattern: bytes | None = None
        self._asgi_pattern: str | None = None
        self.sock_send = self.asgi_send = self.sock_send_wall = 0
        self.sock_arrivals: list[int] = []
        self.sock_arrivals_wall: list[int] = []
        self.asgi_arrivals: list[int] = []
        self.kernel_arrivals: list[int | None] = []  # perf ns, from the kernel's receive stamp
        self.arrived = trio.Event()
        self._restore: list[Callable[[], None]] = []

    def arm(self, slug: str) -> None:
        self._pattern = b'"marketData":{"marketSlug":"' + slug.encode() + b'"'
        self._asgi_pattern = '"marketData":{"marketSlug":"' + slug + '"'
        self.sock_send = self.asgi_send = self.sock_send_wall = 0

    def install(self) -> None:
        from polybot.sim import rest as sim_rest
        from polybot.sim import ws as sim_ws

        stamps = self
        orig_send_all = trio.SocketStream.send_all
        orig_receive_some = trio.SocketStream.receive_some

        async def send_all(stream: trio.SocketStream, data: Any) -> None:
            t = time.perf_counter_ns()
            if stamps._pattern is not None and stamps._pattern in bytes(data):
                stamps.sock_send, stamps.sock_send_wall = t, time.time_ns()
                stamps._pattern = None
            await orig_send_all(stream, data)

        async def receive_some(stream: trio.SocketStream, max_bytes: int | None = None) -> bytes:
            sock = stream.socket
            try:  # SocketStream's own translation of the errors, as its receive_some does
                if not getattr(sock, "_stamped", False):  # the kernel stamps each arrival
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    sock._stamped = True  # type: ignore[attr-defined]
                data, ancillary, _, _ = await sock.recvmsg(max_bytes or 65536, 64)
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("this socket was already closed") from None
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
            if data.startswith(POST_ORDERS):
                t, wall = time.perf_counter_ns(), time.time_ns()
                stamps.sock_arrivals.append(t)
                stamps.sock_arrivals_wall.append(wall)
                stamps.kernel_arrivals.append(_kernel_stamp(ancillary, t - wall))
                stamps.arrived.set()
            return data

        orig_init = sim_ws.WsConnection.__init__

        def init(conn: Any, hub: Any, kind: str, account_id: str, send: Any, receive: Any) -> None:
            if kind == "markets":
                async def timed_send(message: dict[str, Any]) -> None:
                    pattern = stamps._asgi_pattern
                    if pattern is not None and pattern in (message.get("text") or ""):
                        stamps.asgi_send = time.perf_counter_ns()
                        stamps._asgi_pattern = None
                    await send(message)

                orig_init(conn, hub, kind, account_id, timed_send, receive)
            else:
                orig_init(conn, hub, kind, account_id, send, receive)

        orig_asgi = sim_rest.RestFace.asgi

        async def asgi(face: Any, scope: Any, receive: Any, send: Any, routes: Any) -> None:
            if scope.get("method") == "POST" and scope.get("path") == "/v1/orders":
                stamps.asgi_arrivals.append(time.perf_counter_ns())
            await orig_asgi(face, scope, receive, send, routes)

        trio.SocketStream.send_all = send_all  # type: ignore[method-assign,assignment]
        trio.SocketStream.receive_some = receive_some  # type: ignore[method-assign,assignment]
        sim_ws.WsConnection.__init__ = init  # type: ignore[method-assign,assignment]
        sim_rest.RestFace.asgi = asgi  # type: ignore[method-assign,assignment]

        def restore() -> None:
            trio.SocketStream.send_all = orig_send_all  # type: ignore[method-assign]
            trio.SocketStream.receive_some = orig_receive_some  # type: ignore[method-assign]
            sim_ws.WsConnection.__init__ = orig_init  # type: ignore[method-assign]
            sim_rest.RestFace.asgi = orig_asgi  # type: ignore[method-assign]

        self._restore.append(restore)

    def uninstall(self) -> None:
        while self._restore:
            self._restore.pop()()


# --- the machine's floor: a raw loopback ping-pong -----------------------------------------------

ECHO_SERVER = """
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    b = conn.recv(64)
    if not b:
        break
    conn.sendall(b)
"""


class Echo:
    """A child process echoing bytes on one kept-alive loopback TCP connection."""

    def __init__(self) -> None:
        self.proc = spawn([sys.executable, "-c", ECHO_SERVER], dict(os.environ), None,
                          stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ping()

    def ping(self) -> float:
        """One 1-byte round trip, µs (blocking: it stalls this loop for one RTT)."""
        t = time.perf_counter_ns()
        self.sock.sendall(b"x")
        self.sock.recv(64)
        return (time.perf_counter_ns() - t) / 1e3

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(5)


# --- the world, the load and the two bots ------------------------------------------------------


def scenario(n_games: int) -> Any:
    from bench.scale import scenario as games

    return games(n_games)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(sim: Any, slugs: list[str], data_dir: Path, health_port: int,
            mode: str = "live") -> dict[str, str]:
    from polybot.demo import demo_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PM_", "RISK_", "OPTICODDS"))}
    env.update(demo_env(sim, data_dir=data_dir, live=mode == "live"))
    env.update({
        "MARKET_SLUGS": ",".join(slugs),
        "HEALTH_PORT": str(health_port),
        "HEALTH_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "TRADE_IN_PLAY": "true",
        "STOP_BEFORE_START_MINUTES": "0",
        "RISK_KELLY_FRACTION": KELLY_FRACTION,
        "RISK_MIN_EDGE": MIN_EDGE,
        "RISK_MAX_POSITION_PER_MARKET": "100000",
        "RISK_MAX_PORTFOLIO_EXPOSURE": "1000000",
        "RISK_MAX_CORRELATED_EXPOSURE": "1000000",
        "RISK_MAX_DAILY_LOSS": "1000000",
        "RISK_MAX_DRAWDOWN_PCT": "0.99",
        "RISK_MAX_POSITIONS": "10000",
        "ORDER_RATE_PER_MINUTE": "100000",
        "ORDER_TIF": "ioc",
        "PM_RATE_LIMIT_PER_SECOND": "1000",
        "PM_PUBLIC_RATE_LIMIT_PER_SECOND": "1000",
        "STALE_FEED_SECONDS": "30",
    })
    return env


async def wait_ready(client: httpx.AsyncClient, url: str, proc: subprocess.Popen[bytes],
                     timeout: float) -> float:
    """Seconds until GET /ready answers 200 (polled every 20 ms)."""
    t0 = time.perf_counter()
    last = ""
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"bot exited with {proc.returncode} before /ready")
        with contextlib.suppress(httpx.HTTPError):
            r = await client.get(url + "/ready")
            if r.status_code == 200:
                return time.perf_counter() - t0
            last = r.text[:300]
        await trio.sleep(0.02)
    raise RuntimeError(f"bot not ready after {timeout} s: {last}")


async def stop_bot(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGTERM, then wait without blocking the loop (the exchange must answer its cancels)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            while proc.poll() is None:
                await trio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def edge_book(fair: Decimal) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
    """One 10-contract offer 6 c under `fair` (the bot buys YES); the rest far from any edge."""
    f = fair.quantize(Q)
    offers = [(f - EDGE, EDGE_QTY)]
    offers += [(f + Q * (3 + k), 200) for k in range(9) if f + Q * (3 + k) <= Decimal("0.99")]
    bids = [(f - EDGE - Q * (2 + k), 200) for k in range(10) if f - EDGE - Q * (2 + k) >= Q]
    return bids, offers


def quiet_book(fair: Decimal, k: int = 0) -> tuple[list[tuple[Decimal, int]],
                                                   list[tuple[Decimal, int]]]:
    """Ten levels a side, 3+ ticks from `fair`: decoded, stored, evaluated, never traded."""
    f = fair.quantize(Q)
    bids = [(f - Q * (3 + i), 100 + (7 * k + i) % 50) for i in range(10) if f - Q * (3 + i) >= Q]
    offers = [(f + Q * (3 + i), 100 + (5 * k + i) % 50) for i in range(10)
              if f + Q * (3 + i) <= Decimal("0.99")]
    return bids, offers


class Load:
    """No-edge books for the load markets at `rate` frames/s in total, through the exchange's
    websocket fan-out (each subscribed markets socket gets each frame)."""

    def __init__(self, sim: Any, slugs: list[str], fairs: dict[str, Decimal]) -> None:
        from polybot.sim import wire as sim_wire
        from polybot.sim.scenario import script_book

        self.sim = sim
        self.slugs = slugs
        self.rate = 0.0
        self.sent = 0
        self.payloads: dict[str, list[dict[str, Any]]] = {}
        self._timestamp = sim_wire.timestamp
        for slug in slugs:
            variants = []
            for k in range(LOAD_VARIANTS):
                script_book(sim.exchange, slug, *quiet_book(fairs[slug], k))
                variants.append(sim.server.hub.source.market_data(slug))
            self.payloads[slug] = variants

    def push(self, slug: str, k: int) -> None:
        hub = self.sim.server.hub
        payload = dict(self.payloads[slug][k % LOAD_VARIANTS])
        payload["transactTime"] = self._timestamp(self.sim.clock())
        for conn in hub.connections:
            if conn.kind == "markets":
                for sub in conn.matching("SUBSCRIPTION_TYPE_MARKET_DATA", slug):
                    conn.send_frame(sub, "marketData", payload)
        self.sent += 1

    async def run(self) -> None:
        k = 0
        next_t = trio.current_time()
        while True:
            if self.rate <= 0:
                await trio.sleep(0.01)
                next_t = trio.current_time()
                continue
            next_t += 1.0 / self.rate
            now = trio.current_time()
            if next_t - now < -0.05:
                next_t = now  # fell behind (a blocking stretch): no burst to catch up
            await trio.sleep_until(next_t)
            self.push(self.slugs[k % len(self.slugs)], k // len(self.slugs))
            k += 1


class Polybot:
    def __init__(self, sim: Any, slugs: list[str], data_dir: Path, *, name: str = "polybot",
                 record_dir: Path | None = None) -> None:
        self.name = name
        self.sim = sim
        self.slugs = slugs
        self.data_dir = data_dir
        self.record_dir = record_dir  # RECORD_DIR (issue 16: recording's cost on this path)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.account_id = sim.account_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: list[float] = []
        self.exit_codes: list[int | None] = []
        self.status: dict[str, Any] = {}

    async def start(self, client: httpx.AsyncClient) -> None:
        port = free_port()
        self.health = f"http://127.0.0.1:{port}"
        env = bot_env(self.sim, self.slugs, self.data_dir, port)
        if self.record_dir is not None:
            env["RECORD_DIR"] = str(self.record_dir)
        self.proc = spawn_bot(env, self.data_dir / f"stderr-{len(self.ready_s)}.txt")
        self.ready_s.append(await wait_ready(client, self.health, self.proc, 90.0))

    async def fairs(self, client: httpx.AsyncClient) -> dict[str, Decimal]:
        """The fair values the bot trades on, once it has one for every market (≤ 10 s)."""
        with trio.move_on_after(10.0):
            while True:
                status = (await client.get(self.health + "/status")).json()
                fairs = {row["slug"]: Decimal(str(row["fair"])) for row in status["markets"]
                         if row.get("fair") is not None}
                if all(s in fairs for s in self.slugs):
                    return fairs
                await trio.sleep(0.1)
        raise RuntimeError(f"no fair value for every market: {status['markets']}")

    async def stop(self, client: httpx.AsyncClient) -> None:
        assert self.proc is not None
        with contextlib.suppress(httpx.HTTPError):
            self.status = (await client.get(self.health + "/status")).json()
        self.exit_codes.append(await stop_bot(self.proc))


class Baseline:
    name = "baseline"

    def __init__(self, sim: Any, slugs: list[str], data_dir: Path) -> None:
        key = sim.server.create_account(CASH)
        self.sim = sim
        self.slugs = slugs
        self.key = key
        self.account_id = key.account_id
        self.data_dir = data_dir
        self.fairs: dict[str, Decimal] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: list[float] = []
        self.exit_codes: list[int | None] = []

    async def start(self, client: httpx.AsyncClient) -> None:
        del client
        ready = self.data_dir / "baseline-ready"
        ready.unlink(missing_ok=True)
        markets = {s: {"fair": str(self.fairs[s]),
                       "theta": str(self.sim.exchange.markets[s].taker_theta)} for s in self.slugs}
        cfg = {"api_url": self.sim.api_url, "ws_url": self.sim.ws_url, "key_id": self.key.key_id,
               "markets": markets, "min_edge": MIN_EDGE, "kelly_fraction": KELLY_FRACTION,
               "bankroll": str(CASH), "ready_file": str(ready)}
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(x for x in (root, os.environ.get("PYTHONPATH")) if x)
        env = dict(os.environ, BASELINE_CONFIG=json.dumps(cfg), PM_PRIVATE_KEY=self.key.secret_key,
                   PYTHONPATH=path)
        t0 = time.perf_counter()
        self.proc = spawn([sys.executable, "-m", "bench.baseline_bot"], env,
                          self.data_dir / f"baseline-stderr-{len(self.ready_s)}.txt")
        with trio.fail_after(60):
            while not ready.exists():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"baseline exited with {self.proc.returncode}")
                await trio.sleep(0.02)
        self.ready_s.append(time.perf_counter() - t0)

    async def stop(self, client: httpx.AsyncClient) -> None:
        del client
        assert self.proc is not None
        self.exit_codes.append(await stop_bot(self.proc))


# --- the events --------------------------------------------------------------------------------


class Series:
    """What one bot measured in one scenario (µs; walls in ns for the intent split)."""

    def __init__(self) -> None:
        self.socket: list[float] = []
        self.kernel: list[float] = []  # frame written → the POST's bytes in the kernel
        self.asgi: list[float] = []
        self.ws_share: list[float] = []  # ASGI websocket.send → socket write
        self.post_share: list[float] = []  # socket read of the POST → its ASGI entry
        self.rtt: list[float] = []
        self.sends: list[int] = []  # perf ns of the edge frames' socket writes (the spacing)
        self.walls: list[tuple[int, int]] = []
        self.missed = 0
        self.orders = 0  # POST /v1/orders arrivals during the measured events
        self.load_rates: list[float] = []  # load frames/s achieved, per loaded block


async def one_event(sim: Any, stamps: Stamps, echo: Echo, slug: str, fair: Decimal,
                    account_id: str, timeout: float, series: Series | None) -> None:
    from polybot.sim.scenario import script_book

    n_sock, n_asgi = len(stamps.sock_arrivals), len(stamps.asgi_arrivals)
    stamps.arrived = trio.Event()
    # The matching engine's work for the event (~1 ms) is done first, its frame held back (an
    # open batch publishes nothing); the frame leaves `HOLD` later, amid the load markets' flow.
    # Scripted and sent at once, every event frame followed a 1-3 ms stall of the exchange: the
    # bots met it after a longer quiet spell than any load frame.
    with sim.exchange.batch():
        script_book(sim.exchange, slug, *edge_book(fair))
        await trio.sleep(HOLD)
        stamps.arm(slug)
    with trio.move_on_after(timeout):
        while len(stamps.sock_arrivals) == n_sock:
            await stamps.arrived.wait()
            stamps.arrived = trio.Event()
    with trio.move_on_after(timeout):  # the ASGI entry follows the socket read
        while len(stamps.asgi_arrivals) == n_asgi and len(stamps.sock_arrivals) > n_sock:
            await trio.sleep(0.0005)
    await _settle(sim.exchange, account_id, slug, timeout)
    rtt = echo.ping()
    if series is None:
        return
    series.orders += len(stamps.sock_arrivals) - n_sock
    arrived = len(stamps.sock_arrivals) > n_sock and len(stamps.asgi_arrivals) > n_asgi
    if not arrived or not stamps.sock_send or not stamps.asgi_send:
        series.missed += 1
        return
    sock_arr, asgi_arr = stamps.sock_arrivals[n_sock], stamps.asgi_arrivals[n_asgi]
    series.socket.append((sock_arr - stamps.sock_send) / 1e3)
    kernel_arr = stamps.kernel_arrivals[n_sock]
    if kernel_arr is not None:
        series.kernel.append((kernel_arr - stamps.sock_send) / 1e3)
    series.asgi.append((asgi_arr - stamps.asgi_send) / 1e3)
    series.ws_share.append((stamps.sock_send - stamps.asgi_send) / 1e3)
    series.post_share.append((asgi_arr - sock_arr) / 1e3)
    series.rtt.append(rtt)
    series.sends.append(stamps.sock_send)
    series.walls.append((stamps.sock_send_wall, stamps.sock_arrivals_wall[n_sock]))


async def _settle(ex: Any, account: str, slug: str, timeout: float) -> None:
    """Wait until the bot has no open order in `slug` (its IOC is done)."""
    with trio.move_on_after(timeout):
        while ex.open_orders(account, [slug]):
            await trio.sleep(0.002)


async def block(sim: Any, stamps: Stamps, echo: Echo, slug: str, fair: Decimal, account_id: str,
                events: int, spacing: float, timeout: float, series: Series,
                warmup: int = 2) -> None:
    for k in range(warmup + events):
        t0 = trio.current_time()
        await one_event(sim, stamps, echo, slug, fair, account_id, timeout,
                        series if k >= warmup else None)
        await trio.sleep_until(t0 + spacing)


async def _main(p: dict[str, Any]) -> dict[str, Any]:
    from polybot.sim.harness import running_sim
    from polybot.sim.scenario import script_book

    stamps = Stamps()
    stamps.install()
    data_dir = Path(tempfile.mkdtemp(prefix="polybot-bench-t2o-"))
    echo = Echo()
    results: dict[tuple[str, str], Series] = {}
    try:
        async with running_sim(seed=11, scenario=scenario(N_MARKETS), opticodds=True,
                               run_scenario=False, rate_limit=None,
                               private_empty_error_probability=0.0, heartbeat_seconds=5.0,
                               cash=CASH) as sim:
            slugs = sorted(sim.markets)[:N_MARKETS]
            event_slug, load_slugs = slugs[0], slugs[1:]
            for slug in slugs:  # edge-free books everywhere before a bot looks
                script_book(sim.exchange, slug, *quiet_book(Decimal("0.5")))
            polybot = Polybot(sim, slugs, data_dir)
            baseline: Polybot | Baseline = (
                Baseline(sim, slugs, data_dir) if p["against"] == "baseline" else
                Polybot(sim, slugs, data_dir / "recording", name="recording",
                        record_dir=data_dir / "recording" / "feeds"))
            async with httpx.AsyncClient(timeout=5.0) as client, trio.open_nursery() as nursery:
                fairs: dict[str, Decimal] = {}
                load: Load | None = None
                blocks = -(-p["events"] // p["block"])
                for r in range(blocks):
                    n = min(p["block"], p["events"] - r * p["block"])
                    order: list[Polybot | Baseline] = [polybot, baseline]
                    if r % 2:
                        order.reverse()
                    for bot in order:
                        await bot.start(client)
                        try:
                            if not fairs:  # polybot runs first in round 0
                                assert isinstance(bot, Polybot)
                                fairs = await polybot.fairs(client)
                                if isinstance(baseline, Baseline):
                                    baseline.fairs = fairs
                                load = Load(sim, load_slugs, fairs)
                                nursery.start_soon(load.run)
                            assert load is not None
                            fair = fairs[event_slug]
                            for scen, spacing, rate in (
                                    ("idle", p["idle_spacing"], 0.0),
                                    ("loaded", p["loaded_spacing"], p["load_rate"])):
                                load.rate = rate
                                series = results.setdefault((bot.name, scen), Series())
                                sent0, t0 = load.sent, trio.current_time()
                                await block(sim, stamps, echo, event_slug, fair, bot.account_id,
                                            n, spacing, p["timeout"], series)
                                if rate:
                                    series.load_rates.append(
                                        (load.sent - sent0) / (trio.current_time() - t0))
                                load.rate = 0.0
                        finally:
                            await bot.stop(client)
                nursery.cancel_scope.cancel()
    finally:
        stamps.uninstall()
        echo.close()
    return {"series": results, "polybot": polybot, "baseline": baseline, "data_dir": data_dir,
            "event_market": event_slug, "fair": fairs.get(event_slug)}


def split_at_intent(walls: list[tuple[int, int]], slug: str, trades_log: Path) -> dict[str, Any]:
    """Split each measured polybot event at its `order_intent` trades-log line (wall clock, µs):
    frame sent → intent created, intent created → POST arrives. Events with no intent line in
    between are left out (counted in `split_unmatched`)."""
    times: list[int] = []
    if trades_log.exists():
        for line in trades_log.read_text(encoding="utf-8").splitlines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if rec.get("event") == "order_intent" and rec.get("market") == slug:
                ts = datetime.fromisoformat(rec["ts"])
                times.append(int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000)
    times.sort()
    decide: list[float] = []
    send: list[float] = []
    unmatched = 0
    for sent, arrived in walls:
        i = bisect.bisect_left(times, sent)
        if i < len(times) and times[i] <= arrived:
            decide.append((times[i] - sent) / 1e3)
            send.append((arrived - times[i]) / 1e3)
        else:
            unmatched += 1
    return {"to_intent_us": decide, "intent_to_post_us": send, "split_unmatched": unmatched}


def _row(measure: str, values: list[float]) -> dict[str, Any]:
    return {"measure": measure, "n": len(values), "p50_us": percentile(values, 50),
            "p90_us": percentile(values, 90), "p99_us": percentile(values, 99),
            "min_us": min(values) if values else None, "max_us": max(values) if values else None}


def _spacing_ms(sends: list[int]) -> float:
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(sends) if b > a]
    return percentile(gaps, 50)


def verdict(ratio: float, p50: float, p99: float) -> tuple[bool, str]:
    checks = [
        (ratio <= MAX_RATIO, f"p50 {ratio:.2f}x the baseline's (needs <= {MAX_RATIO}x)"),
        (p50 < MAX_P50_US, f"p50 {p50:,.0f} µs (needs < {MAX_P50_US:.0f})"),
        (p99 < MAX_P99_US, f"p99 {p99:,.0f} µs (needs < {MAX_P99_US:,.0f})"),
    ]
    ok = all(c for c, _ in checks)
    return ok, ("PASS" if ok else "FAIL") + ": loaded polybot " + "; ".join(
        t + ("" if c else " ✗") for c, t in checks)


def run(events: int = 1000, block: int = 100, idle_spacing: float = 0.25,
        loaded_spacing: float = 0.1, load_rate: float = 500.0, timeout: float = 2.0,
        out_dir: Path | None = None, against: str = "baseline") -> dict[str, Any]:
    """`against="recording"`: polybot against polybot with RECORD_DIR set, instead of the
    baseline bot (issue 16 asks recording to cost at most 1.1x on this path)."""
    other = against
    params = {"events": events, "block": block, "idle_spacing_s": idle_spacing,
              "loaded_spacing_s": loaded_spacing, "load_rate_per_s": load_rate,
              "markets": N_MARKETS, "edge_cents": float(EDGE * 100), "edge_qty": EDGE_QTY,
              "mode": "live", "order_tif": "ioc", "bots": ["polybot", other]}
    run_ = Run("tick_to_order" if other == "baseline" else "tick_to_order_recording", params)
    res = trio.run(_main, {"events": events, "block": block, "idle_spacing": idle_spacing,
                           "loaded_spacing": loaded_spacing, "load_rate": load_rate,
                           "timeout": timeout, "against": against})
    series: dict[tuple[str, str], Series] = res["series"]
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for scen in ("loaded", "idle"):
        rtt: list[float] = []
        for name in ("polybot", other):
            s = series.get((name, scen)) or Series()
            rtt += s.rtt
            spacing = _spacing_ms(s.sends)
            head = _row(f"{scen}: {name}: frame written → POST's first bytes read (socket)",
                        s.socket)
            rows += [
                {**head, "scenario": scen, "bot": name, "figure": "socket"},
                {**_row(f"{scen}: {name}: frame written → POST's bytes in the kernel "
                        "(SO_TIMESTAMPNS)", s.kernel), "scenario": scen, "bot": name,
                 "figure": "kernel"},
                {**_row(f"{scen}: {name}: ASGI websocket.send → ASGI entry of the POST",
                        s.asgi), "scenario": scen, "bot": name, "figure": "asgi"},
                {**_row(f"{scen}: {name}:   exchange share, ASGI send → socket write",
                        s.ws_share), "scenario": scen, "bot": name, "figure": "ws_share"},
                {**_row(f"{scen}: {name}:   exchange share, socket read → ASGI entry",
                        s.post_share), "scenario": scen, "bot": name, "figure": "post_share"},
            ]
            pre = f"{scen}_{name}"
            summary.update({
                f"{pre}_p50_us": round(head["p50_us"], 1),
                f"{pre}_p90_us": round(head["p90_us"], 1),
                f"{pre}_p99_us": round(head["p99_us"], 1),
                f"{pre}_asgi_p50_us": round(percentile(s.asgi, 50), 1),
                f"{pre}_kernel_p50_us": round(percentile(s.kernel, 50), 1) if s.kernel else None,
                f"{pre}_kernel_p99_us": round(percentile(s.kernel, 99), 1) if s.kernel else None,
                f"{pre}_exchange_share_p50_us": round(
                    percentile(s.ws_share, 50) + percentile(s.post_share, 50), 1),
                f"{pre}_measured": len(s.socket),
                f"{pre}_missed": s.missed,
                f"{pre}_orders": s.orders,
                f"{pre}_spacing_ms": round(spacing, 1),
            })
            if scen == "loaded":
                summary[f"{pre}_load_rate_per_s"] = round(percentile(s.load_rates, 50), 1)
        rtt_row = _row(f"{scen}: raw loopback TCP ping-pong (1 byte, child process)", rtt)
        rows.append({**rtt_row, "scenario": scen, "bot": None, "figure": "rtt"})
        summary[f"{scen}_rtt_p50_us"] = round(rtt_row["p50_us"], 1)
        summary[f"{scen}_rtt_p99_us"] = round(rtt_row["p99_us"], 1)
        for name in ("polybot", other):
            summary[f"{scen}_{name}_share_p50_us"] = round(
                summary[f"{scen}_{name}_p50_us"] - rtt_row["p50_us"], 1)
        summary[f"{scen}_ratio_polybot_over_{other}_p50"] = round(
            summary[f"{scen}_polybot_p50_us"] / summary[f"{scen}_{other}_p50_us"], 3)
    poly = series.get(("polybot", "loaded"), Series())
    walls = poly.walls + series.get(("polybot", "idle"), Series()).walls
    split = split_at_intent(walls, res["event_market"], res["data_dir"] / "trades.log")
    rows += [
        {**_row("polybot (both scenarios): frame written → order intent in its trades log",
                split["to_intent_us"]), "scenario": "both", "bot": "polybot", "figure": "intent"},
        {**_row("polybot (both scenarios): intent → POST's first bytes read",
                split["intent_to_post_us"]), "scenario": "both", "bot": "polybot",
         "figure": "post"},
    ]
    if other == "baseline":
        ok, line = verdict(summary["loaded_ratio_polybot_over_baseline_p50"],
                           summary["loaded_polybot_p50_us"], summary["loaded_polybot_p99_us"])
    else:
        ratio = summary["loaded_recording_p50_us"] / summary["loaded_polybot_p50_us"]
        ok = ratio <= MAX_RECORDING_RATIO
        line = (f"{'PASS' if ok else 'FAIL'}: loaded p50 with recording on {ratio:.2f}x without "
                f"(needs <= {MAX_RECORDING_RATIO}x)")
    pb, bl = res["polybot"], res["baseline"]
    summary.update({
        "pass": ok,
        "verdict": line,
        "loadavg_end": list(os.getloadavg()),
        "split_unmatched": split["split_unmatched"],
        "events": events,
        "event_market": res["event_market"],
        "fair": str(res["fair"]),
        "polybot_ready_seconds": [round(x, 2) for x in pb.ready_s],
        f"{other}_ready_seconds": [round(x, 2) for x in bl.ready_s],
        "polybot_counters": pb.status.get("extra", {}).get("counters"),
        "polybot_exit_codes": pb.exit_codes,
        f"{other}_exit_codes": bl.exit_codes,
    })
    lp = summary.get("loaded_polybot_load_rate_per_s")
    print_table(
        f"tick to order over loopback, live mode, stamped at the exchange's socket: {events} "
        f"events per bot and scenario over {N_MARKETS} subscribed markets, blocks of {block}\n"
        f"idle: events {summary['idle_polybot_spacing_ms']:.0f} / "
        f"{summary[f'idle_{other}_spacing_ms']:.0f} ms apart (polybot / {other}), nothing else "
        f"streaming; loaded: events {summary['loaded_polybot_spacing_ms']:.0f} / "
        f"{summary[f'loaded_{other}_spacing_ms']:.0f} ms apart while 20 markets stream no-edge "
        f"books at {lp} / {summary.get(f'loaded_{other}_load_rate_per_s')} frames/s; "
        f"load average at start {run_.machine['loadavg']}",
        [("measure", "measure"), ("n", "n"), ("p50_us", "p50 µs"), ("p90_us", "p90 µs"),
         ("p99_us", "p99 µs"), ("max_us", "max µs")],
        rows,
    )
    for scen in ("loaded", "idle"):
        print(f"{scen}: polybot p50 / {other} p50 = "
              f"{summary[f'{scen}_ratio_polybot_over_{other}_p50']:.2f}; bot's share "
              f"(p50 minus the raw RTT p50 {summary[f'{scen}_rtt_p50_us']:.0f} µs): polybot "
              f"{summary[f'{scen}_polybot_share_p50_us']:,.0f} µs, {other} "
              f"{summary[f'{scen}_{other}_share_p50_us']:,.0f} µs; missed "
              f"{summary[f'{scen}_polybot_missed']} / {summary[f'{scen}_{other}_missed']}")
    print(f"polybot counters {summary['polybot_counters']}; exit codes polybot "
          f"{pb.exit_codes}, {other} {bl.exit_codes}")
    print(f"load average at the end {summary['loadavg_end']}")
    print(line)
    result, _ = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1000, help="per bot and per scenario")
    ap.add_argument("--block", type=int, default=100, help="events per bot before they swap")
    ap.add_argument("--idle-spacing", type=float, default=0.25, help="seconds between events")
    ap.add_argument("--loaded-spacing", type=float, default=0.1, help="seconds between events")
    ap.add_argument("--load-rate", type=float, default=500.0, help="load frames/s in total")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an order")
    ap.add_argument("--against", choices=("baseline", "recording"), default="baseline",
                    help="the second bot: the baseline (issue 15) or polybot recording its "
                         "feeds (RECORD_DIR; issue 16's cost of recording)")
    a = ap.parse_args(argv)
    run(a.events, a.block, a.idle_spacing, a.loaded_spacing, a.load_rate, a.timeout,
        against=a.against)


if __name__ == "__main__":
    main()
