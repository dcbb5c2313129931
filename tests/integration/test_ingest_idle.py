"""An idle fetch (nothing new at Defender) is cheap: counted at the HTTP layer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

_send = requests.Session.send


@contextmanager
def storage_requests() -> Iterator[list[str]]:
    """Every request the storage account answered while inside, as 'METHOD path?query'.

    Counted on the answer, as storage bills them: an attempt that died on a pooled
    connection the server had closed (and that the SDK then retried) never reached it.
    """
    seen: list[str] = []

    def send(self, request, **kwargs):
        response = _send(self, request, **kwargs)
        if "devstoreaccount1" in (request.url or ""):
            url = request.url.split("devstoreaccount1", 1)[1]
            seen.append(f"{request.method} {url}")
        return response

    requests.Session.send = send
    try:
        yield seen
    finally:
        requests.Session.send = _send


def _calls(pipeline, tenant_id: str) -> int:
    return pipeline.sim.counters()["tenants"][tenant_id]["calls"]


IDLE_REQUESTS = {  # storage requests of an idle fetch (was 15, then 6, with the overlap)
    "0": 3,  # state read, lease taken + call counted, tenant health (guarded by its etag)
    "300": 3,  # the same: the overlap's versions are known from the cursor row
}


@pytest.mark.parametrize("overlap", sorted(IDLE_REQUESTS))
def test_an_idle_fetch_is_one_defender_call_and_few_storage_requests(pipeline, overlap):
    pipeline = pipeline.with_settings(FETCH_OVERLAP_SECONDS=overlap)
    tenant = pipeline.add_tenant(f"Idle Cost {overlap} Co", alerts=30)
    pipeline.fetch(tenant)
    pipeline.events(tenant.tenant_id)
    for _ in range(2):
        before = _calls(pipeline, tenant.tenant_id)
        request = pipeline.fanned_out(tenant)  # the tenant as the fan-out read it
        with storage_requests() as seen:
            run = pipeline.ingestor.run(request)
        assert (run.outcome, run.new, run.changed) == ("success", 0, 0)
        assert _calls(pipeline, tenant.tenant_id) - before == 1
        assert len(seen) <= IDLE_REQUESTS[overlap], "\n".join(seen)
        assert not any("RunHistory" in s for s in seen)  # idle: no history row
    health = pipeline.tenants.get(tenant.tenant_id)
    assert health.last_success_at is not None and health.last_success_at >= run.started
    minutes, _ = pipeline.ingestor.states.of(tenant.tenant_id).calls()
    assert sum(minutes.values()) == 3  # every call counted, the idle ones too
    assert pipeline.events(tenant.tenant_id) == []


def test_a_fetch_that_finds_something_still_records_everything(pipeline):
    tenant = pipeline.add_tenant("Busy Again Co", alerts=10)
    pipeline.fetch(tenant)
    pipeline.fetch(tenant)  # idle
    pipeline.sim.generate(tenant.tenant_id, 5, age_seconds=0)
    with storage_requests() as seen:
        run = pipeline.fetch(tenant)
    assert (run.outcome, run.new) == ("success", 5)
    assert any("RunHistory" in s for s in seen)
    history = pipeline.ingestor.runs.recent(tenant.tenant_id)
    assert [(r.outcome, r.new) for r in history[:2]] == [("success", 5), ("success", 10)]
    assert pipeline.ingestor.tenants.get(tenant.tenant_id).last_success_at >= run.started
    minutes, _ = pipeline.ingestor.states.of(tenant.tenant_id).calls()
    assert sum(minutes.values()) == 3
    assert len(pipeline.events(tenant.tenant_id)) == 15
    state = pipeline.ingestor.states.of(tenant.tenant_id)
    assert state.acquire_lease("someone else", 60)[0]  # the lease was released
