"""`run` with RECORD_DIR against the local exchange and odds feed: the recording holds the raw
frames of the markets and private websockets and the OpticOdds events, the REST answers that
feed decisions and the engine's other inputs (continuity, ticks, the operator's files and
requests), and the bot's own decoders read them back."""

from __future__ import annotations

import gzip
import itertools
from datetime import datetime
from decimal import Decimal as D

import pytest
import trio
import trio.testing

from polybot.config import load_settings
from polybot.errors import EXIT_OK
from polybot.opticodds import wire as odds_wire
from polybot.opticodds.sse import SSEParser
from polybot.opticodds.wire import parse_fixture_status, parse_odds_message
from polybot.polymarket import wire
from polybot.recording import (
    ENGINE_ADOPTED,
    ENGINE_CANCEL_ALL,
    ENGINE_CONTINUITY_LOST,
    ENGINE_FLATTEN,
    ENGINE_OPERATOR_FILES,
    ENGINE_RECONCILED,
    ENGINE_STREAM_CONNECTED,
    ENGINE_TICK,
    engine_input,
    read_index,
    read_recording,
    split_rest,
    wall_ns,
)
from polybot.runtime import run_bot
from polybot.sim.harness import running_sim
from tests.integration.harness import bot_env, operator_script, replay_clock


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0.001)


async def operate(data_dir):
    """The operator's script of the recorded run (see `operator_script`)."""
    return await operator_script(data_dir, (3.0, 1.0, 2.0, 1.0))


