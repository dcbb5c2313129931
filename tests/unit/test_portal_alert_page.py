"""The alert page, its action forms and the audit page, on the in-memory fakes: what is
read (keyed by the alert), what hostile alert text becomes (text), which pairs the
classify form offers, who may act, and what each outcome of the triage service shows.

The triage service and the audit trail are fakes written against the WRITE slice's
signatures (TriageService.apply, AuditTrail.page/for_alert)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from types import SimpleNamespace
from typing import Any

import pytest

from shared.messages import AlertEvent
from shared.model import Tenant
from shared.portal import alert_page, auth, triage_forms
from shared.portal.audit_page import AuditFilter
from shared.portal.pages import Portal, Request
from shared.storage.alert_index import entry_of
from shared.storage.alert_rows import alert_rows
from shared.storage.mail_outbox import KeptEmail
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.memory.ingest import MemoryAlerts, MemoryRuns
from shared.storage.memory.notify import MemoryMailOutbox, MemoryRules
from shared.storage.memory.siem import MemorySiemFeed
from shared.storage.memory.tenants import MemoryTenantData, MemoryTenants
from shared.tenants.admin import TenantAdmin
from shared.triage.model import DETERMINATIONS, Actor, AuditEntry, Change, InvalidChange
from tests.helpers import settings

PUBLIC = "http://127.0.0.1:7071"
HOST = "127.0.0.1:7071"
KEY = "local-key-0123456789"
GROUP, ACTORS = "g-portal", "g-actors"
TENANT = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
ALERT = "da638000000000000000_123"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
VERSION = "2026-12-03T07:00:00.0000000Z"


def _alert(**fields: Any) -> dict[str, Any]:
    return {"id": ALERT, "title": HOSTILE, "description": f"desc {HOSTILE}",
            "recommendedAction": "Isolate the device", "severity": "High", "status": "New",
            "classification": None, "determination": None, "assignedTo": None,
            "category": "Execution", "detectionSource": "EDR",
            "computerDnsName": "pc1.contoso.example", "rbacGroupName": "Servers",
            "relatedUser": {"userName": "ana", "domainName": "CONTOSO"},
            "mitreTechniques": ["T1059.001", "T1105"],
            "firstEventTime": "2026-12-03T06:00:00Z", "lastEventTime": "2026-12-03T06:30:00Z",
            "alertCreationTime": "2026-12-03T06:31:00.0000000Z", "lastUpdateTime": VERSION,
            "comments": [{"comment": f"seen {HOSTILE}", "createdBy": "bob@x",
                          "createdTime": "2026-12-03T06:40:00Z"}],
            "evidence": [
                {"entityType": "File", "fileName": "evil.exe", "filePath": "C:\\Temp",
                 "sha1": "a" * 40, "sha256": "b" * 64, "detectionStatus": "Blocked"},
                {"entityType": "Process", "processCommandLine": f"powershell {HOSTILE}"},
                {"entityType": "Url", "url": "javascript:alert(3)"},
                {"entityType": "Ip", "ipAddress": "185.1.2.3"},
                {"entityType": "User", "accountName": "ana", "domainName": "CONTOSO"}],
            **fields}


@dataclass
class FakeApplied:
    outcome: str
    alert: dict[str, Any] | None
    detail: str = ""
    entry: Any = None


@dataclass
class FakeTriage:
    """TriageService.apply's signature; answers what `answer` says and records calls."""

    answer: str = "done"
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    alert: dict[str, Any] = field(default_factory=dict)

    def apply(self, actor: Actor, tenant_id: str, alert_id: str, change: Change, *,
              seen_version: str, action_id: str) -> FakeApplied:
        self.calls.append((actor, tenant_id, alert_id, change, seen_version, action_id))
        if self.answer == "done":
            return FakeApplied("done", {**self.alert, **change.fields(),
                                        "lastUpdateTime": "2026-12-03T08:00:00.0000000Z"})
        if self.answer == "conflict":
            return FakeApplied("conflict", {**self.alert, "status": "InProgress",
                                            "assignedTo": "someone@else"}, "changed")
        if self.answer == "throttled":
            entry = AuditEntry("x", datetime.now(UTC), actor, tenant_id, alert_id, {}, {}, {},
                               "throttled", "429", extra={"retry_after": "08:01:00 UTC"})
            return FakeApplied("throttled", None, "429 Too Many Requests", entry)
        return FakeApplied(self.answer, None, "the tenant granted read-only access")


