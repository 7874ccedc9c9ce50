"""Benchmark 3: scale — the bot process's resident memory and CPU at idle and under 1,000 book
frames/s with 10, 100 and 500 subscribed markets, and its time from start to `/ready`.

    .venv/bin/python -m bench.scale [--markets 10,100,500] [--rate 1000] [--idle 8] [--load 12]

**Subject.** ``python -m polybot run`` as a subprocess in paper mode, configured by env vars like
any deployment. Its REST calls (market metadata) and its odds (OpticOdds REST + stream) go to
the local exchange and local OpticOdds started in this process, built for each size from a
scenario of exactly that many synthetic games (one market each, no background traders, so the
books sit idle; the local OpticOdds keeps streaming its odds, which the bot's odds feed — one
stream per sport and league — receives for every game of the league). Its **markets
websocket** goes to `ReplaySource` below instead: a minimal server that speaks just enough of
the markets-socket protocol — accept the upgrade (any headers), read ``subscribe`` requests,
answer each MARKET_DATA subscription with one full book per market (as the gateway does), send
``{"heartbeat": {}}`` every 5 s, and, while loaded, replay pre-encoded 10-level book frames
round-robin over the subscribed markets at the target rate. Encoding happens before the run, so
the numbers measure the bot, not a simulator.

The books straddle each game's fair value (0.50) 3 ticks either side, so every frame is decoded,
stored, marked and evaluated but none carries an edge: trading costs are case 1's business.

**Sampling.** Every 0.5 s from ``/proc/<pid>/status`` (VmRSS) and ``/proc/<pid>/stat``
(utime + stime), so CPU is the bot process's own, in % of one core. Idle = after `/ready`, no
frames but heartbeats; load = the replayed rate. The frames the bot counted
(`polybot_stream_frames_total{stream="markets"}` from its /metrics) are compared with the frames sent,
to show it kept up. Time to ready runs from `Popen` to the first 200 from ``/ready`` (interpreter
start and imports, N market-metadata calls, connecting, subscribing, odds matching and the odds
feed going live).

**Start** (``--start``, issue 15's criterion: start to ready < 3 s with 500 markets): the bot
configured as an operator would, by ``MARKET_LEAGUES`` alone (no ``MARKET_SLUGS``), against the
whole local exchange: its REST gateway *with its public per-IP rate limit on* (20/s, the bot at
its default budgets), its own markets websocket, and the local OpticOdds. The world holds
``--markets`` games split evenly over ``--leagues``. Timed from ``Popen`` to the first 200 from
``/ready``; at that moment ``/status`` must already list every market, matched to its fixture
(a 200 over a half-discovered universe would not count: ``ready_all`` is then the first 200
with every market listed and matched). Paper and live mode (``--mode paper,live``), each
``--runs`` times; the median is the figure. The bot's own CPU time (user + system) until that
first 200 is given too: on a shared machine it varies far less than the wall time. polybot's
bytecode is compiled first, as the image and the EC2 setup do at install (``--no-compile``
measures the tree as found: with PYTHONDONTWRITEBYTECODE and no bytecode, every start compiles
polybot from source).

    .venv/bin/python -m bench.scale --start [--markets 500] [--leagues nba,nhl] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from bench.common import Run, print_table, spawn_bot
from bench.hot_path import book_levels, encode_frame
from bench.tick_to_order import bot_env, free_port, stop_bot, wait_ready
from polybot.sim.rest import RateLimiter

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
RID = "__RID__"
VARIANTS = 8  # pre-encoded books per market


def scenario(n_games: int) -> Any:
    """`n_games` synthetic games with unique teams, all pre-game, fair value 0.50."""
    from polybot.sim.scenario import GameSpec, ScenarioSpec, TeamSpec, Timing

    games = tuple(
        GameSpec(
            league="nba",
            sport="basketball",
            home=TeamSpec(f"Home Team {i:03d}", f"H{i:03d}"),
            away=TeamSpec(f"Away Team {i:03d}", f"A{i:03d}"),
            start_offset_seconds=6 * 3600 + i,
            length_seconds=3 * 3600,
            true_prob=Decimal("0.5"),
        )
        for i in range(n_games)
    )
    return ScenarioSpec(seed=11, games=games, timing=Timing(respawn=False))


def encode_variants(slugs: list[str], fair: Decimal = Decimal("0.5")) -> dict[str, list[str]]:
    """Per market, VARIANTS book frames with a placeholder requestId (no edge: ±3 ticks)."""
    rng = random.Random(5)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    out: dict[str, list[str]] = {}
    for slug in slugs:
        frames = []
        for v in range(VARIANTS):
            bids, offers = book_levels(fair, rng, edge=False)
            bids = [(p - Decimal("0.02"), q) for p, q in bids]  # spread widened to ±3-4 ticks
            offers = [(p + Decimal("0.02"), q) for p, q in offers]
            frames.append(encode_frame(slug, bids, offers, t0 + timedelta(seconds=v), RID))
        out[slug] = frames
    return out


class ReplaySource:
    """A markets-socket stand-in replaying pre-encoded frames at `rate` per second when loaded."""

    def __init__(self, variants: dict[str, list[str]]) -> None:
        self.variants = variants
        self.rate = 0.0
        self.sent = 0
        self.connections = 0
        self.subscribed: list[tuple[str, str]] = []  # (requestId, slug) of MARKET_DATA subs

    async def handler(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        self.connections += 1
        subs: list[tuple[str, str]] = []
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, ws, subs)
                nursery.start_soon(self._heartbeats, ws)
                await self._writer(ws, subs)
        except* ConnectionClosed:
            pass  # the bot went away (stopped, or reconnecting)

    async def _reader(self, ws: Any, subs: list[tuple[str, str]]) -> None:
        while True:
            msg = orjson.loads(await ws.get_message())
            sub = msg.get("subscribe") or {}
            if sub.get("subscriptionType") != "SUBSCRIPTION_TYPE_MARKET_DATA":
                continue
            rid = sub["requestId"]
            for slug in sub.get("marketSlugs", []):
                if slug in self.variants:
                    subs.append((rid, slug))
                    await ws.send_message(self.variants[slug][0].replace(RID, rid))
            self.subscribed = list(subs)

    async def _heartbeats(self, ws: Any) -> None:
        while True:
            await trio.sleep(5.0)
            await ws.send_message('{"heartbeat":{}}')

    async def _writer(self, ws: Any, subs: list[tuple[str, str]]) -> None:
        i = 0
        t0 = trio.current_time()
        sent_at_t0 = 0
        rate = 0.0
        while True:
            await trio.sleep(0.002)
            if self.rate != rate:  # a new phase: restart the pacing clock
                rate, t0, sent_at_t0 = self.rate, trio.current_time(), 0
            if rate <= 0 or not subs:
                continue
            due = int((trio.current_time() - t0) * rate) - sent_at_t0
            for _ in range(due):
                rid, slug = subs[i % len(subs)]
                frames = self.variants[slug]
                await ws.send_message(frames[(i // len(subs)) % len(frames)].replace(RID, rid))
                i += 1
                sent_at_t0 += 1
                self.sent += 1


def proc_sample(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds so far) of a process, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
            break
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return rss_kb / 1024, cpu


async def sample_phase(pid: int, seconds: float, interval: float = 0.5) -> dict[str, float]:
    rss: list[float] = []
    _, cpu0 = proc_sample(pid)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await trio.sleep(interval)
        r, _ = proc_sample(pid)
        rss.append(r)
    _, cpu1 = proc_sample(pid)
    wall = time.perf_counter() - t0
    return {"rss_mean_mib": sum(rss) / len(rss), "rss_max_mib": max(rss),
            "cpu_pct": 100.0 * (cpu1 - cpu0) / wall, "seconds": wall}


def frames_counted(metrics: str) -> int:
    for line in metrics.splitlines():
        if line.startswith('polybot_stream_frames_total{stream="markets"}'):
            return int(float(line.split()[-1]))
    return 0


async def one_size(sim: Any, source: ReplaySource, ws_url: str, slugs: list[str], rate: float,
                   idle: float, load: float) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"polybot-bench-scale{len(slugs)}-"))
    port = free_port()
    env = bot_env(sim, slugs, data_dir, port, mode="paper")
    env.update({"PM_WS_URL": ws_url, "RISK_MIN_EDGE": "0.02", "RISK_KELLY_FRACTION": "0.25"})
    source.rate = 0.0
    proc = spawn_bot(env, data_dir / "stderr.txt")
    health = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            ready = await wait_ready(client, health, proc, 120.0)  # timed from just after Popen
            await trio.sleep(1.0)  # the first-book burst and first metrics pass settle
            idle_s = await sample_phase(proc.pid, idle)
            counted0 = frames_counted((await client.get(health + "/metrics")).text)
            sent0 = source.sent
            source.rate = rate
            load_s = await sample_phase(proc.pid, load)
            source.rate = 0.0
            sent = source.sent - sent0
            await trio.sleep(1.5)  # the bot's metrics pass runs every second
            counted = frames_counted((await client.get(health + "/metrics")).text) - counted0
            status = (await client.get(health + "/status")).json()
    finally:
        code = await stop_bot(proc)
    live = sum(1 for row in status["markets"] if row.get("state") == "trusted")
    return {
        "markets": len(slugs),
        "ready_s": ready,
        "idle_rss_mib": idle_s["rss_mean_mib"],
        "idle_cpu_pct": idle_s["cpu_pct"],
        "load_rss_mib": load_s["rss_mean_mib"],
        "load_rss_max_mib": load_s["rss_max_mib"],
        "load_cpu_pct": load_s["cpu_pct"],
        "sent_per_s": sent / load_s["seconds"],
        "bot_frames": counted,
        "frames_sent": sent,
        "trusted_books": live,
        "signals": status.get("extra", {}).get("counters", {}).get("signals"),
        "exit_code": code,
    }


async def _main(sizes: list[int], rate: float, idle: float, load: float) -> list[dict[str, Any]]:
    from polybot.sim.harness import running_sim

    rows = []
    for size in sizes:
        # a world of exactly `size` games: the odds stream (one per sport and league) then
        # carries the fixtures of the subscribed markets and no others
        async with running_sim(seed=11, scenario=scenario(size), opticodds=True,
                               run_scenario=False, rate_limit=None, heartbeat_seconds=5.0) as sim:
            slugs = sorted(sim.markets)[:size]
            source = ReplaySource(encode_variants(slugs))
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve_websocket, source.handler, "127.0.0.1", 0, None)
                ws_url = f"ws://127.0.0.1:{server.port}"
                rows.append(await one_size(sim, source, ws_url, slugs, rate, idle, load))
                nursery.cancel_scope.cancel()
    return rows


def run(sizes: tuple[int, ...] = (10, 100, 500), rate: float = 1000.0, idle: float = 8.0,
        load: float = 12.0, out_dir: Path | None = None) -> dict[str, Any]:
    params = {"markets": list(sizes), "rate_per_s": rate, "idle_seconds": idle,
              "load_seconds": load, "mode": "paper", "levels_per_side": 10}
    run_ = Run("scale", params)
    rows = trio.run(_main, list(sizes), rate, idle, load)
    print_table(
        f"scale: polybot process (paper mode) at idle and under {rate:,.0f} book frames/s",
        [("markets", "markets"), ("ready_s", "start→/ready s"), ("idle_rss_mib", "idle RSS MiB"),
         ("idle_cpu_pct", "idle CPU %"), ("load_rss_mib", "load RSS MiB"),
         ("load_rss_max_mib", "max"), ("load_cpu_pct", "load CPU %"),
         ("sent_per_s", "sent/s"), ("frames_sent", "sent"), ("bot_frames", "bot counted"),
         ("trusted_books", "books live")],
        rows,
        digits=1,
    )
    summary: dict[str, Any] = {}
    for r in rows:
        n = r["markets"]
        summary[f"m{n}_ready_s"] = round(r["ready_s"], 2)
        summary[f"m{n}_idle_rss_mib"] = round(r["idle_rss_mib"], 1)
        summary[f"m{n}_idle_cpu_pct"] = round(r["idle_cpu_pct"], 1)
        summary[f"m{n}_load_rss_mib"] = round(r["load_rss_mib"], 1)
        summary[f"m{n}_load_cpu_pct"] = round(r["load_cpu_pct"], 1)
        summary[f"m{n}_kept_up"] = r["bot_frames"] >= r["frames_sent"]
    # CPU cost of one frame, from the largest size's load phase (one core = 100 %)
    big = rows[-1]
    if big["sent_per_s"]:
        summary["cpu_us_per_frame"] = round(
            (big["load_cpu_pct"] - big["idle_cpu_pct"]) / 100 / big["sent_per_s"] * 1e6, 1)
    result, _ = run_.write(rows, summary, out_dir)
    return result


# --- start: process start -> first 200 on /ready, markets discovered by league ---------------


class CountingLimiter(RateLimiter):
    """The exchange's rate limiter, counting what it let through and what it refused (429)."""

    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.allowed = 0
        self.refused = 0

    def allow(self, bucket: str) -> bool:
        ok = super().allow(bucket)
        if ok:
            self.allowed += 1
        else:
            self.refused += 1
        return ok


