"""`python -m polybot backtest RECORDING`: the whole bot, replayed on a recording (issue 16).

The composition root of a replay. It runs the same `polybot.runtime.run_bot` as `run` (the same
components, supervisor, decoders, engine and paper venue), and swaps only the I/O edges
(`polybot.components.Edges`) for sources that answer from the recording:

* REST (`RecordedRest`, an httpx transport, one per API): a request is answered by the next
  unconsumed `rest` record with the same (api, method, path, query), with its recorded status
  and body bytes, not before the time it was recorded (a recorded failure fails the same way). A
  request the recording has no answer for fails as if the network had (`httpx.ConnectError`) and
  is counted in the report.
* The markets websocket (`RecordedMarkets`): each connection the stream opens yields the
  recorded `markets` frames at their recorded times (what the bot sends is ignored); a recorded
  continuity loss of the stream closes the connection at its time, and the stream reconnects as
  it would.
* The OpticOdds stream: `/stream/odds/{sport}` answered by `RecordedRest` with the recorded `odds`
  events of that sport (SSE text), each at its time, into the same SSE parser and `OddsFeed`.
* The operator (`operator_actions`): the recorded kill switch, resume, flatten and cancel-all
  inputs are made again through the same files and requests the operator's CLI writes, just before
  the bot's poll that saw them. Ticks, continuity and the paper reconciliation happen by
  themselves in the replayed bot.

Time. The replay runs in `trio.run` on `trio.testing.MockClock(autojump_threshold=0)`: whenever
every task waits, Trio time jumps to the next deadline, so a replay runs as fast as the CPU allows.
Trio time starts at the recording's own first monotonic time, and the injected wall clock is a
`ReplayClock` that follows it from the first record's wall time, so every recorded time means the
same in the replay.

Determinism. The same recording and settings give byte-identical `--json` output: Trio's scheduler
is made deterministic for the run (the batch order it randomises is sorted and shuffled from a
fixed seed, as pytest-trio does under Hypothesis), the markets stream's reconnect jitter is
seeded, and the output leaves out what is random by design (order and correlation ids).

The page (`--html`). The replay's store is a temp DATA_DIR, so the HTML report's data is built
from it before it goes (`page_data`, with `report.html_data`, which the CLI hands in: report and
backtest never import each other), drawn against the caps the replay ran with (the recording's
settings with the `--set` overrides), and the page says what was replayed and how.

Limits. One run of the bot at a time: a recording continued by a later process (its Trio clock
starts afresh) is replayed up to where that run begins, which `--from` selects. Only paper mode is
replayed (a live recording replays as paper: its private stream is not
used). The time an answer took is the recorded one only where the bot asks at the recorded time;
a replay whose settings make it ask other questions gets the answers the recording has for them,
or none. `--from`/`--to` cut the streams and the operator's inputs to a wall-time window; REST
answers are all kept (the bot loads its metadata when it starts, whenever that is).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import math
import random
import re
import tempfile
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import trio
import trio.testing

from polybot import control
from polybot import operator as operator_requests
from polybot.clock import ReplayClock
from polybot.components import Edges
from polybot.config import RISK_CAPS, VARIABLES, Settings, load_settings, risk_caps
from polybot.ledger import Ledger
from polybot.polymarket.wsconn import CloseReason, ConnectionClosed
from polybot.recording import (
    ENGINE,
    ENGINE_CANCEL_ALL,
    ENGINE_CONTINUITY_LOST,
    ENGINE_FLATTEN,
    ENGINE_OPERATOR_FILES,
    REST,
    Record,
    RecordingDamaged,
    RecordingError,
    engine_input,
    read_headers,
    read_recording,
    split_rest,
    wall_ns,
    wall_time,
)
from polybot.report_html import HtmlReportData, fmt, render_html
from polybot.runtime import run_bot
from polybot.store import connect_readonly, db_path, read_ledger_state

log = logging.getLogger("polybot.backtest")

__all__ = ["Backtest", "BacktestError", "RecordedMarkets", "RecordedRest", "load", "main", "run"]

# `report.html_data`, handed in by the caller (the CLI): report and backtest are sibling
# composition roots that never import each other (pyproject.toml's layers)
HtmlData = Callable[..., HtmlReportData]

REST_WAIT_CAP = 5.0  # an answer waits for its recorded time at most this long (below timeouts)
SEED = 0

# the settings a replay always sets: paper, its own temp store, no recording, no alerts sent, a
# health server on an ephemeral loopback port, no market claims (a replay on the production host
# must never take a market from the live instances: polybot.claims)
_FORCED = {"TRADING_MODE": "paper", "RECORD_DIR": "", "CLAIMS_DIR": "", "HEALTH_HOST": "127.0.0.1",
           "HEALTH_PORT": "0", "LOG_FILE": "", "TRADES_LOG_FILE": "", "DISCORD_WEBHOOK": "",
           "TELEGRAM_BOT_TOKEN": "", "PM_PRIVATE_KEY_FILE": ""}
# placeholders for the secrets a recording never holds (nothing is signed or sent in a replay)
_PLACEHOLDERS = {"PM_PRIVATE_KEY": base64.b64encode(bytes(32)).decode(),
                 "OPTICODDS_API_KEY": "replay"}


class BacktestError(Exception):
    """The backtest cannot run as asked (a setting it does not know, an empty window, ...)."""


# --- the recording, split for the edges -------------------------------------------------------------


@attrs.frozen
class Answer:
    at: float  # Trio seconds it was recorded at
    seq: int
    status: int | None
    body: bytes
    error: str | None


_TIME_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def rest_key(api: str, method: str, path: str, query: list[list[str]]) -> tuple[str, str, str, str]:
    """What a request is matched on. A query value that is a time (a listing's window, computed
    from the wall clock when the request is made) matches any time: a replayed bot asks a
    few milliseconds off the recorded one (no network latency), and the window it asks for
    moves with it; the next unconsumed answer in recorded order is the one it gets."""
    pairs = [[str(k), "<time>" if _TIME_VALUE.match(str(v)) else str(v)] for k, v in query]
    return api, method.upper(), path, json.dumps(pairs)


@attrs.define
class Replay:
    """A recording read and sorted for the replay's sources."""

    header: dict[str, Any]
    origin: float  # Trio seconds of the first record in the window
    origin_wall: datetime
    end: float  # Trio seconds of the last record in the window
    markets: list[tuple[float, int, str | bytes]]  # (time, seq, frame)
    losses: list[float]  # the markets stream's recorded continuity losses (not its starts)
    odds: dict[str, list[tuple[float, int, bytes]]]  # by sport: (time, seq, event)
    rest: dict[tuple[str, str, str, str], deque[Answer]]
    engine: list[tuple[float, dict[str, Any]]]
    recorded: Counter[str]
    damaged: str | None = None
    stopped: str | None = None  # where the replay ends before the recording does, and why
    sportsbooks: frozenset[str] = frozenset()  # asked of OpticOdds in the recording
    leagues: frozenset[str] = frozenset()  # listed by discovery in the recording


