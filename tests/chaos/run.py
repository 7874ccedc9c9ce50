"""Chaos runner: a seeded schedule of exchange faults and bot restarts, then money invariants.

One seed = one session: the local exchange (`polybot.sim`, in this process, over real loopback
sockets) with a compressed, edge-rich scenario; a live-mode bot against it (in this process for
most seeds; as a `python -m polybot run` subprocess for every third seed, so SIGTERM and SIGKILL
are real signals); a randomized schedule (`plan(seed)`) of the exchange's fault switches —
dropped and silent sockets, 5xx and 429 bursts, accepted-but-unanswered creates, delayed
responses, malformed and unknown frames, maintenance windows, settlements; issue 13's transfers
(completed, rejected, pending then finished or not, partially refunded), stub quotes after
maintenance, a market halted at start, a trading-day boundary inside the session (the bot's day
crosses DAILY_RESET_HOUR; see `write_zone`), sometimes with the bot down across it, and a
paper-mode start whose first restart is live on the same DATA_DIR — and bot restarts
(crash: SIGKILL, or an in-process cancellation that skips every shutdown step; SIGTERM: a clean
stop). A third of the seeds set a daily-loss or drawdown limit one capped position can cross. Then every fault is switched off for a quiet period (at least `quiet` seconds, and then
until the bot has converged: see `converge`), the bot is stopped cleanly (SIGTERM, in process too),
and the invariants are checked from the exchange's own records and the bot's database:

1. intended: every order the exchange accepted for the bot's account matches one intent row in
   the bot's database (by exchange id, or — for a create whose answer never came — by market,
   intent, price and size, each intent used once): no duplicate after an ambiguous create, no
   order the bot did not mean.
2. booked once: each exchange order's filled quantity equals what the ledger booked for it, and
   at the end the ledger's positions and cash equal the exchange's.
3. at-risk: USD at risk (issue 6's definition: positions at cost, open opening orders at their
   limit; fees excluded), computed from the exchange's state after every engine call that touched
   the bot's account, never exceeds the per-market, per-event or portfolio cap.
4. uptime: the bot never exited on its own; after every (re)start `/health` answered within
   `RESTART_BUDGET` seconds and `/ready` turned 200 again during the quiet period, with no
   create of unknown outcome left, within `CONVERGE_BUDGET` seconds of the faults' end; after each
   clean stop none of the bot's orders is open at the exchange, or the exit code is 1 and an
   alert names every order left open.
5. halts (`check_halts`): the daily-loss halt is entered within 5 s once the equity change since
   the day's start — the exchange's cash and positions, each position at the halt mark of
   `polybot.ledger` on the exchange's books (`EquityReferee`) — has been past the limit for 5 s,
   and never while it is at least 0.50 inside it; the drawdown halt likewise; a transfer the
   exchange moved is not P&L, so no transfer ever halts. The bot's side is sampled from
   `/status` (`extra.trading`).
6. secrets: no secret value (the API private key, the OpticOdds key, the alert webhook URL and
   its token) appears in any log file, subprocess output, health response or alert payload
   (alerts go to a local Discord-webhook stand-in that records every payload).

Why the caps bind: Kelly fraction 1 on a $10,000 account wants far more than the $5 per market /
$12 portfolio caps, so every signal is sized by the caps. Why trades happen in a 20 s session:
makers lag often and the truth drifts fast (`scenario_spec`), and the minimum edge is small.

Replay a failing seed: `python -m tests.chaos --seed N` (or `python tests/chaos/run.py --seed N`);
`--keep` keeps the session's data directory (logs, database) for inspection.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
import os
import random
import secrets as pysecrets
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from polybot.sim.engine import BookChanged, ExecutionReported, PositionChanged
from polybot.sim.scenario import Timing, default_spec

ZERO = Decimal(0)
BOT = "bot"
CAP_MARKET = Decimal("5")
CAP_EVENT = Decimal("5")
CAP_PORTFOLIO = Decimal("12")
RESTART_BUDGET = 20.0  # seconds from a (re)start until /health answers
# seconds from the faults' end until the bot is ready with every unknown outcome resolved: a
# restart just before the end (RESTART_BUDGET) plus the proof that a create never landed
# (LiveConfig: 4 clean reads 2 s apart), with room to spare on a loaded CI machine
CONVERGE_BUDGET = 40.0
STOP_BUDGET = 10.0  # seconds from SIGTERM to exit (the operator's promise, issue 8)
SUBPROCESS_EVERY = 3  # seeds with seed % 3 == 2 run the bot as a subprocess
HTTP_TIMEOUT = 2.0

log = logging.getLogger("chaos")


# --- the session's world and settings -------------------------------------------------------------


def scenario_spec(seed: int) -> Any:
    """Six games, compressed: the first starts at 6 s and settles at ~20 s; makers lag a lot."""
    timing = Timing(tick_seconds=0.5, quote_refresh_seconds=1.0, lag_probability=0.5,
                    lag_seconds=8.0, taker_rate=0.3, drift_per_minute=0.6,
                    live_drift_per_minute=0.6, settle_delay_seconds=2.0,
                    first_start_seconds=6.0, first_length_seconds=12.0,
                    start_spacing_seconds=8.0, respawn=False)
    return default_spec(seed, n_games=6, timing=timing)


def bot_env(sim: Any, data_dir: Path, *, webhook: str, tif: str, health_port: int = 0,
            limits: Limits | None = None) -> dict[str, str]:
    from polybot.demo import demo_env

    env = demo_env(sim, data_dir=data_dir, live=True)
    env.update({
        "HEALTH_PORT": str(health_port),
        "RISK_MAX_POSITION_PER_MARKET": str(CAP_MARKET),
        "RISK_MAX_CORRELATED_EXPOSURE": str(CAP_EVENT),
        "RISK_MAX_PORTFOLIO_EXPOSURE": str(CAP_PORTFOLIO),
        "RISK_MAX_POSITIONS": "4",
        "RISK_KELLY_FRACTION": "1",
        "RISK_MIN_EDGE": "0.005",
        "RISK_MIN_TRADE_SIZE": "0.20",
        "RISK_MAX_DAILY_LOSS": str((limits or Limits()).daily_loss),
        "RISK_MAX_DRAWDOWN_PCT": str((limits or Limits()).drawdown_pct),
        "ORDER_RATE_PER_MINUTE": "60",
        "ORDER_TIF": tif,
        "TRADE_IN_PLAY": "true",
        "STALE_FEED_SECONDS": "3",
        "HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT),
        "DISCORD_WEBHOOK": webhook,
        "LOG_LEVEL": "DEBUG",
        "DAILY_RESET_TZ": (limits or Limits()).reset_tz,
        "DAILY_RESET_HOUR": "0",
    })
    return env


@attrs.frozen
class Limits:
    """The seed's halt limits and trading-day zone.

    Most seeds keep the halts far away (the caps are what binds); a third of them set a daily
    loss or a drawdown a settlement of one capped position can cross, so the halt invariant
    (`check_halts`) is exercised both ways.
    """

    daily_loss: Decimal = Decimal("1000")
    drawdown_pct: Decimal = Decimal("0.5")
    reset_tz: str = "UTC"


def seed_limits(seed: int) -> Limits:
    rng = random.Random(f"chaos-limits:{seed}")
    return rng.choice((Limits(), Limits(), Limits(daily_loss=Decimal("2.5")),
                       Limits(drawdown_pct=Decimal("0.0003"))))


# --- the trading-day boundary -----------------------------------------------------------------------
# The bot's clock crosses DAILY_RESET_HOUR inside the session without touching any clock: the
# session writes a time zone (a TZif file under a directory put first on the zone search path,
# PYTHONTZPATH for a subprocess bot, zoneinfo.reset_tzpath in process) whose UTC offset puts
# local midnight at the chosen instant, and sets DAILY_RESET_TZ to it with DAILY_RESET_HOUR=0.
# Shifting the bot's clock instead (a ReplayClock in process, a patched clock in a subprocess)
# would put its calendar out of step with the exchange's (game start times, order and fill
# stamps, request signatures), which the real exchange never is; a zone moves only the day.


def write_zone(root: Path, name: str, utc_offset: int) -> None:
    """A TZif (v2) zone `name` under `root` with one fixed UTC offset of `utc_offset` seconds."""
    import struct

    if not -86400 < utc_offset < 86400:
        raise ValueError(utc_offset)

    def block() -> bytes:
        # isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt; one ttinfo; its abbreviation
        return struct.pack(">6l", 0, 0, 0, 0, 1, 4) + struct.pack(">lbB", utc_offset, 0, 0) + b"CHS\0"

    head = b"TZif2" + b"\0" * 15
    a = abs(utc_offset)
    posix = f"<CHS>{'-' if utc_offset >= 0 else '+'}{a // 3600}:{a % 3600 // 60:02d}:{a % 60:02d}"
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + block() + head + block() + b"\n" + posix.encode() + b"\n")


def midnight_offset(at: float) -> int:
    """The UTC offset (seconds, within ±12 h) that makes Unix time `at` local midnight."""
    off = -round(at) % 86400
    return off - 86400 if off > 43200 else off


# --- the schedule ---------------------------------------------------------------------------------


@attrs.frozen
class Action:
    at: float  # seconds from the session's start
    kind: str
    args: dict[str, Any] = attrs.field(factory=dict)

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"t={self.at:5.1f} {self.kind} {extra}".rstrip()


FAULTS = ("drop_ws", "silent", "errors", "rate_limit", "hang", "delay", "malformed", "unknown",
          "maintenance", "settle", "transfer", "stub_quote")
TRANSFER_STATUS = {"completed": "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED",
                   "rejected": "ACCOUNT_BALANCE_CHANGE_STATUS_REJECTED",
                   "pending": "ACCOUNT_BALANCE_CHANGE_STATUS_PENDING",
                   "partial": "ACCOUNT_BALANCE_CHANGE_STATUS_PARTIALLY_REFUNDED"}


def plan(seed: int, *, session: float, subprocess_bot: bool) -> list[Action]:
    """The seed's schedule: 7-11 faults and one or two restarts, over [4 s, session - 2 s]."""
    rng = random.Random(f"chaos:{seed}")
    actions: list[Action] = []
    lo, hi = 4.0, max(5.0, session - 2.0)
    for _ in range(rng.randint(7, 11)):
        kind = rng.choice(FAULTS)
        at = round(rng.uniform(lo, hi), 1)
        args: dict[str, Any] = {}
        if kind == "silent":
            args = {"seconds": round(rng.uniform(2.0, 6.0), 1)}
        elif kind == "errors":
            args = {"n": rng.randint(1, 6), "status": rng.choice((500, 502, 503))}
        elif kind == "rate_limit":
            args = {"n": rng.randint(1, 8)}
        elif kind == "hang":
            args = {"n": rng.randint(1, 2),
                    "seconds": rng.choice((None, round(rng.uniform(3.0, 6.0), 1)))}
        elif kind == "delay":
            args = {"delay": round(rng.uniform(0.3, 2.5), 1), "seconds": round(rng.uniform(2, 6), 1)}
        elif kind in ("malformed", "unknown"):
            args = {"n": rng.randint(1, 5)}
        elif kind == "maintenance":
            args = {"seconds": round(rng.uniform(2.0, 5.0), 1)}
        elif kind == "settle":
            args = {"value": rng.choice(("0", "1", "1", "0", "0.5")), "pick": rng.random()}
        elif kind == "transfer":
            # a withdrawal far beyond any daily-loss limit, or a deposit: never a halt
            status = rng.choice(("completed", "completed", "rejected", "pending", "partial"))
            args = {"amount": rng.choice(("-400", "-150", "250")), "status": status}
            if status == "pending":
                args["finish"] = rng.choice(("completed", "rejected", None))
                args["after"] = round(rng.uniform(1.0, 4.0), 1)
        elif kind == "stub_quote":
            args = {"seconds": round(rng.uniform(1.0, 3.0), 1), "pick": rng.random(),
                    "side": rng.choice(("bid", "offer")),
                    "normal_after": round(rng.uniform(2.0, 6.0), 1)}
        actions.append(Action(at, kind, args))
    kinds = ("sigkill", "sigterm") if subprocess_bot else ("crash",)
    for _ in range(rng.randint(1, 2)):
        actions.append(Action(round(rng.uniform(lo + 2, hi), 1), rng.choice(kinds),
                              {"down": round(rng.uniform(0.3, 2.0), 1)}))
    # the trading day ends inside the session in half the seeds; in half of those the bot is
    # down (crashed or killed) across the boundary, so it restarts into the new day
    if rng.random() < 0.5:
        cross = round(rng.uniform(lo + 2, hi - 2), 1)
        actions.append(Action(cross, "day_boundary"))
        if rng.random() < 0.5:
            actions.append(Action(round(cross - rng.uniform(0.3, 1.5), 1),
                                  rng.choice(kinds), {"down": 2.5}))
    if rng.random() < 0.2:
        # the bot starts in paper mode on the session's DATA_DIR and its first restart switches
        # it to live on the same DATA_DIR, the path docs/operations.md prescribes (defect 3)
        actions.append(Action(0.0, "paper_first"))
    if rng.random() < 0.4:
        actions.append(Action(0.0, "halted_at_start", {"pick": rng.random(),
                                                       "reopen": round(rng.uniform(3, 10), 1)}))
    actions.sort(key=lambda a: a.at)
    return actions


