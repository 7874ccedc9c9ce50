"""The report as one self-contained HTML file: plotly charts and the trades table, offline.

It takes plain data (`HtmlReportData`), never a database: `python -m polybot report --html` builds
that data from a DATA_DIR (`report.html_data`), and a backtest can build it from a replay. Plotly
draws every chart and its JavaScript is embedded once in the file (`include_plotlyjs=True` on the
first figure), so the page opens with no network. Plotly is imported inside `render_html`: the
text report (`report`), which imports this module for its number format, starts without it.

Money stays Decimal until it is handed to a chart (plotly plots floats); every number shown as
text (summary, tables, hover labels) goes through `fmt`, the text report's format.

What the store keeps decides what can be drawn (docs/design-notes.md "HTML report"):
- equity and the portfolio's USD at risk are snapshots (`equity_snapshots`, one a minute of the
  bot's clock and one at shutdown), so the curves are as fine as those snapshots; the drawdown is
  measured between snapshots, while the bot's halt watches its high-water mark continuously;
- USD at risk per market, per event and the count of positions are not kept over time, so their
  caps are listed, not drawn;
- the caps in force during a run are not kept either: the page draws the caps it is given and says
  where they came from (for `report`, the RISK_* settings of its own environment);
- the league of a market is not stored: `league_of` reads it from the slug (display only).
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from polybot.model import ZERO, Intent


@attrs.frozen
class EquityPoint:
    ts: str  # ISO 8601, as stored
    equity: Decimal
    usd_at_risk: Decimal | None  # across all markets (open positions and orders)


@attrs.frozen
class DayPnl:
    day: str
    pnl: Decimal | None


@attrs.frozen
class Trade:
    """One fill, with what the bot knew when it placed the order."""
    ts: str
    market: str
    intent: str  # an `Intent` name
    qty: Decimal
    price: Decimal  # of the long side, as the exchange quotes it
    fee: Decimal
    is_taker: bool
    fair_q: Decimal | None  # fair probability of the long side at the fill
    edge: Decimal | None  # the edge the strategy computed for its order (net of fees)
    clv: Decimal | None  # closing-line value per contract (report.fill_clv), opening fills only


@attrs.frozen
class HtmlReportData:
    title: str
    report: Mapping[str, Any]  # `report.build`'s dict: summary, markets, rejections, orders
    equity: Sequence[EquityPoint]
    days: Sequence[DayPnl]
    trades: Sequence[Trade]
    caps: Mapping[str, Any]  # RISK_* name -> value (Decimal, or int for RISK_MAX_POSITIONS)
    caps_source: str  # where the caps came from, said on the page
    notes: Sequence[str] = ()  # lines said under the title (a backtest: what was replayed, how)


def fmt(value: Any, places: int = 2) -> str:
    """A number as the text report shows it: grouped thousands, fixed places, "-" for none."""
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value:,.{places}f}"
    return str(value)


def league_of(slug: str) -> str:
    """The league segment of a Polymarket US market slug (`aec-nba-bos-nyk-2026-11-28` -> nba).

    For display only: the store keeps no league, and the exchange says slugs are no contract
    (reference: polymarket-us-discovery.md), so a slug of another shape is "other"."""
    parts = slug.split("-")
    return parts[1].lower() if len(parts) >= 3 and parts[1].isalnum() else "other"


def edge_at_entry(trades: Sequence[Trade]) -> dict[str, Decimal]:
    """Per market, the contract-weighted edge of its opening fills (those whose order kept one)."""
    qty: dict[str, Decimal] = defaultdict(lambda: ZERO)
    weighted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for t in trades:
        if t.edge is not None and Intent[t.intent].is_opening:
            qty[t.market] += t.qty
            weighted[t.market] += t.qty * t.edge
    return {m: weighted[m] / q for m, q in qty.items() if q}


def drawdowns(equity: Sequence[EquityPoint]) -> list[Decimal]:
    """Each snapshot's fall from the highest equity snapshot before it, as a fraction (<= 0)."""
    out, high = [], None
    for p in equity:
        high = p.equity if high is None or p.equity > high else high
        out.append((p.equity - high) / high if high > 0 else ZERO)
    return out


# --- rendering ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1em auto; padding: 0 1em; max-width: 1200px;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
.summary { font-family: ui-monospace, monospace; white-space: pre-wrap; background: #f6f6f6;
           padding: .8em; }
