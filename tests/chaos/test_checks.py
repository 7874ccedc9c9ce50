"""The chaos invariants can fail: each check, fed a known violation, reports it (and only it).

A real exchange engine (`polybot.sim.engine.Exchange`, no sockets) and a real bot database
(`polybot.store.Store`) stand in for a session's records.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from polybot.execution.orders import TrackedOrder
from polybot.ledger import Ledger
from polybot.model import Intent, OrderState, TimeInForce
from polybot.sim.engine import Exchange, OrderSpec
from polybot.store import Store
from tests.chaos.run import (
    BOT,
    CONVERGE_BUDGET,
    Life,
    RiskMonitor,
    check_at_risk,
    check_lives,
    check_orders_and_ledger,
    check_secrets,
    converge,
)

D = Decimal
SLUG = "m-1"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def exchange() -> Exchange:
    ex = Exchange(now=lambda: NOW)
    ex.add_event(1, "ev-1", "Event 1")
    ex.add_market(SLUG, 11, 1)
    ex.add_market("m-2", 12, 1)
    ex.create_account(BOT, D("100"))
    ex.create_account("mm", D("10000"))
    return ex


def offer(ex: Exchange, price: str, qty: str) -> None:
    ex.submit("mm", OrderSpec(SLUG, Intent.BUY_SHORT, price=D(price), quantity=D(qty)))


def bot_buys(ex: Exchange, price: str, qty: str, tif: TimeInForce = TimeInForce.IOC) -> str:
    return ex.submit(BOT, OrderSpec(SLUG, Intent.BUY_LONG, price=D(price), quantity=D(qty),
                                    tif=tif))


def write_db(data_dir: Path, orders: list[TrackedOrder], ledger: Ledger) -> None:
    store = Store.open(data_dir, in_thread=False)
    for o in orders:
        store.record_order(o)
    store.save_ledger(ledger.snapshot())
    store.drain_sync()
    store.close()


def intent(local_id: str, exchange_id: str | None, price: str, qty: str,
           state: OrderState = OrderState.FILLED) -> TrackedOrder:
    return TrackedOrder(local_id=local_id, market_slug=SLUG, intent=Intent.BUY_LONG,
                        price=D(price), quantity=D(qty), state=state, exchange_id=exchange_id,
                        cum_qty=D(qty) if state is OrderState.FILLED else D(0),
                        created_at=datetime(2026, 1, 1, tzinfo=UTC))


def booked_ledger(ex: Exchange, *fills: tuple[str, str, str]) -> Ledger:
    """The ledger a correct bot would hold: cash equal to the exchange's, fills booked."""
    led = Ledger(D("100"))
    for order_id, qty, px in fills:
        led.apply_execution(order_id, SLUG, Intent.BUY_LONG, D(qty), avg_px=D(px))
    led.set_cash(ex.balance(BOT).current_balance)
    return led


def test_orders_and_ledger_pass_when_every_order_was_intended_and_booked(tmp_path):
    ex = exchange()
    offer(ex, "0.50", "10")
    oid = bot_buys(ex, "0.50", "4")
    write_db(tmp_path, [intent("pb-1", oid, "0.50", "4")], booked_ledger(ex, (oid, "4", "0.50")))
    assert check_orders_and_ledger(types.SimpleNamespace(exchange=ex), tmp_path) == []


def test_a_second_exchange_order_for_one_ambiguous_intent_is_reported_as_unintended(tmp_path):
    ex = exchange()
    offer(ex, "0.50", "10")
    first = bot_buys(ex, "0.50", "2")
    second = bot_buys(ex, "0.50", "2")  # the resend after an ambiguous create
    write_db(tmp_path, [intent("pb-1", None, "0.50", "2")],  # answer never came: no id stored
             booked_ledger(ex, ("pb-1", "2", "0.50"), (second, "2", "0.50")))
    failures = check_orders_and_ledger(types.SimpleNamespace(exchange=ex), tmp_path)
    assert [f for f in failures if f.startswith("intended:")] == [
        f"intended: exchange order {second} ('{SLUG}', 'BUY_LONG', Decimal('0.50'), "
        "Decimal('2')) matches no intent in the bot's database (a duplicate or an order the "
        "bot did not mean)"]
    assert first != second


