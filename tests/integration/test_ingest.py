"""The fetch worker against Azurite and the simulator: exactly once, whatever happens."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import timedelta

import pytest

from shared import timefmt
from shared.ingest import worker as ingest
from shared.messages import RelayRequest
from shared.microsoft.defender import DefenderClient, DefenderError
from shared.model import TenantStatus
from shared.storage import batch, ingest_state, limits, tables
from shared.storage.ingest_state import IngestState


def _calls(pipeline, tenant_id: str) -> int:
    return pipeline.sim.counters()["tenants"][tenant_id]["calls"]


def test_first_run_stores_every_alert_and_emits_one_event_each(pipeline):
    tenant = pipeline.add_tenant("First Run Co", alerts=40)
    run = pipeline.fetch(tenant)
    assert (run.outcome, run.new, run.changed, run.unchanged) == ("success", 40, 0, 0)

    source = {a["id"]: a for a in pipeline.sim.alerts(tenant.tenant_id)}
    assert pipeline.rows(tenant.tenant_id) == source  # whole alerts, evidence included
    events = pipeline.events(tenant.tenant_id)
    assert sorted(e["alert_id"] for e in events) == sorted(source)
    assert {e["change"] for e in events} == {"new"}
    first = events[0]
    assert first["tenant_name"] == "First Run Co"
    assert first["alert"]["title"] == source[first["alert_id"]]["title"]

    health = pipeline.tenants.get(tenant.tenant_id)
    assert health.last_success_at is not None and health.consecutive_failures == 0
    history = pipeline.ingestor.runs.recent(tenant.tenant_id)
    assert history[0].outcome == "success" and history[0].new == 40


def test_idle_tick_is_one_call_and_re_reads_produce_nothing(pipeline):
    tenant = pipeline.add_tenant("Idle Co", alerts=30)
    pipeline.fetch(tenant)
    pipeline.events(tenant.tenant_id)
    before = _calls(pipeline, tenant.tenant_id)
    run = pipeline.fetch(tenant)  # the overlap window re-reads the same 30
    assert _calls(pipeline, tenant.tenant_id) - before == 1
    assert (run.new, run.changed, run.unchanged) == (0, 0, 30)
    assert pipeline.events(tenant.tenant_id) == []


def test_message_delivered_twice_at_once_gives_no_duplicates(pipeline):
    tenant = pipeline.add_tenant("Twice Co", alerts=60)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(pipeline.fetch(tenant).outcome))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipeline.fetch(tenant)  # and a third copy afterwards
    events = pipeline.events(tenant.tenant_id)
    assert len(pipeline.rows(tenant.tenant_id)) == 60
    assert Counter(e["event_id"] for e in events).most_common(1)[0][1] == 1
    assert len(events) == 60
    assert "success" in outcomes


def test_worker_killed_between_storing_and_moving_the_cursor(pipeline, monkeypatch):
    tenant = pipeline.add_tenant("Crash Co", alerts=25)
    real_commit = IngestState.commit

    def die(*args, **kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(IngestState, "commit", die)
    with pytest.raises(SystemExit):
        pipeline.fetch(tenant)
    assert len(pipeline.rows(tenant.tenant_id)) == 25  # rows were written...
    assert pipeline.events(tenant.tenant_id) == []  # ...but no event left
    state = pipeline.ingestor.states.of(tenant.tenant_id)
    assert state.cursor() == (None, None)  # and the cursor did not move

    monkeypatch.setattr(IngestState, "commit", real_commit)
    run = pipeline.fetch(tenant)
    assert run.new == 25
    events = pipeline.events(tenant.tenant_id)
    assert len(events) == 25 and len({e["event_id"] for e in events}) == 25


def _spy(monkeypatch, table: str, on_ops):
    """Calls on_ops(operations) before each transaction on `table`; it may raise, as a
    dying worker or a failing store would. Returns the submit it wraps."""
    real = batch.submit_transaction

    def spy(client, operations):
        ops = list(operations)
        if client.table_name == table:
            on_ops(ops)
        return real(client, ops)
    monkeypatch.setattr(batch, "submit_transaction", spy)
    return real


def _keys(ops) -> list[str]:
    return [op[1]["RowKey"] for op in ops]


def test_each_chunk_commits_in_order_and_only_after_its_rows(pipeline, monkeypatch):
    """Commits run beside the worker: whenever a cursor is committed, every alert up to it
    is already stored, and cursors are committed in order."""
    monkeypatch.setattr(ingest, "CHUNK_ALERTS", 40)
    pipeline = pipeline.with_settings(FETCH_PAGE_SIZE="10000")
    tenant = pipeline.add_tenant("Chunky Co", alerts=200)
    versions = sorted(timefmt.normalize(a["lastUpdateTime"])
                      for a in pipeline.sim.alerts(tenant.tenant_id))
    cursors = []

    def check(ops):
        if "cursor" not in _keys(ops):
            return
        watermark = next(op[1]["Watermark"] for op in ops if op[1]["RowKey"] == "cursor")
        stored = {r["Version"] for r in pipeline.ingestor.alerts.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": tenant.tenant_id}, select=["Version"])}
        assert {v for v in versions if v <= watermark} <= stored
        cursors.append(watermark)

    _spy(monkeypatch, tables.INGEST_STATE, check)
    run = pipeline.fetch(tenant)
    assert (run.outcome, run.new) == ("success", 200)
    assert len(cursors) == 5 and cursors == sorted(cursors) and cursors[-1] == versions[-1]


def test_a_failed_chunk_stops_the_run_before_any_later_commit(pipeline, monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ALERTS", 40)
    pipeline = pipeline.with_settings(FETCH_PAGE_SIZE="10000")
    tenant = pipeline.add_tenant("Broken Write Co", alerts=200)
    alert_writes = []

    def flaky(ops):
        alert_writes.append(1)
        if len(alert_writes) == 2:  # the second chunk's rows
            raise ConnectionError("Table storage went away")

    real = _spy(monkeypatch, tables.ALERTS, flaky)
    with pytest.raises(ConnectionError):
        pipeline.fetch(tenant)
    state = pipeline.ingestor.states.of(tenant.tenant_id)
    cursor, _ = state.cursor()
    first = sorted(pipeline.sim.alerts(tenant.tenant_id),
                   key=lambda a: timefmt.normalize(a["lastUpdateTime"]))[:40]
    assert cursor is not None
    assert cursor.watermark == timefmt.normalize(first[-1]["lastUpdateTime"])
    assert len(pipeline.events(tenant.tenant_id)) == 40  # the first chunk's, no later one
    monkeypatch.setattr(batch, "submit_transaction", real)
    run = pipeline.fetch(tenant)
    assert run.new == 160  # (the first chunk re-read from the overlap is unchanged)
    assert len({e["event_id"] for e in pipeline.events(tenant.tenant_id)}) == 160
    assert len(pipeline.rows(tenant.tenant_id)) == 200


@pytest.fixture
def small_limits(monkeypatch):
    """Azure's 4 MiB per transaction and ~1 MiB per outbox row, scaled down so that 100
    ordinary alerts already need a commit in several transactions."""
    monkeypatch.setattr(limits, "MAX_TRANSACTION_WIRE", 40_000)
    monkeypatch.setattr(ingest_state, "OUTBOX_ROW_BYTES", 15_000)
    sent: list[list[str]] = []  # the row keys of each IngestState transaction
    _spy(monkeypatch, tables.INGEST_STATE, lambda ops: sent.append(_keys(ops)))
    return sent


def test_a_commit_too_big_for_one_transaction_goes_in_several(pipeline, small_limits):
    tenant = pipeline.add_tenant("Big Commit Co", alerts=250)
    run = pipeline.fetch(tenant)
    assert (run.outcome, run.new) == ("success", 250)
    steps = [keys for keys in small_limits if any(k.startswith("out:") for k in keys)
             or "cursor" in keys]
    assert len(steps) > 3  # three pages: their commits were split
    assert sum(1 for keys in small_limits for k in keys if k.startswith("out:")) > 3
    order = "".join(k[:4] for keys in small_limits for k in keys
                    if k.startswith(("out:", "idx:")) or k == "cursor")
    commits = order.split("curs")[:-1]  # the cursor comes last in every commit
    assert len(commits) == 3
    for commit in commits:  # split: outbox rows first, then the index; else one transaction
        assert re.fullmatch(r"(out:)+(idx:)+|(idx:)*(out:)*", commit), commit
    assert sum(1 for c in commits if re.fullmatch(r"(out:)+(idx:)+", c)) >= 2
    events = pipeline.events(tenant.tenant_id)
    assert len(events) == 250 == len({e["event_id"] for e in events})
    assert len(pipeline.rows(tenant.tenant_id)) == 250


def test_worker_killed_inside_a_split_commit_loses_nothing(pipeline, small_limits,
                                                           monkeypatch):
    tenant = pipeline.add_tenant("Half Commit Co", alerts=100)

    def die_at_the_index(ops):
        if any(key.startswith("idx:") for key in _keys(ops)):
            raise SystemExit("worker killed after the outbox rows, before the index")

    spy = _spy(monkeypatch, tables.INGEST_STATE, die_at_the_index)
    with pytest.raises(SystemExit):
        pipeline.fetch(tenant)
    state = pipeline.ingestor.states.of(tenant.tenant_id)
    assert state.cursor() == (None, None) and len(state.outbox_rows()) > 1
    monkeypatch.setattr(batch, "submit_transaction", spy)
    run = pipeline.fetch(tenant)
    assert run.new == 100  # the index never saw them: the same events again
    events = pipeline.events(tenant.tenant_id)
    assert {e["event_id"] for e in events} == {
        f"{tenant.tenant_id}:{a['id']}:{timefmt.normalize(a['lastUpdateTime'])}"
        for a in pipeline.rows(tenant.tenant_id).values()}
    assert max(Counter(e["event_id"] for e in events).values()) == 2  # consumers dedupe
    assert pipeline.fetch(tenant).new == 0


def _relay_requests(pipeline, tenant_id: str) -> int:
    client = tables.queue(pipeline.storage, tables.RELAY_QUEUE)
    found = 0
    while batch := list(client.receive_messages(messages_per_page=32, max_messages=32,
                                                visibility_timeout=60)):
        found += sum(RelayRequest.parse(m.content).tenant_id == tenant_id for m in batch)
    return found


def test_a_run_asks_the_relay_at_its_first_commit_and_after_its_last(pipeline, monkeypatch):
    """Not once per commit: the relay sends every outbox row it finds."""
    monkeypatch.setattr(ingest, "CHUNK_ALERTS", 40)
    pipeline = pipeline.with_settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="0")
    tenant = pipeline.add_tenant("Few Relays Co", alerts=200)
    with_events = []  # commits that wrote an outbox row
    _spy(monkeypatch, tables.INGEST_STATE, lambda ops: with_events.append(1) if any(
        key.startswith("out:") for key in _keys(ops)) else None)
    assert pipeline.fetch(tenant).new == 200
    assert len(with_events) == 5 and _relay_requests(pipeline, tenant.tenant_id) == 2
    assert len(pipeline.events(tenant.tenant_id)) == 200
    monkeypatch.setattr(ingest, "RELAY_EVERY", 0.0)  # as in a run longer than RELAY_EVERY
    with_events.clear()
    pipeline.sim.generate(tenant.tenant_id, 120, age_seconds=60)
    assert pipeline.fetch(tenant).new == 120
    assert len(with_events) == 3 == _relay_requests(pipeline, tenant.tenant_id)


def test_worker_killed_after_commit_before_the_relay_message(pipeline, monkeypatch):
    tenant = pipeline.add_tenant("Lost Relay Co", alerts=10)
    relay_queue = pipeline.ingestor.relay_queue.sender

    def lost(*args, **kwargs):
        raise SystemExit("worker killed before the relay message")

    monkeypatch.setattr(relay_queue, "send_message", lost)
    with pytest.raises(SystemExit):
        pipeline.fetch(tenant)
    monkeypatch.undo()
    pipeline.fetch(tenant)  # finds the outbox row and asks for its relay
    events = pipeline.events(tenant.tenant_id)
    assert len({e["event_id"] for e in events}) == len(events)
    assert len(events) == 10


def test_250_alerts_sharing_one_last_update_time_with_pages_of_100(pipeline):
    tenant = pipeline.add_tenant("Burst Co")
    made = pipeline.sim.generate(tenant.tenant_id, 250, same_last_update_time=True,
                                 age_seconds=60)
    run = pipeline.fetch(tenant)
    assert run.new == 250 and run.pages == 3
    assert set(pipeline.rows(tenant.tenant_id)) == set(made["ids"])
    assert len(pipeline.events(tenant.tenant_id)) == 250
    again = pipeline.fetch(tenant)
    assert (again.new, again.changed) == (0, 0)
    assert pipeline.events(tenant.tenant_id) == []


def test_more_than_a_page_at_one_time_then_new_alerts_after_it(pipeline):
    tenant = pipeline.add_tenant("Burst Then Trickle Co")
    pipeline.sim.generate(tenant.tenant_id, 130, same_last_update_time=True, age_seconds=120)
    pipeline.fetch(tenant)
    later = pipeline.sim.generate(tenant.tenant_id, 5)
    run = pipeline.fetch(tenant)
    assert run.new == 5
    assert {e["alert_id"] for e in pipeline.events(tenant.tenant_id)} >= set(later["ids"])


def test_updated_alert_is_seen_as_changed(pipeline):
    tenant = pipeline.add_tenant("Changing Co", alerts=5)
    pipeline.fetch(tenant)
    pipeline.events(tenant.tenant_id)
    alert_id = pipeline.sim.alerts(tenant.tenant_id)[2]["id"]
    progressed = pipeline.sim.update_alert(tenant.tenant_id, alert_id)
    run = pipeline.fetch(tenant)
    assert (run.new, run.changed) == (0, 1)
    (event,) = pipeline.events(tenant.tenant_id)
    assert event["change"] == "updated"
    assert event["changed"]["status"] == ["New", "InProgress"]
    assert event["changed"]["assignedTo"] == [None, progressed["assignedTo"]]
    assert event["version"].startswith(progressed["lastUpdateTime"][:19])
    assert pipeline.rows(tenant.tenant_id)[alert_id]["status"] == "InProgress"


def test_429_puts_the_tenant_back_with_the_retry_delay(pipeline):
    tenant = pipeline.add_tenant("Throttled Co", alerts=5)
    pipeline.sim.fault(tenant.tenant_id, "status", status=429, retry_after=120)
    run = pipeline.fetch(tenant)
    assert run.outcome == "throttled"
    saved = pipeline.tenants.get(tenant.tenant_id)
    assert saved.throttled_until is not None
    delay = (saved.throttled_until - saved.fetch_queued_at).total_seconds()
    assert 115 <= delay <= 125
    queue = tables.queue(pipeline.storage, tables.FETCH_QUEUE)
    visible = [m for m in queue.peek_messages(max_messages=32)
               if tenant.tenant_id in m.content]
    assert visible == []  # the retry waits out Retry-After


def test_500s_are_retried_by_the_client_then_succeed(pipeline):
    tenant = pipeline.add_tenant("Flaky Co", alerts=5)
    pipeline.sim.fault(tenant.tenant_id, "status", status=503, count=2)
    run = pipeline.fetch(tenant)
    assert run.outcome == "success" and run.new == 5


def test_persistent_500s_fail_the_run_and_are_recorded(pipeline):
    tenant = pipeline.add_tenant("Down Co", alerts=5)
    pipeline.sim.fault(tenant.tenant_id, "status", status=500, count=8)
    with pytest.raises(DefenderError):
        pipeline.fetch(tenant)
    saved = pipeline.tenants.get(tenant.tenant_id)
    assert saved.consecutive_failures == 1 and "500" in saved.last_error
    assert saved.status == TenantStatus.ACTIVE
    pipeline.sim.clear_faults(tenant.tenant_id)
    assert pipeline.fetch(tenant).new == 5
    assert pipeline.tenants.get(tenant.tenant_id).consecutive_failures == 0


def test_timeouts_and_malformed_json_are_transient(pipeline):
    tenant = pipeline.add_tenant("Slow Co", alerts=3)
    pipeline.ingestor.client = DefenderClient(0.5, pipeline.settings.identity.ca_bundle)
    pipeline.sim.fault(tenant.tenant_id, "hang", count=3, seconds=2)
    with pytest.raises(DefenderError, match="unreachable"):
        pipeline.fetch(tenant)
    pipeline.sim.fault(tenant.tenant_id, "malformed")
    with pytest.raises(DefenderError, match="malformed"):
        pipeline.fetch(tenant)
    assert pipeline.tenants.get(tenant.tenant_id).consecutive_failures == 2
    assert pipeline.fetch(tenant).new == 3


def test_a_page_that_breaks_off_keeps_its_committed_chunks(pipeline, monkeypatch):
    """Pages are stored as they arrive: a body that ends mid-page keeps the chunks already
    committed, and the retry starts after them without a duplicate event."""
    monkeypatch.setattr(ingest, "CHUNK_ALERTS", 100)
    pipeline = pipeline.with_settings(FETCH_PAGE_SIZE="10000")
    tenant = pipeline.add_tenant("Cut Co", alerts=250)
    pipeline.sim.fault(tenant.tenant_id, "cut", after=150)
    with pytest.raises(DefenderError, match="malformed"):
        pipeline.fetch(tenant)
    stored = pipeline.rows(tenant.tenant_id)
    assert len(stored) == 100  # one whole chunk, no part of the next
    state = pipeline.ingestor.states.of(tenant.tenant_id)
    cursor, _ = state.cursor()
    assert cursor is not None
    assert cursor.watermark == max(timefmt.normalize(a["lastUpdateTime"])
                                   for a in stored.values())
    run = pipeline.fetch(tenant)
    assert (run.outcome, run.new, run.api_calls) == ("success", 150, 1)
    events = pipeline.events(tenant.tenant_id)
    assert len(events) == 250 == len({e["event_id"] for e in events})
    assert len(pipeline.rows(tenant.tenant_id)) == 250


@pytest.mark.parametrize(("body", "alerts"), [
    ('{"@odata.context": "x", "value": []}', []),
    ('{"error": {"code": "x"}}', None),
    ('{"value": {}}', None),
    ('{"value": [], "more": "' + "x" * 70_000 + '"}', []),
    ('{"value": [], "more": "' + "x" * 70_000 + '"', None),
])
def test_a_page_without_alerts_must_say_so(pipeline, body, alerts):
    tenant = pipeline.add_tenant("Odd Co")
    client = pipeline.ingestor.client
    token = pipeline.ingestor.tokens.token(tenant.tenant_id)
    pipeline.sim.fault(tenant.tenant_id, "body", body=body)
    base = pipeline.settings.identity.api_base()
    if alerts is None:
        with pytest.raises(DefenderError, match=r"no alert list|malformed"):
            client.list_alerts(base, token, filter_=None, top=10)
    else:
        assert client.list_alerts(base, token, filter_=None, top=10) == alerts


def test_consent_revoked_in_the_middle_of_a_run(pipeline, monkeypatch):
    tenant = pipeline.add_tenant("Revoking Co", alerts=250)
    client = pipeline.ingestor.client
    real = client.page
    calls = []

    def revoke_after_first(*args, **kwargs):
        if len(calls) == 1:
            pipeline.sim.revoke(tenant.tenant_id, pipeline.simulator.config.client_id)
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "page", revoke_after_first)
    run = pipeline.fetch(tenant)
    assert run.outcome == "consent_revoked"
    saved = pipeline.tenants.get(tenant.tenant_id)
    assert saved.status == TenantStatus.CONSENT_REVOKED
    assert saved.status_reason == "app_not_found_in_tenant"
    # the page read before the revocation is kept, with its events
    assert len(pipeline.rows(tenant.tenant_id)) == 100
    assert len(pipeline.events(tenant.tenant_id)) == 100
    assert pipeline.fetch(tenant).outcome == "skipped"  # not retried forever


@pytest.mark.parametrize(("setup", "status", "reason"), [
    ("no_defender", TenantStatus.UNAVAILABLE, "no_defender"),
    ("disabled", TenantStatus.UNAVAILABLE, "no_defender"),
    ("no_role", TenantStatus.UNAVAILABLE, "permission_missing"),
    ("no_consent", TenantStatus.CONSENT_REVOKED, "app_not_found_in_tenant"),
])
def test_token_and_permission_errors_set_the_tenant_status(pipeline, setup, status, reason):
    tenant = pipeline.add_tenant(f"Broken {setup}")
    tid = tenant.tenant_id
    if setup == "no_defender":
        pipeline.sim.set_defender(tid, "none")
    elif setup == "disabled":
        pipeline.sim.set_defender(tid, "disabled")
    elif setup == "no_role":
        pipeline.sim.grant(tid, pipeline.simulator.config.client_id, roles={})
    else:
        pipeline.sim.revoke(tid, pipeline.simulator.config.client_id)
    pipeline.fetch(tenant)
    saved = pipeline.tenants.get(tid)
    assert (saved.status, saved.status_reason) == (status, reason)


def test_unknown_tenant_is_unavailable(pipeline):
    from shared.model import Tenant

    ghost = pipeline.tenants.add(Tenant("9d3a1f7e-0000-4000-8000-00000000dead", "Ghost Co"))
    pipeline.fetch(ghost)
    saved = pipeline.tenants.get(ghost.tenant_id)
    assert (saved.status, saved.status_reason) == (TenantStatus.UNAVAILABLE, "tenant_not_found")


def test_bad_mssp_secret_is_one_app_wide_error(pipeline):
    from shared.config import Settings
    from shared.microsoft.identity import Tokens
    from shared.services import ingestor_for
    from tests.integration.ingest_fixtures import ingest_env

    tenant = pipeline.add_tenant("Innocent Co", alerts=2)
    settings = Settings.from_env(ingest_env(pipeline.simulator, pipeline.storage,
                                            MSSP_CLIENT_SECRET="wrong-secret"))
    broken = ingestor_for(settings, Tokens(settings.identity), pipeline.ingestor.client)
    from shared.messages import FetchRequest

    run = broken.run(FetchRequest(tenant.tenant_id))
    assert run.outcome == "app_error"
    saved = pipeline.tenants.get(tenant.tenant_id)
    assert saved.status == TenantStatus.ACTIVE and saved.consecutive_failures == 0
    health = broken.app_health.client.get_entity("app", "identity")
    assert health["Reason"] == "bad_client_secret"


def test_alert_with_2_mib_of_evidence_is_kept_whole(pipeline):
    tenant = pipeline.add_tenant("Big Evidence Co")
    made = pipeline.sim.generate(tenant.tenant_id, 1, evidence_bytes=2 * 1024 * 1024)
    pipeline.sim.generate(tenant.tenant_id, 3)
    run = pipeline.fetch(tenant)
    assert run.new == 4
    stored = pipeline.rows(tenant.tenant_id)[made["ids"][0]]
    source = {a["id"]: a for a in pipeline.sim.alerts(tenant.tenant_id)}[made["ids"][0]]
    assert stored == source
    assert not pipeline.row(tenant.tenant_id, made["ids"][0])["EvidenceTruncated"]
    (event,) = [e for e in pipeline.events(tenant.tenant_id)
                if e["alert_id"] == made["ids"][0]]
    assert len(str(event)) < 48_000


def test_alert_ids_with_forbidden_key_characters(pipeline):
    tenant = pipeline.add_tenant("Odd Ids Co")
    base = pipeline.sim.alerts(tenant.tenant_id)
    template = pipeline.sim.generate(tenant.tenant_id, 1)["ids"][0]
    alert = next(a for a in pipeline.sim.alerts(tenant.tenant_id) if a["id"] == template)
    odd = [{**alert, "id": weird} for weird in ("a/b", "c\\d", "e#f?g", "h%2Fi", "tab\tx")]
    pipeline.sim.add_alerts(tenant.tenant_id, odd)
    assert base == []
    pipeline.fetch(tenant)
    assert set(pipeline.rows(tenant.tenant_id)) == {template, "a/b", "c\\d", "e#f?g", "h%2Fi",
                                                    "tab\tx"}


def test_alerts_without_a_creation_time_share_a_chunk_with_others(pipeline):
    """Their index day comes from the version; it must be a day like any other, or the
    range query over the chunk's days fails."""
    tenant = pipeline.add_tenant("No Birthday Co")
    template = pipeline.sim.generate(tenant.tenant_id, 1, age_seconds=3 * 86400)["ids"][0]
    alert = next(a for a in pipeline.sim.alerts(tenant.tenant_id) if a["id"] == template)
    odd = [{k: v for k, v in alert.items() if k != "alertCreationTime"} | {"id": f"nb{i}"}
           for i in range(3)] + [{**alert, "id": "bad-time", "alertCreationTime": "soon"}]
    pipeline.sim.add_alerts(tenant.tenant_id, odd)
    pipeline.sim.generate(tenant.tenant_id, 5)
    assert pipeline.fetch(tenant).new == 10  # the template too
    assert pipeline.fetch(tenant).new == 0


