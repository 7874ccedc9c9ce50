"""The live dashboard on the health app: one page, its data, and the operator's buttons.

`GET /dashboard` is a static page (no figure in it) that polls `GET /dashboard/data` every second
and draws with plotly, whose `plotly.min.js` ships inside the `plotly` package and is served from
there (`/dashboard/plotly.min.js`, cached): no CDN, works offline, no build step. Every figure of
one poll comes from one status report, the one `/status?snapshot=N` returns for the snapshot id
the page shows, so the page never mixes two moments. Numbers are formatted here, in Python, by the
text report's `fmt` (Decimal in, grouped thousands and fixed places out): the browser never does
money arithmetic. The equity curves (today, since start) and the last fills are read from the
store's database read-only, in a worker thread, at most every `HISTORY_SECONDS`.

**Operator actions** (halt, resume, cancel-all, flatten) exist only when `DASHBOARD_TOKEN` is set,
and they only leave the same requests the CLI leaves (`polybot.operator`: the KILL file, the RESUME
request, `requests/<id>.json` and the bot's acknowledgement in its store); nothing here touches a
component of the bot. A POST is accepted only when all of these hold (see docs/design-notes.md,
"Dashboard"):

- its Host is a loopback name or HEALTH_HOST (a DNS-rebinding page has its own host name);
- its Origin is this Host (a cross-site form or fetch carries its own origin);
- it carries this process's CSRF token (`X-CSRF-Token`, written into the page: another site cannot
  read it) and the DASHBOARD_TOKEN (`Authorization: Bearer`, typed by the operator into the page,
  kept in the page's memory only, never rendered by the server). Both are custom headers, so a
  cross-site request needs a CORS preflight this app never grants.

Without DASHBOARD_TOKEN the page has no button and every POST is refused with 403.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import attrs
import trio

from polybot import control
from polybot import operator as operator_requests
from polybot.report_html import fmt
from polybot.store import connect_readonly, db_path

log = logging.getLogger(__name__)

ACTIONS = ("halt", "resume", "cancel-all", "flatten")
POLL_MS = 1000  # the page's refresh: the issue asks for at least every 2 s
HISTORY_SECONDS = 2.0  # the store is read at most this often
SINCE_START_POINTS = 720  # the since-start curve is thinned to about this many points
LAST_FILLS = 15
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@attrs.frozen
class DashboardConfig:
    """What the dashboard needs of the settings (the health app never sees Settings)."""

    data_dir: Path
    token: str | None = attrs.field(default=None, repr=False)  # DASHBOARD_TOKEN, revealed
    health_host: str = "127.0.0.1"

    @property
    def allowed_hosts(self) -> frozenset[str]:
        wildcard = self.health_host in ("0.0.0.0", "::", "")
        return LOOPBACK_HOSTS | (frozenset() if wildcard else {self.health_host.lower()})


@attrs.frozen
class Refusal:
    status: int
    reason: str


class Dashboard:
    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.csrf = secrets.token_urlsafe(32)  # per process: a page from an earlier run is refused
        self._history: dict[str, Any] = {"today": [], "since_start": [], "fills": []}
        self._history_at = -1e18
        self._history_lock = trio.Lock()

    @property
    def actions(self) -> bool:
        return self.config.token is not None

    # --- the page ---------------------------------------------------------------------------------

    def page(self) -> bytes:
        actions = ""
        if self.actions:
            buttons = "".join(f'<button type="button" data-action="{a}">{a}</button>'
                              for a in ACTIONS)
            actions = ACTIONS_HTML.replace("{buttons}", buttons)
        return (PAGE.replace("{csrf}", html.escape(self.csrf))
                .replace("{poll_ms}", str(POLL_MS))
                .replace("{actions}", actions).encode())

    # --- the data ---------------------------------------------------------------------------------

    async def data(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """The page's model of one status report (`report`: /status's JSON, snapshot id inside)."""
        extra = report.get("extra") or {}
        day = extra.get("day") or {}
        history = await self.history(day.get("start"))
        return view(report, history, actions=self.actions)

    async def history(self, day_start: str | None) -> dict[str, Any]:
        async with self._history_lock:
            now = trio.current_time()
            if now - self._history_at >= HISTORY_SECONDS:
                self._history = await trio.to_thread.run_sync(
                    read_history, self.config.data_dir, day_start)
                self._history_at = now
            return self._history

    # --- actions ----------------------------------------------------------------------------------

    def refuse(self, headers: Mapping[str, str]) -> Refusal | None:
        """None when a POST may act; else why not (every check, see the module's docstring)."""
        token = self.config.token
        if token is None:
            return Refusal(403, "read-only dashboard: DASHBOARD_TOKEN is not set")
        host = headers.get("host", "")
        if _hostname(host) not in self.config.allowed_hosts:
            return Refusal(403, "host not allowed")
        origin = headers.get("origin")
        if origin not in (f"http://{host}", f"https://{host}"):
            return Refusal(403, "cross-origin request refused")
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return Refusal(403, "cross-site request refused")
        if not hmac.compare_digest(headers.get("x-csrf-token", "").encode(), self.csrf.encode()):
            return Refusal(403, "missing or stale CSRF token: reload the page")
        bearer = headers.get("authorization", "")
        given = bearer[7:] if bearer.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Refusal(403, "wrong dashboard token")
        return None

    def act(self, kind: str) -> dict[str, Any]:
        """Leave the operator request `kind` exactly as the CLI would; what the page shows."""
        data_dir = self.config.data_dir
        log.warning("dashboard: operator %s requested", kind)
        if kind == "halt":
            control.write_kill_file(data_dir, "halted by operator (dashboard)")
            return {"action": kind, "request": None, "expect": "halted",
                    "message": "KILL file created: the bot halts and cancels its orders"}
        if kind == "resume":
            control.resume(data_dir)
            return {"action": kind, "request": None, "expect": "resumed",
                    "message": "KILL file removed and RESUME left (a daily-loss halt lasts until "
                               "the next trading day)"}
        request_id = operator_requests.write_request(data_dir, kind)
        return {"action": kind, "request": request_id, "expect": "ack",
                "message": f"{kind} requested; waiting for the bot's acknowledgement"}

    async def ack(self, request_id: str) -> dict[str, Any] | None:
        if not _REQUEST_ID.match(request_id):
            return None
        outcome = await trio.to_thread.run_sync(operator_requests.read_ack,
                                                self.config.data_dir, request_id)
        return {"request": request_id, "outcome": outcome}


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# --- reading the store ----------------------------------------------------------------------------


def read_history(data_dir: Path, day_start: str | None) -> dict[str, Any]:
    """Equity snapshots since `day_start` (ISO, UTC), since the start (thinned), the last fills."""
    try:
        conn = connect_readonly(db_path(data_dir))
    except (FileNotFoundError, sqlite3.Error):
        return {"today": [], "since_start": [], "fills": []}
    with closing(conn):
        try:
            first, last = conn.execute(
                "SELECT MIN(id), MAX(id) FROM equity_snapshots").fetchone()
            step = max(1, ((last or 0) - (first or 0)) // SINCE_START_POINTS)
            since_start = [(r[0], r[1]) for r in conn.execute(
                "SELECT ts, equity FROM equity_snapshots WHERE (id - ?) % ? = 0 OR id = ?"
                " ORDER BY id", (first or 0, step, last or 0))]
            today = [(r[0], r[1]) for r in conn.execute(
                "SELECT ts, equity FROM equity_snapshots WHERE ts >= ? ORDER BY id",
                (day_start or "",))]
            fills = [dict(r) for r in conn.execute(
                "SELECT ts, market_slug, intent, qty, price, fee, is_taker FROM fills"
                " ORDER BY id DESC LIMIT ?", (LAST_FILLS,))]
        except sqlite3.Error as exc:  # a database being created or migrated: next poll
            log.debug("dashboard history not readable: %s", exc)
            return {"today": [], "since_start": [], "fills": []}
    return {"today": today, "since_start": since_start, "fills": fills}


# --- the model of the page -------------------------------------------------------------------------


def _d(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def qty(value: Any) -> str:
    """Contracts: whole numbers without places, fractions with two."""
    d = _d(value)
    if d is None:
        return "-"
    return fmt(d, 0) if d == d.to_integral_value() else fmt(d, 2)


def money(value: Any) -> str:
    return fmt(_d(value))


def price(value: Any) -> str:
    """A price: two places, four when it has more (a fair value, an average cost)."""
    d = _d(value)
    return fmt(d, 4) if d is not None and d != d.quantize(Decimal("0.01")) else fmt(d)


def _plot_time(ts: str) -> str:
    """An ISO time (UTC) as plotly reads dates: no offset (it draws the time as written)."""
    return ts[:19].replace("T", " ")


def _figure(value: Any) -> dict[str, Any]:
    return {"value": None if value is None else str(value), "text": money(value)}


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: Sequence[int] = ()) -> dict[str, Any]:
    return {"columns": list(columns), "rows": [list(r) for r in rows], "numeric": list(numeric)}


def _halt_clears(report: Mapping[str, Any]) -> str:
    trading = (report.get("extra") or {}).get("trading") or {}
    day = (report.get("extra") or {}).get("day") or {}
    parts = []
    for reason in trading.get("halt_reasons") or ():
        if reason == "kill_switch":
            parts.append("kill switch: until resume (`polybot resume` or the button)")
        elif reason == "daily_loss":
            end = day.get("end")
            parts.append("daily loss: at the next trading day"
                         + (f" ({_plot_time(end)} UTC)" if end else ""))
        elif reason == "drawdown":
            parts.append("drawdown: until resume")
    if report.get("trading_state") == "REDUCING":
        parts.append("reducing: only closing orders; "
                     + ("until resume" if trading.get("flatten_requested")
                        else "until USD at risk is back under the portfolio cap"))
    return "; ".join(parts)


def view(report: Mapping[str, Any], history: Mapping[str, Any], *,
         actions: bool) -> dict[str, Any]:
    """Everything the page shows, as text and chart series; built from one report."""
    extra: Mapping[str, Any] = report.get("extra") or {}
    pnl: Mapping[str, Any] = report.get("pnl") or {}
    risk: Mapping[str, Any] = extra.get("risk") or {}
    caps: Mapping[str, Any] = risk.get("caps") or {}
    trading: Mapping[str, Any] = extra.get("trading") or {}
    sup: Mapping[str, Any] = report.get("supervisor") or {}

    limits = [  # (name, used, cap, shown)
        ("portfolio at risk", _d(risk.get("portfolio")), _d(caps.get("portfolio")), money),
        ("positions", _d(risk.get("positions")), _d(caps.get("positions")), qty),
        ("daily loss", _d(risk.get("daily_loss")), _d(caps.get("daily_loss")), money),
        ("drawdown", _d(risk.get("drawdown")), _d(risk.get("drawdown_limit")), money),
    ]
    limit_rows = [{"name": name, "used": str(used) if used is not None else None,
                   "cap": str(cap) if cap is not None else None,
                   "pct": float(used / cap * 100) if used is not None and cap else 0.0,
                   "text": f"{shown(used)} of {shown(cap)}"}
                  for name, used, cap, shown in limits]

    def bars(totals: Mapping[str, Any]) -> dict[str, Any]:
        items = sorted(((k, _d(v) or Decimal(0)) for k, v in totals.items()),
                       key=lambda kv: kv[1], reverse=True)[:20]
        return {"labels": [k for k, _ in items], "values": [float(v) for _, v in items],
                "text": [money(v) for _, v in items]}

    markets = report.get("markets") or []
    positions = extra.get("positions") or []
    orders = extra.get("open_orders") or []
    feeds: Mapping[str, Any] = extra.get("feeds") or {}
    universe = (extra.get("universe") or {}).get("by_phase") or {}
    now = extra.get("now")
    curve: dict[str, dict[str, list[Any]]] = {
        name: {"x": [_plot_time(ts) for ts, _ in history.get(name, [])],
                    "y": [float(Decimal(e)) for _, e in history.get(name, [])]}
             for name in ("today", "since_start")}
    if now is not None and pnl.get("equity") is not None:  # the live point ends both curves
        for series in curve.values():
            series["x"].append(_plot_time(now))
            series["y"].append(float(Decimal(str(pnl["equity"]))))
    return {
        "snapshot": report.get("snapshot"),
        "now": now,
        "mode": report.get("mode"),
        "instance": (report.get("extra") or {}).get("instance") or "",  # INSTANCE: the account
        "state": report.get("trading_state"),
        "reason": report.get("trading_reason") or "",
        "clears": _halt_clears(report),
        "flatten_requested": bool(trading.get("flatten_requested")),
        "halt_reasons": list(trading.get("halt_reasons") or ()),
        "supervisor": {"phase": sup.get("phase"), "restarts": sup.get("restarts"),
                       "uptime": sup.get("uptime")},
        "figures": {
            "equity": _figure(pnl.get("equity")), "cash": _figure(pnl.get("cash")),
            "daily": _figure(pnl.get("daily")), "realized": _figure(pnl.get("realized")),
            "unrealized": _figure(pnl.get("unrealized")), "fees": _figure(pnl.get("fees")),
            "at_risk": _figure(risk.get("portfolio")),
        },
        "limits": limit_rows,
        "risk_markets": {**bars(risk.get("by_market") or {}), "cap": float(
            _d(caps.get("market")) or 0)},
        "risk_events": {**bars(risk.get("by_event") or {}), "cap": float(
            _d(caps.get("event")) or 0)},
        "equity": curve,
        "positions": _table(
            ["market", "qty", "avg", "mark", "unrealised", "at risk"],
            [[p["market"], qty(p.get("qty")), price(p.get("avg_price")), price(p.get("mark")),
              money(p.get("unrealized")), money(p.get("at_risk"))] for p in positions],
            numeric=(1, 2, 3, 4, 5)),
        "orders": _table(
            ["market", "side", "price", "qty", "filled", "state"],
            [[o["market"], o.get("intent", ""), price(o.get("price")), qty(o.get("quantity")),
              qty(o.get("filled")), o.get("state", "")] for o in orders],
            numeric=(2, 3, 4)),
        "fills": _table(
            ["time", "market", "side", "qty", "price", "fee"],
            [[str(f.get("ts", ""))[11:19], f.get("market_slug", ""), f.get("intent", ""),
              qty(f.get("qty")), price(f.get("price")), money(f.get("fee"))]
             for f in history.get("fills", [])],
            numeric=(3, 4, 5)),
        "markets": _table(
            ["market", "phase", "bid", "ask", "fair", "edge", "pos", "state"],
            [[m["slug"], m.get("phase") or "", price(m.get("bid")), price(m.get("ask")),
              price(m.get("fair")), fmt(_d(m.get("edge")), 4), qty(m.get("position")),
              m.get("not_traded") or m.get("state") or ""] for m in markets],
            numeric=(2, 3, 4, 5, 6)),
        "feeds": _table(
            ["stream", "connected", "last frame", "frames", "reconnects"],
            [[name, "yes" if f.get("connected") else "NO",
              "-" if f.get("age") is None else f"{f['age']:.1f} s ago",
              str(f.get("frames", "")), str(f.get("reconnects", ""))]
             for name, f in feeds.items()],
            numeric=(3, 4)),
        "universe": _table(["phase", "markets"],
                           [[phase, str(n)] for phase, n in universe.items()], numeric=(1,)),
        "errors": list(report.get("recent_errors") or [])[-5:],
        "actions": actions,
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


ACTIONS_HTML = """
<section id="actions" class="card wide">
  <h2>Operator actions</h2>
  <p class="note">They leave the same requests as the CLI (<code>polybot halt</code>,
  <code>resume</code>, <code>cancel-all</code>, <code>flatten</code>). The token is kept in this
  page only.</p>
  <label>DASHBOARD_TOKEN <input id="token" type="password" autocomplete="off"></label>
  <div class="buttons">{buttons}</div>
  <p id="ack" role="status"></p>
</section>"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>polybot dashboard</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#f4f5f7;color:#222}
header{padding:8px 12px;background:#1f2933;color:#fff;display:flex;flex-wrap:wrap;gap:4px 16px;
align-items:baseline}
header h1{font-size:16px;margin:0}
#state{font-weight:700;padding:1px 8px;border-radius:4px}
#state.ACTIVE{background:#2f855a}#state.REDUCING{background:#b7791f}#state.HALTED{background:#c53030}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:10px;
padding:10px;max-width:1400px;margin:0 auto}
.card{background:#fff;border-radius:6px;padding:8px 10px;min-width:0;
box-shadow:0 1px 2px rgba(0,0,0,.1)}
.card h2{font-size:14px;margin:0 0 6px}
.wide{grid-column:1/-1}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(110px,1fr));gap:6px}
.figures div{background:#f4f5f7;border-radius:4px;padding:4px 6px}
.figures span{display:block;font-size:12px;color:#555}
.figures b{font-variant-numeric:tabular-nums;font-size:16px}
.chart{width:100%;height:240px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{padding:2px 6px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.note{font-size:12px;color:#555;margin:2px 0}
.buttons{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
button{padding:6px 12px;font-size:14px}
input{font-size:14px;max-width:100%}
#ack{font-weight:600;overflow-wrap:anywhere}
#stale{color:#c53030;font-weight:700}
code{overflow-wrap:anywhere}
</style></head>
<body>
<header><h1>polybot</h1><span id="instance"></span><span id="mode"></span><span id="state"></span>
<span id="reason"></span><span id="stale"></span>
<span class="note" style="color:#cbd2d9">snapshot <span id="snapshot">-</span>
 · <span id="now"></span> · <span id="sup"></span></span></header>
<main>
<section class="card wide"><p id="clears" class="note"></p>
<div class="figures">
<div><span>equity</span><b id="fig-equity">-</b></div>
<div><span>cash</span><b id="fig-cash">-</b></div>
<div><span>today's P&amp;L</span><b id="fig-daily">-</b></div>
<div><span>realised</span><b id="fig-realized">-</b></div>
<div><span>unrealised</span><b id="fig-unrealized">-</b></div>
<div><span>fees</span><b id="fig-fees">-</b></div>
<div><span>USD at risk</span><b id="fig-at_risk">-</b></div>
</div><ul id="errors" class="note"></ul></section>
{actions}
<section class="card"><h2>Limits (use against each cap)</h2><div id="limits" class="chart"></div>
</section>
<section class="card"><h2>Equity today (UTC)</h2><div id="equity-today" class="chart"></div></section>
<section class="card"><h2>Equity since start (UTC)</h2><div id="equity-all" class="chart"></div></section>
<section class="card"><h2>USD at risk per market</h2><div id="risk-markets" class="chart"></div>
</section>
<section class="card"><h2>USD at risk per event</h2><div id="risk-events" class="chart"></div>
</section>
<section class="card"><h2>Positions</h2><div class="scroll" id="positions"></div></section>
<section class="card"><h2>Open orders</h2><div class="scroll" id="orders"></div></section>
<section class="card"><h2>Last fills</h2><div class="scroll" id="fills"></div></section>
<section class="card wide"><h2>Markets: fair value against the book</h2>
<div class="scroll" id="markets"></div></section>
<section class="card"><h2>Feeds</h2><div class="scroll" id="feeds"></div></section>
<section class="card"><h2>Universe by phase</h2><div class="scroll" id="universe"></div></section>
</main>
<script src="/dashboard/plotly.min.js"></script>
<script>
"use strict";
const CSRF = "{csrf}", POLL_MS = {poll_ms};
const CONFIG = {displayModeBar: false, responsive: true};
const LAYOUT = {margin: {l: 50, r: 10, t: 10, b: 40}, autosize: true, showlegend: false,
                font: {size: 11}};
let last = null, expecting = null;

function text(id, value) { document.getElementById(id).textContent = value; }

function table(id, t) {
  const el = document.getElementById(id);
  if (!t.rows.length) { el.innerHTML = '<p class="note">none</p>'; return; }
  const tab = document.createElement("table"), head = tab.createTHead().insertRow();
  t.columns.forEach((c, i) => { const th = document.createElement("th"); th.textContent = c;
    if (t.numeric.includes(i)) th.className = "n"; head.appendChild(th); });
  const body = tab.createTBody();
  t.rows.forEach(r => { const tr = body.insertRow(); r.forEach((v, i) => {
    const td = tr.insertCell(); td.textContent = v; if (t.numeric.includes(i)) td.className = "n";
  }); });
  el.replaceChildren(tab);
}

function bars(id, b) {
  const shapes = b.cap ? [{type: "line", xref: "paper", x0: 0, x1: 1, y0: b.cap, y1: b.cap,
                           line: {color: "#c53030", dash: "dash"}}] : [];
  Plotly.react(id, [{type: "bar", x: b.labels, y: b.values, text: b.text, textposition: "auto",
                     marker: {color: "#3b6ea5"}}],
               {...LAYOUT, shapes, yaxis: {range: [0, Math.max(b.cap, ...b.values) * 1.1 || 1]},
                xaxis: {type: "category", showticklabels: b.labels.length <= 6, automargin: true}}, CONFIG);
}

function render(d) {
  last = d;
  text("snapshot", d.snapshot); text("now", (d.now || "").slice(0, 19).replace("T", " "));
  text("instance", d.instance); text("mode", d.mode); text("reason", d.reason); text("clears", d.clears);
  const st = document.getElementById("state"); st.textContent = d.state; st.className = d.state;
  text("sup", `${d.supervisor.phase}, restarts ${d.supervisor.restarts}`);
  for (const [k, f] of Object.entries(d.figures)) {
    const el = document.getElementById("fig-" + k); el.textContent = f.text;
    el.dataset.value = f.value === null ? "" : f.value;
  }
  const errs = document.getElementById("errors"); errs.replaceChildren(...d.errors.map(e => {
    const li = document.createElement("li"); li.textContent = e; return li; }));
  const lim = d.limits;
  Plotly.react("limits", [{type: "bar", orientation: "h", y: lim.map(l => l.name),
    x: lim.map(l => l.pct), text: lim.map(l => l.text), textposition: "auto",
    marker: {color: lim.map(l => l.pct >= 100 ? "#c53030" : l.pct >= 80 ? "#b7791f" : "#3b6ea5")}}],
    {...LAYOUT, margin: {...LAYOUT.margin, l: 110},
     xaxis: {range: [0, Math.max(110, ...lim.map(l => l.pct + 5))], ticksuffix: "%"},
     yaxis: {autorange: "reversed"},
     shapes: [{type: "line", yref: "paper", x0: 100, x1: 100, y0: 0, y1: 1,
               line: {color: "#c53030", dash: "dash"}}]}, CONFIG);
  for (const [id, key] of [["equity-today", "today"], ["equity-all", "since_start"]]) {
    Plotly.react(id, [{type: "scatter", mode: "lines+markers", x: d.equity[key].x,
                       y: d.equity[key].y, marker: {size: 4}}], {...LAYOUT}, CONFIG);
  }
  bars("risk-markets", d.risk_markets); bars("risk-events", d.risk_events);
  for (const id of ["positions", "orders", "fills", "markets", "feeds", "universe"]) {
    table(id, d[id]);
  }
  if (expecting && expecting.expect === "halted" && d.state === "HALTED"
      && d.halt_reasons.includes("kill_switch")) {
    ack(`halt: acknowledged, trading HALTED (${d.reason})`); expecting = null;
  } else if (expecting && expecting.expect === "resumed" && !d.halt_reasons.includes("kill_switch")
             && !d.flatten_requested) {
    ack(`resume: acknowledged, trading ${d.state}`); expecting = null;
  }
}

async function poll() {
  try {
    const r = await fetch("/dashboard/data", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json()); text("stale", "");
  } catch (e) { text("stale", "no answer from the bot"); }
  setTimeout(poll, POLL_MS);
}

function ack(message) { const el = document.getElementById("ack"); if (el) el.textContent = message; }

async function act(kind) {
  if ((kind === "flatten" || kind === "resume")
      && !window.confirm(`${kind}: are you sure?`)) return;
  const token = document.getElementById("token").value;
  ack(`${kind}: sending...`);
  let body;
  try {
    const r = await fetch("/dashboard/action/" + kind, {method: "POST", cache: "no-store",
      headers: {"Authorization": "Bearer " + token, "X-CSRF-Token": CSRF,
                "Content-Type": "application/json"}, body: "{}"});
    body = await r.json();
    if (!r.ok) { ack(`${kind} refused: ${body.error}`); return; }
  } catch (e) { ack(`${kind}: not sent (${e.message}); is the bot up?`); return; }
  ack(body.message); expecting = body;
  if (!body.request) return;
  for (let i = 0; i < 60; i++) {
    await new Promise(res => setTimeout(res, 500));
    try {
      const a = await (await fetch("/dashboard/ack/" + body.request, {cache: "no-store"})).json();
      if (a.outcome) { ack(`${kind}: acknowledged: ${a.outcome}`); expecting = null; return; }
    } catch (e) { /* the bot restarting: the request file waits for it; keep asking */ }
  }
  ack(`${kind}: no acknowledgement from the bot after 30 s (request ${body.request} is still `
      + "pending: the bot acts on it when it sees it)");
}

document.querySelectorAll("button[data-action]").forEach(b =>
  b.addEventListener("click", () => act(b.dataset.action)));
poll();
</script></body></html>
"""
