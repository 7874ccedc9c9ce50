"""Benchmark 2: tick to order over loopback — from the local exchange sending a book frame that
creates an edge to the bot's order request arriving at the exchange, in live mode.

    .venv/bin/python -m bench.tick_to_order [--events 1000] [--markets 6]

**Set-up.** This process runs the local exchange and the local OpticOdds (`running_sim`, no
background traders, no REST rate limit) and starts the bot as a subprocess,
``python -m polybot run``, in live mode with env settings pointing at them and risk limits
raised so every event may trade (Kelly fraction 1, caps far above what the events use). The
bot runs in its own process, as in production, so the exchange's work is not on its CPU thread.

**One event.** For the next market (round-robin), the benchmark scripts the book through
`polybot.sim.scenario.script_book` so one level of 10 contracts is 6 cents through the bot's
fair value — an offer under it on even passes (the bot buys YES), a bid over it on odd passes
(the bot sells the YES it bought) — with the other levels far from any edge, so the one IOC order
the bot sends takes exactly that level and nothing is left to trade. It then waits for the order
to arrive (and its fill to be reported) before the next event.

**Clocks.** Both ends are stamped in this process with `time.perf_counter_ns` (a monotonic
clock; the exchange's own `orders_accepted` times are datetimes of the scenario clock taken
after authentication and parsing, so they are not used). The stamps are taken by wrapping two
entry points of the local exchange at run time, which changes nothing it does:
- *send*: the ASGI ``websocket.send`` of a markets-socket frame carrying `marketData` for the
  event's market, stamped just before the frame is handed to the server (hypercorn) to write;
- *arrival*: the exchange's REST ASGI entry for ``POST /v1/orders``, stamped when hypercorn
  hands the parsed request head to the app (before the body is read, authentication or
  matching).

**Split.** Each event is also cut at the bot's own ``order_intent`` line in its trades log
(written when the gate's request becomes a tracked order, before the intent is committed to
SQLite): frame sent → intent (delivery, decode, book, signal, gate) and intent → POST arrival
(durable intent commit, Ed25519 signing, the HTTP request). Those two use the wall clock
(`time.time_ns` here, the bot's `LiveClock.now()`; one kernel clock on one machine).

**Loopback floor.** After each event this process does one HTTP GET round trip to the local
exchange's admin listener (same hypercorn stack, trivial handler) over a kept-alive httpx
connection, and one websocket ping → pong on an authenticated markets socket (trio-websocket
client, hypercorn answers the ping); both are reported next to tick-to-order. The client side of
these runs in the exchange's process and event loop, so they include one Python client's
overhead, as the bot's path does.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio

from bench.common import Run, percentile, print_table, spawn_bot

EDGE = Decimal("0.06")
Q = Decimal("0.01")
EDGE_QTY = 10


class Stamps:
    """Send and arrival stamps recorded by the wrapped exchange entry points."""

    def __init__(self) -> None:
        self.sends: dict[str, list[int]] = {}  # slug -> perf_counter_ns of marketData sends
        self.arrivals: list[int] = []  # POST /v1/orders arrivals
        # wall-clock twins (time.time_ns) to line the bot's trades-log timestamps up with
        self.sends_wall: dict[str, list[int]] = {}
        self.arrivals_wall: list[int] = []
        self.arrived = trio.Event()

    def install(self) -> None:
        from polybot.sim import rest as sim_rest
        from polybot.sim import ws as sim_ws

        stamps = self
        orig_init = sim_ws.WsConnection.__init__

        def init(conn: Any, hub: Any, kind: str, account_id: str, send: Any, receive: Any) -> None:
            if kind == "markets":
                async def timed_send(message: dict[str, Any]) -> None:
                    text = message.get("text")
                    if text is not None and text.startswith('{"requestId"') and '"marketData"' in text:
                        slug = orjson.loads(text)["marketData"].get("marketSlug", "")
                        stamps.sends.setdefault(slug, []).append(time.perf_counter_ns())
                        stamps.sends_wall.setdefault(slug, []).append(time.time_ns())
                    await send(message)

                orig_init(conn, hub, kind, account_id, timed_send, receive)
            else:
                orig_init(conn, hub, kind, account_id, send, receive)

        orig_asgi = sim_rest.RestFace.asgi

        async def asgi(face: Any, scope: Any, receive: Any, send: Any, routes: Any) -> None:
            if scope.get("method") == "POST" and scope.get("path") == "/v1/orders":
                stamps.arrivals.append(time.perf_counter_ns())
                stamps.arrivals_wall.append(time.time_ns())
                stamps.arrived.set()
            await orig_asgi(face, scope, receive, send, routes)

        sim_ws.WsConnection.__init__ = init  # type: ignore[method-assign,assignment]
        sim_rest.RestFace.asgi = asgi  # type: ignore[method-assign,assignment]
        self._restore = (sim_ws, orig_init, sim_rest, orig_asgi)

    def uninstall(self) -> None:
        sim_ws, orig_init, sim_rest, orig_asgi = self._restore
        sim_ws.WsConnection.__init__ = orig_init
        sim_rest.RestFace.asgi = orig_asgi


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
        "RISK_KELLY_FRACTION": "1",
        "RISK_MIN_EDGE": "0.02",
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


def edge_book(fair: Decimal, buy: bool) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
    """One 10-contract level 6 c through `fair`; the rest of the book far from any edge."""
    if buy:  # an offer under fair: the bot buys YES
        offers = [((fair - EDGE).quantize(Q), EDGE_QTY)]
        offers += [(fair + Q * (3 + k), 200) for k in range(9) if fair + Q * (3 + k) <= Decimal("0.99")]
        bids = [(fair - EDGE - Q * (2 + k), 200) for k in range(10) if fair - EDGE - Q * (2 + k) >= Q]
    else:  # a bid over fair: the bot sells what it bought
        bids = [((fair + EDGE).quantize(Q), EDGE_QTY)]
        bids += [(fair - Q * (3 + k), 200) for k in range(9) if fair - Q * (3 + k) >= Q]
        offers = [(fair + EDGE + Q * (2 + k), 200) for k in range(10)
                  if fair + EDGE + Q * (2 + k) <= Decimal("0.99")]
    return bids, offers


async def _main(events: int, n_markets: int, timeout: float) -> dict[str, Any]:
    from polybot.sim.harness import running_sim
    from polybot.sim.scenario import script_book

    stamps = Stamps()
    stamps.install()
    data_dir = Path(tempfile.mkdtemp(prefix="polybot-bench-t2o-"))
    try:
        async with running_sim(seed=3, opticodds=True, run_scenario=False, rate_limit=None,
                               private_empty_error_probability=0.0, heartbeat_seconds=5.0,
                               cash=Decimal("1000000")) as sim:
            ex = sim.exchange
            port = free_port()
            env = bot_env(sim, sim.markets, data_dir, port)
            # quiet, edge-free books everywhere before the bot looks (fair unknown yet: wide)
            for slug in sim.markets:
                script_book(ex, slug, [(Decimal("0.05"), 100)], [(Decimal("0.95"), 100)])
            proc = spawn_bot(env, data_dir / "stderr.txt")
            health = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    ready_s = await wait_ready(client, health, proc, 90.0)
                    status = (await client.get(health + "/status")).json()
                    fairs = {row["slug"]: Decimal(str(row["fair"])) for row in status["markets"]
                             if row.get("fair") is not None}
                    usable = [s for s in sim.markets
                              if s in fairs and Decimal("0.12") <= fairs[s] <= Decimal("0.88")]
                    usable = usable[:n_markets]
                    if not usable:
                        raise RuntimeError(f"no market with a usable fair value: {status['markets']}")
                    measured = await _events(sim, client, stamps, usable, fairs, events, timeout)
                    final = (await client.get(health + "/status")).json()
                    metrics = (await client.get(health + "/metrics")).text
            finally:
                code = await stop_bot(proc)
    finally:
        stamps.uninstall()
    measured.update(split_at_intent(measured.pop("walls"), data_dir / "trades.log"))
    measured.update({"ready_seconds": ready_s, "markets_used": usable, "bot_exit_code": code,
                     "decision_latency_mean_us": _histogram_mean(
                         metrics, "polybot_decision_latency_seconds") * 1e6,
                     "bot_counters": final.get("extra", {}).get("counters"),
                     "bot_rejections": final.get("extra", {}).get("rejections"),
                     "data_dir": str(data_dir)})
    return measured


def split_at_intent(walls: list[tuple[str, int, int]], trades_log: Path) -> dict[str, Any]:
    """Split each measured event at the bot's `order_intent` trades-log line (wall clock, µs):
    frame sent → intent created (receive, decode, book, signal, gate) and intent created → POST
    arrives (durable intent commit, sign, HTTP). Events with no intent line in between are
    left out of the split (counted in `split_unmatched`)."""
    intents: dict[str, list[int]] = {}
    if trades_log.exists():
        for line in trades_log.read_text(encoding="utf-8").splitlines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if rec.get("event") == "order_intent":
                ts = datetime.fromisoformat(rec["ts"])
                ns = int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000
                intents.setdefault(rec.get("market", ""), []).append(ns)
    decide: list[float] = []
    send: list[float] = []
    unmatched = 0
    for slug, sent, arrived in walls:
        times = sorted(intents.get(slug, ()))
        i = bisect.bisect_left(times, sent)
        if i < len(times) and times[i] <= arrived:
            decide.append((times[i] - sent) / 1e3)
            send.append((arrived - times[i]) / 1e3)
        else:
            unmatched += 1
    return {"to_intent_us": decide, "intent_to_post_us": send, "split_unmatched": unmatched}


def _histogram_mean(text: str, name: str) -> float:
    """Mean of a Prometheus histogram from its exposition text (NaN when empty)."""
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(name + "_sum"):
            total = float(line.split()[-1])
        elif line.startswith(name + "_count"):
            count = float(line.split()[-1])
    return total / count if count else float("nan")


async def _events(sim: Any, client: httpx.AsyncClient, stamps: Stamps, slugs: list[str],
                  fairs: dict[str, Decimal], events: int, timeout: float) -> dict[str, Any]:
    from polybot.sim.scenario import script_book

    ex = sim.exchange
    admin = sim.admin_url + "/admin/faults"
    latencies: list[float] = []
    rtt_keepalive: list[float] = []
    rtt_ping: list[float] = []
    walls: list[tuple[str, int, int]] = []  # (slug, send, arrival) wall ns of measured events
    missed = 0
    # neutral books at the fair value first, and a moment for the bot to see them
    for slug in slugs:
        script_book(ex, slug, [(fairs[slug] - Q * 4, 100)], [(fairs[slug] + Q * 4, 100)])
    await trio.sleep(0.5)
    from trio_websocket import open_websocket_url

    from polybot.polymarket.auth import Signer

    ws_url = sim.ws_url + "/v1/ws/markets"
    headers = [(k.encode(), v.encode())
               for k, v in Signer(sim.key_id, sim.secret_key).ws_headers(ws_url)]
    async with httpx.AsyncClient(timeout=5.0) as rtt_client, \
            open_websocket_url(ws_url, extra_headers=headers) as ws, \
            trio.open_nursery() as nursery:
        # the exchange sends heartbeats on this socket: read them, or a full message queue
        # stops trio-websocket from reading the pongs
        nursery.start_soon(_drain, ws)
        await rtt_client.get(admin)  # open the kept-alive connection
        await ws.ping()
        for k in range(events):
            slug = slugs[k % len(slugs)]
            buy = (k // len(slugs)) % 2 == 0
            n_sends = len(stamps.sends.get(slug, ()))
            n_arrivals = len(stamps.arrivals)
            stamps.arrived = trio.Event()
            bids, offers = edge_book(fairs[slug], buy)
            script_book(ex, slug, bids, offers)
            with trio.move_on_after(timeout):
                while len(stamps.arrivals) == n_arrivals:
                    await stamps.arrived.wait()
                    stamps.arrived = trio.Event()
            sends = stamps.sends.get(slug, [])[n_sends:]
            if len(stamps.arrivals) == n_arrivals or not sends:
                missed += 1
            else:
                latencies.append((stamps.arrivals[n_arrivals] - sends[0]) / 1e3)
                walls.append((slug, stamps.sends_wall[slug][n_sends],
                              stamps.arrivals_wall[n_arrivals]))
            # let the fill reach the bot (its position moves) before the next event here
            await _settle(ex, sim.account_id, slug, timeout=2.0)
            t = time.perf_counter_ns()
            await rtt_client.get(admin)
            rtt_keepalive.append((time.perf_counter_ns() - t) / 1e3)
            t = time.perf_counter_ns()
            await ws.ping()
            rtt_ping.append((time.perf_counter_ns() - t) / 1e3)
        nursery.cancel_scope.cancel()
    return {"tick_to_order_us": latencies, "rtt_keepalive_us": rtt_keepalive,
            "rtt_ping_us": rtt_ping, "missed": missed, "walls": walls}


async def _drain(ws: Any) -> None:
    while True:
        await ws.get_message()


async def _settle(ex: Any, account: str, slug: str, timeout: float) -> None:
    """Wait until the bot has no open order in `slug` (its IOC is done) plus a short grace."""
    with trio.move_on_after(timeout):
        while ex.open_orders(account, [slug]):
            await trio.sleep(0.002)
    await trio.sleep(0.03)


def run(events: int = 1000, markets: int = 6, timeout: float = 2.0,
        out_dir: Path | None = None) -> dict[str, Any]:
    params = {"events": events, "markets": markets, "edge_cents": float(EDGE * 100),
              "edge_qty": EDGE_QTY, "mode": "live", "order_tif": "ioc"}
    run_ = Run("tick_to_order", params)
    res = trio.run(_main, events, markets, timeout)

    def row(name: str, values: list[float]) -> dict[str, Any]:
        return {"measure": name, "n": len(values), "p50_us": percentile(values, 50),
                "p90_us": percentile(values, 90), "p99_us": percentile(values, 99),
                "max_us": max(values) if values else None}

    rows = [
        row("tick to order: book frame sent → POST /v1/orders arrives", res["tick_to_order_us"]),
        row("  of which frame sent → order intent created in the bot", res["to_intent_us"]),
        row("  of which intent created → POST arrives (commit, sign, send)",
            res["intent_to_post_us"]),
        row("loopback HTTP GET round trip, kept-alive connection", res["rtt_keepalive_us"]),
        row("loopback websocket ping → pong (markets socket)", res["rtt_ping_us"]),
    ]
    t2o_p50 = rows[0]["p50_us"]
    summary = {
        "tick_to_order_p50_us": round(t2o_p50, 1),
        "tick_to_order_p99_us": round(rows[0]["p99_us"], 1),
        "rtt_keepalive_p50_us": round(rows[3]["p50_us"], 1),
        "rtt_keepalive_p99_us": round(rows[3]["p99_us"], 1),
        "rtt_ping_p50_us": round(rows[4]["p50_us"], 1),
        "rtt_ping_p99_us": round(rows[4]["p99_us"], 1),
        "ratio_tick_to_order_over_rtt_p50": round(t2o_p50 / rows[3]["p50_us"], 2),
        "ratio_tick_to_order_over_ping_p50": round(t2o_p50 / rows[4]["p50_us"], 2),
        "to_intent_p50_us": round(rows[1]["p50_us"], 1),
        "intent_to_post_p50_us": round(rows[2]["p50_us"], 1),
        "split_unmatched": res["split_unmatched"],
        "events": events,
        "measured": len(res["tick_to_order_us"]),
        "missed": res["missed"],
        "bot_decision_latency_mean_us": round(res["decision_latency_mean_us"], 1),
        "bot_ready_seconds": round(res["ready_seconds"], 2),
        "markets_used": res["markets_used"],
        "bot_counters": res["bot_counters"],
        "bot_rejections": res["bot_rejections"],
        "bot_exit_code": res["bot_exit_code"],
    }
    print_table(
        f"tick to order over loopback, live mode: {events} events over "
        f"{len(res['markets_used'])} markets (bot ready in {res['ready_seconds']:.2f} s)",
        [("measure", "measure"), ("n", "n"), ("p50_us", "p50 µs"), ("p90_us", "p90 µs"),
         ("p99_us", "p99 µs"), ("max_us", "max µs")],
        rows,
    )
    print(f"ratio tick-to-order p50 / kept-alive HTTP GET RTT p50: "
          f"{summary['ratio_tick_to_order_over_rtt_p50']}; / websocket ping RTT p50: "
          f"{summary['ratio_tick_to_order_over_ping_p50']}")
    print(f"the bot's own decision latency (frame received → executor.submit called), mean: "
          f"{res['decision_latency_mean_us']:.0f} µs (polybot_decision_latency_seconds)")
    print(f"missed events (no order within {timeout} s): {res['missed']}; bot counters "
          f"{res['bot_counters']}; exit code {res['bot_exit_code']}")
    result, _ = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--markets", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an order")
    a = ap.parse_args(argv)
    run(a.events, a.markets, a.timeout)


if __name__ == "__main__":
    main()