def _in_window(rec: Record, start: int | None, stop: int | None) -> bool:
    return (start is None or rec.wall_ns >= start) and (stop is None or rec.wall_ns <= stop)


def load(directory: Path, *, start: datetime | None = None,
         stop: datetime | None = None) -> Replay:
    """Read a recording (every header first: a format this polybot does not read is refused);
    a damaged file ends it at the damage, noted in `damaged`."""
    headers = read_headers(directory)
    header = headers[0][1]
    lo = wall_ns(start) if start is not None else None
    hi = wall_ns(stop) if stop is not None else None
    markets: list[tuple[float, int, str | bytes]] = []
    losses: list[float] = []
    odds: dict[str, list[tuple[float, int, bytes]]] = defaultdict(list)
    rest: dict[tuple[str, str, str, str], deque[Answer]] = defaultdict(deque)
    engine: list[tuple[float, dict[str, Any]]] = []
    recorded: Counter[str] = Counter()
    first: Record | None = None
    last: Record | None = None
    damaged = None
    books: set[str] = set()
    leagues: set[str] = set()
    records = read_recording(directory)
    previous = -1
    stopped = None
    try:
        for rec in records:
            if rec.mono_ns < previous:  # another process's run continues the recording
                if first is not None:
                    stopped = (f"the recording continues with another run at seq {rec.seq} "
                               f"({wall_time(rec.wall_ns).isoformat()}): replay it with --from")
                    break
                rest.clear()  # that run's answers are not this one's
                books.clear()
                leagues.clear()
                recorded.clear()
            previous = rec.mono_ns
            at = _received(rec.mono_ns)
            if rec.stream == REST:  # every answer is kept: the bot asks when it asks
                head, body = split_rest(rec.payload)
                key = rest_key(head["api"], head["method"], head["path"], head["query"])
                books.update(v for k, v in head["query"] if k == "sportsbook")
                if head["api"] == "polymarket" and head["path"].startswith("/v2/leagues/"):
                    leagues.add(head["path"].split("/")[3])
                rest[key].append(Answer(at, rec.seq, head.get("status"), body, head.get("error")))
                recorded[REST] += 1
                continue
            if not _in_window(rec, lo, hi):
                continue
            first = first or rec
            last = rec
            recorded[rec.stream] += 1
            if rec.stream == "markets":
                markets.append((at, rec.seq, rec.payload))
            elif rec.stream == "odds":
                text = rec.payload if isinstance(rec.payload, str) else rec.payload.decode()
                sport = text[2:text.index("\n")] if text.startswith(": ") else ""
                odds[sport].append((at, rec.seq, text.encode()))
            elif rec.stream == ENGINE:
                value = engine_input(rec.payload)
                if (value["kind"] == ENGINE_CONTINUITY_LOST and value.get("stream") == "markets"
                        and value.get("reason") != "start"):
                    losses.append(at)
                engine.append((at, value))
    except RecordingDamaged as exc:
        damaged = str(exc)
        log.error("recording damaged: %s; replaying what came before", exc)
    if first is None or last is None:
        raise BacktestError(f"{directory}: no record in the window asked for")
    return Replay(header=header, origin=first.mono_ns / 1e9,
                  origin_wall=wall_time(first.wall_ns),
                  end=last.mono_ns / 1e9, markets=markets, losses=losses, odds=dict(odds),
                  rest=dict(rest), engine=engine, recorded=recorded, damaged=damaged,
                  stopped=stopped, sportsbooks=frozenset(books), leagues=frozenset(leagues))


