"""The REST retry/outcome policy, driven through httpx's transport seam (no server needed).

The integration tests run the same client against polybot.sim; these pin the rules that decide
whether money can be duplicated, with every branch reachable on demand.
"""

import json
from decimal import Decimal

import httpx
import pytest
import trio

from polybot.model import Intent, OrderRequest, TimeInForce
from polybot.polymarket import errors as E
from polybot.polymarket.auth import Signer
from polybot.polymarket.rest import PolymarketRestClient, RestConfig

SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
REQ = OrderRequest("s", Intent.BUY_LONG, Decimal("0.40"), Decimal("5"), TimeInForce.GTC)


def make_client(handler, **cfg):
    config = RestConfig(
        api_url="http://api.test",
        gateway_url="http://gw.test",
        timeout=cfg.pop("timeout", 5.0),
        backoff_base=0.01,
        backoff_cap=0.05,
        **cfg,
    )
    return PolymarketRestClient(config, Signer("key", SEED), transport=httpx.MockTransport(handler))


class Recorder:
    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request):
        self.requests.append(request)
        r = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(r, Exception):
            raise r
        if r == "hang":
            await trio.sleep_forever()
        return r


def ok(body):
    return httpx.Response(200, json=body)


async def test_get_is_retried_through_5xx_with_one_correlation_id():
    rec = Recorder(
        httpx.Response(503), httpx.Response(500, json={"message": "boom"}), ok({"balances": []})
    )
    async with make_client(rec) as c:
        assert await c.balances() == []
    assert len(rec.requests) == 3
    assert len({r.headers["poly-correlation-id"] for r in rec.requests}) == 1
    # each attempt is signed afresh
    assert all("X-PM-Signature" in r.headers for r in rec.requests)


async def test_get_gives_up_after_max_retries_with_typed_error():
    rec = Recorder(httpx.Response(502, json={"message": "bad gateway"}))
    async with make_client(rec, max_retries=2) as c:
        with pytest.raises(E.ServerError) as info:
            await c.balances()
    assert len(rec.requests) == 3
    assert (
        info.value.status == 502
        and info.value.correlation_id == rec.requests[0].headers["poly-correlation-id"]
    )
    assert "bad gateway" in str(info.value)


async def test_get_retries_429_and_transport_errors():
    rec = Recorder(httpx.Response(429), httpx.ReadError("reset"), ok({"orders": []}))
    async with make_client(rec) as c:
        assert await c.open_orders() == []
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    ("status", "exc"),
    [(400, E.BadRequest), (401, E.AuthError), (403, E.AuthError), (404, E.NotFound)],
)
async def test_client_errors_are_not_retried(status, exc):
    rec = Recorder(httpx.Response(status, text="plain text, not json"))
    async with make_client(rec) as c:
        with pytest.raises(exc):
            await c.order("o-1")
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(408),
        httpx.ReadError("eof"),
        httpx.RemoteProtocolError("gone"),
    ],
)
async def test_create_is_never_retried_and_ambiguity_is_outcome_unknown(failure):
    rec = Recorder(failure)
    async with make_client(rec) as c:
        with pytest.raises(E.OutcomeUnknown) as info:
            await c.create_order(REQ)
    assert len(rec.requests) == 1
    sent = info.value.sent
    assert (
        sent["marketSlug"] == "s"
        and sent["manualOrderIndicator"] == "MANUAL_ORDER_INDICATOR_AUTOMATIC"
    )
    assert info.value.correlation_id == rec.requests[0].headers["poly-correlation-id"]


async def test_create_that_never_answers_is_outcome_unknown_after_the_deadline(autojump_clock):
    rec = Recorder("hang")
    async with make_client(rec, timeout=3.0) as c:
        start = trio.current_time()
        with pytest.raises(E.OutcomeUnknown) as info:
            await c.create_order(REQ)
    assert trio.current_time() - start == pytest.approx(3.0)
    assert isinstance(info.value.cause, E.Timeout)
    assert len(rec.requests) == 1