def is_subprocess_seed(seed: int) -> bool:
    return seed % SUBPROCESS_EVERY == SUBPROCESS_EVERY - 1


# --- exchange-side observation --------------------------------------------------------------------


class RiskMonitor:
    """USD at risk of the bot's account from the exchange's state after every engine call.

    Engine events arrive synchronously mid-call (a fill's position change can precede the
    order's leaves update), so the state is only read when no batch is open: at the batch-closing
    BookChanged, or at the next event outside a batch, and by a 20 ms poll as a backstop.
    """

    def __init__(self, exchange: Any, account: str) -> None:
        self.ex = exchange
        self.account = account
        self.pending = False
        self.max_market: dict[str, Decimal] = defaultdict(Decimal)
        self.max_event: dict[int, Decimal] = defaultdict(Decimal)
        self.max_portfolio = ZERO
        self.violations: list[str] = []
        self.checks = 0
        self.unsubscribe = exchange.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, ExecutionReported | PositionChanged) and \
                event.account_id == self.account:
            self.pending = True
        if self.pending and (self.ex._batch_depth == 0 or isinstance(event, BookChanged)):
            if self.ex._batch_depth == 0:
                self.evaluate()

    def evaluate(self) -> None:
        self.pending = False
        self.checks += 1
        per_market: dict[str, Decimal] = defaultdict(Decimal)
        for slug, pos in self.ex.positions(self.account).items():
            if pos.net != 0 and not pos.expired:
                per_market[slug] += pos.cost
        for o in self.ex.open_orders(self.account):
            leaves = o.leaves_quantity
            if o.intent.name == "BUY_LONG":
                per_market[o.market_slug] += leaves * o.price
            elif o.intent.name == "BUY_SHORT":
                per_market[o.market_slug] += leaves * (1 - o.price)
        per_event: dict[int, Decimal] = defaultdict(Decimal)
        for slug, risk in per_market.items():
            per_event[self.ex.markets[slug].event_id] += risk
            if risk > self.max_market[slug]:
                self.max_market[slug] = risk
            if risk > CAP_MARKET:
                self.violations.append(f"market {slug} at risk {risk} > cap {CAP_MARKET}")
        for ev, risk in per_event.items():
            self.max_event[ev] = max(self.max_event[ev], risk)
            if risk > CAP_EVENT:
                self.violations.append(f"event {ev} at risk {risk} > cap {CAP_EVENT}")
        total = sum(per_market.values(), ZERO)
        self.max_portfolio = max(self.max_portfolio, total)
        if total > CAP_PORTFOLIO:
            self.violations.append(f"portfolio at risk {total} > cap {CAP_PORTFOLIO}")

    async def poll(self) -> None:
        while True:
            await trio.sleep(0.02)
            if self.pending and self.ex._batch_depth == 0:
                self.evaluate()


