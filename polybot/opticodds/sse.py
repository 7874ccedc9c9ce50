"""Incremental Server-Sent Events parser (the WHATWG "event stream interpretation" algorithm).

Feed it byte chunks exactly as they come off the socket; it returns the events completed so far.
Traps it handles:
- a chunk can end anywhere, even inside a UTF-8 sequence or between the `\\r` and `\\n` of a CRLF,
  so undecoded bytes and a trailing `\\r` are held back until the next chunk;
- lines end with CRLF, LF or a lone CR; a UTF-8 BOM may open the stream;
- `data:` lines accumulate (joined with `\\n`); an event with no data is not dispatched;
- `:`-prefixed lines are comments (counted so a caller can treat them as signs of life);
- `id:` persists across events (the "last event id"), an id containing NUL is ignored;
- `retry:` is honoured only when it is all ASCII digits.
"""

from __future__ import annotations

import codecs
import re

import attrs


@attrs.frozen(slots=True)
class SSEEvent:
    event: str  # "message" when the frame had no event: line
    data: str
    id: str | None  # the last event id in force when this event was dispatched
    retry_ms: int | None = None  # the reconnection time in force (the last valid retry: seen)

    def wire(self, comment: str = "") -> str:
        """This event as event-stream text that `SSEParser` turns back into it (event, data and
        id; `retry` is the connection's, not the event's), after an optional `: comment` line."""
        lines = [f": {comment}"] if comment else []
        lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        lines += [f"data: {line}" for line in self.data.split("\n")]
        return "\n".join(lines) + "\n\n"


_EOL = re.compile(r"\r\n|\r|\n")


class SSEParser:
    __slots__ = (
        "_data",
        "_decoder",
        "_event",
        "_first",
        "_pending",
        "_pending_cr",
        "comments",
        "last_event_id",
        "retry_ms",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # the pieces of an unfinished line
        self._pending_cr = False  # the previous chunk ended with \r: a following \n belongs to it
        self._first = True
        self._event = ""
        self._data: list[str] = []
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:  # an empty read (or half a UTF-8 sequence) must not forget a pending CR
            return []
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        # Only the new text is scanned, and an unfinished line is kept in pieces: a long data
        # line arriving in many small chunks would otherwise be copied and rescanned for every
        # chunk (quadratic; 13 MB/s in 512-byte chunks, the odds feed's biggest CPU cost).
        if "\r" not in text:
            # LF only (what OpticOdds sends): str.split finds the line ends at memchr speed,
            # where the regex steps through every character of a 170 kB odds event
            lines = text.split("\n")
            rest = lines.pop()  # after the last LF: an unfinished line ("" when none)
        else:
            lines, pos = [], 0
            for m in _EOL.finditer(text):
                lines.append(text[pos:m.start()])
                pos = m.end()
            if pos and text[pos - 1] == "\r":
                self._pending_cr = True  # a CRLF may be split across chunks
            rest = text[pos:]
        out: list[SSEEvent] = []
        for line in lines:
            if self._pending:
                self._pending.append(line)
                line = "".join(self._pending)
                self._pending = []
            ev = self._line(line)
            if ev is not None:
                out.append(ev)
        if rest:
            self._pending.append(rest)
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        # any other field name is ignored, as the standard says
        return None

    def _dispatch(self) -> SSEEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SSEEvent(event=event, data="\n".join(data), id=self.last_event_id, retry_ms=self.retry_ms)
