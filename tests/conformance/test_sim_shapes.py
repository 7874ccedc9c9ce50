"""The local exchange serves the shapes recorded from the real API (tests/fixtures/real_payloads).

For each endpoint with a capture: every key both serve has the same JSON type (recursively, for
the first element of lists), the sim serves no key the capture lacks unless EXTRA says why, and
the keys the bot relies on are served. The Market object must not carry eventId/eventSlug.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from polybot.sim.harness import running_sim

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "real_payloads" / "polymarket-us"

# keys the sim serves that the captures lack, each documented in the reference (§3.4, §3.5)
EXTRA = {
    "market": {"volume", "volumeNum", "liquidity"},  # `volume*` listed in the schema
    "event": {"subcategory", "eventDate", "live", "ended"},  # Event fields of §3.5
    "team": set(),
    "bbo": {"bidShares", "askShares", "longQuote", "shortQuote", "transactTime"},  # §3.4 bbo
}


def _kind(v):
    return {dict: "object", list: "array", str: "string", bool: "bool", type(None): "null"}.get(
        type(v), "number")


def _compare(sim, real, path, problems, extra=frozenset(), nested=False):
    """Types of shared keys everywhere; keys the capture lacks at the top level only (nested
    objects of a trimmed or excerpted capture are not complete field lists)."""
    for k in sim.keys() & real.keys():
        a, b = sim[k], real[k]
        if a is None or b is None:  # nullable either way
            continue
        if _kind(a) != _kind(b):
            problems.append(f"{path}.{k}: sim {_kind(a)}, real {_kind(b)}")
        elif isinstance(a, dict):
            _compare(a, b, f"{path}.{k}", problems, nested=True)
        elif isinstance(a, list) and a and b and isinstance(a[0], dict) and isinstance(b[0], dict):
            _compare(a[0], b[0], f"{path}.{k}[0]", problems, nested=True)
    if nested:
        return
    for k in sim.keys() - real.keys() - extra:
        problems.append(f"{path}.{k}: served by the sim, absent from the capture")


def _load(name):
    return json.loads((ROOT / name).read_text())


async def test_sim_responses_match_the_captured_shapes():
    async with running_sim(seed=3) as sim, httpx.AsyncClient(base_url=sim.gateway_url) as http:
        slug = sim.markets[0]
        game = sim.world.games[0]
        problems: list[str] = []

        events = (await http.get("/v1/events", params={"active": "true"})).json()["events"]
        real_event = _load("events-v1-mlb-sd-col-2026-09-16-excerpt.json")["events"][0]
        ev = next(e for e in events if e["id"] == str(game.event_id))
        _compare({k: v for k, v in ev.items() if k != "markets"},
                 {k: v for k, v in real_event.items() if k != "markets"}, "event", problems,
                 EXTRA["event"])
        real_market = real_event["markets"][0]
        for m in [ev["markets"][0], (await http.get(f"/v1/market/slug/{slug}")).json()["market"]]:
            _compare(m, real_market, "market", problems, EXTRA["market"])
            assert "eventId" not in m and "eventSlug" not in m
            for key in ("id", "slug", "startDate", "orderPriceMinTickSize", "minimumTradeQty",
                        "marketSides", "status", "outcomes"):
                assert key in m, key
            assert isinstance(json.loads(m["outcomes"]), list)
        listed = (await http.get("/v1/markets")).json()["markets"]
        real_listed = _load("dradis-markets-response-futures-trimmed.json")["markets"][0]
        _compare(listed[0], real_listed, "markets[]", problems,
                 set(listed[0]) - set(real_listed))  # the capture is a trimmed field subset
        fractional = [m for m in listed if m["minimumTradeQty"] != 1]
        assert {m["orderPriceMinTickSize"] for m in fractional} >= {0.005, 0.0025}
        assert all(m["minimumTradeQty"] == 0.01 and m["feeCoefficient"] == 0.06
                   for m in fractional)
        # the long side is the first team of the slug
        for m in listed:
            long_side = next(s for s in m["marketSides"] if s["long"])
            assert m["slug"].split("-")[2] == long_side["identifier"], m["slug"]

        partner = (await http.get(f"/v1/partners/opticodds/events/{game.fixture_id}")).json()
        _compare({k: v for k, v in partner["event"].items() if k != "markets"},
                 {k: v for k, v in real_event.items() if k != "markets"}, "partner.event",
                 problems, EXTRA["event"])
        assert str(game.market_id) in {str(s["marketId"]) for s in partner["mappedMarketSides"]}

        book = (await http.get(f"/v1/markets/{slug}/book")).json()
        _compare(book, _load("book-aec-ufc-casone-edumou-2026-09-19.json"), "book", problems)
        sim.exchange.set_market_state(sim.markets[1], __import__(
            "polybot.model", fromlist=["MarketState"]).MarketState.HALTED)
        await trio.sleep(0)
        bbo = (await http.get(f"/v1/markets/{sim.markets[1]}/bbo")).json()
        _compare(bbo["marketData"],
                 _load("bbo-halted-tsc-cfb-okst-tulsa-2026-09-05-total-55pt5.json")["marketData"],
                 "bbo", problems, EXTRA["bbo"])
        assert not problems, "\n".join(problems)


def _decoded(raw_event):
    """What the bot's parser makes of an Event: which fields it could fill, not their values."""
    from polybot.polymarket import wire as bot_wire

    event, markets = bot_wire.parse_event(raw_event)
    (market,) = [m for m in markets if m.sports_market_type.endswith("_full_game_winner")]
    return {
        "event": {name: bool(getattr(event, name)) for name in (
            "event_id", "slug", "title", "start_time", "series_slug", "market_slugs")},
        "teams": [(bool(t.team_id), bool(t.name), bool(t.abbreviation), bool(t.league),
                   bool(t.provider_ids)) for t in event.teams],
        "market": {name: bool(getattr(market, name)) for name in (
            "slug", "market_id", "event_id", "event_slug", "tick", "min_qty", "fee_coefficient",
            "start_time", "title", "sides", "sports_market_type")},
        "status": market.status,
        "sides": sorted((s.long, bool(s.side_id), bool(s.description), bool(s.team_id))
                        for s in market.sides),
        "start": market.start_time == event.start_time,
    }


