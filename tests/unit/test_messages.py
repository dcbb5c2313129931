"""Queue message contracts: each type round-trips, every malformed variant is a BadMessage
naming what is wrong, the bytes producers wrote before still parse, and only
`shared/messages.py` writes a message's envelope."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path

import pytest

from shared.messages import (
    MESSAGE_TYPES,
    AlertBatch,
    AlertEvent,
    BadMessage,
    BulkTriageRequest,
    ChannelPost,
    DeliverRequest,
    FetchRequest,
    RelayRequest,
    TenantSeen,
    alert_events,
    batch_texts,
    relay_text,
    tenant_of,
)
from tests.conftest import ROOT

TENANT = "7f1c2a4e-1b2c-4d5e-8f90-123456789abc"
EVENT = AlertEvent(TENANT, "Contoso Café ✓", "da6380|1", "2026-11-30T10:00:00.1234567Z",
                   "updated", {"status": ["New", "InProgress"]},
                   {"id": "da6380|1", "title": 'Line\nbreak "q"', "severity": "High",
                    "incidentId": 42, "classification": None,
                    "evidence": [{"entityType": "File", "fileName": "ä.exe"}],
                    "evidenceCount": 1})
SAMPLES = [FetchRequest(TENANT), FetchRequest(TENANT, True, "budget"), RelayRequest(TENANT),
           FetchRequest(TENANT, seen=TenantSeen("Contoso Café ✓", "eu", 2, 'W/"etag"')),
           DeliverRequest("soc-syslog"), EVENT,
           replace(EVENT, by={"id": "oid-1", "name": "Ann ✓", "via": "entra"}),
           AlertBatch(TENANT, (EVENT, replace(EVENT, alert_id="b", event_id=""))),
           BulkTriageRequest("0123456789abcdef0123456789abcdef", TENANT),
           ChannelPost(TENANT, "0123456789abcdef0123456789abcdef", "soc ✓",
                       f"{EVENT.event_id}|channel:soc ✓", {"text": "<!channel> ✓"}, 2)]

# What the producers wrote before the contracts moved here (messages queued by an older
# deployment): each must still parse, and is still what the producer writes.
GOLDEN: list[tuple[str, object]] = [
    ('{"v": 1, "type": "fetch", "tenant": "7f1c2a4e-1b2c-4d5e-8f90-123456789abc", '
     '"continuation": false, "reason": "timer"}', FetchRequest(TENANT)),
    ('{"v": 1, "type": "fetch", "tenant": "7f1c2a4e-1b2c-4d5e-8f90-123456789abc", '
     '"continuation": true, "reason": "budget"}', FetchRequest(TENANT, True, "budget")),
    ('{"v": 1, "type": "relay", "tenant": "7f1c2a4e-1b2c-4d5e-8f90-123456789abc"}',
     RelayRequest(TENANT)),
    ('{"v": 1, "type": "deliver", "output": "soc-syslog"}', DeliverRequest("soc-syslog")),
    ('{"v":1,"type":"alert","event_id":"7f1c2a4e-1b2c-4d5e-8f90-123456789abc:da6380|1:'
     '2026-11-30T10:00:00.1234567Z","tenant":"7f1c2a4e-1b2c-4d5e-8f90-123456789abc",'
     '"tenant_name":"Contoso Café ✓","alert_id":"da6380|1",'
     '"version":"2026-11-30T10:00:00.1234567Z","change":"updated",'
     '"changed":{"status":["New","InProgress"]},"alert":{"id":"da6380|1",'
     '"title":"Line\\nbreak \\"q\\"","severity":"High","incidentId":42,'
     '"classification":null,"evidence":[{"entityType":"File","fileName":"ä.exe"}],'
     '"evidenceCount":1}}', EVENT),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_type_round_trips(message):
    kind = type(message)
    assert kind.parse(message.to_message()) == message
    assert kind.parse(message.to_message().encode()) == message  # the queue's bytes too
    wire = json.loads(message.to_message())
    assert wire == message.dump()
    assert (wire["v"], wire["type"]) == (1, kind.TYPE)
    with pytest.raises(FrozenInstanceError):
        setattr(message, fields(message)[0].name, "changed")


def test_every_message_type_has_its_own_tag():
    assert sorted(t.TYPE for t in MESSAGE_TYPES) == ["alert", "alerts", "bulk-triage",
                                                     "channel-post", "deliver", "fetch",
                                                     "relay"]


@pytest.mark.parametrize(("body", "message"), GOLDEN, ids=lambda g: str(g)[:20])
def test_messages_already_queued_still_parse_and_are_written_the_same(body, message):
    assert type(message).parse(body) == message
    assert type(message).parse(body.encode("utf-8")) == message
    assert message.to_message() == body  # byte for byte


def test_an_alert_event_is_measured_and_relayed_as_the_same_bytes():
    assert EVENT.to_bytes() == GOLDEN[-1][0].encode("utf-8")
    stored = json.loads(EVENT.to_bytes())  # as the relay reads it from the outbox
    assert relay_text(stored) == EVENT.to_message()


def test_the_relay_packs_events_into_as_few_messages_as_fit_and_they_read_back():
    events = [replace(EVENT, alert_id=f"a{n}", event_id="") for n in range(30)]
    texts = [relay_text(json.loads(e.to_bytes())) for e in events]
    size = max(len(t.encode()) for t in texts)
    packed = batch_texts(texts, limit=10 * (size + 1))
    assert len(packed) == 3
    assert all(len(t.encode()) <= 10 * (size + 1) + 100 for t in packed)  # + envelope
    assert [e for t in packed for e in alert_events(t)] == events  # all, in order
    assert AlertBatch.parse(packed[0]).tenant_id == TENANT
    assert tenant_of(packed[0]) == TENANT  # a poisoned batch is charged to its tenant
    lone = batch_texts(texts[:1])
    assert lone == texts[:1] and alert_events(lone[0]) == events[:1]  # stays an `alert`
    with pytest.raises(BadMessage, match="events is empty"):
        AlertBatch.parse(json.dumps({"v": 1, "type": "alerts", "tenant": TENANT,
                                     "events": []}))
    with pytest.raises(BadMessage, match="expected 'alert'"):
        alert_events(json.dumps({"v": 1, "type": "alerts", "tenant": TENANT,
                                 "events": [{"v": 1, "type": "fetch"}]}))


def test_event_id_is_derived_unless_the_message_carries_one():
    assert EVENT.event_id == f"{TENANT}:da6380|1:2026-11-30T10:00:00.1234567Z"
    test = AlertEvent(TENANT, "T", "a", "v", "new", {}, {}, event_id="test:1")
    assert AlertEvent.parse(test.to_message()).event_id == "test:1"


def test_a_channel_post_names_its_tenant_unless_its_rule_is_mssp_wide():
    post = ChannelPost(TENANT, "a" * 32, "soc", "k", {})
    assert tenant_of(post.to_message()) == TENANT
    assert tenant_of(replace(post, scope="*").to_message()) is None


def test_a_tenant_is_normalized_as_entra_writes_it():
    body = RelayRequest(TENANT.upper()).to_message()
    assert RelayRequest.parse(body).tenant_id == TENANT
    assert tenant_of(body) == TENANT and tenant_of("not json") is None


def _alert(**changes: object) -> str:
    data = EVENT.dump()
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not _DROP})


_DROP = object()
_FETCH = FetchRequest(TENANT).dump()


def _fetch(**changes: object) -> str:
    return json.dumps({k: v for k, v in {**_FETCH, **changes}.items() if v is not _DROP})


MALFORMED = [
    # the envelope, for every type
    *[(kind, body, reason) for kind in MESSAGE_TYPES for body, reason in [
        ("not json", "not JSON"), (b"\xff\xfe", "not JSON"), ("", "not JSON"),
        ("[]", "not a JSON object"), ('"fetch"', "not a JSON object"),
        ("{}", "version"), (f'{{"v": 2, "type": "{kind.TYPE}"}}', "v=2"),
        (f'{{"v": "1", "type": "{kind.TYPE}"}}', "v='1'"),
        ('{"v": 1, "type": "nope"}', "type='nope'"), ('{"v": 1}', "type=None")]],
    # the wrong type for the queue
    (FetchRequest, RelayRequest(TENANT).to_message(), "expected 'fetch'"),
    (RelayRequest, FetchRequest(TENANT).to_message(), "expected 'relay'"),
    (AlertEvent, DeliverRequest("x").to_message(), "expected 'alert'"),
    (DeliverRequest, EVENT.to_message(), "expected 'deliver'"),
    (BulkTriageRequest, FetchRequest(TENANT).to_message(), "expected 'bulk-triage'"),
    (BulkTriageRequest, json.dumps({"v": 1, "type": "bulk-triage", "job": "../x",
                                    "tenant": TENANT}), "job is not a job id"),
    (BulkTriageRequest, json.dumps({"v": 1, "type": "bulk-triage", "job": "a" * 32}),
     "tenant is not a GUID"),
    (ChannelPost, EVENT.to_message(), "expected 'channel-post'"),
    (ChannelPost, json.dumps({"v": 1, "type": "channel-post", "scope": "*", "rule": "../x",
                              "channel": "c", "key": "k", "payload": {}}),
     "rule is not a rule id"),
    (ChannelPost, json.dumps({"v": 1, "type": "channel-post", "scope": "*", "rule": "a" * 32,
                              "channel": "c", "key": "k", "payload": []}),
     "payload is not a JSON object"),
    (ChannelPost, json.dumps({"v": 1, "type": "channel-post", "scope": "*", "rule": "a" * 32,
                              "channel": "c", "key": "k", "payload": {}, "deferrals": -1}),
     "deferrals is not a count"),
    # fields
    (FetchRequest, _fetch(tenant="nope"), "tenant is not a GUID"),
    (FetchRequest, _fetch(tenant=_DROP), "tenant is not a GUID"),
    (FetchRequest, _fetch(tenant=42), "tenant is not a GUID"),
    (FetchRequest, _fetch(continuation="yes"), "continuation is not a boolean"),
    (FetchRequest, _fetch(seen="x"), "seen is not a JSON object"),
    (FetchRequest, _fetch(seen={"name": "C"}), "etag is missing"),
    (FetchRequest, _fetch(seen={"name": "C", "etag": "e", "failures": "2"}),
     "seen.failures is not a number"),
    (FetchRequest, _fetch(reason=7), "reason is not a string"),
    (RelayRequest, '{"v": 1, "type": "relay", "tenant": "x"}', "tenant is not a GUID"),
    (RelayRequest, '{"v": 1, "type": "relay"}', "tenant is not a GUID"),
    (DeliverRequest, '{"v": 1, "type": "deliver"}', "output is missing"),
    (DeliverRequest, '{"v": 1, "type": "deliver", "output": ["x"]}', "output is not a string"),
    (AlertEvent, _alert(tenant="nope"), "tenant is not a GUID"),
    *[(AlertEvent, _alert(**{name: _DROP}), f"{name} is missing")
      for name in ("event_id", "tenant_name", "alert_id", "version", "change", "changed",
                   "alert")],
    *[(AlertEvent, _alert(**{name: value}), f"{name} is not {kind}")
      for name, value, kind in (("event_id", 1, "a string"), ("tenant_name", None, "a string"),
                                ("alert_id", 5, "a string"), ("version", [], "a string"),
                                ("change", True, "a string"), ("changed", [], "a JSON object"),
                                ("alert", "x", "a JSON object"))],
    *[(AlertEvent, _alert(by=value), "by is not an object of strings with an id")
      for value in ("Ann", {"name": "Ann"}, {"id": 7}, {"id": "oid", "name": None})],
]


@pytest.mark.parametrize(("kind", "body", "reason"), MALFORMED,
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v)[:30])
def test_a_malformed_message_is_a_bad_message_naming_what_is_wrong(kind, body, reason):
    with pytest.raises(BadMessage) as caught:
        kind.parse(body)
    assert reason in str(caught.value)


def test_an_event_says_who_changed_it_only_when_the_mssp_did():
    """`by` is optional: an event without it (the customer's change, or one queued
    before it existed) is written and read as before; one with it round-trips."""
    assert "by" not in EVENT.dump()
    assert AlertEvent.parse(EVENT.to_message()).by is None
    own = replace(EVENT, by={"id": "oid-1", "name": "Ann", "via": "key"})
    assert AlertEvent.parse(own.to_message()) == own
    assert AlertEvent.parse(own.to_bytes()).by == {"id": "oid-1", "name": "Ann",
                                                   "via": "key"}
    assert own.event_id == EVENT.event_id  # the same version is the same event


def test_optional_fields_keep_their_old_defaults():
    """A fetch message without continuation or reason was always accepted."""
    assert FetchRequest.parse(_fetch(continuation=_DROP, reason=_DROP)) == \
        FetchRequest(TENANT, False, "")


def test_a_deliver_message_that_is_not_one_is_a_bad_message():
    """(from the SIEM format tests, where the deliver message used to live)"""
    assert DeliverRequest.parse(DeliverRequest("soc-syslog").to_message()).output == "soc-syslog"
    for body in ("not json", "[]", '{"v": 2, "type": "deliver", "output": "x"}',
                 '{"v": 1, "type": "fetch", "output": "x"}', '{"v": 1, "type": "deliver"}'):
        with pytest.raises(BadMessage):
            DeliverRequest.parse(body)


_ENVELOPE_TEXT = re.compile(r"""\\?["']v\\?["']\s*:\s*\d+\s*,\s*\\?["']type\\?["']""")


