"""Every app setting the code reads, in one place, validated once.

The registry (`SETTINGS`) is the single source for `local.settings.sample.json`, the
settings reference `docs/settings.md` (generated: `python -m devtools.docs_settings`) and
the infra drift test, so a setting cannot be read without being declared, documented and
deployed.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from shared.addresses import parse_address
from shared.netloc import authority, is_loopback
from shared.settings_error import SettingsError  # raised here, and importable from here
from shared.storage import fast_paths
from shared.storage.connection import StorageConnection


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, what it means, its default (None: no default)."""

    name: str
    help: str
    default: str | None = None
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FUNCTIONS_WORKER_RUNTIME",
        "Language worker the Functions host starts; always `python`.",
        default="python",
    ),
    Setting(
        "AzureWebJobsStorage",
        "Storage connection string for the host and the app (queues and tables). "
        "Locally `UseDevelopmentStorage=true` (Azurite); in Azure use the identity-based "
        "`AzureWebJobsStorage__*` settings instead. This or the two service URIs below are "
        "required.",
        secret=True,
    ),
    Setting(
        "AzureWebJobsStorage__queueServiceUri",
        "Identity-based storage: the queue service URI (https; used when AzureWebJobsStorage "
        "is unset).",
    ),
    Setting(
        "AzureWebJobsStorage__tableServiceUri",
        "Identity-based storage: the table service URI (https; used when AzureWebJobsStorage "
        "is unset).",
    ),
    Setting(
        "AzureWebJobsStorage__credential",
        "Identity-based storage: `managedidentity` to use the app's managed identity; "
        "otherwise DefaultAzureCredential.",
    ),
    Setting(
        "AzureWebJobsStorage__clientId",
        "Identity-based storage: client id of the user-assigned managed identity.",
    ),
    Setting(
        "STORAGE_FAST_PATHS",
        "`true`: table transactions and the fan-out's queue puts use the app's lean "
        "hand-written paths (measured several times faster); `false`: the Azure SDK's own "
        "`submit_transaction` and `send_message`, same rows and messages, to rule the lean "
        "paths out when something looks wrong.",
        default="true",
    ),
    Setting(
        "MSSP_CLIENT_ID",
        "Application (client) id of the MSSP's multi-tenant Entra ID app (a GUID). Required.",
    ),
    Setting(
        "MSSP_CLIENT_SECRET",
        "The app's client secret (in Azure, a Key Vault reference). This or "
        "MSSP_CLIENT_CERTIFICATE_PATH is required.",
        secret=True,
    ),
    Setting(
        "MSSP_CLIENT_CERTIFICATE_PATH",
        "PEM file with the app's certificate and private key, used instead of a secret.",
        default="",
    ),
    # issue 20: the optional triage app (Alert.ReadWrite.All), a second registration
    Setting(
        "MSSP_TRIAGE_CLIENT_ID",
        "Application (client) id of the MSSP's optional triage app (a GUID): a second "
        "multi-tenant app asking for `Alert.ReadWrite.All`, which a customer consents to "
        "through a triage invitation. Empty: invitations can only be read-only.",
        default="",
    ),
    Setting(
        "MSSP_TRIAGE_CLIENT_SECRET",
        "The triage app's client secret; with MSSP_TRIAGE_CLIENT_ID, this or "
        "MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH is required.",
        default="",
        secret=True,
    ),
    Setting(
        "MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH",
        "PEM file with the triage app's certificate and private key, used instead of a "
        "secret.",
        default="",
    ),
    Setting(
        "MSSP_CLOUD",
        "`public`, `usgov` (GCC) or `usgovhigh` (GCC High/DoD): picks the login host and "
        "the Defender API host.",
        default="public",
    ),
    Setting(
        "MSSP_AUTHORITY_HOST",
        "Override of the Entra ID login host (https URL); `make run` points it at the "
        "simulator. Empty means the cloud's login host.",
        default="",
    ),
    Setting(
        "MSSP_SIGN_IN_HOST",
        "Where a customer's browser is sent to sign in and consent; empty means the login "
        "host. http:// only on loopback: `make run` points it at the simulator's plain-HTTP "
        "pages, so a browser shows no certificate warning (the app's own calls stay on "
        "MSSP_AUTHORITY_HOST).",
        default="",
    ),
    Setting(
        "MSSP_DEFENDER_API_BASE",
        "Override of the Defender API base URL for every tenant (https URL); the "
        "simulator's URL locally. Empty means the cloud's, or the tenant's region's.",
        default="",
    ),
    Setting(
        "MSSP_CA_BUNDLE",
        "PEM file of CA certificates to trust for Entra ID and Defender (the simulator's CA "
        "locally); empty means the system store.",
        default="",
    ),
    Setting("FETCH_SCHEDULE", "NCRONTAB schedule of the fan-out timer (seconds first).",
            default="0 */5 * * * *"),
    Setting("FETCH_PAGE_SIZE", "`$top` per Defender call, 1 to 10000.", default="10000"),
    Setting("FETCH_OVERLAP_SECONDS",
            "How far before the cursor each run re-reads, to catch late-indexed alerts.",
            default="300"),
    Setting("FETCH_INITIAL_LOOKBACK_DAYS",
            "How far back a tenant's first fetch reads (Defender keeps up to 180 days).",
            default="7"),
    Setting("FETCH_MAX_PAGES_PER_RUN",
            "Pages one run reads before handing over to a follow-up message.",
            default="10"),
    Setting("DEFAULT_ALERT_SOURCE",
            "Where new invitations' tenants are fetched from: `mde` (the Defender for "
            "Endpoint API, endpoint alerts) or `graph` (Microsoft Graph's security alerts_v2, "
            "every Defender XDR product; the consent asks for SecurityAlert.Read.All and "
            "SecurityIncident.Read.All). An invitation may name another.",
            default="mde"),
    Setting("GRAPH_INCIDENTS",
            "`true`: a graph tenant's fetch reads its incidents after its alerts (one more "
            "Graph call when idle); `false`: alerts only.", default="true"),
    Setting("FETCH_TIMEOUT_SECONDS", "Read timeout of a Defender call (connect: 10 s).",
            default="120"),
    Setting("RUN_HISTORY_DAYS", "Days of fetch run history kept.", default="30"),
    Setting("MSSP_NAME", "The MSSP's name, shown to customers on the consent pages.",
            default="Your security provider"),
    Setting("PUBLIC_BASE_URL",
            "The app's external URL (https://<app>.azurewebsites.net); invitation links "
            "and the consent redirect URI (<url>/api/consent/callback: register it on the "
            "app) are built from it, and the portal answers only requests for its host "
            "and port (421 otherwise). `https://`, or `http://` on loopback.",
            default="http://127.0.0.1:7071"),
    Setting("ONBOARDING_STATE_KEY",
            "Secret (32+ characters) that signs the consent `state`; in Azure a Key Vault "
            "reference. Required; the first `make run` writes a random one.",
            secret=True),
    Setting("ONBOARDING_STATE_MINUTES", "How long a consent attempt may take, in minutes.",
            default="30"),
    Setting("ONBOARDING_ALLOW_HOME_TENANT", "`true` lets the MSSP's own tenant "
            "(MSSP_TENANT_ID) be onboarded as a customer; otherwise it is refused.",
            default="false"),
    Setting("OPS_EMAIL", "Where the MSSP is told about onboarded and revoked tenants "
            "(emailed by the digest timer through MAIL_TRANSPORT); empty: recorded only.",
            default=""),
    Setting("DIGEST_SCHEDULE", "NCRONTAB schedule of the digest sender (seconds first), "
            "which also emails ops notices.",
            default="0 * * * * *"),
    Setting("MAIL_TRANSPORT", "`smtp`, `graph` (Microsoft Graph sendMail), or `none` to keep "
            "notification emails in the MailOutbox table only.", default="none"),
    Setting("MSSP_TENANT_ID", "The MSSP's own tenant: never onboarded as a customer (see "
            "ONBOARDING_ALLOW_HOME_TENANT); for MAIL_TRANSPORT=graph the app needs Mail.Send "
            "there. Set it.", default=""),
    Setting("GRAPH_BASE_URL", "Microsoft Graph endpoint; the simulator locally.",
            default="https://graph.microsoft.com"),
    Setting("MAIL_FROM", "Sender address of notification emails.",
            default="mssp-hub@localhost.localdomain"),
    Setting("MAIL_REPLY_TO", "Reply-To address of notification emails (empty: none).",
            default=""),
    Setting("SMTP_HOST", "SMTP server (with MAIL_TRANSPORT=smtp).", default=""),
    Setting("SMTP_PORT", "SMTP port.", default="587"),
    Setting("SMTP_SECURITY", "`starttls`, `tls` (implicit) or `none`.", default="starttls"),
    Setting("SMTP_USERNAME", "SMTP login (empty: no authentication).", default=""),
    Setting("SMTP_PASSWORD", "SMTP password; a Key Vault reference in Azure.", default="",
            secret=True),
    Setting("SIEM_OUTPUTS", "JSON list of push outputs (syslog CEF/ECS, Splunk HEC, "
            "webhook), each with its own filter; see docs/siem.md.",
            default="[]"),
    Setting("POISON_DRAIN_SCHEDULE", "NCRONTAB schedule of the timer that records the "
            "messages the host gave up on (the `-poison` queues) in PoisonLog (seconds "
            "first).", default="0 */5 * * * *"),
    Setting("SIEM_PUSH_SCHEDULE", "NCRONTAB schedule that starts deliveries to the outputs "
            "(seconds first).", default="*/15 * * * * *"),
    Setting("SIEM_SETTLE_SECONDS", "How far behind now the feed is read, so an alert "
            "written late can never land behind a reader (5-600).", default="30"),
    Setting("SIEM_RETENTION_DAYS", "Days the alert feed is kept for the pull API and for "
            "outputs that are down.", default="7"),
    Setting("SIEM_HEC_TOKEN", "Splunk HEC token of `splunk_hec` outputs (an output may name "
            "another SIEM_* setting); a Key Vault reference in Azure.", default="",
            secret=True),
    Setting("SIEM_WEBHOOK_SECRET", "HMAC key (16+ characters) of `webhook` outputs (an "
            "output may name another SIEM_* setting); a Key Vault reference in Azure.",
            default="", secret=True),
    Setting("PORTAL_ALLOWED_GROUPS",
            "Entra ID group object ids (comma-separated) whose members may use the portal; "
            "read from App Service Authentication's `groups` claim. Empty: nobody (by "
            "group).", default=""),
    Setting("PORTAL_ALLOWED_ROLES",
            "App role values (comma-separated) that may use the portal (`roles` claim). "
            "Empty: nobody (by role).",
            default=""),
    Setting("PORTAL_ACTION_GROUPS",
            "Entra ID group object ids (comma-separated) whose members may act on alerts "
            "from the portal (assign, status, classify, comment). Empty, with "
            "PORTAL_ACTION_ROLES empty too: everyone who may use the portal may act.",
            default=""),
    Setting("PORTAL_ACTION_ROLES",
            "App role values (comma-separated) that may act on alerts from the portal; "
            "others see the alert page with its forms disabled (read-only analysts). The "
            "local portal key may always act.", default=""),
    Setting("WEBSITE_AUTH_ENABLED",
            "Set by App Service itself (`True`) when App Service Authentication is on; never "
            "set it by hand. Outside loopback the portal trusts X-MS-CLIENT-PRINCIPAL only "
            "then, since without it anyone could send that header.", default=""),
    Setting("CORRELATION_MIN_TENANTS", "Tenants an indicator (hash, IP, domain, URL) must "
            "be seen at within the window to be a cross-tenant cluster (2-1000).", default="2"),
    Setting("CORRELATION_WINDOW_DAYS", "Days between an indicator's sightings that still "
            "count as one cluster (1-90).", default="7"),
    Setting("CORRELATION_MAX_TENANT_SHARE", "The noise floor: an indicator seen at more than "
            "this share of the active tenants (0.01-1) is benign noise and forms no cluster "
            "(applies from CORRELATION_FLOOR_MIN_TENANTS active tenants).", default="0.5"),
    Setting("CORRELATION_FLOOR_MIN_TENANTS", "Active tenants from which the noise floor "
            "applies (1-100000).", default="10"),
    Setting("CORRELATION_INCLUDE_PRIVATE_IPS", "`true`: private, CGNAT and link-local "
            "addresses are indicators too (the same private range at two customers is "
            "usually a coincidence).", default="false"),
    Setting("CORRELATION_TOOL_NAMES", "File names of known-bad tools that are indicators "
            "themselves, comma-separated, case-insensitive (e.g. `mimikatz.exe,psexec.exe`); "
            "empty: none.", default=""),
    Setting("PORTAL_KEY",
            "Local only: a key (16+ characters) that opens the portal without App Service "
            "Authentication; refused unless PUBLIC_BASE_URL is loopback (127.0.0.0/8, [::1] "
            "or localhost). `make run` makes one.",
            default="", secret=True),
    Setting("MSSP_API_KEYS",
            "Named keys of automation that acts on alerts through the API (triage, audit), "
            "as `name:sha256hex,...`: each name with the SHA-256 (hex) of its key, which the "
            "caller sends as `X-Api-Key` besides the function key. The audit trail records "
            "the name. Only hashes are stored here. Empty: no automation may act.",
            default=""),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)
