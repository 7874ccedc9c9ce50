"""The retirement rule and the end-of-game reads, on the real core components (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from polybot.book import BookStore
from polybot.execution.orders import OrderEvent, OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.exposure import Exposure
from polybot.ledger import Ledger
from polybot.lifecycle import Lifecycle, why_kept
from polybot.model import (
    BookSnapshot,
    Intent,
    MarketInfo,
    MarketState,
    MarketStatus,
    OrderRequest,
    PriceLevel,
)
from polybot.universe import Origin, Phase, Universe

NOW = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)


def info(slug: str, status: MarketStatus = MarketStatus.OPEN, start: datetime | None = None,
         ) -> MarketInfo:
    return MarketInfo(slug, market_id=slug, event_id=f"ev-{slug}", event_slug=f"ev-{slug}",
                      status=status, start_time=start or NOW - timedelta(hours=2))


class World:
    def __init__(self) -> None:
        self.universe = Universe()
        self.books = BookStore()
        self.ledger = Ledger(D(1000))
        self.exposure = Exposure()
        self.universe.add_listener(lambda li: self.exposure.set_event(li.slug, li.event_id))
        self.ledger.on_position = self.exposure.on_position
        self.registry = OrderRegistry(on_change=self.exposure.on_order)
        self.venue = PaperExecutor(self.registry, self.ledger, self.books)
        self.lifecycle = Lifecycle(self.universe, books=self.books, ledger=self.ledger,
                                   exposure=self.exposure, registry=self.registry,
                                   venue=self.venue, configured=["conf"])
        self.universe.add_retire_listener(self.exposure.forget)
        self.universe.add_retire_listener(self.books.forget)

    def close(self, slug: str, status: MarketStatus = MarketStatus.CLOSED) -> None:
        self.lifecycle.note_status(slug, status)


def test_a_market_that_is_not_over_is_kept_whatever_it_holds():
    listing = Universe().put(info("m"))
    assert why_kept(listing, NOW, book_state=MarketState.OPEN, position_qty=D(0),
                    open_orders=0) == "in play, not over"
    # a halt or a suspension reopens: never a retirement
    halted = Universe().put(info("h", MarketStatus.HALTED))
    for state in (MarketState.HALTED, MarketState.SUSPENDED, MarketState.CLOSED):
        assert why_kept(halted, NOW, book_state=state, position_qty=D(0), open_orders=0)


def test_a_closed_flat_market_without_orders_retires_and_a_configured_one_is_remembered():
    w = World()
    w.universe.put(info("conf"))
    w.universe.put(info("disc"), origin=Origin.DISCOVERED)
    assert w.lifecycle.retire_finished(NOW) == []
    w.close("conf")
    w.close("disc", MarketStatus.RESOLVING)
    assert sorted(w.lifecycle.retire_finished(NOW)) == ["conf", "disc"]
    assert list(w.universe) == [] and w.universe.retired == 2
    assert w.lifecycle.retired_configured == {"conf"}


def test_an_open_order_keeps_a_closed_market_until_it_is_closed_too():
    w = World()
    w.universe.put(info("m"))
    order = w.registry.new_order(OrderRequest("m", Intent.BUY_LONG, D("0.40"), D(5)), now=NOW)
    w.close("m")
    assert w.lifecycle.retire_finished(NOW) == []
    assert w.lifecycle.kept_reason("m", NOW) == "1 open order(s)"
    w.registry.submitted(order, "x1")
    w.registry.handle(order, OrderEvent.EXEC_CANCELED, reason="cancelled at the exchange")
    assert w.lifecycle.retire_finished(NOW) == ["m"]


def test_a_position_keeps_an_expired_market_until_settled_then_it_retires():
    w = World()
    w.universe.put(info("m"))
    w.ledger.set_position("m", D(10), D("0.40"))
    w.books.update(BookSnapshot("m", (PriceLevel(D("0.5"), D(1)),), (), state=MarketState.EXPIRED))
    assert "until settled" in w.lifecycle.kept_reason("m", NOW)
    assert w.lifecycle.retire_finished(NOW) == []
    assert w.exposure.market("m") > 0
    # the published value: into the universe, and the venue is told to settle the position
    w.lifecycle.note_settlement("m", D(1))
    assert w.universe.get("m").phase(NOW) is Phase.RESOLVED
    assert "m" in w.venue.market_keys()  # awaiting its settlement in the paper venue
    w.ledger.settle("m", D(1))
    assert w.lifecycle.retire_finished(NOW) == ["m"]
    assert w.exposure.market_keys() == set() and w.books.market_keys() == set()


def test_exposure_never_forgets_a_market_at_risk():
    exposure = Exposure()
    ledger = Ledger(D(1000))
    ledger.on_position = exposure.on_position
    exposure.set_event("m", "ev")
    ledger.set_position("m", D(10), D("0.40"))
    exposure.forget("m")
    assert exposure.market("m") == D(4) and exposure.portfolio == D(4)
    assert exposure.event_of_market("m") == D(4) and exposure.is_held("m")


@pytest.mark.parametrize("start_offset,expected", [(-1, True), (+1, False)])
def test_only_started_markets_nobody_else_refreshes_are_re_read(start_offset, expected):
    w = World()
    w.universe.put(info("m", start=NOW + timedelta(hours=start_offset)))
    w.universe.put(info("conf"))
    assert (w.lifecycle.due_refresh(NOW, 0.0, skip={"conf"}) == ["m"]) is expected


async def test_a_refresh_reads_status_then_the_settlement_of_markets_that_are_over():
    w = World()
    w.universe.put(info("m"))
    w.ledger.set_position("m", D(-5), D("0.60"))
    calls: list[str] = []

    class Rest:  # the two public reads, answered as the exchange would after the game
        async def market_by_slug(self, slug: str) -> MarketInfo:
            calls.append(f"market {slug}")
            return info(slug, MarketStatus.RESOLVED)

        async def settlement(self, slug: str) -> D | None:
            calls.append(f"settlement {slug}")
            return D(0)

    mono = [100.0]
    await w.lifecycle.refresh(Rest(), lambda: NOW, lambda: mono[0])
    assert calls == ["market m", "settlement m"]
    listing = w.universe.get("m")
    assert listing.settlement == D(0) and listing.info.status is MarketStatus.RESOLVED
    assert listing.event_id == "ev-m"  # the event linkage stays as established
    mono[0] += 10
    await w.lifecycle.refresh(Rest(), lambda: NOW, lambda: mono[0])
    assert calls == ["market m", "settlement m"]  # resolved and recorded: not asked again


async def test_a_market_retired_while_a_refresh_awaits_another_leaves_nothing_behind():
    # the acceptance run under load: two markets over and due; while the first one's settlement
    # read is awaited the second retires, and the pass must not then note it as asked
    w = World()
    for slug in ("a", "b"):
        w.universe.put(info(slug, MarketStatus.CLOSED))

    class Rest:
        async def market_by_slug(self, slug: str) -> MarketInfo:
            return info(slug, MarketStatus.CLOSED)

        async def settlement(self, slug: str) -> D | None:
            if slug == "a":
                w.universe.retire("b", "over, flat")  # retired meanwhile
            return None

    await w.lifecycle.refresh(Rest(), lambda: NOW, lambda: 100.0)
    assert "b" not in w.universe
    assert w.lifecycle.keys() <= set(w.universe), w.lifecycle.keys()


def test_the_ledger_forgets_the_marks_of_a_market_it_never_traded_but_keeps_its_history():
    ledger = Ledger(D(1000))
    ledger.update_marks("quiet", D("0.40"), D("0.42"))
    ledger.set_position("traded", D(10), D("0.40"))
    ledger.settle("traded", D(1))
    ledger.drain_changes()
    assert ledger.marked_only() == {"quiet"}
    ledger.forget_marks("quiet")
    ledger.forget_marks("traded")
    assert set(ledger.markets) == {"traded"} and ledger.realized_pnl == D(6)


def test_a_market_with_a_position_or_an_order_is_in_use_whatever_its_phase():
    w = World()
    for slug in ("pos", "order", "free"):
        w.universe.put(info(slug, start=NOW + timedelta(days=1)))
    w.ledger.set_position("pos", D(-3), D("0.40"))
    w.registry.new_order(OrderRequest("order", Intent.BUY_LONG, D("0.40"), D(5)), now=NOW)
    assert w.lifecycle.in_use("pos") == "position -3"
    assert w.lifecycle.in_use("order") == "1 open order(s)"
    assert w.lifecycle.in_use("free") == ""


async def test_a_failed_read_does_not_stop_the_others_and_is_reported_at_the_end():
    w = World()
    for slug in ("a", "b"):
        w.universe.put(info(slug))

    class Rest:
        async def market_by_slug(self, slug: str) -> MarketInfo:
            if slug == "a":
                raise ConnectionError("exchange busy")
            return info(slug, MarketStatus.CLOSED)

        async def settlement(self, slug: str) -> D | None:
            return None

    with pytest.raises(ConnectionError):
        await w.lifecycle.refresh(Rest(), lambda: NOW, lambda: 0.0)
    assert w.universe.get("b").phase(NOW) is Phase.CLOSED  # read despite a's failure
    assert w.lifecycle.due_refresh(NOW, 1.0) == []  # neither asked again at once
    assert w.lifecycle.due_refresh(NOW, 61.0) == ["a", "b"]  # a is asked again on its schedule


def test_a_retired_market_is_remembered_for_a_bounded_time_so_a_listing_does_not_add_it_back():
    from polybot.lifecycle import RETIRED_MEMORY

    w = World()
    w.universe.put(info("old"), origin=Origin.DISCOVERED)
    w.close("old")
    assert w.lifecycle.retire_finished(NOW) == ["old"]
    assert w.lifecycle.was_retired("old") and not w.lifecycle.was_retired("new")
    later = NOW + RETIRED_MEMORY + timedelta(hours=1)
    w.universe.put(info("new"), origin=Origin.DISCOVERED)
    w.close("new")
    assert w.lifecycle.retire_finished(later) == ["new"]
    assert not w.lifecycle.was_retired("old") and w.lifecycle.was_retired("new")
