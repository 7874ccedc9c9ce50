"""Discovery's pure parts and its decisions, on recorded shapes with hand-written fakes.

The listing, selection, bounding, alert and confirmation-pacing rules are tested here without I/O;
`tests/integration/test_discovery_sim.py` drives the real clients against the local exchange.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from polybot.discovery import (
    MONEYLINE_TYPES,
    Discovery,
    list_league,
    select,
)
from polybot.matching import match_bulk
from polybot.model import (
    EventInfo,
    LeagueInfo,
    MarketInfo,
    MarketSideInfo,
    MarketStatus,
    TeamInfo,
)
from polybot.opticodds.wire import Competitor, Fixture
from polybot.polymarket import errors as pm
from polybot.polymarket import wire
from polybot.polymarket.rest import EventsPage
from polybot.universe import Origin, Universe

REAL = Path("/work/shared/reference/real-payloads/polymarket-us/events-v1-mlb-sd-col-2026-09-16-excerpt.json")
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def real_event() -> dict[str, Any]:
    local = Path(__file__).resolve().parents[1] / "fixtures" / "real_payloads" / REAL.name
    path = local if local.exists() else REAL
    return wire.loads_exact(path.read_bytes())["events"][0]  # numbers exact, as the client reads


# --- building events in the real shape ----------------------------------------------------------


def team(tid: int, name: str, oo: str = "") -> TeamInfo:
    pids = (("PROVIDER_OPTICODDS", oo),) if oo else (("PROVIDER_SPORTRADAR", f"sr:{tid}"),)
    return TeamInfo(team_id=str(tid), name=name, league="nba", provider_ids=pids)


def game(n: int, start: datetime, *, mtype: str = "basketball_team_full_game_winner",
         long_second: bool = False, oo: bool = True, game_id: str | None = None,
         ) -> tuple[EventInfo, tuple[MarketInfo, ...]]:
    a = team(2 * n, f"Away Team {n}", f"OOA{n:04d}" if oo else "")
    b = team(2 * n + 1, f"Home Team {n}", f"OOB{n:04d}" if oo else "")
    long_team = b if long_second else a
    market = MarketInfo(
        slug=f"aec-nba-g{n}", market_id=str(1000 + n), sports_market_type=mtype,
        sides=(MarketSideInfo(str(10 * n), True, long_team.name, long_team.team_id),
               MarketSideInfo(str(10 * n + 1), False, "", (a if long_second else b).team_id)))
    event = EventInfo(event_id=str(100 + n), slug=f"nba-g{n}", start_time=start, teams=(a, b),
                      market_slugs=(market.slug,), market_ids=(market.market_id,),
                      game_id=str(9000 + n) if game_id is None else game_id)
    return event, (attrs.evolve(market, event_id=event.event_id, event_slug=event.slug),)


def fixture_of(ev: EventInfo, *, fid: str = "", start: datetime | None = None) -> Fixture:
    a, b = ev.teams
    return Fixture(id=fid or f"FX{ev.event_id}", start_date=start or ev.start_time,
                   status="unplayed", sport="basketball", league="nba",
                   home=(Competitor(b.provider_id("PROVIDER_OPTICODDS") or f"X{b.team_id}", b.name),),
                   away=(Competitor(a.provider_id("PROVIDER_OPTICODDS") or f"X{a.team_id}", a.name),))


# --- selection ---------------------------------------------------------------------------------


def test_the_real_event_yields_its_full_game_winner_by_sports_market_type():
    event, markets = wire.parse_event(real_event())
    assert event.game_id == "10079571" and len(event.teams) == 2
    listed, three_way = select([(event, markets)], types=MONEYLINE_TYPES,
                               start_min=event.start_time - timedelta(hours=1),
                               start_max=event.start_time + timedelta(hours=1))
    assert three_way == []
    [item] = listed
    assert item.market.slug == "aec-mlb-sd-col-2026-09-16"
    assert item.market.sports_market_type == "baseball_team_full_game_winner"
    # the game's start and event come from the Event (the Market has neither an event id nor,
    # beyond the deprecated gameStartTime, the game's start)
    assert item.market.event_id == "111265" and item.market.start_time == event.start_time


def test_futures_placeholders_other_types_and_games_outside_the_window_are_not_listed():
    inside = game(1, T0 + timedelta(hours=2))
    futures = game(2, T0 + timedelta(hours=2), game_id="")
    spread = game(3, T0 + timedelta(hours=2), mtype="basketball_team_full_game_spread")
    half = game(4, T0 + timedelta(hours=2), mtype="basketball_team_first_half_winner")
    late = game(5, T0 + timedelta(hours=40))
    generic = game(6, T0 + timedelta(hours=3), mtype="moneyline")
    listed, _ = select([inside, futures, spread, half, late, generic], types=MONEYLINE_TYPES,
                       start_min=T0 - timedelta(hours=6), start_max=T0 + timedelta(hours=36))
    assert [x.market.slug for x in listed] == ["aec-nba-g1", "aec-nba-g6"]


def test_a_soccer_three_way_winner_is_reported_not_listed():
    soccer = game(7, T0 + timedelta(hours=2), mtype="soccer_team_full_time_winner")
    listed, three_way = select([soccer], types=MONEYLINE_TYPES, start_min=T0,
                               start_max=T0 + timedelta(hours=36))
    assert listed == [] and [e.slug for e in three_way] == ["nba-g7"]


# --- paging ------------------------------------------------------------------------------------


@attrs.define
class FakeListingRest:
    """The listing calls of `PolymarketRestClient`, answering from `pages` (pure unit fake)."""

    pages: list[list[tuple[EventInfo, tuple[MarketInfo, ...]]]]
    series: str = "15"
    fail: int = 0  # the next N listings raise a 503
    fallback: list[tuple[EventInfo, tuple[MarketInfo, ...]]] = attrs.Factory(list)
    calls: list[str] = attrs.Factory(list)
    partner_times: list[float] = attrs.Factory(list)
    partner: dict[str, Any] = attrs.Factory(dict)
    malformed: int = 0  # each page says it skipped this many malformed rows

    async def league(self, slug: str) -> LeagueInfo:
        self.calls.append(f"league {slug}")
        return LeagueInfo(slug=slug, active_series_id=self.series)

    async def events_page(self, *, series_ids: Any, start_min: Any, start_max: Any,
                          closed: Any, limit: int, offset: int) -> EventsPage:
        self.calls.append(f"events {offset}")
        if self.fail:
            self.fail -= 1
            raise pm.ServerError("maintenance", status=503)
        page = self.pages[offset // limit] if offset // limit < len(self.pages) else []
        return EventsPage(events=tuple(page), rows=len(page), malformed=self.malformed)

    async def league_events_page(self, slug: str, *, limit: int, offset: int) -> EventsPage:
        self.calls.append(f"league-events {offset}")
        if self.fail:
            self.fail -= 1
            raise pm.ServerError("maintenance", status=503)
        rows = self.fallback[offset:offset + limit]
        return EventsPage(events=tuple(rows), rows=len(rows))

    async def partner_event(self, fixture_id: str) -> Any:
        self.partner_times.append(trio.current_time())
        return self.partner.get(fixture_id)


def games(first: int, count: int, start: datetime = T0 + timedelta(hours=1)) -> list[Any]:
    return [game(n, start + timedelta(minutes=n)) for n in range(first, first + count)]


async def test_paging_deduplicates_rows_repeated_across_pages():
    page1 = games(0, 100)
    page2 = [*games(90, 10), *games(100, 30)]  # the set shifted: ten rows come again
    rest = FakeListingRest([page1, page2])
    listing = await list_league(rest, "nba", now=T0, horizon=timedelta(hours=36))
    slugs = [x.market.slug for x in listing.listed]
    assert len(slugs) == len(set(slugs)) == 130
    assert listing.complete and listing.source == "series"


async def test_a_full_page_with_no_new_row_ends_the_listing_as_incomplete():
    page = games(0, 100)
    rest = FakeListingRest([page, page, page])
    listing = await list_league(rest, "nba", now=T0, horizon=timedelta(hours=36))
    assert not listing.complete and len(listing.listed) == 100
    assert rest.calls == ["league nba", "events 0", "events 100"]  # stopped, did not go on


async def test_without_an_active_series_the_league_events_are_filtered_here():
    rest = FakeListingRest([], series="", fallback=[*games(0, 3), game(50, T0 + timedelta(days=3))])
    listing = await list_league(rest, "nba", now=T0, horizon=timedelta(hours=36))
    assert listing.source == "league"
    assert [x.market.slug for x in listing.listed] == ["aec-nba-g0", "aec-nba-g1", "aec-nba-g2"]


# --- the task's decisions ----------------------------------------------------------------------


@attrs.define
class FakeOdds:
    fixtures: list[Fixture]
    calls: int = 0

    async def active_fixtures(self, **kw: Any) -> list[Fixture]:
        self.calls += 1
        return list(self.fixtures)


class Progress:
    def beat(self) -> None:
        pass

    def degraded(self, reason: str) -> None:
        pass

    def recovered(self) -> None:
        pass


class WallClock:
    """Wall time on Trio's clock: T0 when made."""

    def __init__(self) -> None:
        self.origin = trio.current_time()

    def now(self) -> datetime:
        return T0 + timedelta(seconds=trio.current_time() - self.origin)

    def monotonic(self) -> float:
        return trio.current_time()


