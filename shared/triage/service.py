"""One analyst's (or one API key's) change of one alert, written to the customer's
Defender and recorded once in the audit trail.

Why this order: a change Defender would refuse is refused before any call; a tenant that
cannot take it (not active, read-only) is refused before a token is asked for; a change
made from a stale page is not sent at all (`seen_version`: the alert moved in Defender
since, so the analyst sees the new state rather than overwriting it blindly). A write is
sent once: Defender's answer, whatever it is, is recorded under the action id, and the
same action id asked again gets that answer back without a second call (a comment added
twice cannot be taken back). The audit entry is written before the hub's own copy of the
alert (`store_own`): the evidence must not be lost because a cache write failed, and the
next fetch stores that version anyway.

An attempt is noted (`AuditTrail.intend`) before Defender is asked. A retry that finds an
earlier attempt noted but nothing recorded (its worker died between the call and the
record) reads the alert first: if Defender shows the change already (each field, and the
comment added since that attempt), it is recorded as done without a second call.
Known limit: two requests with one action id at the same instant can both write; one
entry is kept. The API's Idempotency-Key is for retries, which come one after the other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import timefmt
from shared.config import Settings
from shared.microsoft.defender import (
    DefenderClient,
    DefenderError,
    Forbidden,
    NotFound,
    Rejected,
    Throttled,
    Unauthorized,
)
from shared.microsoft.graph_security import (
    GRAPH_SCOPE,
    GRAPH_WRITE_PERMISSIONS,
    GraphSecurityClient,
)
from shared.microsoft.identity import TokenError, Tokens
from shared.model import Tenant, TenantStatus
from shared.storage.alerts import AlertRepository
from shared.storage.audit import AuditTrail
from shared.storage.tenants import TenantRepository
from shared.triage import graph_change, graph_write, model
from shared.triage.model import Actor, AuditEntry, Change

log = logging.getLogger(__name__)

READ_ONLY = ("the tenant granted read-only access: acting on its alerts needs the "
             "Alert.ReadWrite.All permission (re-consent to upgrade)")
GRAPH_READ_ONLY = ("the tenant granted read-only access: acting on its alerts through "
                   f"Microsoft Graph needs {GRAPH_WRITE_PERMISSIONS[0]} (re-consent to "
                   "upgrade)")
FIELDS = ("status", "assignedTo", "classification", "determination", "lastUpdateTime")

ExpectOwn = Callable[[str, list[str], dict[str, Any], Actor], None]
StoreOwn = Callable[..., Any]  # (tenant_id, document, actor[, schema="graph"])
Done = Callable[..., "Applied"]


class UnknownTenant(LookupError):
    """The tenant is not registered: nothing to act on, nothing recorded."""


@dataclass
class Applied:
    """What came of an action: the outcome, the alert as Defender has it (its answer, or
    its current state on a conflict; {} when Defender was not asked or said nothing),
    why, and the audit entry recorded."""

    outcome: str  # "done", "conflict", "refused", "throttled", "failed"
    alert: dict[str, Any]
    detail: str
    entry: AuditEntry
    retry_after: int | None = None
    repeated: bool = False  # the action id was recorded before: this is its answer

    @classmethod
    def of(cls, entry: AuditEntry, repeated: bool = False) -> Applied:
        return cls(entry.outcome, dict(entry.extra.get("alert") or {}), entry.detail, entry,
                   entry.extra.get("retry_after"), repeated)


def fields_of(alert: dict[str, Any]) -> dict[str, Any]:
    """The triage fields of a Defender alert (what before/after keep)."""
    return {name: alert.get(name) for name in FIELDS if name in alert}


def compact(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as an audit entry keeps Defender's answer (without its evidence)."""
    return model.compact(alert, ("evidence",), fields_of)


def same_version(a: str | None, b: str | None) -> bool:
    """Whether two lastUpdateTimes are one version (Defender's 7 digits or fewer)."""
    if not a or not b:
        return False
    try:
        return timefmt.normalize(a) == timefmt.normalize(b)
    except ValueError:
        return a == b


SKEW = timedelta(minutes=5)  # between the hub's clock and Defender's comment times


def reflected(alert: dict[str, Any], change: Change, since: datetime) -> bool:
    """Whether Defender's alert already shows the change (each field as asked, and the
    comment among those added since the first attempt): an earlier attempt sent it."""
    if any(alert.get(name) != value for name, value in change.fields().items()):
        return False
    if change.comment is None:
        return True
    for comment in alert.get("comments") or []:
        if not isinstance(comment, dict) or comment.get("comment") != change.comment:
            continue
        try:
            added = timefmt.to_datetime(timefmt.normalize(str(comment.get("createdTime"))))
        except ValueError:
            continue
        if added >= since - SKEW:
            return True
    return False


