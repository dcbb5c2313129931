"""`python -m tools.backfill_index` on Azurite: a store the previous version wrote (alert
rows, no index) gets one entry per alert; interrupted, the command resumes; run again,
it reads nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.storage import tables
from shared.storage.alert_index import AlertIndex, entry_of, mains
from shared.storage.alert_rows import alert_rows
from shared.storage.alerts import AlertRepository
from tools import backfill_index

NOW = datetime.now(UTC)


def _alert(n: int) -> dict:
    stamp = (NOW - timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return {"id": f"da{n:06d}", "title": f"Alert {n}", "severity": "Low", "status": "New",
            "alertCreationTime": stamp, "lastUpdateTime": stamp}


def test_the_command_backfills_resumes_and_does_nothing_twice(storage_env, capsys,
                                                              monkeypatch):
    alerts = AlertRepository(tables.table(storage_env, tables.ALERTS))
    index = AlertIndex(tables.table(storage_env, tables.ALERT_INDEX))
    tenant = str(uuid.uuid4())
    rows = [r for n in range(23) for r in alert_rows(tenant, _alert(n))]
    alerts.store(rows[:20])
    alerts.store(rows[20:])
    want = {(e["PartitionKey"], e["RowKey"]) for e in map(entry_of, mains(rows))}

    def ours() -> set[tuple[str, str]]:
        return {(e["PartitionKey"], e["RowKey"]) for e in index.every()
                if e["Tenant"] == tenant}

    calls = 0
    real = backfill_index.backfill

    def dies_after_one_step(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(backfill_index, "STEP", 10)
    monkeypatch.setattr(backfill_index, "backfill", dies_after_one_step)
    with pytest.raises(KeyboardInterrupt):
        backfill_index.main(["--tenant", tenant, "--batch", "10"])
    assert len(ours()) == 10 and "going" in capsys.readouterr().out
    monkeypatch.setattr(backfill_index, "backfill", real)
    assert backfill_index.main(["--tenant", tenant, "--batch", "10"]) == 0
    assert ours() == want
    assert "13 rows read" in capsys.readouterr().out  # resumed after the first ten
    assert backfill_index.main(["--tenant", tenant]) == 0
    assert "0 rows read" in capsys.readouterr().out.splitlines()[-1]
