"""Recordings of the feeds: the on-disk format, its writer (`Recorder`) and its reader.

A recording is a directory:

    20261206T21.0001.rec.gz    data files, named by the UTC hour of their first record and a
    20261206T22.0002.rec.gz    counter (the counter orders them; a new file when the hour changes)
    index.jsonl                one line per closed data file: name, seqs, wall times, counts, drops

A data file is one gzip stream, sync-flushed after every batch the writer writes: while it is
open, everything written so far can be read back; a writer killed mid-run leaves a file without
its gzip trailer, which the next recorder opened on the directory finishes (keeping every complete
record) and indexes as `recovered`. Decompressed, a file is a header followed by records:

    header  MAGIC, u32 length, JSON {"format", "bot_version", "started_at", "settings", ...}
    record  u32 crc32 | u64 seq | i64 mono_ns | i64 wall_ns | u8 flags | u8 len(stream) |
            u32 len(payload) | stream | payload          (little-endian; the crc covers
                                                          everything after itself)

The payload is the bytes exactly as received; a `str` payload is stored UTF-8 with flag TEXT and
read back as `str`. Sequence numbers are assigned at ingest and increase strictly across files;
a record dropped at ingest (see below) keeps its number, so a gap shows where data is missing.
The settings in the header are `Settings.effective()`'s: every secret is `***`, and any secret's
value that would appear in another setting's text is masked too.

Why the writer is not on the caller's task: `Recorder.record` is called by the markets socket's
reading task, which decides and sends orders in the same breath (issue 15). So `record` only
appends a tuple to a list: no I/O, no compression, no formatting. `Recorder.run` (a task of its
own) swaps the list out every `interval` seconds and encodes, compresses and writes it in a
worker thread. If the writer falls behind (a stalled disk) the buffer is capped in bytes: past the
cap records are dropped and counted, a warning is logged once per episode, and the index line of
the file written next says how many were lost.

The reader (`read_recording`) checks every file's header before it yields anything (a format it
does not know is refused, naming the file and both versions), then yields records in sequence
order. A truncated or corrupt file yields every record before the damage, then raises
`RecordingDamaged` naming the file, the decompressed byte offset and the last good sequence number.
Each record carries its own CRC, so a corrupt stretch that still inflates is not mistaken for data.

Streams. `markets`, `private` and `odds` hold the feeds' frames as received (see `Recorder.tap`).
Two more hold the engine's other inputs, so a replay sees everything the bot saw, in its order:

* `rest` (`REST`): a REST response that feeds decisions (market, event and league listings,
  OpticOdds fixtures and odds snapshots, settlements), recorded by the clients' request helpers
  as it arrives, retries and errors included. Payload: one JSON line (`api`, `method`, `path`,
  `query` as [name, value] pairs, `status`; `error` instead of a status when no answer came),
  b"\n", then the body bytes exactly as received. No header is recorded, a query parameter named
  like a credential is dropped, and a configured secret found in the path, query or body is
  replaced by `***` (the head then says `masked`). `split_rest` reads one back.
* `engine` (`ENGINE`): an engine input that is not a frame, as JSON text with a `kind` (the
  `ENGINE_*` constants below) and the values the engine was given: wall times ISO 8601, Trio
  clock times as floats (JSON keeps a float exactly). `engine_input` reads one back.

Both payloads are built on the caller's task (a short JSON line; no I/O): neither is on the order
path (REST answers arrive in their own tasks; the markets socket's task records an engine input
only on a connect or a continuity loss).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

import attrs
import trio

import polybot
from polybot.clock import Clock
from polybot.config import Settings

log = logging.getLogger(__name__)

__all__ = ["ENGINE", "ENGINE_KINDS", "FORMAT", "REST", "Record", "Recorder", "RecordingDamaged",
           "RecordingError", "RecordingFormatError", "engine_input", "read_headers",
           "read_index", "read_recording", "split_rest"]

FORMAT = 1
MAGIC = b"POLYBOT-REC\n"
INDEX = "index.jsonl"
SUFFIX = ".rec.gz"
TEXT = 0x01  # flag: the payload was a str (stored UTF-8)

_HEADER_LEN = struct.Struct("<I")
_RECORD = struct.Struct("<IQqqBBI")  # crc, seq, mono_ns, wall_ns, flags, len(stream), len(payload)
_MAX_PAYLOAD = 64 * 1024 * 1024  # larger than any frame the streams accept (16 MB)
_NAME_RE = re.compile(r"^(\d{8}T\d{2})\.(\d{4,})" + re.escape(SUFFIX) + "$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_HOUR_NS = 3600 * 1_000_000_000
_OVERHEAD = 64  # bytes a buffered record costs beyond its payload (for the cap's arithmetic)


def wall_ns(when: datetime) -> int:
    """An aware datetime as Unix nanoseconds (exact to its microseconds)."""
    return (when - _EPOCH) // _US * 1000


def wall_time(ns: int) -> datetime:
    """Unix nanoseconds as an aware UTC datetime (to the microsecond): `wall_ns`'s inverse."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