class FakeAudit:
    """AuditTrail.page / for_alert over a list, newest first."""

    def __init__(self, entries: list[AuditEntry]) -> None:
        self.entries = sorted(entries, key=lambda e: e.at, reverse=True)
        self.asked: list[dict[str, Any]] = []

    def page(self, tenant_id=None, actor_id=None, outcome=None, since=None, until=None,
             continuation=None, limit=50):
        self.asked.append({"tenant_id": tenant_id, "actor_id": actor_id, "outcome": outcome,
                               "since": since, "until": until, "continuation": continuation})
        found = [e for e in self.entries if (not tenant_id or e.tenant_id == tenant_id)
                 and (not actor_id or e.actor.id == actor_id)
                 and (not outcome or e.outcome == outcome)
                 and (not since or e.at >= since) and (not until or e.at < until)]
        start = int(continuation or 0)
        rest = found[start:start + limit]
        return rest, str(start + limit) if start + limit < len(found) else None

    def for_alert(self, tenant_id, alert_id):
        return [e for e in self.entries if (e.tenant_id, e.alert_id) == (tenant_id, alert_id)]


class Desk:
    def __init__(self, access: str = "triage", triage: FakeTriage | None = None,
                 audit: FakeAudit | None = None, source: str = "mde",
                 incidents: Any = None, **env: str) -> None:
        env = {"MSSP_DEFENDER_API_BASE": "https://127.0.0.1:8443", **env}  # the simulator
        self.settings = settings(PUBLIC_BASE_URL=PUBLIC, PORTAL_KEY=KEY,
                                 PORTAL_ALLOWED_GROUPS=f"{GROUP},{ACTORS}", **env)
        self.tenants = MemoryTenants()
        self.tenants.add(Tenant(TENANT, "Contoso <b>", access=access, source=source,
                                access_reason="granted Alert.Read.All only"
                                if access == "read" else ""))
        self.alerts, self.outbox, self.feed = MemoryAlerts(), MemoryMailOutbox(), \
            MemorySiemFeed()
        self.alerts.store(alert_rows(TENANT, _alert()))
        self.triage = triage if triage is not None else FakeTriage(alert=_alert())
        self.audit = audit
        self.portal = Portal(self.settings, TenantAdmin(self.tenants, MemoryTenantData()),
                             MemoryRules(), self.outbox,
                             SimpleNamespace(list_invitations=list, link=str,
                                             why_not_triage=lambda: ""), None,
                             self.alerts, MemoryRuns(),
                             alert_index=MemoryAlertIndex(), feed=self.feed,
                             triage=self.triage, audit=audit, incidents=incidents)

    def headers(self, who: str = "key", **extra: str) -> dict[str, str]:
        headers = {"host": HOST, **extra}
        if who == "key":
            headers[auth.KEY_HEADER] = KEY
        else:
            claims = [{"typ": "preferred_username", "val": f"{who}@mssp.example"},
                      {"typ": "oid", "val": f"oid-{who}"},
                      {"typ": "groups", "val": GROUP}]
            if who == "actor":
                claims.append({"typ": "groups", "val": ACTORS})
            headers[auth.PRINCIPAL_HEADER] = base64.b64encode(
                json.dumps({"claims": claims}).encode()).decode()
        return headers

    def get(self, who: str = "key", alert_id: str = ALERT):
        return self.portal.alert(Request("GET", self.headers(who), route={
            "tenant_id": TENANT, "alert_id": alert_id}))

    def form(self, page_body: str, form_id: str) -> dict[str, str]:
        """The hidden fields of a form as rendered."""
        found = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page_body, re.S)
        assert found, form_id
        return {n: unescape(v) for n, v in re.findall(
            r'type="hidden" name="(\w+)" value="([^"]*)"', found.group(0))}

    def post(self, action: str, fields: dict[str, str], who: str = "key"):
        principal = auth.authenticate(self.settings.portal, self.headers(who))
        token = auth.csrf_token(self.settings.portal, principal)
        return self.portal.alert_action(Request(
            "POST", self.headers(who, origin=PUBLIC),
            route={"tenant_id": TENANT, "alert_id": ALERT, "action": action},
            form={**fields, "csrf": token}))


# the page ----------------------------------------------------------------------------