def _received(mono_ns: int) -> float:
    """When a record is delivered, in Trio seconds: the recorder truncated the time it was
    received to whole nanoseconds, so the next nanosecond is the first time not before it (a
    subscription's snapshot recorded on a mock clock at the instant it was asked for must not
    come a fraction of a nanosecond before the replayed bot asks)."""
    return (mono_ns + 1) / 1e9


# --- the order of what was recorded at one instant ----------------------------------------------------


class StepCounter(trio.abc.Instrument):
    """How many tasks are scheduled to run and have not run yet: Trio's run queue plus the rest
    of the batch the scheduler is running, which `current_statistics().tasks_runnable` does not
    count. Exact only when installed from the run's start (`trio.run(instruments=...)`)."""

    def __init__(self) -> None:
        self.pending = 0

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.pending += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.pending -= 1


class Sequencer:
    """Records due at the same instant are delivered in their recorded order.

    Each source sleeps until its record's time, so records of different times come in time
    order by themselves; but a recording made on a mock clock (or a coarse one) holds many
    records of one instant across streams (an odds event and a book frame), and which task Trio
    wakes first is not the recording's order. `at(time, seq)` lets a record go only once every
    record of a lower seq due now went, or is not coming: its reader is not waiting for it this
    instant (every task is blocked and it was not delivered), or it is late (recorded earlier
    than now: the replayed bot asked for it later than the recorded one did)."""

    def __init__(self, due: list[tuple[int, float]], steps: StepCounter | None = None) -> None:
        due = sorted(due)
        self._order = [seq for seq, _at in due]
        self._time = dict(due)
        self._done: set[int] = set()
        self._next = 0
        self._changed = trio.Event()
        self._idle_waiters = 0  # tasks of ours in wait_all_tasks_blocked
        self._steps = steps

    def _all_blocked_but_me(self) -> bool:
        """Whether `wait_all_tasks_blocked()` would hand control straight back to the calling
        task: no other task is scheduled, none of ours waits for all to block, no deadline is
        due (its task would run first) and no thread's callback is queued. The barrier's round
        trip through the scheduler is then skipped (5,857 of 6,744 barriers of the 100-market
        bench recording, ~9 % of its replay's CPU).
        (Sockets are not looked at: a replay's only ones are the health server's listeners, on
        an ephemeral port nobody is told of.)"""
        if self._steps is None or self._idle_waiters or self._steps.pending:
            return False
        stats = trio.lowlevel.current_statistics()
        return (stats.tasks_runnable == 0 and stats.run_sync_soon_queue_size == 0
                and stats.seconds_to_next_deadline > 0)

    def _head(self) -> int | None:
        order, done = self._order, self._done
        while self._next < len(order) and order[self._next] in done:
            done.discard(order[self._next])
            self._next += 1
        return order[self._next] if self._next < len(order) else None

    def done(self, seq: int) -> None:
        self._done.add(seq)
        self._changed.set()
        self._changed = trio.Event()

    async def at(self, when: float, seq: int) -> None:
        """Sleep until `when`, then wait for the turn of `seq`; the caller delivers it and calls
        `done(seq)` at once.

        Before its turn, a record also waits until the bot did all it does at this instant
        (every task blocked): what arrives at `when` was received after what the bot sent at
        `when` (a subscription's snapshot is recorded at the instant it was asked for on a
        mock clock, and must not reach a replayed bot that has not asked yet)."""
        if when > trio.current_time():
            await trio.sleep_until(when)
        # else: already there (most records of a mock-clock recording share their instant with
        # others): no sleep, whose cancel scope and extra trip through the scheduler cost a
        # third of this; the barrier below is a checkpoint all the same
        if self._all_blocked_but_me():  # the barrier would return at once: only its checkpoint
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await self._barrier()
        while True:
            head = self._head()
            if head is None or head >= seq:
                return
            if self._time[head] < trio.current_time():  # late: nobody read it on time
                self.done(head)
                continue
            changed = self._changed
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._unclaimed, head, nursery.cancel_scope)
                await changed.wait()
                nursery.cancel_scope.cancel()

    async def _barrier(self) -> None:
        """Wait until every task is blocked, counted as a Sequencer waiter while it waits."""
        self._idle_waiters += 1
        try:
            await trio.testing.wait_all_tasks_blocked()
        finally:
            self._idle_waiters -= 1

    async def _unclaimed(self, head: int, waiting: trio.CancelScope) -> None:
        await self._barrier()
        if self._head() == head:  # nobody is reading it now: it does not hold the others up
            self.done(head)
        waiting.cancel()