class EquityReferee:
    """The bot's account equity as the daily-loss and drawdown halts must see it, from the
    exchange's own records: its cash, its positions, and each position at its *halt mark* on the
    exchange's books (money-audit defect 8's rule, applied by `polybot.ledger.Ledger` itself: a
    walk of the side the position closes into, held on probation for HALT_HOLD_SECONDS after a
    continuity loss). Not re-implemented here: a referee `Ledger` is fed the exchange's state.

    Sampled after every engine call that changed the account or a book (as `RiskMonitor`), and
    every 100 ms for probations that end with time. `transfers` records each deposit or
    withdrawal the exchange actually moved (COMPLETED, or the unrefunded part), when it moved.
    """

    def __init__(self, exchange: Any, account: str, t0: float) -> None:
        from polybot.ledger import Ledger

        self.ex = exchange
        self.account = account
        self.t0 = t0
        cash = exchange.balance(account).current_balance
        # `ledger` sees the continuity losses the bot certainly sees (a dropped socket,
        # maintenance, its own start); `maybe` also those it sees only if its stale-feed timer
        # fires (a silent socket). The halt check accepts either reading.
        self.ledger = Ledger(cash)
        self.maybe = Ledger(cash)
        self.samples: list[tuple[float, Decimal]] = []
        self.samples_maybe: list[tuple[float, Decimal]] = []
        self.transfers: list[tuple[float, Decimal]] = []
        self.pending = True
        self.unsubscribe = exchange.subscribe(self._on_event)
        self.sample()

    def _on_event(self, event: Any) -> None:
        from polybot.sim.engine import BalanceChanged, LedgerEntry

        if isinstance(event, BalanceChanged) and event.account_id == self.account and \
                event.entry_type in (LedgerEntry.DEPOSIT, LedgerEntry.WITHDRAWAL):
            moved = event.after.current_balance - event.before.current_balance
            if moved:
                self.transfers.append((trio.current_time() - self.t0, moved))
        self.pending = True
        if self.ex._batch_depth == 0:
            self.sample()

    def continuity_lost(self, certain: bool = True) -> None:
        for led in (self.ledger, self.maybe) if certain else (self.maybe,):
            led.on_continuity_lost(None, trio.current_time())

    def sample(self) -> None:
        from polybot.model import BookSnapshot

        self.pending = False
        now = trio.current_time()
        positions = self.ex.positions(self.account)
        cash = self.ex.balance(self.account).current_balance
        books = {slug: self.ex.book(slug) for slug, p in positions.items()
                 if p.net and not p.expired}
        for led, samples in ((self.ledger, self.samples), (self.maybe, self.samples_maybe)):
            for slug, p in positions.items():
                net = ZERO if p.expired else p.net
                if led.position(slug).net_qty != net:
                    per = p.cost / abs(net) if net else ZERO
                    led.set_position(slug, net, per if net > 0 else 1 - per)
                if slug in books:
                    view = books[slug]
                    led.on_book(BookSnapshot(slug, view.bids, view.offers, received_at=now),
                                now=now)
            led.set_cash(cash)
            equity = led.halt_equity(now)
            if not samples or samples[-1][1] != equity:
                samples.append((now - self.t0, equity))

    async def poll(self) -> None:
        while True:
            await trio.sleep(0.1)
            if self.ex._batch_depth == 0:
                self.sample()


@attrs.frozen
class BotView:
    """One `/status` sample of the bot's trading state (`extra.trading`)."""

    t: float  # seconds from the session's start
    life: int
    begun: bool
    day: str | None
    halts: tuple[str, ...]


def bot_view(t: float, life: int, body: str) -> BotView | None:
    import json

    try:
        trading = json.loads(body)["extra"]["trading"]
    except (ValueError, KeyError, TypeError):
        return None
    return BotView(t, life, bool(trading.get("begun")), trading.get("trading_day"),
                   tuple(trading.get("halt_reasons") or ()))


HALT_MARGIN = Decimal("0.50")  # never halted while the loss is at least this far inside
HALT_DUE = 5.0  # past the limit this long (s) ...
HALT_LATE = 5.0  # ... and the halt is entered within this long (s)
SAMPLE_SLACK = 1.0  # the bot sees the exchange a little later than the referee; /status polls