def _envelopes(path: Path) -> list[int]:
    """Lines where a dict literal or dict(...) call has both a "v" and a "type" key, or a
    string spells out a message's JSON envelope."""
    text = path.read_text(encoding="utf-8")
    found = [text.count("\n", 0, m.start()) + 1 for m in _ENVELOPE_TEXT.finditer(text)]
    for node in ast.walk(ast.parse(text)):
        keys: set[object] = set()
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            keys = {k.arg for k in node.keywords}
        if {"v", "type"} <= keys:
            found.append(node.lineno)
    return sorted(set(found))


def test_only_the_messages_module_writes_a_message_envelope():
    """A queue message built by hand elsewhere would drift from the contract (and its
    version) unseen: every producer goes through `shared/messages.py`."""
    offenders = {}
    for folder in ("shared", "functions"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "shared" / "messages.py":
                continue
            if lines := _envelopes(path):
                offenders[str(path.relative_to(ROOT))] = lines
    assert offenders == {}
    assert _envelopes(ROOT / "shared" / "messages.py")  # the check does see one


def test_the_envelope_check_sees_hand_built_messages(tmp_path):
    sample = tmp_path / "producer.py"
    sample.write_text('a = {"v": 1, "type": "fetch", "tenant": t}\n'
                      'b = dict(v=1, type="relay")\n'
                      "c = '{\"v\": 1, \"type\": \"deliver\"}'\n"
                      'd = {"v": 1, "events": []}\n', encoding="utf-8")
    assert _envelopes(sample) == [1, 2, 3]
