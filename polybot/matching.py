"""Match each configured market slug to an OpticOdds fixture and the selection that is its YES.

Order of evidence (polymarket-us-api.md §11, opticodds-api.md §4.2):
1. An `ODDS_MARKET_MAP` override `slug=fixture_id:normalized_selection` (split at the LAST `:`,
   since fixture ids are opaque). The fixture is still looked up at OpticOdds, for its sport,
   league and start time; the named selection is taken as the market's YES side.
2. Otherwise the exchange event: both teams' `PROVIDER_OPTICODDS` provider ids, the league and
   the start time, against OpticOdds fixtures of those teams (the same two competitor ids, start
   within `start_tolerance`). The match must then be confirmed by the exchange's partner lookup
   (`/v1/partners/opticodds/events/{fixtureId}`): it must name this market, and the mapped side
   whose `long` flag is true gives the YES selection. The second-named team can be YES: nothing
   here assumes the order of teams or home/away.

A market that cannot be matched is reported once (slug and why) in `MatchResult.unmatched` and
never traded; the others run. Nothing here raises for one bad market; only a fatal client error
(a rejected OpticOdds key) propagates.

Inputs are injected as plain async callables (the composition root wires the exchange REST client
and the OpticOdds client), so this module has no I/O of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from polybot.model import EventInfo, MappedMarketSide, MarketInfo, TeamInfo
from polybot.opticodds.client import AuthError, OpticOddsError
from polybot.opticodds.feed import MONEYLINE, MarketTarget
from polybot.opticodds.wire import Fixture

log = logging.getLogger(__name__)

PROVIDER_OPTICODDS = "PROVIDER_OPTICODDS"

# (slug) -> (market, its event) or None when the exchange does not know the slug
MarketLookup = Callable[[str], Awaitable[tuple[MarketInfo, EventInfo] | None]]
# (opticodds fixture id) -> (event, its markets, mapped sides) or None (404: no link)
PartnerLookup = Callable[
    [str], Awaitable[tuple[EventInfo, list[MarketInfo], list[MappedMarketSide]] | None]
]
# OpticOdds fixtures of a team in a start window: (team_id, start_after, start_before)
FixturesByTeam = Callable[[str, datetime, datetime], Awaitable[list[Fixture]]]
# one OpticOdds fixture by id
FixtureById = Callable[[str], Awaitable[Fixture | None]]


@attrs.frozen
class Unmatched:
    slug: str
    reason: str


@attrs.frozen
class MatchResult:
    targets: tuple[MarketTarget, ...]
    unmatched: tuple[Unmatched, ...]


def normalize_selection(name: str) -> str:
    """OpticOdds' normalized_selection of a team name ("Boston Celtics" -> "boston_celtics")."""
    return "_".join(name.lower().replace(".", "").split())


async def match_markets(
    slugs: Sequence[str],
    *,
    overrides: Iterable[tuple[str, str, str]] = (),
    market_lookup: MarketLookup,
    partner_lookup: PartnerLookup,
    fixtures_by_team: FixturesByTeam,
    fixture_by_id: FixtureById,
    start_tolerance: timedelta = timedelta(hours=6),
) -> MatchResult:
    """Match every slug; report each unmatched one once (logged at WARNING) and go on."""
    over = {slug: (fid, sel) for slug, fid, sel in overrides}
    targets: list[MarketTarget] = []
    unmatched: list[Unmatched] = []
    for slug in dict.fromkeys(slugs):
        try:
            if slug in over:
                fid, sel = over[slug]
                result = await _override(slug, fid, sel, fixture_by_id)
            else:
                result = await _auto(slug, market_lookup, partner_lookup, fixtures_by_team,
                                     start_tolerance)
        except AuthError:
            raise
        except OpticOddsError as e:
            result = Unmatched(slug, f"OpticOdds lookup failed: {e}")
        except Exception as e:  # one market's bad data must not stop the others
            log.exception("matching %s failed", slug)
            result = Unmatched(slug, f"lookup failed: {type(e).__name__}: {e}")
        if isinstance(result, Unmatched):
            log.warning("market %s is not matched to OpticOdds and will not be traded: %s",
                        result.slug, result.reason)
            unmatched.append(result)
        else:
            log.info("market %s -> OpticOdds fixture %s, YES = %s (%s)", slug, result.fixture_id,
                     result.yes_selection, result.source)
            targets.append(result)
    return MatchResult(tuple(targets), tuple(unmatched))


