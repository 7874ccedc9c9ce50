"""The recording format: its writer (`Recorder`, on Trio's mock clock) and its reader."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
import trio
import trio.testing

from polybot import recording
from polybot.clock import ReplayClock
from polybot.config import load_settings
from polybot.recording import (
    FORMAT,
    Recorder,
    RecordingDamaged,
    RecordingFormatError,
    read_headers,
    read_index,
    read_recording,
    wall_ns,
)

# 21:59:50 UTC: ten seconds before the hour turns
EPOCH = datetime(2026, 12, 6, 21, 59, 50, tzinfo=UTC)
SEED = base64.b64encode(bytes(range(100, 132))).decode()
ODDS_KEY = "oo-key-5f3c9e1d7a"
TELEGRAM = "7341:AAH-telegram-token-xyz"
WEBHOOK = "https://discord.com/api/webhooks/123/hook-secret-abc"


def settings():
    return load_settings({
        "PM_API_KEY_ID": "123e4567-e89b-12d3-a456-426614174000", "PM_PRIVATE_KEY": SEED,
        "MARKET_SLUGS": "aec-nba-bos-nyk", "OPTICODDS_API_KEY": ODDS_KEY,
        "TELEGRAM_BOT_TOKEN": TELEGRAM, "TELEGRAM_CHAT_ID": "42", "DISCORD_WEBHOOK": WEBHOOK,
    })


def payloads(n: int) -> list[str | bytes]:
    """Text and binary frames, including bytes that are not UTF-8 and an empty frame."""
    out: list[str | bytes] = []
    for i in range(n):
        if i % 3 == 0:
            out.append(json.dumps({"marketData": {"i": i, "p": "0.5" + str(i)}, "é": "ü"}))
        elif i % 3 == 1:
            out.append(bytes([i % 256, 0xFF, 0x00, 0xC3]) * (i % 7))
        else:
            out.append(f"event: odds\ndata: {{\"n\": {i}}}\n\n")
    return out


async def record_all(directory: Path, items: list[tuple[str, str | bytes]], *,
                     every: float = 0.1, **kw) -> Recorder:
    """Record `items` one every `every` (mock) seconds through `Recorder.tap`, as a feed does."""
    clock = ReplayClock(EPOCH, origin=trio.current_time())
    rec = Recorder(directory, clock=clock, settings=settings(), **kw)
    async with trio.open_nursery() as n:
        await n.start(rec.run)
        taps = {}
        for stream, payload in items:
            tap = taps.setdefault(stream, rec.tap(stream))
            tap(payload, trio.current_time())
            await trio.sleep(every)
        n.cancel_scope.cancel()
    return rec


async def test_a_recording_round_trips_byte_for_byte_across_an_hourly_rotation(
        tmp_path, autojump_clock):
    sent = [("markets" if i % 2 else "odds", p) for i, p in enumerate(payloads(300))]
    # 300 records 0.1 s apart from 21:59:50: the hour turns at the 100th
    start = trio.current_time()
    rec = await record_all(tmp_path, sent)
    got = list(read_recording(tmp_path))
    assert [(r.stream, r.payload) for r in got] == sent
    assert [type(r.payload) for r in got] == [type(p) for _, p in sent]
    assert [r.seq for r in got] == list(range(300))
    assert got[1].mono_ns - got[0].mono_ns == 100_000_000
    assert got[0].mono_ns == int(start * 1e9)
    assert got[0].wall_ns == wall_ns(EPOCH)
    files = sorted(p.name for p in tmp_path.glob("*.rec.gz"))
    assert files == ["20261206T21.0001.rec.gz", "20261206T22.0002.rec.gz"]
    index = read_index(tmp_path)
    assert [(r["name"], r["first_seq"], r["last_seq"], r["records"], r["dropped"])
            for r in index] == [("20261206T21.0001.rec.gz", 0, 99, 100, 0),
                                ("20261206T22.0002.rec.gz", 100, 299, 200, 0)]
    assert index[1]["first_wall_ns"] == wall_ns(datetime(2026, 12, 6, 22, tzinfo=UTC))
    assert rec.dropped == 0
    headers = [h for _, h in read_headers(tmp_path)]
    assert [h["format"] for h in headers] == [FORMAT, FORMAT]
    assert headers[0]["settings"]["MARKET_SLUGS"] == "aec-nba-bos-nyk"
    assert headers[0]["bot_version"]


async def test_a_second_session_in_the_same_directory_numbers_on(tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", "a"), ("markets", "b")])
    await record_all(tmp_path, [("markets", "c")])
    got = list(read_recording(tmp_path))
    assert [(r.seq, r.payload) for r in got] == [(0, "a"), (1, "b"), (2, "c")]


def test_a_recording_of_an_older_format_is_refused_naming_the_file_and_both_versions(tmp_path):
    header = json.dumps({"format": 0, "bot_version": "0.0.9"}).encode()
    old = tmp_path / "20261206T21.0001.rec.gz"
    old.write_bytes(gzip.compress(recording.MAGIC + struct.pack("<I", len(header)) + header))
    with pytest.raises(RecordingFormatError) as exc:
        read_recording(tmp_path)  # before any record is read
    message = str(exc.value)
    assert str(old) in message and "format 0" in message and f"format {FORMAT}" in message
    assert "\n" not in message


async def test_a_truncated_file_replays_up_to_the_damage_and_says_where(tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", p) for p in payloads(40)], every=0.05)
    path = next(tmp_path.glob("*.rec.gz"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # a killed writer's file: cut mid-member
    got = []
    with pytest.raises(RecordingDamaged) as exc:
        for r in read_recording(tmp_path):
            got.append(r)
    assert 0 < len(got) < 40
    assert [r.payload for r in got] == payloads(40)[: len(got)]
    assert exc.value.path == path and exc.value.last_seq == got[-1].seq
    assert str(path) in str(exc.value) and f"seq {got[-1].seq}" in str(exc.value)


async def test_a_corrupt_file_replays_up_to_the_damage_and_says_where(tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", p) for p in payloads(40)], every=0.05)
    path = next(tmp_path.glob("*.rec.gz"))
    data = bytearray(path.read_bytes())
    middle = len(data) * 4 // 5  # past the header and the first batches
    data[middle:middle + 16] = b"\x55" * 16  # a bad stretch of disk
    path.write_bytes(bytes(data))
    got = []
    with pytest.raises(RecordingDamaged) as exc:
        for r in read_recording(tmp_path):
            got.append(r)
    assert 0 < len(got) < 40
    assert [r.payload for r in got] == payloads(40)[: len(got)]
    assert exc.value.last_seq == got[-1].seq and exc.value.offset > 0


def test_a_record_whose_bytes_were_altered_inside_valid_compression_is_caught(tmp_path):
    # the gzip layer cannot see this (the member is recompressed); the record's CRC does
    name = "20261206T21.0001.rec.gz"
    header = json.dumps({"format": FORMAT, "bot_version": "x"}).encode()
    good = recording._encode(0, "markets", "first", 1, 2)
    bad = bytearray(recording._encode(1, "markets", "second", 3, 4))
    bad[-1] ^= 0x01
    (tmp_path / name).write_bytes(gzip.compress(
        recording.MAGIC + struct.pack("<I", len(header)) + header + good + bytes(bad)))
    got = []
    with pytest.raises(RecordingDamaged) as exc:
        for r in read_recording(tmp_path):
            got.append(r.payload)
    assert got == ["first"]
    assert exc.value.offset == len(recording.MAGIC) + 4 + len(header) + len(good)
    assert "checksum" in str(exc.value)


async def test_past_the_buffer_cap_records_are_dropped_counted_and_logged_once(
        tmp_path, autojump_clock, caplog):
    clock = ReplayClock(EPOCH, origin=trio.current_time())
    rec = Recorder(tmp_path, clock=clock, max_buffer_bytes=10 * (1000 + 64), interval=3600)
    caplog.set_level(logging.WARNING, logger="polybot.recording")
    async with trio.open_nursery() as n:
        await n.start(rec.run)
        for i in range(25):  # the writer is asleep: only 10 fit
            rec.record("markets", bytes([i]) * 1000, i, wall_ns(EPOCH) + i)
        n.cancel_scope.cancel()
    assert rec.dropped == 15
    got = list(read_recording(tmp_path))
    assert [r.seq for r in got] == list(range(10))  # the dropped keep their numbers: 10..24
    assert [r["dropped"] for r in read_index(tmp_path)] == [15]
    starts = [r for r in caplog.records if "dropping records" in r.getMessage()]
    assert len(starts) == 1 and "seq 10" in starts[0].getMessage()


async def test_no_secret_is_written_to_a_recording(tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", "x")])
    raw = b"".join(gzip.decompress(p.read_bytes()) for p in tmp_path.glob("*.rec.gz"))
    raw += (tmp_path / "index.jsonl").read_bytes()
    for secret in (SEED, ODDS_KEY, TELEGRAM, WEBHOOK, "hook-secret-abc"):
        assert secret.encode() not in raw
    header = read_headers(tmp_path)[0][1]["settings"]
    assert header["PM_PRIVATE_KEY"] == "***" and header["OPTICODDS_API_KEY"] == "***"


async def test_a_file_a_killed_process_left_unindexed_is_indexed_by_the_next_session(
        tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", "a"), ("markets", "b")])
    (tmp_path / "index.jsonl").unlink()  # the process died before closing its file
    await record_all(tmp_path, [("markets", "c")])
    rows = read_index(tmp_path)
    assert [(r["name"], r["last_seq"], r.get("recovered", False)) for r in rows] == [
        ("20261206T21.0001.rec.gz", 1, True), ("20261206T21.0002.rec.gz", 2, False)]
    assert [r.payload for r in read_recording(tmp_path)] == ["a", "b", "c"]


def test_the_wall_time_of_a_record_is_the_injected_clocks(tmp_path):
    # the recorder reads no host clock: a replayed calendar in 1999 is recorded as 1999
    async def main() -> None:
        clock = ReplayClock(datetime(1999, 1, 2, 3, 4, 5, tzinfo=UTC))
        rec = Recorder(tmp_path, clock=clock)
        async with trio.open_nursery() as n:
            await n.start(rec.run)
            rec.tap("odds")("z", trio.current_time())
            await trio.sleep(timedelta(minutes=1).total_seconds())
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    (got,) = read_recording(tmp_path)
    assert got.wall_ns == wall_ns(datetime(1999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert [p.name for p in tmp_path.glob("*.rec.gz")] == ["19990102T03.0001.rec.gz"]


# --- the `rest` and `engine` streams ---------------------------------------------------------------


async def record_inputs(directory: Path, feed) -> list[recording.Record]:
    """Run a recorder while `feed(recorder)` records, then read everything back."""
    clock = ReplayClock(EPOCH, origin=trio.current_time())
    rec = Recorder(directory, clock=clock, settings=settings())
    async with trio.open_nursery() as n:
        await n.start(rec.run)
        feed(rec)
        await trio.sleep(1.0)
        n.cancel_scope.cancel()
    return list(read_recording(directory))


async def test_a_rest_answer_reads_back_with_its_request_and_its_body_byte_for_byte(
        tmp_path, autojump_clock):
    body = b'{"market": {"slug": "aec-nba-bos-nyk"}}\n\xff\x00 not UTF-8 after a newline'
    query = [("sportsbook", "DraftKings"), ("fixture_id", "F1"), ("sportsbook", "FanDuel")]

    def feed(rec: Recorder) -> None:
        tap = rec.rest_tap("opticodds")
        tap("GET", "/fixtures/odds", query, 200, body, None)
        tap("GET", "/fixtures/odds", query, None, b"", "ReadTimeout")
        rec.rest_tap("polymarket")("GET", "/v1/markets/x/settlement", (), 404, b"", None)

    got = await record_inputs(tmp_path, feed)
    assert [r.stream for r in got] == [recording.REST] * 3
    answers = [recording.split_rest(r.payload) for r in got]
    assert answers[0] == ({"api": "opticodds", "method": "GET", "path": "/fixtures/odds",
                           "query": [list(q) for q in query], "status": 200}, body)
    assert answers[1] == ({"api": "opticodds", "method": "GET", "path": "/fixtures/odds",
                           "query": [list(q) for q in query], "status": None,
                           "error": "ReadTimeout"}, b"")
    assert answers[2][0]["status"] == 404 and answers[2][0]["api"] == "polymarket"
    assert got[0].wall_ns == wall_ns(EPOCH)


async def test_a_rest_record_never_holds_a_key_a_url_or_an_answer_carried(
        tmp_path, autojump_clock):
    # the clients send no credential in a URL and no answer should echo one: if one ever does,
    # the parameter is dropped and the secret's text replaced, the rest kept
    body = f'{{"error": "bad key {ODDS_KEY}", "seed": "{SEED}"}}'.encode()
    query = [("fixture_id", "F1"), ("apiKey", "not-configured-but-a-key"), ("key", ODDS_KEY),
             ("league", f"x{ODDS_KEY}")]

    def feed(rec: Recorder) -> None:
        rec.rest_tap("opticodds")("GET", "/fixtures", query, 401, body, None)

    (got,) = await record_inputs(tmp_path, feed)
    raw = b"".join(gzip.decompress(p.read_bytes()) for p in tmp_path.glob("*.rec.gz"))
    for secret in (ODDS_KEY, SEED, "not-configured-but-a-key"):
        assert secret.encode() not in raw
    head, kept = recording.split_rest(got.payload)
    assert head["query"] == [["fixture_id", "F1"], ["league", "x***"]]
    assert head["masked"] is True
    assert kept == b'{"error": "bad key ***", "seed": "***"}'


async def test_an_engine_input_reads_back_with_the_values_the_engine_was_given(
        tmp_path, autojump_clock):
    now = datetime(2026, 12, 6, 21, 59, 50, 123456, tzinfo=UTC)
    mono = 12345.000000123  # a Trio time JSON must keep to the last digit

    def feed(rec: Recorder) -> None:
        rec.engine(recording.ENGINE_TICK, now=now, mono=mono)
        rec.engine(recording.ENGINE_OPERATOR_FILES, kill=True, kill_reason="halt é",
                   resume=False, now=now, mono=mono)
        with pytest.raises(ValueError, match="not an engine input kind"):
            rec.engine("tock", now=now)

    got = await record_inputs(tmp_path, feed)
    assert [r.stream for r in got] == [recording.ENGINE] * 2
    tick, poll = (recording.engine_input(r.payload) for r in got)
    assert tick == {"kind": "tick", "now": now.isoformat(), "mono": mono}
    assert datetime.fromisoformat(tick["now"]) == now and tick["mono"] == mono
    assert poll == {"kind": "operator_files", "kill": True, "kill_reason": "halt é",
                    "resume": False, "now": now.isoformat(), "mono": mono}
    assert [r.seq for r in got] == [0, 1]  # the refused kind took no sequence number


def test_the_engine_input_kinds_are_the_documented_constants():
    kinds = {v for k, v in vars(recording).items() if k.startswith("ENGINE_")
             and isinstance(v, str)}
    assert kinds == recording.ENGINE_KINDS
    assert recording.ENGINE_TICK in kinds and recording.ENGINE_CONTINUITY_LOST in kinds


def test_a_payload_that_is_not_a_rest_or_engine_record_is_refused():
    with pytest.raises(recording.RecordingError):
        recording.split_rest(b'{"api": "polymarket"}')  # no head line: the body is missing
    with pytest.raises(recording.RecordingError):
        recording.engine_input('{"now": "2026-12-06T21:00:00+00:00"}')


# --- wiring: RECORD_DIR and `run --record DIR` ----------------------------------------------------


def run_settings(monkeypatch, tmp_path, argv: list[str], **env: str):
    """The Settings `python -m polybot run ...` would run the bot with (the bot is not run)."""
    from polybot import app, cli

    monkeypatch.chdir(tmp_path)
    for name, value in dict(PM_API_KEY_ID="123e4567-e89b-12d3-a456-426614174000",
                            PM_PRIVATE_KEY=SEED, MARKET_SLUGS="aec-nba-bos-nyk", LOG_FILE="",
                            TRADES_LOG_FILE="", **env).items():
        monkeypatch.setenv(name, value)
    seen = []
    monkeypatch.setattr(app, "configure_from_settings", lambda settings: None)
    monkeypatch.setattr(app.trio, "run", lambda fn, settings: seen.append(settings) or 0)
    assert cli.main(argv) == 0
    return seen[0]


def test_run_records_into_record_dir_and_the_record_flag_overrides_it(monkeypatch, tmp_path):
    assert run_settings(monkeypatch, tmp_path, ["run"]).record_dir is None
    assert run_settings(monkeypatch, tmp_path, ["run"], RECORD_DIR="").record_dir is None
    assert run_settings(monkeypatch, tmp_path, ["run"], RECORD_DIR="rec").record_dir == Path("rec")
    assert run_settings(monkeypatch, tmp_path, ["run", "--record", "other"],
                        RECORD_DIR="rec").record_dir == Path("other")


def bot_settings(tmp_path, mode: str):
    return load_settings({
        "TRADING_MODE": mode, "PM_API_KEY_ID": "123e4567-e89b-12d3-a456-426614174000",
        "PM_PRIVATE_KEY": SEED, "MARKET_SLUGS": "aec-nba-bos-nyk", "DATA_DIR": str(tmp_path),
        "RECORD_DIR": str(tmp_path / "rec"), "LOG_FILE": "", "TRADES_LOG_FILE": "",
        "HEALTH_PORT": "0"})


async def recorded_engine_inputs(bot) -> list[tuple[recording.Record, dict]]:
    async with trio.open_nursery() as n:
        await n.start(bot.recording.run)
        await trio.sleep(1.0)
        n.cancel_scope.cancel()
    bot.store.close()
    return [(r, recording.engine_input(r.payload))
            for r in read_recording(bot.recording.directory) if r.stream == recording.ENGINE]


async def test_a_paper_bot_records_the_days_baseline_it_begins_from(tmp_path, autojump_clock):
    from polybot.runtime import Bot

    bot = Bot(bot_settings(tmp_path, "paper"), clock=ReplayClock(EPOCH))
    ((rec, got),) = await recorded_engine_inputs(bot)
    assert got == {"kind": recording.ENGINE_RECONCILED, "now": EPOCH.isoformat(), "mono": 0.0}
    assert rec.wall_ns == wall_ns(EPOCH)


async def test_a_live_bot_records_an_adopted_account_and_a_transfer(tmp_path, autojump_clock):
    from polybot.runtime import Bot

    bot = Bot(bot_settings(tmp_path, "live"), clock=ReplayClock(EPOCH))
    assert bot.live is not None
    await trio.sleep(2.0)
    bot.live.on_adopted(D("1000"))
    bot.live.on_transfer(D("-25.50"))
    inputs = [got for _rec, got in await recorded_engine_inputs(bot)]
    assert inputs == [
        {"kind": recording.ENGINE_ADOPTED, "now": (EPOCH + timedelta(seconds=2)).isoformat(),
         "mono": 2.0, "why": "the account was adopted"},
        {"kind": recording.ENGINE_TRANSFER, "amount": "-25.50"}]
    assert bot.trading.begun  # and the engine was given them


async def test_the_file_of_a_killed_writer_is_finished_and_indexed_by_the_next_session(
        tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", "a"), ("markets", "b")])
    path = next(tmp_path.glob("*.rec.gz"))
    # as a SIGKILL leaves it: not in the index, and without the end of its gzip stream (the
    # final empty block and the 8-byte trailer the close writes after the last sync flush)
    (tmp_path / "index.jsonl").unlink()
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RecordingDamaged) as exc:
        list(read_recording(tmp_path))
    assert exc.value.truncated and exc.value.last_seq == 1
    await record_all(tmp_path, [("markets", "c")])
    assert [r.payload for r in read_recording(tmp_path)] == ["a", "b", "c"]
    rows = read_index(tmp_path)
    assert [(r["name"], r["last_seq"], r.get("recovered", False), "damaged" in r)
            for r in rows] == [("20261206T21.0001.rec.gz", 1, True, False),
                               ("20261206T21.0002.rec.gz", 2, False, False)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "20261206T21.0001.rec.gz", "20261206T21.0002.rec.gz", "index.jsonl"]


async def test_a_corrupt_unindexed_file_keeps_its_good_records_and_its_original(
        tmp_path, autojump_clock):
    await record_all(tmp_path, [("markets", p) for p in payloads(40)], every=0.05)
    path = next(tmp_path.glob("*.rec.gz"))
    (tmp_path / "index.jsonl").unlink()
    data = bytearray(path.read_bytes())
    data[len(data) * 4 // 5:len(data) * 4 // 5 + 16] = b"\x55" * 16
    path.write_bytes(bytes(data))
    kept = []
    with pytest.raises(RecordingDamaged):
        for r in read_recording(tmp_path):
            kept.append(r.payload)
    await record_all(tmp_path, [("markets", "after")])
    assert [r.payload for r in read_recording(tmp_path)] == [*kept, "after"]
    (row, _) = read_index(tmp_path)
    assert row["recovered"] and "damaged" in row and row["records"] == len(kept)
    assert (tmp_path / (path.name + ".damaged")).read_bytes() == bytes(data)


async def test_a_disk_that_refuses_stops_the_recording_not_the_caller(
        tmp_path, autojump_clock, caplog):
    # recording must never stop trading: an unwritable RECORD_DIR or a full disk is logged,
    # and what is recorded afterwards is dropped and counted
    clock = ReplayClock(EPOCH, origin=trio.current_time())
    (tmp_path / "a-file").write_text("")
    unwritable = Recorder(tmp_path / "a-file" / "rec", clock=clock)
    full = Recorder(tmp_path / "rec", clock=clock)

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    async with trio.open_nursery() as n:
        await n.start(unwritable.run)
        await n.start(full.run)
        full._write = disk_full  # type: ignore[method-assign]
        for rec in (unwritable, full):
            rec.tap("markets")("frame", trio.current_time())
        await trio.sleep(1)
        for rec in (unwritable, full):
            rec.tap("markets")("frame", trio.current_time())
        n.cancel_scope.cancel()
    assert unwritable.failed and "NotADirectoryError" in unwritable.failed
    assert full.failed and "No space left" in full.failed
    assert (unwritable.dropped, full.dropped) == (2, 2)
    assert sum("recording" in r.getMessage() and "stopped" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR) == 2
