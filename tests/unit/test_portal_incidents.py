"""The portal's incident list and incident page on the in-memory fakes: newest update
first across tenants, filters and keyset paging, each alert linked to its alert page,
hostile incident text shown as text, bad links answered 404."""

from __future__ import annotations

import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

from shared.model import Tenant
from shared.portal.pages import Portal, Request
from shared.storage.incidents import Incident
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.memory.incidents import MemoryIncidents
from shared.storage.memory.ingest import MemoryAlerts, MemoryRuns
from shared.storage.memory.notify import MemoryMailOutbox, MemoryRules
from shared.storage.memory.tenants import MemoryTenantData, MemoryTenants
from shared.tenants.admin import TenantAdmin
from tests.helpers import settings
from tests.unit.test_portal_alert_page import HOST, HOSTILE, KEY, PUBLIC

T1 = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
T2 = "4f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7c"


def _portal() -> tuple[Portal, MemoryIncidents]:
    tenants = MemoryTenants()
    tenants.add(Tenant(T1, "Contoso <b>"))
    tenants.add(Tenant(T2, "Fabrikam"))
    repo = MemoryIncidents()
    portal = Portal(settings(PUBLIC_BASE_URL=PUBLIC, PORTAL_KEY=KEY),
                    TenantAdmin(tenants, MemoryTenantData()), MemoryRules(),
                    MemoryMailOutbox(), SimpleNamespace(list_invitations=list, link=str,
                                                        why_not_triage=lambda: ""),
                    None, MemoryAlerts(), MemoryRuns(), alert_index=MemoryAlertIndex(),
                    incidents=repo)
    return portal, repo


def _get(portal: Portal, path: str = "", **params: str):
    headers = {"host": HOST, "x-portal-key": KEY}
    if path:
        tenant_id, incident_id = path.split("/", 1)
        return portal.incident_views.incident_page(Request("GET", headers, route={
            "tenant_id": tenant_id, "incident_id": incident_id}))
    return portal.incident_views.list_page(Request("GET", headers, params=params))


def _add(repo: MemoryIncidents, n: int, tenant: str = T1, **fields) -> Incident:
    incident = Incident(tenant, str(100 + n), f"2026-12-0{1 + n % 3}T10:{n:02d}:00.0000000Z",
                        **{"name": f"Incident {n}", "severity": "high" if n % 2 else "low",
                           "status": "active", **fields})
    repo.record_listed(incident)
    repo.commit(tenant, [(incident, "{}")], *_cursor(repo, tenant))
    return incident


def _cursor(repo: MemoryIncidents, tenant: str):
    from shared.model import Cursor
    return Cursor("2026-12-01T00:00:00Z", source="graph"), repo.cursor(tenant)[1]


def _ids(body: str) -> list[str]:
    return re.findall(r'data-incident="([^"]+)"', body)


def test_list_is_newest_first_filtered_and_paged():
    portal, repo = _portal()
    made = [_add(repo, n, T1 if n % 3 else T2) for n in range(60)]
    response = _get(portal)
    assert response.status == 200
    newest = sorted(made, key=lambda i: i.version, reverse=True)
    assert _ids(response.body) == [i.incident_id for i in newest[:50]]
    older = re.search(r'href="([^"]+)" id="older"', response.body)
    assert older
    after = parse_qs(urlsplit(older.group(1).replace("&amp;", "&")).query)["after"][0]
    rest = _get(portal, after=after)
    assert _ids(rest.body) == [i.incident_id for i in newest[50:]]
    high_t2 = _get(portal, severity="high", tenant=T2)
    assert set(_ids(high_t2.body)) == {i.incident_id for i in made
                                       if i.severity == "high" and i.tenant_id == T2}
    assert _get(portal, severity="<x>", after="junk").status == 200  # dropped, not 500


def test_incident_page_links_its_alerts_and_escapes_hostile_text():
    portal, repo = _portal()
    _add(repo, 1, name=HOSTILE, assignee=HOSTILE, tags=(HOSTILE,),
         alert_ids=("da638000000000000000_123", "ga/../x"),
         web_url="https://security.microsoft.com/incidents/101?tid=" + T1)
    body = _get(portal, f"{T1}/101").body
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert f'href="/api/portal/tenants/{T1}/alerts/da638000000000000000_123"' in body
    assert f'href="/api/portal/tenants/{T1}/alerts/ga%2F..%2Fx"' in body
    assert 'id="in-defender"' in body
    listed = _get(portal).body
    assert "<script>" not in listed and "Contoso &lt;b&gt;" in listed
    assert f'href="/api/portal/incidents/{T1}/101"' in listed


def test_unknown_or_malformed_incident_is_404():
    portal, repo = _portal()
    _add(repo, 1, web_url="javascript:alert(1)")
    assert _get(portal, f"{T1}/999").status == 404
    assert _get(portal, "not-a-guid/101").status == 404
    assert _get(portal, f"{T2}/101").status == 404
    page = _get(portal, f"{T1}/101").body
    assert "javascript:" not in page


# incident triage from the page -------------------------------------------------------

