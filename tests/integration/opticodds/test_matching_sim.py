"""Matching against the real sim: exchange REST client + local OpticOdds on the same world."""

from __future__ import annotations

from polybot.matching import lookups, match_markets
from polybot.opticodds.client import OpticOddsClient
from polybot.polymarket.rest import PolymarketRestClient, RestConfig
from polybot.sim.harness import running_sim


async def test_every_sim_market_matches_its_fixture_and_long_team_and_an_unknown_slug_is_skipped():
    async with running_sim(seed=5, opticodds=True, run_scenario=False) as sim:
        rest = PolymarketRestClient(RestConfig(api_url=sim.api_url, gateway_url=sim.gateway_url))
        async with rest, OpticOddsClient(sim.opticodds_url, sim.opticodds_key) as oo:
            slugs = [*sim.markets, "aec-nba-not-a-market"]
            result = await match_markets(slugs, **lookups(rest, oo))
        assert [u.slug for u in result.unmatched] == ["aec-nba-not-a-market"], result.unmatched
        by_slug = {t.slug: t for t in result.targets}
        assert set(by_slug) == set(sim.markets)
        games = [sim.world.game_by_slug(s) for s in sim.markets]
        assert any(not g.long_is_home for g in games) or len(games) < 2  # covers YES = away somewhere
        for g in games:
            t = by_slug[g.market_slug]
            assert (t.fixture_id, t.yes_selection, t.sport) == (g.fixture_id, g.long_team.normalized, g.sport)