def league_scenario(n_games: int, leagues: tuple[str, ...], *, start_offset: int = 6 * 3600,
                    true_prob: Callable[[int], Decimal] = lambda _i: Decimal("0.5"),
                    seed: int = 11, timing: Any = None, liquidity: Any = None) -> Any:
    """`n_games` synthetic games with unique teams, dealt round-robin over `leagues`, all
    pre-game (starting `start_offset` s from now, one a second), game i's fair value
    `true_prob(i)` (0.50 by default). `timing` defaults to no respawning, `liquidity` to the
    scenario's own."""
    from polybot.sim.scenario import LEAGUES, GameSpec, ScenarioSpec, TeamSpec, Timing

    games = tuple(
        GameSpec(
            league=(league := leagues[i % len(leagues)]),
            sport=LEAGUES[league][0],
            home=TeamSpec(f"Home Team {i:03d}", f"H{i:03d}"),
            away=TeamSpec(f"Away Team {i:03d}", f"A{i:03d}"),
            start_offset_seconds=start_offset + i,
            length_seconds=3 * 3600,
            true_prob=true_prob(i),
        )
        for i in range(n_games)
    )
    extra = {} if liquidity is None else {"liquidity": liquidity}
    return ScenarioSpec(seed=seed, games=games, timing=timing or Timing(respawn=False), **extra)


