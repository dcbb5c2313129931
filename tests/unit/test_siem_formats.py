"""CEF escaping and parsing, ECS mapping, the SIEM_OUTPUTS setting and pull-API tokens."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from shared.config import SettingsError
from shared.siem.cef import format_cef, labelled, parse_cef
from shared.siem.ecs import to_ecs
from shared.siem.feed import Filters, Position
from shared.siem.outputs import parse_outputs
from shared.siem.pull import encode_token, item, parse_query
from shared.siem.senders import document, signature, syslog_frame
from shared.validation import ValidationError

TENANT = "0b9f2a6e-1c1d-4d6b-9c55-0d2a3f4e5a61"
NASTY = "Evil | title = with \\ backslash\nand a second line\r\nand =|\\ again"


def _event(**alert: object) -> dict:
    base = {"id": "da637|x=1", "title": NASTY, "severity": "High", "status": "New",
            "category": "Execution", "detectorId": "det|1", "computerDnsName": "pc=1.corp",
            "machineId": "m1", "rbacGroupName": "Servers | prod", "classification": None,
            "mitreTechniques": ["T1059", "T1059.001"], "lastUpdateTime":
            "2026-11-30T10:00:00.1234567Z", "firstEventTime": "2026-11-30T09:59:00Z",
            "incidentId": 42, "relatedUser": {"userName": "alice", "domainName": "corp"},
            "evidence": [{"entityType": "File", "fileName": "a=b|c.exe",
                          "filePath": "C:\\Temp\\x", "sha256": "ab" * 32},
                         {"entityType": "Process", "processCommandLine": "cmd /c \"a=b\"\n"}]}
    base.update(alert)
    return {"v": 1, "type": "alert", "event_id": f"{TENANT}:{base['id']}:v1",
            "tenant": TENANT, "tenant_name": "Contoso | Ltd = x", "alert_id": base["id"],
            "version": "2026-11-30T10:00:00.1234567Z", "change": "new", "changed": {},
            "alert": base}


def test_cef_round_trips_every_field_through_the_escaping():
    event = _event()
    line = format_cef(event)
    assert "\n" not in line and "\r" not in line
    header, ext = parse_cef(line)
    assert header == ["0", "Microsoft", "Defender for Endpoint", "1.0", "det|1",
                      NASTY.replace("\r\n", " ").replace("\n", " "), "8"]
    assert ext["msg"] == NASTY  # exact, line breaks included
    assert ext["externalId"] == "da637|x=1"
    assert ext["dhost"] == "pc=1.corp"
    assert ext["fname"] == "a=b|c.exe" and ext["filePath"] == "C:\\Temp\\x"
    assert ext["sproc"] == "cmd /c \"a=b\"\n"
    assert ext["duser"] == "alice" and ext["cn1"] == "42"
    assert ext["rt"] == str(int(datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()) * 1000 + 123)
    custom = labelled(ext)
    assert custom == {"TenantId": TENANT, "TenantName": "Contoso | Ltd = x",
                      "DeviceGroup": "Servers | prod", "MitreTechniques": "T1059,T1059.001",
                      "DedupeKey": event["event_id"], "IncidentId": "42"}
    assert "cs5" not in ext  # no classification: no empty key


@pytest.mark.parametrize("severity,number", [("High", "8"), ("Medium", "5"), ("Low", "3"),
                                             ("Informational", "2"), ("UnSpecified", "0")])
def test_cef_severity_maps_to_0_10(severity, number):
    assert parse_cef(format_cef(_event(severity=severity)))[0][6] == number


def test_syslog_frame_is_rfc5424_with_priority_from_severity():
    outputs = parse_outputs(json.dumps([{"name": "s", "type": "syslog", "host": "h",
                                         "facility": 4}]), {})
    frame = syslog_frame(outputs[0], _event(), "collector").decode()
    pri_version, stamp, host, app, procid, msgid, sd, rest = frame.split(" ", 7)
    assert (pri_version, host, app, procid, msgid, sd) == ("<34>1", "collector", "mssp-hub",
                                                           "-", "alert", "-")
    assert stamp.endswith("Z") and rest.startswith("CEF:0|")


def test_ecs_follows_the_field_map():
    doc = to_ecs(_event())
    assert doc["cloud"]["account"]["id"] == TENANT
    assert doc["host"]["hostname"] == "pc=1.corp"
    assert doc["message"] == NASTY
    assert doc["event"]["id"] == "da637|x=1" and doc["event"]["severity"] == 99
    assert doc["observer"]["vendor"] == "Microsoft"
    assert doc["threat"]["technique"]["id"] == ["T1059", "T1059.001"]
    assert doc["labels"]["dedupe_key"].startswith(TENANT)
    assert doc["@timestamp"] == "2026-11-30T10:00:00.123456Z"


def test_webhook_signature_is_hmac_over_timestamp_and_body():
    body = b'{"v":1}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k" * 16, "1700000000", body) == "v1=" + expected
    assert signature("k" * 16, "1700000001", body) != "v1=" + expected


def test_outputs_setting_parses_and_names_each_bad_field():
    env = {"SIEM_HEC_TOKEN": "tok", "SIEM_HOOK_B": "x" * 20}
    outputs = parse_outputs(json.dumps([
        {"name": "soc", "type": "syslog", "host": "10.0.0.5", "protocol": "tls",
         "min_severity": "Medium", "tenants": [TENANT.upper()]},
        {"name": "splunk", "type": "splunk_hec", "url": "https://splunk:8088/services/collector",
         "index": "defender", "channel": "11111111-2222-3333-4444-555555555555"},
        {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x",
         "secret_setting": "SIEM_HOOK_B", "format": "ecs"}]), env)
    assert [o.port for o in outputs] == [6514, 0, 0]
    assert outputs[0].tenants == {TENANT} and outputs[0].severities() == ("Medium", "High")
    assert outputs[0].wants("High", TENANT) and not outputs[0].wants("Low", TENANT)
    assert outputs[1].secret == "tok" and outputs[2].secret == "x" * 20
    assert "tok" not in repr(outputs[1])
    bad = [
        ('[{"name": "a", "type": "kafka"}]', "SIEM_OUTPUTS[0].type"),
        ('[{"name": "A b", "type": "syslog", "host": "h"}]', "SIEM_OUTPUTS[0].name"),
        ('[{"name": "a", "type": "syslog"}]', "SIEM_OUTPUTS[0].host"),
        ('[{"name": "a", "type": "syslog", "host": "h", "protocol": "sctp"}]',
         "SIEM_OUTPUTS[0].protocol"),
        ('[{"name": "a", "type": "webhook", "url": "http://example.com/"}]',
         "SIEM_OUTPUTS[0].url"),
        ('[{"name": "a", "type": "splunk_hec", "url": "https://s/", "secret_setting": '
         '"SIEM_MISSING"}]', "SIEM_MISSING"),
        ('[{"name": "a", "type": "webhook", "url": "https://s/", "secret_setting": '
         '"SIEM_HEC_TOKEN"}]', "SIEM_HEC_TOKEN"),  # too short for an HMAC key
        ('[{"name": "a", "type": "syslog", "host": "h", "min_severity": "Critical"}]',
         "SIEM_OUTPUTS[0].min_severity"),
        ('[{"name": "a", "type": "syslog", "host": "h", "tenants": ["x"]}]',
         "SIEM_OUTPUTS[0].tenants"),
        ('[{"name": "a", "type": "syslog", "host": "h", "colour": 1}]', "SIEM_OUTPUTS[0]"),
        ('{"name": "a"}', "SIEM_OUTPUTS"),
        ("not json", "SIEM_OUTPUTS"),
    ]
    for text, setting in bad:
        with pytest.raises(SettingsError) as info:
            parse_outputs(text, env)
        assert info.value.setting == setting, text


def test_pull_query_validation_names_the_field():
    for params, field in [({"tenant": "nope"}, "tenant"), ({"severity": "Critical"}, "severity"),
                          ({"status": "Open"}, "status"), ({"since": "yesterday"}, "since"),
                          ({"limit": "0"}, "limit"), ({"limit": "5000"}, "limit"),
                          ({"format": "xml"}, "format"), ({"colour": "red"}, "colour"),
                          ({"continuation": "!!!"}, "continuation"),
                          ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
                           "until")]:
        with pytest.raises(ValidationError) as info:
            parse_query(params)
        assert [e["field"] for e in info.value.errors] == [field], params


def test_a_token_only_works_with_the_filters_it_was_issued_for():
    query = parse_query({"severity": "High,Medium", "tenant": TENANT})
    assert query.filters == Filters(tenants=(TENANT,), severities=("High", "Medium"))
    token = encode_token(Position("2026113010", "x"), query.fingerprint())
    again = parse_query({"severity": "Medium,High", "tenant": TENANT, "continuation": token})
    assert again.position == Position("2026113010", "x")
    with pytest.raises(ValidationError) as info:
        parse_query({"severity": "High", "continuation": token})
    assert info.value.errors[0]["field"] == "continuation"
    assert parse_query({"format": "ndjson"}).ndjson
    assert parse_query({}, accept="application/x-ndjson").ndjson


NASTY_NAME = "Ann | O'Neil = lead\\ops\nsecond line"


def test_an_own_change_says_who_made_it_in_every_format_escaped():
    by = {"id": "oid=1|x", "name": NASTY_NAME, "via": "entra"}
    event = {**_event(), "change": "updated", "by": by}
    line = format_cef(event)
    assert "\n" not in line
    _, ext = parse_cef(line)
    assert (ext["suser"], ext["suid"]) == (NASTY_NAME, "oid=1|x")  # exact, round-tripped
    assert ext["duser"] == "alice"  # the alert's user stays the alert's
    labels = to_ecs(event)["labels"]
    assert (labels["changed_by"], labels["changed_by_id"], labels["changed_via"]) == (
        NASTY_NAME, "oid=1|x", "entra")
    json.loads(json.dumps(to_ecs(event), ensure_ascii=True))  # JSON escapes the rest
    hec = parse_outputs(json.dumps([{"name": "h", "type": "splunk_hec", "url":
                                     "https://hec.example/services/collector"}]),
                        {"SIEM_HEC_TOKEN": "t"})[0]
    assert document(hec, event)["by"] == by
    assert item({**event, "feed_time": None}).by == by


def test_a_customers_change_names_nobody():
    event = {**_event(), "change": "updated"}
    _, ext = parse_cef(format_cef(event))
    assert "suser" not in ext and "suid" not in ext
    assert "changed_by" not in to_ecs(event)["labels"]
    assert item(event).by is None
