"""The bulk action's request and answers (the keyed API and its OpenAPI document are
generated from these models), and "every alert matching this filter" as targets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from shared.model import parse_tenant_id
from shared.portal import queries
from shared.storage.alert_index import AlertIndex
from shared.storage.bulk_jobs import BulkItem, TenantWork
from shared.storage.tenants import TenantName
from shared.triage.bulk import MAX_ALERTS, BadSelection, JobStatus, Target
from shared.triage.model import Change
from shared.validation import (
    Label,
    Reply,
    Strict,
    Text,
    Timestamp,
    ValidationError,
    absent,
)

JobId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
TenantId = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"}),
                     StringConstraints(min_length=1, max_length=64)]
AlertId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class BulkAlert(Strict):
    tenant: TenantId
    alert: AlertId


class BulkFilter(Strict):
    """The alerts page's filter (its query parameters)."""

    tenant: TenantId | None = None
    severity: Label | None = None
    status: Label | None = None
    category: Label | None = None
    device_group: Label | None = None
    range: Label | None = None


class ChangeBody(Strict):
    """The fields to set, by Defender's names; a comment is added."""

    status: Text | None = None
    assignedTo: Text | None = None  # Defender's name
    classification: Text | None = None
    determination: Text | None = None
    comment: Text | None = None

    def change(self) -> Change:
        return Change(status=self.status, assigned_to=self.assignedTo,
                      classification=self.classification, determination=self.determination,
                      comment=self.comment)


class BulkRequest(Strict):
    """POST /api/alerts/bulk: `alerts` or `filter` (one of them), and the change.
    `job_id` (optional, 32 hex digits): a request sent again with it makes no second
    job."""

    alerts: list[BulkAlert] | None = Field(None, max_length=MAX_ALERTS)
    filter: BulkFilter | None = None
    change: ChangeBody
    job_id: JobId | None = None

    def targets(self, match: Callable[[dict[str, str]], tuple[list[Target], str]]
                ) -> tuple[list[Target], str]:
        """The alerts to change and where they came from; `match` resolves a filter
        (`matching` on the index). ValidationError naming the field otherwise."""
        if (self.alerts is None) == (self.filter is None):
            raise ValidationError([{"field": "body", "message": "give alerts or filter, "
                                                                "not both"}])
        if self.filter is not None:
            return match(self.filter.model_dump(exclude_none=True))
        errors, targets = [], []
        for n, alert in enumerate(self.alerts or []):
            try:
                targets.append(Target(parse_tenant_id(alert.tenant), alert.alert))
            except ValueError:
                errors.append({"field": f"alerts.{n}.tenant", "message": "must be a GUID"})
        if errors:
            raise ValidationError(errors)
        return targets, "selection"


class BulkAccepted(Reply):
    """202: the job is queued; its progress is at `status_url`."""

    job_id: str
    status_url: str
    total: int
    tenants: int


class BulkCounts(Reply):
    total: int
    done: int
    refused: int
    failed: int
    pending: int


class BulkTenant(Reply):
    tenant_id: str
    tenant_name: str
    total: int
    done: int
    refused: int
    failed: int
    calls: int = Field(description="Defender calls made (batchUpdate and PATCH)")
    finished: bool
    note: str = Field(description="why it waits or stopped (throttled until, refused)")

    @classmethod
    def of(cls, work: TenantWork) -> BulkTenant:
        return cls(tenant_id=work.tenant_id, tenant_name=work.tenant_name, total=work.total,
                   done=work.done, refused=work.refused, failed=work.failed,
                   calls=work.calls, finished=work.finished, note=work.note)


class BulkOutcome(Reply):
    tenant_id: str
    alert_id: str
    outcome: Literal["pending", "done", "refused", "failed"]
    detail: str
    at: Timestamp | None = absent("when the outcome was recorded")

    @classmethod
    def of(cls, item: BulkItem) -> BulkOutcome:
        return cls(tenant_id=item.tenant_id, alert_id=item.alert_id,
                   outcome=item.outcome,  # type: ignore[arg-type]
                   detail=item.detail, at=item.at)


class BulkJobView(Reply):
    """GET /api/alerts/bulk/{job_id}: progress, each tenant's part, one page of alerts."""

    model_config = ConfigDict(title="BulkJob")

    job_id: str
    actor: str
    change: dict[str, Any]
    source: str
    created_at: Timestamp
    finished: bool
    counts: BulkCounts
    tenants: list[BulkTenant]
    alerts: list[BulkOutcome]
    next: str | None = absent("the `after` of the next page of alerts")

    @classmethod
    def of(cls, status: JobStatus) -> BulkJobView:
        job = status.job
        return cls(job_id=job.job_id, actor=job.actor.name, change=job.change.body(),
                   source=job.source, created_at=job.created_at, finished=status.finished,
                   counts=BulkCounts(**status.counts),
                   tenants=[BulkTenant.of(w) for w in status.works],
                   alerts=[BulkOutcome.of(i) for i in status.items],
                   next=status.next_after or None)


def matching(index: AlertIndex, tenants: list[TenantName], params: dict[str, str],
             now: datetime | None = None) -> tuple[list[Target], str]:
    """Every alert the alerts page shows for these filter parameters (its first page on),
    up to MAX_ALERTS, and the filter in words; BadSelection above, or when the index read
    stopped before it could count them all."""
    flt = queries.AlertFilter.parse({k: v for k, v in params.items() if k != "before"},
                                    {t.tenant_id for t in tenants})
    kept = flt.params()
    ignored = sorted(k for k, v in params.items()
                     if k != "before" and v and kept.get(k) != v.strip()[:200])
    if ignored:  # the list reads an unknown value as "any": here it would widen the job
        raise BadSelection(f"the filter's {', '.join(ignored)} is not one the alerts list "
                           "knows (a registered tenant, a severity, a status, a range)")
    page = queries.search_alerts(index, tenants, flt, now, page_size=MAX_ALERTS + 1)
    if len(page.rows) > MAX_ALERTS or page.partial:
        raise BadSelection(f"more than {MAX_ALERTS:,} alerts match this filter; a bulk action "
                      "takes at most that many: narrow the filter (tenant, status, time "
                      "range)")
    words = ", ".join(f"{k}={v}" for k, v in flt.params().items())
    return [Target(r.tenant_id, r.alert_id, {"status": r.status}, r.title)
            for r in page.rows], f"filter: {words}"
