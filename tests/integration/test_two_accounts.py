"""Two accounts on one host (issue 17 item 4's "Done when"): two live bots, each with its own
DATA_DIR and account, one CLAIMS_DIR, on the same markets of the local exchange with an edge in
every one of them. Both trade, each market is traded by one of them only, no fill of the
exchange has both sides from our accounts (wash trading), a market the other holds shows on
/status as not traded with the holder, and a second bot on one DATA_DIR is refused.

The real `run_bot` (the `run` command's process: DATA_DIR/LOCK, store, supervisor, engine, live
venue, REST and websockets) against `polybot.sim` over loopback, on Trio's mock clock.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
import trio
import trio.testing

from polybot import console, operator
from polybot.claims import DataDirInUse
from polybot.config import load_settings
from polybot.model import Intent, OrderRequest, TimeInForce
from polybot.runtime import Bot, run_bot
from polybot.sim.harness import running_sim
from polybot.sim.scenario import script_book
from tests.integration.harness import bot_env, replay_clock, running_bot, wait_for


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.02)


def traded(sim: Any, account: str) -> set[str]:
    """The markets `account` has a fill in, from the exchange's own trades."""
    return {t.market_slug for t in sim.exchange.trades.values()
            if account in (t.maker.account_id, t.taker.account_id)}


async def test_two_bots_on_the_same_markets_never_trade_one_market_together(
        tmp_path, mock_clock):
    async with running_sim(run_scenario=False, opticodds=True, cash=D("1000")) as sim:
        markets = sim.markets[:4]
        for slug in markets:  # an edge in every market: the bots' fair value is far above 0.10
            script_book(sim.exchange, slug, bids=[("0.09", 500)], offers=[("0.10", 5000)])
        second = sim.create_account(D("1000"))
        accounts = {"a": sim.account_id, "b": second.account_id}
        claims = tmp_path / "claims"

        def env(name: str) -> dict[str, str]:
            # a starts first and may hold 2 markets, leaving the other 2; b may hold all 4, so
            # it wants a's markets too (and is refused them)
            e = bot_env(sim, tmp_path / name, live=True, MARKET_SLUGS=",".join(markets),
                        CLAIMS_DIR=str(claims), RISK_MAX_POSITIONS="2" if name == "a" else "4")
            if name == "b":
                e.update(PM_API_KEY_ID=second.key_id, PM_PRIVATE_KEY=second.secret_key)
            return e

        finished: dict[str, dict[str, Any]] = {}

        async def bot(name: str, seconds: float) -> None:
            def done(result: dict[str, Any]) -> None:
                finished[name] = result

            await run_bot(load_settings(env(name)), duration=seconds, clock=replay_clock(),
                          on_finish=done)

        async with trio.open_nursery() as n:
            n.start_soon(bot, "a", 8.0)
            assert await wait_for(lambda: len(traded(sim, accounts["a"])) == 2, 20, poll=0.5)
            # a second process on a's DATA_DIR: refused before it opens anything
            with pytest.raises(DataDirInUse, match="in use by another polybot"):
                await run_bot(load_settings(env("a")), duration=5, clock=replay_clock())
            n.start_soon(bot, "b", 5.0)
            assert await wait_for(lambda: len(traded(sim, accounts["b"])) >= 2, 5, poll=0.5)

        assert {name: r["code"] for name, r in finished.items()} == {"a": 0, "b": 0}
        a_markets, b_markets = traded(sim, accounts["a"]), traded(sim, accounts["b"])
        assert a_markets and b_markets and not a_markets & b_markets
        # no order of one account ever went to a market of the other (not only fills)
        sent: dict[str, set[str]] = {}
        for accepted in sim.exchange.orders_accepted:
            if accepted.account_id in accounts.values():
                sent.setdefault(accepted.request.market_slug, set()).add(accepted.account_id)
        assert all(len(who) == 1 for who in sent.values()), sent
        ours = set(accounts.values())
        assert not [t.trade_id for t in sim.exchange.trades.values()
                    if {t.maker.account_id, t.taker.account_id} <= ours]
        # b wanted a's markets (the edge is there) and shows why it does not trade them
        rows = {r.slug: r.not_traded for r in finished["b"]["status"].markets}
        for slug in a_markets:
            assert rows[slug].startswith("claimed by another instance"), rows
            assert str((tmp_path / "a").resolve()) in rows[slug]
        assert all(rows[slug] == "" for slug in b_markets)
        claims_b = finished["b"]["status"].extra["claims"]
        assert set(claims_b["held"]) == b_markets and set(claims_b["elsewhere"]) == a_markets




async def test_cancel_all_direct_of_one_bot_leaves_the_other_bots_orders_on_one_account(
        tmp_path, mock_clock, monkeypatch):
    # two bots (two stores) on one account, one after the other, resting orders in the same
    # market: each one's `cancel-all --direct` cancels its own orders, by id, and nothing else
    async def no_decisions(self: Bot, slug: str, since: float | None = None) -> None:  # the orders below must rest
        return None

    monkeypatch.setattr(Bot, "evaluate_market", no_decisions)
    async with running_sim(run_scenario=False, cash=D("1000")) as sim:
        slug = sim.markets[0]
        placed: dict[str, list[str]] = {}
        for name, price in (("a", "0.02"), ("b", "0.03")):
            async with running_bot(sim, tmp_path / name, live=True, MARKET_SLUGS=slug,
                                   CANCEL_ON_SHUTDOWN="false") as bot:
                assert await wait_for(lambda: bot.live is not None and bot.live.trading_allowed,
                                      30, poll=0.5)
                order = await bot.executor.submit(
                    OrderRequest(slug, Intent.BUY_LONG, D(price), D("5"), TimeInForce.GTC))
                assert order is not None and order.exchange_id is not None
                placed[name] = [order.exchange_id]
                await trio.sleep(1)

        def open_ids() -> set[str]:
            return {o.order_id for o in sim.exchange.open_orders(sim.account_id)}

        assert open_ids() == {*placed["a"], *placed["b"]}
        for name, left in (("a", set(placed["b"])), ("b", set())):
            env = bot_env(sim, tmp_path / name, live=True)
            del env["MARKET_SLUGS"]
            result = await operator.cancel_stored_orders(
                console.settings_without_markets_or_exit(env))
            assert list(result.cancelled) == placed[name] and result.ok
            assert open_ids() == left
