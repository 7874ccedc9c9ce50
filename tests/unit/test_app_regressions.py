"""Composition-root regressions found by the chaos suite (tests/chaos)."""

from __future__ import annotations

import base64
import types
import uuid

from polybot.app import Bot
from polybot.config import load_settings
from polybot.model import BookSnapshot, MarketState

SLUG = "m-1"


def bot(tmp_path) -> Bot:
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
    return Bot(load_settings(env))


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
    from datetime import UTC, datetime
    from decimal import Decimal

    b = bot(tmp_path)
    b.gate.observe(equity=b.ledger.equity, positions={}, open_orders=[],
                   now=datetime(2026, 11, 26, 15, tzinfo=UTC))
    b.gate.rejections["kelly_target_reached"] += 3  # before the first row: the day's baseline
    b.record_daily_stats()
    b.gate.rejections["kelly_target_reached"] += 2
    b.record_daily_stats()
    b.store.close()
    rows = sqlite3.connect(tmp_path / "polybot.db").execute(
        "SELECT day, start_equity, end_equity, rejections FROM daily_stats").fetchall()
    assert rows == [("2026-11-26", "1000.00", "1000.00", 2)]
    assert Decimal(rows[0][1]) == b.ledger.equity
