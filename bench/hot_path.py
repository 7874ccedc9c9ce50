"""Benchmark 1: the hot path in process — book frame → decode → book → signal → gate → paper
executor — against the official SDK's websocket message handling of the same frames.

    .venv/bin/python -m bench.hot_path [--markets 100] [--frames 10000] [--rounds 5] [--html]

**Subject.** A real `polybot.runtime.Bot` in paper mode (settings from env, SQLite store in a
temporary DATA_DIR with its writer task running) with its market metadata and fair values
filled in, as the reference and odds children would. Each frame goes through exactly what the
markets socket and the runtime do with it: `wire.decode_market_frame(text, now)` (the markets
stream's call: the full decoder's events, quicker for a book),
then `Bot.on_book_frame` (what the markets socket's task awaits for a book, no channel in
between: `Bot.on_market_book` — `TradingEngine.book_replaced`, the venue's `on_book` — then
`Bot.evaluate_market(slug, since)`: `TradingEngine.decide` → evaluate → RiskGate.check → the commands
carried out by the paper executor). The socket itself is `bench.stream_cpu`'s part.

**Frames.** 100 markets, 10 levels a side, encoded by the local exchange's own encoder
(`polybot.sim.wire.book` in the envelope of `polybot.sim.ws.WsConnection.send_frame`), so they
are byte for byte what the bot reads from `polybot.sim`. A share of them (`--edge-share`, 10 %)
offer the YES side 6 cents under the fair value, so the signal fires and the gate and the paper
executor run; risk limits are raised so such an event can trade rather than be rejected.

**Baseline.** `polymarket_us.websocket.markets.MarketsWebSocket._handle_message(text)`: the
SDK's message loop calls it for each received text frame; it `json.loads` the frame and emits
``message`` and ``market_data`` events, here to no-op callbacks. That is decode and dispatch
only — no book, no decision.

**Fairness.** Rounds interleave SDK and polybot over the same frame list, and the reported
throughput of each is the median round (best round also recorded), so a burst of load from
other processes on this shared machine hits both.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import trio

from bench.common import RESULTS_DIR, Run, percentile, print_table

Q = Decimal("0.01")
CANDIDATES = ("sdk", "decode", "poly", "quiet", "hotdecode")


def make_slugs(n: int) -> list[str]:
    return [f"aec-nba-t{i:03d}-t{i + 500:03d}-2026-12-01" for i in range(n)]


def fair_of(i: int) -> Decimal:
    """A fixed fair value per market in [0.25, 0.75] (deterministic, so runs compare)."""
    return (Decimal("0.25") + Decimal(i * 37 % 51) / 100).quantize(Decimal("0.0001"))


def encode_frame(slug: str, bids: list[tuple[Decimal, Decimal]],
                 offers: list[tuple[Decimal, Decimal]], when: datetime,
                 request_id: str = "md-1") -> str:
    """A MARKET_DATA frame exactly as `polybot.sim` sends it (its encoder and envelope)."""
    from polybot.model import MarketState, PriceLevel
    from polybot.sim.engine import BookView, MarketStats
    from polybot.sim.wire import book

    view = BookView(
        market_slug=slug,
        bids=tuple(PriceLevel(p, q) for p, q in bids),
        offers=tuple(PriceLevel(p, q) for p, q in offers),
        state=MarketState.OPEN,
        transact_time=when,
        stats=MarketStats(last_trade_px=bids[0][0] if bids else None,
                          shares_traded=Decimal("12345"), open_interest=Decimal("6789"),
                          notional_traded=Decimal("6000.5")),
    )
    frame = {"requestId": request_id, "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA",
             "marketData": book(view)}
    return orjson.dumps(frame).decode()


def book_levels(fair: Decimal, rng: random.Random, *, edge: bool,
                levels: int = 10) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """10 levels a side, one tick apart, around `fair`; `edge` puts the best offer 6 c under it."""
    if edge:
        best_offer = (fair - Decimal("0.06")).quantize(Q)
        best_bid = best_offer - Q
    else:
        # a spread of 2-4 ticks straddling the fair value: no edge after fees
        best_bid = (fair - Q * rng.randint(1, 2)).quantize(Q)
        best_offer = (fair + Q * rng.randint(1, 2)).quantize(Q)

    def qty() -> Decimal:
        return Decimal(rng.randint(100, 50_000)) / 100

    bids = [(best_bid - Q * k, qty()) for k in range(levels) if best_bid - Q * k >= Q]
    offers = [(best_offer + Q * k, qty()) for k in range(levels)
              if best_offer + Q * k <= Decimal("0.99")]
    return bids, offers


def make_frames(slugs: list[str], n: int, edge_share: float, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    t0 = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    frames = []
    for k in range(n):
        i = k % len(slugs)
        bids, offers = book_levels(fair_of(i), rng, edge=rng.random() < edge_share)
        frames.append(encode_frame(slugs[i], bids, offers, t0 + timedelta(milliseconds=k)))
    return frames


def bench_env(slugs: list[str], data_dir: Path, live: bool = False) -> dict[str, str]:
    seed = base64.b64encode(bytes(range(32))).decode()
    return {
        "TRADING_MODE": "live" if live else "paper",
        "PM_API_KEY_ID": str(uuid.UUID(int=1)),
        "PM_PRIVATE_KEY": seed,
        "MARKET_SLUGS": ",".join(slugs),
        "PM_BASE_URL": "http://127.0.0.1:9",  # never called: metadata is filled in directly
        "PM_GATEWAY_URL": "http://127.0.0.1:9",
        "PM_WS_URL": "ws://127.0.0.1:9",
        "OPTICODDS_API_KEY": "bench-key",
        "DATA_DIR": str(data_dir),
        "LOG_FILE": "",
        "TRADES_LOG_FILE": "",
        "LOG_LEVEL": "WARNING",
        "HEALTH_PORT": "0",
        # raised so an edge event may trade instead of hitting a cap
        "INITIAL_BALANCE": "10000000",
        "RISK_MAX_POSITION_PER_MARKET": "1000000",
        "RISK_MAX_PORTFOLIO_EXPOSURE": "10000000",
        "RISK_MAX_CORRELATED_EXPOSURE": "10000000",
        "RISK_MAX_DAILY_LOSS": "10000000",
        "RISK_MAX_POSITIONS": "100000",
        "RISK_MAX_DRAWDOWN_PCT": "0.99",
        "ORDER_RATE_PER_MINUTE": "1000000",
        "RISK_KELLY_FRACTION": "1",  # the Kelly target never binds: each edge takes its level
    }


def build_bot(slugs: list[str], data_dir: Path, live: bool = False) -> Any:
    """A paper-mode Bot whose reference data and fair values are filled in (no network).

    `live`: a live-mode bot instead (LiveExecutor). Never started or reconciled, it sends
    nothing (every market refuses an order), so its frames show the live venue's per-frame
    work (`on_book`, `sync_signals` over the registry) and the decision up to the gate."""
    from polybot.config import load_settings
    from polybot.model import FairValue, MarketInfo, MarketTarget
    from polybot.runtime import Bot

    bot = Bot(load_settings(bench_env(slugs, data_dir, live)))
    start = bot.clock.now() + timedelta(days=2)  # pre-game on the bot's clock: opening allowed
    for i, slug in enumerate(slugs):
        bot.universe.put(MarketInfo(slug, market_id=str(i), event_id=f"ev{i // 2}",
                                    event_slug=f"ev{i // 2}", start_time=start))
        bot.universe.update(slug, target=MarketTarget(slug, f"fx{i}", "yes", "basketball"),
                            target_confirmed=True)
        bot.fair_values.track(slug, f"fx{i}")
        bot.fair_values.set(FairValue(slug, fair_of(i), "bench", (), 0.0, f"fx{i}"))
    bot.fair_values.set_trusted(slugs, True, 0.0)
    bot._reference_loaded = True
    return bot


def seed_closed_orders(bot: Any, slugs: list[str], n: int = 600) -> None:
    """What a live registry holds between housekeeping's minute sweeps at ten IOC orders a
    second: `n` closed orders across the markets (the live bot keeps them until `forget_closed`)."""
    from polybot.execution.orders import OrderEvent
    from polybot.model import Intent, OrderRequest, TimeInForce

    for k in range(n):
        req = OrderRequest(slugs[k % len(slugs)], Intent.BUY_LONG, Decimal("0.40"), Decimal(10),
                           tif=TimeInForce.IOC)
        order = bot.registry.new_order(req, log_intent=False)
        bot.registry.handle(order, OrderEvent.SEND_FAILED)


async def polybot_frame(bot: Any, msg: str) -> None:
    """One frame through the bot's real path: the stream's decode, then the markets task's
    handler (engine.book_replaced, the venue, engine.decide and its commands)."""
    from polybot.polymarket import wire

    now = trio.current_time()
    event = wire.decode_market_frame(msg, now)
    await bot.on_book_frame(event.book, now)


async def quiet_frame(bot: Any, msg: str) -> None:
    """One book frame that does not trade, as the markets task handles it once it calls the
    engine directly: the stream's decode, the book handler (engine.book_replaced, the venue)
    and the market's decision (engine.decide and its commands) in the same task."""
    from polybot.polymarket import wire

    now = trio.current_time()
    event = wire.decode_market_frame(msg, now)  # MarketsStream's decoder
    await bot.on_book_frame(event.book, now)  # Bot.markets_child's handler for a book