async def test_a_league_schedule_event_decodes_like_the_recorded_one_and_leagues_match_it():
    from polybot.polymarket import wire as bot_wire
    from polybot.sim.scenario import league_schedule_spec

    real_event = _load("events-v1-mlb-sd-col-2026-09-16-excerpt.json")["events"][0]
    # the league object the capture embeds in its tags is the one /v2/leagues serves
    real_league = next(t["league"] for t in real_event["tags"] if "league" in t)
    async with running_sim(seed=2, scenario=league_schedule_spec(2, ("nba", "nhl")),
                           run_scenario=False) as sim, \
            httpx.AsyncClient(base_url=sim.gateway_url) as http:
        problems: list[str] = []
        league = (await http.get("/v2/leagues/nba")).json()["league"]
        _compare(league, real_league, "league", problems)
        assert {"id", "slug", "name", "activeSeriesId", "isOperational"} <= league.keys()
        series = league["activeSeriesId"]
        r = await http.get("/v1/events", params={"seriesId": series, "closed": "false"})
        events = bot_wire.loads_exact(r.content)["events"]
        assert events
        real = _decoded(bot_wire.loads_exact(json.dumps(real_event)))
        for ev in events:
            _compare({k: v for k, v in ev.items() if k != "markets"},
                     {k: v for k, v in real_event.items() if k != "markets"}, "event", problems,
                     EXTRA["event"])
            _compare(ev["markets"][0], real_event["markets"][0], "market", problems,
                     EXTRA["market"])
            assert _decoded(ev) == real, ev["slug"]
        assert not problems, "\n".join(problems)
