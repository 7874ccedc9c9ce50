"""The scenario driver: a seeded sports world that keeps the local exchange alive.

A `Scenario` owns a `World` (the games the local OpticOdds publishes odds for) and feeds an
`Exchange`: one event with one moneyline market per game, background market makers quoting ladders
around each game's hidden true probability, and background takers whose IOC orders make prints
and fills. Games go unplayed → live at `start_time` → completed at `end_time` (market CLOSED, makers
pull their quotes) → settled `settle_delay` later at 1 or 0 drawn from the true probability (or a
scripted outcome such as 0.5 for a tie).

Determinism: every random choice comes from RNGs seeded by (seed, purpose), and the model advances
in fixed ticks of `Timing.tick_seconds` of scenario time, whatever the caller's step cadence:
`step(now)` runs every tick due up to `now`. Two runs with the same spec and the same sequence of
`now` values produce the same exchange events (ids included). All times are offsets from the moment
the scenario starts, so a scenario never goes stale.

Edges: each maker quotes around its own noisy view of the true probability. With probability
`lag_probability` per refresh a maker freezes its view for `lag_seconds` and keeps quoting the stale
price while the truth drifts away, so a real edge appears against a fair value derived from the
same truth. Makers never cross the book (they skip levels that would trade), so stale quotes stay
until a taker or the bot takes them.

League schedule (`league_schedule_spec`, `ScenarioSpec.schedule`): instead of (or besides) a
fixed list of games, each league lists waves of games forever; a game is listed `list_ahead_seconds`
before its start (event + moneyline on the exchange, in the league's active series; its fixture
appears at the local OpticOdds because the world now has it), trades pre-game and in play, closes
at its end and resolves `settle_delay_seconds` later. Waves are drawn from RNGs seeded by (seed,
wave), so the schedule does not depend on the caller's step cadence. Settled games leave the world
`prune_after_seconds` later and the background traders' old history is forgotten, so a world can
run for days; the exchange keeps every market and settlement, as the real one does. Controls for
tests: `halt`/`reopen`, `postpone` (start moved in place), `finish_game` (resolves with nobody
watching), `cancel_game` (settles at the last fair price), `at` (any action at a scenario time).
`demo_world` is the schedule the `run --sim` demo runs at `DEMO_SPEED`.

Entry points: `build_scenario` (tests: a set-up Scenario on model time), `build_sim` (the server's
runner: world, exchange and driver on a `SimClock`), `load_scenario` (JSON), `script_book` /
`Scenario.script_book` (exact books; the latter also silences background liquidity there).
Background accounts: `bg-maker-N` quote post-only ladders, `bg-taker` sends IOC orders, `script`
holds scripted levels; all start with ample cash.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from polybot.model import (
    MAX_PRICE,
    MIN_PRICE,
    Intent,
    MarketState,
    OrderState,
    Side,
    TimeInForce,
    ceil_to_step,
    floor_to_step,
)
from polybot.sim.engine import (
    PROVIDER_OPTICODDS,
    Exchange,
    MarketSide,
    OrderSpec,
    Team,
)
from polybot.sim.world import SimGame, SimTeam, World

SCRIPT_ACCOUNT = "script"
TAKER_ACCOUNT = "bg-taker"
BIG_CASH = Decimal(10_000_000)

LEAGUES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "nba": (
        "basketball",
        [
            ("Boston Celtics", "BOS"),
            ("New York Knicks", "NYK"),
            ("Los Angeles Lakers", "LAL"),
            ("Golden State Warriors", "GSW"),
            ("Miami Heat", "MIA"),
            ("Chicago Bulls", "CHI"),
            ("Denver Nuggets", "DEN"),
            ("Phoenix Suns", "PHX"),
        ],
    ),
    "nhl": (
        "hockey",  # OpticOdds' sport id; the exchange's type is `hockey_team_full_game_winner`
        [
            ("Boston Bruins", "BOS"),
            ("New York Rangers", "NYR"),
            ("Toronto Maple Leafs", "TOR"),
            ("Montreal Canadiens", "MTL"),
            ("Edmonton Oilers", "EDM"),
            ("Colorado Avalanche", "COL"),
        ],
    ),
    "nfl": (
        "football",
        [
            ("Kansas City Chiefs", "KC"),
            ("Buffalo Bills", "BUF"),
            ("Philadelphia Eagles", "PHI"),
            ("Dallas Cowboys", "DAL"),
        ],
    ),
}


@attrs.frozen(slots=True)
class Timing:
    """Every clock of the scenario, in seconds of scenario time (compress them for tests)."""

    tick_seconds: float = 1.0  # model step
    quote_refresh_seconds: float = 5.0  # makers re-quote this often
    lag_probability: float = 0.15  # per maker, market and refresh: start quoting a stale view
    lag_seconds: float = 60.0
    taker_rate: float = 0.12  # expected background taker orders per market per second
    drift_per_minute: float = 0.05  # sd of the true-probability random walk per minute (pre-game)
    live_drift_per_minute: float = 0.05  # the same once the game is live
    settle_delay_seconds: float = 20.0  # game end → settlement
    first_start_seconds: float = 150.0  # default spec: first game starts this long after start
    first_length_seconds: float = 300.0  # default spec: first game's length
    start_spacing_seconds: float = 240.0  # default spec: gap between later starts
    respawn: bool = True  # default spec: a settled game is replaced by a new one
    # the league schedule (`league_schedule_spec`): waves of games, each game listed ahead
    first_wave_seconds: float = 1800.0  # the first wave's first start, after the sim starts
    wave_spacing_seconds: float = 4 * 3600.0  # from one wave's first start to the next's
    wave_stagger_seconds: float = 900.0  # between the starts of one league's games in a wave
    list_ahead_seconds: float = 6 * 3600.0  # a game is listed this long before its start
    game_length_seconds: float = 2.5 * 3600.0  # start -> end (then settle_delay -> settled)
    prune_after_seconds: float = 24 * 3600.0  # settled games leave the world this much later


@attrs.frozen(slots=True)
class Liquidity:
    makers: int = 2
    levels: int = 10  # per side
    half_spread: Decimal = Decimal("0.01")
    view_noise: float = 0.01  # sd of a maker's view around the truth, per refresh
    min_level_qty: int = 20
    max_level_qty: int = 200
    max_taker_qty: int = 25
    informed_share: float = 0.6  # takers trading toward the truth
    # makers' ladder grid: None = the market's tick; e.g. 0.01 quotes fine-tick markets in whole
    # cents, so a small change of view moves a level or two instead of the whole ladder
    ladder_step: Decimal | None = None


@attrs.frozen(slots=True)
class TeamSpec:
    name: str
    abbreviation: str
    opticodds_id: str = ""  # generated (12 hex) when empty


@attrs.frozen(slots=True)
class GameSpec:
    league: str
    sport: str
    home: TeamSpec
    away: TeamSpec
    start_offset_seconds: float
    length_seconds: float
    true_prob: Decimal = Decimal("0.5")  # initial probability that the long team wins
    long_is_home: bool = True
    outcome: Decimal | None = None  # scripted settlement value (e.g. 0.5 for a tie)
    fixture_id: str = ""  # generated when empty
    tick: Decimal = Decimal("0.01")
    min_qty: Decimal = Decimal("1")
    fee_coefficient: Decimal | None = None
    serves_game_start_time: bool = True  # False: the Market object lacks `gameStartTime`


# The leagues' reference data on the exchange (`GET /v2/leagues`): name, league id, sport id, tag
# id and the active series' id (the NFL's is the 2026 series id seen in the field, the others are
# made up). Ids are int32 JSON numbers, as in the docs' schema and the captured league object.
LEAGUE_REFDATA: dict[str, tuple[str, int, int, int, int]] = {
    "nfl": ("NFL", 1, 1, 3, 12185),
    "nba": ("NBA", 3, 2, 5, 12190),
    "nhl": ("NHL", 6, 4, 8, 12193),
}


# Trading parameters of the default schedule's games, by index modulo 3: the real exchange
# lists moneylines with ticks of 0.01, 0.005 (MLB capture) and 0.0025 (NFL), fractional minimum
# quantities of 0.01 and a fee coefficient of 0.06 (reference §3.4, captures).
_DEFAULT_TRADING = (
    (Decimal("0.01"), Decimal("1"), None),
    (Decimal("0.005"), Decimal("0.01"), Decimal("0.06")),
    (Decimal("0.0025"), Decimal("0.01"), Decimal("0.06")),
)


@attrs.frozen(slots=True)
class LeagueSchedule:
    """Waves of games per league, listed continuously (timing in `Timing`: `first_wave_seconds`,
    `wave_spacing_seconds`, `wave_stagger_seconds`, `list_ahead_seconds`, `game_length_seconds`,
    `settle_delay_seconds`, `prune_after_seconds`).

    Wave k's j-th game of a league starts at `first_wave + k * wave_spacing + j * stagger` and is
    listed (event and moneyline on the exchange, fixture at the local OpticOdds) `list_ahead`
    before that. `waves=None` rolls forever.
    """

    leagues: tuple[str, ...] = ("nba", "nhl")
    games_per_wave: int = 3  # per league; more than the league's teams allow adds made-up teams
    waves: int | None = None

# The league schedule's games are all priced as the captured moneylines are: fee coefficient 0.06,
# fractional minimum 0.01, ticks 0.01 / 0.005 (MLB capture) / 0.0025 (NFL capture) in turn.
_SCHEDULE_TRADING = (
    (Decimal("0.01"), Decimal("0.01"), Decimal("0.06")),
    (Decimal("0.005"), Decimal("0.01"), Decimal("0.06")),
    (Decimal("0.0025"), Decimal("0.01"), Decimal("0.06")),
)


@attrs.frozen(slots=True)
class ScenarioSpec:
    seed: int = 0
    games: tuple[GameSpec, ...] = ()
    timing: Timing = Timing()
    liquidity: Liquidity = Liquidity()
    schedule: LeagueSchedule | None = None  # a rolling league schedule on top of `games`


def default_spec(seed: int = 0, n_games: int = 6, timing: Timing | None = None) -> ScenarioSpec:
    """A lively demo: `n_games` across nba/nhl/nfl, the first starting `first_start_seconds` after
    the start and settling within about ten minutes, later ones spaced out."""
    timing = timing or Timing()
    rng = random.Random(f"{seed}:games")
    games: list[GameSpec] = []
    for i in range(n_games):
        league = ("nba", "nhl", "nfl")[i % 3]
        busy = {t.abbreviation for g in games if g.league == league for t in (g.home, g.away)}
        games.append(_generated_game(rng, i, timing, busy))
    return ScenarioSpec(seed=seed, games=tuple(games), timing=timing)


def league_schedule_spec(
    seed: int = 0,
    leagues: Sequence[str] = ("nba", "nhl"),
    *,
    games_per_wave: int = 3,
    waves: int | None = None,
    wave_spacing_seconds: float = 4 * 3600.0,
    list_ahead_seconds: float = 6 * 3600.0,
    game_length_seconds: float = 2.5 * 3600.0,
    settle_delay_seconds: float = 600.0,
    first_wave_seconds: float = 1800.0,
    wave_stagger_seconds: float = 900.0,
    timing: Timing | None = None,
    liquidity: Liquidity | None = None,
) -> ScenarioSpec:
    """A world where each league lists new games continuously: every `wave_spacing_seconds` a
    wave of `games_per_wave` games per league starts (one every `wave_stagger_seconds`), each
    listed `list_ahead_seconds` before its start, played for `game_length_seconds`, closed, then
    resolved `settle_delay_seconds` later; settled games are pruned from the world a day later.
    Deterministic per seed. `timing` supplies the other clocks (ticks, quotes, takers); the
    default is a calmer market than the default world's (quotes every 15 s, 0.03 taker orders
    per market per second, 5 levels a side), since a schedule holds many markets for hours:
    about 1-2 s of CPU per simulated hour per 10 listed markets. For hours of schedule in a
    test, also raise `tick_seconds` (e.g. 5) and `quote_refresh_seconds` (e.g. 30)."""
    for league in leagues:
        if league not in LEAGUES:
            raise ValueError(f"unknown league {league!r} (known: {sorted(LEAGUES)})")
    if games_per_wave < 1:
        raise ValueError("games_per_wave must be at least 1")
    timing = attrs.evolve(
        timing or Timing(quote_refresh_seconds=15.0, taker_rate=0.03),
        respawn=False,
        wave_spacing_seconds=wave_spacing_seconds,
        list_ahead_seconds=list_ahead_seconds,
        game_length_seconds=game_length_seconds,
        settle_delay_seconds=settle_delay_seconds,
        first_wave_seconds=first_wave_seconds,
        wave_stagger_seconds=wave_stagger_seconds,
    )
    return ScenarioSpec(
        seed=seed,
        timing=timing,
        liquidity=liquidity or Liquidity(levels=5, ladder_step=Decimal("0.01")),
        schedule=LeagueSchedule(tuple(leagues), games_per_wave, waves),
    )


DEMO_SPEED = 20.0  # the demo's world (and bot) run this many times faster than real time


def demo_world(seed: int = 0) -> ScenarioSpec:
    """The `run --sim` demo's league schedule, meant to run at `DEMO_SPEED` (20x): games listed
    4 sim-minutes ahead, 6 sim-minutes long, settled 1 sim-minute after the end, a wave of two
    games per league (nba, nhl) every 5 sim-minutes. The first game starts 2 sim-minutes in and
    settles about 9 sim-minutes in, i.e. under 30 s of real time; later waves keep coming."""
    return league_schedule_spec(
        seed,
        ("nba", "nhl"),
        games_per_wave=2,
        wave_spacing_seconds=300.0,
        list_ahead_seconds=240.0,
        game_length_seconds=360.0,
        settle_delay_seconds=60.0,
        first_wave_seconds=120.0,
        wave_stagger_seconds=30.0,
        timing=Timing(quote_refresh_seconds=5.0, lag_seconds=60.0),
    )


def _generated_game(
    rng: random.Random, index: int, timing: Timing, busy: set[str] | None = None
) -> GameSpec:
    """Game `index` of the default schedule; avoids teams in `busy` (abbreviations) if it can."""
    league = ("nba", "nhl", "nfl")[index % 3]
    sport, teams = LEAGUES[league]
    free = [t for t in teams if t[1] not in (busy or set())]
    home, away = rng.sample(free if len(free) >= 2 else teams, 2)
    if index == 0:
        start, length = timing.first_start_seconds, timing.first_length_seconds
    else:
        start = timing.first_start_seconds + index * timing.start_spacing_seconds
        length = timing.first_length_seconds * (1.5 + rng.random())
    tick, min_qty, fee = _DEFAULT_TRADING[index % 3 if index < 3 else 0]
    return GameSpec(
        league=league,
        sport=sport,
        home=TeamSpec(*home),
        away=TeamSpec(*away),
        start_offset_seconds=start,
        length_seconds=round(length),
        true_prob=Decimal(str(round(rng.uniform(0.25, 0.75), 3))),
        long_is_home=rng.random() < 0.5,
        tick=tick,
        min_qty=min_qty,
        fee_coefficient=fee,
    )


# --- JSON scenarios -----------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> ScenarioSpec:
    """Read a scenario from JSON: {"seed", "timing": {...}, "liquidity": {...}, "games": [...],
    "schedule": {...}?}; games as GameSpec fields, teams as {"name", "abbreviation",
    "opticodds_id"?}, decimals as strings or numbers; "schedule" as LeagueSchedule fields
    ({"leagues": ["nba", "nhl"], "games_per_wave": 3, "waves": null}) with its clocks in
    "timing" (a schedule turns `respawn` off)."""
    return scenario_from_dict(json.loads(Path(path).read_text()))


def scenario_from_dict(data: dict[str, Any]) -> ScenarioSpec:
    def dec(v: Any) -> Decimal:
        return Decimal(str(v))

    def team(d: dict[str, Any]) -> TeamSpec:
        return TeamSpec(d["name"], d["abbreviation"], d.get("opticodds_id", ""))

    timing = Timing(**data.get("timing", {}))
    liq_raw = dict(data.get("liquidity", {}))
    for key in ("half_spread", "ladder_step"):
        if liq_raw.get(key) is not None:
            liq_raw[key] = dec(liq_raw[key])
    games = []
    for g in data.get("games", []):
        league = g["league"]
        games.append(
            GameSpec(
                league=league,
                sport=g.get("sport") or LEAGUES.get(league, ("unknown", []))[0],
                home=team(g["home"]),
                away=team(g["away"]),
                start_offset_seconds=float(g["start_offset_seconds"]),
                length_seconds=float(g["length_seconds"]),
                true_prob=dec(g.get("true_prob", "0.5")),
                long_is_home=bool(g.get("long_is_home", True)),
                outcome=None if g.get("outcome") is None else dec(g["outcome"]),
                fixture_id=g.get("fixture_id", ""),
                tick=dec(g.get("tick", "0.01")),
                min_qty=dec(g.get("min_qty", "1")),
                fee_coefficient=None
                if g.get("fee_coefficient") is None
                else dec(g["fee_coefficient"]),
                serves_game_start_time=bool(g.get("serves_game_start_time", True)),
            )
        )
    schedule = None
    if data.get("schedule") is not None:
        raw = data["schedule"]
        leagues = tuple(raw.get("leagues", ("nba", "nhl")))
        unknown = [lg for lg in leagues if lg not in LEAGUES]
        if unknown:
            raise ValueError(f"unknown league(s) {unknown} (known: {sorted(LEAGUES)})")
        schedule = LeagueSchedule(leagues, int(raw.get("games_per_wave", 3)),
                                  None if raw.get("waves") is None else int(raw["waves"]))
        timing = attrs.evolve(timing, respawn=False)
    return ScenarioSpec(
        seed=int(data.get("seed", 0)),
        games=tuple(games),
        timing=timing,
        liquidity=Liquidity(**liq_raw),
        schedule=schedule,
    )


# --- scripted books ----------------------------------------------------------------------------------


def script_book(
    exchange: Exchange,
    slug: str,
    bids: Iterable[tuple[Decimal | str, Decimal | str | int]] = (),
    offers: Iterable[tuple[Decimal | str, Decimal | str | int]] = (),
    *,
    account: str = SCRIPT_ACCOUNT,
) -> list[str]:
    """Replace `account`'s orders in `slug` with exactly these GTC bids (BUY_LONG) and offers
    (BUY_SHORT) at YES prices; creates the account with ample cash. Returns the order ids."""
    if not exchange.has_account(account):
        exchange.create_account(account, BIG_CASH)
    ids = []
    with exchange.batch():
        exchange.cancel_all(account, [slug])
        for intent, levels in ((Intent.BUY_LONG, bids), (Intent.BUY_SHORT, offers)):
            for price, qty in levels:
                ids.append(
                    exchange.submit(
                        account,
                        OrderSpec(
                            slug, intent, price=Decimal(str(price)), quantity=Decimal(str(qty))
                        ),
                    )
                )
    return ids


# --- the driver --------------------------------------------------------------------------------------


@attrs.define(slots=True)
class _MakerState:
    view: float
    lag_until: datetime | None = None
    quotes: dict[tuple[Side, Decimal], str] = attrs.field(factory=dict)


class Scenario:
    """Drives one World and one Exchange from a ScenarioSpec (see the module docstring)."""

    def __init__(
        self,
        spec: ScenarioSpec,
        *,
        start: datetime,
        clock: Callable[[], datetime] | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        self.spec = spec
        self.timing = spec.timing
        self.liquidity = spec.liquidity
        self.start = start
        self._model_time: datetime = start
        self.clock = clock or (lambda: self._model_time)
        self.exchange = exchange or Exchange(self.clock, seed=spec.seed)
        self.world = World(started_at=start)
        self.quiet: set[str] = set()  # market slugs with no background makers / takers
        self._next_tick = start
        self._next_refresh = start
        self._rng_drift = random.Random(f"{spec.seed}:drift")
        self._rng_quotes = random.Random(f"{spec.seed}:quotes")
        self._rng_takers = random.Random(f"{spec.seed}:takers")
        self._rng_outcomes = random.Random(f"{spec.seed}:outcomes")
        self._rng_ids = random.Random(f"{spec.seed}:ids")
        self._rng_respawn = random.Random(f"{spec.seed}:respawn")
        self._teams: dict[tuple[str, str], SimTeam] = {}
        self._truth: dict[str, float] = {}  # slug -> true probability (float for the walk)
        self._outcomes: dict[str, Decimal | None] = {}  # slug -> scripted settlement value
        self._makers: dict[tuple[str, str], _MakerState] = {}
        self._is_setup = False
        self._scheduled: list[tuple[datetime, int, Callable[[], object]]] = []
        self._scheduled_seq = itertools.count()
        self._games_added = 0  # ids come from this count (the world forgets pruned games)
        self._wave = 0  # the league schedule's next wave to draw
        self._upcoming: list[GameSpec] = []  # drawn, not yet listed (sorted by start)
        self._next_prune = start
        self._next_forget = start
        self._on_listed: list[Callable[[SimGame], object]] = []
        self.pruned = 0  # settled games dropped from the world

    @property
    def maker_accounts(self) -> list[str]:
        return [f"bg-maker-{i + 1}" for i in range(self.liquidity.makers)]

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the background accounts and every game of the spec (idempotent)."""
        if self._is_setup:
            return
        self._is_setup = True
        for acct in [*self.maker_accounts, TAKER_ACCOUNT]:
            if not self.exchange.has_account(acct):
                self.exchange.create_account(acct, BIG_CASH)
        for slug, (name, league_id, sport_id, tag_id, series_id) in LEAGUE_REFDATA.items():
            if slug not in self.exchange.leagues:
                self.exchange.add_league(
                    slug,
                    name,
                    league_id=league_id,
                    sport_id=sport_id,
                    tag_id=tag_id,
                    series_id=series_id,
                    series_slug=f"{slug}-{self.start.year}",
                    abbreviation=name,
                )
        for g in self.spec.games:
            self.add_game(g)
        self._roll_schedule(self.start)

    def _team(self, league: str, spec: TeamSpec) -> SimTeam:
        key = (league, spec.abbreviation)
        team = self._teams.get(key)
        if team is None:
            team = SimTeam(
                name=spec.name,
                abbreviation=spec.abbreviation,
                opticodds_id=spec.opticodds_id or f"{self._rng_ids.getrandbits(48):012X}",
                team_id=100 + len(self._teams),
            )
            self._teams[key] = team
        return team

    def add_game(self, g: GameSpec) -> SimGame:
        """Add one game to the world and list its event and moneyline market on the exchange."""
        n = self._games_added
        self._games_added += 1
        home, away = self._team(g.league, g.home), self._team(g.league, g.away)
        start_time = self.start + timedelta(seconds=g.start_offset_seconds)
        long_team, short_team = (home, away) if g.long_is_home else (away, home)
        day = start_time.strftime("%Y-%m-%d")
        event_slug = f"{g.league}-{long_team.abbreviation}-{short_team.abbreviation}-{day}".lower()
        market_slug = f"aec-{event_slug}"
        if event_slug in self.exchange.events:  # a rematch the same day
            event_slug = f"{event_slug}-{n + 1}"
            market_slug = f"aec-{event_slug}"
        fixture_id = g.fixture_id or (
            start_time.strftime("%Y%m%d") + f"{self._rng_ids.getrandbits(32):08X}"
        )
        event_id, market_id = 1000 + n, 5000 + n
        side_ids = (9000 + 2 * n, 9001 + 2 * n)
        game = SimGame(
            fixture_id=fixture_id,
            league=g.league,
            sport=g.sport,
            home=home,
            away=away,
            start_time=start_time,
            event_id=event_id,
            event_slug=event_slug,
            market_id=market_id,
            market_slug=market_slug,
            long_is_home=g.long_is_home,
            true_prob_long=g.true_prob,
            market_side_ids=side_ids,
            end_time=start_time + timedelta(seconds=g.length_seconds),
        )
        title = f"{away.name} at {home.name}"
        league = self.exchange.leagues.get(g.league)
        series = (
            self.exchange.series.get(league.active_series_id)
            if league is not None and league.active_series_id is not None
            else None
        )
        self.exchange.add_event(
            event_id,
            event_slug,
            title,
            start_time=start_time,
            league=g.league,
            sport=g.sport,
            series_slug=series.slug if series is not None else g.league,
            series_id=series.series_id if series is not None else None,
            teams=(
                Team(
                    home.team_id,
                    home.name,
                    home.abbreviation,
                    g.league,
                    ((PROVIDER_OPTICODDS, home.opticodds_id),),
                    "home",
                ),
                Team(
                    away.team_id,
                    away.name,
                    away.abbreviation,
                    g.league,
                    ((PROVIDER_OPTICODDS, away.opticodds_id),),
                    "away",
                ),
            ),
            external_ids={"opticodds": fixture_id},
        )
        self.exchange.add_market(
            market_slug,
            market_id,
            event_id,
            title=title,
            question=f"Will the {long_team.name} beat the {short_team.name}?",
            tick=g.tick,
            min_qty=g.min_qty,
            fee_coefficient=g.fee_coefficient,
            sides=(
                MarketSide(
                    side_ids[0],
                    True,
                    long_team.name,
                    long_team.team_id,
                    long_team.abbreviation.lower(),
                    long_team.normalized,
                ),
                MarketSide(
                    side_ids[1],
                    False,
                    short_team.name,
                    short_team.team_id,
                    short_team.abbreviation.lower(),
                    short_team.normalized,
                ),
            ),
            sports_market_type=f"{g.sport}_team_full_game_winner",
            external_market_type="moneyline",
        ).serves_game_start_time = g.serves_game_start_time
        self.world.games.append(game)
        self._truth[market_slug] = float(g.true_prob)
        self._outcomes[market_slug] = g.outcome
        for acct in self.maker_accounts:
            self._makers[(acct, market_slug)] = _MakerState(view=float(g.true_prob))
        for callback in list(self._on_listed):
            callback(game)
        return game

    def on_game_listed(self, callback: Callable[[SimGame], object]) -> None:
        """Call `callback(game)` right after each game is listed (its market exists), e.g. to
        script an edge or an outcome into every game of a league schedule as it appears."""
        self._on_listed.append(callback)

    def script_outcome(self, slug: str, value: Decimal) -> None:
        """The game will settle at `value` (1 = the long team wins, 0 = loses, 0.5 = a tie)."""
        if not Decimal(0) <= value <= Decimal(1):
            raise ValueError("an outcome is within 0 and 1")
        self.game(slug)
        self._outcomes[slug] = value

    # --- stepping ------------------------------------------------------------------------------

    def step(self, now: datetime) -> None:
        """Advance the model through every tick due up to `now` (deterministic per tick)."""
        self.setup()
        tick = timedelta(seconds=self.timing.tick_seconds)
        while self._next_tick <= now:
            t = self._next_tick
            self._model_time = t
            self._advance(t)
            self._next_tick = t + tick
        self._model_time = max(self._model_time, now)

    async def run(
        self,
        *,
        tick_seconds: float | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call `step(clock())` every `tick_seconds` (default: the model tick) forever."""
        self.setup()
        task_status.started()
        interval = tick_seconds if tick_seconds is not None else self.timing.tick_seconds
        while True:
            self.step(self.clock())
            await trio.sleep(interval)

    def _advance(self, t: datetime) -> None:
        ex = self.exchange
        with ex.batch():
            ex.expire_due(t)
            self._roll_schedule(t)
            self._run_scheduled(t)
            for game in list(self.world.games):
                self._lifecycle(game, t)
            if t >= self._next_prune:
                self._next_prune = t + timedelta(seconds=60)
                self._prune(t)
            if self.spec.schedule is not None and t >= self._next_forget:
                self._next_forget = t + timedelta(seconds=600)  # a world meant to run for days
                self.exchange.forget_history(
                    [*self.maker_accounts, TAKER_ACCOUNT],
                    t - timedelta(seconds=self.timing.prune_after_seconds),
                )
            for game in self.world.games:
                if game.status in ("unplayed", "live"):
                    self._drift(game)
            if t >= self._next_refresh:
                self._next_refresh = t + timedelta(seconds=self.timing.quote_refresh_seconds)
                for game in self.world.games:
                    if game.status in ("unplayed", "live") and game.market_slug not in self.quiet:
                        self._requote(game, t)
            for game in self.world.games:
                if game.status in ("unplayed", "live") and game.market_slug not in self.quiet:
                    self._maybe_take(game)

    def _lifecycle(self, game: SimGame, t: datetime) -> None:
        ex = self.exchange
        slug = game.market_slug
        if game.status == "unplayed" and t >= game.start_time:
            game.status = "live"
            ex.update_event(game.event_slug, live=True)
        if game.status == "live" and game.end_time is not None and t >= game.end_time:
            game.status = "completed"
            outcome = self._outcomes.get(slug)
            if outcome is None:
                outcome = (
                    Decimal(1) if self._rng_outcomes.random() < self._truth[slug] else Decimal(0)
                )
            game.settlement = outcome
            game.true_prob_long = outcome if outcome in (0, 1) else game.true_prob_long
            self._truth[slug] = float(outcome)
            for acct in self.maker_accounts:
                ex.cancel_all(acct, [slug])
                self._makers[(acct, slug)].quotes.clear()
            if ex.markets[slug].settlement is None:
                ex.set_market_state(slug, MarketState.CLOSED)
            ex.update_event(game.event_slug, live=False, ended=True)
        if (
            game.status in ("completed", "cancelled")
            and game.settled_at is None
            and game.end_time is not None
            and t >= game.end_time + timedelta(seconds=self.timing.settle_delay_seconds)
        ):
            assert game.settlement is not None
            if ex.markets[slug].settlement is None:
                ex.settle(slug, game.settlement)
            game.settled_at = t
            ex.update_event(game.event_slug, closed=True)
            if self.timing.respawn:
                self._respawn(t)

    # --- the league schedule ---------------------------------------------------------------------

    def _roll_schedule(self, t: datetime) -> None:
        """Draw every wave whose first listing is due by `t`; list every drawn game due by `t`."""
        sched = self.spec.schedule
        if sched is None:
            return
        tm = self.timing
        while sched.waves is None or self._wave < sched.waves:
            first_start = tm.first_wave_seconds + self._wave * tm.wave_spacing_seconds
            if self.start + timedelta(seconds=first_start - tm.list_ahead_seconds) > t:
                break
            self._upcoming.extend(self._wave_games(sched, self._wave))
            self._upcoming.sort(key=lambda g: g.start_offset_seconds)
            self._wave += 1
        ahead = timedelta(seconds=tm.list_ahead_seconds)
        while self._upcoming:
            g = self._upcoming[0]
            start = self.start + timedelta(seconds=g.start_offset_seconds)
            if start - ahead > t:
                break
            self._upcoming.pop(0)
            over = start + timedelta(seconds=g.length_seconds + tm.settle_delay_seconds)
            if over > self.start:  # a game that settled before the world began is not listed
                self.add_game(g)

    def _wave_games(self, sched: LeagueSchedule, wave: int) -> list[GameSpec]:
        rng = random.Random(f"{self.spec.seed}:wave:{wave}")
        tm = self.timing
        out: list[GameSpec] = []
        for league in sched.leagues:
            sport, teams = LEAGUES[league]
            pool = list(teams)
            extra = 1
            while len(pool) < 2 * sched.games_per_wave:  # a crowded schedule: made-up teams
                pool.append((f"{league.upper()} Expansion {extra}", f"X{extra:02d}"))
                extra += 1
            picks = rng.sample(pool, 2 * sched.games_per_wave)
            for j in range(sched.games_per_wave):
                tick, min_qty, fee = _SCHEDULE_TRADING[(wave + j) % len(_SCHEDULE_TRADING)]
                out.append(
                    GameSpec(
                        league=league,
                        sport=sport,
                        home=TeamSpec(*picks[2 * j]),
                        away=TeamSpec(*picks[2 * j + 1]),
                        start_offset_seconds=tm.first_wave_seconds
                        + wave * tm.wave_spacing_seconds
                        + j * tm.wave_stagger_seconds,
                        length_seconds=tm.game_length_seconds,
                        true_prob=Decimal(str(round(rng.uniform(0.25, 0.75), 3))),
                        long_is_home=rng.random() < 0.5,
                        tick=tick,
                        min_qty=min_qty,
                        fee_coefficient=fee,
                    )
                )
        return out

    def _prune(self, t: datetime) -> None:
        """Forget games settled more than `prune_after_seconds` ago (the exchange keeps their
        markets and settlements, as the real one does; the world and its odds move on)."""
        cutoff = t - timedelta(seconds=self.timing.prune_after_seconds)
        old = [g for g in self.world.games if g.settled_at is not None and g.settled_at < cutoff]
        if not old:
            return
        gone = {g.market_slug for g in old}
        self.world.games = [g for g in self.world.games if g.market_slug not in gone]
        for slug in gone:
            self._truth.pop(slug, None)
            self._outcomes.pop(slug, None)
            self.quiet.discard(slug)
            for acct in self.maker_accounts:
                self._makers.pop((acct, slug), None)
        self.pruned += len(gone)

    def listed_markets(self) -> list[str]:
        """Slugs of the world's games that are listed and not yet settled."""
        return [g.market_slug for g in self.world.games if g.settled_at is None]

    def _respawn(self, t: datetime) -> None:
        index = len(self.world.games)
        offset = (t - self.start).total_seconds() + self.timing.start_spacing_seconds
        busy = {
            team.abbreviation
            for g in self.world.games
            if g.status in ("unplayed", "live")
            for team in (g.home, g.away)
        }
        spec = _generated_game(self._rng_respawn, index, self.timing, busy)
        spec = attrs.evolve(
            spec,
            start_offset_seconds=offset,
            length_seconds=max(60.0, self.timing.first_length_seconds),
        )
        self.add_game(spec)

    def _drift(self, game: SimGame) -> None:
        per_min = (
            self.timing.live_drift_per_minute
            if game.status == "live"
            else self.timing.drift_per_minute
        )
        sd = per_min * math.sqrt(self.timing.tick_seconds / 60.0)
        p = self._truth[game.market_slug] + self._rng_drift.gauss(0.0, sd)
        p = min(0.97, max(0.03, p))
        self._truth[game.market_slug] = p
        game.true_prob_long = Decimal(str(round(p, 4)))

    def _requote(self, game: SimGame, t: datetime) -> None:
        ex = self.exchange
        slug = game.market_slug
        market = ex.markets[slug]
        if not market.active:
            return
        liq = self.liquidity
        rng = self._rng_quotes
        for acct in self.maker_accounts:
            st = self._makers[(acct, slug)]
            lagging = st.lag_until is not None and t < st.lag_until
            if not lagging:
                st.lag_until = None
                st.view = self._truth[slug] + rng.gauss(0.0, liq.view_noise)
                if rng.random() < self.timing.lag_probability:
                    st.lag_until = t + timedelta(seconds=self.timing.lag_seconds)
            view = Decimal(str(round(min(0.97, max(0.03, st.view)), 4)))
            target = self._ladder(view, market.tick)
            # forget quotes that filled or were canceled; cancel the ones off the new ladder
            for key, oid in list(st.quotes.items()):
                if ex.order_state(acct, oid) not in (
                    OrderState.NEW,
                    OrderState.PARTIALLY_FILLED,
                ):
                    del st.quotes[key]
                elif key not in target:
                    ex.cancel(acct, oid)
                    del st.quotes[key]
            book = ex.bbo(slug)
            for side, price in target:
                if (side, price) in st.quotes:
                    continue
                if side is Side.BUY and book.best_ask is not None and price >= book.best_ask:
                    continue
                if side is Side.SELL and book.best_bid is not None and price <= book.best_bid:
                    continue
                qty = floor_to_step(
                    Decimal(rng.randint(liq.min_level_qty, liq.max_level_qty)), market.min_qty
                )
                intent = Intent.BUY_LONG if side is Side.BUY else Intent.BUY_SHORT
                oid = ex.submit(
                    acct,
                    OrderSpec(slug, intent, price=price, quantity=qty, post_only=True),
                )
                if ex.order_state(acct, oid) is OrderState.NEW:
                    st.quotes[(side, price)] = oid

    def _ladder(self, view: Decimal, tick: Decimal) -> set[tuple[Side, Decimal]]:
        half = self.liquidity.half_spread
        step = self.liquidity.ladder_step
        if step is not None and step > tick and floor_to_step(step, tick) == step:
            tick = step
        top_bid = floor_to_step(view - half, tick)
        top_ask = ceil_to_step(view + half, tick)
        if top_ask <= top_bid:
            top_ask = top_bid + tick
        out: set[tuple[Side, Decimal]] = set()
        for k in range(self.liquidity.levels):
            bid, ask = top_bid - k * tick, top_ask + k * tick
            if MIN_PRICE <= bid <= MAX_PRICE:
                out.add((Side.BUY, bid))
            if MIN_PRICE <= ask <= MAX_PRICE:
                out.add((Side.SELL, ask))
        return out

    def _maybe_take(self, game: SimGame) -> None:
        rng = self._rng_takers
        if rng.random() >= self.timing.taker_rate * self.timing.tick_seconds:
            return
        ex = self.exchange
        slug = game.market_slug
        book = ex.bbo(slug)
        truth = Decimal(str(round(self._truth[slug], 4)))
        if rng.random() < self.liquidity.informed_share:
            mid = book.current_px if book.current_px is not None else truth
            buy = truth >= mid
        else:
            buy = rng.random() < 0.5
        price = book.best_ask if buy else book.best_bid
        if price is None:
            return
        qty = floor_to_step(
            Decimal(rng.randint(1, self.liquidity.max_taker_qty)), ex.markets[slug].min_qty
        )
        if qty <= 0:
            return
        intent = Intent.BUY_LONG if buy else Intent.BUY_SHORT
        ex.submit(
            TAKER_ACCOUNT,
            OrderSpec(slug, intent, price=price, quantity=qty, tif=TimeInForce.IOC),
        )

    # --- helpers for tests and demos -----------------------------------------------------------

    def true_prob(self, slug: str) -> Decimal:
        return Decimal(str(round(self._truth[slug], 4)))

    def script_book(
        self,
        slug: str,
        bids: Sequence[tuple[Decimal | str, Decimal | str | int]] = (),
        offers: Sequence[tuple[Decimal | str, Decimal | str | int]] = (),
    ) -> list[str]:
        """Silence background liquidity in `slug`, clear it, and place exactly these levels."""
        self.setup()
        self.quiet.add(slug)
        for acct in self.maker_accounts:
            self.exchange.cancel_all(acct, [slug])
            self._makers[(acct, slug)].quotes.clear()
        return script_book(self.exchange, slug, bids, offers)

    # --- the fault / scenario menu ----------------------------------------------------------
    # Timed situations the real exchange produces; each runs on scenario time (`step`).

    def at(self, when: datetime, action: Callable[[], object]) -> None:
        """Run `action` at the first tick at or after `when` (scenario time)."""
        self._scheduled.append((when, next(self._scheduled_seq), action))
        self._scheduled.sort(key=lambda x: (x[0], x[1]))

    def stub_quote_after_maintenance(
        self,
        slug: str,
        bids: Sequence[tuple[Decimal | str, Decimal | str | int]],
        offers: Sequence[tuple[Decimal | str, Decimal | str | int]],
        *,
        stub_side: Side = Side.BUY,
        normal_after_seconds: float = 5.0,
    ) -> None:
        """What a reopening after maintenance can look like: one side shows a stub of 1 contract
        at 0.01 (a bid; at 0.99 for an offer) and nothing else; `normal_after_seconds` later the
        normal book (`bids`, `offers`) is back. Call it when maintenance ends."""
        if stub_side is Side.BUY:
            self.script_book(slug, bids=[("0.01", 1)])
        else:
            self.script_book(slug, offers=[("0.99", 1)])
        self.at(
            self.clock() + timedelta(seconds=normal_after_seconds),
            lambda: self.script_book(slug, bids, offers),
        )

    def halted_at_start(self, slug: str, reopen_after_seconds: float) -> None:
        """The market is HALTED now (e.g. while the bot starts) and reopens later."""
        self.halt(slug, reopen_after_seconds)

    def game(self, slug: str) -> SimGame:
        """The world's game of a market slug (KeyError if unknown or pruned)."""
        game = self.world.game_by_slug(slug)
        if game is None:
            raise KeyError(slug)
        return game

    def halt(self, slug: str, reopen_after_seconds: float | None = None) -> None:
        """HALT the market now (no entry, no cancel, no matching); with `reopen_after_seconds`
        it reopens by itself that much later (else call `reopen`)."""
        self.exchange.set_market_state(slug, MarketState.HALTED)
        if reopen_after_seconds is not None:
            self.at(self.clock() + timedelta(seconds=reopen_after_seconds),
                    lambda: self.reopen(slug))

    def reopen(self, slug: str) -> None:
        """A halted market trades again (a no-op once it is settled or closed by its game)."""
        m = self.exchange.markets[slug]
        if m.settlement is None and m.state is MarketState.HALTED:
            self.exchange.set_market_state(slug, MarketState.OPEN)

    def new_season(self, league: str) -> int:
        """The league moves to a new active series (a new id, slug `{league}-{year}-2`, ...):
        games listed from now on belong to it, games already listed stay in the old one, which
        the league's event board (`/v2/leagues/{slug}/events`) no longer shows. Returns the id."""
        lg = self.exchange.leagues[league]
        series_id = max(self.exchange.series) + 1
        n = sum(1 for s in self.exchange.series.values() if s.league == league) + 1
        self.exchange.roll_series(league, series_id, f"{league}-{self.start.year}-{n}")
        assert lg.active_series_id == series_id
        return series_id

    def postpone(self, slug: str, by_seconds: float) -> None:
        """Move an unplayed game's start (and end) by `by_seconds`, in place: the event's and
        market's start time on the exchange and the fixture's `start_date` at the local OpticOdds
        (which pushes a `fixture-status` with old/new start dates); slugs and ids stay."""
        game = self.game(slug)
        if game.status != "unplayed":
            raise ValueError(f"{slug}: a {game.status} game cannot be postponed")
        delta = timedelta(seconds=by_seconds)
        game.start_time += delta
        if game.end_time is not None:
            game.end_time += delta
        self.exchange.update_event(game.event_slug, start_time=game.start_time)

    def finish_game(self, slug: str, outcome: Decimal | None = None) -> None:
        """End the game now (live first if it was unplayed): the market closes at once and
        resolves `settle_delay_seconds` later, at `outcome` if given, else drawn from the truth.
        With no bot connected this is "a market resolved while the bot is down"."""
        game = self.game(slug)
        if game.status not in ("unplayed", "live"):
            raise ValueError(f"{slug}: the game is already {game.status}")
        now = self.clock()
        if outcome is not None:
            self._outcomes[slug] = outcome
        with self.exchange.batch():
            if game.status == "unplayed":
                game.status = "live"
                self.exchange.update_event(game.event_slug, live=True)
            game.end_time = now
            self._lifecycle(game, now)

    def cancel_game(self, slug: str) -> None:
        """The game is cancelled: the fixture goes `cancelled`, the market closes now and
        resolves `settle_delay_seconds` later at the last fair price (LFMP, the truth rounded to
        the cent), as the real exchange settles a cancelled game."""
        game = self.game(slug)
        if game.status not in ("unplayed", "live"):
            raise ValueError(f"{slug}: the game is already {game.status}")
        ex = self.exchange
        now = self.clock()
        lfmp = Decimal(str(round(self._truth[slug], 2)))
        game.status = "cancelled"
        game.end_time = now
        game.settlement = lfmp
        with ex.batch():
            for acct in self.maker_accounts:
                ex.cancel_all(acct, [slug])
                self._makers[(acct, slug)].quotes.clear()
            if ex.markets[slug].settlement is None:
                ex.set_market_state(slug, MarketState.CLOSED)
            ex.update_event(game.event_slug, live=False, ended=True)

    def _run_scheduled(self, t: datetime) -> None:
        while self._scheduled and self._scheduled[0][0] <= t:
            _, _, action = self._scheduled.pop(0)
            action()


def build_scenario(
    seed: int = 0,
    *,
    start: datetime,
    clock: Callable[[], datetime] | None = None,
    n_games: int = 6,
    timing: Timing | None = None,
    spec: ScenarioSpec | None = None,
) -> Scenario:
    """The default lively world (or `spec`), set up and ready to step."""
    sc = Scenario(spec or default_spec(seed, n_games, timing), start=start, clock=clock)
    sc.setup()
    return sc


class SimClock:
    """Scenario time: `start` plus the Trio clock's elapsed time since its first read inside Trio.

    Outside Trio it returns the last value (initially `start`), so it never goes backwards. Under a
    `MockClock` the scenario (and the exchange's timestamps and GTD expiry) follow virtual time;
    under Trio's real clock this is wall time from `start`.
    """

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._t0: float | None = None
        self._last = start

    def __call__(self) -> datetime:
        try:
            now = trio.current_time()
        except RuntimeError:
            return self._last
        if self._t0 is None:
            self._t0 = now
        self._last = max(self._last, self.start + timedelta(seconds=now - self._t0))
        return self._last


def build_sim(
    *,
    seed: int = 0,
    scenario: Any = None,
    now: datetime,
    clock: Callable[[], datetime] | None = None,
) -> tuple[World, Exchange, Scenario]:
    """What the server's runner needs: (world, exchange, driver), the driver set up, not started.

    `scenario`: None (the default lively world for `seed`), a path to a JSON scenario, a
    `ScenarioSpec`, or a `Scenario` (used as is). The exchange's clock is `clock` when given (the
    one wall clock a bot shares with this world, e.g. a `polybot.clock.ReplayClock`'s `now`),
    else a `SimClock` from `now`.
    """
    if isinstance(scenario, Scenario):
        scenario.setup()
        return scenario.world, scenario.exchange, scenario
    if scenario is None:
        spec = default_spec(seed)
    elif isinstance(scenario, ScenarioSpec):
        spec = scenario
    elif isinstance(scenario, str | Path):
        data = json.loads(Path(scenario).read_text())
        data.setdefault("seed", seed)  # the file's own seed wins
        spec = scenario_from_dict(data)
    else:
        raise TypeError(f"unsupported scenario: {scenario!r}")
    sc = Scenario(spec, start=now, clock=clock or SimClock(now))
    sc.setup()
    return sc.world, sc.exchange, sc


__all__ = [
    "BIG_CASH",
    "DEMO_SPEED",
    "LEAGUE_REFDATA",
    "SCRIPT_ACCOUNT",
    "TAKER_ACCOUNT",
    "GameSpec",
    "LeagueSchedule",
    "Liquidity",
    "Scenario",
    "ScenarioSpec",
    "SimClock",
    "TeamSpec",
    "Timing",
    "build_scenario",
    "build_sim",
    "default_spec",
    "demo_world",
    "league_schedule_spec",
    "load_scenario",
    "scenario_from_dict",
    "script_book",
]
