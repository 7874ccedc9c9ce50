"""The intent journal (`polybot/journal.py`) and the store around it: one line per intent before
the send, synced and copied into SQLite after it, replayed at the next open."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest
import trio

from polybot.execution.orders import OrderRegistry, TrackedOrder
from polybot.journal import IntentJournal, encode, journal_path, read_journal
from polybot.model import Intent, OrderRequest, OrderState, Signal
from polybot.store import Store, StoreError, db_path, read_open_orders


def request(qty: str = "10") -> OrderRequest:
    sig = Signal("m", Intent.BUY_LONG, D("0.40"), D(50), fair_q=D("0.47"), edge=D("0.05"))
    return OrderRequest("m", Intent.BUY_LONG, D("0.40"), D(qty), signal=sig, reason="open")


def sqlite_orders(data_dir: Path) -> dict[str, tuple[str, str | None]]:
    """local id -> (state, exchange id), as another process reads the database."""
    with sqlite3.connect(db_path(data_dir)) as conn:
        rows = conn.execute("SELECT local_id, state, exchange_id FROM orders").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def killed(store: Store) -> None:
    """What SIGKILL leaves: the files as they are, the writer's queue and the journal's unsynced
    lines gone with the process."""
    store._journal.close()
    store._conn.close()


async def until(condition, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


def test_journal_lines_read_back_in_order_and_a_torn_last_line_is_skipped_and_counted(
        tmp_path, caplog):
    path = tmp_path / "j"
    journal = IntentJournal(path)
    journal.append({"local_id": "a", "price": "0.40"})
    journal.append({"local_id": "b", "price": "0.41"})
    journal.close()
    with open(path, "ab") as f:  # the crash cut the third write short
        f.write(encode({"local_id": "c", "price": "0.42"})[:17])
    with caplog.at_level(logging.ERROR, logger="polybot.journal"):
        read = read_journal(path)
    assert [r["local_id"] for r in read.rows] == ["a", "b"]
    assert read.rows[1] == {"local_id": "b", "price": "0.41"}
    assert read.torn == 1 and "does not parse" in caplog.text
    assert read_journal(tmp_path / "absent") == read_journal(tmp_path / "absent")  # empty, no error
    assert read_journal(tmp_path / "absent").rows == ()


def test_opening_the_store_replays_whole_lines_skips_a_torn_one_and_empties_the_journal(
        tmp_path, caplog):
    store = Store.open(tmp_path, in_thread=False)
    reg = OrderRegistry(id_prefix="t")
    first, second = reg.new_order(request()), reg.new_order(request("5"))
    store.note_intent(first)
    store.note_intent(second)
    killed(store)
    with open(journal_path(db_path(tmp_path)), "ab") as f:
        f.write(b'{"v":1,"row":{"local_id":"t-x","mar')
    assert sqlite_orders(tmp_path) == {}  # the SQLite copy never happened

    with caplog.at_level(logging.WARNING):
        again = Store.open(tmp_path, in_thread=False)
    assert (again.journal_replayed, again.journal_torn) == (2, 1)
    assert "did not parse" in caplog.text and "replayed as unacknowledged" in caplog.text
    restored = again.load_orders()
    assert [(o.local_id, o.state, o.exchange_id, o.quantity, o.fair_q) for o in restored] == [
        (first.local_id, OrderState.SUBMITTING, None, D(10), D("0.47")),
        (second.local_id, OrderState.SUBMITTING, None, D(5), D("0.47"))]
    assert sqlite_orders(tmp_path) == {first.local_id: ("SUBMITTING", None),
                                       second.local_id: ("SUBMITTING", None)}
    assert journal_path(db_path(tmp_path)).stat().st_size == 0
    again.close()
    assert Store.open(tmp_path, in_thread=False).journal_replayed == 0  # nothing twice


async def test_intents_written_together_share_one_fdatasync_then_reach_sqlite_and_the_journal_is_cut(
        tmp_path, autojump_clock):
    store = Store.open(tmp_path, journal_rotate_bytes=1)  # the writer thread, as in production
    reg = OrderRegistry(id_prefix="t")
    orders = [reg.new_order(request(str(q))) for q in (1, 2, 3)]
    async with trio.open_nursery() as n:
        await n.start(store.run)
        for order in orders:  # one burst: no checkpoint between the writes
            store.note_intent(order)
        assert journal_path(db_path(tmp_path)).stat().st_size > 0
        assert [o.local_id for o in store.load_orders()] == [o.local_id for o in orders]
        await until(lambda: len(sqlite_orders(tmp_path)) == 3)
        await until(lambda: store._journal.size == 0)
        n.cancel_scope.cancel()
    assert (store._journal.lines, store._journal.syncs, store._journal.truncations) == (3, 1, 1)
    assert journal_path(db_path(tmp_path)).stat().st_size == 0
    assert all(state == ("SUBMITTING", None) for state in sqlite_orders(tmp_path).values())
    store.close()


async def test_the_copy_of_an_intent_never_overwrites_a_newer_row_of_its_order(
        tmp_path, autojump_clock):
    store = Store.open(tmp_path, in_thread=False)
    reg = OrderRegistry(id_prefix="t")
    order = reg.new_order(request())
    store.note_intent(order)
    reg.submitted(order, "x1")
    store.record_order(order)  # queued before the journal's task copies the intent
    async with trio.open_nursery() as n:
        await n.start(store.run)
        await until(lambda: not store._journal.pending())
        await store.flush()
        n.cancel_scope.cancel()
    assert sqlite_orders(tmp_path) == {order.local_id: ("PENDING_NEW", "x1")}
    store.close()


def test_the_journal_writes_with_libc_holding_the_gil_and_maps_its_errors(tmp_path):
    from polybot import journal

    # on Linux the line goes through libc's write(2) called with the GIL held (no thread switch
    # on the path to the create), with os.write's contract: bytes written, or OSError(errno)
    assert journal._write is not os.write
    fd = os.open(tmp_path / "j", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    assert journal._write(fd, b"one line\n") == 9
    assert journal._write(fd, b"two\n") == 4
    os.close(fd)
    assert (tmp_path / "j").read_bytes() == b"one line\ntwo\n"
    with pytest.raises(OSError) as err:
        journal._write(fd, b"x")  # closed
    assert err.value.errno == errno.EBADF


def test_an_intent_the_journal_cannot_write_raises_and_is_not_remembered(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    order = OrderRegistry(id_prefix="t").new_order(request())
    os.close(store._journal._fd)  # the file is gone from under us (EBADF, as EIO or ENOSPC)
    with pytest.raises(StoreError, match="not journaled"):
        store.note_intent(order)
    assert store.load_orders() == [] and store.failed_writes == 1
    store._journal._fd = -1
    store._conn.close()


def test_a_clean_close_copies_every_line_and_leaves_an_empty_journal(tmp_path):
    store = Store.open(tmp_path, in_thread=False)  # the writer never ran: close does it all
    order: TrackedOrder = OrderRegistry(id_prefix="t").new_order(request())
    store.note_intent(order)
    store.close()
    assert sqlite_orders(tmp_path) == {order.local_id: ("SUBMITTING", None)}
    assert journal_path(db_path(tmp_path)).stat().st_size == 0


def test_the_operators_view_of_open_orders_includes_intents_only_in_the_journal(tmp_path):
    store = Store.open(tmp_path, in_thread=False)
    reg = OrderRegistry(id_prefix="t")
    acked, unacked = reg.new_order(request()), reg.new_order(request("5"))
    store.note_intent(acked)
    reg.submitted(acked, "x1")
    store.record_order(acked)
    store.drain_sync()  # the acknowledged one reached SQLite
    store.note_intent(unacked)
    killed(store)  # `cancel-all --direct` with the bot down, before any restart replayed it
    assert read_open_orders(tmp_path) == [(acked.local_id, "x1", "m"), (unacked.local_id, None, "m")]
