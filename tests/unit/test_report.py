import io
import json
from decimal import Decimal as D

import trio

from polybot import report
from polybot.book import BookStore
from polybot.execution.orders import OrderRegistry
from polybot.execution.paper import PaperExecutor
from polybot.ledger import Ledger
from polybot.model import (
    BookSnapshot,
    Intent,
    OrderRequest,
    PriceLevel,
    Rejection,
    Signal,
)
from polybot.store import Store


def snapshot(slug, bid, offer):
    return BookSnapshot(slug, (PriceLevel(D(bid), D(100)),), (PriceLevel(D(offer), D(100)),))


def buy(slug, intent, price, qty, q):
    sig = Signal(slug, intent, D(price), D(100), D(q), D("0.03"))
    return OrderRequest(slug, intent, D(price), D(qty), signal=sig)


async def trade_some(tmp_path):
    """won: long 10 @ 0.40 settled at 1; lost: short 10 @ 0.60 settled at 1; open: long 10."""
    store = Store.open(tmp_path)
    books, ledger = BookStore(), Ledger(D(100))
    ex = PaperExecutor(OrderRegistry(), ledger, books, recorder=store)
    async with trio.open_nursery() as n:
        await n.start(store.run)
        for slug, bid, offer in [("won", "0.39", "0.40"), ("lost", "0.60", "0.61"),
                                 ("open", "0.49", "0.50")]:
            books.update(snapshot(slug, bid, offer))
        await ex.submit(buy("won", Intent.BUY_LONG, "0.40", "10", "0.45"))
        await ex.submit(buy("lost", Intent.BUY_SHORT, "0.60", "10", "0.55"))
        await ex.submit(buy("open", Intent.BUY_LONG, "0.50", "10", "0.55"))
        store.record_fair_value("won", D("0.48"))
        store.record_fair_value("lost", D("0.62"))
        ledger.settle("won", D(1))
        ledger.settle("lost", D(1))
        ledger.on_book(snapshot("open", "0.52", "0.53"))  # the engine marks the ledger
        ex.on_book(snapshot("open", "0.52", "0.53"))
        store.save_ledger(ledger.drain_changes())
        store.record_rejection(Rejection("open", Intent.BUY_LONG, "kelly_target_reached"))
        store.record_rejection(Rejection("won", Intent.BUY_LONG, "kelly_target_reached"))
        store.record_rejection(Rejection("won", Intent.BUY_LONG, "max_positions"))
        await store.flush()
        n.cancel_scope.cancel()
    store.close()
    return ledger


async def test_report_shows_pnl_win_loss_clv_and_rejections_from_the_database(tmp_path):
    ledger = await trade_some(tmp_path)
    buf = io.StringIO()
    assert report.main(tmp_path, as_json=True, out=buf) == 0
    data = json.loads(buf.getvalue())
    s = data["summary"]
    assert D(s["equity"]) == ledger.equity and D(s["pnl"]) == ledger.pnl
    assert D(s["fees"]) == D("0.17") * 3  # 0.1668 each at 0.40 / 0.60; 0.17375 -> 0.17 at 0.50
    assert (s["wins"], s["losses"]) == (1, 1)
    rows = {r["market"]: r for r in data["markets"]}
    assert rows["won"]["result"] == "won" and D(rows["won"]["realized"]) == D(6)
    assert rows["lost"]["result"] == "lost" and D(rows["lost"]["realized"]) == D(-4)
    assert D(rows["won"]["settled"]) == D(1) and rows["open"]["settled"] is None
    assert rows["open"]["result"] == "open" and D(rows["open"]["unrealized"]) == D("0.2")
    # CLV: long 0.40 vs close 0.48 = +0.08; short at 0.60 vs close 0.62 = −0.02
    assert D(rows["won"]["clv"]) == D("0.08") and D(rows["lost"]["clv"]) == D("-0.02")
    assert D(s["clv"]) == D("0.03")
    assert data["rejections"] == {"kelly_target_reached": 2, "max_positions": 1}
    assert data["orders"] == {"FILLED": 3}


async def test_table_output_is_readable_and_names_every_market(tmp_path):
    await trade_some(tmp_path)
    buf = io.StringIO()
    assert report.main(tmp_path, as_json=False, out=buf) == 0
    text = buf.getvalue()
    for word in ("equity", "won", "lost", "open", "kelly_target_reached 2", "closing-line value"):
        assert word in text


def test_report_without_a_database_fails_clearly_and_creates_nothing(tmp_path, capsys):
    assert report.main(tmp_path, as_json=False) == 1
    assert "no database" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


async def test_report_reads_while_the_bot_holds_the_database_open(tmp_path):
    store = Store.open(tmp_path)  # the bot's writer connection stays open
    store.set_meta("k", "v")
    store.drain_sync()
    buf = io.StringIO()
    assert report.main(tmp_path, as_json=True, out=buf) == 0
    assert json.loads(buf.getvalue())["markets"] == []
    store.close()


async def test_markets_only_marked_never_traded_are_not_listed(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    led = Ledger(D(100))
    led.update_marks("quiet", D("0.40"), D("0.42"))
    store.save_ledger(led.snapshot())
    store.close()
    buf = io.StringIO()
    assert report.main(tmp_path, as_json=True, out=buf) == 0
    assert json.loads(buf.getvalue())["markets"] == []


def test_a_settled_market_is_won_lost_or_push_by_its_net_and_one_traded_out_is_closed():
    assert report.settled_result(D(0), D(1), D("5.83")) == "won"
    assert report.settled_result(D(0), D(1), D("-4.17")) == "lost"
    # a voided game the exchange settled at the entry price, with no fee paid: stake back
    assert report.settled_result(D(0), D("0.5"), D(0)) == "push"
    assert report.settled_result(D(0), None, D("1.5")) == "closed"  # sold before it settled
    assert report.settled_result(D(3), None, D("1.5")) == "open"


async def test_a_market_closed_out_before_settling_is_not_counted_as_won_or_lost(tmp_path):
    store = Store.open(tmp_path)
    books, ledger = BookStore(), Ledger(D(100))
    ex = PaperExecutor(OrderRegistry(), ledger, books, recorder=store)
    async with trio.open_nursery() as n:
        await n.start(store.run)
        books.update(snapshot("out", "0.39", "0.40"))
        await ex.submit(buy("out", Intent.BUY_LONG, "0.40", "10", "0.45"))
        books.update(snapshot("out", "0.50", "0.51"))
        await ex.submit(buy("out", Intent.SELL_LONG, "0.50", "10", "0.45"))
        store.save_ledger(ledger.drain_changes())
        await store.flush()
        n.cancel_scope.cancel()
    store.close()
    buf = io.StringIO()
    assert report.main(tmp_path, as_json=True, out=buf) == 0
    data = json.loads(buf.getvalue())
    assert data["markets"][0]["result"] == "closed"
    s = data["summary"]
    assert (s["wins"], s["losses"], s["pushes"], s["closed_out"]) == (0, 0, 0, 1)
