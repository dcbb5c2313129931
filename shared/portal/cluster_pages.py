"""The portal's view of correlation ("Seen at several customers"): the clusters, keyset
paged by recency or reach; a cluster's page with every tenant and its alerts; the search
box (a pasted hash, IP, domain or URL: every tenant and alert that has it); the
suppression list; and the alert page's indicators with how many other customers have each.

Reads go through CorrelationReads only. MSSP-only like the whole portal: these pages name
many customers side by side, and nothing here feeds a customer-facing output. Indicator
values and alert titles are attacker text: rendered autoescaped, links built from quoted
parts, never from a value taken as a URL."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from shared.correlation.model import KINDS, Cluster, Indicator
from shared.correlation.reads import CorrelationReads
from shared.correlation.search import indicator_of
from shared.portal import alert_page, auth
from shared.portal.exchange import Request, Response
from shared.portal.queries import SEVERITIES
from shared.web.pages import SECURITY_HEADERS

CLUSTERS_PAGE = 50
LOOKUP_PAGE = 100
MAX_CURSOR = 1100
MAX_REASON = 500
ORDERS = ("recent", "reach")
_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})")
KIND_NAMES = {"sha256": "SHA256", "sha1": "SHA1", "ip": "IP address", "domain": "domain",
              "url": "URL", "file_name": "file name"}
DONE = {"add": "The indicator is suppressed: it forms no cluster from now on.",
        "remove": "The suppression is removed.",
        "gone": "That indicator was not suppressed (someone may have removed it already)."}


def severity_text(severities: dict[str, int]) -> str:
    """"High 3 · Medium 1": the alerts of a cluster by severity, worst first."""
    order = {s: n for n, s in enumerate(SEVERITIES)}
    ranked = sorted(severities.items(),
                    key=lambda p: (order.get(p[0].capitalize(), len(order)), p[0]))
    return " · ".join(f"{severity} {count}" for severity, count in ranked if count)


def stamp(text: str | None) -> str:
    """"2026-12-03T10:47:27.7433730Z" as "2026-12-03 10:47:27 UTC" (other text as is)."""
    found = _STAMP.match(text or "")
    return f"{found[1]} {found[2]} UTC" if found else (text or "")


def _redirect(location: str) -> Response:
    return Response(303, headers={"Location": location, **SECURITY_HEADERS})


def _cursor(params: dict[str, str]) -> str | None:
    """A cursor from a link, or None; one no page could have given is refused."""
    cursor = params.get("cursor", "")
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR or not cursor.isprintable():
        raise ValueError("not a cursor this portal gave")
    return cursor


class ClusterViews:
    def __init__(self, portal: Any, base: str, correlation: CorrelationReads | None
                 ) -> None:
        """`portal`: the Portal (pages.py), for its guard, pages and rendering."""
        self.portal, self.base, self.reads = portal, base, correlation

    # links ------------------------------------------------------------------------------
    def cluster_link(self, indicator: Indicator) -> str:
        return (f"{self.base}/clusters/{quote(indicator.kind, safe='')}?"
                f"{urlencode({'value': indicator.value})}")

    def lookup_link(self, indicator: Indicator) -> str:
        return f"{self.base}/lookup?{urlencode({'q': indicator.value, 'kind': indicator.kind})}"

    def tenant_link(self, tenant_id: str) -> str:
        return f"{self.base}/tenants/{quote(tenant_id, safe='')}"

    def alert_link(self, tenant_id: str, alert_id: str) -> str:
        return alert_page.page_path(self.base, tenant_id, alert_id)

    def _links(self) -> dict[str, Any]:
        return {"cluster_link": self.cluster_link, "lookup_link": self.lookup_link,
                "tenant_link": self.tenant_link, "alert_link": self.alert_link,
                "kind_names": KIND_NAMES, "kinds": KINDS, "stamp": stamp}

    # the alert page's part --------------------------------------------------------------
    def for_alert(self, tenant_id: str, alert_id: str) -> list[dict[str, Any]] | None:
        """The alert's indicators, each with how many other customers have it (None: no
        correlation in this deployment)."""
        if self.reads is None:
            return None
        return [{"indicator": i, "kind": KIND_NAMES.get(i.kind, i.kind), "others": others,
                 "lookup": self.lookup_link(i)}
                for i, others in self.reads.alert_indicators(tenant_id, alert_id)]

    # pages ------------------------------------------------------------------------------
    def list_page(self, request: Request) -> Response:
        return self.portal._guard(request, self._list)

    def cluster_page(self, request: Request) -> Response:
        return self.portal._guard(request, self._cluster)

    def lookup_page(self, request: Request) -> Response:
        return self.portal._guard(request, self._lookup)

    def suppressions_page(self, request: Request) -> Response:
        return self.portal._guard(request, self._suppressions)

    def suppression_remove(self, request: Request) -> Response:
        return self.portal._guard(request, self._remove)

    def _off(self, principal: auth.Principal) -> Response:
        return self.portal._not_found(principal, "page here (correlation is not wired in "
                                                 "this deployment)")

    def _bad_link(self, principal: auth.Principal) -> Response:
        return self.portal._page("portal/message.html", 400, principal=principal,
                                 heading="That page does not exist",
                                 message="The link's cursor is not one this portal gave. "
                                         "Start again from the first page.")

    def _list(self, request: Request, principal: auth.Principal) -> Response:
        if self.reads is None:
            return self._off(principal)
        order = request.params.get("order", "")
        order = order if order in ORDERS else "recent"
        try:
            found, following = self.reads.clusters(order, _cursor(request.params),
                                                    CLUSTERS_PAGE)
        except ValueError:
            return self._bad_link(principal)
        next_url = (f"{self.base}/clusters?{urlencode({'order': order, 'cursor': following})}"
                    if following else "")
        return self.portal._page(
            "portal/clusters.html", principal=principal, clusters=found, order=order,
            orders=ORDERS, next_url=next_url, paged=bool(request.params.get("cursor")),
            first_url=f"{self.base}/clusters?{urlencode({'order': order})}",
            severity_text=severity_text, query="", query_kind="", **self._links())

    def _cluster(self, request: Request, principal: auth.Principal) -> Response:
        if self.reads is None:
            return self._off(principal)
        kind = request.route.get("kind", "")
        if kind not in KINDS:
            return self.portal._not_found(principal, "kind of indicator")
        try:
            indicator = indicator_of(request.params.get("value", ""), kind)
        except ValueError as exc:
            return self._not_an_indicator(principal, request.params.get("value", ""), kind,
                                          str(exc))
        cluster: Cluster | None = self.reads.cluster(indicator)
        return self.portal._page(
            "portal/cluster.html", 200 if cluster else 404, principal=principal,
            indicator=indicator, cluster=cluster, severity_text=severity_text,
            lookup=self.lookup_link(indicator), **self._links())

    def _not_an_indicator(self, principal: auth.Principal, value: str, kind: str,
                          reason: str) -> Response:
        return self.portal._page(
            "portal/lookup.html", 400, principal=principal, query=value, query_kind=kind,
            error=f"This is not an indicator (a hash, IP address, domain, URL, or a file "
                  f"name with its kind): {reason}.", indicator=None, sightings=[],
            cluster=None, next_url="", first_url="", **self._links())

    def _lookup(self, request: Request, principal: auth.Principal) -> Response:
        if self.reads is None:
            return self._off(principal)
        query = request.params.get("q", "")
        kind = request.params.get("kind", "")
        kind = kind if kind in KINDS else ""
        if not query.strip():
            return self.portal._page(
                "portal/lookup.html", principal=principal, query="", query_kind=kind,
                error="", indicator=None, sightings=[], cluster=None, next_url="",
                first_url="", **self._links())
        try:
            indicator = indicator_of(query, kind)
        except ValueError as exc:
            return self._not_an_indicator(principal, query, kind, str(exc))
        try:
            found, following = self.reads.lookup(indicator, cursor=_cursor(request.params),
                                                 limit=LOOKUP_PAGE)
        except ValueError:
            return self._bad_link(principal)
        first = self.lookup_link(indicator)
        return self.portal._page(
            "portal/lookup.html", principal=principal, query=query, query_kind=kind,
            error="", indicator=indicator, sightings=found,
            cluster=self.reads.cluster(indicator),
            next_url=f"{first}&{urlencode({'cursor': following})}" if following else "",
            first_url=first if request.params.get("cursor") else "", **self._links())

    # suppressions -----------------------------------------------------------------------
    def _suppressions(self, request: Request, principal: auth.Principal) -> Response:
        if self.reads is None:
            return self._off(principal)
        if request.method == "POST":
            return self._add(request, principal)
        return self._suppression_list(request, principal)

    def _suppression_list(self, request: Request, principal: auth.Principal,
                          status: int = 200, error: str = "") -> Response:
        """The list and the form (after a refused POST: as sent, with what was wrong)."""
        assert self.reads is not None
        form = request.form if request.method == "POST" else request.params
        return self.portal._page(
            "portal/suppressions.html", status, principal=principal,
            suppressions=self.reads.suppressions(), may_act=principal.may_act(
                self.portal.cfg), read_only=auth.READ_ONLY_ANALYST, error=error,
            done=DONE.get(request.params.get("done", ""), ""),
            form={k: form.get(k, "") for k in ("value", "kind", "reason")},
            max_reason=MAX_REASON, **self._links())

    def _may_not_act(self, principal: auth.Principal) -> Response | None:
        if principal.may_act(self.portal.cfg):
            return None
        return self.portal._page("portal/denied.html", 403, principal=principal,
                                 signed_in=True, reason=auth.READ_ONLY_ANALYST)

    def _add(self, request: Request, principal: auth.Principal) -> Response:
        """Suppress what the form names, the signed-in user its author; a refusal shows
        the form again as sent, saying why."""
        assert self.reads is not None
        if refused := self._may_not_act(principal):
            return refused
        try:
            indicator = indicator_of(request.form.get("value", ""),
                                     request.form.get("kind", ""))
        except ValueError as exc:
            return self._suppression_list(
                request, principal, 400, f"Not suppressed: this is not an indicator: {exc}.")
        reason = " ".join(request.form.get("reason", "").split())
        if not reason or len(reason) > MAX_REASON or not reason.isprintable():
            return self._suppression_list(
                request, principal, 400, f"Not suppressed: say why it is benign (a reason of "
                                         f"1 to {MAX_REASON} printable characters).")
        self.reads.suppress(indicator, reason, principal.name)
        return _redirect(f"{self.base}/suppressions?done=add")

    def _remove(self, request: Request, principal: auth.Principal) -> Response:
        if self.reads is None:
            return self._off(principal)
        if refused := self._may_not_act(principal):
            return refused
        try:
            indicator = indicator_of(request.form.get("value", ""),
                                     request.form.get("kind", ""))
        except ValueError:
            return self.portal._not_found(principal, "suppression")
        removed = self.reads.unsuppress(indicator, principal.name)
        return _redirect(f"{self.base}/suppressions?done="
                                    f"{'remove' if removed else 'gone'}")