def check_halts(equity: list[tuple[float, Decimal]] | list[list[tuple[float, Decimal]]],
                transfers: list[tuple[float, Decimal]], views: list[BotView],
                blind: list[tuple[float, float]], *,
                daily_loss: Decimal, drawdown_pct: Decimal) -> list[str]:
    """The daily-loss and drawdown halts against the exchange's equity (`EquityReferee`).

    `equity` is one series of (session seconds, equity) or several: the referee's readings of
    the same books under each continuity-loss history the bot may have seen (its halt marks go
    on probation when it notices a loss, which for a silent socket depends on timing). Transfer-
    free equity A(t) = E(t) − the transfers moved by t. The day's loss is A at the day's start
    minus A(t); the day starts at a life's first `/status` sample in that trading day (the bot's
    day starts at its first reconciliation, or at the first equity it sees after the boundary;
    a life killed before it persisted the day's start legitimately leaves the next life to take
    it again, so each life's start in the day is a candidate). The drawdown is the high of A
    since the first reconciliation minus A(t); its limit is `drawdown_pct` × that high in real
    money. For each, over every reading the bot may hold:
    - early: a halt entered (a sample shows it, the one before did not) while every reading
      stayed at least HALT_MARGIN inside the limit over the sampling interval (and SAMPLE_SLACK
      before it); a transfer within that window names itself ("no transfer halts");
    - late: every reading past the limit for HALT_DUE s without a break, while the bot was up
      with its day begun and no fault blinded it (`blind`: windows its feed or books were not the
      exchange's, plus the hold time after), and no halt HALT_LATE s later.
    """
    import bisect

    series = [equity] if equity and isinstance(equity[0], tuple) else equity
    series = [x for x in series if x]
    if not series or not views:
        return []
    out: list[str] = []
    first = next((v.t for v in views if v.begun), None)
    if first is None:
        return []

    def moved_by(t: float) -> Decimal:
        return sum((x for at, x in transfers if at <= t), ZERO)

    class Reading:
        def __init__(self, samples: Any) -> None:
            self.samples = samples
            self.times = [t for t, _ in samples]
            self.high: list[tuple[float, Decimal]] = []  # running high of A since `first`
            h: Decimal | None = None
            for t in [first] + [t for t in self.times if t > first]:
                a = self.adj(t)
                h = a if h is None or a > h else h
                self.high.append((t, h))

        def adj(self, t: float) -> Decimal:  # A(t): the last sample at or before t
            i = bisect.bisect_right(self.times, t) - 1
            return Decimal(self.samples[max(i, 0)][1]) - moved_by(t)

        def high_at(self, t: float) -> Decimal:
            i = bisect.bisect_right([at for at, _ in self.high], t) - 1
            return self.high[max(i, 0)][1]

    readings = [Reading(x) for x in series]
    all_times = sorted({t for r in readings for t in r.times})
    day_starts: dict[str, list[float]] = {}
    seen: set[tuple[str, int]] = set()
    for v in views:
        if v.begun and v.day is not None and (v.day, v.life) not in seen:
            seen.add((v.day, v.life))
            day_starts.setdefault(v.day, []).append(v.t)

    def points(lo: float, hi: float) -> list[float]:
        return [lo] + [t for t in all_times if lo < t <= hi] + [hi]

    Options = list[tuple[Decimal, Decimal]]  # (value, limit) for each reading the bot may hold

    def loss(v: BotView, t: float) -> Options:
        starts = [s for s in day_starts.get(v.day or "", []) if s <= max(t, v.t)]
        return [(r.adj(s) - r.adj(t), daily_loss) for r in readings for s in starts]

    def drawdown(v: BotView, t: float) -> Options:
        if t < first:
            return []
        return [(r.high_at(t) - r.adj(t), drawdown_pct * (r.high_at(t) + moved_by(t)))
                for r in readings]

    metrics: dict[str, Callable[[BotView, float], Options]] = {
        "daily_loss": loss, "drawdown": drawdown}
    for reason, metric in metrics.items():
        # early (the first sample has a halt-free one before it: the bot starts unhalted, or
        # its halt was entered at its first reconciliation, measured from the exchange's books)
        before = BotView(views[0].t - SAMPLE_SLACK, views[0].life, False, views[0].day, ())
        for prev, v in itertools.pairwise([before, *views]):
            if reason not in v.halts or reason in prev.halts or not v.begun:
                continue
            lo, hi = prev.t - SAMPLE_SLACK, v.t
            options = [m for t in points(lo, hi) for m in metric(v, t)]
            if not options:
                continue
            worst = max(options, key=lambda m: m[0] - m[1])
            if worst[0] <= worst[1] - HALT_MARGIN:
                why = [f"{x} at t={at:.1f}" for at, x in transfers if lo - 2 <= at <= hi]
                out.append(
                    f"halt: {reason} halt entered by t={v.t:.1f} while the exchange's equity was "
                    f"{worst[0]:.2f} against a limit of {worst[1]:.2f} (at least {HALT_MARGIN} "
                    "inside)" + (f"; a transfer halted ({', '.join(why)})" if why else ""))
        # late
        clear_from: float | None = None
        for prev, v in itertools.pairwise(views):
            gap = v.t - prev.t > 1.5 or not (prev.begun and v.begun) or prev.day != v.day \
                or any(b0 < v.t and prev.t < b1 for b0, b1 in blind)
            if gap or reason in v.halts:
                clear_from = None
                continue
            past_since = clear_from
            for t in points(prev.t, v.t):
                opts = metric(v, t)
                if not opts or any(m[0] < m[1] for m in opts):
                    past_since = None
                elif past_since is None:
                    past_since = t
            clear_from = past_since
            if past_since is not None and v.t - past_since > HALT_DUE + HALT_LATE + SAMPLE_SLACK:
                least = min(metric(v, v.t), key=lambda m: m[0] - m[1])
                out.append(f"halt: no {reason} halt by t={v.t:.1f} though the exchange's equity "
                           f"was past the limit since t={past_since:.1f} (now {least[0]:.2f} "
                           f"against {least[1]:.2f})")
                break
    return out


