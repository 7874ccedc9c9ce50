"""Hot-path cost of the Polymarket US client: frame decode+structure and REST sign+build.

    .venv/bin/python -m bench.bench_client [--n 3000]

Prints one table (µs per operation, best of 9 interleaved rounds). Candidates for the websocket frames:

* orjson + hand parse   — what `wire.decode_frame` does: orjson for the envelope, `Decimal(str)`
                           on the few strings that carry money; a fractional JSON number in a
                           money field makes it re-decode the frame exactly (measured separately).
* json(parse_float=Decimal) + hand parse — the stdlib's exact decoder, for comparison.
* orjson + cattrs        — the same hand parsers reached through `wire.converter.structure`.
* orjson + cattrs generic — cattrs structuring wire-shaped attrs classes (Decimal hooks), then
                           mapping to the model: the "let the library do it" option.
"""

from __future__ import annotations

import argparse
import timeit
from decimal import Decimal
from typing import Any

import attrs
import cattrs
import httpx
import orjson

from polybot.model import (
    BookSnapshot,
    Execution,
    ExecutionType,
    Intent,
    MarketState,
    Order,
    OrderRequest,
    OrderState,
    PriceLevel,
    TimeInForce,
)
from polybot.polymarket import wire
from polybot.polymarket.auth import PolymarketAuth, Signer

SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def book_frame(levels: int = 10) -> bytes:
    def lv(i: int, base: int, sign: int) -> dict[str, Any]:
        return {
            "px": {"value": f"0.{base + sign * i:02d}00", "currency": "USD"},
            "qty": f"{100 + 7 * i}.2500",
        }

    return orjson.dumps(
        {
            "requestId": "md-1-1",
            "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA",
            "error": "",
            "marketData": {
                "marketSlug": "aec-nba-bos-lal-2026-01-27",
                "bids": [lv(i, 54, -1) for i in range(levels)],
                "offers": [lv(i, 56, 1) for i in range(levels)],
                "state": "MARKET_STATE_OPEN",
                "stats": {
                    "lastTradePx": {"value": "0.5500", "currency": "USD"},
                    "sharesTraded": "5000",
                },
                "transactTime": "2026-01-27T19:02:11.512Z",
            },
        }
    )


def execution_frame(quantity: str = "25") -> bytes:
    # JSON numbers are written as text on purpose: "25" is an int, "25.5" a fraction
    return (
        '{{"requestId":"orders-1-1","subscriptionType":"SUBSCRIPTION_TYPE_ORDER","error":"",'
        '"orderSubscriptionUpdate":{{"execution":{{"id":"e-9","order":{{"id":"ord-1",'
        '"marketSlug":"aec-nba-bos-lal-2026-01-27","side":"ORDER_SIDE_SELL","type":"ORDER_TYPE_LIMIT",'
        '"price":{{"value":"0.4200","currency":"USD"}},"quantity":{},"cumQuantity":{},"leavesQuantity":{},'
        '"tif":"TIME_IN_FORCE_GOOD_TILL_CANCEL","intent":"ORDER_INTENT_BUY_SHORT",'
        '"state":"ORDER_STATE_PARTIALLY_FILLED","avgPx":{{"value":"0.4200","currency":"USD"}},'
        '"createTime":"2026-01-27T19:02:10.000Z"}},"lastShares":"10.0000",'
        '"lastPx":{{"value":"0.4200","currency":"USD"}},"type":"EXECUTION_TYPE_PARTIAL_FILL",'
        '"tradeId":"tr-4","aggressor":false,"commissionNotionalCollected":{{"value":"0.17","currency":"USD"}},'
        '"transactTime":"2026-01-27T19:02:11.101Z"}}}}}}'.format(quantity, "10", quantity)
    ).encode()


# --- the generic cattrs candidate: wire-shaped classes, then mapped to the model ---------------


@attrs.frozen
class WAmount:
    value: Decimal
    currency: str = "USD"


@attrs.frozen
class WLevel:
    px: WAmount
    qty: Decimal


@attrs.frozen
class WBook:
    marketSlug: str
    bids: list[WLevel] = attrs.Factory(list)
    offers: list[WLevel] = attrs.Factory(list)
    state: str = ""
    transactTime: str | None = None


@attrs.frozen
class WOrder:
    id: str
    marketSlug: str = ""
    intent: str = ""
    price: WAmount | None = None
    quantity: Decimal = Decimal(0)
    cumQuantity: Decimal = Decimal(0)
    leavesQuantity: Decimal = Decimal(0)
    state: str = ""
    tif: str = ""


@attrs.frozen
class WExecution:
    id: str
    order: WOrder
    type: str = ""
    lastShares: Decimal = Decimal(0)
    lastPx: WAmount | None = None
    tradeId: str = ""
    transactTime: str | None = None


generic = cattrs.Converter(forbid_extra_keys=False)
generic.register_structure_hook(Decimal, lambda v, _: Decimal(v if isinstance(v, str) else str(v)))


