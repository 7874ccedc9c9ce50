"""`python -m polybot run --sim`: the zero-setup demo.

Needs no configuration and no network and ignores any `.env`: it starts the local Polymarket US
exchange and the local OpticOdds in this process (`polybot.sim`), creates an account and keys,
points an ordinary bot at them and runs it — paper mode by default, live mode (real REST orders
against the local exchange) with `--live` — in a temporary DATA_DIR (unless `--data-dir`) and on a
free health port that it prints, so it can never touch a real deployment's state.

One clock: the bot and the local exchange read the same wall clock (a `ReplayClock` on Trio's
clock), so the bot's start-time rules see the world's time. With `speed` > 1 Trio runs on
`MockClock(rate=speed)`: the world, its games and the bot all run that many times faster than
real time (`duration` stays in real seconds), and the demo says so.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from polybot.clock import LIVE_CLOCK, ReplayClock
from polybot.config import load_settings
from polybot.logs import configure_from_settings, configure_logging
from polybot.runtime import run_bot
from polybot.sim.harness import SimHandle, running_sim
from polybot.sim.scenario import DEMO_SPEED, demo_world

DEMO_LEAGUES = ("nba", "nhl")  # the leagues `demo_world` schedules

log = logging.getLogger("polybot.demo")


def demo_env(s: SimHandle, *, data_dir: Path, live: bool,
             record_dir: Path | None = None) -> dict[str, str]:
    """The settings an operator would write by hand for this local exchange."""
    env = {
        "TRADING_MODE": "live" if live else "paper",
        "PM_API_KEY_ID": s.key_id,
        "PM_PRIVATE_KEY": s.secret_key,
        "PM_BASE_URL": s.api_url,
        "PM_GATEWAY_URL": s.gateway_url,
        "PM_WS_URL": s.ws_url,
        # discovery, as an operator configures it: the leagues, not a list of slugs
        "MARKET_LEAGUES": ",".join(DEMO_LEAGUES),
        "DISCOVERY_INTERVAL_SECONDS": "30",  # simulated seconds: a pass every 1.5 s at 20x
        "DISCOVERY_HORIZON_HOURS": "1",
        "OPTICODDS_BASE_URL": s.opticodds_url,
        "OPTICODDS_API_KEY": s.opticodds_key,
        "DATA_DIR": str(data_dir),
        "LOG_FILE": str(data_dir / "bot.log"),
        "TRADES_LOG_FILE": str(data_dir / "trades.log"),
        "HEALTH_PORT": "0",
    }
    if record_dir is not None:
        env["RECORD_DIR"] = str(record_dir)
    return env


def run_demo(*, duration: float | None, seed: int, live: bool, data_dir: Path | None,
             speed: float = DEMO_SPEED, record_dir: Path | None = None) -> int:
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="polybot-sim-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(level="INFO", log_file=data_dir / "bot.log",
                      trades_log_file=data_dir / "trades.log", stderr_level="WARNING")
    trio_clock = trio.testing.MockClock(rate=speed) if speed != 1.0 else None
    return trio.run(_demo, duration, seed, live, data_dir, speed, record_dir, clock=trio_clock)


async def _demo(duration: float | None, seed: int, live: bool, data_dir: Path,
                speed: float = 1.0, record_dir: Path | None = None) -> int:
    # the one wall clock of this process: the bot's and the world's (start times, game clocks)
    clock = ReplayClock(LIVE_CLOCK.now(), origin=trio.current_time())
    async with running_sim(seed=seed, scenario=demo_world(seed), opticodds=True,
                           clock=clock.now) as sim:
        settings = load_settings(demo_env(sim, data_dir=data_dir, live=live,
                                          record_dir=record_dir))
        # as a real run configures it (the sim's generated keys redacted), with a quieter stderr
        # so the status lines stay readable
        configure_from_settings(settings, stderr_level="WARNING")
        say(f"polybot demo: {settings.trading_mode} mode against the local exchange "
            f"(leagues {','.join(settings.market_leagues)}, markets found by discovery, seed {seed}); "
            f"state in {data_dir}")
        say(f"  exchange {sim.api_url}  odds {sim.opticodds_url}")
        if settings.record_dir is not None:
            say(f"  recording the feeds into {settings.record_dir}")
        if speed != 1.0:
            say(f"  accelerated: the world and the bot run {speed:g}x faster than real time on "
                f"one clock (a {duration or 0:g} s demo covers {(duration or 0) * speed / 60:g} "
                f"simulated minutes)")

        def health(port: int) -> None:
            say(f"  health  http://127.0.0.1:{port}/health  /ready  /status  /metrics")

        bot_result: dict[str, object] = {}
        code = await run_bot(settings, duration=None if duration is None else duration * speed,
                             clock=clock, status_line=_every(max(1, round(speed)), say),
                             on_health_port=health,
                             on_finish=bot_result.update,
                             # a hang is judged in real seconds: at 60x a 1 s stall of a busy
                             # machine would otherwise be a minute of silence, a "hung" child
                             hang_scale=speed)
        say(summary(bot_result, data_dir))
        return code


def summary(result: dict[str, object], data_dir: Path) -> str:
    lines = ["polybot demo finished:"]
    status = result.get("status")
    if status is not None:
        st: dict[str, Any] = (attrs.asdict(status, recurse=False)  # type: ignore[arg-type]
                              if attrs.has(type(status)) else dict(status))  # type: ignore[call-overload]
        pnl = st.get("pnl", {})
        lines.append("  equity {equity:.2f}  cash {cash:.2f}  realized {realized:+.2f}  "
                     "fees {fees:.2f}".format(**{k: pnl.get(k, 0) for k in
                                                 ("equity", "cash", "realized", "fees")}))
        universe = st.get("extra", {}).get("universe", {})
        if universe:
            now = ", ".join(f"{phase} {n}" for phase, n in universe.get("by_phase", {}).items() if n)
            lines.append(f"  markets added {universe.get('added', 0)}  retired "
                         f"{universe.get('retired', 0)}  (now: {now or 'none'})")
        counters = st.get("extra", {}).get("counters", {})
        lines.append(f"  signals {counters.get('signals', 0)}  orders {counters.get('orders', 0)}  "
                     f"rejections {counters.get('rejections', 0)}")
        for row in st.get("markets", ()):
            if row.position:
                lines.append(f"  position {row.slug}: {row.position}")
    lines.append(f"  report: python -m polybot report --data-dir {data_dir}")
    return "\n".join(lines)


def _every(n: int, sink: Callable[[str], None]) -> Callable[[str], None]:
    """Pass on the first line and every n-th after it (an accelerated run's status line comes
    n times as often in real time)."""
    count = 0

    def line(text: str) -> None:
        nonlocal count
        if count % n == 0:
            sink(text)
        count += 1

    return line


def say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)
