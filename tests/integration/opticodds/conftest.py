"""A small sim world served by the local OpticOdds on loopback, for the client and feed tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import attrs
import pytest
import trio
import trio.testing

from polybot.sim.opticodds import OddsControl, serve_opticodds
from polybot.sim.world import SimGame, SimTeam, World

KEY = "test-opticodds-key-7f3a"


def make_world() -> World:
    now = datetime.now(UTC).replace(microsecond=0)

    def game(n: int, sport: str, league: str, home: SimTeam, away: SimTeam, long_is_home: bool,
             p: str, hours: int) -> SimGame:
        return SimGame(
            fixture_id=f"20261126SIM{n:05d}", league=league, sport=sport, home=home, away=away,
            start_time=now + timedelta(hours=hours), event_id=100 + n,
            event_slug=f"{league}-{home.abbreviation.lower()}-{away.abbreviation.lower()}",
            market_id=1000 + n,
            market_slug=f"aec-{league}-{home.abbreviation.lower()}-{away.abbreviation.lower()}",
            long_is_home=long_is_home, true_prob_long=Decimal(p), market_side_ids=(2 * n, 2 * n + 1),
        )

    bos = SimTeam("Boston Celtics", "BOS", "AAAA11112222", 1)
    nyk = SimTeam("New York Knicks", "NYK", "BBBB33334444", 2)
    lal = SimTeam("Los Angeles Lakers", "LAL", "CCCC55556666", 3)
    gsw = SimTeam("Golden State Warriors", "GSW", "DDDD77778888", 4)
    tor = SimTeam("Toronto Maple Leafs", "TOR", "EEEE99990000", 5)
    mtl = SimTeam("Montreal Canadiens", "MTL", "FFFF11110000", 6)
    return World(
        games=[
            game(1, "basketball", "nba", bos, nyk, True, "0.64", 3),
            game(2, "basketball", "nba", lal, gsw, False, "0.55", 4),
            game(3, "hockey", "nhl", tor, mtl, True, "0.48", 5),
        ],
        started_at=now,
    )


@attrs.define
class LocalOdds:
    url: str
    world: World
    control: OddsControl
    key: str = KEY


@pytest.fixture
def mock_clock():
    # Real sockets, but the local OpticOdds is in this process and loopback answers at once:
    # 1 ms of real idleness before a jump (docs/design-notes.md, "CI time").
    return trio.testing.MockClock(autojump_threshold=0.001)


@pytest.fixture
async def local_odds(nursery) -> LocalOdds:
    world = make_world()
    control = OddsControl()
    url = await nursery.start(partial(
        serve_opticodds, world, api_key=KEY, ping_seconds=5.0, seed=7, update_seconds=1e6,
        lock_probability=0.0, control=control))
    return LocalOdds(url=url, world=world, control=control)