async def _override(slug: str, fixture_id: str, selection: str,
                    fixture_by_id: FixtureById) -> MarketTarget | Unmatched:
    fx = await fixture_by_id(fixture_id)
    if fx is None:
        return Unmatched(slug, f"ODDS_MARKET_MAP names fixture {fixture_id!r}, unknown to OpticOdds")
    return MarketTarget(slug=slug, fixture_id=fx.id, yes_selection=selection, sport=fx.sport,
                        league=fx.league, start_time=fx.start_date, source="override")


async def _auto(slug: str, market_lookup: MarketLookup, partner_lookup: PartnerLookup,
                fixtures_by_team: FixturesByTeam,
                tolerance: timedelta) -> MarketTarget | Unmatched:
    found = await market_lookup(slug)
    if found is None:
        return Unmatched(slug, "the exchange does not know this market slug")
    market, event = found
    team_ids = [t.provider_id(PROVIDER_OPTICODDS) for t in event.teams]
    ids = [i for i in team_ids if i]
    if len(event.teams) < 2 or len(ids) < len(event.teams):
        names = ", ".join(t.name for t in event.teams) or "none"
        return Unmatched(slug, f"event {event.slug or event.event_id} lacks OpticOdds team ids "
                               f"(teams: {names})")
    start = event.start_time or market.start_time
    if start is None:
        return Unmatched(slug, f"event {event.slug or event.event_id} has no start time")
    league = next((t.league.lower() for t in event.teams if t.league), "")
    candidates = await fixtures_by_team(ids[0], start - tolerance, start + tolerance)
    want = frozenset(ids)
    fits = [f for f in candidates
            if f.team_ids == want and f.start_date is not None
            and abs(f.start_date - start) <= tolerance]
    if league and any(f.league.lower() == league for f in fits):
        fits = [f for f in fits if f.league.lower() == league]
    if not fits:
        names = " vs ".join(t.name for t in event.teams)
        return Unmatched(slug, f"no OpticOdds fixture for {names} near {start.isoformat()}")
    fits.sort(key=lambda f: abs(f.start_date - start) if f.start_date else tolerance)
    if len(fits) > 1 and fits[0].start_date == fits[1].start_date:
        return Unmatched(slug, f"ambiguous: OpticOdds fixtures {fits[0].id} and {fits[1].id} both fit")
    fx = fits[0]

    partner = await partner_lookup(fx.id)
    return partner_target(slug, market, event, fx, partner, source="auto")


