"""The tenants family's contract, on Azurite and on the in-memory fakes: the registry (add,
conflict, each named status and health write, failing-first order), invitations through
their life, single-use consent attempts, idempotent ops notices, and a tenant's data."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.ingest.fanout import DUE_FIELDS
from shared.model import Tenant, TenantStatus
from shared.storage.alert_index import AlertIndex, key_of
from shared.storage.errors import AlreadyExists
from shared.storage.ingest_state import CURSOR
from shared.storage.invitations import (
    ConsentAttempt,
    ConsentStateRepository,
    InvitationRepository,
)
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.memory.tenants import (
    MemoryConsentStates,
    MemoryInvitations,
    MemoryNotices,
    MemoryTenantData,
    MemoryTenants,
)
from shared.storage.notices import NoticeRepository, new_key, time_key
from shared.storage.tenant_data import TenantData
from shared.storage.tenants import TenantRepository
from shared.tenants.invitations import Invitation
from tests.contract.conftest import fresh_table


@pytest.fixture
def registry(backend):
    return backend.repo(TenantRepository, "Tenants", MemoryTenants)


@pytest.fixture
def invitations(backend):
    return backend.repo(InvitationRepository, "Invitations", MemoryInvitations)


@pytest.fixture
def states(backend):
    return backend.repo(ConsentStateRepository, "States", MemoryConsentStates)


@pytest.fixture
def notices(backend):
    return backend.repo(NoticeRepository, "Notices", MemoryNotices)


class _Seeded:
    """A tenant's data repository, and a way to write what ingest would have written."""

    def __init__(self, backend) -> None:
        if backend.storage is None:
            self.index = MemoryAlertIndex()
            self.data = MemoryTenantData(self.index)
            self.put = self.data.put
        else:
            alert_table = fresh_table(backend.storage, "Alerts")
            state_table = fresh_table(backend.storage, "State")
            self.index = AlertIndex(fresh_table(backend.storage, "Index"))
            self.data = TenantData(alert_table, state_table, self.index)

            def put(tenant_id, alerts=(), state=(), versions=None):
                for table, keys in ((alert_table, alerts), (state_table, state)):
                    for key in keys:
                        table.create_entity({"PartitionKey": tenant_id, "RowKey": key,
                                             **({"Version": versions[key]} if table is
                                                alert_table and key in (versions or {})
                                                else {})})
            self.put = put


@pytest.fixture
def seeded(backend) -> _Seeded:
    return _Seeded(backend)


def _tenant(name: str = "Contoso", **values) -> Tenant:
    return Tenant(str(uuid.uuid4()), name, **values)


# the registry ---------------------------------------------------------------------------
def test_a_tenant_is_added_once_and_read_back(registry):
    tenant = registry.add(_tenant("Fabrikam <Ltd>", region="eu"))
    got = registry.get(tenant.tenant_id)
    assert (got.display_name, got.region, got.status) == ("Fabrikam <Ltd>", "eu",
                                                          TenantStatus.ACTIVE)
    assert got.created_at and got.status_changed_at == got.created_at
    assert got.last_success_at is None and got.fetch_queued_at is None
    assert registry.get(str(uuid.uuid4())) is None
    with pytest.raises(AlreadyExists):
        registry.add(Tenant(tenant.tenant_id, "Someone else"))
    assert registry.get(tenant.tenant_id).display_name == "Fabrikam <Ltd>"


def test_names_are_every_tenant_by_name_whatever_its_state(registry):
    zulu = registry.add(_tenant("zulu Corp"))
    alpha = registry.add(_tenant("Alpha <b>", status=TenantStatus.PAUSED))
    failing = registry.add(_tenant("Mid Co"))
    registry.mark_failing(failing.tenant_id, "boom", 3)
    names = [(n.tenant_id, n.display_name) for n in registry.names()]
    assert names == [(alpha.tenant_id, "Alpha <b>"), (failing.tenant_id, "Mid Co"),
                     (zulu.tenant_id, "zulu Corp")]  # by name, case-blind; not failing first