def test_the_page_shows_what_an_analyst_reads_and_hostile_text_stays_text():
    desk = Desk()
    event = AlertEvent(TENANT, "Contoso", ALERT, VERSION, "updated",
                       {"status": ["New", "InProgress"]}, _alert())
    desk.feed.put_entry(event, int(datetime(2026, 12, 3, 7, 5, tzinfo=UTC).timestamp() * 1e6))
    desk.feed.stamp_once(event, int(datetime(2026, 12, 3, 7, 5, tzinfo=UTC).timestamp() * 1e6))
    desk.outbox.keep(KeptEmail(TENANT, datetime.now(UTC), "sent", f"[High] {HOSTILE}",
                               "soc@mssp.example", "", "rule1", alerts=[(TENANT, ALERT)]))
    page = desk.get()
    assert page.status == 200
    body = page.body
    assert "<script>" not in body and "<img" not in body
    assert body.count("&lt;script&gt;") >= 4  # title, description, comment, evidence, email
    for text in ("Isolate the device", "T1059.001, T1105", "pc1.contoso.example",
                 "CONTOSO\\ana", "C:\\Temp\\evil.exe", "a" * 40, "b" * 64, "185.1.2.3",
                 "Blocked", "2026-12-03T06:00:00Z", "2026-12-03T06:30:00Z"):
        assert text in unescape(body), text
    assert 'href="javascript' not in body and "javascript:alert(3)" in body  # as text
    versions = re.search(r'<table id="versions">.*?</table>', body, re.S).group(0)
    assert VERSION in versions and "status: New → InProgress" in unescape(versions)
    assert "2026-12-03T07:05:00Z" in versions
    assert "soc@mssp.example" in re.search(r'id="alert-emails".*?</table>', body, re.S)[0]
    # locally the Defender API is the simulator: no dead link, the address as text
    assert 'id="defender-link"' not in body and "local simulator" in body
    assert "Contoso &lt;b&gt;" in body


def test_the_defender_link_is_a_link_when_defender_is_real():
    desk = Desk(MSSP_DEFENDER_API_BASE="https://api.securitycenter.microsoft.com")
    body = desk.get().body
    link = re.search(r'<a id="defender-link" href="([^"]+)"', body).group(1)
    assert unescape(link) == f"https://security.microsoft.com/alerts/{ALERT}?tid={TENANT}"


def test_an_unknown_alert_or_tenant_is_404():
    desk = Desk()
    assert desk.get(alert_id="da-nope").status == 404
    response = desk.portal.alert(Request("GET", desk.headers(), route={
        "tenant_id": str(uuid.uuid4()), "alert_id": ALERT}))
    assert response.status == 404


def test_the_classify_form_offers_only_valid_pairs_in_a_group_per_classification():
    body = Desk().get().body
    select = re.search(r'<select name="verdict".*?</select>', body, re.S).group(0)
    groups = re.findall(r'<optgroup label="(\w+)">(.*?)</optgroup>', select, re.S)
    assert [g for g, _ in groups] == list(DETERMINATIONS)
    for classification, options in groups:
        values = re.findall(r'value="([^"]+)"', options)
        assert values == [f"{classification}/{d}" for d in DETERMINATIONS[classification]]


def test_version_days_go_back_to_creation_no_further_than_the_feed_keeps():
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    alert = {"alertCreationTime": "2026-12-01T10:00:00Z",
             "lastUpdateTime": "2026-12-03T07:00:00Z"}
    assert alert_page.version_days(alert, 7, now) == ["20261203", "20261202", "20261201"]
    old = {**alert, "alertCreationTime": "2026-01-01T00:00:00Z"}
    assert len(alert_page.version_days(old, 7, now)) == 9  # retention + 2 at most
    assert alert_page.version_days({}, 7, now) == ["20261203"]


# the forms ---------------------------------------------------------------------------

def test_forms_carry_csrf_the_version_and_a_nonce_and_resolve_as_false_positive():
    desk = Desk()
    body = desk.get().body
    fields = desk.form(body, "classify-form")
    assert fields["seen_version"] == VERSION and fields["csrf"] and fields["nonce"]
    response = desk.post("classify", {**fields, "verdict": "FalsePositive/NotMalicious",
                                      "resolve": "yes", "comment": "benign admin tool"})
    assert response.status == 200
    (actor, tenant_id, alert_id, change, seen, action_id), = desk.triage.calls
    assert (tenant_id, alert_id, seen) == (TENANT, ALERT, VERSION)
    assert actor == Actor("local-key", "local portal key", "key")
    assert change == Change(status="Resolved", classification="FalsePositive",
                            determination="NotMalicious", comment="benign admin tool")
    # the new state at once, as Defender answered
    assert re.search(r'id="a-status">Resolved<', response.body)
    assert re.search(r'id="a-determination">NotMalicious<', response.body)
    assert 'id="outcome"' in response.body and "Done" in response.body
    # the same form sent twice is the same action
    desk.post("classify", {**fields, "verdict": "FalsePositive/NotMalicious"})
    assert desk.triage.calls[1][5] == action_id
    # another form of the same page is another action
    desk.post("comment", {**desk.form(body, "comment-form"), "comment": "more"})
    assert desk.triage.calls[2][5] != action_id
    # another render is another action
    again = desk.form(desk.get().body, "classify-form")
    desk.post("classify", {**again, "verdict": "FalsePositive/NotMalicious"})
    assert desk.triage.calls[3][5] not in (action_id, desk.triage.calls[2][5])


