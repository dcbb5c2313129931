"""Microsoft Graph's security alerts (`GET /v1.0/security/alerts_v2`): one call per page,
alerts parsed as they arrive, errors as the Defender client's exceptions (the worker
treats both sources' failures alike).

Paging is only by `@odata.nextLink` (opaque; Graph documents no `$orderby` for alerts_v2,
so the service's order is all there is). A link is followed only on the Graph host the
client was given: the token goes wherever the link points.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import urllib3

from shared.microsoft import alert_stream
from shared.microsoft.defender import (
    CONNECT_TIMEOUT,
    DefenderError,
    Forbidden,
    call_json,
    refusal,
    retrying_session,
)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ALERTS_PATH = "/v1.0/security/alerts_v2"
MAX_TOP = 1_000  # the reported cap of `$top` on alerts_v2
INCIDENTS_PATH = "/v1.0/security/incidents"
INCIDENTS_TOP = 50  # List incidents documents $top up to 50
# the application permissions a graph tenant grants (the consent page names them)
GRAPH_PERMISSIONS = ("SecurityAlert.Read.All", "SecurityIncident.Read.All")
# and what triage of a graph tenant needs (Graph's "Update alert", "Update incident")
GRAPH_WRITE_PERMISSIONS = ("SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All")
COMMENT_TYPE = "microsoft.graph.security.alertComment"


class ExpiredLink(DefenderError):
    """A nextLink Graph no longer answers (410 Gone, or 400 naming the skip token or its
    expiry): the chain is read again from its start."""


class GraphConsentMissing(Forbidden):
    """403 on alerts_v2: the app lacks SecurityAlert.Read.All in the tenant (consented
    before the tenant moved to Graph, or the permission was removed)."""


@dataclass
class Page:
    """One page: its alerts as they arrive, then (once they are all read) its nextLink."""

    documents: Iterator[alert_stream.Document]
    envelope: dict[str, Any] = field(default_factory=dict)

    @property
    def next_link(self) -> str:
        link = self.envelope.get("@odata.nextLink")
        return link if isinstance(link, str) else ""


class GraphSecurityClient:
    """requests on one pooled session per thread, explicit timeouts, retries of 5xx and
    connection errors (never of 429, which the caller schedules around)."""

    def __init__(self, base: str, timeout: float, ca_bundle: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.timeout = (CONNECT_TIMEOUT, timeout)
        self.verify: str | bool = ca_bundle or True
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = retrying_session()
        return session

    # one alert, and writes (triage): never retried, as DefenderClient's ----------------
    def get_alert(self, token: str, alert_id: str) -> dict[str, Any]:
        """`GET /security/alerts_v2/{id}`: the alert as Graph has it now."""
        return self._call("GET", f"{self.base}{ALERTS_PATH}/{_segment(alert_id)}",
                          token) or {}

    def update_alert(self, token: str, alert_id: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        """`PATCH /security/alerts_v2/{id}` (Graph's names and values): the alert as Graph
        answers it, or {} when it answered 204 (read it to know the new state)."""
        return self._call("PATCH", f"{self.base}{ALERTS_PATH}/{_segment(alert_id)}", token,
                          json=body) or {}

    def add_comment(self, token: str, alert_id: str, comment: str) -> list[dict[str, Any]]:
        """`POST /security/alerts_v2/{id}/comments`: the alert's comments as answered."""
        answer = self._call("POST", f"{self.base}{ALERTS_PATH}/{_segment(alert_id)}/comments",
                            token, json={"@odata.type": COMMENT_TYPE, "comment": comment})
        value = answer.get("value") if isinstance(answer, dict) else None
        return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []

    def update_incident(self, token: str, incident_id: str, body: dict[str, Any]
                        ) -> dict[str, Any]:
        """`PATCH /security/incidents/{id}`: the incident as answered ({} on a 204)."""
        return self._call("PATCH", f"{self.base}{INCIDENTS_PATH}/{_segment(incident_id)}",
                          token, json=body) or {}

    def get_incident(self, token: str, incident_id: str) -> dict[str, Any]:
        """`GET /security/incidents/{id}?$expand=alerts`: the incident as Graph has it."""
        return self._call("GET", f"{self.base}{INCIDENTS_PATH}/{_segment(incident_id)}",
                          token, params={"$expand": "alerts"}) or {}

    def add_incident_comment(self, token: str, incident_id: str, comment: str
                             ) -> list[dict[str, Any]]:
        """`POST /security/incidents/{id}/comments`: the incident's comments as answered."""
        answer = self._call("POST", f"{self.base}{INCIDENTS_PATH}/{_segment(incident_id)}"
                            "/comments", token,
                            json={"@odata.type": COMMENT_TYPE, "comment": comment})
        value = answer.get("value") if isinstance(answer, dict) else None
        return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []

    def _call(self, method: str, url: str, token: str, **options: Any) -> Any:
        """One request (a write is sent once: the session retries GETs only); the JSON
        answered (None for 204 or an empty body), or the refusal as DefenderClient's."""
        return call_json(self.session, method, url, token, timeout=self.timeout,
                         verify=self.verify, api="Graph", ok=(200, 201, 204),
                         refusal=_write_refusal, **options)

    @contextlib.contextmanager
    def alerts(self, token: str, *, since: str | None = None, top: int = MAX_TOP,
               link: str = "") -> Iterator[Page]:
        """The first page of `lastUpdateDateTime ge since` (`link` empty), or the page a
        nextLink names. Refusals raise here; a body that breaks off raises from the
        iteration of `Page.documents`."""
        with self._page(ALERTS_PATH, token, since, top, MAX_TOP, link, {}) as page:
            yield page

    @contextlib.contextmanager
    def incidents(self, token: str, *, since: str | None = None, top: int = INCIDENTS_TOP,
                  link: str = "") -> Iterator[Page]:
        """Like `alerts`, on `/security/incidents` with each incident's alerts expanded
        (their ids are the incident's alert ids)."""
        with self._page(INCIDENTS_PATH, token, since, top, INCIDENTS_TOP, link,
                        {"$expand": "alerts"}) as page:
            yield page

    @contextlib.contextmanager
    def _page(self, path: str, token: str, since: str | None, top: int, max_top: int,
              link: str, extra: dict[str, str]) -> Iterator[Page]:
        params: dict[str, Any] | None = None
        if link:
            if not link.startswith(self.base + "/"):
                raise DefenderError("Graph answered a nextLink to another host", 200,
                                    "MalformedResponse", transient=False)
            url = link
        else:
            if not 1 <= top <= max_top:
                raise ValueError(f"top must be 1..{max_top}")
            url = self.base + path
            params = {"$top": top, **extra}
            if since:
                params["$filter"] = f"lastUpdateDateTime ge {since}"
        try:
            response = self.session.get(url, params=params,
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Accept": "application/json"},
                                        timeout=self.timeout, verify=self.verify, stream=True)
        except requests.RequestException as exc:
            raise DefenderError(f"Graph API unreachable: {type(exc).__name__}") from exc
        try:
            if response.status_code != 200:
                raise _refusal(response, bool(link))
            page = Page(iter(()))
            page.documents = _documents(response, page.envelope)
            yield page
        finally:
            response.close()


def _segment(value: str) -> str:
    return quote(value, safe="")


def _write_refusal(response: requests.Response) -> DefenderError:
    """A refused write as DefenderClient's exceptions (Forbidden: no ReadWrite role)."""
    error = refusal(response)
    if type(error) is DefenderError:
        return DefenderError(str(error).replace("Defender API", "Graph API", 1),
                             error.status, error.code, error.transient)
    return error


def _documents(response: requests.Response, envelope: dict[str, Any]
               ) -> Iterator[alert_stream.Document]:
    response.raw.decode_content = True
    try:
        yield from alert_stream.documents(response.raw.read, envelope)
    except alert_stream.Malformed as exc:
        raise DefenderError(f"Graph API answered {exc}", 200, "MalformedResponse") from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise DefenderError(f"Graph API unreachable: {type(exc).__name__}") from exc


def _refusal(response: requests.Response, followed_link: bool) -> DefenderError:
    error = refusal(response)
    text = f"{error.code} {error}".lower()
    if followed_link and (response.status_code == 410 or (
            response.status_code == 400 and ("skiptoken" in text or "expired" in text))):
        return ExpiredLink(f"Graph refused the nextLink ({response.status_code} "
                           f"{error.code})", response.status_code, error.code,
                           transient=False)
    if isinstance(error, Forbidden):
        return GraphConsentMissing(str(error) or "Graph refused: SecurityAlert.Read.All "
                                   "is not granted", 403, error.code, transient=False)
    if type(error) is DefenderError:  # say whose answer it was
        return DefenderError(str(error).replace("Defender API", "Graph API", 1),
                             error.status, error.code, error.transient)
    return error
