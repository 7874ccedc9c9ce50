"""Matching configured slugs to OpticOdds fixtures: override, automatic, YES side, unmatched."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from polybot.matching import PROVIDER_OPTICODDS, match_markets, normalize_selection
from polybot.model import EventInfo, MappedMarketSide, MarketInfo, MarketSideInfo, TeamInfo
from polybot.opticodds.wire import Competitor, Fixture

START = datetime(2026, 11, 27, 0, 30, tzinfo=UTC)


def team(tid, name, oo_id, league="nba"):
    pids = (("PROVIDER_SPORTRADAR", f"sr:{tid}"),) + (((PROVIDER_OPTICODDS, oo_id),) if oo_id else ())
    return TeamInfo(team_id=tid, name=name, league=league, provider_ids=pids)


def fixture(fid, home, away, start=START, league="nba"):
    return Fixture(id=fid, start_date=start, status="unplayed", sport="basketball", league=league,
                   home=(Competitor(home[0], home[1]),), away=(Competitor(away[0], away[1]),),
                   home_display=home[1], away_display=away[1])


class Exchange:
    """Hand-written stand-ins for the exchange REST client and OpticOdds lookups (pure unit test)."""

    def __init__(self):
        self.markets = {}
        self.partner = {}
        self.fixtures = []
        self.calls = []

    def add_game(self, slug, market_id, event_id, teams, long_team_idx, fixture_id, *, mapped=True,
                 start=START):
        sides = tuple(MarketSideInfo(side_id=f"{market_id}-{i}", long=(i == long_team_idx),
                                     description=t.name, team_id=t.team_id) for i, t in enumerate(teams))
        m = MarketInfo(slug=slug, market_id=market_id, event_id=event_id, sides=sides, start_time=start)
        ev = EventInfo(event_id=event_id, slug=f"ev-{slug}", start_time=start, teams=tuple(teams),
                       market_slugs=(slug,), market_ids=(market_id,))
        self.markets[slug] = (m, ev)
        if mapped:
            ms = [MappedMarketSide(market_side_id=s.side_id, market_id=market_id, event_id=event_id,
                                   external_event_id=fixture_id, external_market_type="moneyline",
                                   external_normalized_selection=normalize_selection(s.description))
                  for s in sides]
            self.partner[fixture_id] = (ev, [m], ms)

    async def market_lookup(self, slug):
        self.calls.append(("market", slug))
        return self.markets.get(slug)

    async def partner_lookup(self, fid):
        self.calls.append(("partner", fid))
        return self.partner.get(fid)

    async def fixtures_by_team(self, team_id, after, before):
        self.calls.append(("team", team_id))
        return [f for f in self.fixtures if team_id in f.team_ids and after <= f.start_date <= before]

    async def fixture_by_id(self, fid):
        return next((f for f in self.fixtures if f.id == fid), None)

    def kw(self):
        return dict(market_lookup=self.market_lookup, partner_lookup=self.partner_lookup,
                    fixtures_by_team=self.fixtures_by_team, fixture_by_id=self.fixture_by_id)


def nba_world():
    x = Exchange()
    bos, nyk = team("1", "Boston Celtics", "AAAA"), team("2", "New York Knicks", "BBBB")
    lal, gsw = team("3", "Los Angeles Lakers", "CCCC"), team("4", "Golden State Warriors", "DDDD")
    x.fixtures = [fixture("FX1", ("AAAA", "Boston Celtics"), ("BBBB", "New York Knicks")),
                  fixture("FX2", ("CCCC", "Los Angeles Lakers"), ("DDDD", "Golden State Warriors"))]
    x.add_game("aec-nba-bos-nyk", "11", "E1", [bos, nyk], 0, "FX1")
    # YES is the SECOND-named team (Warriors) on this market
    x.add_game("aec-nba-lal-gsw", "12", "E2", [lal, gsw], 1, "FX2")
    return x


async def test_automatic_match_uses_team_provider_ids_and_partner_confirmation():
    x = nba_world()
    r = await match_markets(["aec-nba-bos-nyk"], **x.kw())
    assert r.unmatched == ()
    (t,) = r.targets
    assert (t.slug, t.fixture_id, t.yes_selection, t.sport, t.league, t.source) == (
        "aec-nba-bos-nyk", "FX1", "boston_celtics", "basketball", "nba", "auto")
    assert ("partner", "FX1") in x.calls


async def test_yes_is_the_long_side_even_when_it_is_the_second_named_team():
    x = nba_world()
    r = await match_markets(["aec-nba-lal-gsw"], **x.kw())
    assert [t.yes_selection for t in r.targets] == ["golden_state_warriors"]


async def test_override_wins_and_splits_at_the_last_colon():
    x = nba_world()
    x.fixtures.append(fixture("mlb:2DAC:EC7C", ("AAAA", "Boston Celtics"), ("BBBB", "New York Knicks")))
    r = await match_markets(["aec-nba-bos-nyk"], overrides=[("aec-nba-bos-nyk", "mlb:2DAC:EC7C", "new_york_knicks")],
                            **x.kw())
    (t,) = r.targets
    assert (t.fixture_id, t.yes_selection, t.source) == ("mlb:2DAC:EC7C", "new_york_knicks", "override")
    assert ("market", "aec-nba-bos-nyk") not in x.calls  # the exchange was not consulted


async def test_override_naming_an_unknown_fixture_is_unmatched():
    x = nba_world()
    r = await match_markets(["aec-nba-bos-nyk"], overrides=[("aec-nba-bos-nyk", "NOPE", "x")], **x.kw())
    assert r.targets == () and "NOPE" in r.unmatched[0].reason


async def test_unmatched_slug_is_reported_once_with_reason_and_the_others_still_match(caplog):
    caplog.set_level(logging.WARNING)
    x = nba_world()
    slugs = ["aec-nba-bos-nyk", "aec-nba-unknown", "aec-nba-lal-gsw", "aec-nba-unknown"]
    r = await match_markets(slugs, **x.kw())
    assert [t.slug for t in r.targets] == ["aec-nba-bos-nyk", "aec-nba-lal-gsw"]
    assert [(u.slug, u.reason) for u in r.unmatched] == [
        ("aec-nba-unknown", "the exchange does not know this market slug")]
    assert caplog.text.count("aec-nba-unknown") == 1
    assert "will not be traded" in caplog.text


async def test_event_without_opticodds_team_ids_is_unmatched():
    x = nba_world()
    a, b = team("5", "Utah Jazz", ""), team("6", "Denver Nuggets", "FFFF")
    x.add_game("aec-nba-uta-den", "13", "E3", [a, b], 0, "FX3")
    r = await match_markets(["aec-nba-uta-den"], **x.kw())
    assert "lacks OpticOdds team ids" in r.unmatched[0].reason


async def test_no_fixture_near_the_start_time_is_unmatched():
    x = nba_world()
    x.fixtures[0] = fixture("FX1", ("AAAA", "Boston Celtics"), ("BBBB", "New York Knicks"),
                            start=START + timedelta(days=3))
    r = await match_markets(["aec-nba-bos-nyk"], **x.kw())
    assert r.unmatched[0].reason.startswith("no OpticOdds fixture for Boston Celtics vs New York Knicks")


async def test_fixture_without_partner_link_is_unmatched():
    x = nba_world()
    del x.partner["FX1"]
    r = await match_markets(["aec-nba-bos-nyk"], **x.kw())
    assert "partner lookup has no event for OpticOdds fixture FX1" in r.unmatched[0].reason


async def test_partner_mapping_without_long_side_is_unmatched():
    x = nba_world()
    ev, markets, mapped = x.partner["FX1"]
    x.partner["FX1"] = (ev, markets, [m for m in mapped if m.market_side_id != "11-0"])
    r = await match_markets(["aec-nba-bos-nyk"], **x.kw())
    assert "no YES (long) side" in r.unmatched[0].reason


async def test_partner_event_for_a_different_exchange_event_is_unmatched():
    x = nba_world()
    _ev, markets, mapped = x.partner["FX1"]
    x.partner["FX1"] = (EventInfo(event_id="OTHER", slug="other"), markets, mapped)
    r = await match_markets(["aec-nba-bos-nyk"], **x.kw())
    assert "maps to exchange event OTHER" in r.unmatched[0].reason


async def test_a_lookup_crash_on_one_market_does_not_stop_the_others():
    x = nba_world()

    async def flaky(slug):
        if slug == "aec-nba-bos-nyk":
            raise RuntimeError("boom")
        return x.markets.get(slug)

    kw = x.kw() | {"market_lookup": flaky}
    r = await match_markets(["aec-nba-bos-nyk", "aec-nba-lal-gsw"], **kw)
    assert [t.slug for t in r.targets] == ["aec-nba-lal-gsw"]
    assert "boom" in r.unmatched[0].reason