# --- the edges --------------------------------------------------------------------------------------


class RecordedRest(httpx.AsyncBaseTransport):
    """One API's REST answers (and, for OpticOdds, its SSE streams) from a recording."""

    def __init__(self, api: str, base_urls: list[str], replay: Replay,
                 odds: dict[str, deque[tuple[float, int, bytes]]], sequencer: Sequencer,
                 replayed: Counter[str], unanswered: Counter[str]) -> None:
        self.api = api
        self._sequencer = sequencer
        self._prefixes = sorted({urlsplit(u).path.rstrip("/") for u in base_urls if u},
                                key=len, reverse=True)
        self._answers = replay.rest
        self._odds = odds
        self._replayed = replayed
        self._unanswered = unanswered

    def _path(self, request: httpx.Request) -> str:
        path = request.url.path
        for prefix in self._prefixes:
            if prefix and path.startswith(prefix + "/"):
                return path[len(prefix):]
        return path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = self._path(request)
        if self.api == "opticodds" and path.startswith("/stream/odds/"):
            sport = path.rsplit("/", 1)[1]
            events = self._odds.setdefault(sport, deque())
            return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                  stream=_RecordedEvents(events, self._sequencer, self._replayed))
        query = [[k, v] for k, v in request.url.params.multi_items()]
        answers = self._answers.get(rest_key(self.api, request.method, path, query))
        if not answers:
            self._unanswered[f"{self.api} {request.method} {path}"] += 1
            await trio.lowlevel.checkpoint()
            raise httpx.ConnectError("backtest: the recording has no answer to this request",
                                     request=request)
        answer = answers.popleft()
        self._replayed[REST] += 1
        if answer.at - trio.current_time() <= REST_WAIT_CAP:
            await self._sequencer.at(answer.at, answer.seq)
        else:  # asked long before the recorded bot did: answered now
            await trio.lowlevel.checkpoint()
        self._sequencer.done(answer.seq)
        if answer.status is None:  # recorded without an answer: it fails the same way
            error = answer.error or "ConnectError"
            exc = httpx.ReadTimeout if "Timeout" in error else httpx.ConnectError
            raise exc(f"backtest: recorded {error}", request=request)
        return httpx.Response(answer.status, content=answer.body)


class _RecordedEvents(httpx.AsyncByteStream):
    """An SSE response body: the recorded events of one sport, each at its time, then silence
    (the feed's watchdog decides, as it would on a silent stream)."""

    def __init__(self, events: deque[tuple[float, int, bytes]], sequencer: Sequencer,
                 replayed: Counter[str]) -> None:
        self._events = events
        self._sequencer = sequencer
        self._replayed = replayed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        events = self._events
        while events:
            at, seq, _data = events[0]
            await self._sequencer.at(at, seq)
            if not events or events[0][1] != seq:  # another connection of the sport took it
                continue
            _at, _seq, data = events.popleft()
            self._sequencer.done(seq)
            self._replayed["odds"] += 1
            yield data
        await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