def test_assign_to_me_is_the_principals_name_or_to_an_address():
    desk = Desk()
    fields = desk.form(desk.get("actor").body, "assign-form")
    desk.post("assign", {**fields, "assign_to": "me"}, who="actor")
    desk.post("assign", {**fields, "assign_to": "address", "address": "lead@mssp.example"},
              who="actor")
    assert [c[3].assigned_to for c in desk.triage.calls] == ["actor@mssp.example",
                                                             "lead@mssp.example"]
    assert desk.triage.calls[0][0] == Actor("oid-actor", "actor@mssp.example", "entra")


@pytest.mark.parametrize(("action", "fields", "field_name"), [
    ("classify", {"verdict": "FalsePositive/Malware"}, "determination"),
    ("classify", {"verdict": "Nope/Other"}, "classification"),
    ("status", {"status": "Closed"}, "status"),
    ("comment", {"comment": "   "}, "comment"),
    ("assign", {"assign_to": "address", "address": ""}, "assignedTo"),
    ("classify", {"verdict": "TruePositive/Malware", "nonce": "x"}, "nonce"),
    ("classify", {"verdict": "TruePositive/Malware", "seen_version": "<b>"}, "seen_version"),
])
def test_a_bad_form_is_refused_before_any_call(action, fields, field_name):
    desk = Desk()
    hidden = desk.form(desk.get().body, f"{action}-form")
    response = desk.post(action, {**hidden, **fields})
    assert response.status == 400 and f"Not sent ({field_name})" in response.body
    assert desk.triage.calls == []


def test_an_action_on_an_alert_the_hub_does_not_store_is_404_without_a_call():
    desk = Desk()
    hidden = desk.form(desk.get().body, "comment-form")
    principal = auth.authenticate(desk.settings.portal, desk.headers())
    response = desk.portal.alert_action(Request(
        "POST", desk.headers(origin=PUBLIC),
        route={"tenant_id": TENANT, "alert_id": "da-unknown", "action": "comment"},
        form={**hidden, "comment": "hi", "csrf": auth.csrf_token(desk.settings.portal,
                                                                 principal)}))
    assert response.status == 404 and desk.triage.calls == []


def test_a_post_without_csrf_or_from_elsewhere_is_refused():
    desk = Desk()
    hidden = desk.form(desk.get().body, "comment-form")
    forged = desk.portal.alert_action(Request(
        "POST", desk.headers(origin="https://evil.example"),
        route={"tenant_id": TENANT, "alert_id": ALERT, "action": "comment"},
        form={**hidden, "comment": "hi"}))
    assert forged.status == 403
    no_token = desk.portal.alert_action(Request(
        "POST", desk.headers(origin=PUBLIC),
        route={"tenant_id": TENANT, "alert_id": ALERT, "action": "comment"},
        form={**hidden, "csrf": "", "comment": "hi"}))
    assert no_token.status == 403 and desk.triage.calls == []


@pytest.mark.parametrize(("answer", "status", "says"), [
    ("conflict", 409, "changed in Defender since you opened it"),
    ("refused", 403, "read-only access"),
    ("throttled", 429, "Try again after 08:01:00 UTC"),
    ("failed", 502, "Failed"),
])
def test_each_outcome_is_shown(answer, status, says):
    desk = Desk(triage=FakeTriage(answer=answer, alert=_alert()))
    hidden = desk.form(desk.get().body, "status-form")
    response = desk.post("status", {**hidden, "status": "Resolved"})
    assert response.status == status and says in response.body
    if answer == "conflict":  # the new state, nothing overwritten
        assert re.search(r'id="a-status">InProgress<', response.body)
        assert "someone@else" in response.body


