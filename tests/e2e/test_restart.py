"""A child killed by a real fault: one group restart, visible in /metrics and the log, process up.

Which fault? Every exchange fault the sim can inject (5xx and 429 bursts, malformed and unknown
frames, dropped and silent sockets, maintenance, withheld order answers shorter than the client
timeout, rejected orders, settlement) is absorbed by the children themselves — reconnects and
retries, never a crash — which is what they are for (test_run.py pins some of those: degraded,
not ready, recovered, no restart). What the supervisor is left to catch in a healthy build is a
*hung* child, and the realistic one is the order path stuck on one answer: the exchange executes
an order and withholds its answer (`hang_orders`) for longer than the trader's progress deadline
(60 s; HTTP_TIMEOUT_SECONDS is set above it here, as a deployment may). The watchdog then fails
the group, which is cancelled and started again. Raised exceptions take the same restart path;
the supervisor's unit tests cover those on the mock clock.

The order the exchange did execute must not be lost across the restart: the bot's position in
that market must end up equal to the exchange's.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal

import pytest

from tests.e2e.conftest import wait_until
from tests.e2e.test_orders import cheap_offer, fair_of, order
from tests.e2e.test_run import families, sample_total

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_run")]

TRADER_DEADLINE = 60.0  # polybot.app: ChildSpec("trader", ..., progress_deadline=60.0)


def restarts(bot) -> float:
    return sample_total(families(bot.metrics_text())["polybot_restarts"])


def test_a_hung_trader_restarts_the_group_once_and_the_process_stays_up(quiet_sim,
                                                                         start_bot) -> None:
    slug = quiet_sim.markets[3]
    bot = start_bot(quiet_sim, "live", HTTP_TIMEOUT_SECONDS="120", STALE_FEED_SECONDS="5")
    bot.wait_ready()
    assert restarts(bot) == 0
    known = {o["orderId"] for o in quiet_sim.accepted_orders()}
    before = Decimal(quiet_sim.positions().get(slug, {}).get("netPosition", "0"))

    price, qty = cheap_offer(fair_of(bot, slug))
    seller = quiet_sim.new_account()
    # Requests are held 1 s before they are handled, so the answer to the bot's order (sent as
    # soon as it sees this offer) is withheld by the switch set once the offer itself is placed.
    quiet_sim.faults(delay_seconds=1.0)
    seller.orders.create(order(slug, "BUY_SHORT", price, qty))
    quiet_sim.faults(hang_orders=1, hang_seconds=100.0)
    wait_until(lambda: [o for o in quiet_sim.accepted_orders() if o["orderId"] not in known], 10,
               "the bot's order executed by the exchange (its answer withheld)")
    quiet_sim.faults(delay_seconds=0.0)
    hung_at = time.monotonic()

    wait_until(lambda: restarts(bot) >= 1, TRADER_DEADLINE + 20, "the group restart")
    assert time.monotonic() - hung_at > TRADER_DEADLINE - 5  # the watchdog, not something else
    bot.wait_ready(30)
    assert bot.proc.poll() is None
    assert bot.get("/health").status_code == 200
    assert restarts(bot) == 1

    log = bot.log()
    assert len(re.findall(r"supervised child \S+ crashed: .*trader made no progress", log)) == 1, log[-3000:]
    assert len(re.findall(r"restarting the group in", log)) == 1
    assert "Traceback" in log

    exchange = Decimal(quiet_sim.positions().get(slug, {}).get("netPosition", "0"))
    assert exchange - before > 0  # the withheld order did execute

    def booked() -> bool:
        row = next(r for r in bot.status()["markets"] if r["slug"] == slug)
        return Decimal(row["position"]) == exchange

    wait_until(booked, 20, "the withheld order's fill booked by the bot")

    code, seconds = bot.terminate()
    assert code == 0, bot.output()
    assert seconds < 10
