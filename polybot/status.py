"""What the health app, the metrics and the status line read: views over the running bot.

Read-only: nothing here changes a component. Daily P&L and the drawdown come from the trading
state (the one owner of the day's start equity and the high-water mark), equity and positions from
the ledger, USD at risk from the running exposure totals.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs
import trio

from polybot.exposure import Exposure
from polybot.health import MarketRow, StatusReport
from polybot.metrics import Metrics
from polybot.model import FairValue, MarketState, TradingState
from polybot.pricing import TAKER_THETA, fee_per_contract, taker_theta
from polybot.trading_state import TradingStateMachine, trading_day

if TYPE_CHECKING:
    from polybot.runtime import Bot


class StatusViews:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._day_base: tuple[Any, int, Decimal, int] | None = None  # counts when the day began
        self._ready_once = False  # the start-up's conditions were met once (see not_ready_reason)

    def not_ready_reason(self) -> str | None:
        """Why `/ready` says 503, or None: trading is allowed.

        Until the bot was first ready, start-up is part of it: with MARKET_LEAGUES, discovery's
        first pass listed every league, and every market of the universe is on the market feed
        and every confirmed target on the odds feed, so the first 200 means the configured
        leagues' games are in. Later additions (a discovery pass every few minutes) join those
        feeds a moment after they joined the universe without taking /ready down for the markets
        already trading.
        """
        reason = self._not_ready_reason()
        if reason is None:
            self._ready_once = True
        return reason

    def _not_ready_reason(self) -> str | None:
        bot = self.bot
        sup = bot.supervisor.state()
        if sup.phase.name != "RUNNING":
            return f"supervisor {sup.phase.name.lower()}" + (f": {sup.reason}" if sup.reason else "")
        if not bot._reference_loaded:
            return "loading market metadata from the exchange"
        stream = bot._markets_stream
        if stream is None or not stream.status.connected:
            return "exchange market feed not connected" + (
                f" ({stream.status.describe()})" if stream is not None else "")
        discovery = bot._discovery
        starting = not self._ready_once
        if starting and bot.settings.market_leagues and (discovery is None
                                                         or not discovery.listed_once):
            return "discovering the games of " + ", ".join(bot.settings.market_leagues)
        unwatched = sum(1 for slug in bot.universe if not stream.watches(slug)) if starting else 0
        if unwatched:
            return f"subscribing to {unwatched} market(s) on the exchange market feed"
        if bot.settings.opticodds_api_key is None:
            return "no OPTICODDS_API_KEY: cannot price, so no trading"
        feed = bot._odds_feed
        if feed is None:
            return "matching markets to OpticOdds fixtures"
        unpriced = sum(1 for listing in bot.universe.listings()
                       if (target := bot._odds_target(listing)) is not None
                       and feed.target_of(listing.slug) != target) if starting else 0
        if unpriced:
            return f"odds feed: {unpriced} matched market(s) not streamed yet"
        if feed.status.state.value != "live":
            return f"odds feed not live ({feed.status.state.value})"
        if bot.live is not None and not bot.live.trading_allowed:
            return f"live executor: {bot.live.readiness_reason}"
        if not bot.trading.begun:
            return f"trading state: {bot.trading.reason}"
        if bot.trading.state is TradingState.HALTED:
            return f"trading HALTED: {bot.trading.reason}"
        return None

    def degraded(self) -> list[str]:
        bot = self.bot
        out = []
        if bot._markets_stream is not None and not bot._markets_stream.status.connected:
            out.append(bot._markets_stream.status.describe())
        if bot._odds_feed is not None and bot._odds_feed.status.state.value != "live":
            out.append(f"odds feed {bot._odds_feed.status.state.value}")
        return out

    def status_report(self) -> StatusReport:
        bot = self.bot
        rows = []
        positions = bot.ledger.positions
        now = bot.clock.now()
        for listing in bot.universe.listings():
            slug = listing.slug
            book = bot.books.get(slug)
            fv: FairValue | None = bot.fair_values.get(slug)
            bid = book.best_bid.price if book and book.best_bid else None
            ask = book.best_offer.price if book and book.best_offer else None
            edge = None
            if fv is not None and ask is not None:
                info = bot.universe.info(slug)
                theta = taker_theta(info) if info else TAKER_THETA
                edge = (fv.q - ask - fee_per_contract(ask, theta)).quantize(Decimal("0.0001"))
            pos = positions.get(slug)
            state = ("closed" if book and book.state is not MarketState.OPEN else
                     "trusted" if bot.books.is_trusted(slug) else "stale")
            fixture = listing.target.fixture_id if listing.target is not None else None
            settlement = listing.settlement if isinstance(listing.settlement, Decimal) else None
            rows.append(MarketRow(slug=slug, bid=bid, ask=ask,
                                  fair=fv.q.quantize(Decimal("0.0001")) if fv else None, edge=edge,
                                  position=pos.net_qty if pos else Decimal(0), state=state,
                                  phase=listing.phase(now).value, start_time=listing.start_time,
                                  fixture=fixture or bot.fair_values.fixture_id(slug),
                                  origin=listing.origin.value, league=listing.league or None,
                                  not_traded=bot.engine.not_opened(slug),
                                  settlement=settlement))
        led = bot.ledger
        pnl = {"equity": led.equity, "cash": led.cash, "daily": bot.engine.daily_pnl(),
               "realized": led.realized_pnl, "unrealized": led.unrealized_pnl(), "fees": led.fees_total}
        extra: dict[str, Any] = {"counters": attrs.asdict(bot.counters),
                                 "rejections": dict(bot.gate.rejections),
                                 "trading": bot.trading.status(),
                                 "not_opened": bot.universe.unknown(),
                                 "universe": self.universe_summary(now)}
        extra.update(self.dashboard_facts(now))
        if bot.settings.instance:  # INSTANCE: which account this port's bot trades for
            extra["instance"] = bot.settings.instance
        if bot.live is not None:
            extra["executor"] = bot.live.status()
            extra["journal"] = bot.store.journal_status()
        if bot._discovery is not None:
            extra["discovery"] = bot._discovery.status()
        if bot.engine.claims is not None:  # CLAIMS_DIR: which markets are this instance's
            extra["claims"] = bot.engine.claims.status()
        return StatusReport(mode=bot.mode, trading_state=bot.trading.state.value,
                            trading_reason=bot.trading.reason or None, markets=rows, pnl=pnl,
                            recent_errors=list(bot.recent_errors), extra=extra)

    def dashboard_facts(self, now: datetime) -> dict[str, Any]:
        """What the dashboard draws besides the markets: every cap beside its use, the positions
        with their marks, the open orders, the feeds' ages, and when the trading day began and
        ends (a daily-loss halt clears then). Same moment as the rest of the report."""
        bot = self.bot
        led, exposure = bot.ledger, bot.exposure
        totals = exposure.totals()
        uses = limit_uses(totals, bot.trading, bot.gate.limits)  # the figures the halts use
        risk = {
            "caps": {scope: cap for scope, (_used, cap) in uses.items()},
            "by_market": dict(totals.by_market), "by_event": dict(totals.by_event),
            "portfolio": totals.portfolio, "positions": len(totals.counted),
            "daily_loss": uses["daily_loss"][0],
            "drawdown": uses["drawdown"][0], "drawdown_limit": uses["drawdown"][1],
        }
        positions = [{"market": slug, "qty": pos.net_qty, "avg_price": pos.avg_price,
                      "mark": led.mark_price(slug), "unrealized": led.unrealized_pnl(slug),
                      "at_risk": exposure.market(slug)}
                     for slug, pos in sorted(led.positions.items())]
        orders = [{"market": o.market_slug, "intent": o.intent.name, "price": o.price,
                   "quantity": o.quantity, "filled": o.cum_qty, "state": o.state.name,
                   "reason": o.reason, "created": o.created_at}
                  for o in sorted(bot.registry.open_orders(), key=lambda o: o.created_at)]
        mono = trio.current_time()
        feeds: dict[str, Any] = {}
        for name, stream in (("markets", bot._markets_stream), ("private", bot._private_stream)):
            if stream is not None:
                st = stream.status
                feeds[name] = {"connected": st.connected, "reconnects": stream.reconnects,
                               "frames": stream.frames, "age": _age(mono, st.last_frame_at)}
        if bot._odds_feed is not None:
            for sport, st in sorted(bot._odds_feed.statuses.items()):
                feeds[f"odds {sport}"] = {"connected": st.state.value == "live",
                                          "reconnects": st.reconnects, "frames": st.events,
                                          "age": _age(mono, st.last_frame_at)}
        s = bot.settings
        day = trading_day(now, ZoneInfo(s.daily_reset_tz), s.daily_reset_hour)
        start = datetime.combine(day, time(s.daily_reset_hour), ZoneInfo(s.daily_reset_tz))
        return {"now": now, "risk": risk, "positions": positions, "open_orders": orders, "feeds": feeds,
                "day": {"start": start.astimezone(UTC),
                        "end": (start + timedelta(days=1)).astimezone(UTC)}}

    def universe_summary(self, now: Any) -> dict[str, Any]:
        """Markets by phase, and how many were ever added and retired."""
        universe = self.bot.universe
        return {"by_phase": {p.value: n for p, n in universe.by_phase(now).items()},
                "added": universe.added, "retired": universe.retired}

    def update_metrics(self) -> None:
        bot = self.bot
        m, led = bot.metrics, bot.ledger
        for phase, n in bot.universe.by_phase(bot.clock.now()).items():
            m.markets.labels(phase=phase.value).set(n)
        _sync_counter(m.markets_added, bot.universe.added)
        _sync_counter(m.markets_retired, bot.universe.retired)
        m.equity_usd.set(float(led.equity))
        m.daily_pnl_usd.set(float(bot.engine.daily_pnl()))
        m.realized_pnl_usd.set(float(led.realized_pnl))
        publish_limits(m, bot.exposure, bot.trading, bot.gate.limits)
        m.trading_halted.set(1.0 if bot.trading.state is TradingState.HALTED else 0.0)
        now = trio.current_time()
        for slug, t in bot._received_at.items():
            m.book_age.labels(market=slug).set(now - t)
        for slug in bot.fair_values.slugs:
            age = bot.fair_values.age(slug, now)
            if age is not None:
                m.fair_value_age.labels(market=slug).set(age)
        for name, stream in (("markets", bot._markets_stream), ("private", bot._private_stream)):
            if stream is not None:
                _sync_counter(m.frames.labels(stream=name), stream.frames)
                _sync_counter(m.bytes_received.labels(stream=name), stream.bytes)
                _sync_counter(m.reconnects.labels(stream=name), stream.reconnects)
        feed = bot._odds_feed
        if feed is not None:  # per-sport SSE streams; their bytes are not kept across connections
            _sync_counter(m.frames.labels(stream="odds"),
                          sum(st.events for st in feed.statuses.values()))
            _sync_counter(m.reconnects.labels(stream="odds"),
                          sum(st.reconnects for st in feed.statuses.values()))

    def record_daily_stats(self) -> None:
        """The trading day's row (its start equity; counts since the day began)."""
        bot = self.bot
        trading = bot.trading
        day, start = trading.day, trading.day_start_equity
        if not trading.begun or day is None or start is None:
            return
        totals = (bot.recorder.fills, bot.ledger.fees_total, sum(bot.gate.rejections.values()))
        if self._day_base is None or self._day_base[0] != day:
            self._day_base = (day, *totals)
        _, fills, fees, rejections = self._day_base
        bot.store.record_daily_stats(day.isoformat(), start_equity=start,
                                     end_equity=bot.ledger.equity, fills=totals[0] - fills,
                                     fees=totals[1] - fees, rejections=totals[2] - rejections)

    def one_line_status(self) -> str:
        bot = self.bot
        slugs = list(bot.universe)
        live = sum(1 for s in slugs if bot.books.is_trusted(s))
        priced = sum(1 for s in slugs if bot.fair_values.usable(s) is not None)
        c = bot.counters
        by_phase = bot.universe.by_phase(bot.clock.now())
        phases = " ".join(f"{p.value.replace(' ', '-')} {n}" for p, n in by_phase.items() if n)
        return (f"[{bot.mode}] markets live {live}/{len(slugs)} priced {priced}"
                f" ({phases or 'none'}; +{bot.universe.added} -{bot.universe.retired})"
                f" | signals {c.signals} orders {c.orders} fills {bot.recorder.fills}"
                f" | equity {bot.ledger.equity:.2f} P&L {bot.ledger.pnl:+.2f}"
                f" | {bot.trading.state.value}")