async def test_create_that_could_not_connect_is_a_plain_transport_error():
    rec = Recorder(httpx.ConnectError("refused"))
    async with make_client(rec) as c:
        with pytest.raises(E.TransportError) as info:
            await c.create_order(REQ)
    assert not isinstance(info.value, E.OutcomeUnknown)
    assert len(rec.requests) == 1


async def test_create_rate_limited_is_not_retried():
    rec = Recorder(httpx.Response(429, json={"status": 429, "message": "Too Many Requests"}))
    async with make_client(rec) as c:
        with pytest.raises(E.RateLimited):
            await c.create_orders([REQ, REQ])
    assert len(rec.requests) == 1


async def test_modify_is_never_retried():
    rec = Recorder(httpx.Response(500))
    async with make_client(rec) as c:
        with pytest.raises(E.OutcomeUnknown):
            await c.modify_order("o-1", "s", price=Decimal("0.41"))
    assert len(rec.requests) == 1
    assert json.loads(rec.requests[0].content) == {
        "marketSlug": "s",
        "price": {"value": "0.41", "currency": "USD"},
    }


async def test_cancel_is_idempotent_and_retried():
    rec = Recorder(httpx.Response(503), ok({}))
    async with make_client(rec) as c:
        await c.cancel_order("o-1", "s")
    assert len(rec.requests) == 2
    assert rec.requests[0].url.path == "/v1/order/o-1/cancel"
    assert json.loads(rec.requests[1].content) == {"marketSlug": "s"}


async def test_create_body_and_headers_on_the_wire():
    rec = Recorder(ok({"id": "ord-9"}))
    async with make_client(rec) as c:
        assert await c.create_order(REQ) == "ord-9"
    r = rec.requests[0]
    assert r.url == "http://api.test/v1/orders"
    assert (
        b'"quantity":5' in r.content
        and b'"manualOrderIndicator":"MANUAL_ORDER_INDICATOR_AUTOMATIC"' in r.content
    )
    assert r.headers["content-type"] == "application/json"


async def test_public_calls_go_to_the_gateway_unsigned():
    rec = Recorder(ok({"marketData": {"marketSlug": "s", "bids": [], "offers": []}}))
    async with make_client(rec) as c:
        book = await c.book("s")
    assert book.market_slug == "s"
    assert rec.requests[0].url.host == "gw.test"
    assert "X-PM-Signature" not in rec.requests[0].headers


async def test_positions_follow_cursors_to_eof():
    pages = [
        ok({"positions": {"a": {"netPositionDecimal": "1"}}, "nextCursor": "c1", "eof": False}),
        ok({"positions": {"b": {"netPositionDecimal": "-2.5"}}, "nextCursor": "c2", "eof": False}),
        ok({"positions": {}, "eof": True}),
    ]
    rec = Recorder(*pages)
    async with make_client(rec) as c:
        pos = await c.positions()
    assert {k: v.net_qty for k, v in pos.items()} == {"a": Decimal(1), "b": Decimal("-2.5")}
    assert [r.url.params.get("cursor") for r in rec.requests] == [None, "c1", "c2"]


async def test_clock_skew_over_five_seconds_is_warned_once(caplog):
    resp = httpx.Response(
        200, json={"balances": []}, headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    rec = Recorder(resp)
    async with make_client(rec) as c:
        with caplog.at_level("WARNING"):
            await c.balances()
            await c.balances()
    assert c.clock_skew_seconds < -1e8
    assert sum("clock skew" in r.message for r in caplog.records) == 1


async def test_batches_are_bounded_before_sending():
    rec = Recorder(ok({}))
    async with make_client(rec) as c:
        with pytest.raises(ValueError):
            await c.create_orders([REQ] * 21)
        with pytest.raises(ValueError):
            await c.cancel_orders([])
    assert rec.requests == []