def test_a_bad_tenant_id_is_refused_before_storage(registry):
    with pytest.raises(ValueError):
        registry.get("not-a-guid")


def test_a_write_to_an_unknown_tenant_fails(registry):
    with pytest.raises(ResourceNotFoundError):
        registry.pause(str(uuid.uuid4()), "paused by the MSSP")


def test_the_mssps_status_changes_forget_a_queued_fetch(registry):
    tenant = registry.add(_tenant())
    registry.mark_requeued(tenant.tenant_id)
    assert registry.get(tenant.tenant_id).fetch_queued_at is not None

    registry.pause(tenant.tenant_id, "paused by the MSSP")
    paused = registry.get(tenant.tenant_id)
    assert (paused.status, paused.status_reason) == (TenantStatus.PAUSED, "paused by the MSSP")
    assert paused.status_changed_at > tenant.status_changed_at
    assert paused.fetch_queued_at is None and paused.fetch_cleared_at is not None

    registry.resume(tenant.tenant_id, "resumed by the MSSP")
    assert registry.get(tenant.tenant_id).status == TenantStatus.ACTIVE
    registry.offboard(tenant.tenant_id, "offboarded by the MSSP")
    offboarded = registry.get(tenant.tenant_id)
    assert (offboarded.status, offboarded.status_reason) == (TenantStatus.OFFBOARDED,
                                                             "offboarded by the MSSP")


def test_a_fetch_that_finds_consent_revoked_stops_the_tenant(registry):
    tenant = registry.add(_tenant())
    registry.mark_requeued(tenant.tenant_id)
    registry.stop(tenant.tenant_id, TenantStatus.CONSENT_REVOKED, "app_not_found_in_tenant",
                  "AADSTS700016")
    stopped = registry.get(tenant.tenant_id)
    assert (stopped.status, stopped.status_reason) == (TenantStatus.CONSENT_REVOKED,
                                                       "app_not_found_in_tenant")
    assert stopped.last_error == "AADSTS700016" and stopped.last_error_at is not None
    assert stopped.fetch_queued_at is None


def test_reactivation_by_consent_clears_the_health_record(registry):
    tenant = registry.add(_tenant())
    registry.mark_failing(tenant.tenant_id, "DefenderError: 503", 3)
    registry.stop(tenant.tenant_id, TenantStatus.UNAVAILABLE, "no_defender", "403")
    registry.reactivate(tenant.tenant_id, "consent granted again")
    back = registry.get(tenant.tenant_id)
    assert (back.status, back.status_reason) == (TenantStatus.ACTIVE, "consent granted again")
    assert (back.consecutive_failures, back.last_error) == (0, "")


def test_what_a_consent_granted_is_kept_and_changed_by_a_new_consent(registry):
    tenant = registry.add(Tenant(str(uuid.uuid4()), "Triage Co", access="triage",
                                 consent_app="triage"))
    got = registry.get(tenant.tenant_id)
    assert (got.access, got.access_reason, got.consent_app) == ("triage", "", "triage")
    (due,) = [t for t in registry.with_status(TenantStatus.ACTIVE, DUE_FIELDS)
              if t.tenant_id == tenant.tenant_id]
    assert due.consent_app == "triage"  # the fan-out tells the worker whose token to take
    registry.reactivate(tenant.tenant_id, "consent granted again")  # no grant: unchanged
    assert registry.get(tenant.tenant_id).access == "triage"
    registry.reactivate(tenant.tenant_id, "consent granted again", access="read",
                        access_reason="read-only, asked", consent_app="read")
    back = registry.get(tenant.tenant_id)
    assert (back.access, back.access_reason, back.consent_app) == (
        "read", "read-only, asked", "read")
    assert registry.get(registry.add(_tenant()).tenant_id).consent_app == "read"
    registry.mark_requeued(tenant.tenant_id)
    queued = registry.get(tenant.tenant_id).fetch_queued_at
    registry.record_grant(tenant.tenant_id, "triage", "", "triage")  # an upgrade
    after = registry.get(tenant.tenant_id)
    assert (after.access, after.consent_app, after.fetch_queued_at) == (
        "triage", "triage", queued)  # the fetch in flight is not forgotten