class AlertSink:
    """A Discord-webhook stand-in on loopback: records every payload, answers 204."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.port = 0
        self.token = pysecrets.token_urlsafe(24)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/424242/{self.token}"

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            buf = b""
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in buf:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, body = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    body += chunk
                self.payloads.append(body)
                await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n"
                                      b"Connection: close\r\n\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    def texts(self) -> list[str]:
        return [p.decode("utf-8", "replace") for p in self.payloads]


# --- the bot, in process or as a subprocess --------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Life:
    """One run of the bot process: from start to exit."""

    started: float
    health_at: float | None = None
    ended: float | None = None
    code: int | None = None
    how: str = ""  # "crash" / "sigkill" / "sigterm" / "final": who ended it
    signalled: float | None = None  # when SIGTERM was sent
    open_after: list[str] = attrs.field(factory=list)


class InProcessBot:
    """`run_bot` in this Trio run; a crash is a cancellation (no shutdown step runs), a stop is a
    real SIGTERM to this process, which run_bot's signal receiver turns into its clean stop."""

    def __init__(self, env: dict[str, str], nursery: trio.Nursery) -> None:
        self.env = env
        self.nursery = nursery
        self.live_since: datetime | None = None  # a paper-first session: when live began
        self.port: int | None = None
        self.lives: list[Life] = []
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None

    async def start(self) -> None:
        from polybot.config import load_settings
        from polybot.runtime import run_bot

        settings = load_settings(self.env)
        life = Life(started=trio.current_time())
        self.lives.append(life)
        self.port = None
        scope = trio.CancelScope()
        done = trio.Event()
        self._scope, self._done = scope, done

        def on_port(port: int) -> None:
            self.port = port

        async def body() -> None:
            try:
                with scope:
                    life.code = await run_bot(settings, on_health_port=on_port)
            finally:
                life.ended = trio.current_time()
                done.set()

        self.nursery.start_soon(body)

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.is_set()

    async def crash(self) -> None:
        assert self._scope is not None and self._done is not None
        self.lives[-1].how = "crash"
        self._scope.cancel()
        await self._done.wait()

    async def terminate(self) -> None:
        assert self._scope is not None and self._done is not None
        life = self.lives[-1]
        life.how = "sigterm"
        # Only while run_bot's receiver holds SIGTERM (it opens before the supervisor runs and
        # closes when run_bot returns); nothing awaits between this check and the signal, so
        # the default action (ending the test process) cannot be what receives it.
        if self.running and signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
            life.signalled = trio.current_time()
            signal.raise_signal(signal.SIGTERM)
        with trio.move_on_after(15):
            await self._done.wait()
        if self.running:  # overran (or never listened): a failure the checks report
            self._scope.cancel()
            await self._done.wait()
            life.how = "sigterm+overran"

    async def wait(self) -> None:
        if self._done is not None:
            await self._done.wait()


class SubprocessBot:
    """`python -m polybot run` with the session's environment; real SIGTERM and SIGKILL."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.live_since: datetime | None = None  # a paper-first session: when live began
        self.port: int | None = None
        self.lives: list[Life] = []
        self.proc: trio.Process | None = None
        self._n = 0

    async def start(self) -> None:
        self._n += 1
        port = free_port()
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.data_dir),
               "PYTHONUNBUFFERED": "1", **self.env, "HEALTH_PORT": str(port)}
        out = open(self.data_dir / f"process-{self._n}.out", "wb")
        self.proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "polybot", "run"], env=env, cwd=str(self.data_dir),
            stdout=out, stderr=subprocess_stdout())
        out.close()
        self.port = port
        self.lives.append(Life(started=trio.current_time()))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def _signal(self, sig: int, how: str, timeout: float) -> None:
        assert self.proc is not None
        life = self.lives[-1]
        life.how = how
        if self.proc.returncode is None:
            life.signalled = trio.current_time()
            self.proc.send_signal(sig)
        with trio.move_on_after(timeout):
            await self.proc.wait()
        if self.proc.returncode is None:  # overran: that is a failure the checks report
            self.proc.kill()
            await self.proc.wait()
            life.how = how + "+overran"
        life.code = self.proc.returncode
        life.ended = trio.current_time()

    async def kill(self) -> None:
        await self._signal(signal.SIGKILL, "sigkill", 5)

    async def terminate(self) -> None:
        await self._signal(signal.SIGTERM, "sigterm", 15)

    async def wait(self) -> None:
        if self.proc is not None:
            await self.proc.wait()
            life = self.lives[-1]
            if life.ended is None:
                life.ended, life.code = trio.current_time(), self.proc.returncode


def subprocess_stdout() -> int:
    return -2  # subprocess.STDOUT: stderr into the same file


# --- one session ------------------------------------------------------------------------------------


@attrs.define
class SeedResult:
    seed: int
    mode: str
    failures: list[str]
    stats: dict[str, Any]
    seconds: float
    data_dir: Path

    @property
    def passed(self) -> bool:
        return not self.failures


async def run_seed(seed: int, *, session: float = 20.0, quiet: float = 7.0,
                   workdir: Path | None = None, subprocess_bot: bool | None = None,
                   say: Callable[[str], None] = lambda s: None) -> SeedResult:
    from polybot.sim.harness import running_sim

    if subprocess_bot is None:
        subprocess_bot = is_subprocess_seed(seed)
    t_wall = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-", dir=workdir))
    rng = random.Random(f"chaos-env:{seed}")
    tif = rng.choice(("ioc", "gtc", "gtc"))
    actions = plan(seed, session=session, subprocess_bot=subprocess_bot)
    failures: list[str] = []
    stats: dict[str, Any] = {"tif": tif, "actions": [a.describe() for a in actions]}
    health_bodies: list[str] = []
    ready_after: list[float] = []
    alerts = AlertSink()
    saved = _logging_state()
    async with trio.open_nursery() as nursery, \
            running_sim(seed=seed, scenario=scenario_spec(seed), opticodds=True,
                        heartbeat_seconds=1.0) as sim:
        await nursery.start(alerts.serve)
        limits = seed_limits(seed)
        env = bot_env(sim, data_dir, webhook=alerts.url, tif=tif, limits=limits)
        from polybot.config import load_settings

        settings = load_settings(env)
        secret_values = [s for s in settings.secret_values() if s] + [alerts.token]
        if not subprocess_bot:
            from polybot.logs import configure_logging

            configure_logging(level="DEBUG", log_file=settings.log_file,
                              trades_log_file=settings.trades_log_file, stderr_level="CRITICAL",
                              secrets=settings.secret_values(), stream=io.StringIO())
        monitor = RiskMonitor(sim.exchange, sim.account_id)
        nursery.start_soon(monitor.poll)
        t0 = trio.current_time()
        referee = EquityReferee(sim.exchange, sim.account_id, t0)
        nursery.start_soon(referee.poll)
        views: list[BotView] = []
        cross = next((x.at for x in actions if x.kind == "day_boundary"), None)
        if cross is not None:
            zone = f"Chaos/S{seed}T{int(time.time())}"
            write_zone(data_dir / "zones", zone, midnight_offset(time.time() + cross))
            env["DAILY_RESET_TZ"] = zone
            tzpath = [str(data_dir / "zones"), *zoneinfo.TZPATH]
            env["PYTHONTZPATH"] = os.pathsep.join(tzpath)
            if not subprocess_bot:
                zoneinfo.reset_tzpath(to=tzpath)
        stats["limits"] = f"loss {limits.daily_loss} dd {limits.drawdown_pct}"
        bot: Any = (SubprocessBot(env, data_dir) if subprocess_bot else InProcessBot(env, nursery))

        async def poll_health() -> None:
            async with httpx.AsyncClient(timeout=2.0) as client:
                while True:
                    await trio.sleep(0.5)
                    port = bot.port
                    if port is None or not bot.running:
                        continue
                    for path in ("/health", "/ready", "/status", "/metrics"):
                        try:
                            r = await client.get(f"http://127.0.0.1:{port}{path}")
                        except httpx.HTTPError:
                            continue
                        health_bodies.append(r.text)
                        life = bot.lives[-1]
                        if path == "/health" and life.health_at is None:
                            life.health_at = trio.current_time()
                        if path == "/ready" and r.status_code == 200:
                            ready_after.append(trio.current_time() - t0)
                        if path == "/status" and r.status_code == 200 and \
                                bot.env.get("TRADING_MODE") == "live":
                            view = bot_view(trio.current_time() - t0, len(bot.lives), r.text)
                            if view is not None:
                                views.append(view)
                                if view.begun and view.halts:
                                    # halted is a converged state: /ready answers 503 by
                                    # design while trading is halted, so it counts as ready
                                    ready_after.append(view.t)

        nursery.start_soon(poll_health)
        if any(x.kind == "paper_first" for x in actions):
            env["TRADING_MODE"] = "paper"
        await bot.start()
        settled: list[str] = []
        try:
            for action in actions:
                await trio.sleep_until(t0 + action.at)
                if not bot.running:
                    break
                say(f"  seed {seed}: {action.describe()}")
                await apply(action, sim, bot, settled, nursery, lost=referee.continuity_lost)
            await trio.sleep_until(t0 + session)
            sim.faults.reset()
            faults_end = trio.current_time() - t0  # later than `session` if a restart waited
            failures += await converge(bot, data_dir, ready_after, t0, faults_end, quiet)
            if bot.running:
                await bot.terminate()
                bot.lives[-1].how = bot.lives[-1].how.replace("sigterm", "final")
            await bot.wait()
            after = [o.order_id for o in sim.exchange.open_orders(sim.account_id)]
            bot.lives[-1].open_after = after
            await trio.sleep(0.3)  # the alert sink's last payloads
        finally:
            monitor.unsubscribe()
            referee.unsubscribe()
            if cross is not None and not subprocess_bot:
                zoneinfo.reset_tzpath()
            nursery.cancel_scope.cancel()
            if bot.running and isinstance(bot, SubprocessBot) and bot.proc is not None:
                bot.proc.kill()
        stats.update(checks=monitor.checks, max_portfolio=str(monitor.max_portfolio),
                     orders=sum(1 for a in sim.exchange.orders_accepted if a.account_id == BOT),
                     fills=_count_filled(sim), settled=settled, lives=len(bot.lives),
                     alerts=len(alerts.payloads),
                     unresolved=len(_unresolved(data_dir)))
        failures += check_at_risk(monitor)
        failures += check_halts([referee.samples, referee.samples_maybe], referee.transfers, views,
                                blind_windows(actions, views),
                                daily_loss=limits.daily_loss, drawdown_pct=limits.drawdown_pct)
        stats["halts"] = sorted({h for v in views for h in v.halts})
        stats["days"] = len({v.day for v in views if v.day})
        failures += check_lives(bot.lives, ready_after, faults_end, alerts.texts())
        failures += check_orders_and_ledger(sim, data_dir, since=bot.live_since)
        failures += check_secrets(secret_values, data_dir, health_bodies, alerts.texts())
    _restore_logging(saved)  # pytest's handlers and every logger's level back
    return SeedResult(seed, "subprocess" if subprocess_bot else "in-process", failures, stats,
                      time.monotonic() - t_wall, data_dir)


def _logging_state() -> dict[str, tuple[int, list[logging.Handler], bool]]:
    """Every logger's level, handlers and propagation (an in-process bot reconfigures them)."""
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    return {lg.name: (lg.level, list(lg.handlers), lg.propagate) for lg in loggers}


