"""`python -m polybot report [--json]`: what the bot did, read from its database alone.

Needs only `DATA_DIR` and opens the database read-only (a URI `mode=ro` connection), so it is
safe while a bot is writing it and works with a broken configuration. Equity and P&L come from
the same `Ledger` arithmetic the bot uses (restored from the committed ledger rows), so the report
cannot disagree with the bot about what a position is worth.

Closing-line value (CLV) of an opening fill is how much better the entry was than the market's
last fair value before it closed, per contract, on the side bought: BUY_LONG at p gains
q_close − p, BUY_SHORT at p gains p − q_close (the NO side cost 1 − p and was worth 1 − q_close).
Positive CLV over many trades is the sign the edge is real, whatever the results of single games.

Each settled market (the exchange published its value and the ledger booked it) is **won**,
**lost** or a **push** by its net P&L (realized, fees included, at the published value: a
cancelled or voided game counts as the exchange settled it, e.g. at 0.5 or the last fair price);
a market closed out by trading before it settled is **closed**, one still held is **open**.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Mapping
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from polybot.ledger import Ledger
from polybot.model import ZERO, Intent
from polybot.report_html import DayPnl, EquityPoint, HtmlReportData, Trade, render_html
from polybot.report_html import fmt as _fmt
from polybot.store import connect_readonly, db_path, read_ledger_state


def build(conn: sqlite3.Connection) -> dict[str, Any]:
    """The report as plain data (Decimals kept; `main` renders it)."""
    state = read_ledger_state(conn)
    ledger = Ledger.restore(state) if state is not None else Ledger()
    markets = ledger.markets

    per_market: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "fills": 0, "contracts": ZERO, "notional": ZERO, "clv_qty": ZERO, "clv_sum": ZERO})
    closing_q = {r["market_slug"]: Decimal(r["q"])
                 for r in conn.execute("SELECT market_slug, q FROM fair_values")}
    for r in conn.execute("SELECT market_slug, intent, qty, price FROM fills ORDER BY id"):
        m = per_market[r["market_slug"]]
        qty, price = Decimal(r["qty"]), Decimal(r["price"])
        m["fills"] += 1
        m["contracts"] += qty
        m["notional"] += qty * price
        q = closing_q.get(r["market_slug"])
        intent = Intent[r["intent"]]
        if q is not None and intent.is_opening:
            m["clv_qty"] += qty
            m["clv_sum"] += qty * fill_clv(intent, price, q)

    rows = []
    totals: dict[str, Any] = {"wins": 0, "losses": 0, "pushes": 0, "closed": 0,
                              "clv_qty": ZERO, "clv_sum": ZERO}
    for slug in sorted(set(markets) | set(per_market)):
        mb = markets.get(slug)
        stats = per_market[slug]
        if not stats["fills"] and (mb is None or (mb.net_qty == 0 and mb.realized_pnl == 0
                                                  and mb.fees == 0)):
            continue  # a market the ledger only marked, never traded
        realized = mb.realized_pnl if mb else ZERO
        fees = mb.fees if mb else ZERO
        net_qty = mb.net_qty if mb else ZERO
        unrealized = ledger.unrealized_pnl(slug)
        net = realized - fees + unrealized
        result = settled_result(net_qty, mb.settled_value if mb else None, net)
        counted = {"won": "wins", "lost": "losses", "push": "pushes", "closed": "closed"}
        if result in counted:
            totals[counted[result]] += 1
        totals["clv_qty"] += stats["clv_qty"]
        totals["clv_sum"] += stats["clv_sum"]
        rows.append({
            "market": slug, "position": net_qty, "avg_price": mb.avg_price if mb else ZERO,
            "mark": ledger.mark_price(slug), "settled": mb.settled_value if mb else None,
            "fills": stats["fills"], "contracts": stats["contracts"], "realized": realized,
            "unrealized": unrealized, "fees": fees, "net": net, "result": result,
            "closing_fair": closing_q.get(slug),
            "clv": stats["clv_sum"] / stats["clv_qty"] if stats["clv_qty"] else None,
        })

    rejections = {r["reason"]: r["n"] for r in conn.execute(
        "SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason ORDER BY n DESC, reason")}
    orders = {r["state"]: r["n"] for r in conn.execute(
        "SELECT state, COUNT(*) AS n FROM orders GROUP BY state ORDER BY state")}
    last = conn.execute("SELECT ts FROM equity_snapshots ORDER BY id DESC LIMIT 1").fetchone()
    return {
        "summary": {
            "cash": ledger.cash, "equity": ledger.equity, "initial_cash": ledger.initial_cash,
            "net_transfers": ledger.net_transfers, "pnl": ledger.pnl,
            "realized": ledger.realized_pnl, "unrealized": ledger.unrealized_pnl(),
            "fees": ledger.fees_total, "high_water": _high_water(conn),
            "wins": totals["wins"], "losses": totals["losses"], "pushes": totals["pushes"],
            "closed_out": totals["closed"],
            "clv": totals["clv_sum"] / totals["clv_qty"] if totals["clv_qty"] else None,
            "last_equity_snapshot": last["ts"] if last else None,
        },
        "markets": rows,
        "rejections": rejections,
        "orders": orders,
    }


def fill_clv(intent: Intent, price: Decimal, closing_q: Decimal) -> Decimal:
    """Closing-line value per contract of an opening fill at `price` (the long side's price)."""
    return closing_q - price if intent is Intent.BUY_LONG else price - closing_q


def html_data(conn: sqlite3.Connection, *, caps: dict[str, Any], caps_source: str,
              title: str = "polybot report") -> HtmlReportData:
    """`build` and the series the HTML report draws, as plain data (`report_html` renders it)."""
    closing_q = {r["market_slug"]: Decimal(r["q"])
                 for r in conn.execute("SELECT market_slug, q FROM fair_values")}
    equity = [EquityPoint(r["ts"], Decimal(r["equity"]), _dec(r["usd_at_risk"]))
              for r in conn.execute("SELECT ts, equity, usd_at_risk FROM equity_snapshots "
                                    "ORDER BY id")]
    days = [DayPnl(r["day"], _dec(r["pnl"]))
            for r in conn.execute("SELECT day, pnl FROM daily_stats ORDER BY day")]
    trades = []
    # the edge the strategy computed for the order (orders.edge), by the fill's local order id
    for r in conn.execute("SELECT f.ts, f.market_slug, f.intent, f.qty, f.price, f.fee, f.is_taker,"
                          " f.fair_q, o.edge FROM fills f LEFT JOIN orders o"
                          " ON o.local_id = f.local_id ORDER BY f.id"):
        intent, price, q = Intent[r["intent"]], Decimal(r["price"]), closing_q.get(r["market_slug"])
        trades.append(Trade(
            ts=r["ts"], market=r["market_slug"], intent=r["intent"], qty=Decimal(r["qty"]),
            price=price, fee=Decimal(r["fee"]), is_taker=bool(r["is_taker"]),
            fair_q=_dec(r["fair_q"]), edge=_dec(r["edge"]),
            clv=fill_clv(intent, price, q) if q is not None and intent.is_opening else None))
    return HtmlReportData(title=title, report=build(conn), equity=equity, days=days,
                          trades=trades, caps=caps, caps_source=caps_source)


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value not in (None, "") else None


def settled_result(net_qty: Decimal, settled_value: Decimal | None, net: Decimal) -> str:
    """won / lost / push for a settled market; closed (traded out, unsettled); open (held)."""
    if net_qty != 0:
        return "open"
    if settled_value is None:
        return "closed"
    return "won" if net > 0 else "lost" if net < 0 else "push"


def _high_water(conn: Any) -> Decimal | None:
    """The trading state's high-water mark (its persisted halt state), if it has one."""
    row = conn.execute("SELECT data FROM halt_state LIMIT 1").fetchone()
    if row is None or not row["data"]:
        return None
    value = json.loads(row["data"]).get("high_water_mark")
    return Decimal(value) if value is not None else None


def render(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    out = [
        "polybot report",
        "",
        f"equity {_fmt(s['equity'])}  cash {_fmt(s['cash'])}  P&L {_fmt(s['pnl'])}"
        f"  (realized {_fmt(s['realized'])}, unrealized {_fmt(s['unrealized'])},"
        f" fees {_fmt(s['fees'])})",
        f"start {_fmt(s['initial_cash'])}  transfers {_fmt(s['net_transfers'])}"
        f"  high-water {_fmt(s['high_water'])}",
        f"settled markets won {s['wins']}  lost {s['losses']}  push {s['pushes']}"
        f"  (closed out before settling {s['closed_out']})"
        f"  closing-line value {_fmt(s['clv'], 4)} per contract",
        "",
    ]
    cols = [("market", 34, "market", None), ("position", 10, "pos", 2), ("avg_price", 7, "avg", 4),
            ("mark", 7, "mark", 4), ("settled", 7, "settled", 4), ("fills", 5, "fills", None), ("realized", 10, "realized", 2),
            ("unrealized", 10, "unreal.", 2), ("fees", 8, "fees", 2), ("net", 10, "net", 2),
            ("result", 6, "result", None), ("closing_fair", 7, "close q", 4),
            ("clv", 7, "CLV", 4)]
    out.append(" ".join(h.rjust(w) if i else h.ljust(w) for i, (_, w, h, _) in enumerate(cols)))
    for row in report["markets"]:
        cells = []
        for i, (key, width, _, places) in enumerate(cols):
            text = _fmt(row[key], places) if places is not None else _fmt(row[key])
            cells.append(text.rjust(width) if i else text[:width].ljust(width))
        out.append(" ".join(cells))
    if not report["markets"]:
        out.append("(no fills yet)")
    out.append("")
    out.append("rejections by reason: " + (", ".join(
        f"{k} {v}" for k, v in report["rejections"].items()) or "none"))
    out.append("orders by state: " + (", ".join(
        f"{k} {v}" for k, v in report["orders"].items()) or "none"))
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def main(data_dir: Path, as_json: bool = False, *, out: TextIO | None = None,
         html: Path | None = None, caps: dict[str, Any] | None = None,
         caps_source: str = "") -> int:
    """Print the report (a table, or JSON); with `html`, write the HTML report there instead of
    the table (JSON is still printed with `as_json`)."""
    out = out or sys.stdout
    path = db_path(Path(data_dir))
    try:
        conn = connect_readonly(path)
    except FileNotFoundError:
        print(f"polybot report: no database at {path} (has the bot run with this DATA_DIR?)",
              file=sys.stderr)
        return 1
    report: Mapping[str, Any]
    try:
        with closing(conn):
            if html is None:
                report, page = build(conn), None
            else:  # the page's data holds the report: built once
                data = html_data(conn, caps=caps or {}, caps_source=caps_source or "no caps given",
                                 title=f"polybot report: {Path(data_dir).resolve().name}")
                report, page = data.report, render_html(data)
    except sqlite3.Error as exc:
        print(f"polybot report: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    if page is not None and html is not None:
        try:
            html.write_text(page, encoding="utf-8")
        except OSError as exc:
            print(f"polybot report: cannot write {html}: {exc.strerror}", file=sys.stderr)
            return 1
    if as_json:
        out.write(json.dumps(_jsonable(report), indent=2) + "\n")
    elif page is not None:
        out.write(f"polybot report: wrote {html} (open it in a browser; it needs no network)\n")
    else:
        out.write(render(report) + "\n")
    return 0