def test_a_tenants_source_is_kept_carried_to_the_fanout_and_moved(registry):
    plain = registry.add(_tenant())
    assert registry.get(plain.tenant_id).source == "mde"  # rows from before: mde
    graph = registry.add(Tenant(str(uuid.uuid4()), "Graph Co", source="graph"))
    assert registry.get(graph.tenant_id).source == "graph"
    registry.move_source(plain.tenant_id, "graph")
    due = {t.tenant_id: t.source for t in registry.with_status(TenantStatus.ACTIVE,
                                                                DUE_FIELDS)}
    assert (due[plain.tenant_id], due[graph.tenant_id]) == ("graph", "graph")
    with pytest.raises(ValueError):
        registry.move_source(plain.tenant_id, "elsewhere")


def test_health_writes_of_a_fetch(registry):
    tenant = registry.add(_tenant())
    registry.mark_failing(tenant.tenant_id, "DefenderError: 500", 1)
    registry.mark_failing(tenant.tenant_id, "DefenderError: 503", 2)
    failing = registry.get(tenant.tenant_id)
    assert (failing.last_error, failing.consecutive_failures) == ("DefenderError: 503", 2)
    assert failing.last_error_at is not None and failing.status == TenantStatus.ACTIVE

    until = datetime.now(UTC) + timedelta(minutes=5)
    registry.mark_requeued(tenant.tenant_id, throttled_until=until)
    throttled = registry.get(tenant.tenant_id)
    assert throttled.throttled_until == until and throttled.fetch_queued_at is not None

    registry.mark_fetched_ok(tenant.tenant_id, more=True)
    ok = registry.get(tenant.tenant_id)
    assert (ok.consecutive_failures, ok.last_error, ok.throttled_until) == (0, "", None)
    assert ok.last_success_at is not None and ok.fetch_queued_at is not None
    registry.mark_fetched_ok(tenant.tenant_id)
    assert registry.get(tenant.tenant_id).fetch_queued_at is None

    registry.mark_requeued(tenant.tenant_id)
    registry.clear_fetch_queued(tenant.tenant_id)
    assert registry.get(tenant.tenant_id).fetch_queued_at is None
    registry.mark_requeued(tenant.tenant_id)
    registry.mark_poisoned(tenant.tenant_id, "given up on; last error: x")
    poisoned = registry.get(tenant.tenant_id)
    assert poisoned.last_error == "given up on; last error: x"
    assert poisoned.fetch_queued_at is None


def test_edit_changes_only_what_is_given(registry):
    tenant = registry.add(_tenant("Old name", region="us"))
    registry.edit(tenant.tenant_id, display_name="New name")
    assert (registry.get(tenant.tenant_id).display_name,
            registry.get(tenant.tenant_id).region) == ("New name", "us")
    registry.edit(tenant.tenant_id, region="")
    assert registry.get(tenant.tenant_id).region == ""
    registry.edit(tenant.tenant_id)
    assert registry.get(tenant.tenant_id).display_name == "New name"


def test_set_access_records_what_the_tenant_granted(registry):
    tenant = registry.add(_tenant("Access Co"))
    assert (registry.get(tenant.tenant_id).access,
            registry.get(tenant.tenant_id).access_reason) == ("read", "")
    registry.set_access(tenant.tenant_id, "triage", "")
    assert registry.get(tenant.tenant_id).access == "triage"
    registry.set_access(tenant.tenant_id, "read", "Defender answered 403 to a write")
    stored = registry.get(tenant.tenant_id)
    assert (stored.access, stored.access_reason) == ("read",
                                                     "Defender answered 403 to a write")
    assert stored.display_name == "Access Co"
    with pytest.raises(ValueError):
        registry.set_access(tenant.tenant_id, "admin", "")
    with pytest.raises(ResourceNotFoundError):
        registry.set_access(str(uuid.uuid4()), "read", "")