def discovery(rest: Any, odds: Any = None, *, universe: Universe | None = None,
              held: set[str] | None = None, max_markets: int = 500, interval: float = 300.0,
              alerts: list[tuple[str, str, str, str]] | None = None,
              ready: bool = True, retired: set[str] | None = None) -> Discovery:
    return Discovery(rest, odds, universe if universe is not None else Universe(),
                     retired=lambda slug: slug in (retired or set()),
                     leagues=["nba"], odds_league=lambda s: s, clock=WallClock(),
                     horizon=timedelta(hours=36), interval=interval, max_markets=max_markets,
                     holds=lambda slug: slug in (held or set()), ready=lambda: ready,
                     alert=lambda *a: (alerts if alerts is not None else []).append(a))


async def test_a_soccer_three_way_event_is_logged_once_not_once_per_pass(caplog):
    soccer = game(7, T0 + timedelta(hours=2), mtype="soccer_team_full_time_winner")
    d = discovery(FakeListingRest([[soccer, *games(0, 2)]]))
    with caplog.at_level(logging.INFO, logger="polybot.discovery"):
        for _ in range(3):
            await d.pass_league("nba")
    lines = [r for r in caplog.records if "three-way" in r.getMessage()]
    assert len(lines) == 1 and "nba-g7" in lines[0].getMessage()