def test_a_fill_booked_twice_and_the_cash_it_moved_are_reported(tmp_path):
    ex = exchange()
    offer(ex, "0.50", "10")
    oid = bot_buys(ex, "0.50", "4")
    led = booked_ledger(ex, (oid, "4", "0.50"))
    led.apply_execution(f"{oid}-again", SLUG, Intent.BUY_LONG, D("4"), avg_px=D("0.50"))
    write_db(tmp_path, [intent("pb-1", oid, "0.50", "4")], led)
    failures = check_orders_and_ledger(types.SimpleNamespace(exchange=ex), tmp_path)
    assert f"positions: {SLUG} ledger 8 exchange 4" in failures
    assert any(f.startswith("cash: ledger") for f in failures)


def test_a_fill_the_ledger_missed_is_reported_per_order(tmp_path):
    ex = exchange()
    offer(ex, "0.50", "10")
    oid = bot_buys(ex, "0.50", "4")
    write_db(tmp_path, [intent("pb-1", oid, "0.50", "4")], booked_ledger(ex))
    failures = check_orders_and_ledger(types.SimpleNamespace(exchange=ex), tmp_path)
    assert f"booked once: order {oid} filled 4 at the exchange, ledger booked 0" in failures


def test_risk_monitor_flags_a_resting_order_over_the_market_cap_and_not_below_it():
    ex = exchange()
    monitor = RiskMonitor(ex, BOT)
    bot_buys(ex, "0.40", "12", TimeInForce.GTC)  # 4.80 at risk: under the $5 cap
    assert monitor.checks >= 1 and check_at_risk(monitor) == []
    bot_buys(ex, "0.40", "1", TimeInForce.GTC)  # 5.20 in the market
    assert monitor.max_market[SLUG] == D("5.20")
    assert check_at_risk(monitor)[0].startswith("at-risk: cap exceeded")


def test_risk_monitor_counts_a_short_at_one_minus_its_price():
    ex = exchange()
    monitor = RiskMonitor(ex, BOT)
    ex.submit(BOT, OrderSpec(SLUG, Intent.BUY_SHORT, price=D("0.80"), quantity=D("20")))
    assert monitor.max_market[SLUG] == D("4.00")  # 20 x (1 - 0.80)


@pytest.mark.parametrize("where", ["bot.log", "process-1.out"])
def test_a_secret_in_a_log_file_is_reported(tmp_path, where):
    (tmp_path / where).write_text("signed with c2VjcmV0LXNlZWQ= ok\n")
    (tmp_path / "polybot.db").write_text("c2VjcmV0LXNlZWQ=")  # not a log: not scanned
    assert check_secrets(["c2VjcmV0LXNlZWQ="], tmp_path, [], []) == [
        f"secret: a secret value (16 chars) appears in {where}"]


def test_a_secret_in_a_health_response_or_alert_payload_is_reported(tmp_path):
    assert check_secrets(["tok-123456"], tmp_path, ['{"error": "x tok-123456"}'], []) != []
    assert check_secrets(["tok-123456"], tmp_path, [], ["webhook tok-123456 failed"]) != []
    assert check_secrets(["tok-123456"], tmp_path, ["fine"], ["fine"]) == []