class RecordedMarkets:
    """The markets websocket's connections, from a recording: `connect` has the signature of
    `polybot.polymarket.wsconn.connect_websocket`."""

    def __init__(self, replay: Replay, sequencer: Sequencer, replayed: Counter[str]) -> None:
        self._sequencer = sequencer
        self._frames = deque(replay.markets)
        self._losses = deque(replay.losses)
        self._replayed = replayed

    async def connect(self, url: str, headers: Any = (), **_options: Any) -> _Connection:
        await trio.lowlevel.checkpoint()
        return _Connection(self)

    async def next_frame(self) -> str | bytes:
        frames, losses = self._frames, self._losses
        at = frames[0][0] if frames else math.inf
        if losses and losses[0] <= at:
            await trio.sleep_until(losses.popleft())
            raise ConnectionClosed(CloseReason(1006, "a continuity loss in the recording"))
        if not frames:
            await trio.sleep_forever()
        seq = frames[0][1]
        await self._sequencer.at(at, seq)
        _at, _seq, payload = frames.popleft()
        self._sequencer.done(seq)
        self._replayed["markets"] += 1
        return payload


class _Connection:
    """One replayed websocket connection (what `MarketsStream` uses of `WsConnection`)."""

    def __init__(self, source: RecordedMarkets) -> None:
        self._source = source
        self.closed: CloseReason | None = None

    async def __aenter__(self) -> _Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = CloseReason(1000)

    async def receive(self) -> str | bytes:
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        try:
            return await self._source.next_frame()
        except ConnectionClosed as exc:
            self.closed = exc.reason
            raise

    async def send(self, message: str | bytes) -> None:  # subscriptions: the recording has them
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = CloseReason(1000)


KILL_LEAD = control.POLL_SECONDS / 2  # before the recorded poll that saw a file
REQUEST_LEAD = 0.5  # before the recorded housekeeping second that took a request


def operator_actions(replay: Replay, data_dir: Path) -> list[tuple[float, Callable[[], object]]]:
    """The operator's recorded inputs as the same files and requests its CLI writes, each at a
    time just before the poll that saw it in the recording."""
    actions: list[tuple[float, Callable[[], object]]] = []
    kill = False
    for at, value in replay.engine:
        kind = value["kind"]
        if kind == ENGINE_OPERATOR_FILES:
            if value.get("kill") and not kill:
                reason = str(value.get("kill_reason") or "")
                actions.append((at - KILL_LEAD,
                                functools.partial(control.write_kill_file, data_dir, reason)))
            elif not value.get("kill") and kill:
                actions.append((at - KILL_LEAD, lambda: control.remove_kill_file(data_dir)))
            kill = bool(value.get("kill"))
            if value.get("resume"):
                actions.append((at - KILL_LEAD, lambda: control.write_resume_request(data_dir)))
        elif kind == ENGINE_FLATTEN:
            actions.append((at - REQUEST_LEAD,
                            lambda: operator_requests.write_request(data_dir, "flatten")))
        elif kind == ENGINE_CANCEL_ALL:
            actions.append((at - REQUEST_LEAD,
                            lambda: operator_requests.write_request(data_dir, "cancel-all")))
    return actions


async def _operate(actions: list[tuple[float, Callable[[], object]]],
                   replayed: Counter[str]) -> None:
    for at, action in actions:
        await trio.sleep_until(at)
        action()
        replayed[ENGINE] += 1


# --- settings -----------------------------------------------------------------------------------------


def replay_settings(header: dict[str, Any], overrides: dict[str, str], data_dir: Path) -> Settings:
    """The recording's settings (placeholders for its masked secrets), then `overrides`, then
    what a replay always sets. An override naming no setting is refused."""
    names = {v.name for v in VARIABLES}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise BacktestError(f"--set {unknown[0]}: no such setting (see `polybot check`)")
    forced = set(_FORCED) | {"DATA_DIR"}
    refused = sorted(set(overrides) & forced)
    if refused:
        raise BacktestError(f"--set {refused[0]}: a backtest sets this itself")
    env: dict[str, str] = {}
    for name, shown in header.get("settings", {}).items():
        if name not in names or shown == "":
            continue
        env[name] = _PLACEHOLDERS.get(name, "") if shown == "***" else shown
    env = {k: v for k, v in env.items() if v != ""}
    env.update(overrides)
    env.update(_FORCED)
    env["DATA_DIR"] = str(data_dir)
    return load_settings(env)


