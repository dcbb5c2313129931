"""The own-changes family's contract, on Azurite and on the in-memory fake: marks added
(a retry writes the same rows), read back by the time range they were made in (oldest
first, whatever alert ids they carry), and pruned by age."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import timefmt
from shared.storage.memory.own_changes import MemoryOwnMarks
from shared.storage.own_marks import OwnMarks, marks_of

ANALYST = {"id": "oid-1", "name": "Ann Analyst", "via": "entra"}
T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def marks(backend):
    return backend.repo(OwnMarks, "OwnMarks", MemoryOwnMarks)


@pytest.fixture
def tenant() -> str:
    return str(uuid.uuid4())


def _at(minutes: float) -> str:
    return timefmt.from_datetime(T0 + timedelta(minutes=minutes))


def test_marks_are_read_back_by_when_they_were_made(marks, tenant):
    marks.add(tenant, marks_of(["da1", "da/2#?"], {"status": "Resolved"}, True, ANALYST,
                               T0))
    marks.add(tenant, marks_of(["da1"], {"assignedTo": "x@y"}, False, ANALYST,
                               T0 + timedelta(minutes=10)))
    marks.add(str(uuid.uuid4()), marks_of(["da1"], {"status": "New"}, False, ANALYST, T0))
    found = marks.around(tenant, _at(-1), _at(20))
    assert len(found) == 3
    assert sorted((m.alert_id, m.fields["status"], m.comment) for m in found[:2]) == [
        ("da/2#?", "Resolved", True), ("da1", "Resolved", True)]
    assert {m.alert_id for m in found[:2]} == {"da1", "da/2#?"}
    assert found[2].fields == {"assignedTo": "x@y"} and found[2].actor == ANALYST
    assert found[0].at == timefmt.from_datetime(T0)
    assert len({m.mark_id for m in found[:2]}) == 1
    assert [m.alert_id for m in marks.around(tenant, _at(5), _at(20))] == ["da1"]
    assert marks.around(tenant, _at(-30), _at(-1)) == []
    assert marks.around(tenant, _at(0), _at(0)) == found[:2]  # `last` is inclusive


def test_adding_the_same_marks_again_changes_nothing(marks, tenant):
    action = marks_of([f"da{n}" for n in range(150)], {"status": "Resolved"}, False,
                      ANALYST, T0)
    marks.add(tenant, action)
    marks.add(tenant, action)  # a retried call
    assert len(marks.around(tenant, _at(-1), _at(1))) == 150


def test_old_marks_are_pruned_and_newer_ones_kept(marks, tenant):
    marks.add(tenant, marks_of(["old1", "old2"], {}, True, ANALYST, T0))
    marks.add(tenant, marks_of(["new"], {}, True, ANALYST, T0 + timedelta(hours=30)))
    assert marks.prune(tenant, _at(60), limit=1) == 1
    assert marks.prune(tenant, _at(60)) == 1
    assert marks.prune(tenant, _at(60)) == 0
    assert [m.alert_id for m in marks.around(tenant, _at(-60), _at(60 * 48))] == ["new"]
