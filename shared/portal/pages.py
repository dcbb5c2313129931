"""The portal's pages: authorise the request, read, render; forms that change something
check a CSRF token and where the browser says the form came from, then redirect (303).
A request for another host than PUBLIC_BASE_URL's gets 421 before anything else: a site
whose name was rebound to this machine's address must not read a page (its CSRF token)
nor change anything.

Requests and responses are plain data here; functions/portal.py maps them to HTTP.
Changes go through the same services as the admin API (TenantAdmin, RuleRepository,
Onboarding), so the portal can do nothing the API would refuse.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared import netloc
from shared.config import Settings
from shared.correlation.reads import CorrelationReads
from shared.model import Tenant, parse_tenant_id
from shared.notify.channels.delivery import ChannelDelivery
from shared.notify.channels.webhooks import Webhooks
from shared.notify.rules import GLOBAL, Rule
from shared.ops import health
from shared.portal import auth, queries
from shared.portal.alert_views import AlertViews
from shared.portal.audit_page import AuditReader
from shared.portal.chart import daily_chart
from shared.portal.cluster_pages import ClusterViews
from shared.portal.exchange import Request, Response
from shared.portal.incident_pages import IncidentViews
from shared.portal.rule_form import SEVERITIES, rule_from_form
from shared.portal.triage_forms import Triage
from shared.storage.alert_index import AlertIndex
from shared.storage.alerts import AlertRepository
from shared.storage.incidents import IncidentRepository
from shared.storage.mail_outbox import MailOutbox
from shared.storage.rules import RULE_ID, RuleRepository
from shared.storage.runs import RunHistory
from shared.storage.siem_feed import SiemFeedRepository
from shared.storage.tenant_directory import by_status
from shared.storage.tenant_summaries import Counts, TenantSummaries
from shared.storage.tenants import attention as attention_order
from shared.tenants.admin import Conflict, TenantAdmin
from shared.tenants.invitations import parse_invitation, parse_reconsent
from shared.tenants.onboarding import Onboarding
from shared.tenants.ops_notices import OpsNotices
from shared.tenants.source_move import SourceMove
from shared.triage import bulk_form
from shared.triage.bulk import BulkTriage
from shared.triage.model import Actor
from shared.validation import ValidationError
from shared.web.pages import SECURITY_HEADERS, csp, render

BASE = "/api/portal"
TENANT_ALERTS = 10  # the tenant page's newest alerts (of 7 days; the list has the rest)
OVERVIEW_PAGE = 100  # tenants a page of the overview shows (after those needing attention)
CHART_MAX_AGE = timedelta(minutes=5)  # how old the chart's totals over every tenant may be
DONE = {"pause": "Fetching is paused.", "resume": "Fetching resumes with the next run.",
        "offboard": "The tenant is offboarded.", "enable": "The rule is enabled.",
        "disable": "The rule is disabled.", "delete": "The rule is deleted.",
        "invite": "The invitation is ready: send its link to the customer.",
        "reconsent": "The re-consent invitation is ready: send its link (below) to the "
                     "customer's administrator.",
        "rules": "The rule is created.", "save": "The rule is saved.",
        "test": "The test post went to the channel.",
        "revoke": "The invitation is revoked: its link no longer works.",
        "move-to-graph": "The tenant is fetched from Microsoft Graph from its next run."}


def _redirect(location: str, **extra: str) -> Response:
    return Response(303, headers={"Location": location, **SECURITY_HEADERS, **extra})


class Portal:
    def __init__(self, settings: Settings, admin: TenantAdmin, rules: RuleRepository,
                 outbox: MailOutbox, onboarding: Onboarding, notices: OpsNotices,
                 alerts: AlertRepository, runs: RunHistory, *, alert_index: AlertIndex,
                 siem_status: Callable[[], list[dict[str, Any]]] = list,
                 summaries: TenantSummaries | None = None,
                 feed: SiemFeedRepository | None = None, triage: Triage | None = None,
                 audit: AuditReader | None = None, bulk: BulkTriage | None = None,
                 channels: ChannelDelivery | None = None,
                 source_move: SourceMove | None = None,
                 incidents: IncidentRepository | None = None,
                 incident_triage: Triage | None = None,
                 correlation: CorrelationReads | None = None) -> None:
        """`source_move`: moves tenants from mde to graph (None: not offered);
        `incidents`: graph tenants' incidents (None: no incident pages);
        `correlation`: indicators seen at several customers (None: no such pages)."""
        self.settings, self.cfg = settings, settings.portal
        self.channels = channels  # Teams/Slack: each channel's last result, test posts
        self.source_move = source_move
        self.bulk = bulk
        self.summaries = summaries
        self.siem_status = siem_status
        self.admin, self.rules, self.outbox, self.onboarding = admin, rules, outbox, onboarding
        self.runs, self.notices, self.alert_rows = runs, notices, alerts
        self.alert_index = alert_index
        public = settings.onboarding.public_base_url
        self.origins = {netloc.origin(public)}
        self.scheme, self.authority = urlsplit(public).scheme, netloc.authority(public)
        self.portal_url = f"{public}{BASE}"
        # the alert page, its actions and the audit page (alert_views.py)
        self.triage_views = AlertViews(self, BASE, feed, triage, audit)
        self.incident_views = IncidentViews(self, BASE, incidents, incident_triage, audit)
        self.cluster_views = ClusterViews(self, BASE, correlation)

    # plumbing ---------------------------------------------------------------------------
    def _page(self, template: str, status: int = 200, principal: auth.Principal | None = None,
              **context: Any) -> Response:
        body = render(template, mssp_name=self.settings.onboarding.mssp_name,
                      principal=principal, local=self.cfg.local, base=BASE,
                      csrf=auth.csrf_token(self.cfg, principal) if principal else "",
                      key_login=bool(self.cfg.key),
                      correlation=self.cluster_views.reads is not None, **context)
        return Response(status, body, {**SECURITY_HEADERS, "Content-Security-Policy": csp(),
                                       "Content-Type": "text/html; charset=utf-8",
                                       # no-referrer would make a form's Origin "null"
                                       "Referrer-Policy": "same-origin"})

    def _denied(self, exc: auth.Denied) -> Response:
        return self._page("portal/denied.html", exc.status, reason=str(exc),
                          signed_in=exc.status == 403)

    def _misdirected(self, request: Request) -> Response | None:
        """421 for a Host that is not PUBLIC_BASE_URL's host and port (a rebound name, or
        localhost for 127.0.0.1): nothing is read, signed or changed for it."""
        host = request.headers.get("host", "")
        if netloc.host_port(host, self.scheme) == self.authority:
            return None
        return self._page("portal/misdirected.html", 421, portal_url=self.portal_url,
                          host=host[:100])

    def _guard(self, request: Request, view: Callable[[Request, auth.Principal], Response]
               ) -> Response:
        if misdirected := self._misdirected(request):
            return misdirected
        try:
            principal = auth.authenticate(self.cfg, request.headers)
        except auth.Denied as exc:
            return self._denied(exc)
        forged = request.method == "POST" and not (self._from_here(request) and auth.csrf_ok(
            self.cfg, principal, request.form.get("csrf", "")))
        if forged:
            return self._page("portal/denied.html", 403, principal=principal, signed_in=True,
                              reason="This form expired or did not come from this portal. "
                                     "Reload the page and try again.")
        return view(request, principal)

    def _from_here(self, request: Request) -> bool:
        """The browser says the request came from our own pages: PUBLIC_BASE_URL's origin,
        never the request's own Host (a page whose name was rebound to us chooses it)."""
        return auth.same_origin(request.headers, self.origins)

    def _tenants(self) -> list[Tenant]:
        return self.admin.tenants.failing_first()

    # pages ------------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        return self._guard(request, self._overview)

    def _overview(self, request: Request, principal: auth.Principal) -> Response:
        now = datetime.now(UTC)
        listed = self.admin.tenants.directory()
        if listed is None or self.summaries is None:  # not backfilled yet: as before
            return self._whole_overview(principal, now)
        after = request.params.get("after", "")
        try:
            after = parse_tenant_id(after) if after else ""
        except ValueError:
            after = ""
        attention = self.admin.tenants.needing_attention()
        page, more = self.admin.tenants.page(after, OVERVIEW_PAGE)
        first = {t.tenant_id for t in attention}
        tenants = attention + sorted((t for t in page if t.tenant_id not in first),
                                     key=attention_order)
        found = self.summaries.of(first)
        if page:
            found.update(self.summaries.between(page[0].tenant_id, page[-1].tenant_id))
        rows = [{"tenant": t, "counts": queries.from_summary(found.get(t.tenant_id), now),
                 "lag": _lag(t.last_success_at, now)} for t in tenants]
        raised = self.summaries.raised_totals(CHART_MAX_AGE)
        per_day = queries.from_summary(Counts(raised=raised), now).per_day
        failing = sum(1 for t in attention if t.status == "active")
        counted = health.Counted(by_status(listed), failing)
        return self._page("portal/overview.html", principal=principal, rows=rows,
                          severities=queries.SEVERITIES, now=now, outputs=self.siem_status(),
                          chart=daily_chart(per_day, now.date(), queries.CHART_DAYS),
                          health=self._health(counted=counted),
                          notices=self.notices.recent(10),
                          mail_on=self.settings.mail.transport != "none",
                          paging={"total": len(listed), "attention": len(attention),
                                  "shown": len(page), "after": after,
                                  "next": f"{BASE}?after={page[-1].tenant_id}"
                                  if more else ""})

    def _whole_overview(self, principal: auth.Principal, now: datetime) -> Response:
        """Every tenant on one page, from the whole registry (a store whose tenant
        directory is not built yet: `python -m tools.backfill`)."""
        tenants = self._tenants()
        counted = self._counts(tenants, now)
        per_day: dict[tuple[str, str], int] = {}
        for _, counts in counted:
            for key, n in counts.per_day.items():
                per_day[key] = per_day.get(key, 0) + n
        rows = [{"tenant": t, "counts": counts, "lag": _lag(t.last_success_at, now)}
                for t, counts in counted]
        return self._page("portal/overview.html", principal=principal, rows=rows,
                          severities=queries.SEVERITIES, now=now, outputs=self.siem_status(),
                          chart=daily_chart(per_day, now.date(), queries.CHART_DAYS),
                          health=self._health(tenants), notices=self.notices.recent(10),
                          mail_on=self.settings.mail.transport != "none", paging=None)

    def _counts(self, tenants: list[Tenant], now: datetime
                ) -> list[tuple[Tenant, queries.TenantAlerts]]:
        """Each tenant's counts: from the summaries (one query for all tenants), else
        (no summaries wired) counted from the Alerts table, one query per tenant."""
        if self.summaries is None:
            return queries.per_tenant(tenants, lambda t: queries.tenant_alert_counts(
                self.alert_rows, t.tenant_id, now))
        found = self.summaries.all()
        return [(t, queries.from_summary(found.get(t.tenant_id), now)) for t in tenants]

    def _health(self, tenants: list[Tenant] | None = None,
                counted: health.Counted | None = None) -> dict[str, Any]:
        """What /api/health says, with the detail only signed-in staff may read
        (`tenants`: the registry as the page read it, or `counted`, its counts: not read
        again)."""
        _, report = health.report(lambda: self.settings, tenants, counted)
        failure = report.get("mail", {}).get("failing_since")
        for reason in report.get("reasons", []):
            if reason["code"] == "mail_failing" and failure:
                reason["detail"] = health.mail_detail(self.settings.storage)
        return report

    def alerts(self, request: Request) -> Response:
        return self._guard(request, self._alerts)

    def _alerts(self, request: Request, principal: auth.Principal) -> Response:
        tenants = self.admin.tenants.names()  # the picker's and the rows' names only
        flt = queries.AlertFilter.parse(request.params, {t.tenant_id for t in tenants})
        page = queries.search_alerts(self.alert_index, tenants, flt)
        next_url = (f"{BASE}/alerts?{urlencode(flt.params(before=page.next_before))}"
                    if page.next_before else "")
        return self._page("portal/alerts.html", principal=principal, tenants=tenants,
                          flt=flt, page=page, next_url=next_url,
                          first_url=f"{BASE}/alerts?{urlencode(flt.params())}",
                          severities=queries.SEVERITIES, statuses=queries.STATUSES,
                          ranges=list(queries.RANGES),
                          bulk=bulk_form.choices(self.bulk) if principal.may_act(self.cfg)
                          else None)

    # bulk actions: the alerts list's form, and the job's page ---------------------------
    def bulk_action(self, request: Request) -> Response:
        return self._guard(request, self._bulk_action)

    def _bulk_action(self, request: Request, principal: auth.Principal) -> Response:
        if self.bulk is None:
            return self._not_found(principal, "bulk action here")
        if not principal.may_act(self.cfg):
            return self._page("portal/denied.html", 403, principal=principal,
                              signed_in=True, reason=auth.READ_ONLY_ANALYST)
        try:
            job = bulk_form.submit(self.bulk, request.form, request.form_lists,
                                   Actor(principal.id, principal.name, principal.via),
                                   lambda params: bulk_form.matching(
                                       self.alert_index, self.admin.tenants.names(), params))
        except bulk_form.Refused as exc:
            return self._page("portal/message.html", 400, principal=principal,
                              heading="The bulk action was not started", message=str(exc))
        return _redirect(f"{BASE}/bulk/{job.job_id}")

    def bulk_job(self, request: Request) -> Response:
        return self._guard(request, self._bulk_job)

    def _bulk_job(self, request: Request, principal: auth.Principal) -> Response:
        job_id = request.route.get("job_id", "")
        status = self.bulk.status(job_id, request.params.get("after", "")[:2048]) \
            if self.bulk is not None and bulk_form.JOB_ID.fullmatch(job_id) else None
        if status is None:
            return self._not_found(principal, "bulk job")
        found = {w.tenant_id: self._find(w.tenant_id) for w in status.works}
        return self._page("portal/bulk_job.html", principal=principal, job_status=status,
                          counts=status.counts,
                          names={w.tenant_id: w.tenant_name for w in status.works},
                          graph={tid for tid, t in found.items()
                                 if getattr(t, "source", "mde") == "graph"})

    def tenant(self, request: Request) -> Response:
        return self._guard(request, self._tenant)

    def alert(self, request: Request) -> Response:
        return self._guard(request, self.triage_views.page)

    def alert_action(self, request: Request) -> Response:
        return self._guard(request, self.triage_views.act)

    def audit(self, request: Request) -> Response:
        return self._guard(request, self.triage_views.audit_page)

    def _find(self, tenant_id: str) -> Tenant | None:
        try:
            return self.admin.tenants.get(parse_tenant_id(tenant_id))
        except ValueError:
            return None

    def _not_found(self, principal: auth.Principal, what: str) -> Response:
        return self._page("portal/message.html", 404, principal=principal,
                          heading="Not found", message=f"There is no such {what}.")

    def _tenant(self, request: Request, principal: auth.Principal, status: int = 200,
                error: str = "") -> Response:
        tenant = self._find(request.route.get("tenant_id", ""))
        if tenant is None:
            return self._not_found(principal, "tenant")
        tid = tenant.tenant_id
        invitations = [i for i in self.onboarding.list_invitations()
                       if tid in (i.tenant_id, i.expected_tenant)]
        applying = [r for r in self.rules.list(GLOBAL)
                    if (not r.tenants or tid in r.tenants) and tid not in r.exclude_tenants]
        own_rules = self.rules.list(tid)
        return self._page("portal/tenant.html", status, principal=principal, tenant=tenant,
                          now=datetime.now(UTC), lag=_lag(tenant.last_success_at),
                          runs=self.runs.recent(tid, 20), own_rules=own_rules,
                          global_rules=applying, invitations=invitations,
                          channel_states=self._channel_states(own_rules + applying),
                          why_not_triage=self.onboarding.why_not_triage(),
                          link=self.onboarding.link,
                          emails=self.outbox.recent(tid, limit=20),
                          recent_alerts=queries.search_alerts(
                              self.alert_index, [tenant], queries.AlertFilter(tenant=tid),
                              page_size=TENANT_ALERTS).rows,
                          done=DONE.get(request.params.get("done", ""), ""), error=error,
                          rule_severities=SEVERITIES, form=request.form,
                          new_rule_id=uuid.uuid4().hex)

    def _channel_states(self, rules: list[Rule]) -> dict[str, dict[str, Any]]:
        """{rule id: {channel name: its last result}}, for the rules with channels."""
        if self.channels is None:
            return {}
        return {r.id: {s.name: s for s in self.channels.status.for_rule(r.id)}
                for r in rules if r.channels}

    def _save_rule(self, rule: Rule) -> None:
        """Saved, and its failing channels tried again (the MSSP may have fixed them)."""
        self.rules.save(rule)
        if self.channels is not None:
            self.channels.status.reset(rule.id)
            self.channels.status.forget(rule.id, keep=[c["name"] for c in rule.channels])

    def _webhooks(self) -> Webhooks | None:
        return self.channels.webhooks if self.channels is not None else None

    def tenant_action(self, request: Request) -> Response:
        return self._guard(request, self._tenant_action)

    def _tenant_action(self, request: Request, principal: auth.Principal) -> Response:
        tenant = self._find(request.route.get("tenant_id", ""))
        if tenant is None:
            return self._not_found(principal, "tenant")
        action = request.route.get("action", "")
        try:
            if action == "pause":
                self.admin.pause(tenant)
            elif action == "resume":
                self.admin.resume(tenant)
            elif action == "offboard":
                self.admin.offboard(tenant, request.form.get("delete_alerts") == "yes")
            elif action == "rules":  # a new rule of this tenant, from the form
                rule = rule_from_form(request.form, tenant.tenant_id,
                                      webhooks=self._webhooks())
                # the id the form was rendered with: a form sent twice saves one rule
                form_id = request.form.get("rule_id", "")
                if RULE_ID.fullmatch(form_id) and self.rules.get(tenant.tenant_id,
                                                                 form_id) is None:
                    rule.id = form_id
                elif RULE_ID.fullmatch(form_id):
                    return _redirect(f"{BASE}/tenants/{tenant.tenant_id}?done=rules")
                self._save_rule(rule)
            elif action == "reconsent":
                self.onboarding.create_reconsent(tenant, parse_reconsent(
                    {k: v for k, v in request.form.items()
                     if k in ("contact_email", "access", "source") and v}))
            elif action == "move-to-graph" and self.source_move is not None:
                self.source_move.to_graph(tenant)  # 409 (re-consent needed) as a Conflict
            else:
                return self._not_found(principal, "action")
        except ValidationError as exc:
            return self._tenant(request, principal, 400, error=str(exc))
        except (Conflict, ValueError) as exc:
            return self._tenant(request, principal, 409, error=str(exc))
        return _redirect(f"{BASE}/tenants/{tenant.tenant_id}?done={action}")

    def rule_action(self, request: Request) -> Response:
        return self._guard(request, self._rule_action)

    def _rule_action(self, request: Request, principal: auth.Principal) -> Response:
        scope = request.route.get("scope", "")
        if scope != "global":
            tenant = self._find(scope)
            if tenant is None:
                return self._not_found(principal, "tenant")
            scope = tenant.tenant_id
        rule: Rule | None = self.rules.get(GLOBAL if scope == "global" else scope,
                                           request.route.get("rule_id", ""))
        action = request.route.get("action", "")
        if rule is None or action not in ("enable", "disable", "delete", "save", "test"):
            return self._not_found(principal, "rule or action")
        if action == "save":  # the edit form: what it shows, over what the rule holds
            try:
                self._save_rule(rule_from_form(request.form, rule.scope, existing=rule,
                                               webhooks=self._webhooks()))
            except ValidationError as exc:
                return self._rule_refused(request, principal, str(exc))
        elif action == "test":  # a test post to one of its channels
            result = self.channels.test(rule, request.form.get("channel", "")) \
                if self.channels is not None else None
            if result is None:
                return self._not_found(principal, "channel")
            if not result.sent:
                return self._rule_refused(request, principal,
                                          f"{result.channel}: {result.error}",
                                          heading="The test post failed")
        elif action == "delete":
            if self.channels is not None:  # first, as Notifier.delete_rule does
                self.channels.status.forget(rule.id)
            self.rules.delete(rule.scope, rule.id)
        else:
            rule.enabled = action == "enable"
            self.rules.save(rule)
        back = request.form.get("back", "")
        try:
            target = f"{BASE}/tenants/{parse_tenant_id(back)}"
        except ValueError:
            target = BASE
        return _redirect(f"{target}?done={action}")

    def _rule_refused(self, request: Request, principal: auth.Principal, error: str,
                      heading: str = "The rule was not saved") -> Response:
        """A rule form with a bad field (or a failed test post): the tenant page it came
        from, saying which."""
        back = self._find(request.form.get("back", ""))
        if back is None:
            return self._page("portal/message.html", 400, principal=principal,
                              heading=heading, message=error)
        request.route["tenant_id"] = back.tenant_id
        return self._tenant(request, principal, 400, error=f"{heading}: {error}")

    def invitation_action(self, request: Request) -> Response:
        return self._guard(request, self._invitation_action)

    def _invitation_action(self, request: Request, principal: auth.Principal) -> Response:
        """Revoke an open invitation (a used or revoked one stays as it is: sent twice,
        the second changes nothing); back to the page the form was on."""
        if request.route.get("action") != "revoke":
            return self._not_found(principal, "action")
        if self.onboarding.revoke_invitation(request.route.get("invitation_id", "")) is None:
            return self._not_found(principal, "invitation")
        back = self._find(request.form.get("back", ""))
        target = f"{BASE}/tenants/{back.tenant_id}" if back else f"{BASE}/invitations"
        return _redirect(f"{target}?done=revoke")

    def invitations(self, request: Request) -> Response:
        return self._guard(request, self._invitations)

    def _invitations(self, request: Request, principal: auth.Principal) -> Response:
        status, errors = 200, []
        if request.method == "POST":
            body: dict[str, Any] = {k: request.form.get(k, "") for k in (
                "display_name", "contact_email", "expected_tenant")}
            body["access"] = request.form.get("access") or "read"
            if request.form.get("source"):
                body["source"] = request.form.get("source")
            try:
                self.onboarding.create_invitation(parse_invitation(body))
            except ValidationError as exc:
                status, errors = 400, exc.errors
            else:
                return _redirect(f"{BASE}/invitations?done=invite")
        return self._page("portal/invitations.html", status, principal=principal,
                          invitations=self.onboarding.list_invitations(),
                          link=self.onboarding.link, errors=errors, form=request.form,
                          why_not_triage=self.onboarding.why_not_triage(),
                          done=DONE.get(request.params.get("done", ""), ""),
                          default_source=self.settings.fetch.default_source,
                          now=datetime.now(UTC))

    def outbox_page(self, request: Request) -> Response:
        return self._guard(request, self._outbox)

    def _outbox(self, request: Request, principal: auth.Principal) -> Response:
        if not self.cfg.local:
            return self._not_found(principal, "page here (the outbox is shown locally only)")
        names = {t.tenant_id: t.display_name for t in self.admin.tenants.all()}
        return self._page("portal/outbox.html", principal=principal, names=names,
                          emails=self.outbox.recent(limit=100))

    def login(self, request: Request) -> Response:
        """Local key login: a form, or the key once in the URL; sets a session cookie."""
        if misdirected := self._misdirected(request):
            return misdirected
        if not self.cfg.key:
            return self._page("portal/message.html", 404, heading="Key login is off",
                              message="This portal signs you in with Microsoft Entra ID.")
        given = request.form.get("key", "") if request.method == "POST" \
            else request.params.get("key", "")
        if request.method == "POST" and not self._from_here(request):
            return self._page("portal/login.html", 403, error="Sign in from this portal.")
        if given and auth.key_matches(self.cfg, given):
            cookie = (f"{auth.SESSION_COOKIE}={auth.session_value(self.cfg.key)}; "
                      f"Path={BASE}; HttpOnly; SameSite=Strict")
            return _redirect(BASE, **{"Set-Cookie": cookie})
        return self._page("portal/login.html", 401 if given else 200,
                          error="That key is not right." if given else "")


def _lag(when: datetime | None, now: datetime | None = None) -> str:
    """How long since the last successful fetch, in words."""
    if when is None:
        return "never fetched"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
