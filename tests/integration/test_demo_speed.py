"""An accelerated demo (`run --sim --speed N`) judges a hung child in real seconds.

The demo runs Trio on `MockClock(rate=speed)`: at 60x a real second is a simulated minute, the
children's progress deadline. A busy machine that stalls the process for a couple of real seconds
(seen with three demos and a test run side by side) made every child "hung": the group restarted
and the demo exited 1. The demo passes its speed as `run_bot(hang_scale=...)`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import trio
import trio.testing

from polybot.clock import LIVE_CLOCK, ReplayClock
from polybot.config import load_settings
from polybot.demo import demo_env
from polybot.errors import EXIT_OK
from polybot.runtime import run_bot
from polybot.sim.harness import running_sim
from polybot.sim.scenario import demo_world

SPEED = 60.0
STALL_SECONDS = 2.5  # real: 150 simulated seconds, past every child's 60 s deadline unscaled


def run_stalled_demo(data_dir: Path, hang_scale: float) -> tuple[int, dict[str, object]]:
    """A paper demo at SPEED whose process stops for STALL_SECONDS of real time once it runs."""
    finished: dict[str, object] = {}

    async def main() -> int:
        clock = ReplayClock(LIVE_CLOCK.now(), origin=trio.current_time())
        async with running_sim(seed=3, scenario=demo_world(3), opticodds=True,
                               clock=clock.now) as sim:
            env = demo_env(sim, data_dir=data_dir, live=False)
            env.update(LOG_FILE="", TRADES_LOG_FILE="", LOG_LEVEL="ERROR")

            async def stall() -> None:
                await trio.sleep(0.5 * SPEED)  # half a real second in: the bot is up
                time.sleep(STALL_SECONDS)  # the whole process stops, as on a starved machine

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stall)
                return await run_bot(load_settings(env), duration=1.5 * SPEED + STALL_SECONDS * SPEED,
                                     clock=clock, on_finish=finished.update, hang_scale=hang_scale)

    code = trio.run(main, clock=trio.testing.MockClock(rate=SPEED))
    return code, finished


def test_a_real_stall_of_an_accelerated_demo_is_not_a_hung_child(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="polybot.supervisor")
    code, finished = run_stalled_demo(tmp_path / "data", hang_scale=SPEED)
    supervision = [r.getMessage() for r in caplog.records if r.name == "polybot.supervisor"]
    assert (code, supervision) == (EXIT_OK, [])
    assert finished["code"] == EXIT_OK
