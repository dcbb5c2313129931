"""Is the app able to work, and is it working? Storage reachability (healthy or not), what
holds the work back (degraded, with reasons), and the versions it runs, for probes."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any, Literal

from pydantic import Field

from shared import __version__
from shared.config import Settings, SettingsError, get_settings
from shared.model import Tenant, TenantStatus
from shared.notify.mail_health import mail_failure
from shared.siem.delivery import output_status
from shared.storage import tables
from shared.storage.app_health import AppHealth
from shared.storage.channel_status import ChannelStatusRepository
from shared.storage.connection import StorageConnection
from shared.storage.poison_log import PoisonLogRepository
from shared.storage.siem_delivery import SiemDeliveryRepository
from shared.storage.tenants import TenantRepository
from shared.validation import Reply, absent

# A probe answers fast: no retries, short timeouts (a health check that hangs is no check).
PROBE = {"retry_total": 0, "connection_timeout": 3, "read_timeout": 5}
POISON_COUNT_LIMIT = 1000  # rows a health check reads from PoisonLog at most
PACKAGES = ("azure-functions", "azure-identity", "azure-storage-queue", "azure-data-tables",
            "requests")


class Probe(Reply):
    ok: bool
    ms: float | None = absent("how long the probe took")
    error: str | None = absent("why not: an exception's type, or the setting at fault")


class CredentialError(Reply):
    reason: str
    at: str


class Ingestion(Reply):
    tenants: dict[str, int] = Field(description="tenants by status")
    failing_tenants: int
    poisoned_last_day: dict[str, int] = Field(description="messages given up on, per queue")
    last_success_at: str | None
    app_credential_error: CredentialError | None


class OutputHealth(Reply):
    name: str
    type: str
    lag_seconds: int | None
    failures: int
    retry_at: str | None


class MailHealth(Reply):
    transport: str
    failing_since: str | None


class Reason(Reply):
    code: str
    message: str


class HealthReport(Reply):
    """GET /api/health: unhealthy (storage or settings broken: only `versions` and
    `checks`), degraded (with `reasons`) or healthy. Outcomes and versions only."""

    status: Literal["healthy", "degraded", "unhealthy"]
    versions: dict[str, str]
    checks: dict[str, Probe]
    ingestion: Ingestion | None = absent("when storage answers")
    siem_outputs: list[OutputHealth] | None = absent("when storage answers")
    mail: MailHealth | None = absent("when storage answers")
    reasons: list[Reason] | None = absent("what holds the work back; empty: healthy")


def _versions() -> dict[str, str]:
    found = {"mssp-hub": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _probe(check: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure means "unreachable"; the type says why
        ok, error = False, type(exc).__name__
    else:
        ok, error = True, None
    result: dict[str, Any] = {"ok": ok,
                              "ms": round((time.perf_counter() - started) * 1000, 1)}
    if error:
        result["error"] = error
    return result


@dataclass(frozen=True)
class Counted:
    """Tenants by status and how many are failing, as the portal's overview counted them
    (the tenant directory and the attention marks), so the registry is not read whole:
    the last success is then read only when the app's credential was refused."""

    by_status: dict[str, int]
    failing: int


def report(settings_loader: Callable[[], Settings] = get_settings,
           tenants: list[Tenant] | None = None, counted: Counted | None = None
           ) -> tuple[bool, dict[str, Any]]:
    """(up, report): status unhealthy (storage or settings broken: not up), degraded (up,
    with `reasons`) or healthy. Never includes a setting's value or an error's text.
    `tenants`: the registry as the caller just read it, or `counted`, its counts (the
    portal's overview), so that it is not read again for one page."""
    body: dict[str, Any] = {"versions": _versions(), "checks": {}}
    try:
        settings = settings_loader()
    except SettingsError as exc:
        body["checks"]["settings"] = {"ok": False, "error": str(exc)}
        body["status"] = "unhealthy"
        return False, body
    storage = settings.storage
    body["checks"]["queues"] = _probe(lambda: next(iter(
        storage.queue_service().list_queues(results_per_page=1, **PROBE)), None))
    body["checks"]["tables"] = _probe(lambda: next(iter(
        storage.table_service().list_tables(results_per_page=1, **PROBE)), None))
    healthy = all(c["ok"] for c in body["checks"].values())
    if not healthy:
        body["status"] = "unhealthy"
        return False, body
    body["ingestion"] = ingestion_summary(storage, tenants, counted)
    outputs = SiemDeliveryRepository(tables.table(storage, tables.SIEM_DELIVERY))
    body["siem_outputs"] = [
        {k: o[k] for k in ("name", "type", "lag_seconds", "failures", "retry_at")}
        for o in output_status(outputs, settings.siem.outputs, int(time.time() * 1e6))]
    failure = mail_failure(AppHealth(tables.table(storage, tables.APP_HEALTH)), **PROBE)
    body["mail"] = {"transport": settings.mail.transport,
                    "failing_since": failure["at"].isoformat() if failure else None}
    body["reasons"] = reasons(body["ingestion"], body["siem_outputs"], failure is not None,
                              failing_channels(storage))
    body["status"] = "degraded" if body["reasons"] else "healthy"
    return True, body


