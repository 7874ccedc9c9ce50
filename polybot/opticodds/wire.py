"""OpticOdds wire JSON -> typed values. Nothing past this module sees raw OpticOdds JSON.

Tolerances the live API needs (opticodds-api.md §2.2, §3.3): `""`, null and absent mean the
same for optional strings; `limits` may be `{max}` or `{max_stake}`; REST odds have no
`sportsbook_id` (the slug is segment 2 of the odd `id`, or found through the display name);
stream odds carry it. Prices are parsed to Decimal from their JSON text form. Timestamps carry
an offset (`Z` on REST, `+00:00` on the stream); a naive one is taken as UTC.
`fixture-status` data may be nested one level deeper (`data.data`) in some doc versions.
A malformed record raises `WireError` naming the field, so the caller can log, count and skip it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
import orjson


class WireError(ValueError):
    """A malformed OpticOdds payload (the message names the field, never the API key)."""


@attrs.frozen(slots=True)
class Sportsbook:
    id: str
    name: str
    is_active: bool = True


@attrs.frozen(slots=True)
class Competitor:
    id: str
    name: str
    abbreviation: str = ""


@attrs.frozen(slots=True)
class Fixture:
    id: str
    start_date: datetime | None
    status: str
    sport: str
    league: str
    home: tuple[Competitor, ...] = ()
    away: tuple[Competitor, ...] = ()
    home_display: str = ""
    away_display: str = ""
    is_live: bool = False

    @property
    def team_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in (*self.home, *self.away) if c.id)


@attrs.frozen(slots=True)
class Odd:
    id: str
    fixture_id: str
    book: str  # sportsbook slug, e.g. "pinnacle"
    market_id: str  # e.g. "moneyline"
    normalized_selection: str
    price: Decimal  # in the requested odds format (American by default)
    timestamp: float  # when OpticOdds last saw the price change (Unix seconds)
    grouping_key: str = "default"
    points: Decimal | None = None
    selection_line: str = ""
    is_main: bool = True
    name: str = ""
    book_name: str = ""
    team_id: str = ""


@attrs.frozen(slots=True)
class FixtureOdds:
    fixture: Fixture
    odds: tuple[Odd, ...]
    skipped: int = 0  # malformed odds left out


@attrs.frozen(slots=True)
class OddsMessage:
    """An `odds` or `locked-odds` stream event."""

    entry_id: str
    locked: bool
    odds: tuple[Odd, ...]
    skipped: int = 0


@attrs.frozen(slots=True)
class FixtureStatusMessage:
    entry_id: str
    fixture_id: str
    status: str | None  # new status, None when unchanged
    start_date: datetime | None  # new start, None when unchanged


# --- helpers ---------------------------------------------------------------------------------------


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise WireError(f"not JSON: {e}") from None


def _obj(v: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise WireError(f"{what} is not an object")
    return v


def _str(o: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    v = o.get(key)
    if v is None or v == "":
        if required:
            raise WireError(f"missing {key!r}")
        return ""
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise WireError(f"{key!r} is not a string")
    return str(v)


def _decimal(v: Any, key: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise WireError(f"{key!r} is not a number")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise WireError(f"{key!r} is not a number") from None
    if not d.is_finite():
        raise WireError(f"{key!r} is not finite")
    return d


def parse_time(v: Any, key: str = "start_date") -> datetime | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise WireError(f"{key!r} is not a timestamp string")
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise WireError(f"{key!r} is not an ISO timestamp") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _slug(name: str) -> str:
    return "_".join(name.lower().replace("(", " ").replace(")", " _").split()).replace("__", "_")


# --- records ---------------------------------------------------------------------------------------


def parse_sportsbooks(body: Any) -> list[Sportsbook]:
    rows = _obj(body, "response").get("data")
    if not isinstance(rows, list):
        raise WireError("'data' is not a list")
    out = []
    for r in rows:
        o = _obj(r, "sportsbook")
        out.append(Sportsbook(id=_str(o, "id", required=True), name=_str(o, "name"),
                              is_active=bool(o.get("is_active", True))))
    return out


def _competitors(v: Any) -> tuple[Competitor, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise WireError("competitors is not a list")
    out = []
    for c in v:
        o = _obj(c, "competitor")
        out.append(Competitor(id=_str(o, "id"), name=_str(o, "name"), abbreviation=_str(o, "abbreviation")))
    return tuple(out)


def _id_of(v: Any) -> str:
    """`sport`/`league` are objects on REST ({id, name}) and plain strings in some places."""
    if isinstance(v, Mapping):
        return _str(v, "id")
    if isinstance(v, str):
        return v
    return ""


def parse_fixture(obj: Any) -> Fixture:
    o = _obj(obj, "fixture")
    return Fixture(
        id=_str(o, "id", required=True),
        start_date=parse_time(o.get("start_date")),
        status=_str(o, "status") or "unplayed",
        sport=_id_of(o.get("sport")),
        league=_id_of(o.get("league")),
        home=_competitors(o.get("home_competitors")),
        away=_competitors(o.get("away_competitors")),
        home_display=_str(o, "home_team_display"),
        away_display=_str(o, "away_team_display"),
        is_live=bool(o.get("is_live", False)),
    )


def parse_odd(obj: Any, *, fixture_id: str = "", book_ids: Mapping[str, str] | None = None) -> Odd:
    # The hot path of the odds feed (a stream event carries hundreds of odds; replay parses
    # them all). A string field that is a non-empty `str` is taken as it is, which is what
    # `_str` returns for it; anything else (absent, null, "", a number, a wrong type) goes
    # through `_str`, so it is read, or refused with the same error, exactly as before. The
    # fields are read in the same order as before, so a row with several faults names the same one.
    o = obj if type(obj) is dict else _obj(obj, "odd")
    get = o.get
    v = get("id")
    odd_id = v if type(v) is str and v else _str(o, "id", required=True)
    v = get("sportsbook")
    book_name = v if type(v) is str else _str(o, "sportsbook")
    v = get("sportsbook_id")
    book = v if type(v) is str else _str(o, "sportsbook_id")
    if not book and book_ids and book_name in book_ids:
        book = book_ids[book_name]
    if not book:
        parts = odd_id.split(":")
        book = parts[1] if len(parts) >= 4 else _slug(book_name)
    if not book:
        raise WireError("odd has no sportsbook")
    if "price" not in o:
        raise WireError("missing 'price'")
    ts = get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise WireError("'timestamp' is not a number")
    points = get("points")
    # The stream's odds (docs example) carry neither `market_id` nor `normalized_selection`, only
    # `market` ("1st Half Moneyline") and `selection`; the REST odds carry both. Derive the
    # missing ids as OpticOdds spells them (the odd id is game:book:market_id:selection).
    if "market_id" in o:
        v = o["market_id"]
        market_id = v if type(v) is str else _str(o, "market_id")
    else:
        market_id = _slug(_str(o, "market"))
    if not market_id:
        raise WireError("missing 'market_id'")
    v = get("normalized_selection")
    selection = v if type(v) is str else _str(o, "normalized_selection")
    if not selection and "normalized_selection" not in o:
        selection = _slug(_str(o, "selection"))
    v = get("fixture_id")
    fixture = (v if type(v) is str else _str(o, "fixture_id")) or fixture_id
    price = o["price"]
    # an int's Decimal is the Decimal of its text, and always finite
    price_d = Decimal(price) if type(price) is int else _decimal(price, "price")
    v = get("grouping_key")
    grouping = (v if type(v) is str else _str(o, "grouping_key")) or "default"
    points_d = None if points is None or points == "" else _decimal(points, "points")
    v = get("selection_line")
    selection_line = (v if type(v) is str else _str(o, "selection_line")).lower()
    is_main = bool(get("is_main", True))
    v = get("name")
    name = v if type(v) is str else _str(o, "name")
    v = get("team_id")
    team_id = v if type(v) is str else _str(o, "team_id")
    return Odd(
        id=odd_id,
        fixture_id=fixture,
        book=book.lower(),
        market_id=market_id,
        normalized_selection=selection,
        price=price_d,
        timestamp=float(ts),
        grouping_key=grouping,
        points=points_d,
        selection_line=selection_line,
        is_main=is_main,
        name=name,
        book_name=book_name,
        team_id=team_id,
    )


def _odds_list(v: Any, fixture_id: str, book_ids: Mapping[str, str] | None) -> tuple[tuple[Odd, ...], int]:
    if v is None:
        return (), 0
    if not isinstance(v, list):
        raise WireError("'odds' is not a list")
    out, skipped = [], 0
    for r in v:
        try:
            out.append(parse_odd(r, fixture_id=fixture_id, book_ids=book_ids))
        except WireError:
            skipped += 1
    return tuple(out), skipped


def parse_fixture_odds(obj: Any, *, book_ids: Mapping[str, str] | None = None) -> FixtureOdds:
    fixture = parse_fixture(obj)
    odds, skipped = _odds_list(_obj(obj, "fixture").get("odds"), fixture.id, book_ids)
    return FixtureOdds(fixture=fixture, odds=odds, skipped=skipped)


def parse_odds_message(data: str, *, locked: bool) -> OddsMessage:
    o = _obj(loads(data), "odds message")
    entry = _str(o, "entry_id")
    rows = o.get("data")
    if not isinstance(rows, list):
        raise WireError("odds message 'data' is not a list")
    odds, skipped = _odds_list(rows, "", None)
    return OddsMessage(entry_id=entry, locked=locked, odds=odds, skipped=skipped)


def parse_fixture_status(data: str) -> FixtureStatusMessage:
    o = _obj(loads(data), "fixture-status message")
    d = _obj(o.get("data"), "fixture-status 'data'")
    if "fixture_id" not in d and isinstance(d.get("data"), Mapping):
        d = d["data"]
    fixture_id = _str(d, "fixture_id")
    if not fixture_id and isinstance(d.get("fixture"), Mapping):
        fixture_id = _str(d["fixture"], "id")
    if not fixture_id:
        raise WireError("fixture-status without 'fixture_id'")
    return FixtureStatusMessage(
        entry_id=_str(o, "entry_id"),
        fixture_id=fixture_id,
        status=_str(d, "new_status") or None,
        start_date=parse_time(d.get("new_start_date"), "new_start_date"),
    )


def parse_page(body: Any) -> tuple[list[Any], bool]:
    """A paginated list: (rows, has_more). Falls back to `page < total_pages` on old servers."""
    o = _obj(body, "response")
    rows = o.get("data")
    if not isinstance(rows, list):
        raise WireError("'data' is not a list")
    if "has_more" in o:
        return rows, bool(o["has_more"])
    page, total = o.get("page"), o.get("total_pages")
    if isinstance(page, int) and isinstance(total, int):
        return rows, page < total
    return rows, False
