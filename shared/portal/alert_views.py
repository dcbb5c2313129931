"""The alert page, its action forms and the audit page, on the Portal's plumbing (who is
asking, CSRF, same origin, rendering). Reads are keyed by the alert (alert_page.py); the
actions go through the triage service, which writes to Defender, records the audit entry
and stores what Defender answered; this module only says what came of it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from shared.alerts.view import MDE, AlertView
from shared.portal import alert_page, auth, triage_forms
from shared.portal.audit_page import AuditFilter, AuditReader
from shared.portal.exchange import Request, Response
from shared.portal.triage_forms import Said, Triage
from shared.storage.siem_feed import SiemFeedRepository
from shared.triage.model import InvalidChange


class AlertViews:
    """`portal`: the shared.portal.pages.Portal these pages are part of (its reads and
    its rendering)."""

    def __init__(self, portal: Any, base: str, feed: SiemFeedRepository | None,
                 triage: Triage | None, audit: AuditReader | None) -> None:
        self.portal, self.base = portal, base
        self.feed, self.triage, self.audit = feed, triage, audit
        identity = portal.settings.identity
        self.simulated = alert_page.simulated(identity.api_base_override)

    # the alert page ---------------------------------------------------------------------
    def page(self, request: Request, principal: auth.Principal, status: int = 200,
             said: Said | None = None, shown: dict[str, Any] | None = None) -> Response:
        portal = self.portal
        tenant = portal._find(request.route.get("tenant_id", ""))
        if tenant is None:
            return portal._not_found(principal, "tenant")
        tid, alert_id = tenant.tenant_id, request.route.get("alert_id", "")
        # `shown`: what Defender answered a triage action (its own schema)
        found = (shown, MDE) if shown else (
            portal.alert_rows.alert_and_schema(tid, alert_id) if alert_id else None)
        if found is None:
            return portal._not_found(principal, "alert stored for this tenant")
        view = AlertView.of(*found)
        retention = portal.settings.siem.retention_days
        versions = self.feed.of_alert(tid, alert_id, alert_page.version_days(
            view.fields(), retention), alert_page.MAX_VERSIONS) if self.feed else []
        blocked, read_only_tenant = triage_forms.blocked(
            principal, portal.cfg, tenant, self.triage is not None, "alerts")
        incident_id = alert_page.shown(view)["incidentId"]
        return portal._page(
            "portal/alert.html", status, principal=principal, tenant=tenant,
            incident_page=self._incident_page(tenant, incident_id),
            incident_defender=alert_page.defender_incident_link(tid, incident_id)
            if incident_id else "",
            alert=alert_page.shown(view),
            alert_id=alert_id, version=view.last_update or "",
            evidence=alert_page.evidence_rows(view), evidence_total=view.evidence_count,
            comments=alert_page.comments(view), user=alert_page.related_user(view),
            techniques=alert_page.techniques(view), versions=versions,
            changes=alert_page.changes, emails=portal.outbox.for_alert(
                tid, alert_id, alert_page.MAX_EMAILS),
            audit=list(self.audit.for_alert(tid, alert_id)) if self.audit else [],
            audit_on=self.audit is not None,
            defender=alert_page.defender_link(tid, alert_id), simulated=self.simulated,
            path=alert_page.page_path(self.base, tid, alert_id),
            blocked=blocked, read_only_tenant=read_only_tenant,
            nonce=triage_forms.nonce(), verdicts=triage_forms.verdict_groups(),
            statuses=triage_forms.STATUS_CHOICES, said=said,
            retention=retention, max_versions=alert_page.MAX_VERSIONS,
            indicators=portal.cluster_views.for_alert(tid, alert_id))

    def _incident_page(self, tenant: Any, incident_id: str) -> str:
        """The hub's page of the alert's incident: a graph tenant's, when it is stored
        ("" otherwise: an mde tenant's incidents are only in Defender)."""
        views = self.portal.incident_views
        if not incident_id or getattr(tenant, "source", "mde") != "graph" \
                or views.incidents is None \
                or views.incidents.get(tenant.tenant_id, incident_id) is None:
            return ""
        return str(views.link(tenant.tenant_id, incident_id))

    def act(self, request: Request, principal: auth.Principal) -> Response:
        portal = self.portal
        tenant = portal._find(request.route.get("tenant_id", ""))
        action = request.route.get("action", "")
        if tenant is None or action not in triage_forms.ACTIONS:
            return portal._not_found(principal, "tenant or action")
        if not principal.may_act(portal.cfg):
            return portal._page("portal/denied.html", 403, principal=principal,
                                signed_in=True, reason=auth.READ_ONLY_ANALYST)
        if self.triage is None:
            return self.page(request, principal, 503, Said(
                503, "bad", "Acting on alerts is not available in this deployment."))
        alert_id = request.route.get("alert_id", "")
        if not alert_id or portal.alert_rows.get_stored(tenant.tenant_id, alert_id) is None:
            return portal._not_found(principal, "alert stored for this tenant")
        try:
            change, seen, action_id = triage_forms.submitted(action, request.form, principal)
        except InvalidChange as exc:
            return self.page(request, principal, 400, Said(
                400, "bad", f"Not sent ({exc.field}): {exc.message}"))
        applied = self.triage.apply(triage_forms.actor(principal), tenant.tenant_id,
                                    alert_id, change, seen_version=seen, action_id=action_id)
        retry = getattr(applied, "retry_after", None) or \
            getattr(getattr(applied, "entry", None), "extra", {}).get("retry_after", "")
        told = triage_forms.said(applied.outcome, applied.detail, str(retry or ""))
        return self.page(request, principal, told.status, told,
                         shown=applied.alert if isinstance(applied.alert, dict) else None)

    # the audit page ---------------------------------------------------------------------
    def audit_page(self, request: Request, principal: auth.Principal) -> Response:
        portal = self.portal
        tenants = portal.admin.tenants.names()
        flt = AuditFilter.parse(request.params, {t.tenant_id for t in tenants})
        entries: list[Any] = []
        following = None
        if self.audit is not None:
            try:
                found, following = self.audit.page(**flt.query())
            except ValueError:  # a continuation this page never gave
                return portal._page("portal/message.html", 400, principal=principal,
                                    heading="That page of the audit trail does not exist",
                                    message="The link's continuation is not one this portal "
                                            "gave. Start again from the first page.")
            entries = list(found)
        next_url = (f"{self.base}/audit?{urlencode(flt.params(continuation=following))}"
                    if following else "")
        return portal._page("portal/audit.html", principal=principal, tenants=tenants,
                            names={t.tenant_id: t.display_name for t in tenants},
                            flt=flt, entries=entries, next_url=next_url,
                            first_url=f"{self.base}/audit?{urlencode(flt.params())}",
                            outcomes=("done", "conflict", "refused", "throttled", "failed"),
                            audit_on=self.audit is not None, alert_path=alert_page.page_path)

