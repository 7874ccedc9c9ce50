"""What a database must keep across an upgrade and a mode switch (schema v2).

`tests/fixtures/e7900f6_data_dir/polybot.db` was written by the code of e7900f6 (schema v1) with
`tests/fixtures/make_e7900f6_data_dir.py`: a live DATA_DIR with a position, an active daily-loss
and drawdown halt, an unanswered intent, a resting order, fills and equity history.
"""

from __future__ import annotations

import base64
import shutil
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import trio

from polybot.config import load_settings
from polybot.execution.orders import TrackedOrder
from polybot.exposure import position_at_risk
from polybot.ledger import Ledger
from polybot.model import Intent, OrderState, TimeInForce
from polybot.runtime import Bot
from polybot.store import DB_NAME, SCHEMA_VERSION, Store

FIXTURE = Path(__file__).parents[1] / "fixtures" / "e7900f6_data_dir" / DB_NAME
SLUG = "aec-nba-bos-lal-2026-11-20"


def old_data_dir(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE, tmp_path / DB_NAME)
    return tmp_path


def env(data_dir: Path, mode: str) -> dict[str, str]:
    return {"TRADING_MODE": mode, "PM_API_KEY_ID": str(uuid.UUID(int=1)),
            "PM_PRIVATE_KEY": base64.b64encode(bytes(range(32))).decode(),
            "MARKET_SLUGS": SLUG, "DATA_DIR": str(data_dir), "LOG_FILE": "",
            "TRADES_LOG_FILE": "", "HEALTH_PORT": "0"}


