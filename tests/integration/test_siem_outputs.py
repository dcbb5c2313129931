"""Push outputs against real receivers: rsyslog (TCP, TLS, UDP), HEC and webhook endpoints."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.services import siem_delivery_on
from shared.siem.cef import labelled, parse_cef
from shared.siem.delivery import SiemDelivery
from shared.siem.outputs import parse_outputs
from shared.siem.senders import signature
from shared.storage.siem_delivery import PK
from tests.integration.siem_fixtures import event, feed_for

TITLE = "Creds | dump = \\\\server\\share\nsecond line with = and |"


def _delivery(storage, outputs: list[dict], env: dict | None = None) -> SiemDelivery:
    feed = feed_for(storage)
    delivery = siem_delivery_on(storage, feed, parse_outputs(json.dumps(outputs), env or {}))
    for name in delivery.outputs:
        assert delivery.deliver(name).status == "idle"  # state starts now
    return delivery


def _settled() -> None:
    time.sleep(1.1)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _retry_now(delivery: SiemDelivery, name: str) -> None:
    """Time passes: the output's back-off is over."""
    delivery.states.client.update_entity({"PartitionKey": PK, "RowKey": name,
                                         "RetryAt": datetime.now(UTC) - timedelta(seconds=1)})


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_cef_reaches_rsyslog_and_every_field_round_trips(storage_env, rsyslog, protocol):
    tenant = str(uuid.uuid4())
    name = _name("syslog")
    port = rsyslog.tls_port if protocol == "tls" else rsyslog.tcp_port
    delivery = _delivery(storage_env, [{
        "name": name, "type": "syslog", "host": "127.0.0.1", "port": port,
        "protocol": protocol, "ca_file": str(rsyslog.ca_file), "tenants": [tenant],
        "batch_size": 3}])
    events = [event(tenant, n, severity=sev, title=TITLE + str(n), rbacGroupName="Tier|0",
                    mitreTechniques=["T1003", "T1003.001"])
              for n, sev in enumerate(["High", "Low", "Medium", "Informational", "High"])]
    for e in events:
        delivery.feed.append(e)
    before = len(rsyslog.lines())
    _settled()
    outcome = delivery.deliver(name)
    assert (outcome.status, outcome.delivered, outcome.batches) == ("delivered", 5, 2)
    lines = rsyslog.wait_for(before + 5)
    mine = [parse_cef(line) for line in lines if tenant in line]
    assert len(mine) == 5
    for (header, ext), e in zip(mine, events, strict=True):
        alert = e.alert
        assert header[4] == alert["category"]  # no detectorId: the category
        assert header[5] == alert["title"].replace("\n", " ")
        assert header[6] == {"High": "8", "Medium": "5", "Low": "3", "Informational": "2"}[
            alert["severity"]]
        assert ext["msg"] == alert["title"]  # `|`, `=`, `\` and the line break, exactly
        assert ext["externalId"] == alert["id"] and ext["dhost"] == alert["computerDnsName"]
        assert labelled(ext) == {"TenantId": tenant, "TenantName": e.tenant_name,
                                 "DeviceGroup": "Tier|0", "MitreTechniques": "T1003,T1003.001",
                                 "DedupeKey": e.event_id}


def test_syslog_over_udp(storage_env, rsyslog):
    tenant = str(uuid.uuid4())
    name = _name("udp")
    delivery = _delivery(storage_env, [{"name": name, "type": "syslog", "host": "127.0.0.1",
                                        "port": rsyslog.udp_port, "protocol": "udp",
                                        "tenants": [tenant]}])
    delivery.feed.append(event(tenant, 1, title=TITLE))
    _settled()
    assert delivery.deliver(name).delivered == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(tenant in x for x in rsyslog.lines()):
        time.sleep(0.05)
    [line] = [x for x in rsyslog.lines() if tenant in x]
    assert parse_cef(line)[1]["msg"] == TITLE


def test_rsyslog_down_then_up_loses_nothing(storage_env, rsyslog):
    tenant = str(uuid.uuid4())
    name = _name("down")
    delivery = _delivery(storage_env, [{"name": name, "type": "syslog", "host": "127.0.0.1",
                                        "port": rsyslog.tcp_port, "tenants": [tenant],
                                        "timeout_seconds": 2}])
    rsyslog.stop()
    try:
        for n in range(4):
            delivery.feed.append(event(tenant, n))
        _settled()
        failed = delivery.deliver(name)
        assert failed.status == "failed" and "ConnectionRefused" in failed.error
        assert delivery.deliver(name).status == "waiting"  # backing off, nothing lost
        [status] = [s for s in delivery.status() if s["name"] == name]
        assert status["failures"] == 1 and status["retry_at"]
    finally:
        rsyslog.start()
    for n in range(4, 6):
        delivery.feed.append(event(tenant, n))
    _settled()
    _retry_now(delivery, name)
    assert delivery.deliver(name).delivered == 6
    time.sleep(0.5)
    got = sorted(labelled(parse_cef(x)[1])["DedupeKey"] for x in rsyslog.lines() if tenant in x)
    assert len(got) == 6 and len(set(got)) == 6
    [status] = [s for s in delivery.status() if s["name"] == name]
    assert status["failures"] == 0 and status["last_success_at"]


