"""The HTML report's data (report.html_data) and its page (report_html), without a browser.

tests/e2e/test_report_html.py opens a real page in Chromium; here the numbers behind it: the edge
at entry and CLV of each fill, the drawdown, the league, and the page's tables as text.
"""

import re
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal as D

import trio

from polybot import cli, report
from polybot.model import ZERO
from polybot.report_html import (
    EquityPoint,
    Trade,
    drawdowns,
    edge_at_entry,
    league_of,
    render_html,
)
from polybot.store import Store, connect_readonly, db_path
from tests.unit.test_report import trade_some


async def trade_and_snapshot(tmp_path):
    """test_report's three markets (won, lost, open), and two equity snapshots."""
    ledger = await trade_some(tmp_path)
    store = Store.open(tmp_path)
    async with trio.open_nursery() as n:
        await n.start(store.run)
        for minute, at_risk in ((0, D("0")), (1, D("15.5"))):
            store.record_ledger_equity(ledger, usd_at_risk=at_risk,
                                       ts=datetime(2026, 12, 6, 20, minute, tzinfo=UTC))
        await store.flush()
        n.cancel_scope.cancel()
    store.close()
    return ledger


async def test_html_data_gives_each_fill_its_order_edge_and_clv_and_the_equity_series(tmp_path):
    ledger = await trade_and_snapshot(tmp_path)
    with closing(connect_readonly(db_path(tmp_path))) as conn:
        data = report.html_data(conn, caps={"RISK_MAX_DAILY_LOSS": D(25)}, caps_source="test")
    assert [(t.market, t.intent, t.price) for t in data.trades] == [
        ("won", "BUY_LONG", D("0.40")), ("lost", "BUY_SHORT", D("0.60")),
        ("open", "BUY_LONG", D("0.50"))]
    assert [t.edge for t in data.trades] == [D("0.03")] * 3  # the signal's, kept on the order
    # CLV as the text report defines it: long 0.40 vs close 0.48; short 0.60 vs close 0.62
    assert [t.clv for t in data.trades] == [D("0.08"), D("-0.02"), None]
    assert [(p.equity, p.usd_at_risk) for p in data.equity] == [(ledger.equity, D(0)),
                                                                  (ledger.equity, D("15.5"))]
    assert data.report["summary"]["pnl"] == ledger.pnl


async def test_the_page_embeds_plotly_and_shows_the_trades_and_settled_markets(tmp_path):
    await trade_and_snapshot(tmp_path)
    with closing(connect_readonly(db_path(tmp_path))) as conn:
        data = report.html_data(conn, caps={"RISK_MAX_PORTFOLIO_EXPOSURE": D(250)},
                                caps_source="from the test")
    page = render_html(data)
    assert "<script src=" not in page  # plotly.js inside: opens offline
    assert page.count("Plotly.newPlot") == 7
    trades = re.search(r'<table id="trades">.*?</table>', page, re.S)
    assert trades is not None
    rows = re.findall(r"<tr><td.*?</tr>", trades.group(0))
    assert len(rows) == 3
    # numbers as the text report shows them: price to 4 places, fee to 2
    assert '<td class="text">won</td><td class="text">BUY_LONG</td><td>10.00</td>' \
           '<td>0.4000</td><td>0.17</td>' in rows[0]
    assert "edge at entry vs realised result (2 settled markets)" in page
    assert "RISK_MAX_PORTFOLIO_EXPOSURE 250.00 (from the test)" in page


async def test_report_html_without_a_path_writes_report_html_in_the_current_folder(
        tmp_path, monkeypatch, capsys):
    await trade_some(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "--data-dir", str(tmp_path / "data"), "--html", "--json"]) == 0
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert '"summary"' in capsys.readouterr().out  # --json still prints the JSON


def test_the_league_is_the_slugs_second_segment_or_other():
    assert league_of("aec-nba-bos-nyk-2026-11-28") == "nba"
    assert league_of("aec-NHL-tor-mtl-2026-11-28") == "nhl"
    assert league_of("won") == league_of("a-b") == "other"


def test_drawdown_is_the_fall_from_the_highest_snapshot_before_it():
    points = [EquityPoint(str(i), D(e), None) for i, e in enumerate(["100", "110", "99", "120"])]
    assert drawdowns(points) == [ZERO, ZERO, D("-0.1"), ZERO]


def test_edge_at_entry_is_contract_weighted_over_opening_fills_with_an_edge():
    def fill(market, intent, qty, edge):
        return Trade("t", market, intent, D(qty), D("0.5"), ZERO, True, None,
                     None if edge is None else D(edge), None)

    assert edge_at_entry([fill("m", "BUY_LONG", "10", "0.02"), fill("m", "BUY_LONG", "30", "0.06"),
                          fill("m", "SELL_LONG", "40", "0.50"), fill("n", "BUY_SHORT", "5", None)]
                         ) == {"m": D("0.05")}