.note { color: #666; font-size: .9em; }
table { border-collapse: collapse; font-size: .85em; font-family: ui-monospace, monospace; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; white-space: nowrap; }
.empty { color: #666; font-style: italic; }
.scroll { overflow-x: auto; }
"""

_MARKET_COLS = [("market", "market", None), ("league", "league", None), ("position", "pos", 2),
                ("avg_price", "avg", 4), ("mark", "mark", 4), ("settled", "settled", 4),
                ("fills", "fills", None), ("realized", "realized", 2),
                ("unrealized", "unreal.", 2), ("fees", "fees", 2), ("net", "net", 2),
                ("result", "result", None), ("closing_fair", "close q", 4), ("clv", "CLV", 4)]


def _f(value: Decimal | None) -> float | None:
    """Decimal -> float, at the point of plotting only."""
    return None if value is None else float(value)


def render_html(data: HtmlReportData) -> str:
    """The whole page: one string, plotly's JavaScript inside."""
    import plotly.graph_objects as go  # a few hundred ms: only when a page is drawn
    from plotly.subplots import make_subplots

    charts: list[str] = []

    def chart(fig: Any, div_id: str) -> str:
        fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40})
        charts.append(div_id)
        return str(fig.to_html(full_html=False, include_plotlyjs=len(charts) == 1,
                               div_id=div_id, config={"displaylogo": False}))

    report, caps = data.report, data.caps
    markets = list(report["markets"])
    parts: list[str] = []

    # equity and drawdown
    ts = [p.ts for p in data.equity]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                        vertical_spacing=0.08, subplot_titles=("equity (USD)", "drawdown"))
    fig.add_trace(go.Scatter(x=ts, y=[_f(p.equity) for p in data.equity], name="equity",
                             mode="lines+markers",
                             hovertext=[fmt(p.equity) for p in data.equity],
                             hoverinfo="x+text"), row=1, col=1)
    dd = drawdowns(data.equity)
    fig.add_trace(go.Scatter(x=ts, y=[_f(d) for d in dd], name="drawdown", mode="lines+markers",
                             fill="tozeroy", hovertext=[fmt(d * 100, 2) + " %" for d in dd],
                             hoverinfo="x+text"), row=2, col=1)
    if "RISK_MAX_DRAWDOWN_PCT" in caps and ts:
        cap = -caps["RISK_MAX_DRAWDOWN_PCT"]
        fig.add_trace(go.Scatter(x=[ts[0], ts[-1]], y=[_f(cap)] * 2, mode="lines",
                                 name="RISK_MAX_DRAWDOWN_PCT", line={"dash": "dash"}), row=2, col=1)
    fig.update_yaxes(tickformat=".1%", row=2, col=1)
    fig.update_layout(height=520, title=f"equity curve and drawdown ({len(ts)} snapshots)")
    parts.append(chart(fig, "equity"))

    # USD at risk against the caps
    risk = [p for p in data.equity if p.usd_at_risk is not None]
    fig = go.Figure(go.Scatter(x=[p.ts for p in risk], y=[_f(p.usd_at_risk) for p in risk],
                               name="USD at risk, all markets", mode="lines+markers",
                               hovertext=[fmt(p.usd_at_risk) for p in risk], hoverinfo="x+text"))
    if "RISK_MAX_PORTFOLIO_EXPOSURE" in caps and risk:
        fig.add_trace(go.Scatter(x=[risk[0].ts, risk[-1].ts], mode="lines",
                                 y=[_f(caps["RISK_MAX_PORTFOLIO_EXPOSURE"])] * 2,
                                 name="RISK_MAX_PORTFOLIO_EXPOSURE", line={"dash": "dash"}))
    fig.update_layout(height=360, title="USD at risk against RISK_MAX_PORTFOLIO_EXPOSURE")
    parts.append(chart(fig, "at-risk"))

    days = [d for d in data.days if d.pnl is not None]
    fig = go.Figure(go.Bar(x=[d.day for d in days], y=[_f(d.pnl) for d in days], name="day's P&L",
                           hovertext=[fmt(d.pnl) for d in days], hoverinfo="x+text"))
    if "RISK_MAX_DAILY_LOSS" in caps and days:
        fig.add_hline(y=_f(-caps["RISK_MAX_DAILY_LOSS"]), line_dash="dash", line_color="red",
                      annotation_text="−RISK_MAX_DAILY_LOSS", annotation_position="bottom left")
    fig.update_xaxes(type="category")
    fig.update_layout(height=320, title="P&L by day against RISK_MAX_DAILY_LOSS")
    parts.append(chart(fig, "daily"))
    parts.append(_caps_note(data))

    # P&L by market and by league
    fig = go.Figure(go.Bar(y=[r["market"] for r in markets], x=[_f(r["net"]) for r in markets],
                           orientation="h", name="net P&L",
                           hovertext=[f"{r['result']}: net {fmt(r['net'])} (realized "
                                      f"{fmt(r['realized'])}, unrealized {fmt(r['unrealized'])}, "
                                      f"fees {fmt(r['fees'])})" for r in markets],
                           hoverinfo="y+text"))
    fig.update_layout(height=max(300, 60 + 28 * len(markets)),
                      yaxis={"automargin": True, "autorange": "reversed"},  # the tables' order
                      title="P&L by market (net of fees, USD)")
    parts.append(chart(fig, "pnl-market"))

    by_league: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for r in markets:
        by_league[league_of(r["market"])] += r["net"]
    leagues = sorted(by_league)
    fig = go.Figure(go.Bar(x=leagues, y=[_f(by_league[k]) for k in leagues], name="net P&L",
                           hovertext=[fmt(by_league[k]) for k in leagues], hoverinfo="x+text"))
    fig.update_layout(height=320, title="P&L by league (the league read from the market's slug)")
    parts.append(chart(fig, "pnl-league"))

    # edge at entry vs the realised result of each settled market
    edges = edge_at_entry(data.trades)
    settled = [r for r in markets if r["result"] in ("won", "lost", "push") and r["market"] in edges]
    fig = go.Figure(go.Scatter(
        x=[_f(edges[r["market"]]) for r in settled], y=[_f(r["net"]) for r in settled],
        mode="markers", name="settled market", text=[r["market"] for r in settled],
        hovertext=[f"{r['market']}: edge {fmt(edges[r['market']], 4)}, {r['result']} "
                   f"{fmt(r['net'])}" for r in settled], hoverinfo="text"))
    fig.update_layout(height=360, xaxis_title="edge at entry (probability points, net of fees)",
                      yaxis_title="realised net P&L (USD)",
                      title=f"edge at entry vs realised result ({len(settled)} settled markets)")
    if not settled:
        fig.add_annotation(text="no settled market yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    parts.append(chart(fig, "edge-result"))

    # closing-line value
    clvs = [t for t in data.trades if t.clv is not None]
    fig = go.Figure(go.Histogram(x=[_f(t.clv) for t in clvs], name="opening fills",
                                 nbinsx=min(40, max(5, len(clvs)))))
    fig.update_layout(height=340, xaxis_title="CLV per contract (closing fair − price, side bought)",
                      yaxis_title="fills", title=f"closing-line value of {len(clvs)} opening fills "
                      f"(contract-weighted mean {fmt(report['summary']['clv'], 4)})")
    parts.append(chart(fig, "clv"))

    head = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(data.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(data.title)}</h1>"
            + "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in data.notes) +
            f"<div class=\"summary\">{html.escape(_summary(report))}</div>")
    tables = (f"<h2>Markets</h2>{_markets_table(markets)}"
              f"<h2>Trades ({len(data.trades)} fills)</h2>{_trades_table(data.trades)}")
    return head + "\n".join(parts) + tables + "</body></html>\n"