def generic_book(raw: dict[str, Any]) -> BookSnapshot:
    w = generic.structure(raw["marketData"], WBook)
    return BookSnapshot(
        w.marketSlug,
        tuple(PriceLevel(lv.px.value, lv.qty) for lv in w.bids),
        tuple(PriceLevel(lv.px.value, lv.qty) for lv in w.offers),
        MarketState.from_wire(w.state),
        wire.parse_time(w.transactTime),
    )


def generic_execution(raw: dict[str, Any]) -> Execution:
    w = generic.structure(raw["orderSubscriptionUpdate"]["execution"], WExecution)
    o = w.order
    order = Order(
        o.id,
        o.marketSlug,
        Intent.from_wire(o.intent),
        o.price.value if o.price else Decimal(0),
        o.quantity,
        o.cumQuantity,
        o.leavesQuantity,
        OrderState.from_wire(o.state),
        tif=TimeInForce.from_wire(o.tif),
    )
    return Execution(
        w.id,
        order,
        ExecutionType.from_wire(w.type),
        w.lastShares,
        w.lastPx.value if w.lastPx else None,
        w.tradeId,
        transact_time=wire.parse_time(w.transactTime),
    )


# --- measurement ---------------------------------------------------------------------------------


def measure(fns: list[Any], n: int, rounds: int = 9) -> list[float]:
    """µs per call for each fn: candidates are interleaved round-robin and the best round kept,
    so a burst of load from other processes cannot favour one candidate over another."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], timeit.timeit(fn, number=n) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    n = ap.parse_args().n

    book = book_frame()
    ex_int = execution_frame("25")
    ex_frac = execution_frame("25.5")
    exact = wire.loads_exact

    # every candidate must produce the same model value before it is timed
    ref_book = wire.decode_frame(book).book
    assert generic_book(orjson.loads(book)) == ref_book
    assert wire.parse_book(exact(book)["marketData"]) == ref_book
    ref_ex = wire.decode_frame(ex_int).execution
    assert generic_execution(orjson.loads(ex_int)).order.cum_quantity == ref_ex.order.cum_quantity
    assert wire.decode_frame(ex_frac).execution.order.quantity == Decimal("25.5")

    rows = [
        (
            "book frame (10+10 levels)",
            "orjson + hand parse (chosen)",
            lambda: wire.decode_frame(book),
        ),
        (
            "",
            "json(parse_float=Decimal) + hand parse",
            lambda: wire.parse_book(exact(book)["marketData"]),
        ),
        (
            "",
            "orjson + cattrs converter.structure",
            lambda: wire.converter.structure(orjson.loads(book)["marketData"], BookSnapshot),
        ),
        ("", "orjson + cattrs generic structure", lambda: generic_book(orjson.loads(book))),
        ("", "orjson decode only", lambda: orjson.loads(book)),
        (
            "execution frame",
            "orjson + hand parse, int qty",
            lambda: wire.decode_frame(ex_int),
        ),
        ("", "same, fractional qty (exact re-decode)", lambda: wire.decode_frame(ex_frac)),
        (
            "",
            "exact decoder, fractional qty (chosen)",
            lambda: wire.decode_frame(ex_frac, exact=True),
        ),
        (
            "",
            "json(parse_float=Decimal) + hand parse",
            lambda: wire.parse_execution(exact(ex_int)["orderSubscriptionUpdate"]["execution"]),
        ),
        (
            "",
            "orjson + cattrs generic (exact for int qty only)",
            lambda: generic_execution(orjson.loads(ex_int)),
        ),
    ]

    signer = Signer("5f1d2c3b-0000-4000-8000-000000000000", SEED)
    req = OrderRequest(
        "aec-nba-bos-lal-2026-01-27",
        Intent.BUY_LONG,
        Decimal("0.42"),
        Decimal("25"),
        TimeInForce.IOC,
    )
    client = httpx.Client(base_url="https://api.polymarket.us", auth=PolymarketAuth(signer))

    def sign_build() -> httpx.Request:
        body = wire.dumps(wire.order_body(req))
        request = client.build_request(
            "POST", "/v1/orders", content=body, headers={"poly-correlation-id": "x"}
        )
        return next(PolymarketAuth(signer).auth_flow(request))

    rows += [
        ("REST create", "Ed25519 sign only", lambda: signer.headers("POST", "/v1/orders")),
        ("", "body build + encode", lambda: wire.dumps(wire.order_body(req))),
        ("", "sign + build httpx.Request (total)", sign_build),
    ]

    print(f"{'what':<28}{'how':<50}{'µs/op':>9}")
    print("-" * 87)
    for (what, how, _), us in zip(rows, measure([r[2] for r in rows], n), strict=True):
        print(f"{what:<28}{how:<50}{us:>9.2f}")
    client.close()


if __name__ == "__main__":
    main()