def failing_channels(storage: StorageConnection) -> list[str]:
    """Teams/Slack channels whose webhook refused posts: "<channel> (<status code>)" each
    (the platform's full answer stays in the portal's tenant page)."""
    states = ChannelStatusRepository(tables.table(storage, tables.NOTIFY_CHANNELS)).failing(
        **PROBE)
    return [f"{s.name} ({s.reason.split(' ', 1)[0] or 'setting'})" if s.reason[:3].isdigit()
            else f"{s.name} (webhook setting)" for s in states]


def reasons(ingestion: dict[str, Any], outputs: list[dict[str, Any]], mail_failing: bool,
            channels_failing: list[str] | None = None) -> list[dict[str, str]]:
    """What keeps work from getting done: a short code and a sentence each (counts and
    names of outputs only; tenants' names and error texts stay in the portal)."""
    found = []
    if ingestion["failing_tenants"]:
        found.append({"code": "tenants_failing", "message":
                      f"{ingestion['failing_tenants']} active tenant(s) failed their last "
                      "fetch"})
    if ingestion["app_credential_error"]:
        found.append({"code": "app_credential", "message":
                      "the MSSP app's credential is refused: no tenant can be fetched"})
    poisoned = sum(ingestion["poisoned_last_day"].values())
    if poisoned:
        queues = ", ".join(sorted(ingestion["poisoned_last_day"]))
        found.append({"code": "messages_poisoned", "message":
                      f"{poisoned} message(s) given up on in the last 24 hours ({queues})"})
    if mail_failing:
        found.append({"code": "mail_failing", "message":
                      "emails could not be sent in the last 15 minutes; they are retried"})
    if channels_failing:
        found.append({"code": "channels_failing", "message":
                      f"{len(channels_failing)} notification channel(s) refuse posts and "
                      f"are held back until fixed: {', '.join(channels_failing[:20])}"})
    failing = [o["name"] for o in outputs if o["failures"]]
    if failing:
        found.append({"code": "siem_output_failing", "message":
                      f"SIEM output(s) failing: {', '.join(failing)}"})
    return found


def ingestion_summary(storage: StorageConnection, known: list[Tenant] | None = None,
                      counted: Counted | None = None) -> dict[str, Any]:
    """Tenants by status, the ones failing, and whether the MSSP app's credential works
    (the repositories are built here: the health check runs before, and without, the
    wiring's services).

    Counts and ids only: tenant names and error texts stay behind the admin API/portal.
    """
    return summarize(TenantRepository(tables.table(storage, tables.TENANTS)),
                     PoisonLogRepository(tables.table(storage, tables.POISON_LOG)),
                     AppHealth(tables.table(storage, tables.APP_HEALTH)), known, counted)


def summarize(tenants: TenantRepository, poison: PoisonLogRepository, app: AppHealth,
              known: list[Tenant] | None = None, counted: Counted | None = None
              ) -> dict[str, Any]:
    """`ingestion_summary` from the repositories. Messages given up on are counted for
    the last 24 hours, per queue, at most POISON_COUNT_LIMIT rows read."""
    by_status: dict[str, int] = {}
    failing = 0
    last_success = None
    scanned: Iterable[Tenant] = ()
    if counted is not None:  # counted already: the registry is not read
        by_status, failing = dict(counted.by_status), counted.failing
    else:
        scanned = tenants.all() if known is None else known
    for tenant in scanned:
        by_status[str(tenant.status)] = by_status.get(str(tenant.status), 0) + 1
        if tenant.status == TenantStatus.ACTIVE and tenant.consecutive_failures:
            failing += 1
        if tenant.last_success_at and (last_success is None
                                       or tenant.last_success_at > last_success):
            last_success = tenant.last_success_at
    summary: dict[str, Any] = {
        "tenants": by_status, "failing_tenants": failing,
        "poisoned_last_day": poison.counts_since(datetime.now(UTC) - timedelta(days=1),
                                                 POISON_COUNT_LIMIT),
        "last_success_at": last_success.isoformat() if last_success else None,
        "app_credential_error": None}
    refused = app.identity_failure(**PROBE)
    if refused is None:
        return summary
    if counted is not None:  # the last success matters now: read it
        last_success = max((t.last_success_at for t in tenants.all() if t.last_success_at),
                           default=None)
        summary["last_success_at"] = last_success.isoformat() if last_success else None
    if last_success is None or refused["at"] > last_success:  # not fixed since
        summary["app_credential_error"] = {"reason": refused["reason"],
                                           "at": refused["at"].isoformat()}
    return summary


def mail_detail(storage: StorageConnection) -> str:
    """The last mail error's text, for the portal only (it may name a server or address)."""
    failure = mail_failure(AppHealth(tables.table(storage, tables.APP_HEALTH)))
    return failure["reason"] if failure else ""
