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