def test_a_run_forgets_finished_days_and_reads_them_again(pipeline, monkeypatch):
    """Creation days A, B, C, D, A in successive chunks (then the template's): A is
    forgotten at the fourth chunk (its commit is settled by then: with two commits in
    flight, the third waited for it), read again for the fifth (with its new ETag), and
    every alert of every day is known to the next run."""
    monkeypatch.setattr(ingest, "CHUNK_ALERTS", 10)
    pipeline = pipeline.with_settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="0")
    tenant = pipeline.add_tenant("Many Days Co")
    template = pipeline.sim.generate(tenant.tenant_id, 1, age_seconds=7200)["ids"][0]
    alert = next(a for a in pipeline.sim.alerts(tenant.tenant_id) if a["id"] == template)
    base = timefmt.to_datetime(alert["lastUpdateTime"])
    days = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-01"]
    made = [{**alert, "id": f"day{n}",
             "alertCreationTime": f"{days[n // 10]}T12:00:00Z",
             "lastUpdateTime": timefmt.from_datetime(base - timedelta(seconds=100 - n))}
            for n in range(50)]
    pipeline.sim.add_alerts(tenant.tenant_id, made)
    loads = []
    real_load = IngestState.load_index

    def counted(self, wanted, into=None):
        loads.append(sorted(set(wanted) - (into.days if into else set())))
        return real_load(self, wanted, into)

    monkeypatch.setattr(IngestState, "load_index", counted)
    assert pipeline.fetch(tenant).new == 51
    assert [day for days_loaded in loads for day in days_loaded].count("20260301") == 2
    for n in (0, 45):  # one alert of A's first chunk, one of its second
        pipeline.sim.update_alert(tenant.tenant_id, f"day{n}", {"status": "Resolved"})
    run = pipeline.fetch(tenant)
    assert (run.new, run.changed) == (0, 2)
    events = pipeline.events(tenant.tenant_id)
    assert len(events) == 53 == len({e["event_id"] for e in events})
