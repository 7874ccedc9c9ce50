"""Logging for a process that runs unattended for weeks.

Stdlib logging, configured once from Settings: a level, stderr always, an optional rotating file,
text or JSON lines (one object per line: UTC ISO-8601 timestamp, level, logger, message, and any
structured fields passed with `extra=`). The trades log is its own logger (`polybot.trades`) with
its own file, one JSON line per order event and fill.

Redaction is a formatter wrapper on every handler, applied to the *final* text (message, args,
extra fields and tracebacks alike): whatever a library or a careless f-string logs, a configured
secret value comes out as `***`. That is the guarantee; not logging secrets is still the habit.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TRADES_LOGGER = "polybot.trades"
_ROTATE_BYTES = 50 * 1024 * 1024
_ROTATE_COUNT = 5

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """`instance` (INSTANCE, when one host runs several bots) is a field of every line, so the
    lines of several bots in one place (CloudWatch Logs Insights, a merged journal) stay apart."""

    def __init__(self, instance: str = "") -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.instance:
            out["instance"] = self.instance
        for k, v in record_fields(record).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`[instance]` after the level when INSTANCE is set, where a reader's eye already looks."""

    def __init__(self, instance: str = "") -> None:
        super().__init__()
        self.tag = f"[{instance}] " if instance else ""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{_utc_iso(record.created)} {record.levelname:<7} {self.tag}{record.name}: "
                f"{record.getMessage()}")
        fields = record_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class RedactingFormatter(logging.Formatter):
    """Wraps a formatter and replaces every secret value in its output with `***`."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


class _TradesLineFormatter(logging.Formatter):
    """Trades log lines are JSON already (`polybot.execution.orders.log_trade` writes them); with
    INSTANCE set each gets an `"instance"` member as its first, spliced in without re-encoding."""

    def __init__(self, instance: str = "") -> None:
        super().__init__()
        self.head = "{" + json.dumps({"instance": instance})[1:-1] + "," if instance else ""

    def format(self, record: logging.LogRecord) -> str:
        line = record.getMessage()
        if self.head and line.startswith("{") and len(line) > 2:
            return self.head + line[1:]
        return line


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """`RotatingFileHandler`, formatting each record once instead of twice (the stdlib formats it
    for the size check and again to write it; ours redacts secrets each time) and checking that
    the file is a regular one once per opened stream instead of two `stat`s a line (bpo-45401:
    never roll over /dev/null). A line cost ~22 µs in the markets task, several per order."""

    _checked: Any = None  # the stream whose file was found to be regular (or not)
    _regular = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0 and self._is_regular():
                self.stream.seek(0, 2)
                if self.stream.tell() + len(msg) >= self.maxBytes:
                    self.doRollover()
            self.stream.write(msg)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _is_regular(self) -> bool:
        if self._checked is not self.stream:
            self._checked = self.stream
            self._regular = not (os.path.exists(self.baseFilename)
                                 and not os.path.isfile(self.baseFilename))
        return self._regular


def _file_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _RotatingFile(path, maxBytes=_ROTATE_BYTES, backupCount=_ROTATE_COUNT, encoding="utf-8")


def configure_logging(
    *,
    level: str = "INFO",
    log_file: Path | None = None,
    json_lines: bool = False,
    trades_log_file: Path | None = None,
    secrets: Iterable[str] = (),
    stream: Any = None,
    stderr_level: str | None = None,
    instance: str = "",
) -> None:
    """(Re)configure the root logger and the trades logger. Idempotent: old handlers are closed."""
    secrets = list(secrets)
    base: logging.Formatter = JsonFormatter(instance) if json_lines else TextFormatter(instance)
    formatter = RedactingFormatter(base, secrets)

    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(level)
    console = logging.StreamHandler(stream or sys.stderr)
    if stderr_level is not None:
        console.setLevel(stderr_level)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        handlers.append(_file_handler(log_file))
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    # Libraries that log every request at INFO would drown the bot's own lines.
    for noisy in ("httpx", "httpcore", "hpack", "hypercorn.access", "trio-websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

    trades = logging.getLogger(TRADES_LOGGER)
    for h in list(trades.handlers):
        trades.removeHandler(h)
        h.close()
    trades.setLevel(logging.INFO)
    if trades_log_file is not None:
        th = _file_handler(trades_log_file)
        th.setFormatter(RedactingFormatter(_TradesLineFormatter(instance), secrets))
        trades.addHandler(th)
        trades.propagate = False
    else:
        trades.propagate = True


def configure_from_settings(settings: Any, *, stream: Any = None,
                            stderr_level: str | None = None) -> None:
    configure_logging(
        level=settings.log_level,
        log_file=settings.log_file,
        json_lines=settings.log_json,
        trades_log_file=settings.trades_log_file,
        secrets=settings.secret_values(),
        stream=stream,
        stderr_level=stderr_level,
        instance=getattr(settings, "instance", ""),
    )