_DEFAULTS = {s.name: s.default for s in SETTINGS}

# cloud -> (login host, Defender API base, token resource)
CLOUDS = {
    "public": ("https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com",
               "https://api.securitycenter.microsoft.com"),
    "usgov": ("https://login.microsoftonline.com", "https://api-gcc.securitycenter.microsoft.us",
              "https://api-gcc.securitycenter.microsoft.us"),
    "usgovhigh": ("https://login.microsoftonline.us",
                  "https://api-gov.securitycenter.microsoft.us",
                  "https://api-gov.securitycenter.microsoft.us"),
}


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is None or value.strip() == "":
        value = _DEFAULTS.get(name) or ""
    return value.strip()


def _address(env: Mapping[str, str], name: str) -> str:
    """An email address setting: one bare address (shared.addresses), or empty."""
    value = _get(env, name)
    try:
        return parse_address(value) if value else ""
    except ValueError:
        raise SettingsError(name, "must be one email address") from None


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = _get(env, name)
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(name, "must be a whole number") from None
    if not low <= value <= high:
        raise SettingsError(name, f"must be from {low} to {high}")
    return value


def _https(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name).rstrip("/")
    if value and not value.startswith("https://"):
        raise SettingsError(name, "must be an https:// URL")
    return value


def _triage_app(env: Mapping[str, str], main_client_id: str) -> dict[str, str | None]:
    """The optional triage app's credentials, validated like the main app's."""
    client_id = _get(env, "MSSP_TRIAGE_CLIENT_ID")
    secret = _get(env, "MSSP_TRIAGE_CLIENT_SECRET") or None
    cert = _get(env, "MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH") or None
    if not client_id:
        if secret or cert:
            raise SettingsError("MSSP_TRIAGE_CLIENT_ID", "is not set, but the triage app's "
                                "secret or certificate is")
        return {}
    try:
        client_id = str(uuid.UUID(client_id))
    except ValueError:
        raise SettingsError("MSSP_TRIAGE_CLIENT_ID", "must be the triage app's client id "
                            "(a GUID)") from None
    if client_id == main_client_id:
        raise SettingsError("MSSP_TRIAGE_CLIENT_ID", "must be a second app registration, "
                            "not MSSP_CLIENT_ID: consent grants all an app declares")
    if not secret and not cert:
        raise SettingsError("MSSP_TRIAGE_CLIENT_SECRET",
                            "is not set (nor MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH)")
    if cert and not os.path.isfile(cert):
        raise SettingsError("MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH", "is not a readable file")
    return {"triage_client_id": client_id, "triage_client_secret": secret,
            "triage_certificate_path": cert}