# --- errors ---------------------------------------------------------------------------------------


class RecordingError(Exception):
    """A recording cannot be read (not one, a format this version does not read, damaged)."""


class RecordingFormatError(RecordingError):
    """A data file's format is not the one this polybot reads."""


class RecordingDamaged(RecordingError):
    """A data file is truncated or corrupt; every record before the damage was yielded."""

    def __init__(self, path: Path, offset: int, last_seq: int | None, reason: str, *,
                 truncated: bool = False) -> None:
        last = "none" if last_seq is None else str(last_seq)
        super().__init__(f"{path}: damaged at decompressed byte {offset} ({reason}); "
                         f"last good record: seq {last}")
        self.path = path
        self.offset = offset
        self.last_seq = last_seq
        self.reason = reason
        self.truncated = truncated  # the data just ends (a writer stopped), nothing is garbled


# --- records --------------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Record:
    seq: int
    stream: str
    mono_ns: int  # receive time on Trio's clock
    wall_ns: int  # receive time on the injected wall clock (Unix ns)
    payload: str | bytes  # exactly as received


def _encode(seq: int, stream: str, payload: str | bytes, mono_ns: int, wall: int) -> bytes:
    if isinstance(payload, str):
        flags, data = TEXT, payload.encode("utf-8")
    else:
        flags, data = 0, bytes(payload)
    name = stream.encode("ascii")
    body = _RECORD.pack(0, seq, mono_ns, wall, flags, len(name), len(data))[4:] + name + data
    return struct.pack("<I", zlib.crc32(body)) + body


# --- the `rest` and `engine` streams ---------------------------------------------------------------

REST = "rest"
ENGINE = "engine"

# The kinds of `engine` records: what the runtime gave the engine (or saw of a stream), and when.
# `at`/`mono` are Trio clock seconds, `now` the injected wall clock's ISO 8601 time.
ENGINE_CONTINUITY_LOST = "continuity_lost"
"""`engine.continuity_lost(at)`: the markets stream (re)starts or lost its connection (`stream`,
`reason`: the stream's, or "start" when the markets task begins, before it connects)."""
ENGINE_STREAM_CONNECTED = "stream_connected"
"""The markets stream connected and subscribed (`stream`, `connection`: 1 for the first, `at`);
fresh books follow."""
ENGINE_TICK = "tick"
"""`engine.tick(now, mono)`: the housekeeping second (rolls the day, checks the halts)."""
ENGINE_OPERATOR_FILES = "operator_files"
"""`engine.operator_files(kill, kill_reason, resume, now, mono)`: one poll of the kill switch and
resume files (every 0.25 s, each poll recorded)."""
ENGINE_FLATTEN = "flatten"
"""`engine.request_flatten()`: an operator's flatten request (`request_id`) is started."""
ENGINE_CANCEL_ALL = "cancel_all"
"""An operator's cancel-all request (`request_id`): the bot's open orders are cancelled."""
ENGINE_RECONCILED = "reconciled"
"""`engine.reconciled(now, mono)`: the day's baselines (paper: the restored ledger at start; live:
the first reconciliation, unless the account was adopted instead)."""
ENGINE_ADOPTED = "adopted"
"""`engine.adopted(now, mono, why)`: live, the account was adopted (a fresh start, a mode switch)
and its equity is the day's baseline."""
ENGINE_TRANSFER = "transfer"
"""`engine.transfer(amount)`: live, a deposit or withdrawal (`amount`, a decimal string)."""
ENGINE_KINDS = frozenset({ENGINE_CONTINUITY_LOST, ENGINE_STREAM_CONNECTED, ENGINE_TICK,
                          ENGINE_OPERATOR_FILES, ENGINE_FLATTEN, ENGINE_CANCEL_ALL,
                          ENGINE_RECONCILED, ENGINE_ADOPTED, ENGINE_TRANSFER})

