"""The account's money through the whole bot: transfers, transfer statuses, paper <-> live.

The real bot (`polybot.runtime.Bot`: store, trading state, live or paper executor, REST
client and websockets) against `polybot.sim` over loopback, on Trio's mock clock (real sockets
in this process: loopback answers at once, so it jumps after 1 ms of real idleness). These are the money audit's reproductions
r1_transfer, r5_rejected_transfer and r4_paper_then_live, asserting their "Should".
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from polybot.clock import ReplayClock
from polybot.runtime import Bot
from polybot.sim.engine import AccountBalanceChange, Activity, ActivityType
from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from polybot.store import db_path
from tests.integration import harness
from tests.integration.harness import replay_clock, running_bot

D = Decimal
REJECTED = "ACCOUNT_BALANCE_CHANGE_STATUS_REJECTED"
PENDING = "ACCOUNT_BALANCE_CHANGE_STATUS_PENDING"
COMPLETED = "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED"


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.001)


async def wait_for(pred: Callable[[], bool], timeout: float = 30.0, what: str = "",
                   poll: float = 0.1) -> None:
    # each wake-up costs the mock clock 1 ms of real time: poll long waits slowly
    if not await harness.wait_for(pred, timeout, poll):
        raise AssertionError(f"timed out waiting for {what or pred}")


def gate(bot: Bot) -> dict[str, Any]:
    return bot.trading.status()


def balance_change(sim: Any, kind: ActivityType, tid: str, amount: str, status: str) -> Activity:
    now = sim.exchange.now()
    return Activity(type=kind, time=now, account_id=sim.account_id,
                    balance_change=AccountBalanceChange(tid, D(amount), now, now, status=status))


async def live_on_day_two(sim: Any, data: Path, clock: ReplayClock) -> Any:
    """A live bot holding the account's $1000, moved to the next trading day (so the first
    day's start, taken before the adoption, is out of the picture as in the audit)."""
    cm = running_bot(sim, data, live=True, clock=clock)
    bot = await cm.__aenter__()
    await wait_for(lambda: bot.executor.trading_allowed and bot.ledger.cash == D(1000),
                   what="the account adopted")
    day_one = bot.trading.day
    clock.jump(timedelta(days=1))
    await wait_for(lambda: bot.trading.day != day_one, what="day 2 observed")
    await trio.sleep(2.5)
    assert D(gate(bot)["day_start_equity"]) == 1000 and gate(bot)["state"] == "ACTIVE"
    return cm, bot


async def test_a_withdrawal_and_a_deposit_shift_the_gates_day_start_and_never_halt(
        tmp_path, mock_clock):
    # money audit r1: a $200 withdrawal halted (daily loss and drawdown); a $500 deposit left
    # the day start at 1000 with equity 1300, widening the daily-loss limit by $500
    clock = replay_clock()
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        cm, bot = await live_on_day_two(sim, tmp_path, clock)
        try:
            sim.exchange.withdraw(sim.account_id, D("200"))
            await wait_for(lambda: bot.ledger.cash == D(800), what="the withdrawal booked")
            await trio.sleep(2.5)  # the gate observes the new equity
            st = gate(bot)
            assert (st["state"], st["halt_reasons"]) == ("ACTIVE", [])
            assert D(st["day_start_equity"]) == 800 and D(st["high_water_mark"]) == 800
            assert bot.ledger.net_transfers == -200 and bot.ledger.pnl == 0
            sim.exchange.deposit(sim.account_id, D("500"))
            await wait_for(lambda: bot.ledger.cash == D(1300), what="the deposit booked")
            await trio.sleep(2.5)
            st = gate(bot)
            assert st["state"] == "ACTIVE"
            assert D(st["day_start_equity"]) == 1300 and D(st["high_water_mark"]) == 1300
            # the daily-loss limit is still $25 from here, not $525
            assert bot.ledger.equity - D(st["day_start_equity"]) == 0
        finally:
            await cm.__aexit__(None, None, None)


