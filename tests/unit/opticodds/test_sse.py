"""The SSE parser: framing, multi-line data, comments, ids, retry hints, arbitrary chunking."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from polybot.opticodds.sse import SSEEvent, SSEParser

STREAM = (
    b"event: connected\nretry: 5000\ndata: ok go\n\n"
    b": keep-alive comment\n\n"
    b"event: ping\nretry: 5000\ndata: 2026-11-05T23:59:55Z\n\n"
    b'event: odds\nid: 1793920001234-0\nretry: 5000\ndata: {"a":\ndata: 1}\n\n'
)

EXPECTED = [
    SSEEvent("connected", "ok go", None, 5000),
    SSEEvent("ping", "2026-11-05T23:59:55Z", None, 5000),
    SSEEvent("odds", '{"a":\n1}', "1793920001234-0", 5000),
]


def test_parses_events_with_multiline_data_ids_and_retry():
    p = SSEParser()
    assert p.feed(STREAM) == EXPECTED
    assert p.comments == 1
    assert p.last_event_id == "1793920001234-0"
    assert p.retry_ms == 5000


def feed_in_chunks(raw: bytes, cuts: list[float]) -> list[SSEEvent]:
    """The events of `raw` fed to one parser in chunks cut at the fractions `cuts`."""
    p = SSEParser()
    out: list[SSEEvent] = []
    bounds = [0, *sorted(int(c * len(raw)) for c in cuts), len(raw)]
    for a, b in itertools.pairwise(bounds):
        out += p.feed(raw[a:b])
    return out


@given(st.sampled_from([b"\n", b"\r\n", b"\r"]), st.lists(st.floats(0, 1), max_size=12))
def test_any_chunking_of_the_bytes_with_any_line_ending_gives_the_same_events(eol, cuts):
    raw = STREAM.replace(b"\n", eol)
    assert feed_in_chunks(raw, cuts) == EXPECTED


@given(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=STREAM.count(b"\n"),
                max_size=STREAM.count(b"\n")),
       st.lists(st.floats(0, 1), max_size=12))
def test_line_endings_mixed_within_a_stream_and_chunked_anywhere_give_the_same_events(eols, cuts):
    # chunks with no CR take the split fast path, the others the regex: they must hand over
    # an unfinished line (and a CR that may open a CRLF) to each other (a lone CR is left out
    # here: before an empty line's LF it would make one CRLF of two line ends)
    pieces = STREAM.split(b"\n")
    raw = b"".join(piece + eol for piece, eol in zip(pieces, eols, strict=False)) + pieces[-1]
    assert feed_in_chunks(raw, cuts) == EXPECTED


def test_crlf_and_lone_cr_line_endings_split_across_chunks():
    p = SSEParser()
    out = p.feed(b"data: a\r")
    out += p.feed(b"\ndata: b\r\r")
    out += p.feed(b"data: c\r\n\r\n")
    assert [e.data for e in out] == ["a\nb", "c"]


def test_utf8_sequence_split_across_chunks_decodes_intact():
    raw = "data: Atlético\n\n".encode()
    cut = raw.index("é".encode()) + 1
    p = SSEParser()
    assert p.feed(raw[:cut]) == []
    assert [e.data for e in p.feed(raw[cut:])] == ["Atlético"]


def test_event_without_data_is_not_dispatched_and_does_not_leak_its_name():
    p = SSEParser()
    assert p.feed(b"event: odds\n\ndata: x\n\n") == [SSEEvent("message", "x", None, None)]


def test_bom_field_without_colon_and_unknown_fields():
    p = SSEParser()
    out = p.feed(b"\xef\xbb\xbfdata\nfoo: bar\ndata:no-space\n\n")
    assert [e.data for e in out] == ["\nno-space"]


def test_invalid_retry_and_nul_id_are_ignored():
    p = SSEParser()
    out = p.feed(b"retry: 5x\nid: a\x00b\ndata: 1\n\nretry: 250\nid: 7\ndata: 2\n\n")
    assert out == [SSEEvent("message", "1", None, None), SSEEvent("message", "2", "7", 250)]


def test_incomplete_trailing_event_waits_for_its_blank_line():
    p = SSEParser()
    assert p.feed(b"event: ping\ndata: t") == []
    assert p.feed(b"\n") == []
    assert p.feed(b"\n") == [SSEEvent("ping", "t", None, None)]


def test_an_empty_chunk_between_the_cr_and_lf_of_a_crlf_does_not_split_the_line_ending():
    # found by hypothesis: an empty read after a trailing \r made the \n a second line ending,
    # dispatching the event in the middle of its data
    p = SSEParser()
    out = p.feed(b"data: a\r") + p.feed(b"") + p.feed(b"\ndata: b\r\n\r\n")
    assert out == [SSEEvent("message", "a\nb", None, None)]


LINE = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
               max_size=20)


@given(st.sampled_from(["odds", "locked-odds", "fixture-status", "message"]),
       st.lists(LINE, min_size=1, max_size=4),
       st.one_of(st.none(), st.text(alphabet="0123456789-abc", min_size=1, max_size=12)))
def test_an_event_written_back_as_text_parses_to_the_same_event(event, lines, event_id):
    # a recording keeps each OpticOdds event as this text (polybot.recording)
    ev = SSEEvent(event, "\n".join(lines), event_id)
    assert SSEParser().feed(ev.wire(comment="basketball").encode()) == [ev]