def check_recorded(replay: Replay, settings: Settings, overrides: dict[str, str]) -> None:
    """Refuse a `--set` that needs data the recording does not have: a sportsbook it never
    asked OpticOdds for, a league discovery never listed."""
    if "OPTICODDS_SPORTSBOOKS" in overrides and replay.sportsbooks:
        missing = [b for b in settings.opticodds_sportsbooks if b not in replay.sportsbooks]
        if missing:
            raise BacktestError(
                f"--set OPTICODDS_SPORTSBOOKS: {', '.join(missing)} not in the recording "
                f"(it has {', '.join(sorted(replay.sportsbooks))})")
    if "MARKET_LEAGUES" in overrides:
        missing = [lg for lg in settings.market_leagues if lg not in replay.leagues]
        if missing:
            have = ", ".join(sorted(replay.leagues)) or "none"
            raise BacktestError(f"--set MARKET_LEAGUES: {', '.join(missing)} not in the "
                                f"recording (it has {have})")


# --- the run ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def deterministic_scheduling(seed: int = SEED) -> Iterator[None]:
    """Trio's scheduler orders each batch of runnable tasks by creation and shuffles it from a
    fixed seed (what pytest-trio does under Hypothesis), instead of a coin flip from an unseeded
    generator: the same inputs run the tasks in the same order."""
    from trio._core import _run

    saved_flag, saved_state = _run._ALLOW_DETERMINISTIC_SCHEDULING, _run._r.getstate()
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(seed)
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = saved_flag  # type: ignore[misc]
        _run._r.setstate(saved_state)


REPLAY_GC_GEN0 = 100_000  # allocations between young collections during a replay (Python: 700)


