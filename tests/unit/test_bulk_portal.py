"""The alerts list's bulk form and the job page, without I/O: what the form offers (only
valid pairs, the cap, the CSRF token, a checkbox per row), what a posted form starts, and
hostile alert text shown escaped."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from shared import timefmt
from shared.model import Tenant
from shared.portal.queries import AlertFilter, AlertPage, AlertRow
from shared.storage.alert_index import entry_of
from shared.storage.alert_rows import alert_rows
from shared.storage.bulk_jobs import BulkItem, BulkJob, TenantWork
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.memory.tenants import MemoryTenants
from shared.storage.memory.triage import MemoryBulkJobs, MemoryCallBudget
from shared.storage.queues import BulkQueue
from shared.storage.tenants import TenantName
from shared.triage import bulk_api, bulk_form
from shared.triage.bulk import BulkStores, BulkTriage, Hooks, JobStatus, Target
from shared.triage.model import Actor, Change
from shared.web.pages import render
from tests.triage_fakes import Audit, Clock, FakeDefender, Queue

TENANT = str(uuid.UUID(int=7))
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
ANN = Actor("oid-ann", "Ann", "entra")


def _context(**extra):
    return {"mssp_name": "MSSP", "principal": None, "local": False, "base": "/api/portal",
            "csrf": "csrf-token-1", "key_login": False, **extra}


def _row(alert_id: str) -> AlertRow:
    return AlertRow(TENANT, "Contoso", alert_id, alert_id, HOSTILE, "High", "New", "Malware",
                    "", "pc1", "EDR", "2026-12-01", datetime(2026, 12, 1, tzinfo=UTC))


def test_the_alerts_list_offers_a_checkbox_per_row_and_the_bulk_form():
    page = render("portal/alerts.html", **_context(
        tenants=[TenantName(TENANT, "Contoso")], flt=AlertFilter(severity="High"),
        page=AlertPage([_row("da1"), _row("da|2")]), next_url="", first_url="",
        severities=["High"], statuses=["New"], ranges=["7d"],
        bulk=bulk_form.choices(object())))  # type: ignore[arg-type]
    boxes = re.findall(r'<input type="checkbox" class="bulk-select" form="bulk" name="sel" '
                       r'value="([^"]+)"', page)
    assert boxes == [f"{TENANT}|da1", f"{TENANT}|da|2"]
    form = page[page.index('<form method="post" action="/api/portal/bulk"'):]
    assert 'name="csrf" value="csrf-token-1"' in form
    assert re.search(r'name="job_id" value="[0-9a-f]{32}"', form)
    assert 'name="f_severity" value="High"' in form
    assert "at most 5,000" in form
    assert 'value="FalsePositive:NotMalicious"' in form
    assert 'value="FalsePositive:Malware"' not in form  # only valid pairs
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_without_bulk_wiring_the_list_is_as_before():
    page = render("portal/alerts.html", **_context(
        tenants=[], flt=AlertFilter(), page=AlertPage([_row("da1")]), next_url="",
        first_url="", severities=[], statuses=[], ranges=[], bulk=None))
    assert 'class="bulk-select"' not in page and 'id="bulk"' not in page


def test_the_job_page_shows_progress_and_escapes_alert_text():
    job = BulkJob("b" * 32, Actor("oid", HOSTILE, "entra"),
                  Change(status="Resolved", comment=HOSTILE), 2, 1, "selection")
    items = [BulkItem(TENANT, "da1", "done", title=HOSTILE, at=datetime.now(UTC)),
             BulkItem(TENANT, HOSTILE, "failed", HOSTILE)]
    status = JobStatus(job, [TenantWork(job.job_id, TENANT, HOSTILE, 2, done=1, failed=1,
                                        calls=1, note="throttled")], items, "a~next")
    page = render("portal/bulk_job.html", **_context(
        job_status=status, counts=status.counts, names={TENANT: HOSTILE}))
    assert "<script>" not in page and "onerror=alert" not in page.replace(
        "onerror=alert(2)&gt;", "")
    assert "1 done, 0 refused, 1 failed, 0 pending of 2" in page
    assert 'http-equiv="refresh"' in page  # not finished: it reloads
    assert "/api/portal/bulk/" + "b" * 32 + "?after=a~next" in page


@pytest.fixture
def service():
    clock = Clock()
    tenants = MemoryTenants()
    tenants.add(Tenant(TENANT, "Contoso", access="triage"))
    return BulkTriage(BulkStores(MemoryBulkJobs(), MemoryCallBudget(), tenants,
                                 BulkQueue(Queue())), FakeDefender(clock),
                      Hooks(record=Audit().record), token=lambda t: "t",
                      base=lambda t: "https://x", clock=clock)


def _no_filter(params):
    raise AssertionError("not a filter form")


def test_a_form_with_checked_alerts_starts_one_job_once(service):
    form = {"csrf": "x", "job_id": "c" * 32, "scope": "selected", "status": "Resolved",
            "classify": "FalsePositive:NotMalicious", "comment": "  done  "}
    lists = {"sel": [f"{TENANT}|da1", f"{TENANT}|da|2"]}
    job = bulk_form.submit(service, form, lists, ANN, _no_filter)
    assert (job.job_id, job.total, job.source) == ("c" * 32, 2, "selection")
    assert job.change == Change(status="Resolved", classification="FalsePositive",
                                determination="NotMalicious", comment="done")
    again = bulk_form.submit(service, form, lists, ANN, _no_filter)  # sent twice
    assert again.job_id == job.job_id
    assert [i.alert_id for i in service.jobs.items(job.job_id, TENANT)] == ["da1", "da|2"]


def test_a_filter_form_takes_every_matching_alert(service):
    asked = {}

    def match(params):
        asked.update(params)
        return [Target(TENANT, "da9")], "filter: severity=High"

    form = {"scope": "filter", "status": "InProgress", "f_severity": "High", "f_range": "7d"}
    job = bulk_form.submit(service, form, {}, ANN, match)
    assert asked["severity"] == "High" and asked["range"] == "7d"
    assert job.total == 1 and job.source == "filter: severity=High"


@pytest.mark.parametrize(("form", "lists", "reason"), [
    ({"classify": "FalsePositive:Malware"}, {"sel": [f"{TENANT}|a"]}, "not valid"),
    ({}, {"sel": [f"{TENANT}|a"]}, "says nothing to change"),
    ({"status": "Resolved"}, {}, "no alerts selected"),
    ({"status": "Resolved"}, {"sel": ["../../x|a"]}, "names no tenant"),
    ({"status": "Resolved"}, {"sel": [f"{TENANT}|"]}, "has no id"),
    ({"status": "Resolved"}, {"sel": [f"{TENANT}|a{i}" for i in range(5_001)]},
     "at most 5,000"),
])
def test_a_form_that_cannot_start_a_job_says_why(service, form, lists, reason):
    with pytest.raises(bulk_form.Refused, match=reason):
        bulk_form.submit(service, form, lists, ANN, _no_filter)
    assert service.jobs.headers == {}


def _indexed(n: int, **fields):
    index = MemoryAlertIndex()
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = timefmt.from_datetime(now)
    index.put([entry_of(alert_rows(TENANT, {
        "id": f"da{i:04d}", "title": f"Alert {i}", "severity": "High" if i % 2 else "Low",
        "status": "New", "category": "Execution", "alertCreationTime": stamp,
        "lastUpdateTime": stamp, **fields})[0]) for i in range(n)])
    return index


def test_every_alert_matching_the_filter_up_to_the_cap(monkeypatch):
    index, names = _indexed(9), [TenantName(TENANT, "Contoso")]
    targets, source = bulk_api.matching(index, names, {"severity": "High", "range": "24h"})
    assert sorted(t.alert_id for t in targets) == [f"da{i:04d}" for i in (1, 3, 5, 7)]
    assert targets[0].before == {"status": "New"} and targets[0].title.startswith("Alert")
    assert source == "filter: severity=High, range=24h"
    monkeypatch.setattr(bulk_api, "MAX_ALERTS", 8)
    with pytest.raises(bulk_api.BadSelection, match="more than 8 alerts match"):
        bulk_api.matching(index, names, {})
    for wrong in ({"severity": "Severe"}, {"tenant": str(uuid.UUID(int=99))},
                  {"range": "1y"}):  # the list would read these as "any": never here
        with pytest.raises(bulk_api.BadSelection, match="not one the alerts list knows"):
            bulk_api.matching(index, names, wrong)
