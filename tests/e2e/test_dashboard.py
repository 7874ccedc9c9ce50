"""The live dashboard of a running bot, opened in headless Chromium.

A paper bot (`run --sim-credentials`, the shared local exchange) with DASHBOARD_TOKEN set trades
until it holds a position; Chromium (tests/browser.py) opens `/dashboard` and the test reads what
the page shows: the charts plotly drew (points and bars, not the data handed over), the key figures
against `/status?snapshot=N` of the snapshot id the page shows, a `python -m polybot halt` seen
on the page within 3 s, the phone viewport, and a flatten clicked on the page and acknowledged by
the bot. A second bot without the token serves a page without buttons and refuses a POST. The
screenshot in README.md (docs/img/dashboard.png) is taken here, when `DASHBOARD_SCREENSHOT` names
the file to write.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from polybot.report_html import fmt
from tests.browser import chromium_or_skip, console_errors, headless_chromium
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.slow  # about 20 s: a bot that trades, a second one, Chromium

TOKEN = "e2e-dashboard-token-5f3a9c0b7d"
FIGURES = ("equity", "cash", "at_risk")

READ_PAGE = """
const figs = {};
for (const k of arguments[0]) {
  const el = document.getElementById('fig-' + k);
  figs[k] = [el.dataset.value, el.textContent];
}
const rows = [...document.querySelectorAll('#positions tbody tr')]
  .map(r => [...r.cells].map(c => c.textContent));
return {snapshot: document.getElementById('snapshot').textContent, figs, rows,
        state: document.getElementById('state').textContent};
"""


def _drawn(driver: Any, chart: str, layer: str) -> int:
    """Marks plotly drew in one chart's first trace (scatter: points; bar: bars)."""
    return int(driver.execute_script(
        "const t = document.querySelector(`#${arguments[0]} .${arguments[1]} .trace`);"
        "return t ? t.querySelectorAll('.point').length : -1;", chart, layer))


def _forged(base: str, **headers: str) -> httpx.Response:
    return httpx.post(base + "/dashboard/action/flatten", headers=headers, content=b"{}",
                      timeout=5)


def test_the_dashboard_of_a_trading_bot_shows_its_status_and_acts_only_with_the_token(
        sim, start_bot) -> None:
    chromium_or_skip()
    bot = start_bot(sim, "paper", DASHBOARD_TOKEN=TOKEN)
    bare = start_bot(sim, "paper")  # no token: read-only
    bot.wait_ready(40)
    wait_until(lambda: bot.status()["extra"]["positions"], 60, "a position of the paper bot")

    with headless_chromium() as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(bot.base + "/dashboard")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return typeof window.Plotly === 'object' && "
            "document.querySelectorAll('.js-plotly-plot').length === 5 && "
            "document.querySelectorAll('#positions tbody tr').length > 0"))

        # charts render with data: the equity curve (stored snapshots and the live point), the
        # limits, and a bar per market with USD at risk
        assert _drawn(driver, "equity-today", "scatterlayer") >= 2
        assert _drawn(driver, "equity-all", "scatterlayer") >= 2
        assert _drawn(driver, "limits", "barlayer") == 4
        assert _drawn(driver, "risk-markets", "barlayer") >= 1

        # the figures shown are those of /status for the snapshot id the page shows
        page = driver.execute_script(READ_PAGE, list(FIGURES))
        status = bot.get(f"/status?snapshot={page['snapshot']}").json()
        assert status["snapshot"] == int(page["snapshot"])
        shown = {"equity": status["pnl"]["equity"], "cash": status["pnl"]["cash"],
                 "at_risk": status["extra"]["risk"]["portfolio"]}
        for key, value in shown.items():
            assert page["figs"][key] == [value, fmt(Decimal(value))], key
        positions = {p["market"]: Decimal(p["qty"]) for p in status["extra"]["positions"]}
        assert positions
        assert {r[0]: Decimal(r[1].replace(",", "")) for r in page["rows"]} == positions
        assert page["state"] == status["trading_state"] == "ACTIVE"

        # phone: nothing scrolls sideways
        driver.set_window_size(390, 844)
        WebDriverWait(driver, 5).until(lambda d: d.execute_script(  # plotly's relayout settles
            "return window.innerWidth <= 390 && "
            "document.documentElement.scrollWidth <= window.innerWidth"))
        screenshot = os.environ.get("DASHBOARD_SCREENSHOT")  # e.g. docs/img/dashboard.png
        if screenshot:
            driver.save_screenshot(screenshot.replace(".png", "-phone.png"))
            driver.set_window_size(1200, 900)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1200, height + 140)  # the whole page (headless: no limit)
            time.sleep(1.0)
            driver.save_screenshot(screenshot)
        driver.set_window_size(1200, 900)

        # a halt made with the CLI is on the page within 3 s
        done = bot.command("halt")
        assert done.returncode == 0, done.stderr
        WebDriverWait(driver, 3).until(  # the bound: within 3 s of the command's exit
            lambda d: d.find_element(By.ID, "state").text == "HALTED")
        assert "kill switch" in driver.find_element(By.ID, "clears").text
        assert bot.command("resume").returncode == 0
        WebDriverWait(driver, 5).until(
            lambda d: d.find_element(By.ID, "state").text == "ACTIVE")

        # forged POSTs are refused, whatever they lack
        base = bot.base
        host = base.removeprefix("http://")
        csrf = driver.execute_script("return CSRF")
        good = {"Host": host, "Origin": base, "X-CSRF-Token": csrf,
                "Authorization": f"Bearer {TOKEN}"}
        for forged in ({**good, "Authorization": "Bearer wrong-token-0123456789"},
                       {k: v for k, v in good.items() if k != "Authorization"},
                       {**good, "X-CSRF-Token": "stale"},
                       {**good, "Origin": "https://evil.example"},
                       {**good, "Host": "evil.example"}):
            assert _forged(base, **forged).status_code == 403, forged
        assert not list((bot.data_dir / "requests").glob("*.json"))

        # with the token, a flatten clicked on the page round-trips to the bot's acknowledgement
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "button[data-action=flatten]").click()
        driver.switch_to.alert.accept()
        ack = WebDriverWait(driver, 30).until(lambda d: (t := d.find_element(By.ID, "ack").text)
                                              .startswith("flatten: acknowledged") and t)
        assert "closing order(s) sent" in ack
        WebDriverWait(driver, 5).until(
            lambda d: d.find_element(By.ID, "state").text == "REDUCING")
        assert console_errors(driver) == []

        # the bot without a token: the same page, no button, and a POST refused
        driver.get(bare.base + "/dashboard")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return document.getElementById('snapshot').textContent !== '-'"))
        assert driver.find_elements(By.CSS_SELECTOR, "button") == []
        assert driver.find_elements(By.ID, "token") == []
        bare_csrf = driver.execute_script("return CSRF")
        refused = _forged(bare.base, Origin=bare.base, **{"X-CSRF-Token": bare_csrf,
                                                         "Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 403
        assert "read-only" in refused.json()["error"]
        assert console_errors(driver) == []