# query parameters that would carry a credential (none of the clients sends one in a URL: the
# OpticOdds key travels in a header, the exchange signs with headers): never recorded
_CREDENTIAL_PARAMS = frozenset({"key", "api_key", "apikey", "x-api-key", "token", "access_token",
                                "secret", "signature", "password"})
_MASK = b"***"


def _rest_payload(secrets: list[bytes], api: str, method: str, path: str,
                  query: Iterable[tuple[str, str]], status: int | None, body: bytes,
                  error: str | None) -> bytes:
    pairs = [[str(k), str(v)] for k, v in query if str(k).lower() not in _CREDENTIAL_PARAMS]
    head: dict[str, Any] = {"api": api, "method": method, "path": path, "query": pairs,
                            "status": status}
    if error is not None:
        head["error"] = error
    line = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    masked = False
    for secret in secrets:
        if secret in line:
            line, masked = line.replace(secret, _MASK), True
        if secret in body:
            body, masked = body.replace(secret, _MASK), True
    if masked:
        line = line[:-1] + b',"masked":true}'
    return line + b"\n" + body


def split_rest(payload: str | bytes) -> tuple[dict[str, Any], bytes]:
    """A `rest` record's payload as (head, body): the head's `api`, `method`, `path`, `query`
    ([name, value] pairs, in the order sent), `status` (None when no answer came: see `error`),
    and the body bytes exactly as received."""
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    line, sep, body = data.partition(b"\n")
    if not sep:
        raise RecordingError("a rest record without its head line")
    head = json.loads(line)
    if not isinstance(head, dict):
        raise RecordingError("a rest record whose head is not an object")
    return head, body


def engine_input(payload: str | bytes) -> dict[str, Any]:
    """An `engine` record's payload as a dict with its `kind` (one of `ENGINE_KINDS`)."""
    data = json.loads(payload)
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise RecordingError("an engine record without a kind")
    return data


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if isinstance(value, Decimal) else value  # money stays exact


def header_settings(settings: Settings) -> dict[str, str]:
    """The settings in force as `check` shows them (secrets `***`), with any secret's value that
    appears inside another setting's text masked as well."""
    secrets = [s for s in settings.secret_values() if s]
    out = {}
    for name, shown in settings.effective():
        for secret in secrets:
            shown = shown.replace(secret, "***")
        out[name] = shown
    return out


class RestTap(Protocol):
    """What a REST client calls with each answer (`Recorder.rest_tap`)."""

    def __call__(self, method: str, path: str, query: Iterable[tuple[str, str]],
                 status: int | None, body: bytes, error: str | None = None) -> None: ...


# --- the writer -----------------------------------------------------------------------------------


@attrs.define
class _OpenFile:
    name: str
    hour: int  # wall_ns // _HOUR_NS of its first record
    fh: IO[bytes]
    z: Any  # zlib compressobj: one gzip stream per file, sync-flushed after every batch
    first_seq: int | None = None
    last_seq: int | None = None
    first_wall_ns: int | None = None
    last_wall_ns: int | None = None
    records: int = 0
    dropped: int = 0

    def index_line(self, **extra: Any) -> dict[str, Any]:
        return {"name": self.name, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "first_wall_ns": self.first_wall_ns, "last_wall_ns": self.last_wall_ns,
                "records": self.records, "dropped": self.dropped, **extra}