def start_env(sim: Any, leagues: tuple[str, ...], n_markets: int, data_dir: Path, port: int,
              mode: str) -> dict[str, str]:
    """The bot as an operator configures discovery: leagues, no slugs, default rate budgets."""
    env = bot_env(sim, [], data_dir, port, mode=mode)
    for key in ("MARKET_SLUGS", "PM_RATE_LIMIT_PER_SECOND", "PM_PUBLIC_RATE_LIMIT_PER_SECOND"):
        env.pop(key, None)
    env.update({
        "MARKET_LEAGUES": ",".join(leagues),
        "DISCOVERY_HORIZON_HOURS": "12",
        "DISCOVERY_INTERVAL_SECONDS": "300",
        "MAX_MARKETS": str(max(500, n_markets)),
        "RISK_MAX_POSITIONS": str(max(10000, n_markets)),
    })
    return env


# /ready polled this often: each poll costs the bot a request's CPU (~1-2 ms through hypercorn),
# so polling every 20 ms took ~10 % of its CPU during a start; the figure's resolution is this
POLL_SECONDS = 0.05


def _market_rows(status: dict[str, Any]) -> tuple[int, int]:
    """(markets listed, markets matched to a fixture) in a /status answer."""
    rows = status.get("markets", [])
    return len(rows), sum(1 for row in rows if row.get("fixture"))


