"""The supervisor on Trio's autojump clock: restarts, backoff, budget, watchdog, fatal exits."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
import trio

from polybot.errors import EXIT_CREDENTIALS, EXIT_OK, EXIT_RESTART_BUDGET, FatalCredentialsError
from polybot.metrics import Metrics
from polybot.notify import Alert, Level
from polybot.supervisor import ChildSpec, Phase, Progress, Supervisor


class Boom(Exception):
    pass


async def wait_until(condition: Callable[[], bool], timeout: float = 10_000) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.05)


class Recorder:
    """A child that records its life: starts, cancellations, and optional scripted behaviour."""

    def __init__(self, name: str, script: Callable[[int, Progress], object] | None = None) -> None:
        self.name = name
        self.starts: list[float] = []
        self.cancelled = 0
        self.script = script

    async def __call__(self, progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.starts.append(trio.current_time())
        task_status.started()
        try:
            if self.script is not None:
                await self.script(len(self.starts), progress)
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise


def crash_after(seconds: float) -> Callable[[int, Progress], object]:
    async def script(_n: int, _progress: Progress) -> None:
        await trio.sleep(seconds)
        raise Boom(f"crashed after {seconds}s")

    return script


def supervisor(*children: ChildSpec, **kwargs) -> Supervisor:
    kwargs.setdefault("jitter", 0.0)
    kwargs.setdefault("rng", random.Random(1))
    return Supervisor(children, **kwargs)


async def test_failing_child_cancels_and_restarts_the_whole_group(autojump_clock):
    flaky = Recorder("flaky", lambda n, p: crash_after(5)(n, p) if n == 1 else trio.sleep(0))
    steady = Recorder("steady")
    other = Recorder("other")
    sup = supervisor(
        ChildSpec("flaky", flaky), ChildSpec("steady", steady), ChildSpec("other", other)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: len(steady.starts) == 2 and sup.state().phase is Phase.RUNNING)
        assert steady.cancelled == 1 and other.cancelled == 1  # cancellation reached the siblings
        assert len(flaky.starts) == len(other.starts) == 2
        state = sup.state()
        assert state.restarts == 1
        assert state.recent_errors == ("flaky: Boom: crashed after 5s",)
        assert [(c.name, c.crashes) for c in state.children] == [
            ("flaky", 1),
            ("steady", 0),
            ("other", 0),
        ]
        sup.stop()
    assert steady.cancelled == other.cancelled == 2
    assert flaky.cancelled == 1  # its first run crashed rather than being cancelled


async def test_run_returns_zero_after_stop_and_every_child_is_cancelled(autojump_clock):
    children = [Recorder(f"c{i}") for i in range(3)]
    sup = supervisor(*(ChildSpec(c.name, c) for c in children))
    async with trio.open_nursery() as nursery:
        result: list[int] = []

        async def run() -> None:
            result.append(await sup.run())

        nursery.start_soon(run)
        await wait_until(lambda: sup.state().phase is Phase.RUNNING)
        sup.stop()
    assert result == [EXIT_OK]
    assert sup.state().phase is Phase.STOPPED
    assert [c.cancelled for c in children] == [1, 1, 1]


async def test_outer_cancellation_reaches_every_child_and_propagates(autojump_clock):
    children = [Recorder(f"c{i}") for i in range(3)]
    sup = supervisor(*(ChildSpec(c.name, c) for c in children))
    returned: list[int] = []
    with trio.move_on_after(100) as scope:
        returned.append(await sup.run())
    assert scope.cancelled_caught
    assert returned == []  # cancellation is not mistaken for a crash or a clean exit
    assert [c.cancelled for c in children] == [1, 1, 1]
    assert sup.state().restarts == 0


def test_backoff_grows_exponentially_and_caps_at_thirty_seconds():
    sup = supervisor(ChildSpec("a", Recorder("a")))
    assert [sup.backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_jitter_stays_below_the_cap():
    sup = Supervisor([ChildSpec("a", Recorder("a"))], jitter=0.25, rng=random.Random(7))
    delays = [sup.backoff_delay(20) for _ in range(200)]
    assert all(22.5 <= d <= 30.0 for d in delays)
    assert len(set(delays)) > 100  # actually jittered


async def test_restart_delays_grow_then_reset_after_a_stable_period(autojump_clock):
    # Five immediate crashes (delays 1, 2, 4, 8, 16), then a run longer than stable_seconds
    # whose crash restarts after the initial delay again.
    async def script(n: int, _progress: Progress) -> None:
        await trio.sleep(100 if n == 6 else 0)
        if n <= 6:
            raise Boom(f"crash {n}")

    child = Recorder("c", script)
    sup = supervisor(ChildSpec("c", child), max_restarts=100, stable_seconds=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: len(child.starts) == 7)
        sup.stop()
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(child.starts)]
    assert gaps == [1, 2, 4, 8, 16, 100 + 1]


async def test_state_reports_restarting_with_reason_attempt_and_next_start(autojump_clock):
    child = Recorder("feed", crash_after(1))
    sup = supervisor(ChildSpec("feed", child), backoff_initial=10, max_restarts=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: sup.state().phase is Phase.RESTARTING)
        await trio.sleep(4)
        state = sup.state()
        assert state.reason == "feed: Boom: crashed after 1s"
        assert state.attempt == 1
        assert state.next_start_in == pytest.approx(6, abs=0.1)
        assert state.restarts == 1
        assert state.to_json()["phase"] == "restarting"
        sup.stop()


async def test_crash_budget_exhausted_exits_non_zero(autojump_clock):
    child = Recorder("c", crash_after(1))
    alerts: list[Alert] = []
    sup = supervisor(ChildSpec("c", child), max_restarts=3, window_seconds=300, alert=alerts.append)
    assert await sup.run() == EXIT_RESTART_BUDGET
    assert len(child.starts) == 4  # three restarts allowed, the fourth crash escalates
    assert sup.state().phase is Phase.FAILED
    assert alerts[-1].level is Level.CRITICAL and "crashes within 300s" in alerts[-1].text
    assert [a.level for a in alerts[:-1]] == [Level.ERROR] * 3


async def test_crashes_spread_beyond_the_window_do_not_exhaust_the_budget(autojump_clock):
    child = Recorder("c", crash_after(50))
    sup = supervisor(ChildSpec("c", child), max_restarts=1, window_seconds=40)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: len(child.starts) == 6)
        assert sup.state().phase is not Phase.FAILED
        sup.stop()


async def test_fatal_credentials_error_exits_78_without_restarting(autojump_clock):
    async def script(_n: int, _progress: Progress) -> None:
        await trio.sleep(2)
        raise FatalCredentialsError("POST /v1/orders: 401 unauthorized")

    child = Recorder("exchange", script)
    sibling = Recorder("other")
    alerts: list[Alert] = []
    metrics = Metrics.create()
    sup = supervisor(
        ChildSpec("exchange", child),
        ChildSpec("other", sibling),
        alert=alerts.append,
        metrics=metrics,
    )
    assert await sup.run() == EXIT_CREDENTIALS == 78
    assert len(child.starts) == 1 and sibling.cancelled == 1
    assert [a.level for a in alerts] == [Level.CRITICAL]
    assert (
        alerts[0].text
        == "Fatal, not restarting: exchange: FatalCredentialsError: POST /v1/orders: 401 unauthorized"
    )
    assert metrics.restarts._value.get() == 0


async def test_fatal_error_inside_a_childs_own_nursery_is_still_fatal(autojump_clock):
    async def child(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep(1)
            raise FatalCredentialsError("403")

    assert await supervisor(ChildSpec("x", child)).run() == EXIT_CREDENTIALS


async def test_hung_child_trips_the_watchdog_and_restarts_the_group(autojump_clock):
    async def script(_n: int, progress: Progress) -> None:
        for _ in range(5):
            progress.beat()
            await trio.sleep(1)
        await trio.sleep_forever()  # hung: alive but no progress

    hung = Recorder("book", script)
    bystander = Recorder("health")
    sup = supervisor(
        ChildSpec("book", hung, progress_deadline=10),
        ChildSpec("health", bystander),
        max_restarts=100,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: sup.state().restarts == 1)
        crash_at = trio.current_time()
        assert 14 < crash_at - hung.starts[0] < 16.5  # last beat at 4s + 10s deadline (+ poll)
        assert sup.state().reason.startswith("book: ChildHung: book made no progress for")
        assert bystander.cancelled == 1
        sup.stop()


async def test_hung_child_is_visible_in_state_before_the_watchdog_fires(autojump_clock):
    async def script(_n: int, progress: Progress) -> None:
        progress.beat()
        await trio.sleep_forever()

    child = Recorder("odds", script)
    sup = supervisor(ChildSpec("odds", child, progress_deadline=10), watchdog_interval=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(10.5)  # past the deadline, before the next watchdog poll at 15s
        assert sup.state().hung == ("odds",)
        sup.stop()


async def test_reconnecting_child_reporting_attempts_is_not_hung(autojump_clock):
    async def script(_n: int, progress: Progress) -> None:
        attempt = 0
        while True:  # the exchange is down: every attempt fails, each one is reported
            attempt += 1
            progress.reconnecting(attempt, ConnectionRefusedError("connection refused"))
            await trio.sleep(min(2.0**attempt, 8.0))

    stream = Recorder("markets", script)
    sup = supervisor(ChildSpec("markets", stream, progress_deadline=10), max_restarts=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(600)
        state = sup.state()
        assert state.restarts == 0 and state.phase is Phase.RUNNING and state.hung == ()
        assert len(stream.starts) == 1
        (degraded,) = state.degraded
        assert degraded.startswith("markets: reconnecting, attempt ")
        assert "ConnectionRefusedError: connection refused" in degraded
        sup.stop()


async def test_child_silent_during_start_up_trips_the_watchdog(autojump_clock):
    async def never_ready(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep_forever()

    sup = supervisor(ChildSpec("stuck", never_ready, progress_deadline=5), max_restarts=0)
    assert await sup.run() == EXIT_RESTART_BUDGET
    assert "stuck made no progress" in sup.state().reason


async def test_child_returning_counts_as_a_crash(autojump_clock):
    async def quitter(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(1)

    sup = supervisor(ChildSpec("quitter", quitter), max_restarts=0)
    assert await sup.run() == EXIT_RESTART_BUDGET
    assert sup.state().reason == "quitter: ChildExited: quitter returned unexpectedly"


async def test_keepalive_keeps_being_called_during_backoff(autojump_clock):
    pings: list[float] = []
    child = Recorder("c", crash_after(1))
    sup = supervisor(
        ChildSpec("c", child),
        backoff_initial=30,
        keepalive=lambda: pings.append(trio.current_time()),
        keepalive_interval=5,
        max_restarts=100,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: len(child.starts) == 2)
        sup.stop()
    crash, restart = child.starts[0] + 1, child.starts[1]
    assert restart - crash == pytest.approx(30)
    during_backoff = [t for t in pings if crash < t < restart]
    assert len(during_backoff) >= 5
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) <= 5.01


async def test_keepalive_stops_when_group_teardown_hangs(autojump_clock):
    release = trio.Event()

    async def stubborn(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await release.wait()  # cleanup that never finishes

    pings: list[float] = []
    sup = supervisor(
        ChildSpec("stubborn", stubborn),
        ChildSpec("crasher", Recorder("crasher", crash_after(10))),
        keepalive=lambda: pings.append(trio.current_time()),
        keepalive_interval=1,
        teardown_timeout=30,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(200)
        try:
            assert 38 <= pings[-1] <= 42  # crash at 10s + 30s teardown allowance: then silence
        finally:
            release.set()  # a failing assert must not leave the test hanging in teardown
        await wait_until(lambda: sup.state().phase is Phase.RUNNING)
        await trio.sleep(5)
        assert pings[-1] >= trio.current_time() - 1.01  # alive again after the restart
        sup.stop()


async def test_restart_and_up_metrics_track_the_group(autojump_clock):
    metrics = Metrics.create()
    child = Recorder("c", lambda n, p: crash_after(3)(n, p) if n == 1 else trio.sleep(0))
    sup = supervisor(ChildSpec("c", child), metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2)
        assert metrics.up._value.get() == 1
        await trio.sleep(1.5)
        assert metrics.up._value.get() == 0  # in backoff
        await wait_until(lambda: sup.state().phase is Phase.RUNNING)
        assert metrics.restarts._value.get() == 1
        assert metrics.up._value.get() == 1
        sup.stop()
    assert metrics.up._value.get() == 0


def test_child_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("a", Recorder("a")), ChildSpec("a", Recorder("a"))])


async def test_crash_while_a_sibling_is_still_starting_restarts_cleanly(autojump_clock):
    slow_starts: list[float] = []
    slow_cancelled = 0

    async def slow_start(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        nonlocal slow_cancelled
        slow_starts.append(trio.current_time())
        try:
            await trio.sleep(10)  # still connecting when its sibling crashes
        except trio.Cancelled:
            slow_cancelled += 1
            raise
        task_status.started()
        await trio.sleep_forever()

    early = Recorder("early", lambda n, p: crash_after(2)(n, p) if n == 1 else trio.sleep(0))
    sup = supervisor(ChildSpec("early", early), ChildSpec("slow", slow_start))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: sup.state().phase is Phase.RUNNING)
        assert slow_cancelled == 1 and len(slow_starts) == 2
        assert sup.state().restarts == 1
        assert sup.state().recent_errors == ("early: Boom: crashed after 2s",)
        sup.stop()


async def test_child_failing_before_it_is_started_is_a_named_crash(autojump_clock):
    attempts = 0

    async def connect(progress: Progress, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("address in use")
        task_status.started()
        await trio.sleep_forever()

    sup = supervisor(ChildSpec("health", connect))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: sup.state().phase is Phase.RUNNING)
        assert sup.state().recent_errors == ("health: OSError: address in use",)
        assert attempts == 2
        sup.stop()


async def test_stop_during_backoff_returns_zero_at_once(autojump_clock):
    child = Recorder("c", crash_after(1))
    sup = supervisor(ChildSpec("c", child), backoff_initial=30)
    result: list[int] = []

    async def run() -> None:
        result.append(await sup.run())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await wait_until(lambda: sup.state().phase is Phase.RESTARTING)
        stopped_at = trio.current_time()
        sup.stop()
    assert result == [EXIT_OK]
    assert trio.current_time() - stopped_at < 0.1
    assert len(child.starts) == 1


async def test_progress_reporter_is_stable_across_restarts_and_reset_at_each_start(autojump_clock):
    async def script(n: int, progress: Progress) -> None:
        progress.reconnecting(n, "refused")
        if n == 1:
            await trio.sleep(1)
            raise Boom("first run dies")

    child = Recorder("feed", script)
    sup = supervisor(ChildSpec("feed", child, progress_deadline=10))
    beat = sup.progress("feed").beat  # what a component built outside the group would hold
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_until(lambda: len(child.starts) == 2)
        await trio.sleep(0)
        assert sup.progress("feed").attempts == 2  # reset, then reported afresh by the new run
        for _ in range(30):  # only the outside holder beats from now on
            beat()
            await trio.sleep(1)
        assert sup.state().restarts == 1 and sup.state().hung == ()
        sup.stop()
