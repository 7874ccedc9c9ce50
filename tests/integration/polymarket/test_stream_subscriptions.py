"""The markets stream's subscriptions follow a changing set of markets, against the local exchange:
several subscriptions past 100 markets, a change re-sends only the chunk it touches and never
reconnects, a subscription that stays silent is re-sent (new requestId, at most 3 times) and then
reported no_data, a removed market leaves no trace. Real client, real sockets, simulated time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from polybot.model import Intent
from polybot.polymarket import BookReplaced, MarketsStream, PolymarketRestClient, RestConfig, Signer
from polybot.polymarket.stream import MARKET_DATA, TRADE, StreamConfig
from polybot.sim.harness import running_sim
from polybot.sim.scenario import default_spec

from .conftest import order


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


@pytest.fixture
async def sim(mock_clock):
    async with running_sim(seed=3, scenario=default_spec(3, n_games=160), run_scenario=False,
                           rate_limit=None, heartbeat_seconds=5.0) as s:
        yield s


def config(sim) -> StreamConfig:
    return StreamConfig(ws_url=sim.ws_url, stale_after=15.0, backoff_base=0.05, backoff_cap=0.2,
                        connect_timeout=5.0, disconnect_timeout=0.5)


class Books:
    """Drains the stream's channel, keeping which markets delivered a book."""

    def __init__(self, receive):
        self.receive = receive
        self.seen: dict[str, int] = {}

    async def run(self):
        async for ev in self.receive:
            if isinstance(ev, BookReplaced):
                self.seen[ev.book.market_slug] = self.seen.get(ev.book.market_slug, 0) + 1


def server_subs(sim) -> dict[str, frozenset[str]]:
    """The sim's view: market-data requestId -> markets, over its open markets sockets."""
    return {rid: sub.slugs for conn in sim.server.hub.connections if conn.kind == "markets"
            for rid, sub in conn.subs.items() if sub.sub_type == MARKET_DATA}


async def wait_for(cond, timeout=60.0):
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.5)


async def start(nursery, sim, slugs, **kw):
    send, receive = trio.open_memory_channel(100_000)
    stream = MarketsStream(config(sim), Signer(sim.key_id, sim.secret_key), send, slugs, **kw)
    books = Books(receive)
    nursery.start_soon(books.run)
    nursery.start_soon(stream.run)
    return stream, books


async def test_more_than_100_markets_make_several_subscriptions_each_fully_answered(sim, nursery, mock_clock):
    slugs = sim.markets[:160]
    stream, books = await start(nursery, sim, slugs)
    await wait_for(lambda: set(books.seen) == set(slugs))
    subs = server_subs(sim)
    assert sorted(len(s) for s in subs.values()) == [60, 100]
    assert frozenset().union(*subs.values()) == frozenset(slugs)
    assert set(stream.subscriptions) == set(subs)
    assert sim.server.hub.accepted["markets"] == 1 and stream.resends == 0


async def test_adding_a_market_re_sends_one_chunk_and_never_reconnects(sim, nursery, mock_clock):
    first, new = sim.markets[:150], sim.markets[150]
    stream, books = await start(nursery, sim, first, subscription_types=(MARKET_DATA, TRADE))
    await wait_for(lambda: set(books.seen) == set(first))
    before = server_subs(sim)
    subscribes, unsubscribes = stream.subscribes, stream.unsubscribes
    await stream.set_markets([*first, new])
    await wait_for(lambda: new in books.seen)
    after = server_subs(sim)
    # the full chunk is untouched; the other one is replaced by one with the new market
    assert len(after) == 2 and len(set(after) & set(before)) == 1
    (kept,) = set(after) & set(before)
    (replaced,) = set(before) - set(after)
    assert len(before[kept]) == 100 and after[kept] == before[kept]
    (fresh,) = set(after) - set(before)
    assert after[fresh] == before[replaced] | {new}
    assert (stream.subscribes - subscribes, stream.unsubscribes - unsubscribes) == (2, 2)  # 2 types
    assert sim.server.hub.accepted["markets"] == 1 and stream.connects == 1
    # 50 adds at once in one change: still at most the chunks that changed
    more = sim.markets[151:160]
    await stream.set_markets([*first, new, *more])
    await wait_for(lambda: set(more) <= set(books.seen))
    assert frozenset().union(*server_subs(sim).values()) == frozenset([*first, new, *more])
    assert sim.server.hub.accepted["markets"] == 1


