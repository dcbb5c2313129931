"""Timer trigger semantics of the local host (schedule monitor kept in Azurite)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

from devhost.host import MONITOR_TABLE
from tests.integration.devhost_fixtures import wait_for


def test_timer_fires_on_its_schedule_read_from_a_setting(hosts):
    _, app = hosts.start()  # ticker's schedule is %TEST_TICK% = every second
    wait_for(lambda: len(app.calls.get("ticker", [])) >= 3, timeout=10)
    fired = app.calls["ticker"][:3]
    assert all(past_due is False for _, past_due in fired)
    seconds = [when.replace(microsecond=0) for when, _ in fired]
    assert len(set(seconds)) == 3, "one run per occurrence"
    assert all(when.microsecond < 500_000 for when, _ in fired), "runs at the second"


def test_run_on_startup_runs_once_at_start(hosts):
    _, app = hosts.start()
    wait_for(lambda: app.calls.get("on_startup"), timeout=5)
    time.sleep(1.5)
    assert app.calls["on_startup"] == [False]


def test_missed_occurrence_runs_at_start_with_past_due(hosts):
    table = hosts.storage.table_service().create_table_if_not_exists(MONITOR_TABLE)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    table.upsert_entity({"PartitionKey": hosts.prefix, "RowKey": "nightly",
                         "Last": yesterday - timedelta(days=1), "Next": yesterday,
                         "LastUpdated": yesterday})
    _, app = hosts.start()

    wait_for(lambda: app.calls.get("nightly"), timeout=5)
    time.sleep(0.5)
    assert app.calls["nightly"] == [True]
    status = table.get_entity(hosts.prefix, "nightly")
    assert status["Next"] > datetime.now(UTC)
    assert status["Last"] == yesterday


def test_monitored_timer_without_a_missed_occurrence_does_not_run_at_start(hosts):
    _, app = hosts.start()
    wait_for(lambda: app.calls.get("on_startup"), timeout=5)
    time.sleep(1.0)
    assert "nightly" not in app.calls
    table = hosts.storage.table_service().get_table_client(MONITOR_TABLE)
    assert table.get_entity(hosts.prefix, "nightly")["Next"] > datetime.now(UTC)


def test_failed_timer_run_is_not_retried(hosts):
    _, app = hosts.start()
    started = time.monotonic()
    time.sleep(3.2)
    runs = list(app.calls.get("failing_timer", []))
    elapsed = time.monotonic() - started
    assert 2 <= len(runs) <= int(elapsed) + 1
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(gap > 0.5 for gap in gaps), gaps
