"""Run the bot's long-lived tasks as one group: wholly working or visibly restarting.

Design
------
The supervisor owns a declared list of `ChildSpec`s and runs them in ONE nursery (the "group"),
starting each with ``nursery.start()`` in order, so a child is only considered up once it called
``task_status.started()`` and the next child can rely on it. When any child raises, Trio cancels
the whole group; the supervisor logs every error with its traceback, alerts, sleeps a jittered
exponential backoff (capped, reset after the group ran for a stable period) and starts a fresh
group. Nothing is ever half-restarted: connections and books live inside the group and are
rebuilt; state that must survive (ledger, store, halt state, the notifier) lives outside it and
belongs to the caller.

Liveness, not just exceptions. Every child gets a `Progress` reporter. A child that declares a
``progress_deadline`` must call ``progress.beat()`` (or ``reconnecting()``/``degraded()``) at
least that often; the group's watchdog raises `ChildHung` when one is silent past its deadline,
which restarts the group like any crash. A stream that cannot connect is *not* hung: each
reconnect attempt is reported and counts as progress, and its reason shows as "degraded" on
/health. The deadline also covers a child's start-up.

Escalation. More than ``max_restarts`` crashes within ``window_seconds`` → `run()` returns
`EXIT_RESTART_BUDGET` (non-zero) so systemd/Docker restart the process. A `FatalError` (e.g.
`FatalCredentialsError`) returns its ``exit_code`` (78) at once, after an alert, without restart.
`stop()` cancels the group (children do their shielded cleanup in ``finally``) and `run()`
returns 0.

Keepalive. Outside the group, the supervisor calls the injected ``keepalive()`` (systemd's
``WATCHDOG=1``) every ``keepalive_interval`` seconds while it is not hung — including during the
backoff between groups. It stops calling once a child has been silent for twice its deadline
(the watchdog should have acted long before) or a group teardown takes longer than
``teardown_timeout``: then systemd's own watchdog kills and restarts the process.

Wiring (the composition root)
-----------------------------
::

    metrics = Metrics.create()
    notifier = Notifier(sinks, metrics=metrics)          # DiscordWebhook / TelegramBot
    sd = SystemdNotifier.from_env()
    sup = Supervisor(
        [ChildSpec("health", partial(serve_health, app, host, port)),
         ChildSpec("markets", partial(run_markets_feed, ...), progress_deadline=60), ...],
        max_restarts=s.supervisor_max_restarts, window_seconds=s.supervisor_window_seconds,
        alert=notifier.send_nowait, keepalive=sd.watchdog,
        keepalive_interval=watchdog_interval(), status=sd.status, metrics=metrics)
    async with trio.open_nursery() as root:
        await root.start(notifier.run)      # outside the group: it reports the group's crashes
        root.start_soon(watch_signals, sup.stop)
        sd.ready()                          # once the supervisor runs, not when /ready is 200
        code = await sup.run()
        sd.stopping()
        await notifier.flush(timeout=5)
        root.cancel_scope.cancel()
    sys.exit(code)

Traps
-----
* Trio nurseries raise exception *groups*; a group made only of `trio.Cancelled` is an outer
  cancellation and must propagate untouched, never be mistaken for a crash.
* A child that returns while the group runs is a bug (every child is meant to run until
  cancelled); it counts as a crash (`ChildExited`).
* All times are Trio's clock (``trio.current_time()``), so tests run on the autojump clock;
  `Progress.beat()` must therefore be called from inside Trio.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from polybot.errors import EXIT_OK, EXIT_RESTART_BUDGET, FatalError
from polybot.metrics import Metrics
from polybot.notify import Alert, Level

log = logging.getLogger(__name__)


class ChildFn(Protocol):
    """``async def child(progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None``.

    Bind other arguments with ``functools.partial``. Call ``task_status.started()`` once set up
    (do not wait for a remote service to be reachable: report attempts through `progress`), then
    run until cancelled.
    """

    def __call__(self, progress: Progress, *, task_status: Any = ...) -> Awaitable[None]: ...


@attrs.frozen
class ChildSpec:
    """One supervised child.

    ``progress_deadline``: seconds of silence after which the child counts as hung; None exempts
    it from the watchdog (e.g. the health server, which only waits for requests).
    """

    name: str
    run: ChildFn
    progress_deadline: float | None = attrs.field(default=None)

    @progress_deadline.validator
    def _check_deadline(self, _attribute: Any, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError(f"progress_deadline of {self.name!r} must be positive")


class ChildHung(Exception):
    """A child with a progress deadline was silent past it."""

    def __init__(self, name: str, silent_for: float, deadline: float) -> None:
        super().__init__(f"{name} made no progress for {silent_for:.1f}s (deadline {deadline:g}s)")
        self.name = name


class ChildExited(Exception):
    """A child returned while the group was meant to run."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} returned unexpectedly")
        self.name = name


