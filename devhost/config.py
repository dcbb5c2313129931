"""host.json and local.settings.json, read the way the Functions host and Core Tools do."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("devhost")

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def timespan_seconds(value: str) -> float:
    """.NET TimeSpan text ('00:00:30', '1.02:00:00', '00:00:00.5') to seconds."""
    m = _TIMESPAN.match(value.strip())
    if not m:
        raise ValueError(f"not a TimeSpan: {value!r}")
    days, hours, minutes, seconds, frac = m.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{frac}") if frac else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """host.json extensions.queues, with the host's defaults."""

    message_encoding: str = "base64"
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 2.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5

    @classmethod
    def from_json(cls, raw: dict) -> QueueOptions:
        batch = int(raw.get("batchSize", 16))
        if not 1 <= batch <= 32:
            raise ValueError("host.json extensions.queues.batchSize must be 1..32")
        encoding = str(raw.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError("host.json extensions.queues.messageEncoding must be base64 or none")
        return cls(
            message_encoding=encoding,
            batch_size=batch,
            new_batch_threshold=int(raw.get("newBatchThreshold", batch // 2)),
            max_polling_interval=timespan_seconds(raw.get("maxPollingInterval", "00:00:02")),
            visibility_timeout=timespan_seconds(raw.get("visibilityTimeout", "00:00:00")),
            max_dequeue_count=int(raw.get("maxDequeueCount", 5)),
        )


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json this host honours."""

    route_prefix: str = "api"
    function_timeout: float | None = None
    queues: QueueOptions = field(default_factory=QueueOptions)

    @classmethod
    def load(cls, script_root: Path) -> HostConfig:
        raw = read_json(script_root / "host.json")
        if raw.get("version") != "2.0":
            raise ValueError("host.json: version must be \"2.0\"")
        ext = raw.get("extensions", {})
        timeout = raw.get("functionTimeout")
        return cls(
            route_prefix=str(ext.get("http", {}).get("routePrefix", "api")).strip("/"),
            function_timeout=timespan_seconds(timeout) if timeout and timeout != "-1" else None,
            queues=QueueOptions.from_json(ext.get("queues", {})),
        )


class SettingsFileError(ValueError):
    """A settings file that is not valid JSON: the message names the file and the line."""


def read_json(path: Path) -> dict:
    """A JSON object from a file a person edits; errors say where, never a traceback."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SettingsFileError(f"{path}: not valid JSON at line {exc.lineno}, column "
                                f"{exc.colno} ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise SettingsFileError(f"{path}: must be a JSON object")
    return raw


def load_local_settings(script_root: Path, environ: MutableMapping[str, str] = os.environ
                        ) -> dict:
    """Copy local.settings.json Values into the environment, as `func start` does.

    A variable already in the environment wins (Core Tools skips it with a warning).
    Returns the file's `Host` section (LocalHttpPort, ...).
    """
    path = script_root / "local.settings.json"
    if not path.exists():
        return {}
    raw = read_json(path)
    if raw.get("IsEncrypted"):
        raise ValueError("local.settings.json: encrypted settings are not supported here")
    for key, value in (raw.get("Values") or {}).items():
        if key in environ:
            log.warning("Skipping '%s' from local settings: already set in the environment", key)
            continue
        environ[key] = str(value)
    return raw.get("Host") or {}


def ensure_local_settings(script_root: Path) -> bool:
    """Create local.settings.json from the sample, with fresh random keys, if it is missing."""
    path = script_root / "local.settings.json"
    if path.exists():
        return False
    sample = script_root / "local.settings.sample.json"
    if not sample.exists():
        return False
    raw = json.loads(sample.read_text())
    for key in ("DEVHOST_FUNCTION_KEY", "DEVHOST_MASTER_KEY", "ONBOARDING_STATE_KEY",
                "PORTAL_KEY"):
        if key in raw["Values"]:
            raw["Values"][key] = secrets.token_urlsafe(32)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    path.chmod(0o600)
    return True
