"""OpticOdds wire parsing tolerances (opticodds-api.md §2.2, §3.3)."""

from decimal import Decimal

import orjson
import pytest

from polybot.opticodds.wire import (
    WireError,
    parse_fixture_odds,
    parse_fixture_status,
    parse_odd,
    parse_odds_message,
    parse_page,
)

REST_ODD = {
    "id": "11111-22222-2026-11-05-19:pinnacle:moneyline:boston_celtics", "sportsbook": "Pinnacle",
    "market": "Moneyline", "market_id": "moneyline", "name": "Boston Celtics", "selection": "Boston Celtics",
    "normalized_selection": "boston_celtics", "selection_line": None, "points": None, "price": -185,
    "timestamp": 1793919000.25, "grouping_key": "default", "is_main": True, "player_id": None,
    "team_id": "AAAA11112222", "limits": {"max": 5000}, "order_book": None, "source_ids": None,
    "deep_link": None,
}


def test_rest_odd_takes_its_book_slug_from_the_id():
    o = parse_odd(REST_ODD, fixture_id="F1")
    assert (o.book, o.fixture_id, o.price, o.points, o.selection_line) == ("pinnacle", "F1", Decimal(-185), None, "")


def test_display_name_map_wins_for_books_with_qualifiers():
    odd = REST_ODD | {"id": "weird-id", "sportsbook": "Polymarket (USA)"}
    assert parse_odd(odd, book_ids={"Polymarket (USA)": "polymarket_usa_"}).book == "polymarket_usa_"
    assert parse_odd(odd).book == "polymarket_usa_"


def test_empty_strings_and_nulls_mean_absent_and_prices_stay_exact():
    o = parse_odd(REST_ODD | {"team_id": "", "selection_line": "", "price": 132.5, "points": -4.5})
    assert o.team_id == "" and o.selection_line == "" and o.price == Decimal("132.5")
    assert o.points == Decimal("-4.5")


@pytest.mark.parametrize("bad", [{"price": "x"}, {"price": None}, {"timestamp": "soon"}, {"market_id": None}])
def test_malformed_odd_raises_wire_error_naming_the_field(bad):
    with pytest.raises(WireError):
        parse_odd(REST_ODD | bad)


def test_one_malformed_odd_is_skipped_and_counted_not_fatal():
    fixture = {"id": "F1", "start_date": "2026-11-06T00:30:00Z", "status": "unplayed",
               "sport": {"id": "basketball"}, "league": {"id": "nba"},
               "odds": [REST_ODD, REST_ODD | {"price": "junk"}]}
    fo = parse_fixture_odds(fixture)
    assert len(fo.odds) == 1 and fo.skipped == 1
    assert fo.fixture.start_date.utcoffset().total_seconds() == 0


def test_stream_message_and_locked_flag():
    odd = REST_ODD | {"fixture_id": "F1", "sportsbook_id": "pinnacle", "is_live": False}
    msg = parse_odds_message(orjson.dumps({"entry_id": "1-0", "type": "locked-odds", "data": [odd]}).decode(),
                             locked=True)
    assert msg.locked and msg.entry_id == "1-0" and msg.odds[0].fixture_id == "F1"
    with pytest.raises(WireError):
        parse_odds_message("not json", locked=False)


def test_fixture_status_flat_and_nested_forms():
    flat = {"entry_id": "9-0", "data": {"fixture_id": "F1", "new_status": "live", "old_status": "unplayed",
                                        "new_start_date": None}}
    nested = {"entry_id": "9-1", "data": {"data": {"fixture_id": "F1", "new_status": None,
                                                   "new_start_date": "2026-11-06T01:00:00+00:00"}}}
    a = parse_fixture_status(orjson.dumps(flat).decode())
    b = parse_fixture_status(orjson.dumps(nested).decode())
    assert (a.fixture_id, a.status, a.start_date) == ("F1", "live", None)
    assert (b.status, b.start_date.hour) == (None, 1)


def test_pages_use_has_more_or_fall_back_to_total_pages():
    assert parse_page({"data": [1], "page": 1, "has_more": True}) == ([1], True)
    assert parse_page({"data": [1], "page": 1, "total_pages": 2}) == ([1], True)
    assert parse_page({"data": [1], "page": 2, "total_pages": 2}) == ([1], False)


def _field_by_field_parse_odd(o, *, fixture_id="", book_ids=None):
    """parse_odd as it was before its fast path: every string field through `_str`."""
    from polybot.opticodds.wire import Odd, _decimal, _obj, _slug, _str

    o = _obj(o, "odd")
    odd_id = _str(o, "id", required=True)
    book_name = _str(o, "sportsbook")
    book = _str(o, "sportsbook_id")
    if not book and book_ids and book_name in book_ids:
        book = book_ids[book_name]
    if not book:
        parts = odd_id.split(":")
        book = parts[1] if len(parts) >= 4 else _slug(book_name)
    if not book:
        raise WireError("odd has no sportsbook")
    if "price" not in o:
        raise WireError("missing 'price'")
    ts = o.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise WireError("'timestamp' is not a number")
    points = o.get("points")
    market_id = _str(o, "market_id") if "market_id" in o else _slug(_str(o, "market"))
    if not market_id:
        raise WireError("missing 'market_id'")
    selection = _str(o, "normalized_selection")
    if not selection and "normalized_selection" not in o:
        selection = _slug(_str(o, "selection"))
    return Odd(id=odd_id, fixture_id=_str(o, "fixture_id") or fixture_id, book=book.lower(),
               market_id=market_id, normalized_selection=selection,
               price=_decimal(o["price"], "price"), timestamp=float(ts),
               grouping_key=_str(o, "grouping_key") or "default",
               points=None if points is None or points == "" else _decimal(points, "points"),
               selection_line=_str(o, "selection_line").lower(), is_main=bool(o.get("is_main", True)),
               name=_str(o, "name"), book_name=book_name, team_id=_str(o, "team_id"))


def _outcome(parse, row):
    try:
        return parse(row, fixture_id="F9")
    except WireError as e:
        return f"WireError: {e}"


_ABSENT = object()
_STRING_FIELDS = ("id", "sportsbook", "sportsbook_id", "market", "market_id", "selection",
                  "normalized_selection", "fixture_id", "grouping_key", "selection_line", "name",
                  "team_id")
_ODD_VALUES = ("", None, _ABSENT, 7, -3, True, False, 1.5, ["x"], {"a": 1}, "Some Text", "0")


def test_fast_path_reads_and_refuses_every_odd_value_as_the_field_by_field_reading_did():
    stream_odd = REST_ODD | {"fixture_id": "F1", "sportsbook_id": "Pinnacle"}
    cases = []
    for base in (REST_ODD, stream_odd):
        for field in _STRING_FIELDS:
            for value in _ODD_VALUES:
                row = dict(base)
                if value is _ABSENT:
                    row.pop(field, None)
                else:
                    row[field] = value
                cases.append(row)
        for value in ("", None, _ABSENT, 0, -185, 10**30, True, 1.5, float("nan"), "132.5", "x", [1]):
            row = dict(base)
            if value is _ABSENT:
                row.pop("price")
            else:
                row["price"] = value
            cases.append(row)
    cases.append(["not", "an", "odd"])
    refused = 0
    for row in cases:
        want = _outcome(_field_by_field_parse_odd, row)
        assert _outcome(parse_odd, row) == want, row
        refused += isinstance(want, str)
    assert 0 < refused < len(cases)  # both sides of the fast path are exercised