async def one_start(sim: Any, leagues: tuple[str, ...], n_markets: int, mode: str,
                    timeout: float = 120.0) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"polybot-bench-start{n_markets}-"))
    port = free_port()
    env = start_env(sim, leagues, n_markets, data_dir, port, mode)
    counter = sim.server.rest.limiter
    counted0 = (counter.allowed, counter.refused)
    odds0 = (sim.opticodds_control.rest_requests, sim.opticodds_control.stream_connects)
    t0 = time.perf_counter()
    proc = spawn_bot(env, data_dir / "stderr.txt")
    health = f"http://127.0.0.1:{port}"
    first: float | None = None
    first_listed = first_matched = 0
    first_cpu = all_cpu = 0.0
    ready_all: float | None = None
    last = ""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.perf_counter() - t0 < timeout:
                if proc.poll() is not None:
                    raise RuntimeError(f"bot exited with {proc.returncode} before /ready "
                                       f"(stderr: {data_dir / 'stderr.txt'})")
                try:
                    r = await client.get(health + "/ready")
                except httpx.HTTPError:
                    await trio.sleep(POLL_SECONDS)
                    continue
                if r.status_code != 200:
                    last = r.text[:300]
                    await trio.sleep(POLL_SECONDS)
                    continue
                at = time.perf_counter() - t0
                cpu = proc_sample(proc.pid)[1]  # before /status, which costs the bot CPU too
                listed, matched = _market_rows((await client.get(health + "/status")).json())
                if first is None:
                    first, first_listed, first_matched, first_cpu = at, listed, matched, cpu
                if listed >= n_markets and matched >= n_markets:
                    ready_all, all_cpu = at, cpu
                    break
                await trio.sleep(POLL_SECONDS)
            else:
                raise RuntimeError(f"not ready with {n_markets} markets after {timeout} s: {last}")
            status = (await client.get(health + "/status")).json()
    finally:
        code = await stop_bot(proc)
    disc = status.get("extra", {}).get("discovery", {})
    return {
        "mode": mode,
        "markets": n_markets,
        "leagues": ",".join(leagues),
        "first_ready_s": first,
        "cpu_to_ready_s": first_cpu,  # the bot's own CPU (user + system) until then
        "listed_at_first": first_listed,
        "matched_at_first": first_matched,
        "ready_all_s": ready_all,
        "cpu_to_all_s": all_cpu,
        "partner_lookups": disc.get("partner_lookups"),
        "exchange_calls": counter.allowed - counted0[0],  # REST calls the exchange served...
        "http_429": counter.refused - counted0[1],  # ...and refused over its rate limit
        "odds_calls": sim.opticodds_control.rest_requests - odds0[0],  # OpticOdds REST calls
        "odds_streams": sim.opticodds_control.stream_connects - odds0[1],
        "exit_code": code,
    }