class Progress:
    """A child's liveness reporter; cheap enough to call on every frame.

    One object per child for the supervisor's lifetime (reset at every group start), so a bound
    ``progress.beat`` can be handed to a component built outside the group.

    * ``beat()``: the child did useful work (a frame, a loop iteration, a request served).
    * ``reconnecting(attempt, error)``: a reconnect attempt is progress too; it also marks the
      child degraded ("reconnecting, attempt 3: ConnectError ...") until ``recovered()``.
    * ``degraded(reason)`` / ``recovered()``: a dependency is down / back; both count as progress.
    """

    __slots__ = ("_degraded", "_last", "attempts", "deadline", "name", "started")

    def __init__(self, name: str, deadline: float | None) -> None:
        self.name = name
        self.deadline = deadline
        self.started = False
        self.attempts = 0
        self._last: float | None = None
        self._degraded: str | None = None

    def beat(self) -> None:
        self._last = trio.current_time()

    def _reset(self) -> None:
        # A new group: the child starts from scratch (and must report its condition afresh).
        self.started = False
        self.attempts = 0
        self._last = None
        self._degraded = None

    def reconnecting(self, attempt: int, error: BaseException | str | None = None) -> None:
        self.attempts = attempt
        what = error if isinstance(error, str) or error is None else _describe(error)
        self.degraded(f"reconnecting, attempt {attempt}" + (f": {what}" if what else ""))

    def degraded(self, reason: str) -> None:
        self._degraded = reason
        self.beat()

    def recovered(self) -> None:
        self._degraded = None
        self.attempts = 0
        self.beat()

    @property
    def degraded_reason(self) -> str | None:
        return self._degraded

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last progress, None before the child's start began."""
        return None if self._last is None else now - self._last


class Phase(enum.Enum):
    STARTING = "starting"  # children being started (first time or after a backoff)
    RUNNING = "running"  # every child started
    RESTARTING = "restarting"  # group torn down after a crash, waiting out the backoff
    STOPPING = "stopping"  # stop() requested, group tearing down
    STOPPED = "stopped"  # run() returned 0
    FAILED = "failed"  # run() returned non-zero


@attrs.frozen
class ChildState:
    name: str
    started: bool
    progress_deadline: float | None
    last_progress_age: float | None  # seconds; None when the child has not begun starting
    hung: bool  # silent past its deadline (the watchdog is about to, or did, fail the group)
    degraded: str | None
    reconnect_attempts: int
    crashes: int = 0  # group restarts (or the exit) this child caused


