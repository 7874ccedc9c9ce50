"""The HTML reports opened in Chromium: `report --html` of a DATA_DIR the bot really traded, and
`backtest --html` of that run's recording.

A short accelerated demo (`run --sim`: the local exchange, paper mode, 3 s real at 60x) fills
orders into a fresh DATA_DIR and records its feeds (`--record` into a folder that does not exist
yet); `report --html` writes the run's page, and `backtest RECORDING --json --html` replays the
recording and writes the replay's page (`backtest-report.html` in the current folder). One
headless Chromium (tests/browser.py) opens both from disk and the test reads what plotly drew,
not what the file says: the SVG points of the equity trace (one per equity snapshot), a bar per
traded market, the CLV histogram's bars, a trades-table row per fill, and no error on the
console. The run's page is checked against its database; the replay's against the replay's own
`--json` (its store is a temp dir, gone when the command ends) and the data plotly was handed.
The replay is not checked for parity with the run (at 60x wall speed the run is close to, not
exactly, what a replay on the mock clock does; parity is tests/integration/test_backtest.py's).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_or_skip, console_errors, headless_chromium
from tests.e2e.conftest import PYTHON, ROOT, base_env

pytestmark = pytest.mark.slow  # about 10 s: the demo run, its replay, two pages, and Chromium

CHARTS = ["equity", "at-risk", "daily", "pnl-market", "pnl-league", "edge-result", "clv"]


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def _points(driver: Any, chart: str, layer: str, trace: int = 0) -> int:
    """Marks plotly drew for one trace of one chart (scatter: `path.point`; bar: `.point`)."""
    return int(driver.execute_script(
        "const t = document.querySelectorAll(`#${arguments[0]} .${arguments[1]} .trace`)"
        "[arguments[2]]; return t ? t.querySelectorAll('.point').length : -1;",
        chart, layer, trace))


def _given(driver: Any, chart: str, trace: int = 0) -> int:
    """Points plotly was handed for one trace of one chart (its x values)."""
    return int(driver.execute_script(
        "return document.getElementById(arguments[0]).data[arguments[1]].x.length",
        chart, trace))


def _open(driver: Any, page: Path) -> list[tuple[str, str]]:
    """Open a page; check that plotly drew every chart; its trades table's (market, side) rows."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    # on a loaded machine `get` can return while the page's ~5 MB of inline script still runs
    # (seen on the second page of a session): wait for the charts, then look at them
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && typeof window.Plotly === 'object'"
        " && document.querySelectorAll('.js-plotly-plot').length === arguments[0]",
        len(CHARTS)))
    assert driver.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot')].map(g => g.id)") == CHARTS
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#trades tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))")
    return [(r[1], r[2]) for r in rows]


def test_the_html_reports_of_a_paper_run_and_of_its_backtest_render_in_chromium(
        tmp_path: Path) -> None:
    chromium_or_skip()  # before the run: skipping costs nothing
    data_dir, page = tmp_path / "data", tmp_path / "report.html"
    recording = tmp_path / "recordings" / "demo"  # neither folder exists yet
    ran = subprocess.run([PYTHON, "-m", "polybot", "run", "--sim", "--speed", "60", "--duration",
                          "3", "--data-dir", str(data_dir), "--record", str(recording)],
                         env=base_env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    done = subprocess.run([PYTHON, "-m", "polybot", "report", "--data-dir", str(data_dir),
                           "--html", str(page)], env=base_env(), cwd=tmp_path, check=True,
                          capture_output=True, text=True, timeout=60)
    assert str(page) in done.stdout
    replayed = subprocess.run([PYTHON, "-m", "polybot", "backtest", str(recording), "--json",
                               "--html"], env=base_env(), cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    backtest = json.loads(replayed.stdout)  # stdout is the JSON alone, --html or not
    bt_page = tmp_path / "backtest-report.html"  # the default, in the current folder
    assert f"wrote {bt_page.name}" in replayed.stderr

    db = data_dir / "polybot.db"
    snapshots = _rows(db, "SELECT usd_at_risk FROM equity_snapshots ORDER BY id")
    fills = _rows(db, "SELECT market_slug, intent FROM fills ORDER BY id")
    markets = {slug for slug, _ in fills}
    assert len(snapshots) >= 2 and fills, "the demo run traded too little to check a chart"
    for written in (page, bt_page):  # plotly inside: opens offline
        assert "<script src=" not in written.read_text(encoding="utf-8")
    assert backtest["orders"] and backtest["fills"], "the replay of the demo run did not trade"
    bt_fills = [(f["market_slug"], f["intent"]) for f in backtest["fills"]]
    bt_markets = {slug for slug, _ in bt_fills} | set(backtest["ledger"]["positions"])

    with headless_chromium() as driver:
        assert _open(driver, page) == fills
        # one marker per equity snapshot on the equity trace, and one per snapshot's USD at risk
        assert _points(driver, "equity", "scatterlayer") == len(snapshots)
        assert _points(driver, "at-risk", "scatterlayer") == sum(
            1 for (risk,) in snapshots if risk is not None)
        assert _points(driver, "pnl-market", "barlayer") == len(markets)
        assert _points(driver, "clv", "barlayer") >= 1
        assert console_errors(driver) == []

        # the backtest's page, in the same browser: the replay's trades, markets and snapshots
        assert _open(driver, bt_page) == bt_fills
        assert driver.title.startswith("polybot backtest: demo")
        equity = _given(driver, "equity")
        assert equity >= 2  # the replay's equity snapshots: a minute apart, and one at its end
        assert _points(driver, "equity", "scatterlayer") == equity
        assert _points(driver, "at-risk", "scatterlayer") == _given(driver, "at-risk") >= 2
        assert _points(driver, "pnl-market", "barlayer") == len(bt_markets)
        assert _points(driver, "clv", "barlayer") >= 1
        note = driver.execute_script("return document.body.innerText")
        assert "(the replay's own settings: the recording's)" in note  # the caps drawn
        assert console_errors(driver) == []