def make_sdk_handler() -> tuple[Any, list[int]]:
    from polymarket_us.websocket.markets import MarketsWebSocket

    seen = [0]

    def on_market_data(message: Any) -> None:
        seen[0] += 1

    ws = MarketsWebSocket(key_id=str(uuid.UUID(int=1)), secret_key="unused",
                          base_url="ws://127.0.0.1:9")
    ws.on("message", lambda message: None)
    ws.on("market_data", on_market_data)
    return ws._handle_message, seen


async def _run_rounds(frames: list[str], slugs: list[str], rounds: int,
                      profile_path: Path | None, html: bool = False,
                      quiet_frames: list[str] | None = None,
                      candidates: tuple[str, ...] = CANDIDATES,
                      live: bool = False) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="polybot-bench-hot-"))
    bot = build_bot(slugs, data_dir, live)
    sdk_handle, sdk_seen = make_sdk_handler()
    perf = time.perf_counter_ns
    # the markets task awaits the socket between frames; nothing here does, so each frame ends
    # with a checkpoint (outside its latency) or the store's writer never runs and its queue fills
    store_queue = bot.store._send.statistics

    async def checkpoint() -> None:
        await trio.lowlevel.checkpoint()
        if store_queue().current_buffer_used > 1000:
            # an order a frame outruns the writer's thread on this loop (the paper executor no
            # longer waits for a commit): let it catch up, outside any frame's latency
            await bot.store.flush()
    from polybot.polymarket.wire import decode_frame as decode
    from polybot.polymarket.wire import decode_market_frame as hot_decode

    rates: dict[str, list[float]] = {c: [] for c in CANDIDATES}
    cpu: dict[str, list[float]] = {c: [] for c in CANDIDATES}  # CPU µs per frame, all threads
    poly_lat: list[int] = []
    sdk_lat: list[int] = []
    dec_lat: list[int] = []
    hot_lat: list[int] = []
    order_lat: list[int] = []  # frames whose evaluation placed an order
    quiet_lat: list[int] = []  # the rest
    nontrading_lat: list[int] = []  # "quiet": frames with no edge, book → decision in one task
    nontrading_orders = 0  # orders placed by the "quiet" frames (0 when they are what they claim)
    quiet_frames = quiet_frames or []
    async with trio.open_nursery() as nursery:
        await nursery.start(bot.store.run)
        # warm-up: every market gets a first book (and imports/caches are hot)
        for msg in frames[: len(slugs)]:
            await polybot_frame(bot, msg)
            await checkpoint()
            sdk_handle(msg)
        for r in range(rounds):
            # interleaved; the order of the candidates rotates every round
            k = r % len(candidates)
            order = candidates[k:] + candidates[:k]
            # what the housekeeping child does every 60 s: drop closed orders from the registry
            # (its open-orders scan walks every tracked order; a round is ~1/3 of a minute's
            # worth of orders at this edge share)
            bot.registry.forget_closed()
            if live:
                seed_closed_orders(bot, slugs)
            for who in order:
                c0 = time.process_time()
                t0 = perf()
                if who == "sdk":
                    for msg in frames:
                        a = perf()
                        sdk_handle(msg)
                        sdk_lat.append(perf() - a)
                elif who == "decode":
                    for msg in frames:
                        a = perf()
                        decode(msg, 0.0)
                        dec_lat.append(perf() - a)
                elif who == "hotdecode":
                    for msg in frames:
                        a = perf()
                        hot_decode(msg, 0.0)
                        hot_lat.append(perf() - a)
                elif who == "quiet":
                    before = bot.counters.orders
                    for msg in quiet_frames:
                        a = perf()
                        await quiet_frame(bot, msg)
                        nontrading_lat.append(perf() - a)
                        await checkpoint()  # the socket's next read: the store's writer runs
                    nontrading_orders += bot.counters.orders - before
                else:
                    for msg in frames:
                        before = bot.counters.orders
                        a = perf()
                        await polybot_frame(bot, msg)
                        took = perf() - a
                        poly_lat.append(took)
                        (order_lat if bot.counters.orders != before else quiet_lat).append(took)
                        await checkpoint()
                n = len(quiet_frames) if who == "quiet" else len(frames)
                rates[who].append(n / ((perf() - t0) / 1e9))
                cpu[who].append((time.process_time() - c0) / n * 1e6)
        profile_info = None
        if profile_path is not None:
            bot.registry.forget_closed()
            profile_info = await _profile(bot, frames, profile_path, html)
        counters = bot.counters
        orders = counters.orders
        fills = bot.recorder.fills
        await bot.store.flush()
        await bot.rest.aclose()  # never used (no network here), but opened by Bot()
        nursery.cancel_scope.cancel()
    bot.store.close()
    if "sdk" in candidates:
        assert sdk_seen[0] >= len(frames) * rounds, "the SDK did not dispatch every frame"
    return {
        "rates": rates,
        "cpu": cpu,
        "poly_lat": poly_lat,
        "sdk_lat": sdk_lat,
        "dec_lat": dec_lat,
        "hot_lat": hot_lat,
        "order_lat": order_lat,
        "quiet_lat": quiet_lat,
        "nontrading_lat": nontrading_lat,
        "nontrading_orders": nontrading_orders,
        "signals": counters.signals,
        "orders": orders,
        "fills": fills,
        "rejections": counters.rejections,
        "profile": profile_info,
    }