def test_a_merge_with_a_stale_etag_fails(registry):
    tenant = registry.add(_tenant())
    etag = registry.get(tenant.tenant_id).etag
    registry.merge(tenant.tenant_id, etag=etag, display_name="First")
    with pytest.raises(ResourceModifiedError):
        registry.merge(tenant.tenant_id, etag=etag, display_name="Second")
    assert registry.get(tenant.tenant_id).display_name == "First"


def test_failing_tenants_come_first(registry):
    ids = {}
    for name, status, failures in (("b paused", TenantStatus.PAUSED, 0),
                                   ("a healthy", TenantStatus.ACTIVE, 0),
                                   ("z failing once", TenantStatus.ACTIVE, 1),
                                   ("c offboarded", TenantStatus.OFFBOARDED, 0),
                                   ("y failing often", TenantStatus.ACTIVE, 5),
                                   ("x revoked", TenantStatus.CONSENT_REVOKED, 0),
                                   ("w unavailable", TenantStatus.UNAVAILABLE, 0),
                                   ("B healthy", TenantStatus.ACTIVE, 0)):
        tenant = registry.add(_tenant(name, status=status))
        if failures:
            registry.mark_failing(tenant.tenant_id, "boom", failures)
        ids[tenant.tenant_id] = name
    assert [ids[t.tenant_id] for t in registry.failing_first()] == [
        "w unavailable", "x revoked", "y failing often", "z failing once", "a healthy",
        "B healthy", "b paused", "c offboarded"]


def test_with_status_reads_only_that_status(registry):
    active = registry.add(_tenant("Active"))
    paused = registry.add(_tenant("Paused"))
    registry.pause(paused.tenant_id, "paused by the MSSP")
    found = list(registry.with_status(TenantStatus.ACTIVE, ("fetch_queued_at",)))
    assert [t.tenant_id for t in found] == [active.tenant_id]
    assert found[0].display_name == "Active"


# invitations ----------------------------------------------------------------------------
def _invitation(days: int = 7, **values) -> Invitation:
    now = values.pop("created_at", datetime.now(UTC))
    return Invitation(id=secrets.token_urlsafe(24), display_name="Northwind",
                      contact_email="it@northwind.example", created_at=now,
                      expires_at=now + timedelta(days=days), **values)


def test_an_invitation_keeps_the_source_it_was_made_for(invitations):
    graph = _invitation(source="graph")
    invitations.create(graph)
    assert invitations.get(graph.id).source == "graph"


def test_an_invitation_is_created_read_listed_newest_first(invitations):
    older = _invitation(expected_tenant="northwind.example",
                        created_at=datetime.now(UTC) - timedelta(hours=1))
    newer = _invitation(reconsent_for=str(uuid.uuid4()), access="triage")
    invitations.create(older)
    invitations.create(newer)
    got = invitations.get(older.id)
    assert (got.display_name, got.expected_tenant, got.status) == (
        "Northwind", "northwind.example", "open")
    assert got.expires_at == older.expires_at and got.usable(datetime.now(UTC))
    assert got.reconsent_for == "" and got.admitting == "" and got.tenant_id == ""
    assert invitations.get(newer.id).reconsent_for == newer.reconsent_for
    assert (got.access, invitations.get(newer.id).access) == ("read", "triage")
    assert got.source == "mde"
    assert [i.id for i in invitations.all()] == [newer.id, older.id]
    with pytest.raises(ResourceExistsError):
        invitations.create(older)