async def test_max_markets_keeps_the_nearest_starts_and_never_evicts_held_or_configured():
    u = Universe()
    # a configured market and a held discovered one, both starting late: they always stay
    cfg_event, (cfg_market,) = game(90, T0 + timedelta(hours=30))
    u.put(wire.with_event(cfg_market, cfg_event), event=cfg_event)  # CONFIGURED
    held_event, (held_market,) = game(91, T0 + timedelta(hours=31))
    u.put(wire.with_event(held_market, held_event), event=held_event, origin=Origin.DISCOVERED)
    # first pass: late games fill the room
    late = [game(n, T0 + timedelta(hours=20 + n)) for n in range(1, 5)]
    rest = FakeListingRest([late])
    d = discovery(rest, universe=u, held={held_market.slug}, max_markets=5)
    await d.pass_league("nba")
    assert len(u) == 5
    assert {"aec-nba-g1", "aec-nba-g2", "aec-nba-g3"} <= set(u)
    assert "aec-nba-g4" not in u and d.not_admitted == 1  # the latest start is left out
    # a later pass lists nearer games: they take the place of the latest-starting discovered ones
    near = [game(n, T0 + timedelta(hours=n - 9)) for n in range(10, 12)]
    rest.pages = [[*late, *near]]
    await d.pass_league("nba")
    assert len(u) == 5
    assert set(u) == {cfg_market.slug, held_market.slug, "aec-nba-g10", "aec-nba-g11",
                      "aec-nba-g1"}
    assert u.get(cfg_market.slug).origin is Origin.CONFIGURED


