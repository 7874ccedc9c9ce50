"""The simulated sports world shared by the local exchange and the local OpticOdds feed.

One `World` holds the games. The scenario driver (`polybot.sim.scenario`) is its only writer: it
creates the games, drifts each game's hidden true probability, moves games from upcoming to live to
finished and settles them, and (in a league schedule) drops games settled a day ago. The local
exchange lists one event with one moneyline market per game; the local OpticOdds publishes
sportsbook odds for the same fixtures, derived from the same hidden probability. Both read the
world; neither writes it.

Times are absolute UTC datetimes computed from the moment the sim started (so a scenario never goes
stale); probabilities are Decimal in (0, 1).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

import attrs

GameStatus = Literal["unplayed", "live", "completed", "cancelled"]


@attrs.define(slots=True)
class SimTeam:
    name: str  # "Boston Celtics"
    abbreviation: str  # "BOS"
    opticodds_id: str  # OpticOdds competitor id, e.g. "AAAA11112222"; also PROVIDER_OPTICODDS id
    team_id: int  # the exchange's team id

    @property
    def normalized(self) -> str:
        """OpticOdds' normalized_selection for this team ("boston_celtics")."""
        return "_".join(self.name.lower().replace(".", "").split())


@attrs.define(slots=True)
class SimGame:
    fixture_id: str  # OpticOdds fixture id, e.g. "20261126A1B2C3D4"
    league: str  # OpticOdds league id, e.g. "nba"
    sport: str  # OpticOdds sport id, e.g. "basketball"
    home: SimTeam
    away: SimTeam
    start_time: datetime
    event_id: int
    event_slug: str
    market_id: int
    market_slug: str  # e.g. "aec-nba-bos-nyk-2026-11-26"
    long_is_home: bool  # which team is the market's YES (long) side
    true_prob_long: Decimal  # hidden probability that the long team wins
    status: GameStatus = "unplayed"
    settlement: Decimal | None = None  # set when the game is settled (0, 1, 0.5, ...)
    market_side_ids: tuple[int, int] = (0, 0)  # (long side id, short side id)
    end_time: datetime | None = None  # when the scenario ends the game (it then settles)
    settled_at: datetime | None = None

    @property
    def long_team(self) -> SimTeam:
        return self.home if self.long_is_home else self.away

    @property
    def short_team(self) -> SimTeam:
        return self.away if self.long_is_home else self.home

    def true_prob_of(self, team: SimTeam) -> Decimal:
        return self.true_prob_long if team is self.long_team else 1 - self.true_prob_long


@attrs.define(slots=True)
class World:
    games: list[SimGame] = attrs.field(factory=list)
    started_at: datetime | None = None

    def game_by_fixture(self, fixture_id: str) -> SimGame | None:
        for g in self.games:
            if g.fixture_id == fixture_id:
                return g
        return None

    def game_by_slug(self, market_slug: str) -> SimGame | None:
        for g in self.games:
            if g.market_slug == market_slug:
                return g
        return None