async def _start_main(n_markets: int, leagues: tuple[str, ...], modes: list[str],
                      runs: int) -> list[dict[str, Any]]:
    from polybot.sim.harness import running_sim

    rows: list[dict[str, Any]] = []
    # the local exchange with its public per-IP rate limit (20/s), its own markets websocket and
    # the local OpticOdds; no background traders, so the books sit empty and the CPU is the bot's
    async with running_sim(seed=11, scenario=league_scenario(n_markets, leagues), opticodds=True,
                           run_scenario=False, heartbeat_seconds=5.0) as sim:
        assert sim.server.rest.limiter.limit is not None
        sim.server.rest.limiter = CountingLimiter(sim.server.rest.limiter.limit)
        for mode in modes:
            for i in range(runs):
                if rows:
                    await trio.sleep(1.5)  # the per-IP window of the last run empties
                try:
                    row = await one_start(sim, leagues, n_markets, mode)
                except RuntimeError as exc:  # e.g. its health port was taken meanwhile: again
                    print(f"run {i + 1} ({mode}) failed, repeated: {exc}")
                    row = await one_start(sim, leagues, n_markets, mode)
                row["run"] = i + 1
                rows.append(row)
    return rows


def compile_bytecode() -> None:
    """polybot's bytecode, as the image and the EC2 setup build it at install: the bot imports
    the source tree, and under PYTHONDONTWRITEBYTECODE nothing else would ever write it."""
    import polybot

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(polybot.__file__).parent)],
                   check=True, stdout=subprocess.DEVNULL)