async def test_a_retired_or_finished_market_still_listed_is_not_added_back():
    # the event of a game whose market closed (and was retired, flat) stays listed until it
    # closes too; a market whose status already says it is over is not worth adding either
    retired_game, closed_game, open_game = games(0, 3)
    ev, (closed_market,) = closed_game
    closed_game = (ev, (attrs.evolve(closed_market, status=MarketStatus.CLOSED),))
    u = Universe()
    d = discovery(FakeListingRest([[retired_game, closed_game, open_game]]), universe=u,
                  retired={"aec-nba-g0"})
    await d.pass_league("nba")
    assert set(u) == {"aec-nba-g2"}
    assert u.added == 1


async def test_a_failed_listing_keeps_the_universe_and_is_retried_with_backoff(autojump_clock):
    rest = FakeListingRest([games(0, 3)])
    u = Universe()
    d = discovery(rest, universe=u)
    await d.pass_league("nba")
    before = set(u)
    assert len(before) == 3
    rest.pages = [[]]  # were the listing to answer, it would be empty ...
    rest.fail = 4  # ... but it fails: series listing and fallback, twice
    async with trio.open_nursery() as n:
        d.leagues["nba"].next_due = trio.current_time()
        n.start_soon(d.run, Progress())
        await trio.sleep(2)
        assert d.leagues["nba"].failed_in_a_row == 1 and set(u) == before
        await trio.sleep(120)  # retried with backoff, well before the 300 s interval
        assert d.leagues["nba"].failed_in_a_row == 0 and d.leagues["nba"].errors == 2
        n.cancel_scope.cancel()
    assert set(u) == before and u.retired == 0  # an empty listing retires nothing either


async def test_three_failed_passes_in_a_row_alert_once(autojump_clock):
    alerts: list[Any] = []
    rest = FakeListingRest([games(0, 1)], fail=10_000)
    d = discovery(rest, alerts=alerts)
    async with trio.open_nursery() as n:
        n.start_soon(d.run, Progress())
        await trio.sleep(7)  # backoff: ≥ 2.5 s, then ≥ 5 s: two failures so far at most
        assert not [a for a in alerts if a[3] == "discovery-failing-nba"]
        await trio.sleep(3000)
        n.cancel_scope.cancel()
    failing = [a for a in alerts if a[3] == "discovery-failing-nba"]
    assert len(failing) == 1 and failing[0][0] == "warning"
    assert d.leagues["nba"].failed_in_a_row > 3


async def test_no_complete_pass_for_three_intervals_alerts(autojump_clock):
    alerts: list[Any] = []
    d = discovery(FakeListingRest([games(0, 1)], fail=10_000), alerts=alerts, interval=300)
    async with trio.open_nursery() as n:
        n.start_soon(d.run, Progress())
        await trio.sleep(3 * 300 - 10)
        assert not [a for a in alerts if a[3] == "discovery-stalled"]
        await trio.sleep(20)
        n.cancel_scope.cancel()
    assert [a[0] for a in alerts if a[3] == "discovery-stalled"] == ["error"]