def test_an_unknown_or_malformed_invitation_is_none(invitations):
    assert invitations.get(secrets.token_urlsafe(24)) is None
    for bad in ("", "short", "x" * 65, "a/b" * 10, "'; drop" + "x" * 20):
        assert invitations.get(bad) is None


def test_revoking_an_open_invitation_only(invitations):
    invitation = _invitation()
    invitations.create(invitation)
    assert invitations.revoke(invitation.id).status == "revoked"
    assert invitations.get(invitation.id).status == "revoked"
    assert not invitations.get(invitation.id).usable(datetime.now(UTC))
    assert invitations.revoke(secrets.token_urlsafe(24)) is None

    used = _invitation()
    invitations.create(used)
    invitations.mark_used(used, str(uuid.uuid4()))
    assert invitations.revoke(used.id).status == "used"
    assert invitations.get(used.id).status == "used"


def test_an_admission_is_begun_abandoned_or_finished(invitations):
    invitation = _invitation()
    invitations.create(invitation)
    tenant_id, key = str(uuid.uuid4()), new_key()
    invitations.begin_admission(invitation, tenant_id, key)
    assert (invitation.admitting, invitation.notice_key) == (tenant_id, key)
    stored = invitations.get(invitation.id)
    assert (stored.admitting, stored.notice_key, stored.status) == (tenant_id, key, "open")

    invitations.abandon_admission(invitation)
    assert (invitations.get(invitation.id).admitting, invitation.notice_key) == ("", "")

    invitations.begin_admission(invitation, tenant_id, key)
    invitations.mark_used(invitation, tenant_id)
    used = invitations.get(invitation.id)
    assert (used.status, used.tenant_id, invitation.status) == ("used", tenant_id, "used")
    assert used.used_at is not None and not used.usable(datetime.now(UTC))
    assert used.public("https://x/api/onboard/1")["tenant_id"] == tenant_id


def test_an_expired_invitation_is_not_usable(invitations):
    invitation = _invitation(days=-1)
    invitations.create(invitation)
    assert not invitations.get(invitation.id).usable(datetime.now(UTC))


# consent attempts -----------------------------------------------------------------------
def _attempt(invitation_id: str | None = None) -> ConsentAttempt:
    return ConsentAttempt(invitation_id or secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                          datetime.now(UTC) + timedelta(minutes=15), "verifier-" + "v" * 40,
                          "nonce-digest")


def test_a_consent_attempt_is_recorded_and_read(states):
    attempt = _attempt()
    states.record(attempt)
    got = states.get(attempt.invitation_id, attempt.attempt)
    assert (got.code_verifier, got.nonce_digest, got.used) == (
        attempt.code_verifier, "nonce-digest", False)
    assert got.expires_at == attempt.expires_at and got.etag
    assert states.get(attempt.invitation_id, "other") is None
    with pytest.raises(ResourceExistsError):
        states.record(attempt)


def test_a_consent_attempt_is_consumed_once(states):
    attempt = _attempt()
    states.record(attempt)
    first = states.get(attempt.invitation_id, attempt.attempt)
    racing = states.get(attempt.invitation_id, attempt.attempt)
    assert states.consume(first) is True and first.used
    assert states.consume(racing) is False  # read before the first consumed it
    assert states.consume(first) is False  # its own ETag is stale now too
    assert states.get(attempt.invitation_id, attempt.attempt).used is True


# ops notices ----------------------------------------------------------------------------
def test_a_notice_with_a_chosen_key_is_written_once(notices):
    key = new_key()
    notices.add(key, "tenant_onboarded", "t1", "ops@mssp.example", "Tenant onboarded", "b1")
    notices.add(key, "tenant_onboarded", "t1", "ops@mssp.example", "A repeat", "b2")
    row = notices.get(key)
    assert (row["Kind"], row["Tenant"], row["To"], row["Subject"], row["Body"]) == (
        "tenant_onboarded", "t1", "ops@mssp.example", "Tenant onboarded", "b1")
    assert (row["Sent"], row["State"]) == (False, "recorded") and row["CreatedAt"]
    assert [r["RowKey"] for r in notices.recent(10)] == [key]
    assert notices.get(new_key()) is None