def test_hec_batches_with_token_channel_index_and_sourcetype(storage_env, receiver):
    hec = receiver("/services/collector/event")
    tenant = str(uuid.uuid4())
    name = _name("hec")
    channel = str(uuid.uuid4())
    delivery = _delivery(storage_env, [{
        "name": name, "type": "splunk_hec", "url": hec.url, "index": "defender",
        "channel": channel, "sourcetype": "mssp:alert", "batch_size": 4, "tenants": [tenant],
        "min_severity": "Medium"}], {"SIEM_HEC_TOKEN": "hec-token-123"})
    for n, sev in enumerate(["High", "Low", "Medium", "High", "Medium", "High", "High",
                             "Informational", "Medium", "High"]):
        delivery.feed.append(event(tenant, n, severity=sev))
    _settled()
    outcome = delivery.deliver(name)
    assert (outcome.delivered, outcome.batches) == (8, 2)  # Low and Informational filtered
    assert len(hec.requests) == 2
    items = []
    for headers, body in hec.requests:
        assert headers["Authorization"] == "Splunk hec-token-123"
        assert headers["X-Splunk-Request-Channel"] == channel
        batch = [json.loads(line) for line in body.decode().splitlines()]
        assert all(b["index"] == "defender" and b["sourcetype"] == "mssp:alert" for b in batch)
        items += batch
    assert [i["event"]["alert"]["title"] for i in items] == [
        f"Alert {n}" for n in (0, 2, 3, 4, 5, 6, 8, 9)]
    assert {i["fields"]["tenant_id"] for i in items} == {tenant}
    assert len({i["fields"]["dedupe_key"] for i in items}) == 8


def test_hec_refusal_in_the_body_is_a_failure(storage_env, receiver):
    hec = receiver()
    hec.answer = {"text": "Invalid token", "code": 4}
    tenant = str(uuid.uuid4())
    name = _name("hecbad")
    delivery = _delivery(storage_env, [{"name": name, "type": "splunk_hec", "url": hec.url,
                                        "tenants": [tenant]}], {"SIEM_HEC_TOKEN": "x"})
    delivery.feed.append(event(tenant, 1))
    _settled()
    outcome = delivery.deliver(name)
    assert outcome.status == "failed" and "code 4" in outcome.error


def test_webhook_is_signed_over_timestamp_and_body_and_in_ecs_on_request(storage_env,
                                                                         receiver):
    hook, ecs_hook = receiver("/hook"), receiver("/ecs")
    tenant = str(uuid.uuid4())
    plain, ecs = _name("hook"), _name("ecs")
    secret = "webhook-secret-0123456789"
    delivery = _delivery(storage_env, [
        {"name": plain, "type": "webhook", "url": hook.url, "tenants": [tenant],
         "batch_size": 2},
        {"name": ecs, "type": "webhook", "url": ecs_hook.url, "tenants": [tenant],
         "format": "ecs", "secret_setting": "SIEM_ECS_SECRET"}],
        {"SIEM_WEBHOOK_SECRET": secret, "SIEM_ECS_SECRET": "another-secret-abcdefgh"})
    for n in range(3):
        delivery.feed.append(event(tenant, n, title=TITLE))
    _settled()
    assert delivery.deliver(plain).batches == 2
    assert delivery.deliver(ecs).batches == 1
    events = []
    for headers, body in hook.requests:
        stamp = headers["X-Mssp-Hub-Timestamp"]
        assert abs(int(stamp) - time.time()) < 30  # receivers reject old ones (replays)
        assert headers["X-Mssp-Hub-Signature"] == signature(secret, stamp, body)
        assert headers["X-Mssp-Hub-Signature"] != signature(secret, str(int(stamp) - 1), body)
        events += json.loads(body)["events"]
    assert [e["alert"]["title"] for e in events] == [TITLE] * 3
    assert {e["tenant_id"] for e in events} == {tenant}
    [(headers, body)] = ecs_hook.requests
    assert headers["X-Mssp-Hub-Signature"] == signature(
        "another-secret-abcdefgh", headers["X-Mssp-Hub-Timestamp"], body)
    docs = json.loads(body)["events"]
    assert [d["message"] for d in docs] == [TITLE] * 3
    assert {d["organization"]["id"] for d in docs} == {tenant}


def test_a_destination_down_for_long_waits_and_holds_back_no_other(storage_env, receiver):
    down, up = receiver(), receiver()
    down.status = 503
    tenant = str(uuid.uuid4())
    a, b = _name("down"), _name("up")
    delivery = _delivery(storage_env, [
        {"name": a, "type": "webhook", "url": down.url, "tenants": [tenant]},
        {"name": b, "type": "webhook", "url": up.url, "tenants": [tenant]}],
        {"SIEM_WEBHOOK_SECRET": "s" * 20})
    sent = []
    for round_ in range(3):  # hours pass: more alerts, more failed attempts
        for n in range(5):
            e = event(tenant, round_ * 10 + n)
            delivery.feed.append(e)
            sent.append(e.event_id)
        _settled()
        assert delivery.deliver(a).status == "failed"
        assert delivery.deliver(b).delivered == 5
        _retry_now(delivery, a)
    [status] = [s for s in delivery.status() if s["name"] == a]
    assert status["failures"] == 3 and "503" in status["last_error"]
    down.status = 200
    outcome = delivery.deliver(a)
    assert outcome.delivered == 15
    received = [e["event_id"] for _, body in down.requests if body
                for e in json.loads(body)["events"]]
    assert sorted(set(received)) == sorted(sent)  # retried batches resend, nothing lost
    assert [e["event_id"] for _, body in up.requests for e in json.loads(body)["events"]] \
        == sent


def test_tick_queues_each_ready_output_once(storage_env, receiver):
    hook = receiver()
    name = _name("tick")
    delivery = _delivery(storage_env, [{"name": name, "type": "webhook", "url": hook.url,
                                        "tenants": [str(uuid.uuid4())]}],
                         {"SIEM_WEBHOOK_SECRET": "s" * 20})
    assert delivery.tick() == [name]
    assert delivery.tick() == []  # queued and not picked up yet: no pile-up
    assert delivery.deliver(name).status == "idle"
    assert delivery.tick() == [name]
