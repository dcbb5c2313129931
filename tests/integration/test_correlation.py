"""Correlation on Azurite through the relay: alerts of four tenants (two read from
Defender for Endpoint's API, two from Graph) sharing a file hash reach the correlate queue
as the relay's copy of each chunk, and make one cluster of four tenants with exactly three
ClusterEvents on the notify and SIEM queues; a redelivered message indexes nothing twice;
private addresses are ignored; a suppressed indicator forms no cluster; a fifth tenant
makes one more event."""

from __future__ import annotations

import uuid
from typing import Any

from shared.config import CorrelationSettings
from shared.correlation.model import IP, SHA256, Indicator
from shared.correlation.service import Correlation
from shared.ingest.events import event_message, tracked
from shared.ingest.relay import Relay
from shared.messages import AlertEvent, ClusterEvent, alert_events, queue_events
from shared.model import Cursor
from shared.storage import tables
from shared.storage.correlation import CorrelationStore
from shared.storage.ingest_state import IngestStates
from shared.storage.queues import EventQueue, RelayQueue
from tests import alert_docs

SHARED = "d" * 64
BENIGN = "e" * 64  # the MSSP's own tool, suppressed
STAMP = "2026-12-02T10:00:00.0000000Z"


def _doc(n: int, tenant: str) -> tuple[dict[str, Any], str]:
    if n % 2 == 0:
        doc = alert_docs.mde_alert(id=f"da{n}", aadTenantId=tenant, alertCreationTime=STAMP,
                                   lastUpdateTime=STAMP)
        doc["evidence"] = [
            {"entityType": "File", "fileName": "drop.exe", "sha256": SHARED},
            {"entityType": "File", "fileName": "agent.exe", "sha256": BENIGN},
            {"entityType": "Ip", "ipAddress": "192.168.1.10"},
            {"entityType": "Url", "url": f"http://tenant{n}.example/<script>"}]
        return doc, "mde"
    doc = alert_docs.graph_alert(id=f"ga{n}", tenantId=tenant, createdDateTime=STAMP,
                                 lastUpdateDateTime=STAMP)
    doc["evidence"] = [
        {"@odata.type": "#microsoft.graph.security.fileEvidence",
         "fileDetails": {"fileName": "drop.exe", "sha256": SHARED.upper()}},
        {"@odata.type": "#microsoft.graph.security.processEvidence",
         "imageFile": {"fileName": "agent.exe", "sha256": BENIGN}},
        {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "192.168.1.10"},
        {"@odata.type": "#microsoft.graph.security.urlEvidence",
         "url": f"http://tenant{n}.example/<script>"}]
    return doc, "graph"


def _drain(client) -> list[str]:
    texts = []
    while batch := list(client.receive_messages(messages_per_page=32, max_messages=32,
                                                visibility_timeout=60)):
        for message in batch:
            texts.append(message.content)
            client.delete_message(message)
    return texts


def _clusters(texts: list[str]) -> list[ClusterEvent]:
    return [e for t in texts for e in queue_events(t) if isinstance(e, ClusterEvent)]


def test_four_tenants_one_cluster_three_events_then_a_fifth(storage_env):
    suffix = uuid.uuid4().hex[:10]
    states = IngestStates(tables.table(storage_env, f"CorrState{suffix}"))
    queues = {name: tables.queue(storage_env, f"corr-{name}-{suffix}")
              for name in ("notify", "siem", "retry", "correlate")}
    notify, siem = EventQueue(queues["notify"]), EventQueue(queues["siem"])
    relay = Relay(states, notify, siem, RelayQueue(queues["retry"]),
                  correlate=EventQueue(queues["correlate"]))
    store = CorrelationStore(tables.table(storage_env, f"Corr{suffix}"),
                             tables.table(storage_env, f"CorrIdx{suffix}"))
    service = Correlation(store, notify, siem, CorrelationSettings(), lambda: 5)
    service.suppress(Indicator(SHA256, BENIGN), "our EDR agent", "ann@mssp.example")
    tenants = [str(uuid.uuid4()) for _ in range(5)]

    def ingest(n: int) -> None:
        doc, schema = _doc(n, tenants[n])
        message = event_message(tenants[n], f"Tenant {n}", doc, STAMP, None,
                                tracked(doc, STAMP, schema), schema=schema)
        state = states.of(tenants[n])
        state.commit([], [message], Cursor(STAMP, 1), state.cursor()[1], f"c{n}")
        relay.relay(tenants[n])

    def correlate() -> list[AlertEvent]:
        texts = _drain(queues["correlate"])
        events = [e for t in texts for e in alert_events(t)]
        service.index(events)
        return events

    for n in range(4):
        ingest(n)
    delivered = correlate()
    assert len(delivered) == 4
    sent = _clusters(_drain(queues["notify"]))
    assert [(e.version, e.change, len(e.tenants)) for e in sent] == [
        (1, "new", 2), (2, "grew", 3), (3, "grew", 4)]
    assert [t.get("alerts") for t in sent[-1].tenants] == [1, 1, 1, 1]  # the email shows it
    assert _clusters(_drain(queues["siem"])) == sent
    clusters, _ = service.clusters()
    assert [c.indicator for c in clusters] == [Indicator(SHA256, SHARED)]
    assert clusters[0].reach == 4
    # redelivered: nothing indexed twice, nothing sent
    again = service.index(delivered)
    assert (again.sightings, again.versions, again.sent) == (0, 0, 0)
    assert _clusters(_drain(queues["notify"])) == []
    assert len(service.lookup(Indicator(SHA256, SHARED))[0]) == 4
    # suppressed: looked up, never a cluster; private addresses: not even sighted
    assert service.cluster(Indicator(SHA256, BENIGN)) is None
    assert len(service.lookup(Indicator(SHA256, BENIGN))[0]) == 4
    assert service.lookup(Indicator(IP, "192.168.1.10")) == ([], None)
    # a fifth tenant: one more event
    ingest(4)
    correlate()
    fifth = _clusters(_drain(queues["notify"]))
    assert [(e.version, e.change, [j["id"] for j in e.joined]) for e in fifth] == [
        (4, "grew", [tenants[4]])]
    cluster = service.cluster(Indicator(SHA256, SHARED))
    assert cluster is not None and cluster.reach == 5
    assert service.alert_indicators(tenants[0], "da0") == []  # no alert reader wired