async def test_a_removed_market_is_unsubscribed_and_leaves_no_state(sim, nursery, mock_clock):
    slugs = sim.markets[:3]
    gone = slugs[1]
    sim.faults.unanswer_subscriptions(gone, 1)  # some per-market state to drop: a re-send count
    stream, books = await start(nursery, sim, slugs)
    await wait_for(lambda: set(books.seen) == set(slugs) - {gone})
    await trio.sleep(11)  # the first deadline passes: gone is re-sent once and answers
    await wait_for(lambda: gone in books.seen)
    await stream.set_markets([s for s in slugs if s != gone])
    await trio.sleep(0.5)
    assert all(gone not in s for s in server_subs(sim).values())
    assert gone not in stream.slugs and gone not in stream._unanswered
    assert all(gone not in c.slugs for c in stream._chunks)
    seen = books.seen[gone]
    async with PolymarketRestClient(
            RestConfig(api_url=sim.api_url, gateway_url=sim.gateway_url, timeout=2.0),
            Signer(sim.key_id, sim.secret_key)) as rest:
        await rest.create_order(order(gone, Intent.BUY_LONG, "0.30", "1"))
    await trio.sleep(1)
    assert books.seen[gone] == seen  # no book of a removed market reaches the consumer
    assert sim.server.hub.accepted["markets"] == 1


async def test_a_silent_subscription_is_re_sent_three_times_then_the_market_is_no_data(
        sim, nursery, mock_clock):
    silent, other = sim.markets[:2]
    sim.faults.unanswer_subscriptions(silent, 4)  # the first send and all three re-sends
    reports: list[tuple[str, bool, float]] = []
    stream, books = await start(
        nursery, sim, [silent, other],
        on_no_data=lambda slug, no: reports.append((slug, no, trio.current_time())))
    t0 = trio.current_time()
    request_ids: list[str] = []
    for _ in range(4):  # sampled between the 10 s deadlines
        await trio.sleep_until(t0 + 5 + 10 * len(request_ids))
        assert reports == [] and stream.no_data == set()
        (rid,) = stream.subscriptions
        request_ids.append(rid)
    assert len(set(request_ids)) == 4  # each re-send under a new requestId
    assert set(server_subs(sim)) == {request_ids[-1]}  # the old ones were unsubscribed
    await trio.sleep_until(t0 + 42)
    assert [r[:2] for r in reports] == [(silent, True)]
    assert 40 <= reports[0][2] - t0 <= 41  # 4 sends, 10 s each
    assert stream.resends == 3 and stream.no_data == {silent}
    assert silent not in books.seen and other in books.seen
    await trio.sleep(30)
    assert stream.resends == 3 and len(reports) == 1  # given up: no more re-sends, no more alerts
    assert sim.server.hub.accepted["markets"] == 1  # the other market kept the socket answered
    # a no_data market that delivers a snapshot later (here: after a reconnect) is cleared
    sim.faults.drop_websockets()
    await wait_for(lambda: silent in books.seen)
    assert reports[-1][:2] == (silent, False) and stream.no_data == set()


async def test_a_subscription_answered_on_a_re_send_is_never_no_data(sim, nursery, mock_clock):
    silent, other = sim.markets[:2]
    sim.faults.unanswer_subscriptions(silent, 2)
    reports: list[tuple[str, bool]] = []
    stream, books = await start(nursery, sim, [silent, other],
                                on_no_data=lambda slug, no: reports.append((slug, no)))
    await wait_for(lambda: silent in books.seen, timeout=60)
    await trio.sleep(60)
    assert stream.resends == 2 and reports == [] and stream._unanswered == {}
    assert books.seen[other] >= 3  # each re-send brought a fresh snapshot of the whole chunk
    assert stream.dropped_unwatched == 0


async def test_a_change_made_while_disconnected_is_what_the_reconnect_subscribes(
        sim, nursery, mock_clock):
    first, later = sim.markets[:3], sim.markets[3:5]
    stream, books = await start(nursery, sim, first)
    await wait_for(lambda: set(books.seen) == set(first))
    sim.faults.maintenance = True  # sockets closed, upgrades refused
    await wait_for(lambda: not stream.status.connected)
    await stream.set_markets([first[0], *later])  # nothing to send it on: kept for the reconnect
    assert stream.subscribes == 1 and stream.unsubscribes == 0
    sim.faults.maintenance = False
    await wait_for(lambda: stream.status.connected and set(later) <= set(books.seen), 60)
    subs = server_subs(sim)
    assert len(subs) == 1 and set(subs.values()) == {frozenset([first[0], *later])}
    assert stream.unsubscribes == 0  # the old connection's requestIds died with it
