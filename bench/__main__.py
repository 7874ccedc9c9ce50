"""`python -m bench`: every benchmark in turn (see BENCHMARKS.md), each with its default sizes.

    .venv/bin/python -m bench [hot_path tick_to_order scale client fast_create trade_path replay ...]

With no names, runs all of them. Each prints its table and writes its JSON to bench/results/.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _client() -> None:
    """`bench_client` prints its table; its rows are parsed back into client.json."""
    import contextlib
    import io

    from bench import bench_client
    from bench.common import Run

    run = Run("client", {"n": 3000, "rounds": 9, "unit": "µs per operation, best round"})
    saved = sys.argv
    sys.argv = ["bench_client"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            bench_client.main()
    finally:
        sys.argv = saved
    text = out.getvalue()
    print(text, end="")
    rows: list[dict[str, Any]] = []
    what = ""
    for line in text.splitlines()[2:]:  # header and rule
        if not line.strip():
            continue
        what = line[:28].strip() or what
        rows.append({"what": what, "how": line[28:78].strip(), "us_per_op": float(line[78:])})
    chosen = {r["what"]: r["us_per_op"] for r in rows if "(chosen)" in r["how"]}
    orjson_only = next((r["us_per_op"] for r in rows if r["how"] == "orjson decode only"), None)
    summary = {"book_frame_decode_us": chosen.get("book frame (10+10 levels)"),
               "orjson_decode_only_us": orjson_only}
    run.write(rows, summary)


def _hot_path() -> None:
    from bench import hot_path

    hot_path.run()


def _tick_to_order() -> None:
    from bench import tick_to_order

    tick_to_order.run()


def _scale() -> None:
    from bench import scale

    scale.run()


def _fast_create() -> None:
    from bench import fast_create

    fast_create.run()


def _trade_path() -> None:
    from bench import trade_path

    trade_path.run()


def _replay() -> None:
    from bench import replay

    replay.run()


BENCHMARKS = {
    "client": _client,
    "hot_path": _hot_path,
    "tick_to_order": _tick_to_order,
    "scale": _scale,
    "fast_create": _fast_create,
    "trade_path": _trade_path,
    "replay": _replay,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    for name in names:
        t0 = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        BENCHMARKS[name]()
        print(f"=== {name}: {time.perf_counter() - t0:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