def _sign_in_host(env: Mapping[str, str]) -> str:
    value = _get(env, "MSSP_SIGN_IN_HOST").rstrip("/")
    if value and not (value.startswith("https://") or (
            value.startswith("http://") and is_loopback(value))):
        raise SettingsError("MSSP_SIGN_IN_HOST", "must be an https:// URL (http:// only on "
                            "loopback)")
    return value


@dataclass(frozen=True)
class IdentitySettings:
    """How the app signs in to customer tenants and where their Defender API is."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_path: str | None = None
    cloud: str = "public"
    authority_host: str = CLOUDS["public"][0]
    api_base_override: str | None = None
    ca_bundle: str | None = None
    sign_in_host: str = ""  # the browser's way to the authorize page; "" = authority_host
    # the optional triage app (Alert.ReadWrite.All): "" when none is registered
    triage_client_id: str = ""
    triage_client_secret: str | None = field(default=None, repr=False)
    triage_certificate_path: str | None = None

    @property
    def triage_enabled(self) -> bool:
        return bool(self.triage_client_id)

    def app(self, access: str) -> IdentitySettings:
        """The settings of the app a tenant consents to for `access` ("read" or
        "triage"): the triage app's credentials in place of the main app's, so Tokens and
        OpenIdClient work the same for both. ValueError for triage without a triage app."""
        if access == "read":
            return self
        if access != "triage" or not self.triage_enabled:
            raise ValueError(f"no app for {access!r} access (MSSP_TRIAGE_CLIENT_ID is unset)")
        return replace(self, client_id=self.triage_client_id,
                       client_secret=self.triage_client_secret,
                       certificate_path=self.triage_certificate_path,
                       triage_client_id="", triage_client_secret=None,
                       triage_certificate_path=None)

    @property
    def browser_authority(self) -> str:
        """Where a customer's browser signs in: the login host unless told otherwise."""
        return self.sign_in_host or self.authority_host

    @property
    def defender_resource(self) -> str:
        return CLOUDS[self.cloud][2]

    def api_base(self, region: str = "") -> str:
        """The Defender API base for a tenant: override, regional host, or the cloud's."""
        if self.api_base_override:
            return self.api_base_override
        if region and self.cloud == "public":
            return f"https://{region}.api.security.microsoft.com"
        return CLOUDS[self.cloud][1]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentitySettings:
        client_id = _get(env, "MSSP_CLIENT_ID")
        try:
            client_id = str(uuid.UUID(client_id))
        except ValueError:
            raise SettingsError("MSSP_CLIENT_ID", "must be the app's client id (a GUID)"
                                ) from None
        secret = _get(env, "MSSP_CLIENT_SECRET") or None
        cert = _get(env, "MSSP_CLIENT_CERTIFICATE_PATH") or None
        if not secret and not cert:
            raise SettingsError("MSSP_CLIENT_SECRET",
                                "is not set (nor MSSP_CLIENT_CERTIFICATE_PATH)")
        if cert and not os.path.isfile(cert):
            raise SettingsError("MSSP_CLIENT_CERTIFICATE_PATH", "is not a readable file")
        cloud = _get(env, "MSSP_CLOUD").lower()
        if cloud not in CLOUDS:
            raise SettingsError("MSSP_CLOUD", f"must be one of {', '.join(CLOUDS)}")
        ca = _get(env, "MSSP_CA_BUNDLE") or None
        if ca and not os.path.isfile(ca):
            raise SettingsError("MSSP_CA_BUNDLE", "is not a readable file")
        triage = _triage_app(env, client_id)
        return cls(client_id=client_id, client_secret=secret, certificate_path=cert,
                   cloud=cloud, **triage,
                   authority_host=_https(env, "MSSP_AUTHORITY_HOST") or CLOUDS[cloud][0],
                   api_base_override=_https(env, "MSSP_DEFENDER_API_BASE") or None,
                   ca_bundle=ca, sign_in_host=_sign_in_host(env))


