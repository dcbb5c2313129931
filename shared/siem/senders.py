"""Sending formatted alert events to one destination: syslog (RFC 5424), Splunk HEC, webhook.

Every sender takes a batch and either delivers all of it or raises DeliveryError; the
caller moves its position only after success, so a failure resends the batch (receivers
dedupe on each event's dedupe key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

from shared import timefmt
from shared.alerts.view import event_alert
from shared.siem.cluster_formats import cluster_document, cluster_severity, is_cluster
from shared.siem.incident_formats import (
    cef_of,
    ecs_of,
    incident_document,
    incident_severity,
    is_incident,
)
from shared.siem.outputs import Output

SYSLOG_SEVERITY = {"High": 2, "Medium": 4, "Low": 5, "Informational": 6}  # crit..info
UDP_MAX = 8_192


class DeliveryError(RuntimeError):
    """The destination did not take the batch; retried later, the events wait."""


class Sender(Protocol):
    def send(self, events: Sequence[Mapping[str, Any]]) -> None: ...


def document(output: Output, event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON shape of one event for HEC and webhooks."""
    if output.format == "ecs":
        return ecs_of(event)
    if is_cluster(event):
        return cluster_document(event)
    if is_incident(event):
        return incident_document(event)
    _, product, schema = event_alert(event)
    return {"event_id": event["event_id"], "tenant_id": event["tenant"],
            "tenant_name": event.get("tenant_name"), "change": event.get("change"),
            "changed": event.get("changed") or {}, "version": event.get("version"),
            "by": event.get("by"), "schema": schema, "product": product,
            "alert": event["alert"]}


# syslog --------------------------------------------------------------------------------

def syslog_frame(output: Output, event: Mapping[str, Any], hostname: str) -> bytes:
    """One RFC 5424 message; the caller adds octet counting for TCP."""
    seen = None if is_incident(event) or is_cluster(event) else event_alert(event)  # once
    severity = SYSLOG_SEVERITY.get(str(
        cluster_severity(event) if is_cluster(event) else incident_severity(event)
        if seen is None else seen[0].get("severity")), 5)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = cef_of(event, seen) if output.format == "cef" else json.dumps(
        ecs_of(event, seen), separators=(",", ":"), ensure_ascii=True)
    header = f"<{output.facility * 8 + severity}>1 {stamp} {hostname} {output.app_name} - alert -"
    return f"{header} {body}".encode()


class SyslogSender:
    def __init__(self, output: Output) -> None:
        self.output = output
        self.hostname = (socket.gethostname() or "-").split(".")[0][:255] or "-"

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        frames = [syslog_frame(self.output, e, self.hostname) for e in events]
        try:
            if self.output.protocol == "udp":
                self._udp(frames)
            else:
                self._stream(frames)
        except OSError as exc:
            raise DeliveryError(f"syslog {self.output.host}:{self.output.port}: "
                                f"{type(exc).__name__}: {exc}") from None

    def _udp(self, frames: list[bytes]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for frame in frames:
                sock.sendto(frame[:UDP_MAX], (self.output.host, self.output.port))

    def _stream(self, frames: list[bytes]) -> None:
        """Octet-counted frames, then a clean close that waits for the receiver's own close,
        so a receiver that died mid-batch is noticed (TCP syslog has no acknowledgements)."""
        out = self.output
        sock = socket.create_connection((out.host, out.port), timeout=out.timeout_seconds)
        try:
            if out.protocol == "tls":
                context = ssl.create_default_context(cafile=out.ca_file or None)
                sock = context.wrap_socket(sock, server_hostname=out.host)
            sock.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))
            if isinstance(sock, ssl.SSLSocket):
                try:
                    sock = sock.unwrap()  # our close_notify, after every frame
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    return  # the receiver read up to it and closed: all taken
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + out.timeout_seconds
            while sock.recv(4096):
                if time.monotonic() > deadline:
                    raise TimeoutError("receiver did not close the connection")
        finally:
            sock.close()


# HTTP ----------------------------------------------------------------------------------

class _HttpSender:
    def __init__(self, output: Output) -> None:
        self.output = output
        self.session = requests.Session()

    def _post(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        try:
            response = self.session.post(
                self.output.url, data=body, headers=headers,
                timeout=(5, self.output.timeout_seconds), allow_redirects=False,
                verify=self.output.ca_file or True)
        except requests.RequestException as exc:
            raise DeliveryError(f"{self.output.type} {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryError(f"{self.output.type} answered HTTP {response.status_code}")
        return response


class HecSender(_HttpSender):
    """Splunk HTTP Event Collector: one request per batch of concatenated event objects."""

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        out = self.output
        lines = []
        for event in events:
            # a cluster is no tenant's: the hub is its host, and it has no tenant_id field
            tenant = None if is_cluster(event) else event["tenant"]
            item: dict[str, Any] = {
                "time": _epoch(event), "host": event.get("tenant_name") or tenant or "mssp-hub",
                "source": "mssp-hub", "sourcetype": out.sourcetype,
                "event": document(out, event),
                "fields": {"dedupe_key": event["event_id"],
                           **({"tenant_id": tenant} if tenant else {})}}
            if out.index:
                item["index"] = out.index
            lines.append(json.dumps(item, separators=(",", ":")))
        headers = {"Authorization": f"Splunk {out.secret}", "Content-Type": "application/json"}
        if out.channel:
            headers["X-Splunk-Request-Channel"] = out.channel
        response = self._post("\n".join(lines).encode(), headers)
        try:
            code = response.json().get("code", 0)
        except ValueError:
            code = 0
        if code != 0:
            raise DeliveryError(f"splunk_hec refused the batch (code {code})")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `timestamp.body`; receivers reject old timestamps (replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class WebhookSender(_HttpSender):
    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        body = json.dumps({"v": 1, "events": [document(self.output, e) for e in events]},
                          separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        self._post(body, {"Content-Type": "application/json",
                          "X-Mssp-Hub-Timestamp": stamp,
                          "X-Mssp-Hub-Signature": signature(self.output.secret, stamp, body),
                          "X-Mssp-Hub-Delivery": uuid.uuid4().hex})


def _epoch(event: Mapping[str, Any]) -> float:
    when = event.get("last_seen") if is_cluster(event) else event.get("version")
    try:
        return round(timefmt.to_datetime(str(when)).timestamp(), 3)
    except ValueError:
        return round(time.time(), 3)


def sender_for(output: Output) -> Sender:
    return {"syslog": SyslogSender, "splunk_hec": HecSender,
            "webhook": WebhookSender}[output.type](output)
