"""End-to-end harness: `python -m polybot sim` and `python -m polybot run` as real subprocesses.

The tests observe only what an operator could: the bot's health app over HTTP, its DATA_DIR and
log file, its exit code, and the exchange's side through the sim's admin API and its signed REST
API (read with the official `polymarket-us` SDK, an implementation independent of the bot's).

One sim subprocess is shared by the whole session (starting one costs a second or two and each
test needs a lively book); tests stay independent by starting their own bot with its own
DATA_DIR and by switching every fault off afterwards (`sim.reset_faults()` in the bot fixture).
The bot account is shared, so a test asserts on *its* orders (ids or times after its start), never
on totals.

The sim runs `SCENARIO`: the default world's shape with quicker drift and more frequent stale
quotes, so edges (and therefore orders) appear within seconds instead of a minute, and games far
enough in the future that no market goes in play during a session.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HEALTH_LINE = re.compile(r"health app listening on http://([0-9.]+):(\d+)")

SCENARIO: dict[str, Any] = {
    "seed": 3,
    "timing": {
        "quote_refresh_seconds": 2.0,
        "lag_probability": 0.5,
        "lag_seconds": 20.0,
        "taker_rate": 0.3,
        "drift_per_minute": 0.4,
        "respawn": False,
    },
    "liquidity": {"min_level_qty": 5, "max_level_qty": 40, "max_taker_qty": 10},
    "games": [
        {"league": league, "home": home, "away": away, "start_offset_seconds": 3600 + 600 * i,
         "length_seconds": 3600, "true_prob": p, "long_is_home": i % 2 == 0}
        for i, (league, home, away, p) in enumerate([
            ("nba", {"name": "Boston Celtics", "abbreviation": "BOS"},
             {"name": "New York Knicks", "abbreviation": "NYK"}, "0.55"),
            ("nhl", {"name": "Toronto Maple Leafs", "abbreviation": "TOR"},
             {"name": "Montreal Canadiens", "abbreviation": "MTL"}, "0.45"),
            ("nfl", {"name": "Kansas City Chiefs", "abbreviation": "KC"},
             {"name": "Buffalo Bills", "abbreviation": "BUF"}, "0.60"),
            ("nba", {"name": "Miami Heat", "abbreviation": "MIA"},
             {"name": "Chicago Bulls", "abbreviation": "CHI"}, "0.40"),
        ])
    ],
}


QUIET_SCENARIO: dict[str, Any] = {
    **SCENARIO,
    "timing": {**SCENARIO["timing"], "taker_rate": 0.0},
    "liquidity": {"makers": 0, "max_taker_qty": 1},
}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def base_env() -> dict[str, str]:
    """A clean environment: nothing of the developer's shell or any .env leaks into a run."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Sim:
    """The standalone local exchange, seen from outside."""

    def __init__(self, proc: subprocess.Popen[bytes], creds_file: Path, log: Path) -> None:
        self.proc = proc
        self.creds_file = creds_file
        self.log = log
        self.creds: dict[str, Any] = json.loads(creds_file.read_text())
        self.admin_url: str = self.creds["admin_url"]
        self.markets: list[str] = list(self.creds["markets"])
        self.http = httpx.Client(timeout=10)
        self.participants: list[Any] = []

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.http.request(method, self.admin_url + path, json=body)
        resp.raise_for_status()
        return resp.json()

    def faults(self, **switches: Any) -> Any:
        return self.admin("POST", "/admin/faults", switches)

    def reset_faults(self) -> None:
        self.faults(reset=True)

    def cleanup(self) -> None:
        """Faults off and the other participants' orders cancelled: the next test starts clean."""
        self.reset_faults()
        for client in self.participants:
            client.orders.cancel_all({"slugs": self.markets})

    def accepted_orders(self, account: str = "bot") -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/admin/orders?account={account}")["orders"])

    def client(self, key_id: str | None = None, secret_key: str | None = None) -> Any:
        """An official-SDK client for the bot's account (default) or another one."""
        from polymarket_us import PolymarketUS

        return PolymarketUS(key_id=key_id or self.creds["key_id"],
                            secret_key=secret_key or self.creds["secret_key"],
                            gateway_base_url=self.creds["gateway_url"],
                            api_base_url=self.creds["api_url"], timeout=10, max_retries=0)

    def new_account(self, cash: str = "100000") -> Any:
        acct = self.admin("POST", "/admin/accounts", {"cash": cash})
        client = self.client(acct["key_id"], acct["secret_key"])
        self.participants.append(client)
        return client

    def open_orders(self) -> list[dict[str, Any]]:
        """The bot account's open orders, as the exchange has them."""
        with self.client() as c:
            return list(c.orders.list({"slugs": self.markets}).get("orders", []))

    def order(self, order_id: str) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.orders.retrieve(order_id)["order"])

    def positions(self) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.portfolio.positions({"limit": 100}).get("positions", {}))


