"""What every benchmark shares: machine and version facts, percentiles, a table printer and the
JSON writer for `bench/results/`.

A result file is ``{"benchmark", "started_at", "duration_seconds", "machine", "params",
"rows", "summary"}``: `rows` are the printed table's rows as objects, `summary` the headline
numbers (ratios included) that BENCHMARKS.md quotes. The smoke test pins this shape.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

PR_SET_PDEATHSIG = 1

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "polybot",
    "polymarket-us",
    "trio",
    "trio-websocket",
    "httpx",
    "orjson",
    "attrs",
    "cattrs",
    "hypercorn",
    "cryptography",
    "pyinstrument",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Where and with what the numbers were taken (the load average says how noisy it was)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "mem_total_mb": _mem_total_mb(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "git_commit": _git_commit(),
    }


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation; NaN when there is no value."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def print_table(title: str, columns: Sequence[tuple[str, str]], rows: Iterable[dict[str, Any]],
                digits: int = 1) -> None:
    """`columns` are (key, header) pairs; the first column is left-aligned, the rest right."""
    rows = list(rows)
    cells = [[fmt(r.get(k), digits) for k, _ in columns] for r in rows]
    widths = [
        max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)
    ]
    print(f"\n{title}")
    header = "  ".join(
        h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, (_, h) in enumerate(columns)
    )
    print(header)
    print("-" * len(header))
    for c in cells:
        print("  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(c)))


class Run:
    """One benchmark run: remembers when it started and writes its JSON result."""

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        self.name = name
        self.params = params
        self.started_at = datetime.now(UTC)
        self._t0 = time.perf_counter()
        self.machine = machine_info()

    def result(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "duration_seconds": round(time.perf_counter() - self._t0, 2),
            "machine": self.machine,
            "params": self.params,
            "rows": rows,
            "summary": summary,
        }

    def write(self, rows: list[dict[str, Any]], summary: dict[str, Any],
              out_dir: Path | None = None) -> tuple[dict[str, Any], Path]:
        """Write `<name>.json` (the latest run, committed) and print where it went."""
        result = self.result(rows, summary)
        out_dir = out_dir or RESULTS_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.json"
        path.write_bytes(
            orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
        )
        print(f"\nwrote {path}")
        return result, path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the benchmark process dies, so no bot is orphaned."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except OSError:
        pass


def spawn(argv: list[str], env: dict[str, str], stderr_path: Path | None,
          stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """`argv` as a child tied to this process's life, its stderr to a file (or inherited)."""
    with open(stderr_path, "wb") if stderr_path is not None else open(os.devnull, "wb") as err:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=stdout,
            stderr=err if stderr_path is not None else None,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def spawn_bot(env: dict[str, str], stderr_path: Path) -> subprocess.Popen[bytes]:
    """`python -m polybot run` with `env`, its stderr to a file, tied to this process's life."""
    return spawn([sys.executable, "-m", "polybot", "run"], env, stderr_path)