@dataclass(frozen=True)
class FetchSettings:
    schedule: str = "0 */5 * * * *"
    page_size: int = 10_000
    overlap_seconds: int = 300
    initial_lookback_days: int = 7
    max_pages_per_run: int = 10
    timeout_seconds: int = 120
    run_history_days: int = 30
    default_source: str = "mde"  # of new invitations (Tenant.source)
    graph_base_url: str = "https://graph.microsoft.com"  # graph tenants' alerts_v2
    graph_incidents: bool = True  # graph tenants' incidents fetched after their alerts

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FetchSettings:
        source = _get(env, "DEFAULT_ALERT_SOURCE").lower()
        if source not in ("mde", "graph"):
            raise SettingsError("DEFAULT_ALERT_SOURCE", "must be mde or graph")
        incidents = _get(env, "GRAPH_INCIDENTS").lower()
        if incidents not in ("true", "false"):
            raise SettingsError("GRAPH_INCIDENTS", "must be true or false")
        return cls(
            default_source=source, graph_base_url=_https(env, "GRAPH_BASE_URL"),
            graph_incidents=incidents == "true",
            schedule=_get(env, "FETCH_SCHEDULE"),
            page_size=_int(env, "FETCH_PAGE_SIZE", 1, 10_000),
            overlap_seconds=_int(env, "FETCH_OVERLAP_SECONDS", 0, 86_400),
            initial_lookback_days=_int(env, "FETCH_INITIAL_LOOKBACK_DAYS", 0, 180),
            max_pages_per_run=_int(env, "FETCH_MAX_PAGES_PER_RUN", 1, 1000),
            timeout_seconds=_int(env, "FETCH_TIMEOUT_SECONDS", 5, 600),
            run_history_days=_int(env, "RUN_HISTORY_DAYS", 1, 3650),
        )


