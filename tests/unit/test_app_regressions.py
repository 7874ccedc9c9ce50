"""Composition-root regressions found by the chaos suite (tests/chaos)."""

from __future__ import annotations

import base64
import types
import uuid
from datetime import UTC, datetime

from polybot.config import load_settings
from polybot.model import BookSnapshot, MarketState
from polybot.runtime import Bot

SLUG = "m-1"


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.wall = now

    def monotonic(self) -> float:
        return 0.0

    def now(self) -> datetime:
        return self.wall


def bot(tmp_path, clock: FixedClock | None = None) -> Bot:
    env = {
        "TRADING_MODE": "paper",
        "PM_API_KEY_ID": str(uuid.UUID(int=1)),
        "PM_PRIVATE_KEY": base64.b64encode(bytes(range(32))).decode(),
        "MARKET_SLUGS": SLUG,
        "DATA_DIR": str(tmp_path),
        "LOG_FILE": "",
        "TRADES_LOG_FILE": "",
        "HEALTH_PORT": "0",
    }
    return Bot(load_settings(env), clock=clock or FixedClock(datetime(2026, 11, 26, 15, tzinfo=UTC)))


def test_a_market_leaving_open_is_reported_to_the_executor_once_per_state(tmp_path):
    # Found investigating chaos seeds 36/37: the live executor's on_market_state (a check soon;
    # an expired market we hold settled once its value is published) was never called, so a
    # settlement whose private-stream frame was lost waited for the periodic reconciliation.
    b = bot(tmp_path)
    seen: list[tuple[str, MarketState]] = []
    b.executor = types.SimpleNamespace(on_book=lambda book, trusted: [],
                                       on_market_state=lambda s, st: seen.append((s, st)))
    for state in (MarketState.OPEN, MarketState.CLOSED, MarketState.CLOSED, MarketState.EXPIRED,
                  MarketState.EXPIRED):
        b.on_market_book(BookSnapshot(SLUG, (), (), state=state), now=1.0)
    assert seen == [(SLUG, MarketState.CLOSED), (SLUG, MarketState.EXPIRED)]
    assert b.books.get(SLUG).state is MarketState.EXPIRED
    b.store.close()


def test_daily_stats_row_counts_only_what_happened_since_the_trading_day_began(tmp_path):
    # store.record_daily_stats had no caller: the daily_stats table issue 6 persists stayed empty
    import sqlite3
    from decimal import Decimal

    b = bot(tmp_path)
    b.trading.observe(b.ledger.equity, datetime(2026, 11, 26, 15, tzinfo=UTC))
    b.gate.rejections["kelly_target_reached"] += 3  # before the first row: the day's baseline
    b.views.record_daily_stats()
    b.gate.rejections["kelly_target_reached"] += 2
    b.views.record_daily_stats()
    b.store.close()
    rows = sqlite3.connect(tmp_path / "polybot.db").execute(
        "SELECT day, start_equity, end_equity, rejections FROM daily_stats").fetchall()
    assert rows == [("2026-11-26", "1000.00", "1000.00", 2)]
    assert Decimal(rows[0][1]) == b.ledger.equity


def test_a_market_back_after_retiring_counts_its_signals_in_a_series_that_is_exported(tmp_path):
    # The runtime keeps each market's signals counter child (a `labels` lookup per decision cost
    # a lock and a tuple); a retirement removes the market's series, so the kept child must go
    # too, or the market's signals after it comes back are counted where nothing exports them.
    from datetime import timedelta
    from decimal import Decimal as D

    import attrs
    import trio

    from polybot.model import FairValue, MarketInfo, MarketTarget, PriceLevel

    b = bot(tmp_path)
    b._reference_loaded = True
    # every signal is rejected (no room in the market): nothing fills, the market can retire
    b.gate.limits = attrs.evolve(b.gate.limits, max_position_per_market=D(0))

    def add() -> None:
        b.universe.put(MarketInfo(SLUG, market_id="1", event_id="e1", event_slug="e1",
                                  start_time=b.clock.now() + timedelta(days=1)))
        b.universe.update(SLUG, target=MarketTarget(SLUG, "fx1", "yes", "basketball"),
                          target_confirmed=True)
        b.fair_values.track(SLUG, "fx1")
        b.fair_values.set(FairValue(SLUG, D("0.60"), "t", (), 0.0, "fx1"))
        b.fair_values.set_trusted([SLUG], True, 0.0)

    def exported() -> str:
        return b.metrics.render().decode()

    async def edge_frame(offer: str) -> None:  # an offer well under the fair value: one signal
        await b.on_book_frame(BookSnapshot(SLUG, (PriceLevel(D("0.30"), D(5)),),
                                           (PriceLevel(D(offer), D(7)),)), trio.current_time())

    add()
    trio.run(edge_frame, "0.50")
    assert f'polybot_signals_total{{market="{SLUG}"}} 1.0' in exported()
    assert b.universe.retire(SLUG, "test")
    assert f'market="{SLUG}"' not in exported().split("polybot_signals_total", 1)[1].split("#")[0]
    add()
    trio.run(edge_frame, "0.50")
    assert b.counters.signals == 2 and b.counters.orders == 0
    assert f'polybot_signals_total{{market="{SLUG}"}} 1.0' in exported()
    b.store.close()
