"""Alerts cut out of a page as it arrives: always what a whole-document parser reads."""

from __future__ import annotations

import io
import json
import random

import ijson
import pytest

from devtools.simulator.alerts import AlertFactory
from shared.microsoft import alert_stream
from shared.microsoft.alert_stream import Malformed, alerts

FACTORY = AlertFactory("11111111-1111-1111-1111-111111111111", "contoso.com")
REAL = [FACTORY.make(10**15 + i * 10**8) for i in range(40)]
NASTY = [  # strings that look like structure
    {"id": "a", "processCommandLine": '},{"id":"fake"}', "t": "}]"},
    {"id": "b", "evidence": [{"x": "{{{{"}, {"y": "}"}], "z": '\\"}, {'},
    {"id": "c", "s": "\\\\", "q": "\\\"}", "u": "\u00e9\u6f22\U0001f600 }\n,"},
    {"id": "d", "nested": {"value": [1, {"value": "]"}]}, "e": [], "f": {}},
    {"id": "e", "evidence": [{"id": 1}, {"id": 2, "x": {"id": 3}}], "after": "x"},
]


def _page(items: list, *, indent: bool = False, before: str = '"@odata.context": "x"',
          after: str = "") -> bytes:
    head = "{" + (before + ", " if before else "")
    tail = (", " + after if after else "") + "}"
    value = json.dumps(items, indent=2 if indent else None)
    return (head + '"value": ' + value + tail).encode()


def _read(data: bytes, size: int):
    stream = io.BytesIO(data)
    return lambda n: stream.read(min(n, size))


def _parsed(data: bytes, size: int = 1 << 20) -> list:
    return list(alerts(_read(data, size)))


@pytest.fixture
def no_fallback(monkeypatch):
    """Fails the test if ijson is asked for help: the fast path must do these alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("fell back to ijson")
    monkeypatch.setattr(ijson, "items", refuse)


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("indent", [False, True])
def test_real_and_nasty_alerts_read_exactly(no_fallback, size, indent):
    items = REAL + NASTY
    assert _parsed(_page(items, indent=indent), size) == items


@pytest.mark.parametrize(("before", "after"), [
    ("", ""),
    ('"@odata.context": "https://x/$metadata#Alerts(\\"value\\": [1])"', ""),
    ('"a": {"value": [{"id": "inner"}]}, "b": "\\"value\\":["', ""),
    ("", '"@odata.nextLink": "https://x/api/alerts?$skip=10"'),
])
def test_the_list_is_found_wherever_it_sits(before, after):
    assert _parsed(_page(NASTY, before=before, after=after), 5) == NASTY


def test_every_truncation_raises_after_a_prefix_of_the_alerts():
    """A body that breaks off anywhere: an error, and only whole alerts before it."""
    items = NASTY + REAL[:2]
    data = _page(items)
    for cut in range(len(data)):
        got = []
        with pytest.raises(Malformed):
            for alert in alerts(_read(data[:cut], 64)):
                got.append(alert)
        assert got == items[:len(got)], cut


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"@odata.context": "x", "value": []}', []),
    (b'{"value":[ ] }', []),
    (b'{"value": [], "more": "' + b"x" * 70_000 + b'"}', []),
    (b'{"value": [1, "two", null, {"id": "x"}]}', [1, "two", None, {"id": "x"}]),
    (b'{"value": [{"id": "x"}, 2]}', [{"id": "x"}, 2]),
])
def test_odd_but_valid_pages(body, expected):
    assert _parsed(body, 3) == expected


@pytest.mark.parametrize(("body", "message"), [
    (b'{"error": {"code": "x"}}', "no alert list"),
    (b'{"value": {}}', "no alert list"),
    (b"", "malformed"),
    (b'{"value": [], "more": "' + b"x" * 70_000 + b'"', "malformed"),
    (b'{"value": [{"id": "x"}}', "malformed"),
    (b'{"value": [{"id": "x"} {"id": "y"}]}', "malformed"),
    (b'{"value": [{"id": "x"},]}', "malformed"),
    (b"<html>busy</html>", "malformed|no alert list"),
])
def test_what_is_not_a_page_of_alerts(body, message):
    with pytest.raises(Malformed, match=message):
        _parsed(body, 5)


def test_strings_crafted_against_the_shortcut_are_still_read_right(monkeypatch):
    """Unbalanced braces in strings and many `}` candidates: past MAX_TRIES, ijson reads
    the rest of the page, and the result is the same."""
    used = []
    real_items = ijson.items
    monkeypatch.setattr(ijson, "items", lambda *a, **k: used.append(1) or real_items(*a, **k))
    crafted = {"id": "evil", "cmd": "{" * 50,
               "evidence": [{"n": i, "s": "}"} for i in range(alert_stream.MAX_TRIES + 5)]}
    items = [REAL[0], crafted, REAL[1], NASTY[0]]
    assert _parsed(_page(items), 1000) == items
    assert used == [1]


def test_errors_of_the_connection_pass_through():
    data = _page(REAL[:3])
    stream = io.BytesIO(data)

    def read(n: int) -> bytes:
        if stream.tell() > len(data) // 2:
            raise ConnectionResetError("gone")
        return stream.read(min(n, 1000))
    got = []
    with pytest.raises(ConnectionResetError):
        for alert in alerts(read):
            got.append(alert)
    assert got == REAL[:len(got)] and got


def test_random_documents_match_the_whole_document_parser():
    rng = random.Random(7)
    alphabet = '{}[],:"\\ abc\u00e9\n'

    def value(depth: int):
        kind = rng.randrange(6 if depth < 3 else 3)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        if kind == 1:
            return rng.choice([0, -1.5, 10**12, True, None])
        if kind == 2:
            return rng.choice(["}", "},", "}]", '"}', "{"])
        if kind == 3:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{i}{rng.choice(alphabet)}": value(depth + 1) for i in range(rng.randrange(4))}
    for _ in range(200):
        items = [{"id": str(i), **{f"f{j}": value(1) for j in range(rng.randrange(5))}}
                 for i in range(rng.randrange(6))]
        data = _page(items, indent=rng.random() < 0.3)
        assert _parsed(data, rng.choice([1, 3, 64, 4096])) == json.loads(data)["value"]


@pytest.mark.parametrize("indent", [False, True])
def test_documents_carry_each_alerts_own_bytes_else_none(indent):
    """The worker stores the bytes an alert came as: they must be exactly that alert's
    JSON from the body, in order, and None only for what ijson read."""
    items = [*REAL[:3], *NASTY, "not an object: ijson reads from here on", REAL[3]]
    data = _page(items, indent=indent)
    got = list(alert_stream.documents(_read(data, 4096)))
    assert [alert for alert, _ in got] == items
    searched = 0
    for alert, raw in got[:-2]:
        assert json.loads(raw) == alert
        searched = data.index(raw, searched) + len(raw)  # a slice of the body, in order
    assert [raw for _, raw in got[-2:]] == [None, None]
