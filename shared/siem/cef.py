"""ArcSight CEF lines for Defender alerts, escaped as the CEF specification requires; the
device product names the alert's product (any Defender XDR product's, through the view).

Header fields escape `\\` and `|`; a header cannot carry a line break, so one becomes a
space there. Extension values escape `\\`, `=` and line breaks (`\\n`, `\\r`), so a value
round-trips exactly; the title is repeated in `msg` for that reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared import timefmt
from shared.alerts.view import Seen, event_alert, short_product

VENDOR, PRODUCT, PRODUCT_VERSION = "Microsoft", "Defender for Endpoint", "1.0"
SEVERITY = {"UnSpecified": 0, "Informational": 2, "Low": 3, "Medium": 5, "High": 8}
CUSTOM = (  # (key, label, how to get it from the event and its alert's canonical fields)
    ("cs1", "TenantId", lambda e, a: e["tenant"]),
    ("cs2", "TenantName", lambda e, a: e.get("tenant_name")),
    ("cs3", "DeviceGroup", lambda e, a: a.get("rbacGroupName")),
    ("cs4", "MitreTechniques", lambda e, a: ",".join(a.get("mitreTechniques") or [])),
    ("cs5", "Classification", lambda e, a: a.get("classification")),
    ("cs6", "DedupeKey", lambda e, a: e["event_id"]),
)
_MAX_VALUE = 4_000


def escape_header(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"[\r\n]+", " ", text)


def escape_extension(value: Any) -> str:
    text = "" if value is None else str(value)
    return (text.replace("\\", "\\\\").replace("=", "\\=")
            .replace("\n", "\\n").replace("\r", "\\r"))


def millis(value: Any) -> int | None:
    try:
        return int(timefmt.to_datetime(str(value)).timestamp() * 1000)
    except (ValueError, TypeError):
        return None


def _first(evidence: list[dict[str, Any]], key: str) -> Any:
    return next((item[key] for item in evidence if item.get(key)), None)


def extensions(event: Mapping[str, Any], alert: Mapping[str, Any] | None = None
               ) -> list[tuple[str, Any]]:
    """Standard CEF keys where one fits, labelled custom strings for the rest. `alert`:
    the alert's canonical fields (else taken from the event through the alert view)."""
    if alert is None:
        alert = event_alert(event)[0]
    evidence = [e for e in alert.get("evidence") or [] if isinstance(e, dict)]
    user = alert.get("relatedUser") if isinstance(alert.get("relatedUser"), dict) else {}
    by = event.get("by") if isinstance(event.get("by"), dict) else {}
    pairs: list[tuple[str, Any]] = [
        ("rt", millis(alert.get("lastUpdateTime") or event.get("version"))),
        ("start", millis(alert.get("firstEventTime"))),
        ("end", millis(alert.get("lastEventTime"))),
        ("externalId", alert.get("id") or event.get("alert_id")),
        ("msg", alert.get("title")),
        ("cat", alert.get("category")),
        ("outcome", alert.get("status")),
        ("act", event.get("change")),
        ("dhost", alert.get("computerDnsName")),
        ("deviceExternalId", alert.get("machineId")),
        ("duser", user.get("userName") or _first(evidence, "accountName")),
        ("duid", _first(evidence, "userPrincipalName")),
        ("fname", _first(evidence, "fileName")),
        ("filePath", _first(evidence, "filePath")),
        ("fileHash", _first(evidence, "sha256") or _first(evidence, "sha1")),
        ("src", _first(evidence, "ipAddress")),
        ("request", _first(evidence, "url")),
        ("sproc", _first(evidence, "processCommandLine")),
        ("cn1", alert.get("incidentId")), ("cn1Label", "IncidentId"),
        # who changed it, when the MSSP did (an analyst or an API key): the source user
        ("suser", by.get("name")), ("suid", by.get("id")),
    ]
    for key, label, get in CUSTOM:
        pairs += [(key, get(event, alert)), (f"{key}Label", label)]
    return [(k, v) for k, v in pairs if v not in (None, "")]


def format_cef(event: Mapping[str, Any], seen: Seen | None = None) -> str:
    """One CEF line (no line break) for an alert event; the device product is the
    alert's product (PRODUCT for Defender for Endpoint's, whichever API it came from).
    `seen`: the event's `event_alert`, if the caller has it already."""
    alert, product, _ = seen or event_alert(event)
    sev = SEVERITY.get(str(alert.get("severity")), 0)
    header = [VENDOR, short_product(product), PRODUCT_VERSION,
              alert.get("detectorId") or alert.get("category") or "alert",
              str(alert.get("title") or "")[:512], sev]
    ext = " ".join(f"{k}={escape_extension(str(v)[:_MAX_VALUE])}"
                   for k, v in extensions(event, alert))
    return "CEF:0|" + "|".join(escape_header(h) for h in header) + "|" + ext


def cef_line(header: list[Any], pairs: list[tuple[str, Any]],
             custom: list[tuple[str, str, Any]]) -> str:
    """One CEF line of an incident or cluster event: the header, then the extension's
    pairs with a value (and a key), then each custom (key, label, value) with a value,
    its label beside it; every value escaped and clipped as for alerts."""
    pairs = list(pairs)
    for key, label, value in custom:  # a label only with its value
        if value not in (None, ""):
            pairs += [(key, value), (f"{key}Label", label)]
    ext = " ".join(f"{k}={escape_extension(str(v)[:_MAX_VALUE])}"
                   for k, v in pairs if k and v not in (None, ""))
    return "CEF:0|" + "|".join(escape_header(h) for h in header) + "|" + ext


# parsing: for tests, the local receiver and anyone checking a line ------------------------

_EXT_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")


def _unescape(text: str, header: bool) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            out.append({"n": "\n", "r": "\r"}.get(n, n) if not header else n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Split a CEF line into its 7 header fields and its extension (unescaped)."""
    start = line.index("CEF:")
    text = line[start:]
    fields, cur, i = [], [], 0
    while len(fields) < 7:
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == "|":
            fields.append(_unescape("".join(cur), header=True))
            cur = []
        else:
            cur.append(c)
        i += 1
    ext_text = text[i:]
    # key=value pairs: a key starts after an unescaped space and ends at an unescaped '='
    ext: dict[str, str] = {}
    positions = [m for m in _EXT_KEY.finditer(ext_text)
                 if m.start(1) == 0 or ext_text[m.start(1) - 1] == " "]
    positions = [m for m in positions if not _escaped(ext_text, m.end() - 1)]
    for n, m in enumerate(positions):
        end = positions[n + 1].start() if n + 1 < len(positions) else len(ext_text)
        ext[m.group(1)] = _unescape(ext_text[m.end():end], header=False)
    fields[0] = fields[0].removeprefix("CEF:")
    return fields, ext


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - 1 - backslashes >= 0 and text[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def labelled(ext: Mapping[str, str]) -> dict[str, str]:
    """The custom strings by their labels: {'TenantId': ..., ...}."""
    return {ext[f"{k}Label"]: ext[k] for k in list(ext) if f"{k}Label" in ext}

