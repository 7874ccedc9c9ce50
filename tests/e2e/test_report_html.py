"""`python -m polybot report --html` on a DATA_DIR the bot really traded, opened in Chromium.

A short accelerated demo (`run --sim`: the local exchange, paper mode, 3 s real at 60x) fills
orders into a fresh DATA_DIR; `report --html` writes the page; headless Chromium (tests/browser.py)
opens it from disk and the test reads what plotly drew, not what the file says: the SVG points of
the equity trace (one per equity snapshot in the database), a bar per traded market, the CLV
histogram's bars, a trades-table row per fill, and no error on the console.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.browser import chromium_or_skip, console_errors, headless_chromium
from tests.e2e.conftest import PYTHON, ROOT, base_env

pytestmark = pytest.mark.slow  # about 7 s: the demo run, the page, and Chromium


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def _points(driver: object, chart: str, layer: str, trace: int = 0) -> int:
    """Marks plotly drew for one trace of one chart (scatter: `path.point`; bar: `.point`)."""
    return int(driver.execute_script(  # type: ignore[attr-defined]
        "const t = document.querySelectorAll(`#${arguments[0]} .${arguments[1]} .trace`)"
        "[arguments[2]]; return t ? t.querySelectorAll('.point').length : -1;",
        chart, layer, trace))


def test_report_html_of_a_paper_run_renders_its_charts_and_trades_in_chromium(
        tmp_path: Path) -> None:
    chromium_or_skip()  # before the run: skipping costs nothing
    data_dir, page = tmp_path / "data", tmp_path / "report.html"
    subprocess.run([PYTHON, "-m", "polybot", "run", "--sim", "--speed", "60", "--duration", "3",
                    "--data-dir", str(data_dir)], env=base_env(), cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    done = subprocess.run([PYTHON, "-m", "polybot", "report", "--data-dir", str(data_dir),
                           "--html", str(page)], env=base_env(), cwd=tmp_path, check=True,
                          capture_output=True, text=True, timeout=60)
    assert str(page) in done.stdout

    db = data_dir / "polybot.db"
    snapshots = _rows(db, "SELECT usd_at_risk FROM equity_snapshots ORDER BY id")
    fills = _rows(db, "SELECT market_slug, intent FROM fills ORDER BY id")
    markets = {slug for slug, _ in fills}
    assert len(snapshots) >= 2 and fills, "the demo run traded too little to check a chart"
    assert "<script src=" not in page.read_text(encoding="utf-8")  # plotly inside: opens offline

    with headless_chromium() as driver:
        driver.get(page.resolve().as_uri())
        assert driver.execute_script("return typeof window.Plotly") == "object"
        plots = driver.execute_script(
            "return [...document.querySelectorAll('.js-plotly-plot')].map(g => g.id)")
        assert plots == ["equity", "at-risk", "daily", "pnl-market", "pnl-league",
                         "edge-result", "clv"]
        # one marker per equity snapshot on the equity trace, and one per snapshot's USD at risk
        assert _points(driver, "equity", "scatterlayer") == len(snapshots)
        assert _points(driver, "at-risk", "scatterlayer") == sum(
            1 for (risk,) in snapshots if risk is not None)
        assert _points(driver, "pnl-market", "barlayer") == len(markets)
        assert _points(driver, "clv", "barlayer") >= 1
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#trades tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))")
        assert [(r[1], r[2]) for r in rows] == fills
        assert console_errors(driver) == []
