"""The alerts of a Defender page as they arrive, each parsed from its own bytes.

Why not ijson alone: building every alert through ijson's per-token callbacks was, after
compression, the largest CPU cost of ingest (~60 us an alert of 4 KB). Here each alert's
bytes are cut out of the stream and parsed whole by orjson (~10 us).

The cut is proven, not guessed. An alert starts where the previous one ended, and the only
prefix of it that parses as JSON and ends with `}` is the whole alert: JSON is read left
to right, so a shorter prefix is an unfinished object or string, whatever its strings
hold. Candidate ends (a `}` before `,` or `]`) are tried in order, first only where the
braces balance when counted naively (cheap, and right unless strings hold braces), then
all of them, at most MAX_TRIES. Whatever falls outside that (a page not shaped
`{..., "value": [{...}, ...], ...}`, strings crafted to defeat the shortcut) is handed to
ijson from where the cut stopped, so the result never depends on the shortcut: only the
speed does. Before all that, the place where the next alert begins (`},{"id":`, as
Defender writes them) is tried: usually one search and one parse an alert.

An alert cut this way comes with its bytes (`documents`): the worker stores them as they
arrived instead of serializing the alert again.

The page's other members (Graph's `@odata.nextLink`, which may come before or after the
list) are handed to the caller's `envelope` once the body is read to its end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import ijson
from ijson.common import ObjectBuilder

from shared import codec

READ_BYTES = 256 * 1024
MAX_HEAD = 1024 * 1024  # bytes before the alert list; Defender sends ~100
MAX_TRIES = 32  # parse attempts for one alert before ijson takes over
_VALUE = re.compile(rb'"value"\s*:\s*\[')
_END = re.compile(rb"\}[ \t\r\n]*([,\]])")
# where one alert ends and the next begins, as Defender writes them (`id` first); cannot
# occur inside a string, whose quotes would be escaped
_NEXT = re.compile(rb'\}[ \t\r\n]*(,)[ \t\r\n]*\{[ \t\r\n]*"id"[ \t\r\n]*:')
_SPACE = re.compile(rb"[ \t\r\n]*")


# an item of the page, with the JSON it was parsed from (None where ijson parsed it)
Document = tuple[Any, bytes | None]


class Malformed(ValueError):
    """The body is not JSON, or not a page of alerts (message: what it is not)."""


_FAILED = object()


def _parsed(data: bytes | bytearray) -> Any:
    """The JSON value of `data`, or _FAILED."""
    try:
        return codec.loads(data)
    except codec.DecodeError:
        return _FAILED


def _parses(data: bytes) -> bool:
    return _parsed(data) is not _FAILED


class _Stream:
    """The body read so far that is still needed (`buf[pos:]`), and the rest to read."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self.read, self.buf, self.pos, self.eof = read, bytearray(), 0, False

    def more(self) -> bool:
        if self.eof:
            return False
        data = self.read(READ_BYTES)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def consume(self, upto: int) -> None:
        """Everything before `upto` is done with; memory is given back now and then,
        not per alert (that would copy the buffer for each one)."""
        self.pos = upto
        if upto >= READ_BYTES:
            del self.buf[:upto]
            self.pos = 0

    def unread(self) -> bytes:
        return bytes(self.buf[self.pos:])

    def rest(self) -> bytes:
        while self.more():
            pass
        return self.unread()


class _Replay:
    """A file for ijson: `first`, then the rest of the body. The bytes are kept until
    the first alert is found, so a page without alerts can be checked whole."""

    def __init__(self, first: bytes, read: Callable[[int], bytes]) -> None:
        self.pending, self.raw_read = first, read
        self.kept: bytearray | None = bytearray()

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson asks for 0 bytes to learn whether the file gives bytes
            return b""
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            data = self.raw_read(READ_BYTES if n < 0 else n)
        if self.kept is not None:
            self.kept += data
        return data


def _by_ijson(first: bytes, stream: _Stream, envelope: dict[str, Any] | None = None
              ) -> Iterator[Any]:
    replay = _Replay(first, stream.read)
    try:
        found = ijson.items(replay, "value.item", use_float=True) if envelope is None \
            else _items(ijson.parse(replay, use_float=True), envelope)
        for alert in found:
            replay.kept = None
            yield alert
    except ijson.JSONError as exc:
        raise Malformed("malformed JSON") from exc
    if replay.kept is not None:  # no alerts: the body must say so
        try:
            value = codec.loads(bytes(replay.kept))["value"]
        except (ValueError, KeyError, TypeError):
            value = None
        if value != []:
            raise Malformed("no alert list")