def test_notices_are_recent_newest_first_and_pending_oldest_first(notices):
    now = datetime.now(UTC)
    keys = [f"{time_key(now - timedelta(hours=h))}:{h:08x}" for h in (72, 3, 2, 1)]
    for n, key in enumerate(keys):
        notices.add(key, "tenant_onboarded", f"t{n}", "ops@mssp.example", f"s{n}", "b")
    assert [r["RowKey"] for r in notices.recent(10)] == keys[::-1]
    assert [r["RowKey"] for r in notices.recent(2)] == [keys[3], keys[2]]

    since = now - timedelta(days=2)  # the 72-hour-old notice is never emailed late
    assert [r["RowKey"] for r in notices.pending(since, 10)] == keys[1:]
    notices.mark(keys[2], "sent")
    assert [r["RowKey"] for r in notices.pending(since, 10)] == [keys[1], keys[3]]
    assert [r["RowKey"] for r in notices.pending(since, 1)] == [keys[3]]  # the newest
    marked = notices.get(keys[2])
    assert (marked["Sent"], marked["State"]) == (True, "sent") and marked["SentAt"]


# a tenant's data ------------------------------------------------------------------------
def test_erasing_a_tenants_data_keeps_the_lease_and_other_tenants(seeded):
    data, mine, other = seeded.data, str(uuid.uuid4()), str(uuid.uuid4())
    seeded.put(mine, ["a1", "a2", "a2%~1", "a3"], [CURSOR, "idx:2026-12-01:0", "budget"])
    seeded.put(other, ["b1"], [CURSOR])
    assert data.has_cursor(mine) and not data.has_cursor(str(uuid.uuid4()))
    assert data.lock(mine, "offboard-1", 600)
    assert data.erase(mine) == 3  # an alert's overflow row is not an alert
    assert not data.has_cursor(mine) and data.has_cursor(other)
    assert not data.lock(mine, "a fetch", 600)  # the lease survived the erasing
    data.unlock(mine, "offboard-1")
    assert data.erase(mine) == 0  # nothing left, and that is fine
    assert data.erase(other) == 1


def test_erasing_a_tenants_alerts_removes_their_index_entries(seeded):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = "2026-12-01T10:00:00.0000000Z"
    entries = {t: [{"PartitionKey": stamp[:10], "RowKey": key_of(t, k, stamp)[1],
                    "Tenant": t, "Shown": "[]"} for k in ("a1", "a2")] for t in (mine, other)}
    for tenant_id in (mine, other):
        seeded.put(tenant_id, ["a1", "a2", "a2%~1"], versions={"a1": stamp, "a2": stamp})
        seeded.index.put(entries[tenant_id])
    assert seeded.data.erase(mine) == 2
    assert {e["Tenant"] for e in seeded.index.every()} == {other}
    assert seeded.data.erase(mine) == 0  # again: nothing left, and that is fine
    assert len(seeded.index.every()) == 2


def test_a_lease_is_exclusive_until_released(seeded):
    data, tenant_id = seeded.data, str(uuid.uuid4())
    assert data.lock(tenant_id, "worker-1", 600)
    assert data.lock(tenant_id, "worker-1", 600)  # its own again
    assert not data.lock(tenant_id, "offboard", 600)
    data.unlock(tenant_id, "offboard")  # not its lease: nothing happens
    assert not data.lock(tenant_id, "offboard", 600)
    data.unlock(tenant_id, "worker-1")
    assert data.lock(tenant_id, "offboard", 600)
    seeded.put(tenant_id, state=[CURSOR])
    assert data.erase(tenant_id) == 0 and not data.has_cursor(tenant_id)
    assert not data.lock(tenant_id, "worker-1", 600)  # the lease is kept
