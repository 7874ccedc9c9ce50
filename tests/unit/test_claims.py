"""One bot per DATA_DIR and one instance per market: the OS locks of `polybot.claims`, held by
real processes (a SIGKILLed holder, the `run` command refused) and by two holders in-process
(flock locks belong to open files, so two descriptors of one process exclude each other too)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest

from polybot import cli
from polybot.claims import (
    CLAIM_RETRY_SECONDS,
    LOCK_NAME,
    DataDirInUse,
    DataDirLock,
    MarketClaims,
    claim_file_name,
    instance_id,
)
from polybot.errors import EXIT_DATA_DIR_IN_USE
from polybot.store import Store
from tests.unit.test_cli import GOOD, polybot

SLUG = "aec-nba-bos-nyk-2026-11-26"


def test_a_second_holder_of_one_data_dir_is_refused_naming_the_first(tmp_path):
    with DataDirLock.acquire(tmp_path):
        with pytest.raises(DataDirInUse) as refused:
            DataDirLock.acquire(tmp_path)
        assert refused.value.exit_code == EXIT_DATA_DIR_IN_USE
        assert f"pid {os.getpid()}" in str(refused.value) and str(tmp_path) in str(refused.value)
    DataDirLock.acquire(tmp_path).release()  # released with its holder


def test_run_on_a_data_dir_in_use_exits_73_with_one_line_and_touches_nothing(tmp_path):
    data = tmp_path / "data"
    with DataDirLock.acquire(data):
        r = polybot(["run"], tmp_path, env_file=dict(GOOD, DATA_DIR=str(data), LOG_FILE="",
                                                       TRADES_LOG_FILE="", HEALTH_PORT="0"))
    assert r.returncode == EXIT_DATA_DIR_IN_USE, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another polybot" in lines[0], r.stderr
    assert f"pid {os.getpid()}" in lines[0]
    assert sorted(p.name for p in data.iterdir()) == [LOCK_NAME]  # no store was opened


def test_a_sigkilled_bot_leaves_no_stale_data_dir_lock_and_keeps_its_markets(tmp_path):
    data, claims = tmp_path / "a", tmp_path / "claims"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from polybot.claims import DataDirLock, MarketClaims, instance_id
            DataDirLock.acquire({str(data)!r})
            assert MarketClaims({str(claims)!r}, instance_id({str(data)!r})).claim({SLUG!r}, 0)
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    other = MarketClaims(claims, instance_id(tmp_path / "b"))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=f"pid {holder.pid}"):
            DataDirLock.acquire(data)
        assert not other.claim(SLUG, 0.0) and other.why_not(SLUG).endswith("running)")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    DataDirLock.acquire(data).release()  # the kernel dropped it with the process
    # ... but the market stays the crashed bot's (it may hold a position there) ...
    assert not other.claim(SLUG, 10.0)
    assert "not running: kept until it retires the market" in other.why_not(SLUG)
    assert str(data.resolve()) in other.why_not(SLUG)
    # ... and is its own again when it restarts holding a position there
    restarted = MarketClaims(claims, instance_id(data))
    assert restarted.keep_only({SLUG}) == [] and restarted.held(SLUG)


def test_operator_commands_work_beside_a_running_bot(tmp_path, capsys):
    with DataDirLock.acquire(tmp_path):
        store = Store.open(tmp_path)  # the running bot's store, open as the bot holds it
        assert cli.main(["halt", "--data-dir", str(tmp_path)]) == 0
        assert (tmp_path / "KILL").exists()
        assert cli.main(["resume", "--data-dir", str(tmp_path)]) == 0
        assert not (tmp_path / "KILL").exists()
        assert cli.main(["report", "--data-dir", str(tmp_path)]) == 0
        store.close()


def test_a_market_is_held_by_one_instance_until_it_retires_it(tmp_path):
    a = MarketClaims(tmp_path / "claims", "/srv/a", pid=11)
    b = MarketClaims(tmp_path / "claims", "/srv/b", pid=22)
    assert a.claim(SLUG, 0.0) and a.claim(SLUG, 1.0)  # held: asked again, still ours
    assert not b.claim(SLUG, 0.0)
    assert b.why_not(SLUG) == \
        f"claimed by another instance (/srv/a, pid 11, market {SLUG}, running)"
    assert b.refused_recently(SLUG, 1.0) and b.market_keys() == {SLUG}
    a.release(SLUG)  # retired: flat, no order
    assert not b.claim(SLUG, CLAIM_RETRY_SECONDS - 0.1)  # not asked again before the retry
    assert b.claim(SLUG, CLAIM_RETRY_SECONDS) and b.why_not(SLUG) == ""
    assert not a.claim(SLUG, 100.0) and "/srv/b" in a.why_not(SLUG)


def test_a_stopped_instance_keeps_its_markets_until_it_restarts_flat_there(tmp_path):
    a = MarketClaims(tmp_path, "/srv/a")
    assert a.claim(SLUG, 0.0) and a.claim("other-market", 0.0)
    a.release_all()  # stopped (or crashed: the kernel drops the locks the same way)
    b = MarketClaims(tmp_path, "/srv/b")
    assert not b.claim(SLUG, 0.0) and not b.claim("other-market", 0.0)
    assert "(/srv/a, not running" in b.why_not(SLUG)
    # the restart keeps the market it holds a position in and frees the one it is flat in
    again = MarketClaims(tmp_path, "/srv/a")
    assert again.keep_only({SLUG}) == []
    assert again.held_markets() == {SLUG}
    assert b.claim("other-market", 10.0) and not b.claim(SLUG, 10.0)
    # a position in a market another instance took meanwhile: reported, not held
    assert MarketClaims(tmp_path, "/srv/c").keep_only({"other-market"}) == ["other-market"]


def test_a_released_claim_file_unlinked_under_a_racing_opener_is_not_believed_held(tmp_path):
    # the releaser unlinks the file while still locked; a claimant that opened the old file just
    # before must not hold "the claim" on an inode no one else will ever open
    a = MarketClaims(tmp_path, "/srv/a")
    assert a.claim(SLUG, 0.0)
    stale = os.open(tmp_path / claim_file_name(SLUG), os.O_RDWR)
    a.release(SLUG)
    b = MarketClaims(tmp_path, "/srv/b")
    assert b.claim(SLUG, 0.0)  # a fresh file
    c = MarketClaims(tmp_path, "/srv/c")
    assert not c.claim(SLUG, 0.0)  # ... which b holds, and the stale inode is not the claim
    os.close(stale)


def test_claim_file_names_stay_inside_the_directory():
    assert claim_file_name(SLUG) == f"{SLUG}.claim"
    for odd in ("../../etc/passwd", ".hidden", "a/b", ""):
        name = claim_file_name(odd)
        assert "/" not in name and not name.startswith(".") and name.endswith(".claim")
    assert claim_file_name("a/b") != claim_file_name("a_b")


async def test_a_paper_instance_claims_no_market_and_a_live_one_reclaims_its_own(tmp_path):
    # paper orders never reach the exchange: a paper trial beside live instances takes nothing
    from polybot.config import load_settings
    from polybot.runtime import Bot

    claims = tmp_path / "claims"
    before = MarketClaims(claims, instance_id(tmp_path / "live"))
    assert before.claim(SLUG, 0.0)
    before.release_all()  # the process ended (crashed: the kernel closes the same way)

    def bot(name: str, mode: str) -> Bot:
        return Bot(load_settings(dict(GOOD, TRADING_MODE=mode, DATA_DIR=str(tmp_path / name),
                                      CLAIMS_DIR=str(claims), LOG_FILE="", TRADES_LOG_FILE="",
                                      HEALTH_PORT="0", DISCORD_WEBHOOK="")))

    paper = bot("paper", "paper")
    assert paper.c.claims is None and paper.engine.claims is None
    paper.store.close()
    other = MarketClaims(claims, "/srv/other")
    assert not other.claim(SLUG, 0.0)  # the market waits for its owner
    live = bot("live", "live")  # restarts flat there: the market is free again
    assert live.c.claims is not None and live.c.claims.held_markets() == set()
    assert other.claim(SLUG, 10.0)
    live.store.close()


async def test_the_engine_sends_nothing_to_a_market_another_instance_holds(tmp_path):
    # the engine's part, on the paper-mode wiring of tests/integration/test_paper_mode.py: a
    # market held elsewhere gets no order (opening or closing, flatten included) and says why
    import trio

    from polybot.engine import PlaceOrder, RecordRejection
    from polybot.ledger import Ledger
    from tests.integration.test_paper_mode import FAIR, NOW, Bot, frame
    from tests.integration.test_paper_mode import SLUG as PAPER_SLUG

    store = Store.open(tmp_path / "data")
    bot = Bot(store, Ledger(Decimal(1000)), tmp_path)
    book = frame(bids=[("0.44", "100")], offers=[("0.45", "60"), ("0.46", "100")])
    other = MarketClaims(tmp_path / "claims", "/srv/other", pid=7)
    assert other.claim(PAPER_SLUG, 0.0)
    bot.engine.claims = MarketClaims(tmp_path / "claims", "/srv/me")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        assert await bot.on_frame(book, FAIR) == []
        assert [r.reason for r in bot.outcomes] == ["claimed_elsewhere"]
        assert bot.engine.not_opened(PAPER_SLUG).startswith(
            "claimed by another instance (/srv/other, pid 7")
        # decided again within the retry: not even asked of the gate
        assert bot.engine.decide(PAPER_SLUG, NOW, 1.0).commands[1:] == []
        # a position this instance holds there (its claim lost while it was down): the
        # operator's flatten leaves it, naming the holder
        bot.engine.claims = None
        [filled] = await bot.on_frame(book, FAIR)
        assert filled.cum_qty > 0
        bot.engine.claims = MarketClaims(tmp_path / "claims", "/srv/me")
        orders, stuck = bot.engine.flatten_orders(NOW, 10.0)
        assert orders == [] and "claimed by another instance" in stuck[0]
        # the other instance retires the market: claimed here at the next approval
        other.release(PAPER_SLUG)
        decision = bot.engine.decide(PAPER_SLUG, NOW, 20.0)
        assert not any(isinstance(c, RecordRejection) and c.rejection.reason == "claimed_elsewhere"
                       for c in decision.commands)
        orders, stuck = bot.engine.flatten_orders(NOW, 20.0)
        assert [type(o) for o in orders] == [PlaceOrder] and stuck == []
        assert bot.engine.claims.held(PAPER_SLUG) and bot.engine.not_opened(PAPER_SLUG) == ""
        await store.flush()
        nursery.cancel_scope.cancel()
    store.close()