@dataclass(frozen=True)
class OnboardingSettings:
    mssp_name: str = "Your security provider"
    public_base_url: str = "http://127.0.0.1:7071"
    state_key: bytes = field(default=b"", repr=False)
    state_minutes: int = 30
    ops_email: str = ""
    home_tenant: str = ""  # MSSP_TENANT_ID: never a customer unless allow_home_tenant
    allow_home_tenant: bool = False

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_base_url}/api/consent/callback"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OnboardingSettings:
        base = _get(env, "PUBLIC_BASE_URL").rstrip("/")
        if not (base.startswith("https://") or is_loopback(base)):
            raise SettingsError("PUBLIC_BASE_URL", "must be an https:// URL (http:// only on "
                                "loopback: 127.0.0.0/8, [::1] or localhost)")
        if not authority(base) or any(c in base for c in "?#@\\"):
            raise SettingsError("PUBLIC_BASE_URL", "must be a scheme, a host, a port if "
                                "needed and a path at most, without user, query or fragment")
        key = _get(env, "ONBOARDING_STATE_KEY")
        if len(key) < 32:
            raise SettingsError("ONBOARDING_STATE_KEY", "must be at least 32 characters")
        ops = _address(env, "OPS_EMAIL")
        home = _get(env, "MSSP_TENANT_ID")
        if home:
            try:
                home = str(uuid.UUID(home))
            except ValueError:
                raise SettingsError("MSSP_TENANT_ID", "must be a tenant id (a GUID)") from None
        allow = _get(env, "ONBOARDING_ALLOW_HOME_TENANT").lower()
        if allow not in ("true", "false"):
            raise SettingsError("ONBOARDING_ALLOW_HOME_TENANT", "must be true or false")
        return cls(mssp_name=_get(env, "MSSP_NAME")[:200], public_base_url=base,
                   state_key=key.encode(), ops_email=ops, home_tenant=home,
                   allow_home_tenant=allow == "true",
                   state_minutes=_int(env, "ONBOARDING_STATE_MINUTES", 5, 24 * 60))


