"""The sim's menu of real-exchange situations (issue 13): each item against the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from polybot.model import Intent, MarketState, Side
from polybot.sim import wire
from polybot.sim.engine import (
    TRANSFER_COMPLETED,
    TRANSFER_PARTIALLY_REFUNDED,
    TRANSFER_PENDING,
    TRANSFER_REJECTED,
    OrderSpec,
)
from polybot.sim.scenario import build_scenario

T0 = datetime(2026, 9, 14, 12, tzinfo=UTC)
D = Decimal


def _sc():
    sc = build_scenario(seed=1, start=T0)
    sc.exchange.create_account("bot", D(1000))
    return sc


def _statuses(ex):
    return [(a.type.value, a.balance_change.status, a.balance_change.amount)
            for a in ex.activities("bot")[1:]]


@pytest.mark.parametrize(("amount", "status", "refunded", "cash"), [
    (D(200), TRANSFER_COMPLETED, D(0), D(1200)),
    (D(-300), TRANSFER_COMPLETED, D(0), D(700)),
    (D(200), TRANSFER_PENDING, D(0), D(1000)),
    (D(-300), TRANSFER_REJECTED, D(0), D(1000)),
    (D(-300), TRANSFER_PARTIALLY_REFUNDED, D(100), D(800)),
    (D(200), TRANSFER_PARTIALLY_REFUNDED, D(50), D(1150)),
])
def test_transfer_of_each_status_moves_only_what_the_status_says(amount, status, refunded, cash):
    ex = _sc().exchange
    tid = ex.transfer("bot", amount, status, refunded=refunded)
    assert ex.balance("bot").current_balance == cash
    kind = "ACTIVITY_TYPE_ACCOUNT_DEPOSIT" if amount > 0 else "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL"
    assert _statuses(ex) == [(kind, status, amount)]
    served = wire.activity(ex.activities("bot")[-1], ex)["accountBalanceChange"]
    assert (served["transactionId"], served["status"]) == (tid, status)


def test_a_pending_withdrawal_moves_cash_only_when_it_completes():
    ex = _sc().exchange
    tid = ex.transfer("bot", D(-300), TRANSFER_PENDING)
    assert ex.balance("bot").current_balance == D(1000)
    ex.finish_transfer("bot", tid, TRANSFER_COMPLETED)
    assert ex.balance("bot").current_balance == D(700)
    assert _statuses(ex) == [("ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL", TRANSFER_COMPLETED, D(-300))]
    with pytest.raises(ValueError):
        ex.finish_transfer("bot", tid, TRANSFER_REJECTED)


def test_stub_quote_after_maintenance_then_the_normal_book():
    sc = _sc()
    slug = sc.world.games[0].market_slug
    sc.step(T0)
    sc.exchange.cancel_everything()  # what maintenance does to every order
    sc.stub_quote_after_maintenance(slug, bids=[("0.09", 500)], offers=[("0.11", 500)],
                                    normal_after_seconds=3)
    book = sc.exchange.book(slug)
    assert [(lv.price, lv.qty) for lv in book.bids] == [(D("0.01"), D(1))] and not book.offers
    sc.step(T0 + timedelta(seconds=2))
    assert sc.exchange.book(slug).bids[0].price == D("0.01")
    sc.step(T0 + timedelta(seconds=3))
    book = sc.exchange.book(slug)
    assert [(lv.price, lv.qty) for lv in book.bids] == [(D("0.09"), D(500))]
    assert [(lv.price, lv.qty) for lv in book.offers] == [(D("0.11"), D(500))]


def test_stub_can_be_an_offer():
    sc = _sc()
    slug = sc.world.games[0].market_slug
    sc.stub_quote_after_maintenance(slug, [], [], stub_side=Side.SELL)
    book = sc.exchange.book(slug)
    assert [(lv.price, lv.qty) for lv in book.offers] == [(D("0.99"), D(1))] and not book.bids


def test_market_halted_at_start_reopens_later():
    sc = _sc()
    slug = sc.world.games[0].market_slug
    sc.step(T0)
    sc.halted_at_start(slug, reopen_after_seconds=10)
    assert sc.exchange.markets[slug].state is MarketState.HALTED
    assert wire.market(sc.exchange.markets[slug], sc.exchange)["status"] == "MARKET_STATUS_HALTED"
    sc.step(T0 + timedelta(seconds=9))
    assert sc.exchange.markets[slug].state is MarketState.HALTED
    sc.step(T0 + timedelta(seconds=10))
    assert sc.exchange.markets[slug].state is MarketState.OPEN


def test_settlement_while_the_bot_is_down_pays_out_and_is_listed():
    # nothing is connected: the settlement is only in the account's records when the bot returns
    sc = _sc()
    ex = sc.exchange
    slug = sc.world.games[0].market_slug
    sc.script_book(slug, offers=[("0.40", 10)])
    ex.submit("bot", OrderSpec(slug, Intent.BUY_LONG, price=D("0.40"), quantity=D(10)))
    cash = ex.balance("bot").current_balance
    assert ex.positions("bot")[slug].net == D(10)
    ex.settle(slug, D(1))
    assert ex.balance("bot").current_balance == cash + D(10)
    res = [a for a in ex.activities("bot") if a.resolution is not None]
    assert [(r.resolution.market_slug, r.resolution.before_position,
             r.resolution.after_position) for r in res] == [(slug, D(10), D(0))]
    assert ex.settlement(slug) == D(1)
    assert ex.book(slug).state is not MarketState.OPEN