async def test_a_league_listing_no_event_for_24_hours_alerts_but_an_empty_horizon_does_not(
        autojump_clock):
    alerts: list[Any] = []
    far = game(1, T0 + timedelta(days=5))  # listed by the league, outside the horizon
    rest = FakeListingRest([], series="", fallback=[far])
    d = discovery(rest, alerts=alerts)
    async with trio.open_nursery() as n:
        n.start_soon(d.run, Progress())
        await trio.sleep(30 * 3600)
        assert alerts == []  # an event, though none inside the horizon: /status says so
        assert d.status()["leagues"]["nba"]["note"] == "no game within the horizon"
        rest.fallback = []
        await trio.sleep(23 * 3600)
        assert alerts == []
        await trio.sleep(2 * 3600)
        n.cancel_scope.cancel()
    assert [(a[0], a[3]) for a in alerts] == [("warning", "discovery-silent-nba")]


async def test_partner_confirmations_wait_for_ready_and_run_at_most_five_per_second(
        autojump_clock):
    listed = [game(n, T0 + timedelta(hours=2, minutes=n), oo=False) for n in range(40)]
    fixtures = [fixture_of(ev) for ev, _ in listed]
    rest = FakeListingRest([listed])
    u = Universe()
    d = discovery(rest, FakeOdds(fixtures), universe=u, ready=False)
    await d.pass_league("nba")
    assert len(d.pending) == 40
    assert all(not x.target_confirmed and x.why_not_traded() for x in u.listings())
    async with trio.open_nursery() as n:
        n.start_soon(d.run, Progress())
        await trio.sleep(30)
        assert rest.partner_times == []  # not before the bot is ready
        d.ready = lambda: True
        await trio.sleep(30)
        n.cancel_scope.cancel()
    times = rest.partner_times
    assert len(times) == 40
    for i, t in enumerate(times):
        assert sum(1 for u_ in times[i:] if u_ < t + 1.0) <= 5
    # the fake partner knows none of them: each stays unopened, with the reason
    assert all(x.target is None and "partner lookup" in x.unmatched_reason for x in u.listings())


# --- bulk matching -----------------------------------------------------------------------------


def test_bulk_matching_by_provider_ids_is_confirmed_and_yes_is_the_long_team_wherever_listed():
    a_ev, (a_m,) = game(1, T0 + timedelta(hours=2))
    b_ev, (b_m,) = game(2, T0 + timedelta(hours=2), long_second=True)
    fixtures = [fixture_of(a_ev), fixture_of(b_ev)]
    out = match_bulk([(a_ev, a_m), (b_ev, b_m)], fixtures)
    assert out[a_m.slug].confirmed and out[a_m.slug].target.yes_selection == "away_team_1"
    assert out[b_m.slug].confirmed and out[b_m.slug].target.yes_selection == "home_team_2"
    assert out[a_m.slug].target.fixture_id == "FX101"


def test_bulk_matching_by_names_needs_confirmation_and_refuses_ambiguity():
    ev, (m,) = game(3, T0 + timedelta(hours=2), oo=False)
    one = match_bulk([(ev, m)], [fixture_of(ev)])[m.slug]
    assert one.target is not None and not one.confirmed and "partner" in one.reason
    two = match_bulk([(ev, m)], [fixture_of(ev, fid="A"), fixture_of(ev, fid="B")])[m.slug]
    assert two.target is None and "ambiguous" in two.reason
    far = match_bulk([(ev, m)], [fixture_of(ev, start=T0 + timedelta(hours=20))])[m.slug]
    assert far.target is None and "no OpticOdds fixture" in far.reason


@pytest.mark.parametrize("selection,confirmed", [("away_team_4", True), ("home_team_4", False)])
async def test_a_partner_lookup_that_disagrees_with_the_team_names_keeps_the_market_closed(
        selection, confirmed):
    from polybot.model import MappedMarketSide

    ev, (m,) = game(4, T0 + timedelta(hours=2), oo=False)
    rest = FakeListingRest([[(ev, (m,))]])
    fx = fixture_of(ev)
    long_side = m.sides[0] if m.sides[0].long else m.sides[1]
    rest.partner[fx.id] = (ev, [m], [MappedMarketSide(
        market_side_id=long_side.side_id, market_id=m.market_id, event_id=ev.event_id,
        external_event_id=fx.id, external_market_type="moneyline",
        external_normalized_selection=selection)])
    u = Universe()
    d = discovery(rest, FakeOdds([fx]), universe=u)
    await d.pass_league("nba")
    await d.confirm(m.slug)
    listing = u.get(m.slug)
    assert listing.target_confirmed is confirmed
    assert (listing.why_not_traded() == "") is confirmed
    if not confirmed:
        assert "disagree" in listing.unmatched_reason