def partner_target(
    slug: str, market: MarketInfo, event: EventInfo, fx: Fixture,
    partner: tuple[EventInfo, Sequence[MarketInfo], Sequence[MappedMarketSide]] | None,
    *, source: str = "partner",
) -> MarketTarget | Unmatched:
    """The market's target as the exchange's partner lookup of fixture `fx` maps it.

    It must name this market's event and map its YES (long) side to an OpticOdds moneyline
    selection; anything else is the reason the market stays unmatched.
    """
    if partner is None:
        return Unmatched(slug, f"the exchange's partner lookup has no event for OpticOdds fixture {fx.id}")
    p_event, p_markets, mapped = partner
    if event.event_id and p_event.event_id and p_event.event_id != event.event_id:
        return Unmatched(slug, f"OpticOdds fixture {fx.id} maps to exchange event "
                               f"{p_event.event_id}, not {event.event_id}")
    market_id = market.market_id
    sides = next((m.sides for m in p_markets if m.market_id == market_id or m.slug == slug), ())
    sides = sides or market.sides
    long_ids = {s.side_id for s in sides if s.long}
    mine = [m for m in mapped if m.market_id == market_id]
    if not mine:
        return Unmatched(slug, f"the partner lookup for fixture {fx.id} maps no side of this market")
    yes = [m for m in mine if m.market_side_id in long_ids]
    if not yes:
        return Unmatched(slug, f"the partner lookup for fixture {fx.id} maps no YES (long) side")
    m = yes[0]
    mtype = (m.external_market_type or MONEYLINE).lower().replace(" ", "_")
    if not m.external_normalized_selection:
        return Unmatched(slug, f"the YES side's mapping for fixture {fx.id} names no selection")
    if mtype != MONEYLINE:
        return Unmatched(slug, f"market type {m.external_market_type!r} is not priced (moneyline only)")
    return MarketTarget(slug=slug, fixture_id=fx.id, yes_selection=m.external_normalized_selection,
                        sport=fx.sport, league=fx.league, start_time=fx.start_date, source=source)


# --- bulk matching (discovery) --------------------------------------------------------------------


@attrs.frozen
class BulkMatch:
    """One discovered market against its league's fixtures listing.

    `target` is None when nothing fits (`reason` says why). `confirmed` is True when both teams'
    OpticOdds provider ids single out the fixture (unambiguous: the market may be opened); a match
    by team names is a candidate the exchange's partner lookup must still confirm (`fixture` is
    kept for that lookup).
    """

    slug: str
    target: MarketTarget | None
    confirmed: bool
    reason: str = ""
    fixture: Fixture | None = None


def _norm(name: str) -> str:
    return normalize_selection(name).replace("-", "_")


def _yes_team(market: MarketInfo, event: EventInfo) -> TeamInfo | None:
    """The team of the market's long (YES) side, from the side's team id or its description."""
    long_side = next((s for s in market.sides if s.long), None)
    if long_side is None:
        return None
    by_id = next((t for t in event.teams if long_side.team_id and t.team_id == long_side.team_id),
                 None)
    if by_id is not None:
        return by_id
    want = _norm(long_side.description)
    return next((t for t in event.teams if want and _norm(t.name) == want), None)


def _pick(fits: list[Fixture], start: datetime, what: str) -> Fixture | str:
    if not fits:
        return ""
    fits = sorted(fits, key=lambda f: abs(f.start_date - start) if f.start_date else timedelta.max)
    if len(fits) > 1 and fits[0].start_date == fits[1].start_date:
        return f"ambiguous by {what}: OpticOdds fixtures {fits[0].id} and {fits[1].id} both fit"
    return fits[0]