@attrs.frozen
class SupervisorState:
    """A snapshot for /health and /status; plain data."""

    phase: Phase
    reason: str | None  # why restarting / failed (the crash that caused it)
    attempt: int  # consecutive crashes since the last stable run (the backoff exponent)
    next_start_in: float | None  # seconds until the group starts again (RESTARTING only)
    restarts: int  # group restarts since the process started
    uptime: float | None  # seconds since the current group finished starting
    children: tuple[ChildState, ...]
    recent_errors: tuple[str, ...]  # newest last

    @property
    def hung(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.children if c.hung)

    @property
    def degraded(self) -> tuple[str, ...]:
        return tuple(f"{c.name}: {c.degraded}" for c in self.children if c.degraded)

    def to_json(self) -> dict[str, Any]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {
            "phase": self.phase.value,
            "reason": self.reason,
            "attempt": self.attempt,
            "next_start_in": rounded(self.next_start_in),
            "restarts": self.restarts,
            "uptime": rounded(self.uptime),
            "children": [
                {
                    "name": c.name,
                    "started": c.started,
                    "progress_deadline": c.progress_deadline,
                    "last_progress_age": rounded(c.last_progress_age),
                    "hung": c.hung,
                    "degraded": c.degraded,
                    "reconnect_attempts": c.reconnect_attempts,
                    "crashes": c.crashes,
                }
                for c in self.children
            ],
            "recent_errors": list(self.recent_errors),
        }


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _drop_cancelled(exc: BaseException) -> BaseException | None:
    """`exc` without its `trio.Cancelled` leaves (None if nothing else is left)."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest
    return None if isinstance(exc, trio.Cancelled) else exc


class Supervisor:
    """Runs `children` as one restartable group; see the module docstring.

    Parameters (times in seconds):
      max_restarts, window_seconds: crash budget; one crash more within the window → exit.
      backoff_initial, backoff_factor, backoff_max: delay before restart n is
        ``min(backoff_max, backoff_initial * backoff_factor**(n-1))`` scaled by a random factor
        in ``[1 - jitter, 1]`` (so the cap holds); n resets to 1 after a group ran
        ``stable_seconds``.
      alert: called (synchronously, must not block: e.g. ``Notifier.send_nowait``) on crash,
        fatal exit and budget exhaustion.
      keepalive, keepalive_interval: e.g. ``SystemdNotifier.watchdog``; see the module docstring.
      status: optional one-line status sink (e.g. ``SystemdNotifier.status``).
      metrics: ``up`` and ``restarts`` are maintained when given.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        max_restarts: int = 5,
        window_seconds: float = 300.0,
        backoff_initial: float = 1.0,
        backoff_factor: float = 2.0,
        backoff_max: float = 30.0,
        jitter: float = 0.25,
        stable_seconds: float = 60.0,
        watchdog_interval: float = 1.0,
        keepalive: Callable[[], object] | None = None,
        keepalive_interval: float = 5.0,
        teardown_timeout: float = 30.0,
        alert: Callable[[Alert], object] | None = None,
        status: Callable[[str], object] | None = None,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        names = [c.name for c in children]
        if not children:
            raise ValueError("a supervisor needs at least one child")
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        if max_restarts < 0 or window_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and window_seconds > 0")
        if not (0 <= jitter < 1) or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 <= jitter < 1 and 0 < backoff_initial <= backoff_max")
        self._children = tuple(children)
        self._max_restarts = max_restarts
        self._window = window_seconds
        self._backoff_initial = backoff_initial
        self._backoff_factor = backoff_factor
        self._backoff_max = backoff_max
        self._jitter = jitter
        self._stable = stable_seconds
        self._watchdog_interval = watchdog_interval
        self._keepalive = keepalive
        self._keepalive_interval = keepalive_interval
        self._teardown_timeout = teardown_timeout
        self._alert = alert
        self._status = status
        self._metrics = metrics
        self._rng = rng or random.Random()

        self._phase = Phase.STARTING
        self._reason: str | None = None
        self._attempt = 0
        self._restarts = 0
        self._crash_times: deque[float] = deque()
        self._next_start_at: float | None = None
        self._running_since: float | None = None
        self._teardown_since: float | None = None
        self._progress: dict[str, Progress] = {
            c.name: Progress(c.name, c.progress_deadline) for c in children
        }
        self._failures: list[tuple[str, BaseException]] = []
        self._crashes: dict[str, int] = {}
        self._recent_errors: deque[str] = deque(maxlen=20)
        self._stop_requested = False
        self._group_scope: trio.CancelScope | None = None
        self._backoff_scope: trio.CancelScope | None = None

    # --- public -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> int:
        """Supervise until stopped or escalated; returns the process exit code.

        0 after `stop()`, `EXIT_RESTART_BUDGET` when the crash budget is spent, a `FatalError`'s
        ``exit_code`` (78 for credentials). Reports started at once (before the first group is
        up), which is when systemd's READY=1 belongs.
        """
        async with trio.open_nursery() as outer:
            outer.start_soon(self._keepalive_loop)
            task_status.started()
            try:
                code = await self._supervise()
            finally:
                self._set_up(False)
                if self._phase not in (Phase.STOPPED, Phase.FAILED):
                    self._phase = Phase.STOPPED  # cancelled from outside
                outer.cancel_scope.cancel()
        return code

    def progress(self, name: str) -> Progress:
        """The child's reporter; the same object across group restarts, so a component built
        outside the group can be handed ``sup.progress("markets").beat`` once."""
        return self._progress[name]

    def stop(self) -> None:
        """Cancel the group (children clean up in ``finally``); `run()` then returns 0."""
        if self._stop_requested:
            return
        self._stop_requested = True
        if self._phase in (Phase.STARTING, Phase.RUNNING):
            self._phase = Phase.STOPPING
            self._teardown_since = trio.current_time()
        if self._group_scope is not None:
            self._group_scope.cancel()
        if self._backoff_scope is not None:
            self._backoff_scope.cancel()

    def state(self) -> SupervisorState:
        now = trio.current_time()
        children = []
        for spec in self._children:
            p = self._progress[spec.name]
            age = p.silent_for(now)
            hung = (
                self._phase in (Phase.STARTING, Phase.RUNNING)
                and p.deadline is not None
                and age is not None
                and age > p.deadline
            )
            children.append(
                ChildState(
                    name=spec.name,
                    started=p.started,
                    progress_deadline=p.deadline,
                    last_progress_age=age,
                    hung=hung,
                    degraded=p.degraded_reason,
                    reconnect_attempts=p.attempts,
                    crashes=self._crashes.get(spec.name, 0),
                )
            )
        next_in = None
        if self._phase is Phase.RESTARTING and self._next_start_at is not None:
            next_in = max(0.0, self._next_start_at - now)
        return SupervisorState(
            phase=self._phase,
            reason=self._reason,
            attempt=self._attempt,
            next_start_in=next_in,
            restarts=self._restarts,
            uptime=None if self._running_since is None else now - self._running_since,
            children=tuple(children),
            recent_errors=tuple(self._recent_errors),
        )

    # --- the loop -----------------------------------------------------------------------------

    async def _supervise(self) -> int:
        while True:
            if self._stop_requested:
                return self._finish(Phase.STOPPED, EXIT_OK)
            ran_for, failures = await self._run_group()
            if self._stop_requested:
                for name, exc in failures:
                    log.error(
                        "child %s failed while stopping: %s", name, _describe(exc), exc_info=exc
                    )
                return self._finish(Phase.STOPPED, EXIT_OK)
            code = self._on_crash(ran_for, failures)
            if code is not None:
                return code
            await self._backoff()

    def _on_crash(
        self, ran_for: float | None, failures: list[tuple[str, BaseException]]
    ) -> int | None:
        """Log and alert a crash; an exit code if it escalates, else None (restart)."""
        now = trio.current_time()
        for name, exc in failures:
            log.error("supervised child %s crashed: %s", name, _describe(exc), exc_info=exc)
        first_name, first_exc = failures[0]
        reason = f"{first_name}: {_describe(first_exc)}"
        self._reason = reason
        self._recent_errors.append(reason)
        for name in {name for name, _ in failures}:
            self._crashes[name] = self._crashes.get(name, 0) + 1

        fatal = next(
            (
                (name, leaf)
                for name, exc in failures
                for leaf in _leaves(exc)
                if isinstance(leaf, FatalError)
            ),
            None,
        )
        if fatal is not None:
            code = fatal[1].exit_code
            reason = self._reason = f"{fatal[0]}: {_describe(fatal[1])}"
            log.critical("fatal error, exiting with code %d without restart: %s", code, reason)
            self._send(
                Level.CRITICAL, f"polybot exiting (code {code})", f"Fatal, not restarting: {reason}"
            )
            return self._finish(Phase.FAILED, code)

        while self._crash_times and self._crash_times[0] <= now - self._window:
            self._crash_times.popleft()
        self._crash_times.append(now)
        if len(self._crash_times) > self._max_restarts:
            text = (
                f"{len(self._crash_times)} crashes within {self._window:g}s "
                f"(budget {self._max_restarts}); last: {reason}"
            )
            log.critical(
                "restart budget exhausted, exiting with code %d: %s", EXIT_RESTART_BUDGET, text
            )
            self._send(Level.CRITICAL, f"polybot exiting (code {EXIT_RESTART_BUDGET})", text)
            return self._finish(Phase.FAILED, EXIT_RESTART_BUDGET)

        if ran_for is not None and ran_for >= self._stable:
            self._attempt = 0  # the group was healthy for a while: this is a fresh incident
        self._attempt += 1
        delay = self.backoff_delay(self._attempt)
        self._phase = Phase.RESTARTING
        self._next_start_at = now + delay
        self._restarts += 1
        if self._metrics is not None:
            self._metrics.restarts.inc()
        log.warning("restarting the group in %.1fs (attempt %d)", delay, self._attempt)
        self._send(
            Level.ERROR,
            "polybot restarting",
            f"{reason}\nRestart {self._restarts} (attempt {self._attempt}) in {delay:.1f}s.",
            key="supervisor.restart",
        )
        self._set_status(f"restarting in {delay:.0f}s after {reason}")
        return None

    def backoff_delay(self, attempt: int) -> float:
        """The sleep before restart `attempt` (1-based), jittered downwards so the cap holds."""
        base = min(self._backoff_max, self._backoff_initial * self._backoff_factor ** (attempt - 1))
        return base * (1.0 - self._jitter * self._rng.random())

    async def _backoff(self) -> None:
        assert self._next_start_at is not None
        with trio.CancelScope() as scope:
            self._backoff_scope = scope
            if self._stop_requested:
                scope.cancel()
            await trio.sleep_until(self._next_start_at)
        self._backoff_scope = None
        self._next_start_at = None

    async def _run_group(self) -> tuple[float | None, list[tuple[str, BaseException]]]:
        """Run one group until it fails or is stopped: (seconds it ran fully started, failures)."""
        self._phase = Phase.STARTING
        self._set_status("starting")
        for progress in self._progress.values():
            progress._reset()
        self._failures = []
        self._running_since = None
        self._teardown_since = None
        group_error: BaseException | None = None
        with trio.CancelScope() as scope:
            self._group_scope = scope
            if self._stop_requested:
                scope.cancel()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watchdog)
                    for spec in self._children:
                        await nursery.start(self._run_child, spec)
                    self._phase = Phase.RUNNING
                    self._running_since = trio.current_time()
                    self._reason = None
                    self._set_up(True)
                    self._set_status("running")
                    log.info(
                        "supervised group running: %s", ", ".join(c.name for c in self._children)
                    )
            except BaseException as exc:
                rest = _drop_cancelled(exc)
                if rest is None or any(not isinstance(e, Exception) for e in _leaves(rest)):
                    raise  # outer cancellation, KeyboardInterrupt, SystemExit: not ours to handle
                group_error = rest
        self._group_scope = None
        self._teardown_since = None
        self._set_up(False)
        ran_for = None
        if self._running_since is not None:
            ran_for = trio.current_time() - self._running_since
        self._running_since = None
        failures = list(self._failures)
        if group_error is not None:
            # Errors not raised by a child body (e.g. the watchdog's ChildHung) have no name yet.
            known = {id(exc) for _, exc in failures}
            failures += [
                (e.name if isinstance(e, ChildHung) else "supervisor", e)
                for e in _leaves(group_error)
                if id(e) not in known
            ]
            failures = [(n, e) for n, e in failures if not isinstance(e, trio.Cancelled)]
        if not failures and not self._stop_requested:
            # Should be impossible (a group only ends by error or stop); never spin silently.
            failures = [("supervisor", RuntimeError("group ended without an error"))]
        return ran_for, failures

    async def _run_child(self, spec: ChildSpec, *, task_status: trio.TaskStatus[None]) -> None:
        progress = self._progress[spec.name]
        progress.beat()  # the deadline covers start-up too

        class _Status:
            # Marks the child started in our state when it reports readiness.
            def started(self, value: Any = None) -> None:
                progress.started = True
                progress.beat()
                task_status.started(value)

        try:
            await spec.run(progress, task_status=_Status())
        except Exception as exc:
            self._record_failure(spec.name, exc)
            raise
        if not self._stop_requested:
            exited = ChildExited(spec.name)
            self._record_failure(spec.name, exited)
            raise exited

    def _record_failure(self, name: str, exc: BaseException) -> None:
        if self._teardown_since is None:
            self._teardown_since = trio.current_time()
        for leaf in _leaves(exc):
            if not isinstance(leaf, trio.Cancelled):
                self._failures.append((name, leaf))

    async def _watchdog(self) -> None:
        while True:
            await trio.sleep(self._watchdog_interval)
            now = trio.current_time()
            for p in self._progress.values():
                silent = p.silent_for(now)
                if p.deadline is not None and silent is not None and silent > p.deadline:
                    if self._teardown_since is None:
                        self._teardown_since = now
                    raise ChildHung(p.name, silent, p.deadline)

    async def _keepalive_loop(self) -> None:
        if self._keepalive is None:
            return
        while True:
            if self._alive():
                try:
                    self._keepalive()
                except Exception:
                    log.exception("keepalive hook failed")
            await trio.sleep(self._keepalive_interval)

    def _alive(self) -> bool:
        """False once the process looks hung beyond what the supervisor itself can fix."""
        now = trio.current_time()
        if self._phase in (Phase.STOPPED, Phase.FAILED):
            return False
        if self._teardown_since is not None and now - self._teardown_since > self._teardown_timeout:
            return False
        if self._phase in (Phase.STARTING, Phase.RUNNING):
            for p in self._progress.values():
                silent = p.silent_for(now)
                if p.deadline is not None and silent is not None and silent > 2 * p.deadline:
                    return False
        return True

    # --- helpers ------------------------------------------------------------------------------

    def _finish(self, phase: Phase, code: int) -> int:
        self._phase = phase
        self._next_start_at = None
        self._set_status("stopped" if code == EXIT_OK else f"exiting with code {code}")
        return code

    def _set_up(self, up: bool) -> None:
        if self._metrics is not None:
            self._metrics.up.set(1 if up else 0)

    def _send(self, level: Level, title: str, text: str, key: str | None = None) -> None:
        if self._alert is None:
            return
        try:
            self._alert(Alert(level=level, title=title, text=text, key=key))
        except Exception:
            log.exception("alert hook failed")

    def _set_status(self, text: str) -> None:
        if self._status is None:
            return
        try:
            self._status(text)
        except Exception:
            log.exception("status hook failed")