def count(data_dir: Path, table: str) -> int:
    with closing(sqlite3.connect(data_dir / DB_NAME)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_a_data_dir_written_by_e7900f6_opens_with_positions_halts_intents_and_history(tmp_path):
    data = old_data_dir(tmp_path)
    bot = Bot(load_settings(env(data, "live")))  # the database was live: no switch
    try:
        m = bot.ledger.markets[SLUG]
        assert (m.net_qty, m.avg_price, m.cost_known) == (D(40), D("0.42"), True)
        assert (bot.ledger.cash, bot.ledger.net_transfers) == (D("1032.95"), D(50))
        halt = bot.trading.halt_state()
        assert halt.drawdown_halt and halt.daily_loss_halt_day == date(2026, 11, 20)
        assert (halt.day_start_equity, halt.high_water_mark) == (D(1100), D(1200))
        assert "drawdown" in bot.trading.halt_reasons()  # held until an operator resumes
        orders = {o.local_id: o for o in bot.store.load_orders()}
        assert orders["p-2"].state is OrderState.SUBMITTING and orders["p-2"].exchange_id is None
        assert orders["p-1"].state is OrderState.PARTIALLY_FILLED and orders["p-1"].cum_qty == 40
        assert bot.store.get_meta("live_synced_at") is not None  # no fresh adoption
        assert bot.store.get_meta("mode") == "live"
        for table in ("fills", "executions", "equity_snapshots", "daily_stats", "rejections"):
            assert count(data, table) == 1, table
        assert count(data, "archived_ledgers") == 0
    finally:
        bot.store.close()
    with closing(sqlite3.connect(data / DB_NAME)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_from_before_the_mode_was_stored_is_paper_unless_it_ever_reconciled_live(
        tmp_path):
    data = old_data_dir(tmp_path)
    with closing(sqlite3.connect(data / DB_NAME)) as conn:  # still v1: as a paper run left it
        conn.execute("DELETE FROM meta")
        conn.commit()
    store = Store.open(data, in_thread=False)
    assert store.get_meta("mode") == "paper"
    switch = store.switch_mode("live")
    assert switch is not None and (switch.old_mode, switch.new_mode) == ("paper", "live")
    assert store.load_ledger() is None
    store.close()


async def test_a_switch_archives_ledger_halt_and_meta_and_books_old_orders_cancelled(tmp_path):
    data = old_data_dir(tmp_path)
    store = Store.open(data, in_thread=False)
    switch = store.switch_mode("paper")
    assert switch is not None and switch.old_mode == "live" and switch.positions == 1
    assert set(switch.open_orders) == {"p-1", "p-2"}
    assert "may still rest at the exchange" in switch.describe()
    assert store.load_ledger() is None and store.load_halt_state() is None
    assert store.get_meta("live_transfer_ids") is None and store.load_orders() == []
    assert store.get_meta("mode") == "paper"
    assert store.switch_mode("paper") is None  # the same mode again: nothing happens
    with closing(sqlite3.connect(data / DB_NAME)) as conn:
        mode, ledger, positions, halt, meta = conn.execute(
            "SELECT mode, ledger, positions, halt_state, meta FROM archived_ledgers").fetchone()
    assert mode == "live" and SLUG in positions and "drawdown" in halt and "bc-1" in meta
    assert "1032.95" in ledger
    store.close()


async def test_a_requested_cancel_survives_a_restart(tmp_path):
    # money audit suspicion: cancel_requested was not persisted, so after a crash an order in a
    # market dropped from MARKET_SLUGS kept working until the next clean shutdown
    store = Store(tmp_path / DB_NAME, in_thread=False)
    order = TrackedOrder("t-1", SLUG, Intent.BUY_LONG, D("0.4"), D(5), TimeInForce.GTC,
                         state=OrderState.NEW, exchange_id="x-1",
                         created_at=datetime(2026, 11, 26, 12, tzinfo=UTC))
    async with trio.open_nursery() as n:
        await n.start(store.run)
        await store.record_intent(order)
        order.cancel_requested = True
        store.record_order(order)
        await store.flush()
        n.cancel_scope.cancel()
    store.close()
    (restored,) = Store(tmp_path / DB_NAME, in_thread=False).load_orders()
    assert restored.cancel_requested


def test_an_adopted_position_without_cost_counts_a_dollar_a_contract_until_priced(tmp_path):
    # money audit suspicion: set_position kept an average price of 0, so a long adopted without
    # `cost` counted $0 at risk in every cap
    ledger = Ledger(D(1000))
    ledger.set_position(SLUG, D(30))
    assert position_at_risk(ledger.position(SLUG)) == 30
    ledger.set_position(SLUG, D(-20))  # still unknown, now short
    assert position_at_risk(ledger.position(SLUG)) == 20
    ledger.set_position(SLUG, D(-20), D("0.25"))  # the exchange told the cost
    assert position_at_risk(ledger.position(SLUG)) == D(15)
    store = Store(tmp_path / DB_NAME, in_thread=False)  # and a restart keeps "unknown"
    ledger.set_position("m-2", D(10))
    store.save_ledger(ledger.drain_changes())
    store.close()
    restored = Ledger.restore(Store(tmp_path / DB_NAME, in_thread=False).load_ledger())
    assert position_at_risk(restored.position("m-2")) == 10


def test_a_trade_that_flattens_an_unknown_cost_position_makes_the_next_cost_known():
    ledger = Ledger(D(1000))
    ledger.set_position(SLUG, D(10))
    ledger.apply_execution("o1", SLUG, Intent.SELL_LONG, D(10), last_px=D("0.5"))
    ledger.apply_execution("o2", SLUG, Intent.BUY_LONG, D(4), last_px=D("0.3"))
    assert position_at_risk(ledger.position(SLUG)) == D("1.2")


def test_a_read_only_report_reads_an_e7900f6_database_before_the_bot_migrated_it(tmp_path):
    from polybot.store import connect_readonly, read_ledger_state

    data = old_data_dir(tmp_path)
    with closing(connect_readonly(data / DB_NAME)) as conn:
        state = read_ledger_state(conn)
    assert state is not None and [(m.net_qty, m.cost_known) for m in state.markets] == [
        (D(40), True)]