def _summary(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    return "\n".join([
        f"equity {fmt(s['equity'])}  cash {fmt(s['cash'])}  P&L {fmt(s['pnl'])}"
        f"  (realized {fmt(s['realized'])}, unrealized {fmt(s['unrealized'])},"
        f" fees {fmt(s['fees'])})",
        f"start {fmt(s['initial_cash'])}  transfers {fmt(s['net_transfers'])}"
        f"  high-water {fmt(s['high_water'])}",
        f"settled markets won {s['wins']}  lost {s['losses']}  push {s['pushes']}"
        f"  (closed out before settling {s['closed_out']})"
        f"  closing-line value {fmt(s['clv'], 4)} per contract",
        "rejections by reason: " + (", ".join(
            f"{k} {v}" for k, v in report["rejections"].items()) or "none"),
        "orders by state: " + (", ".join(
            f"{k} {v}" for k, v in report["orders"].items()) or "none"),
    ])


def _caps_note(data: HtmlReportData) -> str:
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in data.caps.items()) or "none known"
    return (f"<p class=\"note\">Caps drawn: {html.escape(shown)} ({html.escape(data.caps_source)})."
            " USD at risk per market (RISK_MAX_POSITION_PER_MARKET), per event"
            " (RISK_MAX_CORRELATED_EXPOSURE) and the count of positions (RISK_MAX_POSITIONS) are"
            " not kept over time by the store, so they are not drawn; the portfolio's USD at risk"
            " and equity are its snapshots (about one a minute).</p>")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str,
           text_cols: int = 1) -> str:
    if not rows:
        return f"<p class=\"empty\" id=\"{table_id}-empty\">(none yet)</p>"
    out = [f"<div class=\"scroll\"><table id=\"{table_id}\"><thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td class=\"text\">{html.escape(c)}</td>" if i < text_cols
            else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _markets_table(markets: Sequence[Mapping[str, Any]]) -> str:
    rows = [[league_of(r["market"]) if key == "league" else
             fmt(r[key], places) if places is not None else fmt(r[key])
             for key, _, places in _MARKET_COLS] for r in markets]
    return _table([h for _, h, _ in _MARKET_COLS], rows, "markets", text_cols=2)


def _trades_table(trades: Sequence[Trade]) -> str:
    headers = ["time", "market", "side", "qty", "price", "fee", "taker", "fair q", "edge", "CLV"]
    rows = [[t.ts, t.market, t.intent, fmt(t.qty), fmt(t.price, 4), fmt(t.fee),
             "yes" if t.is_taker else "no", fmt(t.fair_q, 4), fmt(t.edge, 4), fmt(t.clv, 4)]
            for t in trades]
    return _table(headers, rows, "trades", text_cols=3)
