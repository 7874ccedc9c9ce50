"""Micro-benchmark: CPU per trading event, from a book frame to its create handed to the venue.

    .venv/bin/python -m bench.trade_path [--markets 100] [--events 2000] [--rounds 5]
                                         [--profile cprofile|pyinstrument] [--top 40]

**Subject.** A real `polybot.runtime.Bot` in live mode (settings from env, SQLite store and intent
journal in a temporary DATA_DIR with the store's writer task running), its market metadata and
fair values filled in as the reference and odds children would (`bench.hot_path.build_bot`), its
`LiveExecutor` made ready to trade as the startup reconciliation and the private stream's
connection leave it, and the trading state begun. Every frame offers the YES side 6 cents under
the fair value, so each one is a trading event: the stream's decode
(`wire.decode_market_frame`), then `Bot.on_book_frame` — `on_market_book` (engine.book_replaced,
the venue's on_book) → `evaluate_market` → `engine.decide` (strategy.evaluate, the gate) →
`execute` → `_submit` → `LiveExecutor.send/_send` (refusal, `OrderRegistry.new_order`,
`Store.note_intent`'s journal line, `may_send`) → `rest.send_create`.

**The venue is a stub.** `rest.send_create` is replaced by a function that stamps the time it was
called and returns a create whose answer (an exchange id) is ready at once: no socket, no
signature, no request bytes (`polybot.polymarket.fastorder` is measured by `bench.fast_create`).
The answer is booked by the executor's own task, as in the bot, after the frame's handler
returned; then, outside the timing, the order is closed as the exchange's IOC cancel would close
it (`EXEC_CANCELED`), so the market is unfrozen and holds no position: every event meets the
same state (one create in flight per market is checked, not bypassed).

**Logging** as `python -m polybot run` sets it up by default (`--no-logs`: none): INFO to a log
file, the trades log to its own file (in the temporary DATA_DIR), stderr at WARNING.

**Figures** (µs per event; p50 of each round, the median over the rounds reported, and the best
round: on this shared machine the best round is the steadier figure to compare runs by):
- *decode*: `wire.decode_market_frame` (not this benchmark's subject; shown for scale);
- *to create*: `on_book_frame` entered → `send_create` called (the latency that matters), and
  its p99 (the median over the rounds of each round's p99);
- *after create*: `send_create` returned → `on_book_frame` returned (metrics, trades log,
  approved line: CPU, not latency);
- *event*: decode + the whole handler;
- *CPU per event in the handler*: process time of decode + `on_book_frame`, mean over the round;
- *CPU per event, whole process*: process time over the round / events, so with the answer's
  task, the store's writer and the journal's sync thread, and this benchmark's closing of the
  order (its trades-log line and store row, as the exchange's cancel would cost the bot).

"Warm": events come back to back (each market's once per `--markets` events), so caches are hot;
the live bot's figures are 2-5x these (cache-cold, see issue 15). Compare runs of this benchmark
with each other, not with tick_to_order.

Then two passes count the calls per event (cProfile): up to the create, and the whole handler.

`--profile`: one more pass under cProfile (call counts and own time per function: what "fewer
calls" needs) or pyinstrument (a tree), printed after the table.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import pstats
import statistics
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from bench.common import Run, percentile, print_table

perf = time.perf_counter_ns


class _Answered:
    """A create whose answer is already there (the stub venue's)."""

    __slots__ = ("_id",)

    def __init__(self, exchange_id: str) -> None:
        self._id = exchange_id

    async def result(self) -> str:
        return self._id


class StubVenue:
    """`rest.send_create` that returns at once, stamping when it was called."""

    def __init__(self) -> None:
        self.calls = 0
        self.stamp = 0
        self.requests: list[Any] = []
        self.on_call: Any = None  # a profiler's `disable`: count the calls up to the create

    async def send_create(self, req: Any, **_kw: Any) -> _Answered:
        if self.on_call is not None:
            self.on_call()
        self.stamp = perf()
        self.calls += 1
        self.requests.append(req)
        return _Answered(f"ex-{self.calls}")


def make_ready(bot: Any, venue: StubVenue, nursery: trio.Nursery) -> None:
    """What the startup reconciliation and the private stream's connection leave behind: trading
    allowed, the trading state begun, the executor's nursery running (it awaits the answers)."""
    live = bot.live
    assert live is not None, "a live-mode bot is needed"
    bot.rest.send_create = venue.send_create
    live._blocks.clear()
    live._started = True
    live._stream_up = True
    live._nursery = nursery
    bot.ledger.set_cash(Decimal(bot.settings.initial_balance))  # the account's balance, adopted
    bot.engine.reconciled(bot.clock.now(), bot.clock.monotonic())
    assert live.trading_allowed, live.readiness_reason


def close_orders(bot: Any) -> None:
    """The exchange's answer to an IOC that found nothing: cancelled (outside the timing)."""
    from polybot.execution.orders import OrderEvent

    for order in bot.registry.open_orders():
        bot.registry.handle(order, OrderEvent.EXEC_CANCELED)


async def _run(markets: int, events: int, rounds: int, profile: str | None,
               top: int, logs: bool) -> dict[str, Any]:
    from bench.hot_path import build_bot, make_frames, make_slugs

    slugs = make_slugs(markets)
    frames = make_frames(slugs, events, 1.0)  # every frame has an edge: every one trades
    data_dir = Path(tempfile.mkdtemp(prefix="polybot-bench-trade-"))
    bot = build_bot(slugs, data_dir, live=True)
    with contextlib.ExitStack() as stack:
        if logs:
            stack.enter_context(_production_logging(data_dir, bot.settings.secret_values()))
        return await _events(bot, slugs, frames, markets, rounds, profile, top)


@contextlib.contextmanager
def _production_logging(data_dir: Path, secrets: list[str]) -> Iterator[None]:
    """Logging as `run` configures it by default (INFO, a log file, the trades log), for the
    benchmark only: the caller's handlers are set aside (not closed) and put back after."""
    from polybot.logs import TRADES_LOGGER, configure_logging

    saved = [(lg, lg.handlers[:], lg.level, lg.propagate)
             for lg in (logging.getLogger(), logging.getLogger(TRADES_LOGGER))]
    for lg, handlers, _, _ in saved:
        for h in handlers:
            lg.removeHandler(h)
    configure_logging(level="INFO", log_file=data_dir / "polybot.log",
                      trades_log_file=data_dir / "trades.log", secrets=secrets,
                      stderr_level="WARNING")
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            for h in lg.handlers[:]:
                lg.removeHandler(h)
                h.close()
            for h in handlers:
                lg.addHandler(h)
            lg.setLevel(level)
            lg.propagate = propagate


async def _events(bot: Any, slugs: list[str], frames: list[str], markets: int, rounds: int,
                  profile: str | None, top: int) -> dict[str, Any]:
    from polybot.polymarket import wire

    venue = StubVenue()
    decode = wire.decode_market_frame
    store_queue = bot.store._send.statistics
    out: dict[str, Any] = {"decode": [], "to_create": [], "after_create": [], "event": [],
                           "cpu": [], "cpu_handler": [], "to_create_p99": []}
    profile_text = ""

    async def settle() -> None:
        # the socket's next read: the answer task, the store's writer and the journal run
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        close_orders(bot)
        if store_queue().current_buffer_used > 1000:
            await bot.store.flush()

    async def one(msg: str, lat: dict[str, list[int]] | None) -> None:
        before = venue.calls
        a = perf()
        now = trio.current_time()
        event = decode(msg, now)
        b = perf()
        await bot.on_book_frame(event.book, now)
        c = perf()
        if venue.calls != before + 1:
            raise AssertionError(f"event {msg[:60]}… sent {venue.calls - before} creates, not 1")
        if lat is not None:
            lat["decode"].append(b - a)
            lat["to_create"].append(venue.stamp - b)
            lat["after_create"].append(c - venue.stamp)
            lat["event"].append(c - a)

    async with trio.open_nursery() as nursery:
        await nursery.start(bot.store.run)
        make_ready(bot, venue, nursery)
        for msg in frames[: 2 * markets]:  # warm-up: every market traded, imports and caches hot
            await one(msg, None)
            await settle()
        for _ in range(rounds):
            bot.registry.forget_closed()  # the housekeeping minute's sweep
            lat: dict[str, list[int]] = {"decode": [], "to_create": [], "after_create": [],
                                         "event": []}
            c0 = time.process_time()
            handler = 0.0
            for msg in frames:
                h = time.process_time()
                await one(msg, lat)
                handler += time.process_time() - h
                await settle()
            out["cpu"].append((time.process_time() - c0) / len(frames) * 1e6)
            out["cpu_handler"].append(handler / len(frames) * 1e6)
            for k, v in lat.items():
                out[k].append(statistics.median(v) / 1000)
            out["to_create_p99"].append(percentile(lat["to_create"], 99) / 1000)
        bot.registry.forget_closed()
        out["calls_to_create"], out["calls_event"] = await _count_calls(frames, one, settle, venue)
        if profile:
            bot.registry.forget_closed()
            profile_text = await _profile(profile, frames, one, settle, top)
        await bot.store.flush()
        await bot.rest.aclose()
        nursery.cancel_scope.cancel()
    bot.store.close()
    out["profile"] = profile_text
    out["orders"] = bot.counters.orders
    out["rejections"] = bot.counters.rejections
    return out


async def _count_calls(frames: list[str], one: Any, settle: Any,
                       venue: StubVenue) -> tuple[float, float]:
    """Python and builtin calls per event (cProfile's count): up to the create, and the whole
    event. Unlike the times, these do not move with the machine's load."""
    to_create = cProfile.Profile()
    venue.on_call = to_create.disable
    for msg in frames:
        to_create.enable()
        await one(msg, None)
        to_create.disable()
        await settle()
    venue.on_call = None
    whole = cProfile.Profile()
    for msg in frames:
        whole.enable()
        await one(msg, None)
        whole.disable()
        await settle()
    n = len(frames)
    return (pstats.Stats(to_create).total_calls / n,  # type: ignore[attr-defined]
            pstats.Stats(whole).total_calls / n)  # type: ignore[attr-defined]


async def _profile(kind: str, frames: list[str], one: Any, settle: Any, top: int) -> str:
    if kind == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        for msg in frames:
            await one(msg, None)
            await settle()
        profiler.stop()
        return str(profiler.output_text(unicode=True, color=False, show_all=False))
    prof = cProfile.Profile()
    for msg in frames:
        prof.enable()
        await one(msg, None)
        prof.disable()
        await settle()  # the answer task and closing the order: not the event's
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("ncalls").print_stats(top)
    return buf.getvalue()


def run(markets: int = 100, events: int = 2000, rounds: int = 5, profile: str | None = None,
        top: int = 40, out_dir: Path | None = None, logs: bool = True) -> dict[str, Any]:
    params = {"markets": markets, "events_per_round": events, "rounds": rounds,
              "mode": "live, stub venue", "logs": "INFO + trades log" if logs else "none"}
    run_ = Run("trade_path", params)
    res = trio.run(_run, markets, events, rounds, profile, top, logs)
    med = statistics.median
    rows = [
        {"part": name, "p50_us": round(med(res[key]), 1), "best_us": round(min(res[key]), 1),
         "rounds": " ".join(f"{v:.1f}" for v in res[key])}
        for name, key in (("decode (wire.decode_market_frame)", "decode"),
                          ("on_book_frame → send_create called", "to_create"),
                          ("  the same, p99 of each round", "to_create_p99"),
                          ("send_create returned → on_book_frame returned", "after_create"),
                          ("event: decode + on_book_frame", "event"))
    ]
    for name, key in (("CPU per event in the handler (decode + on_book_frame)", "cpu_handler"),
                      ("CPU per event, whole process (+ answer, store, journal, close)", "cpu")):
        rows.append({"part": name, "p50_us": round(med(res[key]), 1),
                     "best_us": round(min(res[key]), 1),
                     "rounds": " ".join(f"{v:.1f}" for v in res[key])})
    for name, key in (("calls per event up to the create (cProfile count)", "calls_to_create"),
                      ("calls per event, whole handler", "calls_event")):
        rows.append({"part": name, "p50_us": round(res[key], 1), "best_us": None,
                     "rounds": "(count, not µs)"})
    summary = {
        "calls_per_event_to_create": round(res["calls_to_create"], 1),
        "calls_per_event": round(res["calls_event"], 1),
        "to_create_p50_us": rows[1]["p50_us"],
        "to_create_best_round_us": rows[1]["best_us"],
        "to_create_p99_us": rows[2]["p50_us"],
        "after_create_p50_us": rows[3]["p50_us"],
        "event_p50_us": rows[4]["p50_us"],
        "cpu_us_per_event_handler": rows[5]["p50_us"],
        "cpu_us_per_event_process": rows[6]["p50_us"],
        "decode_p50_us": rows[0]["p50_us"],
        "orders": res["orders"],
        "rejections": res["rejections"],
    }
    print_table(f"trading path, warm: {markets} markets, {events:,} trading events x {rounds} "
                f"rounds (live bot, stub venue)",
                [("part", "part"), ("p50_us", "µs (median of round p50s)"),
                 ("best_us", "best round"), ("rounds", "each round")], rows)
    print(f"orders {res['orders']}  rejections {res['rejections']}")
    if res["profile"]:
        print(res["profile"])
    result, _ = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markets", type=int, default=100)
    ap.add_argument("--events", type=int, default=2000, help="trading events per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", choices=("cprofile", "pyinstrument"), default=None)
    ap.add_argument("--top", type=int, default=40, help="functions listed by cProfile")
    ap.add_argument("--no-logs", action="store_true",
                    help="leave logging unconfigured (no INFO lines, no trades log)")
    a = ap.parse_args(argv)
    run(a.markets, a.events, a.rounds, a.profile, a.top, logs=not a.no_logs)


if __name__ == "__main__":
    main()
