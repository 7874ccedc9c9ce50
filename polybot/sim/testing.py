"""`running_sim`: the whole local exchange on loopback, for tests and the standalone runner.

Usage (inside Trio)::

    async with running_sim(seed=1) as sim:
        # sim.api_url, sim.gateway_url: "http://127.0.0.1:PORT" (PM_API_URL / PM_GATEWAY_URL)
        # sim.ws_url: "ws://127.0.0.1:PORT" (clients append /v1/ws/markets, /v1/ws/private)
        # sim.admin_url: loopback admin API (see polybot.sim.server)
        # sim.key_id / sim.secret_key / sim.account_id: a funded bot account
        # sim.markets: tradable market slugs; sim.exchange, sim.world, sim.scenario
        # sim.faults: flip switches at run time (see polybot.sim.faults)
        # sim.create_account(cash=Decimal("500")) -> ApiKey for another account
        ...

Everything runs in a nursery owned by the context manager; leaving the block cancels it.
``run_scenario=False`` gives the same markets with empty books and no background traders (for
tests that script exact books through ``sim.exchange`` or a second account).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from polybot.sim.auth import ApiKey
from polybot.sim.engine import Exchange, MarketSide, Team
from polybot.sim.faults import Faults
from polybot.sim.server import SimServer, SimUrls
from polybot.sim.world import SimGame, SimTeam, World

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
    scenario: Any
    faults: Faults
    server: SimServer
    markets: list[str]
    opticodds_url: str = ""
    opticodds_key: str = attrs.field(default="", repr=False)
    opticodds_control: Any = None

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


# --- world building (used until / unless the scenario driver provides one) ---------------------

_TEAMS = [
    ("Boston Celtics", "BOS"),
    ("New York Knicks", "NYK"),
    ("Los Angeles Lakers", "LAL"),
    ("Golden State Warriors", "GSW"),
    ("Miami Heat", "MIA"),
    ("Denver Nuggets", "DEN"),
    ("Phoenix Suns", "PHX"),
    ("Chicago Bulls", "CHI"),
]


def basic_world(seed: int, now: datetime, games: int = 4) -> World:
    """A small deterministic NBA slate, games starting 1 h, 2 h, ... from `now`."""
    rng = random.Random(seed)
    teams = [
        SimTeam(name, abbr, f"{rng.getrandbits(48):012X}", 1000 + i)
        for i, (name, abbr) in enumerate(_TEAMS)
    ]
    world = World(started_at=now)
    for g in range(games):
        home, away = teams[(2 * g) % len(teams)], teams[(2 * g + 1) % len(teams)]
        start = now + timedelta(hours=g + 1)
        date = start.strftime("%Y-%m-%d")
        long_is_home = bool(g % 2)
        long_t, short_t = (home, away) if long_is_home else (away, home)
        world.games.append(
            SimGame(
                fixture_id=f"{start:%Y%m%d}{rng.getrandbits(32):08X}",
                league="nba",
                sport="basketball",
                home=home,
                away=away,
                start_time=start,
                event_id=500 + g,
                event_slug=f"nba-{away.abbreviation}-{home.abbreviation}-{date}".lower(),
                market_id=9000 + g,
                market_slug=(
                    f"aec-nba-{long_t.abbreviation}-{short_t.abbreviation}-{date}".lower()
                ),
                long_is_home=long_is_home,
                true_prob_long=Decimal(rng.randint(30, 70)) / 100,
                market_side_ids=(20000 + 2 * g, 20001 + 2 * g),
            )
        )
    return world


def list_world(world: World, ex: Exchange) -> None:
    """List one event with one moneyline market per game of `world` on the exchange."""
    for g in world.games:
        if g.market_slug in ex.markets:
            continue
        teams = tuple(
            Team(
                t.team_id,
                t.name,
                t.abbreviation,
                league=g.league,
                provider_ids=(("PROVIDER_OPTICODDS", t.opticodds_id),),
                ordering=order,
            )
            for t, order in ((g.home, "home"), (g.away, "away"))
        )
        ex.add_event(
            g.event_id,
            g.event_slug,
            f"{g.away.name} at {g.home.name}",
            start_time=g.start_time,
            league=g.league,
            sport=g.sport,
            teams=teams,
            external_ids={"opticodds": g.fixture_id},
        )
        long_t, short_t = g.long_team, g.short_team
        ex.add_market(
            g.market_slug,
            g.market_id,
            g.event_id,
            title=f"{long_t.name} vs {short_t.name}",
            question=f"Will the {long_t.name} beat the {short_t.name}?",
            sides=(
                MarketSide(
                    g.market_side_ids[0],
                    True,
                    long_t.name,
                    long_t.team_id,
                    long_t.abbreviation.lower(),
                    long_t.normalized,
                ),
                MarketSide(
                    g.market_side_ids[1],
                    False,
                    short_t.name,
                    short_t.team_id,
                    short_t.abbreviation.lower(),
                    short_t.normalized,
                ),
            ),
            sports_market_type=f"{g.sport}_team_full_game_winner",
            external_market_type="moneyline",
            start_time=g.start_time,
        )


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
    opticodds: bool = False,
    opticodds_port: int = 0,
    realtime: bool = False,
) -> AsyncIterator[SimHandle]:
    """Start exchange, scenario and listeners; yield a `SimHandle`; tear all down on exit.

    `scenario`: None (generated from `seed`), a path to a scenario JSON file, or a scenario
    object from `polybot.sim.scenario`. `opticodds=True` also serves the local OpticOdds on the
    same world (``sim.opticodds_url``/``opticodds_key``). `realtime` is accepted for the
    standalone runner (the scenario then paces itself on the wall clock).
    """
    del realtime  # reserved: the scenario driver decides its own pacing
    now = datetime.now(UTC).replace(microsecond=0)
    world, ex, driver = _build(seed, scenario, now)
    server = SimServer(
        ex,
        heartbeat_seconds=heartbeat_seconds,
        rate_limit=rate_limit,
        private_empty_error_probability=private_empty_error_probability,
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
            from polybot.sim.opticodds import OddsControl, serve_opticodds

            oo_control = OddsControl()
            oo_url = await nursery.start(
                lambda task_status: serve_opticodds(
                    world,
                    host=host,
                    port=opticodds_port,
                    api_key=OPTICODDS_KEY,
                    seed=seed,
                    control=oo_control,
                    task_status=task_status,
                )
            )
        if run_scenario and driver is not None and hasattr(driver, "run"):
            nursery.start_soon(driver.run)
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
        )
        try:
            yield handle
        finally:
            nursery.cancel_scope.cancel()


def _build(seed: int, scenario: Any, now: datetime) -> tuple[World, Exchange, Any]:
    """World, exchange and (optional) scenario driver."""
    try:
        from polybot.sim import scenario as scenario_mod
    except ImportError:
        scenario_mod = None
    if scenario_mod is not None and hasattr(scenario_mod, "build_sim"):
        return scenario_mod.build_sim(seed=seed, scenario=scenario, now=now)
    if isinstance(scenario, str | Path):
        raise RuntimeError("scenario files need polybot.sim.scenario")
    world = basic_world(seed, now)
    ex = Exchange(lambda: datetime.now(UTC), seed=seed)
    list_world(world, ex)
    return world, ex, None