@contextlib.contextmanager
def replay_gc(gen0: int = REPLAY_GC_GEN0) -> Iterator[None]:
    """The cycle collector's young generation collected every `gen0` net allocations instead
    of 700, for the replay only (the process's thresholds are restored after).

    A replay allocates like the live bot does over hours, in seconds: a parsed odds event alone
    is hundreds of dicts and `Odd`s. At Python's 700 the collector ran 128 young, 11 middle and
    one full collection in a 60 s, 100-market replay, ~0.13 s of its ~1.5 CPU seconds (gc
    callbacks' timing); at 100,000 it runs none there, and a long replay's garbage cycles are
    still collected, in fewer, larger passes. Nothing the bot decides depends on when cycles
    are collected."""
    import gc

    saved = gc.get_threshold()
    gc.set_threshold(gen0, *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@attrs.define
class Backtest:
    """What one replay did (`report()` is the `--json` output)."""

    replay: Replay
    settings: Settings
    overrides: dict[str, str]
    code: int = 0
    replayed: Counter[str] = attrs.Factory(Counter)
    unanswered: Counter[str] = attrs.Factory(Counter)
    result: dict[str, Any] = attrs.Factory(dict)
    page: HtmlReportData | None = None  # the HTML report's data, when asked for
    inspected: Any = None  # what `run(inspect=...)` read of the store

    def report(self) -> dict[str, Any]:
        r = self.replay
        streams = sorted(set(r.recorded) | set(self.replayed))
        return {
            "window": {"from": r.origin_wall.isoformat(),
                       "seconds": round(r.end - r.origin, 6)},
            "bot_version": r.header.get("bot_version"),
            "settings": dict(sorted(self.overrides.items())),
            **self.result,
            # engine: the operator's inputs re-made (ticks, continuity and the paper
            # reconciliation are the replayed bot's own)
            "records": {s: {"recorded": r.recorded[s], "replayed": self.replayed[s]}
                        for s in streams},
            "unanswered_requests": dict(sorted(self.unanswered.items())),
            "damaged": r.damaged,
            "stopped": r.stopped,
            "exit_code": self.code,
        }


def run(directory: Path, overrides: dict[str, str] | None = None, *,
        start: datetime | None = None, stop: datetime | None = None,
        html_data: HtmlData | None = None,
        inspect: Callable[[Path], Any] | None = None) -> Backtest:
    """Replay a recording through the whole bot; the orders, fills and ledger it ended with;
    with `html_data` (`report.html_data`) the HTML report's data of the replay's store; and
    `inspect(data_dir)` reads the replay's store before it is deleted (`bt.inspected`)."""
    overrides = dict(overrides or {})
    replay = load(directory, start=start, stop=stop)
    with tempfile.TemporaryDirectory(prefix="polybot-backtest-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = replay_settings(replay.header, overrides, data_dir)
        check_recorded(replay, settings, overrides)
        bt = Backtest(replay, settings, overrides)
        clock = trio.testing.MockClock(autojump_threshold=0)
        clock.jump(replay.origin)  # Trio time is the recording's
        steps = StepCounter()  # from the run's first step: it counts every task scheduled
        with deterministic_scheduling(), replay_gc():
            bt.code = trio.run(_replay, bt, data_dir, steps, clock=clock, instruments=[steps])
        bt.result = summarize(data_dir)
        if html_data is not None:  # from the temp store, before it goes
            bt.page = page_data(bt, directory, data_dir, html_data)
        if inspect is not None:
            bt.inspected = inspect(data_dir)
    return bt


async def _replay(bt: Backtest, data_dir: Path, steps: StepCounter) -> int:
    replay, settings = bt.replay, bt.settings
    due = [(seq, at) for at, seq, _frame in replay.markets]
    due += [(seq, at) for events in replay.odds.values() for at, seq, _event in events]
    due += [(a.seq, a.at) for answers in replay.rest.values() for a in answers]
    sequencer = Sequencer(due, steps)
    markets = RecordedMarkets(replay, sequencer, bt.replayed)
    odds = {sport: deque(events) for sport, events in replay.odds.items()}
    pm_urls = [settings.pm_base_url, settings.pm_gateway_url]
    edges = Edges(
        polymarket=RecordedRest("polymarket", pm_urls, replay, {}, sequencer, bt.replayed,
                                bt.unanswered),
        opticodds=RecordedRest("opticodds", [settings.opticodds_base_url], replay, odds,
                               sequencer, bt.replayed, bt.unanswered),
        websocket=markets.connect, rng=random.Random(SEED), store_in_thread=False,
        store_synchronous="OFF")
    clock = ReplayClock(replay.origin_wall, origin=replay.origin)
    actions = operator_actions(replay, data_dir)
    duration = replay.end - replay.origin
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_operate, actions, bt.replayed)
        code = await run_bot(settings, duration=duration, clock=clock, edges=edges)
        nursery.cancel_scope.cancel()
    return code


def page_data(bt: Backtest, directory: Path, data_dir: Path,
              html_data: HtmlData) -> HtmlReportData:
    """The report's page of a replay: the same data `report --html` draws from a DATA_DIR, here
    the replay's store, against the caps the replay ran with (the recording's settings with the
    `--set` overrides), and notes saying what was replayed and how."""
    r = bt.replay
    shown = dict(bt.settings.effective())  # a secret --set shows as ***
    sets = [f"{k}={shown.get(k, v)}" for k, v in sorted(bt.overrides.items())]
    cap_sets = [f"{k}={shown.get(k, v)}" for k, v in sorted(bt.overrides.items())
                if k in RISK_CAPS]
    caps_source = ("the replay's own settings: the recording's"
                   + (f", with --set {', '.join(cap_sets)}" if cap_sets else ""))
    notes = [f"A backtest of {directory}/: {r.end - r.origin:.0f} s of its feeds (from "
             f"{r.origin_wall.strftime('%Y-%m-%d %H:%M:%S')} UTC, recorded by polybot "
             f"{r.header.get('bot_version') or 'unknown'}) replayed through the whole bot in "
             f"paper mode, with the recording's settings"
             + (f" and --set {', '.join(sets)}" if sets else "") + f"; exit code {bt.code}."]
    if r.damaged:
        notes.append(f"STOPPED at damage: {r.damaged}")
    if r.stopped:
        notes.append(f"Stopped: {r.stopped}")
    unanswered = sum(bt.unanswered.values())
    if unanswered:
        notes.append(f"{unanswered} request(s) of the replayed bot had no answer in the recording "
                     "(the text or --json output lists them).")
    with closing(connect_readonly(db_path(data_dir))) as conn:
        data = html_data(conn, caps=risk_caps(bt.settings), caps_source=caps_source,
                         title=f"polybot backtest: {directory.resolve().name}")
    return attrs.evolve(data, notes=notes)


def summarize(data_dir: Path) -> dict[str, Any]:
    """Orders, fills and the final ledger from the replay's store (ids left out: they are
    random by design)."""
    with closing(connect_readonly(db_path(data_dir))) as conn:
        orders = [
            {k: r[k] for k in ("created_at", "market_slug", "intent", "price", "quantity", "tif",
                               "state", "cum_qty", "avg_px", "fair_q", "edge", "reason",
                               "reject_reason")}
            for r in conn.execute("SELECT * FROM orders ORDER BY created_at, rowid")]
        fills = [
            {k: r[k] for k in ("ts", "market_slug", "intent", "qty", "price", "fee", "is_taker",
                               "fair_q")}
            for r in conn.execute("SELECT * FROM fills ORDER BY id")]
        state = read_ledger_state(conn)
    ledger = Ledger.restore(state) if state is not None else Ledger()
    positions = {
        slug: {"net_qty": str(m.net_qty), "avg_price": str(m.avg_price),
               "realized_pnl": str(m.realized_pnl), "fees": str(m.fees),
               "settled_value": None if m.settled_value is None else str(m.settled_value)}
        for slug, m in sorted(ledger.markets.items())
        if m.net_qty != 0 or m.realized_pnl != 0 or m.fees != 0}
    return {
        "orders": orders,
        "fills": fills,
        "ledger": {"cash": str(ledger.cash), "equity": str(ledger.equity),
                   "realized_pnl": str(ledger.realized_pnl),
                   "unrealized_pnl": str(ledger.unrealized_pnl()),
                   "fees": str(ledger.fees_total), "pnl": str(ledger.pnl),
                   "positions": positions},
    }


# --- the command ------------------------------------------------------------------------------------


def parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BacktestError(f"--set {pair}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def render(report: dict[str, Any]) -> str:
    led = report["ledger"]
    lines = [f"replayed {report['window']['seconds']:.0f} s from {report['window']['from']}"
             f" (exit code {report['exit_code']})"]
    for stream, n in report["records"].items():
        if stream == ENGINE:
            lines.append(f"  {stream:8} {n['recorded']:>8} record(s): the replayed bot's own, "
                         f"but {n['replayed']} operator input(s) re-made")
        else:
            lines.append(f"  {stream:8} {n['replayed']:>8} of {n['recorded']} record(s) replayed")
    if report["unanswered_requests"]:
        lines.append("  unanswered requests: " + ", ".join(
            f"{k} x{n}" for k, n in report["unanswered_requests"].items()))
    if report["damaged"]:
        lines.append(f"  STOPPED at damage: {report['damaged']}")
    if report["stopped"]:
        lines.append(f"  stopped: {report['stopped']}")
    lines.append(f"orders: {len(report['orders'])}, fills: {len(report['fills'])}")
    for f in report["fills"]:
        lines.append(f"  {f['ts']} {f['market_slug']} {f['intent']} {f['qty']} @ {f['price']}"
                     f" fee {f['fee']}")
    # the text shows money to the cent and prices to 4 places, as `report` does; --json keeps
    # every digit the ledger holds
    lines.append(f"cash {_money(led['cash'])}  equity {_money(led['equity'])}  realized "
                 f"{_money(led['realized_pnl'])}  unrealized {_money(led['unrealized_pnl'])}  "
                 f"fees {_money(led['fees'])}")
    for slug, p in led["positions"].items():
        lines.append(f"  {slug}: {_money(p['net_qty'])} @ {_money(p['avg_price'], 4)} realized "
                     f"{_money(p['realized_pnl'])}")
    return "\n".join(lines)


def _money(text: str, places: int = 2) -> str:
    return fmt(Decimal(text), places)


def main(directory: Path, sets: list[str], *, start: str | None = None, stop: str | None = None,
         as_json: bool = False, out: Any = None, html: Path | None = None,
         html_data: HtmlData | None = None) -> int:
    """The command: the text (or `--json`) report on `out`; with `html` (and `html_data`, which
    builds its data: `report.html_data`), also the HTML report of the replay, written there."""
    import sys

    if html is not None and html_data is None:
        raise ValueError("backtest.main: html needs html_data (report.html_data)")
    out = out or sys.stdout
    # the replayed bot's warnings (an unanswered request, a reconnect) on stderr, like `run`'s;
    # a no-op where logging is configured already (a test)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = parse_sets(sets)
        if html is not None:  # said now, not after a long replay
            _check_writable(html)
        bt = run(directory, overrides, start=parse_when(start), stop=parse_when(stop),
                 html_data=html_data if html is not None else None)
    except (BacktestError, RecordingError) as exc:  # a format this polybot does not read, too
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    written = None
    if html is not None and bt.page is not None:
        try:
            html.write_text(render_html(bt.page), encoding="utf-8")
            written = f"backtest: wrote {html} (open it in a browser; it needs no network)"
        except OSError as exc:
            print(f"backtest: cannot write {html}: {exc.strerror}", file=sys.stderr)
    report = bt.report()
    if as_json:
        out.write(json.dumps(report, sort_keys=True, indent=2, default=_json_default) + "\n")
    else:
        out.write(render(report) + "\n")
    if written is not None:  # stdout stays the JSON alone with --json
        print(written, file=sys.stderr if as_json else out)
    if bt.replay.damaged or (html is not None and written is None):
        return 1
    return bt.code


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise BacktestError(f"--html {path}: a folder, not a file")
    if not path.parent.is_dir():
        raise BacktestError(f"--html {path}: no folder {path.parent}")


def parse_when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BacktestError(f"{text!r}: not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal | datetime):
        return str(value)
    raise TypeError(type(value).__name__)

