"""The real composition (`polybot.runtime.Bot`: supervisor, store, engine, venue, REST client and
websockets) against `polybot.sim` over loopback, for tests that cross the boundaries of time.

Run it under `trio.testing.MockClock(autojump_threshold=…)` (the sockets are real, time is not);
pass a `ReplayClock` to move the bot's wall clock across a trading day.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from polybot.clock import Clock, ReplayClock
from polybot.components import NETWORK, Edges
from polybot.config import load_settings
from polybot.runtime import Bot


def bot_env(sim: Any, data_dir: Path, *, live: bool, **extra: str) -> dict[str, str]:
    env = {
        "TRADING_MODE": "live" if live else "paper",
        "PM_API_KEY_ID": sim.key_id,
        "PM_PRIVATE_KEY": sim.secret_key,
        "PM_BASE_URL": sim.api_url,
        "PM_GATEWAY_URL": sim.gateway_url,
        "PM_WS_URL": sim.ws_url,
        "MARKET_SLUGS": ",".join(sim.markets),
        "DATA_DIR": str(data_dir),
        "LOG_FILE": "",
        "TRADES_LOG_FILE": "",
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    if sim.opticodds_url:
        env["OPTICODDS_BASE_URL"] = sim.opticodds_url
        env["OPTICODDS_API_KEY"] = sim.opticodds_key
    env.update(extra)
    return env


def replay_clock() -> ReplayClock:
    """Wall time = now + Trio time since this call (`jump` moves the calendar)."""
    return ReplayClock(datetime.now(UTC), origin=trio.current_time())


@asynccontextmanager
async def running_bot(sim: Any, data_dir: Path, *, live: bool = True, clock: Clock | None = None,
                      edges: Edges = NETWORK, **extra: str) -> AsyncIterator[Bot]:
    """A running bot (supervised group, store writer, notifier); stopped cleanly on exit."""
    bot = Bot(load_settings(bot_env(sim, data_dir, live=live, **extra)),
              clock=clock or replay_clock(), edges=edges)
    async with trio.open_nursery() as n:
        await n.start(bot.store.run)
        if bot.recording is not None:
            await n.start(bot.recording.run)
        await n.start(bot.notifier.run)
        n.start_soon(bot.supervisor.run)
        try:
            yield bot
        finally:
            with trio.CancelScope(shield=True):
                await bot.request_stop()
                with trio.move_on_after(10):
                    await bot.shutdown()
            n.cancel_scope.cancel()
    with trio.CancelScope(shield=True):
        await bot.rest.aclose()
    bot.store.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0,
                   poll: float = 0.1) -> bool:
    """Poll `condition` until true or `timeout` (simulated) seconds passed."""
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(poll)
        return True
    return False


def market_book(bot: Any, slug: str) -> Any:
    """A market's book in the ledger, in memory or (once retired and folded away) in the store."""
    held = bot.ledger.markets.get(slug)
    return held if held is not None else bot.store.read_market(slug)


async def operator_script(data_dir: Path, waits: tuple[float, float, float, float]
                          ) -> tuple[str, str]:
    """What an operator does during a run, with the CLI's own files and requests: a flatten,
    a kill switch on and off, a resume, a cancel-all, each after its wait (simulated seconds).
    Returns the flatten's and the cancel-all's request ids."""
    from polybot import control, operator

    await trio.sleep(waits[0])
    flatten = operator.write_request(data_dir, "flatten")
    await trio.sleep(waits[1])
    control.write_kill_file(data_dir, "recorded halt")
    await trio.sleep(waits[2])
    control.remove_kill_file(data_dir)
    control.write_resume_request(data_dir)
    await trio.sleep(waits[3])
    cancel_all = operator.write_request(data_dir, "cancel-all")
    return flatten, cancel_all
