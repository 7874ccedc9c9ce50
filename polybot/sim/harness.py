"""The whole local exchange on loopback: `running_sim` for tests and the demo, and `main`,
the standalone runner (``python -m polybot sim``).

Usage (inside Trio)::

    async with running_sim(seed=1) as sim:
        # sim.api_url, sim.gateway_url: "http://127.0.0.1:PORT" (PM_API_URL / PM_GATEWAY_URL)
        # sim.ws_url: "ws://127.0.0.1:PORT" (clients append /v1/ws/markets, /v1/ws/private)
        # sim.admin_url: loopback admin API (see polybot.sim.server)
        # sim.key_id / sim.secret_key / sim.account_id: a funded bot account
        # sim.markets: tradable market slugs; sim.exchange, sim.world, sim.scenario
        # sim.faults: flip switches at run time (see polybot.sim.faults)
        # sim.scenario: the world's driver and its controls (halt / reopen / postpone /
        #   finish_game / cancel_game / at); sim.now(): the world's wall clock
        # sim.create_account(cash=Decimal("500")) -> ApiKey for another account
        ...

Everything runs in a nursery owned by the context manager; leaving the block cancels it.
``run_scenario=False`` gives the same markets with empty books and no background traders (for
tests that script exact books through ``sim.exchange``, ``sim.scenario.script_book(...)`` or a
second account). ``sim.markets`` is the list of tradable slugs when the sim started; the scenario
may list more games later (``sim.exchange.markets``).

A rolling league schedule (games listed ahead, played, closed, settled, new waves forever):
``running_sim(scenario=league_schedule_spec(seed, ("nba", "nhl"), ...), opticodds=True)``; the
gateway then serves ``/v2/leagues``, ``/v2/leagues/{slug}/events`` and ``/v1/events`` with
``seriesId``/``startTimeMin``/... for its games. One clock for the bot and the world: pass the
bot's wall clock as ``clock=`` (e.g. ``ReplayClock(...).now``), and under
``trio.testing.MockClock(rate=N)`` both run N times faster than real time (see ``demo_world``).

Defaults worth knowing: REST rate limit 20/s per key and per IP (``rate_limit=None`` disables it),
heartbeats every 10 s, ``"error": ""`` on 10 % of private frames, two hosts (api + gateway).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from polybot.sim.auth import ApiKey
from polybot.sim.engine import Exchange
from polybot.sim.faults import Faults
from polybot.sim.opticodds import OddsControl, serve_opticodds
from polybot.sim.scenario import Scenario, build_sim, league_schedule_spec
from polybot.sim.server import SimServer, SimUrls
from polybot.sim.world import World

BOT_ACCOUNT = "bot"
OPTICODDS_KEY = "sim-opticodds-key"


@attrs.define(eq=False)
class SimHandle:
    """What a test gets from `running_sim`. Field names are a stable contract."""

    api_url: str
    gateway_url: str
    ws_url: str
    admin_url: str
    key_id: str
    secret_key: str = attrs.field(repr=False)
    account_id: str
    exchange: Exchange
    world: World
    scenario: Scenario
    faults: Faults
    server: SimServer
    markets: list[str]
    opticodds_url: str = ""
    opticodds_key: str = attrs.field(default="", repr=False)
    opticodds_control: Any = None
    clock: Callable[[], datetime] | None = attrs.field(default=None, repr=False)

    def now(self) -> datetime:
        """The world's wall clock (the exchange's timestamps, games' start and end times)."""
        return self.scenario.clock()

    def create_account(self, cash: Decimal = Decimal("10000")) -> ApiKey:
        """A new funded account with one API key (key_id, secret_key, account_id)."""
        return self.server.create_account(cash)

    def create_key(self, account_id: str) -> ApiKey:
        """One more API key for an existing account."""
        return self.server.keys.create(account_id)

    def credentials(self) -> dict[str, Any]:
        """The standalone runner's credentials-file object."""
        out: dict[str, Any] = {
            "key_id": self.key_id,
            "secret_key": self.secret_key,
            "api_url": self.api_url,
            "gateway_url": self.gateway_url,
            "ws_url": self.ws_url,
            "admin_url": self.admin_url,
            "markets": list(self.markets),
        }
        if self.opticodds_url:
            out["opticodds_url"] = self.opticodds_url
            out["opticodds_key"] = self.opticodds_key
        return out