def _restore_logging(saved: dict[str, tuple[int, list[logging.Handler], bool]]) -> None:
    for lg in [logging.getLogger()] + [x for x in logging.root.manager.loggerDict.values()
                                       if isinstance(x, logging.Logger)]:
        level, handlers, propagate = saved.get(lg.name, (logging.NOTSET, [], True))
        for h in lg.handlers:
            if h not in handlers:
                h.close()
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def _count_filled(sim: Any) -> int:
    n = 0
    for a in sim.exchange.orders_accepted:
        if a.account_id == BOT:
            o = sim.exchange.get_order(BOT, a.order_id)
            if o is not None and o.cum_quantity > 0:
                n += 1
    return n


def _pick_market(sim: Any, pick: float) -> str | None:
    """A market the bot holds if any (so the fault touches its money), else any open one."""
    ex = sim.exchange
    held = sorted(s for s, p in ex.positions(BOT).items() if p.net != 0 and not p.expired)
    open_ = sorted(s for s in sim.markets if ex.markets[s].settlement is None)
    pool = [s for s in held if s in open_] or open_
    return pool[int(pick * len(pool))] if pool else None


async def apply(action: Action, sim: Any, bot: Any, settled: list[str],
                nursery: trio.Nursery, lost: Callable[..., None] = lambda certain=True: None) -> None:
    """Run one action; `lost` is told when the market feed loses continuity (the referee's
    halt marks go on probation as the bot's do)."""
    f = sim.faults
    a = action.args
    k = action.kind

    async def later(seconds: float, fn: Callable[[], None]) -> None:
        await trio.sleep(seconds)
        fn()

    if k == "drop_ws":
        f.drop_websockets()
        lost()
    elif k == "silent":
        f.ws_silent = True

        def end_silence() -> None:
            f.ws_silent = False
            lost(certain=False)  # the bot reconnects if its stale-feed timer fired

        nursery.start_soon(later, min(3.0, a["seconds"]), lambda: lost(certain=False))
        nursery.start_soon(later, a["seconds"], end_silence)
    elif k == "errors":
        f.error_status = a["status"]
        f.error_burst += a["n"]
    elif k == "rate_limit":
        f.rate_limit_burst += a["n"]
    elif k == "hang":
        f.hang_seconds = a["seconds"]
        f.hang_orders += a["n"]
    elif k == "delay":
        f.delay_seconds = a["delay"]
        nursery.start_soon(later, a["seconds"], lambda: setattr(f, "delay_seconds", 0.0))
    elif k == "malformed":
        f.malformed_frames += a["n"]
    elif k == "unknown":
        f.unknown_frames += a["n"]
    elif k == "maintenance":
        f.maintenance = True
        lost()

        def end_maintenance() -> None:
            f.maintenance = False
            lost()

        nursery.start_soon(later, a["seconds"], end_maintenance)
    elif k == "stub_quote":
        # maintenance, then the reopening shows one side as a stub (1 contract at 0.01 bid or
        # 0.99 offer) until the normal book is back: money-audit r8, which halted the day
        from polybot.model import Side

        slug = _pick_market(sim, a["pick"])
        if slug is None:
            return
        view = sim.exchange.book(slug)
        bids = [(lv.price, lv.qty) for lv in view.bids]
        offers = [(lv.price, lv.qty) for lv in view.offers]
        f.maintenance = True
        lost()

        def reopen_with_stub() -> None:
            f.maintenance = False
            lost()
            if sim.exchange.markets[slug].settlement is None:
                sim.scenario.stub_quote_after_maintenance(
                    slug, bids, offers, stub_side=Side.BUY if a["side"] == "bid" else Side.SELL,
                    normal_after_seconds=a["normal_after"])

        nursery.start_soon(later, a["seconds"], reopen_with_stub)
    elif k == "transfer":
        ex = sim.exchange
        amount = Decimal(a["amount"])
        refunded = abs(amount) / 2 if a["status"] == "partial" else ZERO
        tx = ex.transfer(BOT, amount, TRANSFER_STATUS[a["status"]], refunded=refunded)
        if a.get("finish"):
            nursery.start_soon(later, a["after"], lambda: ex.finish_transfer(
                BOT, tx, TRANSFER_STATUS[a["finish"]]))
    elif k == "halted_at_start":
        slug = _pick_market(sim, a["pick"])
        if slug is not None:
            sim.scenario.halted_at_start(slug, a["reopen"])
    elif k == "paper_first":
        pass  # the session starts the bot in paper mode (`run_seed`); the first restart is live
    elif k == "day_boundary":
        pass  # the session's zone puts local midnight here (`write_zone`); nothing to switch
    elif k == "settle":
        slug = _pick_market(sim, a["pick"])
        if slug is not None:
            sim.exchange.settle(slug, Decimal(a["value"]))
            settled.append(f"{slug}={a['value']}")
    elif k in ("crash", "sigkill", "sigterm"):
        # a restart hits a bot that is up (a signal during interpreter start-up proves nothing):
        # wait for its /health, within the restart budget
        life = bot.lives[-1]
        with trio.move_on_at(life.started + RESTART_BUDGET):
            while life.health_at is None:
                await trio.sleep(0.1)
        if k == "crash":
            await bot.crash()
        elif k == "sigkill":
            await bot.kill()
        else:
            await bot.terminate()
            bot.lives[-1].open_after = [o.order_id for o in sim.exchange.open_orders(BOT)]
        await trio.sleep(a["down"])
        if bot.env.get("TRADING_MODE") == "paper":
            bot.env["TRADING_MODE"] = "live"
            bot.live_since = datetime.now(UTC)
        await bot.start()
        lost()  # a starting bot's feed begins with a continuity loss
    else:  # pragma: no cover - plan() only makes the kinds above
        raise ValueError(k)


