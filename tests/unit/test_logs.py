import io
import json
import logging
from datetime import UTC, datetime

import pytest

from polybot.execution.orders import log_trade
from polybot.logs import TRADES_LOGGER, configure_logging

SECRET = "s3cr3t-key-material-AAAA"


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    configure_logging(level="WARNING")  # drop the test's handlers (and their open files)


def test_json_lines_parse_and_carry_structured_fields():
    out = io.StringIO()
    configure_logging(level="INFO", json_lines=True, stream=out)
    logging.getLogger("polybot.test").info("order %s sent", "o-1", extra={"market": "aec-x", "qty": 5})
    line = out.getvalue().strip().splitlines()[-1]
    obj = json.loads(line)
    assert obj["msg"] == "order o-1 sent"
    assert obj["level"] == "INFO" and obj["logger"] == "polybot.test"
    assert obj["market"] == "aec-x" and obj["qty"] == 5
    assert obj["ts"].endswith("Z") and "T" in obj["ts"]


def test_json_line_with_a_traceback_is_still_one_json_object():
    out = io.StringIO()
    configure_logging(level="INFO", json_lines=True, stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("polybot.test").exception("failed")
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    assert "RuntimeError: boom" in json.loads(lines[0])["exc"]


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_log_line_that_tries_to_print_a_secret_shows_stars(json_lines, tmp_path):
    out = io.StringIO()
    log_file = tmp_path / "bot.log"
    configure_logging(level="DEBUG", json_lines=json_lines, stream=out, log_file=log_file,
                      secrets=[SECRET])
    log = logging.getLogger("polybot.test")
    log.info("key is %s", SECRET)
    log.info(f"inline {SECRET}", extra={"header": f"X-Api-Key: {SECRET}"})
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("error")
    logging.getLogger("httpx").warning("GET https://api.telegram.org/bot%s/sendMessage", SECRET)
    for text in (out.getvalue(), log_file.read_text()):
        assert SECRET not in text
        assert text.count("***") >= 5


def test_trades_log_is_its_own_file_of_json_lines(tmp_path):
    main = io.StringIO()
    trades = tmp_path / "trades.log"
    configure_logging(level="INFO", stream=main, trades_log_file=trades)
    log_trade("fill", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), market="aec-x", qty="5",
              price="0.42")
    line = trades.read_text().strip()
    obj = json.loads(line)
    assert obj["event"] == "fill" and obj["price"] == "0.42"
    assert obj["ts"] == "2026-01-02T03:04:05+00:00"  # the caller's clock, not the host's
    assert "fill" not in main.getvalue()  # not duplicated into the main log
    assert logging.getLogger(TRADES_LOGGER).propagate is False


def test_level_filters_lower_records():
    out = io.StringIO()
    configure_logging(level="WARNING", stream=out)
    logging.getLogger("polybot.test").info("quiet")
    logging.getLogger("polybot.test").warning("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()


def test_log_files_rotate_at_their_size_with_every_line_written_once_and_formatted_once(tmp_path):
    from polybot.logs import _file_handler

    calls = []

    class Counting(logging.Formatter):
        def format(self, record):
            calls.append(record.getMessage())
            return record.getMessage()

    handler = _file_handler(tmp_path / "trades.jsonl")
    handler.maxBytes, handler.backupCount = 100, 5
    handler.setFormatter(Counting())
    log = logging.getLogger("test.rotation")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    try:
        lines = [f"line {i:03d} " + "x" * 20 for i in range(12)]  # 30 bytes a line
        for line in lines:
            log.info(line)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert calls == lines  # the redacting formatter runs once a line, not twice
    files = [tmp_path / "trades.jsonl"] + [tmp_path / f"trades.jsonl.{k}" for k in range(1, 6)]
    written = [p.read_text(encoding="utf-8").splitlines() for p in reversed(files) if p.exists()]
    assert [x for chunk in written for x in chunk] == lines
    assert all(p.stat().st_size < 100 for p in files if p.exists())
    assert (tmp_path / "trades.jsonl.3").exists()



@pytest.mark.parametrize("json_lines", [False, True])
def test_an_instance_is_on_every_line_of_both_logs_and_absent_when_unset(json_lines, tmp_path):
    out = io.StringIO()
    trades = tmp_path / "trades.log"
    configure_logging(level="INFO", json_lines=json_lines, stream=out, trades_log_file=trades,
                      instance="alice")
    logging.getLogger("polybot.test").info("order %s sent", "o-1", extra={"market": "aec-x"})
    log_trade("fill", datetime(2026, 1, 2, tzinfo=UTC), order_id="o-1", qty=5)
    line = out.getvalue().strip()
    if json_lines:
        assert json.loads(line)["instance"] == "alice"
    else:
        assert " INFO    [alice] polybot.test: order o-1 sent market=aec-x" in line
    (trade,) = [json.loads(t) for t in trades.read_text().splitlines()]
    assert trade == {"instance": "alice", "ts": "2026-01-02T00:00:00+00:00", "event": "fill",
                     "order_id": "o-1", "qty": 5}

    out = io.StringIO()
    configure_logging(level="INFO", json_lines=json_lines, stream=out, trades_log_file=trades)
    logging.getLogger("polybot.test").info("order sent")
    log_trade("fill", datetime(2026, 1, 2, tzinfo=UTC), order_id="o-2")
    assert "alice" not in out.getvalue() and "instance" not in out.getvalue()
    assert "instance" not in trades.read_text().splitlines()[-1]