@asynccontextmanager
async def running_sim(
    *,
    seed: int = 0,
    scenario: Any = None,
    heartbeat_seconds: float = 10.0,
    run_scenario: bool = True,
    two_hosts: bool = True,
    host: str = "127.0.0.1",
    api_port: int = 0,
    gateway_port: int = 0,
    admin_port: int = 0,
    cash: Decimal = Decimal("10000"),
    rate_limit: float | None = 20.0,
    private_empty_error_probability: float = 0.1,
    order_snapshot_on_order: bool = False,
    opticodds: bool = False,
    opticodds_port: int = 0,
    odds_update_seconds: float = 1.0,
    odds_ping_seconds: float = 5.0,
    realtime: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[SimHandle]:
    """Start exchange, scenario and listeners; yield a `SimHandle`; tear all down on exit.

    `scenario`: None (the default lively world for `seed`), a path to a scenario JSON file, a
    `ScenarioSpec` or a `Scenario` (see `polybot.sim.scenario.build_sim`). `opticodds=True` also serves the local OpticOdds on the
    same world (``sim.opticodds_url``/``opticodds_key``). `realtime` is accepted for the
    standalone runner (the scenario then paces itself on the wall clock).
    `order_snapshot_on_order=True` also sends the open-order snapshot (ending ``eof: true``) on a
    plain SUBSCRIPTION_TYPE_ORDER subscription, as older docs describe.
    `odds_update_seconds` / `odds_ping_seconds`: how often the local OpticOdds re-reads the world
    and pings its streams. Under an autojump `MockClock` every distinct wake-up costs the autojump
    threshold in real time, so a test that spans simulated hours raises these (and the scenario's
    `Timing.tick_seconds`, and `heartbeat_seconds`) to keep the number of wake-ups small.
    `clock`: the world's wall clock (exchange, scenario and local OpticOdds); pass the bot's
    (`polybot.clock.Clock.now`) so both see one time. Default: a `SimClock` from now.
    Request signatures are still checked against the host's clock, as the real exchange does.
    """
    del realtime  # reserved: the scenario driver decides its own pacing
    now = (clock() if clock is not None else datetime.now(UTC)).replace(microsecond=0)
    world, ex, driver = build_sim(seed=seed, scenario=scenario, now=now, clock=clock)
    server = SimServer(
        ex,
        heartbeat_seconds=heartbeat_seconds,
        rate_limit=rate_limit,
        private_empty_error_probability=private_empty_error_probability,
        order_snapshot_on_order=order_snapshot_on_order,
        seed=seed,
    )
    bot = server.create_account(cash, account_id=BOT_ACCOUNT)
    async with trio.open_nursery() as nursery:
        urls: SimUrls = await nursery.start(
            lambda task_status: server.serve(
                host=host,
                api_port=api_port,
                gateway_port=gateway_port,
                admin_port=admin_port,
                two_hosts=two_hosts,
                task_status=task_status,
            )
        )
        oo_url, oo_control = "", None
        if opticodds:
            oo_control = OddsControl()
            oo_url = await nursery.start(
                lambda task_status: serve_opticodds(
                    world,
                    host=host,
                    port=opticodds_port,
                    api_key=OPTICODDS_KEY,
                    seed=seed,
                    control=oo_control,
                    update_seconds=odds_update_seconds,
                    ping_seconds=odds_ping_seconds,
                    now=driver.clock,
                    task_status=task_status,
                )
            )
        if run_scenario:
            await nursery.start(driver.run)
        handle = SimHandle(
            api_url=urls.api_url,
            gateway_url=urls.gateway_url,
            ws_url=urls.ws_url,
            admin_url=urls.admin_url,
            key_id=bot.key_id,
            secret_key=bot.secret_key,
            account_id=bot.account_id,
            exchange=ex,
            world=world,
            scenario=driver,
            faults=server.faults,
            server=server,
            markets=[s for s, m in ex.markets.items() if m.active],
            opticodds_url=oo_url,
            opticodds_key=OPTICODDS_KEY if opticodds else "",
            opticodds_control=oo_control,
            clock=driver.clock,
        )
        try:
            yield handle
        finally:
            nursery.cancel_scope.cancel()


# --- standalone runner --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m polybot sim",
        description="Run the local Polymarket US exchange (and the local OpticOdds) on loopback.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="api port (0 = free ports everywhere)")
    p.add_argument("--gateway-port", type=int, default=None)
    p.add_argument("--admin-port", type=int, default=None)
    p.add_argument("--opticodds-port", type=int, default=0)
    p.add_argument("--single-host", action="store_true", help="serve api and gateway on one port")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", type=Path, default=None, help="scenario JSON file")
    p.add_argument("--schedule", default=None, metavar="LEAGUES",
                   help="a rolling league schedule instead of the default world, e.g. nba,nhl "
                        "(games listed 6 h ahead, new waves every 4 h; see league_schedule_spec)")
    p.add_argument("--credentials-file", type=Path, default=None)
    p.add_argument("--heartbeat-seconds", type=float, default=10.0)
    p.add_argument("--cash", default="10000", help="the bot account's starting USD")
    p.add_argument("--no-opticodds", action="store_true")
    return p


def write_credentials(path: Path, data: dict[str, Any]) -> None:
    """Write the credentials JSON with mode 0600 from the start (never world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def _run(args: argparse.Namespace) -> None:
    two_hosts = not args.single_host
    port = args.port
    gateway_port = args.gateway_port
    admin_port = args.admin_port
    if port:
        if gateway_port is None and two_hosts:
            gateway_port = port + 1
        if admin_port is None:
            admin_port = port + (2 if two_hosts else 1)
    scenario: Any = args.scenario
    if args.schedule:
        scenario = league_schedule_spec(args.seed, tuple(args.schedule.split(",")))
    async with running_sim(
        seed=args.seed,
        scenario=scenario,
        heartbeat_seconds=args.heartbeat_seconds,
        two_hosts=two_hosts,
        host=args.host,
        api_port=port,
        gateway_port=gateway_port or 0,
        admin_port=admin_port or 0,
        cash=Decimal(args.cash),
        opticodds=not args.no_opticodds,
        opticodds_port=args.opticodds_port,
        realtime=True,
    ) as sim:
        print(f"api_url      {sim.api_url}")
        print(f"gateway_url  {sim.gateway_url}")
        print(f"ws_url       {sim.ws_url}")
        print(f"admin_url    {sim.admin_url}")
        if sim.opticodds_url:
            print(f"opticodds    {sim.opticodds_url}")
        print(f"key_id       {sim.key_id}")
        print(f"markets      {len(sim.markets)}")
        if args.credentials_file is not None:
            write_credentials(args.credentials_file, sim.credentials())
            print(f"credentials  {args.credentials_file}")
        sys.stdout.flush()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.schedule and args.scenario:
        parser.error("--schedule and --scenario are alternatives")
    if args.schedule:
        try:
            league_schedule_spec(args.seed, tuple(args.schedule.split(",")))
        except ValueError as e:
            parser.error(str(e))
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        trio.run(_run, args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