def test_a_read_only_tenant_shows_the_forms_disabled_with_the_reason_and_re_consent():
    desk = Desk(access="read")
    body = desk.get().body
    assert re.search(r'<fieldset id="actions" class="actions" disabled>', body)
    assert "read-only access (granted Alert.Read.All only)" in body
    assert f"/tenants/{TENANT}#reconsent-box" in body


def test_when_actions_are_kept_to_groups_others_see_them_disabled_and_a_post_is_403():
    desk = Desk(PORTAL_ACTION_GROUPS=ACTORS)
    looker = desk.get("looker").body
    assert re.search(r'id="actions" class="actions" disabled', looker)
    assert "read-only analyst" in looker
    hidden = desk.form(looker, "comment-form")
    assert desk.post("comment", {**hidden, "comment": "hi"}, who="looker").status == 403
    assert desk.triage.calls == []
    assert 'id="actions" class="actions">' in desk.get("actor").body
    assert 'id="actions" class="actions">' in desk.get("key").body  # the local key may
    assert desk.post("comment", {**hidden, "comment": "hi"}, who="key").status == 200


def test_may_act_follows_the_settings():
    cfg = settings(PORTAL_ACTION_ROLES="Alerts.Triage").portal
    assert auth.Principal("a", "a", "entra", roles=frozenset({"Alerts.Triage"})).may_act(cfg)
    assert not auth.Principal("b", "b", "entra", groups=frozenset({"x"})).may_act(cfg)
    assert auth.Principal("k", "k", "key").may_act(cfg)
    assert auth.Principal("c", "c", "entra").may_act(settings().portal)  # none set: anyone


def test_change_from_form_is_validated_again_server_side():
    who = auth.Principal("p", "pat@x", "entra")
    with pytest.raises(InvalidChange):
        triage_forms.change_from_form("classify", {"verdict": "TruePositive/Clean"}, who)
    with pytest.raises(InvalidChange):
        triage_forms.change_from_form("delete", {}, who)
    assert triage_forms.change_from_form(
        "classify", {"verdict": "InformationalExpectedActivity/SecurityTesting"}, who) == \
        Change(classification="InformationalExpectedActivity",
               determination="SecurityTesting")


# the audit page and the alert page's audit ------------------------------------------------

def _entry(n: int, outcome: str = "done", actor: str = "oid-ana", tenant: str = TENANT,
           alert: str = ALERT) -> AuditEntry:
    return AuditEntry(f"act-{n}", datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=n),
                      Actor(actor, f"{actor} <name>", "entra"), tenant, alert,
                      {"status": "Resolved"}, {"status": "New"}, {"status": "Resolved"},
                      outcome, f"200 OK {HOSTILE}")


def test_the_audit_page_filters_and_pages_from_its_keyset():
    entries = [_entry(n, "done" if n % 2 else "conflict") for n in range(60)]
    entries.append(_entry(99, actor="oid-bob", alert="da-other"))
    desk = Desk(audit=FakeAudit(entries))
    first = desk.portal.audit(Request("GET", desk.headers()))
    assert first.status == 200 and first.body.count("<tr data-action=") == 50
    assert "<script>" not in first.body and "oid-ana &lt;name&gt;" in first.body
    older = re.search(r'<a href="([^"]+)" id="older">', first.body).group(1)
    assert "continuation=50" in unescape(older)
    response = desk.portal.audit(Request("GET", desk.headers(), params={
        "tenant": TENANT, "analyst": "oid-bob", "outcome": "done", "since": "2026-12-01",
        "until": "2026-12-05"}))
    assert response.body.count("<tr data-action=") == 1
    asked = desk.audit.asked[-1]
    assert asked["tenant_id"] == TENANT and asked["actor_id"] == "oid-bob"
    assert asked["until"] == datetime(2026, 12, 6, tzinfo=UTC)  # the whole last day
    assert alert_page.page_path("/api/portal", TENANT, "da-other") in response.body
    # the alert page shows its own entries
    body = desk.get().body
    audit = re.search(r'id="alert-audit".*?</table>', body, re.S).group(0)
    assert audit.count("<tr><td>") == 60 and "da-other" not in audit


def test_audit_filters_ignore_unknown_values():
    flt = AuditFilter.parse({"tenant": "nope", "outcome": "deleted", "since": "yesterday",
                             "until": "2026-13-01", "analyst": " x "}, {TENANT})
    assert flt == AuditFilter(analyst="x")
    assert flt.query()["since"] is None and flt.query()["tenant_id"] is None



