"""The Defender for Endpoint alerts API: one call per page, errors as exceptions that say
what to do (retry, wait, or stop for this tenant)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.microsoft import alert_stream

CONNECT_TIMEOUT = 10
MAX_TOP = 10_000


class DefenderError(RuntimeError):
    """A call failed; transient ones are retried through the queue."""

    def __init__(self, message: str, status: int | None = None, code: str = "",
                 transient: bool = True) -> None:
        super().__init__(message)
        self.status, self.code, self.transient = status, code, transient


class Throttled(DefenderError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"throttled by Defender for {retry_after}s", 429, "TooManyRequests")
        self.retry_after = retry_after


class Unauthorized(DefenderError):
    """401: the token was refused (expired, or the app's access was revoked)."""


class Forbidden(DefenderError):
    """403: the app lacks Alert.Read.All (on a write, Alert.ReadWrite.All), or Defender
    is not enabled in the tenant."""


class Rejected(DefenderError):
    """400: Defender refused the request's body; the message says which field."""


class NotFound(DefenderError):
    """404: no such alert in the tenant (deleted, or past its retention)."""


class DefenderClient:
    """requests on one pooled session, explicit timeouts, retries of 5xx and connection
    errors (never of 429, which the caller schedules around). Writes (PATCH, POST) are
    retried only when the connection failed before the request was sent: a retried
    write that Defender had done would add its comment twice."""

    def __init__(self, timeout: float, ca_bundle: str | None = None) -> None:
        self.timeout = (CONNECT_TIMEOUT, timeout)
        self.verify: str | bool = ca_bundle or True  # per request: REQUESTS_CA_BUNDLE
        self._local = threading.local()            # would override a Session's verify

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = retrying_session()
        return session

    def list_alerts(self, base: str, token: str, *, filter_: str | None, top: int,
                    skip: int = 0, orderby: str = "lastUpdateTime asc",
                    expand_evidence: bool = True) -> list[dict[str, Any]]:
        """One page of `GET /api/alerts`, whole."""
        with self.page(base, token, filter_=filter_, top=top, skip=skip, orderby=orderby,
                       expand_evidence=expand_evidence) as received:
            return [alert for alert, _ in received]

    @contextlib.contextmanager
    def page(self, base: str, token: str, *, filter_: str | None, top: int, skip: int = 0,
             orderby: str = "lastUpdateTime asc", expand_evidence: bool = True
             ) -> Iterator[Iterator[alert_stream.Document]]:
        """One page of `GET /api/alerts`, its alerts parsed as they arrive, each with
        the JSON it came as where it was cut out whole (`alert_stream.documents`): a page
        of 10,000 alerts with evidence can be 100 MB, and the caller can store the first
        ones while the rest is still on the wire. Refusals raise here; a body that
        breaks off or is not an alert list raises from the iteration."""
        if not 1 <= top <= MAX_TOP:
            raise ValueError("top must be 1..10000")
        params: dict[str, Any] = {"$orderby": orderby, "$top": top}
        if filter_:
            params["$filter"] = filter_
        if skip:
            params["$skip"] = skip
        if expand_evidence:
            params["$expand"] = "evidence"
        try:
            response = self.session.get(f"{base}/api/alerts", params=params,
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Accept": "application/json"},
                                        timeout=self.timeout, verify=self.verify, stream=True)
        except requests.RequestException as exc:
            raise DefenderError(f"Defender API unreachable: {type(exc).__name__}") from exc
        try:
            if response.status_code != 200:
                raise _refusal(response)
            yield _documents(response)
        finally:
            response.close()

    # one alert, and writes (triage) ----------------------------------------------------
    def get_alert(self, base: str, token: str, alert_id: str, *,
                  expand_evidence: bool = False) -> dict[str, Any]:
        """`GET /api/alerts/{id}`: the alert as Defender has it now."""
        params = {"$expand": "evidence"} if expand_evidence else None
        return self._call("GET", f"{base}/api/alerts/{_segment(alert_id)}", token,
                          params=params) or {}

    def update_alert(self, base: str, token: str, alert_id: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        """`PATCH /api/alerts/{id}`: the alert as Defender answers it, updated."""
        return self._call("PATCH", f"{base}/api/alerts/{_segment(alert_id)}", token,
                          json=body) or {}

    def batch_update(self, base: str, token: str, alert_ids: list[str],
                     body: dict[str, Any]) -> None:
        """`POST /api/alerts/batchUpdate`: every alert changed, or (400) none."""
        self._call("POST", f"{base}/api/alerts/batchUpdate", token,
                   json={"alertIds": list(alert_ids), **body})

    def _call(self, method: str, url: str, token: str, **options: Any) -> Any:
        """One request; the JSON answered (None for an empty body), or the refusal."""
        return call_json(self.session, method, url, token, timeout=self.timeout,
                         verify=self.verify, api="Defender", ok=(200,), refusal=_refusal,
                         **options)


def call_json(session: requests.Session, method: str, url: str, token: str, *,
              timeout: tuple[float, float], verify: str | bool, api: str,
              ok: tuple[int, ...], refusal: Callable[[requests.Response], DefenderError],
              **options: Any) -> Any:
    """One call to a Microsoft API (Defender's or Graph's): the JSON answered (None for
    204 or an empty body), `refusal(response)` raised for any status not in `ok`. Only
    the session's retries apply (GETs): a write is sent once."""
    try:
        response = session.request(method, url, headers={"Authorization": f"Bearer {token}",
                                                         "Accept": "application/json"},
                                   timeout=timeout, verify=verify, **options)
    except requests.RequestException as exc:
        raise DefenderError(f"{api} API unreachable: {type(exc).__name__}") from exc
    if response.status_code not in ok:
        raise refusal(response)
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise DefenderError(f"{api} API answered a body that is not JSON", 200,
                            "MalformedResponse") from exc


def retrying_session() -> requests.Session:
    """A pooled session that retries GETs on 5xx and connection errors, never on 429."""
    session = requests.Session()
    retry = Retry(total=3, connect=3, read=2, status=3, backoff_factor=0.5,
                  status_forcelist=(500, 502, 503, 504), allowed_methods={"GET"},
                  respect_retry_after_header=False, raise_on_status=False)
    session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=4))
    return session


