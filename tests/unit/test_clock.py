"""One injected clock: wall time comes from the Clock the root passes, never from the host directly."""

from __future__ import annotations

import base64
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import trio

import polybot
from polybot.clock import LIVE_CLOCK, Clock, LiveClock, ReplayClock
from polybot.config import load_settings
from polybot.model import BookSnapshot, Intent, OrderRequest, PriceLevel, TimeInForce
from polybot.runtime import Bot

SLUG = "m-1"
EPOCH = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)  # far from the host's calendar on purpose

# A wall-clock read by any other name is still one: the host's calendar outside clock.py.
HOST_CLOCK = re.compile(r"\b(datetime\.(now|utcnow|today)|date\.today|time\.time(_ns)?)\b")


def settings(tmp_path: Path, **extra: str):
    env = {
        "TRADING_MODE": "paper",
        "PM_API_KEY_ID": str(uuid.UUID(int=1)),
        "PM_PRIVATE_KEY": base64.b64encode(bytes(range(32))).decode(),
        "MARKET_SLUGS": SLUG,
        "DATA_DIR": str(tmp_path),
        "LOG_FILE": "",
        "TRADES_LOG_FILE": "",
        "HEALTH_PORT": "0",
        **extra,
    }
    return load_settings(env)


def test_no_module_reads_the_host_clock_outside_clock_py():
    # polybot/sim is the exchange: a separate world that keeps its own clock (SimClock, and the
    # real time its HTTP Date headers and rate-limit resets are stamped with).
    root = Path(polybot.__file__).parent
    hits = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel == Path("clock.py") or rel.parts[0] == "sim":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if HOST_CLOCK.search(line):
                hits.append(f"polybot/{rel}:{n}: {line.strip()}")
    assert hits == []


def test_the_host_clock_pattern_catches_every_spelling():
    # the grep above is only as good as its pattern: it must see each way of reading the calendar
    for read in ("datetime.now(UTC)", "datetime.utcnow()", "time.time()", "time.time_ns()",
                 "date.today()", "factory=datetime.now"):
        assert HOST_CLOCK.search(read), read
    assert not HOST_CLOCK.search("trio.current_time()")


async def test_replay_clock_wall_time_runs_on_trios_clock(autojump_clock):
    clock = ReplayClock(EPOCH, origin=trio.current_time())
    assert clock.now() == EPOCH
    await trio.sleep(3600)
    assert clock.now() == EPOCH + timedelta(hours=1)
    assert clock.monotonic() == trio.current_time()
    clock.jump(timedelta(days=1))  # e.g. the bot restarted the next day
    assert clock.now() == EPOCH + timedelta(days=1, hours=1)
    assert isinstance(clock, Clock) and isinstance(LIVE_CLOCK, LiveClock)
    assert LIVE_CLOCK.now().tzinfo is not None


async def test_the_trading_day_rolls_when_the_injected_clock_passes_the_reset_hour(
        tmp_path, autojump_clock):
    # The trading day comes from the Bot's clock only (through the engine's `now` parameters), so a
    # replay on the mock clock crosses DAILY_RESET_HOUR when the replayed wall time does.
    s = settings(tmp_path, DAILY_RESET_TZ="America/New_York", DAILY_RESET_HOUR="4")
    reset = datetime(2031, 3, 5, 4, 0, tzinfo=ZoneInfo("America/New_York"))
    clock = ReplayClock(reset - timedelta(minutes=1), origin=trio.current_time())
    b = Bot(s, clock=clock)
    try:
        await b.execute(b.engine.tick(b.clock.now(), b.clock.monotonic()))  # the housekeeping second
        first = b.trading.day
        await trio.sleep(59)
        await b.execute(b.engine.tick(b.clock.now(), b.clock.monotonic()))
        assert b.trading.day == first  # 04:00 not reached yet
        await trio.sleep(2)
        await b.execute(b.engine.tick(b.clock.now(), b.clock.monotonic()))
        assert first is not None
        assert b.trading.day == first + timedelta(days=1)
    finally:
        b.store.close()


async def test_orders_and_their_store_rows_carry_the_bots_clock_not_the_hosts(
        tmp_path, autojump_clock):
    # Before the clock was injected, the root kept its clock to itself: the executors, the order
    # registry and the store stamped with the host's calendar, so a replayed day was recorded
    # as today and a run across midnight on the mock clock never left today.
    clock = ReplayClock(EPOCH, origin=trio.current_time())
    b = Bot(settings(tmp_path), clock=clock)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(b.store.run)
            await trio.sleep(90)
            b.on_market_book(BookSnapshot(SLUG, (PriceLevel(Decimal("0.40"), Decimal(100)),),
                                          (PriceLevel(Decimal("0.42"), Decimal(100)),)),
                             now=trio.current_time())
            at = clock.now()
            order = await b.executor.submit(OrderRequest(SLUG, Intent.BUY_LONG, Decimal("0.42"),
                                                         Decimal(5), tif=TimeInForce.IOC))
            assert order.created_at == at == EPOCH + timedelta(seconds=90)
            assert b.ledger.position(SLUG).net_qty == 5  # it filled (a real paper order)
            await b.store.flush()
            nursery.cancel_scope.cancel()
    finally:
        b.store.close()
    db = sqlite3.connect(tmp_path / "polybot.db")
    (created,) = db.execute("SELECT created_at FROM orders").fetchone()
    assert datetime.fromisoformat(created) == at
    stamps = [datetime.fromisoformat(ts) for (ts,) in db.execute("SELECT ts FROM fills")]
    assert stamps and all(abs(ts - at) < timedelta(minutes=1) for ts in stamps)