def test_lives_report_an_exit_of_its_own_and_open_orders_after_a_clean_stop():
    ok = Life(started=0.0, health_at=1.0, ended=30.0, code=0, how="final")
    assert check_lives([ok], [25.0], faults_end=20.0, alert_texts=[]) == []
    gone = Life(started=0.0, health_at=1.0, ended=5.0, code=3, how="")
    assert "uptime: run 1 exited on its own (code 3)" in check_lives(
        [gone], [25.0], 20.0, [])
    left = Life(started=0.0, health_at=1.0, ended=9.0, code=0, how="sigterm",
                open_after=["o-1"])
    assert any("left ['o-1'] open" in f for f in check_lives([left, ok], [25.0], 20.0, []))
    said = Life(started=0.0, health_at=1.0, ended=9.0, code=1, how="sigterm",
                open_after=["o-1"])
    assert check_lives([said, ok], [25.0], 20.0, ["still open: o-1"]) == []
    assert check_lives([ok], [12.0], 20.0, []) == [
        "uptime: /ready never answered 200 in the quiet period after the faults"]


def test_lives_report_a_sigterm_exit_slower_than_the_promised_ten_seconds():
    ok = Life(started=0.0, health_at=1.0, ended=30.0, code=0, how="final")
    slow = Life(started=0.0, health_at=1.0, ended=12.5, code=0, how="sigterm", signalled=1.0)
    assert check_lives([slow, ok], [25.0], 20.0, []) == [
        "shutdown: run 1 exited 11.5 s after SIGTERM (promised within 10 s)"]
    quick = Life(started=0.0, health_at=1.0, ended=9.0, code=0, how="sigterm", signalled=1.0)
    assert check_lives([quick, ok], [25.0], 20.0, []) == []


class _Running:
    running = True


def unresolved_db(data_dir: Path) -> Store:
    store = Store.open(data_dir, in_thread=False)
    store.record_order(intent("pb-9", None, "0.50", "2", state=OrderState.OUTCOME_UNKNOWN))
    store.drain_sync()
    return store


async def test_the_quiet_period_waits_for_an_unknown_outcome_to_be_resolved(tmp_path, autojump_clock):
    # a create left unanswered at the faults' end takes the bot ~8 s to prove absent: the
    # session must not stop (and read the ledger) before the bot has done so
    store = unresolved_db(tmp_path)
    t0 = trio.current_time()

    async def resolve_at_12s() -> None:
        await trio.sleep(12)
        store.record_order(intent("pb-9", None, "0.50", "2", state=OrderState.REJECTED))
        store.drain_sync()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(resolve_at_12s)
        failures = await converge(_Running(), tmp_path, [1.0], t0, faults_end=0.0, quiet=2.0)
    assert failures == []
    assert 12 <= trio.current_time() - t0 < 13
    store.close()


async def test_the_quiet_period_waits_for_ready_and_ends_at_once_when_converged(tmp_path, autojump_clock):
    Store.open(tmp_path, in_thread=False).close()
    t0 = trio.current_time()
    ready_after: list[float] = [3.0]  # before the faults ended: does not count

    async def ready_at_9s() -> None:
        await trio.sleep(9)
        ready_after.append(9.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ready_at_9s)
        assert await converge(_Running(), tmp_path, ready_after, t0, faults_end=5.0,
                              quiet=2.0) == []
    assert 9 <= trio.current_time() - t0 < 9.5
    t1 = trio.current_time()
    assert await converge(_Running(), tmp_path, [1.0], t1, faults_end=0.0, quiet=2.0) == []
    assert trio.current_time() - t1 == 2.0  # converged already: just the minimum quiet


async def test_an_unknown_outcome_never_resolved_fails_the_seed_after_the_budget(tmp_path, autojump_clock):
    store = unresolved_db(tmp_path)
    t0 = trio.current_time()
    failures = await converge(_Running(), tmp_path, [1.0], t0, faults_end=0.0, quiet=2.0)
    assert failures == [f"resolution: 1 create(s) of unknown outcome still unresolved "
                        f"{CONVERGE_BUDGET:.0f} s after the faults ended: ['pb-9']"]
    assert trio.current_time() - t0 >= CONVERGE_BUDGET
    store.close()