def run_start(n_markets: int = 500, leagues: tuple[str, ...] = ("nba", "nhl"),
              modes: tuple[str, ...] = ("paper", "live"), runs: int = 3,
              out_dir: Path | None = None, bytecode: bool = True) -> dict[str, Any]:
    params = {"markets": n_markets, "leagues": list(leagues), "modes": list(modes), "runs": runs,
              "public_rate_limit_per_ip": 20.0, "bytecode_compiled_first": bytecode}
    if bytecode:
        compile_bytecode()
    run_ = Run("scale-start", params)
    rows = trio.run(_start_main, n_markets, tuple(leagues), list(modes), runs)
    print_table(
        f"start: process start -> first 200 on /ready, {n_markets} markets discovered in "
        f"{','.join(leagues)} (exchange rate limit on)",
        [("mode", "mode"), ("run", "run"), ("first_ready_s", "first 200 s"),
         ("cpu_to_ready_s", "bot CPU s"),
         ("listed_at_first", "listed then"), ("matched_at_first", "matched then"),
         ("ready_all_s", "all matched s"), ("cpu_to_all_s", "CPU s"), ("exchange_calls", "REST calls"),
         ("http_429", "429s"), ("partner_lookups", "partner calls"),
         ("odds_calls", "OpticOdds calls"), ("odds_streams", "streams")],
        rows,
        digits=2,
    )
    summary: dict[str, Any] = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        firsts = sorted(r["first_ready_s"] for r in mine)
        alls = sorted(r["ready_all_s"] for r in mine)
        summary[f"{mode}_first_ready_median_s"] = round(firsts[len(firsts) // 2], 2)
        summary[f"{mode}_ready_all_median_s"] = round(alls[len(alls) // 2], 2)
        cpus = sorted(r["cpu_to_ready_s"] for r in mine)
        summary[f"{mode}_cpu_to_ready_median_s"] = round(cpus[len(cpus) // 2], 2)
        summary[f"{mode}_first_ready_had_all"] = all(
            r["listed_at_first"] >= n_markets and r["matched_at_first"] >= n_markets
            for r in mine)
    print(summary)
    result, _ = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markets", default=None, help="sizes (default 10,100,500; --start: 500)")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--idle", type=float, default=8.0)
    ap.add_argument("--load", type=float, default=12.0)
    ap.add_argument("--start", action="store_true",
                    help="only the start criterion: start -> /ready with markets discovered")
    ap.add_argument("--leagues", default="nba,nhl")
    ap.add_argument("--mode", default="paper,live")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true",
                    help="--start: do not compile polybot's bytecode first (measure as found)")
    a = ap.parse_args(argv)
    if a.start:
        run_start(int(a.markets or 500), tuple(a.leagues.split(",")),
                  tuple(a.mode.split(",")), a.runs, bytecode=not a.no_compile)
        return
    run(tuple(int(x) for x in (a.markets or "10,100,500").split(",")), a.rate, a.idle, a.load)


if __name__ == "__main__":
    main()