def new_action_id() -> str:
    return uuid.uuid4().hex


@dataclass
class TriageService:
    settings: Settings
    tenants: TenantRepository
    alerts: AlertRepository
    audit: AuditTrail
    client: DefenderClient
    tokens: Tokens
    expect_own: ExpectOwn = field(default=lambda tenant_id, alert_ids, fields, actor: None)
    store_own: StoreOwn = field(default=lambda tenant_id, document, actor, **_: None)
    # the token a write is made with (ACCESS may give triage its own app registration);
    # for a graph tenant it is called with Graph's scope as a second argument
    token_for: Callable[..., str] | None = None
    graph: GraphSecurityClient | None = None  # writes for `graph` tenants
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def apply(self, actor: Actor, tenant_id: str, alert_id: str, change: Change, *,
              seen_version: str | None = None, action_id: str | None = None) -> Applied:
        """Validate, check the tenant, check the version, write, record. InvalidChange
        before anything; UnknownTenant for a tenant not registered."""
        change.validate()
        action_id = action_id or new_action_id()
        recorded = self.audit.recorded(tenant_id, alert_id, action_id)
        if recorded is not None:
            return Applied.of(recorded, repeated=True)
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(tenant_id)
        before = self.alerts.triage_fields(tenant_id, alert_id)

        def done(outcome: str, detail: str, alert: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> Applied:
            extra: dict[str, Any] = {"alert": compact(alert or {})}
            if retry_after is not None:
                extra["retry_after"] = retry_after
            entry = AuditEntry(
                action_id=action_id, at=self.now(), actor=actor, tenant_id=tenant_id,
                alert_id=alert_id, change=change.body(), before=before or {},
                after=fields_of(alert) if outcome == "done" and alert else {},
                outcome=outcome, detail=detail, extra=extra)
            stored = self.audit.record(entry)
            return Applied.of(stored, repeated=stored.at != entry.at)

        refusal = self.refusal(tenant)
        if refusal:
            return done("refused", refusal)
        if tenant.source == graph_change.GRAPH:
            return self._apply_graph(tenant, actor, alert_id, change, seen_version,
                                     action_id, before, done)
        base = self.settings.identity.api_base(tenant.region)
        try:
            token = self.token_for(tenant) if self.token_for else self.tokens.token(tenant_id)
            current: dict[str, Any] | None = None
            earlier = self.audit.intend(tenant_id, alert_id, action_id, self.now())
            if earlier is not None:  # an attempt died after asking Defender, maybe
                current = self.client.get_alert(base, token, alert_id)
                if reflected(current, change, earlier):
                    return self._stored(done("done", "200 OK (sent by an earlier attempt "
                                             "of this action)", current), current, actor)
            if seen_version is not None or before is None:
                current = current or self.client.get_alert(base, token, alert_id)
                if seen_version is not None and not same_version(
                        current.get("lastUpdateTime"), seen_version):
                    return done("conflict", "the alert changed in Defender since "
                                f"{seen_version}: now {current.get('lastUpdateTime')}",
                                current)
                before = before or fields_of(current)
            self.expect_own(tenant_id, [alert_id], change.fields(), actor)
            answer = self.client.update_alert(base, token, alert_id, change.body())
        except (TokenError, DefenderError) as exc:
            return self._refused_call(exc, tenant_id, done, "Defender")
        return self._stored(done("done", "200 OK", answer), answer, actor)

    def _refused_call(self, exc: TokenError | DefenderError, tenant_id: str,
                      done: Done, api: str, needs: str = "",
                      half: str = "") -> Applied:
        return refused_call(exc, tenant_id, done, api, self.tenants, self.tokens, needs,
                            half)

    def _apply_graph(self, tenant: Tenant, actor: Actor, alert_id: str, change: Change,
                     seen_version: str | None, action_id: str,
                     before: dict[str, Any] | None, done: Done) -> Applied:
        """The same steps through Graph: PATCH for the fields, POST for the comment (two
        calls when both: Graph has no comment property on an alert's PATCH), then the
        alert read back when Graph's answers do not show it whole. The audit entry keeps
        the fields in Defender's spelling, as for an mde tenant."""
        tenant_id, graph = tenant.tenant_id, self.graph
        if graph is None:
            return done("failed", "no Graph client is configured for triage")
        item = graph_write.GraphItem(
            "alert", f"{tenant_id}/{alert_id}",
            read=lambda token: graph.get_alert(token, alert_id),
            patch=lambda token, body: graph.update_alert(token, alert_id, body),
            comment=lambda token, text: graph.add_comment(token, alert_id, text),
            reflected=graph_change.reflected, version=graph_change.VERSION,
            shaped=graph_change.shaped)
        return graph_write.write(
            item, change, graph_change.patch_body(change),
            token=lambda: self.token_for(tenant, GRAPH_SCOPE) if self.token_for
            else self.tokens.token(tenant_id, GRAPH_SCOPE),
            intend=lambda: self.audit.intend(tenant_id, alert_id, action_id, self.now()),
            seen_version=seen_version, known=before is not None, skew=SKEW,
            same_version=same_version, done=done,
            stored=lambda applied, document: self._stored_graph(applied, document, actor),
            refused=lambda exc, half: self._refused_call(
                exc, tenant_id, done, "Microsoft Graph",
                f"; it needs {GRAPH_WRITE_PERMISSIONS[0]}", half),
            before_write=lambda: self.expect_own(
                tenant_id, [alert_id], graph_change.canonical(change) | (
                    {"comment": change.comment} if change.comment else {}), actor))

    def _stored_graph(self, applied: Applied, document: dict[str, Any], actor: Actor
                      ) -> Applied:
        """The hub's copy of the Graph alert as answered, in Graph's schema."""
        return kept_copy(applied, document, "a Graph alert", lambda: self.store_own(
            applied.entry.tenant_id, document, actor, schema=graph_change.GRAPH))

    def _stored(self, applied: Applied, document: dict[str, Any], actor: Actor) -> Applied:
        """The hub's copy of the version Defender answered (OWN), after the audit entry."""
        return kept_copy(applied, document, "an alert", lambda: self.store_own(
            applied.entry.tenant_id, document, actor), always=True)

    @staticmethod
    def refusal(tenant: Tenant) -> str:
        """Why the tenant cannot take a change now ("" when it can); bulk jobs ask too."""
        if tenant.status != TenantStatus.ACTIVE:
            reason = f": {tenant.status_reason}" if tenant.status_reason else ""
            return f"the tenant is {tenant.status}{reason}"
        if tenant.access != "triage":
            return tenant.access_reason or (
                GRAPH_READ_ONLY if tenant.source == graph_change.GRAPH else READ_ONLY)
        return ""


def kept_copy(applied: Applied, document: dict[str, Any], what: str,
              store: Callable[[], Any], always: bool = False) -> Applied:
    """`applied`, after the hub's copy of what the API answered (`store`), which comes
    after the audit entry: a failure is logged, never raised, since the next fetch stores
    this version anyway. An empty answer is not stored unless `always`."""
    if not document and not always:
        return applied
    try:
        store()
    except Exception:
        log.exception("Triage: the hub's copy of %s of tenant %s not stored", what,
                      applied.entry.tenant_id)
    return applied


def refused_call(exc: TokenError | DefenderError, tenant_id: str, done: Done, api: str,
                 tenants: TenantRepository, tokens: Tokens, needs: str = "",
                 half: str = "") -> Applied:
    """What a failed token or call means, for Defender's API and Graph alike, alerts
    and incidents (`needs`: the permission a 403 names; `half`: what was written
    before the failure)."""
    if isinstance(exc, TokenError):
        return done("failed", f"no token for the tenant: {exc}")
    if isinstance(exc, Throttled):
        return done("throttled", f"429: {api} throttled the tenant{half}; retry after "
                    f"{exc.retry_after} s", retry_after=exc.retry_after)
    if isinstance(exc, Forbidden):
        reason = f"{api} refused a write (403): {exc}{needs}"[:500]
        tenants.set_access(tenant_id, "read", reason)
        return done("refused", reason + half)
    if isinstance(exc, NotFound):
        return done("failed", f"404: not found in {api}")
    if isinstance(exc, Rejected):
        return done("failed", f"400: {exc}{half}")
    if isinstance(exc, Unauthorized):
        tokens.forget(tenant_id)
        return done("failed", f"401: {exc}")
    # a 5xx or a broken connection after sending: the change may have been made
    return done("failed", f"{exc.status or 'no answer'}: {exc}; the change may "
                "or may not have been made: check the alert before repeating")