class Bot:
    """One `python -m polybot run` subprocess and what an operator can see of it."""

    def __init__(self, proc: subprocess.Popen[bytes], data_dir: Path, env: dict[str, str],
                 started: float) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.env = env
        self.log_file = Path(env["LOG_FILE"])
        self.started = started
        self.http = httpx.Client(timeout=5)
        self._base: str | None = None

    @property
    def base(self) -> str:
        if self._base is None:
            def bound() -> str | None:
                if self.proc.poll() is not None:
                    raise AssertionError(f"bot exited with {self.proc.returncode} before "
                                         f"serving health:\n{self.output()}")
                m = HEALTH_LINE.search(self.log())
                return f"http://{m.group(1)}:{m.group(2)}" if m else None

            self._base = wait_until(bound, 20, "the health app's listening line in LOG_FILE")
        return self._base

    def get(self, path: str) -> httpx.Response:
        return self.http.get(self.base + path)

    def status(self) -> dict[str, Any]:
        return dict(self.get("/status").json())

    def metrics_text(self) -> str:
        return self.get("/metrics").text

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        return (self.data_dir / "stderr.txt").read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 30) -> None:
        last: list[str] = []

        def ready() -> bool:
            r = self.get("/ready")
            last[:] = [r.text[:300]]
            return r.status_code == 200

        try:
            wait_until(ready, timeout, "/ready to be 200")
        except AssertionError as exc:  # say why the bot was not ready
            raise AssertionError(f"{exc}; last /ready answer: {last[0] if last else None}") from None

    def command(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """An operator command (`cancel-all`, `flatten`, ...) with this bot's settings."""
        return subprocess.run([PYTHON, "-m", "polybot", *args], env=self.env, cwd=self.data_dir,
                              capture_output=True, text=True, timeout=timeout)

    def terminate(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _running_sim(folder: Path, scenario: dict[str, Any]) -> Iterator[Sim]:
    (folder / "scenario.json").write_text(json.dumps(scenario))
    creds = folder / "credentials.json"
    log = folder / "sim.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "polybot", "sim", "--port", "0", "--scenario",
             str(folder / "scenario.json"), "--credentials-file", str(creds),
             "--heartbeat-seconds", "1"],
            env=base_env(), cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    try:
        def written() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"sim exited {proc.returncode}:\n{log.read_text()}")
            return creds.exists()

        wait_until(written, 30, "the sim's credentials file")
        yield Sim(proc, creds, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """The lively shared exchange (`SCENARIO`)."""
    yield from _running_sim(tmp_path_factory.mktemp("sim"), SCENARIO)


@pytest.fixture(scope="session")
def quiet_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """The same games with no background makers or takers: a test is the only other trader,
    so it decides exactly which prices the bot sees."""
    yield from _running_sim(tmp_path_factory.mktemp("quiet_sim"), QUIET_SCENARIO)


def bot_env(data_dir: Path, mode: str, **settings: str) -> dict[str, str]:
    env = base_env()
    env.update({
        "TRADING_MODE": mode,
        "DATA_DIR": str(data_dir),
        "LOG_FILE": str(data_dir / "bot.log"),
        "TRADES_LOG_FILE": str(data_dir / "trades.log"),
        "HEALTH_HOST": "127.0.0.1",
        "HEALTH_PORT": "0",
        "STALE_FEED_SECONDS": "5",
        "INITIAL_BALANCE": "1000",
    })
    env.update(settings)
    return env


@pytest.fixture
def start_bot(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Bot]]:
    """`start_bot(sim, mode="paper", **SETTINGS)` -> a running Bot pointed at `sim` through
    `run --sim-credentials`. Afterwards: every bot killed if still running (its log tail shown
    when the test failed) and every fault of the sims used switched off."""
    bots: list[Bot] = []
    sims: list[Sim] = []

    def start(sim: Sim, mode: str = "paper", **settings: str) -> Bot:
        data_dir = tmp_path / f"bot{len(bots)}"
        data_dir.mkdir()
        env = bot_env(data_dir, mode, **settings)
        with (data_dir / "stderr.txt").open("wb") as err:
            proc = subprocess.Popen(
                [PYTHON, "-m", "polybot", "run", "--sim-credentials", str(sim.creds_file)],
                env=env, cwd=data_dir, stdout=err, stderr=subprocess.STDOUT)
        bot = Bot(proc, data_dir, env, time.monotonic())
        bots.append(bot)
        if sim not in sims:
            sims.append(sim)
        return bot

    try:
        yield start
    finally:
        report = getattr(request.node, "rep_call", None)
        for bot in bots:
            bot.kill()
            if report is not None and report.failed:
                sys.stderr.write(f"--- {bot.log_file} (tail) ---\n{bot.log()[-6000:]}\n")
        for sim in sims:
            sim.cleanup()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """The README's first command, started once and left running beside the other tests."""
    folder = tmp_path_factory.mktemp("demo")
    out = folder / "out.txt"
    with out.open("wb") as f:
        proc = subprocess.Popen([PYTHON, "-m", "polybot", "run", "--sim", "--duration", "60"],
                                env=base_env(), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    yield proc, out, time.monotonic()
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)
