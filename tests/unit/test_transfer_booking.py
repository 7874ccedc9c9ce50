"""What the local exchange serves for a transfer of each status is booked by the bot at exactly
the money the exchange moved (the bot's own parser and booking rule on the sim's JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from polybot.execution.live import _transfer_of
from polybot.polymarket.wire import parse_activity
from polybot.sim import wire as sim_wire
from polybot.sim.engine import (
    TRANSFER_COMPLETED,
    TRANSFER_PARTIALLY_REFUNDED,
    TRANSFER_PENDING,
    TRANSFER_REJECTED,
)
from polybot.sim.scenario import build_scenario


@pytest.mark.parametrize(("amount", "status", "refunded", "booked"), [
    (D(200), TRANSFER_COMPLETED, D(0), D(200)),
    (D(-300), TRANSFER_COMPLETED, D(0), D(-300)),
    (D(-300), TRANSFER_REJECTED, D(0), D(0)),
    (D(200), TRANSFER_PENDING, D(0), None),
    # chaos seeds 11 and 29: the sim moved amount less the refund, but listed no refund, so the
    # bot booked the whole amount and its cash parted from the exchange's
    (D(-400), TRANSFER_PARTIALLY_REFUNDED, D(200), D(-200)),
    (D(250), TRANSFER_PARTIALLY_REFUNDED, D(125), D(125)),
])
def test_each_status_is_booked_at_the_money_the_exchange_moved(amount, status, refunded, booked):
    sc = build_scenario(seed=1, start=datetime(2026, 11, 26, 12, tzinfo=UTC))
    ex = sc.exchange
    ex.create_account("bot", D(1000))
    before = ex.balance("bot").current_balance
    ex.transfer("bot", amount, status, refunded=refunded)
    moved = ex.balance("bot").current_balance - before
    served = sim_wire.activity(ex.activities("bot")[-1], ex)
    _tid, amount_booked = _transfer_of(parse_activity(served))
    assert amount_booked == booked
    assert moved == (booked or 0)
