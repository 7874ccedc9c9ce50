import random

import pytest
import trio

from polybot.polymarket.ratelimit import Backoff, TokenBucket


async def test_bucket_allows_a_burst_then_paces_at_rate(autojump_clock):
    bucket = TokenBucket(rate=20, burst=20)
    start = trio.current_time()
    stamps = []
    for _ in range(60):
        await bucket.acquire()
        stamps.append(trio.current_time() - start)
    assert stamps[19] == pytest.approx(0)  # the burst is free
    assert stamps[-1] == pytest.approx(40 / 20)  # the other 40 at 20/s


async def test_under_limit_bucket_never_exceeds_the_limit_in_any_second(autojump_clock):
    bucket = TokenBucket.under_limit(20)
    start = trio.current_time()
    stamps = []
    for _ in range(200):  # e.g. start-up fetching 200 books at once
        await bucket.acquire()
        stamps.append(trio.current_time() - start)
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < t + 1.0 - 1e-9) <= 20
    assert stamps[-1] < 200 / 20 * 1.25  # and stays close to the limit


async def test_bucket_refills_while_idle(autojump_clock):
    bucket = TokenBucket(rate=10, burst=5)
    for _ in range(5):
        await bucket.acquire()
    await trio.sleep(10)
    start = trio.current_time()
    for _ in range(5):
        await bucket.acquire()
    assert trio.current_time() == start
    assert bucket.waits == 0


async def test_try_acquire_takes_only_a_free_token_and_never_jumps_the_queue(autojump_clock):
    bucket = TokenBucket(rate=10, burst=2)
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()  # empty: nothing taken, nothing owed
    taken = []

    async def waiter():
        await bucket.acquire()
        taken.append(trio.current_time())

    async with trio.open_nursery() as n:
        start = trio.current_time()
        n.start_soon(waiter)
        await trio.sleep(0.05)  # half a token's refill: the waiter is queued, in debt
        assert not bucket.try_acquire()
    assert taken == [pytest.approx(start + 0.1)]  # the waiter's slot was not taken from it
    await trio.sleep(0.1)
    assert bucket.try_acquire()


async def test_concurrent_waiters_share_the_rate(autojump_clock):
    bucket = TokenBucket(rate=5, burst=1)
    done = []
    start = trio.current_time()

    async def worker():
        for _ in range(5):
            await bucket.acquire()
            done.append(trio.current_time() - start)

    async with trio.open_nursery() as n:
        for _ in range(4):
            n.start_soon(worker)
    assert len(done) == 20
    assert max(done) == pytest.approx(19 / 5)


async def test_cancelled_waiter_gives_its_slot_back(autojump_clock):
    bucket = TokenBucket(rate=1, burst=1)
    await bucket.acquire()
    with trio.move_on_after(0.1):
        await bucket.acquire()
    start = trio.current_time()
    await bucket.acquire()
    assert trio.current_time() - start == pytest.approx(0.9)


def test_backoff_grows_exponentially_up_to_the_cap_with_equal_jitter():
    b = Backoff(0.5, 30, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(12)]
    ceilings = [min(30, 0.5 * 2**i) for i in range(12)]
    for d, c in zip(delays, ceilings, strict=True):
        assert c / 2 <= d <= c
    assert max(delays) <= 30 and delays[-1] >= 15


def test_backoff_reset_starts_over():
    b = Backoff(1, 30, rng=random.Random(2))
    for _ in range(8):
        b.next_delay()
    b.reset()
    assert b.next_delay() <= 1
