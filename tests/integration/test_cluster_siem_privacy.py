"""Issue 22, item 7, on Azurite with real receivers: a cluster names several customers, so
an SIEM output scoped to tenants (a customer's own SIEM) receives its tenant's alerts and
never a cluster, even one naming its tenant, nor another tenant's alert; the MSSP's
unscoped output gets all of them (rsyslog, a webhook)."""

from __future__ import annotations

import json
import time
import uuid

from shared.siem.cef import labelled, parse_cef
from tests.cluster_events import cluster_event
from tests.integration.devhost_fixtures import wait_for
from tests.integration.siem_fixtures import event
from tests.integration.test_siem_outputs import _delivery, _name, _settled


def test_a_tenant_scoped_output_never_gets_a_cluster_the_mssps_output_does(
        storage_env, rsyslog, receiver):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    scoped, everyone = _name("customer"), _name("mssp")
    hook = receiver("/hook")
    delivery = _delivery(storage_env, [
        {"name": scoped, "type": "syslog", "host": "127.0.0.1", "port": rsyslog.tcp_port,
         "protocol": "tcp", "tenants": [mine]},
        {"name": everyone, "type": "webhook", "url": hook.url, "batch_size": 100}],
        {"SIEM_WEBHOOK_SECRET": "e2e-webhook-secret-0123456789"})
    ours = event(mine, 1, title="Mine: secret-of-mine")
    theirs = event(other, 2, title="Other: secret-of-other")
    cluster = cluster_event(value=f"https://x.example/{uuid.uuid4().hex}", tenants=[
        {"id": mine, "name": "Mine", "alerts": 1},
        {"id": other, "name": "Other", "alerts": 1}])
    for item in (ours, theirs, cluster):
        assert delivery.feed.append(item)
    _settled()
    assert delivery.deliver(scoped).delivered == 1
    assert delivery.deliver(everyone).delivered >= 3
    wait_for(lambda: any(mine in x for x in rsyslog.lines()), timeout=10)
    time.sleep(0.5)  # anything else sent would be in by now
    lines = [x for x in rsyslog.lines() if mine in x or other in x or cluster.key in x]
    assert [labelled(parse_cef(x)[1])["DedupeKey"] for x in lines] == [ours.event_id]
    assert "secret-of-other" not in "\n".join(lines)
    sent = [e for _, body in hook.requests for e in json.loads(body)["events"]]
    assert {ours.event_id, theirs.event_id, cluster.event_id} <= {
        e.get("event_id") for e in sent}