@dataclass(frozen=True)
class MailSettings:
    transport: str = "none"
    tenant_id: str = ""
    graph_base_url: str = "https://graph.microsoft.com"
    sender: str = "mssp-hub@localhost.localdomain"
    reply_to: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MailSettings:
        transport = _get(env, "MAIL_TRANSPORT").lower()
        if transport not in ("smtp", "graph", "none"):
            raise SettingsError("MAIL_TRANSPORT", "must be smtp, graph or none")
        tenant_id = _get(env, "MSSP_TENANT_ID")
        if transport == "graph":
            try:
                tenant_id = str(uuid.UUID(tenant_id))
            except ValueError:
                raise SettingsError("MSSP_TENANT_ID", "must be the MSSP's tenant id (a GUID) "
                                    "with MAIL_TRANSPORT=graph") from None
        for name in ("MAIL_FROM", "MAIL_REPLY_TO"):
            _address(env, name)
        security = _get(env, "SMTP_SECURITY").lower()
        if security not in ("starttls", "tls", "none"):
            raise SettingsError("SMTP_SECURITY", "must be starttls, tls or none")
        host = _get(env, "SMTP_HOST")
        if transport == "smtp" and not host:
            raise SettingsError("SMTP_HOST", "is required with MAIL_TRANSPORT=smtp")
        return cls(transport=transport, tenant_id=tenant_id,
                   graph_base_url=_https(env, "GRAPH_BASE_URL"), sender=_get(env, "MAIL_FROM"),
                   reply_to=_get(env, "MAIL_REPLY_TO"), smtp_host=host,
                   smtp_port=_int(env, "SMTP_PORT", 1, 65535), smtp_security=security,
                   smtp_username=_get(env, "SMTP_USERNAME"),
                   smtp_password=_get(env, "SMTP_PASSWORD"))