def limit_uses(totals: Any, trading: TradingStateMachine,
               limits: Any) -> dict[str, tuple[Decimal, Decimal | None]]:
    """Every limit's use and cap, from their owners: `totals` the exposure's (`Exposure.totals`),
    daily loss and drawdown as the halts measure them, the caps the gate's `risk.RiskLimits`
    (duck-typed: only the engine and the component builder import the gate). /metrics and the
    dashboard both show these."""
    zero = Decimal(0)
    return {
        "market": (max(totals.by_market.values(), default=zero), limits.max_position_per_market),
        "event": (max(totals.by_event.values(), default=zero), limits.max_correlated_exposure),
        "portfolio": (totals.portfolio, limits.max_portfolio_exposure),
        "positions": (Decimal(len(totals.counted)), Decimal(limits.max_positions)),
        "daily_loss": (trading.daily_loss_used(), trading.limits.max_daily_loss),
        "drawdown": (trading.drawdown_used(), trading.drawdown_limit()),
    }


def publish_limits(m: Metrics, exposure: Exposure, trading: TradingStateMachine,
                   limits: Any) -> None:
    """Every limit's use next to its cap (`limit_uses`; a housekeeping pass, O(markets)).
    Decimal up to here, floats from here on."""
    uses = limit_uses(exposure.totals(), trading, limits)
    for scope, (used, cap) in uses.items():
        if scope != "positions":
            m.set_limit(scope, float(used), None if cap is None else float(cap))
    held, most = uses["positions"]
    m.positions_held.set(float(held))
    m.risk_cap_positions.set(float(most or 0))


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(now - then, 0.0), 1)


def _sync_counter(counter: Any, value: int) -> None:
    """Advance a Prometheus counter to a component's own running total."""
    current = counter._value.get()
    if value > current:
        counter.inc(value - current)