def _items(events: Iterator[tuple[str, str, Any]], envelope: dict[str, Any]
           ) -> Iterator[Any]:
    """`ijson.items(..., "value.item")`, and the root object's scalar members put in
    `envelope` (by depth, not prefix: a member's name may hold dots)."""
    depth = 0
    builder: ObjectBuilder | None = None
    for prefix, event, value in events:
        if builder is not None:  # inside an item of the list
            builder.event(event, value)
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
                if depth == 2:
                    yield builder.value
                    builder = None
            continue
        if depth == 2 and prefix == "value.item":  # an item of the list
            if event in ("start_map", "start_array"):
                builder = ObjectBuilder()
                builder.event(event, value)
                depth += 1
            else:
                yield value
            continue
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
        elif depth == 1 and event != "map_key":
            envelope[prefix] = value


def alerts(read: Callable[[int], bytes]) -> Iterator[Any]:
    """Each item of the page's `value` array, in order, as soon as its bytes are in.

    Raises Malformed for a body that is not JSON or has no `value` list (a page without
    alerts must say `"value": []`); errors of `read` pass through.
    """
    return (item for item, _ in documents(read))


def documents(read: Callable[[int], bytes], envelope: dict[str, Any] | None = None
              ) -> Iterator[Document]:
    """As `alerts`, each item with the JSON it was parsed from: exactly its bytes in the
    body, or None where ijson parsed it (those bytes were never held whole). With
    `envelope`, the page's other scalar members are put in it once the body has ended."""
    stream = _Stream(read)
    # the head: everything before the list, which must be the start of an object
    searched = 0
    while True:
        match = _VALUE.search(stream.buf, searched)
        if match is not None:
            head = bytes(stream.buf[:match.start()])
            if _parses(head + b'"value":null}'):
                break
            searched = match.start() + 1
            continue
        # a match may straddle two reads: it would start at the last `"value"`
        candidate = stream.buf.rfind(b'"value"', searched)
        searched = candidate if candidate >= 0 else max(searched, len(stream.buf) - 6)
        if len(stream.buf) > MAX_HEAD or not stream.more():
            yield from ((item, None) for item in _by_ijson(stream.unread(), stream,
                                                           envelope))
            return
    stream.consume(match.end())
    restart = head + b'"value":['
    last = None  # None before the first alert, else whether the last one closed the list
    while True:  # one alert a turn
        start = _SPACE.match(stream.buf, stream.pos).end()
        while start == len(stream.buf) and stream.more():
            start = _SPACE.match(stream.buf, stream.pos).end()
        first = stream.buf[start:start + 1]
        if first == b"]":
            if last is not None:  # `,]`
                raise Malformed("malformed JSON")
            stream.consume(start + 1)
            break
        found = _cut(stream, start) if first == b"{" else None
        if found is None:  # not an object, or past the shortcut: ijson says what it is
            yield from ((item, None) for item in _by_ijson(restart + stream.unread(),
                                                           stream, envelope))
            return
        alert, data, after, last = found
        yield alert, data
        stream.consume(after)
        if last:
            break
    rest = _parsed(head + b'"value":[]' + stream.rest())
    if rest is _FAILED:
        raise Malformed("malformed JSON")
    if envelope is not None and isinstance(rest, dict):
        envelope.update((k, v) for k, v in rest.items()
                        if k != "value" and not isinstance(v, dict | list))


def _cut(stream: _Stream, start: int) -> tuple[Any, bytes, int, bool] | None:
    """(the alert, its bytes, where what follows its `,` or `]` starts, whether it was
    `]`) for the object at `start`, reading as needed; None to hand over to ijson."""
    tries = 0
    match = _NEXT.search(stream.buf, start)  # the usual case: one search, one parse
    if match is not None:
        data = bytes(stream.buf[start:match.start() + 1])
        alert = _parsed(data)
        if alert is not _FAILED:
            return alert, data, match.end(1), False
        tries += 1
    for balanced_only in (True, False):
        searched, balance, counted = start, 0, start
        while True:
            match = _END.search(stream.buf, searched)
            if match is None:
                # a match may straddle two reads: it would start at the last `}`
                last_brace = stream.buf.rfind(b"}", searched)
                searched = last_brace if last_brace >= 0 else len(stream.buf)
                if stream.more():
                    continue
                if balanced_only:
                    break
                raise Malformed("malformed JSON")  # the body ends inside an alert
            end = match.start() + 1
            searched = end
            if balanced_only:
                balance += (stream.buf.count(b"{", counted, end)
                            - stream.buf.count(b"}", counted, end))
                counted = end
                if balance != 0:
                    continue
            data = bytes(stream.buf[start:end])
            alert = _parsed(data)
            if alert is not _FAILED:
                return alert, data, match.end(), match.group(1) == b"]"
            tries += 1
            if tries >= MAX_TRIES:
                return None
            if balanced_only:
                break  # strings hold braces: try every candidate from the start
    return None