def _names(env: Mapping[str, str], name: str) -> frozenset[str]:
    values = [v.strip() for v in _get(env, name).split(",") if v.strip()]
    if any(len(v) > 256 or any(ord(c) < 33 for c in v) for v in values):
        raise SettingsError(name, "must be comma-separated names without spaces")
    return frozenset(values)


@dataclass(frozen=True)
class PortalSettings:
    """Who may open the portal: an Entra group or app role, or locally a key."""

    allowed_groups: frozenset[str] = frozenset()
    allowed_roles: frozenset[str] = frozenset()
    key: str = field(default="", repr=False)
    local: bool = False  # PUBLIC_BASE_URL is loopback: `make run` or tests
    principal_trusted: bool = False  # App Service Authentication strips forged headers
    state_key: bytes = field(default=b"", repr=False)  # the portal derives its CSRF key
    action_groups: frozenset[str] = frozenset()  # none, nor roles: whoever enters may act
    action_roles: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str], onboarding: OnboardingSettings
                 ) -> PortalSettings:
        local = is_loopback(onboarding.public_base_url)
        key = _get(env, "PORTAL_KEY")
        if key and not local:
            raise SettingsError("PORTAL_KEY", "is for local use only (PUBLIC_BASE_URL is not "
                                "loopback); use App Service Authentication and "
                                "PORTAL_ALLOWED_GROUPS or PORTAL_ALLOWED_ROLES")
        if key and len(key) < 16:
            raise SettingsError("PORTAL_KEY", "must be at least 16 characters")
        return cls(allowed_groups=_names(env, "PORTAL_ALLOWED_GROUPS"),
                   allowed_roles=_names(env, "PORTAL_ALLOWED_ROLES"), key=key, local=local,
                   state_key=onboarding.state_key, principal_trusted=local or _get(
                       env, "WEBSITE_AUTH_ENABLED").lower() == "true",
                   action_groups=_names(env, "PORTAL_ACTION_GROUPS"),
                   action_roles=_names(env, "PORTAL_ACTION_ROLES"))


@dataclass(frozen=True)
class ApiKey:
    """An automation key: its name (what the audit trail records) and SHA-256 (hex)."""

    name: str
    sha256: str = field(repr=False)