async def test_rejected_and_pending_transfers_book_nothing_until_money_moves(tmp_path, mock_clock):
    # money audit r5: a REJECTED $300 withdrawal was booked (cash 700, halted), then "corrected"
    # back to 1000 as +$300 of P&L that never existed
    clock = replay_clock()
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        cm, bot = await live_on_day_two(sim, tmp_path, clock)
        acts = sim.exchange._account(sim.account_id).activities  # the sim's menu lacks these
        try:
            acts.append(balance_change(sim, ActivityType.ACCOUNT_WITHDRAWAL, "bc-rejected-1",
                                       "-300", REJECTED))
            acts.append(balance_change(sim, ActivityType.ACCOUNT_WITHDRAWAL, "bc-pending-1",
                                       "-100", PENDING))
            checks = bot.executor.reconciliations
            await wait_for(lambda: bot.executor.reconciliations >= checks + 2, 300,
                           what="two periodic reconciliations", poll=5)
            await trio.sleep(2.5)
            led, st = bot.ledger, gate(bot)
            assert (led.cash, led.net_transfers, led.pnl) == (D(1000), D(0), D(0))
            assert (st["state"], D(st["day_start_equity"])) == ("ACTIVE", D(1000))
            assert bot.executor.corrections == 0
            # the pending withdrawal completes: the money moves now, and is booked once
            i = next(i for i, a in enumerate(acts) if a.balance_change is not None
                     and a.balance_change.transaction_id == "bc-pending-1")
            acts[i] = balance_change(sim, ActivityType.ACCOUNT_WITHDRAWAL, "bc-pending-1",
                                     "-100", COMPLETED)
            sim.exchange._account(sim.account_id).cash -= D(100)
            await wait_for(lambda: bot.ledger.cash == D(900), 150, what="the completion booked",
                           poll=1)
            checks = bot.executor.reconciliations
            await wait_for(lambda: bot.executor.reconciliations >= checks + 2, 300, poll=5)
            await trio.sleep(2.5)
            led, st = bot.ledger, gate(bot)
            assert (led.cash, led.net_transfers, led.pnl) == (D(900), D(-100), D(0))
            assert (st["state"], D(st["day_start_equity"])) == ("ACTIVE", D(900))
            assert bot.executor.corrections == 0
        finally:
            await cm.__aexit__(None, None, None)


def archived(data: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(db_path(data))) as conn:
        return conn.execute("SELECT mode, positions FROM archived_ledgers ORDER BY id").fetchall()


async def test_paper_then_live_then_paper_on_one_data_dir_starts_each_mode_afresh(
        tmp_path, mock_clock, caplog):
    # money audit r4: live kept the paper gate (day start 1000 against an account of 5000, so a
    # $4025 loss before the daily-loss halt), zeroed the paper position silently and booked the
    # account's original deposit as a new transfer (pnl -1000)
    caplog.set_level(logging.WARNING, logger="polybot.app")
    async with running_sim(run_scenario=False, opticodds=True, cash=D("5000")) as sim:
        slug = sim.markets[0]
        script_book(sim.exchange, slug, bids=[("0.50", 40)], offers=[("0.52", 40)])
        async with running_bot(sim, tmp_path, live=False, MARKET_SLUGS=slug) as bot:
            await wait_for(lambda: bot.ledger.position(slug).net_qty != 0, 60,
                           what="a paper position")
            paper_qty = bot.ledger.position(slug).net_qty
        script_book(sim.exchange, slug)  # an empty book: nothing trades in the live phase
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=slug) as bot:
            await wait_for(lambda: bot.executor.trading_allowed, 60, what="live ready")
            await trio.sleep(2.5)
            led, st = bot.ledger, gate(bot)
            assert (led.cash, led.initial_cash, led.net_transfers, led.pnl) == (
                D(5000), D(5000), D(0), D(0))
            assert led.position(slug).net_qty == 0
            assert st["state"] == "ACTIVE"
            assert D(st["day_start_equity"]) == 5000 and D(st["high_water_mark"]) == 5000
        assert "switched paper -> live" in caplog.text
        modes = archived(tmp_path)
        assert [m for m, _ in modes] == ["paper"]
        assert str(paper_qty) in modes[0][1]  # the paper position is kept, in the archive
        caplog.clear()
        async with running_bot(sim, tmp_path, live=False, MARKET_SLUGS=slug) as bot:
            await trio.sleep(2.5)
            led, st = bot.ledger, gate(bot)
            assert (led.cash, led.net_transfers, led.positions) == (D(1000), D(0), {})
            assert D(st["day_start_equity"]) == 1000 and st["state"] == "ACTIVE"
        assert "switched live -> paper" in caplog.text
        assert [m for m, _ in archived(tmp_path)] == ["paper", "live"]