def _segment(alert_id: str) -> str:
    """An alert id as one path segment, whatever it holds."""
    return quote(alert_id, safe="")


def _documents(response: requests.Response) -> Iterator[alert_stream.Document]:
    response.raw.decode_content = True
    try:
        yield from alert_stream.documents(response.raw.read)
    except alert_stream.Malformed as exc:
        raise DefenderError(f"Defender API answered {exc}", 200, "MalformedResponse"
                            ) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise DefenderError(f"Defender API unreachable: {type(exc).__name__}") from exc


def refusal(response: requests.Response) -> DefenderError:
    """A non-200 answer as the error that says what to do (also Graph's, same shape)."""
    return _refusal(response)


def _refusal(response: requests.Response) -> DefenderError:
    code, message = _error(response)
    if response.status_code == 429:
        return Throttled(_retry_after(response))
    if response.status_code == 401:
        return Unauthorized(message, 401, code, transient=False)
    if response.status_code == 403:
        return Forbidden(message, 403, code, transient=False)
    if response.status_code == 400:
        return Rejected(message or "Defender refused the request", 400, code,
                        transient=False)
    if response.status_code == 404:
        return NotFound(message or "not found in Defender", 404, code, transient=False)
    return DefenderError(f"Defender API {response.status_code} {code}: {message}",
                         response.status_code, code, transient=response.status_code >= 500)


def _error(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code", "")), str(error.get("message", ""))[:500]
    except (ValueError, AttributeError):
        return "", response.text[:200]


def _retry_after(response: requests.Response) -> int:
    try:
        return max(1, int(float(response.headers.get("Retry-After", "60"))))
    except ValueError:
        return 60