async def converge(bot: Any, data_dir: Path, ready_after: list[float], t0: float,
                   faults_end: float, quiet: float) -> list[str]:
    """The quiet period: `quiet` seconds without faults, then on until the bot has converged:
    /ready answered 200 since the faults ended, and no create of unknown outcome is left in its
    database. The money checks compare the bot's ledger with the exchange, which is only
    meaningful once the bot has resolved what it did not know: a fixed 7 s window (e7900f6)
    stopped bots that were still starting, or still proving an unanswered create absent as
    designed (4 reads 2 s apart), whenever a restart or a hung create fell near the faults' end
    on a loaded machine, and failed a run without a bug. Not converging within CONVERGE_BUDGET
    is a failure (the not-ready case is reported by `check_lives`)."""
    await trio.sleep_until(t0 + faults_end + quiet)
    while bot.running:
        ready = any(t > faults_end for t in ready_after)
        unresolved = _unresolved(data_dir)
        if ready and not unresolved:
            return []
        if trio.current_time() >= t0 + faults_end + CONVERGE_BUDGET:
            if not unresolved:
                return []
            return [f"resolution: {len(unresolved)} create(s) of unknown outcome still unresolved "
                    f"{CONVERGE_BUDGET:.0f} s after the faults ended: {unresolved}"]
        await trio.sleep(0.25)
    return []


def _unresolved(data_dir: Path) -> list[str]:
    """Local ids of the bot's creates whose outcome its database does not know yet."""
    try:
        rows = _db_rows(data_dir, "SELECT local_id FROM orders WHERE state IN"
                                  " ('SUBMITTING', 'OUTCOME_UNKNOWN')")
    except (OSError, sqlite3.Error):  # no database yet (the bot never started)
        return []
    return [r["local_id"] for r in rows]


# --- invariants -----------------------------------------------------------------------------------


def blind_windows(actions: list[Action], views: list[BotView]) -> list[tuple[float, float]]:
    """Windows (session seconds) in which the bot cannot be expected to see the exchange's
    equity: each feed or REST fault while it lasts, plus the stale-feed detection (3 s) and the
    halt-mark hold (HALT_HOLD_SECONDS) after it; and each (re)start's first hold."""
    from polybot.ledger import HALT_HOLD_SECONDS as hold

    out = []
    for a in actions:
        if a.kind in ("malformed", "unknown", "settle", "transfer", "day_boundary"):
            continue
        last = float(a.args.get("seconds") or 6.0) + float(a.args.get("delay", 0.0)) \
            + float(a.args.get("normal_after", 0.0)) + float(a.args.get("down", 0.0)) \
            + float(a.args.get("reopen", 0.0))
        out.append((a.at, a.at + last + 3.0 + hold))
    for prev, v in itertools.pairwise(views):
        if v.life != prev.life:
            out.append((prev.t, v.t + hold + 1.0))
    return out


def check_at_risk(monitor: RiskMonitor) -> list[str]:
    if not monitor.violations:
        return []
    first = monitor.violations[0]
    return [f"at-risk: cap exceeded {len(monitor.violations)} time(s), first: {first}"]


def check_lives(lives: list[Life], ready_after: list[float], faults_end: float,
                alert_texts: list[str]) -> list[str]:
    out = []
    for i, life in enumerate(lives):
        if not life.how:
            out.append(f"uptime: run {i + 1} exited on its own (code {life.code})")
        if life.health_at is None or life.health_at - life.started > RESTART_BUDGET:
            took = "never" if life.health_at is None else f"{life.health_at - life.started:.1f} s"
            if not (life.ended is not None and life.ended - life.started < RESTART_BUDGET
                    and life.health_at is None and life.how in ("crash", "sigkill")):
                out.append(f"uptime: run {i + 1} /health answered {took} after its start")
        if "overran" in life.how:
            out.append(f"shutdown: run {i + 1} did not exit within the time limit after SIGTERM")
        elif (life.how in ("sigterm", "final") and life.signalled is not None
              and life.ended is not None and life.ended - life.signalled > STOP_BUDGET):
            out.append(f"shutdown: run {i + 1} exited {life.ended - life.signalled:.1f} s after "
                       f"SIGTERM (promised within {STOP_BUDGET:.0f} s)")
        if life.how in ("sigterm", "final") and life.open_after:
            named = all(any(oid in t for t in alert_texts) for oid in life.open_after)
            if life.code != 1 or not named:
                out.append(f"shutdown: run {i + 1} ({life.how}) left {life.open_after} open with "
                           f"exit code {life.code}" + ("" if named else " and no alert naming them"))
    if not any(t > faults_end for t in ready_after):
        out.append("uptime: /ready never answered 200 in the quiet period after the faults")
    return out


def _db_rows(data_dir: Path, sql: str) -> list[sqlite3.Row]:
    from polybot.store import connect_readonly, db_path

    with closing(connect_readonly(db_path(data_dir))) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