class Recorder:
    """Journals raw feed frames into a recording directory (see the module's docstring).

    `record()` is synchronous and cheap; `run()` is the task that writes. One recorder per
    directory at a time. A recorder opened on an existing recording continues it: sequence numbers
    go on from the highest recorded, and a data file a killed process left out of the index is
    read and indexed first (marked `recovered`).
    """

    def __init__(self, directory: Path, *, clock: Clock, settings: Settings | None = None,
                 interval: float = 0.25, max_buffer_bytes: int = 64 * 1024 * 1024,
                 compresslevel: int = 6) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self._settings = header_settings(settings) if settings is not None else {}
        # masked out of `rest` records should an answer ever echo one
        self._secrets = ([v.encode("utf-8") for v in settings.secret_values() if v]
                         if settings is not None else [])
        self.interval = interval
        self.max_buffer_bytes = max_buffer_bytes
        self.compresslevel = compresslevel
        self._buffer: list[tuple[int, str, str | bytes, int, int | datetime]] = []
        self._buffered = 0  # bytes (payload + overhead) in _buffer
        self._seq = 0
        self._opened = False
        self._closed = False
        self._started_at = ""
        self._file: _OpenFile | None = None
        self._counter = 0
        # drops: total, not yet attributed to a file, and in the current episode
        self.dropped = 0
        self._dropped_unfiled = 0
        self._episode = 0
        # counters for tests and /status
        self.records = 0  # written
        self.bytes_written = 0  # compressed
        self.files = 0
        self.failed: str | None = None  # why recording stopped (the disk refused), else None

    # --- ingest (the caller's task: no I/O) ----------------------------------------------------

    def record(self, stream: str, payload: str | bytes, mono_ns: int, wall_ns: int) -> None:
        """Journal one frame as received; assigns its sequence number. No I/O."""
        self._ingest(stream, payload, mono_ns, wall_ns)

    def _ingest(self, stream: str, payload: str | bytes, mono_ns: int,
                wall: int | datetime) -> None:
        seq = self._seq
        self._seq = seq + 1
        size = len(payload) + _OVERHEAD
        if self._buffered + size > self.max_buffer_bytes or self._closed:
            self._drop(seq)
            return
        self._buffered += size
        self._buffer.append((seq, stream, payload, mono_ns, wall))

    def _drop(self, seq: int) -> None:
        self.dropped += 1
        if self._closed:  # stopped (or failed): nothing more is written
            return
        self._dropped_unfiled += 1
        if self._episode == 0:
            log.warning("recording %s: the writer is behind (buffer over %d bytes): dropping "
                        "records from seq %d on (counted in index.jsonl)", self.directory,
                        self.max_buffer_bytes, seq)
        self._episode += 1

    def tap(self, stream: str) -> Callable[[str | bytes, float], None]:
        """A hook for a feed: `tap(payload, now)` with `now` on Trio's clock (as the streams have
        it); the wall time is the injected clock's, converted by the writer."""
        ingest = self._ingest
        now = self._clock.now

        def frame(payload: str | bytes, mono: float) -> None:
            ingest(stream, payload, int(mono * 1e9), now())

        return frame

    def rest_tap(self, api: str) -> RestTap:
        """A hook for a REST client's request helper (`api`: "polymarket", "opticodds"):
        `tap(method, path, query, status, body, error)` with each answer as it arrives (or, with
        `status` None, the failure that came instead), timed here. See `split_rest`."""
        ingest = self._ingest
        now = self._clock.now
        mono = self._clock.monotonic
        secrets = self._secrets

        def answer(method: str, path: str, query: Iterable[tuple[str, str]], status: int | None,
                   body: bytes, error: str | None = None) -> None:
            payload = _rest_payload(secrets, api, method, path, query, status, body, error)
            ingest(REST, payload, int(mono() * 1e9), now())

        return answer

    def engine(self, kind: str, **values: Any) -> None:
        """Journal an engine input of `kind` (an `ENGINE_*` constant) with the values the engine
        was given (datetimes as ISO 8601). See `engine_input`."""
        if kind not in ENGINE_KINDS:
            raise ValueError(f"not an engine input kind: {kind!r}")
        fields = {name: _json_value(v) for name, v in values.items()}
        fields["kind"] = kind
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        self._ingest(ENGINE, text, int(self._clock.monotonic() * 1e9), self._clock.now())

    # --- the writer task -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open (or continue) the recording, then write what was recorded every `interval` s;
        on cancellation, write the rest and close the current file (shielded)."""
        try:
            await self.open()
        except OSError as exc:
            self._fail(exc)
        task_status.started()
        try:
            while True:
                await trio.sleep(self.interval)
                await self.drain()
        finally:
            with trio.CancelScope(shield=True):
                await self.drain()
                self._closed = True
                try:
                    await trio.to_thread.run_sync(self._close_file)
                except OSError as exc:
                    self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        """The disk refused (full, unwritable, gone): recording stops, trading goes on. What is
        recorded from now on is dropped and counted."""
        if self.failed is None:
            log.error("recording %s stopped: %s: %s; the bot runs on without recording",
                      self.directory, type(exc).__name__, exc)
        self.failed = f"{type(exc).__name__}: {exc}"
        self._closed = True
        self.dropped += len(self._buffer)
        self._buffer, self._buffered = [], 0

    async def open(self) -> None:
        """Continue the directory's recording: index what a killed process left unindexed, and
        number on from its highest sequence number (also what was ingested meanwhile)."""
        if self._opened:
            return
        self._started_at = self._clock.now().isoformat()
        shift = await trio.to_thread.run_sync(self._scan)
        self._opened = True
        if shift:  # back on the Trio thread: ingest cannot interleave
            self._buffer = [(seq + shift, *rest) for seq, *rest in self._buffer]  # type: ignore[misc]
            self._seq += shift

    async def drain(self) -> None:
        """Write everything buffered so far (in a worker thread)."""
        if not self._opened and self.failed is None:
            raise RuntimeError("Recorder.drain before open()")
        batch, self._buffer, self._buffered = self._buffer, [], 0
        dropped, self._dropped_unfiled = self._dropped_unfiled, 0
        if self._episode:
            log.warning("recording %s: %d record(s) dropped while the writer was behind",
                        self.directory, self._episode)
            self._episode = 0
        if self.failed is not None:
            return
        if batch or dropped:
            try:
                await trio.to_thread.run_sync(self._write, batch, dropped,
                                              wall_ns(self._clock.now()))
            except OSError as exc:
                self.dropped += len(batch)
                self._fail(exc)

    # --- in the worker thread ------------------------------------------------------------------

    def _scan(self) -> int:
        """The first sequence number this session may use (0 for a new recording)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        indexed = {row.get("name"): row for row in read_index(self.directory)}
        last = max((row["last_seq"] for row in indexed.values()
                    if isinstance(row.get("last_seq"), int)), default=-1)
        for path in _data_files(self.directory):
            self._counter = max(self._counter, _counter_of(path))
            if path.name in indexed:
                continue
            row = _recover(path, self.compresslevel)
            self._append_index(row)
            if row["last_seq"] is not None:
                last = max(last, row["last_seq"])
        return last + 1

    def _write(self, batch: list[tuple[int, str, str | bytes, int, int | datetime]],
               dropped: int, now_ns: int) -> None:
        parts: list[bytes] = []
        for seq, stream, payload, mono_ns, wall in batch:
            wall_int = wall if isinstance(wall, int) else wall_ns(wall)
            hour = wall_int // _HOUR_NS
            f = self._file
            if f is None or hour != f.hour:
                self._flush(parts)
                parts = []
                f = self._rotate(hour, wall_int)
            if f.first_seq is None:
                f.first_seq, f.first_wall_ns = seq, wall_int
            f.last_seq, f.last_wall_ns = seq, wall_int
            f.records += 1
            parts.append(_encode(seq, stream, payload, mono_ns, wall_int))
        self._flush(parts)
        self.records += len(batch)
        if dropped:
            f = self._file or self._rotate(now_ns // _HOUR_NS, now_ns)
            f.dropped += dropped

    def _flush(self, parts: list[bytes]) -> None:
        f = self._file
        if not parts or f is None:
            return
        out = f.z.compress(b"".join(parts)) + f.z.flush(zlib.Z_SYNC_FLUSH)
        f.fh.write(out)
        f.fh.flush()
        self.bytes_written += len(out)

    def _rotate(self, hour: int, first_wall: int) -> _OpenFile:
        self._close_file()
        self._counter += 1
        stamp = wall_time(hour * _HOUR_NS).strftime("%Y%m%dT%H")
        name = f"{stamp}.{self._counter:04d}{SUFFIX}"
        header = {"format": FORMAT, "bot_version": polybot.__version__,
                  "started_at": self._started_at, "file": name,
                  "opened_at": wall_time(first_wall).isoformat(),
                  "settings": self._settings}
        fh = open(self.directory / name, "xb")  # closed by _close_file
        self._file = _OpenFile(name=name, hour=hour, fh=fh, z=_compressor(self.compresslevel))
        self._flush([_header_bytes(header)])
        self.files += 1
        return self._file

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        f.fh.write(f.z.flush())  # the gzip trailer: the file is complete
        f.fh.close()
        self._append_index(f.index_line())

    def _append_index(self, row: dict[str, Any]) -> None:
        with open(self.directory / INDEX, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _compressor(level: int) -> Any:
    return zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip stream


def _header_bytes(header: dict[str, Any]) -> bytes:
    data = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _HEADER_LEN.pack(len(data)) + data


def _recover(path: Path, level: int) -> dict[str, Any]:
    """Index a data file a killed process left unindexed.

    A writer killed mid-run leaves its file without the gzip trailer (and maybe half a batch):
    the file is rewritten with every complete record and properly ended, so the recording reads
    through it. Anything worse than a cut-off end is damage: the original is kept beside it as
    NAME.damaged and the index line says what was wrong."""
    row: dict[str, Any] = {"name": path.name, "first_seq": None, "last_seq": None,
                           "first_wall_ns": None, "last_wall_ns": None, "records": 0,
                           "dropped": 0, "recovered": True}
    good: list[Record] = []
    damage: RecordingDamaged | None = None
    try:
        header, chunks, base = _read_header(path)
    except RecordingError as exc:  # not even a header: nothing to keep
        row["damaged"] = str(exc)
        log.warning("recording: %s", exc)
        return row
    try:
        for rec in _file_records(path, chunks, base=base):
            good.append(rec)
    except RecordingDamaged as exc:
        damage = exc
    if good:
        row.update(first_seq=good[0].seq, first_wall_ns=good[0].wall_ns,
                   last_seq=good[-1].seq, last_wall_ns=good[-1].wall_ns, records=len(good))
    if damage is None:
        return row
    z = _compressor(level)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(z.compress(_header_bytes(header)))
        for rec in good:
            fh.write(z.compress(_encode(rec.seq, rec.stream, rec.payload, rec.mono_ns,
                                        rec.wall_ns)))
        fh.write(z.flush())
        fh.flush()
        os.fsync(fh.fileno())
    if damage.truncated:
        log.warning("recording: %s was left unfinished (the writer stopped); %d record(s) kept",
                    path, len(good))
        os.replace(tmp, path)
    else:
        row["damaged"] = str(damage)
        log.error("recording: %s; its good records are kept, the original is %s.damaged",
                  damage, path.name)
        os.replace(path, path.with_name(path.name + ".damaged"))
        os.replace(tmp, path)
    return row


# --- the reader -----------------------------------------------------------------------------------


def _counter_of(path: Path) -> int:
    m = _NAME_RE.match(path.name)
    return int(m.group(2)) if m else 0


def _data_files(directory: Path) -> list[Path]:
    files = [p for p in directory.iterdir() if _NAME_RE.match(p.name)]
    return sorted(files, key=_counter_of)


def read_index(directory: Path) -> list[dict[str, Any]]:
    """The index lines (closed files), oldest first; a torn last line is skipped."""
    path = Path(directory) / INDEX
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


class _Broken(Exception):
    """The compressed data stops making sense (or stops): the reader reports where."""

    def __init__(self, reason: str, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.truncated = truncated


class _Inflater:
    """A data file's decompressed bytes, chunk by chunk, across its gzip members.

    On damage it raises `_Broken` after handing out every byte it could inflate before it: a
    failed call is redone from a copy of the decompressor, one compressed byte at a time."""

    CHUNK = 64 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path

    def chunks(self) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            d = zlib.decompressobj(wbits=31)
            fed = False  # the current member has had input
            pending = b""
            while True:
                if not pending:
                    pending = fh.read(self.CHUNK)
                    if not pending:
                        break
                if d.eof:  # the next gzip member
                    d = zlib.decompressobj(wbits=31)
                    fed = False
                fed = True
                yield from self._inflate(d, pending)
                pending = d.unused_data if d.eof else d.unconsumed_tail
            if fed and not d.eof:
                try:
                    tail = d.flush()
                except zlib.error:
                    tail = b""
                if tail:
                    yield tail
                raise _Broken("the file ends before its gzip trailer (truncated)", truncated=True)

    def _inflate(self, d: Any, data: bytes) -> Iterator[bytes]:
        saved = d.copy()
        try:
            out = d.decompress(data, self.CHUNK)
        except zlib.error as exc:
            for i in range(len(data)):  # salvage what inflates before the damage
                try:
                    piece = saved.decompress(data[i:i + 1])
                except zlib.error:
                    break
                if piece:
                    yield piece
                if saved.eof:
                    break
            raise _Broken(f"corrupt compressed data: {exc}") from None
        if out:
            yield out


def _read_header(path: Path) -> tuple[dict[str, Any], Iterator[bytes], int]:
    """The file's header, the decompressed chunks after it, and the offset they start at."""
    chunks = _Inflater(path).chunks()
    buf = b""
    need = len(MAGIC) + _HEADER_LEN.size
    try:
        while len(buf) < need:
            buf += next(chunks)
        if not buf.startswith(MAGIC):
            raise RecordingError(f"{path}: not a polybot recording file (bad magic)")
        (size,) = _HEADER_LEN.unpack_from(buf, len(MAGIC))
        while len(buf) < need + size:
            buf += next(chunks)
    except StopIteration:
        raise RecordingDamaged(path, len(buf), None, "the file ends inside its header") from None
    except _Broken as exc:
        raise RecordingDamaged(path, len(buf), None, f"in its header: {exc}") from None
    try:
        header = json.loads(buf[need:need + size])
    except ValueError:
        raise RecordingDamaged(path, need, None, "the header is not JSON") from None
    fmt = header.get("format") if isinstance(header, dict) else None
    if fmt != FORMAT:
        raise RecordingFormatError(
            f"{path}: recording format {fmt!r} (written by polybot "
            f"{header.get('bot_version', '?') if isinstance(header, dict) else '?'}); this "
            f"polybot {polybot.__version__} reads format {FORMAT} only")
    rest = buf[need + size:]

    def remaining() -> Iterator[bytes]:
        if rest:
            yield rest
        yield from chunks

    return header, remaining(), need + size


def _file_records(path: Path, chunks: Iterator[bytes], *, after: int | None = None,
                  base: int = 0) -> Iterator[Record]:
    """Parse records from decompressed chunks; `base` = offset of the first chunk's byte."""
    buf = b""
    pos = 0  # in buf
    offset = base  # decompressed offset of buf[0]
    last = after
    size = _RECORD.size
    try:
        for chunk in chunks:
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            offset += pos
            pos = 0
            n = len(buf)
            while n - pos >= size:
                crc, seq, mono, wall, flags, nlen, plen = _RECORD.unpack_from(buf, pos)
                if plen > _MAX_PAYLOAD:
                    raise RecordingDamaged(path, offset + pos, last, "a record length is corrupt")
                end = pos + size + nlen + plen
                if end > n:
                    break
                if zlib.crc32(memoryview(buf)[pos + 4:end]) != crc:
                    raise RecordingDamaged(path, offset + pos, last, "a record's checksum fails")
                if last is not None and seq <= last:
                    raise RecordingDamaged(path, offset + pos, last,
                                           f"sequence number {seq} after {last}")
                start = pos + size
                stream = buf[start:start + nlen].decode("ascii", "replace")
                data = buf[start + nlen:end]
                yield Record(seq, stream, mono, wall, data.decode("utf-8") if flags & TEXT else data)
                last = seq
                pos = end
    except _Broken as exc:
        raise RecordingDamaged(path, offset + pos, last, str(exc),
                               truncated=exc.truncated) from None
    if pos < len(buf):
        raise RecordingDamaged(path, offset + pos, last, "the file ends inside a record")


def read_headers(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every data file and its header, in order; refuses a format this version does not read."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordingError(f"{directory}: no such recording directory")
    files = _data_files(directory)
    if not files:
        raise RecordingError(f"{directory}: no recording files (*{SUFFIX}) in it")
    out = []
    for path in files:
        header, chunks, _ = _read_header(path)
        chunks.close()  # type: ignore[attr-defined]
        out.append((path, header))
    return out


def read_recording(directory: Path) -> Iterator[Record]:
    """The recording's records in sequence order, across its files.

    Every header is checked first (`RecordingFormatError` before any record); a damaged file
    raises `RecordingDamaged` after the last record before its damage."""
    files = [path for path, _ in read_headers(directory)]
    return _records(files)


def _records(files: list[Path]) -> Iterator[Record]:
    last: int | None = None
    for path in files:
        _header, chunks, base = _read_header(path)
        for rec in _file_records(path, chunks, after=last, base=base):
            last = rec.seq
            yield rec
