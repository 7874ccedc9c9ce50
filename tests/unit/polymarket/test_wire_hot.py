"""The markets socket's hot decoder (`wire.decode_market_frame`) against the full decoder
(`wire.decode_frame`): for any text, the same event or the same rejection.

The hot decoder is only worth having if it really takes the common book frame itself (checked
first: a decoder that always fell back would pass the differential test trivially), and only
safe if everything else ends where the full decoder sends it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polybot.model import BookSnapshot, MarketState, PriceLevel
from polybot.polymarket import wire

PLAIN = (
    '{"requestId":"md-1-2","subscriptionType":"SUBSCRIPTION_TYPE_MARKET_DATA","marketData":'
    '{"marketSlug":"aec-nba-bos-nyk-2026-12-01","bids":[{"px":{"value":"0.5400","currency":"USD"},'
    '"qty":"120.5000"},{"px":{"value":"0.5300","currency":"USD"},"qty":"3"}],"offers":[{"px":'
    '{"value":"0.5600","currency":"USD"},"qty":"80.0000"}],"state":"MARKET_STATE_OPEN","stats":'
    '{"lastTradePx":{"value":"0.55","currency":"USD"},"sharesTraded":"150000"},'
    '"transactTime":"2026-08-23T18:15:38.339877873Z"}}'
)


def outcome(decode: Any, data: str | bytes) -> tuple[Any, ...]:
    """What a decoder made of `data`: the event (by repr: a NaN price is not equal to itself)
    and its type, or the exception's type and message."""
    try:
        event = decode(data, 12.5)
    except Exception as exc:  # the comparison is the point
        return ("raised", type(exc), str(exc))
    return ("event", type(event), repr(event))


def same(data: str | bytes) -> None:
    assert outcome(wire.decode_market_frame, data) == outcome(wire.decode_frame, data)


@pytest.fixture
def full_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Counts the hot decoder's fallbacks to the full decoder."""
    calls: list[Any] = []
    real = wire.decode_frame

    def counting(data: Any, *a: Any, **kw: Any) -> Any:
        calls.append(data)
        return real(data, *a, **kw)

    monkeypatch.setattr(wire, "decode_frame", counting)
    return calls


def test_a_plain_book_frame_is_decoded_by_the_hot_path_to_the_full_decoders_book(
    full_calls: list[Any],
) -> None:
    event = wire.decode_market_frame(PLAIN, 3.25)
    assert full_calls == []  # no fallback: the hot path built it
    assert event == wire.BookReplaced(
        BookSnapshot(
            "aec-nba-bos-nyk-2026-12-01",
            (PriceLevel(Decimal("0.5400"), Decimal("120.5000")),
             PriceLevel(Decimal("0.5300"), Decimal("3"))),
            (PriceLevel(Decimal("0.5600"), Decimal("80.0000")),),
            MarketState.OPEN,
            wire.parse_time("2026-08-23T18:15:38.339877873Z"),
            3.25,
        ),
        "md-1-2",
    )
    assert repr(event) == repr(wire.decode_frame(PLAIN, 3.25))  # exponents too: "0.5400"
    assert type(event.book.bids[0]) is PriceLevel and hash(event.book.bids[0])


@pytest.mark.parametrize(
    "frame",
    [
        '{"heartbeat":{}}',
        '{"marketData":{"marketSlug":"m","state":"MARKET_STATE_HALTED"}}',
        '{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":[{"px":"0.5",'
        '"qty":1.5}]}}',  # a float size: the full decoder re-decodes it exactly
        '{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":[{"px":"x","qty":"1"}]}}',
        '{"marketData":{"state":"MARKET_STATE_OPEN"}}',
        '{"marketData":',
    ],
)
def test_anything_unusual_goes_to_the_full_decoder(frame: str, full_calls: list[Any]) -> None:
    same(frame)
    assert full_calls  # the hot path did not judge it


def test_a_float_size_is_exact_as_the_full_decoder_makes_it() -> None:
    frame = ('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN",'
             '"offers":[{"px":"0.5","qty":0.1}]}}')
    event = wire.decode_market_frame(frame)
    assert event.book.offers[0].qty == Decimal("0.1")  # not the binary float's expansion


# --- generated frames -----------------------------------------------------------------------------