def _api_keys(env: Mapping[str, str]) -> tuple[ApiKey, ...]:
    keys: list[ApiKey] = []
    for item in (v.strip() for v in _get(env, "MSSP_API_KEYS").split(",")):
        if not item:
            continue
        name, _, digest = item.rpartition(":")
        digest = digest.lower()
        if (not name or len(name) > 64 or any(not (c.isalnum() or c in "-_.@") for c in name)
                or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
            raise SettingsError("MSSP_API_KEYS", "must be `name:sha256hex` items, comma-"
                                "separated (names: letters, digits, - _ . @; 1-64)")
        if any(k.name == name for k in keys):
            raise SettingsError("MSSP_API_KEYS", f"names a key twice: {name}")
        keys.append(ApiKey(name, digest))
    return tuple(keys)


@dataclass(frozen=True)
class SiemSettings:
    outputs: tuple = ()  # tuple[shared.siem.outputs.Output, ...]
    schedule: str = "*/15 * * * * *"
    settle_seconds: int = 30
    retention_days: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SiemSettings:
        from shared.siem.outputs import parse_outputs  # late: settings stay below features

        return cls(outputs=parse_outputs(_get(env, "SIEM_OUTPUTS"), env),
                   schedule=_get(env, "SIEM_PUSH_SCHEDULE"),
                   settle_seconds=_int(env, "SIEM_SETTLE_SECONDS", 5, 600),
                   retention_days=_int(env, "SIEM_RETENTION_DAYS", 1, 90))


@dataclass(frozen=True)
class CorrelationSettings:
    min_tenants: int = 2
    window_days: int = 7
    max_tenant_share: float = 0.5
    floor_min_tenants: int = 10
    include_private_ips: bool = False
    tool_names: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CorrelationSettings:
        share_text = _get(env, "CORRELATION_MAX_TENANT_SHARE")
        try:
            share = float(share_text)
        except ValueError:
            raise SettingsError("CORRELATION_MAX_TENANT_SHARE", "must be a number") from None
        if not 0.01 <= share <= 1:
            raise SettingsError("CORRELATION_MAX_TENANT_SHARE", "must be from 0.01 to 1")
        private = _get(env, "CORRELATION_INCLUDE_PRIVATE_IPS").lower()
        if private not in ("true", "false"):
            raise SettingsError("CORRELATION_INCLUDE_PRIVATE_IPS", "must be true or false")
        names = frozenset(n.strip().lower() for n in _get(env, "CORRELATION_TOOL_NAMES")
                          .split(",") if n.strip())
        return cls(min_tenants=_int(env, "CORRELATION_MIN_TENANTS", 2, 1000),
                   window_days=_int(env, "CORRELATION_WINDOW_DAYS", 1, 90),
                   max_tenant_share=share,
                   floor_min_tenants=_int(env, "CORRELATION_FLOOR_MIN_TENANTS", 1, 100_000),
                   include_private_ips=private == "true", tool_names=names)


@dataclass(frozen=True)
class Settings:
    """The validated settings the app runs with."""

    storage: StorageConnection
    identity: IdentitySettings
    fetch: FetchSettings = field(default_factory=FetchSettings)
    onboarding: OnboardingSettings = field(default_factory=OnboardingSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    siem: SiemSettings = field(default_factory=SiemSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    correlation: CorrelationSettings = field(default_factory=CorrelationSettings)
    api_keys: tuple[ApiKey, ...] = ()  # MSSP_API_KEYS: automation that may act on alerts

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        runtime = env.get("FUNCTIONS_WORKER_RUNTIME", "python")
        if runtime != "python":
            raise SettingsError("FUNCTIONS_WORKER_RUNTIME", "must be `python`")
        storage = StorageConnection.from_env(env, "AzureWebJobsStorage")
        fast_paths.enabled(env)  # validated here; read by the storage paths per call
        identity = IdentitySettings.from_env(env)
        fetch = FetchSettings.from_env(env)
        onboarding = OnboardingSettings.from_env(env)
        return cls(storage=storage, identity=identity, fetch=fetch, onboarding=onboarding,
                   mail=MailSettings.from_env(env),
                   portal=PortalSettings.from_env(env, onboarding),
                   siem=SiemSettings.from_env(env), api_keys=_api_keys(env),
                   correlation=CorrelationSettings.from_env(env))


@functools.cache
def get_settings() -> Settings:
    """Read and validate the process's settings once; raises SettingsError naming the culprit."""
    return Settings.from_env(os.environ)