def test_the_tenant_page_and_the_alerts_list_link_to_the_alert_page():
    desk = Desk()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    desk.portal.alert_index.put([entry_of(alert_rows(TENANT, _alert(lastUpdateTime=now))[0])])
    page = f'href="/api/portal/tenants/{TENANT}/alerts/{ALERT}"'
    listed = desk.portal.alerts(Request("GET", desk.headers()))
    assert page in listed.body and "<script>" not in listed.body
    tenant = desk.portal.tenant(Request("GET", desk.headers(), route={"tenant_id": TENANT}))
    assert page in tenant.body and "<script>" not in tenant.body


def test_a_read_only_analyst_gets_no_bulk_form_and_a_bulk_post_is_403():
    desk = Desk(PORTAL_ACTION_GROUPS=ACTORS)
    desk.portal.bulk = object()  # wired: the form shows only to those who may act
    looker = desk.portal.alerts(Request("GET", desk.headers("looker"))).body
    assert 'id="bulk"' not in looker
    assert 'id="bulk"' in desk.portal.alerts(Request("GET", desk.headers("actor"))).body
    csrf = auth.csrf_token(desk.settings.portal, auth.Principal(
        "oid-looker", "looker@mssp.example", "entra"))
    denied = desk.portal.bulk_action(Request("POST", desk.headers("looker", **{
        "origin": PUBLIC}), form={"csrf": csrf, "scope": "selected", "status": "Resolved"}))
    assert denied.status == 403 and "read-only analyst" in denied.body


# the alert's incident ----------------------------------------------------------------

def test_an_mde_tenants_alert_names_its_incident_with_the_defender_link_only():
    desk = Desk(MSSP_DEFENDER_API_BASE="https://api.securitycenter.microsoft.com")
    desk.alerts.store(alert_rows(TENANT, _alert(incidentId=77)))
    body = desk.get().body
    link = re.search(r'id="incident-defender-link" href="([^"]+)"', body).group(1)
    assert unescape(link) == f"https://security.microsoft.com/incidents/77?tid={TENANT}"
    assert 'id="incident-link"' not in body and "incident 77" in body
    # locally: the id, and Defender's address as text (no dead link)
    local = Desk()
    local.alerts.store(alert_rows(TENANT, _alert(incidentId=77)))
    body = local.get().body
    assert 'id="incident-defender-link"' not in body and "incident 77" in body
    assert f"https://security.microsoft.com/incidents/77?tid={TENANT}" in unescape(body)


def test_a_graph_tenants_alert_links_to_its_stored_incident():
    from shared.storage.incidents import Incident
    from shared.storage.memory.incidents import MemoryIncidents

    incidents = MemoryIncidents()
    desk = Desk(source="graph", incidents=incidents,
                MSSP_DEFENDER_API_BASE="https://api.securitycenter.microsoft.com")
    graph_alert = {"id": "fa1", "incidentId": "77", "title": HOSTILE, "severity": "medium",
                   "status": "new", "serviceSource": "microsoftDefenderForOffice365",
                   "createdDateTime": VERSION, "lastUpdateDateTime": VERSION,
                   "evidence": [], "comments": []}
    desk.alerts.store(alert_rows(TENANT, graph_alert, schema="graph"))
    page = lambda: desk.get(alert_id="fa1").body  # noqa: E731
    # not stored yet: the id, with Defender's link
    assert 'id="incident-link"' not in page() and 'id="incident-defender-link"' in page()
    from shared.model import Cursor
    incidents.commit(TENANT, [(Incident(TENANT, "77", VERSION, name="Phish"), "{}")],
                     Cursor(VERSION, source="graph"), None)
    link = re.search(r'id="incident-link" href="([^"]+)"', page()).group(1)
    assert link == f"/api/portal/incidents/{TENANT}/77"


def test_the_audit_page_links_an_incidents_entry_to_the_incident():
    on_incident = AuditEntry("inc-1", datetime(2026, 12, 3, 9, tzinfo=UTC),
                             Actor("oid-ana", "ana", "entra"), TENANT, "",
                             {"status": "Resolved"}, {"status": "Active"},
                             {"status": "Resolved"}, "done", "200 OK", incident_id="17")
    desk = Desk(audit=FakeAudit([on_incident]))
    body = desk.portal.audit(Request("GET", desk.headers())).body
    link = re.search(r'<a class="audit-incident" href="([^"]+)"', body).group(1)
    assert link == f"/api/portal/incidents/{TENANT}/17"
    assert 'class="audit-alert"' not in body