DECIMAL_TEXTS = st.one_of(
    st.sampled_from(["0.54", "0.5400", "1", "100.25", "0", "-0.1", "1e-3", " 0.5", "NaN",
                     "Infinity", "1_000", "", "abc", "0.5.5", "--1", "0x10", "١٢"]),
    st.text("0123456789.-+eE_ nN", max_size=8),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4))
AMOUNTS = st.one_of(
    DECIMAL_TEXTS,
    st.fixed_dictionaries({"value": DECIMAL_TEXTS, "currency": st.just("USD")}),
    st.fixed_dictionaries({"value": st.one_of(SCALARS, DECIMAL_TEXTS)}),
    st.fixed_dictionaries({"value": st.fixed_dictionaries({"value": DECIMAL_TEXTS})}),
    st.dictionaries(st.sampled_from(["currency", "val"]), DECIMAL_TEXTS, max_size=2),
    SCALARS,
    st.lists(DECIMAL_TEXTS, max_size=2),
)


def _level(draw: Any) -> Any:
    lv = {"px": draw(AMOUNTS), "qty": draw(st.one_of(DECIMAL_TEXTS, AMOUNTS))}
    for key in draw(st.lists(st.sampled_from(["px", "qty"]), max_size=2, unique=True)):
        del lv[key]
    if draw(st.booleans()):
        lv["extra"] = draw(SCALARS)
    return lv


@st.composite
def levels(draw: Any) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.one_of(SCALARS, st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)))
    if kind == 1:
        return [draw(SCALARS) for _ in range(draw(st.integers(1, 2)))]
    if kind <= 4:  # mostly well formed
        n = draw(st.integers(0, 4))
        return [{"px": {"value": draw(st.sampled_from(["0.54", "0.5400", "0.01", "0.999"])),
                        "currency": "USD"},
                 "qty": draw(st.sampled_from(["1", "25.50", "0.000001", "109118.7800"]))}
                for _ in range(n)]
    return [_level(draw) for _ in range(draw(st.integers(0, 3)))]


TIMES = st.sampled_from([
    "2026-08-23T18:15:38.339877873Z", "2024-01-15T10:30:00Z", "2026-12-01T18:00:00.000Z",
    "2026-12-01T18:00:00+02:00", "2026-12-01T18:00:00.5z", "2026-13-01T00:00:00Z", "yesterday",
    "", "2026-12-01", "2026-12-01T18:00:00.123456789012+00:00",
])
STATES = st.one_of(st.sampled_from([s.value for s in MarketState] + ["MARKET_STATE_NEW", ""]),
                   SCALARS)
SLUGS = st.one_of(st.sampled_from(["aec-nba-bos-nyk-2026-12-01", "m"]), SCALARS,
                  st.lists(st.text(max_size=2), max_size=1))


GOOD_TEXTS = st.sampled_from(["0.54", "0.5400", "0.01", "0.999", "1", "25.50", "109118.7800",
                              "0.000001", " 0.5", "1e-3", "1_000", "NaN", "-0", "Infinity"])


@st.composite
def good_levels(draw: Any) -> list[dict[str, Any]]:
    return [{"px": draw(st.one_of(GOOD_TEXTS, st.fixed_dictionaries(
                {"value": GOOD_TEXTS, "currency": st.just("USD")}))),
             "qty": draw(GOOD_TEXTS)}
            for _ in range(draw(st.integers(0, 4)))]


@st.composite
def market_data(draw: Any) -> Any:
    """A well-formed book, then none, one or a few things wrong with it."""
    d: dict[str, Any] = {
        "marketSlug": "aec-nba-bos-nyk-2026-12-01",
        "bids": draw(good_levels()),
        "offers": draw(good_levels()),
        "state": "MARKET_STATE_OPEN",
        "transactTime": draw(TIMES),
        "stats": {"lastTradePx": {"value": "0.55", "currency": "USD"}},
    }
    for change in draw(st.lists(st.integers(0, 9), max_size=3)):
        side = "bids" if draw(st.booleans()) else "offers"
        lvs = d.get(side) if isinstance(d.get(side), list) else []
        if change == 0:
            d["marketSlug"] = draw(SLUGS)
        elif change == 1:
            d["state"] = draw(STATES)
        elif change == 2:
            d["transactTime"] = draw(st.one_of(TIMES, SCALARS))
        elif change == 3:
            d[side] = draw(levels())
        elif change in (4, 5) and lvs:  # one field of one level
            lv = lvs[draw(st.integers(0, len(lvs) - 1))]
            if isinstance(lv, dict):
                lv[draw(st.sampled_from(["px", "qty"]))] = draw(AMOUNTS)
        elif change == 6 and lvs:
            lvs[0] = draw(st.one_of(SCALARS, st.builds(dict)))
        elif change == 7:
            d.pop(draw(st.sampled_from(sorted(d))), None)
        elif change == 8:
            return draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)))
    return d