async def test_teams_spelled_differently_are_found_by_probing_unclaimed_fixtures_once(
        autojump_clock):
    from polybot.model import MappedMarketSide

    ev, (m,) = game(8, T0 + timedelta(hours=2), oo=False)
    other_ev, _ = game(9, T0 + timedelta(hours=2), oo=False)
    fx = attrs.evolve(fixture_of(ev), home=(Competitor("H8", "Home Side Eight"),),
                      away=(Competitor("A8", "Away Side Eight"),))  # names the exchange does not use
    stranger = attrs.evolve(fixture_of(other_ev, fid="FX-OTHER"),
                            home=(Competitor("H9", "Nobody"),), away=(Competitor("A9", "Noone"),))
    rest = FakeListingRest([[(ev, (m,))]])
    long_side = next(s for s in m.sides if s.long)
    rest.partner[fx.id] = (ev, [m], [MappedMarketSide(
        market_side_id=long_side.side_id, market_id=m.market_id, event_id=ev.event_id,
        external_event_id=fx.id, external_market_type="moneyline",
        external_normalized_selection="away_side_eight")])
    u = Universe()
    d = discovery(rest, FakeOdds([fx, stranger]), universe=u)
    await d.pass_league("nba")
    assert u.get(m.slug).target is None and "no OpticOdds fixture" in u.get(m.slug).unmatched_reason
    assert set(d.probes) == {fx.id, stranger.id}
    async with trio.open_nursery() as n:
        n.start_soon(d.run, Progress())
        await trio.sleep(5)
        n.cancel_scope.cancel()
    listing = u.get(m.slug)
    assert listing.target_confirmed and listing.target.fixture_id == fx.id
    assert listing.target.yes_selection == "away_side_eight" and listing.why_not_traded() == ""
    looked = len(rest.partner_times)
    assert looked == 2
    await d.pass_league("nba")  # the stranger is not probed again while it is listed
    assert d.probes == {}


async def test_a_name_match_the_partner_refused_is_not_put_to_it_again_every_pass(autojump_clock):
    ev, (m,) = game(10, T0 + timedelta(hours=2), oo=False)
    rest = FakeListingRest([[(ev, (m,))]])  # its partner lookup knows no event (404)
    u = Universe()
    d = discovery(rest, FakeOdds([fixture_of(ev)]), universe=u)
    async with trio.open_nursery() as n:
        n.start_soon(d.run, Progress())
        await trio.sleep(3 * 300 + 5)  # four passes
        n.cancel_scope.cancel()
    assert len(rest.partner_times) == 1
    listing = u.get(m.slug)
    assert listing.target is None and "partner lookup has no event" in listing.unmatched_reason


async def test_a_malformed_event_is_logged_counted_and_skipped_and_the_rest_listed(caplog):
    from polybot.polymarket.rest import _events_page

    good = real_event()
    broken = dict(good, slug="broken-event", id="1", markets=[{"question": "a market, no slug"}])
    not_an_object = "garbage"
    page = _events_page({"events": [broken, good, not_an_object]}, "/v1/events")
    assert page.rows == 3 and page.malformed == 2
    assert [e.slug for e, _ in page.events] == [good["slug"]]
    assert sum("malformed event" in r.getMessage() for r in caplog.records) == 2
    start = page.events[0][0].start_time
    rest = FakeListingRest([list(page.events)], malformed=page.malformed)
    listing = await list_league(rest, "mlb", now=start, horizon=timedelta(hours=36))
    assert listing.malformed == 2 and [x.market.slug for x in listing.listed] == [
        "aec-mlb-sd-col-2026-09-16"]
