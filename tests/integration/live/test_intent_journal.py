"""The intent journal's crash semantics against the local exchange (docs/design-notes.md,
"Durable intent"): a kill keeps the intent (the journal line is replayed and the order adopted
as ours); a power loss before the fsync can lose the last intents, whose orders the restarted bot
then finds as orders it did not record — counted in USD at risk, alerted, left alone (cancelled
only with CANCEL_UNKNOWN_ORDERS) — and nothing is ever sent twice.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from polybot.journal import journal_path, read_journal
from polybot.model import Intent, OrderRequest, OrderState, TimeInForce
from polybot.notify import Notifier
from polybot.polymarket import PolymarketRestClient, Signer
from polybot.sim.harness import running_sim
from polybot.store import Store, db_path
from tests.integration.harness import running_bot, wait_for
from tests.integration.live.test_live_sim import Env, eventually, rest_config


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.001)


def gtc(slug: str, price: str, qty: str) -> OrderRequest:
    return OrderRequest(slug, Intent.BUY_LONG, D(price), D(qty), TimeInForce.GTC)


async def test_a_kill_before_the_sqlite_copy_keeps_the_intent_and_the_restart_adopts_its_order(
        tmp_path, mock_clock):
    async with running_sim(seed=11, run_scenario=False, heartbeat_seconds=0.2,
                           rate_limit=None) as sim:
        slug = sim.markets[0]
        key2 = sim.create_account(D("10000"))
        other = PolymarketRestClient(rest_config(sim), Signer(key2.key_id, key2.secret_key))
        first = Store(tmp_path / "polybot.db", in_thread=False)

        async def no_writer() -> None:  # this life's writer never runs: killed before it did
            return None

        first.flush = no_writer  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            env = Env(sim, first, other, nursery, [other])
            bot = await env.start_bot()
            order = await bot.executor.submit(gtc(slug, "0.30", "4"))
            assert order is not None and order.exchange_id is not None
            await env.stop(bot)
            # SIGKILL: the line is in the journal file, the SQLite row is not
            first._journal.close()
            first._conn.close()
            with sqlite3.connect(db_path(tmp_path)) as conn:
                assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
            lines = read_journal(journal_path(db_path(tmp_path))).rows
            assert [r["local_id"] for r in lines] == [order.local_id]

            env.store = store = Store(tmp_path / "polybot.db", in_thread=False)
            assert store.journal_replayed == 1
            await nursery.start(store.run)
            bot2 = await env.start_bot()
            adopted = bot2.registry.get(order.local_id)
            assert adopted is not None
            await eventually(lambda: adopted.exchange_id == order.exchange_id)
            assert adopted.state is OrderState.NEW and bot2.executor.unknown_orders() == []
            assert [a.order_id for a in env.accepted()] == [order.exchange_id]  # never resent
            await env.stop(bot2)
            nursery.cancel_scope.cancel()
        for c in env.clients:
            await c.aclose()
        store.close()


def lose_last_intents(data_dir: Path, n: int) -> list[str]:
    """A power loss before the fsync: the last `n` intents are in neither the journal nor SQLite.
    Returns their local ids."""
    with sqlite3.connect(db_path(data_dir)) as conn:
        lost = [r[0] for r in conn.execute(
            "SELECT local_id FROM orders ORDER BY created_at DESC, local_id DESC LIMIT ?", (n,))]
        conn.executemany("DELETE FROM orders WHERE local_id = ?", [(i,) for i in lost])
    path = journal_path(db_path(data_dir))
    kept = [line for line in path.read_bytes().splitlines(keepends=True)
            if not any(i.encode() in line for i in lost)]
    path.write_bytes(b"".join(kept))
    return lost


async def test_intents_lost_to_a_power_loss_come_back_as_unknown_orders_at_risk_never_resent(
        tmp_path, mock_clock, monkeypatch):
    alerts: list[str] = []
    notifier_alert = Notifier.alert

    def spy(self: Notifier, level: Any, title: str, text: str = "", *, key: str | None = None
            ) -> bool:
        alerts.append(f"{key}: {text}")
        return notifier_alert(self, level, title, text, key=key)

    monkeypatch.setattr(Notifier, "alert", spy)
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        slug = sim.markets[0]
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=slug,
                               CANCEL_ON_SHUTDOWN="false") as bot:
            assert await wait_for(lambda: bot.live.trading_allowed, 60)
            # no book frame while the bot's orders rest: the engine would cancel resting orders
            # no signal supports (there is no fair value here)
            sim.faults.ws_silent = True
            placed = []
            for price in ("0.21", "0.22", "0.23"):
                order = await bot.live.submit(gtc(slug, price, "5"))
                assert order is not None and order.exchange_id is not None
                placed.append(order)
            journal = bot.status_report().extra["journal"]
            assert journal["lines"] == 3 and journal["replayed_at_open"] == 0
        sim.faults.ws_silent = False
        accepted = [a.order_id for a in sim.exchange.orders_accepted
                    if a.account_id == sim.account_id]
        assert accepted == [o.exchange_id for o in placed]
        assert all(sim.exchange.get_order(sim.account_id, o.exchange_id).state is OrderState.NEW
                   for o in placed)

        lost = lose_last_intents(tmp_path, 2)
        assert lost == [placed[2].local_id, placed[1].local_id]
        unknown = {placed[1].exchange_id, placed[2].exchange_id}
        alerts.clear()
        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=slug,
                               CANCEL_ON_SHUTDOWN="false") as bot:
            assert await wait_for(lambda: bot.live.trading_allowed, 60)
            # the order whose intent survived is ours again; the two others are unknown orders
            kept = bot.registry.get(placed[0].local_id)
            assert kept is not None and kept.exchange_id == placed[0].exchange_id
            report = bot.status_report()
            assert set(report.extra["executor"]["unknown_orders"]) == unknown
            assert unknown <= {o.order_id for o in bot.live.risk_orders(slug)}
            # ours has no signal behind it (no fair value here): the engine cancels it by id;
            # the unknown ones are not the engine's to cancel
            assert await wait_for(lambda: sim.exchange.get_order(
                sim.account_id, placed[0].exchange_id).state is OrderState.CANCELED, 30)
            assert {o.order_id for o in bot.live.risk_orders(slug)} == unknown
            # 5 contracts at 0.22 and at 0.23 (YES bought: its price is at risk)
            assert await wait_for(lambda: bot.exposure.portfolio == D("2.25"), 10)
            assert sum(1 for a in alerts if a.startswith("unknown_order:")) == 2
            assert all(any(oid in a and "leaving it alone" in a for a in alerts)
                       for oid in unknown)
            await trio.sleep(1)  # left alone: CANCEL_UNKNOWN_ORDERS is off
            assert all(sim.exchange.get_order(sim.account_id, oid).state is OrderState.NEW
                       for oid in unknown)

        async with running_bot(sim, tmp_path, live=True, MARKET_SLUGS=slug,
                               CANCEL_UNKNOWN_ORDERS="true") as bot:
            assert await wait_for(lambda: all(
                sim.exchange.get_order(sim.account_id, oid).state is OrderState.CANCELED
                for oid in unknown), 30)
        # three creates in all, across three lives: nothing was sent twice
        assert len([a for a in sim.exchange.orders_accepted
                    if a.account_id == sim.account_id]) == 3
