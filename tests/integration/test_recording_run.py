"""`run` with RECORD_DIR against the local exchange and odds feed: the recording holds the raw
frames of the markets and private websockets and the OpticOdds events, and the bot's own
decoders read them back."""

from __future__ import annotations

import gzip
import itertools
from decimal import Decimal as D

import pytest
import trio
import trio.testing

from polybot.config import load_settings
from polybot.errors import EXIT_OK
from polybot.opticodds.sse import SSEParser
from polybot.opticodds.wire import parse_fixture_status, parse_odds_message
from polybot.polymarket import wire
from polybot.recording import read_index, read_recording
from polybot.runtime import run_bot
from polybot.sim.harness import running_sim
from tests.integration.harness import bot_env, replay_clock


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.02)


async def test_a_live_run_records_every_feed_in_a_form_the_bots_decoders_read(
        tmp_path, mock_clock):
    record_dir = tmp_path / "recording"
    async with running_sim(opticodds=True, cash=D("1000")) as sim:
        settings = load_settings(bot_env(sim, tmp_path / "data", live=True,
                                         RECORD_DIR=str(record_dir)))
        assert await run_bot(settings, duration=12.0, clock=replay_clock()) == EXIT_OK
        secrets = [sim.secret_key, sim.opticodds_key]

    records = list(read_recording(record_dir))
    streams = {r.stream for r in records}
    assert streams == {"markets", "private", "odds"}
    assert [r.seq for r in records] == list(range(len(records)))
    assert all(b.mono_ns >= a.mono_ns for a, b in itertools.pairwise(records))

    books = 0
    for r in (r for r in records if r.stream in ("markets", "private")):
        event = wire.decode_frame(r.payload, r.mono_ns / 1e9, exact=r.stream == "private")
        books += type(event) is wire.BookReplaced
    assert books > 0

    odds = 0
    for r in (r for r in records if r.stream == "odds"):
        payload = r.payload if isinstance(r.payload, str) else r.payload.decode()
        (ev,) = SSEParser().feed(payload.encode())
        if ev.event in ("odds", "locked-odds"):
            odds += len(parse_odds_message(ev.data, locked=ev.event == "locked-odds").odds)
        elif ev.event == "fixture-status":
            parse_fixture_status(ev.data)
    assert odds > 0

    (row,) = read_index(record_dir)  # closed at the stop, and indexed
    assert row["records"] == len(records) and row["dropped"] == 0
    raw = b"".join(p.read_bytes() for p in record_dir.iterdir())
    raw += b"".join(gzip.decompress(p.read_bytes()) for p in record_dir.glob("*.rec.gz"))
    assert not any(s.encode() in raw for s in secrets)
