"""Benchmark: CPU per book frame on the markets socket's own path, over loopback.

    .venv/bin/python -m bench.stream_cpu [--frames 20000] [--rounds 3]

`bench.hot_path` measures what the bot does with a decoded frame; this measures what it costs to
get there: the socket read, the frame parse in the reading task (`polybot.polymarket.wsconn`), the
stream's per-frame bookkeeping (staleness stamps, counters, progress) and the hot decoder, with a
no-op handler delivered to directly (`MarketsStream(deliver=...)`, as `Bot.markets_child` runs it).
A child process (a trio-websocket server) answers the subscription with a burst of `--frames`
book frames from `bench.hot_path.make_frames` (no edge, 10 levels a side); this process's CPU
(`time.process_time`) is taken from the 200th frame delivered to the last. The sum of the two
benchmarks' figures is the CPU a non-trading frame costs the process end to end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import trio

from bench.common import Run, print_table

WARMUP = 200
SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # an Ed25519 seed; the server checks nothing


def serve(frames: int) -> None:
    """The child: one websocket server; each connection gets `frames` book frames after its
    first message (the subscription). Exits when its stdin closes."""
    from trio_websocket import WebSocketRequest, serve_websocket

    from bench.hot_path import make_frames, make_slugs

    texts = make_frames(make_slugs(100), 2000, 0.0, seed=11)

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        for i in range(frames):
            await ws.send_message(texts[i % len(texts)])
        await trio.sleep_forever()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
            print(server.port, flush=True)

    def exit_when_stdin_closes() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    trio.run(main)


async def one_round(port: int, frames: int) -> dict[str, float]:
    from bench.hot_path import make_slugs
    from polybot.polymarket import wire
    from polybot.polymarket.auth import Signer
    from polybot.polymarket.stream import MarketsStream, StreamConfig

    seen = 0
    marks: dict[str, float] = {}
    done = trio.Event()

    async def handler(event: Any) -> None:
        nonlocal seen
        if type(event) is wire.BookReplaced:
            seen += 1
            if seen == WARMUP:
                marks["cpu0"], marks["wall0"] = time.process_time(), time.perf_counter()
            elif seen == frames:
                marks["cpu1"], marks["wall1"] = time.process_time(), time.perf_counter()
                done.set()

    stream = MarketsStream(StreamConfig(ws_url=f"ws://127.0.0.1:{port}"), Signer("bench", SEED),
                           slugs=make_slugs(100), deliver=handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        with trio.fail_after(120):
            await done.wait()
        nursery.cancel_scope.cancel()
    n = frames - WARMUP
    return {"cpu_us": (marks["cpu1"] - marks["cpu0"]) / n * 1e6,
            "wall_us": (marks["wall1"] - marks["wall0"]) / n * 1e6,
            "malformed": stream.malformed}


def run(frames: int = 20_000, rounds: int = 3, out_dir: Path | None = None) -> dict[str, Any]:
    run_ = Run("stream_cpu", {"frames_per_round": frames, "rounds": rounds,
                              "levels_per_side": 10, "handler": "no-op"})
    results = []
    for _ in range(rounds):
        child = subprocess.Popen([sys.executable, "-m", "bench.stream_cpu", "--serve", str(frames)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parent.parent)
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            results.append(trio.run(one_round, port, frames))
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    cpu = [r["cpu_us"] for r in results]
    rows = [{"path": "socket → wsconn → MarketsStream → decode_market_frame → no-op",
             "cpu_us_per_frame": statistics.median(cpu), "cpu_us_rounds": [round(c, 1) for c in cpu],
             "wall_us_per_frame": statistics.median(r["wall_us"] for r in results)}]
    summary = {"stream_cpu_us_per_frame": round(statistics.median(cpu), 1),
               "malformed": sum(r["malformed"] for r in results)}
    print_table(f"markets socket path, {frames:,} frames x {rounds} rounds (median)",
                [("path", "path"), ("cpu_us_per_frame", "CPU µs/frame"),
                 ("wall_us_per_frame", "wall µs/frame")], rows)
    result, _ = run_.write(rows, summary, out_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        serve(a.serve)
        return
    signal.alarm(600)
    run(a.frames, a.rounds)


if __name__ == "__main__":
    main()
