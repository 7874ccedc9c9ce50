"""Two checkouts of polybot, the same benchmarks, interleaved in one run; figures side by side.

    .venv/bin/python -m bench.compare OLD_DIR NEW_DIR [--rounds 2] [--only hot_path,tick_to_order]

Each round runs every benchmark once in each checkout (`python -m bench NAME` with that checkout
first on `PYTHONPATH`, in its own directory, so each writes its own `bench/results/`), the order of
the two sides alternating from round to round so load from other processes hits both. It prints,
per headline figure, the median over rounds of each side and their ratio (new / old); a ratio is
"worse" when it moves against the figure's better direction. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

# (benchmark, summary key, better direction): the figures issues 13 and 15 compare
FIGURES: list[tuple[str, str, str]] = [
    ("hot_path", "ratio_polybot_full_over_sdk_decode", "higher"),
    ("hot_path", "ratio_polybot_decode_over_sdk_decode", "higher"),
    ("hot_path", "polybot_frames_per_s", "higher"),
    ("hot_path", "polybot_p50_us", "lower"),
    ("hot_path", "polybot_order_frames_p50_us", "lower"),
    ("tick_to_order", "loaded_ratio_polybot_over_baseline_p50", "lower"),
    ("tick_to_order", "loaded_polybot_p50_us", "lower"),
    ("tick_to_order", "loaded_polybot_share_p50_us", "lower"),
    ("scale", "cpu_us_per_frame", "lower"),
    ("scale", "m500_load_cpu_pct", "lower"),
    ("scale", "m500_ready_s", "lower"),
    ("scale", "m500_load_rss_mib", "lower"),
    ("scale", "m500_idle_rss_mib", "lower"),
    ("client", "book_frame_decode_us", "lower"),
]


def run_one(checkout: Path, name: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    subprocess.run([sys.executable, "-m", "bench", name], cwd=checkout, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    data: dict[str, Any] = json.loads((checkout / "bench" / "results" / f"{name}.json").read_text())
    return dict(data["summary"])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    names = [n for n in dict.fromkeys(b for b, _, _ in FIGURES)
             if not args.only or n in args.only.split(",")]
    seen: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for name in names:
            sides = [("old", args.old), ("new", args.new)]
            if r % 2:
                sides.reverse()
            for side, path in sides:
                print(f"round {r + 1}: {name} in {side} ({path})", file=sys.stderr, flush=True)
                summary = run_one(path.resolve(), name)
                for bench, key, _ in FIGURES:
                    if bench == name and isinstance(summary.get(key), int | float):
                        seen.setdefault((side, f"{bench}.{key}"), []).append(float(summary[key]))
    print(f"{'figure':52} {'old':>11} {'new':>11} {'new/old':>8}  verdict")
    worst = 0.0
    for bench, key, better in FIGURES:
        label = f"{bench}.{key}"
        old, new = seen.get(("old", label)), seen.get(("new", label))
        if not old or not new:
            continue
        o, n = statistics.median(old), statistics.median(new)
        ratio = n / o if o else float("inf")
        against = (ratio - 1) if better == "lower" else (1 - ratio)
        worst = max(worst, against)
        verdict = "worse by %.0f %%" % (against * 100) if against > 0 else "same or better"
        print(f"{label:52} {o:11.3f} {n:11.3f} {ratio:8.3f}  {verdict} ({better} is better)")
    print(f"worst move against a figure: {worst * 100:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
