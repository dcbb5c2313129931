"""The backfill on Azurite, on a store written by the previous version (a relay that kept
no tally, feed entries without tenant views): afterwards the summaries equal a recount of
the Alerts table once the outbox is relayed, and a pull filtered to one tenant returns
exactly what the unfiltered pull returns for it, in order, with continuation."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.ingest.relay import Relay
from shared.messages import AlertEvent
from shared.ops.backfill import Backfill
from shared.siem.pull import parse_query, pull
from shared.storage import tables
from shared.storage.alerts import AlertRepository
from shared.storage.ingest_state import IngestStates
from shared.storage.queues import EventQueue
from shared.storage.siem_feed import SiemFeedRepository, entry_entity
from shared.storage.tenant_summaries import TenantSummaries, first_day, recount
from tests.integration.siem_fixtures import feed_for


class Chosen:
    """The tenants repository as the backfill reads it, limited to this test's tenants."""

    def __init__(self, tenants: list[Any]) -> None:
        self.tenants = tenants

    def all(self) -> list[Any]:
        return list(self.tenants)


def _old_append(feed, event: AlertEvent) -> None:
    """The previous version's feed write: the entry alone, no tenant view."""
    feed.entries.client.upsert_entity(entry_entity(event, feed.now_us()),
                                      mode=UpdateMode.REPLACE)


def _pull_all(feed, tenant: str = "", limit: str = "4") -> list[str]:
    ids, token = [], ""
    while True:
        params = {"limit": limit, **({"tenant": tenant} if tenant else {}),
                  **({"continuation": token} if token else {})}
        items, token, more = pull(feed, parse_query(params))
        ids += [i.event_id for i in items]
        if not more:
            return ids


def test_backfill_of_a_store_written_by_the_previous_version(pipeline, storage_env):
    storage = storage_env
    states = IngestStates(tables.table(storage, tables.INGEST_STATE))
    old_relay = Relay(states, EventQueue(tables.queue(storage, tables.NOTIFY_QUEUE)),
                      EventQueue(tables.queue(storage, tables.SIEM_QUEUE)))
    pipeline = dataclasses.replace(pipeline, relay=old_relay)
    feed = feed_for(storage)
    a = pipeline.add_tenant("Backfill A", alerts=12)
    b = pipeline.add_tenant("Backfill B", alerts=7)
    for tenant in (a, b):
        pipeline.fetch(tenant)
        for e in pipeline.events(tenant.tenant_id):  # relayed, fed the old way
            _old_append(feed, AlertEvent.parse(json.dumps(e)))
        states.client.delete_entity(tenant.tenant_id, "tally")  # the old relay kept none
    alert_id = next(iter(pipeline.rows(a.tenant_id)))
    pipeline.sim.update_alert(a.tenant_id, alert_id)
    pipeline.fetch(a)  # this change waits in the outbox
    summaries = TenantSummaries(tables.table(storage, tables.TENANT_SUMMARIES))
    alerts = AlertRepository(tables.table(storage, tables.ALERTS))
    job = Backfill(Chosen([a, b]), states, alerts, summaries,
                   SiemFeedRepository(tables.table(storage, tables.SIEM_FEED)),
                   retention_days=1)
    time.sleep(1.1)  # the settle
    assert _pull_all(feed, a.tenant_id) == []  # no tenant view yet
    assert states.of(a.tenant_id).tally().etag is None  # no tally yet
    summaries.save_progress("tenants", "")
    summaries.save_progress("feed", "")
    report = job.run()
    assert report.tenants == 2 and report.entries >= 19
    assert job.run().tenants == 0  # resumable: nothing left
    new_relay = Relay(states, EventQueue(tables.queue(storage, tables.NOTIFY_QUEUE)),
                      EventQueue(tables.queue(storage, tables.SIEM_QUEUE)),
                      summaries=summaries)
    new_relay.relay(a.tenant_id)
    today = datetime.now(UTC).date()
    found = summaries.all()
    for tenant in (a, b):
        rows, cut = alerts.open_or_raised_since(tenant.tenant_id, first_day(today), 10_000)
        assert not cut
        assert found[tenant.tenant_id].same_counts(recount(rows, today))
        assert found[tenant.tenant_id] == states.of(tenant.tenant_id).tally().counts
    time.sleep(1.1)  # the settle
    everything = _pull_all(feed, limit="50")
    for tenant in (a, b):
        mine = [i for i in everything if i.startswith(tenant.tenant_id)]
        assert len(mine) == (12 if tenant is a else 7)
        assert _pull_all(feed, tenant.tenant_id, limit="4") == mine
