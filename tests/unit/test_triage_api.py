"""The keyed triage API's parts without a host: named keys, the PATCH request checked
field by field, outcomes to statuses, the audit query string, and the client's retries
of writes."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError

from shared.config import SettingsError, _api_keys
from shared.microsoft.defender import DefenderClient
from shared.triage import api
from shared.triage.model import Actor, AuditEntry
from shared.triage.service import Applied
from shared.validation import ValidationError

SOAR = Actor("soar", "soar", "api")


def _keys(*pairs: tuple[str, str]):
    return _api_keys({"MSSP_API_KEYS": ",".join(
        f"{name}:{hashlib.sha256(key.encode()).hexdigest()}" for name, key in pairs)})


def test_a_presented_key_is_its_name_or_nobody():
    keys = _keys(("soar", "k-soar-0123456789"), ("report.bot", "k-report-0123456789"))
    assert api.api_actor(keys, "k-soar-0123456789") == SOAR
    assert api.api_actor(keys, "k-report-0123456789").name == "report.bot"
    for wrong in (None, "", "k-soar", "x" * 5000, "\ud800"):
        assert api.api_actor(keys, wrong) is None
    assert api.api_actor((), "k-soar-0123456789") is None
    assert "sha256" not in repr(keys[0]) and hashlib.sha256(
        b"k-soar-0123456789").hexdigest() not in repr(keys)


@pytest.mark.parametrize("value", ["soar", "soar:abc", ":" + "a" * 64, "a b:" + "a" * 64,
                                   f"x:{'a' * 64},x:{'b' * 64}"])
def test_bad_key_settings_are_refused_by_name(value):
    with pytest.raises(SettingsError, match="MSSP_API_KEYS"):
        _api_keys({"MSSP_API_KEYS": value})


@pytest.mark.parametrize(("body", "headers", "field"), [
    ({"classification": "FalsePositive", "determination": "Malware"}, {}, "determination"),
    ({"determination": "Malware"}, {}, "determination"),
    ({"status": "Closed"}, {}, "status"),
    ({"assignedTo": ""}, {}, "assignedTo"),
    ({"comment": "x" * 1001}, {}, "comment"),
    ({"comment": "   "}, {}, "comment"),
    ({"severity": "Low"}, {}, "severity"),
    (None, {}, "body"),
    ({"status": "New"}, {"If-Match": "yesterday"}, "If-Match"),
    ({"status": "New"}, {"Idempotency-Key": "has space"}, "Idempotency-Key"),
    ({"status": "New"}, {"Idempotency-Key": "k" * 201}, "Idempotency-Key"),
])
def test_a_bad_request_names_its_field(body, headers, field):
    with pytest.raises(ValidationError) as raised:
        api.request_of(body, headers, SOAR)
    assert field in {e["field"] for e in raised.value.errors}


def test_a_good_request_and_its_action_id():
    change, seen, action = api.request_of(
        {"status": "Resolved", "classification": "TruePositive",
         "determination": "CompromisedAccount", "comment": "=1+1 <x>"},
        {"If-Match": '"2026-12-03T08:00:00.12Z"', "Idempotency-Key": "run-1"}, SOAR)
    assert change.body() == {"status": "Resolved", "classification": "TruePositive",
                             "determination": "CompromisedAccount", "comment": "=1+1 <x>"}
    assert seen == "2026-12-03T08:00:00.1200000Z"
    assert action == "api:soar:run-1"  # namespaced: another key's run-1 is another action
    assert api.request_of({"status": "New"}, {}, SOAR)[2] != api.request_of(
        {"status": "New"}, {}, SOAR)[2]


def test_route_values_are_checked():
    tenant = str(uuid.uuid4())
    assert api.target(tenant.upper(), "da63_1-x") == (tenant, "da63_1-x")
    with pytest.raises(ValidationError) as raised:
        api.target("nope", "a/b")
    assert {e["field"] for e in raised.value.errors} == {"tenant_id", "alert_id"}


def _applied(outcome: str, detail: str = "", retry_after: int | None = None) -> Applied:
    entry = AuditEntry("a1", datetime.now(UTC), SOAR, str(uuid.uuid4()), "da1", {}, {}, {},
                       outcome, detail)
    return Applied(outcome, {"id": "da1"}, detail, entry, retry_after)


@pytest.mark.parametrize(("outcome", "detail", "status"), [
    ("done", "200 OK", 200), ("conflict", "changed", 412), ("refused", "read only", 403),
    ("failed", "404: not found in Defender", 404), ("failed", "400: bad", 502),
    ("failed", "503: down", 502)])
def test_outcomes_answer_their_status(outcome, detail, status):
    got, reply, headers = api.answer(_applied(outcome, detail))
    assert (got, reply.outcome, reply.detail, headers) == (status, outcome, detail, {})


def test_throttled_says_when_to_retry():
    status, reply, headers = api.answer(_applied("throttled", "429", 30))
    assert (status, reply.retry_after, headers) == (429, 30, {"Retry-After": "30"})


def test_the_audit_query_string():
    tenant = str(uuid.uuid4())
    query = api.audit_query({"tenant": tenant, "actor": "soar", "outcome": "done",
                             "since": "2026-12-01T00:00:00Z", "limit": "10", "code": "k"})
    assert query == {"tenant_id": tenant, "actor_id": "soar", "outcome": "done",
                     "since": datetime(2026, 12, 1, tzinfo=UTC), "until": None,
                     "continuation": None, "limit": 10}
    with pytest.raises(ValidationError) as raised:
        api.audit_query({"outcome": "maybe", "other": "1"})
    assert {e["field"] for e in raised.value.errors} == {"outcome", "other"}
    with pytest.raises(ValidationError) as raised:
        api.audit_query({"since": "x", "until": "2026-01-01T00:00:00Z", "limit": "201"})
    assert {e["field"] for e in raised.value.errors} == {"since", "limit"}
    with pytest.raises(ValidationError) as raised:
        api.audit_query({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert raised.value.errors == [{"field": "until", "message": "is before since"}]


def test_writes_are_retried_only_when_the_request_was_never_sent():
    retry = DefenderClient(10).session.get_adapter("https://x").max_retries
    for method in ("PATCH", "POST"):
        assert not retry.is_retry(method, 503) and not retry.is_retry(method, 500)
        with pytest.raises(ProtocolError):  # sent, then the connection broke: not again
            retry.increment(method, "/api/alerts/x", error=ProtocolError("reset"))
        again = retry.increment(method, "/api/alerts/x",  # never sent: may go again
                                error=NewConnectionError(None, "refused"))
        assert again.connect == retry.connect - 1
    assert retry.is_retry("GET", 503)
