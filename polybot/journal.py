"""The intent journal: an order's intent made durable against a crash by one write(2).

An order's intent must be on disk before its create is sent: the exchange has no client order
id, so after a crash the intent is the only way to know an order at the exchange is ours. A
SQLite commit with `synchronous=FULL` through the store's writer thread costs ~230 µs (an fsync
and a thread hop) on the path from a book frame to the order; this costs ~2 µs.

- **Write** (`IntentJournal.append`, on the path, in the Trio thread): one line of compact JSON
  (the order's row as `Store.record_intent` would store it) written with ONE write(2) to a file
  opened with `O_APPEND` and no Python buffering (libc's, called with the GIL held, so the
  syscall does not hand the interpreter to another thread: `_gil_holding_write`). The kernel holds the line from then on: a
  process crash, SIGKILL or OOM kill cannot lose it. A failed or short write raises
  `JournalError` (a short write is cut off again first) and the caller does not send.
- **Sync** (`IntentJournal.run`, off the path): a background task wakes on the first line,
  waits `SYNC_DELAY` (0.5 ms: by then the create is on the wire, so the thread hop and the
  fsync's wake-up never land before the send) and fdatasyncs the journal in a worker thread;
  lines written during the wait or the sync share the next one (group commit). Then it hands the synced lines to `copy` (the store's writer, which commits them
  into SQLite as `INSERT OR IGNORE`: an intent is the oldest version of its order row, so a newer
  row the executor wrote meanwhile always wins).
- **Truncate** (`IntentJournal.copied`, in the Trio thread): once every line written is committed
  in SQLite and the file has grown past `rotate_bytes`, it is cut to zero. Crash-safe by order:
  the SQLite commit returns before the cut, so a crash between the two leaves lines that are
  already in SQLite, which the replay skips. Writes and the cut both happen in the Trio thread,
  so no line can slip in between the check and the cut.
- **Replay** (`read_journal`, at the store's open): every line whose order SQLite lacks is
  inserted as an unacknowledged intent (state SUBMITTING); the executor's startup reconciliation
  adopts its order or proves it absent. A line that does not parse — a torn last line from a
  crash mid-write, or garbage after a power loss — is skipped, logged and counted.

A power loss (or kernel panic) between the send and the fdatasync can lose the last intents of
orders that exist: docs/design-notes.md "Durable intent" says what the restart then does.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = "-intents"  # DATA_DIR/polybot.db-intents, next to SQLite's -wal and -shm
FORMAT = 1  # the "v" of every line
DEFAULT_ROTATE_BYTES = 1 << 20
SYNC_DELAY = 0.0005  # seconds from the first unsynced line to its fdatasync's start

Row = Mapping[str, Any]  # one order row: column -> value (str, int or None)
CopyFn = Callable[[list[Row], Callable[[], None]], None]  # rows, run-once-committed


class JournalError(OSError):
    """The intent line could not be written: the order must not be sent."""


def journal_path(db_path: Path) -> Path:
    return Path(db_path).with_name(Path(db_path).name + JOURNAL_SUFFIX)


def _gil_holding_write() -> Callable[[int, bytes], int] | None:
    """libc's write(2) called with the GIL held (ctypes.PyDLL), or None where there is none.

    `os.write` releases the GIL around the syscall. The line reaches the page cache in ~2 µs,
    but releasing the GIL hands the interpreter to any thread waiting for it (the store's
    SQLite writer, a finished fdatasync's worker), and the trading task gets it back only when
    that thread blocks again: 10-20 µs p50, 150 µs p99 in `bench.trade_path`, on the path
    before the create. Holding the GIL for the ~2 µs of a page-cache write costs the other
    threads nothing they would notice.
    """
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        write = libc.write
    except (OSError, AttributeError, TypeError):  # no C library loaded by name (not Linux)
        return None
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t

    def write_holding_gil(fd: int, data: bytes) -> int:
        while True:
            n = int(write(fd, data, len(data)))
            if n >= 0:
                return n
            err = ctypes.get_errno()
            if err != errno.EINTR:  # retried like os.write does (PEP 475)
                raise OSError(err, os.strerror(err))

    return write_holding_gil


_write: Callable[[int, bytes], int] = _gil_holding_write() or os.write


def encode(row: Row) -> bytes:
    return orjson.dumps({"v": FORMAT, "row": row}) + b"\n"


@attrs.frozen
class JournalRead:
    """What a journal file holds: its rows in write order, and the lines that did not parse."""

    rows: tuple[Row, ...]
    torn: int


def read_journal(path: Path) -> JournalRead:
    """The journal's rows (read-only; an absent file is an empty journal)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return JournalRead((), 0)
    rows: list[Row] = []
    torn = 0
    end = data.rfind(b"\n") + 1  # bytes after the last newline: a write the crash cut short
    lines = data[:end].split(b"\n")[:-1]
    if end < len(data):
        lines.append(data[end:])
    for line in lines:
        try:
            doc = orjson.loads(line)
            row = doc["row"]
            if doc["v"] != FORMAT or not isinstance(row, dict) or not row.get("local_id"):
                raise ValueError("not an intent line")
        except (ValueError, KeyError, TypeError):
            torn += 1
            log.error("journal: skipped a line that does not parse (%d bytes): %r",
                      len(line), line[:80])
            continue
        rows.append(row)
    return JournalRead(tuple(rows), torn)


class IntentJournal:
    """The append-only journal file of one store (see the module's docstring)."""

    def __init__(self, path: Path, *, rotate_bytes: int = DEFAULT_ROTATE_BYTES) -> None:
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        self._size = os.fstat(self._fd).st_size
        self._unsynced: list[Row] = []  # written, not fdatasync'd yet
        self._pending: dict[str, Row] = {}  # written, not committed in SQLite yet (by local id)
        self._wake = trio.Event()
        self.lines = 0  # written by this process
        self.syncs = 0  # fdatasync calls (group commit: fewer than lines)
        self.truncations = 0

    @property
    def size(self) -> int:
        return self._size

    def pending(self) -> dict[str, Row]:
        """Rows written and not yet committed in SQLite, by local id."""
        return dict(self._pending)

    def append(self, row: Row) -> None:
        """Write one intent line, or raise JournalError (nothing usable written)."""
        line = encode(row)
        try:
            n = _write(self._fd, line)
        except OSError as exc:
            raise JournalError(exc.errno, f"intent journal write failed: {exc.strerror}") from exc
        if n != len(line):  # disk full mid-line: cut the fragment off, or the next line joins it
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                log.exception("journal: could not cut a short write off %s", self.path)
            raise JournalError(0, f"intent journal short write ({n} of {len(line)} bytes)")
        self._size += n
        self.lines += 1
        self._unsynced.append(row)
        self._pending[str(row["local_id"])] = row
        self._wake.set()

    def sync(self) -> None:
        """fdatasync the file (blocking: a worker thread's, or shutdown's)."""
        os.fdatasync(self._fd)
        self.syncs += 1

    async def run(self, copy: CopyFn, *, in_thread: bool = True,
                  delay: float = SYNC_DELAY) -> None:
        """Sync what was written (group commit), then hand it to `copy`; forever."""
        while True:
            await self._wake.wait()
            await trio.sleep(delay)  # the create goes on the wire first
            self._wake = trio.Event()
            batch, self._unsynced = self._unsynced, []
            if not batch:
                continue
            try:
                if in_thread:  # never abandoned: a cancelled sync still finishes
                    await trio.to_thread.run_sync(self.sync)
                else:
                    self.sync()
            except OSError:
                # SQLite's commit is durable by itself: the copy still goes ahead
                log.exception("journal: fdatasync of %s failed", self.path)
            self._copy(copy, batch)

    def flush(self, copy: CopyFn) -> None:
        """Sync and hand over whatever is unsynced, inline (shutdown)."""
        batch, self._unsynced = self._unsynced, []
        if batch:
            try:
                self.sync()
            except OSError:
                log.exception("journal: fdatasync of %s failed", self.path)
            self._copy(copy, batch)

    def _copy(self, copy: CopyFn, batch: list[Row]) -> None:
        keys = [str(row["local_id"]) for row in batch]
        copy(batch, lambda: self.copied(keys))

    def copied(self, keys: list[str]) -> None:
        """These lines are committed in SQLite; cut the file once all are and it is big."""
        for key in keys:
            self._pending.pop(key, None)
        if not self._pending and self._size >= self.rotate_bytes:
            try:
                self.truncate()
            except OSError:  # the writer that called us must not die of it: cut it next time
                log.exception("journal: could not truncate %s", self.path)

    def truncate(self) -> None:
        """Cut the file to zero. Only when every line in it is committed in SQLite."""
        os.ftruncate(self._fd, 0)
        self._size = 0
        self.truncations += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
