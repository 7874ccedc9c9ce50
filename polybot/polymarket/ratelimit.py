"""Pacing: client-side token buckets (so the bot never earns a 429 under its own load) and
jittered exponential backoff.

A bucket holds up to `burst` tokens and refills at `rate` per second on Trio's clock (so tests
run on the mock clock). `acquire()` takes one token, sleeping until one is available; waiters are
served in arrival order because each reserves its slot (tokens may go negative) before sleeping.
"""

from __future__ import annotations

import random

import trio


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.burst
        self._stamp: float | None = None
        self.waits = 0  # how many acquisitions had to sleep (a metric)

    @classmethod
    def under_limit(cls, limit_per_second: float) -> TokenBucket:
        """A bucket that stays under `limit_per_second` in ANY one-second window.

        A plain bucket admits up to burst + rate per window, and network jitter can bunch
        arrivals at the server; so the burst is a tenth of the limit and the sustained rate 85%.
        """
        return cls(limit_per_second * 0.85, max(1.0, limit_per_second * 0.1))

    def _refill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> bool:
        """Take a token if one is free now (no waiter is ahead then: waiters leave the bucket
        in debt); False leaves the bucket as it was. Never yields to the scheduler."""
        self._refill(trio.current_time())
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def acquire(self) -> None:
        now = trio.current_time()
        self._refill(now)
        self._tokens -= 1.0
        if self._tokens >= 0:
            await trio.lowlevel.checkpoint()
            return
        self.waits += 1
        try:
            # our slot comes when the deficit is paid back at `rate`
            await trio.sleep_until(now + (-self._tokens) / self.rate)
        except trio.Cancelled:
            self._tokens += 1.0  # give the reserved slot back
            raise


class Backoff:
    """Capped exponential backoff with "equal jitter" (half fixed, half random).

    `next_delay()` grows base·2^n up to `cap`; `reset()` starts over (after a stable period).
    """

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** min(attempt, 32)))

    def next_delay(self) -> float:
        d = self.ceiling(self.attempt)
        self.attempt += 1
        return d / 2 + self._rng.uniform(0, d / 2)

    def reset(self) -> None:
        self.attempt = 0