async def test_a_live_run_records_every_input_in_a_form_the_bots_decoders_read(
        tmp_path, mock_clock):
    record_dir = tmp_path / "recording"
    data_dir = tmp_path / "data"
    requests = []
    async with running_sim(opticodds=True, cash=D("1000")) as sim:
        settings = load_settings(bot_env(sim, data_dir, live=True, RECORD_DIR=str(record_dir)))
        async with trio.open_nursery() as n:
            n.start_soon(lambda: _collect(requests, operate(data_dir)))
            assert await run_bot(settings, duration=12.0, clock=replay_clock()) == EXIT_OK
        secrets = [sim.secret_key, sim.opticodds_key]

    records = list(read_recording(record_dir))
    # neither the exchange's secret nor the OpticOdds key (sent in a header) is in any byte
    raw = b"".join(p.read_bytes() for p in record_dir.iterdir())
    raw += b"".join(gzip.decompress(p.read_bytes()) for p in record_dir.glob("*.rec.gz"))
    assert raw.count(b'"api":"opticodds"') > 0
    assert not any(s.encode() in raw for s in secrets)
    streams = {r.stream for r in records}
    assert streams == {"markets", "private", "odds", "rest", "engine"}
    assert [r.seq for r in records] == list(range(len(records)))
    assert all(b.mono_ns >= a.mono_ns for a, b in itertools.pairwise(records))

    books = 0
    for r in (r for r in records if r.stream in ("markets", "private")):
        event = wire.decode_frame(r.payload, r.mono_ns / 1e9, exact=r.stream == "private")
        books += type(event) is wire.BookReplaced
    assert books > 0

    odds = 0
    for r in (r for r in records if r.stream == "odds"):
        payload = r.payload if isinstance(r.payload, str) else r.payload.decode()
        (ev,) = SSEParser().feed(payload.encode())
        if ev.event in ("odds", "locked-odds"):
            odds += len(parse_odds_message(ev.data, locked=ev.event == "locked-odds").odds)
        elif ev.event == "fixture-status":
            parse_fixture_status(ev.data)
    assert odds > 0

    # the REST answers that feed decisions, each decoded by the parser the bot uses on it
    rest = [split_rest(r.payload) for r in records if r.stream == "rest"]
    decoded: dict[tuple[str, str], int] = {}
    for head, body in rest:
        assert head["method"] == "GET" and head["status"] == 200
        api, path = head["api"], head["path"]
        if api == "polymarket":
            data = wire.loads_exact(body)
            assert not path.startswith(("/v1/order", "/v1/portfolio", "/v1/account"))
            if path.startswith("/v1/market/slug/"):
                assert wire.parse_market(data["market"]).slug == path.rsplit("/", 1)[1]
                what = "market"
            elif path == "/v1/events":
                assert [wire.parse_event(e)[0] for e in data["events"]]
                what = "events"
            elif path.startswith("/v1/partners/opticodds/events/"):
                wire.parse_event(data["event"])
                assert [wire.parse_mapped_side(m) for m in data["mappedMarketSides"]]
                what = "partner event"
            else:
                what = path
        else:
            data = odds_wire.loads(body)
            if path in ("/fixtures", "/fixtures/active"):
                rows, _more = odds_wire.parse_page(data)
                assert [odds_wire.parse_fixture(f) for f in rows]
                what = "fixtures"
            elif path == "/fixtures/odds":
                assert {"fixture_id", "sportsbook"} <= {k for k, _v in head["query"]}
                assert [odds_wire.parse_fixture_odds(f).odds for f in data["data"]]
                what = "odds snapshot"
            else:
                what = path
        decoded[api, what] = decoded.get((api, what), 0) + 1
    assert {("polymarket", "market"), ("polymarket", "events"), ("polymarket", "partner event"),
            ("opticodds", "fixtures"), ("opticodds", "odds snapshot")} <= set(decoded)

    # the engine's other inputs, with the values it was given, in the order it saw them
    engine = [(r, engine_input(r.payload)) for r in records if r.stream == "engine"]
    kinds = [e["kind"] for _r, e in engine]
    first_frame = next(r.seq for r in records if r.stream == "markets")
    (lost_at_start, _), (connected, _) = [
        (r, e) for r, e in engine
        if e["kind"] in (ENGINE_CONTINUITY_LOST, ENGINE_STREAM_CONNECTED)][:2]
    assert engine_input(lost_at_start.payload) == {
        "kind": ENGINE_CONTINUITY_LOST, "stream": "markets", "reason": "start",
        "at": lost_at_start.mono_ns / 1e9}
    assert engine_input(connected.payload)["connection"] == 1
    assert lost_at_start.seq < connected.seq < first_frame
    # the day's baselines, once: a fresh live start adopts the account it finds
    adopted = [(r, e) for r, e in engine if e["kind"] == ENGINE_ADOPTED]
    assert len(adopted) == 1 and ENGINE_RECONCILED not in kinds
    assert wall_ns(datetime.fromisoformat(adopted[0][1]["now"])) == adopted[0][0].wall_ns
    ticks = [(r, e) for r, e in engine if e["kind"] == ENGINE_TICK]
    assert len(ticks) >= 10  # one a second
    for r, e in ticks:
        assert wall_ns(datetime.fromisoformat(e["now"])) == r.wall_ns
    polls = [e for _r, e in engine if e["kind"] == ENGINE_OPERATOR_FILES]
    assert [p["kill"] for p in polls].count(True) >= 6  # 2 s at one poll each 0.25 s
    assert {p["kill_reason"] for p in polls if p["kill"]} == {"recorded halt"}
    assert [p["resume"] for p in polls].count(True) == 1
    (flatten_id, cancel_all_id), = requests
    assert [e["request_id"] for _r, e in engine if e["kind"] == ENGINE_FLATTEN] == [flatten_id]
    assert [e["request_id"] for _r, e in engine
            if e["kind"] == ENGINE_CANCEL_ALL] == [cancel_all_id]
    assert kinds.index(ENGINE_FLATTEN) < kinds.index(ENGINE_CANCEL_ALL)

    (row,) = read_index(record_dir)  # closed at the stop, and indexed
    assert row["records"] == len(records) and row["dropped"] == 0


async def _collect(out, coro):
    out.append(await coro)