class FakeIncidentTriage:
    """IncidentTriage.apply's signature: answers `answer`, records calls."""

    def __init__(self, answer: str = "done") -> None:
        self.answer, self.calls = answer, []

    def apply(self, actor, tenant_id, incident_id, change, *, seen_version, action_id):
        self.calls.append((actor, tenant_id, incident_id, change, seen_version, action_id))
        current = {"id": incident_id, "displayName": "Incident 1", "severity": "high",
                   "lastUpdateDateTime": "2026-12-03T09:00:00.0000000Z",
                   "status": "resolved" if self.answer == "done" else "inProgress",
                   "assignedTo": "someone@customer.test"}
        if self.answer == "conflict":  # read with $expand=alerts; a PATCH answers without
            current["alerts"] = [{"id": "da1"}]
        return SimpleNamespace(outcome=self.answer, alert=current, detail="why",
                               retry_after=None, entry=None)


class Audit:
    def __init__(self) -> None:
        self.asked = []

    def for_incident(self, tenant_id, incident_id):
        self.asked.append((tenant_id, incident_id))
        return []


def _desk(access: str = "triage", answer: str = "done", **env: str):
    from shared.storage.memory.siem import MemorySiemFeed
    from tests.unit.test_portal_alert_page import Desk

    desk = Desk(access=access, source="graph", incidents=MemoryIncidents(),
                audit=Audit(), **env)
    triage = FakeIncidentTriage(answer)
    desk.portal.incident_views.triage = triage
    desk.feed = MemorySiemFeed()
    incident = _add(desk.portal.incident_views.incidents, 1, tenant=TENANT_OF_DESK,
                    alert_ids=("da9",))
    return desk, triage, incident


TENANT_OF_DESK = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"


def _page(desk, incident, who: str = "key"):
    return desk.portal.incident_views.incident_page(Request("GET", desk.headers(who), route={
        "tenant_id": TENANT_OF_DESK, "incident_id": incident.incident_id}))


def _act(desk, incident, action: str, fields: dict[str, str], who: str = "key"):
    from shared.portal import auth

    principal = auth.authenticate(desk.settings.portal, desk.headers(who))
    return desk.portal.incident_views.incident_action(Request(
        "POST", desk.headers(who, origin=PUBLIC),
        route={"tenant_id": TENANT_OF_DESK, "incident_id": incident.incident_id,
               "action": action},
        form={**fields, "csrf": auth.csrf_token(desk.settings.portal, principal)}))


def test_the_incident_page_offers_the_forms_with_csrf_version_and_nonce():
    desk, _, incident = _desk()
    body = _page(desk, incident).body
    hidden = desk.form(body, "classify-form")
    assert hidden["seen_version"] == incident.version and hidden["csrf"] and hidden["nonce"]
    assert 'id="actions" class="actions">' in body  # enabled
    statuses = re.search(r'<select name="status".*?</select>', body, re.S).group(0)
    assert re.findall(r"<option[^>]*>(\w+)</option>", statuses) == [
        "Active", "InProgress", "Resolved"]
    assert 'id="incident-audit"' in body and desk.audit.asked


def test_resolving_as_false_positive_with_a_comment_goes_to_the_triage_service():
    desk, triage, incident = _desk()
    hidden = desk.form(_page(desk, incident).body, "classify-form")
    response = _act(desk, incident, "classify", {
        **hidden, "verdict": "FalsePositive/NotMalicious", "resolve": "yes",
        "comment": "benign"})
    assert response.status == 200 and "Done" in response.body
    [(actor, tenant_id, incident_id, change, seen, action_id)] = triage.calls
    assert (tenant_id, incident_id, seen) == (TENANT_OF_DESK, "101", incident.version)
    assert actor.via == "key" and action_id.startswith("portal-")
    assert (change.status, change.classification, change.determination, change.comment) == (
        "Resolved", "FalsePositive", "NotMalicious", "benign")
    assert 'id="i-status">resolved<' in response.body  # as Graph answered
    assert f"/tenants/{TENANT_OF_DESK}/alerts/da9" in response.body  # its alerts kept
    # an alert's status is not an incident's: refused before the service
    bad = _act(desk, incident, "status", {**hidden, "status": "New"})
    assert bad.status == 400 and len(triage.calls) == 1


def test_a_conflict_is_shown_not_overwritten():
    desk, _, incident = _desk(answer="conflict")
    hidden = desk.form(_page(desk, incident).body, "status-form")
    response = _act(desk, incident, "status", {**hidden, "status": "Resolved"})
    assert response.status == 409 and "nothing was overwritten" in response.body
    assert "someone@customer.test" in response.body
    assert f"/tenants/{TENANT_OF_DESK}/alerts/da1" in response.body


def test_read_only_tenants_and_analysts_see_the_forms_disabled_with_the_reason():
    desk, triage, incident = _desk(access="read")
    body = _page(desk, incident).body
    assert 'id="actions" class="actions" disabled' in body
    assert "read-only access" in body and 'id="reconsent-link"' in body
    desk, triage, incident = _desk(PORTAL_ACTION_GROUPS="g-actors")
    looker = _page(desk, incident, who="looker").body  # not in the action group
    assert 'id="actions" class="actions" disabled' in looker
    assert "read-only analyst" in looker
    assert 'id="actions" class="actions">' in _page(desk, incident, who="actor").body
    hidden = desk.form(looker, "status-form")
    refused = _act(desk, incident, "status", {**hidden, "status": "Resolved"}, who="looker")
    assert refused.status == 403 and triage.calls == []
