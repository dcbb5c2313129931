"""The simulator's OData grammar: what Defender accepts, and a 400 for what it refuses."""

from __future__ import annotations

import pytest

from devtools.simulator.clock import format_ticks, parse_ticks
from devtools.simulator.odata import ODataError, parse_filter, parse_orderby
from devtools.simulator.world import StoredAlert


def alert(**fields) -> StoredAlert:
    base = {"id": "a", "status": "New", "severity": "High", "category": "Execution",
            "detectionSource": "WindowsDefenderAtp",
            "lastUpdateTime": "2024-05-01T10:00:00.1234567Z",
            "alertCreationTime": "2024-05-01T09:00:00Z"}
    return StoredAlert({**base, **fields}, 1)


@pytest.mark.parametrize(("text", "expected"), [
    ("lastUpdateTime ge 2024-05-01T10:00:00.1234567Z", True),
    ("lastUpdateTime gt 2024-05-01T10:00:00.1234567Z", False),
    ("lastUpdateTime gt 2024-05-01T10:00:00.1234566Z", True),
    ("lastUpdateTime le 2024-05-01T10:00:00.1234567Z", True),
    ("lastUpdateTime lt 2024-05-01T10:00:00.12345670Z", "error"),
    ("lastUpdateTime lt 2024-05-01T12:00:00+02:00", False),
    ("lastUpdateTime lt 2024-05-01T12:00:00.5+02:00", True),
    ("alertCreationTime eq 2024-05-01T09:00:00.0000000Z", True),
    ("status eq 'New'", True),
    ("status eq 'new'", True),
    ("status ne 'New'", False),
    ("severity eq 'High' and status eq 'Resolved'", False),
    ("severity eq 'Low' or status eq 'New'", True),
    ("(severity eq 'Low' or severity eq 'High') and category eq 'Execution'", True),
    ("not (severity eq 'High')", False),
    ("detectionSource eq 'WindowsDefenderAtp' and (lastUpdateTime ge 2024-01-01T00:00:00Z)",
     True),
    ("category eq 'It''s'", False),
    ("resolvedTime eq null", True),
    ("lastUpdateTime ge '2024-01-01'", "error"),
    ("lastUpdateTime ge 2024-01-01", "error"),
    ("lastUpdateTime ge 2024-01-01T00:00Z", "error"),
    ("severity gt 'Low'", "error"),
    ("machineId eq 'abc'", "error"),
    ("status eq New", "error"),
    ("status eq 'New' and", "error"),
    ("(status eq 'New'", "error"),
    ("status eq 'New')", "error"),
    ("status = 'New'", "error"),
    ("", "error"),
    ("status eq 'New' ; drop", "error"),
])
def test_filter(text, expected):
    if expected == "error":
        with pytest.raises(ODataError):
            parse_filter(text)
    else:
        assert parse_filter(text)(alert()) is expected


def test_orderby():
    assert parse_orderby("lastUpdateTime asc") == [("lastUpdateTime", False)]
    assert parse_orderby("lastUpdateTime desc,alertCreationTime") == [
        ("lastUpdateTime", True), ("alertCreationTime", False)]
    for bad in ("severity asc", "lastUpdateTime up", "", "a b c"):
        with pytest.raises(ODataError):
            parse_orderby(bad)


def test_ticks_keep_seven_digits():
    for text in ("2021-01-26T20:33:57.7220239Z", "2021-01-26T20:33:57.72Z",
                 "2021-01-26T20:33:57Z"):
        assert format_ticks(parse_ticks(text)) == text
    assert parse_ticks("2021-01-26T20:33:57.0000001Z") - parse_ticks("2021-01-26T20:33:57Z") == 1