async def _profile(bot: Any, frames: list[str], path: Path, html: bool) -> dict[str, Any]:
    """One more polybot pass under pyinstrument; the text tree is written next to the results."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    for msg in frames:
        await polybot_frame(bot, msg)
        await trio.lowlevel.checkpoint()
    profiler.stop()
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    path.with_suffix(".txt").write_text(text, encoding="utf-8")
    out = {"text": path.with_suffix(".txt").name}
    if html:  # tens of MB (every sample is embedded): written on request, never committed
        html_path = Path(tempfile.gettempdir()) / "polybot_hot_path_profile.html"
        html_path.write_text(profiler.output_html(), encoding="utf-8")
        print(f"wrote {html_path}")
        out["html"] = str(html_path)
    print(f"wrote {path.with_suffix('.txt')}")
    return out


def run(markets: int = 100, frames: int = 10_000, rounds: int = 5, edge_share: float = 0.1,
        profile: bool = True, out_dir: Path | None = None,
        html: bool = False, live: bool = False) -> dict[str, Any]:
    params = {"markets": markets, "frames_per_round": frames, "rounds": rounds,
              "edge_share": edge_share, "levels_per_side": 10,
              "mode": "live (nothing sent)" if live else "paper"}
    run_ = Run("hot_path_live" if live else "hot_path", params)
    slugs = make_slugs(markets)
    frame_list = make_frames(slugs, frames, edge_share)
    quiet_list = make_frames(slugs, frames, 0.0, seed=11)  # no edge: none of them trades
    out = out_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    res = trio.run(_run_rounds, frame_list, slugs, rounds,
                   out / "hot_path_profile" if profile else None, html, quiet_list, CANDIDATES,
                   live)

    def row(name: str, rates: list[float], lat: list[int],
            cpu: list[float] | None = None) -> dict[str, Any]:
        return {
            "pipeline": name,
            "cpu_us_per_frame": statistics.median(cpu) if cpu else None,
            "frames_per_s_median": statistics.median(rates) if rates else None,
            "frames_per_s_best": max(rates) if rates else None,
            "frames": len(lat),
            "p50_us": percentile(lat, 50) / 1000,
            "p99_us": percentile(lat, 99) / 1000,
            "max_us": max(lat) / 1000 if lat else None,
        }

    r = res["rates"]
    rows = [
        row("polybot: decode → book → signal → gate → paper executor", r["poly"],
            res["poly_lat"], res["cpu"]["poly"]),
        row("  of which frames that placed an order", [], res["order_lat"]),
        row("  of which frames that did not", [], res["quiet_lat"]),
        row("polybot: non-trading frame, decode → book → engine.decide in one task", r["quiet"],
            res["nontrading_lat"], res["cpu"]["quiet"]),
        row("polybot: wire.decode_frame only", r["decode"], res["dec_lat"], res["cpu"]["decode"]),
        row("polymarket-us SDK: _handle_message → no-op callback", r["sdk"], res["sdk_lat"],
            res["cpu"]["sdk"]),
        row("polybot: wire.decode_market_frame only (the markets stream's decoder)",
            r["hotdecode"], res["hot_lat"], res["cpu"]["hotdecode"]),
    ]
    ratio = rows[0]["frames_per_s_median"] / rows[5]["frames_per_s_median"]
    decode_ratio = rows[4]["frames_per_s_median"] / rows[5]["frames_per_s_median"]
    summary = {
        "polybot_frames_per_s": round(rows[0]["frames_per_s_median"]),
        "sdk_frames_per_s": round(rows[5]["frames_per_s_median"]),
        "polybot_decode_frames_per_s": round(rows[4]["frames_per_s_median"]),
        # the issue-15 target: CPU per book frame that does not trade (median of the rounds)
        "polybot_cpu_us_per_nontrading_frame": round(rows[3]["cpu_us_per_frame"], 1),
        "polybot_nontrading_frames_p50_us": round(rows[3]["p50_us"], 1),
        "polybot_nontrading_orders": res["nontrading_orders"],
        "polybot_hot_decode_cpu_us_per_frame": round(rows[6]["cpu_us_per_frame"], 1),
        "polybot_decode_cpu_us_per_frame": round(rows[4]["cpu_us_per_frame"], 1),
        "ratio_polybot_full_over_sdk_decode": round(ratio, 3),
        "ratio_polybot_decode_over_sdk_decode": round(decode_ratio, 3),
        # None when no frame placed an order (--live sends nothing)
        "polybot_order_frames_p50_us": round(rows[1]["p50_us"], 1) if res["order_lat"] else None,
        "polybot_order_frames_p99_us": round(rows[1]["p99_us"], 1) if res["order_lat"] else None,
        "polybot_quiet_frames_p50_us": round(rows[2]["p50_us"], 1),
        "polybot_quiet_frames_p99_us": round(rows[2]["p99_us"], 1),
        "polybot_cpu_us_per_frame": round(rows[0]["cpu_us_per_frame"], 1),
        "sdk_cpu_us_per_frame": round(rows[5]["cpu_us_per_frame"], 1),
        "polybot_p50_us": round(rows[0]["p50_us"], 1),
        "polybot_p99_us": round(rows[0]["p99_us"], 1),
        "sdk_p50_us": round(rows[5]["p50_us"], 1),
        "sdk_p99_us": round(rows[5]["p99_us"], 1),
        "frame_bytes_mean": round(sum(map(len, frame_list)) / len(frame_list)),
        "signals": res["signals"],
        "orders": res["orders"],
        "orders_filled": res["fills"],
        "rejections": res["rejections"],
        "profile": res["profile"],
    }
    print_table(
        f"hot path, in process: {markets} markets, {frames:,} frames x {rounds} interleaved rounds "
        f"({summary['frame_bytes_mean']} B/frame, {edge_share:.0%} with an edge)",
        [("pipeline", "pipeline"), ("frames", "frames"), ("frames_per_s_median", "frames/s (median)"),
         ("frames_per_s_best", "best"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs"),
         ("max_us", "max µs"), ("cpu_us_per_frame", "CPU µs/frame")],
        rows,
    )
    print(f"ratio polybot full pipeline / SDK decode only (throughput): {ratio:.3f}"
          f"  (SDK is {1 / ratio:.1f}x faster: it only parses and dispatches)")
    print(f"ratio polybot decode only / SDK decode only (throughput): {decode_ratio:.3f}")
    print(f"CPU per non-trading frame (decode → book → decision): "
          f"{summary['polybot_cpu_us_per_nontrading_frame']} µs "
          f"(median of {rounds} rounds of {frames:,}; orders placed by them: "
          f"{res['nontrading_orders']})")
    print(f"signals {res['signals']}  orders {res['orders']}  filled {res['fills']}  "
          f"rejections {res['rejections']}")
    result, _ = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markets", type=int, default=100)
    ap.add_argument("--frames", type=int, default=10_000, help="frames per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--edge-share", type=float, default=0.1)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--html", action="store_true",
                    help="also write pyinstrument's interactive HTML to the temp directory")
    ap.add_argument("--live", action="store_true",
                    help="a live-mode bot that sends nothing (results in hot_path_live.json), its "
                         "registry holding a minute of closed IOC orders as housekeeping leaves it")
    a = ap.parse_args(argv)
    run(a.markets, a.frames, a.rounds, a.edge_share, profile=not a.no_profile, html=a.html,
        live=a.live)


if __name__ == "__main__":
    main()
