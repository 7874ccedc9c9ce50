"""Every recorded payload of an endpoint the bot reads goes through the bot's own parsers.

The payloads in tests/fixtures/real_payloads/ were recorded from the real services by third
parties (see its SOURCES.md). Each file is either decoded here, with the values that matter to
the bot asserted, or listed in SKIPPED with the reason; a new file in neither place fails
`test_every_payload_is_decoded_or_skipped_with_a_reason`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from polybot.model import MarketState, MarketStatus
from polybot.opticodds import wire as ow
from polybot.opticodds.sse import SSEParser
from polybot.polymarket import wire as pw

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "real_payloads"
D = Decimal

SKIPPED = {
    "SOURCES.md": "provenance notes, not a payload",
    "polymarket-us/ws-private-docs-examples.txt": (
        "hand-written docs example with the docs' own '{...}' elisions (not JSON); the private "
        "frames the bot reads are covered by tests/unit/polymarket/test_wire.py"
    ),
    "opticodds/stream-wire-frames-live-elided-u3.txt": (
        "odd bodies elided by the recorder ('{...odd...}'): only the framing is real, and "
        "`test_opticodds_live_sse_framing_is_what_the_parser_expects` reads that part"
    ),
}


def _text(rel: str) -> str:
    return (ROOT / rel).read_text()


def _rest(rel: str) -> object:
    """A REST body as the REST client decodes it (exact decimals)."""
    return pw.loads_exact(_text(rel))


def _sse(rel: str) -> list:
    events = SSEParser().feed(_text(rel).encode())
    return events


def decoded(rel: str) -> str:
    """Marks the file a test decodes; each such file is listed in KNOWN_DECODED below."""
    assert rel in KNOWN_DECODED, f"{rel} is decoded here but missing from KNOWN_DECODED"
    return rel


# --- Polymarket US -----------------------------------------------------------------------------


def test_events_listing_gives_each_market_its_event_and_the_game_start():
    body = _rest(decoded("polymarket-us/events-v1-mlb-sd-col-2026-09-16-excerpt.json"))
    event, markets = pw.parse_event(body["events"][0])
    assert (event.event_id, event.slug) == ("111265", "mlb-sd-col-2026-09-16")
    assert event.start_time == datetime(2026, 9, 17, 0, 40, tzinfo=UTC)
    assert event.market_ids == ("823223",)
    assert [t.abbreviation for t in event.teams] == ["sd", "col"]
    (m,) = markets
    # the Market object carries no eventId/eventSlug: the event comes from the Event listing it
    assert "eventId" not in body["events"][0]["markets"][0]
    assert (m.event_id, m.event_slug) == ("111265", "mlb-sd-col-2026-09-16")
    assert m.slug == "aec-mlb-sd-col-2026-09-16" and m.market_id == "823223"
    assert (m.tick, m.min_qty, m.fee_coefficient) == (D("0.005"), D("0.01"), D("0.06"))
    assert m.status is MarketStatus.OPEN
    # the game start, never startDate (the listing time, 2026-09-13T04:00:49Z)
    assert m.start_time == datetime(2026, 9, 17, 0, 40, tzinfo=UTC)
    long_side = next(s for s in m.sides if s.long)
    assert (long_side.side_id, long_side.description, long_side.team_id) == (
        "1645934", "San Diego Padres", "3022")
    assert m.sports_market_type == "baseball_team_full_game_winner"


def test_a_market_without_game_start_time_has_no_start_time_not_its_listing_time():
    body = _rest("polymarket-us/events-v1-mlb-sd-col-2026-09-16-excerpt.json")
    raw = dict(body["events"][0]["markets"][0])
    del raw["gameStartTime"]  # deprecated: removed from the Market object in the reference
    assert pw.parse_market(raw).start_time is None


def test_markets_listing_parses_the_futures_capture():
    body = _rest(decoded("polymarket-us/dradis-markets-response-futures-trimmed.json"))
    markets = [pw.parse_market(m) for m in body["markets"]]
    assert [m.market_id for m in markets] == ["454191", "454206"]
    assert markets[0].slug == "ftsc-nfl-wrmostfp-w1-2026-09-14-jakomey"
    assert markets[0].status is MarketStatus.OPEN
    assert [(s.side_id, s.long) for s in markets[0].sides] == [("907894", True), ("907895", False)]
    assert all(m.event_id == "" and m.start_time is None for m in markets)


def test_rest_book_capture_decodes_every_level():
    body = _rest(decoded("polymarket-us/book-aec-ufc-casone-edumou-2026-09-19.json"))
    book = pw.parse_book(body["marketData"])
    assert book.market_slug == "aec-ufc-casone-edumou-2026-09-19"
    assert (len(book.bids), len(book.offers)) == (14, 12)
    assert (book.bids[0].price, book.bids[0].qty) == (D("0.64"), D("4585.2"))
    assert (book.offers[0].price, book.offers[0].qty) == (D("0.65"), D("2419.88"))
    assert book.state is MarketState.OPEN
    assert book.transact_time == datetime(2026, 9, 14, 19, 45, 30, 39392, tzinfo=UTC)


def test_halted_book_capture_is_empty_and_halted():
    body = _rest(decoded("polymarket-us/book-halted-tsc-cfb-okst-tulsa-2026-09-05-total-55pt5.json"))
    book = pw.parse_book(body["marketData"])
    assert (book.bids, book.offers, book.state) == ((), (), MarketState.HALTED)


def test_bbo_captures_with_null_quotes_and_empty_stats():
    halted = pw.parse_bbo(_rest(decoded(
        "polymarket-us/bbo-halted-tsc-cfb-okst-tulsa-2026-09-05-total-55pt5.json"))["marketData"])
    assert (halted.best_bid, halted.best_ask, halted.state) == (None, None, MarketState.HALTED)
    assert halted.last_trade_px == D("0.57")
    expired = pw.parse_bbo(_rest(decoded(
        "polymarket-us/bbo-expired-aec-nfl-lac-ten-2025-11-02.json"))["marketData"])
    assert expired.state is MarketState.EXPIRED
    assert (expired.bid_depth, expired.ask_depth, expired.current_px) == (0, 0, D("0.999"))


def test_live_markets_frame_decodes_to_a_book():
    ev = pw.decode_frame(_text(decoded(
        "polymarket-us/ws-markets-marketdata-frame-atc-lal-elc-fcb-2026-08-23.txt")).strip())
    assert isinstance(ev, pw.BookReplaced)
    assert ev.book.market_slug == "atc-lal-elc-fcb-2026-08-23-fcb"
    assert ev.book.bids[0].price == D("0.73") and ev.book.offers[0].price == D("0.74")
    assert ev.book.bids[0].qty == D("109118.78")


def _docs_blocks(rel: str) -> list[str]:
    """The JSON blocks of a docs-example file (each after a '### ' title line)."""
    blocks, cur = [], []
    for line in _text(rel).splitlines():
        if line.startswith("### "):
            if cur:
                blocks.append("\n".join(cur))
            cur = []
        elif line.strip():
            cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def test_markets_socket_docs_examples_decode_to_their_events():
    blocks = _docs_blocks(decoded("polymarket-us/ws-markets-docs-examples.txt"))
    book, lite, trade = (pw.decode_frame(b) for b in blocks)
    assert isinstance(book, pw.BookReplaced) and book.book.best_bid.price == D("0.555")
    assert isinstance(lite, pw.BboUpdated)
    assert (lite.bbo.best_bid, lite.bbo.best_ask, lite.bbo.bid_depth) == (D("0.54"), D("0.56"), 5)
    assert isinstance(trade, pw.TradePrinted)
    assert (trade.trade.price, trade.trade.qty) == (D("0.555"), D("0.50"))


def test_the_markets_hot_decoder_agrees_with_the_full_decoder_on_every_recorded_payload(
    monkeypatch,
):
    """Every Polymarket payload recorded (the live frame, the docs' frames, each REST body)
    decodes to the same event or the
    same rejection through `decode_market_frame` as through `decode_frame`; the recorded open
    books take the hot path itself (the halted one is the full decoder's)."""
    def outcome(decode, data):
        try:
            return ("event", repr(decode(data, 1.5)))
        except Exception as exc:  # the comparison is the point
            return ("raised", type(exc), str(exc))

    texts: dict[str, str] = {}
    for path in sorted((ROOT / "polymarket-us").iterdir()):
        rel = f"polymarket-us/{path.name}"
        if path.name.endswith("-docs-examples.txt"):
            for i, block in enumerate(_docs_blocks(rel)):
                texts[f"{rel}#{i}"] = block
            continue
        texts[rel] = _text(rel).strip()  # a REST book body is a `marketData` frame too
    hot: list[str] = []
    full = pw.decode_frame
    calls: list[object] = []
    monkeypatch.setattr(pw, "decode_frame", lambda *a, **k: calls.append(a) or full(*a, **k))
    for name, text in texts.items():
        calls.clear()
        assert outcome(pw.decode_market_frame, text) == outcome(full, text), name
        if not calls:  # the hot decoder built it without the full decoder
            hot.append(name)
    assert sorted(hot) == [
        "polymarket-us/book-aec-ufc-casone-edumou-2026-09-19.json",
        "polymarket-us/ws-markets-docs-examples.txt#0",
        "polymarket-us/ws-markets-marketdata-frame-atc-lal-elc-fcb-2026-08-23.txt",
    ]


# --- OpticOdds ---------------------------------------------------------------------------------


def test_fixtures_odds_docs_example_decodes_prices_and_fixture():
    body = ow.loads(_text(decoded("opticodds/fixtures-odds-docs-example.json")))
    fo = ow.parse_fixture_odds(body["data"][0])
    assert fo.fixture.id == "BCE4E01B8D3D"
    assert fo.fixture.start_date == datetime(2024, 8, 30, 0, 10, tzinfo=UTC)
    assert fo.fixture.league == "mlb"
    ml = {o.normalized_selection: o.price for o in fo.odds if o.market_id == "moneyline"}
    assert ml == {"houston_astros": D(-156), "kansas_city_royals": D(132)}
    assert {o.book for o in fo.odds} == {"pinnacle"}
    assert fo.skipped == 0


def test_live_futures_odd_decodes():
    odd = ow.parse_odd(ow.loads(_text(decoded("opticodds/futures-odd-live-record-u3.json"))))
    assert (odd.book, odd.market_id, odd.price) == (
        "kalshi", "offensive_rookie_of_the_year_winner", D(9207))
    assert odd.normalized_selection == "kenyon_sadiq"


def test_sse_docs_example_frames_decode():
    events = _sse(decoded("opticodds/stream-odds-sse-docs-example.txt"))
    assert [e.event for e in events] == [
        "connected", "ping", "odds", "locked-odds", "fixture-status", "fixture-status"]
    odds = ow.parse_odds_message(events[2].data, locked=False)
    assert odds.entry_id == "1730079534820-2"
    assert odds.skipped == 0
    assert [(o.fixture_id, o.market_id, o.normalized_selection, o.price) for o in odds.odds] == [
        ("A69FA4D64518", "1st_half_moneyline", "philadelphia_eagles", D(-230)),
        ("A69FA4D64518", "1st_half_moneyline", "jacksonville_jaguars", D(198))]
    locked = ow.parse_odds_message(events[3].data, locked=True)
    assert locked.locked and len(locked.odds) == 2
    moved = ow.parse_fixture_status(events[4].data)
    assert moved.fixture_id == "FB0D30DCDD6C"
    assert moved.start_date == datetime(2024, 8, 28, 20, 30, tzinfo=UTC)
    cancelled = ow.parse_fixture_status(events[5].data)
    assert (cancelled.fixture_id, cancelled.status) == ("E145B23767E0", "cancelled")


def test_opticodds_live_sse_framing_is_what_the_parser_expects():
    events = _sse("opticodds/stream-wire-frames-live-elided-u3.txt")
    assert [(e.event, e.id) for e in events] == [
        ("connected", None), ("ping", None), ("odds", "1788420576710-0"),
        ("locked-odds", "1788420577299-0")]
    assert events[-1].retry_ms == 5000


# --- the table ---------------------------------------------------------------------------------


def test_every_payload_is_decoded_or_skipped_with_a_reason():
    files = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()}
    expected_decoded = files - set(SKIPPED)
    assert not set(SKIPPED) - files, "SKIPPED names files that do not exist"
    assert all(reason.strip() for reason in SKIPPED.values())
    missing = expected_decoded - KNOWN_DECODED
    assert not missing, f"payloads with neither a decoding test nor a skip reason: {missing}"


KNOWN_DECODED = {
    "polymarket-us/events-v1-mlb-sd-col-2026-09-16-excerpt.json",
    "polymarket-us/dradis-markets-response-futures-trimmed.json",
    "polymarket-us/book-aec-ufc-casone-edumou-2026-09-19.json",
    "polymarket-us/book-halted-tsc-cfb-okst-tulsa-2026-09-05-total-55pt5.json",
    "polymarket-us/bbo-halted-tsc-cfb-okst-tulsa-2026-09-05-total-55pt5.json",
    "polymarket-us/bbo-expired-aec-nfl-lac-ten-2025-11-02.json",
    "polymarket-us/ws-markets-marketdata-frame-atc-lal-elc-fcb-2026-08-23.txt",
    "polymarket-us/ws-markets-docs-examples.txt",
    "opticodds/fixtures-odds-docs-example.json",
    "opticodds/futures-odd-live-record-u3.json",
    "opticodds/stream-odds-sse-docs-example.txt",
}