def match_bulk(events: Iterable[tuple[EventInfo, MarketInfo]], fixtures: Sequence[Fixture], *,
               tolerance: timedelta = timedelta(hours=6)) -> dict[str, BulkMatch]:
    """Match every (event, moneyline market) of a league to one fixtures listing of that league.

    Pure: no I/O. First both teams' `PROVIDER_OPTICODDS` ids (the same competitor ids, start
    within `tolerance`; confirmed), else the two team names, normalised (unconfirmed). The YES
    selection is the OpticOdds competitor of the market's long side, never the order of teams.
    """
    out: dict[str, BulkMatch] = {}
    # the listing indexed once by both teams' ids and by both teams' names (in listing order),
    # so a league of n games matches in O(n), not by scanning every fixture for every game
    by_ids: dict[frozenset[str], list[Fixture]] = {}
    by_names: dict[frozenset[str], list[Fixture]] = {}
    for f in fixtures:
        if f.start_date is None:
            continue
        by_ids.setdefault(f.team_ids, []).append(f)
        by_names.setdefault(frozenset(_norm(c.name) for c in (*f.home, *f.away)), []).append(f)

    def near(candidates: list[Fixture], start: datetime) -> list[Fixture]:
        return [f for f in candidates
                if f.start_date is not None and abs(f.start_date - start) <= tolerance]

    for event, market in events:
        slug = market.slug
        start = event.start_time or market.start_time
        if start is None:
            out[slug] = BulkMatch(slug, None, False, f"event {event.slug} has no start time")
            continue
        yes_team = _yes_team(market, event)
        names = " vs ".join(t.name for t in event.teams)
        ids = [t.provider_id(PROVIDER_OPTICODDS) for t in event.teams]
        if len(event.teams) == 2 and all(ids):
            picked = _pick(near(by_ids.get(frozenset(i for i in ids if i), []), start), start,
                           "provider ids")
            if isinstance(picked, str) and picked:
                out[slug] = BulkMatch(slug, None, False, picked)
                continue
            if isinstance(picked, Fixture):
                yes_id = yes_team.provider_id(PROVIDER_OPTICODDS) if yes_team else None
                comp = next((c for c in (*picked.home, *picked.away) if c.id == yes_id), None)
                if comp is not None and comp.name:
                    out[slug] = BulkMatch(slug, _target(slug, picked, _norm(comp.name),
                                                        "provider-ids"), True, fixture=picked)
                    continue
                out[slug] = BulkMatch(slug, None, False, f"fixture {picked.id} fits by provider "
                                      "ids but the YES side's team is not among its competitors",
                                      fixture=picked)
                continue
        want = frozenset(_norm(t.name) for t in event.teams)
        if len(want) != 2:
            out[slug] = BulkMatch(slug, None, False, f"event {event.slug} has no two named teams")
            continue
        picked = _pick(near(by_names.get(want, []), start), start, "team names")
        if isinstance(picked, str):
            out[slug] = BulkMatch(slug, None, False, picked or
                                  f"no OpticOdds fixture for {names} near {start.isoformat()}")
            continue
        if yes_team is None:
            out[slug] = BulkMatch(slug, None, False, "the market names no YES (long) team",
                                  fixture=picked)
            continue
        out[slug] = BulkMatch(slug, _target(slug, picked, _norm(yes_team.name), "team-names"),
                              False, f"fixture {picked.id} matched by team names: awaiting the "
                                     "exchange's partner confirmation", fixture=picked)
    return out


def _target(slug: str, fx: Fixture, yes: str, source: str) -> MarketTarget:
    return MarketTarget(slug=slug, fixture_id=fx.id, yes_selection=yes, sport=fx.sport,
                        league=fx.league, start_time=fx.start_date, source=source)


def lookups(exchange: Any, opticodds: Any) -> dict[str, Any]:
    """The four lookups of `match_markets` from the two clients (duck-typed, no adapter import).

    `exchange`: the Polymarket US REST client (`market_with_event`, `partner_event`);
    `opticodds`: an `OpticOddsClient`. A 404 on the market slug means "unknown slug".
    """

    async def market_lookup(slug: str) -> tuple[MarketInfo, EventInfo] | None:
        try:
            # the real Market object has no eventId: its Event is the one listing it
            market, event = await exchange.market_with_event(slug)
        except Exception as e:
            if getattr(e, "status", None) == 404:
                return None
            raise
        if event is None:
            raise LookupError(f"no exchange Event lists market {slug} (id {market.market_id})")
        return market, event

    async def partner_lookup(
        fixture_id: str,
    ) -> tuple[EventInfo, list[MarketInfo], list[MappedMarketSide]] | None:
        found = await exchange.partner_event(fixture_id)
        if found is None:
            return None
        event, markets, sides = found
        return event, list(markets), list(sides)

    async def fixtures_by_team(team_id: str, after: datetime, before: datetime) -> list[Fixture]:
        fixtures: list[Fixture] = await opticodds.fixtures_by_team(
            team_id, start_after=after, start_before=before)
        return fixtures

    return {
        "market_lookup": market_lookup,
        "partner_lookup": partner_lookup,
        "fixtures_by_team": fixtures_by_team,
        "fixture_by_id": opticodds.fixture,
    }
