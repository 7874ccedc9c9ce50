"""Every REST method of the client against the local exchange, plus the failure policy."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio

from polybot.model import Intent, MarketStatus, OrderState, TimeInForce
from polybot.polymarket import (
    AuthError,
    BadRequest,
    NotFound,
    OutcomeUnknown,
    PolymarketRestClient,
    RateLimited,
    RestConfig,
    ServerError,
    Signer,
)
from polybot.sim.harness import running_sim

from .conftest import order


async def test_markets_list_by_slug_book_bbo_and_settlement(env):
    sim, rest = env.sim, env.rest
    slug = sim.markets[0]
    markets = await rest.list_markets(limit=100)
    assert {m.slug for m in markets} >= set(sim.markets)
    paged = await rest.all_markets(page_size=1)
    assert [m.slug for m in paged] == [m.slug for m in markets]
    info = await rest.market_by_slug(slug)
    assert info.slug == slug and info.status is MarketStatus.OPEN and info.tick == Decimal("0.01")
    assert sum(s.long for s in info.sides) == 1

    await env.other.create_order(order(slug, Intent.BUY_LONG, "0.41", "7"))
    await env.other.create_order(order(slug, Intent.BUY_SHORT, "0.45", "3"))
    book = await rest.book(slug)
    assert [(lv.price, lv.qty) for lv in book.bids] == [(Decimal("0.41"), Decimal("7"))]
    assert [(lv.price, lv.qty) for lv in book.offers] == [(Decimal("0.45"), Decimal("3"))]
    bbo = await rest.bbo(slug)
    assert (bbo.best_bid, bbo.best_ask) == (Decimal("0.41"), Decimal("0.45"))

    assert await rest.settlement(slug) is None
    sim.exchange.settle(sim.markets[1], Decimal("0.5"))
    assert await rest.settlement(sim.markets[1]) == Decimal("0.5")
    with pytest.raises(NotFound):
        await rest.market_by_slug("no-such-market")


async def test_events_by_slug_by_id_and_partner_lookup(env):
    game = env.sim.world.games[0]
    event, markets = await env.rest.event_by_slug(game.event_slug)
    assert [m.slug for m in markets] == [game.market_slug]
    assert event.event_id == str(game.event_id) and game.market_slug in event.market_slugs
    assert {t.provider_id("PROVIDER_OPTICODDS") for t in event.teams} == {
        game.home.opticodds_id,
        game.away.opticodds_id,
    }
    by_id, _ = await env.rest.event_by_id(game.event_id)
    assert by_id == event
    linked = await env.rest.partner_event(game.fixture_id)
    assert linked is not None
    ev2, markets2, sides = linked
    assert ev2.event_id == event.event_id and markets2[0].slug == game.market_slug
    side_ids = {s.side_id for s in markets2[0].sides}
    assert {s.market_side_id for s in sides} <= side_ids and all(
        s.market_id == markets2[0].market_id for s in sides
    )
    assert await env.rest.partner_event("no-such-fixture") is None


async def test_order_lifecycle_create_get_open_modify_cancel(env):
    rest, slug = env.rest, env.sim.markets[0]
    oid = await rest.create_order(order(slug, Intent.BUY_LONG, "0.30", "4"))
    got = await rest.order(oid)
    assert (got.order_id, got.intent, got.price, got.quantity, got.cum_quantity) == (
        oid,
        Intent.BUY_LONG,
        Decimal("0.30"),
        Decimal(4),
        0,
    )
    accepted = env.sim.exchange.orders_accepted[-1]
    assert (
        accepted.order_id == oid
        and accepted.request.manual_order_indicator == "MANUAL_ORDER_INDICATOR_AUTOMATIC"
    )
    assert [o.order_id for o in await rest.open_orders([slug])] == [oid]
    assert await rest.open_orders([env.sim.markets[1]]) == []

    await rest.modify_order(oid, slug, price=Decimal("0.31"), quantity=Decimal("6"))
    got = await rest.order(oid)
    assert (got.price, got.quantity) == (Decimal("0.31"), Decimal(6))

    await rest.cancel_order(oid, slug)
    assert (await rest.order(oid)).state is OrderState.CANCELED
    await rest.cancel_order(oid, slug)  # idempotent: cancelling again is harmless
    with pytest.raises(NotFound):
        await rest.order("o-unknown")


async def test_batched_create_batched_cancel_and_cancel_all(env):
    rest, (a, b) = env.rest, env.sim.markets[:2]
    ids = await rest.create_orders(
        [
            order(a, Intent.BUY_LONG, "0.20", "1"),
            order(a, Intent.BUY_LONG, "0.21", "1"),
            order(b, Intent.BUY_LONG, "0.22", "1"),
        ]
    )
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(
        r.request.manual_order_indicator == "MANUAL_ORDER_INDICATOR_AUTOMATIC"
        for r in env.sim.exchange.orders_accepted[-3:]
    )
    echoed = await rest.cancel_orders([(ids[0], a)])
    assert echoed == [ids[0]]
    assert {o.order_id for o in await rest.open_orders()} == set(ids[1:])
    canceled = await rest.cancel_all([a])
    assert canceled == [ids[1]]
    assert [o.order_id for o in await rest.open_orders()] == [ids[2]]
    assert await rest.cancel_all() == [ids[2]]
    assert await rest.open_orders() == []


async def test_fill_shows_in_positions_activities_and_balances(env):
    rest, slug = env.rest, env.sim.markets[0]
    before = (await rest.balances())[0]
    await env.other.create_order(order(slug, Intent.BUY_SHORT, "0.40", "10"))  # an offer at 0.40
    oid = await rest.create_order(order(slug, Intent.BUY_LONG, "0.40", "4", TimeInForce.IOC))
    filled = await rest.order(oid)
    assert filled.state is OrderState.FILLED and filled.cum_quantity == Decimal(4)
    positions = await rest.positions()
    assert positions[slug].net_qty == Decimal(4)
    assert positions[slug].to_position().avg_price == Decimal("0.4")
    trades = [a for a in await rest.activities() if a.type == "ACTIVITY_TYPE_TRADE"]
    assert trades and trades[0].market_slug == slug and trades[0].qty == Decimal(4)
    after = (await rest.balances())[0]
    assert after.current_balance < before.current_balance - Decimal(
        "1.59"
    )  # 4 × 0.40 plus the taker fee


async def test_positions_follow_cursors_across_pages(env):
    rest = env.rest
    for slug in env.sim.markets[:3]:
        await env.other.create_order(order(slug, Intent.BUY_SHORT, "0.50", "1"))
        await rest.create_order(order(slug, Intent.BUY_LONG, "0.50", "1", TimeInForce.IOC))
    positions = await rest.positions(page_size=1)
    assert set(positions) == set(env.sim.markets[:3])


async def test_get_is_retried_through_a_5xx_burst(env):
    env.sim.faults.error_burst = 2
    balances = await env.rest.balances()
    assert balances and env.rest.retries == 2 and env.sim.faults.error_burst == 0


async def test_get_gives_up_with_server_error_when_the_burst_outlasts_retries(env):
    env.sim.faults.error_burst = 10
    with pytest.raises(ServerError) as info:
        await env.rest.book(env.sim.markets[0])
    assert info.value.status == 500 and info.value.correlation_id


async def test_429_is_retried_for_reads_and_surfaced_for_creates(env):
    faults, accepted = env.sim.faults, env.sim.exchange.orders_accepted
    faults.rate_limit_burst = 1
    assert await env.rest.open_orders() == []
    assert env.rest.retries == 1
    faults.rate_limit_burst = 1
    n = len(accepted)
    with pytest.raises(RateLimited):
        await env.rest.create_order(order(env.sim.markets[0], Intent.BUY_LONG, "0.30", "1"))
    assert len(accepted) == n  # the edge refused it: nothing reached the exchange


async def test_create_accepted_but_unanswered_raises_outcome_unknown_and_sends_once(env):
    sim, slug = env.sim, env.sim.markets[0]
    sim.faults.hang_orders = 1
    n = len(sim.exchange.orders_accepted)
    req = order(slug, Intent.BUY_LONG, "0.33", "2")
    with trio.fail_after(5):
        with pytest.raises(OutcomeUnknown) as info:
            await env.rest.create_order(req)
    assert info.value.sent["marketSlug"] == slug and info.value.sent["quantity"] == Decimal(2)
    assert info.value.correlation_id
    assert len(sim.exchange.orders_accepted) == n + 1  # exactly one order, never resent
    # the caller reconciles: the order is there
    opened = await env.rest.open_orders([slug])
    assert [o.price for o in opened] == [Decimal("0.33")]


async def test_batched_create_under_a_5xx_is_outcome_unknown_and_not_retried(env):
    env.sim.faults.error_burst = 1
    with pytest.raises(OutcomeUnknown):
        await env.rest.create_orders([order(env.sim.markets[0], Intent.BUY_LONG, "0.30", "1")])
    assert env.sim.faults.error_burst == 0 and env.rest.retries == 0


async def test_bad_request_is_a_typed_error(env):
    with pytest.raises(BadRequest):
        await env.rest.cancel_orders([("o-1", "")])


async def test_wrong_key_is_an_auth_error_with_correlation_id(env):
    bad = Signer(env.sim.key_id, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    async with PolymarketRestClient(env.rest_config(), bad) as rest:
        with pytest.raises(AuthError) as info:
            await rest.balances()
    assert info.value.status == 401 and info.value.correlation_id
    assert rest.retries == 0


async def test_clock_skew_is_measured_from_the_date_header_and_warned(env, caplog):
    env.sim.faults.clock_skew_seconds = 12.0
    with caplog.at_level("WARNING"):
        await env.rest.balances()  # 12 s is inside the 30 s signature window
    assert 10 < env.rest.clock_skew_seconds < 14
    assert any("clock skew" in r.message for r in caplog.records)


async def test_maintenance_503_surfaces_as_server_error_after_retries(env):
    env.sim.faults.maintenance = True
    with pytest.raises(ServerError) as info:
        await env.rest.balances()
    assert info.value.status == 503 and env.rest.retries == env.rest.config.max_retries


async def test_own_load_never_earns_a_429_from_the_edge_limit():
    # the sim enforces 20 requests per rolling second per key, like the real edge
    async with running_sim(seed=3, run_scenario=False, rate_limit=20.0) as sim:
        config = RestConfig(
            api_url=sim.api_url,
            gateway_url=sim.gateway_url,
            max_retries=0,
            rate_limit_per_second=20,
        )
        async with PolymarketRestClient(config, Signer(sim.key_id, sim.secret_key)) as rest:
            results = []

            async def call():
                results.append(await rest.balances())

            async with trio.open_nursery() as n:
                for _ in range(40):  # e.g. start-up reconciling many markets at once
                    n.start_soon(call)
    assert len(results) == 40 and rest.errors == 0