@st.composite
def frames(draw: Any) -> str | bytes:
    msg: dict[str, Any] = {"requestId": draw(st.one_of(st.text(max_size=6), SCALARS)),
                           "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA"}
    if draw(st.integers(0, 9)):
        msg["marketData"] = draw(market_data())
    for key, value in draw(st.lists(st.sampled_from([
        ("heartbeat", {}), ("error", ""), ("error", "no such market"),
        ("trade", {"marketSlug": "m", "price": {"value": "0.5"}, "quantity": "2"}),
        ("marketDataLite", {"marketSlug": "m", "bestBid": {"value": "0.5"}}),
        ("orderUpdate", {"id": "x"}),
    ]), max_size=2)):
        msg[key] = value
    top: Any = msg if draw(st.integers(0, 19)) else draw(st.lists(SCALARS, max_size=2))
    text = json.dumps(top)  # floats stay floats in the text (the full decoder's re-decode case)
    cut = draw(st.integers(0, 30))
    if cut == 1:
        text = text[: draw(st.integers(0, len(text)))]  # truncated
    elif cut == 2:
        text = text + draw(st.sampled_from([" ", "x", "}", "\x00"]))
    return text.encode() if draw(st.booleans()) else text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
@example(PLAIN)
@example('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":[{"px":"NaN","qty":"1"}]}}')
@example('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":{}}}')
@example('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":[{"px":1,"qty":"1"}]}}')
@example('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":[{"px":true,"qty":"1"}]}}')
@example('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","transactTime":"never"}}')
@example('{"marketData":{"marketSlug":"m","state":"MARKET_STATE_OPEN","bids":[{"px":"1","qty":"1"}]'
         ',"transactTime":1}}')
@example('{"marketData":{"marketSlug":7,"state":"MARKET_STATE_OPEN"}}')
def test_the_hot_decoder_agrees_with_the_full_decoder_on_any_frame(frame: str | bytes) -> None:
    same(frame)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)))
def test_the_hot_decoder_agrees_on_arbitrary_text(data: str | bytes) -> None:
    same(data)


def _time_outcome(parse: Any, text: Any) -> tuple[Any, ...]:
    try:
        return ("value", repr(parse(text)))
    except Exception as exc:  # the comparison is the point
        return ("raised", type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.builds("{}-{}-{}T{}:{}:{}{}Z".format,
              st.sampled_from(["2026", "0000", "9999", "20x6"]),
              st.sampled_from(["01", "12", "13", "00", "1a"]),
              st.sampled_from(["01", "28", "31", "32"]),
              st.sampled_from(["00", "23", "24"]),
              st.sampled_from(["00", "59", "60"]),
              st.sampled_from(["00", "59", "60", "5."]),
              st.one_of(st.just(""), st.from_regex(r"\A\.[0-9]{1,10}\Z"),
                        st.sampled_from([".", ".12a", ".١٢٣", ".+12", ". 12"]))),
    st.from_regex(r"\A[0-9T:.\-Z+ ]{18,31}\Z"),
))
def test_the_hot_time_reader_agrees_with_parse_time(text: str) -> None:
    assert _time_outcome(wire._hot_time, text) == _time_outcome(wire.parse_time, text)


def test_without_the_level_shortcut_every_frame_takes_the_full_decoder(
    monkeypatch: pytest.MonkeyPatch, full_calls: list[Any],
) -> None:
    # PriceLevel with a validator, converter or post-init would turn the shortcut off at import
    assert wire._PLAIN_LEVEL  # today it has none
    monkeypatch.setattr(wire, "_PLAIN_LEVEL", False)
    assert repr(wire.decode_market_frame(PLAIN, 1.0)) == repr(wire.decode_frame(PLAIN, 1.0))
    assert full_calls == [PLAIN, PLAIN]  # the hot path's fallback, then the direct call
