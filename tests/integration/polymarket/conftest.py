"""Fixtures: the real client against `polybot.sim` on loopback (no mocks of the client).

Real time with shortened intervals (heartbeats 0.2 s, staleness 0.8 s, backoff ≤ 0.2 s) keeps
each test to about a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio

from polybot.model import Intent, OrderRequest, TimeInForce
from polybot.polymarket import (
    PolymarketRestClient,
    RestConfig,
    Signer,
    StreamConfig,
)
from polybot.sim.harness import running_sim


@attrs.define
class Env:
    sim: Any
    rest: PolymarketRestClient
    signer: Signer
    other: PolymarketRestClient  # a second account that provides liquidity

    def rest_config(self, **kw: Any) -> RestConfig:
        kw.setdefault("timeout", 1.0)
        kw.setdefault("backoff_base", 0.02)
        kw.setdefault("backoff_cap", 0.1)
        return RestConfig(api_url=self.sim.api_url, gateway_url=self.sim.gateway_url, **kw)

    def stream_config(self, **kw: Any) -> StreamConfig:
        kw.setdefault("stale_after", 0.8)
        kw.setdefault("backoff_base", 0.05)
        kw.setdefault("backoff_cap", 0.2)
        kw.setdefault("connect_timeout", 2.0)
        kw.setdefault("disconnect_timeout", 0.3)
        return StreamConfig(ws_url=self.sim.ws_url, **kw)


def order(
    slug: str, intent: Intent, price: str, qty: str, tif: TimeInForce = TimeInForce.GTC
) -> OrderRequest:
    return OrderRequest(slug, intent, Decimal(price), Decimal(qty), tif)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with running_sim(
        seed=7, run_scenario=False, heartbeat_seconds=0.2, rate_limit=None
    ) as sim:
        signer = Signer(sim.key_id, sim.secret_key)
        key2 = sim.create_account(Decimal("10000"))
        base = dict(
            api_url=sim.api_url,
            gateway_url=sim.gateway_url,
            timeout=1.0,
            backoff_base=0.02,
            backoff_cap=0.1,
        )
        async with (
            PolymarketRestClient(RestConfig(**base), signer) as rest,
            PolymarketRestClient(RestConfig(**base), Signer(key2.key_id, key2.secret_key)) as other,
        ):
            yield Env(sim, rest, signer, other)


async def next_of(
    receive: trio.MemoryReceiveChannel, kind: type, timeout: float = 5.0, where=lambda e: True
) -> Any:
    """The next event of `kind` satisfying `where` (others are skipped)."""
    with trio.fail_after(timeout):
        async for ev in receive:
            if isinstance(ev, kind) and where(ev):
                return ev
    raise AssertionError("channel closed")