def check_orders_and_ledger(sim: Any, data_dir: Path, since: datetime | None = None) -> list[str]:
    """`since`: a paper-first session's switch to live; paper intents (created before it) never
    reached the exchange and are not compared with it."""
    from polybot.store import connect_readonly, db_path, read_ledger_state

    out: list[str] = []
    ex = sim.exchange
    accepted = [a for a in ex.orders_accepted if a.account_id == BOT]
    rows = _db_rows(data_dir, "SELECT * FROM orders ORDER BY created_at")
    if since is not None:
        rows = [r for r in rows if _stamp(r["created_at"]) >= since]
    by_id: dict[str, sqlite3.Row] = {}
    for r in rows:
        if r["exchange_id"]:
            if r["exchange_id"] in by_id:
                out.append(f"intended: exchange order {r['exchange_id']} recorded under two "
                           f"intents ({by_id[r['exchange_id']]['local_id']}, {r['local_id']})")
            by_id[r["exchange_id"]] = r
    spare = [r for r in rows if not r["exchange_id"]]
    local_of: dict[str, str] = {}
    accepted_ids = {a.order_id for a in accepted}
    for a in accepted:
        req = a.request
        key = (req.market_slug, req.intent.name, Decimal(req.price), Decimal(req.quantity))
        r = by_id.get(a.order_id)
        if r is not None:
            got = (r["market_slug"], r["intent"], Decimal(r["price"]), Decimal(r["quantity"]))
            if got != key:
                out.append(f"intended: exchange order {a.order_id} {key} differs from its "
                           f"intent {r['local_id']} {got}")
            continue
        match = next((s for s in spare if (s["market_slug"], s["intent"], Decimal(s["price"]),
                                           Decimal(s["quantity"])) == key), None)
        if match is None:
            out.append(f"intended: exchange order {a.order_id} {key} matches no intent in the "
                       "bot's database (a duplicate or an order the bot did not mean)")
        else:  # a create whose answer never came: its fills may be booked under the intent
            spare.remove(match)
            local_of[a.order_id] = match["local_id"]
    for oid in by_id:
        if oid not in accepted_ids:
            out.append(f"intended: the bot records exchange order {oid} the exchange never had")

    with closing(connect_readonly(db_path(data_dir))) as conn:
        state = read_ledger_state(conn)
    if state is None:
        return [*out, "ledger: no ledger saved in the bot's database"]
    booked = {b.order_id: b.cum_qty for b in state.bookings}
    for a in accepted:
        o = ex.get_order(BOT, a.order_id)
        if o is None:
            continue
        got = booked.get(a.order_id, booked.get(local_of.get(a.order_id, ""), ZERO))
        if got != o.cum_quantity:
            out.append(f"booked once: order {a.order_id} filled {o.cum_quantity} at the exchange, "
                       f"ledger booked {got}")
    bot_pos = {m.market_slug: (ZERO if m.settled_value is not None else m.net_qty)
               for m in state.markets}
    ex_pos = {s: (ZERO if p.expired else p.net) for s, p in ex.positions(BOT).items()}
    for slug in sorted(set(bot_pos) | set(ex_pos)):
        if bot_pos.get(slug, ZERO) != ex_pos.get(slug, ZERO):
            out.append(f"positions: {slug} ledger {bot_pos.get(slug, ZERO)} exchange "
                       f"{ex_pos.get(slug, ZERO)}")
    cash = ex.balance(BOT).current_balance
    if state.cash != cash:
        out.append(f"cash: ledger {state.cash} exchange {cash}")
    return out


def _stamp(value: Any) -> datetime:
    if isinstance(value, int | float):  # epoch seconds or ms
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    d = datetime.fromisoformat(str(value))
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def check_secrets(values: list[str], data_dir: Path, health: list[str],
                  alert_texts: list[str]) -> list[str]:
    out = []
    values = [v for v in values if len(v) >= 6]
    sources: list[tuple[str, str]] = []
    for path in sorted(data_dir.iterdir()):
        if path.is_file() and (path.suffix in (".log", ".out") or ".log." in path.name):
            sources.append((path.name, path.read_text("utf-8", "replace")))
    sources += [("health response", h) for h in health]
    sources += [("alert payload", t) for t in alert_texts]
    for where, text in sources:
        for v in values:
            if v in text:
                out.append(f"secret: a secret value ({len(v)} chars) appears in {where}")
                break
    return sorted(set(out))


# --- many seeds -------------------------------------------------------------------------------------


async def run_seeds(seeds: list[int], *, session: float, quiet: float, workdir: Path | None,
                    say: Callable[[str], None], verbose: bool = False) -> list[SeedResult]:
    results = []
    for seed in seeds:
        r = await run_seed(seed, session=session, quiet=quiet, workdir=workdir,
                           say=say if verbose else (lambda s: None))
        results.append(r)
        st = r.stats
        say(f"seed {seed:3d} {r.mode:10s} {'PASS' if r.passed else 'FAIL'} {r.seconds:5.1f} s  "
            f"orders {st['orders']} filled {st['fills']} max at-risk {st['max_portfolio']} "
            f"lives {st['lives']} alerts {st['alerts']} tif {st['tif']} days {st.get('days')} "
            f"halts {','.join(st.get('halts', [])) or '-'}"
            + (f" unresolved at exit {st['unresolved']}" if st["unresolved"] else ""))
        for f in r.failures:
            say(f"    {f}")
        if r.failures:
            say(f"    data: {r.data_dir}")
            for a in st["actions"]:
                say(f"      {a}")
    return results


def summary(results: list[SeedResult]) -> str:
    failed = [r.seed for r in results if not r.passed]
    line = f"{len(results) - len(failed)} passed, {len(failed)} failed"
    if failed:
        line += f"; replay: python -m tests.chaos --seed {failed[0]}  (failing seeds {failed})"
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=int(os.environ.get("CHAOS_SEEDS", "6")),
                   help="run seeds first..first+N-1 (default: $CHAOS_SEEDS or 6)")
    p.add_argument("--first", type=int, default=int(os.environ.get("CHAOS_FIRST_SEED", "0")))
    p.add_argument("--seed", type=int, action="append", help="run only this seed (repeatable)")
    p.add_argument("--session", type=float, default=20.0, help="seconds of faults per seed")
    p.add_argument("--quiet", type=float, default=7.0, help="fault-free seconds before the stop")
    p.add_argument("--keep", action="store_true", help="keep passing seeds' data directories")
    p.add_argument("-v", "--verbose", action="store_true", help="print each action as it runs")
    args = p.parse_args(argv)
    seeds = args.seed or list(range(args.first, args.first + args.seeds))

    def say(line: str) -> None:
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="polybot-chaos-"))
    t = time.monotonic()
    results = trio.run(lambda: run_seeds(seeds, session=args.session, quiet=args.quiet,
                                         workdir=workdir, say=say, verbose=args.verbose))
    if not args.keep:
        import shutil

        for r in results:
            if r.passed:
                shutil.rmtree(r.data_dir, ignore_errors=True)
    say(f"{summary(results)}  ({time.monotonic() - t:.0f} s)")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
